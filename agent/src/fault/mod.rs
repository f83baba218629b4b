//! The fault executors: one module per kind, each an inject/revert pair, dispatched here by a
//! `match` on [`FaultSpec`] so the compiler finds a kind that is not handled.
//!
//! Every executor works in three steps: [`plan`] decides exactly what will be done and how to undo
//! it (the [`Undo`], which the caller journals), [`inject`] acts and reads the host back to verify,
//! and [`revert`] undoes from the `Undo` alone, so it also works in a later process after a crash.
//!
//! **Invariant:** `plan` does not touch the host; `revert` is idempotent.

pub mod fill_disk;
pub mod kill;
pub mod net;
pub mod pause;

use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::FaultError;
use crate::process::{self, ProcessInfo};
use crate::spec::{FaultKind, FaultSpec, Pick, ProcessSelector};

pub use net::Context;

/// Exactly what an injection did (or will do), enough to undo it from the journal alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Undo {
    /// Signals cannot be taken back: nothing to undo.
    Kill { processes: Vec<Target> },
    /// SIGCONT each process that is still the same one.
    Pause { processes: Vec<Target> },
    /// Delete the fill file.
    FillDisk { file: PathBuf, bytes: u64 },
    /// `drop` and `loss`: delete the nftables table `inet <table>`.
    NetTable { table: String, interface: String },
    /// `latency` by NFQUEUE: remove the jump from `INPUT` and the chain (in iptables and/or
    /// ip6tables), and stop the holder of `queue` if it runs in this process.
    Nfqueue {
        chain: String,
        queue: u16,
        interface: String,
        ipv4: bool,
        ipv6: bool,
    },
    /// `latency` by netem: delete our root qdisc of `interface`.
    Netem { interface: String },
}

/// One process a fault acts on, named so that a reused pid is not mistaken for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub pid: i32,
    pub start_time: u64,
    pub comm: String,
    /// Already stopped before the fault: `pause` leaves it stopped when reverting.
    #[serde(default)]
    pub was_stopped: bool,
}

impl Target {
    fn from_info(info: &ProcessInfo) -> Target {
        Target {
            pid: info.pid,
            start_time: info.start_time,
            comm: info.comm.clone(),
            was_stopped: is_stopped(info.state),
        }
    }

    /// `pid 123 (sleep)`.
    pub fn label(&self) -> String {
        format!("pid {} ({})", self.pid, self.comm)
    }
}

/// What an injection did, as read back from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub mechanism: String,
    pub affected: Vec<String>,
    pub verified: bool,
    pub detail: String,
}

/// What a revert did, as read back from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undone {
    pub verified: bool,
    pub detail: String,
}

/// Whether this agent can do `kind`, and how; the reason when it cannot. The network kinds
/// depend on what this host offers, probed once per process ([`net::detect`]).
pub fn support(kind: FaultKind) -> Result<&'static str, &'static str> {
    match kind {
        FaultKind::Kill | FaultKind::Pause => Ok("signal"),
        FaultKind::FillDisk => Ok("fallocate"),
        FaultKind::Loss | FaultKind::Drop => match &net::detect::host().nft {
            Ok(()) => Ok("nft"),
            Err(reason) => Err(reason.as_str()),
        },
        FaultKind::Latency => net::detect::latency(net::detect::host()),
    }
}

fn unsupported(kind: FaultKind) -> FaultError {
    FaultError::Unsupported {
        kind,
        reason: support(kind)
            .err()
            .unwrap_or("are not supported here")
            .to_string(),
    }
}

/// Preflight: the kind is supported, its selector matches, its path is usable. Touches nothing.
pub fn check(spec: &FaultSpec) -> Result<(), FaultError> {
    match spec {
        FaultSpec::Kill {
            process, signal, ..
        } => {
            kill::signal_of(*signal)?;
            matching(process).map(drop)
        }
        FaultSpec::Pause { process, .. } => matching(process).map(drop),
        FaultSpec::FillDisk { path, amount } => fill_disk::bytes_to_add(path, *amount).map(drop),
        FaultSpec::Latency { scope, .. }
        | FaultSpec::Loss { scope, .. }
        | FaultSpec::Drop { scope, .. } => {
            support(spec.kind()).map_err(|_| unsupported(spec.kind()))?;
            if let FaultSpec::Loss { share, .. } = spec
                && !(0.0..=100.0).contains(share)
            {
                return Err(net::net_error(
                    FaultKind::Loss,
                    format!("share {share}% is not between 0% and 100%"),
                ));
            }
            net::check_scope(spec.kind(), scope).map(drop)
        }
    }
}

