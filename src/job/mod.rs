//! One purification job end to end, in two stages with a trust boundary between them, in the
//! order data flows:
//! 1. [`evaluate`] (evaluate.rs, untrusted): loads the uploaded model and the data, evaluates,
//!    purifies and evaluates again: everything that runs the model's code, what `worker` runs in a
//!    process holding no key and no credentials; it returns an [`Evaluated`] report;
//! 2. [`conclude`] (conclude.rs, trusted): decides (the policies), renders report.html, attests
//!    (signs), and stages the output directory atomically (renamed into place last).
//!
//! `fstgate purify` and the pipeline both go through these two; the pipeline then publishes the
//! directory to its destination store (`publication`). [`run`] does both stages in this process.
//! [`scan`] (scan.rs) is the untrusted stage's evidence alone: trigger inversion without
//! purification, for `fstgate scan`.
mod conclude;
mod evaluate;
mod scan;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::attestation::SigningKey;
use crate::data::{DataSpec, Dataset, InputSpec};
use crate::error::{Error, Result};
use crate::evaluation::Trigger;
use crate::model::RegistrySource;
use crate::policy::PolicySet;
use crate::purification::{Settings, Strength};
use crate::report::Report;
use crate::report::html;
use crate::training::Progress;
pub use conclude::conclude;
pub use evaluate::evaluate;
pub use scan::{SCAN_SCHEMA, ScanJob, ScanReport, scan, write_trigger_images};

/// How much of a data source to use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Sample {
    /// Every image.
    All,
    /// A class-balanced fraction (the paper's clean set is 2% of the training data).
    Fraction(f64),
    /// A class-balanced number of images.
    Count(i64),
}

impl Sample {
    fn apply(self, data: Dataset, seed: u64) -> Result<Dataset> {
        match self {
            Sample::All => Ok(data),
            Sample::Fraction(f) => data.balanced_subset(f, seed),
            Sample::Count(n) => data.balanced_count(n, seed),
        }
    }
}

/// The known attack, as the user gave it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AttackInput {
    /// A trigger applied to the test images.
    Trigger(Trigger),
    /// A data set of already-triggered images, with their true labels.
    PoisonedSet(DataSpec),
}

/// A purification job. It serialises without its policies and signing key: the document a
/// worker process receives carries nothing that decides or signs.
#[derive(Serialize, Deserialize)]
pub struct PurifyJob {
    /// The uploaded model: a TorchScript file or an MLflow model directory.
    pub model: PathBuf,
    /// What the model is called where it came from (e.g. `local-registry:fashion-cnn/3`), for
    /// report.html; default: the model's path.
    pub name: Option<String>,
    /// The registry or store the model was taken from (pipeline jobs), named in report.json
    /// instead of the download path.
    #[serde(default)]
    pub registry: Option<RegistrySource>,
    /// The head's module path (e.g. `fc`), when given; otherwise it is located automatically.
    pub head: Option<String>,
    /// The clean data FST fine-tunes on.
    pub clean_data: DataSpec,
    /// How much of the clean data to use.
    pub clean_sample: Sample,
    /// The test set both evaluations run on.
    pub test_data: DataSpec,
    /// How much of the test set to use.
    pub test_sample: Sample,
    /// The model's input geometry and normalisation.
    pub input: InputSpec,
    /// With `Strength::Auto`, `settings` is the base whose alpha the search replaces.
    pub settings: Settings,
    /// Fixed settings, or the automatic strength search.
    pub strength: Strength,
    /// The known attack and its target class, if any.
    pub attack: Option<(AttackInput, i64)>,
    /// Trigger probes run on the test set before and after, to look for unknown backdoors.
    pub probes: Vec<Trigger>,
    /// Where the model runs; serialised by name (`cpu`, `cuda:N`).
    #[serde(with = "crate::device::by_name")]
    pub device: Device,
    /// The output directory; it must not exist yet.
    pub out: PathBuf,
    /// The release rules applied to the report (compiled once, shareable between jobs). Never
    /// in a worker's copy, which must not start the plugin host's thread before it confines
    /// itself; a job concluded without them fails.
    #[serde(skip)]
    pub policies: Option<std::sync::Arc<PolicySet>>,
    /// Signs the output directory (model_signing bundle, provenance, decision record).
    #[serde(skip)]
    pub signing_key: Option<SigningKey>,
}

impl PurifyJob {
    /// Every file or directory the job reads: the model, the data sets (a data file's whole
    /// directory: IDX labels lie beside their images), and trigger images. The model worker may
    /// read these and nothing else outside the system's libraries.
    pub fn input_paths(&self) -> Vec<PathBuf> {
        let data_directory = |spec: &DataSpec| match spec.path.is_file() {
            true => spec.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf(),
            false => spec.path.clone(),
        };
        let mut paths = vec![self.model.clone(), data_directory(&self.clean_data), data_directory(&self.test_data)];
        let mut triggers: Vec<&Trigger> = self.probes.iter().collect();
        match &self.attack {
            Some((AttackInput::PoisonedSet(set), _)) => paths.push(data_directory(set)),
            Some((AttackInput::Trigger(trigger), _)) => triggers.push(trigger),
            None => {}
        }
        paths.extend(triggers.into_iter().filter_map(Trigger::image_path).map(Path::to_path_buf));
        paths
    }
}

/// What the untrusted half of a job produced: the report without a decision, and the triggered
/// examples for report.html. The purified model is `model.pt` in the directory it was given.
#[derive(Debug, Serialize, Deserialize)]
pub struct Evaluated {
    /// report.json's content, with an empty decision.
    pub report: Report,
    /// Triggered images (one per class other than the target) with the predictions before and
    /// after, for report.html; empty without a known attack.
    pub examples: Vec<html::TriggeredExample>,
}

/// Purifies and evaluates in this process, then concludes: both halves, for `fstgate purify` and
/// the tests.
pub fn run(job: &PurifyJob, progress: &dyn Progress) -> Result<Report> {
    let staging = staging_dir(&job.out)?;
    let evaluated = evaluate(job, staging.path(), progress)?;
    conclude(job, evaluated, staging)
}

/// A fresh directory beside `out` to stage the output in (renamed to `out` when complete).
pub fn staging_dir(out: &Path) -> Result<tempfile::TempDir> {
    if out.exists() {
        return Err(Error::Settings(format!("{} already exists; choose another --out", out.display())));
    }
    tempfile::Builder::new()
        .prefix(".fstgate-purify")
        .tempdir_in(crate::fsutil::parent_dir(out))
        .map_err(|e| Error::io(out, e))
}
