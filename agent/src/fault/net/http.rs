//! `http`: requests arriving for a server's `port` on this host pass through the agent, which
//! answers a share of the matching ones with a status (`abort`) or passes them on late (`delay`).
//!
//! An nftables table of the fault (`table inet chaos_<short id>`, nat chains at prerouting, for
//! other hosts, and at output, for this one) redirects new TCP connections to `port` to the
//! agent's [`proxy`](super::proxy), which reads each connection's original destination and serves
//! it with hyper towards the server. The proxy's own connections carry a socket mark
//! ([`proxy::MARK`]) that the chains let through first. The redirect matches only while the
//! table's [`gate`] holds the port, an element the agent renews every second with a 2 s kernel
//! timeout: when the agent dies, connections go straight to the server again within 2 s.
//!
//! NAT is decided on a connection's first packet, so connections opened before the fault keep
//! going to the server directly, and those the proxy took keep going to it until they close (a
//! revert gives them [`proxy::GRACE`] to finish the request under way).
//!
//! Preflight refuses port 22, the agent's own port, a port nobody listens on, and one that does not
//! answer a plain HTTP/1.1 `HEAD /` (TLS, h2 only, another protocol).

use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::filter::{self, TableDeleted};
use super::{Context, gate, net_error, proxy, run};
use crate::error::FaultError;
use crate::fault::{Injected, Kind, Resolved, Undo, Undone, other_kinds_undo, supported};
use crate::server::policy::{Policy, Refusal};
use crate::spec::{FaultKind, HttpAction, HttpSpec, MAX_HOLD};

const KIND: FaultKind = FaultKind::Http;

/// How long the preflight waits for the server's answer to `HEAD /`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The ports this process serves on (the agent's API): an `http` fault never redirects them.
static OWN_PORTS: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// Records that this process serves on `port`, which `http` faults then refuse.
pub fn note_own_port(port: u16) {
    let mut ports = OWN_PORTS.lock().unwrap_or_else(PoisonError::into_inner);
    if !ports.contains(&port) {
        ports.push(port);
    }
}

fn is_own_port(port: u16) -> bool {
    OWN_PORTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&port)
}

impl Kind for HttpSpec {
    /// nftables' nat redirect and a proxy in the agent ([`super::detect`] finds nftables).
    fn support() -> Result<&'static str, &'static str> {
        match &super::detect::host().nft {
            Ok(()) => Ok("proxy"),
            Err(reason) => Err(reason.as_str()),
        }
    }

    fn check(&self, _at: &Resolved) -> Result<(), FaultError> {
        supported(KIND)?;
        self.check_values()?;
        let listening = listeners(self.port);
        let Some(addr) = listening.first() else {
            return Err(net_error(
                KIND,
                format!(
                    "nothing listens on TCP port {} on this host; the server must be up at preflight",
                    self.port
                ),
            ));
        };
        probe_http(self.port, *addr)
    }

    fn plan(&self, fault_id: &str, seed: u64, _at: &Resolved) -> Result<Undo, FaultError> {
        supported(KIND)?;
        self.check_values()?;
        Ok(Undo::Http {
            table: format!("chaos_{}", super::short_id(fault_id)),
            port: self.port,
            seed,
        })
    }

    fn inject(&self, _fault_id: &str, undo: &Undo, ctx: &Context) -> Result<Injected, FaultError> {
        let Undo::Http { table, port, seed } = undo else {
            return Err(other_kinds_undo(KIND));
        };
        if let Some(e) = ctx.exempt.iter().find(|e| e.local_port == *port) {
            return Err(net_error(
                KIND,
                format!(
                    "port {} is where this agent serves its controller (from {}); an `http` fault never redirects it",
                    e.local_port, e.peer
                ),
            ));
        }
        inject(self, table, *port, *seed)
    }

    fn check_policy(&self, policy: &Policy, _at: &Resolved) -> Result<(), Refusal> {
        policy.check_http(self)
    }
}

