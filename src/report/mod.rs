//! report.json: everything a reviewer needs to judge one purification, and its JSON Schema;
//! report.html renders it for people.
mod charts;
pub mod decision;
pub mod html;
pub mod layout;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::data::{DataSource, InputSpec};
use crate::evaluation::{AttackMetrics, Metrics};
use crate::model::{Head, ModelSource, OutputKind};
use crate::purification::{Settings, StrengthSearch};
use crate::stats::{Interval, PairedCounts, wilson_95};
use crate::training::EpochRecord;
pub use decision::Decision;

/// Identifies the document type and version.
pub const REPORT_SCHEMA: &str = "fstgate.report/v1";

/// report.json: one purification's inputs, figures before and after, and the gate's decision.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// Always `fstgate.report/v1`.
    pub schema: String,
    /// The fstgate version that wrote the report.
    pub fstgate_version: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// RFC 3339, UTC.
    pub finished_at: String,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// The uploaded model: where it came from, its classification head and output.
    pub model: ModelInfo,
    /// The clean data set FST fine-tuned on, after sampling.
    pub clean_data: DataUsage,
    /// The test set both evaluations ran on, after sampling.
    pub test_data: DataUsage,
    /// The model's input geometry and normalisation, as applied to every data set.
    pub input: InputSpec,
    /// The settings of the purified model (with the automatic strength: the chosen alpha).
    pub settings: Settings,
    /// The automatic strength's candidates, signals, choice and reason; absent with fixed settings.
    pub strength_search: Option<StrengthSearch>,
    /// Evaluation of the uploaded model, before purification.
    pub before: Metrics,
    /// Evaluation of the purified model.
    pub after: Metrics,
    /// The headline figures the release policies judge, before and after.
    pub summary: Summary,
    /// One record per tuning epoch of the purified model (head warm-up epochs included).
    pub epochs: Vec<EpochRecord>,
    /// Wall-clock time of each stage, in seconds.
    pub timings: Timings,
    /// The purified model written beside this report.
    pub output: OutputFile,
    /// The release policies' verdicts on these figures, and the gate's decision.
    pub decision: Decision,
    /// Things the reader should know (e.g. a model whose BatchNorm statistics are frozen).
    pub warnings: Vec<String>,
    /// How the uploaded model's code was confined while it ran, as this host's kernel enforced
    /// it. Absent when the model ran inside the gate's own process (`fstgate purify`, or
    /// `worker.isolate = false`).
    pub confinement: Option<Confinement>,
}

/// The model worker's confinement, layer by layer (see `fstgate sandbox-check`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Confinement {
    /// Its own user and network namespaces: no interface but a down loopback.
    pub network: ConfinementLayer,
    /// Landlock: file reads limited to system libraries and the job's inputs, writes to the
    /// worker's own directories; no TCP, no abstract UNIX sockets, no signals outside.
    pub filesystem: ConfinementLayer,
    /// seccomp: sockets, running programs, tracing other processes, io_uring, mounts, BPF and
    /// key rings refused.
    pub syscalls: ConfinementLayer,
}

/// One confinement layer: whether the kernel enforced it, and what it is (or why not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConfinementLayer {
    /// Whether the kernel enforced this layer.
    pub enforced: bool,
    /// What the layer enforces; when it is not enforced, `not enforced: ` and why.
    pub detail: String,
}

/// The model as the gate loaded it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ModelInfo {
    /// Provenance: path or registry URI, archive, format, sha256 and the TorchScript ops it calls.
    pub source: ModelSource,
    /// The classification head: the final linear map that produces the logits.
    pub head: Head,
    /// How the logits are taken from the model's output.
    pub output: OutputKind,
    /// Number of classes the model predicts (the head's output features).
    pub num_classes: i64,
}

/// A data set as a job used it: its source, and how much of it after sampling.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DataUsage {
    /// The data set as read: path, split, format, sha256 and size before sampling.
    pub source: DataSource,
    /// Images used after class-balanced sampling.
    pub images_used: i64,
    /// [C, H, W] after conforming to the model input.
    pub image_shape: Vec<i64>,
}

