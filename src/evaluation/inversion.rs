//! Trigger inversion, after Neural Cleanse (Wang et al., S&P 2019), written for fstgate: for every
//! class at once, the smallest mask and pattern that send clean images into that class. A
//! backdoor is a shortcut into its target class, so that class needs a far smaller trigger than
//! the others. Unlike a fixed probe bank, this finds a patch of any shape, size and position
//! without being told the attack; the inverted trigger then serves as the suspect signal the
//! automatic strength must silence, and its push on the purified model estimates what is left.
//!
//! All classes are optimised together in one batch (K masks x B images), with Adam on the logits
//! of a sigmoid mask [1, H, W] and pattern [C, H, W] per class, and a per-class weight on the
//! mask's size that grows while the class is reached and shrinks while it is not (Neural
//! Cleanse's schedule): each class ends near the smallest mask that still reaches it.
//!
//! Each class is searched from two starts in the same batch, and the smaller successful mask
//! wins: a faint mask over the whole image (grows only where the gradient asks, quick on blends
//! and noise) and a half-opaque one (shrinks towards what the class needs, as Neural Cleanse
//! starts). A patch backdoor that answers only when most of its pixels are present gives a faint
//! mask no gradient to follow; the half-opaque start already holds it.
//!
//! A third search per class, in the same batch, inverts a **blend**: one weight over the whole
//! image, `(1 - w) x + w p` with a free pattern `p`, the shape of blend and SIG backdoors. A
//! per-pixel mask spreads such a trigger thin and, being free, also finds adversarial shortcuts
//! into every class, so a blend target does not stand out among the per-pixel masks (the
//! grid's stripe and digit blends sat at 0.31-0.47 of the median, with the natural "bag"). Held
//! to one weight, a natural class needs a large share of the image while a blend backdoor's
//! target needs about its blend's alpha; blends are judged among themselves.
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, Tensor};

use crate::data::{Dataset, InputSpec};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::rng::SeededRng;

/// How the inversion searches, and when a class counts as a backdoor target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct InversionSettings {
    /// Optimiser steps, all classes together.
    pub steps: usize,
    /// Clean images per class and step.
    pub batch_size: i64,
    /// Adam's learning rate on the mask and pattern logits.
    pub learning_rate: f64,
    /// A mask counts once it sends at least this fraction of a batch into its class.
    pub success_rate: f64,
    /// The first weight of the mask's mean value in the loss (adapted per class).
    pub initial_cost: f64,
    /// A class is a suspected target when its smallest mask is at most this fraction of the
    /// median over the other classes (a backdoor's shortcut needs far fewer pixels). Fitted on
    /// the grid's fit half: patch, warp and noise-blend backdoors 0.08-0.22, a stripe blend 0.32,
    /// the classes clean models reach by nature (Fashion-MNIST's "bag", MNIST's "8") 0.32-0.39.
    pub max_mask_ratio: f64,
    /// ... and its inverted trigger sends at least this fraction of held-out images of other
    /// classes into it (a small mask that does not generalise is an adversarial accident).
    pub min_push: f64,
    /// Also invert a blend per class (one weight over the whole image).
    pub invert_blends: bool,
    /// A class is a suspected blend target when its blend weight is at most this fraction of
    /// the median over the other classes' blend weights (and its blend pushes `min_push`).
    pub max_blend_ratio: f64,
    /// Seeds the initial masks and the batches.
    pub seed: u64,
}

impl Default for InversionSettings {
    fn default() -> Self {
        InversionSettings {
            steps: 200,
            batch_size: 20,
            learning_rate: 0.1,
            success_rate: 0.9,
            initial_cost: 0.5,
            max_mask_ratio: 0.3,
            min_push: 0.5,
            invert_blends: true,
            max_blend_ratio: 0.5,
            seed: 0,
        }
    }
}

impl InversionSettings {
    /// Rejects settings that cannot run or cannot flag anything.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 || self.batch_size < 1 {
            return Err(Error::Settings("trigger inversion needs at least one step and one image".into()));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite() && self.initial_cost > 0.0) {
            return Err(Error::Settings("trigger inversion's learning rate and cost must be positive".into()));
        }
        for (name, value) in [
            ("success rate", self.success_rate),
            ("mask ratio", self.max_mask_ratio),
            ("minimum push", self.min_push),
            ("blend ratio", self.max_blend_ratio),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(Error::Settings(format!("trigger inversion's {name} must be in [0, 1], got {value}")));
            }
        }
        Ok(())
    }
}

