//! Scale-out: three `fstgate watch` processes, each with its own state directory as on three
//! machines, share one PostgreSQL job store (a real server started here) and one S3 source
//! (moto). A burst of 60 uploads arrives; one watcher is killed with SIGKILL while every
//! watcher holds a job, and restarted. Counted from the destination bucket's own object
//! versions: every upload published exactly once, none lost, and from the store: attempts
//! within `max_attempts`, the killed job taken over after its lease lapsed. The queue depth on
//! /metrics follows the burst up and back to zero.
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use common::Spawned;
use common::moto::Moto;
use common::pipeline::wait_for;
use common::postgres::{PASSWORD_ENV, PostgresServer};
use serde_json::Value;

const UPLOADS: usize = 60;
const MAX_ATTEMPTS: u64 = 3;

/// Three watchers' worth of configuration on one store, one source and one destination.
struct Cluster {
    dir: PathBuf,
    moto: Moto,
    pg: PostgresServer,
    /// The port watcher 1 serves /metrics on.
    metrics_port: u16,
}

impl Cluster {
    fn config(&self, watcher: usize) -> PathBuf {
        self.dir.join(format!("watcher-{watcher}.toml"))
    }

    fn write_configs(&self, store_url: &str) {
        let store = self.moto.store_options();
        for watcher in 1..=3 {
            let metrics = if watcher == 1 {
                format!("metrics_listen = \"127.0.0.1:{}\"\n", self.metrics_port)
            } else {
                String::new()
            };
            let config = format!(
                r#"
state_dir = "state-{watcher}"
device = "cpu"
concurrency = 1
poll_interval_seconds = 0.5
lease_seconds = 4
max_attempts = {MAX_ATTEMPTS}
{metrics}
[job_store]
url = "{store_url}"
password = "env:{PASSWORD_ENV}"

[[sources]]
name = "s3-registry"
url = "s3://registry/incoming"
{store}

[destination]
url = "s3://released/purified"
{store}

{}"#,
                common::toy_data_toml(&self.dir.join("toy.safetensors"), 1)
            );
            std::fs::write(self.config(watcher), config).unwrap();
        }
    }

    fn fstgate(&self) -> Command {
        let mut command = Command::cargo_bin("fstgate").unwrap();
        Moto::credentials(&mut command)
            .env("FSTGATE_CACHE", self.dir.join("cache"))
            .env(PASSWORD_ENV, &self.pg.password);
        command
    }

    fn start_watcher(&self, watcher: usize, run: usize) -> Spawned {
        let mut command = self.fstgate();
        command
            .args(["watch", "--config"])
            .arg(self.config(watcher))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join(format!("watcher-{watcher}.{run}.log"))).unwrap());
        Spawned::start(command)
    }

    /// The job store's jobs, as `fstgate jobs --json` reads them from PostgreSQL.
    fn jobs(&self) -> Vec<Value> {
        let output = self.fstgate().args(["jobs", "--json", "--config"]).arg(self.config(2)).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<Value>(&output.stdout).unwrap().as_array().unwrap().clone()
    }

    /// Jobs in `state`, read by psql (cheaper to poll than the CLI).
    fn in_state(&self, state: &str) -> usize {
        self.pg.sql("scaleout", &format!("SELECT count(*) FROM jobs WHERE state = '{state}'")).trim().parse().unwrap()
    }

    /// `fstgate_queue_depth` on watcher 1's /metrics.
    fn queue_depth(&self) -> u64 {
        let (status, body) = common::http_get(self.metrics_port, "/metrics");
        assert_eq!(status, 200, "{body}");
        body.lines()
            .find_map(|line| line.strip_prefix("fstgate_queue_depth "))
            .unwrap_or_else(|| panic!("no queue depth on /metrics:\n{body}"))
            .parse()
            .unwrap()
    }
}

