//! The gate's decision as a document: each policy's verdict with its reasons and figures, and
//! whether the model may be released. Written into report.json and the signed decision record;
//! `policy` produces it, everything after reads it.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A policy's verdict: `allow` the release or `deny` it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The policy allows the release.
    Allow,
    /// The policy denies the release; its reasons say why.
    Deny,
}

/// A figure a policy computed and judged by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Measurement {
    /// What the figure is, as the plugin named it (e.g. `attack_success_rate_after`).
    pub name: String,
    /// The figure's value, always finite, in the unit the plugin chose.
    pub value: f64,
}

/// One policy's verdict on one report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PolicyResult {
    /// The plugin's file stem, or `builtin:thresholds` for the default policy.
    pub name: String,
    /// sha256 of the plugin component that ran (empty when its file could not be read).
    pub sha256: String,
    /// The configuration it was given.
    pub config: serde_json::Value,
    /// `allow` or `deny`; always `deny` when `failure` is set.
    pub verdict: Verdict,
    /// Why, one sentence each; at least one for `deny`.
    pub reasons: Vec<String>,
    /// The figures the policy judged by, as it reported them.
    #[serde(default)]
    pub measurements: Vec<Measurement>,
    /// Set when the plugin gave no verdict of its own (it failed to load, trapped, hit a limit,
    /// or returned something malformed); the verdict is then `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl PolicyResult {
    /// sha256 of the configuration's JSON text, as the record of exactly what ran.
    pub fn config_sha256(&self) -> String {
        hex::encode(Sha256::digest(self.config.to_string().as_bytes()))
    }
}

/// The gate's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    /// Whether the model may be released: at least one policy ran and every one allowed.
    pub releasable: bool,
    /// Every policy's result, in configuration order.
    pub policies: Vec<PolicyResult>,
}

impl Decision {
    /// Fail closed: releasable only when at least one policy ran and every one allowed.
    pub fn from_results(policies: Vec<PolicyResult>) -> Self {
        let releasable = !policies.is_empty() && policies.iter().all(|p| p.verdict == Verdict::Allow);
        Decision { releasable, policies }
    }
}
