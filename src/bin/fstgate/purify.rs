//! `fstgate purify`: one model purified, evaluated before and after, judged and (with a key)
//! signed, outside any pipeline; and the table of figures it (and the demo) prints.
use std::path::PathBuf;

use clap::Args;
use fstgate::data::{Augmentation, DataSpec};
use fstgate::device;
use fstgate::evaluation::{self, InversionSettings, Trigger};
use fstgate::job::{self, AttackInput, PurifyJob, Sample};
use fstgate::model::Precision;
use fstgate::pipeline::KeyConfig;
use fstgate::policy::Decision;
use fstgate::purification::{AutoStrength, Method, Settings, Strength};
use fstgate::report::Report;
use fstgate::training::AdversarialUnlearning;

use fstgate::schemas::parse_name;

use crate::args::{InputArgs, PolicyArgs, runtime};

#[derive(Args)]
pub(crate) struct PurifyArgs {
    /// TorchScript archive, or an MLflow model directory with a TorchScript pytorch flavour.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Module path of the classification head (found automatically when omitted).
    #[arg(long)]
    pub(crate) head: Option<String>,
    /// Clean tuning data: PATH, or DIR#train / DIR#test for IDX and CIFAR-10 directories.
    #[arg(long)]
    pub(crate) clean_data: DataSpec,
    /// Fraction of the clean data to tune on, class-balanced.
    #[arg(long, default_value_t = 0.02, conflicts_with = "clean_count")]
    pub(crate) clean_fraction: f64,
    /// Number of clean images to tune on, class-balanced (instead of --clean-fraction).
    #[arg(long)]
    pub(crate) clean_count: Option<i64>,
    /// Clean test data (same spec syntax).
    #[arg(long)]
    pub(crate) test_data: DataSpec,
    /// Evaluate on this many test images, class-balanced (default: all).
    #[arg(long)]
    pub(crate) test_count: Option<i64>,
    /// The known trigger, e.g. badnets:size=3,pos=br | blended:alpha=0.2,seed=0 | sig | wanet.
    #[arg(long, conflicts_with = "poisoned_test_data")]
    pub(crate) trigger: Option<Trigger>,
    /// Already-triggered test images with their true labels (instead of --trigger).
    #[arg(long)]
    pub(crate) poisoned_test_data: Option<DataSpec>,
    /// The attack's target class.
    #[arg(long, default_value_t = 0)]
    pub(crate) target_class: i64,
    /// Skip the trigger probes (trigger-agnostic backdoor check).
    #[arg(long)]
    pub(crate) no_probes: bool,
    /// fst, or a baseline: ft, lp, fe-tuning, ft-init.
    #[arg(long, value_parser = parse_name::<Method>, default_value = "fst")]
    pub(crate) method: Method,
    /// How FST's strength is chosen. auto, the default for fst unless --alpha, --epochs or --lr is
    /// given: hold out --validation-fraction of the clean set, train a few alphas from the
    /// original weights, and keep the most accurate on validation among those whose head shifted
    /// to cos(W, W0) <= --shift-target and that silenced the trigger probes the original model
    /// answered (README, docs/strength.md). fixed: the settings as given.
    #[arg(long, value_enum)]
    pub(crate) strength: Option<StrengthMode>,
    /// Automatic strength: fraction of the clean set held out for validation, class-balanced.
    #[arg(long, default_value_t = AutoStrength::default().validation_fraction)]
    pub(crate) validation_fraction: f64,
    /// Automatic strength: the first alpha tried (default 0.01; with --judge 0.001, the one
    /// candidate when there is no evidence of a backdoor).
    #[arg(long)]
    pub(crate) auto_start_alpha: Option<f64>,
    /// With --judge: the first alpha when there is evidence of a backdoor (default 0.01; 0.03
    /// before version 11).
    #[arg(long)]
    pub(crate) auto_evidence_start_alpha: Option<f64>,
    /// Automatic strength: at most this many candidates, each one tuning run (default 3; with
    /// --judge and no evidence 1).
    #[arg(long)]
    pub(crate) auto_candidates: Option<usize>,
    /// Automatic strength: optimiser steps per candidate at least, more epochs on small sets
    /// (default 1,500; with --judge 900).
    #[arg(long)]
    pub(crate) auto_min_steps: Option<usize>,
    /// Automatic strength: the head-shift target, cos(W, W0) at or below which a candidate counts
    /// as having moved the features off the backdoor.
    #[arg(long, allow_hyphen_values = true, default_value_t = AutoStrength::default().cosine_target)]
    pub(crate) shift_target: f64,
    /// Automatic strength: a trigger probe pushing at least this fraction of the original
    /// model's validation images into one class marks a suspected backdoor.
    #[arg(long, default_value_t = AutoStrength::default().suspect_push_rate)]
    pub(crate) suspect_push_rate: f64,
    /// Automatic strength: a candidate counts only once every suspect probe pushes at most this
    /// fraction into its class.
    #[arg(long, default_value_t = AutoStrength::default().suspect_push_target)]
    pub(crate) suspect_push_target: f64,
    /// Automatic strength: validation accuracy a candidate may lose, in points, before the search
    /// looks for a gentler one and the report warns.
    #[arg(long, default_value_t = AutoStrength::default().max_validation_drop_points)]
    pub(crate) max_validation_drop: f64,
    /// Automatic strength: train every candidate of the alpha ladder and record them all (for
    /// fitting the rule on a benchmark; slower, and not how a gate should run).
    #[arg(long)]
    pub(crate) auto_explore: bool,
    /// Automatic strength: the evidence-driven judge (trigger inversion with the probes, each
    /// signal judged against a from-scratch reference, LP-FT, the evidence as the only target;
    /// docs/strength.md). Experimental: not yet the default.
    #[arg(long)]
    pub(crate) judge: bool,
    /// With --judge: the share of every tuning batch stamped with the inverted triggers that
    /// count as evidence, under the images' own labels (trigger unlearning; default 0, none).
    /// Each candidate is then inverted afresh to judge what is left.
    #[arg(long)]
    pub(crate) auto_unlearn_share: Option<f64>,
    /// With --judge: refit each inverted trigger that counts as evidence to every candidate at
    /// no more than its own size and report its push beside the verdict's (the refit residual;
    /// it decides nothing, and costs a short refit per trigger and candidate).
    #[arg(long)]
    pub(crate) auto_refit_residual: bool,
    /// Automatic strength: epochs of the relearning check of the chosen candidate, a fresh head
    /// learnt alone on its frozen features from the clean images with every signal (and the
    /// named trigger) measured again under it; it decides nothing (default 0, none; with --judge
    /// 20; 0 turns it off).
    #[arg(long)]
    pub(crate) auto_relearn_epochs: Option<usize>,
    /// With --judge: optimiser steps of the trigger inversion, all classes together (default:
    /// the judge's).
    #[arg(long)]
    pub(crate) inversion_steps: Option<usize>,
    /// With --judge: clean images per class and step of the trigger inversion (default: the
    /// judge's).
    #[arg(long)]
    pub(crate) inversion_batch: Option<i64>,
    /// Epochs of linear probing of the re-initialised head before the full tuning (LP-FT;
    /// default 0, the paper; with --judge 5 per candidate).
    #[arg(long)]
    pub(crate) head_warmup_epochs: Option<usize>,
    /// The head warm-up's initial learning rate (default: the tuning's, --lr).
    #[arg(long)]
    pub(crate) head_warmup_lr: Option<f64>,
    /// FST from the original head instead of a re-initialised one (fixed strength only: the
    /// automatic strength decides its candidates' heads and refuses it).
    #[arg(long)]
    pub(crate) keep_head: bool,
    /// With --judge and no evidence of a backdoor: the number of classes, easiest to reach by an
    /// inverted patch, whose inverted triggers the gentle candidate unlearns (0: none).
    #[arg(long)]
    pub(crate) auto_gentle_unlearn_classes: Option<usize>,
    /// With --judge and no evidence of a backdoor: whether the gentle candidate is FST from the
    /// original head rather than from a re-initialised one (false gives version 8 back).
    #[arg(long)]
    pub(crate) auto_gentle_keep_head: Option<bool>,
    /// With --judge and no evidence of a backdoor: the share of every tuning batch the gentle
    /// candidate stamps with the easiest classes' inverted triggers.
    #[arg(long)]
    pub(crate) auto_gentle_unlearn_share: Option<f64>,
    /// With --judge and no evidence of a backdoor: how far the gentle candidate's features keep
    /// their tuning's change, in (0, 1] (WiSE-FT; default 0.5; 1 gives version 9 back).
    #[arg(long)]
    pub(crate) auto_gentle_feature_interpolation: Option<f64>,
    /// After the tuning, set every parameter but the head's this share of the way from the
    /// original weights to the tuned ones and re-estimate normalisation statistics (WiSE-FT;
    /// fixed strength only: the automatic strength decides it per candidate).
    #[arg(long)]
    pub(crate) feature_interpolation: Option<f64>,
    /// ASAM's radius for the full tuning (sharpness-aware minimisation, each step's gradient
    /// taken at the weights pushed this far uphill, scaled by their size; fixed strength only).
    #[arg(long)]
    pub(crate) sharpness_radius: Option<f64>,
    /// Distil from the original model at this weight while tuning (every candidate of the
    /// automatic strength too): the tuned model is held to the original's answers on the clean
    /// images, a trigger-stamped image to the original's answer without the trigger (opt-in,
    /// not yet the default; docs/strength.md).
    #[arg(long)]
    pub(crate) distill: Option<f64>,
    /// Unlearn universal adversarial perturbations on this share of every tuning batch (every
    /// candidate of the automatic strength too): a perturbation shared by those images is grown
    /// to misclassify them, then learnt under their own labels, without being told a trigger
    /// (opt-in, not yet the default; docs/strength.md).
    #[arg(long)]
    pub(crate) adversarial_unlearning: Option<f64>,
    /// The adversarial unlearning's ball, as a root-mean-square change per [0, 1] input value
    /// (default: 0.1 under --adversarial-unlearning, the judge's 0.15 on its candidates with
    /// evidence).
    #[arg(long)]
    pub(crate) adversarial_radius: Option<f64>,
    /// Projected-gradient steps that grow each adversarial perturbation (default: 5).
    #[arg(long)]
    pub(crate) adversarial_steps: Option<usize>,
    /// With --judge: when the evidence counts, every candidate unlearns universal adversarial
    /// perturbations on this share of every tuning batch, at --adversarial-radius and
    /// --adversarial-steps; the gentle candidate, which clean models get, does not (default: the
    /// judge's; 0: none).
    #[arg(long)]
    pub(crate) auto_evidence_adversarial: Option<f64>,
    /// With --judge: when the evidence counts, every candidate distils from the original model at
    /// this weight; the gentle candidate does not (default: the judge's; 0: none).
    #[arg(long)]
    pub(crate) auto_evidence_distill: Option<f64>,
    /// With --judge: one more candidate, sharpness-aware at this radius (ASAM), after a ladder
    /// whose candidates all left the evidence standing (default: the judge's; 0: none).
    #[arg(long)]
    pub(crate) auto_sharpness_radius: Option<f64>,
    /// With --judge: the share of the sharpness-aware candidate's tuning batches stamped with the
    /// inverted triggers that count as evidence (default: the judge's; 0: --auto-unlearn-share's).
    #[arg(long)]
    pub(crate) auto_sharpness_unlearn_share: Option<f64>,
    /// With --judge: an inverted trigger is cleared at its push on the from-scratch reference,
    /// up to this fraction, when that is above the 5% target (default: the judge's, 0.10; 0: the
    /// target alone).
    #[arg(long)]
    pub(crate) auto_inverted_reference_cap: Option<f64>,
    /// Epochs (fixed: 10; auto: 20 per candidate); fixes the strength unless --strength auto.
    #[arg(long)]
    pub(crate) epochs: Option<usize>,
    /// Learning rate (default 0.01); fixes the strength unless --strength auto.
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    #[arg(long, default_value_t = 0.9)]
    pub(crate) momentum: f64,
    #[arg(long, default_value_t = 0.0)]
    pub(crate) weight_decay: f64,
    #[arg(long, default_value_t = 128)]
    pub(crate) batch_size: i64,
    /// FST's weight on <W, W0> (default 0.2); fixes the strength.
    #[arg(long)]
    pub(crate) alpha: Option<f64>,
    /// Padding of the random crop, 0 disables it (fixed: 4; auto: 0).
    #[arg(long)]
    pub(crate) crop_padding: Option<i64>,
    /// No random horizontal flip (the fixed settings' default flips).
    #[arg(long, conflicts_with = "flip")]
    pub(crate) no_flip: bool,
    /// Random horizontal flip (off by default with the automatic strength).
    #[arg(long)]
    pub(crate) flip: bool,
    /// fp32, or bf16: bf16 autocast with channels-last tensors, faster on CUDA (not on the CPU).
    #[arg(long, value_parser = parse_name::<Precision>, default_value = "fp32")]
    pub(crate) precision: Precision,
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    #[command(flatten)]
    pub(crate) input: InputArgs,
    #[command(flatten)]
    pub(crate) policy: PolicyArgs,
    /// PEM file of the ECDSA P-256 key that signs the output (see `fstgate keygen`).
    #[arg(long, conflicts_with = "signing_key_env")]
    pub(crate) signing_key: Option<PathBuf>,
    /// Name of an environment variable holding the signing key's PEM.
    #[arg(long)]
    pub(crate) signing_key_env: Option<String>,
    /// PEM file of the signing key's certificate chain (its own certificate first): the
    /// signatures carry it, for `fstgate verify --ca` and `model_signing verify certificate`.
    #[arg(long)]
    pub(crate) signing_cert: Option<PathBuf>,
    /// Output directory (must not exist): model.pt and report.json, plus the signed attestations.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Run the model in the confined worker process (as the pipeline does), without progress
    /// bars. The default when the output is signed: the model's code never runs next to the key.
    #[arg(long)]
    pub(crate) isolate: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StrengthMode {
    Auto,
    Fixed,
}

pub(crate) fn sample(count: Option<i64>) -> Sample {
    count.map_or(Sample::All, Sample::Count)
}

/// The adversarial unlearning's ball: the command line's radius and steps where it names them,
/// else `preset`'s (the judge's evidence candidates'), else the library's defaults. The share is
/// the preset's or 0, for the caller to set.
fn adversarial_ball(args: &PurifyArgs, preset: Option<AdversarialUnlearning>) -> AdversarialUnlearning {
    let preset = preset.unwrap_or(AdversarialUnlearning {
        share: 0.0,
        radius: fstgate::training::ADVERSARIAL_RADIUS,
        steps: fstgate::training::ADVERSARIAL_STEPS,
    });
    AdversarialUnlearning {
        radius: args.adversarial_radius.unwrap_or(preset.radius),
        steps: args.adversarial_steps.unwrap_or(preset.steps),
        ..preset
    }
}

/// The automatic strength's flags given on the command line, which a fixed strength would
/// otherwise silently ignore. (Flags with a default value cannot be told apart from their
/// default and are not listed.)
fn automatic_only_flags(args: &PurifyArgs) -> Vec<&'static str> {
    let given = [
        ("--judge", args.judge),
        ("--auto-explore", args.auto_explore),
        ("--auto-refit-residual", args.auto_refit_residual),
        ("--auto-start-alpha", args.auto_start_alpha.is_some()),
        ("--auto-evidence-start-alpha", args.auto_evidence_start_alpha.is_some()),
        ("--auto-candidates", args.auto_candidates.is_some()),
        ("--auto-min-steps", args.auto_min_steps.is_some()),
        ("--auto-unlearn-share", args.auto_unlearn_share.is_some()),
        ("--auto-relearn-epochs", args.auto_relearn_epochs.is_some()),
        ("--auto-gentle-unlearn-classes", args.auto_gentle_unlearn_classes.is_some()),
        ("--auto-gentle-keep-head", args.auto_gentle_keep_head.is_some()),
        ("--auto-gentle-unlearn-share", args.auto_gentle_unlearn_share.is_some()),
        ("--auto-gentle-feature-interpolation", args.auto_gentle_feature_interpolation.is_some()),
        ("--auto-evidence-adversarial", args.auto_evidence_adversarial.is_some()),
        ("--auto-evidence-distill", args.auto_evidence_distill.is_some()),
        ("--auto-sharpness-radius", args.auto_sharpness_radius.is_some()),
        ("--auto-sharpness-unlearn-share", args.auto_sharpness_unlearn_share.is_some()),
        ("--auto-inverted-reference-cap", args.auto_inverted_reference_cap.is_some()),
        ("--inversion-steps", args.inversion_steps.is_some()),
        ("--inversion-batch", args.inversion_batch.is_some()),
    ];
    given.into_iter().filter(|(_, given)| *given).map(|(flag, _)| flag).collect()
}

