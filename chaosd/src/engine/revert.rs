//! Reverting what is in place, all at once; a revert that failed or could not be verified goes
//! into `faults_left`, and an agent that cannot be reached is lost.

use super::live::Phase;

use super::run::Run;
use crate::report::model::{Cause, FaultLeft, Verdict};
use crate::scenario::format_duration;

/// An injected fault not yet reverted.
pub(super) struct Active {
    pub(super) host: String,
    pub(super) fault_id: String,
    /// Where its record is: step and position in that step's `faults`.
    pub(super) step: usize,
    pub(super) slot: usize,
    /// Its apply failed without a clear answer: it may be in place. A revert that finds the agent
    /// knows no such fault shows it never was.
    pub(super) uncertain: bool,
}

impl Run {
    /// Reverts every active fault, all at once. Never looks at the abort signal.
    pub(super) async fn revert_active(&mut self) {
        if self.placed.active.is_empty() {
            return;
        }
        self.live.phase(Phase::Reverting, None);
        let mut reverts = tokio::task::JoinSet::new();
        for active in self.placed.active.drain(..) {
            let hosts = self.hosts.clone();
            reverts.spawn(async move {
                let result = hosts.revert(&active.host, &active.fault_id).await;
                (active, result)
            });
        }
        while let Some(joined) = reverts.join_next().await {
            let Ok((active, result)) = joined else {
                continue;
            };
            if let Some(lease) = &self.placed.lease {
                lease.released(&active.host);
            }
            let record = &mut self.record.steps[active.step].faults[active.slot];
            let (host, fault_id, fault, kind) = (
                record.host.clone(),
                record.fault_id.clone(),
                record.fault.clone(),
                record.kind.clone(),
            );
            match result {
                Err(failure) if active.uncertain && failure.unknown => {
                    self.event(
                        "fault_not_applied",
                        format!(
                            "{fault} was not in place on {host}: its agent knows no such fault"
                        ),
                        serde_json::json!({"fault_id": fault_id, "host": host}),
                    );
                }
                Ok(reverted) if reverted.verified => {
                    record.reverted_at = Some(reverted.reverted_at);
                    // What the revert measured (what a `dns` responder answered, what a shaper
                    // carried) joins the fault's detail, which every report format shows.
                    if !reverted.detail.is_empty() {
                        record.detail = format!("{}; reverted: {}", record.detail, reverted.detail);
                    }
                    self.event(
                        "fault_reverted",
                        format!("reverted {fault} on {host}: {}", reverted.detail),
                        serde_json::json!({"fault_id": fault_id, "host": host, "verified": true}),
                    );
                }
                Ok(reverted) => {
                    record.reverted_at = Some(reverted.reverted_at);
                    record.verified = Some(false);
                    let reason = format!(
                        "the revert of {fault} on {host} could not be confirmed: {}; check the host and run `chaosctl revert --all`",
                        reverted.detail
                    );
                    self.left(host, fault_id, kind, fault, reason);
                }
                Err(failure) if failure.unreachable => {
                    let reason = format!(
                        "cannot reach the agent of {host} to revert {fault}: {}; the agent reverts it \
                         on its own once our lease of {} runs out; check with `chaosctl agents`",
                        failure.message,
                        format_duration(self.hosts.lease())
                    );
                    record.error = Some(failure.message);
                    self.lost(&host, reason.clone());
                    self.left(host, fault_id, kind, fault, reason);
                }
                Err(failure) => {
                    let reason = format!(
                        "the revert of {fault} on {host} failed: {}; run `chaosctl revert --all`",
                        failure.message
                    );
                    record.error = Some(failure.message);
                    self.left(host, fault_id, kind, fault, reason);
                }
            }
        }
    }

    /// Records an agent as lost, once per host.
    pub(super) fn lost(&mut self, host: &str, reason: String) {
        if self.placed.lost_hosts.insert(host.to_string()) {
            self.event(
                "agent_lost",
                reason.clone(),
                serde_json::json!({"host": host}),
            );
            self.fail(Verdict::Error, Cause::AgentLost, reason);
        }
    }

    pub(super) fn left(
        &mut self,
        host: String,
        fault_id: String,
        kind: String,
        fault: String,
        reason: String,
    ) {
        self.event(
            "revert_failed",
            reason.clone(),
            serde_json::json!({"fault_id": fault_id, "host": host}),
        );
        self.fail(Verdict::Error, Cause::Revert, reason.clone());
        self.record.faults_left.push(FaultLeft {
            host,
            fault_id,
            kind,
            fault,
            reason,
        });
    }
}
