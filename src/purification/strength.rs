//! Choosing FST's strength per model. A gate purifies models nobody will hand-tune, and no single
//! alpha suits every model (too weak leaves the backdoor, too strong costs clean accuracy), so
//! the automatic mode tries a few alphas, each from the original weights on most of the clean
//! set, and judges each candidate only by what a defender has:
//!
//! - the head shift, cos(W, W0) of the final head to the original one. FST removes a backdoor by
//!   pushing the features away from the compromised head; on the lab's BadNets CNN, runs whose
//!   head ended below -0.2 had ASR <= 1% (docs/strength.md has the benchmark);
//! - the trigger probes (evaluation::standard_probes) on the validation split. A probe that pushes
//!   most of the original model's images into one class has found a trigger the backdoor answers
//!   to (a noise-blend backdoor answers to any noise pattern, not only its own), and that
//!   (probe, class) push must fall before a candidate counts. The head shift alone misses
//!   backdoors that survive a shifted head: on GroupNorm CNNs a blended backdoor kept 8-11% ASR
//!   at cos -0.31 (docs/strength.md);
//! - the accuracy on a class-balanced validation split held out of the clean set, against the
//!   original model's accuracy on the same images.
//!
//! The search: a candidate's residual is how far it is from meeting both targets (the larger of
//! cos - target and suspect push - its target; <= 0 when both are met). The final cosine falls
//! about linearly with alpha over the range that matters (the push on the head is alpha * lr
//! per step), so after a first alpha it steps up threefold or by the secant through the last two
//! residuals, aiming a little past zero, until one meets both; if that one overshot, a secant
//! step back inside the bracket looks for a gentler alpha that still meets them. Among the
//! candidates that met both the most accurate on validation wins; if none did, the one closest
//! to them, with a warning. The winner is kept as trained (on the
//! tuning split), so the validation figures describe the very model that is written, and no
//! extra run is spent retraining it.
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::evidence::{
    Evidence, NATURAL_RETENTION, REFERENCE_BLEND_SHARE, REFERENCE_MASK_SHARE, REFERENCE_TRANSFER, Signal, SignalSource,
    UNREFERENCED_MAX_MASK_RATIO,
};
use super::reference::{self, Reference};
use super::{DISTILLATION_TEMPERATURE, Method, Relearning, Settings, purify, purify_unlearning, relearn_head};
use crate::data::{Dataset, InputSpec};
use crate::error::{Error, Result};
use crate::evaluation::{
    self, Attack, InversionSettings, InversionSummary, InvertedTrigger, Plan, ProbeResult, Trigger, TriggerShape,
};
use crate::model::{Classifier, Snapshot};
use crate::stats::{Interval, PairedCounts, wilson_upper_95};
use crate::training::{ADVERSARIAL_STEPS, AdversarialUnlearning, EpochRecord, Progress, Stamp, Unlearning};

/// How strongly FST pushes: fixed settings, or a search per model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Strength {
    /// The settings as given.
    Fixed,
    /// Search alpha on a held-out validation split (FST only). Boxed: the search's settings are
    /// far larger than the fixed variant.
    Auto(Box<AutoStrength>),
}

/// The automatic mode's search space and rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct AutoStrength {
    /// Fraction of the clean set held out (class-balanced) to validate candidates on.
    pub validation_fraction: f64,
    /// The first alpha tried (a twentieth of the paper's CIFAR-10 value).
    pub start_alpha: f64,
    /// At most this many candidates are trained (each costs one tuning run).
    pub max_candidates: usize,
    /// Each candidate takes at least this many optimiser steps, with more epochs on a small
    /// clean set: the head's push is alpha * lr per step, so with too few steps only a large
    /// alpha moves it, and a large alpha costs accuracy. The re-initialised head also needs the
    /// steps to win back clean accuracy: at 300 steps the lab's models lost 3-7 points, at 1,500
    /// 1.1 on average (docs/strength.md).
    pub min_steps: usize,
    /// A candidate has shifted the head enough when cos(W, W0) ends at or below this.
    pub cosine_target: f64,
    /// A trigger probe that pushes at least this fraction of the original model's validation
    /// images (those not already of the class) into one class marks a suspected backdoor. The
    /// lab's Fashion-MNIST CNNs push noise or a sinusoid into one class ("shirt", "bag") at
    /// 17-45% without a backdoor of that family; their backdoors answer a probe of their own
    /// family at 44-100%, a noise blend at 100% whatever the noise (docs/strength.md).
    pub suspect_push_rate: f64,
    /// A candidate has removed a suspected backdoor when that probe pushes at most this fraction
    /// of the validation images into that class. A point above the 2% ASR bound: on 540 images
    /// the push is known to about 0.7 points, and at 2% the lab's BadNets CNN (2.6% at alpha
    /// 0.01) was pushed on to alpha 0.03 and lost 3.45 points of clean accuracy for it.
    pub suspect_push_target: f64,
    /// Validation accuracy the chosen candidate may lose against the original model, in points,
    /// before the report warns.
    pub max_validation_drop_points: f64,
    /// Invert a trigger per class before purifying (evaluation::inversion): finds backdoors of
    /// shapes and positions no probe covers, and names their class.
    pub invert_triggers: bool,
    /// At most this many tuning images (class-balanced) to invert triggers on.
    pub inversion_images: i64,
    /// How the triggers are inverted and judged.
    pub inversion: InversionSettings,
    /// Optimiser steps of the from-scratch reference every signal is judged against
    /// (purification::reference); 0: none, a probe is read as natural only when the first
    /// candidate leaves its push in place.
    #[serde(default)]
    pub reference_steps: usize,
    /// The first alpha when there is evidence of a backdoor. On the grid's fit half the gentle
    /// alpha (0.01) left 11-15% ASR on two of the three patch backdoors that inversion found,
    /// and 0.03 removed all three (0.0-0.2% on validation) for 1.5-2.3 points.
    pub evidence_start_alpha: f64,
    /// A candidate has cleared an inverted trigger when it pushes at most this fraction of the
    /// validation images into its class. On the fit half, an inverted trigger pushing <= 4.3%
    /// went with a real ASR <= 2.8%, one pushing 7% with 11% (docs/strength.md).
    pub inverted_push_target: f64,
    /// With a usable from-scratch reference, an inverted trigger is cleared at the push it has
    /// on that reference when that is above `inverted_push_target`, up to this cap: a purified
    /// model the trigger pushes no harder than a model that never saw a backdoor shows nothing
    /// left of one. At most `inverted_push_target` (the default, 0): the target alone.
    #[serde(default)]
    pub inverted_push_reference_cap: f64,
    /// Epochs of linear probing of the re-initialised head before each candidate's full tuning
    /// (LP-FT, `Settings::head_warmup_epochs`).
    pub head_warmup_epochs: usize,
    /// Without evidence (trigger inversion on): the gentle candidate unlearns the inverted patch
    /// triggers of this many classes, those with the smallest masks against the median (the
    /// classes the screen named and the reference read as natural among them, since version 14);
    /// 0: none. A backdoor too weak to count as evidence still makes its
    /// target about the easiest class to reach (0.55-0.72 of the median on the spent weak
    /// backdoors, docs/strength.md), and the gentle tuning alone left 2.3-6.6% of them.
    #[serde(default)]
    pub gentle_unlearn_classes: usize,
    /// The fraction of every tuning batch (warm-up included) the gentle candidate stamps with
    /// those triggers, under the images' own labels.
    #[serde(default)]
    pub gentle_unlearn_share: f64,
    /// Without evidence (trigger inversion on): the gentle candidate is FST from the original
    /// head (`Settings::keep_head`) at `start_alpha`, not from a re-initialised one. Off in the
    /// judge: on spent models it cost the small clean CNNs less (t01 1.15 points against 2.70)
    /// but a clean ResNet-18 more (u02 2.10 against 1.85) and left weak patches the re-initialised
    /// head removes (u05 7.1% against 0.3%; docs/strength.md, "Tried for a version 9").
    #[serde(default)]
    pub gentle_keeps_head: bool,
    /// Without evidence (trigger inversion on): the gentle candidate's features end this share of
    /// the way from the original weights to the tuned ones (`Settings::feature_interpolation`,
    /// WiSE-FT); None: all the way. The judge's `JUDGE_GENTLE_FEATURE_INTERPOLATION`.
    #[serde(default)]
    pub gentle_feature_interpolation: Option<f64>,
    /// The head warm-up's learning rate of every candidate when the base settings give none
    /// (`Settings::head_warmup_learning_rate`); None: the tuning's. The judge's
    /// `JUDGE_HEAD_WARMUP_LEARNING_RATE`.
    #[serde(default)]
    pub head_warmup_learning_rate: Option<f64>,
    /// Train every candidate of the ladder (start alpha, then threefold) whatever the residuals,
    /// and choose among them by the rule: for fitting the rule on a benchmark, not for gating.
    pub explore: bool,
    /// With inverted triggers that count as evidence: the fraction of every tuning batch stamped
    /// with them under the images' own labels (trigger unlearning, `training::Unlearning`);
    /// 0: none. A trigger the candidate was taught to ignore no longer says what is left of the
    /// backdoor, so each such candidate is inverted afresh (another seed, the signals' shapes)
    /// and a signal's class that is still a suspect there, and not the data's nature against the
    /// reference, counts with the fresh trigger's push.
    pub unlearn_share: f64,
    /// With inverted triggers that count as evidence: refit each to every candidate at no more
    /// than its own size, and every inverted trigger to the reference, and report their pushes
    /// (`evaluation::refit`, `Evidence::refit_residual_push`). Off by default: it costs a 100-step
    /// refit per trigger and candidate, and on the held-out set r7 it did not tell a removed
    /// backdoor from a left one (docs/strength.md), so it decides nothing.
    #[serde(default)]
    pub refit_residual: bool,
    /// Epochs of the relearning check of the chosen candidate (`purification::relearn_head`):
    /// a fresh head learnt alone on its frozen features from the tuning images, at
    /// `RELEARN_LEARNING_RATE`, and every signal measured again under it
    /// (`Signal::relearned_push`, `StrengthSearch::relearning`); 0: none. It decides nothing:
    /// it tells the reader whether a backdoor the purified model no longer answers is gone from
    /// its features or only disconnected from its head.
    #[serde(default)]
    pub relearn_epochs: usize,
    /// With evidence, when every candidate of the ladder left a signal standing: one more
    /// candidate at the ladder's strongest alpha whose tuning is sharpness-aware at this radius
    /// (ASAM, `Settings::sharpness_radius`); None: none (the default, the judge's too). On a
    /// residual network FST turns the head away at no cost and the features that carry the
    /// backdoor never move; the climb to a flat minimum moves them, but on the spent ResNet-18s
    /// radius 8 left 9-22% of the blends (radius 16 collapsed the model), so it is opt-in
    /// (docs/strength.md, "Version 14").
    #[serde(default)]
    pub sharpness_radius: Option<f64>,
    /// The fraction of the sharpness-aware candidate's tuning batches (warm-up included) stamped
    /// with the inverted triggers that count as evidence, under the images' own labels (trigger
    /// unlearning, as `unlearn_share` does for every candidate, and judged the same way: a fresh
    /// inversion); 0: the ladder's `unlearn_share`. The climb moves the features, the unlearning
    /// tells them which direction to drop. Without a sharpness radius it applies to nothing.
    #[serde(default)]
    pub sharpness_unlearn_share: f64,
    /// With evidence (trigger inversion on): every candidate unlearns universal adversarial
    /// perturbations (`Settings::adversarial_unlearning`, trigger-agnostic, so the evidence's
    /// inverted triggers stay independent measures of what is left); None: the base settings'.
    /// The gentle candidate, which clean models get, is left as it is: everywhere, adversarial
    /// unlearning cost the held-out i24's clean models 1.20-1.75 points, and on its evidence
    /// rungs it removed the most backdoors within the bars (docs/strength.md). Every inverted
    /// trigger that counts is then judged by a fresh inversion of each candidate, as under
    /// trigger unlearning: the perturbations unlearnt cover it. A share of 0 turns it off
    /// (version 15's judge).
    #[serde(default)]
    pub evidence_adversarial_unlearning: Option<AdversarialUnlearning>,
    /// With evidence (trigger inversion on): every candidate distils from the original model at
    /// this weight (`Settings::distillation`), holding a stamped image to the original's answer
    /// without the stamp; None: the base settings'. The gentle candidate is left as it is.
    #[serde(default)]
    pub evidence_distillation: Option<f64>,
}

impl Default for AutoStrength {
    fn default() -> Self {
        AutoStrength {
            validation_fraction: 0.2,
            start_alpha: 0.01,
            max_candidates: 3,
            min_steps: 1500,
            cosine_target: -0.25,
            suspect_push_rate: 0.6,
            suspect_push_target: 0.03,
            max_validation_drop_points: 2.0,
            invert_triggers: false,
            inversion_images: 1000,
            inversion: InversionSettings::default(),
            reference_steps: 0,
            evidence_start_alpha: 0.03,
            inverted_push_target: 0.05,
            inverted_push_reference_cap: 0.0,
            head_warmup_epochs: 0,
            gentle_unlearn_classes: 0,
            gentle_unlearn_share: 0.0,
            gentle_keeps_head: false,
            gentle_feature_interpolation: None,
            head_warmup_learning_rate: None,
            explore: false,
            unlearn_share: 0.0,
            refit_residual: false,
            relearn_epochs: 0,
            sharpness_radius: None,
            sharpness_unlearn_share: 0.0,
            evidence_adversarial_unlearning: None,
            evidence_distillation: None,
        }
    }
}

