//! Setup: its commands (foreground, or background until cleanup) and their `ready` probes.

use std::time::Duration;

use chrono::Utc;
use tokio::time::{Instant, sleep_until};

use super::live::Phase;
use super::procs::{self, Background};
use super::run::{Flow, Run, file_name, later};
use crate::report::model::{Cause, CommandOutcome, Verdict};
use crate::scenario::format_duration;

impl Run {
    pub(super) async fn setup_phase(&mut self) -> Flow {
        if self.scenario.setup.is_empty() {
            return Flow::Continue;
        }
        self.live.phase(Phase::Setup, None);
        let scenario = self.scenario.clone();
        for (i, entry) in scenario.setup.iter().enumerate() {
            if self.abort.is_aborted() {
                self.note_abort();
                return Flow::Stop;
            }
            let log = self.report_dir.path().join(format!("setup-{}.log", i + 1));
            if entry.background {
                match Background::start(&entry.name, &entry.run, &scenario.base_dir, &log) {
                    Ok(bg) => {
                        self.event(
                            "setup_started",
                            format!("setup `{}` started in the background (pid {})", entry.name, bg.pid),
                            serde_json::json!({"name": entry.name, "pid": bg.pid, "command": entry.run.to_string()}),
                        );
                        self.record.setup.push(CommandOutcome {
                            name: entry.name.clone(),
                            command: entry.run.to_string(),
                            background: true,
                            ok: true,
                            started_at: bg.started_at,
                            ended_at: None,
                            exit_code: None,
                            detail: format!("pid {}, output in {}", bg.pid, file_name(&log)),
                        });
                        self.placed.backgrounds.push(bg);
                    }
                    Err(err) => {
                        return self.setup_failed(&entry.name, &entry.run.to_string(), true, err);
                    }
                }
            } else {
                self.event(
                    "setup_started",
                    format!("setup `{}` running", entry.name),
                    serde_json::json!({"name": entry.name, "command": entry.run.to_string()}),
                );
                let abort = self.abort.clone();
                let done =
                    procs::run_foreground(&entry.run, &scenario.base_dir, &log, None, async move {
                        abort.aborted().await
                    })
                    .await;
                let ok = done.ok();
                self.record
                    .setup
                    .push(done.outcome(&entry.name, &entry.run, &file_name(&log)));
                if self.abort.is_aborted() {
                    self.note_abort();
                    return Flow::Stop;
                }
                if !ok {
                    let reason = format!(
                        "setup `{}` failed ({}); see {}",
                        entry.name,
                        done.describe(),
                        log.display()
                    );
                    self.fail(Verdict::Error, Cause::Setup, reason);
                    return Flow::Stop;
                }
                self.event(
                    "setup_done",
                    format!("setup `{}` finished ({})", entry.name, done.describe()),
                    serde_json::json!({"name": entry.name}),
                );
            }
            // The background command just started, whose early failure ends the wait.
            let watched = entry.background.then(|| self.placed.backgrounds.len() - 1);
            if let Some(ready) = &entry.ready
                && self.wait_ready(&entry.name, ready, watched).await == Flow::Stop
            {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    fn setup_failed(&mut self, name: &str, command: &str, background: bool, err: String) -> Flow {
        self.record.setup.push(CommandOutcome {
            name: name.to_string(),
            command: command.to_string(),
            background,
            ok: false,
            started_at: Utc::now(),
            ended_at: Some(Utc::now()),
            exit_code: None,
            detail: err.clone(),
        });
        self.fail(
            Verdict::Error,
            Cause::Setup,
            format!("setup `{name}` failed: {err}"),
        );
        Flow::Stop
    }

    /// A `ready` probe must pass once within its `within`. When `background` (an index into
    /// `backgrounds`) exits with a failure first, the run fails at once with the end of its
    /// output: waiting on could only blame whatever else answers the probe. One that exits 0
    /// (a daemon that forked) is waited for as before.
    async fn wait_ready(
        &mut self,
        name: &str,
        ready: &crate::scenario::model::Ready,
        background: Option<usize>,
    ) -> Flow {
        let deadline = later(Instant::now(), ready.within);
        let mut last;
        loop {
            let sample = tokio::select! {
                () = self.abort.aborted() => {
                    self.note_abort();
                    return Flow::Stop;
                }
                s = crate::probe::sample(&ready.probe) => s,
            };
            self.note_background_exits();
            if let Some(reason) =
                background.and_then(|i| failed_before_ready(&self.placed.backgrounds[i]))
            {
                self.fail(
                    Verdict::Error,
                    Cause::Setup,
                    format!("setup `{name}` {reason}"),
                );
                return Flow::Stop;
            }
            if sample.ok {
                self.event(
                    "setup_ready",
                    format!("setup `{name}` is ready ({})", sample.reason),
                    serde_json::json!({"name": name}),
                );
                return Flow::Continue;
            }
            last = sample.reason;
            let next = Instant::now() + Duration::from_millis(100);
            if next > deadline {
                break;
            }
            tokio::select! {
                () = self.abort.aborted() => {
                    self.note_abort();
                    return Flow::Stop;
                }
                () = sleep_until(next) => {}
            }
        }
        let reason = format!(
            "setup `{name}` was not ready within {}: {last}",
            format_duration(ready.within)
        );
        self.fail(Verdict::Error, Cause::Setup, reason);
        Flow::Stop
    }

    pub(super) fn note_background_exits(&mut self) {
        let mut exits = Vec::new();
        for bg in &mut self.placed.backgrounds {
            if let Some((at, status)) = bg.poll_exit() {
                let how = match &status {
                    Ok(s) => procs::describe_status(*s),
                    Err(e) => e.clone(),
                };
                exits.push((bg.name.clone(), at, how, status.ok().and_then(|s| s.code())));
            }
        }
        for (name, at, how, code) in exits {
            if let Some(outcome) = self
                .record
                .setup
                .iter_mut()
                .find(|o| o.background && o.name == name)
            {
                outcome.ended_at = Some(at);
                outcome.exit_code = code;
            }
            self.event(
                "setup_exited",
                format!("background setup `{name}` exited early ({how})"),
                serde_json::json!({"name": name}),
            );
        }
    }
}

/// How a background setup command failed, if it has ended with a failure (not exit 0): its
/// status and the last lines of its output.
fn failed_before_ready(bg: &procs::Background) -> Option<String> {
    let (_, status) = bg.ended()?;
    let how = match status {
        Ok(status) if status.success() => return None,
        Ok(status) => procs::describe_status(*status),
        Err(err) => err.clone(),
    };
    let tail = procs::log_tail(&bg.log, TAIL_LINES);
    let output = if tail.is_empty() {
        "it printed nothing".to_string()
    } else {
        format!("its last output:\n  {}", tail.join("\n  "))
    };
    Some(format!(
        "exited ({how}) before it was ready; {output}\n(all of it in {})",
        bg.log.display()
    ))
}

/// How many lines of a failed setup command's output its error shows.
const TAIL_LINES: usize = 10;
