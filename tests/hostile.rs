//! Red-team tests of the worker boundary: uploads whose TorchScript attacks the gate rather than
//! the task (made by `fstgate::lab::export_hostile`). The model runs in a worker process that
//! holds no secret (its environment is cleared: a canary variable set for the gate never reaches
//! it) under resource limits; a forward that never returns is killed at the deadline, one that
//! allocates without bound dies at its address-space limit; one that reads a file (the gate's
//! signing key) with `aten::from_file` is refused by the graph scan before it is loaded, and the
//! key's bytes appear nowhere the gate writes; one whose code adds to or replaces the head's
//! logits when a trigger is present is refused by the data-flow check after loading. Each fails its job once, with the reason, and the
//! next upload is still released, by a worker whose confinement (namespaces, Landlock, seccomp)
//! report.json records as enforced. `fstgate sandbox-check` shows that confinement refusing what
//! a hostile model would try, each attempt shown to work unconfined.
mod common;

use std::time::Duration;

use common::pipeline::{Setup, wait_for};
use fstgate::lab::{Hostile, export_hostile};
use serde_json::Value;

const CANARY: &str = "canary-4c1d-never-in-a-worker";

/// The gate's worker processes right now: pid, environment, and limits as the kernel reports.
fn workers_of(gate: u32) -> Vec<(u32, String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Field 4, after the parenthesised command name, is the parent pid.
        let parent = stat.rsplit_once(") ").and_then(|(_, rest)| rest.split(' ').nth(1)?.parse::<u32>().ok());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if parent == Some(gate) && cmdline.split(|b| *b == 0).any(|arg| arg == b"worker") {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&environ).replace('\0', "\n"), limits));
        }
    }
    found
}

fn job<'a>(report: &'a Value, model: &str) -> &'a Value {
    report["jobs"].as_array().unwrap().iter().find(|j| j["model"] == model).unwrap_or_else(|| panic!("{report:#}"))
}

/// A setup with the hostile model (`kind` of the setup) uploaded as `hostile/1` and the
/// harmless fixture as `toy-fc/2`, and `worker_table` (a `[worker]` table) in its configuration.
fn hostile_setup(name: &str, kind: impl FnOnce(&Setup) -> Hostile, worker_table: &str) -> Setup {
    let setup = Setup::new(name, 1, 60.0);
    let hostile = setup.dir.join("hostile.pt");
    export_hostile(&kind(&setup), &hostile).unwrap();
    setup.upload_file("hostile/1", &hostile, true);
    setup.upload("toy-fc/2", true);
    setup.add_table(worker_table);
    setup
}

/// One gate pass: the hostile job failed (its error returned), the harmless one released, exit 2.
fn gate_fails_only_the_hostile_job(setup: &Setup) -> (String, std::process::Output) {
    let output = setup.command(&["--quiet", "gate", "--json", "-"]).output().unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(2), "a failed job is an error: {report:#}");
    let hostile = job(&report, "hostile/1");
    assert_eq!(hostile["state"], "failed", "{report:#}");
    assert_eq!(job(&report, "toy-fc/2")["state"], "released", "{report:#}");
    (hostile["error"].as_str().unwrap().to_string(), output)
}

#[test]
fn a_forward_that_never_returns_is_killed_at_the_deadline_in_a_worker_without_secrets() {
    let table = "[worker]\ntimeout_seconds = 15\nmemory_bytes = 8589934592\nopen_files = 128";
    let setup = hostile_setup("hostile-loop", |_| Hostile::Loop, table);
    let mut gate = setup.command(&["--quiet", "gate", "--json", "-"]);
    gate.env("FSTGATE_TEST_CANARY", CANARY).stdout(std::process::Stdio::piped());
    let mut gate = common::Spawned::start(gate);
    // The looping worker lives until its deadline: look at it from outside meanwhile.
    let mut seen = Vec::new();
    wait_for("the looping worker", Duration::from_secs(120), || {
        seen = workers_of(gate.id());
        !seen.is_empty()
    });
    for (pid, environ, limits) in &seen {
        assert!(!environ.contains(CANARY), "worker {pid} inherited the gate's environment:\n{environ}");
        assert!(!environ.contains("FSTGATE_CACHE"), "worker {pid}:\n{environ}");
        assert!(limits.lines().any(|l| l.starts_with("Max address space") && l.contains("8589934592")), "{limits}");
        assert!(limits.lines().any(|l| l.starts_with("Max open files") && l.contains(" 128 ")), "{limits}");
        assert!(limits.lines().any(|l| l.starts_with("Max core file size") && l.contains(" 0 ")), "{limits}");
    }
    let status = gate.wait();
    let mut stdout = String::new();
    std::io::Read::read_to_string(gate.child().stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status.code(), Some(2), "a failed job is an error: {report:#}");
    let hostile = job(&report, "hostile/1");
    assert_eq!(hostile["state"], "failed", "{report:#}");
    let error = hostile["error"].as_str().unwrap();
    assert!(error.contains("timed out after 15 s") && error.contains("killed"), "{error}");
    assert_eq!(job(&report, "toy-fc/2")["state"], "released", "{report:#}");
    // Failed once, for good: a later pass does not run it again.
    let jobs: Value = serde_json::from_slice(&setup.command(&["jobs", "--json"]).output().unwrap().stdout).unwrap();
    let stored = jobs.as_array().unwrap().iter().find(|j| j["model"] == "hostile/1").unwrap();
    assert_eq!((stored["state"].as_str(), stored["attempts"].as_u64()), (Some("failed"), Some(1)), "{jobs:#}");
    assert!(workers_of(gate.id()).is_empty());
    setup.assert_published_once(1, 1);
}

