//! The Chaos Monkey: a file with `monkey:` instead of `steps:` injects one fault at random times
//! until it is stopped or its time (`chaosctl monkey --for`) runs out.
//!
//! `schedule` draws the times and picks (pure, from the seed and the start time); `clock` is the
//! seam between them and real time. [`run`] drives the run engine's own pieces (setup,
//! preflight, the before-check, inject/hold/revert/after-check of a step, cleanup, the report):
//!
//! 1. setup and preflight, as a run of steps; preflight checks the fault on every host of the
//!    target, since each fault picks anew;
//! 2. then, until stopped: wait for the next fault's time; check the steady state over one whole
//!    window (a before-check); when it does not hold, record `fault_skipped` and go on; else pick
//!    the hosts, and run the fault as a step named `monkey #N on HOST` (inject, hold for
//!    `duration`, revert, after-check within `settings.recover_within`), recorded as a step and a
//!    `monkey_fault` event with its hosts, times and recovery;
//! 3. on Ctrl-C/SIGTERM (`Abort`), a guardrail breach, an error or `--for` running out: revert
//!    anything in place, stop setup, tear down, and hand back the report.
//!
//! Verdicts: `passed` when every injected fault recovered (skipped ones do not count);
//! `deviated` when one did not recover within `recover_within`: the monkey keeps going after a
//! deviation (the outage is what the next faults' before-checks skip over), and the verdict at
//! the end is `deviated`; `aborted` on a signal or a breach; `error` as for steps (a fault not
//! applied, a revert failed: the monkey stops at once). `--for` running out is a normal end, not
//! an abort: a fault being held is reverted early and its recovery still measured.
//!
//! The schedule is drawn from the moment setup and preflight are done, and is the same for the
//! same seed and start. A fault whose time passes while the one before it is still being handled
//! runs as soon as that one is done (its event says how late), unless the active hours ended
//! meanwhile; then it is skipped.
//!
//! Steady-state probes and guardrails are sampled only around each fault (from its before-check
//! until its after-check is decided), not through the gaps between faults.

pub mod clock;
pub mod schedule;

use std::future::pending;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

pub use self::clock::{Clock, SystemClock, TokioClock};
pub use self::schedule::{Schedule, pick_hosts};
use crate::engine::hosts::Hosts;
use crate::engine::live::Observer;
use crate::engine::plan::{PlannedFault, PlannedStep};
use crate::engine::{Abort, Flow, PreflightFault, Run, RunMode, RunResult, RunSpec, Waited};
use crate::report::model::{Cause, RecoveredFault, StepStatus, Verdict};
use crate::report::writer::ReportDir;
use crate::scenario::format_duration;
use crate::scenario::model::Scenario;

/// What a monkey run is asked to do, beyond the scenario itself.
#[derive(Debug, Clone)]
pub struct MonkeySpec {
    pub run: RunSpec,
    /// Stop after this long (from the call), a normal end; `None`: until aborted.
    pub run_for: Option<Duration>,
}

/// Runs a monkey scenario until it is aborted or `run_for` has passed, and returns its report.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    scenario: Arc<Scenario>,
    spec: MonkeySpec,
    hosts: Hosts,
    report_dir: ReportDir,
    observer: Arc<dyn Observer>,
    abort: Arc<Abort>,
    clock: Arc<dyn Clock>,
    recovered: Vec<RecoveredFault>,
) -> RunResult {
    let preflight = scenario.monkey.iter().map(|monkey| {
        let (hosts, _) = scenario.resolve_target(&monkey.target).unwrap_or_default();
        PreflightFault {
            what: "`monkey`".to_string(),
            target: monkey.target.clone(),
            hosts,
            spec: monkey.fault.clone(),
        }
    });
    let preflight = preflight.collect();
    let wind_down = CancellationToken::new();
    let mut run = Run::new(
        scenario.clone(),
        spec.run,
        hosts,
        report_dir,
        observer,
        abort,
        recovered,
    )
    .with_mode(RunMode::Monkey {
        preflight,
        wind_down: wind_down.clone(),
        passed_reason: None,
    });
    let ticker = run.start_ticker();
    let deadline = spec.run_for.map(|d| {
        let at = clock.now() + chrono::Duration::from_std(d).unwrap_or(chrono::TimeDelta::MAX);
        let clock = clock.clone();
        let timer = tokio::spawn(async move {
            clock.sleep_until(at).await;
            wind_down.cancel();
        });
        (at, d, timer)
    });
    match scenario.monkey.clone() {
        Some(monkey) => {
            if run.begin().await == Flow::Continue {
                faults(
                    &mut run,
                    &scenario,
                    &monkey,
                    clock.as_ref(),
                    deadline.as_ref().map(|d| (d.0, d.1)),
                )
                .await;
            }
        }
        None => run.fail(
            Verdict::Error,
            Cause::Preflight,
            format!(
                "`{}` has no `monkey:`; run it with `chaosctl run`",
                scenario.name
            ),
        ),
    }
    if let Some((_, _, timer)) = deadline {
        timer.abort();
    }
    run.cleanup().await;
    ticker.abort();
    run.finish()
}

