//! The sharp edges a new user hit, each through the built binary.

use std::process::{Command, Stdio};

use chaos_tests::bins;
use chaos_tests::support::{Report, Sleeper, Test, pattern, proc_state, unique};

const PAUSE: &str = r#"version: 1
name: edge-pause
steps:
  - name: pause briefly
    target: local
    fault: {pause: {process: {pattern: "${PAT}"}}}
    duration: 300ms
    recover_within: 1s
"#;

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let tag = unique("pipe");
    let sleeper = Sleeper::spawn(&tag);
    let t = Test::new().scenario(PAUSE).var("PAT", pattern(&tag));

    // A run whose every event goes to a stdout nobody reads: the pause is still reverted, the
    // report still written, and the exit code is still the verdict's.
    let mut args = t.run_args();
    args.extend(["--output".to_string(), "json".to_string()]);
    let json = t.cmd_closed_stdout(&args);
    json.code(0);
    assert!(!json.stderr.contains("panicked"), "{}", json.stderr);
    assert_eq!(
        proc_state(sleeper.pid),
        Some('S'),
        "the sleeper was resumed"
    );
    let folders = t.report_folders();
    assert_eq!(folders.len(), 1, "{folders:?}");
    let report = Report::read(&folders[0]);
    report.verdict("passed", None);
    assert!(
        report.faults()[0]["reverted_at"].is_string(),
        "{}",
        report.json
    );

    // Text mode: the summary and the report folder's path go to the closed stdout.
    let text = t.run_closed_stdout();
    text.code(0);
    assert!(!text.stderr.contains("panicked"), "{}", text.stderr);
    assert_eq!(t.report_folders().len(), 2);

    let file = t.scenario_path().display().to_string();
    let mut plan = vec!["plan".to_string(), file.clone()];
    plan.extend(t.var_args());
    let mut validate = vec!["validate".to_string(), file];
    validate.extend(t.var_args());
    for args in [
        vec!["runs".to_string()],
        vec!["runs".into(), "--output".into(), "json".into()],
        vec![
            "report".into(),
            "latest".into(),
            "--format".into(),
            "html".into(),
        ],
        plan,
        validate,
    ] {
        let out = t.cmd_closed_stdout(&args);
        out.code(0);
        assert!(!out.stderr.contains("panicked"), "{args:?}: {}", out.stderr);
        assert!(
            !out.stderr.contains("Broken pipe"),
            "{args:?}: {}",
            out.stderr
        );
    }

    // The user's own pipeline, with the pipeline's status being chaosctl's.
    let chaosctl = bins::chaosctl().display().to_string();
    let state = t.state_dir().display().to_string();
    let piped = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; {chaosctl} --state-dir {state} runs | head -1"
        ))
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(piped.status.success(), "{:?}: {stderr}", piped.status);
    assert!(stderr.is_empty(), "{stderr}");
    assert!(String::from_utf8_lossy(&piped.stdout).starts_with("RUN "));

    // A run whose stdout and stderr both go to a reader that leaves after one line: the pause is
    // reverted after that, and the run ends with its verdict and its report.
    let reports = t.report_dir().display().to_string();
    let vars = t.var_args().join(" ");
    let file = t.scenario_path().display().to_string();
    let piped = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; {chaosctl} --state-dir {state} run {file} --yes --report-dir {reports} {vars} 2>&1 | head -1"
        ))
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    assert!(
        piped.status.success(),
        "{:?}: {}",
        piped.status,
        String::from_utf8_lossy(&piped.stdout)
    );
    assert_eq!(
        proc_state(sleeper.pid),
        Some('S'),
        "the sleeper was resumed"
    );
    assert_eq!(t.report_folders().len(), 3);
    let newest = Report::read(&t.report_dir().join("latest"));
    newest.verdict("passed", None);
}

const PICKS: &str = r#"version: 1
name: edge-picks
hosts:
  a: {agent: "https://127.0.0.1:1"}
  b: {agent: "https://127.0.0.1:1"}
  c: {agent: "https://127.0.0.1:1"}
  d: {agent: "https://127.0.0.1:1"}
targets:
  one: {hosts: [a, b, c, d], pick: 1}
steps:
  - name: cut the cache off
    target: one
    fault: {drop: {to: {hosts: ["10.0.0.20"], ports: [6379], protocol: tcp}, from: {ports: [5432]}, mode: reject}}
    duration: 1s
"#;

