//! `chaosctl plan FILE`: what a run would do, with every pick drawn from the seed. Injects nothing.
//! For a monkey file: the monkey, and the next few faults it would draw if started now.
//! Where a fault's processes are found by container, cgroup or unit, or it goes `inside:` them,
//! the processes the built-in `local` agent would find now ([`processes`]).

mod processes;

use std::fmt::Write as _;
use std::path::Path;

use chaosd::engine::plan::{Plan, choose_seed, longest_window};
use chaosd::monkey::{Schedule, pick_hosts};
use chaosd::scenario::format_duration;
use chaosd::scenario::model::{Monkey, Scenario};
use chrono::{DateTime, Utc};

pub use self::processes::LocalHost;
use super::{EXIT_OK, Failure, load_scenario};
use crate::args::{LoadArgs, Output};

/// How many of a monkey's next faults `plan` shows.
const MONKEY_PREVIEW: usize = 5;

/// Where a plan's seed came from, which says whether a run will make the same picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedOrigin {
    /// `--seed N`.
    Flag,
    /// `settings.seed` in the file.
    File,
    /// Drawn at random for a `plan`: a run draws another one.
    RandomForPlan,
    /// Drawn at random for the run about to start (its confirmation).
    RandomForRun,
}

impl SeedOrigin {
    pub fn of(given: Option<u64>, scenario: &Scenario, for_run: bool) -> SeedOrigin {
        match (given, scenario.settings.seed, for_run) {
            (Some(_), _, _) => SeedOrigin::Flag,
            (None, Some(_), _) => SeedOrigin::File,
            (None, None, false) => SeedOrigin::RandomForPlan,
            (None, None, true) => SeedOrigin::RandomForRun,
        }
    }
}

pub fn run(file: &Path, load: &LoadArgs, seed: Option<u64>, output: Output) -> Result<u8, Failure> {
    let scenario = load_scenario(file, load)?;
    let origin = SeedOrigin::of(seed, &scenario, false);
    let seed = choose_seed(seed, &scenario);
    let plan = Plan::resolve(&scenario, seed);
    for warning in chaosd::scenario::lint::warnings(&scenario) {
        errln!("{}: warning: {warning}", file.display());
    }
    match output {
        Output::Text => out!("{}", render(&scenario, &plan, origin, LocalHost::Here)),
        Output::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&to_json(&scenario, &plan, origin, LocalHost::Here))
                .expect("plan serializes")
        ),
    }
    Ok(EXIT_OK)
}

/// The seed line's note: whether a run makes these picks, and how to make it.
fn seed_note(origin: SeedOrigin, seed: u64, scenario: &Scenario) -> String {
    let run = if scenario.monkey.is_some() {
        "monkey"
    } else {
        "run"
    };
    match origin {
        SeedOrigin::Flag => "(--seed)".to_string(),
        SeedOrigin::File => "(settings.seed in the file)".to_string(),
        SeedOrigin::RandomForRun => "(drawn at random for this run)".to_string(),
        SeedOrigin::RandomForPlan => format!(
            "(drawn at random for this plan: the picks below are this seed's; a {run} without \
             --seed draws its own seed and may pick otherwise; `chaosctl {run} {} --seed {seed}` \
             makes these picks)",
            scenario.path.display()
        ),
    }
}

