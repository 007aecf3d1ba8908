//! The pipeline against a real S3 API: moto's server (installed by scripts/test-server.sh moto,
//! started here on 127.0.0.1 in its own process group and stopped after). An uploader puts a
//! model and its _SUCCESS marker with boto3; two gates with separate job stores race on it; it
//! ends published once, counted from the bucket's own object versions (so an overwritten
//! outcome.json would show), as purified model + attestations under the destination prefix. A
//! watcher that polls only hourly publishes a new upload as soon as an S3 event notification
//! names its marker, and a refused notification queues nothing.
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use common::Spawned;
use common::moto::Moto;
use serde_json::Value;

fn config(moto: &Moto, state_dir: &str, data: &Path) -> String {
    let store_options = moto.store_options();
    format!(
        r#"
state_dir = "{state_dir}"
device = "cpu"

[[sources]]
name = "s3-registry"
url = "s3://registry/incoming"
webhook_secret_env = "FSTGATE_TEST_NOTIFICATION_TOKEN"
{store_options}

[destination]
url = "s3://released/purified"
{store_options}

{}"#,
        common::toy_data_toml(data, 1)
    )
}

fn fstgate(dir: &Path) -> Command {
    let mut command = Command::cargo_bin("fstgate").unwrap();
    Moto::credentials(&mut command)
        .env("FSTGATE_CACHE", dir.join("cache"))
        .env("FSTGATE_TEST_NOTIFICATION_TOKEN", "relay-token");
    command
}

