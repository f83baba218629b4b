//! A step's actions: an `action` step's command, a fault step's `action` entries, each run on
//! the controller or through the agents of its `on:` hosts, and their records.

use std::sync::Arc;

use chrono::Utc;
use tokio::time::Instant;

use super::guard::Guard;
use super::hosts::Hosts;
use super::live::Phase;
use super::plan::{PlannedAction, PlannedStep};
use super::procs;
use super::run::{Run, file_name};
use super::{Abort, CONTROLLER};
use crate::report::model::{ActionReport, Cause, StepStatus, Verdict};

impl Run {
    /// A record per run of each of the step's actions (its `action`, then its `action` entries),
    /// each not run yet, with why.
    pub(super) fn action_records(&self, step: &PlannedStep, why: &str) -> Vec<ActionReport> {
        let log = format!("step-{}.log", step.index + 1);
        step.action
            .iter()
            .chain(&step.actions)
            .flat_map(|action| {
                action_hosts(action).into_iter().map(|host| ActionReport {
                    skipped: true,
                    detail: why.to_string(),
                    ..action_record(action, host, log.clone())
                })
            })
            .collect()
    }

    /// Where the records of the step's action entry `i` are in its report (`None`: its `action`).
    fn action_slots(step: &PlannedStep, i: Option<usize>) -> std::ops::Range<usize> {
        let count = |a: &PlannedAction| action_hosts(a).len();
        let own = step.action.as_ref().map_or(0, count);
        match i {
            None => 0..own,
            Some(i) => {
                let from = own + step.actions[..i].iter().map(count).sum::<usize>();
                from..from + count(&step.actions[i])
            }
        }
    }

    /// Records how an action ended on each host, says so, and fails the run (`error`, cause
    /// `action`) when it failed without an abort to explain it. Returns whether all went well.
    pub(super) fn record_actions(
        &mut self,
        step: &PlannedStep,
        i: Option<usize>,
        reports: Vec<ActionReport>,
    ) -> bool {
        let slots = Self::action_slots(step, i);
        let mut all_ok = true;
        for report in &reports {
            let fields = serde_json::json!({
                "step": step.name, "host": report.host, "command": report.command,
                "exit_code": report.exit_code, "ok": report.ok, "duration_ms": report.duration_ms,
                "log": report.log,
            });
            if report.ok {
                self.event(
                    "action_done",
                    format!(
                        "`{}` on {}: {} in {} ms",
                        report.command, report.host, report.detail, report.duration_ms
                    ),
                    fields,
                );
                continue;
            }
            all_ok = false;
            let reason = format!(
                "action `{}` of step `{}` failed on {}: {}; its output is in {}",
                report.command,
                step.name,
                report.host,
                report.detail,
                self.report_dir.path().join(&report.log).display()
            );
            self.event("action_failed", reason.clone(), fields);
            if !self.abort.is_aborted() {
                self.fail(Verdict::Error, Cause::Action, reason);
            }
        }
        let actions = &mut self.step_mut().actions;
        let slots = slots.start.min(actions.len())..slots.end.min(actions.len());
        actions.splice(slots, reports);
        all_ok
    }

    /// An action entry that was running when the step was cut short: its records say so.
    pub(super) fn mark_cut_short(&mut self, step: &PlannedStep, i: usize) {
        let slots = Self::action_slots(step, Some(i));
        for record in self.step_mut().actions[slots].iter_mut() {
            if record.skipped {
                record.skipped = false;
                record.detail = "cut short: the step ended while it ran".to_string();
            }
        }
    }

    /// An `action` step: run its command (on the controller, or on each host of `on`), watching
    /// the guardrails and the abort request. Returns when it ended well, or `None`.
    pub(super) async fn action_step(
        &mut self,
        step: &PlannedStep,
        action: &PlannedAction,
        step_started: Instant,
    ) -> Option<Instant> {
        let total = self.plan.steps.len();
        self.live
            .phase(Phase::Action, Some((step.index, total, step.name.clone())));
        self.step_mut().actions = self.action_records(step, "not run");
        let log = self
            .report_dir
            .path()
            .join(format!("step-{}.log", step.index + 1));
        self.event(
            "action_started",
            format!(
                "step {}/{total} `{}`: running `{}` {}",
                step.index + 1,
                step.name,
                action.run,
                where_it_runs(action)
            ),
            serde_json::json!({"step": step.name, "command": action.run.to_string(), "hosts": action_hosts(action)}),
        );
        let work = perform_action(
            self.hosts.clone(),
            action.clone(),
            self.scenario.base_dir.clone(),
            log,
            self.abort.clone(),
        );
        tokio::pin!(work);
        let mut breached = false;
        let reports = loop {
            let woke = {
                let guard = if breached {
                    None
                } else {
                    self.sampling.guard.as_mut()
                };
                let steady = self.sampling.steady.as_mut().expect("steady monitor");
                tokio::select! {
                    reports = &mut work => Ok(reports),
                    breach = Guard::breached_opt(guard) => Err(Some(breach)),
                    () = steady.changed() => Err(None),
                }
            };
            match woke {
                Ok(reports) => break reports,
                // The breach aborts the run, which ends the action; its records still come.
                Err(Some(breach)) => {
                    self.record_breach(breach, Some(step.name.clone()));
                    breached = true;
                }
                Err(None) => self.note_background_exits(),
            }
        };
        let ok = self.record_actions(step, None, reports);
        if self.abort.is_aborted() {
            self.note_abort();
            self.cut_short();
            self.step_mut().status = StepStatus::Aborted;
            self.close_step(step_started);
            return None;
        }
        if !ok {
            self.cut_short();
            self.step_mut().status = StepStatus::Error;
            self.close_step(step_started);
            return None;
        }
        Some(Instant::now())
    }
}

