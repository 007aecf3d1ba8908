//! Feature Shift Tuning and its baselines (FST.md): which parameters are re-initialised, which
//! are trained, and which loss, on top of the shared training loop; `strength` chooses FST's
//! alpha per model.
pub mod evidence;
pub mod reference;
mod strength;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::data::{Augmentation, Dataset, InputSpec};
use crate::error::{Error, Result};
use crate::model::{Classifier, Precision};
use crate::rng::{self, SeededRng};
use crate::training::{self, AdversarialUnlearning, Distillation, EpochRecord, HeadConstraint, Progress, Unlearning};

pub use strength::{
    AutoStrength, Candidate, Purified, RELEARN_LEARNING_RATE, RelearningCheck, Strength, StrengthSearch,
    purify_with_strength,
};

/// Which parameters are re-initialised and trained, and with which loss (FST.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Vanilla fine-tuning of every parameter.
    Ft,
    /// Linear probing: the head only.
    Lp,
    /// Re-initialised head, frozen; everything else trained.
    FeTuning,
    /// Re-initialised head; everything trained.
    FtInit,
    /// Feature Shift Tuning: re-initialised head, everything trained, loss CE + alpha <W, W0>.
    Fst,
}

impl Method {
    fn reinitialises_head(self) -> bool {
        matches!(self, Method::FeTuning | Method::FtInit | Method::Fst)
    }
}

/// One purification run's training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Settings {
    /// The purification method.
    pub method: Method,
    /// Epochs of tuning over the clean set (after any head warm-up).
    pub epochs: usize,
    /// Initial SGD learning rate, annealed per epoch by a cosine schedule.
    pub learning_rate: f64,
    /// SGD momentum, in [0, 1).
    pub momentum: f64,
    /// SGD weight decay (L2), non-negative.
    pub weight_decay: f64,
    /// Images per optimiser step.
    pub batch_size: i64,
    /// Weight of the <W, W0> term (FST only).
    pub alpha: f64,
    /// Augmentation of the clean images during tuning (random crop, horizontal flip).
    pub augmentation: Augmentation,
    /// Seeds the head re-initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Arithmetic on the device: fp32, or bf16 autocast with channels-last (CUDA only).
    #[serde(default)]
    pub precision: Precision,
    /// Epochs of linear probing before the full tuning when the head is re-initialised (LP-FT):
    /// the new head is trained alone on the frozen features (eval mode, with FST's penalty and
    /// projection), so the full tuning starts from a head that already classifies. A random
    /// head's first steps send large, meaningless gradients into the features; on GroupNorm
    /// models with global pooling that cost 16-27 points of clean accuracy. 0: none (the paper).
    #[serde(default)]
    pub head_warmup_epochs: usize,
    /// The warm-up's initial learning rate (cosine-annealed over the warm-up); None: the tuning's.
    #[serde(default)]
    pub head_warmup_learning_rate: Option<f64>,
    /// FST from the original head instead of a re-initialised one (no warm-up then): the push
    /// turns the head away from where it was while the features follow. The judge's gentle
    /// candidate without evidence (`AutoStrength::gentle_keeps_head`); false: the paper.
    #[serde(default)]
    pub keep_head: bool,
    /// Weight-space interpolation after the tuning (WiSE-FT, Wortsman et al. 2022): every
    /// parameter but the head's ends at original + t * (tuned - original), the new head is kept
    /// whole, and normalisation statistics are re-estimated on the clean images. Fine-tuning on a
    /// few thousand images drifts from features learnt on many more; halfway back keeps most of
    /// what the original knew. None: the tuned weights as they are (the paper); t in (0, 1].
    #[serde(default)]
    pub feature_interpolation: Option<f64>,
    /// Sharpness-aware tuning (ASAM, `training::Config::sharpness_radius`) at this radius, for
    /// the full tuning (not the head's warm-up): each step's gradient is taken at the weights
    /// pushed uphill, so the tuning settles where the loss is flat around it. On the spent
    /// ResNet-18s whose blends FST left at 95-99% it took them to 9-22% at radius 8-11 (collapse
    /// at 16). None: plain SGD (the paper).
    #[serde(default)]
    pub sharpness_radius: Option<f64>,
    /// Knowledge distillation from the original model at this weight (`training::Distillation`,
    /// temperature `DISTILLATION_TEMPERATURE`), in the head's warm-up as in the full tuning:
    /// the tuned model is held to the original's answers on the clean images, and an image the
    /// unlearning stamps to the original's answer on the same image without the trigger. What
    /// the re-initialised head and the small clean set cost is pulled back; what the triggers
    /// did is not. None: the paper.
    #[serde(default)]
    pub distillation: Option<f64>,
    /// Trigger-agnostic adversarial unlearning (`training::AdversarialUnlearning`), in the head's
    /// warm-up as in the full tuning. None: the paper.
    #[serde(default)]
    pub adversarial_unlearning: Option<AdversarialUnlearning>,
}

