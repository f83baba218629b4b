//! `dns`: the DNS queries this host sends (UDP and TCP) to its resolvers (the `nameserver` lines
//! of `/etc/resolv.conf` as the agent sees it) are redirected to the agent's responder
//! ([`super::dns_responder`]), which answers matching names as the fault says and relays every
//! other query to the resolver it was sent to.
//!
//! The redirect is one nftables table of the fault (`table inet chaos_<short id>`) with a `nat`
//! chain at `output`: packets marked by the responder itself return first, then one rule per
//! resolver and protocol, `ip daddr R udp dport @gate redirect to :PORT`, where each resolver has
//! its own loopback ports, so the port a query arrives on says where to relay it. Queries sent to
//! other servers (`dig @other`) are not redirected.
//!
//! **Invariant:** the redirect fails open. It matches only while the set `gate` holds port 53,
//! an element with a 2 s kernel timeout that [`super::gate`] renews every second from this
//! process: if the agent dies, DNS goes straight to the resolvers again within 2 s, though the
//! table stays until a revert (the next start's, from the journal) deletes it. A UDP flow that was
//! redirected before would keep its NAT while its socket keeps querying; with the gate closed its
//! packets are put in a conntrack zone of their own ([`zone_rules`]), where they are a new flow.

use std::fmt;
use std::net::IpAddr;

use super::dns_responder::{self, Ports, Rule};
use super::{filter, gate, net_error, run};
use crate::error::FaultError;
use crate::fault::{Injected, Kind, Resolved, Undo, Undone, other_kinds_undo, supported};
use crate::server::policy::{Policy, Refusal};
use crate::spec::{DnsAnswer, DnsSpec, FaultKind};

const KIND: FaultKind = FaultKind::Dns;

/// The resolver configuration read for the resolvers to redirect.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The longest `delay` accepted: longer, every client has long given up.
pub const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(60);

/// The port whose queries are redirected, and the gate's element.
const DNS_PORT: u16 = 53;

impl Kind for DnsSpec {
    /// nftables (its `nat` redirect); the responder is this process.
    fn support() -> Result<&'static str, &'static str> {
        match &super::detect::host().nft {
            Ok(()) => Ok("nft redirect"),
            Err(reason) => Err(reason.as_str()),
        }
    }

    fn check(&self, _at: &Resolved) -> Result<(), FaultError> {
        supported(KIND)?;
        check_keys(self).map_err(|r| net_error(KIND, r))?;
        read_resolvers().map(drop)
    }

    fn plan(&self, fault_id: &str, _seed: u64, at: &Resolved) -> Result<Undo, FaultError> {
        self.check(at)?;
        Ok(Undo::Dns {
            table: format!("chaos_{}", super::short_id(fault_id)),
            resolvers: read_resolvers()?,
        })
    }

    fn inject(
        &self,
        _fault_id: &str,
        undo: &Undo,
        _ctx: &super::Context,
    ) -> Result<Injected, FaultError> {
        let Undo::Dns { table, resolvers } = undo else {
            return Err(other_kinds_undo(KIND));
        };
        inject(self, table, resolvers)
    }

    fn check_policy(&self, policy: &Policy, _at: &Resolved) -> Result<(), Refusal> {
        policy.check_dns(self)
    }
}

impl fmt::Display for DnsSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dns ")?;
        match self.answer {
            None => f.write_str("real answers")?,
            Some(answer) => write!(f, "{}", answer_words(answer))?,
        }
        if let Some(delay) = self.delay {
            write!(f, " {}ms late", delay.as_millis())?;
        }
        write!(f, " for {}", self.names.join(", "))?;
        if let Some(inside) = &self.inside {
            write!(f, ", inside the network namespaces of {inside}")?;
        }
        Ok(())
    }
}

/// `nxdomain`, `servfail`, `refused`, `timeout` (no answer), `address 10.9.9.9`.
pub fn answer_words(answer: DnsAnswer) -> String {
    match answer {
        DnsAnswer::Nxdomain => "nxdomain".into(),
        DnsAnswer::Servfail => "servfail".into(),
        DnsAnswer::Refused => "refused".into(),
        DnsAnswer::Timeout => "timeout (no answer)".into(),
        DnsAnswer::Address(ip) => format!("address {ip}"),
    }
}

