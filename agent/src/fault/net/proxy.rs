//! The transparent HTTP/1.1 proxy behind `http`: connections that the fault's nftables table
//! redirected to it are served by hyper (keep-alive, bodies streamed both ways), each request
//! either answered at once (`abort`), held then passed on (`delay`), or passed on as it is. The
//! server is reached at the connection's original destination (`SO_ORIGINAL_DST`), over one
//! upstream connection per client connection, marked [`MARK`] so that the table lets it through.
//!
//! A proxy runs on an OS thread of its own with a current-thread tokio runtime, registered by its
//! fault's table like `nfqueue`'s holders, and is stopped by [`stop`], which says what it did.
//! Its listening sockets are made by [`start`] on the calling thread, so they (and the thread,
//! which inherits it, and so every upstream connection) belong to that thread's network
//! namespace.
//!
//! Nothing of a request is logged: its headers may carry credentials.

// The proxy's thread is a real OS thread on the real clock.
#![allow(clippy::disallowed_types)]

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn6, bind, getsockopt, listen, setsockopt,
    socket, sockopt,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use super::registry::{Registry, Worker};
use crate::spec::HttpAction;

/// The socket mark of the proxy's own connections to servers: the fault's table returns on it
/// before any redirect, so they reach the server itself.
pub const MARK: u32 = 0x6368_7470;

/// How long open connections may finish their requests when the proxy stops, before they are
/// closed.
pub const GRACE: Duration = Duration::from_secs(2);

/// How long a connection to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most of an aborted request's body read (so that its connection stays usable) before the
/// answer; a larger body closes the connection after the answer.
const DRAIN_LIMIT: usize = 1 << 20;

/// Which requests are hit, and what is done to them.
#[derive(Debug, Clone)]
pub struct Rules {
    pub action: HttpAction,
    /// Percent of matching requests hit.
    pub share: f64,
    /// Path prefixes; empty: every path.
    pub paths: Vec<String>,
    /// Methods; empty: every method.
    pub methods: Vec<String>,
    /// Seeds the draws: the same seed and the same order of requests hit the same requests.
    pub seed: u64,
}

impl Rules {
    /// Whether a request of `method` for `path` is one the fault is about.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && (self.paths.is_empty() || self.paths.iter().any(|p| path.starts_with(p.as_str())))
    }
}

/// Draws whether each matching request is hit.
pub struct Picker {
    share: f64,
    rng: Mutex<ChaCha8Rng>,
}

