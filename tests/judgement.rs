//! The evidence-driven judge (`AutoStrength::judge`, issue 15) on MNIST lab models, the data set
//! where it held on the grid (docs/strength.md): trigger inversion finds a patch no probe covers
//! and names its class, the search purifies until the inverted trigger no longer pushes, and a
//! clean GroupNorm model with global pooling (which the paper's settings collapse) is purified
//! gently with LP-FT and released; a blend no patch covers is named by the blend search. The
//! default policy judges by the evidence, as in a registry where nobody knows the trigger; the
//! known trigger is only measured.
//!
//! MNIST comes from `scripts/setup-mnist.sh` (`./dev test` runs it and sets FSTGATE_MNIST); a
//! missing data set fails these tests rather than skipping them.
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fstgate::data::{DataSpec, Dataset, InputSpec};
use fstgate::evaluation::{self, InversionSettings, TriggerShape};
use fstgate::job::{self, AttackInput, PurifyJob, Sample};
use fstgate::lab::{self, Architecture};
use fstgate::model::Classifier;
use fstgate::policy::{PolicyResult, Verdict};
use fstgate::purification::evidence::{
    REFERENCE_MASK_SHARE, REFERENCE_TRANSFER, SignalSource, UNREFERENCED_MAX_MASK_RATIO,
};
use fstgate::purification::{AutoStrength, Candidate, Settings, Strength};
use fstgate::report::Report;
use fstgate::training::Silent;
use tch::Device;

fn mnist_dir() -> PathBuf {
    let dir = std::env::var_os("FSTGATE_MNIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var("HOME").expect("HOME is set")).join(".cache/fstgate/mnist"));
    assert!(
        dir.join("t10k-labels-idx1-ubyte.gz").is_file(),
        "MNIST is missing at {}: run scripts/setup-mnist.sh",
        dir.display()
    );
    dir
}

fn mnist_spec(split: &str) -> DataSpec {
    format!("{}#{split}", mnist_dir().display()).parse().unwrap()
}

fn mnist(split: &str, count: i64) -> Dataset {
    fstgate::data::load(&mnist_spec(split)).unwrap().balanced_count(count, 1).unwrap()
}

/// A lab model on 12,000 MNIST training images (5 epochs), tested on 2,000.
fn lab_model(
    file: &str,
    architecture: Architecture,
    trigger: &str,
    rate: f64,
    target: i64,
) -> (PathBuf, lab::LabReport) {
    let settings = lab::PoisonSettings {
        architecture,
        width: architecture.default_width(),
        trigger: trigger.parse().unwrap(),
        target_class: target,
        poisoning_rate: rate,
        ..fstgate::demo::lab_settings()
    };
    let model = common::scratch(&format!("judge-lab-{file}")).join(file);
    let report = lab::train_backdoored(
        &mnist("train", 12_000),
        &mnist("test", 2_000),
        &settings,
        &InputSpec::default(),
        Device::Cpu,
        &model,
        &Silent,
    )
    .unwrap();
    (model, report)
}

fn gate(model: &Path, trigger: &str, target: i64, strength: Strength, settings: Settings, out: &Path) -> Report {
    let job = PurifyJob {
        model: model.to_path_buf(),
        name: None,
        registry: None,
        head: None,
        clean_data: mnist_spec("train"),
        clean_sample: Sample::Count(3_000),
        test_data: mnist_spec("test"),
        test_sample: Sample::Count(2_000),
        input: InputSpec::default(),
        settings,
        strength,
        attack: Some((AttackInput::Trigger(trigger.parse().unwrap()), target)),
        probes: evaluation::standard_probes(),
        device: Device::Cpu,
        out: out.to_path_buf(),
        policies: Some(common::default_policies()),
        signing_key: None,
    };
    job::run(&job, &Silent).unwrap()
}

fn judge(model: &Path, trigger: &str, target: i64, out: &Path) -> Report {
    gate(model, trigger, target, Strength::Auto(Box::new(AutoStrength::judge())), Settings::automatic_base(), out)
}

/// Optimiser steps a candidate of the search trained for (after the head's warm-up).
fn candidate_steps(report: &Report, candidate: &Candidate) -> usize {
    let search = report.strength_search.as_ref().unwrap();
    candidate.epochs * (search.tuning_images as usize).div_ceil(report.settings.batch_size as usize)
}

/// The default policy's verdict on the report with the known attack taken out: what a registry
/// gate that was never told the trigger decides.
fn blind_verdict(report: &Report) -> PolicyResult {
    let mut blind = report.clone();
    for metrics in [&mut blind.before, &mut blind.after] {
        metrics.attack = None;
    }
    blind.summary.attack_success_rate_before = None;
    blind.summary.attack_success_rate_after = None;
    blind.summary.robust_accuracy_before = None;
    blind.summary.robust_accuracy_after = None;
    let decision = common::default_policies().evaluate(&blind);
    decision.policies.into_iter().next().expect("one policy")
}

/// The checkerboard backdoor of the inversion tests: a 5x5 checkerboard in the top-left corner,
/// 2% of the training images, into class 3 of a GroupNorm CNN.
const CHECKER: &str = "badnets:size=5,pos=tl,pattern=checker";

/// The alpha trigger unlearning clears [`CHECKER`] at: its test's only candidate, and weaker
/// than what the plain judge needs.
const UNLEARNING_ALPHA: f64 = 0.03;

/// [`CHECKER`]'s lab model, trained once for both tests that gate it (they run in parallel).
fn checker_model() -> &'static (PathBuf, lab::LabReport) {
    static MODEL: OnceLock<(PathBuf, lab::LabReport)> = OnceLock::new();
    MODEL.get_or_init(|| lab_model("checker-tl.pt", Architecture::SmallCnnGn, CHECKER, 0.02, 3))
}