#[test]
fn plan_says_whose_picks_it_shows_and_shows_network_peers() {
    let t = Test::new().scenario(PICKS);
    let file = t.scenario_path().display().to_string();
    let out = t.cmd(&["plan", &file]);
    out.code(0);
    let seed_line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("seed "))
        .unwrap_or_else(|| panic!("no seed line:\n{}", out.stdout));
    let seed: u64 = seed_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        seed_line.contains("drawn at random for this plan")
            && seed_line.contains(&format!("chaosctl run {file} --seed {seed}")),
        "{seed_line}"
    );
    // What that command line makes is what the plan showed.
    let again = t.cmd(&["plan", &file, "--seed", &seed.to_string()]);
    again.code(0);
    let picks = |text: &str| {
        text.lines()
            .filter(|l| l.contains("pick 1 of") || l.contains(" on ["))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(picks(&again.stdout), picks(&out.stdout));
    again.stdout_has(&format!("seed      {seed} (--seed)"));
    out.stdout_has("drop (reject) to 10.0.0.20 port 6379 (tcp), from any host port 5432 on [");
}

#[test]
fn plan_of_a_monkey_file_shows_the_monkey() {
    let t = Test::new().scenario(
        r#"version: 1
name: edge-monkey
settings: {seed: 11, recover_within: 20s}
monkey:
  target: local
  fault: {pause: {process: {name: edge-nothing}}}
  duration: 2s
  mean_interval: 30m
  min_interval: 5m
  active: {days: [mon, tue, wed, thu, fri], hours: "09:00-17:00", timezone: Europe/Berlin}
  max_per_day: 4
"#,
    );
    let file = t.scenario_path().display().to_string();
    let out = t.cmd(&["plan", &file]);
    out.code(0);
    for needle in [
        "monkey (random faults until stopped)",
        "fault         pause name `edge-nothing`",
        "held 2s, then recovered within 20s",
        "gaps          30m on average, at least 5m",
        "active        mon,tue,wed,thu,fri 09:00-17:00 Europe/Berlin",
        "at most       4 a day",
        "with seed 11:",
        "    5. ",
        "until stopped",
    ] {
        out.stdout_has(needle);
    }
    assert!(!out.stdout.contains("\nsteps"), "{}", out.stdout);
    let json = t.cmd(&["plan", &file, "--output", "json"]);
    json.code(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let next = v["monkey"]["next_faults"].as_array().unwrap();
    assert_eq!(next.len(), 5, "{v}");
    // Inside the active hours: weekdays, 09:00-17:00 in Berlin (08:00-16:00 UTC in winter,
    // 07:00-15:00 in summer).
    for f in next {
        let at = f["at"].as_str().unwrap();
        let hour: u32 = at[11..13].parse().unwrap();
        assert!((7..16).contains(&hour), "{at}");
        assert_eq!(f["hosts"], serde_json::json!(["local"]));
    }
}

#[test]
fn the_planned_time_brackets_the_run() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || for _ in listener.incoming() {});
    let tag = unique("time");
    let _pause = Sleeper::spawn(&format!("{tag}-p"));
    let _kill = Sleeper::spawn(&format!("{tag}-k"));
    let t = Test::new()
        .scenario(&format!(
            r#"version: 1
name: edge-time
steady_state:
  - name: listens
    tcp: {{address: "127.0.0.1:{port}", timeout: 100ms}}
    every: 100ms
    window: 500ms
steps:
  - name: pause
    target: local
    fault: {{pause: {{process: {{pattern: "${{PAT}}-p"}}}}}}
    duration: 300ms
    recover_within: 1s
  - name: kill
    target: local
    fault: {{kill: {{process: {{pattern: "${{PAT}}-k"}}}}}}
    duration: 1s
    recover_within: 1s
"#
        ))
        .var("PAT", pattern(&tag));
    let file = t.scenario_path().display().to_string();
    let mut args = vec!["plan", &file, "--output", "json"];
    let vars = t.var_args();
    args.extend(vars.iter().map(String::as_str));
    let plan = t.cmd(&args);
    plan.code(0);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let at_least = plan["planned_ms"]["at_least"].as_i64().unwrap();
    let at_most = plan["planned_ms"]["at_most"].as_i64().unwrap();
    // Before-check 400 ms (5 samples, 4 gaps), the pause 300 ms + 400 ms, the kill's 1 s hold
    // (its after-check runs during it).
    assert_eq!(at_least, 2100, "{plan}");

    let out = t.run();
    out.code(0);
    let report = out.report();
    let at = |kind: &str, last: bool| {
        let events = report.json["events"].as_array().unwrap();
        let mut found = events.iter().filter(|e| e["kind"] == kind);
        let e = if last {
            found.next_back()
        } else {
            found.next()
        };
        let text = e.unwrap_or_else(|| panic!("no {kind}"))["at"]
            .as_str()
            .unwrap()
            .to_string();
        chrono::DateTime::parse_from_rfc3339(&text).unwrap()
    };
    let took = (at("check_held", true) - at("check_started", false)).num_milliseconds();
    assert!(
        at_least - 50 <= took && took <= at_most,
        "planned {at_least}..{at_most} ms, the run's checks and steps took {took} ms"
    );
}

