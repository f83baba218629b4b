//! chaosd's HTTP API under `/v1`: the request and response bodies, shared by the service (the
//! server) and `chaosctl --server` (the client, [`super::client`]), so they are written once.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /healthz` (no token) | | `ok` |
//! | `GET /v1/status` | | [`ServiceStatus`] |
//! | `POST /v1/runs` | [`SubmitRequest`] | 201 [`SubmitResponse`]; 400 scenario errors, 403 `local` refused, 503 halted |
//! | `GET /v1/runs?limit=N` | | [`RunList`], newest first |
//! | `GET /v1/runs/{id}` | | [`RunView`]: the record, the live status while running, the report once done |
//! | `GET /v1/runs/{id}/events` | | newline-delimited JSON [`StreamLine`]s until the run ends |
//! | `GET /v1/runs/{id}/report?format=json\|md\|html\|junit` | | the report, rendered; 409 while running |
//! | `POST /v1/runs/{id}/abort` | | [`AbortResponse`]; 409 when it has ended |
//! | `POST /v1/runs/{id}/confirm` | [`AnswerRequest`] (optional) | [`AnswerResponse`]: the `manual` step waiting goes on; 409 when none waits |
//! | `POST /v1/runs/{id}/refuse` | [`AnswerRequest`] (optional) | [`AnswerResponse`]: the step waiting is refused (`deviated`); 409 when none waits |
//! | `POST /v1/halt` | | [`HaltResponse`]: every running run aborted, new ones refused |
//! | `POST /v1/resume` | | [`HaltResponse`] |
//! | `GET /v1/agents` | | [`AgentList`]: the inventory's agents |
//!
//! `{id}` is a run id, a unique prefix of one or of its random suffix, or `latest`. Every error is a JSON [`ApiError`]
//! (`{code, message}`) with a 4xx or 5xx status.
//!
//! **Architecture Invariant:** fields are only added here, never renamed or removed, and new ones
//! carry `#[serde(default)]` so that older peers still parse.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use agent::api::ApiError;

use crate::engine::live::{LiveStatus, Phase, ProbeLine};
use crate::report::model::{Cause, Event, ProbeRole, Report, Verdict};
use crate::store::RunRecord;

/// The API's version prefix.
pub const PREFIX: &str = "/v1";

/// The largest request body chaosd reads (a scenario is text); larger ones are answered 413.
pub const MAX_BODY: usize = 1 << 20;

/// `POST /v1/runs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The scenario file's text (YAML).
    pub scenario: String,
    /// The file's name, for error messages (`FILE:LINE:COL`) and the report; `scenario.yaml`
    /// when absent. Relative paths in the scenario resolve against a folder of the run's own
    /// under chaosd's state directory, never against this name.
    #[serde(default)]
    pub file: Option<String>,
    /// `${NAME}` values, looked up before chaosd's environment.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub dry_run: bool,
    /// For a monkey file: stop after this many milliseconds (a normal end); none runs it until
    /// aborted.
    #[serde(default)]
    pub run_for_ms: Option<u64>,
}

/// 201 to `POST /v1/runs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitResponse {
    pub run_id: String,
    /// The run's report folder on chaosd's machine.
    #[serde(default)]
    pub report_dir: Option<String>,
}

/// `GET /v1/runs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunList {
    pub runs: Vec<RunSummary>,
}

/// One run of the history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: String,
    pub scenario: String,
    pub scenario_path: String,
    /// `running` while it goes on, else the verdict (`interrupted` when chaosd died during it).
    pub verdict: String,
    #[serde(default)]
    pub cause: Option<Cause>,
    #[serde(default)]
    pub exit_code: Option<u8>,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub report_dir: Option<String>,
}

impl From<&RunRecord> for RunSummary {
    fn from(r: &RunRecord) -> RunSummary {
        RunSummary {
            run_id: r.run_id.clone(),
            scenario: r.scenario.clone(),
            scenario_path: r.scenario_path.clone(),
            verdict: verdict_text(r.verdict),
            cause: r.cause,
            exit_code: r.exit_code,
            started_at: r.started_at,
            ended_at: r.ended_at,
            labels: r.labels.clone(),
            dry_run: r.dry_run,
            report_dir: r.report_dir.clone(),
        }
    }
}

