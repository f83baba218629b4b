//! Part 5 of the agents benchmark (root; Podman): what containers cost. N containers (default
//! 100, `--containers N`; 3 with `--tiny`) each run a busybox `sleep`, with no network of their
//! own; chaosctl's built-in agent then runs, R rounds each:
//!   (a) a `pause` of `{container: <the middle one's name>, name: sleep}`, against the same pause
//!       of that process by `pid`: step start → `fault_applied`, so the difference is what
//!       resolving the container selector costs (every process's cgroup read, the names looked
//!       up in Podman's state);
//!   (b) a `latency` of 1 ms on `lo` for one unused peer (127.0.0.2, port 9), made `inside:` the
//!       middle container, against the same fault on the host's `lo`: step start →
//!       `fault_applied`, the added apply time of `inside:` (finding the namespace, entering it).
//! Every container is removed at the end, whatever happens.

use chaos_tests::podman::{self, Container};
use chaos_tests::support::Test;

use super::{Row, at, events_of, first, fmt, ms_between, percentile, row};

/// A scenario pausing the processes `selector` (YAML) selects.
fn pause(selector: &str) -> String {
    format!(
        "version: 1\nname: bench-container-selector\nsteps:\n  - name: pause\n    target: local\n    \
         fault: {{pause: {{process: {selector}}}}}\n    duration: 200ms\n    recover_within: 1s\n"
    )
}

/// A scenario of 1 ms of latency for one unused peer on `lo`, with `extra` keys beside the kind.
fn latency(extra: &str) -> String {
    format!(
        "version: 1\nname: bench-inside\nsteps:\n  - name: latency\n    target: local\n    fault:\n      \
         latency: {{delay: 1ms, to: {{hosts: [127.0.0.2], ports: [9]}}, interface: lo}}\n{extra}    \
         duration: 200ms\n    recover_within: 1s\n"
    )
}

pub fn containers(count: usize, rounds: usize, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    if !podman::available() {
        rows.push(row("containers", "skipped: no Podman here (see above)", ""));
        return Ok(());
    }
    let tag = format!("chaos-bench-{}", std::process::id());
    let started = std::time::Instant::now();
    let fleet: Vec<Container> = (0..count)
        .map(|i| Container::run(&format!("{tag}-{i}"), &[], &["/bin/sleep", "3000"]))
        .collect();
    println!(
        "{count} containers started in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let middle = &fleet[count / 2];

    let apply_ms = |yaml: String| -> Option<f64> {
        let t = Test::new().scenario(&yaml);
        let out = t.run();
        if out.code != Some(0) {
            eprintln!("run failed: {}{}", out.stdout, out.stderr);
            return None;
        }
        let evs = events_of(&t);
        ms_between(
            at(&evs, "step_started", first),
            at(&evs, "fault_applied", first),
        )
    };
    let mut by_container = Vec::new();
    let mut by_pid = Vec::new();
    let mut inside = Vec::new();
    let mut host = Vec::new();
    for _ in 0..rounds.max(1) {
        let selector = format!("{{container: \"{}\", name: sleep}}", middle.name);
        by_container.extend(apply_ms(pause(&selector)));
        by_pid.extend(apply_ms(pause(&format!("{{pid: {}}}", middle.pid))));
        let into = format!(
            "      inside: {{process: {{container: \"{}\"}}}}\n",
            middle.name
        );
        inside.extend(apply_ms(latency(&into)));
        host.extend(apply_ms(latency("")));
    }
    let p50 = |v: &[f64]| (!v.is_empty()).then(|| percentile(v, 0.5));
    let diff = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
    rows.push(row(
        &format!("container selector, {count} containers: pause applied (ms, p50)"),
        &format!(
            "{} by container and name, {} by pid: +{} ms to resolve",
            fmt(p50(&by_container), 1),
            fmt(p50(&by_pid), 1),
            fmt(diff(p50(&by_container), p50(&by_pid)), 1)
        ),
        "",
    ));
    rows.push(row(
        "inside: latency applied (ms, p50)",
        &format!(
            "{} inside a container, {} on the host: +{} ms",
            fmt(p50(&inside), 1),
            fmt(p50(&host), 1),
            fmt(diff(p50(&inside), p50(&host)), 1)
        ),
        "",
    ));
    let removing = std::time::Instant::now();
    drop(fleet);
    println!(
        "{count} containers removed in {:.1} s",
        removing.elapsed().as_secs_f64()
    );
    Ok(())
}
