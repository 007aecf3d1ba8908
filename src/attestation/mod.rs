//! Signed attestations for a purified model directory, checkable by tools that are not ours:
//!
//! - `model.sig`: an OpenSSF model_signing bundle over every file of the directory (verifiable
//!   with `model_signing verify key`);
//! - `provenance.intoto.json`: a DSSE-signed in-toto Statement with an SLSA Provenance v1
//!   predicate: the purified model made from the original model, data and policies;
//! - `decision.intoto.json`: a DSSE-signed SLSA Verification Summary v1 with the policy
//!   verdicts and the metrics (a denied model gets one too, marked not releasable).
//!
//! All three are signed by one key: a bare key (verifiers hold its public half) or a key with
//! an X.509 chain (verifiers hold the organisation's root certificate).
mod certificate;
mod dsse;
pub mod keys;
mod model_signing;
pub mod predicates;
mod statement;

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

pub use certificate::{CertificateChain, TrustRoots};
pub use dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE, pae};
pub use keys::{PublicKey, SigningKey};
pub use model_signing::{bundle_certificate_chain, sign_directory, verify_directory};
pub use statement::{ResourceDescriptor, Statement};

use crate::data::sha256_file;
use crate::error::{Error, Result};
use crate::report::Decision;
use crate::report::Report;
use predicates::{
    BUILD_TYPE, BUILDER_ID, BuildDefinition, BuildMetadata, Builder, DecisionRecord, ExternalParameters,
    InternalParameters, PROVENANCE_TYPE, Provenance, RELEASE_LEVEL, RunDetails, VERIFIER_ID, VSA_TYPE,
    VerificationResult, VerificationSummary,
};

pub use crate::report::layout::{DECISION_FILE, MODEL_FILE, PROVENANCE_FILE, REPORT_FILE, SIGNATURE_FILE};

fn file_uri(path: &Path) -> String {
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    format!("file://{}", absolute.display())
}

fn fstgate_version() -> BTreeMap<String, String> {
    BTreeMap::from([("fstgate".to_string(), env!("CARGO_PKG_VERSION").to_string())])
}

fn sign_statement<P: serde::Serialize>(statement: &Statement<P>, key: &SigningKey) -> Result<Envelope> {
    let payload = serde_json::to_vec(statement)?;
    Ok(Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, key, &key.public().fingerprint()))
}

/// The provenance statement for the directory's model and report.
fn provenance(report: &Report, decision: &Decision, model_sha256: &str, report_sha256: &str) -> Statement<Provenance> {
    // A registered model by its registry's URI (`models:/name/3`, `s3://.../name/3/`): what
    // `fstgate verify --model` checks, so a release of one model cannot pass for another's.
    let original_uri = match &report.model.source.registry {
        Some(registry) => registry.uri.clone(),
        None => file_uri(&report.model.source.path),
    };
    let mut dependencies = vec![
        ResourceDescriptor::sha256(Some("original-model"), Some(&original_uri), &report.model.source.sha256),
        ResourceDescriptor::sha256(
            Some("clean-data"),
            Some(&file_uri(&report.clean_data.source.path)),
            &report.clean_data.source.sha256,
        ),
        ResourceDescriptor::sha256(
            Some("test-data"),
            Some(&file_uri(&report.test_data.source.path)),
            &report.test_data.source.sha256,
        ),
    ];
    dependencies.extend(
        decision
            .policies
            .iter()
            .filter(|p| !p.sha256.is_empty())
            .map(|p| ResourceDescriptor::sha256(Some(&format!("policy:{}", p.name)), None, &p.sha256)),
    );
    let predicate = Provenance {
        build_definition: BuildDefinition {
            build_type: BUILD_TYPE.to_string(),
            external_parameters: ExternalParameters {
                model: report.model.source.path.display().to_string(),
                clean_data: report.clean_data.source.path.display().to_string(),
                test_data: report.test_data.source.path.display().to_string(),
                purification: report.settings.clone(),
                input: report.input.clone(),
                trigger: report.after.attack.as_ref().map(|a| a.trigger.clone()),
            },
            internal_parameters: InternalParameters { device: report.device.clone() },
            resolved_dependencies: dependencies,
        },
        run_details: RunDetails {
            builder: Builder { id: BUILDER_ID.to_string(), version: fstgate_version() },
            metadata: BuildMetadata {
                invocation_id: report_sha256.to_string(),
                started_on: report.started_at.clone(),
                finished_on: report.finished_at.clone(),
            },
            byproducts: vec![ResourceDescriptor::sha256(Some(REPORT_FILE), None, report_sha256)],
        },
    };
    Statement::new(vec![ResourceDescriptor::sha256(Some(MODEL_FILE), None, model_sha256)], PROVENANCE_TYPE, predicate)
}

