//! The scheduler: chaosd's task that starts scheduled runs. It keeps the schedules in the run
//! history's database, waits on a [`Clock`] for the earliest next due time, and at each due time
//! submits the schedule's scenario through a [`Runner`] (chaosd's run manager), labelled
//! `schedule=<id>`, so the run is an ordinary one with its report and history row.
//!
//! Each schedule's next due time is counted from a cursor: the moment it was added, or chaosd
//! started, or its last due time. Several due times that passed at once (a suspended machine, a
//! clock jump, a run manager that was busy) start one run, not one each; due times while chaosd
//! was down start none. A refused submission (chaosd halted, a scenario that no longer loads) is
//! recorded as the schedule's `last_error` and counted, and the schedule goes on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::api::{CreateSchedule, ScheduleCreated, ScheduleRemoved, ScheduleView};
use super::{Timing, TimingError};
use crate::metrics::global;
use crate::monkey::Clock;
use crate::scenario::model::Scenario;
use crate::service::api::{SubmitRequest, SubmitResponse};
use crate::service::error::ServiceError;
use crate::store::{ScheduleRecord, Store};

/// How often a follower looks whether it leads now, and a leader on a shared store looks for
/// schedules added elsewhere.
pub const FOLLOWER_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// How far back a new leader fires a due time that its predecessor may have missed.
pub const TAKEOVER_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);

/// The label every scheduled run carries.
pub const LABEL: &str = "schedule";

/// What the scheduler needs of the run manager.
pub trait Runner: Send + Sync {
    /// Checks a scenario as a submission would (400, 403), without running it.
    fn check(&self, req: &SubmitRequest) -> Result<Scenario, ServiceError>;
    fn submit(&self, req: SubmitRequest) -> Result<SubmitResponse, ServiceError>;
}

pub struct Scheduler {
    store: Store,
    runner: Arc<dyn Runner>,
    clock: Arc<dyn Clock>,
    /// Where each schedule's next due time is counted from.
    cursors: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Bumped when a schedule is added or removed, so the task looks again.
    changed: watch::Sender<u64>,
}

