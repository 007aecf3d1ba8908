//! The pipeline's commands: `gate` (one pass, for CI), `watch` (the daemon) and `jobs`.
use std::path::{Path, PathBuf};

use fstgate::jobs::JobState;
use fstgate::pipeline::PipelineConfig;

use crate::args::{PipelineArgs, runtime};

pub(crate) fn gate(
    pipeline: PipelineArgs,
    json: Option<PathBuf>,
    sarif: Option<PathBuf>,
    summary: Option<PathBuf>,
) -> anyhow::Result<bool> {
    let report = runtime()?.block_on(async { anyhow::Ok(pipeline.pipeline(false).await?.run_once().await) })?;
    match json.as_deref() {
        Some(path) if path == Path::new("-") => println!("{}", serde_json::to_string_pretty(&report)?),
        Some(path) => fstgate::fsutil::write_json(path, &report)?,
        None => {}
    }
    if let Some(path) = &sarif {
        fstgate::fsutil::write_json(path, &report.sarif())?;
    }
    if let Some(path) = &summary {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        file.write_all(report.markdown().as_bytes())?;
    }
    if json.as_deref() != Some(Path::new("-")) {
        eprint!("{}", report.markdown());
    }
    match report.exit_code() {
        0 => Ok(true),
        1 => Ok(false),
        _ => anyhow::bail!(
            "{} job(s) did not finish and {} source(s) could not be polled",
            report.jobs.iter().filter(|j| !matches!(j.state, JobState::Released | JobState::Denied)).count(),
            report.poll_errors.len()
        ),
    }
}

pub(crate) fn watch(pipeline: PipelineArgs) -> anyhow::Result<bool> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let pipeline = pipeline.pipeline(true).await?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            for signal in 0.. {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                if signal > 0 {
                    tracing::warn!("second signal: exiting now; the running job will be retried");
                    std::process::exit(130);
                }
                tracing::info!("signal received: finishing the running job, then stopping");
                let _ = stop.send(true);
            }
            Ok::<(), std::io::Error>(())
        });
        use fstgate::pipeline::metrics::{Endpoints, serve};
        let (listen, metrics_listen) = (pipeline.config().listen.clone(), pipeline.config().metrics_listen.clone());
        if let Some(address) = &listen {
            let listener = tokio::net::TcpListener::bind(address).await?;
            let endpoints = Endpoints { webhooks: true, observability: metrics_listen.is_none() };
            let what = if endpoints.observability { "webhooks, /healthz and /metrics" } else { "webhooks" };
            tracing::info!("serving {what} on {}", listener.local_addr()?);
            tokio::spawn(serve(listener, pipeline.clone(), endpoints));
        }
        if let Some(address) = &metrics_listen {
            let listener = tokio::net::TcpListener::bind(address).await?;
            tracing::info!("serving /healthz and /metrics on {}", listener.local_addr()?);
            tokio::spawn(serve(listener, pipeline.clone(), Endpoints { webhooks: false, observability: true }));
        }
        tracing::info!("watching");
        pipeline.watch(stopped).await;
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(true)
}

pub(crate) fn jobs(pipeline: PipelineArgs, json: bool) -> anyhow::Result<bool> {
    let config = PipelineConfig::load(&pipeline.config)?;
    let jobs =
        runtime()?.block_on(async { fstgate::jobs::open(&config.job_store, &config.state_dir).await?.jobs().await })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(true);
    }
    for job in jobs {
        println!(
            "{:>5}  {:<8}  {}:{}  attempts {}  {}",
            job.id,
            job.state.as_str(),
            job.source,
            job.model,
            job.attempts,
            job.outcome.or(job.last_error).unwrap_or_default()
        );
    }
    Ok(true)
}
