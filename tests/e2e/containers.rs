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

const PLAN: &str = r#"version: 1
name: plan-by-container
hosts:
  db-1: {agent: "https://127.0.0.1:1"}
targets:
  both: {hosts: [local, db-1]}
steps:
  - name: kill the sleep of container a
    target: both
    fault: {kill: {process: {container: "${A}", name: sleep}}}
  - name: slow what container b receives
    target: local
    fault:
      latency: {delay: 50ms}
      inside: {process: {container: "${B}"}}
    duration: 1s
  - name: pause every sleep, not by container
    target: local
    fault: {pause: {process: {name: sleep}}}
    duration: 1s
"#;

#[test]
fn plan_names_the_container_of_each_process_a_container_selector_finds_here() {
    if !podman::available() {
        return;
    }
    let tag = unique("ctr-plan");
    let a = Container::run(&format!("{tag}-a"), &[], &["/bin/sleep", "300"]);
    let b = Container::run(&format!("{tag}-b"), &[], &["/bin/sleep", "300"]);
    let t = Test::new().scenario(PLAN);
    let file = t.scenario_path().display().to_string();
    let (var_a, var_b) = (format!("A={}", a.name), format!("B={}", b.name));
    let vars = ["--var", &var_a, "--var", &var_b];
    let label = |c: &Container| {
        format!(
            "pid {} (sleep) in container {} ({})",
            c.pid,
            &c.id[..12],
            c.name
        )
    };

    let out = t.cmd(&[&["plan", file.as_str()][..], &vars].concat());
    out.code(0);
    let text = &out.stdout;
    let step = |n: usize| {
        let start = text
            .find(&format!("  {n}. "))
            .unwrap_or_else(|| panic!("no step {n}:\n{text}"));
        let end = text[start..]
            .find(&format!("  {}. ", n + 1))
            .map_or(text.len(), |e| start + e);
        &text[start..end]
    };
    // The kill: container a's process here, named as a report names it; the remote host's agent
    // resolves its own.
    let kill = step(1);
    assert!(
        kill.contains(&format!("on local now:\n         {}\n", label(&a))),
        "{kill}"
    );
    assert!(!kill.contains(&b.id[..12]), "{kill}");
    assert!(
        kill.contains(
            "on db-1: the processes and their containers are resolved on its agent at run time"
        ),
        "{kill}"
    );
    // `inside:` lists the processes whose namespace the fault enters.
    let latency = step(2);
    assert!(latency.contains(&label(&b)), "{latency}");
    assert!(!latency.contains(&a.id[..12]), "{latency}");
    // A selector by name alone lists nothing: which container is not its question.
    assert!(!step(3).contains("now:"), "{}", step(3));

    let out = t.cmd(&[&["plan", file.as_str(), "--output", "json"][..], &vars].concat());
    out.code(0);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let processes = &json["steps"][0]["faults"][0]["processes"];
    let of = |host: &str| {
        processes
            .as_array()
            .and_then(|all| all.iter().find(|p| p["host"] == host))
            .unwrap_or_else(|| panic!("no {host} in {processes}"))
            .clone()
    };
    assert_eq!(of("local")["found"], serde_json::json!([label(&a)]));
    assert_eq!(of("db-1")["resolved"], "on the agent at run time");
    assert!(json["steps"][2]["faults"][0]["processes"].is_null());
    assert!(
        a.is_running() && b.is_running(),
        "plan must not touch anything"
    );
}
