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

use serde::{Deserialize, Serialize};

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
    /// The status the server answered with, if it answered.
    pub status: Option<u16>,
    /// Why it failed; `None` when it succeeded.
    pub failure: Option<String>,
}

/// Upper bounds (ms) of the buckets that successful requests' latencies are counted in: the same
/// as chaosd's probe latency histogram, so that bursts add up to it exactly.
pub const LATENCY_BUCKETS_MS: [f64; 13] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// A burst's figures per request: what users of the service went through, as opposed to how
/// long the burst took.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadFigures {
    /// Requests due in the burst (one not sent because too many were outstanding counts, as
    /// failed).
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// Latency percentiles (nearest rank) and maximum over the successful requests; `None`
    /// when none succeeded.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// How requests ended: the HTTP status (`200`, `502`) when the server answered, else the
    /// failure (`connection refused`, `timed out after 1s`).
    pub statuses: BTreeMap<String, u64>,
    /// Successful requests per latency bucket of [`LATENCY_BUCKETS_MS`] (not cumulative), with
    /// one more entry last for those slower than the largest bound.
    pub latency_buckets: Vec<u64>,
    /// The successful requests' latencies added up, in ms (a histogram's `_sum`).
    pub latency_sum_ms: f64,
}

/// The most requests per second, and per sample, an agent sends whoever asks (the scenario's
/// validation has the same limits; this guards the agent's API).
pub const MAX_RATE: f64 = 1000.0;
pub const MAX_REQUESTS: usize = 10_000;

pub(crate) async fn sample(probe: &LoadProbe) -> (Verdict, Option<LoadFigures>) {
    if !(probe.rate > 0.0 && probe.rate <= MAX_RATE) {
        let reason = format!(
            "rate {}/s is outside 0-{MAX_RATE}/s; nothing sent",
            probe.rate
        );
        return (Err(reason), None);
    }
    let n = probe.requests();
    if n > MAX_REQUESTS {
        let reason = format!("{n} requests a sample is more than {MAX_REQUESTS}; nothing sent");
        return (Err(reason), None);
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
                status: None,
                failure: Some(format!("not sent: {MAX_IN_FLIGHT} requests outstanding")),
            });
            continue;
        }
        let one = one.clone();
        in_flight.spawn(async move {
            let began = Instant::now();
            let (status, verdict) = http::judged(&one).await;
            Shot {
                sent,
                took: began.elapsed(),
                status,
                failure: verdict.err(),
            }
        });
    }
    while let Some(done) = in_flight.join_next().await {
        shots.extend(done.ok());
    }
    shots.sort_by_key(|s| s.sent);
    (
        judge(&shots, n, interval, probe.success),
        Some(figures(&shots, n)),
    )
}

/// The successful requests' latencies, fastest first.
fn ok_latencies(shots: &[Shot]) -> Vec<Duration> {
    let mut latencies: Vec<Duration> = shots
        .iter()
        .filter(|s| s.failure.is_none())
        .map(|s| s.took)
        .collect();
    latencies.sort();
    latencies
}

/// The burst's figures from its requests; `n` were due (a missing one counts as failed, `lost`).
pub(crate) fn figures(shots: &[Shot], n: usize) -> LoadFigures {
    let latencies = ok_latencies(shots);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    for shot in shots {
        let key = match (shot.status, &shot.failure) {
            (Some(status), None) => status.to_string(),
            (Some(status), Some(failure)) => failed_answer(status, failure),
            (None, Some(failure)) => failure.clone(),
            (None, None) => "ok".to_string(),
        };
        *statuses.entry(key).or_default() += 1;
    }
    let missing = n.saturating_sub(shots.len()) as u64;
    if missing > 0 {
        statuses.insert("lost".to_string(), missing);
    }
    let mut latency_buckets = vec![0; LATENCY_BUCKETS_MS.len() + 1];
    for latency in &latencies {
        let i = LATENCY_BUCKETS_MS
            .iter()
            .position(|bound| ms(*latency) <= *bound)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        latency_buckets[i] += 1;
    }
    let ok = latencies.len() as u64;
    LoadFigures {
        sent: n as u64,
        ok,
        failed: (n as u64).saturating_sub(ok),
        p50_ms: (!latencies.is_empty()).then(|| ms(percentile(&latencies, 50.0))),
        p99_ms: (!latencies.is_empty()).then(|| ms(percentile(&latencies, 99.0))),
        max_ms: latencies.last().map(|d| ms(*d)),
        statuses,
        latency_buckets,
        latency_sum_ms: latencies.iter().map(|d| ms(*d)).sum(),
    }
}

