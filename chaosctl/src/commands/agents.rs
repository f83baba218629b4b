//! `chaosctl agents --inventory F`: each agent's health, version, active faults, and for each
//! fault kind whether the host can do it and whether the agent's policy allows it.

use agent::api::Health;
use agent::client::{AgentClients, AgentTarget};
use chaosd::scenario::model::Host;

use super::{EXIT_FAILED, EXIT_OK, Failure, load_options};
use crate::args::{LoadArgs, Output};

pub async fn run(load: &LoadArgs, output: Output) -> Result<u8, Failure> {
    let hosts = inventory_hosts(load)?;
    // One client for the hosts that trust their agents alike: the CA is read once, not per host.
    let mut clients = AgentClients::default();
    let checks = hosts.iter().map(|host| {
        let client = clients.client(&target(host));
        async move {
            let health = match &client {
                Ok(client) => client.health().await.map_err(|e| e.to_string()),
                Err(err) => Err(err.to_string()),
            };
            (host, health)
        }
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
                "faults": health.faults, "policy": health.policy,
                "kinds": kinds(health).iter().map(|k| serde_json::json!({
                    "kind": k.kind, "host_can": k.host_can, "mechanism": k.mechanism,
                    "policy_allows": k.policy_allows, "usable": k.host_can && k.policy_allows,
                    "why_not": k.why_not(),
                })).collect::<Vec<_>>(),
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
                        let kinds = kinds(h);
                        let usable: Vec<String> = kinds
                            .iter()
                            .filter(|k| k.host_can && k.policy_allows)
                            .map(|k| match &k.mechanism {
                                Some(m) => format!("{} ({m})", k.kind),
                                None => k.kind.to_string(),
                            })
                            .collect();
                        let not: Vec<String> = kinds
                            .iter()
                            .filter_map(|k| Some(format!("{} ({})", k.kind, k.why_not()?)))
                            .collect();
                        outln!(
                            "{}  {url}  ok  version {}  host {}",
                            host.name,
                            h.version,
                            h.hostname
                        );
                        outln!(
                            "    can: {}",
                            if usable.is_empty() {
                                "nothing".to_string()
                            } else {
                                usable.join(", ")
                            }
                        );
                        if !not.is_empty() {
                            outln!("    not: {}", not.join("; "));
                        }
                        match &h.policy {
                            Some(p) => outln!("    policy: {}", p.summary),
                            None => outln!(
                                "    policy: none (no --policy file: every fault this host can do is allowed to token holders)"
                            ),
                        }
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

/// One fault kind on one agent: the host's side and the policy's.
struct Kind {
    kind: agent::spec::FaultKind,
    host_can: bool,
    mechanism: Option<String>,
    /// Why the host cannot, when it cannot.
    host_reason: Option<String>,
    policy_allows: bool,
    /// The policy's kinds, when it limits them.
    policy_kinds: Option<String>,
}

impl Kind {
    /// Why this kind cannot be used here; `None` when it can.
    fn why_not(&self) -> Option<String> {
        let mut why = Vec::new();
        if !self.host_can {
            why.push(format!(
                "the host cannot: {}",
                self.host_reason.as_deref().unwrap_or("not supported here")
            ));
        }
        if !self.policy_allows {
            why.push(format!(
                "the policy forbids it: its kinds are {}",
                self.policy_kinds.as_deref().unwrap_or("[]")
            ));
        }
        (!why.is_empty()).then(|| why.join(", and "))
    }
}

fn kinds(health: &Health) -> Vec<Kind> {
    let allowed = health.policy.as_ref().and_then(|p| p.kinds.as_ref());
    health
        .capabilities
        .kinds
        .iter()
        .map(|k| Kind {
            kind: k.kind,
            host_can: k.supported,
            mechanism: k.mechanism.clone(),
            host_reason: k.reason.clone(),
            policy_allows: allowed.is_none_or(|kinds| kinds.contains(&k.kind)),
            policy_kinds: allowed.map(|kinds| {
                let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                format!("[{}]", names.join(", "))
            }),
        })
        .collect()
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
        cert_file: host.cert_file.clone(),
        key_file: host.key_file.clone(),
    }
}