/// Softmax temperature of the distillation (Hinton et al. 2015's usual 2: the teacher's
/// second choices weigh in, its first still leads).
pub const DISTILLATION_TEMPERATURE: f64 = 2.0;

impl Default for Settings {
    /// The paper's CIFAR-10 settings.
    fn default() -> Self {
        Settings {
            method: Method::Fst,
            epochs: 10,
            learning_rate: 0.01,
            momentum: 0.9,
            weight_decay: 0.0,
            batch_size: 128,
            alpha: 0.2,
            augmentation: Augmentation { crop_padding: 4, horizontal_flip: true },
            seed: 0,
            precision: Precision::Fp32,
            head_warmup_epochs: 0,
            head_warmup_learning_rate: None,
            keep_head: false,
            feature_interpolation: None,
            sharpness_radius: None,
            distillation: None,
            adversarial_unlearning: None,
        }
    }
}

impl Settings {
    /// The base the automatic strength searches alpha from: the paper's settings with 20 epochs
    /// and no augmentation, the schedule that kept clean accuracy on the lab's 28x28 CNNs where
    /// the paper's 10 epochs with crop + flip did not (tests/purify.rs, docs/strength.md).
    pub fn automatic_base() -> Self {
        Settings { epochs: 20, augmentation: Augmentation::NONE, ..Settings::default() }
    }

    /// Checks every figure's range (e.g. a positive learning rate, momentum in [0, 1)).
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(Error::Settings(format!("{name} must be positive, got {v}")))
            }
        };
        positive("learning rate", self.learning_rate)?;
        positive("warm-up learning rate", self.head_warmup_learning_rate.unwrap_or(self.learning_rate))?;
        if let Some(t) = self.feature_interpolation.filter(|t| !(*t > 0.0 && *t <= 1.0)) {
            return Err(Error::Settings(format!("the feature interpolation must be in (0, 1], got {t}")));
        }
        if let Some(radius) = self.sharpness_radius {
            positive("sharpness radius", radius)?;
        }
        if let Some(weight) = self.distillation {
            positive("distillation weight", weight)?;
        }
        if let Some(adversarial) = self.adversarial_unlearning {
            if !(adversarial.share > 0.0 && adversarial.share <= 1.0) {
                return Err(Error::Settings(format!(
                    "the adversarial unlearning share must be in (0, 1], got {}",
                    adversarial.share
                )));
            }
            positive("adversarial radius", adversarial.radius)?;
            positive("adversarial steps", adversarial.steps as f64)?;
        }
        positive("batch size", self.batch_size as f64)?;
        positive("epochs", self.epochs as f64)?;
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(Error::Settings(format!("momentum must be in [0, 1), got {}", self.momentum)));
        }
        if !(self.weight_decay >= 0.0 && self.alpha >= 0.0 && self.alpha.is_finite()) {
            return Err(Error::Settings("weight decay and alpha must be non-negative".into()));
        }
        if self.keep_head && self.method != Method::Fst {
            return Err(Error::Settings(format!(
                "keeping the original head is FST's variant; method {:?} already decides its head",
                self.method
            )));
        }
        if self.augmentation.crop_padding < 0 {
            return Err(Error::Settings("crop padding must be non-negative".into()));
        }
        Ok(())
    }
}

