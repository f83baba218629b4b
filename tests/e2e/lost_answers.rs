//! An apply whose answer never comes back: the connection drops after the request was
//! sent, or the agent dies right after applying. The fault may be in place, so the run reverts it
//! by its id, and lists it in `faults_left` (exit 6) when that revert cannot be confirmed.
//!
//! A real `chaos-agent` on loopback, behind a proxy that passes every request on but swallows the
//! answer to the apply.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use chaos_tests::bins::chaos_agent;
use chaos_tests::eventually;
use chaos_tests::support::{Sleeper, Test, free_port, pattern, proc_state, unique};

const TOKEN: &str = "lost-answers-token-0123456789";

/// A `chaos-agent` serving plain HTTP on loopback; killed and reaped on drop.
struct Agent {
    child: Child,
    addr: SocketAddr,
}

impl Agent {
    fn start(token: &Path, state: &Path) -> Agent {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(chaos_agent())
            .args(["--listen", &addr.to_string(), "--token-file"])
            .arg(token)
            .arg("--state-dir")
            .arg(state)
            .env_remove("CHAOS_AGENT_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chaos-agent");
        eventually(Duration::from_secs(10), "the agent listens", || {
            TcpStream::connect(addr).ok().map(drop)
        });
        Agent { child, addr }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Passes HTTP/1 requests on to `upstream` (one connection each) and their answers back, except
/// the answer to an apply (`POST /v1/runs/RUN/faults`): after `on_apply`, it drops the
/// controller's connection instead. Its address.
fn proxy(upstream: SocketAddr, on_apply: impl Fn() + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let on_apply = Arc::new(on_apply);
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let on_apply = Arc::clone(&on_apply);
            thread::spawn(move || relay(client, upstream, &*on_apply));
        }
    });
    addr
}

fn relay(mut client: TcpStream, upstream: SocketAddr, on_apply: &dyn Fn()) -> Option<()> {
    loop {
        let request = read_message(&mut client)?;
        let head = String::from_utf8_lossy(&request[..request.len().min(200)]).into_owned();
        let apply = head.starts_with("POST ") && head.contains("/faults HTTP/1.1");
        let mut agent = TcpStream::connect(upstream).ok()?;
        agent.write_all(&request).ok()?;
        let answer = read_message(&mut agent)?;
        if apply {
            on_apply();
            return None;
        }
        client.write_all(&answer).ok()?;
    }
}

/// One HTTP/1 message, head and `Content-Length` body, as it came on the wire.
fn read_message(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let (head, body) = chaos_tests::fake_agent::read_request(stream)?;
    Some([head.into_bytes(), body].concat())
}

fn scenario(proxy: SocketAddr, token: &Path) -> String {
    format!(
        r#"version: 1
name: lost-answer
hosts:
  h1: {{agent: "http://{proxy}", token_file: "{}"}}
steps:
  - name: pause the sleeper
    target: h1
    fault: {{pause: {{process: {{pattern: "${{PAT}}"}}}}}}
    duration: 30s
"#,
        token.display()
    )
}

#[test]
fn an_apply_whose_answer_is_lost_is_reverted_by_its_id() {
    let tag = unique("lost-answer");
    let sleeper = Sleeper::spawn(&tag);
    let t = Test::new();
    let token = t.write("agent.token", TOKEN);
    let agent = Agent::start(&token, &t.path("agent-state"));
    let proxy = proxy(agent.addr, || {});
    let t = t
        .scenario(&scenario(proxy, &token))
        .var("PAT", pattern(&tag));
    let out = t.run();
    out.code(5);
    let r = out.report();
    r.verdict("error", Some("apply"));
    assert_eq!(r.json["faults_left"], serde_json::json!([]));
    assert!(r.has_event("fault_reverted"), "{:?}", r.event_kinds());
    assert_ne!(
        proc_state(sleeper.pid),
        Some('T'),
        "the pause the agent applied was reverted"
    );
}

#[test]
fn an_apply_lost_with_its_agent_is_left_in_faults_left() {
    let tag = unique("lost-agent");
    let sleeper = Sleeper::spawn(&tag);
    let t = Test::new();
    let token = t.write("agent.token", TOKEN);
    let state = t.path("agent-state");
    let agent = Agent::start(&token, &state);
    let pid = agent.pid();
    let proxy = proxy(agent.addr, move || {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    });
    let t = t
        .scenario(&scenario(proxy, &token))
        .var("PAT", pattern(&tag));
    let out = t.run();
    out.code(6);
    let r = out.report();
    let left = r.json["faults_left"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["host"], "h1");
    assert_eq!(
        proc_state(sleeper.pid),
        Some('T'),
        "nothing of ours is left to revert it"
    );

    // Its next start reverts it from the journal.
    drop(agent);
    let _agent = Agent::start(&token, &state);
    eventually(
        Duration::from_secs(5),
        "the restart resumes the sleeper",
        || (proc_state(sleeper.pid) != Some('T')).then_some(()),
    );
}
