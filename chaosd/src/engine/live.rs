//! What a run shows while it goes: every event as it happens, and a status (phase, step, time
//! left on the held fault, each probe's passing share) refreshed a few times a second for a
//! terminal to draw.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::monitor::Series;
use crate::report::model::{Event, ProbeRole};

/// How often the status is refreshed.
const TICK: Duration = Duration::from_millis(200);

/// Receives a run's events and status. `chaosctl` draws them; chaosd will stream them.
pub trait Observer: Send + Sync {
    fn event(&self, event: &Event);

    /// Called a few times a second while the run goes, if [`Observer::wants_status`].
    fn status(&self, _status: &LiveStatus) {}

    fn wants_status(&self) -> bool {
        false
    }
}

/// An observer that ignores everything.
pub struct Silent;

impl Observer for Silent {
    fn event(&self, _event: &Event) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Setup,
    Preflight,
    Check,
    Step,
    AfterCheck,
    /// The monkey waits for its next fault.
    Waiting,
    Reverting,
    Teardown,
    Done,
    /// An `action` step's command runs.
    Action,
    /// A `manual` step waits for a person's answer.
    Manual,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Preflight => "preflight",
            Phase::Check => "checking steady state",
            Phase::Step => "fault held",
            Phase::AfterCheck => "after-check",
            Phase::Waiting => "waiting",
            Phase::Reverting => "reverting",
            Phase::Teardown => "teardown",
            Phase::Done => "done",
            Phase::Action => "running an action",
            Phase::Manual => "waiting for an answer",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LiveStatus {
    pub phase: Phase,
    /// (index from 0, number of steps, name)
    pub step: Option<(usize, usize, String)>,
    /// Time left until the held faults are reverted.
    pub fault_remaining: Option<Duration>,
    /// When the monkey's next fault is due.
    pub next_fault: Option<DateTime<Utc>>,
    /// The question a `manual` step waits on.
    pub prompt: Option<String>,
    pub probes: Vec<ProbeLine>,
}

#[derive(Debug, Clone)]
pub struct ProbeLine {
    pub name: String,
    pub host: String,
    pub role: ProbeRole,
    /// Passing samples in the latest window so far, and that window's size so far.
    pub passed: usize,
    pub total: usize,
    pub last_ok: Option<bool>,
}

struct State {
    phase: Phase,
    step: Option<(usize, usize, String)>,
    fault_ends: Option<Instant>,
    next_fault: Option<DateTime<Utc>>,
    prompt: Option<String>,
    series: Vec<Arc<Series>>,
}

#[derive(Clone)]
pub struct Live {
    state: Arc<Mutex<State>>,
    observer: Arc<dyn Observer>,
}

impl Live {
    pub fn new(observer: Arc<dyn Observer>) -> Live {
        Live {
            state: Arc::new(Mutex::new(State {
                phase: Phase::Setup,
                step: None,
                fault_ends: None,
                next_fault: None,
                prompt: None,
                series: Vec::new(),
            })),
            observer,
        }
    }

    /// Moves to a phase and shows it at once (the ticker only refreshes).
    pub fn phase(&self, phase: Phase, step: Option<(usize, usize, String)>) {
        {
            let mut state = self.state.lock().expect("live lock");
            state.phase = phase;
            if step.is_some() || matches!(phase, Phase::Done | Phase::Teardown) {
                state.step = step;
            }
        }
        self.show();
    }

    pub fn fault_ends(&self, at: Option<Instant>) {
        self.state.lock().expect("live lock").fault_ends = at;
        self.show();
    }

    fn show(&self) {
        if self.observer.wants_status() {
            self.observer.status(&self.snapshot());
        }
    }

    /// The question a `manual` step waits on, shown until it is answered.
    pub fn prompt(&self, prompt: Option<String>) {
        self.state.lock().expect("live lock").prompt = prompt;
        self.show();
    }

    pub fn next_fault(&self, at: Option<DateTime<Utc>>) {
        self.state.lock().expect("live lock").next_fault = at;
    }

    /// Stops showing every series (their sampling stopped).
    pub fn unwatch(&self) {
        self.state.lock().expect("live lock").series.clear();
    }

    /// Shows these series' shares from now on.
    pub fn watch(&self, series: &[Arc<Series>]) {
        self.state
            .lock()
            .expect("live lock")
            .series
            .extend(series.iter().cloned());
    }

    pub fn snapshot(&self) -> LiveStatus {
        let state = self.state.lock().expect("live lock");
        LiveStatus {
            phase: state.phase,
            step: state.step.clone(),
            fault_remaining: state
                .fault_ends
                .map(|end| end.saturating_duration_since(Instant::now())),
            next_fault: state.next_fault,
            prompt: state.prompt.clone(),
            probes: state
                .series
                .iter()
                .map(|s| {
                    let (passed, total) = s.window_share();
                    ProbeLine {
                        name: s.probe.name.clone(),
                        host: s.host.clone(),
                        role: s.role,
                        passed,
                        total,
                        last_ok: s.last_record().map(|r| r.ok),
                    }
                })
                .collect(),
        }
    }

    /// Refreshes the observer's status until the returned task is aborted.
    pub fn start_ticker(&self) -> tokio::task::JoinHandle<()> {
        let live = self.clone();
        tokio::spawn(async move {
            if !live.observer.wants_status() {
                return;
            }
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                live.observer.status(&live.snapshot());
            }
        })
    }
}
