//! The run's timeline: one inline SVG with a row per kind of thing (steps, setup and teardown,
//! hypothesis checks, faults per host, time to impact, breaches, each probe's samples with its
//! outages shaded and where it recovered).
//!
//! A printed page has no hover, so nothing here lives only in a `<title>`: every mark carries a
//! visible label, or its facts are in the tables below. Marks and their labels are laid out in
//! lanes ([`lay_out`]) so that no label covers another; [`Timeline::boxes`] keeps every label's
//! box, which the tests check for overlaps.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::{clip, esc, is_kill, step_colour};
use crate::report::markdown::{duration, offset};
use crate::report::model::{
    CommandOutcome, FaultReport, ProbeImpact, ProbeReport, ProbeRole, Report, StepReport,
};
use crate::report::summary::impact_summary;

/// Above this many samples in one probe, the timeline draws one mark per time bucket instead of
/// one per sample, so that the file stays small.
pub(super) const MAX_MARKS: usize = 1500;

const SVG_W: f64 = 1240.0;
const LABEL_W: f64 = 210.0;
const ROW_H: f64 = 22.0;
/// Where the first row starts, below the tick labels.
const TOP: f64 = 26.0;

/// Horizontal geometry of the timeline: milliseconds from `lo` to x coordinates.
struct Scale {
    lo: DateTime<Utc>,
    span_ms: f64,
    x0: f64,
    width: f64,
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

/// The box a piece of text takes, to check that no two overlap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct LabelBox {
    pub x1: f64,
    pub x2: f64,
    pub y1: f64,
    pub y2: f64,
}

impl LabelBox {
    #[cfg(test)]
    pub fn intersects(&self, other: &LabelBox) -> bool {
        self.x1 < other.x2 && other.x1 < self.x2 && self.y1 < other.y2 && other.y1 < self.y2
    }
}

/// The width of `text` at the timeline's font size, rounded up: wide enough for digits and
/// capitals, so that a laid-out label never runs into the next one.
fn text_w(text: &str) -> f64 {
    text.chars().count() as f64 * 6.3 + 2.0
}

/// A mark from `x1` to `x2` (the same for an instant) and its label, before lanes are chosen.
struct Item {
    x1: f64,
    x2: f64,
    label: String,
    /// The label's class when it fits inside the mark (`in` is white on a dark bar).
    inside: &'static str,
}

/// Where an item went: its lane, and its label's left edge and class.
struct Placed {
    lane: usize,
    label_x: f64,
    class: &'static str,
}

/// Greedy lanes: each item takes its mark and its label (inside the mark when it fits, else
/// after it, else before it at the right edge) and goes into the first lane where that span is
/// free. Two items in one lane never touch, and lanes are a row apart, so no label overlaps
/// another label or mark.
fn lay_out(items: &[Item]) -> (Vec<Placed>, usize) {
    let mut lanes: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut placed = Vec::with_capacity(items.len());
    for it in items {
        let w = text_w(&it.label);
        let (label_x, class) = if it.x2 - it.x1 >= w + 8.0 {
            (it.x1 + 4.0, it.inside)
        } else if it.x2 + 5.0 + w <= SVG_W - 2.0 {
            (it.x2 + 5.0, "note")
        } else {
            (it.x1 - 5.0 - w, "note")
        };
        let lo = it.x1.min(label_x) - 4.0;
        let hi = it.x2.max(label_x + w) + 4.0;
        let free = |lane: &Vec<(f64, f64)>| lane.iter().all(|&(a, b)| hi <= a || lo >= b);
        let lane = match lanes.iter().position(free) {
            Some(i) => i,
            None => {
                lanes.push(Vec::new());
                lanes.len() - 1
            }
        };
        lanes[lane].push((lo, hi));
        placed.push(Placed {
            lane,
            label_x,
            class,
        });
    }
    (placed, lanes.len())
}

/// The SVG being drawn, and every label's box.
struct Timeline {
    sc: Scale,
    start: DateTime<Utc>,
    rows: String,
    y: f64,
    pub boxes: Vec<LabelBox>,
}

