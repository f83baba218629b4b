//! The executors through the local agent: pick reproducibility, kill, fill_disk on a tmpfs.

use std::time::Duration;

use agent::fault::{self, Undo, fill_disk};
use agent::spec::{
    FaultSpec, FillAmount, FillDiskSpec, KillSpec, PauseSpec, Pick, ProcessSelector, SignalNumber,
};
use agent::{FaultError, InjectRequest, LocalAgent};
use chaos_tests::eventually;

use crate::support::{Spawned, Tmpfs, unique_seconds};

const MIB: u64 = 1024 * 1024;

pub fn agent() -> (LocalAgent, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let (agent, recovered) = LocalAgent::open(state.path()).unwrap();
    assert!(recovered.is_empty());
    (agent, state)
}

pub fn request(fault_id: &str, spec: FaultSpec) -> InjectRequest {
    InjectRequest {
        run_id: "run-1".to_string(),
        fault_id: fault_id.to_string(),
        spec,
        seed: 42,
        hold: None,
        exempt: Vec::new(),
        resolved: None,
    }
}

fn journal_entries(agent: &LocalAgent) -> usize {
    std::fs::read_dir(agent.journal_dir()).unwrap().count()
}

#[test]
fn a_seeded_pick_is_reproducible() {
    let prefix = unique_seconds();
    let sleeps: Vec<Spawned> = (0..6)
        .map(|i| Spawned::new(&["sleep", &format!("{prefix}{i}")]))
        .collect();
    let spec = FaultSpec::Pause(PauseSpec {
        process: ProcessSelector::Pattern(format!("^sleep {}", regex::escape(&prefix))),
        pick: Pick::Count(2),
    });
    let picked = |seed| match fault::plan("f", &spec, seed).unwrap() {
        Undo::Pause { processes } => processes.iter().map(|t| t.pid).collect::<Vec<_>>(),
        other => panic!("unexpected undo {other:?}"),
    };
    let first = picked(7);
    assert_eq!(first.len(), 2);
    assert_eq!(first, picked(7));
    assert!(first.iter().all(|pid| sleeps.iter().any(|s| s.pid == *pid)));
    assert!(
        (0..20).any(|seed| picked(seed) != first),
        "seeds should matter"
    );
}

#[test]
fn sigkill_leaves_no_process() {
    let (agent, _state) = agent();
    let (sleep, _) = Spawned::sleep();
    let applied = agent
        .inject(request(
            "kill-1",
            FaultSpec::Kill(KillSpec {
                process: ProcessSelector::Pid(sleep.pid),
                signal: SignalNumber(9),
                pick: Pick::All,
            }),
        ))
        .unwrap();
    assert!(applied.verified, "{}", applied.detail);
    assert_eq!(applied.mechanism, "signal");
    assert_eq!(applied.affected, [format!("pid {} (sleep)", sleep.pid)]);
    // Our unreaped child: a zombie is what is left of it.
    assert_eq!(sleep.state(), Some('Z'));
    let reverted = agent.revert("kill-1").unwrap();
    assert!(
        reverted.detail.starts_with("nothing to revert"),
        "{}",
        reverted.detail
    );
    assert_eq!(journal_entries(&agent), 0);
}

#[test]
fn sigterm_is_delivered() {
    let (agent, _state) = agent();
    let (sleep, _) = Spawned::sleep();
    let applied = agent
        .inject(request(
            "term-1",
            FaultSpec::Kill(KillSpec {
                process: ProcessSelector::Pid(sleep.pid),
                signal: SignalNumber(15),
                pick: Pick::All,
            }),
        ))
        .unwrap();
    assert!(applied.verified);
    assert!(
        applied.detail.contains("sent SIGTERM to 1 process"),
        "{}",
        applied.detail
    );
    eventually(Duration::from_secs(5), "sleep to die of SIGTERM", || {
        sleep.state() == Some('Z')
    });
}

