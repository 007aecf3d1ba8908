//! The job store: one job per (source, model, artifact sha256). A job goes
//! queued -> running -> released | denied | failed. A running job holds a lease that its worker
//! renews; a worker that dies (kill -9) stops renewing, and once the lease expires another worker
//! (or the restarted one) claims the job again. Publication is idempotent (see `publication`), so
//! a retried job is never published twice.
//!
//! One trait, [`JobStore`], two backends with the same semantics (and the same test suite,
//! tests/job_store.rs): SQLite in the state directory, the embedded default for one machine, and
//! PostgreSQL, which several watchers on several machines share as one queue (claims with
//! `FOR UPDATE SKIP LOCKED`, leases on the server's clock). Both version their schema and
//! migrate it when they open.
mod postgres;
mod sqlite;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use postgres::PostgresJobs;
pub use sqlite::SqliteJobs;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker (or for its back-off after a transient error).
    Queued,
    /// Claimed by a worker that holds its lease.
    Running,
    /// Purified, judged and published as released.
    Released,
    /// Purified and judged, published as denied.
    Denied,
    /// Could not be judged: a permanent error, or every attempt failed.
    Failed,
}

impl JobState {
    /// Every state, in the order of a job's life.
    pub const ALL: [JobState; 5] =
        [JobState::Queued, JobState::Running, JobState::Released, JobState::Denied, JobState::Failed];

    /// The name stored in the job store and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Released => "released",
            JobState::Denied => "denied",
            JobState::Failed => "failed",
        }
    }

    /// The state a stored name stands for.
    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether nothing more happens to a job in this state.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Released | JobState::Denied | JobState::Failed)
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Job {
    /// The store's id for the job.
    pub id: i64,
    /// The configured source the upload came from.
    pub source: String,
    /// `<name>/<version>` within the source.
    pub model: String,
    /// The sha256 of the uploaded artifact (one job per source, model and artifact).
    pub artifact_sha256: String,
    /// The source's marker key the upload was found by.
    pub marker: String,
    /// Where the job is in its life.
    pub state: JobState,
    /// Claims so far (each counts as an attempt, including one whose worker died).
    pub attempts: u32,
    /// The last error, if an attempt failed.
    pub last_error: Option<String>,
    /// Where the outcome was published.
    pub outcome: Option<String>,
}

/// A new upload to queue: what identifies its job, and the marker version that found it.
#[derive(Debug, Clone, Copy)]
pub struct NewJob<'a> {
    /// The configured source.
    pub source: &'a str,
    /// `<name>/<version>` within the source.
    pub model: &'a str,
    /// The artifact's sha256.
    pub artifact_sha256: &'a str,
    /// The marker key the upload was found by.
    pub marker: &'a str,
    /// The marker's version (ETag, registry timestamp): the polling cursor records it as seen.
    pub marker_version: &'a str,
}

/// The queue as an autoscaler sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueStats {
    /// Queued jobs due now (not waiting for a back-off).
    pub due: u64,
    /// Seconds the longest-waiting due job has waited since it became due; 0 when none.
    pub oldest_due_age_seconds: f64,
}

/// Where the job store lives. Without `url`: SQLite at `<state_dir>/jobs.sqlite`, for watchers
/// on one machine. With a `postgres://` URL: one queue for watchers on any number of machines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobStoreConfig {
    /// `postgres://USER@HOST:PORT/DATABASE`, optionally `?sslmode=disable|prefer|require`
    /// (default prefer); no password in it.
    pub url: Option<String>,
    /// The password, as `env:NAME` (secrets stay out of configuration files).
    pub password: Option<String>,
    /// PEM file of the CA certificates that sign the server's TLS certificate; default: the
    /// platform's trusted roots.
    pub ca_file: Option<PathBuf>,
    /// Connections this process keeps to the server (default 4).
    pub pool_size: Option<usize>,
}

impl JobStoreConfig {
    /// Checks what can be checked without connecting: a PostgreSQL URL without a password in
    /// it, a password given as `env:NAME`, and PostgreSQL settings only with a PostgreSQL URL.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let Some(url) = self.url.as_deref() else {
            return match (&self.password, &self.ca_file, self.pool_size) {
                (None, None, None) => Ok(()),
                _ => Err("job_store: password, ca_file and pool_size need a postgres:// url".into()),
            };
        };
        let shown = crate::error::redact_url(url);
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(format!(
                "job_store url {shown}: give a postgres:// URL, or none for SQLite in the state directory"
            ));
        }
        let parsed = url.parse::<tokio_postgres::Config>().map_err(|e| format!("job_store url {shown}: {e}"))?;
        if parsed.get_password().is_some() {
            return Err(format!(
                "job_store url {shown} holds a password: give it as `password = \"env:NAME\"` instead"
            ));
        }
        if self.password.as_deref().is_some_and(|p| !p.starts_with("env:")) {
            return Err("job_store: `password` must be `env:NAME` (secrets stay out of configuration files)".into());
        }
        if self.pool_size == Some(0) {
            return Err("job_store: pool_size must be at least 1".into());
        }
        Ok(())
    }
}

