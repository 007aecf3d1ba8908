//! The pipeline against a real S3 API: moto's server (installed by scripts/moto-server.sh,
//! started here on 127.0.0.1 and stopped after). An uploader puts a model and its _SUCCESS
//! marker with boto3; two gates with separate job stores race on it; it ends published once,
//! as purified model + attestations under the destination prefix.
mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

struct Moto {
    child: Child,
    python: PathBuf,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// None (after a loud note) when moto cannot be installed here.
    fn start() -> Option<Moto> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/moto-server.sh");
        let output = Command::new(script).output().unwrap();
        if output.status.code() == Some(3) {
            eprintln!(
                "\n*** SKIPPED: moto cannot be installed here: {} ***\n",
                String::from_utf8_lossy(&output.stderr)
            );
            return None;
        }
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let python = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(python.parent().unwrap().join("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Moto { child, python, endpoint: format!("http://127.0.0.1:{port}") })
    }

    /// Runs boto3 code with `s3` bound to a client of this server.
    fn boto3(&self, code: &str) -> String {
        let program = format!(
            "import boto3, sys\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='testing', aws_secret_access_key='testing')\n{code}",
            self.endpoint
        );
        let output = Command::new(&self.python).args(["-c", &program]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }
}

fn config(endpoint: &str, state_dir: &str, data: &Path) -> String {
    let store_options = format!(
        r#"options = {{ aws_endpoint = "{endpoint}", aws_allow_http = "true", aws_region = "us-east-1", aws_access_key_id = "env:FSTGATE_TEST_S3_KEY", aws_secret_access_key = "env:FSTGATE_TEST_S3_SECRET" }}"#
    );
    format!(
        r#"
state_dir = "{state_dir}"
device = "cpu"

[[sources]]
name = "s3-registry"
url = "s3://registry/incoming"
{store_options}

[destination]
url = "s3://released/purified"
{store_options}

[[data]]
models = "*/*"
clean = "{data}"
test = "{data}"
{}"#,
        common::toy_pipeline_toml(1),
        data = data.display()
    )
}

#[test]
fn an_s3_upload_is_published_once_by_two_racing_gates() {
    let Some(moto) = Moto::start() else { return };
    let dir = common::scratch("s3-pipeline");
    let data = dir.join("toy.safetensors");
    common::toy_data(&data, 64, 1, 10);
    fstgate::attestation::keys::generate_files(&dir.join("signing.pem"), &dir.join("signing.pub")).unwrap();
    for (file, state) in [("a.toml", "state-a"), ("b.toml", "state-b")] {
        std::fs::write(dir.join(file), config(&moto.endpoint, state, &data)).unwrap();
    }
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heads/fc.pt");
    moto.boto3(&format!(
        "s3.create_bucket(Bucket='registry')\ns3.create_bucket(Bucket='released')\n\
         s3.upload_file('{}', 'registry', 'incoming/toy-fc/7/model.pt')\n\
         s3.upload_file('{}', 'registry', 'incoming/toy-fc/8/model.pt')\n\
         s3.put_object(Bucket='registry', Key='incoming/toy-fc/7/_SUCCESS', Body=b'')",
        model.display(),
        model.display()
    ));

    let gate = |config: &str| {
        Command::cargo_bin("fstgate")
            .unwrap()
            .args(["--quiet", "gate", "--json", "-", "--config"])
            .arg(dir.join(config))
            .env("FSTGATE_CACHE", dir.join("cache"))
            .env("FSTGATE_TEST_S3_KEY", "testing")
            .env("FSTGATE_TEST_S3_SECRET", "testing")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (gate("a.toml"), gate("b.toml"));
    for child in [a, b] {
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        assert!(!stderr.contains("testing"), "a secret reached the log: {stderr}");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        let jobs = report["jobs"].as_array().unwrap();
        assert_eq!(jobs.len(), 1, "only the complete upload: {report:#}");
        assert_eq!((jobs[0]["model"].as_str(), jobs[0]["state"].as_str()), (Some("toy-fc/7"), Some("released")));
    }
    let keys = moto.boto3("for o in s3.list_objects_v2(Bucket='released').get('Contents', []): print(o['Key'])");
    let outcomes: Vec<&str> = keys.lines().filter(|k| k.ends_with("/outcome.json")).collect();
    assert_eq!(outcomes.len(), 1, "{keys}");
    assert!(outcomes[0].starts_with("purified/toy-fc/7/"), "{keys}");
    let outcome: Value = serde_json::from_str(&moto.boto3(&format!(
        "sys.stdout.write(s3.get_object(Bucket='released', Key='{}')['Body'].read().decode())",
        outcomes[0]
    )))
    .unwrap();
    let prefix =
        format!("{}/{}", outcomes[0].trim_end_matches("/outcome.json"), outcome["files_under"].as_str().unwrap());
    for file in ["model.pt", "model.sig", "report.json", "provenance.intoto.json", "decision.intoto.json"] {
        assert!(keys.lines().any(|k| k == format!("{prefix}/{file}")), "{file} missing under {prefix}:\n{keys}");
    }
}
