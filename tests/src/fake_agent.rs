//! A stand-in fleet of agents on loopback that answer the agent API the way a healthy
//! `chaos-agent` does (preflight passes, every fault applied and reverted, leases renewed), each
//! answer after a set delay, and keep every call they were sent: when it started and ended, so a
//! test sees how many calls the controller had in flight at once, and in what order they came,
//! and how many connections it opened.
//! Nothing is injected anywhere. Plain HTTP/1.1 with keep-alive, a thread per connection; the
//! listeners live as long as the test process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// One call an agent of the fleet was sent.
#[derive(Debug, Clone)]
pub struct Call {
    /// `h3`: the host it was sent to.
    pub host: String,
    /// `preflight`, `apply`, `revert`, `lease` or `other`.
    pub kind: &'static str,
    /// The fault's id, for `apply` and `revert`.
    pub fault_id: Option<String>,
    pub started: Instant,
    /// `None` while the call is being answered.
    pub ended: Option<Instant>,
}

#[derive(Default)]
struct Shared {
    /// Connections accepted, over the whole fleet.
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    calls: Mutex<Vec<Call>>,
}

/// `n` agents, `h1` to `hN`, each on a port of its own.
pub struct FakeFleet {
    pub agents: Vec<(String, SocketAddr)>,
    shared: Arc<Shared>,
}

impl FakeFleet {
    /// Starts `n` agents answering every call but lease renewals after `delay`.
    pub fn start(n: usize, delay: Duration) -> FakeFleet {
        let shared = Arc::new(Shared::default());
        let agents = (1..=n)
            .map(|i| {
                let host = format!("h{i}");
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
                let addr = listener.local_addr().expect("local address");
                let (shared, name) = (shared.clone(), host.clone());
                thread::spawn(move || {
                    for stream in listener.incoming().flatten() {
                        shared.connections.fetch_add(1, Ordering::SeqCst);
                        let (shared, name) = (shared.clone(), name.clone());
                        thread::spawn(move || serve(stream, &name, delay, &shared));
                    }
                });
                (host, addr)
            })
            .collect();
        FakeFleet { agents, shared }
    }

    /// The scenario's `hosts:` entries, each with `token_file` (the fake reads no token).
    pub fn hosts_yaml(&self, token_file: &std::path::Path) -> String {
        self.agents
            .iter()
            .map(|(host, addr)| {
                format!(
                    "  {host}: {{agent: \"http://{addr}\", token_file: \"{}\"}}\n",
                    token_file.display()
                )
            })
            .collect()
    }

    /// The connections the fleet accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The most calls that were in flight at once, over the whole fleet.
    pub fn peak(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }

    /// Every call so far, in the order they came.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().expect("calls lock").clone()
    }

    /// The calls of one kind so far.
    pub fn calls_of(&self, kind: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.kind == kind)
            .collect()
    }

    /// The most calls of one kind that were in flight at once.
    pub fn peak_of(&self, kind: &str) -> usize {
        let calls = self.calls_of(kind);
        calls
            .iter()
            .map(|c| {
                calls
                    .iter()
                    .filter(|o| o.started <= c.started && o.ended.is_none_or(|end| end > c.started))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}

fn serve(mut stream: TcpStream, host: &str, delay: Duration, shared: &Shared) {
    while let Some((head, body)) = read_request(&mut stream) {
        let started = Instant::now();
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak.fetch_max(now, Ordering::SeqCst);
        let (kind, fault_id, answer) = answer(&head, &body);
        let index = {
            let mut calls = shared.calls.lock().expect("calls lock");
            calls.push(Call {
                host: host.to_string(),
                kind,
                fault_id,
                started,
                ended: None,
            });
            calls.len() - 1
        };
        if kind != "lease" {
            thread::sleep(delay);
        }
        let body = answer.to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        // The call ends before its answer is written: once the controller has the answer it may
        // start its next call, which another thread here may count before this one would.
        shared.calls.lock().expect("calls lock")[index].ended = Some(Instant::now());
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        let written = stream.write_all(response.as_bytes());
        if written.is_err() {
            return;
        }
    }
}

/// What kind of call `head` is, its fault id, and a healthy agent's answer to it.
fn answer(head: &str, body: &[u8]) -> (&'static str, Option<String>, Value) {
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let now = chrono::Utc::now().to_rfc3339();
    match method {
        "POST" if path.ends_with("/preflight") => ("preflight", None, json!({"problems": []})),
        "POST" if path.ends_with("/lease") => ("lease", None, json!({"faults": 1})),
        "POST" if path.ends_with("/faults") => {
            let order: Value = serde_json::from_slice(body).unwrap_or_default();
            let id = order["faults"][0]["fault_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let applied = json!({"fault_id": id, "applied_at": now, "mechanism": "fake",
                "affected": [], "verified": true, "detail": ""});
            let answer = json!({"results": [{"fault_id": id, "applied": applied}]});
            ("apply", Some(id), answer)
        }
        "DELETE" if path.contains("/faults/") => {
            let id = path.rsplit('/').next().unwrap_or_default().to_string();
            let reverted = json!({"fault_id": id, "reverted_at": now, "verified": true,
                "detail": "", "by": "request"});
            let answer = json!({"fault_id": id, "reverted": reverted});
            ("revert", Some(id), answer)
        }
        _ => (
            "other",
            None,
            json!({"code": "not_found", "message": format!("the fake agent has no {method} {path}")}),
        ),
    }
}

/// One HTTP/1.1 message (a request, or an answer): its head and its `content-length` body;
/// `None` once the peer closed. Shared with the tests' own stand-ins on the wire.
pub fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut message = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = message.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
        message.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&message[..head_end]).into_owned();
    let length: usize = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while message.len() < head_end + length {
        let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
        message.extend_from_slice(&chunk[..n]);
    }
    Some((head, message[head_end..head_end + length].to_vec()))
}
