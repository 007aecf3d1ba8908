//! One purification job end to end, in two halves with a trust boundary between them:
//! [`evaluate`] loads the uploaded model and the data, evaluates, purifies and evaluates again
//! (everything that runs the model's code: what `worker` runs in a process holding no key and no
//! credentials); [`conclude`] applies the policies, renders report.html, signs, and publishes the
//! output directory atomically (staged beside it, renamed into place last). [`run`] does both in
//! this process.
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::attestation::{self, SigningKey};
use crate::data::{self, DataSpec, Dataset, InputSpec};
use crate::error::{Error, Result};
use crate::evaluation::{self, Attack, Examples, Plan, Trigger};
use crate::model::{Classifier, ModelSource, RegistrySource};
use crate::policy::{Decision, PolicySet};
use crate::purification::{self, Settings, Strength};
use crate::report::html;
use crate::report::layout::{MODEL_FILE, REPORT_FILE, REPORT_HTML_FILE};
use crate::report::{DataUsage, ModelInfo, OutputFile, REPORT_SCHEMA, Report, Summary, Timings};
use crate::training::Progress;

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

/// Loads and conforms a data set, then samples it.
fn load_data(spec: &DataSpec, input: &InputSpec, sample: Sample, seed: u64) -> Result<Dataset> {
    let data = data::load(spec)?.conform(input)?;
    let data = sample.apply(data, seed)?;
    if data.is_empty() {
        return Err(Error::data(&spec.path, "no images left after sampling"));
    }
    Ok(data)
}

fn check_normalisation(input: &InputSpec, data: &Dataset) -> Result<()> {
    input.validate()?;
    let channels = data.image_shape()[0] as usize;
    if input.mean.len() != 1 && input.mean.len() != channels {
        return Err(Error::DataModelMismatch(format!(
            "{} mean/std values for {channels}-channel images",
            input.mean.len()
        )));
    }
    Ok(())
}

