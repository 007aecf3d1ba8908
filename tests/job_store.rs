//! One suite, both job stores: every case runs against SQLite and against a real PostgreSQL
//! server (started here, on 127.0.0.1), so the two backends keep the same semantics: one job per
//! upload, leases that lapse, attempts counted at claim, back-offs, cursors, replayed webhook
//! deliveries, concurrent claimers that never share a job, and versioned migrations.
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::postgres::PostgresServer;
use fstgate::jobs::{JobState, JobStore, JobStoreConfig, NewJob};

/// Opens a fresh store of the kind under test, as often as a case asks (several connections to
/// one store for the concurrency cases).
#[async_trait::async_trait]
trait Backend: Sync {
    /// A new, empty store; its configuration and state directory.
    async fn fresh(&self, name: &str) -> (JobStoreConfig, tempfile::TempDir);
}

struct Sqlite;

#[async_trait::async_trait]
impl Backend for Sqlite {
    async fn fresh(&self, _name: &str) -> (JobStoreConfig, tempfile::TempDir) {
        (JobStoreConfig::default(), tempfile::tempdir().unwrap())
    }
}

#[async_trait::async_trait]
impl Backend for PostgresServer {
    async fn fresh(&self, name: &str) -> (JobStoreConfig, tempfile::TempDir) {
        let url = self.database(name, "tester");
        (JobStoreConfig { url: Some(url), ..JobStoreConfig::default() }, tempfile::tempdir().unwrap())
    }
}

async fn open(config: &JobStoreConfig, dir: &tempfile::TempDir) -> Arc<dyn JobStore> {
    fstgate::jobs::open(config, dir.path()).await.unwrap()
}

fn upload<'a>(model: &'a str, sha: &'a str, marker: &'a str, version: &'a str) -> NewJob<'a> {
    NewJob { source: "s", model, artifact_sha256: sha, marker, marker_version: version }
}

const MINUTE: Duration = Duration::from_secs(60);

async fn one_job_per_source_model_and_artifact(jobs: &dyn JobStore) {
    assert!(jobs.enqueue(upload("m/1", "aa", "m/1/_SUCCESS", "e1")).await.unwrap().is_some());
    assert!(jobs.marker_seen("s", "m/1/_SUCCESS", "e1").await.unwrap());
    assert!(!jobs.marker_seen("s", "m/1/_SUCCESS", "e2").await.unwrap());
    // The same bytes re-uploaded (new marker version): no second job, but the marker is seen.
    assert_eq!(jobs.enqueue(upload("m/1", "aa", "m/1/_SUCCESS", "e2")).await.unwrap(), None);
    assert!(jobs.marker_seen("s", "m/1/_SUCCESS", "e2").await.unwrap());
    // New bytes under the same version: a new job.
    assert!(jobs.enqueue(upload("m/1", "bb", "m/1/_SUCCESS", "e3")).await.unwrap().is_some());
    let counts = jobs.counts().await.unwrap();
    assert_eq!((counts[&JobState::Queued], counts[&JobState::Released]), (2, 0));
    let stats = jobs.queue().await.unwrap();
    assert_eq!(stats.due, 2);
    assert!((0.0..60.0).contains(&stats.oldest_due_age_seconds), "{stats:?}");
}

async fn an_expired_lease_is_claimed_again_and_a_held_one_is_not(jobs: &dyn JobStore) {
    let id = jobs.enqueue(upload("m/1", "aa", "k", "v")).await.unwrap().unwrap();
    let job = jobs.claim("worker-a", MINUTE, 3).await.unwrap().unwrap();
    assert_eq!((job.id, job.state, job.attempts), (id, JobState::Running, 1));
    assert_eq!(jobs.claim("worker-b", MINUTE, 3).await.unwrap(), None);
    assert_eq!(jobs.queue().await.unwrap().due, 0, "a running job is not waiting");
    // worker-a dies: its lease lapses.
    assert!(jobs.renew(id, "worker-a", Duration::ZERO).await.unwrap());
    tokio::time::sleep(Duration::from_millis(30)).await;
    let again = jobs.claim("worker-b", MINUTE, 3).await.unwrap().unwrap();
    assert_eq!(again.attempts, 2);
    assert!(!jobs.renew(id, "worker-a", MINUTE).await.unwrap(), "worker-a lost the lease");
    jobs.finish(id, JobState::Released, Some("dest/m/1"), None).await.unwrap();
    assert_eq!(jobs.claim("worker-c", MINUTE, 3).await.unwrap(), None);
    let done = jobs.get(id).await.unwrap().unwrap();
    assert_eq!((done.state, done.outcome.as_deref()), (JobState::Released, Some("dest/m/1")));
}

