//! A run's state and its construction, its start, and what the monkey calls.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::guard::Guard;
use super::hosts::Hosts;
use super::hypothesis::millis_between;
use super::lease::LeaseKeeper;
use super::live::{Live, Observer, Phase};
use super::monitor::Monitor;
use super::plan::Plan;
use super::procs::Background;
use super::revert::Active;
use super::{Abort, RunSpec};
use crate::report::model::{
    Breach, CommandOutcome, Event, FaultLeft, ProbeReport, RecoveredFault, StepReport,
};
use crate::report::writer::ReportDir;
use crate::scenario::model::Scenario;

/// A fault to check at preflight: on every host it may go to.
#[derive(Clone)]
pub(crate) struct PreflightFault {
    /// What it belongs to, for messages: ``step `name` ``, `` `monkey` ``.
    pub what: String,
    pub target: String,
    pub hosts: Vec<String>,
    pub spec: agent::spec::FaultSpec,
}

/// Whether the run goes on after a phase.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// What kind of run this is.
pub(crate) enum RunMode {
    /// A scenario's steps, one after another, counted against their total.
    Scenario,
    /// The Chaos Monkey (`crate::monkey`): its faults are numbered, with no total.
    Monkey {
        /// The monkey's fault, preflighted on every host its target may pick (none: the file
        /// has no `monkey:`).
        preflight: Vec<PreflightFault>,
        /// Ends a hold and any wait early without aborting: `--for` running out.
        wind_down: CancellationToken,
        /// The reason given when the run passed, once the monkey has stopped.
        passed_reason: Option<String>,
    },
}

impl RunMode {
    pub(super) fn is_monkey(&self) -> bool {
        matches!(self, RunMode::Monkey { .. })
    }

    /// Faults to preflight beyond the plan's steps.
    fn preflight_faults(&self) -> Vec<PreflightFault> {
        match self {
            RunMode::Monkey { preflight, .. } => preflight.clone(),
            RunMode::Scenario => Vec::new(),
        }
    }

    /// Completes when the run is to wind down; never in a run of steps.
    pub(super) async fn wound_down(&self) {
        match self {
            RunMode::Monkey { wind_down, .. } => wind_down.cancelled().await,
            RunMode::Scenario => std::future::pending().await,
        }
    }

    fn is_wound_down(&self) -> bool {
        match self {
            RunMode::Monkey { wind_down, .. } => wind_down.is_cancelled(),
            RunMode::Scenario => false,
        }
    }

    pub(super) fn passed_reason(&self) -> Option<&str> {
        match self {
            RunMode::Monkey { passed_reason, .. } => passed_reason.as_deref(),
            RunMode::Scenario => None,
        }
    }
}

/// What goes into the report, gathered as the run goes.
pub(super) struct Record {
    pub(super) started_at: DateTime<Utc>,
    pub(super) started: Instant,
    /// Faults an earlier run left, reverted before this one started.
    pub(super) recovered: Vec<RecoveredFault>,
    pub(super) events: Vec<Event>,
    /// Every reason the run did not pass; the verdict is the worst (`finish`).
    pub(super) outcomes: Vec<super::finish::Outcome>,
    pub(super) steps: Vec<StepReport>,
    pub(super) breaches: Vec<Breach>,
    pub(super) faults_left: Vec<FaultLeft>,
    pub(super) setup: Vec<CommandOutcome>,
    pub(super) teardown: Vec<CommandOutcome>,
    /// The samples of probes whose sampling stopped.
    pub(super) probe_reports: Vec<ProbeReport>,
}

/// What the run has put in place and must take back, on every path.
#[derive(Default)]
pub(super) struct Placed {
    /// Faults injected (or maybe injected) and not reverted yet.
    pub(super) active: Vec<Active>,
    /// Setup commands running in the background.
    pub(super) backgrounds: Vec<Background>,
    /// Renews remote agents' leases from the first injection on one until cleanup.
    pub(super) lease: Option<LeaseKeeper>,
    /// Hosts whose agent stopped answering.
    pub(super) lost_hosts: std::collections::BTreeSet<String>,
}

impl Placed {
    /// Tracks a fault that is (or may be) in place until it is reverted: its host's lease is
    /// held from now on, and cleanup reverts it by its id.
    pub(super) fn track(&mut self, fault: Active) {
        if let Some(lease) = &self.lease {
            lease.holds(&fault.host);
        }
        self.active.push(fault);
    }
}