/// The hosts an action runs on, as its records name them.
pub(super) fn action_hosts(action: &PlannedAction) -> Vec<String> {
    match &action.on {
        None => vec![CONTROLLER.to_string()],
        Some(_) => action.hosts.clone(),
    }
}

/// "on the controller", "on db-1, db-2 (target `db`)".
pub(super) fn where_it_runs(action: &PlannedAction) -> String {
    match &action.on {
        None => "on the controller".to_string(),
        Some(on) => format!("on {} (`{on}`)", action.hosts.join(", ")),
    }
}

/// The record of an action on `host`, before it has run: its output goes into `log`.
fn action_record(action: &PlannedAction, host: String, log: String) -> ActionReport {
    ActionReport {
        command: action.run.to_string(),
        host,
        skipped: false,
        start_after_ms: action.start_after.as_millis() as u64,
        started_at: None,
        ended_at: None,
        duration_ms: 0,
        exit_code: None,
        ok: false,
        timed_out: false,
        log,
        detail: String::new(),
    }
}

/// Runs an action where it belongs and returns one record per host. On the controller it is a
/// child of ours like setup (output into `log`, the terminal's Ctrl-C reaches it); on a host it
/// goes to that host's agent (every host at once), whose output is appended to `log`. An abort
/// stops waiting: the controller's child is stopped, an agent's runs to its own timeout.
pub(super) async fn perform_action(
    hosts: Hosts,
    action: PlannedAction,
    base_dir: std::path::PathBuf,
    log: std::path::PathBuf,
    abort: Arc<Abort>,
) -> Vec<ActionReport> {
    let command = action.run.to_string();
    let record = |host: String| action_record(&action, host, file_name(&log));
    if action.on.is_none() {
        let stop = abort.clone();
        let done = procs::run_foreground(
            &action.run,
            &base_dir,
            &log,
            Some(action.timeout),
            async move { stop.aborted().await },
        )
        .await;
        let timed_out = matches!(&done.status, Err(e) if e.starts_with("did not finish within"));
        return vec![ActionReport {
            started_at: Some(done.started_at),
            ended_at: Some(done.ended_at),
            duration_ms: (done.ended_at - done.started_at).num_milliseconds().max(0) as u64,
            exit_code: done.exit_code(),
            ok: done.ok(),
            timed_out,
            detail: done.describe(),
            ..record(CONTROLLER.to_string())
        }];
    }
    let mut calls = tokio::task::JoinSet::new();
    for host in action.hosts.clone() {
        let (hosts, run, base) = (hosts.clone(), action.run.clone(), base_dir.clone());
        let timeout = action.timeout;
        calls.spawn(async move {
            let started_at = Utc::now();
            let answer = hosts.command(&host, &run, timeout, &base).await;
            (host, started_at, answer, Utc::now())
        });
    }
    let mut reports = Vec::new();
    loop {
        let joined = tokio::select! {
            joined = calls.join_next() => joined,
            () = abort.aborted() => break,
        };
        let Some(joined) = joined else { break };
        let Ok((host, started_at, answer, ended_at)) = joined else {
            continue;
        };
        let mut report = ActionReport {
            started_at: Some(started_at),
            ended_at: Some(ended_at),
            duration_ms: (ended_at - started_at).num_milliseconds().max(0) as u64,
            ..record(host.clone())
        };
        let section = match answer {
            Ok(ran) => {
                report.exit_code = ran.exit_code;
                report.ok = ran.ok();
                report.timed_out = ran.timed_out;
                report.duration_ms = ran.duration_ms;
                report.detail = ran.detail.clone();
                format!(
                    "--- {host}: `{command}`: {}{} ---\n{}",
                    ran.detail,
                    if ran.truncated {
                        " (only the end of its output was kept)"
                    } else {
                        ""
                    },
                    ran.output
                )
            }
            Err(err) => {
                report.detail = format!("it did not run: {err}");
                format!("--- {host}: `{command}` did not run: {err} ---\n")
            }
        };
        append_log(&log, &section);
        reports.push(report);
    }
    for host in &action.hosts {
        if !reports.iter().any(|r| &r.host == host) {
            reports.push(ActionReport {
                detail: "cut short: the run was aborted while it ran (its agent ends it at its \
                         timeout)"
                    .to_string(),
                ..record(host.clone())
            });
        }
    }
    reports.sort_by(|a, b| a.host.cmp(&b.host));
    reports
}

fn append_log(log: &std::path::Path, text: &str) {
    use std::io::Write;
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(err) = written {
        tracing::warn!(error = %err, log = %log.display(), "cannot write an action's output");
    }
}
