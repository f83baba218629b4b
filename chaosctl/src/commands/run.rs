//! `chaosctl run FILE`: one game day on this machine, through the built-in `local` agent.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent::local::LocalAgent;
use anyhow::Context;
use chaosd::engine::hosts::Hosts;
use chaosd::engine::plan::{Plan, choose_seed};
use chaosd::engine::{self, Abort, RunResult, RunSpec};
use chaosd::report::model::{Cause, RecoveredFault, Report};
use chaosd::report::summary::{misses, status_with_impact};
use chaosd::report::writer::ReportDir;
use chaosd::scenario::model::Scenario;
use chaosd::store::RunStore;
use chrono::Utc;
use tokio::signal::unix::{SignalKind, signal};

use super::plan::{LocalHost, SeedOrigin, render};
use super::{EXIT_OK, Failure, load_scenario};
use crate::args::{LaunchArgs, LoadArgs, Output, RunArgs};
use crate::{output, state};

pub async fn run(args: RunArgs, state_dir: Option<&Path>) -> Result<u8, Failure> {
    let (scenario, seed, local) =
        start(&args.file, &args.load, args.seed, Kind::Steps, state_dir).await?;
    let origin = SeedOrigin::of(args.seed, &scenario, true);
    let plan = Plan::resolve(&scenario, seed);
    let injects = plan.steps.iter().any(|s| !s.faults.is_empty());
    if injects && !args.launch.yes && !args.dry_run && std::io::stdin().is_terminal() {
        err!("{}", render(&scenario, &plan, origin, LocalHost::Here));
        if !confirm("\nInject these faults? [y/N] ").await {
            errln!("chaosctl: not started; nothing was injected");
            return Ok(EXIT_OK);
        }
    }
    launch(scenario, seed, &args.launch, args.dry_run, local, |run| {
        engine::run(
            run.scenario,
            run.spec,
            run.hosts,
            run.report_dir,
            run.observer,
            run.abort,
            run.recovered,
        )
    })
    .await
}

/// What a file holds: `steps:` for `chaosctl run`, `monkey:` for `chaosctl monkey`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Steps,
    Monkey,
}

/// The refusal of a file of the other kind, naming the command that runs it.
pub fn wrong_kind(file: &Path, wanted: Kind) -> Failure {
    Failure::Invalid(anyhow::anyhow!(
        "{}: {}",
        file.display(),
        match wanted {
            Kind::Steps => {
                "this is a monkey file (it has `monkey:` instead of `steps:`); run it with `chaosctl monkey`"
            }
            Kind::Monkey => "this file has `steps:`, not `monkey:`; run it with `chaosctl run`",
        }
    ))
}

/// What a local run opens before it asks: the state directory, the local agent (which reverts
/// what a killed chaosctl left in the journal) and the run store.
pub struct Local {
    state_dir: PathBuf,
    agent: LocalAgent,
    recovered: Vec<RecoveredFault>,
    store: RunStore,
}

/// The start of a local `run` and `monkey` alike: the file loaded and of the `wanted` kind, the
/// seed chosen, the state opened.
pub async fn start(
    file: &Path,
    load: &LoadArgs,
    seed: Option<u64>,
    wanted: Kind,
    state_dir: Option<&Path>,
) -> Result<(Scenario, u64, Local), Failure> {
    // The state is opened (what a killed chaosctl left reverted, the run store) on the blocking
    // pool while this thread loads and checks the file: neither needs the other, and the two are
    // most of a run's start; the pool's thread then serves the run's preflight. A file that does
    // not load is still the error said first.
    let state_dir = state::state_dir(state_dir);
    let opening = state_dir.as_ref().ok().cloned().map(|dir| {
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let (agent, recovered) = state::open_agent(&dir)?;
            Ok((agent, recovered, state::open_store(&dir)?))
        })
    });
    let scenario = load_scenario(file, load);
    let opened = match opening {
        Some(opening) => Some(
            opening
                .await
                .unwrap_or_else(|err| Err(anyhow::anyhow!("opening the run state failed: {err}"))),
        ),
        None => None,
    };
    let scenario = scenario?;
    let kind = if scenario.monkey.is_some() {
        Kind::Monkey
    } else {
        Kind::Steps
    };
    if kind != wanted {
        return Err(wrong_kind(file, wanted));
    }
    let seed = choose_seed(seed, &scenario);
    let state_dir = state_dir?;
    let (agent, recovered, store) = opened.expect("opened once the state directory is known")?;
    let local = Local {
        state_dir,
        agent,
        recovered,
        store,
    };
    Ok((scenario, seed, local))
}

/// What the engine is handed: everything `launch` prepared.
pub struct Prepared {
    pub scenario: Arc<Scenario>,
    pub spec: RunSpec,
    pub hosts: Hosts,
    pub report_dir: ReportDir,
    pub observer: Arc<dyn engine::live::Observer>,
    pub abort: Arc<Abort>,
    pub recovered: Vec<RecoveredFault>,
}

