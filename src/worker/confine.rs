//! The layers the model worker puts between an uploaded model's code and everything else, applied
//! by the worker to itself before it reads the model, each where this host's kernel has it:
//!
//! 1. its own user and network namespaces (no interface but a down loopback);
//! 2. Landlock: files readable only in the system's library directories, the directories of the
//!    libraries it has mapped, `/proc`, `/sys`, `/dev` and the job's inputs; writable only in its
//!    own directories (and device files); no TCP bind or connect, no abstract UNIX sockets made
//!    outside, no signals to processes outside (which also keeps it from reading the gate's
//!    `/proc/PID/environ` or memory: Landlock denies tracing a process outside the sandbox);
//! 3. a seccomp filter refusing, with EPERM: sockets, running programs, tracing or reading other
//!    processes, io_uring (which bypasses seccomp), mounts, namespaces, BPF, perf events, key
//!    rings and userfaultfd.
//!
//! What was enforced goes into report.json (`confinement`). `fstgate sandbox-check` (the
//! `check` module) applies the same layers and tries what a hostile model would.
use std::path::{Path, PathBuf};

use crate::report::{Confinement, ConfinementLayer};

/// Directories every process needs to read: the system's libraries (CUDA's driver library is
/// loaded late, from here), the dynamic loader's cache, and the kernel's views of the machine.
const SYSTEM_READABLE: [&str; 8] =
    ["/usr", "/lib", "/lib64", "/lib32", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/proc"];

/// What the model worker may touch besides the system: the job's inputs (read) and its own
/// directories (read and write).
#[derive(Debug, Clone, Default)]
pub struct Allowed {
    /// Files or directories it reads (the model, the data sets, trigger images, the job file).
    pub read: Vec<PathBuf>,
    /// Directories it writes (its home and temporary directory, the staging directory).
    pub write: Vec<PathBuf>,
}

/// Applies every layer in order and says what each enforced; `isolate_network` then `restrict`.
pub fn confine(allowed: &Allowed) -> Confinement {
    let network = isolate_network();
    restrict(allowed, network)
}

/// The other layers, Landlock and seccomp, after `isolate_network` gave `network`. Must run
/// before the process starts a thread: Landlock binds the calling thread and those it starts
/// afterwards, so a thread that already runs would stay free (the layer then says so).
pub fn restrict(allowed: &Allowed, network: ConfinementLayer) -> Confinement {
    let threads = thread_count();
    let filesystem = match threads {
        Some(1) => restrict_files(allowed),
        Some(n) => layer(Err(format!("Landlock: {n} threads ran before confinement and would stay free"))),
        None => layer(Err("Landlock: cannot count this process's threads (/proc/self/status)".into())),
    };
    let syscalls = restrict_syscalls();
    Confinement { network, filesystem, syscalls }
}

/// The number of threads in this process, from the kernel.
fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| line.strip_prefix("Threads:")).and_then(|n| n.trim().parse().ok())
}

fn layer(result: std::result::Result<String, String>) -> ConfinementLayer {
    match result {
        Ok(detail) => ConfinementLayer { enforced: true, detail },
        Err(why) => ConfinementLayer { enforced: false, detail: format!("not enforced: {why}") },
    }
}

/// The first layer: a new user namespace (to be allowed the next step unprivileged, with this
/// process's own uid and gid mapped to themselves so files it writes keep their owner) and a
/// new network namespace: only a down loopback device, so the model's code reaches nothing.
/// Must run before the process starts a thread (one with threads cannot enter a user namespace).
pub fn isolate_network() -> ConfinementLayer {
    layer((|| {
        // SAFETY: getuid/getgid cannot fail; unshare(2) has no memory-safety preconditions and
        // fails cleanly in a process that already has threads or where the kernel forbids it.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } != 0 {
            return Err(format!("unshare(CLONE_NEWUSER | CLONE_NEWNET): {}", std::io::Error::last_os_error()));
        }
        let write = |file: &str, text: String| {
            std::fs::write(file, text).map_err(|e| format!("{file}: {e} (after entering the namespaces)"))
        };
        write("/proc/self/setgroups", "deny".into())?;
        write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
        write("/proc/self/gid_map", format!("{gid} {gid} 1"))?;
        Ok("own user and network namespaces: no network interface but a down loopback".to_string())
    })())
}

/// The directories of every file this process has mapped (the executable, libtorch and the
/// libraries it linked), which the dynamic loader may read again for libraries opened later.
fn mapped_library_directories() -> Vec<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut directories: Vec<PathBuf> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with('/'))
        .filter_map(|path| Path::new(path).parent().map(Path::to_path_buf))
        .collect();
    directories.sort();
    directories.dedup();
    directories
}

