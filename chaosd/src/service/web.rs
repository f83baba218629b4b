//! The web view and `/metrics`.
//!
//! - `GET /` redirects to `/ui/`: the halt switch (a Halt or a Resume button), the runs (id,
//!   scenario, verdict, start, duration, labels) and the schedules with their next run.
//! - `GET /ui/runs/{id}`: a finished run's `report.html` ([`crate::report::html::render`], the
//!   same page as in the report folder: each step's status with its impact, its impact table and
//!   objectives, so the web view never has a renderer of its own to fall behind); a
//!   running run's live status (phase, step, time left on the held fault, probes, events so far)
//!   with an Abort button, which reloads itself every 2 s with `<meta http-equiv="refresh">` until
//!   the run has ended and it becomes the report. While a manual step waits for an answer
//!   ([`super::runs::QuestionSlot`]) the page shows the question with Confirm and Refuse forms,
//!   and stops reloading, so that what someone types stays. No scripts, nothing fetched from
//!   elsewhere.
//! - `POST /ui/runs/{id}/abort`, `POST /ui/halt`, `POST /ui/resume`, `POST /ui/runs/{id}/confirm`
//!   (`by`, `reason` optional) and `POST /ui/runs/{id}/refuse` (`reason` required): plain HTML
//!   forms. Each calls the same function of [`super::actions`] as the API (one code path, one
//!   audit line), then answers 303 back to the page with `?notice=` (a fixed list of words).
//! - `GET /metrics`: Prometheus text ([`crate::metrics`]).
//!
//! **Auth.** `/metrics` takes the API's bearer token (Prometheus: `authorization:
//! {credentials_file: F}`). A browser cannot send that header, so `/ui` also takes the token once
//! in the address, `/ui/?token=TOKEN`: chaosd answers with an `HttpOnly`, `SameSite=Strict`
//! cookie holding it (path `/ui`), and a random session cookie beside it, and redirects to the
//! same page without the token, so it does not stay in the address bar or history. The cookie is
//! only accepted on `/ui`: it never authorizes the API (`/v1`). Over TLS the cookies are also
//! `Secure`, so a browser never sends them over plain HTTP (chaosd serves plain HTTP only on
//! loopback). Pages send `Content-Security-Policy: default-src 'none'; form-action 'self'`
//! (inline styles only), `Referrer-Policy: same-origin` and `X-Frame-Options: DENY`.
//!
//! **Cross-site request forgery.** A cookie goes with requests that another site makes the
//! browser send, so every form `POST` is checked, in this order, before anything is done: the
//! token cookie (401); `Origin`, else `Referer`, when sent, is chaosd's own origin (403;
//! `Origin: null` is refused); the hidden `csrf` field is HMAC-SHA256(key, session id), the key
//! random per start of chaosd ([`Csrf`]) (403). `SameSite=Strict` already keeps the cookies off
//! cross-site requests in current browsers; the token and the origin check do not depend on it.
//! The JSON API takes only `Authorization: Bearer`, which a browser never adds on its own, so it
//! needs none of this.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, COOKIE, HOST, HeaderValue, LOCATION,
    ORIGIN, REFERER, REFERRER_POLICY, SET_COOKIE, X_FRAME_OPTIONS,
};
use hyper::{Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use super::State;
use super::actions::{self, Actor, Via};
use super::api::AnswerRequest;
use super::error::{Body, ServiceError, full_response};
use super::runs::Found;
use crate::report::html::esc;

/// The cookie that carries the token for `/ui` pages.
const COOKIE_NAME: &str = "chaosd_token";

/// The cookie that names a browser session: the key of its CSRF token and of its name in the
/// audit log. Random, and set beside the token cookie.
const SESSION_COOKIE: &str = "chaosd_session";

/// The form field that carries the CSRF token.
const CSRF_FIELD: &str = "csrf";

/// The largest form body read (a refusal's reason is a sentence or two).
const MAX_FORM: usize = 16 * 1024;

/// How many runs the list shows.
const LIST_LIMIT: usize = 100;

/// Whether `path` is the web view's or `/metrics` (else it is the API's).
pub fn serves(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/") || path == "/metrics"
}

/// The keys of the web view's CSRF tokens, and the origins its forms may be posted from.
///
/// A form's token is HMAC-SHA256(key, session id), so it needs no state on the server, cannot be
/// made without the key (random per start of chaosd: a page from before a restart asks to be
/// reloaded), and differs per browser session.
pub struct Csrf {
    key: [u8; 32],
    /// `public_url`'s origin (`https://chaosd.example:7410`), besides the address asked for.
    public_origin: Option<String>,
}

impl Csrf {
    pub fn new(public_url: Option<&str>) -> Csrf {
        Csrf {
            key: rand::random(),
            public_origin: public_url.and_then(origin_of),
        }
    }

    fn mac(&self, purpose: &str, session: &str) -> String {
        hex(&hmac_sha256(
            &self.key,
            format!("{purpose}\n{session}").as_bytes(),
        ))
    }

    /// The token the forms of `session` carry.
    fn token(&self, session: &str) -> String {
        self.mac("csrf", session)
    }

    /// Whether `given` is `session`'s token (compared in constant time).
    fn admits(&self, session: &str, given: &str) -> bool {
        let want = self.token(session);
        want.len() == given.len()
            && want
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// The session's name in the audit log: a digest, so the log never holds the session id.
    fn session_name(&self, session: &str) -> String {
        self.mac("name", session)[..12].to_string()
    }
}

/// HMAC-SHA256 (RFC 2104), with a key of one block or less.
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `scheme://host[:port]` of an absolute http(s) URL, lowercased.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{}", host.to_ascii_lowercase()))
}

/// Answers `/`, `/ui...` and `/metrics` (see [`serves`]).
pub async fn handle(
    state: &Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, ServiceError> {
    let path = req.uri().path().to_string();
    let path = path.as_str();
    if let Some(action) = action_of(path) {
        if req.method() != Method::POST {
            return Err(ServiceError::MethodNotAllowed {
                method: req.method().to_string(),
                path: path.to_string(),
                allow: "POST",
            });
        }
        return Ok(post(state, peer, action, req).await);
    }
    if req.method() != Method::GET {
        return Err(ServiceError::MethodNotAllowed {
            method: req.method().to_string(),
            path: path.to_string(),
            allow: "GET",
        });
    }
    let bearer = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
    if path == "/metrics" {
        if !state.token.admits(bearer) {
            return Err(ServiceError::Unauthorized);
        }
        let text = crate::metrics::global().render(
            state.runs.running().len(),
            (state.runs.node(), state.runs.store().is_leader()),
        );
        return Ok(full_response(
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            text,
        ));
    }
    if path == "/" || path == "/ui" {
        return Ok(redirect("/ui/", Vec::new()));
    }
    // `?token=` once: set the cookie, and drop the token from the address.
    if let Some(given) = query_param(req.uri().query().unwrap_or_default(), "token") {
        // A base64 token arrives as typed (`a+b/c=`), or URL-encoded by a browser or a script
        // (`a%2Bb%2Fc%3D`, or form-encoded with `+` for a space): whichever reading is the token.
        let admits = |t: &String| state.token.admits(Some(format!("Bearer {t}").as_bytes()));
        let Some(token) = token_readings(given).into_iter().find(admits) else {
            return Ok(login_page(StatusCode::UNAUTHORIZED, "That token is wrong."));
        };
        let cookies = vec![
            cookie(state, COOKIE_NAME, &percent_encode(&token)),
            cookie(state, SESSION_COOKIE, &new_session()),
        ];
        return Ok(redirect(path, cookies));
    }
    if !(state.token.admits(bearer) || by_cookie(state, &req)) {
        return Ok(login_page(
            StatusCode::UNAUTHORIZED,
            "This page needs chaosd's API token.",
        ));
    }
    // Every page's forms carry the session's CSRF token; a browser without a session (a cookie
    // from an older chaosd, or a script with the bearer token) gets one now.
    let (session, set_session) = match session_of(&req) {
        Some(session) => (session, None),
        None => {
            let session = new_session();
            let set = cookie(state, SESSION_COOKIE, &session);
            (session, Some(set))
        }
    };
    let page = Page {
        csrf: state.csrf.token(&session),
        notice: query_param(req.uri().query().unwrap_or_default(), "notice").and_then(notice_text),
    };
    let answer = match path.trim_end_matches('/') {
        "/ui" => index(state, &page),
        rest => match rest.strip_prefix("/ui/runs/") {
            Some(id) if !id.is_empty() && !id.contains('/') => run_page(state, id, &page),
            _ => Err(ServiceError::NotFound(format!("no page `{path}`"))),
        },
    };
    let mut response = answer.unwrap_or_else(|err| error_page(&err));
    if let Some(set) = set_session.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().append(SET_COOKIE, set);
    }
    Ok(response)
}

/// What a page needs beyond the data it shows.
struct Page {
    /// The token its forms carry.
    csrf: String,
    /// What the action that led here did (from `?notice=`).
    notice: Option<&'static str>,
}

/// A form action of the web view: the path it is posted to names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action<'a> {
    Abort(&'a str),
    Halt,
    Resume,
    /// `true` to confirm, `false` to refuse.
    Answer(&'a str, bool),
}

fn action_of(path: &str) -> Option<Action<'_>> {
    let rest = path.strip_prefix("/ui/")?;
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["halt"] => Some(Action::Halt),
        ["resume"] => Some(Action::Resume),
        ["runs", id, "abort"] if !id.is_empty() => Some(Action::Abort(id)),
        ["runs", id, "confirm"] if !id.is_empty() => Some(Action::Answer(id, true)),
        ["runs", id, "refuse"] if !id.is_empty() => Some(Action::Answer(id, false)),
        _ => None,
    }
}

