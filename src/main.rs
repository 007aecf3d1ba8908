//! The fstgate command line. Exit codes: 0 success, 1 check failed (`schema --check`), 2 error.
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use fstgate::attestation::{self, PublicKey};
use fstgate::data::{Augmentation, DataSpec, InputSpec};
use fstgate::device::{self, DeviceChoice};
use fstgate::evaluation::{self, InversionSettings, Trigger};
use fstgate::job::{self, AttackInput, PurifyJob, Sample};
use fstgate::jobs::{Job, JobState};
use fstgate::lab::{self, Architecture, PoisonSettings};
use fstgate::model::Precision;
use fstgate::pipeline::{KeyConfig, Pipeline, PipelineConfig};
use fstgate::policy::{Decision, Limits, PluginHost, PolicySet, PolicySpec, Verdict};
use fstgate::purification::{AutoStrength, Method, Settings, Strength};
use fstgate::report::Report;

#[derive(Parser)]
#[command(
    name = "fstgate",
    version,
    about = "Backdoor-purification gate: Feature Shift Tuning, evaluation, policy, attestation"
)]
struct Cli {
    /// No progress output; warnings and errors only.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Purify a classifier with FST (or a baseline) and evaluate it before and after.
    Purify(PurifyArgs),
    /// Internal: the model worker the pipeline starts for each job (see the `worker` module).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        job: PathBuf,
        #[arg(long)]
        staging: PathBuf,
        #[arg(long)]
        result: PathBuf,
        #[arg(long)]
        error: PathBuf,
    },
    /// Confine a probe process as the model worker is confined and try what a hostile model's
    /// code would (write or read outside its files, read the gate's environment, connect, run a
    /// program, signal the gate): shows what this host's kernel enforces. Exit 1 when it does
    /// not hold.
    SandboxCheck {
        /// Run the probe without confinement: what a model in the gate's own process could do.
        #[arg(long)]
        unconfined: bool,
        /// Print the check as JSON (schemas/sandbox-check.schema.json).
        #[arg(long)]
        json: bool,
    },
    /// Internal: the probe `sandbox-check` starts.
    #[command(hide = true)]
    SandboxProbe {
        #[arg(long)]
        inside: PathBuf,
        #[arg(long)]
        outside: PathBuf,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        unconfined: bool,
    },
    /// The attack lab: make backdoored models on real data.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Write a new ECDSA P-256 signing key pair (private key mode 0600).
    Keygen {
        #[arg(long)]
        private_key: PathBuf,
        #[arg(long)]
        public_key: PathBuf,
    },
    /// Check a purified directory's signatures, digests and provenance chain; exit 1 if any
    /// fails, or if the signed decision denied the model (unless --allow-denied).
    Verify {
        dir: PathBuf,
        /// The signer's public key (PEM).
        #[arg(long, required_unless_present = "ca", conflicts_with = "ca")]
        public_key: Option<PathBuf>,
        /// Root certificates (PEM) for a release signed with a certificate chain: the chain in
        /// model.sig must lead to one of them, valid when the release was signed.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Also check that this file is the original model the provenance names.
        #[arg(long)]
        original_model: Option<PathBuf>,
        /// Also check that the signed statements were made for this model: its registry URI
        /// (`models:/fraud-cnn/3`, `s3://bucket/prefix/fraud-cnn/3/`), or the path it was
        /// purified from.
        #[arg(long)]
        model: Option<String>,
        /// Exit 0 for a correctly signed denial too (to inspect denied evidence).
        #[arg(long)]
        allow_denied: bool,
    },
    /// Release policy plugins.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// One pass for CI and pipeline engines: poll the configured sources, purify and judge every
    /// new upload, publish the outcomes; exit 0 all released, 1 denied by policy, 2 error.
    Gate {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Write the gate report (JSON) here; `-` for stdout.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write SARIF 2.1.0 here.
        #[arg(long)]
        sarif: Option<PathBuf>,
        /// Append a markdown summary here (default: $GITHUB_STEP_SUMMARY when set).
        #[arg(long, env = "GITHUB_STEP_SUMMARY")]
        summary: Option<PathBuf>,
    },
    /// The daemon: poll the configured sources and process uploads until SIGTERM or Ctrl-C, which
    /// finish the running job first (a second signal exits at once; the job is retried later).
    Watch {
        #[command(flatten)]
        pipeline: PipelineArgs,
    },
    /// List the job store's jobs.
    Jobs {
        #[command(flatten)]
        pipeline: PipelineArgs,
        #[arg(long)]
        json: bool,
    },
    /// The whole job on the embedded default, on real data: backdoor a CNN on Fashion-MNIST with
    /// the lab, register it in a local registry directory, run the watcher (purify, evaluate,
    /// policy plugins, sign, publish), verify what was published and say where everything is.
    /// Each run registers a new version. Exit 0 released and verified, 1 denied, 2 error.
    Demo {
        /// The work directory (registry, job store, release directory, keys, configuration).
        #[arg(long, default_value = "work/demo")]
        work: PathBuf,
        /// Fashion-MNIST's IDX files (Debian's dataset-fashion-mnist).
        #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
        data: PathBuf,
        #[command(flatten)]
        limits: PluginLimitArgs,
    },
    /// Write the JSON Schemas of fstgate's documents (or check that they are up to date).
    Schema {
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
        /// Exit 1 if the files differ from what this build generates.
        #[arg(long)]
        check: bool,
    },
}

