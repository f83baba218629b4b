//! The responder behind `dns`: loopback sockets (UDP and TCP, one pair per resolver of the host)
//! that the fault's redirect sends this host's DNS queries to. A query for a matching name gets
//! the fault's answer (built with `hickory-proto`), or its real answer late; any other query is
//! relayed unchanged to the resolver it was sent to (the port it arrived on says which) from a
//! socket marked [`MARK`], which the redirect lets through.
//!
//! One poller thread per fault waits on the listening sockets (and a pipe that wakes it to stop);
//! each query or TCP connection is then served on a short-lived thread of its own, so a late or
//! unanswered query holds up no other. Threads inherit the network namespace of the thread that
//! creates them, and sockets belong to the namespace they were created in: [`start`] binds on
//! the calling (injecting) thread.
//!
//! Stopping wakes the poller, which returns; the query threads see the stop flag within
//! [`SLICE`], answer nothing more and end, and with them the last references to the sockets.

// The responder is real OS threads on the real clock, which tokio's paused clock has no say over.
#![allow(clippy::disallowed_types)]

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::registry::{Registry, Worker};
use crate::spec::{DnsAnswer, DnsSpec};

/// The mark (`SO_MARK`) of the responder's own sockets to the resolvers: the redirect returns
/// packets that carry it, so they reach the real resolver.
pub const MARK: u32 = 0x0c4a_0d45;

/// The TTL of the records of an `address` answer, in seconds: short, so that caches forget them
/// soon after the fault.
pub const ANSWER_TTL: u32 = 5;

/// How long the responder waits for a resolver's answer to a query it relays.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a TCP connection from a client may stay idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Queries (and TCP connections) served at once at most; more are dropped (the client retries).
const MAX_IN_FLIGHT: usize = 512;

/// How often a waiting query thread looks at the stop flag.
const SLICE: Duration = Duration::from_millis(100);

/// Responders alive in this process, by the nft table of their fault.
static RESPONDERS: Registry<Responder> = Registry::new();

/// What a matching query gets, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub names: Vec<String>,
    pub answer: Option<DnsAnswer>,
    pub delay: Option<Duration>,
}

impl Rule {
    pub fn of(spec: &DnsSpec) -> Rule {
        Rule {
            names: spec.names.clone(),
            answer: spec.answer,
            delay: spec.delay,
        }
    }

    /// Whether `name` (any case, trailing dot or not) matches one of the globs.
    pub fn matches(&self, name: &str) -> bool {
        let name = normalize(name);
        self.names.iter().any(|glob| glob_match(glob, &name))
    }
}

/// Lowercase, without the trailing dot.
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `text` matches `glob`, where `*` stands for any run of characters (dots too) and
/// everything else for itself.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let (g, t) = (glob.as_bytes(), text.as_bytes());
    let (mut gi, mut ti) = (0, 0);
    let mut back: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() && g[gi] == b'*' {
            back = Some((gi, ti));
            gi += 1;
        } else if gi < g.len() && g[gi] == t[ti] {
            gi += 1;
            ti += 1;
        } else if let Some((bg, bt)) = back {
            gi = bg + 1;
            ti = bt + 1;
            back = Some((bg, bt + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&c| c == b'*')
}

/// What to do with one query.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this answer, after `late`.
    Reply {
        bytes: Vec<u8>,
        late: Option<Duration>,
    },
    /// Answer nothing (`timeout`).
    Silent,
    /// Relay it to the resolver and its answer back, after `late`; `faulted` when the name
    /// matched (`delay` alone).
    Relay {
        late: Option<Duration>,
        faulted: bool,
    },
}

impl Action {
    fn faulted(&self) -> bool {
        match self {
            Action::Reply { .. } | Action::Silent => true,
            Action::Relay { faulted, .. } => *faulted,
        }
    }
}

