//! How a run shows itself: a live status line on a terminal, plain lines in logs, JSON lines for
//! machines. Progress goes to stderr (text) or stdout (json); the final summary is printed by
//! the `run` command.
//!
//! Every line chaosctl prints goes through [`write_out`] and [`write_err`] (the `out!`,
//! `outln!`, `err!` and `errln!` macros), never `println!`, which panics on a closed pipe: a
//! reader that goes away (`chaosctl runs | head -1`, a closed terminal) only stops what it sees.
//! Nothing else depends on it, least of all a run's reverts and its report.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use chaosd::engine::live::{LiveStatus, Observer, Phase};
use chaosd::report::model::{Event, ProbeRole};
use chrono::{DateTime, Utc};

use crate::args::Output;

/// `print!` that survives a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write_out(format_args!($($arg)*)) };
}

/// `println!` that survives a closed stdout.
macro_rules! outln {
    () => { $crate::output::write_out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprint!` that survives a closed stderr.
macro_rules! err {
    ($($arg:tt)*) => { $crate::output::write_err(format_args!($($arg)*)) };
}

/// `eprintln!` that survives a closed stderr.
macro_rules! errln {
    () => { $crate::output::write_err(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write_err(format_args!("{}\n", format_args!($($arg)*))) };
}

/// The first error writing to stdout other than a closed pipe (a full disk behind `>`), which
/// the command's exit code must not hide.
static STDOUT_FAILED: Mutex<Option<String>> = Mutex::new(None);
/// Set once stdout's reader has gone; later writes are not tried.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes to stdout and flushes. A closed pipe (EPIPE) is not an error: the reader has what it
/// wanted. Any other failure is kept for [`stdout_failure`].
pub fn write_out(args: fmt::Arguments) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_fmt(args).and_then(|()| out.flush()) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            let mut failed = STDOUT_FAILED.lock().unwrap_or_else(|e| e.into_inner());
            failed.get_or_insert_with(|| err.to_string());
        }
    }
}

/// Writes to stderr; when it is gone there is nobody left to tell.
pub fn write_err(args: fmt::Arguments) {
    if STDERR_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    // Formatted first, then written at once: stderr is unbuffered, and `write_fmt` would make a
    // system call per piece of the line (and let another writer's output land inside it).
    let text = fmt::format(args);
    if std::io::stderr().lock().write_all(text.as_bytes()).is_err() {
        STDERR_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Why stdout could not be written, when that was not a closed pipe.
pub fn stdout_failure() -> Option<String> {
    STDOUT_FAILED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

pub fn observer(output: Output) -> Box<dyn Observer> {
    match output {
        Output::Json => Box::new(JsonLines),
        Output::Text if std::io::stderr().is_terminal() => Box::new(Terminal::default()),
        Output::Text => Box::new(Plain::default()),
    }
}

/// `+12.3s` since the first event.
fn offset(start: &Mutex<Option<DateTime<Utc>>>, at: DateTime<Utc>) -> String {
    let mut start = start.lock().expect("offset lock");
    let start = *start.get_or_insert(at);
    let ms = (at - start).num_milliseconds().max(0);
    format!("+{}.{}s", ms / 1000, (ms % 1000) / 100)
}

/// One line per event, for logs and pipes.
#[derive(Default)]
pub struct Plain {
    start: Mutex<Option<DateTime<Utc>>>,
}

impl Observer for Plain {
    fn event(&self, event: &Event) {
        errln!("[{:>7}] {}", offset(&self.start, event.at), event.message);
    }
}

/// Events as lines above a status line that is redrawn in place.
#[derive(Default)]
pub struct Terminal {
    start: Mutex<Option<DateTime<Utc>>>,
    /// The status line currently drawn, to redraw after an event line.
    line: Mutex<String>,
}

impl Observer for Terminal {
    fn event(&self, event: &Event) {
        let line = self.line.lock().expect("status lock");
        let text = format!(
            "\r\x1b[K[{:>7}] {}\n{}",
            offset(&self.start, event.at),
            event.message,
            line
        );
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }

    fn status(&self, status: &LiveStatus) {
        let mut line = self.line.lock().expect("status lock");
        *line = if status.phase == Phase::Done {
            String::new()
        } else {
            truncate(&status_line(status), terminal_width())
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
    }

    fn wants_status(&self) -> bool {
        true
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = write!(std::io::stderr(), "\r\x1b[K");
    }
}

/// `step 1/2 kill workers · held, 12s left · health 4/5 ✓ · workers 5/5 ✓`
pub fn status_line(status: &LiveStatus) -> String {
    let mut parts = Vec::new();
    match &status.step {
        // The monkey's faults have no total.
        Some((_, 0, name)) => parts.push(name.clone()),
        Some((index, total, name)) => parts.push(format!("step {}/{total} {name}", index + 1)),
        None => {}
    }
    match (status.fault_remaining, status.next_fault) {
        (Some(left), _) => parts.push(format!(
            "fault held, {}s left",
            left.as_secs_f64().ceil() as u64
        )),
        (None, Some(next)) => parts.push(next_fault(next, Utc::now())),
        (None, None) => parts.push(status.phase.as_str().to_string()),
    }
    if let Some(prompt) = &status.prompt {
        parts.push(format!(
            "“{prompt}” (y/n, or `chaosctl confirm|refuse RUN`)"
        ));
    }
    for p in &status.probes {
        let mark = match p.last_ok {
            Some(true) => "✓",
            Some(false) => "✗",
            None => "…",
        };
        let role = if p.role == ProbeRole::Guardrail {
            "guard "
        } else {
            ""
        };
        parts.push(format!("{role}{} {}/{} {mark}", p.name, p.passed, p.total));
    }
    parts.join(" · ")
}

/// `next fault at 14:05:12 UTC (in 2m 3s)`
fn next_fault(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (at - now).num_seconds().max(0);
    let left = match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        _ => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
    };
    format!("next fault at {} UTC (in {left})", at.format("%H:%M:%S"))
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(120)
}

fn truncate(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Every event as a JSON line on stdout, then the result (printed by `run`).
pub struct JsonLines;

impl Observer for JsonLines {
    fn event(&self, event: &Event) {
        let mut line = serde_json::json!({"type": "event"});
        if let (Some(obj), Ok(serde_json::Value::Object(ev))) =
            (line.as_object_mut(), serde_json::to_value(event))
        {
            obj.extend(ev);
        }
        outln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chaosd::engine::live::ProbeLine;

    use super::*;

    #[test]
    fn the_status_line_shows_step_countdown_and_shares() {
        let status = LiveStatus {
            phase: Phase::Step,
            step: Some((0, 2, "kill workers".into())),
            fault_remaining: Some(Duration::from_millis(11_200)),
            next_fault: None,
            prompt: None,
            probes: vec![ProbeLine {
                name: "health".into(),
                host: "local".into(),
                role: ProbeRole::SteadyState,
                passed: 4,
                total: 5,
                last_ok: Some(false),
            }],
        };
        assert_eq!(
            status_line(&status),
            "step 1/2 kill workers · fault held, 12s left · health 4/5 ✗"
        );
        assert_eq!(truncate("abcdef", 4), "abc…");
    }

    #[test]
    fn the_monkey_shows_its_next_fault() {
        let now = DateTime::parse_from_rfc3339("2026-03-23T14:03:09Z")
            .unwrap()
            .to_utc();
        let at = now + chrono::Duration::seconds(123);
        assert_eq!(next_fault(at, now), "next fault at 14:05:12 UTC (in 2m 3s)");
        let status = LiveStatus {
            phase: Phase::Waiting,
            step: None,
            fault_remaining: None,
            next_fault: Some(Utc::now() + chrono::Duration::seconds(30)),
            prompt: None,
            probes: Vec::new(),
        };
        assert!(
            status_line(&status).starts_with("next fault at "),
            "{}",
            status_line(&status)
        );
        let status = LiveStatus {
            phase: Phase::AfterCheck,
            step: Some((2, 0, "monkey #3 on local".into())),
            fault_remaining: None,
            next_fault: None,
            prompt: None,
            probes: Vec::new(),
        };
        assert_eq!(status_line(&status), "monkey #3 on local · after-check");
    }
}
