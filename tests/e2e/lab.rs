//! Runs against real `chaos-agent` daemons, each in a network namespace of a lab on this machine
//! (`chaos_tests::lab`): every fault kind on remote hosts, seen from another host while held and gone
//! after; what is reverted when chaosctl, an agent or the link between them dies; the agents'
//! token, policy and one-run-at-a-time checks; `chaosctl agents` and `revert --all --inventory`.
//!
//! Leases are 2 s and holds 1-3 s, so each test takes a few seconds.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use serde_json::Value;

use chaos_tests::eventually;
use chaos_tests::lab::{Echo, Lab, LabSleeper, echo, sh, wait_applied};
use chaos_tests::support::{Report, Test, assert_resumed, proc_state, unique};

/// How long a lab agent may take to revert a run's faults after the lease runs out (the spec's
/// "within lease + 1 s", measured from the controller's last word).
const LEASE: Duration = Duration::from_secs(2);

fn pattern(tag: &str) -> String {
    format!("^{tag}")
}

/// The `fault_applied` events of `host` so far, oldest first; waits for the `n`-th (from 1).
fn wait_applied_nth(t: &Test, host: &str, n: usize, within: Duration) -> Value {
    if n == 1 {
        return wait_applied(t, host, within);
    }
    let folder = t.run_folder();
    eventually(within, &format!("fault {n} applied on {host}"), || {
        chaos_tests::support::read_events(&folder.join("events.jsonl"))
            .into_iter()
            .filter(|e| e["kind"] == "fault_applied" && e["fields"]["host"] == host)
            .nth(n - 1)
    })
}

/// How long ago an event happened, by its `at` (wall clock).
fn age(event: &Value) -> Duration {
    let at =
        chrono::DateTime::parse_from_rfc3339(event["at"].as_str().expect("at")).expect("RFC 3339");
    let at = SystemTime::UNIX_EPOCH
        + Duration::from_millis(u64::try_from(at.timestamp_millis()).expect("after 1970"));
    SystemTime::now().duration_since(at).unwrap_or_default()
}

fn faults_left_hosts(r: &Report) -> Vec<String> {
    r.json["faults_left"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["host"].as_str().map(str::to_string))
        .collect()
}

// ---- 1. every fault kind on remote hosts ------------------------------------------------------

#[test]
fn lab_kill_pause_and_fill_disk_on_remote_hosts() {
    let Some(lab) = Lab::new() else { return };
    let (kill_tag, pause_tag) = (unique("lab-kill"), unique("lab-pause"));
    let mut doomed = [
        LabSleeper::spawn(&lab, "h1", &kill_tag),
        LabSleeper::spawn(&lab, "h1", &kill_tag),
    ];
    let paused = [
        LabSleeper::spawn(&lab, "h2", &pause_tag),
        LabSleeper::spawn(&lab, "h2", &pause_tag),
    ];
    let bystander = LabSleeper::spawn(&lab, "h2", &unique("lab-bystander"));
    let yaml = r#"version: 1
name: lab-process-faults
settings: {lease: 2s, every: 250ms, window: 500ms}
steady_state:
  - name: h3 reaches h1's agent
    on: h3
    tcp: {address: "${H1_ADDR}:7411"}
steps:
  - name: kill on h1
    target: h1
    fault: {kill: {process: {pattern: "${KILL}"}}}
    recover_within: 3s
  - name: pause on h2, fill h1's disk
    faults:
      - {target: h2, pause: {process: {pattern: "${PAUSE}"}}}
      - {target: h1, fill_disk: {path: "${FILL}", usage: 95%}}
    duration: 2s
    recover_within: 3s
"#;
    let h1 = lab.host("h1");
    let t = lab
        .test(yaml)
        .var("KILL", pattern(&kill_tag))
        .var("PAUSE", pattern(&pause_tag))
        .var("FILL", h1.fill_dir.display());
    let run = t.spawn_run();
    for s in &mut doomed {
        let pid = s.pid;
        let status = eventually(Duration::from_secs(15), "the h1 sleeper is killed", || {
            s.has_exited()
        });
        assert_eq!(status.signal(), Some(9), "pid {pid} ended by {status:?}");
    }
    wait_applied(&t, "h2", Duration::from_secs(15));
    wait_applied_nth(&t, "h1", 2, Duration::from_secs(5));
    // While held: both paused, h1's tmpfs at 95 % with our one file, the bystander untouched.
    for s in &paused {
        assert_eq!(proc_state(s.pid), Some('T'), "pid {} not stopped", s.pid);
    }
    let usage = h1.fill_usage_percent();
    assert!(usage >= 94.5, "h1's tmpfs is at {usage:.1} % while filled");
    assert_eq!(h1.fill_files().len(), 1, "{:?}", h1.fill_files());
    assert!(matches!(proc_state(bystander.pid), Some('S' | 'R')));

    let out = run.wait();
    out.code(0);
    let r = out.report();
    r.verdict("passed", None);
    // After: resumed, the fill file gone, nothing of ours left (the lab checks nft and iptables).
    assert_resumed(&paused.iter().map(|s| s.pid).collect::<Vec<_>>());
    assert!(h1.fill_files().is_empty(), "{:?}", h1.fill_files());
    assert!(h1.fill_usage_percent() < 5.0);
    let faults = r.faults();
    let hosts: Vec<&str> = faults.iter().filter_map(|f| f["host"].as_str()).collect();
    assert_eq!(hosts, ["h1", "h2", "h1"], "{faults:#?}");
    for f in &faults[1..] {
        assert_eq!(f["verified"], true, "{f}");
        assert!(f["reverted_at"].is_string(), "{f}");
    }
    let probes = r.json["probes"].to_string();
    assert!(
        probes.contains("h3"),
        "the on: h3 probe was sampled on h3: {probes}"
    );
}

