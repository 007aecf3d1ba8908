//! DSSE envelopes (github.com/secure-systems-lab/dsse): a payload, its type, and signatures over
//! PAE(type, payload) = "DSSEv1" SP len(type) SP type SP len(payload) SP payload.
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::keys::{PublicKey, SigningKey};
use crate::error::{Error, Result};

/// Payload type of an envelope holding an in-toto Statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// A DSSE envelope: a base64 payload, its type, and signatures over their PAE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// The signed payload, base64 (standard alphabet, padded).
    pub payload: String,
    /// The payload's media type, e.g. [`IN_TOTO_PAYLOAD_TYPE`].
    pub payload_type: String,
    /// Signatures over `pae(payload_type, payload)`; one valid one is enough.
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    pub sig: String,
}

/// Pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// Signs `payload` of `payload_type`; `keyid` may be empty (model_signing uses "").
    pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey, keyid: &str) -> Self {
        let signature = key.sign(&pae(payload_type, payload));
        Envelope {
            payload: STANDARD.encode(payload),
            payload_type: payload_type.to_string(),
            signatures: vec![EnvelopeSignature { keyid: keyid.to_string(), sig: STANDARD.encode(signature) }],
        }
    }

    /// The payload, once a signature by `key` over it checks out and its type is `expected_type`.
    pub fn verify(&self, key: &PublicKey, expected_type: &str) -> Result<Vec<u8>> {
        if self.payload_type != expected_type {
            return Err(Error::Attestation(format!(
                "payload type is `{}`, expected `{expected_type}`",
                self.payload_type
            )));
        }
        let payload = STANDARD.decode(&self.payload).map_err(|_| Error::Attestation("payload is not base64".into()))?;
        let message = pae(&self.payload_type, &payload);
        let signed =
            self.signatures.iter().any(|s| STANDARD.decode(&s.sig).is_ok_and(|sig| key.verify(&message, &sig)));
        if signed {
            Ok(payload)
        } else {
            Err(Error::Attestation(format!("no valid signature by key {} over the envelope", key.fingerprint())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn envelopes_verify_and_reject_tampering() {
        let key = SigningKey::generate();
        let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}", &key, "");
        assert_eq!(envelope.verify(&key.public(), IN_TOTO_PAYLOAD_TYPE).unwrap(), b"{\"a\":1}");

        let mut other_type = envelope.clone();
        other_type.payload_type = "text/plain".into();
        assert!(other_type.verify(&key.public(), "text/plain").unwrap_err().to_string().contains("no valid signature"));
        assert!(envelope.verify(&key.public(), "text/plain").unwrap_err().to_string().contains("payload type is"));

        let mut changed = envelope.clone();
        changed.payload = STANDARD.encode(b"{\"a\":2}");
        assert!(changed.verify(&key.public(), IN_TOTO_PAYLOAD_TYPE).is_err());
        assert!(envelope.verify(&SigningKey::generate().public(), IN_TOTO_PAYLOAD_TYPE).is_err());
    }
}
