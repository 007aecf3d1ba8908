//! `fstgate demo`: the whole job on the embedded default, on real data, from a backdoored model
//! to a verified release.
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use fstgate::attestation::{self, PublicKey};
use fstgate::device::{self, DeviceChoice};
use fstgate::jobs::{Job, JobState};
use fstgate::pipeline::Pipeline;
use fstgate::report::Report;

use crate::args::{PipelineArgs, PluginLimitArgs, runtime};
use crate::purify::{print_decision, print_table};

/// Runs the watcher until the job of `model` (in `source`) is final, then stops it.
async fn watch_until_final(pipeline: &Arc<Pipeline>, source: &str, model: &str) -> anyhow::Result<Job> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn({
        let pipeline = pipeline.clone();
        async move { pipeline.watch(stopped).await }
    });
    let job = loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let jobs = pipeline.jobs().jobs().await?;
        if let Some(job) = jobs.into_iter().find(|j| j.source == source && j.model == model && j.state.is_final()) {
            break job;
        }
        anyhow::ensure!(!watcher.is_finished(), "the watcher stopped before {model} was processed");
    };
    let _ = stop.send(true);
    watcher.await?;
    Ok(job)
}

pub(crate) fn run(work: PathBuf, data: PathBuf, limits: PluginLimitArgs, quiet: bool) -> anyhow::Result<bool> {
    let started = std::time::Instant::now();
    let layout = fstgate::demo::Layout::new(&work);
    let progress = fstgate::progress::for_terminal(quiet);
    let device = device::resolve(DeviceChoice::Auto)?;
    if !layout.backdoored.is_file() {
        println!(
            "backdoored model: training it with the lab (BadNets, 1% poisoned, Fashion-MNIST; once per work directory)"
        );
    }
    fstgate::demo::backdoor(&layout, &data, device, progress.as_ref())?;
    fstgate::demo::configure(&layout, &data)?;
    let registered = fstgate::demo::register(&layout)?;
    println!("registered {} in {}; watching", registered.model, layout.registry.display());
    let (pipeline, job) = runtime()?.block_on(async {
        let pipeline = PipelineArgs { config: layout.config.clone(), limits }.pipeline(false).await?;
        let job = watch_until_final(&pipeline, fstgate::demo::SOURCE_NAME, &registered.model).await?;
        anyhow::Ok((pipeline, job))
    })?;
    let outcome_key = match (job.state, &job.outcome) {
        (JobState::Released | JobState::Denied, Some(key)) => key.clone(),
        _ => anyhow::bail!("job {} {}: {}", job.id, job.state.as_str(), job.last_error.unwrap_or_default()),
    };
    let outcome_path =
        pipeline.publisher().local_path(&outcome_key).context("the demo publishes to a local directory")?;
    let outcome: fstgate::publication::Outcome = serde_json::from_slice(&std::fs::read(&outcome_path)?)
        .with_context(|| format!("{} is not an outcome", outcome_path.display()))?;
    let files = fstgate::fsutil::parent_dir(&outcome_path).join(&outcome.files_under);
    let report: Report = serde_json::from_slice(&std::fs::read(files.join(attestation::REPORT_FILE))?)?;
    println!();
    print_table(&report);
    print_decision(&report.decision);
    let released = report.decision.releasable;
    let verified = if released {
        let key = PublicKey::from_file(&layout.public_key)?;
        let verified = attestation::verify(&files, &key, Some(&registered.upload.join("model.pt")), None)?;
        format!(
            "verified: {} files signed by {}, made from the registered model",
            verified.files.len(),
            key.fingerprint()
        )
    } else {
        "denied: the model was not published (its report and signed statements were)".to_string()
    };
    println!("{verified}\n");
    let names: Vec<&str> = outcome.files.iter().map(|f| f.name.as_str()).collect();
    let rows = [
        ("configuration", layout.config.clone(), String::new()),
        ("registered model", registered.upload.join("model.pt"), "(then the _SUCCESS marker)".into()),
        ("job store", layout.state.join("jobs.sqlite"), format!("(job {}: {})", job.id, job.state.as_str())),
        ("policy plugins", layout.policies.clone(), String::new()),
        ("signing key", layout.private_key.clone(), format!("(public: {})", layout.public_key.display())),
        ("outcome", outcome_path.clone(), String::new()),
        ("published files", files.clone(), names.join(", ")),
        ("report for people", files.join(fstgate::report::layout::REPORT_HTML_FILE), "(open in a browser)".into()),
    ];
    for (what, path, note) in rows {
        println!("{}", format!("{what:<18} {} {note}", path.display()).trim_end());
    }
    println!("\nverify again: fstgate verify {} --public-key {}", files.display(), layout.public_key.display());
    println!("demo finished in {:.0} s", started.elapsed().as_secs_f64());
    Ok(released)
}