impl fmt::Display for HttpSpec {
    /// `http port 8080: abort 503 for 30% of GET requests to /api`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http port {}: ", self.port)?;
        match self.action {
            HttpAction::Abort { status } => write!(f, "abort {status}")?,
            HttpAction::Delay { delay } => write!(f, "delay {}ms", delay.as_millis())?,
        }
        write!(f, " for {}% of ", self.share)?;
        if !self.methods.is_empty() {
            write!(f, "{} ", self.methods.join(", "))?;
        }
        f.write_str("requests")?;
        if !self.paths.is_empty() {
            write!(f, " to {}", self.paths.join(", "))?;
        }
        if let Some(inside) = &self.inside {
            write!(f, ", inside the network namespaces of {inside}")?;
        }
        Ok(())
    }
}

impl HttpSpec {
    /// What can be checked without looking at the host (but for the agent's own port).
    fn check_values(&self) -> Result<(), FaultError> {
        let bad = |reason: String| Err(net_error(KIND, reason));
        match self.port {
            0 => return bad("port 0 cannot be redirected; give the server's port".into()),
            22 => {
                return bad(
                    "port 22 is SSH's: an `http` fault never redirects it; give the HTTP server's port"
                        .into(),
                );
            }
            p if is_own_port(p) => {
                return bad(format!(
                    "port {p} is this agent's own port: an `http` fault never redirects it"
                ));
            }
            _ => {}
        }
        if !(0.0..=100.0).contains(&self.share) || self.share.is_nan() {
            return bad(format!("share {}% is outside 0% to 100%", self.share));
        }
        match self.action {
            HttpAction::Abort { status } if !(200..=599).contains(&status) => {
                return bad(format!("status {status} is outside 200 to 599"));
            }
            HttpAction::Delay { delay } if delay > MAX_HOLD => {
                return bad(format!(
                    "delay {}ms is longer than 7 days",
                    delay.as_millis()
                ));
            }
            _ => {}
        }
        if let Some(p) = self.paths.iter().find(|p| !p.starts_with('/')) {
            return bad(format!("path `{p}` does not start with `/`"));
        }
        if let Some(m) = self.methods.iter().find(|m| !is_token(m)) {
            return bad(format!("method `{m}` is not an HTTP method name"));
        }
        Ok(())
    }
}

/// An HTTP token (method names are tokens), upper case as methods are written.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || "!#$%&'*+-.^_`|~".contains(c))
}

/// The addresses something listens on at TCP `port` in this thread's network namespace, from
/// `/proc/thread-self/net/tcp{,6}`: IPv4 first.
pub fn listeners(port: u16) -> Vec<SocketAddr> {
    let mut found = Vec::new();
    for (file, v6) in [("tcp", false), ("tcp6", true)] {
        let text =
            std::fs::read_to_string(format!("/proc/thread-self/net/{file}")).unwrap_or_default();
        found.extend(parse_listeners(&text, v6, port));
    }
    found
}

/// The LISTEN (state `0A`) sockets of `port` in a `/proc/net/tcp` or `tcp6` table.
fn parse_listeners(text: &str, v6: bool, port: u16) -> Vec<SocketAddr> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let local = words.nth(1)?;
            let state = words.nth(1)?;
            if state != "0A" {
                return None;
            }
            let (addr, p) = local.split_once(':')?;
            if u16::from_str_radix(p, 16).ok()? != port {
                return None;
            }
            let ip = if v6 {
                if addr.len() != 32 {
                    return None;
                }
                let mut bytes = [0u8; 16];
                for (i, word) in (0..4).map(|i| &addr[i * 8..i * 8 + 8]).enumerate() {
                    let w = u32::from_str_radix(word, 16).ok()?;
                    bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
                }
                IpAddr::V6(Ipv6Addr::from(bytes))
            } else {
                let w = u32::from_str_radix(addr, 16).ok()?;
                IpAddr::V4(Ipv4Addr::from(w.to_le_bytes()))
            };
            Some(SocketAddr::new(ip, port))
        })
        .collect()
}

