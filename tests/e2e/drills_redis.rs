//! The Redis drills (`scenarios/drills/redis-*`), run as they ship against Debian's
//! real `redis-server` and `redis-sentinel`: once on 127.0.0.1 with the drill's defaults (free
//! ports, a drill folder of the test's own), and otherwise in a lab of three network-namespace
//! hosts with a `chaos-agent` on each (`chaos_tests::lab`), each server on its host by the drills'
//! role variables (`<ROLE>_HOST`, `<ROLE>_ADDR`, `ON_<ROLE>`), the fault done by the agent of the
//! faulted server's host, the writer and the probes on the controller. The assertions are the
//! facts the reports give, in wide bands around what was measured here (never exact numbers).
//! Lab tests skip, saying why, where the lab cannot be built (not root, tools missing).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use chaos_tests::lab::Lab;
use chaos_tests::skip;
use chaos_tests::support::{
    Output, Report, Test, assert_none_left, cmdline, free_port, pids_containing,
};

/// The server roles of the sentinel sandbox, in the order of `Sandbox::ports`, and the lab host
/// each runs on: a real deployment's placement, one sentinel per host.
const ROLES: [(&str, &str); 5] = [
    ("MASTER", "h1"),
    ("REPLICA", "h2"),
    ("SENTINEL_1", "h1"),
    ("SENTINEL_2", "h2"),
    ("SENTINEL_3", "h3"),
];

/// The drills' addresses and ports, and what must not outlive the test: every Redis process on
/// those and every writer of the drill folder is SIGKILLed on drop, whatever the test did.
struct Sandbox {
    ports: [u16; 5],
    /// Each role's address: 127.0.0.1, or its lab host's.
    addrs: [String; 5],
    /// Each role's lab host and `ip netns exec` prefix (empty on 127.0.0.1).
    on: Vec<(String, String)>,
    dir: PathBuf,
}

