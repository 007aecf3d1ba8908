//! report.json as a policy sees it: the `fstgate.report/v1` document the gate writes, without
//! the gate's `decision`. The types are generated at build time (build.rs) from its JSON Schema,
//! schemas/policy-input.schema.json in the fstgate repository, which fstgate writes from its own
//! types; this file adds what a policy asks of a report.
//!
//! Enumerations (formats, method, output kind, split) are plain strings so that a plugin keeps
//! working when fstgate learns a new one, and unknown fields are ignored for the same reason.

/// The report's types, one struct per object of the schema, documented from it.
mod types {
    use serde::{Deserialize, Serialize};

    include!(concat!(env!("OUT_DIR"), "/report_types.rs"));
}

pub use types::*;

/// The `schema` value of the reports these types describe.
pub const REPORT_SCHEMA: &str = "fstgate.report/v1";

/// What measured the backdoor after purification; see [`Report::backdoor_rate_after`].
#[derive(Debug, Clone, PartialEq)]
pub enum BackdoorRate<'a> {
    /// The known trigger's attack success rate (`summary.attack_success_rate_after`), with the
    /// attack's details when the report has them.
    KnownTrigger {
        /// The attack success rate after purification, 0-1.
        rate: f64,
        /// The attack's figures, when the report has them.
        attack: Option<&'a AttackMetrics>,
    },
    /// No known trigger: the evidence the automatic strength gathered (probes judged against the
    /// model's own baseline, inverted triggers), followed through purification.
    Evidence(&'a Evidence),
    /// No known trigger and no evidence recorded (fixed settings): the probe that pushed the
    /// largest share of images to one class.
    WorstProbe(&'a ProbeResult),
}

impl BackdoorRate<'_> {
    /// The rate, 0-1.
    pub fn rate(&self) -> f64 {
        match self {
            BackdoorRate::KnownTrigger { rate, .. } => *rate,
            BackdoorRate::Evidence(evidence) => evidence.residual_push_beyond_nature.unwrap_or(evidence.residual_push),
            BackdoorRate::WorstProbe(probe) => probe.rate,
        }
    }

    /// The name to record the rate under, as in the report's summary.
    pub fn measurement_name(&self) -> &'static str {
        match self {
            BackdoorRate::KnownTrigger { .. } => "attack_success_rate_after",
            BackdoorRate::Evidence(e) if e.residual_push_beyond_nature.is_some() => {
                "evidence_residual_push_beyond_nature"
            }
            BackdoorRate::Evidence(_) => "evidence_residual_push_after",
            BackdoorRate::WorstProbe(_) => "worst_probe_rate_after",
        }
    }

    /// Which figure this is, for a log line or a reason.
    pub fn describe(&self) -> String {
        match self {
            BackdoorRate::KnownTrigger { attack: Some(a), .. } => {
                format!("attack success rate of the known trigger {} (target class {})", a.trigger, a.target_class)
            }
            BackdoorRate::KnownTrigger { attack: None, .. } => "attack success rate of the known trigger".into(),
            BackdoorRate::Evidence(e) => format!("backdoor evidence: {}", e.reason),
            BackdoorRate::WorstProbe(p) => format!("worst probe {} (pushing to class {})", p.trigger, p.class),
        }
    }
}

impl Report {
    /// How much of the backdoor survived purification: the known trigger's attack success rate;
    /// without one the automatic strength's evidence (probes judged against the model's own
    /// baseline and inverted triggers); without that the worst probe's rate; `None` when nothing
    /// was measured.
    ///
    /// The known trigger wins even when a probe rates higher: it is the attack that was
    /// actually planted, while probes are generic patterns that also catch natural confusions.
    pub fn backdoor_rate_after(&self) -> Option<BackdoorRate<'_>> {
        let evidence = self.strength_search.as_ref().and_then(|s| s.evidence.as_ref());
        match (self.summary.attack_success_rate_after, evidence, &self.after.worst_probe) {
            (Some(rate), _, _) => Some(BackdoorRate::KnownTrigger { rate, attack: self.after.attack.as_ref() }),
            (None, Some(evidence), _) => Some(BackdoorRate::Evidence(evidence)),
            (None, None, Some(probe)) => Some(BackdoorRate::WorstProbe(probe)),
            (None, None, None) => None,
        }
    }

    /// Clean-accuracy drop in percentage points (before - after; negative when it improved).
    pub fn accuracy_drop_points(&self) -> f64 {
        self.summary.clean_accuracy_drop_points
    }

    /// The last component of the model path the user gave, e.g. `resnet18-prod.pt`.
    pub fn model_file_name(&self) -> &str {
        let path = self.model.source.path.trim_end_matches(['/', '\\']);
        path.rsplit(['/', '\\']).next().unwrap_or(path)
    }
}
