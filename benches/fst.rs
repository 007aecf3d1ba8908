//! Purification benchmarks (docs/benchmarks.md):
//!
//!   speed    one FST purification and one evaluation, timed the way bench/fst_reference.py times
//!            the same work in PyTorch eager, for a side-by-side table;
//!   quality  lab-backdoored models (architectures x attacks x poisoning rates x seeds), each
//!            purified by every method; C-Acc, ASR, RA and seconds per cell, as JSON lines.
//!
//! cargo bench --bench fst -- speed --help / quality --help. The data set is Fashion-MNIST in IDX
//! form (Debian's dataset-fashion-mnist). Every number printed is measured in this run.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use fstgate::data::{self, Augmentation, DataSpec, Dataset, InputSpec};
use fstgate::device::{self, DeviceChoice};
use fstgate::evaluation::{self, Attack, Metrics, Plan, Trigger};
use fstgate::lab::{self, Architecture, PoisonSettings};
use fstgate::model::{Classifier, Precision};
use fstgate::purification::{self, Method, Settings, Strength};
use fstgate::schemas::parse_name;
use fstgate::training::Silent;
use serde::Serialize;
use tch::{Device, Tensor};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Speed(SpeedArgs),
    Quality(QualityArgs),
}

#[derive(Args)]
struct Common {
    /// Directory holding Fashion-MNIST's IDX .gz files.
    #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
    data: PathBuf,
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Model input size (the images are resized once, at load).
    #[arg(long, default_value_t = 28)]
    size: i64,
    #[arg(long, default_value_t = 1)]
    channels: i64,
}

#[derive(Args)]
struct SpeedArgs {
    #[command(flatten)]
    common: Common,
    /// The TorchScript model to purify; made by the lab (BadNets, 5%) when the file is absent.
    #[arg(long)]
    model: PathBuf,
    #[arg(long, value_parser = parse_name::<Architecture>, default_value = "resnet18")]
    arch: Architecture,
    #[arg(long, value_parser = parse_name::<Precision>, default_value = "fp32")]
    precision: Precision,
    /// Tuning images: training split [50000, 50000 + tune).
    #[arg(long, default_value_t = 1000)]
    tune: i64,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Test images evaluated clean and with the BadNets patch (2x this many forward passes).
    #[arg(long, default_value_t = 10000)]
    eval: i64,
    /// Timed repetitions, each from the original weights; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Append one JSON line with every repetition here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run TorchScript with its profiling executor and fuser (fstgate turns them off).
    #[arg(long)]
    jit_optimize: bool,
}

#[derive(Args)]
struct QualityArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, value_delimiter = ',', value_parser = parse_name::<Architecture>, default_value = "small-cnn")]
    archs: Vec<Architecture>,
    #[arg(long, value_delimiter = ',', default_value = "badnets,blended,sig")]
    attacks: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "0.005,0.01,0.05,0.1")]
    rates: Vec<f64>,
    #[arg(long, value_delimiter = ',', default_value = "1")]
    seeds: Vec<u64>,
    /// none, ft, lp, fe-tuning, ft-init, fst (the paper's settings), fst-auto (fstgate's default).
    #[arg(long, value_delimiter = ',', default_value = "none,ft,lp,fe-tuning,ft-init,fst,fst-auto")]
    methods: Vec<String>,
    /// Lab training images: training split [0, lab_train).
    #[arg(long, default_value_t = 20000)]
    lab_train: i64,
    #[arg(long, default_value_t = 4)]
    lab_epochs: usize,
    /// The defender's clean images: training split [50000, 50000 + clean).
    #[arg(long, default_value_t = 1000)]
    clean: i64,
    /// Test images (test split, from the start).
    #[arg(long, default_value_t = 10000)]
    test: i64,
    /// Models and results; a cell whose result line exists is skipped, so a rerun resumes.
    #[arg(long)]
    out: PathBuf,
}

