//! The pipeline against a real MLflow 3.17.2 tracking server (installed by
//! scripts/test-server.sh mlflow, started here on 127.0.0.1 and stopped after). Models are
//! registered through the server with MLflow's own Python client, artifacts uploaded through its
//! proxy. One test walks the whole story in order, sharing the server:
//! 1. forged deliveries (bad signature, old timestamp) get a 4xx and queue nothing; a signed
//!    one is processed once, and its replay gets a 409;
//! 2. MLflow's own webhook delivery of a backdoored Fashion-MNIST CNN makes the watcher purify
//!    it; the purified version appears with its tags and alias, and the attestation files
//!    registered with it pass `fstgate verify`;
//!    a re-run request (tag `fstgate.rerun`) and a new version with the same bytes each
//!    register a new purified version;
//! 3. with the webhook deleted, a one-shot `fstgate gate` finds a new version by polling alone,
//!    and a policy denial tags the source version with the reasons and registers nothing.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

const SECRET: &str = "whsec-test-5f1c2a";

struct Server {
    child: Child,
    python: PathBuf,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(dir: &Path) -> Option<Server> {
        let python = common::server_python("mlflow")?;
        let port = common::free_port();
        let log = std::fs::File::create(dir.join("mlflow-server.log")).unwrap();
        let child = Command::new(python.parent().unwrap().join("mlflow"))
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
            .stderr(log)
            .spawn()
            .unwrap();
        common::wait_for_http(port, "/health", Duration::from_secs(90));
        Some(Server { child, python, url: format!("http://127.0.0.1:{port}") })
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

fn config(server: &str, listen: u16, toy_data: &Path, policy: &str) -> String {
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
clean_count = 1000
test = "{fashion}#test"
test_count = 2000
trigger = "badnets"
target_class = 0

[[data]]
models = "*/*"
clean = "{toy}"
test = "{toy}"

{}"#,
        common::pipeline_toml(2, 64, policy),
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
            assert!(job["state"] != "failed", "{model} failed: {job:#}");
        }
        assert!(started.elapsed() < timeout, "{model} did not reach {state} within {timeout:?}: {all:#?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn mlflow_registry_webhooks_polling_and_registration() {
    let dir = common::scratch("mlflow");
    let Some(server) = Server::start(&dir) else { return };
    let toy = dir.join("toy.safetensors");
    common::toy_data(&toy, 64, 1, 10);
    fstgate::attestation::keys::generate_files(&dir.join("signing.pem"), &dir.join("signing.pub")).unwrap();
    let listen = common::free_port();
    std::fs::write(dir.join("watch.toml"), config(&server.url, listen, &toy, common::ALLOW_ALL)).unwrap();
    // A drop of at least 100 points is impossible: this policy denies everything.
    let deny_all = "{ max_attack_success_rate = 1.0, max_accuracy_drop_points = -100.0 }";
    std::fs::write(dir.join("deny.toml"), config(&server.url, common::free_port(), &toy, deny_all)).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heads/fc.pt");
    let backdoored = common::badnets_model();

    let mut watcher = fstgate(&dir)
        .args(["watch", "--config", "watch.toml"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("watch.log")).unwrap())
        .spawn()
        .unwrap();
    common::wait_for_http(listen, "/healthz", Duration::from_secs(60));
    let hook = format!("http://127.0.0.1:{listen}/webhooks/registry");

    // 1. Forged deliveries about a version the watcher has not seen (no MLflow webhook yet).
    let toy_version = server.register("toy-fc", &fixture, &dir);
    let created = format!(
        r#"{{"entity": "model_version", "action": "created", "timestamp": "2026-11-25T10:00:00+00:00", "data": {{"name": "toy-fc", "version": "{toy_version}", "source": "x", "run_id": null, "tags": {{}}, "description": null}}}}"#
    );
    assert_eq!(server.deliver(&hook, &created, "not-the-secret", unix_now(), "forged-1"), 401);
    assert_eq!(server.deliver(&hook, &created, SECRET, unix_now() - 3600, "stale-1"), 400);
    assert_eq!(server.deliver(&hook.replace("registry", "nowhere"), &created, SECRET, unix_now(), "d-0"), 404);
    std::thread::sleep(Duration::from_secs(1));
    assert!(jobs(&dir).is_empty(), "a refused delivery queued a job: {:#?}", jobs(&dir));
    let now = unix_now();
    assert_eq!(server.deliver(&hook, &created, SECRET, now, "signed-1"), 202);
    wait_for_job(&dir, &format!("toy-fc/{toy_version}"), "released", Duration::from_secs(120));
    assert_eq!(server.deliver(&hook, &created, SECRET, now, "signed-1"), 409, "a replay must be refused");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(jobs(&dir).len(), 1, "{:#?}", jobs(&dir));
    let purified_toy = server.wait_for_alias("toy-fc-purified", "purified", Duration::from_secs(30));
    assert_eq!(purified_toy["tags"]["fstgate.purified_from"], format!("toy-fc/{toy_version}"));

    // 2. MLflow's own delivery of a backdoored model.
    server.py(&format!(
        "c.create_webhook(name='fstgate', url='{hook}', events=['model_version.created', 'model_version_tag.set'], secret='{SECRET}')"
    ));
    let registered_at = Instant::now();
    let version = server.register("fashion-cnn", &backdoored.model, &dir);
    let purified = server.wait_for_alias("fashion-cnn-purified", "purified", Duration::from_secs(300));
    let seconds = registered_at.elapsed().as_secs_f64();
    let tags = &purified["tags"];
    assert_eq!(tags["fstgate.purified_from"], format!("fashion-cnn/{version}"));
    assert_eq!(tags["fstgate.verdict"], "release");
    let asr_before: f64 = tags["fstgate.attack_success_rate_before"].as_str().unwrap().parse().unwrap();
    let asr_after: f64 = tags["fstgate.attack_success_rate_after"].as_str().unwrap().parse().unwrap();
    assert!(asr_before > 0.5, "the lab model is backdoored: ASR before {asr_before}");
    assert!(tags["fstgate.clean_accuracy_after"].as_str().unwrap().parse::<f64>().unwrap() > 0.1);
    eprintln!("fashion-cnn/{version}: registered to purified alias in {seconds:.1} s; ASR {asr_before} -> {asr_after}");
    let source_tags = &server.versions("fashion-cnn")[0]["tags"];
    assert_eq!(source_tags["fstgate.verdict"], "release");
    assert_eq!(
        source_tags["fstgate.purified_version"],
        format!("fashion-cnn-purified/{}", purified["version"].as_str().unwrap())
    );
    let deliveries = std::fs::read_to_string(dir.join("watch.log")).unwrap();
    assert!(!deliveries.contains(SECRET), "the webhook secret reached the log");
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
    // A re-run request (tag `fstgate.rerun`) through MLflow's tag webhook gates toy-fc again:
    // a new purified version takes the alias.
    server.py(&format!("c.set_model_version_tag('toy-fc', '{toy_version}', 'fstgate.rerun', '1')"));
    let started = Instant::now();
    while server.wait_for_alias("toy-fc-purified", "purified", Duration::from_secs(5))["version"] == "1" {
        assert!(started.elapsed() < Duration::from_secs(120), "the re-run did not register a new version");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(server.versions("toy-fc-purified").as_array().unwrap().len(), 2);
    // A new version with the same bytes is a new upload: its own purified version.
    let same_bytes = server.register("toy-fc", &fixture, &dir);
    wait_for_job(&dir, &format!("toy-fc/{same_bytes}"), "released", Duration::from_secs(120));
    let purified_toys = server.versions("toy-fc-purified");
    let sources: Vec<&str> = purified_toys
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["tags"]["fstgate.purified_from"].as_str().unwrap())
        .collect();
    assert_eq!(sources.len(), 3, "{sources:?}");
    assert!(sources.contains(&format!("toy-fc/{same_bytes}").as_str()), "{sources:?}");
    // SIGTERM: the watcher finishes and exits.
    unsafe { libc::kill(watcher.id() as i32, libc::SIGTERM) };
    assert!(watcher.wait().unwrap().success());

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