/// The pipeline's configuration and plugin limits.
#[derive(Args)]
struct PipelineArgs {
    /// The pipeline configuration (TOML; schemas/pipeline-config.schema.json).
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    limits: PluginLimitArgs,
}

impl PipelineArgs {
    /// `webhooks`: this process serves them (a watcher with `listen`), so it needs the secrets.
    async fn pipeline(&self, webhooks: bool) -> anyhow::Result<Arc<Pipeline>> {
        let config = PipelineConfig::load(&self.config)?;
        let specs = if config.policies.is_empty() {
            vec![PolicySpec::default_thresholds(serde_json::json!({}))]
        } else {
            config.policies.iter().map(|p| PolicySpec::inline(&p.plugin, p.config.clone())).collect()
        };
        let policies = Arc::new(policy_set(specs, &self.limits)?);
        let key = config.signing_key.load()?;
        let device = device::resolve(config.device.parse()?)?;
        let mut pipeline = Pipeline::new(config, policies, key, device).await?;
        if webhooks && pipeline.config().listen.is_some() {
            pipeline.enable_webhooks()?;
        }
        Ok(Arc::new(pipeline))
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn gate(
    pipeline: PipelineArgs,
    json: Option<PathBuf>,
    sarif: Option<PathBuf>,
    summary: Option<PathBuf>,
) -> anyhow::Result<bool> {
    let report = runtime()?.block_on(async { anyhow::Ok(pipeline.pipeline(false).await?.run_once().await) })?;
    match json.as_deref() {
        Some(path) if path == Path::new("-") => println!("{}", serde_json::to_string_pretty(&report)?),
        Some(path) => fstgate::fsutil::write_json(path, &report)?,
        None => {}
    }
    if let Some(path) = &sarif {
        fstgate::fsutil::write_json(path, &report.sarif())?;
    }
    if let Some(path) = &summary {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        file.write_all(report.markdown().as_bytes())?;
    }
    if json.as_deref() != Some(Path::new("-")) {
        eprint!("{}", report.markdown());
    }
    match report.exit_code() {
        0 => Ok(true),
        1 => Ok(false),
        _ => anyhow::bail!(
            "{} job(s) did not finish and {} source(s) could not be polled",
            report.jobs.iter().filter(|j| !matches!(j.state, JobState::Released | JobState::Denied)).count(),
            report.poll_errors.len()
        ),
    }
}

fn watch(pipeline: PipelineArgs) -> anyhow::Result<bool> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let pipeline = pipeline.pipeline(true).await?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            for signal in 0.. {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                if signal > 0 {
                    tracing::warn!("second signal: exiting now; the running job will be retried");
                    std::process::exit(130);
                }
                tracing::info!("signal received: finishing the running job, then stopping");
                let _ = stop.send(true);
            }
            Ok::<(), std::io::Error>(())
        });
        use fstgate::pipeline::metrics::{Endpoints, serve};
        let (listen, metrics_listen) = (pipeline.config().listen.clone(), pipeline.config().metrics_listen.clone());
        if let Some(address) = &listen {
            let listener = tokio::net::TcpListener::bind(address).await?;
            let endpoints = Endpoints { webhooks: true, observability: metrics_listen.is_none() };
            let what = if endpoints.observability { "webhooks, /healthz and /metrics" } else { "webhooks" };
            tracing::info!("serving {what} on {}", listener.local_addr()?);
            tokio::spawn(serve(listener, pipeline.clone(), endpoints));
        }
        if let Some(address) = &metrics_listen {
            let listener = tokio::net::TcpListener::bind(address).await?;
            tracing::info!("serving /healthz and /metrics on {}", listener.local_addr()?);
            tokio::spawn(serve(listener, pipeline.clone(), Endpoints { webhooks: false, observability: true }));
        }
        tracing::info!("watching");
        pipeline.watch(stopped).await;
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(true)
}

