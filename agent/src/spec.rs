//! What a fault asks for, resolved and checked: the types that cross from the controller to an
//! agent (the built-in `local` one today, `chaos-agent` over HTTP later).
//!
//! These are already validated values (durations parsed, signals numbered); the YAML surface and
//! its error messages live in `chaosd::scenario`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest any fault may be held, and the longest duration a scenario may give anything (a
/// hold, `max_duration`, a lease, a window): 7 days. Scenarios are checked against it, and an agent
/// refuses a longer `hold_ms` or `lease_ms` before it journals anything, so no end time or deadline
/// computed from a user's duration can overflow. A longer one is a typo (`2600000000h`), not a
/// game day.
pub const MAX_HOLD: Duration = Duration::from_secs(7 * 24 * 3600);

/// Which processes a fault or a `process` probe means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessSelector {
    /// The kernel's process name (`/proc/PID/comm`) or the executable's file name.
    Name(String),
    /// A regex on the full command line (arguments joined by spaces).
    Pattern(String),
    Pid(i32),
    /// A file holding a pid; resolved at each use, so a restarted service is followed.
    Pidfile(PathBuf),
    /// A glob (`*`, `?`, `[...]`; `*` also crosses `/`) on the process's cgroup path, as
    /// `/proc/PID/cgroup` shows it ([`crate::container::cgroup_path`]).
    Cgroup(String),
    /// The processes of a systemd unit (`nginx.service`; a bare name means `.service`): their
    /// cgroup path has the unit as a component.
    Unit(String),
    /// The processes of a container: an id prefix (12 to 64 hex digits) or a name, as Docker,
    /// Podman and Kubernetes name containers ([`crate::container`]).
    Container(String),
    /// Processes every one of these selects: `name` or `pattern` with any of `cgroup`, `unit`,
    /// `container`, each at most once (never `pid`, `pidfile` or another `all`).
    All(Vec<ProcessSelector>),
}

impl ProcessSelector {
    /// The selector's key as a scenario writes it.
    pub fn key(&self) -> &'static str {
        match self {
            ProcessSelector::Name(_) => "name",
            ProcessSelector::Pattern(_) => "pattern",
            ProcessSelector::Pid(_) => "pid",
            ProcessSelector::Pidfile(_) => "pidfile",
            ProcessSelector::Cgroup(_) => "cgroup",
            ProcessSelector::Unit(_) => "unit",
            ProcessSelector::Container(_) => "container",
            ProcessSelector::All(_) => "all",
        }
    }

    /// Whether it selects by cgroup (`cgroup`, `unit` or `container`, alone or combined): what a
    /// process is found in then matters as much as the process.
    pub fn is_scoped(&self) -> bool {
        match self {
            ProcessSelector::Cgroup(_)
            | ProcessSelector::Unit(_)
            | ProcessSelector::Container(_) => true,
            ProcessSelector::All(parts) => parts.iter().any(ProcessSelector::is_scoped),
            ProcessSelector::Name(_)
            | ProcessSelector::Pattern(_)
            | ProcessSelector::Pid(_)
            | ProcessSelector::Pidfile(_) => false,
        }
    }

    /// Why `parts` cannot be combined into [`ProcessSelector::All`], if they cannot: the one rule
    /// the scenario's validation and the agent both apply.
    pub fn combination_error(parts: &[ProcessSelector]) -> Option<String> {
        if parts.len() < 2 {
            return Some("a combined selector needs two keys or more".to_string());
        }
        for (i, part) in parts.iter().enumerate() {
            if matches!(
                part,
                ProcessSelector::Pid(_) | ProcessSelector::Pidfile(_) | ProcessSelector::All(_)
            ) {
                return Some(format!(
                    "`{}` names processes alone and does not combine with other keys; give it by itself",
                    part.key()
                ));
            }
            if parts[..i].iter().any(|p| p.key() == part.key()) {
                return Some(format!("`{}` is given twice", part.key()));
            }
        }
        if !parts.iter().any(ProcessSelector::is_scoped) {
            return Some(
                "`name` and `pattern` do not combine with each other; combine either with `cgroup`, `unit` or `container`"
                    .to_string(),
            );
        }
        None
    }
}