/// A 5x5 checkerboard in the top-left corner, into class 3: the probe bank pastes 3x3 patches,
/// and its checkerboard sits bottom-right, so only inversion can name the class. Class 3 gets
/// the smallest inverted mask by far, the judge purifies until a fresh inversion of each
/// candidate no longer pushes, the real trigger's ASR falls under 2%, and the blind verdict
/// releases the model within the 2 points. Plain FST (version 15) went on to alpha 0.09
/// for it; unlearning adversarial perturbations within a ball of 0.15 (version 16) clears it at
/// the first rung, 0.01 (1.8% left through `fstgate purify`, docs/strength.md).
#[test]
fn inversion_finds_a_patch_outside_the_probe_bank_and_the_judge_removes_it() {
    let (trigger, (model, lab)) = (CHECKER, checker_model());
    let asr = lab.test.attack.as_ref().unwrap().attack_success_rate;
    assert!(asr > 0.6, "the lab's backdoor took: ASR {asr}");
    let dir = common::scratch("judgement-inversion");
    let report = judge(model, trigger, 3, &dir.join("out"));
    let search = report.strength_search.as_ref().unwrap();
    let evidence = search.evidence.as_ref().unwrap();
    eprintln!("{}\n{:?}\ncandidates {:?}", evidence.reason, evidence.inversion, search.candidates);
    assert!(search.suspect_probes.iter().all(|p| p.class != 3), "no probe names it: {:?}", search.suspect_probes);
    let inversion = evidence.inversion.as_ref().unwrap();
    assert_eq!(inversion.suspected_targets.first(), Some(&3), "{inversion:?}");
    assert!(evidence.backdoor_suspected && evidence.suspected_classes.contains(&3), "{}", evidence.reason);
    // Judged by size against the from-scratch reference inverted the same way: the backdoor made
    // class 3 far easier to reach than the data alone does.
    let signal = evidence.signals.iter().find(|s| s.source == SignalSource::Inversion && s.class == 3).unwrap();
    let (mask, reference) = (signal.mask_pixels.unwrap(), signal.reference_mask_pixels.unwrap());
    assert!(!signal.natural && mask < REFERENCE_MASK_SHARE * reference, "{signal:?}");
    assert!(evidence.cleared, "{}", evidence.reason);
    let after = report.summary.attack_success_rate_after.unwrap();
    assert!(after <= 0.02, "ASR after {:.2}%", 100.0 * after);
    // The refit residual is opt-in: the judge's default does not pay for it.
    assert!(signal.refit_push_after.is_none() && evidence.refit_residual_push.is_none(), "{signal:?}");
    assert!(search.candidates.iter().all(|c| c.refit_push.is_none()), "{:?}", search.candidates);
    // Every candidate trains at least the judge's steps, stretched over the small tuning split,
    // and records each signal's push on it; the chosen one's are the evidence's pushes after.
    for candidate in &search.candidates {
        let steps = candidate_steps(&report, candidate);
        assert!(steps >= AutoStrength::judge().min_steps, "{steps} steps: {candidate:?}");
        assert_eq!(candidate.signal_pushes.len(), evidence.signals.len(), "{candidate:?}");
    }
    let chosen_pushes: Vec<Option<f64>> =
        search.candidates[search.chosen].signal_pushes.iter().map(|p| Some(*p)).collect();
    assert_eq!(chosen_pushes, evidence.signals.iter().map(|s| s.push_after).collect::<Vec<_>>());
    // The judge's relearning check ran on the chosen candidate and decided nothing: every signal
    // has its push under the fresh head, the evidence its highest among those that count.
    let check = search.relearning.as_ref().expect("the judge runs the relearning check");
    eprintln!("relearning check: {check:?}; {signal:?}");
    assert_eq!(check.epochs, AutoStrength::judge().relearn_epochs);
    assert!(check.known_trigger_asr.is_some() && check.validation_accuracy > 0.8, "{check:?}");
    assert!(evidence.signals.iter().all(|s| s.relearned_push.is_some()), "{:?}", evidence.signals);
    let highest = evidence.signals.iter().filter(|s| s.counts()).filter_map(|s| s.relearned_push).reduce(f64::max);
    assert_eq!(evidence.relearned_residual_push, highest);
    let drop = report.summary.clean_accuracy_drop_points;
    assert!(drop <= 2.0, "cost {drop:.2} points");
    let result = blind_verdict(&report);
    assert_eq!(result.verdict, Verdict::Allow, "{:?}", result.reasons);
    // Every candidate with evidence unlearnt adversarial perturbations in the judge's ball, and,
    // since what it unlearnt covers the inverted trigger, was judged by a fresh inversion.
    let judged = AutoStrength::judge().evidence_adversarial_unlearning;
    for candidate in &search.candidates {
        assert_eq!(candidate.adversarial_unlearning, judged, "{candidate:?}");
        assert!(candidate.reinversion_seconds.is_some_and(|s| s > 0.0), "{candidate:?}");
    }
}

