//! Data-driven tests of whole files: each check points at its line and column.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::spec::{
    BandwidthSpec, DropMode, DropSpec, FaultSpec, FillAmount, FillDiskSpec, KillSpec, LatencySpec,
    LossSpec, NetScope, PauseSpec, PeerSelector, Pick, ProcessSelector, SignalNumber,
};
use agent::spec::{CpuStress, MemoryStress, StressSpec, StressWork, Workers};

use super::model::{Command, ProbeKind, StatusMatch};
use super::*;

/// Seven lines every check starts with: two api hosts and an `api` target.
const PRE: &str = "\
version: 1
name: t
hosts:
  api-1: {agent: \"https://10.0.0.11:7411\", labels: {role: api}}
  api-2: {agent: \"https://10.0.0.12:7411\", labels: {role: api, zone: a}}
targets:
  api: {labels: {role: api}}
";

const STEP: &str = "\
steps:
  - name: s
    target: api
    fault: {kill: {process: {name: x}}}
";

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scenario")
}

fn opts() -> LoadOptions {
    let mut opts = LoadOptions::default();
    opts.vars.insert("D".into(), "15s".into());
    opts
}

fn load_text(text: &str) -> Result<model::Scenario, ScenarioError> {
    load_str(Path::new("scenarios/t.yaml"), text, &opts())
}

/// Loads `input` and compares its problems, each as `LINE:COLUMN: message`.
fn check(input: &str, expected: &[&str]) {
    let got: Vec<String> = match load_text(input) {
        Ok(_) => Vec::new(),
        Err(err) => err
            .problems()
            .iter()
            .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
            .collect(),
    };
    assert_eq!(got, expected, "\n--- input:\n{input}");
}

fn ok(input: &str) -> model::Scenario {
    match load_text(input) {
        Ok(s) => s,
        Err(err) => panic!("{err}\n--- input:\n{input}"),
    }
}

#[test]
fn the_whole_file_of_the_spec_loads() {
    let path = data_dir().join("whole.yaml");
    let s = load(&path, &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.name, "checkout-failover");
    assert_eq!(s.tags, ["gameday", "api"]);
    assert_eq!(s.base_dir, data_dir().canonicalize().unwrap());
    assert_eq!(s.path, path.canonicalize().unwrap());
    assert_eq!(s.sha256.len(), 64);
    assert_eq!(s.hosts.len(), 3);
    assert_eq!(s.hosts["local"].agent, None);
    assert_eq!(
        s.hosts["api-2"].token_file,
        Some(PathBuf::from("/etc/chaos/api.token"))
    );
    assert_eq!(s.targets["api"].hosts, ["api-1", "api-2"]);
    assert_eq!(s.targets["one-api"].pick, Pick::Count(1));
    assert_eq!(s.setup.len(), 1);
    let load_sh = s.base_dir.join("load.sh").to_string_lossy().into_owned();
    assert_eq!(
        s.setup[0].run,
        Command::Argv(vec![load_sh, "--rps".into(), "50".into()])
    );
    assert!(s.setup[0].background);
    let ready = s.setup[0].ready.as_ref().unwrap();
    assert_eq!(ready.within, Duration::from_secs(10));
    assert!(matches!(&ready.probe, ProbeKind::Tcp(t) if t.address == "127.0.0.1:8080"));
    assert_eq!(s.steady_state.len(), 2);
    let checkout = &s.steady_state[0];
    assert_eq!(checkout.on, "local");
    assert_eq!(checkout.tolerance, 95.0);
    assert_eq!(checkout.every, Duration::from_secs(1));
    assert_eq!(checkout.window, Duration::from_secs(5));
    let ProbeKind::Http(http) = &checkout.kind else {
        panic!()
    };
    assert_eq!(http.method, "GET");
    assert_eq!(http.timeout, Duration::from_secs(2));
    assert_eq!(http.expect.status, [StatusMatch::Code(200)]);
    assert_eq!(http.expect.max_latency, Some(Duration::from_millis(300)));
    assert_eq!(s.steady_state[1].on, "api");
    assert!(matches!(&s.steady_state[1].kind, ProbeKind::Process(p) if p.min == 1));
    assert_eq!(s.guardrails[0].window, Duration::from_secs(10));
    assert_eq!(s.guardrails[0].tolerance, 80.0);
    assert_eq!(s.steps.len(), 3);
    assert_eq!(s.steps[0].duration, Duration::from_secs(15));
    assert_eq!(s.steps[0].recover_within, Duration::from_secs(10));
    assert_eq!(
        s.steps[0].faults[0].spec,
        FaultSpec::Kill(KillSpec {
            process: ProcessSelector::Name("api-server".into()),
            signal: SignalNumber(9),
            pick: Pick::All,
        })
    );
    assert_eq!(s.steps[1].faults.len(), 2);
    assert_eq!(s.steps[1].recover_within, Duration::from_secs(30));
    let FaultSpec::Latency(LatencySpec {
        delay,
        jitter,
        scope,
    }) = &s.steps[1].faults[0].spec
    else {
        panic!()
    };
    assert_eq!(
        (*delay, *jitter),
        (Duration::from_millis(200), Duration::from_millis(20))
    );
    assert_eq!(scope.to.as_ref().unwrap().ports, [5432]);
    assert!(scope.spare_ssh);
    assert_eq!(
        s.steps[1].faults[1].spec,
        FaultSpec::FillDisk(FillDiskSpec {
            path: "/var/log".into(),
            amount: FillAmount::Usage(95.0),
            inside: None,
        })
    );
    let FaultSpec::Drop(DropSpec { mode, scope }) = &s.steps[2].faults[0].spec else {
        panic!()
    };
    assert_eq!(*mode, DropMode::Reject);
    assert_eq!(scope.to.as_ref().unwrap().hosts, ["10.0.0.20"]);
    assert_eq!(s.teardown[0].run, Command::Shell("./failback.sh".into()));
    assert_eq!(
        s.schedule.as_ref().unwrap().timezone.as_deref(),
        Some("Europe/Berlin")
    );
    assert_eq!(s.settings.seed, Some(42));
    assert_eq!(s.settings.max_hosts, 10);
    assert_eq!(
        s.resolve_target("local"),
        Some((vec!["local".into()], Pick::All))
    );
}

#[test]
fn a_monkey_file_loads() {
    let s = ok(&format!(
        "{PRE}monkey:
  target: api
  fault: {{kill: {{process: {{name: api-server}}}}}}
  mean_interval: 30m        # random gaps between faults, this long on average
  min_interval: 5m
  active: {{days: [mon, tue, wed, thu, fri], hours: \"09:00-17:00\", timezone: Europe/Berlin}}
  max_per_day: 4
"
    ));
    assert!(s.steps.is_empty());
    let m = s.monkey.unwrap();
    assert_eq!(m.target, "api");
    assert_eq!(m.mean_interval, Duration::from_secs(1800));
    assert_eq!(m.min_interval, Duration::from_secs(300));
    let active = m.active.unwrap();
    assert_eq!(active.days, ["mon", "tue", "wed", "thu", "fri"]);
    assert_eq!((active.start_minute, active.end_minute), (540, 1020));
    assert_eq!(m.max_per_day, Some(4));
}

#[test]
fn defaults_follow_the_spec() {
    let s = ok(&format!(
        "{PRE}settings: {{every: 2s, window: 10s}}
steady_state:
  - name: p
    http: {{url: \"http://x/\"}}
  - name: c
    command: {{run: [./check.sh, -q]}}
  - name: proc
    process: {{pid: 1}}
{STEP}"
    ));
    let p = &s.steady_state[0];
    assert_eq!(
        (p.every, p.window, p.tolerance),
        (Duration::from_secs(2), Duration::from_secs(10), 100.0)
    );
    let ProbeKind::Http(http) = &p.kind else {
        panic!()
    };
    assert_eq!(http.timeout, Duration::from_secs(2));
    assert!(http.expect.status.is_empty());
    let ProbeKind::Command(c) = &s.steady_state[1].kind else {
        panic!()
    };
    assert_eq!(c.expect.exit, 0);
    assert_eq!(c.cwd, s.base_dir);
    assert_eq!(
        c.run.argv()[0],
        s.base_dir.join("check.sh").to_string_lossy()
    );
    let step = &s.steps[0];
    assert_eq!(step.duration, Duration::ZERO);
    assert_eq!(step.recover_within, Duration::from_secs(30));
    let FaultSpec::Kill(KillSpec { signal, pick, .. }) = &step.faults[0].spec else {
        panic!()
    };
    assert_eq!((*signal, *pick), (SignalNumber(9), Pick::All));
    assert_eq!(s.settings.lease, Duration::from_secs(10));
    assert_eq!(s.settings.max_duration, Duration::from_secs(3600));
}

#[test]
fn probe_timeouts_default_to_the_smaller_of_every_and_5s() {
    let s = ok(&format!(
        "{PRE}steady_state:\n  - {{name: p, every: 10s, tcp: {{address: \"h:1\"}}}}\n{STEP}"
    ));
    assert_eq!(
        s.steady_state[0].kind.timeout(),
        Some(Duration::from_secs(5))
    );
}

#[test]
fn unknown_keys_suggest_the_nearest() {
    check(&format!("{PRE}stpes: []\n"), &["8:1: unknown key `stpes`"]);
    let err = load_text(&format!("{PRE}stpes: []\n")).unwrap_err();
    assert_eq!(
        err.problems()[0].help.as_deref(),
        Some("did you mean `steps`?")
    );
    assert_eq!(
        err.to_string(),
        "scenarios/t.yaml:8:1: unknown key `stpes`\n  |\n8 | stpes: []\n  | ^^^^^\n  = help: did you mean `steps`?"
    );
    check(
        &format!(
            "{PRE}steps:\n  - name: s\n    target: api\n    fault: {{kill: {{proces: {{name: x}}}}}}\n"
        ),
        &["11:20: unknown key `proces`"],
    );
    let err = load_text(&format!(
        "{PRE}{STEP}steady_state:\n  - {{name: p, tcp: {{address: \"h:1\"}}, zzzzzz: 1}}\n"
    ))
    .unwrap_err();
    let help = err.problems()[0].help.as_deref().unwrap();
    assert!(help.starts_with("expected one of `name`, `on`"), "{help}");
}

#[test]
fn wrong_types() {
    check(
        &format!("{PRE}tags: gameday\n{STEP}"),
        &["8:7: expected a list (`- item` lines or `[...]`)"],
    );
    check(
        &format!("{PRE}steps: 5\n"),
        &["8:8: expected a list (`- item` lines or `[...]`)"],
    );
    check(
        &format!("{PRE}name: [a]\n{STEP}"),
        &["8:1: key `name` is given twice"],
    );
    check(
        &format!("version: 1\nname: [a]\n{STEP}"),
        &["2:7: expected a single value, not a list or a mapping"],
    );
    check(
        &format!("{PRE}setup:\n  - {{name: a, run: x, background: yes}}\n{STEP}"),
        &["9:35: expected `true` or `false`, not `yes`"],
    );
    check("", &["1:1: the file is empty"]);
    check("# nothing\n\n", &["1:1: the file is empty"]);
}

#[test]
fn version_and_name() {
    check(
        &format!("version: 2\nname: t\n{STEP}"),
        &[
            "1:10: unsupported version `2`; this version of chaosctl reads version 1",
            "5:13: unknown target or host `api`",
        ],
    );
    check(
        &format!("name: t\n{STEP}"),
        &[
            "1:1: missing `version`",
            "4:13: unknown target or host `api`",
        ],
    );
    check(
        &format!("version: 1\n{STEP}"),
        &[
            "1:1: the scenario needs `name`",
            "4:13: unknown target or host `api`",
        ],
    );
}

#[test]
fn steps_or_monkey() {
    check(PRE, &["1:1: missing `steps`"]);
    check(
        &format!(
            "{PRE}{STEP}monkey:\n  target: api\n  fault: {{kill: {{process: {{name: x}}}}}}\n  mean_interval: 1m\n"
        ),
        &["13:3: a file has `steps` or `monkey`, not both"],
    );
    check(&format!("{PRE}steps: []\n"), &["8:8: `steps` is empty"]);
}

#[test]
fn unknown_targets_and_hosts() {
    check(
        &format!(
            "{PRE}steps:\n  - name: s\n    target: apu\n    fault: {{kill: {{process: {{name: x}}}}}}\n"
        ),
        &["10:13: unknown target or host `apu`"],
    );
    let err = load_text(&format!(
        "{PRE}steps:\n  - name: s\n    target: apu\n    fault: {{kill: {{process: {{name: x}}}}}}\n"
    ))
    .unwrap_err();
    assert_eq!(
        err.problems()[0].help.as_deref(),
        Some("did you mean `api`?")
    );
    check(
        &format!("{PRE}  two: {{hosts: [api-1, api-3]}}\n{STEP}"),
        &["8:24: unknown host `api-3`"],
    );
    check(
        &format!(
            "{PRE}steady_state:\n  - {{name: p, on: nowhere, tcp: {{address: \"h:1\"}}}}\n{STEP}"
        ),
        &["9:19: unknown target or host `nowhere`"],
    );
    // `local` and every host are valid step targets.
    let s = ok(&format!(
        "{PRE}steps:\n  - {{name: a, target: local, fault: {{kill: {{process: {{name: x}}}}}}}}\n  - {{name: b, target: api-2, fault: {{kill: {{process: {{name: x}}}}}}}}\n"
    ));
    assert_eq!(s.steps[1].faults[0].target, "api-2");
}

#[test]
fn hosts_and_targets_share_a_namespace() {
    check(
        &format!("{PRE}  api-1: {{hosts: [api-2]}}\n{STEP}"),
        &["8:3: target `api-1` has the name of a host"],
    );
    check(
        &format!("{PRE}  local: {{hosts: [api-2]}}\n{STEP}"),
        &["8:3: target `local` has the name of a host"],
    );
    check(
        &format!("version: 1\nname: t\nhosts:\n  local: {{agent: \"https://x:1\"}}\n{STEP}"),
        &[
            "4:3: host `local` is built in and cannot be redefined",
            "7:13: unknown target or host `api`",
        ],
    );
    check(
        &format!("version: 1\nname: t\nhosts:\n  h: {{labels: {{a: b}}}}\n{STEP}"),
        &[
            "4:3: host `h` needs `agent`",
            "7:13: unknown target or host `api`",
        ],
    );
}

#[test]
fn targets_resolve_and_are_checked() {
    let s = ok(&format!(
        "{PRE}  zone-a: {{labels: {{role: api, zone: a}}, pick: 50%}}\n  both: {{hosts: [api-2, api-1, local]}}\n{STEP}"
    ));
    assert_eq!(s.targets["zone-a"].hosts, ["api-2"]);
    assert_eq!(s.targets["zone-a"].pick, Pick::Percent(50.0));
    assert_eq!(s.targets["both"].hosts, ["api-1", "api-2", "local"]);
    check(
        &format!("{PRE}  none: {{labels: {{role: db}}}}\n{STEP}"),
        &["8:18: target `none` matches no host: none has the labels `role=db`"],
    );
    check(
        &format!("{PRE}  x: {{pick: 1}}\n{STEP}"),
        &["8:3: target `x` needs `labels` or `hosts`"],
    );
    check(
        &format!("{PRE}  x: {{labels: {{role: api}}, hosts: [api-1]}}\n{STEP}"),
        &["8:35: target `x` has both `labels` and `hosts`; give one"],
    );
    check(
        &format!("{PRE}  x: {{hosts: [api-1], pick: 0}}\n{STEP}"),
        &["8:29: pick `0` picks nothing; use at least 1"],
    );
    check(
        &format!("{PRE}  x: {{hosts: [api-1], pick: 2}}\n{STEP}"),
        &["8:29: `pick` 2 is more than the 1 hosts of target `x`"],
    );
}

#[test]
fn a_step_needs_exactly_one_way_of_faulting() {
    check(
        &format!("{PRE}steps:\n  - name: s\n    duration: 1s\n"),
        &["9:5: step `s` has no fault"],
    );
    check(
        &format!(
            "{PRE}steps:\n  - name: s\n    target: api\n    fault: {{kill: {{process: {{name: x}}}}}}\n    faults: [{{target: api, kill: {{process: {{name: x}}}}}}]\n"
        ),
        &["12:13: step `s` has both `fault` and `faults`; give one"],
    );
    check(
        &format!("{PRE}steps:\n  - name: s\n    fault: {{kill: {{process: {{name: x}}}}}}\n"),
        &["9:5: step `s` has a `fault` but no `target`"],
    );
    check(
        &format!("{PRE}steps:\n  - name: s\n    faults: [{{kill: {{process: {{name: x}}}}}}]\n"),
        &["10:14: a fault of step `s` has no `target`"],
    );
}

#[test]
fn a_fault_needs_exactly_one_kind() {
    check(
        &format!("{PRE}steps:\n  - name: s\n    target: api\n    fault: {{}}\n"),
        &["11:12: the fault of step `s` has no fault kind"],
    );
    check(
        &format!(
            "{PRE}steps:\n  - name: s\n    target: api\n    duration: 1s\n    fault: {{kill: {{process: {{name: x}}}}, pause: {{process: {{name: x}}}}}}\n"
        ),
        &["12:48: the fault of step `s` has two fault kinds, `kill` and `pause`; give one"],
    );
    check(
        &format!(
            "{PRE}steps:\n  - name: s\n    target: api\n    duration: 1s\n    fault: {{kill: {{process: {{name: x, pid: 3}}}}}}\n"
        ),
        &["12:44: a process selector has both `name` and `pid`; give one"],
    );
}

#[test]
fn process_selectors_combine_a_name_or_pattern_with_a_cgroup_unit_or_container() {
    let step = |process: &str| {
        format!(
            "{PRE}steps:\n  - name: s\n    target: api\n    fault: {{kill: {{process: {process}}}}}\n"
        )
    };
    let s = ok(&step("{container: checkout, name: nginx}"));
    let FaultSpec::Kill(kill) = &s.steps[0].faults[0].spec else {
        panic!("not a kill")
    };
    assert_eq!(
        kill.process,
        ProcessSelector::All(vec![
            ProcessSelector::Name("nginx".into()),
            ProcessSelector::Container("checkout".into()),
        ])
    );
    let s = ok(&step("{unit: nginx}"));
    let FaultSpec::Kill(kill) = &s.steps[0].faults[0].spec else {
        panic!("not a kill")
    };
    assert_eq!(kill.process, ProcessSelector::Unit("nginx".into()));
    ok(&step(
        "{cgroup: \"*/docker-3f2a*\", pattern: \"^nginx: worker\"}",
    ));
    check(
        &step("{pid: 3, unit: nginx}"),
        &[
            "11:44: a process selector with `pid`, `unit`: `pid` names processes alone and does not combine with other keys; give it by itself",
        ],
    );
    check(
        &step("{unit: \"no such unit\"}"),
        &["11:36: `no such unit` is not a systemd unit name (`nginx.service`, `nginx`)"],
    );
    check(
        &step("{cgroup: \"[\"}"),
        &["11:38: `[` is not a glob: Pattern syntax error near position 0: invalid range pattern"],
    );
    check(
        &format!(
            "{PRE}steps:\n  - name: s\n    target: api\n    fault: {{kill: {{process: {{pattern: \"a(\"}}}}}}\n"
        ),
        &["11:39: `a(` is not a valid regex: unclosed group"],
    );
}

#[test]
fn a_probe_needs_exactly_one_kind() {
    check(
        &format!("{PRE}steady_state:\n  - name: p\n    every: 1s\n{STEP}"),
        &["9:5: probe `p` has no kind"],
    );
    check(
        &format!(
            "{PRE}steady_state:\n  - name: p\n    tcp: {{address: \"h:1\"}}\n    http: {{url: \"http://h/\"}}\n{STEP}"
        ),
        &["11:11: probe `p` has two kinds, `tcp` and `http`; give one"],
    );
    check(
        &format!(
            "{PRE}steady_state:\n  - name: p\n    http: {{url: \"http://h/\"}}\n    expect: {{exit: 0}}\n{STEP}"
        ),
        &["11:20: `exit` does not apply to an `http` probe"],
    );
    check(
        &format!(
            "{PRE}steady_state:\n  - name: p\n    http: {{url: \"http://h/\"}}\n    expect: {{status: [200, 7xx], body_matches: \"(\"}}\n{STEP}"
        ),
        &[
            "11:28: invalid status class `7xx`; expected `1xx` to `5xx`",
            "11:48: `(` is not a valid regex: unclosed group",
        ],
    );
}

#[test]
fn durations_and_limits() {
    check(
        &format!(
            "{PRE}steps:\n  - name: s\n    target: api\n    duration: 2h\n    fault: {{kill: {{process: {{name: x}}}}}}\n"
        ),
        &["11:15: duration `2h` of step `s` is over `max_duration` (1h)"],
    );
    check(
        &format!(
            "{PRE}steps:\n  - name: s\n    target: api\n    duration: 30\n    fault: {{kill: {{process: {{name: x}}}}}}\n"
        ),
        &["11:15: duration `30` has no unit; write e.g. `30s` or `30ms`"],
    );
    check(
        &format!(
            "{PRE}steps:\n  - name: s\n    target: api\n    fault: {{latency: {{delay: 100ms}}}}\n"
        ),
        &["9:5: step `s` needs `duration` for its `latency` fault"],
    );
    check(
        &format!(
            "{PRE}steps:\n  - name: s\n    target: api\n    duration: 1s\n    recover_within: -1s\n    fault: {{kill: {{process: {{name: x}}}}}}\n"
        ),
        &["12:21: duration `-1s` is negative"],
    );
    check(
        &format!("{PRE}settings: {{every: 0s}}\n{STEP}"),
        &["8:19: `every` must be more than 0s"],
    );
    check(
        &format!(
            "{PRE}steady_state:\n  - {{name: p, tolerance: 101%, tcp: {{address: \"h:1\"}}}}\n{STEP}"
        ),
        &["9:26: share `101%` is outside 0% to 100%"],
    );
    check(
        &format!(
            "{PRE}steady_state:\n  - {{name: p, tolerance: 95, tcp: {{address: \"h:1\"}}}}\n{STEP}"
        ),
        &["9:26: share `95` needs a `%`, e.g. `95%`"],
    );
    // A window shorter than `every` is fine: one sample.
    let s = ok(&format!(
        "{PRE}steady_state:\n  - {{name: p, every: 2s, window: 1s, tcp: {{address: \"h:1\"}}}}\n{STEP}"
    ));
    assert_eq!(s.steady_state[0].window_samples(), 1);
}

#[test]
fn durations_are_bounded_by_the_longest_hold() {
    // Raising `max_duration` let a 2600000000h pause through, which overflowed the agent's time
    // arithmetic after SIGSTOP.
    let huge = "steps:\n  - name: s\n    target: api\n    duration: 2600000000h\n    fault: {pause: {process: {name: x}}}\n";
    check(
        &format!("{PRE}settings: {{max_duration: 2600000000h}}\n{huge}"),
        &[
            "8:26: duration `2600000000h` is over the limit of 168h (7 days) for any duration; shorten it",
            "12:15: duration `2600000000h` is over the limit of 168h (7 days) for any duration; shorten it",
        ],
    );
    check(
        &format!("{PRE}settings: {{lease: 8d}}\n{STEP}"),
        &["8:19: duration `8d` is over the limit of 168h (7 days) for any duration; shorten it"],
    );
    let week = "steps:\n  - name: s\n    target: api\n    duration: 7d\n    fault: {pause: {process: {name: x}}}\n";
    let s = ok(&format!("{PRE}settings: {{max_duration: 7d}}\n{week}"));
    assert_eq!(s.settings.max_duration, agent::spec::MAX_HOLD);
}

#[test]
fn max_hosts_counts_distinct_picked_hosts() {
    let step = "steps:\n  - name: s\n    duration: 1s\n    faults:\n      - {target: api, kill: {process: {name: x}}}\n      - {target: api, pause: {process: {name: y}}}\n      - {target: one, loss: {share: 5%}}\n";
    ok(&format!(
        "{PRE}  one: {{hosts: [api-1, local], pick: 1}}\nsettings: {{max_hosts: 3}}\n{step}"
    ));
    check(
        &format!(
            "{PRE}  one: {{hosts: [api-1, local], pick: 1}}\nsettings: {{max_hosts: 2}}\n{step}"
        ),
        &["14:7: step `s` faults up to 3 hosts, more than `max_hosts` (2)"],
    );
    check(
        &format!("{PRE}settings: {{max_hosts: 1}}\n{STEP}"),
        &["11:13: step `s` faults up to 2 hosts, more than `max_hosts` (1)"],
    );
}

#[test]
fn max_in_flight_is_a_count_of_at_least_one() {
    assert_eq!(ok(&format!("{PRE}{STEP}")).settings.max_in_flight, 512);
    let s = ok(&format!("{PRE}settings: {{max_in_flight: 32}}\n{STEP}"));
    assert_eq!(s.settings.max_in_flight, 32);
    check(
        &format!("{PRE}settings: {{max_in_flight: 0}}\n{STEP}"),
        &["8:27: `max_in_flight` must be at least 1"],
    );
}

#[test]
fn duplicate_names() {
    check(
        &format!(
            "{PRE}steady_state:\n  - {{name: p, tcp: {{address: \"h:1\"}}}}\nguardrails:\n  - {{name: p, tcp: {{address: \"h:1\"}}}}\n{STEP}"
        ),
        &["11:12: probe `p` is defined twice"],
    );
    check(
        &format!(
            "{PRE}{STEP}  - name: s\n    target: api\n    fault: {{kill: {{process: {{name: x}}}}}}\n"
        ),
        &["12:11: step `s` is defined twice"],
    );
}

#[test]
fn stress_values() {
    let step = |fault: &str| {
        format!("{PRE}steps:\n  - name: s\n    target: api\n    duration: 1s\n    fault: {fault}\n")
    };
    check(
        &step("{stress: {}}"),
        &["12:21: `stress` needs one of `cpu`, `memory`"],
    );
    check(
        &step("{stress: {cpu: {workers: 1}, memory: {size: 1MiB}}}"),
        &["12:49: `stress` has both `cpu` and `memory`; give one"],
    );
    check(
        &step("{stress: {cpu: {workers: 2, cores: 50%}}}"),
        &["12:47: `stress.cpu` has both `workers` and `cores`; give one"],
    );
    check(
        &step("{stress: {cpu: {workers: 0, load: 0%}}}"),
        &[
            "12:37: workers `0` burn nothing; give 1 or more",
            "12:46: load `0%` is outside (0%, 100%]",
        ],
    );
    check(
        &step("{stress: {memory: {share: 120%}}}"),
        &["12:38: share `120%` is outside 0% to 100%"],
    );
    let s = ok(&step("{stress: {cpu: {cores: 50%}}}"));
    assert_eq!(
        s.steps[0].faults[0].spec,
        FaultSpec::Stress(StressSpec::on_host(StressWork::Cpu(CpuStress {
            workers: Workers::Cores(50.0),
            load: 100.0
        })))
    );
    let s = ok(&step("{stress: {memory: {size: 512MiB}}}"));
    assert_eq!(
        s.steps[0].faults[0].spec,
        FaultSpec::Stress(StressSpec::on_host(StressWork::Memory(MemoryStress::Size(
            512 << 20
        ))))
    );
    let s = ok(&step(
        "{stress: {memory: {share: 50%}}, inside: {process: {container: checkout}}}",
    ));
    assert_eq!(
        s.steps[0].faults[0].spec,
        FaultSpec::Stress(StressSpec {
            work: StressWork::Memory(MemoryStress::Share(50.0)),
            inside: Some(ProcessSelector::Container("checkout".into())),
        })
    );
}

#[test]
fn fault_values() {
    let step = |fault: &str| {
        format!("{PRE}steps:\n  - name: s\n    target: api\n    duration: 1s\n    fault: {fault}\n")
    };
    check(
        &step("{fill_disk: {path: /var/log, usage: 0%}}"),
        &["12:48: usage `0%` is outside (0%, 100%]"],
    );
    check(
        &step("{fill_disk: {path: var/log, usage: 5%}}"),
        &["12:31: path `var/log` must be absolute: it is a path on the faulted host"],
    );
    check(
        &step("{fill_disk: {path: /v, usage: 5%, size: 1GiB}}"),
        &["12:52: `fill_disk` has both `usage` and `size`; give one"],
    );
    check(
        &step("{kill: {process: {name: x}, signal: SIGNOPE}}"),
        &["12:48: unknown signal `SIGNOPE`; expected e.g. `SIGKILL`, `TERM` or `9`"],
    );
    check(
        &step("{drop: {to: {hosts: [nowhere], ports: [0]}, mode: bounce}}"),
        &[
            "12:33: `nowhere` is not an address or a CIDR such as `10.0.0.0/24`",
            "12:51: `0` is not a port (1 to 65535)",
            "12:62: unknown mode `bounce`; expected `drop` or `reject`",
        ],
    );
    let s = ok(&step("{fill_disk: {path: /data, leave: 64MiB}}"));
    assert_eq!(
        s.steps[0].faults[0].spec,
        FaultSpec::FillDisk(FillDiskSpec {
            path: "/data".into(),
            amount: FillAmount::Leave(64 << 20),
            inside: None,
        })
    );
    let s = ok(&step(
        "{loss: {share: 0.5%, from: {hosts: [10.0.0.0/8], protocol: udp}, interface: eth0, spare_ssh: false}}",
    ));
    let FaultSpec::Loss(LossSpec { share, scope }) = &s.steps[0].faults[0].spec else {
        panic!()
    };
    assert_eq!(*share, 0.5);
    assert_eq!(scope.interface.as_deref(), Some("eth0"));
    assert!(!scope.spare_ssh);
    let s = ok(&step(
        "{pause: {process: {pidfile: run/app.pid}, pick: 50%}}",
    ));
    let FaultSpec::Pause(PauseSpec { process, pick }) = &s.steps[0].faults[0].spec else {
        panic!()
    };
    assert_eq!(
        *process,
        ProcessSelector::Pidfile(s.base_dir.join("run/app.pid"))
    );
    assert_eq!(*pick, Pick::Percent(50.0));
    let s = ok(&step("{kill: {process: {name: x}, signal: 15}}"));
    assert!(matches!(
        s.steps[0].faults[0].spec,
        FaultSpec::Kill(KillSpec {
            signal: SignalNumber(15),
            ..
        })
    ));
}

#[test]
fn bandwidth_values() {
    let step = |fault: &str| {
        format!("{PRE}steps:\n  - name: s\n    target: api\n    duration: 1s\n    fault: {fault}\n")
    };
    check(
        &step("{bandwidth: {rate: 1mbps}}"),
        &[
            "12:31: `1mbps` is ambiguous: write bits as `kbit`/`mbit`/`gbit`, bytes as `kB/s`/`MB/s`/`GB/s`",
        ],
    );
    check(
        &step("{bandwidth: {rate: 10}}"),
        &["12:31: `10` has no unit; write e.g. `1mbit`, `500kbit` or `10MB/s`"],
    );
    check(
        &step("{bandwidth: {to: {hosts: [10.0.0.2]}}}"),
        &["12:24: `bandwidth` needs `rate`"],
    );
    check(
        &step("{bandwidth: {rate: 1mbit, burst: 0}}"),
        &["12:45: burst `0` is empty; give at least one packet, e.g. `2KiB`"],
    );
    check(
        &step("{bandwidth: {rate: 1mbit, from: {hosts: [10.0.0.2]}}}"),
        &["12:38: unknown key `from`"],
    );
    let s = ok(&step(
        "{bandwidth: {rate: 10MB/s, burst: 64KiB, to: {hosts: [10.0.0.2], ports: [5432]}, interface: eth0}}",
    ));
    assert_eq!(
        s.steps[0].faults[0].spec,
        FaultSpec::Bandwidth(BandwidthSpec {
            rate: 80_000_000,
            burst: Some(64 << 10),
            scope: NetScope {
                to: Some(PeerSelector {
                    hosts: vec!["10.0.0.2".into()],
                    ports: vec![5432],
                    protocol: None,
                }),
                from: None,
                interface: Some("eth0".into()),
                spare_ssh: true,
                inside: None,
            },
        })
    );
    assert_eq!(
        s.steps[0].faults[0].spec.to_string(),
        "bandwidth 80mbit (burst 65536 B) to 10.0.0.2 port 5432, on eth0"
    );
}

#[test]
fn http_values() {
    use agent::spec::{HttpAction, HttpSpec};
    let step = |fault: &str| {
        format!("{PRE}steps:\n  - name: s\n    target: api\n    duration: 1s\n    fault: {fault}\n")
    };
    check(
        &step("{http: {abort: {status: 503}}}"),
        &["12:19: `http` needs `port`"],
    );
    check(
        &step("{http: {port: 8080}}"),
        &["12:19: `http` needs one of `abort: {status: 503}` or `delay: 200ms`"],
    );
    check(
        &step("{http: {port: 8080, abort: {status: 503}, delay: 1s}}"),
        &[
            "12:19: `http` has both `abort` and `delay`; give exactly one (a hit request is either answered at once or passed on late)",
        ],
    );
    check(
        &step("{http: {port: 22, delay: 1s}}"),
        &[
            "12:26: port 22 is SSH's: an `http` fault never redirects it; give the HTTP server's port",
        ],
    );
    check(
        &step("{http: {port: 8080, abort: {status: 99}}}"),
        &["12:48: status `99` is not an HTTP status from 200 to 599, e.g. `503`"],
    );
    check(
        &step("{http: {port: 8080, delay: 1s, paths: [api], methods: [\"GE T\"], share: 130%}}"),
        &[
            "12:51: path `api` does not start with `/`; paths are prefixes such as `/api`",
            "12:67: `GE T` is not an HTTP method such as `GET`",
            "12:83: share `130%` is outside 0% to 100%",
        ],
    );
    check(
        &step("{http: {port: 8080, abort: {}}}"),
        &["12:39: `abort` needs `status`"],
    );
    let s = ok(&step(
        "{http: {port: 8080, abort: {status: 503}, share: 30%, paths: [/api], methods: [get, POST]}}",
    ));
    assert_eq!(
        s.steps[0].faults[0].spec,
        FaultSpec::Http(HttpSpec {
            port: 8080,
            action: HttpAction::Abort { status: 503 },
            share: 30.0,
            paths: vec!["/api".into()],
            methods: vec!["GET".into(), "POST".into()],
            inside: None,
        })
    );
    assert_eq!(
        s.steps[0].faults[0].spec.to_string(),
        "http port 8080: abort 503 for 30% of GET, POST requests to /api"
    );
    let s = ok(&step("{http: {port: 80, delay: 200ms}}"));
    assert_eq!(
        s.steps[0].faults[0].spec.to_string(),
        "http port 80: delay 200ms for 100% of requests"
    );
}

#[test]
fn corrupt_and_duplicate_values() {
    use agent::spec::{CorruptSpec, DuplicateSpec, Protocol};
    let step = |fault: &str| {
        format!("{PRE}steps:\n  - name: s\n    target: api\n    duration: 1s\n    fault: {fault}\n")
    };
    check(
        &step("{corrupt: {to: {hosts: [10.0.0.2]}}}"),
        &["12:22: `corrupt` needs `share`"],
    );
    check(
        &step("{duplicate: {share: 0%}}"),
        &["12:32: share `0%` changes no packet; use more than 0%"],
    );
    check(
        &step("{corrupt: {share: 5}}"),
        &["12:30: share `5` needs a `%`, e.g. `5%`"],
    );
    check(
        &step("{corrupt: {share: 150%}}"),
        &["12:30: share `150%` is outside 0% to 100%"],
    );
    check(
        &step("{corrupt: {share: 5%, rate: 1mbit}}"),
        &["12:34: unknown key `rate`"],
    );
    let s = ok(&step(
        "{corrupt: {share: 5%, to: {hosts: [10.0.0.2], ports: [5432]}, interface: eth0}}",
    ));
    assert_eq!(
        s.steps[0].faults[0].spec,
        FaultSpec::Corrupt(CorruptSpec {
            share: 5.0,
            scope: NetScope {
                to: Some(PeerSelector {
                    hosts: vec!["10.0.0.2".into()],
                    ports: vec![5432],
                    protocol: None,
                }),
                from: None,
                interface: Some("eth0".into()),
                spare_ssh: true,
                inside: None,
            },
        })
    );
    assert_eq!(
        s.steps[0].faults[0].spec.to_string(),
        "corrupt 5% to 10.0.0.2 port 5432, on eth0"
    );
    let s = ok(&step(
        "{duplicate: {share: 0.5%, from: {ports: [8080], protocol: tcp}, spare_ssh: false}}",
    ));
    assert_eq!(
        s.steps[0].faults[0].spec,
        FaultSpec::Duplicate(DuplicateSpec {
            share: 0.5,
            scope: NetScope {
                to: None,
                from: Some(PeerSelector {
                    hosts: Vec::new(),
                    ports: vec![8080],
                    protocol: Some(Protocol::Tcp),
                }),
                interface: None,
                spare_ssh: false,
                inside: None,
            },
        })
    );
}

#[test]
fn monkey_checks() {
    let monkey = |body: &str| {
        format!("{PRE}monkey:\n  target: api\n  fault: {{kill: {{process: {{name: x}}}}}}\n{body}")
    };
    check(
        &monkey("  mean_interval: 1m\n  min_interval: 5m\n"),
        &["12:17: `min_interval` (5m) is longer than `mean_interval` (1m)"],
    );
    check(
        &monkey("  mean_interval: 1m\n  active: {hours: \"9-17\"}\n"),
        &["12:19: invalid hours `9-17`; expected e.g. `09:00-17:00`"],
    );
    check(
        &monkey("  mean_interval: 1m\n  active: {days: [mon, funday]}\n"),
        &["12:24: unknown day `funday`; expected one of mon, tue, wed, thu, fri, sat, sun"],
    );
    check(&monkey(""), &["9:3: `monkey` needs `mean_interval`"]);
    check(
        &monkey("  mean_interval: 1m\n  active: {timezone: Mars/Olympus}\n"),
        &[
            "12:22: unknown time zone `Mars/Olympus`; expected an IANA name like `Europe/Berlin` or `UTC`",
        ],
    );
    check(
        &monkey("  mean_interval: 1m\n  active: {days: []}\n"),
        &["12:11: `active.days` is empty; the monkey would never run"],
    );
}

#[test]
fn a_monkey_holds_its_faults_for_duration() {
    let monkey = |fault: &str, body: &str| {
        format!("{PRE}monkey:\n  target: api\n  fault: {fault}\n  mean_interval: 1m\n{body}")
    };
    // kill needs no duration: it ends at the signal.
    let s = ok(&monkey("{kill: {process: {name: x}}}", ""));
    assert_eq!(s.monkey.unwrap().duration, Duration::ZERO);
    let s = ok(&monkey("{pause: {process: {name: x}}}", "  duration: 2s\n"));
    assert_eq!(s.monkey.unwrap().duration, Duration::from_secs(2));
    check(
        &monkey("{pause: {process: {name: x}}}", ""),
        &["9:3: `monkey` needs `duration` for its `pause` fault"],
    );
    check(
        &monkey("{pause: {process: {name: x}}}", "  duration: 2h\n"),
        &["12:13: duration `2h` of `monkey` is over `max_duration` (1h)"],
    );
}

#[test]
fn variables_are_substituted_before_parsing() {
    // SAFETY of the test: no other test reads this variable.
    let s = ok(&format!(
        "{PRE}steps:\n  - name: \"${{USER_NAME:-s}}\"\n    target: api\n    duration: ${{D}}\n    fault: {{latency: {{delay: \"${{DELAY:-50ms}}\"}}}}\n"
    ));
    assert_eq!(s.steps[0].name, "s");
    assert_eq!(s.steps[0].duration, Duration::from_secs(15));
    check(
        &format!(
            "{PRE}steps:\n  - name: s\n    target: api\n    duration: 1s\n    fault: {{latency: {{delay: \"1${{NOPE_NOT_SET}}\"}}}}\n"
        ),
        &["12:32: unknown variable `NOPE_NOT_SET`"],
    );
    check(&format!("{PRE}description: \"$${{D}}\"\n{STEP}"), &[]);
    let s = ok(&format!("{PRE}description: \"$${{D}} ${{D}}\"\n{STEP}"));
    assert_eq!(s.description.as_deref(), Some("${D} 15s"));
}

#[test]
fn the_environment_backs_variables() {
    let path = std::env::var("PATH").unwrap();
    let s = ok(&format!("{PRE}description: ${{PATH}}\n{STEP}"));
    assert_eq!(s.description, Some(path));
}

#[test]
fn client_certificates_per_host_or_for_all_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(
        &inventory,
        "hosts:\n  db-1: {agent: \"https://10.0.0.21:7411\", cert_file: c/db.pem, key_file: c/db.key}\n  db-2: {agent: \"https://10.0.0.22:7411\"}\n",
    )
    .unwrap();
    let dir_abs = dir.path().canonicalize().unwrap();
    // chaosd's own certificate goes to the hosts that name none.
    let opts = LoadOptions {
        client_cert: Some((
            "/etc/chaosd/chaosd.pem".into(),
            "/etc/chaosd/chaosd.key".into(),
        )),
        ..LoadOptions::default()
    };
    let hosts = load_inventory(&inventory, &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hosts["db-1"].cert_file, Some(dir_abs.join("c/db.pem")));
    assert_eq!(hosts["db-1"].key_file, Some(dir_abs.join("c/db.key")));
    assert_eq!(
        hosts["db-2"].cert_file.as_deref(),
        Some(Path::new("/etc/chaosd/chaosd.pem"))
    );
    let hosts = load_inventory(&inventory, &LoadOptions::default()).unwrap();
    assert_eq!(hosts["db-2"].cert_file, None);

    std::fs::write(
        &inventory,
        "hosts:\n  db-1: {agent: \"https://10.0.0.21:7411\", cert_file: db.pem}\n",
    )
    .unwrap();
    let err = load_inventory(&inventory, &opts).unwrap_err();
    assert_eq!(
        err.problems()[0].message,
        "host `db-1`: `cert_file` and `key_file` go together (the client certificate and its key); give both or neither"
    );
}

#[test]
fn inventories_add_hosts_and_targets() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(
        &inventory,
        "hosts:\n  db-1: {agent: \"https://10.0.0.21:7411\", labels: {role: db}, token_file: db.token}\ntargets:\n  db: {labels: {role: db}}\n",
    )
    .unwrap();
    let opts = LoadOptions {
        inventory: Some(inventory.clone()),
        ..LoadOptions::default()
    };
    let text = format!(
        "{PRE}steps:\n  - {{name: s, target: db, fault: {{kill: {{process: {{name: x}}}}}}}}\n"
    );
    let s = load_str(Path::new("t.yaml"), &text, &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.targets["db"].hosts, ["db-1"]);
    let dir_abs = dir.path().canonicalize().unwrap();
    assert_eq!(s.hosts["db-1"].token_file, Some(dir_abs.join("db.token")));

    std::fs::write(
        &inventory,
        "hosts:\n  api-1: {agent: \"https://10.0.0.21:7411\"}\n",
    )
    .unwrap();
    let err = load_str(Path::new("t.yaml"), &format!("{PRE}{STEP}"), &opts).unwrap_err();
    let p = &err.problems()[0];
    assert_eq!(
        (p.file.as_path(), p.line, p.column),
        (inventory.as_path(), 2, 3)
    );
    assert_eq!(
        p.message,
        "host `api-1` is defined both in the scenario and in the inventory"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("{}:2:3: host `api-1`", inventory.display()))
    );

    std::fs::write(&inventory, "targets:\n  api: {hosts: [api-1]}\n").unwrap();
    let err = load_str(Path::new("t.yaml"), &format!("{PRE}{STEP}"), &opts).unwrap_err();
    assert_eq!(
        err.problems()[0].message,
        "target `api` is defined both in the scenario and in the inventory"
    );

    std::fs::write(&inventory, "hots: {}\n").unwrap();
    let err = load_str(Path::new("t.yaml"), &format!("{PRE}{STEP}"), &opts).unwrap_err();
    assert_eq!(
        err.problems()[0].help.as_deref(),
        Some("did you mean `hosts`?")
    );
}

#[test]
fn several_problems_are_reported_at_once() {
    let err = load_text(&format!(
        "{PRE}steps:\n  - name: s\n    target: nope\n    duration: 5\n    fault: {{kill: {{process: {{name: x}}}}}}\n"
    ))
    .unwrap_err();
    assert_eq!(err.problems().len(), 2);
    let text = err.to_string();
    assert!(text.contains("scenarios/t.yaml:10:13: unknown target or host `nope`\n   |\n10 |     target: nope\n   |             ^^^^"), "{text}");
    assert!(
        text.contains("scenarios/t.yaml:11:15: duration `5` has no unit"),
        "{text}"
    );
}

#[test]
fn a_missing_file_cannot_be_read() {
    let err = load(Path::new("does/not/exist.yaml"), &LoadOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("does/not/exist.yaml: cannot read: "),
        "{err}"
    );
}

#[test]
fn invalid_utf8_is_refused_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    let mut bytes = b"version: 1\nname: quick\ndescription: \"\xc3\xa9 quick".to_vec();
    bytes.extend_from_slice(b"\xff\xfestart\"\n");
    std::fs::write(&path, &bytes).unwrap();
    let err = load(&path, &LoadOptions::default()).unwrap_err();
    let p = &err.problems()[0];
    assert_eq!((p.line, p.column), (3, 22), "{err}");
    assert_eq!(
        p.message,
        "invalid UTF-8 at byte 45 (line 3, column 22): byte 0xff does not begin a valid character"
    );
    assert!(err.to_string().contains("save the file as UTF-8"), "{err}");

    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(&inventory, b"hosts:\n  a\xfe: {agent: \"https://a:1\"}\n").unwrap();
    let opts = LoadOptions {
        inventory: Some(inventory.clone()),
        ..LoadOptions::default()
    };
    let err = load_inventory(&inventory, &opts).unwrap_err();
    assert_eq!(
        err.problems()[0].message,
        "invalid UTF-8 at byte 10 (line 2, column 4): byte 0xfe does not begin a valid character"
    );
}

#[test]
fn every_example_scenario_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut failures = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml")
            && let Err(err) = load(&path, &LoadOptions::default())
        {
            failures.push(err.to_string());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_load_probe_sends_for_its_every_and_takes_the_tolerance_as_its_bar() {
    let s = ok(&format!(
        "{PRE}steady_state:
  - name: users
    load: {{url: \"http://127.0.0.1:8080/\", rate: 20/s}}
    every: 2s
    window: 2s
    tolerance: 95%
  - name: strict
    load: {{url: \"http://127.0.0.1:8080/\", rate: 600/m, timeout: 300ms, method: post}}
    expect: {{status: 2xx, success: 100%, max_latency: 200ms}}
{STEP}"
    ));
    let ProbeKind::Load(load) = &s.steady_state[0].kind else {
        panic!()
    };
    assert_eq!(
        (load.rate, load.span, load.timeout, load.success),
        (20.0, Duration::from_secs(2), Duration::from_secs(1), 95.0)
    );
    assert_eq!(load.requests(), 40);
    let ProbeKind::Load(strict) = &s.steady_state[1].kind else {
        panic!()
    };
    assert_eq!((strict.rate, strict.success), (10.0, 100.0));
    assert_eq!(strict.method, "POST");
    assert_eq!(strict.expect.status, vec![StatusMatch::Class(2)]);
}

#[test]
fn a_wrong_load_probe_points_at_the_value() {
    check(
        &format!(
            "{PRE}steady_state:
  - name: users
    load: {{url: \"http://127.0.0.1:8080/\", rate: 20/h}}
  - name: many
    load: {{url: \"http://127.0.0.1:8080/\", rate: 1000/s}}
    every: 20s
  - name: nothing
    load: {{url: \"http://127.0.0.1:8080/\"}}
    expect: {{success: 95, exit: 0}}
{STEP}"
        ),
        &[
            "10:49: rate `20/h` is not like `20/s` or `600/m`",
            "12:49: probe `many` would send 20000 requests a sample (rate × every), more than 10000",
            "15:11: a `load` probe needs `rate`",
            "16:23: share `95` needs a `%`, e.g. `95%`",
            "16:33: `exit` does not apply to a `load` probe",
        ][..],
    );
}

#[test]
fn objectives_at_the_top_are_every_steps_and_a_step_replaces_them_key_by_key() {
    let s = ok(&format!(
        "{PRE}objectives: {{max_outage: 10s, max_failed: 1%}}\nsteps:\n  - name: a\n    target: api\n    fault: {{kill: {{process: {{name: x}}}}}}\n  - name: b\n    target: api\n    fault: {{kill: {{process: {{name: x}}}}}}\n    objectives: {{max_outage: 2s, max_error: 30s}}\n"
    ));
    let top = model::Objectives {
        max_outage: Some(Duration::from_secs(10)),
        max_failed: Some(1.0),
        max_error: None,
    };
    assert_eq!(s.objectives, top);
    assert_eq!(s.steps[0].objectives, top);
    assert_eq!(
        s.steps[1].objectives,
        model::Objectives {
            max_outage: Some(Duration::from_secs(2)),
            max_failed: Some(1.0),
            max_error: Some(Duration::from_secs(30)),
        }
    );
    // None at all: nothing to judge.
    assert!(ok(&format!("{PRE}{STEP}")).steps[0].objectives.is_empty());
}

#[test]
fn wrong_objectives_point_at_the_value() {
    check(
        &format!("{PRE}objectives: {{max_outage: 10}}\n{STEP}"),
        &["8:26: duration `10` has no unit; write e.g. `10s` or `10ms`"],
    );
    check(
        &format!("{PRE}objectives: {{max_failed: 1}}\n{STEP}"),
        &["8:26: share `1` needs a `%`, e.g. `1%`"],
    );
    check(
        &format!("{PRE}objectives: {{}}\n{STEP}"),
        &["8:13: `objectives` is empty"],
    );
    let err = load_text(&format!("{PRE}objectives: {{max_outgae: 10s}}\n{STEP}"))
        .expect_err("a misspelt objective");
    assert!(
        err.to_string().contains("did you mean `max_outage`"),
        "{err}"
    );
}

#[test]
fn action_and_manual_steps_take_their_defaults() {
    let s = ok(&format!(
        "{PRE}steps:\n  - name: promote\n    action: {{run: [/bin/echo, hi], on: api}}\n  - name: ask\n    manual: {{prompt: \"ok?\"}}\n  - name: here\n    action: {{run: \"exit 0\", timeout: 3s}}\n"
    ));
    let a = s.steps[0].action.as_ref().expect("an action");
    assert_eq!(a.on.as_deref(), Some("api"));
    assert_eq!(a.timeout, Duration::from_secs(300));
    assert!(s.steps[0].faults.is_empty());
    assert_eq!(s.steps[0].duration, Duration::ZERO);
    let m = s.steps[1].manual.as_ref().expect("a manual step");
    assert_eq!(
        (m.prompt.as_str(), m.timeout),
        ("ok?", Duration::from_secs(1800))
    );
    let here = s.steps[2].action.as_ref().expect("an action");
    assert_eq!(here.on, None);
    assert_eq!(here.timeout, Duration::from_secs(3));
    assert_eq!(here.run, Command::Shell("exit 0".into()));
}

#[test]
fn a_step_has_exactly_one_of_fault_faults_action_manual() {
    check(
        &format!("{PRE}steps:\n  - name: s\n    action: {{run: [x]}}\n    manual: {{prompt: p}}\n"),
        &["11:13: step `s` has both `action` and `manual`; give one"],
    );
    check(
        &format!(
            "{PRE}steps:\n  - name: s\n    target: api\n    fault: {{kill: {{process: {{name: x}}}}}}\n    action: {{run: [x]}}\n"
        ),
        &["12:13: step `s` has both `fault` and `action`; give one"],
    );
}

#[test]
fn duration_and_recover_within_belong_to_steps_with_faults() {
    check(
        &format!(
            "{PRE}steps:\n  - name: s\n    action: {{run: [x]}}\n    duration: 5s\n    recover_within: 2s\n"
        ),
        &[
            "11:15: `duration` belongs to steps with faults; step `s` is an `action` step",
            "12:21: `recover_within` belongs to steps with faults; step `s` is an `action` step",
        ],
    );
    check(
        &format!("{PRE}steps:\n  - name: s\n    target: api\n    manual: {{prompt: p}}\n"),
        &["10:13: step `s` is a `manual` step, so it takes no `target`"],
    );
}

#[test]
fn actions_and_manual_steps_are_checked() {
    check(
        &format!("{PRE}steps:\n  - name: s\n    action: {{timeout: 1s}}\n"),
        &["10:13: the action of step `s` needs `run`"],
    );
    check(
        &format!("{PRE}steps:\n  - name: s\n    action: {{run: [x], on: nowhere, timeout: 0s}}\n"),
        &[
            "10:28: unknown target or host `nowhere`",
            "10:46: `timeout` must be more than 0s",
        ],
    );
    check(
        &format!("{PRE}steps:\n  - name: s\n    manual: {{timeout: 1m}}\n"),
        &["10:13: `manual` needs `prompt`"],
    );
    check(
        &format!("{PRE}steps:\n  - name: s\n    manual: {{prompt: \" \"}}\n"),
        &["10:22: `prompt` is empty: say what the person should check before answering"],
    );
}

#[test]
fn start_after_must_be_shorter_than_duration() {
    let s = ok(&format!(
        "{PRE}steps:\n  - name: s\n    faults:\n      - {{target: api, pause: {{process: {{name: x}}}}}}\n      - {{target: api-1, pause: {{process: {{name: y}}}}, start_after: 1s}}\n      - {{action: {{run: [/bin/true]}}, start_after: 2s}}\n    duration: 3s\n"
    ));
    let step = &s.steps[0];
    assert_eq!(step.faults[0].start_after, Duration::ZERO);
    assert_eq!(step.faults[1].start_after, Duration::from_secs(1));
    assert_eq!(step.actions.len(), 1);
    assert_eq!(step.actions[0].start_after, Duration::from_secs(2));
    check(
        &format!(
            "{PRE}steps:\n  - name: s\n    faults:\n      - {{target: api, pause: {{process: {{name: x}}}}, start_after: 3s}}\n    duration: 3s\n"
        ),
        &[
            "11:65: `start_after` 3s of an entry of step `s` is not shorter than its `duration` (3s)",
        ],
    );
    // A kill without `duration` is held 0s: nothing can start after it.
    check(
        &format!(
            "{PRE}steps:\n  - name: s\n    faults:\n      - {{target: api, kill: {{process: {{name: x}}}}}}\n      - {{action: {{run: [x]}}, start_after: 1s}}\n"
        ),
        &[
            "12:43: `start_after` 1s of an entry of step `s` is not shorter than its `duration` (0s)",
        ],
    );
}

#[test]
fn action_entries_of_faults_are_checked() {
    check(
        &format!(
            "{PRE}steps:\n  - name: s\n    faults:\n      - {{target: api, action: {{run: [x]}}}}\n    duration: 3s\n"
        ),
        &[
            "11:7: step `s` has only actions in `faults`",
            "11:18: an `action` entry of step `s` takes no `target`",
        ],
    );
    check(
        &format!(
            "{PRE}steps:\n  - name: s\n    faults:\n      - {{target: api, kill: {{process: {{name: x}}}}}}\n      - {{kill: {{process: {{name: x}}}}, action: {{run: [x]}}}}\n"
        ),
        &[
            "12:46: an entry of `faults` of step `s` has both `kill` and `action`; give one per entry",
        ],
    );
}

#[test]
fn a_file_over_the_size_limit_is_refused_before_it_is_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    std::fs::write(&path, vec![b'#'; (MAX_FILE_BYTES + 1) as usize]).unwrap();
    let err = load(&path, &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("over 4 MiB"), "{err}");
    let err = load_inventory(&path, &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("over 4 MiB"), "{err}");
    // Deeply nested input is refused by the parser's own bound, with its position.
    let deep = format!(
        "version: 1\nname: deep\nsteps: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let err = load_text(&deep).unwrap_err();
    assert!(err.to_string().contains("recursion limit"), "{err}");
}

#[test]
fn dns_values() {
    use agent::spec::{DnsAnswer, DnsSpec};
    let step = |fault: &str| {
        format!("{PRE}steps:\n  - name: s\n    target: api\n    duration: 1s\n    fault: {fault}\n")
    };
    check(
        &step("{dns: {answer: nxdomain}}"),
        &[
            "12:18: `dns` needs `names`: the names or globs whose queries it answers, e.g. `[db.internal, \"*.svc.local\"]`",
        ],
    );
    check(
        &step("{dns: {names: [], answer: nxdomain}}"),
        &["12:18: `dns.names` is empty; name at least one, e.g. `[db.internal]`"],
    );
    check(
        &step("{dns: {names: [db.internal]}}"),
        &["12:18: `dns` needs an `answer`, a `delay`, or both"],
    );
    check(
        &step("{dns: {names: [db internal], answer: nxdomain}}"),
        &[
            "12:27: `db internal` has ` `: a name or glob holds letters, digits, `-`, `_`, `.` and `*`",
        ],
    );
    check(
        &step("{dns: {names: [db.internal], answer: nxdomian}}"),
        &[
            "12:49: `nxdomian` is not a DNS answer; give `nxdomain`, `servfail`, `refused`, `timeout` or `{address: A}`",
        ],
    );
    check(
        &step("{dns: {names: [db.internal], answer: {address: 10.9.9}}}"),
        &["12:59: `10.9.9` is not an IPv4 or IPv6 address"],
    );
    check(
        &step("{dns: {names: [db.internal], delay: 2m}}"),
        &["12:48: delay `2m` is outside 1ms to 60s"],
    );
    check(
        &step("{dns: {names: [db.internal], answer: {adress: 10.9.9.9}}}"),
        &["12:50: unknown key `adress`"],
    );
    let s = ok(&step(
        "{dns: {names: [DB.internal., \"*.svc.local\"], answer: nxdomain, delay: 300ms}}",
    ));
    assert_eq!(
        s.steps[0].faults[0].spec,
        FaultSpec::Dns(DnsSpec {
            names: vec!["db.internal".into(), "*.svc.local".into()],
            answer: Some(DnsAnswer::Nxdomain),
            delay: Some(std::time::Duration::from_millis(300)),
            inside: None,
        })
    );
    assert_eq!(
        s.steps[0].faults[0].spec.to_string(),
        "dns nxdomain 300ms late for db.internal, *.svc.local"
    );
    let s = ok(&step(
        "{dns: {names: [db.internal], answer: {address: \"fd00::9\"}}}",
    ));
    assert_eq!(
        s.steps[0].faults[0].spec.to_string(),
        "dns address fd00::9 for db.internal"
    );
}