/// Sends `HEAD / HTTP/1.1` to the server listening at `addr` (a wildcard address: over
/// loopback) and requires an `HTTP/1.x` status line back.
fn probe_http(port: u16, addr: SocketAddr) -> Result<(), FaultError> {
    let target = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        _ => addr,
    };
    let fail = |reason: String| Err(net_error(KIND, reason));
    let mut stream = match TcpStream::connect_timeout(&target, PROBE_TIMEOUT) {
        Ok(s) => s,
        Err(err) => return fail(format!("cannot connect to {target} to check it: {err}")),
    };
    let _ = stream.set_read_timeout(Some(PROBE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(PROBE_TIMEOUT));
    let host = match target {
        SocketAddr::V6(v6) => format!("[{}]:{port}", v6.ip()),
        SocketAddr::V4(v4) => v4.to_string(),
    };
    let request = format!(
        "HEAD / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: chaos-agent-preflight\r\nConnection: close\r\n\r\n"
    );
    if let Err(err) = stream.write_all(request.as_bytes()) {
        return fail(format!("cannot send a request to {target}: {err}"));
    }
    let mut head = [0u8; 16];
    let mut got = 0;
    while got < 8 {
        match stream.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return fail(format!(
                    "port {port} did not answer `HEAD / HTTP/1.1` within {}s: an `http` fault needs a plain HTTP/1.1 server there",
                    PROBE_TIMEOUT.as_secs()
                ));
            }
            Err(err) => {
                return fail(format!("port {port} broke off the check: {err}"));
            }
        }
    }
    judge_answer(port, &head[..got])
}

/// Whether the first bytes of an answer to `HEAD /` are plain HTTP/1.x's, and what they look like
/// when not.
fn judge_answer(port: u16, head: &[u8]) -> Result<(), FaultError> {
    if head.starts_with(b"HTTP/1.") {
        return Ok(());
    }
    let reason = match head.first() {
        None => format!(
            "port {port} closed the connection without answering `HEAD / HTTP/1.1`: an `http` fault needs a plain HTTP/1.1 server there"
        ),
        Some(0x15 | 0x16) => format!(
            "port {port} answers TLS, not plain HTTP/1.1: an `http` fault cannot see into TLS (fault the plain-HTTP server behind it)"
        ),
        Some(_) if head.len() >= 4 && matches!(head[3], 0x04 | 0x07) => format!(
            "port {port} answers HTTP/2 only, not HTTP/1.1: an `http` fault passes only HTTP/1.1"
        ),
        Some(_) => format!(
            "port {port} does not answer plain HTTP/1.1 (its answer to `HEAD /` began with `{}`): an `http` fault needs an HTTP/1.1 server there",
            String::from_utf8_lossy(head).escape_debug()
        ),
    };
    Err(net_error(KIND, reason))
}

/// The table's script: the gate, then the two nat chains. `ipv6`: the proxy listens on IPv6 too
/// (else only IPv4 is redirected).
pub fn script(table: &str, proxy_port: u16, ipv6: bool) -> String {
    let (pre, out) = rules(proxy_port, ipv6);
    let body = |rules: &[String]| {
        rules
            .iter()
            .map(|r| format!("    {r}\n"))
            .collect::<String>()
    };
    format!(
        "table inet {table} {{\n  {}\n  chain prerouting {{\n    type nat hook prerouting priority dstnat - 5; policy accept;\n{}  }}\n  chain output {{\n    type nat hook output priority -105; policy accept;\n{}  }}\n}}\n",
        gate::declaration(),
        body(&pre),
        body(&out)
    )
}

/// The rules of the prerouting chain (connections from other hosts to one of ours) and of the
/// output chain (from this host to itself, which goes through `lo`).
pub fn rules(proxy_port: u16, ipv6: bool) -> (Vec<String>, Vec<String>) {
    let family = if ipv6 { "" } else { "meta nfproto ipv4 " };
    let mark = format!("meta mark {:#x} return", proxy::MARK);
    (
        vec![
            mark.clone(),
            format!("{family}fib daddr type local tcp dport @gate redirect to :{proxy_port}"),
        ],
        vec![
            mark,
            format!("{family}oifname \"lo\" tcp dport @gate redirect to :{proxy_port}"),
        ],
    )
}

