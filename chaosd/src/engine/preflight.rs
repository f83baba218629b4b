//! Preflight: every agent reached, every fault checked on every host it will go to.

use std::collections::BTreeMap;

use super::live::Phase;
use super::run::{Flow, PreflightFault, Run};
use crate::report::model::{Cause, Verdict};

impl Run {
    /// Reach every agent, check every fault on every host it will go to, and every `on:` host:
    /// one request per host, all hosts at once.
    pub(super) async fn preflight(&mut self, faults: Vec<PreflightFault>) -> Flow {
        self.live.phase(Phase::Preflight, None);
        let mut problems = Vec::new();
        let mut per_host: BTreeMap<String, Vec<agent::spec::FaultSpec>> = BTreeMap::new();
        for p in self
            .scenario
            .steady_state
            .iter()
            .chain(&self.scenario.guardrails)
        {
            for host in self.plan.hosts_of(&p.on) {
                per_host.entry(host).or_default();
            }
        }
        // An action's hosts must answer, and their policy must let it run: a runbook refused
        // halfway through a game day would leave it with faults in and nobody's plan.
        let mut command_checks = tokio::task::JoinSet::new();
        for step in &self.plan.steps {
            for action in step.action.iter().chain(&step.actions) {
                let Some(on) = &action.on else { continue };
                if action.hosts.is_empty() {
                    problems.push(format!(
                        "step `{}`: the action's `on: {on}` picks no host",
                        step.name
                    ));
                }
                for host in &action.hosts {
                    per_host.entry(host.clone()).or_default();
                    let (hosts, host, run) = (self.hosts.clone(), host.clone(), action.run.clone());
                    let (timeout, step) = (action.timeout, step.name.clone());
                    command_checks.spawn(async move {
                        hosts
                            .command_allowed(&host, &run, timeout)
                            .await
                            .map_err(|e| format!("{host}: step `{step}` runs `{run}` there: {e}"))
                    });
                }
            }
        }
        while let Some(joined) = command_checks.join_next().await {
            if let Ok(Err(problem)) = joined {
                problems.push(problem);
            }
        }
        for fault in faults {
            if fault.hosts.is_empty() {
                problems.push(format!(
                    "{}: target `{}` picks no host",
                    fault.what, fault.target
                ));
            }
            for host in &fault.hosts {
                per_host
                    .entry(host.clone())
                    .or_default()
                    .push(fault.spec.clone());
            }
        }
        let mut checks = tokio::task::JoinSet::new();
        for (host, faults) in per_host {
            let hosts = self.hosts.clone();
            checks.spawn(async move {
                let result = hosts.preflight(&host, faults).await;
                (host, result)
            });
        }
        let mut results: Vec<(String, Result<(), Vec<String>>)> = Vec::new();
        while let Some(joined) = checks.join_next().await {
            match joined {
                Ok(result) => results.push(result),
                Err(err) => problems.push(format!("a preflight check failed: {err}")),
            }
        }
        results.sort_by(|a, b| a.0.cmp(&b.0));
        for (host, result) in results {
            if let Err(found) = result {
                problems.extend(found.into_iter().map(|p| format!("{host}: {p}")));
            }
        }
        problems.dedup();
        if problems.is_empty() {
            self.event(
                "preflight_passed",
                "preflight passed".to_string(),
                serde_json::json!({}),
            );
            return Flow::Continue;
        }
        for p in &problems {
            self.event("preflight_failed", p.clone(), serde_json::json!({}));
        }
        let reason = if problems.len() == 1 {
            format!("preflight failed: {}", problems[0])
        } else {
            format!(
                "preflight failed with {} problems; first: {}",
                problems.len(),
                problems[0]
            )
        };
        self.fail(Verdict::Error, Cause::Preflight, reason);
        Flow::Stop
    }
}
