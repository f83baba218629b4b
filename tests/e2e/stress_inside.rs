//! `stress` with `inside:` against real Podman containers: the workers go into a cgroup of their
//! own below one container's cgroup, so its CPU time and memory count them and its limits bound
//! them, while a second container is left alone; nothing of ours is left below the container's
//! cgroups after the revert, after a SIGKILL of chaosctl (and the next command's recovery), or
//! after the container stopped mid-fault.

use std::time::{Duration, Instant};

use chaos_tests::podman::{self, Container};
use chaos_tests::support::{Sleeper, Test, pattern, read_events, unique};

const CPU: &str = r#"version: 1
name: stress-inside-a-container
steps:
  - name: burn a core in container a
    target: local
    fault:
      stress: {cpu: {workers: 1}}
      inside: {process: {container: "${A}"}}
    duration: ${HOLD}
    recover_within: 1s
"#;

#[test]
fn stress_cpu_inside_one_container_is_counted_in_its_cgroup_only() {
    if !podman::available() {
        return;
    }
    let tag = unique("stress-in");
    let a = Container::run(&format!("{tag}-a"), &[], &["/bin/sleep", "300"]);
    let b = Container::run(&format!("{tag}-b"), &[], &["/bin/sleep", "300"]);
    let t = Test::new()
        .scenario(CPU)
        .var("A", &a.name)
        .var("HOLD", "3s");
    let var = format!("A={}", a.name);
    let file = t.scenario_path().display().to_string();
    let plan = t.cmd(&["plan", &file, "--var", &var, "--var", "HOLD=3s"]);
    plan.code(0);
    let cgroup = a.cgroup_dir("cgroup2").unwrap();
    plan.stdout_has(&format!(
        "pid {} (sleep) in container {} ({}), cgroup /",
        a.pid,
        &a.id[..12],
        a.name
    ));
    plan.stdout_has(&cgroup.file_name().unwrap().to_string_lossy());
    let (a0, b0) = (a.cpu_seconds(), b.cpu_seconds());
    let run = t.spawn_run();
    t.wait_for_event("fault_applied", Duration::from_secs(20));
    let ours = a.stress_cgroups();
    println!("during: {ours:?}");
    assert!(
        ours.iter()
            .any(|d| d.starts_with(a.cgroup_dir("cgroup2").unwrap())),
        "{ours:?}"
    );
    if a.cgroup_dir("cpuacct").is_some() {
        assert!(
            ours.iter()
                .any(|d| d.starts_with(a.cgroup_dir("cpuacct").unwrap())),
            "no directory below the v1 cpuacct cgroup: {ours:?}"
        );
    }
    assert!(b.stress_cgroups().is_empty());
    let out = run.wait();
    out.code(0);
    let (used_a, used_b) = (a.cpu_seconds() - a0, b.cpu_seconds() - b0);
    println!("cgroup CPU time during the run: a {used_a:.2} s, b {used_b:.2} s");
    // One worker for 3 s on a machine shared with other work: at least half a core-second.
    assert!(used_a > 0.5, "container a's cgroup counted {used_a:.2} s");
    assert!(used_b < 0.2, "container b's cgroup counted {used_b:.2} s");
    let r = out.report();
    let fault = &r.step(0)["faults"][0];
    println!("{fault:#}");
    let affected = fault["affected"].to_string();
    assert!(
        affected.contains(&format!(
            "(via pid {} (sleep) in container {} ({}))",
            a.pid,
            &a.id[..12],
            a.name
        )) && affected.contains(&a.id),
        "{affected}"
    );
    assert!(!affected.contains(&b.id), "{affected}");
    assert_eq!(fault["verified"], true, "{fault}");
    assert!(a.stress_cgroups().is_empty(), "{:?}", a.stress_cgroups());
}

