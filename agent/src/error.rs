//! `FaultError`: everything an executor, the journal or the local agent can refuse or fail with.
//! Messages are lowercase, name the value in backticks, and say what to do next.

use std::io;
use std::path::PathBuf;

use crate::spec::FaultKind;

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("no process matches {selector}; check that it is running, or fix the selector")]
    NoProcessMatches { selector: String },

    #[error(
        "{selector} matches only protected processes, which are never faulted: {which}; point the selector at the processes of the service under test"
    )]
    OnlyProtected { selector: String, which: String },

    #[error(
        "cannot read pidfile `{path}`: {source}; check that the service is running and writes it"
    )]
    PidfileUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "pidfile `{path}` holds `{content}`, not a pid; point the selector at the service's pidfile"
    )]
    PidfileGarbled { path: PathBuf, content: String },

    #[error("invalid process pattern `{pattern}`: {source}")]
    InvalidPattern {
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },

    #[error("invalid process selector {selector}: {reason}")]
    InvalidSelector { selector: String, reason: String },

    #[error("cannot scan `/proc`: {source}; the agent needs a mounted procfs")]
    Proc {
        #[source]
        source: io::Error,
    },

    #[error(
        "signal {signal} is not supported by this agent; use a standard signal such as `SIGTERM` or `SIGKILL`"
    )]
    InvalidSignal { signal: i32 },

    #[error("failed to send {signal} to pid {pid} (`{comm}`): {source}{hint}")]
    Signal {
        pid: i32,
        comm: String,
        signal: String,
        #[source]
        source: nix::Error,
        /// What to do about it, starting with "; " (empty when there is nothing to add).
        hint: &'static str,
    },

    #[error(
        "`{path}` is not an existing directory; fill_disk needs a directory on the filesystem to fill"
    )]
    NotADirectory { path: PathBuf },

    #[error("cannot fill `{path}`: {reason}")]
    WouldOverfill { path: PathBuf, reason: String },

    #[error("cannot stress this host: {reason}")]
    WouldOverload { reason: String },

    #[error("stress failed: {reason}")]
    Stress { reason: String },

    #[error("cannot read the usage of the filesystem holding `{path}`: {source}")]
    Statvfs {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },

    #[error("failed to fill `{path}`: {source}; nothing was left behind")]
    Fill {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "fill file `{path}` already exists; a fault with this id may still be in place: revert it (`chaosctl revert --all`) or delete the file"
    )]
    FillFileExists { path: PathBuf },

    #[error("failed to delete fill file `{path}`: {source}; delete it by hand")]
    Unfill {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("`{kind}` faults {reason}")]
    Unsupported { kind: FaultKind, reason: String },

    #[error("`{kind}` fault: {reason}")]
    Network { kind: FaultKind, reason: String },

    #[error("`inside:`: {reason}")]
    Inside { reason: String },

    #[error(
        "invalid fault id `{fault_id}`: use 1 to 128 letters, digits, `-`, `_` or `.`, not starting with `.`"
    )]
    InvalidFaultId { fault_id: String },

    #[error("fault `{fault_id}` is already known to this agent; give every fault its own id")]
    DuplicateFault { fault_id: String },

    #[error("no fault `{fault_id}` is known to this agent")]
    UnknownFault { fault_id: String },

    #[error(
        "hold {hold_ms}ms of fault `{fault_id}` is over the limit of {limit_ms}ms (7 days); hold it at most that long and inject again"
    )]
    HoldTooLong {
        fault_id: String,
        hold_ms: u128,
        limit_ms: u128,
    },

    #[error(
        "the agent failed unexpectedly ({message}) while {action} fault `{fault_id}`; {outcome}"
    )]
    Panicked {
        fault_id: String,
        action: &'static str,
        message: String,
        /// What became of the fault, and what to do.
        outcome: String,
    },

    #[error(
        "journal `{path}`: failed to {action}: {source}; check that the state directory is writable"
    )]
    Journal {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },

    #[error(
        "journal entry `{path}` cannot be read: {reason}; undo its fault by hand, then delete the file"
    )]
    JournalCorrupt { path: PathBuf, reason: String },
}

impl FaultError {
    /// A stable, machine-readable name for the error (for APIs and reports).
    pub fn code(&self) -> &'static str {
        match self {
            FaultError::NoProcessMatches { .. } => "no_process_matches",
            FaultError::OnlyProtected { .. } => "only_protected",
            FaultError::PidfileUnreadable { .. } => "pidfile_unreadable",
            FaultError::PidfileGarbled { .. } => "pidfile_garbled",
            FaultError::InvalidPattern { .. } => "invalid_pattern",
            FaultError::InvalidSelector { .. } => "invalid_selector",
            FaultError::Proc { .. } => "proc",
            FaultError::InvalidSignal { .. } => "invalid_signal",
            FaultError::Signal { .. } => "signal_failed",
            FaultError::NotADirectory { .. } => "not_a_directory",
            FaultError::WouldOverfill { .. } => "would_overfill",
            FaultError::WouldOverload { .. } => "would_overload",
            FaultError::Stress { .. } => "stress_failed",
            FaultError::Statvfs { .. } => "statvfs",
            FaultError::Fill { .. } => "fill_failed",
            FaultError::FillFileExists { .. } => "fill_file_exists",
            FaultError::Unfill { .. } => "unfill_failed",
            FaultError::Unsupported { .. } => "unsupported",
            FaultError::Network { .. } => "network",
            FaultError::Inside { .. } => "inside",
            FaultError::InvalidFaultId { .. } => "invalid_fault_id",
            FaultError::DuplicateFault { .. } => "duplicate_fault",
            FaultError::UnknownFault { .. } => "unknown_fault",
            FaultError::HoldTooLong { .. } => "hold_too_long",
            FaultError::Panicked { .. } => "panicked",
            FaultError::Journal { .. } => "journal",
            FaultError::JournalCorrupt { .. } => "journal_corrupt",
        }
    }
}
