//! The SGD training loop shared by purification and the attack lab: SGD with momentum (as
//! torch.optim.SGD: no dampening, no Nesterov), cosine annealing stepped per epoch, on-device
//! batches and augmentation, an optional head regulariser and per-step norm projection, and
//! optional trigger unlearning (suspected triggers stamped on part of each batch). Host
//! synchronisation happens once per epoch, not per step.
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

use crate::data::{Augmentation, Dataset, InputSpec};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::rng::SeededRng;

/// Receives training progress (a terminal bar, log lines, or nothing).
pub trait Progress {
    /// Training starts: the number of epochs, and of steps in each.
    fn begin(&self, _epochs: usize, _steps_per_epoch: usize) {}
    /// One optimiser step is done.
    fn step(&self) {}
    /// An epoch is done, with its figures.
    fn epoch(&self, _record: &EpochRecord) {}
    /// Training is over.
    fn finish(&self) {}
}

/// Reports nothing.
pub struct Silent;
impl Progress for Silent {}

/// One training epoch's figures.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// The learning rate used throughout the epoch (cosine schedule).
    pub learning_rate: f64,
    /// Mean total loss over the epoch's samples.
    pub loss: f64,
    /// Mean cross-entropy over the epoch's samples.
    pub cross_entropy: f64,
    /// Accuracy on the (augmented) training batches, in train mode.
    pub train_accuracy: f64,
    /// Cosine between the head weight and the original head weight at the end of the epoch
    /// (FST drives it negative); absent when there is no reference head.
    pub head_cosine_to_original: Option<f64>,
    /// Accuracy on the held-out validation images at the end of the epoch (eval mode); absent
    /// when training had no validation set (fixed settings, the attack lab).
    #[serde(default)]
    pub validation_accuracy: Option<f64>,
    /// Wall-clock time the epoch took, in seconds, its validation pass included.
    pub seconds: f64,
}

/// The head terms of the loss and the step: FST's <W, W0> penalty and the projection of W
/// back onto the sphere of W0's norm.
pub struct HeadConstraint {
    /// The head's weight W, trained in place.
    pub weight: Tensor,
    /// The original head's weight W0, fixed.
    pub original: Tensor,
    /// Coefficient of sum(W * W0) in the loss (0: no penalty). W is always rescaled to
    /// ||W0||_F after every step.
    pub alpha: f64,
}

/// How to train: the optimiser, schedule, batches, augmentation and head constraint.
pub struct Config<'a> {
    /// Passes over the training data.
    pub epochs: usize,
    /// Base learning rate, annealed to 0 along a cosine over the epochs.
    pub lr: f64,
    /// SGD momentum, in [0, 1).
    pub momentum: f64,
    /// L2 weight decay added to the gradients (0: none).
    pub weight_decay: f64,
    /// Images per step.
    pub batch_size: i64,
    /// Random augmentation applied to each batch on the device.
    pub augmentation: Augmentation,
    /// How batches are normalised for the model.
    pub input: &'a InputSpec,
    /// The FST head terms, if any.
    pub head: Option<HeadConstraint>,
    /// Train mode while tuning (BatchNorm on batch statistics, updating its running statistics;
    /// dropout on). Off for a linear probe of the head: the frozen features must stay as they are.
    pub train_mode: bool,
    /// Triggers to unlearn, if any.
    pub unlearning: Option<Unlearning<'a>>,
    /// Held-out images (conformed, [0, 1], on the CPU) measured at the end of every epoch: the
    /// tuning curve in the records (`EpochRecord::validation_accuracy`).
    pub validation: Option<&'a Dataset>,
    /// Adaptive sharpness-aware minimisation (ASAM, Kwon et al. 2021): each step takes its
    /// gradient at the weights pushed this far uphill, elementwise scaled by the weights' size;
    /// None: plain SGD.
    pub sharpness_radius: Option<f64>,
    /// The original model's answers the tuning is pulled towards, if any.
    pub distillation: Option<Distillation>,
    /// Universal adversarial perturbations unlearnt on a share of every batch, if any.
    pub adversarial: Option<AdversarialUnlearning>,
}

