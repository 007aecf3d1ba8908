//! An MLflow Model Registry source. Polling pages through model versions newest first and stops
//! at a persisted cursor (the newest creation time seen, held back to the oldest version still
//! registering, less an overlap); webhooks name the version at once. Versions fstgate registered
//! itself (tag `fstgate.purified_from`) are never picked up. Setting the tag `fstgate.rerun` on a
//! version (to any new value) asks for it to be gated again: the value is part of the upload's
//! identity. After a verdict, registration.rs records it in the registry.
mod config;
pub mod registration;

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;
use globset::{Glob, GlobMatcher};
use reqwest::header::HeaderMap;

use super::config::SourceConfig;
use super::{Artifact, Polled, Source, Upload, WebhookAction, WebhookRejection, WebhookRequest, identity, model_path};
use crate::error::{Error, Result, redact_url};
use crate::mlflow::webhook::{self, Delivery, Event, Rejection};
use crate::mlflow::{ArtifactRoot, MlflowClient, ModelVersion, READY};
use crate::model::RegistrySource;
use crate::publication::{Outcome, Publisher};
use crate::store::DownloadBudget;
pub use config::MlflowSourceConfig;

/// Set by fstgate on the versions it registers: `<name>/<version>` of the source version.
pub const PURIFIED_FROM_TAG: &str = "fstgate.purified_from";
/// Set by a user to have a version gated again.
pub const RERUN_TAG: &str = "fstgate.rerun";
/// Versions created this long before the cursor are still looked at: creation times are taken
/// before the registry's transaction commits, so they can land slightly out of order.
const CURSOR_OVERLAP_MS: i64 = 60_000;

/// An opened MLflow source: its client, model filter and settings.
pub struct MlflowSource {
    /// The source's configured name.
    pub name: String,
    client: MlflowClient,
    models: GlobMatcher,
    store_options: BTreeMap<String, String>,
    settings: MlflowSourceConfig,
}

impl MlflowSource {
    /// Opens the source: reads its token from the environment and checks its models glob.
    pub fn open(config: &SourceConfig) -> Result<Self> {
        let settings = config.mlflow.clone().unwrap_or_default();
        let token = match &settings.token_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                Error::registry(&config.store.url, format!("environment variable {var} (the token) is not set"))
            })?),
            None => None,
        };
        let models = Glob::new(&settings.models)
            .map_err(|e| Error::registry(&config.store.url, format!("models `{}`: {e}", settings.models)))?
            .compile_matcher();
        Ok(MlflowSource {
            name: config.name.clone(),
            client: MlflowClient::new(&config.store.url, token)?,
            models,
            store_options: config.store.options.clone(),
            settings,
        })
    }

    /// The client for the source's tracking server.
    pub fn client(&self) -> &MlflowClient {
        &self.client
    }

    /// The source's `[sources.mlflow]` settings (defaults when absent).
    pub fn settings(&self) -> &MlflowSourceConfig {
        &self.settings
    }

    /// Opens an artifact URI the server handed out (object-store URIs use the source's options).
    pub fn artifact_root(&self, uri: &str) -> Result<ArtifactRoot> {
        ArtifactRoot::resolve(&self.client, uri, &self.store_options)
    }

    /// The upload a version stands for, if it is one to gate.
    fn upload(&self, version: &ModelVersion) -> Option<Upload> {
        let wanted =
            version.status == READY && self.models.is_match(&version.name) && version.tag(PURIFIED_FROM_TAG).is_none();
        wanted.then(|| Upload {
            model: format!("{}/{}", version.name, version.version),
            marker: format!("models:/{}/{}", version.name, version.version),
            marker_version: format!("{}:{}", version.creation_timestamp, version.tag(RERUN_TAG).unwrap_or_default()),
        })
    }
}

#[async_trait]
impl Source for MlflowSource {
    fn name(&self) -> &str {
        &self.name
    }

    /// `models:/<name>/<version>` on the tracking server.
    fn registry_source(&self, model: &str) -> RegistrySource {
        let (name, version) = model.rsplit_once('/').unwrap_or((model, ""));
        let uri = format!("models:/{name}/{version}");
        super::registry_source(&self.name, "mlflow", redact_url(self.client.url()), model, uri)
    }