/// What the inversion found for one class.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InvertedClass {
    /// The class, 0-based.
    pub class: i64,
    /// Size of the smallest mask found, in pixels (the mask's sum; a 3x3 patch is about 9).
    pub mask_pixels: f64,
    /// Whether any mask reached `success_rate` on a training batch (else the last mask is kept).
    pub reached: bool,
    /// Fraction of held-out images of other classes the inverted trigger sends into this class.
    pub push: f64,
    /// This class's mask size over the median of the other classes' (small: a shortcut).
    pub mask_ratio: f64,
    /// Neural Cleanse's anomaly index: (median - size) / (1.4826 * MAD) over all classes, for
    /// classes below the median (0 above it).
    pub anomaly_index: f64,
}

/// The inversion's result, for the report.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InversionSummary {
    /// The settings the inversion ran with.
    pub settings: InversionSettings,
    /// Images the masks were optimised on, and held-out images their push was measured on.
    pub optimisation_images: i64,
    /// Number of held-out images.
    pub held_out_images: i64,
    /// Pixels per image (height times width): a mask's size as a share of the image.
    #[serde(default)]
    pub image_pixels: i64,
    /// One entry per class of the model, in class order (empty when masks were not inverted:
    /// a reference inverted for blend signals only).
    pub classes: Vec<InvertedClass>,
    /// Classes whose mask is small against the others and whose trigger generalises: suspected
    /// backdoor targets, most suspicious first.
    pub suspected_targets: Vec<i64>,
    /// The blend per class, in class order (empty when blends were not inverted): its
    /// `mask_pixels` is the blend weight times the image's pixels, its ratios are against the
    /// other classes' blends.
    #[serde(default)]
    pub blends: Vec<InvertedClass>,
    /// Classes whose blend weight is small against the other classes' and whose blend
    /// generalises, most suspicious first.
    #[serde(default)]
    pub suspected_blend_targets: Vec<i64>,
    /// Wall-clock time the inversion took, in seconds.
    pub seconds: f64,
}

/// The shape of an inverted trigger's mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerShape {
    /// A mask per pixel: patches, warps and noise.
    Patch,
    /// One weight over the whole image: blends and sinusoids.
    Blend,
}

/// One inverted trigger, kept to follow it through purification.
pub struct InvertedTrigger {
    /// The class the trigger sends images into.
    pub class: i64,
    /// How its mask was searched.
    pub shape: TriggerShape,
    /// [1, 1, H, W] in [0, 1], on the CPU.
    pub mask: Tensor,
    /// [1, C, H, W] in [0, 1], on the CPU.
    pub pattern: Tensor,
}

impl InversionSummary {
    /// Whether `trigger` is one of the suspected targets of its shape.
    pub fn suspects(&self, trigger: &InvertedTrigger) -> bool {
        self.family(trigger.shape).1.contains(&trigger.class)
    }

    /// A class's mask size as a share of the image (a blend's weight); none in a report written
    /// before the image size was recorded.
    pub fn share_of_image(&self, class: &InvertedClass) -> Option<f64> {
        (self.image_pixels > 0).then(|| class.mask_pixels / self.image_pixels as f64)
    }

    /// The per-class results and the suspected targets of one shape.
    pub fn family(&self, shape: TriggerShape) -> (&[InvertedClass], &[i64]) {
        match shape {
            TriggerShape::Patch => (&self.classes, &self.suspected_targets),
            TriggerShape::Blend => (&self.blends, &self.suspected_blend_targets),
        }
    }
}

impl InvertedTrigger {
    /// A second handle on the same trigger (its tensors shared, not copied).
    pub fn shallow_clone(&self) -> Self {
        InvertedTrigger {
            class: self.class,
            shape: self.shape,
            mask: self.mask.shallow_clone(),
            pattern: self.pattern.shallow_clone(),
        }
    }

    /// Stamps the trigger on [0, 1] images.
    pub fn apply(&self, images: &Tensor) -> Tensor {
        let mask = self.mask.to_device(images.device());
        let pattern = self.pattern.to_device(images.device());
        images * (1.0 - &mask) + &mask * pattern
    }
}

/// Adam on one tensor, as torch.optim.Adam with default betas and no weight decay.
struct Adam {
    param: Tensor,
    first: Tensor,
    second: Tensor,
    steps: i32,
    lr: f64,
}

