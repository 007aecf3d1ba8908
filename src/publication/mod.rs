//! Publishing a job's result to the destination store, exactly once, never a model without its
//! attestations. Object stores have no rename, so every attempt writes its files under its own
//! key, `<prefix>/<name>/<version>/<sha256[..16]>/attempts/<attempt>/`, each with a conditional
//! put, and only then claims the outcome, `<prefix>/<name>/<version>/<sha256[..16]>/outcome.json`,
//! with one more conditional put (PutMode::Create). The outcome names the attempt whose files
//! are the release. Whoever writes it first wins; a crashed or losing attempt leaves files that no
//! outcome points to. A reader trusts a release only through outcome.json, and the gate trusts
//! an outcome.json (to reuse it, download from it or register it) only with its own signature.

use std::path::Path;

use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::attestation::{
    DECISION_FILE, MODEL_FILE, PROVENANCE_FILE, PublicKey, REPORT_FILE, SIGNATURE_FILE, SigningKey, pae,
};
use crate::error::{Error, Result};
use crate::failpoint::Failpoint;
use crate::policy::Decision;
use crate::report::layout::REPORT_HTML_FILE;
use crate::store::{Location, StoreConfig};

/// An upload's outcome document, in its release directory.
pub const OUTCOME_FILE: &str = "outcome.json";
/// Identifies the outcome document type and version.
pub const OUTCOME_SCHEMA: &str = "fstgate.outcome/v1";
/// The DSSE payload type an outcome's signature is made for (over the outcome without it).
pub const OUTCOME_PAYLOAD_TYPE: &str = "application/vnd.fstgate.outcome+json";

/// A released model's files; a denied one publishes its evidence but not the model.
const RELEASED_FILES: [&str; 6] =
    [MODEL_FILE, REPORT_FILE, REPORT_HTML_FILE, SIGNATURE_FILE, PROVENANCE_FILE, DECISION_FILE];
const DENIED_FILES: [&str; 4] = [REPORT_FILE, REPORT_HTML_FILE, PROVENANCE_FILE, DECISION_FILE];

/// Whether the upload was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every policy allowed: the model and its evidence are published.
    Release,
    /// A policy denied: the evidence is published, the model is not.
    Deny,
}

/// One published file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PublishedFile {
    /// File name, e.g. `model.pt` or `report.json`.
    pub name: String,
    /// sha256 of the file's bytes, lowercase hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// outcome.json: what happened to one upload, written once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    /// Always `fstgate.outcome/v1`.
    pub schema: String,
    /// The name of the configured source the upload came from.
    pub source: String,
    /// `<name>/<version>` in the source.
    pub model: String,
    /// The upload's identity: sha256 over the sorted `sha256  path` lines of its files.
    pub artifact_sha256: String,
    /// `release` or `deny`.
    pub verdict: Verdict,
    /// Every policy's reasons, prefixed by the policy's name (empty when released).
    pub reasons: Vec<String>,
    /// The directory (relative to the outcome) holding the files below.
    pub files_under: String,
    /// The published files, with their digests and sizes.
    pub files: Vec<PublishedFile>,
    /// RFC 3339, UTC.
    pub published_at: String,
    /// The gate's signature: ECDSA P-256 (base64) over DSSE's PAE of `OUTCOME_PAYLOAD_TYPE` and
    /// this document's compact JSON with `signature` empty; `keyid` is the key's fingerprint.
    pub signature: OutcomeSignature,
}

/// An outcome's signature.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OutcomeSignature {
    /// Fingerprint of the gate's public key.
    pub keyid: String,
    /// ECDSA P-256 signature, base64.
    pub sig: String,
}

impl Outcome {
    /// What the signature covers: the document with an empty signature, as compact JSON.
    fn payload(&self) -> Vec<u8> {
        let unsigned = Outcome { signature: OutcomeSignature::default(), ..self.clone() };
        serde_json::to_vec(&unsigned).expect("an outcome serialises")
    }

    /// Signs the document with `key`.
    pub fn sign(&mut self, key: &SigningKey) {
        let sig = key.sign(&pae(OUTCOME_PAYLOAD_TYPE, &self.payload()));
        self.signature = OutcomeSignature { keyid: key.public().fingerprint(), sig: BASE64.encode(sig) };
    }

