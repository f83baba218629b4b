//! The fault executors: one module per kind, each implementing [`Kind`] for its type in
//! [`crate::spec`] (`kill`, `pause`, `fill_disk`; `net::filter` for `drop` and `loss`,
//! `net::latency` for `latency`, `net::bandwidth` for `bandwidth`, `net::impair` for `corrupt` and
//! `duplicate`, `net::dns` for `dns`, `net::http` for `http`). [`kind_of`] is the one `match` from a [`FaultSpec`] to its kind,
//! so the compiler finds a kind that is not handled.
//!
//! Every executor works in three steps: [`plan`] decides exactly what will be done and how to undo
//! it (the [`Undo`], which the caller journals), [`inject`] acts and reads the host back to verify,
//! and [`revert`] undoes from the `Undo` alone, so it also works in a later process after a crash.
//!
//! **Invariant:** `plan` does not touch the host; `revert` is idempotent.

pub mod fill_disk;
pub mod inside;
pub mod kill;
pub mod net;
pub mod pause;
mod signals;
pub mod stress;
pub mod stress_inside;

use std::fmt;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::FaultError;
use crate::process::{self, ProcessInfo};
use crate::server::policy::{Policy, Refusal};
use crate::spec::DnsSpec;
use crate::spec::HttpSpec;
use crate::spec::{
    BandwidthSpec, CorruptSpec, DropSpec, DuplicateSpec, FaultKind, FaultSpec, FillDiskSpec,
    KillSpec, LatencySpec, LossSpec, PauseSpec, Pick, ProcessSelector, StressSpec,
};

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
    /// `latency` by netem: delete our root qdisc of `interface`, the `prio` of major `handle`.
    Netem {
        interface: String,
        #[serde(default = "legacy_netem_handle")]
        handle: u16,
    },
    /// `stress`: kill the children (the pids that are still the same processes) and the whole
    /// cgroup, then remove the cgroup. Planned with no children; the injection fills them in.
    Stress {
        cgroup: Option<PathBuf>,
        #[serde(default)]
        children: Vec<Target>,
    },
    /// `stress` with `inside:`: in each target cgroup, kill the children and every process in our
    /// directories below it, then remove them.
    StressInside {
        entries: Vec<stress_inside::CgroupEntry>,
    },
    /// `bandwidth`: delete the nftables table `inet <table>` that marks the packets, and our HTB
    /// root qdisc of `interface`.
    Bandwidth {
        table: String,
        interface: String,
        handle: u16,
    },
    /// `corrupt` (netem): delete our root qdisc of `interface`, the `prio` of major `handle`.
    Corrupt {
        interface: String,
        #[serde(default = "legacy_netem_handle")]
        handle: u16,
    },
    /// `inside:`: the kind's own undo data, carried out inside each namespace that still exists.
    Inside { entries: Vec<inside::InsideEntry> },
    /// `duplicate` (netem): delete our root qdisc of `interface`, the `prio` of major `handle`.
    Duplicate {
        interface: String,
        #[serde(default = "legacy_netem_handle")]
        handle: u16,
    },
    /// `dns`: stop the gate's renewer and the responder if they run in this process, delete the
    /// nftables table `inet <table>` of the redirect, and forget the UDP flows to `resolvers`'
    /// port 53 that it redirected.
    Dns {
        table: String,
        #[serde(default)]
        resolvers: Vec<std::net::IpAddr>,
    },
    /// `http`: stop the gate's renewer, delete the redirect table `inet <table>`, stop the proxy
    /// if it runs in this process. `seed` draws the requests hit.
    Http { table: String, port: u16, seed: u64 },
}

impl Undo {
    /// Whether recovery would have anything to do: a fault whose undo does nothing (signals
    /// sent) is not journaled.
    pub fn needs_journal(&self) -> bool {
        !matches!(self, Undo::Kill { .. })
    }
}

/// The netem handle of a journal written before handles were per fault.
fn legacy_netem_handle() -> u16 {
    net::netem::LEGACY_HANDLE
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
    /// The container it ran in (`06bc8a2ad96f (checkout)`), for the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

impl Target {
    fn from_info(info: &ProcessInfo) -> Target {
        Target {
            pid: info.pid,
            start_time: info.start_time,
            comm: info.comm.clone(),
            was_stopped: is_stopped(info.state),
            container: info.container.clone(),
        }
    }

    /// `pid 123 (sleep)`; `pid 123 (sleep) in container 06bc8a2ad96f (checkout)`.
    pub fn label(&self) -> String {
        match &self.container {
            Some(c) => format!("pid {} ({}) in container {c}", self.pid, self.comm),
            None => format!("pid {} ({})", self.pid, self.comm),
        }
    }
}

/// What an injection did, as read back from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub mechanism: String,
    pub affected: Vec<String>,
    pub verified: bool,
    pub detail: String,
    /// The undo data completed by the injection (the children `stress` started), journaled in
    /// place of the planned one; `None` when the plan's is complete.
    pub undo: Option<Undo>,
}