impl Picker {
    pub fn new(share: f64, seed: u64) -> Picker {
        Picker {
            share,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// The next draw: `true` for a hit. 0% and 100% draw nothing.
    pub fn hit(&self) -> bool {
        if self.share <= 0.0 {
            return false;
        }
        if self.share >= 100.0 {
            return true;
        }
        let draw: f64 = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random();
        draw * 100.0 < self.share
    }
}

/// What a proxy did, for the revert's detail and the report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Client connections redirected to it.
    pub connections: u64,
    /// Requests answered with the fault's status.
    pub aborted: u64,
    /// Requests passed on late.
    pub delayed: u64,
    /// Requests passed on untouched (not matching, or not drawn).
    pub passed: u64,
    /// Requests that failed because the server could not be reached or broke off.
    pub failed: u64,
    /// Connections to the proxy's port that no redirect sent, closed at once.
    pub strays: u64,
}

impl Stats {
    /// `120 requests: 36 aborted, 84 passed (3 connections)`.
    pub fn summary(&self) -> String {
        let total = self.aborted + self.delayed + self.passed + self.failed;
        let mut parts = Vec::new();
        if self.aborted > 0 {
            parts.push(format!("{} aborted", self.aborted));
        }
        if self.delayed > 0 {
            parts.push(format!("{} delayed", self.delayed));
        }
        parts.push(format!("{} passed", self.passed));
        if self.failed > 0 {
            parts.push(format!("{} failed to reach the server", self.failed));
        }
        let mut text = format!(
            "{total} requests: {} ({} connections",
            parts.join(", "),
            self.connections
        );
        if self.strays > 0 {
            text.push_str(&format!(", {} not redirected and closed", self.strays));
        }
        text.push(')');
        text
    }
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    aborted: AtomicU64,
    delayed: AtomicU64,
    passed: AtomicU64,
    failed: AtomicU64,
    strays: AtomicU64,
}

impl Counters {
    fn stats(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            connections: get(&self.connections),
            aborted: get(&self.aborted),
            delayed: get(&self.delayed),
            passed: get(&self.passed),
            failed: get(&self.failed),
            strays: get(&self.strays),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Shared {
    rules: Rules,
    picker: Picker,
    counters: Counters,
}

/// Proxies alive in this process, by their fault's table.
static PROXIES: Registry<Proxy> = Registry::new();

struct Proxy {
    cancel: CancellationToken,
    thread: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Worker for Proxy {
    type Stats = Stats;

    fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    fn stop(self) -> Option<Stats> {
        self.cancel.cancel();
        let _ = self.thread.join();
        Some(self.shared.counters.stats())
    }
}

/// Listens (in the calling thread's network namespace) on a port the kernel picks, on every IPv4
/// address and, where the host has IPv6, on every IPv6 address at the same port, and starts
/// proxying there under `key`. The port, and whether IPv6 is served.
pub fn start(key: &str, rules: Rules) -> Result<(u16, bool), String> {
    let v4 = listener_v4().map_err(|err| format!("cannot listen for the proxy: {err}"))?;
    let port = v4
        .local_addr()
        .map_err(|err| format!("cannot read the proxy's port: {err}"))?
        .port();
    let v6 = listener_v6(port).ok();
    let ipv6 = v6.is_some();
    let shared = Arc::new(Shared {
        picker: Picker::new(rules.share, rules.seed),
        rules,
        counters: Counters::default(),
    });
    let cancel = CancellationToken::new();
    let (thread_shared, thread_cancel) = (shared.clone(), cancel.clone());
    let thread = thread::Builder::new()
        .name(format!("chaos-http-{port}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    tracing::error!(error = %err, "cannot start the http fault's proxy runtime");
                    return;
                }
            };
            runtime.block_on(serve(v4, v6, thread_shared, thread_cancel));
        })
        .map_err(|err| format!("cannot start the proxy's thread: {err}"))?;
    PROXIES.insert(
        key,
        Proxy {
            cancel,
            thread,
            shared,
        },
    );
    Ok((port, ipv6))
}

/// Whether the proxy of `key` runs in this process.
pub fn is_running(key: &str) -> bool {
    PROXIES.is_running(key)
}

/// Stops the proxy of `key`: no new connection is accepted, open ones finish the request under
/// way (within [`GRACE`]) and are closed. What it did; `None` when none runs here.
pub fn stop(key: &str) -> Option<Stats> {
    PROXIES.stop(key)
}

fn listener_v4() -> io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
}

/// `[::]:port`, IPv6 only (IPv4 has its own listener).
fn listener_v6(port: u16) -> io::Result<std::net::TcpListener> {
    let fd = socket(
        AddressFamily::Inet6,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    let addr = SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0));
    bind(fd.as_raw_fd(), &addr)?;
    listen(&fd, Backlog::new(1024).unwrap_or(Backlog::MAXCONN))?;
    Ok(std::net::TcpListener::from(fd))
}

async fn accept(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn serve(
    v4: std::net::TcpListener,
    v6: Option<std::net::TcpListener>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let tokio_listener = |l: std::net::TcpListener| {
        l.set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(l))
    };
    let Ok(v4) = tokio_listener(v4) else {
        tracing::error!("the http fault's proxy cannot use its listener");
        return;
    };
    let v6 = v6.and_then(|l| tokio_listener(l).ok());
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            a = accept(Some(&v4)) => a,
            a = accept(v6.as_ref()) => a,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(_) => {
                // Out of descriptors, most likely: let some connections end.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(server) = original_destination(&stream) else {
            bump(&shared.counters.strays);
            continue;
        };
        bump(&shared.counters.connections);
        let _ = stream.set_nodelay(true);
        let upstream = Arc::new(tokio::sync::Mutex::new(None));
        let conn_shared = shared.clone();
        let service = hyper::service::service_fn(move |req| {
            handle(req, server, upstream.clone(), conn_shared.clone())
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = watched.await;
        });
    }
    drop(v4);
    drop(v6);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(GRACE) => {}
    }
}

/// Where the client meant to connect, before the redirect; `None` when the connection was not
/// redirected (it came to the proxy's port itself), which is then closed.
fn original_destination(stream: &TcpStream) -> Option<SocketAddr> {
    let local = stream.local_addr().ok()?;
    let original = match local {
        SocketAddr::V4(_) => {
            let sin = getsockopt(&stream.as_fd(), sockopt::OriginalDst).ok()?;
            SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            ))
        }
        SocketAddr::V6(_) => {
            let sin6 = getsockopt(&stream.as_fd(), sockopt::Ip6tOriginalDst).ok()?;
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                0,
                0,
            ))
        }
    };
    (original != local).then_some(original)
}

