//! chaosd's operations side end to end, through the built binary on 127.0.0.1: a schedule whose
//! cron ticks every 2 seconds starts ordinary runs; webhooks reach a small HTTP server of ours
//! (start, breach, end); `/metrics` parses as Prometheus text and counts the runs; the web view
//! loads in a real headless Chromium (skipped, saying why, when there is none).
//!
//! Real processes and real time, so `std::time::Instant`; every process is ended by Drop guards.
#![allow(clippy::disallowed_types)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

use chaos_tests::{eventually, skip};
use common::{request, webhook_server};

const CHAOSD: &str = env!("CARGO_BIN_EXE_chaosd");
const TOKEN: &str = "ops-token-0123456789";

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sleeper(tag: &str) -> Guard {
    let child = Command::new("sleep")
        .arg0(tag)
        .arg("300")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    eventually(Duration::from_secs(5), "sleep has exec'd", || {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .filter(|c| c.starts_with(tag.as_bytes()))
    });
    Guard(child)
}

fn scenario(name: &str, tag: &str, guardrail: bool) -> String {
    // Holds before the step (a guardrail that does not hold then injects nothing) and breaches
    // once the sleeper is stopped.
    let guard = if guardrail {
        format!(
            "guardrails:\n  - name: sleeper runs\n    command: {{run: 'for p in $(pgrep -f \"^{tag}\"); do grep -q \"^State:.*T\" /proc/$p/status && exit 1; done; exit 0'}}\n    every: 100ms\n    window: 300ms\n"
        )
    } else {
        String::new()
    };
    // With a guardrail, the pause is held long enough for a loaded machine's guardrail command
    // to see it (the breach ends the run at once); a 1 s hold could end before a slow sample.
    let hold = if guardrail { "20s" } else { "1s" };
    format!(
        "version: 1\nname: {name}\n{guard}steps:\n  - name: pause the sleeper\n    target: local\n    fault: {{pause: {{process: {{pattern: \"^{tag}\"}}}}}}\n    duration: {hold}\n    recover_within: 1s\n"
    )
}

fn chromium() -> Option<PathBuf> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// [`chromium`], or `None` with the test skipped (see `chaos_tests::skip`).
fn chromium_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        skip::skip(
            "needs `chromium`",
            "no chromium to drive the web view (apt-get install chromium)",
        );
    }
    found
}

/// Loads `url` in headless Chromium: the DOM after load, and its stderr.
fn browse(browser: &Path, dir: &Path, url: &str, screenshot: Option<&Path>) -> (String, String) {
    let profile = tempfile::tempdir_in(dir).unwrap();
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match screenshot {
        Some(path) => {
            cmd.arg(format!("--screenshot={}", path.display()))
                .arg("--window-size=1200,1400");
        }
        None => {
            cmd.arg("--dump-dom");
        }
    }
    let out = cmd
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn console_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("Uncaught") || (l.contains("CONSOLE") && l.contains("rror")))
        .collect()
}

