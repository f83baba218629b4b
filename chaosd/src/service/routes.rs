//! The routes and their handlers. Every request goes through the same checks, in this order:
//! `GET /healthz` answers without a token; then the bearer token (401, nothing else looked at);
//! then the route (404, 405); then the body (413, 400); and only then the handler.
//!
//! To add a route: a variant of [`Route`], its line in [`route`] (path segments and method), its
//! arm in [`dispatch`] calling a small handler. Schedules (`/v1/schedules...`), metrics
//! (`/metrics`, before the token check if it is to be scraped openly) and the web view (`/ui...`)
//! go in the same three places.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::debug;

use agent::http::body::BodyError;

use super::State;
use super::actions::{self, Actor, Via};
use super::api::{
    self, AgentList, AgentView, AnswerRequest, RunList, ServiceStatus, StreamLine, SubmitRequest,
};
use super::error::{Body, ServiceError, full_response, json_response};
use super::runs::{Found, end_line};

type Answer = Result<Response<Body>, ServiceError>;

/// How many runs `GET /v1/runs` lists without `?limit=`.
const DEFAULT_LIMIT: usize = 50;

/// What a request asks for, once its path and method are known.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Status,
    Submit,
    List,
    Get(&'a str),
    Events(&'a str),
    Report(&'a str),
    Abort(&'a str),
    /// `confirm` (true) or `refuse` (false) a waiting `manual` step.
    Answer(&'a str, bool),
    Halt,
    Resume,
    Agents,
    Schedules,
    AddSchedule,
    RemoveSchedule(&'a str),
}

/// Answers one request from `peer`.
pub async fn handle(state: Arc<State>, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let answer = if method == Method::GET && path == "/healthz" {
        Ok(full_response(StatusCode::OK, "text/plain", "ok\n"))
    } else if super::web::serves(&path) {
        // `/metrics` and the web view (`/`, `/ui/...`): their own token checks, in `web`.
        super::web::handle(&state, peer, req).await
    } else {
        let header = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
        if state.token.admits(header) {
            let actor = Actor {
                via: Via::Api,
                remote: peer,
                method: method.to_string(),
                path: path.clone(),
            };
            dispatch(&state, &actor, req).await
        } else {
            Err(ServiceError::Unauthorized)
        }
    };
    let response = answer.unwrap_or_else(ServiceError::into_response);
    debug!(%method, path, status = response.status().as_u16(), "request");
    response
}

async fn dispatch(state: &Arc<State>, actor: &Actor, req: Request<Incoming>) -> Answer {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let route = route(req.method(), &path)?;
    match route {
        Route::Status => status(state),
        Route::Submit => {
            let body: SubmitRequest = read_json(req).await?;
            let created = state.runs.submit(body)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        Route::List => {
            let limit = match param(&query, "limit") {
                Some(n) => n.parse().map_err(|_| {
                    ServiceError::BadRequest(format!("`limit={n}` is not a number"))
                })?,
                None => DEFAULT_LIMIT,
            };
            let runs = state.runs.list(limit)?;
            Ok(json_response(StatusCode::OK, &RunList { runs }))
        }
        Route::Get(id) => Ok(json_response(StatusCode::OK, &state.runs.view(id)?)),
        Route::Events(id) => events(state, id),
        Route::Report(id) => report(state, id, param(&query, "format").unwrap_or("json")),
        Route::Abort(id) => Ok(json_response(
            StatusCode::OK,
            &actions::abort(state, actor, id)?,
        )),
        Route::Answer(id, confirmed) => {
            let body = read_answer(req).await?;
            Ok(json_response(
                StatusCode::OK,
                &actions::answer(state, actor, id, confirmed, body)?,
            ))
        }
        Route::Halt => Ok(json_response(StatusCode::OK, &actions::halt(state, actor)?)),
        Route::Resume => Ok(json_response(
            StatusCode::OK,
            &actions::resume(state, actor)?,
        )),
        Route::Agents => agents(state).await,
        Route::Schedules => Ok(json_response(
            StatusCode::OK,
            &crate::schedule::api::ScheduleList {
                schedules: state.scheduler.list()?,
            },
        )),
        Route::AddSchedule => {
            let body: crate::schedule::api::CreateSchedule = read_json(req).await?;
            let created = state.scheduler.add(body)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        Route::RemoveSchedule(id) => {
            Ok(json_response(StatusCode::OK, &state.scheduler.remove(id)?))
        }
    }
}

/// Maps a method and path to a route: 404 for a path we do not serve, 405 (with `Allow`) for a
/// path we serve with another method.
fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, ServiceError> {
    let not_found = || ServiceError::NotFound(format!("no route `{path}`; the API is under `/v1`"));
    let Some(segments) = agent::http::segments_under(api::PREFIX, path) else {
        return Err(not_found());
    };
    let (allow, route) = match (segments.as_slice(), method.as_str()) {
        (["status"], _) => ("GET", Route::Status),
        (["runs"], "POST") => ("POST", Route::Submit),
        (["runs"], _) => ("GET, POST", Route::List),
        (["runs", id], _) => ("GET", Route::Get(id)),
        (["runs", id, "events"], _) => ("GET", Route::Events(id)),
        (["runs", id, "report"], _) => ("GET", Route::Report(id)),
        (["runs", id, "abort"], _) => ("POST", Route::Abort(id)),
        (["runs", id, "confirm"], _) => ("POST", Route::Answer(id, true)),
        (["runs", id, "refuse"], _) => ("POST", Route::Answer(id, false)),
        (["halt"], _) => ("POST", Route::Halt),
        (["resume"], _) => ("POST", Route::Resume),
        (["agents"], _) => ("GET", Route::Agents),
        (["schedules"], "POST") => ("POST", Route::AddSchedule),
        (["schedules"], _) => ("GET, POST", Route::Schedules),
        (["schedules", id], _) => ("DELETE", Route::RemoveSchedule(id)),
        _ => return Err(not_found()),
    };
    if !allow.split(", ").any(|m| m == method.as_str()) {
        return Err(ServiceError::MethodNotAllowed {
            method: method.to_string(),
            path: path.to_string(),
            allow,
        });
    }
    Ok(route)
}

/// The value of `name` in a query string (`a=1&b=2`); no percent-decoding (values are words).
fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Reads a JSON body of at most [`api::MAX_BODY`] bytes.
async fn read_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ServiceError> {
    agent::http::body::read_json(req, api::MAX_BODY)
        .await
        .map_err(|err| match err {
            BodyError::TooLarge => ServiceError::TooLarge,
            BodyError::TooSlow => ServiceError::TooSlow,
            BodyError::Bad(message) => ServiceError::BadRequest(message),
        })
}

/// The body of confirm and refuse: [`AnswerRequest`], where an empty body means `{}`.
async fn read_answer(req: Request<Incoming>) -> Result<AnswerRequest, ServiceError> {
    let empty = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() == b"0");
    if empty {
        return Ok(AnswerRequest::default());
    }
    read_json(req).await
}

fn status(state: &Arc<State>) -> Answer {
    let halt = state.runs.halted();
    Ok(json_response(
        StatusCode::OK,
        &ServiceStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            halted: halt.is_some(),
            halted_since: halt.map(|h| h.since),
            running: state.runs.running(),
            allow_local: state.runs.allow_local(),
            node: state.runs.node().to_string(),
            leader: state.runs.store().is_leader(),
            store: state.runs.store().kind().to_string(),
        },
    ))
}

/// `GET /v1/runs/{id}/report?format=json|md|html|junit`.
fn report(state: &Arc<State>, id: &str, format: &str) -> Answer {
    let (content_type, render): (&'static str, fn(&crate::report::model::Report) -> String) =
        match format {
            "json" => ("application/json", |r| {
                serde_json::to_string_pretty(r).unwrap_or_default() + "\n"
            }),
            "md" => (
                "text/markdown; charset=utf-8",
                crate::report::markdown::render,
            ),
            "html" => ("text/html; charset=utf-8", crate::report::html::render),
            "junit" => ("application/xml", crate::report::junit::render),
            other => {
                return Err(ServiceError::BadRequest(format!(
                    "unknown report format `{other}`; use json, md, html or junit"
                )));
            }
        };
    let view = state.runs.view(id)?;
    let Some(report) = view.report else {
        return Err(ServiceError::Conflict(format!(
            "run `{}` has no report ({}); it is still running, or chaosd died during it",
            view.run.run_id, view.run.verdict
        )));
    };
    Ok(full_response(StatusCode::OK, content_type, render(&report)))
}

/// `GET /v1/runs/{id}/events`: newline-delimited JSON, every event so far, then live ones, then
/// one `end` line.
fn events(state: &Arc<State>, id: &str) -> Answer {
    let found = state.runs.find(id)?;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let send = |line: &StreamLine| {
            let mut bytes = serde_json::to_vec(line).unwrap_or_default();
            bytes.push(b'\n');
            Bytes::from(bytes)
        };
        match found {
            Found::Done { record, report } => {
                for event in report.iter().flat_map(|r| r.events.iter()) {
                    if tx
                        .send(send(&StreamLine::Event(event.clone())))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                let _ = tx
                    .send(send(&end_line(
                        report.as_deref(),
                        record.report_dir.clone(),
                    )))
                    .await;
            }
            Found::Live(live) => {
                let mut changed = live.subscribe();
                let mut sent = 0;
                let mut last_status = None;
                loop {
                    changed.borrow_and_update();
                    let snap = live.snapshot(sent);
                    sent += snap.events.len();
                    for event in snap.events {
                        if tx.send(send(&StreamLine::Event(event))).await.is_err() {
                            return;
                        }
                    }
                    if let Some(end) = snap.end {
                        let _ = tx.send(send(&end)).await;
                        return;
                    }
                    if snap.status.is_some() && snap.status != last_status {
                        let status = snap.status.clone().expect("checked");
                        if tx.send(send(&StreamLine::Status { status })).await.is_err() {
                            return;
                        }
                        last_status = snap.status;
                    }
                    tokio::select! {
                        res = changed.changed() => if res.is_err() { return },
                        () = tx.closed() => return,
                    }
                }
            }
        }
    });
    let mut response = Response::new(BodyExt::boxed(ChannelBody(rx)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

/// A response body fed from a channel, a chunk per line.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// `GET /v1/agents`: every agent of the inventory, asked at once.
async fn agents(state: &Arc<State>) -> Answer {
    let Some(inventory) = &state.inventory else {
        return Ok(json_response(
            StatusCode::OK,
            &AgentList { agents: Vec::new() },
        ));
    };
    let hosts = crate::scenario::load_inventory(inventory, &state.load_options())
        .map_err(|err| ServiceError::Internal(format!("the inventory is wrong now: {err}")))?;
    // The runs' kept clients: asking every agent reuses their connections and TLS sessions.
    let mut clients = state.runs.agent_clients();
    let asks: Vec<_> = hosts
        .into_values()
        .filter_map(|host| {
            let url = host.agent.clone()?;
            let target = agent::client::AgentTarget {
                host: host.name.clone(),
                url: url.clone(),
                token_file: host.token_file.clone(),
                ca_file: host.ca_file.clone(),
                cert_file: host.cert_file.clone(),
                key_file: host.key_file.clone(),
            };
            let client = clients.client(&target);
            Some(tokio::spawn(async move {
                let health = match client {
                    Ok(client) => client.health().await.map_err(|e| e.to_string()),
                    Err(err) => Err(err.to_string()),
                };
                match health {
                    Ok(health) => AgentView {
                        host: target.host,
                        url,
                        reachable: true,
                        health: Some(health),
                        error: None,
                    },
                    Err(error) => AgentView {
                        host: target.host,
                        url,
                        reachable: false,
                        health: None,
                        error: Some(error),
                    },
                }
            }))
        })
        .collect();
    let mut agents = Vec::new();
    for ask in asks {
        agents.push(
            ask.await
                .map_err(|e| ServiceError::Internal(format!("asking an agent panicked: {e}")))?,
        );
    }
    Ok(json_response(StatusCode::OK, &AgentList { agents }))
}

/// The route a method and path reach, or why none (for the fuzz targets in `fuzz/`).
#[doc(hidden)]
pub fn route_for_fuzzing(method: &[u8], path: &str) -> Result<String, String> {
    let method = Method::from_bytes(method).map_err(|err| err.to_string())?;
    route(&method, path)
        .map(|r| format!("{r:?}"))
        .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_methods() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(route(&post, "/v1/runs").unwrap(), Route::Submit);
        assert_eq!(route(&get, "/v1/runs").unwrap(), Route::List);
        assert_eq!(route(&get, "/v1/runs/abc").unwrap(), Route::Get("abc"));
        assert_eq!(
            route(&get, "/v1/runs/abc/events").unwrap(),
            Route::Events("abc")
        );
        assert_eq!(
            route(&post, "/v1/runs/abc/abort").unwrap(),
            Route::Abort("abc")
        );
        assert_eq!(
            route(&post, "/v1/runs/abc/confirm").unwrap(),
            Route::Answer("abc", true)
        );
        assert_eq!(
            route(&post, "/v1/runs/abc/refuse").unwrap(),
            Route::Answer("abc", false)
        );
        assert_eq!(route(&post, "/v1/halt").unwrap(), Route::Halt);
        assert!(matches!(
            route(&get, "/v1/halt"),
            Err(ServiceError::MethodNotAllowed { allow: "POST", .. })
        ));
        assert!(matches!(
            route(&Method::DELETE, "/v1/runs"),
            Err(ServiceError::MethodNotAllowed { .. })
        ));
        for bad in ["/", "/v2/runs", "/v1/runs/", "/v1//runs", "/v1/nope"] {
            assert!(
                matches!(route(&get, bad), Err(ServiceError::NotFound(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn query_params() {
        assert_eq!(param("format=md&x=1", "format"), Some("md"));
        assert_eq!(param("x=1", "format"), None);
        assert_eq!(param("", "format"), None);
    }
}
