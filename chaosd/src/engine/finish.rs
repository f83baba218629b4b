//! The end of every run: cleanup (revert, stop sampling, stop background setup, teardown), the
//! verdict by its precedence, and the report.

use chrono::Utc;
use tokio::time::Instant;

use super::hypothesis::millis_between;
use super::live::Phase;
use super::procs;
use super::run::{Run, file_name};
use super::{RunResult, TEARDOWN_LIMIT};
use crate::report::model::{Cause, ProbeRole, Report, SCHEMA, ScenarioRef, Verdict};

/// Why the run stopped early, or how it ended.
#[derive(Debug, Clone)]
pub(super) struct Outcome {
    verdict: Verdict,
    cause: Cause,
    reason: String,
}

impl Run {
    /// The path every run takes at its end, whatever happened: revert, stop sampling, stop what
    /// setup started, run teardown.
    pub(crate) async fn cleanup(&mut self) {
        self.revert_active().await;
        if let Some(lease) = self.placed.lease.take() {
            lease.stop().await;
        }
        self.note_abort();
        self.stop_monitors().await;
        self.note_background_exits();
        if !self.placed.backgrounds.is_empty() {
            self.live.phase(Phase::Teardown, None);
        }
        let mut backgrounds = std::mem::take(&mut self.placed.backgrounds);
        for bg in &mut backgrounds {
            let how = bg.stop().await;
            self.event(
                "setup_stopped",
                format!("setup `{}` {how}", bg.name),
                serde_json::json!({"name": bg.name}),
            );
            if let Some(outcome) = self
                .record
                .setup
                .iter_mut()
                .find(|o| o.background && o.name == bg.name)
            {
                if let Some((at, status)) = bg.ended() {
                    outcome.ended_at = Some(*at);
                    outcome.exit_code = status.as_ref().ok().and_then(|s| s.code());
                }
                outcome.detail = format!("{}; {how}", outcome.detail);
            }
        }
        self.teardown_phase().await;
    }

    /// Stops sampling steady-state probes and guardrails, keeping their samples for the report:
    /// steady-state probes first, then guardrails; a probe sampled again later (the monkey
    /// samples around each fault) keeps one entry with every sample.
    pub(crate) async fn stop_monitors(&mut self) {
        let guard = match self.sampling.guard.take() {
            Some(guard) => guard.monitor.stop().await,
            None => Vec::new(),
        };
        let steady = match self.sampling.steady.take() {
            Some(steady) => steady.stop().await,
            None => Vec::new(),
        };
        self.live.unwatch();
        for report in steady.into_iter().chain(guard) {
            match self
                .record
                .probe_reports
                .iter_mut()
                .find(|r| r.role == report.role && r.name == report.name && r.host == report.host)
            {
                Some(existing) => existing.samples.extend(report.samples),
                None => self.record.probe_reports.push(report),
            }
        }
        let steady_first = |r: &crate::report::model::ProbeReport| r.role != ProbeRole::SteadyState;
        self.record.probe_reports.sort_by_key(steady_first);
    }

    async fn teardown_phase(&mut self) {
        if self.scenario.teardown.is_empty() {
            return;
        }
        self.live.phase(Phase::Teardown, None);
        let scenario = self.scenario.clone();
        for (i, entry) in scenario.teardown.iter().enumerate() {
            let log = self
                .report_dir
                .path()
                .join(format!("teardown-{}.log", i + 1));
            let done = procs::run_foreground(
                &entry.run,
                &scenario.base_dir,
                &log,
                Some(TEARDOWN_LIMIT),
                std::future::pending(),
            )
            .await;
            let ok = done.ok();
            self.record
                .teardown
                .push(done.outcome(&entry.name, &entry.run, &file_name(&log)));
            let message = format!("teardown `{}` {}", entry.name, done.describe());
            self.event(
                if ok {
                    "teardown_done"
                } else {
                    "teardown_failed"
                },
                message.clone(),
                serde_json::json!({"name": entry.name, "ok": ok}),
            );
            if !ok && self.record.outcomes.is_empty() {
                // Teardown makes the verdict `error` only when the run had passed.
                self.fail(
                    Verdict::Error,
                    Cause::Teardown,
                    format!("{message}; see {}", log.display()),
                );
            }
        }
    }

