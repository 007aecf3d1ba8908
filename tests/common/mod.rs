//! Shared by the integration tests: Fashion-MNIST (installed by `./dev setup`), the demo's
//! backdoored model trained by the lab once per `./dev test` run (once per test process under a
//! plain `cargo test`), servers and watchers run in their own process groups (stopped whole when
//! a test ends, however it ends), and the rule for a missing server or tool: a failure in CI, a
//! skip recorded for `./dev test`'s summary elsewhere.
#![allow(dead_code)]

pub mod moto;
pub mod pipeline;
pub mod pki;
pub mod postgres;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use fstgate::data::{DataSpec, Dataset, InputSpec};
use fstgate::job::{AttackInput, PurifyJob, Sample};
use fstgate::lab::{self, LabReport};
use fstgate::policy::{Limits, PolicySet, PolicySpec};
use fstgate::purification::{Settings, Strength};
use fstgate::training::Silent;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use tch::Device;

pub const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

pub fn spec(split: &str) -> DataSpec {
    format!("{FASHION_MNIST}#{split}").parse().unwrap()
}

pub fn fashion(split: &str, count: i64, seed: u64) -> Dataset {
    fstgate::data::load(&spec(split)).unwrap().balanced_count(count, seed).unwrap()
}

/// A scratch directory under target/ that outlives the test (inspectable after a failure).
pub fn scratch(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("fstgate-tests").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Backdoored {
    pub model: PathBuf,
    pub report: LabReport,
}

/// The demo's model: a small CNN trained on 30,000 Fashion-MNIST images of which 1% carry a
/// BadNets patch relabelled to class 0. Trained once per `./dev test` run and shared by its test
/// binaries (see [`run_dir`]); once per test process where the run has no id.
pub fn badnets_model() -> &'static Backdoored {
    static MODEL: OnceLock<Backdoored> = OnceLock::new();
    MODEL.get_or_init(|| {
        let settings = fstgate::demo::lab_settings();
        let Some(dir) = run_dir() else { return lab_model("badnets.pt", &settings) };
        let model = dir.join("badnets.pt");
        // The lab moves the model into place after its lab.json: a model there is complete.
        if !model.is_file() {
            std::fs::create_dir_all(&dir).unwrap();
            return train_lab_model(&model, &settings);
        }
        let report = serde_json::from_slice(&std::fs::read(model.with_extension("lab.json")).unwrap()).unwrap();
        Backdoored { model, report }
    })
}

/// The directory this `./dev test` run's test binaries share models in, named after
/// FSTGATE_TEST_RUN (unique per run, so nothing an earlier build of the code made is reused;
/// `./dev test` removes earlier runs' directories); `None` outside such a run.
pub fn run_dir() -> Option<PathBuf> {
    let run = std::env::var("FSTGATE_TEST_RUN").ok().filter(|run| !run.is_empty())?;
    Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("fstgate-runs").join(run))
}

/// Trains a backdoored model with the lab on 30,000 Fashion-MNIST training images (tested on
/// 2,000) into a scratch directory of its own.
pub fn lab_model(file: &str, settings: &lab::PoisonSettings) -> Backdoored {
    train_lab_model(&scratch(&format!("lab-{file}")).join(file), settings)
}

/// Trains a backdoored model with the lab on 30,000 Fashion-MNIST training images (tested on
/// 2,000) into `model`.
fn train_lab_model(model: &Path, settings: &lab::PoisonSettings) -> Backdoored {
    let train = fashion("train", 30_000, 1);
    let test = fashion("test", 2_000, 1);
    let report =
        lab::train_backdoored(&train, &test, settings, &InputSpec::default(), Device::Cpu, model, &Silent).unwrap();
    Backdoored { model: model.to_path_buf(), report }
}