#[test]
fn lab_drop_reject_and_silent_drop_of_all_traffic_spare_the_controller() {
    let Some(lab) = Lab::new() else { return };
    let server = Echo::start(&lab, "h1");
    let mut before = lab
        .connect("h2", server.addr, Duration::from_secs(1))
        .expect("h2 connects to h1 before the faults");
    echo(&mut before, Duration::from_secs(1)).expect("an echo before the faults");
    let yaml = r#"version: 1
name: lab-drop
settings: {lease: 2s}
steps:
  - name: reject everything on h1
    target: h1
    fault: {drop: {mode: reject}}
    duration: 3s
    recover_within: 1s
  - name: drop everything on h1
    target: h1
    fault: {drop: {}}
    duration: 3s
    recover_within: 1s
"#;
    let t = lab.test(yaml);
    let run = t.spawn_run();

    wait_applied(&t, "h1", Duration::from_secs(15));
    assert!(lab.has_chaos_table("h1"));
    let err = lab
        .connect("h2", server.addr, Duration::from_secs(1))
        .expect_err("a new connection while rejected");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    let cut = echo(&mut before, Duration::from_secs(1)).expect_err("the established connection");
    assert!(
        matches!(
            cut.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "the established connection was not reset: {cut}"
    );
    assert_eq!(lab.ping("h2", "h1", 2, "0.1").received, 0);
    // The controller still reaches the agent: a new connection from chaosctl's address.
    let agents = Test::new().cmd(&[
        "agents",
        "--inventory",
        &lab.inventory.display().to_string(),
        "--output",
        "json",
    ]);
    agents.code(0);
    let rows: Value = serde_json::from_str(&agents.stdout).expect("agents JSON");
    let h1 = rows
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["host"] == "h1")
        .expect("h1");
    assert_eq!(h1["reachable"], true, "{h1}");
    assert!(h1["active_run"].is_string(), "{h1}");

    wait_applied_nth(&t, "h1", 2, Duration::from_secs(10));
    let err = lab
        .connect("h2", server.addr, Duration::from_millis(500))
        .expect_err("a new connection while dropped");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ),
        "a dropped connect should hang, not fail at once: {err}"
    );
    assert_eq!(lab.ping("h2", "h1", 1, "0.1").received, 0);

    let out = run.wait();
    out.code(0);
    out.report().verdict("passed", None);
    assert!(!lab.has_chaos_table("h1"), "{}", lab.nft_tables("h1"));
    let mut after = lab
        .connect("h2", server.addr, Duration::from_secs(1))
        .expect("h2 connects to h1 after the faults");
    echo(&mut after, Duration::from_secs(1)).expect("an echo after the faults");
    assert_eq!(lab.ping("h2", "h1", 2, "0.1").received, 2);
}

