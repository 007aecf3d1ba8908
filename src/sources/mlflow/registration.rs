//! Recording an outcome in the MLflow registry the model came from, after the outcome is
//! published to the destination store (so the registry never shows a model without its
//! attestations). A released model becomes a new version of `register_as` whose files are a run's
//! `model/` (an MLflow pytorch model) with the published files verbatim under `fstgate/` (what
//! `fstgate verify` and `model_signing verify` check); the alias moves to it. A denied model is
//! not registered: the source version gets the verdict and the reasons as tags. Recording is
//! idempotent: a version already registered for the same upload (tag `fstgate.artifact_sha256`)
//! is reused, so a retried job never registers twice.
use std::path::Path;

use super::{MlflowSource, PURIFIED_FROM_TAG, split_model};
use crate::error::{Error, Result};
use crate::publication::{Outcome, Verdict};
use crate::report::layout::{MODEL_FILE, REPORT_FILE};
use crate::report::{Report, Summary};

/// Tag holding the verdict, `release` or `deny`, on the source version (and `release` on a
/// purified version).
pub const VERDICT_TAG: &str = "fstgate.verdict";
/// Tag holding the upload's artifact sha256 on the purified version registered for it.
pub const ARTIFACT_TAG: &str = "fstgate.artifact_sha256";
/// The libtorch fstgate is built against (tch 0.24), which wrote the archive.
const LIBTORCH_VERSION: &str = "2.11.0";
/// MLflow refuses longer tag values.
const MAX_TAG_VALUE: usize = 5000;

/// What the registry now shows for an upload.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// `<registered model>/<version>` of the purified version, when released.
    pub purified_version: Option<String>,
}

/// `files` holds the outcome's files (as `Publisher::publish` wrote or `Publisher::download`
/// fetched them).
pub async fn record(source: &MlflowSource, outcome_key: &str, outcome: &Outcome, files: &Path) -> Result<Recorded> {
    let client = source.client();
    let (name, version) = split_model(&outcome.model)?;
    let report_path = files.join(REPORT_FILE);
    let report: Report = serde_json::from_slice(&std::fs::read(&report_path).map_err(|e| Error::io(&report_path, e))?)?;
    let mut tags = summary_tags(&report.summary);
    tags.push(("fstgate.outcome".into(), outcome_key.into()));
    let purified_version = match outcome.verdict {
        Verdict::Deny => {
            let reasons = truncate(outcome.reasons.join("; "));
            for (key, value) in [(VERDICT_TAG.to_string(), "deny".to_string()), ("fstgate.reasons".into(), reasons)]
                .into_iter()
                .chain(tags)
            {
                client.set_version_tag(name, version, &key, &value).await?;
            }
            None
        }
        Verdict::Release => {
            let target = source.settings().register_as.replace("{name}", name);
            let purified = match registered(source, &target, outcome).await? {
                Some(existing) => existing,
                None => register(source, &target, outcome, files, &tags).await?,
            };
            client.set_alias(&target, &source.settings().alias, &purified).await?;
            let pointer = format!("{target}/{purified}");
            for (key, value) in
                [(VERDICT_TAG.to_string(), "release".to_string()), ("fstgate.purified_version".into(), pointer.clone())]
                    .into_iter()
                    .chain(tags)
            {
                client.set_version_tag(name, version, &key, &value).await?;
            }
            Some(pointer)
        }
    };
    Ok(Recorded { purified_version })
}

/// The version of `target` already registered for this upload (the same source version and
/// bytes: two versions may hold the same bytes), if any.
async fn registered(source: &MlflowSource, target: &str, outcome: &Outcome) -> Result<Option<String>> {
    // The sha256 is hex, safe inside the filter's quotes; names are compared here.
    let filter = format!("tags.`{ARTIFACT_TAG}` = '{}'", outcome.artifact_sha256);
    let mut found = None;
    source
        .client()
        .visit_versions(Some(&filter), |v| {
            if v.name == target && v.tag(PURIFIED_FROM_TAG) == Some(outcome.model.as_str()) {
                found = Some(v.version.clone());
            }
            found.is_none()
        })
        .await?;
    Ok(found)
}

/// Uploads the files to a new run and registers them as a new version of `target`.
async fn register(
    source: &MlflowSource,
    target: &str,
    outcome: &Outcome,
    files: &Path,
    summary_tags: &[(String, String)],
) -> Result<String> {
    let client = source.client();
    client.ensure_registered_model(target).await?;
    let experiment = client.experiment_id(&source.settings().experiment).await?;
    let run = client.create_run(&experiment, &format!("purify {}", outcome.model)).await?;
    let root = source.artifact_root(&run.artifact_uri)?;
    for file in &outcome.files {
        let path = files.join(&file.name);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if file.name == MODEL_FILE {
            root.upload("model/data/model.pth", bytes.clone()).await?;
        }
        root.upload(&format!("fstgate/{}", file.name), bytes).await?;
    }
    root.upload("model/MLmodel", mlmodel(outcome).into_bytes()).await?;
    let model_sha256 = outcome.files.iter().find(|f| f.name == MODEL_FILE).map(|f| f.sha256.clone());
    let mut tags = vec![
        (PURIFIED_FROM_TAG.to_string(), outcome.model.clone()),
        (ARTIFACT_TAG.into(), outcome.artifact_sha256.clone()),
        (VERDICT_TAG.into(), "release".into()),
        ("fstgate.attestation".into(), format!("{}/fstgate", run.artifact_uri)),
    ];
    tags.extend(model_sha256.map(|sha| ("fstgate.model_sha256".to_string(), sha)));
    tags.extend(summary_tags.iter().cloned());
    let description = format!(
        "{} purified by fstgate (Feature Shift Tuning) and released by its policies; signed attestations in {}/fstgate",
        outcome.model, run.artifact_uri
    );
    let created =
        client.create_version(target, &format!("{}/model", run.artifact_uri), &run.run_id, &tags, &description).await?;
    client.finish_run(&run.run_id).await?;
    Ok(created.version)
}

/// An MLflow pytorch model around the purified TorchScript archive (`torch.load` hands a
/// TorchScript archive to `torch.jit.load`).
fn mlmodel(outcome: &Outcome) -> String {
    format!(
        "# Purified by fstgate from {} (upload sha256 {}).\nartifact_path: model\nflavors:\n  pytorch:\n    model_data: data\n    pytorch_version: {}\n",
        outcome.model, outcome.artifact_sha256, LIBTORCH_VERSION
    )
}

fn summary_tags(summary: &Summary) -> Vec<(String, String)> {
    let mut tags = vec![
        ("fstgate.clean_accuracy_before".to_string(), format!("{:.4}", summary.clean_accuracy_before)),
        ("fstgate.clean_accuracy_after".into(), format!("{:.4}", summary.clean_accuracy_after)),
    ];
    for (key, value) in [
        ("fstgate.attack_success_rate_before", summary.attack_success_rate_before),
        ("fstgate.attack_success_rate_after", summary.attack_success_rate_after),
        ("fstgate.worst_probe_rate_before", summary.worst_probe_rate_before),
        ("fstgate.worst_probe_rate_after", summary.worst_probe_rate_after),
    ] {
        tags.extend(value.map(|v| (key.to_string(), format!("{v:.4}"))));
    }
    tags
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_TAG_VALUE {
        let mut end = MAX_TAG_VALUE - 3;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}