/// The tuning slice both benchmarks and the Python reference use: disjoint from the lab's.
const CLEAN_START: i64 = 50000;

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; clap would reject it.
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    if args.len() == 1 {
        eprintln!("fst bench: nothing to do without a subcommand (speed | quality); see --help");
        return Ok(());
    }
    match Cli::parse_from(args).command {
        Command::Speed(args) => speed(args),
        Command::Quality(args) => quality(args),
    }
}

struct Splits {
    input: InputSpec,
    train: Dataset,
    test: Dataset,
    device: Device,
}

fn load(common: &Common) -> anyhow::Result<Splits> {
    let input =
        InputSpec { size: Some([common.size, common.size]), channels: Some(common.channels), ..InputSpec::default() };
    let spec = |split: &str| -> anyhow::Result<DataSpec> { Ok(format!("{}#{split}", common.data.display()).parse()?) };
    let train = data::load(&spec("train")?)?.conform(&input)?;
    let test = data::load(&spec("test")?)?.conform(&input)?;
    Ok(Splits { input, train, test, device: device::resolve(common.device)? })
}

fn slice(data: &Dataset, start: i64, len: i64) -> anyhow::Result<Dataset> {
    anyhow::ensure!(start + len <= data.len(), "asked for images [{start}, {}) of {}", start + len, data.len());
    Ok(Dataset::from_tensors(
        data.images.narrow(0, start, len),
        data.labels.narrow(0, start, len),
        data.source.clone(),
    )?)
}

fn sample_of(splits: &Splits) -> Tensor {
    splits.input.normalize(&splits.train.images.narrow(0, 0, 4))
}

/// Waits for queued device work, so a host clock read after it covers that work.
fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

