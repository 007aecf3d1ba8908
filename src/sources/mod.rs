//! Where models come from: object-store prefixes and MLflow model registries. Each source finds
//! new complete uploads (`poll`) and downloads one (`download`); an upload's identity is the
//! sha256 of its files, so the same bytes are purified once however often they are seen.
pub mod config;
pub mod mlflow;
pub mod object_store;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result, redact_url};
use crate::model::RegistrySource;
use crate::store::FileDigest;
pub use config::{MlflowSourceConfig, SourceConfig, SourceKind};
pub use mlflow::MlflowSource;
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

/// A configured source, opened.
pub enum Source {
    /// A watched object-store prefix.
    ObjectStore(ObjectStoreSource),
    /// An MLflow model registry.
    Mlflow(Box<MlflowSource>),
}

impl Source {
    /// Opens the source a configuration section describes.
    pub fn open(config: &SourceConfig) -> Result<Self> {
        Ok(match config.kind {
            SourceKind::ObjectStore => {
                Source::ObjectStore(ObjectStoreSource::open(&config.name, &config.store, config.models.as_deref())?)
            }
            SourceKind::Mlflow => Source::Mlflow(Box::new(MlflowSource::open(config)?)),
        })
    }

    /// The source's configured name.
    pub fn name(&self) -> &str {
        match self {
            Source::ObjectStore(source) => &source.name,
            Source::Mlflow(source) => &source.name,
        }
    }

    /// How reports name `model` (`<name>/<version>`): as this source's registry does.
    pub fn registry_source(&self, model: &str) -> RegistrySource {
        let (name, version) = model.rsplit_once('/').unwrap_or((model, ""));
        let (kind, location, uri) = match self {
            Source::ObjectStore(source) => {
                let location = redact_url(source.url());
                let uri = format!("{}/{model}/", location.trim_end_matches('/'));
                ("object-store", location, uri)
            }
            Source::Mlflow(source) => {
                ("mlflow", redact_url(source.client().url()), format!("models:/{name}/{version}"))
            }
        };
        RegistrySource {
            source: self.name().to_string(),
            kind: kind.to_string(),
            location,
            name: name.to_string(),
            version: version.to_string(),
            uri,
        }
    }

    /// Every complete upload, from `cursor` on where the source keeps one.
    pub async fn poll(&self, cursor: Option<&str>) -> Result<Polled> {
        match self {
            Source::ObjectStore(source) => Ok(Polled { uploads: source.poll().await?, cursor: None }),
            Source::Mlflow(source) => source.poll(cursor).await,
        }
    }

    /// Downloads the upload of `model` (`<name>/<version>`) into `dir`, which must not exist;
    /// more than `max_bytes` in all is an error in the upload (`Error::Model`).
    pub async fn download(&self, model: &str, dir: &Path, max_bytes: u64) -> Result<Artifact> {
        match self {
            Source::ObjectStore(source) => source.download(model, dir, max_bytes).await,
            Source::Mlflow(source) => source.download(model, dir, max_bytes).await,
        }
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

    fn source(kind: SourceKind, url: &str) -> Source {
        let store = StoreConfig { url: url.to_string(), options: Default::default() };
        let config =
            SourceConfig { name: "prod".into(), kind, store, webhook_secret_env: None, models: None, mlflow: None };
        Source::open(&config).unwrap()
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
