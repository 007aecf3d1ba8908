//! Object stores named by URL: `file:///abs/dir` (or a plain directory path), `memory://`,
//! `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`. Option values written
//! `env:NAME` are read from the environment, so secrets stay out of configuration files.
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, ObjectStoreScheme};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use crate::error::{Error, Result};

/// A store location as configured: a URL and the backend's options.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `file:///abs/dir`, a directory path, `memory://`, `s3://bucket/prefix`, `gs://...`,
    /// `az://...`.
    pub url: String,
    /// Backend options (e.g. `aws_endpoint`, `aws_region`, `aws_allow_http`); a value `env:NAME`
    /// is read from the environment variable NAME.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// An opened store and the prefix everything lives under.
#[derive(Clone)]
pub struct Location {
    /// The object store client.
    pub store: Arc<dyn ObjectStore>,
    /// The path within the store everything lives under (the URL's path).
    pub prefix: StorePath,
    /// The URL as configured, for messages (never an option value).
    pub url: String,
    /// A local directory: keys are paths from the file system's root.
    pub local: bool,
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Location").field("url", &self.url).field("prefix", &self.prefix).finish()
    }
}

impl Location {
    /// Where a key is on this machine's file system, for a local store.
    pub fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        self.local.then(|| std::path::Path::new("/").join(key))
    }

    /// `prefix/part/part...`
    pub fn key(&self, parts: &[&str]) -> StorePath {
        parts.iter().fold(self.prefix.clone(), |path, part| path.join(*part))
    }

    /// An [`Error::Store`] at this location (credentials redacted).
    pub fn error(&self, reason: impl fmt::Display) -> Error {
        Error::store(&self.url, reason)
    }

    /// Downloads every object under `prefix` into `dir`, keeping the keys' relative paths,
    /// except those for which `skip(relative path)` is true. Sorted by path. The listed sizes
    /// are checked against `budget` before anything is read, and the bytes again as they arrive.
    pub async fn download_prefix(
        &self,
        prefix: &StorePath,
        dir: &Path,
        skip: impl Fn(&str) -> bool,
        budget: &mut DownloadBudget,
    ) -> Result<Vec<FileDigest>> {
        let objects: Vec<ObjectMeta> = self.store.list(Some(prefix)).try_collect().await.map_err(|e| self.error(e))?;
        let mut wanted = Vec::new();
        for meta in objects {
            let Some(relative) = meta.location.prefix_match(prefix) else { continue };
            let parts: Vec<String> = relative.map(|p| p.as_ref().to_string()).collect();
            let relative = parts.join("/");
            if !skip(&relative) {
                wanted.push((meta, parts, relative));
            }
        }
        let listed: u64 = wanted.iter().map(|(meta, _, _)| meta.size).sum();
        budget.check_listed(dir, listed)?;
        let mut files = Vec::new();
        for (meta, parts, relative) in wanted {
            let read_error = |e: object_store::Error| self.error(format!("{}: {e}", meta.location));
            let mut stream = self.store.get(&meta.location).await.map_err(read_error)?.into_stream();
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.try_next().await.map_err(read_error)? {
                budget.take(dir, chunk.len())?;
                bytes.extend_from_slice(&chunk);
            }
            // object_store paths have no `..` or empty segments, so this stays inside `dir`.
            let local = parts.iter().fold(dir.to_path_buf(), |p, part| p.join(part));
            files.push(write_file(&local, &relative, &bytes)?);
        }
        files.sort();
        Ok(files)
    }
}

/// A downloaded file: its path relative to what was downloaded, and its sha256 (hex).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileDigest {
    /// Path relative to the downloaded prefix, `/`-separated.
    pub path: String,
    /// sha256 of the file's bytes (hex).
    pub sha256: String,
}

/// The most bytes one upload may hold, counted across its files as they download: an upload
/// is attacker-controlled, and without a bound one large object fills the watcher's memory and
/// disk. Going over is an error in the upload (`Error::Model`), so its job fails for good.
#[derive(Debug)]
pub struct DownloadBudget {
    limit: u64,
    used: u64,
}