/// Auto unless asked otherwise, or the strength is given by hand, or the method has no alpha.
fn strength(args: &PurifyArgs) -> anyhow::Result<Strength> {
    let manual = args.alpha.is_some() || args.epochs.is_some() || args.lr.is_some();
    let auto = match args.strength {
        Some(StrengthMode::Auto) if args.alpha.is_some() => {
            anyhow::bail!("--alpha fixes FST's strength: leave it out with --strength auto, or use --strength fixed")
        }
        Some(mode) => mode == StrengthMode::Auto,
        None => args.method == Method::Fst && !manual,
    };
    if !auto {
        let ignored = automatic_only_flags(args);
        if !ignored.is_empty() {
            anyhow::bail!(
                "{} would be ignored: the automatic strength's flags apply only to it, and this run's strength \
                 is fixed (--strength fixed, a baseline --method, or --alpha, --epochs or --lr given); leave \
                 them out, or use --strength auto",
                ignored.join(", ")
            );
        }
    }
    let preset = if args.judge { AutoStrength::judge() } else { AutoStrength::default() };
    Ok(if auto {
        Strength::Auto(Box::new(AutoStrength {
            validation_fraction: args.validation_fraction,
            start_alpha: args.auto_start_alpha.unwrap_or(preset.start_alpha),
            evidence_start_alpha: args.auto_evidence_start_alpha.unwrap_or(preset.evidence_start_alpha),
            max_candidates: args.auto_candidates.unwrap_or(preset.max_candidates),
            min_steps: args.auto_min_steps.unwrap_or(preset.min_steps),
            cosine_target: args.shift_target,
            suspect_push_rate: args.suspect_push_rate,
            suspect_push_target: args.suspect_push_target,
            max_validation_drop_points: args.max_validation_drop,
            explore: args.auto_explore,
            inversion: InversionSettings {
                steps: args.inversion_steps.unwrap_or(preset.inversion.steps),
                batch_size: args.inversion_batch.unwrap_or(preset.inversion.batch_size),
                ..preset.inversion.clone()
            },
            head_warmup_epochs: args.head_warmup_epochs.unwrap_or(preset.head_warmup_epochs),
            gentle_unlearn_classes: args.auto_gentle_unlearn_classes.unwrap_or(preset.gentle_unlearn_classes),
            gentle_unlearn_share: args.auto_gentle_unlearn_share.unwrap_or(preset.gentle_unlearn_share),
            gentle_keeps_head: args.auto_gentle_keep_head.unwrap_or(preset.gentle_keeps_head),
            gentle_feature_interpolation: match args.auto_gentle_feature_interpolation {
                // 1 keeps the whole change: no interpolation at all.
                Some(1.0) => None,
                Some(t) => Some(t),
                None => preset.gentle_feature_interpolation,
            },
            unlearn_share: args.auto_unlearn_share.unwrap_or(preset.unlearn_share),
            refit_residual: args.auto_refit_residual || preset.refit_residual,
            relearn_epochs: args.auto_relearn_epochs.unwrap_or(preset.relearn_epochs),
            sharpness_radius: match args.auto_sharpness_radius {
                // 0 turns the sharpness-aware candidate off.
                Some(0.0) => None,
                Some(radius) => Some(radius),
                None => preset.sharpness_radius,
            },
            sharpness_unlearn_share: args.auto_sharpness_unlearn_share.unwrap_or(preset.sharpness_unlearn_share),
            inverted_push_reference_cap: args.auto_inverted_reference_cap.unwrap_or(preset.inverted_push_reference_cap),
            evidence_adversarial_unlearning: match (
                args.auto_evidence_adversarial,
                preset.evidence_adversarial_unlearning,
            ) {
                // 0 turns it off.
                (Some(0.0), _) | (None, None) => None,
                // The judge's ball unless the command line names one.
                (share, preset_ball) => {
                    let ball = adversarial_ball(args, preset_ball);
                    Some(AdversarialUnlearning { share: share.unwrap_or(ball.share), ..ball })
                }
            },
            evidence_distillation: match args.auto_evidence_distill {
                Some(0.0) => None,
                Some(weight) => Some(weight),
                None => preset.evidence_distillation,
            },
            ..preset
        }))
    } else {
        Strength::Fixed
    })
}

