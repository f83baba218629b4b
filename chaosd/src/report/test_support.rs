//! A realistic hand-built report for the renderer, writer and store tests: two steps, the first
//! passed and the second deviated, a guardrail breach, a fault left in place, and events.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::model::*;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 14, 9, 30, 0).unwrap()
}

/// `t0` plus `ms` milliseconds.
pub fn at(ms: i64) -> DateTime<Utc> {
    t0() + Duration::milliseconds(ms)
}

fn check(held: bool, start_ms: i64, end_ms: i64, reason: &str, passed: usize) -> CheckReport {
    CheckReport {
        held,
        started_at: at(start_ms),
        decided_at: at(end_ms),
        reason: reason.to_string(),
        probes: vec![ProbeCheck {
            probe: "checkout".into(),
            host: "local".into(),
            guardrail: false,
            held,
            passed,
            samples: 10,
        }],
    }
}

fn fault(step: &str, host: &str, applied_ms: i64, reverted_ms: Option<i64>) -> FaultReport {
    FaultReport {
        fault_id: format!("{step}-{host}"),
        kind: "latency".into(),
        fault: "delay eth0 by 200ms ± 20ms".into(),
        target: "role=api".into(),
        host: host.into(),
        skipped: false,
        applied_at: Some(at(applied_ms)),
        reverted_at: reverted_ms.map(at),
        mechanism: Some("tc netem | nft".into()),
        verified: Some(reverted_ms.is_some()),
        affected: vec!["eth0".into()],
        error: reverted_ms
            .is_none()
            .then(|| "revert not confirmed: agent timed out".into()),
        detail: String::new(),
    }
}

fn samples(start_ms: i64, oks: &[bool]) -> Vec<SampleRecord> {
    oks.iter()
        .enumerate()
        .map(|(i, &ok)| SampleRecord {
            at: at(start_ms + i as i64 * 1000),
            ok,
            latency_ms: if ok { 10.0 + i as f64 } else { 2000.0 },
            reason: if ok {
                String::new()
            } else {
                "status 503, expected 200".into()
            },
            load: None,
        })
        .collect()
}