/// True when running in CI (`CI` set to anything but empty, `0` or `false`): there nothing a
/// test needs may be missing.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Something a test needs is missing (`what`, because `reason`). In CI the test fails, naming
/// it; elsewhere the skip is printed and appended to the skip log (`FSTGATE_SKIP_LOG`, which
/// `./dev test` lists at the end of the run), and the caller returns early.
pub fn unavailable(what: &str, reason: &str) {
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let reason = reason.trim();
    assert!(!in_ci(), "{test}: {what} is unavailable, and CI tests everything: {reason}");
    eprintln!("\n*** SKIPPED {test}: {what} is unavailable: {reason} ***\n");
    let log = std::env::var_os("FSTGATE_SKIP_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("fstgate-skipped.log"));
    let line = format!("{test} ({}): {what}: {}\n", env!("CARGO_CRATE_NAME"), reason.replace('\n', " "));
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut file, line.as_bytes()).unwrap();
}

/// The Python interpreter of a server's virtual environment (`scripts/test-server.sh KIND`,
/// installed once). None, after [`unavailable`], only where Python's venv is missing; a failed
/// installation (a broken pin, no index) fails the test.
pub fn server_python(kind: &str) -> Option<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-server.sh");
    let output = std::process::Command::new(script).arg(kind).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(3) {
        unavailable(&format!("the {kind} server"), &stderr);
        return None;
    }
    assert!(output.status.success(), "scripts/test-server.sh {kind} failed ({}):\n{stderr}", output.status);
    Some(PathBuf::from(String::from_utf8(output.stdout).unwrap().trim()))
}

/// A process a test started, leader of its own process group: dropping it (the test passed,
/// failed or panicked) stops the whole group, so no server's worker outlives the test.
pub struct Spawned {
    child: std::process::Child,
}

impl Spawned {
    /// Starts `command` in a new process group.
    pub fn start(mut command: std::process::Command) -> Spawned {
        use std::os::unix::process::CommandExt;
        let child = command.process_group(0).spawn().unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Spawned { child }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn child(&mut self) -> &mut std::process::Child {
        &mut self.child
    }

    /// SIGTERM to the leader, then its exit status (a clean stop is part of what is tested).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
    }