/// The probes sampled in the background: steady-state probes from the first check on, and
/// guardrails, watched for a breach.
#[derive(Default)]
pub(super) struct Sampling {
    pub(super) steady: Option<Monitor>,
    pub(super) guard: Option<Guard>,
    /// When sampling started ahead of the first before-check (a run of steps starts it as its
    /// preflight starts): that check's window may begin then.
    pub(super) early: Option<(DateTime<Utc>, tokio::time::Instant)>,
}

/// One run in progress: the step engine, which the monkey (`crate::monkey`) drives too.
pub(crate) struct Run {
    // What the run was given, the same from its start to its end.
    pub(super) scenario: Arc<Scenario>,
    pub(super) spec: RunSpec,
    pub(super) plan: Plan,
    pub(super) hosts: Hosts,
    pub(super) report_dir: ReportDir,
    pub(super) observer: Arc<dyn Observer>,
    pub(super) abort: Arc<Abort>,
    pub(super) mode: RunMode,
    // What it has done and holds so far.
    /// The live status the observer is shown.
    pub(super) live: Live,
    pub(super) record: Record,
    pub(super) placed: Placed,
    pub(super) sampling: Sampling,
}

/// How the monkey's wait for its next fault ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    /// The run was aborted (recorded).
    Aborted,
    /// The run winds down: `--for` ran out.
    WoundDown,
    /// The time came.
    Came,
}

impl Run {
    pub(crate) fn new(
        scenario: Arc<Scenario>,
        spec: RunSpec,
        hosts: Hosts,
        report_dir: ReportDir,
        observer: Arc<dyn Observer>,
        abort: Arc<Abort>,
        recovered: Vec<RecoveredFault>,
    ) -> Run {
        let plan = Plan::resolve(&scenario, spec.seed);
        let live = Live::new(observer.clone());
        Run {
            scenario,
            spec,
            plan,
            hosts,
            report_dir,
            observer,
            abort,
            mode: RunMode::Scenario,
            live,
            record: Record {
                started_at: Utc::now(),
                started: Instant::now(),
                recovered,
                events: Vec::new(),
                outcomes: Vec::new(),
                steps: Vec::new(),
                breaches: Vec::new(),
                faults_left: Vec::new(),
                setup: Vec::new(),
                teardown: Vec::new(),
                probe_reports: Vec::new(),
            },
            placed: Placed::default(),
            sampling: Sampling::default(),
        }
    }

    pub(crate) fn with_mode(mut self, mode: RunMode) -> Run {
        self.mode = mode;
        self
    }

    /// Refreshes the observer's live status until the returned task is aborted.
    pub(crate) fn start_ticker(&self) -> tokio::task::JoinHandle<()> {
        self.live.start_ticker()
    }

    // ---- what the monkey asks and tells -------------------------------------------------------

    pub(crate) fn seed(&self) -> u64 {
        self.spec.seed
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.abort.is_aborted()
    }

    /// Whether the run winds down (`--for` ran out) without an abort.
    pub(crate) fn is_wound_down(&self) -> bool {
        self.mode.is_wound_down()
    }

    /// Whether a revert failed or could not be verified.
    pub(crate) fn has_faults_left(&self) -> bool {
        !self.record.faults_left.is_empty()
    }

    pub(crate) fn last_step(&self) -> Option<&StepReport> {
        self.record.steps.last()
    }

    /// Records a step that was not run, with why and the before-check that ruled it out.
    pub(crate) fn push_skipped_step(
        &mut self,
        step: &super::plan::PlannedStep,
        why: &str,
        before: Option<crate::report::model::CheckReport>,
    ) {
        let mut report = self.skipped_step(step, Some(why));
        report.before = before;
        report.started_at = Some(Utc::now());
        self.record.steps.push(report);
    }

    /// The reason the run gives when it passed.
    pub(crate) fn passed_because(&mut self, reason: String) {
        if let RunMode::Monkey { passed_reason, .. } = &mut self.mode {
            *passed_reason = Some(reason);
        }
    }

    /// Waits for the monkey's next fault (`None`: for the end), showing it, until `came`, the
    /// run winds down or is aborted (recorded).
    pub(crate) async fn wait_for_fault(
        &mut self,
        next: Option<DateTime<Utc>>,
        came: impl std::future::Future<Output = ()>,
    ) -> Waited {
        self.live.next_fault(next);
        self.live.phase(Phase::Waiting, None);
        let waited = tokio::select! {
            () = self.abort.aborted() => Waited::Aborted,
            () = self.mode.wound_down() => Waited::WoundDown,
            () = came => Waited::Came,
        };
        self.live.next_fault(None);
        if waited == Waited::Aborted {
            self.note_abort();
        }
        waited
    }