    /// The versions to gate created since `cursor` (less an overlap), and those asked to re-run;
    /// the next cursor is the newest creation time seen, held back to the oldest still registering
    /// (milliseconds since the Unix epoch).
    async fn poll(&self, cursor: Option<&str>) -> Result<Polled> {
        let since = cursor.and_then(|c| c.parse::<i64>().ok());
        let mut uploads = Vec::new();
        let mut newest = since;
        let mut oldest_registering: Option<i64> = None;
        self.client
            .visit_versions(None, |version| {
                if since.is_some_and(|since| version.creation_timestamp < since - CURSOR_OVERLAP_MS) {
                    return false;
                }
                newest = newest.max(Some(version.creation_timestamp));
                if version.status == "PENDING_REGISTRATION" {
                    oldest_registering = Some(
                        oldest_registering.map_or(version.creation_timestamp, |t| t.min(version.creation_timestamp)),
                    );
                }
                uploads.extend(self.upload(version));
                true
            })
            .await?;
        // Re-run requests may be set on versions older than the cursor.
        let filter = format!("tags.`{RERUN_TAG}` LIKE '%'");
        self.client
            .visit_versions(Some(&filter), |version| {
                if let Some(upload) = self.upload(version).filter(|u| !uploads.contains(u)) {
                    uploads.push(upload);
                }
                true
            })
            .await?;
        let cursor = match (newest, oldest_registering) {
            (Some(newest), Some(registering)) => Some(newest.min(registering)),
            (newest, _) => newest,
        };
        Ok(Polled { uploads, cursor: cursor.map(|c| c.to_string()) })
    }

    async fn lookup(&self, name: &str, version: &str) -> Result<Option<Upload>> {
        Ok(self.client.get_version(name, version).await?.and_then(|v| self.upload(&v)))
    }

    /// The version's files, from the artifact URI the server hands out.
    async fn download(&self, model: &str, dir: &Path, max_bytes: u64) -> Result<Artifact> {
        let (name, version) = split_model(model)?;
        let found = self.client.get_version(name, version).await?;
        let found =
            found.ok_or_else(|| Error::model(dir, format!("model version {model} is no longer in the registry")))?;
        let uri = self.client.download_uri(name, version).await?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let files = self.artifact_root(&uri)?.download(dir, &mut DownloadBudget::new(max_bytes)).await?;
        if files.is_empty() {
            return Err(Error::model(dir, format!("model version {model} has no files at {uri}")));
        }
        Ok(Artifact { model_path: model_path(dir, model)?, sha256: identity(&files, found.tag(RERUN_TAG)) })
    }

    /// MLflow's signed deliveries: MODEL_VERSION CREATED, and MODEL_VERSION_TAG SET of
    /// `fstgate.rerun`, name a version; other events ask for nothing.
    fn webhook(
        &self,
        secret: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> std::result::Result<WebhookRequest, WebhookRejection> {
        let header = |name: &'static str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| WebhookRejection::Unauthenticated(Rejection::MissingHeader(name).to_string()))
        };
        let delivery = Delivery {
            id: header(webhook::DELIVERY_ID_HEADER)?,
            timestamp: header(webhook::TIMESTAMP_HEADER)?,
            signature: header(webhook::SIGNATURE_HEADER)?,
        };
        webhook::verify(secret.as_bytes(), &delivery, body, now).map_err(|rejection| match rejection {
            Rejection::BadSignature | Rejection::MissingHeader(_) => {
                WebhookRejection::Unauthenticated(rejection.to_string())
            }
            Rejection::OutsideWindow(_) | Rejection::Malformed(_) => WebhookRejection::Malformed(rejection.to_string()),
        })?;
        let action = match webhook::parse_event(body) {
            Ok(Event::VersionCreated { name, version }) => Ok(WebhookAction::Version { name, version }),
            Ok(Event::VersionTagSet { name, version, key }) if key == RERUN_TAG => {
                Ok(WebhookAction::Version { name, version })
            }
            Ok(_) => Ok(WebhookAction::Nothing),
            Err(rejection) => Err(WebhookRejection::Malformed(rejection.to_string())),
        };
        Ok(WebhookRequest { delivery_id: Some(delivery.id.to_string()), action })
    }

    /// A released model becomes a version of `register_as`, a denied one tags its source version
    /// (registration.rs).
    async fn record_outcome(
        &self,
        publisher: &Publisher,
        outcome_key: &str,
        outcome: &Outcome,
        work: &Path,
    ) -> Result<Option<String>> {
        let files = work.join("published");
        publisher.download(outcome_key, &files).await?;
        let recorded = registration::record(self, outcome_key, outcome, &files).await?;
        if let Some(version) = &recorded.purified_version {
            tracing::info!(model = %outcome.model, purified = %version, "registered in {}", self.client.url());
        }
        Ok(recorded.purified_version)
    }
}

/// `<name>/<version>`: versions are numbers, so the last `/` separates them.
pub fn split_model(model: &str) -> Result<(&str, &str)> {
    model.rsplit_once('/').ok_or_else(|| Error::Settings(format!("`{model}` is not <registered model>/<version>")))
}
