//! Write fstgate release policies in Rust, as sandboxed WebAssembly components.
//!
//! A policy is one rule a compliance team applies to every purified model: fstgate runs it on
//! the evaluation report (report.json) and releases the model only when every policy allows it.
//! The plugin is a component of the `fstgate:policy` world (wit/policy.wit): it exports
//! `evaluate(report, config) -> result<verdict, string>` and imports nothing but `log`, so it
//! cannot touch files, the network or the clock. A plugin that returns `Err`, panics, or runs
//! past the host's fuel, time or memory limits denies the release.
//!
//! # Writing a policy
//!
//! A `cdylib` crate that depends on this one, implements [`Policy`] and exports it:
//!
//! ```
//! use fstgate_plugin_sdk::{Policy, Report, Verdict, export_policy};
//! use serde::Deserialize;
//!
//! /// The configuration, from the JSON file given with the plugin (`{}` when none).
//! #[derive(Deserialize)]
//! #[serde(default, deny_unknown_fields)]
//! struct Config {
//!     min_clean_accuracy: f64,
//! }
//!
//! impl Default for Config {
//!     fn default() -> Self {
//!         Config { min_clean_accuracy: 0.9 }
//!     }
//! }
//!
//! struct MinAccuracy;
//!
//! impl Policy for MinAccuracy {
//!     type Config = Config;
//!
//!     fn evaluate(report: &Report, config: Config) -> Result<Verdict, String> {
//!         let accuracy = report.after.clean_accuracy;
//!         let verdict = if accuracy < config.min_clean_accuracy {
//!             Verdict::deny(format!(
//!                 "clean accuracy after purification {:.1}% is below {:.1}%",
//!                 100.0 * accuracy,
//!                 100.0 * config.min_clean_accuracy
//!             ))
//!         } else {
//!             Verdict::allow()
//!         };
//!         Ok(verdict.with_measurement("clean_accuracy_after", accuracy))
//!     }
//! }
//!
//! export_policy!(MinAccuracy);
//! ```
//!
//! Cargo.toml:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! fstgate-plugin-sdk = { path = "…/plugin-sdk" }
//! serde = { version = "1", features = ["derive"] }
//!
//! [dev-dependencies]
//! fstgate-plugin-sdk = { path = "…/plugin-sdk", features = ["testing"] }
//! ```
//!
//! [`rules`] holds the default policy's rules for reuse, [`glob_match`] matches names, [`log`]
//! writes to the gate's log, and [`Report`]'s helpers answer the usual questions (e.g.
//! [`Report::backdoor_rate_after`]). `#[serde(deny_unknown_fields)]` on the configuration turns a
//! misspelt setting into an error (and so a deny) instead of a silently ignored one.
//!
//! # Testing it
//!
//! `evaluate` is plain Rust: unit-test it on the host with `cargo test`, starting from the real
//! report in [`testing::sample_report`] (feature `testing`) and changing the figures under test.
//! [`evaluate_json`] runs the same path as the gate, JSON parsing included.
//!
//! # Building and trying it
//!
//! ```sh
//! rustup target add wasm32-unknown-unknown
//! cargo build --profile plugin --target wasm32-unknown-unknown -p my-policy
//! cargo run -p fstgate-componentize -- \
//!     target/wasm32-unknown-unknown/plugin/my_policy.wasm my-policy.wasm
//! fstgate policy eval my-policy.wasm --report out/report.json [--config my-policy.json]
//! fstgate purify … --policy my-policy.wasm@my-policy.json
//! ```
//!
//! The `plugin` profile (fstgate's Cargo.toml) optimises for size, aborts on panic and strips
//! symbols; scripts/build-plugins.sh builds the examples this way, reproducibly.
#![warn(missing_docs)]

mod glob;
pub mod log;
mod report;
pub mod rules;
#[cfg(any(test, doc, feature = "testing"))]
pub mod testing;
mod verdict;

/// The world's generated bindings; [`export_policy!`] uses them.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "policy",
        pub_export_macro: true,
        default_bindings_module: "fstgate_plugin_sdk::bindings",
        additional_derives: [PartialEq],
    });
}

pub use bindings::{Decision, Measurement, Verdict};
pub use glob::glob_match;
pub use report::*;
use serde::de::DeserializeOwned;

/// A release policy. Implement it on a unit struct and export it with [`export_policy!`].
pub trait Policy {
    /// The plugin's configuration. `{}` (what the gate passes when none was given) and empty
    /// text give `Default`; other JSON is deserialised, and a failure denies with the error.
    type Config: DeserializeOwned + Default;

    /// Judges one report. `Err` means the policy could not judge (e.g. a configuration it cannot
    /// use); the gate then denies with that message.
    fn evaluate(report: &Report, config: Self::Config) -> Result<Verdict, String>;
}

/// What the exported `evaluate` does: parses the report and the configuration, then calls
/// `P::evaluate`. Public so that host-side tests can run the whole path.
pub fn evaluate_json<P: Policy>(report: &str, config: &str) -> Result<Verdict, String> {
    // The version first, so that a future report gets told apart from a malformed one.
    #[derive(serde::Deserialize)]
    struct Header {
        schema: String,
    }
    let header: Header =
        serde_json::from_str(report).map_err(|e| format!("the report is not an fstgate report.json: {e}"))?;
    if header.schema != REPORT_SCHEMA {
        return Err(format!("the report's schema is `{}`; this plugin reads {REPORT_SCHEMA}", header.schema));
    }
    let report: Report = parse(report)
        .map_err(|e| format!("the report is not an {REPORT_SCHEMA} report.json this plugin can read: {e}"))?;
    let config = config.trim();
    let empty = config.is_empty()
        || serde_json::from_str::<serde_json::Value>(config)
            .is_ok_and(|v| v.is_null() || v.as_object().is_some_and(|o| o.is_empty()));
    let config = if empty {
        P::Config::default()
    } else {
        parse(config).map_err(|e| format!("invalid plugin configuration: {e}"))?
    };
    P::evaluate(&report, config)
}

