//! What a run waits for the disk for (issue 14, item 6): each `fsync` of a real `chaosctl run`,
//! seen through `strace`. The journal is synced once per injection batch (a step's faults on one
//! agent), and not at all for a fault with nothing to revert.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chaos_tests::bins;
use chaos_tests::support::{Report, Sleeper, Test, assert_resumed, pattern, unique};

const STEADY: &str = r#"version: 1
name: syncs
settings: {recover_within: 2s}
steady_state:
  - name: always
    # Under strace on a loaded machine, starting `true` can take longer than one interval.
    command: {run: "true", timeout: 2s}
    every: 50ms
    window: 100ms
steps:
"#;

/// Runs the test's scenario under `strace`; returns its report folder and every sync call, one
/// line each (`fsync(7</path/of/the/file>) = 0`).
fn run_traced(t: &Test) -> (PathBuf, Vec<String>) {
    let before = t.report_folders();
    let trace = t.path("syncs.strace");
    let stderr = t.path("syncs.stderr");
    let status = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-y",
            "-e",
            "trace=fsync,fdatasync,syncfs,sync,sync_file_range",
            "-o",
        ])
        .arg(&trace)
        .arg(bins::chaosctl())
        .arg("--state-dir")
        .arg(t.state_dir())
        .args(t.run_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .status()
        .expect("start strace");
    assert_eq!(
        status.code(),
        Some(0),
        "the run under strace: {}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    let mut folders = t.report_folders();
    folders.retain(|f| !before.contains(f));
    assert_eq!(folders.len(), 1, "{folders:?}");
    let calls = std::fs::read_to_string(&trace)
        .expect("the strace output")
        .lines()
        .filter(|l| l.contains("sync"))
        .map(str::to_string)
        .collect();
    (folders.remove(0), calls)
}

/// The calls that synced a file of `dir` or `dir` itself.
fn syncs_under<'a>(calls: &'a [String], dir: &Path) -> Vec<&'a str> {
    let dir = dir.display().to_string();
    calls
        .iter()
        .filter(|c| c.contains(&format!("<{dir}>")) || c.contains(&format!("<{dir}/")))
        .map(String::as_str)
        .collect()
}

#[test]
fn a_step_of_three_faults_syncs_the_journal_once_to_inject() {
    if !chaos_tests::skip::unless_installed(&["strace"], "strace") {
        return;
    }
    let tag = unique("syncs");
    let sleepers: Vec<Sleeper> = (0..3)
        .map(|i| Sleeper::spawn(&format!("{tag}-{i}")))
        .collect();
    let t = Test::new()
        .scenario(&format!(
            r#"{STEADY}  - name: pause three
    duration: 200ms
    faults:
      - {{target: local, pause: {{process: {{pattern: "${{A}}"}}}}}}
      - {{target: local, pause: {{process: {{pattern: "${{B}}"}}}}}}
      - {{target: local, pause: {{process: {{pattern: "${{C}}"}}}}}}
"#
        ))
        .var("A", pattern(&format!("{tag}-0")))
        .var("B", pattern(&format!("{tag}-1")))
        .var("C", pattern(&format!("{tag}-2")));
    let (folder, calls) = run_traced(&t);
    let report = Report::read(&folder);
    report.verdict("passed", None);
    assert_eq!(report.faults().len(), 3);
    assert_resumed(&sleepers.iter().map(|s| s.pid).collect::<Vec<_>>());

    let journal = syncs_under(&calls, &t.state_dir().join("journal"));
    // Before the injection: the batch's one file (written as a temp file, then renamed), then
    // the directory. After the last revert: the directory, once the batch file is gone.
    assert_eq!(journal.len(), 3, "{journal:#?}\nevery sync: {calls:#?}");
    assert!(journal[0].contains("/.batch+"), "{}", journal[0]);
    let dir = format!("<{}>", t.state_dir().join("journal").display());
    assert!(
        journal[1].contains(&dir) && journal[2].contains(&dir),
        "{journal:#?}"
    );
}

#[test]
fn a_kill_syncs_nothing_but_the_report() {
    if !chaos_tests::skip::unless_installed(&["strace"], "strace") {
        return;
    }
    let tag = unique("syncs-kill");
    let t = Test::new()
        .scenario(&format!(
            r#"{STEADY}  - name: kill it
    target: local
    fault: {{kill: {{process: {{pattern: "${{A}}"}}}}}}
"#
        ))
        .var("A", pattern(&tag));
    // The first run makes the history's database; the second is every later run.
    let first = Sleeper::spawn(&tag);
    t.run().code(0);
    drop(first);
    let victim = Sleeper::spawn(&tag);
    let (folder, calls) = run_traced(&t);
    Report::read(&folder).verdict("passed", None);
    drop(victim);
    assert!(
        syncs_under(&calls, &t.state_dir()).is_empty(),
        "neither the journal nor the history (WAL, synchronous=NORMAL): {calls:#?}"
    );
    // `report.json`'s data and its folder, once each.
    assert_eq!(syncs_under(&calls, &folder).len(), 2, "{calls:#?}");
    assert_eq!(calls.len(), 2, "nothing else is synced: {calls:#?}");
}