/// A container with a CPU quota of half a core: two workers inside it are held to that quota,
/// which the report names.
#[test]
fn stress_cpu_inside_a_container_is_bounded_by_its_cpu_quota() {
    if !podman::available() {
        return;
    }
    let tag = unique("stress-quota");
    let a = Container::run(
        &format!("{tag}-a"),
        &["--cpus", "0.5"],
        &["/bin/sleep", "300"],
    );
    let t = Test::new()
        .scenario(&CPU.replace("workers: 1", "workers: 2"))
        .var("A", &a.name)
        .var("HOLD", "3s");
    let before = a.cpu_seconds();
    let start = Instant::now();
    let out = t.run();
    out.code(0);
    let (used, elapsed) = (a.cpu_seconds() - before, start.elapsed().as_secs_f64());
    println!("2 workers under a 0.5 CPU quota: {used:.2} CPU s in {elapsed:.1} s");
    assert!(used > 0.3, "{used:.2} s");
    assert!(used <= 0.5 * elapsed + 0.3, "{used:.2} s in {elapsed:.1} s");
    let detail = out.report().step(0)["faults"][0]["detail"].to_string();
    assert!(detail.contains("its limits: 0.50 CPUs"), "{detail}");
    assert!(a.stress_cgroups().is_empty(), "{:?}", a.stress_cgroups());
}

const MEMORY: &str = r#"version: 1
name: stress-memory-inside-a-container
steps:
  - name: hold memory in container a
    target: local
    fault:
      stress:
        memory: {size: "${SIZE}"}
      inside: {process: {container: "${A}"}}
    duration: 3s
    recover_within: 1s
"#;

/// Memory held inside a container with a 64 MiB limit is charged to its cgroup; a size above
/// its headroom is refused at preflight with the figures.
#[test]
fn stress_memory_inside_a_limited_container_is_held_there_and_bounded_by_its_headroom() {
    if !podman::available() {
        return;
    }
    let tag = unique("stress-mem");
    let a = Container::run(
        &format!("{tag}-a"),
        &["--memory", "64m"],
        &["/bin/sleep", "300"],
    );
    let before = a.memory_bytes();
    let t = Test::new()
        .scenario(MEMORY)
        .var("A", &a.name)
        .var("SIZE", "32MiB");
    let run = t.spawn_run();
    t.wait_for_event("fault_applied", Duration::from_secs(20));
    let during = a.memory_bytes();
    println!(
        "container memory: {} KiB before, {} KiB during",
        before >> 10,
        during >> 10
    );
    assert!(during >= before + (30 << 20), "{before} -> {during}");
    let out = run.wait();
    out.code(0);
    let detail = out.report().step(0)["faults"][0]["detail"].to_string();
    assert!(detail.contains("64 MiB of memory"), "{detail}");
    assert!(
        a.memory_bytes() < before + (8 << 20),
        "{}",
        a.memory_bytes()
    );
    assert!(a.stress_cgroups().is_empty(), "{:?}", a.stress_cgroups());

    let t = Test::new()
        .scenario(MEMORY)
        .var("A", &a.name)
        .var("SIZE", "100MiB");
    let out = t.run();
    out.code(5);
    let reason = out.report().reason();
    assert!(
        reason.contains("has a memory limit of 64 MiB") && reason.contains("at most"),
        "{reason}"
    );
    assert!(a.stress_cgroups().is_empty(), "{:?}", a.stress_cgroups());
}

/// SIGKILL of chaosctl mid-fault: its workers die with it, and the next command's recovery
/// removes our directories below the container's cgroups.
#[test]
fn sigkill_of_chaosctl_during_stress_inside_leaves_nothing_after_the_next_command() {
    if !podman::available() {
        return;
    }
    let tag = unique("stress-kill");
    let a = Container::run(&format!("{tag}-a"), &[], &["/bin/sleep", "300"]);
    let t = Test::new()
        .scenario(CPU)
        .var("A", &a.name)
        .var("HOLD", "60s");
    let run = t.spawn_run();
    t.wait_for_event("fault_applied", Duration::from_secs(20));
    let ours = a.stress_cgroups();
    assert!(!ours.is_empty());
    run.signal(nix::sys::signal::Signal::SIGKILL);
    let out = run.wait();
    assert_eq!(out.signal, Some(9), "{out:?}");
    let killed = Instant::now();
    chaos_tests::eventually(
        Duration::from_secs(2),
        "the workers die with chaosctl",
        || {
            ours.iter()
                .all(|d| {
                    std::fs::read_to_string(d.join("cgroup.procs"))
                        .map(|t| t.trim().is_empty())
                        .unwrap_or(true)
                })
                .then_some(())
        },
    );
    println!("workers gone {:?} after the SIGKILL", killed.elapsed());
    let runs = t.cmd(&["runs"]);
    runs.code(0);
    runs.stderr_has("reverted");
    assert!(a.stress_cgroups().is_empty(), "{:?}", a.stress_cgroups());
}

