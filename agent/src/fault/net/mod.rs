//! Network faults: `drop` and `loss` as one nftables table per fault ([`filter`]), `latency` as
//! tc netem where the kernel has it, else an NFQUEUE holder at ingress ([`latency`], [`nfqueue`]),
//! `bandwidth` as an HTB shaper fed by an nftables table per fault ([`bandwidth`]), `corrupt` and
//! `duplicate` as netem only ([`impair`]; the netem mechanism, shared with `latency`, is [`netem`]).
//! `dns` redirects the host's DNS queries to a responder in this process ([`dns`],
//! [`dns_responder`]). The kinds that redirect traffic to this process fail open through [`gate`].
//! `http` redirects a server's port to an HTTP proxy in the agent ([`http`], [`proxy`]).
//! [`detect`] says, once per process, which of these mechanisms this host offers.
//!
//! Every tool is run as a child process from the calling thread, so a caller that entered another
//! network namespace (a test, with `setns`) acts on that namespace.
//!
//! **Invariant:** network faults never touch SSH (TCP port 22, either direction, unless
//! `spare_ssh: false`) nor the controller's connection ([`Exempt`]): those are accepted before
//! any rule of the fault.
//!
//! # What the peer selectors match
//! - `to: {hosts, ports, protocol}`: connections this host opens to those peers: packets sent to
//!   `hosts` on destination `ports`, and their replies (from `hosts`, source `ports`).
//! - `from: {hosts, ports, protocol}`: connections those peers open to this host: packets received
//!   from `hosts` on our local `ports` (destination), and our replies (source `ports`). `ports` are
//!   ours because a client's source port is ephemeral and never worth naming.
//! - Neither: every packet through the interface.
//! - `protocol` absent: TCP and UDP when ports are given, every IP protocol (ICMP too) when not.
//!
//! Which packets of those each kind acts on: `drop` both directions (established connections are
//! cut, not only new ones); `loss` only one way, like netem (`to`/neither: what we send, `from`:
//! what we receive), so a round trip loses about `share`; `latency` only what we receive (delay at
//! ingress keeps TCP throughput), so a round trip takes `delay` longer; `bandwidth` only what we
//! send, and only with `to` (or neither); `corrupt` and `duplicate` only what we send (to `to`
//! peers, replies to `from` peers), like netem.

pub mod bandwidth;
pub mod detect;
pub mod dns;
pub mod dns_responder;
pub mod filter;
pub mod gate;
pub mod http;
pub mod impair;
pub mod latency;
pub mod netem;
pub mod nfqueue;
pub mod proxy;
pub mod registry;

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::FaultError;
use crate::spec::{Exempt, FaultKind, NetScope, PeerSelector, Protocol};

/// What an injection needs beyond the spec and its undo data.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// How long the fault is held; the kernel-side expiry of `drop`/`loss` comes from it.
    pub hold: Option<Duration>,
    /// Connections never touched (the controller's).
    pub exempt: Vec<Exempt>,
}

/// How long after `hold` the kernel drops a `drop`/`loss` rule on its own: the agent reverts at
/// `hold`, and injecting takes a moment after the rule is in place.
pub const KERNEL_MARGIN: Duration = Duration::from_secs(1);

/// The kernel-side expiry when the fault has no `hold` (its caller reverts it): an hour, so that a
/// forgotten fault does not outlive a game day by much.
pub const KERNEL_DEFAULT: Duration = Duration::from_secs(3600);

/// The kernel-side lifetime of a fault held for `hold`, in whole seconds.
pub fn kernel_timeout(hold: Option<Duration>) -> Duration {
    let total = hold.map_or(KERNEL_DEFAULT, |h| h.saturating_add(KERNEL_MARGIN));
    Duration::from_secs(total.as_millis().div_ceil(1000) as u64)
}

pub(crate) fn net_error(kind: FaultKind, reason: impl Into<String>) -> FaultError {
    FaultError::Network {
        kind,
        reason: reason.into(),
    }
}