#[test]
fn lab_loss_and_latency_seen_from_another_host() {
    let Some(lab) = Lab::new() else { return };
    let base = lab.ping("h2", "h1", 10, "0.02");
    assert_eq!(base.received, 10, "{base:?}");
    let yaml = r#"version: 1
name: lab-loss-latency
settings: {lease: 2s}
steps:
  - name: lose half of h1's packets
    target: h1
    fault: {loss: {share: 50%}}
    duration: 3s
    recover_within: 1s
  - name: delay h1 by 50 ms
    target: h1
    fault: {latency: {delay: 50ms}}
    duration: 3s
    recover_within: 1s
"#;
    let t = lab.test(yaml);
    let run = t.spawn_run();

    wait_applied(&t, "h1", Duration::from_secs(15));
    let lossy = lab.ping("h2", "h1", 60, "0.02");
    let share = lossy.lost_share();
    println!(
        "loss 50% on h1 (one way): {lossy:?}, {:.0} % lost",
        share * 100.0
    );
    assert!(
        (0.25..=0.75).contains(&share),
        "lost {:.0} % of pings, expected about 50 %",
        share * 100.0
    );

    wait_applied_nth(&t, "h1", 2, Duration::from_secs(10));
    assert!(lab.has_chaos_chain("h1"), "{}", lab.iptables("h1"));
    let slow = lab.ping("h2", "h1", 10, "0.05");
    let added = slow.avg_ms - base.avg_ms;
    println!(
        "latency 50ms on h1: RTT {:.2} ms, baseline {:.2} ms, added {added:.2} ms",
        slow.avg_ms, base.avg_ms
    );
    assert_eq!(slow.received, 10, "{slow:?}");
    assert!(
        (40.0..=80.0).contains(&added),
        "added {added:.2} ms, expected about 50 ms"
    );

    let out = run.wait();
    out.code(0);
    let r = out.report();
    r.verdict("passed", None);
    let mechanisms: Vec<String> = r
        .faults()
        .iter()
        .map(|f| f["mechanism"].to_string())
        .collect();
    println!("mechanisms: {mechanisms:?}");
    assert!(!lab.has_chaos_table("h1"), "{}", lab.nft_tables("h1"));
    assert!(!lab.has_chaos_chain("h1"), "{}", lab.iptables("h1"));
    let after = lab.ping("h2", "h1", 10, "0.02");
    assert_eq!(after.received, 10, "{after:?}");
    assert!(
        after.avg_ms < base.avg_ms + 20.0,
        "still slow after the revert: {after:?} vs {base:?}"
    );
}

// ---- 2. whatever dies ---------------------------------------------------------------------------

#[test]
fn lab_sigkill_chaosctl_every_agent_reverts_within_its_lease() {
    let Some(lab) = Lab::new() else { return };
    let tag = unique("lab-orphan");
    let sleeper = LabSleeper::spawn(&lab, "h1", &tag);
    let yaml = r#"version: 1
name: lab-orphaned
settings: {lease: 2s}
steps:
  - name: pause on h1, reject on h2
    faults:
      - {target: h1, pause: {process: {pattern: "${PAT}"}}}
      - {target: h2, drop: {mode: reject, to: {hosts: ["${H3_ADDR}"]}}}
    duration: 30s
"#;
    let t = lab.test(yaml).var("PAT", pattern(&tag));
    let run = t.spawn_run();
    wait_applied(&t, "h1", Duration::from_secs(15));
    wait_applied(&t, "h2", Duration::from_secs(5));
    assert_eq!(proc_state(sleeper.pid), Some('T'));
    assert!(lab.has_chaos_table("h2"));
    assert_eq!(lab.ping("h2", "h3", 1, "0.1").received, 0);

    run.signal_group(Signal::SIGKILL);
    let killed = Instant::now();
    eventually(
        LEASE + Duration::from_secs(1),
        "both agents revert once the lease runs out",
        || (proc_state(sleeper.pid) != Some('T') && !lab.has_chaos_table("h2")).then_some(()),
    );
    println!(
        "reverted {:?} after chaosctl's SIGKILL (lease 2s)",
        killed.elapsed()
    );
    let out = run.wait();
    assert_eq!(out.signal, Some(9), "{out:?}");
    assert_eq!(lab.ping("h2", "h3", 1, "0.1").received, 1);
    // The agent writes its audit line after the revert it records, so it may come a moment
    // after the state read back above.
    for h in ["h1", "h2"] {
        eventually(
            Duration::from_secs(5),
            &format!("{h}'s audit to record lease_expired"),
            || {
                let audit = lab.host(h).audit();
                audit
                    .iter()
                    .any(|a| a["event"] == "lease_expired")
                    .then_some(())
            },
        );
    }
}

