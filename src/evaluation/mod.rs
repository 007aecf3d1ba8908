//! Evaluation before and after purification: clean accuracy (overall and per class), attack
//! success rate and robust accuracy for a known trigger or a user-supplied poisoned set, and
//! trigger probes for when the attack is unknown.
mod inversion;
mod trigger;

use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tch::Tensor;

pub use inversion::{
    InversionSettings, InversionSummary, InvertedClass, InvertedTrigger, TriggerShape, invert, invert_shapes,
    push_rate as inverted_push_rate, refit,
};
pub use trigger::{BlendPattern, PatchPattern, Position, Trigger};

use crate::data::{Dataset, InputSpec};
use crate::error::{Error, Result};
use crate::model::Classifier;

/// What the attacker did, when the defender knows it.
pub enum Attack {
    /// Apply this trigger to the clean test images.
    Trigger {
        /// The attacker's trigger.
        trigger: Trigger,
        /// The class the backdoor sends triggered images to.
        target: i64,
    },
    /// Already-triggered test images with their TRUE labels.
    PoisonedSet {
        /// The triggered images, labelled with their true classes.
        data: Dataset,
        /// The class the backdoor sends triggered images to.
        target: i64,
    },
}

impl Attack {
    /// The class the backdoor sends triggered images to.
    pub fn target(&self) -> i64 {
        match self {
            Attack::Trigger { target, .. } | Attack::PoisonedSet { target, .. } => *target,
        }
    }

    fn describe(&self) -> String {
        match self {
            Attack::Trigger { trigger, .. } => trigger.to_string(),
            Attack::PoisonedSet { data, .. } => {
                format!("poisoned set {}", data.source.path.display())
            }
        }
    }
}

/// What to measure, the same before and after purification.
pub struct Plan {
    /// How images are prepared for the model.
    pub input: InputSpec,
    /// The known attack, if any: measured as ASR and RA.
    pub attack: Option<Attack>,
    /// Triggers tried when the attack is unknown (and reported alongside a known one).
    pub probes: Vec<Trigger>,
    /// Images per forward pass.
    pub batch_size: i64,
}

/// The standard probe bank: the paper's trigger families at their usual settings.
pub fn standard_probes() -> Vec<Trigger> {
    [
        "badnets:pos=br",
        "badnets:pos=tl",
        "badnets:pos=tr",
        "badnets:pos=bl",
        "badnets:pattern=checker",
        "blended:alpha=0.2,seed=0",
        "sig:delta=40,freq=6",
        "wanet:k=4,s=0.5,seed=0",
    ]
    .iter()
    .map(|spec| spec.parse().expect("built-in probe specs parse"))
    .collect()
}

/// A model's figures on the test set, measured once before and once after purification.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Metrics {
    /// C-Acc: accuracy on the clean test set.
    pub clean_accuracy: f64,
    /// Number of clean test images.
    pub test_images: i64,
    /// Accuracy per true class (NaN-free: classes absent from the test set are null).
    pub per_class_accuracy: Vec<Option<f64>>,
    /// ASR and RA for the known attack; absent when the attack is unknown.
    pub attack: Option<AttackMetrics>,
    /// Each probe trigger's result, in probe order.
    pub probes: Vec<ProbeResult>,
    /// The probe with the highest rate.
    pub worst_probe: Option<ProbeResult>,
    /// Wall-clock time the evaluation took, in seconds.
    pub seconds: f64,
    /// Whether each clean test image was classified right, in test-set order: it pairs the
    /// evaluations before and after purification image by image. Not in report.json, whose
    /// summary carries the paired counts (`summary.confidence_95.test_images`).
    #[serde(skip)]
    #[schemars(skip)]
    pub clean_correct: Vec<bool>,
}

/// How well the known attack works on the model.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AttackMetrics {
    /// The trigger's spec, or `poisoned set PATH` for a user-supplied poisoned test set.
    pub trigger: String,
    /// The class the backdoor sends triggered images to.
    pub target_class: i64,
    /// ASR: fraction of triggered non-target images predicted as the target class.
    pub attack_success_rate: f64,
    /// RA: fraction of the same images predicted as their true class.
    pub robust_accuracy: f64,
    /// Number of triggered non-target images.
    pub images: i64,
}