impl fmt::Display for ProcessSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessSelector::Name(name) => write!(f, "name `{name}`"),
            ProcessSelector::Pattern(pattern) => write!(f, "pattern `{pattern}`"),
            ProcessSelector::Pid(pid) => write!(f, "pid {pid}"),
            ProcessSelector::Pidfile(path) => write!(f, "pidfile `{}`", path.display()),
            ProcessSelector::Cgroup(glob) => write!(f, "cgroup `{glob}`"),
            ProcessSelector::Unit(unit) => write!(f, "unit `{unit}`"),
            ProcessSelector::Container(container) => write!(f, "container `{container}`"),
            ProcessSelector::All(parts) => {
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    part.fmt(f)?;
                }
                Ok(())
            }
        }
    }
}

/// How many of the matches to take: `N`, `N%` (rounded up, at least 1), or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pick {
    Count(u32),
    Percent(f64),
    #[default]
    All,
}

impl Pick {
    /// How many of `available` this pick takes.
    pub fn count_of(self, available: usize) -> usize {
        match self {
            Pick::All => available,
            Pick::Count(n) => (n as usize).min(available),
            Pick::Percent(p) => {
                if available == 0 {
                    0
                } else {
                    let n = ((available as f64) * p / 100.0).ceil() as usize;
                    n.clamp(1, available)
                }
            }
        }
    }
}

impl fmt::Display for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pick::All => f.write_str("all"),
            Pick::Count(n) => write!(f, "{n}"),
            Pick::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// The peers a network fault is about (`to` or `from`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PeerSelector {
    /// Addresses or CIDRs; empty means any.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Empty means any port.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// None means both TCP and UDP.
    #[serde(default)]
    pub protocol: Option<Protocol>,
}

/// Where a network fault applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NetScope {
    #[serde(default)]
    pub to: Option<PeerSelector>,
    #[serde(default)]
    pub from: Option<PeerSelector>,
    /// None: the interface of the default route, else the only non-loopback interface up.
    #[serde(default)]
    pub interface: Option<String>,
    /// Port 22 is left alone unless this is false.
    pub spare_ssh: bool,
    /// Made inside the network namespaces of these processes (a container's, a pod's), once per
    /// distinct namespace, instead of the host's ([`crate::fault::inside`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inside: Option<ProcessSelector>,
}

impl fmt::Display for PeerSelector {
    /// `10.0.0.20, 10.0.1.0/24 port 6379 (tcp)`; `any host` when no host is given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.hosts.is_empty() {
            f.write_str("any host")?;
        } else {
            f.write_str(&self.hosts.join(", "))?;
        }
        match self.ports.as_slice() {
            [] => {}
            [port] => write!(f, " port {port}")?,
            ports => {
                let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                write!(f, " ports {}", ports.join(", "))?;
            }
        }
        match self.protocol {
            Some(Protocol::Tcp) => f.write_str(" (tcp)"),
            Some(Protocol::Udp) => f.write_str(" (udp)"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for NetScope {
    /// ` to 10.0.0.20 port 6379, from any host port 22, on eth0, SSH not spared`, with a
    /// leading space: what follows a network fault's kind in its one-line summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(to) = &self.to {
            parts.push(format!("to {to}"));
        }
        if let Some(from) = &self.from {
            parts.push(format!("from {from}"));
        }
        if parts.is_empty() {
            parts.push("all traffic".to_string());
        }
        if let Some(interface) = &self.interface {
            parts.push(format!("on {interface}"));
        }
        if !self.spare_ssh {
            parts.push("SSH not spared".to_string());
        }
        if let Some(inside) = &self.inside {
            parts.push(format!("inside the network namespaces of {inside}"));
        }
        write!(f, " {}", parts.join(", "))
    }
}

/// A connection network faults leave alone: the controller's, to the agent's listening port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Exempt {
    /// The controller's address, as the agent sees it.
    pub peer: std::net::IpAddr,
    /// The port the agent listens on.
    pub local_port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropMode {
    /// Packets vanish; connections hang.
    Drop,
    /// TCP gets a reset, everything else an ICMP admin-prohibited.
    Reject,
}

