//! A client for the MLflow tracking server's REST API (2.0): the model registry calls the
//! pipeline needs, and artifacts, whether the server proxies them (`mlflow-artifacts:/`) or they
//! live in an object store (`s3://...`). The access token is sent as a bearer token and never
//! appears in errors or logs.
pub mod artifacts;
pub mod webhook;

use std::fmt;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use url::Url;

use crate::error::{Error, Result};
pub use artifacts::ArtifactRoot;

/// Only registry versions in this state have their files in place.
pub const READY: &str = "READY";

/// A client for one tracking server, with its credentials. Cheap to clone.
#[derive(Clone)]
pub struct MlflowClient {
    /// The tracking server's URL, without credentials.
    base: Url,
    http: reqwest::Client,
    token: Option<String>,
    /// User and password given in the tracking URI, sent as HTTP basic auth.
    basic_auth: Option<(String, Option<String>)>,
}

impl fmt::Debug for MlflowClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlflowClient").field("url", &self.base.as_str()).field("token", &self.token.is_some()).finish()
    }
}

/// A registered model version, as the registry returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelVersion {
    /// The registered model's name.
    pub name: String,
    /// The version number, as MLflow's string.
    pub version: String,
    /// When the version was registered, in milliseconds since the Unix epoch.
    pub creation_timestamp: i64,
    /// `READY` once its files are in place (see [`READY`]); empty if the server omits it.
    #[serde(default)]
    pub status: String,
    /// The URI the version's files were registered from (`runs:/...`, `s3://...`).
    #[serde(default)]
    pub source: String,
    /// The version's tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl ModelVersion {
    /// The value of the tag `key`, if the version has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
    }
}

/// A key-value tag on a model version.
#[derive(Debug, Clone, Deserialize)]
pub struct Tag {
    /// Tag name.
    pub key: String,
    /// Tag value.
    pub value: String,
}

/// One page of a model-version search.
#[derive(Debug, Deserialize)]
pub struct VersionPage {
    /// The versions on this page, newest first.
    #[serde(default)]
    pub model_versions: Vec<ModelVersion>,
    /// The token for the next page; absent or empty on the last.
    pub next_page_token: Option<String>,
}

/// An MLflow run, as created for a publication.
#[derive(Debug, Clone, Deserialize)]
pub struct RunInfo {
    /// The run's id.
    pub run_id: String,
    /// Where the run's artifacts go (`mlflow-artifacts:/...`, `s3://...`).
    pub artifact_uri: String,
}

/// An error answer from the server: its HTTP status and MLflow's error code.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
}

const NOT_FOUND: &str = "RESOURCE_DOES_NOT_EXIST";
const ALREADY_EXISTS: &str = "RESOURCE_ALREADY_EXISTS";

