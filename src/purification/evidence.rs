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
//! triggers are judged by their size against the other classes' instead (a class that a small
//! patch reaches by nature, like Fashion-MNIST's "bag", sits at 0.32-0.39 of the median, the
//! fit half's backdoors at 0.08-0.22), and count until purification clears them: retention
//! cannot tell a natural shortcut from a ResNet backdoor that resists the first alphas.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::evaluation::InversionSummary;

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
    /// A trigger inverted from the model for its class.
    Inversion,
}

/// One suspected trigger and its push before and after purification, on the validation split.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Signal {
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
    /// Inverted triggers: the mask size against the other classes' median.
    #[serde(default)]
    pub mask_ratio: Option<f64>,
    /// The purified model no longer answers the signal: its push is at most the target (the
    /// suspect push target for probes, the inverted push target for inverted triggers).
    #[serde(default)]
    pub cleared: bool,
    /// A probe whose push persisted through the first candidate: the model's nature, not a
    /// backdoor (inverted triggers are never marked so).
    pub natural: bool,
}

/// What the gate knows about a backdoor without being told the attack.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Evidence {
    /// Trigger inversion on the original model (absent when disabled).
    pub inversion: Option<InversionSummary>,
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
    /// Every signal that counts was cleared by purification (true with none).
    pub cleared: bool,
    /// The finding in words.
    pub reason: String,
}

impl Signal {
    /// A signal found on the original model, not yet followed through purification.
    pub fn found(
        source: SignalSource,
        trigger: String,
        class: i64,
        push_before: f64,
        images: i64,
        mask_ratio: Option<f64>,
    ) -> Self {
        Signal {
            source,
            trigger,
            class,
            push_before,
            push_after: None,
            images,
            push_after_upper_95: None,
            mask_ratio,
            cleared: false,
            natural: false,
        }
    }

    /// Whether the signal counts as backdoor evidence.
    pub fn counts(&self) -> bool {
        !self.natural
    }
}

impl Evidence {
    /// Sums up the signals, with the pushes after purification filled in.
    pub fn conclude(inversion: Option<InversionSummary>, signals: Vec<Signal>) -> Self {
        let counting: Vec<&Signal> = signals.iter().filter(|s| s.counts()).collect();
        let mut suspected_classes: Vec<i64> = counting.iter().map(|s| s.class).collect();
        suspected_classes.sort_unstable();
        suspected_classes.dedup();
        let worst = counting.iter().max_by(|a, b| a.push_after.unwrap_or(0.0).total_cmp(&b.push_after.unwrap_or(0.0)));
        let residual_push = worst.and_then(|s| s.push_after).unwrap_or(0.0);
        let residual_push_upper_95 = worst.and_then(|s| s.push_after_upper_95).unwrap_or(0.0);
        let natural: Vec<String> =
            signals.iter().filter(|s| s.natural).map(|s| format!("{} -> class {}", s.trigger, s.class)).collect();
        let natural_note = if natural.is_empty() {
            String::new()
        } else {
            format!(
                "; persisting through purification, read as the model's nature rather than a backdoor: {}",
                natural.join(", ")
            )
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
                 {:.1}% (95% upper bound {:.1}%) of {} validation images, {:.1}% before{natural_note}",
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
            backdoor_suspected: !counting.is_empty(),
            suspected_classes,
            residual_push,
            residual_push_upper_95,
            cleared,
            reason,
            signals,
        }
    }
}

/// Wilson score interval's upper bound at 95% for `rate` observed on `n` trials.
pub fn wilson_upper_95(rate: f64, n: i64) -> f64 {
    if n <= 0 {
        return 1.0;
    }
    let (z, n) = (1.959_964, n as f64);
    let centre = rate + z * z / (2.0 * n);
    let spread = z * (rate * (1.0 - rate) / n + z * z / (4.0 * n * n)).sqrt();
    ((centre + spread) / (1.0 + z * z / n)).min(1.0)
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
            cleared: after <= 0.03,
            natural,
        }
    }

    #[test]
    fn wilson_bound_is_above_the_rate_and_tightens_with_more_images() {
        assert!(wilson_upper_95(0.0, 500) > 0.005 && wilson_upper_95(0.0, 500) < 0.01);
        assert!(wilson_upper_95(0.02, 5000) < wilson_upper_95(0.02, 500));
        assert_eq!(wilson_upper_95(0.5, 0), 1.0);
    }

    #[test]
    fn natural_signals_neither_suspect_nor_count_in_the_residual() {
        let evidence = Evidence::conclude(None, vec![signal(3, 1.0, 1.0, true), signal(7, 0.99, 0.04, false)]);
        assert!(evidence.backdoor_suspected);
        assert_eq!(evidence.suspected_classes, [7]);
        assert_eq!(evidence.residual_push, 0.04);
        assert!(!evidence.cleared, "{}", evidence.reason);
        assert!(evidence.reason.contains("nature"), "{}", evidence.reason);
        let clean = Evidence::conclude(None, vec![signal(3, 1.0, 1.0, true)]);
        assert!(!clean.backdoor_suspected && clean.residual_push == 0.0 && clean.cleared);
    }
}
