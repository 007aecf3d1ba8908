//! An MLflow source's own settings (`[sources.mlflow]`): which registered models are gated and
//! where purified versions are registered.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
