//! Two runs side by side (`chaosctl diff RUN_A RUN_B`): what each run was, each step's status
//! with its impact, the impact figures per probe and host of both, and a list of what differs.
//!
//! Pure: built from two stored reports, no clock and no IO. The JSON form (`chaos.diff/v1`) is a
//! stable structure like `report.json`: fields are only ever added. Its impact figures are the
//! reports' own [`ProbeImpact`] entries, so the diff words them as every report does
//! ([`super::summary`]).
//!
//! Steps are matched by name, then (the rest) by index: two runs of one scenario line up step by
//! step, and a renamed step of an edited scenario still faces its old self. A step (or a probe of
//! a step) found in one run only is shown as such.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::{Cause, ImpactUnit, ProbeImpact, Report, StepReport, StepStatus, Verdict};
use super::summary::{impact_summary, misses, objectives_text, status_with_impact, status_word};
use crate::engine::impact::seconds;

pub const SCHEMA: &str = "chaos.diff/v1";

/// Two times are listed as different when they differ by at least this much...
pub const NOTABLE_MS: u64 = 500;
/// ...and by at least this share of the longer one: two runs of one scenario never take the same
/// milliseconds, and a list of jitter would hide the differences that matter.
pub const NOTABLE_SHARE: f64 = 0.25;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDiff {
    /// Always [`SCHEMA`].
    pub schema: String,
    pub a: RunSide,
    pub b: RunSide,
    /// Both runs ran the same scenario file (the same sha256).
    pub same_scenario: bool,
    /// Every step of either run: A's in their order, then those found in B only.
    pub steps: Vec<StepDiff>,
    /// What differs, run first, then step by step; empty when nothing notable does.
    pub differences: Vec<Difference>,
}

/// One run, as the diff shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSide {
    pub run_id: String,
    pub scenario: String,
    pub sha256: String,
    pub path: String,
    pub verdict: Verdict,
    pub cause: Option<Cause>,
    pub reason: String,
    pub seed: String,
    /// `--label K=V`: what the team said the run was (`nginx=off`), often what tells two runs of
    /// one file apart.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub faults_left: usize,
    /// `chaosctl run`'s exit code for this run.
    pub exit_code: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepMatch {
    /// The same name in both runs.
    Name,
    /// Different names at the same index (a step renamed, or another scenario).
    Index,
    OnlyA,
    OnlyB,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDiff {
    /// A's name, else B's.
    pub name: String,
    pub matched: StepMatch,
    pub a: Option<StepSide>,
    pub b: Option<StepSide>,
    /// Per steady-state probe and host: A's in their order, then those of B only.
    pub probes: Vec<ProbeDiff>,
}

/// One run's step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSide {
    pub index: usize,
    pub name: String,
    pub status: StepStatus,
    /// The status with what users went through: `passed, 9 of 40 samples failed, longest outage
    /// 1.0 s` ([`status_with_impact`]).
    pub status_text: String,
    /// The impact part of `status_text` alone, `None` when nothing failed.
    pub impact_summary: Option<String>,
    pub hosts: Vec<String>,
    /// Each fault once, as the report words it: `kill SIGKILL to pattern ...`.
    pub faults: Vec<String>,
    pub impact_ms: Option<u64>,
    pub recovery_ms: Option<u64>,
    pub recover_within_ms: u64,
    /// Whether the after-check ran and did not hold (`recovery_ms` is then `None`).
    pub did_not_recover: bool,
    /// `max_outage 3s`, or `None` without objectives.
    pub objectives: Option<String>,
    /// Each objective miss, one line each.
    pub misses: Vec<String>,
}

/// One steady-state probe on one host, in both runs' step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeDiff {
    pub probe: String,
    pub host: String,
    pub a: Option<ProbeImpact>,
    pub b: Option<ProbeImpact>,
}

