//! The command line's contract: exit codes, clear errors for every bad input, and no partial
//! output when anything fails.
mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use fstgate::policy::Verdict;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn fstgate<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let output = Command::cargo_bin("fstgate").unwrap().args(args).output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `--quiet purify` of `model`, tuning and testing on all of `data`, for two small epochs.
fn base_purify_args(model: &Path, data: &Path, out: &Path) -> Vec<String> {
    let (model, data, out) = (model.display().to_string(), data.display().to_string(), out.display().to_string());
    ["--quiet", "purify", "--model", &model, "--clean-data", &data, "--clean-fraction", "1", "--test-data", &data]
        .into_iter()
        .chain(["--epochs", "2", "--batch-size", "16", "--out", &out])
        .map(str::to_string)
        .collect()
}

/// Runs purify on the fc fixture with `data` as clean and test set plus `extra` arguments.
fn purify(dir: &Path, model: &Path, data: &Path, extra: &[&str]) -> (Run, PathBuf) {
    let out = dir.join("out");
    let mut args = base_purify_args(model, data, &out);
    if !extra.contains(&"--device") {
        args.extend(["--device", "cpu"].map(String::from));
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    (fstgate(&args), out)
}

/// Nothing but the inputs is left in `dir`: no output, no staging directory.
fn assert_nothing_written(dir: &Path, inputs: &[&str]) {
    let mut left: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.retain(|name| !inputs.contains(&name.as_str()));
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[test]
fn purify_on_a_scripted_fixture_writes_model_and_report() {
    let dir = common::scratch("cli-ok");
    let data = dir.join("toy.safetensors");
    common::toy_data(&data, 64, 1, 10);
    let plugin = |name: &str| format!("{}/plugin-sdk/examples/prebuilt/{name}.wasm", env!("CARGO_MANIFEST_DIR"));
    let lenient = dir.join("lenient.json");
    std::fs::write(&lenient, r#"{"max_accuracy_drop_points": 100}"#).unwrap();
    let policies = [format!("{}@{}", plugin("max-accuracy-drop"), lenient.display()), plugin("required-metadata")];
    let (run, out) = purify(
        &dir,
        &fixture("heads/fc.pt"),
        &data,
        &["--trigger", "badnets:size=2", "--crop-padding", "1", "--policy", &policies[0], "--policy", &policies[1]],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: fstgate::report::Report =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report.model.head.name, "fc");
    assert_eq!(report.epochs.len(), 2);
    assert_eq!(report.clean_data.images_used, 64);
    assert_eq!(report.output.sha256, fstgate::data::sha256_file(&out.join("model.pt")).unwrap());
    assert!(report.after.attack.is_some() && report.after.probes.len() == 8);
    // Both plugins ran, with their configurations, and both allowed.
    let ran: Vec<_> = report.decision.policies.iter().map(|p| (p.name.as_str(), p.verdict, p.config.clone())).collect();
    assert_eq!(
        ran,
        [
            ("max-accuracy-drop", Verdict::Allow, serde_json::json!({"max_accuracy_drop_points": 100})),
            ("required-metadata", Verdict::Allow, serde_json::json!({}))
        ]
    );
    assert!(report.decision.releasable);
    // Output directory exists only once complete; a second run refuses to overwrite it.
    let (again, _) = purify(&dir, &fixture("heads/fc.pt"), &data, &[]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
}

/// The clean/test data a bad-input case runs on.
enum Data {
    Toy { n: usize, channels: usize, classes: i64 },
    Missing,
    Garbage,
}

struct Case {
    name: &'static str,
    model: &'static str,
    data: Data,
    extra: &'static [&'static str],
    reason: &'static str,
}

const OK_DATA: Data = Data::Toy { n: 32, channels: 1, classes: 10 };

#[test]
fn every_bad_input_exits_2_with_its_reason_and_writes_nothing() {
    let cases = [
        Case {
            name: "corrupt model",
            model: "garbage.pt",
            data: OK_DATA,
            extra: &[],
            reason: "not a TorchScript archive",
        },
        Case {
            name: "pickled eager model",
            model: "eager_pickled.pt",
            data: OK_DATA,
            extra: &[],
            reason: "pickled eager PyTorch module",
        },
        Case {
            name: "wrong image shape",
            model: "heads/fc.pt",
            data: Data::Toy { n: 32, channels: 3, classes: 10 },
            extra: &[],
            reason: "the model rejects inputs of shape [4, 3, 8, 8]",
        },
        Case {
            name: "label out of range",
            model: "heads/fc.pt",
            data: Data::Toy { n: 32, channels: 1, classes: 13 },
            extra: &[],
            reason: "label 12 is out of range for a model with 10 outputs",
        },
        Case {
            name: "empty data set",
            model: "heads/fc.pt",
            data: Data::Toy { n: 0, channels: 1, classes: 10 },
            extra: &[],
            reason: "the data set is empty",
        },
        Case {
            name: "unreadable data",
            model: "heads/fc.pt",
            data: Data::Missing,
            extra: &[],
            reason: "d.safetensors",
        },
        Case {
            name: "garbage data",
            model: "heads/fc.pt",
            data: Data::Garbage,
            extra: &[],
            reason: "not a valid safetensors file",
        },
        Case {
            name: "trigger too big",
            model: "heads/fc.pt",
            data: OK_DATA,
            extra: &["--trigger", "badnets:size=9"],
            reason: "does not fit 8x8 images",
        },
        Case {
            name: "diverging training",
            model: "heads/fc.pt",
            data: OK_DATA,
            extra: &["--lr", "1e30", "--no-probes"],
            reason: "training diverged",
        },
        Case {
            name: "missing GPU",
            model: "heads/fc.pt",
            data: OK_DATA,
            extra: &["--device", "cuda:99"],
            reason: "cuda",
        },
        Case {
            name: "judge flags on a fixed strength",
            model: "heads/fc.pt",
            data: OK_DATA,
            extra: &["--judge", "--auto-candidates", "2", "--inversion-steps", "50"],
            reason: "--judge, --auto-candidates, --inversion-steps would be ignored: the automatic strength's flags \
                     apply only to it",
        },
        Case {
            name: "bad normalisation",
            model: "heads/fc.pt",
            data: OK_DATA,
            extra: &["--mean", "0.5,0.5,0.5", "--std", "0.2,0.2,0.2"],
            reason: "3 mean/std values for 1-channel images",
        },
    ];
    for case in cases {
        let dir = common::scratch(&format!("cli-bad-{}", case.name.replace(' ', "-")));
        let data = dir.join("d.safetensors");
        match case.data {
            Data::Toy { n, channels, classes } => common::toy_data(&data, n, channels, classes),
            Data::Missing => {}
            Data::Garbage => std::fs::write(&data, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}").unwrap(),
        }
        let (run, _) = purify(&dir, &fixture(case.model), &data, case.extra);
        let name = case.name;
        assert_eq!(run.code, 2, "{name}: {}", run.stderr);
        assert!(run.stderr.contains(case.reason), "{name}: expected `{}` in: {}", case.reason, run.stderr);
        assert!(run.stderr.lines().count() <= 3, "{name}: the error should be short: {}", run.stderr);
        assert_nothing_written(&dir, &["d.safetensors"]);
    }
}

#[test]
fn bad_trigger_spec_and_device_are_usage_errors() {
    for (flag, value, reason) in [
        ("--trigger", "laser", "unknown trigger `laser`"),
        ("--device", "tpu", "`tpu` is not one of auto, cpu, cuda, cuda:N"),
    ] {
        let run =
            fstgate(&["purify", "--model", "m.pt", "--clean-data", "d", "--test-data", "d", flag, value, "--out", "o"]);
        assert_eq!(run.code, 2);
        assert!(run.stderr.contains(reason), "{}", run.stderr);
    }
}

#[test]
fn schemas_are_up_to_date() {
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let run = fstgate(&["schema", "--check", "--out", schemas.to_str().unwrap()]);
    assert_eq!(run.code, 0, "schemas/ is stale: {}", run.stderr);
    // The check really compares: a directory without the files fails.
    let empty = common::scratch("schemas-empty");
    assert_eq!(fstgate(&["schema", "--check", "--out", empty.to_str().unwrap()]).code, 1);
}

#[test]
fn signing_key_from_the_environment_signs_and_a_broken_one_is_not_echoed() {
    let dir = common::scratch("cli-env-key");
    let data = dir.join("d.safetensors");
    common::toy_data(&data, 32, 1, 10);
    let key = fstgate::attestation::SigningKey::generate();
    let pem = key.to_pem().unwrap();
    let run = |pem: &str, out: &str| {
        let out = dir.join(out);
        let output = Command::cargo_bin("fstgate")
            .unwrap()
            .env("FSTGATE_TEST_SIGNING_KEY", pem)
            .args(base_purify_args(&fixture("heads/fc.pt"), &data, &out))
            .args(["--device", "cpu", "--signing-key-env", "FSTGATE_TEST_SIGNING_KEY"])
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.code(), text, out)
    };
    let (code, text, out) = run(&pem, "signed");
    assert_eq!(code, Some(0), "{text}");
    fstgate::attestation::verify(&out, &key.public(), None, None).unwrap();
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    let report = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(!report.contains("PRIVATE KEY") && !report.contains(&pem[40..80]));
    // With a key to protect, the model ran in the confined worker, not next to the key.
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["confinement"]["filesystem"]["enforced"], true, "{:#}", report["confinement"]);

    let broken = pem.replace('A', "B");
    let (code, text, out) = run(&broken, "broken");
    assert_eq!(code, Some(2));
    assert!(
        text.contains("environment variable FSTGATE_TEST_SIGNING_KEY: not a PEM ECDSA P-256 private key"),
        "{text}"
    );
    assert!(!text.contains("PRIVATE KEY") && !text.contains(&broken[40..80]), "the key leaked: {text}");
    assert!(!out.exists());
}

#[test]
fn policy_eval_exits_0_on_allow_1_on_deny_2_on_a_bad_report() {
    let dir = common::scratch("cli-policy-eval");
    let report = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugin-sdk/tests/fixtures/report.json");
    let strict = dir.join("strict.json");
    std::fs::write(&strict, r#"{"max_attack_success_rate": 0.001}"#).unwrap();
    let cache = dir.join("plugin-cache");
    let eval = |extra: &[&str]| {
        let mut args = vec!["policy", "eval", "builtin:thresholds", "--plugin-cache", cache.to_str().unwrap()];
        args.extend_from_slice(extra);
        fstgate(&args)
    };
    let allowed = eval(&["--report", report.to_str().unwrap()]);
    assert_eq!(allowed.code, 0, "{}", allowed.stderr);
    assert!(allowed.stdout.starts_with("builtin:thresholds: allow"), "{}", allowed.stdout);
    let denied = eval(&["--report", report.to_str().unwrap(), "--config", strict.to_str().unwrap(), "--json"]);
    assert_eq!(denied.code, 1, "{}", denied.stderr);
    let result: serde_json::Value = serde_json::from_str(&denied.stdout).unwrap();
    assert_eq!(result["verdict"], "deny");
    assert_eq!(result["reasons"][0], "attack success rate after purification 0.11% exceeds 0.10%");
    // The compiled plugin was kept for the next run.
    let entries = std::fs::read_dir(&cache).unwrap().flatten();
    assert_eq!(entries.filter(|e| e.path().extension().is_some_and(|x| x == "cwasm")).count(), 1);
    let missing = eval(&["--report", dir.join("nope.json").to_str().unwrap()]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("nope.json"), "{}", missing.stderr);
}

#[test]
fn scan_names_the_lab_backdoors_target_and_writes_every_inverted_trigger() {
    let lab = common::badnets_model();
    let dir = common::scratch("cli-scan");
    let (json, triggers) = (dir.join("scan.json"), dir.join("triggers"));
    let data = format!("{}#train", common::FASHION_MNIST);
    let scan = |model: &Path, data: &str| {
        let [model, json, triggers] = [model, &json, &triggers].map(|p| p.display().to_string());
        fstgate(&[
            "--quiet",
            "scan",
            "--model",
            &model,
            "--clean-data",
            data,
            "--clean-count",
            "1500",
            "--device",
            "cpu",
            "--json",
            &json,
            "--triggers",
            &triggers,
        ])
    };
    // A bad input is refused before anything is written.
    let missing = scan(&dir.join("missing.pt"), &data);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(missing.stderr.contains("missing.pt"), "{}", missing.stderr);
    assert_nothing_written(&dir, &[]);

    let run = scan(&lab.model, &data);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: fstgate::job::ScanReport = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report.schema, fstgate::job::SCAN_SCHEMA);
    assert_eq!(report.clean_data.images_used, 1500);
    let inversion = &report.inversion;
    // The demo's BadNets patch into class 0: the smallest mask, far below the other classes'.
    assert_eq!(inversion.suspected_targets.first(), Some(&0), "{inversion:?}");
    assert!(inversion.classes[0].mask_ratio < 0.3 && inversion.classes[0].push > 0.9, "{:?}", inversion.classes[0]);
    assert!(report.backdoor_suspected);
    assert!(run.stdout.contains("backdoor suspected: patch targets [0"), "{}", run.stdout);
    // A mask and a trigger per class, and a blend per class, each a 28x28 image.
    let mut written: Vec<String> =
        std::fs::read_dir(&triggers).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    written.sort();
    assert_eq!(written.len(), 30, "{written:?}");
    let mask = image::open(triggers.join("patch-0-mask.png")).unwrap().to_luma8();
    assert_eq!(mask.dimensions(), (28, 28));
    // The PNG is the mask: its sum is the reported size, up to 8-bit rounding of 784 pixels.
    let pixels: f64 = mask.pixels().map(|p| f64::from(p.0[0]) / 255.0).sum();
    assert!((pixels - inversion.classes[0].mask_pixels).abs() < 2.0, "{pixels} vs {:?}", inversion.classes[0]);
}
