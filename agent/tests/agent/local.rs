//! The local agent: pause/revert, end times, idempotent and concurrent reverts, crash recovery.

use std::thread;
use std::time::Duration;

use agent::fault;
use agent::spec::{FaultKind, FaultSpec, LatencySpec, NetScope, PauseSpec, Pick, ProcessSelector};
use agent::{FaultError, LocalAgent, RevertedBy};
use chaos_tests::eventually;

use crate::faults::{agent, request};
use crate::support::Spawned;

fn pause(pid: i32) -> FaultSpec {
    FaultSpec::Pause(PauseSpec {
        process: ProcessSelector::Pid(pid),
        pick: Pick::All,
    })
}

fn stopped(sleep: &Spawned) -> bool {
    sleep.state() == Some('T')
}

#[test]
fn pause_stops_and_revert_continues() {
    let (agent, _state) = agent();
    let (sleep, _) = Spawned::sleep();
    let applied = agent.inject(request("pause-1", pause(sleep.pid))).unwrap();
    assert!(applied.verified, "{}", applied.detail);
    assert_eq!(applied.mechanism, "signal");
    assert_eq!(applied.affected, [format!("pid {} (sleep)", sleep.pid)]);
    assert!(stopped(&sleep));

    let entry = agent.journal_dir().join("pause-1.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&entry).unwrap()).unwrap();
    assert_eq!(json["state"], "applied");
    assert_eq!(json["undo"]["processes"][0]["pid"], sleep.pid);
    let active = agent.active();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].fault_id, "pause-1");
    assert_eq!(active[0].end_at, None);

    let reverted = agent.revert("pause-1").unwrap();
    assert!(reverted.verified, "{}", reverted.detail);
    assert_eq!(reverted.by, RevertedBy::Request);
    eventually(Duration::from_secs(5), "sleep to be sleeping again", || {
        sleep.state() == Some('S')
    });
    assert!(!entry.exists());
    assert!(agent.active().is_empty());
    assert_eq!(
        agent.revert("pause-1").unwrap(),
        reverted,
        "a second revert repeats the first"
    );
}

#[test]
fn a_process_that_dies_while_paused_is_fine() {
    let (agent, _state) = agent();
    let (mut sleep, _) = Spawned::sleep();
    agent
        .inject(request("pause-dies", pause(sleep.pid)))
        .unwrap();
    sleep.child.kill().unwrap();
    sleep.child.wait().unwrap();
    let reverted = agent.revert("pause-dies").unwrap();
    assert!(reverted.verified);
    assert!(
        reverted.detail.contains("exited while paused"),
        "{}",
        reverted.detail
    );
}

#[test]
fn the_agent_reverts_at_the_end_time_on_its_own() {
    let (agent, _state) = agent();
    let (sleep, _) = Spawned::sleep();
    let mut req = request("held", pause(sleep.pid));
    req.hold = Some(Duration::from_millis(300));
    let applied = agent.inject(req).unwrap();
    assert!(stopped(&sleep));
    let end_at = agent.active()[0].end_at.unwrap();
    assert_eq!(
        end_at - applied.applied_at,
        chrono::TimeDelta::milliseconds(300)
    );
    eventually(
        Duration::from_secs(5),
        "the agent to continue sleep",
        || sleep.state() == Some('S'),
    );
    let reverted = agent.revert("held").unwrap();
    assert_eq!(reverted.by, RevertedBy::EndTime);
    assert!(reverted.reverted_at >= end_at);
    assert!(agent.active().is_empty());
}

