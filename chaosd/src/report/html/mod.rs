//! `report.html`: one self-contained page for a post-game-day review. Inline CSS and inline SVG,
//! no JavaScript, nothing fetched from the network; light theme, readable on a laptop and
//! printable. Faults that may still be in place come first, then the header facts and the
//! scenario's description, what steady meant, a timeline of the run ([`timeline`]: steps, faults
//! per host, checks, breaches, every probe sample with its outages), the steps with their faults,
//! what users went through and their objectives, breaches, setup and teardown, a summary per
//! probe and the event log ([`tables`]).
//!
//! A printed report has no hover: no fact lives only in a `title`, and a step's verdict always
//! comes with its impact ([`crate::report::summary`]). Every piece of report text goes through
//! [`esc`]. Times inside the run are offsets from its start (`+12.3s`), as in `report.md`.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::markdown::{duration, offset};
use super::model::{FaultReport, ProbeRole, Report, StepReport, StepStatus, Verdict};
use super::summary::{impact_summary, status_with_impact, status_word};

pub mod diff;
mod tables;
mod timeline;

use tables::{breaches, commands, events, probes, steady, step_details, steps_table};
use timeline::timeline;

/// Renders the whole report as one HTML page.
pub fn render(report: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let h = &mut out;
    let verdict = report.verdict.as_str();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} — {} — chaos run {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        esc(&report.scenario.name),
        esc(&verdict.to_uppercase()),
        esc(&report.run_id)
    );
    if !report.faults_left.is_empty() {
        faults_left(h, report);
    }
    header(h, report);
    if !report.recovered.is_empty() {
        recovered(h, report);
    }
    steady(h, report);
    h.push_str("<section>\n<h2>Timeline</h2>\n");
    timeline(h, report);
    h.push_str("</section>\n");
    steps_table(h, report);
    for step in &report.steps {
        step_details(h, step, report.started_at);
    }
    breaches(h, report);
    commands(h, "Setup", &report.setup, report.started_at);
    commands(h, "Teardown", &report.teardown, report.started_at);
    probes(h, report);
    events(h, report);
    let _ = write!(
        h,
        "<footer>chaos.report/v1 · run <code>{}</code> · rendered by chaosctl</footer>\n\
         </main>\n</body>\n</html>\n",
        esc(&report.run_id)
    );
    out
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The page's style sheet, kept in its own file so that it reads (and diffs) as CSS; it is
/// copied into every page, which stays one self-contained file.
const CSS: &str = include_str!("report.css");

// ---------------------------------------------------------------------------------------------
// Small helpers.

/// A UTC time for the header.
fn human_utc(t: DateTime<Utc>) -> String {
    format!("{} UTC", t.format("%Y-%m-%d %H:%M:%S%.3f"))
}

/// A table cell with escaped text, `–` when empty.
fn td(text: &str) -> String {
    if text.trim().is_empty() {
        "<td class=\"muted\">–</td>".into()
    } else {
        format!("<td>{}</td>", esc(text))
    }
}

/// A cell with a time: an offset from the run's start (whose UTC time the header gives).
fn td_time(start: DateTime<Utc>, t: Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => format!("<td class=\"t\">{}</td>", offset(start, t)),
        None => "<td class=\"muted\">–</td>".into(),
    }
}

fn th_row(h: &mut String, cols: &[&str]) {
    h.push_str("<thead><tr>");
    for c in cols {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr></thead>\n");
}

fn pill(class: &str, text: &str) -> String {
    format!("<span class=\"pill s-{class}\">{}</span>", esc(text))
}

fn yes_no_pill(b: bool, yes: &str, no: &str) -> String {
    if b {
        pill("passed", yes)
    } else {
        pill("no", no)
    }
}

/// The colour of a step status in the timeline.
fn step_colour(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Passed => "#1a7f37",
        StepStatus::Deviated => "#bc4c00",
        StepStatus::Aborted => "#8250df",
        StepStatus::Error => "#cf222e",
        StepStatus::Skipped => "#8c959f",
    }
}

fn lat(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0} ms"),
        Some(v) => format!("{v:.1} ms"),
        None => "–".into(),
    }
}

fn role(r: ProbeRole) -> &'static str {
    match r {
        ProbeRole::SteadyState => "steady state",
        ProbeRole::Guardrail => "guardrail",
    }
}