#[test]
fn a_run_is_found_by_its_random_suffix() {
    let tag = unique("suffix");
    let _sleeper = Sleeper::spawn(&tag);
    let t = Test::new().scenario(PAUSE).var("PAT", pattern(&tag));
    let first = t.run();
    first.code(0);
    let second = t.run();
    second.code(0);
    for out in [&first, &second] {
        let id = out.report().json["run_id"].as_str().unwrap().to_string();
        let (_, suffix) = id.rsplit_once('-').unwrap();
        // The folder's name ends in it; the whole suffix and a prefix of it both find the run.
        for given in [suffix, &suffix[..4]] {
            let shown = t.cmd(&["report", given, "--format", "json"]);
            shown.code(0);
            let back: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
            assert_eq!(back["run_id"], id.as_str(), "{given}");
        }
    }
    // `2` begins both ids: the error lists them.
    let ambiguous = t.cmd(&["report", "2"]);
    ambiguous.code(2);
    for out in [&first, &second] {
        let id = out.report().json["run_id"].as_str().unwrap().to_string();
        ambiguous.stderr_has(&format!("`{id}`"));
    }
    ambiguous.stderr_has("matches more than one run");
}

#[test]
fn an_interrupted_run_has_a_report_from_its_events() {
    let tag = unique("interrupted");
    let sleeper = Sleeper::spawn(&tag);
    let t = Test::new()
        .scenario(&PAUSE.replace("duration: 300ms", "duration: 30s"))
        .var("PAT", pattern(&tag));
    let run = t.spawn_run();
    t.wait_for_event("fault_applied", std::time::Duration::from_secs(15));
    let folder = t.run_folder();
    let run_id = folder.file_name().unwrap().to_str().unwrap().to_string();
    run.signal(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(run.wait().signal, Some(9));

    // The next command reverts the pause from the journal, marks the run and gives it a report.
    let shown = t.cmd(&["report", &run_id, "--format", "json"]);
    shown.code(0);
    assert_eq!(proc_state(sleeper.pid), Some('S'), "the journal's revert");
    let report: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(report["verdict"], "interrupted", "{report}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains("rebuilt from events.jsonl"),
        "{report}"
    );
    let step = &report["steps"][0];
    assert_eq!(step["name"], "pause briefly");
    assert_eq!(step["faults"][0]["kind"], "pause", "{step}");
    assert!(step["faults"][0]["applied_at"].is_string());
    // No revert was recorded in the run's events: the fault is listed as possibly left.
    assert_eq!(report["faults_left"][0]["kind"], "pause", "{report}");
    assert!(report["events"].as_array().unwrap().len() >= 3);
    // Written into the run's folder too, and readable as Markdown.
    let on_disk = Report::read(&folder);
    on_disk.verdict("interrupted", None);
    let md = t.cmd(&["report", &run_id, "--format", "md"]);
    md.code(0);
    md.stdout_has("interrupted");
}

#[test]
fn a_protected_process_is_named_as_protected() {
    // A dry run preflights (every selector must match) and injects nothing, so a regression here
    // cannot stop init or this test.
    for (selector, why) in [
        ("{pid: 1}".to_string(), "the host's init"),
        (
            format!("{{pid: {}}}", std::process::id()),
            "an ancestor of the agent",
        ),
        // The chaosctl of the run is the local agent (others may be chaos tools of other runs).
        ("{name: chaosctl}".to_string(), "the agent itself"),
    ] {
        let t = Test::new()
            .scenario(&format!(
                "version: 1\nname: edge-protected\nsteps:\n  - name: stop it\n    target: local\n    fault: {{pause: {{process: {selector}}}}}\n    duration: 1s\n"
            ))
            .arg("--dry-run");
        let out = t.run();
        out.code(5);
        let reason = out.report().reason();
        assert!(
            reason.contains("matches only protected processes") && reason.contains(why),
            "{selector}: {reason}"
        );
        assert!(!reason.contains("no process matches"), "{reason}");
    }
}

/// A `chaos-agent` on 127.0.0.1 (plain HTTP on loopback), killed when dropped.
pub(crate) struct LoopbackAgent {
    child: std::process::Child,
    port: u16,
}

impl LoopbackAgent {
    pub(crate) fn start(t: &Test, policy: &str) -> LoopbackAgent {
        let port = chaos_tests::support::free_port();
        let token = t.write("agent.token", "edge-agent-token-0123456789\n");
        owner_only(&token);
        let policy = t.write("policy.yaml", policy);
        let log = std::fs::File::create(t.path("agent.log")).unwrap();
        let child = Command::new(chaos_tests::bins::chaos_agent())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--token-file")
            .arg(&token)
            .arg("--policy")
            .arg(&policy)
            .arg("--state-dir")
            .arg(t.path("agent-state"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start chaos-agent");
        chaos_tests::eventually(
            std::time::Duration::from_secs(10),
            "chaos-agent listens",
            || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
        );
        t.write(
            "inventory.yaml",
            &format!(
                "hosts:\n  edge: {{agent: \"http://127.0.0.1:{port}\", token_file: {}}}\n",
                token.display()
            ),
        );
        LoopbackAgent { child, port }
    }
}

fn owner_only(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl Drop for LoopbackAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn agents_shows_what_the_policy_forbids() {
    let t = Test::new();
    let agent = LoopbackAgent::start(&t, "kinds: [pause, kill]\n");
    let inventory = t.path("inventory.yaml").display().to_string();
    let text = t.cmd(&["agents", "--inventory", &inventory]);
    text.code(0);
    text.stdout_has(&format!("edge  http://127.0.0.1:{}  ok", agent.port));
    let can = text
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("can: "))
        .unwrap_or_else(|| panic!("{}", text.stdout));
    assert!(can.contains("kill") && can.contains("pause"), "{can}");
    assert!(
        !can.contains("fill_disk"),
        "the policy forbids fill_disk: {can}"
    );
    text.stdout_has("fill_disk (the policy forbids it: its kinds are [pause, kill])");
    text.stdout_has("policy: kinds [pause, kill]");

    let json = t.cmd(&["agents", "--inventory", &inventory, "--output", "json"]);
    json.code(0);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let kinds = rows[0]["kinds"].as_array().unwrap();
    let fill = kinds.iter().find(|k| k["kind"] == "fill_disk").unwrap();
    assert_eq!(fill["policy_allows"], false, "{fill}");
    assert_eq!(fill["usable"], false, "{fill}");
    let kill = kinds.iter().find(|k| k["kind"] == "kill").unwrap();
    assert_eq!(kill["usable"], true, "{kill}");
}

#[test]
fn a_window_shorter_than_every_is_warned_about() {
    let tag = unique("window");
    let _sleeper = Sleeper::spawn(&tag);
    let t = Test::new()
        .scenario(&PAUSE.replace(
            "steps:",
            "steady_state:\n  - name: one sample\n    command: {run: \"true\"}\n    every: 200ms\n    window: 100ms\nsteps:",
        ))
        .var("PAT", pattern(&tag));
    let file = t.scenario_path().display().to_string();
    let mut args = vec!["validate", file.as_str()];
    let vars = t.var_args();
    args.extend(vars.iter().map(String::as_str));
    let validate = t.cmd(&args);
    validate.code(0);
    validate.stderr_has(&format!(
        "{file}: warning: steady-state probe `one sample`: its window (100ms) is shorter than its `every` (200ms), which means one sample"
    ));
    // A warning, not an error: the run goes on, and says so in its events.
    let run = t.run();
    run.code(0);
    run.stderr_has("warning: steady-state probe `one sample`");
    assert!(run.report().has_event("scenario_warning"));
}

#[test]
fn a_background_setup_that_fails_before_ready_fails_the_run_at_once() {
    // The quickstart with its port taken by another server, which answers 404.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in taken.incoming() {
            use std::io::{Read, Write};
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let t = Test::new()
        .scenario_file(crate::verdicts::shipped("quickstart.yaml"))
        .var("DEMO_PORT", port);
    let out = t.run();
    out.code(5);
    assert!(
        out.elapsed < std::time::Duration::from_secs(5),
        "waited {:?} for a setup that had failed",
        out.elapsed
    );
    let report = out.report();
    report.verdict("error", Some("setup"));
    let reason = report.reason();
    for needle in [
        "setup `demo service` exited (exit 1) before it was ready",
        &format!("cannot listen on 127.0.0.1:{port}"),
        "setup-1.log",
    ] {
        assert!(reason.contains(needle), "{needle:?} not in {reason}");
    }
    // The reason is the exit, not the probe's last answer (a port may itself contain "404").
    assert!(!reason.contains("status 404"), "{reason}");

    // A daemon that forks: its leader exits 0 at once, and it is waited for as before.
    let tag = unique("forks");
    let _sleeper = Sleeper::spawn(&tag);
    let t = Test::new()
        .scenario(&PAUSE.replace(
            "steps:",
            "setup:\n  - name: forking daemon\n    run: \"(sleep 0.3; touch ready.flag; exec sleep 30) & exit 0\"\n    background: true\n    ready: {command: {run: \"test -f ready.flag\"}, within: 5s}\nsteps:",
        ))
        .var("PAT", pattern(&tag));
    let out = t.run();
    out.code(0);
    let report = out.report();
    report.verdict("passed", None);
    assert!(report.has_event("setup_ready"));
}
