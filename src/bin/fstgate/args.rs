//! Argument groups several subcommands share (the model input contract, release policies,
//! plugin limits, a pipeline configuration) and what they build.
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use fstgate::data::InputSpec;
use fstgate::device::{self, DeviceChoice};
use fstgate::pipeline::{Pipeline, PipelineConfig};
use fstgate::policy::{self, Limits, PluginHost, PolicySet, PolicySpec};

/// The model input contract, shared by every command that feeds images to a model.
#[derive(Args)]
pub(crate) struct InputArgs {
    /// Model input size HxW (images are resized to it when they differ).
    #[arg(long, value_parser = parse_size)]
    pub(crate) input_size: Option<[i64; 2]>,
    /// Model input channels (1 or 3).
    #[arg(long)]
    pub(crate) channels: Option<i64>,
    /// Normalisation mean per channel, comma-separated (after scaling pixels to [0, 1]).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub(crate) mean: Vec<f64>,
    /// Normalisation standard deviation per channel, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub(crate) std: Vec<f64>,
    /// auto (CUDA when present), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub(crate) device: DeviceChoice,
}

impl InputArgs {
    pub(crate) fn spec(&self) -> InputSpec {
        InputSpec { size: self.input_size, channels: self.channels, mean: self.mean.clone(), std: self.std.clone() }
    }
}

/// Release policies.
#[derive(Args)]
pub(crate) struct PolicyArgs {
    /// A policy plugin (WebAssembly component of the fstgate:policy world), with an optional
    /// JSON configuration: PLUGIN.wasm or PLUGIN.wasm@CONFIG.json. Repeat for several; every one
    /// must allow. Without any, the built-in thresholds policy runs.
    #[arg(long = "policy", value_name = "PLUGIN[@CONFIG]")]
    pub(crate) policies: Vec<String>,
    /// Built-in policy: deny when the attack success rate after purification exceeds this
    /// (0-1): the known trigger's, or without one the evidence's residual push.
    #[arg(long, default_value_t = policy::DEFAULT_MAX_ATTACK_SUCCESS_RATE, conflicts_with = "policies")]
    pub(crate) max_asr: f64,
    /// Built-in policy: deny when clean accuracy drops by more than this many points (issue 15's
    /// bar for a purified model).
    #[arg(long, default_value_t = policy::DEFAULT_MAX_ACCURACY_DROP_POINTS, conflicts_with = "policies")]
    pub(crate) max_accuracy_drop: f64,
    #[command(flatten)]
    pub(crate) limits: PluginLimitArgs,
}

impl PolicyArgs {
    /// The built-in policy's configuration, both limits written out (the defaults are the
    /// component's own, `policy::DEFAULT_*`) so that the decision's record names what ran.
    fn thresholds_config(&self) -> serde_json::Value {
        policy::thresholds_config(self.max_asr, self.max_accuracy_drop)
    }

    pub(crate) fn policy_set(&self) -> anyhow::Result<PolicySet> {
        let specs = if self.policies.is_empty() {
            vec![PolicySpec::default_thresholds(self.thresholds_config())]
        } else {
            self.policies.iter().map(|arg| PolicySpec::from_arg(arg)).collect::<Result<_, _>>()?
        };
        policy_set(specs, &self.limits)
    }
}

/// What each policy plugin may use per evaluation.
#[derive(Args)]
pub(crate) struct PluginLimitArgs {
    /// Fuel (about one unit per WebAssembly instruction).
    #[arg(long, default_value_t = Limits::default().fuel)]
    pub(crate) plugin_fuel: u64,
    /// Wall-clock limit in milliseconds.
    #[arg(long, default_value_t = Limits::default().wall_clock_ms)]
    pub(crate) plugin_timeout_ms: u64,
    /// Memory limit in MiB.
    #[arg(long, default_value_t = Limits::default().memory_bytes >> 20)]
    pub(crate) plugin_memory_mib: usize,
    /// Where compiled plugins are kept between runs (a private directory; default
    /// ~/.cache/fstgate/plugins, or under $FSTGATE_CACHE).
    #[arg(long, env = "FSTGATE_PLUGIN_CACHE")]
    pub(crate) plugin_cache: Option<PathBuf>,
}

