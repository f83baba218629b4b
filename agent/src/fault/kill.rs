//! `kill`: sends a signal to the picked processes. A signal cannot be taken back, so the revert is
//! a no-op that says so.

use std::fmt;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{
    Context, Injected, Kind, Resolved, Target, Undo, Undone, matching, other_kinds_undo,
    pick_targets, poll, signals,
};
use crate::error::FaultError;
use crate::process;
use crate::server::policy::{Policy, Refusal};
use crate::spec::{FaultKind, KillSpec, ProcessSelector, SignalNumber};

impl Kind for KillSpec {
    fn support() -> Result<&'static str, &'static str> {
        Ok("signal")
    }

    fn check(&self, _at: &Resolved) -> Result<(), FaultError> {
        signal_of(self.signal)?;
        matching(&self.process).map(drop)
    }

    fn plan(&self, _fault_id: &str, seed: u64, _at: &Resolved) -> Result<Undo, FaultError> {
        signal_of(self.signal)?;
        Ok(Undo::Kill {
            processes: pick_targets(&self.process, self.pick, seed)?,
        })
    }

    fn inject(&self, _fault_id: &str, undo: &Undo, _ctx: &Context) -> Result<Injected, FaultError> {
        let Undo::Kill { processes } = undo else {
            return Err(other_kinds_undo(FaultKind::Kill));
        };
        inject(&self.process, self.signal, processes)
    }

    fn check_policy(&self, policy: &Policy, _at: &Resolved) -> Result<(), Refusal> {
        policy.check_selector(&self.process)
    }
}

impl fmt::Display for KillSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let KillSpec {
            process,
            signal,
            pick,
        } = self;
        write!(f, "kill {signal} to {process} (pick {pick})")
    }
}

/// The signal a `kill` fault sends, if this agent can send it.
pub fn signal_of(signal: SignalNumber) -> Result<Signal, FaultError> {
    Signal::try_from(signal.0).map_err(|_| FaultError::InvalidSignal { signal: signal.0 })
}

fn inject(
    selector: &ProcessSelector,
    signal: SignalNumber,
    targets: &[Target],
) -> Result<Injected, FaultError> {
    let signal = signal_of(signal)?;
    let mut delivered = Vec::new();
    let mut sent = Vec::new();
    let mut exited = Vec::new();
    for target in targets {
        match signals::send(target, signal)? {
            Some(to) => {
                delivered.push(target);
                sent.push(to);
            }
            None => exited.push(target.label()),
        }
    }
    if delivered.is_empty() {
        return Err(FaultError::NoProcessMatches {
            selector: format!(
                "{selector} any more (the picked processes exited before the signal)"
            ),
        });
    }

    let mut detail = format!("sent {signal} to {}", count(delivered.len()));
    let verified = if signal == Signal::SIGKILL {
        // Their pidfds become readable as they exit; without pidfds, /proc is looked at.
        let gone = signals::all_exited(&sent, Duration::from_secs(1)).unwrap_or_else(|| {
            poll(100, || {
                delivered
                    .iter()
                    .all(|t| !process::is_same_process(t.pid, t.start_time))
            })
        });
        if gone {
            detail.push_str("; all gone within 1 s");
        } else {
            let alive: Vec<String> = delivered
                .iter()
                .filter(|t| process::is_same_process(t.pid, t.start_time))
                .map(|t| t.label())
                .collect();
            detail.push_str(&format!("; still alive after 1 s: {}", alive.join(", ")));
        }
        gone
    } else {
        detail.push_str("; delivered");
        true
    };
    if !exited.is_empty() {
        detail.push_str(&format!("; already exited: {}", exited.join(", ")));
    }
    Ok(Injected {
        mechanism: "signal".to_string(),
        affected: delivered.iter().map(|t| t.label()).collect(),
        verified,
        detail,
        undo: None,
    })
}

pub(super) fn revert() -> Undone {
    Undone {
        verified: true,
        detail: "nothing to revert: a signal cannot be taken back".to_string(),
    }
}

pub(super) fn count(n: usize) -> String {
    if n == 1 {
        "1 process".to_string()
    } else {
        format!("{n} processes")
    }
}
