//! `prometheus` probes: an instant query whose single value must lie below and/or above bounds.
//!
//! The query goes to `{url}/api/v1/query` over the same one-connection-per-sample client as the
//! `http` probe. It must yield one number: a `scalar`, or a `vector` with exactly one series.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::{Verdict, http, timed_out, truncate};
use crate::spec::PrometheusProbe;

pub(crate) async fn sample(probe: &PrometheusProbe) -> Verdict {
    let url = query_url(&probe.url, &probe.query);
    let no_headers = BTreeMap::new();
    let exchange = http::fetch("GET", &url, &no_headers, None);
    let fetched = match tokio::time::timeout(probe.timeout, exchange).await {
        Ok(result) => result?,
        Err(_) => return Err(timed_out(probe.timeout)),
    };
    let value = parse_response(fetched.status, &fetched.body)?;
    judge(value, probe.below, probe.above)
}

/// `{base}/api/v1/query?query=<percent-encoded>`.
pub fn query_url(base: &str, query: &str) -> String {
    format!(
        "{}/api/v1/query?query={}",
        base.trim_end_matches('/'),
        percent_encode(query)
    )
}

/// Everything but RFC 3986's unreserved characters is escaped.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The query's single value from an instant-query response (`NaN` included; [`judge`] fails it).
pub fn parse_response(status: u16, body: &[u8]) -> Result<f64, String> {
    let json: Value = match serde_json::from_slice(body) {
        Ok(json) => json,
        Err(_) if status != 200 => return Err(format!("status {status} from prometheus")),
        Err(err) => return Err(format!("invalid response from prometheus: {err}")),
    };
    match json.get("status").and_then(Value::as_str) {
        Some("success") => {}
        Some("error") => {
            let kind = json.get("errorType").and_then(Value::as_str);
            let message = json
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            let message = truncate(message, 160);
            return Err(match kind {
                Some(kind) => format!("query failed: {kind}: {message}"),
                None => format!("query failed: {message}"),
            });
        }
        _ if status != 200 => return Err(format!("status {status} from prometheus")),
        _ => return Err("invalid response from prometheus: no `status`".into()),
    }
    let data = json
        .get("data")
        .ok_or("invalid response from prometheus: no `data`")?;
    let result = data.get("result");
    let sample = match data.get("resultType").and_then(Value::as_str) {
        Some("scalar") => result,
        Some("vector") => {
            let series = result
                .and_then(Value::as_array)
                .ok_or("invalid response from prometheus: `result` is not a list")?;
            match series.len() {
                0 => return Err("query returned no data".into()),
                1 => series[0].get("value"),
                n => return Err(format!("query returned {n} series, expected one")),
            }
        }
        Some("matrix") => {
            return Err("query returned a range vector, expected a single value".into());
        }
        Some("string") => return Err("query returned a string, expected a number".into()),
        Some(other) => return Err(format!("query returned a `{other}`, expected a number")),
        None => return Err("invalid response from prometheus: no `resultType`".into()),
    };
    // A sample is `[unix_time, "value"]`.
    let text = sample
        .and_then(Value::as_array)
        .and_then(|pair| pair.get(1))
        .and_then(Value::as_str)
        .ok_or("invalid response from prometheus: malformed sample")?;
    text.parse::<f64>()
        .map_err(|_| format!("query returned `{}`, not a number", truncate(text, 40)))
}

/// Passes when `value < below` and `value > above` (each when set).
pub fn judge(value: f64, below: Option<f64>, above: Option<f64>) -> Verdict {
    if value.is_nan() {
        return Err("value is NaN".into());
    }
    if let Some(below) = below
        && value >= below
    {
        return Err(if value > below {
            format!("value {value} above {below}")
        } else {
            format!("value {value} not below {below}")
        });
    }
    if let Some(above) = above
        && value <= above
    {
        return Err(if value < above {
            format!("value {value} below {above}")
        } else {
            format!("value {value} not above {above}")
        });
    }
    Ok(format!("value {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<f64, String> {
        parse_response(200, body.as_bytes())
    }

    #[test]
    fn a_single_series_vector_gives_its_value() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","job":"prometheus"},"value":[1700000000.123,"1"]}]}}"#;
        assert_eq!(parse(body), Ok(1.0));
    }

    #[test]
    fn a_scalar_gives_its_value() {
        let body =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"0.93"]}}"#;
        assert_eq!(parse(body), Ok(0.93));
    }

    #[test]
    fn special_values_parse_as_prometheus_writes_them() {
        let scalar = |v: &str| {
            format!(r#"{{"status":"success","data":{{"resultType":"scalar","result":[1,"{v}"]}}}}"#)
        };
        assert_eq!(parse(&scalar("+Inf")), Ok(f64::INFINITY));
        assert_eq!(parse(&scalar("-Inf")), Ok(f64::NEG_INFINITY));
        assert!(parse(&scalar("NaN")).unwrap().is_nan());
        assert_eq!(judge(f64::NAN, Some(1.0), None), Err("value is NaN".into()));
    }

    #[test]
    fn an_empty_vector_is_no_data() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse(body), Err("query returned no data".into()));
    }

    #[test]
    fn many_series_are_refused() {
        let one = r#"{"metric":{},"value":[1,"1"]}"#;
        let body = format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{one},{one},{one}]}}}}"#
        );
        assert_eq!(
            parse(&body),
            Err("query returned 3 series, expected one".into())
        );
    }

    #[test]
    fn error_status_quotes_prometheus() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:4: parse error: unexpected <op:+>"}"#;
        assert_eq!(
            parse_response(400, body.as_bytes()),
            Err(
                "query failed: bad_data: invalid parameter \"query\": 1:4: parse error: unexpected <op:+>"
                    .into()
            )
        );
    }

    #[test]
    fn non_json_responses_are_described() {
        assert_eq!(
            parse_response(502, b"Bad Gateway"),
            Err("status 502 from prometheus".into())
        );
        assert!(
            parse_response(200, b"<html>")
                .unwrap_err()
                .starts_with("invalid response from prometheus")
        );
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert_eq!(
            parse(matrix),
            Err("query returned a range vector, expected a single value".into())
        );
    }

    #[test]
    fn bounds_are_strict() {
        assert_eq!(
            judge(0.93, Some(0.5), None),
            Err("value 0.93 above 0.5".into())
        );
        assert_eq!(
            judge(0.5, Some(0.5), None),
            Err("value 0.5 not below 0.5".into())
        );
        assert_eq!(
            judge(0.1, None, Some(0.5)),
            Err("value 0.1 below 0.5".into())
        );
        assert_eq!(
            judge(0.5, None, Some(0.5)),
            Err("value 0.5 not above 0.5".into())
        );
        assert_eq!(judge(0.3, Some(0.5), Some(0.1)), Ok("value 0.3".into()));
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            query_url("http://127.0.0.1:9090/", r#"up{job="x"} > 0.5"#),
            "http://127.0.0.1:9090/api/v1/query?query=up%7Bjob%3D%22x%22%7D%20%3E%200.5"
        );
    }
}
