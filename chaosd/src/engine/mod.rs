//! The run engine: one game day from setup to report, exactly as the spec's "What a run does".
//!
//! Setup, preflight, the before-check, each step (inject on every host at once, hold, revert,
//! after-check), guardrails watched from the first injection, and on every path: revert whatever
//! is in place, stop what setup started, run teardown, and hand back the report.
//!
//! **Architecture Invariant:** every fault that an agent accepted, or may have (an apply sent but
//! not clearly answered), is in `Run::active` until a revert of it has returned; the cleanup path
//! reverts everything left there and does not look at the abort signal, so a second Ctrl-C cannot
//! skip a revert.

pub mod answers;
pub mod hosts;
pub mod hypothesis;
pub mod impact;
pub mod lease;
pub mod live;
pub mod monitor;
pub mod plan;
pub mod procs;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::local::InjectRequest;
use chrono::{DateTime, Utc};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use self::hosts::Hosts;
use self::hypothesis::{
    Point, Recovery, SeriesView, hypothesis_holds, judge_recovery, millis_between,
};
use self::live::{Live, Observer, Phase};
use self::monitor::{Monitor, Series};
use self::plan::{Plan, PlannedAction, PlannedStep, fault_seed};
use self::procs::Background;
use crate::report::model::{
    ActionReport, Breach, Cause, CheckReport, CommandOutcome, Event, FaultLeft, FaultReport,
    ManualReport, ProbeCheck, ProbeImpact, ProbeRole, RecoveredFault, Report, SCHEMA, ScenarioRef,
    StepReport, StepStatus, Verdict,
};
use crate::report::writer::ReportDir;
use crate::scenario::format_duration;
use crate::scenario::model::{LOCAL_HOST, Manual, Scenario};

/// How long one teardown command may take before it is killed.
pub const TEARDOWN_LIMIT: Duration = Duration::from_secs(120);

/// What a run is asked to do, beyond the scenario itself.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub run_id: String,
    pub seed: u64,
    pub labels: BTreeMap<String, String>,
    pub dry_run: bool,
    /// Who started the run, and where: recorded in the report.
    pub user: String,
    pub host: String,
    /// Where a `manual` step's answer comes from: the caller keeps a clone to answer through.
    pub answers: Arc<answers::Answers>,
}

impl RunSpec {
    /// A run started by this process, as its user on this host.
    pub fn new(
        run_id: String,
        seed: u64,
        labels: BTreeMap<String, String>,
        dry_run: bool,
    ) -> RunSpec {
        RunSpec {
            run_id,
            seed,
            labels,
            dry_run,
            user: user_name(),
            host: host_name(),
            answers: Arc::default(),
        }
    }
}

/// This process's user: its name, else `$USER`, else the uid.
fn user_name() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| uid.to_string())
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// A request to stop a run early: Ctrl-C, SIGTERM, `chaosctl abort`. Only the first reason is kept.
#[derive(Default)]
pub struct Abort {
    token: CancellationToken,
    why: Mutex<Option<(Cause, String)>>,
}

impl Abort {
    pub fn new() -> Arc<Abort> {
        Arc::new(Abort::default())
    }

    pub fn abort(&self, cause: Cause, reason: impl Into<String>) {
        self.why
            .lock()
            .expect("abort lock")
            .get_or_insert_with(|| (cause, reason.into()));
        self.token.cancel();
    }

    pub fn is_aborted(&self) -> bool {
        self.token.is_cancelled()
    }

    pub async fn aborted(&self) {
        self.token.cancelled().await;
    }

    fn reason(&self) -> (Cause, String) {
        self.why
            .lock()
            .expect("abort lock")
            .clone()
            .unwrap_or((Cause::Signal, "aborted".to_string()))
    }
}

/// The report, and the folder it belongs in (not yet written: the caller writes it).
pub struct RunResult {
    pub report: Report,
    pub report_dir: ReportDir,
}

/// Runs a validated scenario to its end and returns its report.
pub async fn run(
    scenario: Arc<Scenario>,
    spec: RunSpec,
    hosts: Hosts,
    report_dir: ReportDir,
    observer: Arc<dyn Observer>,
    abort: Arc<Abort>,
    recovered: Vec<RecoveredFault>,
) -> RunResult {
    let mut run = Run::new(
        scenario, spec, hosts, report_dir, observer, abort, recovered,
    );
    let ticker = run.live.start_ticker();
    run.execute().await;
    run.cleanup().await;
    ticker.abort();
    run.finish()
}

/// A fault to check at preflight: on every host it may go to.
#[derive(Clone)]
pub(crate) struct PreflightFault {
    /// What it belongs to, for messages: ``step `name` ``, `` `monkey` ``.
    pub what: String,
    pub target: String,
    pub hosts: Vec<String>,
    pub spec: agent::spec::FaultSpec,
}

/// An injected fault not yet reverted.
struct Active {
    host: String,
    fault_id: String,
    /// Where its record is: step and position in that step's `faults`.
    step: usize,
    slot: usize,
    /// Its apply failed without a clear answer: it may be in place. A revert that finds the agent
    /// knows no such fault shows it never was.
    uncertain: bool,
}

