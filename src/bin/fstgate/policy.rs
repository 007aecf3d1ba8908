//! `fstgate policy`: release policy plugins run by hand, as the gate runs them.
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use fstgate::policy::{PolicySpec, Verdict};

use crate::args::{PluginLimitArgs, policy_set};

#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
    /// Run one policy plugin on a report.json, as the gate would (exit 0 allow, 1 deny).
    Eval {
        /// The plugin component (.wasm), or `builtin:thresholds` for the default policy.
        plugin: String,
        #[arg(long)]
        report: PathBuf,
        /// The plugin's JSON configuration.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the policy result as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        limits: PluginLimitArgs,
    },
}

pub(crate) fn policy_eval(
    plugin: String,
    report: PathBuf,
    config: Option<PathBuf>,
    json: bool,
    limits: PluginLimitArgs,
) -> anyhow::Result<bool> {
    let spec = PolicySpec::new(&plugin, config.as_deref())?;
    let text = std::fs::read_to_string(&report).with_context(|| format!("cannot read {}", report.display()))?;
    let report: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", report.display()))?;
    let set = policy_set(vec![spec], &limits)?;
    let started = std::time::Instant::now();
    let decision = set.evaluate_json(report);
    let elapsed = started.elapsed();
    let result = &decision.policies[0];
    if json {
        println!("{}", serde_json::to_string_pretty(result)?);
    } else {
        let verdict = if result.verdict == Verdict::Allow { "allow" } else { "deny" };
        println!("{}: {verdict} ({:.1} ms, sha256 {})", result.name, elapsed.as_secs_f64() * 1e3, result.sha256);
        for reason in &result.reasons {
            println!("  reason: {reason}");
        }
        for m in &result.measurements {
            println!("  {} = {}", m.name, m.value);
        }
    }
    Ok(decision.releasable)
}
