//! `chaosctl report RUN`: a stored report, rendered from the history.

use std::path::Path;

use anyhow::Context;

use super::{EXIT_OK, Failure};
use crate::args::ReportFormat;
use crate::state;

pub fn run(
    state_dir: Option<&Path>,
    run: &str,
    format: ReportFormat,
    output: Option<&Path>,
) -> Result<u8, Failure> {
    let state_dir = state::state_dir(state_dir)?;
    state::open_agent(&state_dir)?;
    let store = state::open_store(&state_dir)?;
    let (record, report) = match store.get(run) {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Err(Failure::Invalid(anyhow::anyhow!(
                "chaosctl: no run `{run}` in the history at `{}`; `chaosctl runs` lists them",
                state_dir.display()
            )));
        }
        Err(err) => return Err(Failure::Invalid(err.into())),
    };
    let Some(report) = report else {
        return Err(Failure::Failed(anyhow::anyhow!(
            "run {} has no report yet ({}); it may still be running",
            record.run_id,
            record.verdict.map(|v| v.as_str()).unwrap_or("running")
        )));
    };
    let text = match format {
        ReportFormat::Json => {
            serde_json::to_string_pretty(&report).context("cannot render JSON")? + "\n"
        }
        ReportFormat::Md => chaosd::report::markdown::render(&report),
        ReportFormat::Html => chaosd::report::html::render(&report),
        ReportFormat::Junit => chaosd::report::junit::render(&report),
    };
    emit(&text, output)?;
    Ok(EXIT_OK)
}

/// Writes a rendered report to `-o FILE`, else standard output.
pub fn emit(text: &str, output: Option<&Path>) -> anyhow::Result<()> {
    match output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write `{}`", path.display()))?,
        None => out!("{text}"),
    }
    Ok(())
}

/// The `--format` as chaosd's API names it.
pub fn format_name(format: ReportFormat) -> &'static str {
    match format {
        ReportFormat::Json => "json",
        ReportFormat::Md => "md",
        ReportFormat::Html => "html",
        ReportFormat::Junit => "junit",
    }
}