/// The loop: one fault after another until the run stops.
async fn faults(
    run: &mut Run,
    scenario: &Scenario,
    monkey: &crate::scenario::model::Monkey,
    clock: &dyn Clock,
    deadline: Option<(DateTime<Utc>, Duration)>,
) {
    let seed = run.seed();
    let (candidates, pick) = scenario.resolve_target(&monkey.target).unwrap_or_default();
    let mut schedule = Schedule::new(monkey, seed, clock.now());
    let start = schedule.start();
    let offset_ms = |at: DateTime<Utc>| (at - start).num_milliseconds();
    run.event(
        "monkey_started",
        format!(
            "the monkey starts: {} on `{}`, every {} on average (at least {}){}{}{}",
            monkey.fault,
            monkey.target,
            format_duration(monkey.mean_interval),
            format_duration(monkey.min_interval),
            monkey.active.as_ref().map_or(String::new(), |a| format!(
                ", on {} from {:02}:{:02} to {:02}:{:02} {}",
                a.days.join(","),
                a.start_minute / 60,
                a.start_minute % 60,
                a.end_minute / 60,
                a.end_minute % 60,
                schedule.timezone()
            )),
            monkey
                .max_per_day
                .map_or(String::new(), |n| format!(", at most {n} a day")),
            deadline.map_or(String::new(), |(_, d)| format!(
                ", for {}",
                format_duration(d)
            )),
        ),
        serde_json::json!({
            "start": start,
            "seed": seed.to_string(),
            "timezone": schedule.timezone().to_string(),
            "until": deadline.map(|(at, _)| at),
        }),
    );
    let (mut injected, mut skipped) = (0usize, 0usize);
    let mut stopped_by_time = false;
    for number in 0usize.. {
        let Some(planned) = schedule.next_fault() else {
            run.event(
                "monkey_idle",
                "no active window in the next two weeks; the monkey waits to be stopped"
                    .to_string(),
                serde_json::json!({}),
            );
            stopped_by_time = run.wait_for_fault(None, pending()).await == Waited::WoundDown;
            break;
        };
        if deadline.is_some_and(|(until, _)| planned >= until) {
            // The next fault would come after the end: wait for the end.
            stopped_by_time = run.wait_for_fault(None, pending()).await == Waited::WoundDown;
            break;
        }
        match run
            .wait_for_fault(Some(planned), clock.sleep_until(planned))
            .await
        {
            Waited::Aborted => break,
            Waited::WoundDown => {
                stopped_by_time = true;
                break;
            }
            Waited::Came => {}
        }
        let now = clock.now();
        let late_ms = (now - planned).num_milliseconds().max(0);
        let hosts = pick_hosts(seed, number, &candidates, pick);
        let step = PlannedStep {
            index: number,
            name: format!("monkey #{} on {}", number + 1, hosts.join(", ")),
            faults: vec![PlannedFault {
                index: 0,
                target: monkey.target.clone(),
                hosts: hosts.clone(),
                spec: monkey.fault.clone(),
                start_after: Duration::ZERO,
            }],
            actions: Vec::new(),
            action: None,
            manual: None,
            duration: monkey.duration,
            recover_within: scenario.settings.recover_within,
            objectives: scenario.objectives,
        };
        let planned_fields = serde_json::json!({
            "number": number + 1,
            "planned_at": planned,
            "planned_offset_ms": offset_ms(planned),
            "late_ms": late_ms,
            "hosts": hosts,
            "host": hosts.join(","),
            "fault": monkey.fault.to_string(),
        });

        if !schedule.is_active(now) {
            let why = format!(
                "the monkey was busy until after the active hours ({} late)",
                format_duration(Duration::from_millis(late_ms as u64))
            );
            skip(run, &step, None, &why, planned_fields);
            skipped += 1;
            continue;
        }
        let Some((held, check)) = run.check_before().await else {
            // Aborted (recorded) or out of time.
            stopped_by_time = run.is_wound_down() && !run.is_aborted();
            break;
        };
        if !held {
            let guardrail_only = check.probes.iter().all(|p| p.held || p.guardrail);
            let what = if guardrail_only {
                "a guardrail did not hold"
            } else {
                "steady state did not hold"
            };
            let why = format!("{what}: {}", check.reason);
            skip(run, &step, Some(check), &why, planned_fields);
            run.stop_monitors().await;
            skipped += 1;
            continue;
        }
        run.run_step(&step, Some(check)).await;
        run.stop_monitors().await;
        let report = run.last_step().expect("the monkey's step");
        let status = report.status;
        let applied_at = report.faults.iter().filter_map(|f| f.applied_at).min();
        let reverted_at = report.faults.iter().filter_map(|f| f.reverted_at).max();
        let recovery_ms = report.recovery_ms;
        let mut fields = planned_fields;
        if let Some(map) = fields.as_object_mut() {
            map.insert("applied_at".into(), serde_json::json!(applied_at));
            map.insert("reverted_at".into(), serde_json::json!(reverted_at));
            map.insert("recovery_ms".into(), serde_json::json!(recovery_ms));
            map.insert("impact_ms".into(), serde_json::json!(report.impact_ms));
            map.insert("status".into(), serde_json::json!(status));
        }
        injected += 1;
        run.event(
            "monkey_fault",
            format!(
                "monkey #{} on {}: {}, recovery {}",
                number + 1,
                hosts.join(", "),
                match status {
                    StepStatus::Passed => "recovered",
                    StepStatus::Deviated => "did NOT recover in time",
                    StepStatus::Aborted => "aborted",
                    StepStatus::Error => "error",
                    StepStatus::Skipped => "skipped",
                },
                recovery_ms.map_or("-".to_string(), |ms| format!("{ms} ms"))
            ),
            fields,
        );
        match status {
            // A deviation is recorded (the verdict at the end is `deviated`); the monkey goes on.
            StepStatus::Passed | StepStatus::Deviated | StepStatus::Skipped => {}
            StepStatus::Aborted | StepStatus::Error => break,
        }
        if run.has_faults_left() || run.is_aborted() {
            run.note_abort();
            break;
        }
        if run.is_wound_down() {
            stopped_by_time = true;
            break;
        }
    }
    if stopped_by_time {
        run.event(
            "monkey_stopped",
            format!(
                "the monkey's time ({}) is up",
                deadline.map_or("-".to_string(), |(_, d)| format_duration(d))
            ),
            serde_json::json!({"injected": injected, "skipped": skipped}),
        );
    }
    run.passed_because(format!(
        "every injected fault recovered ({injected} injected, {skipped} skipped)"
    ));
}

/// Records a fault that was not injected: a skipped step and a `fault_skipped` event.
fn skip(
    run: &mut Run,
    step: &PlannedStep,
    before: Option<crate::report::model::CheckReport>,
    why: &str,
    mut fields: serde_json::Value,
) {
    run.push_skipped_step(step, why, before);
    if let Some(map) = fields.as_object_mut() {
        map.insert("reason".into(), serde_json::json!(why));
    }
    run.event(
        "fault_skipped",
        format!("`{}` skipped: {why}", step.name),
        fields,
    );
}
