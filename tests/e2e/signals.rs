//! Signals and crashes: Ctrl-C (twice), SIGTERM, SIGKILL of chaosctl, and `revert --all` while
//! a run still holds its fault (spec: "Reverting, whatever dies").

use std::time::Duration;

use nix::sys::signal::Signal;

use chaos_tests::eventually;
use chaos_tests::skip;
use chaos_tests::support::{Sleeper, Test, Tmpfs, assert_resumed, pattern, proc_state, unique};

/// Pauses the sleepers of `${PAT}` for 30 s.
const LONG_PAUSE: &str = r#"version: 1
name: long-pause
steady_state:
  - name: always
    command: {run: "true"}
    every: 100ms
    window: 300ms
steps:
  - name: pause the sleepers for long
    target: local
    fault: {pause: {process: {pattern: "${PAT}"}}}
    duration: 30s
    recover_within: 2s
"#;

const HELD: Duration = Duration::from_secs(15);

fn all_stopped(pids: &[i32]) -> bool {
    pids.iter().all(|&pid| proc_state(pid) == Some('T'))
}

/// SIGINT to the whole group, then a second one shortly after.
fn ctrl_c_twice(run: &chaos_tests::support::Running) {
    run.signal_group(Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(50)); // the gap between two key presses
    run.signal_group(Signal::SIGINT);
}

#[test]
fn ctrl_c_twice_during_a_held_pause_aborts_3_and_resumes() {
    let tag = unique("sigint");
    let sleepers = Sleeper::spawn_many(&tag, 2);
    let pids: Vec<i32> = sleepers.iter().map(|s| s.pid).collect();
    let t = Test::new().scenario(LONG_PAUSE).var("PAT", pattern(&tag));
    let run = t.spawn_run();
    t.wait_for_event("fault_applied", HELD);
    assert!(all_stopped(&pids), "not paused after fault_applied");
    ctrl_c_twice(&run);
    let out = run.wait();
    out.code(3);
    assert!(
        out.elapsed < Duration::from_secs(10),
        "took {:?}",
        out.elapsed
    );
    out.report().verdict("aborted", Some("signal"));
    assert_resumed(&pids);
}

#[test]
fn ctrl_c_twice_during_a_held_fill_aborts_3_and_deletes_the_file() {
    if !skip::unless_root("it mounts a tmpfs to fill") {
        return;
    }
    let fs = Tmpfs::mount(16);
    let yaml = r#"version: 1
name: long-fill
steps:
  - name: fill for long
    target: local
    fault: {fill_disk: {path: "${DIR}", usage: 50%}}
    duration: 30s
    recover_within: 2s
"#;
    let t = Test::new()
        .scenario(yaml)
        .var("DIR", fs.dir.display().to_string());
    let run = t.spawn_run();
    t.wait_for_event("fault_applied", HELD);
    assert_eq!(fs.fill_files().len(), 1, "no fill file while held");
    ctrl_c_twice(&run);
    let out = run.wait();
    out.code(3);
    assert!(
        out.elapsed < Duration::from_secs(10),
        "took {:?}",
        out.elapsed
    );
    out.report().verdict("aborted", Some("signal"));
    assert_eq!(fs.fill_files(), Vec::<String>::new(), "a fill file is left");
    assert!(fs.usage_percent() < 10.0);
}

#[test]
fn sigterm_to_chaosctl_alone_aborts_3() {
    let tag = unique("sigterm");
    let sleepers = Sleeper::spawn_many(&tag, 1);
    let pids: Vec<i32> = sleepers.iter().map(|s| s.pid).collect();
    let t = Test::new().scenario(LONG_PAUSE).var("PAT", pattern(&tag));
    let run = t.spawn_run();
    t.wait_for_event("fault_applied", HELD);
    run.signal(Signal::SIGTERM);
    let out = run.wait();
    out.code(3);
    assert!(
        out.elapsed < Duration::from_secs(10),
        "took {:?}",
        out.elapsed
    );
    out.report().verdict("aborted", Some("signal"));
    assert_resumed(&pids);
}

