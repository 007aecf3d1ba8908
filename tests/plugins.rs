//! The policy sandbox against hostile plugins (WAT fixtures in tests/fixtures/plugins): each is
//! denied within its bound, with a reason naming the plugin and the failure, and the host keeps
//! serving well-behaved plugins meanwhile.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fstgate::policy::{Limits, PluginFailure, PluginHost, PolicySet, PolicySpec, Verdict};

const REPORT: &str = r#"{"schema":"fstgate.report/v1"}"#;

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plugins").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const EVALUATE: &str = r#"(param "report" string) (param "config" string) (result (result $verdict (error string)))"#;

/// A component of the policy world around the core module in fixture `core`.
fn component(core: &str, imports: &str, evaluate_type: &str) -> String {
    fixture("shell.wat")
        .replace("@CORE@", &fixture(core))
        .replace("@IMPORTS@", imports)
        .replace("@EVALUATE_TYPE@", evaluate_type)
}

fn policy_component(core: &str) -> String {
    component(core, "", EVALUATE)
}

/// Every hostile plugin, written as a file named after what it does.
fn hostile_plugins(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let wasi = r#"(import "wasi:filesystem/preopens@0.2.0" (instance (export "get-directories" (func))))"#;
    let plugins = [
        ("infinite-loop", policy_component("infinite_loop.wat"), "exceeded the wall-clock limit of 300 ms"),
        ("memory-bomb", policy_component("memory_bomb.wat"), "exceeded the memory limit of 16777216 bytes"),
        (
            "oversized-output",
            policy_component("oversized_output.wat"),
            "returned 1048576 bytes of output, over the limit",
        ),
        ("trap", policy_component("trap.wat"), "trapped: "),
        ("wasi-import", component("allow.wat", wasi, EVALUATE), "imports `wasi:filesystem/preopens@0.2.0`"),
        (
            "wrong-export",
            component("allow.wat", "", r#"(param "report" string) (param "config" string) (result string)"#),
            "does not implement the fstgate:policy/policy@0.1.0 world",
        ),
    ];
    let mut files: Vec<(PathBuf, &str)> = plugins
        .into_iter()
        .map(|(name, wat, expected)| {
            let path = dir.join(format!("{name}.wat"));
            std::fs::write(&path, wat).unwrap();
            (path, expected)
        })
        .collect();
    files.push((
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plugins/garbage.wasm"),
        "is not a WebAssembly component",
    ));
    files.push((dir.join("missing.wasm"), "cannot read the plugin"));
    files
}

fn test_limits() -> Limits {
    Limits { wall_clock_ms: 300, memory_bytes: 16 << 20, fuel: u64::MAX, ..Limits::default() }
}

#[test]
fn hostile_plugins_deny_with_reasons_and_the_rest_still_run() {
    let dir = common::scratch("hostile-plugins");
    let hostile = hostile_plugins(&dir);
    let allow = dir.join("allow.wat");
    std::fs::write(&allow, policy_component("allow.wat")).unwrap();
    let mut specs: Vec<PolicySpec> =
        hostile.iter().map(|(path, _)| PolicySpec::new(path.to_str().unwrap(), None).unwrap()).collect();
    specs.push(PolicySpec::new(allow.to_str().unwrap(), None).unwrap());
    let set = PolicySet::new(specs, test_limits()).unwrap();

    let decision = set.evaluate_json(serde_json::from_str(REPORT).unwrap());
    assert!(!decision.releasable, "a hostile plugin must make the gate deny");
    for ((path, expected), result) in hostile.iter().zip(&decision.policies) {
        let name = path.file_stem().unwrap().to_str().unwrap();
        assert_eq!(result.name, name);
        assert_eq!(result.verdict, Verdict::Deny, "{name}");
        let failure = result.failure.as_deref().unwrap_or_else(|| panic!("{name} has no failure recorded"));
        assert!(failure.starts_with(&format!("policy plugin `{name}` ")), "{failure}");
        assert!(failure.contains(expected), "{name}: expected `{expected}` in `{failure}`");
        assert_eq!(result.reasons, [failure.to_string()]);
    }
    let well_behaved = decision.policies.last().unwrap();
    assert_eq!((well_behaved.verdict, well_behaved.failure.as_deref()), (Verdict::Allow, None));
}

#[test]
fn infinite_loop_stops_at_the_wall_clock_limit() {
    let host = PluginHost::new(test_limits()).unwrap();
    let plugin = host.load(policy_component("infinite_loop.wat").as_bytes()).unwrap();
    let started = Instant::now();
    let outcome = host.evaluate(&plugin, REPORT, "{}");
    let elapsed = started.elapsed();
    assert!(
        matches!(outcome.verdict, Err(PluginFailure::Timeout { limit_ms: 300, .. })),
        "{:?}",
        outcome.verdict.err()
    );
    // With unlimited fuel only the epoch deadline can have stopped it, and never before it.
    assert!(elapsed >= Duration::from_millis(300), "stopped early, after {elapsed:?}");
}

#[test]
fn infinite_loop_runs_out_of_fuel_before_the_clock_when_fuel_is_small() {
    let host = PluginHost::new(Limits { fuel: 10_000_000, wall_clock_ms: 60_000, ..Limits::default() }).unwrap();
    let plugin = host.load(policy_component("infinite_loop.wat").as_bytes()).unwrap();
    let outcome = host.evaluate(&plugin, REPORT, "{}");
    // Out of fuel, not stopped by the (60 s) clock.
    assert_eq!(outcome.verdict.err(), Some(PluginFailure::OutOfFuel(10_000_000)));
}

/// A hanging plugin does not hold the host: while it spins (up to its 20 s deadline), twenty
/// evaluations of another plugin complete. A host that serialised evaluations would finish the
/// hang first, and the hanging thread would be found finished.
#[test]
fn host_serves_other_plugins_while_one_hangs() {
    let host = PluginHost::new(Limits { wall_clock_ms: 20_000, fuel: u64::MAX, ..Limits::default() }).unwrap();
    let hang = host.load(policy_component("infinite_loop.wat").as_bytes()).unwrap();
    let allow = host.load(policy_component("allow.wat").as_bytes()).unwrap();
    std::thread::scope(|scope| {
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (host, hang) = (&host, &hang);
        let hanging = scope.spawn(move || {
            started_tx.send(()).unwrap();
            host.evaluate(hang, REPORT, "{}")
        });
        started_rx.recv().unwrap();
        // A head start into the loop (not a measurement: the 20 s deadline is the margin).
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..20 {
            let verdict = host.evaluate(&allow, REPORT, "{}").verdict.expect("the well-behaved plugin answers");
            assert_eq!(verdict.reasons, Vec::<String>::new());
        }
        assert!(!hanging.is_finished(), "the hanging plugin should still be running");
        assert!(matches!(hanging.join().unwrap().verdict, Err(PluginFailure::Timeout { .. })));
    });
}

#[test]
fn oversized_input_is_refused_before_the_plugin_runs() {
    let host = PluginHost::new(Limits { max_input_bytes: 1000, ..Limits::default() }).unwrap();
    let plugin = host.load(policy_component("allow.wat").as_bytes()).unwrap();
    let report = format!(r#"{{"padding":"{}"}}"#, "x".repeat(2000));
    assert!(matches!(
        host.evaluate(&plugin, &report, "{}").verdict,
        Err(PluginFailure::InputTooLarge { limit: 1000, .. })
    ));
}

#[test]
fn a_core_module_is_refused_with_a_hint() {
    let host = PluginHost::new(Limits::default()).unwrap();
    // The smallest core module: magic and version 1.
    let failure = host.load(b"\0asm\x01\0\0\0").err().unwrap();
    assert!(failure.to_string().contains("fstgate-componentize"), "{failure}");
}

const EXAMPLES: [&str; 4] = ["thresholds", "max-asr", "max-accuracy-drop", "required-metadata"];

fn prebuilt(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("plugin-sdk/examples/prebuilt/{name}.wasm"))
}

/// `./dev test` builds the examples from source first (scripts/build-plugins.sh) and says so in
/// FSTGATE_PLUGINS_FROM_SOURCE; the committed components, the embedded default among them, must
/// be exactly what the sources build.
#[test]
fn prebuilt_example_plugins_are_what_their_sources_build() {
    let built_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/plugins");
    match std::env::var("FSTGATE_PLUGINS_FROM_SOURCE").as_deref() {
        Ok("built") => {}
        Ok("skipped") => {
            common::unavailable("the wasm32-unknown-unknown target", "the policy plugins were not built from source");
            return;
        }
        _ if !built_dir.join("thresholds.wasm").exists() => {
            common::unavailable(
                "target/plugins",
                "plugins not built from source (run ./dev test or scripts/build-plugins.sh)",
            );
            return;
        }
        _ => {}
    }
    for name in EXAMPLES {
        let built = std::fs::read(built_dir.join(format!("{name}.wasm"))).unwrap();
        assert!(
            built == std::fs::read(prebuilt(name)).unwrap(),
            "{name}: prebuilt component differs from its source build"
        );
    }
    assert_eq!(std::fs::read(prebuilt("thresholds")).unwrap(), fstgate::policy::DEFAULT_POLICY_WASM);
}

#[test]
fn example_plugins_judge_a_real_report() {
    let report_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugin-sdk/tests/fixtures/report.json");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(report_path).unwrap()).unwrap();
    let dir = common::scratch("example-plugins");
    let cases = [
        // The fixture: ASR after 0.11%, drop 1.4 points, model badnets.pt, both data digests.
        ("max-asr", serde_json::json!({}), Verdict::Allow),
        ("max-asr", serde_json::json!({"max_attack_success_rate": 0.001}), Verdict::Deny),
        ("max-accuracy-drop", serde_json::json!({"max_accuracy_drop_points": 2.0}), Verdict::Allow),
        ("max-accuracy-drop", serde_json::json!({"max_accuracy_drop_points": 1.0}), Verdict::Deny),
        ("required-metadata", serde_json::json!({"model_name_pattern": "badnets*.pt"}), Verdict::Allow),
        ("required-metadata", serde_json::json!({"model_name_pattern": "resnet-*.pt"}), Verdict::Deny),
    ];
    let specs = cases
        .iter()
        .enumerate()
        .map(|(i, (name, config, _))| {
            let config_file = dir.join(format!("{i}.json"));
            std::fs::write(&config_file, config.to_string()).unwrap();
            PolicySpec::new(prebuilt(name).to_str().unwrap(), Some(&config_file)).unwrap()
        })
        .collect();
    let decision = PolicySet::new(specs, Limits::default()).unwrap().evaluate_json(report);
    for ((name, config, expected), result) in cases.iter().zip(&decision.policies) {
        assert_eq!((result.name.as_str(), result.failure.as_deref()), (*name, None));
        assert_eq!(result.verdict, *expected, "{name} with {config}: {:?}", result.reasons);
        assert_eq!(&result.config, config);
        if result.verdict == Verdict::Deny {
            assert!(!result.reasons.is_empty());
        }
    }
    assert_eq!(decision.policies[1].reasons, ["attack success rate after purification 0.11% exceeds 0.10%"]);
}

#[test]
fn compiled_plugins_are_kept_on_disk_and_a_corrupt_entry_is_recompiled() {
    let dir = common::scratch("plugin-disk-cache");
    let cache = dir.join("cache");
    let wat = policy_component("allow.wat");
    let mut first = PluginHost::new(Limits::default()).unwrap();
    first.set_disk_cache(&cache).unwrap();
    first.load(wat.as_bytes()).unwrap();
    let entries: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777, 0o700);

    // A new host (another process, in effect) loads the cached compilation and runs it.
    let mut second = PluginHost::new(Limits::default()).unwrap();
    second.set_disk_cache(&cache).unwrap();
    let plugin = second.load(wat.as_bytes()).unwrap();
    assert!(second.evaluate(&plugin, REPORT, "{}").verdict.is_ok());

    // A damaged entry is not trusted: the plugin is compiled again and the entry rewritten.
    std::fs::write(&entries[0], b"not a compiled component").unwrap();
    let mut third = PluginHost::new(Limits::default()).unwrap();
    third.set_disk_cache(&cache).unwrap();
    let plugin = third.load(wat.as_bytes()).unwrap();
    assert!(third.evaluate(&plugin, REPORT, "{}").verdict.is_ok());
    assert_ne!(std::fs::read(&entries[0]).unwrap(), b"not a compiled component");

    // An entry compiled elsewhere (under another cache's key) is not loaded as native code: it
    // is compiled again here and rewritten under this cache's key.
    let elsewhere = dir.join("elsewhere");
    let mut foreign = PluginHost::new(Limits::default()).unwrap();
    foreign.set_disk_cache(&elsewhere).unwrap();
    foreign.load(wat.as_bytes()).unwrap();
    let planted = std::fs::read(elsewhere.join(entries[0].file_name().unwrap())).unwrap();
    std::fs::write(&entries[0], &planted).unwrap();
    let mut fourth = PluginHost::new(Limits::default()).unwrap();
    fourth.set_disk_cache(&cache).unwrap();
    let plugin = fourth.load(wat.as_bytes()).unwrap();
    assert!(fourth.evaluate(&plugin, REPORT, "{}").verdict.is_ok());
    let rewritten = std::fs::read(&entries[0]).unwrap();
    assert_ne!(rewritten[..32], planted[..32], "the planted entry was rewritten");
    assert_eq!(rewritten[32..], planted[32..], "the same compilation, under this cache's key");
}
