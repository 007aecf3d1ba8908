//! The library's error type: every failure names the input that caused it.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model {path}: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("classification head: {0}")]
    Head(String),
    #[error("data {path}: {reason}")]
    Data { path: PathBuf, reason: String },
    #[error("data does not fit the model: {0}")]
    DataModelMismatch(String),
    #[error("invalid setting: {0}")]
    Settings(String),
    #[error("invalid trigger spec `{spec}`: {reason}")]
    Trigger { spec: String, reason: String },
    #[error("device: {0}")]
    Device(String),
    /// The process that ran the uploaded model failed, was killed or timed out.
    #[error("model worker: {0}")]
    Worker(String),
    #[error("training diverged: {0}")]
    NonFinite(String),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key {0}")]
    Key(String),
    #[error("attestation: {0}")]
    Attestation(String),
    #[error("policy plugin host: {0}")]
    PluginHost(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("configuration {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("object store {location}: {reason}")]
    Store { location: String, reason: String },
    #[error("model registry {location}: {reason}")]
    Registry { location: String, reason: String },
    #[error("job store {path}: {reason}")]
    JobStore { path: PathBuf, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Data { path: path.into(), reason: reason.into() }
    }
    pub fn store(location: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        Error::Store { location: location.to_string(), reason: reason.to_string() }
    }
    pub fn registry(location: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        Error::Registry { location: location.to_string(), reason: reason.to_string() }
    }
    pub fn model(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Model { path: path.into(), reason: reason.into() }
    }
}