/// Runs `program args` (with `input` on stdin); its stdout on success, else a one-line reason.
pub(crate) fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C");
    let mut child = cmd.spawn().map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => format!("`{program}` is not installed"),
        _ => format!("cannot run `{program}`: {err}"),
    })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|err| format!("`{program}`: {err}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let reason = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" / ");
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            if reason.is_empty() {
                "no message"
            } else {
                &reason
            }
        ))
    }
}

/// The interface a fault applies to: the one it names (which must exist), else the interface of
/// the default route, else the only non-loopback interface that is up.
pub fn resolve_interface(kind: FaultKind, given: Option<&str>) -> Result<String, FaultError> {
    if let Some(name) = given {
        if !plain_ifname(name) {
            return Err(net_error(
                kind,
                format!(
                    "`{name}` is not an interface name (1 to 15 letters, digits, `-`, `_`, `.`)"
                ),
            ));
        }
        return match run("ip", &["-o", "link", "show", "dev", name], None) {
            Ok(_) => Ok(name.to_string()),
            Err(reason) if reason.contains("not installed") => Err(net_error(
                kind,
                format!("{reason}; install iproute2 (`apt-get install iproute2`)"),
            )),
            Err(_) => Err(net_error(
                kind,
                format!("interface `{name}` does not exist on this host; list them with `ip link`"),
            )),
        };
    }
    for family in ["-4", "-6"] {
        if let Ok(out) = run("ip", &[family, "-o", "route", "show", "default"], None)
            && let Some(dev) = default_route_dev(&out)
        {
            return Ok(dev);
        }
    }
    let links = run("ip", &["-o", "link", "show", "up"], None).map_err(|r| net_error(kind, r))?;
    let up = up_non_loopback(&links);
    match &up[..] {
        [only] => Ok(only.clone()),
        [] => Err(net_error(
            kind,
            "no default route and no interface up but loopback; say which with `interface:`",
        )),
        many => Err(net_error(
            kind,
            format!(
                "no default route and several interfaces up ({}); say which with `interface:`",
                many.join(", ")
            ),
        )),
    }
}

/// `default via 10.0.0.1 dev eth0 proto dhcp ...` → `eth0`.
fn default_route_dev(out: &str) -> Option<String> {
    out.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        words.find(|w| *w == "dev")?;
        words.next().map(str::to_string)
    })
}

/// `2: eth0@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> ...` lines → the names, loopback left out.
fn up_non_loopback(out: &str) -> Vec<String> {
    out.lines()
        .filter(|line| !line.contains("LOOPBACK"))
        .filter_map(|line| {
            let name = line.split(':').nth(1)?.trim();
            Some(name.split('@').next()?.to_string())
        })
        .filter(|name| !name.is_empty())
        .collect()
}

fn plain_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The addresses (with prefix) of `interface`, for `ss` filters.
pub(crate) fn interface_addresses(interface: &str) -> Vec<String> {
    let Ok(out) = run("ip", &["-o", "addr", "show", "dev", interface], None) else {
        return Vec::new();
    };
    out.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet" || *w == "inet6")?;
            let addr = words.next()?.split('/').next()?;
            let ip: IpAddr = addr.parse().ok()?;
            (!ip.is_loopback()
                && !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
            .then(|| ip.to_string())
        })
        .collect()
}

/// A fault's short name on the host (`chaos_<12 hex>` tables, `CHAOS-<12 hex>` chains): a hash of
/// its id, so it is short, plain, and the same from the journal.
pub fn short_id(fault_id: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in fault_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", hash & 0xffff_ffff_ffff)
}

/// A peer selector's hosts, checked and split by family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hosts {
    pub v4: Vec<String>,
    pub v6: Vec<String>,
}

