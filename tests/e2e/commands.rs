//! The commands around `run`: validate, plan, runs, report, `--output json`, `--help`.

use std::fs;

use serde_json::Value;

use crate::verdicts::shipped;
use chaos_tests::support::{Sleeper, Test, pattern, proc_state, unique};

#[test]
fn validate_accepts_every_shipped_scenario() {
    let mut files: Vec<String> = fs::read_dir(shipped(""))
        .expect("scenarios/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let t = Test::new();
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = t.cmd(&args);
    out.code(0);
    for f in &files {
        out.stdout_has(&format!("{f}: ok"));
    }
}

const PLANNED: &str = r#"version: 1
name: planned
hosts:
  a: {agent: "https://127.0.0.1:9"}
  b: {agent: "https://127.0.0.1:9"}
  c: {agent: "https://127.0.0.1:9"}
targets:
  some: {hosts: [a, b, c], pick: 1}
steps:
  - name: kill on one remote host
    target: some
    fault: {kill: {process: {name: nothing-e2e}}}
  - name: pause the local sleepers
    target: local
    fault: {pause: {process: {pattern: "${PAT}"}}}
    duration: 3s
    recover_within: 2s
"#;

#[test]
fn plan_shows_steps_picks_and_time_injects_nothing_and_is_reproducible() {
    let tag = unique("plan");
    let sleeper = Sleeper::spawn(&tag);
    let t = Test::new().scenario(PLANNED);
    let file = t.scenario_path().display().to_string();
    let var = format!("PAT={}", pattern(&tag));
    let plan = |seed: &str| {
        let out = t.cmd(&["plan", &file, "--var", &var, "--seed", seed]);
        out.code(0);
        out.stdout
    };
    let first = plan("7");
    for needle in [
        "kill on one remote host",
        "pause the local sleepers",
        "pick 1 of [a, b, c]",
        "planned time",
        "seed      7",
    ] {
        assert!(first.contains(needle), "plan lacks {needle:?}:\n{first}");
    }
    assert_eq!(plan("7"), first, "the same seed planned differently");
    assert_ne!(proc_state(sleeper.pid), Some('T'), "plan touched a process");
    assert!(!t.report_dir().exists());
}

const QUICK: &str = r#"version: 1
name: quick-pause
steady_state:
  - name: always
    command: {run: "true"}
    every: 100ms
    window: 200ms
steps:
  - name: pause briefly
    target: local
    fault: {pause: {process: {pattern: "${PAT}"}}}
    duration: 200ms
    recover_within: 1s
"#;

#[test]
fn runs_and_report_show_a_finished_run() {
    let tag = unique("runs");
    let _sleeper = Sleeper::spawn(&tag);
    let t = Test::new().scenario(QUICK).var("PAT", pattern(&tag));
    let out = t.run();
    out.code(0);
    let r = out.report();
    let run_id = r.json["run_id"].as_str().unwrap().to_string();
    let started = r.json["started_at"].as_str().unwrap();
    // `2026-01-02T03:04:05.678Z` is listed as `2026-01-02 03:04:05`.
    let start_shown = started[..19].replace('T', " ");

    let runs = t.cmd(&["runs"]);
    runs.code(0);
    let line = runs
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(run_id.as_str()))
        .unwrap_or_else(|| panic!("no line with the full id {run_id}:\n{}", runs.stdout));
    for needle in ["quick-pause", "passed", start_shown.as_str()] {
        assert!(line.contains(needle), "{needle:?} not in {line:?}");
    }

    let json = t.cmd(&["report", &run_id, "--format", "json"]);
    json.code(0);
    let back: Value = serde_json::from_str(&json.stdout).expect("report --format json");
    assert_eq!(back["run_id"], run_id.as_str());
    assert_eq!(back["verdict"], "passed");
    assert_eq!(back["schema"], "chaos.report/v1");

    let md = t.cmd(&["report", &run_id, "--format", "md"]);
    md.code(0);
    md.stdout_has("quick-pause");
    let junit = t.cmd(&["report", &run_id, "--format", "junit"]);
    junit.code(0);
    junit.stdout_has("<testsuite");

    let file = t.path("report-copy.md");
    let to_file = t.cmd(&["report", &run_id, "-o", &file.display().to_string()]);
    to_file.code(0);
    assert_eq!(fs::read_to_string(&file).expect("-o FILE"), md.stdout);

    let prefix = &run_id[..run_id.len() - 2];
    let by_prefix = t.cmd(&["report", prefix, "--format", "json"]);
    by_prefix.code(0);
    assert_eq!(by_prefix.stdout, json.stdout);
    let latest = t.cmd(&["report", "latest", "--format", "json"]);
    latest.code(0);
    assert_eq!(latest.stdout, json.stdout);

    let unknown = t.cmd(&["report", "no-such-run-e2e"]);
    unknown.code(2);
    unknown.stderr_has("no-such-run-e2e");
}

