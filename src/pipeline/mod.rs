//! The pipeline step: poll the sources, queue each new upload once, purify and evaluate it,
//! apply the policies, and publish the outcome with its attestations. `Pipeline::run_once` is
//! the one-shot gate for CI; `Pipeline::watch` is the daemon.
pub mod config;
pub mod gate_report;
pub mod metrics;
pub mod webhooks;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tch::Device;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::attestation::SigningKey;
use crate::data::DataSpec;
use crate::error::{Error, Result};
use crate::evaluation::{self, Trigger};
use crate::failpoint::Failpoint;
use crate::job::{self, AttackInput, PurifyJob, Sample};
use crate::jobs::{Job, JobState, JobStore, NewJob};
use crate::policy::PolicySet;
use crate::publication::{Published, Publisher, Verdict};
use crate::purification::{Settings, Strength};
use crate::report::Summary;
use crate::sources::{Source, Upload};
use crate::training::Silent;
pub use config::{KeyConfig, PipelineConfig};
pub use gate_report::{GateJob, GateReport};

/// The gate's pipeline: its sources, destination, job store, policies and signing key.
pub struct Pipeline {
    config: PipelineConfig,
    sources: Vec<Box<dyn Source>>,
    /// Each source's webhook secret, read from the environment at start-up.
    webhook_secrets: Vec<Option<String>>,
    /// Wakes the watcher when a webhook queued a job.
    wakeup: Notify,
    /// Webhook follow-ups (a lookup or a listing each) that may run at once; a delivery beyond
    /// them is answered 503 before it is recorded, so the sender retries and polling reconciles.
    followups: Arc<tokio::sync::Semaphore>,
    publisher: Publisher,
    jobs: Arc<dyn JobStore>,
    policies: Arc<PolicySet>,
    signing_key: SigningKey,
    device: Device,
    /// Identifies this process's leases.
    owner: String,
    durations: metrics::JobDurations,
    deliveries: metrics::DeliveryCounts,
    /// Seconds since the Unix epoch when this process opened the pipeline.
    started_at: f64,
}

/// What processing one job came to.
struct Processed {
    state: JobState,
    outcome_key: Option<String>,
    reasons: Vec<String>,
    summary: Option<Summary>,
    error: Option<String>,
    /// The purified version registered in an MLflow source.
    registered_version: Option<String>,
}

/// Errors in the input itself: retrying cannot help.
fn is_permanent(error: &Error) -> bool {
    matches!(
        error,
        Error::Model { .. }
            | Error::Head(_)
            | Error::Data { .. }
            | Error::DataModelMismatch(_)
            | Error::Settings(_)
            | Error::Trigger { .. }
            | Error::NonFinite(_)
            | Error::Config { .. }
            | Error::Attestation(_)
            | Error::Key(_)
            | Error::Json(_)
            // The worker ran the model: a model that loops, exhausts memory or crashes does so
            // again on a retry.
            | Error::Worker(_)
    )
}

impl Pipeline {
    /// Opens the stores and the job store (migrating its schema). `policies` are compiled by
    /// the caller, which owns the plugin cache and limits.
    pub async fn new(
        config: PipelineConfig,
        policies: Arc<PolicySet>,
        signing_key: SigningKey,
        device: Device,
    ) -> Result<Self> {
        let sources = config.sources.iter().map(crate::sources::open).collect::<Result<Vec<_>>>()?;
        let webhook_secrets = vec![None; config.sources.len()];
        let publisher = Publisher::open(&config.destination, signing_key.clone())?;
        let jobs = crate::jobs::open(&config.job_store, &config.state_dir).await?;
        let owner = format!("{}-{}", std::process::id(), hex::encode(rand::random::<[u8; 6]>()));
        let started_at = crate::jobs::now();
        Ok(Pipeline {
            config,
            sources,
            webhook_secrets,
            wakeup: Notify::new(),
            followups: Arc::new(tokio::sync::Semaphore::new(webhooks::MAX_FOLLOWUPS)),
            publisher,
            jobs,
            policies,
            signing_key,
            device,
            owner,
            durations: metrics::JobDurations::default(),
            deliveries: metrics::DeliveryCounts::default(),
            started_at,
        })
    }