#[test]
fn schedules_webhooks_metrics_and_the_web_view() {
    let dir = tempfile::Builder::new()
        .prefix("chaosd-ops-")
        .tempdir()
        .unwrap();
    let (hook_port, hooks) = webhook_server();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(
        dir.path().join("chaosd.yaml"),
        format!(
            "listen: 127.0.0.1:{port}\ntoken_file: token\nstate_dir: state\nreport_dir: reports\nallow_local: true\n\
             webhooks:\n  - {{url: 'http://127.0.0.1:{hook_port}/hook', events: [run_started, breach, run_finished]}}\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("chaosd.log")).unwrap();
    let _chaosd = Guard(
        Command::new(CHAOSD)
            .arg("--config")
            .arg(dir.path().join("chaosd.yaml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let chaosd_log = || std::fs::read_to_string(dir.path().join("chaosd.log")).unwrap_or_default();
    eventually(Duration::from_secs(20), "chaosd answers", || {
        request(port, "GET", "/healthz", None, None)
            .ok()
            .filter(|r| r.status == 200)
    });
    let call = |method: &str, path: &str, body: Option<Value>| {
        let body = body.map(|b| b.to_string());
        request(port, method, path, Some(TOKEN), body.as_deref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", chaosd_log()))
    };
    let tag = format!("ops-sleeper-{}", std::process::id());
    let _sleeper = sleeper(&tag);

    // A run breached by its guardrail: start, breach and end reach the webhook.
    let r = call(
        "POST",
        "/v1/runs",
        Some(json!({"scenario": scenario("breached", &tag, true), "file": "breached.yaml"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let breached: Value = serde_json::from_str(&r.body).unwrap();
    let breached = breached["run_id"].as_str().unwrap().to_string();
    let events = eventually(
        Duration::from_secs(30),
        "three webhooks for the breached run",
        || {
            let got = hooks.lock().unwrap().clone();
            let mine: Vec<Value> = got
                .into_iter()
                .filter(|v| v["run_id"] == breached.as_str())
                .collect();
            (mine.len() >= 3).then_some(mine)
        },
    );
    let kinds: Vec<&str> = events
        .iter()
        .map(|v| v["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["run_started", "breach", "run_finished"],
        "{events:#?}"
    );
    assert_eq!(events[2]["verdict"], "aborted");
    assert!(
        events[1]["text"]
            .as_str()
            .unwrap()
            .contains("guardrail breached"),
        "{events:#?}"
    );
    assert_eq!(events[1]["fields"]["guardrail"], "sleeper runs");
    assert_eq!(events[0]["scenario"], "breached");

    // A schedule every 2 seconds starts ordinary runs labelled with it.
    let r = call(
        "POST",
        "/v1/schedules",
        Some(json!({"scenario": "not yaml: [", "cron": "* * * * *"})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = call(
        "POST",
        "/v1/schedules",
        Some(
            json!({"scenario": scenario("scheduled", &tag, false), "file": "s.yaml", "cron": "*/2 * * * * *", "labels": {"team": "ops"}}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let created: Value = serde_json::from_str(&r.body).unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(created["next_run"].is_string(), "{created}");
    let list: Value = serde_json::from_str(&call("GET", "/v1/schedules", None).body).unwrap();
    assert_eq!(list["schedules"][0]["id"], id.as_str());
    assert!(list["schedules"][0]["next_run"].is_string());
    let scheduled = eventually(
        Duration::from_secs(30),
        "a scheduled run has passed",
        || {
            let runs: Value = serde_json::from_str(&call("GET", "/v1/runs", None).body).ok()?;
            runs["runs"]
                .as_array()?
                .iter()
                .find(|r| r["labels"]["schedule"] == id.as_str() && r["verdict"] == "passed")
                .cloned()
        },
    );
    assert_eq!(scheduled["labels"]["team"], "ops");
    assert_eq!(scheduled["scenario"], "scheduled");
    let r = call("DELETE", &format!("/v1/schedules/{id}"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        call("DELETE", &format!("/v1/schedules/{id}"), None).status,
        404
    );
    // Let a run the schedule may have started just before its removal end.
    eventually(Duration::from_secs(30), "no run is going on", || {
        let s: Value = serde_json::from_str(&call("GET", "/v1/status", None).body).ok()?;
        s["running"].as_array()?.is_empty().then_some(())
    });

    // /metrics: token-protected Prometheus text that counts the runs.
    assert_eq!(
        request(port, "GET", "/metrics", None, None).unwrap().status,
        401
    );
    let m = call("GET", "/metrics", None);
    assert_eq!(m.status, 200);
    assert!(
        m.headers.contains("text/plain; version=0.0.4"),
        "{}",
        m.headers
    );
    let mut samples = std::collections::BTreeMap::new();
    for line in m.body.lines() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                "{line}"
            );
            continue;
        }
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        let re_ok = name.split('{').next().is_some_and(|n| {
            n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        });
        assert!(re_ok, "{line}");
        samples.insert(name.to_string(), value);
    }
    assert!(
        samples["chaosd_runs_total{verdict=\"passed\"}"] >= 1.0,
        "{}",
        m.body
    );
    assert!(
        samples["chaosd_runs_total{verdict=\"aborted\"}"] >= 1.0,
        "{}",
        m.body
    );
    assert_eq!(samples["chaosd_runs_active"], 0.0);
    assert_eq!(samples["chaosd_faults_active"], 0.0);
    assert!(
        samples["chaosd_reverts_total{outcome=\"ok\"}"] >= 2.0,
        "{}",
        m.body
    );
    assert!(samples["chaosd_scheduled_runs_total{outcome=\"submitted\"}"] >= 1.0);
    assert!(samples["chaosd_webhook_deliveries_total{event=\"breach\",outcome=\"ok\"}"] >= 1.0);
    assert!(
        m.body
            .contains("chaosd_probe_sample_latency_seconds_bucket{role=\"guardrail\",le=\"+Inf\"}")
    );

    // The web view: a token in the address becomes a cookie; without one, 401.
    assert_eq!(
        request(port, "GET", "/ui/", None, None).unwrap().status,
        401
    );
    let r = request(port, "GET", &format!("/ui/?token={TOKEN}"), None, None).unwrap();
    assert_eq!(r.status, 303);
    assert!(
        r.headers.contains("HttpOnly; SameSite=Strict"),
        "{}",
        r.headers
    );
    assert!(!r.headers.contains("Secure"), "plain HTTP: {}", r.headers);
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    let base = format!("http://127.0.0.1:{port}");
    let (dom, stderr) = browse(
        &browser,
        dir.path(),
        &format!("{base}/ui/?token={TOKEN}"),
        None,
    );
    assert!(dom.contains("<table id=\"runs\">"), "{dom}\n{stderr}");
    assert!(dom.contains(&breached), "{dom}");
    assert!(
        dom.contains("badge aborted") && dom.contains("badge passed"),
        "{dom}"
    );
    assert!(console_errors(&stderr).is_empty(), "{stderr}");
    let (dom, stderr) = browse(
        &browser,
        dir.path(),
        &format!("{base}/ui/runs/{breached}?token={TOKEN}"),
        None,
    );
    assert!(
        dom.contains("<svg"),
        "the report's timeline: {dom}\n{stderr}"
    );
    assert!(dom.contains("sleeper runs"), "{dom}");
    assert!(console_errors(&stderr).is_empty(), "{stderr}");
    let shot = std::env::var_os("CHAOSD_UI_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.path().join("ui.png"));
    let (_, stderr) = browse(
        &browser,
        dir.path(),
        &format!("{base}/ui/?token={TOKEN}"),
        Some(&shot),
    );
    assert!(shot.is_file(), "no screenshot: {stderr}");
}

/// Runs `argv`, which must succeed; its stdout.
fn sh(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", argv[0]));
    assert!(
        out.status.success(),
        "{argv:?}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn over_tls_the_api_answers_https_only_and_the_web_cookie_is_secure() {
    if !skip::unless_installed(&["openssl", "curl"], "openssl curl") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("chaosd-tls-")
        .tempdir()
        .unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    // A server certificate for 127.0.0.1 (CA:FALSE: rustls refuses a CA certificate as a
    // server's own).
    std::fs::write(
        path("openssl.cnf"),
        "[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN=chaosd-test\n[ext]\n\
         basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    sh(&[
        "openssl",
        "req",
        "-x509",
        "-config",
        &path("openssl.cnf"),
        "-extensions",
        "ext",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        &path("key.pem"),
        "-out",
        &path("cert.pem"),
    ]);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(
        dir.path().join("chaosd.yaml"),
        format!(
            "listen: 127.0.0.1:{port}\ntoken_file: token\nstate_dir: state\nreport_dir: reports\n\
             tls_cert: cert.pem\ntls_key: key.pem\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("chaosd.log")).unwrap();
    let _chaosd = Guard(
        Command::new(CHAOSD)
            .arg("--config")
            .arg(dir.path().join("chaosd.yaml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let base = format!("https://127.0.0.1:{port}");
    let cacert = path("cert.pem");
    let curl = |extra: &[&str], url: &str| {
        let mut argv = vec!["curl", "-s", "--max-time", "5", "--cacert", &cacert];
        argv.extend(extra);
        argv.push(url);
        Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    eventually(Duration::from_secs(20), "chaosd answers over TLS", || {
        let out = curl(&[], &format!("{base}/healthz"));
        (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok").then_some(())
    });

    // The API over TLS, with the token.
    let auth = format!("Authorization: Bearer {TOKEN}");
    let runs = curl(
        &["-o", "/dev/null", "-w", "%{http_code}", "-H", &auth],
        &format!("{base}/v1/runs"),
    );
    assert_eq!(String::from_utf8_lossy(&runs.stdout), "200");
    // Plain HTTP on the same port gets no HTTP answer.
    let plain = curl(&[], &format!("http://127.0.0.1:{port}/healthz"));
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("ok"),
        "plain HTTP was answered: {plain:?}"
    );
    // The web view's cookie is Secure as well as HttpOnly.
    let login = curl(
        &["-o", "/dev/null", "-D", "-"],
        &format!("{base}/ui/?token={TOKEN}"),
    );
    let headers = String::from_utf8_lossy(&login.stdout).to_lowercase();
    let cookie = headers
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {headers}"));
    assert!(
        cookie.contains("httponly") && cookie.contains("; secure"),
        "{cookie}"
    );
}

/// Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
/// it reads commands on fd 3 and answers on fd 4, each message JSON ended by a NUL), so a test
/// can click a page's button as a person would. Only the test runs script; the pages run none.
struct Browser {
    child: Guard,
    to: std::process::ChildStdin,
    from: std::io::BufReader<std::process::ChildStdout>,
    next: u64,
    session: String,
    /// Kills the browser if a read hangs; told to stand down when the test ends.
    _watchdog: std::sync::mpsc::Sender<()>,
}

impl Browser {
    fn start(browser: &Path, dir: &Path) -> Browser {
        let profile = dir.join("cdp-profile");
        let stderr = std::fs::File::create(dir.join("chromium.log")).unwrap();
        // `sh` hands our pipes to fds 3 and 4, where Chromium looks for them.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#)
            .arg(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("run chromium");
        let to = child.stdin.take().unwrap();
        let from = std::io::BufReader::new(child.stdout.take().unwrap());
        let pid = child.id() as i32;
        let (watchdog, stand_down) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stand_down.recv_timeout(Duration::from_secs(120))
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        });
        let mut b = Browser {
            child: Guard(child),
            to,
            from,
            next: 0,
            session: String::new(),
            _watchdog: watchdog,
        };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}));
        let target = target["targetId"].as_str().unwrap().to_string();
        let attached = b.call(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b
    }

    /// Sends one command (to the page once attached) and returns its result, skipping events.
    fn call(&mut self, method: &str, params: Value) -> Value {
        use std::io::{BufRead, Write};
        self.next += 1;
        let mut msg = json!({"id": self.next, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        loop {
            let mut buf = Vec::new();
            let n = self.from.read_until(0, &mut buf).expect("read chromium");
            assert!(n > 0, "chromium ended; see chromium.log");
            buf.pop();
            let v: Value = serde_json::from_slice(&buf).unwrap();
            if v["id"] == self.next {
                return v.get("result").cloned().unwrap_or(v);
            }
        }
    }

    /// The value of a JavaScript expression in the page (`Null` while it is being replaced).
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Polls `expression` until it is `true`.
    fn wait_for(&mut self, expression: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.eval(expression) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "not within 30 s: {what}; the page: {}",
                self.eval("document.documentElement.outerHTML")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.0.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[test]
fn the_web_views_abort_button_aborts_a_run_in_chromium() {
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("chaosd-ops-abort-")
        .tempdir()
        .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(
        dir.path().join("chaosd.yaml"),
        format!(
            "listen: 127.0.0.1:{port}\ntoken_file: token\nstate_dir: state\nreport_dir: reports\nallow_local: true\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("chaosd.log")).unwrap();
    let _chaosd = Guard(
        Command::new(CHAOSD)
            .arg("--config")
            .arg(dir.path().join("chaosd.yaml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    eventually(Duration::from_secs(20), "chaosd answers", || {
        request(port, "GET", "/healthz", None, None)
            .ok()
            .filter(|r| r.status == 200)
    });
    let tag = format!("ops-abort-{}", std::process::id());
    let _sleeper = sleeper(&tag);
    let yaml = scenario("abort-me", &tag, false).replace("duration: 1s", "duration: 5m");
    let r = request(
        port,
        "POST",
        "/v1/runs",
        Some(TOKEN),
        Some(&json!({"scenario": yaml}).to_string()),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let id = serde_json::from_str::<Value>(&r.body).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut b = Browser::start(&browser, dir.path());
    b.call(
        "Page.navigate",
        json!({"url": format!("http://127.0.0.1:{port}/ui/runs/{id}?token={TOKEN}")}),
    );
    b.wait_for(
        "!!document.querySelector('form#abort button') && !location.search.includes('token')",
        "the run's page with its abort button",
    );
    b.eval("document.querySelector('form#abort button').click(), true");
    b.wait_for(
        "(document.getElementById('notice') || {}).textContent === 'You aborted this run: chaosd is reverting its faults.'",
        "the page back with the notice",
    );
    let verdict = eventually(Duration::from_secs(30), "the run ends", || {
        let r = request(port, "GET", &format!("/v1/runs/{id}"), Some(TOKEN), None).ok()?;
        let v: Value = serde_json::from_str(&r.body).ok()?;
        (v["run"]["verdict"] != "running").then(|| v["run"]["verdict"].clone())
    });
    assert_eq!(verdict, "aborted");
    let audit = std::fs::read_to_string(dir.path().join("state/audit.jsonl")).unwrap();
    assert!(
        audit.contains("\"event\":\"abort\"") && audit.contains("\"outcome\":\"obeyed\""),
        "{audit}"
    );
}