impl DownloadBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        DownloadBudget { limit, used: 0 }
    }

    /// Refuses an upload whose listed files already add up to more than the limit.
    pub fn check_listed(&self, dir: &Path, listed: u64) -> Result<()> {
        if listed > self.limit {
            return Err(self.over(dir, listed));
        }
        Ok(())
    }

    /// Counts `bytes` more downloaded; an error once the total passes the limit.
    pub fn take(&mut self, dir: &Path, bytes: usize) -> Result<()> {
        self.used = self.used.saturating_add(bytes as u64);
        if self.used > self.limit {
            return Err(self.over(dir, self.used));
        }
        Ok(())
    }

    fn over(&self, dir: &Path, bytes: u64) -> Error {
        Error::model(
            dir,
            format!(
                "the upload holds more than {} bytes (at least {bytes}); refused without reading further \
                 (max_upload_bytes)",
                self.limit
            ),
        )
    }
}

/// Writes a downloaded file (into a fresh scratch directory) and digests it.
pub(crate) fn write_file(local: &Path, relative: &str, bytes: &[u8]) -> Result<FileDigest> {
    std::fs::create_dir_all(crate::fsutil::parent_dir(local)).map_err(|e| Error::io(local, e))?;
    std::fs::write(local, bytes).map_err(|e| Error::io(local, e))?;
    Ok(FileDigest { path: relative.to_string(), sha256: hex::encode(Sha256::digest(bytes)) })
}

/// Option values may be secrets written inline: only their keys are shown.
impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig").field("url", &self.url).field("options", &self.options.keys()).finish()
    }
}

impl StoreConfig {
    /// Opens the store, reading `env:NAME` option values from the environment; a local directory
    /// is created if missing.
    pub fn open(&self) -> Result<Location> {
        let url = self.parsed_url()?;
        let (scheme, _) = ObjectStoreScheme::parse(&url).map_err(|e| Error::store(&self.url, e))?;
        let mut options = Vec::new();
        for (key, value) in &self.options {
            check_option(&scheme, key).map_err(|reason| Error::store(&self.url, reason))?;
            options.push((key.clone(), resolve_value(key, value).map_err(|reason| Error::store(&self.url, reason))?));
        }
        if let ObjectStoreScheme::Local = &scheme {
            // LocalFileSystem refuses to list a directory that does not exist yet.
            std::fs::create_dir_all(url.path()).map_err(|e| Error::store(&self.url, e))?;
        }
        let (store, prefix) = open_store(&url, &scheme, options).map_err(|e| Error::store(&self.url, e))?;
        let local = matches!(scheme, ObjectStoreScheme::Local);
        Ok(Location { store: Arc::from(store), prefix, url: self.url.clone(), local })
    }

    fn parsed_url(&self) -> Result<Url> {
        if self.url.contains("://") {
            return Url::parse(&self.url).map_err(|e| Error::store(&self.url, e));
        }
        // A plain path: a local directory, made absolute against the working directory.
        let path = std::path::absolute(&self.url).map_err(|e| Error::store(&self.url, e))?;
        Url::from_directory_path(&path).map_err(|()| Error::store(&self.url, "not a usable directory path"))
    }
}

/// The store at `url` with `options` (keys checked by `check_option`). A cloud store starts
/// from its platform's credential chain as its SDK reads it from the environment (S3:
/// `AWS_ACCESS_KEY_ID`..., a web identity token file with `AWS_ROLE_ARN`, container
/// credentials, then instance metadata; GCS: `GOOGLE_SERVICE_ACCOUNT*`, then the metadata
/// server; Azure: `AZURE_*`, workload and managed identity); the file's options win over it.
fn open_store(
    url: &Url,
    scheme: &ObjectStoreScheme,
    options: Vec<(String, String)>,
) -> object_store::Result<(Box<dyn ObjectStore>, StorePath)> {
    macro_rules! from_env {
        ($builder:ty) => {
            Box::new(
                options
                    .into_iter()
                    .filter_map(|(key, value)| Some((key.parse().ok()?, value)))
                    .fold(<$builder>::from_env().with_url(url.as_str()), |builder, (key, value)| {
                        builder.with_config(key, value)
                    })
                    .build()?,
            )
        };
    }
    let store: Box<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::AmazonS3 => from_env!(object_store::aws::AmazonS3Builder),
        ObjectStoreScheme::GoogleCloudStorage => from_env!(object_store::gcp::GoogleCloudStorageBuilder),
        ObjectStoreScheme::MicrosoftAzure => from_env!(object_store::azure::MicrosoftAzureBuilder),
        _ => return object_store::parse_url_opts(url, options),
    };
    Ok((store, StorePath::from_url_path(url.path())?))
}

