//! An object-store source watches a prefix: a model version is uploaded as
//! `<prefix>/<name>/<version>/...` (a TorchScript file, or an MLflow model directory with its
//! MLmodel), and it is complete when its marker `<prefix>/<name>/<version>/_SUCCESS` exists
//! (Hadoop's convention), written after every other file. Uploads without the marker are never
//! picked up, so a half-uploaded model is never purified. S3 event notifications for new markers
//! (`ObjectCreated:*`) make the watcher poll at once instead of at its next interval.
use std::path::Path;

use async_trait::async_trait;
use futures::TryStreamExt;
use globset::{Glob, GlobMatcher};
use object_store::ObjectMeta;
use reqwest::header::HeaderMap;
use serde::Deserialize;

use super::{Artifact, Polled, Source, Upload, WebhookAction, WebhookRejection, WebhookRequest, identity, model_path};
use crate::error::{Error, Result, redact_url};
use crate::model::RegistrySource;
use crate::store::{DownloadBudget, Location, StoreConfig};

/// Written last by the uploader: the model version beside it is complete.
pub const READY_MARKER: &str = "_SUCCESS";

/// An opened object-store source: a watched prefix.
pub struct ObjectStoreSource {
    /// The source's configured name.
    pub name: String,
    location: Location,
    /// The model names gated (`models`); None: all.
    models: Option<GlobMatcher>,
}

impl ObjectStoreSource {
    /// Opens the store at `config`; `models`, a glob on the model name, limits what is gated.
    pub fn open(name: &str, config: &StoreConfig, models: Option<&str>) -> Result<Self> {
        let models = models
            .map(|glob| Glob::new(glob).map(|g| g.compile_matcher()))
            .transpose()
            .map_err(|e| Error::Settings(format!("source `{name}`: models: {e}")))?;
        Ok(ObjectStoreSource { name: name.to_string(), location: config.open()?, models })
    }

    /// The watched prefix's URL.
    pub fn url(&self) -> &str {
        &self.location.url
    }

    /// Every complete upload under the prefix (`<name>/<version>/_SUCCESS`), sorted by model.
    /// One object whose key the store client refuses (`a//b`: object_store reads no empty
    /// segment) fails a whole listing; then the prefix is listed model name by model name, and
    /// only the names whose listing fails are skipped (and logged).
    async fn complete_uploads(&self) -> Result<Vec<Upload>> {
        let prefix = &self.location.prefix;
        let mut uploads = match self.list(prefix).await {
            Ok(objects) => self.uploads(objects),
            Err(whole) => {
                let names = self.location.store.list_with_delimiter(Some(prefix)).await.map_err(|_| whole)?;
                let mut uploads = Vec::new();
                for name in names.common_prefixes {
                    match self.list(&name).await {
                        Ok(objects) => uploads.extend(self.uploads(objects)),
                        Err(e) => tracing::warn!(
                            source = %self.name,
                            "skipping `{name}`: its objects cannot be listed ({e}); the other models are gated"
                        ),
                    }
                }
                uploads
            }
        };
        uploads.sort_by(|a, b| a.model.cmp(&b.model));
        Ok(uploads)
    }

    async fn list(&self, prefix: &object_store::path::Path) -> Result<Vec<ObjectMeta>> {
        self.location.store.list(Some(prefix)).try_collect().await.map_err(|e| self.location.error(e))
    }