/// Decides what `query` (a DNS message as received) gets under `rule`. A message that does not
/// parse as a query is relayed untouched.
pub fn decide(query: &[u8], rule: &Rule) -> Action {
    let relay = Action::Relay {
        late: None,
        faulted: false,
    };
    let Ok(message) = Message::from_vec(query) else {
        return relay;
    };
    if message.metadata.message_type != MessageType::Query {
        return relay;
    }
    let Some(question) = message.queries.first() else {
        return relay;
    };
    if !rule.matches(&question.name().to_ascii()) {
        return relay;
    }
    let code = match rule.answer {
        None => {
            return Action::Relay {
                late: rule.delay,
                faulted: true,
            };
        }
        Some(DnsAnswer::Timeout) => return Action::Silent,
        Some(DnsAnswer::Nxdomain) => ResponseCode::NXDomain,
        Some(DnsAnswer::Servfail) => ResponseCode::ServFail,
        Some(DnsAnswer::Refused) => ResponseCode::Refused,
        Some(DnsAnswer::Address(_)) => ResponseCode::NoError,
    };
    let mut answer = Message::response(message.metadata.id, message.metadata.op_code);
    answer.metadata.recursion_desired = message.metadata.recursion_desired;
    answer.metadata.recursion_available = true;
    answer.metadata.checking_disabled = message.metadata.checking_disabled;
    answer.metadata.response_code = code;
    answer.add_query(question.clone());
    if let Some(DnsAnswer::Address(ip)) = rule.answer {
        let rdata = match (ip, question.query_type()) {
            (IpAddr::V4(v4), RecordType::A) => Some(RData::A(A(v4))),
            (IpAddr::V6(v6), RecordType::AAAA) => Some(RData::AAAA(AAAA(v6))),
            _ => None,
        };
        if let Some(rdata) = rdata {
            answer.add_answer(Record::from_rdata(
                question.name().clone(),
                ANSWER_TTL,
                rdata,
            ));
        }
    }
    match answer.to_vec() {
        Ok(bytes) => Action::Reply {
            bytes,
            late: rule.delay,
        },
        Err(_) => relay,
    }
}

/// Where one resolver's queries arrive: the loopback ports its redirect points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub resolver: IpAddr,
    pub udp: u16,
    pub tcp: u16,
}