impl AutoStrength {
    /// The evidence-driven judge (`fstgate purify --judge`, `judge = true` under a
    /// pipeline's `[purification]`): trigger inversion joins the probes, the head's cosine is
    /// no target, LP-FT with 5 warm-up epochs at `JUDGE_HEAD_WARMUP_LEARNING_RATE` keeps the
    /// features, `JUDGE_MIN_STEPS` steps per candidate; with evidence a threefold ladder from
    /// `JUDGE_EVIDENCE_START_ALPHA`, at most `JUDGE_MAX_CANDIDATES` candidates; without evidence
    /// one candidate at alpha `JUDGE_GENTLE_ALPHA` that unlearns the inverted patches of the
    /// `JUDGE_GENTLE_UNLEARN_CLASSES` easiest classes and keeps
    /// `JUDGE_GENTLE_FEATURE_INTERPOLATION` of its tuning's change to the features; the
    /// candidates with evidence unlearn universal adversarial perturbations on
    /// `JUDGE_EVIDENCE_ADVERSARIAL_SHARE` of every batch within `JUDGE_EVIDENCE_ADVERSARIAL_RADIUS`
    /// (version 16), with the trigger inversion at `JUDGE_INVERSION_STEPS` (version 17). Not the
    /// default strength: on the held-out grids it still releases backdoors it does not detect
    /// (docs/strength.md).
    pub fn judge() -> Self {
        AutoStrength {
            start_alpha: JUDGE_GENTLE_ALPHA,
            invert_triggers: true,
            inversion: InversionSettings {
                steps: JUDGE_INVERSION_STEPS,
                max_mask_ratio: JUDGE_SCREEN_MASK_RATIO,
                ..InversionSettings::default()
            },
            reference_steps: 600,
            min_steps: JUDGE_MIN_STEPS,
            max_candidates: JUDGE_MAX_CANDIDATES,
            evidence_start_alpha: JUDGE_EVIDENCE_START_ALPHA,
            head_warmup_epochs: 5,
            gentle_unlearn_classes: JUDGE_GENTLE_UNLEARN_CLASSES,
            gentle_unlearn_share: JUDGE_GENTLE_UNLEARN_SHARE,
            gentle_feature_interpolation: Some(JUDGE_GENTLE_FEATURE_INTERPOLATION),
            head_warmup_learning_rate: Some(JUDGE_HEAD_WARMUP_LEARNING_RATE),
            inverted_push_reference_cap: JUDGE_INVERTED_PUSH_REFERENCE_CAP,
            relearn_epochs: JUDGE_RELEARN_EPOCHS,
            evidence_adversarial_unlearning: Some(AdversarialUnlearning {
                share: JUDGE_EVIDENCE_ADVERSARIAL_SHARE,
                radius: JUDGE_EVIDENCE_ADVERSARIAL_RADIUS,
                steps: ADVERSARIAL_STEPS,
            }),
            ..AutoStrength::default()
        }
    }
}

/// The share of every tuning batch on which the judge's candidates with evidence unlearn
/// universal adversarial perturbations (`AutoStrength::evidence_adversarial_unlearning`, version
/// 16): Neural Cleanse's unlearning share, chosen before any run, not fitted.
pub const JUDGE_EVIDENCE_ADVERSARIAL_SHARE: f64 = 0.2;

/// The ball of the judge's evidence candidates' adversarial unlearning, as a root-mean-square
/// change per [0, 1] input value (an L2 of 4.2 on 28x28 images; version 16). Fitted on one lab
/// model (tests/judgement.rs's MNIST GroupNorm CNN with a 5x5 checker, whose change is an L2 of
/// about 3.6): the default 0.1 left 4.0% of its ASR, 0.15 left 1.8%. Held out on aa01-aa12
/// (docs/strength.md, "Version 16"): 2 backdoors purified within the bars against version 15's
/// none, 8 of 12 verdicts right against 6.
pub const JUDGE_EVIDENCE_ADVERSARIAL_RADIUS: f64 = 0.15;

/// The judge's trigger inversion runs this many optimiser steps (`InversionSettings::steps`,
/// version 17; 200 before), on the original model, on the from-scratch reference and in each
/// fresh inversion of a candidate. Chosen on spent models, not fitted to a figure: at 600 steps
/// a backdoor's mask shrinks towards its trigger faster than the data's shortcuts do (the spent
/// ab05's target 0.60 -> 0.38 of the median, d08's 0.41), where its shape and its stability over
/// seeds told nothing (docs/strength.md, "Why a patch goes undetected"). Held out on ac01-ac12
/// against version 16 ("Version 17 held out on ac01-ac12"): 9 of 12 right against 9, 1 unsound
/// verdict against 2, 4 backdoors purified within the bars against 4, at 1.9 times the gate's
/// time (median).
pub const JUDGE_INVERSION_STEPS: usize = 600;

/// The judge screens an inverted patch whose mask is at most this fraction of the other classes'
/// median (`InversionSettings::max_mask_ratio`; 0.3, `UNREFERENCED_MAX_MASK_RATIO`, before
/// version 12), and the from-scratch reference decides whether the class is the data's shortcut
/// or a backdoor's target. Fitted on the spent y01-y12 (docs/strength.md, "Version 12"): a patch
/// backdoor into a ResNet-18 (y10) had its target at 0.44 of the median; every other class at or
/// below 0.5 on those models was the data's by the reference's pixels (0.41 and above).
pub const JUDGE_SCREEN_MASK_RATIO: f64 = 0.5;

/// The judge clears an inverted trigger at its push on the from-scratch reference, up to this
/// (`AutoStrength::inverted_push_reference_cap`, version 15; twice `inverted_push_target`).
/// Fitted on the spent grids' 44 judged reports with counting inverted triggers
/// (docs/strength.md, "Version 15"): the counting triggers' pushes on the reference were
/// 0.0-12.9%; three candidates that had taken the real trigger to 0.0-1.7% and were held to 5%
/// by a push of 5.6-7.8% (p11, y05, z08) sat under theirs, and no candidate under its reference
/// floor left the real trigger above 2%.
pub const JUDGE_INVERTED_PUSH_REFERENCE_CAP: f64 = 0.10;

/// The judge's relearning check (`AutoStrength::relearn_epochs`): 20 epochs, four times the
/// candidates' head warm-up, so the fresh head is near what a team retraining it would reach (a
/// 40-epoch warm-up at 0.1 brought the spent s01's head to its original accuracy,
/// docs/strength.md). Not fitted: the check decides nothing.
pub const JUDGE_RELEARN_EPOCHS: usize = 20;

/// The relearning check's learning rate: the judge's head warm-up rate, fitted on spent grid
/// models for the same job, a new head trained alone on frozen features.
pub const RELEARN_LEARNING_RATE: f64 = JUDGE_HEAD_WARMUP_LEARNING_RATE;

/// The judge's first alpha with evidence (`AutoStrength::evidence_start_alpha`, version 11; 0.03
/// before). Fitted on the four spent models whose evidence counted and was cleared (x08, x11,
/// u06, u10; docs/strength.md, "Version 11"): 0.01 cleared x11's WaNet for 1.80 points of the
/// test set against 2.85 at 0.03, and left the others' evidence for the next alpha. Held out once
/// on y01-y12: it cleared one backdoor's evidence (y09, 0.55 points against 1.15 at 0.03).
pub const JUDGE_EVIDENCE_START_ALPHA: f64 = 0.01;

/// The judge's candidates with evidence (`AutoStrength::max_candidates`; without, one): the
/// threefold ladder 0.01, 0.03, 0.09 (version 11; 0.03 and 0.09 before), so that starting lower
/// loses no strength.
pub const JUDGE_MAX_CANDIDATES: usize = 3;

/// The judge's gentle candidate unlearns the inverted patches of this many classes
/// (`AutoStrength::gentle_unlearn_classes`). Fitted on spent models (docs/strength.md, version 8):
/// the weak patch backdoors' targets were the easiest class (t06, t09, t12) or the third (s07).
pub const JUDGE_GENTLE_UNLEARN_CLASSES: usize = 3;

/// The share of every batch the gentle candidate stamps (`AutoStrength::gentle_unlearn_share`):
/// Neural Cleanse's 20%, not fitted (0.1 removed as much and cost as much on the spent t9).
pub const JUDGE_GENTLE_UNLEARN_SHARE: f64 = 0.2;

/// The judge's head warm-up learning rate (`AutoStrength::head_warmup_learning_rate`, version 9).
/// Fitted on fourteen spent models (docs/strength.md, "The tuning curve"): at the tuning's 0.01
/// the 5 warm-up epochs left the new head 13 points below the original on the small CNNs; at
/// 0.1 it reaches it, and version 8's drops fell (u05 2.50 -> 1.05, u10 2.60 -> 1.90 points).
pub const JUDGE_HEAD_WARMUP_LEARNING_RATE: f64 = 0.1;

/// How far the judge's gentle candidate keeps its tuning's change to the features
/// (`AutoStrength::gentle_feature_interpolation`, version 10): halfway, WiSE-FT's middle, not
/// fitted. On the spent s01 and t01 the full tuning lost 2.0-3.3 validation points against where
/// a 40-epoch warm-up had left the new head (the weights drift on 2,400 images); halfway back,
/// six spent clean models lost a mean 0.70 points on the test set against 1.57
/// (docs/strength.md, "Version 10").
pub const JUDGE_GENTLE_FEATURE_INTERPOLATION: f64 = 0.5;

/// The judge's optimiser steps per candidate (`AutoStrength::min_steps`), with evidence and
/// without. Fitted on spent models (docs/strength.md, version 7): at 300 steps the shifted head
/// had too little time to win clean accuracy back: on r7's four backdoors found, alpha 0.03 cleared
/// the evidence on none and 0.09 cost 1.35-6.35 points; at 900, 0.03 cleared three (the fourth, a
/// ResNet-18, took 0.09) for 1.25-2.95 points. The gentle candidate on eight spent clean models
/// lost a mean 0.59 points at 900 against 1.27 at 300 (five within a point against three; the
/// GroupNorm CNNs gained most, two of the others lost a quarter to a third of a point more).
pub const JUDGE_MIN_STEPS: usize = 900;

/// The judge's one candidate when nothing suggests a backdoor: purified because a team may
/// require it, as gently as FST goes. Fitted on spent clean models (f09 h10 n10 n14 n11 of the
/// grid, docs/strength.md): at 0.001 they lost 0.70-1.50 points against 1.10-2.25 at 0.01;
/// checked once on the held-out clean set (c01-c06): 4 of 5 released within a point at 0.001,
/// 1 of 5 at 0.01. Evidence starts the search at `evidence_start_alpha` instead.
pub const JUDGE_GENTLE_ALPHA: f64 = 0.001;

/// Slack for floating-point noise in a drop: 100 * (0.9 - 0.88) is 2.0000000000000018, which
/// must stay within a 2-point budget (12 of 600 images). Real differences move in steps of
/// 100 / n points.
const DROP_TOLERANCE: f64 = 1e-9;
/// Below this many validation images, accuracy differences of a point or two are noise.
const SMALL_VALIDATION: i64 = 500;
/// Steps aim this far past the target, since the cosine is only about linear in alpha.
const AIM_PAST_TARGET: f64 = 0.05;
/// A candidate this far past the target pushed harder than needed: look for a gentler one. At
/// 0.15 the lab's BadNets CNN (cos -0.42 at the first alpha) stepped back to alpha 0.008, which
/// validated as well and left 3.4% ASR instead of stopping at the first candidate.
const OVERSHOOT: f64 = 0.25;
/// Bounds of one step up while no candidate has reached the target.
const MIN_STEP_UP: f64 = 1.5;
const MAX_STEP_UP: f64 = 5.0;
const FIRST_STEP_UP: f64 = 3.0;
/// `min_steps` stops stretching a candidate here: on a few hundred clean images, more passes fit
/// those images rather than move the features (500 images: 2.1% ASR left at 375 epochs).
const MAX_CANDIDATE_EPOCHS: usize = 100;