/// Knowledge distillation from the model as it was (Hinton et al. 2015): the loss adds
/// `weight * T^2 * KL(teacher || student)` at temperature T, the teacher's answer for each image
/// computed once on the unstamped training image. An image the unlearning stamps keeps the
/// teacher's answer for the clean image, so the tuning learns that the trigger changes nothing
/// while every other answer, the teacher's dark knowledge included, is held where it was.
pub struct Distillation {
    /// The teacher's log-probabilities at `temperature`, [images, classes], in the training
    /// data's order, on the model's device.
    pub teacher_log_probs: Tensor,
    /// Softmax temperature of both sides (T > 0).
    pub temperature: f64,
    /// Weight of the term against the cross-entropy (> 0).
    pub weight: f64,
}

impl Distillation {
    /// The distillation term for `logits` of the images whose teacher rows are `index`.
    fn loss(&self, logits: &Tensor, index: &Tensor) -> Tensor {
        let teacher = self.teacher_log_probs.index_select(0, index);
        let student = (logits / self.temperature).log_softmax(1, Kind::Float);
        let batch = logits.size()[0] as f64;
        (teacher.exp() * (&teacher - student)).sum(Kind::Float)
            * (self.weight * self.temperature * self.temperature / batch)
    }
}

/// ASAM's floor on the elementwise scale, so zero weights are perturbed too.
const SHARPNESS_ETA: f64 = 0.01;

/// Moves `params` to ASAM's uphill point for their current gradients (`radius`, elementwise
/// scaled by |w| + eta) and returns the perturbations, to be taken back after the second pass.
fn climb(params: &[Tensor], radius: f64) -> Vec<Option<Tensor>> {
    tch::no_grad(|| {
        // Per parameter with a gradient: its scale T = |w| + eta, and T * g.
        let scaled: Vec<Option<(Tensor, Tensor)>> = params
            .iter()
            .map(|p| {
                let grad = p.grad();
                grad.defined().then(|| {
                    let scale = p.abs() + SHARPNESS_ETA;
                    let scaled_grad = &scale * grad;
                    (scale, scaled_grad)
                })
            })
            .collect();
        let norm = scaled
            .iter()
            .flatten()
            .map(|(_, t)| t.square().sum(Kind::Float))
            .fold(Tensor::zeros([], (Kind::Float, params[0].device())), |a, b| a + b);
        let norm = norm.sqrt() + 1e-12;
        params
            .iter()
            .zip(scaled)
            .map(|(p, scaled)| {
                scaled.map(|(scale, scaled_grad)| {
                    let e = scale * scaled_grad * radius / &norm;
                    let _ = p.shallow_clone().g_add_(&e);
                    e
                })
            })
            .collect()
    })
}

/// Stamps a trigger on [0, 1] images (on the batch's device).
pub type Stamp<'a> = &'a dyn Fn(&Tensor) -> Result<Tensor>;

/// Trigger unlearning (Neural Cleanse's mitigation): a share of every batch carries a suspected
/// trigger while keeping its own labels, so the model learns that the trigger means nothing.
#[derive(Clone)]
pub struct Unlearning<'a> {
    /// Fraction of each batch stamped, in [0, 1] (rounded to whole images; none stamps nothing).
    pub share: f64,
    /// The triggers, taken in turn from one step to the next.
    pub stamps: Vec<Stamp<'a>>,
}

impl Unlearning<'_> {
    /// Stamps the first `share` of `batch` (already in random order) with the step's trigger.
    fn apply(&self, batch: Tensor, step: usize) -> Result<Tensor> {
        let len = batch.size()[0];
        let stamped = ((self.share * len as f64).round() as i64).clamp(0, len);
        if self.stamps.is_empty() || stamped == 0 {
            return Ok(batch);
        }
        let stamp = self.stamps[step % self.stamps.len()];
        let head = stamp(&batch.narrow(0, 0, stamped))?;
        Ok(Tensor::cat(&[head, batch.narrow(0, stamped, len - stamped)], 0))
    }
}