/// Decides what an injection of `spec` will do, without touching the host. `seed` draws the picks.
pub fn plan(fault_id: &str, spec: &FaultSpec, seed: u64) -> Result<Undo, FaultError> {
    match spec {
        FaultSpec::Kill {
            process,
            signal,
            pick,
        } => {
            kill::signal_of(*signal)?;
            Ok(Undo::Kill {
                processes: pick_targets(process, *pick, seed)?,
            })
        }
        FaultSpec::Pause { process, pick } => Ok(Undo::Pause {
            processes: pause::plan(pick_targets(process, *pick, seed)?),
        }),
        FaultSpec::FillDisk { path, amount } => fill_disk::plan(fault_id, path, *amount),
        FaultSpec::Loss { scope, .. } | FaultSpec::Drop { scope, .. } => {
            support(spec.kind()).map_err(|_| unsupported(spec.kind()))?;
            let interface = net::check_scope(spec.kind(), scope)?;
            Ok(Undo::NetTable {
                table: net::filter::table_name(fault_id),
                interface,
            })
        }
        FaultSpec::Latency { scope, .. } => {
            let mechanism = support(spec.kind()).map_err(|_| unsupported(spec.kind()))?;
            let interface = net::check_scope(spec.kind(), scope)?;
            if mechanism == "netem" {
                return Ok(Undo::Netem { interface });
            }
            let (ipv4, ipv6) = net::latency::families(scope)?;
            Ok(Undo::Nfqueue {
                chain: net::latency::chain_name(fault_id),
                queue: net::latency::queue_number(fault_id),
                interface,
                ipv4,
                ipv6,
            })
        }
    }
}

/// Carries out a planned injection and verifies it. On error the caller reverts `undo` (which is
/// safe for a half-done injection). Network faults get no kernel-side expiry from the hold and
/// no exemptions but SSH's this way: see [`inject_with`].
pub fn inject(fault_id: &str, spec: &FaultSpec, undo: &Undo) -> Result<Injected, FaultError> {
    inject_with(fault_id, spec, undo, &Context::default())
}

/// [`inject`], with the hold (for kernel-side expiry) and the connections to leave alone.
pub fn inject_with(
    fault_id: &str,
    spec: &FaultSpec,
    undo: &Undo,
    ctx: &Context,
) -> Result<Injected, FaultError> {
    match (spec, undo) {
        (FaultSpec::Kill { signal, .. }, Undo::Kill { processes }) => {
            kill::inject(spec, *signal, processes)
        }
        (FaultSpec::Pause { .. }, Undo::Pause { processes }) => {
            pause::inject(fault_id, spec, processes)
        }
        (FaultSpec::FillDisk { path, amount }, Undo::FillDisk { file, bytes }) => {
            fill_disk::inject(path, *amount, file, *bytes)
        }
        (FaultSpec::Drop { mode, scope }, Undo::NetTable { table, interface }) => {
            net::filter::inject(
                net::filter::Action::of_drop(*mode),
                scope,
                table,
                interface,
                ctx,
            )
        }
        (FaultSpec::Loss { share, scope }, Undo::NetTable { table, interface }) => {
            net::filter::inject(
                net::filter::Action::of_share(*share),
                scope,
                table,
                interface,
                ctx,
            )
        }
        (
            FaultSpec::Latency {
                delay,
                jitter,
                scope,
            },
            Undo::Nfqueue {
                chain,
                queue,
                interface,
                ipv4,
                ipv6,
            },
        ) => net::latency::inject_nfqueue(
            *delay,
            *jitter,
            scope,
            chain,
            *queue,
            interface,
            (*ipv4, *ipv6),
            ctx,
        ),
        (
            FaultSpec::Latency {
                delay,
                jitter,
                scope,
            },
            Undo::Netem { interface },
        ) => net::latency::inject_netem(*delay, *jitter, scope, interface, ctx),
        (_, _) => Err(FaultError::Unsupported {
            kind: spec.kind(),
            reason: "cannot be injected from undo data of another kind; plan the same spec"
                .to_string(),
        }),
    }
}