#[test]
fn lab_stress_ends_with_the_lease_and_dies_with_its_agent() {
    let Some(mut lab) = Lab::new() else { return };
    let yaml = r#"version: 1
name: lab-stress
settings: {lease: 2s}
steps:
  - name: burn on h1
    target: h1
    fault: {stress: {cpu: {workers: 2, load: 50%}}}
    duration: 30s
"#;
    // chaosctl SIGKILLed: the agent reverts at the lease's end and kills the workers.
    let t = lab.test(yaml);
    let run = t.spawn_run();
    let applied = wait_applied(&t, "h1", Duration::from_secs(15));
    println!("{applied:#}");
    let workers = lab.stress_workers("h1");
    assert_eq!(workers.len(), 2, "{applied}");
    run.signal_group(Signal::SIGKILL);
    let killed = Instant::now();
    eventually(
        LEASE + Duration::from_secs(1),
        "h1's agent kills its workers once the lease runs out",
        || lab.stress_workers("h1").is_empty(),
    );
    println!(
        "workers gone {:?} after chaosctl's SIGKILL (lease 2s)",
        killed.elapsed()
    );
    let out = run.wait();
    assert_eq!(out.signal, Some(9), "{out:?}");

    // The agent SIGKILLed: its workers die with it; its restart finds the journal and cleans up.
    let t = lab.test(yaml);
    let run = t.spawn_run();
    wait_applied(&t, "h1", Duration::from_secs(15));
    assert_eq!(lab.stress_workers("h1").len(), 2);
    lab.kill_agent("h1");
    let killed = Instant::now();
    eventually(
        Duration::from_secs(1),
        "the workers die with their agent",
        || lab.stress_workers("h1").is_empty(),
    );
    println!(
        "workers gone {:?} after the agent's SIGKILL",
        killed.elapsed()
    );
    run.signal_group(Signal::SIGKILL);
    let _ = run.wait();
    lab.restart_agent("h1");
    eventually(
        Duration::from_secs(5),
        "h1's restart records the fault it reverted from its journal",
        || {
            lab.host("h1")
                .audit()
                .iter()
                .any(|a| a["event"] == "recovered")
        },
    );
}