/// Why the run stopped early, or how it ended.
#[derive(Debug, Clone)]
struct Outcome {
    verdict: Verdict,
    cause: Cause,
    reason: String,
}

/// Whether the run goes on after a phase.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// One run in progress: the step engine, which the monkey (`crate::monkey`) drives too.
pub(crate) struct Run {
    started_at: DateTime<Utc>,
    started: Instant,
    pub(crate) scenario: Arc<Scenario>,
    pub(crate) spec: RunSpec,
    pub(crate) plan: Plan,
    hosts: Hosts,
    report_dir: ReportDir,
    observer: Arc<dyn Observer>,
    pub(crate) live: Live,
    pub(crate) abort: Arc<Abort>,
    recovered: Vec<RecoveredFault>,
    events: Vec<Event>,
    outcomes: Vec<Outcome>,
    pub(crate) steps: Vec<StepReport>,
    breaches: Vec<Breach>,
    active: Vec<Active>,
    pub(crate) faults_left: Vec<FaultLeft>,
    backgrounds: Vec<Background>,
    setup: Vec<CommandOutcome>,
    teardown: Vec<CommandOutcome>,
    steady: Option<Monitor>,
    guard: Option<Guard>,
    probe_reports: Vec<crate::report::model::ProbeReport>,
    /// Hosts whose agent stopped answering.
    lost_hosts: std::collections::BTreeSet<String>,
    /// Renews remote agents' leases from the first injection on one until cleanup.
    lease: Option<lease::LeaseKeeper>,
    /// Ends a hold and any wait early without aborting: the monkey's `--for` running out.
    /// Never cancelled in a run of steps.
    pub(crate) wind_down: CancellationToken,
    /// A monkey run: its faults are numbered, not counted against a total of steps.
    pub(crate) monkey: bool,
    /// The reason given when the run passed, if not the one of a run of steps.
    pub(crate) passed_reason: Option<String>,
    /// Faults to preflight beyond the plan's steps: the monkey's, on every host it may pick.
    pub(crate) preflight_faults: Vec<PreflightFault>,
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
            started_at: Utc::now(),
            started: Instant::now(),
            scenario,
            spec,
            plan,
            hosts,
            report_dir,
            observer,
            live,
            abort,
            recovered,
            events: Vec::new(),
            outcomes: Vec::new(),
            steps: Vec::new(),
            breaches: Vec::new(),
            active: Vec::new(),
            faults_left: Vec::new(),
            backgrounds: Vec::new(),
            setup: Vec::new(),
            teardown: Vec::new(),
            steady: None,
            guard: None,
            probe_reports: Vec::new(),
            lost_hosts: Default::default(),
            lease: None,
            wind_down: CancellationToken::new(),
            monkey: false,
            passed_reason: None,
            preflight_faults: Vec::new(),
        }
    }

    // ---- the phases ---------------------------------------------------------------------------

    async fn execute(&mut self) {
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
        for index in self.steps.len()..self.plan.steps.len() {
            let step = self.plan.steps[index].clone();
            self.steps.push(self.skipped_step(&step, None));
        }
    }

    /// The start every run shares: say so, tell what an earlier run left and was reverted, set
    /// up, and preflight every fault the run may inject (the plan's steps, or `extra`).
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
        for r in self.recovered.clone() {
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
        let mut faults = self.preflight_faults.clone();
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

    async fn setup_phase(&mut self) -> Flow {
        if self.scenario.setup.is_empty() {
            return Flow::Continue;
        }
        self.live.phase(Phase::Setup, None);
        let scenario = self.scenario.clone();
        for (i, entry) in scenario.setup.iter().enumerate() {
            if self.abort.is_aborted() {
                self.note_abort();
                return Flow::Stop;
            }
            let log = self.report_dir.path().join(format!("setup-{}.log", i + 1));
            if entry.background {
                match Background::start(&entry.name, &entry.run, &scenario.base_dir, &log) {
                    Ok(bg) => {
                        self.event(
                            "setup_started",
                            format!("setup `{}` started in the background (pid {})", entry.name, bg.pid),
                            serde_json::json!({"name": entry.name, "pid": bg.pid, "command": entry.run.to_string()}),
                        );
                        self.setup.push(CommandOutcome {
                            name: entry.name.clone(),
                            command: entry.run.to_string(),
                            background: true,
                            ok: true,
                            started_at: bg.started_at,
                            ended_at: None,
                            exit_code: None,
                            detail: format!("pid {}, output in {}", bg.pid, file_name(&log)),
                        });
                        self.backgrounds.push(bg);
                    }
                    Err(err) => {
                        return self.setup_failed(&entry.name, &entry.run.to_string(), true, err);
                    }
                }
            } else {
                self.event(
                    "setup_started",
                    format!("setup `{}` running", entry.name),
                    serde_json::json!({"name": entry.name, "command": entry.run.to_string()}),
                );
                let abort = self.abort.clone();
                let done =
                    procs::run_foreground(&entry.run, &scenario.base_dir, &log, None, async move {
                        abort.aborted().await
                    })
                    .await;
                let ok = done.ok();
                self.setup
                    .push(done.outcome(&entry.name, &entry.run, &file_name(&log)));
                if self.abort.is_aborted() {
                    self.note_abort();
                    return Flow::Stop;
                }
                if !ok {
                    let reason = format!(
                        "setup `{}` failed ({}); see {}",
                        entry.name,
                        done.describe(),
                        log.display()
                    );
                    self.fail(Verdict::Error, Cause::Setup, reason);
                    return Flow::Stop;
                }
                self.event(
                    "setup_done",
                    format!("setup `{}` finished ({})", entry.name, done.describe()),
                    serde_json::json!({"name": entry.name}),
                );
            }
            // The background command just started, whose early failure ends the wait.
            let watched = entry.background.then(|| self.backgrounds.len() - 1);
            if let Some(ready) = &entry.ready
                && self.wait_ready(&entry.name, ready, watched).await == Flow::Stop
            {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    fn setup_failed(&mut self, name: &str, command: &str, background: bool, err: String) -> Flow {
        self.setup.push(CommandOutcome {
            name: name.to_string(),
            command: command.to_string(),
            background,
            ok: false,
            started_at: Utc::now(),
            ended_at: Some(Utc::now()),
            exit_code: None,
            detail: err.clone(),
        });
        self.fail(
            Verdict::Error,
            Cause::Setup,
            format!("setup `{name}` failed: {err}"),
        );
        Flow::Stop
    }

    /// A `ready` probe must pass once within its `within`. When `background` (an index into
    /// `backgrounds`) exits with a failure first, the run fails at once with the end of its
    /// output: waiting on could only blame whatever else answers the probe. One that exits 0
    /// (a daemon that forked) is waited for as before.
    async fn wait_ready(
        &mut self,
        name: &str,
        ready: &crate::scenario::model::Ready,
        background: Option<usize>,
    ) -> Flow {
        let deadline = later(Instant::now(), ready.within);
        let mut last;
        loop {
            let sample = tokio::select! {
                () = self.abort.aborted() => {
                    self.note_abort();
                    return Flow::Stop;
                }
                s = crate::probe::sample(&ready.probe) => s,
            };
            self.note_background_exits();
            if let Some(reason) = background.and_then(|i| failed_before_ready(&self.backgrounds[i]))
            {
                self.fail(
                    Verdict::Error,
                    Cause::Setup,
                    format!("setup `{name}` {reason}"),
                );
                return Flow::Stop;
            }
            if sample.ok {
                self.event(
                    "setup_ready",
                    format!("setup `{name}` is ready ({})", sample.reason),
                    serde_json::json!({"name": name}),
                );
                return Flow::Continue;
            }
            last = sample.reason;
            let next = Instant::now() + Duration::from_millis(100);
            if next > deadline {
                break;
            }
            tokio::select! {
                () = self.abort.aborted() => {
                    self.note_abort();
                    return Flow::Stop;
                }
                () = sleep_until(next) => {}
            }
        }
        let reason = format!(
            "setup `{name}` was not ready within {}: {last}",
            format_duration(ready.within)
        );
        self.fail(Verdict::Error, Cause::Setup, reason);
        Flow::Stop
    }

    /// Reach every agent, check every fault on every host it will go to, and every `on:` host:
    /// one request per host, all hosts at once.
    async fn preflight(&mut self, faults: Vec<PreflightFault>) -> Flow {
        self.live.phase(Phase::Preflight, None);
        let mut problems = Vec::new();
        let mut per_host: BTreeMap<String, Vec<agent::spec::FaultSpec>> = BTreeMap::new();
        for p in self
            .scenario
            .steady_state
            .iter()
            .chain(&self.scenario.guardrails)
        {
            for host in self.plan.hosts_of(&p.on) {
                per_host.entry(host).or_default();
            }
        }
        // An action's hosts must answer, and their policy must let it run: a runbook refused
        // halfway through a game day would leave it with faults in and nobody's plan.
        let mut command_checks = tokio::task::JoinSet::new();
        for step in &self.plan.steps {
            for action in step.action.iter().chain(&step.actions) {
                let Some(on) = &action.on else { continue };
                if action.hosts.is_empty() {
                    problems.push(format!(
                        "step `{}`: the action's `on: {on}` picks no host",
                        step.name
                    ));
                }
                for host in &action.hosts {
                    per_host.entry(host.clone()).or_default();
                    let (hosts, host, run) = (self.hosts.clone(), host.clone(), action.run.clone());
                    let (timeout, step) = (action.timeout, step.name.clone());
                    command_checks.spawn(async move {
                        hosts
                            .command_allowed(&host, &run, timeout)
                            .await
                            .map_err(|e| format!("{host}: step `{step}` runs `{run}` there: {e}"))
                    });
                }
            }
        }
        while let Some(joined) = command_checks.join_next().await {
            if let Ok(Err(problem)) = joined {
                problems.push(problem);
            }
        }
        for fault in faults {
            if fault.hosts.is_empty() {
                problems.push(format!(
                    "{}: target `{}` picks no host",
                    fault.what, fault.target
                ));
            }
            for host in &fault.hosts {
                per_host
                    .entry(host.clone())
                    .or_default()
                    .push(fault.spec.clone());
            }
        }
        let mut checks = tokio::task::JoinSet::new();
        for (host, faults) in per_host {
            let hosts = self.hosts.clone();
            checks.spawn(async move {
                let result = hosts.preflight(&host, faults).await;
                (host, result)
            });
        }
        let mut results: Vec<(String, Result<(), Vec<String>>)> = Vec::new();
        while let Some(joined) = checks.join_next().await {
            match joined {
                Ok(result) => results.push(result),
                Err(err) => problems.push(format!("a preflight check failed: {err}")),
            }
        }
        results.sort_by(|a, b| a.0.cmp(&b.0));
        for (host, result) in results {
            if let Err(found) = result {
                problems.extend(found.into_iter().map(|p| format!("{host}: {p}")));
            }
        }
        problems.dedup();
        if problems.is_empty() {
            self.event(
                "preflight_passed",
                "preflight passed".to_string(),
                serde_json::json!({}),
            );
            return Flow::Continue;
        }
        for p in &problems {
            self.event("preflight_failed", p.clone(), serde_json::json!({}));
        }
        let reason = if problems.len() == 1 {
            format!("preflight failed: {}", problems[0])
        } else {
            format!(
                "preflight failed with {} problems; first: {}",
                problems.len(),
                problems[0]
            )
        };
        self.fail(Verdict::Error, Cause::Preflight, reason);
        Flow::Stop
    }

    /// Step 1's before-check: the hypothesis and the guardrails over one whole window. `None`
    /// ends the run.
    async fn first_check(&mut self) -> Option<CheckReport> {
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
            self.steps.push(report);
        }
        None
    }

    /// Starts sampling the steady-state probes and the guardrails, each once.
    fn start_monitors(&mut self) {
        let scenario = self.scenario.clone();
        let plan = self.plan.clone();
        if self.steady.is_none() {
            let monitor = Monitor::start(
                &scenario.steady_state,
                ProbeRole::SteadyState,
                |on| plan.hosts_of(on),
                &self.hosts,
            );
            self.live.watch(&monitor.series);
            self.steady = Some(monitor);
        }
        if self.guard.is_none() && !scenario.guardrails.is_empty() {
            let monitor = Monitor::start(
                &scenario.guardrails,
                ProbeRole::Guardrail,
                |on| plan.hosts_of(on),
                &self.hosts,
            );
            self.live.watch(&monitor.series);
            self.guard = Some(Guard::new(monitor));
        }
    }

    /// A before-check: the hypothesis and the guardrails over one whole window of fresh
    /// samples, starting their sampling if it is not running. `None` when the run was aborted
    /// (recorded) or winds down first.
    pub(crate) async fn check_before(&mut self) -> Option<(bool, CheckReport)> {
        self.live.phase(Phase::Check, None);
        self.start_monitors();
        let started_at = Utc::now();
        let since = Instant::now();
        self.event(
            "check_started",
            if self.guard.is_some() {
                "checking the steady-state hypothesis and the guardrails"
            } else {
                "checking the steady-state hypothesis"
            }
            .to_string(),
            serde_json::json!({}),
        );
        loop {
            let mut series = self
                .steady
                .as_ref()
                .expect("steady monitor")
                .snapshot()
                .series;
            if let Some(guard) = &self.guard {
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
            let steady = self.steady.as_mut().expect("steady monitor");
            let guard = self.guard.as_mut().map(|g| &mut g.monitor);
            tokio::select! {
                () = self.abort.aborted() => {
                    self.note_abort();
                    return None;
                }
                () = self.wind_down.cancelled() => return None,
                () = steady.changed() => {}
                () = Monitor::changed_opt(guard) => {}
            }
            self.note_background_exits();
        }
    }

    /// One step: inject, hold, revert, after-check. Returns the after-check when the run goes on.
    pub(crate) async fn run_step(
        &mut self,
        step: &PlannedStep,
        before: Option<CheckReport>,
    ) -> Option<CheckReport> {
        // A monkey's faults are numbered, with no total: the live status shows 0 for it.
        let total = if self.monkey {
            0
        } else {
            self.plan.steps.len()
        };
        self.live
            .phase(Phase::Step, Some((step.index, total, step.name.clone())));
        let step_started = Instant::now();
        let mut report = StepReport {
            index: step.index,
            name: step.name.clone(),
            status: StepStatus::Passed,
            hosts: step.hosts(),
            faults: Vec::new(),
            started_at: Some(Utc::now()),
            ended_at: None,
            duration_ms: 0,
            recover_within_ms: step.recover_within.as_millis() as u64,
            before,
            after: None,
            impact_ms: None,
            recovery_ms: None,
            impact: Vec::new(),
            impact_until: None,
            objectives: None,
            actions: Vec::new(),
            manual: None,
        };
        self.event(
            "step_started",
            if self.monkey {
                format!("`{}` started", step.name)
            } else {
                format!("step {}/{total} `{}` started", step.index + 1, step.name)
            },
            serde_json::json!({"step": step.name, "index": step.index}),
        );

        // Guardrails were checked with the before-check; from the first injection on, a window
        // that does not hold is a breach.
        self.start_monitors();
        if let Some(guard) = &mut self.guard {
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
            self.steps.push(report);
            Instant::now()
        } else if let Some(action) = &step.action {
            self.steps.push(report);
            self.action_step(step, action, step_started).await?
        } else if let Some(manual) = &step.manual {
            self.steps.push(report);
            self.manual_step(step, manual, step_started).await?
        } else {
            report.faults = self.fault_records(step, None);
            self.steps.push(report);
            self.inject_and_hold(step, step_started).await?
        };

        // The after-check: the hypothesis must hold a whole window starting within recover_within.
        self.live.phase(
            Phase::AfterCheck,
            Some((step.index, total, step.name.clone())),
        );
        let check_started_at = Utc::now();
        let deadline = later(fault_end, step.recover_within);
        let verdict = loop {
            let snapshot = self.steady.as_ref().expect("steady monitor").snapshot();
            match judge_recovery(&snapshot.views(), fault_end, deadline) {
                Recovery::Pending => {}
                decided => break Some((decided, snapshot)),
            }
            let guard = self.guard.as_mut();
            let steady = self.steady.as_mut().expect("steady monitor");
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
            (!step.objectives.is_empty()).then(|| self::impact::judge(&step.objectives, &impact));

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
            .flat_map(|o| o.misses.iter().map(self::impact::describe_miss))
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
            let steady = self.steady.as_mut().expect("steady monitor");
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

    /// Marks where the current step's impact window ends when it is cut short (an abort, a
    /// failed injection): its figures are measured at the end of the run, once the samples
    /// under way have finished.
    fn cut_short(&mut self) {
        let step = self.step_mut();
        step.impact_until.get_or_insert_with(Utc::now);
    }

    /// Each steady-state probe's figures on each host over `[from, until)`, from the samples
    /// recorded so far (while the run goes on) or kept for the report (at its end).
    fn measure_impact(&self, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<ProbeImpact> {
        let reports: Vec<crate::report::model::ProbeReport> = match &self.steady {
            Some(steady) => steady.series.iter().map(|s| s.report()).collect(),
            None => self.probe_reports.clone(),
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
                self::impact::measure(
                    self::impact::Series {
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
    fn measure_cut_short_steps(&mut self) {
        for i in 0..self.steps.len() {
            let step = &self.steps[i];
            let (Some(from), true) = (step.started_at, step.impact.is_empty()) else {
                continue;
            };
            if step.status == StepStatus::Skipped && step.after.is_none() {
                continue;
            }
            let until = step.impact_until.or(step.ended_at).unwrap_or_else(Utc::now);
            let impact = self.measure_impact(from, until);
            let step = &mut self.steps[i];
            step.impact_until = Some(until);
            step.impact = impact;
        }
    }

    /// A record per run of each of the step's actions (its `action`, then its `action` entries),
    /// each not run yet, with why.
    fn action_records(&self, step: &PlannedStep, why: &str) -> Vec<ActionReport> {
        let log = format!("step-{}.log", step.index + 1);
        step.action
            .iter()
            .chain(&step.actions)
            .flat_map(|action| {
                action_hosts(action).into_iter().map(|host| ActionReport {
                    command: action.run.to_string(),
                    host,
                    skipped: true,
                    start_after_ms: action.start_after.as_millis() as u64,
                    started_at: None,
                    ended_at: None,
                    duration_ms: 0,
                    exit_code: None,
                    ok: false,
                    timed_out: false,
                    log: log.clone(),
                    detail: why.to_string(),
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
    fn record_actions(
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
    fn mark_cut_short(&mut self, step: &PlannedStep, i: usize) {
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
    async fn action_step(
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
                let guard = if breached { None } else { self.guard.as_mut() };
                let steady = self.steady.as_mut().expect("steady monitor");
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

    /// A `manual` step: ask, and wait for a confirmation, a refusal, the timeout, an abort or a
    /// guardrail's breach. Returns when confirmed, or `None`.
    async fn manual_step(
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
                let guard = self.guard.as_mut();
                let steady = self.steady.as_mut().expect("steady monitor");
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

    /// Injects the step's faults on all their hosts (each entry at its `start_after`), runs its
    /// `action` entries at theirs, holds until the step's end, reverts. Returns when the faults
    /// ended, or `None` when the run must stop.
    async fn inject_and_hold(
        &mut self,
        step: &PlannedStep,
        step_started: Instant,
    ) -> Option<Instant> {
        if self.lease.is_none() && step.hosts().iter().any(|h| h != LOCAL_HOST) {
            self.lease = Some(lease::LeaseKeeper::start(
                self.hosts.clone(),
                self.abort.clone(),
            ));
        }
        let step_idx = self.steps.len() - 1;
        self.steps[step_idx].actions =
            self.action_records(step, "not run: the step ended before its start_after");
        // Slots (positions in the step's fault records) by when they are due.
        let mut due_faults: BTreeMap<Duration, Vec<usize>> = BTreeMap::new();
        for (slot, record) in self.steps[step_idx].faults.iter().enumerate() {
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
                let guard = self.guard.as_mut();
                let steady = self.steady.as_mut().expect("steady monitor");
                tokio::select! {
                    () = sleep_until(hold_end) => Woke::HoldEnded,
                    () = sleep_until_opt(next_due) => Woke::Due,
                    done = running.join_next(), if !running.is_empty() => {
                        Woke::ActionDone(done.map(|d| d.map_err(|e| e.to_string())))
                    }
                    () = self.abort.aborted() => Woke::Aborted,
                    // `--for` ran out: end the hold early, then measure recovery as usual.
                    () = self.wind_down.cancelled() => Woke::HoldEnded,
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
            let record = &mut self.steps[step_idx].faults[slot];
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
        if !actions_ok || !self.faults_left.is_empty() {
            self.cut_short();
            self.step_mut().status = StepStatus::Error;
            self.close_step(step_started);
            return None;
        }
        Some(fault_end)
    }

    /// Injects the faults of these slots of the current step, all at once; returns what failed.
    async fn inject_slots(
        &mut self,
        step: &PlannedStep,
        step_idx: usize,
        slots: &[usize],
    ) -> Vec<String> {
        let mut injections = tokio::task::JoinSet::new();
        for &slot in slots {
            let record = &self.steps[step_idx].faults[slot];
            let planned = &step.faults[fault_index(step, &record.fault_id)];
            let req = InjectRequest {
                run_id: self.spec.run_id.clone(),
                fault_id: record.fault_id.clone(),
                spec: planned.spec.clone(),
                seed: fault_seed(self.spec.seed, step.index, planned.index, &record.host),
                // A late fault is held until the step's end, like the others.
                hold: Some(step.duration.saturating_sub(planned.start_after)),
                exempt: Vec::new(),
            };
            let hosts = self.hosts.clone();
            let host = record.host.clone();
            injections.spawn(async move { (slot, hosts.inject(&host, req).await) });
        }
        let mut failures = Vec::new();
        while let Some(joined) = injections.join_next().await {
            let Ok((slot, result)) = joined else { continue };
            let record = &mut self.steps[step_idx].faults[slot];
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
                    if let Some(lease) = &self.lease {
                        lease.holds(&host);
                    }
                    self.active.push(Active {
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
                        if let Some(lease) = &self.lease {
                            lease.holds(&host);
                        }
                        self.active.push(Active {
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
        failures
    }

    /// Reverts every active fault, all at once. Never looks at the abort signal.
    async fn revert_active(&mut self) {
        if self.active.is_empty() {
            return;
        }
        self.live.phase(Phase::Reverting, None);
        let mut reverts = tokio::task::JoinSet::new();
        for active in self.active.drain(..) {
            let hosts = self.hosts.clone();
            reverts.spawn(async move {
                let result = hosts.revert(&active.host, &active.fault_id).await;
                (active, result)
            });
        }
        while let Some(joined) = reverts.join_next().await {
            let Ok((active, result)) = joined else {
                continue;
            };
            if let Some(lease) = &self.lease {
                lease.released(&active.host);
            }
            let record = &mut self.steps[active.step].faults[active.slot];
            let (host, fault_id, fault, kind) = (
                record.host.clone(),
                record.fault_id.clone(),
                record.fault.clone(),
                record.kind.clone(),
            );
            match result {
                Err(failure) if active.uncertain && failure.unknown => {
                    self.event(
                        "fault_not_applied",
                        format!(
                            "{fault} was not in place on {host}: its agent knows no such fault"
                        ),
                        serde_json::json!({"fault_id": fault_id, "host": host}),
                    );
                }
                Ok(reverted) if reverted.verified => {
                    record.reverted_at = Some(reverted.reverted_at);
                    self.event(
                        "fault_reverted",
                        format!("reverted {fault} on {host}: {}", reverted.detail),
                        serde_json::json!({"fault_id": fault_id, "host": host, "verified": true}),
                    );
                }
                Ok(reverted) => {
                    record.reverted_at = Some(reverted.reverted_at);
                    record.verified = Some(false);
                    let reason = format!(
                        "the revert of {fault} on {host} could not be confirmed: {}; check the host and run `chaosctl revert --all`",
                        reverted.detail
                    );
                    self.left(host, fault_id, kind, fault, reason);
                }
                Err(failure) if failure.unreachable => {
                    let reason = format!(
                        "cannot reach the agent of {host} to revert {fault}: {}; the agent reverts it \
                         on its own once our lease of {} runs out; check with `chaosctl agents`",
                        failure.message,
                        format_duration(self.hosts.lease())
                    );
                    record.error = Some(failure.message);
                    self.lost(&host, reason.clone());
                    self.left(host, fault_id, kind, fault, reason);
                }
                Err(failure) => {
                    let reason = format!(
                        "the revert of {fault} on {host} failed: {}; run `chaosctl revert --all`",
                        failure.message
                    );
                    record.error = Some(failure.message);
                    self.left(host, fault_id, kind, fault, reason);
                }
            }
        }
    }

    /// Records an agent as lost, once per host.
    fn lost(&mut self, host: &str, reason: String) {
        if self.lost_hosts.insert(host.to_string()) {
            self.event(
                "agent_lost",
                reason.clone(),
                serde_json::json!({"host": host}),
            );
            self.fail(Verdict::Error, Cause::AgentLost, reason);
        }
    }

    fn left(
        &mut self,
        host: String,
        fault_id: String,
        kind: String,
        fault: String,
        reason: String,
    ) {
        self.event(
            "revert_failed",
            reason.clone(),
            serde_json::json!({"fault_id": fault_id, "host": host}),
        );
        self.fail(Verdict::Error, Cause::Revert, reason.clone());
        self.faults_left.push(FaultLeft {
            host,
            fault_id,
            kind,
            fault,
            reason,
        });
    }

    /// The path every run takes at its end, whatever happened: revert, stop sampling, stop what
    /// setup started, run teardown.
    pub(crate) async fn cleanup(&mut self) {
        self.revert_active().await;
        if let Some(lease) = self.lease.take() {
            lease.stop().await;
        }
        self.note_abort();
        self.stop_monitors().await;
        self.note_background_exits();
        if !self.backgrounds.is_empty() {
            self.live.phase(Phase::Teardown, None);
        }
        let mut backgrounds = std::mem::take(&mut self.backgrounds);
        for bg in &mut backgrounds {
            let how = bg.stop().await;
            self.event(
                "setup_stopped",
                format!("setup `{}` {how}", bg.name),
                serde_json::json!({"name": bg.name}),
            );
            if let Some(outcome) = self
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
        let guard = match self.guard.take() {
            Some(guard) => guard.monitor.stop().await,
            None => Vec::new(),
        };
        let steady = match self.steady.take() {
            Some(steady) => steady.stop().await,
            None => Vec::new(),
        };
        self.live.unwatch();
        for report in steady.into_iter().chain(guard) {
            match self
                .probe_reports
                .iter_mut()
                .find(|r| r.role == report.role && r.name == report.name && r.host == report.host)
            {
                Some(existing) => existing.samples.extend(report.samples),
                None => self.probe_reports.push(report),
            }
        }
        let steady_first = |r: &crate::report::model::ProbeReport| r.role != ProbeRole::SteadyState;
        self.probe_reports.sort_by_key(steady_first);
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
            self.teardown
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
            if !ok && self.outcomes.is_empty() {
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
            serde_json::json!({"verdict": outcome.verdict.as_str(), "faults_left": self.faults_left.len()}),
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
            started_at: self.started_at,
            ended_at,
            duration_ms: millis_between(self.started, Instant::now()),
            faults_left: self.faults_left,
            recovered: self.recovered,
            setup: self.setup,
            teardown: self.teardown,
            steps: self.steps,
            breaches: self.breaches,
            probes: self.probe_reports,
            events: self.events,
        };
        RunResult {
            report,
            report_dir: self.report_dir,
        }
    }

    // ---- verdicts -----------------------------------------------------------------------------

    pub(crate) fn fail(&mut self, verdict: Verdict, cause: Cause, reason: String) {
        self.outcomes.push(Outcome {
            verdict,
            cause,
            reason,
        });
    }

    /// Records the abort's reason once, as an outcome.
    pub(crate) fn note_abort(&mut self) {
        if !self.abort.is_aborted() || self.outcomes.iter().any(|o| o.verdict == Verdict::Aborted) {
            return;
        }
        let (cause, reason) = self.abort.reason();
        if cause == Cause::AgentLost {
            // Not an abort but an error, recorded per lost host.
            let lost = self
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
        for o in &self.outcomes {
            if best.is_none_or(|b| rank(o.verdict) > rank(b.verdict)) {
                best = Some(o);
            }
        }
        // A lost agent explains the faults it may still hold; otherwise a failed revert is the
        // cause users must hear about first.
        if let Some(o) = self
            .outcomes
            .iter()
            .find(|o| o.cause == Cause::AgentLost)
            .or_else(|| self.outcomes.iter().find(|o| o.cause == Cause::Revert))
        {
            best = Some(o);
        }
        best.cloned().unwrap_or_else(|| Outcome {
            verdict: Verdict::Passed,
            cause: Cause::Hypothesis,
            reason: if let Some(reason) = &self.passed_reason {
                reason.clone()
            } else if self.spec.dry_run {
                "dry run: the hypothesis held at every check; no fault was injected".to_string()
            } else {
                "the hypothesis held before and after every step".to_string()
            },
        })
    }

    // ---- records ------------------------------------------------------------------------------

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
        self.events.push(event);
    }

    fn note_background_exits(&mut self) {
        let mut exits = Vec::new();
        for bg in &mut self.backgrounds {
            if let Some((at, status)) = bg.poll_exit() {
                let how = match &status {
                    Ok(s) => procs::describe_status(*s),
                    Err(e) => e.clone(),
                };
                exits.push((bg.name.clone(), at, how, status.ok().and_then(|s| s.code())));
            }
        }
        for (name, at, how, code) in exits {
            if let Some(outcome) = self
                .setup
                .iter_mut()
                .find(|o| o.background && o.name == name)
            {
                outcome.ended_at = Some(at);
                outcome.exit_code = code;
            }
            self.event(
                "setup_exited",
                format!("background setup `{name}` exited early ({how})"),
                serde_json::json!({"name": name}),
            );
        }
    }

    fn record_breach(&mut self, breach: Breach, step: Option<String>) {
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
        self.breaches.push(breach);
        self.abort.abort(Cause::Guardrail, reason);
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
    pub(crate) fn skipped_step(&self, step: &PlannedStep, why: Option<&str>) -> StepReport {
        StepReport {
            index: step.index,
            name: step.name.clone(),
            status: StepStatus::Skipped,
            hosts: step.hosts(),
            faults: self.fault_records(step, Some(why.unwrap_or("dry run: not injected"))),
            started_at: None,
            ended_at: None,
            duration_ms: 0,
            recover_within_ms: step.recover_within.as_millis() as u64,
            before: None,
            after: None,
            impact_ms: None,
            recovery_ms: None,
            impact: Vec::new(),
            impact_until: None,
            objectives: None,
            actions: Vec::new(),
            manual: None,
        }
    }

    fn step_mut(&mut self) -> &mut StepReport {
        self.steps.last_mut().expect("a step in progress")
    }

    fn close_step(&mut self, started: Instant) {
        let step = self.step_mut();
        step.ended_at = Some(Utc::now());
        step.duration_ms = millis_between(started, Instant::now());
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

/// The host an action on the controller is recorded under.
pub const CONTROLLER: &str = "controller";

/// The hosts an action runs on, as its records name them.
fn action_hosts(action: &PlannedAction) -> Vec<String> {
    match &action.on {
        None => vec![CONTROLLER.to_string()],
        Some(_) => action.hosts.clone(),
    }
}

/// "on the controller", "on db-1, db-2 (target `db`)".
fn where_it_runs(action: &PlannedAction) -> String {
    match &action.on {
        None => "on the controller".to_string(),
        Some(on) => format!("on {} (`{on}`)", action.hosts.join(", ")),
    }
}

/// A manual step's record before (or without) an answer.
fn skipped_manual(manual: &Manual, answer: &str) -> ManualReport {
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

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs an action where it belongs and returns one record per host. On the controller it is a
/// child of ours like setup (output into `log`, the terminal's Ctrl-C reaches it); on a host it
/// goes to that host's agent (every host at once), whose output is appended to `log`. An abort
/// stops waiting: the controller's child is stopped, an agent's runs to its own timeout.
async fn perform_action(
    hosts: Hosts,
    action: PlannedAction,
    base_dir: std::path::PathBuf,
    log: std::path::PathBuf,
    abort: Arc<Abort>,
) -> Vec<ActionReport> {
    let command = action.run.to_string();
    let record = |host: String| ActionReport {
        command: command.clone(),
        host,
        skipped: false,
        start_after_ms: action.start_after.as_millis() as u64,
        started_at: None,
        ended_at: None,
        duration_ms: 0,
        exit_code: None,
        ok: false,
        timed_out: false,
        log: file_name(&log),
        detail: String::new(),
    };
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

/// The first moment at or after `from` when the hypothesis did not hold, judged after each sample.
/// How a background setup command failed, if it has ended with a failure (not exit 0): its
/// status and the last lines of its output.
fn failed_before_ready(bg: &procs::Background) -> Option<String> {
    let (_, status) = bg.ended()?;
    let how = match status {
        Ok(status) if status.success() => return None,
        Ok(status) => procs::describe_status(*status),
        Err(err) => err.clone(),
    };
    let tail = procs::log_tail(&bg.log, TAIL_LINES);
    let output = if tail.is_empty() {
        "it printed nothing".to_string()
    } else {
        format!("its last output:\n  {}", tail.join("\n  "))
    };
    Some(format!(
        "exited ({how}) before it was ready; {output}\n(all of it in {})",
        bg.log.display()
    ))
}

/// How many lines of a failed setup command's output its error shows.
const TAIL_LINES: usize = 10;

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

/// `at + d` without a panic, which would end the run with faults in place. Scenario durations
/// are bounded by `agent::spec::MAX_HOLD`, so the cap never bites a checked file; past the clock's
/// range it is `at` itself, since ending a hold early is the safe side.
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d.min(agent::spec::MAX_HOLD)).unwrap_or(at)
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

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Guardrails, watched from the first injection until the last after-check is decided.
struct Guard {
    monitor: Monitor,
    /// Per series, how many samples have been judged already.
    judged: Vec<usize>,
}

impl Guard {
    fn new(monitor: Monitor) -> Guard {
        let judged = vec![0; monitor.series.len()];
        Guard { monitor, judged }
    }

    /// Judges only windows that end with a sample still to come: the guardrails are watched from
    /// the first injection, once the before-check has seen them hold.
    fn watch_from_now(&mut self) {
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

    async fn breached_opt(guard: Option<&mut Guard>) -> Breach {
        match guard {
            Some(guard) => guard.breached().await,
            None => std::future::pending().await,
        }
    }
}