/// The plan as people read it.
pub fn render(scenario: &Scenario, plan: &Plan, origin: SeedOrigin, local: LocalHost) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scenario  {} ({})",
        scenario.name,
        scenario.path.display()
    );
    if let Some(description) = &scenario.description {
        let _ = writeln!(out, "          {description}");
    }
    let _ = writeln!(
        out,
        "seed      {} {}",
        plan.seed,
        seed_note(origin, plan.seed, scenario)
    );
    let _ = writeln!(out, "\nhosts");
    for (name, host) in &scenario.hosts {
        let agent = host.agent.as_deref().unwrap_or("built-in local agent");
        let _ = writeln!(out, "  {name:<16} {agent}");
    }
    if !scenario.targets.is_empty() {
        let _ = writeln!(out, "\ntargets (picked with the seed)");
        for (name, target) in &scenario.targets {
            let picked = plan.hosts_of(name);
            let _ = writeln!(
                out,
                "  {name:<16} pick {} of [{}] -> [{}]",
                target.pick,
                target.hosts.join(", "),
                picked.join(", ")
            );
        }
    }
    if !scenario.setup.is_empty() {
        let _ = writeln!(out, "\nsetup");
        for s in &scenario.setup {
            let how = if s.background { " (background)" } else { "" };
            let _ = writeln!(out, "  {}{how}: {}", s.name, s.run);
        }
    }
    let _ = writeln!(out, "\nsteady state");
    if scenario.steady_state.is_empty() {
        let _ = writeln!(out, "  (no probes: the hypothesis always holds)");
    }
    for p in &scenario.steady_state {
        let _ = writeln!(
            out,
            "  {} [{} on {}] every {}, window {} ({} samples), tolerance {}%",
            p.name,
            p.kind.kind_name(),
            plan.hosts_of(&p.on).join(", "),
            format_duration(p.every),
            format_duration(p.window),
            p.window_samples(),
            p.tolerance
        );
    }
    if !scenario.guardrails.is_empty() {
        let _ = writeln!(out, "\nguardrails (a breach aborts the run)");
        for p in &scenario.guardrails {
            let _ = writeln!(
                out,
                "  {} [{} on {}] window {} samples, tolerance {}%",
                p.name,
                p.kind.kind_name(),
                plan.hosts_of(&p.on).join(", "),
                p.window_samples(),
                p.tolerance
            );
        }
    }
    if let Some(monkey) = &scenario.monkey {
        render_monkey(&mut out, scenario, monkey, plan.seed, Utc::now());
    } else {
        let _ = writeln!(out, "\nsteps");
        for step in &plan.steps {
            let where_ = |a: &chaosd::engine::plan::PlannedAction| match &a.on {
                None => "the controller".to_string(),
                Some(_) => format!("[{}]", a.hosts.join(", ")),
            };
            if let Some(a) = &step.action {
                let _ = writeln!(
                    out,
                    "  {}. {} (action, within {}; recover within {})\n     run `{}` on {}",
                    step.index + 1,
                    step.name,
                    format_duration(a.timeout),
                    format_duration(step.recover_within),
                    a.run,
                    where_(a)
                );
                continue;
            }
            if let Some(m) = &step.manual {
                let _ = writeln!(
                    out,
                    "  {}. {} (manual, answer within {}; recover within {})\n     ask: {}",
                    step.index + 1,
                    step.name,
                    format_duration(m.timeout),
                    format_duration(step.recover_within),
                    m.prompt
                );
                continue;
            }
            let _ = writeln!(
                out,
                "  {}. {} (hold {}, recover within {})",
                step.index + 1,
                step.name,
                format_duration(step.duration),
                format_duration(step.recover_within)
            );
            let late = |d: std::time::Duration| {
                if d.is_zero() {
                    String::new()
                } else {
                    format!(", {} in", format_duration(d))
                }
            };
            for f in &step.faults {
                let _ = writeln!(
                    out,
                    "     {} on [{}]{}",
                    f.spec,
                    f.hosts.join(", "),
                    late(f.start_after)
                );
                if let Some(selector) = processes::selector_of(&f.spec) {
                    let found = processes::on_hosts(scenario, &f.hosts, &f.spec, selector, local);
                    out.push_str(&processes::render(&found, "       "));
                }
            }
            for a in &step.actions {
                let _ = writeln!(
                    out,
                    "     run `{}` on {}{}",
                    a.run,
                    where_(a),
                    late(a.start_after)
                );
            }
        }
    }
    if !scenario.teardown.is_empty() {
        let _ = writeln!(out, "\nteardown");
        for t in &scenario.teardown {
            let _ = writeln!(out, "  {}: {}", t.name, t.run);
        }
    }
    if scenario.monkey.is_some() {
        let _ = writeln!(
            out,
            "\nplanned time  until stopped (Ctrl-C, `chaosctl abort`) or `--for DURATION`"
        );
        return out;
    }
    let time = plan.time(scenario);
    let _ = writeln!(
        out,
        "\nplanned time  {} to {} (checks of {} each; setup and teardown not counted)",
        format_duration(time.at_least),
        format_duration(time.at_most),
        format_duration(longest_window(&scenario.steady_state)),
    );
    out
}

/// A monkey's next faults if it started at `now` with `seed`: times and hosts, as a run draws
/// them (the gaps are counted from the start, so a later start shifts them all).
fn monkey_preview(
    scenario: &Scenario,
    monkey: &Monkey,
    seed: u64,
    now: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, Vec<String>)> {
    let (candidates, pick) = scenario.resolve_target(&monkey.target).unwrap_or_default();
    let mut schedule = Schedule::new(monkey, seed, now);
    (0..MONKEY_PREVIEW)
        .map_while(|number| {
            let at = schedule.next_fault()?;
            Some((at, pick_hosts(seed, number, &candidates, pick)))
        })
        .collect()
}