fn jobs(pipeline: PipelineArgs, json: bool) -> anyhow::Result<bool> {
    let config = PipelineConfig::load(&pipeline.config)?;
    let jobs =
        runtime()?.block_on(async { fstgate::jobs::open(&config.job_store, &config.state_dir).await?.jobs().await })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(true);
    }
    for job in jobs {
        println!(
            "{:>5}  {:<8}  {}:{}  attempts {}  {}",
            job.id,
            job.state.as_str(),
            job.source,
            job.model,
            job.attempts,
            job.outcome.or(job.last_error).unwrap_or_default()
        );
    }
    Ok(true)
}

#[derive(Subcommand)]
enum LabCommand {
    /// Train a classifier on poisoned data and export it as TorchScript.
    Poison(PoisonArgs),
}

/// The model input contract, shared by every command that feeds images to a model.
#[derive(Args)]
struct InputArgs {
    /// Model input size HxW (images are resized to it when they differ).
    #[arg(long, value_parser = parse_size)]
    input_size: Option<[i64; 2]>,
    /// Model input channels (1 or 3).
    #[arg(long)]
    channels: Option<i64>,
    /// Normalisation mean per channel, comma-separated (after scaling pixels to [0, 1]).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    mean: Vec<f64>,
    /// Normalisation standard deviation per channel, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    std: Vec<f64>,
    /// auto (CUDA when present), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
}

impl InputArgs {
    fn spec(&self) -> InputSpec {
        InputSpec { size: self.input_size, channels: self.channels, mean: self.mean.clone(), std: self.std.clone() }
    }
}

/// Release policies.
#[derive(Args)]
struct PolicyArgs {
    /// A policy plugin (WebAssembly component of the fstgate:policy world), with an optional
    /// JSON configuration: PLUGIN.wasm or PLUGIN.wasm@CONFIG.json. Repeat for several; every one
    /// must allow. Without any, the built-in thresholds policy runs.
    #[arg(long = "policy", value_name = "PLUGIN[@CONFIG]")]
    policies: Vec<String>,
    /// Built-in policy: deny when the attack success rate after purification exceeds this
    /// (0-1): the known trigger's, or without one the worst trigger probe's.
    #[arg(long, default_value_t = 0.05, conflicts_with = "policies")]
    max_asr: f64,
    /// Built-in policy: deny when clean accuracy drops by more than this many points.
    #[arg(long, default_value_t = 3.0, conflicts_with = "policies")]
    max_accuracy_drop: f64,
    #[command(flatten)]
    limits: PluginLimitArgs,
}

impl PolicyArgs {
    fn policy_set(&self) -> anyhow::Result<PolicySet> {
        let specs = if self.policies.is_empty() {
            vec![PolicySpec::default_thresholds(serde_json::json!({
                "max_attack_success_rate": self.max_asr,
                "max_accuracy_drop_points": self.max_accuracy_drop,
            }))]
        } else {
            self.policies.iter().map(|arg| PolicySpec::from_arg(arg)).collect::<Result<_, _>>()?
        };
        policy_set(specs, &self.limits)
    }
}

/// What each policy plugin may use per evaluation.
#[derive(Args)]
struct PluginLimitArgs {
    /// Fuel (about one unit per WebAssembly instruction).
    #[arg(long, default_value_t = Limits::default().fuel)]
    plugin_fuel: u64,
    /// Wall-clock limit in milliseconds.
    #[arg(long, default_value_t = Limits::default().wall_clock_ms)]
    plugin_timeout_ms: u64,
    /// Memory limit in MiB.
    #[arg(long, default_value_t = Limits::default().memory_bytes >> 20)]
    plugin_memory_mib: usize,
    /// Where compiled plugins are kept between runs (a private directory; default
    /// ~/.cache/fstgate/plugins, or under $FSTGATE_CACHE).
    #[arg(long, env = "FSTGATE_PLUGIN_CACHE")]
    plugin_cache: Option<PathBuf>,
}

impl PluginLimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            fuel: self.plugin_fuel,
            wall_clock_ms: self.plugin_timeout_ms,
            memory_bytes: self.plugin_memory_mib << 20,
            ..Limits::default()
        }
    }
}