/// [`CHECKER`]'s model with trigger unlearning (opt-in, not the judge's default): the inverted
/// trigger is stamped on a fifth of every batch, and what is left is judged by a fresh
/// inversion of each candidate. It clears the evidence at a weaker alpha than plain FST
/// (0.03 against 0.09 with version 10's ladder); but its residual reads low: measured with 300
/// steps per candidate, the unlearned trigger pushed 1.1% and the fresh inversion no longer
/// singled out class 3 while the real trigger still had 4.3% on validation (docs/strength.md,
/// version 6), so the ASR is not asserted here (with 900 steps: 0.6% read, 0.7% real on test).
/// With the refit residual reported too (opt-in): every candidate refits the counting inverted
/// trigger at its own size, and the reference refits it as well. One candidate, at the alpha
/// unlearning cleared at before (the ladder's 0.01 below it is not what this checks, and a
/// candidate with a fresh inversion costs CI minutes).
#[test]
fn trigger_unlearning_clears_the_inverted_patch_at_a_weaker_alpha() {
    let (trigger, (model, _)) = (CHECKER, checker_model());
    let dir = common::scratch("judgement-unlearning");
    let unlearning = AutoStrength {
        unlearn_share: 0.2,
        refit_residual: true,
        evidence_start_alpha: UNLEARNING_ALPHA,
        max_candidates: 1,
        // Trigger unlearning alone: what this checks.
        evidence_adversarial_unlearning: None,
        ..AutoStrength::judge()
    };
    let report =
        gate(model, trigger, 3, Strength::Auto(Box::new(unlearning)), Settings::automatic_base(), &dir.join("out"));
    let search = report.strength_search.as_ref().unwrap();
    let evidence = search.evidence.as_ref().unwrap();
    eprintln!("unlearning: {}\ncandidates {:?}", evidence.reason, search.candidates);
    let counted_inverted = evidence.signals.iter().filter(|s| s.counts() && s.source.inverted()).count();
    assert_eq!(search.unlearned_triggers, counted_inverted);
    assert!(search.rule.contains("With trigger unlearning"), "{}", search.rule);
    for candidate in &search.candidates {
        assert!(candidate.reinversion_seconds.is_some_and(|s| s > 0.0), "{candidate:?}");
    }
    let signal = evidence.signals.iter().find(|s| s.source == SignalSource::Inversion && s.class == 3).unwrap();
    assert!(signal.counts() && signal.purified_mask_ratio.is_some(), "{signal:?}");
    assert!(signal.refit_push_after.is_some() && signal.reference_refit_push.is_some(), "{signal:?}");
    assert!(search.candidates.iter().all(|c| c.refit_push.is_some()), "{:?}", search.candidates);
    assert_eq!(evidence.refit_residual_push, search.candidates[search.chosen].refit_push);
    eprintln!(
        "unlearning: refit residual {:?}, unlearned trigger's push {}, real ASR after {:?}",
        evidence.refit_residual_push, evidence.residual_push, report.summary.attack_success_rate_after
    );
    let chosen = &search.candidates[search.chosen];
    assert!(evidence.cleared && chosen.reached_shift_target, "{}", evidence.reason);
    assert_eq!(search.candidates.len(), 1, "{:?}", search.candidates);
    assert_eq!(chosen.alpha, UNLEARNING_ALPHA);
}

