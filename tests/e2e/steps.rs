//! The steps of a game day beyond faults (spec v1.1, "Steps without faults, and staggered
//! faults"): `action` steps on the controller and through an agent, `start_after` entries of
//! `faults`, and `manual` steps answered from another process or left unanswered.

use std::fs;
use std::time::Duration;

use chaos_tests::support::{Sleeper, Test, assert_resumed, pattern, unique};

/// A steady state that always holds, sampled fast, so that checks take a fraction of a second.
const STEADY: &str = r#"version: 1
name: steps
settings: {recover_within: 2s}
steady_state:
  - name: always
    command: {run: "true"}
    every: 100ms
    window: 300ms
steps:
"#;

fn scenario(steps: &str) -> String {
    format!("{STEADY}{steps}")
}

#[test]
fn an_action_on_the_controller_runs_and_writes_step_n_log() {
    let t = Test::new().scenario(&scenario(
        r#"  - name: promote
    action: {run: "echo promoted; echo to-stderr >&2", timeout: 10s}
"#,
    ));
    let out = t.run();
    out.code(0);
    let folder = out.folder();
    let report = out.report();
    report.verdict("passed", None);
    let action = &report.step(0)["actions"][0];
    assert_eq!(action["host"], "controller", "{action}");
    assert_eq!(action["exit_code"], 0, "{action}");
    assert_eq!(action["ok"], true, "{action}");
    assert_eq!(action["log"], "step-1.log", "{action}");
    assert!(action["duration_ms"].is_u64(), "{action}");
    let log = fs::read_to_string(folder.join("step-1.log")).expect("step-1.log");
    assert!(
        log.contains("promoted") && log.contains("to-stderr"),
        "{log}"
    );
    // The step is checked like any other: after it, the hypothesis held again.
    assert_eq!(report.step(0)["after"]["held"], true);
    assert!(report.has_event("action_started") && report.has_event("action_done"));
}

#[test]
fn a_failing_action_is_error_cause_action_and_the_earlier_fault_is_reverted() {
    let tag = unique("act-fail");
    let sleeper = Sleeper::spawn(&tag);
    let t = Test::new()
        .scenario(&scenario(
            r#"  - name: pause first
    target: local
    fault: {pause: {process: {pattern: "${PAT}"}}}
    duration: 300ms
  - name: promote
    action: {run: "echo cannot promote; exit 3"}
  - name: never reached
    manual: {prompt: "not asked"}
"#,
        ))
        .var("PAT", pattern(&tag));
    let out = t.run();
    out.code(5);
    let report = out.report();
    report.verdict("error", Some("action"));
    assert!(
        report.reason().contains("exit 3") && report.reason().contains("step-2.log"),
        "{}",
        report.reason()
    );
    assert!(report.step(0)["faults"][0]["reverted_at"].is_string());
    assert_eq!(report.step(1)["status"], "error");
    assert_eq!(report.step(1)["actions"][0]["exit_code"], 3);
    assert_eq!(report.step(2)["status"], "skipped");
    assert_resumed(&[sleeper.pid]);
}

#[test]
fn an_action_past_its_timeout_is_killed_and_is_error() {
    let t = Test::new().scenario(&scenario(
        r#"  - name: slow
    action: {run: [sleep, "30"], timeout: 300ms}
"#,
    ));
    let out = t.run();
    out.code(5);
    assert!(out.elapsed < Duration::from_secs(15), "{:?}", out.elapsed);
    let report = out.report();
    report.verdict("error", Some("action"));
    let action = &report.step(0)["actions"][0];
    assert_eq!(action["timed_out"], true, "{action}");
    assert!(
        report.reason().contains("did not finish within"),
        "{}",
        report.reason()
    );
}

