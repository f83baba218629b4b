//! `inside:` against real Podman containers: a network fault made in one container's network
//! namespace is felt by traffic to that container, not by a second container running the same
//! program, and leaves nothing behind in the namespace; a container stopped mid-fault makes the
//! revert say its namespace is gone. Each container is wired by the test to an observer namespace
//! of its own (a veth pair), from where it is pinged.

use std::process::Command;
use std::time::Duration;

use chaos_tests::lab::{Lab, wait_applied};
use chaos_tests::ping::ping_from;
use chaos_tests::podman::{self, Container};
use chaos_tests::support::{Sleeper, Test, Tmpfs, pattern, read_events, unique};

/// A namespace of the test's own, deleted (with what is in it) when dropped.
struct Observer(String);

impl Observer {
    fn new(tag: &str) -> Observer {
        let name = format!("chaos-obs-{tag}");
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name}");
        Observer(name)
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The iptables rules of a container's namespace, as `iptables -S` lists them.
fn rules_in(c: &Container) -> String {
    let out = Command::new("nsenter")
        .args(["-t", &c.pid.to_string(), "-n", "iptables", "-S"])
        .output()
        .expect("nsenter");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const LATENCY: &str = r#"version: 1
name: latency-inside-a-container
steps:
  - name: slow what container a receives
    target: local
    fault:
      latency: {delay: 150ms}
      inside: {process: {container: "${A}"}}
    duration: ${HOLD}
    recover_within: 1s
"#;

#[test]
fn latency_inside_one_container_is_felt_there_only_and_leaves_nothing_behind() {
    if !podman::available() {
        return;
    }
    let tag = unique("inside");
    let a = Container::run(&format!("{tag}-a"), &[], &["/bin/sleep", "300"]);
    let b = Container::run(&format!("{tag}-b"), &[], &["/bin/sleep", "300"]);
    let observer = Observer::new(&tag);
    let (addr_a, addr_b) = (a.wire_to(&observer.0, 1), b.wire_to(&observer.0, 2));
    assert!(ping_from(&observer.0, &addr_a, 3, "0.2").avg_ms < 20.0);

    let t = Test::new()
        .scenario(LATENCY)
        .var("A", &a.name)
        .var("HOLD", "3s");
    let run = t.spawn_run();
    t.wait_for_event("fault_applied", Duration::from_secs(20));
    let slow = ping_from(&observer.0, &addr_a, 5, "0.2");
    let fast = ping_from(&observer.0, &addr_b, 5, "0.2");
    println!("during: a {:.1} ms, b {:.1} ms", slow.avg_ms, fast.avg_ms);
    assert!(slow.received >= 4 && slow.min_ms >= 140.0, "{slow:?}");
    assert!(fast.received == 5 && fast.max_ms < 50.0, "{fast:?}");
    assert!(rules_in(&a).contains("NFQUEUE"), "{}", rules_in(&a));
    assert!(!rules_in(&b).contains("NFQUEUE"), "{}", rules_in(&b));

    let out = run.wait();
    out.code(0);
    let r = out.report();
    let fault = &r.step(0)["faults"][0];
    let affected = fault["affected"].to_string();
    assert!(
        affected.contains(&format!(
            "netns {} (via pid {} (sleep) in container {} ({}))",
            a.netns(),
            a.pid,
            &a.id[..12],
            a.name
        )),
        "{affected}"
    );
    assert!(!affected.contains(&b.netns().to_string()), "{affected}");
    assert_eq!(fault["verified"], true, "{fault}");
    let after = ping_from(&observer.0, &addr_a, 3, "0.2");
    assert!(after.received == 3 && after.max_ms < 50.0, "{after:?}");
    assert!(!rules_in(&a).contains("CHAOS"), "{}", rules_in(&a));
}

#[test]
fn a_container_stopped_mid_fault_makes_the_revert_say_its_namespace_is_gone() {
    if !podman::available() {
        return;
    }
    let tag = unique("inside-gone");
    let a = Container::run(&format!("{tag}-a"), &[], &["/bin/sleep", "300"]);
    let observer = Observer::new(&tag);
    a.wire_to(&observer.0, 1);
    let netns = a.netns();
    let t = Test::new()
        .scenario(LATENCY)
        .var("A", &a.name)
        .var("HOLD", "2s");
    let run = t.spawn_run();
    t.wait_for_event("fault_applied", Duration::from_secs(20));
    a.kill();
    let out = run.wait();
    out.code(0);
    let events = read_events(&out.folder().join("events.jsonl"));
    let reverted = events
        .iter()
        .find(|e| e["kind"] == "fault_reverted")
        .expect("a fault_reverted event")
        .to_string();
    assert!(
        reverted.contains(&format!("netns {netns}")) && reverted.contains("the namespace is gone"),
        "{reverted}"
    );
}

#[test]
fn inside_refuses_a_process_of_the_hosts_own_namespace_and_non_network_kinds() {
    if !chaos_tests::skip::unless_root("a latency fault's preflight reads iptables") {
        return;
    }
    let tag = unique("inside-host");
    let _sleeper = Sleeper::spawn(&tag);
    let t = Test::new().var("PAT", pattern(&tag)).scenario(
        r#"version: 1
name: inside-the-host
steps:
  - name: slow the host by mistake
    target: local
    fault:
      latency: {delay: 10ms}
      inside: {process: {pattern: "${PAT}"}}
    duration: 1s
"#,
    );
    let out = t.run();
    out.code(5);
    let reason = out.report().reason();
    assert!(
        reason.contains("own network namespace (the host's)"),
        "{reason}"
    );

    let t = Test::new().scenario(
        r#"version: 1
name: inside-a-kill
steps:
  - name: kill inside
    target: local
    fault:
      kill: {process: {name: nothing-here}}
      inside: {process: {container: x}}
"#,
    );
    let out = t.cmd(&["validate", &t.scenario_path().display().to_string()]);
    out.code(2);
    out.stderr_has("`inside` is for the network kinds, `stress` and `fill_disk`; the fault of step `kill inside` is `kill`");
}

/// SIGKILL of chaosctl (whose built-in agent made the fault) during an `inside:` latency: the
/// delay stops at once (the queue fails open without its holder), and the next chaosctl command
/// reverts the fault from the journal inside the container's namespace, where nothing is left.
#[test]
fn sigkill_of_chaosctl_during_inside_fails_open_and_the_next_command_cleans_the_namespace() {
    if !podman::available() {
        return;
    }
    let tag = unique("inside-kill");
    let a = Container::run(&format!("{tag}-a"), &[], &["/bin/sleep", "300"]);
    let observer = Observer::new(&tag);
    let addr = a.wire_to(&observer.0, 1);
    let t = Test::new()
        .scenario(LATENCY)
        .var("A", &a.name)
        .var("HOLD", "60s");
    let run = t.spawn_run();
    t.wait_for_event("fault_applied", Duration::from_secs(20));
    assert!(ping_from(&observer.0, &addr, 2, "0.2").min_ms >= 140.0);
    run.signal(nix::sys::signal::Signal::SIGKILL);
    let out = run.wait();
    assert_eq!(out.signal, Some(9), "{out:?}");
    let open = ping_from(&observer.0, &addr, 3, "0.2");
    assert!(
        open.received == 3 && open.max_ms < 50.0,
        "not failing open: {open:?}"
    );
    assert!(rules_in(&a).contains("CHAOS"), "{}", rules_in(&a));

    let runs = t.cmd(&["runs"]);
    runs.code(0);
    runs.stderr_has("reverted");
    assert!(!rules_in(&a).contains("CHAOS"), "{}", rules_in(&a));
}

const FILL: &str = r#"version: 1
name: fill-inside-a-container
steps:
  - name: fill the volume of container a
    target: local
    fault:
      fill_disk: {path: /data, usage: 80%}
      inside: {process: {container: "${A}"}}
    duration: 3s
    recover_within: 1s
"#;

/// `fill_disk` with `inside:` fills the path as the container sees it (its volume, a tmpfs the
/// test mounted), journals the fill file as the host sees it, and deletes it at the end even
/// though the container was stopped meanwhile: a pod restarted on that volume finds it as before.
#[test]
fn a_fill_inside_a_containers_volume_fills_it_and_is_deleted_after_the_container_is_gone() {
    if !podman::available() {
        return;
    }
    let tag = unique("inside-fill");
    let volume = Tmpfs::mount(64);
    let mount = format!("{}:/data", volume.dir.display());
    let a = Container::run(&format!("{tag}-a"), &["-v", &mount], &["/bin/sleep", "300"]);
    let before = volume.usage_percent();
    let t = Test::new().scenario(FILL).var("A", &a.name);
    let run = t.spawn_run();
    t.wait_for_event("fault_applied", Duration::from_secs(20));
    let during = volume.usage_percent();
    let files = volume.fill_files();
    println!("volume {before:.1}% used before, {during:.1}% during: {files:?}");
    assert!((78.0..=82.0).contains(&during), "{during}% used");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        !std::path::Path::new("/data").join(&files[0]).exists(),
        "the host's own /data was filled"
    );
    a.kill();
    let out = run.wait();
    out.code(0);
    assert!(volume.fill_files().is_empty(), "{:?}", volume.fill_files());
    let report = out.report();
    let affected = report.step(0)["faults"][0]["affected"].to_string();
    assert!(
        affected.contains(&volume.dir.display().to_string()),
        "{affected}"
    );
}

/// SIGKILL of a remote `chaos-agent` (a lab host's, in the host PID namespace like a DaemonSet's)
/// during an `inside:` latency: the delay stops at once (the queue fails open), and the agent's
/// restart reverts the fault from its journal inside the container's namespace.
#[test]
fn lab_sigkill_of_the_agent_during_inside_its_restart_cleans_the_namespace() {
    if !podman::available() {
        return;
    }
    let Some(mut lab) = Lab::new() else { return };
    let tag = unique("inside-agent");
    let a = Container::run(&format!("{tag}-a"), &[], &["/bin/sleep", "300"]);
    let observer = Observer::new(&tag);
    let addr = a.wire_to(&observer.0, 1);
    let t = lab
        .test(
            r#"version: 1
name: lab-latency-inside
settings: {lease: 60s}
steps:
  - name: slow what container a receives, from h1's agent
    target: h1
    fault:
      latency: {delay: 150ms}
      inside: {process: {container: "${A}"}}
    duration: 60s
"#,
        )
        .var("A", &a.name);
    let run = t.spawn_run();
    wait_applied(&t, "h1", Duration::from_secs(20));
    assert!(ping_from(&observer.0, &addr, 2, "0.2").min_ms >= 140.0);
    lab.kill_agent("h1");
    let open = ping_from(&observer.0, &addr, 3, "0.2");
    assert!(
        open.received == 3 && open.max_ms < 50.0,
        "not failing open: {open:?}"
    );
    assert!(rules_in(&a).contains("CHAOS"), "{}", rules_in(&a));
    run.signal(nix::sys::signal::Signal::SIGINT);
    let _ = run.wait();

    lab.restart_agent("h1");
    chaos_tests::eventually(
        Duration::from_secs(10),
        "the restarted agent cleans the container's namespace",
        || (!rules_in(&a).contains("CHAOS")).then_some(()),
    );
}

/// `http` with `inside:`: the redirect and the agent's proxy are made in the container's network
/// namespace, so requests to the container's own HTTP server (busybox httpd) are aborted, while
/// the same server program in a second container answers.
#[test]
fn http_inside_one_container_aborts_its_requests_only() {
    if !podman::available() {
        return;
    }
    let tag = unique("inside-http");
    let serve = ["/bin/httpd", "-f", "-p", "8080", "-h", "/"];
    let a = Container::run(&format!("{tag}-a"), &[], &serve);
    let b = Container::run(&format!("{tag}-b"), &[], &serve);
    let observer = Observer::new(&tag);
    let (addr_a, addr_b) = (a.wire_to(&observer.0, 1), b.wire_to(&observer.0, 2));
    let status = |addr: &str| {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &observer.0,
                "curl",
                "-s",
                "-o",
                "/dev/null",
            ])
            .args(["-w", "%{http_code}", "--max-time", "3"])
            .arg(format!("http://{addr}:8080/bin/"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    chaos_tests::eventually(Duration::from_secs(5), "httpd answers in a", || {
        (status(&addr_a) != "000").then_some(())
    });
    let before = status(&addr_a);
    let t = Test::new()
        .scenario(
            r#"version: 1
name: http-inside-a-container
steps:
  - name: abort what container a's server is asked
    target: local
    fault:
      http: {port: 8080, abort: {status: 503}}
      inside: {process: {container: "${A}", name: httpd}}
    duration: 3s
    recover_within: 1s
"#,
        )
        .var("A", &a.name);
    let run = t.spawn_run();
    t.wait_for_event("fault_applied", Duration::from_secs(20));
    let (during_a, during_b) = (status(&addr_a), status(&addr_b));
    println!("a {before} before, {during_a} during; b {during_b}");
    assert_eq!(during_a, "503");
    assert_eq!(during_b, before, "the other container's server was touched");
    let out = run.wait();
    out.code(0);
    assert_eq!(status(&addr_a), before);
    let nft = Command::new("nsenter")
        .args(["-t", &a.pid.to_string(), "-n", "nft", "list", "tables"])
        .output()
        .expect("nft");
    assert!(!String::from_utf8_lossy(&nft.stdout).contains("chaos_"));
}

/// A dnsmasq in the observer's namespace, answering `db.internal` on the given addresses; killed
/// when dropped.
struct Dnsmasq(std::process::Child);

impl Dnsmasq {
    fn start(observer: &Observer, listen: &[&str], pidfile: &std::path::Path) -> Dnsmasq {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &observer.0, "dnsmasq", "--no-daemon"]);
        for addr in listen {
            cmd.arg(format!("--listen-address={addr}"));
        }
        cmd.args(["--bind-interfaces", "--no-resolv", "--no-hosts"])
            .arg("--address=/db.internal/10.9.9.9")
            .arg(format!("--pid-file={}", pidfile.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        Dnsmasq(cmd.spawn().expect("dnsmasq"))
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `dns` with `inside:`: the redirect and the responder are in one container's network
/// namespace, and its resolvers come from that container's own resolv.conf: its queries get the
/// fault's answer, a second container's the real one.
#[test]
fn dns_inside_one_container_answers_its_queries_only() {
    if !podman::available() || !chaos_tests::skip::unless_installed(&["dnsmasq"], "dnsmasq-base") {
        return;
    }
    let tag = unique("inside-dns");
    let resolv = |n: u8| format!("nameserver 10.77.{n}.1\n");
    let (ra, rb) = (resolv(1), resolv(2));
    let sleep = ["/bin/sleep", "300"];
    let a = Container::run_with_files(
        &format!("{tag}-a"),
        &[],
        &sleep,
        &[("etc/resolv.conf", &ra)],
    );
    let b = Container::run_with_files(
        &format!("{tag}-b"),
        &[],
        &sleep,
        &[("etc/resolv.conf", &rb)],
    );
    let observer = Observer::new(&tag);
    a.wire_to(&observer.0, 1);
    b.wire_to(&observer.0, 2);
    let work = tempfile::tempdir().unwrap();
    let _dnsmasq = Dnsmasq::start(
        &observer,
        &["10.77.1.1", "10.77.2.1"],
        &work.path().join("pid"),
    );
    let lookup = |c: &Container| c.exec(&["nslookup", "db.internal"]);
    chaos_tests::eventually(
        Duration::from_secs(10),
        "dnsmasq answers container a",
        || lookup(&a).contains("10.9.9.9").then_some(()),
    );
    let t = Test::new()
        .scenario(
            r#"version: 1
name: dns-inside-a-container
steps:
  - name: db.internal does not exist for container a
    target: local
    fault:
      dns: {names: [db.internal], answer: nxdomain}
      inside: {process: {container: "${A}"}}
    duration: 3s
    recover_within: 1s
"#,
        )
        .var("A", &a.name);
    let run = t.spawn_run();
    t.wait_for_event("fault_applied", Duration::from_secs(20));
    let (during_a, during_b) = (lookup(&a), lookup(&b));
    println!("during: a {during_a:?}, b {during_b:?}");
    assert!(during_a.contains("NXDOMAIN"), "{during_a}");
    assert!(during_b.contains("10.9.9.9"), "{during_b}");
    let out = run.wait();
    out.code(0);
    assert!(lookup(&a).contains("10.9.9.9"), "{}", lookup(&a));
    let nft = Command::new("nsenter")
        .args(["-t", &a.pid.to_string(), "-n", "nft", "list", "tables"])
        .output()
        .expect("nft");
    assert!(!String::from_utf8_lossy(&nft.stdout).contains("chaos_"));
}
