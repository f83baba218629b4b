//! Guardrails, watched for a breach from the first injection on.

use chrono::Utc;

use super::monitor::Monitor;
use super::run::Run;
use crate::report::model::{Breach, Cause};

/// Guardrails, watched from the first injection until the last after-check is decided.
pub(super) struct Guard {
    pub(super) monitor: Monitor,
    /// Per series, how many samples have been judged already.
    judged: Vec<usize>,
}

impl Guard {
    pub(super) fn new(monitor: Monitor) -> Guard {
        let judged = vec![0; monitor.series.len()];
        Guard { monitor, judged }
    }

    /// Judges only windows that end with a sample still to come: the guardrails are watched from
    /// the first injection, once the before-check has seen them hold.
    pub(super) fn watch_from_now(&mut self) {
        for (judged, series) in self.judged.iter_mut().zip(&self.monitor.series) {
            *judged = (*judged).max(series.points().len());
        }
    }

    /// Waits for the first sample after which some guardrail's full window does not hold.
    async fn breached(&mut self) -> Breach {
        loop {
            for (i, series) in self.monitor.series.iter().enumerate() {
                let points = series.points();
                // Judge every window that ended since the last look, in order.
                for end in self.judged[i].max(series.rule.n)..=points.len() {
                    if end < series.rule.n || end == 0 {
                        continue;
                    }
                    let window = &points[end - series.rule.n..end];
                    if !series.rule.holds(window) {
                        self.judged[i] = end;
                        let last = series.last_record();
                        return Breach {
                            guardrail: series.probe.name.clone(),
                            host: series.host.clone(),
                            at: last.as_ref().map_or_else(Utc::now, |r| r.at),
                            step: None,
                            passed: window.iter().filter(|p| p.ok).count(),
                            samples: window.len(),
                            reason: last.map(|r| r.reason).unwrap_or_default(),
                        };
                    }
                }
                self.judged[i] = points.len();
            }
            self.monitor.changed().await;
        }
    }

    pub(super) async fn breached_opt(guard: Option<&mut Guard>) -> Breach {
        match guard {
            Some(guard) => guard.breached().await,
            None => std::future::pending().await,
        }
    }
}

impl Run {
    pub(super) fn record_breach(&mut self, breach: Breach, step: Option<String>) {
        let breach = Breach { step, ..breach };
        let reason = format!(
            "guardrail `{}` breached on {}: {} of {} samples passed ({})",
            breach.guardrail, breach.host, breach.passed, breach.samples, breach.reason
        );
        self.event(
            "breach",
            reason.clone(),
            serde_json::json!({"guardrail": breach.guardrail, "host": breach.host}),
        );
        self.record.breaches.push(breach);
        self.abort.abort(Cause::Guardrail, reason);
    }
}
