//! Every verdict, cause and exit code of `chaosctl run` (spec: "Verdicts and exit codes").

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use chaos_tests::skip;
use chaos_tests::support::{
    Report, Sleeper, Test, Tmpfs, assert_none_left, assert_resumed, free_port, pattern,
    pids_ending_with, read_events, unique,
};

pub fn shipped(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios")).join(name)
}

#[track_caller]
fn rfc3339_utc(value: &Value, what: &str) -> chrono::DateTime<chrono::FixedOffset> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"));
    let at = chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{what} `{text}` is not RFC 3339: {e}"));
    assert_eq!(
        at.offset().local_minus_utc(),
        0,
        "{what} `{text}` is not UTC"
    );
    at
}

fn sha256_of(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn quickstart_passes_exit_0_with_every_report_field() {
    let port = free_port();
    let t = Test::new()
        .scenario_file(shipped("quickstart.yaml"))
        .var("DEMO_PORT", port)
        .arg("--label")
        .arg("team=e2e")
        .arg("--label")
        .arg("ticket=GD-7");
    let out = t.run();
    out.code(0);
    let folder = out.folder();
    let r = out.report();
    r.verdict("passed", None);
    let j = &r.json;

    assert_eq!(j["schema"], "chaos.report/v1");
    let run_id = j["run_id"].as_str().expect("run_id");
    assert_eq!(folder.file_name().unwrap().to_str(), Some(run_id));
    assert_eq!(j["scenario"]["name"], "quickstart");
    assert_eq!(
        j["scenario"]["sha256"].as_str(),
        Some(sha256_of(&shipped("quickstart.yaml")).as_str())
    );
    assert!(!r.reason().is_empty());
    assert_eq!(j["seed"], json!("42"), "the seed is a decimal string");
    assert_eq!(j["labels"], json!({"team": "e2e", "ticket": "GD-7"}));
    assert!(!j["user"].as_str().expect("user").is_empty());
    assert!(!j["host"].as_str().expect("host").is_empty());
    let started = rfc3339_utc(&j["started_at"], "started_at");
    let ended = rfc3339_utc(&j["ended_at"], "ended_at");
    assert!(started <= ended);
    assert_eq!(j["faults_left"], json!([]));
    assert_eq!(j["breaches"], json!([]));
    assert!(!j["events"].as_array().expect("events").is_empty());

    let steps = j["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 1);
    let step = &steps[0];
    assert_eq!(step["name"], "kill every demo worker");
    assert_eq!(step["hosts"], json!(["local"]));
    assert_eq!(step["before"]["held"], true);
    assert_eq!(step["after"]["held"], true);
    assert!(
        step["impact_ms"].is_u64(),
        "impact_ms: {}",
        step["impact_ms"]
    );
    assert!(
        step["recovery_ms"].is_u64(),
        "recovery_ms: {}",
        step["recovery_ms"]
    );
    let faults = step["faults"].as_array().expect("faults");
    assert_eq!(faults.len(), 1);
    let f = &faults[0];
    rfc3339_utc(&f["applied_at"], "applied_at");
    rfc3339_utc(&f["reverted_at"], "reverted_at");
    assert_eq!(f["mechanism"], "signal");
    assert_eq!(f["verified"], true);

    // The other files of the folder, and `latest`.
    for name in ["report.md", "report.junit.xml"] {
        let text = fs::read_to_string(folder.join(name)).unwrap_or_default();
        assert!(!text.is_empty(), "{name} is missing or empty");
    }
    let junit = fs::read_to_string(folder.join("report.junit.xml")).unwrap();
    assert!(junit.contains("<testsuite"), "{junit}");
    let events = fs::read_to_string(folder.join("events.jsonl")).expect("events.jsonl");
    for line in events.lines() {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("events.jsonl line is not JSON ({e}): {line}"));
        assert!(event.is_object() && event["kind"].is_string(), "{line}");
    }
    assert!(events.lines().count() >= 3);
    let latest = fs::canonicalize(t.report_dir().join("latest")).expect("latest");
    assert_eq!(latest, fs::canonicalize(&folder).unwrap());
    // The demo service that setup started is stopped with its workers.
    assert_none_left(&format!("--port {port}"));
}

#[test]
fn deviates_exit_1_and_skips_the_later_step() {
    let port = free_port();
    let t = Test::new()
        .scenario_file(shipped("deviates.yaml"))
        .var("DEMO_PORT", port);
    let out = t.run();
    out.code(1);
    let r = out.report();
    r.verdict("deviated", Some("hypothesis"));
    assert_eq!(r.step(0)["status"], "deviated");
    assert!(r.step(0)["recovery_ms"].is_null());
    assert!(r.step(0)["impact_ms"].is_u64());
    assert_eq!(r.step(1)["status"], "skipped");
    assert!(r.step(1)["faults"][0]["applied_at"].is_null());
    assert_none_left(&format!("--port {port}"));
}

#[test]
fn not_steady_exit_4_injects_nothing() {
    let port = free_port();
    let t = Test::new()
        .scenario_file(shipped("not-steady.yaml"))
        .var("DEMO_PORT", port);
    let suffix = format!("--worker --port {port}");
    let run = t.spawn_run();
    // Every worker pid seen while the run goes on: a kill would make the supervisor start new ones.
    let mut seen = BTreeSet::new();
    let first = chaos_tests::eventually(Duration::from_secs(20), "two demo workers", || {
        let pids = pids_ending_with(&suffix);
        (pids.len() == 2).then_some(pids)
    });
    seen.extend(first.iter().copied());
    let folder = t.run_folder();
    while !read_events(&folder.join("events.jsonl"))
        .iter()
        .any(|e| e["kind"] == "check_failed" || e["kind"] == "run_ended")
    {
        seen.extend(pids_ending_with(&suffix));
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            run.started.elapsed() < Duration::from_secs(30),
            "no check result"
        );
    }
    let out = run.wait();
    out.code(4);
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        first,
        "the workers' pids changed"
    );
    let r = out.report();
    r.verdict("not_steady", Some("hypothesis"));
    assert!(!r.has_event("fault_applied"), "{:?}", r.event_kinds());
    for f in r.faults() {
        assert!(f["applied_at"].is_null(), "{f}");
    }
    assert_eq!(r.step(0)["before"]["held"], false);
    assert_none_left(&format!("--port {port}"));
}