/// What a revert did, as read back from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undone {
    pub verified: bool,
    pub detail: String,
}

/// What a fault kind's module implements for its type in [`crate::spec`]: everything the agent
/// does with a fault of that kind but the revert, which works from the journaled [`Undo`] alone
/// ([`revert`]).
pub trait Kind: fmt::Display {
    /// Whether this agent can do the kind, and by what mechanism (`signal`, `nft`, ...); the
    /// reason when it cannot. Asked for the capabilities too, without a fault.
    fn support() -> Result<&'static str, &'static str>
    where
        Self: Sized;

    /// What this fault means on this host now, where that takes a lookup: found once for a
    /// request ([`resolve`]) and handed to its policy check and its preflight check or plan, so
    /// each sees the same. Nothing to find for most kinds.
    fn resolve(&self) -> Result<Resolved, FaultError> {
        Ok(Resolved::default())
    }

    /// Preflight: the kind is supported, its selector matches, its path is usable. Touches
    /// nothing.
    fn check(&self, at: &Resolved) -> Result<(), FaultError>;

    /// Decides what an injection will do, and how to undo it, without touching the host. `seed`
    /// draws the picks.
    fn plan(&self, fault_id: &str, seed: u64, at: &Resolved) -> Result<Undo, FaultError>;

    /// Carries out the injection `plan` gave `undo` for, and reads the host back to verify it.
    /// Undo data of another kind is refused ([`other_kinds_undo`]).
    fn inject(&self, fault_id: &str, undo: &Undo, ctx: &Context) -> Result<Injected, FaultError>;

    /// Whether `chaos-agent`'s policy allows this fault; its kind is checked before, by
    /// [`Policy::check_fault`].
    fn check_policy(&self, policy: &Policy, at: &Resolved) -> Result<(), Refusal>;
}

/// What a fault means on this host at one moment, found by [`resolve`] once for a request: the
/// policy allows, and the plan acts on, the very same thing. Today the directory a `fill_disk`
/// with `inside:` fills, as the host sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// `fill_disk` with `inside:`: the host's path of its processes' `path`.
    pub(crate) fill_dir: Option<PathBuf>,
    /// `stress` with `inside:`: the cgroups its workers go below.
    pub(crate) stress_cgroups: Vec<stress_inside::TargetCgroup>,
}

/// Looks up what `spec` means on this host now ([`Kind::resolve`]); reads `/proc` only for a
/// fault that needs it.
pub fn resolve(spec: &FaultSpec) -> Result<Resolved, FaultError> {
    kind_of(spec).resolve()
}

/// The kind of `spec`, which does the work.
pub fn kind_of(spec: &FaultSpec) -> &dyn Kind {
    match spec {
        FaultSpec::Kill(kill) => kill,
        FaultSpec::Pause(pause) => pause,
        FaultSpec::Latency(latency) => latency,
        FaultSpec::Loss(loss) => loss,
        FaultSpec::Drop(drop) => drop,
        FaultSpec::FillDisk(fill_disk) => fill_disk,
        FaultSpec::Stress(stress) => stress,
        FaultSpec::Bandwidth(bandwidth) => bandwidth,
        FaultSpec::Corrupt(corrupt) => corrupt,
        FaultSpec::Duplicate(duplicate) => duplicate,
        FaultSpec::Dns(dns) => dns,
        FaultSpec::Http(http) => http,
    }
}

/// Whether this agent can do `kind`, and how; the reason when it cannot. The network kinds
/// depend on what this host offers, probed once per process ([`net::detect`]).
pub fn support(kind: FaultKind) -> Result<&'static str, &'static str> {
    match kind {
        FaultKind::Kill => KillSpec::support(),
        FaultKind::Pause => PauseSpec::support(),
        FaultKind::Latency => LatencySpec::support(),
        FaultKind::Loss => LossSpec::support(),
        FaultKind::Drop => DropSpec::support(),
        FaultKind::FillDisk => FillDiskSpec::support(),
        FaultKind::Stress => StressSpec::support(),
        FaultKind::Bandwidth => BandwidthSpec::support(),
        FaultKind::Corrupt => CorruptSpec::support(),
        FaultKind::Duplicate => DuplicateSpec::support(),
        FaultKind::Dns => DnsSpec::support(),
        FaultKind::Http => HttpSpec::support(),
    }
}

