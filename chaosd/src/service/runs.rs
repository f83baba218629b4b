//! The run manager: runs submitted through the API go through the very engine `chaosctl run`
//! uses ([`crate::engine::run`]), each as a tokio task, concurrently. It keeps each running run's
//! events and live status for `GET /v1/runs/{id}` and the event stream, records every run in the
//! history ([`Store`]: `runs.db`, or PostgreSQL shared with other instances), writes each report
//! folder, and holds the halt switch (a file in the state directory, or a row in PostgreSQL that
//! every instance follows: [`Runs::follow_halt`]).
//!
//! A submitted scenario is saved as `STATE_DIR/runs/RUN_ID/FILE`; that folder is its `base_dir`,
//! so its relative paths resolve there (and commands run there), never on the client's machine.
//!
//! **Invariant:** a run is recorded in the history (`begin`) before its task starts, and its task
//! records the end (`finish`) before the run leaves `active`; a chaosd that dies in between
//! leaves the row open, and the next start marks it `interrupted` (by pid, in `RunStore::open`).
//! **Invariant:** halting sets the persisted switch first, then aborts; a submission checks the
//! switch under the same lock that registers the run, so no run starts after a halt returned.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use agent::local::LocalAgent;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use super::api::{
    LiveView, QuestionView, RunSummary, RunView, StreamLine, SubmitRequest, SubmitResponse,
};
use super::error::ServiceError;
use crate::engine::hosts::Hosts;
use crate::engine::live::{LiveStatus, Observer};
use crate::engine::plan::choose_seed;
use crate::engine::{self, Abort, RunSpec};
use crate::report::model::{Cause, Event, Report};
use crate::report::writer::ReportDir;
use crate::scenario::model::{LOCAL_HOST, Scenario};
use crate::scenario::{LoadOptions, load_text_in};
use crate::store::{Store, new_run_id};

/// The `service.name` of the traces chaosd exports.
const SERVICE: crate::otel::Service = crate::otel::Service("chaosd");

/// The file in the state directory whose presence means "halted".
pub const HALT_FILE: &str = "halted";

/// The folder of submitted scenarios, one sub-folder per run.
pub const RUNS_DIR: &str = "runs";

/// What the run manager needs of the configuration.
#[derive(Debug, Clone)]
pub struct RunsConfig {
    pub state_dir: PathBuf,
    pub report_dir: PathBuf,
    pub allow_local: bool,
    pub inventory: Option<PathBuf>,
    /// chaosd's client certificate and key for agents whose host names none.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// This instance's name (`node:`).
    pub node: String,
    /// The collector each run's trace is exported to when it ends ([`crate::otel`]).
    pub trace_to: Option<crate::otel::Destination>,
}

/// The persisted halt switch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Halt {
    pub since: DateTime<Utc>,
}

pub struct Runs {
    config: RunsConfig,
    /// The built-in agent for `local`, its journal in the state directory.
    agent: LocalAgent,
    store: Store,
    /// Runs going on, by id; a run leaves once its end is recorded.
    active: Mutex<HashMap<String, Arc<LiveRun>>>,
    /// `Some` while halted; mirrored in `STATE_DIR/halted`.
    halt: Mutex<Option<Halt>>,
    /// Every run's task, so that shutdown waits for their reverts.
    tracker: TaskTracker,
    stopping: AtomicBool,
    /// Webhooks for run start, breach and end ([`crate::webhook`]); none until set.
    notifier: std::sync::OnceLock<Arc<crate::webhook::Notifier>>,
    /// The agents' HTTP clients, kept from run to run: a run reuses the connections and TLS
    /// sessions of those before it instead of handshaking anew with every agent (bounded).
    clients: agent::client::KeptClients,
}

/// A running run as the API sees it: its abort switch, its events so far, its status.
pub struct LiveRun {
    pub run_id: String,
    pub report_dir: String,
    abort: Arc<Abort>,
    /// Where a `manual` step's answer goes (`POST /v1/runs/{id}/confirm|refuse`).
    answers: Arc<crate::engine::answers::Answers>,
    inner: Mutex<LiveInner>,
    /// Bumped at every event, status, question and the end; event streams wait on it.
    changed: Arc<watch::Sender<u64>>,
}

#[derive(Default)]
struct LiveInner {
    events: Vec<Event>,
    status: Option<LiveStatus>,
    /// Set once the report is written and recorded.
    end: Option<Arc<Report>>,
}

