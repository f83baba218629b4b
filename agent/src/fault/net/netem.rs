//! The netem mechanism, shared by `latency` (where the kernel has netem), `corrupt` and
//! `duplicate`: a `prio` root qdisc of ours on the interface (handle `<major>:`, the major from the
//! fault's id: [`handle_of`]) whose fourth band holds a netem qdisc with the fault's impairment, and u32 filters sending the matching packets
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
//! one (the host's, another netem or `bandwidth` fault's) is left alone and the fault refused, and
//! the refused fault's revert leaves the other's qdisc alone, since its handle is not ours.

use super::{Context, Hosts, describe, net_error, protocols, run};
use crate::error::FaultError;
use crate::fault::{Injected, Undone};
use crate::spec::{Exempt, FaultKind, NetScope, PeerSelector};

/// The `prio` root's major handle in journals written before handles were per fault.
pub const LEGACY_HANDLE: u16 = 0xc4a0;

/// The major handle of a fault's `prio` root (`0xd000` to `0xdfff`, from its id); its netem child
/// is [`netem_handle`]. Distinct from `bandwidth`'s HTB handles (`0xc000` to `0xcfff`).
pub fn handle_of(fault_id: &str) -> u16 {
    let hash = u64::from_str_radix(&super::short_id(fault_id), 16).unwrap_or(0);
    0xd000 | (hash & 0x0fff) as u16
}

/// The netem child's major handle under the `prio` root `handle`.
pub fn netem_handle(handle: u16) -> u16 {
    if handle == LEGACY_HANDLE {
        LEGACY_HANDLE + 1
    } else {
        handle.wrapping_add(0x1000)
    }
}

/// The tc filters (after `filter add dev IFACE`) that send matching packets to the netem band,
/// the exemptions first.
pub fn filters(
    kind: FaultKind,
    scope: &NetScope,
    exempt: &[Exempt],
    handle: u16,
) -> Result<Vec<String>, FaultError> {
    let prio = format!("{handle:x}:");
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
    handle: u16,
    impairment: &str,
) -> Result<Vec<String>, FaultError> {
    let (prio, netem) = (handle, netem_handle(handle));
    let mut commands = vec![
        format!(
            "qdisc add dev {interface} root handle {prio:x}: prio bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1"
        ),
        format!(
            "qdisc add dev {interface} parent {prio:x}:4 handle {netem:x}: netem limit 100000 {impairment}"
        ),
    ];
    for f in filters(kind, scope, exempt, handle)? {
        commands.push(format!("filter add dev {interface} {f}"));
    }
    Ok(commands)
}

/// What a netem fault does, in netem's words and the report's.
#[derive(Debug, Clone, Copy)]
pub struct Impairment<'a> {
    /// netem's words: `delay 200000us`, `corrupt 5%`.
    pub tc: &'a str,
    /// What opens the detail: `200 ms ± 0 ms`, `5% of packets corrupted`.
    pub effect: &'a str,
    /// A word the netem qdisc must show for the injection to be verified (`corrupt`), if any.
    pub shows: Option<&'a str>,
}

/// Refuses an interface whose root qdisc is not the default one (the host's, or another fault's),
/// then runs [`commands`] with the `prio` root of major `handle`, and reads the qdiscs back. On
/// error the caller reverts (which removes whatever half was installed, and only ours).
pub fn inject(
    kind: FaultKind,
    scope: &NetScope,
    (interface, handle): (&str, u16),
    ctx: &Context,
    impairment: Impairment<'_>,
) -> Result<Injected, FaultError> {
    let Impairment {
        tc: impairment,
        effect,
        shows,
    } = impairment;
    let shown =
        run("tc", &["qdisc", "show", "dev", interface], None).map_err(|r| net_error(kind, r))?;
    if let Some(root) = root_line(&shown).filter(|l| l.split_whitespace().nth(2) != Some("0:")) {
        return Err(net_error(
            kind,
            format!(
                "`{interface}` already has a root qdisc of its own (`{}`), another fault's or the host's; it is left alone, so this fault cannot use netem there (one netem, bandwidth or host shaper per interface)",
                root.trim()
            ),
        ));
    }
    let commands = commands(kind, scope, &ctx.exempt, interface, handle, impairment)?;
    for command in &commands {
        let argv: Vec<&str> = command.split_whitespace().collect();
        run("tc", &argv, None)
            .map_err(|r| net_error(kind, format!("failed to set up netem: {r}")))?;
    }
    let shown = run("tc", &["qdisc", "show", "dev", interface], None).unwrap_or_default();
    let netem_line = shown
        .lines()
        .find(|l| l.contains(&format!("qdisc netem {:x}: ", netem_handle(handle))));
    let verified = is_ours(&shown, handle)
        && netem_line.is_some_and(|l| shows.is_none_or(|word| l.contains(word)));
    let mut detail = format!(
        "{effect} at egress of {interface}: prio {handle:x}: band 4 → netem, {} filters",
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

fn root_line(shown: &str) -> Option<&str> {
    shown.lines().find(|l| l.contains(" root "))
}

/// Whether `tc qdisc show` output `shown` has the `prio` root of handle `handle`: ours, not
/// another fault's.
pub fn is_ours(shown: &str, handle: u16) -> bool {
    let h = format!("{handle:x}:");
    root_line(shown).is_some_and(|l| {
        l.starts_with("qdisc prio ") && l.split_whitespace().nth(2) == Some(h.as_str())
    })
}

/// Deletes our root qdisc (only if it is ours: the handle `handle`) and checks it is gone.
pub fn revert(kind: FaultKind, interface: &str, handle: u16) -> Result<Undone, FaultError> {
    let ours = |shown: &str| is_ours(shown, handle);
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
            &format!("{handle:x}:"),
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
            inside: None,
        };
        let f = filters(FaultKind::Latency, &scope, &[], 0xd123).unwrap();
        assert_eq!(f.len(), 6);
        assert!(f[0].contains("prio 1") && f[0].ends_with("flowid d123:1"));
        assert_eq!(
            f[4],
            "parent d123: protocol ip prio 2 u32 match ip dst 10.0.0.20 match ip protocol 6 0xff match ip dport 80 0xffff flowid d123:4"
        );
    }

    #[test]
    fn each_fault_has_its_own_handles_and_owns_only_its_root() {
        let (a, b) = (
            handle_of("run-1.step-1.fault-0"),
            handle_of("run-1.step-1.fault-1"),
        );
        assert_ne!(a, b);
        for h in [a, b] {
            assert_eq!(h & 0xf000, 0xd000);
            assert_eq!(netem_handle(h) & 0xf000, 0xe000);
        }
        assert_eq!(netem_handle(LEGACY_HANDLE), 0xc4a1);
        let shown = format!(
            "qdisc prio {a:x}: root refcnt 2 bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1\nqdisc netem {:x}: parent {a:x}:4 limit 100000 delay 200ms\n",
            netem_handle(a)
        );
        assert!(is_ours(&shown, a));
        assert!(!is_ours(&shown, b), "another fault's root is not ours");
        assert!(!is_ours("qdisc noqueue 0: root refcnt 2\n", a));
        assert!(!is_ours(&format!("qdisc htb {a:x}: root refcnt 2\n"), a));
    }

    #[test]
    fn journals_from_before_per_fault_handles_revert_the_old_handle() {
        let undo: crate::fault::Undo =
            serde_json::from_str(r#"{"kind":"corrupt","interface":"eth0"}"#).unwrap();
        assert_eq!(
            undo,
            crate::fault::Undo::Corrupt {
                interface: "eth0".into(),
                handle: LEGACY_HANDLE
            }
        );
    }
}
