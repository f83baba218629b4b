//! `chaosctl diff RUN_A RUN_B`: two stored runs side by side, from the local history or a chaosd
//! server. The comparison is `chaosd::report::diff` (pure, shared); this module finds the two
//! reports and renders the comparison as aligned text, JSON or a self-contained HTML page.

use std::path::Path;

use anyhow::{Context, anyhow};
use chaosd::report::diff::{
    ProbeDiff, RunDiff, RunSide, StepDiff, StepMatch, StepSide, diff, labels_text,
};
use chaosd::report::markdown::duration;
use chaosd::report::model::Report;
use chaosd::report::summary::{IMPACT_COLUMNS, impact_cells};

use super::remote::Server;
use super::report::emit;
use super::{EXIT_OK, Failure};
use crate::args::DiffFormat;
use crate::state;

/// Finds both runs in the local history, then renders.
pub fn run(
    state_dir: Option<&Path>,
    runs: [&str; 2],
    format: DiffFormat,
    output: Option<&Path>,
) -> Result<u8, Failure> {
    let state_dir = state::state_dir(state_dir)?;
    state::open_agent(&state_dir)?;
    let store = state::open_store(&state_dir)?;
    let mut reports = Vec::with_capacity(2);
    for (side, id) in ["A", "B"].into_iter().zip(runs) {
        let (record, report) = match store.get(id) {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Err(Failure::Invalid(anyhow!(
                    "chaosctl: no run `{id}` (run {side}) in the history at `{}`; `chaosctl runs` lists them",
                    state_dir.display()
                )));
            }
            Err(err) => {
                return Err(Failure::Invalid(
                    anyhow::Error::from(err).context(format!("chaosctl: run {side} `{id}`")),
                ));
            }
        };
        let Some(report) = report else {
            return Err(Failure::Failed(anyhow!(
                "run {side} `{}` has no report yet ({}); it may still be running",
                record.run_id,
                record.verdict.map(|v| v.as_str()).unwrap_or("running")
            )));
        };
        reports.push(report);
    }
    render_and_emit(&reports[0], &reports[1], format, output)
}

/// Fetches both reports from chaosd (`--server`), then renders.
pub async fn remote(
    server: &Server,
    runs: [&str; 2],
    format: DiffFormat,
    output: Option<&Path>,
) -> Result<u8, Failure> {
    let client = server.client().await?;
    let mut reports = Vec::with_capacity(2);
    for (side, id) in ["A", "B"].into_iter().zip(runs) {
        let text = match client.report(id, "json").await {
            Ok(text) => text,
            Err(err) if err.status() == Some(404) => {
                return Err(Failure::Invalid(anyhow!(
                    "chaosctl: no run `{id}` (run {side}) on chaosd at {}; `chaosctl --server {} runs` lists them",
                    client.url(),
                    client.url()
                )));
            }
            Err(err) => return Err(super::remote::failure(err)),
        };
        let report: Report = serde_json::from_str(&text)
            .with_context(|| format!("chaosd sent a report of run {side} `{id}` we cannot read"))?;
        reports.push(report);
    }
    render_and_emit(&reports[0], &reports[1], format, output)
}

fn render_and_emit(
    a: &Report,
    b: &Report,
    format: DiffFormat,
    output: Option<&Path>,
) -> Result<u8, Failure> {
    let d = diff(a, b);
    let text = match format {
        DiffFormat::Text => render_text(&d),
        DiffFormat::Json => serde_json::to_string_pretty(&d).context("cannot render JSON")? + "\n",
        DiffFormat::Html => chaosd::report::html::diff::render(&d),
    };
    emit(&text, output)?;
    Ok(EXIT_OK)
}

