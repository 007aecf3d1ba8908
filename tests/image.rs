//! The container image (Containerfile, built by scripts/build-image.sh with podman, nothing
//! pulled from a registry) really runs fstgate: the test builds it and runs, in containers that
//! are removed when they stop,
//! - `id -u`: the image runs as the unprivileged user fstgate (UID 65532, the integrations'
//!   runAsUser), and its configuration (entrypoint, working directory, OCI labels) is as built;
//! - `fstgate sandbox-check --json`: the model worker's confinement inside a container (printed;
//!   which layers the kernel enforces there is not asserted, it depends on the host);
//! - `fstgate demo`: the whole job on Fashion-MNIST (mounted read-only), with a read-only root
//!   filesystem and /var/lib/fstgate the only writable place, as integrations/ deploy it; it
//!   must release on the CPU.
//!
//! The demo takes 1.5 minutes on two idle cores and up to 4 on busy ones. It runs when the image's
//! inputs (the `inputs` digest the script prints: Containerfile, the script, the binary, the
//! libraries, the base's recipe) differ from the last passing run's, kept in a stamp beside
//! podman's configuration under the fstgate cache; `FSTGATE_IMAGE_DEMO=always` runs it
//! regardless. The image is built and checked every time (with podman's layer cache an unchanged
//! image takes about 5 seconds, a new binary about 8, the first build (mmdebstrap) about a minute).
//!
//! Where podman cannot be installed (no apt-get, not root and no sudo) the test is unavailable:
//! a failure in CI, a loud skip elsewhere. No container or podman process outlives the test:
//! every container is named and removed when its guard drops, and afterwards no process may carry
//! the marker this test puts in the environment of every podman it starts.
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{FASHION_MNIST, Spawned};

/// The image's user, the runAsUser of the integrations' manifests.
const UID: &str = "65532";
/// The environment variable every podman process of this test carries (value unique to it).
const MARKER: &str = "FSTGATE_IMAGE_TEST";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What scripts/build-image.sh printed (`key=value` lines).
struct Built {
    tag: String,
    inputs: String,
    containers_conf: PathBuf,
    size: String,
}

/// This test's podman: the script's configuration (runc, ulimits within the host's) and the
/// marker.
struct Podman {
    conf: PathBuf,
    marker: String,
    logs: PathBuf,
}

impl Podman {
    fn command(&self) -> Command {
        let mut command = Command::new("podman");
        command.env("CONTAINERS_CONF", &self.conf).env(MARKER, &self.marker).stdin(Stdio::null());
        command
    }

    /// `podman run --rm --name NAME ARGS...` with output to logs/NAME.log, killed (and the
    /// container removed) after `limit`; the exit status and the output.
    fn run(&self, name: &str, args: &[&str], limit: Duration) -> (ExitStatus, String) {
        let container = format!("fstgate-test-{}-{name}", std::process::id());
        let _guard = Container { podman: self, name: container.clone() };
        let log = self.logs.join(format!("{name}.log"));
        let mut command = self.command();
        command.args(["run", "--rm", "--name", &container, "--network=none"]).args(args);
        let status = run_logged(command, &log, limit, &format!("podman run ({name})"));
        (status, std::fs::read_to_string(&log).unwrap())
    }
}

