//! The trust boundary around an uploaded model. A TorchScript model is code: its forward may
//! loop, allocate without bound, or call ops that read files. Everything that runs it (loading,
//! evaluation, purification: `job::evaluate`) runs in a child process, `fstgate worker`, which
//! gets the job document without policies or signing key, a cleared environment (no store
//! credentials, no webhook secrets, no key paths), resource limits set before it starts (address
//! space on the CPU, CPU time, open files, no core dumps), a wall-clock deadline after which its
//! whole process group is killed, and death with its parent. Before it reads the model it
//! confines itself (`confine`: namespaces without network, Landlock, seccomp) and records in the
//! report what the kernel enforced (`fstgate sandbox-check` shows it). The parent reads back the
//! evaluated report, recomputes the purified model's digest, and decides, signs and publishes
//! (`job::conclude`).
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::job::{self, Evaluated, PurifyJob};
use crate::report::Report;
use crate::training::Silent;

pub mod check;
pub mod confine;

/// Environment variables a worker keeps: thread counts, device selection, library path, log
/// level and crash injection. Nothing else crosses, so no secret does.
const KEPT_ENVIRONMENT: [&str; 6] = [
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "LD_LIBRARY_PATH",
    "FSTGATE_LOG",
    "FSTGATE_FAILPOINT",
];

/// A failed worker's message is cut here (it may quote the model's own text).
const MAX_MESSAGE_BYTES: usize = 2000;

/// How the uploaded model's code is confined (`[worker]` in the pipeline configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerLimits {
    /// Run the model in a separate worker process (default true). Off, it runs inside the gate,
    /// next to the signing key and the store credentials: for debugging only.
    pub isolate: bool,
    /// Wall-clock seconds a job's worker may run before its process group is killed.
    pub timeout_seconds: f64,
    /// Address-space limit in bytes (RLIMIT_AS), applied on the CPU only: CUDA reserves far more
    /// virtual memory than it uses. None: no limit.
    pub memory_bytes: Option<u64>,
    /// CPU-time limit in seconds (RLIMIT_CPU, all threads together). None: no limit.
    pub cpu_seconds: Option<u64>,
    /// Open-file limit (RLIMIT_NOFILE).
    pub open_files: u64,
    /// CPU threads each worker computes with (libtorch's intra-op pool, OpenMP). Default:
    /// `OMP_NUM_THREADS` when set, else the CPUs this process may use (its affinity and cgroup
    /// quota) divided by the jobs it runs at once, so concurrent workers do not oversubscribe
    /// the cores (OpenMP threads that outnumber them spin and wait on each other).
    pub threads: Option<usize>,
}

impl Default for WorkerLimits {
    fn default() -> Self {
        WorkerLimits {
            isolate: true,
            timeout_seconds: 4.0 * 3600.0,
            memory_bytes: Some(32 << 30),
            cpu_seconds: None,
            open_files: 256,
            threads: None,
        }
    }
}

impl WorkerLimits {
    /// Checks the values; the message names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.timeout_seconds.is_finite() && self.timeout_seconds > 0.0) {
            return Err(format!("worker.timeout_seconds must be positive, not {}", self.timeout_seconds));
        }
        if self.memory_bytes.is_some_and(|m| m < 256 << 20) {
            return Err("worker.memory_bytes below 256 MiB cannot load libtorch".into());
        }
        if self.open_files < 32 {
            return Err(format!("worker.open_files must be at least 32, not {}", self.open_files));
        }
        if self.threads == Some(0) {
            return Err("worker.threads must be at least 1".into());
        }
        Ok(())
    }

    /// The thread count a worker gets when `concurrent` workers run at once (see `threads`).
    pub fn threads_for(&self, concurrent: usize) -> usize {
        let from_environment = || std::env::var("OMP_NUM_THREADS").ok().and_then(|n| n.trim().parse().ok());
        let share = || {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            cpus / concurrent.max(1)
        };
        self.threads.or_else(from_environment).unwrap_or_else(share).max(1)
    }
}

