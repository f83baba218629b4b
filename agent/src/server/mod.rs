//! `chaos-agent`, the daemon: the HTTP API of [`crate::api`] over a [`LocalAgent`], for a
//! controller on another host.
//!
//! # Layout
//! - [`config`]: the command line and the configuration it resolves to (bad config: exit 64).
//! - [`policy`]: the policy file, what the agent accepts (outside it: 403).
//! - [`lease`]: leases, and the watchdog that reverts a silent controller's faults.
//! - [`metrics`]: what `GET /metrics` counts (Prometheus text, behind the token).
//! - [`routes`]: the routes, the order of checks (token, route, body), the handlers.
//! - [`error`]: every refusal and failure, mapped to its status in one place.
//!
//! The token, TLS, the accept loop, the body reader and the audit log are [`crate::http`]'s,
//! shared with chaosd.
//!
//! [`run`] serves until `shutdown` resolves, then stops accepting, lets requests in flight finish
//! (for a few seconds at most) and reverts every fault still in place.
//!
//! **Invariant:** a run's faults are only injected under the `gate`, after checking that no other
//! run holds faults here, so two runs never hold faults at once.
//! **Invariant:** with `--client-ca`, no request but `GET /healthz` reaches the routes (not even
//! the token check) unless its connection presented a certificate from that CA.
//! **Invariant:** nothing is applied from a request that was refused: auth, route, body, policy
//! and id checks all come before the first injection.

pub mod config;
pub mod error;
pub mod lease;
pub mod metrics;
pub mod policy;
pub mod routes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::RevertResponse;
use crate::local::LocalAgent;
use crate::{FaultError, Recovered};

pub use config::{Args, Config, ConfigError, EXIT_CONFIG};

use crate::http::accept;
use crate::http::audit::{self, AuditLog, Record};
use crate::http::auth::{self, Token};
use error::fault_api_error;
use lease::Leases;
use policy::Policy;

/// How long requests in flight get to finish at shutdown before their connections are dropped.
const DRAIN: Duration = Duration::from_secs(5);

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot open the fault journal: {0}")]
    Journal(#[from] FaultError),
    #[error("cannot open the audit log in `{dir}`: {source}")]
    Audit {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the listening address: {0}")]
    Listener(#[source] std::io::Error),
    #[error(
        "{count} fault(s) could not be reverted at shutdown; the journal keeps them for the next start"
    )]
    LeftFaults { count: usize },
}

/// What every request handler shares.
pub struct State {
    agent: LocalAgent,
    /// Shared with the SIGHUP task that re-reads the token file.
    token: Arc<Token>,
    policy: Option<Policy>,
    audit: AuditLog,
    leases: Leases,
    /// Held while a run's faults are checked and injected, so the one-run rule has no gap.
    gate: tokio::sync::Mutex<()>,
    /// Which run each fault this agent ever applied belongs to (the agent's table forgets runs
    /// once a fault is reverted; a revert request must still name the right run).
    owners: Mutex<HashMap<String, String>>,
    /// The port we listen on: network faults exempt the controller's connections to it.
    listen_port: u16,
    /// Set at shutdown: new applies are refused with 503.
    stopping: AtomicBool,
    hostname: String,
}

impl State {
    /// The run whose faults are in place here, if any.
    pub(crate) fn holder(&self) -> Option<String> {
        self.agent.active().into_iter().map(|f| f.run_id).next()
    }

    pub(crate) fn owner_of(&self, fault_id: &str) -> Option<String> {
        if let Some(active) = self
            .agent
            .active()
            .into_iter()
            .find(|f| f.fault_id == fault_id)
        {
            return Some(active.run_id);
        }
        let known = self
            .owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(fault_id)
            .cloned();
        // After a restart, the faults it reverted from the journal are still known by their run.
        known.or_else(|| self.agent.recovered(fault_id).map(|r| r.run_id))
    }

