//! `chaosctl diff --format html`: two runs side by side on one self-contained page, in the
//! report's own style sheet and table cells (no scripts, nothing fetched). What differs comes
//! first, then the two runs, then each step with its impact table, run A's row above run B's.

use std::fmt::Write as _;

use super::{CSS, code_spans, esc, human_utc, pill, td, th_row};
use crate::engine::impact::seconds;
use crate::report::diff::{
    ProbeDiff, RunDiff, RunSide, StepDiff, StepMatch, StepSide, labels_text,
};
use crate::report::markdown::duration;
use crate::report::model::ProbeImpact;
use crate::report::summary::{IMPACT_COLUMNS, impact_cells};

/// Renders the diff as one HTML page.
pub fn render(d: &RunDiff) -> String {
    let mut out = String::with_capacity(32 * 1024);
    let h = &mut out;
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>chaos diff — {} vs {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        esc(&d.a.run_id),
        esc(&d.b.run_id)
    );
    let scenarios = if d.a.scenario == d.b.scenario {
        esc(&d.a.scenario)
    } else {
        format!("{} vs {}", esc(&d.a.scenario), esc(&d.b.scenario))
    };
    let same = if d.same_scenario {
        "the same scenario file (same sha256)"
    } else {
        "different scenario files (sha256 differs)"
    };
    let _ = write!(
        h,
        "<header>\n<div class=\"muted small\">two chaos runs side by side</div>\n<h1>{scenarios}</h1>\n\
         <p class=\"muted\">A <code>{}</code> · B <code>{}</code> · {same}</p>\n</header>\n",
        esc(&d.a.run_id),
        esc(&d.b.run_id)
    );
    differences(h, d);
    runs(h, &d.a, &d.b);
    steps_table(h, d);
    for (n, step) in d.steps.iter().enumerate() {
        step_section(h, n + 1, step);
    }
    let _ = write!(
        h,
        "<footer>chaos.diff/v1 · runs <code>{}</code> and <code>{}</code> · rendered by chaosctl</footer>\n\
         </main>\n</body>\n</html>\n",
        esc(&d.a.run_id),
        esc(&d.b.run_id)
    );
    out
}

fn differences(h: &mut String, d: &RunDiff) {
    h.push_str("<section>\n<h2>What differs</h2>\n");
    if d.differences.is_empty() {
        h.push_str(
            "<p class=\"muted\">Nothing notable: the same verdicts, step statuses and failures, \
             and times within jitter.</p>\n</section>\n",
        );
        return;
    }
    h.push_str("<ul class=\"misses\">\n");
    for x in &d.differences {
        let _ = writeln!(h, "<li>{}</li>", code_spans(&x.text));
    }
    h.push_str("</ul>\n</section>\n");
}

fn runs(h: &mut String, a: &RunSide, b: &RunSide) {
    h.push_str("<section>\n<h2>The runs</h2>\n<table>\n");
    th_row(h, &["", "A", "B"]);
    h.push_str("<tbody>\n");
    let code = |s: &str| format!("<code>{}</code>", esc(s));
    let verdict = |r: &RunSide| pill(r.verdict.as_str(), r.verdict.as_str());
    let cause = |r: &RunSide| r.cause.map_or("–".to_string(), |c| code(c.as_str()));
    let rows: Vec<(&str, String, String)> = vec![
        ("run id", code(&a.run_id), code(&b.run_id)),
        ("scenario", esc(&a.scenario), esc(&b.scenario)),
        ("file", code(&a.path), code(&b.path)),
        ("sha256", code(&a.sha256), code(&b.sha256)),
        ("verdict", verdict(a), verdict(b)),
        ("cause", cause(a), cause(b)),
        ("reason", esc(&a.reason), esc(&b.reason)),
        (
            "exit code",
            a.exit_code.to_string(),
            b.exit_code.to_string(),
        ),
        ("seed", code(&a.seed), code(&b.seed)),
        (
            "labels",
            esc(&labels_text(&a.labels)),
            esc(&labels_text(&b.labels)),
        ),
        ("started", human_utc(a.started_at), human_utc(b.started_at)),
        (
            "duration",
            esc(&duration(a.duration_ms)),
            esc(&duration(b.duration_ms)),
        ),
        (
            "faults left",
            a.faults_left.to_string(),
            b.faults_left.to_string(),
        ),
        (
            "dry run",
            yes_no(a.dry_run).into(),
            yes_no(b.dry_run).into(),
        ),
    ];
    for (k, va, vb) in rows {
        let _ = writeln!(h, "<tr><th>{}</th><td>{va}</td><td>{vb}</td></tr>", esc(k));
    }
    h.push_str("</tbody></table>\n</section>\n");
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes: nothing injected" } else { "no" }
}