/// Runs `job`'s untrusted half in a worker process under `limits`, with `dir` (created) for its
/// files, home and temporary directory, then concludes the job here: the report, judged, signed
/// and published to `job.out`. `concurrent`: the workers this process runs at once (they share
/// the CPUs). A worker that fails, is killed or times out is an [`Error::Worker`] naming why.
pub async fn run(job: &PurifyJob, limits: &WorkerLimits, concurrent: usize, dir: &Path) -> Result<Report> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let job_file = dir.join("job.json");
    crate::fsutil::write_json(&job_file, job)?;
    let staging = job::staging_dir(&job.out)?;
    let result_file = dir.join("evaluated.json");
    let error_file = dir.join("error.txt");
    let log = dir.join("worker.log");
    let home = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
    let exe = std::env::current_exe().map_err(|e| Error::Worker(format!("cannot find the fstgate executable: {e}")))?;
    let threads = limits.threads_for(concurrent).to_string();
    let mut command = tokio::process::Command::new(exe);
    command
        .arg("worker")
        .arg("--job")
        .arg(&job_file)
        .arg("--staging")
        .arg(staging.path())
        .arg("--result")
        .arg(&result_file)
        .arg("--error")
        .arg(&error_file)
        // The gate's working directory, so relative paths in the job mean what they meant.
        .env_clear()
        .envs(KEPT_ENVIRONMENT.iter().filter_map(|name| std::env::var_os(name).map(|value| (name, value))))
        .env("HOME", &home)
        .env("TMPDIR", &home)
        .env("OMP_NUM_THREADS", &threads)
        .env("MKL_NUM_THREADS", &threads)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).map_err(|e| Error::io(&log, e))?)
        .process_group(0)
        .kill_on_drop(true);
    let rlimits = resource_limits(limits, job.device.is_cuda());
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe functions
    // (setrlimit, prctl, getppid, kill) on values computed before the fork.
    unsafe {
        command.pre_exec(move || {
            for (resource, value) in &rlimits {
                let limit = libc::rlimit { rlim_cur: *value, rlim_max: *value };
                if libc::setrlimit(*resource, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Die with the gate: a worker never outlives the process that would judge it.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| Error::Worker(format!("cannot start the worker: {e}")))?;
    let timeout = Duration::from_secs_f64(limits.timeout_seconds);
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status.map_err(|e| Error::Worker(format!("cannot wait for the worker: {e}")))?,
        Err(_) => {
            kill_group(&child);
            let _ = child.wait().await;
            return Err(Error::Worker(format!(
                "timed out after {} s running the model and was killed (worker.timeout_seconds)",
                limits.timeout_seconds
            )));
        }
    };
    // Whatever the worker started in its group goes with it.
    kill_group(&child);
    // A crash injected in the worker takes the gate down too, as losing the machine would.
    if std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGKILL) {
        crate::failpoint::Failpoint::MidTraining.reached();
    }
    if !status.success() {
        // Its own account first; else the end of what it wrote to stderr.
        let message = std::fs::read_to_string(&error_file).ok().or_else(|| {
            let log = std::fs::read_to_string(&log).ok()?;
            let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
            Some(lines[lines.len().saturating_sub(3)..].join(" | "))
        });
        return Err(Error::Worker(failure(status, message.as_deref(), limits)));
    }
    let bytes = std::fs::read(&result_file).map_err(|e| Error::io(&result_file, e))?;
    let evaluated: Evaluated = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Worker(format!("{} is not an evaluation: {e}", result_file.display())))?;
    job::conclude(job, evaluated, staging)
}

fn kill_group(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    }
}

/// The limits to set in the worker, as (resource, value).
fn resource_limits(limits: &WorkerLimits, cuda: bool) -> Vec<(libc::__rlimit_resource_t, libc::rlim_t)> {
    let mut set = vec![(libc::RLIMIT_NOFILE, limits.open_files), (libc::RLIMIT_CORE, 0)];
    if let Some(bytes) = limits.memory_bytes.filter(|_| !cuda) {
        set.push((libc::RLIMIT_AS, bytes));
    }
    if let Some(seconds) = limits.cpu_seconds {
        set.push((libc::RLIMIT_CPU, seconds));
    }
    set
}

/// Why a worker ended without a result, in words.
fn failure(status: ExitStatus, message: Option<&str>, limits: &WorkerLimits) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(message) = message.map(str::trim).filter(|m| !m.is_empty()) {
        return truncate(message);
    }
    match status.signal() {
        Some(libc::SIGXCPU) => {
            format!(
                "exceeded its CPU-time limit ({} s, worker.cpu_seconds) and was killed",
                limits.cpu_seconds.unwrap_or(0)
            )
        }
        Some(libc::SIGKILL) => "was killed (SIGKILL: out of memory, or stopped from outside)".into(),
        Some(signal) => format!("crashed (signal {signal}) while running the model"),
        None => format!("exited with status {} without saying why", status.code().unwrap_or(-1)),
    }
}