#[test]
fn lab_sigkill_agent_during_latency_fails_open_and_its_restart_removes_the_rule() {
    let Some(mut lab) = Lab::new() else { return };
    let base = lab.ping("h2", "h1", 5, "0.02");
    let yaml = r#"version: 1
name: lab-latency-agent-dies
settings: {lease: 2s}
steps:
  - name: delay h1
    target: h1
    fault: {latency: {delay: 50ms}}
    duration: 30s
"#;
    let t = lab.test(yaml);
    let run = t.spawn_run();
    wait_applied(&t, "h1", Duration::from_secs(15));
    let slow = lab.ping("h2", "h1", 3, "0.05");
    assert!(slow.avg_ms > base.avg_ms + 40.0, "{slow:?} vs {base:?}");

    lab.kill_agent("h1");
    let killed = Instant::now();
    // Fail open: the rule stays, but nobody holds the queue, so packets pass undelayed.
    let fast = eventually(Duration::from_secs(2), "pings undelayed", || {
        let p = lab.ping("h2", "h1", 3, "0.02");
        (p.received == 3 && p.avg_ms < base.avg_ms + 20.0).then_some(p)
    });
    println!(
        "after the agent's SIGKILL: RTT {:.2} ms (baseline {:.2}) within {:?}",
        fast.avg_ms,
        base.avg_ms,
        killed.elapsed()
    );
    assert!(
        lab.has_chaos_chain("h1"),
        "the NFQUEUE rule is left to the next start"
    );

    let out = run.wait();
    assert_lost(&out, "h1");

    lab.restart_agent("h1");
    eventually(
        Duration::from_secs(5),
        "the restarted agent removes the rule",
        || (!lab.has_chaos_chain("h1")).then_some(()),
    );
    // Its audit line follows the revert it records.
    eventually(Duration::from_secs(5), "`recovered` in h1's audit", || {
        let audit = lab.host("h1").audit();
        audit
            .iter()
            .any(|a| a["event"] == "recovered")
            .then_some(())
    });
}

#[test]
fn lab_sigkill_agent_during_drop_the_kernel_ends_it_at_its_end_time() {
    let Some(mut lab) = Lab::new() else { return };
    let server = Echo::start(&lab, "h1");
    let yaml = r#"version: 1
name: lab-drop-agent-dies
settings: {lease: 2s}
steps:
  - name: drop everything on h1 for 2s
    target: h1
    fault: {drop: {mode: reject}}
    duration: 2s
"#;
    let t = lab.test(yaml);
    let run = t.spawn_run();
    let applied = wait_applied(&t, "h1", Duration::from_secs(15));
    lab.kill_agent("h1");
    let since_applied = age(&applied);
    lab.connect("h2", server.addr, Duration::from_millis(300))
        .expect_err("still dropped right after the agent died");
    // Nobody is left to revert it: the kernel ends it (hold 2 s + 1 s margin, whole seconds).
    let start = Instant::now();
    eventually(Duration::from_secs(6), "traffic flows again", || {
        lab.connect("h2", server.addr, Duration::from_millis(200))
            .ok()
            .map(|_| ())
    });
    let flowed = since_applied + start.elapsed();
    println!("the rule expired {flowed:?} after it was applied (hold 2s, agent SIGKILLed)");
    assert!(
        flowed >= Duration::from_millis(1900) && flowed <= Duration::from_millis(4500),
        "traffic flowed again {flowed:?} after the apply; expected at the end (2 s) + margin"
    );
    assert!(
        lab.has_chaos_table("h1"),
        "the expired table is left to the next start"
    );

    let out = run.wait();
    assert_lost(&out, "h1");

    lab.restart_agent("h1");
    eventually(
        Duration::from_secs(5),
        "the restarted agent deletes the table",
        || (!lab.has_chaos_table("h1")).then_some(()),
    );
}

#[test]
fn lab_agent_cut_off_from_the_controller_reverts_on_its_own() {
    let Some(lab) = Lab::new() else { return };
    let (tag1, tag2) = (unique("lab-cut1"), unique("lab-cut2"));
    let s1 = LabSleeper::spawn(&lab, "h1", &tag1);
    let s2 = LabSleeper::spawn(&lab, "h2", &tag2);
    let yaml = r#"version: 1
name: lab-cut-off
settings: {lease: 2s}
steps:
  - name: pause on h1 and h2
    faults:
      - {target: h1, pause: {process: {pattern: "${P1}"}}}
      - {target: h2, pause: {process: {pattern: "${P2}"}}}
    duration: 30s
"#;
    let t = lab
        .test(yaml)
        .var("P1", pattern(&tag1))
        .var("P2", pattern(&tag2));
    let run = t.spawn_run();
    wait_applied(&t, "h1", Duration::from_secs(15));
    wait_applied(&t, "h2", Duration::from_secs(5));
    assert_eq!(proc_state(s1.pid), Some('T'));

    lab.cut_controller_from("h1");
    let cut = Instant::now();
    eventually(
        LEASE + Duration::from_secs(1),
        "h1's agent reverts on its own",
        || (proc_state(s1.pid) == Some('S')).then_some(()),
    );
    println!(
        "h1 reverted {:?} after being cut off (lease 2s)",
        cut.elapsed()
    );
    let out = run.wait();
    println!("the run ended {:?} after the cut", cut.elapsed());
    assert_lost(&out, "h1");
    assert_resumed(&[s2.pid]);
    let r = out.report();
    let h2 = r
        .faults()
        .into_iter()
        .find(|f| f["host"] == "h2")
        .cloned()
        .expect("h2's fault");
    assert!(h2["reverted_at"].is_string(), "chaosctl reverted h2: {h2}");
    // Its audit line follows the revert it records.
    eventually(
        Duration::from_secs(5),
        "`lease_expired` in h1's audit",
        || {
            let audit = lab.host("h1").audit();
            audit
                .iter()
                .any(|a| a["event"] == "lease_expired")
                .then_some(())
        },
    );
}

