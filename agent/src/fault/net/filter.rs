//! `drop` and `loss`: one nftables table per fault (`table inet chaos_<short id>`), with base
//! chains on the input and output hooks, reverted by deleting the table.
//!
//! Each chain starts with the gate: `iifname != @gate return`, where `gate` is a set with
//! `flags timeout` whose one element (the interface) expires at the fault's end plus a margin.
//! When it expires the table stays but matches nothing, so the fault ends even if every process
//! of ours was killed. Then the exemptions (SSH, the controller's connection) accept, and only
//! then come the fault's rules.

use std::fmt;
use std::time::Duration;

use super::{Context, Hosts, check_scope, net_error, protocols, run};
use crate::error::FaultError;
use crate::fault::{Injected, Kind, Resolved, Undo, Undone, other_kinds_undo, supported};
use crate::server::policy::{Policy, Refusal};
use crate::spec::{DropMode, DropSpec, Exempt, FaultKind, LossSpec, NetScope, PeerSelector};

impl Kind for DropSpec {
    fn support() -> Result<&'static str, &'static str> {
        nft()
    }

    fn check(&self, _at: &Resolved) -> Result<(), FaultError> {
        supported(FaultKind::Drop)?;
        check_scope(FaultKind::Drop, &self.scope).map(drop)
    }

    fn plan(&self, fault_id: &str, _seed: u64, _at: &Resolved) -> Result<Undo, FaultError> {
        plan(FaultKind::Drop, fault_id, &self.scope)
    }

    fn inject(&self, _fault_id: &str, undo: &Undo, ctx: &Context) -> Result<Injected, FaultError> {
        let Undo::NetTable { table, interface } = undo else {
            return Err(other_kinds_undo(FaultKind::Drop));
        };
        inject(
            Action::of_drop(self.mode),
            &self.scope,
            table,
            interface,
            ctx,
        )
    }

    fn check_policy(&self, policy: &Policy, _at: &Resolved) -> Result<(), Refusal> {
        policy.check_scope(FaultKind::Drop, &self.scope)
    }
}

impl fmt::Display for DropSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            DropMode::Drop => "drop",
            DropMode::Reject => "reject",
        };
        write!(f, "drop ({mode}){}", self.scope)
    }
}

impl Kind for LossSpec {
    fn support() -> Result<&'static str, &'static str> {
        nft()
    }

    fn check(&self, _at: &Resolved) -> Result<(), FaultError> {
        supported(FaultKind::Loss)?;
        let share = self.share;
        if !(0.0..=100.0).contains(&share) {
            return Err(net_error(
                FaultKind::Loss,
                format!("share {share}% is not between 0% and 100%"),
            ));
        }
        check_scope(FaultKind::Loss, &self.scope).map(drop)
    }

    fn plan(&self, fault_id: &str, _seed: u64, _at: &Resolved) -> Result<Undo, FaultError> {
        plan(FaultKind::Loss, fault_id, &self.scope)
    }

    fn inject(&self, _fault_id: &str, undo: &Undo, ctx: &Context) -> Result<Injected, FaultError> {
        let Undo::NetTable { table, interface } = undo else {
            return Err(other_kinds_undo(FaultKind::Loss));
        };
        inject(
            Action::of_share(self.share),
            &self.scope,
            table,
            interface,
            ctx,
        )
    }

    fn check_policy(&self, policy: &Policy, _at: &Resolved) -> Result<(), Refusal> {
        policy.check_loss_share(self.share)?;
        policy.check_scope(FaultKind::Loss, &self.scope)
    }
}

impl fmt::Display for LossSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "loss {}%{}", self.share, self.scope)
    }
}

/// `drop` and `loss` need nftables with set element timeouts, probed once ([`super::detect`]).
fn nft() -> Result<&'static str, &'static str> {
    match &super::detect::host().nft {
        Ok(()) => Ok("nft"),
        Err(reason) => Err(reason.as_str()),
    }
}

/// A `drop` or `loss` fault's undo data: its own table, on the interface its scope resolves to.
fn plan(kind: FaultKind, fault_id: &str, scope: &NetScope) -> Result<Undo, FaultError> {
    supported(kind)?;
    let interface = check_scope(kind, scope)?;
    Ok(Undo::NetTable {
        table: table_name(fault_id),
        interface,
    })
}

