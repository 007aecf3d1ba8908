//! The policy world is language-neutral: the `max-asr` policy written in Python
//! (plugin-sdk/examples/python-max-asr), built with componentize-py by
//! scripts/build-python-plugin.sh, loads in the gate's sandbox (so it imports nothing but `log`)
//! and judges reports like the built-in policy does.
//!
//! The component (about 18 MB) is cached under target/plugins/, keyed by the sha256 of the app,
//! the WIT world and the build script, so only the first run pays for componentize-py.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use fstgate::policy::sandbox::{GuestDecision as Decision, GuestVerdict, Level, Outcome, Plugin};
use fstgate::policy::{Limits, PluginFailure, PluginHost};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const APP: &str = "plugin-sdk/examples/python-max-asr/app.py";
const WIT: &str = "plugin-sdk/wit/policy.wit";
const SCRIPT: &str = "scripts/build-python-plugin.sh";

/// What a Python component needs, measured by `measure_python_plugin_needs` below: 38 core
/// instances (componentize-py links libc, libpython and friends as separate core modules, plus
/// adapter shims), 1 memory of 12.4 MiB, 2 tables of at most 5,672 elements, about 0.5 million
/// fuel per evaluation. Only the instance count exceeds `Limits::default()` (16).
fn python_limits() -> Limits {
    Limits { instances: 64, ..Limits::default() }
}

/// The built component, or None (after [`common::unavailable`]) when this machine has no Python
/// venv to install componentize-py into.
fn component() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut hasher = Sha256::new();
    for file in [APP, WIT, SCRIPT] {
        hasher.update(file.as_bytes());
        hasher.update(std::fs::read(root.join(file)).unwrap());
    }
    let key = hex::encode(hasher.finalize());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("plugins");
    let wasm = dir.join(format!("python-max-asr-{}.wasm", &key[..16]));
    if wasm.exists() {
        eprintln!("python-max-asr: cached component {}", wasm.display());
        return Some(wasm);
    }
    let started = Instant::now();
    let output = Command::new(root.join(SCRIPT)).arg(&wasm).current_dir(root).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");
    if output.status.code() == Some(3) {
        common::unavailable("componentize-py (the Python plugin build)", &stderr);
        return None;
    }
    assert!(output.status.success(), "{SCRIPT} failed ({}):\n{stderr}", output.status);
    eprintln!("python-max-asr: install + build took {:.1} s", started.elapsed().as_secs_f64());
    // Components built from earlier sources are 18 MB each: keep only this one.
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("python-max-asr-") && name.ends_with(".wasm") && entry.path() != wasm {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Some(wasm)
}

/// A report as the gate hands it to plugins (no `decision`), with the figures the plugin reads.
fn report(asr_after: Option<f64>, worst_probe: Option<(&str, i64, f64)>) -> Value {
    let probe = worst_probe.map(|(trigger, class, rate)| json!({"trigger": trigger, "class": class, "rate": rate}));
    let probes: Vec<Value> = probe.iter().cloned().collect();
    let attack = asr_after.map(|asr| {
        json!({"trigger": "badnets:size=3", "target_class": 0, "attack_success_rate": asr,
               "robust_accuracy": 0.8, "images": 1800})
    });
    let attack_before = attack.clone().map(|mut before| {
        before["attack_success_rate"] = json!(0.98);
        before
    });
    json!({
        "schema": "fstgate.report/v1",
        "fstgate_version": "0.1.0",
        "started_at": "2026-11-25T05:00:00Z",
        "finished_at": "2026-11-25T05:01:00Z",
        "device": "cpu",
        "before": {"clean_accuracy": 0.91, "test_images": 2000, "per_class_accuracy": vec![0.9; 10],
                   "probes": [], "seconds": 1.5, "attack": attack_before, "worst_probe": null},
        "after": {"clean_accuracy": 0.89, "test_images": 2000, "per_class_accuracy": vec![0.88; 10],
                  "probes": probes, "seconds": 1.4, "attack": attack, "worst_probe": probe},
        "summary": {
            "clean_accuracy_before": 0.91,
            "clean_accuracy_after": 0.89,
            "clean_accuracy_drop_points": 2.0,
            "attack_success_rate_before": asr_after.map(|_| 0.98),
            "attack_success_rate_after": asr_after,
            "robust_accuracy_before": asr_after.map(|_| 0.02),
            "robust_accuracy_after": asr_after.map(|_| 0.8),
            "worst_probe_rate_before": worst_probe.map(|_| 0.97),
            "worst_probe_rate_after": worst_probe.map(|(_, _, rate)| rate),
        },
        "epochs": [],
        "warnings": [],
    })
}

