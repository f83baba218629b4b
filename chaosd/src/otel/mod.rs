//! OpenTelemetry: each run exported as one trace over OTLP/HTTP (protobuf) once it has ended, so a
//! team sees the fault windows next to their own services' traces. `chaosctl run` and `monkey`
//! export when the standard variables name a collector, chaosd also from `otlp:` in its
//! configuration; without either nothing is sent and no connection is made.
//!
//! The spans are built from the finished report ([`spans`]), which holds the exact times of every
//! step, fault window and check, and exists on every path a run can end by (passed, deviated,
//! aborted by a guardrail or a signal, an error). They are handed to the OTLP exporter of the
//! `opentelemetry-otlp` crate directly, not through a tracer provider: the run is over, so there
//! is nothing to instrument live, and a provider's span processor would add a batching thread and
//! a flush at shutdown with timeouts of its own. Here one `export` call under one deadline
//! ([`DEADLINE`]) is the whole cost, paid at the end of the run: a collector that is down or slow
//! costs at most that, never the run's verdict or exit code.

pub mod spans;
mod transport;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, RetryPolicy, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::{
    EnvResourceDetector, ResourceDetector, TelemetryResourceDetector,
};
use opentelemetry_sdk::trace::SpanExporter;

use crate::report::model::Report;

/// The most an export may take, connection, retries and answer included.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// The base URL of a collector's OTLP/HTTP receiver (`http://collector:4318`); traces go to its
/// `/v1/traces`.
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The whole URL traces go to; it wins over [`ENDPOINT_VAR`].
pub const TRACES_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `true` turns the export off whatever else is set, as in every OpenTelemetry SDK.
pub const DISABLED_VAR: &str = "OTEL_SDK_DISABLED";

const TRACES_PATH: &str = "/v1/traces";

/// Where a run's trace goes. The headers of `OTEL_EXPORTER_OTLP_HEADERS` (and
/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`) are added by the exporter when it sends, over `headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The traces endpoint's whole URL.
    pub url: String,
    pub headers: BTreeMap<String, String>,
}

impl Destination {
    /// The destination the standard variables name: `None` when neither endpoint variable is set
    /// (or `OTEL_SDK_DISABLED=true`); an error when the URL is not one.
    pub fn from_env() -> Result<Option<Destination>, String> {
        Destination::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Destination::from_env`] over any source of variables.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Destination>, String> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if set(DISABLED_VAR).is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let url = if let Some(url) = set(TRACES_ENDPOINT_VAR) {
            check_url(&url).map_err(|why| format!("{TRACES_ENDPOINT_VAR}=`{url}`: {why}"))?;
            url
        } else if let Some(base) = set(ENDPOINT_VAR) {
            check_url(&base).map_err(|why| format!("{ENDPOINT_VAR}=`{base}`: {why}"))?;
            traces_url(&base)
        } else {
            return Ok(None);
        };
        Ok(Some(Destination {
            url,
            headers: BTreeMap::new(),
        }))
    }

    /// chaosd's `otlp: {endpoint, headers}`: `endpoint` is a base URL, as in [`ENDPOINT_VAR`].
    pub fn configured(
        endpoint: &str,
        headers: BTreeMap<String, String>,
    ) -> Result<Destination, String> {
        check_url(endpoint)?;
        for (name, value) in &headers {
            hyper::header::HeaderName::try_from(name.as_str())
                .map_err(|_| format!("header `{name}` is not a valid header name"))?;
            hyper::header::HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("the value of header `{name}` is not a valid header value"))?;
        }
        Ok(Destination {
            url: traces_url(endpoint),
            headers,
        })
    }
}

/// The OTLP/HTTP rule: the signal's path goes after the base URL, whatever path it has.
fn traces_url(base: &str) -> String {
    format!("{}{TRACES_PATH}", base.trim().trim_end_matches('/'))
}

fn check_url(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url
        .trim()
        .parse()
        .map_err(|_| "not a URL like `http://collector:4318`".to_string())?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(_)) => Ok(()),
        _ => Err("not an http:// or https:// URL like `http://collector:4318`".to_string()),
    }
}

