//! The validated scenario: what a run works from once the file has passed every check.
//!
//! Everything here is resolved: defaults filled in, `${NAME}` substituted, relative paths made
//! absolute against the scenario's folder, durations and shares parsed. Positions in the file are
//! kept only where a later stage (planning, preflight) may still need to point at a line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use agent::spec::{FaultSpec, Pick};

// Probe kinds and commands are wire types: agents run probes from their hosts' own vantage.
pub use agent::spec::{
    Command, CommandExpect, CommandProbe, HttpExpect, HttpProbe, LoadProbe, Pattern, ProbeKind,
    ProcessProbe, PrometheusProbe, StatusMatch, TcpProbe,
};

/// A whole scenario file, checked.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub version: u32,
    pub name: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    /// The file it came from, absolute.
    pub path: PathBuf,
    /// The scenario's folder: where relative paths point and where commands run.
    pub base_dir: PathBuf,
    /// Hex SHA-256 of the file's bytes as read.
    pub sha256: String,
    /// Every host, `local` included.
    pub hosts: BTreeMap<String, Host>,
    pub targets: BTreeMap<String, Target>,
    pub setup: Vec<SetupCommand>,
    pub steady_state: Vec<Probe>,
    pub guardrails: Vec<Probe>,
    /// Empty for a monkey file.
    pub steps: Vec<Step>,
    pub teardown: Vec<TeardownCommand>,
    pub monkey: Option<Monkey>,
    pub schedule: Option<Schedule>,
    pub settings: Settings,
    /// The top-level `objectives`: every step's, unless the step replaces a key (the monkey's
    /// faults are judged by these).
    pub objectives: Objectives,
}

impl Scenario {
    /// The hosts a target name stands for, and its pick: a defined target, or a single host
    /// (picked whole). `None` when the name is neither.
    pub fn resolve_target(&self, name: &str) -> Option<(Vec<String>, Pick)> {
        if let Some(target) = self.targets.get(name) {
            return Some((target.hosts.clone(), target.pick));
        }
        self.hosts
            .contains_key(name)
            .then(|| (vec![name.to_string()], Pick::All))
    }
}

/// The name of the controller's own machine, always defined.
pub const LOCAL_HOST: &str = "local";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    /// `None` for `local`, which runs in-process.
    pub agent: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    /// Our client certificate and key, for an agent that requires one (`--client-ca`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// A named selection of hosts.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    /// The hosts it may choose from, in name order, already resolved from `hosts:` or `labels:`.
    pub hosts: Vec<String>,
    pub pick: Pick,
}

#[derive(Debug, Clone)]
pub struct SetupCommand {
    pub name: String,
    pub run: Command,
    /// Kept running through the run in its own process group, stopped at its end.
    pub background: bool,
    /// A probe that must pass once within `within` before the next setup entry.
    pub ready: Option<Ready>,
}

#[derive(Debug, Clone)]
pub struct Ready {
    pub probe: ProbeKind,
    pub within: Duration,
}

#[derive(Debug, Clone)]
pub struct TeardownCommand {
    pub name: String,
    pub run: Command,
}

/// A steady-state probe or a guardrail.
#[derive(Debug, Clone)]
pub struct Probe {
    pub name: String,
    /// A target name, or `local`.
    pub on: String,
    pub every: Duration,
    pub window: Duration,
    /// Share of a window's samples that must pass, in percent.
    pub tolerance: f64,
    pub kind: ProbeKind,
}

impl Probe {
    /// n = max(1, ⌊window / every⌋): how many samples a full window has.
    pub fn window_samples(&self) -> usize {
        window_samples(self.window, self.every)
    }
}

/// n = max(1, ⌊window / every⌋).
pub fn window_samples(window: Duration, every: Duration) -> usize {
    if every.is_zero() {
        return 1;
    }
    ((window.as_nanos() / every.as_nanos()) as usize).max(1)
}

/// One fault of a step, on one target.
#[derive(Debug, Clone)]
pub struct StepFault {
    /// A target name or a single host name.
    pub target: String,
    pub spec: FaultSpec,
    /// How long after the step's first injection this one is injected (0 for at once).
    pub start_after: Duration,
}

/// A command a step runs: on the controller, or on each host of `on` through its agent.
#[derive(Debug, Clone)]
pub struct Action {
    pub run: Command,
    pub timeout: Duration,
    /// A target or host name; `None` runs it on the controller.
    pub on: Option<String>,
}

