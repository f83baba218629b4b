//! `process` probes: count the processes a selector matches against `min` and `max`.

use std::process::{Child, Stdio};
use std::time::Duration;

use agent::spec::ProcessSelector;
use chaosd::probe::sample;
use chaosd::scenario::model::{ProbeKind, ProcessProbe};

/// A `sleep` with a unique argument, killed and reaped on drop.
struct Sleeper(Child);

impl Sleeper {
    /// Returns once the kernel shows its command line: `spawn` returns when the child has begun
    /// its exec, before the new program's arguments are set up, and until then its
    /// /proc/PID/cmdline reads empty (measured: in 1963 of 2000 spawns of `sleep`, read at once),
    /// so no pattern could match it yet.
    fn start(arg: &str) -> Sleeper {
        let child = std::process::Command::new("sleep")
            .arg(arg)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let cmdline = format!("/proc/{}/cmdline", child.id());
        let expected = format!("sleep\0{arg}\0");
        let mut tries = 0;
        while std::fs::read(&cmdline).unwrap_or_default() != expected.as_bytes() {
            tries += 1;
            assert!(tries < 1000, "sleep {arg} has not exec'd within 5 s");
            std::thread::sleep(Duration::from_millis(5));
        }
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

        let outcome = sample(&probe(pattern(), 1, None)).await;
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