/// Landlock, best effort: what this kernel's Landlock ABI supports is enforced, and the detail
/// names the ABI; a kernel without Landlock leaves the layer not enforced.
fn restrict_files(allowed: &Allowed) -> ConfinementLayer {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
        path_beneath_rules,
    };
    let abi = ABI::V6;
    let library_path = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
    let mut readable: Vec<PathBuf> = SYSTEM_READABLE.iter().map(PathBuf::from).collect();
    readable.extend(std::env::split_paths(&library_path).filter(|p| p.is_absolute()));
    readable.extend(mapped_library_directories());
    readable.extend(allowed.read.iter().cloned());
    let devices = AccessFs::from_read(abi) | AccessFs::WriteFile | AccessFs::IoctlDev;
    let status = (|| -> std::result::Result<_, landlock::RulesetError> {
        Ruleset::default()
            .handle_access(AccessFs::from_all(abi))?
            .handle_access(AccessNet::from_all(abi))?
            .scope(Scope::from_all(abi))?
            .create()?
            .add_rules(path_beneath_rules(&readable, AccessFs::from_read(abi)))?
            .add_rules(path_beneath_rules(["/sys"], AccessFs::from_read(abi)))?
            // GPUs are opened read-write (/dev/nvidia*); /dev/null and /dev/urandom likewise.
            .add_rules(path_beneath_rules(["/dev"], devices))?
            .add_rules(path_beneath_rules(&allowed.write, AccessFs::from_all(abi)))?
            .restrict_self()
    })();
    let detail = "Landlock: reads only system libraries, /proc, /sys, /dev and the job's inputs; writes only its \
                  own directories and devices; no TCP; no abstract UNIX sockets or signals outside";
    layer(match status {
        Ok(status) => match status.ruleset {
            RulesetStatus::FullyEnforced => Ok(detail.to_string()),
            RulesetStatus::PartiallyEnforced => Ok(format!("{detail} (partly: this kernel's Landlock is older)")),
            RulesetStatus::NotEnforced => Err("this kernel has no Landlock (or it is disabled)".into()),
        },
        Err(e) => Err(format!("Landlock: {e}")),
    })
}

/// The system calls a model's code never needs and an escape would.
fn refused_syscalls() -> Vec<(&'static str, i64)> {
    vec![
        ("socket", libc::SYS_socket),
        ("socketpair", libc::SYS_socketpair),
        ("execve", libc::SYS_execve),
        ("execveat", libc::SYS_execveat),
        ("ptrace", libc::SYS_ptrace),
        ("process_vm_readv", libc::SYS_process_vm_readv),
        ("process_vm_writev", libc::SYS_process_vm_writev),
        ("io_uring_setup", libc::SYS_io_uring_setup),
        ("io_uring_enter", libc::SYS_io_uring_enter),
        ("io_uring_register", libc::SYS_io_uring_register),
        ("mount", libc::SYS_mount),
        ("umount2", libc::SYS_umount2),
        ("pivot_root", libc::SYS_pivot_root),
        ("chroot", libc::SYS_chroot),
        ("unshare", libc::SYS_unshare),
        ("setns", libc::SYS_setns),
        ("bpf", libc::SYS_bpf),
        ("perf_event_open", libc::SYS_perf_event_open),
        ("keyctl", libc::SYS_keyctl),
        ("add_key", libc::SYS_add_key),
        ("request_key", libc::SYS_request_key),
        ("userfaultfd", libc::SYS_userfaultfd),
    ]
}

/// The seccomp filter: the refused calls fail with EPERM, everything else is allowed.
fn restrict_syscalls() -> ConfinementLayer {
    use seccompiler::{SeccompAction, SeccompFilter, TargetArch};
    let arch = match std::env::consts::ARCH {
        "x86_64" => TargetArch::x86_64,
        "aarch64" => TargetArch::aarch64,
        other => return layer(Err(format!("seccomp: no filter for the {other} architecture"))),
    };
    let refused = refused_syscalls();
    let rules = refused.iter().map(|(_, number)| (*number, Vec::new())).collect();
    let result = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)
        .map_err(|e| e.to_string())
        .and_then(|filter| seccompiler::BpfProgram::try_from(filter).map_err(|e| e.to_string()))
        .and_then(|program| seccompiler::apply_filter_all_threads(&program).map_err(|e| e.to_string()));
    let names: Vec<&str> = refused.iter().map(|(name, _)| *name).collect();
    layer(
        result.map(|()| format!("seccomp: {} refused (EPERM)", names.join(", "))).map_err(|e| format!("seccomp: {e}")),
    )
}
