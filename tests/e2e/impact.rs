//! What users went through (spec v1.1: impact, objectives, guardrails before anything is
//! injected), end to end through the built binaries: a step that passes its after-check while
//! requests failed says so everywhere, an objective turns that into `deviated`, a drop shows its
//! outage, and a guardrail that fails before the first step injects nothing.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use chaos_tests::lab::{Echo, Lab};
use chaos_tests::support::{Sleeper, Test, assert_none_left, free_port, pattern, proc_state};

const NGINX: &str = "/usr/sbin/nginx";

fn nginx_sandbox() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/drills/nginx/sandbox.sh"
    ))
}

/// The probe `name`'s figures on `host` in step `index`.
#[track_caller]
fn impact<'a>(report: &'a Value, index: usize, name: &str, host: &str) -> &'a Value {
    report["steps"][index]["impact"]
        .as_array()
        .expect("impact")
        .iter()
        .find(|i| i["probe"] == name && i["host"] == host)
        .unwrap_or_else(|| {
            panic!(
                "no impact of `{name}` on {host}: {}",
                report["steps"][index]
            )
        })
}

#[track_caller]
fn u64_of(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// nginx in front of two chaos-demo backends on 127.0.0.1 (failing requests passed on with
/// `proxy_next_upstream error timeout`), 20 requests a second through it; backend b is hung
/// (SIGSTOP) for 2 s. nginx waits on the hung backend far longer than the probe's 700 ms, so
/// about half of the requests of those seconds fail, and once it is resumed everything answers:
/// the after-check passes.
fn hung_backend_yaml(objectives: &str) -> String {
    format!(
        r#"version: 1
name: nginx hung backend
description: Hang one of two nginx upstream servers for 2 s; users must keep getting answers.
setup:
  - name: nginx config
    run: ["{sandbox}", up, "${{DIR}}", "127.0.0.1:${{PROXY}}", "127.0.0.1:${{A}}", "127.0.0.1:${{B}}", "error timeout", "{NGINX}"]
  - name: backend a
    run: [chaos-demo, --port, "${{A}}", --workers, "1"]
    background: true
    ready: {{http: {{url: "http://127.0.0.1:${{A}}/health"}}, within: 10s}}
  - name: backend b
    run: [chaos-demo, --port, "${{B}}", --workers, "1"]
    background: true
    ready: {{http: {{url: "http://127.0.0.1:${{B}}/health"}}, within: 10s}}
  - name: nginx
    run: ["{NGINX}", -p, "${{DIR}}", -e, "${{DIR}}/logs/error.log", -c, "${{DIR}}/nginx.conf"]
    background: true
    ready: {{http: {{url: "http://127.0.0.1:${{PROXY}}/health"}}, within: 10s}}
steady_state:
  - name: users get answers
    load: {{url: "http://127.0.0.1:${{PROXY}}/", rate: 20/s, timeout: 700ms}}
    expect: {{status: 200}}
    every: 1s
    window: 1s
{objectives}
steps:
  - name: hang backend b
    target: local
    fault: {{pause: {{process: {{pattern: "chaos-demo --worker --port ${{B}}$"}}}}}}
    duration: 2s
    recover_within: 3s
teardown:
  - name: remove the sandbox
    run: ["{sandbox}", down, "${{DIR}}"]
"#,
        sandbox = nginx_sandbox().display(),
    )
}

fn hung_backend(objectives: &str) -> Option<(Test, [u16; 3])> {
    if !chaos_tests::skip::unless_installed(&[NGINX], "nginx-light") {
        return None;
    }
    // Three different ports (the kernel may hand one out twice).
    let ports = loop {
        let ports = [free_port(), free_port(), free_port()];
        if ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2] {
            break ports;
        }
    };
    let t = Test::new().scenario(&hung_backend_yaml(objectives));
    let dir = t.path("sandbox");
    let t = t
        .var("PROXY", ports[0])
        .var("A", ports[1])
        .var("B", ports[2])
        .var("DIR", dir.display());
    Some((t, ports))
}

#[test]
fn a_hung_backend_passes_the_after_check_and_still_shows_what_users_went_through() {
    let Some((t, ports)) = hung_backend("") else {
        return;
    };
    let out = t.run();
    out.code(0);
    let r = out.report();
    r.verdict("passed", None);
    let users = impact(&r.json, 0, "users get answers", "local");
    assert_eq!(users["counts"], "requests", "{users}");
    let (taken, failed) = (u64_of(users, "taken"), u64_of(users, "failed"));
    // About half of 2 s of requests (20/s) fail while b hangs; requests are counted, not bursts.
    assert!(
        (8..=60).contains(&failed),
        "{failed} of {taken} failed: {users}"
    );
    assert!(taken >= 60, "{taken} requests in the step: {users}");
    let outage = u64_of(users, "longest_outage_ms");
    assert!(
        (1000..=4500).contains(&outage),
        "outage {outage} ms: {users}"
    );
    println!("a 2 s hang behind nginx: {users}");
    assert_eq!(users["restored"], true, "{users}");
    assert!(u64_of(users, "error_ms") >= outage - 1, "{users}");
    assert!(users["restore_ms"].is_u64(), "{users}");
    assert_eq!(users["load"]["failed"], failed, "{users}");
    assert!(users["load"]["p50_ms"].as_f64().is_some(), "{users}");
    // Failed requests are timeouts, counted by what became of them.
    let statuses = users["load"]["statuses"].as_object().expect("statuses");
    assert!(statuses.contains_key("200"), "{statuses:?}");
    assert!(
        statuses.keys().any(|k| k.starts_with("timed out")),
        "{statuses:?}"
    );
    // A passed step with failures never reads as a clean pass: not on the terminal, not in the
    // events.
    out.stdout_has(&format!("passed, {failed} of {taken} requests failed"));
    let held = r.json["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| {
            e["kind"] == "check_held"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("hang backend b"))
        })
        .expect("the after-check's event");
    assert!(
        held["message"]
            .as_str()
            .unwrap()
            .contains("requests failed"),
        "{held}"
    );
    // Every burst's figures are per request: no burst length passes for a latency.
    for sample in r.json["probes"][0]["samples"].as_array().expect("samples") {
        assert_eq!(sample["load"]["sent"], 20, "{sample}");
    }
    for port in ports {
        assert_none_left(&format!("--port {port}"));
    }
}