/// An `action` entry of `faults:`: run during the step, `start_after` its first injection.
#[derive(Debug, Clone)]
pub struct TimedAction {
    pub action: Action,
    pub start_after: Duration,
}

/// A step that waits for a person's answer.
#[derive(Debug, Clone)]
pub struct Manual {
    pub prompt: String,
    pub timeout: Duration,
}

/// The default `timeout` of an `action`.
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(300);
/// The default `timeout` of a `manual` step.
pub const MANUAL_TIMEOUT: Duration = Duration::from_secs(1800);

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    /// One entry for `fault:`, several for `faults:`; empty for an `action` or `manual` step.
    pub faults: Vec<StepFault>,
    /// The `action` entries of `faults:`, run while the step's faults are held.
    pub actions: Vec<TimedAction>,
    /// An `action` step: exactly this, no fault.
    pub action: Option<Action>,
    /// A `manual` step: exactly this, no fault.
    pub manual: Option<Manual>,
    /// How long the faults are held (0s for kill by default).
    pub duration: Duration,
    pub recover_within: Duration,
    /// The step's objectives, the top-level ones merged in key by key.
    pub objectives: Objectives,
}

/// Limits on what users went through in a step, per steady-state probe and host; a miss makes
/// the step `deviated` (cause `objective`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Objectives {
    /// No probe failed for longer than this in one stretch.
    pub max_outage: Option<Duration>,
    /// Percent of the samples (of a `load` probe: the requests) that may fail.
    pub max_failed: Option<f64>,
    /// A probe's time spent failing over the step, in all.
    pub max_error: Option<Duration>,
}

impl Objectives {
    /// These, with `base`'s keys where these have none.
    pub fn or(self, base: Objectives) -> Objectives {
        Objectives {
            max_outage: self.max_outage.or(base.max_outage),
            max_failed: self.max_failed.or(base.max_failed),
            max_error: self.max_error.or(base.max_error),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Objectives::default()
    }
}

#[derive(Debug, Clone)]
pub struct Monkey {
    pub target: String,
    pub fault: FaultSpec,
    pub mean_interval: Duration,
    pub min_interval: Duration,
    pub active: Option<ActiveHours>,
    pub max_per_day: Option<u32>,
    /// How long each fault is held, as a step's `duration`: 0s for kill by default, required
    /// for every other kind. Our extension of v1 (a new key, allowed by the spec's growth rule).
    pub duration: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveHours {
    /// Lowercase three-letter names: mon, tue, ...
    pub days: Vec<String>,
    /// Minutes after midnight, start inclusive, end exclusive.
    pub start_minute: u32,
    pub end_minute: u32,
    /// An IANA name (`Europe/Berlin`), checked; `None` means UTC.
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub cron: String,
    pub timezone: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// `None` when the file gave none: the run draws one and records it.
    pub seed: Option<u64>,
    pub every: Duration,
    pub window: Duration,
    pub recover_within: Duration,
    pub lease: Duration,
    pub max_duration: Duration,
    pub max_hosts: usize,
    /// Calls to remote agents in flight at once (`engine::limit`).
    pub max_in_flight: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            seed: None,
            every: Duration::from_secs(1),
            window: Duration::from_secs(5),
            recover_within: Duration::from_secs(30),
            lease: Duration::from_secs(10),
            max_duration: Duration::from_secs(3600),
            max_hosts: 10,
            // No step on up to 384 hosts waits (new work gets three quarters), and far below
            // the descriptors and handshakes at once that hurt a controller (docs/scale.md).
            max_in_flight: 512,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sample_counts_follow_the_spec() {
        let ms = Duration::from_millis;
        // n = max(1, ⌊window / every⌋)
        assert_eq!(window_samples(ms(5000), ms(1000)), 5);
        assert_eq!(window_samples(ms(5500), ms(1000)), 5);
        assert_eq!(window_samples(ms(500), ms(1000)), 1);
        assert_eq!(window_samples(ms(0), ms(1000)), 1);
        assert_eq!(window_samples(ms(10_000), ms(3000)), 3);
    }

    #[test]
    fn status_classes_match_their_hundreds() {
        assert!(StatusMatch::Class(2).matches(204));
        assert!(!StatusMatch::Class(2).matches(301));
        assert!(StatusMatch::Code(503).matches(503));
    }
}
