//! chaosd's Prometheus metrics, for `GET /metrics` (text format, written with the agent's small
//! writer, [`agent::http::metrics`]). Counted for the whole process, since the engine, the
//! webhooks and the scheduler all add to them:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `chaosd_runs_total` | counter | `verdict` (counted when a run's report is recorded) |
//! | `chaosd_runs_active` | gauge | |
//! | `chaosd_faults_active` | gauge | faults applied and not yet reverted, over running runs |
//! | `chaosd_probe_sample_latency_seconds` | histogram | `role` (`steady_state`, `guardrail`); every sample of a run, added when it ends; for a `load` probe every request of its bursts (never a burst's length) |
//! | `chaosd_lease_renewals_total` | counter | `outcome` (`ok`, `failed`) |
//! | `chaosd_reverts_total` | counter | `outcome` (`ok`, `failed`: failed or not confirmed) |
//! | `chaosd_webhook_deliveries_total` | counter | `event`, `outcome` (`ok`, `failed`) |
//! | `chaosd_scheduled_runs_total` | counter | `outcome` (`submitted`, `refused`) |

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};

use agent::http::metrics::{CounterVec, HistogramVec, Text};

use crate::report::model::{ProbeRole, Report, Verdict};

pub use agent::http::metrics::CONTENT_TYPE;

/// Probe latency buckets, in seconds: `agent::probe::load::LATENCY_BUCKETS_MS` in seconds, so a
/// `load` burst's bucket counts add up into this histogram as they are (a test keeps them equal).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every verdict, so that a scrape shows each series from the start.
const VERDICTS: [Verdict; 7] = [
    Verdict::Passed,
    Verdict::Deviated,
    Verdict::Aborted,
    Verdict::NotSteady,
    Verdict::Error,
    Verdict::Interrupted,
    Verdict::Invalid,
];

#[derive(Debug)]
pub struct Metrics {
    pub runs: CounterVec,
    pub faults_active: AtomicI64,
    pub probe_latency: HistogramVec,
    pub lease_renewals: CounterVec,
    pub reverts: CounterVec,
    pub webhooks: CounterVec,
    pub scheduled: CounterVec,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        Metrics {
            runs: CounterVec::default(),
            faults_active: AtomicI64::new(0),
            probe_latency: HistogramVec::new(LATENCY_BUCKETS),
            lease_renewals: CounterVec::default(),
            reverts: CounterVec::default(),
            webhooks: CounterVec::default(),
            scheduled: CounterVec::default(),
        }
    }

    /// A run's report was recorded: its verdict and every probe sample. A `load` burst adds its
    /// requests' latencies (its bucket counts and sum), not its own length, which is the time the
    /// burst took to send them all; a burst that brought back no figures adds nothing, since no
    /// request's latency is known.
    pub fn run_finished(&self, report: &Report) {
        self.runs.inc(&[report.verdict.as_str()]);
        for probe in &report.probes {
            let role = match probe.role {
                ProbeRole::SteadyState => "steady_state",
                ProbeRole::Guardrail => "guardrail",
            };
            let load = probe.kind == "load";
            for s in &probe.samples {
                match &s.load {
                    Some(burst) => self.probe_latency.observe_buckets(
                        &[role],
                        &burst.latency_buckets,
                        (burst.latency_sum_ms / 1000.0).max(0.0),
                    ),
                    None if load => {}
                    None => self
                        .probe_latency
                        .observe(&[role], (s.latency_ms / 1000.0).max(0.0)),
                }
            }
        }
    }

    pub fn lease_renewal(&self, ok: bool) {
        self.lease_renewals.inc(&[if ok { "ok" } else { "failed" }]);
    }

    /// The text for `GET /metrics`; `active_runs` and `instance` (this instance's `node:` name
    /// and whether it fires the schedules now) are read at scrape time.
    pub fn render(&self, active_runs: usize, instance: (&str, bool)) -> String {
        let mut t = Text::new();
        let verdicts: Vec<[&str; 1]> = VERDICTS.iter().map(|v| [v.as_str()]).collect();
        let verdicts: Vec<&[&str]> = verdicts.iter().map(|v| v.as_slice()).collect();
        t.counter(
            "chaosd_runs_total",
            "Runs ended, by verdict.",
            &["verdict"],
            &self.runs,
            &verdicts,
        );
        t.gauge(
            "chaosd_runs_active",
            "Runs going on now.",
            active_runs as f64,
        );
        t.gauge(
            "chaosd_faults_active",
            "Faults applied by running runs and not reverted yet.",
            self.faults_active.load(Ordering::Relaxed).max(0) as f64,
        );
        t.histogram(
            "chaosd_probe_sample_latency_seconds",
            "How long each probe sample took, by probe role; added when a run ends.",
            &["role"],
            &self.probe_latency,
        );
        t.counter(
            "chaosd_lease_renewals_total",
            "Lease renewals sent to remote agents, by outcome.",
            &["outcome"],
            &self.lease_renewals,
            &[&["ok"], &["failed"]],
        );
        t.counter(
            "chaosd_reverts_total",
            "Fault reverts, by outcome (failed: failed or not confirmed).",
            &["outcome"],
            &self.reverts,
            &[&["ok"], &["failed"]],
        );
        t.counter(
            "chaosd_webhook_deliveries_total",
            "Webhook deliveries, by event and outcome (after retries).",
            &["event", "outcome"],
            &self.webhooks,
            &[],
        );
        t.counter(
            "chaosd_scheduled_runs_total",
            "Runs a schedule tried to start, by outcome.",
            &["outcome"],
            &self.scheduled,
            &[&["submitted"], &["refused"]],
        );
        t.gauge_labelled(
            "chaosd_leader",
            "1 while this instance fires the schedules (the leader, or the only instance).",
            &["node"],
            &[instance.0.to_string()],
            if instance.1 { 1.0 } else { 0.0 },
        );
        t.finish()
    }
}