/// What a responder did, for the revert's detail.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Queries for matching names (answered, delayed or left unanswered by the fault).
    pub faulted: u64,
    /// Queries relayed to the resolver as they were.
    pub passed: u64,
    /// Relayed queries the resolver did not answer (in [`UPSTREAM_TIMEOUT`]) or refused.
    pub upstream_failed: u64,
    /// Queries dropped because [`MAX_IN_FLIGHT`] were being served.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    faulted: AtomicU64,
    passed: AtomicU64,
    upstream_failed: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    fn stats(&self) -> Stats {
        Stats {
            faulted: self.faulted.load(Ordering::Relaxed),
            passed: self.passed.load(Ordering::Relaxed),
            upstream_failed: self.upstream_failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// What every thread of one responder shares.
struct Shared {
    rule: Rule,
    stop: AtomicBool,
    in_flight: AtomicUsize,
    counters: Counters,
}

struct Responder {
    wake: OwnedFd,
    poller: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Worker for Responder {
    type Stats = Stats;

    fn is_finished(&self) -> bool {
        self.poller.is_finished()
    }

    /// Waits (about a second at most) for its query threads to end, which closes its sockets.
    fn stop(self) -> Option<Stats> {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = nix::unistd::write(&self.wake, b"x");
        let _ = self.poller.join();
        let deadline = Instant::now() + SLICE * 10;
        while self.shared.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        Some(self.shared.counters.stats())
    }
}

struct Listener {
    resolver: IpAddr,
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
}

/// Binds a UDP and a TCP socket on loopback (ports the kernel picks) for each resolver, in the
/// calling thread's network namespace, and starts answering there; registered under `table`.
pub fn start(table: &str, resolvers: &[IpAddr], rule: Rule) -> Result<Vec<Ports>, String> {
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    for &resolver in resolvers {
        let local: IpAddr = match resolver {
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        };
        let udp = UdpSocket::bind((local, 0))
            .map_err(|err| format!("cannot bind a UDP socket on {local}: {err}"))?;
        let tcp = TcpListener::bind((local, 0))
            .map_err(|err| format!("cannot listen on TCP {local}: {err}"))?;
        udp.set_nonblocking(true)
            .and_then(|()| tcp.set_nonblocking(true))
            .map_err(|err| format!("cannot make the responder's sockets non-blocking: {err}"))?;
        let port = |r: io::Result<SocketAddr>| r.map(|a| a.port()).map_err(|e| e.to_string());
        ports.push(Ports {
            resolver,
            udp: port(udp.local_addr())?,
            tcp: port(tcp.local_addr())?,
        });
        listeners.push(Listener {
            resolver,
            udp: Arc::new(udp),
            tcp,
        });
    }
    let (wake_read, wake_write) = nix::unistd::pipe().map_err(|err| format!("pipe: {err}"))?;
    let shared = Arc::new(Shared {
        rule,
        stop: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        counters: Counters::default(),
    });
    let for_poller = Arc::clone(&shared);
    let poller = thread::Builder::new()
        .name("chaos-dns".to_string())
        .spawn(move || serve(&listeners, &wake_read, &for_poller))
        .map_err(|err| format!("cannot start the responder's thread: {err}"))?;
    RESPONDERS.insert(
        table,
        Responder {
            wake: wake_write,
            poller,
            shared,
        },
    );
    Ok(ports)
}

/// Whether the responder of `table` runs in this process.
pub fn is_running(table: &str) -> bool {
    RESPONDERS.is_running(table)
}

/// Stops the responder of `table` and waits (about a second at most) for its query threads to
/// end, which closes its sockets; its counts, or `None` when none runs here.
pub fn stop(table: &str) -> Option<Stats> {
    RESPONDERS.stop(table)
}

/// The poller: waits for queries and connections until woken through `wake`.
fn serve(listeners: &[Listener], wake: &OwnedFd, shared: &Arc<Shared>) {
    loop {
        let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
        for l in listeners {
            fds.push(PollFd::new(l.udp.as_fd(), PollFlags::POLLIN));
            fds.push(PollFd::new(l.tcp.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] || shared.stop.load(Ordering::SeqCst) {
            return;
        }
        for (i, l) in listeners.iter().enumerate() {
            if ready[1 + 2 * i] {
                receive_udp(l, shared);
            }
            if ready[2 + 2 * i] {
                accept_tcp(l, shared);
            }
        }
    }
}

/// Takes a place among the queries in flight; `false` (counted as dropped) when all are taken.
fn admit(shared: &Shared) -> bool {
    if shared.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    true
}

/// Runs `work` on a thread of its own that holds one place in flight.
fn detach(shared: &Arc<Shared>, work: impl FnOnce(&Shared) + Send + 'static) {
    let for_thread = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name("chaos-dns-q".to_string())
        .spawn(move || {
            work(&for_thread);
            for_thread.in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

fn receive_udp(l: &Listener, shared: &Arc<Shared>) {
    let mut buf = [0u8; 4096];
    loop {
        let (n, client) = match l.udp.recv_from(&mut buf) {
            Ok(got) => got,
            Err(_) => return, // WouldBlock: all read
        };
        if !admit(shared) {
            continue;
        }
        let query = buf[..n].to_vec();
        let socket = Arc::clone(&l.udp);
        let resolver = l.resolver;
        detach(shared, move |shared| {
            if let Some(answer) = answer(&query, resolver, shared, relay_udp) {
                let _ = socket.send_to(&answer, client);
            }
        });
    }
}

fn accept_tcp(l: &Listener, shared: &Arc<Shared>) {
    while let Ok((stream, _)) = l.tcp.accept() {
        if !admit(shared) {
            continue;
        }
        let resolver = l.resolver;
        detach(shared, move |shared| {
            let _ = serve_tcp(stream, resolver, shared);
        });
    }
}

/// Serves the queries of one TCP connection (each a 2-byte length and the message) until the
/// client closes it, stays idle for [`TCP_IDLE`], or the responder stops.
fn serve_tcp(mut stream: TcpStream, resolver: IpAddr, shared: &Shared) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    loop {
        let Some(query) = read_framed(&mut stream, TCP_IDLE, &shared.stop)? else {
            return Ok(());
        };
        if let Some(answer) = answer(&query, resolver, shared, relay_tcp) {
            write_framed(&mut stream, &answer)?;
        }
    }
}

/// The answer to `query` (after its delay), or `None` when it gets none; counted.
fn answer(
    query: &[u8],
    resolver: IpAddr,
    shared: &Shared,
    relay: fn(IpAddr, &[u8], &AtomicBool) -> io::Result<Vec<u8>>,
) -> Option<Vec<u8>> {
    let action = decide(query, &shared.rule);
    let counter = if action.faulted() {
        &shared.counters.faulted
    } else {
        &shared.counters.passed
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let (bytes, late) = match action {
        Action::Silent => return None,
        Action::Reply { bytes, late } => (bytes, late),
        Action::Relay { late, .. } => match relay(resolver, query, &shared.stop) {
            Ok(bytes) => (bytes, late),
            Err(_) => {
                shared
                    .counters
                    .upstream_failed
                    .fetch_add(1, Ordering::Relaxed);
                return None;
            }
        },
    };
    if let Some(late) = late
        && !sleep_unless_stopped(late, &shared.stop)
    {
        return None;
    }
    (!shared.stop.load(Ordering::SeqCst)).then_some(bytes)
}

/// Sleeps `total` in slices; `false` when the responder stopped meanwhile.
fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) -> bool {
    let deadline = Instant::now() + total;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        thread::sleep((deadline - now).min(SLICE));
    }
}

/// A socket to `resolver` port 53 that carries [`MARK`] from its first packet on.
fn marked(resolver: IpAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(SocketAddr::new(resolver, 53)),
        kind,
        Some(protocol),
    )?;
    socket.set_mark(MARK)?;
    Ok(socket)
}

/// Sends `query` to `resolver` over UDP from a marked socket and waits for the answer with the
/// same id (its first two bytes).
fn relay_udp(resolver: IpAddr, query: &[u8], stop: &AtomicBool) -> io::Result<Vec<u8>> {
    let socket = marked(resolver, Type::DGRAM, Protocol::UDP)?;
    socket.connect(&SockAddr::from(SocketAddr::new(resolver, 53)))?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(SLICE))?;
    socket.send(query)?;
    let deadline = Instant::now() + UPSTREAM_TIMEOUT;
    let mut buf = vec![0u8; 65_535];
    while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        match socket.recv(&mut buf) {
            Ok(n) if n >= 2 && query.len() >= 2 && buf[..2] == query[..2] => {
                return Ok(buf[..n].to_vec());
            }
            Ok(_) => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(err) => return Err(err),
        }
    }
    Err(ErrorKind::TimedOut.into())
}

/// Sends `query` to `resolver` over TCP from a marked socket and reads its answer.
fn relay_tcp(resolver: IpAddr, query: &[u8], stop: &AtomicBool) -> io::Result<Vec<u8>> {
    let socket = marked(resolver, Type::STREAM, Protocol::TCP)?;
    socket.connect_timeout(
        &SockAddr::from(SocketAddr::new(resolver, 53)),
        UPSTREAM_TIMEOUT,
    )?;
    let mut stream: TcpStream = socket.into();
    write_framed(&mut stream, query)?;
    read_framed(&mut stream, UPSTREAM_TIMEOUT, stop)?.ok_or_else(|| ErrorKind::UnexpectedEof.into())
}

fn write_framed(stream: &mut TcpStream, message: &[u8]) -> io::Result<()> {
    let len = u16::try_from(message.len()).map_err(|_| io::Error::from(ErrorKind::InvalidData))?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(message);
    stream.write_all(&framed)
}

/// Reads one length-prefixed message; `None` when the peer closed before one began, or `within`
/// passed, or the responder stopped.
fn read_framed(
    stream: &mut TcpStream,
    within: Duration,
    stop: &AtomicBool,
) -> io::Result<Option<Vec<u8>>> {
    stream.set_read_timeout(Some(SLICE))?;
    let deadline = Instant::now() + within;
    let mut len = [0u8; 2];
    if !read_exact_until(stream, &mut len, deadline, stop)? {
        return Ok(None);
    }
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    if !read_exact_until(stream, &mut message, deadline, stop)? {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    Ok(Some(message))
}

/// Fills `buf`; `false` when the peer closed first, the deadline passed or the responder stopped.
fn read_exact_until(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
    stop: &AtomicBool,
) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        if stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
            return Ok(false);
        }
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    fn query(name: &str, kind: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        m.to_vec().unwrap()
    }

    fn rule(answer: Option<DnsAnswer>, delay: Option<Duration>) -> Rule {
        Rule {
            names: vec!["db.internal".into(), "*.svc.local".into()],
            answer,
            delay,
        }
    }

    fn reply(action: Action) -> (Message, Option<Duration>) {
        match action {
            Action::Reply { bytes, late } => (Message::from_vec(&bytes).unwrap(), late),
            other => panic!("not a reply: {other:?}"),
        }
    }

    #[test]
    fn globs_match_whole_names_any_case_without_the_trailing_dot() {
        let r = rule(None, None);
        assert!(r.matches("db.internal"));
        assert!(r.matches("DB.Internal."));
        assert!(r.matches("api.svc.local"));
        assert!(r.matches("a.b.svc.local."));
        assert!(!r.matches("svc.local"));
        assert!(!r.matches("xdb.internal"));
        assert!(!r.matches("db.internal.example"));
        assert!(glob_match("*", "anything.at.all"));
        assert!(glob_match("db-*.internal", "db-2.internal"));
        assert!(!glob_match("db-*.internal", "db-2.internal.x"));
    }

    #[test]
    fn matching_names_get_the_code_and_their_question_back() {
        for (answer, code) in [
            (DnsAnswer::Nxdomain, ResponseCode::NXDomain),
            (DnsAnswer::Servfail, ResponseCode::ServFail),
            (DnsAnswer::Refused, ResponseCode::Refused),
        ] {
            let (m, late) = reply(decide(
                &query("DB.internal.", RecordType::A),
                &rule(Some(answer), None),
            ));
            assert_eq!(m.metadata.id, 0x1234);
            assert_eq!(m.metadata.message_type, MessageType::Response);
            assert_eq!(m.metadata.response_code, code);
            assert!(m.metadata.recursion_desired && m.metadata.recursion_available);
            assert_eq!(m.queries.len(), 1);
            assert!(m.answers.is_empty());
            assert_eq!(late, None);
        }
    }

    #[test]
    fn an_address_answers_its_own_type_and_leaves_the_other_empty() {
        let v4 = rule(Some(DnsAnswer::Address("10.9.9.9".parse().unwrap())), None);
        let (m, _) = reply(decide(&query("db.internal", RecordType::A), &v4));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].ttl, ANSWER_TTL);
        assert_eq!(m.answers[0].data, RData::A(A("10.9.9.9".parse().unwrap())));
        let (m, _) = reply(decide(&query("db.internal", RecordType::AAAA), &v4));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        let v6 = rule(Some(DnsAnswer::Address("fd00::9".parse().unwrap())), None);
        let (m, _) = reply(decide(&query("x.svc.local", RecordType::AAAA), &v6));
        assert_eq!(
            m.answers[0].data,
            RData::AAAA(AAAA("fd00::9".parse().unwrap()))
        );
    }

    #[test]
    fn other_names_and_garbage_are_relayed_and_delay_alone_relays_late() {
        let late = Some(Duration::from_millis(300));
        assert_eq!(
            decide(
                &query("web.internal", RecordType::A),
                &rule(Some(DnsAnswer::Nxdomain), late)
            ),
            Action::Relay {
                late: None,
                faulted: false
            }
        );
        assert_eq!(
            decide(b"\x00\x01garbage", &rule(Some(DnsAnswer::Nxdomain), None)),
            Action::Relay {
                late: None,
                faulted: false
            }
        );
        assert_eq!(
            decide(&query("db.internal", RecordType::A), &rule(None, late)),
            Action::Relay {
                late,
                faulted: true
            }
        );
        assert_eq!(
            decide(
                &query("db.internal", RecordType::A),
                &rule(Some(DnsAnswer::Timeout), None)
            ),
            Action::Silent
        );
        let (m, got) = reply(decide(
            &query("db.internal", RecordType::A),
            &rule(Some(DnsAnswer::Nxdomain), late),
        ));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(got, late);
    }
}
