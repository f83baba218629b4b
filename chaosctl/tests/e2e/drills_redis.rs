//! The Redis drills of issue 5 (`scenarios/drills/redis-sentinel`, `redis-split-brain`), run as
//! they ship against Debian's real `redis-server` and `redis-sentinel`, on 127.0.0.1 with free
//! ports and a drill folder of the test's own. The assertions are the facts the reports give, in
//! wide bands around what was measured here (never exact numbers): the recovery time after the
//! master's SIGKILL, the failed writes, and the lost acknowledged writes.
//!
//! FIXME(issue 5): the issue asks for these drills in the lab of network-namespace hosts with an
//! agent on each; for now they run on 127.0.0.1 through the local agent.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::support::{Test, assert_none_left, cmdline, free_port, pids_containing};

/// The drills' ports, and what must not outlive the test: every Redis process on those ports and
/// every writer of the drill folder is SIGKILLed on drop, whatever the test did.
struct Sandbox {
    ports: [u16; 5],
    dir: PathBuf,
}

impl Sandbox {
    fn new(test: &Test) -> Sandbox {
        let mut ports = [0; 5];
        for i in 0..ports.len() {
            // Five distinct ports; a port handed out twice would make the sandbox fail to start.
            ports[i] = loop {
                let p = free_port();
                if !ports[..i].contains(&p) {
                    break p;
                }
            };
        }
        Sandbox {
            ports,
            dir: test.path("drill"),
        }
    }

    /// The test with this sandbox's `--var`s.
    fn vars(&self, test: Test) -> Test {
        let [master, replica, s1, s2, s3] = self.ports;
        test.var("DRILL_DIR", self.dir.display())
            .var("REDIS_MASTER_PORT", master)
            .var("REDIS_REPLICA_PORT", replica)
            .var("SENTINEL_PORT_1", s1)
            .var("SENTINEL_PORT_2", s2)
            .var("SENTINEL_PORT_3", s3)
    }

    fn needles(&self) -> Vec<String> {
        let mut needles: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        needles.push(self.dir.display().to_string());
        needles
    }

    /// Asserts that the run left nothing running.
    fn assert_all_stopped(&self) {
        for needle in self.needles() {
            assert_none_left(&needle);
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for needle in self.needles() {
            for pid in pids_containing(&needle) {
                let ours = cmdline(pid)
                    .is_some_and(|c| c.starts_with("redis-") || c.contains("chaos-redis-writer"));
                if ours {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
    }
}

/// Whether Redis and Sentinel are installed; prints why the test skips when not.
fn redis_or_skip() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in ["redis-server", "redis-sentinel"] {
        if !std::env::split_paths(&path).any(|d| d.join(tool).is_file()) {
            println!(
                "skipped: the Redis drills need `{tool}` (apt-get install redis-server redis-sentinel redis-tools)"
            );
            return false;
        }
    }
    true
}

fn drill(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/drills")
        .join(name)
        .join("drill.yaml")
}

/// The writers' figures, as the teardown printed them into the report folder: one line per
/// client, `CLIENT: {json}`.
fn writers(folder: &Path) -> Vec<(String, Value)> {
    let log = fs::read_to_string(folder.join("teardown-1.log")).expect("teardown-1.log");
    log.lines()
        .filter_map(|l| {
            let (client, json) = l.split_once(": ")?;
            Some((client.to_string(), serde_json::from_str(json).ok()?))
        })
        .collect()
}

fn writer<'a>(writers: &'a [(String, Value)], client: &str) -> &'a Value {
    &writers
        .iter()
        .find(|(c, _)| c == client)
        .unwrap_or_else(|| panic!("no figures of `{client}` in teardown-1.log: {writers:?}"))
        .1
}

fn num(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("`{field}` is not a number in {v}"))
}