/// A `loss` share is drawn as this many parts: `30%` drops 3,000 packets in 10,000.
const LOSS_SCALE: u32 = 10_000;

/// What the rules do to a matching packet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    Drop,
    Reject,
    /// Drops this many packets in [`LOSS_SCALE`].
    Loss(u32),
}

impl Action {
    pub fn of_drop(mode: DropMode) -> Action {
        match mode {
            DropMode::Drop => Action::Drop,
            DropMode::Reject => Action::Reject,
        }
    }

    pub fn of_share(share: f64) -> Action {
        let parts = share / 100.0 * f64::from(LOSS_SCALE);
        Action::Loss(parts.round().clamp(0.0, f64::from(LOSS_SCALE)) as u32)
    }

    fn kind(self) -> FaultKind {
        match self {
            Action::Drop | Action::Reject => FaultKind::Drop,
            Action::Loss(_) => FaultKind::Loss,
        }
    }
}

/// The table's name for a fault.
pub fn table_name(fault_id: &str) -> String {
    format!("chaos_{}", super::short_id(fault_id))
}

/// The rules of both chains, as text: (input, output).
pub fn chains(
    action: Action,
    scope: &NetScope,
    exempt: &[Exempt],
) -> Result<(Vec<String>, Vec<String>), FaultError> {
    let kind = action.kind();
    let mut input = vec!["iifname != @gate return".to_string()];
    let mut output = vec!["oifname != @gate return".to_string()];
    if scope.spare_ssh {
        for chain in [&mut input, &mut output] {
            chain.push("tcp dport 22 accept".to_string());
            chain.push("tcp sport 22 accept".to_string());
        }
    }
    for e in exempt {
        let ip = if e.peer.is_ipv4() { "ip" } else { "ip6" };
        input.push(format!(
            "{ip} saddr {} tcp dport {} accept",
            e.peer, e.local_port
        ));
        output.push(format!(
            "{ip} daddr {} tcp sport {} accept",
            e.peer, e.local_port
        ));
    }
    if action == Action::Reject {
        // Our own answers (the resets and ICMP errors the input rules send) must get out.
        output.push("tcp flags & rst == rst accept".to_string());
        output.push("icmp type destination-unreachable accept".to_string());
        output.push("icmpv6 type destination-unreachable accept".to_string());
    }
    let both = !matches!(action, Action::Loss(_));
    let mut matches_in = Vec::new();
    let mut matches_out = Vec::new();
    if let Some(to) = &scope.to {
        matches_out.extend(matches(kind, to, "daddr", "dport")?);
        if both {
            matches_in.extend(matches(kind, to, "saddr", "sport")?);
        }
    }
    if let Some(from) = &scope.from {
        matches_in.extend(matches(kind, from, "saddr", "dport")?);
        if both {
            matches_out.extend(matches(kind, from, "daddr", "sport")?);
        }
    }
    if scope.to.is_none() && scope.from.is_none() {
        matches_out.push(String::new());
        if both {
            matches_in.push(String::new());
        }
    }
    for (chain, found) in [(&mut input, matches_in), (&mut output, matches_out)] {
        for m in found {
            let tcp_only = m.contains("meta l4proto tcp");
            let udp_only = m.contains("meta l4proto udp");
            let prefix = if m.is_empty() { m } else { format!("{m} ") };
            match action {
                Action::Drop => chain.push(format!("{prefix}drop")),
                // numgen's values are 0..=9999, so `< 10000` is out of nft's range: at 100%
                // every matching packet goes, with no draw at all.
                Action::Loss(n) if n >= LOSS_SCALE => chain.push(format!("{prefix}drop")),
                Action::Loss(n) => {
                    chain.push(format!("{prefix}numgen random mod {LOSS_SCALE} < {n} drop"))
                }
                Action::Reject => {
                    if !udp_only {
                        chain.push(format!("{prefix}meta l4proto tcp reject with tcp reset"));
                    }
                    if !tcp_only {
                        chain.push(format!("{prefix}reject with icmpx admin-prohibited"));
                    }
                }
            }
        }
    }
    Ok((input, output))
}

