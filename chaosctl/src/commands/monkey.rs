//! `chaosctl monkey FILE`: random faults from a monkey file on this machine's agents until
//! Ctrl-C or `--for`, through the same start, signals and report as `chaosctl run`.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use chaosd::engine::plan::choose_seed;
use chaosd::monkey::{self, MonkeySpec, SystemClock};
use chaosd::scenario::format_duration;
use chaosd::scenario::model::Scenario;

use super::run::{Launch, confirm, launch};
use super::{EXIT_OK, Failure, load_scenario};
use crate::args::MonkeyArgs;
use crate::state;

pub async fn run(args: MonkeyArgs, state_dir: Option<&Path>) -> Result<u8, Failure> {
    let scenario = load_scenario(&args.file, &args.load)?;
    if scenario.monkey.is_none() {
        return Err(Failure::Invalid(anyhow::anyhow!(
            "{}: this file has `steps:`, not `monkey:`; run it with `chaosctl run`",
            args.file.display()
        )));
    }
    let seed = choose_seed(args.seed, &scenario);
    let state_dir = state::state_dir(state_dir)?;
    let (agent, recovered) = state::open_agent(&state_dir)?;
    let store = state::open_store(&state_dir)?;

    if !args.yes && std::io::stdin().is_terminal() {
        err!("{}", describe(&scenario, seed, args.run_for));
        if !confirm("\nStart the monkey? [y/N] ").await {
            errln!("chaosctl: not started; nothing was injected");
            return Ok(EXIT_OK);
        }
    }
    let options = Launch {
        report_dir: &args.report_dir,
        labels: &args.labels,
        output: args.output,
        dry_run: false,
        state_dir: &state_dir,
    };
    let run_for = args.run_for;
    launch(scenario, seed, options, &store, agent, recovered, |run| {
        monkey::run(
            run.scenario,
            MonkeySpec {
                run: run.spec,
                run_for,
            },
            run.hosts,
            run.report_dir,
            run.observer,
            run.abort,
            Arc::new(SystemClock),
            run.recovered,
        )
    })
    .await
}

/// What the monkey will do, for the question before it starts.
fn describe(scenario: &Scenario, seed: u64, run_for: Option<std::time::Duration>) -> String {
    let Some(m) = &scenario.monkey else {
        return String::new();
    };
    let hosts = scenario
        .resolve_target(&m.target)
        .map(|(hosts, pick)| format!("pick {pick} of [{}]", hosts.join(", ")))
        .unwrap_or_default();
    let mut out = format!(
        "scenario  {} ({})\nseed      {seed}\nmonkey    {} on `{}` ({hosts})\n          every {} on average, at least {} apart",
        scenario.name,
        scenario.path.display(),
        m.fault,
        m.target,
        format_duration(m.mean_interval),
        format_duration(m.min_interval),
    );
    if let Some(a) = &m.active {
        out.push_str(&format!(
            "\n          on {} from {:02}:{:02} to {:02}:{:02} ({})",
            a.days.join(", "),
            a.start_minute / 60,
            a.start_minute % 60,
            a.end_minute / 60,
            a.end_minute % 60,
            a.timezone.as_deref().unwrap_or("UTC")
        ));
    }
    if let Some(n) = m.max_per_day {
        out.push_str(&format!("\n          at most {n} a day"));
    }
    out.push_str(&match run_for {
        Some(d) => format!("\n          for {}\n", format_duration(d)),
        None => "\n          until Ctrl-C\n".to_string(),
    });
    out
}
