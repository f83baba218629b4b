//! The netem mechanism, shared by `latency` (where the kernel has netem), `corrupt` and
//! `duplicate`: a `prio` root qdisc of ours on the interface (`c4a0:`) whose fourth band holds a
//! netem qdisc (`c4a1:`) with the fault's impairment, and u32 filters sending the matching packets
//! there, the exemptions (SSH, the controller's connection) to band 1 first. Packets no filter
//! matches take bands 1 to 3 by their priority, as under the default qdisc. Reverted by deleting
//! our root qdisc, which takes the band and the filters with it.
//!
//! netem acts on what this host sends (egress): packets to `to` peers (their port is the
//! destination) and replies to `from` peers (our port is the source).
//!
//! **Invariant:** netem has no kernel-side expiry. If every process of ours dies, the qdisc stays
//! until an agent reverts it from its journal: a remote agent when it starts again (and at the
//! fault's end time or lease while it lives), the built-in `local` one at the next chaosctl
//! command.
//!
//! Only one netem fault at a time per interface: an interface whose root qdisc is not the default
//! one is left alone and the fault refused.

use super::{Context, Hosts, describe, net_error, protocols, run};
use crate::error::FaultError;
use crate::fault::{Injected, Undone};
use crate::spec::{Exempt, FaultKind, NetScope, PeerSelector};

/// The handles of our tc qdiscs: the `prio` root and its netem child.
pub const PRIO_HANDLE: &str = "c4a0:";
pub const NETEM_HANDLE: &str = "c4a1:";

/// The tc filters (after `filter add dev IFACE`) that send matching packets to the netem band,
/// the exemptions first.
pub fn filters(
    kind: FaultKind,
    scope: &NetScope,
    exempt: &[Exempt],
) -> Result<Vec<String>, FaultError> {
    let prio = PRIO_HANDLE;
    let mut filters = Vec::new();
    if scope.spare_ssh {
        for (proto, dir) in [
            ("ip", "dport"),
            ("ip", "sport"),
            ("ipv6", "dport"),
            ("ipv6", "sport"),
        ] {
            let m = if proto == "ip" { "ip" } else { "ip6" };
            filters.push(format!(
                "parent {prio} protocol {proto} prio 1 u32 match {m} protocol 6 0xff match {m} {dir} 22 0xffff flowid {prio}1"
            ));
        }
    }
    for e in exempt {
        let (proto, m, bits) = if e.peer.is_ipv4() {
            ("ip", "ip", 32)
        } else {
            ("ipv6", "ip6", 128)
        };
        filters.push(format!(
            "parent {prio} protocol {proto} prio 1 u32 match {m} dst {}/{bits} match {m} sport {} 0xffff flowid {prio}1",
            e.peer, e.local_port
        ));
    }
    // Packets sent: to `to` peers (their port is the destination), replies to `from` peers (our
    // port is the source).
    let mut selectors: Vec<(&PeerSelector, &str)> = Vec::new();
    if let Some(to) = &scope.to {
        selectors.push((to, "dport"));
    }
    if let Some(from) = &scope.from {
        selectors.push((from, "sport"));
    }
    if selectors.is_empty() {
        filters.push(format!(
            "parent {prio} protocol all prio 2 u32 match u32 0 0 flowid {prio}4"
        ));
    }
    for (sel, dir) in selectors {
        let hosts = Hosts::parse(kind, &sel.hosts)?;
        let mut addrs: Vec<(bool, Option<String>)> = Vec::new();
        if hosts.is_empty() {
            addrs.push((false, None));
            addrs.push((true, None));
        }
        addrs.extend(hosts.v4.iter().map(|h| (false, Some(h.clone()))));
        addrs.extend(hosts.v6.iter().map(|h| (true, Some(h.clone()))));
        let protos: Vec<Option<u8>> = match protocols(sel) {
            None => vec![None],
            Some(p) => p
                .iter()
                .map(|p| Some(if *p == "tcp" { 6 } else { 17 }))
                .collect(),
        };
        let ports: Vec<Option<u16>> = if sel.ports.is_empty() {
            vec![None]
        } else {
            sel.ports.iter().copied().map(Some).collect()
        };
        for (v6, addr) in &addrs {
            let (proto, m) = if *v6 { ("ipv6", "ip6") } else { ("ip", "ip") };
            for p in &protos {
                for port in &ports {
                    let mut f = format!("parent {prio} protocol {proto} prio 2 u32");
                    if let Some(a) = addr {
                        f.push_str(&format!(" match {m} dst {a}"));
                    }
                    if let Some(p) = p {
                        f.push_str(&format!(" match {m} protocol {p} 0xff"));
                    }
                    if let Some(port) = port {
                        f.push_str(&format!(" match {m} {dir} {port} 0xffff"));
                    }
                    if addr.is_none() && p.is_none() && port.is_none() {
                        f.push_str(&format!(" match {m} protocol 0 0x00"));
                    }
                    f.push_str(&format!(" flowid {prio}4"));
                    filters.push(f);
                }
            }
        }
    }
    Ok(filters)
}

