//! Issue 10, item 6: the sharp edges a new user hit, each through the built binary.

use std::process::{Command, Stdio};

use crate::support::{CHAOSCTL, Report, Sleeper, Test, pattern, proc_state, unique};

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
fn issue_10_a_closed_stdout_ends_every_command_quietly() {
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
    let state = t.state_dir().display().to_string();
    let piped = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; {CHAOSCTL} --state-dir {state} runs | head -1"
        ))
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(piped.status.success(), "{:?}: {stderr}", piped.status);
    assert!(stderr.is_empty(), "{stderr}");
    assert!(String::from_utf8_lossy(&piped.stdout).starts_with("RUN "));
}
