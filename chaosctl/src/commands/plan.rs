//! `chaosctl plan FILE`: what a run would do, with every pick drawn from the seed. Injects nothing.

use std::fmt::Write as _;
use std::path::Path;

use chaosd::engine::plan::{Plan, choose_seed, longest_window};
use chaosd::scenario::format_duration;
use chaosd::scenario::model::Scenario;

use super::{EXIT_OK, Failure, load_scenario};
use crate::args::{LoadArgs, Output};

pub fn run(file: &Path, load: &LoadArgs, seed: Option<u64>, output: Output) -> Result<u8, Failure> {
    let scenario = load_scenario(file, load)?;
    let seed = choose_seed(seed, &scenario);
    let plan = Plan::resolve(&scenario, seed);
    match output {
        Output::Text => out!("{}", render(&scenario, &plan)),
        Output::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&to_json(&scenario, &plan)).expect("plan serializes")
        ),
    }
    Ok(EXIT_OK)
}

/// The plan as people read it.
pub fn render(scenario: &Scenario, plan: &Plan) -> String {
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
    let _ = writeln!(out, "seed      {}", plan.seed);
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
    let _ = writeln!(out, "\nsteps");
    for step in &plan.steps {
        let _ = writeln!(
            out,
            "  {}. {} (hold {}, recover within {})",
            step.index + 1,
            step.name,
            format_duration(step.duration),
            format_duration(step.recover_within)
        );
        for f in &step.faults {
            let _ = writeln!(out, "     {} on [{}]", f.spec, f.hosts.join(", "));
        }
    }
    if !scenario.teardown.is_empty() {
        let _ = writeln!(out, "\nteardown");
        for t in &scenario.teardown {
            let _ = writeln!(out, "  {}: {}", t.name, t.run);
        }
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

fn to_json(scenario: &Scenario, plan: &Plan) -> serde_json::Value {
    let time = plan.time(scenario);
    serde_json::json!({
        "scenario": scenario.name,
        "path": scenario.path.display().to_string(),
        "seed": plan.seed.to_string(),
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
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "planned_ms": {"at_least": time.at_least.as_millis() as u64, "at_most": time.at_most.as_millis() as u64},
    })
}
