//! The accept loop that `chaos-agent` and `chaosd` share: TCP connections, TLS when configured,
//! HTTP/1 with a time limit on the headers, and every connection watched so that a shutdown can
//! let the requests in flight finish.
//!
//! A flooding client cannot exhaust the server either: at most [`MAX_CONNECTIONS`] are open at
//! once and [`MAX_PER_ADDRESS`] from one address (a connection past either is closed at once,
//! before any TLS work), and a connection serves at most [`MAX_REQUESTS_PER_CONNECTION`]
//! requests before it is closed. The allocator gives back what a burst of connections took once
//! they are gone. The header timer also runs while a kept-alive connection waits for its next
//! request, so an idle connection is closed after [`HEADER_TIMEOUT`]; a body gets
//! [`super::body::BODY_TIMEOUT`].
//!
//! Each request over TLS carries a [`TlsPeer`] in its extensions, saying whether the client
//! presented a certificate (already checked against the client CA by the handshake), so that a
//! server can require one on some paths only. A handshake that fails for a TLS reason is logged
//! in words ([`super::tls::handshake_failure`]) and handed to the server's `on_tls_error`.
//!
//! A slow or silent client costs a task, never the loop: the TLS handshake runs in the
//! connection's own task with [`HANDSHAKE_TIMEOUT`], and hyper gives up on headers that take
//! longer than [`HEADER_TIMEOUT`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::header::{CONNECTION, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections open at once, at most. Each costs a task and its buffers (about 28 KiB).
pub const MAX_CONNECTIONS: usize = 2048;

/// Connections open at once from one address, at most: a controller with many runs keeps a few
/// hundred, a flood from one address gets no further.
pub const MAX_PER_ADDRESS: usize = 512;

/// Requests one connection serves before it is closed (the client reconnects).
pub const MAX_REQUESTS_PER_CONNECTION: usize = 1000;