impl Hosts {
    pub fn parse(kind: FaultKind, hosts: &[String]) -> Result<Hosts, FaultError> {
        let mut parsed = Hosts::default();
        for host in hosts {
            let (addr, prefix) = match host.split_once('/') {
                Some((addr, prefix)) => (addr, Some(prefix)),
                None => (host.as_str(), None),
            };
            let ip: IpAddr = addr.trim().parse().map_err(|_| {
                net_error(
                    kind,
                    format!("`{host}` is not an IP address or CIDR; peers are given by address"),
                )
            })?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let text = match prefix {
                Some(p) => match p.trim().parse::<u8>() {
                    Ok(p) if p <= max => format!("{ip}/{p}"),
                    _ => {
                        return Err(net_error(
                            kind,
                            format!("`{host}` has a bad prefix length (0 to {max})"),
                        ));
                    }
                },
                None => ip.to_string(),
            };
            if ip.is_ipv4() {
                parsed.v4.push(text);
            } else {
                parsed.v6.push(text);
            }
        }
        Ok(parsed)
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// The protocols a selector names: `None` for any IP protocol.
pub(crate) fn protocols(sel: &PeerSelector) -> Option<Vec<&'static str>> {
    match sel.protocol {
        Some(Protocol::Tcp) => Some(vec!["tcp"]),
        Some(Protocol::Udp) => Some(vec!["udp"]),
        None if !sel.ports.is_empty() => Some(vec!["tcp", "udp"]),
        None => None,
    }
}

/// Checks everything a network fault's scope says that can be checked without touching the host
/// but for reading it: the interface and the peers.
pub fn check_scope(kind: FaultKind, scope: &NetScope) -> Result<String, FaultError> {
    for sel in [&scope.to, &scope.from].into_iter().flatten() {
        Hosts::parse(kind, &sel.hosts)?;
        if sel.ports.contains(&0) {
            return Err(net_error(
                kind,
                "port 0 cannot be matched; give ports 1 to 65535",
            ));
        }
    }
    resolve_interface(kind, scope.interface.as_deref())
}

/// `to 10.0.0.20 tcp/6379` style summary of a scope, for `affected`.
pub fn describe(interface: &str, scope: &NetScope) -> String {
    let sel = |word: &str, s: &PeerSelector| {
        let hosts = if s.hosts.is_empty() {
            "any host".to_string()
        } else {
            s.hosts.join(", ")
        };
        let proto = match s.protocol {
            Some(Protocol::Tcp) => " tcp",
            Some(Protocol::Udp) => " udp",
            None => "",
        };
        let ports = if s.ports.is_empty() {
            String::new()
        } else {
            format!(
                " port {}",
                s.ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        format!("{word} {hosts}{proto}{ports}")
    };
    let mut parts = Vec::new();
    if let Some(to) = &scope.to {
        parts.push(sel("to", to));
    }
    if let Some(from) = &scope.from {
        parts.push(sel("from", from));
    }
    if parts.is_empty() {
        parts.push("all traffic".to_string());
    }
    format!("{interface}: {}", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_links_parse() {
        assert_eq!(
            default_route_dev("default via 10.0.0.1 dev eth0 proto dhcp metric 100\n").as_deref(),
            Some("eth0")
        );
        assert_eq!(default_route_dev(""), None);
        let links = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536\n2: eth0@if9: <BROADCAST,UP,LOWER_UP> mtu 1500\n";
        assert_eq!(up_non_loopback(links), ["eth0"]);
    }

    #[test]
    fn hosts_are_checked_and_split() {
        let h = Hosts::parse(
            FaultKind::Drop,
            &["10.0.0.1".into(), "10.1.0.0/16".into(), "fd00::/8".into()],
        )
        .unwrap();
        assert_eq!(h.v4, ["10.0.0.1", "10.1.0.0/16"]);
        assert_eq!(h.v6, ["fd00::/8"]);
        for bad in ["db.local", "10.0.0.0/33", "1.2.3.4; drop"] {
            assert!(
                Hosts::parse(FaultKind::Drop, &[bad.into()]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn short_ids_are_plain_and_stable() {
        let a = short_id("run-1.step-1.fault-0");
        assert_eq!(a.len(), 12);
        assert_eq!(a, short_id("run-1.step-1.fault-0"));
        assert_ne!(a, short_id("run-1.step-1.fault-1"));
    }

    #[test]
    fn kernel_timeouts_follow_the_hold() {
        assert_eq!(
            kernel_timeout(Some(Duration::from_millis(1500))).as_secs(),
            3
        );
        assert_eq!(kernel_timeout(None), KERNEL_DEFAULT);
    }
}
