//! report.json as a policy sees it: the `fstgate.report/v1` document the gate writes, without
//! the gate's `decision` (JSON Schema: schemas/policy-input.schema.json in the fstgate repository).
//!
//! Enumerations (formats, method, output kind, split) are plain strings so that a plugin keeps
//! working when fstgate learns a new one, and unknown fields are ignored for the same reason.
use serde::{Deserialize, Serialize};

/// The `schema` value of the reports these types describe.
pub const REPORT_SCHEMA: &str = "fstgate.report/v1";

/// One purification: the model, the data, what was done and the figures before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always `fstgate.report/v1`.
    pub schema: String,
    pub fstgate_version: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
    /// `cpu` or `cuda:N`.
    pub device: String,
    pub model: ModelInfo,
    /// The data the model was purified on.
    pub clean_data: DataUsage,
    /// The data the figures were measured on.
    pub test_data: DataUsage,
    pub input: InputSpec,
    /// The settings of the purified model (with the automatic strength: the chosen alpha).
    pub settings: Settings,
    /// The automatic strength's candidates, signals, choice and reason; `None` with fixed settings.
    pub strength_search: Option<StrengthSearch>,
    /// Figures of the model as it came in.
    pub before: Metrics,
    /// Figures of the purified model.
    pub after: Metrics,
    pub summary: Summary,
    pub epochs: Vec<EpochRecord>,
    pub timings: Timings,
    /// The purified model written beside the report.
    pub output: OutputFile,
    /// Things the reader should know (e.g. a model whose BatchNorm statistics are frozen).
    pub warnings: Vec<String>,
    /// How the model's code was confined while it ran; `None` when it ran inside the gate.
    pub confinement: Option<Confinement>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub source: ModelSource,
    pub head: Head,
    /// How the logits are taken from the output: `tensor`, `tuple-first` or `dict-logits`.
    pub output: String,
    pub num_classes: i64,
}

/// Where the model came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSource {
    /// The path the user gave (a file, or an MLflow model directory); for a model from a
    /// registry, the registry's URI for it.
    pub path: String,
    /// The TorchScript archive actually loaded (for a model from a registry, its path within
    /// the upload).
    pub archive: String,
    /// `torchscript` or `mlflow-torchscript`.
    pub format: String,
    /// sha256 of the archive, hex.
    pub sha256: String,
    /// Every call in the model's TorchScript code (`aten::conv2d`, `prim::If`, ...) with its
    /// count: a policy can deny ops it does not expect.
    pub ops: std::collections::BTreeMap<String, u64>,
    /// The registry or store the gate took the model from; `None` for a local file.
    pub registry: Option<RegistrySource>,
}

/// A registered model version as its registry names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistrySource {
    /// The pipeline source's name.
    pub source: String,
    /// `mlflow` or `object-store`.
    pub kind: String,
    /// The MLflow tracking URL or the store URL, without credentials.
    pub location: String,
    /// The registered model's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `models:/<name>/<version>` for MLflow, the upload's directory URL in a store.
    pub uri: String,
}

/// How the model's code was confined while it ran, layer by layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confinement {
    /// Own user and network namespaces.
    pub network: ConfinementLayer,
    /// Landlock: files, TCP, abstract UNIX sockets, signals.
    pub filesystem: ConfinementLayer,
    /// seccomp: sockets, exec, tracing and other escapes refused.
    pub syscalls: ConfinementLayer,
}

/// One confinement layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfinementLayer {
    /// Whether this host's kernel enforced it.
    pub enforced: bool,
    /// What it is, or why it was not enforced.
    pub detail: String,
}

/// The classification head fstgate located (and FST re-initialised).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    /// Module path, e.g. `fc` or `classifier.6`.
    pub name: String,
    pub weight: String,
    pub bias: Option<String>,
    pub in_features: i64,
    pub out_features: i64,
    /// `automatic` or `user`.
    pub located_by: String,
    /// Whether a functional test confirmed that this map produces the logits.
    pub verified: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataUsage {
    pub source: DataSource,
    /// Images used after class-balanced sampling.
    pub images_used: i64,
    /// [C, H, W] after conforming to the model input.
    pub image_shape: Vec<i64>,
}

/// Provenance of a data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSource {
    pub path: String,
    /// `train` or `test` for multi-split layouts.
    pub split: Option<String>,
    /// `idx`, `cifar10`, `safetensors` or `image-folder`.
    pub format: String,
    /// sha256 over the files read, hex; empty when the report lacks it, so that a policy can
    /// say so instead of failing to read the report.
    #[serde(default)]
    pub sha256: String,
    pub images_in_source: i64,
}

/// The model's input contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Height and width the data was resized to, if any.
    pub size: Option<[i64; 2]>,
    pub channels: Option<i64>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

