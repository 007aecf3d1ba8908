//! Signed attestations: our verifier accepts what we sign and rejects every tampering with a
//! reason; the real OpenSSF `model_signing` tool (PyPI model-signing 1.1.1) accepts our bundle.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use base64::Engine;
use fstgate::attestation::{self, Envelope, SigningKey};
use fstgate::job::{self, PurifyJob};
use fstgate::policy::{Limits, PolicySet, PolicySpec};
use fstgate::training::Silent;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)
}

/// Purifies the fc fixture on toy data and signs the result into `dir/<name>`.
fn signed_dir(dir: &Path, name: &str, seed: u64, key: &SigningKey, policies: Arc<PolicySet>) -> PathBuf {
    let job =
        PurifyJob { policies: Some(policies), signing_key: Some(key.clone()), ..common::toy_job(dir, name, seed) };
    job::run(&job, &Silent).unwrap();
    job.out
}

/// Everything allowed: the toy model's figures pass these thresholds.
fn lenient() -> Arc<PolicySet> {
    common::thresholds(serde_json::json!({"max_attack_success_rate": 1.0, "max_accuracy_drop_points": 100.0}))
}

/// The required-metadata example plugin, demanding a model name pattern.
fn required_name(dir: &Path, pattern: &str) -> Arc<PolicySet> {
    let config = dir.join("required-metadata.json");
    std::fs::write(&config, serde_json::json!({ "model_name_pattern": pattern }).to_string()).unwrap();
    let plugin = fixture("../../plugin-sdk/examples/prebuilt/required-metadata.wasm");
    let spec = PolicySpec::new(plugin.to_str().unwrap(), Some(&config)).unwrap();
    Arc::new(PolicySet::new(vec![spec], Limits::default()).unwrap())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

fn verify_error(dir: &Path, key: &SigningKey) -> String {
    attestation::verify(dir, &key.public(), None, None).expect_err("verification must fail").to_string()
}

#[test]
fn signed_directory_verifies_and_records_the_decision() {
    let scratch = common::scratch("attest-ok");
    let key = SigningKey::generate();
    let released = signed_dir(&scratch, "released", 0, &key, lenient());
    let verified = attestation::verify(&released, &key.public(), Some(&fixture("heads/fc.pt")), None).unwrap();
    assert_eq!(
        verified.files,
        ["decision.intoto.json", "model.pt", "provenance.intoto.json", "report.html", "report.json"]
    );
    assert!(verified.decision.releasable);
    assert_eq!(verified.decision.decision, "release");
    // The bundle names the model directory by its final name, not the staging directory's.
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(released.join("model.sig")).unwrap()).unwrap();
    let envelope: Envelope = serde_json::from_value(bundle["dsseEnvelope"].clone()).unwrap();
    let payload = base64::engine::general_purpose::STANDARD.decode(envelope.payload).unwrap();
    let statement: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(statement["subject"][0]["name"], "released");

    // A denied model gets a signed decision record too, never marked releasable.
    let denied = signed_dir(&scratch, "denied", 0, &key, required_name(&scratch, "no-such-model-*.pt"));
    let verified = attestation::verify(&denied, &key.public(), None, None).unwrap();
    assert!(!verified.decision.releasable);
    assert_eq!(verified.decision.decision, "deny");
    assert!(verified.decision.policies[0].reasons[0].contains("does not match the required name pattern"));
    let vsa: serde_json::Value = statement_of(&denied.join("decision.intoto.json"));
    assert_eq!(vsa["predicate"]["verificationResult"], "FAILED");
    assert_eq!(vsa["predicate"]["verifiedLevels"].as_array().unwrap().len(), 0);

    // The provenance names the original model and the data by digest.
    let provenance = statement_of(&released.join("provenance.intoto.json"));
    assert_eq!(provenance["predicateType"], "https://slsa.dev/provenance/v1");
    let deps = provenance["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
    let original = deps.iter().find(|d| d["name"] == "original-model").unwrap();
    assert_eq!(original["digest"]["sha256"], fstgate::data::sha256_file(&fixture("heads/fc.pt")).unwrap());
    assert!(deps.iter().any(|d| d["name"] == "policy:builtin:thresholds"));
}

/// A freshly signed directory and its public key file: (scratch dir, signed dir, key.pub).
fn signed_with_public_key(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let scratch = common::scratch(name);
    let key = SigningKey::generate();
    let dir = signed_dir(&scratch, "signed", 0, &key, lenient());
    let public = scratch.join("k.pub");
    std::fs::write(&public, key.public().to_pem()).unwrap();
    std::fs::write(scratch.join("k.pem"), key.to_pem().unwrap().as_bytes()).unwrap();
    (scratch, dir, public)
}

fn statement_of(path: &Path) -> serde_json::Value {
    let envelope: Envelope = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(envelope.payload).unwrap()).unwrap()
}