    /// Checks the signature against `key`.
    pub fn verify_signature(&self, key: &PublicKey) -> std::result::Result<(), String> {
        let sig = BASE64.decode(&self.signature.sig).map_err(|_| "its signature is not base64".to_string())?;
        if key.verify(&pae(OUTCOME_PAYLOAD_TYPE, &self.payload()), &sig) {
            Ok(())
        } else {
            Err(format!("it carries no valid signature by this gate's key {}", key.fingerprint()))
        }
    }

    /// Checks that this is an outcome the gate writes: its schema, for `expected` (model, full
    /// sha256) that upload's, files under one attempt directory (`attempts/<32 hex>`), each a
    /// known file name (one plain path segment) listed once with a sha256, and no model in a
    /// denial. A document that fails is never reused, downloaded from or registered.
    pub fn check(&self, expected: Option<(&str, &str)>) -> std::result::Result<(), String> {
        if self.schema != OUTCOME_SCHEMA {
            return Err(format!("schema `{}`, expected `{OUTCOME_SCHEMA}`", self.schema));
        }
        if let Some((model, sha256)) = expected
            && (self.model != model || self.artifact_sha256 != sha256)
        {
            return Err(format!("it is about {} ({}), not {model} ({sha256})", self.model, self.artifact_sha256));
        }
        let hex =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !self.files_under.strip_prefix("attempts/").is_some_and(|id| hex(id, 32)) {
            return Err(format!("files_under `{}` is not an attempt directory", self.files_under));
        }
        for (index, file) in self.files.iter().enumerate() {
            if !RELEASED_FILES.contains(&file.name.as_str()) {
                return Err(format!("file name `{}` is not one the gate publishes", file.name));
            }
            if self.files[..index].iter().any(|f| f.name == file.name) {
                return Err(format!("{} is listed twice", file.name));
            }
            if !hex(&file.sha256, 64) {
                return Err(format!("{} has no sha256", file.name));
            }
        }
        if self.verdict == Verdict::Deny && self.files.iter().any(|f| f.name == MODEL_FILE) {
            return Err("a denial that publishes the model".into());
        }
        Ok(())
    }
}

/// What publishing did.
#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    /// This attempt's outcome is the one on record.
    Written {
        /// The outcome's key in the destination store.
        key: String,
        /// The outcome this attempt wrote.
        outcome: Outcome,
    },
    /// An outcome was already there (an earlier attempt, or another watcher, won the race).
    AlreadyThere {
        /// The outcome's key in the destination store.
        key: String,
        /// The outcome already recorded, checked and verified.
        outcome: Outcome,
    },
}

impl Published {
    /// The outcome on record.
    pub fn outcome(&self) -> &Outcome {
        match self {
            Published::Written { outcome, .. } | Published::AlreadyThere { outcome, .. } => outcome,
        }
    }
    /// The outcome's key in the destination store.
    pub fn key(&self) -> &str {
        match self {
            Published::Written { key, .. } | Published::AlreadyThere { key, .. } => key,
        }
    }
}

/// Publishes job results to the destination store and reads back the outcomes there.
pub struct Publisher {
    location: Location,
    /// Signs the outcomes this gate writes, and checks those it reads.
    key: SigningKey,
}

impl Publisher {
    /// The destination `config`, with the gate's signing key.
    pub fn open(config: &StoreConfig, key: SigningKey) -> Result<Self> {
        Ok(Publisher { location: config.open()?, key })
    }

    /// The destination's URL.
    pub fn url(&self) -> &str {
        &self.location.url
    }

