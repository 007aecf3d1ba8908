//! A source's section of the pipeline configuration (`[[sources]]`): where models are
//! registered and how they are watched. Owned here, beside the code that reads it; the
//! pipeline's configuration embeds it.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::mlflow::MlflowSourceConfig;
use crate::store::StoreConfig;

/// A place models are registered. For `kind = "object-store"`, `url` is the watched prefix; for
/// `kind = "mlflow"`, `url` is the tracking server and `options` open the object store its
/// artifact URIs may point at (`s3://...` when the server does not proxy artifacts).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Names the source in jobs, reports, outcomes and its webhook path (`/webhooks/<name>`).
    pub name: String,
    /// `object-store` (default) or `mlflow`.
    #[serde(default)]
    pub kind: SourceKind,
    /// `url` and `options`: the watched prefix, or the tracking server and its artifacts' store.
    #[serde(flatten)]
    pub store: StoreConfig,
    /// The environment variable holding the webhook secret: MLflow's HMAC signing secret, or
    /// the bearer token S3 event notifications are relayed with. Without it the source's
    /// webhook is refused.
    pub webhook_secret_env: Option<String>,
    /// Object-store sources only: the models to gate, a glob on the model name (`fraud-*`);
    /// default all. (An MLflow source says it in `[sources.mlflow] models`.)
    pub models: Option<String>,
    /// MLflow sources only.
    pub mlflow: Option<MlflowSourceConfig>,
}

/// What kind of registry a source is: `object-store` (a prefix of a local directory, S3, GCS or
/// Azure) or `mlflow` (an MLflow model registry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// A prefix of a local directory, S3, GCS or Azure, with `_SUCCESS` markers.
    #[default]
    ObjectStore,
    /// An MLflow model registry.
    Mlflow,
}