/// The sample's verdict and reason from its requests. `n` is how many were due (a request whose
/// task panicked is missing from `shots` and counts as failed).
pub(crate) fn judge(shots: &[Shot], n: usize, interval: Duration, success: f64) -> Verdict {
    let latencies = ok_latencies(shots);
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

/// How a request that got an answer failed, as a count's key: the status alone when the status
/// was wrong (`503`), else the status and what was wrong with the answer (`200, too slow`), so
/// that a table of statuses never shows a failed request as a plain `200`.
fn failed_answer(status: u16, failure: &str) -> String {
    if failure.starts_with("status ") {
        status.to_string()
    } else if failure.contains("slower than max_latency") {
        format!("{status}, too slow")
    } else if failure.starts_with("body ") {
        format!("{status}, wrong body")
    } else {
        format!("{status}, failed")
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
            status: Some(200),
            failure: None,
        }
    }

    fn failed(sent_ms: u64, cause: &str) -> Shot {
        let status = cause.contains("503").then_some(503);
        Shot {
            sent: Duration::from_millis(sent_ms),
            took: Duration::from_millis(if status.is_some() { 3000 } else { 1 }),
            status,
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
            let (verdict, figures) = sample(&probe(rate, span)).await;
            assert_eq!(figures, None, "nothing sent, nothing counted");
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
    fn figures_count_requests_by_status_and_latency_bucket() {
        let mut slow = ok(900, 400);
        slow.failure = Some("200 in 400 ms, slower than max_latency 100ms".into());
        let shots = vec![
            ok(0, 2),
            ok(250, 30),
            failed(500, "status 503, expected 2xx"),
            failed(750, "connection refused"),
            slow,
        ];
        let f = figures(&shots, 6);
        assert_eq!((f.sent, f.ok, f.failed), (6, 2, 4));
        assert_eq!(
            (f.p50_ms, f.p99_ms, f.max_ms),
            (Some(2.0), Some(30.0), Some(30.0))
        );
        let statuses: Vec<(&str, u64)> = f.statuses.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            statuses,
            [
                ("200", 2),
                ("200, too slow", 1),
                ("503", 1),
                ("connection refused", 1),
                ("lost", 1)
            ]
        );
        // 2 ms falls in the ≤ 2.5 ms bucket, 30 ms in ≤ 50 ms.
        assert_eq!(f.latency_buckets.len(), LATENCY_BUCKETS_MS.len() + 1);
        assert_eq!((f.latency_buckets[1], f.latency_buckets[5]), (1, 1));
        assert_eq!(f.latency_buckets.iter().sum::<u64>(), 2);
        assert_eq!(f.latency_sum_ms, 32.0);
        let none = figures(&[failed(0, "connection refused")], 1);
        assert_eq!((none.ok, none.failed, none.p50_ms), (0, 1, None));
    }

    #[test]
    fn a_lost_request_counts_as_failed() {
        let shots = vec![ok(0, 1)];
        let verdict = judge(&shots, 2, Duration::from_millis(500), 100.0);
        assert!(matches!(verdict, Err(r) if r.contains("1/2 ok") && r.contains("1× lost")));
    }
}