/// Purifies `model` in place on the conformed clean set. On error the model is left
/// half-trained: callers must not save it.
pub fn purify(
    model: &mut Classifier,
    clean: &Dataset,
    input: &InputSpec,
    settings: &Settings,
    progress: &dyn Progress,
) -> Result<Vec<EpochRecord>> {
    purify_unlearning(model, clean, input, settings, None, None, progress)
}

/// `purify`, with suspected triggers stamped on a share of every batch under the images' own
/// labels (`training::Unlearning`), in the head's warm-up as in the full tuning, and held-out
/// images measured at the end of every epoch (the tuning curve, `training::Config::validation`).
pub fn purify_unlearning(
    model: &mut Classifier,
    clean: &Dataset,
    input: &InputSpec,
    settings: &Settings,
    unlearning: Option<Unlearning>,
    validation: Option<&Dataset>,
    progress: &dyn Progress,
) -> Result<Vec<EpochRecord>> {
    settings.validate()?;
    clean.check_labels(model.num_classes)?;
    let mut rng = SeededRng::new(settings.seed);
    rng::seed_torch(settings.seed);
    let (weight, bias) = model.head_tensors()?;
    let original = tch::no_grad(|| weight.detach().copy());
    // The original's answers and the weight they are held to, computed before anything moves.
    let teacher = match settings.distillation {
        Some(weight) => Some((teacher_log_probs(model, clean, input, settings.batch_size)?, weight)),
        None => None,
    };

    let reinitialise = settings.method.reinitialises_head() && !settings.keep_head;
    if reinitialise {
        reinitialise_head(&weight, bias.as_ref(), &mut rng);
    }

    let head_names = head_names(model);
    let is_head = |name: &str| head_names.iter().any(|h| h == name);
    let parameters = model.named_parameters()?;
    let config = |epochs: usize, lr: f64, train_mode: bool, sharpness_radius: Option<f64>| training::Config {
        epochs,
        lr,
        momentum: settings.momentum,
        weight_decay: settings.weight_decay,
        batch_size: settings.batch_size,
        augmentation: settings.augmentation,
        input,
        head: Some(HeadConstraint {
            weight: weight.shallow_clone(),
            original: original.shallow_clone(),
            alpha: if settings.method == Method::Fst { settings.alpha } else { 0.0 },
        }),
        train_mode,
        unlearning: unlearning.clone(),
        validation,
        sharpness_radius,
        distillation: teacher.as_ref().map(|(log_probs, weight)| Distillation {
            teacher_log_probs: log_probs.shallow_clone(),
            temperature: DISTILLATION_TEMPERATURE,
            weight: *weight,
        }),
        adversarial: settings.adversarial_unlearning,
    };
    let mut records = Vec::new();
    if reinitialise && settings.head_warmup_epochs > 0 {
        // LP-FT: the new head learns the frozen features before anything else moves.
        let warmup_lr = settings.head_warmup_learning_rate.unwrap_or(settings.learning_rate);
        let head_only = set_trainable(&parameters, |name| is_head(name));
        records = training::train(
            model,
            head_only,
            clean,
            &config(settings.head_warmup_epochs, warmup_lr, false, None),
            &mut rng,
            progress,
        )?;
    }
    let trainable = set_trainable(&parameters, |name| match settings.method {
        Method::Lp => is_head(name),
        Method::FeTuning => !is_head(name),
        Method::Ft | Method::FtInit | Method::Fst => true,
    });
    // The features as they were, when the tuning's change to them is to be scaled back.
    let original_features: Vec<(Tensor, Tensor)> = match settings.feature_interpolation {
        Some(_) => tch::no_grad(|| {
            parameters
                .iter()
                .filter(|(name, _)| !is_head(name))
                .map(|(_, t)| (t.shallow_clone(), t.detach().copy()))
                .collect()
        }),
        None => Vec::new(),
    };
    let tuned = training::train(
        model,
        trainable,
        clean,
        &config(settings.epochs, settings.learning_rate, true, settings.sharpness_radius),
        &mut rng,
        progress,
    );
    all_trainable(&parameters);
    let offset = records.len();
    records.extend(tuned?.into_iter().map(|r| EpochRecord { epoch: r.epoch + offset, ..r }));
    if let Some(t) = settings.feature_interpolation {
        interpolate_features(model, &original_features, t, clean, input, settings.batch_size)?;
    }
    Ok(records)
}