/// Parses JSON; an error names the field it is about (`max_attack_success_rate: invalid type ...`).
fn parse<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, String> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| match e.path().to_string().as_str() {
        "." => e.inner().to_string(),
        path => format!("{path}: {}", e.inner()),
    })
}

/// Exports a [`Policy`] as the component's `evaluate`. Use it once, in the plugin crate.
#[macro_export]
#[rustfmt::skip] // rustfmt misindents the `with_types_in` invocation below
macro_rules! export_policy {
    ($policy:ty) => {
        const _: () = {
            struct Export;

            impl $crate::bindings::Guest for Export {
                fn evaluate(
                    report: ::std::string::String,
                    config: ::std::string::String,
                ) -> ::core::result::Result<$crate::Verdict, ::std::string::String> {
                    $crate::evaluate_json::<$policy>(&report, &config)
                }
            }

            $crate::bindings::export!(Export with_types_in $crate::bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        limit: f64,
    }

    /// Echoes its configuration as a measurement.
    struct Echo;

    impl Policy for Echo {
        type Config = Config;
        fn evaluate(_: &Report, config: Config) -> Result<Verdict, String> {
            Ok(Verdict::allow().with_measurement("limit", config.limit))
        }
    }

    fn limit(config: &str) -> Result<Option<f64>, String> {
        evaluate_json::<Echo>(testing::SAMPLE_REPORT_JSON, config).map(|v| v.measurement("limit"))
    }

    #[test]
    fn empty_configuration_is_default_even_without_serde_default() {
        for empty in ["", "  ", "{}", " { } ", "null"] {
            assert_eq!(limit(empty), Ok(Some(0.0)), "{empty:?}");
        }
        assert_eq!(limit(r#"{"limit": 2.5}"#), Ok(Some(2.5)));
    }

    #[test]
    fn bad_configuration_is_an_error_naming_the_problem() {
        let err = limit(r#"{"limt": 1}"#).unwrap_err();
        assert!(err.starts_with("invalid plugin configuration: ") && err.contains("unknown field `limt`"), "{err}");
        assert!(limit("{not json").unwrap_err().starts_with("invalid plugin configuration"));
        let err = limit(r#"{"limit": "high"}"#).unwrap_err();
        assert!(err.starts_with("invalid plugin configuration: limit: invalid type"), "{err}");
    }

    #[test]
    fn bad_report_is_an_error_naming_the_problem() {
        let run = |report: &str| evaluate_json::<Echo>(report, "{}").unwrap_err();
        assert!(run("[]").starts_with("the report is not an fstgate report.json"));
        assert!(run("{}").contains("missing field `schema`"));
        let mut report: serde_json::Value = serde_json::from_str(testing::SAMPLE_REPORT_JSON).unwrap();
        report["summary"].as_object_mut().unwrap().remove("clean_accuracy_drop_points");
        let err = run(&report.to_string());
        assert!(err.starts_with("the report is not an fstgate.report/v1 report.json this plugin can read"), "{err}");
        assert!(err.contains("missing field `clean_accuracy_drop_points`"), "{err}");
        // A future report, even one shaped differently, is named as such.
        report["schema"] = "fstgate.report/v2".into();
        assert_eq!(
            run(&report.to_string()),
            "the report's schema is `fstgate.report/v2`; this plugin reads fstgate.report/v1"
        );
    }

    #[test]
    fn backdoor_rate_prefers_the_known_trigger_then_the_evidence_then_the_worst_probe() {
        let mut report = testing::sample_report();
        let rate = report.backdoor_rate_after().unwrap();
        assert_eq!((rate.rate(), rate.measurement_name()), (0.0011111111111111111, "attack_success_rate_after"));
        assert!(rate.describe().contains("badnets:size=4,pos=br,value=1 (target class 0)"), "{}", rate.describe());
        report.summary.attack_success_rate_after = None;
        let evidence = report.strength_search.as_ref().unwrap().evidence.clone().unwrap();
        let rate = report.backdoor_rate_after().unwrap();
        assert_eq!((rate.rate(), rate.measurement_name()), (evidence.residual_push, "evidence_residual_push_after"));
        report.strength_search.as_mut().unwrap().evidence = None;
        let rate = report.backdoor_rate_after().unwrap();
        assert_eq!((rate.rate(), rate.measurement_name()), (0.4022222222222222, "worst_probe_rate_after"));
        report.after.worst_probe = None;
        assert_eq!(report.backdoor_rate_after(), None);
    }

    #[test]
    fn model_file_name_is_the_last_path_component() {
        let mut report = testing::sample_report();
        assert_eq!(report.model_file_name(), "badnets.pt");
        report.model.source.path = r"C:\models\mlflow-model\".into();
        assert_eq!(report.model_file_name(), "mlflow-model");
        report.model.source.path = "plain.pt".into();
        assert_eq!(report.model_file_name(), "plain.pt");
    }
}