/// Runs a scenario that kills one sleeper, its one probe (`command: true`) sampled every
/// `every` over `window`; the run must pass.
fn passed_kill_run(name: &str, every: &str, window: &str) -> Report {
    let tag = unique(name);
    let _sleeper = Sleeper::spawn(&tag);
    let yaml = format!(
        r#"version: 1
name: {name}
steady_state:
  - name: always
    command: {{run: "true"}}
    every: {every}
    window: {window}
steps:
  - name: kill it
    target: local
    fault: {{kill: {{process: {{pattern: "{}"}}}}}}
"#,
        pattern(&tag)
    );
    let t = Test::new().scenario(&yaml);
    let out = t.run();
    out.code(0);
    let r = out.report();
    r.verdict("passed", None);
    r
}

#[test]
fn the_first_before_check_samples_while_preflight_runs() {
    // Sampling starts as preflight does, so that the first window fills while preflight reaches
    // the agents: the before-check's window begins before preflight has passed.
    let r = passed_kill_run("early-check", "100ms", "300ms");
    let preflight = r.json["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["kind"] == "preflight_passed")
        .expect("a preflight_passed event");
    let passed = rfc3339_utc(&preflight["at"], "preflight_passed at");
    let before = &r.step(0)["before"];
    let started = rfc3339_utc(&before["started_at"], "before.started_at");
    assert!(
        started < passed,
        "the check started at {started}, preflight passed at {passed}"
    );
    assert_eq!(before["held"], true, "{before}");
}

#[test]
fn the_after_check_samples_as_the_fault_ends_not_at_the_next_turn() {
    // Sampled every 5 s: waiting for the probe's next turn would decide the after-check about
    // 5 s after the kill; asking for a sample as the fault ends decides it at once.
    let r = passed_kill_run("fresh-after", "5s", "5s");
    let step = r.step(0);
    let killed = rfc3339_utc(&step["faults"][0]["applied_at"], "applied_at");
    let decided = rfc3339_utc(&step["after"]["decided_at"], "after.decided_at");
    let waited = (decided - killed).num_milliseconds();
    assert!(
        (0..2500).contains(&waited),
        "the after-check was decided {waited} ms after the kill: {}",
        step["after"]
    );
    let samples = r.json["probes"][0]["samples"].as_array().expect("samples");
    assert!(
        samples
            .iter()
            .any(|s| rfc3339_utc(&s["at"], "sample at") >= killed),
        "no sample started after the kill: {samples:?}"
    );
}

fn pause_yaml(extra: &str, duration: &str) -> String {
    format!(
        r#"version: 1
name: pause-sleepers
steady_state:
  - name: always
    command: {{run: "true"}}
    every: 100ms
    window: 300ms
{extra}
steps:
  - name: pause the sleepers
    target: local
    fault: {{pause: {{process: {{pattern: "${{PAT}}"}}}}}}
    duration: {duration}
    recover_within: 2s
"#
    )
}

#[test]
fn guardrail_breach_aborts_exit_3_and_resumes_paused_processes() {
    let tag = unique("guard");
    let sleepers = Sleeper::spawn_many(&tag, 2);
    // Holds before the step (so the fault is injected) and fails once the sleepers are stopped:
    // a guardrail that failed before the first step would inject nothing (exit 4).
    let guard = r#"guardrails:
  - name: error budget
    command: {run: 'for p in $(pgrep -f "${PAT}"); do grep -q "^State:.*T" /proc/$p/status && exit 1; done; exit 0'}
    every: 100ms
    window: 300ms
"#;
    let t = Test::new()
        .scenario(&pause_yaml(guard, "20s"))
        .var("PAT", pattern(&tag));
    let out = t.run();
    out.code(3);
    assert!(
        out.elapsed < Duration::from_secs(12),
        "took {:?}",
        out.elapsed
    );
    let r = out.report();
    r.verdict("aborted", Some("guardrail"));
    let breaches = r.json["breaches"].as_array().expect("breaches");
    assert!(!breaches.is_empty());
    assert_eq!(breaches[0]["guardrail"], "error budget");
    assert!(r.has_event("fault_applied"));
    // The aborted step keeps what its probes saw until the abort.
    let step = r.step(0);
    assert_eq!(step["status"], "aborted", "{step}");
    let impact = &step["impact"][0];
    assert_eq!(impact["probe"], "always", "{step}");
    assert!(impact["taken"].as_u64().is_some_and(|n| n > 0), "{step}");
    assert!(step["impact_until"].is_string(), "{step}");
    let pids: Vec<i32> = sleepers.iter().map(|s| s.pid).collect();
    assert_resumed(&pids);
}

#[test]
fn setup_that_fails_is_error_5_setup() {
    let tag = unique("setup");
    let mut sleeper = Sleeper::spawn(&tag);
    let yaml = r#"version: 1
name: setup-fails
setup:
  - name: fails
    run: "false"
steps:
  - name: kill
    target: local
    fault: {kill: {process: {pattern: "${PAT}"}}}
"#;
    let t = Test::new().scenario(yaml).var("PAT", pattern(&tag));
    let out = t.run();
    out.code(5);
    let r = out.report();
    r.verdict("error", Some("setup"));
    assert!(!r.has_event("fault_applied"));
    assert!(sleeper.has_exited().is_none(), "the kill ran anyway");
}

#[test]
fn setup_never_ready_is_error_5_setup() {
    let tag = unique("ready");
    let mut sleeper = Sleeper::spawn(&tag);
    let yaml = r#"version: 1
name: never-ready
setup:
  - name: service that never gets ready
    run: [sleep, "30"]
    background: true
    ready: {command: {run: "false"}, within: 1s}
steps:
  - name: kill
    target: local
    fault: {kill: {process: {pattern: "${PAT}"}}}
"#;
    let t = Test::new().scenario(yaml).var("PAT", pattern(&tag));
    let out = t.run();
    out.code(5);
    assert!(
        out.elapsed < Duration::from_secs(10),
        "took {:?}",
        out.elapsed
    );
    let r = out.report();
    r.verdict("error", Some("setup"));
    assert!(r.reason().contains("ready"), "{}", r.reason());
    assert!(sleeper.has_exited().is_none(), "the kill ran anyway");
}

#[test]
fn a_fault_this_host_cannot_do_is_error_5_preflight() {
    // An interface that does not exist: preflight must refuse before anything is injected.
    let yaml = r#"version: 1
name: latency-here
steps:
  - name: slow everything down
    target: local
    fault: {latency: {delay: 100ms, to: {ports: [9]}, interface: chaos-nosuch0}}
    duration: 1s
"#;
    let t = Test::new().scenario(yaml);
    let out = t.run();
    out.code(5);
    let r = out.report();
    r.verdict("error", Some("preflight"));
    assert!(r.reason().contains("latency"), "{}", r.reason());
    assert!(!r.has_event("fault_applied"));
}

#[test]
fn remote_agent_host_is_error_5_preflight() {
    let tag = unique("remote");
    let mut sleeper = Sleeper::spawn(&tag);
    let yaml = r#"version: 1
name: remote-host
hosts:
  far-away: {agent: "https://127.0.0.1:9"}
steps:
  - name: kill far away
    target: far-away
    fault: {kill: {process: {pattern: "${PAT}"}}}
"#;
    let t = Test::new().scenario(yaml).var("PAT", pattern(&tag));
    let out = t.run();
    out.code(5);
    let r = out.report();
    r.verdict("error", Some("preflight"));
    assert!(r.reason().contains("far-away"), "{}", r.reason());
    assert!(!r.has_event("fault_applied"));
    assert!(sleeper.has_exited().is_none());
}

#[test]
fn process_gone_by_injection_is_error_5_apply() {
    // A short-lived process of the run's own setup (under a second) matches at preflight and is
    // gone after the 2 s before-check.
    let secs = format!("0.8{}", std::process::id());
    let yaml = r#"version: 1
name: gone-by-injection
setup:
  - name: short-lived
    run: "sleep ${SECS} & exit 0"
steady_state:
  - name: always
    command: {run: "true"}
    every: 250ms
    window: 2s
steps:
  - name: kill it
    target: local
    fault: {kill: {process: {pattern: "${PAT}"}}}
"#;
    let t = Test::new()
        .scenario(yaml)
        .var("SECS", &secs)
        .var("PAT", format!("^sleep {}$", secs.replace('.', "[.]")));
    let out = t.run();
    out.code(5);
    let r = out.report();
    r.verdict("error", Some("apply"));
    assert!(r.has_event("preflight_passed"), "{:?}", r.event_kinds());
    assert_eq!(r.step(0)["status"], "error");
}

#[test]
fn failing_teardown_after_a_pass_is_error_5_teardown() {
    let tag = unique("teardown");
    let _sleeper = Sleeper::spawn(&tag);
    let teardown = "teardown:\n  - name: fails\n    run: \"false\"\n";
    let t = Test::new()
        .scenario(&pause_yaml(teardown, "300ms"))
        .var("PAT", pattern(&tag));
    let out = t.run();
    out.code(5);
    let r = out.report();
    r.verdict("error", Some("teardown"));
    assert_eq!(r.step(0)["status"], "passed");
    // The hypothesis never stopped holding: recovery 0, no impact.
    assert_eq!(r.step(0)["recovery_ms"], 0);
    assert!(r.step(0)["impact_ms"].is_null());
}

#[test]
fn a_one_sample_window_that_never_holds_again_ends_deviated_at_its_deadline() {
    // A window of one sample (a `load` probe's usual setting) once kept a run that never
    // recovered waiting for ever; it must end at its deadline like any other.
    let tag = unique("onesample");
    let _sleeper = Sleeper::spawn(&tag);
    let yaml = r#"version: 1
name: never-back
steady_state:
  - name: sleeper up
    process: {pattern: "${PAT}"}
    expect: {min: 1}
    every: 200ms
    window: 200ms
steps:
  - name: kill the sleeper
    target: local
    fault: {kill: {process: {pattern: "${PAT}"}}}
    recover_within: 500ms
"#;
    let t = Test::new().scenario(yaml).var("PAT", pattern(&tag));
    let out = t.run();
    out.code(1);
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    let r = out.report();
    r.verdict("deviated", Some("hypothesis"));
    let reason = r.reason();
    assert!(
        reason.contains("`sleeper up` on local: 0 of 1 samples passed"),
        "{reason}"
    );
}

#[test]
fn failing_teardown_after_a_deviation_stays_deviated_1() {
    let tag = unique("devteardown");
    let _sleeper = Sleeper::spawn(&tag);
    let yaml = r#"version: 1
name: deviates-then-teardown-fails
steady_state:
  - name: sleeper up
    process: {pattern: "${PAT}"}
    expect: {min: 1}
    every: 100ms
    window: 300ms
steps:
  - name: kill the sleeper
    target: local
    fault: {kill: {process: {pattern: "${PAT}"}}}
    recover_within: 500ms
teardown:
  - name: fails
    run: "false"
"#;
    let t = Test::new().scenario(yaml).var("PAT", pattern(&tag));
    let out = t.run();
    out.code(1);
    let r = out.report();
    r.verdict("deviated", Some("hypothesis"));
    assert!(r.has_event("teardown_failed"), "{:?}", r.event_kinds());
    assert_eq!(r.json["teardown"][0]["ok"], false);
}

#[test]
fn fill_file_that_cannot_be_deleted_is_exit_6_with_faults_left() {
    if !skip::unless_root("it mounts a tmpfs to fill") {
        return;
    }
    let fs = Tmpfs::mount(16);
    // Waits for the fill file, then puts a directory of the same name in its place.
    let swap = r#"while :; do
  for f in "$1"/.chaos-fill-*; do
    if [ -f "$f" ]; then sleep 0.2; rm -f "$f"; mkdir "$f"; exit 0; fi
  done
  sleep 0.02
done
"#;
    let yaml = r#"version: 1
name: fill-file-swapped
setup:
  - name: swap the fill file for a directory
    run: [sh, swap.sh, "${DIR}"]
    background: true
steps:
  - name: fill
    target: local
    fault: {fill_disk: {path: "${DIR}", size: 4MiB}}
    duration: 1500ms
    recover_within: 1s
"#;
    let t = Test::new()
        .scenario(yaml)
        .var("DIR", fs.dir.display().to_string());
    t.write("swap.sh", swap);
    let out = t.run();
    out.code(6);
    let r = out.report();
    assert_eq!(r.json["cause"], "revert", "reason: {}", r.reason());
    let left = r.json["faults_left"].as_array().expect("faults_left");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["kind"], "fill_disk");
    assert!(out.stdout.contains("FAULTS MAY BE LEFT"), "{}", out.stdout);
    // Clean up what the revert could not: the directory, then the journal entry.
    for name in fs.fill_files() {
        let _ = fs::remove_dir_all(fs.dir.join(name));
    }
    t.cmd(&["revert", "--all"]);
}