/// What an event stream reads next.
pub struct Snapshot {
    pub events: Vec<Event>,
    pub status: Option<LiveView>,
    pub end: Option<StreamLine>,
}

impl LiveRun {
    fn inner(&self) -> MutexGuard<'_, LiveInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Events from index `from` on, the latest status and, once ended, the end line.
    pub fn snapshot(&self, from: usize) -> Snapshot {
        let inner = self.inner();
        Snapshot {
            events: inner.events.get(from..).unwrap_or_default().to_vec(),
            status: inner.status.as_ref().map(|s| self.view_of(s)),
            end: inner
                .end
                .as_ref()
                .map(|report| end_line(Some(report), Some(self.report_dir.clone()))),
        }
    }

    pub fn status(&self) -> Option<LiveView> {
        self.inner().status.as_ref().map(|s| self.view_of(s))
    }

    /// The engine's status on the wire, with the question a `manual` step waits on.
    fn view_of(&self, status: &LiveStatus) -> LiveView {
        let mut view = LiveView::from(status);
        if let Some(q) = self.answers.waiting() {
            view.prompt = Some(q.prompt.clone());
            view.question = Some(QuestionView {
                prompt: q.prompt,
                since: q.asked_at,
            });
        }
        view
    }

    /// The question a `manual` step of this run waits on, if any.
    pub fn waiting(&self) -> Option<crate::engine::answers::Question> {
        self.answers.waiting()
    }
}

/// The last line of an event stream.
pub fn end_line(report: Option<&Report>, report_dir: Option<String>) -> StreamLine {
    StreamLine::End {
        verdict: report
            .map_or("interrupted", |r| r.verdict.as_str())
            .to_string(),
        exit_code: report.map(Report::exit_code),
        report_dir,
        report: report.map(|r| Box::new(r.clone())),
    }
}

/// Feeds a run's events and status into its [`LiveRun`].
struct Feed(Arc<LiveRun>);

impl Observer for Feed {
    fn event(&self, event: &Event) {
        self.0.inner().events.push(event.clone());
        self.0.bump();
    }

    fn status(&self, status: &LiveStatus) {
        self.0.inner().status = Some(status.clone());
        self.0.bump();
    }

    fn wants_status(&self) -> bool {
        true
    }
}

/// A run found by id: going on, or in the history.
pub enum Found {
    Live(Arc<LiveRun>),
    Done {
        record: Box<crate::store::RunRecord>,
        report: Option<Box<Report>>,
    },
}

impl Runs {
    /// The agents' clients for one round of calls (a run, or `GET /v1/agents`): the kept
    /// connections and TLS sessions, tokens read afresh.
    pub fn agent_clients(&self) -> agent::client::AgentClients {
        self.clients.for_run()
    }

    /// Opens the local agent (reverting what a dead chaosd left in its journal) and reads the
    /// halt switch; `store` is the history, opened (and the runs of a dead chaosd marked
    /// `interrupted`) by the caller.
    pub fn open(config: RunsConfig, store: Store) -> anyhow::Result<Runs> {
        use anyhow::Context;
        let (agent, recovered) = LocalAgent::open(&config.state_dir).with_context(|| {
            format!(
                "cannot open the fault journal in `{}`",
                config.state_dir.display()
            )
        })?;
        for r in &recovered {
            match &r.result {
                Ok(reverted) => warn!(fault_id = r.fault_id, run = r.run_id, fault = r.fault,
                    detail = %reverted.detail, "reverted a fault an earlier chaosd left in place"),
                Err(err) => error!(fault_id = r.fault_id, run = r.run_id, fault = r.fault,
                    error = %err, "cannot revert a fault an earlier chaosd left; fix it by hand"),
            }
        }
        for run in store.interrupted_on_open() {
            warn!(
                run,
                "run was cut short (chaosd ended without finishing it); marked interrupted"
            );
        }
        let halt = match &store {
            // Read once, by `Store::postgres` as it started the cluster.
            Store::Postgres { cluster, .. } => {
                (*cluster.halt_watch().borrow()).map(|since| Halt { since })
            }
            Store::Sqlite(_) => read_halt(&config.state_dir),
        };
        if let Some(h) = &halt {
            warn!(since = %h.since, "chaosd is halted: new runs are refused until POST /v1/resume");
        }
        Ok(Runs {
            config,
            agent,
            store,
            active: Mutex::new(HashMap::new()),
            halt: Mutex::new(halt),
            tracker: TaskTracker::new(),
            stopping: AtomicBool::new(false),
            notifier: std::sync::OnceLock::new(),
            clients: agent::client::KeptClients::default(),
        })
    }

