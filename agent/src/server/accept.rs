//! The accept loop that `chaos-agent` and `chaosd` share: TCP connections, TLS when configured,
//! HTTP/1 with a time limit on the headers, and every connection watched so that a shutdown can
//! let the requests in flight finish.
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
/// serving until [`Connections::drain`].
pub async fn serve_until<H, Fut, B>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handle: H,
    shutdown: impl Future<Output = ()>,
) -> Connections
where
    H: Fn(SocketAddr, Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let handle = Arc::new(handle);
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
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, peer, handle, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, peer, handle, watcher).await,
                        Ok(Err(err)) => debug!(%peer, error = %err, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    Connections { graceful }
}

async fn serve_connection<IO, H, Fut, B>(io: IO, peer: SocketAddr, handle: Arc<H>, watcher: Watcher)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(SocketAddr, Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let service = service_fn(move |req| {
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
