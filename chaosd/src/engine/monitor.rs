//! Probes sampled in the background: one task per probe and host, taking a sample every `every`
//! (a slow sample delays the next; samples never overlap), keeping every sample, and waking the
//! engine after each one. The engine may ask for a sample at once ([`Monitor::sample_now`]: a
//! fault just ended, and its after-check needs a fresh sample); the next ones follow every
//! `every` from it.
//!
//! `load` probes are the exception: their samples are bursts of traffic that must follow each
//! other without a gap, so the next burst starts on time, every `every`, while the previous one
//! is still waiting for its slowest answers (at most its request `timeout`). Their samples are
//! recorded in the order they started.
//!
//! A sample counts at the moment it started, so one under way when sampling stops still
//! finishes (within its timeout) and is kept: an abort does not lose what users went through in
//! its last seconds.

use std::collections::{BTreeMap, VecDeque};

use std::sync::{Arc, Mutex};

use agent::probe::SampleOutcome;
use agent::spec::ProbeKind;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::hosts::Hosts;
use super::hypothesis::{Point, SeriesView, WindowRule};
use super::run::until;
use crate::report::model::{ProbeReport, ProbeRole, SampleRecord};
use crate::scenario::model::Probe;

/// One probe on one host, and every sample it took.
pub struct Series {
    pub probe: Probe,
    pub host: String,
    pub role: ProbeRole,
    pub rule: WindowRule,
    data: Mutex<SeriesData>,
}

#[derive(Default)]
struct SeriesData {
    points: Vec<Point>,
    records: Vec<SampleRecord>,
    /// When the oldest sample still under way started.
    pending: Option<Instant>,
}

impl Series {
    fn new(probe: Probe, host: String, role: ProbeRole) -> Series {
        let rule = WindowRule {
            n: probe.window_samples(),
            tolerance: probe.tolerance,
        };
        Series {
            probe,
            host,
            role,
            rule,
            data: Mutex::new(SeriesData::default()),
        }
    }

    /// A copy of the samples so far, for judging without holding the lock.
    pub fn points(&self) -> Vec<Point> {
        self.data.lock().expect("series lock").points.clone()
    }

    /// The latest sample's outcome and reason.
    pub fn last_record(&self) -> Option<SampleRecord> {
        self.data
            .lock()
            .expect("series lock")
            .records
            .last()
            .cloned()
    }

    /// Passing samples in the latest (possibly partial) window, and its size so far.
    pub fn window_share(&self) -> (usize, usize) {
        let data = self.data.lock().expect("series lock");
        let start = data.points.len().saturating_sub(self.rule.n);
        let window = &data.points[start..];
        (window.iter().filter(|p| p.ok).count(), window.len())
    }

    /// A copy of every sample record so far.
    pub fn records(&self) -> Vec<SampleRecord> {
        self.data.lock().expect("series lock").records.clone()
    }

    /// Whether every sample that started before `at` has been recorded.
    pub fn settled(&self, at: Instant) -> bool {
        self.data
            .lock()
            .expect("series lock")
            .pending
            .is_none_or(|started| started >= at)
    }

    fn set_pending(&self, started: Option<Instant>) {
        self.data.lock().expect("series lock").pending = started;
    }

    fn push(&self, point: Point, record: SampleRecord) {
        let mut data = self.data.lock().expect("series lock");
        data.points.push(point);
        data.records.push(record);
    }

    pub fn report(&self) -> ProbeReport {
        let data = self.data.lock().expect("series lock");
        ProbeReport {
            name: self.probe.name.clone(),
            kind: self.probe.kind.kind_name().to_string(),
            role: self.role,
            host: self.host.clone(),
            every_ms: self.probe.every.as_millis() as u64,
            window_samples: self.rule.n,
            tolerance: self.probe.tolerance,
            expect: agent::probe::describe_expect(&self.probe.kind),
            samples: data.records.clone(),
        }
    }
}

/// Samples owned by the engine: the series and a snapshot of their points for judging.
pub struct Snapshot {
    pub series: Vec<(Arc<Series>, Vec<Point>)>,
}

impl Snapshot {
    pub fn views(&self) -> Vec<SeriesView<'_>> {
        self.series
            .iter()
            .map(|(s, points)| SeriesView {
                rule: s.rule,
                points,
            })
            .collect()
    }
}