/// A source's last successful listing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollTime {
    /// When, in seconds since the Unix epoch (the store's clock: PostgreSQL's for a shared store).
    pub at: f64,
    /// How long ago, on the same clock: what a health check compares, so a watcher whose own
    /// clock is off does not read a fresh poll by another watcher as stale, or a stale one as
    /// fresh.
    pub age_seconds: f64,
}

/// Seconds since the Unix epoch: this process's clock (the SQLite store's, and the pipeline's
/// metrics). The PostgreSQL store keeps its leases on the server's clock instead, which every
/// watcher shares.
pub fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// What every job store does. Each operation is atomic: two watchers sharing a store never
/// claim the same job, and a job and its marker are recorded together.
#[async_trait::async_trait]
pub trait JobStore: Send + Sync {
    /// Where the store is, for messages (no credentials).
    fn location(&self) -> &str;

    /// Whether this version of a marker was already turned into a job (the polling cursor: an
    /// upload is downloaded and hashed once, not on every poll).
    async fn marker_seen(&self, source: &str, marker: &str, version: &str) -> Result<bool>;

    /// Where the source's next poll starts (see `Polled::cursor`).
    async fn cursor(&self, source: &str) -> Result<Option<String>>;

    /// Records where the source's next poll starts.
    async fn set_cursor(&self, source: &str, cursor: &str) -> Result<()>;

    /// Records a webhook delivery id; false if it was already recorded (a replay). Ids older
    /// than `keep` are forgotten: by then their timestamps are outside the accepted window.
    async fn first_delivery(&self, source: &str, delivery_id: &str, keep: Duration) -> Result<bool>;

    /// Queues a job unless one exists for the same (source, model, sha256), and records the
    /// marker as seen, in one transaction. Returns the new job's id, or None for a duplicate.
    async fn enqueue(&self, job: NewJob<'_>) -> Result<Option<i64>>;

    /// Claims the oldest job that is due: queued and past its back-off, or running under a
    /// lease that expired (its worker died). The claim counts as an attempt, so a job whose
    /// every attempt kills its worker (a crash, an OOM kill) stops at `max_attempts`: a running
    /// job whose lease expired after its last attempt is failed here instead of claimed again.
    async fn claim(&self, owner: &str, lease: Duration, max_attempts: u32) -> Result<Option<Job>>;

    /// Extends the lease of a job this owner holds; false if it no longer holds it.
    async fn renew(&self, id: i64, owner: &str, lease: Duration) -> Result<bool>;

    /// Records a final state.
    async fn finish(&self, id: i64, state: JobState, outcome: Option<&str>, error: Option<&str>) -> Result<()>;

    /// Puts a job back in the queue after a transient error, due again after `delay`.
    async fn retry_later(&self, id: i64, error: &str, delay: Duration) -> Result<()>;

    /// One job.
    async fn get(&self, id: i64) -> Result<Option<Job>>;

    /// Every job, oldest first.
    async fn jobs(&self) -> Result<Vec<Job>>;

    /// Jobs by state, every state present (zero included).
    async fn counts(&self) -> Result<BTreeMap<JobState, u64>>;

    /// Due jobs and how long the oldest has waited (the autoscaling signal).
    async fn queue(&self) -> Result<QueueStats>;

    /// When each source was last listed successfully, and how long ago by the store's clock.
    async fn last_polls(&self) -> Result<BTreeMap<String, PollTime>>;

    /// Records a successful listing of `source` now.
    async fn record_poll(&self, source: &str) -> Result<()>;

    /// Takes (or keeps) the right to list `source` for `hold`, unless another owner holds it:
    /// watchers sharing a store then list each source once per interval between them, not
    /// once each. A holder that dies loses it when `hold` runs out. True: list it now.
    async fn claim_poll(&self, source: &str, owner: &str, hold: Duration) -> Result<bool>;

    /// Gives up `owner`'s poll leases (a watcher stopping cleanly), so the next watcher lists
    /// the sources at once instead of after the lease.
    async fn release_polls(&self, owner: &str) -> Result<()>;
}

/// Opens the configured job store, creating or migrating its schema: PostgreSQL when
/// `config.url` names it, else SQLite in `state_dir`.
pub async fn open(config: &JobStoreConfig, state_dir: &Path) -> Result<Arc<dyn JobStore>> {
    config.validate().map_err(|reason| Error::JobStore {
        location: config.url.as_deref().map_or_else(|| "configuration".into(), crate::error::redact_url),
        reason,
    })?;
    match config.url {
        None => Ok(Arc::new(SqliteJobs::open(&state_dir.join("jobs.sqlite"))?)),
        Some(_) => Ok(Arc::new(PostgresJobs::connect(config).await?)),
    }
}

/// Counts by state with every state present, from (state name, count) rows.
fn counts_by_state(rows: impl IntoIterator<Item = (String, u64)>) -> BTreeMap<JobState, u64> {
    let mut counts: BTreeMap<JobState, u64> = JobState::ALL.into_iter().map(|s| (s, 0)).collect();
    for (state, n) in rows {
        *counts.entry(JobState::parse(&state).unwrap_or(JobState::Failed)).or_default() += n;
    }
    counts
}