    // ---- a run of steps -----------------------------------------------------------------------

    /// A run of steps, from its start to its last step (cleanup is the caller's): the
    /// before-check, then each step with the after-check of the one before as its before-check.
    pub(super) async fn execute(&mut self) {
        if self.begin().await == Flow::Stop {
            return;
        }
        let before = match self.first_check().await {
            Some(check) => check,
            None => return,
        };
        let mut before = Some(before);
        for index in 0..self.plan.steps.len() {
            let step = self.plan.steps[index].clone();
            if self.abort.is_aborted() {
                self.note_abort();
                break;
            }
            match self.run_step(&step, before.take()).await {
                Some(after) => before = Some(after),
                None => break,
            }
        }
        // Steps never reached are reported as skipped.
        for index in self.record.steps.len()..self.plan.steps.len() {
            let step = self.plan.steps[index].clone();
            self.record.steps.push(self.skipped_step(&step, None));
        }
    }

    /// The start every run shares: say so, tell what an earlier run left and was reverted, set
    /// up, and preflight every fault the run may inject (the plan's steps, and the monkey's).
    pub(crate) async fn begin(&mut self) -> Flow {
        self.event(
            "run_started",
            format!(
                "run {} of `{}` started (seed {}{})",
                self.spec.run_id,
                self.scenario.name,
                self.spec.seed,
                if self.spec.dry_run { ", dry run" } else { "" }
            ),
            serde_json::json!({"run_id": self.spec.run_id, "seed": self.spec.seed.to_string(), "dry_run": self.spec.dry_run}),
        );
        for warning in crate::scenario::lint::warnings(&self.scenario) {
            self.event(
                "scenario_warning",
                format!("warning: {warning}"),
                serde_json::json!({}),
            );
        }
        for r in self.record.recovered.clone() {
            self.event(
                "fault_recovered",
                format!(
                    "reverted {} left on {} by run {} that did not end: {}",
                    r.fault, r.host, r.run_id, r.detail
                ),
                serde_json::json!({"fault_id": r.fault_id, "ok": r.ok}),
            );
        }
        if self.setup_phase().await == Flow::Stop {
            return Flow::Stop;
        }
        // A run of steps starts sampling now, so that the first before-check's window can fill
        // while preflight talks to the agents: preflight touches nothing, and the check is
        // decided as it ends instead of a window later. The monkey checks around each fault.
        if matches!(self.mode, RunMode::Scenario) {
            self.start_monitors();
            self.sampling.early = Some((Utc::now(), tokio::time::Instant::now()));
        }
        let mut faults = self.mode.preflight_faults();
        faults.extend(self.plan.steps.iter().flat_map(|step| {
            step.faults.iter().map(|f| PreflightFault {
                what: format!("step `{}`", step.name),
                target: f.target.clone(),
                hosts: f.hosts.clone(),
                spec: f.spec.clone(),
            })
        }));
        self.preflight(faults).await
    }

    /// Records an event: appended to `events.jsonl` at once, shown to the observer, kept for
    /// the report.
    pub(crate) fn event(&mut self, kind: &str, message: String, fields: serde_json::Value) {
        let fields = match fields {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        let event = Event {
            at: Utc::now(),
            kind: kind.to_string(),
            message,
            fields,
        };
        if let Err(err) = self.report_dir.append_event(&event) {
            tracing::warn!(error = %err, "cannot append to events.jsonl");
        }
        self.observer.event(&event);
        self.record.events.push(event);
    }

    pub(super) fn step_mut(&mut self) -> &mut StepReport {
        self.record.steps.last_mut().expect("a step in progress")
    }

    pub(super) fn close_step(&mut self, started: Instant) {
        let step = self.step_mut();
        step.ended_at = Some(Utc::now());
        step.duration_ms = millis_between(started, Instant::now());
    }
}

/// `at + d` without a panic, which would end the run with faults in place. Scenario durations
/// are bounded by `agent::spec::MAX_HOLD`, so the cap never bites a checked file; past the clock's
/// range it is `at` itself, since ending a hold early is the safe side.
pub(super) fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d.min(agent::spec::MAX_HOLD)).unwrap_or(at)
}

/// `sleep_until`, but over as soon as the other tasks have had their turn when `at` has passed:
/// tokio's timer would still wait for its next tick, up to a millisecond, which a `kill`'s 0 s
/// hold or a probe's sample already due would add to the run.
pub(super) async fn until(at: Instant) {
    if at > Instant::now() {
        tokio::time::sleep_until(at).await;
    } else {
        tokio::task::yield_now().await;
    }
}

pub(super) fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
