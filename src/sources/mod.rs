//! Where models come from: object-store prefixes and MLflow model registries, each a [`Source`]
//! in its own folder (object_store/, mlflow/) that owns its settings, its webhook and what it
//! records after a verdict; adding a kind of registry adds a folder and one line in [`open`].
//! A source finds new complete uploads (`poll`) and downloads one (`download`); an upload's
//! identity is the sha256 of its files, so the same bytes are purified once however often they
//! are seen.
pub mod config;
pub mod mlflow;
pub mod object_store;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::RegistrySource;
use crate::publication::{Outcome, Publisher};
use crate::store::FileDigest;
pub use config::{SourceConfig, SourceKind};
pub use mlflow::{MlflowSource, MlflowSourceConfig};
pub use object_store::ObjectStoreSource;

/// A complete upload found by polling.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    /// `<name>/<version>`.
    pub model: String,
    /// What marks the upload complete (the marker object's key, `models:/<name>/<version>`) and
    /// its version, so that a re-upload or a re-run request is seen as new.
    pub marker: String,
    /// The marker's version (its ETag, or the registry's creation time and re-run tag).
    pub marker_version: String,
}

/// A downloaded upload.
#[derive(Debug)]
pub struct Artifact {
    /// What to load: the TorchScript file, or the MLflow model directory.
    pub model_path: PathBuf,
    /// sha256 over the sorted `sha256  relative/path` lines of every file: the upload's identity.
    pub sha256: String,
}

/// What one poll found, and where the next one may start.
#[derive(Debug, Default)]
pub struct Polled {
    /// The complete uploads found.
    pub uploads: Vec<Upload>,
    /// Persisted by the caller once every upload is queued; None keeps the previous one.
    pub cursor: Option<String>,
}

/// What an accepted webhook delivery asks of the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookAction {
    /// Look at one registry version ([`Source::lookup`]).
    Version {
        /// The registered model's name.
        name: String,
        /// Its version.
        version: String,
    },
    /// List the source again.
    Poll,
    /// Nothing: an event the gate does not act on.
    Nothing,
}

/// An authenticated webhook delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRequest {
    /// The delivery's unique id, when the sender gives one: a second delivery with the same id is
    /// a replay and is refused (the pipeline records ids in its job store).
    pub delivery_id: Option<String>,
    /// What the delivery asks for. Read only once the delivery id is known to be new.
    pub action: std::result::Result<WebhookAction, WebhookRejection>,
}

/// Why a webhook delivery was refused; nothing was done.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WebhookRejection {
    /// Not authenticated: no, or a wrong, signature or token (HTTP 401).
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated but unreadable or outside its time window (HTTP 400).
    #[error("{0}")]
    Malformed(String),
}

/// A place models are registered, opened from its `[[sources]]` section.
#[async_trait]
pub trait Source: Send + Sync {
    /// The source's configured name.
    fn name(&self) -> &str;

    /// How reports name `model` (`<name>/<version>`): as this source's registry does, without
    /// credentials.
    fn registry_source(&self, model: &str) -> RegistrySource;

    /// Every complete upload, from `cursor` on where the source keeps one; the returned cursor is
    /// persisted by the caller once every upload is queued.
    async fn poll(&self, cursor: Option<&str>) -> Result<Polled>;

    /// The upload of one version a webhook named, if it is one to gate.
    async fn lookup(&self, name: &str, version: &str) -> Result<Option<Upload>>;

    /// Downloads the upload of `model` (`<name>/<version>`) into `dir`, which must not exist;
    /// more than `max_bytes` in all is an error in the upload (`Error::Model`).
    async fn download(&self, model: &str, dir: &Path, max_bytes: u64) -> Result<Artifact>;

    /// Authenticates a webhook delivery with the source's secret and reads what it asks for.
    /// `now` is the receiving clock, in seconds since the Unix epoch.
    fn webhook(
        &self,
        secret: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> std::result::Result<WebhookRequest, WebhookRejection>;

    /// Records a published outcome in the registry the model came from, after it is published
    /// (so the registry never shows a model without its attestations); returns the purified
    /// version it registered, if any. `work` is a scratch directory. Stores record nothing.
    async fn record_outcome(
        &self,
        _publisher: &Publisher,
        _outcome_key: &str,
        _outcome: &Outcome,
        _work: &Path,
    ) -> Result<Option<String>> {
        Ok(None)
    }
}

/// Opens the source a configuration section describes.
pub fn open(config: &SourceConfig) -> Result<Box<dyn Source>> {
    Ok(match config.kind {
        SourceKind::ObjectStore => {
            Box::new(ObjectStoreSource::open(&config.name, &config.store, config.models.as_deref())?)
        }
        SourceKind::Mlflow => Box::new(MlflowSource::open(config)?),
    })
}

/// A report's name for `model` (`<name>/<version>`) in a source of `kind` at `location`.
fn registry_source(source: &str, kind: &str, location: String, model: &str, uri: String) -> RegistrySource {
    let (name, version) = model.rsplit_once('/').unwrap_or((model, ""));
    RegistrySource {
        source: source.to_string(),
        kind: kind.to_string(),
        location,
        name: name.to_string(),
        version: version.to_string(),
        uri,
    }
}

/// The upload's identity: sha256 over the sorted `sha256  path` lines of its files, plus a line
/// for a re-run request where there is one.
fn identity(files: &[FileDigest], rerun: Option<&str>) -> String {
    let mut lines: Vec<String> = files.iter().map(|f| format!("{}  {}", f.sha256, f.path)).collect();
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    lines.extend(rerun.map(|token| format!("rerun {token}")));
    hex::encode(Sha256::digest(lines.join("\n").as_bytes()))
}

/// An MLflow model directory (MLmodel at the top) or the upload's one `.pt`/`.pth` file.
fn model_path(dir: &Path, model: &str) -> Result<PathBuf> {
    if dir.join("MLmodel").is_file() {
        return Ok(dir.to_path_buf());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut candidates: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("pt" | "pth")))
        .collect();
    match candidates.len() {
        1 => Ok(candidates.remove(0)),
        0 => Err(Error::model(dir, format!("upload {model} has neither an MLmodel nor a .pt/.pth file"))),
        n => Err(Error::model(dir, format!("upload {model} has {n} .pt/.pth files; which one is the model?"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    fn source(kind: SourceKind, url: &str) -> Box<dyn Source> {
        let store = StoreConfig { url: url.to_string(), options: Default::default() };
        let config =
            SourceConfig { name: "prod".into(), kind, store, webhook_secret_env: None, models: None, mlflow: None };
        open(&config).unwrap()
    }

    #[test]
    fn reports_name_a_model_as_its_registry_does_without_credentials() {
        let mlflow = source(SourceKind::Mlflow, "http://alice:s3cret@127.0.0.1:5000/").registry_source("fraud-cnn/3");
        assert_eq!((mlflow.name.as_str(), mlflow.version.as_str()), ("fraud-cnn", "3"));
        assert_eq!((mlflow.kind.as_str(), mlflow.uri.as_str()), ("mlflow", "models:/fraud-cnn/3"));
        assert!(!mlflow.location.contains("s3cret") && mlflow.location.contains("127.0.0.1:5000"), "{mlflow:?}");
        let store = source(SourceKind::ObjectStore, "memory:///uploads/").registry_source("fraud-cnn/3");
        assert_eq!((store.source.as_str(), store.uri.as_str()), ("prod", "memory:///uploads/fraud-cnn/3/"));
    }
}