/// One probe trigger's effect: the class it pushes triggered images to most, and how often.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProbeResult {
    /// The probe's trigger spec.
    pub trigger: String,
    /// The class that the triggered images are most often pushed to.
    pub class: i64,
    /// Fraction of triggered images NOT of `class` that are predicted as `class`.
    pub rate: f64,
    /// Number of triggered images not of `class`, the rate's denominator (0 in reports written
    /// before fstgate recorded it).
    #[serde(default)]
    pub images: i64,
}

/// Runs the plan on the model (switched to eval mode) over the conformed test set.
pub fn evaluate(model: &mut Classifier, test: &Dataset, plan: &Plan) -> Result<Metrics> {
    let started = Instant::now();
    model.set_eval();
    let labels = test.labels_vec();
    let num_classes = model.num_classes;
    let clean = predictions(model, &test.images, plan, None)?;
    let clean_correct: Vec<bool> = clean.iter().zip(&labels).map(|(p, l)| p == l).collect();
    let correct = clean_correct.iter().filter(|right| **right).count();
    let per_class_accuracy = (0..num_classes)
        .map(|c| {
            let (hits, total) = clean
                .iter()
                .zip(&labels)
                .filter(|(_, l)| **l == c)
                .fold((0, 0), |(h, t), (p, l)| (h + usize::from(p == l), t + 1));
            (total > 0).then(|| hits as f64 / total as f64)
        })
        .collect();

    let attack = match &plan.attack {
        None => None,
        Some(attack) => {
            let target = attack.target();
            if !(0..num_classes).contains(&target) {
                return Err(Error::Settings(format!(
                    "target class {target} is not one of the model's {num_classes} classes"
                )));
            }
            let (predicted, true_labels) = match attack {
                Attack::Trigger { trigger, .. } => {
                    (predictions(model, &test.images, plan, Some(trigger))?, labels.clone())
                }
                Attack::PoisonedSet { data, .. } => (predictions(model, &data.images, plan, None)?, data.labels_vec()),
            };
            let victims: Vec<(i64, i64)> =
                predicted.into_iter().zip(true_labels).filter(|(_, l)| *l != target).collect();
            if victims.is_empty() {
                return Err(Error::Settings(format!(
                    "no test image outside the target class {target}: ASR is undefined"
                )));
            }
            let n = victims.len() as f64;
            Some(AttackMetrics {
                trigger: attack.describe(),
                target_class: target,
                attack_success_rate: victims.iter().filter(|(p, _)| *p == target).count() as f64 / n,
                robust_accuracy: victims.iter().filter(|(p, l)| p == l).count() as f64 / n,
                images: victims.len() as i64,
            })
        }
    };

    let mut probes = Vec::with_capacity(plan.probes.len());
    for probe in &plan.probes {
        let predicted = predictions(model, &test.images, plan, Some(probe))?;
        probes.push(worst_class(probe, &predicted, &labels, num_classes));
    }
    let worst_probe = probes.iter().max_by(|a, b| a.rate.total_cmp(&b.rate)).cloned();
    Ok(Metrics {
        clean_accuracy: correct as f64 / labels.len() as f64,
        test_images: labels.len() as i64,
        per_class_accuracy,
        attack,
        probes,
        worst_probe,
        seconds: started.elapsed().as_secs_f64(),
        clean_correct,
    })
}

/// A few triggered test images, to show a reader what the attack looks like and what the model
/// made of them before and after purification.
pub struct Examples {
    /// Triggered [0, 1] images [N, C, H, W], on the CPU.
    pub images: Tensor,
    /// Their true classes.
    pub labels: Vec<i64>,
}

