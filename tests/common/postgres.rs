//! A private PostgreSQL server for the job-store tests (Debian's `postgresql`, which `./dev test`
//! installs): its own data directory under /tmp, 127.0.0.1 on a free port, fsync off, stopped
//! (fast shutdown) when dropped. Two roles: `fstgate`, which logs in with a password over TCP
//! (SCRAM), as a deployment does, and `tester`, trusted from 127.0.0.1, for the in-process
//! conformance tests that cannot set a password variable in their own environment. Run as root,
//! the server runs as the `postgres` user (PostgreSQL refuses root).
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::Spawned;

/// The role and password watchers log in with (`password = "env:FSTGATE_TEST_PG_PASSWORD"`).
pub const PASSWORD_ENV: &str = "FSTGATE_TEST_PG_PASSWORD";

pub struct PostgresServer {
    server: Spawned,
    _dir: tempfile::TempDir,
    bin: PathBuf,
    socket_dir: PathBuf,
    pub port: u16,
    /// The `fstgate` role's password.
    pub password: String,
}

/// Debian's server binaries, the newest version installed.
fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file() && bin.join("postgres").is_file())
        .collect();
    found.sort_by_key(|bin| {
        bin.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    found.pop()
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

impl PostgresServer {
    /// Starts a server; None (after `unavailable`) where PostgreSQL is not installed.
    pub fn start() -> Option<PostgresServer> {
        Self::start_with(false)
    }

    /// Starts a server that accepts TLS connections only, its certificate (for 127.0.0.1)
    /// signed by a test CA written to `<tls_dir>/ca.pem` (see [`PostgresServer::tls_dir`]).
    pub fn start_tls() -> Option<PostgresServer> {
        Self::start_with(true)
    }

    /// Where a TLS server's test CA (`ca.pem`) and a second, unrelated CA (`other-ca.pem`) are.
    pub fn tls_dir(&self) -> PathBuf {
        self._dir.path().join("tls")
    }

    fn start_with(tls: bool) -> Option<PostgresServer> {
        let Some(bin) = bin_dir() else {
            super::unavailable("PostgreSQL", "no /usr/lib/postgresql/*/bin/initdb (Debian's postgresql package)");
            return None;
        };
        let dir = tempfile::Builder::new().prefix("fstgate-pg-").tempdir_in("/tmp").unwrap();
        let (data, socket_dir) = (dir.path().join("data"), dir.path().to_path_buf());
        let password = hex::encode(rand::random::<[u8; 12]>());
        std::fs::write(dir.path().join("pw"), &password).unwrap();
        if tls {
            make_certificates(&dir.path().join("tls"));
        }
        if is_root() {
            let status = Command::new("chown").arg("-R").arg("postgres:postgres").arg(dir.path()).status().unwrap();
            assert!(status.success(), "chown of the PostgreSQL directory failed");
        }
        let initdb = as_server_user(&bin, "initdb")
            .args(["-U", "fstgate", "-E", "UTF8", "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", dir.path().join("pw").display()))
            .arg("-D")
            .arg(&data)
            .output()
            .unwrap();
        assert!(initdb.status.success(), "initdb failed: {}", String::from_utf8_lossy(&initdb.stderr));
        // With TLS, `hostssl` lines only: a plaintext connection finds no entry and is refused.
        let host = if tls { "hostssl" } else { "host" };
        std::fs::write(
            data.join("pg_hba.conf"),
            format!(
                "local all all trust\n{host} all tester 127.0.0.1/32 trust\n{host} all all 127.0.0.1/32 scram-sha-256\n"
            ),
        )
        .unwrap();
        let port = super::free_port();
        let mut postgres = as_server_user(&bin, "postgres");
        postgres
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(&socket_dir)
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200"])
            .args(if tls {
                let tls_dir = dir.path().join("tls");
                vec![
                    "-c".to_string(),
                    "ssl=on".to_string(),
                    "-c".to_string(),
                    format!("ssl_cert_file={}", tls_dir.join("server.pem").display()),
                    "-c".to_string(),
                    format!("ssl_key_file={}", tls_dir.join("server.key").display()),
                ]
            } else {
                Vec::new()
            })
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("server.log")).unwrap());
        let server = Spawned::start(postgres);
        let started = Instant::now();
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                .status()
                .unwrap();
            if ready.success() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "PostgreSQL did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let server = PostgresServer { server, _dir: dir, bin, socket_dir, port, password };
        server.sql("postgres", "CREATE ROLE tester LOGIN SUPERUSER");
        Some(server)
    }

    /// Runs `sql` in `database` over the local socket, as the server's owner.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let output = as_server_user(&self.bin, "psql")
            .arg("-h")
            .arg(&self.socket_dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "fstgate",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-XAtc",
                sql,
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "psql `{sql}` failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    /// A new empty database; its URL for `role` (`fstgate`, with the password, or `tester`).
    pub fn database(&self, name: &str, role: &str) -> String {
        self.sql("postgres", &format!("CREATE DATABASE {name} OWNER fstgate"));
        format!("postgres://{role}@127.0.0.1:{}/{name}?sslmode=disable", self.port)
    }
}

/// A test CA, a server certificate for 127.0.0.1 it signs (key mode 0600, as PostgreSQL
/// demands), and a second CA that signs nothing.
fn make_certificates(dir: &Path) {
    super::pki::Pki::new(dir).root("ca", "/CN=fstgate test CA").root("other-ca", "/CN=another CA").issue(
        "server",
        "/CN=127.0.0.1",
        "ca",
        super::pki::SERVER_127,
    );
}

/// A command of the server's binaries, run as `postgres` when the tests run as root.
fn as_server_user(bin: &Path, program: &str) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=postgres", "--regid=postgres", "--clear-groups", "--"]).arg(bin.join(program));
        command
    } else {
        Command::new(bin.join(program))
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // Fast shutdown: clients are disconnected instead of waited for.
        unsafe { libc::kill(self.server.id() as i32, libc::SIGINT) };
        let asked = Instant::now();
        while self.server.child().try_wait().ok().flatten().is_none() && asked.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