pub(crate) fn run(args: PurifyArgs, quiet: bool) -> anyhow::Result<()> {
    let device = device::resolve(args.input.device)?;
    let strength = strength(&args)?;
    let defaults = match strength {
        Strength::Auto(_) => Settings::automatic_base(),
        Strength::Fixed => Settings::default(),
    };
    let augmentation = Augmentation {
        crop_padding: args.crop_padding.unwrap_or(defaults.augmentation.crop_padding),
        horizontal_flip: (defaults.augmentation.horizontal_flip || args.flip) && !args.no_flip,
    };
    let ball = adversarial_ball(&args, None);
    let settings = Settings {
        method: args.method,
        epochs: args.epochs.unwrap_or(defaults.epochs),
        learning_rate: args.lr.unwrap_or(defaults.learning_rate),
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        batch_size: args.batch_size,
        alpha: args.alpha.unwrap_or(defaults.alpha),
        augmentation,
        seed: args.seed,
        precision: args.precision,
        head_warmup_epochs: args.head_warmup_epochs.unwrap_or(defaults.head_warmup_epochs),
        head_warmup_learning_rate: args.head_warmup_lr,
        keep_head: args.keep_head,
        feature_interpolation: args.feature_interpolation,
        sharpness_radius: args.sharpness_radius,
        distillation: args.distill,
        adversarial_unlearning: args.adversarial_unlearning.map(|share| AdversarialUnlearning { share, ..ball }),
    };
    let attack = match (args.trigger, args.poisoned_test_data) {
        (Some(trigger), _) => Some((AttackInput::Trigger(trigger), args.target_class)),
        (None, Some(spec)) => Some((AttackInput::PoisonedSet(spec), args.target_class)),
        (None, None) => None,
    };
    let job = PurifyJob {
        model: args.model,
        name: None,
        registry: None,
        head: args.head,
        clean_data: args.clean_data,
        clean_sample: args.clean_count.map_or(Sample::Fraction(args.clean_fraction), Sample::Count),
        test_data: args.test_data,
        test_sample: sample(args.test_count),
        input: args.input.spec(),
        settings,
        strength,
        attack,
        probes: if args.no_probes { Vec::new() } else { evaluation::standard_probes() },
        device,
        out: args.out,
        policies: Some(std::sync::Arc::new(args.policy.policy_set()?)),
        signing_key: match (&args.signing_key, &args.signing_key_env) {
            (None, None) if args.signing_cert.is_some() => anyhow::bail!("--signing-cert needs the key it certifies"),
            (None, None) => None,
            (path, env) => Some(
                KeyConfig { path: path.clone(), env: env.clone(), certificate_chain: args.signing_cert.clone() }
                    .load()?,
            ),
        },
    };
    tracing::info!(device = %device::name(device), method = ?job.settings.method, "purifying {}", job.model.display());
    let report = if args.isolate || job.signing_key.is_some() {
        tracing::info!("running the model in a confined worker process");
        let work = tempfile::tempdir()?;
        runtime()?.block_on(fstgate::worker::run(&job, &fstgate::worker::WorkerLimits::default(), 1, work.path()))?
    } else {
        let progress = fstgate::progress::for_terminal(quiet);
        job::run(&job, progress.as_ref())?
    };
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
    print_table(&report);
    print_decision(&report.decision);
    let signed = if job.signing_key.is_some() { ", signed attestations" } else { "" };
    println!("wrote {}: model.pt, report.json{signed}", job.out.display());
    Ok(())
}

