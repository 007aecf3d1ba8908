//! The pipeline step end to end on the embedded default (a local registry directory, SQLite):
//! `fstgate gate` and `fstgate watch` as separate processes, as CI and a daemon would run them.
mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use common::Spawned;
use common::pipeline::{Setup, spawn_watch, wait_for};
use fstgate::failpoint::Failpoint;
use serde_json::Value;

#[test]
fn gate_publishes_each_complete_upload_once_with_verifiable_attestations() {
    let setup = Setup::new("pipeline-gate", 1, 60.0);
    setup.upload("toy-fc/1", true);
    setup.upload("toy-fc/2", false); // still uploading: no marker yet
    let (code, report) = setup.gate();
    assert_eq!(code, 0, "{report:#}");
    let jobs = report["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{report:#}");
    assert_eq!((jobs[0]["model"].as_str(), jobs[0]["state"].as_str()), (Some("toy-fc/1"), Some("released")));
    setup.assert_published_once(1, 1);
    let outcomes = setup.outcomes();
    assert_eq!(outcomes[0].1["verdict"], "release");
    let names: Vec<&str> =
        outcomes[0].1["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"model.pt") && names.contains(&"model.sig"), "{names:?}");
    setup.verify("toy-fc/1");
    // The signed statements name the model: its release does not pass for another model's.
    let other = setup.verify_as("toy-fc/1", "toy-fc/9");
    let stdout = String::from_utf8_lossy(&other.stdout);
    assert_eq!(other.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("a release of another model"), "{stdout}");
    // report.json names the model as the registry does, not by the gate's download path.
    let report = setup.released_report("toy-fc/1");
    let source = &report["model"]["source"];
    assert!(source["path"].as_str().unwrap().ends_with("/registry/toy-fc/1/"), "{source:#}");
    assert_eq!(source["archive"], "model.pt");
    let registry = &source["registry"];
    assert_eq!((registry["name"].as_str(), registry["version"].as_str()), (Some("toy-fc"), Some("1")), "{source:#}");
    assert_eq!((registry["source"].as_str(), registry["kind"].as_str()), (Some("local"), Some("object-store")));
    assert!(!report.to_string().contains("/upload/"), "a download path in {report:#}");
    assert!(source["ops"]["aten::linear"].as_u64().is_some_and(|n| n > 0), "{source:#}");

    // Nothing new: nothing processed, nothing published again.
    let (code, report) = setup.gate();
    assert_eq!((code, report["jobs"].as_array().unwrap().len()), (0, 0), "{report:#}");
    // The second upload completes; only it is processed.
    std::fs::write(setup.registry.join("toy-fc/2/_SUCCESS"), b"").unwrap();
    let (code, report) = setup.gate();
    assert_eq!(code, 0);
    assert_eq!(report["jobs"][0]["model"], "toy-fc/2");
    setup.assert_published_once(2, 1);

    // SARIF and markdown for CI.
    let sarif = setup.dir.join("gate.sarif");
    let summary = setup.dir.join("summary.md");
    setup.upload("toy-fc/3", true);
    let gated = setup
        .command(&[
            "--quiet",
            "gate",
            "--sarif",
            &sarif.display().to_string(),
            "--summary",
            &summary.display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(gated.status.success());
    let sarif: Value = serde_json::from_str(&std::fs::read_to_string(&sarif).unwrap()).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    assert_eq!(sarif["runs"][0]["results"][0]["ruleId"], "fstgate/released");
    assert!(std::fs::read_to_string(&summary).unwrap().contains("| `toy-fc/3` | released |"));
}

#[test]
fn a_policy_denial_is_published_without_the_model_and_exits_1() {
    let setup = Setup::new("pipeline-deny", 1, 60.0);
    let config = std::fs::read_to_string(setup.config()).unwrap();
    // No model can lose less than nothing: every release is denied.
    let strict = config
        .replace("max_accuracy_drop_points = 100.0", "max_accuracy_drop_points = 0.0")
        .replace("max_attack_success_rate = 1.0", "max_attack_success_rate = 0.0");
    std::fs::write(setup.config(), strict).unwrap();
    setup.upload("toy-fc/1", true);
    let (code, report) = setup.gate();
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["jobs"][0]["state"], "denied");
    assert!(!report["jobs"][0]["reasons"].as_array().unwrap().is_empty());
    let outcomes = setup.outcomes();
    assert_eq!(outcomes[0].1["verdict"], "deny");
    let names: Vec<&str> =
        outcomes[0].1["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(!names.contains(&"model.pt"), "a denied model is not published: {names:?}");
}

/// An upload is attacker-controlled: one over `max_upload_bytes` is refused while it downloads,
/// its job fails for good naming the limit, and it holds back neither the poll nor the upload
/// beside it, which is published as usual.
#[test]
fn an_upload_over_the_size_limit_fails_alone_and_the_rest_are_published() {
    let setup = Setup::new("pipeline-size-limit", 1, 60.0);
    let model_bytes = std::fs::metadata(common::pipeline::fixture_model()).unwrap().len();
    let config = std::fs::read_to_string(setup.config()).unwrap();
    let limited =
        config.replacen("concurrency = 2", &format!("concurrency = 2\nmax_upload_bytes = {}", model_bytes + 1024), 1);
    std::fs::write(setup.config(), limited).unwrap();
    setup.upload("huge/1", false);
    std::fs::write(setup.registry.join("huge/1/weights.bin"), vec![7u8; 4096]).unwrap();
    std::fs::write(setup.registry.join("huge/1/_SUCCESS"), b"").unwrap();
    setup.upload("toy-fc/1", true);
    let (code, report) = setup.gate();
    assert_eq!(code, 2, "a failed job is an error: {report:#}");
    assert_eq!(report["poll_errors"], serde_json::json!([]), "{report:#}");
    let jobs = report["jobs"].as_array().unwrap();
    let state =
        |model: &str| jobs.iter().find(|j| j["model"] == model).map(|j| (j["state"].clone(), j["error"].clone()));
    let (huge_state, huge_error) = state("huge/1").expect("the large upload has a job");
    assert_eq!(huge_state, "failed", "{report:#}");
    assert!(huge_error.as_str().unwrap_or_default().contains("max_upload_bytes"), "{huge_error}");
    assert_eq!(state("toy-fc/1").map(|s| s.0), Some("released".into()), "{report:#}");
    setup.assert_published_once(1, 1);
    // Failed for good: the next run neither retries it nor fails its poll.
    let (code, report) = setup.gate();
    assert_eq!((code, report["jobs"].as_array().unwrap().len()), (0, 0), "{report:#}");
}

#[test]
fn two_gates_racing_on_the_same_upload_publish_it_once() {
    let setup = Setup::new("pipeline-race", 1, 60.0);
    // A second watcher: its own job store, the same source and destination.
    let config = std::fs::read_to_string(setup.config()).unwrap();
    let other = setup.dir.join("other.toml");
    std::fs::write(&other, config.replace(r#"state_dir = "state""#, r#"state_dir = "state-other""#)).unwrap();
    for version in 1..=4 {
        setup.upload(&format!("toy-fc/{version}"), true);
    }
    let run = |config: &Path| {
        let mut command = std::process::Command::cargo_bin("fstgate").unwrap();
        command.args(["--quiet", "gate", "--json", "-", "--config"]).arg(config);
        command.env("FSTGATE_CACHE", setup.dir.join("cache")).stdout(Stdio::piped()).stderr(Stdio::piped());
        command.spawn().unwrap()
    };
    let (a, b) = (run(&setup.config()), run(&other));
    for child in [a, b] {
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["jobs"].as_array().unwrap().len(), 4);
    }
    // Both may have written an attempt before one claimed the outcome: at most two per upload.
    setup.assert_published_once(4, 2);
    for version in 1..=4 {
        setup.verify(&format!("toy-fc/{version}"));
    }
}

/// A crash (SIGKILL, injected at a failpoint) at every step of a job, then a restarted watcher:
/// the job is retried once its lease lapses and, counted from the destination, published exactly
/// once; files an attempt left without an outcome are never what the outcome names.
#[test]
fn a_crash_at_every_step_is_resumed_and_published_exactly_once() {
    for point in Failpoint::ALL {
        let setup = Setup::new(&format!("pipeline-crash-{}", point.name()), 1, 5.0);
        setup.upload("toy-fc/1", true);
        let crashed = setup.command(&["gate"]).env("FSTGATE_FAILPOINT", point.name()).output().unwrap();
        let stderr = String::from_utf8_lossy(&crashed.stderr);
        assert_eq!(crashed.status.signal(), Some(libc::SIGKILL), "{point:?} was not reached: {stderr}");
        let jobs = setup.jobs();
        assert_eq!((jobs[0]["state"].as_str(), jobs[0]["attempts"].as_u64()), (Some("running"), Some(1)), "{jobs:#}");
        let published_by_the_crash = setup.published();
        match point {
            Failpoint::AfterClaim | Failpoint::MidTraining => assert!(published_by_the_crash.is_empty()),
            Failpoint::AfterFiles => assert_eq!(published_by_the_crash[0].1.outcomes, 0),
            Failpoint::AfterOutcome | Failpoint::BeforeRecord => setup.assert_published_once(1, 1),
        }

        let log = setup.dir.join(format!("watch-{}.log", point.name()));
        let mut watcher = spawn_watch(&setup, &log);
        wait_for("the retried job to be recorded", Duration::from_secs(180), || setup.jobs()[0]["state"] == "released");
        let status = watcher.terminate();
        assert!(status.success(), "{status:?}: {}", std::fs::read_to_string(&log).unwrap());
        // An attempt that crashed after writing its files left them; the retry wrote its own.
        let attempts = if point == Failpoint::AfterFiles { 2 } else { 1 };
        setup.assert_published_once(1, attempts);
        assert_eq!(setup.published()[0].1.attempts.len(), attempts, "{point:?}");
        if point == Failpoint::AfterFiles {
            let (_, outcome) = &setup.outcomes()[0];
            let orphan = &published_by_the_crash[0].1.attempts;
            assert!(!orphan.contains(outcome["files_under"].as_str().unwrap().trim_start_matches("attempts/")));
        }
        setup.verify("toy-fc/1");
        let jobs = setup.jobs();
        assert_eq!((jobs[0]["state"].as_str(), jobs[0]["attempts"].as_u64()), (Some("released"), Some(2)), "{jobs:#}");
        assert!(!setup.dir.join("state/work/job-1").exists(), "{point:?}: the crashed attempt's work is left");
    }
}

/// A source's `models` glob gates just those models: a Job for one team's models.
#[test]
fn a_models_glob_gates_only_the_models_it_names() {
    let setup = Setup::new("pipeline-models-glob", 1, 60.0);
    let config = std::fs::read_to_string(setup.config()).unwrap();
    let config = config.replacen("url = \"registry\"\n", "url = \"registry\"\nmodels = \"fraud-*\"\n", 1);
    std::fs::write(setup.config(), config).unwrap();
    for model in ["fraud-cnn/1", "fraud-mlp/4", "toy-fc/1"] {
        setup.upload(model, true);
    }
    let (code, report) = setup.gate();
    assert_eq!(code, 0, "{report:#}");
    let mut gated: Vec<&str> =
        report["jobs"].as_array().unwrap().iter().map(|j| j["model"].as_str().unwrap()).collect();
    gated.sort_unstable();
    assert_eq!(gated, ["fraud-cnn/1", "fraud-mlp/4"], "{report:#}");
    setup.assert_published_once(2, 1);
}

/// 50 versions registered at once: all processed, none lost or published twice.
#[test]
fn a_burst_of_fifty_uploads_is_processed_completely() {
    let setup = Setup::new("pipeline-burst", 1, 60.0);
    for version in 1..=50 {
        setup.upload(&format!("toy-fc/{version}"), true);
    }
    let (code, report) = setup.gate();
    assert_eq!(code, 0, "{report:#}");
    let mut models: Vec<&str> =
        report["jobs"].as_array().unwrap().iter().map(|j| j["model"].as_str().unwrap()).collect();
    models.sort_unstable();
    let expected: Vec<String> = (1..=50).map(|v| format!("toy-fc/{v}")).collect();
    let mut expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(models, expected, "each upload processed once");
    // One process, no crash: exactly one attempt per upload.
    setup.assert_published_once(50, 1);
}

#[test]
fn watch_serves_health_and_prometheus_metrics() {
    let setup = Setup::new("pipeline-metrics", 1, 60.0);
    // Webhooks on one listener, /healthz and /metrics on their own.
    let held =
        [std::net::TcpListener::bind("127.0.0.1:0").unwrap(), std::net::TcpListener::bind("127.0.0.1:0").unwrap()];
    let [port, webhook_port] = held.map(|listener| listener.local_addr().unwrap().port());
    let config = std::fs::read_to_string(setup.config()).unwrap();
    let listeners = format!("listen = \"127.0.0.1:{webhook_port}\"\nmetrics_listen = \"127.0.0.1:{port}\"\n");
    std::fs::write(setup.config(), format!("{listeners}{config}")).unwrap();
    setup.upload("toy-fc/1", true);
    let log = setup.dir.join("watch.log");
    let mut watcher = spawn_watch(&setup, &log);
    wait_for("the upload to be published", Duration::from_secs(120), || setup.outcomes().len() == 1);
    wait_for("the metrics endpoint", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let (code, metrics) = common::http_get(port, "/metrics");
    assert_eq!(code, 200, "{metrics}");
    wait_for("the job's state to be recorded", Duration::from_secs(60), || {
        common::http_get(port, "/metrics").1.contains("fstgate_jobs{state=\"released\"} 1")
    });
    let (_, metrics) = common::http_get(port, "/metrics");
    assert!(metrics.contains("fstgate_jobs{state=\"failed\"} 0"), "{metrics}");
    assert!(metrics.contains("fstgate_job_duration_seconds_count{state=\"released\"} 1"), "{metrics}");
    assert!(metrics.contains("fstgate_last_successful_poll_timestamp_seconds{source=\"local\"} "), "{metrics}");
    // Healthy once a poll finished within three poll intervals (0.6 s here): on a loaded
    // machine a single reading can fall between polls, so wait for it to say so.
    wait_for("/healthz to answer ok", Duration::from_secs(60), || {
        common::http_get(port, "/healthz") == (200, "ok\n".into())
    });
    assert_eq!(common::http_get(port, "/nope").0, 404);
    assert_eq!(common::http_get(port, "/webhooks/local").0, 404, "webhooks are not on the metrics listener");
    assert_eq!(common::http_get(webhook_port, "/webhooks/local").0, 405, "the webhook route takes POST only");
    assert_eq!(common::http_get(webhook_port, "/metrics").0, 404, "metrics are not on the webhook listener");
    assert!(watcher.terminate().success(), "{}", std::fs::read_to_string(&log).unwrap());
}

/// A source's `webhook_secret_env` matters only to a watcher that serves webhooks: a one-shot
/// gate sharing the configuration runs without the variable, and such a watcher refuses to
/// start without it or with it empty, naming the variable (never a value).
#[test]
fn a_webhook_secret_is_required_only_by_a_watcher_serving_webhooks() {
    let setup = Setup::new("pipeline-webhook-secret", 1, 60.0);
    let port = common::free_port();
    let config = std::fs::read_to_string(setup.config()).unwrap().replacen(
        "url = \"registry\"\n",
        "url = \"registry\"\nwebhook_secret_env = \"FSTGATE_TEST_UNSET_WEBHOOK_SECRET\"\n",
        1,
    );
    std::fs::write(setup.config(), format!("listen = \"127.0.0.1:{port}\"\n{config}")).unwrap();
    setup.upload("toy-fc/1", true);
    let mut gate = setup.command(&["--quiet", "gate", "--json", "-"]);
    let output = gate.env_remove("FSTGATE_TEST_UNSET_WEBHOOK_SECRET").output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(setup.outcomes().len(), 1);

    let mut watch = setup.command(&["watch"]);
    watch.env_remove("FSTGATE_TEST_UNSET_WEBHOOK_SECRET").stderr(Stdio::piped());
    let mut watcher = Spawned::start(watch);
    // A guard against a watcher that starts anyway (it would never exit), not a time limit.
    let mut status = None;
    wait_for("the watcher to refuse to start", Duration::from_secs(120), || {
        status = watcher.child().try_wait().unwrap();
        status.is_some()
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(watcher.child().stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.unwrap().code(), Some(2), "{stderr}");
    assert!(stderr.contains("FSTGATE_TEST_UNSET_WEBHOOK_SECRET") && stderr.contains("not set"), "{stderr}");
    // An empty secret would make any signature or bearer token pass: refused the same way.
    let empty = setup.command(&["watch"]).env("FSTGATE_TEST_UNSET_WEBHOOK_SECRET", " ").output().unwrap();
    let stderr = String::from_utf8_lossy(&empty.stderr);
    assert_eq!(empty.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("FSTGATE_TEST_UNSET_WEBHOOK_SECRET") && stderr.contains("is empty"), "{stderr}");
}
