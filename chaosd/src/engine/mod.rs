//! The run engine: one game day from setup to report, exactly as the spec's "What a run does".
//!
//! Setup, preflight, the before-check, each step (inject on every host at once, hold, revert,
//! after-check), guardrails watched from the first injection, and on every path: revert whatever
//! is in place, stop what setup started, run teardown, and hand back the report.
//!
//! A run is a [`Run`] (`run`: its state, grouped by what it is for, and its [`RunMode`]), whose
//! phases each have a module: `setup` (setup commands and their `ready` probes), `preflight`,
//! `check` (the before- and after-checks), `step` (a step: inject, hold, revert), `actions` and
//! `manual` (a step's commands and a person's answer), `revert`, `measure` (a step's impact from
//! the recorded samples), `guard` (guardrails watched for a breach), and `finish` (cleanup,
//! teardown, the verdict and the report). The monkey (`crate::monkey`) drives the same `Run`
//! through the methods `run` gives it.
//!
//! **Architecture Invariant:** every fault that an agent accepted, or may have (an apply sent but
//! not clearly answered), is in the run's `active` list (`Placed::active`) until a revert of it
//! has returned; the cleanup path reverts everything left there and does not look at the abort
//! signal, so a second Ctrl-C cannot skip a revert.

pub mod answers;
pub mod hosts;
pub mod hypothesis;
pub mod impact;
pub mod lease;
pub mod limit;
pub mod live;
pub mod monitor;
pub mod plan;
pub mod procs;

mod actions;
mod check;
mod finish;
mod guard;
mod manual;
mod measure;
mod preflight;
mod revert;
mod run;
mod setup;
mod step;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use self::hosts::Hosts;
use self::live::Observer;
pub(crate) use self::run::{Flow, PreflightFault, Run, RunMode, Waited};
use crate::report::model::{Cause, RecoveredFault, Report};
use crate::report::writer::ReportDir;
use crate::scenario::model::Scenario;

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

    /// A token cancelled by the abort, which its holder may also cancel on its own.
    pub(crate) fn child_token(&self) -> CancellationToken {
        self.token.child_token()
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
    let ticker = run.start_ticker();
    run.execute().await;
    run.cleanup().await;
    ticker.abort();
    run.finish()
}

/// The host an action on the controller is recorded under.
pub const CONTROLLER: &str = "controller";
