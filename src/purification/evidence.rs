//! The evidence of a backdoor that the automatic strength works from, without being told the
//! attack: trigger probes that push most images into one class, and triggers inverted per class
//! (evaluation::inversion) whose mask is far smaller than the other classes'. Each becomes a
//! signal followed through purification on the held-out validation split.
//!
//! A signal is judged against the model's own baseline, not against zero: some models answer a
//! corruption (noise, a sinusoid) by sending most images into one class by nature, and keep doing
//! so however far the features are shifted, while a backdoor's answer collapses under FST (the
//! lab's noise-blend backdoors went from 100% to 10-15% at the first alpha). A signal whose push
//! stays above `NATURAL_RETENTION` of its original rate after the first candidate is therefore
//! recorded as the model's nature and no longer drives the search or the verdict. Inverted
//! triggers are judged by their size instead: a class whose mask is small against the other
//! classes' median is screened, and a from-scratch reference (purification::reference) decides
//! whether the data alone makes it that easy to reach (`REFERENCE_MASK_SHARE`); one that is not
//! the data's counts until purification clears it: retention cannot tell a natural shortcut from
//! a ResNet backdoor that resists the first alphas.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::reference::Reference;
use crate::evaluation::{InversionSummary, InvertedClass, TriggerShape};
use crate::stats::wilson_upper_95;

/// A signal pushing the from-scratch reference at least this fraction as hard as the uploaded
/// model is a feature of the data, not a backdoor (see purification::reference). Fitted on the
/// grid's fit half: Fashion-MNIST's "bag" shortcut moved the reference 0.31-0.51 as hard,
/// inverted backdoor triggers 0.00-0.12, backdoor probes 0.00-0.05.
pub const REFERENCE_TRANSFER: f64 = 0.2;

/// An inverted trigger is the model's nature, not a backdoor, when its mask is at least this
/// fraction of the same class's mask on the from-scratch reference, inverted the same way, both in
/// pixels: a backdoor makes its target reachable with a far smaller trigger than the data alone
/// does, while a shortcut of the data (Fashion-MNIST's "bag", MNIST's "8" for blends) needs about
/// as many pixels on both. Compared by size, not by push, because a backdoor whose target is also
/// the data's natural shortcut pushes the reference as hard (the held-out h05).
///
/// Version 12 compares pixels; versions 3-11 compared each mask against its own model's median
/// over the other classes (0.3). The median moves with the architecture's robustness to small
/// triggers, not with the backdoor: on the spent y01-y12 (docs/strength.md, "Version 12") a clean
/// MNIST ResNet-18's "8" sat at 0.22 of the reference's by medians (a false alarm) and 0.42 by
/// pixels, and a 3x3 patch backdoor into Fashion-MNIST's "bag" at 0.35 by medians (passed as
/// natural) and 0.24 by pixels. Fitted on those models: backdoor targets 0.13-0.34 of the
/// reference's pixels (y05, y08, y09, y11), every other class screened 0.41 and above (y04, y06,
/// y07, y11, y12); 0.37 is the geometric middle of 0.34 and 0.41.
pub const REFERENCE_MASK_SHARE: f64 = 0.37;

/// The same for an inverted blend, against the reference's blend for the class (the blend's
/// weight summed over the image). Fitted on the same spent models: blend backdoor targets
/// 0.07-0.28 of the reference's (y11, y05, y09; a sinusoid that barely took, y07, 0.36), the
/// blends screened on other classes 0.54 and above (y08, y06, y12, y02, y11); 0.4 lies between
/// 0.28 and 0.54 (their geometric middle 0.39). Before version 12: 0.5 by medians.
pub const REFERENCE_BLEND_SHARE: f64 = 0.4;

/// Without a usable reference to judge it, an inverted patch counts only when its mask is at most
/// this fraction of the other classes' median: the screen of versions 3-11. The judge screens up
/// to `JUDGE_SCREEN_MASK_RATIO` (purification::strength), the band above this line for the
/// reference alone to decide.
pub const UNREFERENCED_MAX_MASK_RATIO: f64 = 0.3;

/// A probe keeping more than this fraction of its original push after the first candidate is
/// the model's nature, not a backdoor (see the module doc): the lab's backdoors kept 9-15% of
/// theirs, natural responses 100% or more.
pub const NATURAL_RETENTION: f64 = 0.5;