/// The keys alone: names given and valid, an answer or a delay, the delay in range.
pub fn check_keys(spec: &DnsSpec) -> Result<(), String> {
    if spec.names.is_empty() {
        return Err("names is empty: name at least one (`db.internal`, `*.svc.local`)".into());
    }
    for name in &spec.names {
        parse_name_glob(name)?;
    }
    if spec.answer.is_none() && spec.delay.is_none() {
        return Err("give an `answer`, a `delay`, or both".into());
    }
    if let Some(delay) = spec.delay
        && (delay.is_zero() || delay > MAX_DELAY)
    {
        return Err(format!(
            "delay {}ms is outside 1ms to {}s",
            delay.as_millis(),
            MAX_DELAY.as_secs()
        ));
    }
    Ok(())
}

/// A name or glob as a fault matches it: lowercase, the trailing dot dropped. Letters, digits,
/// `-`, `_` and `*` (any run of characters, dots too) in labels of 1 to 63 characters, 253 in all.
pub fn parse_name_glob(text: &str) -> Result<String, String> {
    let name = dns_responder::normalize(text.trim());
    if name.is_empty() || name.len() > 253 {
        return Err(format!(
            "`{text}` is not a DNS name or glob (1 to 253 characters, e.g. `db.internal`, `*.svc.local`)"
        ));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "`{text}` has an empty or too long label: labels are 1 to 63 characters between dots"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*')))
        {
            return Err(format!(
                "`{text}` has `{c}`: a name or glob holds letters, digits, `-`, `_`, `.` and `*`"
            ));
        }
    }
    Ok(name)
}

