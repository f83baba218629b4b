//! What a step's users went through, in words every rendering shares: the terminal, Markdown,
//! HTML, JUnit, webhooks and the web view all say a step's verdict the same way, so a step that
//! passed while requests failed never reads as a clean pass anywhere.

use std::collections::BTreeMap;
use std::time::Duration;

use super::model::{
    LoadImpact, ObjectivesReport, ProbeImpact, ProbeReport, StepReport, StepStatus,
};
use crate::engine::impact::{add_up_bursts, describe_miss, percent, seconds};
use crate::scenario::format_duration;

/// The probe and host that fared worst in a step: the longest outage, then the most failures.
pub fn worst(step: &StepReport) -> Option<&ProbeImpact> {
    step.impact
        .iter()
        .filter(|i| i.failed > 0 || i.longest_outage_ms > 0)
        .max_by_key(|i| (i.longest_outage_ms, i.failed))
}

/// `26 of 140 requests failed, longest outage 1.3 s` (the worst probe's figures; `, not
/// restored` when its last outage had not ended), or `None` when nothing failed.
pub fn impact_summary(step: &StepReport) -> Option<String> {
    let worst = worst(step)?;
    let mut text = format!(
        "{} of {} {} failed",
        worst.failed,
        worst.taken,
        worst.counts.as_str()
    );
    if worst.longest_outage_ms > 0 {
        text.push_str(&format!(
            ", longest outage {}",
            seconds(worst.longest_outage_ms)
        ));
    }
    if !worst.restored {
        text.push_str(", not restored");
    }
    if step.impact.len() > 1 {
        text.push_str(&format!(" (`{}` on {})", worst.probe, worst.host));
    }
    Some(text)
}

/// The step's status as a word: `passed`, `not_steady`, ...
pub fn status_word(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Passed => "passed",
        StepStatus::Deviated => "deviated",
        StepStatus::Aborted => "aborted",
        StepStatus::Error => "error",
        StepStatus::Skipped => "skipped",
    }
}

/// `passed, 26 of 140 requests failed, longest outage 1.3 s`, or just `passed` when users saw
/// no failure.
pub fn status_with_impact(step: &StepReport) -> String {
    match impact_summary(step) {
        Some(impact) => format!("{}, {impact}", status_word(step.status)),
        None => status_word(step.status).to_string(),
    }
}

/// The columns of the table of probes ("What steady meant"), in every format.
pub const PROBE_COLUMNS: [&str; 6] = [
    "probe",
    "role",
    "host",
    "expects",
    "rule",
    "saw over the run",
];

/// The columns of an impact table, in the order [`impact_cells`] fills them.
pub const IMPACT_COLUMNS: [&str; 10] = [
    "probe",
    "host",
    "failed",
    "error",
    "longest outage",
    "impact",
    "restore",
    "requests",
    "p50 / p99",
    "statuses",
];

/// One probe and host of a step's impact, as the cells of a table row (see [`IMPACT_COLUMNS`]):
/// plain text, with an empty cell where a figure does not apply (renderers show a dash).
pub fn impact_cells(i: &ProbeImpact) -> [String; 10] {
    let failed = if i.taken == 0 {
        format!("0 of 0 {}", i.counts.as_str())
    } else {
        format!(
            "{} of {} {} ({})",
            i.failed,
            i.taken,
            i.counts.as_str(),
            percent(i.failed as f64 * 100.0 / i.taken as f64)
        )
    };
    let none_or = |ms: u64| {
        if ms == 0 {
            "none".to_string()
        } else {
            seconds(ms)
        }
    };
    let mut outage = none_or(i.longest_outage_ms);
    if !i.restored {
        outage.push_str(", not restored");
    }
    let impact = match i.impact_ms {
        Some(ms) => format!("after {}", seconds(ms)),
        None => "none".to_string(),
    };
    let restore = match (i.restore_ms, i.impact_ms) {
        (Some(ms), _) => seconds(ms),
        // Something failed and the probe did not hold again before the window ended.
        (None, Some(_)) => "not restored".to_string(),
        (None, None) => String::new(),
    };
    let (requests, percentiles, statuses) = match &i.load {
        Some(l) => (
            format!("{} sent, {} ok, {} failed", l.sent, l.ok, l.failed),
            match (l.p50_ms, l.p99_ms) {
                (Some(p50), Some(p99)) => format!("{} / {}", millis(p50), millis(p99)),
                _ => "no request succeeded".to_string(),
            },
            statuses(&l.statuses),
        ),
        None => Default::default(),
    };
    [
        i.probe.clone(),
        i.host.clone(),
        failed,
        none_or(i.error_ms),
        outage,
        impact,
        restore,
        requests,
        percentiles,
        statuses,
    ]
}

