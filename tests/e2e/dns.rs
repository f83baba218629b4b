//! `dns` against real `chaos-agent` daemons in the lab: dnsmasq (Debian's) serves `db.internal`
//! and `web.internal` on h2, h1 resolves through it (its `/etc/netns/NS/resolv.conf`), and real
//! clients on h1 (`getent hosts`, `dig` over UDP and TCP) see each answer while the fault holds,
//! other names resolve as before, and everything resolves normally after it. Then what ends it
//! when the agent dies (the fail-open gate: within 2 s, before the restart deletes the table) or
//! chaosctl dies (the lease), and bad keys refused before anything runs. The lab checks after
//! each test that no table is left.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use chaos_tests::lab::{Lab, try_sh, wait_applied};
use chaos_tests::support::{Output, Test, read_events};
use chaos_tests::{eventually, skip};

/// The lease of every run here.
const LEASE: Duration = Duration::from_secs(2);

/// What dnsmasq answers.
const DB: &str = "10.9.9.9";
const WEB: &str = "10.9.9.10";

/// Whether dnsmasq, dig and getent are here; skips (see [`skip`]) saying why not.
fn can_run() -> bool {
    skip::unless_installed(&["dnsmasq"], "dnsmasq-base")
        && skip::unless_installed(&["dig"], "bind9-dnsutils")
        && skip::unless_installed(&["getent"], "libc-bin")
}

/// dnsmasq on `host`'s address, answering `db.internal` and `web.internal` and nothing else
/// (no upstream, no /etc/hosts). Killed when dropped (and by the lab with every process of it).
struct Dnsmasq {
    child: Child,
}

