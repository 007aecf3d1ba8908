//! The attack lab: trains backdoored classifiers on real data so the purifier can be tested on
//! real backdoors (nothing can be downloaded). All-to-one poisoning: dirty-label (images of
//! other classes get the trigger and the target label) or clean-label (target-class images get
//! the trigger, labels unchanged: SIG's setting).
mod architectures;
mod hostile;
mod module_builder;

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

pub use architectures::{Architecture, export};
pub use hostile::{Hostile, export_hostile};

use crate::data::{Augmentation, Dataset, InputSpec};
use crate::error::{Error, Result};
use crate::evaluation::{self, Attack, Metrics, Plan, Trigger};
use crate::model::Classifier;
use crate::rng::{self, SeededRng};
use crate::training::{self, EpochRecord, Progress};

/// How the lab poisons the training set and trains the backdoored model.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PoisonSettings {
    /// The model family trained from scratch.
    pub architecture: Architecture,
    /// Base channel width (small-cnn: 16; resnet18: 64).
    pub width: i64,
    /// The backdoor's trigger, stamped on the poisoned training images.
    pub trigger: Trigger,
    /// The class the backdoor sends triggered images to.
    pub target_class: i64,
    /// Poisoned images as a fraction of the training set.
    pub poisoning_rate: f64,
    /// Poison only target-class images and keep their labels (default for SIG).
    pub clean_label: bool,
    /// Training epochs.
    pub epochs: usize,
    /// Base SGD learning rate (momentum 0.9), annealed to 0 along a cosine over the epochs.
    pub learning_rate: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Images per training step.
    pub batch_size: i64,
    /// Random augmentation of the training batches.
    pub augmentation: Augmentation,
    /// Seeds the initial weights, the choice of poisoned images, the batch order and augmentation.
    pub seed: u64,
}

/// What the lab made: written beside the model as lab.json.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LabReport {
    /// The settings the model was made with.
    pub settings: PoisonSettings,
    /// Where the backdoored model (TorchScript) was written.
    pub model: PathBuf,
    /// Images in the training set, poisoned ones included.
    pub training_images: i64,
    /// Training images that carry the trigger.
    pub poisoned_images: i64,
    /// Each training epoch's figures.
    pub epochs: Vec<EpochRecord>,
    /// Clean accuracy and ASR of the backdoored model on the test set.
    pub test: Metrics,
}

/// Applies the trigger to a seeded choice of training images; returns the poisoned set and how
/// many images were poisoned. A rate of exactly 0 poisons nothing: the lab's clean control models.
pub fn poison(train: &Dataset, settings: &PoisonSettings) -> Result<(Dataset, i64)> {
    if settings.poisoning_rate == 0.0 {
        let clean = Dataset::from_tensors(train.images.copy(), train.labels.copy(), train.source.clone())?;
        return Ok((clean, 0));
    }
    let labels = train.labels_vec();
    let target = settings.target_class;
    let mut candidates: Vec<i64> =
        (0..labels.len() as i64).filter(|&i| (labels[i as usize] == target) == settings.clean_label).collect();
    let wanted = (settings.poisoning_rate * labels.len() as f64).round() as usize;
    if !(0.0..=1.0).contains(&settings.poisoning_rate) || wanted == 0 {
        return Err(Error::Settings(format!(
            "poisoning rate {} selects no image of {}",
            settings.poisoning_rate,
            labels.len()
        )));
    }
    if wanted > candidates.len() {
        return Err(Error::Settings(format!(
            "poisoning rate {} needs {wanted} images but only {} are eligible",
            settings.poisoning_rate,
            candidates.len()
        )));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(settings.seed);
    candidates.shuffle(&mut rng);
    candidates.truncate(wanted);
    let index = Tensor::from_slice(&candidates);
    let triggered = settings.trigger.apply(&train.images.index_select(0, &index))?;
    let images = train.images.index_copy(0, &index, &triggered);
    let labels = if settings.clean_label { train.labels.copy() } else { train.labels.index_fill(0, &index, target) };
    let poisoned = Dataset::from_tensors(images, labels, train.source.clone())?;
    Ok((poisoned, wanted as i64))
}

/// Trains a backdoored model from scratch and writes it (TorchScript) to `out`, with lab.json
/// beside it.
pub fn train_backdoored(
    train: &Dataset,
    test: &Dataset,
    settings: &PoisonSettings,
    input: &InputSpec,
    device: Device,
    out: &Path,
    progress: &dyn Progress,
) -> Result<LabReport> {
    let mut rng = SeededRng::new(settings.seed);
    rng::seed_torch(settings.seed);
    let num_classes = train.labels.max().int64_value(&[]) + 1;
    if !(0..num_classes).contains(&settings.target_class) {
        return Err(Error::Settings(format!("target class {} is not in 0..{num_classes}", settings.target_class)));
    }
    let (poisoned, poisoned_images) = poison(train, settings)?;
    let shape = train.image_shape();
    let channels = shape[0];
    let staging = tempfile::Builder::new()
        .prefix(".fstgate-lab")
        .tempdir_in(crate::fsutil::parent_dir(out))
        .map_err(|e| Error::io(out, e))?;
    let initial = staging.path().join("initial.pt");
    architectures::export(
        settings.architecture,
        channels,
        (shape[1], shape[2]),
        num_classes,
        settings.width,
        &mut rng,
        &initial,
    )?;
    let sample = input.normalize(&train.images.narrow(0, 0, 2));
    let mut model = Classifier::load(&initial, device, &sample, Some("fc"))?;
    let trainable = model.named_parameters()?.into_iter().map(|(_, t)| t).collect();
    let config = training::Config {
        epochs: settings.epochs,
        lr: settings.learning_rate,
        momentum: 0.9,
        weight_decay: settings.weight_decay,
        batch_size: settings.batch_size,
        augmentation: settings.augmentation,
        input,
        head: None,
        train_mode: true,
        unlearning: None,
        validation: None,
        sharpness_radius: None,
        distillation: None,
        adversarial: None,
    };
    let epochs = training::train(&mut model, trainable, &poisoned, &config, &mut rng, progress)?;
    let plan = Plan {
        input: input.clone(),
        attack: Some(Attack::Trigger { trigger: settings.trigger.clone(), target: settings.target_class }),
        probes: Vec::new(),
        batch_size: 512,
    };
    let test_metrics = evaluation::evaluate(&mut model, test, &plan)?;
    let report = LabReport {
        settings: settings.clone(),
        model: out.to_path_buf(),
        training_images: poisoned.len(),
        poisoned_images,
        epochs,
        test: test_metrics,
    };
    // Write both files in the staging directory, then move them into place.
    let staged_model = staging.path().join("model.pt");
    model.save(&staged_model)?;
    let staged_report = staging.path().join("lab.json");
    std::fs::write(&staged_report, serde_json::to_vec_pretty(&report)?)
        .map_err(|e| Error::Write { path: staged_report.clone(), source: e })?;
    let report_path = out.with_extension("lab.json");
    std::fs::rename(&staged_report, &report_path).map_err(|e| Error::Write { path: report_path, source: e })?;
    std::fs::rename(&staged_model, out).map_err(|e| Error::Write { path: out.to_path_buf(), source: e })?;
    Ok(report)
}
