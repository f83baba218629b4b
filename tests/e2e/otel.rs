//! `chaosctl run` exports the run as a trace over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! names a collector: received here by a stand-in collector on 127.0.0.1 and decoded with the
//! OpenTelemetry protocol's own types. Without the variable nothing is sent; a collector that is
//! down or never answers costs at most the export's deadline and changes no exit code.

use std::collections::HashMap;

use chaos_tests::otlp::{Answers, Collector};
use chaos_tests::support::{Sleeper, Test, pattern, unique};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, status::StatusCode};
use prost::Message;

/// Two sleepers paused together for 1 s: one step, two fault windows.
fn scenario() -> &'static str {
    r#"version: 1
name: otel-pause
steady_state:
  - name: the sleepers are there
    process: {pattern: "${A}|${B}"}
    expect: {min: 2}
    every: 100ms
    window: 200ms
steps:
  - name: pause both
    faults:
      - {target: local, pause: {process: {pattern: "${A}"}}}
      - {target: local, pause: {process: {pattern: "${B}"}}}
    duration: 1s
    recover_within: 2s
"#
}

/// A test of that scenario on two fresh sleepers, and the sleepers (kept alive by the caller).
fn paused_run() -> (Test, Vec<Sleeper>) {
    // Built first: a build of minutes must not outlast the sleepers (`sleep 300`).
    chaos_tests::bins::chaosctl();
    let (a, b) = (unique("otel-a"), unique("otel-b"));
    let sleepers = vec![Sleeper::spawn(&a), Sleeper::spawn(&b)];
    let t = Test::new()
        .scenario(scenario())
        .var("A", pattern(&a))
        .var("B", pattern(&b));
    (t, sleepers)
}

fn value(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        other => format!("{other:?}"),
    }
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), value(&kv.value)))
        .collect()
}

fn rfc3339_nanos(text: &str) -> u64 {
    let at = chrono::DateTime::parse_from_rfc3339(text).expect("an RFC 3339 time");
    at.timestamp_nanos_opt().expect("in range") as u64
}

#[test]
fn a_run_is_exported_as_one_trace_with_a_span_per_step_fault_and_check() {
    let collector = Collector::start(Answers::Ok);
    let (t, _sleepers) = paused_run();
    let t = t
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint())
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-api-key=s3cret,x-team=chaos%20eng",
        );
    let out = t.run();
    out.code(0);
    let report = out.report();
    let run_id = report.json["run_id"].as_str().expect("run_id").to_string();

    // chaosctl waits for the export before it exits: the request is here already.
    let got = collector.received();
    assert_eq!(got.len(), 1, "one export per run: {got:?}");
    let post = &got[0];
    assert_eq!(
        (post.method.as_str(), post.path.as_str()),
        ("POST", "/v1/traces")
    );
    assert_eq!(post.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(post.header("x-api-key"), Some("s3cret"));
    assert_eq!(
        post.header("x-team"),
        Some("chaos eng"),
        "values are URL-decoded"
    );

    let request = ExportTraceServiceRequest::decode(post.body.as_slice()).expect("OTLP protobuf");
    assert_eq!(request.resource_spans.len(), 1);
    let resource = &request.resource_spans[0];
    let resource_attrs = attrs(&resource.resource.as_ref().expect("a resource").attributes);
    assert_eq!(resource_attrs["service.name"], "chaosctl");
    let spans: Vec<&Span> = resource
        .scope_spans
        .iter()
        .flat_map(|s| s.spans.iter())
        .collect();
    let named =
        |name: &str| -> Vec<&Span> { spans.iter().copied().filter(|s| s.name == name).collect() };

    let trace_id = &spans[0].trace_id;
    assert_eq!(trace_id.len(), 16);
    assert!(spans.iter().all(|s| &s.trace_id == trace_id), "one trace");
    assert!(
        spans
            .iter()
            .all(|s| attrs(&s.attributes)["chaos.run_id"] == run_id)
    );

    let run = named("run otel-pause");
    assert_eq!(run.len(), 1);
    let run = run[0];
    assert!(run.parent_span_id.is_empty(), "the run is the root");
    assert_eq!(
        run.start_time_unix_nano,
        rfc3339_nanos(report.json["started_at"].as_str().unwrap())
    );
    assert_eq!(
        run.end_time_unix_nano,
        rfc3339_nanos(report.json["ended_at"].as_str().unwrap())
    );
    let verdict = run
        .events
        .iter()
        .find(|e| e.name == "verdict")
        .expect("a verdict event");
    assert_eq!(attrs(&verdict.attributes)["chaos.verdict"], "passed");
    assert_eq!(attrs(&run.attributes)["chaos.exit_code"], "0");
    assert_ne!(
        run.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );

    let step = named("step pause both");
    assert_eq!(step.len(), 1);
    let step = step[0];
    assert_eq!(step.parent_span_id, run.span_id);
    assert!(step.events.iter().any(|e| e.name == "verdict"));

    let faults = named("fault pause on local");
    assert_eq!(faults.len(), 2, "one span per fault and host");
    let reported = &report.json["steps"][0]["faults"];
    for (i, fault) in faults.iter().enumerate() {
        assert_eq!(fault.parent_span_id, step.span_id);
        let a = attrs(&fault.attributes);
        assert_eq!(a["chaos.fault.kind"], "pause");
        assert_eq!(a["chaos.fault.verified"], "true");
        assert_eq!(a["chaos.fault.target"], "local");
        assert_eq!(a["chaos.host"], "local");
        assert!(a.contains_key("chaos.fault.mechanism"), "{a:?}");
        // The fault's window: from its injection to its revert, as the report has them.
        assert_eq!(
            fault.start_time_unix_nano,
            rfc3339_nanos(reported[i]["applied_at"].as_str().unwrap())
        );
        assert_eq!(
            fault.end_time_unix_nano,
            rfc3339_nanos(reported[i]["reverted_at"].as_str().unwrap())
        );
        assert!(fault.end_time_unix_nano - fault.start_time_unix_nano >= 900_000_000);
    }
    // The before-check comes before the step's first injection, the after-check after its
    // last revert.
    for (when, parent) in [("before", &run.span_id), ("after", &step.span_id)] {
        let check = named(&format!("check {when}"));
        assert_eq!(check.len(), 1, "check {when}");
        assert_eq!(&check[0].parent_span_id, parent, "check {when}");
        assert_eq!(attrs(&check[0].attributes)["chaos.check.held"], "true");
        assert_eq!(attrs(&check[0].attributes)["chaos.step"], "pause both");
    }
    assert_eq!(
        spans.len(),
        1 + 1 + 2 + 2,
        "run, step, two faults, two checks"
    );
}

