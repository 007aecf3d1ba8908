//! OpenSSF model_signing (PyPI `model-signing` 1.x) signatures with a private key: a Sigstore
//! bundle v0.3 holding a DSSE envelope over an in-toto Statement whose predicate lists every
//! file of the model directory with its sha256. The bundle names the key by its fingerprint
//! (`model_signing verify key`), or carries the key's certificate chain when the key has one
//! (`model_signing verify certificate`). See docs/model-signing-format.md.
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::certificate::CertificateChain;
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

/// Exactly one of the two is written; a reader takes what it needs.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerificationMaterial {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key: Option<PublicKeyHint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x509_certificate_chain: Option<X509CertificateChain>,
}

#[derive(Debug, Serialize, Deserialize)]
struct X509CertificateChain {
    certificates: Vec<X509Certificate>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct X509Certificate {
    /// Base64 of the DER certificate.
    raw_bytes: String,
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
    let verification_material = match key.certificate_chain() {
        Some(chain) => VerificationMaterial {
            public_key: None,
            x509_certificate_chain: Some(X509CertificateChain {
                certificates: chain.der().map(|der| X509Certificate { raw_bytes: STANDARD.encode(der) }).collect(),
            }),
        },
        None => VerificationMaterial {
            public_key: Some(PublicKeyHint { hint: key.public().fingerprint() }),
            x509_certificate_chain: None,
        },
    };
    let bundle = Bundle {
        media_type: BUNDLE_MEDIA_TYPE.into(),
        verification_material,
        dsse_envelope: Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &serde_json::to_vec(&statement)?, key, ""),
    };
    crate::fsutil::write_json(&dir.join(signature), &bundle)
}

fn read_bundle(dir: &Path, signature: &str) -> Result<Bundle> {
    let path = dir.join(signature);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let bundle: Bundle = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Attestation(format!("{signature} is not a Sigstore bundle: {e}")))?;
    if bundle.media_type != BUNDLE_MEDIA_TYPE {
        return Err(Error::Attestation(format!("{signature}: unsupported bundle media type {}", bundle.media_type)));
    }
    Ok(bundle)
}

/// The certificate chain the bundle carries (leaf first), if it was signed with one. Not yet
/// trusted: the caller checks it against its roots.
pub fn bundle_certificate_chain(dir: &Path, signature: &str) -> Result<Option<CertificateChain>> {
    let Some(chain) = read_bundle(dir, signature)?.verification_material.x509_certificate_chain else {
        return Ok(None);
    };
    let certificates = chain
        .certificates
        .iter()
        .map(|c| STANDARD.decode(&c.raw_bytes))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error::Attestation(format!("{signature}: a certificate of the chain is not base64")))?;
    CertificateChain::from_der(certificates).map(Some)
}

/// Checks the bundle's signature and that the directory holds exactly the signed files with
/// the signed digests; returns their names.
pub fn verify_directory(dir: &Path, signature: &str, key: &PublicKey) -> Result<Vec<String>> {
    let bundle = read_bundle(dir, signature)?;
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
