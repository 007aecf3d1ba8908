//! The built-in threshold policy on a real report (fc fixture purified on toy data).
mod common;

use std::path::Path;

use fstgate::data::InputSpec;
use fstgate::evaluation::{self, ProbeResult};
use fstgate::job::{self, AttackInput, PurifyJob, Sample};
use fstgate::policy::{ThresholdPolicy, Verdict};
use fstgate::purification::Settings;
use fstgate::report::Report;
use fstgate::training::Silent;
use tch::Device;

fn report() -> Report {
    let dir = common::scratch("policy");
    let data = dir.join("toy.safetensors");
    common::toy_data(&data, 64, 1, 10);
    let spec: fstgate::data::DataSpec = data.display().to_string().parse().unwrap();
    let job = PurifyJob {
        model: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heads/fc.pt"),
        head: None,
        clean_data: spec.clone(),
        clean_sample: Sample::All,
        test_data: spec,
        test_sample: Sample::All,
        input: InputSpec::default(),
        settings: Settings { epochs: 1, batch_size: 16, ..Settings::default() },
        attack: Some((AttackInput::Trigger("badnets:size=2".parse().unwrap()), 0)),
        probes: evaluation::standard_probes(),
        device: Device::Cpu,
        out: dir.join("out"),
        policy: ThresholdPolicy::default(),
        signing_key: None,
    };
    job::run(&job, &Silent).unwrap()
}

#[test]
fn thresholds_decide_on_asr_probes_and_accuracy() {
    let policy = ThresholdPolicy::default();
    let mut good = report();
    good.summary.attack_success_rate_after = Some(0.01);
    good.summary.clean_accuracy_drop_points = 1.0;
    let result = policy.evaluate(&good);
    assert_eq!(result.verdict, Verdict::Allow, "{:?}", result.reasons);
    assert_eq!(result.name, "builtin:thresholds");

    let mut backdoored = good.clone();
    backdoored.summary.attack_success_rate_after = Some(0.5);
    let result = policy.evaluate(&backdoored);
    assert_eq!(result.verdict, Verdict::Deny);
    assert_eq!(result.reasons, ["attack success rate after purification 50.0% exceeds 5.0%"]);

    // Without a known trigger the worst probe stands in for the ASR.
    let mut unknown = good.clone();
    unknown.summary.attack_success_rate_after = None;
    unknown.after.worst_probe = Some(ProbeResult { trigger: "sig:delta=40,freq=6".into(), class: 3, rate: 0.4 });
    let result = policy.evaluate(&unknown);
    assert_eq!(result.verdict, Verdict::Deny);
    assert!(result.reasons[0].contains("probe sig:delta=40,freq=6 pushes 40.0% of other-class images to class 3"));
    unknown.after.worst_probe = None;
    assert!(policy.evaluate(&unknown).reasons[0].contains("no backdoor measurement"));

    let mut degraded = good.clone();
    degraded.summary.clean_accuracy_drop_points = 4.5;
    assert_eq!(policy.evaluate(&degraded).reasons, ["clean accuracy dropped 4.50 points (limit 3.00)"]);

    // The digest names the configuration that ran.
    let stricter = ThresholdPolicy { max_attack_success_rate: 0.01, ..policy.clone() };
    assert_ne!(stricter.evaluate(&good).sha256, policy.evaluate(&good).sha256);
    assert_eq!(policy.evaluate(&good).sha256, policy.evaluate(&backdoored).sha256);
}
