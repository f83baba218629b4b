//! `command` probes: run a program, judge its exit and its stdout.
//!
//! The child stays in our process group on purpose: the terminal's Ctrl-C reaches it too. On
//! timeout it gets SIGKILL and is reaped before the sample ends, so no probe leaves a zombie. If
//! the sample itself is dropped half-way, `kill_on_drop` kills it and tokio reaps it.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Verdict, describe_io, fmt_latency, timed_out, truncate};
use crate::child;
use crate::spec::{CommandProbe, MAX_HOLD};

/// How much of stdout is kept for the expect rules; the rest is read and dropped, so a chatty
/// child never blocks on a full pipe.
pub const STDOUT_CAP: usize = 1024 * 1024;
/// How much of stderr is kept, to quote its last line in a failure.
const STDERR_CAP: usize = 64 * 1024;
/// After the child exits, how long its pipes may stay open (a background grandchild holding
/// them) before we judge on what was read.
const DRAIN_GRACE: Duration = Duration::from_millis(250);

pub(crate) async fn sample(probe: &CommandProbe) -> Verdict {
    let start = Instant::now();
    // Bounded, so a huge timeout from a request cannot overflow the clock.
    let deadline = start + probe.timeout.min(MAX_HOLD);
    let argv = probe.run.argv();
    let Some(program) = argv.first() else {
        return Err("empty command".into());
    };
    let mut cmd = child::command(&argv, &probe.cwd);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|err| format!("cannot run `{program}`: {}", describe_io(&err)))?;

    let stdout = Capture::start(child.stdout.take(), STDOUT_CAP);
    let stderr = Capture::start(child.stderr.take(), STDERR_CAP);

    let status = match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(err)) => {
            // Should not happen; make sure the child is gone all the same.
            let _ = child.kill().await;
            return Err(format!(
                "cannot wait for `{program}`: {}",
                describe_io(&err)
            ));
        }
        Err(_) => {
            // SIGKILL, then wait: reaped before we return.
            let _ = child.kill().await;
            stdout.abort();
            stderr.abort();
            return Err(timed_out(probe.timeout));
        }
    };
    let latency = start.elapsed();
    let drain_until = deadline.min(Instant::now() + DRAIN_GRACE);
    let stdout = stdout.finish(drain_until).await;
    let stderr = stderr.finish(drain_until).await;
    judge(probe, status, &stdout, &stderr, latency)
}

fn judge(
    probe: &CommandProbe,
    status: ExitStatus,
    stdout: &[u8],
    stderr: &[u8],
    latency: Duration,
) -> Verdict {
    let expect = &probe.expect;
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => return Err(format!("killed by {}", signal_name(signal))),
        (None, None) => return Err(format!("ended with {status}")),
    };
    if code != expect.exit {
        let mut reason = format!("exit {code}, expected {}", expect.exit);
        if let Some(line) = last_line(stderr) {
            reason.push_str(": ");
            reason.push_str(&truncate(&line, 120));
        }
        return Err(reason);
    }
    if expect.stdout_contains.is_some() || expect.stdout_matches.is_some() {
        let stdout = String::from_utf8_lossy(stdout);
        if let Some(needle) = &expect.stdout_contains
            && !stdout.contains(needle.as_str())
        {
            return Err(format!("stdout does not contain `{needle}`"));
        }
        if let Some(re) = &expect.stdout_matches
            && !re.is_match(&stdout)
        {
            return Err(format!("stdout does not match `{re}`"));
        }
    }
    Ok(format!("exit {code} in {}", fmt_latency(latency)))
}

/// `SIGINT`, or the number when it has no name.
fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(signal) => signal.as_str().to_string(),
        Err(_) => format!("signal {signal}"),
    }
}

fn last_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .map(str::to_string)
}

/// A pipe read to its end on its own task, keeping the first `cap` bytes. What was read stays
/// available even if the reading is cut short.
struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    task: Option<JoinHandle<()>>,
}

impl Capture {
    fn start(pipe: Option<impl AsyncRead + Unpin + Send + 'static>, cap: usize) -> Capture {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let task = pipe.map(|mut pipe| {
            let buf = Arc::clone(&buf);
            tokio::spawn(async move {
                let mut chunk = vec![0u8; 16 * 1024];
                loop {
                    match pipe.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut buf = buf.lock().unwrap_or_else(|e| e.into_inner());
                            let room = cap.saturating_sub(buf.len());
                            buf.extend_from_slice(&chunk[..n.min(room)]);
                        }
                    }
                }
            })
        });
        Capture { buf, task }
    }

    /// Waits for the end of the pipe until `until`, then returns what was read.
    async fn finish(mut self, until: Instant) -> Vec<u8> {
        if let Some(task) = self.task.as_mut() {
            let _ = tokio::time::timeout_at(until, task).await;
        }
        self.abort();
        std::mem::take(&mut *self.buf.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn abort(&self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_have_their_names() {
        assert_eq!(signal_name(libc::SIGINT), "SIGINT");
        assert_eq!(signal_name(libc::SIGKILL), "SIGKILL");
    }

    #[test]
    fn last_line_skips_blank_lines() {
        assert_eq!(last_line(b"a\nboom\n\n").as_deref(), Some("boom"));
        assert_eq!(last_line(b"  \n"), None);
    }
}