    /// Reads the webhook secrets of the sources that name one (`webhook_secret_env`), for a
    /// watcher that serves webhooks: a named variable that is not set is an error now, not a
    /// refused delivery later. Without this, every source refuses webhooks (one-shot gates).
    pub fn enable_webhooks(&mut self) -> Result<()> {
        for (index, source) in self.config.sources.iter().enumerate() {
            if let Some(var) = &source.webhook_secret_env {
                let refuse = |why: &str| Error::Config {
                    path: self.config.state_dir.clone(),
                    reason: format!("source `{}`: environment variable {var} (the webhook secret) {why}", source.name),
                };
                let secret = std::env::var(var).map_err(|_| refuse("is not set"))?;
                // An empty secret would make every signature and every bearer token trivial.
                if secret.trim().is_empty() {
                    return Err(refuse("is empty"));
                }
                self.webhook_secrets[index] = Some(secret);
            }
        }
        Ok(())
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// The job store.
    pub fn jobs(&self) -> &dyn JobStore {
        &*self.jobs
    }

    /// The destination's publisher.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    fn lease(&self) -> Duration {
        Duration::from_secs_f64(self.config.lease_seconds)
    }

    /// On a GPU, one job at a time per device; on the CPU, the configured concurrency.
    fn concurrency(&self) -> usize {
        if self.device.is_cuda() { 1 } else { self.config.concurrency }
    }

    /// Lists every source once and queues the uploads not seen before. A source that cannot be
    /// listed is reported and skipped; the others are still polled.
    pub async fn poll(&self) -> Vec<Error> {
        self.poll_sources(false).await
    }

