//! `chaosd`, the controller as a long-running service: the HTTP API of [`api`] over the run
//! engine that `chaosctl run` uses in-process, with the run history in SQLite.
//!
//! # Layout
//! - [`config`]: the command line and the YAML configuration, checked before the runtime starts
//!   (bad config: exit 64).
//! - [`api`]: the wire types, shared with `chaosctl --server` through [`client`].
//! - [`routes`]: the order of checks (token, route, body) and one small handler per route.
//! - [`runs`]: the run manager: submit, follow, abort, halt/resume, the history, and the
//!   manual-step seam ([`runs::QuestionSlot`], [`runs::Runs::answer`]).
//! - [`actions`]: abort, halt, resume, confirm, refuse: the one code path of the API and the web
//!   view's forms, each written to the audit log (`STATE_DIR/audit.jsonl`).
//! - [`web`]: the web view under `/ui` (its forms behind the cookie and a CSRF token) and
//!   `/metrics`.
//! - [`error`]: every refusal and failure, mapped to its status in one place.
//!
//! The bearer token and TLS are the agent's ([`agent::http::auth`], [`agent::http::tls`]).
//!
//! [`run`] serves until `shutdown` resolves; then it stops accepting, aborts the running runs,
//! waits until each has reverted its faults and recorded its report, and lets event streams end.

pub mod actions;
pub mod api;
pub mod client;
pub mod config;
pub mod error;
pub mod routes;
pub mod runs;
pub mod web;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent::http::auth::Token;
use tokio::net::TcpListener;
use tracing::{info, warn};

pub use config::{Args, Config, ConfigError, EXIT_CONFIG};

use runs::{Runs, RunsConfig};

/// How long connections get to finish at shutdown, once every run has ended.
const DRAIN: Duration = Duration::from_secs(5);

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0:#}")]
    Open(anyhow::Error),
    #[error("cannot read the listening address: {0}")]
    Listener(#[source] std::io::Error),
}

/// What every request handler shares.
pub struct State {
    /// Shared with the SIGHUP task that re-reads the token file.
    token: Arc<Token>,
    /// chaosd's client certificate for agents (`GET /v1/agents` asks them with it).
    client_cert: Option<(PathBuf, PathBuf)>,
    runs: Arc<Runs>,
    /// Added to every scenario; its agents are `GET /v1/agents`.
    inventory: Option<PathBuf>,
    /// Sent by the run manager's `webhook::Notifier` (runs' events, halt and resume).
    pub webhooks: Vec<config::Webhook>,
    /// Game-day schedules (`/v1/schedules`), started on the system clock.
    scheduler: Arc<crate::schedule::scheduler::Scheduler>,
    /// Served over TLS: the web view's cookie is then `Secure`, never sent over plain HTTP.
    tls: bool,
    /// One line per action ([`actions`]), in `STATE_DIR/audit.jsonl`.
    audit: agent::http::audit::AuditLog,
    /// The web view's CSRF keys and its own origins ([`web::Csrf`]).
    csrf: web::Csrf,
}