impl AutoStrength {
    /// Checks the search's settings, and that `base` is FST's (the search tunes its alpha).
    pub fn validate(&self, base: &Settings) -> Result<()> {
        if base.method != Method::Fst {
            return Err(Error::Settings(format!(
                "the automatic strength searches FST's alpha; method {:?} has none (use --strength fixed)",
                base.method
            )));
        }
        if base.keep_head {
            return Err(Error::Settings(
                "the automatic strength decides each candidate's head; keeping the original head applies to fixed \
                 settings (--strength fixed)"
                    .into(),
            ));
        }
        if base.sharpness_radius.is_some() {
            return Err(Error::Settings(
                "the automatic strength decides which candidate is sharpness-aware; a sharpness radius applies to \
                 fixed settings (--strength fixed)"
                    .into(),
            ));
        }
        if let Some(radius) = self.sharpness_radius.filter(|r| !(*r > 0.0 && r.is_finite())) {
            return Err(Error::Settings(format!("the sharpness radius must be positive, got {radius}")));
        }
        if self.sharpness_radius.is_some() && !self.invert_triggers {
            return Err(Error::Settings(
                "the sharpness-aware candidate follows a ladder that left the evidence standing: it needs trigger \
                 inversion (--judge, or invert_triggers = true)"
                    .into(),
            ));
        }
        if base.feature_interpolation.is_some() {
            return Err(Error::Settings(
                "the automatic strength decides each candidate's feature interpolation; interpolating applies to \
                 fixed settings (--strength fixed)"
                    .into(),
            ));
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction <= 0.5) {
            return Err(Error::Settings(format!(
                "validation fraction must be in (0, 0.5], got {}",
                self.validation_fraction
            )));
        }
        if !(self.start_alpha > 0.0 && self.start_alpha.is_finite()) {
            return Err(Error::Settings(format!("the start alpha must be positive, got {}", self.start_alpha)));
        }
        if self.max_candidates == 0 {
            return Err(Error::Settings("the automatic strength needs at least one candidate".into()));
        }
        if !(self.cosine_target > -1.0 && self.cosine_target < 1.0) {
            return Err(Error::Settings(format!("cosine target must be in (-1, 1), got {}", self.cosine_target)));
        }
        for (name, rate) in
            [("suspect push rate", self.suspect_push_rate), ("suspect push target", self.suspect_push_target)]
        {
            if !(0.0..=1.0).contains(&rate) {
                return Err(Error::Settings(format!("the {name} must be in [0, 1], got {rate}")));
            }
        }
        if self.suspect_push_target >= self.suspect_push_rate {
            return Err(Error::Settings("the suspect push target must be below the suspect push rate".into()));
        }
        if self.max_validation_drop_points.is_nan() || self.max_validation_drop_points < 0.0 {
            return Err(Error::Settings("the validation accuracy budget must be non-negative".into()));
        }
        for (name, rate) in
            [("evidence start alpha", self.evidence_start_alpha), ("inverted push target", self.inverted_push_target)]
        {
            if !(rate > 0.0 && rate.is_finite()) || (name == "inverted push target" && rate > 1.0) {
                return Err(Error::Settings(format!(
                    "the {name} must be positive (a fraction for the target), got {rate}"
                )));
            }
        }
        if !(0.0..=1.0).contains(&self.inverted_push_reference_cap) {
            return Err(Error::Settings(format!(
                "the inverted push's reference cap must be a fraction in [0, 1], got {}",
                self.inverted_push_reference_cap
            )));
        }
        for (name, share) in [
            ("unlearning share", self.unlearn_share),
            ("sharpness-aware unlearning share", self.sharpness_unlearn_share),
        ] {
            if !(0.0..1.0).contains(&share) {
                return Err(Error::Settings(format!("the {name} must be in [0, 1), got {share}")));
            }
        }
        if self.unlearn_share > 0.0 && !self.invert_triggers {
            return Err(Error::Settings(
                "trigger unlearning stamps inverted triggers: it needs trigger inversion (--judge, or \
                 invert_triggers = true)"
                    .into(),
            ));
        }
        if self.refit_residual && !self.invert_triggers {
            return Err(Error::Settings(
                "the refit residual refits inverted triggers: it needs trigger inversion (--judge, or \
                 invert_triggers = true)"
                    .into(),
            ));
        }
        if self.inversion_images < 1 {
            return Err(Error::Settings("trigger inversion needs at least one image".into()));
        }
        self.inversion.validate()?;
        if self.gentle_unlearn_classes > 0 && !self.invert_triggers {
            return Err(Error::Settings(
                "the gentle candidate unlearns inverted triggers: it needs trigger inversion (--judge, or \
                 invert_triggers = true)"
                    .into(),
            ));
        }
        if self.gentle_keeps_head && !self.invert_triggers {
            return Err(Error::Settings(
                "the gentle candidate is the judge's, chosen when inversion finds no evidence: keeping its head \
                 needs trigger inversion (--judge, or invert_triggers = true)"
                    .into(),
            ));
        }
        if (self.evidence_adversarial().is_some() || self.evidence_distillation.is_some()) && !self.invert_triggers {
            return Err(Error::Settings(
                "the tuning with evidence (adversarial unlearning, distillation) is the judge's, chosen when \
                 inversion finds evidence: it needs trigger inversion (--judge, or invert_triggers = true)"
                    .into(),
            ));
        }
        if self.gentle_feature_interpolation.is_some() && !self.invert_triggers {
            return Err(Error::Settings(
                "the gentle candidate is the judge's, chosen when inversion finds no evidence: interpolating its \
                 features needs trigger inversion (--judge, or invert_triggers = true)"
                    .into(),
            ));
        }
        // The ranges of what the search adds to the base (the warm-up rate, the gentle
        // candidate's interpolation) are the training settings' own checks.
        for regime in [self.gentle_regime(), self.evidence_regime()] {
            self.candidate_settings(base, self.start_alpha, 1, regime, None).validate()?;
        }
        if !(0.0..1.0).contains(&self.gentle_unlearn_share) {
            return Err(Error::Settings(format!(
                "the gentle unlearning share must be in [0, 1), got {}",
                self.gentle_unlearn_share
            )));
        }
        Ok(())
    }

    /// A candidate's training settings: `base` at `alpha` for `epochs`, with the search's warm-up
    /// (its rate unless the base gives one), what sets the gentle candidate apart (`gentle`) and
    /// the sharpness-aware candidate's radius (`next_candidate`; None for every other).
    fn candidate_settings(
        &self,
        base: &Settings,
        alpha: f64,
        epochs: usize,
        regime: CandidateRegime,
        sharpness_radius: Option<f64>,
    ) -> Settings {
        Settings {
            alpha,
            epochs,
            sharpness_radius,
            head_warmup_epochs: self.head_warmup_epochs,
            head_warmup_learning_rate: base.head_warmup_learning_rate.or(self.head_warmup_learning_rate),
            keep_head: regime.keep_head,
            feature_interpolation: regime.feature_interpolation,
            adversarial_unlearning: regime.adversarial_unlearning.or(base.adversarial_unlearning),
            distillation: regime.distillation.or(base.distillation),
            ..base.clone()
        }
    }

    /// What sets the judge's candidates apart, given the evidence: without evidence the gentle
    /// candidate's head and features, with evidence the adversarial unlearning and distillation;
    /// outside the judge, or exploring, nothing does.
    fn regime(&self, evidence: bool) -> CandidateRegime {
        match (self.invert_triggers && !self.explore, evidence) {
            (true, false) => self.gentle_regime(),
            (true, true) => self.evidence_regime(),
            (false, _) => CandidateRegime::default(),
        }
    }

    /// The judge's gentle candidate: its head and features.
    fn gentle_regime(&self) -> CandidateRegime {
        CandidateRegime {
            keep_head: self.gentle_keeps_head,
            feature_interpolation: self.gentle_feature_interpolation,
            ..CandidateRegime::default()
        }
    }

    /// The evidence candidates' adversarial unlearning, None when off: a share of exactly 0
    /// turns it off, so a pipeline's TOML, which has no null, can give version 15 back (any
    /// other share out of range is refused by `validate`).
    fn evidence_adversarial(&self) -> Option<AdversarialUnlearning> {
        self.evidence_adversarial_unlearning.filter(|adversarial| adversarial.share != 0.0)
    }

    /// The judge's candidates with evidence: their adversarial unlearning and distillation.
    fn evidence_regime(&self) -> CandidateRegime {
        CandidateRegime {
            adversarial_unlearning: self.evidence_adversarial(),
            distillation: self.evidence_distillation,
            ..CandidateRegime::default()
        }
    }

    fn rule(&self) -> String {
        if !self.invert_triggers {
            return format!(
                "train at most {} candidates on the tuning split, each from the original weights for at least \
                 {} optimiser steps (at most {MAX_CANDIDATE_EPOCHS} epochs); a candidate meets the targets when \
                 cos(W, W0) <= {} and every trigger probe that pushed >= {} of the original model's validation \
                 images into one class pushes <= {} into it; residual = max(cos - {}, push - {}); alpha {} first, \
                 then up threefold or by the secant aiming at residual -{AIM_PAST_TARGET} until one meets them, \
                 then secant steps back while the weakest that met them overshot by more than {OVERSHOOT}; choose \
                 the most accurate on validation among those that met them, else the lowest residual; warn if the \
                 choice did not meet them or loses more than {} validation points",
                self.max_candidates,
                self.min_steps,
                self.cosine_target,
                self.suspect_push_rate,
                self.suspect_push_target,
                self.cosine_target,
                self.suspect_push_target,
                self.start_alpha,
                self.max_validation_drop_points
            );
        }
        let gentle = if self.gentle_unlearn_classes > 0 && self.gentle_unlearn_share > 0.0 {
            format!(
                " Without evidence the candidate also unlearns the inverted patch triggers of the {} classes with the \
                 smallest masks (those read as the data's nature among them): {} of every tuning batch (warm-up \
                 included) carries them under the images' own labels.",
                self.gentle_unlearn_classes, self.gentle_unlearn_share
            )
        } else {
            String::new()
        };
        let sharpness = match self.sharpness_radius {
            Some(radius) if self.sharpness_unlearn_share > 0.0 => format!(
                " When every candidate of the ladder left the evidence standing: one more at its strongest alpha \
                 whose tuning is sharpness-aware (ASAM, radius {radius}) and unlearns the inverted triggers that \
                 count ({} of every tuning batch, warm-up included, under the images' own labels; judged by a \
                 fresh inversion, the next seed, the signals' shapes).",
                self.sharpness_unlearn_share
            ),
            Some(radius) => format!(
                " When every candidate of the ladder left the evidence standing: one more at its strongest alpha \
                 whose tuning is sharpness-aware (ASAM, radius {radius})."
            ),
            None => String::new(),
        };
        let inversion = &self.inversion;
        let unlearning = if self.unlearn_share > 0.0 {
            format!(
                " With trigger unlearning: {} of every tuning batch (warm-up included) carries the inverted \
                 triggers that count as evidence, under the images' own labels; each such candidate is inverted \
                 afresh (the next seed, the signals' shapes), and a signal's class that is still a suspected \
                 target there, and not the data's nature against the reference, counts with the fresh trigger's \
                 push.",
                self.unlearn_share
            )
        } else {
            String::new()
        };
        let mut evidence_tuning = match self.evidence_adversarial() {
            Some(adversarial) => format!(
                " With evidence every candidate also unlearns universal adversarial perturbations: one shared by \
                 the last {} of every tuning batch, grown in {} projected-gradient steps within an L2 ball of {} \
                 root-mean-square per input value to misclassify those images, learnt under their own labels.",
                adversarial.share, adversarial.steps, adversarial.radius
            ),
            None => String::new(),
        };
        if let Some(weight) = self.evidence_distillation {
            evidence_tuning += &format!(
                " With evidence every candidate distils from the original model at weight {weight} (its answers \
                 on the unstamped clean images, temperature {DISTILLATION_TEMPERATURE})."
            );
        }
        format!(
            "gather evidence on the original model: trigger probes pushing >= {} of the validation images into one \
             class, and a trigger inverted per class ({} steps on at most {} tuning images) whose mask is <= {} of \
             the other classes' median{} and pushes >= {} of the validation images. Against the same architecture \
             trained from scratch on the tuning images ({} steps), which holds no backdoor: a probe that pushes it \
             at least {REFERENCE_TRANSFER} as hard, and an inverted trigger whose mask is at least \
             {REFERENCE_MASK_SHARE} (a blend {REFERENCE_BLEND_SHARE}) of the one inverted the same way on it for \
             the class, in pixels, are the model's nature, not evidence (without a usable reference, a probe \
             whose push the first candidate keeps above {NATURAL_RETENTION} of its original rate, and an \
             inverted patch over {UNREFERENCED_MAX_MASK_RATIO} of the median). \
             Each candidate is trained from the original weights ({} linear-probe epochs of the new head{}, then at \
             least {} optimiser steps, at most {MAX_CANDIDATE_EPOCHS} epochs). Without evidence: one candidate, \
             alpha {}{}. With evidence: alpha {} first, then up threefold until a candidate \
             clears it, at most {} candidates: every suspect probe pushes <= {} and every inverted trigger <= {}{} \
             into its class; choose the most accurate on validation among those that cleared it, else the \
             closest; warn if the choice did not clear it or loses more than {} validation points.{sharpness}\
             {gentle}{unlearning}{evidence_tuning}",
            self.suspect_push_rate,
            inversion.steps,
            self.inversion_images,
            inversion.max_mask_ratio,
            if inversion.invert_blends {
                format!(
                    ", or a blend (one weight over the whole image) whose weight is <= {} of theirs",
                    inversion.max_blend_ratio
                )
            } else {
                String::new()
            },
            inversion.min_push,
            self.reference_steps,
            self.head_warmup_epochs,
            self.head_warmup_learning_rate.map(|lr| format!(" at learning rate {lr}")).unwrap_or_default(),
            self.min_steps,
            self.start_alpha,
            gentle_description(self.regime(false)),
            self.evidence_start_alpha,
            self.max_candidates,
            self.suspect_push_target,
            self.inverted_push_target,
            if self.inverted_push_reference_cap > self.inverted_push_target {
                format!(
                    " (or its push on the reference, when that is higher, up to {})",
                    self.inverted_push_reference_cap
                )
            } else {
                String::new()
            },
            self.max_validation_drop_points
        )
    }

    /// How far a candidate is from meeting the targets: the largest of its cosine's, its suspect
    /// probes' and its inverted triggers' pushes' distances above their targets. <= 0: all met.
    ///
    /// With trigger inversion on, the head's cosine is reported but no target: the LP-FT warm-up
    /// first aligns the new head with the features (cos +0.2 to +0.4 at alpha 0.01 on the fit
    /// half of the grid), so the cosine no longer says how far the features moved, and chasing
    /// -0.25 cost 2.7-3.7 points where the evidence was already cleared (docs/strength.md).
    fn residual(&self, cosine: f64, suspect_push: Option<f64>, inverted_push: Option<f64>) -> f64 {
        let shift = if self.invert_triggers { f64::NEG_INFINITY } else { cosine - self.cosine_target };
        let push = suspect_push.map_or(f64::NEG_INFINITY, |p| p - self.suspect_push_target);
        let inverted = inverted_push.map_or(f64::NEG_INFINITY, |p| p - self.inverted_push_target);
        shift.max(push).max(inverted)
    }

    /// The push a candidate must bring `signal` down to, to clear it: `suspect_push_target` for a
    /// probe; for an inverted trigger `inverted_push_target`, or its push on a usable reference
    /// when that is higher, up to `inverted_push_reference_cap`.
    fn push_target(&self, signal: &Signal, reference_usable: bool) -> f64 {
        if !signal.source.inverted() {
            return self.suspect_push_target;
        }
        self.natural_push(signal, reference_usable).unwrap_or(self.inverted_push_target)
    }

    /// An inverted trigger's push on a usable reference, capped at `inverted_push_reference_cap`,
    /// when that is above `inverted_push_target` (`Signal::natural_push`).
    fn natural_push(&self, signal: &Signal, reference_usable: bool) -> Option<f64> {
        signal
            .reference_push
            .filter(|_| reference_usable && signal.source.inverted())
            .map(|reference| reference.min(self.inverted_push_reference_cap))
            .filter(|&natural| natural > self.inverted_push_target)
    }

    /// A validation drop, in points, is within `max_validation_drop_points` (floating-point noise
    /// aside).
    fn within_accuracy_budget(&self, drop: f64) -> bool {
        drop <= self.max_validation_drop_points + DROP_TOLERANCE
    }

