//! The report's tables: steps with what their users went through and their objectives, checks,
//! breaches, setup and teardown, what steady meant, probes and the event log.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::{
    code_spans, esc, is_kill, lat, pill, recovery_failed, role, status_html, td, td_time, th_row,
    yes_no_pill,
};
use crate::report::markdown::{duration, offset, outages, span};
use crate::report::model::{CheckReport, CommandOutcome, Report, StepReport};
use crate::report::summary::{
    IMPACT_COLUMNS, PROBE_COLUMNS, impact_cells, misses, objectives_text, probe_latencies,
    probe_requests, probe_saw, steady_rule,
};

pub(super) fn steps_table(h: &mut String, report: &Report) {
    h.push_str("<section>\n<h2>Steps</h2>\n");
    if report.steps.is_empty() {
        h.push_str("<p class=\"muted\">This scenario has no steps.</p>\n</section>\n");
        return;
    }
    h.push_str("<table>\n");
    th_row(
        h,
        &[
            "#",
            "step",
            "status",
            "faults",
            "hosts",
            "duration",
            "time to impact",
            "recovery",
            "recover within",
        ],
    );
    h.push_str("<tbody>\n");
    for s in &report.steps {
        let mut kinds: Vec<&str> = s.faults.iter().map(|f| f.kind.as_str()).collect();
        kinds.dedup();
        let recovery = match s.recovery_ms {
            Some(ms) => esc(&duration(ms)),
            None if recovery_failed(s) => "<span class=\"err\">did not recover</span>".into(),
            None => "<span class=\"muted\">–</span>".into(),
        };
        let _ = writeln!(
            h,
            "<tr><td class=\"num\">{n}</td><td><a href=\"#step-{n}\">{}</a></td><td>{}</td>{}{}\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{recovery}</td><td class=\"num\">{}</td></tr>",
            esc(&s.name),
            status_html(s),
            td(&kinds.join(", ")),
            td(&s.hosts.join(", ")),
            esc(&duration(s.duration_ms)),
            s.impact_ms
                .map(|ms| esc(&duration(ms)))
                .unwrap_or_else(|| "<span class=\"muted\">none</span>".into()),
            esc(&duration(s.recover_within_ms)),
            n = s.index + 1,
        );
    }
    h.push_str("</tbody></table>\n</section>\n");
}