/// The resolvers of a resolv.conf's text: its `nameserver` addresses, in order, once each
/// (link-local ones with a `%zone` are skipped).
pub fn resolvers_of(text: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        if let Some(ip) = words.next().and_then(|w| w.parse().ok())
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

/// The resolvers this process's view of [`RESOLV_CONF`] names (with `inside:`, the view of the
/// process the namespace was entered through: [`crate::fault::inside::files_root`]); an error
/// when there are none.
pub fn read_resolvers() -> Result<Vec<IpAddr>, FaultError> {
    let root = crate::fault::inside::files_root();
    let file = root.join(RESOLV_CONF.trim_start_matches('/'));
    let shown = file.display();
    let text = std::fs::read_to_string(&file)
        .map_err(|err| net_error(KIND, format!("cannot read {shown}: {err}")))?;
    let found = resolvers_of(&text);
    if found.is_empty() {
        return Err(net_error(
            KIND,
            format!("{shown} names no nameserver, so there are no queries to redirect"),
        ));
    }
    Ok(found)
}

/// The rules of the redirect chain: our own marked packets return, then each resolver's UDP and
/// TCP queries to its ports, while the gate is open.
pub fn rules(ports: &[Ports]) -> Vec<String> {
    let mut out = vec![format!("meta mark {:#x} return", dns_responder::MARK)];
    for p in ports {
        let family = if p.resolver.is_ipv4() { "ip" } else { "ip6" };
        out.push(format!(
            "{family} daddr {} udp dport @gate redirect to :{}",
            p.resolver, p.udp
        ));
        out.push(format!(
            "{family} daddr {} tcp dport @gate redirect to :{}",
            p.resolver, p.tcp
        ));
    }
    out
}

/// The conntrack zone of the UDP flows to the resolvers while the gate is closed.
pub const CLOSED_ZONE: u16 = 53053;

/// The rules that move UDP queries to the resolvers, and their answers, into [`CLOSED_ZONE`]
/// while the gate is closed (the agent died): `(output, prerouting)`, at `raw` priority, before
/// conntrack. A flow that was redirected while the gate was open keeps its NAT for as long as its
/// conntrack entry lives, which a socket that keeps querying (nginx's resolver) renews forever;
/// in another zone its packets make a new entry, which the closed gate leaves unredirected, and
/// its answers find that entry (a stateful firewall sees them as established).
pub fn zone_rules(resolvers: &[IpAddr]) -> (Vec<String>, Vec<String>) {
    let (mut out, mut inbound) = (Vec::new(), Vec::new());
    for r in resolvers {
        let family = if r.is_ipv4() { "ip" } else { "ip6" };
        let query =
            format!("{family} daddr {r} udp dport 53 udp dport != @gate ct zone set {CLOSED_ZONE}");
        let answer =
            format!("{family} saddr {r} udp sport 53 udp sport != @gate ct zone set {CLOSED_ZONE}");
        out.push(query);
        // A resolver on this host answers through `output` (where loopback packets get their
        // conntrack entry); one elsewhere through `prerouting`.
        out.push(answer.clone());
        inbound.push(answer);
    }
    (out, inbound)
}

/// The table's script: the gate set, the `nat` chain at `output` (before `dstnat`'s usual
/// priority, so a redirect of the host's own is not in the way), and the chains of
/// [`zone_rules`].
pub fn script(table: &str, rules: &[String], resolvers: &[IpAddr]) -> String {
    let chain = |name: &str, head: &str, rules: &[String]| {
        let mut c = format!("  chain {name} {{\n    {head}\n");
        for rule in rules {
            c.push_str(&format!("    {rule}\n"));
        }
        c.push_str("  }\n");
        c
    };
    let (zone_out, zone_in) = zone_rules(resolvers);
    let mut s = format!("table inet {table} {{\n  {}\n", gate::declaration());
    s.push_str(&chain(
        "dns_out",
        "type nat hook output priority -100; policy accept;",
        rules,
    ));
    s.push_str(&chain(
        "dns_zone_out",
        "type filter hook output priority raw; policy accept;",
        &zone_out,
    ));
    s.push_str(&chain(
        "dns_zone_in",
        "type filter hook prerouting priority raw; policy accept;",
        &zone_in,
    ));
    s.push_str("}\n");
    s
}

/// Starts the responder, then the redirect to it, then the gate; reads back the table. On error
/// the caller reverts (which stops whatever was started).
fn inject(spec: &DnsSpec, table: &str, resolvers: &[IpAddr]) -> Result<Injected, FaultError> {
    // The responder listens before anything is redirected to it.
    let ports = dns_responder::start(table, resolvers, Rule::of(spec))
        .map_err(|r| net_error(KIND, format!("cannot start the responder: {r}")))?;
    let rules = rules(&ports);
    let _ = run("nft", &["delete", "table", "inet", table], None);
    run("nft", &["-f", "-"], Some(&script(table, &rules, resolvers))).map_err(|reason| {
        net_error(KIND, format!("failed to install table `{table}`: {reason}"))
    })?;
    gate::start(table, DNS_PORT)
        .map_err(|r| net_error(KIND, format!("cannot open the gate: {r}")))?;
    // A socket that already sent to a resolver (nginx's, a caching daemon's) has a conntrack
    // entry that NAT never sees again: forgotten, its next query is redirected too.
    let flushed = forget_flows(resolvers);

    let mut diffs = Vec::new();
    match run("nft", &["list", "table", "inet", table], None) {
        Ok(listed) => {
            for p in &ports {
                for port in [p.udp, p.tcp] {
                    if !listed.contains(&format!("redirect to :{port}")) {
                        diffs.push(format!("no redirect to port {port} in the table"));
                    }
                }
            }
            if !listed.contains("elements = { 53") {
                diffs.push("the gate holds no element".to_string());
            }
        }
        Err(reason) => diffs.push(reason),
    }
    if !dns_responder::is_running(table) {
        diffs.push("the responder is not running".to_string());
    }
    let redirected: Vec<String> = ports
        .iter()
        .map(|p| {
            let lo = if p.resolver.is_ipv4() {
                "127.0.0.1"
            } else {
                "[::1]"
            };
            format!("{} to {lo}:{}/udp :{}/tcp", p.resolver, p.udp, p.tcp)
        })
        .collect();
    let mut detail = format!(
        "{} for {}; other names relayed to the resolver; queries to {} redirected by table inet {table}, gated on an element renewed every {}s that expires {}s after the agent stops",
        answer_and_delay(spec),
        spec.names.join(", "),
        redirected.join(", "),
        gate::RENEW_EVERY.as_secs(),
        gate::GATE_TIMEOUT.as_secs()
    );
    if let Err(reason) = flushed {
        detail.push_str(&format!(
            "; sockets that had already queried keep their way until idle ({reason})"
        ));
    }
    if !diffs.is_empty() {
        detail.push_str(&format!("; read back: {}", diffs.join(", ")));
    }
    Ok(Injected {
        mechanism: "nft redirect".to_string(),
        affected: resolvers
            .iter()
            .map(|r| format!("DNS queries to {r} (udp and tcp port 53)"))
            .collect(),
        verified: diffs.is_empty(),
        detail,
        undo: None,
    })
}

/// `nxdomain`, `real answers 300ms late`, `address 10.9.9.9 (TTL 5s) 300ms late`.
fn answer_and_delay(spec: &DnsSpec) -> String {
    let mut s = match spec.answer {
        None => "real answers".to_string(),
        Some(DnsAnswer::Address(ip)) => {
            format!("address {ip} (TTL {}s)", dns_responder::ANSWER_TTL)
        }
        Some(answer) => answer_words(answer),
    };
    if let Some(delay) = spec.delay {
        s.push_str(&format!(" {}ms late", delay.as_millis()));
    }
    s
}

/// Deletes the conntrack entries of UDP flows to `resolvers`' port 53 (`conntrack -D`), so that
/// the next packet of each is routed (and NATed, or not) afresh. `Err` with the reason when that
/// cannot be done here.
pub fn forget_flows(resolvers: &[IpAddr]) -> Result<(), String> {
    for r in resolvers {
        let family = if r.is_ipv4() { "ipv4" } else { "ipv6" };
        let ip = r.to_string();
        let args = [
            "-D",
            "-f",
            family,
            "-p",
            "udp",
            "--orig-dst",
            &ip,
            "--orig-port-dst",
            "53",
        ];
        match run("conntrack", &args, None) {
            // Exit 1 with "0 flow entries have been deleted" is fine.
            Ok(_) => {}
            Err(reason) if reason.contains("0 flow entries") => {}
            Err(reason) if reason.contains("not installed") => {
                return Err(format!("{reason}; apt-get install conntrack"));
            }
            Err(reason) => return Err(reason),
        }
    }
    Ok(())
}

/// Stops the gate's renewer and the responder (if they run in this process), deletes the table,
/// checks it is gone, and forgets the redirected flows to `resolvers` (a socket that queried
/// through the redirect would else keep sending to the responder's closed port until idle); the
/// detail says how many queries the responder faulted and relayed.
pub fn revert(table: &str, resolvers: &[IpAddr]) -> Result<Undone, FaultError> {
    let renewals = gate::stop(table);
    // The redirect goes first, so that no query is sent to a responder that has stopped.
    let deleted = filter::delete_table(table);
    let answered = dns_responder::stop(table);
    let mut done = vec![
        deleted
            .map_err(|reason| net_error(KIND, reason))?
            .to_string(),
    ];
    done.push(match answered {
        Some(s) => {
            let mut text = format!(
                "the responder faulted {} queries for matching names and relayed {} others to the resolver",
                s.faulted, s.passed
            );
            if s.upstream_failed > 0 {
                text.push_str(&format!(" ({} unanswered there)", s.upstream_failed));
            }
            if s.dropped > 0 {
                text.push_str(&format!("; {} dropped while busy", s.dropped));
            }
            text
        }
        None => "no responder of it ran in this process (it ended with the agent that injected it)"
            .to_string(),
    });
    if let Err(reason) = forget_flows(resolvers) {
        done.push(format!(
            "sockets that queried through it keep sending to the responder's closed port until idle ({reason})"
        ));
    }
    if let Some(g) = renewals
        && g.lapses > 0
    {
        done.push(format!(
            "the gate lapsed {} times (renewed {} times)",
            g.lapses, g.renewals
        ));
    }
    Ok(Undone {
        verified: true,
        detail: done.join("; "),
    })
}

/// Whether the responder of `table` runs in this process.
pub fn responder_running(table: &str) -> bool {
    dns_responder::is_running(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(names: &[&str], answer: Option<DnsAnswer>, delay: Option<u64>) -> DnsSpec {
        DnsSpec {
            names: names.iter().map(|n| n.to_string()).collect(),
            answer,
            delay: delay.map(Duration::from_millis),
            inside: None,
        }
    }

    #[test]
    fn resolvers_come_from_nameserver_lines_once_each() {
        let text = "# generated\nsearch lab\nnameserver 10.0.0.2\nnameserver  fd00::53 \nnameserver 10.0.0.2\nnameserver fe80::1%eth0\noptions ndots:1\n";
        assert_eq!(
            resolvers_of(text),
            vec![
                "10.0.0.2".parse::<IpAddr>().unwrap(),
                "fd00::53".parse().unwrap()
            ]
        );
        assert!(resolvers_of("search lab\n").is_empty());
    }

    #[test]
    fn the_chain_exempts_our_mark_then_redirects_each_resolver_while_gated() {
        let ports = [
            Ports {
                resolver: "10.0.0.2".parse().unwrap(),
                udp: 40001,
                tcp: 40002,
            },
            Ports {
                resolver: "fd00::53".parse().unwrap(),
                udp: 40003,
                tcp: 40004,
            },
        ];
        let r = rules(&ports);
        assert_eq!(
            r,
            [
                "meta mark 0xc4a0d45 return",
                "ip daddr 10.0.0.2 udp dport @gate redirect to :40001",
                "ip daddr 10.0.0.2 tcp dport @gate redirect to :40002",
                "ip6 daddr fd00::53 udp dport @gate redirect to :40003",
                "ip6 daddr fd00::53 tcp dport @gate redirect to :40004",
            ]
        );
        let resolvers = [ports[0].resolver, ports[1].resolver];
        let s = script("chaos_ab", &r, &resolvers);
        assert!(s.starts_with("table inet chaos_ab {\n  set gate { type inet_service; flags timeout; }\n  chain dns_out {\n    type nat hook output priority -100;"));
        assert!(s.contains("    meta mark 0xc4a0d45 return\n    ip daddr 10.0.0.2 udp"));
        assert!(s.contains("  chain dns_zone_out {\n    type filter hook output priority raw; policy accept;\n    ip daddr 10.0.0.2 udp dport 53 udp dport != @gate ct zone set 53053\n    ip saddr 10.0.0.2 udp sport 53 udp sport != @gate ct zone set 53053\n    ip6 daddr fd00::53 udp dport 53"));
        assert!(s.contains("  chain dns_zone_in {\n    type filter hook prerouting priority raw; policy accept;\n    ip saddr 10.0.0.2 udp sport 53 udp sport != @gate ct zone set 53053\n    ip6 saddr fd00::53 udp sport 53 udp sport != @gate ct zone set 53053\n  }\n}\n"));
    }

    #[test]
    fn keys_are_checked_with_reasons() {
        assert_eq!(parse_name_glob("DB.Internal."), Ok("db.internal".into()));
        assert_eq!(parse_name_glob("*.svc.local"), Ok("*.svc.local".into()));
        for (bad, says) in [
            ("", "not a DNS name"),
            ("a..b", "empty or too long label"),
            ("db internal", "has ` `"),
            ("db/x", "has `/`"),
        ] {
            let err = parse_name_glob(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(
            check_keys(&spec(&[], Some(DnsAnswer::Nxdomain), None))
                .unwrap_err()
                .contains("names is empty")
        );
        assert!(
            check_keys(&spec(&["a"], None, None))
                .unwrap_err()
                .contains("an `answer`, a `delay`")
        );
        assert!(
            check_keys(&spec(&["a"], None, Some(61_000)))
                .unwrap_err()
                .contains("outside")
        );
        assert_eq!(
            check_keys(&spec(&["a"], Some(DnsAnswer::Nxdomain), Some(300))),
            Ok(())
        );
    }

    #[test]
    fn plans_name_a_table_per_fault_and_summaries_say_what_is_answered() {
        assert_eq!(
            spec(
                &["db.internal", "*.svc.local"],
                Some(DnsAnswer::Nxdomain),
                None
            )
            .to_string(),
            "dns nxdomain for db.internal, *.svc.local"
        );
        assert_eq!(
            spec(&["db.internal"], None, Some(300)).to_string(),
            "dns real answers 300ms late for db.internal"
        );
        assert_eq!(
            spec(
                &["db.internal"],
                Some(DnsAnswer::Address("10.9.9.9".parse().unwrap())),
                Some(50)
            )
            .to_string(),
            "dns address 10.9.9.9 50ms late for db.internal"
        );
    }
}