/// How full `fill_disk` makes a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FillAmount {
    /// Used share as `df` counts it (used / (used + available)), in percent.
    Usage(f64),
    /// Bytes written into the fill file.
    Size(u64),
    /// Bytes left available after the fill.
    Leave(u64),
}

/// A signal by number; displayed by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SignalNumber(pub i32);

impl fmt::Display for SignalNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match nix::sys::signal::Signal::try_from(self.0) {
            Ok(signal) => f.write_str(signal.as_str()),
            Err(_) => write!(f, "signal {}", self.0),
        }
    }
}

/// One fault, fully resolved: one variant per kind, each with a type of its own. What the agent
/// does with it (check, plan, inject, the policy's check, its one-line summary) is in the kind's
/// module under `fault/`, which implements [`crate::fault::Kind`] for that type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultSpec {
    Kill(KillSpec),
    Pause(PauseSpec),
    Latency(LatencySpec),
    Loss(LossSpec),
    Drop(DropSpec),
    FillDisk(FillDiskSpec),
    Stress(StressSpec),
    Bandwidth(BandwidthSpec),
    Corrupt(CorruptSpec),
    Duplicate(DuplicateSpec),
    Dns(DnsSpec),
    Http(HttpSpec),
}

impl FaultSpec {
    /// The network scope of a network fault; `None` for the other kinds.
    pub fn scope(&self) -> Option<&NetScope> {
        match self {
            FaultSpec::Latency(s) => Some(&s.scope),
            FaultSpec::Loss(s) => Some(&s.scope),
            FaultSpec::Drop(s) => Some(&s.scope),
            FaultSpec::Bandwidth(s) => Some(&s.scope),
            FaultSpec::Corrupt(s) => Some(&s.scope),
            FaultSpec::Duplicate(s) => Some(&s.scope),
            FaultSpec::Kill(_)
            | FaultSpec::Pause(_)
            | FaultSpec::FillDisk(_)
            | FaultSpec::Stress(_)
            | FaultSpec::Dns(_)
            | FaultSpec::Http(_) => None,
        }
    }

    /// [`FaultSpec::scope`], to change.
    pub fn scope_mut(&mut self) -> Option<&mut NetScope> {
        match self {
            FaultSpec::Latency(s) => Some(&mut s.scope),
            FaultSpec::Loss(s) => Some(&mut s.scope),
            FaultSpec::Drop(s) => Some(&mut s.scope),
            FaultSpec::Bandwidth(s) => Some(&mut s.scope),
            FaultSpec::Corrupt(s) => Some(&mut s.scope),
            FaultSpec::Duplicate(s) => Some(&mut s.scope),
            FaultSpec::Kill(_)
            | FaultSpec::Pause(_)
            | FaultSpec::FillDisk(_)
            | FaultSpec::Stress(_)
            | FaultSpec::Dns(_)
            | FaultSpec::Http(_) => None,
        }
    }

    /// The processes in whose namespaces the fault is made (`inside:`), if any: a network
    /// fault's, or the processes whose view of a `fill_disk`'s path is meant.
    pub fn inside(&self) -> Option<&ProcessSelector> {
        match self {
            FaultSpec::FillDisk(fill) => fill.inside.as_ref(),
            FaultSpec::Stress(stress) => stress.inside.as_ref(),
            _ => self.netns_inside(),
        }
    }

    /// The processes a `kill` or `pause` acts on; `None` for the other kinds.
    pub fn processes(&self) -> Option<&ProcessSelector> {
        match self {
            FaultSpec::Kill(kill) => Some(&kill.process),
            FaultSpec::Pause(pause) => Some(&pause.process),
            FaultSpec::Latency(_)
            | FaultSpec::Loss(_)
            | FaultSpec::Drop(_)
            | FaultSpec::FillDisk(_)
            | FaultSpec::Stress(_)
            | FaultSpec::Bandwidth(_)
            | FaultSpec::Corrupt(_)
            | FaultSpec::Duplicate(_)
            | FaultSpec::Dns(_)
            | FaultSpec::Http(_) => None,
        }
    }