/// The purification's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// `fst`, `ft`, `lp`, `fe-tuning` or `ft-init`.
    pub method: String,
    pub epochs: u64,
    pub learning_rate: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub batch_size: i64,
    /// Weight of FST's <W, W0> term.
    pub alpha: f64,
    pub augmentation: Augmentation,
    pub seed: u64,
    /// `fp32`, or `bf16` (autocast with channels-last, CUDA only).
    #[serde(default)]
    pub precision: String,
    /// Epochs of linear probing of the re-initialised head before the full tuning (LP-FT).
    #[serde(default)]
    pub head_warmup_epochs: u64,
}

/// What the automatic strength did: every alpha tried and why one was kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrengthSearch {
    pub settings: AutoStrength,
    /// The selection rule in words.
    pub rule: String,
    pub tuning_images: i64,
    pub validation_images: i64,
    /// The original model's accuracy on the validation split, in [0, 1].
    pub original_validation_accuracy: f64,
    /// Trigger probes that pushed at least `suspect_push_rate` of the original model's
    /// validation images into one class.
    #[serde(default)]
    pub suspect_probes: Vec<ProbeResult>,
    /// The backdoor evidence the search worked from, followed to the chosen candidate.
    #[serde(default)]
    pub evidence: Option<Evidence>,
    /// In the order tried.
    pub candidates: Vec<Candidate>,
    /// Index of the chosen candidate in `candidates`.
    pub chosen: u64,
    pub reason: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoStrength {
    pub validation_fraction: f64,
    pub start_alpha: f64,
    pub max_candidates: u64,
    /// Optimiser steps per candidate at least.
    pub min_steps: u64,
    /// A candidate shifted the head enough when cos(W, W0) ends at or below this.
    pub cosine_target: f64,
    /// A probe pushing at least this fraction into one class marks a suspected backdoor.
    #[serde(default)]
    pub suspect_push_rate: f64,
    /// A candidate must bring every suspect probe's push down to at most this.
    #[serde(default)]
    pub suspect_push_target: f64,
    pub max_validation_drop_points: f64,
    /// Whether a trigger was inverted per class before purifying.
    #[serde(default)]
    pub invert_triggers: bool,
    /// At most this many tuning images to invert triggers on.
    #[serde(default)]
    pub inversion_images: i64,
    #[serde(default)]
    pub inversion: Option<InversionSettings>,
    /// Optimiser steps of the from-scratch reference signals are judged against (0: none).
    #[serde(default)]
    pub reference_steps: u64,
    /// The first alpha with evidence of a backdoor.
    #[serde(default)]
    pub evidence_start_alpha: f64,
    /// A candidate cleared an inverted trigger when it pushes at most this fraction.
    #[serde(default)]
    pub inverted_push_target: f64,
    /// Linear-probe epochs of the new head before each candidate's full tuning (LP-FT).
    #[serde(default)]
    pub head_warmup_epochs: u64,
    /// Every candidate of the alpha ladder was trained (benchmark fitting, not gating).
    #[serde(default)]
    pub explore: bool,
}

/// How triggers are inverted per class and judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InversionSettings {
    pub steps: u64,
    pub batch_size: i64,
    pub learning_rate: f64,
    pub success_rate: f64,
    pub initial_cost: f64,
    /// A class is suspected when its mask is at most this fraction of the others' median...
    pub max_mask_ratio: f64,
    /// ... and its trigger pushes at least this fraction of held-out images into it.
    pub min_push: f64,
    pub seed: u64,
}

/// The evidence of a backdoor found without knowing the attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Trigger inversion on the original model (`None` when disabled).
    pub inversion: Option<InversionSummary>,
    /// The from-scratch reference the signals were judged against (`None`: disabled, or no signal).
    #[serde(default)]
    pub reference: Option<Reference>,
    pub signals: Vec<Signal>,
    /// A signal that was not the model's nature: the model was likely backdoored.
    pub backdoor_suspected: bool,
    pub suspected_classes: Vec<i64>,
    /// The highest push after purification over the signals that count, 0-1.
    pub residual_push: f64,
    pub residual_push_upper_95: f64,
    /// Every signal that counts was cleared by purification (true with none).
    pub cleared: bool,
    /// The finding in words.
    pub reason: String,
}

/// One suspected trigger, before and after purification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// `probe` or `inversion`.
    pub source: String,
    pub trigger: String,
    pub class: i64,
    pub push_before: f64,
    pub push_after: Option<f64>,
    pub images: i64,
    pub push_after_upper_95: Option<f64>,
    /// Inverted triggers: the mask size against the other classes' median.
    #[serde(default)]
    pub mask_ratio: Option<f64>,
    #[serde(default)]
    pub cleared: bool,
    /// The same trigger's push on the from-scratch reference, which holds no backdoor, 0-1.
    #[serde(default)]
    pub reference_push: Option<f64>,
    /// The model's nature, not a backdoor: it moves the from-scratch reference as well, or (probes)
    /// it persisted through the first candidate.
    pub natural: bool,
}

