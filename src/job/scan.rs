//! A scan: trigger inversion alone on an uploaded model, without purifying it. It answers the
//! question a team asks before (or instead of) a gate, "is a backdoor likely here, and into which
//! class?", with the judge's own evidence (src/evaluation/inversion.rs: Neural Cleanse's per-class
//! mask and pattern from two starts, and a blend per class) on the same split of the clean images
//! the judge makes, so a scan and a `--judge` purification with the same clean set and seed read
//! the same masks. It runs the model's code, as [`evaluate`](super::evaluate) does.
use std::path::{Path, PathBuf};
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::Sample;
use super::evaluate::{check_normalisation, load_data, model_info, usage};
use crate::data::{DataSpec, InputSpec};
use crate::error::{Error, Result};
use crate::evaluation::{self, InversionSettings, InversionSummary, InvertedTrigger, TriggerShape};
use crate::model::Classifier;
use crate::report::{DataUsage, ModelInfo};

/// The schema name of a scan's document.
pub const SCAN_SCHEMA: &str = "fstgate.scan/v1";

/// What to scan, and with what.
#[derive(Debug, Clone)]
pub struct ScanJob {
    /// TorchScript archive, or an MLflow model directory holding one.
    pub model: PathBuf,
    /// Module path of the classification head (found automatically when `None`).
    pub head: Option<String>,
    /// Clean images of the model's task.
    pub clean_data: DataSpec,
    /// How much of them to use.
    pub clean_sample: Sample,
    /// The model's input contract.
    pub input: InputSpec,
    /// Where the model runs.
    pub device: Device,
    /// Share of the clean images held out to measure each trigger's push, class-balanced (the
    /// judge's validation share).
    pub held_out_fraction: f64,
    /// At most this many of the other images, class-balanced, to optimise the masks on (the
    /// judge's `inversion_images`).
    pub optimisation_images: i64,
    /// Seeds the split, the optimisation's batches and its starts.
    pub seed: u64,
    /// The inversion's settings (the judge's by default; their seed is replaced by `seed`).
    pub inversion: InversionSettings,
}

/// A scan's document (`scan.json`; schemas/scan.schema.json).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScanReport {
    /// Always [`SCAN_SCHEMA`].
    pub schema: String,
    /// The fstgate that scanned.
    pub fstgate_version: String,
    /// The model as loaded.
    pub model: ModelInfo,
    /// The clean images, before the split.
    pub clean_data: DataUsage,
    /// The inversion: every class's mask and blend, their ratios to the other classes' median,
    /// Neural Cleanse's anomaly index, and the suspected targets.
    pub inversion: InversionSummary,
    /// Whether any class is a suspected target (of a patch or of a blend). The judge reads this
    /// against a from-scratch reference before it counts as evidence; a scan does not, so a
    /// data set's natural shortcut (Fashion-MNIST's "bag") can be named here.
    pub backdoor_suspected: bool,
    /// Wall-clock seconds, loading included.
    pub seconds: f64,
}

/// Loads the model and the clean images and inverts a trigger per class: the document, and the
/// triggers in the order the inversion returns them (patches in class order, then blends).
pub fn scan(job: &ScanJob) -> Result<(ScanReport, Vec<InvertedTrigger>)> {
    let started = Instant::now();
    job.inversion.validate()?;
    if !(job.held_out_fraction > 0.0 && job.held_out_fraction <= 0.5) {
        return Err(Error::Settings(format!(
            "the scan's held-out fraction must be in (0, 0.5], got {}",
            job.held_out_fraction
        )));
    }
    let clean = load_data(&job.clean_data, &job.input, job.clean_sample, job.seed)?;
    check_normalisation(&job.input, &clean)?;
    let sample = job.input.normalize(&clean.images.narrow(0, 0, clean.len().min(4)));
    let mut model = Classifier::load(&job.model, job.device, &sample, job.head.as_deref())?;
    clean.check_labels(model.num_classes)?;
    let (tuning, held_out) = clean.balanced_split(job.held_out_fraction, job.seed)?;
    let optimisation = tuning.balanced_count(job.optimisation_images.min(tuning.len()), job.seed)?;
    let settings = InversionSettings { seed: job.seed, ..job.inversion.clone() };
    let (inversion, triggers) = evaluation::invert(&mut model, &optimisation, &held_out, &job.input, &settings)?;
    let backdoor_suspected = !inversion.suspected_targets.is_empty() || !inversion.suspected_blend_targets.is_empty();
    let report = ScanReport {
        schema: SCAN_SCHEMA.to_string(),
        fstgate_version: env!("CARGO_PKG_VERSION").to_string(),
        model: model_info(&model, model.source.clone()),
        clean_data: usage(&clean),
        inversion,
        backdoor_suspected,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((report, triggers))
}

/// Writes each inverted trigger as PNG images into `dir` (created if missing): for a patch its
/// mask (`patch-<class>-mask.png`, white where the trigger covers the image) and the trigger
/// itself, the pattern where the mask covers and black elsewhere (`patch-<class>-trigger.png`);
/// for a blend its pattern (`blend-<class>-pattern.png`; its weight is in the document). Each file
/// is written whole or not at all.
pub fn write_trigger_images(dir: &Path, triggers: &[InvertedTrigger]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for trigger in triggers {
        let pattern = trigger.pattern.get(0).to_kind(Kind::Float);
        let images: Vec<(String, Tensor)> = match trigger.shape {
            TriggerShape::Patch => {
                let mask = trigger.mask.get(0).to_kind(Kind::Float);
                vec![
                    (format!("patch-{}-mask.png", trigger.class), mask.shallow_clone()),
                    (format!("patch-{}-trigger.png", trigger.class), &mask * pattern),
                ]
            }
            TriggerShape::Blend => vec![(format!("blend-{}-pattern.png", trigger.class), pattern)],
        };
        for (name, image) in images {
            crate::fsutil::write_atomic(&dir.join(name), &crate::report::html::png(&image)?)?;
        }
    }
    Ok(())
}
