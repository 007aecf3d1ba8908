//! MLflow's webhook deliveries. Each is signed: `X-MLflow-Signature: v1,<base64 HMAC-SHA256>`
//! over `<delivery id>.<timestamp>.<body>` with the webhook's secret, and carries
//! `X-MLflow-Delivery-Id` and `X-MLflow-Timestamp` (Unix seconds). A delivery is accepted only
//! with a valid signature and a timestamp within `TOLERANCE_SECONDS` of now; the caller then
//! refuses a delivery id it has seen (replay).
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// Header carrying `v1,<base64 HMAC-SHA256>` (lowercase, as HTTP header names compare).
pub const SIGNATURE_HEADER: &str = "x-mlflow-signature";
/// Header carrying the delivery's unique id, signed and checked for replays.
pub const DELIVERY_ID_HEADER: &str = "x-mlflow-delivery-id";
/// Header carrying the delivery's time, in Unix seconds, signed.
pub const TIMESTAMP_HEADER: &str = "x-mlflow-timestamp";
/// How far a delivery's timestamp may be from the receiver's clock (either way).
pub const TOLERANCE_SECONDS: i64 = 300;

/// Why a delivery was refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// A required header is absent; its name.
    #[error("no {0} header")]
    MissingHeader(&'static str),
    /// The signature is missing its `v1,` prefix, is not base64, or does not verify.
    #[error("the signature does not match the body (wrong secret, or the delivery was altered)")]
    BadSignature,
    /// The timestamp is too far from the receiver's clock: now minus the timestamp, in seconds.
    #[error("the timestamp is {0} s from now, outside the {TOLERANCE_SECONDS} s window")]
    OutsideWindow(i64),
    /// The timestamp or body cannot be read; what is wrong.
    #[error("malformed delivery: {0}")]
    Malformed(String),
}

/// What a delivery asks for.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// A model version was registered.
    VersionCreated {
        /// The registered model's name.
        name: String,
        /// The new version.
        version: String,
    },
    /// A tag was set on a model version.
    VersionTagSet {
        /// The registered model's name.
        name: String,
        /// The tagged version.
        version: String,
        /// The tag's name.
        key: String,
    },
    /// Events fstgate does not act on (aliases, prompts, ...).
    Other {
        /// The delivery's `entity` (e.g. `model_version_alias`).
        entity: String,
        /// The delivery's `action` (e.g. `created`).
        action: String,
    },
}

/// The headers a delivery is authenticated by.
pub struct Delivery<'a> {
    /// `X-MLflow-Delivery-Id`.
    pub id: &'a str,
    /// `X-MLflow-Timestamp`, Unix seconds as text.
    pub timestamp: &'a str,
    /// `X-MLflow-Signature`, `v1,<base64 HMAC-SHA256>`.
    pub signature: &'a str,
}

