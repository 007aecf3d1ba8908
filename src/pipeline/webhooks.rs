//! `POST /webhooks/<source>`: registry events make the watcher act at once instead of at its
//! next poll. An MLflow source takes MLflow's signed deliveries (MODEL_VERSION CREATED, and
//! MODEL_VERSION_TAG SET of `fstgate.rerun`); an object-store source takes S3 event
//! notifications relayed with `Authorization: Bearer <secret>`. Every delivery is authenticated
//! before anything else is read, a forged, stale or replayed one gets a 4xx and changes nothing,
//! and a source without a configured secret takes none. Deliveries can be lost, so polling
//! still reconciles.
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use super::Pipeline;
use crate::mlflow::webhook::{self, Delivery, Event, Rejection};
use crate::sources::mlflow::RERUN_TAG;
use crate::sources::{Source, object_store};

/// Accepted deliveries whose follow-up (a registry lookup, a listing, a download to hash) may
/// run at once: each is a task holding a download, so without a bound a burst of deliveries
/// would start as many.
pub const MAX_FOLLOWUPS: usize = 16;

/// The webhook route, `POST /webhooks/{source}`, for the watcher's server.
pub fn routes() -> Router<Arc<Pipeline>> {
    Router::new().route("/webhooks/{source}", post(receive))
}

type Answer = (StatusCode, String);

/// What the delivery asks the pipeline to do, once accepted.
enum Action {
    /// Look at one registry version.
    Version {
        name: String,
        version: String,
    },
    /// List the source again.
    Poll,
    Nothing,
}

async fn receive(
    State(pipeline): State<Arc<Pipeline>>,
    Path(source_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let Some(index) = pipeline.sources.iter().position(|s| s.name() == source_name) else {
        return (StatusCode::NOT_FOUND, format!("no source named `{source_name}`\n"));
    };
    // Taken before the delivery is verified and recorded: a sender told 503 retries it later.
    let Ok(permit) = pipeline.followups.clone().try_acquire_owned() else {
        pipeline.deliveries.record(&source_name, "busy");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_FOLLOWUPS} deliveries are being followed up; retry later (polling reconciles)\n"),
        );
    };
    let result = match &pipeline.webhook_secrets[index] {
        None => Err((
            StatusCode::FORBIDDEN,
            format!("webhooks are not enabled for source `{source_name}` (set webhook_secret_env)\n"),
        )),
        Some(secret) => match &pipeline.sources[index] {
            Source::Mlflow(_) => mlflow_delivery(&pipeline, &source_name, secret, &headers, &body).await,
            Source::ObjectStore(source) => s3_notification(source, secret, &headers, &body),
        },
    };
    let action = match result {
        Ok(action) => action,
        Err((status, message)) => {
            pipeline.deliveries.record(&source_name, "rejected");
            tracing::warn!(source = %source_name, status = status.as_u16(), "webhook refused: {}", message.trim_end());
            return (status, message);
        }
    };
    pipeline.deliveries.record(&source_name, "accepted");
    if matches!(action, Action::Nothing) {
        return (StatusCode::OK, "nothing to do\n".into());
    }
    // Answer at once; downloading and hashing the upload may take longer than the sender waits.
    tokio::spawn(async move {
        let _permit = permit;
        let source = &pipeline.sources[index];
        let queued = match action {
            Action::Version { name, version } => match source {
                Source::Mlflow(registry) => match registry.lookup(&name, &version).await {
                    Ok(Some(upload)) => pipeline.enqueue(source, &upload).await,
                    Ok(None) => Ok(false),
                    Err(e) => Err(e),
                },
                Source::ObjectStore(_) => Ok(false),
            },
            Action::Poll => pipeline.poll_source(source).await.map(|n| n > 0),
            Action::Nothing => Ok(false),
        };
        match queued {
            Ok(true) => pipeline.wakeup.notify_one(),
            Ok(false) => {}
            // The next poll reconciles.
            Err(e) => tracing::warn!(source = source.name(), "webhook follow-up failed: {e}"),
        }
    });
    (StatusCode::ACCEPTED, "accepted\n".into())
}

async fn mlflow_delivery(
    pipeline: &Pipeline,
    source: &str,
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Action, Answer> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or((StatusCode::UNAUTHORIZED, format!("{}\n", Rejection::MissingHeader(name))))
    };
    let delivery = Delivery {
        id: header(webhook::DELIVERY_ID_HEADER)?,
        timestamp: header(webhook::TIMESTAMP_HEADER)?,
        signature: header(webhook::SIGNATURE_HEADER)?,
    };
    let now = crate::jobs::now() as i64;
    webhook::verify(secret.as_bytes(), &delivery, body, now).map_err(|rejection| {
        let status = match rejection {
            Rejection::BadSignature | Rejection::MissingHeader(_) => StatusCode::UNAUTHORIZED,
            Rejection::OutsideWindow(_) | Rejection::Malformed(_) => StatusCode::BAD_REQUEST,
        };
        (status, format!("{rejection}\n"))
    })?;
    let keep = std::time::Duration::from_secs(2 * webhook::TOLERANCE_SECONDS as u64);
    match pipeline.jobs.first_delivery(source, delivery.id, keep).await {
        Ok(true) => {}
        Ok(false) => return Err((StatusCode::CONFLICT, format!("delivery {} was already received\n", delivery.id))),
        Err(e) => return Err((StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"))),
    }
    match webhook::parse_event(body) {
        Ok(Event::VersionCreated { name, version }) => Ok(Action::Version { name, version }),
        Ok(Event::VersionTagSet { name, version, key }) if key == RERUN_TAG => Ok(Action::Version { name, version }),
        Ok(_) => Ok(Action::Nothing),
        Err(rejection) => Err((StatusCode::BAD_REQUEST, format!("{rejection}\n"))),
    }
}

fn s3_notification(
    source: &object_store::ObjectStoreSource,
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Action, Answer> {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if !token.is_some_and(|token| constant_time_eq(token.as_bytes(), secret.as_bytes())) {
        return Err((StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n".into()));
    }
    let keys = object_store::notified_keys(body).map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}\n")))?;
    let new_marker = keys.iter().any(|(bucket, key)| source.is_marker_key(bucket, key));
    Ok(if new_marker { Action::Poll } else { Action::Nothing })
}

/// Compares secrets without leaking, through timing, how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
