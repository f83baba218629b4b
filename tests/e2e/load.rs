//! The `load` probe end to end, against `chaos-demo`: requests go out open loop (at the rate,
//! whatever the answers), and every sample's reason carries its rate, success share and latency
//! percentiles. The helpers here read those figures back from a report (the drills use them too).

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

use chaos_tests::support::{Test, assert_none_left, free_port};

/// One `load` sample as its report shows it.
#[derive(Debug, Clone)]
pub struct LoadSample {
    pub at: DateTime<FixedOffset>,
    pub ok: bool,
    /// Requests that succeeded, and requests sent.
    pub succeeded: u64,
    pub sent: u64,
    /// When the last failure of the sample came (an error answer or a timeout), from the sample's
    /// start, in seconds.
    pub last_failure: Option<f64>,
    pub reason: String,
}

impl LoadSample {
    pub fn failed(&self) -> u64 {
        self.sent - self.succeeded
    }

    /// When the last failure came.
    pub fn last_failure_at(&self) -> Option<DateTime<FixedOffset>> {
        self.last_failure
            .map(|s| self.at + chrono::Duration::milliseconds((s * 1000.0) as i64))
    }
}

/// Reads `19/20 ok (95.0%) at 20.0/s, ...; 1 failed (sent +0.45s, last failed +0.46s): ...`
/// back into numbers.
#[track_caller]
pub fn parse_sample(sample: &Value) -> LoadSample {
    let reason = sample["reason"].as_str().expect("reason").to_string();
    let counts = reason.split_whitespace().next().unwrap_or_default();
    let (succeeded, sent) = counts
        .split_once('/')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .unwrap_or_else(|| panic!("not a load sample's reason: {reason}"));
    let last_failure = reason.split_once("last failed +").map(|(_, rest)| {
        let number = rest.split('s').next().unwrap_or_default();
        number
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("no failure time in: {reason}"))
    });
    LoadSample {
        at: DateTime::parse_from_rfc3339(sample["at"].as_str().expect("at")).expect("at"),
        ok: sample["ok"].as_bool().expect("ok"),
        succeeded,
        sent,
        last_failure,
        reason,
    }
}

/// Every sample of the steady-state probe `name`.
#[track_caller]
pub fn load_samples(report: &Value, name: &str) -> Vec<LoadSample> {
    let probe = report["probes"]
        .as_array()
        .expect("probes")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no probe `{name}` in the report"));
    assert_eq!(probe["kind"], "load");
    probe["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(parse_sample)
        .collect()
}

fn demo_yaml(probe: &str) -> String {
    format!(
        r#"version: 1
name: load e2e
setup:
  - name: demo
    run: [chaos-demo, --port, "${{PORT}}", --workers, "2", --restart-delay-ms, "800"]
    background: true
    ready: {{http: {{url: "http://127.0.0.1:${{PORT}}/health"}}, within: 10s}}
steady_state:
{probe}
steps:
  - name: kill every worker
    target: local
    fault: {{kill: {{process: {{pattern: "chaos-demo --worker --port ${{PORT}}$"}}}}}}
    recover_within: 8s
"#
    )
}

#[test]
fn an_open_loop_load_counts_every_failure_of_a_restart() {
    let port = free_port();
    let t = Test::new()
        .scenario(&demo_yaml(
            r#"  - name: users
    load: {url: "http://127.0.0.1:${PORT}/health", rate: 20/s, timeout: 500ms}
    expect: {status: 200}
    every: 1s
    window: 1s"#,
        ))
        .var("PORT", port);
    let out = t.run();
    out.code(0);
    let r = out.report();
    r.verdict("passed", None);
    let samples = load_samples(&r.json, "users");
    // Before the kill: every request of the before-check's sample answered, and p50/p99 shown.
    let first = &samples[0];
    assert_eq!((first.succeeded, first.sent), (20, 20), "{}", first.reason);
    assert!(first.reason.contains("at 20.0/s, p50 "), "{}", first.reason);
    assert!(first.reason.contains(", p99 "), "{}", first.reason);
    // The workers are down for about 0.8 s: an open-loop client sees many failures (a closed
    // loop would see about one, waiting on the first), each named.
    let failed: u64 = samples.iter().map(LoadSample::failed).sum();
    assert!(
        (4..=40).contains(&failed),
        "{failed} failed requests: {samples:#?}"
    );
    let bad = samples.iter().find(|s| !s.ok).expect("a failing sample");
    assert!(bad.reason.contains("connection refused"), "{}", bad.reason);
    assert!(bad.last_failure.is_some(), "{}", bad.reason);
    let step = &r.json["steps"][0];
    let recovery = step["recovery_ms"].as_u64().expect("recovery_ms");
    assert!((300..=4000).contains(&recovery), "recovery {recovery} ms");
    // The last failure came after the kill, within the restart and a bit.
    let killed = DateTime::parse_from_rfc3339(step["faults"][0]["applied_at"].as_str().unwrap())
        .expect("applied_at");
    let last = samples
        .iter()
        .filter_map(LoadSample::last_failure_at)
        .max()
        .expect("a failed request");
    let after = (last - killed).num_milliseconds();
    assert!(
        (0..=4000).contains(&after),
        "last failure {after} ms after the kill"
    );
    assert_none_left(&format!("--port {port}"));
}

#[test]
fn slow_answers_do_not_slow_the_sending() {
    // Each answer takes 300 ms; sent one after the other, 20 would take 6 s. Open loop, they all
    // go out within the second, and the sample ends about one answer after the last one left.
    let port = free_port();
    let t = Test::new()
        .scenario(&demo_yaml(
            r#"  - name: users
    load: {url: "http://127.0.0.1:${PORT}/slow?ms=300", rate: 20/s, timeout: 2s}
    every: 1s
    window: 1s"#,
        ))
        .var("PORT", port)
        .arg("--dry-run");
    let out = t.run();
    out.code(0);
    let r = out.report();
    let samples = load_samples(&r.json, "users");
    let probe = &r.json["probes"][0]["samples"][0];
    let s = &samples[0];
    assert_eq!((s.succeeded, s.sent), (20, 20), "{}", s.reason);
    let latency = probe["latency_ms"].as_f64().expect("latency_ms");
    assert!(
        (1000.0..2500.0).contains(&latency),
        "a sample of 20 slow answers took {latency} ms: {}",
        s.reason
    );
    assert!(
        s.reason.contains("p50 3"),
        "p50 should be about 300 ms: {}",
        s.reason
    );
}