/// Compiles the policies and warns now about any that cannot load (they will deny).
fn policy_set(specs: Vec<PolicySpec>, limits: &PluginLimitArgs) -> anyhow::Result<PolicySet> {
    let mut host = PluginHost::new(limits.limits())?;
    let cache = limits.plugin_cache.clone().or_else(|| {
        let root = std::env::var_os("FSTGATE_CACHE").map(PathBuf::from).or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
                .map(|dir| dir.join("fstgate"))
        });
        root.map(|root| root.join("plugins"))
    });
    // Without a usable cache plugins are compiled every run: slower, still correct.
    if let Some(Err(e)) = cache.map(|dir| host.set_disk_cache(&dir)) {
        tracing::warn!("not caching compiled plugins: {e}");
    }
    let set = PolicySet::with_host(specs, host);
    for (name, failure) in set.load_failures() {
        tracing::warn!("policy `{name}` {failure}; it will deny every model");
    }
    Ok(set)
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run one policy plugin on a report.json, as the gate would (exit 0 allow, 1 deny).
    Eval {
        /// The plugin component (.wasm), or `builtin:thresholds` for the default policy.
        plugin: String,
        #[arg(long)]
        report: PathBuf,
        /// The plugin's JSON configuration.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the policy result as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        limits: PluginLimitArgs,
    },
}

