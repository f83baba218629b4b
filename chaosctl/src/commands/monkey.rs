//! `chaosctl monkey FILE`: random faults from a monkey file on this machine's agents until
//! Ctrl-C or `--for`, through the same start, signals and report as `chaosctl run`.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use chaosd::monkey::{self, MonkeySpec, SystemClock};
use chaosd::scenario::format_duration;
use chaosd::scenario::model::Scenario;

use super::run::{Kind, confirm, launch, start};
use super::{EXIT_OK, Failure};
use crate::args::MonkeyArgs;

pub async fn run(args: MonkeyArgs, state_dir: Option<&Path>) -> Result<u8, Failure> {
    let (scenario, seed, local) =
        start(&args.file, &args.load, args.seed, Kind::Monkey, state_dir).await?;
    if !args.launch.yes && std::io::stdin().is_terminal() {
        err!("{}", describe(&scenario, seed, args.run_for));
        if !confirm("\nStart the monkey? [y/N] ").await {
            errln!("chaosctl: not started; nothing was injected");
            return Ok(EXIT_OK);
        }
    }
    let run_for = args.run_for;
    launch(scenario, seed, &args.launch, false, local, |run| {
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
