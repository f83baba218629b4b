//! The HTTP failover drills of `scenarios/drills/` (issue 5), run as shipped against the real
//! servers from Debian's packages: HAProxy with and without `option redispatch`, nginx with
//! `proxy_next_upstream error timeout` and `off`. Each test asserts the verdict and the facts of
//! the report (failed requests, when the last failure came) within wide bands around what was
//! measured, never exact numbers.
//!
//! They run on 127.0.0.1 ports of this host, with no root needed; running them in the lab of
//! network-namespace hosts with an agent on each (as issue 5 asks) is still to do. A test skips,
//! saying why, when its server's binary is missing (`.ci/run` installs them).

use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};

use crate::load::{LoadSample, load_samples};
use crate::support::{Output, Test, assert_none_left, free_port};

const HAPROXY: &str = "/usr/sbin/haproxy";
const NGINX: &str = "/usr/sbin/nginx";

fn drill(path: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/drills")).join(path)
}

fn have_or_skip(binary: &str, package: &str) -> bool {
    if Path::new(binary).exists() {
        true
    } else {
        println!("skipped: needs {binary} (apt-get install {package})");
        false
    }
}

/// Runs a drill on ports of its own, its sandbox in the test's folder; returns the run's output
/// and its backends' ports.
fn run_drill(path: &str, binary_var: &str, binary: &str) -> (Output, Test, [u16; 2]) {
    let (proxy, a, b) = (free_port(), free_port(), free_port());
    let t = Test::new().scenario_file(drill(path));
    let sandbox = t.path("sandbox");
    let t = t
        .var("PROXY_PORT", proxy)
        .var("BACKEND_A_PORT", a)
        .var("BACKEND_B_PORT", b)
        .var("DRILL_DIR", sandbox.display())
        .var(binary_var, binary);
    let out = t.run();
    (out, t, [a, b])
}

/// Everything the drill started is gone: its backends and its sandbox folder.
fn assert_cleaned_up(t: &Test, backends: [u16; 2]) {
    for port in backends {
        assert_none_left(&format!("--port {port}"));
    }
    assert!(!t.path("sandbox").exists(), "teardown left the sandbox");
}

fn kill_time(report: &serde_json::Value) -> DateTime<FixedOffset> {
    let at = report["steps"][0]["faults"][0]["applied_at"]
        .as_str()
        .expect("applied_at");
    DateTime::parse_from_rfc3339(at).expect("applied_at is RFC 3339")
}

fn failed(samples: &[LoadSample]) -> u64 {
    samples.iter().map(LoadSample::failed).sum()
}

#[test]
fn haproxy_with_redispatch_passes_with_at_most_an_in_flight_failure() {
    if !have_or_skip(HAPROXY, "haproxy") {
        return;
    }
    let (out, t, backends) = run_drill("haproxy/drill.yaml", "HAPROXY", HAPROXY);
    out.code(0);
    let r = out.report();
    r.verdict("passed", None);
    let samples = load_samples(&r.json, "users get answers");
    // Measured: 0 failed requests; one request in flight at the kill may fail.
    assert!(failed(&samples) <= 2, "{samples:#?}");
    assert!(
        samples.len() >= 2 && samples.iter().all(|s| s.sent == 20),
        "{samples:#?}"
    );
    assert_cleaned_up(&t, backends);
}

#[test]
fn haproxy_without_redispatch_deviates_with_503s_for_seconds() {
    if !have_or_skip(HAPROXY, "haproxy") {
        return;
    }
    let (out, t, backends) = run_drill("haproxy/drill-no-redispatch.yaml", "HAPROXY", HAPROXY);
    out.code(1);
    let r = out.report();
    r.verdict("deviated", Some("hypothesis"));
    let samples = load_samples(&r.json, "users get answers");
    // Measured: 9-10 of the 20 requests of the second after the kill fail with a 503 (the ones
    // sent to the dead backend, retried there until HAProxy gives up), the last about 3.9 s after
    // the kill.
    let n = failed(&samples);
    assert!((3..=20).contains(&n), "{n} failed requests: {samples:#?}");
    let bad = samples.iter().find(|s| !s.ok).expect("a failing sample");
    assert!(bad.reason.contains("status 503"), "{}", bad.reason);
    let last = samples
        .iter()
        .filter_map(LoadSample::last_failure_at)
        .max()
        .expect("a failure time");
    let after = (last - kill_time(&r.json)).num_milliseconds();
    assert!(
        (1500..=7000).contains(&after),
        "the last failure came {after} ms after the kill: {samples:#?}"
    );
    // Then HAProxy's checks took the backend out: the samples after are clean.
    assert!(samples.last().expect("samples").ok, "{samples:#?}");
    // Open loop across samples too: a burst starts every second even while the one before waits
    // seconds for its 503s, so no traffic gap hides failures.
    for pair in samples.windows(2) {
        let gap = (pair[1].at - pair[0].at).num_milliseconds();
        assert!(
            (800..=1300).contains(&gap),
            "{gap} ms between bursts: {samples:#?}"
        );
    }
    assert_cleaned_up(&t, backends);
}

#[test]
fn nginx_with_next_upstream_passes_with_no_failed_request() {
    if !have_or_skip(NGINX, "nginx-light") {
        return;
    }
    let (out, t, backends) = run_drill("nginx/drill.yaml", "NGINX", NGINX);
    out.code(0);
    let r = out.report();
    r.verdict("passed", None);
    let samples = load_samples(&r.json, "users get answers");
    // Measured: 0 failed requests.
    assert!(failed(&samples) <= 1, "{samples:#?}");
    assert_cleaned_up(&t, backends);
}

#[test]
fn nginx_with_next_upstream_off_deviates_with_a_few_502s() {
    if !have_or_skip(NGINX, "nginx-light") {
        return;
    }
    let (out, t, backends) = run_drill("nginx/drill-next-upstream-off.yaml", "NGINX", NGINX);
    out.code(1);
    let r = out.report();
    r.verdict("deviated", Some("hypothesis"));
    let samples = load_samples(&r.json, "users get answers");
    // Measured: 1 failed request (a 502) per kill: the first that meets the dead server, which
    // then stays out of the upstream for `fail_timeout` (10 s, longer than the drill).
    let n = failed(&samples);
    assert!((1..=4).contains(&n), "{n} failed requests: {samples:#?}");
    let bad = samples.iter().find(|s| !s.ok).expect("a failing sample");
    assert!(bad.reason.contains("status 502"), "{}", bad.reason);
    let last = samples
        .iter()
        .filter_map(LoadSample::last_failure_at)
        .max()
        .expect("a failure time");
    let after = (last - kill_time(&r.json)).num_milliseconds();
    assert!(
        (0..=2000).contains(&after),
        "the last failure came {after} ms after the kill: {samples:#?}"
    );
    assert_cleaned_up(&t, backends);
}

#[test]
fn the_http_drills_validate_even_where_the_servers_are_not_installed() {
    let test = Test::new();
    for name in [
        "haproxy/drill.yaml",
        "haproxy/drill-no-redispatch.yaml",
        "nginx/drill.yaml",
        "nginx/drill-next-upstream-off.yaml",
    ] {
        let path = drill(name).display().to_string();
        test.cmd(&["validate", &path]).code(0).stdout_has(": ok");
    }
}