/// Every set a job evaluates must have the test images' shape.
fn same_image_shape(what: &str, data: &Dataset, test: &Dataset) -> Result<()> {
    if data.image_shape() == test.image_shape() {
        return Ok(());
    }
    Err(Error::DataModelMismatch(format!(
        "{what} images are {:?} but test images are {:?}",
        data.image_shape(),
        test.image_shape()
    )))
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

/// The untrusted half: loads the model and the data, evaluates, purifies, evaluates again, and
/// saves the purified model as `dir/model.pt`. Never touches the policies or the signing key.
pub fn evaluate(job: &PurifyJob, dir: &Path, progress: &dyn Progress) -> Result<Evaluated> {
    let started_at = SystemTime::now();
    let started = Instant::now();
    job.settings.validate()?;
    if let Strength::Auto(auto) = &job.strength {
        auto.validate(&job.settings)?;
    }
    let clean = load_data(&job.clean_data, &job.input, job.clean_sample, job.settings.seed)?;
    let test = load_data(&job.test_data, &job.input, job.test_sample, job.settings.seed)?;
    check_normalisation(&job.input, &clean)?;
    same_image_shape("clean", &clean, &test)?;
    let sample = job.input.normalize(&clean.images.narrow(0, 0, clean.len().min(4)));
    let mut model = Classifier::load(&job.model, job.device, &sample, job.head.as_deref())?;
    model.set_precision(job.settings.precision)?;
    clean.check_labels(model.num_classes)?;
    test.check_labels(model.num_classes)?;
    let attack = match &job.attack {
        None => None,
        Some((AttackInput::Trigger(trigger), target)) => {
            // Fail before any training if the trigger does not fit the images.
            let _ = trigger.apply(&test.images.narrow(0, 0, 1))?;
            Some(Attack::Trigger { trigger: trigger.clone(), target: *target })
        }
        Some((AttackInput::PoisonedSet(spec), target)) => {
            let poisoned = load_data(spec, &job.input, Sample::All, job.settings.seed)?;
            poisoned.check_labels(model.num_classes)?;
            same_image_shape("poisoned", &poisoned, &test)?;
            Some(Attack::PoisonedSet { data: poisoned, target: *target })
        }
    };
    let mut warnings = Vec::new();
    if !model.mode_sensitive(&sample)? {
        warnings.push(
            "the model behaves identically in train and eval mode: it has no BatchNorm or dropout, \
             or they were frozen by torch.jit.trace; BatchNorm statistics cannot be re-estimated \
             (export with torch.jit.script to allow it)"
                .to_string(),
        );
    }
    let load_seconds = started.elapsed().as_secs_f64();

    let plan = Plan { input: job.input.clone(), attack, probes: job.probes.clone(), batch_size: 512 };
    let before = evaluation::evaluate(&mut model, &test, &plan)?;
    // One triggered image per class for report.html, with what the model made of it.
    let examples = match &plan.attack {
        Some(attack) => {
            let examples = Examples::select(&test, attack, model.num_classes as usize)?;
            let predicted = examples.classify(&mut model, &plan)?;
            Some((examples, predicted))
        }
        None => None,
    };
    let purify_started = Instant::now();
    let known_trigger = match &plan.attack {
        Some(Attack::Trigger { trigger, target }) => Some((trigger, *target)),
        _ => None,
    };
    let purified = purification::purify_with_strength(
        &mut model,
        &clean,
        &job.input,
        &job.settings,
        &job.strength,
        known_trigger,
        progress,
    )?;
    warnings.extend(purified.warnings);
    let purification_seconds = purify_started.elapsed().as_secs_f64();
    let after = evaluation::evaluate(&mut model, &test, &plan)?;
    let strip = match examples {
        Some((examples, before)) => {
            html::triggered_examples(&examples, &before, &examples.classify(&mut model, &plan)?)?
        }
        None => Vec::new(),
    };

    let model_path = dir.join(MODEL_FILE);
    model.save(&model_path)?;
    let report = Report {
        schema: REPORT_SCHEMA.to_string(),
        fstgate_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
        finished_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        device: crate::device::name(job.device),
        model: ModelInfo {
            source: registered_source(&model.source, job),
            head: model.head.clone(),
            output: model.output,
            num_classes: model.num_classes,
        },
        clean_data: usage(&clean),
        test_data: usage(&test),
        input: job.input.clone(),
        settings: purified.settings,
        strength_search: purified.search,
        summary: Summary::new(&before, &after),
        timings: Timings {
            load_seconds,
            evaluation_before_seconds: before.seconds,
            purification_seconds,
            evaluation_after_seconds: after.seconds,
            total_seconds: started.elapsed().as_secs_f64(),
        },
        before,
        after,
        epochs: purified.epochs,
        output: OutputFile { file: MODEL_FILE.into(), sha256: data::sha256_file(&model_path)? },
        warnings,
        decision: Decision::from_results(Vec::new()),
        confinement: None,
    };
    Ok(Evaluated { report, examples: strip })
}

/// The model's provenance as reports give it: for a model from a registry, the registry's URI
/// and the archive's path within the upload instead of the gate's download paths.
fn registered_source(source: &ModelSource, job: &PurifyJob) -> ModelSource {
    let Some(registry) = &job.registry else { return source.clone() };
    let upload_root =
        if job.model.is_dir() { job.model.as_path() } else { job.model.parent().unwrap_or(Path::new("")) };
    let archive = source.archive.strip_prefix(upload_root).unwrap_or(&source.archive);
    ModelSource {
        path: PathBuf::from(&registry.uri),
        archive: archive.to_path_buf(),
        registry: Some(registry.clone()),
        ..source.clone()
    }
}

/// The trusted half: judges the evaluated report with the job's policies, writes report.json
/// and report.html beside the purified model in `staging`, signs when the job has a key, and
/// renames `staging` to the job's output directory. The model's digest is computed here, from the
/// file, never taken from the evaluation.
pub fn conclude(job: &PurifyJob, evaluated: Evaluated, staging: tempfile::TempDir) -> Result<Report> {
    let Evaluated { mut report, examples } = evaluated;
    let model_path = staging.path().join(MODEL_FILE);
    report.output = OutputFile { file: MODEL_FILE.into(), sha256: data::sha256_file(&model_path)? };
    let policies = job.policies.as_ref().ok_or_else(|| Error::Settings("the job has no release policies".into()))?;
    report.decision = policies.evaluate(&report);
    crate::fsutil::write_json(&staging.path().join(REPORT_FILE), &report)?;
    let name = job.name.clone().unwrap_or_else(|| job.model.display().to_string());
    let key_id = job.signing_key.as_ref().map(|k| k.public().fingerprint());
    let page = html::render(&report, &name, &examples, key_id.as_deref());
    let page_path = staging.path().join(REPORT_HTML_FILE);
    std::fs::write(&page_path, page).map_err(|e| Error::Write { path: page_path, source: e })?;
    if let Some(key) = &job.signing_key {
        let name = job.out.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy());
        attestation::attest(staging.path(), &name, &report, &report.decision, key)?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, &job.out).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        Error::Write { path: job.out.clone(), source: e }
    })?;
    Ok(report)
}

fn usage(data: &Dataset) -> DataUsage {
    DataUsage { source: data.source.clone(), images_used: data.len(), image_shape: data.image_shape() }
}