/// A job that kills its worker every time is failed after `max_attempts`, with the reason, and
/// the next job is claimed.
async fn a_job_whose_worker_always_dies_stops_at_max_attempts(jobs: &dyn JobStore) {
    let deadly = jobs.enqueue(upload("m/1", "aa", "k1", "v")).await.unwrap().unwrap();
    for attempt in 1..=2 {
        let job = jobs.claim("w", Duration::ZERO, 2).await.unwrap().unwrap();
        assert_eq!((job.id, job.attempts), (deadly, attempt));
        tokio::time::sleep(Duration::from_millis(30)).await; // the lease of zero lapses
    }
    let next = jobs.enqueue(upload("m/2", "bb", "k2", "v")).await.unwrap().unwrap();
    let job = jobs.claim("w", MINUTE, 2).await.unwrap().unwrap();
    assert_eq!(job.id, next);
    let failed = jobs.get(deadly).await.unwrap().unwrap();
    assert_eq!((failed.state, failed.attempts), (JobState::Failed, 2));
    assert!(failed.last_error.unwrap().contains("each of its 2 attempts"));
}

async fn retries_wait_for_their_back_off(jobs: &dyn JobStore) {
    let id = jobs.enqueue(upload("m/1", "aa", "k", "v")).await.unwrap().unwrap();
    jobs.claim("w", MINUTE, 3).await.unwrap().unwrap();
    jobs.retry_later(id, "store unreachable", Duration::from_secs(3600)).await.unwrap();
    assert_eq!(jobs.claim("w", MINUTE, 3).await.unwrap(), None);
    assert_eq!(jobs.queue().await.unwrap().due, 0, "a job in its back-off is not due");
    let job = jobs.get(id).await.unwrap().unwrap();
    assert_eq!((job.state, job.last_error.as_deref()), (JobState::Queued, Some("store unreachable")));
    // A final error replaces it; none keeps it.
    jobs.finish(id, JobState::Denied, Some("out"), None).await.unwrap();
    assert_eq!(jobs.get(id).await.unwrap().unwrap().last_error.as_deref(), Some("store unreachable"));
}