    /// The judge's rule once the evidence is in: with a signal that counts, the search from
    /// `evidence_start_alpha`; without, one gentle candidate at `start_alpha`.
    fn given_evidence(&self, evidence: bool) -> AutoStrength {
        if evidence {
            AutoStrength { start_alpha: self.evidence_start_alpha, ..self.clone() }
        } else {
            AutoStrength { max_candidates: 1, sharpness_radius: None, ..self.clone() }
        }
    }

    /// The next candidate after `tried` (alpha, residual): the ladder's next alpha, then, when
    /// the ladder is done and none of its candidates met the targets, the sharpness-aware
    /// candidate at its strongest alpha (alpha, and the radius); None when the search is done.
    fn next_candidate(&self, tried: &[(f64, f64)]) -> Option<(f64, Option<f64>)> {
        if let Some(alpha) = self.next_alpha(tried) {
            return Some((alpha, None));
        }
        let radius = self.sharpness_radius.filter(|_| self.invert_triggers && !self.explore)?;
        let strongest = tried.iter().map(|t| t.0).reduce(f64::max)?;
        (tried.len() == self.max_candidates && tried.iter().all(|t| t.1 > 0.0)).then_some((strongest, Some(radius)))
    }

    /// The next alpha to try after `tried` (alpha, residual), or None when the search is done.
    fn next_alpha(&self, tried: &[(f64, f64)]) -> Option<f64> {
        if tried.len() >= self.max_candidates {
            return None;
        }
        if self.explore {
            return Some(self.start_alpha * FIRST_STEP_UP.powi(tried.len() as i32));
        }
        let aim = -AIM_PAST_TARGET;
        let reached = |r: f64| r <= 0.0;
        // The weakest alpha that reached the target, and the strongest that did not.
        let high = tried.iter().filter(|t| reached(t.1)).min_by(|a, b| a.0.total_cmp(&b.0));
        let low = tried.iter().filter(|t| !reached(t.1)).max_by(|a, b| a.0.total_cmp(&b.0));
        let secant = |(a0, c0): (f64, f64), (a1, c1): (f64, f64)| a0 + (aim - c0) * (a1 - a0) / (c1 - c0);
        match (low, high) {
            (_, Some(&(_, r))) if r >= -OVERSHOOT => None,
            // The evidence is cleared: a gentler alpha would cost a candidate to save little.
            (_, Some(_)) if self.invert_triggers => None,
            // A gentler alpha inside the bracket (or below the only point, with cos(0) taken as 0).
            (Some(&(a0, c0)), Some(&(a1, c1))) => {
                let margin = 0.1 * (a1 - a0);
                Some(secant((a0, c0), (a1, c1)).clamp(a0 + margin, a1 - margin))
            }
            // Through (0, -cosine_target): the head's cosine starts near 0 whatever the alpha.
            (None, Some(&(a, r))) => {
                let r0 = -self.cosine_target;
                Some((a * (aim - r0) / (r - r0)).clamp(a / MAX_STEP_UP, a / MIN_STEP_UP))
            }
            // With evidence, a threefold ladder: a signal's push is far from linear in alpha (on
            // the spent u10 the secant through 0.01 and 0.03 aimed at 0.045, which read as
            // cleared and left 2.5% real ASR where 0.09 left none).
            (Some(&(a1, _)), None) if self.invert_triggers => Some(a1 * FIRST_STEP_UP),
            (Some(&(a1, c1)), None) => {
                let below = tried.iter().filter(|t| t.0 < a1).max_by(|a, b| a.0.total_cmp(&b.0));
                let next = match below {
                    // The cosine fell from the weaker alpha to this one: extrapolate.
                    Some(&(a0, c0)) if c1 < c0 => secant((a0, c0), (a1, c1)),
                    _ => a1 * FIRST_STEP_UP,
                };
                Some(next.clamp(a1 * MIN_STEP_UP, a1 * MAX_STEP_UP))
            }
            (None, None) => Some(self.start_alpha),
        }
    }
}

/// How the rule names what sets the gentle candidate apart (empty: nothing does).
fn gentle_description(regime: CandidateRegime) -> String {
    let mut description = String::new();
    if regime.keep_head {
        description += " from the original head (no warm-up)";
    }
    if let Some(t) = regime.feature_interpolation {
        description += &format!(
            ", its features then set {t} of the way from the original weights to the tuned ones and its \
             normalisation statistics re-estimated on the tuning images"
        );
    }
    description
}

/// What sets a judge's candidate apart, given the evidence (`AutoStrength::regime`): without
/// evidence the gentle candidate's head and features, with evidence the adversarial unlearning
/// and the distillation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct CandidateRegime {
    /// From the original head (`Settings::keep_head`).
    keep_head: bool,
    /// The features scaled back towards the original (`Settings::feature_interpolation`).
    feature_interpolation: Option<f64>,
    /// Universal adversarial perturbations unlearnt (`Settings::adversarial_unlearning`); None:
    /// the base settings'.
    adversarial_unlearning: Option<AdversarialUnlearning>,
    /// Distillation from the original at this weight (`Settings::distillation`); None: the base
    /// settings'.
    distillation: Option<f64>,
}

/// One alpha tried by the automatic mode.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Candidate {
    /// Tuned from the original head rather than a re-initialised one (`Settings::keep_head`).
    #[serde(default)]
    pub head_kept: bool,
    /// The share of its tuning's change the candidate's features kept
    /// (`Settings::feature_interpolation`); null: all of it.
    #[serde(default)]
    pub feature_interpolation: Option<f64>,
    /// Weight of FST's <W, W0> term tried.
    pub alpha: f64,
    /// The radius of its sharpness-aware tuning (`AutoStrength::sharpness_radius`); null: plain.
    #[serde(default)]
    pub sharpness_radius: Option<f64>,
    /// The fraction of its tuning batches stamped with inverted triggers under the images' own
    /// labels (trigger unlearning); null: none.
    #[serde(default)]
    pub unlearn_share: Option<f64>,
    /// The universal adversarial perturbations its tuning unlearnt
    /// (`Settings::adversarial_unlearning`); null: none.
    #[serde(default)]
    pub adversarial_unlearning: Option<AdversarialUnlearning>,
    /// The weight of its distillation from the original model (`Settings::distillation`); null:
    /// none.
    #[serde(default)]
    pub distillation: Option<f64>,
    /// Tuning epochs, stretched on a small clean set to reach `min_steps`.
    pub epochs: usize,
    /// Initial learning rate of the tuning.
    pub learning_rate: f64,
    /// Accuracy on the validation split (absent when training diverged).
    pub validation_accuracy: Option<f64>,
    /// Original validation accuracy minus this candidate's, in points.
    pub validation_drop_points: Option<f64>,
    /// The drop's 95% confidence interval, in points: Newcombe's paired interval over the
    /// validation images both models classified (`stats::PairedCounts`). A few hundred images
    /// leave a point or two either way, which the choice between candidates cannot see past.
    /// Absent when training failed, and in reports written before fstgate measured it.
    #[serde(default)]
    pub validation_drop_points_95: Option<Interval>,
    /// cos(W, W0) of the head after the last epoch.
    pub head_cosine_to_original: Option<f64>,
    /// The highest push, on validation, of the suspect probes into their classes (absent when
    /// no probe was suspect).
    #[serde(default)]
    pub suspect_push: Option<f64>,
    /// The highest push, on validation, of the triggers inverted from the original model into
    /// their classes that count as evidence (absent when none does).
    #[serde(default)]
    pub inverted_push: Option<f64>,
    /// Every signal's push on this candidate's validation images, in the order of the
    /// evidence's `signals` (counting or not; an unlearned trigger's push raised to a fresh
    /// inversion's where that still suspects its class): which signal held a candidate back.
    /// Empty when training failed.
    #[serde(default)]
    pub signal_pushes: Vec<f64>,
    /// How far the candidate is from meeting the targets: the largest distance of its cosine
    /// (without inversion) and of each counting signal's push above its own target
    /// (`AutoStrength::residual`); <= 0: met. Absent when training failed.
    #[serde(default)]
    pub residual: Option<f64>,
    /// The attack success rate of the trigger the user named, on this candidate's validation
    /// images: a diagnostic for benchmarks, never used by the search.
    #[serde(default)]
    pub known_trigger_asr: Option<f64>,
    /// Met the targets: the suspect probes' and inverted triggers' pushes (and, without
    /// inversion, the head's cosine).
    pub reached_shift_target: bool,
    /// `validation_drop_points` is at most `max_validation_drop_points`.
    pub within_accuracy_budget: bool,
    /// Why the candidate has no figures (e.g. the loss diverged).
    pub failure: Option<String>,
    /// The highest push of the counting inverted triggers refitted to this candidate at their own
    /// size (`Signal::refit_push_after`); absent without such a trigger.
    #[serde(default)]
    pub refit_push: Option<f64>,
    /// The fresh inversion of this candidate that judges unlearned triggers, in seconds.
    #[serde(default)]
    pub reinversion_seconds: Option<f64>,
    /// Wall-clock time to train and judge the candidate, in seconds.
    pub seconds: f64,
}

/// What the automatic mode did, for the report.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StrengthSearch {
    /// The search space and rule the search ran with.
    pub settings: AutoStrength,
    /// The selection rule in words.
    pub rule: String,
    /// Clean images the candidates were tuned on.
    pub tuning_images: i64,
    /// Clean images held out to validate them.
    pub validation_images: i64,
    /// The original (unpurified) model's accuracy on the validation split.
    pub original_validation_accuracy: f64,
    /// The trigger probes that pushed at least `suspect_push_rate` of the original model's
    /// validation images into one class, with that class and rate.
    #[serde(default)]
    pub suspect_probes: Vec<ProbeResult>,
    /// The backdoor evidence the search worked from, followed to the chosen candidate.
    #[serde(default)]
    pub evidence: Option<Evidence>,
    /// Inverted triggers stamped on every candidate's tuning batches (trigger unlearning, the
    /// signals of the evidence that count; 0: none).
    #[serde(default)]
    pub unlearned_triggers: usize,
    /// Without evidence: the classes whose inverted patch triggers the gentle candidate unlearned
    /// (`AutoStrength::gentle_unlearn_classes`; empty: none).
    #[serde(default)]
    pub gentle_unlearned_classes: Vec<i64>,
    /// In the order tried.
    pub candidates: Vec<Candidate>,
    /// The relearning check of the chosen candidate (`AutoStrength::relearn_epochs`); absent when
    /// off.
    #[serde(default)]
    pub relearning: Option<RelearningCheck>,
    /// Index of the chosen candidate in `candidates`; its weights are the output.
    pub chosen: usize,
    /// Why the chosen candidate won, in words.
    pub reason: String,
    /// Wall-clock time of the whole search, in seconds.
    pub seconds: f64,
}

/// What the relearning check of the chosen candidate found: its frozen features under a fresh
/// head learnt from the tuning images (`purification::relearn_head`); each signal's push under
/// that head is in `Signal::relearned_push`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RelearningCheck {
    /// Epochs the fresh head was trained.
    pub epochs: usize,
    /// Its initial learning rate.
    pub learning_rate: f64,
    /// Validation accuracy under the fresh head: how far it got towards a working classifier.
    pub validation_accuracy: f64,
    /// The attack success rate of the trigger the user named, on the validation images, under
    /// the fresh head: a diagnostic for benchmarks, never used by the search (compare the chosen
    /// candidate's `Candidate::known_trigger_asr`).
    pub known_trigger_asr: Option<f64>,
    /// Wall-clock time of the check, in seconds.
    pub seconds: f64,
}

/// The result of purifying with a strength.
pub struct Purified {
    /// The settings of the model that was kept (for auto: the chosen alpha).
    pub settings: Settings,
    /// The kept model's epoch records.
    pub epochs: Vec<EpochRecord>,
    /// What the automatic mode did; absent with fixed settings.
    pub search: Option<StrengthSearch>,
    /// Things the report should tell the reader (e.g. no candidate met the targets).
    pub warnings: Vec<String>,
}

/// Purifies `model` in place: with `base` as given, or with the alpha the automatic mode chooses
/// (`base` supplies everything else). On error the model must not be saved.
///
/// `known_trigger`, when the user named the attack, is measured on every candidate's validation
/// images for the report (`Candidate::known_trigger_asr`, to fit and check the rule on
/// benchmarks); the search never looks at it.
pub fn purify_with_strength(
    model: &mut Classifier,
    clean: &Dataset,
    input: &InputSpec,
    base: &Settings,
    strength: &Strength,
    known_trigger: Option<(&Trigger, i64)>,
    progress: &dyn Progress,
) -> Result<Purified> {
    match strength {
        Strength::Fixed => Ok(Purified {
            settings: base.clone(),
            epochs: purify(model, clean, input, base, progress)?,
            search: None,
            warnings: Vec::new(),
        }),
        Strength::Auto(auto) => search(model, clean, input, base, auto, known_trigger, progress),
    }
}

/// Whether each validation image is classified right (in order), and the accuracy they make.
fn validation_outcomes(model: &mut Classifier, validation: &Dataset, input: &InputSpec) -> Result<(Vec<bool>, f64)> {
    let plan = Plan { input: input.clone(), attack: None, probes: Vec::new(), batch_size: 512 };
    let metrics = evaluation::evaluate(model, validation, &plan)?;
    Ok((metrics.clean_correct, metrics.clean_accuracy))
}

fn validation_accuracy(model: &mut Classifier, validation: &Dataset, input: &InputSpec) -> Result<f64> {
    Ok(validation_outcomes(model, validation, input)?.1)
}

/// The (probe, class) pushes of the original model at or above `threshold`: the triggers a
/// backdoor answers to, as indices into `rates` (`[probe][class]`).
fn suspects(rates: &[Vec<f64>], threshold: f64) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    for (probe, classes) in rates.iter().enumerate() {
        for (class, rate) in classes.iter().enumerate() {
            if *rate >= threshold {
                found.push((probe, class));
            }
        }
    }
    found
}