impl PluginLimitArgs {
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            fuel: self.plugin_fuel,
            wall_clock_ms: self.plugin_timeout_ms,
            memory_bytes: self.plugin_memory_mib << 20,
            ..Limits::default()
        }
    }
}

/// Compiles the policies and warns now about any that cannot load (they will deny).
pub(crate) fn policy_set(specs: Vec<PolicySpec>, limits: &PluginLimitArgs) -> anyhow::Result<PolicySet> {
    let mut host = PluginHost::new(limits.limits())?;
    let cache = limits.plugin_cache.clone().or_else(|| {
        let root = std::env::var_os("FSTGATE_CACHE").map(PathBuf::from).or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
                .map(|dir| dir.join("fstgate"))
        });
        root.map(|root| root.join("plugins"))
    });
    // Without a usable cache plugins are compiled every run: slower, still correct.
    if let Some(Err(e)) = cache.map(|dir| host.set_disk_cache(&dir)) {
        tracing::warn!("not caching compiled plugins: {e}");
    }
    let set = PolicySet::with_host(specs, host);
    for (name, failure) in set.load_failures() {
        tracing::warn!("policy `{name}` {failure}; it will deny every model");
    }
    Ok(set)
}

/// The pipeline's configuration and plugin limits.
#[derive(Args)]
pub(crate) struct PipelineArgs {
    /// The pipeline configuration (TOML; schemas/pipeline-config.schema.json).
    #[arg(long)]
    pub(crate) config: PathBuf,
    #[command(flatten)]
    pub(crate) limits: PluginLimitArgs,
}

impl PipelineArgs {
    /// `webhooks`: this process serves them (a watcher with `listen`), so it needs the secrets.
    pub(crate) async fn pipeline(&self, webhooks: bool) -> anyhow::Result<Arc<Pipeline>> {
        let config = PipelineConfig::load(&self.config)?;
        let specs = if config.policies.is_empty() {
            vec![PolicySpec::default_thresholds(serde_json::json!({}))]
        } else {
            config.policies.iter().map(|p| PolicySpec::inline(&p.plugin, p.config.clone())).collect()
        };
        let policies = Arc::new(policy_set(specs, &self.limits)?);
        let key = config.signing_key.load()?;
        let device = device::resolve(config.device.parse()?)?;
        let mut pipeline = Pipeline::new(config, policies, key, device).await?;
        if webhooks && pipeline.config().listen.is_some() {
            pipeline.enable_webhooks()?;
        }
        Ok(Arc::new(pipeline))
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

pub(crate) fn parse_size(s: &str) -> Result<[i64; 2], String> {
    let (h, w) = s.split_once('x').ok_or_else(|| format!("`{s}` is not HxW"))?;
    let parse = |v: &str| v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| format!("`{s}` is not HxW"));
    Ok([parse(h)?, parse(w)?])
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::PolicyArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        policy: PolicyArgs,
    }

    #[test]
    fn the_built_in_policy_names_both_limits_the_components_own_unless_given() {
        let config =
            |args: &[&str]| Cli::try_parse_from([&["fstgate"], args].concat()).unwrap().policy.thresholds_config();
        assert_eq!(config(&[]), serde_json::json!({"max_attack_success_rate": 0.05, "max_accuracy_drop_points": 2.0}));
        assert_eq!(
            config(&["--max-accuracy-drop", "1.5"]),
            serde_json::json!({"max_attack_success_rate": 0.05, "max_accuracy_drop_points": 1.5})
        );
        assert_eq!(
            config(&["--max-asr", "0.02", "--max-accuracy-drop", "3"]),
            serde_json::json!({"max_attack_success_rate": 0.02, "max_accuracy_drop_points": 3.0})
        );
        assert!(Cli::try_parse_from(["fstgate", "--policy", "p.wasm", "--max-asr", "0.1"]).is_err());
    }
}