impl Timeline {
    /// Text with its left edge at `x` on the row starting at `y`, its box recorded.
    fn text(&mut self, x: f64, y: f64, text: &str, class: &str, style: &str) {
        let base = y + ROW_H / 2.0 + 4.0;
        let style = if style.is_empty() {
            String::new()
        } else {
            format!(" style=\"{style}\"")
        };
        let _ = writeln!(
            self.rows,
            "<text x=\"{x:.1}\" y=\"{base:.1}\" class=\"{class}\"{style}>{}</text>",
            esc(text)
        );
        self.boxes.push(LabelBox {
            x1: x,
            x2: x + text_w(text),
            y1: base - 10.0,
            y2: base + 3.0,
        });
    }

    /// A row label on the left; long names are cut (the tables below have them whole).
    fn row_label(&mut self, y: f64, text: &str, sub: &str) {
        let shown = clip(text, if sub.is_empty() { 30 } else { 18 });
        let all = if sub.is_empty() {
            shown.clone()
        } else {
            format!("{shown} {sub}")
        };
        let x = LABEL_W - 8.0;
        let base = y + ROW_H / 2.0 + 4.0;
        let _ = write!(
            self.rows,
            "<text x=\"{x:.1}\" y=\"{base:.1}\" class=\"lbl\">{}",
            esc(&shown)
        );
        if !sub.is_empty() {
            let _ = write!(self.rows, "<tspan class=\"sub\"> {}</tspan>", esc(sub));
        }
        self.rows.push_str("</text>\n");
        self.boxes.push(LabelBox {
            x1: x - text_w(&all),
            x2: x,
            y1: base - 10.0,
            y2: base + 3.0,
        });
    }

    /// A horizontal rule between row groups.
    fn rule(&mut self) {
        let y = self.y;
        let _ = writeln!(
            self.rows,
            "<line x1=\"4\" x2=\"{SVG_W:.0}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"rule\"/>"
        );
    }

