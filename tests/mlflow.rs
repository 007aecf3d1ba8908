//! The pipeline against a real MLflow 3.17.2 tracking server (installed by
//! scripts/test-server.sh mlflow, started here on 127.0.0.1 in its own process group, so its
//! uvicorn worker stops with it). Models are registered through the server with MLflow's own
//! Python client, artifacts uploaded through its proxy. One test walks the whole story in order,
//! sharing the server:
//! 1. forged deliveries (bad signature, old timestamp) get a 4xx and queue nothing; a signed
//!    one is processed once, and its replay gets a 409; through MLflow's own webhook, a re-run
//!    request (tag `fstgate.rerun`) and a new version with the same bytes each register a new
//!    purified version (toy models, a policy that allows any figures: this part is plumbing);
//! 2. a watcher with the **defaults** (automatic strength, default policy) gets MLflow's delivery of a backdoored
//!    Fashion-MNIST CNN, purifies it, and the policy releases it: ASR after <= 5% and a drop of
//!    at most 2 points, read back from the registry's tags; the purified version appears with
//!    its alias, and the attestation files registered with it pass `fstgate verify`;
//! 3. with the webhook deleted, a one-shot `fstgate gate` finds a new version by polling alone,
//!    and a policy denial tags the source version with the reasons and registers nothing.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use common::Spawned;
use serde_json::Value;

const SECRET: &str = "whsec-test-5f1c2a";

struct Server {
    _process: Spawned,
    python: PathBuf,
    url: String,
}