/// Every `tc` command an injection runs, in order: the `prio` root, the netem band with
/// `impairment` (`delay 200000us`, `corrupt 5%`), then the filters. Pure, so it is unit-tested.
pub fn commands(
    kind: FaultKind,
    scope: &NetScope,
    exempt: &[Exempt],
    interface: &str,
    impairment: &str,
) -> Result<Vec<String>, FaultError> {
    let mut commands = vec![
        format!(
            "qdisc add dev {interface} root handle {PRIO_HANDLE} prio bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1"
        ),
        format!(
            "qdisc add dev {interface} parent {PRIO_HANDLE}4 handle {NETEM_HANDLE} netem limit 100000 {impairment}"
        ),
    ];
    for f in filters(kind, scope, exempt)? {
        commands.push(format!("filter add dev {interface} {f}"));
    }
    Ok(commands)
}

/// Refuses an interface whose root qdisc is not the default one, then runs [`commands`] and
/// reads the qdiscs back. `effect` opens the detail (`200 ms ± 0 ms`, `5% of packets
/// corrupted`); `shows`, when given, is a word the netem qdisc must show for the injection to be
/// verified (`corrupt`). On error the caller reverts (which removes whatever half was installed).
pub fn inject(
    kind: FaultKind,
    scope: &NetScope,
    interface: &str,
    ctx: &Context,
    impairment: &str,
    effect: &str,
    shows: Option<&str>,
) -> Result<Injected, FaultError> {
    let shown =
        run("tc", &["qdisc", "show", "dev", interface], None).map_err(|r| net_error(kind, r))?;
    if let Some(root) = shown.lines().find(|l| l.contains(" root ")) {
        let handle = root.split_whitespace().nth(2).unwrap_or("");
        if handle != "0:" && handle != PRIO_HANDLE {
            return Err(net_error(
                kind,
                format!(
                    "`{interface}` already has a root qdisc of its own (`{}`); it is left alone, so this fault cannot use netem there",
                    root.trim()
                ),
            ));
        }
    }
    let commands = commands(kind, scope, &ctx.exempt, interface, impairment)?;
    for command in &commands {
        let argv: Vec<&str> = command.split_whitespace().collect();
        run("tc", &argv, None)
            .map_err(|r| net_error(kind, format!("failed to set up netem: {r}")))?;
    }
    let shown = run("tc", &["qdisc", "show", "dev", interface], None).unwrap_or_default();
    let netem_line = shown
        .lines()
        .find(|l| l.contains(&format!("qdisc netem {NETEM_HANDLE}")));
    let verified = shown.contains(&format!("qdisc prio {PRIO_HANDLE} root"))
        && netem_line.is_some_and(|l| shows.is_none_or(|word| l.contains(word)));
    let mut detail = format!(
        "{effect} at egress of {interface}: prio {PRIO_HANDLE} band 4 → netem, {} filters",
        commands.len() - 2
    );
    if !verified {
        detail.push_str(&format!(
            "; read back: `tc qdisc show` gives {}",
            shown.trim()
        ));
    }
    Ok(Injected {
        mechanism: "netem".to_string(),
        affected: vec![describe(interface, scope)],
        verified,
        detail,
        undo: None,
    })
}

/// Deletes our root qdisc (only if it is ours) and checks it is gone.
pub fn revert(kind: FaultKind, interface: &str) -> Result<Undone, FaultError> {
    let ours = |shown: &str| shown.contains(&format!("qdisc prio {PRIO_HANDLE} root"));
    let shown = match run("tc", &["qdisc", "show", "dev", interface], None) {
        Ok(shown) => shown,
        Err(_) if run("ip", &["link", "show", "dev", interface], None).is_err() => {
            return Ok(Undone {
                verified: true,
                detail: format!("interface {interface} is gone, and its qdiscs with it"),
            });
        }
        Err(reason) => return Err(net_error(kind, reason)),
    };
    if !ours(&shown) {
        return Ok(Undone {
            verified: true,
            detail: format!("no netem of ours on {interface}"),
        });
    }
    let deleted = run(
        "tc",
        &[
            "qdisc",
            "del",
            "dev",
            interface,
            "root",
            "handle",
            PRIO_HANDLE,
        ],
        None,
    );
    let after = run("tc", &["qdisc", "show", "dev", interface], None).unwrap_or_default();
    if ours(&after) {
        return Err(net_error(
            kind,
            format!(
                "netem is still on {interface}: {}; remove it with `tc qdisc del dev {interface} root`",
                deleted.err().unwrap_or_default()
            ),
        ));
    }
    Ok(Undone {
        verified: true,
        detail: format!("netem removed from {interface}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_send_matches_to_band_four_after_exemptions() {
        let scope = NetScope {
            to: Some(PeerSelector {
                hosts: vec!["10.0.0.20".into()],
                ports: vec![80],
                protocol: None,
            }),
            from: None,
            interface: None,
            spare_ssh: true,
        };
        let f = filters(FaultKind::Latency, &scope, &[]).unwrap();
        assert_eq!(f.len(), 6);
        assert!(f[0].contains("prio 1") && f[0].ends_with("flowid c4a0:1"));
        assert_eq!(
            f[4],
            "parent c4a0: protocol ip prio 2 u32 match ip dst 10.0.0.20 match ip protocol 6 0xff match ip dport 80 0xffff flowid c4a0:4"
        );
    }
}
