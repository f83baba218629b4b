//! `report.junit.xml`: the run as test results for CI pipelines. One test suite named after the
//! scenario; per step a `before: STEP` check, the `step: STEP` itself and an `after: STEP` check;
//! faults left in place are an error test case of their own. A run that failed without any
//! failing step or check (setup, preflight, teardown) gets a `run` test case with the reason, so
//! that the results are never green when the verdict is not.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::model::{CheckReport, Report, StepReport, StepStatus, Verdict};
use super::summary::{IMPACT_COLUMNS, impact_cells, misses, objectives_text, status_with_impact};

enum Outcome {
    Passed,
    Failure {
        message: String,
        kind: &'static str,
        body: String,
    },
    Error {
        message: String,
        kind: &'static str,
        body: String,
    },
    Skipped {
        message: String,
    },
}

struct Case {
    name: String,
    time_s: f64,
    outcome: Outcome,
    /// Figures a CI can chart: a step's impact per probe and host.
    properties: Vec<(String, String)>,
    /// What a person reads beside the outcome: a step's status with its impact.
    system_out: String,
}

impl Case {
    fn new(name: String, time_s: f64, outcome: Outcome) -> Case {
        Case {
            name,
            time_s,
            outcome,
            properties: Vec::new(),
            system_out: String::new(),
        }
    }
}