/// The match expressions of one selector in one direction, one per address family named.
pub(super) fn matches(
    kind: FaultKind,
    sel: &PeerSelector,
    addr: &str,
    port: &str,
) -> Result<Vec<String>, FaultError> {
    let hosts = Hosts::parse(kind, &sel.hosts)?;
    let mut families = Vec::new();
    if hosts.is_empty() {
        families.push(String::new());
    }
    if !hosts.v4.is_empty() {
        families.push(format!("ip {addr} {{ {} }}", hosts.v4.join(", ")));
    }
    if !hosts.v6.is_empty() {
        families.push(format!("ip6 {addr} {{ {} }}", hosts.v6.join(", ")));
    }
    let mut rest = Vec::new();
    if let Some(protos) = protocols(sel) {
        rest.push(format!("meta l4proto {{ {} }}", protos.join(", ")));
    }
    if !sel.ports.is_empty() {
        let ports: Vec<String> = sel.ports.iter().map(u16::to_string).collect();
        rest.push(format!("th {port} {{ {} }}", ports.join(", ")));
    }
    Ok(families
        .into_iter()
        .map(|f| {
            let mut parts: Vec<&str> = Vec::new();
            if !f.is_empty() {
                parts.push(&f);
            }
            parts.extend(rest.iter().map(String::as_str));
            // `meta l4proto { tcp }` reads back as `meta l4proto tcp`; say it that way.
            parts
                .join(" ")
                .replace("meta l4proto { tcp }", "meta l4proto tcp")
                .replace("meta l4proto { udp }", "meta l4proto udp")
        })
        .collect())
}

/// The whole table as an `nft -f` script.
pub fn script(
    table: &str,
    interface: &str,
    timeout: Duration,
    input: &[String],
    output: &[String],
) -> String {
    let chain = |name: &str, hook: &str, rules: &[String]| {
        let mut text = format!(
            "  chain {name} {{\n    type filter hook {hook} priority filter - 5; policy accept;\n"
        );
        for rule in rules {
            text.push_str(&format!("    {rule}\n"));
        }
        text.push_str("  }\n");
        text
    };
    format!(
        "table inet {table} {{\n  set gate {{ type ifname; flags timeout; elements = {{ \"{interface}\" timeout {}s }} }}\n{}{}}}\n",
        timeout.as_secs(),
        chain("input", "input", input),
        chain("output", "output", output),
    )
}

/// Installs the table, reads it back, and for `reject` resets the established TCP connections
/// that match (so they fail at once rather than at their next packet).
pub fn inject(
    action: Action,
    scope: &NetScope,
    table: &str,
    interface: &str,
    ctx: &Context,
) -> Result<Injected, FaultError> {
    let kind = action.kind();
    let (input, output) = chains(action, scope, &ctx.exempt)?;
    let timeout = super::kernel_timeout(ctx.hold);
    let text = script(table, interface, timeout, &input, &output);
    // A leftover of the same fault id (a crash between inject and journal removal) is replaced.
    let _ = run("nft", &["delete", "table", "inet", table], None);
    run("nft", &["-f", "-"], Some(&text)).map_err(|reason| {
        net_error(kind, format!("failed to install table `{table}`: {reason}"))
    })?;

    let mut detail = format!(
        "table inet {table}: {} input and {} output rules, expiring in the kernel {}s from now",
        input.len(),
        output.len(),
        timeout.as_secs()
    );
    let (verified, diff) = read_back(table, interface, input.len(), output.len());
    if !verified {
        detail.push_str(&format!("; read back: {diff}"));
    }
    if action == Action::Reject {
        match kill_sockets(scope, interface, &ctx.exempt) {
            Ok(0) => {}
            Ok(n) => detail.push_str(&format!("; {n} established TCP connections reset")),
            Err(reason) => {
                detail.push_str(&format!("; established connections not reset: {reason}"))
            }
        }
    }
    Ok(Injected {
        mechanism: "nft".to_string(),
        affected: vec![super::describe(interface, scope)],
        verified,
        detail,
        undo: None,
    })
}