/// The uploaded model's architecture trained from scratch on the clean tuning images only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub steps: u64,
    pub epochs: u64,
    /// Its accuracy on the validation split, 0-1.
    pub validation_accuracy: f64,
    /// It learnt enough of the task to judge signals by.
    pub usable: bool,
    pub seconds: f64,
}

/// Trigger inversion on the original model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InversionSummary {
    pub settings: InversionSettings,
    pub optimisation_images: i64,
    pub held_out_images: i64,
    pub classes: Vec<InvertedClass>,
    /// Suspected backdoor targets, most suspicious first.
    pub suspected_targets: Vec<i64>,
    pub seconds: f64,
}

/// What the inversion found for one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvertedClass {
    pub class: i64,
    /// Size of the smallest mask found, in pixels.
    pub mask_pixels: f64,
    pub reached: bool,
    /// Fraction of held-out images of other classes sent into this class, 0-1.
    pub push: f64,
    pub mask_ratio: f64,
    pub anomaly_index: f64,
}

/// One alpha tried by the automatic strength.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub alpha: f64,
    pub epochs: u64,
    pub learning_rate: f64,
    /// `None` when training diverged (see `failure`).
    pub validation_accuracy: Option<f64>,
    pub validation_drop_points: Option<f64>,
    pub head_cosine_to_original: Option<f64>,
    /// The highest push of the suspect probes after this candidate (`None`: no suspects).
    #[serde(default)]
    pub suspect_push: Option<f64>,
    /// The highest push of the original model's inverted triggers on this candidate, 0-1.
    #[serde(default)]
    pub inverted_push: Option<f64>,
    /// The named trigger's attack success rate on this candidate's validation images
    /// (diagnostic; the search never uses it).
    #[serde(default)]
    pub known_trigger_asr: Option<f64>,
    /// Met the head-shift, suspect-probe and inverted-trigger targets.
    pub reached_shift_target: bool,
    pub within_accuracy_budget: bool,
    pub failure: Option<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Augmentation {
    pub crop_padding: i64,
    pub horizontal_flip: bool,
}

/// A model's figures on the test data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Accuracy on the clean test set, 0-1.
    pub clean_accuracy: f64,
    pub test_images: i64,
    /// Accuracy per true class; `None` for classes absent from the test set.
    pub per_class_accuracy: Vec<Option<f64>>,
    /// The known attack's figures, when the trigger was given.
    pub attack: Option<AttackMetrics>,
    /// Generic trigger probes, for when the attack is unknown.
    pub probes: Vec<ProbeResult>,
    /// The probe with the highest rate.
    pub worst_probe: Option<ProbeResult>,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackMetrics {
    pub trigger: String,
    pub target_class: i64,
    /// ASR: fraction of triggered non-target images predicted as the target class, 0-1.
    pub attack_success_rate: f64,
    /// RA: fraction of the same images predicted as their true class, 0-1.
    pub robust_accuracy: f64,
    /// Number of triggered non-target images.
    pub images: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub trigger: String,
    /// The class the triggered images are most often pushed to.
    pub class: i64,
    /// Fraction of triggered images not of `class` that are predicted as `class`, 0-1.
    pub rate: f64,
}

/// The figures a gate decides on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub clean_accuracy_before: f64,
    pub clean_accuracy_after: f64,
    /// before - after, in percentage points.
    pub clean_accuracy_drop_points: f64,
    pub attack_success_rate_before: Option<f64>,
    pub attack_success_rate_after: Option<f64>,
    pub robust_accuracy_before: Option<f64>,
    pub robust_accuracy_after: Option<f64>,
    pub worst_probe_rate_before: Option<f64>,
    pub worst_probe_rate_after: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: u64,
    pub learning_rate: f64,
    pub loss: f64,
    pub cross_entropy: f64,
    pub train_accuracy: f64,
    /// Cosine between the head weight and the original one (FST drives it negative).
    pub head_cosine_to_original: Option<f64>,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub load_seconds: f64,
    pub evaluation_before_seconds: f64,
    pub purification_seconds: f64,
    pub evaluation_after_seconds: f64,
    pub total_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Relative to the report's directory.
    pub file: String,
    pub sha256: String,
}

/// What measured the backdoor after purification; see [`Report::backdoor_rate_after`].
#[derive(Debug, Clone, PartialEq)]
pub enum BackdoorRate<'a> {
    /// The known trigger's attack success rate (`summary.attack_success_rate_after`), with the
    /// attack's details when the report has them.
    KnownTrigger { rate: f64, attack: Option<&'a AttackMetrics> },
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
            BackdoorRate::Evidence(evidence) => evidence.residual_push,
            BackdoorRate::WorstProbe(probe) => probe.rate,
        }
    }

    /// The name to record the rate under, as in the report's summary.
    pub fn measurement_name(&self) -> &'static str {
        match self {
            BackdoorRate::KnownTrigger { .. } => "attack_success_rate_after",
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