pub(super) fn step_details(h: &mut String, s: &StepReport, start: DateTime<Utc>) {
    let n = s.index + 1;
    let _ = write!(
        h,
        "<section class=\"step\" id=\"step-{n}\">\n<h3><a href=\"#step-{n}\">Step {n}: {}</a> {}</h3>\n<p class=\"muted small\">",
        esc(&s.name),
        status_html(s)
    );
    let mut facts = vec![
        format!("duration {}", duration(s.duration_ms)),
        format!("recover within {}", duration(s.recover_within_ms)),
    ];
    if let Some(t) = s.started_at {
        facts.push(format!("started {}", offset(start, t)));
    }
    if let Some(t) = s.ended_at {
        facts.push(format!("ended {}", offset(start, t)));
    }
    if let Some(ms) = s.impact_ms {
        facts.push(format!("time to impact {}", duration(ms)));
    }
    match s.recovery_ms {
        Some(ms) => facts.push(format!("recovery {}", duration(ms))),
        None if recovery_failed(s) => facts.push("did not recover".into()),
        None => {}
    }
    h.push_str(&esc(&facts.join(" · ")));
    h.push_str("</p>\n");

    if !s.actions.is_empty() {
        h.push_str("<h4>Actions</h4>\n<table>\n");
        th_row(
            h,
            &[
                "host", "command", "started", "exit", "took", "how", "output",
            ],
        );
        h.push_str("<tbody>\n");
        for a in &s.actions {
            let how = if a.ok || a.skipped {
                format!("<td class=\"muted\">{}</td>", esc(&a.detail))
            } else {
                format!("<td class=\"err\">{}</td>", esc(&a.detail))
            };
            let _ = writeln!(
                h,
                "<tr>{}<td class=\"mono\">{}</td>{}{}<td class=\"num\">{}</td>{how}{}</tr>",
                td(&a.host),
                esc(&a.command),
                if a.skipped {
                    "<td class=\"muted\">skipped</td>".into()
                } else {
                    td_time(start, a.started_at)
                },
                td(&a.exit_code.map(|c| c.to_string()).unwrap_or_default()),
                if a.skipped {
                    String::new()
                } else {
                    duration(a.duration_ms)
                },
                td(&a.log),
            );
        }
        h.push_str("</tbody></table>\n");
    }
    if let Some(m) = &s.manual {
        let mut answer = m.answer.replace('_', " ");
        if let Some(by) = &m.by {
            let _ = write!(answer, " by {by}");
        }
        if let Some(reason) = &m.reason {
            let _ = write!(answer, ": {reason}");
        }
        let _ = writeln!(
            h,
            "<p><strong>Asked:</strong> {}<br><strong>Answer:</strong> {}</p>",
            esc(&m.prompt),
            esc(&answer)
        );
    }
    if s.faults.is_empty() {
        if s.actions.is_empty() && s.manual.is_none() {
            h.push_str("<p class=\"muted\">No faults.</p>\n");
        }
    } else {
        h.push_str("<h4>Faults per host</h4>\n<table>\n");
        th_row(
            h,
            &[
                "host",
                "fault",
                "kind",
                "applied",
                "reverted",
                "held",
                "mechanism",
                "verified",
                "affected",
                "error / detail",
            ],
        );
        h.push_str("<tbody>\n");
        for f in &s.faults {
            // A kill is instantaneous: there is nothing to revert and nothing was held.
            let reverted = match (f.skipped, f.applied_at, f.reverted_at) {
                (true, _, _) => "<td class=\"muted\">skipped</td>".to_string(),
                (false, Some(_), _) if is_kill(f) => "<td class=\"muted\">n/a (kill)</td>".into(),
                (false, _, Some(r)) => td_time(start, Some(r)),
                (false, Some(_), None) => "<td class=\"err\">NOT REVERTED</td>".into(),
                (false, None, None) => "<td class=\"muted\">–</td>".into(),
            };
            let held = match (f.applied_at, f.reverted_at) {
                (Some(_), _) if is_kill(f) => "instant".to_string(),
                (Some(a), Some(r)) => duration((r - a).num_milliseconds().max(0) as u64),
                _ => String::new(),
            };
            let verified = match f.verified {
                Some(true) => "<td class=\"ok\">✓ yes</td>".into(),
                Some(false) => "<td class=\"err\">✗ no</td>".into(),
                None => "<td class=\"muted\">–</td>".to_string(),
            };
            let mut err = String::new();
            if let Some(e) = &f.error {
                let _ = write!(err, "<span class=\"err\">{}</span>", esc(e));
            }
            if !f.detail.is_empty() {
                if !err.is_empty() {
                    err.push_str("<br>");
                }
                let _ = write!(err, "<span class=\"muted\">{}</span>", esc(&f.detail));
            }
            let _ = writeln!(
                h,
                "<tr>{}<td>{}<div class=\"muted small mono\">{}</div></td>{}{}{reverted}<td class=\"num\">{}</td>{}{verified}{}<td>{}</td></tr>",
                td(&f.host),
                esc(&f.fault),
                esc(&f.fault_id),
                td(&f.kind),
                if f.skipped {
                    "<td class=\"muted\">skipped</td>".into()
                } else {
                    td_time(start, f.applied_at)
                },
                esc(&held),
                td(f.mechanism.as_deref().unwrap_or("")),
                td(&f.affected.join(", ")),
                if err.is_empty() {
                    "<span class=\"muted\">–</span>".into()
                } else {
                    err
                }
            );
        }
        h.push_str("</tbody></table>\n");
    }
    impact(h, s, start);
    h.push_str("<div class=\"checks\">\n");
    check(h, "Before", s.before.as_ref(), start);
    check(h, "After", s.after.as_ref(), start);
    h.push_str("</div>\n</section>\n");
}

fn check(h: &mut String, title: &str, c: Option<&CheckReport>, start: DateTime<Utc>) {
    h.push_str("<div>");
    let Some(c) = c else {
        let _ = writeln!(
            h,
            "<h4>{title}-check</h4><p class=\"muted\">not run</p></div>"
        );
        return;
    };
    let _ = writeln!(
        h,
        "<h4>{title}-check {}</h4><p class=\"small\">{}{}{}</p>",
        yes_no_pill(c.held, "held", "did not hold"),
        span(start, c.started_at, c.decided_at),
        if c.reason.is_empty() { "" } else { " — " },
        esc(&c.reason)
    );
    if !c.probes.is_empty() {
        h.push_str("<table>\n");
        th_row(h, &["probe", "host", "held", "passed / window"]);
        h.push_str("<tbody>\n");
        for p in &c.probes {
            let _ = writeln!(
                h,
                "<tr>{}{}<td>{}</td><td class=\"num\">{}/{}</td></tr>",
                td(&p.probe),
                td(&p.host),
                yes_no_pill(p.held, "held", "no"),
                p.passed,
                p.samples
            );
        }
        h.push_str("</tbody></table>\n");
    }
    h.push_str("</div>\n");
}