/// One thing that differs between the runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// What differs: `scenario`, `sha256`, `seed`, `labels`, `verdict`, `cause`, `faults_left`, `step`
    /// (in one run only), `name`, `status`, `hosts`, `recovery`, `objectives` (the limits),
    /// `objective` (the misses), `probe` (in one run only),
    /// `failed`, `longest_outage`, `error`, `impact`, `restore`, `restored`.
    pub what: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// A's value and B's, as people read them (`–` where a run has none).
    pub a: String,
    pub b: String,
    /// The whole difference in one line: ``step `kill`: `demo` on local: failed samples 0 → 9``.
    pub text: String,
}

/// Lines two reports up.
pub fn diff(a: &Report, b: &Report) -> RunDiff {
    let side_a = run_side(a);
    let side_b = run_side(b);
    let mut differences = run_differences(&side_a, &side_b);
    let steps = match_steps(&a.steps, &b.steps);
    let mut step_diffs = Vec::with_capacity(steps.len());
    for (matched, sa, sb) in steps {
        let name = sa.or(sb).map(|s| s.name.clone()).unwrap_or_default();
        let probes = match_probes(sa, sb);
        let step = StepDiff {
            name,
            matched,
            a: sa.map(step_side),
            b: sb.map(step_side),
            probes,
        };
        differences.extend(step_differences(&step));
        step_diffs.push(step);
    }
    RunDiff {
        schema: SCHEMA.into(),
        same_scenario: side_a.sha256 == side_b.sha256,
        a: side_a,
        b: side_b,
        steps: step_diffs,
        differences,
    }
}

fn run_side(r: &Report) -> RunSide {
    RunSide {
        run_id: r.run_id.clone(),
        scenario: r.scenario.name.clone(),
        sha256: r.scenario.sha256.clone(),
        path: r.scenario.path.clone(),
        verdict: r.verdict,
        cause: r.cause,
        reason: r.reason.clone(),
        seed: r.seed.clone(),
        labels: r.labels.clone(),
        dry_run: r.dry_run,
        started_at: r.started_at,
        duration_ms: r.duration_ms,
        faults_left: r.faults_left.len(),
        exit_code: r.exit_code(),
    }
}

fn step_side(s: &StepReport) -> StepSide {
    // One line per fault, not per fault and host: a step's fault reads the same on each host.
    let mut faults: Vec<String> = Vec::new();
    for f in &s.faults {
        if !faults.contains(&f.fault) {
            faults.push(f.fault.clone());
        }
    }
    StepSide {
        index: s.index,
        name: s.name.clone(),
        status: s.status,
        status_text: status_with_impact(s),
        impact_summary: impact_summary(s),
        hosts: s.hosts.clone(),
        faults,
        impact_ms: s.impact_ms,
        recovery_ms: s.recovery_ms,
        recover_within_ms: s.recover_within_ms,
        did_not_recover: s.recovery_ms.is_none() && s.after.as_ref().is_some_and(|c| !c.held),
        objectives: s.objectives.as_ref().map(objectives_text),
        misses: misses(s),
    }
}

type Matched<'r> = (StepMatch, Option<&'r StepReport>, Option<&'r StepReport>);

/// Steps by name first (each step of B used once), then the rest by index.
fn match_steps<'r>(a: &'r [StepReport], b: &'r [StepReport]) -> Vec<Matched<'r>> {
    let mut b_used = vec![false; b.len()];
    let mut pairs: Vec<Option<(StepMatch, usize)>> = vec![None; a.len()];
    for (i, sa) in a.iter().enumerate() {
        if let Some(j) = (0..b.len()).find(|&j| !b_used[j] && b[j].name == sa.name) {
            b_used[j] = true;
            pairs[i] = Some((StepMatch::Name, j));
        }
    }
    for (i, pair) in pairs.iter_mut().enumerate() {
        // A step whose name is in no step of B faces B's step at its index, when that one is
        // left over too.
        if pair.is_none() && i < b.len() && !b_used[i] {
            b_used[i] = true;
            *pair = Some((StepMatch::Index, i));
        }
    }
    let mut out: Vec<Matched<'r>> = a
        .iter()
        .zip(&pairs)
        .map(|(sa, pair)| match pair {
            Some((how, j)) => (how.clone(), Some(sa), Some(&b[*j])),
            None => (StepMatch::OnlyA, Some(sa), None),
        })
        .collect();
    out.extend(
        b.iter()
            .zip(&b_used)
            .filter(|(_, used)| !**used)
            .map(|(sb, _)| (StepMatch::OnlyB, None, Some(sb))),
    );
    out
}

