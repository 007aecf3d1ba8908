//! A source's section of the pipeline configuration (`[[sources]]`): where models are
//! registered and how they are watched. Owned here, beside the code that reads it; the
//! pipeline's configuration embeds it.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

/// How an MLflow source is watched and where purified versions are registered.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MlflowSourceConfig {
    /// Registered models to gate: a glob on the model name.
    #[serde(default = "all_models")]
    pub models: String,
    /// The environment variable holding the server's access token (sent as a bearer token).
    pub token_env: Option<String>,
    /// The registered model purified versions go to; `{name}` is the source model's name
    /// (`{name}` itself registers them as new versions of the same model).
    #[serde(default = "default_register_as")]
    pub register_as: String,
    /// The alias moved to a purified version when the policies release it.
    #[serde(default = "default_alias")]
    pub alias: String,
    /// The experiment whose runs carry the purified models' files.
    #[serde(default = "default_experiment")]
    pub experiment: String,
}

impl Default for MlflowSourceConfig {
    fn default() -> Self {
        MlflowSourceConfig {
            models: all_models(),
            token_env: None,
            register_as: default_register_as(),
            alias: default_alias(),
            experiment: default_experiment(),
        }
    }
}

fn all_models() -> String {
    "*".into()
}
fn default_register_as() -> String {
    "{name}-purified".into()
}
fn default_alias() -> String {
    "purified".into()
}
fn default_experiment() -> String {
    "fstgate".into()
}
