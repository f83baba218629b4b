//! The accept loop that `chaos-agent` and `chaosd` share: TCP connections, TLS when configured,
//! HTTP/1 with a time limit on the headers, and every connection watched so that a shutdown can
//! let the requests in flight finish.
//!
//! Each request over TLS carries a [`TlsPeer`] in its extensions, saying whether the client
//! presented a certificate (already checked against the client CA by the handshake), so that a
//! server can require one on some paths only. A handshake that fails for a TLS reason is logged
//! in words ([`super::tls::handshake_failure`]) and handed to the server's `on_tls_error`.
//!
//! A slow or silent client costs a task, never the loop: the TLS handshake runs in the
//! connection's own task with [`HANDSHAKE_TIMEOUT`], and hyper gives up on headers that take
//! longer than [`HEADER_TIMEOUT`].

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
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
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
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
        let _ = stream.set_nodelay(true);
        let handle = Arc::clone(&handle);
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let on_tls_error = Arc::clone(&on_tls_error);
        tokio::spawn(async move {
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
    let service = service_fn(move |mut req: Request<Incoming>| {
        if let Some(tls_peer) = tls_peer {
            req.extensions_mut().insert(tls_peer);
        }
        let answer = handle(peer, req);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(Some(HEADER_TIMEOUT))
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(TokioIo::new(io), service);
    if let Err(err) = watcher.watch(conn).await {
        debug!(%peer, error = %err, "connection ended with an error");
    }
}
