//! `chaosctl revert --all [--inventory F]`: break glass. Reverts every fault in the local journal,
//! whichever run and whichever process holds it, and every fault each agent of the inventory holds.

use std::path::Path;

use agent::client::AgentClients;

use super::agents::{inventory_hosts, target};
use super::{EXIT_FAILED, EXIT_OK, Failure};
use crate::args::LoadArgs;
use crate::state;

pub async fn run(state_dir: Option<&Path>, load: &LoadArgs) -> Result<u8, Failure> {
    let mut failed = 0;
    let mut reverted = 0;
    if load.inventory.is_some() {
        let hosts = inventory_hosts(load)?;
        let mut clients = AgentClients::default();
        let calls = hosts.iter().map(|host| {
            let client = clients.client(&target(host));
            async move {
                let answer = match client {
                    Ok(client) => client.revert_all().await.map_err(|e| e.to_string()),
                    Err(err) => Err(err.to_string()),
                };
                (host, answer)
            }
        });
        for (host, answer) in futures::future::join_all(calls).await {
            match answer {
                Ok(answer) => {
                    for r in answer.results {
                        match (r.reverted, r.error) {
                            (Some(done), _) => {
                                reverted += 1;
                                outln!("reverted {} on {}: {}", r.fault_id, host.name, done.detail);
                            }
                            (None, error) => {
                                failed += 1;
                                let why = error.map_or("no answer".to_string(), |e| e.to_string());
                                errln!(
                                    "chaosctl: could not revert {} on {}: {why}",
                                    r.fault_id,
                                    host.name
                                );
                            }
                        }
                    }
                }
                Err(err) => {
                    failed += 1;
                    errln!("chaosctl: {}: {err}", host.name);
                }
            }
        }
    }
    let (local_reverted, local_failed) = revert_local(state_dir)?;
    reverted += local_reverted;
    failed += local_failed;
    if failed > 0 {
        errln!("chaosctl: {failed} fault(s) or agent(s) could not be reverted; see above");
        return Ok(EXIT_FAILED);
    }
    if reverted == 0 {
        outln!("nothing to revert: no journal or agent holds a fault");
    }
    Ok(EXIT_OK)
}

/// The local journal: (reverted, failed).
fn revert_local(state_dir: Option<&Path>) -> Result<(usize, usize), Failure> {
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
                outln!("reverted {what} on local: {}", done.detail);
            }
            Err(err) => {
                failed += 1;
                errln!("chaosctl: could not revert {what} on local: {err}");
            }
        }
    }
    if failed > 0 {
        errln!(
            "chaosctl: {failed} local fault(s) could not be reverted; they stay in the journal at `{journal}`"
        );
    }
    Ok((reverted, failed))
}
