//! What a gate run did, for CI: a JSON document (schemas/gate-report.schema.json), SARIF 2.1.0
//! for code-scanning views, and a markdown summary (e.g. for $GITHUB_STEP_SUMMARY).
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::jobs::{Job, JobState};
use crate::report::Summary;

/// Identifies the gate report document type and version.
pub const GATE_REPORT_SCHEMA: &str = "fstgate.gate-report/v1";

/// What one gate run (`fstgate gate`) did: poll errors and the jobs it processed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GateReport {
    /// Always `fstgate.gate-report/v1`.
    pub schema: String,
    /// The fstgate version that ran the gate.
    pub fstgate_version: String,
    /// Sources that could not be polled.
    pub poll_errors: Vec<String>,
    /// The jobs this run processed, in the order they finished.
    pub jobs: Vec<GateJob>,
}

/// One job a gate run processed, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GateJob {
    /// The job store's id for the job.
    pub id: i64,
    /// The configured source the upload came from.
    pub source: String,
    /// `<name>/<version>` within the source.
    pub model: String,
    /// The upload's identity: sha256 over its files' digests (one job per source, model and
    /// artifact).
    pub artifact_sha256: String,
    /// Attempts at the job so far, this one included.
    pub attempt: u32,
    /// `queued` means a transient error: the job will be retried.
    pub state: JobState,
    /// The outcome.json published at the destination.
    pub outcome: Option<String>,
    /// Why the policies denied it.
    pub reasons: Vec<String>,
    /// Before/after figures (absent when an earlier attempt had published the outcome).
    pub summary: Option<Summary>,
    /// What went wrong, for a failed job or one left for retry.
    pub error: Option<String>,
    /// `<registered model>/<version>` of the purified version registered in an MLflow source.
    pub registered_version: Option<String>,
}

impl GateJob {
    /// The entry for `job` as this run left it, without a registered version.
    pub fn from_job(
        job: &Job,
        state: JobState,
        outcome: Option<String>,
        reasons: Vec<String>,
        summary: Option<Summary>,
        error: Option<String>,
    ) -> Self {
        GateJob {
            id: job.id,
            source: job.source.clone(),
            model: job.model.clone(),
            artifact_sha256: job.artifact_sha256.clone(),
            attempt: job.attempts,
            state,
            outcome,
            reasons,
            summary,
            error,
            registered_version: None,
        }
    }
}

impl GateReport {
    /// A report of this fstgate version over the run's poll errors and jobs.
    pub fn new(poll_errors: Vec<String>, jobs: Vec<GateJob>) -> Self {
        GateReport {
            schema: GATE_REPORT_SCHEMA.into(),
            fstgate_version: env!("CARGO_PKG_VERSION").into(),
            poll_errors,
            jobs,
        }
    }

    /// 0: everything released (or nothing new); 1: a model was denied by policy; 2: an error
    /// (a failed job, one left for retry, or a source that could not be polled).
    pub fn exit_code(&self) -> u8 {
        let error = !self.poll_errors.is_empty()
            || self.jobs.iter().any(|j| matches!(j.state, JobState::Failed | JobState::Queued | JobState::Running));
        if error {
            2
        } else if self.jobs.iter().any(|j| j.state == JobState::Denied) {
            1
        } else {
            0
        }
    }

    /// SARIF 2.1.0: one result per job that did not release, one note per release.
    pub fn sarif(&self) -> serde_json::Value {
        let rules = [
            ("fstgate/released", "The purified model passed every policy and was released."),
            ("fstgate/denied", "A release policy denied the purified model."),
            ("fstgate/failed", "The model could not be purified or published."),
        ];
        let results: Vec<serde_json::Value> = self
            .jobs
            .iter()
            .map(|job| {
                let (rule, level, text) = match job.state {
                    JobState::Released => ("fstgate/released", "note", format!("{} released", job.model)),
                    JobState::Denied => {
                        ("fstgate/denied", "error", format!("{} denied: {}", job.model, job.reasons.join("; ")))
                    }
                    _ => (
                        "fstgate/failed",
                        "error",
                        format!("{} {}: {}", job.model, job.state.as_str(), job.error.as_deref().unwrap_or("")),
                    ),
                };
                json!({
                    "ruleId": rule,
                    "level": level,
                    "message": {"text": text},
                    "locations": [{"physicalLocation": {"artifactLocation": {"uri": format!("{}/{}", job.source, job.model)}}}],
                    "partialFingerprints": {"artifactSha256": job.artifact_sha256},
                    "properties": {"job": job.id, "outcome": job.outcome, "summary": job.summary},
                })
            })
            .collect();
        json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {
                    "name": "fstgate",
                    "version": env!("CARGO_PKG_VERSION"),
                    "informationUri": "https://github.com/fstgate/fstgate",
                    "rules": rules.iter().map(|(id, text)| json!({"id": id, "shortDescription": {"text": text}})).collect::<Vec<_>>(),
                }},
                "results": results,
            }],
        })
    }

    /// A markdown table of the jobs, with the reasons of every denial and failure.
    pub fn markdown(&self) -> String {
        let mut out = String::from("## fstgate\n\n");
        if self.jobs.is_empty() {
            out.push_str("No new models.\n");
        } else {
            out.push_str("| model | result | C-Acc before → after | ASR before → after |\n|---|---|---|---|\n");
            for job in &self.jobs {
                let pct = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.1}%", 100.0 * v));
                let (accuracy, asr) = match &job.summary {
                    Some(s) => (
                        format!("{} → {}", pct(Some(s.clean_accuracy_before)), pct(Some(s.clean_accuracy_after))),
                        format!("{} → {}", pct(s.attack_success_rate_before), pct(s.attack_success_rate_after)),
                    ),
                    None => ("–".into(), "–".into()),
                };
                out.push_str(&format!("| `{}` | {} | {accuracy} | {asr} |\n", job.model, job.state.as_str()));
            }
            for job in self.jobs.iter().filter(|j| !j.reasons.is_empty() || j.error.is_some()) {
                out.push_str(&format!("\n**`{}`**\n", job.model));
                for line in job.reasons.iter().chain(&job.error) {
                    out.push_str(&format!("- {}\n", line.replace('\n', " ")));
                }
            }
        }
        for error in &self.poll_errors {
            out.push_str(&format!("\n⚠ source not polled: {error}\n"));
        }
        out
    }
}