async fn cursors_polls_and_deliveries(jobs: &dyn JobStore) {
    assert_eq!(jobs.cursor("s").await.unwrap(), None);
    jobs.set_cursor("s", "a").await.unwrap();
    jobs.set_cursor("s", "b").await.unwrap();
    assert_eq!(jobs.cursor("s").await.unwrap().as_deref(), Some("b"));
    assert!(jobs.last_polls().await.unwrap().is_empty());
    jobs.record_poll("s").await.unwrap();
    let poll = jobs.last_polls().await.unwrap()["s"];
    assert!((fstgate::jobs::now() - poll.at).abs() < 60.0, "{poll:?}");
    assert!((0.0..5.0).contains(&poll.age_seconds), "{poll:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = jobs.last_polls().await.unwrap()["s"];
    assert!(later.at == poll.at && later.age_seconds >= poll.age_seconds + 0.25, "{poll:?} then {later:?}");
    assert!(jobs.first_delivery("s", "d1", MINUTE).await.unwrap());
    assert!(!jobs.first_delivery("s", "d1", MINUTE).await.unwrap(), "a replay");
    assert!(jobs.first_delivery("other", "d1", MINUTE).await.unwrap(), "ids are per source");
    // Once outside the kept window, an id is forgotten.
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(jobs.first_delivery("s", "d1", Duration::from_millis(1)).await.unwrap());
}

/// One watcher at a time lists a source: the holder keeps the lease, another owner gets it only
/// once it ran out, and each source has its own.
async fn one_watcher_polls_a_source_per_interval(jobs: &dyn JobStore) {
    let hold = Duration::from_millis(300);
    assert!(jobs.claim_poll("s", "a", hold).await.unwrap());
    assert!(!jobs.claim_poll("s", "b", hold).await.unwrap(), "a holds it");
    assert!(jobs.claim_poll("s", "a", hold).await.unwrap(), "the holder renews");
    assert!(jobs.claim_poll("other", "b", hold).await.unwrap(), "leases are per source");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(jobs.claim_poll("s", "b", hold).await.unwrap(), "a's lease ran out");
    assert!(!jobs.claim_poll("s", "a", hold).await.unwrap());
    // b stops cleanly: a lists both sources at once.
    assert!(jobs.claim_poll("other", "b", hold).await.unwrap());
    jobs.release_polls("b").await.unwrap();
    assert!(jobs.claim_poll("s", "a", hold).await.unwrap(), "b gave its lease up");
    assert!(jobs.claim_poll("other", "a", hold).await.unwrap(), "b gave every lease up");
}

/// Four connections (four watchers) claim 40 jobs at once: each claimed exactly once.
async fn concurrent_claimers_never_share_a_job(backend: &dyn Backend) {
    let (config, dir) = backend.fresh("concurrent").await;
    let first = open(&config, &dir).await;
    for i in 0..40 {
        first.enqueue(upload(&format!("m/{i}"), "aa", &format!("k{i}"), "v")).await.unwrap();
    }
    let mut claimers = tokio::task::JoinSet::new();
    for w in 0..4 {
        let store = open(&config, &dir).await;
        claimers.spawn(async move {
            let mut mine = Vec::new();
            while let Some(job) = store.claim(&format!("w{w}"), MINUTE, 3).await.unwrap() {
                mine.push(job.id);
            }
            mine
        });
    }
    let mut claimed: Vec<i64> = claimers.join_all().await.into_iter().flatten().collect();
    assert_eq!(claimed.len(), 40);
    claimed.sort_unstable();
    claimed.dedup();
    assert_eq!(claimed.len(), 40, "a job was claimed twice");
}

/// Opening a store twice migrates it once; a store from a newer fstgate is refused by name.
async fn migrations_are_versioned(backend: &dyn Backend, newer: impl FnOnce(&JobStoreConfig, &std::path::Path)) {
    let (config, dir) = backend.fresh("migrations").await;
    let store = open(&config, &dir).await;
    let id = store.enqueue(upload("m/1", "aa", "k", "v")).await.unwrap().unwrap();
    drop(store);
    let reopened = open(&config, &dir).await;
    assert_eq!(reopened.get(id).await.unwrap().unwrap().model, "m/1", "reopening keeps the jobs");
    drop(reopened);
    newer(&config, dir.path());
    let Err(error) = fstgate::jobs::open(&config, dir.path()).await else { panic!("a newer schema was opened") };
    assert!(error.to_string().contains("newer than this fstgate"), "{error}");
}

/// Every case, each on a fresh store.
async fn suite(backend: &dyn Backend) {
    macro_rules! case {
        ($name:ident) => {{
            let (config, dir) = backend.fresh(stringify!($name)).await;
            $name(&*open(&config, &dir).await).await;
        }};
    }
    case!(one_job_per_source_model_and_artifact);
    case!(an_expired_lease_is_claimed_again_and_a_held_one_is_not);
    case!(a_job_whose_worker_always_dies_stops_at_max_attempts);
    case!(retries_wait_for_their_back_off);
    case!(cursors_polls_and_deliveries);
    case!(one_watcher_polls_a_source_per_interval);
    concurrent_claimers_never_share_a_job(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sqlite_store_passes_the_suite() {
    suite(&Sqlite).await;
    migrations_are_versioned(&Sqlite, |_, dir| {
        let db = rusqlite::Connection::open(dir.join("jobs.sqlite")).unwrap();
        db.pragma_update(None, "user_version", 99).unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_postgres_store_passes_the_suite() {
    let Some(server) = PostgresServer::start() else { return };
    suite(&server).await;
    migrations_are_versioned(&server, |_, _| {
        server.sql("migrations", "INSERT INTO fstgate_schema (version, description) VALUES (99, 'from the future')");
    })
    .await;
}

/// Deployment errors name the problem and never the secret: a password in the URL, a password
/// that is not `env:`, an unset variable, a wrong password, a server that is not there.
#[tokio::test]
async fn postgres_configuration_errors_are_clear_and_keep_secrets_out() {
    let Some(server) = PostgresServer::start() else { return };
    let url = server.database("errors", "fstgate");
    let attempt = |url: &str, password: Option<&str>| {
        let config = JobStoreConfig {
            url: Some(url.to_string()),
            password: password.map(str::to_string),
            ..JobStoreConfig::default()
        };
        async move { fstgate::jobs::open(&config, std::path::Path::new("/nonexistent")).await.err().unwrap().to_string() }
    };
    let in_url = attempt(&url.replace("fstgate@", "fstgate:hunter2@"), None).await;
    assert!(in_url.contains("holds a password") && !in_url.contains("hunter2"), "{in_url}");
    let literal = attempt(&url, Some("hunter2")).await;
    assert!(literal.contains("env:NAME") && !literal.contains("hunter2"), "{literal}");
    let unset = attempt(&url, Some("env:FSTGATE_TEST_UNSET_VARIABLE")).await;
    assert!(unset.contains("FSTGATE_TEST_UNSET_VARIABLE is not set"), "{unset}");
    // PATH is set but is not the password.
    let wrong = attempt(&url, Some("env:PATH")).await;
    assert!(wrong.contains("password authentication failed"), "{wrong}");
    let closed = attempt(&format!("postgres://fstgate@127.0.0.1:{}/x", common::free_port()), None).await;
    assert!(closed.contains("job store postgres://***@127.0.0.1") && closed.contains("onnect"), "{closed}");
    let other = attempt("mysql://db/x", None).await;
    assert!(other.contains("give a postgres:// URL"), "{other}");
}

/// A server that accepts TLS only: `sslmode=require` with `ca_file` naming its CA connects
/// (so the connection was encrypted and the certificate checked); the platform's roots, another
/// CA or plaintext are refused, each with a message that says so.
#[tokio::test]
async fn postgres_over_tls_checks_the_servers_certificate() {
    let Some(server) = PostgresServer::start_tls() else { return };
    let url = server.database("tls", "tester");
    let config = |mode: &str, ca: Option<&str>| JobStoreConfig {
        url: Some(url.replace("sslmode=disable", &format!("sslmode={mode}"))),
        ca_file: ca.map(|name| server.tls_dir().join(name)),
        ..JobStoreConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = fstgate::jobs::open(&config("require", Some("ca.pem")), dir.path()).await.unwrap();
    assert!(store.enqueue(upload("m/1", "aa", "k", "v")).await.unwrap().is_some());
    let refused = |config: JobStoreConfig| {
        let dir = dir.path().to_path_buf();
        async move { fstgate::jobs::open(&config, &dir).await.err().expect("refused").to_string() }
    };
    let platform = refused(config("require", None)).await;
    assert!(platform.to_lowercase().contains("certificate"), "{platform}");
    let other = refused(config("require", Some("other-ca.pem"))).await;
    assert!(other.to_lowercase().contains("certificate"), "{other}");
    let plaintext = refused(config("disable", Some("ca.pem"))).await;
    assert!(plaintext.contains("no encryption") || plaintext.contains("pg_hba.conf"), "{plaintext}");
}
