//! `bandwidth`: an HTB root qdisc on the interface (handle `<major>:`, the major from the fault's
//! id) with one class (`<major>:1`) at the rate. An nftables table of the fault (`table inet
//! chaos_<short id>`, an output chain) sets the priority of matching packets to that class's id
//! (`meta priority set <major>:1`), which HTB takes as their class before any filter, so no tc
//! classifier is needed. Other packets take HTB's direct queue, unshaped: the qdisc has no
//! default class.
//!
//! The chain starts with the gate of `drop`/`loss` ([`super::filter`]): a set whose one
//! element (the interface) expires in the kernel at the fault's end plus a margin. Then nothing is
//! classified any more and the HTB qdisc left behind shapes nothing, even if every process of ours was
//! killed; the agent's next start removes both, from its journal. The exemptions (SSH, the
//! controller's connection) are accepted before any class is set, so they are never shaped.

use std::fmt;

use super::{Context, check_scope, describe, filter, net_error, run};
use crate::error::FaultError;
use crate::fault::{Injected, Kind, Resolved, Undo, Undone, other_kinds_undo, supported};
use crate::server::policy::{Policy, Refusal};
use crate::spec::{BandwidthSpec, Exempt, FaultKind, NetScope};

const KIND: FaultKind = FaultKind::Bandwidth;

/// The lowest rate accepted: below this HTB's arithmetic is meaningless.
pub const MIN_RATE: u64 = 8_000;

/// The highest rate accepted (a terabit per second).
pub const MAX_RATE: u64 = 1_000_000_000_000;

impl Kind for BandwidthSpec {
    /// HTB and nftables, probed in a throwaway namespace ([`super::detect`]).
    fn support() -> Result<&'static str, &'static str> {
        let host = super::detect::host();
        match (&host.nft, &host.htb) {
            (Ok(()), Ok(())) => Ok("htb"),
            (Err(reason), _) | (_, Err(reason)) => Err(reason.as_str()),
        }
    }

    fn check(&self, _at: &Resolved) -> Result<(), FaultError> {
        supported(KIND)?;
        if self.scope.from.is_some() {
            return Err(net_error(
                KIND,
                "limits only what this host sends: name the peers with `to`, not `from`",
            ));
        }
        if !(MIN_RATE..=MAX_RATE).contains(&self.rate) {
            return Err(net_error(
                KIND,
                format!(
                    "rate {} is outside {} to {}",
                    format_rate(self.rate),
                    format_rate(MIN_RATE),
                    format_rate(MAX_RATE)
                ),
            ));
        }
        check_scope(KIND, &self.scope).map(drop)
    }

    fn plan(&self, fault_id: &str, _seed: u64, at: &Resolved) -> Result<Undo, FaultError> {
        self.check(at)?;
        // Resolved again (the check does it too): the plan journals the interface it acts on.
        let interface = check_scope(KIND, &self.scope)?;
        Ok(Undo::Bandwidth {
            table: format!("chaos_{}", super::short_id(fault_id)),
            interface,
            handle: handle_of(fault_id),
        })
    }

    fn inject(&self, _fault_id: &str, undo: &Undo, ctx: &Context) -> Result<Injected, FaultError> {
        let Undo::Bandwidth {
            table,
            interface,
            handle,
        } = undo
        else {
            return Err(other_kinds_undo(KIND));
        };
        inject(self, table, interface, *handle, ctx)
    }

    fn check_policy(&self, policy: &Policy, _at: &Resolved) -> Result<(), Refusal> {
        policy.check_scope(KIND, &self.scope)?;
        policy.check_rate(self.rate)
    }
}

impl fmt::Display for BandwidthSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bandwidth {}", format_rate(self.rate))?;
        if let Some(burst) = self.burst {
            write!(f, " (burst {burst} B)")?;
        }
        write!(f, "{}", self.scope)
    }
}

