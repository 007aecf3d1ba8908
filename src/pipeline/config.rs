//! The pipeline's configuration file (TOML). Secrets never appear in it: store options may read
//! the environment (`env:NAME`), and the signing key is a file or an environment variable.
use std::path::{Path, PathBuf};

use globset::{Glob, GlobMatcher};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::data::{DataSpec, InputSpec};
use crate::error::{Error, Result};
use crate::purification::{AutoStrength, Settings};
pub use crate::sources::config::{MlflowSourceConfig, SourceConfig, SourceKind};
use crate::store::StoreConfig;

/// The pipeline configuration file: sources, destination, data, purification, policies, key.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Where the work directories (and the SQLite job store, jobs.sqlite) live; relative paths
    /// are relative to the configuration file.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The job store: SQLite in `state_dir` by default; a PostgreSQL server (`url =
    /// "postgres://..."`) to share one queue between watchers on several machines.
    #[serde(default)]
    pub job_store: crate::jobs::JobStoreConfig,
    /// Where models are registered.
    pub sources: Vec<SourceConfig>,
    /// Where purified models, reports, attestations and outcomes are published.
    pub destination: StoreConfig,
    /// Which clean and test data belong to which models; the first rule that matches wins.
    pub data: Vec<DataRule>,
    /// How strongly to purify: the automatic strength (default) or fixed settings.
    #[serde(default)]
    pub purification: PurificationConfig,
    /// Release policies; none configured means the built-in thresholds policy.
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
    /// The attestation signing key (ECDSA P-256 PEM). Required: nothing is published unsigned.
    pub signing_key: KeyConfig,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Jobs purified at once (on a GPU, at most one per device regardless).
    #[serde(default = "one")]
    pub concurrency: usize,
    /// Seconds between polls of the sources by `fstgate watch`; default 30.
    #[serde(default = "default_poll_interval")]
    pub poll_interval_seconds: f64,
    /// A running job's lease; a worker that dies loses its job to another after this long.
    #[serde(default = "default_lease")]
    pub lease_seconds: f64,
    /// `fstgate watch` serves webhooks (`POST /webhooks/<source>`) here, e.g. `127.0.0.1:9464`,
    /// and /healthz and /metrics too unless `metrics_listen` takes them elsewhere.
    pub listen: Option<String>,
    /// Serve /healthz and /metrics (Prometheus) on their own listener, e.g. `127.0.0.1:9465`,
    /// apart from the webhooks that face the registry.
    pub metrics_listen: Option<String>,
    /// Attempts before a job that keeps failing on transient errors, or whose worker keeps
    /// dying, is marked failed.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// How the uploaded model's code is confined: a worker process without secrets, with limits.
    #[serde(default)]
    pub worker: crate::worker::WorkerLimits,
    /// The most bytes an upload (all its files) may hold; a larger one is refused while it
    /// downloads and its job fails for good. Default 4 GiB.
    #[serde(default = "default_max_upload_bytes")]
    pub max_upload_bytes: u64,
}

/// Data for the models whose `<name>/<version>` matches `models` (a glob, e.g. `fashion-*/*`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataRule {
    /// Glob over `<name>/<version>`, e.g. `fashion-*/*`.
    pub models: String,
    /// Clean data: `PATH` or `DIR#train` (IDX, CIFAR-10, safetensors, ImageFolder).
    pub clean: String,
    /// Class-balanced number of clean images (default: all).
    pub clean_count: Option<i64>,
    /// Test data, in the same form as `clean` (e.g. `DIR#test`).
    pub test: String,
    /// Class-balanced number of test images (default: all).
    pub test_count: Option<i64>,
    /// The known trigger, if any (e.g. `badnets`), and its target class; without it the probes
    /// measure the backdoor.
    pub trigger: Option<String>,
    /// The known trigger's target class; required with `trigger`.
    pub target_class: Option<i64>,
    /// The models' input geometry and normalisation.
    #[serde(default)]
    pub input: InputSpec,
}