/// Whether the table is in place as installed: its chains with their rule counts and the gate
/// holding the interface. The difference when not.
pub(super) fn read_back(
    table: &str,
    interface: &str,
    input: usize,
    output: usize,
) -> (bool, String) {
    let json = match run("nft", &["-j", "list", "table", "inet", table], None) {
        Ok(json) => json,
        Err(reason) => return (false, reason),
    };
    let value: serde_json::Value = match serde_json::from_str(&json) {
        Ok(v) => v,
        Err(err) => return (false, format!("unreadable `nft -j` output: {err}")),
    };
    let items = value["nftables"].as_array().cloned().unwrap_or_default();
    let count = |chain: &str| {
        items
            .iter()
            .filter(|i| i["rule"]["chain"].as_str() == Some(chain))
            .count()
    };
    let gate = items.iter().any(|i| {
        i["set"]["name"].as_str() == Some("gate")
            && i["set"]["elem"]
                .to_string()
                .contains(&format!("\"{interface}\""))
    });
    let (got_in, got_out) = (count("input"), count("output"));
    let mut diffs = Vec::new();
    if got_in != input {
        diffs.push(format!("{got_in} input rules, {input} installed"));
    }
    if got_out != output {
        diffs.push(format!("{got_out} output rules, {output} installed"));
    }
    if !gate {
        diffs.push(format!("the gate does not hold `{interface}`"));
    }
    (diffs.is_empty(), diffs.join(", "))
}

/// `ss -K` on the established TCP sockets the fault matches; how many it destroyed.
fn kill_sockets(scope: &NetScope, interface: &str, exempt: &[Exempt]) -> Result<usize, String> {
    let locals = super::interface_addresses(interface);
    if locals.is_empty() {
        return Ok(0);
    }
    let mut any = Vec::new();
    let selector = |sel: &PeerSelector, port: &str| -> Option<String> {
        if protocols(sel).is_some_and(|p| !p.contains(&"tcp")) {
            return None;
        }
        let mut parts = Vec::new();
        if !sel.hosts.is_empty() {
            let hosts: Vec<String> = sel
                .hosts
                .iter()
                .map(|h| format!("dst {}", h.trim()))
                .collect();
            parts.push(format!("( {} )", hosts.join(" or ")));
        }
        if !sel.ports.is_empty() {
            let ports: Vec<String> = sel.ports.iter().map(|p| format!("{port} = :{p}")).collect();
            parts.push(format!("( {} )", ports.join(" or ")));
        }
        Some(if parts.is_empty() {
            "( sport >= :0 )".to_string()
        } else {
            format!("( {} )", parts.join(" and "))
        })
    };
    if let Some(to) = &scope.to {
        any.extend(selector(to, "dport"));
    }
    if let Some(from) = &scope.from {
        any.extend(selector(from, "sport"));
    }
    if scope.to.is_none() && scope.from.is_none() {
        any.push("( sport >= :0 )".to_string());
    }
    if any.is_empty() {
        return Ok(0);
    }
    let srcs: Vec<String> = locals.iter().map(|a| format!("src {a}")).collect();
    let mut filter = format!("( {} ) and ( {} )", srcs.join(" or "), any.join(" or "));
    if scope.spare_ssh {
        filter.push_str(" and not ( sport = :22 or dport = :22 )");
    }
    for e in exempt {
        filter.push_str(&format!(
            " and not ( dst {} and sport = :{} )",
            e.peer, e.local_port
        ));
    }
    let out = run(
        "ss",
        &["-K", "-t", "-n", "-H", "state", "established", &filter],
        None,
    )?;
    Ok(out.lines().filter(|l| !l.trim().is_empty()).count())
}

/// Deletes the table (gone already is fine) and checks that `nft list tables` no longer shows it.
pub fn revert(table: &str) -> Result<Undone, FaultError> {
    let deleted = delete_table(table).map_err(|reason| FaultError::Network {
        kind: FaultKind::Drop,
        reason,
    })?;
    Ok(Undone {
        verified: true,
        detail: deleted.to_string(),
    })
}

/// What [`delete_table`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableDeleted {
    /// The table was there and is gone now.
    Now(String),
    /// The table was gone already (a revert ran before, or the namespace went with it).
    Already(String),
}

impl fmt::Display for TableDeleted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableDeleted::Now(table) => write!(f, "table inet {table} deleted"),
            TableDeleted::Already(table) => write!(f, "table inet {table} was already gone"),
        }
    }
}