/// `Err` with the reason when this agent cannot do `kind`, else the mechanism it uses.
fn supported(kind: FaultKind) -> Result<&'static str, FaultError> {
    support(kind).map_err(|reason| FaultError::Unsupported {
        kind,
        reason: reason.to_string(),
    })
}

/// The error of an injection given the undo data of another kind (a spec and a plan that do not
/// go together: plan the same spec).
fn other_kinds_undo(kind: FaultKind) -> FaultError {
    FaultError::Unsupported {
        kind,
        reason: "cannot be injected from undo data of another kind; plan the same spec".to_string(),
    }
}

/// Preflight: the kind is supported, its selector matches, its path is usable (inside each
/// namespace of `inside:`). Touches nothing.
pub fn check(spec: &FaultSpec) -> Result<(), FaultError> {
    check_at(spec, &resolve(spec)?)
}

/// [`check`] of `spec` as the caller resolved it, `at` (for its policy check too).
pub fn check_at(spec: &FaultSpec, at: &Resolved) -> Result<(), FaultError> {
    match spec.netns_inside() {
        Some(selector) => inside::check(spec, selector),
        None => kind_of(spec).check(at),
    }
}

/// Decides what an injection of `spec` will do, without touching the host. `seed` draws the picks.
pub fn plan(fault_id: &str, spec: &FaultSpec, seed: u64) -> Result<Undo, FaultError> {
    plan_at(fault_id, spec, seed, &resolve(spec)?)
}

/// [`plan`] of `spec` as the caller resolved it, `at` (for its policy check too).
pub fn plan_at(
    fault_id: &str,
    spec: &FaultSpec,
    seed: u64,
    at: &Resolved,
) -> Result<Undo, FaultError> {
    match spec.netns_inside() {
        Some(selector) => inside::plan(fault_id, spec, selector, seed),
        None => kind_of(spec).plan(fault_id, seed, at),
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
    match undo {
        Undo::Inside { entries } => inside::inject(spec, entries, ctx),
        _ => kind_of(spec).inject(fault_id, undo, ctx),
    }
}

impl fmt::Display for FaultSpec {
    /// A one-line summary for plans, progress and reports.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        kind_of(self).fmt(f)
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
        Undo::Netem { interface, handle } => {
            net::netem::revert(FaultKind::Latency, interface, *handle)
        }
        Undo::Stress { cgroup, children } => stress::revert(cgroup.as_deref(), children),
        Undo::StressInside { entries } => Ok(stress_inside::revert(entries)),
        Undo::Bandwidth {
            table,
            interface,
            handle,
        } => net::bandwidth::revert(table, interface, *handle),
        Undo::Corrupt { interface, handle } => {
            net::netem::revert(FaultKind::Corrupt, interface, *handle)
        }
        Undo::Duplicate { interface, handle } => {
            net::netem::revert(FaultKind::Duplicate, interface, *handle)
        }
        Undo::Inside { entries } => inside::revert(entries),
        Undo::Dns { table, resolvers } => net::dns::revert(table, resolvers),
        Undo::Http { table, port, .. } => net::http::revert(table, *port),
    }
}

/// Stops what runs in this process for the injection `undo` describes (the NFQUEUE holder),
/// without touching the host: for a fault whose namespace has gone, where there is nothing left
/// to revert but our own threads would go on.
fn stop_workers(undo: &Undo) {
    match undo {
        Undo::Nfqueue { chain, .. } => {
            net::nfqueue::stop(chain);
        }
        Undo::Inside { entries } => entries.iter().for_each(|e| stop_workers(&e.undo)),
        Undo::Dns { table, .. } => {
            net::gate::stop(table);
            net::dns_responder::stop(table);
        }
        Undo::Http { table, .. } => {
            net::gate::stop(table);
            net::proxy::stop(table);
        }
        Undo::Kill { .. }
        | Undo::Pause { .. }
        | Undo::FillDisk { .. }
        | Undo::NetTable { .. }
        | Undo::Netem { .. }
        | Undo::Stress { .. }
        | Undo::StressInside { .. }
        | Undo::Bandwidth { .. }
        | Undo::Corrupt { .. }
        | Undo::Duplicate { .. } => {}
    }
}

/// The live processes a selector matches; matching none is an error.
fn matching(selector: &ProcessSelector) -> Result<Vec<ProcessInfo>, FaultError> {
    let (found, protected) = process::find_with_protected(selector)?;
    if found.is_empty() && !protected.is_empty() {
        return Err(FaultError::OnlyProtected {
            selector: selector.to_string(),
            which: process::protected_reasons(protected).join("; "),
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
    let picked = pick_from(&found, pick, seed).into_iter().cloned().collect();
    // Only the picks are named in the report: only their containers are looked up.
    Ok(process::with_containers(picked)
        .iter()
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
