//! The agent's HTTP API under `/v1`: the request and response bodies, shared by `chaos-agent`
//! (the server) and the controller (the client), so they are written once.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /healthz` (no token) | | `ok` |
//! | `GET /v1/health` | | [`Health`] |
//! | `POST /v1/runs/{run}/preflight` | [`PreflightRequest`] | [`PreflightResponse`]; 409 while another run holds faults here |
//! | `POST /v1/runs/{run}/faults` | [`ApplyRequest`] | [`ApplyResponse`]; 409 as above |
//! | `DELETE /v1/runs/{run}/faults/{fault}` | | [`RevertResponse`] |
//! | `DELETE /v1/runs/{run}` | | [`RevertAllResponse`]: every fault of that run |
//! | `POST /v1/runs/{run}/lease` | [`LeaseRequest`] | [`LeaseResponse`] |
//! | `GET /v1/faults` | | [`FaultsResponse`]: every active fault |
//! | `POST /v1/revert-all` | | [`RevertAllResponse`]: break glass, every run |
//! | `POST /v1/probe` | [`ProbeRequest`] | [`ProbeResponse`] |
//! | `POST /v1/commands` | [`CommandRequest`] | [`CommandResponse`]; 403 unless the policy's `commands.allow` lists the program |
//!
//! Every error is a JSON [`ApiError`] with a 4xx or 5xx status. A missing or wrong bearer token is
//! answered 401 before the request is looked at.
//!
//! **Architecture Invariant:** fields are only added here, never renamed or removed, and new ones
//! carry `#[serde(default)]` so older peers still parse.

use serde::{Deserialize, Serialize};

use crate::local::{ActiveFault, Applied, Capabilities, Reverted};
use crate::spec::{FaultSpec, ProbeKind};

/// The API's version prefix.
pub const PREFIX: &str = "/v1";

/// The largest request body an agent reads; larger ones are answered 413.
pub const MAX_BODY: usize = 1 << 20;

/// An error answer: a stable `code` for programs, a `message` for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// `unauthorized`, `forbidden`, `conflict`, `bad_request`, `not_found`, `too_large`,
    /// `fault_failed`, `internal`, ...
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub version: String,
    pub hostname: String,
    pub capabilities: Capabilities,
    /// The run whose faults are in place here, if any.
    #[serde(default)]
    pub active_run: Option<String>,
    #[serde(default)]
    pub faults: Vec<ActiveFault>,
    /// The agent's policy file, when it has one (`None`: every fault this host can do is
    /// allowed to token holders). Absent from older agents.
    #[serde(default)]
    pub policy: Option<PolicyView>,
}

/// What an agent's policy allows, as `chaosctl agents` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyView {
    /// The policy in one line (`kinds [pause, kill]; fill_paths [/var/tmp]; ...`).
    pub summary: String,
    /// The fault kinds it accepts (`None`: every kind, within its other limits).
    #[serde(default)]
    pub kinds: Option<Vec<crate::spec::FaultKind>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreflightRequest {
    /// Every fault this run may inject on this host.
    pub faults: Vec<FaultSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreflightResponse {
    /// Empty when every fault can be injected here now.
    pub problems: Vec<String>,
}

/// One fault to inject.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultOrder {
    pub fault_id: String,
    pub spec: FaultSpec,
    /// Drives this host's random picks among processes.
    pub seed: u64,
    /// How long to hold it; the agent reverts it on its own at its end. `None`: until reverted.
    /// At most [`crate::spec::MAX_HOLD`] (7 days): a longer one is answered 400, nothing applied.
    #[serde(default)]
    pub hold_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub faults: Vec<FaultOrder>,
    /// The agent reverts this run's faults when the controller is silent this long; at most
    /// [`crate::spec::MAX_HOLD`] (7 days), like a hold.
    pub lease_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyResponse {
    /// One entry per order, in order.
    pub results: Vec<ApplyResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyResult {
    pub fault_id: String,
    #[serde(default)]
    pub applied: Option<Applied>,
    #[serde(default)]
    pub error: Option<ApiError>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevertResponse {
    pub fault_id: String,
    #[serde(default)]
    pub reverted: Option<Reverted>,
    #[serde(default)]
    pub error: Option<ApiError>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevertAllResponse {
    pub results: Vec<RevertResponse>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRequest {
    pub lease_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseResponse {
    /// Faults of this run still held here.
    pub faults: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultsResponse {
    pub faults: Vec<ActiveFault>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeRequest {
    pub probe: ProbeKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeResponse {
    pub ok: bool,
    pub latency_ms: f64,
    pub reason: String,
    /// A `load` burst's figures per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<crate::probe::LoadFigures>,
}

/// `POST /v1/commands`: run a scenario's `action` on this host, to its end or its timeout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandRequest {
    pub run: crate::spec::Command,
    pub timeout_ms: u64,
    /// The run it belongs to, for the audit log.
    #[serde(default)]
    pub run_id: String,
    /// Only check that the policy allows it (a controller's preflight): nothing is run.
    #[serde(default)]
    pub check: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandResponse {
    /// `None` when it was killed (a timeout) or could not start.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    /// stdout and stderr interleaved, the last 64 KiB of it (lossy UTF-8).
    pub output: String,
    /// Whether the start of the output was dropped.
    #[serde(default)]
    pub truncated: bool,
    /// How it ended, in words.
    pub detail: String,
}

impl From<crate::child::Ran> for CommandResponse {
    fn from(ran: crate::child::Ran) -> CommandResponse {
        CommandResponse {
            exit_code: ran.exit_code,
            timed_out: ran.timed_out,
            duration_ms: ran.duration.as_millis() as u64,
            output: String::from_utf8_lossy(&ran.output).into_owned(),
            truncated: ran.truncated,
            detail: ran.detail,
        }
    }
}

impl CommandResponse {
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}