#[test]
fn a_dry_run_records_actions_and_manual_steps_as_skipped() {
    let t = Test::new()
        .scenario(&scenario(
            r#"  - name: promote
    action: {run: "touch ${MARK}"}
  - name: ask
    manual: {prompt: "ready?"}
"#,
        ))
        .var("MARK", "/nonexistent-dir/should-not-exist")
        .arg("--dry-run");
    let out = t.run();
    out.code(0);
    let report = out.report();
    assert_eq!(report.step(0)["status"], "skipped");
    assert_eq!(report.step(0)["actions"][0]["skipped"], true);
    assert_eq!(report.step(1)["status"], "skipped");
    assert_eq!(report.step(1)["manual"]["answer"], "skipped");
    assert!(report.has_event("action_skipped") && report.has_event("manual_skipped"));
}

/// An action `on:` a host runs through that host's `chaos-agent`, only where its policy lists
/// the program.
fn agent_action(policy: &str) -> (Test, chaos_tests::support::Output) {
    let t = Test::new().scenario(&scenario(
        r#"  - name: promote on the agent
    action: {run: [/bin/echo, hello-from-agent], on: edge, timeout: 10s}
"#,
    ));
    let _agent = crate::edges::LoopbackAgent::start(&t, policy);
    let inventory = t.path("inventory.yaml").display().to_string();
    let mut args = t.run_args();
    args.extend(["--inventory".to_string(), inventory]);
    let out = t.spawn_args(&args, false).wait();
    (t, out)
}

#[test]
fn an_agent_action_outside_the_policy_is_refused_with_403_before_anything_runs() {
    let (_t, out) = agent_action("kinds: [pause]\n");
    out.code(5);
    let folder = out.folder();
    let report = out.report();
    // The agent's 403 comes at preflight, so no step starts with a runbook it cannot finish.
    report.verdict("error", Some("preflight"));
    let reason = report.reason();
    assert!(
        reason.contains("edge: step `promote on the agent` runs `/bin/echo hello-from-agent`")
            && reason.contains("403")
            && reason.contains("list the program under `commands: {allow: [...]}`"),
        "{reason}"
    );
    assert!(!report.has_event("action_started"), "nothing ran");
    assert!(!folder.join("step-1.log").exists(), "nothing ran");
}

#[test]
fn an_agent_action_the_policy_allows_runs_there() {
    let (_t, out) = agent_action("commands: {allow: [/bin/echo]}\n");
    out.code(0);
    let folder = out.folder();
    let report = out.report();
    report.verdict("passed", None);
    let action = &report.step(0)["actions"][0];
    assert_eq!(
        (action["host"].as_str(), action["exit_code"].as_i64()),
        (Some("edge"), Some(0))
    );
    let log = fs::read_to_string(folder.join("step-1.log")).expect("step-1.log");
    assert!(
        log.contains("--- edge:") && log.contains("hello-from-agent"),
        "{log}"
    );
}

fn millis(at: &serde_json::Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(at.as_str().unwrap_or_else(|| panic!("a time: {at}")))
        .expect("an RFC 3339 time")
        .timestamp_millis()
}

#[test]
fn a_late_fault_and_a_runbook_action_come_at_their_start_after() {
    let (first, late) = (unique("late-a"), unique("late-b"));
    let a = Sleeper::spawn(&first);
    let b = Sleeper::spawn(&late);
    let t = Test::new();
    let seen = t.path("state-during-action.txt");
    let t = t
        .scenario(&scenario(
            r#"  - name: cascade
    faults:
      - {target: local, pause: {process: {pattern: "${A}"}}}
      - {target: local, pause: {process: {pattern: "${B}"}}, start_after: 1s}
      - {action: {run: "grep State /proc/${PID}/status > ${SEEN}"}, start_after: 300ms}
    duration: 1500ms
"#,
        ))
        .var("A", pattern(&first))
        .var("B", pattern(&late))
        .var("PID", a.pid)
        .var("SEEN", seen.display());
    let out = t.run();
    out.code(0);
    let report = out.report();
    report.verdict("passed", None);
    // The runbook action ran while the first fault held its process stopped.
    let state = fs::read_to_string(&seen).expect("the action's file");
    assert!(state.contains("T (stopped)"), "{state}");
    let step = report.step(0);
    assert_eq!(
        step["actions"][0]["start_after_ms"], 300,
        "{}",
        step["actions"]
    );
    assert_eq!(step["actions"][0]["ok"], true, "{}", step["actions"]);
    // Each fault's window is its own: the late one came about 1 s after the first.
    let faults = step["faults"].as_array().unwrap();
    let applied: Vec<i64> = faults.iter().map(|f| millis(&f["applied_at"])).collect();
    let offset = applied[1] - applied[0];
    assert!(
        (900..1400).contains(&offset),
        "late by {offset} ms: {faults:?}"
    );
    // Both are held until the step's end (1.5 s after its first injection), then reverted.
    for f in faults {
        let held = millis(&f["reverted_at"]) - applied[0];
        assert!((1400..2500).contains(&held), "reverted {held} ms in: {f}");
    }
    assert_resumed(&[a.pid, b.pid]);
}

