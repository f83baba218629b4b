//! `load` probes: steady state measured the way users hit a service, open loop.
//!
//! One sample sends `rate × span` requests, the i-th at `start + i / rate`, whether or not the
//! earlier ones have been answered (a closed-loop client, which waits for each answer, sends
//! fewer requests exactly when the service is failing, and so hides failures). Each request is an
//! `http` probe of its own: a fresh connection, judged on `expect`, failed after `timeout`. The
//! sample ends when the last request is answered or timed out, so it lasts `span` plus at most
//! one `timeout`. The engine does not wait for it: it starts the next burst `span` after this one
//! started (see `chaosd::engine::monitor`), so the traffic has no gap even while answers hang.
//!
//! The sample passes when at least `success` percent of its requests succeeded. Its reason gives
//! the figures a report needs: `19/20 ok (95.0%) at 20.0/s, p50 3 ms, p99 12 ms; 1 failed
//! (sent +0.45s, last failed +0.45s): 1× connection refused`. Latency percentiles are over the
//! successful requests; the offsets, from the sample's start, are when the first and last failed
//! requests were sent and when the last failure came (an answer like a 503, or a timeout).
//!
//! **Bounded:** requests go only to the URL given (no redirects are followed), at most
//! [`MAX_IN_FLIGHT`] are outstanding (one due beyond that counts as failed, not sent), and the
//! count per sample is bounded by validation (rate at most 1000/s, 10 000 requests a sample).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

use super::{Verdict, fmt_latency, http};
use crate::spec::{HttpProbe, LoadProbe};

/// Requests outstanding at once, at most.
pub const MAX_IN_FLIGHT: usize = 512;

/// What became of one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shot {
    /// When it was due, from the sample's start.
    pub sent: Duration,
    /// From sending to the answer or the failure.
    pub took: Duration,
    /// Why it failed; `None` when it succeeded.
    pub failure: Option<String>,
}

/// The most requests per second, and per sample, an agent sends whoever asks (the scenario's
/// validation has the same limits; this guards the agent's API).
pub const MAX_RATE: f64 = 1000.0;
pub const MAX_REQUESTS: usize = 10_000;

pub(crate) async fn sample(probe: &LoadProbe) -> Verdict {
    if !(probe.rate > 0.0 && probe.rate <= MAX_RATE) {
        return Err(format!(
            "rate {}/s is outside 0-{MAX_RATE}/s; nothing sent",
            probe.rate
        ));
    }
    let n = probe.requests();
    if n > MAX_REQUESTS {
        return Err(format!(
            "{n} requests a sample is more than {MAX_REQUESTS}; nothing sent"
        ));
    }
    let interval = Duration::from_secs_f64(1.0 / probe.rate);
    let one = Arc::new(HttpProbe {
        url: probe.url.clone(),
        method: probe.method.clone(),
        headers: probe.headers.clone(),
        body: probe.body.clone(),
        timeout: probe.timeout,
        expect: probe.expect.clone(),
    });
    let start = Instant::now();
    let mut shots = Vec::with_capacity(n);
    // Dropping the set (a cancelled sample) aborts every request still under way.
    let mut in_flight = JoinSet::new();
    for i in 0..n {
        let due = start + interval.mul_f64(i as f64);
        sleep_until(due).await;
        while let Some(done) = in_flight.try_join_next() {
            shots.extend(done.ok());
        }
        let sent = due - start;
        if in_flight.len() >= MAX_IN_FLIGHT {
            shots.push(Shot {
                sent,
                took: Duration::ZERO,
                failure: Some(format!("not sent: {MAX_IN_FLIGHT} requests outstanding")),
            });
            continue;
        }
        let one = one.clone();
        in_flight.spawn(async move {
            let began = Instant::now();
            let failure = http::sample(&one).await.err();
            Shot {
                sent,
                took: began.elapsed(),
                failure,
            }
        });
    }
    while let Some(done) = in_flight.join_next().await {
        shots.extend(done.ok());
    }
    shots.sort_by_key(|s| s.sent);
    judge(&shots, n, interval, probe.success)
}

