//! `corrupt` and `duplicate` against real `chaos-agent` daemons in the lab, on a kernel without
//! netem (this project's machines): the run's preflight refuses them with the reason, naming the
//! module `sch_netem` and what to do, before anything is injected, and `chaosctl agents` says why
//! the hosts cannot do them. The lab checks after the test that no qdisc of ours is left.

use std::process::Command;

use chaos_tests::lab::Lab;
use chaos_tests::skip;
use chaos_tests::support::Test;

/// Whether this kernel has netem: a netem qdisc on the loopback of a throwaway namespace.
fn has_netem() -> bool {
    Command::new("unshare")
        .args(["-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem"])
        .args(["delay", "1ms"])
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn lab_corrupt_without_netem_fails_preflight_naming_sch_netem_and_agents_say_why() {
    let Some(lab) = Lab::new() else { return };
    if has_netem() {
        skip::skip(
            "has netem",
            "this kernel has sch_netem, so corrupt and duplicate are not refused here",
        );
        return;
    }
    let yaml = r#"version: 1
name: lab-corrupt
settings: {lease: 2s}
steps:
  - name: corrupt and duplicate what h1 sends to h2
    faults:
      - {target: h1, corrupt: {share: 5%, to: {hosts: ["${H2_ADDR}"], ports: [5432]}}}
      - {target: h2, duplicate: {share: 5%}}
    duration: 1s
"#;
    let t = lab.test(yaml);
    let out = t.run();
    out.code(5);
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(
        said.contains("sch_netem"),
        "chaosctl did not say why:\n{said}"
    );
    let r = out.report();
    r.verdict("error", Some("preflight"));
    let reason = r.reason();
    println!("preflight refused: {reason}");
    assert!(
        reason.contains("`corrupt` faults need") || reason.contains("`duplicate` faults need"),
        "{reason}"
    );
    for needle in ["sch_netem", "CONFIG_NET_SCH_NETEM", "modprobe sch_netem"] {
        assert!(reason.contains(needle), "no {needle} in {reason}");
    }
    assert!(!r.has_event("fault_applied"));

    let inventory = lab.inventory.display().to_string();
    let agents = Test::new().cmd(&["agents", "--inventory", &inventory]);
    agents.code(0);
    agents.stdout_has("corrupt (the host cannot: need the kernel's netem qdisc (module sch_netem)");
    agents
        .stdout_has("duplicate (the host cannot: need the kernel's netem qdisc (module sch_netem)");
    let json = Test::new().cmd(&["agents", "--inventory", &inventory, "--output", "json"]);
    json.code(0);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).expect("agents JSON");
    for row in rows.as_array().expect("rows") {
        let kinds = row["kinds"].as_array().expect("kinds");
        for kind in ["corrupt", "duplicate"] {
            let k = kinds.iter().find(|k| k["kind"] == kind).expect(kind);
            assert_eq!(k["usable"], false, "{k}");
            let why = k["why_not"].as_str().unwrap_or_default();
            assert!(why.contains("sch_netem"), "{k}");
        }
    }
}
