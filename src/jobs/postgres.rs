//! The PostgreSQL job store: one queue for watchers on any number of machines. Claims lock the
//! oldest due row with `FOR UPDATE SKIP LOCKED`, so concurrent claimers never wait on each
//! other nor take the same job; leases, back-offs and poll times are read off the server's clock
//! (`fstgate_now()`), which every watcher shares, so a skewed machine cannot steal a live lease.
//! The schema is versioned in `fstgate_schema` and migrated at start under an advisory lock.
//! The password comes from the environment (`password = "env:NAME"`); the server is reached over
//! TLS when it offers it (`sslmode=prefer`, the default), verified against the platform's roots
//! or `ca_file`.
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{Job, JobState, JobStore, JobStoreConfig, NewJob, PollTime, QueueStats, counts_by_state};
use crate::error::{Error, Result};

/// The schema, one migration per version (recorded in `fstgate_schema`). Never edit one that
/// has shipped: add the next.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "jobs, markers, cursors, deliveries, polls",
        "
CREATE FUNCTION fstgate_now() RETURNS double precision
    LANGUAGE sql STABLE AS $$ SELECT extract(epoch FROM statement_timestamp())::double precision $$;
CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL,
    model TEXT NOT NULL,
    artifact_sha256 TEXT NOT NULL,
    marker TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'released', 'denied', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    outcome TEXT,
    lease_owner TEXT,
    lease_expires DOUBLE PRECISION,
    not_before DOUBLE PRECISION NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (source, model, artifact_sha256)
);
CREATE INDEX jobs_unfinished ON jobs (id) WHERE state IN ('queued', 'running');
CREATE TABLE seen_markers (
    source TEXT NOT NULL,
    marker TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (source, marker, version)
);
CREATE TABLE cursors (
    source TEXT PRIMARY KEY,
    cursor TEXT NOT NULL
);
CREATE TABLE deliveries (
    source TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (source, delivery_id)
);
CREATE TABLE polls (
    source TEXT PRIMARY KEY,
    last_success DOUBLE PRECISION NOT NULL
);
",
    ),
    (
        "poll leases: one watcher lists a source per interval",
        "
CREATE TABLE poll_leases (
    source TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires DOUBLE PRECISION NOT NULL
);
",
    ),
];

/// Serialises migrations between watchers starting at once (an arbitrary application-wide key).
const MIGRATION_LOCK: i64 = 0x0066_7374_6761_7465; // "fstgate"

const COLUMNS: &str = "id, source, model, artifact_sha256, marker, state, attempts, last_error, outcome";

fn job_from_row(row: &Row) -> Job {
    let state: String = row.get(5);
    Job {
        id: row.get(0),
        source: row.get(1),
        model: row.get(2),
        artifact_sha256: row.get(3),
        marker: row.get(4),
        state: JobState::parse(&state).unwrap_or(JobState::Failed),
        attempts: u32::try_from(row.get::<_, i32>(6)).unwrap_or(0),
        last_error: row.get(7),
        outcome: row.get(8),
    }
}

/// The PostgreSQL job store (see the module documentation).
pub struct PostgresJobs {
    /// `postgres://user@host:port/db`, for messages.
    location: String,
    pool: Pool,
}

/// A server error with its own message (tokio-postgres's display of it says only "db error").
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

