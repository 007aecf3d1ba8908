//! `fstgate lab`: the attack lab's commands (train a backdoored classifier on real data).
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use fstgate::data::{Augmentation, DataSpec};
use fstgate::device;
use fstgate::evaluation::Trigger;
use fstgate::lab::{self, Architecture, PoisonSettings};

use fstgate::schemas::parse_name;

use crate::args::InputArgs;

#[derive(Subcommand)]
pub(crate) enum LabCommand {
    /// Train a classifier on poisoned data and export it as TorchScript.
    Poison(PoisonArgs),
}

#[derive(Args)]
pub(crate) struct PoisonArgs {
    /// Training data (PATH or DIR#train).
    #[arg(long)]
    pub(crate) data: DataSpec,
    /// Train on this many images, class-balanced (default: all).
    #[arg(long)]
    pub(crate) train_count: Option<i64>,
    /// Test data for the lab's own check of clean accuracy and ASR.
    #[arg(long)]
    pub(crate) test_data: DataSpec,
    #[arg(long)]
    pub(crate) test_count: Option<i64>,
    /// small-cnn, small-cnn-gn, resnet18 or lenet.
    #[arg(long, value_parser = parse_name::<Architecture>, default_value = "small-cnn")]
    pub(crate) arch: Architecture,
    /// Base channel width (default: 16 for small-cnn and lenet, 64 for resnet18).
    #[arg(long)]
    pub(crate) width: Option<i64>,
    #[arg(long, default_value = "badnets")]
    pub(crate) trigger: Trigger,
    #[arg(long, default_value_t = 0)]
    pub(crate) target_class: i64,
    /// Fraction of the training set to poison; 0 trains a clean control model (its ASR is the
    /// trigger's natural push).
    #[arg(long, default_value_t = 0.01)]
    pub(crate) rate: f64,
    /// Clean-label poisoning (always on for SIG).
    #[arg(long)]
    pub(crate) clean_label: bool,
    #[arg(long, default_value_t = 6)]
    pub(crate) epochs: usize,
    #[arg(long, default_value_t = 0.05)]
    pub(crate) lr: f64,
    #[arg(long, default_value_t = 5e-4)]
    pub(crate) weight_decay: f64,
    #[arg(long, default_value_t = 128)]
    pub(crate) batch_size: i64,
    #[arg(long, default_value_t = 0)]
    pub(crate) crop_padding: i64,
    #[arg(long)]
    pub(crate) flip: bool,
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    #[command(flatten)]
    pub(crate) input: InputArgs,
    /// Where to write the TorchScript model (lab.json goes beside it).
    #[arg(long)]
    pub(crate) out: PathBuf,
}

pub(crate) fn poison(args: PoisonArgs, quiet: bool) -> anyhow::Result<()> {
    let device = device::resolve(args.input.device)?;
    let input = args.input.spec();
    let train = fstgate::data::load(&args.data)?.conform(&input)?;
    let train = match args.train_count {
        Some(n) => train.balanced_count(n, args.seed)?,
        None => train,
    };
    let test = fstgate::data::load(&args.test_data)?.conform(&input)?;
    let test = match args.test_count {
        Some(n) => test.balanced_count(n, args.seed)?,
        None => test,
    };
    let clean_label = args.clean_label || matches!(args.trigger, Trigger::Sig { .. });
    let settings = PoisonSettings {
        architecture: args.arch,
        width: args.width.unwrap_or(args.arch.default_width()),
        trigger: args.trigger,
        target_class: args.target_class,
        poisoning_rate: args.rate,
        clean_label,
        epochs: args.epochs,
        learning_rate: args.lr,
        weight_decay: args.weight_decay,
        batch_size: args.batch_size,
        augmentation: Augmentation { crop_padding: args.crop_padding, horizontal_flip: args.flip },
        seed: args.seed,
    };
    let progress = fstgate::progress::for_terminal(quiet);
    let report = lab::train_backdoored(&train, &test, &settings, &input, device, &args.out, progress.as_ref())?;
    let attack = report.test.attack.as_ref().context("the lab always measures its attack")?;
    println!(
        "backdoored {:?} ({} of {} images poisoned): clean accuracy {:.1}%, ASR {:.1}% -> {}",
        settings.architecture,
        report.poisoned_images,
        report.training_images,
        100.0 * report.test.clean_accuracy,
        100.0 * attack.attack_success_rate,
        args.out.display()
    );
    Ok(())
}
