//! `pause`: SIGSTOP to the picked processes; the revert sends SIGCONT to each one that is still the
//! same process (pid and start time), and leaves alone those that were stopped before the fault.
//!
//! **Invariant:** pauses of one process overlap safely: [`HOLDS`] counts the faults holding each
//! process (by pid and start time, so a reused pid is another process), and only the revert of the
//! last one sends SIGCONT. A process counts as stopped before the fault only when it was stopped
//! before the first of our pauses, never because another of ours holds it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use nix::sys::signal::Signal;

use super::kill::count;
use super::{
    Context, Injected, Kind, Resolved, Target, Undo, Undone, is_stopped, matching,
    other_kinds_undo, pick_targets, poll, signals,
};
use crate::error::FaultError;
use crate::process;
use crate::server::policy::{Policy, Refusal};
use crate::spec::{FaultKind, PauseSpec, ProcessSelector};

impl Kind for PauseSpec {
    fn support() -> Result<&'static str, &'static str> {
        Ok("signal")
    }

    fn check(&self, _at: &Resolved) -> Result<(), FaultError> {
        matching(&self.process).map(drop)
    }

    fn plan(&self, _fault_id: &str, seed: u64, _at: &Resolved) -> Result<Undo, FaultError> {
        Ok(Undo::Pause {
            processes: plan(pick_targets(&self.process, self.pick, seed)?),
        })
    }

    fn inject(&self, fault_id: &str, undo: &Undo, _ctx: &Context) -> Result<Injected, FaultError> {
        let Undo::Pause { processes } = undo else {
            return Err(other_kinds_undo(FaultKind::Pause));
        };
        inject(fault_id, &self.process, processes)
    }

    fn check_policy(&self, policy: &Policy, _at: &Resolved) -> Result<(), Refusal> {
        policy.check_selector(&self.process)
    }
}

impl fmt::Display for PauseSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pause {} (pick {})", self.process, self.pick)
    }
}

/// The pauses in force in this process, per paused process (pid, start time). In memory: after a
/// crash, the next start reverts every pause left in the journal, which resumes them all anyway.
static HOLDS: Mutex<BTreeMap<(i32, u64), Holds>> = Mutex::new(BTreeMap::new());

/// Who holds one process stopped.
struct Holds {
    /// The ids of the pause faults holding it.
    faults: BTreeSet<String>,
    /// Whether it was stopped before the first of them: then the last revert leaves it stopped.
    was_stopped: bool,
}

fn holds() -> MutexGuard<'static, BTreeMap<(i32, u64), Holds>> {
    HOLDS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn key(target: &Target) -> (i32, u64) {
    (target.pid, target.start_time)
}

/// Planning: a process that another of our pauses holds looks stopped, but was only stopped
/// before this fault if it was before the first pause.
fn plan(mut targets: Vec<Target>) -> Vec<Target> {
    let holds = holds();
    for target in &mut targets {
        if let Some(held) = holds.get(&key(target)) {
            target.was_stopped = held.was_stopped;
        }
    }
    targets
}

fn inject(
    fault_id: &str,
    selector: &ProcessSelector,
    targets: &[Target],
) -> Result<Injected, FaultError> {
    let mut stopped = Vec::new();
    let mut exited = Vec::new();
    {
        // Under the lock, so a revert of another pause of the same process cannot slip between
        // our SIGSTOP and our count.
        let mut holds = holds();
        for target in targets {
            if signals::send(target, Signal::SIGSTOP)?.is_some() {
                holds
                    .entry(key(target))
                    .or_insert_with(|| Holds {
                        faults: BTreeSet::new(),
                        was_stopped: target.was_stopped,
                    })
                    .faults
                    .insert(fault_id.to_string());
                stopped.push(target);
            } else {
                exited.push(target.label());
            }
        }
    }
    if stopped.is_empty() {
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
        undo: None,
    })
}

/// What the revert of `fault_id` does to `target`: `None` to send SIGCONT, else why not.
enum Keep {
    /// Stopped before the first of our pauses.
    StoppedBefore,
    /// Other pauses of ours still hold it.
    HeldBy(Vec<String>),
}

/// Counts `fault_id` off `target`'s holds; whether the process must stay stopped.
fn release(
    holds: &mut BTreeMap<(i32, u64), Holds>,
    fault_id: &str,
    target: &Target,
) -> Option<Keep> {
    let key = key(target);
    let was_stopped = match holds.get_mut(&key) {
        // Not ours in this process (recovered from the journal of a dead one): only its own
        // record tells.
        None => target.was_stopped,
        Some(held) => {
            held.faults.remove(fault_id);
            if !held.faults.is_empty() {
                let others = held.faults.iter().map(|id| format!("`{id}`")).collect();
                return Some(Keep::HeldBy(others));
            }
            let was_stopped = held.was_stopped;
            holds.remove(&key);
            was_stopped
        }
    };
    was_stopped.then_some(Keep::StoppedBefore)
}

pub(super) fn revert(fault_id: &str, targets: &[Target]) -> Result<Undone, FaultError> {
    let mut continued = Vec::new();
    let mut exited = Vec::new();
    let mut left = Vec::new();
    let mut held = Vec::new();
    let mut first_error = None;
    {
        // Under the lock: the count and the SIGCONT go together (see `inject`).
        let mut holds = holds();
        for target in targets {
            match release(&mut holds, fault_id, target) {
                Some(Keep::StoppedBefore) => left.push(target.label()),
                Some(Keep::HeldBy(others)) => held.push(format!(
                    "{} still paused by fault {}",
                    target.label(),
                    others.join(", ")
                )),
                None => match signals::send(target, Signal::SIGCONT) {
                    Ok(Some(_)) => continued.push(target),
                    Ok(None) => exited.push(target.label()),
                    Err(err) => {
                        first_error.get_or_insert(err);
                    }
                },
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
    if !held.is_empty() {
        detail.push_str(&format!("; left stopped: {}", held.join("; ")));
    }
    Ok(Undone { verified, detail })
}

/// Whether `target` is still the same process and its state satisfies `test`.
fn state_is(target: &Target, test: impl Fn(char) -> bool) -> bool {
    process::read(target.pid).is_some_and(|p| p.start_time == target.start_time && test(p.state))
}
