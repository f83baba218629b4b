//! A step's impact, measured from the recorded samples (`engine::impact` does the figures).

use chrono::{DateTime, Utc};

use super::hypothesis;
use super::run::Run;
use crate::report::model::{ProbeImpact, ProbeRole, StepStatus};

impl Run {
    /// Marks where the current step's impact window ends when it is cut short (an abort, a
    /// failed injection): its figures are measured at the end of the run, once the samples
    /// under way have finished.
    pub(super) fn cut_short(&mut self) {
        let step = self.step_mut();
        step.impact_until.get_or_insert_with(Utc::now);
    }

    /// Each steady-state probe's figures on each host over `[from, until)`, from the samples
    /// recorded so far (while the run goes on) or kept for the report (at its end).
    pub(super) fn measure_impact(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Vec<ProbeImpact> {
        let reports: Vec<crate::report::model::ProbeReport> = match &self.sampling.steady {
            Some(steady) => steady.series.iter().map(|s| s.report()).collect(),
            None => self.record.probe_reports.clone(),
        };
        reports
            .iter()
            .filter(|r| r.role == ProbeRole::SteadyState)
            .map(|r| {
                let requests_per_sample = self
                    .scenario
                    .steady_state
                    .iter()
                    .find(|p| p.name == r.name)
                    .and_then(|p| match &p.kind {
                        agent::spec::ProbeKind::Load(load) => Some(load.requests() as u64),
                        _ => None,
                    });
                super::impact::measure(
                    super::impact::Series {
                        probe: &r.name,
                        host: &r.host,
                        kind: &r.kind,
                        rule: hypothesis::WindowRule {
                            n: r.window_samples,
                            tolerance: r.tolerance,
                        },
                        requests_per_sample,
                        samples: &r.samples,
                    },
                    from,
                    until,
                )
            })
            .collect()
    }

    /// Figures for the steps cut short, now that every sample has been recorded.
    pub(super) fn measure_cut_short_steps(&mut self) {
        for i in 0..self.record.steps.len() {
            let step = &self.record.steps[i];
            let (Some(from), true) = (step.started_at, step.impact.is_empty()) else {
                continue;
            };
            if step.status == StepStatus::Skipped && step.after.is_none() {
                continue;
            }
            let until = step.impact_until.or(step.ended_at).unwrap_or_else(Utc::now);
            let impact = self.measure_impact(from, until);
            let step = &mut self.record.steps[i];
            step.impact_until = Some(until);
            step.impact = impact;
        }
    }
}