/// What a candidate showed of the evidence, in words.
fn candidate_evidence(c: &Candidate) -> String {
    let mut parts = Vec::new();
    if let Some(push) = c.suspect_push {
        parts.push(format!("suspect probes push {:.1}%", 100.0 * push));
    }
    if let Some(push) = c.inverted_push {
        parts.push(format!("inverted triggers push {:.1}%", 100.0 * push));
    }
    parts.join("; ")
}

/// The attack success rate of the trigger the user named on `validation`, for the report; none
/// without one.
fn known_trigger_asr(
    model: &mut Classifier,
    validation: &Dataset,
    input: &InputSpec,
    known_trigger: Option<(&Trigger, i64)>,
) -> Result<Option<f64>> {
    let Some((trigger, target)) = known_trigger else { return Ok(None) };
    let plan = Plan {
        input: input.clone(),
        attack: Some(Attack::Trigger { trigger: trigger.clone(), target }),
        probes: Vec::new(),
        batch_size: 512,
    };
    Ok(evaluation::evaluate(model, validation, &plan)?.attack.map(|a| a.attack_success_rate))
}

/// What the relearning check measures: the signals' triggers, in the signals' order (the suspect
/// probes, then the inverted triggers), and the trigger the user named.
struct CheckedTriggers<'a> {
    probes: &'a Plan,
    suspect_pairs: &'a [(usize, usize)],
    inverted: &'a [InvertedTrigger],
    known: Option<(&'a Trigger, i64)>,
}

/// The relearning check of the model as it stands (the chosen candidate): a fresh head learnt
/// on its frozen features from `tuning` (`relearn_head`), then the validation accuracy, every
/// signal's push and the named trigger's success rate under it. The model is restored after,
/// whatever happens.
fn relearning_check(
    model: &mut Classifier,
    tuning: &Dataset,
    validation: &Dataset,
    input: &InputSpec,
    relearning: &Relearning,
    triggers: &CheckedTriggers,
    progress: &dyn Progress,
) -> Result<(RelearningCheck, Vec<f64>)> {
    let started = Instant::now();
    let chosen = model.snapshot()?;
    let measured = (|| {
        relearn_head(model, tuning, input, relearning, progress)?;
        let accuracy = validation_accuracy(model, validation, input)?;
        let pushes =
            signal_pushes(model, validation, input, triggers.probes, triggers.suspect_pairs, triggers.inverted)?;
        Ok::<_, Error>((accuracy, pushes, known_trigger_asr(model, validation, input, triggers.known)?))
    })();
    model.restore(&chosen)?;
    let (validation_accuracy, pushes, known_trigger_asr) = measured?;
    let check = RelearningCheck {
        epochs: relearning.epochs,
        learning_rate: relearning.learning_rate,
        validation_accuracy,
        known_trigger_asr,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((check, pushes))
}

/// The push of every signal on the model as it stands, in the order the signals were built:
/// the suspect probes, then the inverted triggers.
fn signal_pushes(
    model: &mut Classifier,
    validation: &Dataset,
    input: &InputSpec,
    probes: &Plan,
    suspect_pairs: &[(usize, usize)],
    inverted: &[InvertedTrigger],
) -> Result<Vec<f64>> {
    let mut pushes = Vec::with_capacity(suspect_pairs.len() + inverted.len());
    if !suspect_pairs.is_empty() {
        let rates = evaluation::probe_push_rates(model, validation, probes)?;
        pushes.extend(suspect_pairs.iter().map(|&(probe, class)| rates[probe][class]));
    }
    for trigger in inverted {
        pushes.push(evaluation::inverted_push_rate(model, validation, input, trigger)?);
    }
    Ok(pushes)
}

/// Per inverted trigger, in order: where `refitted(i)`, its push on `validation` once refitted to
/// `model` at its own size on `optimisation` (`evaluation::refit`), else none; none at all
/// without images to refit on (the refit residual off, or no inversion).
fn refit_pushes(
    model: &mut Classifier,
    optimisation: Option<&Dataset>,
    validation: &Dataset,
    input: &InputSpec,
    settings: &InversionSettings,
    inverted: &[InvertedTrigger],
    refitted: impl Fn(usize) -> bool,
) -> Result<Vec<Option<f64>>> {
    let Some(optimisation) = optimisation else {
        return Ok(Vec::new());
    };
    let mut pushes = Vec::with_capacity(inverted.len());
    for (i, trigger) in inverted.iter().enumerate() {
        pushes.push(if refitted(i) {
            let refit = evaluation::refit(model, optimisation, input, trigger, settings)?;
            Some(evaluation::inverted_push_rate(model, validation, input, &refit)?)
        } else {
            None
        });
    }
    Ok(pushes)
}

/// The trigger shapes among `triggers`, masks first.
fn shapes_of<'t>(triggers: impl Iterator<Item = &'t InvertedTrigger> + Clone) -> Vec<TriggerShape> {
    [TriggerShape::Patch, TriggerShape::Blend]
        .into_iter()
        .filter(|shape| triggers.clone().any(|trigger| trigger.shape == *shape))
        .collect()
}

/// Stamps `trigger` on a batch, for `training::Unlearning`.
fn stamper(trigger: &InvertedTrigger) -> impl Fn(&tch::Tensor) -> Result<tch::Tensor> + '_ {
    move |images| Ok(trigger.apply(images))
}

/// Unlearning with `stampers` on `share` of every batch; None without a stamper.
fn unlearning_with<F: Fn(&tch::Tensor) -> Result<tch::Tensor>>(stampers: &[F], share: f64) -> Option<Unlearning<'_>> {
    (!stampers.is_empty()).then(|| Unlearning { share, stamps: stampers.iter().map(|f| f as Stamp).collect() })
}

/// Candidates compare by: met the targets (then the more accurate on validation, then the
/// stronger: with nothing to choose on accuracy, the larger shift is the safer), else the lower
/// residual.
fn better(a: &Candidate, b: &Candidate) -> bool {
    let accuracy = |c: &Candidate| c.validation_accuracy.unwrap_or(f64::NEG_INFINITY);
    let residual = |c: &Candidate| c.residual.unwrap_or(f64::INFINITY);
    match (a.reached_shift_target, b.reached_shift_target) {
        (true, false) => true,
        (false, true) => false,
        (true, true) => accuracy(a) > accuracy(b) || (accuracy(a) == accuracy(b) && a.alpha > b.alpha),
        (false, false) => residual(a) < residual(b),
    }
}

/// Without a usable reference, the model's own baseline: a probe whose push the first candidate
/// did not move (`pushes`, in `signals`' order) is its nature. Not so for inverted triggers, whose
/// reading (`Signal::found`: the narrow screen counts) stands: ResNet-18 backdoors on the fit half
/// kept 72-86% of their inverted push under the first candidates, as natural shortcuts do, so an
/// inverted trigger counts until it is cleared. The reference, where there is one, decides
/// alone: a ResNet-18 WaNet backdoor's probes kept their push through alpha 0.01 and moved the
/// reference by 1-5% (docs/strength.md).
fn read_probes_by_retention(signals: &mut [Signal], pushes: &[f64]) {
    for (signal, push) in signals.iter_mut().zip(pushes) {
        if signal.source == SignalSource::Probe {
            signal.natural = *push > NATURAL_RETENTION * signal.push_before;
        }
    }
}

/// The inverted patch triggers of the `count` classes with the smallest masks against the median
/// (easiest first), whether or not the screen named them: the gentle candidate runs only when no
/// signal counts, so a class the screen named is one the reference read as the data's shortcut,
/// and a backdoor into that class (k05's patch into Fashion-MNIST's "bag") is as easy to reach
/// as the shortcut (version 14; versions 8-13 left the narrow screen's suspects out).
fn easiest_patches(summary: &InversionSummary, triggers: &[InvertedTrigger], count: usize) -> Vec<InvertedTrigger> {
    let ratio = |t: &InvertedTrigger| summary.classes[t.class as usize].mask_ratio;
    let mut patches: Vec<&InvertedTrigger> = triggers.iter().filter(|t| t.shape == TriggerShape::Patch).collect();
    patches.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
    patches.into_iter().take(count).map(InvertedTrigger::shallow_clone).collect()
}