/// object_store ignores option keys it does not know: an option misspelt in a configuration
/// would silently be lost, so every key must be one the backend reads.
fn check_option(scheme: &ObjectStoreScheme, key: &str) -> std::result::Result<(), String> {
    let known = match scheme {
        ObjectStoreScheme::AmazonS3 => key.parse::<object_store::aws::AmazonS3ConfigKey>().is_ok(),
        ObjectStoreScheme::GoogleCloudStorage => key.parse::<object_store::gcp::GoogleConfigKey>().is_ok(),
        ObjectStoreScheme::MicrosoftAzure => key.parse::<object_store::azure::AzureConfigKey>().is_ok(),
        _ => false,
    };
    if known { Ok(()) } else { Err(format!("unknown option `{key}` for this kind of store")) }
}

/// `env:NAME` reads NAME; an unset variable is named, its value never is.
fn resolve_value(key: &str, value: &str) -> std::result::Result<String, String> {
    match value.strip_prefix("env:") {
        Some(var) => std::env::var(var).map_err(|_| format!("option `{key}`: environment variable {var} is not set")),
        None => Ok(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, options: &[(&str, &str)]) -> StoreConfig {
        StoreConfig { url: url.into(), options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    #[tokio::test]
    async fn an_upload_over_its_budget_is_refused_before_reading_and_while_reading() {
        let location = config("memory://", &[]).open().unwrap();
        for (name, size) in [("a", 600), ("b", 600)] {
            let key = StorePath::from(format!("up/{name}"));
            object_store::ObjectStoreExt::put(&*location.store, &key, vec![1u8; size].into()).await.unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let prefix = StorePath::from("up");
        let (small, large) = (dir.path().join("1"), dir.path().join("2"));
        let err =
            location.download_prefix(&prefix, &small, |_| false, &mut DownloadBudget::new(1000)).await.unwrap_err();
        assert!(matches!(err, Error::Model { .. }) && err.to_string().contains("more than 1000 bytes"), "{err}");
        assert!(!small.exists(), "nothing was written");
        // A listing that understates (an object growing after it was listed) is caught as it reads.
        let mut budget = DownloadBudget::new(1000);
        budget.take(dir.path(), 500).unwrap();
        let err = budget.take(dir.path(), 501).unwrap_err().to_string();
        assert!(err.contains("at least 1001"), "{err}");
        let files = location.download_prefix(&prefix, &large, |_| false, &mut DownloadBudget::new(1200)).await.unwrap();
        assert_eq!(files.len(), 2);
    }

    #[test]
    fn urls_and_options_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let local = config(&dir.path().join("models").display().to_string(), &[]).open().unwrap();
        assert!(local.prefix.as_ref().ends_with("models"), "{:?}", local.prefix);
        config("memory://", &[]).open().unwrap();
        let s3 = config("s3://bucket/models", &[("aws_region", "us-east-1"), ("aws_allow_http", "true")]);
        assert_eq!(s3.open().unwrap().prefix.as_ref(), "models");
        let err = config("s3://bucket", &[("aws_endpont", "http://x")]).open().unwrap_err().to_string();
        assert!(err.contains("unknown option `aws_endpont`"), "{err}");
        let err = config("memory://", &[("aws_region", "x")]).open().unwrap_err().to_string();
        assert!(err.contains("unknown option"), "{err}");
        let err = config("ftp://host/x", &[]).open().unwrap_err().to_string();
        assert!(err.contains("ftp://host/x"), "{err}");
        config("gs://bucket/p", &[("google_service_account_key", "{}")]).parsed_url().unwrap();
    }

    #[test]
    fn secrets_come_from_the_environment_and_are_never_echoed() {
        // SAFETY: this test alone sets this variable.
        unsafe { std::env::set_var("FSTGATE_TEST_STORE_SECRET", "s3cr3t-value") };
        let secret = ("aws_secret_access_key", "env:FSTGATE_TEST_STORE_SECRET");
        config("s3://b", &[("aws_access_key_id", "AKIDTEST"), secret]).open().unwrap();
        // The backend's own error does not echo the secret either.
        let err = config("s3://b", &[secret]).open().unwrap_err().to_string();
        assert!(err.contains("Missing AccessKeyId") && !err.contains("s3cr3t"), "{err}");
        let missing = config("s3://b", &[("aws_secret_access_key", "env:FSTGATE_TEST_UNSET_VAR")]);
        let err = missing.open().unwrap_err().to_string();
        assert!(err.contains("FSTGATE_TEST_UNSET_VAR is not set"), "{err}");
        let inline = config("s3://b", &[("aws_access_key_id", "AKIDTEST"), ("aws_secret_access_key", "s3cr3t-value")]);
        assert!(!format!("{inline:?} {:?}", inline.open().unwrap()).contains("s3cr3t"));
    }
}