#[test]
fn every_tampering_is_rejected_with_its_reason() {
    let scratch = common::scratch("attest-tamper");
    let key = SigningKey::generate();
    let good = signed_dir(&scratch, "good", 0, &key, lenient());
    let other = signed_dir(&scratch, "other", 1, &key, lenient());
    let case = |name: &str| {
        let dir = scratch.join(name);
        copy_dir(&good, &dir);
        dir
    };

    let dir = case("model-byte");
    let mut model = std::fs::read(dir.join("model.pt")).unwrap();
    let middle = model.len() / 2;
    model[middle] ^= 1;
    std::fs::write(dir.join("model.pt"), model).unwrap();
    assert!(verify_error(&dir, &key).contains("model.pt does not match its signed sha256"));

    let dir = case("report");
    let report = std::fs::read_to_string(dir.join("report.json")).unwrap().replacen(
        "\"clean_accuracy\": ",
        "\"clean_accuracy\": 0.99",
        1,
    );
    std::fs::write(dir.join("report.json"), report).unwrap();
    assert!(verify_error(&dir, &key).contains("report.json does not match its signed sha256"));

    let dir = case("wrong-key");
    let err = verify_error(&dir, &SigningKey::generate());
    assert!(err.contains("model.sig") && err.contains("no valid signature"), "{err}");

    let dir = case("truncated");
    let text = std::fs::read(dir.join("decision.intoto.json")).unwrap();
    std::fs::write(dir.join("decision.intoto.json"), &text[..text.len() / 2]).unwrap();
    assert!(verify_error(&dir, &key).contains("decision.intoto.json does not match its signed sha256"));
    // Even re-signed over the directory, a truncated envelope is named as such.
    attestation::sign_directory(&dir, "model", "model.sig", &key).unwrap();
    assert!(verify_error(&dir, &key).contains("decision.intoto.json is not a DSSE envelope"));

    let dir = case("added-file");
    std::fs::write(dir.join("extra.bin"), b"smuggled").unwrap();
    assert!(verify_error(&dir, &key).contains("extra.bin is not covered by the signature"));

    // An attestation moved from another model: caught by the bundle, and by the subject digest
    // even when the directory is re-signed with the same key.
    let dir = case("moved");
    std::fs::copy(other.join("provenance.intoto.json"), dir.join("provenance.intoto.json")).unwrap();
    assert!(verify_error(&dir, &key).contains("provenance.intoto.json does not match its signed sha256"));
    attestation::sign_directory(&dir, "model", "model.sig", &key).unwrap();
    assert!(verify_error(&dir, &key).contains("provenance.intoto.json attests another model"));

    // A DSSE signature over another payload type, by the right key.
    let dir = case("payload-type");
    let envelope: Envelope = serde_json::from_slice(&std::fs::read(dir.join("decision.intoto.json")).unwrap()).unwrap();
    let payload = base64::engine::general_purpose::STANDARD.decode(&envelope.payload).unwrap();
    let resigned = Envelope::sign("application/json", &payload, &key, "");
    std::fs::write(dir.join("decision.intoto.json"), serde_json::to_vec(&resigned).unwrap()).unwrap();
    attestation::sign_directory(&dir, "model", "model.sig", &key).unwrap();
    let err = verify_error(&dir, &key);
    assert!(err.contains("payload type is `application/json`, expected `application/vnd.in-toto+json`"), "{err}");

    // The wrong original model is named.
    let err =
        attestation::verify(&good, &key.public(), Some(&fixture("heads/linear.pt")), None).unwrap_err().to_string();
    assert!(err.contains("is not the original model the provenance names"), "{err}");
}

