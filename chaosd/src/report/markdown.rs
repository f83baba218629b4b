//! `report.md`: the report a team reads in its review, in a terminal (`chaosctl report RUN`) or
//! rendered. Faults that may still be in place come first; then the summary, what steady meant
//! (each probe's expectation beside what it saw), the steps with what their users went through
//! (impact per probe and host) and their objectives, the checks, breaches, probes and the
//! timeline. A step's verdict always comes with its impact ([`super::summary`]), so a passed
//! step with failures never reads as a clean pass. Times inside the run are offsets from its start
//! (`+12.3s`), so they line up with `events.jsonl` without doing date arithmetic.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};

use super::model::{
    CheckReport, CommandOutcome, ProbeReport, ProbeRole, Report, StepReport, StepStatus,
};
use super::summary::{
    IMPACT_COLUMNS, PROBE_COLUMNS, impact_cells, impact_summary, millis, misses, objectives_text,
    probe_latencies, probe_requests, probe_saw, status_with_impact, steady_rule,
};

/// Renders the whole report as Markdown.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let md = &mut out;
    let start = report.started_at;

    let verdict = report.verdict.as_str().to_uppercase();
    line(
        md,
        &format!("# Chaos run: {} — {verdict}", inline(&report.scenario.name)),
    );
    line(md, "");
    let mut headline = format!("**Verdict: {}**", report.verdict);
    if let Some(cause) = report.cause {
        let _ = write!(headline, " (cause: `{cause}`)");
    }
    let _ = write!(headline, ", exit code {}", report.exit_code());
    if report.dry_run {
        headline.push_str(", dry run: nothing was injected");
    }
    line(md, &headline);
    if !report.reason.is_empty() {
        line(md, "");
        line(md, &format!("> {}", inline(&report.reason)));
    }
    line(md, "");
    if let Some(description) = &report.scenario.description {
        // Line by line, so that a line of the file cannot open a table or a heading.
        for l in description.trim().lines() {
            line(md, &inline(l.trim_end()));
        }
        line(md, "");
    }

    if !report.faults_left.is_empty() {
        faults_left(md, report);
    }
    summary(md, report);
    steady(md, report);
    if !report.recovered.is_empty() {
        recovered(md, report);
    }
    commands(md, "Setup", &report.setup, start);
    steps_table(md, report);
    for step in &report.steps {
        step_details(md, step, start);
    }
    breaches(md, report);
    probes(md, &report.probes, start);
    commands(md, "Teardown", &report.teardown, start);
    timeline(md, report);
    out
}

fn line(md: &mut String, text: &str) {
    md.push_str(text);
    md.push('\n');
}

fn heading(md: &mut String, text: &str) {
    line(md, text);
    line(md, "");
}

/// A table: a header row, a separator and the rows, each cell escaped.
fn table(md: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let row = |cells: &mut dyn Iterator<Item = String>| {
        let cells: Vec<String> = cells.collect();
        format!("| {} |", cells.join(" | "))
    };
    line(md, &row(&mut header.iter().map(|h| h.to_string())));
    line(md, &row(&mut header.iter().map(|_| "---".to_string())));
    for r in rows {
        line(md, &row(&mut r.iter().map(|c| cell(c))));
    }
    line(md, "");
}

/// A table cell: one line, `|` escaped, never empty (an empty cell reads as a missing one).
pub fn cell(text: &str) -> String {
    let text = inline(text).replace('|', "\\|");
    if text.trim().is_empty() {
        "–".to_string()
    } else {
        text
    }
}