impl Scheduler {
    /// Opens the schedules kept in the store.
    pub fn open(
        store: Store,
        runner: Arc<dyn Runner>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Arc<Scheduler>> {
        let now = clock.now();
        let cursors = store
            .schedules()?
            .into_iter()
            .map(|s| (s.id, now))
            .collect();
        Ok(Arc::new(Scheduler {
            store,
            runner,
            clock,
            cursors: Mutex::new(cursors),
            changed: watch::channel(0).0,
        }))
    }

    fn store(&self) -> &Store {
        &self.store
    }

    fn cursors(&self) -> MutexGuard<'_, HashMap<String, DateTime<Utc>>> {
        self.cursors.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `POST /v1/schedules`: checks the scenario, the cron (given, else the scenario's
    /// `schedule:`), the zone and the blackouts, and stores the schedule.
    pub fn add(&self, req: CreateSchedule) -> Result<ScheduleCreated, ServiceError> {
        let submit = SubmitRequest {
            scenario: req.scenario.clone(),
            file: req.file.clone(),
            vars: req.vars.clone(),
            labels: req.labels.clone(),
            seed: None,
            dry_run: false,
            run_for_ms: None,
        };
        let scenario = self.runner.check(&submit)?;
        if scenario.monkey.is_some() {
            return Err(ServiceError::BadRequest(
                "this is a monkey file (`monkey:`); schedules run scenarios with `steps:`".into(),
            ));
        }
        let (cron, timezone) = match (&req.cron, &scenario.schedule) {
            (Some(cron), _) => (cron.clone(), req.timezone.clone()),
            (None, Some(s)) => (
                s.cron.clone(),
                req.timezone.clone().or_else(|| s.timezone.clone()),
            ),
            (None, None) => {
                return Err(ServiceError::BadRequest(format!(
                    "`{}` has no `schedule:` and the request no `cron`; give one (`chaosctl schedule add FILE --cron EXPR`)",
                    scenario.name
                )));
            }
        };
        let timing = timing(&cron, timezone.as_deref(), req.blackouts.clone())?;
        let now = self.clock.now();
        let record = ScheduleRecord {
            id: new_schedule_id(now),
            scenario: scenario.name.clone(),
            file: req.file,
            scenario_text: req.scenario,
            cron: timing.expr().to_string(),
            timezone,
            vars: req.vars,
            labels: req.labels,
            blackouts: req.blackouts,
            created_at: now,
            last_due: None,
            last_run_id: None,
            last_error: None,
        };
        self.store().add_schedule(&record)?;
        self.cursors().insert(record.id.clone(), now);
        self.changed.send_modify(|n| *n += 1);
        let next_run = timing.next_after(now);
        info!(schedule = record.id, scenario = record.scenario, cron = record.cron,
            timezone = %timing.timezone(), next_run = ?next_run, "schedule added");
        Ok(ScheduleCreated {
            id: record.id,
            next_run,
        })
    }

    /// `GET /v1/schedules`.
    pub fn list(&self) -> Result<Vec<ScheduleView>, ServiceError> {
        let now = self.clock.now();
        let records = self.store().schedules()?;
        let cursors = self.cursors().clone();
        Ok(records
            .into_iter()
            .map(|r| {
                let timing = timing(&r.cron, r.timezone.as_deref(), r.blackouts.clone()).ok();
                let from = cursors.get(&r.id).copied().unwrap_or(now);
                ScheduleView {
                    next_run: timing.as_ref().and_then(|t| t.next_after(from)),
                    timezone: timing.as_ref().map_or_else(
                        || r.timezone.clone().unwrap_or_default(),
                        |t| t.timezone().name().to_string(),
                    ),
                    id: r.id,
                    scenario: r.scenario,
                    file: r.file,
                    cron: r.cron,
                    labels: r.labels,
                    blackouts: r.blackouts,
                    created_at: r.created_at,
                    last_due: r.last_due,
                    last_run_id: r.last_run_id,
                    last_error: r.last_error,
                }
            })
            .collect())
    }

    /// `DELETE /v1/schedules/{id}`: 404 for an unknown id. Runs it started go on.
    pub fn remove(&self, id: &str) -> Result<ScheduleRemoved, ServiceError> {
        if !self.store().remove_schedule(id)? {
            return Err(ServiceError::NotFound(format!(
                "no schedule `{id}`; `GET /v1/schedules` lists them"
            )));
        }
        self.cursors().remove(id);
        self.changed.send_modify(|n| *n += 1);
        info!(schedule = id, "schedule removed");
        Ok(ScheduleRemoved {
            id: id.to_string(),
            removed: true,
        })
    }

    /// Starts scheduled runs until `stop`. Where several instances share the store, only the
    /// leader fires; the others look again every [`FOLLOWER_TICK`], and so does the leader, for
    /// schedules added through another instance.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut changed = self.changed.subscribe();
        let shared = self.store.cluster().is_some();
        let mut leading = !shared;
        loop {
            changed.borrow_and_update();
            let now = self.clock.now();
            if !self.store.is_leader() {
                leading = false;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(FOLLOWER_TICK) => continue,
                }
            }
            if !leading {
                leading = true;
                if let Err(err) = self.take_over(now) {
                    warn!(error = %format!("{err:#}"), "cannot read the schedules to take over");
                }
            }
            let next = match self.fire_due(now) {
                Ok(next) => next,
                Err(err) => {
                    warn!(error = %format!("{err:#}"), "cannot read the schedules; trying again in a minute");
                    Some(now + chrono::Duration::minutes(1))
                }
            };
            // Shared: wake up at least every tick to notice lost leadership and new schedules.
            let next = if shared {
                let cap = now + chrono::Duration::from_std(FOLLOWER_TICK).unwrap_or_default();
                Some(next.map_or(cap, |n| n.min(cap)))
            } else {
                next
            };
            match next {
                Some(at) => tokio::select! {
                    () = stop.cancelled() => return,
                    res = changed.changed() => if res.is_err() { return },
                    () = self.clock.sleep_until(at) => {}
                },
                None => tokio::select! {
                    () = stop.cancelled() => return,
                    res = changed.changed() => if res.is_err() { return },
                },
            }
        }
    }

    /// Becoming the leader: each schedule's cursor from its last due time (which the old
    /// leader recorded), so that a due time during the takeover still fires (once: the claim
    /// in the store refuses a due time fired already); but no further back than
    /// [`TAKEOVER_WINDOW`], so that due times while every instance was down start nothing.
    fn take_over(&self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let oldest = now - chrono::Duration::from_std(TAKEOVER_WINDOW).unwrap_or_default();
        let records = self.store().schedules()?;
        let mut cursors = self.cursors();
        for r in records {
            let last = r.last_due.unwrap_or(r.created_at);
            cursors.insert(r.id, last.max(oldest).min(now));
        }
        info!("leading: schedules fire from this instance");
        Ok(())
    }