/// Undoes the injection of `fault_id` from its journaled undo data; idempotent.
pub fn revert(fault_id: &str, undo: &Undo) -> Result<Undone, FaultError> {
    match undo {
        Undo::Kill { .. } => Ok(kill::revert()),
        Undo::Pause { processes } => pause::revert(fault_id, processes),
        Undo::FillDisk { file, bytes } => fill_disk::revert(file, *bytes),
        Undo::NetTable { table, .. } => net::filter::revert(table),
        Undo::Nfqueue {
            chain,
            interface,
            ipv4,
            ipv6,
            ..
        } => net::latency::revert_nfqueue(chain, interface, *ipv4, *ipv6),
        Undo::Netem { interface } => net::latency::revert_netem(interface),
    }
}

/// The live processes a selector matches; matching none is an error.
fn matching(selector: &ProcessSelector) -> Result<Vec<ProcessInfo>, FaultError> {
    let (found, protected) = process::find_with_protected(selector)?;
    if found.is_empty() && !protected.is_empty() {
        return Err(FaultError::OnlyProtected {
            selector: selector.to_string(),
            which: protected.join("; "),
        });
    }
    if found.is_empty() {
        return Err(FaultError::NoProcessMatches {
            selector: selector.to_string(),
        });
    }
    Ok(found)
}

fn pick_targets(
    selector: &ProcessSelector,
    pick: Pick,
    seed: u64,
) -> Result<Vec<Target>, FaultError> {
    let found = matching(selector)?;
    Ok(pick_from(&found, pick, seed)
        .into_iter()
        .map(Target::from_info)
        .collect())
}

/// Draws `pick` of `sorted` (ascending pids) with `seed`; the result keeps the ascending order, and
/// the same list, pick and seed always give the same result.
pub fn pick_from<T>(sorted: &[T], pick: Pick, seed: u64) -> Vec<&T> {
    let n = pick.count_of(sorted.len());
    if n >= sorted.len() {
        return sorted.iter().collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut indices = rand::seq::index::sample(&mut rng, sorted.len(), n).into_vec();
    indices.sort_unstable();
    indices.into_iter().map(|i| &sorted[i]).collect()
}

fn is_stopped(state: char) -> bool {
    matches!(state, 'T' | 't')
}

/// Sends `signal` to `target` if it is still the same process. `Ok(false)` when it has exited.
fn send(target: &Target, signal: Signal) -> Result<bool, FaultError> {
    if !process::is_same_process(target.pid, target.start_time) {
        return Ok(false);
    }
    match signal::kill(Pid::from_raw(target.pid), signal) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(source) => Err(FaultError::Signal {
            pid: target.pid,
            comm: target.comm.clone(),
            signal: signal.as_str().to_string(),
            source,
            hint: match source {
                Errno::EPERM => "; run the agent as root or as the process's owner",
                _ => "",
            },
        }),
    }
}

/// Polls `done` until it holds or about `tries` × 10 ms have passed. The first looks come quickly
/// (signals take effect in microseconds), later ones every 10 ms.
fn poll(tries: u32, mut done: impl FnMut() -> bool) -> bool {
    let limit = Duration::from_millis(10) * tries;
    let mut waited = Duration::ZERO;
    let mut step = Duration::from_micros(100);
    while waited < limit {
        if done() {
            return true;
        }
        thread::sleep(step);
        waited += step;
        step = (step * 2).min(Duration::from_millis(10));
    }
    done()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_are_reproducible_sorted_and_sized() {
        let pids: Vec<i32> = (100..120).collect();
        let a = pick_from(&pids, Pick::Count(5), 42);
        let b = pick_from(&pids, Pick::Count(5), 42);
        assert_eq!(a, b);
        assert_eq!(a.len(), 5);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        let others: Vec<_> = (0..20)
            .map(|seed| pick_from(&pids, Pick::Count(5), seed))
            .collect();
        assert!(
            others.iter().any(|o| *o != a),
            "different seeds should differ somewhere"
        );
        assert_eq!(pick_from(&pids, Pick::Percent(10.0), 1).len(), 2);
        assert_eq!(pick_from(&pids, Pick::All, 1).len(), 20);
    }
}