    pub fn allow_local(&self) -> bool {
        self.config.allow_local
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This instance's name.
    pub fn node(&self) -> &str {
        &self.config.node
    }

    fn active(&self) -> MutexGuard<'_, HashMap<String, Arc<LiveRun>>> {
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn halt_state(&self) -> MutexGuard<'_, Option<Halt>> {
        self.halt.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn halted(&self) -> Option<Halt> {
        self.halt_state().clone()
    }

    /// The ids of the runs going on, sorted.
    pub fn running(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.active().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Checks and starts a run; it goes on in a task of its own.
    pub fn submit(self: &Arc<Self>, req: SubmitRequest) -> Result<SubmitResponse, ServiceError> {
        self.check_open()?;
        let run_id = new_run_id();
        let display = PathBuf::from(req.file.as_deref().unwrap_or("scenario.yaml"));
        let file_name = display
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("scenario.yaml"));
        let folder = self.config.state_dir.join(RUNS_DIR).join(&run_id);
        std::fs::create_dir_all(&folder)
            .and_then(|()| std::fs::write(folder.join(&file_name), &req.scenario))
            .map_err(|e| {
                ServiceError::Internal(format!(
                    "cannot save the scenario in `{}`: {e}",
                    folder.display()
                ))
            })?;
        let checked = self.check(&display, &folder, &req);
        let scenario = match checked {
            Ok(scenario) => scenario,
            Err(err) => {
                let _ = std::fs::remove_dir_all(&folder);
                return Err(err);
            }
        };
        let seed = choose_seed(req.seed, &scenario);
        let report_dir = ReportDir::create(&self.config.report_dir, &run_id).map_err(|e| {
            ServiceError::Internal(format!(
                "cannot create the report folder in `{}`: {e}",
                self.config.report_dir.display()
            ))
        })?;
        let report_path = report_dir.path().display().to_string();
        let changed = Arc::new(watch::channel(0).0);
        let live = Arc::new(LiveRun {
            run_id: run_id.clone(),
            report_dir: report_path.clone(),
            abort: Abort::new(),
            answers: Arc::default(),
            inner: Mutex::new(LiveInner::default()),
            changed: Arc::clone(&changed),
        });
        {
            // Under the halt lock: a halt that returned has seen this run, or this one sees it.
            let halt = self.halt_state();
            if let Some(h) = &*halt {
                let _ = std::fs::remove_dir_all(&folder);
                let _ = std::fs::remove_dir_all(report_dir.path());
                return Err(ServiceError::Halted {
                    since: h.since.to_rfc3339(),
                });
            }
            let halted_elsewhere = self.store().begin(
                &run_id,
                &scenario.name,
                &scenario.path.display().to_string(),
                Utc::now(),
                &req.labels,
                req.dry_run,
                &report_path,
            );
            let halted_elsewhere = match halted_elsewhere {
                Ok(halted) => halted,
                Err(err) => {
                    let _ = std::fs::remove_dir_all(&folder);
                    let _ = std::fs::remove_dir_all(report_dir.path());
                    return Err(err.into());
                }
            };
            if let Some(since) = halted_elsewhere {
                // Halted through another instance, and this one has not read it yet.
                let _ = std::fs::remove_dir_all(&folder);
                let _ = std::fs::remove_dir_all(report_dir.path());
                return Err(ServiceError::Halted {
                    since: since.to_rfc3339(),
                });
            }
            self.active().insert(run_id.clone(), Arc::clone(&live));
        }
        info!(
            run = run_id,
            scenario = scenario.name,
            seed,
            dry_run = req.dry_run,
            "run started"
        );
        let mut spec = RunSpec::new(run_id.clone(), seed, req.labels.clone(), req.dry_run);
        spec.answers = Arc::clone(&live.answers);
        let hosts = Hosts::with_clients(
            self.agent.clone(),
            &scenario,
            &run_id,
            &mut self.agent_clients(),
        );
        let run_for = req.run_for_ms;
        let runs = Arc::clone(self);
        self.tracker.spawn(async move {
            let observer: Arc<dyn Observer> = crate::webhook::RunWatch::wrap(
                Arc::new(Feed(Arc::clone(&live))),
                runs.notifier(),
                crate::webhook::RunInfo {
                    run_id: live.run_id.clone(),
                    scenario: scenario.name.clone(),
                    labels: spec.labels.clone(),
                },
            );
            // A monkey file runs the Chaos Monkey through the same engine pieces.
            let result = if scenario.monkey.is_some() {
                crate::monkey::run(
                    Arc::new(scenario),
                    crate::monkey::MonkeySpec {
                        run: spec,
                        run_for: run_for.map(std::time::Duration::from_millis),
                    },
                    hosts,
                    report_dir,
                    observer,
                    Arc::clone(&live.abort),
                    Arc::new(crate::monkey::SystemClock),
                    Vec::new(),
                )
                .await
            } else {
                engine::run(
                    Arc::new(scenario),
                    spec,
                    hosts,
                    report_dir,
                    observer,
                    Arc::clone(&live.abort),
                    Vec::new(),
                )
                .await
            };
            let report = result.report;
            let mut report_dir = result.report_dir;
            if let Err(err) = report_dir.write_report(&report) {
                error!(run = report.run_id, error = %err, "cannot write the report folder; the history keeps the report");
            }
            // The report is the live run's before the history has its verdict, so that a view
            // never shows a verdict without its report; followers are woken after both.
            let report = Arc::new(report);
            live.inner().end = Some(Arc::clone(&report));
            if let Err(err) = runs.store().finish(&report, &live.report_dir) {
                error!(run = report.run_id, error = %format!("{:#}", anyhow::Error::from(err)), "cannot record the end of the run");
            }
            crate::metrics::global().run_finished(&report);
            info!(run = report.run_id, verdict = %report.verdict, exit_code = report.exit_code(), "run ended");
            if let Some(destination) = runs.config.trace_to.clone() {
                // A task of its own, tracked so that shutdown waits for it (at most
                // `otel::DEADLINE`): the run leaves `active` without waiting for the collector.
                let report = Arc::clone(&report);
                runs.tracker.spawn(async move {
                    match crate::otel::export(&destination, SERVICE, &report).await {
                        Ok(spans) => debug!(run = report.run_id, spans,
                            trace_id = %crate::otel::spans::trace_id(&report.run_id),
                            "run exported as a trace"),
                        Err(why) => warn!(run = report.run_id, url = destination.url, error = why,
                            "could not export the run's trace; the run and its report are unaffected"),
                    }
                });
            }
            live.bump();
            runs.active().remove(&live.run_id);
        });
        Ok(SubmitResponse {
            run_id,
            report_dir: Some(report_path),
        })
    }

    fn check_open(&self) -> Result<(), ServiceError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(ServiceError::ShuttingDown);
        }
        if let Some(h) = &*self.halt_state() {
            return Err(ServiceError::Halted {
                since: h.since.to_rfc3339(),
            });
        }
        Ok(())
    }

    /// Loads and checks a submitted scenario: 400 with the whole `FILE:LINE:COL` rendering, 403
    /// for what uses chaosd's machine when that is not allowed.
    fn check(
        &self,
        display: &Path,
        folder: &Path,
        req: &SubmitRequest,
    ) -> Result<Scenario, ServiceError> {
        let opts = LoadOptions {
            vars: req.vars.clone(),
            inventory: self.config.inventory.clone(),
            client_cert: self.config.client_cert.clone(),
        };
        let scenario = load_text_in(display, folder, &req.scenario, &opts)
            .map_err(|err| ServiceError::Scenario(err.to_string()))?;
        if scenario.monkey.is_none() && req.run_for_ms.is_some() {
            return Err(ServiceError::BadRequest(format!(
                "{}: `run_for_ms` is for monkey files (`monkey:`); this one has `steps:`",
                display.display()
            )));
        }
        if !self.config.allow_local {
            let uses = local_uses(&scenario);
            if !uses.is_empty() {
                return Err(ServiceError::Forbidden(format!(
                    "this chaosd does not run things on its own machine (`allow_local: false`), and the scenario does: {}; run it with `chaosctl run` where it belongs, or set `allow_local: true` in chaosd's configuration",
                    uses.join("; ")
                )));
            }
        }
        Ok(scenario)
    }

    /// A run by id, prefix, random suffix or `latest`: going on, or in the history.
    pub fn find(&self, id: &str) -> Result<Found, ServiceError> {
        if let Some(live) = self.active().get(id) {
            return Ok(Found::Live(Arc::clone(live)));
        }
        let found = self.store().get(id)?;
        let Some((record, report)) = found else {
            return Err(ServiceError::NotFound(format!(
                "no run `{id}`; `GET /v1/runs` lists them"
            )));
        };
        if record.verdict.is_none()
            && let Some(live) = self.active().get(&record.run_id)
        {
            return Ok(Found::Live(Arc::clone(live)));
        }
        Ok(Found::Done {
            record: Box::new(record),
            report: report.map(Box::new),
        })
    }

    /// `GET /v1/runs/{id}`.
    pub fn view(&self, id: &str) -> Result<RunView, ServiceError> {
        match self.find(id)? {
            Found::Live(live) => {
                let record = self
                    .store()
                    .get(&live.run_id)?
                    .ok_or_else(|| ServiceError::Internal("a running run left the history".into()))?
                    .0;
                let ended = live.inner().end.clone();
                Ok(RunView {
                    run: match &ended {
                        Some(report) => summary_of(&record, report, &live.report_dir),
                        None => RunSummary::from(&record),
                    },
                    live: if ended.is_some() { None } else { live.status() },
                    report: ended.map(|r| (*r).clone()),
                })
            }
            Found::Done { record, report } => Ok(RunView {
                run: RunSummary::from(&*record),
                live: None,
                report: report.map(|r| *r),
            }),
        }
    }

    /// The newest `limit` runs.
    pub fn list(&self, limit: usize) -> Result<Vec<RunSummary>, ServiceError> {
        Ok(self
            .store()
            .list(limit)?
            .iter()
            .map(RunSummary::from)
            .collect())
    }

    /// Asks a running run to stop; `Ok(false)` when it had been asked already.
    pub fn abort(&self, id: &str, why: &str) -> Result<(String, bool), ServiceError> {
        match self.find(id)? {
            Found::Live(live) => {
                let first = !live.abort.is_aborted();
                live.abort.abort(Cause::Api, why);
                Ok((live.run_id.clone(), first))
            }
            Found::Done { record, .. } => Err(ServiceError::Conflict(format!(
                "run `{}` has ended ({}); there is nothing to abort",
                record.run_id,
                super::api::verdict_text(record.verdict)
            ))),
        }
    }

    /// Answers the `manual` step a running run waits on: 409 when none waits.
    pub fn answer(
        &self,
        id: &str,
        confirmed: bool,
        req: super::api::AnswerRequest,
    ) -> Result<super::api::AnswerResponse, ServiceError> {
        let live = match self.find(id)? {
            Found::Live(live) => live,
            Found::Done { record, .. } => {
                return Err(ServiceError::Conflict(format!(
                    "run `{}` has ended ({}); there is nothing to answer",
                    record.run_id,
                    super::api::verdict_text(record.verdict)
                )));
            }
        };
        let answer = crate::engine::answers::Answer {
            confirmed,
            by: req.by.clone().filter(|b| !b.trim().is_empty()),
            reason: req.reason.clone().filter(|r| !r.trim().is_empty()),
            at: Utc::now(),
        };
        let by = answer.by.clone().unwrap_or_default();
        let question = live.answers.answer(req.step, answer).map_err(|err| {
            ServiceError::Conflict(format!(
                "run `{}`: {err}; only a `manual` step that is waiting can be confirmed or refused",
                live.run_id
            ))
        })?;
        info!(
            run = live.run_id,
            step = question.step,
            confirmed,
            "manual step answered"
        );
        Ok(super::api::AnswerResponse {
            run_id: live.run_id.clone(),
            step: question.step,
            step_name: question.name,
            prompt: question.prompt,
            answer: if confirmed { "confirmed" } else { "refused" }.to_string(),
            confirmed,
            by,
        })
    }

    /// Sets the halt switch (persisted), then aborts every running run; `by` (who asked) goes
    /// into each run's abort reason.
    pub fn halt(&self, by: &str) -> Result<Vec<String>, ServiceError> {
        {
            let mut halt = self.halt_state();
            if halt.is_none() {
                let h = self.persist_halt(Some(Halt { since: Utc::now() }))?;
                *halt = h;
                warn!("halted: every run aborted, new runs refused until POST /v1/resume");
                self.notifier().send(
                    &["halted"],
                    &crate::webhook::service_payload(
                        "halted",
                        "halted: every run aborted, new runs refused until resumed",
                    ),
                );
            }
        }
        let mut aborted = Vec::new();
        for live in self.active().values() {
            if !live.abort.is_aborted() {
                aborted.push(live.run_id.clone());
            }
            live.abort
                .abort(Cause::Api, format!("chaosd was halted by {by}"));
        }
        aborted.sort();
        Ok(aborted)
    }

    pub fn resume(&self) -> Result<(), ServiceError> {
        let mut halt = self.halt_state();
        self.persist_halt(None)?;
        if halt.take().is_some() {
            info!("resumed: new runs are accepted again");
            self.notifier().send(
                &["resumed"],
                &crate::webhook::service_payload("resumed", "resumed: new runs are accepted again"),
            );
        }
        Ok(())
    }

    /// Writes the halt switch where every instance reads it: the state directory's file, or
    /// PostgreSQL (where another instance may have set it first: its time is kept).
    fn persist_halt(&self, halt: Option<Halt>) -> Result<Option<Halt>, ServiceError> {
        match &self.store {
            Store::Sqlite(_) => {
                write_halt(&self.config.state_dir, halt.as_ref())?;
                Ok(halt)
            }
            Store::Postgres { store, cluster } => {
                let halt = match halt {
                    Some(h) => Some(Halt {
                        since: store.set_halt(h.since)?,
                    }),
                    None => {
                        store.clear_halt()?;
                        None
                    }
                };
                cluster.halt_changed(halt.as_ref().map(|h| h.since));
                Ok(halt)
            }
        }
    }

    /// Follows the halt switch that other instances set and clear in PostgreSQL: aborts this
    /// instance's runs within a tick of a halt anywhere, and accepts runs again after a resume.
    /// Returns when `stop` is cancelled; does nothing on SQLite.
    pub async fn follow_halt(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let Some(cluster) = self.store.cluster() else {
            return;
        };
        let mut watch = cluster.halt_watch();
        loop {
            let seen = *watch.borrow_and_update();
            match seen {
                Some(since) => {
                    let newly = {
                        let mut halt = self.halt_state();
                        let newly = halt.is_none();
                        if newly {
                            *halt = Some(Halt { since });
                        }
                        newly
                    };
                    if newly {
                        warn!(
                            "halted through another instance: every run aborted, new runs refused until resumed"
                        );
                    }
                    for live in self.active().values() {
                        live.abort
                            .abort(Cause::Api, "chaosd was halted (through another instance)");
                    }
                }
                None => {
                    if self.halt_state().take().is_some() {
                        info!("resumed through another instance: new runs are accepted again");
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                changed = watch.changed() => if changed.is_err() { return },
            }
        }
    }

    /// At shutdown: refuses new runs, aborts the running ones and waits until each has reverted
    /// its faults, written its report and recorded its end; then reverts anything the local
    /// agent still holds.
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let running = self.running();
        if !running.is_empty() {
            info!(runs = ?running, "aborting the running runs; waiting for their reverts");
        }
        for live in self.active().values() {
            live.abort
                .abort(Cause::Signal, "chaosd is stopping (SIGTERM or SIGINT)");
        }
        self.tracker.close();
        self.tracker.wait().await;
        let agent = self.agent.clone();
        if let Ok(results) = tokio::task::spawn_blocking(move || agent.shutdown()).await {
            for (fault_id, result) in results {
                if let Err(err) = result {
                    error!(fault_id, error = %err, "revert at shutdown failed; the journal keeps it");
                }
            }
        }
    }
}

