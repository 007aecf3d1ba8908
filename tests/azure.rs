//! The pipeline on Azure Blob Storage: Azurite, Microsoft's storage emulator (npm azurite
//! 3.37.0, installed by scripts/test-server.sh azurite, started here on 127.0.0.1 with telemetry
//! off and stopped after), reached by object_store's Azure client through the file's options:
//! the account, its endpoint, and the shared key named in the file (or, for the watcher, found
//! in the `AZURE_STORAGE_*` environment as Azure's SDKs read it). An uploader puts
//! models and _SUCCESS markers with the Blob REST API (Shared Key, Python's standard library);
//! two gates with separate job stores race on one upload and it is published once, counted from
//! the emulator's own request log (every blob write it accepted); a watcher publishes a denial
//! without the model.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use common::{Spawned, TestServer};
use serde_json::Value;

/// Azurite's well-known development account and key (public, in Microsoft's documentation).
const ACCOUNT: &str = "devstoreaccount1";
const ACCOUNT_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

struct Azurite {
    server: TestServer,
    /// Its request log (`--debug`): what it accepted, read back by the test.
    log: PathBuf,
}

impl Azurite {
    /// None (after a loud note) when the emulator cannot be installed here.
    fn start(dir: &Path) -> Option<Azurite> {
        let log = dir.join("azurite.log");
        let server = TestServer::start("azurite", |azurite_blob, port| {
            let mut command = Command::new(azurite_blob);
            command
                .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--inMemoryPersistence"])
                .args(["--disableTelemetry", "--skipApiVersionCheck", "--debug"])
                .arg(&log);
            command
        })?;
        Some(Azurite { server, log })
    }

    /// The account's endpoint (path style, as Azurite serves it).
    fn endpoint(&self) -> String {
        format!("{}/{ACCOUNT}", self.server.url)
    }