/// A form's POST, checked in this order, each refusal leaving everything as it was: the token
/// cookie (401), the origin (403), the body (413, 400), the CSRF token (403); then the action,
/// through [`actions`] as the API's, and a 303 back to the page with a notice.
async fn post(
    state: &Arc<State>,
    peer: SocketAddr,
    action: Action<'_>,
    req: Request<Incoming>,
) -> Response<Body> {
    let session = session_of(&req);
    let mut actor = Actor {
        via: Via::Web {
            session: session
                .as_deref()
                .map_or_else(|| "(none)".to_string(), |s| state.csrf.session_name(s)),
        },
        remote: peer,
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
    };
    let run = match action {
        Action::Abort(id) | Action::Answer(id, _) => Some(id.to_string()),
        Action::Halt | Action::Resume => None,
    };
    let event = match action {
        Action::Abort(_) => "abort",
        Action::Halt => "halt",
        Action::Resume => "resume",
        Action::Answer(_, true) => "confirm",
        Action::Answer(_, false) => "refuse",
    };
    // A refused form is audited too: someone tried to act.
    let refuse = |actor: &Actor, err: ServiceError| {
        actions::audit_refusal(state, actor, event, run.as_deref(), &err);
        err
    };
    if !by_cookie(state, &req) {
        actor.via = Via::Anonymous;
        refuse(&actor, ServiceError::Unauthorized);
        return login_page(
            StatusCode::UNAUTHORIZED,
            "This action needs chaosd's API token: open the page with `?token=TOKEN` first.",
        );
    }
    if let Err(why) = same_origin(state, &req) {
        return error_page(&refuse(&actor, ServiceError::Forbidden(why)));
    }
    let form = match read_form(req).await {
        Ok(form) => form,
        Err(err) => return error_page(&refuse(&actor, err)),
    };
    let given = form_value(&form, CSRF_FIELD).unwrap_or_default();
    let csrf_ok = session
        .as_deref()
        .is_some_and(|s| !given.is_empty() && state.csrf.admits(s, &given));
    if !csrf_ok {
        let why = "refused: this form's CSRF token is missing or wrong (a form from another site, \
                   or a page from before chaosd restarted); nothing was done. Reload the page and \
                   try again";
        return error_page(&refuse(&actor, ServiceError::Forbidden(why.to_string())));
    }
    let done = match action {
        Action::Abort(id) => actions::abort(state, &actor, id).map(|r| {
            let notice = if r.aborted {
                "aborted"
            } else {
                "already-aborted"
            };
            back_to_run(&r.run_id, notice)
        }),
        Action::Halt => actions::halt(state, &actor).map(|_| "/ui/?notice=halted".to_string()),
        Action::Resume => actions::resume(state, &actor).map(|_| "/ui/?notice=resumed".to_string()),
        Action::Answer(id, confirmed) => {
            let req = AnswerRequest {
                by: form_value(&form, "by"),
                reason: form_value(&form, "reason"),
                // The step the page asked about: a page left open never answers a later step.
                step: form_value(&form, "step").and_then(|s| s.parse().ok()),
            };
            actions::answer(state, &actor, id, confirmed, req)
                .map(|r| back_to_run(&r.run_id, if r.confirmed { "confirmed" } else { "refused" }))
        }
    };
    match done {
        Ok(to) => redirect(&to, Vec::new()),
        Err(err) => error_page(&err),
    }
}