    /// Where a published key is on this machine, when the destination is a local directory.
    pub fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        self.location.local_path(key)
    }

    /// `<prefix>/<name>/<version>/<sha256[..16]>`
    fn release_dir(&self, model: &str, artifact_sha256: &str) -> StorePath {
        let mut parts: Vec<&str> = model.split('/').collect();
        parts.push(&artifact_sha256[..16.min(artifact_sha256.len())]);
        self.location.key(&parts)
    }

    /// The outcome already recorded for this upload, if any.
    pub async fn outcome(&self, model: &str, artifact_sha256: &str) -> Result<Option<(String, Outcome)>> {
        let key = self.release_dir(model, artifact_sha256).join(OUTCOME_FILE);
        self.read_outcome(&key, Some((model, artifact_sha256))).await
    }

    /// Reads and checks an outcome.json: anyone who can write to the destination can plant one,
    /// so it must be one this gate writes (for `expected` (model, full sha256), that upload's).
    async fn read_outcome(&self, key: &StorePath, expected: Option<(&str, &str)>) -> Result<Option<(String, Outcome)>> {
        let bytes = match self.location.store.get(key).await {
            Ok(got) => got.bytes().await.map_err(|e| self.location.error(format!("{key}: {e}")))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.location.error(format!("{key}: {e}"))),
        };
        let outcome: Outcome = serde_json::from_slice(&bytes)
            .map_err(|e| self.location.error(format!("{key} is not an outcome document: {e}")))?;
        outcome
            .check(expected)
            .and_then(|()| outcome.verify_signature(&self.key.public()))
            .map_err(|why| Error::Attestation(format!("{key} is not an outcome this gate wrote: {why}")))?;
        Ok(Some((key.to_string(), outcome)))
    }

    /// Publishes the job directory `dir` (written by `job::run` with a signing key, judged
    /// `decision`) for (`source`, `model`, `artifact_sha256`), under a fresh attempt key, then
    /// claims the outcome.
    pub async fn publish(
        &self,
        source: &str,
        model: &str,
        artifact_sha256: &str,
        dir: &Path,
        decision: &Decision,
    ) -> Result<Published> {
        let release_dir = self.release_dir(model, artifact_sha256);
        let outcome_key = release_dir.clone().join(OUTCOME_FILE);
        let expected = Some((model, artifact_sha256));
        if let Some((key, outcome)) = self.read_outcome(&outcome_key, expected).await? {
            return Ok(Published::AlreadyThere { key, outcome });
        }
        let verdict = if decision.releasable { Verdict::Release } else { Verdict::Deny };
        let names: &[&str] = match verdict {
            Verdict::Release => &RELEASED_FILES,
            Verdict::Deny => &DENIED_FILES,
        };
        let attempt = attempt_id();
        let files_under = format!("attempts/{attempt}");
        let mut files = Vec::new();
        for name in names {
            let path = dir.join(name);
            // Never a model without its attestations: every file must be there before any upload.
            if !path.is_file() {
                return Err(Error::Attestation(format!(
                    "{} has no {name}: publication needs a signed job (configure a signing key)",
                    dir.display()
                )));
            }
        }
        for name in names {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            files.push(PublishedFile {
                name: name.to_string(),
                sha256: hex::encode(Sha256::digest(&bytes)),
                size: bytes.len() as u64,
            });
            let key = release_dir.clone().join("attempts").join(attempt.as_str()).join(*name);
            self.put_new(&key, bytes).await?;
        }
        Failpoint::AfterFiles.reached();
        let reasons =
            decision.policies.iter().flat_map(|p| p.reasons.iter().map(move |r| format!("{}: {r}", p.name))).collect();
        let mut outcome = Outcome {
            schema: OUTCOME_SCHEMA.into(),
            source: source.into(),
            model: model.into(),
            artifact_sha256: artifact_sha256.into(),
            verdict,
            reasons,
            files_under,
            files,
            published_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            signature: OutcomeSignature::default(),
        };
        outcome.sign(&self.key);
        let mut bytes = serde_json::to_vec_pretty(&outcome)?;
        bytes.push(b'\n');
        match self.put_new(&outcome_key, bytes).await {
            Ok(()) => {
                Failpoint::AfterOutcome.reached();
                Ok(Published::Written { key: outcome_key.to_string(), outcome })
            }
            Err(PutError::Exists) => match self.read_outcome(&outcome_key, expected).await? {
                Some((key, outcome)) => Ok(Published::AlreadyThere { key, outcome }),
                None => Err(self.location.error(format!("{outcome_key} exists but cannot be read back"))),
            },
            Err(PutError::Other(e)) => Err(e),
        }
    }

    async fn put_new(&self, key: &StorePath, bytes: Vec<u8>) -> std::result::Result<(), PutError> {
        let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.location.store.put_opts(key, PutPayload::from(bytes), options).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(PutError::Exists),
            Err(e) => Err(PutError::Other(self.location.error(format!("{key}: {e}")))),
        }
    }

    /// Downloads a published outcome's files into `dir` (e.g. to run `fstgate verify` on them).
    pub async fn download(&self, outcome_key: &str, dir: &Path) -> Result<Outcome> {
        let key = StorePath::from(outcome_key);
        let Some((_, outcome)) = self.read_outcome(&key, None).await? else {
            return Err(self.location.error(format!("no outcome at {outcome_key}")));
        };
        let base = StorePath::from(outcome_key.rsplit_once('/').map_or("", |(dir, _)| dir));
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for file in &outcome.files {
            let key =
                outcome.files_under.split('/').fold(base.clone(), |p, part| p.join(part)).join(file.name.as_str());
            let read_error = |e: object_store::Error| self.location.error(format!("{key}: {e}"));
            let bytes = self.location.store.get(&key).await.map_err(read_error)?.bytes().await.map_err(read_error)?;
            if hex::encode(Sha256::digest(&bytes)) != file.sha256 {
                return Err(self.location.error(format!("{key} does not match the sha256 its outcome records")));
            }
            crate::fsutil::write_atomic(&dir.join(&file.name), &bytes)?;
        }
        Ok(outcome)
    }
}