    /// The processes whose network namespaces a network fault is made in, if any.
    pub fn netns_inside(&self) -> Option<&ProcessSelector> {
        match self {
            FaultSpec::Http(http) => http.inside.as_ref(),
            FaultSpec::Dns(dns) => dns.inside.as_ref(),
            _ => self.scope().and_then(|scope| scope.inside.as_ref()),
        }
    }
}

/// `kill`: a signal to the picked processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillSpec {
    pub process: ProcessSelector,
    pub signal: SignalNumber,
    pub pick: Pick,
}

/// `pause`: SIGSTOP to the picked processes, SIGCONT at the revert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PauseSpec {
    pub process: ProcessSelector,
    pub pick: Pick,
}

/// `latency`: received packets delayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySpec {
    #[serde(with = "duration_ms")]
    pub delay: Duration,
    #[serde(with = "duration_ms")]
    pub jitter: Duration,
    pub scope: NetScope,
}

/// `loss`: a share of the packets dropped, one way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossSpec {
    /// Percent of matching packets dropped.
    pub share: f64,
    pub scope: NetScope,
}

/// `drop`: every packet dropped (or rejected), both ways.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropSpec {
    pub mode: DropMode,
    pub scope: NetScope,
}

/// `fill_disk`: the filesystem holding `path` filled by one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FillDiskSpec {
    /// The directory, as the host sees it, or as the `inside` processes see it.
    pub path: PathBuf,
    pub amount: FillAmount,
    /// Fill `path` as these processes see it (a container's volume): the agent finds the host's
    /// path of it, which it fills and journals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inside: Option<ProcessSelector>,
}

/// `stress`: CPU burnt, or memory held resident, by children of the agent; with `inside`, in a
/// cgroup of their own below each cgroup of these processes (a container's), so its limits apply.
/// On the wire the work's key (`cpu` or `memory`) sits beside `inside`, which is left out when
/// absent: a stress without it serializes as it always has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StressSpec {
    #[serde(flatten)]
    pub work: StressWork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inside: Option<ProcessSelector>,
}

impl StressSpec {
    /// A stress of the agent's host (no `inside`).
    pub fn on_host(work: StressWork) -> StressSpec {
        StressSpec { work, inside: None }
    }
}

/// What a `stress` does: burn CPU or hold memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StressWork {
    Cpu(CpuStress),
    Memory(MemoryStress),
}

/// How many CPU workers, each busy `load` percent of every 10 ms period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuStress {
    pub workers: Workers,
    /// Percent of each period a worker is busy (0 < load <= 100).
    pub load: f64,
}

/// `workers: N`, or `cores: P%` of the CPUs online on the agent's host (rounded up, at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Workers {
    Count(u32),
    Cores(f64),
}

/// How much memory is held resident: bytes, or a percent of the host's MemTotal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryStress {
    Size(u64),
    Share(f64),
}

/// `bandwidth`: what this host sends to matching peers limited to `rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandwidthSpec {
    /// Bits per second.
    pub rate: u64,
    /// Bytes sent at full speed before the rate applies; `None`: a tenth of a second's worth
    /// (at least 10 full-size packets).
    pub burst: Option<u64>,
    /// Only `to` and `interface` (and `spare_ssh`) apply: what this host sends.
    pub scope: NetScope,
}

/// `corrupt`: a share of the packets sent to matching peers corrupted (one bit flipped at random),
/// by netem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorruptSpec {
    /// Percent of matching packets corrupted.
    pub share: f64,
    pub scope: NetScope,
}

/// `duplicate`: a share of the packets sent to matching peers sent twice, by netem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuplicateSpec {
    /// Percent of matching packets duplicated.
    pub share: f64,
    pub scope: NetScope,
}

/// `dns`: the DNS queries this host sends for matching names answered by the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsSpec {
    /// Lowercase name globs without a trailing dot (`db.internal`, `*.svc.local`).
    pub names: Vec<String>,
    /// The answer they get; `None`: their real answer (late by `delay`).
    #[serde(default)]
    pub answer: Option<DnsAnswer>,
    /// How late the answer comes; `None`: at once.
    #[serde(default, with = "opt_duration_ms")]
    pub delay: Option<Duration>,
    /// Made inside the network namespaces of these processes (a container's queries, to the
    /// resolvers of its own `/etc/resolv.conf`), once per namespace ([`crate::fault::inside`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inside: Option<ProcessSelector>,
}