#[test]
fn concurrent_reverts_revert_once() {
    let (agent, _state) = agent();
    let (sleep, _) = Spawned::sleep();
    let mut req = request("raced", pause(sleep.pid));
    req.hold = Some(Duration::from_millis(20));
    agent.inject(req).unwrap();
    let results: Vec<_> = (0..8)
        .map(|_| {
            let agent = agent.clone();
            thread::spawn(move || agent.revert("raced").unwrap())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert!(results.iter().all(|r| *r == results[0]), "{results:#?}");
    assert_eq!(agent.revert_all().len(), 0);
    eventually(Duration::from_secs(5), "sleep to run", || {
        sleep.state() == Some('S')
    });
}

#[test]
fn revert_all_reverts_every_active_fault() {
    let (agent, _state) = agent();
    let (a, _) = Spawned::sleep();
    let (b, _) = Spawned::sleep();
    agent.inject(request("a", pause(a.pid))).unwrap();
    agent.inject(request("b", pause(b.pid))).unwrap();
    let all = agent.revert_all();
    assert_eq!(
        all.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(
        all.iter()
            .all(|(_, r)| r.as_ref().is_ok_and(|r| r.verified))
    );
    assert!(!stopped(&a) && !stopped(&b));
}

#[test]
fn dropping_the_agent_reverts_its_faults() {
    let (agent, _state) = agent();
    let (sleep, _) = Spawned::sleep();
    agent.inject(request("dropped", pause(sleep.pid))).unwrap();
    drop(agent);
    eventually(Duration::from_secs(5), "sleep to run", || {
        sleep.state() == Some('S')
    });
}

#[test]
fn a_pause_left_by_a_crash_is_reverted_at_the_next_open() {
    let state = tempfile::tempdir().unwrap();
    let (sleep, _) = Spawned::sleep();
    let (first, recovered) = LocalAgent::open(state.path()).unwrap();
    assert!(recovered.is_empty());
    first.inject(request("crashed", pause(sleep.pid))).unwrap();
    first.abandon();
    assert!(stopped(&sleep), "a crash leaves the process stopped");

    let (second, recovered) = LocalAgent::open(state.path()).unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].fault_id, "crashed");
    assert_eq!(recovered[0].run_id, "run-1");
    assert_eq!(
        recovered[0].fault,
        format!("pause pid {} (pick all)", sleep.pid)
    );
    let reverted = recovered[0].result.as_ref().unwrap();
    assert_eq!(reverted.by, RevertedBy::Recovery);
    assert!(reverted.verified, "{}", reverted.detail);
    eventually(Duration::from_secs(5), "sleep to run again", || {
        sleep.state() == Some('S')
    });
    assert_eq!(std::fs::read_dir(second.journal_dir()).unwrap().count(), 0);
    assert_eq!(second.revert("crashed").unwrap().by, RevertedBy::Recovery);
}

/// The journal's files, by name.
fn journal_files(agent: &LocalAgent) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(agent.journal_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_batch_is_journaled_in_one_file_before_any_of_it_is_injected() {
    let (agent, _state) = agent();
    let sleeps: Vec<Spawned> = (0..3).map(|_| Spawned::sleep().0).collect();
    let mut reqs: Vec<_> = sleeps
        .iter()
        .enumerate()
        .map(|(i, s)| request(&format!("b-{i}"), pause(s.pid)))
        .collect();
    // A kill has nothing to undo, and a fault that matches nothing is never planned: neither is
    // in the batch, and neither stops the others.
    reqs.insert(1, request("gone", pause(i32::MAX - 7)));
    let results = agent.inject_batch(reqs);
    assert_eq!(results.len(), 4);
    assert!(results[1].is_err(), "{:?}", results[1]);
    assert!(
        results.iter().enumerate().all(|(i, r)| i == 1 || r.is_ok()),
        "{results:?}"
    );
    assert!(sleeps.iter().all(stopped));

    // One synced file for the three, then each one's `applied` marker in a file of its own.
    assert_eq!(
        journal_files(&agent),
        ["b-0.json", "b-1.json", "b-2.json", "batch+b-0.json"]
    );
    let batch: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(agent.journal_dir().join("batch+b-0.json")).unwrap(),
    )
    .unwrap();
    let ids: Vec<&str> = batch
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["fault_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b-0", "b-1", "b-2"]);
    assert!(
        batch
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["state"] == "planned")
    );

    agent.revert("b-1").unwrap();
    assert_eq!(
        journal_files(&agent),
        ["b-0.json", "b-2.json", "batch+b-0.json"],
        "the batch stays while it holds faults in place"
    );
    agent.revert("b-0").unwrap();
    agent.revert("b-2").unwrap();
    assert!(journal_files(&agent).is_empty());
    assert!(sleeps.iter().all(|s| !stopped(s)));
}