fn render_monkey(
    out: &mut String,
    scenario: &Scenario,
    monkey: &Monkey,
    seed: u64,
    now: DateTime<Utc>,
) {
    let (candidates, pick) = scenario.resolve_target(&monkey.target).unwrap_or_default();
    let _ = writeln!(out, "\nmonkey (random faults until stopped)");
    let _ = writeln!(out, "  fault         {}", monkey.fault);
    let _ = writeln!(
        out,
        "  target        {} (pick {pick} of [{}], drawn anew for each fault)",
        monkey.target,
        candidates.join(", ")
    );
    let _ = writeln!(
        out,
        "  each fault    held {}, then recovered within {}",
        format_duration(monkey.duration),
        format_duration(scenario.settings.recover_within)
    );
    let _ = writeln!(
        out,
        "  gaps          {} on average, at least {}",
        format_duration(monkey.mean_interval),
        format_duration(monkey.min_interval)
    );
    let active = match &monkey.active {
        Some(a) => format!(
            "{} {:02}:{:02}-{:02}:{:02} {}",
            a.days.join(","),
            a.start_minute / 60,
            a.start_minute % 60,
            a.end_minute / 60,
            a.end_minute % 60,
            a.timezone.as_deref().unwrap_or("UTC")
        ),
        None => "always".to_string(),
    };
    let _ = writeln!(out, "  active        {active}");
    if let Some(max) = monkey.max_per_day {
        let _ = writeln!(out, "  at most       {max} a day");
    }
    let _ = writeln!(
        out,
        "  next faults   if started now ({} UTC), with seed {seed}:",
        now.format("%Y-%m-%d %H:%M:%S")
    );
    for (i, (at, hosts)) in monkey_preview(scenario, monkey, seed, now)
        .into_iter()
        .enumerate()
    {
        let _ = writeln!(
            out,
            "    {}. {} UTC (+{}) on [{}]",
            i + 1,
            at.format("%Y-%m-%d %H:%M:%S"),
            format_duration(std::time::Duration::from_secs(
                (at - now).num_seconds().max(0) as u64
            )),
            hosts.join(", ")
        );
    }
}

fn to_json(
    scenario: &Scenario,
    plan: &Plan,
    origin: SeedOrigin,
    local: LocalHost,
) -> serde_json::Value {
    let time = plan.time(scenario);
    let now = Utc::now();
    let monkey = scenario.monkey.as_ref().map(|m| {
        serde_json::json!({
            "target": m.target,
            "kind": m.fault.kind().as_str(),
            "fault": m.fault.to_string(),
            "spec": m.fault,
            "duration_ms": m.duration.as_millis() as u64,
            "mean_interval_ms": m.mean_interval.as_millis() as u64,
            "min_interval_ms": m.min_interval.as_millis() as u64,
            "active": m.active.as_ref().map(|a| serde_json::json!({
                "days": a.days,
                "start_minute": a.start_minute,
                "end_minute": a.end_minute,
                "timezone": a.timezone,
            })),
            "max_per_day": m.max_per_day,
            "if_started_at": now,
            "next_faults": monkey_preview(scenario, m, plan.seed, now)
                .into_iter()
                .map(|(at, hosts)| serde_json::json!({"at": at, "hosts": hosts}))
                .collect::<Vec<_>>(),
        })
    });
    serde_json::json!({
        "scenario": scenario.name,
        "path": scenario.path.display().to_string(),
        "seed": plan.seed.to_string(),
        "seed_from": match origin {
            SeedOrigin::Flag => "flag",
            SeedOrigin::File => "file",
            SeedOrigin::RandomForPlan | SeedOrigin::RandomForRun => "random",
        },
        "monkey": monkey,
        "picks": plan.picks,
        "steps": plan.steps.iter().map(|s| serde_json::json!({
            "index": s.index,
            "name": s.name,
            "duration_ms": s.duration.as_millis() as u64,
            "recover_within_ms": s.recover_within.as_millis() as u64,
            "faults": s.faults.iter().map(|f| serde_json::json!({
                "target": f.target,
                "hosts": f.hosts,
                "kind": f.spec.kind().as_str(),
                "fault": f.spec.to_string(),
                "spec": f.spec,
                "start_after_ms": f.start_after.as_millis() as u64,
                "processes": processes::selector_of(&f.spec).map(|selector| {
                    processes::to_json(&processes::on_hosts(scenario, &f.hosts, &f.spec, selector, local))
                }),
            })).collect::<Vec<_>>(),
            "actions": s.action.iter().chain(&s.actions).map(|a| serde_json::json!({
                "run": a.run.to_string(),
                "on": a.on,
                "hosts": a.hosts,
                "timeout_ms": a.timeout.as_millis() as u64,
                "start_after_ms": a.start_after.as_millis() as u64,
            })).collect::<Vec<_>>(),
            "manual": s.manual.as_ref().map(|m| serde_json::json!({
                "prompt": m.prompt,
                "timeout_ms": m.timeout.as_millis() as u64,
            })),
        })).collect::<Vec<_>>(),
        "planned_ms": {"at_least": time.at_least.as_millis() as u64, "at_most": time.at_most.as_millis() as u64},
    })
}