impl PostgresJobs {
    /// Connects to the server `config.url` names (a configuration `JobStoreConfig::validate`
    /// accepted) and migrates its schema.
    pub async fn connect(config: &JobStoreConfig) -> Result<Self> {
        let url = config.url.as_deref().unwrap_or_default();
        let location = crate::error::redact_url(url);
        let refuse = |reason: String| Error::JobStore { location: location.clone(), reason };
        let mut pg = tokio_postgres::Config::from_str(url).map_err(|e| refuse(format!("invalid URL: {e}")))?;
        if let Some(var) = config.password.as_deref().and_then(|p| p.strip_prefix("env:")) {
            let password = std::env::var(var).map_err(|_| refuse(format!("environment variable {var} is not set")))?;
            pg.password(password);
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(10));
        }
        pg.application_name("fstgate");
        let tls = tls_connector(config).map_err(refuse)?;
        let manager = Manager::from_config(pg, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.unwrap_or(4))
            .build()
            .map_err(|e| refuse(e.to_string()))?;
        let store = PostgresJobs { location, pool };
        store.migrate().await?;
        Ok(store)
    }

    fn error(&self, reason: String) -> Error {
        Error::JobStore { location: self.location.clone(), reason }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => self.error(describe(&e)),
            other => self.error(other.to_string()),
        })
    }

    /// Applies the migrations the database lacks, in one transaction under an advisory lock, so
    /// that watchers starting together migrate it once. A schema from a newer fstgate is refused.
    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        let failed = |e: tokio_postgres::Error| self.error(format!("migrating the schema: {}", describe(&e)));
        let tx = client.transaction().await.map_err(failed)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(failed)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS fstgate_schema (
                 version INTEGER PRIMARY KEY,
                 description TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(failed)?;
        let version: i32 =
            tx.query_one("SELECT COALESCE(MAX(version), 0) FROM fstgate_schema", &[]).await.map_err(failed)?.get(0);
        let version = usize::try_from(version).unwrap_or(0);
        if version > MIGRATIONS.len() {
            return Err(self.error(format!(
                "its schema is version {version}, newer than this fstgate's ({}): upgrade fstgate",
                MIGRATIONS.len()
            )));
        }
        for (index, (description, sql)) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.batch_execute(sql).await.map_err(failed)?;
            let number = i32::try_from(index + 1).unwrap_or(i32::MAX);
            tx.execute("INSERT INTO fstgate_schema (version, description) VALUES ($1, $2)", &[&number, description])
                .await
                .map_err(failed)?;
        }
        tx.commit().await.map_err(failed)
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(|e| self.error(describe(&e)))?;
        client.execute(&statement, params).await.map_err(|e| self.error(describe(&e)))
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(|e| self.error(describe(&e)))?;
        client.query(&statement, params).await.map_err(|e| self.error(describe(&e)))
    }

    async fn query_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }
}

/// rustls, trusting `ca_file` when given and the platform's roots otherwise. Used only when
/// the server offers TLS (or `sslmode=require` asks for it).
fn tls_connector(config: &JobStoreConfig) -> std::result::Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let client = match &config.ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            if certificates.is_empty() {
                return Err(format!("ca_file {}: no PEM certificate in it", path.display()));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder.with_platform_verifier().map_err(|e| format!("TLS: {e}"))?.with_no_client_auth(),
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(client))
}

/// Seconds as the server's double precision.
fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

#[async_trait::async_trait]
impl JobStore for PostgresJobs {
    fn location(&self) -> &str {
        &self.location
    }