/// Opens the history and the local agent in `config.state_dir` (reverting what a dead chaosd
/// left, marking its runs `interrupted`), then serves the API on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let Config {
        listen: _,
        token,
        token_file,
        client_cert,
        tls,
        state_dir,
        report_dir,
        allow_local,
        inventory,
        webhooks,
        public_url,
        store,
        node,
        otlp,
    } = config;
    // `otlp:` wins; without it the standard variables decide, as for chaosctl. A variable that
    // is not a URL turns the export off with a warning: traces never keep chaosd from serving.
    let trace_to = otlp.or_else(|| {
        crate::otel::Destination::from_env().unwrap_or_else(|why| {
            warn!("not exporting runs as traces: {why}");
            None
        })
    });
    if let Some(destination) = &trace_to {
        info!(
            url = destination.url,
            "exporting each run as a trace over OTLP"
        );
    }
    let csrf = web::Csrf::new(public_url.as_deref());
    let audit = agent::http::audit::AuditLog::open(&state_dir).map_err(|e| {
        RunError::Open(anyhow::anyhow!(
            "cannot open the audit log in `{}`: {e}",
            state_dir.display()
        ))
    })?;
    let local = listener.local_addr().map_err(RunError::Listener)?;
    let runs_config = RunsConfig {
        state_dir: state_dir.clone(),
        report_dir: report_dir.clone(),
        allow_local,
        inventory: inventory.clone(),
        client_cert: client_cert.clone(),
        node: node.clone(),
        trace_to,
    };
    let store = {
        let state_dir = state_dir.clone();
        let node = node.clone();
        tokio::task::spawn_blocking(move || match &store {
            Some(url) => crate::store::Store::postgres(url, &node),
            None => crate::store::Store::sqlite(&state_dir),
        })
        .await
        .map_err(|e| RunError::Open(anyhow::anyhow!("opening the store panicked: {e}")))?
        .map_err(|e| RunError::Open(e.into()))?
    };
    let runs_store = store.clone();
    let runs = tokio::task::spawn_blocking(move || Runs::open(runs_config, runs_store))
        .await
        .map_err(|e| RunError::Open(anyhow::anyhow!("opening the state panicked: {e}")))?
        .map_err(RunError::Open)?;
    let runs = Arc::new(runs);
    let notifier = crate::webhook::Notifier::new(webhooks.clone(), public_url);
    runs.set_notifier(Arc::clone(&notifier));
    let scheduler = {
        let runner = Arc::new(runs::ScheduledRuns(Arc::clone(&runs)));
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            crate::schedule::scheduler::Scheduler::open(
                store,
                runner,
                Arc::new(crate::monkey::SystemClock),
            )
        })
        .await
        .map_err(|e| RunError::Open(anyhow::anyhow!("opening the schedules panicked: {e}")))?
        .map_err(RunError::Open)?
    };
    let stop_scheduler = tokio_util::sync::CancellationToken::new();
    let scheduler_task = tokio::spawn(Arc::clone(&scheduler).run(stop_scheduler.clone()));
    let halt_task = tokio::spawn(Arc::clone(&runs).follow_halt(stop_scheduler.clone()));
    let state = Arc::new(State {
        token: Arc::new(token),
        client_cert,
        runs: Arc::clone(&runs),
        inventory,
        webhooks,
        scheduler,
        tls: tls.is_some(),
        audit,
        csrf,
    });
    let reload = tokio::spawn(agent::http::auth::reload_tokens_on_sighup(
        Arc::clone(&state.token),
        token_file,
    ));
    info!(
        listen = %local,
        tls = tls.is_some(),
        state_dir = %state_dir.display(),
        report_dir = %report_dir.display(),
        allow_local,
        tokens = state.token.count(),
        "chaosd serving"
    );

    let connections = {
        let state = Arc::clone(&state);
        agent::http::accept::serve_until(
            listener,
            tls,
            move |peer, req| routes::handle(Arc::clone(&state), peer, req),
            // The accept loop has logged the failure in words; chaosd's audit log records what is
            // done through it, not handshakes.
            |_peer, _words: &str| {},
            shutdown,
        )
        .await
    };
    reload.abort();

    info!("shutting down: no new connections; aborting the running runs");
    stop_scheduler.cancel();
    let _ = scheduler_task.await;
    let _ = halt_task.await;
    runs.shutdown().await;
    notifier.drain(DRAIN).await;
    connections.drain(DRAIN).await;
    info!("chaosd stopped");
    Ok(())
}

impl State {
    /// How scenarios and the inventory are loaded here: chaosd's client certificate goes to the
    /// agent hosts that name none.
    pub(crate) fn load_options(&self) -> crate::scenario::LoadOptions {
        crate::scenario::LoadOptions {
            client_cert: self.client_cert.clone(),
            ..Default::default()
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub use agent::http::shutdown_signal;
