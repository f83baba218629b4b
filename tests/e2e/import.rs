//! `chaosctl import chaostoolkit`: experiments written as Chaos Toolkit's documentation writes
//! them (JSON and YAML; http, process and python providers; range and regex tolerances;
//! configuration and secrets) become scenarios that validate, and one runs and passes against a
//! server the test starts. What does not map is named with its provider on stderr, exit 5
//! unless `--partial`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use chaos_tests::support::Test;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/chaostoolkit"
    ))
    .join(name)
}

/// An HTTP server on 127.0.0.1 whose `/health` answers `{"status": "healthy"}` to a request
/// bearing `token`, and 401 to any other: the imported probes pass only when the secret reached
/// them. Stopped when dropped.
struct Health {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Health {
    fn start(token: &str) -> Health {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let expected = format!("authorization: bearer {}", token.to_ascii_lowercase());
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        answer(conn, &expected);
                    }
                }
            })
        };
        Health {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

fn answer(mut conn: TcpStream, expected: &str) {
    let mut authorized = false;
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line.trim().to_ascii_lowercase() == expected {
            authorized = true;
        }
        if line == "\r\n" {
            break;
        }
        line.clear();
    }
    let (status, body) = if authorized {
        ("200 OK", r#"{"status": "healthy"}"#)
    } else {
        ("401 Unauthorized", r#"{"status": "who are you"}"#)
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

impl Drop for Health {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn import_names_what_does_not_map_and_exits_5_unless_partial() {
    let t = Test::new();
    for (experiment, unmapped, vars) in [
        (
            "service-health.json",
            &[
                "control `tracing` (python module `chaostracing.control`)",
                "hypothesis probe `all-pods-running` (python provider: module `chaosk8s.pod.probes`, function `pods_in_phase`)",
                "method action `terminate-service-pods` (python provider: module `chaosk8s.pod.actions`, function `terminate_pods`)",
                "rollback action `scale-service-back` (python provider: module `chaosk8s.deployment.actions`, function `scale_deployment`)",
            ][..],
            &["SERVICE_TOKEN=t"][..],
        ),
        (
            "dns-failover.yaml",
            &[
                "configuration `current_leader` (python provider: module `chaosaddons.probes`, function `current_leader`)",
                "hypothesis probe `leader-is-known` (http provider: GET ${api_url}/leader): a `jsonpath` tolerance",
                "hypothesis probe `exit-code-in-range` (process provider: `systemctl`)",
                "method action `flood-the-resolver` (process provider: `dnsperf`): it runs in the background",
                "method action `tell-the-api` (http provider: POST ${api_url}/events)",
                "method probe `api-during-outage`",
            ][..],
            &["api_key=k"][..],
        ),
    ] {
        let source = fixture(experiment).display().to_string();
        let out_file = t.path(&format!("{experiment}.yaml")).display().to_string();

        // Without --partial: the file is written with the list in its comments, and exit 5.
        let strict = t.cmd(&["import", "chaostoolkit", &source, "-o", &out_file]);
        strict.code(5);
        for u in unmapped {
            strict.stderr_has(&format!("chaosctl: not imported: {u}"));
        }
        strict.stderr_has("pass --partial to accept");
        let text = fs::read_to_string(&out_file).expect("the imported file");
        for u in unmapped {
            assert!(
                text.contains(&format!("#   - {u}")),
                "{u} not listed in:\n{text}"
            );
        }

        // Never over a file without --force; with --partial, exit 0.
        let again = t.cmd(&[
            "import",
            "chaostoolkit",
            &source,
            "-o",
            &out_file,
            "--partial",
        ]);
        again.code(2);
        again.stderr_has("exists; pass --force");
        let partial = t.cmd(&[
            "import",
            "chaostoolkit",
            &source,
            "-o",
            &out_file,
            "--partial",
            "--force",
        ]);
        partial.code(0);
        partial.stderr_has(&format!("chaosctl: wrote {out_file}"));
        assert_eq!(fs::read_to_string(&out_file).unwrap(), text);

        // To standard output, the same text.
        let shown = t.cmd(&["import", "chaostoolkit", &source, "--partial"]);
        shown.code(0);
        assert_eq!(shown.stdout.trim_end(), text.trim_end());

        // `chaosctl validate` takes it, given the variables it needs at run time (a secret).
        let mut args = vec!["validate", out_file.as_str()];
        for var in vars {
            args.extend(["--var", var]);
        }
        t.cmd(&args).code(0).stdout_has(": ok");
        // Without them, it says which.
        let name = vars[0].split('=').next().unwrap();
        t.cmd(&["validate", &out_file])
            .code(2)
            .stderr_has(&format!("unknown variable `{name}`"));
    }
    // No secret's value ever reaches the file.
    let text = fs::read_to_string(t.path("service-health.json.yaml")).unwrap();
    assert!(!text.contains("not-a-real-password-3f9a"), "{text}");
    let text = fs::read_to_string(t.path("dns-failover.yaml.yaml")).unwrap();
    assert!(!text.contains("secret/data/api"), "{text}");

    // What is not an experiment is invalid input (2), and nothing is written.
    let bad = t.write(
        "not-an-experiment.json",
        r#"{"method": [{"ref": "nowhere"}]}"#,
    );
    let out = t.cmd(&["import", "chaostoolkit", &bad.display().to_string()]);
    out.code(2);
    out.stderr_has("method[0] refers to `nowhere`, which no activity is named");
    assert_eq!(out.stdout, "");
}

#[test]
fn an_imported_experiment_runs_against_its_service_and_passes() {
    let server = Health::start("tok-e2e");
    let t = Test::new();
    let file = t.path("imported.yaml");
    let out = t.cmd(&[
        "import",
        "chaostoolkit",
        &fixture("service-health.json").display().to_string(),
        "-o",
        &file.display().to_string(),
        "--partial",
    ]);
    out.code(0);
    out.stderr_has("--var SERVICE_TOKEN=...");
    let t = t
        .scenario_file(&file)
        .var("SERVICE_URL", format!("http://127.0.0.1:{}", server.port))
        .var("SERVICE_TOKEN", "tok-e2e");
    let run = t.run();
    run.code(0);
    let report = run.report();
    report.verdict("passed", None);
    // The method's process action ran (in the scenario's folder), and so did the rollback.
    assert_eq!(
        fs::read_to_string(t.path("injected.txt")).unwrap().trim(),
        "injected"
    );
    assert_eq!(
        fs::read_to_string(t.path("rollback.txt")).unwrap().trim(),
        "rolled back"
    );

    // The same file with the wrong token: the hypothesis does not hold, nothing is done.
    fs::remove_file(t.path("injected.txt")).unwrap();
    let t = t.var("SERVICE_TOKEN", "wrong");
    let run = t.run();
    run.code(4);
    assert!(!t.path("injected.txt").exists());
}