    /// Starts a run for every schedule due at `now`; the earliest next due time after that.
    fn fire_due(&self, now: DateTime<Utc>) -> anyhow::Result<Option<DateTime<Utc>>> {
        let records = self.store().schedules()?;
        let mut earliest: Option<DateTime<Utc>> = None;
        for r in records {
            let timing = match timing(&r.cron, r.timezone.as_deref(), r.blackouts.clone()) {
                Ok(t) => t,
                Err(err) => {
                    warn!(schedule = r.id, error = %err, "schedule is unusable; skipped");
                    continue;
                }
            };
            let from = *self.cursors().entry(r.id.clone()).or_insert(now);
            let Some(due) = timing.next_after(from) else {
                continue;
            };
            let next = if due <= now {
                self.start(&r, due);
                self.cursors().insert(r.id.clone(), now);
                timing.next_after(now)
            } else {
                Some(due)
            };
            if let Some(next) = next {
                earliest = Some(earliest.map_or(next, |e| e.min(next)));
            }
        }
        Ok(earliest)
    }

    fn start(&self, r: &ScheduleRecord, due: DateTime<Utc>) {
        // Fenced: a leader that lost the database since the loop looked fires nothing.
        if !self.store.is_leader() {
            return;
        }
        match self.store.claim_due(&r.id, due) {
            Ok(true) => {}
            Ok(false) => {
                info!(schedule = r.id, due = %due, "due time fired by another instance already");
                return;
            }
            Err(err) => {
                warn!(schedule = r.id, due = %due, error = %format!("{err:#}"), "cannot claim the due time; not fired");
                return;
            }
        }
        let mut labels: BTreeMap<String, String> = r.labels.clone();
        labels.insert(LABEL.to_string(), r.id.clone());
        let req = SubmitRequest {
            scenario: r.scenario_text.clone(),
            file: r.file.clone(),
            vars: r.vars.clone(),
            labels,
            seed: None,
            dry_run: false,
            run_for_ms: None,
        };
        let (run_id, error) = match self.runner.submit(req) {
            Ok(created) => {
                info!(schedule = r.id, run = created.run_id, due = %due, "scheduled run started");
                global().scheduled.inc(&["submitted"]);
                (Some(created.run_id), None)
            }
            Err(err) => {
                warn!(schedule = r.id, due = %due, error = %err, "scheduled run refused");
                global().scheduled.inc(&["refused"]);
                (None, Some(err.to_string()))
            }
        };
        if let Err(err) =
            self.store()
                .schedule_fired(&r.id, due, run_id.as_deref(), error.as_deref())
        {
            warn!(schedule = r.id, error = %format!("{err:#}"), "cannot record the scheduled run");
        }
    }
}

fn timing(
    cron: &str,
    timezone: Option<&str>,
    blackouts: Vec<super::Blackout>,
) -> Result<Timing, ServiceError> {
    Timing::new(cron, timezone, blackouts)
        .map_err(|e: TimingError| ServiceError::BadRequest(e.to_string()))
}