/// The figures a gate decides on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// Clean accuracy (C-Acc) of the uploaded model, fraction in [0, 1].
    pub clean_accuracy_before: f64,
    /// Clean accuracy (C-Acc) of the purified model, fraction in [0, 1].
    pub clean_accuracy_after: f64,
    /// before - after, in percentage points.
    pub clean_accuracy_drop_points: f64,
    /// Attack success rate (ASR) of the known attack on the uploaded model, fraction in [0, 1];
    /// absent without a known attack.
    pub attack_success_rate_before: Option<f64>,
    /// Attack success rate (ASR) of the known attack on the purified model, fraction in [0, 1];
    /// absent without a known attack.
    pub attack_success_rate_after: Option<f64>,
    /// Robust accuracy (RA) of the uploaded model under the known attack, fraction in [0, 1];
    /// absent without a known attack.
    pub robust_accuracy_before: Option<f64>,
    /// Robust accuracy (RA) of the purified model under the known attack, fraction in [0, 1];
    /// absent without a known attack.
    pub robust_accuracy_after: Option<f64>,
    /// Rate of the worst trigger probe on the uploaded model (the fraction of triggered images of
    /// other classes pushed into its class), in [0, 1]; absent without probes.
    pub worst_probe_rate_before: Option<f64>,
    /// Rate of the worst trigger probe on the purified model, in [0, 1]; absent without probes.
    pub worst_probe_rate_after: Option<f64>,
    /// 95% confidence intervals of the figures above, from the test images they were counted
    /// on; absent in reports written before fstgate measured them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence_95: Option<Confidence>,
}

/// 95% confidence intervals of a summary's figures (`stats`: Wilson's interval for a rate,
/// Newcombe's paired interval for the drop). The accuracy limits a policy sets (2 points, 1 for
/// a clean model) lie inside the spread 2,000 test images carry, so a reader weighs a verdict
/// by these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Confidence {
    /// Clean accuracy of the uploaded model, fractions.
    pub clean_accuracy_before: Interval,
    /// Clean accuracy of the purified model, fractions.
    pub clean_accuracy_after: Interval,
    /// The drop in clean accuracy, in points. Paired: both models classified the same images,
    /// and only the images on which they differ make it uncertain.
    pub clean_accuracy_drop_points: Interval,
    /// The clean test images by which of the two models classified them right (`first`: the
    /// uploaded model, `second`: the purified one), from which the drop's interval is computed.
    pub test_images: PairedCounts,
    /// ASR of the known attack on the uploaded model, fractions; absent without a known attack.
    pub attack_success_rate_before: Option<Interval>,
    /// ASR of the known attack on the purified model, fractions; absent without a known attack.
    pub attack_success_rate_after: Option<Interval>,
    /// Robust accuracy on the uploaded model, fractions; absent without a known attack.
    pub robust_accuracy_before: Option<Interval>,
    /// Robust accuracy on the purified model, fractions; absent without a known attack.
    pub robust_accuracy_after: Option<Interval>,
    /// The worst trigger probe's rate on the uploaded model, fractions; absent without probes.
    pub worst_probe_rate_before: Option<Interval>,
    /// The worst trigger probe's rate on the purified model, fractions; absent without probes.
    pub worst_probe_rate_after: Option<Interval>,
}

impl Confidence {
    /// The intervals of two evaluations of the same test plan; None unless both classified the
    /// same clean images (their per-image outcomes are what pairs them).
    pub fn of(before: &Metrics, after: &Metrics) -> Option<Self> {
        let test_images = PairedCounts::count(&before.clean_correct, &after.clean_correct)?;
        let (_, drop) = test_images.difference_95()?;
        let clean = |m: &Metrics| wilson_95(m.clean_accuracy, m.test_images);
        let attack =
            |m: &Metrics, rate: fn(&AttackMetrics) -> f64| m.attack.as_ref().map(|a| wilson_95(rate(a), a.images));
        let probe = |m: &Metrics| m.worst_probe.as_ref().map(|p| wilson_95(p.rate, p.images));
        Some(Confidence {
            clean_accuracy_before: clean(before),
            clean_accuracy_after: clean(after),
            clean_accuracy_drop_points: drop.scaled(100.0),
            test_images,
            attack_success_rate_before: attack(before, |a| a.attack_success_rate),
            attack_success_rate_after: attack(after, |a| a.attack_success_rate),
            robust_accuracy_before: attack(before, |a| a.robust_accuracy),
            robust_accuracy_after: attack(after, |a| a.robust_accuracy),
            worst_probe_rate_before: probe(before),
            worst_probe_rate_after: probe(after),
        })
    }
}

impl Summary {
    /// The summary of two evaluations of the same test plan.
    pub fn new(before: &Metrics, after: &Metrics) -> Self {
        let asr = |m: &Metrics| m.attack.as_ref().map(|a| a.attack_success_rate);
        let ra = |m: &Metrics| m.attack.as_ref().map(|a| a.robust_accuracy);
        let probe = |m: &Metrics| m.worst_probe.as_ref().map(|p| p.rate);
        Summary {
            clean_accuracy_before: before.clean_accuracy,
            clean_accuracy_after: after.clean_accuracy,
            clean_accuracy_drop_points: 100.0 * (before.clean_accuracy - after.clean_accuracy),
            attack_success_rate_before: asr(before),
            attack_success_rate_after: asr(after),
            robust_accuracy_before: ra(before),
            robust_accuracy_after: ra(after),
            worst_probe_rate_before: probe(before),
            worst_probe_rate_after: probe(after),
            confidence_95: Confidence::of(before, after),
        }
    }
}