/// Probes by name and host.
fn match_probes(a: Option<&StepReport>, b: Option<&StepReport>) -> Vec<ProbeDiff> {
    let none: &[ProbeImpact] = &[];
    let ia = a.map_or(none, |s| s.impact.as_slice());
    let ib = b.map_or(none, |s| s.impact.as_slice());
    let mut out: Vec<ProbeDiff> = ia
        .iter()
        .map(|pa| ProbeDiff {
            probe: pa.probe.clone(),
            host: pa.host.clone(),
            a: Some(pa.clone()),
            b: ib
                .iter()
                .find(|pb| pb.probe == pa.probe && pb.host == pa.host)
                .cloned(),
        })
        .collect();
    for pb in ib {
        if !ia
            .iter()
            .any(|pa| pa.probe == pb.probe && pa.host == pb.host)
        {
            out.push(ProbeDiff {
                probe: pb.probe.clone(),
                host: pb.host.clone(),
                a: None,
                b: Some(pb.clone()),
            });
        }
    }
    out
}

fn run_differences(a: &RunSide, b: &RunSide) -> Vec<Difference> {
    let run = |what: &str, va: String, vb: String, text: String| Difference {
        what: what.into(),
        step: None,
        probe: None,
        host: None,
        a: va,
        b: vb,
        text,
    };
    let cause = |c: Option<Cause>| c.map_or("–".to_string(), |c| c.as_str().to_string());
    let short = |s: &str| s.chars().take(12).collect::<String>();
    let mut out = Vec::new();
    for (what, va, vb) in [
        ("scenario", a.scenario.clone(), b.scenario.clone()),
        ("sha256", a.sha256.clone(), b.sha256.clone()),
        ("seed", a.seed.clone(), b.seed.clone()),
        ("labels", labels_text(&a.labels), labels_text(&b.labels)),
        ("verdict", a.verdict.to_string(), b.verdict.to_string()),
        ("cause", cause(a.cause), cause(b.cause)),
        (
            "faults_left",
            a.faults_left.to_string(),
            b.faults_left.to_string(),
        ),
    ] {
        if va == vb {
            continue;
        }
        let text = match what {
            "sha256" => format!(
                "scenario file: sha256 {} → {} (not the same file)",
                short(&va),
                short(&vb)
            ),
            "faults_left" => format!("faults left in place: {va} → {vb}"),
            _ => format!("{what}: {va} → {vb}"),
        };
        out.push(run(what, va, vb, text));
    }
    out
}