/// How models are purified: fixed settings, or the automatic strength.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, try_from = "PurificationTable")]
pub struct PurificationConfig {
    /// `fixed` settings instead of the automatic strength.
    pub settings: Option<Settings>,
    /// Start the automatic strength from the evidence-driven judge's settings
    /// (`AutoStrength::judge()`, as `fstgate purify --judge`) rather than the default's: the
    /// keys given in `[purification.auto]` then change the judge's.
    #[serde(default)]
    pub judge: bool,
    /// The automatic strength's search (used unless `settings` is given): the keys given here
    /// over the default's settings, or the judge's with `judge = true`.
    pub auto: Option<AutoStrength>,
}

/// `[purification]` as written, before the keys of `[purification.auto]` are laid over the
/// settings they change (the default's or the judge's): a table read straight into
/// `AutoStrength` would take every key it lacks from the default, losing the judge's.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PurificationTable {
    /// `fixed` settings instead of the automatic strength.
    settings: Option<Settings>,
    /// Start the automatic strength from the evidence-driven judge's settings
    /// (`AutoStrength::judge()`, as `fstgate purify --judge`) rather than the default's: the
    /// keys given in `[purification.auto]` then change the judge's.
    #[serde(default)]
    judge: bool,
    /// The automatic strength's search (used unless `settings` is given): the keys given here
    /// over the default's settings, or the judge's with `judge = true`; a key it does not have
    /// is refused.
    #[schemars(with = "Option<AutoStrength>")]
    auto: Option<serde_json::Map<String, serde_json::Value>>,
}

impl TryFrom<PurificationTable> for PurificationConfig {
    type Error = String;

    fn try_from(table: PurificationTable) -> std::result::Result<Self, String> {
        let base = if table.judge { AutoStrength::judge() } else { AutoStrength::default() };
        let auto = match table.auto {
            None if table.judge => Some(base),
            None => None,
            Some(keys) => {
                let mut merged = serde_json::to_value(&base).map_err(|e| e.to_string())?;
                lay_over(&mut merged, keys, "purification.auto")?;
                Some(serde_json::from_value(merged).map_err(|e| format!("[purification.auto]: {e}"))?)
            }
        };
        Ok(PurificationConfig { settings: table.settings, judge: table.judge, auto })
    }
}

/// Replaces `base`'s values by `keys`', table by table; a key `base` does not have is a mistake.
fn lay_over(
    base: &mut serde_json::Value,
    keys: serde_json::Map<String, serde_json::Value>,
    table: &str,
) -> std::result::Result<(), String> {
    for (key, value) in keys {
        let Some(slot) = base.get_mut(&key) else {
            return Err(format!("[{table}]: unknown key `{key}`"));
        };
        match (slot, value) {
            (slot @ serde_json::Value::Object(_), serde_json::Value::Object(inner)) => {
                lay_over(slot, inner, &format!("{table}.{key}"))?;
            }
            (slot, value) => *slot = value,
        }
    }
    Ok(())
}

/// One release policy: a plugin and its configuration.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A component file (relative to the configuration file) or `builtin:thresholds`.
    pub plugin: String,
    /// The plugin's configuration, passed to it as JSON.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
}

/// The signing key: exactly one of `path` and `env`, and optionally the certificate chain that
/// certifies it.
#[derive(Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// A PEM file.
    pub path: Option<PathBuf>,
    /// An environment variable holding the PEM text.
    pub env: Option<String>,
    /// A PEM file of the key's certificate chain, the key's own certificate first: signatures
    /// then carry it (model_signing's certificate bundles), and verifiers check it against the
    /// organisation's root (`fstgate verify --ca`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_chain: Option<PathBuf>,
}

impl std::fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyConfig")
            .field("path", &self.path)
            .field("env", &self.env)
            .field("certificate_chain", &self.certificate_chain)
            .finish()
    }
}