impl Adam {
    fn new(param: Tensor, lr: f64) -> Self {
        let first = param.zeros_like();
        let second = param.zeros_like();
        Adam { param, first, second, steps: 0, lr }
    }

    fn step(&mut self) {
        const BETA1: f64 = 0.9;
        const BETA2: f64 = 0.999;
        self.steps += 1;
        tch::no_grad(|| {
            let grad = self.param.grad();
            let _ = self.first.g_mul_scalar_(BETA1).g_add_(&(&grad * (1.0 - BETA1)));
            let _ = self.second.g_mul_scalar_(BETA2).g_add_(&(&grad * &grad * (1.0 - BETA2)));
            let first = &self.first / (1.0 - BETA1.powi(self.steps));
            let second = &self.second / (1.0 - BETA2.powi(self.steps));
            let _ = self.param.g_sub_(&(first / (second.sqrt() + 1e-8) * self.lr));
            self.param.zero_grad();
        });
    }
}

/// Inverts a trigger for every class of `model` from the clean `optimisation` images, measures
/// each on the `held_out` images, and judges which classes look like backdoor targets.
pub fn invert(
    model: &mut Classifier,
    optimisation: &Dataset,
    held_out: &Dataset,
    input: &InputSpec,
    settings: &InversionSettings,
) -> Result<(InversionSummary, Vec<InvertedTrigger>)> {
    invert_shapes(model, optimisation, held_out, input, settings, &[TriggerShape::Patch, TriggerShape::Blend])
}

/// `invert`, searching only the trigger shapes in `shapes` (blends only if the settings invert
/// them): what a from-scratch reference needs to judge the signals of those shapes, at a third
/// (blends) or two thirds (masks) of the cost. The random starts and batches are drawn as for
/// every shape, so each shape's search is the one `invert` runs; a shape left out has no
/// classes in the summary.
pub fn invert_shapes(
    model: &mut Classifier,
    optimisation: &Dataset,
    held_out: &Dataset,
    input: &InputSpec,
    settings: &InversionSettings,
    shapes: &[TriggerShape],
) -> Result<(InversionSummary, Vec<InvertedTrigger>)> {
    settings.validate()?;
    let started = Instant::now();
    let classes = model.num_classes;
    let shape = optimisation.image_shape();
    let (channels, height, width) = (shape[0], shape[1], shape[2]);
    let mut rng = SeededRng::new(settings.seed);
    model.set_eval();
    let mut starts: Vec<Start> = [FAINT_START, HALF_START]
        .into_iter()
        .flat_map(|logit| (0..classes).map(move |class| Start { class, logit, shape: TriggerShape::Patch }))
        .collect();
    if settings.invert_blends {
        starts.extend((0..classes).map(|class| Start { class, logit: HALF_START, shape: TriggerShape::Blend }));
    }
    let searched: Vec<bool> = starts.iter().map(|start| shapes.contains(&start.shape)).collect();
    let (found, reached) = with_frozen_parameters(model, |model| {
        optimise(model, optimisation, input, settings, &mut rng, (channels, height, width), &starts, &searched)
    })?;
    let (mut patch_found, mut patch_reached, mut blend_found, mut blend_reached) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (trigger, reached) in found.into_iter().zip(reached) {
        match trigger.shape {
            TriggerShape::Patch => (patch_found.push(trigger), patch_reached.push(reached)),
            TriggerShape::Blend => (blend_found.push(trigger), blend_reached.push(reached)),
        };
    }
    let (mut triggers, reached) = if patch_found.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        smaller_per_class(patch_found, patch_reached, classes as usize)
    };
    let (inverted, suspected_targets) =
        judge_family(model, held_out, input, &triggers, &reached, settings.max_mask_ratio, settings.min_push)?;
    let (blends, suspected_blend_targets) = if blend_found.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        judge_family(model, held_out, input, &blend_found, &blend_reached, settings.max_blend_ratio, settings.min_push)?
    };
    triggers.extend(blend_found);
    let summary = InversionSummary {
        settings: settings.clone(),
        optimisation_images: optimisation.len(),
        held_out_images: held_out.len(),
        image_pixels: height * width,
        classes: inverted,
        suspected_targets,
        blends,
        suspected_blend_targets,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((summary, triggers))
}

