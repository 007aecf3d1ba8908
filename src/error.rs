//! The library's error type: every failure names the input that caused it.
use std::path::PathBuf;

/// Everything that can go wrong in fstgate, each naming the input it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// A model cannot be loaded or is refused: not a TorchScript classifier, ops or code the
    /// gate does not run, or an upload over its size limit.
    #[error("model {path}: {reason}")]
    Model {
        /// The model file, or the registry's URI for it.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No classification head can be found, or the one named with `--head` is missing,
    /// ambiguous or has the wrong number of outputs.
    #[error("classification head: {0}")]
    Head(String),
    /// A data set cannot be read or is malformed.
    #[error("data {path}: {reason}")]
    Data {
        /// The data file or directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The data does not fit the model: image size, channels or number of classes differ.
    #[error("data does not fit the model: {0}")]
    DataModelMismatch(String),
    /// A purification setting is out of range.
    #[error("invalid setting: {0}")]
    Settings(String),
    /// A trigger spec cannot be parsed or does not fit the images.
    #[error("invalid trigger spec `{spec}`: {reason}")]
    Trigger {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The requested device is unknown or unavailable, or could not do what was asked of it.
    #[error("device: {0}")]
    Device(String),
    /// The process that ran the uploaded model failed, was killed or timed out.
    #[error("model worker: {0}")]
    Worker(String),
    /// Training produced a non-finite loss or weights (for a strength search: at every candidate).
    #[error("training diverged: {0}")]
    NonFinite(String),
    /// libtorch reported an error.
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    /// A file or directory could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why it could not be written.
        #[source]
        source: std::io::Error,
    },
    /// A signing key or certificate chain is missing, unreadable or malformed.
    #[error("key {0}")]
    Key(String),
    /// An attestation cannot be made or does not verify: a bad signature, a digest that does not
    /// match, a missing or inconsistent statement, an untrusted certificate chain.
    #[error("attestation: {0}")]
    Attestation(String),
    /// The policy plugin host failed: the WebAssembly engine or the compiled-plugin cache.
    #[error("policy plugin host: {0}")]
    PluginHost(String),
    /// A JSON document could not be parsed or serialised.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A configuration file cannot be parsed or is invalid.
    #[error("configuration {path}: {reason}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An object store operation failed.
    #[error("object store {location}: {reason}")]
    Store {
        /// The store or object, credentials redacted.
        location: String,
        /// What failed, credentials redacted.
        reason: String,
    },
    /// A model registry request failed or had an unexpected answer.
    #[error("model registry {location}: {reason}")]
    Registry {
        /// The registry's address, credentials redacted.
        location: String,
        /// What failed, credentials redacted.
        reason: String,
    },
    /// The job store (SQLite file or PostgreSQL server, named without credentials) failed.
    #[error("job store {location}: {reason}")]
    JobStore {
        /// The SQLite file or the PostgreSQL server, without credentials.
        location: String,
        /// What failed.
        reason: String,
    },
}

/// A result whose error is fstgate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`]: `path` could not be read.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    /// An [`Error::Data`] about the data set at `path`.
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
    /// An [`Error::Model`] about the model at `path`.
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