/// Whether a step ran its after-check and did not recover.
fn recovery_failed(s: &StepReport) -> bool {
    s.recovery_ms.is_none() && s.after.as_ref().is_some_and(|c| !c.held)
}

/// A `kill` (a kind that [`FaultKind::holds`] nothing) is instantaneous: nothing is held and
/// nothing is reverted.
///
/// [`FaultKind::holds`]: agent::spec::FaultKind::holds
fn is_kill(f: &FaultReport) -> bool {
    agent::spec::FaultKind::from_name(&f.kind).is_some_and(|kind| !kind.holds())
}

/// Text whose `` `names` `` are code (the wording of [`crate::report::summary`] and of objective
/// misses is written for Markdown and terminals), escaped.
fn code_spans(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", esc(part));
        } else {
            out.push_str(&esc(part));
        }
    }
    out
}

/// A step's status with its impact, the same words as everywhere
/// ([`status_with_impact`]): the status as a pill, then what users went through. A pass
/// with failures gets a pill of its own colour, so it never reads as a clean pass.
fn status_html(step: &StepReport) -> String {
    let impact = impact_summary(step);
    if let Some(impact) = &impact {
        debug_assert_eq!(
            status_with_impact(step),
            format!("{}, {impact}", status_word(step.status))
        );
    }
    status_pill(step.status, impact.as_deref())
}

/// A status as a pill, then `impact` (what users went through) when there was any; a pass with
/// failures gets a pill of its own colour. The report and the diff page both show it so.
pub(crate) fn status_pill(status: StepStatus, impact: Option<&str>) -> String {
    let word = status_word(status);
    match impact {
        None => pill(word, word),
        Some(impact) => {
            let class = if status == StepStatus::Passed {
                "passed-impact"
            } else {
                word
            };
            format!(
                "{}<span class=\"impact-note\">, {}</span>",
                pill(class, word),
                code_spans(impact)
            )
        }
    }
}

/// Cuts `text` to about `max` characters, with an ellipsis.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Header.

fn faults_left(h: &mut String, report: &Report) {
    let n = report.faults_left.len();
    let s = if n == 1 { "" } else { "s" };
    let _ = write!(
        h,
        "<section class=\"alarm\" id=\"faults-left\">\n<h2>⚠ {n} fault{s} left in place</h2>\n\
         <p><strong>{n} fault{s} may still be active.</strong> A revert failed or could not be \
         confirmed, so the hosts below may still be degraded. Revert every fault chaosctl knows \
         of (add <code>--inventory FILE</code> for remote hosts), then check each host before \
         closing this game day:</p>\n<pre>chaosctl revert --all</pre>\n<table>\n"
    );
    th_row(h, &["host", "fault id", "kind", "fault", "what happened"]);
    h.push_str("<tbody>\n");
    for f in &report.faults_left {
        let _ = writeln!(
            h,
            "<tr>{}<td><code>{}</code></td>{}{}<td class=\"err\">{}</td></tr>",
            td(&f.host),
            esc(&f.fault_id),
            td(&f.kind),
            td(&f.fault),
            esc(&f.reason)
        );
    }
    h.push_str("</tbody></table>\n</section>\n");
}

