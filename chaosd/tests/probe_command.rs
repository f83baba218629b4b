//! `command` probes: exit codes, stdout rules, signals, timeouts that kill and reap, missing
//! programs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chaos_tests::eventually_async;
use chaosd::probe::{SampleOutcome, sample};
use chaosd::scenario::model::{Command, CommandExpect, CommandProbe, ProbeKind};

fn expect_exit(exit: i32) -> CommandExpect {
    CommandExpect {
        exit,
        stdout_contains: None,
        stdout_matches: None,
    }
}

fn probe(run: Command, timeout: Duration, expect: CommandExpect) -> ProbeKind {
    ProbeKind::Command(CommandProbe {
        run,
        timeout,
        cwd: std::env::temp_dir(),
        expect,
    })
}

fn sh(script: &str) -> Command {
    Command::Shell(script.into())
}

fn argv(args: &[&str]) -> Command {
    Command::Argv(args.iter().map(|a| a.to_string()).collect())
}

async fn run(run: Command, expect: CommandExpect) -> SampleOutcome {
    sample(&probe(run, Duration::from_secs(10), expect)).await
}

#[track_caller]
fn assert_fails(outcome: &SampleOutcome, reason: &str) {
    assert!(!outcome.ok, "expected a failure, got {outcome:?}");
    assert_eq!(outcome.reason, reason, "{outcome:?}");
}

/// Pids of live or zombie processes whose argv is exactly `args`.
fn pids_with_argv(args: &[&str]) -> Vec<i32> {
    let wanted: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted) {
            pids.push(pid);
        }
    }
    pids
}

/// Kills every process with this exact argv when dropped (for grandchildren a test provokes).
struct KillOnDrop(&'static [&'static str]);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in pids_with_argv(self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

mod command_probe {
    use super::*;

    #[tokio::test]
    async fn exit_codes() {
        let outcome = run(argv(&["true"]), expect_exit(0)).await;
        assert!(outcome.ok, "{outcome:?}");
        assert!(outcome.reason.starts_with("exit 0 in "), "{outcome:?}");
        assert_fails(
            &run(argv(&["false"]), expect_exit(0)).await,
            "exit 1, expected 0",
        );
        assert!(run(sh("exit 3"), expect_exit(3)).await.ok);
        assert_fails(
            &run(sh("exit 0"), expect_exit(3)).await,
            "exit 0, expected 3",
        );
    }

    #[tokio::test]
    async fn a_failure_quotes_the_last_line_of_stderr() {
        assert_fails(
            &run(sh("echo first >&2; echo boom >&2; exit 2"), expect_exit(0)).await,
            "exit 2, expected 0: boom",
        );
    }

    #[tokio::test]
    async fn stdout_rules() {
        let contains = |needle: &str| CommandExpect {
            stdout_contains: Some(needle.into()),
            ..expect_exit(0)
        };
        let matches = |re: &str| CommandExpect {
            stdout_matches: Some(chaosd::scenario::model::Pattern::new(re).unwrap()),
            ..expect_exit(0)
        };
        let hello = || sh("echo 'status: healthy (3 replicas)'");
        assert!(run(hello(), contains("healthy")).await.ok);
        assert_fails(
            &run(hello(), contains("degraded")).await,
            "stdout does not contain `degraded`",
        );
        assert!(run(hello(), matches(r"\(\d+ replicas\)")).await.ok);
        assert_fails(
            &run(hello(), matches(r"^ok$")).await,
            "stdout does not match `^ok$`",
        );
        // The exit code is judged first.
        assert_fails(
            &run(sh("echo healthy; exit 1"), contains("healthy")).await,
            "exit 1, expected 0",
        );
    }

    #[tokio::test]
    async fn a_large_output_does_not_block_the_child() {
        let expect = CommandExpect {
            stdout_contains: Some("aaaa".into()),
            ..expect_exit(0)
        };
        let outcome = run(sh("head -c 5000000 /dev/zero | tr '\\0' a"), expect).await;
        assert!(outcome.ok, "{outcome:?}");
    }

    #[tokio::test]
    async fn a_signalled_child_says_which_signal() {
        assert_fails(
            &run(sh("kill -TERM $$"), expect_exit(0)).await,
            "killed by SIGTERM",
        );
        assert_fails(
            &run(sh("kill -KILL $$"), expect_exit(0)).await,
            "killed by SIGKILL",
        );
    }

    #[tokio::test]
    async fn a_missing_program_cannot_run() {
        assert_fails(
            &run(argv(&["chaosd-no-such-program"]), expect_exit(0)).await,
            "cannot run `chaosd-no-such-program`: No such file or directory",
        );
        assert_fails(&run(argv(&[]), expect_exit(0)).await, "empty command");
    }

    #[tokio::test]
    async fn it_runs_in_its_cwd() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("marker-file"), "").unwrap();
        let probe = ProbeKind::Command(CommandProbe {
            run: sh("ls"),
            timeout: Duration::from_secs(10),
            cwd: dir.path().to_path_buf(),
            expect: CommandExpect {
                stdout_contains: Some("marker-file".into()),
                ..expect_exit(0)
            },
        });
        assert!(sample(&probe).await.ok);
    }

    #[tokio::test]
    async fn a_timeout_kills_and_reaps_the_child() {
        const ARGV: &[&str] = &["sleep", "3021"];
        let _cleanup = KillOnDrop(ARGV);
        let kind = probe(argv(ARGV), Duration::from_millis(500), expect_exit(0));
        let sampling = tokio::spawn(async move { sample(&kind).await });

        let pid = eventually_async(Duration::from_secs(5), "the probe's child shows up", || {
            pids_with_argv(ARGV).first().copied()
        })
        .await;

        let outcome = sampling.await.unwrap();
        assert_fails(&outcome, "timed out after 500ms");
        assert!(outcome.latency < Duration::from_secs(3), "{outcome:?}");
        // Reaped: not even a zombie is left.
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} is still in /proc: {:?}",
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
        );
    }

    #[tokio::test]
    async fn a_grandchild_holding_stdout_does_not_stall_the_sample() {
        // The shell exits at once; the background `sleep` keeps the stdout pipe open.
        const GRANDCHILD: &[&str] = &["sleep", "3022"];
        let _cleanup = KillOnDrop(GRANDCHILD);
        let expect = CommandExpect {
            stdout_contains: Some("started".into()),
            ..expect_exit(0)
        };
        let outcome = run(sh("sleep 3022 & echo started"), expect).await;
        assert!(outcome.ok, "{outcome:?}");
        assert!(outcome.latency < Duration::from_secs(2), "{outcome:?}");
    }

    #[tokio::test]
    async fn our_binaries_folder_comes_first_on_path() {
        let exe_dir: PathBuf = std::env::current_exe().unwrap().parent().unwrap().into();
        let expect = CommandExpect {
            stdout_contains: Some(exe_dir.to_string_lossy().into_owned()),
            ..expect_exit(0)
        };
        assert!(run(sh("echo $PATH"), expect).await.ok);
    }
}
