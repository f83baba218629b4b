//! `chaosctl monkey`: random kills of our own `sleep` processes under a supervisor that restarts
//! them, with tiny intervals and `--for`: faults recover, the schedule follows the seed, a fault
//! is skipped while the steady state or a guardrail does not hold, and Ctrl-C aborts.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use chaos_tests::eventually;
use chaos_tests::support::{Output, Test, assert_none_left, pattern, unique};

/// A supervisor (setup, in the background) keeps one `TAG sleep` running; the hypothesis is that
/// one runs while `ok.flag` exists; the monkey kills it every 300 ms on average. Half of a 300 ms
/// window must pass: on a loaded machine the supervisor's restart after a kill can outlast a
/// sample or two, and a stricter hypothesis would skip every fault.
fn monkey_yaml() -> &'static str {
    r#"version: 1
name: monkey-sleepers
setup:
  - name: supervisor
    run: ["bash", "-c", "while true; do bash -c 'exec -a ${TAG} sleep 300'; sleep 0.05; done"]
    background: true
    ready: {process: {pattern: "${PAT}"}, within: 5s}
steady_state:
  - name: sleeper up and flag there
    command: {run: "test -f ok.flag && pgrep -f '^${TAG}' >/dev/null"}
    every: 50ms
    window: 300ms
    tolerance: 50%
settings: {recover_within: 3s}
monkey:
  target: local
  fault: {kill: {process: {pattern: "${PAT}"}}}
  mean_interval: 300ms
  min_interval: 100ms
"#
}

fn monkey_test(tag: &str) -> Test {
    let t = Test::new()
        .scenario(monkey_yaml())
        .var("TAG", tag)
        .var("PAT", pattern(tag));
    t.write("ok.flag", "");
    t
}

fn monkey_args(t: &Test, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "monkey".to_string(),
        t.scenario_path().display().to_string(),
        "--yes".to_string(),
        "--report-dir".to_string(),
        t.report_dir().display().to_string(),
    ];
    args.extend(t.var_args());
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

fn events_of<'a>(report: &'a Value, kind: &str) -> Vec<&'a Value> {
    report["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == kind)
        .collect()
}

/// Every fault's number and drawn time relative to the monkey's start, injected or skipped.
fn planned_offsets(report: &Value) -> Vec<(u64, i64)> {
    let mut planned: Vec<(u64, i64)> = events_of(report, "monkey_fault")
        .into_iter()
        .chain(events_of(report, "fault_skipped"))
        .map(|e| {
            (
                e["fields"]["number"].as_u64().expect("number"),
                e["fields"]["planned_offset_ms"].as_i64().expect("offset"),
            )
        })
        .collect();
    planned.sort();
    planned
}

fn run_monkey(t: &Test, extra: &[&str]) -> Output {
    t.spawn_args(&monkey_args(t, extra), false).wait()
}

#[test]
fn the_monkey_kills_until_its_time_is_up_and_every_fault_recovers() {
    let tag = unique("monkey");
    let t = monkey_test(&tag);
    let out = run_monkey(&t, &["--for", "3s", "--seed", "7"]);
    out.code(0);
    let r = out.report();
    r.verdict("passed", None);
    assert!(
        r.reason().starts_with("every injected fault recovered"),
        "{}",
        r.reason()
    );
    let json = &r.json;
    let faults = events_of(json, "monkey_fault");
    assert!(faults.len() >= 2, "only {} faults in 3s", faults.len());
    for e in &faults {
        let f = &e["fields"];
        assert_eq!(f["host"], "local");
        assert_eq!(f["status"], "passed", "{e}");
        assert!(f["applied_at"].is_string(), "{e}");
        assert!(f["reverted_at"].is_string(), "{e}");
        assert!(f["recovery_ms"].is_u64(), "{e}");
    }
    // Each fault is a step too, named after its number and host.
    let steps = json["steps"].as_array().expect("steps");
    assert_eq!(
        steps.len(),
        faults.len() + events_of(json, "fault_skipped").len()
    );
    assert_eq!(steps[0]["name"], "monkey #1 on local");
    assert!(r.has_event("monkey_stopped"));
    // Gaps are at least min_interval.
    let offsets = planned_offsets(json);
    for pair in offsets.windows(2) {
        assert!(pair[1].1 - pair[0].1 >= 100, "{offsets:?}");
    }
    // The supervisor is gone with the run.
    assert_none_left(&tag);
}