#[test]
fn ctrl_c_before_a_late_fault_never_injects_it_and_reverts_the_first() {
    let (first, late) = (unique("abort-a"), unique("abort-b"));
    let a = Sleeper::spawn(&first);
    let b = Sleeper::spawn(&late);
    let t = Test::new()
        .scenario(&scenario(
            r#"  - name: cascade
    faults:
      - {target: local, pause: {process: {pattern: "${A}"}}}
      - {target: local, pause: {process: {pattern: "${B}"}}, start_after: 10s}
    duration: 20s
"#,
        ))
        .var("A", pattern(&first))
        .var("B", pattern(&late));
    let run = t.spawn_run();
    t.wait_for_event("fault_applied", Duration::from_secs(15));
    assert_eq!(chaos_tests::support::proc_state(a.pid), Some('T'));
    run.signal_group(nix::sys::signal::Signal::SIGINT);
    let out = run.wait();
    out.code(3);
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    let report = out.report();
    report.verdict("aborted", Some("signal"));
    let faults = report.step(0)["faults"].as_array().unwrap().clone();
    assert!(faults[0]["reverted_at"].is_string(), "{faults:?}");
    assert!(faults[1]["applied_at"].is_null(), "{faults:?}");
    assert_eq!(faults[1]["skipped"], true, "{faults:?}");
    let applied = report
        .event_kinds()
        .iter()
        .filter(|k| *k == "fault_applied")
        .count();
    assert_eq!(applied, 1);
    assert_resumed(&[a.pid, b.pid]);
}

#[test]
fn a_failing_runbook_action_during_a_step_is_error_and_reverts_at_once() {
    let tag = unique("late-fail");
    let a = Sleeper::spawn(&tag);
    let t = Test::new()
        .scenario(&scenario(
            r#"  - name: cascade
    faults:
      - {target: local, pause: {process: {pattern: "${A}"}}}
      - {action: {run: "echo runbook broke; exit 4"}, start_after: 200ms}
    duration: 20s
"#,
        ))
        .var("A", pattern(&tag));
    let out = t.run();
    out.code(5);
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    let report = out.report();
    report.verdict("error", Some("action"));
    assert!(report.reason().contains("exit 4"), "{}", report.reason());
    assert_eq!(report.step(0)["status"], "error");
    assert!(report.step(0)["faults"][0]["reverted_at"].is_string());
    assert_resumed(&[a.pid]);
}

/// A run whose first step waits for a person, then a step that leaves a mark.
fn manual_run(timeout: &str) -> Test {
    let t = Test::new();
    let mark = t.path("after-the-answer");
    t.scenario(&scenario(&format!(
        r#"  - name: the operator checks the dashboards
    manual: {{prompt: "Do the dashboards show the failover?", timeout: {timeout}}}
  - name: after the answer
    action: {{run: [touch, "{}"]}}
"#,
        mark.display()
    )))
}

