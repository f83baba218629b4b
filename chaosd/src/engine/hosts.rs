//! The agents a run talks to, by host name: `local` is the in-process agent; every host with an
//! `agent:` URL is a `chaos-agent` reached over HTTPS with its token. Every call to a remote
//! agent waits for a slot of the run's [`CallLimit`] (`settings.max_in_flight`): reverts and
//! lease renewals as urgent calls, the rest as normal ones.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agent::api::{ApplyRequest, FaultOrder};
use agent::client::{AgentClient, AgentClients, AgentTarget, ClientError};
use agent::local::{Applied, InjectRequest, LocalAgent, Reverted};
use agent::probe::SampleOutcome;
use agent::spec::{FaultSpec, ProbeKind};
use tokio_util::sync::CancellationToken;

use super::limit::{CallLimit, Permit, Priority};
use crate::scenario::model::{LOCAL_HOST, Scenario};

/// Why a revert did not happen.
#[derive(Debug, Clone)]
pub struct RevertFailure {
    pub message: String,
    /// The agent could not be reached: it reverts on its own when the run's lease runs out.
    pub unreachable: bool,
    /// The agent knows no fault of that id: it never applied it (or it was never ours).
    pub unknown: bool,
}

/// Why an injection did not happen, or may not have.
#[derive(Debug, Clone)]
pub struct InjectFailure {
    pub message: String,
    /// No clear answer came back from the agent after it got the request (the connection
    /// dropped, the agent died or failed, the answer was unreadable), or the agent still holds
    /// the fault after its failure: it may be in place, and must be reverted like an applied one.
    pub maybe_applied: bool,
}

impl InjectFailure {
    fn refused(message: String) -> InjectFailure {
        InjectFailure {
            message,
            maybe_applied: false,
        }
    }

    /// A failure after which the fault may be in place: it is reverted like an applied one.
    pub(super) fn unknown(message: String) -> InjectFailure {
        InjectFailure {
            message,
            maybe_applied: true,
        }
    }
}

#[derive(Clone)]
pub struct Hosts {
    local: LocalAgent,
    remote: Arc<BTreeMap<String, Result<AgentClient, ClientError>>>,
    /// The run's calls to remote agents in flight, shared by every clone (every fan-out).
    limit: Arc<CallLimit>,
    run_id: String,
    lease: Duration,
}

impl Hosts {
    /// Prepares a client for every host with an agent (reading tokens and CAs, no network yet).
    /// Hosts that trust their agents the same way share one client: its TLS setup is made once
    /// for the fleet, and its pool keeps one connection per agent for the whole run.
    pub fn new(local: LocalAgent, scenario: &Scenario, run_id: &str) -> Hosts {
        Hosts::with_clients(local, scenario, run_id, &mut AgentClients::default())
    }

    /// Like [`Hosts::new`], with clients kept from earlier runs (chaosd keeps them for the
    /// process, so that a run reuses the connections and TLS sessions of the one before).
    pub fn with_clients(
        local: LocalAgent,
        scenario: &Scenario,
        run_id: &str,
        clients: &mut AgentClients,
    ) -> Hosts {
        let remote = scenario
            .hosts
            .values()
            .filter_map(|host| {
                let url = host.agent.clone()?;
                let target = AgentTarget {
                    host: host.name.clone(),
                    url,
                    token_file: host.token_file.clone(),
                    ca_file: host.ca_file.clone(),
                    cert_file: host.cert_file.clone(),
                    key_file: host.key_file.clone(),
                };
                Some((host.name.clone(), clients.client(&target)))
            })
            .collect();
        Hosts {
            local,
            remote: Arc::new(remote),
            limit: CallLimit::new(scenario.settings.max_in_flight),
            run_id: run_id.to_string(),
            lease: scenario.settings.lease,
        }
    }

