//! The report of a run whose controller died before it ended (verdict `interrupted`): rebuilt
//! from what its `events.jsonl` says, since nothing else of it survived. The steps it reached,
//! the faults it injected (and reverted, where a `fault_reverted` event says so), and every
//! event; a fault injected with no revert recorded is listed in `faults_left`, since nothing
//! here can confirm that it is gone.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::report::model::{
    Event, FaultLeft, FaultReport, Report, SCHEMA, ScenarioRef, StepReport, StepStatus, Verdict,
};
use crate::report::writer::{EVENTS_FILE, JSON_FILE, MARKDOWN_FILE};
use crate::store::RunRecord;

/// Reads `REPORT_DIR/RUN_ID/events.jsonl` (a missing file or a torn last line is no error: the
/// report says what is known).
pub fn read_events(report_dir: &Path) -> Vec<Event> {
    std::fs::read_to_string(report_dir.join(EVENTS_FILE))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The report of an interrupted run, from its record and its events.
pub fn report(record: &RunRecord, events: Vec<Event>) -> Report {
    let field = |e: &Event, name: &str| -> Option<String> {
        e.fields.get(name).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let seed = events
        .iter()
        .find(|e| e.kind == "run_started")
        .and_then(|e| field(e, "seed"))
        .unwrap_or_default();
    let ended_at = events
        .last()
        .map(|e| e.at)
        .unwrap_or(record.started_at)
        .max(record.started_at);

    let mut steps: Vec<StepReport> = Vec::new();
    // fault_id -> (step position, fault position)
    let mut faults: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for e in &events {
        match e.kind.as_str() {
            "step_started" => {
                if let Some(step) = steps.last_mut() {
                    step.ended_at.get_or_insert(e.at);
                }
                let index = e
                    .fields
                    .get("index")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(steps.len() as u64) as usize;
                // No impact: the samples died with the controller (events.jsonl does not keep
                // them).
                steps.push(StepReport {
                    started_at: Some(e.at),
                    ..StepReport::new(
                        index,
                        field(e, "step").unwrap_or_default(),
                        StepStatus::Aborted,
                    )
                });
            }
            "fault_applied" => {
                let position = steps.len().saturating_sub(1);
                let (Some(fault_id), Some(step)) = (field(e, "fault_id"), steps.last_mut()) else {
                    continue;
                };
                let host = field(e, "host").unwrap_or_default();
                if !step.hosts.contains(&host) {
                    step.hosts.push(host.clone());
                    step.hosts.sort();
                }
                // `injected FAULT on HOST via MECHANISM...`: the fault's one line.
                let fault = e
                    .message
                    .strip_prefix("injected ")
                    .and_then(|rest| rest.split(&format!(" on {host} via ")).next())
                    .unwrap_or(&e.message)
                    .to_string();
                faults.insert(fault_id.clone(), (position, step.faults.len()));
                step.faults.push(FaultReport {
                    fault_id,
                    kind: fault
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                    fault,
                    target: String::new(),
                    host,
                    skipped: false,
                    applied_at: Some(e.at),
                    reverted_at: None,
                    mechanism: field(e, "mechanism"),
                    verified: e
                        .fields
                        .get("verified")
                        .and_then(serde_json::Value::as_bool),
                    affected: Vec::new(),
                    error: None,
                    detail: e.message.clone(),
                });
            }
            "fault_reverted" => {
                if let Some(&(s, f)) = field(e, "fault_id").and_then(|id| faults.get(&id)) {
                    steps[s].faults[f].reverted_at = Some(e.at);
                }
            }
            _ => {}
        }
    }
    for step in &mut steps {
        let end = *step.ended_at.get_or_insert(ended_at);
        if let Some(start) = step.started_at {
            step.duration_ms = (end - start).num_milliseconds().max(0) as u64;
        }
    }
    let faults_left: Vec<FaultLeft> = steps
        .iter()
        .flat_map(|s| &s.faults)
        .filter(|f| {
            f.reverted_at.is_none()
                && agent::spec::FaultKind::from_name(&f.kind).is_none_or(|k| k.holds())
        })
        .map(|f| FaultLeft {
            host: f.host.clone(),
            fault_id: f.fault_id.clone(),
            kind: f.kind.clone(),
            fault: f.fault.clone(),
            reason: format!(
                "injected at {} and no revert recorded before the controller died; the agent of \
                 {} reverts it on its own (at its end time, when the lease runs out, or from its \
                 journal when it starts again); check with `chaosctl revert --all`",
                f.applied_at.map(stamp).unwrap_or_default(),
                f.host
            ),
        })
        .collect();
    let last = events.last().map_or_else(
        || "no event was recorded".to_string(),
        |e| {
            format!(
                "its last event, at {}, was `{}`: {}",
                stamp(e.at),
                e.kind,
                e.message
            )
        },
    );
    Report {
        schema: SCHEMA.to_string(),
        run_id: record.run_id.clone(),
        scenario: ScenarioRef {
            name: record.scenario.clone(),
            sha256: String::new(),
            path: record.scenario_path.clone(),
            description: None,
        },
        verdict: Verdict::Interrupted,
        cause: None,
        reason: format!(
            "the controller running it died before the run ended (killed, or its machine went \
             down), so this report is rebuilt from events.jsonl; {last}"
        ),
        seed,
        labels: record.labels.clone(),
        user: String::new(),
        host: String::new(),
        dry_run: record.dry_run,
        started_at: record.started_at,
        ended_at,
        duration_ms: (ended_at - record.started_at).num_milliseconds().max(0) as u64,
        faults_left,
        recovered: Vec::new(),
        setup: Vec::new(),
        teardown: Vec::new(),
        steps,
        breaches: Vec::new(),
        probes: Vec::new(),
        events,
    }
}

/// Writes `report.json` and `report.md` into the run's folder (temp file and rename), unless a
/// `report.json` is already there. `latest` is left alone: this run is not the newest.
pub fn write_files(report_dir: &Path, report: &Report) -> std::io::Result<()> {
    if report_dir.join(JSON_FILE).exists() || !report_dir.is_dir() {
        return Ok(());
    }
    let mut json = serde_json::to_vec_pretty(report)?;
    json.push(b'\n');
    for (name, bytes) in [
        (JSON_FILE, json),
        (
            MARKDOWN_FILE,
            crate::report::markdown::render(report).into_bytes(),
        ),
    ] {
        let tmp = report_dir.join(format!(".{name}.tmp-{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, report_dir.join(name))?;
    }
    Ok(())
}

fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}