    /// A group of rows titled `title`: the items laid out in lanes, each mark drawn by `mark`
    /// (given the item's index and its lane's top), each label after it.
    fn lanes(
        &mut self,
        title: &str,
        items: &[Item],
        mut mark: impl FnMut(&mut String, usize, f64),
    ) {
        let (placed, n) = lay_out(items);
        self.row_label(self.y, title, "");
        for (i, (it, p)) in items.iter().zip(&placed).enumerate() {
            let y = self.y + p.lane as f64 * ROW_H;
            mark(&mut self.rows, i, y);
            if !it.label.is_empty() {
                self.text(p.label_x, y, &it.label, p.class, "");
            }
        }
        self.y += n.max(1) as f64 * ROW_H;
    }
}

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
        ts.extend(s.impact_until);
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
pub(super) fn tick_step(span_ms: f64) -> u64 {
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

pub(super) fn tick_label(ms: i64) -> String {
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

/// A bar.
fn bar(svg: &mut String, x1: f64, x2: f64, y: f64, hgt: f64, attrs: &str) {
    let w = (x2 - x1).max(2.0);
    let _ = writeln!(
        svg,
        "<rect x=\"{x1:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{hgt:.1}\" {attrs}/>"
    );
}

/// An instant: a diamond at `x`, for something that took no time.
fn diamond(svg: &mut String, x: f64, y: f64, colour: &str) {
    let cy = y + ROW_H / 2.0;
    let _ = writeln!(
        svg,
        "<path d=\"M{x:.1} {:.1}l5 5l-5 5l-5 -5z\" fill=\"{colour}\"/>",
        cy - 5.0
    );
}

/// A thin bracket from `x1` to `x2` (how long something took).
fn bracket(svg: &mut String, x1: f64, x2: f64, y: f64, colour: &str) {
    let cy = y + ROW_H / 2.0;
    let x2 = x2.max(x1 + 2.0);
    let _ = writeln!(
        svg,
        "<line x1=\"{x1:.1}\" x2=\"{x2:.1}\" y1=\"{cy:.1}\" y2=\"{cy:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>\
         <line x1=\"{x1:.1}\" x2=\"{x1:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" stroke-width=\"1.5\"/>\
         <path d=\"M{x2:.1} {:.1}l-4 -6h8z\" fill=\"{colour}\"/>",
        cy - 5.0,
        cy + 5.0,
        cy + 1.0,
    );
}

/// Draws the timeline into `h`; returns every label's box.
pub(super) fn timeline(h: &mut String, report: &Report) -> Vec<LabelBox> {
    let start = report.started_at;
    let times = all_times(report);
    let lo = times.iter().copied().min().unwrap_or(start);
    let hi = times.iter().copied().max().unwrap_or(report.ended_at);
    let span_ms = ((hi - lo).num_microseconds().unwrap_or(0) as f64 / 1000.0).max(1.0);
    let mut tl = Timeline {
        sc: Scale {
            lo,
            span_ms,
            x0: LABEL_W,
            width: SVG_W - LABEL_W - 16.0,
        },
        start,
        rows: String::new(),
        y: TOP,
        boxes: Vec::new(),
    };

    steps_row(&mut tl, report);
    let cmds = commands_row(&mut tl, report);
    checks_row(&mut tl, report);
    faults_rows(&mut tl, report);
    impact_row(&mut tl, report);
    let breach_xs = breaches_row(&mut tl, report);
    probe_rows(&mut tl, report);
    if report.probes.is_empty() && report.steps.is_empty() && cmds == 0 {
        tl.rule();
        tl.row_label(tl.y, "nothing to draw", "");
        tl.y += ROW_H;
    }
    let bottom = tl.y + 4.0;

    // Background, drawn first, once the height is known: step bands, the grid and tick labels.
    let sc = &tl.sc;
    let mut back = String::new();
    for s in &report.steps {
        let (Some(a), Some(b)) = (s.started_at, s.ended_at) else {
            continue;
        };
        let (x1, x2) = (sc.x(a), sc.x(b));
        let _ = writeln!(
            back,
            "<rect x=\"{x1:.1}\" y=\"{TOP:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\" fill-opacity=\"0.07\"/>",
            (x2 - x1).max(1.0),
            bottom - TOP,
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
            TOP - 4.0,
            TOP - 9.0,
            esc(&tick_label(t))
        );
        t += step_ms as i64;
    }
    let _ = writeln!(
        back,
        "<text x=\"8\" y=\"{:.1}\" class=\"tick start\">{} UTC</text>",
        TOP - 9.0,
        esc(&start.format("%Y-%m-%d %H:%M:%S").to_string())
    );
    let mut front = String::new();
    for x in breach_xs {
        let _ = writeln!(
            front,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP:.1}\" y2=\"{bottom:.1}\" class=\"breach\"/>"
        );
    }

    let height = bottom + 4.0;
    let _ = write!(
        h,
        "<div class=\"timeline\">\n<svg viewBox=\"0 0 {SVG_W:.0} {height:.0}\" role=\"img\" \
         aria-label=\"timeline of the run\" font-family=\"system-ui,sans-serif\" font-size=\"11\">\n\
         <defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
         <rect width=\"3\" height=\"6\" fill=\"#cf222e\" fill-opacity=\"0.55\"/></pattern></defs>\n\
         {back}{}{front}</svg>\n</div>\n",
        tl.rows
    );
    h.push_str(LEGEND);
    tl.boxes
}

const LEGEND: &str = "<div class=\"legend\">\
<span><i class=\"sw\" style=\"background:#1a7f37\"></i>passed step / sample / held check</span>\
<span><i class=\"sw\" style=\"background:#bc4c00\"></i>deviated step</span>\
<span><i class=\"sw\" style=\"background:#cf222e\"></i>failed sample / check, error</span>\
<span><i class=\"sw\" style=\"background:#cf222e;opacity:.25\"></i>outage: the probe failing</span>\
<span>▲ recovered: the probe held again</span>\
<span><i class=\"sw\" style=\"background:#0969da\"></i>fault applied → reverted</span>\
<span>✕ kill: instant, nothing to hold or revert</span>\
<span><i class=\"sw\" style=\"background:#cf222e;opacity:.55\"></i>fault not reverted</span>\
<span>◆ took no time</span>\
<span>▼ guardrail breach</span></div>\n";

fn steps_row(tl: &mut Timeline, report: &Report) {
    if report.steps.is_empty() {
        return;
    }
    let y = tl.y;
    tl.row_label(y, "steps", "");
    for s in &report.steps {
        let (Some(a), Some(b)) = (s.started_at, s.ended_at) else {
            continue;
        };
        let (x1, x2) = (tl.sc.x(a), tl.sc.x(b));
        bar(
            &mut tl.rows,
            x1,
            x2,
            y + 2.0,
            ROW_H - 4.0,
            &format!("rx=\"3\" fill=\"{}\"", step_colour(s.status)),
        );
        // Inside the band, cut to fit: the steps table below has the whole name and verdict.
        let room = ((x2 - x1 - 8.0 - 2.0) / 6.3).floor() as usize;
        if room >= 3 {
            let label = clip(&format!("{} {}", s.index + 1, s.name), room);
            tl.text(x1 + 4.0, y, &label, "in", "");
        }
    }
    tl.y += ROW_H;
}

/// Setup and teardown commands; returns how many there were.
fn commands_row(tl: &mut Timeline, report: &Report) -> usize {
    let cmds: Vec<&CommandOutcome> = report.setup.iter().chain(&report.teardown).collect();
    if cmds.is_empty() {
        return 0;
    }
    tl.rule();
    let items: Vec<Item> = cmds
        .iter()
        .map(|c| {
            let end = c.ended_at.unwrap_or(report.ended_at);
            Item {
                x1: tl.sc.x(c.started_at),
                x2: tl.sc.x(end),
                label: if c.ok {
                    c.name.clone()
                } else {
                    format!("{}: FAILED", c.name)
                },
                inside: "in dark",
            }
        })
        .collect();
    tl.lanes("setup / teardown", &items, |svg, i, y| {
        let c = cmds[i];
        let fill = if !c.ok {
            "#cf222e"
        } else if c.background {
            "#8c959f"
        } else {
            "#57606a"
        };
        let opacity = if c.background { "0.3" } else { "0.45" };
        bar(
            svg,
            items[i].x1,
            items[i].x2,
            y + 5.0,
            ROW_H - 10.0,
            &format!("rx=\"2\" fill=\"{fill}\" fill-opacity=\"{opacity}\""),
        );
    });
    cmds.len()
}

/// Before and after checks; one that took no time is a diamond, not a bar.
fn checks_row(tl: &mut Timeline, report: &Report) {
    let mut checks = Vec::new();
    // A step's before-check is often the previous step's after-check: drawn once.
    let mut drawn: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for s in &report.steps {
        for (which, c) in [("before", &s.before), ("after", &s.after)] {
            let Some(c) = c else { continue };
            if drawn.contains(&(c.started_at, c.decided_at)) {
                continue;
            }
            drawn.push((c.started_at, c.decided_at));
            checks.push((which, s.index + 1, c));
        }
    }
    if checks.is_empty() {
        return;
    }
    tl.rule();
    let items: Vec<Item> = checks
        .iter()
        .map(|(which, n, c)| Item {
            x1: tl.sc.x(c.started_at),
            x2: tl.sc.x(c.decided_at),
            label: format!(
                "{which} {n}: {}",
                if c.held { "held" } else { "DID NOT HOLD" }
            ),
            inside: "in dark",
        })
        .collect();
    tl.lanes("hypothesis checks", &items, |svg, i, y| {
        let c = checks[i].2;
        let fill = if c.held { "#1a7f37" } else { "#cf222e" };
        let (x1, x2) = (items[i].x1, items[i].x2);
        if x2 - x1 < 2.0 {
            diamond(svg, x1, y, fill);
        } else {
            bar(
                svg,
                x1,
                x2,
                y + 5.0,
                ROW_H - 10.0,
                &format!("rx=\"2\" fill=\"{fill}\" fill-opacity=\"0.35\" stroke=\"{fill}\""),
            );
        }
    });
}

/// Faults, a group of lanes per host. A kill is an instant (a cross), never a held bar.
fn faults_rows(tl: &mut Timeline, report: &Report) {
    let mut by_host: BTreeMap<&str, Vec<(&StepReport, &FaultReport)>> = BTreeMap::new();
    for s in &report.steps {
        for f in &s.faults {
            by_host.entry(f.host.as_str()).or_default().push((s, f));
        }
    }
    if by_host.is_empty() {
        return;
    }
    tl.rule();
    for (host, faults) in &by_host {
        let faults: Vec<&(&StepReport, &FaultReport)> = faults
            .iter()
            .filter(|(s, f)| f.applied_at.or(s.started_at).is_some())
            .collect();
        let items: Vec<Item> = faults
            .iter()
            .map(|(s, f)| {
                let x1 = tl
                    .sc
                    .x(f.applied_at.or(s.started_at).unwrap_or(report.started_at));
                let x2 = fault_end_x(&tl.sc, report, s, f, x1);
                Item {
                    x1,
                    x2,
                    label: fault_label(report, f),
                    inside: if f.reverted_at.is_none() {
                        "in dark"
                    } else {
                        "in"
                    },
                }
            })
            .collect();
        tl.lanes(&format!("faults on {host}"), &items, |svg, i, y| {
            let f = faults[i].1;
            fault_mark(svg, report, f, items[i].x1, items[i].x2, y);
        });
    }
}

/// What a fault's mark says: its kind, and what became of it.
fn fault_label(report: &Report, f: &FaultReport) -> String {
    let left = report.faults_left.iter().any(|l| l.fault_id == f.fault_id);
    if f.skipped || f.applied_at.is_none() {
        format!("{}: skipped", f.kind)
    } else if is_kill(f) {
        let mut label = format!("{} (instant)", f.kind);
        if !f.affected.is_empty() {
            label.push_str(&format!(" {}", f.affected.join(", ")));
        }
        if f.error.is_some() {
            label.push_str(": error");
        }
        label
    } else if f.reverted_at.is_none() || left {
        format!("{}: NOT REVERTED", f.kind)
    } else if f.error.is_some() || f.verified == Some(false) {
        format!("{}: error", f.kind)
    } else {
        f.kind.clone()
    }
}

/// Where a fault's bar ends: its revert, or the run's end when it was never reverted; a kill is
/// an instant.
fn fault_end_x(sc: &Scale, report: &Report, s: &StepReport, f: &FaultReport, x1: f64) -> f64 {
    match f.reverted_at {
        _ if is_kill(f) => x1,
        Some(r) => sc.x(r),
        None if f.skipped || f.applied_at.is_none() => {
            sc.x(s.ended_at.unwrap_or(report.ended_at)).max(x1 + 4.0)
        }
        None => sc.end(),
    }
}

fn fault_mark(svg: &mut String, report: &Report, f: &FaultReport, x1: f64, x2: f64, y: f64) {
    let cy = y + ROW_H / 2.0;
    if f.skipped || f.applied_at.is_none() {
        bar(
            svg,
            x1,
            x2,
            y + 6.0,
            ROW_H - 12.0,
            "rx=\"2\" fill=\"none\" stroke=\"#8c959f\" stroke-dasharray=\"3 2\"",
        );
        return;
    }
    if is_kill(f) {
        let colour = if f.error.is_some() {
            "#cf222e"
        } else {
            "#0969da"
        };
        let _ = writeln!(
            svg,
            "<path d=\"M{:.1} {:.1}l10 10m0 -10l-10 10\" stroke=\"{colour}\" stroke-width=\"2.5\" fill=\"none\" class=\"kill\"/>",
            x1 - 5.0,
            cy - 5.0,
        );
        return;
    }
    let left = report.faults_left.iter().any(|l| l.fault_id == f.fault_id);
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
    );
}