/// The model's log-probabilities at `DISTILLATION_TEMPERATURE` for every image of `clean` (eval
/// mode), in its order, on the model's device: the teacher of `training::Distillation`. The
/// images go to the device once, as in `Classifier::stamped_predictions`.
fn teacher_log_probs(model: &mut Classifier, clean: &Dataset, input: &InputSpec, batch_size: i64) -> Result<Tensor> {
    model.set_eval();
    let images = clean.images.to_device(model.device());
    tch::no_grad(|| {
        let mut parts = Vec::new();
        for start in (0..clean.len()).step_by(batch_size as usize) {
            let batch = images.narrow(0, start, batch_size.min(clean.len() - start));
            let logits = model.logits(&input.normalize(&batch))?;
            parts.push((logits / DISTILLATION_TEMPERATURE).log_softmax(1, tch::Kind::Float));
        }
        Ok(Tensor::cat(&parts, 0))
    })
}

/// Draws the head's weight and bias afresh from PyTorch's default initialisation.
fn reinitialise_head(weight: &Tensor, bias: Option<&Tensor>, rng: &mut SeededRng) {
    let bound = default_init_bound(&weight.size());
    tch::no_grad(|| {
        weight.shallow_clone().copy_(&rng.uniform(&weight.size(), -bound, bound, weight.device()));
        if let Some(bias) = bias {
            bias.shallow_clone().copy_(&rng.uniform(&bias.size(), -bound, bound, bias.device()));
        }
    });
}

/// How the relearning check trains its fresh head (`relearn_head`).
#[derive(Debug, Clone, PartialEq)]
pub struct Relearning {
    /// Passes over the clean images.
    pub epochs: usize,
    /// Initial SGD learning rate (momentum 0.9, cosine-annealed), as the head warm-up's.
    pub learning_rate: f64,
    /// Images per step.
    pub batch_size: i64,
    /// Seeds the new head and the shuffling.
    pub seed: u64,
}