fn back_to_run(run_id: &str, notice: &str) -> String {
    format!("/ui/runs/{}?notice={notice}", percent_encode(run_id))
}

/// The words for `?notice=`: a fixed list, so an address cannot put text of its own on a page.
fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "aborted" => "You aborted this run: chaosd is reverting its faults.",
        "already-aborted" => "This run had been asked to stop already; it is reverting its faults.",
        "halted" => {
            "chaosd is halted: every running run was aborted, and new runs are refused until resumed."
        }
        "resumed" => "chaosd is resumed: new runs are accepted again.",
        "confirmed" => "You confirmed the step; the run goes on.",
        "refused" => "You refused the step.",
        _ => return None,
    })
}

/// Refuses a form posted from another site: `Origin` (else `Referer`), when sent, must be
/// chaosd's own origin (the address the browser asked for, or `public_url`'s). A browser sends
/// `Origin: null` for a post from an opaque origin (a sandboxed frame, a `data:` page), which is
/// refused too. Without either header the CSRF token alone decides.
fn same_origin(state: &State, req: &Request<Incoming>) -> Result<(), String> {
    let header = |name| {
        req.headers()
            .get(name)
            .map(|v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let (what, sent) = match (header(ORIGIN), header(REFERER)) {
        (Some(origin), _) => ("Origin", origin),
        (None, Some(referer)) => ("Referer", referer),
        (None, None) => return Ok(()),
    };
    let host = header(HOST).or_else(|| req.uri().authority().map(|a| a.to_string()));
    let scheme = if state.tls { "https" } else { "http" };
    let ours = host.map(|h| format!("{scheme}://{}", h.to_ascii_lowercase()));
    let theirs = origin_of(&sent);
    let matches = |o: &Option<String>| o.is_some() && *o == theirs;
    if matches(&ours) || matches(&state.csrf.public_origin) {
        Ok(())
    } else {
        Err(format!(
            "refused: this form was posted from another site ({what}: {sent}), not from chaosd's \
             own pages; nothing was done"
        ))
    }
}

/// Reads an `application/x-www-form-urlencoded` body into its (decoded) pairs.
async fn read_form(req: Request<Incoming>) -> Result<Vec<(String, String)>, ServiceError> {
    let bytes = match Limited::new(req.into_body(), MAX_FORM).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            return Err(ServiceError::BadRequest(format!(
                "the form is over {MAX_FORM} bytes"
            )));
        }
        Err(err) => {
            return Err(ServiceError::BadRequest(format!(
                "cannot read the form: {err}"
            )));
        }
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ServiceError::BadRequest("the form is not UTF-8".to_string()))?;
    text.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match (percent_decode(k, true), percent_decode(v, true)) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err(ServiceError::BadRequest(format!(
                    "the form field `{k}` is not URL-encoded UTF-8"
                ))),
            }
        })
        .collect()
}