/// The run ended `error`, cause `agent_lost`, and (exit 6) lists `host`'s fault as left.
#[track_caller]
fn assert_lost(out: &chaos_tests::support::Output, host: &str) {
    out.code(6);
    let r = out.report();
    r.verdict("error", Some("agent_lost"));
    assert_eq!(faults_left_hosts(&r), [host], "{}", r.json["faults_left"]);
    assert!(r.has_event("agent_lost"));
}

// ---- 3. security --------------------------------------------------------------------------------

#[test]
fn lab_requests_without_the_token_are_refused_401_and_audited() {
    let Some(lab) = Lab::new() else { return };
    let h1 = lab.host("h1");
    let url = format!("{}/v1/health", h1.agent_url());
    let cacert = lab.cert.display().to_string();
    let status = |extra: &[&str]| {
        let mut argv = vec!["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"];
        argv.extend(["--max-time", "5", "--cacert", &cacert]);
        argv.extend(extra);
        argv.push(&url);
        sh(&argv)
    };
    let token = std::fs::read_to_string(&lab.token).expect("token");
    let right = format!("Authorization: Bearer {}", token.trim());
    assert_eq!(status(&[]), "401", "no token");
    assert_eq!(
        status(&["-H", "Authorization: Bearer not-the-token"]),
        "401",
        "a wrong token"
    );
    assert_eq!(status(&["-H", &right]), "200", "the right token");
    let refused: Vec<Value> = h1
        .audit()
        .into_iter()
        .filter(|a| a["status"] == 401)
        .collect();
    assert_eq!(refused.len(), 2, "{refused:#?}");
    for a in &refused {
        assert_eq!(a["path"], "/v1/health", "{a}");
        assert_eq!(a["token_ok"], false, "{a}");
        assert_eq!(a["outcome"], "refused", "{a}");
        assert!(
            a["remote"]
                .as_str()
                .is_some_and(|r| r.starts_with(&lab.controller_addr())),
            "{a}"
        );
    }
}

#[test]
fn lab_policy_violation_fails_the_run_with_the_reason_and_applies_nothing() {
    let Some(lab) = Lab::with_policies(&[("h1", "fill_paths: [/srv/chaos-only]\n")]) else {
        return;
    };
    let tag = unique("lab-policy");
    let sleeper = LabSleeper::spawn(&lab, "h2", &tag);
    let yaml = r#"version: 1
name: lab-policy
settings: {lease: 2s}
steps:
  - name: pause h2, fill h1 outside its policy
    faults:
      - {target: h2, pause: {process: {pattern: "${PAT}"}}}
      - {target: h1, fill_disk: {path: "${FILL}", usage: 90%}}
    duration: 1s
"#;
    let h1 = lab.host("h1");
    let t = lab
        .test(yaml)
        .var("PAT", pattern(&tag))
        .var("FILL", h1.fill_dir.display());
    let out = t.run();
    out.code(5);
    let r = out.report();
    r.verdict("error", Some("preflight"));
    let reason = r.reason();
    assert!(
        reason.contains("outside the policy") && reason.contains("/srv/chaos-only"),
        "the 403 reason is not in the report: {reason}"
    );
    assert!(!r.has_event("fault_applied"));
    assert!(h1.fill_files().is_empty());
    assert_ne!(proc_state(sleeper.pid), Some('T'));
    assert!(
        h1.audit()
            .iter()
            .any(|a| a["status"] == 403 && a["outcome"] == "refused"),
        "{:#?}",
        h1.audit()
    );
}