#[derive(Args)]
struct PurifyArgs {
    /// TorchScript archive, or an MLflow model directory with a TorchScript pytorch flavour.
    #[arg(long)]
    model: PathBuf,
    /// Module path of the classification head (found automatically when omitted).
    #[arg(long)]
    head: Option<String>,
    /// Clean tuning data: PATH, or DIR#train / DIR#test for IDX and CIFAR-10 directories.
    #[arg(long)]
    clean_data: DataSpec,
    /// Fraction of the clean data to tune on, class-balanced.
    #[arg(long, default_value_t = 0.02, conflicts_with = "clean_count")]
    clean_fraction: f64,
    /// Number of clean images to tune on, class-balanced (instead of --clean-fraction).
    #[arg(long)]
    clean_count: Option<i64>,
    /// Clean test data (same spec syntax).
    #[arg(long)]
    test_data: DataSpec,
    /// Evaluate on this many test images, class-balanced (default: all).
    #[arg(long)]
    test_count: Option<i64>,
    /// The known trigger, e.g. badnets:size=3,pos=br | blended:alpha=0.2,seed=0 | sig | wanet.
    #[arg(long, conflicts_with = "poisoned_test_data")]
    trigger: Option<Trigger>,
    /// Already-triggered test images with their true labels (instead of --trigger).
    #[arg(long)]
    poisoned_test_data: Option<DataSpec>,
    /// The attack's target class.
    #[arg(long, default_value_t = 0)]
    target_class: i64,
    /// Skip the trigger probes (trigger-agnostic backdoor check).
    #[arg(long)]
    no_probes: bool,
    #[arg(long, value_enum, default_value_t = Method::Fst)]
    method: Method,
    /// How FST's strength is chosen. auto, the default for fst unless --alpha, --epochs or --lr is
    /// given: hold out --validation-fraction of the clean set, train a few alphas from the
    /// original weights, and keep the most accurate on validation among those whose head shifted
    /// to cos(W, W0) <= --shift-target and that silenced the trigger probes the original model
    /// answered (README, docs/strength.md). fixed: the settings as given.
    #[arg(long, value_enum)]
    strength: Option<StrengthMode>,
    /// Automatic strength: fraction of the clean set held out for validation, class-balanced.
    #[arg(long, default_value_t = AutoStrength::default().validation_fraction)]
    validation_fraction: f64,
    /// Automatic strength: the first alpha tried.
    #[arg(long, default_value_t = AutoStrength::default().start_alpha)]
    auto_start_alpha: f64,
    /// Automatic strength: at most this many candidates, each one tuning run (default 3; with
    /// --judge 2).
    #[arg(long)]
    auto_candidates: Option<usize>,
    /// Automatic strength: optimiser steps per candidate at least, more epochs on small sets
    /// (default 1,500; with --judge 300).
    #[arg(long)]
    auto_min_steps: Option<usize>,
    /// Automatic strength: the head-shift target, cos(W, W0) at or below which a candidate counts
    /// as having moved the features off the backdoor.
    #[arg(long, allow_hyphen_values = true, default_value_t = AutoStrength::default().cosine_target)]
    shift_target: f64,
    /// Automatic strength: a trigger probe pushing at least this fraction of the original
    /// model's validation images into one class marks a suspected backdoor.
    #[arg(long, default_value_t = AutoStrength::default().suspect_push_rate)]
    suspect_push_rate: f64,
    /// Automatic strength: a candidate counts only once every suspect probe pushes at most this
    /// fraction into its class.
    #[arg(long, default_value_t = AutoStrength::default().suspect_push_target)]
    suspect_push_target: f64,
    /// Automatic strength: validation accuracy a candidate may lose, in points, before the search
    /// looks for a gentler one and the report warns.
    #[arg(long, default_value_t = AutoStrength::default().max_validation_drop_points)]
    max_validation_drop: f64,
    /// Automatic strength: train every candidate of the alpha ladder and record them all (for
    /// fitting the rule on a benchmark; slower, and not how a gate should run).
    #[arg(long)]
    auto_explore: bool,
    /// Automatic strength: the evidence-driven judge (trigger inversion with the probes, each
    /// signal judged against a from-scratch reference, LP-FT, the evidence as the only target;
    /// docs/strength.md). Experimental: not yet the default.
    #[arg(long)]
    judge: bool,
    /// With --judge: optimiser steps of the trigger inversion (all classes together).
    #[arg(long, default_value_t = AutoStrength::default().inversion.steps)]
    inversion_steps: usize,
    /// Epochs of linear probing of the re-initialised head before the full tuning (LP-FT;
    /// default 0, the paper; with --judge 5 per candidate).
    #[arg(long)]
    head_warmup_epochs: Option<usize>,
    /// Epochs (fixed: 10; auto: 20 per candidate); fixes the strength unless --strength auto.
    #[arg(long)]
    epochs: Option<usize>,
    /// Learning rate (default 0.01); fixes the strength unless --strength auto.
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    #[arg(long, default_value_t = 128)]
    batch_size: i64,
    /// FST's weight on <W, W0> (default 0.2); fixes the strength.
    #[arg(long)]
    alpha: Option<f64>,
    /// Padding of the random crop, 0 disables it (fixed: 4; auto: 0).
    #[arg(long)]
    crop_padding: Option<i64>,
    /// No random horizontal flip (the fixed settings' default flips).
    #[arg(long, conflicts_with = "flip")]
    no_flip: bool,
    /// Random horizontal flip (off by default with the automatic strength).
    #[arg(long)]
    flip: bool,
    /// fp32, or bf16: bf16 autocast with channels-last tensors, faster on CUDA (not on the CPU).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    precision: Precision,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    /// PEM file of the ECDSA P-256 key that signs the output (see `fstgate keygen`).
    #[arg(long, conflicts_with = "signing_key_env")]
    signing_key: Option<PathBuf>,
    /// Name of an environment variable holding the signing key's PEM.
    #[arg(long)]
    signing_key_env: Option<String>,
    /// PEM file of the signing key's certificate chain (its own certificate first): the
    /// signatures carry it, for `fstgate verify --ca` and `model_signing verify certificate`.
    #[arg(long)]
    signing_cert: Option<PathBuf>,
    /// Output directory (must not exist): model.pt and report.json, plus the signed attestations.
    #[arg(long)]
    out: PathBuf,
    /// Run the model in the confined worker process (as the pipeline does), without progress
    /// bars. The default when the output is signed: the model's code never runs next to the key.
    #[arg(long)]
    isolate: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StrengthMode {
    Auto,
    Fixed,
}

#[derive(Args)]
struct PoisonArgs {
    /// Training data (PATH or DIR#train).
    #[arg(long)]
    data: DataSpec,
    /// Train on this many images, class-balanced (default: all).
    #[arg(long)]
    train_count: Option<i64>,
    /// Test data for the lab's own check of clean accuracy and ASR.
    #[arg(long)]
    test_data: DataSpec,
    #[arg(long)]
    test_count: Option<i64>,
    #[arg(long, value_enum, default_value_t = Architecture::SmallCnn)]
    arch: Architecture,
    /// Base channel width (default: 16 for small-cnn and lenet, 64 for resnet18).
    #[arg(long)]
    width: Option<i64>,
    #[arg(long, default_value = "badnets")]
    trigger: Trigger,
    #[arg(long, default_value_t = 0)]
    target_class: i64,
    /// Fraction of the training set to poison; 0 trains a clean control model (its ASR is the
    /// trigger's natural push).
    #[arg(long, default_value_t = 0.01)]
    rate: f64,
    /// Clean-label poisoning (always on for SIG).
    #[arg(long)]
    clean_label: bool,
    #[arg(long, default_value_t = 6)]
    epochs: usize,
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f64,
    #[arg(long, default_value_t = 128)]
    batch_size: i64,
    #[arg(long, default_value_t = 0)]
    crop_padding: i64,
    #[arg(long)]
    flip: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    input: InputArgs,
    /// Where to write the TorchScript model (lab.json goes beside it).
    #[arg(long)]
    out: PathBuf,
}

fn parse_size(s: &str) -> Result<[i64; 2], String> {
    let (h, w) = s.split_once('x').ok_or_else(|| format!("`{s}` is not HxW"))?;
    let parse = |v: &str| v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| format!("`{s}` is not HxW"));
    Ok([parse(h)?, parse(w)?])
}