#[test]
fn three_watchers_on_postgres_publish_a_burst_exactly_once_through_a_kill() {
    let Some(pg) = PostgresServer::start() else { return };
    let Some(moto) = Moto::start() else { return };
    let dir = common::scratch("scale-out");
    common::toy_data(&dir.join("toy.safetensors"), 64, 1, 10);
    fstgate::attestation::keys::generate_files(&dir.join("signing.pem"), &dir.join("signing.pub")).unwrap();
    let cluster = Cluster { dir, moto, metrics_port: common::free_port(), pg };
    cluster.write_configs(&cluster.pg.database("scaleout", "fstgate"));
    // Versioning keeps every write of a key: the count below sees an overwrite.
    cluster.moto.boto3(
        "s3.create_bucket(Bucket='registry')\ns3.create_bucket(Bucket='released')\n\
         s3.put_bucket_versioning(Bucket='released', VersioningConfiguration={'Status': 'Enabled'})",
    );
    let mut watchers: Vec<Spawned> = (1..=3).map(|w| cluster.start_watcher(w, 1)).collect();
    common::wait_for_http(cluster.metrics_port, "/healthz", Duration::from_secs(60));

    // The burst: every model first, then every marker, as fast as boto3 goes.
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heads/fc.pt");
    cluster.moto.boto3(&format!(
        "for v in range(1, {UPLOADS} + 1):\n    s3.upload_file('{}', 'registry', f'incoming/toy-fc/{{v}}/model.pt')\n\
         for v in range(1, {UPLOADS} + 1):\n    s3.put_object(Bucket='registry', Key=f'incoming/toy-fc/{{v}}/_SUCCESS', Body=b'')",
        model.display()
    ));

    // Kill watcher 1 while all three hold a job (concurrency 1 each), so it dies mid-job.
    let mut deepest_queue = 0;
    wait_for("three running jobs", Duration::from_secs(180), || {
        deepest_queue = deepest_queue.max(cluster.queue_depth());
        cluster.in_state("running") == 3
    });
    unsafe { libc::kill(-(watchers[0].id() as i32), libc::SIGKILL) };
    watchers[0].wait();
    let killed_at = Instant::now();
    assert!(deepest_queue > 0, "the queue depth never rose during a burst of {UPLOADS}");
    watchers[0] = cluster.start_watcher(1, 2);
    common::wait_for_http(cluster.metrics_port, "/healthz", Duration::from_secs(60));

    wait_for("every upload judged", Duration::from_secs(600), || {
        let jobs = cluster.jobs();
        jobs.len() == UPLOADS
            && jobs.iter().all(|j| matches!(j["state"].as_str(), Some("released" | "denied" | "failed")))
    });
    let drained = killed_at.elapsed();
    assert_eq!(cluster.queue_depth(), 0);
    for watcher in &mut watchers {
        assert!(watcher.terminate().success(), "a watcher did not stop cleanly on SIGTERM");
    }

    // The store: each upload one job, released, within its attempts; the killed one retried.
    let jobs = cluster.jobs();
    let models: std::collections::BTreeSet<&str> = jobs.iter().map(|j| j["model"].as_str().unwrap()).collect();
    assert_eq!(models.len(), UPLOADS, "one job per upload");
    for job in &jobs {
        assert_eq!(job["state"], "released", "{job:#}");
        assert!((1..=MAX_ATTEMPTS).contains(&job["attempts"].as_u64().unwrap()), "{job:#}");
    }
    let retried = jobs.iter().filter(|j| j["attempts"].as_u64() > Some(1)).count();
    assert!(retried >= 1, "no job was taken over from the killed watcher");

    // The bucket: one outcome.json per upload, written once; no model.pt written twice.
    let versions = cluster.moto.object_versions("released");
    let mut per_upload: BTreeMap<String, (usize, Vec<&str>)> = BTreeMap::new();
    for (key, _) in &versions {
        let upload = key.split('/').take(3).collect::<Vec<_>>().join("/");
        let entry = per_upload.entry(upload).or_default();
        if key.ends_with("/outcome.json") {
            entry.0 += 1;
        } else if key.ends_with("/model.pt") {
            entry.1.push(key);
        }
    }
    assert_eq!(per_upload.len(), UPLOADS, "{:#?}", per_upload.keys());
    for (upload, (outcomes, mut models)) in per_upload {
        assert_eq!(outcomes, 1, "{upload}: outcome.json written {outcomes} times");
        let writes = models.len();
        models.sort_unstable();
        models.dedup();
        assert_eq!(models.len(), writes, "{upload}: a model.pt was overwritten");
        assert!((1..=MAX_ATTEMPTS as usize).contains(&writes), "{upload}: {writes} attempts published a model");
    }
    for log in std::fs::read_dir(&cluster.dir).unwrap().filter_map(|e| e.ok()).map(|e| e.path()) {
        if log.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&log).unwrap();
            assert!(!text.contains(&cluster.pg.password), "the database password reached {}", log.display());
        }
    }
    eprintln!(
        "{UPLOADS} uploads, 3 watchers, one killed: drained {drained:?} after the kill, {retried} job(s) retried"
    );
}