impl Runs {
    /// Sets the webhooks (once, at start).
    pub fn set_notifier(&self, notifier: Arc<crate::webhook::Notifier>) {
        let _ = self.notifier.set(notifier);
    }

    /// The webhooks' sender (one that sends nothing when none was set).
    pub fn notifier(&self) -> Arc<crate::webhook::Notifier> {
        Arc::clone(
            self.notifier
                .get_or_init(|| crate::webhook::Notifier::new(Vec::new(), None)),
        )
    }
}

/// The run manager as the scheduler sees it ([`crate::schedule::scheduler::Runner`]).
pub struct ScheduledRuns(pub Arc<Runs>);

impl crate::schedule::scheduler::Runner for ScheduledRuns {
    fn check(&self, req: &SubmitRequest) -> Result<Scenario, ServiceError> {
        let display = PathBuf::from(req.file.as_deref().unwrap_or("scenario.yaml"));
        let folder = self
            .0
            .config
            .state_dir
            .join(RUNS_DIR)
            .join(format!("check-{}", new_run_id()));
        std::fs::create_dir_all(&folder).map_err(|e| {
            ServiceError::Internal(format!("cannot create `{}`: {e}", folder.display()))
        })?;
        let checked = self.0.check(&display, &folder, req);
        let _ = std::fs::remove_dir_all(&folder);
        checked
    }