impl BandwidthSpec {
    /// The burst in bytes: the one given, else a tenth of a second at the rate, at least ten
    /// full-size packets.
    pub fn burst_bytes(&self) -> u64 {
        self.burst.unwrap_or((self.rate / 8 / 10).max(15_140))
    }
}

/// The HTB major handle of a fault (`0xc000` to `0xcfff`, from its id): a second fault on the same interface is refused and its revert leaves the
/// first's qdisc alone.
pub fn handle_of(fault_id: &str) -> u16 {
    let hash = u64::from_str_radix(&super::short_id(fault_id), 16).unwrap_or(0);
    0xc000 | (hash & 0x0fff) as u16
}

/// `1mbit`, `500kbit`, `2.5gbit` (bits, decimal prefixes) or `10MB/s`, `512KiB/s` (bytes;
/// decimal or binary prefixes) → bits per second. `bps` is refused: tc reads it as bytes, most
/// people as bits.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim();
    let value: f64 = number.parse().map_err(|_| {
        format!(
            "`{text}` is not a rate; write a number and a unit, e.g. `1mbit`, `500kbit`, `10MB/s`"
        )
    })?;
    let lower = unit.to_ascii_lowercase();
    let factor: f64 = if let Some(prefix) = lower.strip_suffix("bit") {
        match prefix {
            "" => 1.0,
            "k" => 1e3,
            "m" => 1e6,
            "g" => 1e9,
            _ => return Err(unknown_unit(text, unit)),
        }
    } else if let Some(prefix) = unit.strip_suffix("B/s") {
        8.0 * match prefix {
            "" => 1.0,
            "k" | "K" => 1e3,
            "M" => 1e6,
            "G" => 1e9,
            "Ki" => 1024.0,
            "Mi" => 1024.0 * 1024.0,
            "Gi" => 1024.0 * 1024.0 * 1024.0,
            _ => return Err(unknown_unit(text, unit)),
        }
    } else if lower.ends_with("bps") || lower.ends_with("b/s") {
        return Err(format!(
            "`{text}` is ambiguous: write bits as `kbit`/`mbit`/`gbit`, bytes as `kB/s`/`MB/s`/`GB/s`"
        ));
    } else if unit.is_empty() {
        return Err(format!(
            "`{text}` has no unit; write e.g. `1mbit`, `500kbit` or `10MB/s`"
        ));
    } else {
        return Err(unknown_unit(text, unit));
    };
    let bits = value * factor;
    if !bits.is_finite() || bits < MIN_RATE as f64 || bits > MAX_RATE as f64 {
        return Err(format!(
            "rate `{text}` is outside {} to {}",
            format_rate(MIN_RATE),
            format_rate(MAX_RATE)
        ));
    }
    Ok(bits.round() as u64)
}

fn unknown_unit(text: &str, unit: &str) -> String {
    format!(
        "`{text}` has an unknown unit `{unit}`; expected `bit`, `kbit`, `mbit`, `gbit`, `B/s`, `kB/s`, `MB/s`, `GB/s`, `KiB/s`, `MiB/s` or `GiB/s`"
    )
}

/// Bits per second in the largest decimal unit that says it exactly: `1mbit`, `80mbit`,
/// `1500kbit`, `12345bit`.
pub fn format_rate(bits: u64) -> String {
    for (unit, factor) in [
        ("gbit", 1_000_000_000),
        ("mbit", 1_000_000),
        ("kbit", 1_000),
    ] {
        if bits >= factor && bits.is_multiple_of(factor) {
            return format!("{}{unit}", bits / factor);
        }
    }
    format!("{bits}bit")
}