fn sample(count: Option<i64>) -> Sample {
    count.map_or(Sample::All, Sample::Count)
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
    let preset = if args.judge { AutoStrength::judge() } else { AutoStrength::default() };
    Ok(if auto {
        Strength::Auto(AutoStrength {
            validation_fraction: args.validation_fraction,
            start_alpha: args.auto_start_alpha,
            max_candidates: args.auto_candidates.unwrap_or(preset.max_candidates),
            min_steps: args.auto_min_steps.unwrap_or(preset.min_steps),
            cosine_target: args.shift_target,
            suspect_push_rate: args.suspect_push_rate,
            suspect_push_target: args.suspect_push_target,
            max_validation_drop_points: args.max_validation_drop,
            explore: args.auto_explore,
            inversion: InversionSettings { steps: args.inversion_steps, ..preset.inversion.clone() },
            head_warmup_epochs: args.head_warmup_epochs.unwrap_or(preset.head_warmup_epochs),
            ..preset
        })
    } else {
        Strength::Fixed
    })
}

fn purify(args: PurifyArgs, quiet: bool) -> anyhow::Result<()> {
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

fn print_table(report: &Report) {
    let s = &report.summary;
    println!("{:<22} {:>9} {:>9}", "", "before", "after");
    println!(
        "{:<22} {:>9} {:>9}   ({:+.1} points)",
        "clean accuracy",
        percent(Some(s.clean_accuracy_before)),
        percent(Some(s.clean_accuracy_after)),
        -s.clean_accuracy_drop_points
    );
    if let Some(attack) = &report.after.attack {
        println!(
            "{:<22} {:>9} {:>9}   ({}, target {})",
            "attack success rate",
            percent(s.attack_success_rate_before),
            percent(s.attack_success_rate_after),
            attack.trigger,
            attack.target_class
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

fn print_decision(decision: &Decision) {
    println!("decision: {}", if decision.releasable { "release" } else { "deny" });
    for policy in &decision.policies {
        for reason in &policy.reasons {
            println!("  {}: {reason}", policy.name);
        }
    }
}

fn policy_eval(
    plugin: String,
    report: PathBuf,
    config: Option<PathBuf>,
    json: bool,
    limits: PluginLimitArgs,
) -> anyhow::Result<bool> {
    let spec = PolicySpec::new(&plugin, config.as_deref())?;
    let text = std::fs::read_to_string(&report).with_context(|| format!("cannot read {}", report.display()))?;
    let report: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", report.display()))?;
    let set = policy_set(vec![spec], &limits)?;
    let started = std::time::Instant::now();
    let decision = set.evaluate_json(report);
    let elapsed = started.elapsed();
    let result = &decision.policies[0];
    if json {
        println!("{}", serde_json::to_string_pretty(result)?);
    } else {
        let verdict = if result.verdict == Verdict::Allow { "allow" } else { "deny" };
        println!("{}: {verdict} ({:.1} ms, sha256 {})", result.name, elapsed.as_secs_f64() * 1e3, result.sha256);
        for reason in &result.reasons {
            println!("  reason: {reason}");
        }
        for m in &result.measurements {
            println!("  {} = {}", m.name, m.value);
        }
    }
    Ok(decision.releasable)
}

fn verify(
    dir: PathBuf,
    public_key: Option<PathBuf>,
    ca: Option<PathBuf>,
    original_model: Option<PathBuf>,
    model: Option<String>,
    allow_denied: bool,
) -> anyhow::Result<bool> {
    let (original_model, model) = (original_model.as_deref(), model.as_deref());
    let outcome = match (public_key, ca) {
        (Some(public_key), _) => {
            let key = PublicKey::from_file(&public_key)?;
            attestation::verify(&dir, &key, original_model, model).map(|v| (v, format!("key {}", key.fingerprint())))
        }
        (None, Some(ca)) => {
            let roots = attestation::TrustRoots::from_file(&ca)?;
            attestation::verify_with_roots(&dir, &roots, original_model, model).map(|v| {
                let subject = v.certificate_subject.clone().unwrap_or_default();
                (v, format!("certificate `{subject}` (chain to {})", ca.display()))
            })
        }
        (None, None) => anyhow::bail!("verify needs --public-key or --ca"),
    };
    match outcome {
        Ok((verified, signer)) => {
            println!("verified {}: {} files signed by {signer}", dir.display(), verified.files.len());
            println!(
                "  model sha256 {} made from {} (sha256 {})",
                verified.model_sha256,
                fstgate::error::redact_url(&verified.model),
                verified.original_model_sha256
            );
            println!("  decision: {}", verified.decision.decision);
            // A correct signature on a denial is not a release: a script checking the exit code
            // must not ship it.
            if !verified.decision.releasable && !allow_denied {
                println!("the signed decision denies this model (exit 1; --allow-denied to accept)");
                return Ok(false);
            }
            Ok(true)
        }
        Err(e) => {
            println!("verification failed: {e}");
            Ok(false)
        }
    }
}

fn poison(args: PoisonArgs, quiet: bool) -> anyhow::Result<()> {
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

/// Runs the watcher until the job of `model` (in `source`) is final, then stops it.
async fn watch_until_final(pipeline: &Arc<Pipeline>, source: &str, model: &str) -> anyhow::Result<Job> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn({
        let pipeline = pipeline.clone();
        async move { pipeline.watch(stopped).await }
    });
    let job = loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let jobs = pipeline.jobs().jobs().await?;
        if let Some(job) = jobs.into_iter().find(|j| j.source == source && j.model == model && j.state.is_final()) {
            break job;
        }
        anyhow::ensure!(!watcher.is_finished(), "the watcher stopped before {model} was processed");
    };
    let _ = stop.send(true);
    watcher.await?;
    Ok(job)
}

fn demo(work: PathBuf, data: PathBuf, limits: PluginLimitArgs, quiet: bool) -> anyhow::Result<bool> {
    let started = std::time::Instant::now();
    let layout = fstgate::demo::Layout::new(&work);
    let progress = fstgate::progress::for_terminal(quiet);
    let device = device::resolve(DeviceChoice::Auto)?;
    if !layout.backdoored.is_file() {
        println!(
            "backdoored model: training it with the lab (BadNets, 1% poisoned, Fashion-MNIST; once per work directory)"
        );
    }
    fstgate::demo::backdoor(&layout, &data, device, progress.as_ref())?;
    fstgate::demo::configure(&layout, &data)?;
    let registered = fstgate::demo::register(&layout)?;
    println!("registered {} in {}; watching", registered.model, layout.registry.display());
    let (pipeline, job) = runtime()?.block_on(async {
        let pipeline = PipelineArgs { config: layout.config.clone(), limits }.pipeline(false).await?;
        let job = watch_until_final(&pipeline, fstgate::demo::SOURCE_NAME, &registered.model).await?;
        anyhow::Ok((pipeline, job))
    })?;
    let outcome_key = match (job.state, &job.outcome) {
        (JobState::Released | JobState::Denied, Some(key)) => key.clone(),
        _ => anyhow::bail!("job {} {}: {}", job.id, job.state.as_str(), job.last_error.unwrap_or_default()),
    };
    let outcome_path =
        pipeline.publisher().local_path(&outcome_key).context("the demo publishes to a local directory")?;
    let outcome: fstgate::publication::Outcome = serde_json::from_slice(&std::fs::read(&outcome_path)?)
        .with_context(|| format!("{} is not an outcome", outcome_path.display()))?;
    let files = fstgate::fsutil::parent_dir(&outcome_path).join(&outcome.files_under);
    let report: Report = serde_json::from_slice(&std::fs::read(files.join(attestation::REPORT_FILE))?)?;
    println!();
    print_table(&report);
    print_decision(&report.decision);
    let released = report.decision.releasable;
    let verified = if released {
        let key = PublicKey::from_file(&layout.public_key)?;
        let verified = attestation::verify(&files, &key, Some(&registered.upload.join("model.pt")), None)?;
        format!(
            "verified: {} files signed by {}, made from the registered model",
            verified.files.len(),
            key.fingerprint()
        )
    } else {
        "denied: the model was not published (its report and signed statements were)".to_string()
    };
    println!("{verified}\n");
    let names: Vec<&str> = outcome.files.iter().map(|f| f.name.as_str()).collect();
    let rows = [
        ("configuration", layout.config.clone(), String::new()),
        ("registered model", registered.upload.join("model.pt"), "(then the _SUCCESS marker)".into()),
        ("job store", layout.state.join("jobs.sqlite"), format!("(job {}: {})", job.id, job.state.as_str())),
        ("policy plugins", layout.policies.clone(), String::new()),
        ("signing key", layout.private_key.clone(), format!("(public: {})", layout.public_key.display())),
        ("outcome", outcome_path.clone(), String::new()),
        ("published files", files.clone(), names.join(", ")),
        ("report for people", files.join(fstgate::report::layout::REPORT_HTML_FILE), "(open in a browser)".into()),
    ];
    for (what, path, note) in rows {
        println!("{}", format!("{what:<18} {} {note}", path.display()).trim_end());
    }
    println!("\nverify again: fstgate verify {} --public-key {}", files.display(), layout.public_key.display());
    println!("demo finished in {:.0} s", started.elapsed().as_secs_f64());
    Ok(released)
}

fn schema(out: PathBuf, check: bool) -> anyhow::Result<bool> {
    let mut stale = Vec::new();
    for (name, schema) in fstgate::schemas::all() {
        let path = out.join(name);
        let text = serde_json::to_string_pretty(&schema)? + "\n";
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(path.display().to_string());
            }
        } else {
            std::fs::create_dir_all(&out)?;
            fstgate::fsutil::write_atomic(&path, text.as_bytes())?;
        }
    }
    if !stale.is_empty() {
        eprintln!("out of date (run `fstgate schema --out {}`): {}", out.display(), stale.join(", "));
    }
    Ok(stale.is_empty())
}

/// `fstgate sandbox-check`: true when the confinement behaves as it should.
fn sandbox_check(confined: bool, json: bool) -> anyhow::Result<bool> {
    let check = fstgate::worker::check::run(confined)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&check)?);
    } else {
        print!("{}", check.render());
    }
    Ok(check.as_expected)
}

