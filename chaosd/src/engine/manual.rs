//! A `manual` step: a question asked, and its one answer (or the timeout, an abort, a breach).

use chrono::Utc;
use tokio::time::{Instant, sleep_until};

use super::answers;
use super::guard::Guard;
use super::live::Phase;
use super::plan::PlannedStep;
use super::run::{Run, later};
use crate::report::model::{Breach, Cause, ManualReport, StepStatus, Verdict};
use crate::scenario::format_duration;
use crate::scenario::model::Manual;

impl Run {
    /// A `manual` step: ask, and wait for a confirmation, a refusal, the timeout, an abort or a
    /// guardrail's breach. Returns when confirmed, or `None`.
    pub(super) async fn manual_step(
        &mut self,
        step: &PlannedStep,
        manual: &Manual,
        step_started: Instant,
    ) -> Option<Instant> {
        let total = self.plan.steps.len();
        self.live
            .phase(Phase::Manual, Some((step.index, total, step.name.clone())));
        self.live.prompt(Some(manual.prompt.clone()));
        let asked_at = Utc::now();
        let answers = self.spec.answers.clone();
        answers.ask(answers::Question {
            step: step.index,
            name: step.name.clone(),
            prompt: manual.prompt.clone(),
            asked_at,
        });
        self.step_mut().manual = Some(ManualReport {
            asked_at: Some(asked_at),
            ..skipped_manual(manual, "waiting")
        });
        let run_id = self.spec.run_id.clone();
        self.event(
            "manual_waiting",
            format!(
                "step {}/{total} `{}` waits for an answer: {} (answer within {} with `chaosctl \
                 confirm {run_id}` or `chaosctl refuse {run_id} --reason TEXT`)",
                step.index + 1,
                step.name,
                manual.prompt,
                format_duration(manual.timeout)
            ),
            serde_json::json!({"step": step.name, "index": step.index, "prompt": manual.prompt, "timeout_ms": manual.timeout.as_millis() as u64, "run_id": run_id}),
        );
        let deadline = later(Instant::now(), manual.timeout);
        enum Got {
            Answer(answers::Answer),
            Timeout,
            Stopped,
            Breach(Breach),
            Sample,
        }
        let got = loop {
            let got = {
                let guard = self.sampling.guard.as_mut();
                let steady = self.sampling.steady.as_mut().expect("steady monitor");
                tokio::select! {
                    answer = answers.answered() => Got::Answer(answer),
                    () = sleep_until(deadline) => Got::Timeout,
                    () = self.abort.aborted() => Got::Stopped,
                    breach = Guard::breached_opt(guard) => Got::Breach(breach),
                    () = steady.changed() => Got::Sample,
                }
            };
            match got {
                Got::Sample => self.note_background_exits(),
                Got::Breach(breach) => {
                    self.record_breach(breach, Some(step.name.clone()));
                    break Got::Stopped;
                }
                other => break other,
            }
        };
        // An answer that came in as the wait ended was told it was taken: it counts.
        let got = match (answers.close(), got) {
            (Some(answer), Got::Timeout) => Got::Answer(answer),
            (_, got) => got,
        };
        self.live.prompt(None);
        let manual_report = |answer: &str, given: Option<&answers::Answer>| ManualReport {
            asked_at: Some(asked_at),
            answer: answer.to_string(),
            by: given.and_then(|a| a.by.clone()),
            reason: given.and_then(|a| a.reason.clone()),
            answered_at: given.map(|a| a.at),
            ..skipped_manual(manual, answer)
        };
        match got {
            Got::Answer(answer) => {
                let word = if answer.confirmed {
                    "confirmed"
                } else {
                    "refused"
                };
                let by = answer
                    .by
                    .as_ref()
                    .map(|b| format!(" by {b}"))
                    .unwrap_or_default();
                let because = answer
                    .reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                self.step_mut().manual = Some(manual_report(word, Some(&answer)));
                self.event(
                    "manual_answered",
                    format!("step `{}` {word}{by}{because}", step.name),
                    serde_json::json!({"step": step.name, "index": step.index, "answer": word, "by": answer.by, "reason": answer.reason}),
                );
                if answer.confirmed {
                    return Some(Instant::now());
                }
                self.fail(
                    Verdict::Deviated,
                    Cause::Manual,
                    format!(
                        "step `{}` was refused{by}{}",
                        step.name,
                        if because.is_empty() {
                            " (no reason given)".to_string()
                        } else {
                            because
                        }
                    ),
                );
                self.cut_short();
                self.step_mut().status = StepStatus::Deviated;
            }
            Got::Timeout => {
                self.step_mut().manual = Some(manual_report("timed_out", None));
                let reason = format!(
                    "no answer to step `{}` within {}: {}",
                    step.name,
                    format_duration(manual.timeout),
                    manual.prompt
                );
                self.event(
                    "manual_timed_out",
                    reason.clone(),
                    serde_json::json!({"step": step.name, "index": step.index}),
                );
                self.fail(Verdict::Aborted, Cause::Manual, reason);
                self.cut_short();
                self.step_mut().status = StepStatus::Aborted;
            }
            Got::Stopped | Got::Breach(_) | Got::Sample => {
                self.step_mut().manual = Some(manual_report("aborted", None));
                self.note_abort();
                self.cut_short();
                self.step_mut().status = StepStatus::Aborted;
            }
        }
        self.close_step(step_started);
        None
    }
}

/// A manual step's record before (or without) an answer.
pub(super) fn skipped_manual(manual: &Manual, answer: &str) -> ManualReport {
    ManualReport {
        prompt: manual.prompt.clone(),
        timeout_ms: manual.timeout.as_millis() as u64,
        answer: answer.to_string(),
        by: None,
        reason: None,
        asked_at: None,
        answered_at: None,
    }
}