fn search(
    model: &mut Classifier,
    clean: &Dataset,
    input: &InputSpec,
    base: &Settings,
    auto: &AutoStrength,
    known_trigger: Option<(&Trigger, i64)>,
    progress: &dyn Progress,
) -> Result<Purified> {
    let started = Instant::now();
    auto.validate(base)?;
    base.validate()?;
    let mut warnings = Vec::new();
    let (tuning, validation) = clean.balanced_split(auto.validation_fraction, base.seed)?;
    if tuning.len() < 2 * model.num_classes {
        return Err(Error::Settings(format!(
            "{} clean images leave {} to tune on after holding out {} for validation: too few for \
             the automatic strength (use --strength fixed with explicit settings, or more clean data)",
            clean.len(),
            tuning.len(),
            validation.len()
        )));
    }
    if validation.len() < SMALL_VALIDATION {
        warnings.push(format!(
            "the automatic strength validates on only {} images: its accuracy estimates are coarse \
             (one image is {:.2} points); the test-set figures are the ones to trust",
            validation.len(),
            100.0 / validation.len() as f64
        ));
    }
    let steps_per_epoch = (tuning.len() as usize).div_ceil(base.batch_size as usize);
    let candidate_epochs = base.epochs.max(auto.min_steps.div_ceil(steps_per_epoch).min(MAX_CANDIDATE_EPOCHS));
    let original = model.snapshot()?;
    let (original_outcomes, original_accuracy) = validation_outcomes(model, &validation, input)?;
    let probes = Plan { input: input.clone(), attack: None, probes: evaluation::standard_probes(), batch_size: 512 };
    let original_pushes = evaluation::probe_push_rates(model, &validation, &probes)?;
    let suspect_pairs = suspects(&original_pushes, auto.suspect_push_rate);
    let validation_labels = validation.labels_vec();
    let images_outside = |class: i64| validation_labels.iter().filter(|&&l| l != class).count() as i64;
    let suspect_probes: Vec<ProbeResult> = suspect_pairs
        .iter()
        .map(|&(probe, class)| ProbeResult {
            trigger: probes.probes[probe].to_string(),
            class: class as i64,
            rate: original_pushes[probe][class],
            images: images_outside(class as i64),
        })
        .collect();
    let mut signals: Vec<Signal> = suspect_probes
        .iter()
        .map(|p| Signal::found(SignalSource::Probe, p.trigger.clone(), p.class, p.rate, p.images, None))
        .collect();
    let inversion_settings = InversionSettings { seed: base.seed, ..auto.inversion.clone() };
    let optimisation = if auto.invert_triggers {
        Some(tuning.balanced_count(auto.inversion_images.min(tuning.len()), base.seed)?)
    } else {
        None
    };
    // The images the refit residual refits inverted triggers on, when it is asked for.
    let refit_images = optimisation.as_ref().filter(|_| auto.refit_residual);
    let (inversion, inverted, easiest) = if let Some(optimisation) = &optimisation {
        let (summary, triggers) = evaluation::invert(model, optimisation, &validation, input, &inversion_settings)?;
        tracing::info!(suspected = ?summary.suspected_targets, seconds = summary.seconds, "trigger inversion");
        let easiest = easiest_patches(&summary, &triggers, auto.gentle_unlearn_classes);
        let suspected: Vec<InvertedTrigger> = triggers.into_iter().filter(|t| summary.suspects(t)).collect();
        for trigger in &suspected {
            let class = &summary.family(trigger.shape).0[trigger.class as usize];
            let description = match trigger.shape {
                TriggerShape::Patch => format!(
                    "inverted trigger ({:.1}-pixel mask, {:.2} of the median)",
                    class.mask_pixels, class.mask_ratio
                ),
                TriggerShape::Blend => format!(
                    "inverted blend ({:.1}% of the image, {:.2} of the median)",
                    100.0 * summary.share_of_image(class).unwrap_or(f64::NAN),
                    class.mask_ratio
                ),
            };
            signals.push(Signal::found(
                SignalSource::inverted_as(trigger.shape),
                description,
                trigger.class,
                class.push,
                images_outside(trigger.class),
                Some(class),
            ));
        }
        (Some(summary), suspected, easiest)
    } else {
        (None, Vec::new(), Vec::new())
    };
    // Every signal against a model that holds no backdoor: what it makes of the data alone.
    let reference = if auto.reference_steps > 0 && !signals.is_empty() {
        let (epochs, seconds) =
            reference::train_from_scratch(model, &tuning, input, base, auto.reference_steps, progress)?;
        let accuracy = validation_accuracy(model, &validation, input)?;
        let pushes = signal_pushes(model, &validation, input, &probes, &suspect_pairs, &inverted)?;
        // Inverted triggers are judged by size: the reference inverted the same way, for the
        // shapes of the signals only.
        let shapes = shapes_of(inverted.iter());
        let reference_inversion = match &optimisation {
            Some(optimisation) if !inverted.is_empty() => {
                let (summary, _) =
                    evaluation::invert_shapes(model, optimisation, &validation, input, &inversion_settings, &shapes)?;
                tracing::info!(seconds = summary.seconds, "trigger inversion on the reference");
                Some(summary)
            }
            _ => None,
        };
        // What a trigger of each inverted signal's size does to a model without a backdoor.
        let refit_pushes =
            refit_pushes(model, refit_images, &validation, input, &inversion_settings, &inverted, |_| true)?;
        model.restore(&original)?;
        let usable = accuracy >= reference::MIN_REFERENCE_SHARE * original_accuracy;
        for (signal, push) in signals.iter_mut().zip(pushes) {
            signal.judge_against_reference(push, usable);
            if let (Some(shape), Some(summary)) = (signal.source.shape(), &reference_inversion) {
                signal.judge_mask_against_reference(&summary.family(shape).0[signal.class as usize], usable);
            }
        }
        for (signal, refit) in signals[suspect_pairs.len()..].iter_mut().zip(refit_pushes) {
            signal.reference_refit_push = refit;
        }
        tracing::info!(accuracy, usable, seconds, "from-scratch reference");
        Some(Reference {
            steps: auto.reference_steps,
            epochs,
            validation_accuracy: accuracy,
            usable,
            seconds,
            inversion: reference_inversion,
        })
    } else {
        None
    };
    // Trigger unlearning: the inverted triggers that count are stamped on the candidates' batches
    // (probes never are: their pushes stay an independent measure).
    let probe_signals = suspect_pairs.len();
    let counting_inverted = |share: f64| -> Vec<usize> {
        if share > 0.0 {
            (0..inverted.len()).filter(|&i| signals[probe_signals + i].counts()).collect()
        } else {
            Vec::new()
        }
    };
    let unlearned = counting_inverted(auto.unlearn_share);
    // The sharpness-aware candidate unlearns them at its own share, when it has one.
    let sharpness_share =
        if auto.sharpness_unlearn_share > 0.0 { auto.sharpness_unlearn_share } else { auto.unlearn_share };
    let sharpness_unlearned = counting_inverted(sharpness_share);
    // Without evidence, the gentle candidate unlearns the easiest classes' inverted patches
    // instead (the two never both apply: `unlearned` holds only signals that count).
    let gentle_unlearned: Vec<&InvertedTrigger> =
        if signals.iter().any(Signal::counts) || auto.gentle_unlearn_share == 0.0 {
            Vec::new()
        } else {
            easiest.iter().collect()
        };
    let (stamped, share): (Vec<&InvertedTrigger>, f64) = if gentle_unlearned.is_empty() {
        (unlearned.iter().map(|&i| &inverted[i]).collect(), auto.unlearn_share)
    } else {
        (gentle_unlearned.clone(), auto.gentle_unlearn_share)
    };
    let stampers: Vec<_> = stamped.iter().map(|&trigger| stamper(trigger)).collect();
    let unlearning = unlearning_with(&stampers, share);
    let sharpness_stampers: Vec<_> = sharpness_unlearned.iter().map(|&i| stamper(&inverted[i])).collect();
    let sharpness_unlearning = unlearning_with(&sharpness_stampers, sharpness_share);
    let fresh_inversion = InversionSettings { seed: base.seed.wrapping_add(1), ..inversion_settings.clone() };
    let reference_usable = reference.as_ref().is_some_and(|r| r.usable);
    // Without evidence of a backdoor the gate still purifies, gently: one candidate at the first
    // alpha. With evidence, the search goes on until the signals are silenced.
    let gentle = auto.given_evidence(false);
    let evidence_rule = auto.given_evidence(true);
    let mut candidates: Vec<Candidate> = Vec::new();
    // The best candidate so far and its weights, unless it is the model as it stands.
    let mut best: Option<(usize, Vec<EpochRecord>, Option<Snapshot>)> = None;
    let mut best_fresh_ratios: Vec<Option<f64>> = Vec::new();
    let mut best_refit_pushes: Vec<Option<f64>> = Vec::new();
    let mut tried = Vec::new();
    let rule = |signals: &[Signal]| {
        if auto.explore || !auto.invert_triggers {
            auto
        } else if signals.iter().any(Signal::counts) {
            &evidence_rule
        } else {
            &gentle
        }
    };
    while let Some((alpha, sharpness_radius)) = rule(&signals).next_candidate(&tried) {
        if !candidates.is_empty() {
            model.restore(&original)?;
        }
        let regime = auto.regime(signals.iter().any(Signal::counts));
        let settings = auto.candidate_settings(base, alpha, candidate_epochs, regime, sharpness_radius);
        // What this candidate unlearns, and which of the signals a fresh inversion must judge.
        let (candidate_unlearning, candidate_unlearned) = match sharpness_radius {
            Some(_) => (&sharpness_unlearning, &sharpness_unlearned),
            None => (&unlearning, &unlearned),
        };
        // A candidate that unlearns adversarial perturbations unlearns every inverted trigger
        // inside its ball with them, so every one that counts is judged afresh too: on the lab's
        // checker model the inverted trigger's push fell to 3.7% while the real one kept 6.9%.
        let judged_afresh: Vec<usize> = if settings.adversarial_unlearning.is_some() {
            (0..inverted.len()).filter(|&i| signals[probe_signals + i].counts()).collect()
        } else {
            candidate_unlearned.clone()
        };
        let afresh_shapes = shapes_of(judged_afresh.iter().map(|&i| &inverted[i]));
        let candidate_started = Instant::now();
        let mut candidate = Candidate {
            head_kept: regime.keep_head,
            feature_interpolation: regime.feature_interpolation,
            adversarial_unlearning: settings.adversarial_unlearning,
            distillation: settings.distillation,
            alpha,
            sharpness_radius,
            unlearn_share: candidate_unlearning.as_ref().map(|u| u.share),
            epochs: settings.epochs,
            learning_rate: settings.learning_rate,
            validation_accuracy: None,
            validation_drop_points: None,
            validation_drop_points_95: None,
            head_cosine_to_original: None,
            suspect_push: None,
            inverted_push: None,
            signal_pushes: Vec::new(),
            residual: None,
            known_trigger_asr: None,
            reached_shift_target: false,
            within_accuracy_budget: false,
            failure: None,
            refit_push: None,
            reinversion_seconds: None,
            seconds: 0.0,
        };
        // Every epoch is measured on validation too: the tuning curve in the report.
        let records = match purify_unlearning(
            model,
            &tuning,
            input,
            &settings,
            candidate_unlearning.clone(),
            Some(&validation),
            progress,
        ) {
            Ok(records) => records,
            // A stronger push will not tame a learning rate that diverges: stop here.
            Err(Error::NonFinite(reason)) => {
                candidate.failure = Some(reason);
                candidate.seconds = candidate_started.elapsed().as_secs_f64();
                candidates.push(candidate);
                break;
            }
            Err(e) => return Err(e),
        };
        // Measured image by image (the tuning curve's last point gives only the accuracy), to pair
        // the candidate with the original model on the same images.
        let last = records.last();
        let (outcomes, accuracy) = validation_outcomes(model, &validation, input)?;
        let drop = 100.0 * (original_accuracy - accuracy);
        candidate.validation_drop_points_95 = PairedCounts::count(&original_outcomes, &outcomes)
            .and_then(|counts| counts.difference_95())
            .map(|(_, interval)| interval.scaled(100.0));
        // FST always has a reference head, so every epoch records the cosine.
        let cosine = last.and_then(|r| r.head_cosine_to_original).unwrap_or(f64::NAN);
        candidate.validation_accuracy = Some(accuracy);
        candidate.validation_drop_points = Some(drop);
        let mut pushes = signal_pushes(model, &validation, input, &probes, &suspect_pairs, &inverted)?;
        let refits = refit_pushes(model, refit_images, &validation, input, &inversion_settings, &inverted, |i| {
            signals[probe_signals + i].counts()
        })?;
        candidate.refit_push = refits.iter().flatten().copied().reduce(f64::max);
        let mut fresh_ratios = vec![None; signals.len()];
        if let (false, Some(optimisation)) = (judged_afresh.is_empty(), &optimisation) {
            // The unlearned triggers' own pushes fall by construction: what is left is judged by
            // a fresh inversion, with the detection's rule and the reference's mask for the class.
            let (summary, _) =
                evaluation::invert_shapes(model, optimisation, &validation, input, &fresh_inversion, &afresh_shapes)?;
            candidate.reinversion_seconds = Some(summary.seconds);
            for &i in &judged_afresh {
                let signal = &signals[probe_signals + i];
                let (classes, suspected) = summary.family(inverted[i].shape);
                let fresh = &classes[signal.class as usize];
                fresh_ratios[probe_signals + i] = Some(fresh.mask_ratio);
                if suspected.contains(&signal.class)
                    && !signal.natural_at(fresh.mask_pixels, fresh.mask_ratio, reference_usable)
                {
                    pushes[probe_signals + i] = pushes[probe_signals + i].max(fresh.push);
                }
            }
        }
        if candidates.is_empty() && !reference_usable {
            read_probes_by_retention(&mut signals, &pushes);
        }
        let counted = |inverted: bool| {
            signals
                .iter()
                .zip(&pushes)
                .filter(|(s, _)| s.counts() && s.source.inverted() == inverted)
                .map(|(_, p)| *p)
                .reduce(f64::max)
        };
        let suspect_push = counted(false);
        let inverted_push = counted(true);
        // The residual: the cosine's distance from its target, and each counting signal's push
        // above its own target (`push_target`: for an inverted trigger, its push on the reference
        // where that is higher).
        let above_targets = signals
            .iter()
            .zip(&pushes)
            .filter(|(s, _)| s.counts())
            .map(|(s, p)| p - auto.push_target(s, reference_usable))
            .fold(f64::NEG_INFINITY, f64::max);
        let residual = rule(&signals).residual(cosine, None, None).max(above_targets);
        candidate.head_cosine_to_original = Some(cosine);
        candidate.suspect_push = suspect_push;
        candidate.inverted_push = inverted_push;
        candidate.signal_pushes = pushes;
        candidate.residual = Some(residual);
        candidate.known_trigger_asr = known_trigger_asr(model, &validation, input, known_trigger)?;
        candidate.reached_shift_target = residual <= 0.0;
        candidate.within_accuracy_budget = auto.within_accuracy_budget(drop);
        candidate.seconds = candidate_started.elapsed().as_secs_f64();
        tracing::info!(
            alpha,
            validation_accuracy = accuracy,
            drop_points = drop,
            head_cosine = cosine,
            suspect_push,
            seconds = candidate.seconds,
            "strength candidate"
        );
        tried.push((alpha, residual));
        let improves = best.as_ref().is_none_or(|(b, _, _)| better(&candidate, &candidates[*b]));
        candidates.push(candidate);
        if improves {
            // A later candidate overwrites the model: keep these weights if there will be one.
            let more = rule(&signals).next_candidate(&tried).is_some();
            best = Some((candidates.len() - 1, records, if more { Some(model.snapshot()?) } else { None }));
            best_fresh_ratios = fresh_ratios;
            best_refit_pushes = refits;
        }
    }
    for (signal, refit) in signals[probe_signals..].iter_mut().zip(best_refit_pushes) {
        signal.refit_push_after = refit;
    }
    // The chosen candidate's pushes are the signals' pushes after purification.
    let best_pushes = best.as_ref().map_or(&[][..], |(i, _, _)| &candidates[*i].signal_pushes[..]);
    for ((signal, push), fresh_ratio) in signals.iter_mut().zip(best_pushes).zip(best_fresh_ratios) {
        signal.push_after = Some(*push);
        signal.purified_mask_ratio = fresh_ratio;
        signal.push_after_upper_95 = Some(wilson_upper_95(*push, signal.images));
        signal.cleared = *push <= auto.push_target(signal, reference_usable);
        signal.natural_push = auto.natural_push(signal, reference_usable);
    }
    let Some((chosen, epochs, snapshot)) = best else {
        let failure = candidates.first().and_then(|c| c.failure.clone()).unwrap_or_default();
        return Err(Error::NonFinite(format!("every strength candidate failed: {failure}")));
    };
    if chosen + 1 != candidates.len() {
        model.restore(snapshot.as_ref().expect("an earlier best candidate was snapshotted"))?;
    }
    let relearning = if auto.relearn_epochs > 0 {
        let relearning = Relearning {
            epochs: auto.relearn_epochs,
            learning_rate: RELEARN_LEARNING_RATE,
            batch_size: base.batch_size,
            seed: base.seed,
        };
        let triggers = CheckedTriggers {
            probes: &probes,
            suspect_pairs: &suspect_pairs,
            inverted: &inverted,
            known: known_trigger,
        };
        let (check, pushes) = relearning_check(model, &tuning, &validation, input, &relearning, &triggers, progress)?;
        for (signal, push) in signals.iter_mut().zip(pushes) {
            signal.relearned_push = Some(push);
        }
        tracing::info!(
            validation_accuracy = check.validation_accuracy,
            known_trigger_asr = check.known_trigger_asr,
            seconds = check.seconds,
            "relearning check"
        );
        Some(check)
    } else {
        None
    };
    let evidence = Evidence::conclude(inversion, reference, signals);
    let c = &candidates[chosen];
    let cosine = c.head_cosine_to_original.unwrap_or(f64::NAN);
    let drop = c.validation_drop_points.unwrap_or(f64::NAN);
    let push = match c.suspect_push {
        Some(push) => {
            format!(", suspect triggers push {:.1}% (target <= {}%)", 100.0 * push, 100.0 * auto.suspect_push_target)
        }
        None => String::new(),
    };
    let reason = if !evidence.backdoor_suspected {
        format!(
            "no evidence of a backdoor ({}): one gentle candidate, alpha {:.4}{} (cos {cosine:.3}), {drop:.2} \
             points below the original model on validation",
            evidence.reason,
            c.alpha,
            if c.head_kept { " from the original head" } else { "" }
        )
    } else if c.reached_shift_target && auto.invert_triggers {
        format!(
            "alpha {:.4} cleared the evidence ({}) and is the most accurate on validation of the candidates \
             that did ({drop:.2} points below the original model; budget {}; cos {cosine:.3})",
            c.alpha,
            candidate_evidence(c),
            auto.max_validation_drop_points
        )
    } else if c.reached_shift_target {
        format!(
            "alpha {:.4} met the targets (cos {cosine:.3} <= {}{push}) and is the most accurate on validation of \
             the candidates that did ({drop:.2} points below the original model; budget {})",
            c.alpha, auto.cosine_target, auto.max_validation_drop_points
        )
    } else if auto.invert_triggers {
        format!(
            "no candidate cleared the evidence; alpha {:.4} came closest ({}), for {drop:.2} points of validation \
             accuracy",
            c.alpha,
            candidate_evidence(c)
        )
    } else {
        format!(
            "no candidate met the targets (cos <= {}, suspect triggers <= {}%); alpha {:.4} came closest \
             (cos {cosine:.3}{push}), for {drop:.2} points of validation accuracy",
            auto.cosine_target,
            100.0 * auto.suspect_push_target,
            c.alpha
        )
    };
    if evidence.backdoor_suspected && !c.reached_shift_target {
        warnings.push(if auto.invert_triggers {
            format!(
                "the automatic strength found no alpha that clears the backdoor evidence (best: alpha {:.4}, {}): \
                 the backdoor may remain; allow more candidates (--auto-candidates) or a larger first alpha \
                 (--auto-start-alpha)",
                c.alpha,
                candidate_evidence(c)
            )
        } else {
            format!(
                "the automatic strength found no alpha that shifts the head to cos <= {} and clears the suspect \
                 triggers (best: alpha {:.4}, cos {cosine:.3}{push}): the backdoor may remain; allow more epochs \
                 (--epochs), candidates (--auto-candidates) or a larger first alpha (--auto-start-alpha)",
                auto.cosine_target, c.alpha
            )
        });
    }
    if !c.within_accuracy_budget {
        warnings.push(format!(
            "the chosen strength (alpha {:.4}) costs {drop:.2} points of validation accuracy, over the \
             {}-point budget: no candidate that met the targets cost less",
            c.alpha, auto.max_validation_drop_points
        ));
    }
    let search = StrengthSearch {
        settings: auto.clone(),
        rule: auto.rule(),
        tuning_images: tuning.len(),
        validation_images: validation.len(),
        original_validation_accuracy: original_accuracy,
        suspect_probes,
        evidence: Some(evidence),
        unlearned_triggers: unlearned.len(),
        gentle_unlearned_classes: gentle_unlearned.iter().map(|t| t.class).collect(),
        reason,
        chosen,
        seconds: started.elapsed().as_secs_f64(),
        candidates,
        relearning,
    };
    let chosen_candidate = &search.candidates[chosen];
    let regime = CandidateRegime {
        keep_head: chosen_candidate.head_kept,
        feature_interpolation: chosen_candidate.feature_interpolation,
        adversarial_unlearning: chosen_candidate.adversarial_unlearning,
        distillation: chosen_candidate.distillation,
    };
    let settings = auto.candidate_settings(
        base,
        chosen_candidate.alpha,
        candidate_epochs,
        regime,
        chosen_candidate.sharpness_radius,
    );
    Ok(Purified { settings, epochs, search: Some(search), warnings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluation::InvertedClass;

    /// The rule before trigger inversion: the head's cosine is a target.
    fn legacy() -> AutoStrength {
        AutoStrength::default()
    }

    #[test]
    fn with_inversion_the_evidence_alone_is_the_target_and_the_first_clearing_candidate_stands() {
        let auto = AutoStrength::judge();
        // The cosine is no target: an unshifted head with cleared evidence has met them.
        assert!(auto.residual(0.3, Some(0.01), Some(-0.2)) <= 0.0);
        assert!(auto.residual(-0.9, None, Some(0.1)) > 0.0);
        assert!(auto.residual(-0.9, Some(0.05), None) > 0.0);
        // A shortfall falling with alpha: step up until cleared, then stop however far past.
        let gentle = auto.given_evidence(false);
        assert_eq!(simulate_with(&gentle, |_| 0.0, |_| None), [JUDGE_GENTLE_ALPHA], "no signal: one gentle candidate");
        let evidence = auto.given_evidence(true);
        let mut tried = Vec::new();
        while let Some(alpha) = evidence.next_alpha(&tried) {
            tried.push((alpha, evidence.residual(0.0, None, Some(0.5 - 10.0 * alpha))));
        }
        // A threefold ladder, whatever the secant through the pushes would say (u10's pushes fell
        // 0.41 -> 0.06: the secant aimed at 0.045, which left 2.5% real ASR).
        let alphas: Vec<f64> = tried.iter().map(|t| t.0).collect();
        let ladder = [JUDGE_EVIDENCE_START_ALPHA, 3.0 * JUDGE_EVIDENCE_START_ALPHA, 9.0 * JUDGE_EVIDENCE_START_ALPHA];
        assert!(alphas.len() == 3 && alphas.iter().zip(ladder).all(|(a, b)| (a - b).abs() < 1e-12), "{tried:?}");
        assert!(tried[2].1 < -OVERSHOOT, "cleared far past the target and stopped: {tried:?}");
        let mut tried = Vec::new();
        while let Some(alpha) = evidence.next_alpha(&tried) {
            tried.push((alpha, evidence.residual(0.0, None, Some(if alpha < 0.02 { 0.41 } else { 0.0 }))));
        }
        assert_eq!(tried.len(), 2, "cleared by the second rung: {tried:?}");
    }

    #[test]
    fn a_ladder_that_left_the_evidence_standing_ends_with_one_sharpness_aware_candidate() {
        let evidence = AutoStrength { sharpness_radius: Some(8.0), ..AutoStrength::judge() }.given_evidence(true);
        let mut tried = Vec::new();
        let mut plan = Vec::new();
        while let Some((alpha, radius)) = evidence.next_candidate(&tried) {
            plan.push((alpha, radius));
            tried.push((alpha, evidence.residual(0.0, None, Some(0.9))));
        }
        let ladder = [JUDGE_EVIDENCE_START_ALPHA, 3.0 * JUDGE_EVIDENCE_START_ALPHA, 9.0 * JUDGE_EVIDENCE_START_ALPHA];
        assert_eq!(plan.len(), 4, "{plan:?}");
        assert!(plan[..3].iter().zip(ladder).all(|((a, r), b)| (a - b).abs() < 1e-12 && r.is_none()), "{plan:?}");
        assert!((plan[3].0 - ladder[2]).abs() < 1e-12 && plan[3].1 == Some(8.0), "{plan:?}");
        // Cleared by the ladder's last rung: no sharpness-aware candidate.
        let cleared = [(ladder[0], 0.5), (ladder[1], 0.2), (ladder[2], -0.01)];
        assert_eq!(evidence.next_candidate(&cleared), None);
        // Without evidence, or with the radius off, the plan is as before.
        let gentle = AutoStrength { sharpness_radius: Some(8.0), ..AutoStrength::judge() }.given_evidence(false);
        assert_eq!(gentle.next_candidate(&[(JUDGE_GENTLE_ALPHA, 0.5)]), None);
        let off = AutoStrength { sharpness_radius: None, ..evidence.clone() };
        assert_eq!(off.next_candidate(&tried[..3]), None);
    }

    fn candidate(alpha: f64, reached: bool, cosine: f64, accuracy: f64) -> Candidate {
        Candidate {
            head_kept: false,
            feature_interpolation: None,
            alpha,
            sharpness_radius: None,
            unlearn_share: None,
            adversarial_unlearning: None,
            distillation: None,
            epochs: 1,
            learning_rate: 0.01,
            validation_accuracy: Some(accuracy),
            validation_drop_points: Some(0.0),
            validation_drop_points_95: None,
            head_cosine_to_original: Some(cosine),
            suspect_push: None,
            inverted_push: None,
            signal_pushes: Vec::new(),
            residual: Some(legacy().residual(cosine, None, None)),
            known_trigger_asr: None,
            reached_shift_target: reached,
            within_accuracy_budget: true,
            failure: None,
            refit_push: None,
            reinversion_seconds: None,
            seconds: 0.0,
        }
    }

    #[test]
    fn reaching_the_target_comes_first_then_validation_accuracy() {
        let auto = &legacy();
        assert!(better(&candidate(0.1, true, -0.3, 0.8), &candidate(0.05, false, -0.2, 0.9)));
        assert!(!better(&candidate(0.1, false, -0.5, 0.9), &candidate(0.2, true, -0.3, 0.8)));
        assert!(better(&candidate(0.1, true, -0.6, 0.86), &candidate(0.03, true, -0.3, 0.85)));
        assert!(better(&candidate(0.1, true, -0.6, 0.85), &candidate(0.03, true, -0.3, 0.85)));
        assert!(better(&candidate(0.1, false, -0.1, 0.8), &candidate(0.03, false, 0.05, 0.9)));
        // Neither met the targets: the one nearer to them wins, whichever target binds.
        let pushed = |alpha, cosine, push| Candidate {
            suspect_push: Some(push),
            residual: Some(auto.residual(cosine, Some(push), None)),
            ..candidate(alpha, false, cosine, 0.8)
        };
        assert!(better(&pushed(0.03, -0.9, 0.03), &pushed(0.01, -0.3, 0.1)));
        assert!(!better(&pushed(0.03, -0.9, 0.2), &pushed(0.01, -0.2, 0.03)));
    }

    #[test]
    fn without_a_reference_retention_reads_probes_and_leaves_inverted_triggers_as_found() {
        let class = |mask_ratio: f64| InvertedClass {
            class: 8,
            mask_pixels: 20.0,
            reached: true,
            push: 0.9,
            mask_ratio,
            anomaly_index: 0.0,
        };
        let found = |source, inverted: Option<&InvertedClass>| Signal::found(source, "t".into(), 8, 0.9, 500, inverted);
        let mut signals = vec![
            found(SignalSource::Probe, None),
            found(SignalSource::Probe, None),
            found(SignalSource::Inversion, Some(&class(0.2))),
            found(SignalSource::Inversion, Some(&class(0.44))),
        ];
        // Every push kept: the first probe persisted (nature), the second fell (a backdoor's).
        read_probes_by_retention(&mut signals, &[0.9, 0.1, 0.9, 0.9]);
        let natural: Vec<bool> = signals.iter().map(|s| s.natural).collect();
        // The narrow screen's inverted trigger counts; the wide band's stays the model's nature.
        assert_eq!(natural, [true, false, false, true]);
    }

    #[test]
    fn an_inverted_trigger_is_cleared_at_its_push_on_a_usable_reference_up_to_the_cap() {
        let judge = AutoStrength::judge();
        let signal = |source, reference: Option<f64>| {
            let mut signal = Signal::found(source, "t".into(), 0, 0.9, 500, None);
            if let Some(push) = reference {
                signal.judge_against_reference(push, true);
            }
            signal
        };
        let target = |s: &Signal, usable| judge.push_target(s, usable);
        // Below the fixed target the target stands; above it the reference's push, up to the cap.
        assert_eq!(target(&signal(SignalSource::Inversion, Some(0.01)), true), 0.05);
        assert_eq!(target(&signal(SignalSource::Inversion, Some(0.074)), true), 0.074);
        assert_eq!(target(&signal(SignalSource::BlendInversion, Some(0.33)), true), 0.10);
        // An unusable or absent reference, a probe, or the cap off: the fixed targets.
        assert_eq!(target(&signal(SignalSource::Inversion, Some(0.074)), false), 0.05);
        assert_eq!(target(&signal(SignalSource::Inversion, None), true), 0.05);
        assert_eq!(target(&signal(SignalSource::Probe, Some(0.074)), true), judge.suspect_push_target);
        let off = AutoStrength { inverted_push_reference_cap: 0.0, ..judge.clone() };
        assert_eq!(off.push_target(&signal(SignalSource::Inversion, Some(0.074)), true), 0.05);
        // The rule says so only when the cap is on.
        assert!(judge.rule().contains("or its push on the reference, when that is higher, up to 0.1"));
        assert!(!off.rule().contains("or its push on the reference"));
        let bad = AutoStrength { inverted_push_reference_cap: 1.5, ..judge };
        assert!(bad.validate(&Settings::automatic_base()).unwrap_err().to_string().contains("reference cap"));
    }

    #[test]
    fn the_gentle_candidate_unlearns_the_easiest_patches_suspected_or_not() {
        let ratios = [1.0, 0.7, 1.2, 0.2, 0.9, 0.4];
        let class = |(class, &mask_ratio): (usize, &f64)| InvertedClass {
            class: class as i64,
            mask_pixels: 10.0 * mask_ratio,
            reached: true,
            push: 0.9,
            mask_ratio,
            anomaly_index: 0.0,
        };
        let summary = InversionSummary {
            settings: InversionSettings::default(),
            optimisation_images: 60,
            held_out_images: 60,
            image_pixels: 16,
            classes: ratios.iter().enumerate().map(class).collect(),
            // 3 under the screen of versions 3-11, 5 in the judge's wider band.
            suspected_targets: vec![3, 5],
            // A blend family ordered the other way round must not decide which patches go.
            blends: ratios.iter().rev().enumerate().map(class).collect(),
            suspected_blend_targets: Vec::new(),
            seconds: 0.0,
        };
        let trigger = |class: i64, shape| InvertedTrigger {
            class,
            shape,
            mask: tch::Tensor::zeros([1, 1, 4, 4], (tch::Kind::Float, tch::Device::Cpu)),
            pattern: tch::Tensor::zeros([1, 1, 4, 4], (tch::Kind::Float, tch::Device::Cpu)),
        };
        // Class 3 is a suspect under the narrow screen, 5 in the wide band: when the gentle
        // candidate runs, both were read as the data's nature, and both are unlearnt.
        let triggers: Vec<InvertedTrigger> =
            (0..6).flat_map(|c| [trigger(c, TriggerShape::Patch), trigger(c, TriggerShape::Blend)]).collect();
        let easiest = easiest_patches(&summary, &triggers, 3);
        let picked: Vec<(i64, TriggerShape)> = easiest.iter().map(|t| (t.class, t.shape)).collect();
        assert_eq!(picked, [(3, TriggerShape::Patch), (5, TriggerShape::Patch), (1, TriggerShape::Patch)]);
        assert!(easiest_patches(&summary, &triggers, 0).is_empty());
    }

    #[test]
    fn the_residual_is_the_target_furthest_from_being_met() {
        let auto = AutoStrength { cosine_target: -0.25, suspect_push_target: 0.02, ..legacy() };
        assert!((auto.residual(-0.2, None, None) - 0.05).abs() < 1e-12);
        assert!((auto.residual(-0.3, Some(0.12), None) - 0.10).abs() < 1e-12);
        assert!((auto.residual(-0.3, Some(0.0), None) - -0.02).abs() < 1e-12);
        assert!(auto.residual(-0.9, Some(0.01), None) <= 0.0 && auto.residual(-0.9, Some(0.03), None) > 0.0);
    }

    #[test]
    fn a_drop_of_exactly_the_budget_is_within_it() {
        let auto = AutoStrength::judge();
        let drop = 100.0 * (0.9 - 0.88);
        assert!(drop > 2.0 && auto.within_accuracy_budget(drop), "{drop}");
        assert!(!auto.within_accuracy_budget(100.0 * (0.9 - 0.88) + 100.0 / 600.0));
        assert!(!auto.within_accuracy_budget(f64::NAN));
    }

    #[test]
    fn the_rule_says_when_candidates_unlearn_the_inverted_triggers() {
        assert!(!AutoStrength::judge().rule().contains("unlearning"));
        let rule = AutoStrength { unlearn_share: 0.2, ..AutoStrength::judge() }.rule();
        assert!(rule.contains("With trigger unlearning: 0.2 of every tuning batch"), "{rule}");
        let gentle = "Without evidence the candidate also unlearns the inverted patch triggers of the 3 classes";
        assert!(AutoStrength::judge().rule().contains(gentle), "{}", AutoStrength::judge().rule());
        assert!(!AutoStrength { gentle_unlearn_classes: 0, ..AutoStrength::judge() }.rule().contains(gentle));
    }

    #[test]
    fn only_the_gentle_candidate_keeps_the_head_or_interpolates_its_features() {
        let base = Settings::automatic_base();
        let keeps = AutoStrength { gentle_keeps_head: true, ..AutoStrength::judge() };
        let gentle = keeps.candidate_settings(&base, 0.001, 30, keeps.regime(false), None);
        assert_eq!((gentle.method, gentle.alpha, gentle.epochs, gentle.keep_head), (Method::Fst, 0.001, 30, true));
        assert_eq!(gentle.feature_interpolation, Some(JUDGE_GENTLE_FEATURE_INTERPOLATION));
        // With evidence, the judge's candidates keep nothing: they only unlearn adversarial
        // perturbations (version 16).
        assert_eq!(
            keeps.regime(true),
            CandidateRegime {
                adversarial_unlearning: Some(AdversarialUnlearning {
                    share: JUDGE_EVIDENCE_ADVERSARIAL_SHARE,
                    radius: JUDGE_EVIDENCE_ADVERSARIAL_RADIUS,
                    steps: ADVERSARIAL_STEPS,
                }),
                ..CandidateRegime::default()
            }
        );
        // Exploring a ladder, or without inversion, every candidate starts from a new head and
        // keeps its tuned features.
        assert_eq!(AutoStrength { explore: true, ..keeps.clone() }.regime(false), CandidateRegime::default());
        let uninverted = AutoStrength { invert_triggers: false, ..keeps.clone() };
        assert_eq!(uninverted.regime(false), CandidateRegime::default());
        let judge = AutoStrength::judge().regime(false);
        assert_eq!(
            judge,
            CandidateRegime { keep_head: false, feature_interpolation: Some(0.5), ..CandidateRegime::default() }
        );
        assert!(keeps.rule().contains("Without evidence: one candidate, alpha 0.001 from the original head"));
        assert!(!AutoStrength::judge().rule().contains("from the original head"));
        let rule = AutoStrength::judge().rule();
        assert!(rule.contains("alpha 0.001, its features then set 0.5 of the way from the original weights"), "{rule}");
        assert!(rule.contains("5 linear-probe epochs of the new head at learning rate 0.1,"), "{rule}");
        let v8 = AutoStrength { gentle_feature_interpolation: None, ..AutoStrength::judge() };
        assert!(!v8.rule().contains("of the way from"), "{}", v8.rule());
    }

    #[test]
    fn only_candidates_with_evidence_unlearn_adversarial_perturbations_and_the_base_still_applies() {
        let adversarial = AdversarialUnlearning { share: 0.2, radius: 0.1, steps: 5 };
        let judge = AutoStrength { evidence_adversarial_unlearning: Some(adversarial), ..AutoStrength::judge() };
        let base = Settings::automatic_base();
        let with_evidence = judge.candidate_settings(&base, 0.03, 30, judge.regime(true), None);
        assert_eq!(with_evidence.adversarial_unlearning, Some(adversarial));
        assert_eq!(judge.candidate_settings(&base, 0.001, 30, judge.regime(false), None).adversarial_unlearning, None);
        // Exploring the ladder, no candidate is the evidence's.
        let exploring = AutoStrength { explore: true, ..judge.clone() };
        assert_eq!(exploring.regime(true), CandidateRegime::default());
        // Base settings that ask for it everywhere still get it on the gentle candidate.
        let everywhere = AdversarialUnlearning { share: 0.5, ..adversarial };
        let given = Settings { adversarial_unlearning: Some(everywhere), ..base.clone() };
        assert_eq!(
            judge.candidate_settings(&given, 0.001, 30, judge.regime(false), None).adversarial_unlearning,
            Some(everywhere)
        );
        assert_eq!(
            judge.candidate_settings(&given, 0.03, 30, judge.regime(true), None).adversarial_unlearning,
            Some(adversarial)
        );
        let rule = judge.rule();
        assert!(rule.contains("With evidence every candidate also unlearns universal adversarial perturbations: one shared by the last 0.2"), "{rule}");
        let distilling = AutoStrength { evidence_distillation: Some(1.0), ..judge.clone() };
        assert_eq!(
            distilling.candidate_settings(&base, 0.03, 30, distilling.regime(true), None).distillation,
            Some(1.0)
        );
        assert_eq!(distilling.candidate_settings(&base, 0.001, 30, distilling.regime(false), None).distillation, None);
        assert!(
            distilling.rule().contains("With evidence every candidate distils from the original model at weight 1")
        );
        let negative = AutoStrength { evidence_distillation: Some(-1.0), ..judge.clone() };
        assert!(negative.validate(&base).unwrap_err().to_string().contains("distillation weight"));
        judge.validate(&base).unwrap();
        let uninverted = AutoStrength { invert_triggers: false, ..judge.clone() };
        assert!(uninverted.validate(&base).unwrap_err().to_string().contains("needs trigger inversion"));
        // A share of 0 is off: no candidate unlearns, and the rule does not say it does.
        let off = AutoStrength {
            evidence_adversarial_unlearning: Some(AdversarialUnlearning { share: 0.0, ..adversarial }),
            ..judge.clone()
        };
        assert_eq!(off.regime(true), CandidateRegime::default());
        assert!(!off.rule().contains("adversarial"), "{}", off.rule());
        off.validate(&base).unwrap();
        let negative_share = AutoStrength {
            evidence_adversarial_unlearning: Some(AdversarialUnlearning { share: -0.2, ..adversarial }),
            ..judge.clone()
        };
        assert!(negative_share.validate(&base).unwrap_err().to_string().contains("adversarial unlearning share"));
        let too_large = AutoStrength {
            evidence_adversarial_unlearning: Some(AdversarialUnlearning { share: 1.5, ..adversarial }),
            ..judge
        };
        assert!(too_large.validate(&base).unwrap_err().to_string().contains("adversarial unlearning share"));
    }

    #[test]
    fn the_judge_warms_every_head_up_at_its_own_rate_unless_the_base_gives_one() {
        let judge = AutoStrength::judge();
        let base = Settings::automatic_base();
        let evidence = judge.candidate_settings(&base, 0.03, 30, judge.regime(true), None);
        assert_eq!(evidence.head_warmup_learning_rate, Some(JUDGE_HEAD_WARMUP_LEARNING_RATE));
        assert_eq!(evidence.feature_interpolation, None);
        let given = Settings { head_warmup_learning_rate: Some(0.02), ..base };
        assert_eq!(
            judge.candidate_settings(&given, 0.03, 30, judge.regime(true), None).head_warmup_learning_rate,
            Some(0.02)
        );
        let default = AutoStrength::default();
        let plain = default.candidate_settings(&Settings::automatic_base(), 0.01, 20, default.regime(false), None);
        assert_eq!((plain.head_warmup_learning_rate, plain.feature_interpolation), (None, None));
    }

    #[test]
    fn suspects_are_the_pushes_at_or_above_the_rate() {
        let rates = vec![vec![0.0, 0.45, 0.1], vec![0.99, 0.0, 0.0], vec![0.8, 0.0, 0.79]];
        assert_eq!(suspects(&rates, 0.8), [(1, 0), (2, 0)]);
        assert!(suspects(&rates, 1.0).is_empty());
    }

    /// Runs the search on a model whose final cosine is `cosine(alpha)` and whose suspect probe
    /// pushes `push(alpha)`; returns the alphas tried.
    fn simulate_with(auto: &AutoStrength, cosine: impl Fn(f64) -> f64, push: impl Fn(f64) -> Option<f64>) -> Vec<f64> {
        let mut tried = Vec::new();
        while let Some(alpha) = auto.next_alpha(&tried) {
            tried.push((alpha, auto.residual(cosine(alpha), push(alpha), None)));
        }
        tried.iter().map(|t| t.0).collect()
    }

    fn simulate(auto: &AutoStrength, cosine: impl Fn(f64) -> f64) -> Vec<f64> {
        simulate_with(auto, cosine, |_| None)
    }

    #[test]
    fn a_backdoor_the_probes_still_find_drives_the_search_past_the_head_target() {
        let auto = legacy();
        // Measured on the lab's blended GroupNorm CNN: cos -0.31 at alpha 0.01 with 11% of the
        // noise-probed images still pushed into the target class; cos -0.92 and 0% at 0.03.
        let cosine = |a: f64| 0.0 - 30.0 * a;
        let push = |a: f64| Some((0.11 * (0.03 - a) / 0.02).max(0.0));
        let alphas = simulate_with(&auto, cosine, push);
        assert_eq!(alphas[0], 0.01);
        assert!(alphas.len() >= 2, "{alphas:?}");
        let last = *alphas.last().unwrap();
        assert!(auto.residual(cosine(last), push(last), None) <= 0.0, "{alphas:?}");
        // Without a suspect probe the same head stops at the first alpha.
        assert_eq!(simulate(&auto, cosine), [0.01]);
    }

    #[test]
    fn search_steps_up_then_stops_at_a_candidate_near_the_target() {
        let auto = legacy();
        // Measured on the lab's BadNets CNN (20 epochs): about 0.15 - 15 alpha.
        let alphas = simulate(&auto, |a| 0.15 - 15.0 * a);
        assert_eq!(alphas.len(), 2, "{alphas:?}");
        assert_eq!(alphas[..2], [0.01, 0.03]);
        // A steep model: the first step overshoots, one secant step comes back inside the bracket.
        let alphas = simulate(&auto, |a| 0.1 - 25.0 * a);
        assert_eq!(alphas.len(), 3, "{alphas:?}");
        let last = *alphas.last().unwrap();
        assert!(last > 0.01 && last < 0.03 && 0.1 - 25.0 * last <= auto.cosine_target, "{alphas:?}");
        // Past the target by less than the overshoot margin: the first candidate stands.
        assert_eq!(simulate(&auto, |a| -42.0 * a), [0.01]);
        // Already far past the target at the first alpha: a gentler one is tried.
        let alphas = simulate(&auto, |a| -60.0 * a);
        assert!(alphas[1] < alphas[0], "{alphas:?}");
        // A model that resists: the steps grow up to fivefold and the budget ends the search.
        let alphas = simulate(&auto, |a| 0.2 - a);
        assert_eq!(alphas.len(), auto.max_candidates);
        assert!(alphas.windows(2).all(|w| w[1] >= 1.5 * w[0] && w[1] <= 5.0 * w[0] + 1e-12), "{alphas:?}");
        let one = AutoStrength { max_candidates: 1, ..legacy() };
        assert_eq!(simulate(&one, |a| 0.15 - 15.0 * a), [0.01]);
    }

    #[test]
    fn settings_and_methods_are_checked() {
        let fst = Settings::default();
        AutoStrength::default().validate(&fst).unwrap();
        AutoStrength { unlearn_share: 0.2, ..AutoStrength::judge() }.validate(&fst).unwrap();
        AutoStrength { refit_residual: true, ..AutoStrength::judge() }.validate(&fst).unwrap();
        let err = AutoStrength::default().validate(&Settings { method: Method::Ft, ..fst.clone() }).unwrap_err();
        assert!(err.to_string().contains("--strength fixed"), "{err}");
        let err = AutoStrength::judge().validate(&Settings { keep_head: true, ..fst.clone() }).unwrap_err();
        assert!(err.to_string().contains("decides each candidate's head"), "{err}");
        AutoStrength { gentle_keeps_head: true, ..AutoStrength::judge() }.validate(&fst).unwrap();
        let err = AutoStrength::judge().validate(&Settings { feature_interpolation: Some(0.5), ..fst.clone() });
        assert!(err.unwrap_err().to_string().contains("decides each candidate's feature interpolation"));
        for bad in [
            AutoStrength { validation_fraction: 0.9, ..AutoStrength::default() },
            AutoStrength { start_alpha: 0.0, ..AutoStrength::default() },
            AutoStrength { max_candidates: 0, ..AutoStrength::default() },
            AutoStrength { cosine_target: -1.0, ..AutoStrength::default() },
            AutoStrength { max_validation_drop_points: f64::NAN, ..AutoStrength::default() },
            AutoStrength { suspect_push_rate: 1.5, ..AutoStrength::default() },
            AutoStrength { suspect_push_target: 0.9, ..AutoStrength::default() },
            AutoStrength { unlearn_share: 0.2, ..AutoStrength::default() },
            AutoStrength { unlearn_share: 1.0, ..AutoStrength::judge() },
            AutoStrength { refit_residual: true, ..AutoStrength::default() },
            AutoStrength { gentle_unlearn_classes: 3, ..AutoStrength::default() },
            AutoStrength { gentle_unlearn_share: 1.0, ..AutoStrength::judge() },
            AutoStrength { gentle_keeps_head: true, ..AutoStrength::default() },
            AutoStrength { gentle_feature_interpolation: Some(0.5), ..AutoStrength::default() },
            AutoStrength { gentle_feature_interpolation: Some(0.0), ..AutoStrength::judge() },
            AutoStrength { gentle_feature_interpolation: Some(1.5), ..AutoStrength::judge() },
            AutoStrength { head_warmup_learning_rate: Some(f64::INFINITY), ..AutoStrength::judge() },
        ] {
            assert!(bad.validate(&fst).is_err(), "{bad:?}");
        }
    }
}
