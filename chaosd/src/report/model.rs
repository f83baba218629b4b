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
    /// A step's impact missed one of its `objectives`.
    Objective,
    /// A step's `action` (or an `action` entry of its `faults`) failed or timed out.
    Action,
    /// A `manual` step was refused, or not answered in time.
    Manual,
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
            Cause::Objective => "objective",
            Cause::Action => "action",
            Cause::Manual => "manual",
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
    /// The scenario's `description`: what the game day rehearses and what steady means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
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
    /// What users went through: per steady-state probe and host, over the impact window (from
    /// the step's first injection until its after-check was decided, or it was cut short).
    #[serde(default)]
    pub impact: Vec<ProbeImpact>,
    /// The end of the impact window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact_until: Option<DateTime<Utc>>,
    /// The objectives this step was judged against, and what missed them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectives: Option<ObjectivesReport>,
    /// What the step's `action` (one entry per host) and its `action` entries of `faults` ran,
    /// where, and how each ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionReport>,
    /// A `manual` step's question, and who answered it how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<ManualReport>,
}

impl StepReport {
    /// A step's record before anything happened in it: no hosts, faults, times, checks,
    /// figures, actions or answer yet.
    pub fn new(index: usize, name: String, status: StepStatus) -> StepReport {
        StepReport {
            index,
            name,
            status,
            hosts: Vec::new(),
            faults: Vec::new(),
            started_at: None,
            ended_at: None,
            duration_ms: 0,
            recover_within_ms: 0,
            before: None,
            after: None,
            impact_ms: None,
            recovery_ms: None,
            impact: Vec::new(),
            impact_until: None,
            objectives: None,
            actions: Vec::new(),
            manual: None,
        }
    }
}

/// One run of an action on one host (or on the controller).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionReport {
    pub command: String,
    /// `controller`, or the host whose agent ran it.
    pub host: String,
    /// Not run: a dry run, or the step ended first.
    #[serde(default)]
    pub skipped: bool,
    /// For an entry of `faults`: this long after the step's first injection.
    #[serde(default)]
    pub start_after_ms: u64,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: u64,
    pub exit_code: Option<i32>,
    /// Exit 0 within its timeout.
    pub ok: bool,
    #[serde(default)]
    pub timed_out: bool,
    /// The file in the report folder its output went to.
    #[serde(default)]
    pub log: String,
    /// How it ended, or why it did not run, in words.
    #[serde(default)]
    pub detail: String,
}

/// A `manual` step's question and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManualReport {
    pub prompt: String,
    pub timeout_ms: u64,
    /// `confirmed`, `refused`, `timed_out`, `aborted` (the run ended first), or `skipped`.
    pub answer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<DateTime<Utc>>,
}

/// One steady-state probe's figures on one host over a step's impact window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeImpact {
    pub probe: String,
    pub host: String,
    pub kind: String,
    /// What `taken` and `failed` count: `samples`, or `requests` for a `load` probe.
    pub counts: ImpactUnit,
    pub taken: u64,
    pub failed: u64,
    /// Time the probe was failing: from each failing sample to the next sample.
    pub error_ms: u64,
    /// The longest run of failing samples, from its first to the next passing sample (or to the
    /// window's end when none passed).
    pub longest_outage_ms: u64,
    /// Whether the last run of failing samples ended with a passing one within the window.
    pub restored: bool,
    /// From the window's start to the first failing sample; `None` when none failed.
    pub impact_ms: Option<u64>,
    /// From the first failing sample to the first sample of the probe's final run of holding
    /// windows (the system's own time to restore, during the fault or after it); `None` when
    /// none failed or it did not hold again within the window.
    pub restore_ms: Option<u64>,
    /// Each run of failing samples, for timelines.
    pub outages: Vec<Outage>,
    /// A `load` probe's requests over the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadImpact>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImpactUnit {
    Samples,
    Requests,
}

impl ImpactUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            ImpactUnit::Samples => "samples",
            ImpactUnit::Requests => "requests",
        }
    }
}

/// A run of failing samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    /// The first failing sample.
    pub from: DateTime<Utc>,
    /// The next passing sample, or the window's end when none passed (`restored` false).
    pub until: DateTime<Utc>,
    pub restored: bool,
}

/// A `load` probe's requests over an impact window, added up from its bursts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadImpact {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// Per-request latency percentiles over the successful requests, as the upper bound of the
    /// latency bucket they fall in; `None` when none succeeded.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The slowest successful request.
    pub max_ms: Option<f64>,
    /// How requests ended: HTTP status, or the failure when there was no answer.
    pub statuses: BTreeMap<String, u64>,
}

/// A step's objectives, and each probe and host that missed one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectivesReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_outage_ms: Option<u64>,
    /// Percent of the samples (of a load probe: the requests) in the impact window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failed: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_ms: Option<u64>,
    pub misses: Vec<ObjectiveMiss>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveMiss {
    /// `max_outage`, `max_failed`, `max_error`.
    pub objective: String,
    pub probe: String,
    pub host: String,
    /// The figure and the limit, as a person reads them: `longest outage 3.1 s`, `10s`.
    pub figure: String,
    pub limit: String,
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
    /// A guardrail, checked with the hypothesis before anything is injected.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guardrail: bool,
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
    /// What the probe expects, in the file's words: `GET http://…: status 2xx, max_latency
    /// 300ms`, `20/s for 1s, 95% of requests ok`.
    #[serde(default)]
    pub expect: String,
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
    /// When the sample started (a `load` burst: when its first request was sent).
    pub at: DateTime<Utc>,
    pub ok: bool,
    /// How long the sample took (a `load` burst: its length; its requests' latencies are in
    /// `load`).
    pub latency_ms: f64,
    pub reason: String,
    /// A `load` burst's figures per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<agent::probe::LoadFigures>,
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
