//! `chaos-agent`, the daemon: the real server in-process on 127.0.0.1:0 (auth, routes, policy,
//! one run at a time, leases, audit, probes), and the built binary over TLS with a certificate
//! made here (SIGTERM reverts and exits 0; after a SIGKILL the next start reverts; bad config
//! exits 64).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use agent::server::{self, Config};
use bytes::Bytes;
use chaos_tests::eventually_async;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::support::Spawned;

const TOKEN: &str = "test-token-0123456789";

// ---- a client ----

/// Talks to one agent, plain or over TLS, one connection per request.
struct Api {
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
}

enum Auth<'a> {
    Good,
    None,
    Bad(&'a str),
}

impl Api {
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        auth: Auth<'_>,
    ) -> (u16, Vec<u8>) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        match auth {
            Auth::Good => req = req.header("authorization", format!("Bearer {TOKEN}")),
            Auth::Bad(token) => req = req.header("authorization", format!("Bearer {token}")),
            Auth::None => {}
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        match &self.tls {
            None => exchange(stream, req).await,
            Some(connector) => {
                let name = rustls_pki_types::ServerName::IpAddress(self.addr.ip().into());
                let stream = connector
                    .connect(name, stream)
                    .await
                    .expect("TLS handshake");
                exchange(stream, req).await
            }
        }
    }

    async fn json(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap());
        let (status, bytes) = self.send(method, path, body, Auth::Good).await;
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|err| {
            panic!(
                "{method} {path}: {status} not JSON ({err}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, value)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.json("GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.json("POST", path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.json("DELETE", path, None).await
    }
}

async fn exchange<IO>(io: IO, req: Request<Full<Bytes>>) -> (u16, Vec<u8>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(req).await.expect("an answer");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

// ---- helpers ----

fn pause_order(fault_id: &str, selector: Value, hold_ms: Option<u64>) -> Value {
    json!({
        "fault_id": fault_id,
        "spec": {"pause": {"process": selector, "pick": "all"}},
        "seed": 1,
        "hold_ms": hold_ms,
    })
}

fn apply_body(orders: Vec<Value>, lease_ms: u64) -> Value {
    json!({"faults": orders, "lease_ms": lease_ms})
}

fn audit_lines(state_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(state_dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
        .collect()
}

fn token_file(dir: &Path) -> PathBuf {
    let path = dir.join("token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    path
}

/// The real server, in-process on 127.0.0.1:0; stopped (and its faults reverted) on drop.
struct InProcess {
    api: Api,
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), server::RunError>>>,
}

impl InProcess {
    async fn start(policy: Option<&str>) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy.map(|p| server::policy::Policy::parse(p).unwrap());
        let config = Config {
            token: agent::http::auth::Token::new(TOKEN),
            token_file: None,
            tls: None,
            client_certs_required: false,
            policy,
            state_dir: dir.path().join("state"),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server::run(
            listener,
            config,
            shutdown.clone().cancelled_owned(),
        ));
        InProcess {
            api: Api { addr, tls: None },
            dir,
            shutdown,
            task: Some(task),
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // A failed test: stopping reverts everything (the task finishes on the runtime, or the
        // agent's own drop reverts when the runtime goes).
        self.shutdown.cancel();
    }
}

// ---- in-process ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_needs_no_token_and_everything_else_does() {
    let agent = InProcess::start(None).await;
    let (status, body) = agent.api.send("GET", "/healthz", None, Auth::None).await;
    assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));

    for (auth, path) in [
        (Auth::None, "/v1/health"),
        (Auth::Bad("nope"), "/v1/health"),
        (Auth::Bad(&TOKEN[..TOKEN.len() - 1]), "/v1/faults"),
        (Auth::None, "/v1/no-such-route"),
        (Auth::None, "/healthz-not"),
    ] {
        let (status, body) = agent.api.send("GET", path, None, auth).await;
        assert_eq!(status, 401, "{path}");
        let err: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(err["code"], "unauthorized");
    }
    // Not even the body of a refused apply is looked at.
    let (status, _) = agent
        .api
        .send(
            "POST",
            "/v1/runs/r/faults",
            Some(b"{not json".to_vec()),
            Auth::None,
        )
        .await;
    assert_eq!(status, 401);

    let lines = audit_lines(&agent.state_dir());
    let refused: Vec<&Value> = lines.iter().filter(|l| l["status"] == 401).collect();
    assert_eq!(refused.len(), 6, "{lines:#?}");
    assert!(
        refused
            .iter()
            .all(|l| l["token_ok"] == false && l["outcome"] == "refused")
    );
    assert!(
        refused[0]["remote"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(refused[0]["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(lines[0]["path"], "/healthz");
    assert_eq!(lines[0]["status"], 200);

    let (status, health) = agent.api.get("/v1/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    let kinds = health["capabilities"]["kinds"].as_array().unwrap();
    let pause = kinds.iter().find(|k| k["kind"] == "pause").unwrap();
    assert_eq!(pause["supported"], true);
    assert_eq!(health["active_run"], Value::Null);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_apply_revert_and_one_run_at_a_time() {
    let agent = InProcess::start(None).await;
    let (sleep, _) = Spawned::sleep();
    let order = pause_order("run-a-s1f1", json!({"pid": sleep.pid}), None);
    let (status, body) = agent
        .api
        .post("/v1/runs/run-a/faults", apply_body(vec![order], 60_000))
        .await;
    assert_eq!(status, 200, "{body}");
    let result = &body["results"][0];
    assert_eq!(result["fault_id"], "run-a-s1f1");
    assert_eq!(result["applied"]["verified"], true, "{body}");
    assert_eq!(sleep.state(), Some('T'));

    let (_, health) = agent.api.get("/v1/health").await;
    assert_eq!(health["active_run"], "run-a");
    let (_, faults) = agent.api.get("/v1/faults").await;
    assert_eq!(faults["faults"][0]["fault_id"], "run-a-s1f1");

    // Run B is refused while A holds a fault here, naming A; nothing of B is applied.
    let (sleep_b, _) = Spawned::sleep();
    let (status, err) = agent
        .api
        .post(
            "/v1/runs/run-b/preflight",
            json!({"faults": [{"pause": {"process": {"pid": sleep_b.pid}, "pick": "all"}}]}),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["code"], "conflict");
    assert!(
        err["message"].as_str().unwrap().contains("run `run-a`"),
        "{err}"
    );
    let order_b = pause_order("run-b-s1f1", json!({"pid": sleep_b.pid}), None);
    let (status, _) = agent
        .api
        .post(
            "/v1/runs/run-b/faults",
            apply_body(vec![order_b.clone()], 60_000),
        )
        .await;
    assert_eq!(status, 409);
    assert_ne!(sleep_b.state(), Some('T'), "nothing applied");

    // B cannot revert A's fault either.
    let (status, _) = agent.api.delete("/v1/runs/run-b/faults/run-a-s1f1").await;
    assert_eq!(status, 404);
    assert_eq!(sleep.state(), Some('T'));

    let (status, reverted) = agent.api.delete("/v1/runs/run-a/faults/run-a-s1f1").await;
    assert_eq!(status, 200, "{reverted}");
    assert_eq!(reverted["reverted"]["verified"], true, "{reverted}");
    assert_ne!(sleep.state(), Some('T'));
    let (status, again) = agent.api.delete("/v1/runs/run-a/faults/run-a-s1f1").await;
    assert_eq!(
        (status, &again["reverted"]),
        (200, &reverted["reverted"]),
        "idempotent"
    );

    // Now B may come; its faults are reverted with the whole run.
    let (status, body) = agent
        .api
        .post("/v1/runs/run-b/preflight", json!({"faults": []}))
        .await;
    assert_eq!((status, &body["problems"]), (200, &json!([])));
    let (status, _) = agent
        .api
        .post("/v1/runs/run-b/faults", apply_body(vec![order_b], 60_000))
        .await;
    assert_eq!(status, 200);
    assert_eq!(sleep_b.state(), Some('T'));
    let (status, all) = agent.api.delete("/v1/runs/run-b").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["results"][0]["fault_id"], "run-b-s1f1");
    assert_ne!(sleep_b.state(), Some('T'));

    let lines = audit_lines(&agent.state_dir());
    let conflict = lines.iter().find(|l| l["status"] == 409).unwrap();
    assert_eq!(conflict["run"], "run-b");
    let applied = lines
        .iter()
        .find(|l| l["method"] == "POST" && l["run"] == "run-a" && l["status"] == 200)
        .unwrap();
    assert!(
        applied["detail"]
            .as_str()
            .unwrap()
            .contains("applied run-a-s1f1"),
        "{applied}"
    );
    assert_eq!(applied["token_ok"], true);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_outside_the_policy_are_refused_with_the_reason() {
    let policy = "processes:\n  selectors: ['^chaos-demo( |$)']\nfill_paths: [/mnt/chaos]\nmax_duration: 10s\n";
    let agent = InProcess::start(Some(policy)).await;
    let (sleep, arg) = Spawned::sleep();
    let pattern = format!("^sleep {arg}$");
    let order = pause_order("p1", json!({"pattern": pattern}), Some(1000));
    let (status, err) = agent
        .api
        .post("/v1/runs/r1/faults", apply_body(vec![order], 60_000))
        .await;
    assert_eq!(status, 403, "{err}");
    assert_eq!(err["code"], "forbidden");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("is outside the policy's processes.selectors [^chaos-demo( |$)]"),
        "{err}"
    );
    assert_ne!(sleep.state(), Some('T'), "nothing applied");

    let fill = json!({"fault_id": "f1", "seed": 1, "hold_ms": 1000,
        "spec": {"fill_disk": {"path": "/var", "amount": {"size": 1}}}});
    let (status, err) = agent
        .api
        .post("/v1/runs/r1/faults", apply_body(vec![fill], 60_000))
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        err["message"],
        "fault `f1`: fill path `/var` is outside the policy's fill_paths [/mnt/chaos]"
    );
    // A hold above max_duration, and the preflight of a refused fault.
    let long = pause_order("p2", json!({"name": "chaos-demo"}), Some(60_000));
    let (status, err) = agent
        .api
        .post("/v1/runs/r1/faults", apply_body(vec![long], 60_000))
        .await;
    assert_eq!(status, 403);
    assert!(
        err["message"].as_str().unwrap().contains("max_duration"),
        "{err}"
    );
    let (status, _) = agent
        .api
        .post(
            "/v1/runs/r1/preflight",
            json!({"faults": [{"pause": {"process": {"pattern": pattern}, "pick": "all"}}]}),
        )
        .await;
    assert_eq!(status, 403);
    // Command probes are off under a policy that does not allow them.
    let probe = json!({"probe": {"command": {"run": {"argv": ["true"]}, "timeout": 1000, "cwd": "/",
        "expect": {"exit": 0, "stdout_contains": null, "stdout_matches": null}}}});
    let (status, _) = agent.api.post("/v1/probe", probe).await;
    assert_eq!(status, 403);

    let (_, faults) = agent.api.get("/v1/faults").await;
    assert_eq!(faults["faults"], json!([]));
    assert_ne!(sleep.state(), Some('T'), "not stopped");
    let lines = audit_lines(&agent.state_dir());
    assert_eq!(lines.iter().filter(|l| l["status"] == 403).count(), 5);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_only_what_the_policy_allows() {
    let echo =
        json!({"run": {"argv": ["/bin/echo", "promoted"]}, "timeout_ms": 5000, "run_id": "r1"});
    // No policy file: a token alone never runs a program.
    let open = InProcess::start(None).await;
    let (status, body) = open.api.post("/v1/commands", echo.clone()).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no --policy file"),
        "{body}"
    );
    open.stop().await;

    // A policy without `commands` allows none; one that lists the program runs it.
    let agent = InProcess::start(Some("kinds: [pause]\n")).await;
    let (status, body) = agent.api.post("/v1/commands", echo.clone()).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("commands: {allow: [...]}"),
        "{body}"
    );
    agent.stop().await;

    let agent = InProcess::start(Some("commands: {allow: [/bin/echo, /bin/sh]}\n")).await;
    // A check (a controller's preflight) answers as a run would, and runs nothing.
    let mut check = echo.clone();
    check["check"] = json!(true);
    let (status, body) = agent.api.post("/v1/commands", check).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["exit_code"].clone(), body["output"].clone()),
        (json!(null), json!(""))
    );
    let (status, body) = agent.api.post("/v1/commands", echo).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["exit_code"], 0, "{body}");
    assert_eq!(body["output"], "promoted\n", "{body}");
    let other = json!({"run": {"argv": ["/bin/cat", "/etc/hostname"]}, "timeout_ms": 5000});
    let (status, body) = agent.api.post("/v1/commands", other).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("outside the policy's commands.allow [/bin/echo, /bin/sh]"),
        "{body}"
    );
    // A timeout kills it, and says so.
    let slow = json!({"run": {"shell": "echo started; sleep 30"}, "timeout_ms": 200});
    let (status, body) = agent.api.post("/v1/commands", slow).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["timed_out"], true, "{body}");
    assert_eq!(body["output"], "started\n", "{body}");
    assert!(body["duration_ms"].as_u64().unwrap() < 5000, "{body}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_apply_nothing() {
    let agent = InProcess::start(None).await;
    let (sleep, _) = Spawned::sleep();
    let good = serde_json::to_vec(&apply_body(
        vec![pause_order("x1", json!({"pid": sleep.pid}), None)],
        60_000,
    ))
    .unwrap();
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 3);
    let (status, body) = agent
        .api
        .send("POST", "/v1/runs/r1/faults", Some(truncated), Auth::Good)
        .await;
    assert_eq!(status, 400);
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["code"], "bad_request");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON body: EOF"),
        "{err}"
    );

    let mut huge = b"{\"faults\": [], \"lease_ms\": 1000, \"pad\": \"".to_vec();
    huge.resize(agent::api::MAX_BODY + 10, b'x');
    huge.extend_from_slice(b"\"}");
    let (status, body) = agent
        .api
        .send("POST", "/v1/runs/r1/faults", Some(huge), Auth::Good)
        .await;
    assert_eq!(status, 413);
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["code"], "too_large");

    let (status, err) = agent.api.get("/v1/nothing-here").await;
    assert_eq!((status, err["code"].as_str()), (404, Some("not_found")));
    let (status, err) = agent.api.get("/v1/runs/r1/faults").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (status, _) = agent
        .api
        .post("/v1/runs/r1/faults", json!({"faults": [], "lease_ms": 0}))
        .await;
    assert_eq!(status, 400);
    let dup = apply_body(
        vec![
            pause_order("d", json!({"pid": sleep.pid}), None),
            pause_order("d", json!({"pid": sleep.pid}), None),
        ],
        60_000,
    );
    let (status, _) = agent.api.post("/v1/runs/r1/faults", dup).await;
    assert_eq!(status, 400);
    let bad_id = apply_body(
        vec![pause_order("../x", json!({"pid": sleep.pid}), None)],
        60_000,
    );
    let (status, _) = agent.api.post("/v1/runs/r1/faults", bad_id).await;
    assert_eq!(status, 400);
    let (status, _) = agent.api.delete("/v1/runs/r1/faults/never-applied").await;
    assert_eq!(status, 404);

    assert_ne!(sleep.state(), Some('T'), "not stopped");
    let (_, faults) = agent.api.get("/v1/faults").await;
    assert_eq!(faults["faults"], json!([]));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_and_leases_over_the_limit_are_refused_before_journaling() {
    let agent = InProcess::start(None).await;
    let (sleep, _) = Spawned::sleep();
    let within = Duration::from_secs(10);
    let huge = pause_order("huge", json!({"pid": sleep.pid}), Some(u64::MAX - 1));
    let (status, err) = tokio::time::timeout(
        within,
        agent
            .api
            .post("/v1/runs/r9/faults", apply_body(vec![huge], 60_000)),
    )
    .await
    .expect("the apply answers");
    assert_eq!(status, 400, "{err}");
    assert_eq!(
        err["message"],
        "fault `huge`: hold_ms 18446744073709551614 is over the limit of 604800000 (7 days); \
         hold it at most that long"
    );
    let lease = apply_body(
        vec![pause_order("f", json!({"pid": sleep.pid}), Some(1000))],
        u64::MAX,
    );
    let (status, err) = agent.api.post("/v1/runs/r9/faults", lease).await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .starts_with("lease_ms 18446744073709551615 is over the limit of 604800000 (7 days)"),
        "{err}"
    );
    assert_ne!(sleep.state(), Some('T'), "not stopped");
    let journal = agent.state_dir().join("journal");
    assert_eq!(std::fs::read_dir(journal).unwrap().count(), 0);
    let (status, _) = tokio::time::timeout(within, agent.api.post("/v1/revert-all", json!({})))
        .await
        .expect("revert-all answers");
    assert_eq!(status, 200);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_controller_loses_its_faults_when_the_lease_runs_out() {
    let agent = InProcess::start(None).await;
    let (sleep, _) = Spawned::sleep();
    let order = pause_order("leased", json!({"pid": sleep.pid}), None);
    // The lease starts while the agent handles the request, so time from before sending it: a
    // slow answer on a loaded machine must not look like an early revert.
    let applied = tokio::time::Instant::now();
    let (status, body) = agent
        .api
        .post("/v1/runs/quiet/faults", apply_body(vec![order], 500))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sleep.state(), Some('T'));
    eventually_async(
        Duration::from_secs(3),
        "the lease watchdog to revert the pause",
        || sleep.state() != Some('T'),
    )
    .await;
    let took = applied.elapsed();
    assert!(
        took >= Duration::from_millis(450),
        "reverted early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "reverted late: {took:?}"
    );
    // The audit line is written just after the revert: wait for it rather than race it.
    eventually_async(
        Duration::from_secs(3),
        "the lease_expired audit line",
        || {
            audit_lines(&agent.state_dir())
                .iter()
                .any(|l| l["event"] == "lease_expired")
        },
    )
    .await;
    let lines = audit_lines(&agent.state_dir());
    let expired = lines
        .iter()
        .find(|l| l["event"] == "lease_expired")
        .unwrap();
    assert_eq!(expired["run"], "quiet");
    assert!(
        expired["detail"].as_str().unwrap().contains("leased"),
        "{expired}"
    );

    // A renewed lease keeps the fault.
    let (sleep2, _) = Spawned::sleep();
    let order = pause_order("renewed", json!({"pid": sleep2.pid}), None);
    let (status, _) = agent
        .api
        .post("/v1/runs/loud/faults", apply_body(vec![order], 400))
        .await;
    assert_eq!(status, 200);
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (status, lease) = agent
            .api
            .post("/v1/runs/loud/lease", json!({"lease_ms": 400}))
            .await;
        assert_eq!((status, &lease["faults"]), (200, &json!(1)));
    }
    assert_eq!(sleep2.state(), Some('T'));
    agent.stop().await;
    assert_ne!(sleep2.state(), Some('T'), "shutdown reverts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_run_on_the_agent_host() {
    let agent = InProcess::start(None).await;
    let (sleep, _) = Spawned::sleep();
    let probe =
        json!({"probe": {"process": {"selector": {"pid": sleep.pid}, "min": 1, "max": null}}});
    let (status, out) = agent.api.post("/v1/probe", probe).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["ok"], true, "{out}");
    let tcp = json!({"probe": {"tcp": {"address": agent.api.addr.to_string(), "timeout": 1000}}});
    let (status, out) = agent.api.post("/v1/probe", tcp).await;
    assert_eq!((status, &out["ok"]), (200, &json!(true)), "{out}");
    assert!(out["latency_ms"].as_f64().unwrap() >= 0.0);
    agent.stop().await;
}

