//! The HTTP failover drills of `scenarios/drills/`, run as shipped against the real
//! servers from Debian's packages: HAProxy with and without `option redispatch` and with a slow
//! backend, nginx with `proxy_next_upstream error timeout` and `off`. Each test asserts the verdict
//! and the facts of the report (failed requests, when the failures came, latencies) within wide
//! bands around what was measured, never exact numbers.
//!
//! They run in the lab of network-namespace hosts with an agent on each (`chaos_tests::lab`): the proxy
//! on h1, backend a on h2, backend b on h3, each started there through the drill's `ON_<ROLE>`
//! prefix, and each fault done by the agent of the backend's host; the `load` probe runs on the
//! controller. One test runs `haproxy/drill.yaml` as shipped on 127.0.0.1, with no lab and no
//! root, to prove the defaults. A test skips, saying why, when its server's binary is missing
//! (`.ci/run` installs them) or when the lab cannot be built (not root, a tool missing).

use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, FixedOffset};

use crate::load::{LoadSample, load_samples};
use chaos_tests::lab::Lab;
use chaos_tests::support::{Output, Report, Test, assert_none_left, free_port};

const HAPROXY: &str = "/usr/sbin/haproxy";
const NGINX: &str = "/usr/sbin/nginx";

fn drill(path: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/drills")).join(path)
}

fn have_or_skip(binary: &str, package: &str) -> bool {
    chaos_tests::skip::unless_installed(&[binary], package)
}

/// A drill's run, and what the test needs to check it.
struct Run {
    out: Output,
    t: Test,
    backends: [u16; 2],
}

/// Ports of its own, its sandbox in the test's folder, the server's binary.
fn with_ports(t: Test, binary_var: &str, binary: &str) -> (Test, [u16; 2]) {
    // Three different ports: `free_port` may hand out a port again once it is closed, and two
    // backends on one port would match one kill pattern.
    let proxy = free_port();
    let a = distinct_port(&[proxy]);
    let b = distinct_port(&[proxy, a]);
    let sandbox = t.path("sandbox");
    let t = t
        .var("PROXY_PORT", proxy)
        .var("BACKEND_A_PORT", a)
        .var("BACKEND_B_PORT", b)
        .var("DRILL_DIR", sandbox.display())
        .var(binary_var, binary);
    (t, [a, b])
}

fn distinct_port(taken: &[u16]) -> u16 {
    (0..100)
        .map(|_| free_port())
        .find(|p| !taken.contains(p))
        .expect("a free port not taken yet")
}

/// Runs a drill as it ships, on 127.0.0.1 through the `local` agent.
fn run_local(path: &str, binary_var: &str, binary: &str) -> Run {
    let (t, backends) = with_ports(Test::new().scenario_file(drill(path)), binary_var, binary);
    let out = timed(path, || t.run());
    Run { out, t, backends }
}

/// The lab's roles: the proxy on h1, backend a on h2, backend b on h3.
const ROLES: [(&str, &str); 3] = [("PROXY", "h1"), ("BACKEND_A", "h2"), ("BACKEND_B", "h3")];

/// Runs a drill as it ships in the lab: each role's server started on its host with `ON_<ROLE>`,
/// reached at `<ROLE>_ADDR`, its faults done by the agent of `<ROLE>_HOST`.
fn run_in_lab(
    lab: &Lab,
    path: &str,
    binary_var: &str,
    binary: &str,
    extra: &[(&str, &str)],
) -> Run {
    let mut t = lab.test_file(drill(path));
    for (role, host) in ROLES {
        t = t
            .var(&format!("{role}_HOST"), host)
            .var(&format!("{role}_ADDR"), &lab.host(host).addr)
            .var(&format!("ON_{role}"), lab.exec_prefix(host));
    }
    for (name, value) in extra {
        t = t.var(name, value);
    }
    let (t, backends) = with_ports(t, binary_var, binary);
    let out = timed(path, || t.run());
    Run { out, t, backends }
}

/// Runs a drill, printing how long it took and its report's figures (for the docs, and to read a
/// failure in CI's log): the step's outcome, and each load sample's time and reason.
fn timed(what: &str, run: impl FnOnce() -> Output) -> Output {
    let start = Instant::now();
    let out = run();
    println!(
        "{what}: the run took {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let Some(folder) = out.stdout.lines().last().map(|l| PathBuf::from(l.trim())) else {
        return out;
    };
    let Ok(text) = std::fs::read_to_string(folder.join("report.json")) else {
        return out;
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
        return out;
    };
    let step = &json["steps"][0];
    println!(
        "  verdict {}, impact {} ms, recovery {} ms; fault {} .. {}",
        json["verdict"],
        step["impact_ms"],
        step["recovery_ms"],
        step["faults"][0]["applied_at"],
        step["faults"][0]["reverted_at"]
    );
    println!("  reason: {}", json["reason"]);
    chaos_tests::support::print_impact(&json);
    for probe in json["probes"].as_array().into_iter().flatten() {
        for sample in probe["samples"].as_array().into_iter().flatten() {
            println!("  {} {}", sample["at"], sample["reason"]);
        }
    }
    out
}

