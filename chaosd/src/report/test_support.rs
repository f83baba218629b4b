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
        })
        .collect()
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
    };
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
    };
    Report {
        schema: SCHEMA.into(),
        run_id: "20250314T093000Z-7f3a9c".into(),
        scenario: ScenarioRef {
            name: "checkout-failover".into(),
            sha256: "ab".repeat(32),
            path: "scenarios/checkout-failover.yaml".into(),
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
        probes: vec![ProbeReport {
            name: "checkout".into(),
            kind: "http".into(),
            role: ProbeRole::SteadyState,
            host: "local".into(),
            every_ms: 1000,
            window_samples: 10,
            tolerance: 0.0,
            samples: samples(2_000, &[true, true, true, false, true, true]),
        }],
        events: vec![
            event(0, "run_started", "run started"),
            event(12_300, "fault_applied", "latency applied on api-1"),
            event(42_300, "fault_reverted", "latency reverted on api-1"),
            event(95_000, "breach", "guardrail error-budget | breached"),
            event(125_400, "run_ended", "deviated"),
        ],
    }
}
