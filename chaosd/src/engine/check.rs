//! The checks of the hypothesis and the guardrails: the before-check over one whole window,
//! and a step's after-check (recovery within `recover_within`, then its impact and objectives).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::{Instant, sleep_until};

use super::guard::Guard;
use super::hypothesis::{
    self, Point, Recovery, SeriesView, hypothesis_holds, judge_recovery, millis_between,
};
use super::live::Phase;
use super::monitor::{Monitor, Series};
use super::plan::PlannedStep;
use super::run::{Run, later};
use crate::report::model::{Cause, CheckReport, ProbeCheck, ProbeRole, StepStatus, Verdict};
use crate::scenario::format_duration;

impl Run {
    /// Step 1's before-check: the hypothesis and the guardrails over one whole window. `None`
    /// ends the run.
    pub(super) async fn first_check(&mut self) -> Option<CheckReport> {
        let (held, check) = self.check_before().await?;
        self.event(
            if held { "check_held" } else { "check_failed" },
            format!("before the first step: {}", check.reason),
            serde_json::json!({"held": held}),
        );
        if held {
            return Some(check);
        }
        // The hypothesis is what the game day is about, so it is named first; a guardrail alone
        // failing is the guardrail's fault.
        let steady_failed = check.probes.iter().any(|p| !p.guardrail && !p.held);
        let (cause, what) = if steady_failed {
            (Cause::Hypothesis, "the steady state did not hold")
        } else {
            (Cause::Guardrail, "a guardrail did not hold")
        };
        self.fail(
            Verdict::NotSteady,
            cause,
            format!(
                "{what} before the first step, so nothing was injected: {}",
                check.reason
            ),
        );
        if let Some(step) = self.plan.steps.first().cloned() {
            let mut report = self.skipped_step(&step, None);
            report.before = Some(check);
            self.record.steps.push(report);
        }
        None
    }

    /// Where a before-check whose sampling started `early` (as preflight began) starts: then, or
    /// one window and one interval of the slowest probe ago if that is later. The check judges
    /// each probe's latest window, and a long preflight's older samples are in none of them.
    fn recent(&self, early: (DateTime<Utc>, Instant)) -> (DateTime<Utc>, Instant) {
        let span = self
            .scenario
            .steady_state
            .iter()
            .chain(&self.scenario.guardrails)
            .map(|p| p.window + p.every)
            .max()
            .unwrap_or_default();
        let elapsed = early.1.elapsed();
        if elapsed <= span {
            return early;
        }
        let skipped = elapsed - span;
        (
            early.0 + chrono::Duration::from_std(skipped).unwrap_or_default(),
            early.1 + skipped,
        )
    }

    /// Starts sampling the steady-state probes and the guardrails, each once.
    pub(super) fn start_monitors(&mut self) {
        let scenario = self.scenario.clone();
        let plan = self.plan.clone();
        if self.sampling.steady.is_none() {
            let monitor = Monitor::start(
                &scenario.steady_state,
                ProbeRole::SteadyState,
                |on| plan.hosts_of(on),
                &self.hosts,
            );
            self.live.watch(&monitor.series);
            self.sampling.steady = Some(monitor);
        }
        if self.sampling.guard.is_none() && !scenario.guardrails.is_empty() {
            let monitor = Monitor::start(
                &scenario.guardrails,
                ProbeRole::Guardrail,
                |on| plan.hosts_of(on),
                &self.hosts,
            );
            self.live.watch(&monitor.series);
            self.sampling.guard = Some(Guard::new(monitor));
        }
    }

    /// A before-check: the hypothesis and the guardrails over one whole window of fresh
    /// samples, starting their sampling if it is not running. `None` when the run was aborted
    /// (recorded) or winds down first.
    pub(crate) async fn check_before(&mut self) -> Option<(bool, CheckReport)> {
        self.live.phase(Phase::Check, None);
        self.start_monitors();
        let (started_at, since) = match self.sampling.early.take() {
            Some(early) => self.recent(early),
            None => (Utc::now(), Instant::now()),
        };
        self.event(
            "check_started",
            if self.sampling.guard.is_some() {
                "checking the steady-state hypothesis and the guardrails"
            } else {
                "checking the steady-state hypothesis"
            }
            .to_string(),
            serde_json::json!({}),
        );
        loop {
            let mut series = self
                .sampling
                .steady
                .as_ref()
                .expect("steady monitor")
                .snapshot()
                .series;
            if let Some(guard) = &self.sampling.guard {
                series.extend(guard.monitor.snapshot().series);
            }
            let fresh: Vec<Vec<Point>> = series
                .iter()
                .map(|(_, points)| hypothesis::since(points, since).to_vec())
                .collect();
            let views: Vec<SeriesView<'_>> = series
                .iter()
                .zip(&fresh)
                .map(|((s, _), points)| SeriesView {
                    rule: s.rule,
                    points,
                })
                .collect();
            if let Some(held) = hypothesis_holds(&views) {
                return Some((
                    held,
                    self.check_report(&series, &fresh, held, started_at, None),
                ));
            }
            let steady = self.sampling.steady.as_mut().expect("steady monitor");
            let guard = self.sampling.guard.as_mut().map(|g| &mut g.monitor);
            tokio::select! {
                () = self.abort.aborted() => {
                    self.note_abort();
                    return None;
                }
                () = self.mode.wound_down() => return None,
                () = steady.changed() => {}
                () = Monitor::changed_opt(guard) => {}
            }
            self.note_background_exits();
        }
    }