impl Server {
    fn start(dir: &Path) -> Option<Server> {
        let python = common::server_python("mlflow")?;
        let port = common::free_port();
        let log = std::fs::File::create(dir.join("mlflow-server.log")).unwrap();
        let mut command = Command::new(python.parent().unwrap().join("mlflow"));
        command
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("mlflow-artifacts"))
            .env("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")
            .env("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .env("MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY", "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=")
            // Webhooks created during the test are seen at once.
            .env("MLFLOW_WEBHOOK_CACHE_TTL", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let process = Spawned::start(command);
        common::wait_for_http(port, "/health", Duration::from_secs(90));
        Some(Server { _process: process, python, url: format!("http://127.0.0.1:{port}") })
    }

    /// Runs Python with `mlflow` pointed at this server and `c` an MlflowClient.
    fn py(&self, code: &str) -> String {
        let program = format!(
            "import json, sys, time, mlflow\nfrom mlflow import MlflowClient\nmlflow.set_tracking_uri('{}')\nc = MlflowClient()\n{code}",
            self.url
        );
        let output = Command::new(&self.python).args(["-c", &program]).output().unwrap();
        assert!(output.status.success(), "{}\n{}", String::from_utf8_lossy(&output.stderr), program);
        String::from_utf8(output.stdout).unwrap()
    }

    /// Registers a TorchScript file as a new version of `name` (an MLflow pytorch model logged
    /// to a run, its files uploaded through the server); returns the version.
    fn register(&self, name: &str, torchscript: &Path, scratch: &Path) -> String {
        let model_dir = scratch.join(format!("upload-{name}-{}", rand_suffix()));
        std::fs::create_dir_all(model_dir.join("data")).unwrap();
        std::fs::copy(torchscript, model_dir.join("data/model.pth")).unwrap();
        std::fs::write(
            model_dir.join("MLmodel"),
            "flavors:\n  pytorch:\n    model_data: data\n    pytorch_version: 2.11.0\n",
        )
        .unwrap();
        self.py(&format!(
            "with mlflow.start_run() as run:\n    mlflow.log_artifacts('{}', 'model')\n\
             mv = mlflow.register_model(f'runs:/{{run.info.run_id}}/model', '{name}')\nprint(mv.version)",
            model_dir.display()
        ))
        // MLflow prints the run's link to stdout first.
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string()
    }

    /// The registry's versions of `name` as JSON (with tags and aliases), or [] if none.
    /// (Search results carry no aliases: each version is read again.)
    fn versions(&self, name: &str) -> Value {
        serde_json::from_str(&self.py(&format!(
            "vs = [c.get_model_version(v.name, v.version) for v in c.search_model_versions(\"name = '{name}'\")]\n\
             print(json.dumps([{{'version': v.version, 'tags': v.tags, 'aliases': list(v.aliases), 'run_id': v.run_id}} for v in vs]))"
        )))
        .unwrap()
    }

    /// Waits until `name` has a version carrying `alias`; returns it.
    fn wait_for_alias(&self, name: &str, alias: &str, timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            if let Some(version) = self
                .versions(name)
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["aliases"].as_array().unwrap().iter().any(|a| a == alias))
            {
                return version.clone();
            }
            assert!(started.elapsed() < timeout, "no version of {name} got the alias {alias} within {timeout:?}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// POSTs a delivery signed as MLflow signs (with `secret`, `timestamp`, `id`); returns the
    /// HTTP status.
    fn deliver(&self, url: &str, body: &str, secret: &str, timestamp: i64, id: &str) -> u16 {
        self.py(&format!(
            "import base64, hashlib, hmac, requests\nbody = {body:?}\n\
             sig = 'v1,' + base64.b64encode(hmac.new({secret:?}.encode(), f'{id}.{timestamp}.{{body}}'.encode(), hashlib.sha256).digest()).decode()\n\
             r = requests.post({url:?}, data=body.encode(), headers={{'Content-Type': 'application/json', 'X-MLflow-Delivery-Id': {id:?}, 'X-MLflow-Timestamp': '{timestamp}', 'X-MLflow-Signature': sig}})\n\
             print(r.status_code)"
        ))
        .trim()
        .parse()
        .unwrap()
    }
}

fn rand_suffix() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A watcher's configuration; `gate` is the purification and policy part (fixed settings and a
/// policy, or nothing: the automatic strength and the default policy, as a user starts).
fn config(server: &str, listen: u16, toy_data: &Path, gate: &str) -> String {
    format!(
        r#"
state_dir = "state"
device = "cpu"
poll_interval_seconds = 3600
listen = "127.0.0.1:{listen}"

[[sources]]
name = "registry"
kind = "mlflow"
url = "{server}"
webhook_secret_env = "FSTGATE_TEST_WEBHOOK_SECRET"

[destination]
url = "released"

[[data]]
models = "fashion-*/*"
clean = "{fashion}#train"
clean_count = 3000
test = "{fashion}#test"
test_count = 2000
trigger = "badnets"
target_class = 0

[[data]]
models = "*/*"
clean = "{toy}"
test = "{toy}"

{}"#,
        gate,
        fashion = common::FASHION_MNIST,
        toy = toy_data.display(),
    )
}

fn fstgate(dir: &Path) -> Command {
    let mut command = Command::cargo_bin("fstgate").unwrap();
    command.current_dir(dir).env("FSTGATE_CACHE", dir.join("cache")).env("FSTGATE_TEST_WEBHOOK_SECRET", SECRET);
    command
}

fn jobs(dir: &Path) -> Vec<Value> {
    let output = fstgate(dir).args(["jobs", "--json", "--config", "watch.toml"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice::<Value>(&output.stdout).unwrap().as_array().unwrap().clone()
}

fn wait_for_job(dir: &Path, model: &str, state: &str, timeout: Duration) {
    let started = Instant::now();
    loop {
        let all = jobs(dir);
        if let Some(job) = all.iter().find(|j| j["model"] == model) {
            if job["state"] == state {
                return;
            }
            let done = ["released", "denied", "failed"].contains(&job["state"].as_str().unwrap());
            assert!(!done, "{model} ended {}, not {state}: {job:#}", job["state"]);
        }
        assert!(started.elapsed() < timeout, "{model} did not reach {state} within {timeout:?}: {all:#?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Starts `fstgate watch` on `config` (in `dir`), logging to `log`.
fn watch(dir: &Path, config: &str, log: &str) -> Spawned {
    let mut command = fstgate(dir);
    command
        .args(["watch", "--config", config])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).unwrap());
    Spawned::start(command)
}

/// The `fstgate.purified_from` tag of every version of `name`.
fn purified_from(server: &Server, name: &str) -> Vec<String> {
    let versions = server.versions(name);
    versions.as_array().unwrap().iter().map(|v| v["tags"]["fstgate.purified_from"].as_str().unwrap().into()).collect()
}

fn tag(tags: &Value, name: &str) -> f64 {
    tags[name].as_str().unwrap_or_else(|| panic!("no tag {name}: {tags:#}")).parse().unwrap()
}

#[test]
fn mlflow_registry_webhooks_polling_and_registration() {
    let dir = common::scratch("mlflow");
    let Some(server) = Server::start(&dir) else { return };
    let toy = dir.join("toy.safetensors");
    common::toy_data(&toy, 64, 1, 10);
    fstgate::attestation::keys::generate_files(&dir.join("signing.pem"), &dir.join("signing.pub")).unwrap();
    let listen = common::free_port();
    let fixed = |policy: &str| common::pipeline_toml(2, 64, policy);
    std::fs::write(dir.join("watch.toml"), config(&server.url, listen, &toy, &fixed(common::ALLOW_ALL))).unwrap();
    // What a user starts with: the automatic strength and the default thresholds (ASR <= 5%,
    // drop <= 2 points); on the same port as watch.toml, so MLflow's webhook reaches whichever
    // watcher runs.
    let defaults = "[signing_key]\npath = \"signing.pem\"\n";
    std::fs::write(dir.join("default.toml"), config(&server.url, listen, &toy, defaults)).unwrap();
    // A drop of at least 100 points is impossible: this policy denies everything.
    let deny_all = "{ max_attack_success_rate = 1.0, max_accuracy_drop_points = -100.0 }";
    std::fs::write(dir.join("deny.toml"), config(&server.url, common::free_port(), &toy, &fixed(deny_all))).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heads/fc.pt");
    let backdoored = common::badnets_model();

    let mut watcher = watch(&dir, "watch.toml", "watch.log");
    common::wait_for_http(listen, "/healthz", Duration::from_secs(60));
    let hook = format!("http://127.0.0.1:{listen}/webhooks/registry");

    // 1. Forged deliveries about a version the watcher has not seen (no MLflow webhook yet).
    // A refused delivery is refused before anything is queued: the store is checked at once.
    let toy_version = server.register("toy-fc", &fixture, &dir);
    let created = format!(
        r#"{{"entity": "model_version", "action": "created", "timestamp": "2026-11-25T10:00:00+00:00", "data": {{"name": "toy-fc", "version": "{toy_version}", "source": "x", "run_id": null, "tags": {{}}, "description": null}}}}"#
    );
    assert_eq!(server.deliver(&hook, &created, "not-the-secret", unix_now(), "forged-1"), 401);
    assert_eq!(server.deliver(&hook, &created, SECRET, unix_now() - 3600, "stale-1"), 400);
    assert_eq!(server.deliver(&hook.replace("registry", "nowhere"), &created, SECRET, unix_now(), "d-0"), 404);
    assert!(jobs(&dir).is_empty(), "a refused delivery queued a job: {:#?}", jobs(&dir));
    let now = unix_now();
    assert_eq!(server.deliver(&hook, &created, SECRET, now, "signed-1"), 202);
    wait_for_job(&dir, &format!("toy-fc/{toy_version}"), "released", Duration::from_secs(120));
    assert_eq!(server.deliver(&hook, &created, SECRET, now, "signed-1"), 409, "a replay must be refused");
    assert_eq!(jobs(&dir).len(), 1, "{:#?}", jobs(&dir));
    let purified_toy = server.wait_for_alias("toy-fc-purified", "purified", Duration::from_secs(60));
    assert_eq!(purified_toy["tags"]["fstgate.purified_from"], format!("toy-fc/{toy_version}"));

    // MLflow's own webhook from here on.
    server.py(&format!(
        "c.create_webhook(name='fstgate', url='{hook}', events=['model_version.created', 'model_version_tag.set'], secret='{SECRET}')"
    ));
    // A re-run request (tag `fstgate.rerun`) through MLflow's tag webhook gates toy-fc again:
    // a second purified version, which takes the alias.
    server.py(&format!("c.set_model_version_tag('toy-fc', '{toy_version}', 'fstgate.rerun', '1')"));
    let started = Instant::now();
    while purified_from(&server, "toy-fc-purified").len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(180), "the re-run did not register a new version");
        std::thread::sleep(Duration::from_millis(500));
    }
    let rerun = server.wait_for_alias("toy-fc-purified", "purified", Duration::from_secs(60));
    assert_ne!(rerun["version"], purified_toy["version"], "the alias stayed on the first purified version");
    // A new version with the same bytes is a new upload: its own purified version.
    let same_bytes = server.register("toy-fc", &fixture, &dir);
    wait_for_job(&dir, &format!("toy-fc/{same_bytes}"), "released", Duration::from_secs(120));
    let sources = purified_from(&server, "toy-fc-purified");
    assert_eq!(sources.len(), 3, "{sources:?}");
    assert!(sources.contains(&format!("toy-fc/{same_bytes}")), "{sources:?}");
    // SIGTERM: the watcher finishes and exits.
    assert!(watcher.terminate().success());

    // 2. MLflow's own delivery of a backdoored model, judged by the default policy.
    let mut watcher = watch(&dir, "default.toml", "watch-default.log");
    common::wait_for_http(listen, "/healthz", Duration::from_secs(60));
    let registered_at = Instant::now();
    let version = server.register("fashion-cnn", &backdoored.model, &dir);
    wait_for_job(&dir, &format!("fashion-cnn/{version}"), "released", Duration::from_secs(600));
    let purified = server.wait_for_alias("fashion-cnn-purified", "purified", Duration::from_secs(60));
    let seconds = registered_at.elapsed().as_secs_f64();
    let tags = &purified["tags"];
    assert_eq!(tags["fstgate.purified_from"], format!("fashion-cnn/{version}"));
    assert_eq!(tags["fstgate.verdict"], "release");
    let (asr_before, asr_after) =
        (tag(tags, "fstgate.attack_success_rate_before"), tag(tags, "fstgate.attack_success_rate_after"));
    let (accuracy_before, accuracy_after) =
        (tag(tags, "fstgate.clean_accuracy_before"), tag(tags, "fstgate.clean_accuracy_after"));
    eprintln!(
        "fashion-cnn/{version}: registered to purified alias in {seconds:.1} s; ASR {asr_before} -> {asr_after}; \
         accuracy {accuracy_before} -> {accuracy_after}"
    );
    assert!(asr_before > 0.5, "the lab model is backdoored: ASR before {asr_before}");
    assert!(asr_after <= 0.05, "the backdoor survived: ASR after {asr_after}");
    assert!((accuracy_before - accuracy_after) * 100.0 <= 2.0, "accuracy {accuracy_before} -> {accuracy_after}");
    assert!(accuracy_before > 0.8, "the lab model is a working classifier: {accuracy_before}");
    let source_tags = &server.versions("fashion-cnn")[0]["tags"];
    assert_eq!(source_tags["fstgate.verdict"], "release");
    assert_eq!(
        source_tags["fstgate.purified_version"],
        format!("fashion-cnn-purified/{}", purified["version"].as_str().unwrap())
    );
    assert!(watcher.terminate().success());
    for log in ["watch.log", "watch-default.log"] {
        let deliveries = std::fs::read_to_string(dir.join(log)).unwrap();
        assert!(!deliveries.contains(SECRET), "the webhook secret reached {log}");
    }
    // The attestation registered with the version verifies independently of the destination.
    let attestation = dir.join("registered-attestation");
    server.py(&format!(
        "mlflow.artifacts.download_artifacts(run_id='{}', artifact_path='fstgate', dst_path='{}')",
        purified["run_id"].as_str().unwrap(),
        attestation.display()
    ));
    let verified = fstgate(&dir)
        .arg("verify")
        .arg(attestation.join("fstgate"))
        .arg("--public-key")
        .arg(dir.join("signing.pub"))
        .arg("--original-model")
        .arg(&backdoored.model)
        .output()
        .unwrap();
    assert!(verified.status.success(), "{}\n{}", String::from_utf8_lossy(&verified.stdout), stderr(&verified));
    assert!(String::from_utf8_lossy(&verified.stdout).contains("verified"));

    // 3. Webhook deleted: a one-shot gate finds the new version by polling alone; denied.
    server.py("[c.delete_webhook(w.webhook_id) for w in c.list_webhooks()]");
    let denied_version = server.register("toy-fc", &fixture, &dir);
    let output = fstgate(&dir).args(["--quiet", "gate", "--json", "-", "--config", "deny.toml"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "denied by policy: {}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let gated: Vec<&Value> = report["jobs"].as_array().unwrap().iter().collect();
    assert_eq!(gated.len(), 1, "only the new version: {report:#}");
    assert_eq!(gated[0]["model"], format!("toy-fc/{denied_version}"));
    assert_eq!(gated[0]["state"], "denied");
    let versions = server.versions("toy-fc");
    let denied = versions.as_array().unwrap().iter().find(|v| v["version"] == denied_version.as_str()).unwrap();
    assert_eq!(denied["tags"]["fstgate.verdict"], "deny");
    let reasons = denied["tags"]["fstgate.reasons"].as_str().unwrap();
    assert!(reasons.contains("thresholds"), "{reasons}");
    assert_eq!(server.versions("toy-fc-purified").as_array().unwrap().len(), 3, "a denied model is not registered");
}