impl KeyConfig {
    /// Reads the key (and its chain, checked to certify it).
    pub fn load(&self) -> crate::error::Result<crate::attestation::SigningKey> {
        use crate::attestation::SigningKey;
        let key = match (&self.path, &self.env) {
            (Some(path), None) => SigningKey::from_file(path)?,
            (None, Some(var)) => SigningKey::from_env(var)?,
            _ => return Err(crate::error::Error::Key("a signing key needs exactly one of `path` and `env`".into())),
        };
        match &self.certificate_chain {
            Some(chain) => key.with_certificate_chain(chain),
            None => Ok(key),
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(".fstgate")
}
fn default_device() -> String {
    "auto".into()
}
fn one() -> usize {
    1
}
fn default_poll_interval() -> f64 {
    30.0
}
fn default_lease() -> f64 {
    120.0
}
fn default_attempts() -> u32 {
    3
}
fn default_max_upload_bytes() -> u64 {
    4 << 30
}
fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

impl PipelineConfig {
    /// Reads and checks a configuration; relative paths become relative to its directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut config: PipelineConfig =
            toml::from_str(&text).map_err(|e| Error::Config { path: path.to_path_buf(), reason: e.to_string() })?;
        let base = crate::fsutil::parent_dir(path).to_path_buf();
        config.resolve_paths(&base);
        config.validate().map_err(|reason| Error::Config { path: path.to_path_buf(), reason })?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.state_dir);
        if let Some(path) = &mut self.job_store.ca_file {
            resolve(path);
        }
        for path in [&mut self.signing_key.path, &mut self.signing_key.certificate_chain].into_iter().flatten() {
            resolve(path);
        }
        for policy in &mut self.policies {
            if policy.plugin != crate::policy::DEFAULT_POLICY_NAME {
                let mut path = PathBuf::from(&policy.plugin);
                resolve(&mut path);
                policy.plugin = path.display().to_string();
            }
        }
        let object_stores = self.sources.iter_mut().filter(|s| s.kind == SourceKind::ObjectStore).map(|s| &mut s.store);
        for store in object_stores.chain([&mut self.destination]) {
            if !store.url.contains("://") {
                let mut path = PathBuf::from(&store.url);
                resolve(&mut path);
                store.url = path.display().to_string();
            }
        }
        for rule in &mut self.data {
            for spec in [&mut rule.clean, &mut rule.test] {
                if !spec.starts_with('/') {
                    *spec = base.join(&*spec).display().to_string();
                }
            }
        }
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.sources.is_empty() {
            return Err("no sources".into());
        }
        self.job_store.validate()?;
        let mut names: Vec<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("two sources are named `{}`", w[0]));
        }
        for source in &self.sources {
            match (source.kind, &source.mlflow) {
                (SourceKind::ObjectStore, Some(_)) => {
                    return Err(format!("source `{}`: an [sources.mlflow] table needs kind = \"mlflow\"", source.name));
                }
                (SourceKind::Mlflow, _) if source.models.is_some() => {
                    return Err(format!(
                        "source `{}`: an MLflow source's models glob goes in [sources.mlflow] models",
                        source.name
                    ));
                }
                (SourceKind::Mlflow, settings) => {
                    if !source.store.url.starts_with("http://") && !source.store.url.starts_with("https://") {
                        return Err(format!(
                            "source `{}`: an MLflow url is the tracking server's http(s):// URL",
                            source.name
                        ));
                    }
                    let settings = settings.clone().unwrap_or_default();
                    Glob::new(&settings.models).map_err(|e| format!("source `{}`: models: {e}", source.name))?;
                    if settings.register_as.trim().is_empty() || settings.alias.trim().is_empty() {
                        return Err(format!("source `{}`: register_as and alias must not be empty", source.name));
                    }
                }
                (SourceKind::ObjectStore, None) => {
                    if let Some(models) = &source.models {
                        Glob::new(models).map_err(|e| format!("source `{}`: models: {e}", source.name))?;
                    }
                }
            }
        }
        if self.data.is_empty() {
            return Err("no [[data]] rules: fstgate cannot purify without clean data".into());
        }
        for rule in &self.data {
            Glob::new(&rule.models).map_err(|e| format!("data rule `{}`: {e}", rule.models))?;
            for spec in [&rule.clean, &rule.test] {
                spec.parse::<DataSpec>().map_err(|e| format!("data rule `{}`: {e}", rule.models))?;
            }
            if let Some(trigger) = &rule.trigger {
                trigger.parse::<crate::evaluation::Trigger>().map_err(|e| e.to_string())?;
                if rule.target_class.is_none() {
                    return Err(format!("data rule `{}`: a trigger needs its target_class", rule.models));
                }
            }
        }
        match (&self.signing_key.path, &self.signing_key.env) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => return Err("signing_key needs exactly one of `path` and `env`".into()),
        }
        self.device.parse::<crate::device::DeviceChoice>().map_err(|e| format!("device: {e}"))?;
        if self.concurrency == 0 {
            return Err("concurrency must be at least 1".into());
        }
        for (name, value) in
            [("poll_interval_seconds", self.poll_interval_seconds), ("lease_seconds", self.lease_seconds)]
        {
            if !(value > 0.0 && value.is_finite()) {
                return Err(format!("{name} must be positive"));
            }
        }
        if let Some(listen) = &self.metrics_listen {
            listen.parse::<std::net::SocketAddr>().map_err(|e| format!("metrics_listen `{listen}`: {e}"))?;
        }
        if let Some(listen) = &self.listen {
            listen.parse::<std::net::SocketAddr>().map_err(|e| format!("listen `{listen}`: {e}"))?;
        }
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        self.worker.validate()
    }

    /// The first data rule whose pattern matches `<name>/<version>`.
    pub fn data_for(&self, model: &str) -> Option<&DataRule> {
        self.data.iter().find(|rule| matcher(&rule.models).is_some_and(|m| m.is_match(model)))
    }
}