/// Time to impact, per step: from its first injection to its first failing sample.
fn impact_row(tl: &mut Timeline, report: &Report) {
    let mut items = Vec::new();
    for s in &report.steps {
        let applied = s.faults.iter().filter_map(|f| f.applied_at).min();
        if let (Some(ms), Some(a)) = (s.impact_ms, applied.or(s.started_at)) {
            let hit = a + chrono::Duration::milliseconds(ms as i64);
            items.push(Item {
                x1: tl.sc.x(a),
                x2: tl.sc.x(hit),
                label: format!("impact {}", duration(ms)),
                inside: "note",
            });
        }
    }
    if items.is_empty() {
        return;
    }
    tl.rule();
    let xs: Vec<(f64, f64)> = items.iter().map(|i| (i.x1, i.x2)).collect();
    tl.lanes("time to impact", &items, |svg, i, y| {
        bracket(svg, xs[i].0, xs[i].1, y, "#bc4c00");
    });
}

/// Guardrail breaches; returns where each is, for the dashed line across the whole timeline.
fn breaches_row(tl: &mut Timeline, report: &Report) -> Vec<f64> {
    if report.breaches.is_empty() {
        return Vec::new();
    }
    tl.rule();
    let items: Vec<Item> = report
        .breaches
        .iter()
        .map(|b| {
            let x = tl.sc.x(b.at);
            Item {
                x1: x - 6.0,
                x2: x + 6.0,
                label: format!("{} on {}", b.guardrail, b.host),
                inside: "note",
            }
        })
        .collect();
    tl.lanes("guardrail breaches", &items, |svg, i, y| {
        let x = items[i].x1 + 6.0;
        let cy = y + ROW_H / 2.0;
        let _ = writeln!(
            svg,
            "<path d=\"M{x:.1} {:.1}L{:.1} {:.1}L{:.1} {:.1}Z\" fill=\"#cf222e\"/>",
            cy + 7.0,
            x - 6.0,
            cy - 6.0,
            x + 6.0,
            cy - 6.0,
        );
    });
    items.iter().map(|i| i.x1 + 6.0).collect()
}