#[test]
fn the_same_seed_draws_the_same_schedule() {
    let tag = unique("monkey-seed");
    let t = monkey_test(&tag);
    let first = run_monkey(&t, &["--for", "2s", "--seed", "42"]);
    first.code(0);
    let a = planned_offsets(&first.report().json);
    let second = run_monkey(&t, &["--for", "2s", "--seed", "42"]);
    second.code(0);
    let b = planned_offsets(&second.report().json);
    let other = run_monkey(&t, &["--for", "2s", "--seed", "43"]);
    other.code(0);
    let c = planned_offsets(&other.report().json);
    let common = a.len().min(b.len());
    assert!(common >= 2, "{a:?} / {b:?}");
    assert_eq!(a[..common], b[..common]);
    assert_ne!(a[..common.min(c.len())], c[..common.min(c.len())]);
}

#[test]
fn a_fault_is_skipped_while_the_steady_state_does_not_hold() {
    let tag = unique("monkey-skip");
    let t = monkey_test(&tag);
    std::fs::remove_file(t.path("ok.flag")).expect("remove the flag");
    let out = run_monkey(&t, &["--for", "1500ms", "--seed", "3"]);
    out.code(0);
    let r = out.report();
    r.verdict("passed", None);
    let skipped = events_of(&r.json, "fault_skipped");
    assert!(!skipped.is_empty());
    for e in &skipped {
        let why = e["fields"]["reason"].as_str().unwrap_or_default();
        assert!(why.starts_with("steady state did not hold: "), "{e}");
    }
    assert!(events_of(&r.json, "monkey_fault").is_empty());
    assert!(!r.has_event("fault_applied"), "nothing is injected");
    assert_eq!(r.step(0)["status"], "skipped");
    assert_eq!(r.step(0)["before"]["held"], false);
}

#[test]
fn a_fault_is_skipped_while_a_guardrail_does_not_hold() {
    let tag = unique("monkey-guard");
    let yaml = monkey_yaml().replace(
        "settings:",
        "guardrails:\n  - name: budget flag there\n    command: {run: \"test -f budget.flag\"}\n    every: 50ms\n    window: 100ms\nsettings:",
    );
    let t = Test::new()
        .scenario(&yaml)
        .var("TAG", &tag)
        .var("PAT", pattern(&tag));
    t.write("ok.flag", "");
    let out = run_monkey(&t, &["--for", "1500ms", "--seed", "3"]);
    out.code(0);
    let r = out.report();
    let skipped = events_of(&r.json, "fault_skipped");
    assert!(!skipped.is_empty(), "{:?}", r.event_kinds());
    for e in &skipped {
        let why = e["fields"]["reason"].as_str().unwrap_or_default();
        assert!(
            why.starts_with("a guardrail did not hold: guardrail `budget flag there` on local"),
            "{e}"
        );
    }
    assert!(!r.has_event("fault_applied"), "nothing is injected");
}

#[test]
fn ctrl_c_aborts_the_monkey_and_writes_the_report() {
    let tag = unique("monkey-int");
    let t = monkey_test(&tag);
    let running = t.spawn_args(&monkey_args(&t, &["--seed", "5"]), true);
    t.wait_for_event("monkey_fault", Duration::from_secs(20));
    running.signal_group(Signal::SIGINT);
    let out = running.wait();
    out.code(3);
    out.report().verdict("aborted", Some("signal"));
    assert_none_left(&tag);
}

#[test]
fn run_refuses_a_monkey_file_and_monkey_refuses_steps() {
    let tag = unique("monkey-refuse");
    let t = monkey_test(&tag);
    t.run().code(2).stderr_has("run it with `chaosctl monkey`");
    assert!(t.report_folders().is_empty());
    let steps = Test::new().scenario(
        "version: 1\nname: s\nsteps:\n  - name: k\n    target: local\n    fault: {kill: {process: {name: nothing-here}}}\n",
    );
    let out = steps.spawn_args(&monkey_args(&steps, &[]), false).wait();
    out.code(2).stderr_has("run it with `chaosctl run`");
    // Eventually nothing: the supervisor never started.
    eventually(Duration::from_secs(1), "no supervisor", || {
        chaos_tests::support::pids_containing(&tag)
            .is_empty()
            .then_some(())
    });
}