/// Measures one trigger per class (in class order) on the held-out images, sizes each against
/// the other classes' median, and lists the suspected targets, most suspicious first: reached,
/// at most `max_ratio` of the median, pushing at least `min_push`.
fn judge_family(
    model: &mut Classifier,
    held_out: &Dataset,
    input: &InputSpec,
    triggers: &[InvertedTrigger],
    reached: &[bool],
    max_ratio: f64,
    min_push: f64,
) -> Result<(Vec<InvertedClass>, Vec<i64>)> {
    let mut inverted = Vec::with_capacity(triggers.len());
    for (trigger, &reached) in triggers.iter().zip(reached) {
        let mask_pixels = trigger.mask.sum(Kind::Float).double_value(&[]);
        let push = push_rate(model, held_out, input, trigger)?;
        inverted.push(InvertedClass {
            class: trigger.class,
            mask_pixels,
            reached,
            push,
            mask_ratio: 0.0,
            anomaly_index: 0.0,
        });
    }
    let sizes: Vec<f64> = inverted.iter().map(|c| c.mask_pixels).collect();
    let median_all = median(&sizes);
    let mad = 1.4826 * median(&sizes.iter().map(|s| (s - median_all).abs()).collect::<Vec<_>>());
    for (k, class) in inverted.iter_mut().enumerate() {
        let others: Vec<f64> = sizes.iter().enumerate().filter(|(j, _)| *j != k).map(|(_, s)| *s).collect();
        let median_others = median(&others);
        class.mask_ratio = if median_others > 0.0 { class.mask_pixels / median_others } else { 1.0 };
        class.anomaly_index =
            if mad > 0.0 && class.mask_pixels < median_all { (median_all - class.mask_pixels) / mad } else { 0.0 };
    }
    let mut suspected: Vec<&InvertedClass> =
        inverted.iter().filter(|c| c.reached && c.mask_ratio <= max_ratio && c.push >= min_push).collect();
    suspected.sort_by(|a, b| a.mask_ratio.total_cmp(&b.mask_ratio));
    let suspected = suspected.iter().map(|c| c.class).collect();
    Ok((inverted, suspected))
}

/// One search: its class, its mask's initial logit, and its shape.
struct Start {
    class: i64,
    logit: f64,
    shape: TriggerShape,
}

/// Logit of the faint start: 5% of each pixel.
const FAINT_START: f64 = -3.0;
/// Logit of the half-opaque start.
const HALF_START: f64 = 0.0;

/// Per class (triggers come in start-major order, `classes` per start), the trigger with the
/// smaller mask among those that reached the success rate, else the smaller of the rest.
fn smaller_per_class(
    triggers: Vec<InvertedTrigger>,
    reached: Vec<bool>,
    classes: usize,
) -> (Vec<InvertedTrigger>, Vec<bool>) {
    let mut best: Vec<Option<(InvertedTrigger, bool, f64)>> = (0..classes).map(|_| None).collect();
    for (k, (trigger, reached)) in triggers.into_iter().zip(reached).enumerate() {
        let size = trigger.mask.sum(Kind::Float).double_value(&[]);
        let slot = &mut best[k % classes];
        let wins = slot.as_ref().is_none_or(|(_, r, s)| (reached, -size) > (*r, -*s));
        if wins {
            *slot = Some((trigger, reached, size));
        }
    }
    best.into_iter().map(|b| b.map(|(t, r, _)| (t, r)).expect("every class has a start")).unzip()
}

/// Runs `f` with the model's parameters frozen (gradients flow to the masks only), and unfreezes
/// them whatever `f` returned.
fn with_frozen_parameters<T>(model: &mut Classifier, f: impl FnOnce(&Classifier) -> Result<T>) -> Result<T> {
    let parameters = model.named_parameters()?;
    for (_, p) in &parameters {
        let _ = p.shallow_clone().set_requires_grad(false);
    }
    let result = f(model);
    for (_, p) in &parameters {
        let _ = p.shallow_clone().set_requires_grad(true);
    }
    result
}