/// Each probe's samples, its outages shaded behind them; under a steady-state probe, each
/// outage's length and where the probe held again ("recovered"), from the steps' impact.
fn probe_rows(tl: &mut Timeline, report: &Report) {
    if report.probes.is_empty() {
        return;
    }
    tl.rule();
    for p in &report.probes {
        let impacts: Vec<(&StepReport, &ProbeImpact)> = report
            .steps
            .iter()
            .flat_map(|s| s.impact.iter().map(move |i| (s, i)))
            .filter(|(_, i)| i.probe == p.name && i.host == p.host)
            .collect();
        let sub = match p.role {
            ProbeRole::SteadyState => "",
            ProbeRole::Guardrail => "(guardrail)",
        };
        let name = if p.host.is_empty() || p.host == "local" {
            p.name.clone()
        } else {
            format!("{} · {}", p.name, p.host)
        };
        let y = tl.y;
        tl.row_label(y, &name, sub);
        for (_, i) in &impacts {
            for o in &i.outages {
                let (x1, x2) = (tl.sc.x(o.from), tl.sc.x(o.until));
                let _ = writeln!(
                    tl.rows,
                    "<rect x=\"{x1:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{ROW_H:.1}\" class=\"outage\"/>",
                    (x2 - x1).max(2.0)
                );
            }
        }
        probe_strip(&mut tl.rows, &tl.sc, p, y);
        tl.y += ROW_H;

        let mut items = Vec::new();
        // What each item is: an outage (and whether it ended) or a recovery.
        let mut kinds = Vec::new();
        for (_, i) in &impacts {
            for o in &i.outages {
                let ms = (o.until - o.from).num_milliseconds().max(0) as u64;
                items.push(Item {
                    x1: tl.sc.x(o.from),
                    x2: tl.sc.x(o.until),
                    label: if o.restored {
                        format!("outage {}", duration(ms))
                    } else {
                        format!("outage {}, not restored", duration(ms))
                    },
                    inside: "note",
                });
                kinds.push(Mark::Outage);
            }
            // Restore runs from the first failing sample to where the probe held again.
            if let (Some(ms), Some(first)) = (i.restore_ms, i.outages.first()) {
                let at = first.from + chrono::Duration::milliseconds(ms as i64);
                let x = tl.sc.x(at);
                items.push(Item {
                    x1: x - 5.0,
                    x2: x + 5.0,
                    label: format!(
                        "recovered {} ({} after the first failure)",
                        offset(tl.start, at),
                        duration(ms)
                    ),
                    inside: "note",
                });
                kinds.push(Mark::Recovered);
            }
        }
        if items.is_empty() {
            continue;
        }
        let xs: Vec<(f64, f64)> = items.iter().map(|i| (i.x1, i.x2)).collect();
        let title = if impacts.iter().any(|(s, _)| impact_summary(s).is_some()) {
            "↳ outages, recovery"
        } else {
            "↳ recovery"
        };
        tl.lanes(title, &items, |svg, i, y| match kinds[i] {
            Mark::Outage => bar(
                svg,
                xs[i].0,
                xs[i].1,
                y + 7.0,
                ROW_H - 14.0,
                "fill=\"#cf222e\" fill-opacity=\"0.55\"",
            ),
            Mark::Recovered => {
                let x = xs[i].0 + 5.0;
                let cy = y + ROW_H / 2.0;
                let _ = writeln!(
                    svg,
                    "<path d=\"M{x:.1} {:.1}l6 10h-12z\" fill=\"#1a7f37\" class=\"recovered\"/>",
                    cy - 5.0
                );
            }
        });
    }
}