/// The rules of the chain (hook output): the gate, the exemptions, then the class of the rest.
pub fn rules(scope: &NetScope, exempt: &[Exempt], handle: u16) -> Result<Vec<String>, FaultError> {
    let mut out = vec!["oifname != @gate return".to_string()];
    if scope.spare_ssh {
        out.push("tcp dport 22 accept".to_string());
        out.push("tcp sport 22 accept".to_string());
    }
    for e in exempt {
        let ip = if e.peer.is_ipv4() { "ip" } else { "ip6" };
        out.push(format!(
            "{ip} daddr {} tcp sport {} accept",
            e.peer, e.local_port
        ));
    }
    let matches = match &scope.to {
        Some(to) => filter::matches(KIND, to, "daddr", "dport")?,
        None => vec![String::new()],
    };
    for m in matches {
        let prefix = if m.is_empty() { m } else { format!("{m} ") };
        out.push(format!("{prefix}meta priority set {handle:x}:1"));
    }
    Ok(out)
}

/// The tc commands (after `tc`) that set up the shaper on `interface`: the root and its class.
pub fn tc_commands(interface: &str, handle: u16, rate: u64, burst: u64) -> Vec<String> {
    let h = format!("{handle:x}");
    vec![
        format!("qdisc add dev {interface} root handle {h}: htb"),
        format!(
            "class add dev {interface} parent {h}: classid {h}:1 htb rate {rate}bit ceil {rate}bit burst {burst} cburst {burst} quantum 60000"
        ),
    ]
}

fn root_line(shown: &str) -> Option<&str> {
    shown.lines().find(|l| l.contains(" root "))
}

/// Installs the shaper, then the marking table, and reads both back. On error the caller
/// reverts (which removes whatever half was installed).
fn inject(
    spec: &BandwidthSpec,
    table: &str,
    interface: &str,
    handle: u16,
    ctx: &Context,
) -> Result<Injected, FaultError> {
    let shown =
        run("tc", &["qdisc", "show", "dev", interface], None).map_err(|r| net_error(KIND, r))?;
    if let Some(root) = root_line(&shown) {
        let got = root.split_whitespace().nth(2).unwrap_or("");
        if got != "0:" {
            return Err(net_error(
                KIND,
                format!(
                    "`{interface}` already has a root qdisc of its own (`{}`), another fault's or the host's; it is left alone, so this fault cannot shape there",
                    root.trim()
                ),
            ));
        }
    }
    let burst = spec.burst_bytes();
    for command in tc_commands(interface, handle, spec.rate, burst) {
        let argv: Vec<&str> = command.split_whitespace().collect();
        run("tc", &argv, None)
            .map_err(|r| net_error(KIND, format!("failed to set up the shaper: {r}")))?;
    }
    let output = rules(&spec.scope, &ctx.exempt, handle)?;
    let timeout = super::kernel_timeout(ctx.hold);
    let text = filter::script(table, interface, timeout, &[], &output);
    let _ = run("nft", &["delete", "table", "inet", table], None);
    run("nft", &["-f", "-"], Some(&text)).map_err(|reason| {
        net_error(KIND, format!("failed to install table `{table}`: {reason}"))
    })?;

    let mut diffs = Vec::new();
    let (nft_ok, nft_diff) = filter::read_back(table, interface, 0, output.len());
    if !nft_ok {
        diffs.push(nft_diff);
    }
    let h = format!("{handle:x}");
    let classes = run("tc", &["class", "show", "dev", interface], None).unwrap_or_default();
    if !classes.contains(&format!("class htb {h}:1 ")) {
        diffs.push(format!("no class {h}:1 in `tc class show`"));
    }
    let mut detail = format!(
        "{} (burst {burst} B) at egress of {interface}: htb {h}: class {h}:1 fed by table inet {table} ({} rules, expiring in the kernel {}s from now)",
        format_rate(spec.rate),
        output.len(),
        timeout.as_secs()
    );
    if !diffs.is_empty() {
        detail.push_str(&format!("; read back: {}", diffs.join(", ")));
    }
    Ok(Injected {
        mechanism: "htb".to_string(),
        affected: vec![describe(interface, &spec.scope)],
        verified: diffs.is_empty(),
        detail,
        undo: None,
    })
}

