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
    /// The job store (SQLite file or PostgreSQL server, named without credentials) failed.
    #[error("job store {location}: {reason}")]
    JobStore { location: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Data { path: path.into(), reason: reason.into() }
    }
    /// A store error at `location` (credentials in it are redacted).
    pub fn store(location: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        Error::Store { location: redact_url(&location.to_string()), reason: redact_url(&reason.to_string()) }
    }
    /// A registry error at `location` (credentials in it are redacted).
    pub fn registry(location: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        Error::Registry { location: redact_url(&location.to_string()), reason: redact_url(&reason.to_string()) }
    }
    pub fn model(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Model { path: path.into(), reason: reason.into() }
    }
}

/// `text` with the credentials of every URL in it (`scheme://user:password@host`) replaced by
/// `***`, for anything that may be shown: errors, logs, reports.
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let (before, after) = rest.split_at(scheme_end + 3);
        out.push_str(before);
        // The authority ends at the first `/`, `?`, `#` or whitespace.
        let authority_end =
            after.find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace()).unwrap_or(after.len());
        match after[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &after[at..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_redacted_everywhere() {
        assert_eq!(redact_url("http://alice:s3cret@mlflow:5000/api"), "http://***@mlflow:5000/api");
        assert_eq!(
            redact_url("GET https://tok@h/x failed; see http://u:p@other"),
            "GET https://***@h/x failed; see http://***@other"
        );
        assert_eq!(redact_url("http://host:5000/a@b"), "http://host:5000/a@b", "an @ in the path is no user");
        assert_eq!(redact_url("no url here"), "no url here");
        let error = Error::registry("http://alice:s3cret@mlflow:5000/", "unreachable http://alice:s3cret@mlflow");
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }
}
