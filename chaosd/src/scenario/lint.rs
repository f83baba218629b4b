//! Warnings: a valid scenario that likely does not mean what it says. Unlike the checks of
//! `validate`, nothing here stops a run; `chaosctl validate`, `plan`, `run` and `monkey` print
//! them, and chaosd logs them with the run.

use super::format_duration;
use super::model::{Probe, Scenario};

/// Every warning about `scenario`, one sentence each, naming the probe and the keys involved.
pub fn warnings(scenario: &Scenario) -> Vec<String> {
    let mut warnings = Vec::new();
    let roles = [
        ("steady-state probe", &scenario.steady_state),
        ("guardrail", &scenario.guardrails),
    ];
    for (role, probes) in roles {
        for probe in probes {
            if let Some(w) = short_window(role, probe) {
                warnings.push(w);
            }
        }
    }
    // A scheduled game day starts with nobody watching: a manual step there waits its whole
    // timeout and ends the run `aborted` unless someone is told to answer it.
    if scenario.schedule.is_some() {
        for step in &scenario.steps {
            if let Some(m) = &step.manual {
                warnings.push(format!(
                    "step `{}` waits for a person (`manual`), and the file has a `schedule:`: a \
                     scheduled run waits up to {} for `chaosctl confirm` or the web view, then \
                     ends aborted",
                    step.name,
                    format_duration(m.timeout)
                ));
            }
        }
    }
    warnings
}

/// A window shorter than `every` holds one sample, whatever its length says.
fn short_window(role: &str, p: &Probe) -> Option<String> {
    (p.window < p.every).then(|| {
        format!(
            "{role} `{}`: its window ({}) is shorter than its `every` ({}), which means one \
             sample: a window holds or fails on a single sample; to judge several, make `window` \
             a multiple of `every` (e.g. `window: {}` for 5 samples)",
            p.name,
            format_duration(p.window),
            format_duration(p.every),
            format_duration(p.every * 5)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{LoadOptions, load_str};

    #[test]
    fn a_manual_step_in_a_scheduled_file_is_warned_about() {
        let yaml = "version: 1\nname: m\nschedule: {cron: \"0 10 * * TUE\"}\nsteps:\n  - name: ask\n    manual: {prompt: ok?, timeout: 5m}\n";
        let scenario = load_str(
            std::path::Path::new("m.yaml"),
            yaml,
            &LoadOptions::default(),
        )
        .expect("valid");
        let warnings = warnings(&scenario);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("step `ask` waits for a person (`manual`)")
                && warnings[0].contains("up to 5m"),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn a_window_shorter_than_every_is_one_sample_and_warned_about() {
        let yaml = "version: 1\nname: w\nsteady_state:\n  - name: slow\n    command: {run: \"true\"}\n    every: 2s\n    window: 1s\n  - name: fine\n    command: {run: \"true\"}\n    every: 1s\n    window: 3s\nsteps:\n  - name: k\n    target: local\n    fault: {kill: {process: {name: x}}}\n";
        let scenario = load_str(
            std::path::Path::new("w.yaml"),
            yaml,
            &LoadOptions::default(),
        )
        .expect("valid");
        let warnings = warnings(&scenario);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("steady-state probe `slow`: its window (1s) is shorter than its `every` (2s), which means one sample"),
            "{}",
            warnings[0]
        );
    }
}
