//! Release policy: deny when purification cost too much clean accuracy, whatever the backdoor
//! figures (the second half of the default `thresholds` policy).
use fstgate_plugin_sdk::{Policy, Report, Verdict, export_policy, rules};
use serde::Deserialize;

/// `{"max_accuracy_drop_points": 2.0, "accuracy_drop_judged_by": "measured"}`; both optional.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Largest acceptable drop (before - after), in percentage points.
    pub max_accuracy_drop_points: f64,
    /// The drop's figure held to that limit: `"measured"` (the default) or `"upper_95"`, the
    /// upper end of its 95% confidence interval.
    pub accuracy_drop_judged_by: rules::DropFigure,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_accuracy_drop_points: rules::DEFAULT_MAX_ACCURACY_DROP_POINTS,
            accuracy_drop_judged_by: rules::DropFigure::Measured,
        }
    }
}

pub struct MaxAccuracyDrop;

impl Policy for MaxAccuracyDrop {
    type Config = Config;

    fn evaluate(report: &Report, config: Config) -> Result<Verdict, String> {
        rules::max_accuracy_drop_by(report, config.max_accuracy_drop_points, config.accuracy_drop_judged_by)
    }
}

export_policy!(MaxAccuracyDrop);

#[cfg(test)]
mod tests {
    use fstgate_plugin_sdk::evaluate_json;
    use fstgate_plugin_sdk::testing::{SAMPLE_REPORT_JSON, sample_report};

    use super::*;

    #[test]
    fn judges_the_accuracy_cost_only() {
        let mut report = sample_report();
        report.summary.attack_success_rate_after = Some(0.9);
        report.after.worst_probe = None;
        let verdict = MaxAccuracyDrop::evaluate(&report, Config::default()).unwrap();
        assert!(verdict.is_allow());
        assert_eq!(verdict.measurements.len(), 1, "{:?}", verdict.measurements);
        // Purification that improves accuracy is a negative drop.
        report.summary.clean_accuracy_drop_points = -2.0;
        assert!(
            MaxAccuracyDrop::evaluate(&report, Config { max_accuracy_drop_points: 0.0, ..Config::default() })
                .unwrap()
                .is_allow()
        );
    }

    #[test]
    fn limit_from_configuration() {
        // The sample's drop is 1.4 points (84.8% -> 83.4%), 0.40 to 2.42 at 95% on its 2,000 images.
        let run = |config: &str| evaluate_json::<MaxAccuracyDrop>(SAMPLE_REPORT_JSON, config);
        assert!(run(r#"{"max_accuracy_drop_points": 1.4}"#).unwrap().is_allow());
        assert_eq!(
            run(r#"{"max_accuracy_drop_points": 1.39}"#).unwrap().reasons,
            ["clean accuracy dropped 1.40 points (limit 1.39; 95% CI 0.40 to 2.42)"]
        );
        // The same limits, held to the upper end of the drop's 95% CI.
        let upper =
            |limit: f64| format!(r#"{{"max_accuracy_drop_points": {limit}, "accuracy_drop_judged_by": "upper_95"}}"#);
        let verdict = run(&upper(2.5)).unwrap();
        assert!(verdict.is_allow(), "{:?}", verdict.reasons);
        assert!(verdict.measurement("clean_accuracy_drop_points_upper_95").is_some_and(|u| (u - 2.42).abs() < 0.005));
        assert!(run(&upper(2.0)).unwrap().reasons[0].contains("up to 2.42 points"));
        assert!(run(r#"{"max_accuracy_drop_points": "3"}"#).unwrap_err().contains("invalid type"));
    }
}
