//! Every request body the agent reads, as JSON, then the checks the agent makes of it before it
//! acts (policy, holds): never a panic. Nothing is applied: the checks are pure.
#![no_main]

use std::time::Duration;

use agent::api::{ApplyRequest, LeaseRequest, PreflightRequest, ProbeRequest};
use agent::server::policy::Policy;
use libfuzzer_sys::fuzz_target;

/// A policy that limits every key, so that every check has something to compare.
const POLICY: &str = "\
kinds: [pause, kill, fill_disk, latency, loss, drop]
processes:
  selectors: ['^chaos-demo( |$)']
  pid: false
fill_paths: [/srv/fill]
interfaces: [eth0]
ports: [8080]
max_duration: 5m
max_loss: 50%
command_probes: false
";

/// Parsed once: the fuzzer's time goes to the bodies.
fn policies() -> &'static [Option<Policy>; 2] {
    static POLICIES: std::sync::OnceLock<[Option<Policy>; 2]> = std::sync::OnceLock::new();
    POLICIES.get_or_init(|| [Policy::parse(POLICY).ok(), Some(Policy::default())])
}

fuzz_target!(|data: &[u8]| {
    let policies = policies();
    if let Ok(apply) = serde_json::from_slice::<ApplyRequest>(data) {
        for order in &apply.faults {
            let _ = order.spec.to_string();
            for policy in policies.iter().flatten() {
                let _ = policy.check_fault(&order.spec);
                let _ = policy.check_hold(order.hold_ms.map(Duration::from_millis));
            }
        }
    }
    if let Ok(preflight) = serde_json::from_slice::<PreflightRequest>(data) {
        for spec in &preflight.faults {
            for policy in policies.iter().flatten() {
                let _ = policy.check_fault(spec);
            }
        }
    }
    if let Ok(probe) = serde_json::from_slice::<ProbeRequest>(data) {
        let _ = agent::probe::describe_expect(&probe.probe);
        for policy in policies.iter().flatten() {
            let _ = policy.check_probe(&probe.probe);
        }
    }
    let _ = serde_json::from_slice::<LeaseRequest>(data);
});