/// `running` for a run without a verdict yet.
pub fn verdict_text(verdict: Option<Verdict>) -> String {
    verdict.map_or("running", Verdict::as_str).to_string()
}

/// `GET /v1/runs/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunView {
    pub run: RunSummary,
    /// While the run goes on: its phase, step, time left on the held fault, probes' shares.
    #[serde(default)]
    pub live: Option<LiveView>,
    /// Once the run has ended (interrupted runs have none).
    #[serde(default)]
    pub report: Option<Report>,
}

/// A running run's status: [`LiveStatus`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveView {
    /// `setup`, `preflight`, `check`, `step`, `action` (an `action` step's command runs),
    /// `manual` (a `manual` step waits: see `prompt`), `after_check`, `reverting`, `teardown`,
    /// `done`.
    pub phase: String,
    /// The step going on: index from 0, how many steps, its name.
    #[serde(default)]
    pub step: Option<StepView>,
    /// Milliseconds left until the held faults are reverted.
    #[serde(default)]
    pub fault_left_ms: Option<u64>,
    /// When a monkey's next fault is due.
    #[serde(default)]
    pub next_fault: Option<DateTime<Utc>>,
    /// The question a `manual` step waits on (`POST /v1/runs/{id}/confirm` or `refuse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default)]
    pub probes: Vec<ProbeView>,
    /// The question a manual step waits on: answer it with `POST /v1/runs/{id}/confirm` or
    /// `.../refuse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<QuestionView>,
}

/// A manual step's pending question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionView {
    pub prompt: String,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepView {
    pub index: usize,
    pub total: usize,
    pub name: String,
}

/// One probe's passing share in its latest window so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeView {
    pub name: String,
    pub host: String,
    pub role: ProbeRole,
    pub passed: usize,
    pub total: usize,
    #[serde(default)]
    pub last_ok: Option<bool>,
}

const PHASES: [(Phase, &str); 10] = [
    (Phase::Setup, "setup"),
    (Phase::Preflight, "preflight"),
    (Phase::Check, "check"),
    (Phase::Step, "step"),
    (Phase::AfterCheck, "after_check"),
    (Phase::Reverting, "reverting"),
    (Phase::Teardown, "teardown"),
    (Phase::Done, "done"),
    (Phase::Action, "action"),
    (Phase::Manual, "manual"),
];

impl From<&LiveStatus> for LiveView {
    fn from(s: &LiveStatus) -> LiveView {
        LiveView {
            phase: PHASES
                .iter()
                .find(|(p, _)| *p == s.phase)
                .map_or("unknown", |(_, name)| name)
                .to_string(),
            step: s.step.as_ref().map(|(index, total, name)| StepView {
                index: *index,
                total: *total,
                name: name.clone(),
            }),
            fault_left_ms: s
                .fault_remaining
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            next_fault: s.next_fault,
            prompt: s.prompt.clone(),
            probes: s
                .probes
                .iter()
                .map(|p| ProbeView {
                    name: p.name.clone(),
                    host: p.host.clone(),
                    role: p.role,
                    passed: p.passed,
                    total: p.total,
                    last_ok: p.last_ok,
                })
                .collect(),
            question: None,
        }
    }
}

impl LiveView {
    /// Back into the engine's type, for `chaosctl`'s status line; `None` for a phase this build
    /// does not know.
    pub fn to_status(&self) -> Option<LiveStatus> {
        let phase = PHASES.iter().find(|(_, n)| *n == self.phase)?.0;
        Some(LiveStatus {
            phase,
            step: self
                .step
                .as_ref()
                .map(|s| (s.index, s.total, s.name.clone())),
            fault_remaining: self.fault_left_ms.map(Duration::from_millis),
            next_fault: self.next_fault,
            prompt: self.prompt.clone(),
            probes: self
                .probes
                .iter()
                .map(|p| ProbeLine {
                    name: p.name.clone(),
                    host: p.host.clone(),
                    role: p.role,
                    passed: p.passed,
                    total: p.total,
                    last_ok: p.last_ok,
                })
                .collect(),
        })
    }
}

