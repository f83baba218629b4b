//! The commands a run starts itself: `setup` (foreground, or background in its own process group)
//! and `teardown`. Every child is waited for, so none is left a zombie that a `process` probe or
//! selector could take for a running process; their output goes to a log in the report folder.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep, timeout};

use crate::child;
use crate::report::model::CommandOutcome;
use crate::scenario::model::Command;

/// How long a background group gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How a foreground command ended.
#[derive(Debug)]
pub struct Finished {
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub status: Result<ExitStatus, String>,
}

impl Finished {
    pub fn ok(&self) -> bool {
        matches!(&self.status, Ok(s) if s.success())
    }

    pub fn exit_code(&self) -> Option<i32> {
        self.status.as_ref().ok().and_then(|s| s.code())
    }

    /// The record of a foreground command for the report; its output went to `log`.
    pub fn outcome(&self, name: &str, run: &Command, log: &str) -> CommandOutcome {
        CommandOutcome {
            name: name.to_string(),
            command: run.to_string(),
            background: false,
            ok: self.ok(),
            started_at: self.started_at,
            ended_at: Some(self.ended_at),
            exit_code: self.exit_code(),
            detail: format!("{}, output in {log}", self.describe()),
        }
    }

    /// "exit 0", "exit 3", "killed by SIGINT", or why it could not run.
    pub fn describe(&self) -> String {
        match &self.status {
            Ok(status) => describe_status(*status),
            Err(err) => err.clone(),
        }
    }
}

pub fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        format!("exit {code}")
    } else if let Some(signal) = status.signal() {
        match Signal::try_from(signal) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("killed by signal {signal}"),
        }
    } else {
        "ended".to_string()
    }
}

fn open_log(log: &Path) -> std::io::Result<(Stdio, Stdio)> {
    let out = File::options().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    Ok((Stdio::from(out), Stdio::from(err)))
}

fn spawn(run: &Command, cwd: &Path, log: &Path, own_group: bool) -> Result<Child, String> {
    let argv = run.argv();
    let mut cmd = child::command(&argv, cwd);
    let (out, err) =
        open_log(log).map_err(|e| format!("cannot open log `{}`: {e}", log.display()))?;
    cmd.stdout(out).stderr(err);
    if own_group {
        cmd.process_group(0);
        // If chaosctl itself is killed (SIGKILL included), the kernel sends the leader SIGTERM, so
        // a background service does not outlive the run that started it.
        #[allow(unsafe_code)]
        // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which
        // is async-signal-safe; it touches no memory shared with the parent.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
    } else {
        // A foreground child shares our process group, so the terminal's Ctrl-C reaches it too;
        // if we are gone anyway it must not outlive the wait.
        cmd.kill_on_drop(true);
    }
    cmd.spawn()
        .map_err(|e| format!("cannot run `{}`: {e}", argv[0]))
}

/// Runs a foreground command to its end. `limit` bounds it; `interrupt` resolving means the run
/// was aborted: the child gets a moment to end on the terminal's signal, then SIGKILL.
pub async fn run_foreground(
    run: &Command,
    cwd: &Path,
    log: &Path,
    limit: Option<Duration>,
    interrupt: impl std::future::Future<Output = ()>,
) -> Finished {
    let started_at = Utc::now();
    let mut child = match spawn(run, cwd, log, false) {
        Ok(child) => child,
        Err(err) => {
            return Finished {
                started_at,
                ended_at: Utc::now(),
                status: Err(err),
            };
        }
    };
    let limit_sleep = async {
        match limit {
            Some(limit) => sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    let status = tokio::select! {
        status = child.wait() => status.map_err(|e| e.to_string()),
        () = interrupt => {
            // The terminal's Ctrl-C went to the child as well; give it a moment, then insist.
            match timeout(Duration::from_millis(500), child.wait()).await {
                Ok(status) => status.map_err(|e| e.to_string()),
                Err(_) => kill_and_reap(&mut child).await,
            }
        }
        () = limit_sleep => {
            let _ = kill_and_reap(&mut child).await;
            Err(format!("did not finish within {}", crate::scenario::format_duration(limit.unwrap_or_default())))
        }
    };
    Finished {
        started_at,
        ended_at: Utc::now(),
        status,
    }
}

async fn kill_and_reap(child: &mut Child) -> Result<ExitStatus, String> {
    let _ = child.start_kill();
    child.wait().await.map_err(|e| e.to_string())
}

/// When a background command's leader exited, and how.
pub type Exit = (DateTime<Utc>, Result<ExitStatus, String>);

/// A setup command kept running through the run, in a process group of its own.
pub struct Background {
    pub name: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub log: PathBuf,
    /// Resolves with the exit status when the leader ends (reaped by a task of ours).
    exited: Option<oneshot::Receiver<Exit>>,
    ended: Option<Exit>,
}

impl Background {
    pub fn start(name: &str, run: &Command, cwd: &Path, log: &Path) -> Result<Background, String> {
        let mut child = spawn(run, cwd, log, true)?;
        let pid = child.id().ok_or("exited before it could be tracked")?;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let status = child.wait().await.map_err(|e| e.to_string());
            let _ = tx.send((Utc::now(), status));
        });
        Ok(Background {
            name: name.to_string(),
            pid,
            started_at: Utc::now(),
            log: log.to_path_buf(),
            exited: Some(rx),
            ended: None,
        })
    }

    /// The leader's exit, if it has exited since the last call (reported once).
    pub fn poll_exit(&mut self) -> Option<Exit> {
        let rx = self.exited.as_mut()?;
        match rx.try_recv() {
            Ok(ended) => {
                self.exited = None;
                self.ended = Some(ended.clone());
                Some(ended)
            }
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => {
                self.exited = None;
                None
            }
        }
    }

    pub fn ended(&self) -> Option<&Exit> {
        self.ended.as_ref()
    }

    /// Stops the whole group: SIGTERM, then SIGKILL after [`STOP_GRACE`] if any member is left.
    /// Returns how it went, for the report.
    pub async fn stop(&mut self) -> String {
        let pgid = Pid::from_raw(self.pid as i32);
        if group_members(self.pid as i32).is_empty() {
            self.reap().await;
            return "had already exited".to_string();
        }
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if group_members(self.pid as i32).is_empty() {
                self.reap().await;
                return "stopped with SIGTERM".to_string();
            }
            sleep(Duration::from_millis(20)).await;
        }
        let _ = killpg(pgid, Signal::SIGKILL);
        self.reap().await;
        format!(
            "did not stop within {}s of SIGTERM; killed with SIGKILL",
            STOP_GRACE.as_secs()
        )
    }

    async fn reap(&mut self) {
        if let Some(rx) = self.exited.take()
            && let Ok(Ok(ended)) = timeout(Duration::from_secs(2), rx).await
        {
            self.ended.get_or_insert(ended);
        }
    }
}

/// The last `n` non-empty lines of a command's log (each at most 300 characters), for errors.
pub fn log_tail(log: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<String> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.chars().take(300).collect())
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// The live (not zombie) processes of a process group.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // Fields after the command name, which may itself hold spaces and parentheses.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().unwrap_or("Z");
            let _ppid = fields.next();
            let pgrp = fields.next().and_then(|f| f.parse::<i32>().ok());
            pgrp == Some(pgid) && state != "Z" && state != "X"
        })
        .collect()
}