fn peak_rss_mib() -> f64 {
    // SAFETY: getrusage writes only into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[derive(Serialize)]
struct SpeedRun {
    train_seconds: f64,
    eval_seconds: f64,
    clean_accuracy: f64,
    attack_success_rate: f64,
    robust_accuracy: f64,
}

fn speed(args: SpeedArgs) -> anyhow::Result<()> {
    let splits = load(&args.common)?;
    let device = splits.device;
    fstgate::model::init_torchscript();
    fstgate::model::set_torchscript_optimization(args.jit_optimize);
    if !args.model.exists() {
        let settings = lab_settings(args.arch, "badnets", 0.05, 0, 3)?;
        let train = slice(&splits.train, 0, 20000)?;
        let report =
            lab::train_backdoored(&train, &splits.test, &settings, &splits.input, device, &args.model, &Silent)?;
        eprintln!("lab model: C-Acc {:.4}, ASR {:.4}", report.test.clean_accuracy, asr(&report.test));
    }
    let clean = slice(&splits.train, CLEAN_START, args.tune)?;
    let test = slice(&splits.test, 0, args.eval)?;
    let base = Settings { epochs: args.epochs, precision: args.precision, ..Settings::default() };
    let plan = Plan {
        input: splits.input.clone(),
        attack: Some(Attack::Trigger { trigger: "badnets".parse()?, target: 0 }),
        probes: Vec::new(),
        batch_size: 512,
    };
    let mut runs = Vec::new();
    for repetition in 0..args.repeat {
        // A different seed per repetition, so the accuracy figures show their spread.
        let settings = Settings { seed: repetition as u64, ..base.clone() };
        let mut model = Classifier::load(&args.model, device, &sample_of(&splits), None)?;
        model.set_precision(args.precision)?;
        synchronize(device);
        let started = Instant::now();
        purification::purify(&mut model, &clean, &splits.input, &settings, &Silent)?;
        synchronize(device);
        let train_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let metrics = evaluation::evaluate(&mut model, &test, &plan)?;
        let eval_seconds = started.elapsed().as_secs_f64();
        let attack = metrics.attack.as_ref().context("the plan has an attack")?;
        runs.push(SpeedRun {
            train_seconds,
            eval_seconds,
            clean_accuracy: metrics.clean_accuracy,
            attack_success_rate: attack.attack_success_rate,
            robust_accuracy: attack.robust_accuracy,
        });
    }
    let train_seconds = median(&mut runs.iter().map(|r| r.train_seconds).collect::<Vec<_>>());
    let eval_seconds = median(&mut runs.iter().map(|r| r.eval_seconds).collect::<Vec<_>>());
    let trained_images = (args.tune * args.epochs as i64) as f64;
    let evaluated_images = (2 * args.eval) as f64;
    let peak_rss_mib = peak_rss_mib();
    let summary = serde_json::json!({
        "implementation": "fstgate",
        "jit_optimize": args.jit_optimize,
        "device": device::name(device),
        "precision": args.precision,
        "model": args.model,
        "tune_images": args.tune,
        "epochs": args.epochs,
        "eval_images": evaluated_images,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "train_images_per_second": trained_images / train_seconds,
        "eval_images_per_second": evaluated_images / eval_seconds,
        "peak_rss_mib": peak_rss_mib,
        "runs": runs,
    });
    println!(
        "| fstgate {}{} | {} | train {:.2} s ({:.0} img/s) | eval {:.2} s ({:.0} img/s) | C-Acc {} | ASR {} | RSS {:.0} MiB |",
        serde_json::to_value(args.precision)?.as_str().unwrap_or_default(),
        if args.jit_optimize { " jit-optimize" } else { "" },
        device::name(device),
        train_seconds,
        trained_images / train_seconds,
        eval_seconds,
        evaluated_images / eval_seconds,
        range(runs.iter().map(|r| r.clean_accuracy)),
        range(runs.iter().map(|r| r.attack_success_rate)),
        peak_rss_mib
    );
    if let Some(path) = args.json {
        append_line(&path, &summary)?;
    }
    Ok(())
}

/// `min-max` of the repetitions' figures.
fn range(values: impl Iterator<Item = f64>) -> String {
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    format!("{low:.4}-{high:.4}")
}

fn lab_settings(
    architecture: Architecture,
    attack: &str,
    rate: f64,
    seed: u64,
    epochs: usize,
) -> anyhow::Result<PoisonSettings> {
    let trigger: Trigger = attack.parse()?;
    let clean_label = matches!(trigger, Trigger::Sig { .. });
    Ok(PoisonSettings {
        architecture,
        width: architecture.default_width(),
        trigger,
        target_class: 0,
        poisoning_rate: rate,
        clean_label,
        epochs,
        learning_rate: 0.05,
        weight_decay: 5e-4,
        batch_size: 128,
        augmentation: Augmentation::NONE,
        seed,
    })
}

fn asr(metrics: &Metrics) -> f64 {
    metrics.attack.as_ref().map_or(f64::NAN, |a| a.attack_success_rate)
}

#[derive(Serialize, serde::Deserialize)]
struct QualityCell {
    arch: String,
    attack: String,
    /// The poisoning rate the lab used (SIG, clean-label, is capped below the target class's share).
    rate: f64,
    seed: u64,
    method: String,
    clean_accuracy: f64,
    attack_success_rate: f64,
    robust_accuracy: f64,
    seconds: f64,
    /// FST's alpha (the chosen one for fst-auto).
    alpha: Option<f64>,
}

fn quality(args: QualityArgs) -> anyhow::Result<()> {
    let splits = load(&args.common)?;
    std::fs::create_dir_all(&args.out)?;
    let results = args.out.join("cells.jsonl");
    let done: Vec<QualityCell> = std::fs::read_to_string(&results)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let lab_train = slice(&splits.train, 0, args.lab_train)?;
    let clean = slice(&splits.train, CLEAN_START, args.clean)?;
    let test = slice(&splits.test, 0, args.test)?;
    let started = Instant::now();
    for &arch in &args.archs {
        let arch_name = format!("{arch:?}");
        for attack in &args.attacks {
            for &requested_rate in &args.rates {
                for &seed in &args.seeds {
                    let mut settings = lab_settings(arch, attack, requested_rate, seed, args.lab_epochs)?;
                    if settings.clean_label {
                        // Clean-label poisoning can only relabel nothing: at most the target class's images.
                        let share = lab_train.labels.eq(settings.target_class).sum(tch::Kind::Float).double_value(&[])
                            / lab_train.len() as f64;
                        settings.poisoning_rate = requested_rate.min(0.9 * share);
                    }
                    let rate = settings.poisoning_rate;
                    let pending: Vec<&String> = args
                        .methods
                        .iter()
                        .filter(|m| {
                            !done.iter().any(|c| {
                                c.arch == arch_name
                                    && &c.attack == attack
                                    && c.rate == rate
                                    && c.seed == seed
                                    && &c.method == *m
                            })
                        })
                        .collect();
                    if pending.is_empty() {
                        continue;
                    }
                    let model_path = args.out.join(format!("{arch_name}-{attack}-{rate}-{seed}.pt"));
                    if !model_path.exists() {
                        let lab_started = Instant::now();
                        let report = lab::train_backdoored(
                            &lab_train,
                            &test,
                            &settings,
                            &splits.input,
                            splits.device,
                            &model_path,
                            &Silent,
                        )?;
                        eprintln!(
                            "[{:>6.0} s] lab {arch_name} {attack} {rate} seed {seed}: C-Acc {:.4} ASR {:.4} ({:.1} s)",
                            started.elapsed().as_secs_f64(),
                            report.test.clean_accuracy,
                            asr(&report.test),
                            lab_started.elapsed().as_secs_f64()
                        );
                    }
                    let plan = Plan {
                        input: splits.input.clone(),
                        attack: Some(Attack::Trigger {
                            trigger: settings.trigger.clone(),
                            target: settings.target_class,
                        }),
                        probes: Vec::new(),
                        batch_size: 512,
                    };
                    for method in pending {
                        let cell = purify_cell(&model_path, &splits, &clean, &test, &plan, method, seed)?;
                        let cell = QualityCell { arch: arch_name.clone(), attack: attack.clone(), rate, seed, ..cell };
                        eprintln!(
                            "[{:>6.0} s] {arch_name} {attack} {rate} seed {seed} {method}: C-Acc {:.4} ASR {:.4} RA {:.4} ({:.1} s)",
                            started.elapsed().as_secs_f64(),
                            cell.clean_accuracy,
                            cell.attack_success_rate,
                            cell.robust_accuracy,
                            cell.seconds
                        );
                        append_line(&results, &cell)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn purify_cell(
    model_path: &Path,
    splits: &Splits,
    clean: &Dataset,
    test: &Dataset,
    plan: &Plan,
    method: &str,
    seed: u64,
) -> anyhow::Result<QualityCell> {
    let mut model = Classifier::load(model_path, splits.device, &sample_of(splits), None)?;
    synchronize(splits.device);
    let started = Instant::now();
    let alpha = match method {
        "none" => None,
        "fst-auto" => {
            let base = Settings { seed, ..Settings::automatic_base() };
            let purified = purification::purify_with_strength(
                &mut model,
                clean,
                &splits.input,
                &base,
                &Strength::Auto(Box::default()),
                None,
                &Silent,
            )?;
            Some(purified.settings.alpha)
        }
        _ => {
            let method: Method = parse_name(method).map_err(|e| anyhow::anyhow!("method: {e}"))?;
            let settings = Settings { method, seed, ..Settings::default() };
            purification::purify(&mut model, clean, &splits.input, &settings, &Silent)?;
            (method == Method::Fst).then_some(settings.alpha)
        }
    };
    synchronize(splits.device);
    let seconds = started.elapsed().as_secs_f64();
    let metrics = evaluation::evaluate(&mut model, test, plan)?;
    let attack = metrics.attack.as_ref().context("the plan has an attack")?;
    Ok(QualityCell {
        arch: String::new(),
        attack: String::new(),
        rate: 0.0,
        seed,
        method: method.to_string(),
        clean_accuracy: metrics.clean_accuracy,
        attack_success_rate: attack.attack_success_rate,
        robust_accuracy: attack.robust_accuracy,
        seconds,
        alpha,
    })
}

fn append_line<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    writeln!(file, "{}", serde_json::to_string(value)?)?;
    Ok(())
}
