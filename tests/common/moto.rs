//! moto's S3 server (scripts/test-server.sh moto) on 127.0.0.1, and boto3 against it: what the
//! S3 tests upload with and count publications from (every version of every key, so an
//! overwritten outcome shows).
use std::process::Command;

use super::TestServer;

pub struct Moto {
    server: TestServer,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl Moto {
    /// None (after a loud note) when moto cannot be installed here.
    pub fn start() -> Option<Moto> {
        let server = TestServer::start("moto", |python, port| {
            let mut command = Command::new(python.parent().unwrap().join("moto_server"));
            command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            command
        })?;
        Some(Moto { endpoint: server.url.clone(), server })
    }

    /// moto's STS alone, over TLS with `certificate` (for 127.0.0.1) and its `key`, as object_store
    /// demands for web identity. moto routes an unsigned STS call by its form body; object_store
    /// (like AWS's own endpoint allows) sends the parameters in the query string, so a shim moves
    /// them into the body first.
    pub fn start_sts_tls(certificate: &std::path::Path, key: &std::path::Path) -> Option<Moto> {
        const STS_SHIM: &str = "import io, sys\n\
            from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app\n\
            from werkzeug.serving import run_simple\n\
            moto = DomainDispatcherApplication(create_backend_app)\n\
            def sts(environ, start_response):\n    \
                query = environ.get('QUERY_STRING', '')\n    \
                if 'Action=AssumeRoleWithWebIdentity' in query:\n        \
                    body = query.encode()\n        \
                    environ.update({'QUERY_STRING': '', 'CONTENT_TYPE': 'application/x-www-form-urlencoded', \
                    'CONTENT_LENGTH': str(len(body)), 'wsgi.input': io.BytesIO(body)})\n    \
                return moto(environ, start_response)\n\
            run_simple('127.0.0.1', int(sys.argv[1]), sts, ssl_context=(sys.argv[2], sys.argv[3]), threaded=True)\n";
        let server = TestServer::start("moto", |python, port| {
            let mut command = Command::new(python);
            command.args(["-c", STS_SHIM, &port.to_string()]).arg(certificate).arg(key);
            command
        })?;
        Some(Moto { endpoint: server.url.replacen("http://", "https://", 1), server })
    }

    /// The `options = {...}` line of a store on this server, its keys read from the
    /// environment variables [`Moto::credentials`] sets.
    pub fn store_options(&self) -> String {
        format!(
            r#"options = {{ aws_endpoint = "{}", aws_allow_http = "true", aws_region = "us-east-1", aws_access_key_id = "env:FSTGATE_TEST_S3_KEY", aws_secret_access_key = "env:FSTGATE_TEST_S3_SECRET" }}"#,
            self.endpoint
        )
    }

    /// Sets the variables [`Moto::store_options`] reads to moto's keys.
    pub fn credentials(command: &mut Command) -> &mut Command {
        command.env("FSTGATE_TEST_S3_KEY", "testing").env("FSTGATE_TEST_S3_SECRET", "testing")
    }

    /// Every version of every object under `bucket` (versioning on): key, version id.
    pub fn object_versions(&self, bucket: &str) -> Vec<(String, String)> {
        self.boto3(&format!(
            "for page in s3.get_paginator('list_object_versions').paginate(Bucket='{bucket}'):\n    \
             for v in page.get('Versions', []): print(v['Key'] + '\\t' + v['VersionId'])"
        ))
        .lines()
        .map(|line| {
            let (key, version) = line.split_once('\t').unwrap();
            (key.to_string(), version.to_string())
        })
        .collect()
    }

    /// Runs boto3 code with `s3` bound to a client of this server.
    pub fn boto3(&self, code: &str) -> String {
        let program = format!(
            "import boto3, sys\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='testing', aws_secret_access_key='testing')\n{code}",
            self.endpoint
        );
        let output = Command::new(&self.server.python).args(["-c", &program]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }
}
