//! A registry version's or a run's files: proxied by the tracking server (`mlflow-artifacts:/`,
//! under `/api/2.0/mlflow-artifacts/artifacts/`) or in an object store the server points at
//! (`s3://`, `gs://`, `az://`, `file://`), opened with the source's store options.
use std::collections::BTreeMap;
use std::path::Path;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::Method;
use serde::Deserialize;

use super::MlflowClient;
use crate::error::{Error, Result};
use crate::store::{DownloadBudget, FileDigest, Location, StoreConfig};

/// Characters escaped in one path segment of an artifact URL.
const SEGMENT: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'%').add(b'/').add(b'<').add(b'>').add(b'?');

/// Where a version's or a run's artifacts live, and how they are read and written.
pub enum ArtifactRoot {
    /// Through the tracking server's artifact proxy (`mlflow-artifacts:/`).
    Proxied {
        /// The client for the tracking server that proxies the artifacts.
        client: MlflowClient,
        /// The root's path under the proxy, without leading or trailing `/`.
        path: String,
    },
    /// Directly in an object store (`s3://`, `gs://`, `az://`, `file://`).
    Store(Location),
}

#[derive(Deserialize)]
struct Listing {
    #[serde(default)]
    files: Vec<ListedFile>,
}

#[derive(Deserialize)]
struct ListedFile {
    path: String,
    #[serde(default)]
    is_dir: bool,
}

impl ArtifactRoot {
    /// Where `uri` (an artifact URI the server gave) is read and written.
    pub fn resolve(client: &MlflowClient, uri: &str, store_options: &BTreeMap<String, String>) -> Result<Self> {
        if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
            // `mlflow-artifacts:/path` or `mlflow-artifacts://host:port/path`: always through the
            // configured tracking server, which holds the credentials.
            let path = match rest.strip_prefix("//") {
                Some(authority_and_path) => authority_and_path.split_once('/').map_or("", |(_, p)| p),
                None => rest.trim_start_matches('/'),
            };
            return Ok(ArtifactRoot::Proxied { client: client.clone(), path: path.trim_end_matches('/').to_string() });
        }
        if ["s3://", "gs://", "az://", "abfss://", "file://"].iter().any(|scheme| uri.starts_with(scheme)) {
            let config = StoreConfig { url: uri.to_string(), options: store_options.clone() };
            return Ok(ArtifactRoot::Store(config.open()?));
        }
        Err(Error::registry(
            client.url(),
            format!("artifact URI `{uri}`: only mlflow-artifacts:/, s3://, gs://, az:// and file:// are supported"),
        ))
    }

    /// Downloads every file under the root into `dir`; returns each file's relative path and sha256.
    pub async fn download(&self, dir: &Path, budget: &mut DownloadBudget) -> Result<Vec<FileDigest>> {
        match self {
            ArtifactRoot::Store(location) => location.download_prefix(&location.prefix, dir, |_| false, budget).await,
            ArtifactRoot::Proxied { client, path } => {
                let mut files = Vec::new();
                let mut pending = vec![String::new()];
                while let Some(relative) = pending.pop() {
                    let listed = join(path, &relative);
                    let url = client.endpoint("api/2.0/mlflow-artifacts/artifacts")?;
                    let request = client.request(Method::GET, url).query(&[("path", &listed)]);
                    let bytes = proxied(client, request, dir, &mut DownloadBudget::new(RESPONSE_LIMIT)).await?;
                    let listing: Listing = serde_json::from_slice(&bytes)
                        .map_err(|e| client.error("artifacts", format!("listing {listed}: {e}")))?;
                    for file in listing.files {
                        let name = file.path.rsplit('/').next().unwrap_or_default();
                        if matches!(name, "" | "." | "..") || name.contains('\\') {
                            return Err(
                                client.error("artifacts", format!("refusing the artifact name `{}`", file.path))
                            );
                        }
                        let child = join(&relative, name);
                        if file.is_dir {
                            pending.push(child);
                        } else {
                            let request = client.request(Method::GET, file_url(client, path, &child)?);
                            let bytes = proxied(client, request, dir, budget).await?;
                            let local = child.split('/').fold(dir.to_path_buf(), |p, part| p.join(part));
                            files.push(crate::store::write_file(&local, &child, &bytes)?);
                        }
                    }
                }
                files.sort();
                Ok(files)
            }
        }
    }

    /// Writes `relative` (a `/`-separated path) under the root.
    pub async fn upload(&self, relative: &str, bytes: Vec<u8>) -> Result<()> {
        match self {
            ArtifactRoot::Store(location) => {
                let key = location.key(&relative.split('/').collect::<Vec<_>>());
                object_store::ObjectStoreExt::put(&*location.store, &key, bytes.into())
                    .await
                    .map(drop)
                    .map_err(|e| location.error(format!("{key}: {e}")))
            }
            ArtifactRoot::Proxied { client, path } => {
                let request = client.request(Method::PUT, file_url(client, path, relative)?).body(bytes);
                let mut budget = DownloadBudget::new(RESPONSE_LIMIT);
                proxied(client, request, Path::new(relative), &mut budget).await.map(drop)
            }
        }
    }
}

fn join(base: &str, child: &str) -> String {
    match (base.is_empty(), child.is_empty()) {
        (true, _) => child.to_string(),
        (_, true) => base.to_string(),
        _ => format!("{base}/{child}"),
    }
}

fn file_url(client: &MlflowClient, root: &str, relative: &str) -> Result<url::Url> {
    let encoded: Vec<String> =
        join(root, relative).split('/').map(|segment| utf8_percent_encode(segment, SEGMENT).to_string()).collect();
    client.endpoint(&format!("api/2.0/mlflow-artifacts/artifacts/{}", encoded.join("/")))
}

/// Sends an artifact request; any answer but 2xx is an error naming the status.
/// A proxied request's body, read chunk by chunk against `budget` (`dir` names the download in
/// the error).
async fn proxied(
    client: &MlflowClient,
    request: reqwest::RequestBuilder,
    dir: &Path,
    budget: &mut DownloadBudget,
) -> Result<Vec<u8>> {
    let mut response = request.send().await.map_err(|e| client.error("artifacts", e))?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| client.error("artifacts", e))? {
        if status.is_success() {
            budget.take(dir, chunk.len())?;
        } else if body.len() >= 300 {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let body = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Err(client.error("artifacts", format!("HTTP {}: {body}", status.as_u16())));
    }
    Ok(body)
}

/// The most bytes of an artifact listing, or of the answer to an upload, read from the server.
const RESPONSE_LIMIT: u64 = 16 << 20;