/// Keeps `chaosd_faults_active` for one run from its events: +1 per fault applied, −1 per revert
/// (done or failed), and whatever is left when the run ends.
#[derive(Debug, Default)]
pub struct RunFaults {
    held: AtomicI64,
}

impl RunFaults {
    pub fn on_event(&self, kind: &str) {
        let m = global();
        match kind {
            "fault_applied" => {
                self.held.fetch_add(1, Ordering::Relaxed);
                m.faults_active.fetch_add(1, Ordering::Relaxed);
            }
            "fault_reverted" | "revert_failed" => {
                m.reverts.inc(&[if kind == "fault_reverted" {
                    "ok"
                } else {
                    "failed"
                }]);
                let took = self
                    .held
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        (n > 0).then_some(n - 1)
                    })
                    .is_ok();
                if took {
                    m.faults_active.fetch_sub(1, Ordering::Relaxed);
                }
            }
            "run_ended" => {
                let left = self.held.swap(0, Ordering::Relaxed);
                m.faults_active.fetch_sub(left, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use agent::probe::load::LATENCY_BUCKETS_MS;

    use super::*;
    use crate::report::test_support::sample_report;

    #[test]
    fn the_buckets_are_the_load_probes_buckets() {
        let ms: Vec<f64> = LATENCY_BUCKETS.iter().map(|s| s * 1000.0).collect();
        assert_eq!(ms.len(), LATENCY_BUCKETS_MS.len());
        for (a, b) in ms.iter().zip(LATENCY_BUCKETS_MS) {
            assert!((a - b).abs() < 1e-9, "{a} ms and {b} ms");
        }
    }

    #[test]
    fn load_bursts_add_their_requests_never_their_length() {
        // A metrics set of its own: the process's is shared with other tests.
        let m = Metrics::new();
        m.run_finished(&sample_report());
        let text = m.render(0, ("test", true));
        let bucket = |le: &str| {
            let line = format!(
                "chaosd_probe_sample_latency_seconds_bucket{{role=\"steady_state\",le=\"{le}\"}} "
            );
            let at = text
                .find(&line)
                .unwrap_or_else(|| panic!("{line} in\n{text}"));
            text[at + line.len()..]
                .lines()
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        // `checkout` (http): samples of 10, 11, 12, 14, 15 and 2000 ms. `users` (load): four
        // bursts of 976 ms, whose 54 successful requests took at most 5 ms each.
        assert_eq!(bucket("0.005"), 54);
        assert_eq!(bucket("0.01"), 55);
        assert_eq!(bucket("0.025"), 59);
        // No 976 ms burst is counted as a latency.
        assert_eq!(bucket("1"), 59);
        assert_eq!(bucket("2.5"), 60);
        assert_eq!(bucket("+Inf"), 60);
        assert!(
            text.contains("chaosd_probe_sample_latency_seconds_count{role=\"steady_state\"} 60\n"),
            "{text}"
        );
    }

    #[test]
    fn renders_every_family() {
        let text = global().render(2, ("test", true));
        for needle in [
            "chaosd_runs_total{verdict=\"passed\"}",
            "chaosd_runs_active 2",
            "# TYPE chaosd_probe_sample_latency_seconds histogram",
            "chaosd_lease_renewals_total{outcome=\"failed\"}",
            "chaosd_reverts_total{outcome=\"ok\"}",
            "# TYPE chaosd_webhook_deliveries_total counter",
            "chaosd_scheduled_runs_total{outcome=\"submitted\"}",
        ] {
            assert!(text.contains(needle), "{needle} in\n{text}");
        }
    }
}
