//! The watcher's health and Prometheus endpoints: `GET /healthz` (200 while every source was
//! listed within three poll intervals, else 503) and `GET /metrics` (jobs by state, job
//! durations, last successful poll per source, webhook deliveries), in the text exposition
//! format. The same server receives the webhooks (`POST /webhooks/<source>`).
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use super::Pipeline;
use crate::jobs::{JobState, now};

/// Processing times of this process's jobs, by the state they ended in.
#[derive(Default)]
pub struct JobDurations(Mutex<BTreeMap<&'static str, (u64, f64)>>);

impl JobDurations {
    pub fn record(&self, state: JobState, elapsed: Duration) {
        let mut totals = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = totals.entry(state.as_str()).or_default();
        entry.0 += 1;
        entry.1 += elapsed.as_secs_f64();
    }

    fn snapshot(&self) -> BTreeMap<&'static str, (u64, f64)> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// Webhook deliveries by (source, result).
#[derive(Default)]
pub struct DeliveryCounts(Mutex<BTreeMap<(String, &'static str), u64>>);

impl DeliveryCounts {
    pub fn record(&self, source: &str, result: &'static str) {
        let mut counts = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *counts.entry((source.to_string(), result)).or_default() += 1;
    }

    fn snapshot(&self) -> BTreeMap<(String, &'static str), u64> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// The Prometheus text for the pipeline's current state.
pub fn render(pipeline: &Pipeline) -> crate::Result<String> {
    let mut out = String::new();
    let counts = pipeline.jobs().counts()?;
    out.push_str("# HELP fstgate_jobs Jobs in the job store, by state.\n# TYPE fstgate_jobs gauge\n");
    for (state, n) in counts {
        let _ = writeln!(out, "fstgate_jobs{{state=\"{}\"}} {n}", state.as_str());
    }
    out.push_str(
        "# HELP fstgate_job_duration_seconds Time to process a job in this process, by final state.\n\
         # TYPE fstgate_job_duration_seconds summary\n",
    );
    for (state, (count, sum)) in pipeline.durations.snapshot() {
        let _ = writeln!(out, "fstgate_job_duration_seconds_sum{{state=\"{state}\"}} {sum}");
        let _ = writeln!(out, "fstgate_job_duration_seconds_count{{state=\"{state}\"}} {count}");
    }
    out.push_str(
        "# HELP fstgate_last_successful_poll_timestamp_seconds When each source was last listed.\n\
         # TYPE fstgate_last_successful_poll_timestamp_seconds gauge\n",
    );
    for (source, at) in pipeline.jobs().last_polls()? {
        let _ = writeln!(out, "fstgate_last_successful_poll_timestamp_seconds{{source=\"{}\"}} {at}", escape(&source));
    }
    out.push_str(
        "# HELP fstgate_webhook_deliveries_total Webhook deliveries received by this process, by source and result.\n\
         # TYPE fstgate_webhook_deliveries_total counter\n",
    );
    for ((source, result), n) in pipeline.deliveries.snapshot() {
        let _ =
            writeln!(out, "fstgate_webhook_deliveries_total{{source=\"{}\",result=\"{result}\"}} {n}", escape(&source));
    }
    Ok(out)
}

/// Label values escape backslash, quote and newline.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

async fn metrics(State(pipeline): State<Arc<Pipeline>>) -> impl IntoResponse {
    match render(&pipeline) {
        Ok(text) => (StatusCode::OK, [("content-type", "text/plain; version=0.0.4")], text),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "text/plain")], format!("{e}\n")),
    }
}

async fn health(State(pipeline): State<Arc<Pipeline>>) -> impl IntoResponse {
    let stale_after = 3.0 * pipeline.config.poll_interval_seconds;
    let polls = match pipeline.jobs().last_polls() {
        Ok(polls) => polls,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    };
    let grace = now() - pipeline.started_at < stale_after;
    let stale: Vec<&str> = pipeline
        .config
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .filter(|name| polls.get(*name).is_none_or(|at| now() - at > stale_after))
        .collect();
    if stale.is_empty() || grace {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not polled within {stale_after} s: {}\n", stale.join(", ")))
    }
}

/// Serves the endpoints on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, pipeline: Arc<Pipeline>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(health))
        .merge(super::webhooks::routes())
        .with_state(pipeline);
    axum::serve(listener, app).await
}