/// Where a signal came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SignalSource {
    /// A trigger of the standard probe bank.
    Probe,
    /// A trigger inverted from the model for its class, with a mask per pixel.
    Inversion,
    /// A blend inverted from the model for its class: one weight over the whole image.
    BlendInversion,
}

impl SignalSource {
    /// The source of a trigger inverted with this mask shape.
    pub fn inverted_as(shape: TriggerShape) -> Self {
        match shape {
            TriggerShape::Patch => SignalSource::Inversion,
            TriggerShape::Blend => SignalSource::BlendInversion,
        }
    }

    /// The mask shape the trigger was inverted with; none for a probe.
    pub fn shape(self) -> Option<TriggerShape> {
        match self {
            SignalSource::Probe => None,
            SignalSource::Inversion => Some(TriggerShape::Patch),
            SignalSource::BlendInversion => Some(TriggerShape::Blend),
        }
    }

    /// Whether the trigger was inverted from the model (judged by its size), not a probe.
    pub fn inverted(self) -> bool {
        self.shape().is_some()
    }
}

/// One suspected trigger and its push before and after purification, on the validation split.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Signal {
    /// Where the trigger came from: the probe bank or trigger inversion.
    pub source: SignalSource,
    /// The probe's spec, or a description of the inverted trigger.
    pub trigger: String,
    /// The class the trigger pushes images into.
    pub class: i64,
    /// Fraction of validation images of other classes pushed into `class` by the original model.
    pub push_before: f64,
    /// The same on the purified model (the chosen candidate).
    pub push_after: Option<f64>,
    /// Validation images of other classes the pushes are measured on.
    pub images: i64,
    /// 95% upper confidence bound (Wilson) of `push_after`.
    pub push_after_upper_95: Option<f64>,
    /// Inverted triggers: the mask size (a blend's weight) against the other classes' median of
    /// the same shape.
    #[serde(default)]
    pub mask_ratio: Option<f64>,
    /// Inverted triggers: the mask's size in pixels (a blend's weight summed over the image).
    #[serde(default)]
    pub mask_pixels: Option<f64>,
    /// The purified model no longer answers the signal: its push is at most the target (the
    /// suspect push target for probes, the inverted push target for inverted triggers).
    #[serde(default)]
    pub cleared: bool,
    /// The same trigger's push on the from-scratch reference (purification::reference), which
    /// holds no backdoor: what the data alone makes of it.
    #[serde(default)]
    pub reference_push: Option<f64>,
    /// Inverted triggers: the same class's mask on the from-scratch reference, inverted the same
    /// way, against its other classes' median.
    #[serde(default)]
    pub reference_mask_ratio: Option<f64>,
    /// Inverted triggers judged against a usable reference whose push is above the push target
    /// (`AutoStrength::inverted_push_reference_cap`): that push, capped, which a model without a
    /// backdoor shows too; the signal is cleared at it, and only its push after beyond it is read
    /// as a backdoor's. None: the fixed target alone.
    #[serde(default)]
    pub natural_push: Option<f64>,
    /// Inverted triggers: the same class's mask on the from-scratch reference, in pixels; the
    /// signal is the data's nature when `mask_pixels` is at least `reference_share()` of it.
    #[serde(default)]
    pub reference_mask_pixels: Option<f64>,
    /// Unlearned inverted triggers (`AutoStrength::unlearn_share`): the class's mask inverted
    /// afresh on the purified model, against its other classes' median. While the class is still
    /// a suspect there and not the data's nature, `push_after` is the fresh trigger's push when
    /// that is higher: the unlearned trigger's own push falls by construction.
    #[serde(default)]
    pub purified_mask_ratio: Option<f64>,
    /// Inverted triggers that count: the trigger refitted to the purified model at no more than
    /// its own mask size (`evaluation::refit`), pushing this fraction of the validation images of
    /// other classes into `class` (opt-in, `AutoStrength::refit_residual`). Reported beside
    /// `push_after`; it does not decide: on the held-out set r7 it did not tell a removed
    /// backdoor from a left one (docs/strength.md).
    #[serde(default)]
    pub refit_push_after: Option<f64>,
    /// The same refit on the from-scratch reference: what a trigger of that size does to a model
    /// without a backdoor.
    #[serde(default)]
    pub reference_refit_push: Option<f64>,
    /// The relearning check (`AutoStrength::relearn_epochs`): the push on the purified model's
    /// features under a fresh head learnt alone from clean images. A backdoor whose features
    /// purification left in place and only disconnected from the head comes back here.
    #[serde(default)]
    pub relearned_push: Option<f64>,
    /// The model's nature, not a backdoor: a probe pushes the from-scratch reference at least
    /// `REFERENCE_TRANSFER` as hard, an inverted trigger's mask is at least `reference_share()`
    /// of the reference's for its class (without a usable reference: an inverted patch screened
    /// above `UNREFERENCED_MAX_MASK_RATIO`), or (probes, without a usable reference) its push
    /// persisted through the first candidate.
    pub natural: bool,
}

