//! Release policies: rules a compliance team writes as sandboxed WebAssembly plugins (see
//! `sandbox`), what each decided about a purified model, and the gate's decision from them.
//!
//! Fail closed: the model is releasable only when at least one policy ran and every policy
//! allowed it. A plugin that cannot be read or compiled, imports what the world does not offer,
//! traps, exceeds a limit or answers nonsense counts as a deny, with the failure as its reason.
//! With no policy configured, the gate runs the default one, `builtin:thresholds`: the
//! `thresholds` example plugin, compiled from plugin-sdk/examples/thresholds and embedded.
pub mod sandbox;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::report::Report;
pub use crate::report::decision::{Decision, Measurement, PolicyResult, Verdict};
use sandbox::{GuestDecision, Level, Plugin};
pub use sandbox::{Limits, PluginFailure, PluginHost};

/// The default policy's component: deny when the attack success rate after purification (the
/// known trigger's, else the worst probe's) exceeds 5% or clean accuracy drops more than 2 points.
pub const DEFAULT_POLICY_WASM: &[u8] = include_bytes!("../../plugin-sdk/examples/prebuilt/thresholds.wasm");
/// The default policy's name in decisions and on the command line.
pub const DEFAULT_POLICY_NAME: &str = "builtin:thresholds";
/// The default policy's own limit on the attack success rate after purification, 0-1 (the SDK's
/// `rules::DEFAULT_MAX_ATTACK_SUCCESS_RATE`, compiled into `DEFAULT_POLICY_WASM`): the command line
/// passes it explicitly so that the decision's record names the limit that ran; tests/policy.rs
/// checks the component agrees.
pub const DEFAULT_MAX_ATTACK_SUCCESS_RATE: f64 = 0.05;
/// The default policy's own limit on the clean-accuracy drop, in points (the SDK's
/// `rules::DEFAULT_MAX_ACCURACY_DROP_POINTS`, issue 15's bar), the same way.
pub const DEFAULT_MAX_ACCURACY_DROP_POINTS: f64 = 2.0;

/// The default policy's configuration with both limits written out, so that the decision's record
/// names the limits that ran (an empty configuration leaves them to the component's defaults).
pub fn thresholds_config(max_attack_success_rate: f64, max_accuracy_drop_points: f64) -> serde_json::Value {
    serde_json::json!({
        "max_attack_success_rate": max_attack_success_rate,
        "max_accuracy_drop_points": max_accuracy_drop_points,
    })
}

/// Where a plugin's component comes from.
#[derive(Debug, Clone)]
pub enum PluginSource {
    /// A component compiled into fstgate (the default policy).
    Embedded(&'static [u8]),
    /// A component file (`.wasm`) on disk.
    File(PathBuf),
}

/// One configured policy.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    /// The plugin's file stem, or `builtin:thresholds`; names its result in the decision.
    pub name: String,
    /// Where its component comes from.
    pub source: PluginSource,
    /// The configuration JSON it is given (`{}` when none).
    pub config: serde_json::Value,
}

impl PolicySpec {
    /// The default policy with `config` (`{}` for its defaults).
    pub fn default_thresholds(config: serde_json::Value) -> Self {
        PolicySpec { name: DEFAULT_POLICY_NAME.into(), source: PluginSource::Embedded(DEFAULT_POLICY_WASM), config }
    }

    /// A plugin file, named by its file stem (or `builtin:thresholds`), with an optional JSON
    /// configuration file.
    pub fn new(plugin: &str, config: Option<&Path>) -> Result<Self> {
        let config = match config {
            None => serde_json::json!({}),
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
                serde_json::from_str(&text)
                    .map_err(|e| Error::Settings(format!("policy configuration {}: {e}", file.display())))?
            }
        };
        Ok(Self::inline(plugin, config))
    }

    /// A plugin file (or `builtin:thresholds`) with its configuration given inline.
    pub fn inline(plugin: &str, config: serde_json::Value) -> Self {
        if plugin == DEFAULT_POLICY_NAME {
            return Self::default_thresholds(config);
        }
        let path = Path::new(plugin);
        let name = path.file_stem().map_or_else(|| plugin.to_string(), |s| s.to_string_lossy().into_owned());
        PolicySpec { name, source: PluginSource::File(path.to_path_buf()), config }
    }

    /// `PLUGIN` or `PLUGIN@CONFIG.json`, as given on the command line.
    pub fn from_arg(arg: &str) -> Result<Self> {
        match arg.rsplit_once('@') {
            Some((plugin, config)) if !plugin.is_empty() && !config.is_empty() => {
                Self::new(plugin, Some(Path::new(config)))
            }
            _ => Self::new(arg, None),
        }
    }
}

/// A policy read and compiled, or the reason it could not be.
struct LoadedPolicy {
    spec: PolicySpec,
    sha256: String,
    plugin: std::result::Result<Plugin, PluginFailure>,
}

/// The configured policies, compiled once and evaluated on every report.
pub struct PolicySet {
    host: PluginHost,
    policies: Vec<LoadedPolicy>,
}