/// With no keys in the file, the S3 store takes them from the environment as the AWS SDKs do;
/// with none anywhere it fails (at a metadata endpoint on 127.0.0.1 that answers nothing, so no
/// request leaves the machine).
#[test]
fn s3_credentials_come_from_the_environment_when_the_file_names_none() {
    let Some(moto) = Moto::start() else { return };
    let dir = common::scratch("s3-env-credentials");
    let data = dir.join("toy.safetensors");
    common::toy_data(&data, 64, 1, 10);
    fstgate::attestation::keys::generate_files(&dir.join("signing.pem"), &dir.join("signing.pub")).unwrap();
    let keys =
        r#", aws_access_key_id = "env:FSTGATE_TEST_S3_KEY", aws_secret_access_key = "env:FSTGATE_TEST_S3_SECRET""#;
    let config = config(&moto, "state", &data).replace(keys, r#", aws_metadata_endpoint = "http://127.0.0.1:9""#);
    assert!(!config.contains("aws_access_key_id"), "{config}");
    std::fs::write(dir.join("env.toml"), config).unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heads/fc.pt");
    moto.boto3(&format!(
        "s3.create_bucket(Bucket='registry')\ns3.create_bucket(Bucket='released')\n\
         s3.upload_file('{}', 'registry', 'incoming/toy-fc/1/model.pt')\n\
         s3.put_object(Bucket='registry', Key='incoming/toy-fc/1/_SUCCESS', Body=b'')",
        model.display()
    ));
    let gate = |environment: &[(&str, &str)]| {
        let mut command = fstgate(&dir);
        command.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY").env_remove("AWS_SESSION_TOKEN");
        command.envs(environment.iter().copied());
        command.args(["--quiet", "gate", "--json", "-", "--config"]).arg(dir.join("env.toml")).output().unwrap()
    };
    let without = gate(&[]);
    assert_eq!(without.status.code(), Some(2), "{}", String::from_utf8_lossy(&without.stderr));
    // The chain ran out at the instance-metadata step: there were no credentials to find.
    assert!(String::from_utf8_lossy(&without.stderr).contains("http://127.0.0.1:9/latest/api/token"));
    let secret = "fstgate-env-secret-5d1e";
    let with = gate(&[("AWS_ACCESS_KEY_ID", "AKIAFSTGATEENVTEST"), ("AWS_SECRET_ACCESS_KEY", secret)]);
    let stderr = String::from_utf8_lossy(&with.stderr);
    assert_eq!(with.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_slice(&with.stdout).unwrap();
    assert_eq!(report["jobs"][0]["state"], "released", "{report:#}");
    assert!(!stderr.contains(secret) && !String::from_utf8_lossy(&with.stdout).contains(secret));

    // A pod on EKS (IRSA): only a projected service-account token and a role; the store trades
    // the token for credentials at STS (a second moto, over TLS as object_store demands, its
    // test CA trusted through SSL_CERT_FILE) and gates the next upload.
    let pki = common::pki::Pki::new(&dir.join("pki"));
    pki.root("ca", "/CN=fstgate test CA").issue("sts", "/CN=127.0.0.1", "ca", common::pki::SERVER_127);
    let sts = Moto::start_sts_tls(&pki.pem("sts"), &pki.key("sts")).expect("moto started above");
    let ca = pki.pem("ca");
    moto.boto3(&format!(
        "s3.upload_file('{}', 'registry', 'incoming/toy-fc/2/model.pt')\n\
         s3.put_object(Bucket='registry', Key='incoming/toy-fc/2/_SUCCESS', Body=b'')",
        model.display()
    ));
    let token = dir.join("serviceaccount-token");
    let web_identity = [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/fstgate-gate"),
        ("AWS_ROLE_SESSION_NAME", "fstgate-test"),
        ("AWS_ENDPOINT_URL_STS", sts.endpoint.as_str()),
        ("SSL_CERT_FILE", ca.to_str().unwrap()),
    ];
    // Before the token is projected the chain stops at it (and says which file).
    let early = gate(&web_identity);
    let stderr = String::from_utf8_lossy(&early.stderr);
    assert_eq!(early.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("serviceaccount-token"), "{stderr}");
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZnN0Z2F0ZTpnYXRlIn0.c2lnbmF0dXJl";
    std::fs::write(&token, jwt).unwrap();
    let irsa = gate(&web_identity);
    let stderr = String::from_utf8_lossy(&irsa.stderr);
    assert_eq!(irsa.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_slice(&irsa.stdout).unwrap();
    let jobs = report["jobs"].as_array().unwrap();
    assert!(jobs.iter().any(|j| j["model"] == "toy-fc/2" && j["state"] == "released"), "{report:#}");
    assert!(!stderr.contains(jwt) && !String::from_utf8_lossy(&irsa.stdout).contains(jwt));
}

/// POSTs `body` to the watcher's webhook with `token`; returns the HTTP status.
fn notify(moto: &Moto, url: &str, token: &str, body: &str) -> u16 {
    moto.boto3(&format!(
        "import requests\nprint(requests.post({url:?}, data={body:?}, headers={{'Authorization': 'Bearer {token}'}}).status_code)"
    ))
    .trim()
    .parse()
    .unwrap()
}

#[test]
fn an_s3_event_notification_triggers_the_watcher_at_once() {
    let Some(moto) = Moto::start() else { return };
    let dir = common::scratch("s3-notification");
    let data = dir.join("toy.safetensors");
    common::toy_data(&data, 64, 1, 10);
    fstgate::attestation::keys::generate_files(&dir.join("signing.pem"), &dir.join("signing.pub")).unwrap();
    let listen = common::free_port();
    let watch_config =
        format!("poll_interval_seconds = 3600\nlisten = \"127.0.0.1:{listen}\"\n{}", config(&moto, "state", &data));
    std::fs::write(dir.join("watch.toml"), watch_config).unwrap();
    moto.boto3("s3.create_bucket(Bucket='registry')\ns3.create_bucket(Bucket='released')");
    let mut watch = fstgate(&dir);
    watch
        .args(["watch", "--config"])
        .arg(dir.join("watch.toml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("watch.log")).unwrap());
    let mut watcher = Spawned::start(watch);
    // /healthz answers 200 once every source was listed: the first poll is done, and the next is
    // an hour away, so only a notification can make the watcher see the upload.
    common::wait_for_http(listen, "/healthz", Duration::from_secs(60));
    let queued = || {
        let output = fstgate(&dir).args(["jobs", "--json", "--config"]).arg(dir.join("watch.toml")).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap()
    };
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heads/fc.pt");
    moto.boto3(&format!(
        "s3.upload_file('{}', 'registry', 'incoming/toy fc/3/model.pt')\n\
         s3.put_object(Bucket='registry', Key='incoming/toy fc/3/_SUCCESS', Body=b'')",
        model.display()
    ));
    assert!(queued().is_empty(), "the upload was seen without a notification: {:#?}", queued());
    let hook = format!("http://127.0.0.1:{listen}/webhooks/s3-registry");
    // S3's own format: keys URL-encoded, a space as `+`.
    let created = r#"{"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "registry"}, "object": {"key": "incoming/toy+fc/3/_SUCCESS", "size": 0}}}]}"#;
    // A refused notification is refused before anything is queued, so the store is checked
    // right after the answer.
    assert_eq!(notify(&moto, &hook, "wrong-token", created), 401);
    assert!(queued().is_empty(), "a notification with the wrong token queued a job: {:#?}", queued());
    assert_eq!(notify(&moto, &hook, "relay-token", r#"{"Event": "s3:TestEvent", "Bucket": "registry"}"#), 200);
    assert_eq!(notify(&moto, &hook, "relay-token", "{not json"), 400);
    assert!(queued().is_empty(), "{:#?}", queued());
    let started = Instant::now();
    assert_eq!(notify(&moto, &hook, "relay-token", created), 202);
    loop {
        let keys = moto.boto3("for o in s3.list_objects_v2(Bucket='released').get('Contents', []): print(o['Key'])");
        if keys.lines().any(|k| k.starts_with("purified/toy fc/3/") && k.ends_with("/outcome.json")) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "not published after the notification:\n{keys}");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(watcher.terminate().success());
    let jobs = queued();
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!((jobs[0]["model"].as_str(), jobs[0]["state"].as_str()), (Some("toy fc/3"), Some("released")));
    let log = std::fs::read_to_string(dir.join("watch.log")).unwrap();
    assert!(!log.contains("relay-token"), "the token reached the log");
}

#[test]
fn an_s3_upload_is_published_once_by_two_racing_gates() {
    let Some(moto) = Moto::start() else { return };
    let dir = common::scratch("s3-pipeline");
    let data = dir.join("toy.safetensors");
    common::toy_data(&data, 64, 1, 10);
    fstgate::attestation::keys::generate_files(&dir.join("signing.pem"), &dir.join("signing.pub")).unwrap();
    for (file, state) in [("a.toml", "state-a"), ("b.toml", "state-b")] {
        std::fs::write(dir.join(file), config(&moto, state, &data)).unwrap();
    }
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heads/fc.pt");
    // Versioning keeps every write of a key: the count below sees an overwrite.
    moto.boto3(&format!(
        "s3.create_bucket(Bucket='registry')\ns3.create_bucket(Bucket='released')\n\
         s3.put_bucket_versioning(Bucket='released', VersioningConfiguration={{'Status': 'Enabled'}})\n\
         s3.upload_file('{}', 'registry', 'incoming/toy-fc/7/model.pt')\n\
         s3.upload_file('{}', 'registry', 'incoming/toy-fc/8/model.pt')\n\
         s3.put_object(Bucket='registry', Key='incoming/toy-fc/7/_SUCCESS', Body=b'')\n\
         s3.put_object(Bucket='registry', Key='incoming/broken//key/_SUCCESS', Body=b'')",
        model.display(),
        model.display()
    ));
    // `broken//key` is a key the S3 client refuses to read: it must not hold back `toy-fc/7`.

    common::race_gates(|| fstgate(&dir), &[&dir.join("a.toml"), &dir.join("b.toml")], "toy-fc/7", "testing");
    // Counted from the bucket: one outcome.json ever written, each attempt's model.pt once, at
    // most one attempt per gate.
    let versions = moto.object_versions("released");
    let written = |suffix: &str| versions.iter().filter(|(k, _)| k.ends_with(suffix)).count();
    assert_eq!(written("/outcome.json"), 1, "{versions:#?}");
    let mut models: Vec<&str> =
        versions.iter().filter(|(k, _)| k.ends_with("/model.pt")).map(|(k, _)| k.as_str()).collect();
    let model_writes = models.len();
    models.sort_unstable();
    models.dedup();
    assert_eq!(models.len(), model_writes, "a model.pt was written twice: {versions:#?}");
    assert!((1..=2).contains(&model_writes), "{versions:#?}");
    let keys = moto.boto3("for o in s3.list_objects_v2(Bucket='released').get('Contents', []): print(o['Key'])");
    let outcomes: Vec<&str> = keys.lines().filter(|k| k.ends_with("/outcome.json")).collect();
    assert!(outcomes[0].starts_with("purified/toy-fc/7/"), "{keys}");
    let outcome: Value = serde_json::from_str(&moto.boto3(&format!(
        "sys.stdout.write(s3.get_object(Bucket='released', Key='{}')['Body'].read().decode())",
        outcomes[0]
    )))
    .unwrap();
    let prefix =
        format!("{}/{}", outcomes[0].trim_end_matches("/outcome.json"), outcome["files_under"].as_str().unwrap());
    for file in
        ["model.pt", "model.sig", "report.json", "report.html", "provenance.intoto.json", "decision.intoto.json"]
    {
        assert!(keys.lines().any(|k| k == format!("{prefix}/{file}")), "{file} missing under {prefix}:\n{keys}");
    }
    // The report names the upload by its store URL, not by the gate's download path.
    let report: Value = serde_json::from_str(&moto.boto3(&format!(
        "sys.stdout.write(s3.get_object(Bucket='released', Key='{prefix}/report.json')['Body'].read().decode())"
    )))
    .unwrap();
    let source = &report["model"]["source"];
    let path = source["path"].as_str().unwrap();
    assert!(path.starts_with("s3://") && path.ends_with("/toy-fc/7/"), "{source:#}");
    assert_eq!(
        (source["registry"]["kind"].as_str(), source["registry"]["version"].as_str()),
        (Some("object-store"), Some("7"))
    );
}