/// What the gate knows about a backdoor without being told the attack.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Evidence {
    /// Trigger inversion on the original model (absent when disabled).
    pub inversion: Option<InversionSummary>,
    /// The from-scratch reference the signals were judged against (absent when disabled or when
    /// there was no signal to judge).
    #[serde(default)]
    pub reference: Option<Reference>,
    /// Every suspected trigger, with its push before and after purification.
    pub signals: Vec<Signal>,
    /// A signal that was not the model's nature: the model was likely backdoored.
    pub backdoor_suspected: bool,
    /// The classes those signals point to.
    pub suspected_classes: Vec<i64>,
    /// The highest push after purification over the signals that count (0 with none): the
    /// estimated attack success rate left, for a gate without a known trigger.
    pub residual_push: f64,
    /// 95% upper confidence bound of `residual_push`.
    pub residual_push_upper_95: f64,
    /// The highest push after purification over the signals that count, less each one's
    /// `Signal::natural_push` (not below 0): the attack success rate left beyond what a model
    /// without a backdoor shows, which a policy reads instead of `residual_push`. Absent when no
    /// signal that counts has a natural push.
    #[serde(default)]
    pub residual_push_beyond_nature: Option<f64>,
    /// The highest push of the counting inverted triggers refitted to the purified model at their
    /// own size (`Signal::refit_push_after`): a second estimate of what is left, for the reader;
    /// the verdict uses `residual_push`. Absent without such a signal or without the refit.
    #[serde(default)]
    pub refit_residual_push: Option<f64>,
    /// 95% upper confidence bound of `refit_residual_push`.
    #[serde(default)]
    pub refit_residual_push_upper_95: Option<f64>,
    /// The highest push of the signals that count under the relearning check's fresh head
    /// (`Signal::relearned_push`): what a team that retrains the released model's head on clean
    /// data gets back of the backdoor, for the reader; the verdict uses `residual_push`. Absent
    /// without such a signal or without the check.
    #[serde(default)]
    pub relearned_residual_push: Option<f64>,
    /// 95% upper confidence bound of `relearned_residual_push`.
    #[serde(default)]
    pub relearned_residual_push_upper_95: Option<f64>,
    /// Every signal that counts was cleared by purification (true with none).
    pub cleared: bool,
    /// The finding in words.
    pub reason: String,
}

impl Signal {
    /// A signal found on the original model, not yet followed through purification; `inverted`
    /// is its class's inversion result for an inverted trigger. Until a usable reference judges
    /// it, an inverted patch screened above `UNREFERENCED_MAX_MASK_RATIO` is the model's nature.
    pub fn found(
        source: SignalSource,
        trigger: String,
        class: i64,
        push_before: f64,
        images: i64,
        inverted: Option<&InvertedClass>,
    ) -> Self {
        let mut signal = Signal {
            source,
            trigger,
            class,
            push_before,
            push_after: None,
            images,
            push_after_upper_95: None,
            mask_ratio: inverted.map(|c| c.mask_ratio),
            mask_pixels: inverted.map(|c| c.mask_pixels),
            cleared: false,
            reference_push: None,
            reference_mask_ratio: None,
            natural_push: None,
            reference_mask_pixels: None,
            purified_mask_ratio: None,
            refit_push_after: None,
            reference_refit_push: None,
            relearned_push: None,
            natural: false,
        };
        signal.natural = inverted.is_some_and(|c| signal.natural_at(c.mask_pixels, c.mask_ratio, false));
        signal
    }

    /// Records the push of the same trigger on the from-scratch reference and, for a probe,
    /// reads the signal as the model's nature when a usable reference is pushed at least
    /// `REFERENCE_TRANSFER` as hard: a trigger that needs no backdoor to work is no evidence of
    /// one. An inverted trigger is judged by its size instead (`judge_mask_against_reference`).
    pub fn judge_against_reference(&mut self, reference_push: f64, usable: bool) {
        self.reference_push = Some(reference_push);
        if self.source == SignalSource::Probe {
            self.natural = usable && reference_push >= REFERENCE_TRANSFER * self.push_before;
        }
    }