    pub(crate) fn remember_owner(&self, fault_id: &str, run: &str) {
        self.owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(fault_id.to_string(), run.to_string());
    }

    /// Reverts every fault of `run` still in place, each with its own outcome.
    pub(crate) async fn revert_run(&self, run: &str) -> Vec<RevertResponse> {
        let agent = self.agent.clone();
        let run = run.to_string();
        blocking(move || {
            agent
                .active()
                .into_iter()
                .filter(|f| f.run_id == run)
                .map(|f| revert_response(&f.fault_id, agent.revert(&f.fault_id)))
                .filter(|r| {
                    // Reverted meanwhile by someone else and forgotten: nothing to report.
                    !matches!(&r.error, Some(e) if e.code == "unknown_fault")
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }
}

pub(crate) fn revert_response(
    fault_id: &str,
    result: Result<crate::Reverted, FaultError>,
) -> RevertResponse {
    metrics::agent()
        .reverts
        .inc(&[if result.is_ok() { "ok" } else { "failed" }]);
    match result {
        Ok(reverted) => RevertResponse {
            fault_id: fault_id.to_string(),
            reverted: Some(reverted),
            error: None,
        },
        Err(err) => RevertResponse {
            fault_id: fault_id.to_string(),
            reverted: None,
            error: Some(fault_api_error(&err)),
        },
    }
}

/// Runs blocking agent work (injections poll the host) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => Some(value),
        Err(err) => {
            error!(error = %err, "agent work panicked");
            None
        }
    }
}

/// Opens the agent on `config.state_dir` (reverting what a dead agent left in its journal), then
/// serves the API on `listener` until `shutdown` resolves; then stops accepting, drains, reverts
/// every fault still in place and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let Config {
        token,
        token_file,
        tls,
        client_certs_required,
        policy,
        state_dir,
    } = config;
    let token = Arc::new(token);
    let local = listener.local_addr().map_err(RunError::Listener)?;
    let audit = AuditLog::open(&state_dir).map_err(|source| RunError::Audit {
        dir: state_dir.clone(),
        source,
    })?;
    let open_dir = state_dir.clone();
    let (agent, recovered) = blocking(move || LocalAgent::open(&open_dir))
        .await
        .ok_or_else(|| {
            RunError::Journal(FaultError::Proc {
                source: std::io::Error::other("opening the journal panicked"),
            })
        })??;
    report_recovered(&audit, &recovered);

    match &policy {
        Some(policy) => info!(policy = %policy.summary(), "policy loaded"),
        None => warn!(
            "no --policy file: every fault and probe this agent can do is allowed to token holders"
        ),
    }
    crate::fault::net::http::note_own_port(local.port());
    let state = Arc::new(State {
        agent,
        token,
        policy,
        audit,
        leases: Leases::default(),
        gate: tokio::sync::Mutex::new(()),
        owners: Mutex::new(HashMap::new()),
        listen_port: local.port(),
        stopping: AtomicBool::new(false),
        hostname: nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default(),
    });
    let reload = token_file.map(|path| {
        tokio::spawn(auth::reload_tokens_on_sighup(
            Arc::clone(&state.token),
            path,
        ))
    });
    info!(
        listen = %local,
        tls = tls.is_some(),
        client_certs_required,
        tokens = state.token.count(),
        state_dir = %state_dir.display(),
        audit = %state.audit.path().display(),
        "chaos-agent serving"
    );

    let cancel = CancellationToken::new();
    let watchdog = tokio::spawn(lease::watchdog(Arc::clone(&state), cancel.clone()));
    let connections = {
        let state = Arc::clone(&state);
        let audit_state = Arc::clone(&state);
        accept::serve_until(
            listener,
            tls,
            move |peer, req| guard(Arc::clone(&state), client_certs_required, peer, req),
            move |peer, words: &str| {
                let mut record = Record::own("tls_handshake", None, "refused", words.to_string());
                record.remote = Some(peer.to_string());
                audit_state.audit.write(&record);
            },
            shutdown,
        )
        .await
    };
    if let Some(reload) = reload {
        reload.abort();
    }

