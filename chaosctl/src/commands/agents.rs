//! `chaosctl agents --inventory F`: each agent's health, version, capabilities and active faults.

use agent::client::{AgentClient, AgentTarget};
use chaosd::scenario::model::Host;

use super::{EXIT_FAILED, EXIT_OK, Failure, load_options};
use crate::args::{LoadArgs, Output};

pub async fn run(load: &LoadArgs, output: Output) -> Result<u8, Failure> {
    let hosts = inventory_hosts(load)?;
    let checks = hosts.iter().map(|host| async move {
        let client = AgentClient::new(&target(host));
        let health = match &client {
            Ok(client) => client.health().await.map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        (host, health)
    });
    let results = futures::future::join_all(checks).await;
    let mut unhealthy = 0;
    let mut rows = Vec::new();
    for (host, health) in &results {
        match health {
            Ok(health) => rows.push(serde_json::json!({
                "host": host.name, "agent": host.agent, "reachable": true,
                "version": health.version, "hostname": health.hostname,
                "capabilities": health.capabilities, "active_run": health.active_run,
                "faults": health.faults,
            })),
            Err(err) => {
                unhealthy += 1;
                rows.push(serde_json::json!({
                    "host": host.name, "agent": host.agent, "reachable": false, "error": err,
                }));
            }
        }
    }
    match output {
        Output::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialize")
        ),
        Output::Text => {
            for (host, health) in &results {
                let url = host.agent.as_deref().unwrap_or("-");
                match health {
                    Ok(h) => {
                        let kinds: Vec<String> = h
                            .capabilities
                            .kinds
                            .iter()
                            .map(|k| match (&k.supported, &k.mechanism) {
                                (true, Some(m)) => format!("{} ({m})", k.kind),
                                (true, None) => k.kind.to_string(),
                                (false, _) => format!("no {}", k.kind),
                            })
                            .collect();
                        outln!(
                            "{}  {url}  ok  version {}  host {}",
                            host.name,
                            h.version,
                            h.hostname
                        );
                        outln!("    can: {}", kinds.join(", "));
                        match &h.active_run {
                            Some(run) => {
                                outln!("    holds {} fault(s) of run {run}", h.faults.len())
                            }
                            None => outln!("    no active faults"),
                        }
                        for f in &h.faults {
                            outln!("      {} {}", f.fault_id, f.spec);
                        }
                    }
                    Err(err) => outln!("{}  {url}  UNREACHABLE  {err}", host.name),
                }
            }
        }
    }
    Ok(if unhealthy > 0 { EXIT_FAILED } else { EXIT_OK })
}

/// The hosts of `--inventory` that have an agent; an inventory is required.
pub fn inventory_hosts(load: &LoadArgs) -> Result<Vec<Host>, Failure> {
    let Some(path) = load.inventory.as_deref() else {
        return Err(Failure::Invalid(anyhow::anyhow!(
            "chaosctl: pass --inventory FILE: a YAML file with the `hosts:` map of your agents"
        )));
    };
    let hosts = chaosd::scenario::load_inventory(path, &load_options(load))
        .map_err(|err| Failure::Invalid(anyhow::anyhow!("{err}")))?;
    Ok(hosts.into_values().filter(|h| h.agent.is_some()).collect())
}

pub fn target(host: &Host) -> AgentTarget {
    AgentTarget {
        host: host.name.clone(),
        url: host.agent.clone().unwrap_or_default(),
        token_file: host.token_file.clone(),
        ca_file: host.ca_file.clone(),
    }
}
