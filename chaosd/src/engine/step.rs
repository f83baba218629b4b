//! A step: its record, then inject its faults on every host at once (each entry at its
//! `start_after`), hold until its end, revert. Its actions are `actions`, a `manual` step is
//! `manual`, the after-check is `check`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use agent::local::InjectRequest;
use chrono::Utc;
use tokio::time::Instant;

use super::actions::{perform_action, where_it_runs};
use super::guard::Guard;
use super::lease;
use super::live::Phase;
use super::manual::skipped_manual;
use super::plan::{PlannedStep, fault_seed};
use super::revert::Active;
use super::run::{Run, later, until};
use crate::report::model::{
    ActionReport, Breach, Cause, CheckReport, FaultReport, StepReport, StepStatus, Verdict,
};
use crate::scenario::model::LOCAL_HOST;

impl Run {
    /// One step: inject, hold, revert, after-check. Returns the after-check when the run goes on.
    pub(crate) async fn run_step(
        &mut self,
        step: &PlannedStep,
        before: Option<CheckReport>,
    ) -> Option<CheckReport> {
        // A monkey's faults are numbered, with no total: the live status shows 0 for it.
        let total = if self.mode.is_monkey() {
            0
        } else {
            self.plan.steps.len()
        };
        self.live
            .phase(Phase::Step, Some((step.index, total, step.name.clone())));
        let step_started = Instant::now();
        let mut report = StepReport {
            hosts: step.hosts(),
            started_at: Some(Utc::now()),
            recover_within_ms: step.recover_within.as_millis() as u64,
            before,
            ..StepReport::new(step.index, step.name.clone(), StepStatus::Passed)
        };
        self.event(
            "step_started",
            if self.mode.is_monkey() {
                format!("`{}` started", step.name)
            } else {
                format!("step {}/{total} `{}` started", step.index + 1, step.name)
            },
            serde_json::json!({"step": step.name, "index": step.index}),
        );

        // Guardrails were checked with the before-check; from the first injection on, a window
        // that does not hold is a breach.
        self.start_monitors();
        if let Some(guard) = &mut self.sampling.guard {
            guard.watch_from_now();
        }

        let fault_end = if self.spec.dry_run {
            report.status = StepStatus::Skipped;
            report.faults = self.fault_records(step, Some("dry run: not injected"));
            report.actions = self.action_records(step, "dry run: not run");
            report.manual = step.manual.as_ref().map(|m| skipped_manual(m, "skipped"));
            for f in &report.faults {
                self.event(
                    "fault_skipped",
                    format!("dry run: not injecting {} on {}", f.fault, f.host),
                    serde_json::json!({"fault_id": f.fault_id, "host": f.host}),
                );
            }
            for a in &report.actions {
                self.event(
                    "action_skipped",
                    format!("dry run: not running `{}` on {}", a.command, a.host),
                    serde_json::json!({"step": step.name, "host": a.host}),
                );
            }
            if let Some(m) = &step.manual {
                self.event(
                    "manual_skipped",
                    format!("dry run: not asking `{}`", m.prompt),
                    serde_json::json!({"step": step.name}),
                );
            }
            self.record.steps.push(report);
            Instant::now()
        } else if let Some(action) = &step.action {
            self.record.steps.push(report);
            self.action_step(step, action, step_started).await?
        } else if let Some(manual) = &step.manual {
            self.record.steps.push(report);
            self.manual_step(step, manual, step_started).await?
        } else {
            report.faults = self.fault_records(step, None);
            self.record.steps.push(report);
            self.inject_and_hold(step, step_started).await?
        };
        self.after_check(step, total, fault_end, step_started).await
    }

