//! The SDK's report types must stay in step with the report fstgate writes.
//!
//! tests/fixtures/report.json is a report.json from a real fstgate run, with every optional part
//! present (known attack, probes, split, head bias). Parts the report gained after that run were
//! filled in by hand from its own figures: each probe's `images` (the test set is class-balanced)
//! and `summary.confidence_95`, whose intervals follow from the run's rates by fstgate's own
//! formulas, while its paired counts are made up to match the run's two accuracies (the run
//! predates them; only the types are tested here); each candidate's `validation_drop_points_95`
//! is null, as in a report written before fstgate measured it. schemas/policy-input.schema.json, the schema
//! of what a plugin receives (report.json without `decision`), is generated from fstgate's own
//! types and kept current by `fstgate schema --check`. A field added to, renamed in or removed
//! from the report therefore fails one of these tests until the SDK (and the fixture) follow.
use fstgate_plugin_sdk::Report;
use serde_json::{Map, Value};

/// The one part of report.json a plugin does not get: the gate's own decision.
const NOT_MIRRORED: &str = "decision";

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/report.json")).unwrap();
    let mut value: Value = serde_json::from_str(&text).unwrap();
    value.as_object_mut().unwrap().remove(NOT_MIRRORED).expect("the fixture is a whole report.json");
    value
}

fn schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/policy-input.schema.json");
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The SDK's reading of the fixture, written back.
fn round_trip() -> Value {
    let report: Report = serde_json::from_value(fixture()).expect("the SDK reads a real report");
    serde_json::to_value(&report).unwrap()
}

/// Re-serialising gives back the fixture exactly, subtree by subtree: every field of every
/// mirrored type, with its value, and nothing the report lacks.
#[test]
fn sdk_types_round_trip_a_real_report() {
    let (fixture, sdk) = (fixture(), round_trip());
    let mut differences = Vec::new();
    diff("report", &fixture, &sdk, &mut differences);
    assert!(differences.is_empty(), "SDK types differ from the report fstgate writes:\n{}", differences.join("\n"));
}

/// Every property the schema names, in every definition the report reaches, is in the fixture
/// and in the SDK's types; and neither has a property the schema lacks.
#[test]
fn sdk_types_cover_every_schema_property() {
    let mut missing = Vec::new();
    check_against_schema("fixture", &fixture(), &mut missing);
    check_against_schema("SDK", &round_trip(), &mut missing);
    assert!(missing.is_empty(), "out of step with schemas/policy-input.schema.json:\n{}", missing.join("\n"));
}

fn check_against_schema(what: &str, report: &Value, out: &mut Vec<String>) {
    let schema = schema();
    check(what, "report", &schema, &schema["$defs"], report, out);
}

/// Field-level differences between two JSON values, by path.
fn diff(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for key in keys(e).union(&keys(a)) {
                match (e.get(*key), a.get(*key)) {
                    (Some(ev), Some(av)) => diff(&format!("{path}.{key}"), ev, av, out),
                    (Some(_), None) => out.push(format!("{path}.{key}: in the report, not in the SDK type")),
                    (None, _) => out.push(format!("{path}.{key}: written by the SDK type, not in the report")),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff(&format!("{path}[{i}]"), ev, av, out);
            }
        }
        _ if expected != actual => out.push(format!("{path}: report has {expected}, SDK gives {actual}")),
        _ => {}
    }
}

fn keys(map: &Map<String, Value>) -> std::collections::BTreeSet<&str> {
    map.keys().map(String::as_str).collect()
}

/// Walks `value` along `schema`: at each object, its keys must be the schema's properties.
fn check(what: &str, path: &str, schema: &Value, defs: &Value, value: &Value, out: &mut Vec<String>) {
    let schema = resolve(schema, defs, value);
    if let (Some(properties), Some(object)) = (schema["properties"].as_object(), value.as_object()) {
        let (named, present) = (keys(properties), keys(object));
        for key in named.difference(&present) {
            out.push(format!("{what}: {path}.{key} is in the schema but missing"));
        }
        for key in present.difference(&named) {
            out.push(format!("{what}: {path}.{key} is not in the schema"));
        }
        for key in named.intersection(&present) {
            check(what, &format!("{path}.{key}"), &properties[*key], defs, &object[*key], out);
        }
    } else if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            check(what, &format!("{path}[{i}]"), items, defs, item, out);
        }
    }
}

/// Follows `$ref`, and for `anyOf` (an optional type) the branch that is not `null`.
fn resolve<'a>(schema: &'a Value, defs: &'a Value, value: &Value) -> &'a Value {
    if let Some(name) = schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
        return resolve(&defs[name], defs, value);
    }
    match schema["anyOf"].as_array() {
        Some(branches) if !value.is_null() => {
            let branch = branches.iter().find(|b| b["type"] != "null").expect("an anyOf with a non-null branch");
            resolve(branch, defs, value)
        }
        _ => schema,
    }
}

/// The checks above must be able to fail: a stale field in either place is reported.
#[test]
fn checks_detect_drift() {
    let mut renamed = fixture();
    let summary = renamed["summary"].as_object_mut().unwrap();
    let value = summary.remove("worst_probe_rate_after").unwrap();
    summary.insert("worst_probe_rate".into(), value);
    let mut differences = Vec::new();
    diff("report", &renamed, &round_trip(), &mut differences);
    for expected in [
        "report.summary.worst_probe_rate: in the report, not in the SDK type",
        "report.summary.worst_probe_rate_after: written by the SDK type, not in the report",
    ] {
        assert!(differences.iter().any(|d| d == expected), "{expected:?} not in {differences:?}");
    }
    let mut missing = Vec::new();
    check_against_schema("fixture", &renamed, &mut missing);
    for expected in [
        "fixture: report.summary.worst_probe_rate_after is in the schema but missing",
        "fixture: report.summary.worst_probe_rate is not in the schema",
    ] {
        assert!(missing.iter().any(|m| m == expected), "{expected:?} not in {missing:?}");
    }
}
