//! ECDSA P-256 keys (what OpenSSF model signing accepts). Private keys load from a PEM file or
//! an environment variable and never appear in logs, reports or errors: their Debug output is
//! redacted and parse errors name only where the key came from. A signing key may carry the
//! X.509 chain that certifies it (see certificate.rs).
use std::fmt;
use std::path::Path;

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey as EcSigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

use super::certificate::CertificateChain;
use crate::error::{Error, Result};

fn key_error(origin: &str, reason: &str) -> Error {
    Error::Key(format!("{origin}: {reason}"))
}

/// A private signing key (cloned into each job that signs; never printed), with the certificate
/// chain that certifies it when the organisation signs with a PKI.
#[derive(Clone)]
pub struct SigningKey {
    key: EcSigningKey,
    origin: String,
    certificate_chain: Option<CertificateChain>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(<redacted>, from {})", self.origin)
    }
}

impl SigningKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        SigningKey {
            key: EcSigningKey::random(&mut rand_core::OsRng),
            origin: "generated".into(),
            certificate_chain: None,
        }
    }

    /// Parses a PKCS#8 ("PRIVATE KEY") or SEC1 ("EC PRIVATE KEY") PEM. `origin` says where it
    /// came from, for errors; the PEM itself is never echoed.
    pub fn from_pem(pem: &str, origin: &str) -> Result<Self> {
        let key = EcSigningKey::from_pkcs8_pem(pem)
            .or_else(|_| p256::SecretKey::from_sec1_pem(pem).map(EcSigningKey::from))
            .map_err(|_| key_error(origin, "not a PEM ECDSA P-256 private key"))?;
        Ok(SigningKey { key, origin: origin.to_string(), certificate_chain: None })
    }

    /// Reads the key from a PEM file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let pem = std::fs::read_to_string(path).map_err(|e| key_error(&path.display().to_string(), &e.to_string()))?;
        Self::from_pem(&pem, &path.display().to_string())
    }

    /// Reads the PEM from environment variable `name`.
    pub fn from_env(name: &str) -> Result<Self> {
        let pem = std::env::var(name).map_err(|_| key_error(&format!("environment variable {name}"), "not set"))?;
        Self::from_pem(&pem, &format!("environment variable {name}"))
    }

    /// Signs with the certificate chain (leaf first) read from `chain`: the signatures then
    /// carry the chain, and verifiers holding its root need no copy of the public key. Refused
    /// when the leaf certifies another key.
    pub fn with_certificate_chain(self, chain: &Path) -> Result<Self> {
        let certificate_chain = CertificateChain::from_file(chain)?;
        let certified = PublicKey::from_spki_der(&certificate_chain.leaf_spki()?)
            .map_err(|_| key_error(&chain.display().to_string(), "the certificate's key is not ECDSA P-256"))?;
        if certified != self.public() {
            return Err(key_error(
                &chain.display().to_string(),
                &format!("the first certificate certifies another key than the signing key from {}", self.origin),
            ));
        }
        Ok(SigningKey { certificate_chain: Some(certificate_chain), ..self })
    }

    /// The chain certifying this key, when it signs with one.
    pub fn certificate_chain(&self) -> Option<&CertificateChain> {
        self.certificate_chain.as_ref()
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(*self.key.verifying_key())
    }

    /// ASN.1 DER ECDSA signature over SHA-256 of `message` (RFC 6979 nonces).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: Signature = self.key.sign(message);
        signature.to_der().as_bytes().to_vec()
    }

    /// PKCS#8 PEM of the private key (for `fstgate keygen` only).
    pub fn to_pem(&self) -> Result<String> {
        Ok(self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| Error::Key("cannot encode the private key".into()))?
            .to_string())
    }
}

/// A public verification key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl PublicKey {
    /// Parses an SPKI ("PUBLIC KEY") PEM.
    pub fn from_pem(pem: &str, origin: &str) -> Result<Self> {
        VerifyingKey::from_public_key_pem(pem)
            .map(PublicKey)
            .map_err(|_| key_error(origin, "not a PEM ECDSA P-256 public key"))
    }

    /// Parses a DER SubjectPublicKeyInfo (as a certificate holds it).
    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        VerifyingKey::from_public_key_der(der)
            .map(PublicKey)
            .map_err(|_| Error::Attestation("the certified key is not an ECDSA P-256 public key".into()))
    }

    /// Reads an SPKI PEM file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let pem = std::fs::read_to_string(path).map_err(|e| key_error(&path.display().to_string(), &e.to_string()))?;
        Self::from_pem(&pem, &path.display().to_string())
    }

    /// SPKI PEM text.
    pub fn to_pem(&self) -> String {
        self.0.to_public_key_pem(LineEnding::LF).expect("a valid P-256 point encodes")
    }

    /// hex sha256 of the PEM text: model_signing's key hint, and our key id.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.to_pem().as_bytes()))
    }

    /// Checks a DER signature over `message`.
    pub fn verify(&self, message: &[u8], der_signature: &[u8]) -> bool {
        Signature::from_der(der_signature).is_ok_and(|signature| self.0.verify(message, &signature).is_ok())
    }
}

/// Writes a new key pair: `private` with mode 0600 (created exclusively: an existing key is never
/// overwritten) and `public` beside it.
pub fn generate_files(private: &Path, public: &Path) -> Result<PublicKey> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = SigningKey::generate();
    let write_error = |path: &Path, e: std::io::Error| Error::Write { path: path.to_path_buf(), source: e };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(private)
        .map_err(|e| write_error(private, e))?;
    file.write_all(key.to_pem()?.as_bytes()).map_err(|e| write_error(private, e))?;
    file.sync_all().map_err(|e| write_error(private, e))?;
    let public_key = key.public();
    crate::fsutil::write_atomic(public, public_key.to_pem().as_bytes())?;
    Ok(public_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_reject_other_messages_and_keys() {
        let key = SigningKey::generate();
        let signature = key.sign(b"payload");
        assert!(key.public().verify(b"payload", &signature));
        assert!(!key.public().verify(b"payload!", &signature));
        assert!(!SigningKey::generate().public().verify(b"payload", &signature));
        assert!(!key.public().verify(b"payload", b"not der"));
    }

    #[test]
    fn pem_round_trip_and_secret_free_errors() {
        let key = SigningKey::generate();
        let pem = key.to_pem().unwrap();
        let again = SigningKey::from_pem(&pem, "test").unwrap();
        assert_eq!(again.public(), key.public());
        let public = PublicKey::from_pem(&key.public().to_pem(), "test").unwrap();
        assert_eq!(public, key.public());
        // A broken key: the error names the origin, never the content.
        let broken = pem.replace('A', "B");
        let err = SigningKey::from_pem(&broken, "env FSTGATE_SIGNING_KEY").unwrap_err().to_string();
        assert!(err.contains("env FSTGATE_SIGNING_KEY") && !err.contains("BEGIN"), "{err}");
        assert!(!format!("{key:?}").contains("BEGIN") && format!("{key:?}").contains("redacted"));
    }

    #[test]
    fn keygen_writes_a_private_key_only_its_owner_can_read_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = (dir.path().join("k.pem"), dir.path().join("k.pub"));
        let key = generate_files(&private, &public).unwrap();
        assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(SigningKey::from_file(&private).unwrap().public(), key);
        assert_eq!(PublicKey::from_file(&public).unwrap(), key);
        assert!(generate_files(&private, &public).is_err());
    }
}