    /// Injects the step's faults on all their hosts (each entry at its `start_after`), runs its
    /// `action` entries at theirs, holds until the step's end, reverts. Returns when the faults
    /// ended, or `None` when the run must stop.
    pub(super) async fn inject_and_hold(
        &mut self,
        step: &PlannedStep,
        step_started: Instant,
    ) -> Option<Instant> {
        if self.placed.lease.is_none() && step.hosts().iter().any(|h| h != LOCAL_HOST) {
            self.placed.lease = Some(lease::LeaseKeeper::start(
                self.hosts.clone(),
                self.abort.clone(),
            ));
        }
        let step_idx = self.record.steps.len() - 1;
        self.record.steps[step_idx].actions =
            self.action_records(step, "not run: the step ended before its start_after");
        // Slots (positions in the step's fault records) by when they are due.
        let mut due_faults: BTreeMap<Duration, Vec<usize>> = BTreeMap::new();
        for (slot, record) in self.record.steps[step_idx].faults.iter().enumerate() {
            let planned = &step.faults[fault_index(step, &record.fault_id)];
            due_faults
                .entry(planned.start_after)
                .or_default()
                .push(slot);
        }
        let mut due_actions: BTreeMap<Duration, Vec<usize>> = BTreeMap::new();
        for (i, action) in step.actions.iter().enumerate() {
            due_actions.entry(action.start_after).or_default().push(i);
        }
        let injected_at = step_started;
        let mut last_injection = injected_at;
        let hold_end = later(injected_at, step.duration);
        self.live.fault_ends(Some(hold_end));
        let log = self
            .report_dir
            .path()
            .join(format!("step-{}.log", step.index + 1));
        let mut running: tokio::task::JoinSet<(usize, Vec<ActionReport>)> =
            tokio::task::JoinSet::new();
        let mut started = vec![false; step.actions.len()];

        /// What ended one wait of the hold.
        enum Woke {
            HoldEnded,
            Due,
            /// An action entry ended, or its task failed (a panic: not known to have run well).
            ActionDone(Option<Result<(usize, Vec<ActionReport>), String>>),
            Aborted,
            Breach(Breach),
            Sample,
        }
        #[derive(PartialEq, Eq)]
        enum End {
            Held,
            Interrupted,
            Failed,
        }
        let end = loop {
            // The faults and actions due now (at once for those without `start_after`).
            let now = Instant::now();
            let faults_now: Vec<usize> = take_due(&mut due_faults, injected_at, now);
            if !faults_now.is_empty() {
                let failures = self.inject_slots(step, step_idx, &faults_now).await;
                last_injection = Instant::now();
                if !failures.is_empty() {
                    self.step_mut().status = StepStatus::Error;
                    self.fail(Verdict::Error, Cause::Apply, failures[0].clone());
                    break End::Failed;
                }
            }
            let actions_now: Vec<usize> = take_due(&mut due_actions, injected_at, now);
            for i in actions_now {
                let action = step.actions[i].clone();
                self.event(
                    "action_started",
                    format!(
                        "step {} `{}`: running `{}` {}",
                        step.index + 1,
                        step.name,
                        action.run,
                        where_it_runs(&action)
                    ),
                    serde_json::json!({"step": step.name, "command": action.run.to_string(), "hosts": action.hosts, "start_after_ms": action.start_after.as_millis() as u64}),
                );
                started[i] = true;
                let work = perform_action(
                    self.hosts.clone(),
                    action,
                    self.scenario.base_dir.clone(),
                    log.clone(),
                    self.abort.clone(),
                );
                running.spawn(async move { (i, work.await) });
            }
            let next_due = due_faults
                .keys()
                .chain(due_actions.keys())
                .min()
                .map(|d| later(injected_at, *d));
            let woke = {
                let guard = self.sampling.guard.as_mut();
                let steady = self.sampling.steady.as_mut().expect("steady monitor");
                tokio::select! {
                    () = until(hold_end) => Woke::HoldEnded,
                    () = sleep_until_opt(next_due) => Woke::Due,
                    done = running.join_next(), if !running.is_empty() => {
                        Woke::ActionDone(done.map(|d| d.map_err(|e| e.to_string())))
                    }
                    () = self.abort.aborted() => Woke::Aborted,
                    // `--for` ran out: end the hold early, then measure recovery as usual.
                    () = self.mode.wound_down() => Woke::HoldEnded,
                    breach = Guard::breached_opt(guard) => Woke::Breach(breach),
                    () = steady.changed() => Woke::Sample,
                }
            };
            match woke {
                Woke::HoldEnded => break End::Held,
                Woke::Due => {}
                Woke::ActionDone(None) => {}
                Woke::ActionDone(Some(Ok((i, reports)))) => {
                    if !self.record_actions(step, Some(i), reports) {
                        if self.abort.is_aborted() {
                            break End::Interrupted;
                        }
                        self.step_mut().status = StepStatus::Error;
                        break End::Failed;
                    }
                }
                Woke::ActionDone(Some(Err(err))) => {
                    self.fail(
                        Verdict::Error,
                        Cause::Action,
                        format!(
                            "an action of step `{}` failed unexpectedly: {err}",
                            step.name
                        ),
                    );
                    self.step_mut().status = StepStatus::Error;
                    break End::Failed;
                }
                Woke::Aborted => break End::Interrupted,
                Woke::Breach(breach) => {
                    self.record_breach(breach, Some(step.name.clone()));
                    break End::Interrupted;
                }
                Woke::Sample => self.note_background_exits(),
            }
        };
        self.live.fault_ends(None);
        if end == End::Interrupted {
            // Recorded before the reverts, so the events show when the abort came.
            self.note_abort();
        }
        if end != End::Held {
            self.cut_short();
            // An action still running is stopped with the step: nothing may outlive the revert's
            // reason to run.
            running.abort_all();
        }
        // Entries never injected say why.
        for slot in due_faults.into_values().flatten() {
            let record = &mut self.record.steps[step_idx].faults[slot];
            record.skipped = true;
            record.detail = "not injected: the step ended before its start_after".to_string();
        }
        let only_kills = step.faults.iter().all(|f| !f.spec.kind().holds());
        self.revert_active().await;
        let fault_end = if only_kills {
            last_injection
        } else {
            Instant::now()
        };
        // Actions still running at the step's end finish (each within its timeout) and count.
        let mut actions_ok = true;
        while let Some(joined) = running.join_next().await {
            match joined {
                Ok((i, reports)) => actions_ok &= self.record_actions(step, Some(i), reports),
                // Cancelled above because the step ended early: its records say so below.
                Err(err) if err.is_cancelled() => {}
                Err(err) => {
                    actions_ok = false;
                    self.fail(
                        Verdict::Error,
                        Cause::Action,
                        format!(
                            "an action of step `{}` failed unexpectedly: {err}",
                            step.name
                        ),
                    );
                }
            }
        }
        for (i, was_started) in started.iter().enumerate() {
            if *was_started && end != End::Held {
                self.mark_cut_short(step, i);
            }
        }
        if end != End::Held || self.abort.is_aborted() {
            if self.abort.is_aborted() {
                self.note_abort();
                self.cut_short();
            }
            if self.step_mut().status != StepStatus::Error {
                self.step_mut().status = StepStatus::Aborted;
            }
            self.close_step(step_started);
            return None;
        }
        if !actions_ok || !self.record.faults_left.is_empty() {
            self.cut_short();
            self.step_mut().status = StepStatus::Error;
            self.close_step(step_started);
            return None;
        }
        Some(fault_end)
    }