#[test]
fn output_json_prints_json_lines_ending_in_the_result() {
    let tag = unique("json");
    let _sleeper = Sleeper::spawn(&tag);
    let t = Test::new()
        .scenario(QUICK)
        .var("PAT", pattern(&tag))
        .arg("--output")
        .arg("json");
    let out = t.run();
    out.code(0);
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 2, "{}", out.stdout);
    let (last, events) = lines.split_last().unwrap();
    assert_eq!(last["type"], "result", "{last}");
    assert_eq!(last["exit_code"], 0);
    assert_eq!(last["verdict"], "passed");
    assert!(last["run_id"].is_string());
    // Each step with what users went through.
    let step = &last["steps"][0];
    assert_eq!(step["name"], "pause briefly", "{last}");
    assert_eq!(step["summary"], "passed", "{last}");
    assert_eq!(step["impact"][0]["probe"], "always", "{last}");
    assert_eq!(step["impact"][0]["failed"], 0, "{last}");
    for e in events {
        assert_eq!(e["type"], "event", "{e}");
    }
    assert!(events.iter().any(|e| e["kind"] == "fault_applied"));
}

#[test]
fn output_json_result_carries_a_failing_exit_code() {
    let t = Test::new()
        .scenario("version: 1\nname: setup-fails\nsetup:\n  - name: fails\n    run: \"false\"\nsteps:\n  - name: k\n    target: local\n    fault: {kill: {process: {name: nothing-e2e}}}\n")
        .arg("--output")
        .arg("json");
    let out = t.run();
    out.code(5);
    let last: Value = serde_json::from_str(out.stdout.lines().last().expect("a line")).unwrap();
    assert_eq!(last["type"], "result");
    assert_eq!(last["exit_code"], 5);
    assert_eq!(last["cause"], "setup");
}

#[test]
fn every_subcommand_has_help() {
    let t = Test::new();
    let top = t.cmd(&["--help"]);
    top.code(0);
    top.stdout_has("Usage");
    for sub in [
        "init", "validate", "plan", "run", "runs", "report", "diff", "revert",
    ] {
        top.stdout_has(sub);
        let out = t.cmd(&[sub, "--help"]);
        out.code(0);
        out.stdout_has("Usage");
        out.stdout_has(sub);
    }
}

#[test]
fn revert_all_with_nothing_to_revert_says_so() {
    let t = Test::new();
    let out = t.cmd(&["revert", "--all"]);
    out.code(0);
    out.stdout_has("nothing to revert");
}

#[test]
fn schema_prints_the_checked_in_json_schema() {
    let t = Test::new();
    let out = t.cmd(&["schema"]);
    out.code(0);
    let checked_in = fs::read_to_string(shipped("../schema/scenario.schema.json"))
        .expect("schema/scenario.schema.json");
    assert!(
        out.stdout == checked_in,
        "`chaosctl schema` differs from schema/scenario.schema.json"
    );
    let schema: Value = serde_json::from_str(&out.stdout).expect("the schema is JSON");
    assert_eq!(schema["additionalProperties"], false);
    assert!(schema["properties"]["steps"].is_object());
}

