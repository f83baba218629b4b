//! The read-only web view and `/metrics`.
//!
//! - `GET /` redirects to `/ui/`: the runs (id, scenario, verdict, start, duration, labels) and the
//!   schedules with their next run.
//! - `GET /ui/runs/{id}`: a finished run's `report.html` ([`crate::report::html::render`], the
//!   same page as in the report folder: each step's status with its impact, its impact table and
//!   objectives, so the web view never has a renderer of its own to fall behind); a
//!   running run's live status (phase, step, time left on the held fault, probes, events so far),
//!   which reloads itself every 2 s with `<meta http-equiv="refresh">` until the run has ended and
//!   it becomes the report. No scripts, nothing fetched from elsewhere.
//! - `GET /metrics`: Prometheus text ([`crate::metrics`]).
//!
//! **Auth.** `/metrics` takes the API's bearer token (Prometheus: `authorization:
//! {credentials_file: F}`). A browser cannot send that header, so `/ui` also takes the token once
//! in the address, `/ui/?token=TOKEN`: chaosd answers with an `HttpOnly`, `SameSite=Strict`
//! cookie holding it (path `/ui`) and redirects to the same page without the token, so it does
//! not stay in the address bar or history. The cookie is only accepted on `/ui` pages, which
//! only read: it never authorizes the API (`/v1`), so a cross-site request cannot abort or start
//! a run with it. Over TLS the cookie is also `Secure`, so a browser never sends it over plain
//! HTTP (chaosd serves plain HTTP only on loopback). Pages send `Content-Security-Policy: default-src 'none'` (inline styles only),
//! `Referrer-Policy: no-referrer` and `X-Frame-Options: DENY`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use hyper::body::Incoming;
use hyper::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, COOKIE, HeaderValue, LOCATION,
    REFERRER_POLICY, SET_COOKIE, X_FRAME_OPTIONS,
};
use hyper::{Method, Request, Response, StatusCode};

use super::State;
use super::error::{Body, ServiceError, full_response};
use super::runs::Found;
use crate::report::html::esc;

/// The cookie that carries the token for `/ui` pages.
const COOKIE_NAME: &str = "chaosd_token";

/// How many runs the list shows.
const LIST_LIMIT: usize = 100;

/// Answers `/`, `/ui...` and `/metrics`; `None` for every other path (the API's).
pub fn handle(
    state: &Arc<State>,
    req: &Request<Incoming>,
) -> Option<Result<Response<Body>, ServiceError>> {
    let path = req.uri().path();
    let is_web = path == "/" || path == "/ui" || path.starts_with("/ui/") || path == "/metrics";
    if !is_web {
        return None;
    }
    if req.method() != Method::GET {
        return Some(Err(ServiceError::MethodNotAllowed {
            method: req.method().to_string(),
            path: path.to_string(),
            allow: "GET",
        }));
    }
    let bearer = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
    if path == "/metrics" {
        if !state.token.admits(bearer) {
            return Some(Err(ServiceError::Unauthorized));
        }
        let text = crate::metrics::global().render(state.runs.running().len());
        return Some(Ok(full_response(
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            text,
        )));
    }
    if path == "/" || path == "/ui" {
        return Some(Ok(redirect("/ui/", None)));
    }
    // `?token=` once: set the cookie, and drop the token from the address.
    if let Some(given) = query_param(req.uri().query().unwrap_or_default(), "token") {
        // A base64 token arrives as typed (`a+b/c=`), or URL-encoded by a browser or a script
        // (`a%2Bb%2Fc%3D`, or form-encoded with `+` for a space): whichever reading is the token.
        let admits = |t: &String| state.token.admits(Some(format!("Bearer {t}").as_bytes()));
        let Some(token) = token_readings(given).into_iter().find(admits) else {
            return Some(Ok(login_page(
                StatusCode::UNAUTHORIZED,
                "That token is wrong.",
            )));
        };
        let secure = if state.tls { "; Secure" } else { "" };
        let cookie = format!(
            "{COOKIE_NAME}={}; Path=/ui; HttpOnly; SameSite=Strict{secure}",
            percent_encode(&token)
        );
        return Some(Ok(redirect(path, Some(cookie))));
    }
    let by_cookie = cookie_value(req, COOKIE_NAME).is_some_and(|value| {
        // The cookie holds the token percent-encoded (older chaosd: as it was).
        token_readings(&value)
            .iter()
            .any(|t| state.token.admits(Some(format!("Bearer {t}").as_bytes())))
    });
    if !(state.token.admits(bearer) || by_cookie) {
        return Some(Ok(login_page(
            StatusCode::UNAUTHORIZED,
            "This page needs chaosd's API token.",
        )));
    }
    let page = match path.trim_end_matches('/') {
        "/ui" => index(state),
        rest => match rest.strip_prefix("/ui/runs/") {
            Some(id) if !id.is_empty() && !id.contains('/') => run_page(state, id),
            _ => Err(ServiceError::NotFound(format!("no page `{path}`"))),
        },
    };
    Some(Ok(match page {
        Ok(response) => response,
        Err(err) => html(
            err.status(),
            &page_html(
                "chaosd",
                &format!(
                    "<p class=err>{}</p><p><a href=\"/ui/\">All runs</a></p>",
                    esc(&err.to_string())
                ),
                None,
            ),
        ),
    }))
}

fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// The ways a token given in an address may have been written: as it is, percent-decoded, and
/// form-decoded (`+` a space), without repeats.
fn token_readings(given: &str) -> Vec<String> {
    let mut readings = vec![given.to_string()];
    for plus_is_space in [false, true] {
        if let Some(decoded) = percent_decode(given, plus_is_space)
            && !readings.contains(&decoded)
        {
            readings.push(decoded);
        }
    }
    readings
}

/// `%XX` decoded (and `+` as a space when `plus_is_space`); `None` when that is not UTF-8 or a
/// `%` is not followed by two hex digits.
fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Every byte but `A-Za-z0-9-._~` as `%XX`, so any token is a valid cookie value.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn cookie_value(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn secure(mut response: Response<Body>) -> Response<Body> {
    let h = response.headers_mut();
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src data:"),
    );
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn html(status: StatusCode, body: &str) -> Response<Body> {
    secure(full_response(
        status,
        "text/html; charset=utf-8",
        body.to_string(),
    ))
}

fn redirect(to: &str, cookie: Option<String>) -> Response<Body> {
    let mut response = full_response(StatusCode::SEE_OTHER, "text/plain", "");
    if let Ok(v) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(SET_COOKIE, c);
    }
    secure(response)
}

fn login_page(status: StatusCode, why: &str) -> Response<Body> {
    html(
        status,
        &page_html(
            "chaosd: sign in",
            &format!(
                "<p class=err>{}</p><p>Open <code>/ui/?token=TOKEN</code> once with the token in \
                 chaosd's <code>token_file</code>; the browser keeps it in a cookie for this site's \
                 <code>/ui</code> pages only.</p>",
                esc(why)
            ),
            None,
        ),
    )
}

const CSS: &str = "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1f2328;margin:0;background:#f6f8fa}\
main{max-width:1100px;margin:0 auto;padding:20px}h1{font-size:20px;margin:0 0 12px}h2{font-size:16px;margin:24px 0 8px}\
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d1d9e0}\
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #d1d9e0;vertical-align:top}th{background:#f0f3f6;font-weight:600}\
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}a{color:#0969da}\
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;background:#59636e}\
.passed{background:#1a7f37}.deviated{background:#bc4c00}.aborted{background:#8250df}.not_steady{background:#9a6700}\
.error,.interrupted{background:#cf222e}.running{background:#0969da}.err{color:#cf222e}.muted{color:#59636e}\
.bar{height:8px;background:#d1d9e0;border-radius:4px;overflow:hidden;width:120px;display:inline-block;vertical-align:middle}\
.bar>span{display:block;height:100%;background:#1a7f37}";

fn page_html(title: &str, body: &str, refresh_secs: Option<u32>) -> String {
    let refresh = refresh_secs
        .map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">\n"))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n{refresh}\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n",
        esc(title)
    )
}

