//! The SQLite job store: the embedded default, one file in the state directory that the
//! watchers of one machine share (WAL mode, immediate transactions for claims). Its schema is
//! versioned in `PRAGMA user_version` and migrated when it opens.
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::{Job, JobState, JobStore, NewJob, PollTime, QueueStats, counts_by_state, now};
use crate::error::{Error, Result};

/// The schema, one migration per version (`PRAGMA user_version` = migrations applied). Never
/// edit one that has shipped: add the next.
const MIGRATIONS: &[&str] = &[
    "
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
",
    "
CREATE TABLE poll_leases (
    source TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires REAL NOT NULL
);
",
];

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

/// The SQLite job store (see the module documentation).
pub struct SqliteJobs {
    location: String,
    db: Mutex<Connection>,
}

impl SqliteJobs {
    /// Opens (creating if needed) the store at `path` and migrates its schema. WAL mode lets
    /// several processes share it.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let location = path.display().to_string();
        let error = |reason: String| Error::JobStore { location: location.clone(), reason };
        let mut db = Connection::open(path).map_err(|e| error(e.to_string()))?;
        db.busy_timeout(Duration::from_secs(10)).map_err(|e| error(e.to_string()))?;
        db.pragma_update(None, "journal_mode", "WAL").map_err(|e| error(e.to_string()))?;
        db.pragma_update(None, "synchronous", "FULL").map_err(|e| error(e.to_string()))?;
        migrate(&mut db).map_err(error)?;
        Ok(SqliteJobs { location, db: Mutex::new(db) })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut db = self.db.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut db).map_err(|e| Error::JobStore { location: self.location.clone(), reason: e.to_string() })
    }
}

/// Applies the migrations this store lacks, in one immediate transaction (two processes opening
/// a new store at once migrate it once). A store from a newer fstgate is refused.
fn migrate(db: &mut Connection) -> std::result::Result<(), String> {
    let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| e.to_string())?;
    let version: usize =
        tx.query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0)).map_err(|e| e.to_string())? as usize;
    if version > MIGRATIONS.len() {
        return Err(format!(
            "its schema is version {version}, newer than this fstgate's ({}): upgrade fstgate",
            MIGRATIONS.len()
        ));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(migration).map_err(|e| format!("migration {}: {e}", index + 1))?;
        tx.pragma_update(None, "user_version", (index + 1) as i64).map_err(|e| e.to_string())?;
    }
    tx.commit().map_err(|e| e.to_string())
}

#[async_trait::async_trait]
impl JobStore for SqliteJobs {
    fn location(&self) -> &str {
        &self.location
    }