    /// The uploads whose markers are among `objects`.
    fn uploads(&self, objects: Vec<ObjectMeta>) -> Vec<Upload> {
        let prefix_depth = self.location.prefix.parts().count();
        objects
            .into_iter()
            .filter_map(|meta| {
                let parts: Vec<String> = meta.location.parts().map(|p| p.as_ref().to_string()).collect();
                let relative = &parts[prefix_depth.min(parts.len())..];
                match relative {
                    [name, version, marker]
                        if marker == READY_MARKER && self.models.as_ref().is_none_or(|m| m.is_match(name)) =>
                    {
                        Some(Upload {
                            model: format!("{name}/{version}"),
                            marker_version: meta.e_tag.clone().unwrap_or_else(|| meta.last_modified.to_rfc3339()),
                            marker: meta.location.to_string(),
                        })
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// Whether an S3 notification's (bucket, key) is a marker under this source's prefix.
    pub fn is_marker_key(&self, bucket: &str, key: &str) -> bool {
        let same_bucket =
            url::Url::parse(&self.location.url).is_ok_and(|url| url.scheme() == "s3" && url.host_str() == Some(bucket));
        let prefix = self.location.prefix.as_ref();
        let relative =
            if prefix.is_empty() { Some(key) } else { key.strip_prefix(prefix).and_then(|k| k.strip_prefix('/')) };
        same_bucket && relative.is_some_and(|r| matches!(r.split('/').collect::<Vec<_>>()[..], [_, _, READY_MARKER]))
    }
}

#[async_trait]
impl Source for ObjectStoreSource {
    fn name(&self) -> &str {
        &self.name
    }

    /// The upload's directory URL in the store.
    fn registry_source(&self, model: &str) -> RegistrySource {
        let location = redact_url(self.url());
        let uri = format!("{}/{model}/", location.trim_end_matches('/'));
        super::registry_source(&self.name, "object-store", location, model, uri)
    }

    /// A store keeps no cursor: every poll lists the prefix.
    async fn poll(&self, _cursor: Option<&str>) -> Result<Polled> {
        Ok(Polled { uploads: self.complete_uploads().await?, cursor: None })
    }

    /// Notifications ask for a poll, never for a version.
    async fn lookup(&self, _name: &str, _version: &str) -> Result<Option<Upload>> {
        Ok(None)
    }

    /// The upload's files, all but the marker.
    async fn download(&self, model: &str, dir: &Path, max_bytes: u64) -> Result<Artifact> {
        let (name, version) = model.split_once('/').expect("uploads are name/version");
        let upload_prefix = self.location.key(&[name, version]);
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut budget = DownloadBudget::new(max_bytes);
        let files = self
            .location
            .download_prefix(&upload_prefix, dir, |relative| relative == READY_MARKER, &mut budget)
            .await?;
        Ok(Artifact { model_path: model_path(dir, model)?, sha256: identity(&files, None) })
    }

    /// An S3 event notification relayed with `Authorization: Bearer <secret>`: a poll when it
    /// reports a new marker under the prefix.
    fn webhook(
        &self,
        secret: &str,
        headers: &HeaderMap,
        body: &[u8],
        _now: i64,
    ) -> std::result::Result<WebhookRequest, WebhookRejection> {
        let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if !token.is_some_and(|token| constant_time_eq(token.as_bytes(), secret.as_bytes())) {
            return Err(WebhookRejection::Unauthenticated("missing or wrong bearer token".into()));
        }
        let action = notified_keys(body).map_err(WebhookRejection::Malformed).map(|keys| {
            let new_marker = keys.iter().any(|(bucket, key)| self.is_marker_key(bucket, key));
            if new_marker { WebhookAction::Poll } else { WebhookAction::Nothing }
        });
        Ok(WebhookRequest { delivery_id: None, action })
    }
}

/// Compares secrets without leaking, through timing, how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The object keys an S3 event notification reports as created (URL-decoded, `+` is a space).
/// `s3:TestEvent`, sent when notifications are configured, names none.
pub fn notified_keys(body: &[u8]) -> std::result::Result<Vec<(String, String)>, String> {
    #[derive(Deserialize)]
    struct Notification {
        #[serde(rename = "Records", default)]
        records: Vec<Record>,
        #[serde(rename = "Event")]
        event: Option<String>,
    }
    #[derive(Deserialize)]
    struct Record {
        #[serde(rename = "eventName")]
        event_name: String,
        s3: S3Entity,
    }
    #[derive(Deserialize)]
    struct S3Entity {
        bucket: Bucket,
        object: Object,
    }
    #[derive(Deserialize)]
    struct Bucket {
        name: String,
    }
    #[derive(Deserialize)]
    struct Object {
        key: String,
    }
    let notification: Notification =
        serde_json::from_slice(body).map_err(|e| format!("not an S3 event notification: {e}"))?;
    if notification.event.as_deref() == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    let mut keys = Vec::new();
    for record in notification.records.into_iter().filter(|r| r.event_name.starts_with("ObjectCreated:")) {
        let plus_decoded = record.s3.object.key.replace('+', " ");
        let key = percent_encoding::percent_decode_str(&plus_decoded)
            .decode_utf8()
            .map_err(|e| format!("object key `{}`: {e}", record.s3.object.key))?;
        keys.push((record.s3.bucket.name, key.into_owned()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_notifications_name_decoded_keys_and_test_events_none() {
        let created = br#"{"Records": [
            {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "models"}, "object": {"key": "in/my+model%2Bv2/3/_SUCCESS"}}},
            {"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": "models"}, "object": {"key": "in/a/1/_SUCCESS"}}}
        ]}"#;
        assert_eq!(
            notified_keys(created).unwrap(),
            vec![("models".to_string(), "in/my model+v2/3/_SUCCESS".to_string())]
        );
        assert!(notified_keys(br#"{"Event": "s3:TestEvent", "Bucket": "models"}"#).unwrap().is_empty());
        assert!(notified_keys(b"[1, 2]").unwrap_err().contains("not an S3 event notification"));
    }

    #[test]
    fn only_markers_under_the_prefix_of_the_same_bucket_count() {
        let config = StoreConfig {
            url: "s3://models/in".into(),
            options: [("aws_region".to_string(), "us-east-1".to_string())].into_iter().collect(),
        };
        let source = ObjectStoreSource::open("s3", &config, None).unwrap();
        assert!(source.is_marker_key("models", "in/cnn/3/_SUCCESS"));
        assert!(!source.is_marker_key("other", "in/cnn/3/_SUCCESS"));
        assert!(!source.is_marker_key("models", "in/cnn/3/model.pt"));
        assert!(!source.is_marker_key("models", "inbox/cnn/3/_SUCCESS"));
        assert!(!source.is_marker_key("models", "in/cnn/_SUCCESS"));
    }
}