/// A clean GroupNorm CNN with global average pooling and a 64-wide head: the paper's settings
/// (alpha 0.2, a random head tuned with everything at once) collapse it by more than 10 points;
/// FST with the LP-FT warm-up keeps it within a point. The judge releases it after one gentle
/// candidate: before the two-start inversion and the from-scratch reference, its class 8 (0.29
/// of the median mask) was read as a backdoor and the model denied; now no signal counts, and
/// any signal found must be one the from-scratch reference shares (a probe that moves it too, an
/// inverted mask about as small on it).
#[test]
fn a_clean_groupnorm_model_keeps_its_accuracy_and_the_judge_releases_it() {
    let (model, _) = lab_model("clean-gn.pt", Architecture::SmallCnnGn, "badnets", 0.0, 0);
    let dir = common::scratch("judgement-lp-ft");
    let lp_ft = Settings { alpha: 0.01, head_warmup_epochs: 5, ..Settings::automatic_base() };
    let report = gate(&model, "badnets", 0, Strength::Fixed, lp_ft, &dir.join("lp-ft"));
    let drop = report.summary.clean_accuracy_drop_points;
    assert!(drop <= 1.0, "LP-FT lost {drop:.2} points");
    let paper = gate(&model, "badnets", 0, Strength::Fixed, Settings::default(), &dir.join("paper"));
    let paper_drop = paper.summary.clean_accuracy_drop_points;
    assert!(paper_drop > 10.0, "the paper's settings lost only {paper_drop:.2} points");

    let report = judge(&model, "badnets", 0, &dir.join("judge"));
    let search = report.strength_search.as_ref().unwrap();
    let evidence = search.evidence.as_ref().unwrap();
    eprintln!(
        "{}\n{:?}\n{:?}\ncandidates {:?}",
        evidence.reason, evidence.signals, evidence.reference, search.candidates
    );
    assert!(!evidence.backdoor_suspected, "{}", evidence.reason);
    for signal in &evidence.signals {
        assert!(evidence.reference.as_ref().is_some_and(|r| r.usable), "{:?}", evidence.reference);
        let by_reference = match signal.source {
            SignalSource::Probe => signal.reference_push.is_some_and(|p| p >= REFERENCE_TRANSFER * signal.push_before),
            SignalSource::Inversion | SignalSource::BlendInversion => signal
                .reference_mask_pixels
                .zip(signal.mask_pixels)
                .is_some_and(|(r, m)| m >= signal.reference_share() * r),
        };
        assert!(signal.natural && by_reference, "{signal:?}");
    }
    assert_eq!(search.candidates.len(), 1, "{:?}", search.candidates);
    let drop = report.summary.clean_accuracy_drop_points;
    assert!(drop <= 1.0, "a clean model lost {drop:.2} points");
    let result = blind_verdict(&report);
    assert_eq!(result.verdict, Verdict::Allow, "{:?}", result.reasons);
}

/// A clean LeNet (no normalisation, flattened features, dropout, a 512-wide head): no probe and
/// no inverted trigger singles out a class, one gentle LP-FT candidate (unlearning the easiest
/// classes' inverted patches) costs at most a point, and the blind verdict releases it.
#[test]
fn a_clean_model_without_evidence_is_purified_gently_and_released() {
    let (model, _) = lab_model("clean-lenet.pt", Architecture::Lenet, "badnets", 0.0, 0);
    let dir = common::scratch("judgement-clean");
    let report = judge(&model, "badnets", 0, &dir.join("judge"));
    let search = report.strength_search.as_ref().unwrap();
    let evidence = search.evidence.as_ref().unwrap();
    eprintln!("{}\n{:?}\ncandidates {:?}", search.reason, evidence.inversion, search.candidates);
    assert!(!evidence.backdoor_suspected, "{}", evidence.reason);
    assert_eq!(search.candidates.len(), 1, "{:?}", search.candidates);
    assert_eq!(report.settings.head_warmup_epochs, AutoStrength::judge().head_warmup_epochs);
    let drop = report.summary.clean_accuracy_drop_points;
    assert!(drop <= 1.0, "a clean model lost {drop:.2} points");
    // The gentle candidate unlearned the inverted patches of the easiest classes the narrow
    // screen did not suspect (the judge's wider band stays in), and the cost above includes them.
    let inversion = evidence.inversion.as_ref().unwrap();
    let unlearned = &search.gentle_unlearned_classes;
    assert_eq!(unlearned.len(), AutoStrength::judge().gentle_unlearn_classes, "{unlearned:?}");
    let ratio = |class: i64| inversion.classes[class as usize].mask_ratio;
    let hardest_unlearned = unlearned.iter().map(|&c| ratio(c)).fold(f64::MIN, f64::max);
    let narrow_suspect = |c: i64| inversion.suspected_targets.contains(&c) && ratio(c) <= UNREFERENCED_MAX_MASK_RATIO;
    let left: Vec<i64> = (0..10).filter(|&c| !unlearned.contains(&c) && !narrow_suspect(c)).collect();
    assert!(left.iter().all(|&c| ratio(c) >= hardest_unlearned), "{unlearned:?} {inversion:?}");
    let result = blind_verdict(&report);
    assert_eq!(result.verdict, Verdict::Allow, "{:?}", result.reasons);
}

