//! The job store: one job per (source, model, artifact sha256), in SQLite. A job goes
//! queued -> running -> released | denied | failed. A running job holds a lease that its worker
//! renews; a worker that dies (kill -9) stops renewing, and once the lease expires another worker
//! (or the restarted one) claims the job again. Publication is idempotent (see `publication`), so
//! a retried job is never published twice.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Released,
    Denied,
    Failed,
}

impl JobState {
    pub const ALL: [JobState; 5] =
        [JobState::Queued, JobState::Running, JobState::Released, JobState::Denied, JobState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Released => "released",
            JobState::Denied => "denied",
            JobState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_final(self) -> bool {
        matches!(self, JobState::Released | JobState::Denied | JobState::Failed)
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Job {
    pub id: i64,
    pub source: String,
    /// `<name>/<version>` within the source.
    pub model: String,
    pub artifact_sha256: String,
    /// The source's marker key the upload was found by.
    pub marker: String,
    pub state: JobState,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Where the outcome was published.
    pub outcome: Option<String>,
}

pub struct JobStore {
    path: PathBuf,
    db: Mutex<Connection>,
}

/// Seconds since the Unix epoch: the job store's clock, shared with the pipeline's metrics.
pub fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    model TEXT NOT NULL,
    artifact_sha256 TEXT NOT NULL,
    marker TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'released', 'denied', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    outcome TEXT,
    lease_owner TEXT,
    lease_expires REAL,
    not_before REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (source, model, artifact_sha256)
);
CREATE TABLE IF NOT EXISTS seen_markers (
    source TEXT NOT NULL,
    marker TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (source, marker, version)
);
CREATE TABLE IF NOT EXISTS cursors (
    source TEXT PRIMARY KEY,
    cursor TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    source TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (source, delivery_id)
);
CREATE TABLE IF NOT EXISTS polls (
    source TEXT PRIMARY KEY,
    last_success REAL NOT NULL
);
";

const COLUMNS: &str = "id, source, model, artifact_sha256, marker, state, attempts, last_error, outcome";

fn job_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    let state: String = row.get(5)?;
    Ok(Job {
        id: row.get(0)?,
        source: row.get(1)?,
        model: row.get(2)?,
        artifact_sha256: row.get(3)?,
        marker: row.get(4)?,
        state: JobState::parse(&state).unwrap_or(JobState::Failed),
        attempts: row.get(6)?,
        last_error: row.get(7)?,
        outcome: row.get(8)?,
    })
}

impl JobStore {
    /// Opens (creating if needed) the store at `path`. WAL mode lets several processes share it.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let error = |e: rusqlite::Error| Error::JobStore { path: path.to_path_buf(), reason: e.to_string() };
        let db = Connection::open(path).map_err(error)?;
        db.busy_timeout(Duration::from_secs(10)).map_err(error)?;
        db.pragma_update(None, "journal_mode", "WAL").map_err(error)?;
        db.pragma_update(None, "synchronous", "FULL").map_err(error)?;
        db.execute_batch(SCHEMA).map_err(error)?;
        Ok(JobStore { path: path.to_path_buf(), db: Mutex::new(db) })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut db = self.db.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut db).map_err(|e| Error::JobStore { path: self.path.clone(), reason: e.to_string() })
    }

    /// Whether this version of a marker was already turned into a job (the polling cursor: an
    /// upload is downloaded and hashed once, not on every poll).
    pub fn marker_seen(&self, source: &str, marker: &str, version: &str) -> Result<bool> {
        self.with(|db| {
            db.query_row(
                "SELECT 1 FROM seen_markers WHERE source = ?1 AND marker = ?2 AND version = ?3",
                params![source, marker, version],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
        })
    }

    /// Where the source's next poll starts (see `Polled::cursor`).
    pub fn cursor(&self, source: &str) -> Result<Option<String>> {
        self.with(|db| {
            db.query_row("SELECT cursor FROM cursors WHERE source = ?1", params![source], |row| row.get(0)).optional()
        })
    }

    pub fn set_cursor(&self, source: &str, cursor: &str) -> Result<()> {
        self.with(|db| {
            db.execute(
                "INSERT INTO cursors (source, cursor) VALUES (?1, ?2)
                 ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor",
                params![source, cursor],
            )
            .map(drop)
        })
    }

    /// Records a webhook delivery id; false if it was already recorded (a replay). Ids older
    /// than `keep` are forgotten: by then their timestamps are outside the accepted window.
    pub fn first_delivery(&self, source: &str, delivery_id: &str, keep: Duration) -> Result<bool> {
        self.with(|db| {
            let t = now();
            db.execute("DELETE FROM deliveries WHERE received_at < ?1", params![t - keep.as_secs_f64()])?;
            let inserted = db.execute(
                "INSERT OR IGNORE INTO deliveries (source, delivery_id, received_at) VALUES (?1, ?2, ?3)",
                params![source, delivery_id, t],
            )?;
            Ok(inserted == 1)
        })
    }

    /// Queues a job unless one exists for the same (source, model, sha256), and records the
    /// marker as seen, in one transaction. Returns the new job's id, or None for a duplicate.
    pub fn enqueue(
        &self,
        source: &str,
        model: &str,
        artifact_sha256: &str,
        marker: &str,
        marker_version: &str,
    ) -> Result<Option<i64>> {
        self.with(|db| {
            let tx = db.transaction()?;
            let t = now();
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO jobs (source, model, artifact_sha256, marker, state, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5)",
                params![source, model, artifact_sha256, marker, t],
            )?;
            let id = (inserted == 1).then(|| tx.last_insert_rowid());
            tx.execute(
                "INSERT OR IGNORE INTO seen_markers (source, marker, version) VALUES (?1, ?2, ?3)",
                params![source, marker, marker_version],
            )?;
            tx.commit()?;
            Ok(id)
        })
    }

    /// Claims the oldest job that is due: queued and past its back-off, or running under a lease
    /// that expired (its worker died). The claim counts as an attempt, so a job whose every
    /// attempt kills its worker (a crash, an OOM kill) stops at `max_attempts`: a running job
    /// whose lease expired after its last attempt is failed here instead of claimed again.
    pub fn claim(&self, owner: &str, lease: Duration, max_attempts: u32) -> Result<Option<Job>> {
        self.with(|db| {
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let t = now();
            tx.execute(
                "UPDATE jobs SET state = 'failed', lease_owner = NULL, lease_expires = NULL, updated_at = ?1,
                 last_error = 'abandoned: the worker died or was killed during each of its ' || attempts || ' attempts'
                 WHERE state = 'running' AND lease_expires < ?1 AND attempts >= ?2",
                params![t, max_attempts],
            )?;
            let job = tx
                .query_row(
                    &format!(
                        "SELECT {COLUMNS} FROM jobs
                         WHERE (state = 'queued' AND not_before <= ?1) OR (state = 'running' AND lease_expires < ?1)
                         ORDER BY id LIMIT 1"
                    ),
                    params![t],
                    job_from_row,
                )
                .optional()?;
            let Some(mut job) = job else { return Ok(None) };
            tx.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?2, lease_expires = ?3,
                 updated_at = ?4 WHERE id = ?1",
                params![job.id, owner, t + lease.as_secs_f64(), t],
            )?;
            tx.commit()?;
            job.state = JobState::Running;
            job.attempts += 1;
            Ok(Some(job))
        })
    }

    /// Extends the lease of a job this owner holds; false if it no longer holds it.
    pub fn renew(&self, id: i64, owner: &str, lease: Duration) -> Result<bool> {
        self.with(|db| {
            db.execute(
                "UPDATE jobs SET lease_expires = ?3 WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
                params![id, owner, now() + lease.as_secs_f64()],
            )
            .map(|n| n == 1)
        })
    }

    /// Records a final state.
    pub fn finish(&self, id: i64, state: JobState, outcome: Option<&str>, error: Option<&str>) -> Result<()> {
        debug_assert!(state.is_final());
        self.with(|db| {
            db.execute(
                "UPDATE jobs SET state = ?2, outcome = ?3, last_error = COALESCE(?4, last_error), lease_owner = NULL,
                 lease_expires = NULL, updated_at = ?5 WHERE id = ?1",
                params![id, state.as_str(), outcome, error, now()],
            )
            .map(|_| ())
        })
    }

    /// Puts a job back in the queue after a transient error, due again after `delay`.
    pub fn retry_later(&self, id: i64, error: &str, delay: Duration) -> Result<()> {
        self.with(|db| {
            let t = now();
            db.execute(
                "UPDATE jobs SET state = 'queued', last_error = ?2, lease_owner = NULL, lease_expires = NULL,
                 not_before = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, error, t + delay.as_secs_f64(), t],
            )
            .map(|_| ())
        })
    }

    /// Hands a claimed job back untouched (shutdown before it started): the attempt is not counted.
    pub fn release_claim(&self, id: i64, owner: &str) -> Result<()> {
        self.with(|db| {
            db.execute(
                "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_owner = NULL, lease_expires = NULL
                 WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
                params![id, owner],
            )
            .map(|_| ())
        })
    }

    pub fn get(&self, id: i64) -> Result<Option<Job>> {
        self.with(|db| {
            db.query_row(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"), params![id], job_from_row).optional()
        })
    }

    pub fn jobs(&self) -> Result<Vec<Job>> {
        self.with(|db| {
            let mut statement = db.prepare(&format!("SELECT {COLUMNS} FROM jobs ORDER BY id"))?;
            let rows = statement.query_map([], job_from_row)?;
            rows.collect()
        })
    }

    /// Jobs by state, every state present (zero included).
    pub fn counts(&self) -> Result<BTreeMap<JobState, u64>> {
        let mut counts: BTreeMap<JobState, u64> = JobState::ALL.into_iter().map(|s| (s, 0)).collect();
        for job in self.jobs()? {
            *counts.entry(job.state).or_default() += 1;
        }
        Ok(counts)
    }

    /// Whether any job is queued or running (due or not).
    pub fn has_unfinished(&self) -> Result<bool> {
        self.with(|db| {
            db.query_row("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')", [], |row| row.get(0))
                .map(|n: i64| n > 0)
        })
    }

    /// When each source was last listed successfully (seconds since the Unix epoch).
    pub fn last_polls(&self) -> Result<BTreeMap<String, f64>> {
        self.with(|db| {
            let mut statement = db.prepare("SELECT source, last_success FROM polls")?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })
    }

    pub fn record_poll(&self, source: &str) -> Result<()> {
        self.with(|db| {
            db.execute(
                "INSERT INTO polls (source, last_success) VALUES (?1, ?2)
                 ON CONFLICT (source) DO UPDATE SET last_success = excluded.last_success",
                params![source, now()],
            )
            .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, JobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(&dir.path().join("state/jobs.sqlite")).unwrap();
        (dir, store)
    }

    #[test]
    fn one_job_per_source_model_and_artifact() {
        let (_dir, jobs) = store();
        let first = jobs.enqueue("s", "m/1", "aa", "m/1/_SUCCESS", "e1").unwrap();
        assert!(first.is_some());
        assert!(jobs.marker_seen("s", "m/1/_SUCCESS", "e1").unwrap());
        assert!(!jobs.marker_seen("s", "m/1/_SUCCESS", "e2").unwrap());
        // The same bytes re-uploaded (new marker version): no second job.
        assert_eq!(jobs.enqueue("s", "m/1", "aa", "m/1/_SUCCESS", "e2").unwrap(), None);
        // New bytes under the same version: a new job.
        assert!(jobs.enqueue("s", "m/1", "bb", "m/1/_SUCCESS", "e3").unwrap().is_some());
        assert_eq!(jobs.counts().unwrap()[&JobState::Queued], 2);
    }

    #[test]
    fn an_expired_lease_is_claimed_again_and_a_held_one_is_not() {
        let (_dir, jobs) = store();
        let id = jobs.enqueue("s", "m/1", "aa", "k", "v").unwrap().unwrap();
        let job = jobs.claim("worker-a", Duration::from_secs(60), 3).unwrap().unwrap();
        assert_eq!((job.id, job.state, job.attempts), (id, JobState::Running, 1));
        assert_eq!(jobs.claim("worker-b", Duration::from_secs(60), 3).unwrap(), None);
        // worker-a dies: its lease lapses.
        assert!(jobs.renew(id, "worker-a", Duration::ZERO).unwrap());
        std::thread::sleep(Duration::from_millis(20));
        let again = jobs.claim("worker-b", Duration::from_secs(60), 3).unwrap().unwrap();
        assert_eq!(again.attempts, 2);
        assert!(!jobs.renew(id, "worker-a", Duration::from_secs(60)).unwrap(), "worker-a lost the lease");
        jobs.finish(id, JobState::Released, Some("dest/m/1"), None).unwrap();
        assert_eq!(jobs.claim("worker-c", Duration::from_secs(60), 3).unwrap(), None);
        assert_eq!(jobs.get(id).unwrap().unwrap().outcome.as_deref(), Some("dest/m/1"));
    }

    /// A job that kills its worker every time is failed after `max_attempts`, with the reason,
    /// and the next job is claimed.
    #[test]
    fn a_job_whose_worker_always_dies_stops_at_max_attempts() {
        let (_dir, jobs) = store();
        let deadly = jobs.enqueue("s", "m/1", "aa", "k1", "v").unwrap().unwrap();
        for attempt in 1..=2 {
            let job = jobs.claim("w", Duration::ZERO, 2).unwrap().unwrap();
            assert_eq!((job.id, job.attempts), (deadly, attempt));
            std::thread::sleep(Duration::from_millis(20)); // the lease of zero lapses
        }
        let next = jobs.enqueue("s", "m/2", "bb", "k2", "v").unwrap().unwrap();
        let job = jobs.claim("w", Duration::from_secs(60), 2).unwrap().unwrap();
        assert_eq!(job.id, next);
        let failed = jobs.get(deadly).unwrap().unwrap();
        assert_eq!((failed.state, failed.attempts), (JobState::Failed, 2));
        assert!(failed.last_error.unwrap().contains("each of its 2 attempts"));
    }

    #[test]
    fn retries_wait_for_their_back_off() {
        let (_dir, jobs) = store();
        let id = jobs.enqueue("s", "m/1", "aa", "k", "v").unwrap().unwrap();
        jobs.claim("w", Duration::from_secs(60), 3).unwrap().unwrap();
        jobs.retry_later(id, "store unreachable", Duration::from_secs(3600)).unwrap();
        assert_eq!(jobs.claim("w", Duration::from_secs(60), 3).unwrap(), None);
        assert!(jobs.has_unfinished().unwrap());
        let job = jobs.get(id).unwrap().unwrap();
        assert_eq!((job.state, job.last_error.as_deref()), (JobState::Queued, Some("store unreachable")));
    }

    #[test]
    fn two_connections_never_claim_the_same_job() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.sqlite");
        let a = JobStore::open(&path).unwrap();
        for i in 0..20 {
            a.enqueue("s", &format!("m/{i}"), "aa", &format!("k{i}"), "v").unwrap();
        }
        let claimed: Vec<i64> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|w| {
                    let path = path.clone();
                    scope.spawn(move || {
                        let store = JobStore::open(&path).unwrap();
                        let mut mine = Vec::new();
                        while let Some(job) = store.claim(&format!("w{w}"), Duration::from_secs(60), 3).unwrap() {
                            mine.push(job.id);
                        }
                        mine
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
        });
        let mut sorted = claimed.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!((claimed.len(), sorted.len()), (20, 20));
    }
}