#[test]
fn a_batch_left_by_a_crash_is_reverted_at_the_next_open() {
    let state = tempfile::tempdir().unwrap();
    let sleeps: Vec<Spawned> = (0..3).map(|_| Spawned::sleep().0).collect();
    let (first, _) = LocalAgent::open(state.path()).unwrap();
    let reqs = sleeps
        .iter()
        .enumerate()
        .map(|(i, s)| request(&format!("c-{i}"), pause(s.pid)))
        .collect();
    assert!(first.inject_batch(reqs).iter().all(Result::is_ok));
    // One of them reverted before the crash: the batch still names it, and a start reverts it
    // again, harmlessly.
    first.revert("c-0").unwrap();
    // The `applied` marker of one is unreadable (a crash mid-write): its batch entry stands in.
    std::fs::write(first.journal_dir().join("c-2.json"), "{ torn").unwrap();
    first.abandon();
    assert!(stopped(&sleeps[1]) && stopped(&sleeps[2]));

    let (second, recovered) = LocalAgent::open(state.path()).unwrap();
    let mut ids: Vec<&str> = recovered.iter().map(|r| r.fault_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["c-0", "c-1", "c-2"]);
    for r in &recovered {
        let reverted = r.result.as_ref().unwrap();
        assert!(reverted.verified, "{}", reverted.detail);
    }
    eventually(Duration::from_secs(5), "every sleep to run again", || {
        sleeps.iter().all(|s| s.state() == Some('S'))
    });
    assert!(
        journal_files(&second).is_empty(),
        "{:?}",
        journal_files(&second)
    );
}

#[test]
fn faults_of_a_live_agent_are_not_recovered_by_another() {
    let state = tempfile::tempdir().unwrap();
    let (sleep, _) = Spawned::sleep();
    let (first, _) = LocalAgent::open(state.path()).unwrap();
    first.inject(request("mine", pause(sleep.pid))).unwrap();
    let (second, recovered) = LocalAgent::open(state.path()).unwrap();
    assert!(recovered.is_empty());
    assert!(stopped(&sleep));
    drop(second);
    assert!(stopped(&sleep), "the second agent held nothing");
    first.revert("mine").unwrap();
    assert!(!stopped(&sleep));
}

#[test]
fn an_unreadable_journal_entry_is_reported() {
    let state = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(state.path().join("journal")).unwrap();
    let bad = state.path().join("journal/broken.json");
    std::fs::write(&bad, "{\"run_id\": ").unwrap();
    let (_agent, recovered) = LocalAgent::open(state.path()).unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].fault_id, "broken");
    let err = recovered[0].result.as_ref().unwrap_err();
    assert!(matches!(err, FaultError::JournalCorrupt { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("undo its fault by hand, then delete the file"),
        "{err}"
    );
    assert!(bad.exists());
}

#[test]
fn nothing_matching_is_an_error_and_journals_nothing() {
    let (agent, _state) = agent();
    let spec = FaultSpec::Pause(PauseSpec {
        process: ProcessSelector::Pattern("^no-such-process-[0-9]{40}$".into()),
        pick: Pick::All,
    });
    let err = agent.check(&spec).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no process matches pattern `^no-such-process-[0-9]{40}$`; check that it is running, or fix the selector"
    );
    assert!(matches!(
        agent.inject(request("none", spec)),
        Err(FaultError::NoProcessMatches { .. })
    ));
    assert!(agent.active().is_empty());
    assert_eq!(std::fs::read_dir(agent.journal_dir()).unwrap().count(), 0);
    assert!(matches!(
        agent.revert("none"),
        Err(FaultError::UnknownFault { .. })
    ));
}