#[test]
fn sigkill_leaves_the_pause_and_the_next_command_reverts_it() {
    let tag = unique("sigkill");
    let sleepers = Sleeper::spawn_many(&tag, 2);
    let pids: Vec<i32> = sleepers.iter().map(|s| s.pid).collect();
    let t = Test::new().scenario(LONG_PAUSE).var("PAT", pattern(&tag));
    let run = t.spawn_run();
    let applied = t.wait_for_event("fault_applied", HELD);
    let folder = t.run_folder();
    let run_id = folder.file_name().unwrap().to_str().unwrap().to_string();
    assert!(applied.is_object());
    run.signal(Signal::SIGKILL);
    let out = run.wait();
    assert_eq!(out.signal, Some(9), "{out:?}");
    // Nobody is left to revert: the processes stay stopped.
    assert!(all_stopped(&pids), "the pause did not survive chaosctl");

    let runs = t.cmd(&["runs"]);
    runs.code(0);
    runs.stderr_has("reverted");
    runs.stderr_has(&run_id);
    assert_resumed(&pids);
    let line = runs
        .stdout
        .lines()
        .find(|l| l.contains(&run_id))
        .unwrap_or_else(|| panic!("`runs` does not list {run_id}:\n{}", runs.stdout));
    assert!(line.contains("interrupted"), "{line}");
}

#[test]
fn revert_all_resumes_a_pause_that_a_live_run_holds() {
    let tag = unique("revertall");
    let sleepers = Sleeper::spawn_many(&tag, 2);
    let pids: Vec<i32> = sleepers.iter().map(|s| s.pid).collect();
    let t = Test::new().scenario(LONG_PAUSE).var("PAT", pattern(&tag));
    let run = t.spawn_run();
    t.wait_for_event("fault_applied", HELD);
    assert!(all_stopped(&pids));

    let revert = t.cmd(&["revert", "--all"]);
    revert.code(0);
    revert.stdout_has("reverted");
    eventually(Duration::from_secs(5), "the sleepers resumed", || {
        pids.iter()
            .all(|&pid| matches!(proc_state(pid), Some('S' | 'R')))
            .then_some(())
    });

    run.signal_group(Signal::SIGINT);
    let out = run.wait();
    out.code(3);
    out.report().verdict("aborted", Some("signal"));
    assert_resumed(&pids);
}

#[test]
fn ctrl_c_before_any_injection_aborts_3_and_stops_setup() {
    let tag = unique("early");
    let mut sleeper = Sleeper::spawn(&tag);
    // A long first check, so that Ctrl-C lands before the step.
    let yaml = r#"version: 1
name: early-ctrl-c
setup:
  - name: background
    run: [sleep, "${BG}"]
    background: true
steady_state:
  - name: always
    command: {run: "true"}
    every: 100ms
    window: 20s
steps:
  - name: kill the sleeper
    target: local
    fault: {kill: {process: {pattern: "${PAT}"}}}
"#;
    // `sleep 30.PID`: a command line no other test has.
    let bg = format!("30.{}", std::process::id());
    let t = Test::new()
        .scenario(yaml)
        .var("PAT", pattern(&tag))
        .var("BG", &bg);
    let run = t.spawn_run();
    t.wait_for_event("check_started", HELD);
    run.signal_group(Signal::SIGINT);
    let out = run.wait();
    out.code(3);
    assert!(
        out.elapsed < Duration::from_secs(10),
        "took {:?}",
        out.elapsed
    );
    let r = out.report();
    r.verdict("aborted", Some("signal"));
    assert!(!r.has_event("fault_applied"));
    assert!(sleeper.has_exited().is_none(), "the kill ran anyway");
    chaos_tests::support::assert_none_left(&format!("sleep {bg}"));
}