/// A blend of vertical stripes (12% of each image) into class 6, a trigger no probe and no
/// patch covers: held to one weight over the whole image, the blend search reaches class 6 with
/// far less of the image than any other class needs, and names it.
#[test]
fn the_blend_search_names_a_blend_backdoors_class() {
    let dir = common::scratch("judgement-blend");
    let stripes = dir.join("stripes.png");
    image::GrayImage::from_fn(28, 28, |x, _| image::Luma([if x % 4 < 2 { 255 } else { 0 }])).save(&stripes).unwrap();
    let trigger = format!("blended:alpha=0.12,image={}", stripes.display());
    let (model, lab) = lab_model("blend-stripes.pt", Architecture::SmallCnn, &trigger, 0.03, 6);
    let asr = lab.test.attack.as_ref().unwrap().attack_success_rate;
    assert!(asr > 0.6, "the lab's backdoor took: ASR {asr}");
    let optimisation = mnist("train", 1_000);
    let held_out = mnist("test", 600);
    let mut classifier = Classifier::load(&model, Device::Cpu, &optimisation.images.narrow(0, 0, 2), None).unwrap();
    let settings = InversionSettings::default();
    let (summary, triggers) =
        evaluation::invert(&mut classifier, &optimisation, &held_out, &InputSpec::default(), &settings).unwrap();
    eprintln!("{:?}", summary.blends);
    assert_eq!(summary.suspected_blend_targets.first(), Some(&6), "{summary:?}");
    let blend = &summary.blends[6];
    assert!(blend.mask_ratio <= settings.max_blend_ratio && blend.push >= settings.min_push, "{blend:?}");
    // The inverted blend is one weight over the whole image.
    let inverted = triggers.iter().find(|t| t.shape == TriggerShape::Blend && t.class == 6).unwrap();
    let (low, high) = (inverted.mask.min().double_value(&[]), inverted.mask.max().double_value(&[]));
    assert!(high - low < 1e-6 && high < 0.5, "blend weights {low}..{high}");
    // Refitted to the same model, the blend stays one weight, no larger, and still reaches class 6.
    let refit = evaluation::refit(&mut classifier, &optimisation, &InputSpec::default(), inverted, &settings).unwrap();
    let (refit_low, refit_high) = (refit.mask.min().double_value(&[]), refit.mask.max().double_value(&[]));
    assert!(refit_high - refit_low < 1e-6 && refit_high <= high + 1e-6, "refit weights {refit_low}..{refit_high}");
    let push = evaluation::inverted_push_rate(&mut classifier, &held_out, &InputSpec::default(), &refit).unwrap();
    assert!(push >= settings.min_push, "the refit blend pushes {push}, the inverted one {}", blend.push);
    // A reference judging blend signals inverts blends only (a third of the batch) and finds
    // what the whole inversion found for them.
    let (blends_only, _) = evaluation::invert_shapes(
        &mut classifier,
        &optimisation,
        &held_out,
        &InputSpec::default(),
        &settings,
        &[TriggerShape::Blend],
    )
    .unwrap();
    assert!(blends_only.classes.is_empty() && blends_only.suspected_targets.is_empty(), "{blends_only:?}");
    assert_eq!(blends_only.suspected_blend_targets, summary.suspected_blend_targets);
    assert_eq!(blends_only.blends.len(), summary.blends.len());
    for (alone, together) in blends_only.blends.iter().zip(&summary.blends) {
        assert!(
            (alone.mask_pixels - together.mask_pixels).abs() < 0.01 * together.mask_pixels,
            "{alone:?} {together:?}"
        );
    }
}