/// One line of `GET /v1/runs/{id}/events` (`application/x-ndjson`): first every event so far,
/// then each new event and status as it happens, and last one `end` line, after which the
/// server closes the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamLine {
    /// An event of the run (the fields of the report's `events`).
    Event(Event),
    /// The live status, at most a few times a second, while it changes.
    Status { status: LiveView },
    /// The run has ended: its verdict and exit code, and the report (none for interrupted runs).
    End {
        verdict: String,
        #[serde(default)]
        exit_code: Option<u8>,
        #[serde(default)]
        report_dir: Option<String>,
        #[serde(default)]
        report: Option<Box<Report>>,
    },
}

/// The body of `POST /v1/runs/{id}/confirm` and `.../refuse`; both keys optional, and so is
/// the body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// Who answered, for the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Why (mostly for a refusal), for the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The step (from 0) this answer is for: when given, it must be the one waiting (409
    /// otherwise), so a page shown for an earlier step cannot answer a later one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
}

/// What a confirm or refuse answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerResponse {
    pub run_id: String,
    /// The step answered, from 0.
    pub step: usize,
    pub step_name: String,
    pub prompt: String,
    /// `confirmed` or `refused`.
    pub answer: String,
    pub confirmed: bool,
    /// Who answered, as recorded.
    pub by: String,
}

/// `POST /v1/runs/{id}/abort`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AbortResponse {
    pub run_id: String,
    /// Whether this request asked for the abort (false: it had been asked already).
    pub aborted: bool,
}

/// `POST /v1/halt` and `POST /v1/resume`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HaltResponse {
    pub halted: bool,
    /// The runs this halt aborted.
    #[serde(default)]
    pub aborted: Vec<String>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub version: String,
    pub halted: bool,
    #[serde(default)]
    pub halted_since: Option<DateTime<Utc>>,
    /// The ids of the runs going on.
    #[serde(default)]
    pub running: Vec<String>,
    pub allow_local: bool,
    /// This instance's name (`node:`, default the host name).
    #[serde(default)]
    pub node: String,
    /// Whether this instance fires the schedules: the only instance on SQLite, the leader of
    /// those sharing a PostgreSQL store.
    #[serde(default)]
    pub leader: bool,
    /// `sqlite` or `postgresql`.
    #[serde(default)]
    pub store: String,
}

/// `GET /v1/agents`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentList {
    pub agents: Vec<AgentView>,
}

/// One agent of the inventory, as it answered (or not).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentView {
    pub host: String,
    pub url: String,
    pub reachable: bool,
    /// What it said about itself, when it answered.
    #[serde(default)]
    pub health: Option<agent::api::Health>,
    /// Why it could not be asked, when it did not answer.
    #[serde(default)]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_views_round_trip_every_phase() {
        for (phase, _) in PHASES {
            let status = LiveStatus {
                phase,
                step: Some((1, 3, "kill".into())),
                fault_remaining: Some(Duration::from_millis(1500)),
                next_fault: None,
                prompt: None,
                probes: vec![ProbeLine {
                    name: "health".into(),
                    host: "local".into(),
                    role: ProbeRole::Guardrail,
                    passed: 3,
                    total: 4,
                    last_ok: Some(true),
                }],
            };
            let view = LiveView::from(&status);
            let json = serde_json::to_string(&view).unwrap();
            let back: LiveView = serde_json::from_str(&json).unwrap();
            assert_eq!(back, view);
            let again = back.to_status().unwrap();
            assert_eq!(again.phase, phase);
            assert_eq!(again.fault_remaining, status.fault_remaining);
            assert_eq!(again.probes.len(), 1);
        }
    }

    #[test]
    fn stream_lines_are_tagged() {
        let end = StreamLine::End {
            verdict: "interrupted".into(),
            exit_code: None,
            report_dir: None,
            report: None,
        };
        let json = serde_json::to_value(&end).unwrap();
        assert_eq!(json["type"], "end");
        assert_eq!(json["verdict"], "interrupted");
    }
}
