use std::fs;
use std::time::Duration;

use agent::FaultError;
use agent::process::{self, find, is_same_process};
use agent::spec::ProcessSelector;
use chaos_tests::eventually;

use crate::support::Spawned;

fn pids(selector: ProcessSelector) -> Vec<i32> {
    find(&selector)
        .unwrap()
        .into_iter()
        .map(|p| p.pid)
        .collect()
}

#[test]
fn a_spawned_sleep_is_found_by_name_pattern_pid_and_pidfile() {
    let (sleep, arg) = Spawned::sleep();
    assert!(pids(ProcessSelector::Name("sleep".into())).contains(&sleep.pid));
    assert_eq!(
        pids(ProcessSelector::Pattern(format!(
            "^sleep {}$",
            regex::escape(&arg)
        ))),
        [sleep.pid]
    );
    assert_eq!(pids(ProcessSelector::Pid(sleep.pid)), [sleep.pid]);

    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("sleep.pid");
    fs::write(&pidfile, format!("  {}\n", sleep.pid)).unwrap();
    assert_eq!(pids(ProcessSelector::Pidfile(pidfile)), [sleep.pid]);

    let info = process::read(sleep.pid).unwrap();
    assert_eq!(info.comm, "sleep");
    assert_eq!(info.cmdline, ["sleep", arg.as_str()]);
    assert_eq!(info.ppid, std::process::id() as i32);
    assert!(info.start_time > 0);
    assert!(is_same_process(sleep.pid, info.start_time));
}

#[test]
fn matches_come_in_ascending_pid_order() {
    // CI may run in a sandbox where nothing but our own lineage lives: bring processes of our own.
    let _sleeps = [Spawned::sleep(), Spawned::sleep(), Spawned::sleep()];
    let found = find(&ProcessSelector::Pattern(".".into())).unwrap();
    assert!(found.windows(2).all(|w| w[0].pid < w[1].pid));
}

#[test]
fn missing_and_garbled_pidfiles_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pid");
    let err = find(&ProcessSelector::Pidfile(missing.clone())).unwrap_err();
    assert!(
        matches!(err, FaultError::PidfileUnreadable { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read pidfile `{}`", missing.display()))
    );

    let garbled = dir.path().join("garbled.pid");
    fs::write(&garbled, "not-a-pid\n").unwrap();
    let err = find(&ProcessSelector::Pidfile(garbled.clone())).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "pidfile `{}` holds `not-a-pid`, not a pid; point the selector at the service's pidfile",
            garbled.display()
        )
    );
}

#[test]
fn an_invalid_pattern_is_an_error() {
    let err = find(&ProcessSelector::Pattern("(".into())).unwrap_err();
    assert!(
        err.to_string().starts_with("invalid process pattern `(`"),
        "{err}"
    );
}

#[test]
fn our_own_process_and_its_ancestors_never_match() {
    let me = process::read(std::process::id() as i32).unwrap();
    let mut lineage = vec![me.pid];
    let mut pid = me.ppid;
    while pid > 0 {
        lineage.push(pid);
        pid = process::read(pid).map_or(0, |p| p.ppid);
    }
    // A child of ours is not our ancestor and must match; CI may run where nothing else lives.
    let (child, _) = Spawned::sleep();
    let everything = pids(ProcessSelector::Pattern("".into()));
    assert!(
        everything.contains(&child.pid),
        "our child {} did not match",
        child.pid
    );
    for pid in &lineage {
        assert!(!everything.contains(pid), "ancestor {pid} matched");
        assert!(
            pids(ProcessSelector::Pid(*pid)).is_empty(),
            "pid {pid} matched"
        );
    }
    assert!(!pids(ProcessSelector::Name(me.comm.clone())).contains(&me.pid));
}

#[test]
fn zombies_never_match() {
    let mut child = Spawned::new(&["sh", "-c", "exit 0"]);
    let pid = child.pid;
    eventually(Duration::from_secs(5), "the child to be a zombie", || {
        child.state() == Some('Z')
    });
    assert!(pids(ProcessSelector::Pid(pid)).is_empty());
    assert!(!pids(ProcessSelector::Name("sh".into())).contains(&pid));
    let start = process::read(pid).unwrap().start_time;
    assert!(!is_same_process(pid, start), "a zombie is not alive");
    child.child.wait().unwrap();
    assert!(process::read(pid).is_none());
}

#[test]
fn nonexistent_pids_match_nothing() {
    assert!(pids(ProcessSelector::Pid(i32::MAX)).is_empty());
    assert!(process::read(i32::MAX).is_none());
    assert!(!is_same_process(i32::MAX, 1));
}