/// An inventory whose hosts come from a command (`hosts_from`): `plan` shows the hosts it printed,
/// and a command that fails makes `validate` and `run` fail with its output, injecting nothing.
#[test]
fn hosts_from_a_command_make_the_fleet_and_a_failing_one_is_an_error() {
    let t = Test::new().scenario(
        r#"version: 1
name: fleet-from-a-command
targets:
  db: {labels: {role: db}}
steps:
  - name: kill on every db host
    target: db
    fault: {kill: {process: {name: nothing-e2e}}}
"#,
    );
    let script = t.write(
        "fleet.sh",
        "#!/bin/sh\nif [ -n \"$FLEET_DOWN\" ]; then echo 'consul: connection refused' >&2; exit 2; fi\n\
         printf '{\"hosts\": {\"db-1\": {\"agent\": \"https://127.0.0.1:1\", \"labels\": {\"role\": \"db\"}}, \"db-2\": {\"agent\": \"https://127.0.0.1:2\", \"labels\": {\"role\": \"db\"}}}}'\n",
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let inventory = t.write("inventory.yaml", "hosts_from: {command: [./fleet.sh]}\n");
    let file = t.scenario_path().display().to_string();
    let inv = inventory.display().to_string();
    let out = t.cmd(&["plan", &file, "--inventory", &inv]);
    out.code(0);
    assert!(
        out.stdout.contains("db-1") && out.stdout.contains("db-2"),
        "{}",
        out.stdout
    );

    // The script reads FLEET_DOWN, set on chaosctl and so on its child.
    let out = std::process::Command::new(chaos_tests::bins::chaosctl())
        .args(["validate", &file, "--inventory", &inv])
        .env("FLEET_DOWN", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`hosts_from` failed (exit status: 2): consul: connection refused"),
        "{stderr}"
    );
}

/// The subcommands `chaosctl --help` lists.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A command's name is indented by two; its wrapped description by more.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

/// Completions and the man page come from the same definitions as `--help`: every subcommand
/// it lists is completed and documented, and bash parses the script.
#[test]
fn completions_and_the_man_page_know_every_subcommand() {
    let t = Test::new();
    let help = t.cmd(&["--help"]);
    help.code(0);
    let commands = subcommands(&help.stdout);
    assert!(commands.len() >= 15, "{commands:?}");
    for shell in ["bash", "zsh", "fish"] {
        let out = t.cmd(&["completions", shell]);
        out.code(0);
        for c in &commands {
            assert!(out.stdout.contains(c.as_str()), "{shell} lacks `{c}`");
        }
    }
    let bash = t.cmd(&["completions", "bash"]).stdout;
    let script = t.write("chaosctl.bash", &bash);
    let parsed = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    t.cmd(&["completions", "tcsh"]).code(2);

    let man = t.cmd(&["man"]);
    man.code(0);
    assert!(
        man.stdout.contains(".TH chaosctl 1"),
        "{}",
        &man.stdout[..200]
    );
    for c in &commands {
        assert!(man.stdout.contains(c.as_str()), "the man page lacks `{c}`");
    }
    // The daemons' pages, from their own definitions: each flag their `--help` shows.
    for (program, binary) in [
        ("chaosd", chaos_tests::bins::chaosd()),
        ("chaos-agent", chaos_tests::bins::chaos_agent()),
    ] {
        let page = t.cmd(&["man", program]);
        page.code(0);
        assert!(
            page.stdout.contains(&format!(".TH {program} 8")),
            "{}",
            page.stdout
        );
        let help = std::process::Command::new(binary)
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        let flags: Vec<&str> = help
            .split_whitespace()
            .filter(|w| w.starts_with("--") && w.len() > 3)
            .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
            .collect();
        assert!(flags.len() >= 2, "{help}");
        for flag in flags {
            let roff = flag.replace('-', "\\-");
            assert!(
                page.stdout.contains(&roff) || page.stdout.contains(flag),
                "the {program} page lacks {flag}"
            );
        }
    }
}