// ---- the binary ----

/// A `chaos-agent` process, killed and reaped on drop.
struct Binary {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Binary {
    fn command(args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chaos-agent"));
        cmd.args(args)
            .env("CHAOS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Starts it and waits for its "serving" line, which names the address.
    fn start(args: &[&str]) -> Binary {
        let mut child = Binary::command(args).spawn().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap());
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listen=").nth(1)
                    && line.contains("chaos-agent serving")
                {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut binary = Binary {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            stderr,
        };
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(addr) => binary.addr = addr.parse().unwrap(),
            Err(_) => panic!("chaos-agent did not start: {:#?}", binary.stderr()),
        }
        binary
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = SystemTime::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                SystemTime::now() < deadline,
                "chaos-agent did not exit: {:#?}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost, its files, and a connector trusting it.
fn tls_material(dir: &Path) -> (PathBuf, PathBuf, tokio_rustls::TlsConnector) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        cert,
        key,
        tokio_rustls::TlsConnector::from(Arc::new(config)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_tls_and_reverts_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, connector) = tls_material(dir.path());
    let token = token_file(dir.path());
    let state = dir.path().join("state");
    let mut binary = Binary::start(&[
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        token.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    let api = Api {
        addr: binary.addr,
        tls: Some(connector),
    };
    let (status, body) = api.send("GET", "/healthz", None, Auth::None).await;
    assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
    let (status, _) = api.send("GET", "/v1/health", None, Auth::None).await;
    assert_eq!(status, 401);
    let (status, health) = api.get("/v1/health").await;
    assert_eq!(status, 200, "{health}");

    // Plain HTTP to a TLS agent gets nowhere.
    let plain = Api {
        addr: binary.addr,
        tls: None,
    };
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        let stream = tokio::net::TcpStream::connect(plain.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get("/healthz")
            .header("host", "x")
            .body(Full::new(Bytes::new()))
            .unwrap();
        sender.send_request(req).await.is_err()
    })
    .await
    .unwrap();
    assert!(refused, "plain HTTP must not be answered");

    let (sleep, _) = Spawned::sleep();
    let order = pause_order("held", json!({"pid": sleep.pid}), Some(30_000));
    let (status, body) = api
        .post("/v1/runs/tls-run/faults", apply_body(vec![order], 60_000))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sleep.state(), Some('T'));

    binary.signal(nix::sys::signal::Signal::SIGTERM);
    let exit = binary.wait(Duration::from_secs(10));
    assert_eq!(exit.code(), Some(0), "{:#?}", binary.stderr());
    assert_ne!(sleep.state(), Some('T'), "SIGTERM reverts the pause");
    let lines = audit_lines(&state);
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "shutdown");
    assert!(last["detail"].as_str().unwrap().contains("held"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sigkill_the_next_start_reverts_the_pause() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let state = dir.path().join("state");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        token.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let mut first = Binary::start(&args);
    let api = Api {
        addr: first.addr,
        tls: None,
    };
    let (sleep, _) = Spawned::sleep();
    let order = pause_order("orphan", json!({"pid": sleep.pid}), None);
    let (status, body) = api
        .post("/v1/runs/killed/faults", apply_body(vec![order], 60_000))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sleep.state(), Some('T'));

    first.signal(nix::sys::signal::Signal::SIGKILL);
    let exit = first.wait(Duration::from_secs(5));
    assert_eq!(exit.code(), None, "killed by a signal");
    assert_eq!(
        sleep.state(),
        Some('T'),
        "nothing of ours is left to revert it"
    );

    let second = Binary::start(&args);
    assert_ne!(sleep.state(), Some('T'), "the start reverted it");
    let logs = second.stderr().join("\n");
    // A log that is not a terminal gets no colour codes.
    assert!(!logs.contains('\x1b'), "an escape code in the log:\n{logs}");
    assert!(
        logs.contains("reverted a fault an earlier agent left"),
        "{logs}"
    );
    let recovered: Vec<Value> = audit_lines(&state)
        .into_iter()
        .filter(|l| l["event"] == "recovered")
        .collect();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0]["run"], "killed");
    assert_eq!(recovered[0]["outcome"], "obeyed");
}

/// The `chaos-stress` children of `parent`, from `/proc`, that have not exited.
fn stress_children(parent: u32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = &stat[stat.find('(').unwrap_or(0) + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        if comm == "chaos-stress"
            && fields.get(1) == Some(&parent.to_string().as_str())
            && !matches!(fields.first(), Some(&"Z") | Some(&"X"))
        {
            found.push(pid);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_children_die_with_a_sigkilled_agent_and_the_restart_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let state = dir.path().join("state");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        token.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let mut first = Binary::start(&args);
    let api = Api {
        addr: first.addr,
        tls: None,
    };
    let order = json!({
        "fault_id": "stress-killed",
        "spec": {"stress": {"cpu": {"workers": {"count": 2}, "load": 20.0}}},
        "seed": 1,
        "hold_ms": 60_000,
    });
    let (status, body) = api
        .post(
            "/v1/runs/stress-killed/faults",
            apply_body(vec![order], 60_000),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let agent_pid = first.child.id();
    let children = stress_children(agent_pid);
    assert_eq!(children.len(), 2, "{body}");

    first.signal(nix::sys::signal::Signal::SIGKILL);
    first.wait(Duration::from_secs(5));
    let start = tokio::time::Instant::now();
    chaos_tests::eventually_async(
        Duration::from_secs(2),
        "the stress workers die with the agent",
        || {
            children.iter().all(|pid| {
                !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
                    let stat =
                        std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                    stat.rsplit(')')
                        .next()
                        .is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X']))
                        || !stat.contains("(chaos-stress)")
                }
            })
        },
    )
    .await;
    println!(
        "workers gone {:?} after the agent's SIGKILL",
        start.elapsed()
    );

    let second = Binary::start(&args);
    let logs = second.stderr().join("\n");
    assert!(
        logs.contains("reverted a fault an earlier agent left"),
        "{logs}"
    );
    let leftovers: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .chain(std::fs::read_dir("/sys/fs/cgroup/unified"))
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy() == "chaos-stress-stress-killed")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_of_a_fault_the_restart_reverted_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let state = dir.path().join("state");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        token.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let mut first = Binary::start(&args);
    let api = Api {
        addr: first.addr,
        tls: None,
    };
    let (sleep, _) = Spawned::sleep();
    let order = pause_order("run9-s1f1-h", json!({"pid": sleep.pid}), Some(60_000));
    let (status, body) = api
        .post("/v1/runs/run9/faults", apply_body(vec![order], 60_000))
        .await;
    assert_eq!(status, 200, "{body}");
    first.signal(nix::sys::signal::Signal::SIGKILL);
    first.wait(Duration::from_secs(5));

    // The controller's revert reaches the restarted agent, which already reverted the fault, and
    // again after one more restart: it is remembered on disk.
    for _ in 0..2 {
        let mut agent = Binary::start(&args);
        assert_ne!(sleep.state(), Some('T'), "the start reverted it");
        let api = Api {
            addr: agent.addr,
            tls: None,
        };
        let (status, body) = api.delete("/v1/runs/run9/faults/run9-s1f1-h").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["reverted"]["by"], "recovery", "{body}");
        assert_eq!(body["reverted"]["verified"], true, "{body}");
        let detail = body["reverted"]["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("already reverted when the agent restarted, at "),
            "{detail}"
        );
        let (status, body) = api.delete("/v1/runs/other/faults/run9-s1f1-h").await;
        assert_eq!(
            status, 404,
            "another run's revert still does not reach it: {body}"
        );
        agent.signal(nix::sys::signal::Signal::SIGTERM);
        agent.wait(Duration::from_secs(10));
    }
}

#[test]
fn bad_configuration_exits_64_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let state = dir.path().join("state");
    let run = |args: &[&str]| {
        let out = Binary::command(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(&[
        "--listen",
        "0.0.0.0:0",
        "--token-file",
        token.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains(
            "chaos-agent: `--listen 0.0.0.0:0` is off loopback: pass --tls-cert and --tls-key"
        ),
        "{err}"
    );
    assert!(!state.exists(), "nothing was started");

    let (code, err) = run(&["--state-dir", state.to_str().unwrap()]);
    assert_eq!(code, Some(64));
    assert!(err.contains("no token file: pass --token-file"), "{err}");

    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "fill_path: [/tmp]\n").unwrap();
    let (code, err) = run(&[
        "--token-file",
        token.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(64));
    assert!(err.contains("fill_path"), "{err}");

    let (code, _) = run(&["--no-such-flag"]);
    assert_eq!(code, Some(64));
}

// ---- rotating tokens, mutual TLS ----

/// Whether the agent admits `token` on `/v1/health` (200) or answers 401.
async fn status_with(api: &Api, token: &str) -> u16 {
    api.send("GET", "/v1/health", None, Auth::Bad(token))
        .await
        .0
}

/// Polls until `token` gets `want` (the agent re-reads the file on its own time after SIGHUP).
async fn until_status(api: &Api, token: &str, want: u16) {
    let deadline = SystemTime::now() + Duration::from_secs(10);
    loop {
        let got = status_with(api, token).await;
        if got == want {
            return;
        }
        assert!(
            SystemTime::now() < deadline,
            "token {token:?} still gets {got}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rotate_on_sighup_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let (a, b) = ("token-a-0123456789", "token-b-9876543210");
    std::fs::write(&token, format!("{a}\n")).unwrap();
    let state = dir.path().join("state");
    let mut binary = Binary::start(&[
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        token.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    let api = Api {
        addr: binary.addr,
        tls: None,
    };
    let hup = |binary: &Binary| binary.signal(nix::sys::signal::Signal::SIGHUP);
    assert_eq!(status_with(&api, a).await, 200);
    assert_eq!(status_with(&api, b).await, 401);

    // The new token first, the old one still listed: both are good, and A never fails.
    std::fs::write(&token, format!("# rotating\n{b}\n\n{a}\n")).unwrap();
    hup(&binary);
    until_status(&api, b, 200).await;
    assert_eq!(status_with(&api, a).await, 200);

    // The old token removed: it is refused, the new one goes on working.
    std::fs::write(&token, format!("{b}\n")).unwrap();
    hup(&binary);
    until_status(&api, a, 401).await;
    assert_eq!(status_with(&api, b).await, 200);

    // An empty file, then a missing one: the tokens in use stay, and the log says why.
    for broken in ["# nothing yet\n\n", ""] {
        if broken.is_empty() {
            std::fs::remove_file(&token).unwrap();
        } else {
            std::fs::write(&token, broken).unwrap();
        }
        let errors_before = binary
            .stderr()
            .iter()
            .filter(|l| l.contains("keeping the tokens in use"))
            .count();
        hup(&binary);
        eventually_async(Duration::from_secs(10), "the re-read error", || {
            binary
                .stderr()
                .iter()
                .filter(|l| l.contains("keeping the tokens in use"))
                .count()
                > errors_before
        })
        .await;
        assert_eq!(status_with(&api, b).await, 200, "{broken:?}");
        assert_eq!(status_with(&api, a).await, 401, "{broken:?}");
    }

    let log = binary.stderr().join("\n");
    assert!(log.contains("token file re-read"), "{log}");
    assert!(
        log.contains("tokens=2") && log.contains("added=1") && log.contains("removed=1"),
        "the counts are logged: {log}"
    );
    assert!(
        log.contains("holds no token") && log.contains("cannot read token file"),
        "{log}"
    );
    assert!(
        !log.contains(a) && !log.contains(b),
        "no token is ever logged: {log}"
    );
    binary.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(binary.wait(Duration::from_secs(10)).code(), Some(0));
}

/// A CA, and certificates it signs, made with rcgen as `chaosctl certs` makes them.
struct Pki {
    ca: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = params.self_signed(&key).unwrap();
        Pki {
            ca,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf for `sans` with `eku`: its certificate and key in DER.
    fn leaf(
        &self,
        sans: &[&str],
        eku: rcgen::ExtendedKeyUsagePurpose,
    ) -> (
        rustls_pki_types::CertificateDer<'static>,
        rustls_pki_types::PrivateKeyDer<'static>,
        String,
        String,
    ) {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![eku];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let der_key = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        (cert.der().clone(), der_key, cert.pem(), key.serialize_pem())
    }
}

/// A connector trusting `ca`, presenting `identity` when given.
fn connector(
    ca: &rcgen::Certificate,
    identity: Option<(
        rustls_pki_types::CertificateDer<'static>,
        rustls_pki_types::PrivateKeyDer<'static>,
    )>,
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_requires_a_client_certificate_except_for_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("test CA");
    let (_, _, server_pem, server_key) =
        pki.leaf(&["127.0.0.1"], rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key, _, _) =
        pki.leaf(&["controller"], rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    let stranger = Pki::new("another CA");
    let (foreign_cert, foreign_key, _, _) =
        stranger.leaf(&["controller"], rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let cert = write("agent.pem", &server_pem);
    let key = write("agent.key", &server_key);
    let ca = write("ca.pem", &pki.ca.pem());
    let token = token_file(dir.path());
    let state = dir.path().join("state");
    let mut binary = Binary::start(&[
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        token.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--client-ca",
        ca.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    let without = Api {
        addr: binary.addr,
        tls: Some(connector(&pki.ca, None)),
    };
    let with = Api {
        addr: binary.addr,
        tls: Some(connector(&pki.ca, Some((client_cert, client_key)))),
    };

    // A liveness probe has no certificate and needs none.
    let (status, body) = without.send("GET", "/healthz", None, Auth::None).await;
    assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
    // Everything else does, even with the right token, and before the token is looked at.
    for (path, auth) in [
        ("/v1/health", Auth::Good),
        ("/metrics", Auth::Good),
        ("/v1/faults", Auth::None),
    ] {
        let (status, body) = without.send("GET", path, None, auth).await;
        assert_eq!(status, 401, "{path}");
        let err: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(err["code"], "client_certificate_required", "{path}");
        let message = err["message"].as_str().unwrap();
        assert!(
            message.contains("requires a client certificate")
                && message.contains("`cert_file` and `key_file`"),
            "{message}"
        );
    }
    // With the certificate, the token is still required.
    let (status, health) = with.get("/v1/health").await;
    assert_eq!(status, 200, "{health}");
    let (status, _) = with.send("GET", "/v1/health", None, Auth::None).await;
    assert_eq!(status, 401);

    // A certificate from another CA fails the handshake; the agent says so in words.
    let foreign = connector(&pki.ca, Some((foreign_cert, foreign_key)));
    let refused = async {
        let stream = tokio::net::TcpStream::connect(binary.addr).await.unwrap();
        let name = rustls_pki_types::ServerName::IpAddress(binary.addr.ip().into());
        // TLS 1.3: our side of the handshake may finish before the agent has checked us; the
        // refusal then arrives instead of the answer.
        let Ok(stream) = foreign.connect(name, stream).await else {
            return true;
        };
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            return true;
        };
        tokio::spawn(conn);
        let req = Request::get("/v1/health")
            .header("host", "x")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        sender.send_request(req).await.is_err()
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(5), refused)
            .await
            .unwrap(),
        "a certificate from another CA must not be served"
    );
    let words = "the client's certificate was not issued by the CA of --client-ca";
    eventually_async(Duration::from_secs(5), "the handshake's audit line", || {
        audit_lines(&state)
            .iter()
            .any(|l| l["event"] == "tls_handshake")
    })
    .await;
    let lines = audit_lines(&state);
    let handshake = lines
        .iter()
        .find(|l| l["event"] == "tls_handshake")
        .unwrap();
    assert_eq!(handshake["outcome"], "refused");
    assert!(
        handshake["detail"].as_str().unwrap().starts_with(words),
        "{handshake}"
    );
    assert!(
        handshake["remote"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let no_cert: Vec<&Value> = lines
        .iter()
        .filter(|l| l["status"] == 401 && l["path"] == "/v1/health")
        .collect();
    assert!(
        no_cert.iter().any(|l| l["detail"]
            .as_str()
            .unwrap()
            .contains("requires a client certificate")),
        "refusals for a missing certificate are audited: {lines:#?}"
    );
    // The log line may reach stderr a moment after the audit line.
    eventually_async(
        Duration::from_secs(5),
        "the refusal in the agent's log",
        || binary.stderr().iter().any(|l| l.contains(words)),
    )
    .await;

    binary.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(binary.wait(Duration::from_secs(10)).code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_says_in_words_what_is_wrong_with_the_agents_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("test CA");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pki.ca.pem()).unwrap();
    let token = token_file(dir.path());
    // A certificate that expired yesterday and one for a name the controller does not use.
    let expired = {
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2025, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &pki.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (_, _, other_pem, other_key) = pki.leaf(
        &["agent-1.internal"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    for (name, (pem, key), words) in [
        (
            "expired",
            expired,
            vec![
                "the certificate of the server at `127.0.0.1` has expired (valid until 2025-01-01 00:00:00 UTC, now ",
                "issue it a new one",
            ],
        ),
        (
            "misnamed",
            (other_pem, other_key),
            vec![
                "the server's certificate is not valid for `127.0.0.1`, the name we connected to: it names agent-1.internal",
                "--san 127.0.0.1",
            ],
        ),
    ] {
        let cert = dir.path().join(format!("{name}.pem"));
        let key_path = dir.path().join(format!("{name}.key"));
        std::fs::write(&cert, pem).unwrap();
        std::fs::write(&key_path, key).unwrap();
        let mut binary = Binary::start(&[
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            token.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
            "--state-dir",
            dir.path().join(format!("{name}-state")).to_str().unwrap(),
        ]);
        let client = agent::client::AgentClient::new(&agent::client::AgentTarget {
            host: "edge".into(),
            url: format!("https://{}", binary.addr),
            token_file: Some(token.clone()),
            ca_file: Some(ca.clone()),
            cert_file: None,
            key_file: None,
        })
        .unwrap();
        let err = client.health().await.unwrap_err().to_string();
        for w in words {
            assert!(err.contains(w), "{name}: {err}");
        }
        assert!(!err.contains("invalid peer certificate"), "{name}: {err}");
        binary.signal(nix::sys::signal::Signal::SIGTERM);
        binary.wait(Duration::from_secs(10));
    }
}
