//! `process` probes: count the processes a selector matches against `min` and `max`.

use std::process::{Child, Stdio};
use std::time::Duration;

use agent::spec::ProcessSelector;
use chaosd::probe::sample;
use chaosd::scenario::model::{ProbeKind, ProcessProbe};

/// A `sleep` with a unique argument, killed and reaped on drop.
struct Sleeper(Child);

impl Sleeper {
    fn start(arg: &str) -> Sleeper {
        let child = std::process::Command::new("sleep")
            .arg(arg)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Sleeper(child)
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn probe(selector: ProcessSelector, min: usize, max: Option<usize>) -> ProbeKind {
    ProbeKind::Process(ProcessProbe { selector, min, max })
}

mod process_probe {
    use super::*;

    #[tokio::test]
    async fn counts_are_judged_against_min_and_max() {
        // Unique to this test process, so no other test's sleepers are counted.
        let arg = format!("3011.{}", std::process::id());
        let pattern = || ProcessSelector::Pattern(format!("^sleep {}$", arg.replace('.', "\\.")));
        let first = Sleeper::start(&arg);
        let _second = Sleeper::start(&arg);

        // `spawn` returns once the child has begun its exec, before the kernel has set up the new
        // program's arguments: for a moment its /proc/PID/cmdline reads empty (measured: in 1963
        // of 2000 spawns of `sleep`, read at once), so a pattern cannot match it yet. Take the
        // first sample that sees both, within 2 s.
        let mut outcome = sample(&probe(pattern(), 1, None)).await;
        for _ in 0..200 {
            if outcome.reason == "2 processes" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            outcome = sample(&probe(pattern(), 1, None)).await;
        }
        assert!(outcome.ok, "{outcome:?}");
        assert_eq!(outcome.reason, "2 processes");
        assert!(sample(&probe(pattern(), 2, Some(2))).await.ok);

        let outcome = sample(&probe(pattern(), 3, None)).await;
        assert!(!outcome.ok);
        assert_eq!(outcome.reason, "2 processes, expected at least 3");
        let outcome = sample(&probe(pattern(), 0, Some(1))).await;
        assert!(!outcome.ok);
        assert_eq!(outcome.reason, "2 processes, expected at most 1");

        drop(first);
        let outcome = sample(&probe(pattern(), 1, Some(1))).await;
        assert!(outcome.ok, "{outcome:?}");
        assert_eq!(outcome.reason, "1 process");
    }

    #[tokio::test]
    async fn a_missing_pidfile_counts_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let selector = ProcessSelector::Pidfile(dir.path().join("gone.pid"));
        let outcome = sample(&probe(selector.clone(), 1, None)).await;
        assert!(!outcome.ok);
        assert_eq!(outcome.reason, "0 processes, expected at least 1");
        assert!(sample(&probe(selector, 0, Some(0))).await.ok);
    }

    #[tokio::test]
    async fn a_pid_selector_follows_the_process() {
        let sleeper = Sleeper::start("3012");
        let pid = ProcessSelector::Pid(sleeper.0.id() as i32);
        assert!(sample(&probe(pid.clone(), 1, Some(1))).await.ok);
        drop(sleeper);
        let outcome = sample(&probe(pid, 1, None)).await;
        assert_eq!(outcome.reason, "0 processes, expected at least 1");
        assert!(outcome.latency < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn an_invalid_pattern_fails_with_the_reason() {
        let outcome = sample(&probe(ProcessSelector::Pattern("(".into()), 1, None)).await;
        assert!(!outcome.ok);
        assert!(
            outcome.reason.starts_with("invalid process pattern `(`"),
            "{outcome:?}"
        );
    }
}