/// The optimisation proper, for each start `searched`: the smallest mask found that reached the
/// success rate (or the last one), and whether one did. A blend start's mask is the sigmoid of
/// the mean of its logits, the same at every pixel. Every start's random initialisation is
/// drawn, searched or not, so a start's search does not depend on which others run beside it.
#[allow(clippy::too_many_arguments)]
fn optimise(
    model: &Classifier,
    data: &Dataset,
    input: &InputSpec,
    settings: &InversionSettings,
    rng: &mut SeededRng,
    (channels, height, width): (i64, i64, i64),
    all_starts: &[Start],
    searched: &[bool],
) -> Result<(Vec<InvertedTrigger>, Vec<bool>)> {
    const CHECK_EVERY: usize = 10;
    const COST_UP: f64 = 1.5;
    const COST_DOWN: f64 = 1.5 * 1.224_744_871; // 1.5^1.5, as Neural Cleanse
    let device = model.device();
    let kept: Vec<i64> = (0..all_starts.len() as i64).filter(|&k| searched[k as usize]).collect();
    let starts: Vec<&Start> = kept.iter().map(|&k| &all_starts[k as usize]).collect();
    let kept = Tensor::from_slice(&kept).to_device(device);
    let drawn = all_starts.len() as i64;
    let classes = starts.len() as i64;
    let targets: Vec<i64> = starts.iter().map(|start| start.class).collect();
    let per_start = |value: &dyn Fn(&Start) -> f64| {
        let values: Vec<f64> = starts.iter().map(|start| value(start)).collect();
        Tensor::from_slice(&values).to_kind(Kind::Float).to_device(device).view([classes, 1, 1, 1])
    };
    let initial_logits = per_start(&|start| start.logit);
    let blend = per_start(&|start| f64::from(u8::from(start.shape == TriggerShape::Blend)));
    let per_pixel: Tensor = 1.0 - &blend;
    let mask_of = |logits: &Tensor| -> Tensor {
        let uniform: Tensor = &blend * logits.mean_dim(&[2i64, 3][..], true, Kind::Float);
        (uniform + &per_pixel * logits).sigmoid()
    };
    let n = data.len();
    let batch = settings.batch_size.min(n);
    let images = data.images.to_device(device);
    let pixels = (height * width) as f64;
    let mask_noise = rng.uniform(&[drawn, 1, height, width], -0.1, 0.1, device).index_select(0, &kept);
    let mut mask_logits = Adam::new((mask_noise + initial_logits).set_requires_grad(true), settings.learning_rate);
    let pattern_noise = rng.uniform(&[drawn, channels, height, width], -1.0, 1.0, device).index_select(0, &kept);
    let mut pattern_logits = Adam::new(pattern_noise.set_requires_grad(true), settings.learning_rate);
    let target_labels = Tensor::from_slice(&targets).to_device(device).repeat_interleave_self_int(batch, 0, None);
    let mut cost = vec![settings.initial_cost; classes as usize];
    let mut best: Vec<Option<(f64, Tensor, Tensor)>> = (0..classes).map(|_| None).collect();
    let mut success_sum = Tensor::zeros([classes], (Kind::Float, device));
    for step in 1..=settings.steps {
        let index = rng.permutation(n, device).narrow(0, 0, batch);
        let x = images.index_select(0, &index).unsqueeze(0);
        let mask = mask_of(&mask_logits.param);
        let pattern = pattern_logits.param.sigmoid();
        let keep: Tensor = 1.0 - mask.unsqueeze(1);
        let paint: Tensor = (&mask * &pattern).unsqueeze(1);
        let stamped = (&x * keep + paint).view([classes * batch, channels, height, width]);
        let logits = model.logits(&input.normalize(&stamped))?;
        let cross_entropy = logits
            .cross_entropy_loss::<Tensor>(&target_labels, None, Reduction::None, -100, 0.0)
            .view([classes, batch])
            .mean_dim(1, false, Kind::Float);
        let mask_mean = mask.sum_dim_intlist(&[1i64, 2, 3][..], false, Kind::Float) / pixels;
        let weights = Tensor::from_slice(&cost).to_kind(Kind::Float).to_device(device);
        let loss = (cross_entropy + &weights * &mask_mean).sum(Kind::Float);
        loss.f_backward()?;
        mask_logits.step();
        pattern_logits.step();
        tch::no_grad(|| {
            let hits = logits.argmax(1, false).eq_tensor(&target_labels).to_kind(Kind::Float).view([classes, batch]);
            success_sum += hits.mean_dim(1, false, Kind::Float);
        });
        if step % CHECK_EVERY != 0 && step != settings.steps {
            continue;
        }
        // One host synchronisation per check: success over the last steps, and the masks' sizes.
        let window = if step % CHECK_EVERY == 0 { CHECK_EVERY } else { step % CHECK_EVERY } as f64;
        let success = Vec::<f64>::try_from(success_sum.to_kind(Kind::Double).to_device(Device::Cpu) / window)?;
        let sizes = Vec::<f64>::try_from(mask_mean.detach().to_kind(Kind::Double).to_device(Device::Cpu))?;
        let _ = success_sum.zero_();
        for k in 0..classes as usize {
            if success[k] >= settings.success_rate {
                if best[k].as_ref().is_none_or(|(size, _, _)| sizes[k] < *size) {
                    best[k] =
                        tch::no_grad(|| Some((sizes[k], mask.get(k as i64).copy(), pattern.get(k as i64).copy())));
                }
                cost[k] *= COST_UP;
            } else {
                cost[k] /= COST_DOWN;
            }
        }
    }
    let last_mask = tch::no_grad(|| mask_of(&mask_logits.param));
    let last_pattern = tch::no_grad(|| pattern_logits.param.sigmoid());
    let mut triggers = Vec::with_capacity(classes as usize);
    let mut reached = Vec::with_capacity(classes as usize);
    for (k, found) in best.into_iter().enumerate() {
        reached.push(found.is_some());
        let (mask, pattern) = match found {
            Some((_, mask, pattern)) => (mask, pattern),
            None => (last_mask.get(k as i64), last_pattern.get(k as i64)),
        };
        triggers.push(InvertedTrigger {
            class: targets[k],
            shape: starts[k].shape,
            mask: mask.detach().to_device(Device::Cpu).unsqueeze(0),
            pattern: pattern.detach().to_device(Device::Cpu).unsqueeze(0),
        });
    }
    Ok((triggers, reached))
}

