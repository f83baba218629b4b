//! `http` probes: one request on a fresh connection, judged on status, body and latency.
//!
//! Every sample opens its own connection (no keep-alive pool): a refused or slow connect is part
//! of what the probe measures, and a pooled connection would hide it. `https` uses rustls with
//! the `ring` provider, trusting the system's roots plus the Mozilla set compiled in.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use super::{Verdict, describe_error, fmt_duration, fmt_latency, timed_out};
use crate::spec::{HttpProbe, StatusMatch};

/// How much of a response body is read; the rest is dropped with the connection.
pub const BODY_CAP: usize = 1024 * 1024;

/// A response as far as a probe cares.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub status: u16,
    /// At most [`BODY_CAP`] bytes.
    pub body: Vec<u8>,
}

pub(crate) async fn sample(probe: &HttpProbe) -> Verdict {
    judged(probe).await.1
}

/// A sample and the status the server answered with, if it answered (a `load` probe counts
/// its requests by status).
pub(crate) async fn judged(probe: &HttpProbe) -> (Option<u16>, Verdict) {
    let start = Instant::now();
    let exchange = fetch(
        &probe.method,
        &probe.url,
        &probe.headers,
        probe.body.as_deref(),
    );
    let fetched = match tokio::time::timeout(probe.timeout, exchange).await {
        Ok(Ok(fetched)) => fetched,
        Ok(Err(reason)) => return (None, Err(reason)),
        Err(_) => return (None, Err(timed_out(probe.timeout))),
    };
    let status = fetched.status;
    (Some(status), judge(probe, fetched, start.elapsed()))
}

/// Whether an answer meets the probe's `expect`.
fn judge(probe: &HttpProbe, fetched: Fetched, latency: std::time::Duration) -> Verdict {
    let expect = &probe.expect;

    let status_ok = if expect.status.is_empty() {
        (200..300).contains(&fetched.status)
    } else {
        expect.status.iter().any(|m| m.matches(fetched.status))
    };
    if !status_ok {
        return Err(format!(
            "status {}, expected {}",
            fetched.status,
            describe_statuses(&expect.status)
        ));
    }
    if expect.body_contains.is_some() || expect.body_matches.is_some() {
        let body = String::from_utf8_lossy(&fetched.body);
        if let Some(needle) = &expect.body_contains
            && !body.contains(needle.as_str())
        {
            return Err(format!("body does not contain `{needle}`"));
        }
        if let Some(re) = &expect.body_matches
            && !re.is_match(&body)
        {
            return Err(format!("body does not match `{re}`"));
        }
    }
    if let Some(max) = expect.max_latency
        && latency > max
    {
        return Err(format!(
            "{} in {}, slower than max_latency {}",
            fetched.status,
            fmt_latency(latency),
            fmt_duration(max)
        ));
    }
    Ok(format!("{} in {}", fetched.status, fmt_latency(latency)))
}

/// `2xx`, `200`, `200 or 204 or 5xx`.
pub(crate) fn describe_statuses(status: &[StatusMatch]) -> String {
    if status.is_empty() {
        return "2xx".into();
    }
    status
        .iter()
        .map(|m| match m {
            StatusMatch::Code(code) => code.to_string(),
            StatusMatch::Class(class) => format!("{class}xx"),
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// One request on a new connection, the body read up to [`BODY_CAP`]. No timeout of its own:
/// callers bound it. Errors are short reasons.
pub(crate) async fn fetch(
    method: &str,
    url: &str,
    headers: &BTreeMap<String, String>,
    body: Option<&str>,
) -> Result<Fetched, String> {
    let uri: Uri = url
        .parse()
        .map_err(|err| format!("invalid url `{url}`: {err}"))?;
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("invalid method `{method}`"))?;
    let mut request = Request::builder().method(method).uri(uri.clone());
    let request_headers = request
        .headers_mut()
        .ok_or_else(|| format!("invalid url `{url}`"))?;
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name `{name}`"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value for header `{name}`"))?;
        request_headers.append(name, value);
    }
    if !request_headers.contains_key(USER_AGENT) {
        request_headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("chaosd-probe/", env!("CARGO_PKG_VERSION"))),
        );
    }
    let body = Full::new(Bytes::from(body.unwrap_or_default().to_owned()));
    let request = request
        .body(body)
        .map_err(|err| format!("invalid request: {err}"))?;

    let response = match uri.scheme_str() {
        Some("http") => {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            client(connector).request(request).await
        }
        Some("https") => {
            let config = tls_config().await?;
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config((*config).clone())
                .https_only()
                .enable_http1()
                .build();
            client(connector).request(request).await
        }
        _ => return Err(format!("invalid url `{url}`: expected http:// or https://")),
    }
    .map_err(|err| describe_error(&err))?;

    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| format!("reading body: {}", describe_error(&err)))?;
        if let Ok(data) = frame.into_data() {
            let room = BODY_CAP - buf.len();
            if data.len() >= room {
                buf.extend_from_slice(&data[..room]);
                break;
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Fetched { status, body: buf })
}

/// A client that keeps no idle connections: each request dials anew.
fn client<C: Connect + Clone>(connector: C) -> Client<C, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector)
}

/// The TLS client settings, built once: loading the system's roots reads files, so it runs on
/// the blocking pool.
async fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return config.clone();
    }
    tokio::task::spawn_blocking(|| CONFIG.get_or_init(build_tls_config).clone())
        .await
        .map_err(|err| format!("cannot set up TLS: {err}"))?
}

fn build_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // Unreadable or missing system roots are not fatal: the compiled-in set remains.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("cannot set up TLS: {err}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_expectations_read_naturally() {
        assert_eq!(describe_statuses(&[]), "2xx");
        assert_eq!(
            describe_statuses(&[StatusMatch::Code(200), StatusMatch::Class(3)]),
            "200 or 3xx"
        );
    }

    #[test]
    fn tls_config_builds_with_ring() {
        assert!(build_tls_config().is_ok());
    }
}