impl Dnsmasq {
    fn start(lab: &Lab, host: &str) -> Dnsmasq {
        let h = lab.host(host);
        let pid_file = lab.dir.path().join(format!("dnsmasq-{host}.pid"));
        let child = Command::new("ip")
            .args(["netns", "exec", &h.ns, "dnsmasq", "--no-daemon"])
            .arg(format!("--listen-address={}", h.addr))
            .args([
                "--bind-interfaces",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--user=root",
            ])
            .arg(format!("--address=/db.internal/{DB}"))
            .arg(format!("--address=/web.internal/{WEB}"))
            .arg(format!("--pid-file={}", pid_file.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        let server = Dnsmasq { child };
        eventually(Duration::from_secs(10), "dnsmasq answers", || {
            let d = dig(lab, &["db.internal"]);
            (d.answers == [DB]).then_some(())
        });
        server
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `getent hosts NAME` on h1: the address it resolves to, `None` when not found.
fn getent(lab: &Lab, name: &str) -> Option<String> {
    let out = try_sh(&[
        "ip",
        "netns",
        "exec",
        &lab.host("h1").ns,
        "getent",
        "hosts",
        name,
    ])
    .ok()?;
    out.split_whitespace().next().map(str::to_string)
}

/// What `dig` on h1 said.
#[derive(Debug)]
struct Dig {
    /// `NOERROR`, `NXDOMAIN`, ...; empty when no answer came.
    status: String,
    answers: Vec<String>,
    query_ms: Option<u64>,
    /// The whole run, measured here.
    took: Duration,
    output: String,
}

/// `dig +tries=1 +time=2 ARGS` on h1, through its resolv.conf.
fn dig(lab: &Lab, args: &[&str]) -> Dig {
    let started = Instant::now();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.host("h1").ns,
            "dig",
            "+tries=1",
            "+time=2",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run dig");
    let took = started.elapsed();
    let output = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = output
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|rest| rest.split(',').next().unwrap_or("").to_string())
        .unwrap_or_default();
    let query_ms = output
        .lines()
        .find_map(|l| l.strip_prefix(";; Query time: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    let answers = output
        .split(";; ANSWER SECTION:\n")
        .nth(1)
        .map(|section| {
            section
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .filter_map(|l| l.split_whitespace().last().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Dig {
        status,
        answers,
        query_ms,
        took,
        output,
    }
}

/// A UDP socket of h1 connected to the resolver, kept for every query, as nginx's resolver and
/// caching daemons keep theirs: one conntrack flow for all its queries.
struct KeptSocket {
    socket: UdpSocket,
    id: u16,
}

impl KeptSocket {
    fn open(lab: &Lab) -> KeptSocket {
        let resolver = format!("{}:53", lab.host("h2").addr);
        let socket = lab.within("h1", move || {
            let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
            socket.connect(&resolver).expect("connect");
            socket
        });
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        KeptSocket { socket, id: 0x5100 }
    }

    /// Asks for `db.internal` (A): the answer's rcode and answer count, `None` when none came.
    fn ask(&mut self) -> Option<(u8, u16)> {
        self.id = self.id.wrapping_add(1);
        // A query by hand (the test has no DNS library): header, then the question.
        let mut q = self.id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in ["db", "internal"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        self.socket.send(&q).ok()?;
        let mut buf = [0u8; 512];
        loop {
            let n = self.socket.recv(&mut buf).ok()?;
            if n >= 12 && buf[..2] == self.id.to_be_bytes() {
                return Some((buf[3] & 0x0f, u16::from_be_bytes([buf[6], buf[7]])));
            }
        }
    }
}

/// Waits until the run of `t` has applied its `n`th fault (counting from 1).
fn wait_nth_applied(t: &Test, n: usize, within: Duration) {
    let folder = t.run_folder();
    eventually(within, &format!("fault {n} applied"), || {
        let applied = read_events(&folder.join("events.jsonl"))
            .into_iter()
            .filter(|e| e["kind"] == "fault_applied")
            .count();
        (applied >= n).then_some(())
    });
}

/// Names resolve as dnsmasq answers them, over UDP, TCP and getent.
fn assert_normal(lab: &Lab, when: &str) {
    assert_eq!(getent(lab, "db.internal").as_deref(), Some(DB), "{when}");
    assert_eq!(getent(lab, "web.internal").as_deref(), Some(WEB), "{when}");
    let udp = dig(lab, &["db.internal"]);
    assert_eq!(udp.answers, [DB], "{when}: {}", udp.output);
    let tcp = dig(lab, &["+tcp", "db.internal"]);
    assert_eq!(tcp.answers, [DB], "{when}: {}", tcp.output);
}

fn one_step(name: &str, fault: &str, duration: &str) -> String {
    format!(
        "version: 1\nname: {name}\nsettings: {{lease: 2s}}\nsteps:\n  - name: dns on h1\n    target: h1\n    fault: {{dns: {fault}}}\n    duration: {duration}\n"
    )
}

/// The run ends in error: h1's agent was lost, its fault left to it.
fn assert_lost(out: &Output) {
    out.code(6);
    out.report().verdict("error", Some("agent_lost"));
}

#[test]
fn lab_dns_answers_matching_names_over_udp_and_tcp_and_relays_the_rest() {
    if !can_run() {
        return;
    }
    let Some(lab) = Lab::with_resolver("h1", "h2") else {
        return;
    };
    let _server = Dnsmasq::start(&lab, "h2");
    assert_normal(&lab, "before");
    let bare = dig(&lab, &["db.internal"]);
    let yaml = r#"version: 1
name: lab-dns-answers
settings: {lease: 2s}
steps:
  - name: nxdomain
    target: h1
    fault: {dns: {names: [db.internal], answer: nxdomain}}
    duration: 6s
  - name: servfail
    target: h1
    fault: {dns: {names: ["*.internal"], answer: servfail}}
    duration: 4s
  - name: refused
    target: h1
    fault: {dns: {names: ["*.internal"], answer: refused}}
    duration: 4s
  - name: address
    target: h1
    fault: {dns: {names: [DB.Internal.], answer: {address: 10.7.7.7}}}
    duration: 4s
  - name: late
    target: h1
    fault: {dns: {names: [db.internal], delay: 600ms}}
    duration: 6s
  - name: unanswered
    target: h1
    fault: {dns: {names: [db.internal], answer: timeout}}
    duration: 5s
"#;
    let t = lab.test(yaml);
    let run = t.spawn_run();

    wait_nth_applied(&t, 1, Duration::from_secs(15));
    assert_eq!(getent(&lab, "db.internal"), None, "nxdomain: not found");
    assert_eq!(getent(&lab, "web.internal").as_deref(), Some(WEB));
    let udp = dig(&lab, &["db.internal"]);
    assert_eq!(udp.status, "NXDOMAIN", "{}", udp.output);
    let tcp = dig(&lab, &["+tcp", "db.internal"]);
    assert_eq!(tcp.status, "NXDOMAIN", "{}", tcp.output);
    let other = dig(&lab, &["+tcp", "web.internal"]);
    assert_eq!(other.answers, [WEB], "{}", other.output);
    assert_eq!(
        lab.agent_sockets("h1").len(),
        2,
        "{:?}",
        lab.agent_sockets("h1")
    );

    wait_nth_applied(&t, 2, Duration::from_secs(15));
    let d = dig(&lab, &["web.internal"]);
    assert_eq!(d.status, "SERVFAIL", "{}", d.output);
    let d = dig(&lab, &["+tcp", "db.internal"]);
    assert_eq!(d.status, "SERVFAIL", "{}", d.output);

    wait_nth_applied(&t, 3, Duration::from_secs(15));
    let d = dig(&lab, &["web.internal"]);
    assert_eq!(d.status, "REFUSED", "{}", d.output);

    wait_nth_applied(&t, 4, Duration::from_secs(15));
    assert_eq!(getent(&lab, "db.internal").as_deref(), Some("10.7.7.7"));
    let d = dig(&lab, &["+tcp", "db.internal"]);
    assert_eq!(d.answers, ["10.7.7.7"], "{}", d.output);
    assert!(
        d.output.contains("\t5\tIN\tA\t10.7.7.7"),
        "TTL 5: {}",
        d.output
    );
    let aaaa = dig(&lab, &["db.internal", "AAAA"]);
    assert_eq!(aaaa.status, "NOERROR", "{}", aaaa.output);
    assert!(aaaa.answers.is_empty(), "{}", aaaa.output);

    wait_nth_applied(&t, 5, Duration::from_secs(15));
    let late_udp = dig(&lab, &["db.internal"]);
    let late_tcp = dig(&lab, &["+tcp", "db.internal"]);
    let prompt = dig(&lab, &["web.internal"]);
    for late in [&late_udp, &late_tcp] {
        assert_eq!(late.answers, [DB], "the real answer, late: {}", late.output);
        let ms = late.query_ms.expect("dig's query time");
        assert!((580..1200).contains(&ms), "600ms late: {ms} ms");
    }
    assert!(prompt.query_ms.unwrap_or(999) < 400, "{}", prompt.output);

    wait_nth_applied(&t, 6, Duration::from_secs(15));
    let silent = dig(&lab, &["+time=1", "db.internal"]);
    assert!(silent.status.is_empty(), "no answer: {}", silent.output);
    assert!(silent.output.contains("timed out"), "{}", silent.output);
    assert_eq!(getent(&lab, "web.internal").as_deref(), Some(WEB));

    let out = run.wait();
    out.code(0);
    assert_normal(&lab, "after the run");
    assert!(!lab.has_chaos_table("h1"), "{}", lab.nft_tables("h1"));
    assert!(
        lab.agent_sockets("h1").is_empty(),
        "{:?}",
        lab.agent_sockets("h1")
    );
    println!(
        "dns on h1 via dnsmasq on h2: bare {:?} ms; 600ms late: udp {:?} ms, tcp {:?} ms; others meanwhile {:?} ms; timeout: dig gave up after {:?}",
        bare.query_ms, late_udp.query_ms, late_tcp.query_ms, prompt.query_ms, silent.took
    );

    let r = out.report();
    r.verdict("passed", None);
    let faults = r.faults();
    assert_eq!(faults.len(), 6);
    for fault in &faults {
        assert_eq!(fault["mechanism"], "nft redirect", "{fault}");
        assert_eq!(fault["verified"], true, "{fault}");
    }
    println!("report: {}", faults[0]["detail"]);
    assert!(
        faults[0]["detail"]
            .as_str()
            .unwrap_or("")
            .starts_with("nxdomain for db.internal; other names relayed"),
        "{}",
        faults[0]
    );
    let events = std::fs::read_to_string(t.run_folder().join("events.jsonl")).expect("events");
    let counts: Vec<&str> = events
        .lines()
        .filter(|l| l.contains("the responder faulted"))
        .collect();
    assert_eq!(counts.len(), 6, "{events}");
    println!("{}", counts[0]);
    assert!(!counts[0].contains("faulted 0 queries"), "{}", counts[0]);
    assert!(!counts[0].contains("relayed 0 others"), "{}", counts[0]);
    // The measured effect in every report format.
    for name in [
        "report.md",
        "report.html",
        "report.json",
        "report.junit.xml",
    ] {
        let text = std::fs::read_to_string(out.folder().join(name)).expect(name);
        for needle in [
            "nft redirect",
            "nxdomain for db.internal",
            "the responder faulted",
        ] {
            assert!(text.contains(needle), "{name} lacks `{needle}`:\n{text}");
        }
    }
}

#[test]
fn lab_sigkill_agent_during_dns_names_resolve_within_2s_then_its_restart_deletes_the_table() {
    if !can_run() {
        return;
    }
    let Some(mut lab) = Lab::with_resolver("h1", "h2") else {
        return;
    };
    let _server = Dnsmasq::start(&lab, "h2");
    let mut kept = KeptSocket::open(&lab);
    assert_eq!(kept.ask(), Some((0, 1)), "db.internal, before");
    let t = lab.test(&one_step(
        "lab-dns-agent-dies",
        "{names: [db.internal], answer: nxdomain}",
        "30s",
    ));
    let run = t.spawn_run();
    wait_applied(&t, "h1", Duration::from_secs(15));
    assert_eq!(getent(&lab, "db.internal"), None);
    // The socket's flow began before the fault: it is redirected too (rcode 3, NXDOMAIN).
    assert_eq!(kept.ask(), Some((3, 0)), "the kept socket's query, faulted");
    lab.kill_agent("h1");
    let killed = Instant::now();
    let (mut resolved, mut kept_resolved) = (None, None);
    while killed.elapsed() < Duration::from_secs(5)
        && (resolved.is_none() || kept_resolved.is_none())
    {
        if resolved.is_none() && getent(&lab, "db.internal").as_deref() == Some(DB) {
            resolved = Some(killed.elapsed());
        }
        if kept_resolved.is_none() && kept.ask() == Some((0, 1)) {
            kept_resolved = Some(killed.elapsed());
        }
        thread::sleep(Duration::from_millis(50));
    }
    let resolved = resolved.expect("db.internal resolves again after the agent's death");
    let kept_resolved = kept_resolved
        .expect("the kept socket's queries are answered again after the agent's death");
    println!(
        "agent SIGKILLed: db.internal resolves normally {resolved:?} after (getent), {kept_resolved:?} after on a kept socket (gate 2 s)"
    );
    for took in [resolved, kept_resolved] {
        assert!(
            took <= Duration::from_millis(2400),
            "the redirect outlived the agent by {took:?}"
        );
    }
    assert!(lab.has_chaos_table("h1"), "the table waits for the restart");
    let tcp = dig(&lab, &["+tcp", "db.internal"]);
    assert_eq!(tcp.answers, [DB], "{}", tcp.output);
    assert_lost(&run.wait());

    lab.restart_agent("h1");
    eventually(
        Duration::from_secs(5),
        "the restarted agent deletes the table",
        || (!lab.has_chaos_table("h1")).then_some(()),
    );
    assert_normal(&lab, "after the restart");
    assert_eq!(
        kept.ask(),
        Some((0, 1)),
        "the kept socket, after the restart"
    );
    assert!(
        lab.agent_sockets("h1").is_empty(),
        "{:?}",
        lab.agent_sockets("h1")
    );
}

#[test]
fn lab_sigkill_chaosctl_during_dns_the_agent_reverts_it_within_its_lease() {
    if !can_run() {
        return;
    }
    let Some(lab) = Lab::with_resolver("h1", "h2") else {
        return;
    };
    let _server = Dnsmasq::start(&lab, "h2");
    let t = lab.test(&one_step(
        "lab-dns-orphaned",
        "{names: [\"*.internal\"], answer: servfail}",
        "30s",
    ));
    let run = t.spawn_run();
    wait_applied(&t, "h1", Duration::from_secs(15));
    assert_eq!(dig(&lab, &["web.internal"]).status, "SERVFAIL");
    run.signal_group(Signal::SIGKILL);
    let killed = Instant::now();
    eventually(
        LEASE + Duration::from_secs(1),
        "the agent reverts the fault once the lease runs out",
        || (!lab.has_chaos_table("h1") && lab.agent_sockets("h1").is_empty()).then_some(()),
    );
    println!(
        "dns reverted {:?} after chaosctl's SIGKILL (lease 2s)",
        killed.elapsed()
    );
    let out = run.wait();
    assert_eq!(out.signal, Some(9), "{out:?}");
    assert_normal(&lab, "after the lease");
}

#[test]
fn dns_keys_are_checked_before_anything_runs() {
    for (fault, says) in [
        ("{answer: nxdomain}", "`dns` needs `names`"),
        (
            "{names: [db.internal]}",
            "`dns` needs an `answer`, a `delay`, or both",
        ),
        (
            "{names: [db.internal], answer: nxdomian}",
            "`nxdomian` is not a DNS answer",
        ),
        (
            "{names: [\"db internal\"], answer: nxdomain}",
            "`db internal` has ` `",
        ),
        (
            "{names: [db.internal], answer: {address: 10.9.9}}",
            "`10.9.9` is not an IPv4 or IPv6 address",
        ),
        (
            "{names: [db.internal], delay: 5m}",
            "delay `5m` is outside 1ms to 60s",
        ),
    ] {
        let t = Test::new()
            .scenario(&one_step("bad-dns", fault, "1s").replace("target: h1\n", "target: local\n"));
        let file = t.scenario_path().display().to_string();
        let out = t.cmd(&["validate", &file]);
        out.code(2);
        out.stderr_has(says);
    }
}

// ---- the resolver-outage drill ----------------------------------------------------------------

/// Failed requests of probe `probe` in step `step` of a report.
fn failed_in(report: &serde_json::Value, step: usize, probe: &str) -> (u64, u64) {
    let i = report["steps"][step]["impact"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["probe"] == probe)
        .unwrap_or_else(|| panic!("no impact of `{probe}` in step {step}: {report}"));
    (
        i["failed"].as_u64().unwrap_or(0),
        i["taken"].as_u64().unwrap_or(0),
    )
}

#[test]
fn lab_resolver_outage_drill_the_resolved_once_proxy_keeps_serving() {
    if !can_run()
        || !skip::unless_installed(&["/usr/sbin/nginx"], "nginx-light")
        || !skip::unless_installed(&["/usr/sbin/dnsmasq"], "dnsmasq-base")
    {
        return;
    }
    let Some(lab) = Lab::with_resolver("h1", "h2") else {
        return;
    };
    let drill = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/drills/resolver-outage/drill.yaml");
    let mut t = lab.test_file(drill);
    for (role, host) in [("PROXY", "h1"), ("DNS", "h2"), ("BACKEND", "h3")] {
        t = t
            .var(&format!("{role}_HOST"), host)
            .var(&format!("{role}_ADDR"), &lab.host(host).addr)
            .var(&format!("ON_{role}"), lab.exec_prefix(host));
    }
    let sandbox = t.path("sandbox");
    let t = t.var("DRILL_DIR", sandbox.display());
    let started = Instant::now();
    let out = t.run();
    println!(
        "resolver-outage drill: the run took {:?}",
        started.elapsed()
    );
    let r = out.report();
    chaos_tests::support::print_impact(&r.json);
    out.code(0);
    r.verdict("passed", None);
    for (step, what) in [(0, "SERVFAIL"), (1, "no answer")] {
        let (re_failed, re_taken) = failed_in(&r.json, step, "re-resolving proxy");
        let (once_failed, once_taken) = failed_in(&r.json, step, "resolved-once proxy");
        println!(
            "{what}: re-resolving proxy {re_failed} of {re_taken} requests failed, resolved-once proxy {once_failed} of {once_taken}"
        );
        assert!(
            re_failed >= 10,
            "{what}: the re-resolving proxy fails with its resolver"
        );
        assert_eq!(
            once_failed, 0,
            "{what}: the resolved-once proxy keeps serving"
        );
        assert!(once_taken >= 30, "{once_taken}");
    }
    assert!(!sandbox.exists(), "teardown left the sandbox");
}
