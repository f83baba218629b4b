//! Bad files: exit 2, `FILE:LINE:COLUMN: message` with the line and a caret under the culprit,
//! nothing run and no report folder (spec: "Checks before anything runs").

use chaos_tests::support::Test;

/// Every bad file also has a setup step that would leave `ran.marker` behind if it ran.
const SETUP: &str = r#"setup:
  - name: would run first
    run: "touch ran.marker"
"#;

/// Checks `yaml` (with `SETUP` prepended after its first two lines) with `validate` and `run`:
/// both exit 2 and point at `line:col`, the message holds `message`, and `help` when given.
#[track_caller]
fn check(body: &str, line: usize, col: usize, message: &str, help: Option<&str>) {
    let yaml = format!("version: 1\nname: bad\n{SETUP}{body}");
    let t = Test::new().scenario(&yaml);
    let file = t.scenario_path().display().to_string();
    let line = line + 2 + SETUP.lines().count();
    let source_line = yaml.lines().nth(line - 1).expect("the line exists");
    for args in [
        vec!["validate", file.as_str()],
        vec!["run", file.as_str(), "--yes"],
    ] {
        let mut args = args;
        let report_dir = t.report_dir().display().to_string();
        if args[0] == "run" {
            args.extend(["--report-dir", report_dir.as_str()]);
        }
        let out = t.cmd(&args);
        out.code(2);
        let location = format!("{file}:{line}:{col}: ");
        let first = out.stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&location) && first.contains(message),
            "{args:?}: expected `{location}...{message}...`, got:\n{}",
            out.stderr
        );
        if let Some(help) = help {
            out.stderr_has(help);
        }
        // The offending line, then a caret line whose `^` sits under column `col`.
        let lines: Vec<&str> = out.stderr.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.ends_with(&format!("| {source_line}")))
            .unwrap_or_else(|| panic!("no source line {source_line:?} in:\n{}", out.stderr));
        let gutter = lines[at].find("| ").expect("gutter") + 2;
        let caret = lines.get(at + 1).copied().unwrap_or_default();
        assert_eq!(
            caret.get(gutter + col - 1..gutter + col),
            Some("^"),
            "caret not under column {col}:\n{}\n{}",
            lines[at],
            caret
        );
        assert!(caret[gutter..gutter + col - 1].trim().is_empty(), "{caret}");
        assert!(
            !t.path("ran.marker").exists(),
            "setup ran for an invalid file"
        );
        assert!(t.report_folders().is_empty(), "a report folder was created");
    }
}

#[test]
fn misspelt_key_points_at_it_and_suggests_the_right_one() {
    check(
        "stpes:\n  - name: a\n    target: local\n    fault: {kill: {process: {name: x}}}\n",
        1,
        1,
        "unknown key `stpes`",
        Some("did you mean `steps`"),
    );
}

#[test]
fn unknown_target_points_at_the_name() {
    check(
        "steps:\n  - name: a\n    target: nowhere\n    fault: {kill: {process: {name: x}}}\n",
        3,
        13,
        "unknown target or host `nowhere`",
        None,
    );
}

#[test]
fn bad_duration_points_at_the_value() {
    check(
        "steps:\n  - name: a\n    target: local\n    fault: {pause: {process: {name: x}}}\n    duration: 5 seconds\n",
        5,
        15,
        "duration `5 seconds`",
        None,
    );
}

#[test]
fn unknown_variable_points_at_the_reference() {
    check(
        "steps:\n  - name: a\n    target: local\n    fault: {kill: {process: {name: \"${NO_SUCH_E2E_VAR}\"}}}\n",
        4,
        37,
        "unknown variable `NO_SUCH_E2E_VAR`",
        Some("--var NO_SUCH_E2E_VAR=VALUE"),
    );
}

#[test]
fn a_missing_file_is_invalid_and_runs_nothing() {
    let t = Test::new();
    let missing = t.path("no-such-scenario.yaml").display().to_string();
    let out = t.cmd(&["validate", &missing]);
    out.code(2);
    out.stderr_has(&missing);
    let report_dir = t.report_dir().display().to_string();
    let out = t.cmd(&["run", &missing, "--yes", "--report-dir", &report_dir]);
    out.code(2);
    out.stderr_has(&missing);
    assert!(t.report_folders().is_empty(), "a report folder was created");
}

#[test]
fn invalid_utf8_is_refused_at_its_byte_not_replaced() {
    let t = Test::new();
    let mut bytes = format!("version: 1\nname: quick\n{SETUP}").into_bytes();
    bytes.extend_from_slice(b"description: quick\xff\xfestart\n");
    bytes.extend_from_slice(
        b"steps:\n  - name: a\n    target: local\n    fault: {kill: {process: {name: x}}}\n",
    );
    let path = t.path("scenario.yaml");
    std::fs::write(&path, &bytes).unwrap();
    let file = path.display().to_string();
    let line = 3 + SETUP.lines().count();
    let offset = bytes.iter().position(|&b| b == 0xff).unwrap();
    let out = t.cmd(&["validate", &file]);
    out.code(2);
    out.stderr_has(&format!(
        "{file}:{line}:19: invalid UTF-8 at byte {offset} (line {line}, column 19): byte 0xff"
    ));
    out.stderr_has("save the file as UTF-8");
    let report_dir = t.report_dir().display().to_string();
    let out = t.cmd(&["run", &file, "--yes", "--report-dir", &report_dir]);
    out.code(2);
    out.stderr_has("invalid UTF-8");
    assert!(
        !t.path("ran.marker").exists(),
        "setup ran for an invalid file"
    );
    assert!(t.report_folders().is_empty(), "a report folder was created");
}