impl Run {
    /// Everything the drill started is gone: its backends and its sandbox folder.
    fn assert_cleaned_up(&self) {
        for port in self.backends {
            assert_none_left(&format!("--port {port}"));
        }
        assert!(
            !self.t.path("sandbox").exists(),
            "teardown left the sandbox"
        );
    }
}

fn time(report: &serde_json::Value, key: &str) -> DateTime<FixedOffset> {
    let at = report["steps"][0]["faults"][0][key]
        .as_str()
        .unwrap_or_else(|| panic!("{key}"));
    DateTime::parse_from_rfc3339(at).expect("RFC 3339")
}

fn kill_time(report: &serde_json::Value) -> DateTime<FixedOffset> {
    time(report, "applied_at")
}

fn failed(samples: &[LoadSample]) -> u64 {
    samples.iter().map(LoadSample::failed).sum()
}

/// The host the step's fault was done on.
fn fault_host(r: &Report) -> String {
    r.json["steps"][0]["faults"][0]["host"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// When the last failure came, in ms after the kill.
fn last_failure_after_kill(r: &Report, samples: &[LoadSample]) -> i64 {
    let last = samples
        .iter()
        .filter_map(LoadSample::last_failure_at)
        .max()
        .expect("a failure time");
    (last - kill_time(&r.json)).num_milliseconds()
}

// ---- HAProxy ----------------------------------------------------------------------------------

fn assert_redispatch_passes(run: &Run) {
    run.out.code(0);
    let r = run.out.report();
    r.verdict("passed", None);
    let samples = load_samples(&r.json, "users get answers");
    // Measured: 0 failed requests; one request in flight at the kill may fail.
    assert!(failed(&samples) <= 2, "{samples:#?}");
    assert!(
        samples.len() >= 2 && samples.iter().all(|s| s.sent == 20),
        "{samples:#?}"
    );
    run.assert_cleaned_up();
}

#[test]
fn haproxy_drill_as_shipped_passes_on_127_0_0_1() {
    if !have_or_skip(HAPROXY, "haproxy") {
        return;
    }
    let run = run_local("haproxy/drill.yaml", "HAPROXY", HAPROXY);
    assert_eq!(fault_host(&run.out.report()), "local");
    assert_redispatch_passes(&run);
}

#[test]
fn lab_haproxy_with_redispatch_passes_with_at_most_an_in_flight_failure() {
    if !have_or_skip(HAPROXY, "haproxy") {
        return;
    }
    let Some(lab) = Lab::new() else { return };
    let run = run_in_lab(&lab, "haproxy/drill.yaml", "HAPROXY", HAPROXY, &[]);
    assert_eq!(
        fault_host(&run.out.report()),
        "h2",
        "the kill is h2's agent's"
    );
    assert_redispatch_passes(&run);
}

#[test]
fn lab_haproxy_without_redispatch_deviates_with_503s_for_seconds() {
    if !have_or_skip(HAPROXY, "haproxy") {
        return;
    }
    let Some(lab) = Lab::new() else { return };
    let run = run_in_lab(
        &lab,
        "haproxy/drill-no-redispatch.yaml",
        "HAPROXY",
        HAPROXY,
        &[],
    );
    run.out.code(1);
    let r = run.out.report();
    r.verdict("deviated", Some("hypothesis"));
    assert_eq!(fault_host(&r), "h2");
    // The reason names the probe that missed the deadline, even when it held again by the time
    // the check was decided (it once ended with an empty list after the colon).
    let reason = r.reason();
    assert!(
        reason.contains("`users get answers` on local: "),
        "{reason}"
    );
    let samples = load_samples(&r.json, "users get answers");
    // Measured: 9-10 of the 20 requests of the second after the kill fail with a 503 (the ones
    // sent to the dead backend, retried there until HAProxy gives up), the last about 3.9 s after
    // the kill.
    let n = failed(&samples);
    assert!((3..=20).contains(&n), "{n} failed requests: {samples:#?}");
    let bad = samples.iter().find(|s| !s.ok).expect("a failing sample");
    assert!(bad.reason.contains("status 503"), "{}", bad.reason);
    let after = last_failure_after_kill(&r, &samples);
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
    run.assert_cleaned_up();
}

/// The slowest answers a sample's reason names: `3× 200 in 402 ms, slower than max_latency ...`
/// (its three most frequent failure causes), in ms.
fn slow_answers_ms(sample: &LoadSample) -> Vec<f64> {
    sample
        .reason
        .split("200 in ")
        .skip(1)
        .filter_map(|rest| {
            let (number, unit) = rest.split_once(' ')?;
            let value: f64 = number.parse().ok()?;
            unit.starts_with("ms, slower")
                .then_some(value)
                .or_else(|| unit.starts_with("s, slower").then_some(value * 1000.0))
        })
        .collect()
}

#[test]
fn lab_haproxy_with_a_slow_backend_slows_half_the_users_until_the_latency_goes() {
    if !have_or_skip(HAPROXY, "haproxy") {
        return;
    }
    let Some(lab) = Lab::new() else { return };
    let run = run_in_lab(
        &lab,
        "haproxy/drill-latency.yaml",
        "HAPROXY",
        HAPROXY,
        &[("BACKEND_B_INTERFACE", "eth0")],
    );
    run.out.code(0);
    let r = run.out.report();
    // The verdict is about the after-check: users get fast answers again once the latency is
    // removed. What the fault did to them is in the impact and the samples.
    r.verdict("passed", None);
    let fault = &r.json["steps"][0]["faults"][0];
    assert_eq!(fault["host"], "h3", "the latency is h3's agent's");
    assert_eq!(fault["mechanism"], "nfqueue", "{fault:#}");
    assert!(
        r.json["steps"][0]["impact_ms"].as_u64().is_some(),
        "the hypothesis broke while backend b was slow: {:#}",
        r.json["steps"][0]
    );
    let (applied, reverted) = (time(&r.json, "applied_at"), time(&r.json, "reverted_at"));
    let samples = load_samples(&r.json, "users get fast answers");
    // Samples wholly inside the fault (sent from after it was applied, answered before its revert).
    let during: Vec<&LoadSample> = samples
        .iter()
        .filter(|s| s.at > applied && s.at + chrono::Duration::milliseconds(1500) < reverted)
        .collect();
    assert!(during.len() >= 2, "samples during the fault: {samples:#?}");
    for s in &during {
        // Measured: 10 of 20 requests (round robin's half for backend b) at 400-410 ms: two round
        // trips (connect, then the request) each 200 ms longer; the rest at 1-2 ms.
        assert!(!s.ok, "{}", s.reason);
        assert!((4..=16).contains(&s.failed()), "{}", s.reason);
        let slow = slow_answers_ms(s);
        assert!(!slow.is_empty(), "no slow answer named: {}", s.reason);
        for ms in slow {
            assert!(
                (190.0..=900.0).contains(&ms),
                "an answer in {ms} ms is not about 200 ms per round trip: {}",
                s.reason
            );
        }
    }
    // After the revert: every answer fast again.
    let after: Vec<&LoadSample> = samples.iter().filter(|s| s.at > reverted).collect();
    assert!(
        !after.is_empty(),
        "no sample after the revert: {samples:#?}"
    );
    let last = after.last().expect("a sample");
    assert!(last.ok && last.failed() == 0, "{}", last.reason);
    run.assert_cleaned_up();
    // Dropping the lab checks that no nft table or iptables chain of ours is left.
    drop(lab);
}

// ---- nginx ------------------------------------------------------------------------------------

#[test]
fn lab_nginx_with_next_upstream_passes_with_no_failed_request() {
    if !have_or_skip(NGINX, "nginx-light") {
        return;
    }
    let Some(lab) = Lab::new() else { return };
    let run = run_in_lab(&lab, "nginx/drill.yaml", "NGINX", NGINX, &[]);
    run.out.code(0);
    let r = run.out.report();
    r.verdict("passed", None);
    assert_eq!(fault_host(&r), "h2");
    let samples = load_samples(&r.json, "users get answers");
    // Measured: 0 failed requests.
    assert!(failed(&samples) <= 1, "{samples:#?}");
    run.assert_cleaned_up();
}

#[test]
fn lab_nginx_with_next_upstream_off_deviates_with_a_502_per_kill_and_one_per_retry() {
    if !have_or_skip(NGINX, "nginx-light") {
        return;
    }
    let Some(lab) = Lab::new() else { return };
    let run = run_in_lab(
        &lab,
        "nginx/drill-next-upstream-off.yaml",
        "NGINX",
        NGINX,
        &[],
    );
    run.out.code(1);
    let r = run.out.report();
    r.verdict("deviated", Some("hypothesis"));
    assert_eq!(fault_host(&r), "h2");
    let samples = load_samples(&r.json, "users get answers");
    let bad: Vec<&LoadSample> = samples.iter().filter(|s| !s.ok).collect();
    assert!(!bad.is_empty(), "{samples:#?}");
    for s in &bad {
        assert!(s.reason.contains("status 502"), "{}", s.reason);
    }
    // Measured: 1 failed request (a 502) right after the kill, the first that meets the dead
    // server, which takes it out of the upstream for `fail_timeout` (10 s); then one more when
    // nginx tries it again, 10.2-10.9 s after the first (the drill holds the step 13 s for it).
    let n = failed(&samples);
    assert!((2..=6).contains(&n), "{n} failed requests: {samples:#?}");
    let first = bad[0].last_failure_at().expect("a failure time");
    let first_after = (first - kill_time(&r.json)).num_milliseconds();
    assert!(
        (0..=2000).contains(&first_after),
        "the first failure came {first_after} ms after the kill: {samples:#?}"
    );
    let retry = bad
        .iter()
        .filter_map(|s| s.last_failure_at())
        .map(|at| (at - first).num_milliseconds())
        .find(|ms| *ms > 5000)
        .unwrap_or_else(|| panic!("no failure at nginx's retry: {samples:#?}"));
    assert!(
        (9000..=12_000).contains(&retry),
        "the retry's failure came {retry} ms after the first: {samples:#?}"
    );
    // Between them, clean seconds: the dead server was out of the upstream.
    let quiet = samples
        .iter()
        .filter(|s| {
            let from_first = (s.at - first).num_milliseconds();
            (1500..8000).contains(&from_first)
        })
        .collect::<Vec<_>>();
    assert!(
        quiet.len() >= 4 && quiet.iter().all(|s| s.ok),
        "{samples:#?}"
    );
    run.assert_cleaned_up();
}

#[test]
fn the_http_drills_validate_even_where_the_servers_are_not_installed() {
    let test = Test::new();
    for name in [
        "haproxy/drill.yaml",
        "haproxy/drill-no-redispatch.yaml",
        "haproxy/drill-latency.yaml",
        "nginx/drill.yaml",
        "nginx/drill-next-upstream-off.yaml",
    ] {
        let path = drill(name).display().to_string();
        test.cmd(&["validate", &path]).code(0).stdout_has(": ok");
    }
}

// ---- HTTP 503s and retries: the `http` fault ---------------------------------------------------

/// What the `http` fault's proxy did, from the revert's detail: (aborted, requests).
fn proxy_counts(t: &Test) -> (u64, u64) {
    let events = std::fs::read_to_string(t.run_folder().join("events.jsonl")).expect("events");
    let said = events
        .lines()
        .find_map(|l| l.split("the proxy passed ").nth(1))
        .unwrap_or_else(|| panic!("no proxy figures in:\n{events}"))
        .to_string();
    let number_before = |word: &str| -> u64 {
        said.split(word)
            .next()
            .and_then(|s| {
                s.trim_end()
                    .rsplit(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    };
    println!("  the proxy passed {said}");
    (number_before(" aborted"), number_before(" requests"))
}

#[test]
fn lab_http_503_with_retry_on_503_passes_with_no_failed_request() {
    if !have_or_skip(HAPROXY, "haproxy") {
        return;
    }
    let Some(lab) = Lab::new() else { return };
    let run = run_in_lab(&lab, "http-503-retries/drill.yaml", "HAPROXY", HAPROXY, &[]);
    run.out.code(0);
    let r = run.out.report();
    r.verdict("passed", None);
    assert_eq!(fault_host(&r), "h2");
    let samples = load_samples(&r.json, "users get answers");
    assert_eq!(failed(&samples), 0, "{samples:#?}");
    // The fault did hit: about half of backend a's share of the requests.
    let (aborted, requests) = proxy_counts(&run.t);
    assert!(
        aborted >= 10 && aborted < requests,
        "{aborted} of {requests} aborted"
    );
    run.assert_cleaned_up();
}

#[test]
fn lab_http_503_without_retry_on_503_deviates_with_the_aborted_requests_failed() {
    if !have_or_skip(HAPROXY, "haproxy") {
        return;
    }
    let Some(lab) = Lab::new() else { return };
    let run = run_in_lab(
        &lab,
        "http-503-retries/drill-no-retries.yaml",
        "HAPROXY",
        HAPROXY,
        &[],
    );
    run.out.code(1);
    let r = run.out.report();
    assert_eq!(r.json["verdict"], "deviated", "{}", r.reason());
    let samples = load_samples(&r.json, "users get answers");
    let n = failed(&samples);
    let (aborted, requests) = proxy_counts(&run.t);
    // Every request the fault aborted reached a user as a 503: a quarter of the ~100 sent in 5 s.
    assert!((10..=50).contains(&n), "{n} failed requests: {samples:#?}");
    assert_eq!(n, aborted, "{n} failed, {aborted} aborted of {requests}");
    let bad = samples.iter().find(|s| !s.ok).expect("a failing sample");
    assert!(bad.reason.contains("status 503"), "{}", bad.reason);
    run.assert_cleaned_up();
}
