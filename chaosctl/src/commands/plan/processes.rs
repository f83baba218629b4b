//! The processes a planned fault would act on or go inside, shown for the faults where which
//! process (and which container) is meant is the question: a `kill` or `pause` that selects by
//! `container`, `cgroup` or `unit`, and any fault with `inside:`. For the built-in `local` agent
//! they are read from this machine's `/proc` now, through the agent's own lookup, and labelled with
//! their containers as reports label them; another host's agent finds its own at run time.

use agent::process;
use agent::spec::{FaultSpec, ProcessSelector};
use chaosd::scenario::model::Scenario;

/// Where the scenario's `local` host is: this machine (`plan`, a local `run`), whose
/// `/proc` shows what its agent would find, or the machine of the chaosd server the run goes to
/// (`--server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalHost {
    Here,
    OnServer,
}

/// What `plan` says of one host's processes for a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// On the built-in `local` agent: the processes matching now, each as a report names it
    /// (`pid 123 (nginx) in container 06bc8a2ad96f (checkout)`), or why the lookup failed.
    Local(Result<Vec<String>, String>),
    /// On a `chaos-agent` (or a chaosd server's own `local` agent), which finds the processes
    /// and their containers when the fault is applied.
    Remote,
}

/// The selector whose processes `plan` lists for `spec`, if any: `inside:`'s, or a `kill`'s or
/// `pause`'s when it selects by cgroup.
pub fn selector_of(spec: &FaultSpec) -> Option<&ProcessSelector> {
    spec.inside()
        .or_else(|| spec.processes().filter(|s| s.is_scoped()))
}

/// For each of `hosts`, what `spec`'s `selector` finds there; for a `stress` with `inside:`, each
/// process with its cgroup, below which the workers go.
pub fn on_hosts(
    scenario: &Scenario,
    hosts: &[String],
    spec: &FaultSpec,
    selector: &ProcessSelector,
    local: LocalHost,
) -> Vec<(String, Found)> {
    let cgroups = matches!(spec, FaultSpec::Stress(_));
    hosts
        .iter()
        .map(|host| {
            let here = local == LocalHost::Here
                && scenario.hosts.get(host).is_some_and(|h| h.agent.is_none());
            let found = if here {
                Found::Local(find(selector, cgroups))
            } else {
                Found::Remote
            };
            (host.clone(), found)
        })
        .collect()
}

fn find(selector: &ProcessSelector, cgroups: bool) -> Result<Vec<String>, String> {
    let found = process::find(selector).map_err(|err| err.to_string())?;
    Ok(process::with_containers(found)
        .iter()
        .map(
            |p| match cgroups.then(|| agent::container::cgroup_path(p.pid)) {
                Some(Some(cgroup)) => format!("{}, cgroup {cgroup}", p.label()),
                _ => p.label(),
            },
        )
        .collect())
}

/// The lines `plan` prints under the fault, indented by `indent`.
pub fn render(found: &[(String, Found)], indent: &str) -> String {
    let mut out = String::new();
    for (host, found) in found {
        match found {
            Found::Local(Ok(labels)) if labels.is_empty() => {
                out.push_str(&format!("{indent}on {host} now: no process matches\n"));
            }
            Found::Local(Ok(labels)) => {
                out.push_str(&format!("{indent}on {host} now:\n"));
                for label in labels {
                    out.push_str(&format!("{indent}  {label}\n"));
                }
            }
            Found::Local(Err(err)) => {
                out.push_str(&format!("{indent}on {host} now: cannot look ({err})\n"));
            }
            Found::Remote => out.push_str(&format!(
                "{indent}on {host}: the processes and their containers are resolved on its agent at run time\n"
            )),
        }
    }
    out
}

/// The JSON of `plan --output json`: one object per host.
pub fn to_json(found: &[(String, Found)]) -> serde_json::Value {
    found
        .iter()
        .map(|(host, found)| match found {
            Found::Local(Ok(labels)) => serde_json::json!({"host": host, "found": labels}),
            Found::Local(Err(err)) => serde_json::json!({"host": host, "error": err}),
            Found::Remote => {
                serde_json::json!({"host": host, "resolved": "on the agent at run time"})
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_matches_are_listed_and_remote_hosts_say_where_they_are_resolved() {
        let found = vec![
            (
                "local".to_string(),
                Found::Local(Ok(vec![
                    "pid 12 (sleep) in container 06bc8a2ad96f (a)".to_string(),
                ])),
            ),
            ("db-1".to_string(), Found::Remote),
        ];
        assert_eq!(
            render(&found, "  "),
            "  on local now:\n    pid 12 (sleep) in container 06bc8a2ad96f (a)\n  on db-1: the processes and their containers are resolved on its agent at run time\n"
        );
        assert_eq!(
            render(&[("local".to_string(), Found::Local(Ok(vec![])))], ""),
            "on local now: no process matches\n"
        );
    }
}
