//! X.509 certificate chains: how an organisation with a PKI signs releases. A signing key may
//! carry the chain that certifies it (leaf first, as model_signing's `sign certificate` writes
//! it into the bundle); a verifier holding only the organisation's root certificates checks the
//! chain and takes the signing key from its leaf.
//!
//! The chain is checked by rustls-webpki (the same code that checks TLS servers here) with the
//! rules model_signing applies: a path to one of the given roots, every certificate valid at the
//! signing time, and a leaf usable for signing (key usage `digitalSignature`, or the extended key
//! usage `codeSigning`; an extended key usage that names other purposes only is refused).
use std::path::Path;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use x509_cert::der::Decode;
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage};

use crate::error::{Error, Result};

/// DER body of id-kp-codeSigning (1.3.6.1.5.5.7.3.3), as webpki compares purposes.
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

fn certificate_error(origin: &str, reason: impl std::fmt::Display) -> Error {
    Error::Key(format!("{origin}: {reason}"))
}

/// Reads every certificate of a PEM text, refusing a text that holds none.
fn parse_pem(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| certificate_error(origin, format!("not a PEM certificate list ({e})")))?;
    if certificates.is_empty() {
        return Err(certificate_error(origin, "holds no PEM certificate"));
    }
    Ok(certificates)
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| certificate_error(&path.display().to_string(), e))
}

/// A certificate chain, leaf (the signing key's certificate) first, then its issuers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateChain {
    certificates: Vec<CertificateDer<'static>>,
}

impl CertificateChain {
    /// Parses a PEM file of one or more certificates, the signing certificate first.
    pub fn from_file(path: &Path) -> Result<Self> {
        let origin = path.display().to_string();
        let chain = CertificateChain { certificates: parse_pem(&read_file(path)?, &origin)? };
        chain.leaf_spki().map_err(|e| certificate_error(&origin, e))?;
        Ok(chain)
    }

    /// A chain from DER certificates (as a bundle carries them), leaf first.
    pub fn from_der(certificates: Vec<Vec<u8>>) -> Result<Self> {
        if certificates.is_empty() {
            return Err(Error::Attestation("the certificate chain is empty".into()));
        }
        Ok(CertificateChain { certificates: certificates.into_iter().map(CertificateDer::from).collect() })
    }

    /// The certificates' DER encodings, leaf first.
    pub fn der(&self) -> impl Iterator<Item = &[u8]> {
        self.certificates.iter().map(|c| c.as_ref())
    }

    fn leaf(&self) -> Result<x509_cert::Certificate> {
        x509_cert::Certificate::from_der(&self.certificates[0])
            .map_err(|e| Error::Attestation(format!("the signing certificate is not DER X.509: {e}")))
    }

    /// The signing certificate's subject, as `CN=...,O=...`.
    pub fn subject(&self) -> Result<String> {
        Ok(self.leaf()?.tbs_certificate.subject.to_string())
    }

    /// The DER SubjectPublicKeyInfo the signing certificate certifies (not yet trusted: see
    /// [`Self::verify`]).
    pub fn leaf_spki(&self) -> Result<Vec<u8>> {
        let leaf = webpki::EndEntityCert::try_from(&self.certificates[0])
            .map_err(|e| Error::Attestation(format!("the signing certificate cannot be parsed: {e}")))?;
        Ok(leaf.subject_public_key_info().as_ref().to_vec())
    }

    /// Checks that the chain leads to one of `roots`, that every certificate on the path was
    /// valid at `signed_at`, and that the leaf may sign; returns the leaf's DER
    /// SubjectPublicKeyInfo.
    pub fn verify(&self, roots: &TrustRoots, signed_at: SystemTime) -> Result<Vec<u8>> {
        let refused = |reason: String| Error::Attestation(format!("the signing certificate is not trusted: {reason}"));
        let anchors = roots
            .certificates
            .iter()
            .map(webpki::anchor_from_trusted_cert)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| refused(format!("a root certificate cannot be used as a trust anchor ({e})")))?;
        let leaf = webpki::EndEntityCert::try_from(&self.certificates[0])
            .map_err(|e| refused(format!("it cannot be parsed ({e})")))?;
        let since_epoch = signed_at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let algorithms = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.all;
        leaf.verify_for_usage(
            algorithms,
            &anchors,
            &self.certificates[1..],
            UnixTime::since_unix_epoch(since_epoch),
            webpki::KeyUsage::required_if_present(CODE_SIGNING),
            None,
            None,
        )
        .map_err(|e| {
            refused(format!("{e} (checked at the signing time, {})", humantime::format_rfc3339_seconds(signed_at)))
        })?;
        self.check_signing_usage().map_err(refused)?;
        Ok(leaf.subject_public_key_info().as_ref().to_vec())
    }

    /// model_signing's rule: the leaf states a usage, and it includes signing.
    fn check_signing_usage(&self) -> std::result::Result<(), String> {
        let leaf = self.leaf().map_err(|e| e.to_string())?;
        let key_usage =
            leaf.tbs_certificate.get::<KeyUsage>().map_err(|e| format!("its key usage is malformed ({e})"))?;
        let extended = leaf
            .tbs_certificate
            .get::<ExtendedKeyUsage>()
            .map_err(|e| format!("its extended key usage is malformed ({e})"))?;
        match (key_usage, extended) {
            (Some((_, usage)), _) if !usage.digital_signature() => {
                Err("its key usage does not include digitalSignature".into())
            }
            (None, None) => Err("it states neither a key usage nor an extended key usage for signing".into()),
            // An extended key usage without codeSigning was refused by the chain check.
            _ => Ok(()),
        }
    }
}

/// The root certificates a verifier trusts (`fstgate verify --ca`).
#[derive(Debug, Clone)]
pub struct TrustRoots {
    certificates: Vec<CertificateDer<'static>>,
}

impl TrustRoots {
    /// Parses a PEM file of one or more root certificates.
    pub fn from_file(path: &Path) -> Result<Self> {
        Ok(TrustRoots { certificates: parse_pem(&read_file(path)?, &path.display().to_string())? })
    }
}
