//! Policy plugin cost: compiling a component once, then evaluating it per report (fresh store,
//! instantiation, JSON parsing in the guest, verdict). Run with `cargo bench --bench policy`;
//! prints a table. The target (issue 3): a precompiled Rust plugin under 5 ms per evaluation.
//! Plugins under target/plugins (scripts/build-plugins.sh, the Python test) are measured too.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fstgate::policy::{DEFAULT_POLICY_WASM, Limits, PluginHost};

const EVALUATIONS: usize = 500;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index].as_secs_f64() * 1e3
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let report = std::fs::read_to_string(root.join("plugin-sdk/tests/fixtures/report.json")).expect("sample report");
    let mut plugins: Vec<(String, Vec<u8>)> = vec![("builtin:thresholds".into(), DEFAULT_POLICY_WASM.to_vec())];
    // Whatever scripts/build-plugins.sh and tests/python_plugin.rs built.
    let mut built: Vec<PathBuf> = std::fs::read_dir(root.join("target/plugins"))
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    built.sort();
    for path in built.into_iter().filter(|p| p.extension().is_some_and(|e| e == "wasm")) {
        let name = path.file_stem().expect("file name").to_string_lossy().into_owned();
        plugins.push((name, std::fs::read(&path).expect("plugin readable")));
    }
    println!(
        "policy evaluation: {} evaluations each, report of {} bytes, {} CPUs",
        EVALUATIONS,
        report.len(),
        num_cpus()
    );
    println!(
        "{:<34} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9}",
        "plugin", "size KiB", "compile ms", "mean ms", "p50 ms", "p99 ms", "max ms"
    );
    for (name, bytes) in plugins {
        let host = PluginHost::new(Limits::default()).expect("host");
        let started = Instant::now();
        let plugin = host.load(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let compile = started.elapsed();
        for _ in 0..10 {
            host.evaluate(&plugin, &report, "{}").verdict.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let mut times: Vec<Duration> = (0..EVALUATIONS)
            .map(|_| {
                let started = Instant::now();
                let outcome = host.evaluate(&plugin, &report, "{}");
                let elapsed = started.elapsed();
                assert!(outcome.verdict.is_ok(), "{name} failed during the benchmark");
                elapsed
            })
            .collect();
        times.sort();
        let mean = times.iter().sum::<Duration>().as_secs_f64() * 1e3 / times.len() as f64;
        println!(
            "{:<34} {:>9.0} {:>11.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            name,
            bytes.len() as f64 / 1024.0,
            compile.as_secs_f64() * 1e3,
            mean,
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            percentile(&times, 1.0)
        );
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