#[test]
fn a_manual_step_confirmed_from_another_process_goes_on() {
    let t = manual_run("1m");
    let run = t.spawn_run();
    let waiting = t.wait_for_event("manual_waiting", Duration::from_secs(15));
    assert_eq!(
        waiting["fields"]["prompt"],
        "Do the dashboards show the failover?"
    );
    let run_id = waiting["fields"]["run_id"].as_str().unwrap().to_string();
    let answered = t.cmd(&["confirm", &run_id, "--by", "ana"]);
    answered.code(0);
    answered.stderr_has("confirmed step 1");
    let out = run.wait();
    out.code(0);
    let report = out.report();
    report.verdict("passed", None);
    let manual = &report.step(0)["manual"];
    assert_eq!(manual["answer"], "confirmed", "{manual}");
    assert_eq!(manual["by"], "ana", "{manual}");
    assert!(manual["answered_at"].is_string(), "{manual}");
    assert!(t.path("after-the-answer").exists(), "the next step ran");
    assert!(report.has_event("manual_answered"));
    // A run that ended waits for nothing.
    t.cmd(&["confirm", &run_id]).code(5).stderr_has("has ended");
}

#[test]
fn a_refused_manual_step_is_deviated_cause_manual_with_the_reason() {
    let t = manual_run("1m");
    let run = t.spawn_run();
    let waiting = t.wait_for_event("manual_waiting", Duration::from_secs(15));
    let run_id = waiting["fields"]["run_id"].as_str().unwrap().to_string();
    t.cmd(&[
        "refuse",
        &run_id,
        "--reason",
        "the dashboards are red",
        "--by",
        "bo",
    ])
    .code(0);
    let out = run.wait();
    out.code(1);
    let report = out.report();
    report.verdict("deviated", Some("manual"));
    assert!(
        report
            .reason()
            .contains("refused by bo: the dashboards are red"),
        "{}",
        report.reason()
    );
    let manual = &report.step(0)["manual"];
    assert_eq!(manual["answer"], "refused", "{manual}");
    assert_eq!(manual["reason"], "the dashboards are red", "{manual}");
    assert_eq!(report.step(0)["status"], "deviated");
    assert_eq!(report.step(1)["status"], "skipped");
    assert!(
        !t.path("after-the-answer").exists(),
        "the next step did not run"
    );
}

#[test]
fn a_manual_step_unanswered_in_time_is_aborted_cause_manual() {
    let t = manual_run("500ms");
    let out = t.run();
    out.code(3);
    let report = out.report();
    report.verdict("aborted", Some("manual"));
    assert!(report.reason().contains("no answer"), "{}", report.reason());
    assert_eq!(report.step(0)["manual"]["answer"], "timed_out");
    assert!(report.has_event("manual_timed_out"));
    assert!(!t.path("after-the-answer").exists());
}

#[test]
fn a_manual_step_is_answered_on_chaosctl_s_terminal() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    // `script` gives chaosctl a terminal.
    if !chaos_tests::skip::unless_installed(&["script"], "util-linux") {
        return;
    }
    let t = manual_run("1m");
    // `script` runs chaosctl on a pseudo-terminal, so its stdin is a terminal, as a person's is.
    let line = format!(
        "{} --state-dir {} {}",
        chaos_tests::bins::chaosctl().display(),
        t.state_dir().display(),
        t.run_args().join(" ")
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .current_dir(t.dir.path())
        .env_remove("CHAOSD_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start script");
    t.wait_for_event("manual_waiting", Duration::from_secs(15));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"n\nthe dashboards are red\n")
        .expect("answer on the terminal");
    let status = chaos_tests::eventually(Duration::from_secs(20), "chaosctl ends", || {
        child.try_wait().expect("try_wait")
    });
    drop(stdin);
    assert_eq!(status.code(), Some(1), "{status:?}");
    let report = chaos_tests::support::Report::read(&t.run_folder());
    report.verdict("deviated", Some("manual"));
    let manual = &report.step(0)["manual"];
    assert_eq!(manual["answer"], "refused", "{manual}");
    assert_eq!(manual["reason"], "the dashboards are red", "{manual}");
    assert!(manual["by"].is_string(), "{manual}");
}