/// `200: 934, 502: 26`: how requests ended, most frequent first.
pub fn statuses(statuses: &BTreeMap<String, u64>) -> String {
    let mut by_count: Vec<(&String, &u64)> = statuses.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    by_count
        .iter()
        .map(|(status, n)| format!("{status}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A request latency: `2.5 ms`, `250 ms`.
pub fn millis(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// The limits a step was judged against: `max_outage 10s, max_failed 1%, max_error 30s`.
pub fn objectives_text(o: &ObjectivesReport) -> String {
    let limit = |ms: u64| format_duration(Duration::from_millis(ms));
    let mut parts = Vec::new();
    if let Some(ms) = o.max_outage_ms {
        parts.push(format!("max_outage {}", limit(ms)));
    }
    if let Some(share) = o.max_failed {
        parts.push(format!("max_failed {}", percent(share)));
    }
    if let Some(ms) = o.max_error_ms {
        parts.push(format!("max_error {}", limit(ms)));
    }
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

/// Every objective miss of a step, one line each (``max_outage: `users` on local: ...``).
pub fn misses(step: &StepReport) -> Vec<String> {
    step.objectives
        .iter()
        .flat_map(|o| o.misses.iter().map(describe_miss))
        .collect()
}

/// A `load` probe's requests over all its bursts: how many, how they ended, and per-request
/// latency percentiles (merged from the bursts' latency buckets: a burst's own length is never a
/// request's latency). `None` for other probes. The second figure counts bursts that brought back
/// no figures, whose requests nobody can count.
pub fn probe_requests(p: &ProbeReport) -> Option<(LoadImpact, usize)> {
    if p.kind != "load" && p.samples.iter().all(|s| s.load.is_none()) {
        return None;
    }
    let without = p.samples.iter().filter(|s| s.load.is_none()).count();
    Some((add_up_bursts(&p.samples, None), without))
}

/// A probe's requests (for `load`: `80 sent, 26 failed`, else empty) and its latency columns
/// p50, p99 and max in ms. A `load` sample's own latency is its burst's length, so for `load`
/// the latencies are its requests', merged from the bursts' buckets.
pub fn probe_latencies(p: &ProbeReport) -> (String, Option<f64>, Option<f64>, Option<f64>) {
    if let Some((load, _)) = probe_requests(p) {
        return (
            format!("{} sent, {} failed", load.sent, load.failed),
            load.p50_ms,
            load.p99_ms,
            load.max_ms,
        );
    }
    let mut sorted: Vec<f64> = p
        .samples
        .iter()
        .map(|s| s.latency_ms)
        .filter(|v| v.is_finite())
        .collect();
    sorted.sort_by(f64::total_cmp);
    // Nearest rank: the smallest value with at least `q` percent of them at or below it.
    let percentile = |q: f64| {
        let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
        (!sorted.is_empty()).then(|| sorted[rank.clamp(1, sorted.len()) - 1])
    };
    (
        String::new(),
        percentile(50.0),
        percentile(99.0),
        sorted.last().copied(),
    )
}

/// What steady meant for a probe, beside its `expect`: `every 1.0s, window of 10 samples, 95%
/// must pass`.
pub fn steady_rule(p: &ProbeReport) -> String {
    let s = if p.window_samples == 1 { "" } else { "s" };
    format!(
        "every {}, window of {} sample{s}, {} must pass",
        format_duration(Duration::from_millis(p.every_ms)),
        p.window_samples,
        percent(p.tolerance)
    )
}

/// What a probe saw over the whole run: `5 of 6 samples passed`, and for a `load` probe its
/// requests: `5 of 6 samples passed; 54 of 80 requests ok`.
pub fn probe_saw(p: &ProbeReport) -> String {
    let passed = p.samples.iter().filter(|s| s.ok).count();
    let mut text = format!("{passed} of {} samples passed", p.samples.len());
    if let Some((load, without)) = probe_requests(p) {
        text.push_str(&format!("; {} of {} requests ok", load.ok, load.sent));
        if without > 0 {
            text.push_str(&format!(" ({without} bursts brought back no figures)"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_support::sample_report;

    #[test]
    fn a_passed_step_with_failures_says_so() {
        let report = sample_report();
        assert_eq!(
            status_with_impact(&report.steps[0]),
            "passed, 26 of 960 requests failed, longest outage 1.2 s (`users` on local)"
        );
        let mut clean = report.steps[0].clone();
        for i in &mut clean.impact {
            i.failed = 0;
            i.longest_outage_ms = 0;
        }
        assert_eq!(status_with_impact(&clean), "passed");
    }

    #[test]
    fn impact_cells_name_every_figure() {
        let report = sample_report();
        let users = impact_cells(&report.steps[0].impact[0]);
        assert_eq!(
            users,
            [
                "users",
                "local",
                "26 of 960 requests (2.7%)",
                "1.2 s",
                "1.2 s",
                "after 2.7 s",
                "1.2 s",
                "960 sent, 934 ok, 26 failed",
                "5.0 ms / 5.0 ms",
                "200: 934, 502: 26",
            ]
        );
        let checkout = impact_cells(&report.steps[1].impact[1]);
        assert_eq!(checkout[2], "40 of 65 samples (61.5%)");
        assert_eq!(checkout[4], "63.7 s, not restored");
        assert_eq!(checkout[6], "not restored");
        assert_eq!(checkout[7..], ["", "", ""]);
        assert_eq!(
            objectives_text(report.steps[1].objectives.as_ref().unwrap()),
            "max_outage 10s"
        );
        assert_eq!(
            misses(&report.steps[1]),
            ["max_outage: `checkout` on local: longest outage 63.7 s, not over, over 10s"]
        );
    }

    #[test]
    fn load_probes_count_requests_not_bursts() {
        let report = sample_report();
        let users = &report.probes[1];
        let (load, without) = probe_requests(users).expect("a load probe");
        assert_eq!((load.sent, load.ok, load.failed, without), (80, 54, 26, 0));
        // Per request, from the buckets (≤ 5 ms, capped by the slowest), never the 976 ms burst.
        assert_eq!(
            (load.p50_ms, load.p99_ms, load.max_ms),
            (Some(4.2), Some(4.2), Some(4.2))
        );
        assert_eq!(
            probe_saw(users),
            "2 of 4 samples passed; 54 of 80 requests ok"
        );
        assert_eq!(
            steady_rule(users),
            "every 1s, window of 1 sample, 100% must pass"
        );
        assert!(probe_requests(&report.probes[0]).is_none());
    }
}