    fn submit(&self, req: SubmitRequest) -> Result<SubmitResponse, ServiceError> {
        self.0.submit(req)
    }
}

/// The record of a run that has just ended, from its report (the history row may lag).
fn summary_of(record: &crate::store::RunRecord, report: &Report, report_dir: &str) -> RunSummary {
    let mut summary = RunSummary::from(record);
    summary.verdict = report.verdict.as_str().to_string();
    summary.cause = report.cause;
    summary.exit_code = Some(report.exit_code());
    summary.ended_at = Some(report.ended_at);
    summary.report_dir = Some(report_dir.to_string());
    summary
}

/// What in `scenario` runs on chaosd's own machine: setup, teardown, command probes there, and
/// faults on `local`. Empty when nothing does.
pub fn local_uses(scenario: &Scenario) -> Vec<String> {
    let mut uses = Vec::new();
    let on_local = |name: &str| {
        name == LOCAL_HOST
            || scenario
                .resolve_target(name)
                .is_some_and(|(hosts, _)| hosts.iter().any(|h| h == LOCAL_HOST))
    };
    for s in &scenario.setup {
        uses.push(format!("setup `{}` runs `{}`", s.name, s.run));
    }
    for t in &scenario.teardown {
        uses.push(format!("teardown `{}` runs `{}`", t.name, t.run));
    }
    let probes = scenario
        .steady_state
        .iter()
        .map(|p| ("steady-state probe", p))
        .chain(scenario.guardrails.iter().map(|p| ("guardrail", p)));
    for (role, p) in probes {
        if matches!(p.kind, agent::spec::ProbeKind::Command(_)) && on_local(&p.on) {
            uses.push(format!("{role} `{}` is a command probe on `local`", p.name));
        }
    }
    for (i, step) in scenario.steps.iter().enumerate() {
        for f in &step.faults {
            if on_local(&f.target) {
                uses.push(format!(
                    "step {} `{}` injects a fault on `local` (target `{}`)",
                    i + 1,
                    step.name,
                    f.target
                ));
            }
        }
    }
    for (i, step) in scenario.steps.iter().enumerate() {
        let actions = step
            .action
            .iter()
            .chain(step.actions.iter().map(|a| &a.action));
        for action in actions {
            match &action.on {
                None => uses.push(format!(
                    "step {} `{}` runs the action `{}` on chaosd's machine (it has no `on:`)",
                    i + 1,
                    step.name,
                    action.run
                )),
                Some(on) if on_local(on) => uses.push(format!(
                    "step {} `{}` runs the action `{}` on `local` (`on: {on}`)",
                    i + 1,
                    step.name,
                    action.run
                )),
                Some(_) => {}
            }
        }
    }
    if let Some(m) = &scenario.monkey
        && on_local(&m.target)
    {
        uses.push(format!("the monkey faults `local` (target `{}`)", m.target));
    }
    uses
}

