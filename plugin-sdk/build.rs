//! Generates the SDK's report types from schemas/policy-input.schema.json, the schema of what a
//! policy receives, which fstgate writes from its own types (`fstgate schema`): the SDK keeps no
//! hand copy of the report. The rules are in build/report_types.rs; src/report.rs includes the
//! result.
use std::path::PathBuf;

#[path = "build/report_types.rs"]
mod report_types;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let schema_path = manifest.join("../schemas/policy-input.schema.json");
    println!("cargo::rerun-if-changed={}", schema_path.display());
    println!("cargo::rerun-if-changed=build/report_types.rs");
    let text = std::fs::read_to_string(&schema_path)
        .unwrap_or_else(|e| panic!("cannot read the report's schema {}: {e}", schema_path.display()));
    let schema = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the report's schema {} is not JSON: {e}", schema_path.display()));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("report_types.rs");
    std::fs::write(&out, report_types::render(&schema))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