#[test]
fn a_forward_that_allocates_without_bound_dies_at_its_memory_limit() {
    // 3 GiB of address space: libtorch loads, the model's sixth 512 MiB tensor does not fit.
    // The deadline only stops a run that the limit failed to stop (the test then fails).
    let table = "[worker]\nmemory_bytes = 3221225472\ntimeout_seconds = 600";
    let setup = hostile_setup("hostile-allocate", |_| Hostile::Allocate, table);
    let (error, _) = gate_fails_only_the_hostile_job(&setup);
    assert!(error.starts_with("model worker: "), "{error}");
    assert!(error.contains("allocate") || error.contains("out of memory"), "{error}");
    setup.assert_published_once(1, 1);
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    common::pipeline::walk(dir, &mut |path| {
        let bytes = std::fs::read(path).unwrap_or_default();
        if bytes.windows(needle.len()).any(|w| w == needle) {
            found.push(path.to_path_buf());
        }
    });
    found
}

#[test]
fn a_model_reading_the_signing_key_is_refused_before_it_runs() {
    let reads_key = |setup: &Setup| Hostile::ReadFile(setup.dir.join("signing.pem"));
    let setup = hostile_setup("hostile-from-file", reads_key, "[worker]\nisolate = true");
    let key = setup.dir.join("signing.pem");
    let (error, output) = gate_fails_only_the_hostile_job(&setup);
    assert!(error.contains("refused before running it") && error.contains("`aten::from_file` reads a file"), "{error}");
    // The first 64 bytes of the key (what the model would have read) are nowhere the gate wrote.
    let secret = &std::fs::read(&key).unwrap()[..64];
    for dir in [setup.released.clone(), setup.dir.join("state")] {
        assert_eq!(files_containing(&dir, secret), Vec::<std::path::PathBuf>::new());
    }
    assert!(!String::from_utf8_lossy(&output.stdout).contains(&String::from_utf8_lossy(secret).to_string()));
    assert!(!String::from_utf8_lossy(&output.stderr).contains(&String::from_utf8_lossy(secret).to_string()));
    setup.assert_published_once(1, 1);
    // The harmless model ran confined, every layer enforced (this kernel has them all).
    let confinement = &setup.released_report("toy-fc/2")["confinement"];
    for layer in ["network", "filesystem", "syscalls"] {
        assert_eq!(confinement[layer]["enforced"], true, "{confinement:#}");
    }
}

#[test]
fn models_whose_code_overrides_the_logits_are_refused() {
    let setup = Setup::new("hostile-override", 1, 60.0);
    for (model, kind) in [("override/1", Hostile::OverrideLogits), ("branch/1", Hostile::BranchOnTrigger)] {
        let file = setup.dir.join(format!("{}.pt", model.replace('/', "-")));
        export_hostile(&kind, &file).unwrap();
        setup.upload_file(model, &file, true);
    }
    setup.upload("toy-fc/2", true);
    let output = setup.command(&["--quiet", "gate", "--json", "-"]).output().unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(2), "{report:#}");
    let refused = |model: &str| {
        let job = job(&report, model);
        assert_eq!(job["state"], "failed", "{report:#}");
        job["error"].as_str().unwrap().to_string()
    };
    let added = refused("override/1");
    assert!(added.contains("can override the classification") && added.contains("around the head"), "{added}");
    let branched = refused("branch/1");
    assert!(branched.contains("branches on the input's values") && branched.contains("`bool`"), "{branched}");
    assert_eq!(job(&report, "toy-fc/2")["state"], "released", "{report:#}");
    setup.assert_published_once(1, 1);
}

fn sandbox_check(args: &[&str]) -> (Option<i32>, Value) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fstgate"))
        .args(["sandbox-check", "--json"])
        .args(args)
        .output()
        .unwrap();
    let check = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code(), check)
}

#[test]
fn the_worker_confinement_refuses_what_works_unconfined() {
    // Unconfined, every attempt works: each is a live test.
    let (code, unconfined) = sandbox_check(&["--unconfined"]);
    let attempts = unconfined["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 9 && attempts.iter().all(|a| a["refused"].is_null()), "{unconfined:#}");
    assert_eq!((code, &unconfined["as_expected"]), (Some(0), &Value::Bool(true)));
    // Confined, the hostile ones are refused and the worker's own work is not.
    let (code, confined) = sandbox_check(&[]);
    for layer in ["network", "filesystem", "syscalls"] {
        assert_eq!(confined["confinement"][layer]["enforced"], true, "{confined:#}");
    }
    for attempt in confined["attempts"].as_array().unwrap() {
        assert_eq!(attempt["refused"].is_string(), attempt["hostile"] == true, "{attempt:#}");
    }
    let refused: Vec<&str> = confined["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["refused"].is_string())
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for hostile in
        ["write a file outside", "read a file outside", "environment", "TCP", "UNIX socket", "run a program", "signal"]
    {
        assert!(refused.iter().any(|action| action.contains(hostile)), "{hostile}: {refused:?}");
    }
    assert_eq!((code, &confined["as_expected"]), (Some(0), &Value::Bool(true)));
}