fn read_halt(state_dir: &Path) -> Option<Halt> {
    let text = std::fs::read_to_string(state_dir.join(HALT_FILE)).ok()?;
    // A switch we cannot read still halts: safer than running.
    Some(serde_json::from_str(&text).unwrap_or(Halt { since: Utc::now() }))
}

fn write_halt(state_dir: &Path, halt: Option<&Halt>) -> Result<(), ServiceError> {
    let path = state_dir.join(HALT_FILE);
    let result = match halt {
        Some(h) => {
            let tmp = state_dir.join(format!("{HALT_FILE}.tmp"));
            let json = serde_json::to_vec(h).unwrap_or_default();
            std::fs::write(&tmp, json)
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &path))
        }
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        },
    };
    result.map_err(|e| {
        ServiceError::Internal(format!(
            "cannot record the halt switch in `{}`: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(yaml: &str) -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        load_text_in(
            Path::new("s.yaml"),
            dir.path(),
            yaml,
            &LoadOptions::default(),
        )
        .unwrap()
    }

    #[test]
    fn local_uses_names_setup_teardown_command_probes_and_local_faults() {
        let s = scenario(
            r#"version: 1
name: x
setup:
  - {name: up, run: [echo, hi]}
steady_state:
  - {name: cmd, command: {run: [true]}}
  - {name: web, http: {url: "http://127.0.0.1:1/"}}
steps:
  - name: pause
    target: local
    fault: {pause: {process: {name: nope}}}
    duration: 1s
teardown:
  - {name: down, run: [echo, bye]}
"#,
        );
        let uses = local_uses(&s).join("\n");
        for needle in [
            "setup `up`",
            "teardown `down`",
            "`cmd` is a command probe",
            "step 1 `pause`",
        ] {
            assert!(uses.contains(needle), "{needle}: {uses}");
        }
        assert!(!uses.contains("web"), "{uses}");
    }

    #[test]
    fn actions_on_the_controller_or_on_local_use_chaosd_s_machine() {
        let s = scenario(
            "version: 1\nname: a\nhosts:\n  db-1: {agent: \"https://10.0.0.1:7411\"}\nsteps:\n  - name: here\n    action: {run: [./promote.sh]}\n  - name: local\n    action: {run: [/bin/true], on: local}\n  - name: remote\n    action: {run: [/bin/true], on: db-1}\n  - name: ask\n    manual: {prompt: ok?}\n",
        );
        let uses = local_uses(&s);
        assert_eq!(uses.len(), 2, "{uses:?}");
        assert!(
            uses[0].contains("step 1 `here` runs the action"),
            "{uses:?}"
        );
        assert!(
            uses[1].contains("step 2 `local` runs the action `/bin/true` on `local`"),
            "{uses:?}"
        );
    }

    #[test]
    fn a_remote_only_scenario_uses_nothing_local() {
        let s = scenario(
            r#"version: 1
name: x
hosts:
  api-1: {agent: "https://10.0.0.1:7411"}
steady_state:
  - {name: web, http: {url: "http://127.0.0.1:1/"}}
steps:
  - name: pause
    target: api-1
    fault: {pause: {process: {name: nope}}}
    duration: 1s
"#,
        );
        assert_eq!(local_uses(&s), Vec::<String>::new());
    }

    // ---- the manual-step seam ----

    fn live(run_id: &str) -> Arc<LiveRun> {
        Arc::new(LiveRun {
            run_id: run_id.into(),
            report_dir: String::new(),
            abort: Abort::new(),
            answers: Arc::default(),
            inner: Mutex::new(LiveInner::default()),
            changed: Arc::new(watch::channel(0).0),
        })
    }

    fn question(prompt: &str) -> crate::engine::answers::Question {
        crate::engine::answers::Question {
            step: 0,
            name: "ask".into(),
            prompt: prompt.into(),
            asked_at: Utc::now(),
        }
    }

    fn by(name: &str) -> super::super::api::AnswerRequest {
        super::super::api::AnswerRequest {
            by: Some(name.into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn runs_answer_finds_the_run_and_says_409_when_nothing_waits() {
        let dir = tempfile::tempdir().unwrap();
        let runs = Runs::open(
            RunsConfig {
                state_dir: dir.path().join("state"),
                report_dir: dir.path().join("reports"),
                allow_local: false,
                inventory: None,
                client_cert: None,
                node: "test".into(),
                trace_to: None,
            },
            Store::sqlite(&dir.path().join("state")).unwrap(),
        )
        .unwrap();
        let live = live("run-1");
        runs.active().insert("run-1".into(), Arc::clone(&live));

        let err = runs.answer("run-1", true, by("dave")).unwrap_err();
        assert_eq!(err.status(), hyper::StatusCode::CONFLICT);
        assert!(
            err.to_string().contains("not waiting for an answer"),
            "{err}"
        );

        live.answers.ask(question("go?"));
        let answered = runs.answer("run-1", true, by("dave")).unwrap();
        assert_eq!(
            (
                answered.run_id.as_str(),
                answered.confirmed,
                answered.by.as_str()
            ),
            ("run-1", true, "dave")
        );
        assert_eq!(live.answers.answered().await.by.as_deref(), Some("dave"));
        // Taken once: a second answer finds nothing open.
        let err = runs.answer("run-1", false, by("erin")).unwrap_err();
        assert_eq!(err.status(), hyper::StatusCode::CONFLICT, "{err}");

        let err = runs.answer("nope", true, by("dave")).unwrap_err();
        assert_eq!(err.status(), hyper::StatusCode::NOT_FOUND, "{err}");
    }

    #[test]
    fn the_live_view_carries_the_pending_question() {
        let live = live("run-2");
        live.inner().status = Some(LiveStatus {
            phase: crate::engine::live::Phase::Step,
            step: None,
            fault_remaining: None,
            next_fault: None,
            prompt: None,
            probes: Vec::new(),
        });
        assert_eq!(live.status().unwrap().question, None);
        live.answers.ask(question("go?"));
        assert_eq!(live.status().unwrap().question.unwrap().prompt, "go?");
        assert_eq!(live.status().unwrap().prompt.as_deref(), Some("go?"));
        assert_eq!(
            live.snapshot(0).status.unwrap().question.unwrap().prompt,
            "go?"
        );
    }
}