/// Trigger-agnostic unlearning (after I-BAU, Zeng et al. 2022, with a projected-gradient inner
/// step): every step, one perturbation shared by the last `share` of the batch is grown to
/// misclassify those images as much as it can within an L2 ball, and the tuning then learns them
/// under their own labels (and, under distillation, the original's answers on the clean images).
/// A backdoor is the cheapest universal way to misclassify, so this finds and unlearns it without
/// being told the trigger, and leaves the evidence's inverted triggers, which it never trained
/// on, free to measure what is left.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AdversarialUnlearning {
    /// Fraction of each batch perturbed, in [0, 1] (rounded to whole images).
    pub share: f64,
    /// The ball's radius as a root-mean-square change per input value ([0, 1] pixels): the L2
    /// bound is `radius * sqrt(C * H * W)`, so it reads the same at any image size.
    #[serde(default = "adversarial_radius")]
    pub radius: f64,
    /// Projected-gradient steps that grow each perturbation.
    #[serde(default = "adversarial_steps")]
    pub steps: usize,
}

/// The adversarial unlearning's default ball: a root-mean-square change of 0.1 per [0, 1] input
/// value (an L2 of 2.8 on 28x28 grey images, about what a 3x3 white patch on black, or a 10%
/// blend of noise, changes).
pub const ADVERSARIAL_RADIUS: f64 = 0.1;

/// Projected-gradient steps that grow each adversarial perturbation by default.
pub const ADVERSARIAL_STEPS: usize = 5;

fn adversarial_radius() -> f64 {
    ADVERSARIAL_RADIUS
}

fn adversarial_steps() -> usize {
    ADVERSARIAL_STEPS
}

impl AdversarialUnlearning {
    /// Replaces the last `share` of `batch` ([0, 1] images on the model's device) with the same
    /// images under a universal perturbation grown against `model` in eval mode (so BatchNorm's
    /// running statistics see no perturbed batch); the model is left in `train_mode`.
    fn apply(
        &self,
        model: &mut Classifier,
        batch: Tensor,
        targets: &Tensor,
        input: &InputSpec,
        train_mode: bool,
    ) -> Result<Tensor> {
        let len = batch.size()[0];
        let count = ((self.share * len as f64).round() as i64).clamp(0, len);
        if count == 0 || self.steps == 0 {
            return Ok(batch);
        }
        let start = len - count;
        let images = batch.narrow(0, start, count).detach();
        model.set_eval();
        let delta = self.universal_perturbation(model, &images, &targets.narrow(0, start, count), input);
        if train_mode {
            model.set_train();
        }
        let perturbed = (images + delta?).clamp(0.0, 1.0);
        Ok(Tensor::cat(&[batch.narrow(0, 0, start), perturbed], 0))
    }

    /// One perturbation [1, C, H, W] that raises the cross-entropy of every image of `images`
    /// under its label: normalised gradient ascent from zero, 2.5 / steps of the bound per step
    /// (Madry et al.'s rule), projected back onto the ball after each.
    fn universal_perturbation(
        &self,
        model: &Classifier,
        images: &Tensor,
        labels: &Tensor,
        input: &InputSpec,
    ) -> Result<Tensor> {
        let size = images.size();
        let shape = [1, size[1], size[2], size[3]];
        let bound = self.radius * ((size[1] * size[2] * size[3]) as f64).sqrt();
        let step = 2.5 * bound / self.steps as f64;
        let mut delta = Tensor::zeros(shape, (Kind::Float, images.device()));
        for _ in 0..self.steps {
            let delta_var = delta.set_requires_grad(true);
            let logits = model.logits(&input.normalize(&(images + &delta_var).clamp(0.0, 1.0)))?;
            let loss = logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0);
            let grad = Tensor::run_backward(&[loss], &[&delta_var], false, false).remove(0);
            delta = tch::no_grad(|| project_l2(&(delta_var.detach() + &grad * (step / (grad.norm() + 1e-12))), bound));
        }
        Ok(delta)
    }
}

/// `delta` scaled back onto the L2 ball of radius `bound` when it lies outside. On the device:
/// it runs at every inner step of every training step, so it must not wait on the host.
fn project_l2(delta: &Tensor, bound: f64) -> Tensor {
    delta * (bound / delta.norm()).clamp_max(1.0)
}

struct Sgd {
    params: Vec<Tensor>,
    momentum_buffers: Vec<Option<Tensor>>,
    momentum: f64,
    weight_decay: f64,
}