/// A running set of sampled probes.
pub struct Monitor {
    pub series: Vec<Arc<Series>>,
    changed: watch::Receiver<u64>,
    /// The moment the latest [`Monitor::sample_now`] asked samples to start from.
    wanted: watch::Sender<Option<Instant>>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Monitor {
    /// Starts sampling every probe on each of its hosts (`hosts_of` resolves `on:`), each from
    /// that host's own vantage.
    pub fn start(
        probes: &[Probe],
        role: ProbeRole,
        hosts_of: impl Fn(&str) -> Vec<String>,
        agents: &Hosts,
    ) -> Self {
        let (tx, changed) = watch::channel(0u64);
        let tx = Arc::new(tx);
        let (wanted, _) = watch::channel(None);
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut series = Vec::new();
        for probe in probes {
            for host in hosts_of(&probe.on) {
                let s = Arc::new(Series::new(probe.clone(), host, role));
                series.push(s.clone());
                tasks.spawn(sample_forever(
                    s,
                    agents.clone(),
                    tx.clone(),
                    wanted.subscribe(),
                    stop.clone(),
                ));
            }
        }
        Monitor {
            series,
            changed,
            wanted,
            stop,
            tasks,
        }
    }

    /// Waits until some series has a new sample. Returns at once if there are no series, since
    /// then nothing will ever change.
    pub async fn changed(&mut self) {
        if self.series.is_empty() {
            std::future::pending::<()>().await;
        }
        // The sender lives in the tasks; if all ended, nothing changes any more.
        if self.changed.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Like [`Monitor::changed`], for a monitor that may not exist (then never).
    pub async fn changed_opt(monitor: Option<&mut Monitor>) {
        match monitor {
            Some(monitor) => monitor.changed().await,
            None => std::future::pending().await,
        }
    }

    /// Asks every series whose latest sample started before `at` for one now, or as soon as
    /// the one under way ends, rather than at its next turn: an after-check is decided on
    /// samples that started after the fault's end, and waiting a whole `every` for the first of
    /// them only delays the verdict. `load` probes keep their pace.
    pub fn sample_now(&self, at: Instant) {
        self.wanted.send_replace(Some(at));
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            series: self
                .series
                .iter()
                .map(|s| (s.clone(), s.points()))
                .collect(),
        }
    }

    /// Whether every series has recorded each sample it started before `at`.
    pub fn settled(&self, at: Instant) -> bool {
        self.series.iter().all(|s| s.settled(at))
    }

    /// Stops sampling and returns every sample taken. Samples under way finish first (each
    /// within its kind's timeout) and are kept.
    pub async fn stop(mut self) -> Vec<ProbeReport> {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.series.iter().map(|s| s.report()).collect()
    }
}

async fn sample_forever(
    series: Arc<Series>,
    agents: Hosts,
    changed: Arc<watch::Sender<u64>>,
    mut wanted: watch::Receiver<Option<Instant>>,
    stop: CancellationToken,
) {
    if matches!(series.probe.kind, ProbeKind::Load(_)) {
        return sample_open_loop(series, agents, changed, stop).await;
    }
    let every = series.probe.every;
    let mut next = Instant::now();
    let mut last_started: Option<Instant> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            // Due already (the first sample, or the last one took its whole `every`): at once.
            () = until(next) => {}
            Ok(()) = wanted.changed() => {
                let asked = *wanted.borrow_and_update();
                // A sample that started at or after the asked moment already answers it.
                if asked.is_none_or(|asked| last_started.is_some_and(|last| last >= asked)) {
                    continue;
                }
            }
        }
        let started = Instant::now();
        last_started = Some(started);
        let at = Utc::now();
        series.set_pending(Some(started));
        // Not cancelled by `stop`: the sample started in the window it belongs to, and the
        // kind's own timeout bounds it.
        let outcome = agents.sample(&series.host, &series.probe.kind).await;
        series.push(
            Point {
                at: started,
                ok: outcome.ok,
            },
            record(at, outcome),
        );
        series.set_pending(None);
        changed.send_modify(|n| *n += 1);
        next = (started + every).max(Instant::now());
    }
}

/// A `load` probe's samples: one starts every `every` whatever the previous ones are doing, and
/// each is recorded, in the order they started, once it and those before it have ended.
async fn sample_open_loop(
    series: Arc<Series>,
    agents: Hosts,
    changed: Arc<watch::Sender<u64>>,
    stop: CancellationToken,
) {
    let every = series.probe.every;
    let mut next = Instant::now();
    // Dropped on return, which aborts every sample under way (and their requests).
    let mut running: JoinSet<(u64, SampleOutcome)> = JoinSet::new();
    let mut ids = BTreeMap::new();
    let mut started: VecDeque<(u64, Instant, DateTime<Utc>)> = VecDeque::new();
    let mut ended: BTreeMap<u64, SampleOutcome> = BTreeMap::new();
    let mut seq = 0u64;
    let mut stopping = false;
    loop {
        if stopping && running.is_empty() {
            return;
        }
        tokio::select! {
            // No new bursts; those under way finish and are recorded.
            () = stop.cancelled(), if !stopping => stopping = true,
            () = sleep_until(next), if !stopping => {
                let n = seq;
                seq += 1;
                started.push_back((n, Instant::now(), Utc::now()));
                let (agents, host, kind) =
                    (agents.clone(), series.host.clone(), series.probe.kind.clone());
                let task = running.spawn(async move { (n, agents.sample(&host, &kind).await) });
                ids.insert(task.id(), n);
                series.set_pending(started.front().map(|&(_, at, _)| at));
                next = (next + every).max(Instant::now());
            }
            Some(joined) = running.join_next_with_id(), if !running.is_empty() => {
                let (n, outcome) = match joined {
                    Ok((id, (n, outcome))) => {
                        ids.remove(&id);
                        (n, outcome)
                    }
                    Err(err) => {
                        let n = ids.remove(&err.id()).unwrap_or_default();
                        let outcome = SampleOutcome {
                            ok: false,
                            latency: std::time::Duration::ZERO,
                            reason: format!("the sample failed: {err}"),
                            load: None,
                        };
                        (n, outcome)
                    }
                };
                ended.insert(n, outcome);
                while let Some(&(n, at_instant, at)) = started.front() {
                    let Some(outcome) = ended.remove(&n) else { break };
                    started.pop_front();
                    series.push(Point { at: at_instant, ok: outcome.ok }, record(at, outcome));
                    changed.send_modify(|c| *c += 1);
                }
                series.set_pending(started.front().map(|&(_, at, _)| at));
            }
        }
    }
}

fn record(at: DateTime<Utc>, outcome: SampleOutcome) -> SampleRecord {
    SampleRecord {
        at,
        ok: outcome.ok,
        latency_ms: outcome.latency.as_secs_f64() * 1000.0,
        reason: outcome.reason,
        load: outcome.load,
    }
}
