//! `report.junit.xml`: the run as test results for CI pipelines. One test suite named after the
//! scenario; per step a `before: STEP` check, the `step: STEP` itself and an `after: STEP` check;
//! faults left in place are an error test case of their own. A run that failed without any
//! failing step or check (setup, preflight, teardown) gets a `run` test case with the reason, so
//! that the results are never green when the verdict is not.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::model::{CheckReport, Report, StepReport, StepStatus, Verdict};

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
        cases.push(Case {
            name: "run".into(),
            time_s: report.duration_ms as f64 / 1000.0,
            outcome: Outcome::Error {
                message: report.reason.clone(),
                kind: report
                    .cause
                    .map(|c| c.as_str())
                    .unwrap_or(report.verdict.as_str()),
                body: format!("verdict: {}\n{}", report.verdict, report.reason),
            },
        });
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
        match &c.outcome {
            Outcome::Passed => x.push_str("/>\n"),
            Outcome::Skipped { message } => {
                let _ = writeln!(
                    x,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    esc(message)
                );
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
                    ">\n      <{tag} message=\"{}\" type=\"{kind}\">{}</{tag}>\n    </testcase>",
                    esc(message),
                    esc(body)
                );
            }
        }
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
        return Case {
            name,
            time_s: 0.0,
            outcome: Outcome::Skipped {
                message: "not checked".into(),
            },
        };
    };
    let time_s = seconds(Some(c.started_at), Some(c.decided_at));
    if c.held {
        return Case {
            name,
            time_s,
            outcome: Outcome::Passed,
        };
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
    Case {
        name,
        time_s,
        outcome: Outcome::Failure {
            message,
            kind: "hypothesis",
            body,
        },
    }
}

fn step_case(step: &StepReport) -> Case {
    let name = format!("step: {}", step.name);
    let time_s = seconds(step.started_at, step.ended_at);
    let mut body = String::new();
    for f in &step.faults {
        let _ = write!(body, "{} on {}: {}", f.kind, f.host, f.fault);
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
    let outcome = match step.status {
        StepStatus::Passed => Outcome::Passed,
        StepStatus::Skipped => Outcome::Skipped {
            message: "not run".into(),
        },
        StepStatus::Deviated => {
            let message = [step.after.as_ref(), step.before.as_ref()]
                .into_iter()
                .flatten()
                .find(|c| !c.held)
                .map(|c| c.reason.clone())
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "the hypothesis did not hold within recover_within".into());
            if let Some(ms) = step.impact_ms {
                let _ = writeln!(body, "time to impact: {ms} ms");
            }
            if step.recovery_ms.is_none() {
                body.push_str("did not recover\n");
            }
            Outcome::Failure {
                message,
                kind: "deviated",
                body,
            }
        }
        StepStatus::Error | StepStatus::Aborted => {
            let aborted = step.status == StepStatus::Aborted;
            let message = if fault_errors.is_empty() {
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
    Case {
        name,
        time_s,
        outcome,
    }
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
    Case {
        name: "faults left in place".into(),
        time_s: 0.0,
        outcome: Outcome::Error {
            message: format!("{n} fault(s) may still be in place; run `chaosctl revert --all`"),
            kind: "faults_left",
            body,
        },
    }
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