/// The part of a local run around the engine: creates the report folder, records the run as
/// started, turns signals into an abort request, calls `engine` with all of it, then writes the
/// report, records it in the history, prints the result and, last in text mode, the report
/// folder. Returns the exit code.
pub async fn launch<F, Fut>(
    scenario: Scenario,
    seed: u64,
    options: &LaunchArgs,
    dry_run: bool,
    local: Local,
    engine: F,
) -> Result<u8, Failure>
where
    F: FnOnce(Prepared) -> Fut,
    Fut: Future<Output = RunResult>,
{
    let Local {
        state_dir,
        agent,
        recovered,
        store,
    } = local;
    let run_id = chaosd::store::new_run_id();
    let report_dir = ReportDir::create(&options.report_dir, &run_id).with_context(|| {
        format!(
            "cannot create the report folder in `{}`; pass --report-dir to use another",
            options.report_dir.display()
        )
    })?;
    let report_path = report_dir.path().to_path_buf();
    let labels: BTreeMap<String, String> = options.labels.iter().cloned().collect();
    store.begin(
        &run_id,
        &scenario.name,
        &scenario.path.display().to_string(),
        Utc::now(),
        &labels,
        dry_run,
        &report_path.display().to_string(),
    )?;

    // A collector named by the standard variables gets the run's trace at the end; a URL that
    // is not one turns the export off with a word, never the game day.
    let trace_to = match chaosd::otel::Destination::from_env() {
        Ok(destination) => destination,
        Err(why) => {
            errln!("chaosctl: not exporting the run's trace: {why}");
            None
        }
    };
    let abort = Abort::new();
    listen_for_signals(abort.clone())?;
    let observer: Arc<dyn engine::live::Observer> = Arc::from(output::observer(options.output));
    let spec = RunSpec::new(run_id.clone(), seed, labels, dry_run);
    let hosts = Hosts::new(agent, &scenario, &run_id);
    let asks = !dry_run && scenario.steps.iter().any(|s| s.manual.is_some());
    let answer_watch =
        asks.then(|| super::answer::watch(state_dir, run_id.clone(), spec.answers.clone()));
    let result = engine(Prepared {
        scenario: Arc::new(scenario),
        spec,
        hosts,
        report_dir,
        observer: observer.clone(),
        abort,
        recovered,
    })
    .await;
    if let Some(watch) = answer_watch {
        watch.abort();
    }
    drop(observer);
    let report = result.report;
    let (written, stored) = write_and_record(result.report_dir, store, &report);
    let code = report.exit_code();
    show_result(&report, &report_path.display().to_string(), options.output);
    if let Err(err) = written {
        errln!(
            "chaosctl: could not write the report into `{}`: {err}; `chaosctl report {}` still has it",
            report_path.display(),
            report.run_id
        );
    }
    if let Err(err) = stored {
        errln!("chaosctl: could not record the run in the history: {err:#}");
    }
    // Once the report is written, recorded and summed up: at most `otel::DEADLINE` before the
    // last line, and nothing it does changes the exit code.
    if let Some(destination) = trace_to
        && let Err(why) = chaosd::otel::export(&destination, SERVICE, &report).await
    {
        errln!(
            "chaosctl: could not export the run's trace to {}: {why}; the run and its report are unaffected",
            destination.url
        );
    }
    if options.output == Output::Text {
        outln!("{}", report_path.display());
    }
    Ok(code)
}

/// Writes the report's files and records its end in the history at once, on two threads: the
/// two are independent, and most of a run's last milliseconds (the report's sync, its
/// renderings, the history's record).
fn write_and_record(
    mut report_dir: ReportDir,
    store: RunStore,
    report: &Report,
) -> (std::io::Result<()>, Result<(), chaosd::store::StoreError>) {
    let report_path = report_dir.path().display().to_string();
    // Behind a Mutex because the other thread reaches it through a shared borrow.
    let store = std::sync::Mutex::new(store);
    let (stored, written) = chaosd::side_by_side::run(
        "history",
        || {
            let store = store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            store.finish(report, &report_path)
        },
        || report_dir.write_report(report),
    );
    let stored = stored.unwrap_or_else(|_| {
        Err(chaosd::store::StoreError::Write(
            "recording the run in the history panicked".to_string(),
        ))
    });
    (written, stored)
}

/// The `service.name` of the traces local runs export.
const SERVICE: chaosd::otel::Service = chaosd::otel::Service("chaosctl");

/// Asks on the terminal; anything but y/yes is a no.
pub async fn confirm(question: &str) -> bool {
    err!("{question}");
    let _ = std::io::stderr().flush();
    tokio::task::spawn_blocking(|| {
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).ok();
        matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
    })
    .await
    .unwrap_or(false)
}

/// Ctrl-C, SIGTERM and SIGHUP abort the run; later ones only say that reverting goes on, since a
/// revert must never be skipped.
fn listen_for_signals(abort: Arc<Abort>) -> anyhow::Result<()> {
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT (Ctrl-C)",
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP",
            };
            if abort.is_aborted() {
                errln!(
                    "\nchaosctl: {name} again: still reverting and cleaning up; chaosctl ends once every fault is reverted"
                );
            } else {
                errln!(
                    "\nchaosctl: {name}: aborting; every fault is reverted, then teardown runs and the report is written"
                );
                abort.abort(Cause::Signal, format!("interrupted by {name}"));
            }
        }
    });
    Ok(())
}

