//! The built-in threshold policy on a real report (fc fixture purified on toy data).
mod common;

use fstgate::evaluation::ProbeResult;
use fstgate::job;
use fstgate::policy::{ThresholdPolicy, Verdict};
use fstgate::report::Report;
use fstgate::training::Silent;

fn report() -> Report {
    let dir = common::scratch("policy");
    job::run(&common::toy_job(&dir, "out", 0), &Silent).unwrap()
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