#[test]
fn overlapping_pauses_of_one_process_resume_it_at_the_last_revert() {
    let (agent, _state) = agent();
    let (sleep, _) = Spawned::sleep();
    agent.inject(request("first", pause(sleep.pid))).unwrap();
    agent.inject(request("second", pause(sleep.pid))).unwrap();
    let reverted = agent.revert("first").unwrap();
    assert!(reverted.verified, "{}", reverted.detail);
    assert!(
        reverted.detail.contains("still paused by fault `second`"),
        "{}",
        reverted.detail
    );
    assert!(stopped(&sleep), "`second` still holds it");
    agent.revert("second").unwrap();
    eventually(
        Duration::from_secs(5),
        "sleep to run after the last revert",
        || !stopped(&sleep),
    );

    // Two requests at once, reverted at once, many times: it always ends running.
    for round in 0..20 {
        let ids = [format!("a{round}"), format!("b{round}")];
        let inject: Vec<_> = ids
            .iter()
            .map(|id| {
                let (agent, req) = (agent.clone(), request(id, pause(sleep.pid)));
                thread::spawn(move || agent.inject(req).unwrap())
            })
            .collect();
        inject.into_iter().for_each(|t| drop(t.join().unwrap()));
        assert!(stopped(&sleep));
        let revert: Vec<_> = ids
            .iter()
            .map(|id| {
                let (agent, id) = (agent.clone(), id.clone());
                thread::spawn(move || agent.revert(&id).unwrap())
            })
            .collect();
        revert.into_iter().for_each(|t| drop(t.join().unwrap()));
        eventually(
            Duration::from_secs(5),
            &format!("sleep to run after round {round}"),
            || !stopped(&sleep),
        );
    }
    assert_eq!(std::fs::read_dir(agent.journal_dir()).unwrap().count(), 0);
}

#[test]
fn a_pause_planned_while_another_held_the_process_still_resumes_it() {
    // The executors one by one, in the order that left the process stopped for good: `b` is
    // planned while `a` holds the process (so it looked stopped "before" `b`), `a` is reverted,
    // then `b` stops it and its revert, believing it stopped before, left it so.
    let (sleep, _) = Spawned::sleep();
    let spec = pause(sleep.pid);
    let a = fault::plan("a", &spec, 1).unwrap();
    fault::inject("a", &spec, &a).unwrap();
    let b = fault::plan("b", &spec, 1).unwrap();
    fault::revert("a", &a).unwrap();
    fault::inject("b", &spec, &b).unwrap();
    let undone = fault::revert("b", &b).unwrap();
    eventually(
        Duration::from_secs(5),
        &format!("sleep to run ({})", undone.detail),
        || !stopped(&sleep),
    );
}

#[test]
fn a_process_stopped_before_two_pauses_stays_stopped_after_both() {
    let (agent, _state) = agent();
    let (sleep, _) = Spawned::sleep();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sleep.pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    eventually(Duration::from_secs(5), "sleep to stop", || stopped(&sleep));
    agent.inject(request("one", pause(sleep.pid))).unwrap();
    agent.inject(request("two", pause(sleep.pid))).unwrap();
    agent.revert("two").unwrap();
    let last = agent.revert("one").unwrap();
    assert!(
        last.detail.contains("left stopped as before the fault"),
        "{}",
        last.detail
    );
    assert!(stopped(&sleep), "stopped by someone else before: left so");
}