/// Removes its container, whatever state it is in, when dropped (the test failed or timed out).
struct Container<'a> {
    podman: &'a Podman,
    name: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self
            .podman
            .command()
            .args(["rm", "--force", "--ignore", "--time", "0", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `command` in its own process group with stdout and stderr to `log`; past `limit` the
/// group is killed and the test fails.
fn run_logged(mut command: Command, log: &Path, limit: Duration, what: &str) -> ExitStatus {
    let file = std::fs::File::create(log).unwrap();
    command.stdout(file.try_clone().unwrap()).stderr(file);
    let mut process = Spawned::start(command);
    let started = Instant::now();
    loop {
        if let Some(status) = process.child().try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            drop(process);
            panic!("{what} ran over {limit:?}; its output is in {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Builds the image with scripts/build-image.sh from the binary under test; None (after
/// `unavailable`) where podman cannot be installed.
fn build(podman_marker: &str, logs: &Path) -> Option<Built> {
    let log = logs.join("build-image.log");
    let stdout = logs.join("build-image.out");
    let mut command = Command::new(repo().join("scripts/build-image.sh"));
    command.arg("--binary").arg(env!("CARGO_BIN_EXE_fstgate")).env(MARKER, podman_marker).stdin(Stdio::null());
    let file = std::fs::File::create(&log).unwrap();
    command.stdout(std::fs::File::create(&stdout).unwrap()).stderr(file);
    let started = Instant::now();
    let mut process = Spawned::start(command);
    let status = loop {
        if let Some(status) = process.child().try_wait().unwrap() {
            break status;
        }
        // A cold build (mmdebstrap, the first podman build) takes 2 to 3 minutes.
        assert!(started.elapsed() < Duration::from_secs(1200), "scripts/build-image.sh ran over 20 minutes");
        std::thread::sleep(Duration::from_millis(200));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    if status.code() == Some(3) {
        common::unavailable("podman (the container image)", &tail(&stderr, 5));
        return None;
    }
    assert!(
        status.success(),
        "scripts/build-image.sh failed ({status}); log {}:\n{}",
        log.display(),
        tail(&stderr, 40)
    );
    let printed: HashMap<String, String> = std::fs::read_to_string(&stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let get = |key: &str| printed.get(key).unwrap_or_else(|| panic!("scripts/build-image.sh printed no {key}")).clone();
    // The script's own timings, for the test's output.
    for line in stderr.lines().filter(|line| line.starts_with("[build-image]")) {
        eprintln!("{line}");
    }
    eprintln!("image built in {:.1} s", started.elapsed().as_secs_f64());
    Some(Built {
        tag: get("tag"),
        inputs: get("inputs"),
        containers_conf: PathBuf::from(get("containers_conf")),
        size: get("size"),
    })
}

/// Processes other than this one carrying `MARKER=marker` (their pid and command line).
fn marked(marker: &str) -> Vec<(i32, String)> {
    let wanted = format!("{MARKER}={marker}").into_bytes();
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        // Unreadable: another user's, a kernel thread, or one that has exited (a zombie).
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if pid != me && environ.split(|&b| b == 0).any(|variable| variable == wanted.as_slice()) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ").trim().to_string()));
        }
    }
    found
}

/// What podman started and still runs 10 seconds after the last container stopped (conmon
/// finishes a container's clean-up just after `podman run` returns): each is killed and named.
/// Rootless podman's pause process (catatonit), which podman keeps by design and starts again
/// when needed, is killed without being named.
fn leftovers(marker: &str) -> Vec<String> {
    let asked = Instant::now();
    let mut found = marked(marker);
    while !found.is_empty() && asked.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        found = marked(marker);
    }
    let mut named = Vec::new();
    for (pid, cmdline) in found {
        unsafe { libc::kill(pid, libc::SIGKILL) };
        if !cmdline.starts_with("catatonit") {
            named.push(format!("{pid} {cmdline}"));
        }
    }
    named
}

#[test]
fn image_builds_runs_unprivileged_and_releases_the_demo() {
    let marker = format!("{}-{}", std::process::id(), std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_nanos());
    let logs = common::scratch("image");
    let Some(built) = build(&marker, &logs) else { return };
    let podman = Podman { conf: built.containers_conf.clone(), marker: marker.clone(), logs: logs.clone() };
    eprintln!("image {} ({}), inputs {}", built.tag, built.size, built.inputs);

    // The configuration: entrypoint, user, working directory, library path, OCI labels.
    let inspect = podman.command().args(["image", "inspect", &built.tag]).output().unwrap();
    assert!(inspect.status.success(), "podman image inspect: {}", String::from_utf8_lossy(&inspect.stderr));
    let inspect: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(config["Entrypoint"], serde_json::json!(["fstgate"]), "{config:#}");
    assert_eq!(config["User"], format!("{UID}:{UID}"), "{config:#}");
    assert_eq!(config["WorkingDir"], "/var/lib/fstgate", "{config:#}");
    let env: Vec<&str> = config["Env"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert!(env.contains(&"LD_LIBRARY_PATH=/opt/fstgate/lib"), "{env:?}");
    assert!(env.contains(&"HOME=/var/lib/fstgate"), "{env:?}");
    let labels = &config["Labels"];
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0", "{labels:#}");
    assert_eq!(labels["org.opencontainers.image.version"], env!("CARGO_PKG_VERSION"), "{labels:#}");
    assert!(labels["org.opencontainers.image.source"].as_str().is_some_and(|s| s.starts_with("https://")));

    // Not root.
    let (status, out) = podman.run("id", &["--entrypoint", "id", &built.tag, "-u"], Duration::from_secs(300));
    assert!(status.success(), "id -u in the image failed ({status}):\n{out}");
    assert_eq!(out.trim(), UID, "the image does not run as fstgate");

    // The model worker's confinement inside a container: exit 0 (holds) or 1 (does not hold
    // here); either way a complete JSON answer.
    let (status, out) = podman.run("sandbox-check", &[&built.tag, "sandbox-check", "--json"], Duration::from_secs(300));
    assert!(matches!(status.code(), Some(0 | 1)), "sandbox-check in the image failed ({status}):\n{out}");
    let start = out.find('{').unwrap_or_else(|| panic!("sandbox-check printed no JSON:\n{out}"));
    let check: serde_json::Value = serde_json::Deserializer::from_str(&out[start..])
        .into_iter()
        .next()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert!(check["attempts"].as_array().is_some_and(|a| !a.is_empty()), "{check:#}");
    for layer in ["network", "filesystem", "syscalls"] {
        let layer_check = &check["confinement"][layer];
        assert!(layer_check["enforced"].is_boolean(), "{check:#}");
        eprintln!(
            "sandbox-check in the container: {layer} {}: {}",
            if layer_check["enforced"] == true { "enforced" } else { "NOT enforced" },
            layer_check["detail"].as_str().unwrap_or("")
        );
    }
    eprintln!("sandbox-check in the container: as expected: {}", check["as_expected"]);

    // The demo, when these inputs have not passed it yet.
    let stamp = built.containers_conf.with_file_name("image-demo.stamp");
    let passed = std::fs::read_to_string(&stamp).unwrap_or_default();
    let always = std::env::var("FSTGATE_IMAGE_DEMO").is_ok_and(|v| v == "always");
    if !always && passed.lines().any(|line| line == format!("inputs={}", built.inputs)) {
        eprintln!(
            "\n*** the demo in the image is not run again: these image inputs ({}) passed it before ({}; \
             FSTGATE_IMAGE_DEMO=always runs it) ***\n",
            built.inputs,
            stamp.display()
        );
    } else {
        assert!(
            Path::new(FASHION_MNIST).join("train-images-idx3-ubyte.gz").exists(),
            "no {FASHION_MNIST}: ./dev setup"
        );
        let data = format!("{FASHION_MNIST}:/usr/share/datasets/fashion-mnist:ro");
        let started = Instant::now();
        let args = [
            // As integrations/ deploy it: read-only root, one writable place.
            "--read-only",
            "--tmpfs",
            "/var/lib/fstgate:rw,exec,U,mode=0750",
            "-v",
            &data,
            &built.tag,
            "demo",
            "--work",
            "/var/lib/fstgate/demo",
        ];
        let (status, out) = podman.run("demo", &args, Duration::from_secs(1500));
        eprintln!("demo in the container: {:.1} s", started.elapsed().as_secs_f64());
        assert!(status.success(), "the demo in the image did not release ({status}):\n{}", tail(&out, 40));
        for expected in ["fst on cpu", "decision: release", "(job 1: released)", "demo finished in"] {
            assert!(out.contains(expected), "the demo's output lacks `{expected}`:\n{}", tail(&out, 40));
        }
        let now = std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_secs();
        std::fs::write(&stamp, format!("inputs={}\npassed_unix={now}\nimage={}\n", built.inputs, built.tag)).unwrap();
    }

    // Nothing podman started is still running (conmon, a container's processes).
    let left = leftovers(&marker);
    assert!(left.is_empty(), "still running after the test (killed now):\n{}", left.join("\n"));
}