impl PolicySet {
    /// Reads and compiles every policy now, so that a broken plugin shows before any training.
    /// With no policies, the default policy runs.
    pub fn new(specs: Vec<PolicySpec>, limits: Limits) -> Result<Self> {
        Ok(Self::with_host(specs, PluginHost::new(limits)?))
    }

    /// No policies at all: what a job document carries across the worker boundary, where nothing
    /// is decided. Its decision never releases (a release needs at least one allowing policy).
    pub fn none() -> std::sync::Arc<Self> {
        let host = PluginHost::new(Limits::default()).expect("the default plugin limits make a valid engine");
        std::sync::Arc::new(PolicySet { host, policies: Vec::new() })
    }

    /// As `new`, on a host set up by the caller (e.g. with a disk cache).
    pub fn with_host(specs: Vec<PolicySpec>, host: PluginHost) -> Self {
        let specs = if specs.is_empty() { vec![PolicySpec::default_thresholds(serde_json::json!({}))] } else { specs };
        let policies = specs
            .into_iter()
            .map(|spec| {
                let bytes = match &spec.source {
                    PluginSource::Embedded(bytes) => Ok(bytes.to_vec()),
                    PluginSource::File(path) => {
                        std::fs::read(path).map_err(|e| PluginFailure::Read(format!("{}: {e}", path.display())))
                    }
                };
                // The digest names the bytes even when they do not compile.
                let sha256 = bytes.as_ref().map(|b| hex::encode(Sha256::digest(b))).unwrap_or_default();
                let plugin = bytes.and_then(|b| host.load(&b));
                LoadedPolicy { spec, sha256, plugin }
            })
            .collect();
        PolicySet { host, policies }
    }

    /// The policies that could not be loaded and will deny, with why.
    pub fn load_failures(&self) -> Vec<(&str, &PluginFailure)> {
        self.policies.iter().filter_map(|p| p.plugin.as_ref().err().map(|f| (p.spec.name.as_str(), f))).collect()
    }

    /// Runs every policy on the report (without its `decision`) and decides, failing closed.
    pub fn evaluate(&self, report: &Report) -> Decision {
        let input = serde_json::to_value(report).expect("reports serialise");
        self.evaluate_json(input)
    }

    /// Evaluates a report given as JSON (e.g. read from a report.json file). Its `decision`, if
    /// any, is removed first: policies judge the figures, not an earlier verdict.
    pub fn evaluate_json(&self, mut report: serde_json::Value) -> Decision {
        if let Some(fields) = report.as_object_mut() {
            fields.remove("decision");
        }
        let report = report.to_string();
        Decision::from_results(self.policies.iter().map(|policy| self.run(policy, &report)).collect())
    }

    fn run(&self, policy: &LoadedPolicy, report: &str) -> PolicyResult {
        let name = &policy.spec.name;
        let outcome = policy.plugin.as_ref().map_err(Clone::clone).and_then(|plugin| {
            let outcome = self.host.evaluate(plugin, report, &policy.spec.config.to_string());
            for (level, line) in &outcome.log {
                match level {
                    Level::Debug => tracing::debug!(policy = %name, "{line}"),
                    Level::Info => tracing::info!(policy = %name, "{line}"),
                    Level::Warn => tracing::warn!(policy = %name, "{line}"),
                    Level::Error => tracing::error!(policy = %name, "{line}"),
                }
            }
            outcome.verdict
        });
        let result = PolicyResult {
            name: name.clone(),
            sha256: policy.sha256.clone(),
            config: policy.spec.config.clone(),
            verdict: Verdict::Deny,
            reasons: Vec::new(),
            measurements: Vec::new(),
            failure: None,
        };
        match outcome {
            Ok(verdict) => PolicyResult {
                verdict: match verdict.decision {
                    GuestDecision::Allow => Verdict::Allow,
                    GuestDecision::Deny => Verdict::Deny,
                },
                reasons: verdict.reasons,
                measurements: verdict
                    .measurements
                    .into_iter()
                    .map(|m| Measurement { name: m.name, value: m.value })
                    .collect(),
                ..result
            },
            Err(failure) => {
                let reason = format!("policy plugin `{name}` {failure}");
                tracing::warn!("{reason}");
                PolicyResult { reasons: vec![reason.clone()], failure: Some(reason), ..result }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_fails_closed() {
        let allow = PolicyResult {
            name: "a".into(),
            sha256: String::new(),
            config: serde_json::json!({}),
            verdict: Verdict::Allow,
            reasons: vec![],
            measurements: vec![],
            failure: None,
        };
        let deny = PolicyResult { verdict: Verdict::Deny, ..allow.clone() };
        assert!(Decision::from_results(vec![allow.clone()]).releasable);
        assert!(!Decision::from_results(vec![allow, deny]).releasable);
        assert!(!Decision::from_results(vec![]).releasable);
    }

    #[test]
    fn policy_argument_takes_an_optional_configuration() {
        let spec = PolicySpec::from_arg("rules/max-asr.wasm").unwrap();
        assert_eq!(spec.name, "max-asr");
        assert_eq!(spec.config, serde_json::json!({}));
        let missing = PolicySpec::from_arg("max-asr.wasm@/nonexistent/cfg.json").unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/cfg.json"), "{missing}");
    }
}