/// `sch-` and 8 hex digits, from the time and the process's hasher seed.
fn new_schedule_id(now: DateTime<Utc>) -> String {
    let noise = std::hash::BuildHasher::hash_one(
        &std::hash::RandomState::new(),
        (now.timestamp_nanos_opt(), std::process::id()),
    );
    format!("sch-{:08x}", noise & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::monkey::TokioClock;
    use crate::scenario::{LoadOptions, load_text_in};

    /// A run manager that checks scenarios for real and records submissions.
    struct Fake {
        dir: tempfile::TempDir,
        submitted: Mutex<Vec<(DateTime<Utc>, SubmitRequest)>>,
        clock: Arc<dyn Clock>,
        refuse: std::sync::atomic::AtomicBool,
    }

    impl Runner for Fake {
        fn check(&self, req: &SubmitRequest) -> Result<Scenario, ServiceError> {
            load_text_in(
                Path::new("s.yaml"),
                self.dir.path(),
                &req.scenario,
                &LoadOptions::default(),
            )
            .map_err(|e| ServiceError::Scenario(e.to_string()))
        }

        fn submit(&self, req: SubmitRequest) -> Result<SubmitResponse, ServiceError> {
            if self.refuse.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(ServiceError::Halted {
                    since: "then".into(),
                });
            }
            let mut s = self.submitted.lock().unwrap();
            s.push((self.clock.now(), req));
            Ok(SubmitResponse {
                run_id: format!("run-{}", s.len()),
                report_dir: None,
            })
        }
    }

    const SCENARIO: &str = r#"version: 1
name: tuesday-game-day
schedule: {cron: "0 10 * * TUE", timezone: Europe/Berlin}
steady_state:
  - {name: web, http: {url: "http://127.0.0.1:1/"}}
steps:
  - name: pause
    target: local
    fault: {pause: {process: {name: nope}}}
    duration: 1s
"#;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn setup(start: &str) -> (tempfile::TempDir, Arc<Fake>, Arc<dyn Clock>) {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(utc(start)));
        let fake = Arc::new(Fake {
            dir: tempfile::tempdir().unwrap(),
            submitted: Mutex::new(Vec::new()),
            clock: clock.clone(),
            refuse: false.into(),
        });
        (tempfile::tempdir().unwrap(), fake, clock)
    }

    #[tokio::test(start_paused = true)]
    async fn submits_at_each_due_time_skipping_blackouts_and_survives_a_restart() {
        // Saturday 2026-03-28 12:00Z; Berlin moves to summer time the next night.
        let (state, fake, clock) = setup("2026-03-28T12:00:00Z");
        let scheduler = Scheduler::open(
            Store::sqlite(state.path()).unwrap(),
            fake.clone(),
            clock.clone(),
        )
        .unwrap();
        // The scenario's own schedule, and a freeze over the second Tuesday.
        let created = scheduler
            .add(CreateSchedule {
                scenario: SCENARIO.into(),
                labels: BTreeMap::from([("team".into(), "payments".into())]),
                blackouts: vec![super::super::Blackout::Window {
                    from: utc("2026-04-06T00:00:00Z"),
                    to: utc("2026-04-08T00:00:00Z"),
                }],
                ..CreateSchedule::default()
            })
            .unwrap();
        assert_eq!(created.next_run, Some(utc("2026-03-31T08:00:00Z")));
        let stop = CancellationToken::new();
        let task = tokio::spawn(scheduler.clone().run(stop.clone()));

        tokio::time::sleep(Duration::from_secs(21 * 24 * 3600)).await;
        let times: Vec<DateTime<Utc>> = fake
            .submitted
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(
            times,
            [utc("2026-03-31T08:00:00Z"), utc("2026-04-14T08:00:00Z")]
        );
        let req = fake.submitted.lock().unwrap()[0].1.clone();
        assert_eq!(req.labels.get(LABEL), Some(&created.id));
        assert_eq!(req.labels.get("team").map(String::as_str), Some("payments"));
        assert_eq!(req.scenario, SCENARIO);

        let list = scheduler.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].cron, "0 10 * * TUE");
        assert_eq!(list[0].timezone, "Europe/Berlin");
        assert_eq!(list[0].last_run_id.as_deref(), Some("run-2"));
        assert_eq!(list[0].next_run, Some(utc("2026-04-21T08:00:00Z")));

        // A restart: the schedule is still there, and no missed time is made up for.
        stop.cancel();
        task.await.unwrap();
        drop(scheduler);
        tokio::time::sleep(Duration::from_secs(7 * 24 * 3600)).await; // 04-18 -> 04-25, down
        let scheduler = Scheduler::open(
            Store::sqlite(state.path()).unwrap(),
            fake.clone(),
            clock.clone(),
        )
        .unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(scheduler.clone().run(stop.clone()));
        tokio::time::sleep(Duration::from_secs(7 * 24 * 3600)).await;
        let times: Vec<DateTime<Utc>> = fake
            .submitted
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(times.len(), 3, "{times:?}");
        assert_eq!(times[2], utc("2026-04-28T08:00:00Z"));

        // Refused submissions are recorded and the schedule goes on; removal stops it.
        fake.refuse.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(7 * 24 * 3600)).await;
        let list = scheduler.list().unwrap();
        assert!(
            list[0].last_error.as_deref().unwrap().contains("halted"),
            "{list:?}"
        );
        scheduler.remove(&created.id).unwrap();
        assert!(matches!(
            scheduler.remove(&created.id),
            Err(ServiceError::NotFound(_))
        ));
        fake.refuse
            .store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(14 * 24 * 3600)).await;
        assert_eq!(fake.submitted.lock().unwrap().len(), 3);
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn refusals() {
        let (state, fake, clock) = setup("2026-03-28T12:00:00Z");
        let scheduler = Scheduler::open(Store::sqlite(state.path()).unwrap(), fake, clock).unwrap();
        let no_schedule = SCENARIO.replace(
            "schedule: {cron: \"0 10 * * TUE\", timezone: Europe/Berlin}\n",
            "",
        );
        for (req, needle) in [
            (
                CreateSchedule {
                    scenario: no_schedule.clone(),
                    ..CreateSchedule::default()
                },
                "has no `schedule:`",
            ),
            (
                CreateSchedule {
                    scenario: no_schedule,
                    cron: Some("* * *".into()),
                    ..CreateSchedule::default()
                },
                "`* * *` is not a cron expression",
            ),
            (
                CreateSchedule {
                    scenario: SCENARIO.into(),
                    timezone: Some("Berlin".into()),
                    ..CreateSchedule::default()
                },
                "unknown time zone `Berlin`",
            ),
            (
                CreateSchedule {
                    scenario: "version: 1\nname: x\nstepz: []\n".into(),
                    ..CreateSchedule::default()
                },
                "stepz",
            ),
        ] {
            let err = scheduler.add(req).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        assert!(scheduler.list().unwrap().is_empty());
    }
}