/// Text for one line of Markdown: newlines become spaces, so that a message cannot break a table
/// or a quote, and a `<` that could open an HTML tag is escaped outside code spans, so that a
/// renderer does not swallow `<db>`. A terminal shows `\<db>`, which still reads.
pub fn inline(text: &str) -> String {
    let text = one_line(text);
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' => in_code = !in_code,
            '<' if !in_code
                && chars
                    .peek()
                    .is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?')) =>
            {
                out.push('\\');
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// Newlines become spaces.
fn one_line(text: &str) -> String {
    text.replace("\r\n", " ").replace(['\n', '\r'], " ")
}

/// `text` in backticks, with a longer fence when it contains backticks itself.
fn code(text: &str) -> String {
    let text = one_line(text);
    if text.is_empty() {
        return String::new();
    }
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

fn utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The time from the run's start to `t`, like `+12.3s` (or `-0.2s` before it).
pub fn offset(start: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let ms = (t - start).num_milliseconds();
    let sign = if ms < 0 { '-' } else { '+' };
    let ms = ms.unsigned_abs();
    format!("{sign}{}.{}s", ms / 1000, (ms % 1000) / 100)
}

fn offset_opt(start: DateTime<Utc>, t: Option<DateTime<Utc>>) -> String {
    t.map(|t| offset(start, t)).unwrap_or_default()
}

/// A duration in milliseconds for people: `850ms`, `12.3s`, `2m03.4s`, `1h02m03s`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
    } else if ms < 3_600_000 {
        format!(
            "{}m{:02}.{}s",
            ms / 60_000,
            (ms % 60_000) / 1000,
            (ms % 1000) / 100
        )
    } else {
        format!(
            "{}h{:02}m{:02}s",
            ms / 3_600_000,
            (ms % 3_600_000) / 60_000,
            (ms % 60_000) / 1000
        )
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn faults_left(md: &mut String, report: &Report) {
    let n = report.faults_left.len();
    heading(md, &format!("## ⚠ FAULTS LEFT IN PLACE ({n})"));
    line(
        md,
        &format!(
            "> **{n} fault{} may still be active.** A revert failed or could not be confirmed, so the \
         hosts below may still be degraded. Run `chaosctl revert --all` (with `--inventory FILE` \
         for remote hosts), then check each host before closing this game day.",
            if n == 1 { "" } else { "s" }
        ),
    );
    line(md, "");
    let rows: Vec<Vec<String>> = report
        .faults_left
        .iter()
        .map(|f| {
            vec![
                f.host.clone(),
                code(&f.fault_id),
                f.kind.clone(),
                f.fault.clone(),
                f.reason.clone(),
            ]
        })
        .collect();
    table(
        md,
        &["host", "fault id", "kind", "fault", "what happened"],
        &rows,
    );
}

fn summary(md: &mut String, report: &Report) {
    heading(md, "## Summary");
    let labels = if report.labels.is_empty() {
        String::new()
    } else {
        report
            .labels
            .iter()
            .map(|(k, v)| code(&format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let scenario = if report.scenario.path.is_empty() {
        report.scenario.name.clone()
    } else {
        format!("{} ({})", report.scenario.name, code(&report.scenario.path))
    };
    let sha: String = report.scenario.sha256.chars().take(12).collect();
    let rows = vec![
        vec!["run id".into(), code(&report.run_id)],
        vec!["scenario".into(), scenario],
        vec!["scenario sha256".into(), code(&sha)],
        vec!["verdict".into(), format!("**{}**", report.verdict)],
        vec![
            "cause".into(),
            report.cause.map(|c| c.to_string()).unwrap_or_default(),
        ],
        vec!["seed".into(), code(&report.seed)],
        vec!["started (UTC)".into(), utc(report.started_at)],
        vec!["ended (UTC)".into(), utc(report.ended_at)],
        vec!["duration".into(), duration(report.duration_ms)],
        vec!["labels".into(), labels],
        vec!["by".into(), format!("{}@{}", report.user, report.host)],
        vec!["dry run".into(), yes_no(report.dry_run).into()],
        vec!["faults left".into(), report.faults_left.len().to_string()],
    ];
    table(md, &["", ""], &rows);
}

fn recovered(md: &mut String, report: &Report) {
    heading(md, "## Faults recovered from an earlier run");
    line(
        md,
        "An earlier chaosctl was killed with these faults in place; this run reverted them before starting.",
    );
    line(md, "");
    let rows: Vec<Vec<String>> = report
        .recovered
        .iter()
        .map(|f| {
            vec![
                f.host.clone(),
                code(&f.run_id),
                code(&f.fault_id),
                f.fault.clone(),
                if f.ok {
                    "reverted".into()
                } else {
                    "**FAILED**".into()
                },
                f.detail.clone(),
            ]
        })
        .collect();
    table(
        md,
        &["host", "run", "fault id", "fault", "outcome", "detail"],
        &rows,
    );
}

fn commands(md: &mut String, title: &str, cmds: &[CommandOutcome], start: DateTime<Utc>) {
    if cmds.is_empty() {
        return;
    }
    heading(md, &format!("## {title}"));
    let rows: Vec<Vec<String>> = cmds
        .iter()
        .map(|c| {
            let outcome = match (c.ok, c.background) {
                (true, true) => "ok (background)",
                (true, false) => "ok",
                (false, _) => "**FAILED**",
            };
            vec![
                c.name.clone(),
                code(&c.command),
                outcome.into(),
                c.exit_code.map(|e| e.to_string()).unwrap_or_default(),
                offset(start, c.started_at),
                offset_opt(start, c.ended_at),
                c.detail.clone(),
            ]
        })
        .collect();
    table(
        md,
        &[
            "name", "command", "outcome", "exit", "started", "ended", "detail",
        ],
        &rows,
    );
}

/// The step's status with its impact (`passed, 26 of 140 requests failed, ...`), in bold unless
/// it is a clean pass or a skip: a passed step whose users saw failures stands out too.
fn status(step: &StepReport) -> String {
    let text = status_with_impact(step);
    let clean = match step.status {
        StepStatus::Passed => impact_summary(step).is_none(),
        StepStatus::Skipped => true,
        StepStatus::Deviated | StepStatus::Aborted | StepStatus::Error => false,
    };
    if clean { text } else { format!("**{text}**") }
}

/// What steady meant: each probe's expectation and window rule, beside what it saw.
fn steady(md: &mut String, report: &Report) {
    if report.probes.is_empty() {
        return;
    }
    heading(md, "## What steady meant");
    let rows: Vec<Vec<String>> = report
        .probes
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                role(p).into(),
                p.host.clone(),
                p.expect.clone(),
                steady_rule(p),
                probe_saw(p),
            ]
        })
        .collect();
    table(md, &PROBE_COLUMNS, &rows);
}

fn role(p: &ProbeReport) -> &'static str {
    match p.role {
        ProbeRole::SteadyState => "steady state",
        ProbeRole::Guardrail => "guardrail",
    }
}

/// What the step's users went through, per probe and host, and its objectives.
fn impact(md: &mut String, step: &StepReport, start: DateTime<Utc>) {
    if !step.impact.is_empty() {
        let window = match (step.started_at, step.impact_until) {
            (Some(from), Some(until)) => format!(
                " (impact window {} → {})",
                offset(
                    start,
                    step.faults
                        .iter()
                        .filter_map(|f| f.applied_at)
                        .min()
                        .unwrap_or(from)
                ),
                offset(start, until)
            ),
            _ => String::new(),
        };
        line(md, &format!("**What users went through**{window}"));
        line(md, "");
        let rows: Vec<Vec<String>> = step
            .impact
            .iter()
            .map(|i| impact_cells(i).into_iter().collect())
            .collect();
        table(md, &IMPACT_COLUMNS, &rows);
        let outages = outages(step, start);
        if !outages.is_empty() {
            line(md, &format!("Outages: {}", inline(&outages.join("; "))));
            line(md, "");
        }
    }
    if let Some(o) = &step.objectives {
        let missed = misses(step);
        if missed.is_empty() {
            line(
                md,
                &format!("**Objectives:** {}, all met", objectives_text(o)),
            );
            line(md, "");
        } else {
            line(
                md,
                &format!("**Objectives:** {}, **missed**:", objectives_text(o)),
            );
            line(md, "");
            for m in missed {
                line(md, &format!("- {}", inline(&m)));
            }
            line(md, "");
        }
    }
}

fn steps_table(md: &mut String, report: &Report) {
    if report.steps.is_empty() {
        return;
    }
    heading(md, "## Steps");
    let rows: Vec<Vec<String>> = report
        .steps
        .iter()
        .map(|s| {
            let mut kinds: Vec<&str> = s.faults.iter().map(|f| f.kind.as_str()).collect();
            kinds.dedup();
            vec![
                (s.index + 1).to_string(),
                s.name.clone(),
                status(s),
                kinds.join(", "),
                s.hosts.join(", "),
                s.impact_ms.map(duration).unwrap_or_else(|| "none".into()),
                match s.recovery_ms {
                    Some(ms) => duration(ms),
                    None if s.status == StepStatus::Skipped || s.after.is_none() => String::new(),
                    None => "**did not recover**".into(),
                },
            ]
        })
        .collect();
    table(
        md,
        &[
            "#",
            "step",
            "status",
            "faults",
            "hosts",
            "time to impact",
            "recovery",
        ],
        &rows,
    );
}

fn step_details(md: &mut String, step: &StepReport, start: DateTime<Utc>) {
    heading(
        md,
        &format!(
            "### Step {}: {} — {}",
            step.index + 1,
            inline(&step.name),
            status(step)
        ),
    );
    let mut facts = vec![format!("duration {}", duration(step.duration_ms))];
    facts.push(format!(
        "recover within {}",
        duration(step.recover_within_ms)
    ));
    if let Some(t) = step.started_at {
        facts.push(format!("started {}", offset(start, t)));
    }
    if let Some(t) = step.ended_at {
        facts.push(format!("ended {}", offset(start, t)));
    }
    line(md, &facts.join(" · "));
    line(md, "");

    if !step.faults.is_empty() {
        line(md, "**Faults**");
        line(md, "");
        let rows: Vec<Vec<String>> = step
            .faults
            .iter()
            .map(|f| {
                let mut what = f.fault.clone();
                if let Some(err) = &f.error {
                    let _ = write!(what, " — **error:** {err}");
                }
                if !f.detail.is_empty() {
                    let _ = write!(what, " ({})", f.detail);
                }
                vec![
                    f.host.clone(),
                    f.kind.clone(),
                    what,
                    if f.skipped {
                        "skipped".into()
                    } else {
                        offset_opt(start, f.applied_at)
                    },
                    match (f.skipped, f.applied_at, f.reverted_at) {
                        (true, _, _) => String::new(),
                        (false, Some(_), None) => "**NOT REVERTED**".into(),
                        (false, _, r) => offset_opt(start, r),
                    },
                    f.mechanism.clone().unwrap_or_default(),
                    match f.verified {
                        Some(true) => "yes".into(),
                        Some(false) => "**no**".into(),
                        None => String::new(),
                    },
                    f.affected.join(", "),
                ]
            })
            .collect();
        table(
            md,
            &[
                "host",
                "kind",
                "fault",
                "applied",
                "reverted",
                "mechanism",
                "verified",
                "affected",
            ],
            &rows,
        );
    }
    if !step.actions.is_empty() {
        line(md, "**Actions**");
        line(md, "");
        let rows: Vec<Vec<String>> = step
            .actions
            .iter()
            .map(|a| {
                vec![
                    a.host.clone(),
                    format!("`{}`", a.command.replace('`', "'")),
                    if a.skipped {
                        "skipped".into()
                    } else {
                        offset_opt(start, a.started_at)
                    },
                    a.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                    if a.skipped {
                        String::new()
                    } else {
                        duration(a.duration_ms)
                    },
                    if a.ok || a.skipped {
                        a.detail.clone()
                    } else {
                        format!("**{}**", a.detail)
                    },
                    a.log.clone(),
                ]
            })
            .collect();
        table(
            md,
            &[
                "host", "command", "started", "exit", "took", "how", "output",
            ],
            &rows,
        );
    }
    if let Some(m) = &step.manual {
        line(md, &format!("**Asked:** {}", inline(&m.prompt)));
        let mut answer = format!("**Answer:** {}", m.answer.replace('_', " "));
        if let Some(by) = &m.by {
            let _ = write!(answer, " by {}", inline(by));
        }
        if let Some(at) = m.answered_at {
            let _ = write!(answer, " at {}", offset(start, at));
        }
        if let Some(reason) = &m.reason {
            let _ = write!(answer, ": {}", inline(reason));
        }
        line(md, "");
        line(md, &answer);
        line(md, "");
    }
    impact(md, step, start);
    check(md, "Before", step.before.as_ref(), start);
    check(md, "After", step.after.as_ref(), start);
}

fn check(md: &mut String, title: &str, check: Option<&CheckReport>, start: DateTime<Utc>) {
    let Some(c) = check else {
        line(md, &format!("**{title}-check:** not run"));
        line(md, "");
        return;
    };
    let held = if c.held { "held" } else { "**DID NOT HOLD**" };
    let mut text = format!(
        "**{title}-check:** {held} ({})",
        span(start, c.started_at, c.decided_at)
    );
    if !c.reason.is_empty() {
        let _ = write!(text, " — {}", inline(&c.reason));
    }
    line(md, &text);
    line(md, "");
    if !c.probes.is_empty() {
        let rows: Vec<Vec<String>> = c
            .probes
            .iter()
            .map(|p| {
                vec![
                    p.probe.clone(),
                    p.host.clone(),
                    if p.held {
                        "held".into()
                    } else {
                        "**no**".into()
                    },
                    format!("{}/{}", p.passed, p.samples),
                ]
            })
            .collect();
        table(md, &["probe", "host", "held", "passed/samples"], &rows);
    }
}

fn breaches(md: &mut String, report: &Report) {
    if report.breaches.is_empty() {
        return;
    }
    heading(md, "## Guardrail breaches");
    let rows: Vec<Vec<String>> = report
        .breaches
        .iter()
        .map(|b| {
            vec![
                offset(report.started_at, b.at),
                b.guardrail.clone(),
                b.host.clone(),
                b.step.clone().unwrap_or_default(),
                format!("{}/{}", b.passed, b.samples),
                b.reason.clone(),
            ]
        })
        .collect();
    table(
        md,
        &[
            "at",
            "guardrail",
            "host",
            "step",
            "passed/samples",
            "reason",
        ],
        &rows,
    );
}

fn ms(v: Option<f64>) -> String {
    v.map(millis).unwrap_or_default()
}

/// Each outage of a step, with its times: `users on local: +15.0s → +16.2s (1.2s)`, `, not
/// restored` when it had not ended (the HTML timeline's shading, in words).
pub fn outages(step: &StepReport, start: DateTime<Utc>) -> Vec<String> {
    step.impact
        .iter()
        .flat_map(|i| {
            i.outages.iter().map(move |o| {
                let ms = (o.until - o.from).num_milliseconds().max(0) as u64;
                format!(
                    "{} on {}: {} ({}{})",
                    i.probe,
                    i.host,
                    span(start, o.from, o.until),
                    duration(ms),
                    if o.restored { "" } else { ", not restored" }
                )
            })
        })
        .collect()
}

/// `+2.8s → +3.4s`, or `at +2.8s` when it took no time (no arrow from a time to itself).
pub fn span(start: DateTime<Utc>, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let (a, b) = (offset(start, from), offset(start, to));
    if a == b {
        format!("at {a}")
    } else {
        format!("{a} → {b}")
    }
}

fn probes(md: &mut String, probes: &[ProbeReport], start: DateTime<Utc>) {
    if probes.is_empty() {
        return;
    }
    heading(md, "## Probes");
    let rows: Vec<Vec<String>> = probes
        .iter()
        .map(|p| {
            let n = p.samples.len();
            let passed = p.samples.iter().filter(|s| s.ok).count();
            let share = if n == 0 {
                String::new()
            } else {
                format!(" ({:.1}%)", passed as f64 * 100.0 / n as f64)
            };
            let (requests, p50, p99, max) = probe_latencies(p);
            let first_failure = p
                .samples
                .iter()
                .find(|s| !s.ok)
                .map(|s| format!("{} {}", offset(start, s.at), s.reason))
                .unwrap_or_else(|| "none".into());
            vec![
                p.name.clone(),
                p.kind.clone(),
                role(p).into(),
                p.host.clone(),
                n.to_string(),
                format!("{passed}{share}"),
                requests,
                ms(p50),
                ms(p99),
                ms(max),
                first_failure,
            ]
        })
        .collect();
    table(
        md,
        &[
            "probe",
            "kind",
            "role",
            "host",
            "samples",
            "passed",
            "requests",
            "p50",
            "p99",
            "max",
            "first failure",
        ],
        &rows,
    );
    if probes.iter().any(|p| probe_requests(p).is_some()) {
        line(
            md,
            "For a `load` probe, p50 and p99 are per request over its successful requests (the \
             upper bound of the latency bucket, at most the slowest request); a burst's own \
             length is not a latency. For other probes they are per sample.",
        );
        line(md, "");
    }
}

fn timeline(md: &mut String, report: &Report) {
    if report.events.is_empty() {
        return;
    }
    heading(md, "## Timeline");
    let rows: Vec<Vec<String>> = report
        .events
        .iter()
        .map(|e| {
            vec![
                offset(report.started_at, e.at),
                code(&e.kind),
                e.message.clone(),
            ]
        })
        .collect();
    table(md, &["at", "event", "message"], &rows);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::Verdict;
    use crate::report::test_support::sample_report;

    #[test]
    fn contains_the_key_facts() {
        let md = render(&sample_report());
        assert!(
            md.starts_with("# Chaos run: checkout-failover — DEVIATED\n"),
            "{md}"
        );
        assert!(
            md.contains("**Verdict: deviated** (cause: `hypothesis`), exit code 6"),
            "{md}"
        );
        assert!(md.contains("the hypothesis did not hold within 20s"));

        let left = md
            .find("FAULTS LEFT IN PLACE")
            .expect("faults-left section");
        let summary = md.find("## Summary").unwrap();
        assert!(left < summary, "faults left must come first");
        assert!(md.contains("`chaosctl revert --all`"));

        // Recovery and impact times, `+` offsets, escaped pipes.
        // A passed step whose users saw failures says so, in bold, wherever its verdict shows.
        let passed =
            "**passed, 26 of 960 requests failed, longest outage 1.2 s (`users` on local)**";
        assert!(
            md.contains(&format!(
                "| 1 | kill-api | {passed} | latency | api-1, api-2 | 2.7s | 4.5s |"
            )),
            "{md}"
        );
        assert!(
            md.contains(&format!("### Step 1: kill-api — {passed}\n")),
            "{md}"
        );
        assert!(md.contains("**did not recover**"));
        assert!(md.contains("| +12.3s |"));
        assert!(md.contains("| +95.0s | error-budget |"));
        assert!(md.contains("guardrail error-budget \\| breached"));
        assert!(md.contains("tc netem \\| nft"));
        assert!(md.contains("`ticket=GD-12\\|a`"));
        assert!(md.contains("**NOT REVERTED**"));
        assert!(
            md.contains(
                "### Step 2: slow \\<db> & \"cache\" — **deviated, 40 of 65 samples failed, \
                 longest outage 63.7 s, not restored (`checkout` on local)**"
            ),
            "{md}"
        );
        assert!(
            md.contains("> after step `slow <db> & \"cache\"` the hypothesis"),
            "{md}"
        );
        assert!(md.contains("| checkout | http | steady state | local | 6 | 5 (83.3%) | – | 12.0 ms | 2000 ms | 2000 ms | +5.0s status 503, expected 200 |"), "{md}");
        assert!(md.contains("| alice@ctl-1 |"));
        assert!(md.contains("| started (UTC) | 2025-03-14T09:30:00.000Z |"));
        assert!(md.contains("Faults recovered from an earlier run"));

        // Every table row has as many cells as its header.
        let mut columns = None;
        for l in md.lines() {
            if !l.starts_with('|') {
                columns = None;
                continue;
            }
            let n = l.replace("\\|", "").matches('|').count();
            match columns {
                None => columns = Some(n),
                Some(c) => assert_eq!(c, n, "ragged row: {l}"),
            }
        }
    }

    #[test]
    fn impact_objectives_description_and_expectations() {
        let md = render(&sample_report());
        // The description, near the top.
        let description = md
            .find("Kill one API process and slow the database; checkout must keep answering.")
            .expect("the description");
        assert!(description < md.find("## Summary").unwrap());

        // An impact table per step, the load probe in requests with per-request percentiles.
        assert!(md.contains("**What users went through** (impact window +12.3s → +60.0s)"));
        assert!(md.contains(
            "| probe | host | failed | error | longest outage | impact | restore | requests | \
             p50 / p99 | statuses |"
        ));
        assert!(
            md.contains(
                "| users | local | 26 of 960 requests (2.7%) | 1.2 s | 1.2 s | after 2.7 s | 1.2 s | \
                 960 sent, 934 ok, 26 failed | 5.0 ms / 5.0 ms | 200: 934, 502: 26 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| checkout | local | 40 of 65 samples (61.5%) | 63.7 s | 63.7 s, not restored | \
                 after 1.2 s | not restored | – | – | – |"
            ),
            "{md}"
        );

        assert!(md.contains(
            "Outages: users on local: +61.3s → +81.3s (20.0s); checkout on local: +61.3s → \
             +125.0s (1m03.7s, not restored)\n"
        ));

        // Objectives and their misses.
        assert!(md.contains(
            "**Objectives:** max_outage 10s, **missed**:\n\n- max_outage: `checkout` on local: \
             longest outage 63.7 s, not over, over 10s\n"
        ));
        let mut met = sample_report();
        met.steps[1].objectives.as_mut().unwrap().misses.clear();
        assert!(render(&met).contains("**Objectives:** max_outage 10s, all met"));

        // What steady meant, next to what each probe saw.
        assert!(
            md.contains(
                "| users | steady state | local | GET http://127.0.0.1:8080/ at 20/s for 1s: 95% of \
                 requests with status 2xx | every 1s, window of 1 sample, 100% must pass | 2 of 4 \
                 samples passed; 54 of 80 requests ok |"
            ),
            "{md}"
        );

        // The load probe's latencies are its requests', never its bursts' 976 ms.
        assert!(
            md.contains(
                "| users | load | steady state | local | 4 | 2 (50.0%) | 80 sent, 26 failed | 4.2 ms | \
                 4.2 ms | 4.2 ms | +15.0s 0/20 ok |"
            ),
            "{md}"
        );
        assert!(!md.contains("976"), "a burst's length shown as a latency");
    }

    #[test]
    fn actions_and_manual_answers_are_shown() {
        use crate::report::model::{ActionReport, ManualReport};
        use crate::report::test_support::at;
        let mut r = sample_report();
        r.steps[0].actions = vec![ActionReport {
            command: "./promote.sh db-2".into(),
            host: "db-1".into(),
            skipped: false,
            start_after_ms: 8000,
            started_at: Some(at(8_000)),
            ended_at: Some(at(9_200)),
            duration_ms: 1_200,
            exit_code: Some(3),
            ok: false,
            timed_out: false,
            log: "step-1.log".into(),
            detail: "exit 3".into(),
        }];
        r.steps[1].manual = Some(ManualReport {
            prompt: "Do the dashboards show the failover?".into(),
            timeout_ms: 600_000,
            answer: "refused".into(),
            by: Some("ana".into()),
            reason: Some("still red".into()),
            asked_at: Some(at(70_000)),
            answered_at: Some(at(75_000)),
        });
        let md = render(&r);
        assert!(
            md.contains(
                "| db-1 | `./promote.sh db-2` | +8.0s | 3 | 1.2s | **exit 3** | step-1.log |"
            ),
            "{md}"
        );
        assert!(
            md.contains("**Asked:** Do the dashboards show the failover?"),
            "{md}"
        );
        assert!(
            md.contains("**Answer:** refused by ana at +75.0s: still red"),
            "{md}"
        );
    }

    #[test]
    fn a_check_that_took_no_time_has_no_arrow() {
        let mut r = sample_report();
        let after = r.steps[0].after.as_mut().unwrap();
        after.decided_at = after.started_at;
        let md = render(&r);
        assert!(md.contains("**After-check:** held (at +46.8s)"), "{md}");
        assert!(!md.contains("+46.8s → +46.8s"));
    }

    #[test]
    fn no_faults_left_section_when_clean() {
        let mut r = sample_report();
        r.faults_left.clear();
        r.verdict = Verdict::Passed;
        r.cause = None;
        let md = render(&r);
        assert!(!md.contains("FAULTS LEFT"));
        assert!(md.contains("exit code 0"));
    }

    #[test]
    fn formats() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_345), "12.3s");
        assert_eq!(duration(123_456), "2m03.4s");
        assert_eq!(duration(3_723_000), "1h02m03s");
        let t = crate::report::test_support::t0();
        assert_eq!(offset(t, crate::report::test_support::at(12_345)), "+12.3s");
        assert_eq!(offset(t, crate::report::test_support::at(-200)), "-0.2s");
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        assert_eq!(cell("slow <db> & `<x>` a < b"), "slow \\<db> & `<x>` a < b");
    }
}
