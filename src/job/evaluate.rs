//! The untrusted stage: everything that runs the uploaded model's code (loading it, evaluating,
//! purifying, evaluating again). It holds no policy and no key; the worker runs it confined.
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use crate::data::{self, DataSpec, Dataset, InputSpec};
use crate::error::{Error, Result};
use crate::evaluation::{self, Attack, Examples, Plan};
use crate::model::{Classifier, ModelSource};
use crate::policy::Decision;
use crate::purification::{self, Strength};
use crate::report::html;
use crate::report::layout::MODEL_FILE;
use crate::report::{DataUsage, ModelInfo, OutputFile, REPORT_SCHEMA, Report, Summary, Timings};
use crate::training::Progress;

use super::{AttackInput, Evaluated, PurifyJob, Sample};

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
        model: model_info(&model, registered_source(&model.source, job)),
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

/// The loaded model as reports describe it, with its provenance as given.
pub(super) fn model_info(model: &Classifier, source: ModelSource) -> ModelInfo {
    ModelInfo { source, head: model.head.clone(), output: model.output, num_classes: model.num_classes }
}

/// Loads and conforms a data set, then samples it.
pub(super) fn load_data(spec: &DataSpec, input: &InputSpec, sample: Sample, seed: u64) -> Result<Dataset> {
    let data = data::load(spec)?.conform(input)?;
    let data = sample.apply(data, seed)?;
    if data.is_empty() {
        return Err(Error::data(&spec.path, "no images left after sampling"));
    }
    Ok(data)
}

pub(super) fn check_normalisation(input: &InputSpec, data: &Dataset) -> Result<()> {
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

pub(super) fn usage(data: &Dataset) -> DataUsage {
    DataUsage { source: data.source.clone(), images_used: data.len(), image_shape: data.image_shape() }
}