impl Sgd {
    fn new(params: Vec<Tensor>, momentum: f64, weight_decay: f64) -> Self {
        let params: Vec<Tensor> = params.into_iter().map(|p| p.set_requires_grad(true)).collect();
        let momentum_buffers = params.iter().map(|_| None).collect();
        Sgd { params, momentum_buffers, momentum, weight_decay }
    }

    fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            for (p, buffer) in self.params.iter_mut().zip(&mut self.momentum_buffers) {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let mut direction = if self.weight_decay > 0.0 { grad + &*p * self.weight_decay } else { grad };
                if self.momentum > 0.0 {
                    direction = match buffer {
                        Some(b) => {
                            let _ = b.g_mul_scalar_(self.momentum).g_add_(&direction);
                            b.shallow_clone()
                        }
                        None => {
                            let b = direction.copy();
                            *buffer = Some(b.shallow_clone());
                            b
                        }
                    };
                }
                let _ = p.g_sub_(&(direction * lr));
            }
        });
    }
}

/// Cosine annealing to 0 over `epochs`, stepped per epoch (CosineAnnealingLR, T_max = epochs).
pub fn cosine_lr(base: f64, epoch: usize, epochs: usize) -> f64 {
    base * (1.0 + (std::f64::consts::PI * epoch as f64 / epochs as f64).cos()) / 2.0
}

/// Cosine between two weight matrices: how far a head has turned from another.
pub fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    tch::no_grad(|| ((a * b).sum(Kind::Float) / (a.norm() * b.norm())).double_value(&[]))
}

/// Trains `trainable` parameters of `model` on `data` (conformed, [0, 1] images on the CPU).
pub fn train(
    model: &mut Classifier,
    trainable: Vec<Tensor>,
    data: &Dataset,
    config: &Config,
    rng: &mut SeededRng,
    progress: &dyn Progress,
) -> Result<Vec<EpochRecord>> {
    let device = model.device();
    let n = data.len();
    let images = data.images.to_device(device);
    let labels = data.labels.to_device(device);
    let steps_per_epoch = (n + config.batch_size - 1) / config.batch_size;
    let mut sgd = Sgd::new(trainable, config.momentum, config.weight_decay);
    let original_norm = config.head.as_ref().map(|h| h.original.norm());
    let mut records = Vec::with_capacity(config.epochs);
    progress.begin(config.epochs, steps_per_epoch as usize);
    for epoch in 0..config.epochs {
        let started = Instant::now();
        let lr = cosine_lr(config.lr, epoch, config.epochs);
        if config.train_mode {
            model.set_train();
        } else {
            model.set_eval();
        }
        let order = rng.permutation(n, device);
        let draws = config.augmentation.draw(n, rng, device);
        let zero = || Tensor::zeros([], (Kind::Float, device));
        let (mut loss_sum, mut ce_sum, mut correct) = (zero(), zero(), zero());
        let mut seen = 0;
        for step in 0..steps_per_epoch {
            let start = step * config.batch_size;
            let len = config.batch_size.min(n - start);
            // BatchNorm cannot train on a batch of one; like drop_last for that case only.
            if len < 2 {
                continue;
            }
            let index = order.narrow(0, start, len);
            let mut batch = config.augmentation.apply(&images.index_select(0, &index), &draws, start);
            if let Some(unlearning) = &config.unlearning {
                batch = unlearning.apply(batch, epoch * steps_per_epoch as usize + step as usize)?;
            }
            let targets = labels.index_select(0, &index);
            // The last share of the batch, clear of the trigger unlearning's first share.
            if let Some(adversarial) = &config.adversarial {
                batch = adversarial.apply(model, batch, &targets, config.input, config.train_mode)?;
            }
            let inputs = config.input.normalize(&batch);
            let forward = || -> Result<(Tensor, Tensor, Tensor)> {
                let logits = model.logits(&inputs)?;
                let cross_entropy = logits.cross_entropy_loss::<Tensor>(&targets, None, Reduction::Mean, -100, 0.0);
                let mut loss = match &config.head {
                    Some(head) if head.alpha != 0.0 => {
                        &cross_entropy + (&head.weight * &head.original).sum(Kind::Float) * head.alpha
                    }
                    _ => cross_entropy.shallow_clone(),
                };
                if let Some(distillation) = &config.distillation {
                    loss += distillation.loss(&logits, &index);
                }
                Ok((logits, cross_entropy, loss))
            };
            let (logits, cross_entropy, loss) = forward()?;
            sgd.zero_grad();
            loss.f_backward()?;
            if let Some(radius) = config.sharpness_radius {
                let climbed = climb(&sgd.params, radius);
                sgd.zero_grad();
                forward()?.2.f_backward()?;
                tch::no_grad(|| {
                    for (p, e) in sgd.params.iter().zip(&climbed) {
                        if let Some(e) = e {
                            let _ = p.shallow_clone().g_sub_(e);
                        }
                    }
                });
            }
            sgd.step(lr);
            if let (Some(head), Some(norm)) = (&config.head, &original_norm) {
                tch::no_grad(|| {
                    let mut weight = head.weight.shallow_clone();
                    let _ = weight.g_mul_(&(norm / head.weight.norm()));
                });
            }
            tch::no_grad(|| {
                loss_sum += loss.detach() * len as f64;
                ce_sum += cross_entropy.detach() * len as f64;
                correct += logits.argmax(1, false).eq_tensor(&targets).sum(Kind::Float);
            });
            seen += len;
            progress.step();
            crate::failpoint::Failpoint::MidTraining.reached();
        }
        // One host synchronisation per epoch.
        let loss = loss_sum.double_value(&[]) / seen as f64;
        if !loss.is_finite() {
            return Err(Error::NonFinite(format!(
                "the loss became {loss} in epoch {}; nothing was written (try a smaller learning rate)",
                epoch + 1
            )));
        }
        let head_cosine_to_original = config.head.as_ref().map(|h| cosine(&h.weight, &h.original));
        let validation_accuracy = match config.validation {
            Some(validation) => Some(accuracy(model, validation, config.input)?),
            None => None,
        };
        let record = EpochRecord {
            epoch: epoch + 1,
            learning_rate: lr,
            loss,
            cross_entropy: ce_sum.double_value(&[]) / seen as f64,
            train_accuracy: correct.double_value(&[]) / seen as f64,
            head_cosine_to_original,
            validation_accuracy,
            seconds: started.elapsed().as_secs_f64(),
        };
        progress.epoch(&record);
        records.push(record);
    }
    progress.finish();
    model.set_eval();
    Ok(records)
}