    /// The run's limit on calls in flight.
    pub fn limit(&self) -> &Arc<CallLimit> {
        &self.limit
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The hosts reached over the network.
    pub fn remote_hosts(&self) -> Vec<String> {
        self.remote.keys().cloned().collect()
    }

    fn client(&self, host: &str) -> Result<&AgentClient, String> {
        match self.remote.get(host) {
            Some(Ok(client)) => Ok(client),
            Some(Err(err)) => Err(err.to_string()),
            None => Err(format!("host `{host}` has no agent")),
        }
    }

    /// A slot of the run's limit for one call; held until the call's answer is read.
    async fn slot(&self, priority: Priority) -> Permit {
        self.limit.acquire(priority).await
    }

    /// Preflight for one host: its agent answers, accepts our token, can do each of these faults
    /// now (selectors match, kinds supported), and holds no other run's faults.
    pub async fn preflight(&self, host: &str, faults: Vec<FaultSpec>) -> Result<(), Vec<String>> {
        if host == LOCAL_HOST {
            let agent = self.local.clone();
            let problems = blocking(move || {
                Ok(faults
                    .iter()
                    .filter_map(|f| agent.check(f).err().map(|e| format!("{f}: {e}")))
                    .collect::<Vec<_>>())
            })
            .await
            .unwrap_or_else(|e| vec![e]);
            return if problems.is_empty() {
                Ok(())
            } else {
                Err(problems)
            };
        }
        let client = self.client(host).map_err(|e| vec![e])?;
        let _slot = self.slot(Priority::Normal).await;
        if faults.is_empty() {
            return client
                .health()
                .await
                .map(|_| ())
                .map_err(|e| vec![e.to_string()]);
        }
        match client.preflight(&self.run_id, faults).await {
            Ok(answer) if answer.problems.is_empty() => Ok(()),
            Ok(answer) => Err(answer.problems),
            Err(err) => Err(vec![err.to_string()]),
        }
    }

    /// Injects faults on `host` as one batch (one request to its agent, which journals them with
    /// one synced write) once the run's limit lets the call start. One result per request, in
    /// their order; a failure says whether the fault may be in place anyway. `None`: `stop` came
    /// first (an abort, another batch of the step failed), so nothing was sent and none of them
    /// is in place.
    pub async fn inject_batch(
        &self,
        host: &str,
        reqs: Vec<InjectRequest>,
        stop: &CancellationToken,
    ) -> Option<Vec<Result<Applied, InjectFailure>>> {
        if stop.is_cancelled() {
            return None;
        }
        if host == LOCAL_HOST {
            return Some(self.inject_local(reqs).await);
        }
        let slot = tokio::select! {
            biased;
            () = stop.cancelled() => return None,
            slot = self.slot(Priority::Normal) => slot,
        };
        let applied = self.apply_remote(host, reqs).await;
        drop(slot);
        Some(applied)
    }

    async fn inject_local(&self, reqs: Vec<InjectRequest>) -> Vec<Result<Applied, InjectFailure>> {
        let agent = self.local.clone();
        let count = reqs.len();
        let injected = tokio::task::spawn_blocking(move || {
            let ids: Vec<String> = reqs.iter().map(|r| r.fault_id.clone()).collect();
            let results = agent.inject_batch(reqs);
            // A failed injection whose cleanup failed too stays active in the agent.
            let active = agent.active();
            results
                .into_iter()
                .zip(ids)
                .map(|(result, id)| {
                    result.map_err(|err| InjectFailure {
                        message: err.to_string(),
                        maybe_applied: active.iter().any(|f| f.fault_id == id),
                    })
                })
                .collect::<Vec<_>>()
        })
        .await;
        injected.unwrap_or_else(|err| {
            let failure = InjectFailure::unknown(format!("the agent task failed: {err}"));
            vec![Err(failure); count]
        })
    }

    async fn apply_remote(
        &self,
        host: &str,
        reqs: Vec<InjectRequest>,
    ) -> Vec<Result<Applied, InjectFailure>> {
        let client = match self.client(host) {
            Ok(client) => client,
            Err(message) => return vec![Err(InjectFailure::refused(message)); reqs.len()],
        };
        let ids: Vec<String> = reqs.iter().map(|r| r.fault_id.clone()).collect();
        let order = ApplyRequest {
            faults: reqs
                .into_iter()
                .map(|req| FaultOrder {
                    fault_id: req.fault_id,
                    spec: req.spec,
                    seed: req.seed,
                    hold_ms: req.hold.map(|d| d.as_millis() as u64),
                })
                .collect(),
            lease_ms: self.lease.as_millis() as u64,
        };
        let mut answer = match client.apply(&self.run_id, &order).await {
            Ok(answer) => answer,
            Err(err) => {
                let failure = InjectFailure {
                    message: err.to_string(),
                    maybe_applied: err.may_have_acted(),
                };
                return vec![Err(failure); ids.len()];
            }
        };
        ids.iter()
            .map(|id| {
                let at = answer.results.iter().position(|r| &r.fault_id == id);
                let Some(result) = at.map(|at| answer.results.swap_remove(at)) else {
                    return Err(InjectFailure::unknown(format!(
                        "the agent of `{host}` did not answer for {id}"
                    )));
                };
                match (result.applied, result.error) {
                    (Some(applied), _) => Ok(applied),
                    (None, Some(error)) => Err(InjectFailure::refused(error.to_string())),
                    (None, None) => Err(InjectFailure::unknown(format!(
                        "the agent of `{host}` answered neither applied nor failed"
                    ))),
                }
            })
            .collect()
    }

    pub async fn revert(&self, host: &str, fault_id: &str) -> Result<Reverted, RevertFailure> {
        if host == LOCAL_HOST {
            let agent = self.local.clone();
            let fault_id = fault_id.to_string();
            return blocking(move || {
                agent.revert(&fault_id).map_err(|e| RevertFailure {
                    unknown: matches!(e, agent::FaultError::UnknownFault { .. }),
                    message: e.to_string(),
                    unreachable: false,
                })
            })
            .await;
        }
        let client = self.client(host).map_err(|message| RevertFailure {
            message,
            unreachable: false,
            unknown: false,
        })?;
        let _slot = self.slot(Priority::Urgent).await;
        match client.revert(&self.run_id, fault_id).await {
            Ok(answer) => match (answer.reverted, answer.error) {
                (Some(reverted), _) => Ok(reverted),
                (None, error) => Err(RevertFailure {
                    unknown: error.as_ref().is_some_and(|e| e.code == "unknown_fault"),
                    message: error.map_or("the agent reverted nothing".into(), |e| e.to_string()),
                    unreachable: false,
                }),
            },
            Err(err) => Err(RevertFailure {
                unreachable: err.is_unreachable(),
                unknown: err.status() == Some(404),
                message: err.to_string(),
            }),
        }
    }

    /// Tells a host's agent we are still here. Errors mean the agent may revert on its own.
    pub async fn renew(&self, host: &str) -> Result<(), ClientError> {
        match self.remote.get(host) {
            Some(Ok(client)) => {
                let _slot = self.slot(Priority::Urgent).await;
                client.renew(&self.run_id, self.lease).await.map(|_| ())
            }
            Some(Err(err)) => Err(err.clone()),
            None => Ok(()),
        }
    }

    /// Runs an `action` on `host`: `local` in-process (the controller's own machine, in the
    /// scenario's folder), any other through its agent, which runs it only if its policy allows.
    /// `Err` is a refusal or an agent that did not answer: the command may not have run.
    pub async fn command(
        &self,
        host: &str,
        run: &agent::spec::Command,
        timeout: Duration,
        cwd: &std::path::Path,
    ) -> Result<agent::api::CommandResponse, String> {
        if host == LOCAL_HOST {
            return Ok(agent::child::run_bounded(run, cwd, timeout).await.into());
        }
        let client = self.client(host)?;
        let _slot = self.slot(Priority::Normal).await;
        client
            .command(&self.run_id, run, timeout)
            .await
            .map_err(|e| e.to_string())
    }

    /// Whether `host` would run this action: its agent's policy must list the program. The
    /// controller's own machine (`local`) has no policy.
    pub async fn command_allowed(
        &self,
        host: &str,
        run: &agent::spec::Command,
        timeout: Duration,
    ) -> Result<(), String> {
        if host == LOCAL_HOST {
            return Ok(());
        }
        let client = self.client(host)?;
        let _slot = self.slot(Priority::Normal).await;
        client
            .command_allowed(&self.run_id, run, timeout)
            .await
            .map_err(|e| e.to_string())
    }

    /// One probe sample from `host`'s own vantage.
    pub async fn sample(&self, host: &str, kind: &ProbeKind) -> SampleOutcome {
        if host == LOCAL_HOST {
            return agent::probe::sample(kind).await;
        }
        let answer = match self.client(host) {
            Ok(client) => {
                let _slot = self.slot(Priority::Normal).await;
                // Timed from its start, not from its wait for a slot.
                let started = tokio::time::Instant::now();
                client
                    .probe(kind)
                    .await
                    .map_err(|e| (e.to_string(), started.elapsed()))
            }
            Err(err) => Err((err, Duration::ZERO)),
        };
        match answer {
            Ok(answer) => SampleOutcome {
                ok: answer.ok,
                latency: Duration::from_secs_f64(answer.latency_ms.max(0.0) / 1000.0),
                reason: answer.reason,
                load: answer.load,
            },
            Err((reason, latency)) => SampleOutcome {
                ok: false,
                latency,
                reason: format!("no sample from {host}: {reason}"),
                load: None,
            },
        }
    }
}

async fn blocking<T: Send + 'static, E: From<String> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(E::from(format!("the agent task failed: {e}"))))
}

impl From<String> for RevertFailure {
    /// A revert whose task failed: not known to be done.
    fn from(message: String) -> RevertFailure {
        RevertFailure {
            message,
            unreachable: false,
            unknown: false,
        }
    }
}