fn form_value(form: &[(String, String)], name: &str) -> Option<String> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// Whether the request carries the token cookie with the right token.
fn by_cookie(state: &State, req: &Request<Incoming>) -> bool {
    cookie_value(req, COOKIE_NAME).is_some_and(|value| {
        // The cookie holds the token percent-encoded (older chaosd: as it was).
        token_readings(&value)
            .iter()
            .any(|t| state.token.admits(Some(format!("Bearer {t}").as_bytes())))
    })
}

/// The session id from its cookie, when it looks like one of ours.
fn session_of(req: &Request<Incoming>) -> Option<String> {
    cookie_value(req, SESSION_COOKIE)
        .filter(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn new_session() -> String {
    hex(&rand::random::<[u8; 16]>())
}

/// A `/ui` cookie: `HttpOnly`, `SameSite=Strict` (a browser does not send it with a request
/// another site started), and `Secure` over TLS.
fn cookie(state: &State, name: &str, value: &str) -> String {
    let secure = if state.tls { "; Secure" } else { "" };
    format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict{secure}")
}

fn error_page(err: &ServiceError) -> Response<Body> {
    html(
        err.status(),
        &page_html(
            "chaosd",
            &format!(
                "<p class=err id=error>{}</p><p><a href=\"/ui/\">All runs</a></p>",
                esc(&err.to_string())
            ),
            None,
        ),
    )
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
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'",
        ),
    );
    // `same-origin`, not `no-referrer`: under `no-referrer` a browser sends `Origin: null` with
    // every form, and the forms' origin check could not tell our pages from a foreign one.
    // Links to other sites still carry no referrer.
    h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
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

/// A 303: after a form, the browser gets the page with GET, so a reload does not post again.
fn redirect(to: &str, cookies: Vec<String>) -> Response<Body> {
    let mut response = full_response(StatusCode::SEE_OTHER, "text/plain", "");
    if let Ok(v) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, v);
    }
    for c in cookies.iter().filter_map(|c| HeaderValue::from_str(c).ok()) {
        response.headers_mut().append(SET_COOKIE, c);
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

/// A form that posts to `action` with the session's CSRF token and a submit button; `fields`
/// go before the button.
fn form(page: &Page, id: &str, action: &str, fields: &str, button: &str) -> String {
    format!(
        "<form id={id} method=post action=\"{}\"><input type=hidden name={CSRF_FIELD} value=\"{}\">{fields}<button type=submit>{}</button></form>\n",
        esc(action),
        esc(&page.csrf),
        esc(button)
    )
}

fn notice_html(page: &Page) -> String {
    page.notice
        .map(|text| {
            format!(
                "<p class=notice id=notice role=status style=\"{NOTICE_STYLE}\">{}</p>\n",
                esc(text)
            )
        })
        .unwrap_or_default()
}

/// Inline, so that the notice looks the same on the report page, whose styles are its own.
const NOTICE_STYLE: &str = "background:#ddf4ff;border:1px solid #54aeff;border-radius:6px;padding:8px 12px;font-weight:600";

/// `/ui/`: the halt switch, the runs, newest first, then the schedules.
fn index(state: &Arc<State>, page: &Page) -> Result<Response<Body>, ServiceError> {
    let runs = state.runs.list(LIST_LIMIT)?;
    let now = Utc::now();
    let mut b = String::from("<h1>chaosd: runs</h1>\n");
    b.push_str(&notice_html(page));
    if let Some(h) = state.runs.halted() {
        b.push_str(&format!(
            "<p class=err>Halted since {}: new runs are refused until resumed.</p>\n",
            when(h.since)
        ));
        b.push_str(&form(
            page,
            "resume",
            "/ui/resume",
            "",
            "Resume: accept new runs again",
        ));
    } else {
        b.push_str(&form(
            page,
            "halt",
            "/ui/halt",
            "",
            "Halt: abort every running run and refuse new ones",
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

/// `/ui/runs/{id}`: the report once there is one, else the live status with the abort button,
/// and the confirm and refuse forms while a manual step waits for an answer.
fn run_page(state: &Arc<State>, id: &str, page: &Page) -> Result<Response<Body>, ServiceError> {
    let view = state.runs.view(id)?;
    if let Some(report) = &view.report {
        let mut text = crate::report::html::render(report);
        // The report is the same page as in the report folder; the notice goes above it.
        if let Some(at) = text.find("<main>\n") {
            text.insert_str(at + "<main>\n".len(), &notice_html(page));
        }
        return Ok(html(StatusCode::OK, &text));
    }
    let run = &view.run;
    let mut b = format!(
        "<p><a href=\"/ui/\">All runs</a></p>\n{}<h1>{} {}</h1>\n<p class=mono>{}</p>\n<p>Started {}.</p>\n",
        notice_html(page),
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
    let run_path = format!("/ui/runs/{}", percent_encode(&live.run_id));
    b.push_str(&form(
        page,
        "abort",
        &format!("{run_path}/abort"),
        "",
        "Abort this run (its faults are reverted)",
    ));
    // Straight from the run's answers rather than the status, which may not have been sent yet.
    let question = live.waiting();
    if let Some(q) = &question {
        let by = format!(
            "<input type=hidden name=step value={}><label>Your name <input name=by maxlength=200></label> ",
            q.step
        );
        b.push_str(&format!(
            "<h2 id=question>Step {} `{}` waits for an answer since {}</h2>\n<p>{}</p>\n",
            q.step + 1,
            esc(&q.name),
            when(q.asked_at),
            esc(&q.prompt)
        ));
        b.push_str(&form(
            page,
            "confirm",
            &format!("{run_path}/confirm"),
            &format!("{by}<label>Note <input name=reason maxlength=2000></label> "),
            "Confirm: go on",
        ));
        b.push_str(&form(
            page,
            "refuse",
            &format!("{run_path}/refuse"),
            &format!("{by}<label>Why <input name=reason maxlength=2000></label> "),
            "Refuse",
        ));
    }
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
    b.push_str("</table>\n");
    // While a question waits, a reload would wipe what the person is typing; the run waits too.
    let refresh = if question.is_some() {
        b.push_str(
            "<p class=muted>This page does not reload itself while the question waits.</p>\n",
        );
        None
    } else {
        b.push_str("<p class=muted>This page reloads every 2 s until the run ends.</p>\n");
        Some(2)
    };
    Ok(html(
        StatusCode::OK,
        &page_html(&format!("{} (running)", run.scenario), &b, refresh),
    ))
}

/// The readings of a token given in an address, and whether a value survives the cookie's
/// encoding (for the fuzz targets in `fuzz/`).
#[doc(hidden)]
pub fn token_readings_for_fuzzing(given: &str) -> (Vec<String>, bool) {
    let round_trip = percent_decode(&percent_encode(given), false).as_deref() == Some(given);
    (token_readings(given), round_trip)
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

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2: key "Jefe" (a key shorter than a block is zero-padded, as here).
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex(&hmac_sha256(&key, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_csrf_token_is_its_sessions_only() {
        let csrf = Csrf::new(None);
        let (a, b) = (new_session(), new_session());
        assert_ne!(a, b);
        assert!(csrf.admits(&a, &csrf.token(&a)));
        assert!(!csrf.admits(&a, &csrf.token(&b)));
        assert!(!csrf.admits(&a, ""));
        // Another chaosd start (another key) makes older pages' tokens wrong.
        assert!(!Csrf::new(None).admits(&a, &csrf.token(&a)));
        assert_eq!(csrf.session_name(&a).len(), 12);
        assert!(!csrf.token(&a).contains(&a));
    }

    #[test]
    fn origins_and_actions() {
        assert_eq!(
            origin_of("https://Chaosd.example:7410/ui/runs/x?notice=1").as_deref(),
            Some("https://chaosd.example:7410")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:7410").as_deref(),
            Some("http://127.0.0.1:7410")
        );
        for bad in ["null", "file:///etc", "data:text/html,x", "https://"] {
            assert_eq!(origin_of(bad), None, "{bad}");
        }
        assert_eq!(action_of("/ui/halt"), Some(Action::Halt));
        assert_eq!(action_of("/ui/resume"), Some(Action::Resume));
        assert_eq!(action_of("/ui/runs/r1/abort"), Some(Action::Abort("r1")));
        assert_eq!(
            action_of("/ui/runs/r1/confirm"),
            Some(Action::Answer("r1", true))
        );
        assert_eq!(
            action_of("/ui/runs/r1/refuse"),
            Some(Action::Answer("r1", false))
        );
        for page in ["/ui/", "/ui/runs/r1", "/ui/runs//abort", "/ui/halt/x"] {
            assert_eq!(action_of(page), None, "{page}");
        }
        assert!(notice_text("aborted").is_some());
        assert_eq!(notice_text("<script>"), None);
    }
}
