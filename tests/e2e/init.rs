//! `chaosctl init --url URL --process NAME`: the file it writes validates and runs, as written,
//! against a service the test starts; it never overwrites a file without `--force`.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use chaos_tests::eventually;
use chaos_tests::support::{Test, free_port, pids_containing};

/// A `chaos-demo` of the test's own, in its own process group (supervisor and workers), stopped
/// with the group when dropped.
struct Demo {
    child: Child,
}

impl Demo {
    fn start(port: u16, worker_name: &str) -> Demo {
        let child = Command::new(chaos_tests::bins::chaos_demo())
            .args(["--port", &port.to_string(), "--workers", "2"])
            .args(["--worker-name", worker_name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chaos-demo");
        let demo = Demo { child };
        eventually(Duration::from_secs(10), "chaos-demo answers", || {
            health(port).then_some(())
        });
        demo
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Whether `GET /health` answers 200.
fn health(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = String::new();
    s.write_all(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
        .is_ok()
        && s.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200") | answer.starts_with("HTTP/1.0 200")
}

/// The workers' process ids: theirs is the only command line with this port at its end.
fn workers(port: u16) -> Vec<i32> {
    pids_containing(&format!("--worker --port {port}"))
}

#[test]
fn init_writes_a_scenario_that_validates_and_runs_against_the_service() {
    let port = free_port();
    // A worker name of this test's own (at most 15 bytes, as the kernel keeps): the scenario
    // selects processes by name, and other tests' demo workers are named `demo-worker`.
    let name = format!("dw{port}");
    let _demo = Demo::start(port, &name);
    // The service answers once one worker listens; the other may still be starting.
    let before = eventually(Duration::from_secs(10), "both workers run", || {
        Some(workers(port)).filter(|w| w.len() == 2)
    });
    let url = format!("http://127.0.0.1:{port}/health");

    let t = Test::new();
    // Without -o, to standard output.
    let shown = t.cmd(&["init", "--url", &url, "--process", &name]);
    shown.code(0);
    shown.stdout_has("version: 1");
    shown.stdout_has(&format!("process: {{name: \"{name}\"}}"));
    assert_eq!(shown.stderr, "");

    let file = t.path("game-day.yaml").display().to_string();
    let written = t.cmd(&["init", "--url", &url, "--process", &name, "-o", &file]);
    written.code(0);
    written.stderr_has(&format!("chaosctl validate {file}"));
    let text = fs::read_to_string(&file).expect("the written file");
    // The same file, its commands naming where it was written.
    assert_eq!(text, shown.stdout.replace("game-day.yaml", &file));
    for needle in [
        "steady_state:",
        &format!("http: {{url: \"{url}\", timeout: 1s}}"),
        "pick: 1",
        "recover_within: 10s",
        "objectives:\n  max_outage: 5s",
        "#   load: {url:",
        "# What to try next",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }

    // Never over a file without --force.
    fs::write(&file, "mine\n").expect("overwrite with the user's own");
    let refused = t.cmd(&["init", "--url", &url, "--process", &name, "-o", &file]);
    refused.code(2);
    refused.stderr_has("exists; pass --force");
    assert_eq!(fs::read_to_string(&file).unwrap(), "mine\n");
    t.cmd(&[
        "init",
        "--url",
        &url,
        "--process",
        &name,
        "-o",
        &file,
        "--force",
    ])
    .code(0);
    assert_eq!(fs::read_to_string(&file).unwrap(), text);

    t.cmd(&["validate", &file]).code(0).stdout_has(": ok");
    let reports = t.report_dir().display().to_string();
    let run = t.cmd(&["run", &file, "--yes", "--report-dir", &reports]);
    run.code(0);
    let report = run.report();
    report.verdict("passed", None);
    // One worker, of this service, was killed (pick 1); the supervisor replaced it.
    let faults = report.faults();
    assert_eq!(faults.len(), 1, "{faults:?}");
    let affected = faults[0]["affected"].as_array().expect("affected");
    assert_eq!(affected.len(), 1, "pick 1 kills one process: {affected:?}");
    let killed = affected[0].as_str().unwrap();
    assert!(
        before
            .iter()
            .any(|pid| killed.contains(&format!("pid {pid} "))),
        "{killed} is not one of {before:?}"
    );
    assert!(killed.contains(&name), "{killed}");
    eventually(
        Duration::from_secs(10),
        "the supervisor restarts it",
        || Some(workers(port)).filter(|w| w.len() == 2 && w.iter().any(|p| !before.contains(p))),
    );
}

#[test]
fn init_refuses_what_is_not_a_url_or_a_process_name() {
    let t = Test::new();
    let bad_url = t.cmd(&["init", "--url", "127.0.0.1:8080", "--process", "nginx"]);
    bad_url.code(2);
    bad_url.stderr_has("--url `127.0.0.1:8080` is not an http:// or https:// URL");
    assert_eq!(bad_url.stdout, "");
    let bad_name = t.cmd(&[
        "init",
        "--url",
        "http://127.0.0.1/",
        "--process",
        "/usr/sbin/nginx",
    ]);
    bad_name.code(2);
    bad_name.stderr_has("is not a process name");
}

/// The tutorial that starts from `init` is read on GitHub and in a checkout: every relative link
/// of it (and of the drill docs it sends readers to) must name a file of this repository, and an
/// anchor a heading of it.
#[test]
fn the_first_game_day_tutorial_links_resolve_inside_the_repository() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .canonicalize()
        .expect("the workspace exists");
    let mut docs = vec![repo.join("docs/first-game-day.md")];
    docs.extend(
        fs::read_dir(repo.join("docs/drills"))
            .expect("docs/drills")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    let mut checked = 0;
    for doc in &docs {
        let text = fs::read_to_string(doc).expect("a doc");
        for part in text.split("](").skip(1) {
            let link = &part[..part.find(')').expect("a closed link")];
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            let (path, anchor) = link.split_once('#').unwrap_or((link, ""));
            let target = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(path)
            };
            let target = target
                .canonicalize()
                .unwrap_or_else(|_| panic!("{}: `{link}` names no file", doc.display()));
            assert!(
                target.starts_with(&repo),
                "{}: `{link}` points outside the repository",
                doc.display()
            );
            if !anchor.is_empty() {
                let headings = fs::read_to_string(&target).expect("the linked doc");
                let found = headings.lines().any(|l| {
                    let Some(title) = l.trim_start_matches('#').strip_prefix(' ') else {
                        return false;
                    };
                    // GitHub's anchors: lowercase, punctuation dropped, spaces to dashes.
                    let slug: String = title
                        .to_lowercase()
                        .chars()
                        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                        .map(|c| if c == ' ' { '-' } else { c })
                        .collect();
                    l.starts_with('#') && slug == anchor
                });
                assert!(found, "{}: `{link}`: no such heading", doc.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} links: the docs moved?");
}