/// A cgroup of the test's own, on the unified hierarchy (where `/proc/PID/cgroup`'s `0::` line
/// points), shaped like a systemd service's; removed (its processes moved back) on drop.
struct TestUnit {
    dir: std::path::PathBuf,
    name: String,
}

impl TestUnit {
    /// `None` (saying why) when not root or there is no writable cgroup v2 hierarchy.
    fn new(tag: &str) -> Option<TestUnit> {
        TestUnit::named(format!("chaos-test-{tag}-{}.service", std::process::id()))
    }

    /// A cgroup named `name` under `chaos-test.slice`.
    fn named(name: String) -> Option<TestUnit> {
        if !chaos_tests::skip::unless_root("it makes a cgroup and moves a process into it") {
            return None;
        }
        let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.subtree_control").exists())
            .expect("a cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified");
        let dir = root.join("chaos-test.slice").join(&name);
        fs::create_dir_all(&dir).unwrap();
        Some(TestUnit { dir, name })
    }

    fn adopt(&self, pid: i32) {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for TestUnit {
    fn drop(&mut self) {
        let parent = self
            .dir
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("cgroup.procs");
        if let Ok(pids) = fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in pids.split_whitespace() {
                let _ = fs::write(&parent, pid);
            }
        }
        let _ = fs::remove_dir(&self.dir);
        let _ = fs::remove_dir(self.dir.parent().unwrap());
    }
}

#[test]
fn unit_and_cgroup_selectors_find_the_processes_of_a_cgroup_alone_or_with_a_name() {
    let Some(unit) = TestUnit::new("unit") else {
        return;
    };
    let (inside, _) = Spawned::sleep();
    let (outside, _) = Spawned::sleep();
    unit.adopt(inside.pid);
    let path = agent::container::cgroup_path(inside.pid).unwrap();
    assert!(
        path.ends_with(&format!("/chaos-test.slice/{}", unit.name)),
        "{path}"
    );

    assert_eq!(pids(ProcessSelector::Unit(unit.name.clone())), [inside.pid]);
    let bare = unit.name.trim_end_matches(".service").to_string();
    assert_eq!(
        pids(ProcessSelector::Unit(bare)),
        [inside.pid],
        "a bare name means .service"
    );
    assert_eq!(
        pids(ProcessSelector::Cgroup(format!("*/{}", unit.name))),
        [inside.pid]
    );
    assert_eq!(
        pids(ProcessSelector::All(vec![
            ProcessSelector::Name("sleep".into()),
            ProcessSelector::Unit(unit.name.clone()),
        ])),
        [inside.pid],
        "the sleep outside the unit is not selected"
    );
    assert!(
        pids(ProcessSelector::All(vec![
            ProcessSelector::Name("nginx".into()),
            ProcessSelector::Unit(unit.name.clone()),
        ]))
        .is_empty()
    );
    assert!(pids(ProcessSelector::Name("sleep".into())).contains(&outside.pid));
    // Not in a container: the label says nothing more.
    let found = find(&ProcessSelector::Unit(unit.name.clone())).unwrap();
    assert_eq!(found[0].container, None);
    assert_eq!(found[0].label(), format!("pid {} (sleep)", inside.pid));
}

#[test]
fn a_lookup_leaves_containers_alone_until_a_report_asks_for_them() {
    // A cgroup shaped like Docker's scope of a container (no Docker state here, so no name).
    let id = format!("{:064x}", std::process::id());
    let Some(scope) = TestUnit::named(format!("docker-{id}.scope")) else {
        return;
    };
    let (inside, _) = Spawned::sleep();
    scope.adopt(inside.pid);
    let found = find(&ProcessSelector::Cgroup(format!("*/docker-{id}.scope"))).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].container, None,
        "a lookup alone names no container"
    );
    let labelled = process::with_containers(found);
    assert_eq!(
        labelled[0].label(),
        format!(
            "pid {} (sleep) in container {} (docker)",
            inside.pid,
            &id[..12]
        )
    );
}

#[test]
fn combinations_that_cannot_work_are_refused_with_the_rule() {
    for (parts, says) in [
        (
            vec![ProcessSelector::Pid(1), ProcessSelector::Unit("x".into())],
            "`pid` names processes alone",
        ),
        (
            vec![
                ProcessSelector::Name("a".into()),
                ProcessSelector::Pattern("b".into()),
            ],
            "do not combine with each other",
        ),
        (
            vec![
                ProcessSelector::Unit("a".into()),
                ProcessSelector::Unit("b".into()),
            ],
            "given twice",
        ),
    ] {
        let err = find(&ProcessSelector::All(parts)).unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
    }
    let err = find(&ProcessSelector::Cgroup("[".into())).unwrap_err();
    assert!(err.to_string().contains("not a glob"), "{err}");
}