impl Examples {
    /// The first test image of each class other than the target (at most `count`), triggered;
    /// for a poisoned set, its first image of each such class as given.
    pub fn select(test: &Dataset, attack: &Attack, count: usize) -> Result<Self> {
        let (source, trigger) = match attack {
            Attack::Trigger { trigger, .. } => (test, Some(trigger)),
            Attack::PoisonedSet { data, .. } => (data, None),
        };
        let mut picked: Vec<(i64, i64)> = Vec::with_capacity(count);
        for (index, label) in source.labels_vec().into_iter().enumerate() {
            if picked.len() == count {
                break;
            }
            if label != attack.target() && !picked.iter().any(|(_, l)| *l == label) {
                picked.push((index as i64, label));
            }
        }
        picked.sort_by_key(|(_, label)| *label);
        let index = Tensor::from_slice(&picked.iter().map(|(i, _)| *i).collect::<Vec<_>>());
        let mut images = source.images.index_select(0, &index);
        if let Some(trigger) = trigger {
            images = trigger.apply(&images)?;
        }
        Ok(Examples { images, labels: picked.into_iter().map(|(_, label)| label).collect() })
    }

    /// The model's predicted class for each example (switches the model to eval mode).
    pub fn classify(&self, model: &mut Classifier, plan: &Plan) -> Result<Vec<i64>> {
        model.set_eval();
        predictions(model, &self.images, plan, None)
    }
}

/// max over classes c of the fraction of non-c images predicted c.
fn worst_class(probe: &Trigger, predicted: &[i64], labels: &[i64], num_classes: i64) -> ProbeResult {
    push_rates(predicted, labels, num_classes)
        .into_iter()
        .enumerate()
        .map(|(c, rate)| (c as i64, rate))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(class, rate)| ProbeResult {
            trigger: probe.to_string(),
            class,
            rate,
            images: labels.iter().filter(|&&l| l != class).count() as i64,
        })
        .expect("a classifier has at least one class")
}

/// For each class c, the fraction of images not of class c that are predicted c.
fn push_rates(predicted: &[i64], labels: &[i64], num_classes: i64) -> Vec<f64> {
    (0..num_classes)
        .map(|c| {
            let (pushed, others) = predicted
                .iter()
                .zip(labels)
                .filter(|(_, l)| **l != c)
                .fold((0usize, 0usize), |(pushed, others), (p, _)| (pushed + usize::from(*p == c), others + 1));
            if others == 0 { 0.0 } else { pushed as f64 / others as f64 }
        })
        .collect()
}

/// Every probe's push rate to every class (`[probe][class]`, see `push_rates`) on `data`, for
/// following one suspicious (probe, class) pair through purification.
pub fn probe_push_rates(model: &mut Classifier, data: &Dataset, plan: &Plan) -> Result<Vec<Vec<f64>>> {
    model.set_eval();
    let labels = data.labels_vec();
    plan.probes
        .iter()
        .map(|probe| Ok(push_rates(&predictions(model, &data.images, plan, Some(probe))?, &labels, model.num_classes)))
        .collect()
}

/// Predicted classes for [0, 1] images (CPU), in batches on the model's device, optionally
/// triggered first.
fn predictions(model: &Classifier, images: &Tensor, plan: &Plan, trigger: Option<&Trigger>) -> Result<Vec<i64>> {
    model.stamped_predictions(images, &plan.input, plan.batch_size, |batch| match trigger {
        Some(trigger) => trigger.apply(batch),
        None => Ok(batch.shallow_clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_class_finds_the_pushed_class() {
        let probe: Trigger = "badnets".parse().unwrap();
        // Four images of class 1 and 2; three of them predicted 0.
        let result = worst_class(&probe, &[0, 0, 0, 2], &[1, 1, 2, 2], 3);
        assert_eq!(result.class, 0);
        assert!((result.rate - 0.75).abs() < 1e-9);
    }

    #[test]
    fn probe_bank_is_valid() {
        let bank = standard_probes();
        assert_eq!(bank.len(), 8);
        let images = Tensor::rand([1, 1, 28, 28], (tch::Kind::Float, tch::Device::Cpu));
        for probe in bank {
            assert_eq!(probe.apply(&images).unwrap().size(), images.size());
        }
    }
}