/// Who exports: the resource's `service.name` (unless `OTEL_SERVICE_NAME` names another), and
/// the instrumentation scope of every span.
#[derive(Debug, Clone, Copy)]
pub struct Service(pub &'static str);

impl Service {
    fn resource(self) -> Resource {
        let detectors: [Box<dyn ResourceDetector>; 2] = [
            Box::new(TelemetryResourceDetector),
            // OTEL_RESOURCE_ATTRIBUTES: a deployment's own attributes.
            Box::new(EnvResourceDetector::new()),
        ];
        let name = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|n| !n.trim().is_empty());
        let mut builder = Resource::builder_empty()
            .with_service_name(self.0)
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .with_detectors(&detectors);
        if let Some(name) = name {
            builder = builder.with_service_name(name);
        }
        builder.build()
    }

    fn scope(self) -> InstrumentationScope {
        InstrumentationScope::builder(self.0)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build()
    }
}

/// Sends the run's trace to `destination`, within [`DEADLINE`]. Returns the number of spans sent,
/// or why they were not, in words (the caller logs it; the run is not affected).
pub async fn export(
    destination: &Destination,
    service: Service,
    report: &Report,
) -> Result<usize, String> {
    let client = agent::http::client::https_client(None)
        .map_err(|why| format!("cannot build the HTTP client: {why}"))?;
    let transport = transport::Transport::new(client);
    let headers: HashMap<String, String> = destination.headers.clone().into_iter().collect();
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(transport.clone())
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(destination.url.clone())
        .with_headers(headers)
        // The exporter's own retries stay within the deadline; the timeout below enforces it.
        .with_timeout(DEADLINE)
        // One retry, soon: a collector restarting (502, 503, a reset) gets a second chance, and
        // one that is down (connection refused) costs the end of the run a quarter of a second
        // rather than the recommended three retries' second.
        .with_retry_policy(
            RetryPolicy::recommended()
                .with_max_retries(1)
                .with_initial_delay(Duration::from_millis(200))
                .with_max_jitter(Duration::from_millis(50)),
        )
        .build()
        .map_err(|err| format!("cannot set up the OTLP exporter: {err}"))?;
    exporter.set_resource(&service.resource());
    let spans = spans::spans(report, &service.scope());
    let count = spans.len();
    let sent = tokio::time::timeout(DEADLINE, exporter.export(spans)).await;
    let failure = transport.last_failure();
    match sent {
        Ok(Ok(())) => Ok(count),
        Ok(Err(err)) => Err(failure.unwrap_or_else(|| err.to_string())),
        Err(_) => Err(match failure {
            Some(why) => format!("{why} (and no answer within {}s)", DEADLINE.as_secs()),
            None => format!("no answer within {}s", DEADLINE.as_secs()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(set: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            set.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn url(set: &[(&str, &str)]) -> Result<Option<String>, String> {
        Destination::from_vars(vars(set)).map(|d| d.map(|d| d.url))
    }

    #[test]
    fn the_standard_variables_name_the_traces_endpoint() {
        assert_eq!(url(&[]), Ok(None));
        assert_eq!(url(&[(ENDPOINT_VAR, "")]), Ok(None));
        assert_eq!(
            url(&[(ENDPOINT_VAR, "http://collector:4318")]),
            Ok(Some("http://collector:4318/v1/traces".into()))
        );
        assert_eq!(
            url(&[(ENDPOINT_VAR, "https://otel.example/sub/")]),
            Ok(Some("https://otel.example/sub/v1/traces".into()))
        );
        assert_eq!(
            url(&[
                (ENDPOINT_VAR, "http://collector:4318"),
                (TRACES_ENDPOINT_VAR, "http://traces:9999/in")
            ]),
            Ok(Some("http://traces:9999/in".into()))
        );
        assert_eq!(
            url(&[
                (ENDPOINT_VAR, "http://collector:4318"),
                (DISABLED_VAR, "TRUE")
            ]),
            Ok(None)
        );
        let err = url(&[(ENDPOINT_VAR, "collector:4318")]).unwrap_err();
        assert_eq!(
            err,
            "OTEL_EXPORTER_OTLP_ENDPOINT=`collector:4318`: not an http:// or https:// URL like \
             `http://collector:4318`"
        );
    }

    #[test]
    fn a_configured_endpoint_is_a_base_url_and_its_headers_are_checked() {
        let d = Destination::configured(
            "http://127.0.0.1:4318/",
            BTreeMap::from([("x-team".into(), "payments".into())]),
        )
        .unwrap();
        assert_eq!(d.url, "http://127.0.0.1:4318/v1/traces");
        let bad = Destination::configured(
            "http://127.0.0.1:4318",
            BTreeMap::from([("bad header".into(), "x".into())]),
        );
        assert_eq!(
            bad.unwrap_err(),
            "header `bad header` is not a valid header name"
        );
        assert!(Destination::configured("ftp://x", BTreeMap::new()).is_err());
    }
}
