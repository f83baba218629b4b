//! A run's trace, built from its report (pure: no clock, no IO). Every span carries the times the
//! report recorded, so the fault windows line up with the traces of the services they hit:
//!
//! ```text
//! run <scenario>                       started_at .. ended_at; events: breach, fault_left, verdict
//! ├── check before                     started_at .. decided_at; events: probe
//! ├── step <name>                      started_at .. ended_at; events: breach, verdict
//! │   ├── fault <kind> on <host>       applied_at .. reverted_at (one per fault and host)
//! │   └── check after                  started_at .. decided_at; events: probe
//! └── step <name> ...                  (its before-check is the previous after-check)
//! ```
//!
//! Ids are derived from the run id (SHA-256): the trace id of a run can be computed from the run
//! id alone, and exporting the same report twice gives the same spans, which backends merge.

use std::borrow::Cow;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use sha2::{Digest, Sha256};

use crate::report::model::{
    Breach, CheckReport, FaultReport, Report, StepReport, StepStatus, Verdict,
};
use crate::report::summary::status_with_impact;

/// The attribute every span of a run carries.
pub const RUN_ID: &str = "chaos.run_id";

/// The trace id of a run: the first 16 bytes of SHA-256 of its id.
pub fn trace_id(run_id: &str) -> TraceId {
    let digest = Sha256::digest(run_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    TraceId::from_bytes(bytes)
}

/// The id of the span at `path` (`run`, `step/0`, `step/0/fault/1`, ...) in a run.
fn span_id(run_id: &str, path: &str) -> SpanId {
    let digest = Sha256::digest(format!("{run_id}/{path}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    SpanId::from_bytes(bytes)
}

/// Every span of the run's trace, the run's own first.
pub fn spans(report: &Report, scope: &InstrumentationScope) -> Vec<SpanData> {
    let trace = Trace { report, scope };
    let mut out = vec![trace.run()];
    let mut previous_after: Option<&CheckReport> = None;
    for step in &report.steps {
        let step_path = format!("step/{}", step.index);
        // A before-check comes before its step's first injection, so it is the run's child. After
        // the first step it is the previous step's after-check, already a span.
        if let Some(before) = &step.before
            && !previous_after.is_some_and(|after| same_check(after, before))
        {
            out.push(trace.check(before, "before", step, &step_path, "run"));
        }
        previous_after = step.after.as_ref();
        // A step that never started (a dry run, or an earlier step ended the run) has no times.
        let (Some(start), Some(end)) = (step.started_at, step.ended_at) else {
            continue;
        };
        out.push(trace.step(step, &step_path, start, end));
        for (i, fault) in step.faults.iter().enumerate() {
            if fault.skipped {
                continue;
            }
            out.push(trace.fault(fault, i, &step_path, start, end));
        }
        if let Some(after) = &step.after {
            out.push(trace.check(after, "after", step, &step_path, &step_path));
        }
    }
    out
}

/// One span before its ids and the run's attribute are added.
struct Shape {
    /// Where it is in the run (`run`, `step/0`, `step/0/fault/1`): its id comes from it.
    path: String,
    parent: Option<String>,
    name: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    attributes: Vec<KeyValue>,
    events: Vec<Event>,
    status: Status,
}

struct Trace<'a> {
    report: &'a Report,
    scope: &'a InstrumentationScope,
}

impl Trace<'_> {
    fn span(&self, shape: Shape) -> SpanData {
        let Shape {
            path,
            parent,
            name,
            start,
            end,
            mut attributes,
            events,
            status,
        } = shape;
        let run_id = &self.report.run_id;
        attributes.insert(0, KeyValue::new(RUN_ID, run_id.clone()));
        let mut span_events = SpanEvents::default();
        span_events.events = events;
        SpanData {
            span_context: SpanContext::new(
                trace_id(run_id),
                span_id(run_id, &path),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: parent.map_or(SpanId::INVALID, |p| span_id(run_id, &p)),
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Owned(name),
            start_time: time(start),
            // A span never ends before it starts, whatever clock step the report went through.
            end_time: time(end.max(start)),
            attributes,
            dropped_attributes_count: 0,
            events: span_events,
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }

    fn run(&self) -> SpanData {
        let r = self.report;
        let mut attributes = vec![
            KeyValue::new("chaos.scenario", r.scenario.name.clone()),
            KeyValue::new("chaos.scenario.path", r.scenario.path.clone()),
            KeyValue::new("chaos.scenario.sha256", r.scenario.sha256.clone()),
            KeyValue::new("chaos.verdict", r.verdict.as_str()),
            KeyValue::new("chaos.exit_code", i64::from(r.exit_code())),
            KeyValue::new("chaos.reason", r.reason.clone()),
            KeyValue::new("chaos.seed", r.seed.clone()),
            KeyValue::new("chaos.dry_run", r.dry_run),
            KeyValue::new("chaos.user", r.user.clone()),
            KeyValue::new("chaos.controller", r.host.clone()),
            KeyValue::new("chaos.faults_left", r.faults_left.len() as i64),
        ];
        if let Some(cause) = r.cause {
            attributes.push(KeyValue::new("chaos.cause", cause.as_str()));
        }
        for (k, v) in &r.labels {
            attributes.push(KeyValue::new(format!("chaos.label.{k}"), v.clone()));
        }
        // A breach goes on the span of the step it happened in, when that step has one.
        let mut events: Vec<Event> = r
            .breaches
            .iter()
            .filter(|b| self.step_of(b).is_none())
            .map(breach)
            .collect();
        events.extend(r.faults_left.iter().map(|f| {
            Event::new(
                "fault_left",
                time(r.ended_at),
                vec![
                    KeyValue::new("chaos.host", f.host.clone()),
                    KeyValue::new("chaos.fault.id", f.fault_id.clone()),
                    KeyValue::new("chaos.fault.kind", f.kind.clone()),
                    KeyValue::new("chaos.fault", f.fault.clone()),
                    KeyValue::new("chaos.reason", f.reason.clone()),
                ],
                0,
            )
        }));
        let mut verdict = vec![
            KeyValue::new("chaos.verdict", r.verdict.as_str()),
            KeyValue::new("chaos.exit_code", i64::from(r.exit_code())),
            KeyValue::new("chaos.reason", r.reason.clone()),
        ];
        if let Some(cause) = r.cause {
            verdict.push(KeyValue::new("chaos.cause", cause.as_str()));
        }
        events.push(Event::new("verdict", time(r.ended_at), verdict, 0));
        let status = if r.verdict == Verdict::Passed && r.faults_left.is_empty() {
            Status::Unset
        } else {
            Status::error(format!("{}: {}", r.verdict, r.reason))
        };
        self.span(Shape {
            path: "run".into(),
            parent: None,
            name: format!("run {}", r.scenario.name),
            start: r.started_at,
            end: r.ended_at,
            attributes,
            events,
            status,
        })
    }

    /// The step a breach names, when that step has a span.
    fn step_of(&self, breach: &Breach) -> Option<&StepReport> {
        let name = breach.step.as_deref()?;
        self.report
            .steps
            .iter()
            .find(|s| s.name == name && s.started_at.is_some() && s.ended_at.is_some())
    }

    fn step(
        &self,
        step: &StepReport,
        path: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> SpanData {
        let status_word = crate::report::summary::status_word(step.status);
        let mut attributes = vec![
            KeyValue::new("chaos.step.index", step.index as i64),
            KeyValue::new("chaos.step.status", status_word),
            KeyValue::new("chaos.step.hosts", strings(&step.hosts)),
            KeyValue::new("chaos.step.duration_ms", step.duration_ms as i64),
            KeyValue::new(
                "chaos.step.recover_within_ms",
                step.recover_within_ms as i64,
            ),
        ];
        if let Some(ms) = step.impact_ms {
            attributes.push(KeyValue::new("chaos.step.impact_ms", ms as i64));
        }
        if let Some(ms) = step.recovery_ms {
            attributes.push(KeyValue::new("chaos.step.recovery_ms", ms as i64));
        }
        let mut events: Vec<Event> = self
            .report
            .breaches
            .iter()
            .filter(|b| self.step_of(b).is_some_and(|s| s.index == step.index))
            .map(breach)
            .collect();
        let summary = status_with_impact(step);
        events.push(Event::new(
            "verdict",
            time(end),
            vec![
                KeyValue::new("chaos.step.status", status_word),
                KeyValue::new("chaos.summary", summary.clone()),
            ],
            0,
        ));
        let status = match step.status {
            StepStatus::Passed | StepStatus::Skipped => Status::Unset,
            StepStatus::Deviated | StepStatus::Aborted | StepStatus::Error => {
                Status::error(summary)
            }
        };
        self.span(Shape {
            path: path.into(),
            parent: Some("run".into()),
            name: format!("step {}", step.name),
            start,
            end,
            attributes,
            events,
            status,
        })
    }

    fn check(
        &self,
        check: &CheckReport,
        when: &str,
        step: &StepReport,
        step_path: &str,
        parent: &str,
    ) -> SpanData {
        let attributes = vec![
            KeyValue::new("chaos.check", when.to_string()),
            KeyValue::new("chaos.step", step.name.clone()),
            KeyValue::new("chaos.check.held", check.held),
            KeyValue::new("chaos.reason", check.reason.clone()),
        ];
        let events = check
            .probes
            .iter()
            .map(|p| {
                Event::new(
                    "probe",
                    time(check.decided_at),
                    vec![
                        KeyValue::new("chaos.probe", p.probe.clone()),
                        KeyValue::new("chaos.host", p.host.clone()),
                        KeyValue::new("chaos.probe.guardrail", p.guardrail),
                        KeyValue::new("chaos.probe.held", p.held),
                        KeyValue::new("chaos.probe.passed", p.passed as i64),
                        KeyValue::new("chaos.probe.samples", p.samples as i64),
                    ],
                    0,
                )
            })
            .collect();
        let status = if check.held {
            Status::Unset
        } else {
            Status::error(check.reason.clone())
        };
        self.span(Shape {
            path: format!("{step_path}/check/{when}"),
            parent: Some(parent.into()),
            name: format!("check {when}"),
            start: check.started_at,
            end: check.decided_at,
            attributes,
            events,
            status,
        })
    }

    /// A fault's window on its host: from its injection to its revert. One never reverted (left
    /// in place) or never injected (its injection failed) spans what the step does of it.
    fn fault(
        &self,
        fault: &FaultReport,
        i: usize,
        step_path: &str,
        step_start: DateTime<Utc>,
        step_end: DateTime<Utc>,
    ) -> SpanData {
        let start = fault.applied_at.unwrap_or(step_start);
        let end = fault.reverted_at.unwrap_or(step_end);
        let mut attributes = vec![
            KeyValue::new("chaos.fault.kind", fault.kind.clone()),
            KeyValue::new("chaos.fault.target", fault.target.clone()),
            KeyValue::new("chaos.host", fault.host.clone()),
            KeyValue::new("chaos.fault.id", fault.fault_id.clone()),
            KeyValue::new("chaos.fault", fault.fault.clone()),
            KeyValue::new("chaos.fault.applied", fault.applied_at.is_some()),
            KeyValue::new("chaos.fault.reverted", fault.reverted_at.is_some()),
            KeyValue::new("chaos.fault.affected", strings(&fault.affected)),
        ];
        if let Some(mechanism) = &fault.mechanism {
            attributes.push(KeyValue::new("chaos.fault.mechanism", mechanism.clone()));
        }
        if let Some(verified) = fault.verified {
            attributes.push(KeyValue::new("chaos.fault.verified", verified));
        }
        let status = match &fault.error {
            Some(error) => Status::error(error.clone()),
            None => Status::Unset,
        };
        self.span(Shape {
            path: format!("{step_path}/fault/{i}"),
            parent: Some(step_path.into()),
            name: format!("fault {} on {}", fault.kind, fault.host),
            start,
            end,
            attributes,
            events: Vec::new(),
            status,
        })
    }
}

/// Whether two checks are one: a step's before-check is the previous step's after-check.
fn same_check(a: &CheckReport, b: &CheckReport) -> bool {
    a.started_at == b.started_at && a.decided_at == b.decided_at
}

fn breach(b: &Breach) -> Event {
    let mut attributes = vec![
        KeyValue::new("chaos.guardrail", b.guardrail.clone()),
        KeyValue::new("chaos.host", b.host.clone()),
        KeyValue::new("chaos.probe.passed", b.passed as i64),
        KeyValue::new("chaos.probe.samples", b.samples as i64),
        KeyValue::new("chaos.reason", b.reason.clone()),
    ];
    if let Some(step) = &b.step {
        attributes.push(KeyValue::new("chaos.step", step.clone()));
    }
    Event::new("breach", time(b.at), attributes, 0)
}

fn strings(items: &[String]) -> Value {
    Value::Array(opentelemetry::Array::String(
        items.iter().map(|s| s.clone().into()).collect(),
    ))
}

fn time(at: DateTime<Utc>) -> SystemTime {
    at.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_support::{at, sample_report};

    fn scope() -> InstrumentationScope {
        InstrumentationScope::builder("chaosd").build()
    }

    fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span `{name}` in {:?}", names(spans)))
    }

    fn names(spans: &[SpanData]) -> Vec<&str> {
        spans.iter().map(|s| s.name.as_ref()).collect()
    }

    #[test]
    fn a_run_is_one_trace_of_steps_checks_and_faults_per_host() {
        let report = sample_report();
        let spans = spans(&report, &scope());
        assert_eq!(
            names(&spans),
            [
                "run checkout-failover",
                "check before",
                "step kill-api",
                "fault latency on api-1",
                "fault latency on api-2",
                "check after",
                // Its before-check is the first step's after-check: not a span twice.
                "step slow <db> & \"cache\"",
                "fault latency on db-1",
                "check after",
            ]
        );
        let trace = trace_id(&report.run_id);
        assert!(spans.iter().all(|s| s.span_context.trace_id() == trace));
        let ids: std::collections::HashSet<_> =
            spans.iter().map(|s| s.span_context.span_id()).collect();
        assert_eq!(ids.len(), spans.len(), "span ids are unique");
        let run = &spans[0];
        assert_eq!(run.parent_span_id, SpanId::INVALID);
        // The before-check comes before the step's first injection: the run's child.
        assert_eq!(spans[1].parent_span_id, run.span_context.span_id());
        let step = named(&spans, "step kill-api");
        assert_eq!(step.parent_span_id, run.span_context.span_id());
        for child in &spans[3..6] {
            assert_eq!(child.parent_span_id, step.span_context.span_id());
        }
        assert!(
            spans
                .iter()
                .all(|s| attr(s, RUN_ID) == Some(&Value::from("20250314T093000Z-7f3a9c")))
        );
    }

    #[test]
    fn a_fault_span_is_its_window_on_its_host() {
        let spans = spans(&sample_report(), &scope());
        let fault = named(&spans, "fault latency on api-2");
        assert_eq!(fault.start_time, time(at(12_310)));
        assert_eq!(fault.end_time, time(at(42_310)));
        assert_eq!(attr(fault, "chaos.fault.kind"), Some(&"latency".into()));
        assert_eq!(
            attr(fault, "chaos.fault.mechanism"),
            Some(&"tc netem | nft".into())
        );
        assert_eq!(attr(fault, "chaos.fault.target"), Some(&"role=api".into()));
        assert_eq!(attr(fault, "chaos.fault.verified"), Some(&true.into()));
        assert_eq!(fault.status, Status::Unset);
        // Never reverted: it lasts as long as its step, and says why it is an error.
        let left = named(&spans, "fault latency on db-1");
        assert_eq!(left.end_time, time(at(125_000)));
        assert_eq!(attr(left, "chaos.fault.reverted"), Some(&false.into()));
        assert!(
            matches!(&left.status, Status::Error { description } if description.contains("revert not confirmed"))
        );
    }

    #[test]
    fn verdicts_and_breaches_are_events_and_a_failed_verdict_an_error() {
        let spans = spans(&sample_report(), &scope());
        let run = &spans[0];
        let verdict = run.events.iter().find(|e| e.name == "verdict").unwrap();
        assert!(
            verdict
                .attributes
                .contains(&KeyValue::new("chaos.verdict", "deviated"))
        );
        assert!(matches!(run.status, Status::Error { .. }));
        assert!(run.events.iter().any(|e| e.name == "fault_left"));
        // The breach happened in the second step: it is that step's event.
        let second = named(&spans, "step slow <db> & \"cache\"");
        let breach = second.events.iter().find(|e| e.name == "breach").unwrap();
        assert_eq!(breach.timestamp, time(at(95_000)));
        assert!(
            breach
                .attributes
                .contains(&KeyValue::new("chaos.guardrail", "error-budget"))
        );
        assert!(!run.events.iter().any(|e| e.name == "breach"));
        assert!(matches!(second.status, Status::Error { .. }));
        let first = named(&spans, "step kill-api");
        assert_eq!(first.status, Status::Unset);
        let after = spans
            .iter()
            .filter(|s| s.name == "check after")
            .nth(1)
            .unwrap();
        assert!(matches!(after.status, Status::Error { .. }));
        assert_eq!(attr(after, "chaos.check.held"), Some(&false.into()));
    }

    #[test]
    fn steps_that_never_ran_have_no_span() {
        let mut report = sample_report();
        report.steps[1].started_at = None;
        report.steps[1].ended_at = None;
        let spans = spans(&report, &scope());
        assert!(!names(&spans).iter().any(|n| n.contains("db-1")));
        // Its breach then belongs to the run.
        assert!(spans[0].events.iter().any(|e| e.name == "breach"));
    }

    #[test]
    fn a_run_that_was_not_steady_shows_the_failed_before_check() {
        let mut report = sample_report();
        report.verdict = Verdict::NotSteady;
        report.steps.truncate(1);
        let step = &mut report.steps[0];
        step.status = StepStatus::Skipped;
        (step.started_at, step.ended_at, step.after) = (None, None, None);
        step.faults.clear();
        let before = step.before.as_mut().unwrap();
        before.held = false;
        let spans = spans(&report, &scope());
        assert_eq!(names(&spans), ["run checkout-failover", "check before"]);
        assert!(matches!(spans[1].status, Status::Error { .. }));
        assert_eq!(attr(&spans[1], "chaos.step"), Some(&"kill-api".into()));
    }

    #[test]
    fn the_same_run_gives_the_same_ids() {
        let a = spans(&sample_report(), &scope());
        let b = spans(&sample_report(), &scope());
        let ids = |s: &[SpanData]| {
            s.iter()
                .map(|s| s.span_context.span_id())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&a), ids(&b));
        let mut other = sample_report();
        other.run_id = "20250314T093000Z-000000".into();
        assert_ne!(
            spans(&other, &scope())[0].span_context.trace_id(),
            a[0].span_context.trace_id()
        );
    }
}