type Answer = Response<Either<Incoming, Full<Bytes>>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn handle(
    req: Request<Incoming>,
    server: SocketAddr,
    upstream: Arc<tokio::sync::Mutex<Option<SendRequest<Incoming>>>>,
    shared: Arc<Shared>,
) -> Result<Answer, BoxError> {
    let hit = shared
        .rules
        .matches(req.method().as_str(), req.uri().path())
        && shared.picker.hit();
    if hit {
        match shared.rules.action {
            HttpAction::Abort { status } => {
                bump(&shared.counters.aborted);
                return Ok(abort(req, status).await);
            }
            HttpAction::Delay { delay } => {
                bump(&shared.counters.delayed);
                tokio::time::sleep(delay).await;
            }
        }
    } else {
        bump(&shared.counters.passed);
    }
    let mut upstream = upstream.lock().await;
    match forward(&mut upstream, server, req).await {
        Ok(response) => Ok(response.map(Either::Left)),
        Err(err) => {
            bump(&shared.counters.failed);
            Err(err)
        }
    }
}

/// Sends `req` to the server over this client connection's upstream connection, opening it (or
/// a new one, when the server closed it) first.
async fn forward(
    upstream: &mut Option<SendRequest<Incoming>>,
    server: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Incoming>, BoxError> {
    if let Some(sender) = upstream.as_mut()
        && (sender.is_closed() || sender.ready().await.is_err())
    {
        *upstream = None;
    }
    let sender = match upstream {
        Some(sender) => sender,
        None => upstream.insert(connect(server).await?),
    };
    Ok(sender.send_request(req).await?)
}

async fn connect(server: SocketAddr) -> Result<SendRequest<Incoming>, BoxError> {
    let socket = if server.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    setsockopt(&socket, sockopt::Mark, &MARK)?;
    socket.set_nodelay(true)?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(server))
        .await
        .map_err(|_| format!("no connection to {server} within {CONNECT_TIMEOUT:?}"))??;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// The fault's answer: `status`, a short body saying where it came from, after reading what the
/// client sent (up to [`DRAIN_LIMIT`]) so that its connection can carry the next request.
async fn abort(req: Request<Incoming>, status: u16) -> Answer {
    let mut body = req.into_body();
    let mut read = 0usize;
    let mut drained = body.is_end_stream();
    while !drained && read <= DRAIN_LIMIT {
        match body.frame().await {
            Some(Ok(frame)) => {
                read += frame.data_ref().map_or(0, Bytes::len);
            }
            Some(Err(_)) => break,
            None => drained = true,
        }
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let text = format!(
        "{} {}: injected by a chaos `http` fault (chaos-agent)\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(text))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if !drained {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(paths: &[&str], methods: &[&str]) -> Rules {
        Rules {
            action: HttpAction::Abort { status: 503 },
            share: 100.0,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            seed: 1,
        }
    }

    #[test]
    fn paths_are_prefixes_and_methods_exact() {
        let all = rules(&[], &[]);
        assert!(all.matches("GET", "/"));
        assert!(all.matches("DELETE", "/x"));
        let some = rules(&["/api", "/health"], &["GET", "POST"]);
        assert!(some.matches("GET", "/api/v1/users"));
        assert!(some.matches("POST", "/healthz"));
        assert!(!some.matches("GET", "/static/api"));
        assert!(!some.matches("PUT", "/api"));
        assert!(!some.matches("get", "/api"));
    }

    #[test]
    fn draws_follow_the_seed_and_the_share() {
        let picks = |seed| {
            let p = Picker::new(30.0, seed);
            (0..1000).map(|_| p.hit()).collect::<Vec<_>>()
        };
        assert_eq!(picks(7), picks(7));
        assert_ne!(picks(7), picks(8));
        let hits = picks(7).iter().filter(|h| **h).count();
        assert!((240..=360).contains(&hits), "{hits}");
        assert!((0..100).all(|_| Picker::new(100.0, 1).hit()));
        assert!((0..100).all(|_| !Picker::new(0.0, 1).hit()));
    }

    #[test]
    fn stats_read_as_a_sentence() {
        let s = Stats {
            connections: 3,
            aborted: 36,
            passed: 84,
            ..Stats::default()
        };
        assert_eq!(
            s.summary(),
            "120 requests: 36 aborted, 84 passed (3 connections)"
        );
        let d = Stats {
            connections: 1,
            delayed: 2,
            passed: 0,
            failed: 1,
            strays: 1,
            ..Stats::default()
        };
        assert_eq!(
            d.summary(),
            "3 requests: 2 delayed, 0 passed, 1 failed to reach the server (1 connections, 1 not redirected and closed)"
        );
    }
}