/// Compiles the component once (the host caches it by digest) and evaluates it with `config`.
struct Python {
    host: PluginHost,
    plugin: Plugin,
}

impl Python {
    fn load(wasm: &Path, limits: Limits) -> Python {
        let host = PluginHost::new(limits).unwrap();
        let bytes = std::fs::read(wasm).unwrap();
        let started = Instant::now();
        // Loading runs the host's import check: only `log` may be imported.
        let plugin = host.load(&bytes).unwrap_or_else(|failure| panic!("the host refused the component: {failure}"));
        eprintln!("python-max-asr: compiled in {:.2} s", started.elapsed().as_secs_f64());
        Python { host, plugin }
    }

    fn judge(&self, report: &Value, config: Value) -> Outcome {
        let started = Instant::now();
        let outcome = self.host.evaluate(&self.plugin, &report.to_string(), &config.to_string());
        eprintln!("python-max-asr: evaluated in {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
        outcome
    }

    /// A verdict (the plugin ran within its limits and judged), with its one info log line.
    fn verdict(&self, report: &Value, config: Value) -> GuestVerdict {
        let outcome = self.judge(report, config);
        let verdict = outcome.verdict.unwrap_or_else(|failure| panic!("the plugin failed: {failure}"));
        assert_eq!(outcome.log.len(), 1, "{:?}", outcome.log);
        assert_eq!(outcome.log[0].0, Level::Info);
        assert!(outcome.log[0].1.starts_with("max-asr (python): "), "{:?}", outcome.log);
        verdict
    }
}

#[test]
fn python_max_asr_plugin_judges_reports() {
    let Some(wasm) = component() else { return };
    let size = std::fs::metadata(&wasm).unwrap().len();
    eprintln!("python-max-asr: component is {size} bytes ({:.1} MiB)", size as f64 / (1 << 20) as f64);
    let python = Python::load(&wasm, python_limits());
    let default = || json!({});

    let verdict = python.verdict(&report(Some(0.01), None), default());
    assert_eq!(verdict.decision, Decision::Allow, "{:?}", verdict.reasons);
    assert!(verdict.reasons.is_empty(), "{:?}", verdict.reasons);
    assert_eq!(verdict.measurements.len(), 1);
    assert_eq!(verdict.measurements[0].name, "attack_success_rate_after");
    assert_eq!(verdict.measurements[0].value, 0.01);

    let verdict = python.verdict(&report(Some(0.5), Some(("sig:delta=40,freq=6", 3, 0.4))), default());
    assert_eq!(verdict.decision, Decision::Deny);
    assert_eq!(verdict.reasons, ["attack success rate after purification 50.0% exceeds 5.0%"]);
    assert_eq!(verdict.measurements[0].value, 0.5);

    // Without a known trigger the worst probe stands in for the ASR.
    let verdict = python.verdict(&report(None, Some(("sig:delta=40,freq=6", 3, 0.4))), default());
    assert_eq!(verdict.decision, Decision::Deny);
    let reason = &verdict.reasons[0];
    assert!(reason.contains("40.0%") && reason.contains("sig:delta=40,freq=6"), "{reason}");
    assert!(reason.contains("class 3") && reason.contains("5.0%"), "{reason}");
    assert_eq!(verdict.measurements[0].name, "worst_probe_rate_after");
    assert_eq!(verdict.measurements[0].value, 0.4);
    let verdict = python.verdict(&report(None, Some(("sig:delta=40,freq=6", 3, 0.02))), default());
    assert_eq!(verdict.decision, Decision::Allow, "{:?}", verdict.reasons);

    let verdict = python.verdict(&report(None, None), default());
    assert_eq!(verdict.decision, Decision::Deny, "no backdoor measurement at all must deny");
    assert!(verdict.reasons[0].contains("no backdoor measurement"), "{:?}", verdict.reasons);

    // The configuration is the plugin's own; a stricter limit denies what the default allows.
    let verdict = python.verdict(&report(Some(0.01), None), json!({"max_attack_success_rate": 0.001}));
    assert_eq!(verdict.decision, Decision::Deny);
    assert_eq!(verdict.reasons, ["attack success rate after purification 1.0% exceeds 0.1%"]);

    // A configuration it cannot use makes it return `err`, naming the field: the gate denies.
    for config in [json!({"max_attack_success_rate": "five percent"}), json!({"max_attack_success_rate": 5})] {
        match python.judge(&report(Some(0.01), None), config.clone()).verdict {
            Err(PluginFailure::Rejected(message)) => {
                assert!(message.contains("max_attack_success_rate"), "{config}: {message}")
            }
            other => panic!("{config}: expected a rejection, got {other:?}"),
        }
    }
}

/// Records what the plugin asks for, refusing nothing but instances beyond `instances`.
#[derive(Default)]
struct Meter {
    instances: usize,
    memories: usize,
    tables: usize,
    largest_memory: usize,
    largest_table: usize,
}

impl wasmtime::ResourceLimiter for Meter {
    fn memory_growing(&mut self, current: usize, desired: usize, _: Option<usize>) -> wasmtime::Result<bool> {
        self.memories += usize::from(current == 0);
        self.largest_memory = self.largest_memory.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _: Option<usize>) -> wasmtime::Result<bool> {
        self.tables += usize::from(current == 0);
        self.largest_table = self.largest_table.max(desired);
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }
}

/// Measures what the Python plugin needs, for sizing `Limits` (run with `-- --ignored
/// --nocapture`): instances, tables, memories, the largest linear memory and table, and fuel.
#[test]
#[ignore = "a measurement, not a check"]
fn measure_python_plugin_needs() {
    use wasmtime::component::{Component, Linker, Val};
    use wasmtime::{Config, Engine, Store};

    let Some(wasm) = component() else { return };
    let mut config = Config::new();
    config.consume_fuel(true).epoch_interruption(true).max_wasm_stack(1 << 20);
    let engine = Engine::new(&config).unwrap();
    let started = Instant::now();
    let component = Component::from_file(&engine, &wasm).unwrap();
    let compile_s = started.elapsed().as_secs_f64();
    let mut linker = Linker::<Meter>::new(&engine);
    linker.root().func_new("log", |_, _, _, _| Ok(())).unwrap();

    let report = report(Some(0.5), Some(("sig:delta=40,freq=6", 3, 0.4))).to_string();
    let run = |instances: usize| -> wasmtime::Result<(Meter, f64, f64, u64, u64)> {
        let mut store = Store::new(&engine, Meter { instances, ..Meter::default() });
        store.limiter(|meter| meter);
        store.set_fuel(u64::MAX / 2).unwrap();
        store.set_epoch_deadline(u64::MAX / 2);
        let started = Instant::now();
        let instance = linker.instantiate(&mut store, &component)?;
        let instantiate_ms = started.elapsed().as_secs_f64() * 1e3;
        let instantiate_fuel = u64::MAX / 2 - store.get_fuel().unwrap();
        let evaluate = instance.get_func(&mut store, "evaluate").unwrap();
        let mut result = [Val::Bool(false)];
        let started = Instant::now();
        evaluate.call(&mut store, &[Val::String(report.clone()), Val::String("{}".into())], &mut result)?;
        let evaluate_ms = started.elapsed().as_secs_f64() * 1e3;
        let fuel = u64::MAX / 2 - store.get_fuel().unwrap();
        let meter = store.into_data();
        Ok((meter, instantiate_ms, evaluate_ms, instantiate_fuel, fuel))
    };
    let instances = (1..1000).find(|&n| run(n).is_ok()).expect("instantiates with under 1000 instances");
    let (meter, instantiate_ms, evaluate_ms, instantiate_fuel, fuel) = run(instances).unwrap();
    let peak_rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM")).map(str::to_string))
        .unwrap_or_default();
    eprintln!(
        "python-max-asr needs: component {} bytes, compile {compile_s:.1} s, {instances} core instances, \
         {} memories (largest {} bytes = {:.1} MiB), {} tables (largest {} elements), \
         instantiate {instantiate_ms:.1} ms + {instantiate_fuel} fuel, total with evaluate {:.1} ms + {fuel} fuel; \
         test process {peak_rss}",
        std::fs::metadata(&wasm).unwrap().len(),
        meter.memories,
        meter.largest_memory,
        meter.largest_memory as f64 / (1 << 20) as f64,
        meter.tables,
        meter.largest_table,
        instantiate_ms + evaluate_ms,
    );
}
