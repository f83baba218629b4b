//! `report.html`: one self-contained page for a post-game-day review. Inline CSS and inline SVG,
//! no JavaScript, nothing fetched from the network; light theme, readable on a laptop and
//! printable. Faults that may still be in place come first, then the header facts, a timeline of
//! the run (steps, faults per host, checks, breaches, every probe sample), the steps and their
//! faults, breaches, setup and teardown, a summary per probe and the event log.
//!
//! Every piece of report text goes through [`esc`]. Times inside the run are offsets from its
//! start (`+12.3s`), as in `report.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};

use super::markdown::{duration, offset};
use super::model::{
    CheckReport, CommandOutcome, FaultReport, ProbeReport, ProbeRole, Report, StepReport,
    StepStatus, Verdict,
};

/// Above this many samples in one probe, the timeline draws one mark per time bucket instead of
/// one per sample, so that the file stays small.
const MAX_MARKS: usize = 1500;

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

const CSS: &str = r#"
:root{--pass:#1a7f37;--pass-bg:#dafbe1;--fail:#cf222e;--fail-bg:#ffebe9;--warn:#9a6700;--warn-bg:#fff8c5;
--dev:#bc4c00;--dev-bg:#fff1e5;--muted:#59636e;--line:#d1d9e0;--bg2:#f6f8fa;--info:#0969da;--info-bg:#ddf4ff;--abort:#8250df;--abort-bg:#fbefff}
*{box-sizing:border-box}
body{margin:0;background:#fff;color:#1f2328;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1320px;margin:0 auto;padding:20px 28px 40px}
h1{font-size:22px;margin:0 0 6px}
h2{font-size:17px;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:18px 0 6px}
h4{font-size:13px;margin:10px 0 4px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;font-size:12.5px}
code{background:var(--bg2);padding:1px 4px;border-radius:4px;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid var(--line);padding:4px 7px;text-align:left;vertical-align:top}
th{background:var(--bg2);font-weight:600;white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.t{white-space:nowrap;font-variant-numeric:tabular-nums}
.muted{color:var(--muted)}
.small{font-size:12px}
.pill{display:inline-block;padding:1px 8px;border-radius:999px;font-weight:600;font-size:12px;white-space:nowrap;border:1px solid transparent}
.s-passed{color:var(--pass);background:var(--pass-bg);border-color:#aceebb}
.s-deviated{color:var(--dev);background:var(--dev-bg);border-color:#ffd8b5}
.s-aborted{color:var(--abort);background:var(--abort-bg);border-color:#ecd8ff}
.s-error,.s-interrupted,.s-invalid,.s-no{color:var(--fail);background:var(--fail-bg);border-color:#ffcecb}
.s-not_steady{color:var(--warn);background:var(--warn-bg);border-color:#f5e0a0}
.s-skipped{color:var(--muted);background:var(--bg2);border-color:var(--line)}
.head{display:flex;gap:18px;align-items:flex-start;justify-content:space-between;flex-wrap:wrap}
.verdict{font-size:22px;font-weight:800;letter-spacing:.03em;padding:6px 16px;border-radius:8px;border-width:2px;border-style:solid}
.reason{font-size:15px;margin:8px 0 12px;padding:8px 12px;border-left:4px solid var(--line);background:var(--bg2)}
.reason.v-passed{border-left-color:var(--pass)}.reason.v-deviated{border-left-color:var(--dev)}
.reason.v-not_steady{border-left-color:var(--warn)}.reason.v-aborted{border-left-color:var(--abort)}
.reason.v-error,.reason.v-interrupted,.reason.v-invalid{border-left-color:var(--fail)}
dl.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:2px 22px;margin:0}
dl.facts div{display:flex;gap:8px;padding:3px 0;border-bottom:1px dashed var(--line)}
dl.facts dt{color:var(--muted);min-width:92px;flex:none}
dl.facts dd{margin:0;overflow-wrap:anywhere}
.banner{padding:8px 12px;border-radius:6px;margin:10px 0;font-weight:600}
.banner.dry{background:var(--info-bg);color:var(--info);border:1px solid #b6e3ff}
.alarm{border:3px solid var(--fail);background:var(--fail-bg);border-radius:8px;padding:12px 16px;margin:4px 0 18px}
.alarm h2{color:var(--fail);border:0;margin:0 0 6px;font-size:20px}
.alarm pre{background:#fff;border:1px solid #ffcecb;padding:8px 12px;border-radius:6px;font-size:15px;font-weight:700;margin:8px 0}
.alarm table{background:#fff}
.timeline{border:1px solid var(--line);border-radius:6px;padding:6px;overflow-x:auto}
.timeline svg{display:block;width:100%;height:auto;min-width:900px}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px;color:var(--muted);margin:6px 2px 0}
.legend span{display:inline-flex;align-items:center;gap:5px}
.sw{display:inline-block;width:12px;height:10px;border-radius:2px}
.step{border:1px solid var(--line);border-radius:6px;padding:4px 14px 8px;margin:12px 0}
.step h3 a{color:inherit;text-decoration:none}
.checks{display:grid;grid-template-columns:1fr 1fr;gap:14px}
.bar{display:inline-block;width:60px;height:8px;background:var(--fail-bg);border:1px solid var(--line);border-radius:2px;vertical-align:middle;margin-right:6px;overflow:hidden}
.bar i{display:block;height:100%;background:var(--pass)}
.err{color:var(--fail);font-weight:600}
.ok{color:var(--pass);font-weight:600}
tr.ev-fault td,tr.ev-check td{background:#fbfcfd}
tr.ev-bad td{background:var(--fail-bg)}
footer{margin-top:30px;color:var(--muted);font-size:12px;border-top:1px solid var(--line);padding-top:8px}
@media (max-width:800px){.checks{grid-template-columns:1fr}main{padding:12px}}
@media print{
 body{font-size:11px}main{max-width:none;padding:0}
 h2{break-after:avoid}.step,.alarm,.timeline,tr{break-inside:avoid}
 .timeline{overflow:visible;border:0}.timeline svg{min-width:0}
 .step h3 a{text-decoration:none}
 *{-webkit-print-color-adjust:exact;print-color-adjust:exact}
}
"#;

// ---------------------------------------------------------------------------------------------
// Small helpers.

fn utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A UTC time for the header, with the RFC 3339 form as its hover title.
fn human_utc(t: DateTime<Utc>) -> String {
    format!(
        "<span title=\"{}\">{} UTC</span>",
        utc(t),
        t.format("%Y-%m-%d %H:%M:%S%.3f")
    )
}

fn off(start: DateTime<Utc>, t: Option<DateTime<Utc>>) -> String {
    t.map(|t| offset(start, t)).unwrap_or_else(|| "–".into())
}

/// A table cell with escaped text, `–` when empty.
fn td(text: &str) -> String {
    if text.trim().is_empty() {
        "<td class=\"muted\">–</td>".into()
    } else {
        format!("<td>{}</td>", esc(text))
    }
}

/// A cell with a time: an offset, with the UTC time as its hover title.
fn td_time(start: DateTime<Utc>, t: Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => format!(
            "<td class=\"t\" title=\"{}\">{}</td>",
            utc(t),
            offset(start, t)
        ),
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

fn step_status(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Passed => "passed",
        StepStatus::Deviated => "deviated",
        StepStatus::Aborted => "aborted",
        StepStatus::Error => "error",
        StepStatus::Skipped => "skipped",
    }
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

/// The nearest-rank percentile `p` (0..=100) of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn role(r: ProbeRole) -> &'static str {
    match r {
        ProbeRole::SteadyState => "steady state",
        ProbeRole::Guardrail => "guardrail",
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
        "</div>\n<div class=\"verdict pill s-{v}\" title=\"exit code {}\">{}</div></div>\n",
        report.exit_code(),
        esc(&v.to_uppercase())
    );
    if !report.reason.is_empty() {
        let _ = writeln!(h, "<p class=\"reason v-{v}\">{}</p>", esc(&report.reason));
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
    let sha: String = report.scenario.sha256.chars().take(12).collect();
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
            "scenario sha",
            format!(
                "<code title=\"{}\">{}</code>",
                esc(&report.scenario.sha256),
                esc(&sha)
            ),
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

// ---------------------------------------------------------------------------------------------
// The timeline.

/// Horizontal geometry of the timeline: milliseconds from `lo` to x coordinates.
struct Scale {
    lo: DateTime<Utc>,
    span_ms: f64,
    x0: f64,
    width: f64,
    /// The run's start, for offsets in titles and tick labels.
    start: DateTime<Utc>,
}

impl Scale {
    fn x(&self, t: DateTime<Utc>) -> f64 {
        let ms = (t - self.lo).num_microseconds().unwrap_or(0) as f64 / 1000.0;
        self.x0 + (ms / self.span_ms).clamp(0.0, 1.0) * self.width
    }

    fn px_per_ms(&self) -> f64 {
        self.width / self.span_ms
    }

    fn end(&self) -> f64 {
        self.x0 + self.width
    }
}

const SVG_W: f64 = 1240.0;
const LABEL_W: f64 = 210.0;
const ROW_H: f64 = 22.0;

/// Every time the report mentions, to size the timeline.
fn all_times(report: &Report) -> Vec<DateTime<Utc>> {
    let mut ts = vec![report.started_at, report.ended_at];
    for c in report.setup.iter().chain(&report.teardown) {
        ts.push(c.started_at);
        ts.extend(c.ended_at);
    }
    for s in &report.steps {
        ts.extend(s.started_at);
        ts.extend(s.ended_at);
        for f in &s.faults {
            ts.extend(f.applied_at);
            ts.extend(f.reverted_at);
        }
        for c in s.before.iter().chain(&s.after) {
            ts.push(c.started_at);
            ts.push(c.decided_at);
        }
    }
    ts.extend(report.breaches.iter().map(|b| b.at));
    for p in &report.probes {
        if let (Some(a), Some(b)) = (p.samples.first(), p.samples.last()) {
            ts.push(a.at);
            ts.push(b.at);
        }
    }
    ts
}

/// A tick interval giving at most about 12 ticks over `span_ms`.
fn tick_step(span_ms: f64) -> u64 {
    const STEPS: [u64; 20] = [
        100, 200, 250, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
        600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000, 43_200_000,
    ];
    STEPS
        .iter()
        .copied()
        .find(|&s| span_ms / s as f64 <= 12.0)
        .unwrap_or(86_400_000)
}

fn tick_label(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "+" };
    let ms = ms.unsigned_abs();
    if ms >= 3_600_000 {
        format!("{sign}{}h{:02}m", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    } else if ms >= 60_000 {
        if ms.is_multiple_of(60_000) {
            format!("{sign}{}m", ms / 60_000)
        } else {
            format!("{sign}{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
        }
    } else if ms.is_multiple_of(1000) {
        format!("{sign}{}s", ms / 1000)
    } else {
        let secs = format!("{:.2}", ms as f64 / 1000.0);
        format!("{sign}{}s", secs.trim_end_matches('0'))
    }
}

/// A row label on the left of the timeline.
fn row_label(svg: &mut String, y: f64, text: &str, sub: &str) {
    let shown = clip(text, 30);
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" class=\"lbl\"><title>{}</title>{}",
        LABEL_W - 8.0,
        y + ROW_H / 2.0 + 4.0,
        esc(text),
        esc(&shown)
    );
    if !sub.is_empty() {
        let _ = write!(svg, "<tspan class=\"sub\"> {}</tspan>", esc(sub));
    }
    svg.push_str("</text>\n");
}

/// A horizontal rule between row groups.
fn rule(svg: &mut String, y: f64) {
    let _ = writeln!(
        svg,
        "<line x1=\"4\" x2=\"{SVG_W:.0}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"rule\"/>"
    );
}

/// A bar with a hover title.
fn bar(svg: &mut String, x1: f64, x2: f64, y: f64, hgt: f64, attrs: &str, title: &str) {
    let w = (x2 - x1).max(2.0);
    let _ = writeln!(
        svg,
        "<rect x=\"{x1:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{hgt:.1}\" {attrs}><title>{}</title></rect>",
        esc(title)
    );
}

/// Text inside or next to a bar, clipped to about the room there is.
fn bar_text(svg: &mut String, x: f64, y: f64, room: f64, text: &str, class: &str) {
    let chars = (room / 6.4).floor() as usize;
    if chars < 3 {
        return;
    }
    let _ = writeln!(
        svg,
        "<text x=\"{x:.1}\" y=\"{y:.1}\" class=\"{class}\">{}</text>",
        esc(&clip(text, chars))
    );
}

fn timeline(h: &mut String, report: &Report) {
    let start = report.started_at;
    let times = all_times(report);
    let lo = times.iter().copied().min().unwrap_or(start);
    let hi = times.iter().copied().max().unwrap_or(report.ended_at);
    let span_ms = ((hi - lo).num_microseconds().unwrap_or(0) as f64 / 1000.0).max(1.0);
    let sc = Scale {
        lo,
        span_ms,
        x0: LABEL_W,
        width: SVG_W - LABEL_W - 16.0,
        start,
    };

    // Rows are drawn into `rows`; bands and the grid, which span the whole height, are drawn
    // afterwards into `back`, once the height is known.
    let mut rows = String::new();
    let top = 26.0;
    let mut y = top;

    // Steps: a header row with a band per step.
    if !report.steps.is_empty() {
        row_label(&mut rows, y, "steps", "");
        for s in &report.steps {
            let (Some(a), Some(b)) = (s.started_at, s.ended_at) else {
                continue;
            };
            let (x1, x2) = (sc.x(a), sc.x(b));
            let title = format!(
                "step {}: {} — {} ({} → {}, {})",
                s.index + 1,
                s.name,
                step_status(s.status),
                offset(start, a),
                offset(start, b),
                duration((b - a).num_milliseconds().max(0) as u64)
            );
            bar(
                &mut rows,
                x1,
                x2,
                y + 2.0,
                ROW_H - 4.0,
                &format!("rx=\"3\" fill=\"{}\"", step_colour(s.status)),
                &title,
            );
            bar_text(
                &mut rows,
                x1 + 4.0,
                y + ROW_H / 2.0 + 4.0,
                x2 - x1 - 6.0,
                &format!("{} {}", s.index + 1, s.name),
                "in",
            );
        }
        y += ROW_H;
    }

    // Setup and teardown commands.
    let cmds: Vec<(&str, &CommandOutcome)> = report
        .setup
        .iter()
        .map(|c| ("setup", c))
        .chain(report.teardown.iter().map(|c| ("teardown", c)))
        .collect();
    if !cmds.is_empty() {
        rule(&mut rows, y);
        row_label(&mut rows, y, "setup / teardown", "");
        for (what, c) in &cmds {
            let end = c.ended_at.unwrap_or(report.ended_at);
            let (x1, x2) = (sc.x(c.started_at), sc.x(end));
            let fill = if !c.ok {
                "#cf222e"
            } else if c.background {
                "#8c959f"
            } else {
                "#57606a"
            };
            let title = format!(
                "{what} {}: {} — {}{} ({} → {}){}",
                c.name,
                c.command,
                if c.ok { "ok" } else { "FAILED" },
                if c.background { ", background" } else { "" },
                offset(start, c.started_at),
                off(start, c.ended_at),
                if c.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", c.detail)
                }
            );
            let opacity = if c.background { "0.45" } else { "0.9" };
            bar(
                &mut rows,
                x1,
                x2,
                y + 5.0,
                ROW_H - 10.0,
                &format!("rx=\"2\" fill=\"{fill}\" fill-opacity=\"{opacity}\""),
                &title,
            );
            bar_text(
                &mut rows,
                x1 + 3.0,
                y + ROW_H / 2.0 + 4.0,
                x2 - x1 - 4.0,
                &c.name,
                "in dark",
            );
        }
        y += ROW_H;
    }

    // Before and after checks.
    if report
        .steps
        .iter()
        .any(|s| s.before.is_some() || s.after.is_some())
    {
        rule(&mut rows, y);
        row_label(&mut rows, y, "hypothesis checks", "");
        // A step's before-check is often the previous step's after-check: drawn once.
        let mut drawn: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        for s in &report.steps {
            for (which, c) in [("before", &s.before), ("after", &s.after)] {
                let Some(c) = c else { continue };
                if drawn.contains(&(c.started_at, c.decided_at)) {
                    continue;
                }
                drawn.push((c.started_at, c.decided_at));
                let (x1, x2) = (sc.x(c.started_at), sc.x(c.decided_at));
                let fill = if c.held { "#1a7f37" } else { "#cf222e" };
                let title = format!(
                    "{which}-check of step {} `{}`: {} ({} → {}): {}",
                    s.index + 1,
                    s.name,
                    if c.held { "held" } else { "DID NOT HOLD" },
                    offset(start, c.started_at),
                    offset(start, c.decided_at),
                    c.reason
                );
                bar(
                    &mut rows,
                    x1,
                    x2,
                    y + 5.0,
                    ROW_H - 10.0,
                    &format!("rx=\"2\" fill=\"{fill}\" fill-opacity=\"0.35\" stroke=\"{fill}\""),
                    &title,
                );
                bar_text(
                    &mut rows,
                    x1 + 3.0,
                    y + ROW_H / 2.0 + 4.0,
                    x2 - x1 - 4.0,
                    which,
                    "in dark",
                );
            }
        }
        y += ROW_H;
    }

    // Faults, one row (or more, where they overlap) per host.
    let mut by_host: BTreeMap<&str, Vec<(&StepReport, &FaultReport)>> = BTreeMap::new();
    for s in &report.steps {
        for f in &s.faults {
            by_host.entry(f.host.as_str()).or_default().push((s, f));
        }
    }
    if !by_host.is_empty() {
        rule(&mut rows, y);
    }
    for (host, faults) in &by_host {
        // Greedy lanes: a fault goes in the first lane whose last bar ended before it starts.
        let mut lanes: Vec<f64> = Vec::new();
        let mut placed = Vec::new();
        for (s, f) in faults {
            let a = f.applied_at.or(s.started_at).map(|t| sc.x(t));
            let Some(x1) = a else {
                placed.push((0usize, s, f, None));
                continue;
            };
            let x2 = fault_end_x(&sc, report, s, f, x1);
            let lane = match lanes.iter().position(|&end| end <= x1) {
                Some(i) => i,
                None => {
                    lanes.push(0.0);
                    lanes.len() - 1
                }
            };
            lanes[lane] = x2 + 1.0;
            placed.push((lane, s, f, Some((x1, x2))));
        }
        let n_lanes = lanes.len().max(1);
        row_label(&mut rows, y, &format!("faults on {host}"), "");
        for (lane, s, f, pos) in placed {
            let Some((x1, x2)) = pos else { continue };
            let ly = y + lane as f64 * ROW_H;
            fault_mark(&mut rows, &sc, report, s, f, x1, x2, ly);
        }
        y += n_lanes as f64 * ROW_H;
    }

    // Impact and recovery, per step.
    let annotated: Vec<&StepReport> = report
        .steps
        .iter()
        .filter(|s| s.impact_ms.is_some() || s.recovery_ms.is_some() || recovery_failed(s))
        .collect();
    if !annotated.is_empty() {
        rule(&mut rows, y);
        row_label(&mut rows, y, "time to impact", "");
        row_label(&mut rows, y + ROW_H, "time to recover", "");
        for s in &annotated {
            impact_recovery(&mut rows, &sc, s, y);
        }
        y += 2.0 * ROW_H;
    }

    // Breaches.
    let mut breach_lines = String::new();
    if !report.breaches.is_empty() {
        rule(&mut rows, y);
        row_label(&mut rows, y, "guardrail breaches", "");
        for b in &report.breaches {
            let x = sc.x(b.at);
            let cy = y + ROW_H / 2.0;
            let _ = writeln!(
                rows,
                "<path d=\"M{:.1} {:.1}L{:.1} {:.1}L{:.1} {:.1}Z\" fill=\"#cf222e\"><title>{}</title></path>",
                x,
                cy + 7.0,
                x - 6.0,
                cy - 6.0,
                x + 6.0,
                cy - 6.0,
                esc(&format!(
                    "breach of guardrail `{}` on {} at {}{}: {}/{} samples passed — {}",
                    b.guardrail,
                    b.host,
                    offset(start, b.at),
                    b.step
                        .as_ref()
                        .map(|s| format!(" during `{s}`"))
                        .unwrap_or_default(),
                    b.passed,
                    b.samples,
                    b.reason
                ))
            );
            let _ = writeln!(
                breach_lines,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{top:.1}\" y2=\"@BOTTOM@\" class=\"breach\"/>"
            );
        }
        y += ROW_H;
    }

    // Probes: a strip of samples each.
    if !report.probes.is_empty() {
        rule(&mut rows, y);
    }
    for p in &report.probes {
        let sub = match p.role {
            ProbeRole::SteadyState => "",
            ProbeRole::Guardrail => "(guardrail)",
        };
        let name = if p.host.is_empty() || p.host == "local" {
            p.name.clone()
        } else {
            format!("{} · {}", p.name, p.host)
        };
        row_label(&mut rows, y, &name, sub);
        probe_strip(&mut rows, &sc, p, y);
        y += ROW_H;
    }
    if report.probes.is_empty() && report.steps.is_empty() && cmds.is_empty() {
        rule(&mut rows, y);
        row_label(&mut rows, y, "nothing to draw", "");
        y += ROW_H;
    }
    let bottom = y + 4.0;

    // Background: step bands, the grid and tick labels.
    let mut back = String::new();
    for s in &report.steps {
        let (Some(a), Some(b)) = (s.started_at, s.ended_at) else {
            continue;
        };
        let (x1, x2) = (sc.x(a), sc.x(b));
        let _ = writeln!(
            back,
            "<rect x=\"{x1:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\" fill-opacity=\"0.07\"/>",
            (x2 - x1).max(1.0),
            bottom - top,
            step_colour(s.status)
        );
    }
    let step_ms = tick_step(span_ms);
    let first = (lo - start).num_milliseconds();
    let last = (hi - start).num_milliseconds();
    let mut t = first.div_euclid(step_ms as i64) * step_ms as i64;
    if t < first {
        t += step_ms as i64;
    }
    while t <= last {
        let x = sc.x(start + chrono::Duration::milliseconds(t));
        let _ = writeln!(
            back,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{bottom:.1}\" class=\"grid\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" class=\"tick\">{}</text>",
            top - 4.0,
            top - 9.0,
            esc(&tick_label(t))
        );
        t += step_ms as i64;
    }
    let _ = writeln!(
        back,
        "<text x=\"8\" y=\"{:.1}\" class=\"tick start\">{} UTC</text>",
        top - 9.0,
        esc(&start.format("%Y-%m-%d %H:%M:%S").to_string())
    );

    let height = bottom + 4.0;
    let _ = write!(
        h,
        "<div class=\"timeline\">\n<svg viewBox=\"0 0 {SVG_W:.0} {height:.0}\" role=\"img\" \
         aria-label=\"timeline of the run\" font-family=\"system-ui,sans-serif\" font-size=\"11\">\n\
         <style>.lbl{{text-anchor:end;fill:#1f2328;font-size:11.5px}}.sub{{fill:#59636e;font-size:10px}}\
         .tick{{fill:#59636e;font-size:10px;text-anchor:middle}}.tick.start{{text-anchor:start}}\
         .grid{{stroke:#d1d9e0;stroke-width:1}}.rule{{stroke:#eaeef2;stroke-width:1}}\
         .in{{fill:#fff;font-size:10.5px;font-weight:600;pointer-events:none}}.in.dark{{fill:#1f2328;font-weight:400}}\
         .note{{fill:#1f2328;font-size:10.5px}}.breach{{stroke:#cf222e;stroke-width:1;stroke-dasharray:3 3;opacity:.7}}</style>\n\
         <defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
         <rect width=\"3\" height=\"6\" fill=\"#cf222e\" fill-opacity=\"0.55\"/></pattern></defs>\n\
         {back}{rows}{}</svg>\n</div>\n",
        breach_lines.replace("@BOTTOM@", &format!("{bottom:.1}"))
    );
    h.push_str(LEGEND);
}

const LEGEND: &str = "<div class=\"legend\">\
<span><i class=\"sw\" style=\"background:#1a7f37\"></i>passed step / sample / held check</span>\
<span><i class=\"sw\" style=\"background:#bc4c00\"></i>deviated step</span>\
<span><i class=\"sw\" style=\"background:#cf222e\"></i>failed sample / check, error</span>\
<span><i class=\"sw\" style=\"background:#0969da\"></i>fault applied → reverted</span>\
<span>✕ kill (signal sent)</span>\
<span><i class=\"sw\" style=\"background:#cf222e;opacity:.55\"></i>fault not reverted</span>\
<span>▼ guardrail breach</span>\
<span>hover any mark for details</span></div>\n";

/// Whether a step ran its after-check and did not recover.
fn recovery_failed(s: &StepReport) -> bool {
    s.recovery_ms.is_none() && s.after.as_ref().is_some_and(|c| !c.held)
}

fn is_kill(f: &FaultReport) -> bool {
    f.kind == "kill"
}

/// Where a fault's bar ends: its revert, or the run's end when it was never reverted.
fn fault_end_x(sc: &Scale, report: &Report, s: &StepReport, f: &FaultReport, x1: f64) -> f64 {
    match f.reverted_at {
        _ if is_kill(f) => x1 + 10.0,
        Some(r) => sc.x(r),
        None if f.skipped || f.applied_at.is_none() => {
            sc.x(s.ended_at.unwrap_or(report.ended_at)).max(x1 + 4.0)
        }
        None => sc.end(),
    }
}

#[allow(clippy::too_many_arguments)]
fn fault_mark(
    svg: &mut String,
    sc: &Scale,
    report: &Report,
    s: &StepReport,
    f: &FaultReport,
    x1: f64,
    x2: f64,
    y: f64,
) {
    let start = sc.start;
    let left = report.faults_left.iter().any(|l| l.fault_id == f.fault_id);
    let mut title = format!(
        "step {} `{}`: {} on {} — applied {}, reverted {}",
        s.index + 1,
        s.name,
        f.fault,
        f.host,
        off(start, f.applied_at),
        match (f.reverted_at, is_kill(f)) {
            (_, true) => "n/a (kill)".into(),
            (Some(r), false) => offset(start, r),
            (None, false) => "NEVER".into(),
        }
    );
    if let Some(m) = &f.mechanism {
        let _ = write!(title, "; via {m}");
    }
    if let Some(v) = f.verified {
        let _ = write!(title, "; verified: {}", if v { "yes" } else { "NO" });
    }
    if !f.affected.is_empty() {
        let _ = write!(title, "; affected: {}", f.affected.join(", "));
    }
    if let Some(e) = &f.error {
        let _ = write!(title, "; error: {e}");
    }
    if f.skipped {
        title.push_str(" (skipped)");
    }
    let cy = y + ROW_H / 2.0;
    if f.skipped || f.applied_at.is_none() {
        bar(
            svg,
            x1,
            x2,
            y + 6.0,
            ROW_H - 12.0,
            "rx=\"2\" fill=\"none\" stroke=\"#8c959f\" stroke-dasharray=\"3 2\"",
            &title,
        );
        bar_text(svg, x1 + 3.0, cy + 4.0, x2 - x1 - 4.0, "skipped", "in dark");
        return;
    }
    if is_kill(f) {
        let _ = writeln!(
            svg,
            "<path d=\"M{:.1} {:.1}l10 10m0 -10l-10 10\" stroke=\"{}\" stroke-width=\"2.5\" fill=\"none\"><title>{}</title></path>",
            x1 - 5.0,
            cy - 5.0,
            if f.error.is_some() {
                "#cf222e"
            } else {
                "#0969da"
            },
            esc(&title)
        );
        bar_text(
            svg,
            x1 + 9.0,
            cy + 4.0,
            200.0,
            &format!("{} {}", f.kind, f.affected.join(", ")),
            "note",
        );
        return;
    }
    let (fill, extra) = if f.reverted_at.is_none() || left {
        ("url(#hatch)", " stroke=\"#cf222e\" stroke-width=\"1.5\"")
    } else if f.error.is_some() || f.verified == Some(false) {
        ("#cf222e", "")
    } else {
        ("#0969da", "")
    };
    bar(
        svg,
        x1,
        x2,
        y + 4.0,
        ROW_H - 8.0,
        &format!("rx=\"2\" fill=\"{fill}\"{extra}"),
        &title,
    );
    let label = if f.reverted_at.is_none() {
        format!("{} — NOT REVERTED", f.kind)
    } else {
        f.kind.clone()
    };
    let class = if fill == "#0969da" || fill == "#cf222e" {
        "in"
    } else {
        "in dark"
    };
    bar_text(svg, x1 + 3.0, cy + 4.0, x2 - x1 - 4.0, &label, class);
}

/// Impact (first injection to first failing sample) and recovery (the fault's end to the
/// recovered window) for one step, on the two annotation rows starting at `y`.
fn impact_recovery(svg: &mut String, sc: &Scale, s: &StepReport, y: f64) {
    let applied = s.faults.iter().filter_map(|f| f.applied_at).min();
    let start = sc.start;
    if let (Some(ms), Some(a)) = (s.impact_ms, applied.or(s.started_at)) {
        let hit = a + chrono::Duration::milliseconds(ms as i64);
        let (x1, x2) = (sc.x(a), sc.x(hit));
        let title = format!(
            "step {} `{}`: first failing sample {} after the first injection (at {})",
            s.index + 1,
            s.name,
            duration(ms),
            offset(start, hit)
        );
        span_note(
            svg,
            x1,
            x2,
            y,
            "#bc4c00",
            &format!("impact {}", duration(ms)),
            &title,
        );
    }
    let fault_end = s
        .after
        .as_ref()
        .map(|c| c.started_at)
        .or_else(|| s.faults.iter().filter_map(|f| f.reverted_at).max());
    let Some(end) = fault_end else { return };
    let y = y + ROW_H;
    match s.recovery_ms {
        Some(ms) => {
            let back = end + chrono::Duration::milliseconds(ms as i64);
            let title = format!(
                "step {} `{}`: the hypothesis held again {} after the fault ended (at {}; allowed {})",
                s.index + 1,
                s.name,
                duration(ms),
                offset(start, back),
                duration(s.recover_within_ms)
            );
            span_note(
                svg,
                sc.x(end),
                sc.x(back),
                y,
                "#1a7f37",
                &format!("recovered {}", duration(ms)),
                &title,
            );
        }
        None if recovery_failed(s) => {
            let until = s.after.as_ref().map(|c| c.decided_at).unwrap_or(end);
            let title = format!(
                "step {} `{}`: did NOT recover within {} of the fault's end",
                s.index + 1,
                s.name,
                duration(s.recover_within_ms)
            );
            span_note(
                svg,
                sc.x(end),
                sc.x(until),
                y,
                "#cf222e",
                &format!("no recovery in {}", duration(s.recover_within_ms)),
                &title,
            );
        }
        None => {}
    }
}

/// A thin bracket from `x1` to `x2` with a label after it.
fn span_note(svg: &mut String, x1: f64, x2: f64, y: f64, colour: &str, label: &str, title: &str) {
    let cy = y + ROW_H / 2.0;
    let x2 = x2.max(x1 + 2.0);
    // The label goes after the bracket, or inside it, above the line, at the right edge.
    let (lx, ly, anchor) = if x2 + 7.0 + label.chars().count() as f64 * 6.0 > SVG_W - 4.0 {
        (x2 - 6.0, cy - 3.0, "end")
    } else {
        (x2 + 7.0, cy + 4.0, "start")
    };
    let _ = writeln!(
        svg,
        "<g><title>{}</title><line x1=\"{x1:.1}\" x2=\"{x2:.1}\" y1=\"{cy:.1}\" y2=\"{cy:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>\
         <line x1=\"{x1:.1}\" x2=\"{x1:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" stroke-width=\"1.5\"/>\
         <path d=\"M{x2:.1} {:.1}l-4 -6h8z\" fill=\"{colour}\"/>\
         <text x=\"{lx:.1}\" y=\"{ly:.1}\" class=\"note\" text-anchor=\"{anchor}\" style=\"fill:{colour}\">{}</text></g>",
        esc(title),
        cy - 5.0,
        cy + 5.0,
        cy + 1.0,
        esc(label)
    );
}

/// One probe's samples: a green tick per passing sample and a taller red one per failing
/// sample; above [`MAX_MARKS`] samples, one mark per time bucket.
fn probe_strip(svg: &mut String, sc: &Scale, p: &ProbeReport, y: f64) {
    let start = sc.start;
    let base = y + ROW_H - 4.0;
    if p.samples.len() <= MAX_MARKS {
        let w = (p.every_ms as f64 * sc.px_per_ms() * 0.7).clamp(1.2, 8.0);
        for s in &p.samples {
            let x = sc.x(s.at) - w / 2.0;
            let (hgt, fill) = if s.ok {
                (9.0, "#2da44e")
            } else {
                (ROW_H - 6.0, "#cf222e")
            };
            let title = if s.ok {
                format!("{} · {} · ok", offset(start, s.at), lat(Some(s.latency_ms)))
            } else {
                format!(
                    "{} · {} · FAIL: {}",
                    offset(start, s.at),
                    lat(Some(s.latency_ms)),
                    s.reason
                )
            };
            let _ = writeln!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{hgt:.0}\" fill=\"{fill}\"><title>{}</title></rect>",
                base - hgt,
                esc(&title)
            );
        }
        return;
    }
    // Aggregated: MAX_MARKS / 2 buckets across the timeline.
    let buckets = MAX_MARKS / 2;
    let bw = sc.width / buckets as f64;
    #[derive(Default, Clone)]
    struct Bucket<'a> {
        n: usize,
        failed: usize,
        max_lat: f64,
        first: Option<DateTime<Utc>>,
        last: Option<DateTime<Utc>>,
        reason: Option<&'a str>,
    }
    let mut bs = vec![Bucket::default(); buckets];
    for s in &p.samples {
        let i = (((sc.x(s.at) - sc.x0) / bw) as usize).min(buckets - 1);
        let b = &mut bs[i];
        b.n += 1;
        if !s.ok {
            b.failed += 1;
            b.reason.get_or_insert(&s.reason);
        }
        if s.latency_ms.is_finite() {
            b.max_lat = b.max_lat.max(s.latency_ms);
        }
        b.first.get_or_insert(s.at);
        b.last = Some(s.at);
    }
    for (i, b) in bs.iter().enumerate() {
        let (Some(first), Some(last)) = (b.first, b.last) else {
            continue;
        };
        let x = sc.x0 + i as f64 * bw;
        let (hgt, fill) = if b.failed == 0 {
            (9.0, "#2da44e")
        } else {
            let share = b.failed as f64 / b.n as f64;
            (9.0 + (ROW_H - 15.0) * share, "#cf222e")
        };
        let mut title = format!(
            "{} → {} · {} samples, {} failed · max {}",
            offset(start, first),
            offset(start, last),
            b.n,
            b.failed,
            lat(Some(b.max_lat))
        );
        if let Some(r) = b.reason {
            let _ = write!(title, " · e.g. {r}");
        }
        let _ = writeln!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.2}\" height=\"{hgt:.1}\" fill=\"{fill}\"><title>{}</title></rect>",
            base - hgt,
            bw.max(1.0),
            esc(&title)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tables.

fn steps_table(h: &mut String, report: &Report) {
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
            pill(step_status(s.status), step_status(s.status)),
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

fn step_details(h: &mut String, s: &StepReport, start: DateTime<Utc>) {
    let n = s.index + 1;
    let _ = write!(
        h,
        "<section class=\"step\" id=\"step-{n}\">\n<h3><a href=\"#step-{n}\">Step {n}: {}</a> {}</h3>\n<p class=\"muted small\">",
        esc(&s.name),
        pill(step_status(s.status), step_status(s.status))
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

    if s.faults.is_empty() {
        h.push_str("<p class=\"muted\">No faults.</p>\n");
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
            let reverted = match (f.skipped, f.applied_at, f.reverted_at) {
                (true, _, _) => "<td class=\"muted\">skipped</td>".to_string(),
                (false, _, Some(r)) => td_time(start, Some(r)),
                (false, Some(_), None) if is_kill(f) => {
                    "<td class=\"muted\">n/a (kill)</td>".into()
                }
                (false, Some(_), None) => "<td class=\"err\">NOT REVERTED</td>".into(),
                (false, None, None) => "<td class=\"muted\">–</td>".into(),
            };
            let held = match (f.applied_at, f.reverted_at) {
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
        "<h4>{title}-check {}</h4><p class=\"small\">{} → {}{}{}</p>",
        yes_no_pill(c.held, "held", "did not hold"),
        offset(start, c.started_at),
        offset(start, c.decided_at),
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

fn breaches(h: &mut String, report: &Report) {
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

fn commands(h: &mut String, title: &str, cmds: &[CommandOutcome], start: DateTime<Utc>) {
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

fn probes(h: &mut String, report: &Report) {
    h.push_str("<section>\n<h2>Probes</h2>\n");
    if report.probes.is_empty() {
        h.push_str("<p class=\"muted\">No probe samples.</p>\n</section>\n");
        return;
    }
    h.push_str("<table>\n");
    h.push_str(
        "<thead><tr><th>probe</th><th>kind</th><th>role</th><th>host</th>\
         <th class=\"num\">every</th><th class=\"num\">window</th><th class=\"num\" title=\"the share of a window that must pass\">must pass</th>\
         <th class=\"num\">samples</th><th>passed</th><th class=\"num\">p50</th>\
         <th class=\"num\">p95</th><th class=\"num\">max</th><th>first failure</th></tr></thead>\n<tbody>\n",
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
        let mut lats: Vec<f64> = p
            .samples
            .iter()
            .map(|s| s.latency_ms)
            .filter(|v| v.is_finite())
            .collect();
        lats.sort_by(f64::total_cmp);
        let first_failure = match p.samples.iter().find(|s| !s.ok) {
            Some(s) => format!(
                "<td><span class=\"err\" title=\"{}\">{}</span> {}</td>",
                utc(s.at),
                offset(report.started_at, s.at),
                esc(&s.reason)
            ),
            None => "<td class=\"muted\">none</td>".into(),
        };
        let _ = writeln!(
            h,
            "<tr>{}{}{}{}<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}%</td>\
             <td class=\"num\">{n}</td><td class=\"t\">{share}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
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
            lat(percentile(&lats, 50.0)),
            lat(percentile(&lats, 95.0)),
            lat(lats.last().copied()),
        );
    }
    h.push_str("</tbody></table>\n</section>\n");
}

fn events(h: &mut String, report: &Report) {
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

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::report::model::{SampleRecord, StepStatus};
    use crate::report::test_support::{at, sample_report};

    /// Checks that every element opened is closed, in order (void elements and `/>` aside), and
    /// returns the tag names seen.
    fn check_balanced(html: &str) -> Vec<String> {
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

    fn no_network(html: &str) {
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
            "2025-03-14T09:30:00.000Z",
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
        assert!(html.contains("recovered 4.5s"));
        assert!(html.contains("impact 2.7s"));
        assert!(html.contains("did not recover"));
        // A sample's hover title: time, latency and reason.
        assert!(html.contains("<title>+5.0s · 2000 ms · FAIL: status 503, expected 200</title>"));
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
    fn a_kill_is_a_marker() {
        let mut report = sample_report();
        let f = &mut report.steps[0].faults[0];
        f.kind = "kill".into();
        f.reverted_at = None;
        let html = render(&report);
        check_balanced(&html);
        assert!(html.contains("n/a (kill)"));
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
        assert!(html.contains("samples, "), "bucket titles");
        assert!(html.contains(&format!("<td class=\"num\">{n}</td>")));

        // A few hundred are drawn one by one.
        report.probes[0].samples.truncate(400);
        let html = render(&report);
        assert_eq!(
            html.matches("· ok</title>").count() + html.matches("FAIL:").count(),
            400
        );
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