/// `nginx=off, team=sre`, or `–`.
pub fn labels_text(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "–".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn step_differences(step: &StepDiff) -> Vec<Difference> {
    let mut out = Vec::new();
    let label = format!("step `{}`", step.name);
    let mut push = |what: &str, probe: Option<&ProbeDiff>, a: String, b: String, text: String| {
        out.push(Difference {
            what: what.into(),
            step: Some(step.name.clone()),
            probe: probe.map(|p| p.probe.clone()),
            host: probe.map(|p| p.host.clone()),
            a,
            b,
            text,
        });
    };
    let (sa, sb) = match (&step.a, &step.b) {
        (Some(sa), Some(sb)) => (sa, sb),
        (Some(sa), None) => {
            let text = format!("{label}: in run A only ({})", sa.status_text);
            push("step", None, sa.status_text.clone(), "–".into(), text);
            return out;
        }
        (None, Some(sb)) => {
            let text = format!("{label}: in run B only ({})", sb.status_text);
            push("step", None, "–".into(), sb.status_text.clone(), text);
            return out;
        }
        (None, None) => return out,
    };
    if step.matched == StepMatch::Index {
        let text = format!(
            "step {}: named `{}` in A, `{}` in B",
            sa.index + 1,
            sa.name,
            sb.name
        );
        push("name", None, sa.name.clone(), sb.name.clone(), text);
    }
    if sa.status != sb.status {
        let text = format!(
            "{label}: {} → {}",
            status_word(sa.status),
            status_word(sb.status)
        );
        push(
            "status",
            None,
            sa.status_text.clone(),
            sb.status_text.clone(),
            text,
        );
    }
    if sa.hosts != sb.hosts {
        let (ha, hb) = (sa.hosts.join(", "), sb.hosts.join(", "));
        let text = format!("{label}: hosts [{ha}] → [{hb}]");
        push("hosts", None, ha, hb, text);
    }
    let recovery = |s: &StepSide| match s.recovery_ms {
        Some(ms) => seconds(ms),
        None if s.did_not_recover => "did not recover".into(),
        None => "–".into(),
    };
    let recovered_differs = sa.did_not_recover != sb.did_not_recover;
    if recovered_differs || notable(sa.recovery_ms, sb.recovery_ms) {
        let (ra, rb) = (recovery(sa), recovery(sb));
        let text = format!("{label}: recovery {ra} → {rb}");
        push("recovery", None, ra, rb, text);
    }
    if sa.objectives != sb.objectives {
        let limits = |s: &StepSide| s.objectives.clone().unwrap_or_else(|| "none".into());
        let (oa, ob) = (limits(sa), limits(sb));
        let text = format!("{label}: objectives {oa} → {ob}");
        push("objectives", None, oa, ob, text);
    }
    let missed = |s: &StepSide| {
        if s.misses.is_empty() {
            "none missed".to_string()
        } else {
            s.misses.join("; ")
        }
    };
    if sa.misses != sb.misses {
        let (ma, mb) = (missed(sa), missed(sb));
        let text = format!("{label}: objectives: {ma} → {mb}");
        push("objective", None, ma, mb, text);
    }
    for p in &step.probes {
        let on = format!("{label}: `{}` on {}", p.probe, p.host);
        let (pa, pb) = match (&p.a, &p.b) {
            (Some(pa), Some(pb)) => (pa, pb),
            (Some(_), None) => {
                push(
                    "probe",
                    Some(p),
                    "measured".into(),
                    "–".into(),
                    format!("{on}: in run A only"),
                );
                continue;
            }
            (None, Some(_)) => {
                push(
                    "probe",
                    Some(p),
                    "–".into(),
                    "measured".into(),
                    format!("{on}: in run B only"),
                );
                continue;
            }
            (None, None) => continue,
        };
        if pa.failed != pb.failed {
            let unit = |i: &ProbeImpact| match i.counts {
                ImpactUnit::Samples => "samples",
                ImpactUnit::Requests => "requests",
            };
            let count = |i: &ProbeImpact| format!("{} of {}", i.failed, i.taken);
            let what = if pa.counts == pb.counts {
                format!("failed {} {} → {}", unit(pa), pa.failed, pb.failed)
            } else {
                format!(
                    "failed {} {} → {} {}",
                    unit(pa),
                    pa.failed,
                    unit(pb),
                    pb.failed
                )
            };
            push(
                "failed",
                Some(p),
                count(pa),
                count(pb),
                format!("{on}: {what}"),
            );
        }
        let ms_or_none = |ms: u64| {
            if ms == 0 {
                "0".to_string()
            } else {
                seconds(ms)
            }
        };
        for (what, words, va, vb) in [
            (
                "longest_outage",
                "longest outage",
                pa.longest_outage_ms,
                pb.longest_outage_ms,
            ),
            ("error", "error time", pa.error_ms, pb.error_ms),
        ] {
            if notable(Some(va).filter(|&v| v > 0), Some(vb).filter(|&v| v > 0)) {
                let (ta, tb) = (ms_or_none(va), ms_or_none(vb));
                let text = format!("{on}: {words} {ta} → {tb}");
                push(what, Some(p), ta, tb, text);
            }
        }
        if pa.restored != pb.restored {
            let word = |r: bool| if r { "restored" } else { "not restored" }.to_string();
            let text = format!("{on}: {} → {}", word(pa.restored), word(pb.restored));
            push(
                "restored",
                Some(p),
                word(pa.restored),
                word(pb.restored),
                text,
            );
        }
        // When only one run failed, `failed` says so already; these compare two failures.
        if let (Some(ia), Some(ib)) = (pa.impact_ms, pb.impact_ms)
            && notable(Some(ia), Some(ib))
        {
            let (ta, tb) = (seconds(ia), seconds(ib));
            let text = format!("{on}: first failure after {ta} → {tb}");
            push("impact", Some(p), ta, tb, text);
        }
        if let (Some(ra), Some(rb)) = (pa.restore_ms, pb.restore_ms)
            && notable(Some(ra), Some(rb))
        {
            let (ta, tb) = (seconds(ra), seconds(rb));
            let text = format!("{on}: restore {ta} → {tb}");
            push("restore", Some(p), ta, tb, text);
        }
    }
    out
}

/// Whether two optional times differ enough to list: one present and the other not, or apart by
/// at least [`NOTABLE_MS`] and [`NOTABLE_SHARE`] of the longer.
fn notable(a: Option<u64>, b: Option<u64>) -> bool {
    match (a, b) {
        (None, None) => false,
        (Some(_), None) | (None, Some(_)) => true,
        (Some(a), Some(b)) => {
            let apart = a.abs_diff(b);
            apart >= NOTABLE_MS && apart as f64 >= NOTABLE_SHARE * a.max(b) as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_support::sample_report;

    fn texts(d: &RunDiff) -> Vec<&str> {
        d.differences.iter().map(|d| d.text.as_str()).collect()
    }

    #[test]
    fn a_run_against_itself_differs_in_nothing() {
        let r = sample_report();
        let d = diff(&r, &r);
        assert!(d.same_scenario);
        assert_eq!(texts(&d), Vec::<&str>::new());
        assert_eq!(d.steps.len(), 2);
        assert!(d.steps.iter().all(|s| s.matched == StepMatch::Name));
        assert_eq!(d.steps[0].probes.len(), 2);
        assert!(
            d.steps[0]
                .probes
                .iter()
                .all(|p| p.a == p.b && p.a.is_some())
        );
        let a = d.steps[0].a.as_ref().unwrap();
        assert_eq!(
            a.status_text,
            "passed, 26 of 960 requests failed, longest outage 1.2 s (`users` on local)"
        );
        assert_eq!(a.faults, ["delay eth0 by 200ms ± 20ms"]);
        let b = d.steps[1].b.as_ref().unwrap();
        assert!(b.did_not_recover);
        assert_eq!(b.objectives.as_deref(), Some("max_outage 10s"));
        assert_eq!(b.misses.len(), 1);
    }

    /// Run B: the fix worked. Step 1 served every request, step 2 recovered, nothing was left.
    fn fixed() -> Report {
        let mut b = sample_report();
        b.run_id = "20250315T093000Z-0b0b0b".into();
        b.seed = "7".into();
        b.labels.insert("fix".into(), "retries".into());
        b.scenario.sha256 = "cd".repeat(32);
        b.verdict = Verdict::Passed;
        b.cause = None;
        b.faults_left.clear();
        let users = &mut b.steps[0].impact[0];
        users.failed = 0;
        users.error_ms = 0;
        users.longest_outage_ms = 0;
        users.impact_ms = None;
        users.restore_ms = None;
        users.outages.clear();
        let s2 = &mut b.steps[1];
        s2.status = StepStatus::Passed;
        s2.recovery_ms = Some(2_000);
        s2.after.as_mut().unwrap().held = true;
        s2.objectives.as_mut().unwrap().misses.clear();
        let checkout = &mut s2.impact[1];
        checkout.failed = 4;
        checkout.longest_outage_ms = 4_000;
        checkout.error_ms = 4_000;
        checkout.restored = true;
        checkout.restore_ms = Some(4_000);
        // Users' figures in step 2 differ by jitter only: not listed.
        s2.impact[0].longest_outage_ms += 300;
        s2.impact[0].impact_ms = Some(1_500);
        b
    }

    #[test]
    fn lists_what_differs_run_first_then_step_by_step() {
        let d = diff(&sample_report(), &fixed());
        assert!(!d.same_scenario);
        assert_eq!(
            texts(&d),
            [
                "scenario file: sha256 abababababab → cdcdcdcdcdcd (not the same file)",
                "seed: 18446744073709551615 → 7",
                "labels: team=payments, ticket=GD-12|a → fix=retries, team=payments, ticket=GD-12|a",
                "verdict: deviated → passed",
                "cause: hypothesis → –",
                "faults left in place: 1 → 0",
                "step `kill-api`: `users` on local: failed requests 26 → 0",
                "step `kill-api`: `users` on local: longest outage 1.2 s → 0",
                "step `kill-api`: `users` on local: error time 1.2 s → 0",
                "step `slow <db> & \"cache\"`: deviated → passed",
                "step `slow <db> & \"cache\"`: recovery did not recover → 2.0 s",
                "step `slow <db> & \"cache\"`: objectives: max_outage: `checkout` on local: \
                 longest outage 63.7 s, not over, over 10s → none missed",
                "step `slow <db> & \"cache\"`: `checkout` on local: failed samples 40 → 4",
                "step `slow <db> & \"cache\"`: `checkout` on local: longest outage 63.7 s → 4.0 s",
                "step `slow <db> & \"cache\"`: `checkout` on local: error time 63.7 s → 4.0 s",
                "step `slow <db> & \"cache\"`: `checkout` on local: not restored → restored",
            ]
        );
        let status = d.differences.iter().find(|x| x.what == "status").unwrap();
        assert_eq!(status.step.as_deref(), Some("slow <db> & \"cache\""));
        assert_eq!(
            status.b,
            "passed, 400 of 1300 requests failed, longest outage 20.3 s \
                              (`users` on local)"
        );
        let failed = d.differences.iter().find(|x| x.what == "failed").unwrap();
        assert_eq!(
            (
                failed.probe.as_deref(),
                failed.host.as_deref(),
                &*failed.a,
                &*failed.b
            ),
            (Some("users"), Some("local"), "26 of 960", "0 of 960")
        );
        // B's side of step 1 reads as a clean pass.
        assert_eq!(d.steps[0].b.as_ref().unwrap().status_text, "passed");
        assert_eq!(d.steps[0].b.as_ref().unwrap().impact_summary, None);
    }

    #[test]
    fn steps_match_by_name_then_by_index() {
        let a = sample_report();
        let mut b = sample_report();
        // B: the steps swapped, the first renamed, and one more at the end.
        b.steps.swap(0, 1);
        b.steps[1].name = "kill-api-2".into();
        let mut extra = b.steps[0].clone();
        extra.name = "fill the disk".into();
        extra.index = 2;
        b.steps.push(extra);
        for (i, s) in b.steps.iter_mut().enumerate() {
            s.index = i;
        }
        let d = diff(&a, &b);
        let shape: Vec<(&str, StepMatch, Option<usize>, Option<usize>)> = d
            .steps
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.matched.clone(),
                    s.a.as_ref().map(|x| x.index),
                    s.b.as_ref().map(|x| x.index),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                // `kill-api` is not in B by name; B's index 0 is taken by name, so it stays
                // alone, and B's renamed step at index 1 has no partner at A's index 1 either.
                ("kill-api", StepMatch::OnlyA, Some(0), None),
                ("slow <db> & \"cache\"", StepMatch::Name, Some(1), Some(0)),
                ("kill-api-2", StepMatch::OnlyB, None, Some(1)),
                ("fill the disk", StepMatch::OnlyB, None, Some(2)),
            ]
        );
        let listed = texts(&d);
        assert!(listed.contains(
            &"step `kill-api`: in run A only (passed, 26 of 960 requests failed, longest outage \
              1.2 s (`users` on local))"
        ));
        assert!(listed.contains(
            &"step `fill the disk`: in run B only (deviated, 40 of 65 \
                                  samples failed, longest outage 63.7 s, not restored \
                                  (`checkout` on local))"
        ));

        // Renamed in place: matched by index, and the new name is a difference.
        let mut b = sample_report();
        b.steps[0].name = "kill one api".into();
        let d = diff(&a, &b);
        assert_eq!(d.steps[0].matched, StepMatch::Index);
        assert_eq!(d.steps[0].name, "kill-api");
        assert_eq!(
            texts(&d),
            ["step 1: named `kill-api` in A, `kill one api` in B"]
        );
    }

    #[test]
    fn probes_of_one_run_only_are_shown_as_such() {
        let a = sample_report();
        let mut b = sample_report();
        b.steps[0].impact.remove(1);
        let mut other = b.steps[0].impact[0].clone();
        other.host = "api-2".into();
        b.steps[0].impact.push(other);
        let d = diff(&a, &b);
        let probes: Vec<(&str, &str, bool, bool)> = d.steps[0]
            .probes
            .iter()
            .map(|p| {
                (
                    p.probe.as_str(),
                    p.host.as_str(),
                    p.a.is_some(),
                    p.b.is_some(),
                )
            })
            .collect();
        assert_eq!(
            probes,
            [
                ("users", "local", true, true),
                ("checkout", "local", true, false),
                ("users", "api-2", false, true),
            ]
        );
        assert_eq!(
            texts(&d),
            [
                "step `kill-api`: `checkout` on local: in run A only",
                "step `kill-api`: `users` on api-2: in run B only",
            ]
        );
    }

    #[test]
    fn times_differ_when_one_is_missing_or_they_are_far_apart() {
        for (a, b, listed) in [
            (None, None, false),
            (Some(0), None, true),
            (None, Some(1_000), true),
            (Some(1_249), Some(1_500), false),   // 251 ms: jitter
            (Some(1_000), Some(1_600), true),    // 600 ms and 37%
            (Some(60_000), Some(60_900), false), // 900 ms, but 1.5%
            (Some(2_000), Some(2_499), false),
            (Some(2_000), Some(2_700), true),
        ] {
            assert_eq!(notable(a, b), listed, "{a:?} vs {b:?}");
            assert_eq!(notable(b, a), listed, "{b:?} vs {a:?}");
        }
    }

    #[test]
    fn the_json_form_is_stable_and_reads_back() {
        let d = diff(&sample_report(), &fixed());
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["schema"], "chaos.diff/v1");
        assert_eq!(json["a"]["verdict"], "deviated");
        assert_eq!(json["b"]["verdict"], "passed");
        assert_eq!(json["a"]["exit_code"], 6);
        assert_eq!(json["same_scenario"], false);
        assert_eq!(json["steps"][0]["matched"], "name");
        assert_eq!(json["steps"][0]["probes"][0]["a"]["failed"], 26);
        assert_eq!(json["steps"][0]["probes"][0]["b"]["failed"], 0);
        assert_eq!(json["differences"][3]["what"], "verdict");
        assert!(json["differences"][3].get("step").is_none());
        assert_eq!(json["b"]["labels"]["fix"], "retries");
        let back: RunDiff = serde_json::from_value(json).unwrap();
        assert_eq!(back, d);
    }
}