    /// The after-check: the hypothesis must hold a whole window starting within the step's
    /// `recover_within` of `fault_end`; then the step's impact and objectives. Returns the
    /// after-check when the run goes on.
    pub(super) async fn after_check(
        &mut self,
        step: &PlannedStep,
        total: usize,
        fault_end: Instant,
        step_started: Instant,
    ) -> Option<CheckReport> {
        // The after-check: the hypothesis must hold a whole window starting within recover_within.
        self.live.phase(
            Phase::AfterCheck,
            Some((step.index, total, step.name.clone())),
        );
        let check_started_at = Utc::now();
        let deadline = later(fault_end, step.recover_within);
        // Only samples that started after the fault's end count: take them now, not at each
        // probe's next turn.
        self.sampling
            .steady
            .as_ref()
            .expect("steady monitor")
            .sample_now(fault_end);
        let verdict = loop {
            let snapshot = self
                .sampling
                .steady
                .as_ref()
                .expect("steady monitor")
                .snapshot();
            match judge_recovery(&snapshot.views(), fault_end, deadline) {
                Recovery::Pending => {}
                decided => break Some((decided, snapshot)),
            }
            let guard = self.sampling.guard.as_mut();
            let steady = self.sampling.steady.as_mut().expect("steady monitor");
            tokio::select! {
                () = self.abort.aborted() => break None,
                breach = Guard::breached_opt(guard) => {
                    self.record_breach(breach, Some(step.name.clone()));
                    break None;
                }
                () = steady.changed() => {}
            }
            self.note_background_exits();
        };
        let Some((decided, snapshot)) = verdict else {
            self.note_abort();
            self.cut_short();
            self.step_mut().status = StepStatus::Aborted;
            self.close_step(step_started);
            return None;
        };

        // The impact window ends here; samples already under way still belong to it.
        let until = Utc::now();
        self.settle(Instant::now()).await;
        let from = self.step_mut().started_at.unwrap_or(until);
        let impact = self.measure_impact(from, until);
        let objectives =
            (!step.objectives.is_empty()).then(|| super::impact::judge(&step.objectives, &impact));

        let held = matches!(decided, Recovery::Held { .. });
        let fresh: Vec<Vec<Point>> = snapshot
            .series
            .iter()
            .map(|(_, points)| hypothesis::since(points, fault_end).to_vec())
            .collect();
        let check = self.check_report(
            &snapshot.series,
            &fresh,
            held,
            check_started_at,
            Some((fault_end, deadline)),
        );
        let first = first_failure(&snapshot.views(), step_started);
        let recovery_ms = match decided {
            Recovery::Held { since } if first.is_some() => Some(millis_between(fault_end, since)),
            Recovery::Held { .. } => Some(0),
            _ => None,
        };
        let misses: Vec<String> = objectives
            .iter()
            .flat_map(|o| o.misses.iter().map(super::impact::describe_miss))
            .collect();
        {
            let report = self.step_mut();
            report.after = Some(check.clone());
            report.impact_ms = first.map(|at| millis_between(step_started, at));
            report.recovery_ms = recovery_ms;
            report.impact = impact;
            report.impact_until = Some(until);
            report.objectives = objectives;
        }
        self.close_step(step_started);
        let impact_text = crate::report::summary::impact_summary(self.step_mut())
            .map(|text| format!("; {text}"))
            .unwrap_or_default();
        let impact_json = serde_json::json!(self.step_mut().impact);
        if held && misses.is_empty() {
            self.event(
                "check_held",
                format!(
                    "after `{}`: the hypothesis held again (recovery {}){impact_text}",
                    step.name,
                    recovery_ms.map_or("-".into(), |ms| format!("{ms} ms"))
                ),
                serde_json::json!({"step": step.name, "recovery_ms": recovery_ms, "impact": impact_json}),
            );
            if self.spec.dry_run {
                self.step_mut().status = StepStatus::Skipped;
            }
            return Some(check);
        }
        self.step_mut().status = StepStatus::Deviated;
        let missed = format!("missed its objectives: {}", misses.join("; "));
        let (cause, reason) = if held {
            (Cause::Objective, format!("step `{}` {missed}", step.name))
        } else {
            let mut reason = format!(
                "after step `{}` the hypothesis did not hold again within {}: {}",
                step.name,
                format_duration(step.recover_within),
                check.reason
            );
            if !misses.is_empty() {
                reason.push_str(&format!("; it also {missed}"));
            }
            (Cause::Hypothesis, reason)
        };
        self.event(
            if held {
                "objective_missed"
            } else {
                "check_failed"
            },
            format!("{reason}{impact_text}"),
            serde_json::json!({"step": step.name, "cause": cause.as_str(), "impact": impact_json}),
        );
        self.fail(Verdict::Deviated, cause, reason);
        None
    }