fn decision_statement(
    report: &Report,
    decision: &Decision,
    model_sha256: &str,
    provenance_sha256: &str,
) -> Statement<VerificationSummary> {
    // Names the code and the configuration of every policy that ran.
    let policy_set: String =
        decision.policies.iter().map(|p| format!("{}  {}  {}\n", p.sha256, p.config_sha256(), p.name)).collect();
    let predicate = VerificationSummary {
        verifier: Builder { id: VERIFIER_ID.to_string(), version: fstgate_version() },
        time_verified: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        resource_uri: MODEL_FILE.to_string(),
        policy: ResourceDescriptor::sha256(
            None,
            Some("urn:fstgate:policy-set"),
            &hex::encode(Sha256::digest(policy_set.as_bytes())),
        ),
        input_attestations: vec![ResourceDescriptor::sha256(None, Some(PROVENANCE_FILE), provenance_sha256)],
        verification_result: if decision.releasable { VerificationResult::Passed } else { VerificationResult::Failed },
        verified_levels: if decision.releasable { vec![RELEASE_LEVEL.to_string()] } else { Vec::new() },
        slsa_version: "1.0".to_string(),
        fstgate: DecisionRecord::new(decision, &report.summary),
    };
    Statement::new(vec![ResourceDescriptor::sha256(Some(MODEL_FILE), None, model_sha256)], VSA_TYPE, predicate)
}

/// Signs the purified model directory `dir` (holding model.pt and report.json): writes the
/// provenance, the decision record, then the model_signing bundle over all of them. Meant for
/// a staging directory that is renamed to `model_name` afterwards.
pub fn attest(dir: &Path, model_name: &str, report: &Report, decision: &Decision, key: &SigningKey) -> Result<()> {
    let model_sha256 = sha256_file(&dir.join(MODEL_FILE))?;
    let report_sha256 = sha256_file(&dir.join(REPORT_FILE))?;
    if model_sha256 != report.output.sha256 {
        return Err(Error::Attestation(format!("{MODEL_FILE} does not match the report's output digest")));
    }
    let provenance = sign_statement(&provenance(report, decision, &model_sha256, &report_sha256), key)?;
    crate::fsutil::write_json(&dir.join(PROVENANCE_FILE), &provenance)?;
    let provenance_sha256 = sha256_file(&dir.join(PROVENANCE_FILE))?;
    let decision_envelope =
        sign_statement(&decision_statement(report, decision, &model_sha256, &provenance_sha256), key)?;
    crate::fsutil::write_json(&dir.join(DECISION_FILE), &decision_envelope)?;
    sign_directory(dir, model_name, SIGNATURE_FILE, key)
}

/// What `verify` established.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Every file the model_signing bundle covers, relative to the directory.
    pub files: Vec<String>,
    /// The model the statements say was purified: its registry URI, or the file it was.
    pub model: String,
    /// sha256 (hex) of the purified model.pt.
    pub model_sha256: String,
    /// sha256 (hex) of the original model the provenance names.
    pub original_model_sha256: String,
    /// The signed decision: the verdicts and the metrics.
    pub decision: DecisionRecord,
    /// When the decision was signed (its statement's `timeVerified`).
    pub signed_at: std::time::SystemTime,
    /// The signing certificate's subject, when verified against root certificates.
    pub certificate_subject: Option<String>,
}

fn read_envelope(dir: &Path, name: &str) -> Result<Envelope> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Attestation(format!("{name} is not a DSSE envelope: {e}")))
}

fn open_statement<P: serde::de::DeserializeOwned>(
    dir: &Path,
    name: &str,
    key: &PublicKey,
    predicate_type: &str,
) -> Result<Statement<P>> {
    let payload = read_envelope(dir, name)?
        .verify(key, IN_TOTO_PAYLOAD_TYPE)
        .map_err(|e| Error::Attestation(format!("{name}: {e}")))?;
    let value: serde_json::Value = serde_json::from_slice(&payload)
        .map_err(|e| Error::Attestation(format!("{name}: payload is not JSON: {e}")))?;
    if value["_type"] != statement::STATEMENT_TYPE || value["predicateType"] != predicate_type {
        return Err(Error::Attestation(format!("{name}: not an in-toto Statement v1 with predicate {predicate_type}")));
    }
    serde_json::from_value(value).map_err(|e| Error::Attestation(format!("{name}: malformed predicate: {e}")))
}

fn subject_digest<'a, P>(statement: &'a Statement<P>, name: &str, file: &str) -> Result<&'a str> {
    match statement.subject.as_slice() {
        [subject] if subject.name.as_deref() == Some(MODEL_FILE) => {
            subject.sha256_digest().ok_or_else(|| Error::Attestation(format!("{name}: subject has no sha256 digest")))
        }
        _ => Err(Error::Attestation(format!("{name}: expected exactly one subject, {file}"))),
    }
}

