//! `chaosctl runs`: the run history, newest first.

use std::path::Path;

use super::{EXIT_OK, Failure};
use crate::args::Output;
use crate::state;

pub fn run(state_dir: Option<&Path>, limit: usize, output: Output) -> Result<u8, Failure> {
    let state_dir = state::state_dir(state_dir)?;
    state::open_agent(&state_dir)?;
    let store = state::open_store(&state_dir)?;
    let runs = store.list(limit)?;
    match output {
        Output::Json => {
            let rows: Vec<_> = runs
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "run_id": r.run_id,
                        "scenario": r.scenario,
                        "scenario_path": r.scenario_path,
                        "verdict": r.verdict.map(|v| v.as_str()).unwrap_or("running"),
                        "cause": r.cause,
                        "exit_code": r.exit_code,
                        "started_at": r.started_at,
                        "ended_at": r.ended_at,
                        "labels": r.labels,
                        "dry_run": r.dry_run,
                        "report_dir": r.report_dir,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).expect("runs serialize")
            );
        }
        Output::Text => {
            if runs.is_empty() {
                println!("no runs yet; start one with `chaosctl run FILE`");
                return Ok(EXIT_OK);
            }
            println!(
                "{:<24}  {:<28}  {:<12}  STARTED (UTC)",
                "RUN", "SCENARIO", "VERDICT"
            );
            for r in &runs {
                let verdict = r.verdict.map(|v| v.as_str()).unwrap_or("running");
                let dry = if r.dry_run { " (dry run)" } else { "" };
                println!(
                    "{:<24}  {:<28}  {:<12}  {}{dry}",
                    r.run_id,
                    r.scenario,
                    verdict,
                    r.started_at.format("%Y-%m-%d %H:%M:%S")
                );
            }
        }
    }
    Ok(EXIT_OK)
}