/// What the shaped class carried, from `tc -s class show`: bytes, packets, dropped and
/// overlimits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Carried {
    pub bytes: u64,
    pub packets: u64,
    pub dropped: u64,
    pub overlimits: u64,
}

/// Reads the stats of class `<handle>:1` on `interface`, if it is there.
pub fn carried(interface: &str, handle: u16) -> Option<Carried> {
    let out = run(
        "tc",
        &[
            "-s",
            "class",
            "show",
            "dev",
            interface,
            "classid",
            &format!("{handle:x}:1"),
        ],
        None,
    )
    .ok()?;
    parse_carried(&out)
}

/// ` Sent 1234 bytes 12 pkt (dropped 0, overlimits 5 requeues 0)` → its numbers.
pub fn parse_carried(out: &str) -> Option<Carried> {
    let line = out.lines().find(|l| l.trim_start().starts_with("Sent "))?;
    let words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .filter(|w| !w.is_empty())
        .collect();
    let after = |word: &str| -> u64 {
        words
            .iter()
            .position(|w| *w == word)
            .and_then(|i| words.get(i + 1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let before = |word: &str| -> u64 {
        words
            .iter()
            .position(|w| *w == word)
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| words[i].parse().ok())
            .unwrap_or(0)
    };
    Some(Carried {
        bytes: after("Sent"),
        packets: before("pkt"),
        dropped: after("dropped"),
        overlimits: after("overlimits"),
    })
}

/// Deletes the marking table and our root qdisc (each only if there; absent is fine), says what
/// the shaped class carried, and checks both are gone.
pub fn revert(table: &str, interface: &str, handle: u16) -> Result<Undone, FaultError> {
    let mut problems = Vec::new();
    let mut done = Vec::new();
    match filter::delete_table(table) {
        Ok(deleted) => done.push(deleted.to_string()),
        Err(reason) => problems.push(reason),
    }
    let h = format!("{handle:x}:");
    let ours = |shown: &str| {
        root_line(shown).is_some_and(|l| {
            l.starts_with("qdisc htb ") && l.split_whitespace().nth(2) == Some(h.as_str())
        })
    };
    match run("tc", &["qdisc", "show", "dev", interface], None) {
        Err(_) if run("ip", &["link", "show", "dev", interface], None).is_err() => {
            done.push(format!(
                "interface {interface} is gone, and its qdiscs with it"
            ));
        }
        Err(reason) => problems.push(reason),
        Ok(shown) if !ours(&shown) => done.push(format!("no shaper of ours on {interface}")),
        Ok(_) => {
            let stats = carried(interface, handle);
            let deleted = run("tc", &["qdisc", "del", "dev", interface, "root"], None);
            let after = run("tc", &["qdisc", "show", "dev", interface], None).unwrap_or_default();
            if ours(&after) {
                problems.push(format!(
                    "the shaper is still on {interface}: {}; remove it with `tc qdisc del dev {interface} root`",
                    deleted.err().unwrap_or_default()
                ));
            } else {
                let mut text = format!("htb {h} removed from {interface}");
                if let Some(c) = stats {
                    text.push_str(&format!(
                        "; the shaped class carried {} bytes in {} packets ({} dropped, {} overlimits)",
                        c.bytes, c.packets, c.dropped, c.overlimits
                    ));
                }
                done.push(text);
            }
        }
    }
    if !problems.is_empty() {
        return Err(net_error(KIND, problems.join("; ")));
    }
    Ok(Undone {
        verified: true,
        detail: done.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{PeerSelector, Protocol};

    #[test]
    fn rates_parse_in_bits_and_bytes() {
        assert_eq!(parse_rate("1mbit"), Ok(1_000_000));
        assert_eq!(parse_rate("500kbit"), Ok(500_000));
        assert_eq!(parse_rate("2.5Gbit"), Ok(2_500_000_000));
        assert_eq!(parse_rate("10MB/s"), Ok(80_000_000));
        assert_eq!(parse_rate("1KiB/s"), Ok(8192));
        assert_eq!(parse_rate(" 64 kbit "), Ok(64_000));
        for (bad, says) in [
            ("10", "no unit"),
            ("1mbps", "ambiguous"),
            ("10mb/s", "ambiguous"),
            ("3 furlongs", "unknown unit"),
            ("fast", "not a rate"),
            ("1bit", "outside"),
        ] {
            let err = parse_rate(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn rates_display_in_the_largest_exact_unit() {
        assert_eq!(format_rate(1_000_000), "1mbit");
        assert_eq!(format_rate(80_000_000), "80mbit");
        assert_eq!(format_rate(1_500_000), "1500kbit");
        assert_eq!(format_rate(8192), "8192bit");
    }

    #[test]
    fn the_chain_exempts_first_then_marks_what_goes_to_the_peers() {
        let scope = NetScope {
            to: Some(PeerSelector {
                hosts: vec!["10.0.0.20".into()],
                ports: vec![5201],
                protocol: Some(Protocol::Tcp),
            }),
            from: None,
            interface: None,
            spare_ssh: true,
            inside: None,
        };
        let exempt = [Exempt {
            peer: "10.0.0.1".parse().unwrap(),
            local_port: 7070,
        }];
        assert_eq!(
            rules(&scope, &exempt, 0xc123).unwrap(),
            [
                "oifname != @gate return",
                "tcp dport 22 accept",
                "tcp sport 22 accept",
                "ip daddr 10.0.0.1 tcp sport 7070 accept",
                "ip daddr { 10.0.0.20 } meta l4proto tcp th dport { 5201 } meta priority set c123:1",
            ]
        );
        let all = NetScope {
            spare_ssh: false,
            ..NetScope::default()
        };
        assert_eq!(
            rules(&all, &[], 0xc001).unwrap(),
            ["oifname != @gate return", "meta priority set c001:1"]
        );
    }

    #[test]
    fn the_shaper_is_one_class_and_no_default() {
        let tc = tc_commands("eth0", 0xc0de, 1_000_000, 15_140);
        assert_eq!(tc[0], "qdisc add dev eth0 root handle c0de: htb");
        assert!(tc[1].contains("classid c0de:1 htb rate 1000000bit ceil 1000000bit burst 15140"));
        assert_eq!(tc.len(), 2);
    }

    #[test]
    fn plans_are_per_fault_and_bursts_follow_the_rate() {
        let a = handle_of("run-1.step-1.fault-0");
        assert_eq!(a & 0xf000, 0xc000);
        assert_eq!(a, handle_of("run-1.step-1.fault-0"));
        let spec = |rate, burst| BandwidthSpec {
            rate,
            burst,
            scope: NetScope::default(),
        };
        assert_eq!(spec(1_000_000, None).burst_bytes(), 15_140);
        assert_eq!(spec(1_000_000_000, None).burst_bytes(), 12_500_000);
        assert_eq!(spec(1_000_000, Some(3000)).burst_bytes(), 3000);
        assert_eq!(
            spec(1_000_000, Some(3000)).to_string(),
            "bandwidth 1mbit (burst 3000 B) all traffic, SSH not spared"
        );
    }

    #[test]
    fn class_stats_parse() {
        let out = "class htb c0de:1 root prio 0 rate 1Mbit ceil 1Mbit burst 15140b cburst 15140b \n Sent 252044 bytes 170 pkt (dropped 0, overlimits 88 requeues 0) \n backlog 0b 0p requeues 0\n";
        assert_eq!(
            parse_carried(out),
            Some(Carried {
                bytes: 252_044,
                packets: 170,
                dropped: 0,
                overlimits: 88
            })
        );
    }
}
