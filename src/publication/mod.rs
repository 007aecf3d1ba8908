//! Publishing a job's result to the destination store, exactly once, never a model without its
//! attestations. Object stores have no rename, so every attempt writes its files under its own
//! key, `<prefix>/<name>/<version>/<sha256[..16]>/attempts/<attempt>/`, each with a conditional
//! put, and only then claims the outcome, `<prefix>/<name>/<version>/<sha256[..16]>/outcome.json`,
//! with one more conditional put (PutMode::Create). The outcome names the attempt whose files
//! are the release. Whoever writes it first wins; a crashed or losing attempt leaves files that no
//! outcome points to. A reader trusts a release only through outcome.json.
pub mod mlflow;

use std::path::Path;

use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::attestation::{DECISION_FILE, MODEL_FILE, PROVENANCE_FILE, REPORT_FILE, SIGNATURE_FILE};
use crate::error::{Error, Result};
use crate::report::Report;
use crate::report::html::REPORT_HTML_FILE;
use crate::store::{Location, StoreConfig};

pub const OUTCOME_FILE: &str = "outcome.json";
pub const OUTCOME_SCHEMA: &str = "fstgate.outcome/v1";

/// A released model's files; a denied one publishes its evidence but not the model.
const RELEASED_FILES: [&str; 6] =
    [MODEL_FILE, REPORT_FILE, REPORT_HTML_FILE, SIGNATURE_FILE, PROVENANCE_FILE, DECISION_FILE];
const DENIED_FILES: [&str; 4] = [REPORT_FILE, REPORT_HTML_FILE, PROVENANCE_FILE, DECISION_FILE];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Release,
    Deny,
}

/// One published file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PublishedFile {
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

/// outcome.json: what happened to one upload, written once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    /// Always `fstgate.outcome/v1`.
    pub schema: String,
    pub source: String,
    /// `<name>/<version>` in the source.
    pub model: String,
    pub artifact_sha256: String,
    pub verdict: Verdict,
    /// Every policy's reasons, prefixed by the policy's name (empty when released).
    pub reasons: Vec<String>,
    /// The directory (relative to the outcome) holding the files below.
    pub files_under: String,
    pub files: Vec<PublishedFile>,
    /// RFC 3339, UTC.
    pub published_at: String,
}

/// What publishing did.
#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    /// This attempt's outcome is the one on record.
    Written { key: String, outcome: Outcome },
    /// An outcome was already there (an earlier attempt, or another watcher, won the race).
    AlreadyThere { key: String, outcome: Outcome },
}

impl Published {
    pub fn outcome(&self) -> &Outcome {
        match self {
            Published::Written { outcome, .. } | Published::AlreadyThere { outcome, .. } => outcome,
        }
    }
    pub fn key(&self) -> &str {
        match self {
            Published::Written { key, .. } | Published::AlreadyThere { key, .. } => key,
        }
    }
}

pub struct Publisher {
    location: Location,
}

impl Publisher {
    pub fn open(config: &StoreConfig) -> Result<Self> {
        Ok(Publisher { location: config.open()? })
    }

    pub fn url(&self) -> &str {
        &self.location.url
    }

