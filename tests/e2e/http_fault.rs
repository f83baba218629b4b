//! `http` against real `chaos-agent` daemons in the lab and a real nginx on h2 (its own config,
//! logs and files in the test's folder): requests from h1, and from h2 itself, aborted or delayed
//! as asked and by the share the seed draws, `paths` and `methods` narrowing it, keep-alive and a
//! large body through the proxy, the server reached directly again after the step with the table
//! gone; the ports it refuses at preflight; and what ends it when the agent or chaosctl dies (the
//! gate fails open within 2 s of the agent's death). The lab checks after each test that no table
//! or proxy is left.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use chaos_tests::eventually;
use chaos_tests::lab::{AGENT_PORT, Lab, wait_applied};
use chaos_tests::support::{Test, unique};

const NGINX: &str = "/usr/sbin/nginx";

/// The lease of every run here.
const LEASE: Duration = Duration::from_secs(2);

/// The size of the file served for the large-body check.
const BIG: usize = 8 << 20;

// ---- nginx on a lab host ----------------------------------------------------------------------

/// nginx in `host`'s namespace on `port` (every address), serving `/` (`ok`), `/api/` (`api`),
/// `POST /upload` (`got`, the body kept in a file of `tmp/body/`) and `/files/big.bin` ([`BIG`] bytes); its
/// access log says each request's method, path, length and status. Killed when dropped (and
/// by the lab, with everything in its namespaces).
struct Nginx {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Nginx {
    fn start(lab: &Lab, host: &str, port: u16, dir: &Path) -> Nginx {
        std::fs::create_dir_all(dir.join("tmp")).expect("nginx dir");
        std::fs::create_dir_all(dir.join("www/files")).expect("nginx www");
        std::fs::write(dir.join("www/files/big.bin"), big_body()).expect("big file");
        let d = dir.display();
        // Where `/upload` passes its body on, so that nginx reads it whole and keeps it in a file.
        let sink = port + 1000;
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  log_format lab '$request_method $uri $request_length $status';\n  \
             access_log {d}/access.log lab;\n  client_body_temp_path {d}/tmp/body;\n  \
             proxy_temp_path {d}/tmp/proxy;\n  keepalive_requests 100000;\n  client_max_body_size 64m;\n  \
             server {{\n    listen {port};\n    root {d}/www;\n    client_max_body_size 64m;\n    \
             location = / {{ return 200 \"ok\\n\"; }}\n    \
             location /api/ {{ return 200 \"api\\n\"; }}\n    \
             location = /upload {{ client_body_in_file_only on; proxy_pass http://127.0.0.1:{sink}; }}\n    \
             location /files/ {{ }}\n  }}\n  \
             server {{\n    listen 127.0.0.1:{sink};\n    location / {{ return 200 \"got\\n\"; }}\n  }}\n}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.host(host).ns, NGINX, "-p"])
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let addr: SocketAddr = format!("{}:{port}", lab.host(host).addr)
            .parse()
            .expect("address");
        let nginx = Nginx {
            child,
            dir: dir.to_path_buf(),
            addr,
        };
        eventually(Duration::from_secs(10), "nginx answers", || {
            lab.within(host, move || Client::new(addr).get("/").ok())
                .filter(|r| r.status == 200)
        });
        nginx
    }

    /// The access log's lines so far.
    fn access(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The large body: bytes no compression or framing bug would keep intact by chance.
fn big_body() -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..BIG)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn have_nginx_or_skip() -> bool {
    chaos_tests::skip::unless_installed(&[NGINX], "nginx-light")
}

// ---- a small HTTP/1.1 client ------------------------------------------------------------------

/// One answer.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    body: Vec<u8>,
    elapsed: Duration,
}

/// A keep-alive HTTP/1.1 client over one connection, opened again when the server closed it;
/// `connects` counts the connections it opened.
struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    connects: usize,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            conn: None,
            connects: 0,
        }
    }

    fn get(&mut self, path: &str) -> std::io::Result<Reply> {
        self.request("GET", path, &[], &[])
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Reply> {
        let started = Instant::now();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let fresh = self.conn.is_none();
        if fresh {
            let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            stream.set_nodelay(true)?;
            self.conn = Some(BufReader::new(stream));
            self.connects += 1;
        }
        match self.exchange(method, &head, body) {
            Ok((status, body, close)) => {
                if close {
                    self.conn = None;
                }
                Ok(Reply {
                    status,
                    body,
                    elapsed: started.elapsed(),
                })
            }
            Err(err) => {
                self.conn = None;
                if fresh {
                    return Err(err);
                }
                // The server closed a kept-alive connection: once more on a new one.
                self.request(method, path, headers, body)
            }
        }
    }

    fn exchange(
        &mut self,
        method: &str,
        head: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>, bool)> {
        let conn = self.conn.as_mut().expect("connected");
        conn.get_mut().write_all(head.as_bytes())?;
        conn.get_mut().write_all(body)?;
        let mut line = String::new();
        if conn.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let (mut length, mut close) = (0usize, false);
        loop {
            let mut h = String::new();
            conn.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((h, ""));
            match k.to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap_or(0),
                "connection" => close = v.trim().eq_ignore_ascii_case("close"),
                "transfer-encoding" => {
                    return Err(std::io::Error::other("chunked answers are not expected"));
                }
                _ => {}
            }
        }
        let mut reply = vec![0u8; if method == "HEAD" { 0 } else { length }];
        conn.read_exact(&mut reply)?;
        Ok((status, reply, close))
    }
}

/// `n` GET requests for `path` from `host` to `to` over one kept-alive connection: the answers
/// and how many connections were opened.
fn gets(lab: &Lab, host: &str, to: SocketAddr, path: &str, n: usize) -> (Vec<Reply>, usize) {
    let path = path.to_string();
    lab.within(host, move || {
        let mut client = Client::new(to);
        let replies = (0..n)
            .map(|_| client.get(&path).expect("an answer"))
            .collect();
        (replies, client.connects)
    })
}

fn statuses(replies: &[Reply]) -> Vec<u16> {
    replies.iter().map(|r| r.status).collect()
}

fn median_ms(replies: &[Reply]) -> f64 {
    let mut ms: Vec<f64> = replies
        .iter()
        .map(|r| r.elapsed.as_secs_f64() * 1e3)
        .collect();
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

// ---- runs --------------------------------------------------------------------------------------

fn scenario(name: &str, fault: &str, duration: &str) -> String {
    format!(
        r#"version: 1
name: {name}
settings: {{lease: 2s}}
steps:
  - name: fault h2's web server
    target: h2
    fault: {{http: {{port: "${{PORT}}", {fault}}}}}
    duration: {duration}
"#
    )
}

/// The revert's detail in a run's events: what the proxy did.
fn proxy_said(t: &Test) -> String {
    let events = std::fs::read_to_string(t.run_folder().join("events.jsonl")).expect("events");
    events
        .lines()
        .find(|l| l.contains("the proxy passed"))
        .unwrap_or_else(|| panic!("no revert detail from the proxy in:\n{events}"))
        .to_string()
}

/// The number before `word` in `text` (`36 aborted` → 36).
fn count_before(text: &str, word: &str) -> u64 {
    let at = text
        .find(&format!(" {word}"))
        .unwrap_or_else(|| panic!("no `{word}` in {text}"));
    text[..at]
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before `{word}` in {text}"))
}

/// What the agent of `host` listens on beside its API port: an `http` proxy.
fn proxy_listening(lab: &Lab, host: &str) -> Vec<String> {
    lab.host(host).extra_listeners()
}

#[test]
fn lab_http_abort_hits_every_request_from_other_hosts_and_this_one_then_none() {
    if !have_nginx_or_skip() {
        return;
    }
    let Some(lab) = Lab::new() else { return };
    let t = lab.test(&scenario("lab-http-abort", "abort: {status: 503}", "4s"));
    let port = 18_081;
    let nginx = Nginx::start(&lab, "h2", port, &t.path("nginx"));
    let to = nginx.addr;
    let (before, _) = gets(&lab, "h1", to, "/", 5);
    assert_eq!(statuses(&before), [200; 5]);
    let t = t.var("PORT", port);
    let run = t.spawn_run();
    wait_applied(&t, "h2", Duration::from_secs(15));
    let served_before = nginx.access().len();
    let (from_h1, connects) = gets(&lab, "h1", to, "/", 50);
    let (from_h2, _) = gets(&lab, "h2", to, "/api/x", 10);
    let secret = unique("hunter2-secret");
    let header = secret.clone();
    let with_secret = lab.within("h1", move || {
        Client::new(to)
            .request("GET", "/", &[("X-Api-Key", &header)], &[])
            .expect("an answer")
    });
    assert_eq!(statuses(&from_h1), [503; 50], "from h1");
    assert_eq!(statuses(&from_h2), [503; 10], "from h2 itself");
    assert_eq!(with_secret.status, 503);
    assert_eq!(
        connects, 1,
        "50 requests on one kept-alive connection through the proxy"
    );
    let body = String::from_utf8_lossy(&from_h1[0].body).to_string();
    assert!(body.contains("injected by a chaos `http` fault"), "{body}");
    assert_eq!(
        nginx.access().len(),
        served_before,
        "an aborted request never reaches the server"
    );
    assert!(!proxy_listening(&lab, "h2").is_empty(), "the proxy listens");
    let out = run.wait();
    out.code(0);
    let r = out.report();
    r.verdict("passed", None);
    let fault = &r.faults()[0];
    println!("report: {} / {}", fault["mechanism"], fault["detail"]);
    assert_eq!(fault["mechanism"], "proxy");
    assert_eq!(fault["verified"], true);
    let said = proxy_said(&t);
    println!("{said}");
    assert_eq!(count_before(&said, "aborted"), 61, "{said}");
    for name in ["report.md", "report.html", "report.json"] {
        let text = std::fs::read_to_string(out.folder().join(name)).expect(name);
        assert!(
            text.contains("61 aborted"),
            "{name} shows what the proxy did"
        );
        assert!(
            text.contains("http port 18081: abort 503"),
            "{name} shows the fault"
        );
    }
    // After the step: straight to nginx, nothing of ours left.
    let (after, _) = gets(&lab, "h1", to, "/", 5);
    assert_eq!(statuses(&after), [200; 5]);
    let (after_local, _) = gets(&lab, "h2", to, "/", 5);
    assert_eq!(statuses(&after_local), [200; 5]);
    assert!(lab.leftovers().is_empty(), "{:?}", lab.leftovers());
    // Headers never reach the agent's audit log, its log, or the reports.
    let audit = serde_json::to_string(&lab.host("h2").audit()).expect("audit");
    assert!(
        audit.contains("applied"),
        "the audit log has the apply: {audit}"
    );
    assert!(!audit.contains(&secret), "a header in the audit log");
    assert!(!lab.host("h2").agent_log().contains(&secret));
    for name in ["report.md", "report.html", "report.json", "events.jsonl"] {
        let text = std::fs::read_to_string(out.folder().join(name)).expect(name);
        assert!(!text.contains(&secret), "a header in {name}");
    }
}

#[test]
fn lab_http_abort_a_share_draws_the_same_requests_from_the_same_seed() {
    if !have_nginx_or_skip() {
        return;
    }
    let Some(lab) = Lab::new() else { return };
    let port = 18_082;
    let base = lab.test(&scenario(
        "lab-http-share",
        "abort: {status: 502}, share: 30%",
        "5s",
    ));
    let nginx = Nginx::start(&lab, "h2", port, &base.path("nginx"));
    let mut runs = Vec::new();
    for _ in 0..2 {
        let t = lab
            .test(&scenario(
                "lab-http-share",
                "abort: {status: 502}, share: 30%",
                "3s",
            ))
            .var("PORT", port)
            .arg("--seed")
            .arg(7);
        let run = t.spawn_run();
        wait_applied(&t, "h2", Duration::from_secs(15));
        let (replies, _) = gets(&lab, "h1", nginx.addr, "/", 400);
        let out = run.wait();
        out.code(0);
        let said = proxy_said(&t);
        runs.push((statuses(&replies), said));
    }
    let hits = runs[0].0.iter().filter(|s| **s == 502).count();
    let others: Vec<u16> = runs[0]
        .0
        .iter()
        .copied()
        .filter(|s| *s != 502 && *s != 200)
        .collect();
    println!("share 30% of 400: {hits} aborted; proxy: {}", runs[0].1);
    assert!(others.is_empty(), "{others:?}");
    // Binomial(400, 0.3): mean 120, sigma 9.2; ±4 sigma.
    assert!((83..=157).contains(&hits), "{hits} of 400 aborted at 30%");
    assert_eq!(count_before(&runs[0].1, "aborted"), hits as u64);
    assert_eq!(
        runs[0].0, runs[1].0,
        "the same seed and the same order of requests hit the same requests"
    );
}

#[test]
fn lab_http_delay_holds_the_matching_requests_only_and_bodies_stream_intact() {
    if !have_nginx_or_skip() {
        return;
    }
    let Some(lab) = Lab::new() else { return };
    let port = 18_083;
    let t = lab.test(&scenario(
        "lab-http-delay",
        "delay: 100ms, paths: [/api], methods: [GET]",
        "8s",
    ));
    let nginx = Nginx::start(&lab, "h2", port, &t.path("nginx"));
    let to = nginx.addr;
    let (direct, _) = gets(&lab, "h1", to, "/api/x", 20);
    let t = t.var("PORT", port);
    let run = t.spawn_run();
    wait_applied(&t, "h2", Duration::from_secs(15));
    let (api, _) = gets(&lab, "h1", to, "/api/x", 15);
    let (root, _) = gets(&lab, "h1", to, "/", 20);
    let (posts, big, upload) = lab.within("h1", move || {
        let mut c = Client::new(to);
        let posts: Vec<Reply> = (0..5)
            .map(|_| c.request("POST", "/api/x", &[], b"x=1").expect("post"))
            .collect();
        let big = c.get("/files/big.bin").expect("the big file");
        let upload = c
            .request("POST", "/upload", &[], &big_body())
            .expect("the upload");
        (posts, big, upload)
    });
    let out = run.wait();
    out.code(0);
    let (d, a, r, p) = (
        median_ms(&direct),
        median_ms(&api),
        median_ms(&root),
        median_ms(&posts),
    );
    println!(
        "medians: direct {d:.2} ms, GET /api delayed {a:.2} ms, GET / {r:.2} ms, POST /api {p:.2} ms; 8 MiB down in {:?}, up in {:?}",
        big.elapsed, upload.elapsed
    );
    assert_eq!(statuses(&api), [200; 15]);
    assert!(
        (a - d - 100.0).abs() <= 5.0,
        "GET /api took {a:.2} ms, direct {d:.2} ms: not 100 ms more"
    );
    assert!(r < d + 20.0, "GET / is not delayed: {r:.2} ms");
    assert!(p < d + 20.0, "POST /api is not delayed: {p:.2} ms");
    assert_eq!(big.status, 200);
    assert!(big.body == big_body(), "the 8 MiB body came through intact");
    assert_eq!(upload.status, 200);
    let kept: Vec<PathBuf> = std::fs::read_dir(nginx.dir.join("tmp/body"))
        .expect("nginx's body files")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        kept.iter()
            .any(|f| std::fs::read(f).is_ok_and(|b| b == big_body())),
        "the 8 MiB upload reached nginx intact: {kept:?}"
    );
    let said = proxy_said(&t);
    println!("{said}");
    assert_eq!(count_before(&said, "delayed"), 15, "{said}");
    assert!(!lab.has_chaos_table("h2"));
}

/// A listener in `host` on `port` that answers every connection with `answer`, then closes it.
fn canned(lab: &Lab, host: &str, port: u16, answer: &'static [u8]) {
    lab.within(host, move || {
        let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind");
        thread::spawn(move || {
            for mut stream in listener.incoming().flatten().take(20) {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 512];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(answer);
            }
        });
    });
}

#[test]
fn lab_http_refuses_the_agents_port_tls_what_is_not_http_and_a_port_nobody_serves() {
    let Some(lab) = Lab::new() else { return };
    // A TLS server's answer to plain text: an alert record. A Redis-like server's: a line.
    canned(
        &lab,
        "h2",
        18_084,
        &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46],
    );
    canned(&lab, "h2", 18_085, b"-ERR unknown command\r\n");
    let yaml = format!(
        r#"version: 1
name: lab-http-refused
settings: {{lease: 2s}}
steps:
  - {{name: the agent's port, target: h2, fault: {{http: {{port: {AGENT_PORT}, delay: 1s}}}}, duration: 1s}}
  - {{name: tls, target: h2, fault: {{http: {{port: 18084, delay: 1s}}}}, duration: 1s}}
  - {{name: not http, target: h2, fault: {{http: {{port: 18085, delay: 1s}}}}, duration: 1s}}
  - {{name: nobody, target: h2, fault: {{http: {{port: 18086, delay: 1s}}}}, duration: 1s}}
"#
    );
    let t = lab.test(&yaml);
    let out = t.run();
    out.code(5);
    let r = out.report();
    r.verdict("error", Some("preflight"));
    // Every problem is an event of its own; the reason names the first.
    let reason = std::fs::read_to_string(out.folder().join("events.jsonl")).expect("events");
    println!("{}", r.reason());
    for says in [
        "port 7411 is this agent's own port",
        "port 18084 answers TLS, not plain HTTP/1.1",
        "port 18085 does not answer plain HTTP/1.1",
        "nothing listens on TCP port 18086",
    ] {
        assert!(reason.contains(says), "no `{says}` in: {reason}");
    }
    assert!(!r.has_event("fault_applied"));
    assert!(!lab.has_chaos_table("h2"));
}

#[test]
fn http_bad_input_is_refused_before_anything_runs() {
    for (fault, says) in [
        (
            "{http: {port: 8080, abort: {status: 503}, delay: 1s}}",
            "has both `abort` and `delay`",
        ),
        ("{http: {port: 22, delay: 1s}}", "port 22 is SSH's"),
        ("{http: {port: 8080}}", "needs one of `abort"),
        (
            "{http: {port: 8080, delay: 1s, share: 150%}}",
            "outside 0% to 100%",
        ),
        (
            "{http: {port: 8080, abort: {status: 700}}}",
            "not an HTTP status",
        ),
        (
            "{http: {port: 8080, delay: 1s, paths: [api]}}",
            "does not start with `/`",
        ),
    ] {
        let yaml = format!(
            "version: 1\nname: bad-http\nsteps:\n  - name: s\n    duration: 1s\n    fault: {fault}\n"
        );
        let t = Test::new().scenario(&yaml);
        let file = t.scenario_path().display().to_string();
        let out = t.cmd(&["validate", &file]);
        out.code(2);
        out.stderr_has(says);
    }
}

#[test]
fn lab_sigkill_agent_during_http_requests_go_direct_within_2s_and_its_restart_cleans_up() {
    if !have_nginx_or_skip() {
        return;
    }
    let Some(mut lab) = Lab::new() else { return };
    let port = 18_087;
    let t = lab.test(&scenario(
        "lab-http-agent-dies",
        "abort: {status: 503}",
        "30s",
    ));
    let nginx = Nginx::start(&lab, "h2", port, &t.path("nginx"));
    let to = nginx.addr;
    let t = t.var("PORT", port);
    let run = t.spawn_run();
    wait_applied(&t, "h2", Duration::from_secs(15));
    let (during, _) = gets(&lab, "h1", to, "/", 3);
    assert_eq!(statuses(&during), [503; 3]);
    lab.kill_agent("h2");
    let killed = Instant::now();
    // New connections, one after another, until nginx answers one itself.
    let direct = lab.within("h1", move || {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(reply) = Client::new(to).get("/")
                && reply.status == 200
            {
                return Some(started.elapsed());
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    });
    let direct = direct.expect("nginx is reached directly once the agent is dead");
    let since_kill = killed.elapsed();
    println!(
        "agent SIGKILLed: nginx answered directly {direct:?} later ({since_kill:?} measured from the kill)"
    );
    assert!(
        direct <= Duration::from_millis(2_250),
        "the redirect outlived the agent by {direct:?} (gate: 2 s)"
    );
    assert!(lab.has_chaos_table("h2"), "the table waits for a revert");
    let out = run.wait();
    out.code(6);
    out.report().verdict("error", Some("agent_lost"));

    lab.restart_agent("h2");
    eventually(
        Duration::from_secs(5),
        "the restarted agent deletes the redirect table",
        || !lab.has_chaos_table("h2"),
    );
    let (after, _) = gets(&lab, "h1", to, "/", 5);
    assert_eq!(statuses(&after), [200; 5]);
}

#[test]
fn lab_sigkill_chaosctl_during_http_the_agent_reverts_it_within_its_lease() {
    if !have_nginx_or_skip() {
        return;
    }
    let Some(lab) = Lab::new() else { return };
    let port = 18_088;
    let t = lab.test(&scenario("lab-http-orphaned", "delay: 50ms", "30s"));
    let nginx = Nginx::start(&lab, "h2", port, &t.path("nginx"));
    let to = nginx.addr;
    let t = t.var("PORT", port);
    let run = t.spawn_run();
    wait_applied(&t, "h2", Duration::from_secs(15));
    assert!(lab.has_chaos_table("h2"));
    run.signal_group(Signal::SIGKILL);
    let killed = Instant::now();
    eventually(
        LEASE + Duration::from_secs(1),
        "the agent reverts the http fault once the lease runs out",
        || (!lab.has_chaos_table("h2") && proxy_listening(&lab, "h2").is_empty()).then_some(()),
    );
    println!(
        "http fault reverted {:?} after chaosctl's SIGKILL (lease 2s)",
        killed.elapsed()
    );
    let out = run.wait();
    assert_eq!(out.signal, Some(9), "{out:?}");
    let (after, _) = gets(&lab, "h1", to, "/", 10);
    assert_eq!(statuses(&after), [200; 10]);
    assert!(
        median_ms(&after) < 20.0,
        "not delayed any more: {:.2} ms",
        median_ms(&after)
    );
}
