//! What users went through during a step, from the samples alone: no clock, no IO.
//!
//! A step's impact window runs from its first injection until its after-check is decided (or the
//! step is cut short). A sample counts at the moment it started (a `load` burst: when its first
//! request was sent). Per steady-state probe and host this gives the samples (or, for `load`, the
//! requests) failed and taken, the time spent failing, the longest outage, and the time to
//! restore; [`judge`] holds those figures against a step's objectives.
//!
//! Every report format renders these same figures; nothing else computes them.

use std::collections::BTreeMap;

use agent::probe::load::LATENCY_BUCKETS_MS;
use chrono::{DateTime, Utc};

use super::hypothesis::{WindowRule, passes_tolerance};
use crate::report::model::{
    ImpactUnit, LoadImpact, ObjectiveMiss, ObjectivesReport, Outage, ProbeImpact, SampleRecord,
};
use crate::scenario::format_duration;
use crate::scenario::model::Objectives;

/// One probe on one host, as impact needs it.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    pub probe: &'a str,
    pub host: &'a str,
    /// The probe's kind name (`http`, `load`, ...).
    pub kind: &'a str,
    pub rule: WindowRule,
    /// For a `load` probe, the requests one burst sends: a burst that brought back no figures
    /// (its agent did not answer) counts that many requests as failed, since nobody can say
    /// they were served.
    pub requests_per_sample: Option<u64>,
    /// Every sample of the probe on the host, in the order they started.
    pub samples: &'a [SampleRecord],
}

/// The figures of one series over the window `[from, until)`.
pub fn measure(series: Series<'_>, from: DateTime<Utc>, until: DateTime<Utc>) -> ProbeImpact {
    let first = series.samples.partition_point(|s| s.at < from);
    let last = series.samples.partition_point(|s| s.at < until);
    let window = &series.samples[first..last.max(first)];
    // The next sample's start, or the window's end for the last one.
    let next_at = |i: usize| window.get(i + 1).map_or(until, |s| s.at.min(until));

    let mut error_ms = 0;
    let mut outages: Vec<Outage> = Vec::new();
    let mut failing = false;
    for (i, sample) in window.iter().enumerate() {
        if sample.ok {
            // A passing sample ends the run of failures before it.
            if failing && let Some(open) = outages.last_mut() {
                open.until = sample.at;
                open.restored = true;
            }
            failing = false;
            continue;
        }
        error_ms += millis(sample.at, next_at(i));
        if !failing {
            outages.push(Outage {
                from: sample.at,
                until,
                restored: false,
            });
            failing = true;
        }
    }
    let longest_outage_ms = outages
        .iter()
        .map(|o| millis(o.from, o.until))
        .max()
        .unwrap_or(0);
    let restored = outages.last().is_none_or(|o| o.restored);
    let first_failure = window.iter().find(|s| !s.ok).map(|s| s.at);

    let (unit, taken, failed, load) = match series.kind {
        "load" => {
            let load = add_up_bursts(window, series.requests_per_sample);
            (ImpactUnit::Requests, load.sent, load.failed, Some(load))
        }
        _ => (
            ImpactUnit::Samples,
            window.len() as u64,
            window.iter().filter(|s| !s.ok).count() as u64,
            None,
        ),
    };
    ProbeImpact {
        probe: series.probe.to_string(),
        host: series.host.to_string(),
        kind: series.kind.to_string(),
        counts: unit,
        taken,
        failed,
        error_ms,
        longest_outage_ms,
        restored,
        impact_ms: first_failure.map(|at| millis(from, at)),
        restore_ms: first_failure
            .and_then(|at| restored_at(series.rule, window).map(|r| millis(at, r))),
        outages,
        load,
    }
}

/// When the probe was back for good: the first sample of its final run of holding windows, and
/// no earlier than the first passing sample after its last failure (a window that tolerates a
/// failure holds across it, but users were not served until a request passed). `None` when the
/// window's latest full window does not hold.
fn restored_at(rule: WindowRule, window: &[SampleRecord]) -> Option<DateTime<Utc>> {
    let n = rule.n.max(1);
    let holds = |w: &[SampleRecord]| {
        passes_tolerance(w.iter().filter(|s| s.ok).count(), w.len(), rule.tolerance)
    };
    if window.len() < n || !holds(&window[window.len() - n..]) {
        return None;
    }
    let mut end = window.len();
    while end > n && holds(&window[end - 1 - n..end - 1]) {
        end -= 1;
    }
    let holding_since = window[end - n].at;
    let last_failure = window.iter().rposition(|s| !s.ok)?;
    let back = window[last_failure + 1..].iter().find(|s| s.ok)?.at;
    Some(holding_since.max(back))
}