    /// `poll`, as one of the watchers sharing the job store: a source another watcher holds
    /// the poll lease of (it listed it within the interval) is left to it.
    async fn poll_sources(&self, shared: bool) -> Vec<Error> {
        let hold = Duration::from_secs_f64(self.config.poll_interval_seconds);
        let mut errors = Vec::new();
        for source in &self.sources {
            if shared {
                match self.jobs.claim_poll(source.name(), &self.owner, hold).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(source = %source.name(), "cannot take the poll lease: {e}");
                        errors.push(e);
                        continue;
                    }
                }
            }
            match self.poll_source(source.as_ref()).await {
                Ok(queued) if queued > 0 => tracing::info!(source = %source.name(), queued, "new uploads"),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(source = %source.name(), "poll failed: {e}");
                    errors.push(e);
                }
            }
        }
        errors
    }

    /// One source: every upload is tried, so one that cannot be fetched now does not hold
    /// back the others; the first such error is returned after the rest were queued, and the
    /// cursor stays where it was so that the failed upload is listed again next time.
    async fn poll_source(&self, source: &dyn Source) -> Result<usize> {
        let cursor = self.jobs.cursor(source.name()).await?;
        let polled = source.poll(cursor.as_deref()).await?;
        let mut queued = 0;
        let mut failed = None;
        for upload in polled.uploads {
            match self.enqueue(source, &upload).await {
                Ok(new) => queued += usize::from(new),
                Err(e) => {
                    tracing::warn!(source = %source.name(), model = %upload.model, "upload not queued: {e}");
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if let Some(cursor) = polled.cursor {
            self.jobs.set_cursor(source.name(), &cursor).await?;
        }
        self.jobs.record_poll(source.name()).await?;
        Ok(queued)
    }

    /// Queues an upload not seen before; true if a new job was queued.
    async fn enqueue(&self, source: &dyn Source, upload: &Upload) -> Result<bool> {
        if self.jobs.marker_seen(source.name(), &upload.marker, &upload.marker_version).await? {
            return Ok(false);
        }
        // The job's identity includes the bytes: download once to hash them.
        let root = self.work_root()?;
        let scratch = tempfile::Builder::new().prefix("poll-").tempdir_in(&root).map_err(|e| Error::io(&root, e))?;
        let artifact =
            match source.download(&upload.model, &scratch.path().join("upload"), self.config.max_upload_bytes).await {
                Ok(artifact) => artifact.sha256,
                // An error in the upload itself (unreadable, too large): queued anyway, so the failure
                // is recorded against the upload instead of failing every poll.
                Err(e) if is_permanent(&e) => {
                    tracing::warn!(model = %upload.model, "{e}");
                    format!("unreadable:{}", upload.marker_version)
                }
                Err(e) => return Err(e),
            };
        let queued = self
            .jobs
            .enqueue(NewJob {
                source: source.name(),
                model: &upload.model,
                artifact_sha256: &artifact,
                marker: &upload.marker,
                marker_version: &upload.marker_version,
            })
            .await?;
        if let Some(id) = queued {
            tracing::info!(job = id, source = source.name(), model = %upload.model, sha256 = %artifact, "queued");
        }
        Ok(queued.is_some())
    }

    fn work_root(&self) -> Result<PathBuf> {
        let dir = self.config.state_dir.join("work");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(dir)
    }

    /// One pass for CI: poll, then process every job that is due, and report on them.
    pub async fn run_once(self: &Arc<Self>) -> GateReport {
        let poll_errors = self.poll().await.iter().map(ToString::to_string).collect();
        let mut processed = Vec::new();
        let mut running = JoinSet::new();
        loop {
            self.start_due_jobs(&mut running).await;
            match running.join_next().await {
                Some(Ok(job)) => processed.push(job),
                Some(Err(e)) => tracing::error!("a job task panicked: {e}"),
                None => break,
            }
        }
        GateReport::new(poll_errors, processed)
    }

    /// Claims due jobs and starts them until the concurrency limit is reached.
    async fn start_due_jobs(self: &Arc<Self>, running: &mut JoinSet<GateJob>) {
        while running.len() < self.concurrency() {
            match self.jobs.claim(&self.owner, self.lease(), self.config.max_attempts).await {
                Ok(Some(job)) => {
                    let pipeline = self.clone();
                    running.spawn(async move { pipeline.process(job).await });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!("{e}");
                    break;
                }
            }
        }
    }

    /// The daemon: poll every interval and process jobs, until `shutdown` turns true; then stop
    /// claiming and let the running jobs finish (their leases cover a forced exit).
    pub async fn watch(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let interval = Duration::from_secs_f64(self.config.poll_interval_seconds);
        let mut running = JoinSet::new();
        let mut next_poll = tokio::time::Instant::now();
        while !*shutdown.borrow() {
            if tokio::time::Instant::now() >= next_poll {
                self.poll_sources(true).await;
                next_poll = tokio::time::Instant::now() + interval;
            }
            self.start_due_jobs(&mut running).await;
            tokio::select! {
                Some(done) = running.join_next(), if !running.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!("a job task panicked: {e}");
                    }
                }
                _ = tokio::time::sleep_until(next_poll) => {}
                _ = self.wakeup.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
        if !running.is_empty() {
            tracing::info!(jobs = running.len(), "shutting down: finishing the running jobs");
        }
        while running.join_next().await.is_some() {}
        if let Err(e) = self.jobs.release_polls(&self.owner).await {
            tracing::warn!("cannot give up the poll leases (another watcher lists after they run out): {e}");
        }
    }

    /// Processes a claimed job to a final state, or back to the queue after a transient error.
    async fn process(self: Arc<Self>, job: Job) -> GateJob {
        let id = job.id;
        tracing::info!(job = id, model = %job.model, attempt = job.attempts, "processing");
        Failpoint::AfterClaim.reached();
        // Renew the lease while the job runs, so no other worker takes it over.
        let heartbeat = {
            let (jobs, owner, lease) = (self.jobs.clone(), self.owner.clone(), self.lease());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    match jobs.renew(id, &owner, lease).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(job = id, "lost the job's lease"),
                        Err(e) => tracing::warn!(job = id, "cannot renew the lease: {e}"),
                    }
                }
            })
        };
        let started = std::time::Instant::now();
        let result = self.clone().try_process(&job).await;
        heartbeat.abort();
        let processed = match result {
            Ok(processed) => processed,
            Err(e) if is_permanent(&e) || job.attempts >= self.config.max_attempts => Processed {
                state: JobState::Failed,
                outcome_key: None,
                reasons: Vec::new(),
                summary: None,
                error: Some(e.to_string()),
                registered_version: None,
            },
            Err(e) => {
                let delay = Duration::from_secs(5u64 << job.attempts.min(7));
                tracing::warn!(job = id, "attempt {} failed, retrying in {delay:?}: {e}", job.attempts);
                if let Err(store) = self.jobs.retry_later(id, &e.to_string(), delay).await {
                    tracing::error!(job = id, "{store}");
                }
                return GateJob::from_job(&job, JobState::Queued, None, Vec::new(), None, Some(e.to_string()));
            }
        };
        self.durations.record(processed.state, started.elapsed());
        Failpoint::BeforeRecord.reached();
        if let Err(e) =
            self.jobs.finish(id, processed.state, processed.outcome_key.as_deref(), processed.error.as_deref()).await
        {
            tracing::error!(job = id, "{e}");
        }
        match &processed.error {
            Some(error) => tracing::error!(job = id, model = %job.model, "failed: {error}"),
            None => tracing::info!(job = id, model = %job.model, state = processed.state.as_str(), "done"),
        }
        GateJob {
            registered_version: processed.registered_version,
            ..GateJob::from_job(
                &job,
                processed.state,
                processed.outcome_key,
                processed.reasons,
                processed.summary,
                processed.error,
            )
        }
    }

    async fn try_process(self: Arc<Self>, job: &Job) -> Result<Processed> {
        let source = self.sources.iter().find(|s| s.name() == job.source).ok_or_else(|| {
            Error::Settings(format!("job {} comes from source `{}`, no longer configured", job.id, job.source))
        })?;
        let work = self.work_root()?.join(format!("job-{}", job.id));
        if work.exists() {
            std::fs::remove_dir_all(&work).map_err(|e| Error::io(&work, e))?;
        }
        // Published by an earlier attempt (which crashed before recording it) or another watcher.
        let (key, outcome, summary) = match self.publisher.outcome(&job.model, &job.artifact_sha256).await? {
            Some((key, outcome)) => (key, outcome, None),
            None => {
                let (published, summary) = self.purify_and_publish(source.as_ref(), job, &work).await?;
                if let Published::AlreadyThere { key, .. } = &published {
                    tracing::info!(
                        job = job.id,
                        "{key} was already published by another attempt; this one is discarded"
                    );
                }
                (published.key().to_string(), published.outcome().clone(), Some(summary))
            }
        };
        let registered_version = source.record_outcome(&self.publisher, &key, &outcome, &work).await?;
        if work.exists() {
            std::fs::remove_dir_all(&work).map_err(|e| Error::io(&work, e))?;
        }
        let state = match outcome.verdict {
            Verdict::Release => JobState::Released,
            Verdict::Deny => JobState::Denied,
        };
        Ok(Processed {
            state,
            outcome_key: Some(key),
            reasons: outcome.reasons,
            summary,
            error: None,
            registered_version,
        })
    }

    /// Downloads, purifies, evaluates, judges and publishes the job's upload.
    async fn purify_and_publish(
        &self,
        source: &dyn Source,
        job: &Job,
        work: &std::path::Path,
    ) -> Result<(Published, Summary)> {
        let rule = self.config.data_for(&job.model).ok_or_else(|| {
            Error::Settings(format!("no [[data]] rule matches model `{}`: add one to the configuration", job.model))
        })?;
        let artifact = source.download(&job.model, &work.join("upload"), self.config.max_upload_bytes).await?;
        if artifact.sha256 != job.artifact_sha256 {
            return Err(Error::model(
                &artifact.model_path,
                format!(
                    "upload {} changed after it was queued (sha256 {} now, {} queued); the new upload is a new job",
                    job.model, artifact.sha256, job.artifact_sha256
                ),
            ));
        }
        let mut purify = self.purify_job(rule, artifact.model_path, work.join("out"))?;
        purify.name = Some(format!("{}:{}", job.source, job.model));
        purify.registry = Some(source.registry_source(&job.model));
        let report = if self.config.worker.isolate {
            crate::worker::run(&purify, &self.config.worker, self.concurrency(), &work.join("worker")).await?
        } else {
            tokio::task::spawn_blocking(move || job::run(&purify, &Silent))
                .await
                .map_err(|e| Error::Settings(format!("the purification task ended abnormally: {e}")))??
        };
        let published = self
            .publisher
            .publish(&job.source, &job.model, &job.artifact_sha256, &work.join("out"), &report.decision)
            .await?;
        Ok((published, report.summary))
    }

    /// Records the outcome in the MLflow registry the model came from, from the published files
    /// (fetched again, so a retry after a crash records exactly what was published).
    fn purify_job(&self, rule: &config::DataRule, model: PathBuf, out: PathBuf) -> Result<PurifyJob> {
        let (settings, strength) = match &self.config.purification.settings {
            Some(settings) => (settings.clone(), Strength::Fixed),
            None => (
                Settings::automatic_base(),
                Strength::Auto(Box::new(self.config.purification.auto.clone().unwrap_or_default())),
            ),
        };
        let attack = match (&rule.trigger, rule.target_class) {
            (Some(trigger), Some(target)) => Some((AttackInput::Trigger(trigger.parse::<Trigger>()?), target)),
            _ => None,
        };
        let sample = |count: Option<i64>| count.map_or(Sample::All, Sample::Count);
        Ok(PurifyJob {
            model,
            name: None,
            registry: None,
            head: None,
            clean_data: rule.clean.parse::<DataSpec>()?,
            clean_sample: sample(rule.clean_count),
            test_data: rule.test.parse::<DataSpec>()?,
            test_sample: sample(rule.test_count),
            input: rule.input.clone(),
            settings,
            strength,
            attack,
            probes: evaluation::standard_probes(),
            device: self.device,
            out,
            policies: Some(self.policies.clone()),
            signing_key: Some(self.signing_key.clone()),
        })
    }
}