#[test]
fn a_hold_over_the_limit_is_refused_before_anything_happens() {
    let (agent, _state) = agent();
    let (sleep, _) = Spawned::sleep();
    let mut req = request("forever", pause(sleep.pid));
    req.hold = Some(Duration::from_millis(u64::MAX - 1));
    let err = agent.inject(req).unwrap_err();
    assert!(matches!(err, FaultError::HoldTooLong { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "hold 18446744073709551614ms of fault `forever` is over the limit of 604800000ms (7 days); \
         hold it at most that long and inject again"
    );
    assert!(!stopped(&sleep), "never stopped");
    assert_eq!(std::fs::read_dir(agent.journal_dir()).unwrap().count(), 0);
    assert!(agent.active().is_empty());
    assert!(matches!(
        agent.revert("forever"),
        Err(FaultError::UnknownFault { .. })
    ));

    // The limit itself is fine, and its end time is exact.
    let mut req = request("week", pause(sleep.pid));
    req.hold = Some(agent::spec::MAX_HOLD);
    let applied = agent.inject(req).unwrap();
    let end_at = agent.active()[0].end_at.unwrap();
    assert_eq!(end_at - applied.applied_at, chrono::TimeDelta::days(7));
    agent.revert("week").unwrap();
}

#[test]
fn fault_ids_are_unique_and_plain() {
    let (agent, _state) = agent();
    let (sleep, _) = Spawned::sleep();
    agent.inject(request("once", pause(sleep.pid))).unwrap();
    let err = agent.inject(request("once", pause(sleep.pid))).unwrap_err();
    assert!(matches!(err, FaultError::DuplicateFault { .. }), "{err:?}");
    let err = agent
        .inject(request("../escape", pause(sleep.pid)))
        .unwrap_err();
    assert!(matches!(err, FaultError::InvalidFaultId { .. }), "{err:?}");
    agent.revert("once").unwrap();
}

#[test]
fn network_kinds_say_how_or_why_not() {
    let (agent, _state) = agent();
    let caps = agent.capabilities();
    let by_kind = |kind| caps.kinds.iter().find(|k| k.kind == kind).unwrap();
    assert!(by_kind(FaultKind::Pause).supported);
    assert_eq!(
        by_kind(FaultKind::FillDisk).mechanism.as_deref(),
        Some("fallocate")
    );
    for kind in [
        FaultKind::Latency,
        FaultKind::Loss,
        FaultKind::Drop,
        FaultKind::Bandwidth,
        FaultKind::Corrupt,
        FaultKind::Duplicate,
        FaultKind::Http,
    ] {
        let k = by_kind(kind);
        if k.supported {
            let mechanism = k.mechanism.as_deref().unwrap();
            assert!(
                ["nft", "netem", "nfqueue", "htb", "proxy"].contains(&mechanism),
                "{k:?}"
            );
        } else {
            assert!(!k.reason.as_deref().unwrap().is_empty(), "{k:?}");
        }
    }
    let dns = by_kind(FaultKind::Dns);
    assert!(
        dns.mechanism.as_deref() == Some("nft redirect") || dns.reason.is_some(),
        "{dns:?}"
    );
    assert!(
        by_kind(FaultKind::Stress)
            .mechanism
            .as_deref()
            .unwrap()
            .starts_with("child processes")
    );
    assert_eq!(caps.kinds.len(), FaultKind::ALL.len());

    // Whatever this host offers, a fault on a missing interface is refused and never journaled.
    let spec = FaultSpec::Latency(LatencySpec {
        delay: Duration::from_millis(200),
        jitter: Duration::ZERO,
        scope: NetScope {
            interface: Some("chaos-nosuch0".into()),
            ..NetScope::default()
        },
    });
    let err = agent.check(&spec).unwrap_err().to_string();
    assert!(err.starts_with("`latency` fault"), "{err}");
    assert!(agent.inject(request("lat", spec)).is_err());
    assert_eq!(std::fs::read_dir(agent.journal_dir()).unwrap().count(), 0);
}