/// A `load` probe's bursts in the window, added up request by request (also the reports' probe
/// tables, over all of a probe's bursts: one merge, so tables and impact never disagree).
pub fn add_up_bursts(window: &[SampleRecord], requests_per_sample: Option<u64>) -> LoadImpact {
    let mut total = LoadImpact {
        sent: 0,
        ok: 0,
        failed: 0,
        p50_ms: None,
        p99_ms: None,
        max_ms: None,
        statuses: BTreeMap::new(),
    };
    let mut buckets = vec![0u64; LATENCY_BUCKETS_MS.len() + 1];
    for sample in window {
        let Some(burst) = &sample.load else {
            // No figures came back: its requests cannot be counted as served.
            let lost = requests_per_sample.unwrap_or(0);
            total.sent += lost;
            total.failed += lost;
            if lost > 0 {
                *total.statuses.entry("no figures".to_string()).or_default() += lost;
            }
            continue;
        };
        total.sent += burst.sent;
        total.ok += burst.ok;
        total.failed += burst.failed;
        for (status, count) in &burst.statuses {
            *total.statuses.entry(status.clone()).or_default() += count;
        }
        for (sum, count) in buckets.iter_mut().zip(&burst.latency_buckets) {
            *sum += count;
        }
        total.max_ms = match (total.max_ms, burst.max_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    total.p50_ms = bucket_percentile(&buckets, 50.0, total.max_ms);
    total.p99_ms = bucket_percentile(&buckets, 99.0, total.max_ms);
    total
}

/// The upper bound of the bucket holding the nearest-rank `p` percentile (the slowest request
/// when that is past the last bound, or is faster than the bucket's bound); `None` when empty.
fn bucket_percentile(buckets: &[u64], p: f64, max_ms: Option<f64>) -> Option<f64> {
    let count: u64 = buckets.iter().sum();
    if count == 0 {
        return None;
    }
    let rank = ((p / 100.0) * count as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let bound = LATENCY_BUCKETS_MS.get(i).copied();
            return match (bound, max_ms) {
                (Some(bound), Some(max)) => Some(bound.min(max)),
                (Some(bound), None) => Some(bound),
                (None, max) => max,
            };
        }
    }
    max_ms
}

/// Holds each probe's figures against the objectives; every miss is named.
pub fn judge(objectives: &Objectives, impacts: &[ProbeImpact]) -> ObjectivesReport {
    let mut misses = Vec::new();
    for impact in impacts {
        let mut miss = |objective: &str, figure: String, limit: String| {
            misses.push(ObjectiveMiss {
                objective: objective.to_string(),
                probe: impact.probe.clone(),
                host: impact.host.clone(),
                figure,
                limit,
            })
        };
        if let Some(max) = objectives.max_outage
            && impact.longest_outage_ms > max.as_millis() as u64
        {
            let still = if impact.restored { "" } else { ", not over" };
            miss(
                "max_outage",
                format!(
                    "longest outage {}{still}",
                    seconds(impact.longest_outage_ms)
                ),
                format_duration(max),
            );
        }
        if let Some(max) = objectives.max_failed
            && impact.taken > 0
        {
            let share = impact.failed as f64 * 100.0 / impact.taken as f64;
            if share > max + 1e-9 {
                miss(
                    "max_failed",
                    format!(
                        "{} of {} {} failed ({})",
                        impact.failed,
                        impact.taken,
                        impact.counts.as_str(),
                        percent(share)
                    ),
                    percent(max),
                );
            }
        }
        if let Some(max) = objectives.max_error
            && impact.error_ms > max.as_millis() as u64
        {
            miss(
                "max_error",
                format!("failing for {} in all", seconds(impact.error_ms)),
                format_duration(max),
            );
        }
    }
    ObjectivesReport {
        max_outage_ms: objectives.max_outage.map(|d| d.as_millis() as u64),
        max_failed: objectives.max_failed,
        max_error_ms: objectives.max_error.map(|d| d.as_millis() as u64),
        misses,
    }
}

/// One line for a miss: ``max_outage: `users` on local: longest outage 3.1 s, over 2s``.
pub fn describe_miss(miss: &ObjectiveMiss) -> String {
    format!(
        "{}: `{}` on {}: {}, over {}",
        miss.objective, miss.probe, miss.host, miss.figure, miss.limit
    )
}

/// `1.3 s`, `250 ms`.
pub fn seconds(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// `18.6%`, `1%`.
pub fn percent(share: f64) -> String {
    if (share - share.round()).abs() < 1e-9 {
        format!("{}%", share.round())
    } else {
        format!("{share:.1}%")
    }
}

fn millis(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    (to - from).num_milliseconds().max(0) as u64
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use agent::probe::LoadFigures;
    use chrono::TimeDelta;

    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z")
            .expect("a time")
            .with_timezone(&Utc)
    }

    fn at(ms: i64) -> DateTime<Utc> {
        t0() + TimeDelta::milliseconds(ms)
    }

    /// Samples from `+`/`-`, one every `every_ms` starting at `start_ms`.
    fn samples(start_ms: i64, every_ms: i64, oks: &str) -> Vec<SampleRecord> {
        oks.chars()
            .enumerate()
            .map(|(i, c)| SampleRecord {
                at: at(start_ms + every_ms * i as i64),
                ok: c == '+',
                latency_ms: 1.0,
                reason: String::new(),
                load: None,
            })
            .collect()
    }

    fn series<'a>(samples: &'a [SampleRecord], n: usize) -> Series<'a> {
        Series {
            probe: "users",
            host: "local",
            kind: "http",
            rule: WindowRule {
                n,
                tolerance: 100.0,
            },
            requests_per_sample: None,
            samples,
        }
    }

    /// (taken, failed, error_ms, longest_outage_ms, restored, impact_ms, restore_ms)
    type Figures = (u64, u64, u64, u64, bool, Option<u64>, Option<u64>);

    fn check(series: Series<'_>, from_ms: i64, until_ms: i64, expect: Figures) {
        let i = measure(series, at(from_ms), at(until_ms));
        let got = (
            i.taken,
            i.failed,
            i.error_ms,
            i.longest_outage_ms,
            i.restored,
            i.impact_ms,
            i.restore_ms,
        );
        assert_eq!(got, expect, "{i:#?}");
    }

    #[test]
    fn nothing_failed_is_no_impact() {
        let s = samples(0, 1000, "+++++");
        check(series(&s, 1), 0, 5000, (5, 0, 0, 0, true, None, None));
    }

    #[test]
    fn an_outage_runs_from_the_first_failure_to_the_next_pass() {
        // Fails at 2 s and 3 s, passes again at 4 s.
        let s = samples(0, 1000, "++--++");
        check(
            series(&s, 1),
            0,
            6000,
            (6, 2, 2000, 2000, true, Some(2000), Some(2000)),
        );
    }

    #[test]
    fn a_gap_after_a_failing_sample_counts_as_failing() {
        // A failing sample that took 3 s (its timeout) delays the next one: users waited too.
        let mut s = samples(0, 1000, "+-");
        s.extend(samples(4000, 1000, "++"));
        check(
            series(&s, 1),
            0,
            6000,
            (4, 1, 3000, 3000, true, Some(1000), Some(3000)),
        );
    }

    #[test]
    fn an_outage_still_going_at_the_end_is_not_restored() {
        let s = samples(0, 1000, "++---");
        check(
            series(&s, 1),
            0,
            5500,
            (5, 3, 3500, 3500, false, Some(2000), None),
        );
    }

    #[test]
    fn restore_waits_for_a_whole_holding_window() {
        // Windows of 3: failing from 1 s to 3 s; the first window that holds again starts at 4 s.
        let s = samples(0, 1000, "+---+++");
        check(
            series(&s, 3),
            0,
            7000,
            (7, 3, 3000, 3000, true, Some(1000), Some(3000)),
        );
    }

    #[test]
    fn a_flapping_probe_is_restored_when_it_is_back_for_good() {
        let s = samples(0, 1000, "+-+-+-++");
        let i = measure(series(&s, 1), at(0), at(8000));
        assert_eq!(i.outages.len(), 3);
        assert_eq!((i.longest_outage_ms, i.error_ms), (1000, 3000));
        // First failure at 1 s; the last failure's next pass at 6 s.
        assert_eq!(i.restore_ms, Some(5000));
    }

    #[test]
    fn samples_before_the_injection_do_not_count() {
        // The probe was already failing before the window: only what started inside counts.
        let s = samples(-2000, 1000, "---+++");
        check(
            series(&s, 1),
            0,
            4000,
            (4, 1, 1000, 1000, true, Some(0), Some(1000)),
        );
        let s = samples(-2000, 1000, "--++++");
        check(series(&s, 1), 0, 4000, (4, 0, 0, 0, true, None, None));
    }

    #[test]
    fn an_aborted_step_keeps_what_it_saw() {
        // Cut short at 3.5 s in the middle of an outage; the sample started at 4 s is not its.
        let s = samples(0, 1000, "+----");
        let i = measure(series(&s, 1), at(0), at(3500));
        assert_eq!((i.taken, i.failed, i.error_ms), (4, 3, 2500));
        assert_eq!(
            i.outages,
            [Outage {
                from: at(1000),
                until: at(3500),
                restored: false
            }]
        );
        assert!(!i.restored);
        assert_eq!(i.restore_ms, None);
    }

    fn burst(start_ms: i64, sent: u64, failed: u64) -> SampleRecord {
        let ok = sent - failed;
        let mut buckets = vec![0; LATENCY_BUCKETS_MS.len() + 1];
        buckets[1] = ok; // ≤ 2.5 ms
        SampleRecord {
            at: at(start_ms),
            ok: failed * 100 <= sent * 5,
            // A burst lasts its span and more: this is not a request's latency.
            latency_ms: 1200.0,
            reason: String::new(),
            load: Some(LoadFigures {
                sent,
                ok,
                failed,
                p50_ms: (ok > 0).then_some(2.0),
                p99_ms: (ok > 0).then_some(2.4),
                max_ms: (ok > 0).then_some(2.4),
                statuses: [("200".to_string(), ok), ("502".to_string(), failed)]
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .collect(),
                latency_buckets: buckets,
                latency_sum_ms: 2.0 * ok as f64,
            }),
        }
    }

    #[test]
    fn load_bursts_count_requests_once_each_though_they_overlap() {
        // Bursts start every second and each lasts 1.2 s: they overlap, and each counts once, at
        // its start. The nginx case: 20 of 20 failed, then 6 of 20.
        let s = vec![
            burst(0, 20, 0),
            burst(1000, 20, 20),
            burst(2000, 20, 6),
            burst(3000, 20, 0),
            burst(4000, 20, 0),
        ];
        let mut load = series(&s, 1);
        load.kind = "load";
        load.requests_per_sample = Some(20);
        let i = measure(load, at(0), at(5000));
        assert_eq!(i.counts, ImpactUnit::Requests);
        assert_eq!((i.taken, i.failed), (100, 26));
        assert_eq!((i.longest_outage_ms, i.restored), (2000, true));
        let l = i.load.expect("load figures");
        assert_eq!((l.sent, l.ok, l.failed), (100, 74, 26));
        assert_eq!(l.statuses.get("502"), Some(&26));
        // Per request, not per burst: 2.5 ms is the bucket bound, capped by the slowest request.
        assert_eq!((l.p50_ms, l.p99_ms), (Some(2.4), Some(2.4)));
    }

    #[test]
    fn a_burst_without_figures_counts_its_requests_as_failed() {
        let mut s = vec![burst(0, 20, 0)];
        s.extend(samples(1000, 1000, "-"));
        let mut load = series(&s, 1);
        load.kind = "load";
        load.requests_per_sample = Some(20);
        let i = measure(load, at(0), at(2000));
        assert_eq!((i.taken, i.failed), (40, 20));
    }

    #[test]
    fn bucket_percentiles_use_the_nearest_rank() {
        let mut buckets = vec![0; LATENCY_BUCKETS_MS.len() + 1];
        buckets[3] = 98; // ≤ 10 ms
        buckets[8] = 2; // ≤ 500 ms
        assert_eq!(bucket_percentile(&buckets, 50.0, Some(400.0)), Some(10.0));
        assert_eq!(bucket_percentile(&buckets, 99.0, Some(400.0)), Some(400.0));
        buckets[13] = 100; // slower than 10 s
        assert_eq!(
            bucket_percentile(&buckets, 99.0, Some(12000.0)),
            Some(12000.0)
        );
        assert_eq!(bucket_percentile(&[0; 14], 50.0, None), None);
    }

    #[test]
    fn objectives_name_probe_host_figure_and_limit() {
        let s = samples(0, 1000, "++---++");
        let impact = [measure(series(&s, 1), at(0), at(7000))];
        let objectives = Objectives {
            max_outage: Some(Duration::from_secs(2)),
            max_failed: Some(50.0),
            max_error: Some(Duration::from_secs(1)),
        };
        let report = judge(&objectives, &impact);
        let misses: Vec<String> = report.misses.iter().map(describe_miss).collect();
        assert_eq!(
            misses,
            [
                "max_outage: `users` on local: longest outage 3.0 s, over 2s",
                "max_error: `users` on local: failing for 3.0 s in all, over 1s",
            ]
        );
        // 3 of 7 failed is 42.9%, within 50%; at 40% it misses.
        let strict = Objectives {
            max_failed: Some(40.0),
            ..Objectives::default()
        };
        let misses: Vec<String> = judge(&strict, &impact)
            .misses
            .iter()
            .map(describe_miss)
            .collect();
        assert_eq!(
            misses,
            ["max_failed: `users` on local: 3 of 7 samples failed (42.9%), over 40%"]
        );
        // An outage exactly at the limit is within it.
        let at_limit = Objectives {
            max_outage: Some(Duration::from_secs(3)),
            ..Objectives::default()
        };
        assert!(judge(&at_limit, &impact).misses.is_empty());
    }
}
