//! Resolving a scenario for one run: which hosts each target picks with the seed, which faults go
//! where, and how long it should take. `chaosctl plan` prints this; a run executes it.

use std::collections::BTreeMap;
use std::time::Duration;

use agent::spec::{FaultSpec, Pick};
use rand::SeedableRng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

use crate::scenario::model::{Probe, Scenario};

#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    /// The hosts each target or host name stands for in this run, drawn once.
    pub picks: BTreeMap<String, Vec<String>>,
    pub steps: Vec<PlannedStep>,
}

#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub index: usize,
    pub name: String,
    pub faults: Vec<PlannedFault>,
    /// The `action` entries of `faults:`, run during the hold.
    pub actions: Vec<PlannedAction>,
    /// An `action` step's command.
    pub action: Option<PlannedAction>,
    /// A `manual` step's question.
    pub manual: Option<crate::scenario::model::Manual>,
    pub duration: Duration,
    pub recover_within: Duration,
    pub objectives: crate::scenario::model::Objectives,
}

impl PlannedStep {
    /// Every host this step faults, in name order, once each.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .faults
            .iter()
            .flat_map(|f| f.hosts.iter().cloned())
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

#[derive(Debug, Clone)]
pub struct PlannedFault {
    /// Position in the step's `faults` (0 for `fault:`).
    pub index: usize,
    pub target: String,
    pub hosts: Vec<String>,
    pub spec: FaultSpec,
    /// Injected this long after the step's first injection.
    pub start_after: Duration,
}

/// A command a step runs, and where: on the controller (`on` is `None`), or on each of `hosts`.
#[derive(Debug, Clone)]
pub struct PlannedAction {
    pub run: agent::spec::Command,
    pub timeout: Duration,
    pub on: Option<String>,
    pub hosts: Vec<String>,
    /// For an entry of `faults:`: this long after the step's first injection.
    pub start_after: Duration,
}

/// The bounds of a run's length, from the waits the scenario asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedTime {
    /// Every check holds at its first whole window.
    pub at_least: Duration,
    /// Every after-check takes its whole `recover_within` and one window more.
    pub at_most: Duration,
}

impl Plan {
    /// Draws every pick with `seed`. Targets are drawn in name order, so the same seed gives the
    /// same hosts whatever order the file uses them in.
    pub fn resolve(scenario: &Scenario, seed: u64) -> Plan {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut picks = BTreeMap::new();
        for (name, target) in &scenario.targets {
            picks.insert(
                name.clone(),
                draw_hosts(&mut rng, &target.hosts, target.pick),
            );
        }
        for name in scenario.hosts.keys() {
            picks
                .entry(name.clone())
                .or_insert_with(|| vec![name.clone()]);
        }
        let steps = scenario
            .steps
            .iter()
            .enumerate()
            .map(|(index, step)| PlannedStep {
                index,
                name: step.name.clone(),
                faults: step
                    .faults
                    .iter()
                    .enumerate()
                    .map(|(i, f)| PlannedFault {
                        index: i,
                        target: f.target.clone(),
                        hosts: picks.get(&f.target).cloned().unwrap_or_default(),
                        spec: f.spec.clone(),
                        start_after: f.start_after,
                    })
                    .collect(),
                actions: step
                    .actions
                    .iter()
                    .map(|a| planned_action(&a.action, a.start_after, &picks))
                    .collect(),
                action: step
                    .action
                    .as_ref()
                    .map(|a| planned_action(a, Duration::ZERO, &picks)),
                manual: step.manual.clone(),
                duration: step.duration,
                recover_within: step.recover_within,
                objectives: step.objectives,
            })
            .collect();
        Plan { seed, picks, steps }
    }

    /// The hosts a probe's `on:` means in this run.
    pub fn hosts_of(&self, name: &str) -> Vec<String> {
        self.picks.get(name).cloned().unwrap_or_default()
    }