fn inject(spec: &HttpSpec, table: &str, port: u16, seed: u64) -> Result<Injected, FaultError> {
    let rules = proxy::Rules {
        action: spec.action,
        share: spec.share,
        paths: spec.paths.clone(),
        methods: spec.methods.clone(),
        seed,
    };
    // The proxy first: a redirect never points at nothing.
    let (proxy_port, ipv6) = proxy::start(table, rules).map_err(|r| net_error(KIND, r))?;
    let _ = run("nft", &["delete", "table", "inet", table], None);
    run("nft", &["-f", "-"], Some(&script(table, proxy_port, ipv6))).map_err(|reason| {
        net_error(KIND, format!("failed to install table `{table}`: {reason}"))
    })?;
    gate::start(table, port)
        .map_err(|reason| net_error(KIND, format!("cannot open the gate: {reason}")))?;

    let mut diffs = Vec::new();
    match run("nft", &["list", "table", "inet", table], None) {
        Ok(listed) => {
            let redirects = listed
                .matches(&format!("redirect to :{proxy_port}"))
                .count();
            if redirects != 2 {
                diffs.push(format!("{redirects} redirect rules instead of 2"));
            }
            if !gate_holds(&listed, port) {
                diffs.push(format!("the gate does not hold port {port}"));
            }
        }
        Err(reason) => diffs.push(reason),
    }
    if !proxy::is_running(table) {
        diffs.push("the proxy stopped".to_string());
    }
    if !gate::is_running(table) {
        diffs.push("the gate's renewer stopped".to_string());
    }
    let mut detail = format!(
        "new connections to tcp port {port} (from other hosts and this one, IPv4{}) redirected by table inet {table} to the agent's proxy on port {proxy_port}, gated by an element renewed every {}s that the kernel expires after {}s; {spec}; connections opened before keep going to the server directly",
        if ipv6 { " and IPv6" } else { "" },
        gate::RENEW_EVERY.as_secs(),
        gate::GATE_TIMEOUT.as_secs()
    );
    if !diffs.is_empty() {
        detail.push_str(&format!("; read back: {}", diffs.join(", ")));
    }
    Ok(Injected {
        mechanism: "proxy".to_string(),
        affected: vec![format!("tcp port {port} on this host")],
        verified: diffs.is_empty(),
        detail,
        undo: None,
    })
}

/// Whether `nft list table`'s text shows the gate holding `port`.
fn gate_holds(listed: &str, port: u16) -> bool {
    listed
        .split("set gate")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .is_some_and(|set| {
            set.split(|c: char| !c.is_ascii_digit())
                .any(|w| w == port.to_string())
                && set.contains("elements")
        })
}

