//! The pipeline on the embedded default (a local registry directory, SQLite, a local release
//! directory), as the pipeline and hostile-model tests set it up: toy data, a key pair, a
//! configuration, uploads, and counts taken from the release directory itself.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;
use sha2::Digest;

use super::Spawned;

pub fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heads/fc.pt")
}

/// A registry, a destination, a key pair, toy data and a configuration, in a fresh directory.
pub struct Setup {
    pub dir: PathBuf,
    pub registry: PathBuf,
    pub released: PathBuf,
    pub public_key: PathBuf,
}

impl Setup {
    /// `epochs` sets how long each purification takes (a slow one leaves time to kill it).
    pub fn new(name: &str, epochs: usize, lease_seconds: f64) -> Setup {
        let dir = super::scratch(name);
        let (registry, released) = (dir.join("registry"), dir.join("released"));
        std::fs::create_dir_all(&registry).unwrap();
        let data = dir.join("toy.safetensors");
        super::toy_data(&data, 64, 1, 10);
        let (private_key, public_key) = (dir.join("signing.pem"), dir.join("signing.pub"));
        fstgate::attestation::keys::generate_files(&private_key, &public_key).unwrap();
        let config = format!(
            r#"
state_dir = "state"
device = "cpu"
concurrency = 2
poll_interval_seconds = 0.2
lease_seconds = {lease_seconds}

[[sources]]
name = "local"
url = "registry"

[destination]
url = "released"

{}"#,
            super::toy_data_toml(&data, epochs)
        );
        std::fs::write(dir.join("fstgate.toml"), config).unwrap();
        Setup { dir, registry, released, public_key }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("fstgate.toml")
    }

    /// Uploads the fixture model as `<name>/<version>`; `complete` writes the marker last.
    pub fn upload(&self, model: &str, complete: bool) {
        self.upload_file(model, &fixture_model(), complete);
    }

    /// Uploads `file` as `<name>/<version>`; `complete` writes the marker last.
    pub fn upload_file(&self, model: &str, file: &Path, complete: bool) {
        let dir = self.registry.join(model);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(file, dir.join("model.pt")).unwrap();
        if complete {
            std::fs::write(dir.join("_SUCCESS"), b"").unwrap();
        }
    }