pub(super) fn breaches(h: &mut String, report: &Report) {
    h.push_str("<section>\n<h2>Guardrail breaches</h2>\n");
    if report.breaches.is_empty() {
        h.push_str("<p class=\"muted\">None.</p>\n</section>\n");
        return;
    }
    h.push_str("<table>\n");
    th_row(
        h,
        &[
            "at",
            "guardrail",
            "host",
            "step",
            "passed / window",
            "reason",
        ],
    );
    h.push_str("<tbody>\n");
    for b in &report.breaches {
        let _ = writeln!(
            h,
            "<tr>{}{}{}{}<td class=\"num\">{}/{}</td><td class=\"err\">{}</td></tr>",
            td_time(report.started_at, Some(b.at)),
            td(&b.guardrail),
            td(&b.host),
            td(b.step.as_deref().unwrap_or("")),
            b.passed,
            b.samples,
            esc(&b.reason)
        );
    }
    h.push_str("</tbody></table>\n</section>\n");
}

pub(super) fn commands(h: &mut String, title: &str, cmds: &[CommandOutcome], start: DateTime<Utc>) {
    let _ = writeln!(h, "<section>\n<h2>{title}</h2>");
    if cmds.is_empty() {
        h.push_str("<p class=\"muted\">None.</p>\n</section>\n");
        return;
    }
    h.push_str("<table>\n");
    th_row(
        h,
        &[
            "name", "command", "outcome", "exit", "started", "ended", "detail",
        ],
    );
    h.push_str("<tbody>\n");
    for c in cmds {
        let outcome = match (c.ok, c.background) {
            (true, true) => pill("passed", "ok (background)"),
            (true, false) => pill("passed", "ok"),
            (false, _) => pill("no", "FAILED"),
        };
        let _ = writeln!(
            h,
            "<tr>{}<td><code>{}</code></td><td>{outcome}</td><td class=\"num\">{}</td>{}{}{}</tr>",
            td(&c.name),
            esc(&c.command),
            c.exit_code
                .map(|e| e.to_string())
                .unwrap_or_else(|| "–".into()),
            td_time(start, Some(c.started_at)),
            td_time(start, c.ended_at),
            td(&c.detail)
        );
    }
    h.push_str("</tbody></table>\n</section>\n");
}

pub(super) fn probes(h: &mut String, report: &Report) {
    h.push_str("<section>\n<h2>Probes</h2>\n");
    if report.probes.is_empty() {
        h.push_str("<p class=\"muted\">No probe samples.</p>\n</section>\n");
        return;
    }
    h.push_str("<table>\n");
    h.push_str(
        "<thead><tr><th>probe</th><th>kind</th><th>role</th><th>host</th>\
         <th class=\"num\">every</th><th class=\"num\">window</th><th class=\"num\">must pass</th>\
         <th class=\"num\">samples</th><th>passed</th><th>requests</th><th class=\"num\">p50</th>\
         <th class=\"num\">p99</th><th class=\"num\">max</th><th>first failure</th></tr></thead>\n<tbody>\n",
    );
    for p in &report.probes {
        let n = p.samples.len();
        let passed = p.samples.iter().filter(|s| s.ok).count();
        let share = if n == 0 {
            "<span class=\"muted\">–</span>".to_string()
        } else {
            let pct = passed as f64 * 100.0 / n as f64;
            format!(
                "<span class=\"bar\"><i style=\"width:{pct:.1}%\"></i></span>{passed} ({pct:.1}%)"
            )
        };
        let (requests, p50, p99, max) = probe_latencies(p);
        let first_failure = match p.samples.iter().find(|s| !s.ok) {
            Some(s) => format!(
                "<td><span class=\"err\">{}</span> {}</td>",
                offset(report.started_at, s.at),
                esc(&s.reason)
            ),
            None => "<td class=\"muted\">none</td>".into(),
        };
        let _ = writeln!(
            h,
            "<tr>{}{}{}{}<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}%</td>\
             <td class=\"num\">{n}</td><td class=\"t\">{share}</td>{}<td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td>{first_failure}</tr>",
            td(&p.name),
            td(&p.kind),
            td(role(p.role)),
            td(&p.host),
            esc(&duration(p.every_ms)),
            p.window_samples,
            format!("{:.1}", p.tolerance)
                .trim_end_matches('0')
                .trim_end_matches('.'),
            td(&requests),
            lat(p50),
            lat(p99),
            lat(max),
        );
    }
    h.push_str("</tbody></table>\n");
    if report.probes.iter().any(|p| probe_requests(p).is_some()) {
        h.push_str(
            "<p class=\"small muted\">For a <code>load</code> probe, p50, p99 and max are per \
             request over its successful requests (p50 and p99 as the upper bound of the latency \
             bucket, at most the slowest request); a burst's own length is not a latency. For \
             other probes they are per sample.</p>\n",
        );
    }
    h.push_str("</section>\n");
}

