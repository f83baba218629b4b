//! The agents a run talks to, by host name. `local` is the in-process agent; hosts with an
//! `agent:` URL are refused at preflight by this build, with a message saying so.

use std::sync::Arc;

use agent::local::{Applied, InjectRequest, LocalAgent, Reverted};
use agent::spec::FaultSpec;

use crate::scenario::model::{LOCAL_HOST, Scenario};

#[derive(Clone)]
pub struct Hosts {
    local: LocalAgent,
    scenario: Arc<Scenario>,
}

impl Hosts {
    pub fn new(local: LocalAgent, scenario: Arc<Scenario>) -> Hosts {
        Hosts { local, scenario }
    }

    /// The local agent for `host`, or why this build cannot reach it.
    fn agent(&self, host: &str) -> Result<&LocalAgent, String> {
        if host == LOCAL_HOST {
            return Ok(&self.local);
        }
        match self
            .scenario
            .hosts
            .get(host)
            .and_then(|h| h.agent.as_deref())
        {
            Some(url) => Err(format!(
                "host `{host}` is reached through the agent at `{url}`, but this chaosctl drives only \
                 the built-in `local` agent; remote agents arrive with chaos-agent"
            )),
            None => Err(format!("host `{host}` has no agent")),
        }
    }

    /// Preflight: can `host` reach its agent, and can that agent do this fault now.
    pub async fn check(&self, host: &str, spec: &FaultSpec) -> Result<(), String> {
        let agent = self.agent(host)?.clone();
        let spec = spec.clone();
        blocking(move || agent.check(&spec).map_err(|e| e.to_string())).await
    }

    /// Preflight for `on:` probes: the host's agent must be reachable.
    pub fn reachable(&self, host: &str) -> Result<(), String> {
        self.agent(host).map(|_| ())
    }

    pub async fn inject(&self, host: &str, req: InjectRequest) -> Result<Applied, String> {
        let agent = self.agent(host)?.clone();
        blocking(move || agent.inject(req).map_err(|e| e.to_string())).await
    }

    pub async fn revert(&self, host: &str, fault_id: &str) -> Result<Reverted, String> {
        let agent = self.agent(host)?.clone();
        let fault_id = fault_id.to_string();
        blocking(move || agent.revert(&fault_id).map_err(|e| e.to_string())).await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(format!("the agent task failed: {e}")))
}
