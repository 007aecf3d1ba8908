//! OpenSSF model_signing (PyPI `model-signing` 1.x) signatures with a private key: a Sigstore
//! bundle v0.3 holding a DSSE envelope over an in-toto Statement whose predicate lists every
//! file of the model directory with its sha256. See docs/model-signing-format.md.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use super::keys::{PublicKey, SigningKey};
use super::statement::{ResourceDescriptor, Statement};
use crate::data::sha256_file;
use crate::error::{Error, Result};

const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    verification_material: VerificationMaterial,
    dsse_envelope: Envelope,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerificationMaterial {
    public_key: PublicKeyHint,
}

#[derive(Debug, Serialize, Deserialize)]
struct PublicKeyHint {
    hint: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Resource {
    name: String,
    algorithm: String,
    digest: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Predicate {
    serialization: serde_json::Value,
    resources: Vec<Resource>,
}

/// Every regular file under `dir` except the signature, as sorted `/`-separated relative names.
fn files(dir: &Path, signature: &str) -> Result<Vec<(String, PathBuf)>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
            if meta.file_type().is_symlink() {
                return Err(Error::Attestation(format!(
                    "{} is a symbolic link; signed directories may not hold links",
                    path.display()
                )));
            }
            if meta.is_dir() {
                walk(root, &path, out)?;
            } else {
                let name = path
                    .strip_prefix(root)
                    .expect("walked under root")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((name, path));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.retain(|(name, _)| name != signature);
    out.sort();
    Ok(out)
}

/// sha256 over the concatenated raw digests, in name order.
fn subject_digest(resources: &[Resource]) -> Result<String> {
    let mut hasher = Sha256::new();
    for resource in resources {
        hasher.update(
            hex::decode(&resource.digest)
                .map_err(|_| Error::Attestation(format!("digest of {} is not hex", resource.name)))?,
        );
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Writes the model_signing bundle `signature` over every other file of `dir`; `model_name` is
/// the statement's subject name (the directory's final name: `dir` may be a staging directory).
pub fn sign_directory(dir: &Path, model_name: &str, signature: &str, key: &SigningKey) -> Result<()> {
    let resources = files(dir, signature)?
        .into_iter()
        .map(|(name, path)| Ok(Resource { name, algorithm: "sha256".into(), digest: sha256_file(&path)? }))
        .collect::<Result<Vec<_>>>()?;
    let predicate = Predicate {
        serialization: json!({"method": "files", "hash_type": "sha256", "allow_symlinks": false, "ignore_paths": [signature]}),
        resources,
    };
    let subject = ResourceDescriptor::sha256(Some(model_name), None, &subject_digest(&predicate.resources)?);
    let statement = Statement::new(vec![subject], PREDICATE_TYPE, predicate);
    let public = key.public();
    let bundle = Bundle {
        media_type: BUNDLE_MEDIA_TYPE.into(),
        verification_material: VerificationMaterial { public_key: PublicKeyHint { hint: public.fingerprint() } },
        dsse_envelope: Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &serde_json::to_vec(&statement)?, key, ""),
    };
    crate::fsutil::write_json(&dir.join(signature), &bundle)
}

/// Checks the bundle's signature and that the directory holds exactly the signed files with
/// the signed digests; returns their names.
pub fn verify_directory(dir: &Path, signature: &str, key: &PublicKey) -> Result<Vec<String>> {
    let path = dir.join(signature);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let bundle: Bundle = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Attestation(format!("{signature} is not a Sigstore bundle: {e}")))?;
    if bundle.media_type != BUNDLE_MEDIA_TYPE {
        return Err(Error::Attestation(format!("{signature}: unsupported bundle media type {}", bundle.media_type)));
    }
    let payload = bundle
        .dsse_envelope
        .verify(key, IN_TOTO_PAYLOAD_TYPE)
        .map_err(|e| Error::Attestation(format!("{signature}: {e}")))?;
    let statement: Statement<Predicate> = serde_json::from_slice(&payload)
        .map_err(|e| Error::Attestation(format!("{signature}: malformed statement: {e}")))?;
    if statement.predicate_type != PREDICATE_TYPE {
        return Err(Error::Attestation(format!(
            "{signature}: predicate type {} is not model_signing's",
            statement.predicate_type
        )));
    }
    let resources = statement.predicate.resources;
    let expected = subject_digest(&resources)?;
    if statement.subject.first().and_then(ResourceDescriptor::sha256_digest) != Some(expected.as_str()) {
        return Err(Error::Attestation(format!("{signature}: subject digest does not cover the listed files")));
    }
    let present = files(dir, signature)?;
    for (name, _) in &present {
        if !resources.iter().any(|r| &r.name == name) {
            return Err(Error::Attestation(format!("{name} is not covered by the signature (added after signing)")));
        }
    }
    for resource in &resources {
        let Some((_, file)) = present.iter().find(|(name, _)| name == &resource.name) else {
            return Err(Error::Attestation(format!("{} was signed but is missing", resource.name)));
        };
        if resource.algorithm != "sha256" || sha256_file(file)? != resource.digest {
            return Err(Error::Attestation(format!(
                "{} does not match its signed sha256 (modified after signing)",
                resource.name
            )));
        }
    }
    Ok(resources.into_iter().map(|r| r.name).collect())
}