#[test]
fn without_an_endpoint_nothing_is_sent() {
    let collector = Collector::start(Answers::Ok);
    let (t, _sleepers) = paused_run();
    // Headers alone turn nothing on, nor does an empty endpoint; `OTEL_SDK_DISABLED` wins over
    // an endpoint.
    let quiet = t
        .env("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s3cret")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "");
    quiet.run().code(0);
    let (t, _more) = paused_run();
    let disabled = t
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint())
        .env("OTEL_SDK_DISABLED", "true");
    let out = disabled.run();
    out.code(0);
    assert!(!out.stderr.contains("trace"), "{}", out.stderr);
    assert_eq!(collector.connections(), 0, "no connection was made");
    // Where an SDK sends without an endpoint (localhost:4318), when this machine leaves it free.
    if let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:4318") {
        let default_port = Collector::serve(listener, Answers::Ok);
        let (t, _again) = paused_run();
        t.run().code(0);
        assert_eq!(
            default_port.connections(),
            0,
            "nothing sent to the default port"
        );
    }
}

/// Seconds from the end of the run (the report's `ended_at`) until chaosctl had exited.
fn tail_after_the_run(t: &Test) -> (chaos_tests::support::Output, f64) {
    let out = t.run();
    let exited = chrono::Utc::now();
    let ended = chrono::DateTime::parse_from_rfc3339(
        out.report().json["ended_at"].as_str().expect("ended_at"),
    )
    .expect("RFC 3339");
    let tail = (exited - ended.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0;
    (out, tail)
}

#[test]
fn a_collector_that_never_answers_costs_at_most_the_deadline() {
    let hung = Collector::start(Answers::Never);
    let (t, _sleepers) = paused_run();
    let t = t.env("OTEL_EXPORTER_OTLP_ENDPOINT", hung.endpoint());
    let (out, tail) = tail_after_the_run(&t);
    out.code(0);
    out.stderr_has("could not export the run's trace to http://127.0.0.1:")
        .stderr_has("no answer within 2s; the run and its report are unaffected");
    assert!(hung.connections() >= 1, "chaosctl did try");
    assert!(tail < 2.5, "chaosctl ended {tail:.2} s after the run");
    eprintln!("hung collector: chaosctl exited {tail:.2} s after the run ended");
}

#[test]
fn a_collector_that_is_down_changes_nothing_but_a_warning() {
    let (t, _sleepers) = paused_run();
    let port = chaos_tests::support::free_port();
    let t = t.env(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://127.0.0.1:{port}"),
    );
    let (out, tail) = tail_after_the_run(&t);
    out.code(0);
    out.stderr_has(&format!(
        "could not export the run's trace to http://127.0.0.1:{port}/v1/traces: "
    ))
    .stderr_has("refused");
    assert!(tail < 2.5, "chaosctl ended {tail:.2} s after the run");
    eprintln!("closed port: chaosctl exited {tail:.2} s after the run ended");
    // And a value that is no URL turns the export off up front, with a word.
    let (t, _more) = paused_run();
    let out = t.env("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318").run();
    out.code(0);
    out.stderr_has("not exporting the run's trace: OTEL_EXPORTER_OTLP_ENDPOINT=`collector:4318`");
}