/// Checks the signature, then the timestamp window.
pub fn verify(secret: &[u8], delivery: &Delivery<'_>, body: &[u8], now: i64) -> Result<(), Rejection> {
    let signature = delivery.signature.strip_prefix("v1,").ok_or(Rejection::BadSignature)?;
    let signature = base64::engine::general_purpose::STANDARD.decode(signature).map_err(|_| Rejection::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(delivery.id.as_bytes());
    mac.update(b".");
    mac.update(delivery.timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    // Constant-time comparison.
    mac.verify_slice(&signature).map_err(|_| Rejection::BadSignature)?;
    let timestamp: i64 =
        delivery.timestamp.trim().parse().map_err(|_| Rejection::Malformed("the timestamp is not a number".into()))?;
    let skew = now - timestamp;
    if skew.abs() > TOLERANCE_SECONDS {
        return Err(Rejection::OutsideWindow(skew));
    }
    Ok(())
}

/// Reads an authenticated delivery's body: `{"entity", "action", "timestamp", "data"}`.
pub fn parse_event(body: &[u8]) -> Result<Event, Rejection> {
    #[derive(Deserialize)]
    struct Envelope {
        entity: String,
        action: String,
        #[serde(default)]
        data: serde_json::Value,
    }
    #[derive(Deserialize)]
    struct VersionData {
        name: String,
        version: String,
        key: Option<String>,
    }
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| Rejection::Malformed(e.to_string()))?;
    let version = || {
        serde_json::from_value::<VersionData>(envelope.data.clone())
            .map_err(|e| Rejection::Malformed(format!("{}.{}: {e}", envelope.entity, envelope.action)))
    };
    Ok(match (envelope.entity.as_str(), envelope.action.as_str()) {
        ("model_version", "created") => {
            let data = version()?;
            Event::VersionCreated { name: data.name, version: data.version }
        }
        ("model_version_tag", "set") => {
            let data = version()?;
            let key = data.key.ok_or_else(|| Rejection::Malformed("model_version_tag.set without a key".into()))?;
            Event::VersionTagSet { name: data.name, version: data.version, key }
        }
        _ => Event::Other { entity: envelope.entity, action: envelope.action },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signs as MLflow's `_generate_hmac_signature` does.
    fn sign(secret: &str, id: &str, timestamp: &str, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
    }

    const BODY: &str = r#"{"entity": "model_version", "action": "created", "timestamp": "2026-11-25T10:00:00+00:00", "data": {"name": "fashion-cnn", "version": "3", "source": "models:/m-1", "run_id": null, "tags": {}, "description": null}}"#;

    #[test]
    fn a_signed_fresh_delivery_is_accepted_and_read() {
        let signature = sign("s3cret", "d-1", "1795600000", BODY);
        let delivery = Delivery { id: "d-1", timestamp: "1795600000", signature: &signature };
        assert_eq!(verify(b"s3cret", &delivery, BODY.as_bytes(), 1795600100), Ok(()));
        assert_eq!(
            parse_event(BODY.as_bytes()).unwrap(),
            Event::VersionCreated { name: "fashion-cnn".into(), version: "3".into() }
        );
    }

    #[test]
    fn forgeries_are_named() {
        let signature = sign("s3cret", "d-1", "1795600000", BODY);
        let delivery = Delivery { id: "d-1", timestamp: "1795600000", signature: &signature };
        let now = 1795600000;
        assert_eq!(verify(b"other", &delivery, BODY.as_bytes(), now), Err(Rejection::BadSignature));
        let altered = BODY.replace("\"3\"", "\"4\"");
        assert_eq!(verify(b"s3cret", &delivery, altered.as_bytes(), now), Err(Rejection::BadSignature));
        // The id and timestamp are signed too: neither can be swapped.
        let new_id = Delivery { id: "d-2", ..delivery };
        assert_eq!(verify(b"s3cret", &new_id, BODY.as_bytes(), now), Err(Rejection::BadSignature));
        let unversioned = Delivery { signature: signature.trim_start_matches("v1,"), ..delivery };
        assert_eq!(verify(b"s3cret", &unversioned, BODY.as_bytes(), now), Err(Rejection::BadSignature));
        assert_eq!(verify(b"s3cret", &delivery, BODY.as_bytes(), now + 301), Err(Rejection::OutsideWindow(301)));
        assert_eq!(verify(b"s3cret", &delivery, BODY.as_bytes(), now - 301), Err(Rejection::OutsideWindow(-301)));
    }

    #[test]
    fn other_events_and_bad_bodies() {
        let alias = r#"{"entity": "model_version_alias", "action": "created", "data": {}}"#;
        assert!(matches!(parse_event(alias.as_bytes()), Ok(Event::Other { .. })));
        let tag = r#"{"entity": "model_version_tag", "action": "set", "data": {"name": "m", "version": "1", "key": "fstgate.rerun", "value": "2"}}"#;
        assert_eq!(
            parse_event(tag.as_bytes()).unwrap(),
            Event::VersionTagSet { name: "m".into(), version: "1".into(), key: "fstgate.rerun".into() }
        );
        let missing = r#"{"entity": "model_version", "action": "created", "data": {"name": "m"}}"#;
        assert!(matches!(parse_event(missing.as_bytes()), Err(Rejection::Malformed(_))));
        assert!(matches!(parse_event(b"not json"), Err(Rejection::Malformed(_))));
    }
}
