//! The baseline a backdoor signal is judged against: the uploaded model's own architecture,
//! re-initialised and trained from scratch on the clean tuning images only. That model cannot
//! hold a backdoor (it never saw a poisoned image), so a trigger that pushes it into a class too
//! is a feature of the data (Fashion-MNIST's "bag" is reached by a small patch in every model),
//! while a planted trigger does not transfer to it. This replaces reading a signal as natural
//! only once purification failed to move it, which cost clean models a stronger alpha first and
//! could not tell a natural shortcut from a ResNet backdoor that resists the first alphas.
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::data::{Augmentation, Dataset, InputSpec};
use crate::error::Result;
use crate::evaluation::InversionSummary;
use crate::model::Classifier;
use crate::rng::{self, SeededRng};
use crate::training::{self, Progress};

use super::Settings;

/// How the from-scratch reference was trained and how well it learnt the clean task.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Reference {
    /// Optimiser steps from a fresh initialisation on the tuning images.
    pub steps: usize,
    /// Epochs over the tuning images those steps came to.
    pub epochs: usize,
    /// Its accuracy on the validation split.
    pub validation_accuracy: f64,
    /// Whether it learnt enough to judge signals by: at least `MIN_REFERENCE_SHARE` of the
    /// uploaded model's validation accuracy. Below that it has not learnt the data's features
    /// and says nothing about them.
    pub usable: bool,
    /// Wall-clock training time, in seconds.
    pub seconds: f64,
    /// Trigger inversion on the reference, run when an inverted trigger is to be judged: the
    /// masks and blends the data alone allows per class.
    #[serde(default)]
    pub inversion: Option<InversionSummary>,
}

/// Mixed into the job's seed, so the reference's draws are not the candidates' ("referenc").
const SEED_SALT: u64 = 0x7265_6665_7265_6e63;

/// The share of the uploaded model's validation accuracy a reference must reach to be used.
pub const MIN_REFERENCE_SHARE: f64 = 0.5;

/// Re-initialises every parameter of `model` (weights of layers as PyTorch's default layer
/// initialisation bounds them, U(-1/sqrt(fan_in), 1/sqrt(fan_in)); one-dimensional weights, the
/// scales of normalisation layers, to 1; biases to 0) and trains it from scratch on `tuning` for
/// about `steps` optimiser steps with `base`'s optimiser, without augmentation. The caller
/// snapshots the model first and restores it after: this overwrites it.
pub fn train_from_scratch(
    model: &mut Classifier,
    tuning: &Dataset,
    input: &InputSpec,
    base: &Settings,
    steps: usize,
    progress: &dyn Progress,
) -> Result<(usize, f64)> {
    let started = Instant::now();
    let mut rng = SeededRng::new(base.seed ^ SEED_SALT);
    rng::seed_torch(base.seed);
    let parameters = model.named_parameters()?;
    tch::no_grad(|| {
        for (name, p) in &parameters {
            let size = p.size();
            let fresh = if size.len() >= 2 {
                let bound = super::default_init_bound(&size);
                rng.uniform(&size, -bound, bound, p.device())
            } else if name.ends_with("bias") {
                p.zeros_like()
            } else {
                p.ones_like()
            };
            p.shallow_clone().copy_(&fresh.to_kind(p.kind()));
        }
    });
    let steps_per_epoch = (tuning.len() as usize).div_ceil(base.batch_size as usize).max(1);
    let epochs = steps.div_ceil(steps_per_epoch).max(1);
    let config = training::Config {
        epochs,
        lr: base.learning_rate,
        momentum: base.momentum,
        weight_decay: base.weight_decay,
        batch_size: base.batch_size,
        // Unaugmented whatever the candidates use: the shares a signal is judged by
        // (`REFERENCE_MASK_SHARE`) were fitted against references trained this way.
        augmentation: Augmentation::NONE,
        input,
        head: None,
        train_mode: true,
        unlearning: None,
        validation: None,
        sharpness_radius: None,
        distillation: None,
        adversarial: None,
    };
    let trainable: Vec<Tensor> = parameters.iter().map(|(_, p)| p.shallow_clone()).collect();
    training::train(model, trainable, tuning, &config, &mut rng, progress)?;
    model.set_eval();
    Ok((epochs, started.elapsed().as_secs_f64()))
}