#[test]
fn lab_second_run_is_refused_while_another_holds_a_fault_on_the_agent() {
    let Some(lab) = Lab::new() else { return };
    let (tag_a, tag_b) = (unique("lab-first"), unique("lab-second"));
    let a = LabSleeper::spawn(&lab, "h1", &tag_a);
    let b = LabSleeper::spawn(&lab, "h1", &tag_b);
    let yaml = r#"version: 1
name: lab-one-run
settings: {lease: 2s}
steps:
  - name: pause on h1
    target: h1
    fault: {pause: {process: {pattern: "${PAT}"}}}
    duration: ${HOLD}
"#;
    let first_t = lab.test(yaml).var("PAT", pattern(&tag_a)).var("HOLD", "3s");
    let first = first_t.spawn_run();
    wait_applied(&first_t, "h1", Duration::from_secs(15));
    let second_t = lab.test(yaml).var("PAT", pattern(&tag_b)).var("HOLD", "1s");
    let second = second_t.run();
    second.code(5);
    let r = second.report();
    r.verdict("error", Some("preflight"));
    let first_id = first_t
        .run_folder()
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .expect("run id");
    println!("second run refused: {}", r.reason());
    assert!(
        r.reason().contains(&first_id) || r.reason().contains("409"),
        "the reason names neither the holding run nor the conflict: {}",
        r.reason()
    );
    assert!(!r.has_event("fault_applied"));
    assert_eq!(
        proc_state(b.pid),
        Some('S'),
        "the second run paused its target"
    );
    assert_eq!(proc_state(a.pid), Some('T'));
    first.wait().code(0);
    assert_resumed(&[a.pid]);
}

// ---- 4. agents and revert --all ---------------------------------------------------------------

#[test]
fn lab_agents_lists_every_agent_and_revert_all_reverts_a_held_fault() {
    let Some(lab) = Lab::new() else { return };
    let inventory = lab.inventory.display().to_string();
    let admin = Test::new();
    let text = admin.cmd(&["agents", "--inventory", &inventory]);
    text.code(0);
    for h in &lab.hosts {
        text.stdout_has(&format!("{}  {}  ok  version ", h.name, h.agent_url()));
    }
    text.stdout_has("can: ");
    let json = admin.cmd(&["agents", "--inventory", &inventory, "--output", "json"]);
    json.code(0);
    let rows: Value = serde_json::from_str(&json.stdout).expect("JSON");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{rows:#?}");
    for row in rows {
        assert_eq!(row["reachable"], true, "{row}");
        assert!(
            row["version"].as_str().is_some_and(|v| !v.is_empty()),
            "{row}"
        );
        let kinds = row["capabilities"]["kinds"].to_string();
        for kind in ["kill", "pause", "fill_disk", "drop", "loss", "latency"] {
            assert!(kinds.contains(kind), "{kind} missing from {kinds}");
        }
    }

    let tag = unique("lab-break-glass");
    let sleeper = LabSleeper::spawn(&lab, "h1", &tag);
    let yaml = r#"version: 1
name: lab-break-glass
settings: {lease: 2s}
steps:
  - name: pause on h1
    target: h1
    fault: {pause: {process: {pattern: "${PAT}"}}}
    duration: 3s
"#;
    let t = lab.test(yaml).var("PAT", pattern(&tag));
    let run = t.spawn_run();
    wait_applied(&t, "h1", Duration::from_secs(15));
    assert_eq!(proc_state(sleeper.pid), Some('T'));
    let revert = admin.cmd(&["revert", "--all", "--inventory", &inventory]);
    revert.code(0);
    revert.stdout_has("on h1");
    assert_resumed(&[sleeper.pid]);
    let out = run.wait();
    println!(
        "the run whose fault was reverted under it ended {:?}: {}",
        out.code,
        out.report().reason()
    );
    assert_resumed(&[sleeper.pid]);
}