/// A container stopped mid-fault: the revert says its cgroup has no process left, and kills the
/// workers and removes our directories all the same.
#[test]
fn a_container_stopped_during_stress_inside_makes_the_revert_say_so_and_leave_nothing() {
    if !podman::available() {
        return;
    }
    let tag = unique("stress-gone");
    let a = Container::run(&format!("{tag}-a"), &[], &["/bin/sleep", "300"]);
    let t = Test::new()
        .scenario(CPU)
        .var("A", &a.name)
        .var("HOLD", "3s");
    let run = t.spawn_run();
    t.wait_for_event("fault_applied", Duration::from_secs(20));
    let ours = a.stress_cgroups();
    a.kill();
    let out = run.wait();
    out.code(0);
    let events = read_events(&out.folder().join("events.jsonl"));
    let reverted = events
        .iter()
        .find(|e| e["kind"] == "fault_reverted")
        .expect("a fault_reverted event")
        .to_string();
    assert!(
        reverted.contains("no process is left in the target's cgroup"),
        "{reverted}"
    );
    assert!(ours.iter().all(|d| !d.exists()), "{ours:?}");
}

#[test]
fn stress_inside_refuses_a_process_of_the_agents_own_cgroup() {
    if !chaos_tests::skip::unless_root("it reads every process's cgroups") {
        return;
    }
    let tag = unique("stress-host");
    let _sleeper = Sleeper::spawn(&tag);
    let t = Test::new().var("PAT", pattern(&tag)).scenario(
        r#"version: 1
name: stress-inside-the-host
steps:
  - name: stress the host by mistake
    target: local
    fault:
      stress: {cpu: {workers: 1}}
      inside: {process: {pattern: "${PAT}"}}
    duration: 1s
"#,
    );
    let out = t.run();
    out.code(5);
    let reason = out.report().reason();
    assert!(reason.contains("own cgroup (the host's)"), "{reason}");
}

/// Where the cgroup2 hierarchy is mounted here.
fn cgroup2_mount() -> Option<std::path::PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        right
            .starts_with("cgroup2 ")
            .then(|| left.split_whitespace().nth(4).map(Into::into))?
    })
}

/// chaosctl started in a cgroup of the test's own under a private cgroup namespace (`unshare
/// -C`), as an agent in a Kubernetes pod is: `/proc/PID/cgroup` and the hierarchy's mount read
/// relative to it (`/..`), and the workers still go below the container's cgroup on the host.
#[test]
fn stress_inside_works_from_a_private_cgroup_namespace() {
    if !podman::available() || !chaos_tests::skip::unless_installed(&["unshare"], "util-linux") {
        return;
    }
    let tag = unique("stress-cgns");
    let a = Container::run(&format!("{tag}-a"), &[], &["/bin/sleep", "300"]);
    let own = cgroup2_mount().expect("a cgroup2 hierarchy").join(&tag);
    std::fs::create_dir(&own).unwrap();
    let t = Test::new()
        .scenario(CPU)
        .var("A", &a.name)
        .var("HOLD", "2s");
    let mut args = vec![
        chaos_tests::bins::chaosctl().display().to_string(),
        "--state-dir".to_string(),
        t.state_dir().display().to_string(),
    ];
    args.extend(t.run_args());
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"echo $$ > "$0/cgroup.procs" && exec unshare -C "$@""#)
        .arg(&own)
        .args(&args)
        .output()
        .expect("sh");
    let _ = std::fs::remove_dir(&own);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let report = chaos_tests::support::Report::read(&t.run_folder());
    let fault = &report.step(0)["faults"][0];
    let detail = fault["detail"].to_string();
    let below = a.cgroup_dir("cgroup2").unwrap().join("chaos-stress-");
    assert!(detail.contains(&below.display().to_string()), "{detail}");
    assert_eq!(fault["verified"], true, "{fault}");
    assert!(a.stress_cgroups().is_empty(), "{:?}", a.stress_cgroups());
}