/// Wall-clock time of each stage of a job, in seconds.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Timings {
    /// Loading the data and the model, and checking them.
    pub load_seconds: f64,
    /// Evaluating the uploaded model.
    pub evaluation_before_seconds: f64,
    /// Purifying (with the automatic strength: the whole search).
    pub purification_seconds: f64,
    /// Evaluating the purified model.
    pub evaluation_after_seconds: f64,
    /// The whole job up to the report, stages and overheads together.
    pub total_seconds: f64,
}

/// A file the job wrote, with its digest.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct OutputFile {
    /// Relative to the report's directory.
    pub file: String,
    /// sha256 of the file, lowercase hex.
    pub sha256: String,
}

/// What a policy plugin receives: report.json before the gate's decision, so without `decision`.
pub fn policy_input_schema(mut schema: serde_json::Value) -> serde_json::Value {
    schema["title"] = "PolicyInput".into();
    schema["description"] = "The report a policy plugin judges: report.json without `decision`.".into();
    if let Some(properties) = schema["properties"].as_object_mut() {
        properties.remove("decision");
    }
    if let Some(required) = schema["required"].as_array_mut() {
        required.retain(|field| field != "decision");
    }
    prune_unreferenced_definitions(&mut schema);
    schema
}

/// Drops the `$defs` that nothing reachable from the root refers to any more.
fn prune_unreferenced_definitions(schema: &mut serde_json::Value) {
    fn refs(value: &serde_json::Value, found: &mut std::collections::BTreeSet<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(target) = map.get("$ref").and_then(|r| r.as_str()) {
                    found.insert(target.trim_start_matches("#/$defs/").to_string());
                }
                map.iter().filter(|(key, _)| *key != "$defs").for_each(|(_, v)| refs(v, found));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }
    let Some(definitions) = schema.get("$defs").cloned() else { return };
    let mut reachable = std::collections::BTreeSet::new();
    refs(schema, &mut reachable);
    loop {
        let before = reachable.len();
        for name in reachable.clone() {
            if let Some(definition) = definitions.get(&name) {
                refs(definition, &mut reachable);
            }
        }
        if reachable.len() == before {
            break;
        }
    }
    if let Some(map) = schema["$defs"].as_object_mut() {
        map.retain(|name, _| reachable.contains(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(clean_correct: Vec<bool>, attack_success_rate: Option<f64>) -> Metrics {
        let right = clean_correct.iter().filter(|r| **r).count();
        Metrics {
            clean_accuracy: right as f64 / clean_correct.len() as f64,
            test_images: clean_correct.len() as i64,
            per_class_accuracy: Vec::new(),
            attack: attack_success_rate.map(|rate| AttackMetrics {
                trigger: "badnets".into(),
                target_class: 0,
                attack_success_rate: rate,
                robust_accuracy: 1.0 - rate,
                images: 900,
            }),
            probes: Vec::new(),
            worst_probe: None,
            seconds: 0.0,
            clean_correct,
        }
    }

    #[test]
    fn the_summary_pairs_the_two_evaluations_image_by_image() {
        // 1,000 images: 850 right under both, 40 lost by purification, 10 won, 100 wrong under both.
        let outcomes = |lost: bool, won: bool| {
            let mut v = vec![true; 850];
            v.extend(std::iter::repeat_n(lost, 40));
            v.extend(std::iter::repeat_n(won, 10));
            v.extend(std::iter::repeat_n(false, 100));
            v
        };
        let (before, after) = (metrics(outcomes(true, false), Some(0.9)), metrics(outcomes(false, true), Some(0.01)));
        let summary = Summary::new(&before, &after);
        assert!((summary.clean_accuracy_drop_points - 3.0).abs() < 1e-9);
        let ci = summary.confidence_95.unwrap();
        assert_eq!(ci.test_images, PairedCounts { both: 850, first_only: 40, second_only: 10, neither: 100 });
        let drop = ci.clean_accuracy_drop_points;
        assert!(drop.low > 1.0 && drop.high < 5.0 && drop.contains(3.0), "{drop:?}");
        assert!(ci.clean_accuracy_before.contains(0.89) && ci.clean_accuracy_after.contains(0.86));
        let asr = ci.attack_success_rate_after.unwrap();
        assert!(asr.low < 0.01 && asr.high > 0.01 && asr.high < 0.02, "{asr:?}");
        // Evaluations of different image sets cannot be paired: no intervals rather than wrong ones.
        let other = metrics(vec![true; 999], None);
        assert_eq!(Summary::new(&before, &other).confidence_95, None);
    }
}
