//! `chaosctl validate FILE...`: every check a run makes before touching a host.

use std::path::PathBuf;

use super::{EXIT_INVALID, EXIT_OK, Failure, load_options};
use crate::args::LoadArgs;

pub fn run(files: &[PathBuf], load: &LoadArgs) -> Result<u8, Failure> {
    let options = load_options(load);
    let mut invalid = 0;
    for file in files {
        match chaosd::scenario::load(file, &options) {
            Ok(scenario) => {
                let what = if scenario.monkey.is_some() {
                    "monkey".to_string()
                } else {
                    format!(
                        "{} step{}",
                        scenario.steps.len(),
                        if scenario.steps.len() == 1 { "" } else { "s" }
                    )
                };
                outln!(
                    "{}: ok (`{}`: {what}, {} steady-state probe{}, {} guardrail{})",
                    file.display(),
                    scenario.name,
                    scenario.steady_state.len(),
                    if scenario.steady_state.len() == 1 {
                        ""
                    } else {
                        "s"
                    },
                    scenario.guardrails.len(),
                    if scenario.guardrails.len() == 1 {
                        ""
                    } else {
                        "s"
                    },
                );
                for warning in chaosd::scenario::lint::warnings(&scenario) {
                    errln!("{}: warning: {warning}", file.display());
                }
            }
            Err(err) => {
                invalid += 1;
                errln!("{err}");
            }
        }
    }
    if invalid > 0 {
        if files.len() > 1 {
            errln!("{invalid} of {} files are invalid", files.len());
        }
        Ok(EXIT_INVALID)
    } else {
        Ok(EXIT_OK)
    }
}