#[derive(Clone, Copy)]
enum Mark {
    Outage,
    Recovered,
}

/// One probe's samples: a green tick per passing sample and a taller red one per failing
/// sample; above [`MAX_MARKS`] samples, one mark per time bucket, as tall as its share of
/// failures. The failures' reasons are in the tables (first failure, outages).
fn probe_strip(svg: &mut String, sc: &Scale, p: &ProbeReport, y: f64) {
    let base = y + ROW_H - 4.0;
    if p.samples.len() <= MAX_MARKS {
        let w = (p.every_ms as f64 * sc.px_per_ms() * 0.7).clamp(1.2, 8.0);
        for s in &p.samples {
            let x = sc.x(s.at) - w / 2.0;
            let (hgt, class) = if s.ok {
                (9.0, "ok")
            } else {
                (ROW_H - 6.0, "fail")
            };
            let _ = writeln!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{hgt:.0}\" class=\"smp-{class}\"/>",
                base - hgt,
            );
        }
        return;
    }
    // Aggregated: MAX_MARKS / 2 buckets across the timeline.
    let buckets = MAX_MARKS / 2;
    let bw = sc.width / buckets as f64;
    let mut bs = vec![(0usize, 0usize); buckets];
    for s in &p.samples {
        let i = (((sc.x(s.at) - sc.x0) / bw) as usize).min(buckets - 1);
        bs[i].0 += 1;
        if !s.ok {
            bs[i].1 += 1;
        }
    }
    for (i, &(n, failed)) in bs.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let x = sc.x0 + i as f64 * bw;
        let (hgt, class) = if failed == 0 {
            (9.0, "ok")
        } else {
            let share = failed as f64 / n as f64;
            (9.0 + (ROW_H - 15.0) * share, "fail")
        };
        let _ = writeln!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.2}\" height=\"{hgt:.1}\" class=\"smp-{class}\"/>",
            base - hgt,
            bw.max(1.0),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::{Breach, CheckReport};
    use crate::report::test_support::{at, sample_report};

    fn draw(report: &Report) -> (String, Vec<LabelBox>) {
        let mut h = String::new();
        let boxes = timeline(&mut h, report);
        (h, boxes)
    }

    fn assert_no_overlap(boxes: &[LabelBox]) {
        for (i, a) in boxes.iter().enumerate() {
            for b in &boxes[i + 1..] {
                assert!(!a.intersects(b), "{a:?} overlaps {b:?}");
            }
        }
    }

    /// The x of every `<path d="M{x} ...` with `class`.
    fn path_xs(svg: &str, class: &str) -> Vec<f64> {
        svg.lines()
            .filter(|l| l.contains(&format!("class=\"{class}\"")))
            .map(|l| {
                let d = &l[l.find("d=\"M").unwrap() + 4..];
                d[..d.find(' ').unwrap()].parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn outages_are_shaded_and_recovery_is_where_the_probe_held_again() {
        let report = sample_report();
        let (svg, _) = draw(&report);
        // users in step 1, users and checkout in step 2.
        assert_eq!(svg.matches("class=\"outage\"").count(), 3, "{svg}");
        assert!(svg.contains(">outage 1.2s</text>"));
        assert!(svg.contains(">outage 1m03.7s, not restored</text>"));
        assert!(svg.contains(">recovered +16.2s (1.2s after the first failure)</text>"));
        // `checkout` never held again in step 2: no recovery mark for it.
        assert_eq!(svg.matches("class=\"recovered\"").count(), 2);

        // Step 1's users were served again at +16.2s, long before the revert at +42.3s: the
        // mark is where the probe held again, not at the revert.
        let recovered = path_xs(&svg, "recovered")[0];
        let sc = Scale {
            lo: report.started_at,
            span_ms: 125_400.0,
            x0: LABEL_W,
            width: SVG_W - LABEL_W - 16.0,
        };
        assert!((recovered - sc.x(at(16_250))).abs() < 0.2, "{recovered}");
        assert!(recovered < sc.x(at(42_300)) - 100.0);
        // The shading spans the outage: from the first failing sample to the next passing one.
        let shade = format!("<rect x=\"{:.1}\" y=\"", sc.x(at(15_000)));
        let shade = svg
            .lines()
            .find(|l| l.starts_with(&shade) && l.contains("class=\"outage\""))
            .unwrap_or_else(|| panic!("{shade} in {svg}"));
        let width = format!("width=\"{:.1}\"", sc.x(at(16_250)) - sc.x(at(15_000)));
        assert!(shade.contains(&width), "{shade}");
    }

    #[test]
    fn a_kill_is_drawn_as_an_instant() {
        let mut report = sample_report();
        report.steps[0].faults[0].kind = "kill".into();
        let (svg, _) = draw(&report);
        assert_eq!(path_xs(&svg, "kill").len(), 1);
        assert!(svg.contains(">kill (instant) eth0</text>"), "{svg}");
    }

    #[test]
    fn labels_never_overlap() {
        let (_, boxes) = draw(&sample_report());
        assert!(boxes.len() > 20, "{}", boxes.len());
        assert_no_overlap(&boxes);

        // A crowded run: breaches a tenth of a second apart, faults stacked on one host, checks
        // that took no time, outages back to back, marks at the very end.
        let mut report = sample_report();
        for i in 0..12 {
            report.breaches.push(Breach {
                guardrail: format!("guardrail-{i}"),
                host: "local".into(),
                at: at(95_000 + i * 100),
                step: None,
                passed: 1,
                samples: 10,
                reason: String::new(),
            });
        }
        report.breaches.push(Breach {
            guardrail: "at-the-very-end".into(),
            host: "local".into(),
            at: at(125_400),
            step: None,
            passed: 1,
            samples: 10,
            reason: String::new(),
        });
        let extra: Vec<_> = (0..6)
            .map(|i| {
                let mut f = report.steps[0].faults[0].clone();
                f.applied_at = Some(at(12_300 + i * 500));
                f.kind = if i % 2 == 0 { "kill" } else { "latency" }.into();
                f
            })
            .collect();
        report.steps[0].faults.extend(extra);
        let zero = |ms| CheckReport {
            held: true,
            started_at: at(ms),
            decided_at: at(ms),
            reason: String::new(),
            probes: Vec::new(),
        };
        report.steps[0].before = Some(zero(12_000));
        report.steps[0].after = Some(zero(12_100));
        let users = &mut report.steps[0].impact[0];
        users.outages = (0..8)
            .map(|i| crate::report::model::Outage {
                from: at(15_000 + i * 400),
                until: at(15_200 + i * 400),
                restored: true,
            })
            .collect();
        let (svg, boxes) = draw(&report);
        assert_no_overlap(&boxes);
        // Every breach got its label, in lanes of their own.
        for i in 0..12 {
            assert!(svg.contains(&format!(">guardrail-{i} on local</text>")));
        }
        assert!(svg.contains(">at-the-very-end on local</text>"));
        assert!(svg.contains(">before 1: held</text>") && svg.contains(">after 1: held</text>"));
        assert_eq!(svg.matches(">kill (instant) eth0</text>").count(), 3);
    }

    #[test]
    fn lanes_keep_items_apart() {
        let item = |x1: f64, x2: f64, label: &str| Item {
            x1,
            x2,
            label: label.into(),
            inside: "in",
        };
        let (placed, lanes) = lay_out(&[
            item(300.0, 600.0, "a long bar"),
            item(310.0, 310.0, "an instant inside it"),
            item(700.0, 700.0, "far away"),
            item(SVG_W - 20.0, SVG_W - 20.0, "at the right edge"),
        ]);
        assert_eq!(lanes, 2);
        // The label fits inside the long bar; the instant needs a lane of its own.
        assert_eq!(
            (placed[0].lane, placed[0].label_x, placed[0].class),
            (0, 304.0, "in")
        );
        assert_eq!(placed[1].lane, 1);
        assert_eq!(placed[2].lane, 0);
        // No room after it: the label goes before the mark.
        assert!(placed[3].label_x + text_w("at the right edge") < SVG_W - 20.0);
    }
}
