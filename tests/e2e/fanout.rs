//! The run's limit on calls to agents in flight (`settings.max_in_flight`), through the built
//! chaosctl against a fleet of stand-in agents that answer each call after a delay and record
//! when it came ([`chaos_tests::fake_agent`]): the limit holds over every fan-out, and an abort
//! while injections wait for a slot starts none of them and reverts every one applied.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use chaos_tests::eventually;
use chaos_tests::fake_agent::FakeFleet;
use chaos_tests::support::Test;

const HOSTS: usize = 12;

/// One step pausing a process on every host of the fleet for `hold`.
fn scenario(fleet: &FakeFleet, t: &Test, settings: &str, hold: &str) -> String {
    let token = t.write("agent.token", "fanout-token-0123456789");
    format!(
        "version: 1\nname: fanout\nhosts:\n{}targets:\n  fleet: {{hosts: [{}]}}\nsettings: {{max_hosts: {HOSTS}{settings}}}\nsteps:\n  - name: pause everywhere\n    target: fleet\n    fault: {{pause: {{process: {{name: fanout-nothing}}}}}}\n    duration: {hold}\n",
        fleet.hosts_yaml(&token),
        fleet
            .agents
            .iter()
            .map(|(h, _)| h.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[test]
fn no_more_calls_than_max_in_flight_reach_the_agents_at_once() {
    let fleet = FakeFleet::start(HOSTS, Duration::from_millis(100));
    let t = Test::new();
    let yaml = scenario(&fleet, &t, ", max_in_flight: 4", "300ms");
    let t = t.scenario(&yaml);
    t.run().code(0);
    assert_eq!(fleet.calls_of("apply").len(), HOSTS);
    assert_eq!(fleet.calls_of("revert").len(), HOSTS);
    assert!(fleet.peak() <= 4, "{} calls at once", fleet.peak());
    // Three quarters of the limit for new work; the fan-out still runs in parallel.
    assert_eq!(fleet.peak_of("preflight"), 3);
    assert_eq!(fleet.peak_of("apply"), 3);
    assert!(fleet.peak_of("revert") >= 3, "reverts use the whole limit");

    // Without the setting (512) the whole fleet is called at once.
    let fleet = FakeFleet::start(HOSTS, Duration::from_millis(100));
    let t = Test::new();
    let yaml = scenario(&fleet, &t, "", "300ms");
    let t = t.scenario(&yaml);
    t.run().code(0);
    assert_eq!(fleet.peak_of("apply"), HOSTS);
}

#[test]
fn an_abort_starts_no_queued_injection_and_reverts_every_applied_one() {
    let fleet = FakeFleet::start(HOSTS, Duration::from_millis(800));
    let t = Test::new();
    let yaml = scenario(&fleet, &t, ", max_in_flight: 4", "30s");
    let t = t.scenario(&yaml);
    let run = t.spawn_run();
    eventually(Duration::from_secs(20), "three applies in flight", || {
        (fleet.calls_of("apply").len() == 3).then_some(())
    });
    let aborted_at = Instant::now();
    run.signal(Signal::SIGINT);
    let out = run.wait();
    out.code(3);

    let applied = fleet.calls_of("apply");
    assert_eq!(applied.len(), 3, "only the calls in flight at the abort");
    assert!(applied.iter().all(|c| c.started < aborted_at));
    let mut applied: Vec<_> = applied.into_iter().filter_map(|c| c.fault_id).collect();
    let mut reverted: Vec<_> = fleet
        .calls_of("revert")
        .into_iter()
        .filter_map(|c| c.fault_id)
        .collect();
    applied.sort();
    reverted.sort();
    assert_eq!(reverted, applied, "each applied fault reverted, no other");

    let r = out.report();
    r.verdict("aborted", Some("signal"));
    let faults = r.faults();
    let not_started: Vec<_> = faults
        .iter()
        .filter(|f| f["skipped"] == true)
        .map(|f| f["detail"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(not_started.len(), HOSTS - 3, "{faults:?}");
    assert!(
        not_started
            .iter()
            .all(|d| d.contains("the run was aborted before its call could start")),
        "{not_started:?}"
    );
    assert_eq!(r.json["faults_left"], serde_json::json!([]));
}
