//! Purification on a real backdoor: the lab trains a small CNN on Fashion-MNIST with 1% BadNets
//! poisoning, then FST (and vanilla fine-tuning, for the record) purify it.
mod common;

use std::path::Path;

use fstgate::data::{Augmentation, Dataset, InputSpec};
use fstgate::evaluation::{self, Attack, Plan};
use fstgate::job::{self, AttackInput, PurifyJob, Sample};
use fstgate::lab::{self, Architecture};
use fstgate::model::{Classifier, Precision};
use fstgate::purification::{self, AutoStrength, Method, Settings, Strength};
use fstgate::report::Report;
use fstgate::training::Silent;
use tch::{Device, Tensor};

const TEST_IMAGES: i64 = 2_000;

/// The lab's BadNets CNN as trained, probed with the first images of `sample`.
fn lab_classifier(sample: &Dataset) -> Classifier {
    Classifier::load(&common::badnets_model().model, Device::Cpu, &sample.images.narrow(0, 0, 4), None).unwrap()
}

fn settings(method: Method) -> Settings {
    Settings { method, ..fstgate_test_settings() }
}

/// The FST settings the acceptance test uses (see the test's doc comment for why).
fn fstgate_test_settings() -> Settings {
    Settings {
        method: Method::Fst,
        epochs: 20,
        learning_rate: 0.01,
        momentum: 0.9,
        weight_decay: 0.0,
        batch_size: 128,
        alpha: 0.02,
        augmentation: Augmentation::NONE,
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

fn purify_job(settings: Settings, clean: Sample, out: &Path) -> PurifyJob {
    PurifyJob {
        model: common::badnets_model().model.clone(),
        name: None,
        registry: None,
        head: None,
        clean_data: common::spec("train"),
        clean_sample: clean,
        test_data: common::spec("test"),
        test_sample: Sample::Count(TEST_IMAGES),
        input: InputSpec::default(),
        settings,
        strength: Strength::Fixed,
        attack: Some((AttackInput::Trigger("badnets".parse().unwrap()), 0)),
        probes: evaluation::standard_probes(),
        device: Device::Cpu,
        out: out.to_path_buf(),
        policies: Some(common::default_policies()),
        signing_key: None,
    }
}

fn row(name: &str, report: &Report) -> String {
    let s = &report.summary;
    format!(
        "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
        100.0 * s.clean_accuracy_before,
        100.0 * s.clean_accuracy_after,
        s.clean_accuracy_drop_points,
        100.0 * s.attack_success_rate_before.unwrap(),
        100.0 * s.attack_success_rate_after.unwrap(),
        100.0 * s.robust_accuracy_after.unwrap(),
        report.timings.purification_seconds
    )
}

/// FST removes a 1% BadNets backdoor (ASR < 5%) for at most 2 points of clean accuracy, where
/// vanilla fine-tuning with the same budget keeps the backdoor.
///
/// The settings are not the paper's CIFAR-10 defaults: on this small 28x28 CNN, the defaults
/// (2% clean data, alpha 0.2, 10 epochs, crop + flip) remove the backdoor but cost far more
/// than 2 points, because the head is driven to cos(W, W0) of about -0.7 and the features must
/// be re-learnt from 1,200 images. A gentler push (alpha 0.02) for longer (20 epochs) on 5%
/// clean data keeps the accuracy. The defaults run here too, for the record, and must at least
/// remove the backdoor. Choosing these per model automatically is issue 8's job.
#[test]
fn fst_removes_a_one_percent_badnets_backdoor_and_vanilla_ft_does_not() {
    let lab = common::badnets_model();
    let attack = lab.report.test.attack.as_ref().unwrap();
    assert!(attack.attack_success_rate > 0.8, "the lab's backdoor did not take: ASR {}", attack.attack_success_rate);
    assert!(lab.report.test.clean_accuracy > 0.85, "the lab's model is too weak: {}", lab.report.test.clean_accuracy);

    let dir = common::scratch("fst-vs-ft");
    let clean = Sample::Fraction(0.05);
    let fst = job::run(&purify_job(settings(Method::Fst), clean, &dir.join("fst")), &Silent).unwrap();
    let ft = job::run(&purify_job(settings(Method::Ft), clean, &dir.join("ft")), &Silent).unwrap();
    let paper =
        job::run(&purify_job(Settings::default(), Sample::Fraction(0.02), &dir.join("paper")), &Silent).unwrap();
    eprintln!("| method | C-Acc before | C-Acc after | drop (points) | ASR before | ASR after | RA after | tuning s |");
    eprintln!("|---|---|---|---|---|---|---|---|");
    eprintln!("{}", row("fst", &fst));
    eprintln!("{}", row("ft", &ft));
    eprintln!("{}", row("fst, paper defaults", &paper));

    let after = fst.summary.attack_success_rate_after.unwrap();
    assert!(after < 0.05, "FST left ASR at {:.1}%", 100.0 * after);
    assert!(
        fst.summary.clean_accuracy_drop_points <= 2.0,
        "FST cost {:.2} points of clean accuracy",
        fst.summary.clean_accuracy_drop_points
    );
    let ft_after = ft.summary.attack_success_rate_after.unwrap();
    assert!(
        ft_after > 0.5,
        "vanilla FT was expected to keep the backdoor at 1% poisoning; ASR after {:.1}%",
        100.0 * ft_after
    );
    let paper_after = paper.summary.attack_success_rate_after.unwrap();
    assert!(paper_after < 0.05, "FST with the paper's defaults left ASR at {:.1}%", 100.0 * paper_after);
    // The trigger-agnostic probe bank sees the backdoor before and not after.
    let probe_before = fst.before.worst_probe.as_ref().unwrap();
    assert_eq!(probe_before.class, 0);
    assert!(probe_before.rate > 0.8, "{probe_before:?}");
}

/// The default (automatic) strength, with no hand-tuned setting, removes the same backdoor to
/// ASR <= 2% within the default policy's 2 points of clean accuracy (issue 15's bar); measured:
/// one candidate, alpha 0.01, 87.7% -> 86.1%, ASR 90.3% -> 1.7% (the BadNets probe is a suspect
/// and pushes 2.6% of the validation images after it, within the 3% target; at a 2% target the
/// search went on to alpha 0.03 and cost 3.45 points). The report shows every
/// candidate, and the written model is the chosen one.
#[test]
fn automatic_strength_removes_the_backdoor_within_the_default_policy() {
    let dir = common::scratch("auto-strength");
    let job = PurifyJob {
        strength: Strength::Auto(Box::default()),
        ..purify_job(Settings::automatic_base(), Sample::Fraction(0.05), &dir.join("auto"))
    };
    let report = job::run(&job, &Silent).unwrap();
    let search = report.strength_search.as_ref().expect("the automatic strength records its search");
    eprintln!("{}", row("fst, automatic strength", &report));
    for c in &search.candidates {
        eprintln!(
            "candidate alpha {:.4}: validation {:.1}% (drop {:.2}), cos {:.3}, {:.1} s",
            c.alpha,
            100.0 * c.validation_accuracy.unwrap(),
            c.validation_drop_points.unwrap(),
            c.head_cosine_to_original.unwrap(),
            c.seconds
        );
    }
    eprintln!("{}", search.reason);

    let after = report.summary.attack_success_rate_after.unwrap();
    assert!(after <= 0.02, "automatic strength left ASR at {:.2}%", 100.0 * after);
    let drop = report.summary.clean_accuracy_drop_points;
    assert!(drop <= 2.0, "automatic strength cost {drop:.2} points of clean accuracy");
    let chosen = &search.candidates[search.chosen];
    assert!(chosen.reached_shift_target, "{}", search.reason);
    assert_eq!(report.settings.alpha, chosen.alpha);
    assert_eq!(report.epochs.last().unwrap().head_cosine_to_original, chosen.head_cosine_to_original);
    assert!(search.candidates.len() <= AutoStrength::default().max_candidates);
    assert_eq!(search.tuning_images + search.validation_images, report.clean_data.images_used);
    // Every candidate's drop comes with its paired interval over the validation images.
    for c in &search.candidates {
        let interval = c.validation_drop_points_95.expect("a trained candidate's drop has its interval");
        assert!(interval.contains(c.validation_drop_points.unwrap()) && interval.high > interval.low, "{c:?}");
    }
}

/// A backdoor the head's shift does not see: blended noise on a GroupNorm CNN kept 8-11% ASR
/// after a candidate whose head reached cos -0.31 (docs/strength.md). The lab blends noise of
/// seed 7; the probe bank's noise has seed 0, so the search meets the trigger the way it would
/// meet an attacker's own pattern. The probe finds the backdoor on the original model (class 0),
/// the search goes on until the chosen candidate clears it, and ASR after is within the 2% bound.
#[test]
fn automatic_strength_follows_a_backdoor_the_probes_find_past_the_head_target() {
    let trigger = "blended:alpha=0.2,seed=7";
    let settings = lab::PoisonSettings {
        architecture: Architecture::SmallCnnGn,
        width: Architecture::SmallCnnGn.default_width(),
        trigger: trigger.parse().unwrap(),
        poisoning_rate: 0.05,
        ..fstgate::demo::lab_settings()
    };
    let lab = common::lab_model("blended-gn.pt", &settings);
    let dir = common::scratch("auto-strength-blended-gn");
    let job = PurifyJob {
        model: lab.model.clone(),
        attack: Some((AttackInput::Trigger(trigger.parse().unwrap()), 0)),
        strength: Strength::Auto(Box::default()),
        ..purify_job(Settings::automatic_base(), Sample::Count(3_000), &dir.join("auto"))
    };
    let report = job::run(&job, &Silent).unwrap();
    let search = report.strength_search.as_ref().unwrap();
    eprintln!("{}", row("fst, automatic strength, blended GroupNorm", &report));
    eprintln!("suspects {:?}\ncandidates {:?}\n{}", search.suspect_probes, search.candidates, search.reason);
    assert!(
        search.suspect_probes.iter().any(|p| p.trigger.starts_with("blended") && p.class == 0),
        "the noise probe finds the backdoor: {:?}",
        search.suspect_probes
    );
    let evidence = search.evidence.as_ref().unwrap();
    assert!(evidence.backdoor_suspected && evidence.suspected_classes.contains(&0), "{}", evidence.reason);
    assert!(evidence.cleared, "{}", evidence.reason);
    let chosen = &search.candidates[search.chosen];
    assert!(chosen.reached_shift_target, "{}", search.reason);
    let after = report.summary.attack_success_rate_after.unwrap();
    assert!(after <= 0.02, "ASR after {:.2}%", 100.0 * after);
    let drop = report.summary.clean_accuracy_drop_points;
    assert!(drop <= 3.0, "cost {drop:.2} points of clean accuracy");
}

/// 500 clean images: the search still runs (400 to tune, 100 to validate, each candidate
/// stretched towards 1,500 optimiser steps but capped at 100 epochs), says its validation is
/// coarse, and removes the backdoor.
/// Tuning every layer on 400 images costs this model several points of clean accuracy even at
/// the gentlest alpha, and the report says so: the default policy then denies the release.
#[test]
fn automatic_strength_with_500_clean_images() {
    let dir = common::scratch("auto-strength-500");
    let job = PurifyJob {
        strength: Strength::Auto(Box::default()),
        ..purify_job(Settings::automatic_base(), Sample::Count(500), &dir.join("auto"))
    };
    let report = job::run(&job, &Silent).unwrap();
    let search = report.strength_search.as_ref().unwrap();
    eprintln!("{}", row("fst, automatic strength, 500 clean images", &report));
    eprintln!("{}", search.reason);
    assert_eq!((search.tuning_images, search.validation_images), (400, 100));
    assert!(report.warnings.iter().any(|w| w.contains("validates on only 100 images")), "{:?}", report.warnings);
    assert!(search.candidates.iter().all(|c| c.epochs == 100), "{:?}", search.candidates);
    let after = report.summary.attack_success_rate_after.unwrap();
    assert!(after <= 0.02, "automatic strength on 500 images left ASR at {:.2}%", 100.0 * after);
    let chosen = &search.candidates[search.chosen];
    if chosen.validation_drop_points.unwrap() > search.settings.max_validation_drop_points {
        assert!(report.warnings.iter().any(|w| w.contains("over the 2-point budget")), "{:?}", report.warnings);
    }
}

/// Architectures the reference never saw: GroupNorm without BatchNorm, and a tuple output
/// (PyTorch-scripted fixtures). Every candidate trains without diverging, the report names them,
/// and the written model reloads with the same head.
#[test]
fn automatic_strength_on_groupnorm_and_tuple_output_models() {
    let dir = common::scratch("auto-strength-arch");
    for fixture in ["groupnorm.pt", "tuple_output.pt"] {
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heads").join(fixture);
        let job = PurifyJob {
            model,
            name: None,
            // Short candidates: this is about training these architectures at all, not quality.
            strength: Strength::Auto(Box::new(AutoStrength {
                max_candidates: 2,
                min_steps: 300,
                ..AutoStrength::default()
            })),
            settings: Settings { epochs: 2, batch_size: 16, ..Settings::automatic_base() },
            ..common::toy_job(&dir, fixture, 0)
        };
        let report = job::run(&job, &Silent).unwrap_or_else(|e| panic!("{fixture}: {e}"));
        let search = report.strength_search.as_ref().unwrap();
        assert!(matches!(search.candidates.len(), 1 | 2), "{fixture}: {:?}", search.candidates);
        for c in &search.candidates {
            assert!(c.failure.is_none(), "{fixture}: {c:?}");
            assert!(c.head_cosine_to_original.unwrap().is_finite(), "{fixture}: {c:?}");
        }
        let written = job.out.join(fstgate::attestation::MODEL_FILE);
        let sample = Tensor::rand([2, 1, 8, 8], (tch::Kind::Float, Device::Cpu));
        let reloaded = Classifier::load(&written, Device::Cpu, &sample, None).unwrap();
        assert_eq!(reloaded.head.name, report.model.head.name, "{fixture}");
    }
}

/// Same seed, same result on the CPU, to the bit.
#[test]
fn purification_is_reproducible_with_a_seed() {
    let dir = common::scratch("reproducible");
    let quick = Settings {
        epochs: 2,
        augmentation: Augmentation { crop_padding: 2, horizontal_flip: true },
        ..settings(Method::Fst)
    };
    let a = job::run(&purify_job(quick.clone(), Sample::Count(600), &dir.join("a")), &Silent).unwrap();
    let b = job::run(&purify_job(quick.clone(), Sample::Count(600), &dir.join("b")), &Silent).unwrap();
    assert_eq!(
        serde_json::to_value(&a.after).unwrap()["clean_accuracy"],
        serde_json::to_value(&b.after).unwrap()["clean_accuracy"]
    );
    for (x, y) in a.epochs.iter().zip(&b.epochs) {
        assert_eq!(x.loss.to_bits(), y.loss.to_bits(), "epoch {} loss differs", x.epoch);
    }
    let logits = |dir: &Path| {
        let test = common::fashion("test", 64, 3);
        let model = Classifier::load(&dir.join("model.pt"), Device::Cpu, &test.images, None).unwrap();
        tch::no_grad(|| model.logits(&test.images)).unwrap()
    };
    assert!(logits(&dir.join("a")).equal(&logits(&dir.join("b"))));
    let c = job::run(&purify_job(Settings { seed: 1, ..quick }, Sample::Count(600), &dir.join("c")), &Silent).unwrap();
    assert_ne!(a.epochs[0].loss.to_bits(), c.epochs[0].loss.to_bits(), "another seed must give another run");
}

/// The archive written after purification gives the in-memory model's logits, and reloads with
/// the same head and output contract.
#[test]
fn saved_model_reloads_with_identical_logits() {
    let dir = common::scratch("reload");
    let clean = common::fashion("train", 500, 5);
    let test = common::fashion("test", 256, 5);
    let mut model = lab_classifier(&test);
    let quick = Settings { epochs: 1, ..settings(Method::Fst) };
    purification::purify(&mut model, &clean, &InputSpec::default(), &quick, &Silent).unwrap();
    model.set_eval();
    let in_memory = tch::no_grad(|| model.logits(&test.images)).unwrap();
    let path = dir.join("model.pt");
    model.save(&path).unwrap();
    let reloaded = Classifier::load(&path, Device::Cpu, &test.images.narrow(0, 0, 4), None).unwrap();
    assert_eq!(reloaded.head, model.head);
    assert_eq!(reloaded.output, model.output);
    let from_disk = tch::no_grad(|| reloaded.logits(&test.images)).unwrap();
    let diff = (&in_memory - &from_disk).abs().max().double_value(&[]);
    assert!(diff == 0.0, "logits differ by {diff}");
    // And the purified model really differs from the backdoored one.
    let original = lab_classifier(&test);
    let before = tch::no_grad(|| original.logits(&test.images)).unwrap();
    assert!((before - from_disk).abs().max().double_value(&[]) > 1e-3);
}

/// Each method trains exactly the parameters FST.md says (one epoch at the paper's defaults).
#[test]
fn baselines_train_the_parameters_they_should() {
    let clean = common::fashion("train", 300, 7);
    let sample = clean.images.narrow(0, 0, 4);
    let lab = common::badnets_model();
    for method in [Method::Ft, Method::Lp, Method::FeTuning, Method::FtInit, Method::Fst] {
        let mut model = Classifier::load(&lab.model, Device::Cpu, &sample, None).unwrap();
        let before: Vec<(String, Tensor)> =
            model.named_parameters().unwrap().into_iter().map(|(n, t)| (n, t.copy())).collect();
        let (w0, _) = model.head_tensors().unwrap();
        let w0 = w0.copy();
        purification::purify(
            &mut model,
            &clean,
            &InputSpec::default(),
            &Settings { method, epochs: 1, ..Settings::default() },
            &Silent,
        )
        .unwrap();
        let head = &model.head;
        let changed = |name: &str| {
            let (_, old) = before.iter().find(|(n, _)| n == name).unwrap();
            let (_, new) = model.named_parameters().unwrap().into_iter().find(|(n, _)| n == name).unwrap();
            !old.equal(&new)
        };
        let backbone_changed =
            before.iter().any(|(n, _)| n != &head.weight && Some(n) != head.bias.as_ref() && changed(n));
        let head_changed = changed(&head.weight);
        match method {
            Method::Lp => assert!(!backbone_changed && head_changed, "{method:?}"),
            Method::FeTuning => assert!(backbone_changed, "{method:?}"),
            _ => assert!(backbone_changed && head_changed, "{method:?}"),
        }
        // Every method keeps the head on the sphere of the original norm.
        let (w, _) = model.head_tensors().unwrap();
        let ratio = w.norm().double_value(&[]) / w0.norm().double_value(&[]);
        assert!((ratio - 1.0).abs() < 1e-4, "{method:?}: head norm ratio {ratio}");
        // Methods that re-initialise start far from W0; FST pushes it to negative cosine.
        let cosine = fstgate::training::cosine(&w, &w0);
        match method {
            Method::Ft | Method::Lp => assert!(cosine > 0.9, "{method:?}: cosine {cosine}"),
            Method::Fst => assert!(cosine < 0.0, "{method:?}: cosine {cosine}"),
            Method::FeTuning | Method::FtInit => {
                assert!(cosine.abs() < 0.5, "{method:?}: cosine {cosine}")
            }
        }
    }
}

/// FST from the original head (`Settings::keep_head`): no re-initialisation and no warm-up, so
/// the head starts at W0 and FST's push turns it from there; other methods refuse the option.
#[test]
fn fst_keeping_the_head_starts_from_the_original_head() {
    let clean = common::fashion("train", 300, 7);
    let mut model = lab_classifier(&clean);
    let (w0, _) = model.head_tensors().unwrap();
    let w0 = w0.copy();
    let kept = Settings { epochs: 1, head_warmup_epochs: 5, keep_head: true, ..Settings::default() };
    let records = purification::purify(&mut model, &clean, &InputSpec::default(), &kept, &Silent).unwrap();
    assert_eq!(records.len(), 1, "the warm-up is for a re-initialised head only");
    let (w, _) = model.head_tensors().unwrap();
    let cosine = fstgate::training::cosine(&w, &w0);
    assert!(cosine > 0.9 && cosine < 1.0, "cosine {cosine}");
    let ft = Settings { method: Method::Ft, keep_head: true, ..Settings::default() };
    let error = purification::purify(&mut model, &clean, &InputSpec::default(), &ft, &Silent).unwrap_err();
    assert!(error.to_string().contains("keeping the original head is FST's variant"), "{error}");
}

/// With held-out images, every epoch of the warm-up and of the tuning records its validation
/// accuracy (the tuning curve), measured on the model as that epoch left it: the last record is
/// what the finished model scores. A faster warm-up learning rate gets the new head further in
/// the same epochs (0.1 against 0.01).
#[test]
fn the_tuning_curve_is_measured_on_held_out_images_every_epoch() {
    let tuning = common::fashion("train", 300, 11);
    let validation = common::fashion("test", 300, 12);
    let input = InputSpec::default();
    let plan = Plan { input: input.clone(), attack: None, probes: vec![], batch_size: 256 };
    let mut warmed_up = Vec::new();
    for warmup_lr in [None, Some(0.1)] {
        let mut model = lab_classifier(&tuning);
        let settings = Settings {
            epochs: 2,
            head_warmup_epochs: 3,
            head_warmup_learning_rate: warmup_lr,
            // The judge's gentle alpha: at the paper's 0.2 a fast warm-up turns the head to -W0.
            alpha: 0.001,
            augmentation: Augmentation::NONE,
            ..Settings::default()
        };
        let records =
            purification::purify_unlearning(&mut model, &tuning, &input, &settings, None, Some(&validation), &Silent)
                .unwrap();
        let curve: Vec<f64> = records.iter().map(|r| r.validation_accuracy.unwrap()).collect();
        assert_eq!(curve.len(), 5, "three warm-up epochs and two of tuning, each measured");
        assert_eq!(
            records[2].learning_rate,
            warmup_lr.unwrap_or(0.01) * (1.0 + (2.0 * std::f64::consts::PI / 3.0).cos()) / 2.0
        );
        let measured = evaluation::evaluate(&mut model, &validation, &plan).unwrap().clean_accuracy;
        assert_eq!(measured, curve[4], "the last record is the finished model's; curve {curve:?}");
        warmed_up.push(curve[2]);
    }
    assert!(warmed_up[1] > warmed_up[0] + 0.05, "after the warm-up: {warmed_up:?}");
    let fixed = purification::purify(
        &mut lab_classifier(&tuning),
        &tuning,
        &input,
        &Settings { epochs: 1, ..Settings::default() },
        &Silent,
    )
    .unwrap();
    assert!(fixed[0].validation_accuracy.is_none(), "without held-out images there is no curve");
}

/// WiSE-FT after the tuning (`Settings::feature_interpolation`): every parameter but the head's
/// lands the given share of the way from the original to where the same tuning took it, the head
/// is the tuned one, and the BatchNorm statistics are re-estimated on the clean images (at t = 1
/// the weights are the plain tuning's, yet the model predicts differently).
#[test]
fn feature_interpolation_scales_back_the_features_and_keeps_the_tuned_head() {
    let tuning = common::fashion("train", 300, 11);
    let input = InputSpec::default();
    let load = || lab_classifier(&tuning);
    let settings = Settings {
        epochs: 2,
        head_warmup_epochs: 1,
        alpha: 0.001,
        augmentation: Augmentation::NONE,
        ..Settings::default()
    };
    let tuned_with = |feature_interpolation: Option<f64>| {
        let mut model = load();
        let settings = Settings { feature_interpolation, ..settings.clone() };
        purification::purify(&mut model, &tuning, &input, &settings, &Silent).unwrap();
        model
    };
    let original = load();
    let (plain, half, whole) = (tuned_with(None), tuned_with(Some(0.5)), tuned_with(Some(1.0)));
    let head = [Some(original.head.weight.clone()), original.head.bias.clone()];
    let parameters = |model: &Classifier| model.named_parameters().unwrap();
    let mut moved = 0;
    for (((name, before), (_, after)), ((_, halfway), (_, kept))) in
        parameters(&original).iter().zip(parameters(&plain)).zip(parameters(&half).into_iter().zip(parameters(&whole)))
    {
        assert!(kept.allclose(&after, 1e-6, 1e-7, false), "{name}: at t = 1 the weights are the tuning's");
        if head.iter().flatten().any(|h| h == name) {
            assert!(halfway.equal(&after), "{name}: the head is the tuned one");
            continue;
        }
        let expected = (before + &after) / 2.0;
        assert!(halfway.allclose(&expected, 1e-5, 1e-6, false), "{name}: not halfway");
        moved += i32::from(!after.allclose(before, 1e-6, 1e-7, false));
    }
    assert!(moved > 4, "the tuning moved only {moved} feature parameters");
    let batch = input.normalize(&tuning.images.narrow(0, 0, 64));
    let logits = |model: &Classifier| model.logits(&batch).unwrap();
    assert!(!logits(&whole).allclose(&logits(&plain), 1e-4, 1e-5, false), "statistics not re-estimated");
    let refused = Settings { feature_interpolation: Some(0.0), ..settings.clone() }.validate().unwrap_err();
    assert!(refused.to_string().contains("feature interpolation must be in (0, 1]"), "{refused}");
}

/// Sharpness-aware tuning (`Settings::sharpness_radius`, ASAM): each step's gradient is taken at
/// weights pushed uphill and the push is taken back, so a vanishing radius is the plain tuning;
/// at ASAM's usual radius the tuning lands elsewhere and still classifies.
#[test]
fn sharpness_aware_tuning_takes_its_climb_back_and_lands_elsewhere() {
    let tuning = common::fashion("train", 300, 11);
    let input = InputSpec::default();
    // The new head first learns the features (as the judge's candidates do): the climb starts
    // from a model that classifies.
    let settings = Settings {
        epochs: 2,
        head_warmup_epochs: 3,
        head_warmup_learning_rate: Some(0.1),
        alpha: 0.001,
        augmentation: Augmentation::NONE,
        ..Settings::default()
    };
    let tuned_with = |sharpness_radius: Option<f64>| {
        let mut model = lab_classifier(&tuning);
        let settings = Settings { sharpness_radius, ..settings.clone() };
        purification::purify(&mut model, &tuning, &input, &settings, &Silent).unwrap();
        model
    };
    let (plain, vanishing, sharp) = (tuned_with(None), tuned_with(Some(1e-9)), tuned_with(Some(0.5)));
    let parameters = |model: &Classifier| model.named_parameters().unwrap();
    let mut differ = 0;
    for (((name, p), (_, v)), (_, s)) in parameters(&plain).iter().zip(parameters(&vanishing)).zip(parameters(&sharp)) {
        assert!(v.allclose(p, 1e-4, 1e-5, false), "{name}: a vanishing climb must leave the plain tuning");
        differ += i32::from(!s.allclose(p, 1e-4, 1e-5, false));
    }
    assert!(differ > 4, "the sharpness-aware tuning moved only {differ} parameters differently");
    let batch = input.normalize(&tuning.images);
    let correct = |model: &Classifier| {
        model.predict(&batch).unwrap().eq_tensor(&tuning.labels).sum(tch::Kind::Float).double_value(&[])
    };
    let (sharp_correct, plain_correct) = (correct(&sharp), correct(&plain));
    assert!(
        sharp_correct >= 0.5 * 300.0 && sharp_correct >= plain_correct - 30.0,
        "of 300 tuning images the sharpness-aware tuning classifies {sharp_correct}, the plain one {plain_correct}"
    );
    let refused = Settings { sharpness_radius: Some(0.0), ..settings.clone() }.validate().unwrap_err();
    assert!(refused.to_string().contains("sharpness radius must be positive"), "{refused}");
}

/// A user-supplied poisoned test set gives the same ASR as applying the trigger.
/// The relearning check's model (`purification::relearn_head`): a fresh head learnt alone from
/// clean images on frozen features. Every feature parameter stays exactly as it was, the head is
/// new, the model classifies again, and on the lab's backdoored CNN, whose features carry the
/// trigger, the backdoor comes back under a head that never saw a triggered image: the premise
/// of the check (linear probing keeps a backdoor, FST.md's LP baseline).
#[test]
fn relearning_a_head_on_backdoored_features_brings_the_backdoor_back() {
    let tuning = common::fashion("train", 1_000, 11);
    let test = common::fashion("test", 1_000, 12);
    let input = InputSpec::default();
    let load = || lab_classifier(&tuning);
    let original = load();
    let mut relearned = load();
    let relearning = purification::Relearning { epochs: 10, learning_rate: 0.1, batch_size: 128, seed: 3 };
    let records = purification::relearn_head(&mut relearned, &tuning, &input, &relearning, &Silent).unwrap();
    assert_eq!(records.len(), 10);
    let head = [Some(original.head.weight.clone()), original.head.bias.clone()];
    let parameters = |model: &Classifier| model.named_parameters().unwrap();
    for ((name, before), (_, after)) in parameters(&original).iter().zip(parameters(&relearned)) {
        if head.iter().flatten().any(|h| h == name) {
            assert!(!after.allclose(before, 1e-3, 1e-3, false), "{name}: the head was not drawn afresh");
        } else {
            assert!(after.equal(before), "{name}: a feature parameter moved");
        }
        assert!(after.requires_grad(), "{name}: left frozen");
    }
    let plan = Plan {
        input: input.clone(),
        attack: Some(Attack::Trigger { trigger: "badnets".parse().unwrap(), target: 0 }),
        probes: vec![],
        batch_size: 256,
    };
    let evaluate = |model: &mut Classifier| evaluation::evaluate(model, &test, &plan).unwrap();
    let before = evaluate(&mut load());
    let after = evaluate(&mut relearned);
    let (asr_before, asr_after) =
        (before.attack.unwrap().attack_success_rate, after.attack.unwrap().attack_success_rate);
    eprintln!(
        "relearned head: clean {:.1}% -> {:.1}%, ASR {:.1}% -> {:.1}%",
        100.0 * before.clean_accuracy,
        100.0 * after.clean_accuracy,
        100.0 * asr_before,
        100.0 * asr_after
    );
    assert!(after.clean_accuracy > 0.75, "the fresh head did not learn: {:.1}%", 100.0 * after.clean_accuracy);
    // Measured: 90.9% with the lab's head, 49.0% under the fresh one; a clean model sends 1-2% of
    // images with this patch to class 0.
    assert!(asr_after > 0.2, "the backdoor in the features did not come back: ASR {:.1}%", 100.0 * asr_after);
    let refused = purification::relearn_head(
        &mut relearned,
        &tuning,
        &input,
        &purification::Relearning { epochs: 0, ..relearning },
        &Silent,
    )
    .unwrap_err();
    assert!(refused.to_string().contains("relearning check needs epochs"), "{refused}");
}

/// The relearning check (`AutoStrength::relearn_epochs`) decides nothing and leaves the chosen
/// candidate as it was: the same search with and without it ends in identical weights. With it,
/// the search records the fresh head's figures, every signal's push under it and the named
/// trigger's success rate.
#[test]
fn the_relearning_check_measures_a_fresh_head_and_leaves_the_chosen_model_as_it_was() {
    let clean = common::fashion("train", 1_000, 21);
    let input = InputSpec::default();
    let trigger: evaluation::Trigger = "badnets".parse().unwrap();
    let search_with = |relearn_epochs: usize| {
        let mut model = lab_classifier(&clean);
        let auto = AutoStrength { max_candidates: 1, min_steps: 60, relearn_epochs, ..AutoStrength::default() };
        let strength = Strength::Auto(Box::new(auto));
        let purified = purification::purify_with_strength(
            &mut model,
            &clean,
            &input,
            &Settings::automatic_base(),
            &strength,
            Some((&trigger, 0)),
            &Silent,
        )
        .unwrap();
        (model, purified.search.unwrap())
    };
    let (plain, without) = search_with(0);
    let (checked, with) = search_with(5);
    assert!(without.relearning.is_none());
    for ((name, a), (_, b)) in plain.named_parameters().unwrap().iter().zip(checked.named_parameters().unwrap()) {
        assert!(a.equal(&b), "{name}: the check changed the chosen model");
    }
    let check = with.relearning.as_ref().expect("the check ran");
    eprintln!("{check:?}; chosen candidate: {:?}", with.candidates[with.chosen]);
    assert_eq!((check.epochs, check.learning_rate), (5, purification::RELEARN_LEARNING_RATE));
    assert!(check.validation_accuracy > 0.6, "the fresh head did not learn: {check:?}");
    assert!(check.known_trigger_asr.is_some_and(|asr| (0.0..=1.0).contains(&asr)), "{check:?}");
    let evidence = with.evidence.as_ref().unwrap();
    assert!(!evidence.signals.is_empty(), "the BadNets probe is a suspect on this model");
    assert!(evidence.signals.iter().all(|s| s.relearned_push.is_some()), "{:?}", evidence.signals);
    assert!(without.evidence.as_ref().unwrap().signals.iter().all(|s| s.relearned_push.is_none()));
}

/// Distillation from the original model (`Settings::distillation`) holds the tuned model to the
/// original's answers on clean images and a stamped image to the original's answer on the image
/// without the trigger: under FST's strong push (the paper's alpha 0.2 from a re-initialised
/// head) more answers change without it; with the true trigger stamped on a share of every
/// batch, distillation keeps the answers and the backdoor goes.
#[test]
fn distillation_holds_the_original_answers_and_unlearns_what_is_stamped() {
    let tuning = common::fashion("train", 1_000, 13);
    let test = common::fashion("test", 1_000, 14);
    let input = InputSpec::default();
    let trigger: evaluation::Trigger = "badnets".parse().unwrap();
    let answers = |model: &Classifier| {
        model.stamped_predictions(&test.images, &input, 256, |batch| Ok(batch.shallow_clone())).unwrap()
    };
    let original = answers(&lab_classifier(&tuning));
    let strong = Settings { epochs: 2, alpha: 0.2, augmentation: Augmentation::NONE, ..Settings::default() };
    let stamp = |images: &Tensor| trigger.apply(images);
    let tuned = |distillation: Option<f64>, unlearning: Option<fstgate::training::Unlearning>| {
        let mut model = lab_classifier(&tuning);
        let settings = Settings { distillation, ..strong.clone() };
        purification::purify_unlearning(&mut model, &tuning, &input, &settings, unlearning, None, &Silent).unwrap();
        model
    };
    let agreement = |model: &Classifier| {
        let same = answers(model).iter().zip(&original).filter(|(a, b)| a == b).count();
        same as f64 / original.len() as f64
    };
    let plain = agreement(&tuned(None, None));
    let distilled = agreement(&tuned(Some(1.0), None));
    let unlearning = fstgate::training::Unlearning { share: 0.2, stamps: vec![&stamp] };
    let mut unlearnt = tuned(Some(1.0), Some(unlearning));
    let plan = Plan {
        input: input.clone(),
        attack: Some(Attack::Trigger { trigger: trigger.clone(), target: 0 }),
        probes: vec![],
        batch_size: 256,
    };
    let asr = evaluation::evaluate(&mut unlearnt, &test, &plan).unwrap().attack.unwrap().attack_success_rate;
    let kept = agreement(&unlearnt);
    eprintln!(
        "agreement with the original: plain FST {:.1}%, distilled {:.1}%, distilled and unlearnt {:.1}% (ASR {:.1}%)",
        100.0 * plain,
        100.0 * distilled,
        100.0 * kept,
        100.0 * asr
    );
    assert!(distilled > plain + 0.03, "distillation kept no more answers: {distilled} against {plain}");
    assert!(kept > plain, "unlearning under distillation kept fewer answers: {kept} against {plain}");
    assert!(asr < 0.05, "the stamped trigger was not unlearnt: ASR {:.1}%", 100.0 * asr);
    let refused = Settings { distillation: Some(0.0), ..strong };
    let mut model = lab_classifier(&tuning);
    let error = purification::purify(&mut model, &tuning, &input, &refused, &Silent).unwrap_err();
    assert!(error.to_string().contains("distillation weight must be positive"), "{error}");
}

/// Adversarial unlearning (`Settings::adversarial_unlearning`) removes a backdoor it was never
/// told about: each step grows one perturbation that misclassifies a share of the batch, and the
/// tuning learns those images under their own labels. Plain fine-tuning of the lab model on clean
/// images keeps its patch; with the universal perturbations unlearnt beside it, the patch goes.
/// A share outside (0, 1] is refused.
#[test]
fn adversarial_unlearning_removes_a_trigger_it_was_not_told() {
    let tuning = common::fashion("train", 1_000, 13);
    let test = common::fashion("test", 1_000, 14);
    let input = InputSpec::default();
    let trigger: evaluation::Trigger = "badnets".parse().unwrap();
    let plan = Plan {
        input: input.clone(),
        attack: Some(Attack::Trigger { trigger, target: 0 }),
        probes: vec![],
        batch_size: 256,
    };
    let fine_tuning = Settings { epochs: 30, ..settings(Method::Ft) };
    let measured = |settings: &Settings| {
        let mut model = lab_classifier(&tuning);
        purification::purify(&mut model, &tuning, &input, settings, &Silent).unwrap();
        let metrics = evaluation::evaluate(&mut model, &test, &plan).unwrap();
        (metrics.attack.unwrap().attack_success_rate, metrics.clean_accuracy)
    };
    let adversarial = fstgate::training::AdversarialUnlearning {
        share: 0.2,
        radius: fstgate::training::ADVERSARIAL_RADIUS,
        steps: fstgate::training::ADVERSARIAL_STEPS,
    };
    let (asr_plain, accuracy_plain) = measured(&fine_tuning);
    let (asr, accuracy) = measured(&Settings { adversarial_unlearning: Some(adversarial), ..fine_tuning.clone() });
    eprintln!(
        "fine-tuning: ASR {:.1}%, C-Acc {:.1}%; with adversarial unlearning: ASR {:.1}%, C-Acc {:.1}%",
        100.0 * asr_plain,
        100.0 * accuracy_plain,
        100.0 * asr,
        100.0 * accuracy
    );
    assert!(asr_plain > 0.5, "fine-tuning alone removed the patch: {:.1}%", 100.0 * asr_plain);
    assert!(asr < asr_plain / 2.0, "adversarial unlearning left ASR at {:.1}%", 100.0 * asr);
    assert!(accuracy > accuracy_plain - 0.05, "it cost {accuracy} against {accuracy_plain}");
    let refused = Settings {
        adversarial_unlearning: Some(fstgate::training::AdversarialUnlearning { share: 1.5, ..adversarial }),
        ..fine_tuning
    };
    let error = purification::purify(&mut lab_classifier(&tuning), &tuning, &input, &refused, &Silent).unwrap_err();
    assert!(error.to_string().contains("adversarial unlearning share must be in (0, 1]"), "{error}");
}

/// With its own unlearning share, the sharpness-aware candidate, and only it, stamps the inverted
/// triggers that count on its tuning batches: the ladder before it unlearns nothing and is not
/// inverted afresh, while the sharpness-aware candidate is (an unlearned trigger's own push falls
/// by construction).
#[test]
fn only_the_sharpness_aware_candidate_unlearns_at_its_own_share() {
    let clean = common::fashion("train", 1_000, 21);
    let mut model = lab_classifier(&clean);
    let auto = AutoStrength {
        max_candidates: 1,
        min_steps: 60,
        invert_triggers: true,
        // Targets no candidate meets, so the ladder's one candidate leaves the evidence standing.
        suspect_push_target: 1e-9,
        inverted_push_target: 1e-9,
        sharpness_radius: Some(0.5),
        sharpness_unlearn_share: 0.2,
        ..AutoStrength::default()
    };
    let trigger: evaluation::Trigger = "badnets".parse().unwrap();
    let purified = purification::purify_with_strength(
        &mut model,
        &clean,
        &InputSpec::default(),
        &Settings::automatic_base(),
        &Strength::Auto(Box::new(auto)),
        Some((&trigger, 0)),
        &Silent,
    )
    .unwrap();
    let search = purified.search.unwrap();
    let evidence = search.evidence.as_ref().unwrap();
    eprintln!("{}\ncandidates {:?}", evidence.reason, search.candidates);
    let counted = evidence.signals.iter().filter(|s| s.counts() && s.source.inverted()).count();
    assert!(counted > 0, "inversion names the lab's patch: {:?}", evidence.signals);
    assert_eq!(search.unlearned_triggers, 0, "the ladder unlearns nothing");
    let [ladder, sharp] = &search.candidates[..] else { panic!("two candidates: {:?}", search.candidates) };
    assert_eq!((ladder.sharpness_radius, ladder.unlearn_share, ladder.reinversion_seconds), (None, None, None));
    assert_eq!((sharp.sharpness_radius, sharp.unlearn_share), (Some(0.5), Some(0.2)));
    assert!(sharp.reinversion_seconds.is_some_and(|s| s > 0.0), "{sharp:?}");
    assert!(search.rule.contains("unlearns the inverted triggers that count (0.2 of every tuning batch"));
}

#[test]
fn poisoned_test_set_matches_the_trigger() {
    let test = common::fashion("test", 500, 9);
    let mut model = lab_classifier(&test);
    let trigger: fstgate::evaluation::Trigger = "badnets".parse().unwrap();
    let triggered = trigger.apply(&test.images).unwrap();
    let poisoned = fstgate::data::Dataset::from_tensors(triggered, test.labels.copy(), test.source.clone()).unwrap();
    let input = InputSpec::default();
    let by_trigger = evaluation::evaluate(
        &mut model,
        &test,
        &Plan {
            input: input.clone(),
            attack: Some(Attack::Trigger { trigger, target: 0 }),
            probes: vec![],
            batch_size: 128,
        },
    )
    .unwrap();
    let by_set = evaluation::evaluate(
        &mut model,
        &test,
        &Plan {
            input,
            attack: Some(Attack::PoisonedSet { data: poisoned, target: 0 }),
            probes: vec![],
            batch_size: 128,
        },
    )
    .unwrap();
    let (a, b) = (by_trigger.attack.unwrap(), by_set.attack.unwrap());
    assert_eq!(a.attack_success_rate, b.attack_success_rate);
    assert_eq!(a.robust_accuracy, b.robust_accuracy);
    assert_eq!(a.images, b.images);
    assert!(a.images < 500, "target-class images are excluded from ASR");
}
