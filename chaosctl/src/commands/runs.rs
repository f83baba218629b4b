//! `chaosctl runs`: the run history, newest first.

use std::path::Path;

use chaosd::service::api::RunSummary;

use super::{EXIT_OK, Failure};
use crate::args::Output;
use crate::state;

pub fn run(state_dir: Option<&Path>, limit: usize, output: Output) -> Result<u8, Failure> {
    let state_dir = state::state_dir(state_dir)?;
    state::open_agent(&state_dir)?;
    let store = state::open_store(&state_dir)?;
    let runs: Vec<RunSummary> = store.list(limit)?.iter().map(RunSummary::from).collect();
    print(&runs, output);
    Ok(EXIT_OK)
}

/// The history as a table (text) or a JSON array; chaosd's history (`--server`) prints the same.
pub fn print(runs: &[RunSummary], output: Output) {
    match output {
        Output::Json => outln!(
            "{}",
            serde_json::to_string_pretty(runs).expect("runs serialize")
        ),
        Output::Text => {
            if runs.is_empty() {
                outln!("no runs yet; start one with `chaosctl run FILE`");
                return;
            }
            outln!(
                "{:<24}  {:<28}  {:<12}  STARTED (UTC)",
                "RUN",
                "SCENARIO",
                "VERDICT"
            );
            for r in runs {
                let dry = if r.dry_run { " (dry run)" } else { "" };
                outln!(
                    "{:<24}  {:<28}  {:<12}  {}{dry}",
                    r.run_id,
                    r.scenario,
                    r.verdict,
                    r.started_at.format("%Y-%m-%d %H:%M:%S")
                );
            }
        }
    }
}