    /// Where a published key is on this machine, when the destination is a local directory.
    pub fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        self.location.local_path(key)
    }

    /// `<prefix>/<name>/<version>/<sha256[..16]>`
    fn release_dir(&self, model: &str, artifact_sha256: &str) -> StorePath {
        let mut parts: Vec<&str> = model.split('/').collect();
        parts.push(&artifact_sha256[..16.min(artifact_sha256.len())]);
        self.location.key(&parts)
    }

    /// The outcome already recorded for this upload, if any.
    pub async fn outcome(&self, model: &str, artifact_sha256: &str) -> Result<Option<(String, Outcome)>> {
        let key = self.release_dir(model, artifact_sha256).join(OUTCOME_FILE);
        self.read_outcome(&key).await
    }

    async fn read_outcome(&self, key: &StorePath) -> Result<Option<(String, Outcome)>> {
        let bytes = match self.location.store.get(key).await {
            Ok(got) => got.bytes().await.map_err(|e| self.location.error(format!("{key}: {e}")))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.location.error(format!("{key}: {e}"))),
        };
        let outcome: Outcome = serde_json::from_slice(&bytes)
            .map_err(|e| self.location.error(format!("{key} is not an outcome document: {e}")))?;
        Ok(Some((key.to_string(), outcome)))
    }

    /// Publishes the job directory `dir` (written by `job::run` with a signing key) for
    /// (`source`, `model`, `artifact_sha256`), under a fresh attempt key, then claims the outcome.
    pub async fn publish(
        &self,
        source: &str,
        model: &str,
        artifact_sha256: &str,
        dir: &Path,
        report: &Report,
    ) -> Result<Published> {
        let release_dir = self.release_dir(model, artifact_sha256);
        let outcome_key = release_dir.clone().join(OUTCOME_FILE);
        if let Some((key, outcome)) = self.read_outcome(&outcome_key).await? {
            return Ok(Published::AlreadyThere { key, outcome });
        }
        let verdict = if report.decision.releasable { Verdict::Release } else { Verdict::Deny };
        let names: &[&str] = match verdict {
            Verdict::Release => &RELEASED_FILES,
            Verdict::Deny => &DENIED_FILES,
        };
        let attempt = attempt_id();
        let files_under = format!("attempts/{attempt}");
        let mut files = Vec::new();
        for name in names {
            let path = dir.join(name);
            // Never a model without its attestations: every file must be there before any upload.
            if !path.is_file() {
                return Err(Error::Attestation(format!(
                    "{} has no {name}: publication needs a signed job (configure a signing key)",
                    dir.display()
                )));
            }
        }
        for name in names {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            files.push(PublishedFile {
                name: name.to_string(),
                sha256: hex::encode(Sha256::digest(&bytes)),
                size: bytes.len() as u64,
            });
            let key = release_dir.clone().join("attempts").join(attempt.as_str()).join(*name);
            self.put_new(&key, bytes).await?;
        }
        let reasons = report
            .decision
            .policies
            .iter()
            .flat_map(|p| p.reasons.iter().map(move |r| format!("{}: {r}", p.name)))
            .collect();
        let outcome = Outcome {
            schema: OUTCOME_SCHEMA.into(),
            source: source.into(),
            model: model.into(),
            artifact_sha256: artifact_sha256.into(),
            verdict,
            reasons,
            files_under,
            files,
            published_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        };
        let mut bytes = serde_json::to_vec_pretty(&outcome)?;
        bytes.push(b'\n');
        match self.put_new(&outcome_key, bytes).await {
            Ok(()) => Ok(Published::Written { key: outcome_key.to_string(), outcome }),
            Err(PutError::Exists) => match self.read_outcome(&outcome_key).await? {
                Some((key, outcome)) => Ok(Published::AlreadyThere { key, outcome }),
                None => Err(self.location.error(format!("{outcome_key} exists but cannot be read back"))),
            },
            Err(PutError::Other(e)) => Err(e),
        }
    }

    async fn put_new(&self, key: &StorePath, bytes: Vec<u8>) -> std::result::Result<(), PutError> {
        let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.location.store.put_opts(key, PutPayload::from(bytes), options).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(PutError::Exists),
            Err(e) => Err(PutError::Other(self.location.error(format!("{key}: {e}")))),
        }
    }

    /// Downloads a published outcome's files into `dir` (e.g. to run `fstgate verify` on them).
    pub async fn download(&self, outcome_key: &str, dir: &Path) -> Result<Outcome> {
        let key = StorePath::from(outcome_key);
        let Some((_, outcome)) = self.read_outcome(&key).await? else {
            return Err(self.location.error(format!("no outcome at {outcome_key}")));
        };
        let base = StorePath::from(outcome_key.rsplit_once('/').map_or("", |(dir, _)| dir));
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for file in &outcome.files {
            let key =
                outcome.files_under.split('/').fold(base.clone(), |p, part| p.join(part)).join(file.name.as_str());
            let read_error = |e: object_store::Error| self.location.error(format!("{key}: {e}"));
            let bytes = self.location.store.get(&key).await.map_err(read_error)?.bytes().await.map_err(read_error)?;
            if hex::encode(Sha256::digest(&bytes)) != file.sha256 {
                return Err(self.location.error(format!("{key} does not match the sha256 its outcome records")));
            }
            crate::fsutil::write_atomic(&dir.join(&file.name), &bytes)?;
        }
        Ok(outcome)
    }
}

impl From<Error> for PutError {
    fn from(e: Error) -> Self {
        PutError::Other(e)
    }
}

impl From<PutError> for Error {
    fn from(e: PutError) -> Self {
        match e {
            PutError::Exists => Error::store("destination", "an attempt's file already exists (attempt ids collided)"),
            PutError::Other(e) => e,
        }
    }
}

enum PutError {
    Exists,
    Other(Error),
}

/// 128 random bits, hex: attempts of different processes never share a key.
fn attempt_id() -> String {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}