    /// Runs Python with `call(method, path, body, headers)`: one Shared-Key-signed Blob REST
    /// request to the account (`path` starts with the container), returning the body; its
    /// standard output.
    fn blob_api(&self, code: &str) -> String {
        let program = format!(
            "import base64, hashlib, hmac, urllib.parse, urllib.request\n\
             from email.utils import formatdate\n\
             ACCOUNT, KEY, ENDPOINT = '{ACCOUNT}', base64.b64decode('{ACCOUNT_KEY}'), '{endpoint}'\n\
             def call(method, path, body=b'', headers=None):\n    \
                 headers = dict(headers or {{}}, **{{'x-ms-date': formatdate(usegmt=True), 'x-ms-version': '2021-08-06'}})\n    \
                 url = urllib.parse.urlsplit(ENDPOINT + '/' + path)\n    \
                 query = urllib.parse.parse_qsl(url.query)\n    \
                 resource = '/' + ACCOUNT + url.path + ''.join('\\n%s:%s' % (k.lower(), v) for k, v in sorted(query))\n    \
                 canonical = ''.join('%s:%s\\n' % (k, headers[k]) for k in sorted(headers) if k.startswith('x-ms-'))\n    \
                 length = str(len(body)) if body else ''\n    \
                 kind = headers.get('Content-Type', '')\n    \
                 text = '\\n'.join([method, '', '', length, '', kind, '', '', '', '', '', '']) + '\\n' + canonical + resource\n    \
                 signature = base64.b64encode(hmac.new(KEY, text.encode(), hashlib.sha256).digest()).decode()\n    \
                 headers['Authorization'] = 'SharedKey %s:%s' % (ACCOUNT, signature)\n    \
                 request = urllib.request.Request(ENDPOINT + '/' + path, data=body or None, method=method, headers=headers)\n    \
                 if method == 'PUT' and not body: request.add_header('Content-Length', '0')\n    \
                 return urllib.request.urlopen(request).read()\n\
             def upload(path, body):\n    \
                 call('PUT', path, body, {{'x-ms-blob-type': 'BlockBlob', 'Content-Type': 'application/octet-stream'}})\n\
             {code}",
            endpoint = self.endpoint()
        );
        let output = Command::new("python3").args(["-c", &program]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    /// Blob writes (PUT) to the `released` container the emulator answered with 201 Created,
    /// whose path ends with `suffix`.
    fn created(&self, suffix: &str) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap();
        // Azurite logs each request ("RequestURL=") and, later, its response status per request id;
        // a write counts once its id is answered 201.
        let mut puts = std::collections::HashMap::new();
        let mut created = 0;
        for line in log.lines() {
            let id = line.split_whitespace().nth(1).unwrap_or("").to_string();
            if let Some(url) = line.split("RequestURL=").nth(1)
                && line.contains("RequestMethod=PUT")
            {
                let url = url.split_whitespace().next().unwrap_or("");
                puts.insert(id, url.split('?').next().unwrap_or("").to_string());
            } else if line.contains("StatusCode=201")
                && let Some(url) = puts.get(&id)
                && url.contains("/released/")
                && url.ends_with(suffix)
            {
                created += 1;
            }
        }
        created
    }
}

fn config(azurite: &Azurite, state_dir: &str, data: &Path, policy: &str) -> String {
    // A store outside Azure's public cloud: its account, endpoint and key (read from the
    // environment variable) in the file.
    let options = format!(
        r#"options = {{ azure_storage_account_name = "{ACCOUNT}", azure_storage_endpoint = "{}", azure_allow_http = "true", azure_storage_account_key = "env:FSTGATE_TEST_AZURE_KEY" }}"#,
        azurite.endpoint()
    );
    format!(
        r#"
state_dir = "{state_dir}"
device = "cpu"
poll_interval_seconds = 1

[[sources]]
name = "azure-registry"
url = "az://registry/incoming"
{options}

[destination]
url = "az://released/purified"
{options}

[[data]]
models = "*/*"
clean = "{data}"
test = "{data}"
{}"#,
        common::pipeline_toml(1, 16, policy),
        data = data.display()
    )
}

fn fstgate(dir: &Path) -> Command {
    let mut command = Command::cargo_bin("fstgate").unwrap();
    command.current_dir(dir).env("FSTGATE_CACHE", dir.join("cache")).env("FSTGATE_TEST_AZURE_KEY", ACCOUNT_KEY);
    command
}

/// The artifact sha256 of the job the first job store holds.
fn report_sha(dir: &Path) -> String {
    let jobs = fstgate(dir).args(["jobs", "--json", "--config", "a.toml"]).output().unwrap();
    let jobs: Vec<Value> = serde_json::from_slice(&jobs.stdout).unwrap();
    jobs[0]["artifact_sha256"].as_str().unwrap().to_string()
}

fn upload(azurite: &Azurite, model: &str) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heads/fc.pt");
    azurite.blob_api(&format!(
        "upload('registry/incoming/{model}/model.pt', open('{}', 'rb').read())\n\
         upload('registry/incoming/{model}/_SUCCESS', b'')",
        fixture.display()
    ));
}

