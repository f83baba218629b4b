//! Probes: one sample of a steady-state check or guardrail, as a pass/fail with a latency and a
//! short human reason. Each kind lives in its own module; [`sample`] is the only entry point.
//!
//! Windows, tolerance and scheduling belong to the run engine: this module takes one sample and
//! forgets it.
//!
//! **Invariant:** a sample never panics and never outlives its kind's timeout by more than the
//! time needed to clean up (a timed-out command is killed with SIGKILL and reaped before
//! [`sample`] returns).

use std::time::Duration;

use tokio::time::Instant;

use crate::spec::ProbeKind;

pub mod command;
pub mod http;
pub mod load;
pub mod process;
pub mod prometheus;
pub mod tcp;

pub use load::LoadFigures;

/// The outcome of one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleOutcome {
    pub ok: bool,
    /// How long the sample took, from start to verdict (for a `load` burst: the burst's length,
    /// not a request's latency; those are in `load`).
    pub latency: Duration,
    /// Short and human: `200 in 12 ms`, `connection refused`, `exit 1, expected 0`.
    pub reason: String,
    /// A `load` burst's figures per request.
    pub load: Option<LoadFigures>,
}

/// What a kind's module decides: `Ok(reason)` passes, `Err(reason)` fails.
pub(crate) type Verdict = Result<String, String>;

/// Slack past a kind's own timeout before the outer guard gives up on it. Kinds enforce their
/// timeout themselves; this only protects the caller from a bug or a stuck resolver.
const GUARD_SLACK: Duration = Duration::from_secs(2);

/// Takes one sample. Never panics, never hangs past the kind's timeout (+ a little for cleanup).
pub async fn sample(kind: &ProbeKind) -> SampleOutcome {
    let start = Instant::now();
    let mut load_figures = None;
    let verdict = match kind {
        ProbeKind::Http(p) => guard(p.timeout, http::sample(p)).await,
        ProbeKind::Tcp(p) => guard(p.timeout, tcp::sample(p)).await,
        ProbeKind::Command(p) => guard(p.timeout, command::sample(p)).await,
        ProbeKind::Process(p) => process::sample(p).await,
        ProbeKind::Prometheus(p) => guard(p.timeout, prometheus::sample(p)).await,
        ProbeKind::Load(p) => {
            guard(p.span + p.timeout, async {
                let (verdict, figures) = load::sample(p).await;
                load_figures = figures;
                verdict
            })
            .await
        }
    };
    let latency = start.elapsed();
    match verdict {
        Ok(reason) => SampleOutcome {
            ok: true,
            latency,
            reason,
            load: load_figures.clone(),
        },
        Err(reason) => SampleOutcome {
            ok: false,
            latency,
            reason,
            load: load_figures,
        },
    }
}

/// What a probe expects of a sample, in the scenario's words, for reports that say what steady
/// meant: `GET http://127.0.0.1:8080/: status 2xx, max_latency 300ms`.
pub fn describe_expect(kind: &ProbeKind) -> String {
    fn http_expect(expect: &crate::spec::HttpExpect) -> String {
        let mut parts = vec![format!(
            "status {}",
            http::describe_statuses(&expect.status)
        )];
        if let Some(needle) = &expect.body_contains {
            parts.push(format!("body contains `{needle}`"));
        }
        if let Some(re) = &expect.body_matches {
            parts.push(format!("body matches `{re}`"));
        }
        if let Some(max) = expect.max_latency {
            parts.push(format!("max_latency {}", fmt_duration(max)));
        }
        parts.join(", ")
    }
    match kind {
        ProbeKind::Http(p) => format!("{} {}: {}", p.method, p.url, http_expect(&p.expect)),
        ProbeKind::Load(p) => format!(
            "{} {} at {}/s for {}: {}% of requests with {}",
            p.method,
            p.url,
            p.rate,
            fmt_duration(p.span),
            p.success,
            http_expect(&p.expect)
        ),
        ProbeKind::Tcp(p) => format!("a connection to {} opens", p.address),
        ProbeKind::Command(p) => {
            let mut text = format!("`{}` exits {}", p.run, p.expect.exit);
            if let Some(needle) = &p.expect.stdout_contains {
                text.push_str(&format!(", stdout contains `{needle}`"));
            }
            if let Some(re) = &p.expect.stdout_matches {
                text.push_str(&format!(", stdout matches `{re}`"));
            }
            text
        }
        ProbeKind::Process(p) => match p.max {
            Some(max) => format!("{} to {max} processes with {}", p.min, p.selector),
            None => format!("at least {} processes with {}", p.min, p.selector),
        },
        ProbeKind::Prometheus(p) => {
            let mut bounds = Vec::new();
            if let Some(below) = p.below {
                bounds.push(format!("below {below}"));
            }
            if let Some(above) = p.above {
                bounds.push(format!("above {above}"));
            }
            format!("`{}` on {} is {}", p.query, p.url, bounds.join(" and "))
        }
    }
}

async fn guard(timeout: Duration, work: impl Future<Output = Verdict>) -> Verdict {
    match tokio::time::timeout(timeout + GUARD_SLACK, work).await {
        Ok(verdict) => verdict,
        Err(_) => Err(timed_out(timeout)),
    }
}

/// `timed out after 2s`.
pub(crate) fn timed_out(timeout: Duration) -> String {
    format!("timed out after {}", fmt_duration(timeout))
}

/// A setting as the user would write it: `2s`, `1.5s`, `250ms`, `2m`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 && !d.is_zero() {
        return format!("{}us", d.as_micros());
    }
    if ms.is_multiple_of(60_000) && ms >= 60_000 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// A measured latency: `12 ms`, `1.53 s`.
pub(crate) fn fmt_latency(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 10_000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// An error and its causes, as one short line: the innermost I/O error when there is one
/// (`connection refused`), otherwise the innermost message.
pub(crate) fn describe_error(err: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = err;
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // A custom I/O error (rustls wraps its own this way) is best described by its inner
            // error; an OS one by its kind.
            if io.get_ref().is_none() {
                return describe_io(io);
            }
        }
        innermost = e;
        current = e.source();
    }
    strip_os_error(&innermost.to_string())
}

/// `connection refused`, `No such file or directory`, without the `(os error N)` tail.
pub(crate) fn describe_io(err: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match err.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        ConnectionAborted => "connection aborted".into(),
        TimedOut => "connection timed out".into(),
        AddrNotAvailable => "address not available".into(),
        HostUnreachable => "host unreachable".into(),
        NetworkUnreachable => "network unreachable".into(),
        _ => strip_os_error(&err.to_string()),
    }
}

fn strip_os_error(message: &str) -> String {
    match message.rfind(" (os error ") {
        Some(i) if message.ends_with(')') => message[..i].to_string(),
        _ => message.to_string(),
    }
}

/// `n thing` or `n things`.
pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Cuts `text` to at most `max` characters, marking the cut with `…`.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((i, _)) => format!("{}…", &text[..i]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_settings() {
        assert_eq!(fmt_duration(Duration::from_secs(2)), "2s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_secs(120)), "2m");
        assert_eq!(fmt_latency(Duration::from_millis(12)), "12 ms");
    }

    #[test]
    fn io_errors_lose_their_os_error_tail() {
        let err = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(describe_io(&err), "No such file or directory");
        let err = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(describe_error(&err), "connection refused");
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