fn header(h: &mut String, report: &Report) {
    let v = report.verdict.as_str();
    let _ = write!(
        h,
        "<header>\n<div class=\"head\"><div><div class=\"muted small\">chaos run report</div>\
         <h1>{}</h1>",
        esc(&report.scenario.name)
    );
    if !report.scenario.path.is_empty() {
        let _ = write!(
            h,
            "<div class=\"muted small\"><code>{}</code></div>",
            esc(&report.scenario.path)
        );
    }
    let _ = write!(
        h,
        "</div>\n<div class=\"verdict pill s-{v}\">{}</div></div>\n",
        esc(&v.to_uppercase())
    );
    if !report.reason.is_empty() {
        let _ = writeln!(h, "<p class=\"reason v-{v}\">{}</p>", esc(&report.reason));
    }
    if let Some(description) = &report.scenario.description {
        let _ = writeln!(
            h,
            "<p class=\"description\">{}</p>",
            esc(description.trim())
        );
    }
    if report.dry_run {
        h.push_str(
            "<div class=\"banner dry\">Dry run: nothing was injected; steps show as skipped.</div>\n",
        );
    }
    if report.verdict == Verdict::NotSteady {
        h.push_str(
            "<div class=\"banner dry\">The steady-state hypothesis did not hold to begin with, \
             so no fault was injected.</div>\n",
        );
    }
    let labels = if report.labels.is_empty() {
        "<span class=\"muted\">none</span>".to_string()
    } else {
        report
            .labels
            .iter()
            .map(|(k, v)| format!("<code>{}={}</code>", esc(k), esc(v)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let cause = match report.cause {
        Some(c) => format!("<code>{}</code>", esc(c.as_str())),
        None => "<span class=\"muted\">–</span>".into(),
    };
    let facts: Vec<(&str, String)> = vec![
        ("verdict", pill(v, v)),
        ("cause", cause),
        ("exit code", report.exit_code().to_string()),
        ("run id", format!("<code>{}</code>", esc(&report.run_id))),
        ("seed", format!("<code>{}</code>", esc(&report.seed))),
        (
            "scenario sha256",
            format!("<code>{}</code>", esc(&report.scenario.sha256)),
        ),
        ("started", human_utc(report.started_at)),
        ("ended", human_utc(report.ended_at)),
        ("duration", esc(&duration(report.duration_ms))),
        ("by", format!("{}@{}", esc(&report.user), esc(&report.host))),
        ("labels", labels),
        (
            "dry run",
            if report.dry_run {
                pill("not_steady", "yes: nothing injected")
            } else {
                "no".into()
            },
        ),
        (
            "faults left",
            if report.faults_left.is_empty() {
                "0".into()
            } else {
                format!(
                    "<a href=\"#faults-left\" class=\"err\">{}</a>",
                    report.faults_left.len()
                )
            },
        ),
        ("steps", report.steps.len().to_string()),
    ];
    h.push_str("<dl class=\"facts\">\n");
    for (k, v) in facts {
        let _ = writeln!(h, "<div><dt>{}</dt><dd>{v}</dd></div>", esc(k));
    }
    h.push_str("</dl>\n</header>\n");
}

fn recovered(h: &mut String, report: &Report) {
    h.push_str(
        "<section>\n<h2>Faults recovered from an earlier run</h2>\n<p>An earlier chaosctl was \
         killed with these faults in place; this run reverted them before starting.</p>\n<table>\n",
    );
    th_row(
        h,
        &["host", "run", "fault id", "fault", "outcome", "detail"],
    );
    h.push_str("<tbody>\n");
    for f in &report.recovered {
        let _ = writeln!(
            h,
            "<tr>{}<td><code>{}</code></td><td><code>{}</code></td>{}<td>{}</td>{}</tr>",
            td(&f.host),
            esc(&f.run_id),
            esc(&f.fault_id),
            td(&f.fault),
            yes_no_pill(f.ok, "reverted", "FAILED"),
            td(&f.detail)
        );
    }
    h.push_str("</tbody></table>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::timeline::{tick_label, tick_step};
    use super::*;
    use crate::report::model::{SampleRecord, StepStatus};
    use crate::report::test_support::{at, sample_report};

    /// Checks that every element opened is closed, in order (void elements and `/>` aside), and
    /// returns the tag names seen.
    pub(super) fn check_balanced(html: &str) -> Vec<String> {
        const VOID: [&str; 6] = ["meta", "br", "hr", "img", "input", "link"];
        let mut stack: Vec<String> = Vec::new();
        let mut seen = Vec::new();
        let mut rest = html;
        while let Some(i) = rest.find('<') {
            rest = &rest[i + 1..];
            let end = rest.find('>').expect("an unclosed tag");
            let tag = &rest[..end];
            rest = &rest[end + 1..];
            if tag.starts_with('!') {
                continue;
            }
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            assert!(!name.is_empty(), "a stray `<` before `{tag}`");
            if let Some(closing) = tag.strip_prefix('/') {
                let open = stack
                    .pop()
                    .unwrap_or_else(|| panic!("`</{closing}>` closes nothing"));
                assert_eq!(open, name, "`<{open}>` closed by `</{name}>`");
            } else if !tag.ends_with('/') && !VOID.contains(&name.as_str()) {
                stack.push(name.clone());
            }
            seen.push(name);
        }
        assert!(stack.is_empty(), "left open: {stack:?}");
        seen
    }

    pub(super) fn no_network(html: &str) {
        let re = regex::Regex::new(
            r#"(?i)(\b(src|href|xlink:href|action|poster)\s*=\s*["']?\s*(https?:)?//)|(url\(\s*["']?\s*(https?:)?//)|@import|@font-face"#,
        )
        .unwrap();
        assert!(
            re.find(html).is_none(),
            "a network reference: {:?}",
            re.find(html)
        );
        assert!(!html.contains("<script"), "no script is needed");
    }

    #[test]
    fn renders_the_sample_report() {
        let report = sample_report();
        let html = render(&report);
        let tags = check_balanced(&html);
        assert_eq!(tags.iter().filter(|t| *t == "html").count(), 2);
        assert_eq!(html.matches("<html").count(), 1);
        assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
        assert!(html.contains("<svg"), "a timeline");
        assert!(html.starts_with("<!DOCTYPE html>"));
        no_network(&html);

        assert!(html.contains("DEVIATED"));
        assert!(html.contains("pill s-deviated"));
        assert!(html.contains("hypothesis"), "the cause");
        // Every step name, escaped, and never raw.
        assert!(html.contains("kill-api"));
        assert!(html.contains("slow &lt;db&gt; &amp; &quot;cache&quot;"));
        assert!(!html.contains("<db>"));
        assert!(!html.contains("\"cache\""));
        // Faults left come first, with what to do.
        let alarm = html.find("left in place").unwrap();
        assert!(alarm < html.find("<h1>").unwrap());
        assert!(html.contains("chaosctl revert --all"));
        assert!(html.contains("NOT REVERTED"));
        // Header facts.
        for fact in [
            "20250314T093000Z-7f3a9c",
            "18446744073709551615",
            "alice@ctl-1",
            "team=payments",
            "GD-12|a",
            "2025-03-14 09:30:00.000 UTC",
        ] {
            assert!(html.contains(fact), "{fact}");
        }
        // Recovered faults, breaches, setup and teardown, probes, events.
        assert!(html.contains("Faults recovered from an earlier run"));
        assert!(html.contains("pause pid 4242"));
        assert!(html.contains("error-budget"));
        assert!(html.contains("guardrail error-budget | breached"));
        assert!(html.contains("chaos-demo serve --port 8080"));
        assert!(html.contains("pkill chaos-demo"));
        assert!(html.contains("status 503, expected 200"));
        assert!(html.contains("+12.3s"));
        assert!(html.contains("impact 2.7s"));
        assert!(html.contains("did not recover"));
        every_title_is_visible(&html);
    }

    /// The text a reader sees: tags dropped, `<title>` elements and attributes aside.
    fn visible_text(html: &str) -> String {
        let body = &html[html.find("<body>").expect("a body")..];
        let mut out = String::new();
        let mut rest = body;
        while let Some(i) = rest.find('<') {
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            if rest.starts_with("<title>") {
                rest = &rest[rest.find("</title>").expect("a closed title") + 8..];
            } else {
                rest = &rest[rest.find('>').expect("a closed tag") + 1..];
            }
            out.push(' ');
        }
        out.push_str(rest);
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// A printed page has no hover: whatever a `<title>` or a `title=` says must be on the page.
    fn every_title_is_visible(html: &str) {
        let body = &html[html.find("<body>").expect("a body")..];
        let visible = visible_text(html);
        let mut titles: Vec<String> = Vec::new();
        for part in body.split("<title>").skip(1) {
            titles.push(part[..part.find("</title>").unwrap()].to_string());
        }
        for part in body.split(" title=\"").skip(1) {
            titles.push(part[..part.find('"').unwrap()].to_string());
        }
        for t in titles {
            let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(visible.contains(&t), "only on hover: {t}");
        }
    }

    #[test]
    fn the_title_check_catches_a_hover_only_fact() {
        let hidden = "<!DOCTYPE html><html><head><title>x</title></head><body>\
                      <svg><rect><title>+5.0s FAIL: status 503</title></rect></svg></body></html>";
        let caught = std::panic::catch_unwind(|| every_title_is_visible(hidden));
        assert!(caught.is_err());
        every_title_is_visible(
            "<html><body><p>+5.0s FAIL: status 503</p><svg><rect><title>+5.0s FAIL: status \
             503</title></rect></svg></body></html>",
        );
    }

    #[test]
    fn steps_say_what_users_went_through() {
        let html = render(&sample_report());
        check_balanced(&html);
        // The description, at the top.
        assert!(html.contains(
            "<p class=\"description\">Kill one API process and slow the database; checkout must \
             keep answering.</p>"
        ));
        assert!(html.find("class=\"description\"").unwrap() < html.find("<h2>Timeline").unwrap());

        // A passed step with failures: its own pill colour, and what failed, wherever it shows
        // (the steps table and the step's heading).
        let passed = "<span class=\"pill s-passed-impact\">passed</span><span class=\"impact-note\">, \
                      26 of 960 requests failed, longest outage 1.2 s (<code>users</code> on local)</span>";
        assert_eq!(html.matches(passed).count(), 2, "{html}");
        assert!(html.contains(
            "<span class=\"pill s-deviated\">deviated</span><span class=\"impact-note\">, 40 of 65 \
             samples failed, longest outage 63.7 s, not restored (<code>checkout</code> on local)</span>"
        ));

        // The impact tables.
        assert_eq!(html.matches("<table class=\"impact\">").count(), 2);
        assert!(html.contains(
            "<th>probe</th><th>host</th><th>failed</th><th>error</th><th>longest outage</th>\
             <th>impact</th><th>restore</th><th>requests</th><th>p50 / p99</th><th>statuses</th>"
        ));
        assert!(html.contains(
            "<tr class=\"hurt\"><td>users</td><td>local</td><td>26 of 960 requests (2.7%)</td>\
             <td>1.2 s</td><td>1.2 s</td><td>after 2.7 s</td><td>1.2 s</td>\
             <td>960 sent, 934 ok, 26 failed</td><td>5.0 ms / 5.0 ms</td><td>200: 934, 502: 26</td></tr>"
        ));
        assert!(html.contains("<td>63.7 s, not restored</td>"));
        assert!(html.contains("Outages: users on local: +15.0s → +16.2s (1.2s)"));

        // Objectives and the miss.
        assert!(html.contains(
            "<li class=\"err\">max_outage: <code>checkout</code> on local: longest outage 63.7 s, \
             not over, over 10s</li>"
        ));
        assert!(html.contains(
            "<strong>Objectives</strong> max_outage 10s: <span class=\"pill s-no\">missed</span>"
        ));

        // What steady meant, beside what each probe saw.
        assert!(html.contains(
            "<tr><td>users</td><td>steady state</td><td>local</td><td>GET http://127.0.0.1:8080/ at \
             20/s for 1s: 95% of requests with status 2xx</td><td>every 1s, window of 1 sample, 100% \
             must pass</td><td>2 of 4 samples passed; 54 of 80 requests ok</td></tr>"
        ));
    }

    #[test]
    fn load_probes_show_request_latencies_not_burst_lengths() {
        let html = render(&sample_report());
        let probes = &html[html.find("<h2>Probes</h2>").unwrap()..];
        let users = &probes[probes.find("<tr><td>users</td>").unwrap()..];
        let users = &users[..users.find("</tr>").unwrap()];
        assert!(users.contains("<td>80 sent, 26 failed</td>"), "{users}");
        assert_eq!(
            users.matches("<td class=\"num\">4.2 ms</td>").count(),
            3,
            "{users}"
        );
        // The bursts lasted 976 ms each: that is never shown as a latency.
        assert!(!html.contains("976"));
    }

    #[test]
    fn a_check_that_took_no_time_is_an_instant() {
        let mut r = sample_report();
        let after = r.steps[0].after.as_mut().unwrap();
        after.decided_at = after.started_at;
        let html = render(&r);
        check_balanced(&html);
        assert!(html.contains("at +46.8s — held"), "{html}");
        assert!(!html.contains("+46.8s → +46.8s"));
        // A diamond, not a bar of no width.
        assert!(html.contains("l5 5l-5 5l-5 -5z"));
    }

    #[test]
    fn escapes_every_piece_of_text() {
        let mut report = sample_report();
        report.scenario.name = "<script>alert('x')</script>".into();
        report.labels.insert("<k>".into(), "\"v\"".into());
        report.events[0].message = "a <b> & c".into();
        report.probes[0].samples[3].reason = "<html>".into();
        let html = render(&report);
        check_balanced(&html);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("a &lt;b&gt; &amp; c"));
        assert_eq!(html.matches("<html").count(), 1);
    }

    #[test]
    fn renders_zero_steps_not_steady_and_dry_runs() {
        let mut report = sample_report();
        report.steps.clear();
        report.breaches.clear();
        report.faults_left.clear();
        report.verdict = Verdict::NotSteady;
        let html = render(&report);
        check_balanced(&html);
        no_network(&html);
        assert!(html.contains("NOT_STEADY"));
        assert!(html.contains("no steps"));
        assert!(!html.contains("left in place"));
        assert!(html.contains("<svg"));

        let mut report = sample_report();
        report.dry_run = true;
        report.verdict = Verdict::Passed;
        report.cause = None;
        report.faults_left.clear();
        report.probes.clear();
        report.setup.clear();
        report.teardown.clear();
        report.events.clear();
        for s in &mut report.steps {
            s.status = StepStatus::Skipped;
            s.started_at = None;
            s.ended_at = None;
            s.before = None;
            s.after = None;
            s.impact_ms = None;
            s.recovery_ms = None;
            for f in &mut s.faults {
                f.skipped = true;
                f.applied_at = None;
                f.reverted_at = None;
            }
        }
        let html = render(&report);
        check_balanced(&html);
        assert!(html.contains("Dry run"));
        assert!(html.contains("PASSED"));

        // An empty report, ended when it started.
        let mut report = sample_report();
        report.ended_at = report.started_at;
        report.steps.clear();
        report.probes.clear();
        report.breaches.clear();
        report.setup.clear();
        report.teardown.clear();
        report.events.clear();
        let html = render(&report);
        check_balanced(&html);
        assert!(html.contains("nothing to draw"));
    }

    #[test]
    fn a_kill_is_an_instant() {
        let mut report = sample_report();
        // Even with a revert time recorded, a kill held nothing and reverted nothing.
        let f = &mut report.steps[0].faults[0];
        f.kind = "kill".into();
        f.affected = vec!["pid 4242".into()];
        let html = render(&report);
        check_balanced(&html);
        assert!(html.contains("<td class=\"muted\">n/a (kill)</td><td class=\"num\">instant</td>"));
        let svg = &html[html.find("<svg").unwrap()..html.find("</svg>").unwrap()];
        assert_eq!(svg.matches("class=\"kill\"").count(), 1);
        assert!(svg.contains(">kill (instant) pid 4242</text>"), "{svg}");
        // Only api-2's latency is a held bar now: one fault bar of each colour fewer.
        assert_eq!(svg.matches("fill=\"#0969da\"/>").count(), 1, "{svg}");
        for label in svg.split("<text").filter(|t| t.contains("kill")) {
            assert!(
                !label.contains("revert") && !label.contains("held"),
                "{label}"
            );
        }
    }

    #[test]
    fn many_samples_are_aggregated() {
        let mut report = sample_report();
        report.probes.truncate(1);
        let n = 20_000;
        report.probes[0].samples = (0..n)
            .map(|i| SampleRecord {
                at: at(0) + Duration::milliseconds(i * 6),
                ok: i % 97 != 0,
                latency_ms: 3.0 + (i % 50) as f64,
                reason: if i % 97 == 0 {
                    "timed out".into()
                } else {
                    String::new()
                },
                load: None,
            })
            .collect();
        let html = render(&report);
        check_balanced(&html);
        assert!(html.len() < 600_000, "{} bytes", html.len());
        // One mark per bucket: at most MAX_MARKS / 2 for this probe.
        let marks = html.matches("class=\"smp-").count();
        assert!(marks <= timeline::MAX_MARKS / 2, "{marks} marks");
        assert!(html.contains(&format!("<td class=\"num\">{n}</td>")));

        // A few hundred are drawn one by one.
        report.probes[0].samples.truncate(400);
        let html = render(&report);
        assert_eq!(html.matches("class=\"smp-").count(), 400);
    }

    #[test]
    fn tick_labels_read_well() {
        assert_eq!(tick_label(0), "+0s");
        assert_eq!(tick_label(5_000), "+5s");
        assert_eq!(tick_label(500), "+0.5s");
        assert_eq!(tick_label(250), "+0.25s");
        assert_eq!(tick_label(90_000), "+1m30s");
        assert_eq!(tick_label(120_000), "+2m");
        assert_eq!(tick_step(8_000.0), 1_000);
        assert_eq!(tick_step(125_400.0), 15_000);
    }
}