#[test]
fn redis_sentinel_drill_fails_over_within_seconds_and_loses_no_acknowledged_write() {
    if !redis_or_skip() {
        return;
    }
    let test = Test::new().scenario_file(drill("redis-sentinel"));
    let sandbox = Sandbox::new(&test);
    let test = sandbox.vars(test);
    let out = test.run();
    out.code(0);
    assert!(
        out.elapsed < Duration::from_secs(30),
        "the drill took {:?}",
        out.elapsed
    );
    let report = out.report();
    report.verdict("passed", None);
    let step = report.step(0);
    // Measured here: 2.5 s from the SIGKILL to the first sample of a holding window.
    let recovery = step["recovery_ms"].as_u64().expect("recovery_ms");
    assert!((1000..=8000).contains(&recovery), "recovery {recovery} ms");
    let killed = &report.faults()[0];
    assert_eq!(killed["verified"], true, "{killed}");

    let writers = writers(&out.folder());
    let client = writer(&writers, "sentinel-client");
    // Measured here: writes down 2.3 s, 23 failed at 10 writes/s, none lost.
    assert_eq!(num(client, "lost"), 0, "{client}");
    let failed = num(client, "failed");
    assert!((5..=80).contains(&failed), "failed writes: {client}");
    let outage = num(client, "longest_outage_ms");
    assert!((1000..=8000).contains(&outage), "outage: {client}");
    assert!(num(client, "acknowledged") > 0, "{client}");
    // The sentinels now name the former replica.
    assert_eq!(
        client["master"],
        format!("127.0.0.1:{}", sandbox.ports[1]),
        "{client}"
    );
    sandbox.assert_all_stopped();
}

#[test]
fn redis_split_brain_drill_reports_the_acknowledged_writes_a_client_without_timeouts_lost() {
    if !redis_or_skip() {
        return;
    }
    let test = Test::new().scenario_file(drill("redis-split-brain"));
    let sandbox = Sandbox::new(&test);
    let test = sandbox.vars(test);
    let out = test.run();
    out.code(1);
    assert!(
        out.elapsed < Duration::from_secs(40),
        "the drill took {:?}",
        out.elapsed
    );
    let report = out.report();
    report.verdict("deviated", Some("hypothesis"));

    let writers = writers(&out.folder());
    // The client that asks the sentinels on every try fails over and loses nothing (measured
    // here: 2.1-2.8 s without writes, 23-31 failed).
    let aware = writer(&writers, "sentinel-client");
    assert_eq!(num(aware, "lost"), 0, "{aware}");
    let outage = num(aware, "longest_outage_ms");
    assert!((1000..=8000).contains(&outage), "outage: {aware}");
    assert!((5..=90).contains(&num(aware, "failed")), "{aware}");
    // The client with no timeouts wrote to the old master after it woke up; the sentinels
    // demoted it and those writes went (measured here: 102-103 lost per run). The exact number
    // depends on when the sentinels demote the old master; that some are lost is reliable.
    let sticky = writer(&writers, "sticky-client");
    let lost = num(sticky, "lost");
    assert!(lost > 0, "the no-timeout client lost nothing: {sticky}");

    // The number lands in the report: its reason, and report.md.
    let said = format!("lost {lost} acknowledged writes");
    let reason = report.reason();
    assert!(
        reason.contains("`no acknowledged write lost (client with no timeouts)`")
            && reason.contains("acknowledged writes (of "),
        "reason: {reason}"
    );
    assert!(
        !reason.contains("(client that asks the sentinels)"),
        "reason: {reason}"
    );
    let md = fs::read_to_string(out.folder().join("report.md")).expect("report.md");
    assert!(md.contains("acknowledged writes (of "), "report.md:\n{md}");
    // The probe's last sample and the teardown's figures were taken moments apart: the writer may
    // have lost a few more in between, never fewer.
    let reported: u64 = reason
        .split(": lost ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in the reason: {reason}"));
    assert!(
        reported > 0 && reported <= lost,
        "reason says {reported}, teardown says {lost} ({said})"
    );
    sandbox.assert_all_stopped();
}

#[test]
fn the_redis_drills_validate_even_where_redis_is_not_installed() {
    let test = Test::new();
    for name in ["redis-sentinel", "redis-split-brain"] {
        let path = drill(name).display().to_string();
        test.cmd(&["validate", &path]).code(0).stdout_has(": ok");
    }
}
