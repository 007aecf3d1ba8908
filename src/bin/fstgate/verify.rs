//! `fstgate verify` (a signed directory checked against a key or a CA) and `fstgate keygen`.
use std::path::PathBuf;

use fstgate::attestation::{self, PublicKey};

pub(crate) fn verify(
    dir: PathBuf,
    public_key: Option<PathBuf>,
    ca: Option<PathBuf>,
    original_model: Option<PathBuf>,
    model: Option<String>,
    allow_denied: bool,
) -> anyhow::Result<bool> {
    let (original_model, model) = (original_model.as_deref(), model.as_deref());
    let outcome = match (public_key, ca) {
        (Some(public_key), _) => {
            let key = PublicKey::from_file(&public_key)?;
            attestation::verify(&dir, &key, original_model, model).map(|v| (v, format!("key {}", key.fingerprint())))
        }
        (None, Some(ca)) => {
            let roots = attestation::TrustRoots::from_file(&ca)?;
            attestation::verify_with_roots(&dir, &roots, original_model, model).map(|v| {
                let subject = v.certificate_subject.clone().unwrap_or_default();
                (v, format!("certificate `{subject}` (chain to {})", ca.display()))
            })
        }
        (None, None) => anyhow::bail!("verify needs --public-key or --ca"),
    };
    match outcome {
        Ok((verified, signer)) => {
            println!("verified {}: {} files signed by {signer}", dir.display(), verified.files.len());
            println!(
                "  model sha256 {} made from {} (sha256 {})",
                verified.model_sha256,
                fstgate::error::redact_url(&verified.model),
                verified.original_model_sha256
            );
            println!("  decision: {}", verified.decision.decision);
            // A correct signature on a denial is not a release: a script checking the exit code
            // must not ship it.
            if !verified.decision.releasable && !allow_denied {
                println!("the signed decision denies this model (exit 1; --allow-denied to accept)");
                return Ok(false);
            }
            Ok(true)
        }
        Err(e) => {
            println!("verification failed: {e}");
            Ok(false)
        }
    }
}