    pub(crate) fn finish(mut self) -> RunResult {
        self.measure_cut_short_steps();
        let outcome = self.outcome();
        self.live.phase(Phase::Done, None);
        let ended_at = Utc::now();
        self.event(
            "run_ended",
            format!("run ended: {} ({})", outcome.verdict, outcome.reason),
            serde_json::json!({"verdict": outcome.verdict.as_str(), "faults_left": self.record.faults_left.len()}),
        );
        let report = Report {
            schema: SCHEMA.to_string(),
            run_id: self.spec.run_id.clone(),
            scenario: ScenarioRef {
                name: self.scenario.name.clone(),
                sha256: self.scenario.sha256.clone(),
                path: self.scenario.path.display().to_string(),
                description: self.scenario.description.clone(),
            },
            verdict: outcome.verdict,
            cause: (outcome.verdict != Verdict::Passed).then_some(outcome.cause),
            reason: outcome.reason,
            seed: self.spec.seed.to_string(),
            labels: self.spec.labels.clone(),
            user: self.spec.user.clone(),
            host: self.spec.host.clone(),
            dry_run: self.spec.dry_run,
            started_at: self.record.started_at,
            ended_at,
            duration_ms: millis_between(self.record.started, Instant::now()),
            faults_left: self.record.faults_left,
            recovered: self.record.recovered,
            setup: self.record.setup,
            teardown: self.record.teardown,
            steps: self.record.steps,
            breaches: self.record.breaches,
            probes: self.record.probe_reports,
            events: self.record.events,
        };
        RunResult {
            report,
            report_dir: self.report_dir,
        }
    }

    pub(crate) fn fail(&mut self, verdict: Verdict, cause: Cause, reason: String) {
        self.record.outcomes.push(Outcome {
            verdict,
            cause,
            reason,
        });
    }

    /// Records the abort's reason once, as an outcome.
    pub(crate) fn note_abort(&mut self) {
        if !self.abort.is_aborted()
            || self
                .record
                .outcomes
                .iter()
                .any(|o| o.verdict == Verdict::Aborted)
        {
            return;
        }
        let (cause, reason) = self.abort.reason();
        if cause == Cause::AgentLost {
            // Not an abort but an error, recorded per lost host.
            let lost = self
                .placed
                .lease
                .as_ref()
                .map(|l| l.take_lost())
                .unwrap_or_default();
            for (host, why) in lost {
                self.lost(&host, why);
            }
            return;
        }
        self.event(
            "aborted",
            reason.clone(),
            serde_json::json!({"cause": cause.as_str()}),
        );
        self.fail(Verdict::Aborted, cause, reason);
    }

    /// The verdict by the spec's precedence: error beats aborted beats not_steady and deviated.
    fn outcome(&self) -> Outcome {
        let rank = |v: Verdict| match v {
            Verdict::Error => 4,
            Verdict::Aborted => 3,
            Verdict::NotSteady => 2,
            Verdict::Deviated => 1,
            _ => 0,
        };
        let mut best: Option<&Outcome> = None;
        for o in &self.record.outcomes {
            if best.is_none_or(|b| rank(o.verdict) > rank(b.verdict)) {
                best = Some(o);
            }
        }
        // A lost agent explains the faults it may still hold; otherwise a failed revert is the
        // cause users must hear about first.
        if let Some(o) = self
            .record
            .outcomes
            .iter()
            .find(|o| o.cause == Cause::AgentLost)
            .or_else(|| {
                self.record
                    .outcomes
                    .iter()
                    .find(|o| o.cause == Cause::Revert)
            })
        {
            best = Some(o);
        }
        best.cloned().unwrap_or_else(|| Outcome {
            verdict: Verdict::Passed,
            cause: Cause::Hypothesis,
            reason: if let Some(reason) = self.mode.passed_reason() {
                reason.to_string()
            } else if self.spec.dry_run {
                "dry run: the hypothesis held at every check; no fault was injected".to_string()
            } else {
                "the hypothesis held before and after every step".to_string()
            },
        })
    }
}