/// Optimiser steps of a refit (`refit`).
const REFIT_STEPS: usize = 100;
/// Images of other classes per refit step.
const REFIT_BATCH: i64 = 64;
/// Mixed into the inversion's seed for a refit's batches ("refit").
const REFIT_SALT: u64 = 0x0072_6566_6974;

/// Re-fits `trigger` to `model` without letting it grow: Adam on its mask and pattern, from where
/// they are, towards its class, with the mask held to at most its own size (a blend to its own
/// weight), on the `optimisation` images of other classes. A trigger inverted before
/// purification can be stepped around by the purified model while a trigger of the same size
/// still works (trigger unlearning teaches the model that exact trigger); the refit is a strong
/// trigger of that size near it, so its push on held-out images is an adaptive estimate of what
/// is left of the backdoor. The same refit on a model without a backdoor says what a trigger of
/// that size does by nature.
pub fn refit(
    model: &mut Classifier,
    optimisation: &Dataset,
    input: &InputSpec,
    trigger: &InvertedTrigger,
    settings: &InversionSettings,
) -> Result<InvertedTrigger> {
    settings.validate()?;
    let device = model.device();
    let others: Vec<i64> = optimisation
        .labels_vec()
        .iter()
        .enumerate()
        .filter(|(_, l)| **l != trigger.class)
        .map(|(i, _)| i as i64)
        .collect();
    if others.is_empty() {
        return Err(Error::Settings(format!(
            "refitting the trigger of class {} needs clean images of other classes",
            trigger.class
        )));
    }
    let images = optimisation.images.index_select(0, &Tensor::from_slice(&others)).to_device(device);
    let n = images.size()[0];
    let batch = REFIT_BATCH.min(n);
    let logit = |t: &Tensor| t.to_device(device).clamp(1e-4, 1.0 - 1e-4).logit(None::<f64>);
    let budget = trigger.mask.sum(Kind::Float).double_value(&[]);
    let mut mask_logits = Adam::new(logit(&trigger.mask).set_requires_grad(true), settings.learning_rate);
    let mut pattern_logits = Adam::new(logit(&trigger.pattern).set_requires_grad(true), settings.learning_rate);
    let blend = trigger.shape == TriggerShape::Blend;
    // A blend's mask is one weight: the sigmoid of its logits' mean, at every pixel.
    let mask_of = |logits: &Tensor| -> Tensor {
        let raw = if blend {
            logits.mean_dim(&[2i64, 3][..], true, Kind::Float).sigmoid().expand_as(logits)
        } else {
            logits.sigmoid()
        };
        let scale = (budget / (raw.sum(Kind::Float) + 1e-12)).clamp_max(1.0);
        raw * scale
    };
    let mut rng = SeededRng::new(settings.seed ^ REFIT_SALT);
    model.set_eval();
    let targets = Tensor::full([batch], trigger.class, (Kind::Int64, device));
    with_frozen_parameters(model, |model| {
        for _ in 0..REFIT_STEPS {
            let index = rng.permutation(n, device).narrow(0, 0, batch);
            let x = images.index_select(0, &index);
            let mask = mask_of(&mask_logits.param);
            let stamped = &x * (1.0 - &mask) + &mask * pattern_logits.param.sigmoid();
            let logits = model.logits(&input.normalize(&stamped))?;
            let loss = logits.cross_entropy_loss::<Tensor>(&targets, None, Reduction::Mean, -100, 0.0);
            loss.f_backward()?;
            mask_logits.step();
            pattern_logits.step();
        }
        Ok(())
    })?;
    let (mask, pattern) = tch::no_grad(|| (mask_of(&mask_logits.param), pattern_logits.param.sigmoid()));
    Ok(InvertedTrigger {
        class: trigger.class,
        shape: trigger.shape,
        mask: mask.detach().to_device(Device::Cpu),
        pattern: pattern.detach().to_device(Device::Cpu),
    })
}

