//! `kill`: sends a signal to the picked processes. A signal cannot be taken back, so the revert is
//! a no-op that says so.

use nix::sys::signal::Signal;

use super::{Injected, Target, Undone, poll, send};
use crate::error::FaultError;
use crate::process;
use crate::spec::{FaultSpec, SignalNumber};

/// The signal a `kill` fault sends, if this agent can send it.
pub fn signal_of(signal: SignalNumber) -> Result<Signal, FaultError> {
    Signal::try_from(signal.0).map_err(|_| FaultError::InvalidSignal { signal: signal.0 })
}

pub(super) fn inject(
    spec: &FaultSpec,
    signal: SignalNumber,
    targets: &[Target],
) -> Result<Injected, FaultError> {
    let signal = signal_of(signal)?;
    let mut delivered = Vec::new();
    let mut exited = Vec::new();
    for target in targets {
        if send(target, signal)? {
            delivered.push(target);
        } else {
            exited.push(target.label());
        }
    }
    if delivered.is_empty() {
        let selector = spec.process().map(ToString::to_string).unwrap_or_default();
        return Err(FaultError::NoProcessMatches {
            selector: format!(
                "{selector} any more (the picked processes exited before the signal)"
            ),
        });
    }

    let mut detail = format!("sent {signal} to {}", count(delivered.len()));
    let verified = if signal == Signal::SIGKILL {
        let gone = poll(100, || {
            delivered
                .iter()
                .all(|t| !process::is_same_process(t.pid, t.start_time))
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