    /// Appends `table` (TOML, starting with its `[header]`) to the configuration.
    pub fn add_table(&self, table: &str) {
        let config = std::fs::read_to_string(self.config()).unwrap();
        std::fs::write(self.config(), format!("{config}\n{table}\n")).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> std::process::Command {
        self.command_with(&self.config(), args)
    }

    /// `fstgate ARGS --config CONFIG` in this setup's environment (another watcher's file).
    pub fn command_with(&self, config: &Path, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::cargo_bin("fstgate").unwrap();
        command.args(args).arg("--config").arg(config).env("FSTGATE_CACHE", self.dir.join("cache"));
        command.env_remove("GITHUB_STEP_SUMMARY");
        command
    }

    /// `fstgate gate`: its exit code and JSON report.
    pub fn gate(&self) -> (i32, Value) {
        let output = self.command(&["--quiet", "gate", "--json", "-"]).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
        (output.status.code().unwrap(), report)
    }

    /// Every outcome.json under the destination, by model.
    pub fn outcomes(&self) -> Vec<(String, Value)> {
        let mut found = Vec::new();
        walk(&self.released, &mut |path| {
            if path.file_name().is_some_and(|n| n == "outcome.json") {
                let text = std::fs::read_to_string(path).unwrap();
                let outcome: Value = serde_json::from_str(&text).unwrap();
                found.push((outcome["model"].as_str().unwrap().to_string(), outcome));
            }
        });
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    /// What the destination holds per upload (`<name>/<version>/<sha256[..16]>`), counted from
    /// the directory itself: outcomes, attempt directories, and every model.pt written.
    pub fn published(&self) -> Vec<(String, Published)> {
        let mut found: std::collections::BTreeMap<String, Published> = Default::default();
        walk(&self.released, &mut |path| {
            let relative = path.strip_prefix(&self.released).unwrap().to_str().unwrap().to_string();
            let parts: Vec<&str> = relative.split('/').collect();
            let upload = parts[..3.min(parts.len())].join("/");
            let entry = found.entry(upload).or_default();
            match parts[3..] {
                ["outcome.json"] => entry.outcomes += 1,
                ["attempts", attempt, file] => {
                    entry.attempts.insert(attempt.to_string());
                    entry.models += usize::from(file == "model.pt");
                }
                _ => panic!("{relative}: not where publication writes"),
            }
        });
        found.into_iter().collect()
    }

    /// Exactly once, counted from the destination: every upload has one outcome, at most
    /// `max_attempts` attempt directories (racing or crashed attempts leave theirs), each with at
    /// most one model, and the attempt the outcome names holds every file it lists, unchanged.
    pub fn assert_published_once(&self, uploads: usize, max_attempts: usize) {
        let published = self.published();
        assert_eq!(published.len(), uploads, "{published:#?}");
        for (upload, counted) in &published {
            assert_eq!(counted.outcomes, 1, "{upload}: {counted:?}");
            assert!((1..=max_attempts).contains(&counted.attempts.len()), "{upload}: {counted:?}");
            assert!(counted.models <= counted.attempts.len(), "{upload}: {counted:?}");
            let dir = self.released.join(upload);
            let outcome: Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("outcome.json")).unwrap()).unwrap();
            let files_under = dir.join(outcome["files_under"].as_str().unwrap());
            for file in outcome["files"].as_array().unwrap() {
                let bytes = std::fs::read(files_under.join(file["name"].as_str().unwrap())).unwrap();
                assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), file["sha256"].as_str().unwrap(), "{upload}");
            }
        }
    }

    pub fn jobs(&self) -> Value {
        let jobs = self.command(&["jobs", "--json"]).output().unwrap();
        serde_json::from_slice(&jobs.stdout).unwrap()
    }

    /// The directory of the files a (local) outcome points to.
    pub fn released_dir(&self, model: &str) -> PathBuf {
        let (_, outcome) = self.outcomes().into_iter().find(|(m, _)| m == model).unwrap();
        let sha = outcome["artifact_sha256"].as_str().unwrap();
        self.released.join(model).join(&sha[..16]).join(outcome["files_under"].as_str().unwrap())
    }

    /// The report.json released for `model`.
    pub fn released_report(&self, model: &str) -> Value {
        let file = self.released_dir(model).join("report.json");
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap()
    }

    /// `fstgate verify --model <claimed>'s URI` on the files released for `model`.
    pub fn verify_as(&self, model: &str, claimed: &str) -> std::process::Output {
        let dir = self.released_dir(model);
        let uri = format!("{}/{claimed}/", self.registry.display());
        std::process::Command::cargo_bin("fstgate")
            .unwrap()
            .args(["verify", &dir.display().to_string(), "--public-key", &self.public_key.display().to_string()])
            .args(["--model", &uri])
            .output()
            .unwrap()
    }

    /// `fstgate verify` on the files a (local) outcome points to, checking that the statements
    /// name the model's registry URI.
    pub fn verify(&self, model: &str) {
        let output = self.verify_as(model, model);
        assert!(output.status.success(), "{model}: {}", String::from_utf8_lossy(&output.stdout));
    }
}

/// One upload's files in the destination.
#[derive(Debug, Default)]
pub struct Published {
    pub outcomes: usize,
    pub attempts: std::collections::BTreeSet<String>,
    pub models: usize,
}

pub fn walk(dir: &Path, visit: &mut dyn FnMut(&Path)) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { walk(&path, visit) } else { visit(&path) }
    }
}

pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn spawn_watch(setup: &Setup, log: &Path) -> Spawned {
    let log = std::fs::File::create(log).unwrap();
    let mut command = setup.command(&["watch"]);
    command.env("FSTGATE_LOG", "info").stdout(Stdio::null()).stderr(log);
    Spawned::start(command)
}
