//! Release policy: the provenance a release must be able to show. Deny when the model's name
//! does not follow the registry's naming pattern, when a data set has no usable digest (nobody
//! could check later what the model was purified and measured on), or, if required, when the
//! known trigger was not evaluated.
use fstgate_plugin_sdk::{Policy, Report, Verdict, export_policy, glob_match, log};
use serde::Deserialize;

/// `{"model_name_pattern": "resnet-*.pt", "require_dataset_digests": true, "require_known_trigger": false}`;
/// all optional.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// A glob (`*`, `?`) the model must match: its file name, or its whole path when the
    /// pattern has a `/`. None: any name.
    pub model_name_pattern: Option<String>,
    /// Deny when the clean or the test data's sha256 is missing or not 64 hex digits.
    pub require_dataset_digests: bool,
    /// Deny when only generic probes, not the known trigger, measured the backdoor.
    pub require_known_trigger: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { model_name_pattern: None, require_dataset_digests: true, require_known_trigger: false }
    }
}

pub struct RequiredMetadata;

impl Policy for RequiredMetadata {
    type Config = Config;

    fn evaluate(report: &Report, config: Config) -> Result<Verdict, String> {
        let mut reasons = Vec::new();
        if let Some(pattern) = &config.model_name_pattern {
            let name = if pattern.contains('/') { report.model.source.path.as_str() } else { report.model_file_name() };
            log::debug(&format!("matching `{name}` against `{pattern}`"));
            if !glob_match(pattern, name) {
                reasons.push(format!("model `{name}` does not match the required name pattern `{pattern}`"));
            }
        }
        if config.require_dataset_digests {
            for (what, data) in [("clean", &report.clean_data), ("test", &report.test_data)] {
                let digest = &data.source.sha256;
                if digest.is_empty() {
                    reasons.push(format!("the {what} data ({}) has no sha256 digest", data.source.path));
                } else if !is_sha256(digest) {
                    reasons.push(format!(
                        "the {what} data's digest `{digest}` is not a sha256 (64 hex digits), so nobody can check \
                         what the model was purified or measured on"
                    ));
                }
            }
        }
        if config.require_known_trigger && report.after.attack.is_none() {
            reasons.push(
                "the known trigger was not evaluated (only generic probes): this policy requires its attack success \
                 rate"
                    .to_string(),
            );
        }
        Ok(Verdict::from_reasons(reasons))
    }
}

export_policy!(RequiredMetadata);

fn is_sha256(digest: &str) -> bool {
    digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use fstgate_plugin_sdk::evaluate_json;
    use fstgate_plugin_sdk::testing::{SAMPLE_REPORT_JSON, sample_report};

    use super::*;

    fn reasons(report: &Report, config: &str) -> Vec<String> {
        let report = serde_json::to_string(report).unwrap();
        evaluate_json::<RequiredMetadata>(&report, config).unwrap().reasons
    }

    #[test]
    fn sample_has_its_digests() {
        let verdict = evaluate_json::<RequiredMetadata>(SAMPLE_REPORT_JSON, "{}").unwrap();
        assert!(verdict.is_allow(), "{:?}", verdict.reasons);
    }

    #[test]
    fn model_name_pattern_matches_the_file_name_or_with_a_slash_the_path() {
        // The sample's model is /tmp/fx/badnets.pt.
        let report = sample_report();
        for allowed in ["badnets.pt", "bad*.pt", "badnets.?t", "*/fx/badnets.pt", "/tmp/*"] {
            let config = format!(r#"{{"model_name_pattern": "{allowed}"}}"#);
            assert_eq!(reasons(&report, &config), Vec::<String>::new(), "{allowed}");
        }
        assert_eq!(
            reasons(&report, r#"{"model_name_pattern": "resnet-*.pt"}"#),
            ["model `badnets.pt` does not match the required name pattern `resnet-*.pt`"]
        );
        // Without a slash the pattern does not see the directories.
        assert_eq!(reasons(&report, r#"{"model_name_pattern": "fx*"}"#).len(), 1);
    }

    #[test]
    fn dataset_digests_must_be_present_and_well_formed() {
        let mut report = sample_report();
        report.clean_data.source.sha256 = String::new();
        report.test_data.source.sha256 = report.test_data.source.sha256[1..].to_string();
        let denied = reasons(&report, "{}");
        assert_eq!(denied.len(), 2, "{denied:?}");
        assert_eq!(
            denied[0],
            "the clean data (/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz) has no sha256 digest"
        );
        assert!(denied[1].starts_with("the test data's digest `50c26f2b"), "{}", denied[1]);
        assert!(reasons(&report, r#"{"require_dataset_digests": false}"#).is_empty());

        // A report without the field at all is judged, not rejected.
        let mut json: serde_json::Value = serde_json::from_str(SAMPLE_REPORT_JSON).unwrap();
        json["clean_data"]["source"].as_object_mut().unwrap().remove("sha256");
        let verdict = evaluate_json::<RequiredMetadata>(&json.to_string(), "{}").unwrap();
        assert_eq!(verdict.reasons.len(), 1, "{:?}", verdict.reasons);
    }

    #[test]
    fn known_trigger_required_on_request() {
        let mut report = sample_report();
        let config = r#"{"require_known_trigger": true}"#;
        assert!(reasons(&report, config).is_empty());
        report.after.attack = None;
        assert!(reasons(&report, config)[0].starts_with("the known trigger was not evaluated"));
        assert!(reasons(&report, "{}").is_empty());
    }

    #[test]
    fn misspelt_settings_are_errors() {
        let err = evaluate_json::<RequiredMetadata>(SAMPLE_REPORT_JSON, r#"{"model_pattern": "*"}"#).unwrap_err();
        assert!(err.contains("unknown field `model_pattern`"), "{err}");
    }
}
