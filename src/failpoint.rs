//! Crash injection, for the tests that prove a job is published exactly once however the
//! process dies: with `FSTGATE_FAILPOINT=<point>` in its environment, the process kills itself
//! with SIGKILL when it reaches that point, as an OOM kill or a lost node would, leaving behind
//! exactly what a real crash there leaves. Never set in production; unset, each point costs one
//! comparison (the variable is read once per process).
use std::sync::OnceLock;

/// A point in a job's life where a crash is injected, in the order a job reaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    /// The job is claimed (attempt counted, lease taken); nothing else happened.
    AfterClaim,
    /// One optimiser step of purification is done.
    MidTraining,
    /// Every file of the attempt is in the destination; no outcome.json yet.
    AfterFiles,
    /// outcome.json is written; neither the registry nor the job store knows.
    AfterOutcome,
    /// The registry has recorded the outcome; the job store has not.
    BeforeRecord,
}

impl Failpoint {
    /// Every point, in the order a job reaches them.
    pub const ALL: [Failpoint; 5] = [
        Failpoint::AfterClaim,
        Failpoint::MidTraining,
        Failpoint::AfterFiles,
        Failpoint::AfterOutcome,
        Failpoint::BeforeRecord,
    ];

    /// The value of `FSTGATE_FAILPOINT` that arms this point.
    pub fn name(self) -> &'static str {
        match self {
            Failpoint::AfterClaim => "after-claim",
            Failpoint::MidTraining => "mid-training",
            Failpoint::AfterFiles => "after-files",
            Failpoint::AfterOutcome => "after-outcome",
            Failpoint::BeforeRecord => "before-record",
        }
    }

    /// Kills this process (SIGKILL, no clean-up of any kind) if `FSTGATE_FAILPOINT` names this
    /// point. A model worker cannot signal the gate (its confinement refuses it); the gate calls
    /// this itself for the worker's points when its worker died of SIGKILL.
    pub fn reached(self) {
        static ARMED: OnceLock<Option<String>> = OnceLock::new();
        if ARMED.get_or_init(|| std::env::var("FSTGATE_FAILPOINT").ok()).as_deref() == Some(self.name()) {
            eprintln!("fstgate: failpoint {} reached: killing this process", self.name());
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
    }
}
