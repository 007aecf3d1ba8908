//! The fstgate command line: the subcommands and their dispatch. Each subcommand's work lives in
//! a module of its own beside this file; argument groups several share are in `args`. Exit
//! codes: 0 success, 1 check failed (a denial, a failed verification, `schema --check`), 2 error.
mod args;
mod demo;
mod lab;
mod pipeline;
mod policy;
mod purify;
mod sandbox;
mod scan;
mod schema;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use args::{PipelineArgs, PluginLimitArgs};

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
    Purify(purify::PurifyArgs),
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
    Lab(lab::LabCommand),
    /// Trigger inversion on one model, without purifying it: the judge's evidence alone (a mask
    /// and pattern per class, and a blend, each sized against the other classes). A class that
    /// stands out is a suspect, not a verdict: the judge also reads it against a model trained
    /// from scratch, which a scan does not (exit 0 either way; 2 on an error). Runs the model's
    /// code in this process.
    Scan(scan::ScanArgs),
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
    Policy(policy::PolicyCommand),
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
        Command::SandboxCheck { unconfined, json } => sandbox::sandbox_check(!unconfined, json),
        Command::Purify(args) => purify::run(args, cli.quiet).map(|()| true),
        Command::Scan(args) => scan::run(args).map(|()| true),
        Command::Lab(lab::LabCommand::Poison(args)) => lab::poison(args, cli.quiet).map(|()| true),
        Command::Keygen { private_key, public_key } => {
            fstgate::attestation::keys::generate_files(&private_key, &public_key)
                .map(|key| {
                    println!(
                        "wrote {} (private, mode 0600) and {} (key id {})",
                        private_key.display(),
                        public_key.display(),
                        key.fingerprint()
                    );
                    true
                })
                .map_err(Into::into)
        }
        Command::Verify { dir, public_key, ca, original_model, model, allow_denied } => {
            verify::verify(dir, public_key, ca, original_model, model, allow_denied)
        }
        Command::Policy(policy::PolicyCommand::Eval { plugin, report, config, json, limits }) => {
            policy::policy_eval(plugin, report, config, json, limits)
        }
        Command::Demo { work, data, limits } => demo::run(work, data, limits, cli.quiet),
        Command::Schema { out, check } => schema::run(out, check),
        Command::Gate { pipeline, json, sarif, summary } => pipeline::gate(pipeline, json, sarif, summary),
        Command::Watch { pipeline } => pipeline::watch(pipeline),
        Command::Jobs { pipeline, json } => pipeline::jobs(pipeline, json),
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
