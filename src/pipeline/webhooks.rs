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
use crate::mlflow::webhook;
use crate::sources::{WebhookAction, WebhookRejection};

/// Accepted deliveries whose follow-up (a registry lookup, a listing, a download to hash) may
/// run at once: each is a task holding a download, so without a bound a burst of deliveries
/// would start as many.
pub const MAX_FOLLOWUPS: usize = 16;

/// The webhook route, `POST /webhooks/{source}`, for the watcher's server.
pub fn routes() -> Router<Arc<Pipeline>> {
    Router::new().route("/webhooks/{source}", post(receive))
}

type Answer = (StatusCode, String);

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
        Some(secret) => accept(&pipeline, index, secret, &headers, &body).await,
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
    if action == WebhookAction::Nothing {
        return (StatusCode::OK, "nothing to do\n".into());
    }
    // Answer at once; downloading and hashing the upload may take longer than the sender waits.
    tokio::spawn(async move {
        let _permit = permit;
        let source = &pipeline.sources[index];
        let queued = match action {
            WebhookAction::Version { name, version } => match source.lookup(&name, &version).await {
                Ok(Some(upload)) => pipeline.enqueue(source.as_ref(), &upload).await,
                Ok(None) => Ok(false),
                Err(e) => Err(e),
            },
            WebhookAction::Poll => pipeline.poll_source(source.as_ref()).await.map(|n| n > 0),
            WebhookAction::Nothing => Ok(false),
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

/// Authenticates the delivery with the source's secret, refuses a replayed one (a delivery id
/// seen before, kept in the job store for twice the signature window), and reads its request.
async fn accept(
    pipeline: &Pipeline,
    index: usize,
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<WebhookAction, Answer> {
    let source = &pipeline.sources[index];
    let refused = |rejection: WebhookRejection| {
        let status = match rejection {
            WebhookRejection::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            WebhookRejection::Malformed(_) => StatusCode::BAD_REQUEST,
        };
        (status, format!("{rejection}\n"))
    };
    let request = source.webhook(secret, headers, body, crate::jobs::now() as i64).map_err(refused)?;
    if let Some(id) = &request.delivery_id {
        let keep = std::time::Duration::from_secs(2 * webhook::TOLERANCE_SECONDS as u64);
        match pipeline.jobs.first_delivery(source.name(), id, keep).await {
            Ok(true) => {}
            Ok(false) => return Err((StatusCode::CONFLICT, format!("delivery {id} was already received\n"))),
            Err(e) => return Err((StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"))),
        }
    }
    request.action.map_err(refused)
}