    /// Injects the faults of these slots of the current step, all at once (one batch per host)
    /// as far as the run's limit of calls in flight allows; returns what failed. Once the run is
    /// aborted or one of them failed, the batches still waiting for a slot are not sent (their
    /// records say so): the run is ending, and each would only be more faults to revert.
    async fn inject_slots(
        &mut self,
        step: &PlannedStep,
        step_idx: usize,
        slots: &[usize],
    ) -> Vec<String> {
        let stop = self.abort.child_token();
        let mut by_host: BTreeMap<String, Vec<(usize, InjectRequest)>> = BTreeMap::new();
        for &slot in slots {
            let record = &self.record.steps[step_idx].faults[slot];
            let planned = &step.faults[fault_index(step, &record.fault_id)];
            let req = InjectRequest {
                run_id: self.spec.run_id.clone(),
                fault_id: record.fault_id.clone(),
                spec: planned.spec.clone(),
                seed: fault_seed(self.spec.seed, step.index, planned.index, &record.host),
                // A late fault is held until the step's end, like the others.
                hold: Some(step.duration.saturating_sub(planned.start_after)),
                exempt: Vec::new(),
                resolved: None,
            };
            by_host
                .entry(record.host.clone())
                .or_default()
                .push((slot, req));
        }
        let mut injections = tokio::task::JoinSet::new();
        // Each task's slots, so that a task that panics still has its faults recorded (and
        // reverted, since they may be in place) rather than forgotten.
        let mut slots_of = HashMap::new();
        for (host, batch) in by_host {
            let (hosts, stop) = (self.hosts.clone(), stop.clone());
            let batch_slots: Vec<usize> = batch.iter().map(|(slot, _)| *slot).collect();
            let task = injections.spawn(async move {
                let (slots, reqs): (Vec<usize>, Vec<InjectRequest>) = batch.into_iter().unzip();
                match hosts.inject_batch(&host, reqs, &stop).await {
                    Some(results) => slots
                        .into_iter()
                        .zip(results.into_iter().map(Some))
                        .collect(),
                    None => slots
                        .into_iter()
                        .map(|slot| (slot, None))
                        .collect::<Vec<_>>(),
                }
            });
            slots_of.insert(task.id(), batch_slots);
        }
        let mut failures = Vec::new();
        // Each batch's results as it ends, so that a failure stops the batches still waiting.
        while let Some(joined) = injections.join_next_with_id().await {
            let done = match joined {
                Ok((_, done)) => done,
                Err(err) => slots_of
                    .remove(&err.id())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|slot| {
                        let message = format!("the injection's task failed: {err}");
                        (
                            slot,
                            Some(Err(super::hosts::InjectFailure::unknown(message))),
                        )
                    })
                    .collect(),
            };
            for (slot, result) in done {
                let record = &mut self.record.steps[step_idx].faults[slot];
                let Some(result) = result else {
                    record.skipped = true;
                    record.detail = if self.abort.is_aborted() {
                        "not injected: the run was aborted before its call could start"
                    } else {
                        "not injected: another fault of the step failed before its call could start"
                    }
                    .to_string();
                    let (host, fault_id, fault) = (
                        record.host.clone(),
                        record.fault_id.clone(),
                        record.fault.clone(),
                    );
                    let detail = record.detail.clone();
                    self.event(
                        "fault_skipped",
                        format!("{fault} on {host} {detail}"),
                        serde_json::json!({"fault_id": fault_id, "host": host}),
                    );
                    continue;
                };
                if result.is_err() {
                    stop.cancel();
                }
                match result {
                    Ok(applied) => {
                        record.applied_at = Some(applied.applied_at);
                        record.mechanism = Some(applied.mechanism.clone());
                        record.verified = Some(applied.verified);
                        record.affected = applied.affected.clone();
                        record.detail = applied.detail.clone();
                        let (host, fault_id, fault) = (
                            record.host.clone(),
                            record.fault_id.clone(),
                            record.fault.clone(),
                        );
                        self.placed.track(Active {
                            host: host.clone(),
                            fault_id: fault_id.clone(),
                            step: step_idx,
                            slot,
                            uncertain: false,
                        });
                        self.event(
                        "fault_applied",
                        format!(
                            "injected {fault} on {host} via {}{}: {}",
                            applied.mechanism,
                            if applied.verified { ", verified" } else { ", NOT verified" },
                            applied.affected.join(", ")
                        ),
                        serde_json::json!({"fault_id": fault_id, "host": host, "mechanism": applied.mechanism, "verified": applied.verified}),
                    );
                    }
                    Err(failure) => {
                        record.error = Some(failure.message.clone());
                        let msg = format!(
                            "could not inject {} on {}: {}",
                            record.fault, record.host, failure.message
                        );
                        let (host, fault_id) = (record.host.clone(), record.fault_id.clone());
                        let note = if failure.maybe_applied {
                            // It may be in place: reverted by its id like an applied fault, and left
                            // in `faults_left` when that cannot be confirmed.
                            self.placed.track(Active {
                                host: host.clone(),
                                fault_id: fault_id.clone(),
                                step: step_idx,
                                slot,
                                uncertain: true,
                            });
                            "; it may be in place all the same: reverting it"
                        } else {
                            ""
                        };
                        self.event(
                        "fault_failed",
                        format!("{msg}{note}"),
                        serde_json::json!({"fault_id": fault_id, "host": host, "maybe_applied": failure.maybe_applied}),
                    );
                        failures.push(msg);
                    }
                }
            }
        }
        failures
    }

    /// A record per fault and host; `skipped` says why they are not injected.
    fn fault_records(&self, step: &PlannedStep, skipped: Option<&str>) -> Vec<FaultReport> {
        let mut records = Vec::new();
        for fault in &step.faults {
            for host in &fault.hosts {
                records.push(FaultReport {
                    fault_id: format!(
                        "{}-s{}f{}-{host}",
                        self.spec.run_id,
                        step.index + 1,
                        fault.index + 1
                    ),
                    kind: fault.spec.kind().to_string(),
                    fault: fault.spec.to_string(),
                    target: fault.target.clone(),
                    host: host.clone(),
                    skipped: skipped.is_some(),
                    applied_at: None,
                    reverted_at: None,
                    mechanism: None,
                    verified: None,
                    affected: Vec::new(),
                    error: None,
                    detail: skipped.unwrap_or_default().to_string(),
                });
            }
        }
        records
    }

    /// A step not run, with why (`None`: the dry-run wording, since nothing ran before it).
    pub(super) fn skipped_step(&self, step: &PlannedStep, why: Option<&str>) -> StepReport {
        StepReport {
            hosts: step.hosts(),
            faults: self.fault_records(step, Some(why.unwrap_or("dry run: not injected"))),
            recover_within_ms: step.recover_within.as_millis() as u64,
            ..StepReport::new(step.index, step.name.clone(), StepStatus::Skipped)
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => until(at).await,
        None => std::future::pending().await,
    }
}

/// Takes out the entries whose `start_after` has come by `now`, counted from `injected_at`.
fn take_due(
    due: &mut BTreeMap<Duration, Vec<usize>>,
    injected_at: Instant,
    now: Instant,
) -> Vec<usize> {
    let ready: Vec<Duration> = due
        .keys()
        .copied()
        .filter(|d| later(injected_at, *d) <= now)
        .collect();
    ready
        .iter()
        .flat_map(|d| due.remove(d).unwrap_or_default())
        .collect()
}

fn fault_index(step: &PlannedStep, fault_id: &str) -> usize {
    // Fault ids end in `-s{step}f{fault}-{host}`; the position is what we need.
    step.faults
        .iter()
        .position(|f| fault_id.contains(&format!("s{}f{}-", step.index + 1, f.index + 1)))
        .unwrap_or(0)
}
