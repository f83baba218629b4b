//! The HTTP plumbing that `chaos-agent` ([`crate::server`]) and `chaosd`'s service share, so that
//! both answer, refuse and log alike, and the client core both of their clients are built on.
//!
//! # Layout
//! - [`accept`]: the accept loop (TLS with a handshake timeout, HTTP/1 with a header timeout,
//!   connections capped in all and per address, graceful drain).
//! - [`auth`]: the bearer tokens (several while one rotates), compared in constant time; the
//!   token file, read at start and again on SIGHUP.
//! - [`tls`]: the server's certificate and key, rustls with `ring`; the client CA (mutual TLS);
//!   TLS failures in words for either side.
//! - [`body`]: the bounded JSON body reader (size and time).
//! - [`audit`]: one JSON line per request, in `<state-dir>/audit.jsonl`.
//! - [`metrics`]: the Prometheus text writer.
//! - [`client`]: the JSON-over-HTTP client core of the controller's `AgentClient` and chaosctl's
//!   client of chaosd: TLS or plain, the bearer token, timeouts, the error words.
//!
//! [`segments_under`] splits a path for routing, and [`shutdown_signal`] is what stops a server.

pub mod accept;
pub mod audit;
pub mod auth;
pub mod body;
pub mod client;
pub mod metrics;
pub mod tls;

use tracing::{error, info};

/// The segments of `path` under `prefix` (`/v1/runs/R` under `/v1`: `runs`, `R`); `None` for a
/// path outside it or with an empty segment (`/v1/runs//x`, a trailing `/`). `chaos-agent` and
/// chaosd route with it.
pub fn segments_under<'a>(prefix: &str, path: &'a str) -> Option<Vec<&'a str>> {
    let rest = path.strip_prefix(prefix)?.strip_prefix('/')?;
    let segments: Vec<&str> = rest.split('/').collect();
    (!segments.iter().any(|s| s.is_empty())).then_some(segments)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            error!(error = %err, "cannot listen for SIGTERM; only SIGINT stops the agent");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
    }
}