fn truncate(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.to_string();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

/// Paths a worker is given (`fstgate worker`).
#[derive(Debug, Clone)]
pub struct WorkerPaths {
    /// The job document (without policies or key).
    pub job: PathBuf,
    /// Where the purified model goes, as `model.pt`.
    pub staging: PathBuf,
    /// Where the evaluation is written (JSON) on success.
    pub result: PathBuf,
    /// Where the error is written on failure.
    pub error: PathBuf,
}

/// The worker's side: reads the job, confines itself (`confine`), runs `job::evaluate`, and
/// writes the result (exit 0) or the error (exit 2). Called first thing in `fstgate worker`,
/// before any thread starts (a process with threads cannot enter a new user namespace, and
/// Landlock and seccomp bind the calling thread and those it starts later).
pub fn serve(paths: &WorkerPaths) -> i32 {
    let network = confine::isolate_network();
    let outcome = (|| -> Result<()> {
        let bytes = std::fs::read(&paths.job).map_err(|e| Error::io(&paths.job, e))?;
        let job: PurifyJob = serde_json::from_slice(&bytes)?;
        let own = paths.result.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let allowed =
            confine::Allowed { read: job.input_paths(), write: vec![own.to_path_buf(), paths.staging.clone()] };
        let confinement = confine::restrict(&allowed, network);
        let mut evaluated = job::evaluate(&job, &paths.staging, &Silent)?;
        for layer in [&confinement.network, &confinement.filesystem, &confinement.syscalls] {
            if !layer.enforced {
                evaluated.report.warnings.push(format!("the model worker ran with a layer missing: {}", layer.detail));
            }
        }
        evaluated.report.confinement = Some(confinement);
        crate::fsutil::write_json(&paths.result, &evaluated)
    })();
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            let _ = std::fs::write(&paths.error, e.to_string());
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Concurrent workers share the CPUs instead of each taking all of them; a configured count
    /// wins, and there is always at least one thread.
    #[test]
    fn concurrent_workers_share_the_cpus() {
        let configured = WorkerLimits { threads: Some(3), ..WorkerLimits::default() };
        assert_eq!(configured.threads_for(64), 3);
        assert!(WorkerLimits { threads: Some(0), ..WorkerLimits::default() }.validate().is_err());
        if std::env::var_os("OMP_NUM_THREADS").is_none() {
            let cpus = std::thread::available_parallelism().unwrap().get();
            assert_eq!(WorkerLimits::default().threads_for(1), cpus);
            assert_eq!(WorkerLimits::default().threads_for(cpus * 4), 1);
        }
    }

    #[test]
    fn limits_are_checked_and_cuda_skips_the_address_space_limit() {
        assert!(WorkerLimits::default().validate().is_ok());
        let bad = WorkerLimits { timeout_seconds: 0.0, ..WorkerLimits::default() };
        assert!(bad.validate().unwrap_err().contains("timeout_seconds"));
        let tiny = WorkerLimits { memory_bytes: Some(1 << 20), ..WorkerLimits::default() };
        assert!(tiny.validate().unwrap_err().contains("memory_bytes"));
        let cpu = resource_limits(&WorkerLimits::default(), false);
        assert!(cpu.contains(&(libc::RLIMIT_AS, 32 << 30)));
        assert!(!resource_limits(&WorkerLimits::default(), true).iter().any(|(r, _)| *r == libc::RLIMIT_AS));
    }

    #[test]
    fn a_failed_worker_says_why() {
        use std::os::unix::process::ExitStatusExt;
        let limits = WorkerLimits { cpu_seconds: Some(60), ..WorkerLimits::default() };
        let killed = failure(ExitStatus::from_raw(libc::SIGKILL), None, &limits);
        assert!(killed.contains("out of memory"), "{killed}");
        let cpu = failure(ExitStatus::from_raw(libc::SIGXCPU), None, &limits);
        assert!(cpu.contains("CPU-time limit (60 s"), "{cpu}");
        let long = "x".repeat(5000);
        assert_eq!(failure(ExitStatus::from_raw(2 << 8), Some(&long), &limits).len(), MAX_MESSAGE_BYTES + 3);
    }
}