/// Stops the gate's renewer, deletes the table (new connections go to the server directly), then
/// stops the proxy, whose open connections get [`proxy::GRACE`] to finish; says what the proxy
/// did and checks the table is gone.
pub fn revert(table: &str, port: u16) -> Result<Undone, FaultError> {
    let renewals = gate::stop(table);
    let mut done = Vec::new();
    let mut problems = Vec::new();
    match filter::delete_table(table) {
        Ok(TableDeleted::Now(_)) => done.push(format!(
            "the redirect of tcp port {port} (table inet {table}) deleted"
        )),
        Ok(gone) => done.push(gone.to_string()),
        Err(reason) => problems.push(reason),
    }
    match proxy::stop(table) {
        Some(stats) => done.push(format!("the proxy passed {}", stats.summary())),
        None => done.push("no proxy of it ran in this process".to_string()),
    }
    if let Some(s) = renewals
        && s.lapses > 0
    {
        done.push(format!(
            "the gate lapsed {} time(s) (the host was too busy to renew it)",
            s.lapses
        ));
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

    fn spec(port: u16) -> HttpSpec {
        HttpSpec {
            port,
            action: HttpAction::Abort { status: 503 },
            share: 30.0,
            paths: vec!["/api".into()],
            methods: vec!["GET".into()],
            inside: None,
        }
    }

    #[test]
    fn the_summary_says_what_and_which_requests() {
        assert_eq!(
            spec(8080).to_string(),
            "http port 8080: abort 503 for 30% of GET requests to /api"
        );
        let delay = HttpSpec {
            action: HttpAction::Delay {
                delay: Duration::from_millis(200),
            },
            share: 100.0,
            paths: Vec::new(),
            methods: Vec::new(),
            ..spec(80)
        };
        assert_eq!(
            delay.to_string(),
            "http port 80: delay 200ms for 100% of requests"
        );
    }

    #[test]
    fn ssh_own_and_odd_values_are_refused_before_the_host_is_looked_at() {
        let says = |s: HttpSpec| s.check_values().unwrap_err().to_string();
        assert!(says(spec(22)).contains("SSH"));
        assert!(says(spec(0)).contains("port 0"));
        note_own_port(7411);
        assert!(says(spec(7411)).contains("agent's own port"));
        let status = HttpSpec {
            action: HttpAction::Abort { status: 101 },
            ..spec(80)
        };
        assert!(says(status).contains("outside 200 to 599"));
        let path = HttpSpec {
            paths: vec!["api".into()],
            ..spec(80)
        };
        assert!(says(path).contains("does not start with `/`"));
        let method = HttpSpec {
            methods: vec!["GET POST".into()],
            ..spec(80)
        };
        assert!(says(method).contains("not an HTTP method"));
        assert!(spec(8080).check_values().is_ok());
    }

    #[test]
    fn plans_name_the_table_and_carry_the_seed() {
        if HttpSpec::support().is_err() {
            return;
        }
        let undo = spec(8080)
            .plan("run-1.step-1.fault-0", 42, &Resolved::default())
            .unwrap();
        assert_eq!(
            undo,
            Undo::Http {
                table: format!("chaos_{}", super::super::short_id("run-1.step-1.fault-0")),
                port: 8080,
                seed: 42
            }
        );
    }

    #[test]
    fn the_table_gates_both_redirects_and_lets_the_proxy_through_first() {
        let text = script("chaos_ab12", 40123, true);
        assert_eq!(
            text,
            "table inet chaos_ab12 {\n  set gate { type inet_service; flags timeout; }\n  chain prerouting {\n    type nat hook prerouting priority dstnat - 5; policy accept;\n    meta mark 0x63687470 return\n    fib daddr type local tcp dport @gate redirect to :40123\n  }\n  chain output {\n    type nat hook output priority -105; policy accept;\n    meta mark 0x63687470 return\n    oifname \"lo\" tcp dport @gate redirect to :40123\n  }\n}\n"
        );
        let (pre, out) = rules(40123, false);
        assert!(pre[1].starts_with("meta nfproto ipv4 fib"));
        assert!(out[1].starts_with("meta nfproto ipv4 oifname"));
    }

    #[test]
    fn listeners_parse_from_proc() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   1: 0200FE0A:1F90 0300FE0A:D431 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n   2: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0\n";
        assert_eq!(
            parse_listeners(tcp, false, 8080),
            ["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            parse_listeners(tcp, false, 80),
            ["0.0.0.0:80".parse::<SocketAddr>().unwrap()]
        );
        assert!(parse_listeners(tcp, false, 443).is_empty());
        let tcp6 = "  sl  local_address                         remote_address                        st\n   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1\n";
        assert_eq!(
            parse_listeners(tcp6, true, 8080),
            ["[::1]:8080".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn answers_are_judged_by_their_first_bytes() {
        assert!(judge_answer(80, b"HTTP/1.1 200 OK\r\n").is_ok());
        assert!(judge_answer(80, b"HTTP/1.0 400 Bad").is_ok());
        let says = |head: &[u8]| judge_answer(443, head).unwrap_err().to_string();
        assert!(says(&[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x32]).contains("TLS"));
        assert!(says(&[0, 0, 0x12, 0x04, 0, 0, 0, 0, 0]).contains("HTTP/2"));
        assert!(says(b"").contains("without answering"));
        assert!(says(b"+PONG\r\n").contains("does not answer plain HTTP/1.1"));
    }

    #[test]
    fn the_gate_is_read_back_from_the_listing() {
        let listed = "table inet chaos_x {\n\tset gate {\n\t\ttype inet_service\n\t\tflags timeout\n\t\telements = { 8080 timeout 2s expires 1s998ms }\n\t}\n}\n";
        assert!(gate_holds(listed, 8080));
        assert!(!gate_holds(listed, 80));
        assert!(!gate_holds(
            "table inet chaos_x {\n\tset gate {\n\t\ttype inet_service\n\t}\n}",
            8080
        ));
    }
}