fn steps_table(h: &mut String, d: &RunDiff) {
    h.push_str("<section>\n<h2>Steps</h2>\n");
    if d.steps.is_empty() {
        h.push_str("<p class=\"muted\">Neither run has steps.</p>\n</section>\n");
        return;
    }
    h.push_str("<table>\n");
    th_row(h, &["#", "step", "A", "B"]);
    h.push_str("<tbody>\n");
    for (n, s) in d.steps.iter().enumerate() {
        let n = n + 1;
        let _ = writeln!(
            h,
            "<tr><td class=\"num\">{n}</td><td><a href=\"#step-{n}\">{}</a></td><td>{}</td><td>{}</td></tr>",
            esc(&s.name),
            status(s.a.as_ref()),
            status(s.b.as_ref()),
        );
    }
    h.push_str("</tbody></table>\n</section>\n");
}

/// A step's status with its impact, as the report shows it: the status pill (a pass with
/// failures in a colour of its own), then what users went through.
fn status(s: Option<&StepSide>) -> String {
    let Some(s) = s else {
        return "<span class=\"muted\">not in this run</span>".into();
    };
    super::status_pill(s.status, s.impact_summary.as_deref())
}

/// One row of a step's table: how a side's value is read off it.
type Figure = dyn Fn(&StepSide) -> String;

fn step_section(h: &mut String, n: usize, step: &StepDiff) {
    let matched = match (&step.matched, &step.a, &step.b) {
        (StepMatch::Name, ..) => String::new(),
        (StepMatch::Index, Some(a), Some(b)) => format!(
            "matched by position: step {} of both runs, named <code>{}</code> in A and <code>{}</code> in B",
            a.index + 1,
            esc(&a.name),
            esc(&b.name)
        ),
        (StepMatch::OnlyA, ..) => "in run A only".into(),
        (StepMatch::OnlyB, ..) => "in run B only".into(),
        (StepMatch::Index, ..) => String::new(),
    };
    let _ = writeln!(
        h,
        "<section class=\"step\" id=\"step-{n}\">\n<h3><a href=\"#step-{n}\">Step {n}: {}</a></h3>",
        esc(&step.name)
    );
    if !matched.is_empty() {
        let _ = writeln!(h, "<p class=\"muted small\">{matched}</p>");
    }
    h.push_str("<table>\n");
    th_row(h, &["", "A", "B"]);
    h.push_str("<tbody>\n");
    let (a, b) = (step.a.as_ref(), step.b.as_ref());
    let both = |f: &dyn Fn(&StepSide) -> String| {
        let cell = |s: Option<&StepSide>| match s {
            Some(s) => td(&f(s)),
            None => td(""),
        };
        format!("{}{}", cell(a), cell(b))
    };
    let _ = writeln!(
        h,
        "<tr><th>status</th><td>{}</td><td>{}</td></tr>",
        status(a),
        status(b)
    );
    let rows: [(&str, &Figure); 6] = [
        ("faults", &|s| s.faults.join("; ")),
        ("hosts", &|s| s.hosts.join(", ")),
        ("time to impact", &|s| {
            s.impact_ms.map_or("none".to_string(), seconds)
        }),
        ("recovery", &|s| match s.recovery_ms {
            Some(ms) => seconds(ms),
            None if s.did_not_recover => "did not recover".into(),
            None => String::new(),
        }),
        ("recover within", &|s| duration(s.recover_within_ms)),
        ("objectives", &|s| {
            s.objectives.clone().unwrap_or_else(|| "none".into())
        }),
    ];
    for (k, f) in rows {
        let _ = writeln!(h, "<tr><th>{}</th>{}</tr>", esc(k), both(f));
    }
    let misses = |s: Option<&StepSide>| match s {
        None => "<td class=\"muted\">–</td>".to_string(),
        Some(s) if s.misses.is_empty() => "<td>none</td>".into(),
        Some(s) => format!(
            "<td class=\"err\">{}</td>",
            s.misses
                .iter()
                .map(|m| code_spans(m))
                .collect::<Vec<_>>()
                .join("<br>")
        ),
    };
    let _ = writeln!(
        h,
        "<tr><th>objective misses</th>{}{}</tr>",
        misses(a),
        misses(b)
    );
    h.push_str("</tbody></table>\n");
    if !step.probes.is_empty() {
        h.push_str("<h4>What users went through</h4>\n<table class=\"impact\">\n");
        let mut cols = vec!["run"];
        cols.extend(IMPACT_COLUMNS);
        th_row(h, &cols);
        h.push_str("<tbody>\n");
        for p in &step.probes {
            impact_row(h, "A", p, p.a.as_ref());
            impact_row(h, "B", p, p.b.as_ref());
        }
        h.push_str("</tbody></table>\n");
    }
    h.push_str("</section>\n");
}

