//! `report.json` (schema `chaos.report/v1`): the record of one run, for machines and for the
//! renderers that turn it into Markdown and JUnit.
//!
//! Serializable types are an IPC boundary: fields are only ever added here, never renamed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = "chaos.report/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Passed,
    Deviated,
    Invalid,
    Aborted,
    NotSteady,
    Error,
    /// The controller died before the run ended; set when it starts again.
    Interrupted,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Deviated => "deviated",
            Verdict::Invalid => "invalid",
            Verdict::Aborted => "aborted",
            Verdict::NotSteady => "not_steady",
            Verdict::Error => "error",
            Verdict::Interrupted => "interrupted",
        }
    }

    /// The exit code of `chaosctl run` for this verdict, before `faults_left` (6) is considered.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Passed => 0,
            Verdict::Deviated => 1,
            Verdict::Invalid => 2,
            Verdict::Aborted => 3,
            Verdict::NotSteady => 4,
            Verdict::Error | Verdict::Interrupted => 5,
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        Some(match s {
            "passed" => Verdict::Passed,
            "deviated" => Verdict::Deviated,
            "invalid" => Verdict::Invalid,
            "aborted" => Verdict::Aborted,
            "not_steady" => Verdict::NotSteady,
            "error" => Verdict::Error,
            "interrupted" => Verdict::Interrupted,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run ended the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Guardrail,
    Signal,
    Api,
    Setup,
    Preflight,
    Apply,
    Revert,
    AgentLost,
    Teardown,
    Hypothesis,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Guardrail => "guardrail",
            Cause::Signal => "signal",
            Cause::Api => "api",
            Cause::Setup => "setup",
            Cause::Preflight => "preflight",
            Cause::Apply => "apply",
            Cause::Revert => "revert",
            Cause::AgentLost => "agent_lost",
            Cause::Teardown => "teardown",
            Cause::Hypothesis => "hypothesis",
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    pub run_id: String,
    pub scenario: ScenarioRef,
    pub verdict: Verdict,
    /// `None` only for `passed`.
    pub cause: Option<Cause>,
    /// One sentence a person can act on.
    pub reason: String,
    /// The seed as a decimal string (64-bit values do not survive JSON numbers everywhere).
    pub seed: String,
    pub labels: BTreeMap<String, String>,
    pub user: String,
    pub host: String,
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// Faults that may still be in place: a revert failed or could not be confirmed (exit 6).
    pub faults_left: Vec<FaultLeft>,
    /// Faults an earlier, killed chaosctl left behind and this run reverted before starting.
    pub recovered: Vec<RecoveredFault>,
    pub setup: Vec<CommandOutcome>,
    pub teardown: Vec<CommandOutcome>,
    pub steps: Vec<StepReport>,
    pub breaches: Vec<Breach>,
    /// Every sample of every probe, per host.
    pub probes: Vec<ProbeReport>,
    pub events: Vec<Event>,
}

impl Report {
    /// The exit code of `chaosctl run`: 6 when faults may be left, else the verdict's.
    pub fn exit_code(&self) -> u8 {
        if self.faults_left.is_empty() {
            self.verdict.exit_code()
        } else {
            6
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioRef {
    pub name: String,
    pub sha256: String,
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultLeft {
    pub host: String,
    pub fault_id: String,
    pub kind: String,
    pub fault: String,
    /// What failed, and what to do about it.
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveredFault {
    pub host: String,
    pub fault_id: String,
    pub run_id: String,
    pub fault: String,
    pub ok: bool,
    pub detail: String,
}

/// A setup or teardown command and how it ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandOutcome {
    pub name: String,
    pub command: String,
    pub background: bool,
    pub ok: bool,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Passed,
    Deviated,
    Aborted,
    Error,
    /// Not run: an earlier step ended the run, or a dry run.
    Skipped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    pub index: usize,
    pub name: String,
    pub status: StepStatus,
    /// The hosts faulted by this step, in name order.
    pub hosts: Vec<String>,
    /// One entry per fault and host.
    pub faults: Vec<FaultReport>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: u64,
    pub recover_within_ms: u64,
    pub before: Option<CheckReport>,
    pub after: Option<CheckReport>,
    /// From the first injection to the first failing hypothesis sample; `None` if none failed.
    pub impact_ms: Option<u64>,
    /// From the fault's end to the first sample of the first whole holding window: 0 when the
    /// hypothesis never stopped holding, `None` when it did not recover.
    pub recovery_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultReport {
    pub fault_id: String,
    pub kind: String,
    /// One line: what the fault does.
    pub fault: String,
    pub target: String,
    pub host: String,
    pub skipped: bool,
    pub applied_at: Option<DateTime<Utc>>,
    pub reverted_at: Option<DateTime<Utc>>,
    pub mechanism: Option<String>,
    /// The host's state read back after injection (and after the revert) matched.
    pub verified: Option<bool>,
    /// What was touched: pids, files.
    pub affected: Vec<String>,
    pub error: Option<String>,
    pub detail: String,
}

/// One hypothesis check: a before-check or an after-check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckReport {
    pub held: bool,
    pub started_at: DateTime<Utc>,
    pub decided_at: DateTime<Utc>,
    pub reason: String,
    pub probes: Vec<ProbeCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeCheck {
    pub probe: String,
    pub host: String,
    pub held: bool,
    /// Passing samples in the deciding window, and the window's size.
    pub passed: usize,
    pub samples: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Breach {
    pub guardrail: String,
    pub host: String,
    pub at: DateTime<Utc>,
    pub step: Option<String>,
    pub passed: usize,
    pub samples: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeReport {
    pub name: String,
    pub kind: String,
    pub role: ProbeRole,
    pub host: String,
    pub every_ms: u64,
    pub window_samples: usize,
    pub tolerance: f64,
    pub samples: Vec<SampleRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeRole {
    SteadyState,
    Guardrail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleRecord {
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub latency_ms: f64,
    pub reason: String,
}

/// Something that happened during a run, in the order it happened (also `events.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub at: DateTime<Utc>,
    /// A snake_case name: `run_started`, `fault_applied`, `breach`, ...
    pub kind: String,
    pub message: String,
    /// Structured details; an object, possibly empty.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub fields: serde_json::Map<String, serde_json::Value>,
}