impl From<Error> for PutError {
    fn from(e: Error) -> Self {
        PutError::Other(e)
    }
}

impl From<PutError> for Error {
    fn from(e: PutError) -> Self {
        match e {
            PutError::Exists => Error::store("destination", "an attempt's file already exists (attempt ids collided)"),
            PutError::Other(e) => e,
        }
    }
}

enum PutError {
    Exists,
    Other(Error),
}

/// 128 random bits, hex: attempts of different processes never share a key.
fn attempt_id() -> String {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::sync::{Arc, Mutex};

    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
        PutResult,
    };

    use super::*;
    use crate::policy::{PolicyResult, Verdict as PolicyVerdict};

    /// An in-memory destination that counts every successful put per key, can hold outcome
    /// writes until `racers` publications reach them (a real race, not one after the other),
    /// and can break a guarantee the way a store might.
    #[derive(Debug, Default)]
    struct Instrumented {
        inner: InMemory,
        puts: Mutex<BTreeMap<String, usize>>,
        outcome_barrier: Option<tokio::sync::Barrier>,
        /// A store without conditional puts: `PutMode::Create` silently overwrites.
        create_overwrites: bool,
        /// Every attempt file already exists (as if attempt ids collided).
        attempt_files_exist: bool,
    }

    impl fmt::Display for Instrumented {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Instrumented({})", self.inner)
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Instrumented {
        async fn put_opts(
            &self,
            location: &StorePath,
            payload: PutPayload,
            mut opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            if location.as_ref().contains("/attempts/") && self.attempt_files_exist {
                return Err(object_store::Error::AlreadyExists {
                    path: location.to_string(),
                    source: "attempt file exists".into(),
                });
            }
            if location.as_ref().ends_with(OUTCOME_FILE)
                && let Some(barrier) = &self.outcome_barrier
            {
                barrier.wait().await;
            }
            if self.create_overwrites && opts.mode == PutMode::Create {
                opts.mode = PutMode::Overwrite;
            }
            let result = self.inner.put_opts(location, payload, opts).await?;
            *self.puts.lock().unwrap().entry(location.to_string()).or_default() += 1;
            Ok(result)
        }
        async fn put_multipart_opts(
            &self,
            location: &StorePath,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(&self, location: &StorePath, options: GetOptions) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<StorePath>>,
        ) -> BoxStream<'static, object_store::Result<StorePath>> {
            self.inner.delete_stream(locations)
        }
        fn list(&self, prefix: Option<&StorePath>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(&self, prefix: Option<&StorePath>) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, from: &StorePath, to: &StorePath, options: CopyOptions) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    impl Instrumented {
        /// Successful writes of outcome.json, and of every attempt's model.pt, by key.
        fn writes(&self, suffix: &str) -> Vec<(String, usize)> {
            let puts = self.puts.lock().unwrap();
            puts.iter().filter(|(key, _)| key.ends_with(suffix)).map(|(k, n)| (k.clone(), *n)).collect()
        }

        /// Exactly once, counted from the store: each upload's outcome.json written once, and
        /// the attempt it names holds a model written once.
        fn published_once(&self) -> std::result::Result<(), String> {
            for (key, count) in self.writes(OUTCOME_FILE) {
                if count != 1 {
                    return Err(format!("{key} was written {count} times"));
                }
            }
            match self.writes(&format!("/{MODEL_FILE}")).iter().find(|(_, n)| *n != 1) {
                Some((key, count)) => Err(format!("{key} was written {count} times")),
                None => Ok(()),
            }
        }
    }

    fn publisher(store: Arc<Instrumented>) -> Publisher {
        let location =
            Location { store, prefix: StorePath::from("released"), url: "memory://test".into(), local: false };
        // One gate's key for every publisher of a test run: they read each other's outcomes.
        static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
        Publisher { location, key: KEY.get_or_init(SigningKey::generate).clone() }
    }

    fn released() -> Decision {
        Decision::from_results(vec![PolicyResult {
            name: "builtin:thresholds".into(),
            sha256: String::new(),
            config: serde_json::json!({}),
            verdict: PolicyVerdict::Allow,
            reasons: Vec::new(),
            measurements: Vec::new(),
            failure: None,
        }])
    }

    /// A signed job directory's files (contents do not matter to publication).
    fn job_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for name in RELEASED_FILES {
            std::fs::write(dir.path().join(name), format!("{name} bytes")).unwrap();
        }
        dir
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// `racers` publications of one upload, all past the "already published?" check and with
    /// their attempt files written before any of them claims the outcome.
    async fn race(store: Arc<Instrumented>, racers: usize) -> Vec<Published> {
        let dir = job_dir();
        let publisher = publisher(store);
        let decision = released();
        let publications =
            (0..racers).map(|_| publisher.publish("local", "toy/1", SHA, dir.path(), &decision)).collect::<Vec<_>>();
        futures::future::join_all(publications).await.into_iter().map(|p| p.unwrap()).collect()
    }

    fn racing_store(racers: usize) -> Instrumented {
        Instrumented { outcome_barrier: Some(tokio::sync::Barrier::new(racers)), ..Instrumented::default() }
    }

    #[tokio::test]
    async fn racing_publications_claim_one_outcome() {
        let store = Arc::new(racing_store(4));
        let published = race(store.clone(), 4).await;
        let written: Vec<&Published> = published.iter().filter(|p| matches!(p, Published::Written { .. })).collect();
        assert_eq!(written.len(), 1, "{published:#?}");
        for other in &published {
            assert_eq!(other.outcome(), written[0].outcome(), "every racer reports the winner's outcome");
        }
        store.published_once().unwrap();
        // Four attempts wrote their files; the outcome names exactly one of them.
        assert_eq!(store.writes(&format!("/{MODEL_FILE}")).len(), 4);
    }

    /// The same race on a store whose conditional put is an overwrite: the count from the store
    /// sees it (this is what the exactly-once checks would report if PutMode::Create were lost).
    #[tokio::test]
    async fn an_overwriting_store_is_caught_by_the_store_count() {
        let store = Arc::new(Instrumented { create_overwrites: true, ..racing_store(3) });
        let published = race(store.clone(), 3).await;
        assert!(published.iter().all(|p| matches!(p, Published::Written { .. })), "{published:#?}");
        let failure = store.published_once().unwrap_err();
        assert!(failure.contains("outcome.json was written 3 times"), "{failure}");
    }

    #[tokio::test]
    async fn an_upload_already_published_writes_nothing_more() {
        let store = Arc::new(Instrumented::default());
        let dir = job_dir();
        let publisher = publisher(store.clone());
        let first = publisher.publish("local", "toy/1", SHA, dir.path(), &released()).await.unwrap();
        assert!(matches!(first, Published::Written { .. }));
        let writes = store.puts.lock().unwrap().clone();
        let again = publisher.publish("local", "toy/1", SHA, dir.path(), &released()).await.unwrap();
        assert_eq!(again, Published::AlreadyThere { key: first.key().to_string(), outcome: first.outcome().clone() });
        assert_eq!(*store.puts.lock().unwrap(), writes, "a second publication wrote to the store");
        assert_eq!(publisher.outcome("toy/1", SHA).await.unwrap().unwrap().1, *first.outcome());
    }

    #[tokio::test]
    async fn a_write_conflict_on_an_attempt_file_publishes_no_outcome() {
        let store = Arc::new(Instrumented { attempt_files_exist: true, ..Instrumented::default() });
        let dir = job_dir();
        let publisher = publisher(store.clone());
        let error = publisher.publish("local", "toy/1", SHA, dir.path(), &released()).await.unwrap_err();
        assert!(error.to_string().contains("attempt ids collided"), "{error}");
        assert!(store.puts.lock().unwrap().is_empty());
        assert_eq!(publisher.outcome("toy/1", SHA).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_release_missing_an_attestation_writes_nothing() {
        let store = Arc::new(Instrumented::default());
        let dir = job_dir();
        std::fs::remove_file(dir.path().join(SIGNATURE_FILE)).unwrap();
        let error = publisher(store.clone()).publish("local", "toy/1", SHA, dir.path(), &released()).await.unwrap_err();
        assert!(error.to_string().contains(SIGNATURE_FILE), "{error}");
        assert!(store.puts.lock().unwrap().is_empty(), "a model left without its attestations");
    }

    /// A planted outcome.json (anyone who can write to the destination can put one) is refused
    /// before it is reused or followed: a `../` file name writes nothing outside the target.
    #[tokio::test]
    async fn a_planted_outcome_is_refused_and_nothing_is_written_outside() {
        let store = Arc::new(Instrumented::default());
        let dir = job_dir();
        let publisher = publisher(store.clone());
        let published = publisher.publish("local", "toy/1", SHA, dir.path(), &released()).await.unwrap();
        let genuine = published.outcome().clone();
        let key = StorePath::from(published.key());
        let plant = |outcome: &Outcome| {
            let store = store.clone();
            let (key, bytes) = (key.clone(), serde_json::to_vec(outcome).unwrap());
            async move { store.inner.put(&key, PutPayload::from(bytes)).await.unwrap() }
        };
        let mut escaping = genuine.clone();
        escaping.files[0].name = "../../escaped.txt".into();
        let mut elsewhere = genuine.clone();
        elsewhere.files_under = "../other".into();
        let mut other_upload = genuine.clone();
        other_upload.artifact_sha256 = SHA.replace('0', "f");
        // Well formed, but not what this gate signed: a verdict changed, or signed by another key.
        let mut changed = genuine.clone();
        changed.reasons = vec!["planted".into()];
        let mut foreign = genuine.clone();
        foreign.sign(&SigningKey::generate());
        for (planted, why) in [
            (escaping, "is not one the gate publishes"),
            (elsewhere, "is not an attempt directory"),
            (other_upload, "not toy/1"),
            (changed, "no valid signature by this gate's key"),
            (foreign, "no valid signature by this gate's key"),
        ] {
            plant(&planted).await;
            let target = tempfile::tempdir().unwrap();
            let inner = target.path().join("inner");
            let error = publisher.download(published.key(), &inner).await.err().map(|e| e.to_string());
            if why != "not toy/1" {
                assert!(error.as_deref().is_some_and(|e| e.contains(why)), "{error:?}");
            }
            assert!(
                !target.path().join("escaped.txt").exists()
                    && !target.path().parent().unwrap().join("escaped.txt").exists()
            );
            let reused = publisher.outcome("toy/1", SHA).await.unwrap_err().to_string();
            assert!(reused.contains("is not an outcome this gate wrote") && reused.contains(why), "{reused}");
        }
    }

    #[tokio::test]
    async fn a_download_refuses_a_file_changed_after_publication() {
        let store = Arc::new(Instrumented::default());
        let dir = job_dir();
        let publisher = publisher(store.clone());
        let published = publisher.publish("local", "toy/1", SHA, dir.path(), &released()).await.unwrap();
        let target = tempfile::tempdir().unwrap();
        publisher.download(published.key(), target.path()).await.unwrap();
        let model_key =
            StorePath::from(format!("released/toy/1/{}/{}/{MODEL_FILE}", &SHA[..16], published.outcome().files_under));
        store.inner.put(&model_key, PutPayload::from_static(b"swapped")).await.unwrap();
        let error = publisher.download(published.key(), tempfile::tempdir().unwrap().path()).await.unwrap_err();
        assert!(error.to_string().contains("does not match the sha256"), "{error}");
    }
}