    /// Waits for the leader to exit by itself.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let group = -(self.child.id() as i32);
        // TERM first so servers stop their workers, then KILL whatever is left of the group.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let asked = std::time::Instant::now();
        while self.child.try_wait().ok().flatten().is_none() && asked.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// A server from scripts/test-server.sh (`kind`), started by the test on a free 127.0.0.1 port
/// in its own process group (stopped when dropped).
pub struct TestServer {
    _server: Spawned,
    /// The interpreter of the server's virtual environment.
    pub python: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl TestServer {
    /// Starts what `command(python, port)` gives and waits until the port accepts connections;
    /// None (after a loud note) when the server cannot be installed here.
    pub fn start(kind: &str, command: impl FnOnce(&Path, u16) -> std::process::Command) -> Option<TestServer> {
        let python = server_python(kind)?;
        let port = free_port();
        let mut command = command(&python, port);
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let server = Spawned::start(command);
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < std::time::Duration::from_secs(120), "the {kind} server did not start");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Some(TestServer { _server: server, python, url: format!("http://127.0.0.1:{port}") })
    }
}

/// One `[[data]]` rule for every model on the toy data at `data`, and the toy settings.
pub fn toy_data_toml(data: &Path, epochs: usize) -> String {
    format!(
        "[[data]]\nmodels = \"*/*\"\nclean = \"{data}\"\ntest = \"{data}\"\n{}",
        toy_pipeline_toml(epochs),
        data = data.display()
    )
}

/// Runs `fstgate gate --json - --config C` for every configuration of `configs` at once (each
/// from a command `base` makes: its environment and directory) and asserts that each exits 0
/// having released exactly `model`, its log free of `secret`.
pub fn race_gates(base: impl Fn() -> std::process::Command, configs: &[&Path], model: &str, secret: &str) {
    use std::process::Stdio;
    let children: Vec<_> = configs
        .iter()
        .map(|config| {
            base()
                .args(["--quiet", "gate", "--json", "-", "--config"])
                .arg(config)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        assert!(!stderr.contains(secret), "a secret reached the log: {stderr}");
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let jobs = report["jobs"].as_array().unwrap();
        assert_eq!(jobs.len(), 1, "only the complete upload: {report:#}");
        assert_eq!((jobs[0]["model"].as_str(), jobs[0]["state"].as_str()), (Some(model), Some("released")));
    }
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until `GET path` on 127.0.0.1:port answers 200.
pub fn wait_for_http(port: u16, path: &str, timeout: std::time::Duration) {
    use std::io::{Read, Write};
    let started = std::time::Instant::now();
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") {
                return;
            }
        }
        assert!(started.elapsed() < timeout, "nothing answered 200 on 127.0.0.1:{port}{path}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1: the status code and the body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (code, body)
}

/// n grey 8x8 images (the fixtures' input) with labels cycling through `classes`.
pub fn toy_data(path: &Path, n: usize, channels: usize, classes: i64) {
    let pixels: Vec<u8> = (0..n * channels * 64).map(|i| (i * 37 % 256) as u8).collect();
    let labels: Vec<u8> = (0..n as i64).flat_map(|i| (i % classes).to_le_bytes()).collect();
    let mut map = HashMap::new();
    map.insert("images".to_string(), TensorView::new(Dtype::U8, vec![n, channels, 8, 8], &pixels).unwrap());
    map.insert("labels".to_string(), TensorView::new(Dtype::I64, vec![n], &labels).unwrap());
    safetensors::serialize_to_file(&map, None, path).unwrap();
}

/// The built-in thresholds policy with `config`.
pub fn thresholds(config: serde_json::Value) -> Arc<PolicySet> {
    Arc::new(PolicySet::new(vec![PolicySpec::default_thresholds(config)], Limits::default()).unwrap())
}

/// The default policy, compiled once per test binary.
pub fn default_policies() -> Arc<PolicySet> {
    static DEFAULT: OnceLock<Arc<PolicySet>> = OnceLock::new();
    DEFAULT.get_or_init(|| thresholds(serde_json::json!({}))).clone()
}

/// A one-epoch purification of the fc fixture (8x8 inputs) on 64 toy images in `dir`, written
/// to `dir/<out>`: fast enough for every test that needs a real report or output directory.
pub fn toy_job(dir: &Path, out: &str, seed: u64) -> PurifyJob {
    let data = dir.join("toy.safetensors");
    if !data.exists() {
        toy_data(&data, 64, 1, 10);
    }
    let spec: DataSpec = data.display().to_string().parse().unwrap();
    PurifyJob {
        model: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heads/fc.pt"),
        name: None,
        registry: None,
        head: None,
        clean_data: spec.clone(),
        clean_sample: Sample::All,
        test_data: spec,
        test_sample: Sample::All,
        input: InputSpec::default(),
        settings: Settings { epochs: 1, batch_size: 16, seed, ..Settings::default() },
        strength: Strength::Fixed,
        attack: Some((AttackInput::Trigger("badnets:size=2".parse().unwrap()), 0)),
        probes: fstgate::evaluation::standard_probes(),
        device: Device::Cpu,
        out: dir.join(out),
        policies: Some(default_policies()),
        signing_key: None,
    }
}

/// A thresholds policy configuration that allows any figures.
pub const ALLOW_ALL: &str = "{ max_attack_success_rate = 1.0, max_accuracy_drop_points = 100.0 }";

/// Pipeline configuration for toy jobs: one-epoch FST at fixed settings and a policy that allows
/// any figures, so pipeline tests exercise the plumbing in seconds.
pub fn toy_pipeline_toml(epochs: usize) -> String {
    pipeline_toml(epochs, 16, ALLOW_ALL)
}

/// Fixed FST settings, the thresholds policy with `policy` as its configuration, and the signing
/// key `signing.pem` beside the configuration.
pub fn pipeline_toml(epochs: usize, batch_size: usize, policy: &str) -> String {
    format!(
        r#"
[purification.settings]
method = "fst"
epochs = {epochs}
learning_rate = 0.01
momentum = 0.9
weight_decay = 0.0
batch_size = {batch_size}
alpha = 0.2
augmentation = {{ crop_padding = 0, horizontal_flip = false }}
seed = 0

[[policies]]
plugin = "builtin:thresholds"
config = {policy}

[signing_key]
path = "signing.pem"
"#
    )
}