/// The answer a `dns` fault gives matching queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsAnswer {
    Nxdomain,
    Servfail,
    Refused,
    /// No answer at all: the client times out.
    Timeout,
    /// This address (`A` for IPv4, `AAAA` for IPv6; the other type gets an empty answer).
    Address(std::net::IpAddr),
}

/// `http`: requests arriving for a server's `port` pass through the agent, which aborts or delays
/// a share of those matching `paths` and `methods`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpSpec {
    /// The TCP port a plain HTTP/1.1 server listens on, on this host.
    pub port: u16,
    pub action: HttpAction,
    /// Percent of matching requests hit (drawn per request from the fault's seed).
    pub share: f64,
    /// Path prefixes (`/api`); empty: every path.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Methods, upper case; empty: every method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Made inside the network namespaces of these processes (a container's server), once per
    /// namespace ([`crate::fault::inside`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inside: Option<ProcessSelector>,
}

/// What an `http` fault does to a request it hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpAction {
    /// Answered at once with this status, never reaching the server.
    Abort { status: u16 },
    /// Passed to the server this much later.
    Delay {
        #[serde(with = "duration_ms")]
        delay: Duration,
    },
}

impl FaultSpec {
    /// The fault kind as the scenario file spells it.
    pub fn kind(&self) -> FaultKind {
        match self {
            FaultSpec::Kill(_) => FaultKind::Kill,
            FaultSpec::Pause(_) => FaultKind::Pause,
            FaultSpec::Latency(_) => FaultKind::Latency,
            FaultSpec::Loss(_) => FaultKind::Loss,
            FaultSpec::Drop(_) => FaultKind::Drop,
            FaultSpec::FillDisk(_) => FaultKind::FillDisk,
            FaultSpec::Stress(_) => FaultKind::Stress,
            FaultSpec::Bandwidth(_) => FaultKind::Bandwidth,
            FaultSpec::Corrupt(_) => FaultKind::Corrupt,
            FaultSpec::Duplicate(_) => FaultKind::Duplicate,
            FaultSpec::Dns(_) => FaultKind::Dns,
            FaultSpec::Http(_) => FaultKind::Http,
        }
    }
}