fn percent(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

pub(crate) fn print_table(report: &Report) {
    let s = &report.summary;
    println!("{:<22} {:>9} {:>9}", "", "before", "after");
    let ci = s.confidence_95.as_ref();
    println!(
        "{:<22} {:>9} {:>9}   ({:+.1} points{})",
        "clean accuracy",
        percent(Some(s.clean_accuracy_before)),
        percent(Some(s.clean_accuracy_after)),
        -s.clean_accuracy_drop_points,
        ci.map_or_else(String::new, |c| {
            let change = c.clean_accuracy_drop_points.negated();
            format!(", 95% CI {:+.1} to {:+.1}", change.low, change.high)
        })
    );
    if let Some(attack) = &report.after.attack {
        println!(
            "{:<22} {:>9} {:>9}   ({}, target {}{})",
            "attack success rate",
            percent(s.attack_success_rate_before),
            percent(s.attack_success_rate_after),
            attack.trigger,
            attack.target_class,
            ci.and_then(|c| c.attack_success_rate_after).map_or_else(String::new, |i| format!(
                "; after: 95% CI {:.1}-{:.1}%",
                100.0 * i.low,
                100.0 * i.high
            ))
        );
        println!(
            "{:<22} {:>9} {:>9}",
            "robust accuracy",
            percent(s.robust_accuracy_before),
            percent(s.robust_accuracy_after)
        );
    }
    if let (Some(before), Some(after)) = (&report.before.worst_probe, &report.after.worst_probe) {
        println!(
            "{:<22} {:>9} {:>9}   (before: {} -> class {}; after: {} -> class {})",
            "worst trigger probe",
            percent(Some(before.rate)),
            percent(Some(after.rate)),
            before.trigger,
            before.class,
            after.trigger,
            after.class
        );
    }
    if let Some(search) = &report.strength_search {
        println!(
            "automatic strength: alpha {} after {} candidate(s): {}",
            report.settings.alpha,
            search.candidates.len(),
            search.reason
        );
    }
    println!(
        "{} on {}: {:.1} s tuning, {:.1} s total",
        format!("{:?}", report.settings.method).to_lowercase(),
        report.device,
        report.timings.purification_seconds,
        report.timings.total_seconds
    );
}

pub(crate) fn print_decision(decision: &Decision) {
    println!("decision: {}", if decision.releasable { "release" } else { "deny" });
    for policy in &decision.policies {
        for reason in &policy.reasons {
            println!("  {}: {reason}", policy.name);
        }
    }
}