/// How often the loop looks whether connections have gone and memory can be given back.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// The connections open now, in all and per address.
#[derive(Default)]
struct Open {
    total: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection, counted until it is dropped.
struct Slot {
    open: Arc<Open>,
    address: IpAddr,
}

impl Open {
    /// A slot for a connection from `address`, or `None` when a limit is reached.
    fn admit(self: &Arc<Open>, address: IpAddr) -> Option<Slot> {
        let mut per_address = self
            .per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let from_address = per_address.entry(address).or_default();
        if *from_address >= MAX_PER_ADDRESS || self.total.load(Ordering::Relaxed) >= MAX_CONNECTIONS
        {
            if *from_address == 0 {
                per_address.remove(&address);
            }
            return None;
        }
        *from_address += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            open: Arc::clone(self),
            address,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_address = self
            .open
            .per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = per_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                per_address.remove(&self.address);
            }
        }
        self.open.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Gives the allocator's free memory back to the system. glibc keeps what a burst of
/// connections freed in its arenas (an agent measured 83 MB after 3,000 idle connections had
/// closed); trimming returns it.
fn give_memory_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and is safe to call from any thread at any time.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What the TLS handshake established about the client; in each request's extensions (absent on
/// plain HTTP).
#[derive(Debug, Clone, Copy)]
pub struct TlsPeer {
    /// The client presented a certificate, and the server's client verifier accepted it.
    pub client_cert: bool,
}

/// The connections a [`serve_until`] accepted, to drain once the server has stopped its work.
pub struct Connections {
    graceful: GracefulShutdown,
}

impl Connections {
    /// Waits up to `within` for the requests in flight to finish; after that they are left.
    pub async fn drain(self, within: Duration) {
        if tokio::time::timeout(within, self.graceful.shutdown())
            .await
            .is_err()
        {
            warn!(
                ?within,
                "requests still in flight after the drain; stopping anyway"
            );
        }
    }
}

/// Serves `handle` on every connection `listener` accepts (through `tls` when given) until
/// `shutdown` resolves; then closes the listener and returns the open connections, which go on
/// serving until [`Connections::drain`]. `on_tls_error` hears of every handshake that failed for
/// a TLS reason (a certificate refused either way, plain HTTP on the TLS port), in words.
pub async fn serve_until<H, Fut, B, E>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handle: H,
    on_tls_error: E,
    shutdown: impl Future<Output = ()>,
) -> Connections
where
    E: Fn(SocketAddr, &str) + Send + Sync + 'static,
    H: Fn(SocketAddr, Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let handle = Arc::new(handle);
    let on_tls_error = Arc::new(on_tls_error);
    let open = Arc::new(Open::default());
    let mut trim = tokio::time::interval(TRIM_EVERY);
    // The most connections open since the last trim.
    let mut peak = 0;
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            _ = trim.tick() => {
                let now = open.total.load(Ordering::Relaxed);
                if peak >= now + 64 {
                    give_memory_back();
                    peak = now;
                }
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    warn!(error = %err, "failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = open.admit(peer.ip()) else {
            debug!(%peer, "connection refused: too many open");
            drop(stream);
            continue;
        };
        peak = peak.max(open.total.load(Ordering::Relaxed));
        let _ = stream.set_nodelay(true);
        let handle = Arc::clone(&handle);
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let on_tls_error = Arc::clone(&on_tls_error);
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => serve_connection(stream, peer, None, handle, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let client_cert = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .is_some_and(|certs| !certs.is_empty());
                            let tls_peer = TlsPeer { client_cert };
                            serve_connection(stream, peer, Some(tls_peer), handle, watcher).await
                        }
                        Ok(Err(err)) => match super::tls::handshake_failure(&err) {
                            Some(words) => {
                                warn!(%peer, "TLS handshake failed: {words}");
                                on_tls_error(peer, &words);
                            }
                            // A probe that connects and closes, a reset: nothing to tell.
                            None => debug!(%peer, error = %err, "TLS handshake ended"),
                        },
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    Connections { graceful }
}

async fn serve_connection<IO, H, Fut, B>(
    io: IO,
    peer: SocketAddr,
    tls_peer: Option<TlsPeer>,
    handle: Arc<H>,
    watcher: Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(SocketAddr, Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let served = Arc::new(AtomicUsize::new(0));
    let service = service_fn(move |mut req: Request<Incoming>| {
        if let Some(tls_peer) = tls_peer {
            req.extensions_mut().insert(tls_peer);
        }
        let answer = handle(peer, req);
        let served = Arc::clone(&served);
        async move {
            let mut response = answer.await;
            // hyper closes the connection after a response that says so.
            if served.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_REQUESTS_PER_CONNECTION {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(Some(HEADER_TIMEOUT))
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(TokioIo::new(io), service);
    if let Err(err) = watcher.watch(conn).await {
        debug!(%peer, error = %err, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_per_address_and_counted_back_when_they_close() {
        let open = Arc::new(Open::default());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let slots: Vec<Slot> = (0..MAX_PER_ADDRESS)
            .map(|_| open.admit(a).expect("under the limit"))
            .collect();
        assert!(open.admit(a).is_none(), "one more from the same address");
        let other = open.admit(b).expect("another address is still served");
        assert_eq!(open.total.load(Ordering::Relaxed), MAX_PER_ADDRESS + 1);
        drop(slots);
        drop(other);
        assert_eq!(open.total.load(Ordering::Relaxed), 0);
        assert!(
            open.per_address.lock().unwrap().is_empty(),
            "no entry left behind"
        );
        assert!(open.admit(a).is_some(), "admitted again once they closed");
    }

    #[test]
    fn connections_are_capped_in_all() {
        let open = Arc::new(Open::default());
        let slots: Vec<Slot> = (0..MAX_CONNECTIONS)
            .map(|i| {
                let address = IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]);
                open.admit(address).expect("under the limit")
            })
            .collect();
        assert!(open.admit("127.0.0.9".parse().unwrap()).is_none());
        drop(slots);
        assert!(open.admit("127.0.0.9".parse().unwrap()).is_some());
    }
}