/// A `load` burst of 20 requests, `failed` of them answered 502.
fn burst(start_ms: i64, failed: u64) -> SampleRecord {
    let ok = 20 - failed;
    let mut latency_buckets = vec![0; 14];
    latency_buckets[2] = ok;
    SampleRecord {
        at: at(start_ms),
        ok: failed == 0,
        latency_ms: 976.0,
        reason: format!("{ok}/20 ok"),
        load: Some(agent::probe::LoadFigures {
            sent: 20,
            ok,
            failed,
            p50_ms: (ok > 0).then_some(3.0),
            p99_ms: (ok > 0).then_some(4.0),
            max_ms: (ok > 0).then_some(4.2),
            statuses: [("200".to_string(), ok), ("502".to_string(), failed)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
            latency_buckets,
            latency_sum_ms: 3.0 * ok as f64,
        }),
    }
}

/// What users of `checkout` went through in a step: `failed` of `taken` failed, with one
/// outage from `from_ms` to `until_ms`.
// Each call reads as a row of a table of test data; a struct would only add names to it.
#[allow(clippy::too_many_arguments)]
fn impact(
    probe: &str,
    counts: ImpactUnit,
    taken: u64,
    failed: u64,
    from_ms: i64,
    until_ms: i64,
    restored: bool,
    start_ms: i64,
) -> ProbeImpact {
    let load = (counts == ImpactUnit::Requests).then(|| LoadImpact {
        sent: taken,
        ok: taken - failed,
        failed,
        p50_ms: Some(5.0),
        p99_ms: Some(5.0),
        max_ms: Some(4.2),
        statuses: BTreeMap::from([("200".into(), taken - failed), ("502".into(), failed)]),
    });
    ProbeImpact {
        probe: probe.into(),
        host: "local".into(),
        kind: if load.is_some() { "load" } else { "http" }.into(),
        counts,
        taken,
        failed,
        error_ms: (until_ms - from_ms) as u64,
        longest_outage_ms: (until_ms - from_ms) as u64,
        restored,
        impact_ms: Some((from_ms - start_ms) as u64),
        restore_ms: restored.then_some((until_ms - from_ms) as u64),
        outages: vec![Outage {
            from: at(from_ms),
            until: at(until_ms),
            restored,
        }],
        load,
    }
}

fn event(ms: i64, kind: &str, message: &str) -> Event {
    Event {
        at: at(ms),
        kind: kind.into(),
        message: message.into(),
        fields: Default::default(),
    }
}

/// The run: `kill-api` passes (recovery 4.5 s), then `slow <db> & "cache"` deviates.
pub fn sample_report() -> Report {
    let step1 = StepReport {
        index: 0,
        name: "kill-api".into(),
        status: StepStatus::Passed,
        hosts: vec!["api-1".into(), "api-2".into()],
        faults: vec![
            fault("kill-api", "api-1", 12_300, Some(42_300)),
            fault("kill-api", "api-2", 12_310, Some(42_310)),
        ],
        started_at: Some(at(12_300)),
        ended_at: Some(at(60_000)),
        duration_ms: 30_000,
        recover_within_ms: 20_000,
        before: Some(check(true, 2_000, 12_000, "held: 10/10 samples passed", 10)),
        after: Some(check(
            true,
            46_800,
            60_000,
            "held: 10/10 samples passed",
            10,
        )),
        impact_ms: Some(2_700),
        recovery_ms: Some(4_500),
        impact: vec![
            impact(
                "users",
                ImpactUnit::Requests,
                960,
                26,
                15_000,
                16_250,
                true,
                12_300,
            ),
            impact("checkout", ImpactUnit::Samples, 48, 0, 0, 0, true, 0),
        ],
        impact_until: Some(at(60_000)),
        objectives: None,
        actions: Vec::new(),
        manual: None,
    };
    // Nothing failed for `checkout` in step 1.
    let mut step1 = step1;
    step1.impact[1].impact_ms = None;
    step1.impact[1].restore_ms = None;
    step1.impact[1].outages.clear();
    let step2 = StepReport {
        index: 1,
        name: "slow <db> & \"cache\"".into(),
        status: StepStatus::Deviated,
        hosts: vec!["db-1".into()],
        faults: vec![fault("slow-db", "db-1", 60_100, None)],
        started_at: Some(at(60_100)),
        ended_at: Some(at(125_000)),
        duration_ms: 30_000,
        recover_within_ms: 20_000,
        before: step1.after.clone(),
        after: Some(check(
            false,
            90_100,
            125_000,
            "did not hold within 20s: 3/10 samples passed",
            3,
        )),
        impact_ms: Some(1_200),
        recovery_ms: None,
        impact: vec![
            impact(
                "users",
                ImpactUnit::Requests,
                1300,
                400,
                61_300,
                81_300,
                true,
                60_100,
            ),
            impact(
                "checkout",
                ImpactUnit::Samples,
                65,
                40,
                61_300,
                125_000,
                false,
                60_100,
            ),
        ],
        impact_until: Some(at(125_000)),
        objectives: Some(ObjectivesReport {
            max_outage_ms: Some(10_000),
            max_failed: None,
            max_error_ms: None,
            misses: vec![ObjectiveMiss {
                objective: "max_outage".into(),
                probe: "checkout".into(),
                host: "local".into(),
                figure: "longest outage 63.7 s, not over".into(),
                limit: "10s".into(),
            }],
        }),
        actions: Vec::new(),
        manual: None,
    };
    Report {
        schema: SCHEMA.into(),
        run_id: "20250314T093000Z-7f3a9c".into(),
        scenario: ScenarioRef {
            name: "checkout-failover".into(),
            sha256: "ab".repeat(32),
            path: "scenarios/checkout-failover.yaml".into(),
            description: Some(
                "Kill one API process and slow the database; checkout must keep answering.".into(),
            ),
        },
        verdict: Verdict::Deviated,
        cause: Some(Cause::Hypothesis),
        reason: "after step `slow <db> & \"cache\"` the hypothesis did not hold within 20s".into(),
        seed: "18446744073709551615".into(),
        labels: BTreeMap::from([
            ("team".into(), "payments".into()),
            ("ticket".into(), "GD-12|a".into()),
        ]),
        user: "alice".into(),
        host: "ctl-1".into(),
        dry_run: false,
        started_at: t0(),
        ended_at: at(125_400),
        duration_ms: 125_400,
        faults_left: vec![FaultLeft {
            host: "db-1".into(),
            fault_id: "slow-db-db-1".into(),
            kind: "latency".into(),
            fault: "delay eth0 by 200ms ± 20ms".into(),
            reason: "revert not confirmed: agent timed out".into(),
        }],
        recovered: vec![RecoveredFault {
            host: "local".into(),
            fault_id: "old-1".into(),
            run_id: "20250313T000000Z-000001".into(),
            fault: "pause pid 4242".into(),
            ok: true,
            detail: "resumed".into(),
        }],
        setup: vec![CommandOutcome {
            name: "start-demo".into(),
            command: "chaos-demo serve --port 8080".into(),
            background: true,
            ok: true,
            started_at: at(100),
            ended_at: None,
            exit_code: None,
            detail: "running".into(),
        }],
        teardown: vec![CommandOutcome {
            name: "stop-demo".into(),
            command: "pkill chaos-demo".into(),
            background: false,
            ok: true,
            started_at: at(125_100),
            ended_at: Some(at(125_300)),
            exit_code: Some(0),
            detail: String::new(),
        }],
        steps: vec![step1, step2],
        breaches: vec![Breach {
            guardrail: "error-budget".into(),
            host: "local".into(),
            at: at(95_000),
            step: Some("slow <db> & \"cache\"".into()),
            passed: 4,
            samples: 10,
            reason: "4/10 samples passed, tolerance 0.5".into(),
        }],
        probes: vec![
            ProbeReport {
                name: "checkout".into(),
                kind: "http".into(),
                role: ProbeRole::SteadyState,
                host: "local".into(),
                every_ms: 1000,
                window_samples: 10,
                tolerance: 0.0,
                expect: "GET http://127.0.0.1:8080/health: status 200, max_latency 300ms".into(),
                samples: samples(2_000, &[true, true, true, false, true, true]),
            },
            ProbeReport {
                name: "users".into(),
                kind: "load".into(),
                role: ProbeRole::SteadyState,
                host: "local".into(),
                every_ms: 1000,
                window_samples: 1,
                tolerance: 100.0,
                expect: "GET http://127.0.0.1:8080/ at 20/s for 1s: 95% of requests with \
                         status 2xx"
                    .into(),
                samples: vec![
                    burst(13_000, 0),
                    burst(14_000, 0),
                    burst(15_000, 20),
                    burst(16_000, 6),
                ],
            },
        ],
        events: vec![
            event(0, "run_started", "run started"),
            event(12_300, "fault_applied", "latency applied on api-1"),
            event(42_300, "fault_reverted", "latency reverted on api-1"),
            event(95_000, "breach", "guardrail error-budget | breached"),
            event(125_400, "run_ended", "deviated"),
        ],
    }
}