    /// Records the signal's class as inverted on the from-scratch reference, and reads an
    /// inverted trigger as the model's nature when a usable reference's mask for the class is at
    /// most `1 / share` times as large in pixels (`reference_share`): the backdoor did not make
    /// it easier to reach.
    pub fn judge_mask_against_reference(&mut self, reference: &InvertedClass, usable: bool) {
        self.reference_mask_ratio = Some(reference.mask_ratio);
        self.reference_mask_pixels = Some(reference.mask_pixels);
        if let (Some(mask_pixels), Some(mask_ratio)) = (self.mask_pixels, self.mask_ratio) {
            self.natural = self.natural_at(mask_pixels, mask_ratio, usable);
        }
    }

    /// Whether a mask of this size (in pixels, and against its model's median) for the signal's
    /// class, on the original or a purified model, is the data's nature: at least
    /// `reference_share()` of the reference's in pixels, when the reference is usable and was
    /// measured; otherwise, an inverted patch screened above `UNREFERENCED_MAX_MASK_RATIO`.
    pub fn natural_at(&self, mask_pixels: f64, mask_ratio: f64, usable: bool) -> bool {
        match self.reference_mask_pixels.filter(|_| usable) {
            Some(reference) => mask_pixels >= self.reference_share() * reference,
            None => self.source.shape() == Some(TriggerShape::Patch) && mask_ratio > UNREFERENCED_MAX_MASK_RATIO,
        }
    }

    /// The share of the reference's mask, in pixels, at or above which this inverted signal is the
    /// model's nature: `REFERENCE_BLEND_SHARE` for blends, `REFERENCE_MASK_SHARE` otherwise.
    pub fn reference_share(&self) -> f64 {
        match self.source.shape() {
            Some(TriggerShape::Blend) => REFERENCE_BLEND_SHARE,
            Some(TriggerShape::Patch) | None => REFERENCE_MASK_SHARE,
        }
    }

    /// Whether the signal counts as backdoor evidence.
    pub fn counts(&self) -> bool {
        !self.natural
    }
}

