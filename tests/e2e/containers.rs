//! Selecting processes by container, against real Podman containers (a busybox root file
//! system, no image, no network of their own): two containers run the same program, and a kill
//! by `container` (a name, or an id prefix) hits only the one named; the report says which
//! container each process was found in.

use std::time::Duration;

use chaos_tests::eventually;
use chaos_tests::podman::{self, Container};
use chaos_tests::support::{Test, unique};

fn kill_yaml() -> &'static str {
    r#"version: 1
name: kill-by-container
steps:
  - name: kill the sleep of container a, by name
    target: local
    fault: {kill: {process: {container: "${A}", name: sleep}}}
  - name: kill what runs in container b, by id prefix
    target: local
    fault: {kill: {process: {container: "${B_ID}"}}}
"#
}

#[test]
fn a_kill_by_container_hits_only_that_container_and_the_report_names_it() {
    if !podman::available() {
        return;
    }
    let tag = unique("ctr");
    let a = Container::run(&format!("{tag}-a"), &[], &["/bin/sleep", "300"]);
    let b = Container::run(&format!("{tag}-b"), &[], &["/bin/sleep", "300"]);
    let bystander = Container::run(&format!("{tag}-c"), &[], &["/bin/sleep", "300"]);

    let t = Test::new()
        .scenario(kill_yaml())
        .var("A", &a.name)
        .var("B_ID", &b.id[..12]);
    let out = t.run();
    out.code(0);
    let r = out.report();
    r.verdict("passed", None);

    let first = r.step(0)["faults"][0]["affected"].to_string();
    assert!(
        first.contains(&format!(
            "pid {} (sleep) in container {} ({})",
            a.pid,
            &a.id[..12],
            a.name
        )),
        "{first}"
    );
    assert!(!first.contains(&b.id[..12]), "{first}");
    let second = r.step(1)["faults"][0]["affected"].to_string();
    assert!(
        second.contains(&format!(
            "pid {} (sleep) in container {} ({})",
            b.pid,
            &b.id[..12],
            b.name
        )),
        "{second}"
    );
    for c in [&a, &b] {
        eventually(Duration::from_secs(10), "the container stopped", || {
            (!c.is_running()).then_some(())
        });
    }
    assert!(bystander.is_running(), "a container not named was touched");
}

#[test]
fn a_container_selector_that_matches_nothing_fails_preflight_saying_so() {
    if !podman::available() {
        return;
    }
    let tag = unique("ctr-none");
    let a = Container::run(&format!("{tag}-a"), &[], &["/bin/sleep", "300"]);
    let t = Test::new()
        .scenario(kill_yaml())
        .var("A", format!("{tag}-nosuch"))
        .var("B_ID", &a.id[..12]);
    let out = t.run();
    out.code(5);
    let reason = out.report().reason();
    assert!(
        reason.contains(&format!(
            "no process matches name `sleep` and container `{tag}-nosuch`"
        )),
        "{reason}"
    );
    assert!(a.is_running(), "preflight must not touch anything");
}