    async fn marker_seen(&self, source: &str, marker: &str, version: &str) -> Result<bool> {
        let row = self
            .query_opt(
                "SELECT 1 FROM seen_markers WHERE source = $1 AND marker = $2 AND version = $3",
                &[&source, &marker, &version],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn cursor(&self, source: &str) -> Result<Option<String>> {
        let row = self.query_opt("SELECT cursor FROM cursors WHERE source = $1", &[&source]).await?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn set_cursor(&self, source: &str, cursor: &str) -> Result<()> {
        self.execute(
            "INSERT INTO cursors (source, cursor) VALUES ($1, $2)
             ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor",
            &[&source, &cursor],
        )
        .await
        .map(drop)
    }

    async fn first_delivery(&self, source: &str, delivery_id: &str, keep: Duration) -> Result<bool> {
        self.execute("DELETE FROM deliveries WHERE received_at < fstgate_now() - $1", &[&seconds(keep)]).await?;
        let inserted = self
            .execute(
                "INSERT INTO deliveries (source, delivery_id, received_at) VALUES ($1, $2, fstgate_now())
                 ON CONFLICT DO NOTHING",
                &[&source, &delivery_id],
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn enqueue(&self, job: NewJob<'_>) -> Result<Option<i64>> {
        // One statement, so one transaction: the job and its marker are recorded together.
        let row = self
            .query_opt(
                "WITH job AS (
                     INSERT INTO jobs (source, model, artifact_sha256, marker, state, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, 'queued', fstgate_now(), fstgate_now())
                     ON CONFLICT (source, model, artifact_sha256) DO NOTHING
                     RETURNING id
                 ), marker AS (
                     INSERT INTO seen_markers (source, marker, version) VALUES ($1, $4, $5) ON CONFLICT DO NOTHING
                 )
                 SELECT id FROM job",
                &[&job.source, &job.model, &job.artifact_sha256, &job.marker, &job.marker_version],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn claim(&self, owner: &str, lease: Duration, max_attempts: u32) -> Result<Option<Job>> {
        let max_attempts = i32::try_from(max_attempts).unwrap_or(i32::MAX);
        self.execute(
            "UPDATE jobs SET state = 'failed', lease_owner = NULL, lease_expires = NULL, updated_at = fstgate_now(),
             last_error = 'abandoned: the worker died or was killed during each of its ' || attempts || ' attempts'
             WHERE state = 'running' AND lease_expires < fstgate_now() AND attempts >= $1",
            &[&max_attempts],
        )
        .await?;
        // The oldest due row not locked by another claimer; a row another claimer has just
        // taken is re-checked after its commit and no longer qualifies.
        let row = self
            .query_opt(
                &format!(
                    "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = $1,
                     lease_expires = fstgate_now() + $2, updated_at = fstgate_now()
                     WHERE id = (
                         SELECT id FROM jobs
                         WHERE (state = 'queued' AND not_before <= fstgate_now())
                            OR (state = 'running' AND lease_expires < fstgate_now() AND attempts < $3)
                         ORDER BY id LIMIT 1
                         FOR UPDATE SKIP LOCKED
                     )
                     RETURNING {COLUMNS}"
                ),
                &[&owner, &seconds(lease), &max_attempts],
            )
            .await?;
        Ok(row.as_ref().map(job_from_row))
    }

    async fn renew(&self, id: i64, owner: &str, lease: Duration) -> Result<bool> {
        let renewed = self
            .execute(
                "UPDATE jobs SET lease_expires = fstgate_now() + $3
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
                &[&id, &owner, &seconds(lease)],
            )
            .await?;
        Ok(renewed == 1)
    }

    async fn finish(&self, id: i64, state: JobState, outcome: Option<&str>, error: Option<&str>) -> Result<()> {
        debug_assert!(state.is_final());
        self.execute(
            "UPDATE jobs SET state = $2, outcome = $3, last_error = COALESCE($4, last_error), lease_owner = NULL,
             lease_expires = NULL, updated_at = fstgate_now() WHERE id = $1",
            &[&id, &state.as_str(), &outcome, &error],
        )
        .await
        .map(drop)
    }

    async fn retry_later(&self, id: i64, error: &str, delay: Duration) -> Result<()> {
        self.execute(
            "UPDATE jobs SET state = 'queued', last_error = $2, lease_owner = NULL, lease_expires = NULL,
             not_before = fstgate_now() + $3, updated_at = fstgate_now() WHERE id = $1",
            &[&id, &error, &seconds(delay)],
        )
        .await
        .map(drop)
    }

    async fn get(&self, id: i64) -> Result<Option<Job>> {
        let row = self.query_opt(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"), &[&id]).await?;
        Ok(row.as_ref().map(job_from_row))
    }

    async fn jobs(&self) -> Result<Vec<Job>> {
        let rows = self.query(&format!("SELECT {COLUMNS} FROM jobs ORDER BY id"), &[]).await?;
        Ok(rows.iter().map(job_from_row).collect())
    }

    async fn counts(&self) -> Result<BTreeMap<JobState, u64>> {
        let rows = self.query("SELECT state, COUNT(*) FROM jobs GROUP BY state", &[]).await?;
        Ok(counts_by_state(rows.iter().map(|row| (row.get(0), u64::try_from(row.get::<_, i64>(1)).unwrap_or(0)))))
    }

    async fn queue(&self) -> Result<QueueStats> {
        let rows = self
            .query(
                "SELECT COUNT(*), COALESCE(fstgate_now() - MIN(GREATEST(created_at, not_before)), 0)
                 FROM jobs WHERE state = 'queued' AND not_before <= fstgate_now()",
                &[],
            )
            .await?;
        let row = rows.first().ok_or_else(|| self.error("no row from an aggregate".into()))?;
        Ok(QueueStats {
            due: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            oldest_due_age_seconds: row.get::<_, f64>(1).max(0.0),
        })
    }

    async fn last_polls(&self) -> Result<BTreeMap<String, PollTime>> {
        let rows = self.query("SELECT source, last_success, fstgate_now() - last_success FROM polls", &[]).await?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), PollTime { at: row.get(1), age_seconds: row.get::<_, f64>(2).max(0.0) }))
            .collect())
    }

    async fn record_poll(&self, source: &str) -> Result<()> {
        self.execute(
            "INSERT INTO polls (source, last_success) VALUES ($1, fstgate_now())
             ON CONFLICT (source) DO UPDATE SET last_success = excluded.last_success",
            &[&source],
        )
        .await
        .map(drop)
    }

    async fn claim_poll(&self, source: &str, owner: &str, hold: Duration) -> Result<bool> {
        let taken = self
            .execute(
                "INSERT INTO poll_leases (source, owner, expires) VALUES ($1, $2, fstgate_now() + $3)
                 ON CONFLICT (source) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
                 WHERE poll_leases.expires <= fstgate_now() OR poll_leases.owner = excluded.owner",
                &[&source, &owner, &seconds(hold)],
            )
            .await?;
        Ok(taken == 1)
    }

    async fn release_polls(&self, owner: &str) -> Result<()> {
        self.execute("DELETE FROM poll_leases WHERE owner = $1", &[&owner]).await.map(drop)
    }
}