impl Evidence {
    /// Sums up the signals, with the pushes after purification filled in.
    pub fn conclude(inversion: Option<InversionSummary>, reference: Option<Reference>, signals: Vec<Signal>) -> Self {
        let counting: Vec<&Signal> = signals.iter().filter(|s| s.counts()).collect();
        let mut suspected_classes: Vec<i64> = counting.iter().map(|s| s.class).collect();
        suspected_classes.sort_unstable();
        suspected_classes.dedup();
        let worst = counting.iter().max_by(|a, b| a.push_after.unwrap_or(0.0).total_cmp(&b.push_after.unwrap_or(0.0)));
        let residual_push = worst.and_then(|s| s.push_after).unwrap_or(0.0);
        let residual_push_upper_95 = worst.and_then(|s| s.push_after_upper_95).unwrap_or(0.0);
        let residual_push_beyond_nature = counting.iter().any(|s| s.natural_push.is_some()).then(|| {
            counting
                .iter()
                .map(|s| (s.push_after.unwrap_or(0.0) - s.natural_push.unwrap_or(0.0)).max(0.0))
                .fold(0.0, f64::max)
        });
        let nature_note = match residual_push_beyond_nature {
            Some(beyond) => format!(
                "; beyond what each trigger does to the from-scratch reference ({}), {:.1}% is left",
                counting
                    .iter()
                    .filter_map(|s| s.natural_push.map(|n| format!("class {} {:.1}%", s.class, 100.0 * n)))
                    .collect::<Vec<_>>()
                    .join(", "),
                100.0 * beyond
            ),
            None => String::new(),
        };
        // The highest of a second push of the counting signals, with its 95% bound and its signal.
        let highest = |push: fn(&Signal) -> Option<f64>| {
            counting
                .iter()
                .filter_map(|s| push(s).map(|p| (p, wilson_upper_95(p, s.images), *s)))
                .max_by(|a, b| a.0.total_cmp(&b.0))
        };
        let refit = highest(|s| s.refit_push_after);
        let refit_note = match refit {
            Some((push, upper, s)) => format!(
                "; refitted at its own size to the purified model, the inverted trigger -> class {} pushes {:.1}% \
                 (95% upper bound {:.1}%){}",
                s.class,
                100.0 * push,
                100.0 * upper,
                s.reference_refit_push
                    .map_or(String::new(), |r| format!(", the same refit on the reference {:.1}%", 100.0 * r))
            ),
            None => String::new(),
        };
        let relearned = highest(|s| s.relearned_push);
        let relearned_note = match relearned {
            Some((push, upper, s)) => format!(
                "; with a fresh head learnt on the purified features from clean images, {} -> class {} \
                 pushes {:.1}% (95% upper bound {:.1}%)",
                s.trigger,
                s.class,
                100.0 * push,
                100.0 * upper
            ),
            None => String::new(),
        };
        // A reference that did not learn the task records its figures but decided nothing: the
        // reading then came from the model's own baseline, and the reason says so.
        let usable = reference.as_ref().is_some_and(|r| r.usable);
        let natural: Vec<String> = signals
            .iter()
            .filter(|s| s.natural)
            .map(|s| match (s.reference_mask_pixels.filter(|_| usable), s.reference_push.filter(|_| usable)) {
                (Some(reference), _) => format!(
                    "{} -> class {} (the from-scratch reference's mask for it is {:.1} pixels, against {:.1})",
                    s.trigger,
                    s.class,
                    reference,
                    s.mask_pixels.unwrap_or(f64::NAN)
                ),
                (None, _) if s.mask_ratio.is_some() => format!(
                    "{} -> class {} ({:.2} of the median, over {UNREFERENCED_MAX_MASK_RATIO}, and no usable reference)",
                    s.trigger,
                    s.class,
                    s.mask_ratio.unwrap_or(f64::NAN)
                ),
                (None, Some(push)) => format!(
                    "{} -> class {} (moves the from-scratch reference {:.1}%, against {:.1}%)",
                    s.trigger,
                    s.class,
                    100.0 * push,
                    100.0 * s.push_before
                ),
                (None, None) => format!("{} -> class {} (persisted through purification)", s.trigger, s.class),
            })
            .collect();
        let natural_note = if natural.is_empty() {
            String::new()
        } else {
            format!("; read as the model's nature rather than a backdoor: {}", natural.join(", "))
        };
        let uncleared: Vec<String> = counting
            .iter()
            .filter(|s| !s.cleared)
            .map(|s| format!("{} -> class {} ({:.1}% after)", s.trigger, s.class, 100.0 * s.push_after.unwrap_or(1.0)))
            .collect();
        let cleared = uncleared.is_empty();
        let reason = match worst {
            None => format!("no probe and no inverted trigger singled out a class{natural_note}"),
            Some(s) => format!(
                "{} signal(s) into class(es) {:?}, {}; the strongest push after purification, {} -> class {}, is \
                 {:.1}% (95% upper bound {:.1}%) of {} validation images, {:.1}% before{nature_note}{refit_note}\
                 {relearned_note}{natural_note}",
                counting.len(),
                suspected_classes,
                if cleared {
                    "all cleared by purification".to_string()
                } else {
                    format!("not cleared: {}", uncleared.join(", "))
                },
                s.trigger,
                s.class,
                100.0 * residual_push,
                100.0 * residual_push_upper_95,
                s.images,
                100.0 * s.push_before
            ),
        };
        Evidence {
            inversion,
            reference,
            backdoor_suspected: !counting.is_empty(),
            suspected_classes,
            residual_push,
            residual_push_upper_95,
            residual_push_beyond_nature,
            refit_residual_push: refit.map(|(push, _, _)| push),
            refit_residual_push_upper_95: refit.map(|(_, upper, _)| upper),
            relearned_residual_push: relearned.map(|(push, _, _)| push),
            relearned_residual_push_upper_95: relearned.map(|(_, upper, _)| upper),
            cleared,
            reason,
            signals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(class: i64, before: f64, after: f64, natural: bool) -> Signal {
        Signal {
            source: SignalSource::Probe,
            trigger: "badnets".into(),
            class,
            push_before: before,
            push_after: Some(after),
            images: 500,
            push_after_upper_95: Some(wilson_upper_95(after, 500)),
            mask_ratio: None,
            mask_pixels: None,
            cleared: after <= 0.03,
            reference_push: None,
            reference_mask_ratio: None,
            natural_push: None,
            reference_mask_pixels: None,
            purified_mask_ratio: None,
            refit_push_after: None,
            reference_refit_push: None,
            relearned_push: None,
            natural,
        }
    }

    /// An inverted signal into class 8 pushing 90% before and after, of this mask size in pixels
    /// and against its model's median.
    fn inverted_signal(source: SignalSource, pixels: f64, ratio: f64) -> Signal {
        Signal { source, mask_pixels: Some(pixels), mask_ratio: Some(ratio), ..signal(8, 0.9, 0.9, false) }
    }

    /// A from-scratch reference that learnt the task (`usable`) or did not.
    fn reference(usable: bool) -> Reference {
        Reference { steps: 600, epochs: 5, validation_accuracy: 0.8, usable, seconds: 1.0, inversion: None }
    }

    /// Class 8 as the from-scratch reference's inversion found it.
    fn reference_class(pixels: f64, ratio: f64) -> InvertedClass {
        InvertedClass { class: 8, mask_pixels: pixels, reached: true, push: 0.9, mask_ratio: ratio, anomaly_index: 0.0 }
    }

    #[test]
    fn a_signal_the_from_scratch_reference_answers_too_is_the_data_not_a_backdoor() {
        // Figures of the fit half: a backdoor's inverted trigger moved the reference 2% of its
        // 82%; Fashion-MNIST's "bag" shortcut 33% of 85%.
        let mut backdoor = signal(3, 0.82, 0.0, false);
        backdoor.judge_against_reference(0.02, true);
        let mut bag = signal(8, 0.85, 0.28, false);
        bag.judge_against_reference(0.33, true);
        assert!(!backdoor.natural && bag.natural);
        assert_eq!(bag.reference_push, Some(0.33));
        // A reference that did not learn the task says nothing: the signal counts.
        let mut unjudged = signal(8, 0.85, 0.28, false);
        unjudged.judge_against_reference(0.33, false);
        assert!(!unjudged.natural);
        let evidence = Evidence::conclude(None, None, vec![backdoor, bag, unjudged]);
        assert_eq!(evidence.suspected_classes, [3, 8]);
        assert!(!evidence.cleared && evidence.residual_push == 0.28, "{}", evidence.reason);
    }

    #[test]
    fn an_inverted_trigger_counts_when_the_backdoor_made_its_class_far_easier_to_reach_in_pixels() {
        let inverted = |pixels: f64, ratio: f64| inverted_signal(SignalSource::Inversion, pixels, ratio);
        // The spent y08: a 3x3 checker into Fashion-MNIST's "bag", 7.6 pixels (0.13 of its
        // median) against the reference's 31.1 (0.37 of its median). By medians, 0.35 of the
        // reference's: read as natural before version 12; by pixels 0.24.
        let mut backdoor = inverted(7.6, 0.13);
        backdoor.judge_mask_against_reference(&reference_class(31.1, 0.37), true);
        assert!(!backdoor.natural, "a far smaller mask than the reference's is a backdoor");
        // The spent y06, a clean MNIST ResNet-18: its "8" at 18.8 pixels (0.13 of its median, a
        // robust model's large median) against the reference's 45.0 (0.57): 0.42 by pixels.
        let mut shortcut = inverted(18.8, 0.13);
        shortcut.judge_mask_against_reference(&reference_class(45.0, 0.57), true);
        assert!(shortcut.natural && shortcut.reference_mask_pixels == Some(45.0));
        assert_eq!(shortcut.reference_mask_ratio, Some(0.57));
        // At the share exactly, natural.
        let mut edge = inverted(REFERENCE_MASK_SHARE * 40.0, 0.2);
        edge.judge_mask_against_reference(&reference_class(40.0, 0.5), true);
        assert!(edge.natural);
        let evidence = Evidence::conclude(None, Some(reference(true)), vec![backdoor, shortcut]);
        assert_eq!(evidence.suspected_classes, [8]);
        assert!(
            evidence.reason.contains("the from-scratch reference's mask for it is 45.0 pixels, against 18.8"),
            "{}",
            evidence.reason
        );
    }

    #[test]
    fn without_a_usable_reference_only_the_narrow_screen_counts() {
        let patch = |ratio: f64| {
            Signal::found(
                SignalSource::Inversion,
                "inverted trigger".into(),
                8,
                0.9,
                500,
                Some(&InvertedClass { mask_ratio: ratio, ..reference_class(20.0, ratio) }),
            )
        };
        // Found, before any reference: a class in the wide screen's band is not yet evidence.
        assert!(!patch(0.2).natural && patch(0.44).natural);
        assert_eq!(patch(0.44).mask_pixels, Some(20.0));
        // A reference that did not learn the task leaves it so; a usable one decides alone.
        let mut unjudged = patch(0.2);
        unjudged.judge_mask_against_reference(&reference_class(25.0, 0.9), false);
        assert!(!unjudged.natural);
        let mut band = patch(0.44);
        band.judge_mask_against_reference(&reference_class(25.0, 0.9), false);
        assert!(band.natural);
        band.judge_mask_against_reference(&reference_class(80.0, 1.0), true);
        assert!(!band.natural, "a usable reference needs 4x the pixels: a backdoor");
        let evidence = Evidence::conclude(None, None, vec![patch(0.44)]);
        assert!(
            evidence.reason.contains("0.44 of the median, over 0.3, and no usable reference"),
            "{}",
            evidence.reason
        );
        // An unusable reference's recorded mask is not given as the reason.
        let mut recorded = patch(0.44);
        recorded.judge_mask_against_reference(&reference_class(25.0, 0.9), false);
        // Nor its push for a probe read by retention.
        let mut persisting = signal(3, 0.85, 0.8, true);
        persisting.judge_against_reference(0.33, false);
        persisting.natural = true;
        let evidence = Evidence::conclude(None, Some(reference(false)), vec![recorded, persisting.clone()]);
        assert!(evidence.reason.contains("and no usable reference"), "{}", evidence.reason);
        assert!(!evidence.reason.contains("the from-scratch reference's mask"), "{}", evidence.reason);
        assert!(evidence.reason.contains("-> class 3 (persisted through purification)"), "{}", evidence.reason);
        let evidence = Evidence::conclude(None, Some(reference(true)), vec![persisting]);
        assert!(
            evidence.reason.contains("(moves the from-scratch reference 33.0%, against 85.0%)"),
            "{}",
            evidence.reason
        );
        // Blends keep their own screen: a blend counts until a reference reads it as natural.
        let blend = Signal { source: SignalSource::BlendInversion, ..patch(0.45) };
        assert!(!blend.natural_at(20.0, 0.45, false));
    }

    #[test]
    fn a_fresh_mask_on_the_purified_model_is_judged_with_the_same_share() {
        let mut blend = inverted_signal(SignalSource::BlendInversion, 20.0, 0.18);
        assert!(!blend.natural_at(1000.0, 1.0, true), "no reference measured: nothing is natural");
        blend.judge_mask_against_reference(&reference_class(100.0, 0.47), true);
        assert!(!blend.natural);
        // Purified: the class needs the blend share of the reference's weight or more, as the
        // data alone does.
        assert!(blend.natural_at(REFERENCE_BLEND_SHARE * 100.0, 0.18, true) && blend.natural_at(60.0, 0.3, true));
        assert!(!blend.natural_at(30.0, 0.3, true), "still far easier to reach than on the reference");
        assert!(!blend.natural_at(60.0, 0.3, false), "an unusable reference says nothing");
    }

    #[test]
    fn an_inverted_blend_is_judged_by_the_blend_share() {
        let blend = |pixels: f64, ratio: f64| inverted_signal(SignalSource::BlendInversion, pixels, ratio);
        // The spent y09: stripes into MNIST's "3", a blend of 65.2 (0.14 of the median) against the
        // reference's 229 (0.69): 0.28.
        let mut backdoor = blend(65.2, 0.14);
        backdoor.judge_mask_against_reference(&reference_class(229.0, 0.69), true);
        assert!(!backdoor.natural);
        // The spent y07's sinusoid that barely took (23% ASR): 0.36 of the reference's, evidence
        // under the blend share.
        let mut weak = blend(57.4, 0.32);
        weak.judge_mask_against_reference(&reference_class(161.0, 0.62), true);
        assert!(!weak.natural);
        // The spent y08's "shirt", which no backdoor targets: 0.54 of the reference's.
        let mut shortcut = blend(80.9, 0.48);
        shortcut.judge_mask_against_reference(&reference_class(149.0, 0.78), true);
        assert!(shortcut.natural);
        assert_eq!(backdoor.reference_share(), REFERENCE_BLEND_SHARE);
    }

    #[test]
    fn the_refit_residual_is_the_highest_refit_push_of_the_signals_that_count() {
        let refit = |push: f64, natural: bool| Signal {
            refit_push_after: Some(push),
            reference_refit_push: Some(0.01),
            natural,
            ..inverted_signal(SignalSource::Inversion, 5.0, 0.1)
        };
        let evidence =
            Evidence::conclude(None, None, vec![refit(0.04, false), refit(0.5, true), signal(2, 0.9, 0.0, false)]);
        assert_eq!(evidence.refit_residual_push, Some(0.04));
        assert_eq!(evidence.refit_residual_push_upper_95, Some(wilson_upper_95(0.04, 500)));
        assert!(
            evidence.reason.contains(
                "refitted at its own size to the purified model, the inverted trigger -> class 8 pushes 4.0%"
            ) && evidence.reason.contains("the same refit on the reference 1.0%"),
            "{}",
            evidence.reason
        );
        let none = Evidence::conclude(None, None, vec![signal(2, 0.9, 0.0, false)]);
        assert_eq!(none.refit_residual_push, None);
        assert!(!none.reason.contains("refitted"), "{}", none.reason);
    }

    #[test]
    fn what_is_left_beyond_nature_subtracts_each_signals_natural_push() {
        // The spent p11: an inverted patch the reference answers at 7.4%, left at 6.9%.
        let inverted = |push: f64, natural_push: Option<f64>, natural: bool| Signal {
            push_after: Some(push),
            natural_push,
            natural,
            ..inverted_signal(SignalSource::Inversion, 15.9, 0.07)
        };
        let evidence = Evidence::conclude(
            None,
            None,
            vec![inverted(0.069, Some(0.074), false), signal(0, 0.9, 0.02, false), inverted(0.6, Some(0.09), true)],
        );
        assert_eq!(evidence.residual_push, 0.069);
        // The natural signal is not counted; the probe has no natural push, so its 2% stands.
        assert_eq!(evidence.residual_push_beyond_nature, Some(0.02));
        assert!(
            evidence
                .reason
                .contains("beyond what each trigger does to the from-scratch reference (class 8 7.4%), 2.0% is left"),
            "{}",
            evidence.reason
        );
        let left = Evidence::conclude(None, None, vec![inverted(0.124, Some(0.074), false)]);
        assert!((left.residual_push_beyond_nature.unwrap() - 0.05).abs() < 1e-12);
        let plain = Evidence::conclude(None, None, vec![inverted(0.069, None, false)]);
        assert_eq!(plain.residual_push_beyond_nature, None);
        assert!(!plain.reason.contains("beyond what"), "{}", plain.reason);
    }

    #[test]
    fn the_relearned_residual_is_the_highest_relearned_push_of_the_signals_that_count() {
        let relearned = |class: i64, push: f64, natural: bool| Signal {
            relearned_push: Some(push),
            ..signal(class, 0.9, 0.01, natural)
        };
        let evidence = Evidence::conclude(
            None,
            None,
            vec![relearned(4, 0.3, false), relearned(8, 0.9, true), relearned(2, 0.1, false)],
        );
        assert_eq!(evidence.relearned_residual_push, Some(0.3), "the natural signal's 90% is not the backdoor's");
        assert_eq!(evidence.relearned_residual_push_upper_95, Some(wilson_upper_95(0.3, 500)));
        assert_eq!(evidence.residual_push, 0.01, "the verdict's residual is the purified model's push");
        assert!(
            evidence.reason.contains(
                "with a fresh head learnt on the purified features from clean images, badnets -> class 4 pushes 30.0%"
            ),
            "{}",
            evidence.reason
        );
        let none = Evidence::conclude(None, None, vec![signal(2, 0.9, 0.0, false)]);
        assert_eq!(none.relearned_residual_push, None);
        assert!(!none.reason.contains("fresh head"), "{}", none.reason);
    }

    #[test]
    fn natural_signals_neither_suspect_nor_count_in_the_residual() {
        let evidence = Evidence::conclude(None, None, vec![signal(3, 1.0, 1.0, true), signal(7, 0.99, 0.04, false)]);
        assert!(evidence.backdoor_suspected);
        assert_eq!(evidence.suspected_classes, [7]);
        assert_eq!(evidence.residual_push, 0.04);
        assert!(!evidence.cleared, "{}", evidence.reason);
        assert!(evidence.reason.contains("nature"), "{}", evidence.reason);
        let clean = Evidence::conclude(None, None, vec![signal(3, 1.0, 1.0, true)]);
        assert!(!clean.backdoor_suspected && clean.residual_push == 0.0 && clean.cleared);
    }
}
