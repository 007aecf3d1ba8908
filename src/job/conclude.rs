//! The trusted stage: decide (the release policies), render report.html, attest (sign), and
//! stage the output directory atomically. Never runs the model's code: it reads the evaluated
//! report and the purified model's bytes.

use std::path::Path;

use crate::attestation;
use crate::data;
use crate::error::{Error, Result};
use crate::report::html;
use crate::report::layout::{MODEL_FILE, REPORT_FILE, REPORT_HTML_FILE};
use crate::report::{OutputFile, Report};

use super::{Evaluated, PurifyJob};

/// The trusted stage: decides on the evaluated report with the job's policies, writes report.json
/// and report.html beside the purified model in `staging`, attests when the job has a key, and
/// renames `staging` to the job's output directory. The model's digest is computed here, from the
/// file, never taken from the evaluation.
pub fn conclude(job: &PurifyJob, evaluated: Evaluated, staging: tempfile::TempDir) -> Result<Report> {
    let Evaluated { mut report, examples } = evaluated;
    decide(job, &mut report, staging.path())?;
    render(job, &report, &examples, staging.path())?;
    if let Some(key) = &job.signing_key {
        let name = job.out.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy());
        attestation::attest(staging.path(), &name, &report, &report.decision, key)?;
    }
    stage(job, staging)?;
    Ok(report)
}

/// Records the purified model's digest and the policies' decision in the report, and writes
/// report.json.
fn decide(job: &PurifyJob, report: &mut Report, dir: &Path) -> Result<()> {
    report.output = OutputFile { file: MODEL_FILE.into(), sha256: data::sha256_file(&dir.join(MODEL_FILE))? };
    let policies = job.policies.as_ref().ok_or_else(|| Error::Settings("the job has no release policies".into()))?;
    report.decision = policies.evaluate(report);
    crate::fsutil::write_json(&dir.join(REPORT_FILE), report)
}

/// Writes report.html.
fn render(job: &PurifyJob, report: &Report, examples: &[html::TriggeredExample], dir: &Path) -> Result<()> {
    let name = job.name.clone().unwrap_or_else(|| job.model.display().to_string());
    let key_id = job.signing_key.as_ref().map(|k| k.public().fingerprint());
    let page = html::render(report, &name, examples, key_id.as_deref());
    let page_path = dir.join(REPORT_HTML_FILE);
    std::fs::write(&page_path, page).map_err(|e| Error::Write { path: page_path, source: e })
}

/// Renames the complete staging directory to the job's output directory (removed on failure).
fn stage(job: &PurifyJob, staging: tempfile::TempDir) -> Result<()> {
    let staged = staging.keep();
    std::fs::rename(&staged, &job.out).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        Error::Write { path: job.out.clone(), source: e }
    })
}