/// Top-1 accuracy of `model` (eval mode) on `data`.
fn accuracy(model: &mut Classifier, data: &Dataset, input: &InputSpec) -> Result<f64> {
    model.set_eval();
    let predicted =
        model.stamped_predictions(&data.images, input, VALIDATION_BATCH, |batch| Ok(batch.shallow_clone()))?;
    let correct = predicted.iter().zip(data.labels_vec()).filter(|(p, l)| **p == *l).count();
    Ok(correct as f64 / data.len().max(1) as f64)
}

/// Images per forward pass when measuring validation accuracy.
const VALIDATION_BATCH: i64 = 512;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_schedule_matches_pytorch() {
        assert_eq!(cosine_lr(0.01, 0, 10), 0.01);
        assert!((cosine_lr(0.01, 5, 10) - 0.005).abs() < 1e-12);
        assert!((cosine_lr(0.01, 9, 10) - 0.01 * (1.0 + (0.9 * std::f64::consts::PI).cos()) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn sgd_matches_torch_optim_sgd_with_momentum() {
        // Minimise 0.5 * p^2 (grad = p) twice from p = 1 with lr 0.1, momentum 0.9:
        // step 1: buf = 1, p = 0.9; step 2: buf = 0.9 * 1 + 0.9 = 1.8, p = 0.9 - 0.18 = 0.72.
        let p = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let mut sgd = Sgd::new(vec![p.shallow_clone()], 0.9, 0.0);
        for _ in 0..2 {
            sgd.zero_grad();
            (&p * &p * 0.5).sum(Kind::Float).backward();
            sgd.step(0.1);
        }
        assert!((p.double_value(&[0]) - 0.72).abs() < 1e-6);
    }

    #[test]
    fn the_sharpness_climb_goes_the_radius_uphill_in_the_weights_scale() {
        // Loss sum(g * p): gradient g. ASAM's step is e = rho * T^2 g / ||T g||, T = |p| + eta,
        // so ||e / T|| = rho, and e points along T^2 g.
        let p = Tensor::from_slice(&[3.0f32, -4.0, 0.0]).set_requires_grad(true);
        let g = Tensor::from_slice(&[1.0f32, 2.0, -1.0]);
        (&p * &g).sum(Kind::Float).backward();
        let before = p.detach().copy();
        let climbed = climb(&[p.shallow_clone()], 2.0);
        let e = climbed[0].as_ref().expect("p has a gradient");
        let scale = before.abs() + SHARPNESS_ETA;
        assert!(((e / &scale).norm().double_value(&[]) - 2.0).abs() < 1e-5);
        let along = &scale * &scale * &g;
        let cosine = (e * &along).sum(Kind::Float) / (e.norm() * along.norm());
        assert!((cosine.double_value(&[]) - 1.0).abs() < 1e-5);
        assert!((p.detach() - &before - e).abs().max().double_value(&[]) < 1e-6, "the weights moved by e");
    }

    #[test]
    fn unlearning_stamps_the_share_of_the_batch_with_the_steps_trigger() {
        let ones = |images: &Tensor| Ok(images.ones_like());
        let twos = |images: &Tensor| Ok(images.ones_like() * 2.0);
        let unlearning = Unlearning { share: 0.3, stamps: vec![&ones, &twos] };
        let batch = || Tensor::zeros([5, 1, 2, 2], (Kind::Float, tch::Device::Cpu));
        let per_image = |t: Tensor| Vec::<f64>::try_from(t.mean_dim(&[1i64, 2, 3][..], false, Kind::Double)).unwrap();
        // 0.3 of 5 images rounds to 2, stamped first; odd steps take the second trigger.
        assert_eq!(per_image(unlearning.apply(batch(), 0).unwrap()), [1.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(per_image(unlearning.apply(batch(), 3).unwrap()), [2.0, 2.0, 0.0, 0.0, 0.0]);
        let none = Unlearning { share: 0.05, stamps: vec![&ones] };
        assert_eq!(per_image(none.apply(batch(), 0).unwrap()), [0.0; 5], "a share rounding to no image stamps none");
    }

    #[test]
    fn a_perturbation_outside_the_ball_is_scaled_onto_it_and_one_inside_is_kept() {
        let outside = Tensor::from_slice(&[3.0f32, 4.0]);
        let projected = project_l2(&outside, 2.5);
        assert!((projected.norm().double_value(&[]) - 2.5).abs() < 1e-6);
        assert!((projected.double_value(&[0]) / projected.double_value(&[1]) - 0.75).abs() < 1e-6, "same direction");
        let inside = Tensor::from_slice(&[0.3f32, 0.4]);
        assert_eq!(project_l2(&inside, 2.5).double_value(&[1]), 0.4f32 as f64);
    }

    #[test]
    fn distillation_is_torchs_kl_divergence_against_each_images_teacher_row() {
        let teacher_logits = Tensor::from_slice(&[2.0f32, 0.0, -1.0, 0.5, 0.5, 0.0, -1.0, 3.0, 0.0]).view([3, 3]);
        let temperature = 2.0;
        let distillation = Distillation {
            teacher_log_probs: (&teacher_logits / temperature).log_softmax(1, Kind::Float),
            temperature,
            weight: 0.5,
        };
        // The student's answers equal the teacher's on the rows it is indexed with: no loss.
        let rows = Tensor::from_slice(&[2i64, 0]);
        let student = teacher_logits.index_select(0, &rows);
        assert!(distillation.loss(&student, &rows).double_value(&[]).abs() < 1e-6);
        // Against other rows: weight * T^2 * torch's KL(teacher || student), averaged per image.
        let others = Tensor::from_slice(&[1i64, 2]);
        let expected = (&student / temperature).log_softmax(1, Kind::Float).kl_div(
            &distillation.teacher_log_probs.index_select(0, &others),
            Reduction::Sum,
            true,
        ) * (0.5 * temperature * temperature / 2.0);
        let loss = distillation.loss(&student, &others).double_value(&[]);
        assert!(loss > 0.1, "a student away from its teacher pays: {loss}");
        assert!((loss - expected.double_value(&[])).abs() < 1e-5);
    }
}