/// Defines [`FaultKind`] and [`FaultKind::ALL`] from one list, so that no kind can be left out
/// of `ALL` (the capabilities an agent reports, [`FaultKind::from_name`]) and each kind's name is
/// written once: it is its serde name in scenario files, policies, journals and reports.
macro_rules! fault_kinds {
    ($($(#[doc = $doc:literal])* $kind:ident = $name:literal,)+) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum FaultKind {
            $($(#[doc = $doc])* #[serde(rename = $name)] $kind,)+
        }

        impl FaultKind {
            /// Every kind, in the order capabilities and help texts list them.
            pub const ALL: &'static [FaultKind] = &[$(FaultKind::$kind),+];

            /// The kind's name, as scenario files, policies and reports spell it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(FaultKind::$kind => $name,)+
                }
            }
        }
    };
}

fault_kinds! {
    Kill = "kill",
    Pause = "pause",
    Latency = "latency",
    Loss = "loss",
    Drop = "drop",
    FillDisk = "fill_disk",
    Stress = "stress",
    Bandwidth = "bandwidth",
    Corrupt = "corrupt",
    Duplicate = "duplicate",
    Dns = "dns",
    Http = "http",
}

impl FaultKind {
    /// The kind named `name` (`fill_disk`), if there is one.
    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.iter().copied().find(|k| k.as_str() == name)
    }

    /// Whether a fault of this kind is held until it is reverted. A `kill` is not: the signal is
    /// the whole fault, so there is nothing to hold and nothing to revert; a step (or a monkey)
    /// of only such faults needs no `duration`, its after-check starts as soon as they are
    /// injected, and reports show them `instant`.
    pub const fn holds(self) -> bool {
        match self {
            FaultKind::Kill => false,
            FaultKind::Pause
            | FaultKind::Latency
            | FaultKind::Loss
            | FaultKind::Drop
            | FaultKind::FillDisk
            | FaultKind::Stress
            | FaultKind::Bandwidth
            | FaultKind::Corrupt
            | FaultKind::Duplicate
            | FaultKind::Dns
            | FaultKind::Http => true,
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---- probes: what a sample checks, run by the controller or by an agent on its host ----

/// An argv list, or a string for `/bin/sh -c`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Argv(Vec<String>),
    Shell(String),
}

impl Command {
    /// The program and arguments to exec.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Argv(argv) => argv.clone(),
            Command::Shell(script) => vec!["/bin/sh".into(), "-c".into(), script.clone()],
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Argv(argv) => f.write_str(&argv.join(" ")),
            Command::Shell(script) => f.write_str(script),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    Http(HttpProbe),
    Tcp(TcpProbe),
    Command(CommandProbe),
    Process(ProcessProbe),
    Prometheus(PrometheusProbe),
    Load(LoadProbe),
}

impl ProbeKind {
    pub fn kind_name(&self) -> &'static str {
        match self {
            ProbeKind::Http(_) => "http",
            ProbeKind::Tcp(_) => "tcp",
            ProbeKind::Command(_) => "command",
            ProbeKind::Process(_) => "process",
            ProbeKind::Prometheus(_) => "prometheus",
            ProbeKind::Load(_) => "load",
        }
    }

    /// The sample timeout; `process` probes read /proc and have none.
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            ProbeKind::Http(p) => Some(p.timeout),
            ProbeKind::Tcp(p) => Some(p.timeout),
            ProbeKind::Command(p) => Some(p.timeout),
            ProbeKind::Process(_) => None,
            ProbeKind::Prometheus(p) => Some(p.timeout),
            ProbeKind::Load(p) => Some(p.timeout),
        }
    }

    /// The longest one sample may take, before the guard's slack: the timeout, or for `load`
    /// its span plus one timeout (the last request's answer).
    pub fn max_sample_time(&self) -> Option<Duration> {
        match self {
            ProbeKind::Load(p) => Some(p.span + p.timeout),
            other => other.timeout(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpProbe {
    pub url: String,
    pub method: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    pub expect: HttpExpect,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HttpExpect {
    /// Empty: any 2xx.
    pub status: Vec<StatusMatch>,
    pub body_contains: Option<String>,
    pub body_matches: Option<Pattern>,
    #[serde(with = "opt_duration_ms")]
    pub max_latency: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusMatch {
    Code(u16),
    /// `2xx` is `Class(2)`.
    Class(u16),
}

impl StatusMatch {
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusMatch::Code(code) => code == status,
            StatusMatch::Class(class) => status / 100 == class,
        }
    }
}

/// Open-loop load: requests sent at a fixed `rate` for `span` (the probe's `every`), each on
/// its own connection, whether or not earlier ones have been answered. One sample is that whole
/// burst; it passes when at least `success` percent of its requests met `expect`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadProbe {
    pub url: String,
    pub method: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    /// Requests per second.
    pub rate: f64,
    /// How long requests are sent for: the probe's `every`, so samples cover time end to end.
    #[serde(with = "duration_ms")]
    pub span: Duration,
    /// Per request.
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// `status`, `body_contains`, `body_matches` and `max_latency`, judged per request.
    pub expect: HttpExpect,
    /// Percent of a sample's requests that must succeed for it to pass.
    pub success: f64,
}

impl LoadProbe {
    /// How many requests one sample sends: rate × span, at least 1.
    pub fn requests(&self) -> usize {
        ((self.rate * self.span.as_secs_f64()).round() as usize).max(1)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TcpProbe {
    /// `host:port`, resolved at each sample.
    pub address: String,
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandProbe {
    pub run: Command,
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// The scenario's folder, where the command runs.
    pub cwd: PathBuf,
    pub expect: CommandExpect,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandExpect {
    pub exit: i32,
    pub stdout_contains: Option<String>,
    pub stdout_matches: Option<Pattern>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessProbe {
    pub selector: ProcessSelector,
    pub min: usize,
    pub max: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrometheusProbe {
    /// The server's base URL, e.g. `http://127.0.0.1:9090`.
    pub url: String,
    pub query: String,
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    pub below: Option<f64>,
    pub above: Option<f64>,
}

/// A compiled regex that crosses the wire as its source text.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, regex::Error> {
        regex::Regex::new(source).map(Pattern)
    }

    /// What is wrong with a pattern that does not compile: the last line of `err` (the lines
    /// before it repeat the pattern with a caret), without its `error: `.
    pub fn error_detail(err: &regex::Error) -> String {
        let text = err.to_string();
        let last = text.lines().rev().find(|l| !l.trim().is_empty());
        last.unwrap_or("")
            .trim()
            .trim_start_matches("error: ")
            .to_string()
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Pattern, D::Error> {
        let source = String::deserialize(d)?;
        Pattern::new(&source).map_err(serde::de::Error::custom)
    }
}

/// Optional durations on the wire are whole milliseconds or null.
pub mod opt_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// Durations on the wire are whole milliseconds.
pub mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_picks_round_up_and_take_at_least_one() {
        assert_eq!(Pick::Percent(50.0).count_of(3), 2);
        assert_eq!(Pick::Percent(1.0).count_of(3), 1);
        assert_eq!(Pick::Percent(100.0).count_of(3), 3);
        assert_eq!(Pick::Percent(50.0).count_of(0), 0);
        assert_eq!(Pick::Count(5).count_of(2), 2);
        assert_eq!(Pick::All.count_of(4), 4);
    }

    /// The wire and journal format of every kind, which the refactoring of kinds into types of
    /// their own must not change.
    #[test]
    fn fault_specs_keep_their_wire_format() {
        let scope = NetScope {
            interface: Some("eth0".into()),
            spare_ssh: true,
            ..NetScope::default()
        };
        let specs = [
            FaultSpec::Kill(KillSpec {
                process: ProcessSelector::Name("demo".into()),
                signal: SignalNumber(9),
                pick: Pick::Count(1),
            }),
            FaultSpec::Pause(PauseSpec {
                process: ProcessSelector::Pid(7),
                pick: Pick::All,
            }),
            FaultSpec::Latency(LatencySpec {
                delay: Duration::from_millis(200),
                jitter: Duration::from_millis(10),
                scope: scope.clone(),
            }),
            FaultSpec::Loss(LossSpec {
                share: 30.0,
                scope: scope.clone(),
            }),
            FaultSpec::Drop(DropSpec {
                mode: DropMode::Reject,
                scope,
            }),
            FaultSpec::FillDisk(FillDiskSpec {
                path: "/mnt/x".into(),
                amount: FillAmount::Usage(90.0),
                inside: None,
            }),
            FaultSpec::Stress(StressSpec::on_host(StressWork::Cpu(CpuStress {
                workers: Workers::Cores(50.0),
                load: 80.0,
            }))),
            FaultSpec::Stress(StressSpec::on_host(StressWork::Memory(MemoryStress::Size(
                512,
            )))),
            FaultSpec::Stress(StressSpec {
                work: StressWork::Memory(MemoryStress::Share(20.0)),
                inside: Some(ProcessSelector::Container("checkout".into())),
            }),
            FaultSpec::Bandwidth(BandwidthSpec {
                rate: 1_000_000,
                burst: None,
                scope: NetScope {
                    interface: Some("eth0".into()),
                    spare_ssh: true,
                    ..NetScope::default()
                },
            }),
            FaultSpec::Corrupt(CorruptSpec {
                share: 5.0,
                scope: NetScope {
                    interface: Some("eth0".into()),
                    spare_ssh: true,
                    ..NetScope::default()
                },
            }),
            FaultSpec::Duplicate(DuplicateSpec {
                share: 2.5,
                scope: NetScope {
                    interface: Some("eth0".into()),
                    spare_ssh: true,
                    ..NetScope::default()
                },
            }),
            FaultSpec::Dns(DnsSpec {
                names: vec!["*.svc.local".into()],
                answer: Some(DnsAnswer::Address("10.9.9.9".parse().unwrap())),
                delay: Some(Duration::from_millis(300)),
                inside: None,
            }),
            FaultSpec::Http(HttpSpec {
                port: 8080,
                action: HttpAction::Abort { status: 503 },
                share: 30.0,
                paths: vec!["/api".into()],
                methods: vec!["GET".into()],
                inside: None,
            }),
            FaultSpec::Http(HttpSpec {
                port: 80,
                action: HttpAction::Delay {
                    delay: Duration::from_millis(200),
                },
                share: 100.0,
                paths: Vec::new(),
                methods: Vec::new(),
                inside: None,
            }),
        ];
        let scope = r#"{"to":null,"from":null,"interface":"eth0","spare_ssh":true}"#;
        let expected = [
            r#"{"kill":{"process":{"name":"demo"},"signal":9,"pick":{"count":1}}}"#.to_string(),
            r#"{"pause":{"process":{"pid":7},"pick":"all"}}"#.to_string(),
            format!(r#"{{"latency":{{"delay":200,"jitter":10,"scope":{scope}}}}}"#),
            format!(r#"{{"loss":{{"share":30.0,"scope":{scope}}}}}"#),
            format!(r#"{{"drop":{{"mode":"reject","scope":{scope}}}}}"#),
            r#"{"fill_disk":{"path":"/mnt/x","amount":{"usage":90.0}}}"#.to_string(),
            r#"{"stress":{"cpu":{"workers":{"cores":50.0},"load":80.0}}}"#.to_string(),
            r#"{"stress":{"memory":{"size":512}}}"#.to_string(),
            r#"{"stress":{"memory":{"share":20.0},"inside":{"container":"checkout"}}}"#.to_string(),
            format!(r#"{{"bandwidth":{{"rate":1000000,"burst":null,"scope":{scope}}}}}"#),
            format!(r#"{{"corrupt":{{"share":5.0,"scope":{scope}}}}}"#),
            format!(r#"{{"duplicate":{{"share":2.5,"scope":{scope}}}}}"#),
            r#"{"dns":{"names":["*.svc.local"],"answer":{"address":"10.9.9.9"},"delay":300}}"#
                .to_string(),
            r#"{"http":{"port":8080,"action":{"abort":{"status":503}},"share":30.0,"paths":["/api"],"methods":["GET"]}}"#.to_string(),
            r#"{"http":{"port":80,"action":{"delay":{"delay":200}},"share":100.0,"paths":[],"methods":[]}}"#.to_string(),
        ];
        for (spec, expected) in specs.iter().zip(expected) {
            assert_eq!(serde_json::to_string(spec).unwrap(), expected);
            let back: FaultSpec = serde_json::from_str(&expected).unwrap();
            assert_eq!(&back, spec);
        }
    }

    #[test]
    fn kinds_are_named_as_serde_names_them() {
        for &kind in FaultKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str());
            assert_eq!(FaultKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(FaultKind::from_name("stres"), None);
    }

    #[test]
    fn signals_show_their_names() {
        assert_eq!(SignalNumber(9).to_string(), "SIGKILL");
        assert_eq!(SignalNumber(15).to_string(), "SIGTERM");
    }

    #[test]
    fn network_faults_show_their_peers() {
        let drop = FaultSpec::Drop(DropSpec {
            mode: DropMode::Reject,
            scope: NetScope {
                to: Some(PeerSelector {
                    hosts: vec!["10.0.0.20".into()],
                    ports: vec![6379],
                    protocol: Some(Protocol::Tcp),
                }),
                from: Some(PeerSelector {
                    hosts: Vec::new(),
                    ports: vec![80, 443],
                    protocol: None,
                }),
                interface: Some("eth0".into()),
                spare_ssh: true,
                inside: None,
            },
        });
        assert_eq!(
            drop.to_string(),
            "drop (reject) to 10.0.0.20 port 6379 (tcp), from any host ports 80, 443, on eth0"
        );
        let loss = FaultSpec::Loss(LossSpec {
            share: 30.0,
            scope: NetScope {
                spare_ssh: false,
                ..NetScope::default()
            },
        });
        assert_eq!(loss.to_string(), "loss 30% all traffic, SSH not spared");
    }
}