impl Sandbox {
    /// Every server on 127.0.0.1, the drills' defaults, with free ports.
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
            addrs: std::array::from_fn(|_| "127.0.0.1".to_string()),
            on: Vec::new(),
            dir: test.path("drill"),
        }
    }

    /// Every server on its lab host (`ROLES`), started there with `ON_<ROLE>`.
    fn in_lab(test: &Test, lab: &Lab) -> Sandbox {
        let mut sandbox = Sandbox::new(test);
        for (i, (_, host)) in ROLES.iter().enumerate() {
            sandbox.addrs[i] = lab.host(host).addr.clone();
            sandbox.on.push((host.to_string(), lab.exec_prefix(host)));
        }
        sandbox
    }

    fn addr(&self, i: usize) -> String {
        format!("{}:{}", self.addrs[i], self.ports[i])
    }

    /// The test with this sandbox's `--var`s.
    fn vars(&self, test: Test) -> Test {
        let [master, replica, s1, s2, s3] = self.ports;
        let mut test = test
            .var("DRILL_DIR", self.dir.display())
            .var("REDIS_MASTER_PORT", master)
            .var("REDIS_REPLICA_PORT", replica)
            .var("SENTINEL_PORT_1", s1)
            .var("SENTINEL_PORT_2", s2)
            .var("SENTINEL_PORT_3", s3);
        for (i, (role, _)) in ROLES.iter().enumerate() {
            if let Some((host, prefix)) = self.on.get(i) {
                test = test
                    .var(&format!("{role}_HOST"), host)
                    .var(&format!("{role}_ADDR"), &self.addrs[i])
                    .var(&format!("ON_{role}"), prefix);
            }
        }
        test
    }

    fn needles(&self) -> Vec<String> {
        let mut needles: Vec<String> = (0..self.ports.len()).map(|i| self.addr(i)).collect();
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

/// Whether Redis and Sentinel are installed; skips the test when not.
fn redis_or_skip() -> bool {
    skip::unless_installed(
        &["redis-server", "redis-sentinel"],
        "redis-server redis-sentinel redis-tools",
    )
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

/// A lab for a Redis drill, or `None` (having said why) when Redis or the lab is missing here.
fn lab_or_skip() -> Option<Lab> {
    if !redis_or_skip() {
        return None;
    }
    Lab::new()
}

/// Runs a drill, which must end with exit `code` within `limit`: its output and report.
fn run_drill(test: &Test, code: i32, limit: Duration) -> (Output, Report) {
    let out = test.run();
    out.code(code);
    assert!(out.elapsed < limit, "the drill took {:?}", out.elapsed);
    let report = out.report();
    chaos_tests::support::print_impact(&report.json);
    (out, report)
}

/// The kill's record: done by the agent of `host`, and verified.
fn assert_faulted_on(report: &Report, host: &str) {
    let fault = &report.faults()[0];
    assert_eq!(fault["host"], host, "{fault}");
    assert_eq!(fault["verified"], true, "{fault}");
}

/// Runs the sentinel drill in `sandbox` and asserts what its report says.
fn sentinel_drill(test: Test, sandbox: &Sandbox, fault_host: &str) {
    let test = sandbox.vars(test);
    let (out, report) = run_drill(&test, 0, Duration::from_secs(30));
    report.verdict("passed", None);
    let step = report.step(0);
    // Measured: 2.3-2.8 s from the SIGKILL to the first sample of a holding window.
    let recovery = step["recovery_ms"].as_u64().expect("recovery_ms");
    assert!((1000..=8000).contains(&recovery), "recovery {recovery} ms");
    assert_faulted_on(&report, fault_host);
    // The drill's promise, `max_outage: 10s`, was judged and kept; the report's own figure of
    // the writes' outage is the one its docs quote.
    assert_eq!(step["objectives"]["max_outage_ms"], 10_000, "{step}");
    assert_eq!(
        step["objectives"]["misses"],
        serde_json::json!([]),
        "{step}"
    );
    let writes = step["impact"]
        .as_array()
        .expect("impact")
        .iter()
        .find(|i| i["probe"] == "writes through the master the sentinels name succeed")
        .expect("the writes' impact");
    let outage = writes["longest_outage_ms"]
        .as_u64()
        .expect("longest_outage_ms");
    assert!(
        (1000..=8000).contains(&outage),
        "outage {outage} ms: {writes}"
    );
    assert_eq!(writes["restored"], true, "{writes}");

    let writers = writers(&out.folder());
    let client = writer(&writers, "sentinel-client");
    println!(
        "measured ({fault_host}): run {:?}, recovery {recovery} ms, writer {client}",
        out.elapsed
    );
    // Measured: writes down 2.2-2.3 s, 22-23 failed at 10 writes/s, none lost.
    assert_eq!(num(client, "lost"), 0, "{client}");
    let failed = num(client, "failed");
    assert!((5..=80).contains(&failed), "failed writes: {client}");
    let outage = num(client, "longest_outage_ms");
    assert!((1000..=8000).contains(&outage), "outage: {client}");
    assert!(num(client, "acknowledged") > 0, "{client}");
    // The sentinels now name the former replica.
    assert_eq!(client["master"], sandbox.addr(1), "{client}");
    sandbox.assert_all_stopped();
}

#[test]
fn redis_sentinel_drill_as_shipped_fails_over_on_127_0_0_1() {
    if !redis_or_skip() {
        return;
    }
    let test = Test::new().scenario_file(drill("redis-sentinel"));
    let sandbox = Sandbox::new(&test);
    sentinel_drill(test, &sandbox, "local");
}

#[test]
fn lab_redis_sentinel_drill_fails_over_within_seconds_and_loses_no_acknowledged_write() {
    let Some(lab) = lab_or_skip() else {
        return;
    };
    let test = lab.test_file(drill("redis-sentinel"));
    let sandbox = Sandbox::in_lab(&test, &lab);
    sentinel_drill(test, &sandbox, "h1");
}

#[test]
fn lab_redis_split_brain_drill_reports_the_acknowledged_writes_a_client_without_timeouts_lost() {
    let Some(lab) = lab_or_skip() else {
        return;
    };
    let test = lab.test_file(drill("redis-split-brain"));
    let sandbox = Sandbox::in_lab(&test, &lab);
    let test = sandbox.vars(test);
    let (out, report) = run_drill(&test, 1, Duration::from_secs(40));
    report.verdict("deviated", Some("hypothesis"));
    assert_faulted_on(&report, "h1");

    let writers = writers(&out.folder());
    // The client that asks the sentinels on every try fails over and loses nothing (measured:
    // 2.1-2.8 s without writes, 23-31 failed).
    let aware = writer(&writers, "sentinel-client");
    assert_eq!(num(aware, "lost"), 0, "{aware}");
    let outage = num(aware, "longest_outage_ms");
    assert!((1000..=8000).contains(&outage), "outage: {aware}");
    assert!((5..=90).contains(&num(aware, "failed")), "{aware}");
    // The client with no timeouts wrote to the old master after it woke up; the sentinels
    // demoted it and those writes went (measured: 102-103 lost per run). The exact number
    // depends on when the sentinels demote the old master; that some are lost is reliable.
    let sticky = writer(&writers, "sticky-client");
    let lost = num(sticky, "lost");
    println!(
        "measured: run {:?}, sentinel client {aware}, sticky client {sticky}",
        out.elapsed
    );
    assert!(lost > 0, "the no-timeout client lost nothing: {sticky}");
    assert_eq!(sticky["master"], sandbox.addr(1), "{sticky}");

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
    for name in [
        "redis-sentinel",
        "redis-split-brain",
        "redis-partition",
        "redis-full-disk",
    ] {
        let path = drill(name).display().to_string();
        test.cmd(&["validate", &path]).code(0).stdout_has(": ok");
    }
    {
        let path = drill("redis-sentinel").with_file_name("drill-rejoin.yaml");
        let path = path.display().to_string();
        test.cmd(&["validate", &path]).code(0).stdout_has(": ok");
    }
}

/// The failed samples of the probe `name`, as (time, reason).
fn failed_samples(report: &Report, name: &str) -> Vec<(String, String)> {
    let probe = report.json["probes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no probe `{name}` in the report"));
    probe["samples"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["ok"] == false)
        .map(|s| (s["at"].to_string(), s["reason"].to_string()))
        .collect()
}

#[test]
fn lab_redis_partition_drill_keeps_writing_without_failover_and_the_replica_catches_up() {
    let Some(lab) = lab_or_skip() else {
        return;
    };
    let test = lab.test_file(drill("redis-partition"));
    let sandbox = Sandbox::in_lab(&test, &lab);
    let test = sandbox.vars(test);
    let (out, report) = run_drill(&test, 0, Duration::from_secs(30));
    report.verdict("passed", None);
    // The cut is made by the replica's agent, to the master's host (h1, also sentinel 1's) and
    // sentinel 3's.
    assert_faulted_on(&report, "h2");
    let fault = &report.faults()[0];
    let affected = fault["affected"].to_string();
    for h in ["h1", "h3"] {
        assert!(affected.contains(&lab.host(h).addr), "{fault}");
    }
    // The cut took: the replica fell behind while it lasted (measured: 252 ms to impact, 12
    // samples of 16 behind), and caught up soon after (measured: 1.4 s, TCP's retransmission).
    let behind = failed_samples(&report, "the replica is in sync");
    assert!(
        behind.len() >= 4 && behind.iter().all(|(_, r)| r.contains("bytes behind")),
        "{behind:?}"
    );
    let step = report.step(0);
    let recovery = step["recovery_ms"].as_u64().expect("recovery_ms");
    assert!((200..=8000).contains(&recovery), "recovery {recovery} ms");
    // No failover, and the sentinels never disagreed: the only sentinel that lost the master is
    // the one beside the replica, without a quorum.
    for probe in [
        "the sentinels agree on the master they started with",
        "writes through the master the sentinels name succeed",
        "no acknowledged write lost",
    ] {
        let failed = failed_samples(&report, probe);
        assert!(failed.is_empty(), "`{probe}` failed: {failed:?}");
    }

    let writers = writers(&out.folder());
    let client = writer(&writers, "sentinel-client");
    println!(
        "measured: run {:?}, impact {} ms, recovery {recovery} ms, {} samples behind, writer {client}",
        out.elapsed,
        step["impact_ms"],
        behind.len()
    );
    assert_eq!(num(client, "lost"), 0, "{client}");
    assert_eq!(num(client, "failed"), 0, "{client}");
    assert_eq!(client["master"], sandbox.addr(0), "{client}");
    sandbox.assert_all_stopped();
}

#[test]
fn the_redis_partition_drill_refuses_to_run_with_everything_on_one_address() {
    if !redis_or_skip() {
        return;
    }
    let test = Test::new().scenario_file(drill("redis-partition"));
    let sandbox = Sandbox::new(&test);
    // Bound: the report folder lives in the test's folder.
    let test = sandbox.vars(test);
    let out = test.run();
    out.code(5);
    let report = out.report();
    report.verdict("error", Some("setup"));
    let log = fs::read_to_string(out.folder().join("setup-1.log")).unwrap_or_default();
    assert!(log.contains("nothing to partition"), "setup-1.log: {log}");
    assert!(!sandbox.dir.exists(), "the sandbox was made");
}

/// A report time (RFC 3339) as UNIX ms.
fn unix_ms(at: &Value) -> u64 {
    let at = chrono::DateTime::parse_from_rfc3339(at.as_str().expect("a time")).expect("RFC 3339");
    u64::try_from(at.timestamp_millis()).expect("after 1970")
}

/// Runs the full-disk drill in a lab: Redis on h1, in the agent's network and mount namespaces,
/// so that it keeps its data in the agent's 16 MiB tmpfs, which the agent fills. (`ip netns
/// exec` would give Redis a mount namespace of its own, and a tmpfs mounted from the root
/// namespace does not reach the agent's: `/` is a private mount here.)
/// The test (its folder holds the report), the run, and the writer's figures.
fn full_disk_drill(lab: &Lab, stop_writes: &str) -> (Test, Output, Value) {
    let h1 = lab.host("h1");
    let test = lab.test_file(drill("redis-full-disk"));
    let port = free_port();
    let dir = test.path("drill");
    let test = test
        .var("DRILL_DIR", dir.display())
        .var("REDIS_MASTER_PORT", port)
        .var("MASTER_HOST", "h1")
        .var("MASTER_ADDR", &h1.addr)
        .var(
            "ON_MASTER",
            format!("nsenter --target {} --mount --net", h1.agent_pid()),
        )
        .var("REDIS_DATA_DIR", h1.fill_dir.display())
        .var("REDIS_DATA_TMPFS", "none")
        .var("STOP_WRITES_ON_BGSAVE_ERROR", stop_writes);
    let out = test.run();
    assert!(
        out.elapsed < Duration::from_secs(30),
        "the drill took {:?}",
        out.elapsed
    );
    let report = out.report();
    chaos_tests::support::print_impact(&report.json);
    assert_faulted_on(&report, "h1");
    // The disk was full, and Redis's snapshot failed for it.
    let redis_log = fs::read_to_string(out.folder().join("setup-2.log")).expect("setup-2.log");
    assert!(
        redis_log.contains("No space left on device")
            && redis_log.contains("Background saving error"),
        "Redis's log:\n{redis_log}"
    );
    // The fill is gone, and everything stopped.
    assert!(h1.fill_files().is_empty(), "{:?}", h1.fill_files());
    assert!(
        h1.fill_usage_percent() < 50.0,
        "{}",
        h1.fill_usage_percent()
    );
    assert_none_left(&format!("{}:{port}", h1.addr));
    assert_none_left(&dir.display().to_string());
    let writers = writers(&out.folder());
    let client = writer(&writers, "client").clone();
    assert_eq!(num(&client, "lost"), 0, "{client}");
    assert_eq!(client["master"], format!("{}:{port}", h1.addr), "{client}");
    (test, out, client)
}

#[test]
fn redis_full_disk_drill_as_shipped_fills_a_tmpfs_of_its_own_and_unmounts_it() {
    if !redis_or_skip() || !skip::unless_root("the full-disk drill mounts a tmpfs") {
        return;
    }
    let test = Test::new().scenario_file(drill("redis-full-disk"));
    let port = free_port();
    let data = test.path("data");
    let dir = test.path("drill");
    let test = test
        .var("DRILL_DIR", dir.display())
        .var("REDIS_DATA_DIR", data.display())
        .var("REDIS_MASTER_PORT", port);
    let out = test.run();
    out.code(1);
    let report = out.report();
    chaos_tests::support::print_impact(&report.json);
    report.verdict("deviated", Some("hypothesis"));
    assert!(report.reason().contains("MISCONF"), "{}", report.reason());
    let teardown = fs::read_to_string(out.folder().join("teardown-1.log")).expect("teardown");
    assert!(
        teardown.contains(&format!("unmounted the tmpfs at {}", data.display())),
        "{teardown}"
    );
    let mounts = fs::read_to_string("/proc/self/mounts").expect("mounts");
    assert!(
        !mounts.contains(&data.display().to_string()),
        "still mounted: {mounts}"
    );
    let writers = writers(&out.folder());
    let client = writer(&writers, "client");
    println!("measured: run {:?}, writer {client}", out.elapsed);
    assert_eq!(num(client, "lost"), 0, "{client}");
    assert!((20..=130).contains(&num(client, "failed")), "{client}");
    assert_none_left(&format!("127.0.0.1:{port}"));
}

#[test]
fn lab_redis_full_disk_drill_reports_how_long_redis_refused_writes() {
    let Some(lab) = lab_or_skip() else {
        return;
    };
    let (_test, out, client) = full_disk_drill(&lab, "yes");
    out.code(1);
    let report = out.report();
    report.verdict("deviated", Some("hypothesis"));
    let reason = report.reason();
    assert!(
        reason.contains("`writes never down for more than 1 s, no acknowledged write lost`")
            && reason.contains("writes down for ")
            && reason.contains("MISCONF"),
        "reason: {reason}"
    );
    let first = client["longest_outage_first_error"].as_str().unwrap_or("");
    assert!(first.starts_with("MISCONF"), "{client}");
    // Measured: writes refused 5.9-6.0 s for a 5 s fill (59-60 failed), from 0.5-1.25 s after the fill
    // (the next `save 1 1`) to up to 5 s after the revert (Redis retries a failed save every 5 s).
    let outage = num(&client, "longest_outage_ms");
    assert!((3000..=12000).contains(&outage), "outage: {client}");
    let failed = num(&client, "failed_in_longest_outage");
    assert!((20..=130).contains(&failed), "{client}");
    let reverted = unix_ms(&report.faults()[0]["reverted_at"]);
    let back = num(&client, "longest_outage_end_ms").saturating_sub(reverted);
    assert!(
        back <= 7000,
        "writes back {back} ms after the revert: {client}"
    );
    println!(
        "measured: run {:?}, impact {} ms, writes back {back} ms after the revert, writer {client}",
        out.elapsed,
        report.step(0)["impact_ms"]
    );
}

#[test]
fn lab_redis_full_disk_drill_passes_with_stop_writes_on_bgsave_error_off() {
    let Some(lab) = lab_or_skip() else {
        return;
    };
    // Writes go on while the snapshots fail: the drill passes, and only Redis's log (and
    // `rdb_last_bgsave_status:err`) says that nothing is persisted.
    let (_test, out, client) = full_disk_drill(&lab, "no");
    out.code(0);
    out.report().verdict("passed", None);
    assert_eq!(num(&client, "failed"), 0, "{client}");
    println!("measured: run {:?}, writer {client}", out.elapsed);
}

/// The sentinel drill's variant where a supervisor restarts the master `after` its kill.
fn rejoin_drill(lab: &Lab, after: &str) -> (Test, Sandbox) {
    let test = lab.test_file(drill("redis-sentinel").with_file_name("drill-rejoin.yaml"));
    let sandbox = Sandbox::in_lab(&test, lab);
    let test = sandbox.vars(test).var("RESTART_AFTER", after);
    (test, sandbox)
}

/// When the probe `name` passed again after its last failure, as UNIX ms.
fn passing_again(report: &Report, name: &str) -> Option<u64> {
    let probe = report.json["probes"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)?;
    let samples = probe["samples"].as_array()?;
    let last_failed = samples.iter().rposition(|s| s["ok"] == false)?;
    samples.get(last_failed + 1).map(|s| unix_ms(&s["at"]))
}

#[test]
fn lab_redis_rejoin_drill_old_master_restarted_becomes_a_replica_in_sync() {
    let Some(lab) = lab_or_skip() else {
        return;
    };
    let (test, sandbox) = rejoin_drill(&lab, "5");
    let (out, report) = run_drill(&test, 0, Duration::from_secs(40));
    report.verdict("passed", None);
    assert_faulted_on(&report, "h1");
    // From the SIGKILL to the old master, restarted 5 s later, being a replica of the new master,
    // link up and caught up (measured: 15.8 s; the sentinels turn it around ~10 s after it is back).
    let killed = unix_ms(&report.faults()[0]["applied_at"]);
    let rejoined = passing_again(
        &report,
        "every other server is a replica in sync with the master",
    )
    .expect("the old master never was a replica in sync");
    let rejoin = rejoined.saturating_sub(killed);
    assert!((7000..=28000).contains(&rejoin), "rejoin {rejoin} ms");
    let redis_log = fs::read_to_string(out.folder().join("setup-2.log")).expect("setup-2.log");
    assert!(
        redis_log.contains(&format!("REPLICAOF {} enabled", sandbox.addr(1))),
        "the old master was never told to replicate the new one:\n{redis_log}"
    );
    let writers = writers(&out.folder());
    let client = writer(&writers, "sentinel-client");
    println!(
        "measured: run {:?}, recovery {} ms, rejoin {rejoin} ms after the kill, writer {client}",
        out.elapsed,
        report.step(0)["recovery_ms"]
    );
    assert_eq!(num(client, "lost"), 0, "{client}");
    assert_eq!(client["master"], sandbox.addr(1), "{client}");
    sandbox.assert_all_stopped();
}

#[test]
fn lab_redis_rejoin_drill_a_restart_faster_than_the_failover_empties_the_data_set() {
    let Some(lab) = lab_or_skip() else {
        return;
    };
    // Debian's unit restarts Redis 100 ms after it dies (`Restart=always`). With no snapshot the
    // master comes back empty before the sentinels see it down (1 s), no failover happens, and the
    // replica syncs the empty data set: every write acknowledged before the kill is gone.
    let (test, sandbox) = rejoin_drill(&lab, "0.1");
    let test = test.var("REJOIN_WITHIN", "5s");
    let out = test.run();
    out.code(1);
    let report = out.report();
    report.verdict("deviated", Some("hypothesis"));
    let reason = report.reason();
    assert!(
        reason.contains("`no acknowledged write lost`") && reason.contains("acknowledged writes"),
        "reason: {reason}"
    );
    let writers = writers(&out.folder());
    let client = writer(&writers, "sentinel-client");
    println!("measured: run {:?}, writer {client}", out.elapsed);
    // No failover: the sentinels still name the first master.
    assert_eq!(client["master"], sandbox.addr(0), "{client}");
    // Lost: the writes from the very first (measured: 8 of 8 acknowledged before the kill).
    assert!(num(client, "lost") >= 3, "{client}");
    assert_eq!(client["lost_first"][0], 0, "{client}");
    assert!(num(client, "failed") <= 10, "{client}");
    sandbox.assert_all_stopped();
}