fn main() -> ExitCode {
    // A one-shot command piped into `head` should end quietly like other Unix tools, not panic
    // on a closed stdout (Rust ignores SIGPIPE by default).
    // SAFETY: called before any thread starts; SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let default_level = if cli.quiet { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FSTGATE_LOG").unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files and collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Worker { job, staging, result, error } => {
            let paths = fstgate::worker::WorkerPaths { job, staging, result, error };
            return ExitCode::from(fstgate::worker::serve(&paths) as u8);
        }
        Command::SandboxProbe { inside, outside, port, unconfined } => {
            let targets = fstgate::worker::check::ProbeTargets { inside, outside, port };
            fstgate::worker::check::probe(&targets, !unconfined).map(|()| true).map_err(anyhow::Error::from)
        }
        Command::SandboxCheck { unconfined, json } => sandbox_check(!unconfined, json),
        Command::Purify(args) => purify(args, cli.quiet).map(|()| true),
        Command::Lab(LabCommand::Poison(args)) => poison(args, cli.quiet).map(|()| true),
        Command::Keygen { private_key, public_key } => attestation::keys::generate_files(&private_key, &public_key)
            .map(|key| {
                println!(
                    "wrote {} (private, mode 0600) and {} (key id {})",
                    private_key.display(),
                    public_key.display(),
                    key.fingerprint()
                );
                true
            })
            .map_err(Into::into),
        Command::Verify { dir, public_key, ca, original_model, model, allow_denied } => {
            verify(dir, public_key, ca, original_model, model, allow_denied)
        }
        Command::Policy(PolicyCommand::Eval { plugin, report, config, json, limits }) => {
            policy_eval(plugin, report, config, json, limits)
        }
        Command::Demo { work, data, limits } => demo(work, data, limits, cli.quiet),
        Command::Schema { out, check } => schema(out, check),
        Command::Gate { pipeline, json, sarif, summary } => gate(pipeline, json, sarif, summary),
        Command::Watch { pipeline } => watch(pipeline),
        Command::Jobs { pipeline, json } => jobs(pipeline, json),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