    /// Waits until every steady-state sample that started before `at` is recorded, so a step's
    /// figures include the requests still in flight when it was decided. Bounded by the slowest
    /// probe's sample time; an abort stops the wait (the samples are still counted at the end).
    async fn settle(&mut self, at: Instant) {
        let longest = self
            .scenario
            .steady_state
            .iter()
            .filter_map(|p| p.kind.max_sample_time())
            .max()
            .unwrap_or_default();
        let bound = later(at, longest + Duration::from_secs(3));
        loop {
            let steady = self.sampling.steady.as_mut().expect("steady monitor");
            if steady.settled(at) {
                return;
            }
            tokio::select! {
                () = steady.changed() => {}
                () = sleep_until(bound) => return,
                () = self.abort.aborted() => return,
            }
        }
    }

    fn check_report(
        &self,
        series: &[(Arc<Series>, Vec<Point>)],
        fresh: &[Vec<Point>],
        held: bool,
        started_at: DateTime<Utc>,
        recovery: Option<(Instant, Instant)>,
    ) -> CheckReport {
        let mut probes = Vec::new();
        let mut failing = Vec::new();
        for ((s, _), points) in series.iter().zip(fresh) {
            let window = s.rule.latest(points).unwrap_or(points);
            let passed = window.iter().filter(|p| p.ok).count();
            // An after-check (with the faults' end and the deadline) needs the probe to have held
            // from a window that starts in time; one that holds now but began holding later
            // missed it as surely as one that still fails, and must say so.
            let holding = hypothesis::holding_since(s.rule, points);
            let probe_held = match recovery {
                Some((_, deadline)) => holding.is_some_and(|since| since <= deadline),
                None => holding.is_some(),
            };
            if !probe_held {
                match (holding, recovery) {
                    (Some(since), Some((fault_end, deadline))) => failing.push(format!(
                        "`{}` on {}: held again only from {} ms after the faults ended, {} ms \
                         too late",
                        s.probe.name,
                        s.host,
                        millis_between(fault_end, since),
                        millis_between(deadline, since)
                    )),
                    _ => {
                        let last = s
                            .last_record()
                            .filter(|r| !r.ok)
                            .map(|r| format!(", last: {}", r.reason))
                            .unwrap_or_default();
                        failing.push(format!(
                            "{}`{}` on {}: {passed} of {} samples passed, {}% needed{last}",
                            if s.role == ProbeRole::Guardrail {
                                "guardrail "
                            } else {
                                ""
                            },
                            s.probe.name,
                            s.host,
                            window.len(),
                            s.probe.tolerance
                        ));
                    }
                }
            }
            probes.push(ProbeCheck {
                probe: s.probe.name.clone(),
                host: s.host.clone(),
                guardrail: s.role == ProbeRole::Guardrail,
                held: probe_held,
                passed,
                samples: window.len(),
            });
        }
        let reason = if held {
            if probes.is_empty() {
                "no steady-state probes".to_string()
            } else {
                format!("all {} probe windows held", probes.len())
            }
        } else {
            failing.join("; ")
        };
        CheckReport {
            held,
            started_at,
            decided_at: Utc::now(),
            reason,
            probes,
        }
    }
}

/// The first moment at or after `from` when the hypothesis did not hold, judged after each sample.
fn first_failure(views: &[SeriesView<'_>], from: Instant) -> Option<Instant> {
    let mut moments: Vec<Instant> = views
        .iter()
        .flat_map(|v| hypothesis::since(v.points, from).iter().map(|p| p.at))
        .collect();
    moments.sort();
    moments.dedup();
    moments.into_iter().find(|&t| {
        let upto: Vec<SeriesView<'_>> = views
            .iter()
            .map(|v| SeriesView {
                rule: v.rule,
                points: &v.points[..v.points.partition_point(|p| p.at <= t)],
            })
            .collect();
        hypothesis_holds(&upto) == Some(false)
    })
}