#[test]
fn cli_verify_exits_0_when_all_holds_and_1_with_the_reason() {
    let (scratch, dir, public) = signed_with_public_key("attest-cli");
    let run = |dir: &Path, extra: &[&str]| {
        assert_cmd::Command::cargo_bin("fstgate")
            .unwrap()
            .args(["verify", dir.to_str().unwrap(), "--public-key", public.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let ok = run(&dir, &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stdout));
    // A correctly signed denial is not a release: exit 1 unless the caller accepts denials.
    let key = SigningKey::from_pem(&std::fs::read_to_string(scratch.join("k.pem")).unwrap(), "test").unwrap();
    let denied = signed_dir(&scratch, "denied", 0, &key, required_name(&scratch, "no-such-model-*.pt"));
    let refused = run(&denied, &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stdout));
    assert!(String::from_utf8_lossy(&refused.stdout).contains("the signed decision denies this model"));
    assert_eq!(run(&denied, &["--allow-denied"]).status.code(), Some(0));
    std::fs::write(dir.join("report.json"), b"{}").unwrap();
    let bad = run(&dir, &[]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("report.json does not match its signed sha256"));
}

/// The real OpenSSF tool, installed from PyPI by scripts/model-signing-verify.sh (cached):
/// `model_signing verify MODE DIR TRUST_OPTION TRUST --signature DIR/model.sig`; whether it
/// accepted, and its output.
fn model_signing(mode: &str, dir: &Path, trust_option: &str, trust: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/model-signing-verify.sh");
    let signature = dir.join("model.sig");
    let output = Command::new("bash")
        .arg(&script)
        .args([mode, dir.to_str().unwrap(), trust_option, trust.to_str().unwrap(), "--signature"])
        .arg(&signature)
        .output()
        .unwrap();
    (
        output.status.success(),
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    )
}

#[test]
fn openssf_model_signing_accepts_our_bundle_and_rejects_tampering() {
    let (scratch, dir, public) = signed_with_public_key("attest-openssf");
    let model_signing = |dir: &Path, public: &Path| model_signing("key", dir, "--public_key", public);
    let (accepted, log) = model_signing(&dir, &public);
    assert!(accepted, "model_signing rejected our bundle: {log}");

    let other = scratch.join("other.pub");
    std::fs::write(&other, SigningKey::generate().public().to_pem()).unwrap();
    let (accepted, log) = model_signing(&dir, &other);
    assert!(!accepted, "model_signing accepted another key: {log}");

    let mut model = std::fs::read(dir.join("model.pt")).unwrap();
    model[100] ^= 1;
    std::fs::write(dir.join("model.pt"), model).unwrap();
    let (accepted, log) = model_signing(&dir, &public);
    assert!(!accepted, "model_signing accepted a modified model: {log}");
}

/// Signing with a key an organisation's PKI certified: root -> intermediate -> code-signing leaf.
/// The bundle carries the chain; fstgate and model_signing accept it against the root and refuse
/// it against another CA; a leaf not meant for signing and a chain for another key are refused.
#[test]
fn certificate_signed_release_verifies_against_its_root_only() {
    let scratch = common::scratch("attest-certificate");
    let pki = common::pki::Pki::new(&scratch.join("pki"));
    pki.root("root", "/O=Example Corp/CN=Example Root CA")
        .root("other-root", "/CN=Another CA")
        .issue("intermediate", "/O=Example Corp/CN=Example Releases CA", "root", common::pki::INTERMEDIATE_CA)
        .issue("release", "/O=Example Corp/CN=model releases", "intermediate", common::pki::CODE_SIGNING)
        .issue("tls", "/CN=127.0.0.1", "intermediate", common::pki::SERVER_127);
    let chain = pki.chain("release-chain", &["release", "intermediate"]);
    let key = SigningKey::from_file(&pki.key("release")).unwrap().with_certificate_chain(&chain).unwrap();
    let dir = signed_dir(&scratch, "signed", 0, &key, lenient());

    let bundle: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("model.sig")).unwrap()).unwrap();
    let certificates = bundle["verificationMaterial"]["x509CertificateChain"]["certificates"].as_array().unwrap();
    assert_eq!(certificates.len(), 2, "{bundle}");
    assert!(bundle["verificationMaterial"].get("publicKey").is_none(), "{bundle}");

    let roots = attestation::TrustRoots::from_file(&pki.pem("root")).unwrap();
    let verified = attestation::verify_with_roots(&dir, &roots, Some(&fixture("heads/fc.pt")), None).unwrap();
    assert_eq!(verified.certificate_subject.as_deref(), Some("CN=model releases,O=Example Corp"));
    assert!(verified.decision.releasable);
    // The key alone still verifies it (the certificate certifies that key).
    attestation::verify(&dir, &key.public(), None, None).unwrap();

    let other = attestation::TrustRoots::from_file(&pki.pem("other-root")).unwrap();
    let err = attestation::verify_with_roots(&dir, &other, None, None).unwrap_err().to_string();
    assert!(err.contains("the signing certificate is not trusted") && err.contains("UnknownIssuer"), "{err}");

    // Trusting the issuing intermediate alone is a narrower trust and holds; a chain whose
    // intermediate is missing does not lead to the root.
    let intermediate_only = attestation::TrustRoots::from_file(&pki.pem("intermediate")).unwrap();
    let partial = {
        let mut bundle = bundle.clone();
        bundle["verificationMaterial"]["x509CertificateChain"]["certificates"].as_array_mut().unwrap().truncate(1);
        let copy = scratch.join("partial");
        copy_dir(&dir, &copy);
        std::fs::write(copy.join("model.sig"), serde_json::to_vec(&bundle).unwrap()).unwrap();
        copy
    };
    assert!(attestation::verify_with_roots(&dir, &intermediate_only, None, None).is_ok());
    let err = attestation::verify_with_roots(&partial, &roots, None, None).unwrap_err().to_string();
    assert!(err.contains("UnknownIssuer"), "{err}");

    // A TLS server's certificate is not for signing releases.
    let tls_chain = pki.chain("tls-chain", &["tls", "intermediate"]);
    let tls_key = SigningKey::from_file(&pki.key("tls")).unwrap().with_certificate_chain(&tls_chain).unwrap();
    let tls_signed = signed_dir(&scratch, "tls-signed", 0, &tls_key, lenient());
    let err = attestation::verify_with_roots(&tls_signed, &roots, None, None).unwrap_err().to_string();
    assert!(err.contains("not trusted") && err.contains("Eku"), "{err}");

    // A bare-key release has no chain to check; a chain for another key is refused at load.
    let (_, bare, _) = signed_with_public_key("attest-certificate-bare");
    let err = attestation::verify_with_roots(&bare, &roots, None, None).unwrap_err().to_string();
    assert!(err.contains("carries no certificate chain"), "{err}");
    let err = SigningKey::generate().with_certificate_chain(&chain).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("certifies another key"), "{err}");

    // The CLI, and model_signing's own certificate verifier.
    let cli = |ca: &Path| {
        let output = assert_cmd::Command::cargo_bin("fstgate")
            .unwrap()
            .args(["verify", dir.to_str().unwrap(), "--ca", ca.to_str().unwrap()])
            .output()
            .unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stdout).to_string())
    };
    let (code, out) = cli(&pki.pem("root"));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("signed by certificate `CN=model releases,O=Example Corp`"), "{out}");
    let (code, out) = cli(&pki.pem("other-root"));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not trusted"), "{out}");

    let (accepted, log) = model_signing("certificate", &dir, "--certificate_chain", &pki.pem("root"));
    assert!(accepted, "model_signing rejected our certificate bundle: {log}");
    let (accepted, log) = model_signing("certificate", &dir, "--certificate_chain", &pki.pem("other-root"));
    assert!(!accepted, "model_signing accepted a chain to another CA: {log}");
}
