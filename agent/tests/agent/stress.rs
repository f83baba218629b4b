//! `stress` through the local agent, observed from outside as a user would: the children's CPU
//! time and resident size in `/proc`, their `oom_score_adj` and cgroup, their end by themselves,
//! the revert, and a memory fault beyond what the host has refused at preflight.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use agent::fault::stress;
use agent::spec::{CpuStress, FaultSpec, MemoryStress, StressSpec, StressWork, Workers};
use agent::{Applied, FaultError, LocalAgent};
use chaos_tests::eventually;

use crate::faults::{agent, request};

const MIB: u64 = 1024 * 1024;

fn cpu(workers: u32, load: f64) -> FaultSpec {
    FaultSpec::Stress(StressSpec::on_host(StressWork::Cpu(CpuStress {
        workers: Workers::Count(workers),
        load,
    })))
}

/// The pids in `affected` (`pid 123 (chaos-stress)`).
fn pids(applied: &Applied) -> Vec<i32> {
    applied
        .affected
        .iter()
        .filter_map(|a| a.strip_prefix("pid ")?.split(' ').next()?.parse().ok())
        .collect()
}

fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 2..];
            rest.chars().next()
        })
        .is_some_and(|state| !matches!(state, 'Z' | 'X'))
}

fn cgroup_dir(fault_id: &str) -> Option<PathBuf> {
    let agent::fault::Undo::Stress { cgroup, .. } =
        agent::fault::plan(fault_id, &cpu(1, 1.0), 0).unwrap()
    else {
        unreachable!()
    };
    cgroup
}

#[test]
fn cpu_workers_burn_their_load_and_the_revert_kills_them() {
    let (agent, _state) = agent();
    let applied = agent.inject(request("stress-cpu", cpu(2, 50.0))).unwrap();
    println!("{applied:#?}");
    let pids = pids(&applied);
    assert_eq!(pids.len(), 2, "{applied:?}");
    assert!(applied.detail.contains("cores busy"), "{}", applied.detail);

    let before: f64 = pids.iter().filter_map(|&p| stress::cpu_seconds(p)).sum();
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    let used = pids
        .iter()
        .filter_map(|&p| stress::cpu_seconds(p))
        .sum::<f64>()
        - before;
    let cores = used / start.elapsed().as_secs_f64();
    println!("2 workers at 50%: {cores:.2} cores busy (1.0 asked)");
    // A 2-core machine shared with other builds: an honest lower bound, and the load's upper one.
    assert!(cores > 0.15, "{cores:.2} cores");
    assert!(cores < 1.3, "{cores:.2} cores for 2 workers at 50%");
    for &pid in &pids {
        let adj = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
        assert_eq!(adj.trim(), "1000");
    }
    let cgroup = cgroup_dir("stress-cpu");
    if let Some(dir) = &cgroup {
        assert!(applied.verified, "{applied:?}");
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
        for pid in &pids {
            assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");
        }
    }

    let reverted = agent.revert("stress-cpu").unwrap();
    println!("{reverted:?}");
    assert!(reverted.verified, "{reverted:?}");
    for &pid in &pids {
        assert!(!running(pid), "pid {pid} still runs");
    }
    if let Some(dir) = cgroup {
        assert!(!dir.exists(), "{}", dir.display());
    }
}

#[test]
fn memory_is_held_resident_then_given_back() {
    let (agent, _state) = agent();
    let spec = FaultSpec::Stress(StressSpec::on_host(StressWork::Memory(MemoryStress::Size(
        64 * MIB,
    ))));
    let applied = agent.inject(request("stress-mem", spec)).unwrap();
    println!("{applied:#?}");
    assert!(applied.verified, "{applied:?}");
    let pids = pids(&applied);
    assert_eq!(pids.len(), 1);
    let rss = stress::resident_bytes(pids[0]).unwrap();
    println!("resident: {} MiB of 64 asked", rss / MIB);
    assert!(rss >= 60 * MIB, "{rss}");
    let reverted = agent.revert("stress-mem").unwrap();
    assert!(reverted.verified, "{reverted:?}");
    assert!(!running(pids[0]));
}

#[test]
fn workers_end_by_themselves_at_the_end_time() {
    let state = tempfile::tempdir().unwrap();
    let (first, _) = LocalAgent::open(state.path()).unwrap();
    let mut req = request("stress-end", cpu(1, 20.0));
    req.hold = Some(Duration::from_secs(1));
    let applied = first.inject(req).unwrap();
    let pids = pids(&applied);
    // The journal names each worker by pid and start time, so that a reused pid is never killed.
    let journal: Vec<String> = std::fs::read_dir(first.journal_dir())
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(journal.len(), 1);
    let entry: serde_json::Value = serde_json::from_str(&journal[0]).unwrap();
    let children = &entry["undo"]["children"];
    assert_eq!(children[0]["pid"], pids[0], "{entry:#}");
    assert!(children[0]["start_time"].as_u64().unwrap() > 0, "{entry:#}");
    // No agent is left to revert it: the workers end on their own clock.
    first.abandon();
    let start = Instant::now();
    eventually(
        Duration::from_secs(4),
        "the workers end by themselves",
        || pids.iter().all(|&p| !running(p)),
    );
    println!("gone {:?} after the abandon", start.elapsed());

    // The next start removes the cgroup they leave.
    let (second, recovered) = LocalAgent::open(state.path()).unwrap();
    assert_eq!(recovered.len(), 1);
    assert!(recovered[0].result.as_ref().unwrap().verified);
    if let Some(dir) = cgroup_dir("stress-end") {
        assert!(!dir.exists());
    }
    assert!(second.active().is_empty());
}

#[test]
fn memory_beyond_what_is_available_is_refused_at_preflight() {
    let (agent, _state) = agent();
    let mem = stress::meminfo().unwrap();
    let spec = FaultSpec::Stress(StressSpec::on_host(StressWork::Memory(MemoryStress::Size(
        mem.available,
    ))));
    let err = agent.check(&spec).unwrap_err();
    println!("{err}");
    assert!(matches!(err, FaultError::WouldOverload { .. }), "{err}");
    assert!(err.to_string().contains("MemAvailable"), "{err}");
    assert!(agent.inject(request("stress-too-much", spec)).is_err());
    assert_eq!(std::fs::read_dir(agent.journal_dir()).unwrap().count(), 0);
    let share = FaultSpec::Stress(StressSpec::on_host(StressWork::Memory(
        MemoryStress::Share(100.0),
    )));
    assert!(agent.check(&share).is_err());
}