impl MlflowClient {
    /// `tracking_uri` is the server's base URL (`http://host:5000`, or with a path prefix).
    pub fn new(tracking_uri: &str, token: Option<String>) -> Result<Self> {
        let mut base = Url::parse(tracking_uri).map_err(|e| Error::registry(tracking_uri, e))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::registry(tracking_uri, "the tracking URI must be http:// or https://"));
        }
        // `user:password@` becomes HTTP basic auth and leaves the URL, so no message, log or
        // report that shows the URL can show them.
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        let basic_auth = (!base.username().is_empty() || base.password().is_some())
            .then(|| (decode(base.username()), base.password().map(decode)));
        let _ = base.set_username("");
        let _ = base.set_password(None);
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| Error::registry(tracking_uri, e))?;
        Ok(MlflowClient { base, http, token, basic_auth })
    }

    /// The tracking server's base URL, without credentials, ending in `/`.
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    fn endpoint(&self, path: &str) -> Result<Url> {
        self.base.join(path).map_err(|e| Error::registry(&self.base, e))
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match (&self.token, &self.basic_auth) {
            (Some(token), _) => request.bearer_auth(token),
            (None, Some((user, password))) => request.basic_auth(user, password.as_deref()),
            (None, None) => request,
        }
    }

    fn error(&self, endpoint: &str, reason: impl fmt::Display) -> Error {
        Error::registry(&self.base, format!("{endpoint}: {reason}"))
    }

    /// One REST call; MLflow's error answers come back as `ApiError`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<std::result::Result<T, ApiError>> {
        let url = self.endpoint(&format!("api/2.0/mlflow/{endpoint}"))?;
        let mut request = self.request(method, url).query(query);
        if let Some(body) = body {
            request = request.json(&body);
        }
        // reqwest's error text names the URL, never the Authorization header.
        let response = request.send().await.map_err(|e| self.error(endpoint, e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.error(endpoint, e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map(Ok)
                .map_err(|e| self.error(endpoint, format!("unexpected answer: {e}")));
        }
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let text = |key: &str| answer.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        let message = match text("message") {
            m if m.is_empty() => String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
            m => m,
        };
        Ok(Err(ApiError { status, code: text("error_code"), message }))
    }

    /// A call whose every error answer is an error.
    async fn call_ok<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<T> {
        self.call(method, endpoint, query, body).await?.map_err(|e| self.api_error(endpoint, e))
    }

    fn api_error(&self, endpoint: &str, e: ApiError) -> Error {
        self.error(endpoint, format!("HTTP {} {}: {}", e.status.as_u16(), e.code, e.message))
    }

    /// Model versions, newest first, matching `filter` (MLflow's search syntax) if given.
    pub async fn search_versions(&self, filter: Option<&str>, page_token: Option<&str>) -> Result<VersionPage> {
        let mut query = vec![("order_by", "creation_timestamp DESC"), ("max_results", "200")];
        query.extend(filter.map(|f| ("filter", f)));
        query.extend(page_token.map(|t| ("page_token", t)));
        self.call_ok(Method::GET, "model-versions/search", &query, None).await
    }

    /// Visits versions newest first, page by page, until `visit` returns false or none are left.
    pub async fn visit_versions(
        &self,
        filter: Option<&str>,
        mut visit: impl FnMut(&ModelVersion) -> bool,
    ) -> Result<()> {
        let mut page_token: Option<String> = None;
        loop {
            let page = self.search_versions(filter, page_token.as_deref()).await?;
            if !page.model_versions.iter().all(&mut visit) {
                return Ok(());
            }
            match page.next_page_token {
                Some(token) if !token.is_empty() => page_token = Some(token),
                _ => return Ok(()),
            }
        }
    }

    /// The version, or None if the registry has no such version.
    pub async fn get_version(&self, name: &str, version: &str) -> Result<Option<ModelVersion>> {
        #[derive(Deserialize)]
        struct Answer {
            model_version: ModelVersion,
        }
        let query = [("name", name), ("version", version)];
        match self.call::<Answer>(Method::GET, "model-versions/get", &query, None).await? {
            Ok(answer) => Ok(Some(answer.model_version)),
            Err(e) if e.code == NOT_FOUND => Ok(None),
            Err(e) => Err(self.api_error("model-versions/get", e)),
        }
    }

    /// Where the version's files are: `mlflow-artifacts:/...`, `s3://...`, ...
    pub async fn download_uri(&self, name: &str, version: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Answer {
            artifact_uri: String,
        }
        let query = [("name", name), ("version", version)];
        let answer: Answer = self.call_ok(Method::GET, "model-versions/get-download-uri", &query, None).await?;
        Ok(answer.artifact_uri)
    }

    /// Creates the registered model unless it exists.
    pub async fn ensure_registered_model(&self, name: &str) -> Result<()> {
        let endpoint = "registered-models/create";
        match self.call::<Value>(Method::POST, endpoint, &[], Some(json!({ "name": name }))).await? {
            Ok(_) => Ok(()),
            Err(e) if e.code == ALREADY_EXISTS => Ok(()),
            Err(e) => Err(self.api_error(endpoint, e)),
        }
    }

    /// The experiment's id, creating it if needed.
    pub async fn experiment_id(&self, name: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Experiment {
            experiment_id: String,
        }
        #[derive(Deserialize)]
        struct Found {
            experiment: Experiment,
        }
        let query = [("experiment_name", name)];
        match self.call::<Found>(Method::GET, "experiments/get-by-name", &query, None).await? {
            Ok(found) => return Ok(found.experiment.experiment_id),
            Err(e) if e.code == NOT_FOUND => {}
            Err(e) => return Err(self.api_error("experiments/get-by-name", e)),
        }
        let created = self.call::<Experiment>(Method::POST, "experiments/create", &[], Some(json!({ "name": name })));
        match created.await? {
            Ok(experiment) => Ok(experiment.experiment_id),
            // Another watcher created it in between.
            Err(e) if e.code == ALREADY_EXISTS => {
                let found: Found = self.call_ok(Method::GET, "experiments/get-by-name", &query, None).await?;
                Ok(found.experiment.experiment_id)
            }
            Err(e) => Err(self.api_error("experiments/create", e)),
        }
    }

    /// Starts a run named `run_name` in the experiment, tagged as made by fstgate.
    pub async fn create_run(&self, experiment_id: &str, run_name: &str) -> Result<RunInfo> {
        #[derive(Deserialize)]
        struct Run {
            info: RunInfo,
        }
        #[derive(Deserialize)]
        struct Answer {
            run: Run,
        }
        let body = json!({
            "experiment_id": experiment_id,
            "run_name": run_name,
            "start_time": now_millis(),
            "tags": [{ "key": "mlflow.source.name", "value": "fstgate" }],
        });
        let answer: Answer = self.call_ok(Method::POST, "runs/create", &[], Some(body)).await?;
        Ok(answer.run.info)
    }

    /// Marks the run `FINISHED`, now.
    pub async fn finish_run(&self, run_id: &str) -> Result<()> {
        let body = json!({ "run_id": run_id, "status": "FINISHED", "end_time": now_millis() });
        self.call_ok::<Value>(Method::POST, "runs/update", &[], Some(body)).await.map(drop)
    }

    /// Registers a new version of model `name` from `source`, with the run, tags and description.
    pub async fn create_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        tags: &[(String, String)],
        description: &str,
    ) -> Result<ModelVersion> {
        #[derive(Deserialize)]
        struct Answer {
            model_version: ModelVersion,
        }
        let tags: Vec<Value> = tags.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
        let body =
            json!({ "name": name, "source": source, "run_id": run_id, "tags": tags, "description": description });
        let answer: Answer = self.call_ok(Method::POST, "model-versions/create", &[], Some(body)).await?;
        Ok(answer.model_version)
    }

    /// Sets one tag on a model version.
    pub async fn set_version_tag(&self, name: &str, version: &str, key: &str, value: &str) -> Result<()> {
        let body = json!({ "name": name, "version": version, "key": key, "value": value });
        self.call_ok::<Value>(Method::POST, "model-versions/set-tag", &[], Some(body)).await.map(drop)
    }

    /// Points the registered model's `alias` at `version`.
    pub async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        let body = json!({ "name": name, "alias": alias, "version": version });
        self.call_ok::<Value>(Method::POST, "registered-models/alias", &[], Some(body)).await.map(drop)
    }
}

/// Milliseconds since the Unix epoch, MLflow's timestamps.
fn now_millis() -> i64 {
    (crate::jobs::now() * 1000.0) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Credentials in the tracking URI become basic auth and never show: not in the URL the
    /// client reports, its Debug form, or an error about the server.
    #[tokio::test]
    async fn credentials_in_the_tracking_uri_never_show() {
        let client = MlflowClient::new("http://alice:s%33cret@127.0.0.1:9/prefix", None).unwrap();
        assert_eq!(client.url(), "http://127.0.0.1:9/prefix/");
        assert_eq!(client.basic_auth, Some(("alice".to_string(), Some("s3cret".to_string()))));
        assert!(!format!("{client:?}").contains("s3cret"));
        // Port 9 (discard) is closed here: the request fails, and its error names the server only.
        let error = client.get_version("m", "1").await.unwrap_err().to_string();
        assert!(error.contains("127.0.0.1:9") && !error.contains("s3cret") && !error.contains("alice"), "{error}");
        let error = MlflowClient::new("ftp://alice:s3cret@host/", None).unwrap_err().to_string();
        assert!(!error.contains("s3cret"), "{error}");
    }
}
