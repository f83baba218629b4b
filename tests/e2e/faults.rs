//! Each fault kind seen from the host: in place while held, gone after the revert; and a dry run
//! that touches nothing.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use chaos_tests::eventually;
use chaos_tests::skip;
use chaos_tests::support::{Sleeper, Test, Tmpfs, assert_resumed, pattern, proc_state, unique};

fn kill_yaml() -> &'static str {
    r#"version: 1
name: kill-sleepers
steps:
  - name: kill the sleepers
    target: local
    fault: {kill: {process: {pattern: "${PAT}"}}}
    duration: 300ms
    recover_within: 1s
"#
}

#[test]
fn kill_ends_every_matching_process() {
    let tag = unique("kill");
    let mut sleepers = Sleeper::spawn_many(&tag, 2);
    let bystander = Sleeper::spawn(&unique("bystander"));
    let t = Test::new().scenario(kill_yaml()).var("PAT", pattern(&tag));
    let out = t.run();
    out.code(0);
    let r = out.report();
    r.verdict("passed", None);
    let affected = r.step(0)["faults"][0]["affected"].to_string();
    for s in &mut sleepers {
        let pid = s.pid;
        let status = eventually(Duration::from_secs(5), "the sleeper ended", || {
            s.has_exited()
        });
        assert_eq!(status.signal(), Some(9), "pid {pid} ended by {status:?}");
        assert!(affected.contains(&format!("pid {pid}")), "{affected}");
    }
    assert!(
        matches!(proc_state(bystander.pid), Some('S' | 'R')),
        "a process that does not match was touched"
    );
}

#[test]
fn pause_stops_processes_while_held_and_resumes_them() {
    let tag = unique("pause");
    let sleepers = Sleeper::spawn_many(&tag, 2);
    let pids: Vec<i32> = sleepers.iter().map(|s| s.pid).collect();
    let yaml = r#"version: 1
name: pause-sleepers
steps:
  - name: pause the sleepers
    target: local
    fault: {pause: {process: {pattern: "${PAT}"}}}
    duration: 2s
    recover_within: 1s
"#;
    let t = Test::new().scenario(yaml).var("PAT", pattern(&tag));
    let run = t.spawn_run();
    eventually(Duration::from_secs(10), "every sleeper in state T", || {
        pids.iter()
            .all(|&pid| proc_state(pid) == Some('T'))
            .then_some(())
    });
    let out = run.wait();
    out.code(0);
    assert_resumed(&pids);
    let r = out.report();
    let f = &r.step(0)["faults"][0];
    assert_eq!(f["mechanism"], "signal");
    assert_eq!(f["verified"], true);
    assert!(f["reverted_at"].is_string());
    assert!(r.has_event("fault_reverted"));
}

#[test]
fn fill_disk_reaches_the_usage_asked_and_is_deleted() {
    if !skip::unless_root("it mounts a tmpfs to fill") {
        return;
    }
    let fs = Tmpfs::mount(64);
    let before = fs.usage_percent();
    let yaml = r#"version: 1
name: fill-tmpfs
steps:
  - name: fill to 90%
    target: local
    fault: {fill_disk: {path: "${DIR}", usage: 90%}}
    duration: 2s
    recover_within: 1s
"#;
    let t = Test::new()
        .scenario(yaml)
        .var("DIR", fs.dir.display().to_string());
    let run = t.spawn_run();
    let held = eventually(Duration::from_secs(10), "the tmpfs about 90% used", || {
        let used = fs.usage_percent();
        (used > 85.0 && !fs.fill_files().is_empty()).then_some(used)
    });
    assert!(
        (88.0..=92.0).contains(&held),
        "usage while held: {held:.1}%"
    );
    let out = run.wait();
    out.code(0);
    assert_eq!(fs.fill_files(), Vec::<String>::new(), "a fill file is left");
    let after = fs.usage_percent();
    assert!(
        (after - before).abs() < 1.0,
        "usage {after:.1}% after, {before:.1}% before"
    );
    let r = out.report();
    let f = &r.step(0)["faults"][0];
    assert_eq!(f["verified"], true);
    assert!(f["reverted_at"].is_string());
}

#[test]
fn dry_run_injects_nothing() {
    let tag = unique("dry");
    let mut sleepers = Sleeper::spawn_many(&tag, 2);
    let t = Test::new()
        .scenario(kill_yaml())
        .var("PAT", pattern(&tag))
        .arg("--dry-run");
    let out = t.run();
    out.code(0);
    for s in &mut sleepers {
        assert!(s.has_exited().is_none(), "pid {} was killed", s.pid);
        assert!(matches!(proc_state(s.pid), Some('S' | 'R')));
    }
    let r = out.report();
    r.verdict("passed", None);
    assert_eq!(r.json["dry_run"], true);
    assert!(!r.has_event("fault_applied"), "{:?}", r.event_kinds());
    assert!(r.has_event("fault_skipped"));
    let faults = r.faults();
    assert!(!faults.is_empty());
    for f in faults {
        assert_eq!(f["skipped"], true, "{f}");
        assert!(f["applied_at"].is_null(), "{f}");
    }
}