    /// How long the run should take, not counting setup, preflight and teardown, as the engine
    /// runs it: a check is decided at the last sample of its first whole window, n samples
    /// `every` apart, so (n − 1) × `every` after its first sample at the soonest, and at most one
    /// `every` more (waiting for the first fresh sample). An after-check's window starts within
    /// `recover_within` of the faults' end. A step of only kills ends its faults when the signal
    /// is sent, so its after-check runs during its `duration`, not after it.
    pub fn time(&self, scenario: &Scenario) -> PlannedTime {
        let span = longest_window_span(&scenario.steady_state);
        let window = longest_window(&scenario.steady_state);
        let mut at_least = span;
        let mut at_most = window;
        for step in &self.steps {
            let only_kills =
                !step.faults.is_empty() && step.faults.iter().all(|f| !f.spec.kind().holds());
            if let Some(action) = &step.action {
                at_least += span;
                at_most += action.timeout + step.recover_within + window;
            } else if let Some(manual) = &step.manual {
                at_least += span;
                at_most += manual.timeout + step.recover_within + window;
            } else if only_kills {
                at_least += step.duration.max(span);
                at_most += step.duration.max(step.recover_within + window);
            } else {
                at_least += step.duration + span;
                at_most += step.duration + step.recover_within + window;
            }
        }
        PlannedTime { at_least, at_most }
    }
}

fn planned_action(
    action: &crate::scenario::model::Action,
    start_after: Duration,
    picks: &BTreeMap<String, Vec<String>>,
) -> PlannedAction {
    PlannedAction {
        run: action.run.clone(),
        timeout: action.timeout,
        on: action.on.clone(),
        hosts: action
            .on
            .as_ref()
            .map(|on| picks.get(on).cloned().unwrap_or_default())
            .unwrap_or_default(),
        start_after,
    }
}

/// From the first to the last sample of the longest whole window among these probes: the
/// soonest a check of fresh samples can be decided.
pub fn longest_window_span(probes: &[Probe]) -> Duration {
    probes
        .iter()
        .map(|p| p.every * (p.window_samples() as u32).saturating_sub(1))
        .max()
        .unwrap_or_default()
}

/// A run's seed: the one given (`--seed`, a request's `seed`), else the file's `settings.seed`,
/// else a fresh random one.
pub fn choose_seed(given: Option<u64>, scenario: &Scenario) -> u64 {
    given
        .or(scenario.settings.seed)
        .unwrap_or_else(rand::random)
}

/// The longest whole window among these probes (n × `every`): the longest one check waits for
/// its samples.
pub fn longest_window(probes: &[Probe]) -> Duration {
    probes
        .iter()
        .map(|p| p.every * p.window_samples() as u32)
        .max()
        .unwrap_or_default()
}

/// `pick` of `hosts`, drawn with `rng`, in name order.
pub fn draw_hosts(rng: &mut ChaCha8Rng, hosts: &[String], pick: Pick) -> Vec<String> {
    let count = pick.count_of(hosts.len());
    let mut chosen: Vec<String> = hosts.choose_multiple(rng, count).cloned().collect();
    chosen.sort();
    chosen
}

/// A per-host seed for the picks an agent makes among processes, derived from the run's seed so
/// a rerun with the same seed picks the same processes where the same ones exist.
pub fn fault_seed(seed: u64, step: usize, fault: usize, host: &str) -> u64 {
    // FNV-1a over the parts: stable across builds, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(&seed.to_le_bytes());
    feed(&(step as u64).to_le_bytes());
    feed(&(fault as u64).to_le_bytes());
    feed(host.as_bytes());
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("h{i}")).collect()
    }

    #[test]
    fn the_same_seed_draws_the_same_hosts() {
        let a = draw_hosts(
            &mut ChaCha8Rng::seed_from_u64(7),
            &hosts(10),
            Pick::Count(3),
        );
        let b = draw_hosts(
            &mut ChaCha8Rng::seed_from_u64(7),
            &hosts(10),
            Pick::Count(3),
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 3);
        let all = draw_hosts(&mut ChaCha8Rng::seed_from_u64(7), &hosts(4), Pick::All);
        assert_eq!(all, hosts(4));
        let half = draw_hosts(
            &mut ChaCha8Rng::seed_from_u64(1),
            &hosts(5),
            Pick::Percent(50.0),
        );
        assert_eq!(half.len(), 3);
    }

    #[test]
    fn fault_seeds_differ_by_host_and_are_stable() {
        assert_eq!(fault_seed(1, 0, 0, "a"), fault_seed(1, 0, 0, "a"));
        assert_ne!(fault_seed(1, 0, 0, "a"), fault_seed(1, 0, 0, "b"));
        assert_ne!(fault_seed(1, 0, 0, "a"), fault_seed(2, 0, 0, "a"));
    }
}
