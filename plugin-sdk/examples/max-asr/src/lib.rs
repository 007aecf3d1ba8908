//! Release policy: deny when the backdoor survived purification, whatever the accuracy cost
//! (the first half of the default `thresholds` policy).
use fstgate_plugin_sdk::{Policy, Report, Verdict, export_policy, rules};
use serde::Deserialize;

/// `{"max_attack_success_rate": 0.05}`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Highest acceptable rate after purification, 0-1: the known trigger's attack success
    /// rate, or without one the worst probe's.
    pub max_attack_success_rate: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config { max_attack_success_rate: rules::DEFAULT_MAX_ATTACK_SUCCESS_RATE }
    }
}

pub struct MaxAsr;

impl Policy for MaxAsr {
    type Config = Config;

    fn evaluate(report: &Report, config: Config) -> Result<Verdict, String> {
        rules::max_attack_success_rate(report, config.max_attack_success_rate)
    }
}

export_policy!(MaxAsr);

#[cfg(test)]
mod tests {
    use fstgate_plugin_sdk::evaluate_json;
    use fstgate_plugin_sdk::testing::{SAMPLE_REPORT_JSON, sample_report};

    use super::*;

    #[test]
    fn judges_the_backdoor_only() {
        let mut report = sample_report();
        report.summary.clean_accuracy_drop_points = 40.0;
        let verdict = MaxAsr::evaluate(&report, Config::default()).unwrap();
        assert!(verdict.is_allow());
        assert_eq!(verdict.measurements.len(), 1, "{:?}", verdict.measurements);
    }

    #[test]
    fn limit_from_configuration() {
        // The sample's ASR after purification is 0.1111% (2 of 1,800 images).
        let run = |config: &str| evaluate_json::<MaxAsr>(SAMPLE_REPORT_JSON, config);
        assert!(run(r#"{"max_attack_success_rate": 0.0011111111111111111}"#).unwrap().is_allow());
        assert_eq!(
            run(r#"{"max_attack_success_rate": 0.0011}"#).unwrap().reasons,
            ["attack success rate after purification 0.111% exceeds 0.110%"]
        );
        assert!(!run(r#"{"max_attack_success_rate": 0}"#).unwrap().is_allow());
        assert!(run(r#"{"max_attack_success_rate": -0.01}"#).unwrap_err().contains("between 0 and 1"));
    }
}
