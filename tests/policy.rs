//! The default policy (the embedded `thresholds` plugin) on a real report: the fc fixture
//! purified on toy data, with its figures varied.
mod common;

use fstgate::evaluation::ProbeResult;
use fstgate::job;
use fstgate::policy::{self, PolicyResult, PolicySet, Verdict};
use fstgate::report::Report;
use fstgate::training::Silent;
use sha2::Digest;

/// `scratch` names the test's own directory: tests run in parallel.
fn report(scratch: &str) -> Report {
    let dir = common::scratch(scratch);
    job::run(&common::toy_job(&dir, "out", 0), &Silent).unwrap()
}

fn judge(policies: &PolicySet, report: &Report) -> PolicyResult {
    let decision = policies.evaluate(report);
    assert_eq!(decision.policies.len(), 1);
    assert_eq!(decision.releasable, decision.policies[0].verdict == Verdict::Allow);
    decision.policies[0].clone()
}

#[test]
fn thresholds_decide_on_asr_probes_and_accuracy() {
    let policies = common::default_policies();
    let mut good = report("policy-thresholds");
    good.summary.attack_success_rate_after = Some(0.01);
    good.summary.clean_accuracy_drop_points = 1.0;
    let result = judge(&policies, &good);
    assert_eq!(result.verdict, Verdict::Allow, "{:?}", result.reasons);
    assert_eq!(result.name, "builtin:thresholds");
    assert_eq!(result.failure, None);
    assert_eq!(result.sha256, hex::encode(sha2::Sha256::digest(fstgate::policy::DEFAULT_POLICY_WASM)));

    let mut backdoored = good.clone();
    backdoored.summary.attack_success_rate_after = Some(0.5);
    let result = judge(&policies, &backdoored);
    assert_eq!(result.verdict, Verdict::Deny);
    assert_eq!(result.reasons, ["attack success rate after purification 50.0% exceeds 5.0%"]);

    // Without a known trigger the worst probe stands in for the ASR.
    let mut unknown = good.clone();
    unknown.summary.attack_success_rate_after = None;
    unknown.summary.worst_probe_rate_after = Some(0.4);
    unknown.after.worst_probe =
        Some(ProbeResult { trigger: "sig:delta=40,freq=6".into(), class: 3, rate: 0.4, images: 1_800 });
    let result = judge(&policies, &unknown);
    assert_eq!(result.verdict, Verdict::Deny);
    assert!(result.reasons[0].contains("40.0%"), "{:?}", result.reasons);
    assert!(result.reasons[0].contains("sig:delta=40,freq=6"), "{:?}", result.reasons);
    unknown.summary.worst_probe_rate_after = None;
    unknown.after.worst_probe = None;
    let result = judge(&policies, &unknown);
    assert_eq!(result.verdict, Verdict::Deny, "no backdoor measurement at all must deny");

    let mut degraded = good.clone();
    degraded.summary.clean_accuracy_drop_points = 4.5;
    let result = judge(&policies, &degraded);
    assert_eq!(result.verdict, Verdict::Deny);
    assert!(result.reasons[0].contains("4.5") && result.reasons[0].contains("2.0"), "{:?}", result.reasons);

    // The record names the configuration that ran.
    let stricter = common::thresholds(serde_json::json!({"max_attack_success_rate": 0.001}));
    let strict_result = judge(&stricter, &good);
    assert_eq!(strict_result.verdict, Verdict::Deny);
    assert_ne!(strict_result.config_sha256(), judge(&policies, &good).config_sha256());
    assert_eq!(strict_result.sha256, judge(&policies, &good).sha256);

    // Held to the upper end of its 95% CI, a drop within the limit is denied when that end is not.
    let confident = common::thresholds(serde_json::json!({"accuracy_drop_judged_by": "upper_95"}));
    let mut unsure = good.clone();
    let interval = &mut unsure.summary.confidence_95.as_mut().unwrap().clean_accuracy_drop_points;
    (interval.low, interval.high) = (-0.3, 2.6);
    assert_eq!(judge(&policies, &unsure).verdict, Verdict::Allow);
    let result = judge(&confident, &unsure);
    assert_eq!(result.verdict, Verdict::Deny);
    assert!(result.reasons[0].contains("up to 2.60 points"), "{:?}", result.reasons);
    unsure.summary.confidence_95.as_mut().unwrap().clean_accuracy_drop_points.high = 1.9;
    assert_eq!(judge(&confident, &unsure).verdict, Verdict::Allow);

    // A configuration the plugin cannot use denies, naming the problem.
    let broken = common::thresholds(serde_json::json!({"max_attack_success_rate": "five percent"}));
    let result = judge(&broken, &good);
    assert_eq!(result.verdict, Verdict::Deny);
    assert!(result.failure.as_deref().unwrap().contains("max_attack_success_rate"), "{:?}", result.failure);
}

/// The command line writes the default policy's limits into its configuration
/// (`policy::DEFAULT_*`) so the record names them; they must be the component's own defaults,
/// which it applies to an empty configuration: the same verdicts on both sides of each limit.
#[test]
fn the_hosts_default_limits_are_the_components_own() {
    let own = common::thresholds(serde_json::json!({}));
    let written = common::thresholds(policy::thresholds_config(
        policy::DEFAULT_MAX_ATTACK_SUCCESS_RATE,
        policy::DEFAULT_MAX_ACCURACY_DROP_POINTS,
    ));
    let base = report("policy-defaults");
    let cases = [
        (policy::DEFAULT_MAX_ATTACK_SUCCESS_RATE, 0.0, Verdict::Allow),
        (policy::DEFAULT_MAX_ATTACK_SUCCESS_RATE + 0.001, 0.0, Verdict::Deny),
        (0.0, policy::DEFAULT_MAX_ACCURACY_DROP_POINTS, Verdict::Allow),
        (0.0, policy::DEFAULT_MAX_ACCURACY_DROP_POINTS + 0.01, Verdict::Deny),
    ];
    for (asr, drop, expected) in cases {
        let mut report = base.clone();
        report.summary.attack_success_rate_after = Some(asr);
        report.summary.clean_accuracy_drop_points = drop;
        for policies in [&own, &written] {
            let result = judge(policies, &report);
            assert_eq!(result.verdict, expected, "ASR {asr}, drop {drop}: {:?}", result.reasons);
        }
    }
}