#[test]
fn fill_disk_to_a_usage_a_size_and_a_leave_then_revert() {
    let Some(tmpfs) = Tmpfs::mount(64) else {
        return;
    };
    let (agent, _state) = agent();
    let cases = [
        ("usage", FillAmount::Usage(90.0)),
        ("size", FillAmount::Size(10 * MIB)),
        ("leave", FillAmount::Leave(8 * MIB)),
    ];
    for (name, amount) in cases {
        let before = fill_disk::usage(tmpfs.path()).unwrap();
        let fault_id = format!("fill-{name}");
        let applied = agent
            .inject(request(
                &fault_id,
                FaultSpec::FillDisk(FillDiskSpec {
                    path: tmpfs.path().to_path_buf(),
                    amount,
                    inside: None,
                }),
            ))
            .unwrap();
        assert!(applied.verified, "{name}: {}", applied.detail);
        assert_eq!(applied.mechanism, "fallocate");
        let file = tmpfs.path().join(format!(".chaos-fill-{fault_id}"));
        assert!(applied.affected[0].starts_with(&file.display().to_string()));

        let held = fill_disk::usage(tmpfs.path()).unwrap();
        match amount {
            FillAmount::Usage(p) => {
                assert!(
                    (held.percent() - p).abs() <= 1.0,
                    "{name}: {}%",
                    held.percent()
                )
            }
            FillAmount::Size(b) => {
                assert!(
                    (held.used - before.used).abs_diff(b) <= MIB,
                    "{name}: {held:?}"
                );
                assert_eq!(std::fs::metadata(&file).unwrap().len(), b);
            }
            FillAmount::Leave(b) => assert!(held.avail.abs_diff(b) <= MIB, "{name}: {held:?}"),
        }

        let reverted = agent.revert(&fault_id).unwrap();
        assert!(reverted.verified, "{}", reverted.detail);
        assert!(!file.exists());
        assert!(tmpfs.files().is_empty());
        // A child that another test forks while the fill file is open holds a copy of its
        // descriptor until that child execs (O_CLOEXEC closes it only then), so on a loaded
        // machine tmpfs may give the space back a moment after the unlink, not at it.
        eventually(
            Duration::from_secs(5),
            &format!("{name}: the space to come back"),
            || {
                let after = fill_disk::usage(tmpfs.path()).unwrap();
                after.used.abs_diff(before.used) <= MIB
            },
        );
    }
    assert_eq!(journal_entries(&agent), 0);
}

#[test]
fn fill_disk_to_full_usage_reaches_100_percent() {
    let Some(tmpfs) = Tmpfs::mount(16) else {
        return;
    };
    let (agent, _state) = agent();
    let spec = FaultSpec::FillDisk(FillDiskSpec {
        path: tmpfs.path().to_path_buf(),
        amount: FillAmount::Usage(100.0),
        inside: None,
    });
    let applied = agent.inject(request("fill-full", spec)).unwrap();
    assert!(applied.verified, "{}", applied.detail);
    assert_eq!(fill_disk::usage(tmpfs.path()).unwrap().avail, 0);
    agent.revert("fill-full").unwrap();
    assert!(tmpfs.files().is_empty());
}

#[test]
fn an_overfill_is_refused_and_leaves_nothing() {
    let Some(tmpfs) = Tmpfs::mount(64) else {
        return;
    };
    let (agent, _state) = agent();
    let fill = |fault_id: &str, amount| {
        agent.inject(request(
            fault_id,
            FaultSpec::FillDisk(FillDiskSpec {
                path: tmpfs.path().to_path_buf(),
                amount,
                inside: None,
            }),
        ))
    };
    let err = fill("too-big", FillAmount::Size(100 * MIB)).unwrap_err();
    assert!(matches!(err, FaultError::WouldOverfill { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("100 MiB asked but only 64 MiB is available; ask for less"),
        "{err}"
    );
    assert!(tmpfs.files().is_empty());
    assert_eq!(journal_entries(&agent), 0);
    assert!(agent.active().is_empty());

    fill("first", FillAmount::Size(40 * MIB)).unwrap();
    let err = fill("second", FillAmount::Usage(50.0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot fill `{}`: it is already 62.5% used, above the 50% asked",
            tmpfs.path().display()
        )
    );
    let err = fill("third", FillAmount::Leave(30 * MIB)).unwrap_err();
    assert!(err.to_string().contains("to leave"), "{err}");
    assert_eq!(tmpfs.files().len(), 1);
    agent.revert("first").unwrap();
    assert!(tmpfs.files().is_empty());
}

#[test]
fn fill_disk_needs_an_existing_directory() {
    let (agent, _state) = agent();
    let file = tempfile::NamedTempFile::new().unwrap();
    let spec = FaultSpec::FillDisk(FillDiskSpec {
        path: file.path().to_path_buf(),
        amount: FillAmount::Size(MIB),
        inside: None,
    });
    let err = agent.check(&spec).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "`{}` is not an existing directory; fill_disk needs a directory on the filesystem to fill",
            file.path().display()
        )
    );
    assert!(agent.inject(request("f", spec)).is_err());
    assert_eq!(journal_entries(&agent), 0);
}

#[test]
fn a_fill_left_by_a_crash_is_deleted_at_the_next_open() {
    let Some(tmpfs) = Tmpfs::mount(32) else {
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let (first, _) = LocalAgent::open(state.path()).unwrap();
    let mut req = request(
        "crash-fill",
        FaultSpec::FillDisk(FillDiskSpec {
            path: tmpfs.path().to_path_buf(),
            amount: FillAmount::Size(8 * MIB),
            inside: None,
        }),
    );
    req.hold = Some(Duration::from_secs(3600));
    first.inject(req).unwrap();
    first.abandon();
    assert_eq!(tmpfs.files().len(), 1, "a crash leaves the file");

    let (second, recovered) = LocalAgent::open(state.path()).unwrap();
    assert_eq!(recovered.len(), 1);
    let reverted = recovered[0].result.as_ref().unwrap();
    assert!(reverted.verified);
    assert!(tmpfs.files().is_empty());
    assert!(second.active().is_empty());
}