fn matcher(pattern: &str) -> Option<GlobMatcher> {
    Glob::new(pattern).ok().map(|g| g.compile_matcher())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[sources]]
        name = "registry"
        url = "registry"

        [destination]
        url = "released"

        [[data]]
        models = "fashion-*/*"
        clean = "/usr/share/datasets/fashion-mnist#train"
        clean_count = 3000
        test = "/usr/share/datasets/fashion-mnist#test"

        [signing_key]
        env = "FSTGATE_SIGNING_KEY"
    "#;

    fn load(text: &str) -> Result<PipelineConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fstgate.toml");
        std::fs::write(&path, text).unwrap();
        PipelineConfig::load(&path)
    }

    #[test]
    fn defaults_and_relative_paths() {
        let config = load(MINIMAL).unwrap();
        assert!(config.state_dir.is_absolute() && config.state_dir.ends_with(".fstgate"));
        assert!(config.sources[0].store.url.ends_with("/registry"), "{}", config.sources[0].store.url);
        assert_eq!((config.concurrency, config.max_attempts), (1, 3));
        assert_eq!(config.data_for("fashion-cnn/3").unwrap().clean_count, Some(3000));
        assert!(config.data_for("cifar-resnet/1").is_none());
        let certified = load(&MINIMAL.replace(
            "env = \"FSTGATE_SIGNING_KEY\"",
            "env = \"FSTGATE_SIGNING_KEY\"\ncertificate_chain = \"pki/chain.pem\"",
        ))
        .unwrap();
        let chain = certified.signing_key.certificate_chain.unwrap();
        assert!(chain.is_absolute() && chain.ends_with("pki/chain.pem"), "{}", chain.display());
    }

    #[test]
    fn mistakes_are_named() {
        let err = load(&MINIMAL.replace("clean_count", "clean_cuont")).unwrap_err().to_string();
        assert!(err.contains("unknown field `clean_cuont`"), "{err}");
        let err = load(&MINIMAL.replace(r#"env = "FSTGATE_SIGNING_KEY""#, "")).unwrap_err().to_string();
        assert!(err.contains("exactly one of `path` and `env`"), "{err}");
        let err = load(&format!("concurrency = 0\n{MINIMAL}")).unwrap_err().to_string();
        assert!(err.contains("concurrency"), "{err}");
        let err = load(&MINIMAL.replace("fashion-*/*", "fashion-[/*")).unwrap_err().to_string();
        assert!(err.contains("data rule `fashion-[/*`"), "{err}");
    }

    #[test]
    fn the_automatic_strength_starts_from_the_judge_or_the_default() {
        let with = |purification: &str| load(&format!("{MINIMAL}\n{purification}"));
        assert!(with("").unwrap().purification.auto.is_none());
        let judge = with("[purification]\njudge = true").unwrap().purification.auto.unwrap();
        assert_eq!(judge, AutoStrength::judge());
        // A key changes the judge's settings, and only that key; a nested table keeps the rest.
        let tuned =
            with("[purification]\njudge = true\n[purification.auto]\nmax_candidates = 2\ninversion = { steps = 50 }")
                .unwrap()
                .purification
                .auto
                .unwrap();
        let expected = AutoStrength {
            max_candidates: 2,
            inversion: crate::evaluation::InversionSettings { steps: 50, ..AutoStrength::judge().inversion },
            ..AutoStrength::judge()
        };
        assert_eq!(tuned, expected);
        // The judge's evidence tuning is turned off by a share of 0 (TOML has no null); the
        // rest of its ball is kept.
        let v15 = with(
            "[purification]\njudge = true\n[purification.auto]\nevidence_adversarial_unlearning = { share = 0.0 }",
        )
        .unwrap()
        .purification
        .auto
        .unwrap();
        let ball = AutoStrength::judge().evidence_adversarial_unlearning.unwrap();
        assert_eq!(
            v15.evidence_adversarial_unlearning,
            Some(crate::training::AdversarialUnlearning { share: 0.0, ..ball })
        );
        // Without `judge`, the keys change the default's settings.
        let plain = with("[purification.auto]\ninvert_triggers = true").unwrap().purification.auto.unwrap();
        assert_eq!(plain, AutoStrength { invert_triggers: true, ..AutoStrength::default() });
        // A setting that is null by default can be given.
        let warm = with("[purification.auto]\nhead_warmup_learning_rate = 0.2").unwrap().purification.auto.unwrap();
        assert_eq!(warm.head_warmup_learning_rate, Some(0.2));
        let err = with("[purification.auto]\nmax_candidate = 2").unwrap_err().to_string();
        assert!(err.contains("[purification.auto]: unknown key `max_candidate`"), "{err}");
        let err = with("[purification.auto]\ninversion = { stepz = 5 }").unwrap_err().to_string();
        assert!(err.contains("[purification.auto.inversion]: unknown key `stepz`"), "{err}");
        let err = with("[purification.auto]\nmax_candidates = \"two\"").unwrap_err().to_string();
        assert!(err.contains("[purification.auto]: invalid type"), "{err}");
        let err = with("[purification]\njduge = true").unwrap_err().to_string();
        assert!(err.contains("unknown field `jduge`"), "{err}");
    }

    #[test]
    fn mlflow_sources() {
        let mlflow = MINIMAL.replace(
            "url = \"registry\"",
            "kind = \"mlflow\"\nurl = \"http://127.0.0.1:5000\"\nwebhook_secret_env = \"S\"\n[sources.mlflow]\nmodels = \"fashion-*\"",
        );
        let config = load(&mlflow).unwrap();
        let source = &config.sources[0];
        assert_eq!((source.kind, source.store.url.as_str()), (SourceKind::Mlflow, "http://127.0.0.1:5000"));
        let settings = source.mlflow.clone().unwrap();
        assert_eq!((settings.register_as.as_str(), settings.alias.as_str()), ("{name}-purified", "purified"));
        let err = load(&mlflow.replace("http://127.0.0.1:5000", "registry")).unwrap_err().to_string();
        assert!(err.contains("tracking server's http(s):// URL"), "{err}");
        let err = load(&mlflow.replace("kind = \"mlflow\"\n", "")).unwrap_err().to_string();
        assert!(err.contains("needs kind = \"mlflow\""), "{err}");
        let err = load(&mlflow.replace("kind = \"mlflow\"", "kind = \"artifactory\"")).unwrap_err().to_string();
        assert!(err.contains("unknown variant `artifactory`"), "{err}");
    }
}
