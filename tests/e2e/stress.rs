//! `stress` through chaosctl on its built-in `local` agent, seen from outside: the workers' CPU
//! time in `/proc` while held, the measured effect in the report, none left after the revert; and
//! a SIGKILL of chaosctl during the fault, which takes the workers with it, after which the next
//! command removes their cgroup.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use chaos_tests::eventually;
use chaos_tests::support::Test;

/// The `chaos-stress` children of `parent` that have not exited.
fn stress_children(parent: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        if &stat[open + 1..close] == "chaos-stress"
            && fields.get(1) == Some(&parent.to_string().as_str())
            && !matches!(fields.first(), Some(&"Z") | Some(&"X"))
        {
            found.push(pid);
        }
    }
    found
}

/// utime + stime of `pid`, in seconds (clock ticks of 1/100 s, as Linux gives them to us).
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    let fields: Vec<u64> = stat[close + 2..]
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.iter().sum::<u64>() as f64 / 100.0
}

fn scenario(duration: &str) -> String {
    format!(
        r#"version: 1
name: stress-cpu
steps:
  - name: burn a core
    target: local
    fault: {{stress: {{cpu: {{workers: 1, load: 60%}}}}}}
    duration: {duration}
    recover_within: 1s
"#
    )
}

fn cgroup_left(run_id_part: &str) -> Vec<String> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("chaos-stress-") && name.contains(run_id_part))
        .collect()
}

#[test]
fn stress_cpu_burns_while_held_and_reports_what_it_measured() {
    let t = Test::new().scenario(&scenario("3s"));
    let run = t.spawn_run();
    let chaosctl = run.pid().as_raw();
    t.wait_for_event("fault_applied", Duration::from_secs(20));
    let workers = stress_children(chaosctl);
    assert_eq!(workers.len(), 1, "one worker asked");
    let before = cpu_seconds(workers[0]);
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(800));
    let share = (cpu_seconds(workers[0]) - before) / start.elapsed().as_secs_f64();
    println!("one worker at 60%: {share:.2} of a core, from /proc");
    assert!(share > 0.1 && share < 0.9, "{share:.2}");
    let out = run.wait();
    out.code(0);
    let r = out.report();
    let f = &r.step(0)["faults"][0];
    println!("{f:#}");
    assert_eq!(f["kind"], "stress");
    assert!(
        f["mechanism"]
            .as_str()
            .unwrap()
            .starts_with("child processes")
    );
    assert!(f["detail"].as_str().unwrap().contains("cores busy"), "{f}");
    assert!(f["reverted_at"].is_string());
    assert!(stress_children(chaosctl).is_empty());
    // The measured effect, in every format.
    for name in ["report.md", "report.html", "report.junit.xml"] {
        let text = std::fs::read_to_string(out.folder().join(name)).unwrap();
        assert!(text.contains("cores busy"), "{name}: {text}");
    }
}

#[test]
fn a_sigkilled_chaosctl_takes_its_workers_and_the_next_command_cleans_up() {
    let t = Test::new().scenario(&scenario("30s"));
    let run = t.spawn_run();
    let chaosctl = run.pid().as_raw();
    t.wait_for_event("fault_applied", Duration::from_secs(20));
    let folder = t.run_folder();
    let run_id = folder.file_name().unwrap().to_str().unwrap().to_string();
    let workers = stress_children(chaosctl);
    assert_eq!(workers.len(), 1);
    run.signal(Signal::SIGKILL);
    let killed = Instant::now();
    let out = run.wait();
    assert_eq!(out.signal, Some(9), "{out:?}");
    eventually(
        Duration::from_secs(1),
        "the worker dies with chaosctl",
        || {
            !std::path::Path::new(&format!("/proc/{}/stat", workers[0])).exists()
                || std::fs::read_to_string(format!("/proc/{}/stat", workers[0]))
                    .map(|s| !s.contains("(chaos-stress)") || s.contains(") Z"))
                    .unwrap_or(true)
        },
    );
    println!("worker gone {:?} after the SIGKILL", killed.elapsed());

    let runs = t.cmd(&["runs"]);
    runs.code(0);
    runs.stderr_has("reverted");
    runs.stderr_has(&run_id);
    assert!(
        cgroup_left(&run_id).is_empty(),
        "{:?}",
        cgroup_left(&run_id)
    );
}