    info!("shutting down: no new connections; reverting every fault");
    state.stopping.store(true, Ordering::SeqCst);
    cancel.cancel();
    connections.drain(DRAIN).await;
    let _ = watchdog.await;
    // The gate: an apply that got past the stopping check finishes before the final revert.
    let _gate = state.gate.lock().await;
    let agent = state.agent.clone();
    let results = blocking(move || agent.shutdown()).await.unwrap_or_default();
    let mut left = 0;
    for (fault_id, result) in &results {
        match result {
            Ok(reverted) => info!(fault_id, detail = %reverted.detail, "reverted at shutdown"),
            Err(err) => {
                left += 1;
                error!(fault_id, error = %err, "revert at shutdown failed; the journal keeps it")
            }
        }
    }
    let ids: Vec<&str> = results.iter().map(|(id, _)| id.as_str()).collect();
    state.audit.write(&Record::own(
        "shutdown",
        None,
        if left == 0 { "obeyed" } else { "failed" },
        if ids.is_empty() {
            "nothing to revert".to_string()
        } else {
            format!("reverted {} ({left} failed)", ids.join(", "))
        },
    ));
    info!(
        reverted = results.len() - left,
        failed = left,
        "chaos-agent stopped"
    );
    if left > 0 {
        return Err(RunError::LeftFaults { count: left });
    }
    Ok(())
}

/// Refuses (401, audited like any refusal) a request other than `GET /healthz` that came without
/// a client certificate when `--client-ca` requires one; hands everything else to the routes.
/// The handshake let such connections through so that a liveness probe, which has no
/// certificate, still reaches `/healthz`.
async fn guard(
    state: Arc<State>,
    client_certs_required: bool,
    peer: std::net::SocketAddr,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let presented = req
        .extensions()
        .get::<accept::TlsPeer>()
        .is_some_and(|p| p.client_cert);
    let healthz = req.method() == hyper::Method::GET && req.uri().path() == "/healthz";
    if !client_certs_required || presented || healthz {
        return routes::handle(state, peer, req).await;
    }
    let err = error::ServerError::ClientCertificateRequired;
    let mut record = Record::request(peer, req.method().as_str(), req.uri().path());
    record.detail = err.to_string();
    let response = err.into_response();
    record.status = response.status().as_u16();
    record.outcome = audit::outcome_of(record.status);
    metrics::agent().requests.inc(&[&record.status.to_string()]);
    warn!(%peer, path = req.uri().path(), "refused: no client certificate");
    state.audit.write(&record);
    response
}

/// Logs and audits what `LocalAgent::open` reverted from a dead agent's journal.
fn report_recovered(audit: &AuditLog, recovered: &[Recovered]) {
    if recovered.is_empty() {
        info!("journal empty: nothing left by an earlier agent");
    }
    for r in recovered {
        let run = (!r.run_id.is_empty()).then_some(r.run_id.as_str());
        match &r.result {
            Ok(reverted) => {
                info!(fault_id = r.fault_id, run = r.run_id, fault = r.fault, detail = %reverted.detail,
                    "reverted a fault an earlier agent left in the journal");
                audit.write(&Record::own(
                    "recovered",
                    run,
                    "obeyed",
                    format!("reverted {} ({}): {}", r.fault_id, r.fault, reverted.detail),
                ));
            }
            Err(err) => {
                error!(fault_id = r.fault_id, run = r.run_id, fault = r.fault, error = %err,
                    "cannot revert a fault an earlier agent left; it stays active here");
                audit.write(&Record::own(
                    "recovered",
                    run,
                    "failed",
                    format!("{} ({}): {err}", r.fault_id, r.fault),
                ));
            }
        }
    }
}