/// Deletes nftables table `inet <table>`, the whole of a fault's rules (gone already is fine), and
/// checks that `nft list tables` no longer shows it: every kind built on a table of its own
/// reverts through this. The error says what is left and how to remove it by hand.
pub fn delete_table(table: &str) -> Result<TableDeleted, String> {
    let deleted = run("nft", &["delete", "table", "inet", table], None);
    let listed = run("nft", &["list", "tables"], None).map_err(|reason| {
        format!("cannot list nft tables to check that `{table}` is gone: {reason}")
    })?;
    if listed
        .lines()
        .any(|l| l.split_whitespace().last() == Some(table))
    {
        return Err(format!(
            "table inet `{table}` is still in place: {}; delete it with `nft delete table inet {table}`",
            deleted.err().unwrap_or_default()
        ));
    }
    Ok(match deleted {
        Ok(_) => TableDeleted::Now(table.to_string()),
        Err(_) => TableDeleted::Already(table.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Protocol;

    fn scope(to: Option<PeerSelector>, from: Option<PeerSelector>) -> NetScope {
        NetScope {
            to,
            from,
            interface: None,
            spare_ssh: true,
            inside: None,
        }
    }

    #[test]
    fn reject_to_a_peer_cuts_both_directions_after_the_exemptions() {
        let to = PeerSelector {
            hosts: vec!["10.0.0.20".into()],
            ports: vec![6379],
            protocol: Some(Protocol::Tcp),
        };
        let exempt = [Exempt {
            peer: "10.0.0.1".parse().unwrap(),
            local_port: 7070,
        }];
        let (input, output) = chains(Action::Reject, &scope(Some(to), None), &exempt).unwrap();
        assert_eq!(
            input,
            [
                "iifname != @gate return",
                "tcp dport 22 accept",
                "tcp sport 22 accept",
                "ip saddr 10.0.0.1 tcp dport 7070 accept",
                "ip saddr { 10.0.0.20 } meta l4proto tcp th sport { 6379 } meta l4proto tcp reject with tcp reset",
            ]
        );
        assert_eq!(
            output.last().unwrap(),
            "ip daddr { 10.0.0.20 } meta l4proto tcp th dport { 6379 } meta l4proto tcp reject with tcp reset"
        );
        assert_eq!(output[3], "ip daddr 10.0.0.1 tcp sport 7070 accept");
        assert_eq!(output[4], "tcp flags & rst == rst accept");
    }

    #[test]
    fn loss_without_peers_is_one_way_and_drop_everything_both() {
        let mut s = scope(None, None);
        s.spare_ssh = false;
        let (input, output) = chains(Action::of_share(30.0), &s, &[]).unwrap();
        assert_eq!(input, ["iifname != @gate return"]);
        assert_eq!(
            output,
            [
                "oifname != @gate return",
                "numgen random mod 10000 < 3000 drop"
            ]
        );
        let (input, output) = chains(Action::Drop, &s, &[]).unwrap();
        assert_eq!(input.last().unwrap(), "drop");
        assert_eq!(output.last().unwrap(), "drop");
    }

    #[test]
    fn loss_of_everything_needs_no_numgen() {
        let mut s = scope(None, None);
        s.spare_ssh = false;
        let (_, output) = chains(Action::of_share(100.0), &s, &[]).unwrap();
        assert_eq!(output, ["oifname != @gate return", "drop"]);
        let (_, output) = chains(Action::of_share(99.99), &s, &[]).unwrap();
        assert_eq!(output[1], "numgen random mod 10000 < 9999 drop");
    }

    #[test]
    fn from_peers_match_our_ports() {
        let from = PeerSelector {
            hosts: vec!["fd00::/8".into()],
            ports: vec![5432],
            protocol: None,
        };
        let (input, output) = chains(Action::Drop, &scope(None, Some(from)), &[]).unwrap();
        assert_eq!(
            input.last().unwrap(),
            "ip6 saddr { fd00::/8 } meta l4proto { tcp, udp } th dport { 5432 } drop"
        );
        assert_eq!(
            output.last().unwrap(),
            "ip6 daddr { fd00::/8 } meta l4proto { tcp, udp } th sport { 5432 } drop"
        );
    }

    #[test]
    fn the_script_gates_on_a_timed_set() {
        let text = script(
            "chaos_x",
            "eth0",
            Duration::from_secs(12),
            &["iifname != @gate return".into()],
            &["oifname != @gate return".into()],
        );
        assert!(
            text.contains("elements = { \"eth0\" timeout 12s }"),
            "{text}"
        );
        assert!(text.contains("type filter hook output priority filter - 5; policy accept;"));
    }
}
