//! The watcher's health and Prometheus endpoints: `GET /healthz` (200 while every source was
//! listed within three poll intervals, else 503) and `GET /metrics` (jobs by state, job
//! durations, last successful poll per source, webhook deliveries), in the text exposition
//! format. The same server receives the webhooks (`POST /webhooks/<source>`).
//!
//! The listener faces whoever can reach it, so it is served with bounds axum's own `serve`
//! does not set: a client gets `HEADER_TIMEOUT` to send a request's headers (a slow-loris
//! client that trickles them is cut off), a connection lives at most `CONNECTION_DEADLINE`
//! (a slow body too), and at most `MAX_CONNECTIONS` are served at once; more are closed as they
//! are accepted.
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
    /// Counts one job that ended in `state` after `elapsed`.
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
    /// Counts one delivery to `source` with its `result` (`accepted`, `rejected`, `busy`).
    pub fn record(&self, source: &str, result: &'static str) {
        let mut counts = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *counts.entry((source.to_string(), result)).or_default() += 1;
    }

    fn snapshot(&self) -> BTreeMap<(String, &'static str), u64> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// The Prometheus text for the pipeline's current state.
pub async fn render(pipeline: &Pipeline) -> crate::Result<String> {
    let mut out = String::new();
    let counts = pipeline.jobs().counts().await?;
    out.push_str("# HELP fstgate_jobs Jobs in the job store, by state.\n# TYPE fstgate_jobs gauge\n");
    for (state, n) in counts {
        let _ = writeln!(out, "fstgate_jobs{{state=\"{}\"}} {n}", state.as_str());
    }
    // The autoscaling signal: what waits for a worker now, and for how long.
    let queue = pipeline.jobs().queue().await?;
    let _ = writeln!(
        out,
        "# HELP fstgate_queue_depth Queued jobs due now (not waiting for a back-off), across all watchers.\n\
         # TYPE fstgate_queue_depth gauge\nfstgate_queue_depth {}",
        queue.due
    );
    let _ = writeln!(
        out,
        "# HELP fstgate_queue_oldest_age_seconds How long the longest-waiting due job has waited; 0 when none.\n\
         # TYPE fstgate_queue_oldest_age_seconds gauge\nfstgate_queue_oldest_age_seconds {:.3}",
        queue.oldest_due_age_seconds
    );
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
    for (source, poll) in pipeline.jobs().last_polls().await? {
        let at = poll.at;
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
    match render(&pipeline).await {
        Ok(text) => (StatusCode::OK, [("content-type", "text/plain; version=0.0.4")], text),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "text/plain")], format!("{e}\n")),
    }
}

async fn health(State(pipeline): State<Arc<Pipeline>>) -> impl IntoResponse {
    let stale_after = 3.0 * pipeline.config.poll_interval_seconds;
    let polls = match pipeline.jobs().last_polls().await {
        Ok(polls) => polls,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    };
    let grace = now() - pipeline.started_at < stale_after;
    let stale: Vec<&str> = pipeline
        .config
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .filter(|name| polls.get(*name).is_none_or(|poll| poll.age_seconds > stale_after))
        .collect();
    if stale.is_empty() || grace {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not polled within {stale_after} s: {}\n", stale.join(", ")))
    }
}

/// Longest a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one connection stays open, whatever it does: a scrape, a health check or a webhook
/// delivery takes well under a second, and a client that keeps its connection reconnects.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(60);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

/// How long clients may take and how many are served at once.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionBounds {
    /// Longest a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// Longest one connection stays open.
    pub connection_deadline: Duration,
    /// Connections served at once; more are closed as they are accepted.
    pub max_connections: usize,
}

impl Default for ConnectionBounds {
    fn default() -> Self {
        ConnectionBounds {
            header_timeout: HEADER_TIMEOUT,
            connection_deadline: CONNECTION_DEADLINE,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Which endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    /// `POST /webhooks/<source>`.
    pub webhooks: bool,
    /// `/healthz` and `/metrics`.
    pub observability: bool,
}

/// Serves `endpoints` on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    pipeline: Arc<Pipeline>,
    endpoints: Endpoints,
) -> std::io::Result<()> {
    let mut app = Router::new();
    if endpoints.observability {
        app = app.route("/metrics", get(metrics)).route("/healthz", get(health));
    }
    if endpoints.webhooks {
        app = app.merge(super::webhooks::routes());
    }
    serve_bounded(listener, app.with_state(pipeline), ConnectionBounds::default()).await
}

/// Serves `app` on `listener` within `bounds`, one HTTP/1 connection per task, until the
/// process ends.
pub async fn serve_bounded(
    listener: tokio::net::TcpListener,
    app: Router,
    bounds: ConnectionBounds,
) -> std::io::Result<()> {
    let open = Arc::new(tokio::sync::Semaphore::new(bounds.max_connections));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors, or a connection reset before it was taken: not fatal.
            Err(e) => {
                tracing::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(bounds.header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            // Past the deadline the connection is dropped, closing the socket.
            let _ = tokio::time::timeout(bounds.connection_deadline, connection).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::body::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    const BOUNDS: ConnectionBounds = ConnectionBounds {
        header_timeout: Duration::from_millis(300),
        connection_deadline: Duration::from_secs(2),
        max_connections: 2,
    };

    async fn server() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new().route("/", get(|| async { "ok" }).post(|body: Bytes| async move { body }));
        tokio::spawn(serve_bounded(listener, app, BOUNDS));
        address
    }

    /// Reads until the server closes the connection (or 5 s pass): what it sent, and when.
    async fn until_closed(stream: &mut TcpStream) -> (String, Duration) {
        let started = Instant::now();
        let mut received = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await;
        (String::from_utf8_lossy(&received).into_owned(), started.elapsed())
    }

    /// A POST whose body never finishes: past the headers, so only the deadline ends it.
    async fn trickling_body(address: std::net::SocketAddr) -> TcpStream {
        let mut client = TcpStream::connect(address).await.unwrap();
        client.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nx").await.unwrap();
        client
    }

    #[tokio::test]
    async fn slow_headers_slow_bodies_and_too_many_connections_are_cut_off() {
        let address = server().await;

        // A well-behaved request is answered.
        let mut client = TcpStream::connect(address).await.unwrap();
        client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let (answer, _) = until_closed(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");

        // Headers trickled in and never finished: cut off at the header timeout, well before the
        // connection deadline, and not served.
        let mut slow = TcpStream::connect(address).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let (answer, waited) = until_closed(&mut slow).await;
        assert!(!answer.contains("200"), "{answer}");
        assert!(waited < BOUNDS.connection_deadline, "closed after {waited:?}");

        // Two bodies that never finish hold both connections; a third is closed as it is accepted.
        let mut held = [trickling_body(address).await, trickling_body(address).await];
        let mut third = TcpStream::connect(address).await.unwrap();
        let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (answer, _) = until_closed(&mut third).await;
        assert!(answer.is_empty(), "{answer:?}");

        // The held connections end at the deadline (not at the header timeout), and the server
        // takes new ones again.
        for kept in &mut held {
            let (answer, waited) = until_closed(kept).await;
            assert!(!answer.contains("200"), "{answer}");
            assert!(waited < Duration::from_secs(5), "a trickling body outlived the deadline: {waited:?}");
        }
        let mut again = TcpStream::connect(address).await.unwrap();
        again.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let (answer, _) = until_closed(&mut again).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}