/// The relearning check's model: `model`'s head drawn afresh and trained alone on its frozen
/// features (eval mode, plain cross-entropy, no augmentation) from the clean images, as a team
/// that takes the released model and trains a new head on its own data would. A purification
/// can disconnect a backdoor's features from the head without removing them from the features
/// (the "superficial safety" of Min et al., NeurIPS 2024): such a head, learnt from clean images
/// only, connects them again, and the trigger works once more. On error the model is left
/// half-trained: callers restore it.
pub fn relearn_head(
    model: &mut Classifier,
    clean: &Dataset,
    input: &InputSpec,
    relearning: &Relearning,
    progress: &dyn Progress,
) -> Result<Vec<EpochRecord>> {
    if relearning.epochs == 0 || !(relearning.learning_rate > 0.0 && relearning.learning_rate.is_finite()) {
        return Err(Error::Settings(format!(
            "the relearning check needs epochs and a positive learning rate, got {} epochs at {}",
            relearning.epochs, relearning.learning_rate
        )));
    }
    clean.check_labels(model.num_classes)?;
    let mut rng = SeededRng::new(relearning.seed);
    rng::seed_torch(relearning.seed);
    let (weight, bias) = model.head_tensors()?;
    reinitialise_head(&weight, bias.as_ref(), &mut rng);
    let head_names = head_names(model);
    let parameters = model.named_parameters()?;
    let head_only = set_trainable(&parameters, |name| head_names.iter().any(|h| h == name));
    let config = training::Config {
        epochs: relearning.epochs,
        lr: relearning.learning_rate,
        momentum: 0.9,
        weight_decay: 0.0,
        batch_size: relearning.batch_size,
        augmentation: Augmentation::NONE,
        input,
        head: None,
        train_mode: false,
        unlearning: None,
        validation: None,
        sharpness_radius: None,
        distillation: None,
        adversarial: None,
    };
    let records = training::train(model, head_only, clean, &config, &mut rng, progress);
    all_trainable(&parameters);
    records
}

/// Passes over the clean images that re-estimate normalisation statistics after an
/// interpolation: with PyTorch's default momentum (0.1) two passes of the lab's 2,400 images
/// (38 batches) leave 2% of the stale statistics.
const NORMALISATION_PASSES: usize = 2;

/// Moves each tuned feature parameter to `original + t * (tuned - original)` (`originals` pairs
/// the live tensor with its pre-tuning copy), then re-estimates BatchNorm running statistics on
/// `clean` in train mode without gradients: those of the tuned weights describe neither end.
/// A model with no running statistics is unchanged by the passes (dropout draws nothing back).
fn interpolate_features(
    model: &mut Classifier,
    originals: &[(Tensor, Tensor)],
    t: f64,
    clean: &Dataset,
    input: &InputSpec,
    batch_size: i64,
) -> Result<()> {
    tch::no_grad(|| {
        for (live, original) in originals {
            let mixed = original + (live.detach() - original) * t;
            live.shallow_clone().copy_(&mixed);
        }
    });
    let device = model.device();
    model.set_train();
    let passes = tch::no_grad(|| -> Result<()> {
        for _ in 0..NORMALISATION_PASSES {
            for start in (0..clean.len()).step_by(batch_size as usize) {
                let len = batch_size.min(clean.len() - start);
                // BatchNorm cannot normalise a batch of one, as in training.
                if len < 2 {
                    continue;
                }
                let batch = clean.images.narrow(0, start, len).to_device(device);
                let _ = model.logits(&input.normalize(&batch))?;
            }
        }
        Ok(())
    });
    model.set_eval();
    passes
}

/// The bound of PyTorch's default initialisation of a layer's weight of this shape (Linear and
/// Conv: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = every dimension but the first).
pub(crate) fn default_init_bound(size: &[i64]) -> f64 {
    let fan_in: i64 = size[1..].iter().product();
    1.0 / (fan_in.max(1) as f64).sqrt()
}

/// The names of the head's parameters: its weight, and its bias when it has one.
fn head_names(model: &Classifier) -> Vec<String> {
    std::iter::once(model.head.weight.clone()).chain(model.head.bias.clone()).collect()
}

/// Marks every parameter trainable again after a tuning that froze some: a saved model keeps the
/// usual contract.
fn all_trainable(parameters: &[(String, Tensor)]) {
    for (_, tensor) in parameters {
        let _ = tensor.shallow_clone().set_requires_grad(true);
    }
}

/// Marks the parameters `train` selects as trainable (the others frozen) and returns them.
fn set_trainable(parameters: &[(String, Tensor)], train: impl Fn(&str) -> bool) -> Vec<Tensor> {
    parameters
        .iter()
        .filter_map(|(name, tensor)| {
            let selected = train(name);
            let tensor = tensor.shallow_clone().set_requires_grad(selected);
            selected.then_some(tensor)
        })
        .collect()
}