/// The end of a run, local or on a server: the summary (text) or the `result` line (json). The
/// report folder's path, the last line in text mode, is printed by the caller.
pub fn show_result(report: &Report, report_dir: &str, output: Output) {
    match output {
        Output::Text => print_summary(report),
        Output::Json => outln!(
            "{}",
            serde_json::json!({
                "type": "result",
                "run_id": report.run_id,
                "verdict": report.verdict,
                "cause": report.cause,
                "reason": report.reason,
                "exit_code": report.exit_code(),
                "faults_left": report.faults_left,
                "report_dir": report_dir,
                // What users went through, per step: a pipeline reads the figures here without
                // opening report.json.
                "steps": report.steps.iter().map(|step| serde_json::json!({
                    "name": step.name,
                    "status": step.status,
                    "summary": status_with_impact(step),
                    "impact": step.impact,
                    "objectives": step.objectives,
                })).collect::<Vec<_>>(),
            })
        ),
    }
}

fn print_summary(report: &Report) {
    out!("{}", summary(report));
}

/// The closing summary: the verdict, then each step with what its users went through (a step
/// that passed while requests failed never reads as a clean pass) and its objective misses, then
/// any fault left in place.
fn summary(report: &Report) -> String {
    let mut out = String::new();
    out.push('\n');
    out.push_str(&format!("verdict   {}", report.verdict));
    if let Some(cause) = report.cause {
        out.push_str(&format!(" (cause: {cause})"));
    }
    out.push_str(&format!("\nreason    {}\n", report.reason));
    for step in &report.steps {
        let ms = |v: Option<u64>| v.map_or("-".to_string(), |ms| format!("{ms} ms"));
        out.push_str(&format!(
            "step {}    {}: {}; impact {}, recovery {}\n",
            step.index + 1,
            step.name,
            status_with_impact(step),
            ms(step.impact_ms),
            ms(step.recovery_ms)
        ));
        for miss in misses(step) {
            out.push_str(&format!("          missed {miss}\n"));
        }
    }
    if !report.faults_left.is_empty() {
        out.push_str("\nFAULTS MAY BE LEFT IN PLACE:\n");
        for f in &report.faults_left {
            out.push_str(&format!("  {} on {}: {}\n", f.fault, f.host, f.reason));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run whose first step passed while 26 of 960 requests failed, and whose second step
    /// missed its `max_outage`.
    fn report() -> Report {
        let impact = |failed: u64, outage: u64, restored: bool| {
            serde_json::json!({
                "probe": "users", "host": "local", "kind": "load", "counts": "requests",
                "taken": 960, "failed": failed, "error_ms": outage,
                "longest_outage_ms": outage, "restored": restored, "impact_ms": 2700,
                "restore_ms": null, "outages": []
            })
        };
        let step = |index: usize, name: &str, status: &str, impact: serde_json::Value| {
            serde_json::json!({
                "index": index, "name": name, "status": status, "hosts": [], "faults": [],
                "started_at": null, "ended_at": null, "duration_ms": 30000,
                "recover_within_ms": 20000, "before": null, "after": null,
                "impact_ms": 2700, "recovery_ms": 4500, "impact": [impact]
            })
        };
        let mut second = step(1, "slow db", "deviated", impact(400, 12_000, false));
        second["objectives"] = serde_json::json!({
            "max_outage_ms": 10000,
            "misses": [{"objective": "max_outage", "probe": "users", "host": "local",
                        "figure": "longest outage 12.0 s, not over", "limit": "10s"}]
        });
        serde_json::from_value(serde_json::json!({
            "schema": "chaos.report/v1", "run_id": "r1",
            "scenario": {"name": "s", "sha256": "", "path": ""},
            "verdict": "deviated", "cause": "objective", "reason": "an objective was missed",
            "seed": "1", "labels": {}, "user": "u", "host": "h", "dry_run": false,
            "started_at": "2026-12-05T10:00:00Z", "ended_at": "2026-12-05T10:01:00Z",
            "duration_ms": 60000, "faults_left": [], "recovered": [], "setup": [],
            "teardown": [], "breaches": [], "probes": [], "events": [],
            "steps": [step(0, "kill api", "passed", impact(26, 1300, true)), second]
        }))
        .expect("a report")
    }

    #[test]
    fn each_step_says_what_users_went_through() {
        let text = summary(&report());
        assert!(
            text.contains(
                "step 1    kill api: passed, 26 of 960 requests failed, longest outage 1.3 s; \
                 impact 2700 ms, recovery 4500 ms\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "step 2    slow db: deviated, 400 of 960 requests failed, longest outage 12.0 s, \
                 not restored;"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "          missed max_outage: `users` on local: longest outage 12.0 s, not over, \
                 over 10s\n"
            ),
            "{text}"
        );
    }
}