#[test]
fn an_azure_upload_is_published_once_and_a_denial_without_its_model() {
    let dir = common::scratch("azure-pipeline");
    let Some(azurite) = Azurite::start(&dir) else { return };
    let data = dir.join("toy.safetensors");
    common::toy_data(&data, 64, 1, 10);
    fstgate::attestation::keys::generate_files(&dir.join("signing.pem"), &dir.join("signing.pub")).unwrap();
    for (file, state) in [("a.toml", "state-a"), ("b.toml", "state-b")] {
        std::fs::write(dir.join(file), config(&azurite, state, &data, common::ALLOW_ALL)).unwrap();
    }
    azurite.blob_api("call('PUT', 'registry?restype=container')\ncall('PUT', 'released?restype=container')");
    upload(&azurite, "toy-fc/7");
    // A model without its marker is still being uploaded: not gated.
    azurite.blob_api("upload('registry/incoming/toy-fc/8/model.pt', b'half uploaded')");

    common::race_gates(|| fstgate(&dir), &[Path::new("a.toml"), Path::new("b.toml")], "toy-fc/7", ACCOUNT_KEY);
    // Counted from the emulator: outcome.json created once (the loser's conditional put was
    // refused), each attempt's model.pt once, at most one attempt per gate.
    assert_eq!(azurite.created("/outcome.json"), 1, "{}", std::fs::read_to_string(&azurite.log).unwrap());
    assert!((1..=2).contains(&azurite.created("/model.pt")));
    // The release, downloaded, verifies and names the model by its Azure URL.
    let sha = report_sha(&dir);
    let outcome_dir = format!("released/purified/toy-fc/7/{}", &sha[..16]);
    let outcome: Value =
        serde_json::from_str(&azurite.blob_api(&format!("print(call('GET', '{outcome_dir}/outcome.json').decode())")))
            .unwrap();
    let files_under = format!("{outcome_dir}/{}", outcome["files_under"].as_str().unwrap());
    let fetched = dir.join("fetched");
    std::fs::create_dir_all(&fetched).unwrap();
    for file in outcome["files"].as_array().unwrap() {
        let name = file["name"].as_str().unwrap();
        azurite.blob_api(&format!(
            "open('{}', 'wb').write(call('GET', '{files_under}/{name}'))",
            fetched.join(name).display()
        ));
    }
    let verified = fstgate(&dir)
        .args(["verify", fetched.to_str().unwrap(), "--public-key", "signing.pub"])
        .args(["--model", "az://registry/incoming/toy-fc/7/"])
        .output()
        .unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));
    let published_models = azurite.created("/model.pt");

    // A watcher with a policy no model meets: the next upload is denied, its outcome published
    // without the model.
    // Its store takes the account, endpoint and key from the environment, as Azure's SDKs do.
    let strict = "{ max_attack_success_rate = 0.0, max_accuracy_drop_points = 0.0 }";
    let explicit = format!(
        r#"azure_storage_account_name = "{ACCOUNT}", azure_storage_endpoint = "{}", azure_allow_http = "true", azure_storage_account_key = "env:FSTGATE_TEST_AZURE_KEY""#,
        azurite.endpoint()
    );
    let from_environment =
        config(&azurite, "state-a", &data, strict).replace(&explicit, r#"azure_allow_http = "true""#);
    assert!(!from_environment.contains("azure_storage_account_name"), "{from_environment}");
    std::fs::write(dir.join("strict.toml"), from_environment).unwrap();
    let log = std::fs::File::create(dir.join("watch.log")).unwrap();
    let mut command = fstgate(&dir);
    command
        .env_remove("FSTGATE_TEST_AZURE_KEY")
        .env("AZURE_STORAGE_ACCOUNT_NAME", ACCOUNT)
        .env("AZURE_STORAGE_ACCOUNT_KEY", ACCOUNT_KEY)
        .env("AZURE_STORAGE_ENDPOINT", azurite.endpoint());
    command.args(["watch", "--config", "strict.toml"]).stdout(log.try_clone().unwrap()).stderr(log);
    let mut watcher = Spawned::start(command);
    upload(&azurite, "toy-fc/9");
    let started = Instant::now();
    while azurite.created("/outcome.json") < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{}",
            std::fs::read_to_string(dir.join("watch.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(watcher.terminate().success());
    let jobs = fstgate(&dir).args(["jobs", "--json", "--config", "strict.toml"]).output().unwrap();
    let jobs: Vec<Value> = serde_json::from_slice(&jobs.stdout).unwrap();
    let denied = jobs.iter().find(|j| j["model"] == "toy-fc/9").unwrap();
    assert_eq!(denied["state"], "denied", "{jobs:#?}");
    assert_eq!(azurite.created("/model.pt"), published_models, "a denied model was published");
    assert!(!std::fs::read_to_string(dir.join("watch.log")).unwrap().contains(ACCOUNT_KEY));
}