#[test]
fn an_outage_longer_than_max_outage_is_deviated_with_cause_objective() {
    let Some((t, _)) = hung_backend("objectives: {max_outage: 500ms, max_failed: 1%}") else {
        return;
    };
    let out = t.run();
    out.code(1);
    let r = out.report();
    r.verdict("deviated", Some("objective"));
    let reason = r.reason();
    assert!(
        reason.contains("max_outage: `users get answers` on local: longest outage")
            && reason.contains("over 500ms"),
        "{reason}"
    );
    assert!(
        reason.contains("max_failed: `users get answers` on local: "),
        "{reason}"
    );
    let step = r.step(0);
    assert_eq!(step["status"], "deviated", "{step}");
    // The after-check itself held: the miss is the objective's alone.
    assert_eq!(step["after"]["held"], true, "{step}");
    let objectives = &step["objectives"];
    assert_eq!(objectives["max_outage_ms"], 500, "{objectives}");
    let misses: Vec<&str> = objectives["misses"]
        .as_array()
        .expect("misses")
        .iter()
        .filter_map(|m| m["objective"].as_str())
        .collect();
    assert_eq!(misses, ["max_outage", "max_failed"], "{objectives}");
    out.stdout_has("max_outage");
}

#[test]
fn a_drop_that_refuses_every_connection_for_3s_shows_an_outage_of_about_3s() {
    let Some(lab) = Lab::new() else { return };
    let server = Echo::start(&lab, "h1");
    let yaml = format!(
        r#"version: 1
name: impact of a drop
settings: {{lease: 2s}}
steady_state:
  - name: h1 accepts
    tcp: {{address: "{addr}", timeout: 200ms}}
    every: 100ms
    window: 300ms
steps:
  - name: refuse every connection to h1
    target: h1
    fault: {{drop: {{mode: reject}}}}
    duration: 3s
    recover_within: 2s
"#,
        addr = server.addr
    );
    let t = lab.test(&yaml);
    let out = t.run();
    out.code(0);
    let r = out.report();
    r.verdict("passed", None);
    let accepts = impact(&r.json, 0, "h1 accepts", "local");
    let outage = u64_of(accepts, "longest_outage_ms");
    println!("a 3 s drop: {accepts}");
    // 3 s of drop, give or take a sample and the time to apply and revert.
    assert!(
        (2700..=3600).contains(&outage),
        "outage {outage} ms: {accepts}"
    );
    assert_eq!(accepts["restored"], true, "{accepts}");
    assert_eq!(
        accepts["outages"].as_array().map(Vec::len),
        Some(1),
        "{accepts}"
    );
    let error = u64_of(accepts, "error_ms");
    assert!(
        (2700..=3600).contains(&error),
        "error {error} ms: {accepts}"
    );
    // The step passed its after-check, and says what users went through.
    out.stdout_has("passed, ");
    out.stdout_has("samples failed, longest outage ");
}

#[test]
fn a_guardrail_that_fails_before_the_first_step_gives_exit_4_and_injects_nothing() {
    let victim = Sleeper::spawn("guard-first");
    let closed = free_port();
    let yaml = format!(
        r#"version: 1
name: guardrail before
guardrails:
  - name: error budget
    # A typo'd port: nothing listens there.
    tcp: {{address: "127.0.0.1:{closed}", timeout: 200ms}}
    every: 100ms
    window: 200ms
steps:
  - name: pause the victim
    target: local
    fault: {{pause: {{process: {{pattern: "{pattern}"}}}}}}
    duration: 2s
"#,
        pattern = pattern("guard-first")
    );
    let t = Test::new().scenario(&yaml);
    let out = t.run();
    out.code(4);
    let r = out.report();
    r.verdict("not_steady", Some("guardrail"));
    assert!(
        r.reason().contains("guardrail `error budget` on local")
            && r.reason().contains("nothing was injected"),
        "{}",
        r.reason()
    );
    assert!(!r.has_event("fault_applied"), "{:?}", r.event_kinds());
    assert!(r.json["breaches"].as_array().is_some_and(Vec::is_empty));
    let before = &r.step(0)["before"];
    assert_eq!(before["held"], false, "{before}");
    assert!(
        before["probes"]
            .as_array()
            .expect("probes")
            .iter()
            .any(|p| p["guardrail"] == true && p["held"] == false),
        "{before}"
    );
    // Never stopped.
    std::thread::sleep(Duration::from_millis(50));
    assert_ne!(proc_state(victim.pid), Some('T'));
}