/// Renders the report as JUnit XML.
pub fn render(report: &Report) -> String {
    let mut cases = Vec::new();
    if !report.faults_left.is_empty() {
        cases.push(faults_left_case(report));
    }
    for step in &report.steps {
        cases.push(check_case("before", step, step.before.as_ref()));
        cases.push(step_case(step));
        cases.push(check_case("after", step, step.after.as_ref()));
    }
    let failed = |c: &Case| matches!(c.outcome, Outcome::Failure { .. } | Outcome::Error { .. });
    if report.verdict != Verdict::Passed && !cases.iter().any(failed) {
        cases.push(Case::new(
            "run".into(),
            report.duration_ms as f64 / 1000.0,
            Outcome::Error {
                message: report.reason.clone(),
                kind: report
                    .cause
                    .map(|c| c.as_str())
                    .unwrap_or(report.verdict.as_str()),
                body: format!("verdict: {}\n{}", report.verdict, report.reason),
            },
        ));
    }

    let count = |f: fn(&Outcome) -> bool| cases.iter().filter(|c| f(&c.outcome)).count();
    let failures = count(|o| matches!(o, Outcome::Failure { .. }));
    let errors = count(|o| matches!(o, Outcome::Error { .. }));
    let skipped = count(|o| matches!(o, Outcome::Skipped { .. }));
    let time = format!("{:.3}", report.duration_ms as f64 / 1000.0);
    let suite = esc(&report.scenario.name);

    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"chaosctl\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time}\">",
        cases.len()
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" \
         timestamp=\"{}\" time=\"{time}\" hostname=\"{}\">",
        cases.len(),
        report.started_at.format("%Y-%m-%dT%H:%M:%S"),
        esc(&report.host),
    );
    x.push_str("    <properties>\n");
    let mut props = vec![
        ("run_id", report.run_id.clone()),
        ("verdict", report.verdict.to_string()),
        (
            "cause",
            report.cause.map(|c| c.to_string()).unwrap_or_default(),
        ),
        ("seed", report.seed.clone()),
        ("exit_code", report.exit_code().to_string()),
        ("dry_run", report.dry_run.to_string()),
        ("scenario_sha256", report.scenario.sha256.clone()),
        ("user", report.user.clone()),
    ];
    props.retain(|(_, v)| !v.is_empty());
    for (k, v) in props {
        let _ = writeln!(x, "      <property name=\"{k}\" value=\"{}\"/>", esc(&v));
    }
    for (k, v) in &report.labels {
        let _ = writeln!(
            x,
            "      <property name=\"label.{}\" value=\"{}\"/>",
            esc(k),
            esc(v)
        );
    }
    x.push_str("    </properties>\n");

    for c in &cases {
        let _ = write!(
            x,
            "    <testcase name=\"{}\" classname=\"{suite}\" time=\"{:.3}\"",
            esc(&c.name),
            c.time_s
        );
        if matches!(c.outcome, Outcome::Passed)
            && c.properties.is_empty()
            && c.system_out.is_empty()
        {
            x.push_str("/>\n");
            continue;
        }
        x.push_str(">\n");
        if !c.properties.is_empty() {
            x.push_str("      <properties>\n");
            for (k, v) in &c.properties {
                let _ = writeln!(
                    x,
                    "        <property name=\"{}\" value=\"{}\"/>",
                    esc(k),
                    esc(v)
                );
            }
            x.push_str("      </properties>\n");
        }
        match &c.outcome {
            Outcome::Passed => {}
            Outcome::Skipped { message } => {
                let _ = writeln!(x, "      <skipped message=\"{}\"/>", esc(message));
            }
            Outcome::Failure {
                message,
                kind,
                body,
            }
            | Outcome::Error {
                message,
                kind,
                body,
            } => {
                let tag = if matches!(c.outcome, Outcome::Failure { .. }) {
                    "failure"
                } else {
                    "error"
                };
                let _ = writeln!(
                    x,
                    "      <{tag} message=\"{}\" type=\"{kind}\">{}</{tag}>",
                    esc(message),
                    esc(body)
                );
            }
        }
        if !c.system_out.is_empty() {
            let _ = writeln!(x, "      <system-out>{}</system-out>", esc(&c.system_out));
        }
        x.push_str("    </testcase>\n");
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

fn seconds(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> f64 {
    match (from, to) {
        (Some(a), Some(b)) if b >= a => (b - a).num_milliseconds() as f64 / 1000.0,
        _ => 0.0,
    }
}

fn check_case(which: &str, step: &StepReport, check: Option<&CheckReport>) -> Case {
    let name = format!("{which}: {}", step.name);
    let Some(c) = check else {
        return Case::new(
            name,
            0.0,
            Outcome::Skipped {
                message: "not checked".into(),
            },
        );
    };
    let time_s = seconds(Some(c.started_at), Some(c.decided_at));
    if c.held {
        return Case::new(name, time_s, Outcome::Passed);
    }
    let mut body = format!("{}\n", c.reason);
    for p in &c.probes {
        let _ = writeln!(
            body,
            "{} on {}: {}/{} samples passed{}",
            p.probe,
            p.host,
            p.passed,
            p.samples,
            if p.held { "" } else { " (did not hold)" }
        );
    }
    let message = if c.reason.is_empty() {
        "the hypothesis did not hold".into()
    } else {
        c.reason.clone()
    };
    Case::new(
        name,
        time_s,
        Outcome::Failure {
            message,
            kind: "hypothesis",
            body,
        },
    )
}

fn step_case(step: &StepReport) -> Case {
    let name = format!("step: {}", step.name);
    let time_s = seconds(step.started_at, step.ended_at);
    let mut body = String::new();
    for f in &step.faults {
        let _ = write!(body, "{} on {}: {}", f.kind, f.host, f.fault);
        if let Some(mechanism) = &f.mechanism {
            let _ = write!(body, " — by {mechanism}");
        }
        if !f.detail.is_empty() {
            let _ = write!(body, " — {}", f.detail);
        }
        if let Some(e) = &f.error {
            let _ = write!(body, " — error: {e}");
        }
        body.push('\n');
    }
    let fault_errors: Vec<String> = step
        .faults
        .iter()
        .filter_map(|f| {
            f.error
                .as_ref()
                .map(|e| format!("{} on {}: {e}", f.kind, f.host))
        })
        .collect();
    for a in &step.actions {
        let _ = writeln!(body, "action `{}` on {}: {}", a.command, a.host, a.detail);
    }
    // An action that failed, and a manual step's answer, are what a CI's one-line view should
    // say when they are why the step ended.
    let action_errors: Vec<String> = step
        .actions
        .iter()
        .filter(|a| !a.ok && !a.skipped)
        .map(|a| format!("action `{}` on {}: {}", a.command, a.host, a.detail))
        .collect();
    let manual_end = step.manual.as_ref().and_then(|m| {
        let by =
            m.by.as_ref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default();
        let why = m
            .reason
            .as_ref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        match m.answer.as_str() {
            "refused" => Some(format!("refused{by}{why}")),
            "timed_out" => Some(format!("no answer to `{}` in time", m.prompt)),
            _ => None,
        }
    });
    let outcome = match step.status {
        StepStatus::Passed => Outcome::Passed,
        StepStatus::Skipped => Outcome::Skipped {
            message: "not run".into(),
        },
        StepStatus::Deviated => {
            let failed_check = [step.after.as_ref(), step.before.as_ref()]
                .into_iter()
                .flatten()
                .find(|c| !c.held)
                .map(|c| c.reason.clone())
                .filter(|r| !r.is_empty());
            // A miss is named in the message itself, beside a failed check when there was one
            // too, so that a CI's one-line view says which objective and where.
            let missed = misses(step);
            let kind = if missed.is_empty() || failed_check.is_some() {
                "deviated"
            } else {
                "objective"
            };
            let message = match (failed_check, missed.is_empty()) {
                (None, true) if manual_end.is_some() => manual_end.clone().unwrap_or_default(),
                (Some(check), true) => check,
                (Some(check), false) => format!("{check}; missed {}", missed.join("; ")),
                (None, false) => format!("missed {}", missed.join("; ")),
                (None, true) => "the hypothesis did not hold within recover_within".into(),
            };
            if let Some(ms) = step.impact_ms {
                let _ = writeln!(body, "time to impact: {ms} ms");
            }
            if step.recovery_ms.is_none() {
                body.push_str("did not recover\n");
            }
            Outcome::Failure {
                message,
                kind,
                body,
            }
        }
        StepStatus::Error | StepStatus::Aborted => {
            let aborted = step.status == StepStatus::Aborted;
            let message = if fault_errors.is_empty() && !action_errors.is_empty() {
                action_errors.join("; ")
            } else if let (true, Some(end)) = (fault_errors.is_empty(), &manual_end) {
                end.clone()
            } else if fault_errors.is_empty() {
                if aborted {
                    "the step was aborted".into()
                } else {
                    "the step failed".into()
                }
            } else {
                fault_errors.join("; ")
            };
            Outcome::Error {
                message,
                kind: if aborted { "aborted" } else { "error" },
                body,
            }
        }
    };
    let mut case = Case::new(name, time_s, outcome);
    case.properties = impact_properties(step);
    case.properties.extend(fault_properties(step));
    case.system_out = impact_text(step);
    case
}

/// `impact.PROBE.HOST.FIGURE` for each probe and host of the step, then its objectives.
/// Each applied fault's mechanism and what its agent read back (`fault.HOST.FAULT_ID.…`).
fn fault_properties(step: &StepReport) -> Vec<(String, String)> {
    let mut props = Vec::new();
    for f in step.faults.iter().filter(|f| f.applied_at.is_some()) {
        let key = |what: &str| format!("fault.{}.{}.{what}", f.host, f.fault_id);
        if let Some(mechanism) = &f.mechanism {
            props.push((key("mechanism"), mechanism.clone()));
        }
        if let Some(verified) = f.verified {
            props.push((key("verified"), verified.to_string()));
        }
        if !f.detail.is_empty() {
            props.push((key("measured"), f.detail.clone()));
        }
    }
    props
}

fn impact_properties(step: &StepReport) -> Vec<(String, String)> {
    let mut props = vec![("status".to_string(), status_with_impact(step))];
    for i in &step.impact {
        let unit = i.counts.as_str();
        let key = |figure: &str| format!("impact.{}.{}.{figure}", i.probe, i.host);
        props.push((key(&format!("failed_{unit}")), i.failed.to_string()));
        props.push((key(&format!("taken_{unit}")), i.taken.to_string()));
        props.push((key("error_ms"), i.error_ms.to_string()));
        props.push((key("longest_outage_ms"), i.longest_outage_ms.to_string()));
        props.push((key("restored"), i.restored.to_string()));
        if let Some(ms) = i.impact_ms {
            props.push((key("impact_ms"), ms.to_string()));
        }
        if let Some(ms) = i.restore_ms {
            props.push((key("restore_ms"), ms.to_string()));
        }
        if let Some(load) = &i.load {
            for (figure, v) in [("p50_ms", load.p50_ms), ("p99_ms", load.p99_ms)] {
                if let Some(v) = v {
                    props.push((key(figure), v.to_string()));
                }
            }
        }
    }
    if let Some(o) = &step.objectives {
        props.push(("objectives".to_string(), objectives_text(o)));
        props.push(("objectives.missed".to_string(), o.misses.len().to_string()));
    }
    props
}

/// The step's status with its impact, a line per probe and host, and the objectives with their
/// misses: the same figures as the properties, for a person.
fn impact_text(step: &StepReport) -> String {
    let mut text = format!("{}\n", status_with_impact(step));
    for i in &step.impact {
        let cells = impact_cells(i);
        let line: Vec<String> = IMPACT_COLUMNS
            .iter()
            .zip(&cells)
            .skip(2)
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(text, "{} on {}: {}", i.probe, i.host, line.join(", "));
    }
    if let Some(o) = &step.objectives {
        let _ = writeln!(text, "objectives: {}", objectives_text(o));
        for miss in misses(step) {
            let _ = writeln!(text, "missed {miss}");
        }
    }
    text
}

fn faults_left_case(report: &Report) -> Case {
    let n = report.faults_left.len();
    let mut body = String::new();
    for f in &report.faults_left {
        let _ = writeln!(
            body,
            "{} on {} ({}): {} — {}",
            f.kind, f.host, f.fault_id, f.fault, f.reason
        );
    }
    body.push_str("run `chaosctl revert --all` and check each host\n");
    Case::new(
        "faults left in place".into(),
        0.0,
        Outcome::Error {
            message: format!("{n} fault(s) may still be in place; run `chaosctl revert --all`"),
            kind: "faults_left",
            body,
        },
    )
}

/// Escapes text for XML attribute values and element content. Characters XML 1.0 cannot carry at
/// all (most C0 controls) become U+FFFD.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_support::sample_report;

    /// A rough well-formedness check: tags balance, attribute values carry no raw `<&"`, and
    /// every `&` starts a known entity.
    fn assert_well_formed(xml: &str) {
        let body = xml
            .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
            .expect("declaration");
        let mut stack: Vec<String> = Vec::new();
        let mut rest = body;
        while let Some(lt) = rest.find('<') {
            let text = &rest[..lt];
            assert!(!text.contains('>'), "raw > in text: {text}");
            check_entities(text);
            let gt = rest[lt..].find('>').expect("unclosed tag") + lt;
            let tag = &rest[lt + 1..gt];
            assert!(!tag.contains('<'), "raw < in tag: {tag}");
            // Attribute values: between quotes, no raw `<` or `&` outside entities.
            for (i, part) in tag.split('"').enumerate() {
                if i % 2 == 1 {
                    check_entities(part);
                }
            }
            assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes: {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap().to_string());
            }
            rest = &rest[gt + 1..];
        }
        assert!(rest.trim().is_empty());
        assert!(stack.is_empty(), "unclosed: {stack:?}");
    }

    fn check_entities(s: &str) {
        for (i, _) in s.match_indices('&') {
            let ent = &s[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| ent.starts_with(e)),
                "bad entity at {ent}"
            );
        }
    }

    fn attr<'a>(xml: &'a str, tag: &str, name: &str) -> &'a str {
        let start = xml.find(&format!("<{tag} ")).unwrap();
        let t = &xml[start..start + xml[start..].find('>').unwrap()];
        let a = t.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        &t[a..a + t[a..].find('"').unwrap()]
    }

    #[test]
    fn well_formed_with_the_right_counts() {
        let xml = render(&sample_report());
        assert_well_formed(&xml);
        // 2 steps × (before, step, after) + faults left.
        assert_eq!(xml.matches("<testcase ").count(), 7, "{xml}");
        assert_eq!(attr(&xml, "testsuite", "tests"), "7");
        // The deviated step and its after-check.
        assert_eq!(attr(&xml, "testsuite", "failures"), "2");
        assert_eq!(attr(&xml, "testsuite", "errors"), "1");
        assert_eq!(attr(&xml, "testsuite", "skipped"), "0");
        assert_eq!(attr(&xml, "testsuite", "name"), "checkout-failover");
        assert_eq!(attr(&xml, "testsuite", "timestamp"), "2025-03-14T09:30:00");
        assert_eq!(attr(&xml, "testsuite", "time"), "125.400");
        assert_eq!(xml.matches("<failure ").count(), 2);
        assert_eq!(xml.matches("<error ").count(), 1);

        assert!(
            xml.contains("name=\"step: slow &lt;db&gt; &amp; &quot;cache&quot;\""),
            "{xml}"
        );
        assert!(xml.contains("name=\"after: slow &lt;db&gt; &amp; &quot;cache&quot;\""));
        assert!(xml.contains(
            "<testcase name=\"before: kill-api\" classname=\"checkout-failover\" time=\"10.000\"/>"
        ));
        assert!(xml.contains("<testcase name=\"faults left in place\""));
        assert!(xml.contains("<property name=\"run_id\" value=\"20250314T093000Z-7f3a9c\"/>"));
        assert!(xml.contains("<property name=\"verdict\" value=\"deviated\"/>"));
        assert!(xml.contains("<property name=\"seed\" value=\"18446744073709551615\"/>"));
        assert!(xml.contains("<property name=\"label.ticket\" value=\"GD-12|a\"/>"));
    }

    #[test]
    fn step_cases_carry_the_impact_and_name_objective_misses() {
        let xml = render(&sample_report());
        assert_well_formed(&xml);
        // The first step passed while 26 of 960 requests failed: green, but it says so.
        let step1 = &xml[xml.find("<testcase name=\"step: kill-api\"").unwrap()..];
        let step1 = &step1[..step1.find("</testcase>").unwrap()];
        for needle in [
            "<property name=\"status\" value=\"passed, 26 of 960 requests failed, longest outage 1.2 s (`users` on local)\"/>",
            "<property name=\"impact.users.local.failed_requests\" value=\"26\"/>",
            "<property name=\"impact.users.local.taken_requests\" value=\"960\"/>",
            "<property name=\"impact.users.local.longest_outage_ms\" value=\"1250\"/>",
            "<property name=\"impact.users.local.restore_ms\" value=\"1250\"/>",
            "<property name=\"impact.users.local.p99_ms\" value=\"5\"/>",
            "<property name=\"impact.checkout.local.failed_samples\" value=\"0\"/>",
            "<system-out>passed, 26 of 960 requests failed",
            "users on local: failed 26 of 960 requests (2.7%), error 1.2 s, longest outage 1.2 s, \
             impact after 2.7 s, restore 1.2 s, requests 960 sent, 934 ok, 26 failed, \
             p50 / p99 5.0 ms / 5.0 ms, statuses 200: 934, 502: 26\n",
        ] {
            assert!(step1.contains(needle), "{needle} in\n{step1}");
        }
        assert!(!step1.contains("<failure"), "{step1}");

        // The second step failed its after-check and missed max_outage: the message names both.
        assert!(
            xml.contains(
                "<failure message=\"did not hold within 20s: 3/10 samples passed; missed \
                 max_outage: `checkout` on local: longest outage 63.7 s, not over, over 10s\" \
                 type=\"deviated\">"
            ),
            "{xml}"
        );
        assert!(xml.contains("objectives: max_outage 10s\nmissed max_outage: `checkout`"));

        // A miss alone is an `objective` failure.
        let mut r = sample_report();
        r.steps[1].after.as_mut().unwrap().held = true;
        let xml = render(&r);
        assert_well_formed(&xml);
        assert!(
            xml.contains(
                "<failure message=\"missed max_outage: `checkout` on local: longest outage 63.7 s, \
                 not over, over 10s\" type=\"objective\">"
            ),
            "{xml}"
        );
    }

    #[test]
    fn skipped_and_error_steps() {
        let mut r = sample_report();
        r.faults_left.clear();
        r.verdict = Verdict::Error;
        r.steps[1].status = StepStatus::Skipped;
        r.steps[1].after = None;
        r.steps[0].status = StepStatus::Error;
        r.steps[0].faults[0].error = Some("apply failed: <no tc>".into());
        let xml = render(&r);
        assert_well_formed(&xml);
        assert_eq!(attr(&xml, "testsuite", "tests"), "6");
        assert_eq!(attr(&xml, "testsuite", "errors"), "1");
        assert_eq!(attr(&xml, "testsuite", "skipped"), "2");
        assert_eq!(attr(&xml, "testsuite", "failures"), "0");
        assert!(xml.contains("apply failed: &lt;no tc&gt;"));
    }

    #[test]
    fn a_failed_action_and_a_refusal_are_the_message() {
        let mut r = sample_report();
        r.steps[0].status = StepStatus::Error;
        r.steps[0].actions = vec![crate::report::model::ActionReport {
            command: "./promote.sh".into(),
            host: "controller".into(),
            skipped: false,
            start_after_ms: 0,
            started_at: None,
            ended_at: None,
            duration_ms: 10,
            exit_code: Some(3),
            ok: false,
            timed_out: false,
            log: "step-1.log".into(),
            detail: "exit 3".into(),
        }];
        r.steps[1].after = None;
        r.steps[1].before = None;
        r.steps[1].objectives = None;
        r.steps[1].manual = Some(crate::report::model::ManualReport {
            prompt: "ok?".into(),
            timeout_ms: 1000,
            answer: "refused".into(),
            by: Some("ana".into()),
            reason: Some("red".into()),
            asked_at: None,
            answered_at: None,
        });
        let xml = render(&r);
        assert_well_formed(&xml);
        assert!(
            xml.contains("message=\"action `./promote.sh` on controller: exit 3\""),
            "{xml}"
        );
        assert!(xml.contains("message=\"refused by ana: red\""), "{xml}");
    }

    #[test]
    fn a_failed_run_is_never_green() {
        let mut r = sample_report();
        r.faults_left.clear();
        r.verdict = Verdict::Error;
        r.cause = Some(crate::report::model::Cause::Setup);
        r.reason = "setup `start-demo` exited with 1".into();
        for s in &mut r.steps {
            s.status = StepStatus::Skipped;
            s.before = None;
            s.after = None;
        }
        let xml = render(&r);
        assert_well_formed(&xml);
        assert_eq!(attr(&xml, "testsuite", "errors"), "1");
        assert!(xml.contains("<testcase name=\"run\""));
        assert!(xml.contains("type=\"setup\""));
    }

    #[test]
    fn escapes() {
        assert_eq!(
            esc("a<b>&\"c'\u{1}"),
            "a&lt;b&gt;&amp;&quot;c&apos;\u{FFFD}"
        );
    }
}
