//! The `chaosd` service end to end: the built binary on 127.0.0.1, its API through real HTTP, and
//! `chaosctl --server` against it (the `chaosctl` built next to `chaosd`; `cargo test --workspace`
//! builds both). Faults are pauses of `sleep`s the tests start, so nothing needs root.
//!
//! These tests wait on real processes and real time, so they measure time with
//! `std::time::Instant`. Every process they start is ended on every path (Drop guards), and each
//! test has its own port and folders.
#![allow(clippy::disallowed_types)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

mod common;

use chaos_tests::eventually;
use chaos_tests::otlp::{Answers, Collector};
use common::{Reply, request, request_with, webhook_server};

const CHAOSD: &str = env!("CARGO_BIN_EXE_chaosd");
const TOKEN: &str = "test-token-0123456789";

fn chaosctl() -> PathBuf {
    chaos_tests::bins::chaosctl()
}

fn unique(what: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "svc-{what}-{}-{}x",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// A `sleep` whose command line starts with a unique tag; killed when dropped.
struct Sleeper {
    child: Child,
    pid: i32,
    pattern: String,
}

impl Sleeper {
    fn spawn(what: &str) -> Sleeper {
        let tag = unique(what);
        let child = Command::new("sleep")
            .arg0(&tag)
            .arg("300")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        eventually(Duration::from_secs(5), "sleep has exec'd", || {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .ok()
                .filter(|c| c.starts_with(tag.as_bytes()))
        });
        Sleeper {
            child,
            pid,
            pattern: format!("^{tag}"),
        }
    }

    fn wait_state(&self, want: char, what: &str) {
        eventually(Duration::from_secs(20), what, || {
            (proc_state(self.pid) == Some(want)).then_some(())
        });
    }

    fn assert_running(&self) {
        self.wait_state('S', "the sleeper resumed (state S)");
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pause_yaml(pattern: &str, duration: &str) -> String {
    format!(
        r#"version: 1
name: pause-sleeper
steady_state:
  - name: the sleeper is there
    process: {{pattern: "{pattern}"}}
    every: 100ms
    window: 100ms
steps:
  - name: pause the sleeper
    target: local
    fault: {{pause: {{process: {{pattern: "{pattern}"}}}}}}
    duration: {duration}
    recover_within: 1s
"#
    )
}

// ---- a chaosd of our own ----------------------------------------------------------------------

struct Chaosd {
    dir: tempfile::TempDir,
    port: u16,
    token: &'static str,
    /// More lines for chaosd.yaml (`webhooks:`, `public_url:`).
    extra_config: String,
    allow_local: bool,
    child: Option<Child>,
    serial: u32,
}

impl Chaosd {
    fn start(allow_local: bool) -> Chaosd {
        Chaosd::start_with_token(allow_local, TOKEN)
    }

    fn start_with_config(allow_local: bool, extra_config: &str) -> Chaosd {
        let mut d = Chaosd::start_with_token(allow_local, TOKEN);
        d.stop();
        d.extra_config = extra_config.to_string();
        d.spawn();
        d
    }

    fn start_with_token(allow_local: bool, token: &'static str) -> Chaosd {
        let dir = tempfile::Builder::new()
            .prefix("chaosd-svc-")
            .tempdir()
            .expect("temp dir");
        let mut d = Chaosd {
            dir,
            port: free_port(),
            token,
            extra_config: String::new(),
            allow_local,
            child: None,
            serial: 0,
        };
        d.spawn();
        d
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts (or restarts) the binary on the same config and state, and waits for `/healthz`.
    fn spawn(&mut self) {
        std::fs::write(self.path("token"), format!("{}\n", self.token)).expect("token");
        let config = format!(
            "listen: 127.0.0.1:{}\ntoken_file: token\nstate_dir: state\nreport_dir: reports\nallow_local: {}\n{}",
            self.port, self.allow_local, self.extra_config
        );
        std::fs::write(self.path("chaosd.yaml"), config).expect("config");
        self.serial += 1;
        let log = std::fs::File::create(self.path(&format!("chaosd-{}.log", self.serial)))
            .expect("log file");
        let child = Command::new(CHAOSD)
            .arg("--config")
            .arg(self.path("chaosd.yaml"))
            .env("CHAOS_LOG", "info")
            // Traces go only where a test's `otlp:` says.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start chaosd");
        self.child = Some(child);
        eventually(Duration::from_secs(20), "chaosd answers /healthz", || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("chaosd exited {status:?}:\n{}", self.log());
            }
            request(self.port, "GET", "/healthz", None, None)
                .ok()
                .filter(|r| r.status == 200)
        });
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path(&format!("chaosd-{}.log", self.serial)))
            .unwrap_or_default()
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    /// SIGTERM, then waits (bounded) for it to end.
    fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let status = eventually(Duration::from_secs(30), "chaosd ends after SIGTERM", || {
            child.try_wait().ok().flatten()
        });
        status.code()
    }

    fn sigkill(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let body = body.map(|b| b.to_string());
        request(self.port, method, path, Some(self.token), body.as_deref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\nchaosd log:\n{}", self.log()))
    }

    fn submit(&self, yaml: &str) -> String {
        let r = self.call(
            "POST",
            "/v1/runs",
            Some(&json!({"scenario": yaml, "file": "pause.yaml"})),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["run_id"].as_str().expect("run_id").to_string()
    }

    fn run(&self, id: &str) -> Value {
        let r = self.call("GET", &format!("/v1/runs/{id}"), None);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    fn wait_verdict(&self, id: &str) -> Value {
        eventually(Duration::from_secs(30), "the run ends", || {
            let run = self.run(id);
            (run["run"]["verdict"] != "running").then_some(run)
        })
    }

    fn history(&self) -> Vec<Value> {
        let r = self.call("GET", "/v1/runs", None);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["runs"].as_array().cloned().unwrap_or_default()
    }

    /// `chaosctl --server URL ARGS...` with the token in the environment, to its end.
    fn chaosctl(&self, args: &[&str]) -> Ctl {
        self.spawn_chaosctl(args).wait()
    }

    /// `chaosctl --server URL ARGS...` whose stdout's reader has gone (as after `| head -1`).
    fn chaosctl_closed_stdout(&self, args: &[&str]) -> Ctl {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        self.spawn_chaosctl_to(args, Stdio::from(writer)).wait()
    }

    fn spawn_chaosctl(&self, args: &[&str]) -> CtlRunning {
        let out = self.path(&format!("{}.out", unique("ctl")));
        let file = std::fs::File::create(&out).expect("out");
        let mut running = self.spawn_chaosctl_to(args, Stdio::from(file));
        running.out = out;
        running
    }

    fn spawn_chaosctl_to(&self, args: &[&str], stdout: Stdio) -> CtlRunning {
        let n = unique("ctl");
        let (out, err) = (
            self.path(&format!("{n}.closed")),
            self.path(&format!("{n}.err")),
        );
        let child = Command::new(chaosctl())
            .arg("--server")
            .arg(self.url())
            .args(args)
            .current_dir(self.dir.path())
            .env("CHAOSD_TOKEN", self.token)
            .env_remove("CHAOSD_URL")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(std::fs::File::create(&err).expect("err"))
            .spawn()
            .expect("start chaosctl");
        CtlRunning {
            child: Some(child),
            out,
            err,
        }
    }
}

impl Drop for Chaosd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct CtlRunning {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
}

impl CtlRunning {
    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.as_ref().expect("running").id() as i32);
        kill(pid, signal).expect("kill");
    }

    fn wait(mut self) -> Ctl {
        let mut child = self.child.take().expect("running");
        let status = eventually(Duration::from_secs(60), "chaosctl ends", || {
            child.try_wait().ok().flatten()
        });
        Ctl {
            code: status.code(),
            stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
        }
    }
}

impl Drop for CtlRunning {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Debug)]
struct Ctl {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ctl {
    #[track_caller]
    fn code(&self, want: i32) -> &Ctl {
        assert_eq!(
            self.code,
            Some(want),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

// ---- the tests --------------------------------------------------------------------------------

#[test]
fn submit_follow_and_every_report_format() {
    let d = Chaosd::start(true);
    let sleeper = Sleeper::spawn("api");
    let id = d.submit(&pause_yaml(&sleeper.pattern, "1500ms"));
    sleeper.wait_state('T', "the sleeper paused");
    // While it runs: the record and the live status.
    let live = d.run(&id);
    assert_eq!(live["run"]["verdict"], "running", "{live}");
    assert!(live["live"]["phase"].is_string(), "{live}");
    assert!(live["report"].is_null());
    let early = d.call("GET", &format!("/v1/runs/{id}/report?format=md"), None);
    early.error(409, "conflict");

    // The stream: every event, then one `end` line, and the connection ends with the run.
    let stream = d.call("GET", &format!("/v1/runs/{id}/events"), None);
    assert_eq!(stream.status, 200);
    assert!(
        stream.headers.contains("application/x-ndjson"),
        "{}",
        stream.headers
    );
    let lines: Vec<Value> = stream
        .body
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let kinds: Vec<&str> = lines
        .iter()
        .filter(|l| l["type"] == "event")
        .filter_map(|l| l["kind"].as_str())
        .collect();
    assert_eq!(kinds.first(), Some(&"run_started"), "{kinds:?}");
    assert!(kinds.contains(&"fault_applied"), "{kinds:?}");
    assert!(kinds.contains(&"fault_reverted"), "{kinds:?}");
    let end = lines.last().expect("lines");
    assert_eq!(end["type"], "end");
    assert_eq!(end["verdict"], "passed");
    assert_eq!(end["exit_code"], 0);
    assert_eq!(end["report"]["run_id"], id.as_str());
    sleeper.assert_running();

    let done = d.run(&id);
    assert_eq!(done["run"]["verdict"], "passed");
    assert!(done["live"].is_null());
    assert_eq!(done["report"]["schema"], "chaos.report/v1");
    // What users went through travels with the report: the step's impact per probe and host.
    let impact = &done["report"]["steps"][0]["impact"][0];
    assert_eq!(impact["probe"], "the sleeper is there", "{done}");
    assert_eq!(impact["failed"], 0, "{impact}");
    assert!(impact["taken"].as_u64().is_some_and(|n| n > 0), "{impact}");

    // Following a run that has ended replays its events.
    let replay = d.call("GET", &format!("/v1/runs/{id}/events"), None);
    assert!(replay.body.contains("\"fault_reverted\""));
    assert!(replay.body.trim_end().ends_with('}'));

    for (format, needle, ctype) in [
        ("json", "\"chaos.report/v1\"", "application/json"),
        ("md", "# Chaos run: pause-sleeper", "text/markdown"),
        ("html", "<html", "text/html"),
        ("junit", "<testsuite", "application/xml"),
    ] {
        let r = d.call(
            "GET",
            &format!("/v1/runs/{id}/report?format={format}"),
            None,
        );
        assert_eq!(r.status, 200, "{format}: {}", r.body);
        assert!(r.body.contains(needle), "{format}: {}", r.body);
        assert!(r.headers.contains(ctype), "{format}: {}", r.headers);
    }
    d.call("GET", &format!("/v1/runs/{id}/report?format=pdf"), None)
        .error(400, "bad_request");

    // The report folder, as chaosctl writes it.
    let folder = d.path("reports").join(&id);
    for file in [
        "report.json",
        "report.md",
        "report.html",
        "report.junit.xml",
        "events.jsonl",
    ] {
        assert!(
            folder.join(file).is_file(),
            "{file} missing in {}",
            folder.display()
        );
    }

    // chaosctl reads the same history and reports.
    let runs = d.chaosctl(&["runs"]);
    runs.code(0);
    assert!(
        runs.stdout.contains(&id) && runs.stdout.contains("passed"),
        "{}",
        runs.stdout
    );
    let out = d.path("r.html");
    d.chaosctl(&[
        "report",
        &id,
        "--format",
        "html",
        "-o",
        out.to_str().unwrap(),
    ])
    .code(0);
    assert!(std::fs::read_to_string(out).unwrap().contains("<html"));
    d.chaosctl(&["report", "nope"]).code(2);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let d = Chaosd::start(true);
    let broken = "version: 1\nname: broken\nstepz: []\n";
    let r = d.call(
        "POST",
        "/v1/runs",
        Some(&json!({"scenario": broken, "file": "broken.yaml"})),
    );
    let message = r.error(400, "invalid_scenario");
    assert!(message.contains("broken.yaml:3:1"), "{message}");
    assert!(message.contains("did you mean `steps`"), "{message}");

    d.call("GET", "/v1/runs/no-such-run", None)
        .error(404, "not_found");
    d.call("POST", "/v1/runs/no-such-run/abort", None)
        .error(404, "not_found");
    request(d.port, "GET", "/v1/runs", Some("wrong-token"), None)
        .unwrap()
        .error(401, "unauthorized");
    request(d.port, "POST", "/v1/halt", None, None)
        .unwrap()
        .error(401, "unauthorized");
    let malformed = request(
        d.port,
        "POST",
        "/v1/runs",
        Some(TOKEN),
        Some("{\"scenario\": "),
    )
    .unwrap();
    malformed.error(400, "bad_request");
    let unknown = d.call(
        "POST",
        "/v1/runs",
        Some(&json!({"scenario": "x", "bogus": 1})),
    );
    unknown.error(400, "bad_request");
    let big = "x".repeat(1_100_000);
    let r = request(d.port, "POST", "/v1/runs", Some(TOKEN), Some(&big)).unwrap();
    r.error(413, "too_large");
    d.call("DELETE", "/v1/runs", None)
        .error(405, "method_not_allowed");

    // Nothing was recorded, no report folder, no run folder, not halted.
    assert_eq!(d.history(), Vec::<Value>::new());
    assert!(std::fs::read_dir(d.path("reports")).map_or(true, |mut e| e.next().is_none()));
    assert!(std::fs::read_dir(d.path("state/runs")).map_or(true, |mut e| e.next().is_none()));
    assert_eq!(d.call("GET", "/v1/status", None).json()["halted"], false);

    // chaosctl shows the scenario's own rendering and exits 2.
    let file = d.path("broken.yaml");
    std::fs::write(&file, broken).unwrap();
    let out = d.chaosctl(&["run", file.to_str().unwrap(), "--yes"]);
    out.code(2);
    assert!(out.stderr.contains("broken.yaml:3:1"), "{}", out.stderr);
    // A wrong token: 401, exit 5.
    let bad = Command::new(chaosctl())
        .args(["--server", &d.url(), "runs"])
        .env("CHAOSD_TOKEN", "nope")
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn local_things_are_refused_without_allow_local() {
    let d = Chaosd::start(false);
    let sleeper = Sleeper::spawn("refused");
    let r = d.call(
        "POST",
        "/v1/runs",
        Some(&json!({"scenario": pause_yaml(&sleeper.pattern, "1s")})),
    );
    let message = r.error(403, "forbidden");
    assert!(
        message.contains("`local`") && message.contains("allow_local"),
        "{message}"
    );
    let setup = "version: 1\nname: s\nhosts:\n  far: {agent: \"https://127.0.0.1:1\"}\nsetup:\n  - {name: up, run: [echo, hi]}\nsteps:\n  - {name: p, target: far, fault: {pause: {process: {name: x}}}, duration: 1s}\n";
    let r = d.call("POST", "/v1/runs", Some(&json!({"scenario": setup})));
    let message = r.error(403, "forbidden");
    assert!(message.contains("setup `up`"), "{message}");
    assert!(!message.contains("step 1"), "{message}");
    assert_eq!(d.history(), Vec::<Value>::new());
    assert_ne!(proc_state(sleeper.pid), Some('T'));
}

#[test]
fn chaosctl_server_diff_compares_two_runs_of_chaosds_history() {
    let d = Chaosd::start(true);
    let sleeper = Sleeper::spawn("diff");
    let file = d.path("pause.yaml");
    std::fs::write(&file, pause_yaml("${PAT}", "300ms")).unwrap();
    let pat = format!("PAT={}", sleeper.pattern);
    let mut ids = Vec::new();
    for label in ["try=1", "try=2"] {
        let out = d.chaosctl(&[
            "run",
            file.to_str().unwrap(),
            "--yes",
            "--var",
            &pat,
            "--label",
            label,
            "--output",
            "json",
        ]);
        out.code(0);
        let result: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
        ids.push(result["run_id"].as_str().expect("a run id").to_string());
    }
    // Run B by the random part of its id, as chaosd resolves it.
    let suffix = ids[1].rsplit_once('-').unwrap().1;
    let out = d.chaosctl(&["diff", &ids[0], suffix, "--format", "json"]);
    out.code(0);
    let diff: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(diff["schema"], "chaos.diff/v1");
    assert_eq!(
        (diff["a"]["run_id"].as_str(), diff["b"]["run_id"].as_str()),
        (Some(ids[0].as_str()), Some(ids[1].as_str()))
    );
    assert_eq!(diff["same_scenario"], true);
    assert_eq!(diff["steps"][0]["matched"], "name");
    let labels = diff["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["what"] == "labels")
        .unwrap_or_else(|| panic!("no labels difference: {diff}"));
    assert_eq!(labels["text"], "labels: try=1 → try=2");

    let text = d.chaosctl(&["diff", &ids[0], &ids[1]]);
    text.code(0);
    assert!(
        text.stdout.contains("step 1: pause the sleeper\n"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("the same scenario file (same sha256)"),
        "{}",
        text.stdout
    );

    // An id chaosd does not know: invalid input, naming the id and how to list runs.
    let unknown = d.chaosctl(&["diff", &ids[0], "fffffe"]);
    unknown.code(2);
    assert!(
        unknown
            .stderr
            .contains("no run `fffffe` (run B) on chaosd at")
            && unknown.stderr.contains("runs` lists them"),
        "{}",
        unknown.stderr
    );
    sleeper.assert_running();
}

#[test]
fn chaosctl_server_run_gives_the_local_exit_codes() {
    let d = Chaosd::start(true);
    let sleeper = Sleeper::spawn("ctl");
    let file = d.path("pause.yaml");
    std::fs::write(&file, pause_yaml("${PAT}", "500ms")).unwrap();
    let pat = format!("PAT={}", sleeper.pattern);
    let out = d.chaosctl(&[
        "run",
        file.to_str().unwrap(),
        "--yes",
        "--var",
        &pat,
        "--label",
        "team=sre",
    ]);
    out.code(0);
    assert!(out.stdout.contains("verdict   passed"), "{}", out.stdout);
    assert!(out.stderr.contains("injected pause"), "{}", out.stderr);
    let folder = PathBuf::from(out.stdout.lines().last().unwrap().trim());
    assert!(folder.join("report.json").is_file(), "{}", out.stdout);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["labels"]["team"], "sre");
    sleeper.assert_running();

    // Nothing listens on this port: the hypothesis does not hold, nothing is injected.
    let port = free_port();
    let not_steady = format!(
        r#"version: 1
name: not-steady
steady_state:
  - name: nothing listens
    tcp: {{address: "127.0.0.1:{port}", timeout: 200ms}}
    every: 100ms
    window: 300ms
steps:
  - name: pause
    target: local
    fault: {{pause: {{process: {{pattern: "{}"}}}}}}
    duration: 1s
"#,
        sleeper.pattern
    );
    let file = d.path("not-steady.yaml");
    std::fs::write(&file, not_steady).unwrap();
    let out = d.chaosctl(&["run", file.to_str().unwrap(), "--yes", "--output", "json"]);
    out.code(4);
    let result: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result["type"], "result");
    assert_eq!(result["verdict"], "not_steady");
    assert_eq!(result["exit_code"], 4);
    assert!(out.stdout.contains("\"type\":\"event\""), "{}", out.stdout);
}

#[test]
fn chaosctl_server_ends_quietly_on_a_closed_stdout() {
    let d = Chaosd::start(true);
    let sleeper = Sleeper::spawn("closed");
    let file = d.path("pause.yaml");
    std::fs::write(&file, pause_yaml(&sleeper.pattern, "300ms")).unwrap();
    // Followed with every event on the closed stdout: the run ends as it would, reverted.
    let run =
        d.chaosctl_closed_stdout(&["run", file.to_str().unwrap(), "--yes", "--output", "json"]);
    run.code(0);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    sleeper.assert_running();
    for args in [
        &["runs"][..],
        &["runs", "--output", "json"],
        &["report", "latest", "--format", "md"],
    ] {
        let out = d.chaosctl_closed_stdout(args);
        out.code(0);
        assert!(
            !out.stderr.contains("panicked") && !out.stderr.contains("Broken pipe"),
            "{args:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn the_web_view_takes_a_url_encoded_base64_token() {
    let token = "k9+Zx/Qw7Rt2+aB/cD1eFg==";
    let d = Chaosd::start_with_token(false, token);
    for given in [
        token.to_string(),
        token
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D"),
        token
            .replace('+', "%2b")
            .replace('/', "%2f")
            .replace('=', "%3d"),
    ] {
        let r = request(d.port, "GET", &format!("/ui/?token={given}"), None, None).unwrap();
        assert_eq!(r.status, 303, "{given}: {}", r.body);
        let cookie = r
            .headers
            .lines()
            .find_map(|l| {
                l.strip_prefix("set-cookie: ")
                    .or(l.strip_prefix("Set-Cookie: "))
            })
            .unwrap_or_else(|| panic!("no cookie: {}", r.headers));
        let pair = cookie.split(';').next().unwrap();
        // The cookie the browser sends back opens the pages.
        let page = request_with_cookie(d.port, "/ui/", pair);
        assert!(page.starts_with("HTTP/1.1 200"), "{given}: {page}");
    }
    let wrong = request(d.port, "GET", "/ui/?token=k9%2BZx", None, None).unwrap();
    assert_eq!(wrong.status, 401);
}

/// `GET path` with a `Cookie:` header; the whole answer as text.
fn request_with_cookie(port: u16, path: &str, cookie: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nCookie: {cookie}\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    raw
}

#[test]
fn a_run_id_may_be_its_random_suffix() {
    let d = Chaosd::start(true);
    let sleeper = Sleeper::spawn("suffix");
    let id = d.submit(&pause_yaml(&sleeper.pattern, "30s"));
    sleeper.wait_state('T', "the sleeper paused");
    let (_, suffix) = id.rsplit_once('-').unwrap();
    assert_eq!(d.run(suffix)["run"]["run_id"], id.as_str());
    // `chaosctl abort SUFFIX` aborts that run.
    d.chaosctl(&["abort", suffix]).code(0);
    assert_eq!(d.wait_verdict(suffix)["run"]["verdict"], "aborted");
    sleeper.assert_running();
    let out = d.chaosctl(&["report", &suffix[..3], "--format", "json"]);
    out.code(0);
    assert!(out.stdout.contains(&id), "{}", out.stdout);
}

#[test]
fn a_second_run_reuses_the_connections_of_the_first() {
    let fleet = chaos_tests::fake_agent::FakeFleet::start(4, Duration::from_millis(5));
    let d = Chaosd::start(false);
    let token = d.path("agent.token");
    std::fs::write(&token, "reuse-token-0123456789\n").unwrap();
    let yaml = format!(
        "version: 1\nname: reuse\nhosts:\n{}targets:\n  fleet: {{hosts: [h1, h2, h3, h4]}}\nsteps:\n  - name: pause\n    target: fleet\n    fault: {{pause: {{process: {{name: reuse-nothing}}}}}}\n    duration: 200ms\n",
        fleet.hosts_yaml(&token)
    );
    let first = d.submit(&yaml);
    assert_eq!(d.wait_verdict(&first)["run"]["verdict"], "passed");
    let opened = fleet.connections();
    assert!(
        (4..8).contains(&opened),
        "{opened} connections for 4 agents"
    );
    let second = d.submit(&yaml);
    assert_eq!(d.wait_verdict(&second)["run"]["verdict"], "passed");
    assert_eq!(fleet.calls_of("apply").len(), 8);
    // Every call of the second run went over a connection the first one left open: no new
    // connection, so no TLS handshake either.
    assert_eq!(fleet.connections(), opened, "the second run connected anew");
}

#[test]
fn asking_for_the_agents_reuses_the_runs_kept_connections() {
    let fleet = chaos_tests::fake_agent::FakeFleet::start(3, Duration::from_millis(1));
    let dir = tempfile::Builder::new()
        .prefix("chaosd-views-")
        .tempdir()
        .unwrap();
    let token = dir.path().join("agent.token");
    std::fs::write(&token, "views-token-0123456789\n").unwrap();
    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(&inventory, format!("hosts:\n{}", fleet.hosts_yaml(&token))).unwrap();
    let d = Chaosd::start_with_config(false, &format!("inventory: {}\n", inventory.display()));
    assert_eq!(agent_views(&d).len(), 3);
    let opened = fleet.connections();
    assert!(
        (3..6).contains(&opened),
        "{opened} connections for 3 agents"
    );
    assert_eq!(agent_views(&d).len(), 3);
    assert_eq!(
        fleet.connections(),
        opened,
        "`GET /v1/agents` connected anew"
    );
}

#[test]
fn chaosd_logs_carry_no_colour_codes_off_a_terminal() {
    let d = Chaosd::start(true);
    let sleeper = Sleeper::spawn("plainlog");
    let id = d.submit(&pause_yaml(&sleeper.pattern, "100ms"));
    d.wait_verdict(&id);
    let log = d.log();
    assert!(log.contains(" INFO "), "{log}");
    assert!(
        !log.contains('\x1b'),
        "an escape code in a log file:\n{log}"
    );
}

#[test]
fn webhooks_say_how_the_run_ended_and_link_its_report() {
    let (hook_port, hooks) = webhook_server();
    let d = Chaosd::start_with_config(
        true,
        &format!(
            "public_url: https://chaosd.example:7410/\nwebhooks:\n  - {{url: 'http://127.0.0.1:{hook_port}/hook', events: [run_started, run_finished]}}\n"
        ),
    );
    let sleeper = Sleeper::spawn("hook");
    let id = d.submit(&pause_yaml(&sleeper.pattern, "100ms"));
    let got = eventually(Duration::from_secs(30), "two webhooks", || {
        let got: Vec<Value> = hooks
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["run_id"] == id.as_str())
            .cloned()
            .collect();
        (got.len() >= 2).then_some(got)
    });
    let url = format!("https://chaosd.example:7410/ui/runs/{id}");
    let end = got.iter().find(|v| v["event"] == "run_finished").unwrap();
    let text = end["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("chaosd: run {id} of `pause-sleeper` passed (")),
        "{text}"
    );
    assert!(!text.contains("ended"), "{text}");
    assert!(text.ends_with(&format!("; report: {url}")), "{text}");
    assert_eq!(end["report_url"], url.as_str());
    assert_eq!(end["verdict"], "passed");
    let start = got.iter().find(|v| v["event"] == "run_started").unwrap();
    assert_eq!(start["report_url"], url.as_str());
}

#[test]
fn otlp_in_the_configuration_exports_each_run_as_a_trace() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
    use prost::Message;

    let collector = Collector::start(Answers::Ok);
    let d = Chaosd::start_with_config(
        true,
        &format!(
            "otlp:\n  endpoint: {}\n  headers: {{x-api-key: k1}}\n",
            collector.endpoint()
        ),
    );
    assert!(
        d.log().contains("exporting each run as a trace over OTLP"),
        "{}",
        d.log()
    );
    let sleeper = Sleeper::spawn("otlp");
    let id = d.submit(&pause_yaml(&sleeper.pattern, "300ms"));
    assert_eq!(d.wait_verdict(&id)["run"]["verdict"], "passed");
    let post = eventually(Duration::from_secs(10), "the run's trace", || {
        collector.received().into_iter().next()
    });
    assert_eq!(post.path, "/v1/traces");
    assert_eq!(post.header("x-api-key"), Some("k1"));
    let request = ExportTraceServiceRequest::decode(post.body.as_slice()).expect("OTLP protobuf");
    let string = |kvs: &[KeyValue], key: &str| {
        kvs.iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.clone())
            .and_then(|v| match v {
                any_value::Value::StringValue(s) => Some(s),
                _ => None,
            })
    };
    let resource = &request.resource_spans[0];
    let service = string(
        &resource.resource.as_ref().unwrap().attributes,
        "service.name",
    );
    assert_eq!(service.as_deref(), Some("chaosd"));
    let spans: Vec<_> = resource.scope_spans.iter().flat_map(|s| &s.spans).collect();
    let run = spans
        .iter()
        .find(|s| s.name == "run pause-sleeper")
        .expect("the run's span");
    assert_eq!(string(&run.attributes, "chaos.run_id"), Some(id.clone()));
    assert!(run.events.iter().any(|e| e.name == "verdict"));
    let fault = spans
        .iter()
        .find(|s| s.name == "fault pause on local")
        .expect("the fault's span");
    assert_eq!(
        string(&fault.attributes, "chaos.fault.kind").as_deref(),
        Some("pause")
    );
    let step = spans
        .iter()
        .find(|s| s.name == "step pause the sleeper")
        .unwrap();
    assert_eq!(fault.parent_span_id, step.span_id);
    assert_eq!(step.parent_span_id, run.span_id);
}

#[test]
fn abort_reverts_and_exits_3() {
    let d = Chaosd::start(true);
    let sleeper = Sleeper::spawn("abort");
    let file = d.path("pause.yaml");
    std::fs::write(&file, pause_yaml(&sleeper.pattern, "30s")).unwrap();

    // `chaosctl abort RUN` while another chaosctl follows the run.
    let following = d.spawn_chaosctl(&["run", file.to_str().unwrap(), "--yes"]);
    sleeper.wait_state('T', "the sleeper paused");
    let id = d.history()[0]["run_id"].as_str().unwrap().to_string();
    d.chaosctl(&["abort", &id]).code(0);
    let out = following.wait();
    out.code(3);
    assert!(
        out.stdout.contains("verdict   aborted (cause: api)"),
        "{}",
        out.stdout
    );
    sleeper.assert_running();
    let run = d.run(&id);
    assert_eq!(run["run"]["verdict"], "aborted");
    assert_eq!(run["report"]["cause"], "api");
    d.call("POST", &format!("/v1/runs/{id}/abort"), None)
        .error(409, "conflict");

    // Ctrl-C while following: chaosctl asks the server to abort and follows to the end.
    let following = d.spawn_chaosctl(&["run", file.to_str().unwrap(), "--yes"]);
    sleeper.wait_state('T', "the sleeper paused again");
    following.signal(Signal::SIGINT);
    let out = following.wait();
    out.code(3);
    assert!(
        out.stderr.contains("asking chaosd to abort"),
        "{}",
        out.stderr
    );
    sleeper.assert_running();
}

#[test]
fn halt_aborts_refuses_until_resume_and_survives_a_restart() {
    let mut d = Chaosd::start(true);
    let sleeper = Sleeper::spawn("halt");
    let id = d.submit(&pause_yaml(&sleeper.pattern, "30s"));
    sleeper.wait_state('T', "the sleeper paused");
    let halted = d.call("POST", "/v1/halt", None);
    assert_eq!(halted.status, 200, "{}", halted.body);
    assert_eq!(halted.json()["aborted"], json!([id]));
    let run = d.wait_verdict(&id);
    assert_eq!(run["run"]["verdict"], "aborted");
    sleeper.assert_running();

    let yaml = pause_yaml(&sleeper.pattern, "100ms");
    let refused = d.call("POST", "/v1/runs", Some(&json!({"scenario": yaml})));
    refused.error(503, "halted");
    let file = d.path("p.yaml");
    std::fs::write(&file, &yaml).unwrap();
    d.chaosctl(&["run", file.to_str().unwrap(), "--yes"])
        .code(5);

    // The switch is kept across a restart.
    assert_eq!(d.stop(), Some(0));
    d.spawn();
    d.call("POST", "/v1/runs", Some(&json!({"scenario": yaml})))
        .error(503, "halted");
    assert_eq!(d.call("GET", "/v1/status", None).json()["halted"], true);

    d.chaosctl(&["resume"]).code(0);
    let again = d.submit(&yaml);
    assert_eq!(d.wait_verdict(&again)["run"]["verdict"], "passed");
    d.chaosctl(&["halt"]).code(0);
    d.chaosctl(&["resume"]).code(0);
}

// ---- the web view's actions ------------------------------------------------------------------

/// A browser session on the web view: its cookies (token and session) and its forms' CSRF token.
struct Web {
    port: u16,
    cookie: String,
    csrf: String,
}

impl Web {
    /// Signs in with `?token=` as a browser does, and reads the CSRF token off the index page.
    fn sign_in(d: &Chaosd) -> Web {
        let r = request(
            d.port,
            "GET",
            &format!("/ui/?token={}", d.token),
            None,
            None,
        )
        .unwrap();
        assert_eq!(r.status, 303, "{}", r.body);
        let cookies = r.header_values("set-cookie");
        assert_eq!(cookies.len(), 2, "token and session cookies: {cookies:?}");
        for c in &cookies {
            assert!(
                c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/ui"),
                "{c}"
            );
        }
        let cookie = cookies
            .iter()
            .map(|c| c.split(';').next().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("; ");
        let mut web = Web {
            port: d.port,
            cookie,
            csrf: String::new(),
        };
        let page = web.get("/ui/");
        assert_eq!(page.status, 200, "{}", page.body);
        web.csrf = csrf_of(&page.body);
        web
    }

    fn own_origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn get(&self, path: &str) -> Reply {
        let host = format!("127.0.0.1:{}", self.port);
        request_with(
            self.port,
            "GET",
            path,
            &[("Host", &host), ("Cookie", &self.cookie)],
            "",
        )
        .unwrap()
    }

    /// Posts a form as the browser does from chaosd's own page.
    fn post(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let origin = self.own_origin();
        self.post_with(path, fields, Some(&self.cookie), &[("Origin", &origin)])
    }

    /// Posts a form with the session's CSRF token (unless `fields` has its own `csrf`).
    fn post_with(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        cookie: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut fields = fields.to_vec();
        if !fields.iter().any(|(k, _)| *k == "csrf") {
            fields.push(("csrf", &self.csrf));
        }
        let body = fields
            .iter()
            .filter(|(_, v)| !v.is_empty() || fields.len() == 1)
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let host = format!("127.0.0.1:{}", self.port);
        let mut headers = vec![
            ("Host", host.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        if let Some(cookie) = cookie {
            headers.push(("Cookie", cookie));
        }
        headers.extend_from_slice(extra);
        request_with(self.port, "POST", path, &headers, &body).unwrap()
    }
}

fn form_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b' ' => "+".to_string(),
            b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// The hidden CSRF field's value in a page.
#[track_caller]
fn csrf_of(page: &str) -> String {
    let start = page
        .find("name=csrf value=\"")
        .unwrap_or_else(|| panic!("no CSRF field in:\n{page}"))
        + "name=csrf value=\"".len();
    page[start..][..page[start..].find('"').unwrap()].to_string()
}

/// Where a 303 sends the browser.
#[track_caller]
fn location(r: &Reply) -> String {
    assert_eq!(r.status, 303, "{}", r.body);
    r.header_values("location").pop().expect("a Location")
}

/// The audit log's lines.
fn audit(d: &Chaosd) -> Vec<Value> {
    std::fs::read_to_string(d.path("state/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn web_view_aborts_halts_and_resumes_with_the_cookie_and_csrf_token_and_audits_each() {
    let d = Chaosd::start(true);
    let sleeper = Sleeper::spawn("webabort");
    let id = d.submit(&pause_yaml(&sleeper.pattern, "30s"));
    sleeper.wait_state('T', "the sleeper paused");
    let web = Web::sign_in(&d);

    // The live page offers the abort button; a run waiting for no answer shows no confirm form.
    let page = web.get(&format!("/ui/runs/{id}"));
    assert!(
        page.body.contains(&format!(
            "<form id=abort method=post action=\"/ui/runs/{id}/abort\">"
        )),
        "{}",
        page.body
    );
    assert!(!page.body.contains("id=confirm"), "{}", page.body);

    let to = location(&web.post(&format!("/ui/runs/{id}/abort"), &[]));
    assert_eq!(to, format!("/ui/runs/{id}?notice=aborted"));
    let back = web.get(&to);
    assert!(back.body.contains("You aborted this run"), "{}", back.body);
    let run = d.wait_verdict(&id);
    assert_eq!(run["run"]["verdict"], "aborted");
    sleeper.assert_running();
    // The run's own `aborted` event says who asked, as for the API.
    let aborted = run["report"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "aborted")
        .cloned()
        .expect("an aborted event");
    let message = aborted["message"].as_str().unwrap();
    assert!(
        message.starts_with("aborted by web view session ") && message.contains(" from 127.0.0.1:"),
        "{message}"
    );
    // The finished run's page is its report, with the notice on top.
    let report = web.get(&to);
    assert!(
        report.body.contains("id=notice") && report.body.contains("You aborted this run"),
        "{}",
        report.body
    );

    // Abort again: the run has ended, so 409 on an error page, nothing redirected.
    let again = web.post(&format!("/ui/runs/{id}/abort"), &[]);
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("nothing to abort"), "{}", again.body);

    // Halt and resume from the index page.
    let index = web.get("/ui/");
    assert!(index.body.contains("action=\"/ui/halt\""), "{}", index.body);
    let to = location(&web.post("/ui/halt", &[]));
    assert_eq!(to, "/ui/?notice=halted");
    assert_eq!(d.call("GET", "/v1/status", None).json()["halted"], true);
    let index = web.get(&to);
    assert!(
        index.body.contains("chaosd is halted") && index.body.contains("action=\"/ui/resume\""),
        "{}",
        index.body
    );
    let to = location(&web.post("/ui/resume", &[]));
    assert_eq!(to, "/ui/?notice=resumed");
    assert_eq!(d.call("GET", "/v1/status", None).json()["halted"], false);

    // The API's abort goes through the same path and into the same log.
    d.call("POST", &format!("/v1/runs/{id}/abort"), None)
        .error(409, "conflict");

    let lines = audit(&d);
    let find = |event: &str, outcome: &str, actor: &str| {
        lines.iter().find(|l| {
            l["event"] == event
                && l["outcome"] == outcome
                && l["actor"].as_str().unwrap_or_default().starts_with(actor)
        })
    };
    let abort = find("abort", "obeyed", "web view session ").expect("the web abort audited");
    assert_eq!(abort["run"], id.as_str());
    assert_eq!(abort["method"], "POST");
    assert_eq!(abort["path"], format!("/ui/runs/{id}/abort"));
    assert!(
        abort["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{abort}"
    );
    assert!(abort["at"].as_str().is_some(), "{abort}");
    assert!(
        find("abort", "refused", "web view session ").is_some(),
        "{lines:?}"
    );
    assert!(
        find("halt", "obeyed", "web view session ").is_some(),
        "{lines:?}"
    );
    assert!(
        find("resume", "obeyed", "web view session ").is_some(),
        "{lines:?}"
    );
    let api = find("abort", "refused", "the API token").expect("the API abort audited");
    assert_eq!(api["status"], 409);
}

#[test]
fn web_forms_without_a_valid_csrf_token_or_from_another_site_are_refused_and_do_nothing() {
    let d = Chaosd::start(true);
    let sleeper = Sleeper::spawn("webcsrf");
    let id = d.submit(&pause_yaml(&sleeper.pattern, "30s"));
    sleeper.wait_state('T', "the sleeper paused");
    let web = Web::sign_in(&d);
    let other = Web::sign_in(&d);
    assert_ne!(web.csrf, other.csrf, "each session has its own token");
    let abort = format!("/ui/runs/{id}/abort");
    let origin = web.own_origin();
    let own = [("Origin", origin.as_str())];

    let cases: Vec<(&str, Reply)> = vec![
        (
            "no CSRF token",
            web.post_with(&abort, &[("csrf", "")], Some(&web.cookie), &own),
        ),
        (
            "a wrong CSRF token",
            web.post_with(&abort, &[("csrf", "0123abcd")], Some(&web.cookie), &own),
        ),
        (
            "another session's CSRF token",
            web.post_with(&abort, &[("csrf", &other.csrf)], Some(&web.cookie), &own),
        ),
        (
            "a foreign Origin",
            web.post_with(
                &abort,
                &[],
                Some(&web.cookie),
                &[("Origin", "https://evil.example")],
            ),
        ),
        (
            "Origin: null",
            web.post_with(&abort, &[], Some(&web.cookie), &[("Origin", "null")]),
        ),
        (
            "a foreign Referer",
            web.post_with(
                &abort,
                &[],
                Some(&web.cookie),
                &[("Referer", "https://evil.example/x")],
            ),
        ),
        (
            "halt, no CSRF token",
            web.post_with("/ui/halt", &[("csrf", "")], Some(&web.cookie), &own),
        ),
    ];
    for (what, r) in &cases {
        assert_eq!(r.status, 403, "{what}: {}", r.body);
        assert!(r.body.contains("nothing was done"), "{what}: {}", r.body);
    }
    assert!(cases[0].1.body.contains("CSRF token is missing or wrong"));
    assert!(cases[3].1.body.contains("another site"));

    // Without the token cookie: 401, even with a right CSRF token.
    let session_only = web
        .cookie
        .split("; ")
        .find(|c| c.starts_with("chaosd_session="))
        .unwrap();
    for cookie in [None, Some(session_only)] {
        let r = web.post_with(&abort, &[], cookie, &own);
        assert_eq!(r.status, 401, "{cookie:?}: {}", r.body);
    }
    // A form is posted, never fetched.
    assert_eq!(web.get(&abort).status, 405);

    // Nothing was done: the run goes on, chaosd is not halted.
    assert_eq!(d.run(&id)["run"]["verdict"], "running");
    assert_eq!(sleeper_state(&sleeper), Some('T'));
    assert_eq!(d.call("GET", "/v1/status", None).json()["halted"], false);
    // And each refusal is in the audit log.
    let lines = audit(&d);
    let refused = |status: u64| {
        lines
            .iter()
            .filter(|l| l["outcome"] == "refused" && l["status"] == status)
            .count()
    };
    assert_eq!(refused(403), cases.len(), "{lines:?}");
    assert_eq!(refused(401), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l["outcome"] != "obeyed"), "{lines:?}");

    // The same session, its own token and origin: obeyed.
    location(&web.post(&abort, &[]));
    assert_eq!(d.wait_verdict(&id)["run"]["verdict"], "aborted");
}

fn sleeper_state(sleeper: &Sleeper) -> Option<char> {
    proc_state(sleeper.pid)
}

#[test]
fn web_and_api_confirm_and_refuse_say_409_when_the_run_waits_for_no_answer() {
    let d = Chaosd::start(true);
    let sleeper = Sleeper::spawn("webask");
    let id = d.submit(&pause_yaml(&sleeper.pattern, "30s"));
    sleeper.wait_state('T', "the sleeper paused");

    // The JSON API: an empty body is `{}`.
    let msg = d
        .call("POST", &format!("/v1/runs/{id}/confirm"), None)
        .error(409, "conflict");
    assert!(msg.contains("not waiting for an answer"), "{msg}");
    let msg = d
        .call(
            "POST",
            &format!("/v1/runs/{id}/refuse"),
            Some(&json!({"by": "alice", "reason": "peak traffic"})),
        )
        .error(409, "conflict");
    assert!(msg.contains("not waiting for an answer"), "{msg}");
    // A reason is welcome, not required (`chaosctl refuse RUN` may leave it out).
    let msg = d
        .call(
            "POST",
            &format!("/v1/runs/{id}/refuse"),
            Some(&json!({"by": "alice"})),
        )
        .error(409, "conflict");
    assert!(msg.contains("not waiting for an answer"), "{msg}");
    d.call("POST", "/v1/runs/no-such-run/confirm", None)
        .error(404, "not_found");
    d.call(
        "POST",
        &format!("/v1/runs/{id}/confirm"),
        Some(&json!({"who": "x"})),
    )
    .error(400, "bad_request");

    // The web view: the same answer, on a page.
    let web = Web::sign_in(&d);
    for (path, fields) in [
        ("confirm", vec![("by", "bob")]),
        ("refuse", vec![("by", "bob"), ("reason", "not now")]),
    ] {
        let r = web.post(&format!("/ui/runs/{id}/{path}"), &fields);
        assert_eq!(r.status, 409, "{path}: {}", r.body);
        assert!(
            r.body.contains("not waiting for an answer"),
            "{path}: {}",
            r.body
        );
    }
    assert_eq!(d.run(&id)["run"]["verdict"], "running");

    let lines = audit(&d);
    for (event, actor) in [
        ("confirm", "the API token"),
        ("refuse", "the API token"),
        ("confirm", "web view session "),
        ("refuse", "web view session "),
    ] {
        assert!(
            lines.iter().any(|l| l["event"] == event
                && l["status"] == 409
                && l["run"] == id.as_str()
                && l["actor"].as_str().unwrap_or_default().starts_with(actor)),
            "{event} by {actor}: {lines:?}"
        );
    }
    d.call("POST", &format!("/v1/runs/{id}/abort"), None);
}

#[test]
fn sigkill_mid_run_leaves_it_interrupted_and_the_journal_reverts_the_pause() {
    let mut d = Chaosd::start(true);
    let sleeper = Sleeper::spawn("kill9");
    let first = d.submit(&pause_yaml(&sleeper.pattern, "200ms"));
    assert_eq!(d.wait_verdict(&first)["run"]["verdict"], "passed");
    let id = d.submit(&pause_yaml(&sleeper.pattern, "60s"));
    sleeper.wait_state('T', "the sleeper paused");
    // The process stops as the pause is made, a moment before the run records it: wait for the
    // record (`fault_applied` in events.jsonl), as the rebuilt report reads it. The live status's
    // hold countdown starts as the injection starts, so it does not say the record is there.
    let events = d.path("reports").join(&id).join("events.jsonl");
    eventually(Duration::from_secs(10), "the run records the pause", || {
        std::fs::read_to_string(&events)
            .ok()
            .filter(|e| e.contains("\"fault_applied\""))
    });
    let pid = d.pid();
    d.sigkill();
    assert_eq!(
        kill(pid, None),
        Err(nix::errno::Errno::ESRCH),
        "chaosd is gone"
    );
    assert_eq!(proc_state(sleeper.pid), Some('T'), "nobody resumed it yet");

    d.spawn();
    // The journal in chaosd's state dir was replayed at start: the pause is reverted.
    sleeper.assert_running();
    let history = d.history();
    let ids: Vec<&str> = history
        .iter()
        .filter_map(|r| r["run_id"].as_str())
        .collect();
    assert_eq!(ids, [id.as_str(), first.as_str()]);
    assert_eq!(history[0]["verdict"], "interrupted");
    assert_eq!(history[1]["verdict"], "passed");
    // It has a report, rebuilt from its events.
    let run = d.run(&id);
    assert_eq!(run["report"]["verdict"], "interrupted", "{run}");
    assert_eq!(run["report"]["steps"][0]["faults"][0]["kind"], "pause");
    let md = d.call("GET", &format!("/v1/runs/{id}/report?format=md"), None);
    assert_eq!(md.status, 200, "{}", md.body);
    let stream = d.call("GET", &format!("/v1/runs/{id}/events"), None);
    let end: Value = serde_json::from_str(stream.body.lines().last().unwrap()).unwrap();
    assert_eq!(end["type"], "end");
    assert_eq!(end["verdict"], "interrupted");
    d.call("POST", &format!("/v1/runs/{id}/abort"), None)
        .error(409, "conflict");
}

#[test]
fn a_monkey_runs_under_chaosd_until_its_time_is_up() {
    let d = Chaosd::start(true);
    let sleeper = Sleeper::spawn("monkey");
    let file = d.path("monkey.yaml");
    std::fs::write(
        &file,
        r#"version: 1
name: monkey-under-chaosd
settings: {recover_within: 2s}
monkey:
  target: local
  fault: {pause: {process: {pattern: "${PAT}"}}}
  duration: 200ms
  mean_interval: 400ms
  min_interval: 200ms
"#,
    )
    .unwrap();
    let pat = format!("PAT={}", sleeper.pattern);
    let out = d.chaosctl(&[
        "monkey",
        file.to_str().unwrap(),
        "--yes",
        "--for",
        "2s",
        "--seed",
        "3",
        "--var",
        &pat,
    ]);
    out.code(0);
    assert!(out.stdout.contains("verdict   passed"), "{}", out.stdout);
    let folder = PathBuf::from(out.stdout.lines().last().unwrap().trim());
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("report.json")).unwrap())
            .unwrap();
    let faults = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "monkey_fault")
        .count();
    assert!(faults >= 1, "no monkey fault in {}", report["events"]);
    assert!(
        report["steps"][0]["name"]
            .as_str()
            .unwrap()
            .starts_with("monkey #1"),
        "{}",
        report["steps"]
    );
    sleeper.assert_running();

    // A steps file with a time limit is refused: `--for` means nothing there.
    let steps = d.path("steps.yaml");
    std::fs::write(&steps, pause_yaml("${PAT}", "100ms")).unwrap();
    let out = d.chaosctl(&["monkey", steps.to_str().unwrap(), "--yes", "--for", "1s"]);
    out.code(2);
}

#[test]
fn chaosd_tokens_rotate_on_sighup_without_a_failed_request() {
    let d = Chaosd::start(false);
    let (a, b) = (TOKEN, "token-b-9876543210");
    let status = |token: &str| {
        request(d.port, "GET", "/v1/runs", Some(token), None)
            .unwrap_or_else(|e| panic!("GET /v1/runs: {e}\n{}", d.log()))
            .status
    };
    let until = |token: &str, want: u16| {
        eventually(
            Duration::from_secs(10),
            &format!("token {token:?} gets {want}"),
            || (status(token) == want).then_some(()),
        )
    };
    assert_eq!(status(a), 200);
    assert_eq!(status(b), 401);

    std::fs::write(
        d.path("token"),
        format!("{b}\n# the old one, until every client moved\n{a}\n"),
    )
    .unwrap();
    kill(d.pid(), Signal::SIGHUP).unwrap();
    until(b, 200);
    assert_eq!(status(a), 200);

    std::fs::write(d.path("token"), format!("{b}\n")).unwrap();
    kill(d.pid(), Signal::SIGHUP).unwrap();
    until(a, 401);
    assert_eq!(status(b), 200);

    // A file emptied by mistake keeps the tokens in use.
    std::fs::write(d.path("token"), "\n").unwrap();
    kill(d.pid(), Signal::SIGHUP).unwrap();
    eventually(Duration::from_secs(10), "the re-read error", || {
        d.log().contains("keeping the tokens in use").then_some(())
    });
    assert_eq!(status(b), 200);

    let log = d.log();
    assert!(log.contains("token file re-read"), "{log}");
    assert!(
        !log.contains(a) && !log.contains(b),
        "no token is logged: {log}"
    );
}

/// `GET /v1/agents` of `d`: each agent's view.
fn agent_views(d: &Chaosd) -> Vec<Value> {
    let r = d.call("GET", "/v1/agents", None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["agents"].as_array().expect("agents").clone()
}

#[test]
fn chaosd_presents_its_cert_file_to_agents_that_require_one() {
    let agent_bin = chaos_tests::bins::chaos_agent();
    let pki_dir = tempfile::Builder::new()
        .prefix("chaosd-pki-")
        .tempdir()
        .unwrap();
    let pki = pki_dir.path().join("pki");
    let p = pki.to_str().unwrap();
    for args in [
        vec!["certs", "init", p],
        vec![
            "certs",
            "issue",
            p,
            "--name",
            "edge",
            "--san",
            "127.0.0.1",
            "--role",
            "agent",
        ],
        vec![
            "certs",
            "issue",
            p,
            "--name",
            "chaosd",
            "--san",
            "127.0.0.1",
            "--role",
            "chaosd",
        ],
    ] {
        let out = Command::new(chaosctl()).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let token = pki_dir.path().join("edge.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let port = free_port();
    let mut agent = Command::new(&agent_bin)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--token-file")
        .arg(&token)
        .arg("--tls-cert")
        .arg(pki.join("edge.pem"))
        .arg("--tls-key")
        .arg(pki.join("edge.key"))
        .arg("--client-ca")
        .arg(pki.join("ca.pem"))
        .arg("--state-dir")
        .arg(pki_dir.path().join("agent-state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent_guard = scopeguard(move || {
        let _ = agent.kill();
        let _ = agent.wait();
    });
    eventually(Duration::from_secs(10), "chaos-agent listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let inventory = pki_dir.path().join("inventory.yaml");
    std::fs::write(
        &inventory,
        format!(
            "hosts:\n  edge: {{agent: \"https://127.0.0.1:{port}\", token_file: \"{}\", ca_file: \"{}\"}}\n",
            token.display(),
            pki.join("ca.pem").display()
        ),
    )
    .unwrap();

    // Without a client certificate of its own, chaosd is refused, and told what to set.
    let mut d = Chaosd::start_with_config(false, &format!("inventory: {}\n", inventory.display()));
    let views = agent_views(&d);
    assert_eq!(views[0]["reachable"], false, "{views:?}");
    let error = views[0]["error"].as_str().unwrap();
    assert!(
        error.contains("requires a client certificate") && error.contains("`cert_file`"),
        "{error}"
    );

    // With `cert_file`/`key_file` at the top, every host without its own gets them.
    d.stop();
    d.extra_config = format!(
        "inventory: {}\ncert_file: {}\nkey_file: {}\n",
        inventory.display(),
        pki.join("chaosd.pem").display(),
        pki.join("chaosd.key").display()
    );
    d.spawn();
    let views = agent_views(&d);
    assert_eq!(views[0]["reachable"], true, "{views:?}");
    drop(agent_guard);
}

/// Runs `f` when dropped: the agent is killed on every path out of the test.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[test]
fn a_manual_step_is_confirmed_through_the_api_and_409_when_nothing_waits() {
    // Nothing of it runs on chaosd's machine: allowed without `allow_local`.
    let d = Chaosd::start(false);
    let yaml = r#"version: 1
name: ask
steps:
  - name: the operator checks the dashboards
    manual: {prompt: "Do the dashboards show the failover?", timeout: 1m}
"#;
    let id = d.submit(yaml);
    let live = eventually(Duration::from_secs(20), "the step waits", || {
        let run = d.run(&id);
        (run["live"]["phase"] == "manual").then(|| run["live"].clone())
    });
    assert_eq!(live["prompt"], "Do the dashboards show the failover?");
    // An answer meant for another step is refused; the step still waits.
    d.call(
        "POST",
        &format!("/v1/runs/{id}/confirm"),
        Some(&json!({"step": 1})),
    )
    .error(409, "conflict");
    let r = d.call(
        "POST",
        &format!("/v1/runs/{id}/confirm"),
        Some(&json!({"by": "ana", "reason": "failover visible", "step": 0})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["answer"], "confirmed");
    assert_eq!(r.json()["step"], 0);
    // Nothing waits any more: a second answer is refused, whatever it says.
    d.call("POST", &format!("/v1/runs/{id}/refuse"), None)
        .error(409, "conflict");
    let run = d.wait_verdict(&id);
    assert_eq!(run["run"]["verdict"], "passed", "{run}");
    let manual = &run["report"]["steps"][0]["manual"];
    assert_eq!(manual["answer"], "confirmed", "{manual}");
    assert_eq!(manual["by"], "ana", "{manual}");
    assert_eq!(manual["reason"], "failover visible", "{manual}");
    assert!(manual["answered_at"].is_string(), "{manual}");
    let kinds: Vec<&str> = run["report"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"manual_waiting") && kinds.contains(&"manual_answered"));
    // An ended run waits for nothing either.
    d.call("POST", &format!("/v1/runs/{id}/confirm"), None)
        .error(409, "conflict");

    // `chaosctl --server URL refuse RUN` goes through the same route.
    let id = d.submit(yaml);
    eventually(Duration::from_secs(20), "the step waits again", || {
        (d.run(&id)["live"]["phase"] == "manual").then_some(())
    });
    d.chaosctl(&["refuse", &id, "--reason", "the dashboards are red"])
        .code(0);
    let run = d.wait_verdict(&id);
    assert_eq!(run["run"]["verdict"], "deviated", "{run}");
    assert_eq!(run["report"]["cause"], "manual", "{run}");
    assert_eq!(
        run["report"]["steps"][0]["manual"]["reason"],
        "the dashboards are red"
    );
}

#[test]
fn a_manual_step_is_confirmed_and_refused_from_the_web_view() {
    let d = Chaosd::start(false);
    let yaml = r#"version: 1
name: ask-on-the-web
steps:
  - name: the room agrees
    manual: {prompt: "Does the room agree to go on?", timeout: 1m}
"#;
    let web = Web::sign_in(&d);
    for (path, fields, verdict) in [
        (
            "confirm",
            vec![("by", "bob"), ("reason", "all green")],
            "passed",
        ),
        (
            "refuse",
            vec![("by", "carol"), ("reason", "the pager is busy")],
            "deviated",
        ),
    ] {
        let id = d.submit(yaml);
        eventually(Duration::from_secs(20), "the step waits", || {
            (d.run(&id)["live"]["phase"] == "manual").then_some(())
        });
        // The run's page shows the question with its forms, naming the step they answer.
        let page = web.get(&format!("/ui/runs/{id}"));
        assert!(
            page.body.contains("Does the room agree to go on?"),
            "{}",
            page.body
        );
        assert!(
            page.body.contains("id=confirm") && page.body.contains("id=refuse"),
            "{}",
            page.body
        );
        assert!(page.body.contains("name=step value=0"), "{}", page.body);
        let mut fields = fields.clone();
        fields.push(("step", "0"));
        let r = web.post(&format!("/ui/runs/{id}/{path}"), &fields);
        assert_eq!(r.status, 303, "{path}: {}", r.body);
        let run = d.wait_verdict(&id);
        assert_eq!(run["run"]["verdict"], verdict, "{run}");
        let manual = &run["report"]["steps"][0]["manual"];
        assert_eq!(manual["by"], fields[0].1, "{manual}");
        assert_eq!(manual["reason"], fields[1].1, "{manual}");
        if verdict == "deviated" {
            assert_eq!(run["report"]["cause"], "manual", "{run}");
        }
        // In the audit trail, as the web view's session.
        let audit = std::fs::read_to_string(d.path("state").join("audit.jsonl")).unwrap();
        assert!(
            audit
                .lines()
                .any(|l| l.contains(&format!("\"event\":\"{path}\"")) && l.contains(&id)),
            "{audit}"
        );
    }
}