/// The sample's verdict and reason from its requests. `n` is how many were due (a request whose
/// task panicked is missing from `shots` and counts as failed).
pub(crate) fn judge(shots: &[Shot], n: usize, interval: Duration, success: f64) -> Verdict {
    let mut latencies: Vec<Duration> = shots
        .iter()
        .filter(|s| s.failure.is_none())
        .map(|s| s.took)
        .collect();
    latencies.sort();
    let ok = latencies.len();
    let share = if n == 0 {
        100.0
    } else {
        ok as f64 * 100.0 / n as f64
    };
    // The rate the requests were due at, over the span they covered.
    let span = interval.mul_f64(n as f64);
    let rate = if span.is_zero() {
        0.0
    } else {
        n as f64 / span.as_secs_f64()
    };
    let mut reason = format!("{ok}/{n} ok ({share:.1}%) at {rate:.1}/s");
    if ok > 0 {
        reason.push_str(&format!(
            ", p50 {}, p99 {}",
            fmt_latency(percentile(&latencies, 50.0)),
            fmt_latency(percentile(&latencies, 99.0))
        ));
    }
    let failed: Vec<&Shot> = shots.iter().filter(|s| s.failure.is_some()).collect();
    let missing = n.saturating_sub(shots.len());
    if !failed.is_empty() || missing > 0 {
        let mut causes: BTreeMap<&str, usize> = BTreeMap::new();
        for shot in &failed {
            if let Some(cause) = &shot.failure {
                *causes.entry(cause.as_str()).or_default() += 1;
            }
        }
        if missing > 0 {
            causes.insert("lost", missing);
        }
        let mut causes: Vec<(&str, usize)> = causes.into_iter().collect();
        causes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let listed: Vec<String> = causes
            .iter()
            .take(3)
            .map(|(cause, count)| format!("{count}× {cause}"))
            .collect();
        let last_answer = failed.iter().map(|s| s.sent + s.took).max();
        let when = match (failed.first(), failed.last(), last_answer) {
            (Some(first), Some(last), Some(answer)) if first.sent == last.sent => format!(
                " (sent +{:.2}s, last failed +{:.2}s)",
                first.sent.as_secs_f64(),
                answer.as_secs_f64()
            ),
            (Some(first), Some(last), Some(answer)) => format!(
                " (sent +{:.2}s to +{:.2}s, last failed +{:.2}s)",
                first.sent.as_secs_f64(),
                last.sent.as_secs_f64(),
                answer.as_secs_f64()
            ),
            _ => String::new(),
        };
        reason.push_str(&format!(
            "; {} failed{when}: {}",
            failed.len() + missing,
            listed.join(", ")
        ));
    }
    if share + 1e-9 >= success {
        Ok(reason)
    } else {
        Err(format!("{reason}; below {success}%"))
    }
}

/// Nearest rank: the smallest value with at least `p` percent of `sorted` at or below it.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(sent_ms: u64, latency_ms: u64) -> Shot {
        Shot {
            sent: Duration::from_millis(sent_ms),
            took: Duration::from_millis(latency_ms),
            failure: None,
        }
    }

    fn failed(sent_ms: u64, cause: &str) -> Shot {
        Shot {
            sent: Duration::from_millis(sent_ms),
            took: Duration::from_millis(if cause.contains("503") { 3000 } else { 1 }),
            failure: Some(cause.into()),
        }
    }

    #[tokio::test]
    async fn out_of_bounds_loads_send_nothing() {
        let probe = |rate: f64, span_s: u64| LoadProbe {
            url: "http://127.0.0.1:9/".into(),
            method: "GET".into(),
            headers: BTreeMap::new(),
            body: None,
            rate,
            span: Duration::from_secs(span_s),
            timeout: Duration::from_secs(1),
            expect: Default::default(),
            success: 100.0,
        };
        for (rate, span) in [
            (0.0, 1),
            (f64::NAN, 1),
            (-1.0, 1),
            (5000.0, 1),
            (1000.0, 60),
        ] {
            let verdict = sample(&probe(rate, span)).await;
            assert!(
                matches!(&verdict, Err(r) if r.ends_with("nothing sent")),
                "{rate}/s for {span}s: {verdict:?}"
            );
        }
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&sorted[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn all_answered_passes_with_rate_and_percentiles() {
        let shots: Vec<Shot> = (0..4).map(|i| ok(i * 250, 2 + i)).collect();
        let verdict = judge(&shots, 4, Duration::from_millis(250), 100.0);
        assert_eq!(
            verdict,
            Ok("4/4 ok (100.0%) at 4.0/s, p50 3 ms, p99 5 ms".into())
        );
    }

    #[test]
    fn failures_are_counted_grouped_and_placed_in_time() {
        let shots = vec![
            ok(0, 2),
            failed(250, "status 503, expected 2xx"),
            failed(500, "connection refused"),
            failed(750, "status 503, expected 2xx"),
        ];
        let verdict = judge(&shots, 4, Duration::from_millis(250), 50.0);
        assert_eq!(
            verdict,
            Err(
                "1/4 ok (25.0%) at 4.0/s, p50 2 ms, p99 2 ms; 3 failed (sent +0.25s to +0.75s, \
                 last failed +3.75s): 2× status 503, expected 2xx, 1× connection refused; \
                 below 50%"
                    .into()
            )
        );
    }

    #[test]
    fn the_success_share_is_the_bar() {
        let mut shots: Vec<Shot> = (0..19).map(|i| ok(i * 50, 1)).collect();
        shots.push(failed(950, "connection reset"));
        assert!(judge(&shots, 20, Duration::from_millis(50), 95.0).is_ok());
        assert!(judge(&shots, 20, Duration::from_millis(50), 96.0).is_err());
    }

    #[test]
    fn a_lost_request_counts_as_failed() {
        let shots = vec![ok(0, 1)];
        let verdict = judge(&shots, 2, Duration::from_millis(500), 100.0);
        assert!(matches!(verdict, Err(r) if r.contains("1/2 ok") && r.contains("1× lost")));
    }
}