/// Checks every signature with `key`, every digest against the files, and the chain from the
/// decision to the provenance to the original model (`original_model`, when given, is hashed
/// and must be the one the provenance names).
pub fn verify(dir: &Path, key: &PublicKey, original_model: Option<&Path>, model: Option<&str>) -> Result<Verified> {
    let files = verify_directory(dir, SIGNATURE_FILE, key)?;
    for required in [MODEL_FILE, REPORT_FILE, PROVENANCE_FILE, DECISION_FILE] {
        if !files.iter().any(|f| f == required) {
            return Err(Error::Attestation(format!("{required} is missing from the signed directory")));
        }
    }
    let model_sha256 = sha256_file(&dir.join(MODEL_FILE))?;
    let report_sha256 = sha256_file(&dir.join(REPORT_FILE))?;

    let provenance: Statement<Provenance> = open_statement(dir, PROVENANCE_FILE, key, PROVENANCE_TYPE)?;
    if subject_digest(&provenance, PROVENANCE_FILE, MODEL_FILE)? != model_sha256 {
        return Err(Error::Attestation(format!(
            "{PROVENANCE_FILE} attests another model: its subject digest is not the sha256 of {MODEL_FILE}"
        )));
    }
    let byproduct = provenance.predicate.run_details.byproducts.iter().find(|b| b.name.as_deref() == Some(REPORT_FILE));
    if byproduct.and_then(ResourceDescriptor::sha256_digest) != Some(report_sha256.as_str()) {
        return Err(Error::Attestation(format!("{REPORT_FILE} is not the report the provenance recorded")));
    }
    let original_dependency = provenance
        .predicate
        .build_definition
        .resolved_dependencies
        .iter()
        .find(|d| d.name.as_deref() == Some("original-model"))
        .ok_or_else(|| Error::Attestation(format!("{PROVENANCE_FILE} names no original model")))?;
    let original = original_dependency
        .sha256_digest()
        .ok_or_else(|| Error::Attestation(format!("{PROVENANCE_FILE} gives the original model no sha256")))?
        .to_string();
    let named = provenance.predicate.build_definition.external_parameters.model.clone();
    if let Some(expected) = model {
        let uri = original_dependency.uri.as_deref().unwrap_or("");
        if named != expected || !(uri == expected || uri.strip_prefix("file://") == Some(expected)) {
            return Err(Error::Attestation(format!(
                "the statements were made for `{named}`, not `{expected}`: a release of another model"
            )));
        }
    }
    let report: Report =
        serde_json::from_slice(&std::fs::read(dir.join(REPORT_FILE)).map_err(|e| Error::io(dir.join(REPORT_FILE), e))?)
            .map_err(|e| Error::Attestation(format!("{REPORT_FILE} is not a report: {e}")))?;
    if report.model.source.sha256 != original {
        return Err(Error::Attestation("the report and the provenance name different original models".into()));
    }
    if let Some(path) = original_model {
        let actual = sha256_file(path)?;
        if actual != original {
            return Err(Error::Attestation(format!(
                "{} is not the original model the provenance names (sha256 {actual}, expected {original})",
                path.display()
            )));
        }
    }

    let decision: Statement<VerificationSummary> = open_statement(dir, DECISION_FILE, key, VSA_TYPE)?;
    if subject_digest(&decision, DECISION_FILE, MODEL_FILE)? != model_sha256 {
        return Err(Error::Attestation(format!(
            "{DECISION_FILE} attests another model: its subject digest is not the sha256 of {MODEL_FILE}"
        )));
    }
    let provenance_sha256 = sha256_file(&dir.join(PROVENANCE_FILE))?;
    if !decision.predicate.input_attestations.iter().any(|a| a.sha256_digest() == Some(provenance_sha256.as_str())) {
        return Err(Error::Attestation(format!("{DECISION_FILE} was made on another provenance")));
    }
    let signed_at = humantime::parse_rfc3339(&decision.predicate.time_verified)
        .map_err(|_| Error::Attestation(format!("{DECISION_FILE}: timeVerified is not an RFC 3339 time")))?;
    let record = decision.predicate.fstgate;
    let passed = decision.predicate.verification_result == VerificationResult::Passed;
    if record.releasable != passed || record.releasable != Decision::from_results(record.policies.clone()).releasable {
        return Err(Error::Attestation(format!(
            "{DECISION_FILE} is inconsistent: its result does not follow from its verdicts"
        )));
    }
    Ok(Verified {
        files,
        model: named,
        model_sha256,
        original_model_sha256: original,
        decision: record,
        signed_at,
        certificate_subject: None,
    })
}

/// [`verify`] for a release signed with a certificate chain: the key is the one the bundle's
/// signing certificate certifies, and the chain must lead to one of `roots` with every
/// certificate valid when the decision was signed. Without a trusted timestamp that time is
/// the signer's own claim: a certificate's expiry does not stop a holder of its key from
/// dating a signature inside it (revocation is not checked either).
pub fn verify_with_roots(
    dir: &Path,
    roots: &TrustRoots,
    original_model: Option<&Path>,
    model: Option<&str>,
) -> Result<Verified> {
    let chain = bundle_certificate_chain(dir, SIGNATURE_FILE)?.ok_or_else(|| {
        Error::Attestation(format!("{SIGNATURE_FILE} carries no certificate chain: it was signed with a bare key"))
    })?;
    let key = PublicKey::from_spki_der(&chain.leaf_spki()?)?;
    let mut verified = verify(dir, &key, original_model, model)?;
    chain.verify(roots, verified.signed_at)?;
    verified.certificate_subject = Some(chain.subject()?);
    Ok(verified)
}
