//! The files of a purified model directory, by name: what the job writes, the attestations sign,
//! report.html links to and publication copies. Names only, so every stage can agree on them
//! without importing the stage that writes each file.

/// The purified model (TorchScript).
pub const MODEL_FILE: &str = "model.pt";
/// The evaluated, judged report.
pub const REPORT_FILE: &str = "report.json";
/// report.json rendered for people.
pub const REPORT_HTML_FILE: &str = "report.html";
/// The signed SLSA provenance.
pub const PROVENANCE_FILE: &str = "provenance.intoto.json";
/// The signed SLSA verification summary (the decision).
pub const DECISION_FILE: &str = "decision.intoto.json";
/// The OpenSSF model_signing bundle over every other file.
pub const SIGNATURE_FILE: &str = "model.sig";