fn impact_row(h: &mut String, run: &str, p: &ProbeDiff, i: Option<&ProbeImpact>) {
    let Some(i) = i else {
        let _ = writeln!(
            h,
            "<tr><td>{run}</td>{}{}<td class=\"muted\" colspan=\"{}\">not measured in this run</td></tr>",
            td(&p.probe),
            td(&p.host),
            IMPACT_COLUMNS.len() - 2
        );
        return;
    };
    let class = if i.failed > 0 { " class=\"hurt\"" } else { "" };
    let _ = write!(h, "<tr{class}><td>{run}</td>");
    for c in &impact_cells(i) {
        h.push_str(&td(c));
    }
    h.push_str("</tr>\n");
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check_balanced, no_network};
    use super::*;
    use crate::report::diff::diff;
    use crate::report::model::Verdict;
    use crate::report::test_support::sample_report;

    #[test]
    fn renders_both_runs_and_what_differs() {
        let a = sample_report();
        let mut b = sample_report();
        b.run_id = "20250315T093000Z-0b0b0b".into();
        b.verdict = Verdict::Passed;
        b.cause = None;
        b.steps[0].impact[0].failed = 0;
        b.steps[0].impact[0].longest_outage_ms = 0;
        b.steps[1].name = "<renamed>".into();
        b.steps.push(b.steps[0].clone());
        b.steps[2].name = "extra".into();
        let html = render(&diff(&a, &b));
        check_balanced(&html);
        no_network(&html);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains(CSS), "the report's own style sheet");
        // What differs comes before the runs, and is the diff's own wording.
        let differs = html.find("<h2>What differs</h2>").unwrap();
        assert!(differs < html.find("<h2>The runs</h2>").unwrap());
        assert!(html.contains("<li>verdict: deviated → passed</li>"));
        assert!(html.contains(
            "<li>step <code>kill-api</code>: <code>users</code> on local: failed requests 26 → 0</li>"
        ));
        // Verdicts as the report's pills, both run ids.
        assert!(html.contains("<tr><th>verdict</th><td><span class=\"pill s-deviated\">deviated</span></td><td><span class=\"pill s-passed\">passed</span></td></tr>"));
        assert!(html.contains("20250314T093000Z-7f3a9c"));
        assert!(html.contains("20250315T093000Z-0b0b0b"));
        assert!(html.contains("the same scenario file (same sha256)"));
        // A step with failures in A, clean in B.
        assert!(html.contains(
            "<span class=\"pill s-passed-impact\">passed</span><span class=\"impact-note\">, 26 of 960 requests failed"
        ));
        assert!(html.contains(
            "<tr class=\"hurt\"><td>A</td><td>users</td><td>local</td><td>26 of 960 requests (2.7%)</td>"
        ));
        assert!(
            html.contains(
                "<tr><td>B</td><td>users</td><td>local</td><td>0 of 960 requests (0%)</td>"
            )
        );
        // Renamed and extra steps, escaped.
        assert!(html.contains("named <code>slow &lt;db&gt; &amp; &quot;cache&quot;</code> in A and <code>&lt;renamed&gt;</code> in B"));
        assert!(html.contains("in run B only"));
        assert!(html.contains("<span class=\"muted\">not in this run</span>"));
        assert!(!html.contains("<renamed>"));
        assert!(html.contains(
            "<td class=\"err\">max_outage: <code>checkout</code> on local: longest outage 63.7 s, not over, over 10s</td>"
        ));
    }

    #[test]
    fn a_run_against_itself_says_nothing_differs() {
        let r = sample_report();
        let html = render(&diff(&r, &r));
        check_balanced(&html);
        assert!(html.contains("Nothing notable"));
    }
}
