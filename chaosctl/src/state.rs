//! Where chaosctl keeps its state: the run history and the local agent's fault journal. Opening
//! the journal reverts whatever a killed chaosctl left behind, and every command says so.

use std::path::{Path, PathBuf};

use agent::local::{LocalAgent, Recovered};
use anyhow::Context;
use chaosd::report::model::RecoveredFault;
use chaosd::store::RunStore;

/// `--state-dir`, else `$XDG_DATA_HOME/chaosctl` (`~/.local/share/chaosctl`).
pub fn state_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = given {
        return Ok(dir.to_path_buf());
    }
    dirs::data_dir()
        .map(|d| d.join("chaosctl"))
        .context("cannot find a data directory for the run history; pass --state-dir")
}

/// The local agent, after it has reverted what an earlier chaosctl left; each revert is told on
/// stderr and returned for the next report.
pub fn open_agent(state_dir: &Path) -> anyhow::Result<(LocalAgent, Vec<RecoveredFault>)> {
    let (agent, recovered) = LocalAgent::open(state_dir).with_context(|| {
        format!(
            "cannot open the fault journal in `{}`; pass --state-dir to use another",
            state_dir.display()
        )
    })?;
    Ok((agent, recovered.into_iter().map(tell_recovered).collect()))
}

fn tell_recovered(r: Recovered) -> RecoveredFault {
    let (ok, detail) = match &r.result {
        Ok(reverted) => (true, reverted.detail.clone()),
        Err(err) => (false, err.to_string()),
    };
    if ok {
        errln!(
            "chaosctl: reverted {} left in place by run {} (its chaosctl did not end): {detail}",
            r.fault,
            r.run_id
        );
    } else {
        errln!(
            "chaosctl: could NOT revert {} left in place by run {}: {detail}; fix it by hand, then run `chaosctl revert --all`",
            r.fault,
            r.run_id
        );
    }
    RecoveredFault {
        host: chaosd::scenario::model::LOCAL_HOST.to_string(),
        fault_id: r.fault_id,
        run_id: r.run_id,
        fault: r.fault,
        ok,
        detail,
    }
}

/// The run history; runs whose chaosctl died are marked `interrupted`, and said so.
pub fn open_store(state_dir: &Path) -> anyhow::Result<RunStore> {
    let store = RunStore::open(state_dir)?;
    for run in store.interrupted_on_open() {
        errln!(
            "chaosctl: run {run} was cut short (its chaosctl ended without finishing it); marked interrupted"
        );
    }
    Ok(store)
}