/// What steady meant: each probe's expectation and window rule, beside what it saw.
pub(super) fn steady(h: &mut String, report: &Report) {
    if report.probes.is_empty() {
        return;
    }
    h.push_str("<section>\n<h2>What steady meant</h2>\n<table>\n");
    th_row(h, &PROBE_COLUMNS);
    h.push_str("<tbody>\n");
    for p in &report.probes {
        let _ = writeln!(
            h,
            "<tr>{}{}{}{}{}{}</tr>",
            td(&p.name),
            td(role(p.role)),
            td(&p.host),
            td(&p.expect),
            td(&steady_rule(p)),
            td(&probe_saw(p)),
        );
    }
    h.push_str("</tbody></table>\n</section>\n");
}

/// What the step's users went through, per probe and host, each outage, and the objectives.
fn impact(h: &mut String, s: &StepReport, start: DateTime<Utc>) {
    if !s.impact.is_empty() {
        let from = s
            .faults
            .iter()
            .filter_map(|f| f.applied_at)
            .min()
            .or(s.started_at);
        let window = match (from, s.impact_until) {
            (Some(from), Some(until)) => format!(
                " <span class=\"muted small\">impact window {}</span>",
                esc(&span(start, from, until))
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            h,
            "<h4>What users went through{window}</h4>\n<table class=\"impact\">"
        );
        th_row(h, &IMPACT_COLUMNS);
        h.push_str("<tbody>\n");
        for i in &s.impact {
            let cells = impact_cells(i);
            let class = if i.failed > 0 { " class=\"hurt\"" } else { "" };
            let _ = write!(h, "<tr{class}>");
            for c in &cells {
                h.push_str(&td(c));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody></table>\n");
        // Each outage, with its times: the timeline's shading, in words.
        let outages = outages(s, start);
        if !outages.is_empty() {
            let _ = writeln!(
                h,
                "<p class=\"small\">Outages: {}</p>",
                esc(&outages.join("; "))
            );
        }
    }
    if let Some(o) = &s.objectives {
        let missed = misses(s);
        if missed.is_empty() {
            let _ = writeln!(
                h,
                "<p><strong>Objectives</strong> {}: {}</p>",
                esc(&objectives_text(o)),
                pill("passed", "all met")
            );
        } else {
            let _ = writeln!(
                h,
                "<p><strong>Objectives</strong> {}: {}</p>\n<ul class=\"misses\">",
                esc(&objectives_text(o)),
                pill("no", "missed")
            );
            for m in missed {
                let _ = writeln!(h, "<li class=\"err\">{}</li>", code_spans(&m));
            }
            h.push_str("</ul>\n");
        }
    }
}

pub(super) fn events(h: &mut String, report: &Report) {
    h.push_str("<section>\n<h2>Event log</h2>\n");
    if report.events.is_empty() {
        h.push_str("<p class=\"muted\">No events.</p>\n</section>\n");
        return;
    }
    h.push_str("<table>\n");
    th_row(h, &["at", "event", "message", "fields"]);
    h.push_str("<tbody>\n");
    for e in &report.events {
        let k = e.kind.as_str();
        let class = if k.contains("breach")
            || k.contains("fail")
            || k.contains("error")
            || k.contains("left")
            || k == "check_failed"
        {
            " class=\"ev-bad\""
        } else if k.starts_with("fault") {
            " class=\"ev-fault\""
        } else if k.starts_with("check") {
            " class=\"ev-check\""
        } else {
            ""
        };
        let fields = e
            .fields
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                format!("{}={}", esc(k), esc(&v))
            })
            .collect::<Vec<_>>()
            .join("<br>");
        let _ = writeln!(
            h,
            "<tr{class}>{}<td class=\"t\"><code>{}</code></td><td>{}</td><td class=\"muted small mono\">{}</td></tr>",
            td_time(report.started_at, Some(e.at)),
            esc(k),
            esc(&e.message),
            fields
        );
    }
    h.push_str("</tbody></table>\n</section>\n");
}
