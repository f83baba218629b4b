//! `chaosctl diff RUN_A RUN_B`: real runs of the shipped scenarios, compared in every format;
//! ids given in full and by their random suffix; an unknown id.

use std::fs;

use serde_json::Value;

use crate::verdicts::shipped;
use chaos_tests::support::{Test, free_port};

/// Runs a shipped scenario on a port of its own in `t`'s history; its run id.
fn run(t: &Test, file: &str, expect: i32, extra: &[&str]) -> String {
    let path = shipped(file).display().to_string();
    let port = format!("DEMO_PORT={}", free_port());
    let reports = t.report_dir().display().to_string();
    let mut args = vec![
        "run",
        &path,
        "--yes",
        "--report-dir",
        &reports,
        "--var",
        &port,
    ];
    args.extend(extra);
    let out = t.cmd(&args);
    out.code(expect);
    out.report().json["run_id"]
        .as_str()
        .expect("a run id")
        .to_string()
}

/// The random part of a run id, as the report folder shows it (`32caa1`).
fn suffix(run_id: &str) -> &str {
    run_id.rsplit_once('-').expect("a dash in the run id").1
}

#[test]
fn diff_shows_two_runs_of_two_scenarios_in_every_format() {
    let t = Test::new();
    let a = run(&t, "quickstart.yaml", 0, &[]);
    let b = run(&t, "deviates.yaml", 1, &[]);

    // Text, run B by its suffix alone.
    let text = t.cmd(&["diff", &a, suffix(&b)]);
    text.code(0);
    let ids = text
        .stdout
        .lines()
        .find(|l| l.starts_with("run "))
        .expect("a run line");
    assert_eq!(
        ids.split_whitespace().collect::<Vec<_>>(),
        ["run", &a, &b],
        "{}",
        text.stdout
    );
    for needle in [
        "scenario       quickstart".to_string(),
        "slow-restart".into(),
        "verdict        passed".into(),
        "different scenario files (sha256 differs)".into(),
        // Both runs' first steps face each other by position, with their statuses and impact.
        "step 1: kill every demo worker (matched by position: `kill every demo worker` in A, \
         `kill the only worker` in B)"
            .into(),
        "status B  deviated, ".into(),
        "`demo answers` on local".into(),
        "longest outage".into(),
        "recovery ".into(),
        "did not recover".into(),
        "step 2: pause the worker (in run B only)".into(),
        "what differs".into(),
        "  - verdict: passed → deviated".into(),
        "  - cause: – → hypothesis".into(),
        "  - step `pause the worker`: in run B only (skipped)".into(),
    ] {
        text.stdout_has(&needle);
    }
    // Columns line up: A's values start where the header's `A` does.
    let header = text.stdout.lines().next().expect("a header line");
    let verdict = text
        .stdout
        .lines()
        .find(|l| l.starts_with("verdict "))
        .expect("a verdict line");
    assert_eq!(header.find('A'), verdict.find("passed"), "{}", text.stdout);
    assert_eq!(
        header.find('B'),
        verdict.find("deviated"),
        "{}",
        text.stdout
    );

    // JSON: the diff model, stable names.
    let json = t.cmd(&["diff", &a, &b, "--format", "json"]);
    json.code(0);
    let d: Value = serde_json::from_str(&json.stdout).expect("diff --format json");
    assert_eq!(d["schema"], "chaos.diff/v1");
    assert_eq!(d["a"]["run_id"], a.as_str());
    assert_eq!(d["b"]["run_id"], b.as_str());
    assert_eq!(d["a"]["verdict"], "passed");
    assert_eq!(d["b"]["verdict"], "deviated");
    assert_eq!(d["b"]["exit_code"], 1);
    assert_eq!(d["same_scenario"], false);
    assert_eq!(d["steps"][0]["matched"], "index");
    assert_eq!(d["steps"][1]["matched"], "only_b");
    assert!(d["steps"][1]["a"].is_null());
    let demo = &d["steps"][0]["probes"][0];
    assert_eq!(demo["probe"], "demo answers");
    assert_eq!(demo["b"]["restored"], false, "{demo}");
    assert_eq!(demo["b"]["failed"], demo["b"]["taken"], "{demo}");
    let whats: Vec<&str> = d["differences"]
        .as_array()
        .expect("differences")
        .iter()
        .map(|x| x["what"].as_str().expect("what"))
        .collect();
    for what in ["scenario", "sha256", "verdict", "cause", "status", "step"] {
        assert!(whats.contains(&what), "{what} not in {whats:?}");
    }

    // HTML, written with -o: one page, nothing fetched, no script.
    let page = t.path("diff.html");
    let html = t.cmd(&[
        "diff",
        &a,
        &b,
        "--format",
        "html",
        "-o",
        &page.display().to_string(),
    ]);
    html.code(0);
    assert_eq!(html.stdout, "", "-o writes the file, not stdout");
    let html = fs::read_to_string(&page).expect("diff.html");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.ends_with("</html>\n"));
    for needle in [
        a.as_str(),
        b.as_str(),
        "<h2>What differs</h2>",
        "<li>verdict: passed → deviated</li>",
        "<span class=\"pill s-deviated\">deviated</span>",
        "<table class=\"impact\">",
    ] {
        assert!(html.contains(needle), "{needle:?} not in the page");
    }
    assert!(!html.contains("<script"));
    assert!(!html.contains("src=") && !html.contains("href=\"http") && !html.contains("@import"));
}

#[test]
fn diff_of_two_seeds_of_one_scenario_says_it_is_the_same_file() {
    let t = Test::new();
    let a = run(&t, "quickstart.yaml", 0, &[]);
    let b = run(&t, "quickstart.yaml", 0, &["--seed", "7"]);
    // Both ids by their suffix.
    let out = t.cmd(&["diff", suffix(&a), suffix(&b), "--format", "json"]);
    out.code(0);
    let d: Value = serde_json::from_str(&out.stdout).expect("diff --format json");
    assert_eq!(d["same_scenario"], true);
    assert_eq!(d["steps"][0]["matched"], "name");
    assert_eq!(d["steps"].as_array().map(Vec::len), Some(1));
    let seed = d["differences"]
        .as_array()
        .expect("differences")
        .iter()
        .find(|x| x["what"] == "seed")
        .unwrap_or_else(|| panic!("no seed difference: {d}"));
    assert_eq!(
        (&seed["a"], &seed["b"]),
        (&Value::from("42"), &Value::from("7"))
    );
    // A run against itself: nothing differs.
    let same = t.cmd(&["diff", &a, &a]);
    same.code(0);
    same.stdout_has("the same scenario file (same sha256)");
    same.stdout_has("what differs\n  nothing notable");
}

#[test]
fn an_unknown_run_id_is_invalid_input_and_says_how_to_list_runs() {
    let t = Test::new();
    let a = run(&t, "quickstart.yaml", 0, &[]);
    for (args, side) in [
        (["diff", a.as_str(), "fffffe"], "B"),
        (["diff", "fffffe", a.as_str()], "A"),
    ] {
        let out = t.cmd(&args);
        out.code(2);
        out.stderr_has(&format!("no run `fffffe` (run {side}) in the history"));
        out.stderr_has("`chaosctl runs` lists them");
        assert_eq!(out.stdout, "", "nothing rendered for a bad id");
    }
}