fn badge(verdict: &str) -> String {
    let class: String = verdict
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    format!("<span class=\"badge {class}\">{}</span>", esc(verdict))
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn duration(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let secs = (to - from).num_milliseconds().max(0) as f64 / 1000.0;
    if secs < 120.0 {
        format!("{secs:.1} s")
    } else if secs < 7200.0 {
        format!("{:.0} min {:.0} s", (secs / 60.0).floor(), secs % 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

/// `/ui/`: the runs, newest first, then the schedules.
fn index(state: &Arc<State>) -> Result<Response<Body>, ServiceError> {
    let runs = state.runs.list(LIST_LIMIT)?;
    let now = Utc::now();
    let mut b = String::from("<h1>chaosd: runs</h1>\n");
    if let Some(h) = state.runs.halted() {
        b.push_str(&format!(
            "<p class=err>Halted since {}: new runs are refused until resumed.</p>\n",
            when(h.since)
        ));
    }
    if runs.is_empty() {
        b.push_str("<p class=muted>No runs yet.</p>\n");
    } else {
        b.push_str("<table id=runs>\n<tr><th>Run</th><th>Scenario</th><th>Verdict</th><th>Started</th><th>Duration</th><th>Labels</th><th></th></tr>\n");
        for r in &runs {
            let took = match r.ended_at {
                Some(end) => duration(r.started_at, end),
                None if r.verdict == "running" => format!("{} so far", duration(r.started_at, now)),
                None => "—".into(),
            };
            let labels: Vec<String> = r
                .labels
                .iter()
                .map(|(k, v)| format!("<code>{}={}</code>", esc(k), esc(v)))
                .collect();
            let link = format!("/ui/runs/{}", esc(&r.run_id));
            let view = if r.verdict == "running" {
                "live status"
            } else {
                "report"
            };
            b.push_str(&format!(
                "<tr><td class=mono><a href=\"{link}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href=\"{link}\">{view}</a></td></tr>\n",
                esc(&r.run_id),
                esc(&r.scenario),
                badge(&r.verdict),
                when(r.started_at),
                took,
                labels.join(" "),
            ));
        }
        b.push_str("</table>\n");
    }
    let schedules = state.scheduler.list()?;
    if !schedules.is_empty() {
        b.push_str("<h2>Schedules</h2>\n<table id=schedules>\n<tr><th>Id</th><th>Scenario</th><th>Cron</th><th>Time zone</th><th>Next run</th><th>Last run</th></tr>\n");
        for s in &schedules {
            let last = match (&s.last_run_id, &s.last_error) {
                (_, Some(err)) => format!("<span class=err>{}</span>", esc(err)),
                (Some(id), None) => format!("<a class=mono href=\"/ui/runs/{0}\">{0}</a>", esc(id)),
                (None, None) => "—".into(),
            };
            b.push_str(&format!(
                "<tr><td class=mono>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{last}</td></tr>\n",
                esc(&s.id),
                esc(&s.scenario),
                esc(&s.cron),
                esc(&s.timezone),
                s.next_run.map_or_else(|| "never".into(), when),
            ));
        }
        b.push_str("</table>\n");
    }
    Ok(html(StatusCode::OK, &page_html("chaosd: runs", &b, None)))
}

/// `/ui/runs/{id}`: the report once there is one, else the live status.
fn run_page(state: &Arc<State>, id: &str) -> Result<Response<Body>, ServiceError> {
    let view = state.runs.view(id)?;
    if let Some(report) = &view.report {
        return Ok(html(StatusCode::OK, &crate::report::html::render(report)));
    }
    let run = &view.run;
    let mut b = format!(
        "<p><a href=\"/ui/\">All runs</a></p>\n<h1>{} {}</h1>\n<p class=mono>{}</p>\n<p>Started {}.</p>\n",
        esc(&run.scenario),
        badge(&run.verdict),
        esc(&run.run_id),
        when(run.started_at)
    );
    let Found::Live(live) = state.runs.find(&run.run_id)? else {
        b.push_str(
            "<p>This run has no report: chaosd ended during it, and marked it interrupted.</p>\n",
        );
        return Ok(html(StatusCode::OK, &page_html(&run.run_id, &b, None)));
    };
    let snap = live.snapshot(0);
    if let Some(status) = &snap.status {
        b.push_str(&format!("<h2 id=live>Now: {}</h2>\n", esc(&status.phase)));
        if let Some(step) = &status.step {
            b.push_str(&format!(
                "<p>Step {} of {}: {}</p>\n",
                step.index + 1,
                step.total,
                esc(&step.name)
            ));
        }
        if let Some(ms) = status.fault_left_ms {
            b.push_str(&format!(
                "<p>Fault held for {:.1} s more.</p>\n",
                ms as f64 / 1000.0
            ));
        }
        if !status.probes.is_empty() {
            b.push_str("<table id=probes>\n<tr><th>Probe</th><th>Host</th><th>Passing</th><th>Last</th></tr>\n");
            for p in &status.probes {
                let share = if p.total == 0 {
                    0.0
                } else {
                    p.passed as f64 / p.total as f64
                };
                b.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td><span class=bar><span style=\"width:{:.0}%\"></span></span> {}/{}</td><td>{}</td></tr>\n",
                    esc(&p.name),
                    esc(&p.host),
                    share * 100.0,
                    p.passed,
                    p.total,
                    match p.last_ok { Some(true) => "ok", Some(false) => "failed", None => "—" },
                ));
            }
            b.push_str("</table>\n");
        }
    }
    b.push_str("<h2>Events so far</h2>\n<table id=events>\n<tr><th>At</th><th>Kind</th><th>Message</th></tr>\n");
    for e in &snap.events {
        b.push_str(&format!(
            "<tr><td class=mono>{}</td><td>{}</td><td>{}</td></tr>\n",
            e.at.format("%H:%M:%S%.3f"),
            esc(&e.kind),
            esc(&e.message)
        ));
    }
    b.push_str("</table>\n<p class=muted>This page reloads every 2 s until the run ends.</p>\n");
    Ok(html(
        StatusCode::OK,
        &page_html(&format!("{} (running)", run.scenario), &b, Some(2)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_in_the_address_is_read_as_typed_and_url_decoded() {
        let token = "ab+c/d==";
        for given in ["ab+c/d==", "ab%2Bc%2Fd%3D%3D", "ab%2bc%2fd%3d%3d"] {
            assert!(
                token_readings(given).iter().any(|t| t == token),
                "{given}: {:?}",
                token_readings(given)
            );
        }
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(percent_decode("a%2", false), None);
        assert_eq!(percent_encode(token), "ab%2Bc%2Fd%3D%3D");
        assert_eq!(
            percent_decode(&percent_encode(token), false).as_deref(),
            Some(token)
        );
    }
}