/// Fraction of `data`'s images not of the trigger's class that it sends into that class.
pub fn push_rate(model: &mut Classifier, data: &Dataset, input: &InputSpec, trigger: &InvertedTrigger) -> Result<f64> {
    model.set_eval();
    let predicted = model.stamped_predictions(&data.images, input, 512, |batch| Ok(trigger.apply(batch)))?;
    Ok(super::push_rates(&predicted, &data.labels_vec(), model.num_classes)[trigger.class as usize])
}

fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn adam_matches_torch_optim_adam_first_steps() {
        // Adam's first step moves each coordinate by lr (sign of the gradient), whatever its size.
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut adam = Adam::new(p.shallow_clone(), 0.1);
        (&p * &p).sum(Kind::Float).backward();
        adam.step();
        let v = Vec::<f64>::try_from(p.detach().to_kind(Kind::Double)).unwrap();
        assert!((v[0] - 0.9).abs() < 1e-6 && (v[1] + 1.9).abs() < 1e-6, "{v:?}");
    }

    fn trigger_of(class: i64, pixels: f64) -> InvertedTrigger {
        let mask = Tensor::full([1, 1, 2, 2], pixels / 4.0, (Kind::Float, Device::Cpu));
        InvertedTrigger {
            class,
            shape: TriggerShape::Patch,
            mask,
            pattern: Tensor::zeros([1, 1, 2, 2], (Kind::Float, Device::Cpu)),
        }
    }

    #[test]
    fn each_class_keeps_its_smaller_successful_start() {
        // Two classes, two starts each (start-major): class 0's faint start reached with 3 pixels,
        // its half-opaque one with 1; class 1's half-opaque start is smaller but never reached.
        let found = vec![trigger_of(0, 3.0), trigger_of(1, 2.0), trigger_of(0, 1.0), trigger_of(1, 0.5)];
        let (triggers, reached) = smaller_per_class(found, vec![true, true, true, false], 2);
        let sizes: Vec<f64> = triggers.iter().map(|t| t.mask.sum(Kind::Float).double_value(&[])).collect();
        assert_eq!(triggers.iter().map(|t| t.class).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(sizes, [1.0, 2.0]);
        assert_eq!(reached, [true, true]);
        // Neither start reached: the smaller last mask stands, not reached.
        let (triggers, reached) =
            smaller_per_class(vec![trigger_of(0, 3.0), trigger_of(0, 2.0)], vec![false, false], 1);
        assert_eq!(triggers[0].mask.sum(Kind::Float).double_value(&[]), 2.0);
        assert_eq!(reached, [false]);
    }

    #[test]
    fn stamping_keeps_pixels_outside_the_mask() {
        let mask = Tensor::zeros([1, 1, 4, 4], (Kind::Float, Device::Cpu));
        let _ = mask.narrow(2, 0, 2).narrow(3, 0, 2).fill_(1.0);
        let trigger = InvertedTrigger {
            class: 0,
            shape: TriggerShape::Patch,
            mask,
            pattern: Tensor::ones([1, 1, 4, 4], (Kind::Float, Device::Cpu)),
        };
        let images = Tensor::zeros([2, 1, 4, 4], (Kind::Float, Device::Cpu));
        let stamped = trigger.apply(&images);
        assert_eq!(stamped.sum(Kind::Float).double_value(&[]), 8.0);
    }
}
