//! `chaosctl revert --all`: break glass. Reverts every fault in the local journal, whichever run
//! and whichever process holds it.

use std::path::Path;

use super::{EXIT_FAILED, EXIT_OK, Failure};
use crate::state;

pub fn run(state_dir: Option<&Path>, inventory: Option<&Path>) -> Result<u8, Failure> {
    if let Some(inventory) = inventory {
        return Err(Failure::Invalid(anyhow::anyhow!(
            "chaosctl: `--inventory {}`: this chaosctl drives only the built-in `local` agent; \
             remote agents arrive with chaos-agent",
            inventory.display()
        )));
    }
    let state_dir = state::state_dir(state_dir)?;
    // Opening reverts what dead processes left; revert_all takes the rest, live owners included.
    let (agent, recovered) = state::open_agent(&state_dir)?;
    let mut failed = recovered.iter().filter(|r| !r.ok).count();
    let mut reverted = recovered.len() - failed;
    let journal = agent.journal_dir().display().to_string();
    let rest = agent
        .revert_everything()
        .map_err(|err| anyhow::anyhow!("cannot read the fault journal at `{journal}`: {err}"))?;
    for r in rest {
        let what = if r.fault.is_empty() {
            r.fault_id.clone()
        } else {
            format!("{} ({})", r.fault, r.fault_id)
        };
        match r.result {
            Ok(done) => {
                reverted += 1;
                println!("reverted {what} on local: {}", done.detail);
            }
            Err(err) => {
                failed += 1;
                eprintln!("chaosctl: could not revert {what} on local: {err}");
            }
        }
    }
    if failed > 0 {
        eprintln!(
            "chaosctl: {failed} fault(s) could not be reverted; they stay in the journal at `{journal}`"
        );
        return Ok(EXIT_FAILED);
    }
    if reverted == 0 {
        println!("nothing to revert: the local journal holds no fault");
    }
    Ok(EXIT_OK)
}
