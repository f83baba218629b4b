//! `pause`: SIGSTOP to the picked processes; the revert sends SIGCONT to each one that is still the
//! same process (pid and start time), and leaves alone those that were stopped before the fault.

use nix::sys::signal::Signal;

use super::kill::count;
use super::{Injected, Target, Undone, is_stopped, poll, send};
use crate::error::FaultError;
use crate::process;
use crate::spec::FaultSpec;

pub(super) fn inject(spec: &FaultSpec, targets: &[Target]) -> Result<Injected, FaultError> {
    let mut stopped = Vec::new();
    let mut exited = Vec::new();
    for target in targets {
        if send(target, Signal::SIGSTOP)? {
            stopped.push(target);
        } else {
            exited.push(target.label());
        }
    }
    if stopped.is_empty() {
        let selector = spec.process().map(ToString::to_string).unwrap_or_default();
        return Err(FaultError::NoProcessMatches {
            selector: format!("{selector} any more (the picked processes exited before SIGSTOP)"),
        });
    }

    let verified = poll(100, || stopped.iter().all(|t| state_is(t, is_stopped)));
    let mut detail = format!("sent SIGSTOP to {}", count(stopped.len()));
    if verified {
        detail.push_str("; all in state T");
    } else {
        let running: Vec<String> = stopped
            .iter()
            .filter(|t| !state_is(t, is_stopped))
            .map(|t| t.label())
            .collect();
        detail.push_str(&format!("; not stopped after 1 s: {}", running.join(", ")));
    }
    let already: Vec<String> = stopped
        .iter()
        .filter(|t| t.was_stopped)
        .map(|t| t.label())
        .collect();
    if !already.is_empty() {
        detail.push_str(&format!(
            "; already stopped before (left stopped at revert): {}",
            already.join(", ")
        ));
    }
    if !exited.is_empty() {
        detail.push_str(&format!("; already exited: {}", exited.join(", ")));
    }
    Ok(Injected {
        mechanism: "signal".to_string(),
        affected: stopped.iter().map(|t| t.label()).collect(),
        verified,
        detail,
    })
}

pub(super) fn revert(targets: &[Target]) -> Result<Undone, FaultError> {
    let mut continued = Vec::new();
    let mut exited = Vec::new();
    let mut left = Vec::new();
    let mut first_error = None;
    for target in targets {
        if target.was_stopped {
            left.push(target.label());
            continue;
        }
        match send(target, Signal::SIGCONT) {
            Ok(true) => continued.push(target),
            Ok(false) => exited.push(target.label()),
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    if let Some(err) = first_error {
        return Err(err);
    }

    let running = |t: &&Target| {
        !process::is_same_process(t.pid, t.start_time) || state_is(t, |s| !is_stopped(s))
    };
    let verified = poll(100, || continued.iter().all(running));
    let mut detail = format!("sent SIGCONT to {}", count(continued.len()));
    if verified {
        detail.push_str("; none in state T any more");
    } else {
        let still: Vec<String> = continued
            .iter()
            .filter(|t| !running(t))
            .map(|t| t.label())
            .collect();
        detail.push_str(&format!("; still stopped after 1 s: {}", still.join(", ")));
    }
    if !exited.is_empty() {
        detail.push_str(&format!("; exited while paused: {}", exited.join(", ")));
    }
    if !left.is_empty() {
        detail.push_str(&format!(
            "; left stopped as before the fault: {}",
            left.join(", ")
        ));
    }
    Ok(Undone { verified, detail })
}

/// Whether `target` is still the same process and its state satisfies `test`.
fn state_is(target: &Target, test: impl Fn(char) -> bool) -> bool {
    process::read(target.pid).is_some_and(|p| p.start_time == target.start_time && test(p.state))
}
