//! `fstgate sandbox-check`: shows on this host what the model worker's confinement holds. A probe
//! process confines itself exactly as a worker does (`confine::confine`), then tries what a
//! hostile model's code would: write or read outside its files, read the gate's environment,
//! connect over TCP or to a UNIX socket, run a program, signal the gate; and, as controls, what a
//! worker must still do (write its own directory, read its libraries). With `--unconfined` the
//! probe skips the confinement, which shows what the same code could do inside the gate and that
//! every attempt is real (each one works there).
use std::io;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::confine::{self, Allowed};
use crate::error::{Error, Result};
use crate::report::Confinement;

/// What `fstgate sandbox-check --json` prints.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SandboxCheck {
    /// Whether the probe was confined (false with `--unconfined`).
    pub confined: bool,
    /// The layers the kernel enforced on the probe; absent when unconfined.
    pub confinement: Option<Confinement>,
    /// What the probe tried, in order.
    pub attempts: Vec<Attempt>,
    /// Every attempt came out as expected: confined, the hostile ones refused and the worker's
    /// own work allowed; unconfined, every one allowed.
    pub as_expected: bool,
}

/// One thing the probe tried.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Attempt {
    /// What it tried, in words.
    pub action: String,
    /// Whether a confined worker must be refused this (false: a worker needs it).
    pub hostile: bool,
    /// The error it got; absent when the attempt worked.
    pub refused: Option<String>,
}

/// What the probe process reports back to `run`.
#[derive(Serialize, Deserialize)]
struct ProbeOutput {
    confinement: Option<Confinement>,
    attempts: Vec<Attempt>,
}

/// The probe's view of its surroundings, set up by `run` before the probe starts.
#[derive(Debug, Clone)]
pub struct ProbeTargets {
    /// A directory the probe may write (its own).
    pub inside: PathBuf,
    /// A directory it must not touch, holding `secret.txt` and the UNIX socket `gate.sock`.
    pub outside: PathBuf,
    /// A TCP port on 127.0.0.1 that accepts connections.
    pub port: u16,
}

const SECRET_FILE: &str = "secret.txt";
const SOCKET_FILE: &str = "gate.sock";

/// Sets up the targets (a secret file, a UNIX socket and a TCP listener the probe must not
/// reach), runs the probe (`fstgate sandbox-probe`) confined or not, and reads what it saw.
pub fn run(confined: bool) -> Result<SandboxCheck> {
    let outside = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let inside = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let secret = outside.path().join(SECRET_FILE);
    std::fs::write(&secret, "not for models").map_err(|e| Error::io(&secret, e))?;
    let socket = outside.path().join(SOCKET_FILE);
    let _unix = std::os::unix::net::UnixListener::bind(&socket).map_err(|e| Error::io(&socket, e))?;
    let tcp = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| Error::io("127.0.0.1", e))?;
    let port = tcp.local_addr().map_err(|e| Error::io("127.0.0.1", e))?.port();
    let exe = std::env::current_exe().map_err(|e| Error::Worker(format!("cannot find the fstgate executable: {e}")))?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("sandbox-probe")
        .arg("--inside")
        .arg(inside.path())
        .arg("--outside")
        .arg(outside.path())
        .arg("--port")
        .arg(port.to_string());
    if !confined {
        command.arg("--unconfined");
    }
    let output = command.stderr(std::process::Stdio::inherit()).output();
    let output = output.map_err(|e| Error::Worker(format!("cannot start the sandbox probe: {e}")))?;
    if !output.status.success() {
        return Err(Error::Worker(format!("the sandbox probe failed ({})", output.status)));
    }
    let probe: ProbeOutput = serde_json::from_slice(&output.stdout)?;
    let as_expected = probe.attempts.iter().all(|a| a.refused.is_some() == (confined && a.hostile));
    Ok(SandboxCheck { confined, confinement: probe.confinement, attempts: probe.attempts, as_expected })
}

/// The probe's side (`fstgate sandbox-probe`, started by `run`): confines itself unless told not
/// to, tries everything, and prints what it saw as JSON on stdout. Called before any thread
/// starts, like the worker.
pub fn probe(targets: &ProbeTargets, confined: bool) -> Result<()> {
    let confinement =
        confined.then(|| confine::confine(&Allowed { read: Vec::new(), write: vec![targets.inside.clone()] }));
    // SAFETY: getppid(2) cannot fail.
    let gate = unsafe { libc::getppid() };
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let outside = &targets.outside;
    let attempts = vec![
        attempt("write a file in its own directory", false, || std::fs::write(targets.inside.join("own.txt"), "x")),
        attempt("read the fstgate executable (a library directory)", false, || std::fs::read(&exe).map(drop)),
        attempt("write a file outside its directories", true, || std::fs::write(outside.join("written.txt"), "x")),
        attempt("read a file outside the job's inputs", true, || std::fs::read(outside.join(SECRET_FILE)).map(drop)),
        attempt(&format!("read the gate's environment (/proc/{gate}/environ)"), true, || {
            std::fs::read(format!("/proc/{gate}/environ")).map(drop)
        }),
        attempt(&format!("connect to TCP 127.0.0.1:{}", targets.port), true, || {
            std::net::TcpStream::connect(("127.0.0.1", targets.port)).map(drop)
        }),
        attempt("connect to a UNIX socket outside", true, || {
            std::os::unix::net::UnixStream::connect(outside.join(SOCKET_FILE)).map(drop)
        }),
        attempt("run a program (fstgate --version)", true, || run_program(&exe)),
        attempt(&format!("signal the gate (kill {gate}, 0)"), true, || {
            // SAFETY: kill(2) with signal 0 only checks permission; no memory is involved.
            match unsafe { libc::kill(gate, 0) } {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            }
        }),
    ];
    let output = ProbeOutput { confinement, attempts };
    println!("{}", serde_json::to_string(&output)?);
    Ok(())
}

fn run_program(exe: &Path) -> io::Result<()> {
    let status = std::process::Command::new(exe)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    if status.success() { Ok(()) } else { Err(io::Error::other(format!("it ran and failed ({status})"))) }
}

fn attempt(action: &str, hostile: bool, try_it: impl FnOnce() -> io::Result<()>) -> Attempt {
    Attempt { action: action.to_string(), hostile, refused: try_it().err().map(|e| e.to_string()) }
}

impl SandboxCheck {
    /// The check in words, one line per layer and per attempt.
    pub fn render(&self) -> String {
        let mut text = String::new();
        match &self.confinement {
            Some(c) => {
                for (name, layer) in [("network", &c.network), ("filesystem", &c.filesystem), ("syscalls", &c.syscalls)]
                {
                    let state = if layer.enforced { "enforced" } else { "MISSING" };
                    text.push_str(&format!("{name:<10} {state:<8} {}\n", layer.detail));
                }
            }
            None => text.push_str("unconfined: what a model's code could do inside the gate's own process\n"),
        }
        for attempt in &self.attempts {
            let outcome = match &attempt.refused {
                Some(error) => format!("refused  {} ({error})", attempt.action),
                None => format!("allowed  {}", attempt.action),
            };
            text.push_str(&outcome);
            text.push('\n');
        }
        text.push_str(match (self.as_expected, self.confined) {
            (true, true) => "confinement holds: every hostile attempt was refused, the worker's own work allowed\n",
            (false, true) => "confinement does NOT hold on this host (see above)\n",
            (true, false) => "every attempt worked unconfined: each is a real test of the confinement\n",
            (false, false) => "some attempts failed even unconfined: this host restricts them anyway\n",
        });
        text
    }
}
