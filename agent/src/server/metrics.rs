//! What `chaos-agent` counts, written with the shared writer of [`crate::http::metrics`].
//!
//! `chaos-agent` serves `GET /metrics` behind the same bearer token as the rest of its API
//! (Prometheus sends it with `authorization: {credentials_file: ...}`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::http::metrics::{CounterVec, Text};

/// What `chaos-agent` counts, for the whole process.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    /// Requests answered, by status code.
    pub requests: CounterVec,
    /// Reverts done through the API, by lease expiry or at shutdown: `ok` or `failed`.
    pub reverts: CounterVec,
    /// Runs whose lease ran out (their faults were reverted by the watchdog).
    pub lease_expiries: AtomicU64,
}

/// The agent's metrics.
pub fn agent() -> &'static AgentMetrics {
    static METRICS: OnceLock<AgentMetrics> = OnceLock::new();
    METRICS.get_or_init(AgentMetrics::default)
}

impl AgentMetrics {
    /// The text for `GET /metrics`; `active_faults` is read at scrape time.
    pub fn render(&self, active_faults: usize) -> String {
        let mut text = Text::new();
        text.gauge(
            "chaos_agent_faults_active",
            "Faults this agent holds in place now.",
            active_faults as f64,
        );
        text.counter(
            "chaos_agent_requests_total",
            "API requests answered, by HTTP status.",
            &["status"],
            &self.requests,
            &[],
        );
        text.counter(
            "chaos_agent_reverts_total",
            "Faults reverted by request, lease expiry or shutdown, by outcome.",
            &["outcome"],
            &self.reverts,
            &[&["ok"], &["failed"]],
        );
        let expiries = CounterVec::default();
        expiries.add(&[], self.lease_expiries.load(Ordering::Relaxed));
        text.counter(
            "chaos_agent_lease_expiries_total",
            "Runs whose controller went silent for a whole lease; their faults were reverted.",
            &[],
            &expiries,
            &[&[]],
        );
        text.finish()
    }
}