/// Rows of cells, aligned: every column but the last padded to its widest cell.
fn table(out: &mut String, indent: &str, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = indent.to_string();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[c] - cell.chars().count() + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn or_dash(text: String) -> String {
    if text.trim().is_empty() {
        "–".into()
    } else {
        text
    }
}

/// The diff for a terminal or a document: the runs, each step with its figures in two aligned
/// columns (A, then B), and what differs. Long sentences (reasons, a step's status with its
/// impact, objective misses) are given one line per run rather than squeezed into a column.
pub fn render_text(d: &RunDiff) -> String {
    let mut out = String::new();
    runs(&mut out, &d.a, &d.b, d.same_scenario);
    for (n, step) in d.steps.iter().enumerate() {
        out.push('\n');
        step_text(&mut out, n + 1, step);
    }
    out.push_str("\nwhat differs\n");
    if d.differences.is_empty() {
        out.push_str(
            "  nothing notable: the same verdicts, step statuses and failures, and times within jitter\n",
        );
    }
    for x in &d.differences {
        out.push_str(&format!("  - {}\n", x.text));
    }
    out
}

fn runs(out: &mut String, a: &RunSide, b: &RunSide, same: bool) {
    let short = |s: &str| s.chars().take(12).collect::<String>();
    let cause = |r: &RunSide| r.cause.map_or("–".to_string(), |c| c.as_str().to_string());
    let started = |r: &RunSide| r.started_at.format("%Y-%m-%d %H:%M:%S").to_string();
    let row = |k: &str, va: String, vb: String| vec![k.to_string(), or_dash(va), or_dash(vb)];
    let mut rows = vec![
        vec![String::new(), "A".into(), "B".into()],
        row("run", a.run_id.clone(), b.run_id.clone()),
        row("scenario", a.scenario.clone(), b.scenario.clone()),
        row("file", a.path.clone(), b.path.clone()),
        row("sha256", short(&a.sha256), short(&b.sha256)),
        row("verdict", a.verdict.to_string(), b.verdict.to_string()),
        row("cause", cause(a), cause(b)),
        row(
            "exit code",
            a.exit_code.to_string(),
            b.exit_code.to_string(),
        ),
        row("seed", a.seed.clone(), b.seed.clone()),
        row("labels", labels_text(&a.labels), labels_text(&b.labels)),
        row("started (UTC)", started(a), started(b)),
        row("duration", duration(a.duration_ms), duration(b.duration_ms)),
        row(
            "faults left",
            a.faults_left.to_string(),
            b.faults_left.to_string(),
        ),
    ];
    if a.dry_run || b.dry_run {
        let dry = |d: bool| if d { "yes" } else { "no" }.to_string();
        rows.push(row("dry run", dry(a.dry_run), dry(b.dry_run)));
    }
    table(out, "", &rows);
    let file = if same {
        "the same scenario file (same sha256)"
    } else {
        "different scenario files (sha256 differs)"
    };
    table(
        out,
        "",
        &[
            vec!["scenarios".into(), file.into()],
            vec!["reason A".into(), or_dash(a.reason.clone())],
            vec!["reason B".into(), or_dash(b.reason.clone())],
        ],
    );
}

fn step_text(out: &mut String, n: usize, step: &StepDiff) {
    let how = match (&step.matched, &step.a, &step.b) {
        (StepMatch::Index, Some(a), Some(b)) => format!(
            " (matched by position: `{}` in A, `{}` in B)",
            a.name, b.name
        ),
        (StepMatch::OnlyA, ..) => " (in run A only)".into(),
        (StepMatch::OnlyB, ..) => " (in run B only)".into(),
        _ => String::new(),
    };
    out.push_str(&format!("step {n}: {}{how}\n", step.name));
    let (a, b) = (step.a.as_ref(), step.b.as_ref());
    let either = |s: Option<&StepSide>, f: &dyn Fn(&StepSide) -> String| match s {
        Some(s) => or_dash(f(s)),
        None => "–".into(),
    };
    let status = |s: Option<&StepSide>| match s {
        Some(s) => s.status_text.clone(),
        None => "not in this run".into(),
    };
    let faults = |s: &StepSide| s.faults.join("; ");
    let misses = |s: &StepSide| {
        if s.misses.is_empty() {
            "none".to_string()
        } else {
            s.misses.join("; ")
        }
    };
    table(
        out,
        "  ",
        &[
            vec!["status A".into(), status(a)],
            vec!["status B".into(), status(b)],
            vec!["faults A".into(), either(a, &faults)],
            vec!["faults B".into(), either(b, &faults)],
        ],
    );
    let row =
        |k: &str, f: &dyn Fn(&StepSide) -> String| vec![k.to_string(), either(a, f), either(b, f)];
    table(
        out,
        "  ",
        &[
            vec![String::new(), "A".into(), "B".into()],
            row("hosts", &|s| s.hosts.join(", ")),
            row("time to impact", &|s| {
                s.impact_ms
                    .map_or("none".into(), chaosd::engine::impact::seconds)
            }),
            row("recovery", &|s| match s.recovery_ms {
                Some(ms) => chaosd::engine::impact::seconds(ms),
                None if s.did_not_recover => "did not recover".into(),
                None => String::new(),
            }),
            row("recover within", &|s| duration(s.recover_within_ms)),
            row("objectives", &|s| {
                s.objectives.clone().unwrap_or_else(|| "none".into())
            }),
        ],
    );
    if a.is_some_and(|s| !s.misses.is_empty()) || b.is_some_and(|s| !s.misses.is_empty()) {
        table(
            out,
            "  ",
            &[
                vec!["misses A".into(), either(a, &misses)],
                vec!["misses B".into(), either(b, &misses)],
            ],
        );
    }
    for p in &step.probes {
        probe_text(out, p);
    }
}

/// One probe and host: each impact figure of the report's impact table, A beside B.
fn probe_text(out: &mut String, p: &ProbeDiff) {
    let cells =
        |i: Option<&chaosd::report::model::ProbeImpact>| i.map(|i| impact_cells(i).map(or_dash));
    let (ca, cb) = (cells(p.a.as_ref()), cells(p.b.as_ref()));
    let mut rows = vec![vec![
        format!("`{}` on {}", p.probe, p.host),
        "A".into(),
        "B".into(),
    ]];
    let is_load = |i: &Option<chaosd::report::model::ProbeImpact>| {
        i.as_ref().is_some_and(|i| i.load.is_some())
    };
    // The load columns (requests, percentiles, statuses) only for a load probe.
    let last = if is_load(&p.a) || is_load(&p.b) {
        IMPACT_COLUMNS.len()
    } else {
        7
    };
    for (c, name) in IMPACT_COLUMNS.iter().enumerate().take(last).skip(2) {
        let cell = |cells: &Option<[String; 10]>| match cells {
            Some(cells) => cells[c].clone(),
            None => "not measured".into(),
        };
        rows.push(vec![format!("  {name}"), cell(&ca), cell(&cb)]);
    }
    table(out, "  ", &rows);
}