    async fn marker_seen(&self, source: &str, marker: &str, version: &str) -> Result<bool> {
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

    async fn cursor(&self, source: &str) -> Result<Option<String>> {
        self.with(|db| {
            db.query_row("SELECT cursor FROM cursors WHERE source = ?1", params![source], |row| row.get(0)).optional()
        })
    }

    async fn set_cursor(&self, source: &str, cursor: &str) -> Result<()> {
        self.with(|db| {
            db.execute(
                "INSERT INTO cursors (source, cursor) VALUES (?1, ?2)
                 ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor",
                params![source, cursor],
            )
            .map(drop)
        })
    }

    async fn first_delivery(&self, source: &str, delivery_id: &str, keep: Duration) -> Result<bool> {
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

    async fn enqueue(&self, job: NewJob<'_>) -> Result<Option<i64>> {
        self.with(|db| {
            let tx = db.transaction()?;
            let t = now();
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO jobs (source, model, artifact_sha256, marker, state, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5)",
                params![job.source, job.model, job.artifact_sha256, job.marker, t],
            )?;
            let id = (inserted == 1).then(|| tx.last_insert_rowid());
            tx.execute(
                "INSERT OR IGNORE INTO seen_markers (source, marker, version) VALUES (?1, ?2, ?3)",
                params![job.source, job.marker, job.marker_version],
            )?;
            tx.commit()?;
            Ok(id)
        })
    }

    async fn claim(&self, owner: &str, lease: Duration, max_attempts: u32) -> Result<Option<Job>> {
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

    async fn renew(&self, id: i64, owner: &str, lease: Duration) -> Result<bool> {
        self.with(|db| {
            db.execute(
                "UPDATE jobs SET lease_expires = ?3 WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
                params![id, owner, now() + lease.as_secs_f64()],
            )
            .map(|n| n == 1)
        })
    }

    async fn finish(&self, id: i64, state: JobState, outcome: Option<&str>, error: Option<&str>) -> Result<()> {
        debug_assert!(state.is_final());
        self.with(|db| {
            db.execute(
                "UPDATE jobs SET state = ?2, outcome = ?3, last_error = COALESCE(?4, last_error), lease_owner = NULL,
                 lease_expires = NULL, updated_at = ?5 WHERE id = ?1",
                params![id, state.as_str(), outcome, error, now()],
            )
            .map(drop)
        })
    }

    async fn retry_later(&self, id: i64, error: &str, delay: Duration) -> Result<()> {
        self.with(|db| {
            let t = now();
            db.execute(
                "UPDATE jobs SET state = 'queued', last_error = ?2, lease_owner = NULL, lease_expires = NULL,
                 not_before = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, error, t + delay.as_secs_f64(), t],
            )
            .map(drop)
        })
    }

    async fn get(&self, id: i64) -> Result<Option<Job>> {
        self.with(|db| {
            db.query_row(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"), params![id], job_from_row).optional()
        })
    }

    async fn jobs(&self) -> Result<Vec<Job>> {
        self.with(|db| {
            let mut statement = db.prepare(&format!("SELECT {COLUMNS} FROM jobs ORDER BY id"))?;
            let rows = statement.query_map([], job_from_row)?;
            rows.collect()
        })
    }

    async fn counts(&self) -> Result<BTreeMap<JobState, u64>> {
        let rows = self.with(|db| {
            let mut statement = db.prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state")?;
            let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(counts_by_state(rows))
    }

    async fn queue(&self) -> Result<QueueStats> {
        self.with(|db| {
            let t = now();
            db.query_row(
                "SELECT COUNT(*), MIN(MAX(created_at, not_before)) FROM jobs WHERE state = 'queued' AND not_before <= ?1",
                params![t],
                |row| {
                    let oldest: Option<f64> = row.get(1)?;
                    Ok(QueueStats {
                        due: row.get::<_, i64>(0)? as u64,
                        oldest_due_age_seconds: oldest.map_or(0.0, |since| (t - since).max(0.0)),
                    })
                },
            )
        })
    }

    async fn last_polls(&self) -> Result<BTreeMap<String, PollTime>> {
        self.with(|db| {
            let mut statement = db.prepare("SELECT source, last_success FROM polls")?;
            let rows = statement.query_map([], |row| {
                let at: f64 = row.get(1)?;
                Ok((row.get(0)?, PollTime { at, age_seconds: (now() - at).max(0.0) }))
            })?;
            rows.collect()
        })
    }

    async fn record_poll(&self, source: &str) -> Result<()> {
        self.with(|db| {
            db.execute(
                "INSERT INTO polls (source, last_success) VALUES (?1, ?2)
                 ON CONFLICT (source) DO UPDATE SET last_success = excluded.last_success",
                params![source, now()],
            )
            .map(drop)
        })
    }

    async fn claim_poll(&self, source: &str, owner: &str, hold: Duration) -> Result<bool> {
        self.with(|db| {
            let t = now();
            db.execute(
                "INSERT INTO poll_leases (source, owner, expires) VALUES (?1, ?2, ?3)
                 ON CONFLICT (source) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
                 WHERE poll_leases.expires <= ?4 OR poll_leases.owner = excluded.owner",
                params![source, owner, t + hold.as_secs_f64(), t],
            )
            .map(|n| n == 1)
        })
    }

    async fn release_polls(&self, owner: &str) -> Result<()> {
        self.with(|db| db.execute("DELETE FROM poll_leases WHERE owner = ?1", params![owner]).map(drop))
    }
}
