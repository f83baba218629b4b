//! The routes and their handlers. Every request goes through the same checks, in this order:
//! `GET /healthz` answers without a token; then the bearer token (401, nothing else looked at);
//! then the route (404, 405); then the body (413, 400); then the shutdown, one-run, policy and id
//! checks (503, 409, 403, 400); and only then does anything touch the host. Each request leaves one
//! line in the audit log.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;

use super::error::{ServerError, fault_api_error, json_response};
use super::policy::{Policy, Refusal};
use super::{State, blocking, revert_response};
use crate::api::{
    self, ApplyRequest, ApplyResponse, ApplyResult, FaultOrder, FaultsResponse, Health,
    LeaseRequest, LeaseResponse, PreflightRequest, PreflightResponse, ProbeRequest, ProbeResponse,
    RevertAllResponse,
};
use crate::error::FaultError;
use crate::fault::{self, Resolved};
use crate::http::audit::{Record, outcome_of};
use crate::http::body::BodyError;
use crate::http::segments_under;
use crate::local::InjectRequest;
use crate::spec::{Exempt, FaultSpec, MAX_HOLD};

type Answer = Result<Response<Full<Bytes>>, ServerError>;

/// What a request asks for, once its path and method are known.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Health,
    Faults,
    RevertAll,
    Probe,
    Command,
    Preflight(&'a str),
    Apply(&'a str),
    RevertFault(&'a str, &'a str),
    RevertRun(&'a str),
    Lease(&'a str),
}

impl Route<'_> {
    fn run(&self) -> Option<&str> {
        match self {
            Route::Preflight(run)
            | Route::Apply(run)
            | Route::RevertFault(run, _)
            | Route::RevertRun(run)
            | Route::Lease(run) => Some(run),
            Route::Health | Route::Faults | Route::RevertAll | Route::Probe | Route::Command => {
                None
            }
        }
    }
}

/// Answers one request and writes its audit line.
pub async fn handle(
    state: Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut record = Record::request(peer, method.as_str(), &path);

    let answer = if method == Method::GET && path == "/healthz" {
        Ok(text_response(StatusCode::OK, "ok"))
    } else {
        let header = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
        let token_ok = state.token.admits(header);
        record.token_ok = Some(token_ok);
        if token_ok && method == Method::GET && path == "/metrics" {
            let active = state.agent.active().len();
            let mut response = Response::new(Full::new(Bytes::from(
                super::metrics::agent().render(active),
            )));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static(crate::http::metrics::CONTENT_TYPE),
            );
            Ok(response)
        } else if token_ok {
            dispatch(&state, peer, req, &mut record).await
        } else {
            Err(ServerError::Unauthorized)
        }
    };
    let response = match answer {
        Ok(response) => response,
        Err(err) => {
            if record.detail.is_empty() {
                record.detail = err.to_string();
            }
            err.into_response()
        }
    };
    record.status = response.status().as_u16();
    super::metrics::agent()
        .requests
        .inc(&[&record.status.to_string()]);
    if record.outcome.is_empty() {
        record.outcome = outcome_of(record.status);
    }
    state.audit.write(&record);
    response
}

async fn dispatch(
    state: &Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
    record: &mut Record,
) -> Answer {
    let path = req.uri().path().to_string();
    let route = route(req.method(), &path)?;
    if let Some(run) = route.run() {
        record.run = Some(run.to_string());
        check_id("run", run)?;
    }
    match route {
        Route::Health => health(state).await,
        Route::Faults => Ok(json_response(
            StatusCode::OK,
            &FaultsResponse {
                faults: state.agent.active(),
            },
        )),
        Route::RevertAll => revert_all(state, record).await,
        Route::Probe => probe(state, read_json(req).await?, record).await,
        Route::Command => run_command(state, read_json(req).await?, record).await,
        Route::Preflight(run) => preflight(state, run, read_json(req).await?, record).await,
        Route::Apply(run) => apply(state, peer, run, read_json(req).await?, record).await,
        Route::RevertFault(run, fault) => revert_fault(state, run, fault, record).await,
        Route::RevertRun(run) => {
            let results = state.revert_run(run).await;
            state.leases.end(run);
            record.detail = summarize_reverts(&results);
            if results.iter().any(|r| r.error.is_some()) {
                record.outcome = "failed";
            }
            Ok(json_response(
                StatusCode::OK,
                &RevertAllResponse { results },
            ))
        }
        Route::Lease(run) => {
            let LeaseRequest { lease_ms } = read_json(req).await?;
            let lease = lease_of(lease_ms)?;
            state.leases.renew(run, lease);
            let faults = state
                .agent
                .active()
                .iter()
                .filter(|f| f.run_id == run)
                .count();
            record.detail = format!("lease {lease_ms}ms; {faults} fault(s) held");
            Ok(json_response(StatusCode::OK, &LeaseResponse { faults }))
        }
    }
}

/// Maps a method and path to a route: 404 for a path we do not serve, 405 (with `Allow`) for a
/// path we serve with another method.
fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, ServerError> {
    let not_found = || ServerError::NotFound(format!("no route `{path}`; the API is under `/v1`"));
    let Some(segments) = segments_under(api::PREFIX, path) else {
        return Err(not_found());
    };
    let (allow, route) = match segments.as_slice() {
        ["health"] => ("GET", Route::Health),
        ["faults"] => ("GET", Route::Faults),
        ["revert-all"] => ("POST", Route::RevertAll),
        ["probe"] => ("POST", Route::Probe),
        ["commands"] => ("POST", Route::Command),
        ["runs", run] => ("DELETE", Route::RevertRun(run)),
        ["runs", run, "preflight"] => ("POST", Route::Preflight(run)),
        ["runs", run, "faults"] => ("POST", Route::Apply(run)),
        ["runs", run, "faults", fault] => ("DELETE", Route::RevertFault(run, fault)),
        ["runs", run, "lease"] => ("POST", Route::Lease(run)),
        _ => return Err(not_found()),
    };
    if method.as_str() != allow {
        return Err(ServerError::MethodNotAllowed {
            method: method.to_string(),
            path: path.to_string(),
            allow,
        });
    }
    Ok(route)
}

/// Run and fault ids: 1 to 128 letters, digits, `-`, `_` or `.`, not starting with `.`.
fn check_id(what: &str, id: &str) -> Result<(), ServerError> {
    let plain = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain {
        Ok(())
    } else {
        Err(ServerError::BadRequest(format!(
            "invalid {what} id `{id}`: use 1 to 128 letters, digits, `-`, `_` or `.`, not starting with `.`"
        )))
    }
}

fn lease_of(lease_ms: u64) -> Result<Duration, ServerError> {
    if lease_ms == 0 {
        return Err(ServerError::BadRequest(
            "lease_ms must be above 0: it is how long the agent waits for the controller before reverting"
                .to_string(),
        ));
    }
    let lease = Duration::from_millis(lease_ms);
    if lease > MAX_HOLD {
        return Err(ServerError::BadRequest(format!(
            "lease_ms {lease_ms} is over the limit of {} (7 days); renew the lease more often instead",
            MAX_HOLD.as_millis()
        )));
    }
    Ok(lease)
}

/// A hold over [`MAX_HOLD`] is refused before anything is journaled: its end time could overflow.
fn check_hold_ms(fault_id: &str, hold_ms: Option<u64>) -> Result<(), ServerError> {
    match hold_ms {
        Some(ms) if Duration::from_millis(ms) > MAX_HOLD => Err(ServerError::BadRequest(format!(
            "fault `{fault_id}`: hold_ms {ms} is over the limit of {} (7 days); hold it at most that long",
            MAX_HOLD.as_millis()
        ))),
        _ => Ok(()),
    }
}

/// Reads a JSON body of at most [`api::MAX_BODY`] bytes.
async fn read_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ServerError> {
    crate::http::body::read_json(req, api::MAX_BODY)
        .await
        .map_err(|err| match err {
            BodyError::TooLarge => ServerError::TooLarge,
            BodyError::TooSlow => ServerError::TooSlow,
            BodyError::Bad(message) => ServerError::BadRequest(message),
        })
}

async fn health(state: &Arc<State>) -> Answer {
    let faults = state.agent.active();
    Ok(json_response(
        StatusCode::OK,
        &Health {
            version: env!("CARGO_PKG_VERSION").to_string(),
            hostname: state.hostname.clone(),
            capabilities: state.agent.capabilities(),
            active_run: faults.first().map(|f| f.run_id.clone()),
            faults,
            policy: state.policy.as_ref().map(|p| p.view()),
        },
    ))
}

/// 409 when another run holds faults here.
fn check_holder(state: &State, run: &str) -> Result<(), ServerError> {
    match state.holder() {
        Some(holder) if holder != run => Err(ServerError::Busy { holder }),
        _ => Ok(()),
    }
}

fn check_stopping(state: &State) -> Result<(), ServerError> {
    if state.stopping.load(Ordering::SeqCst) {
        Err(ServerError::ShuttingDown)
    } else {
        Ok(())
    }
}

/// What each fault means on this host now ([`fault::resolve`]): looked up once, off the async
/// workers (it may read `/proc`), for both the policy check and the check or plan after it.
async fn resolve_all<T: Send + 'static>(
    items: Vec<T>,
    spec_of: fn(&T) -> &FaultSpec,
) -> Result<Vec<(T, Result<Resolved, FaultError>)>, ServerError> {
    blocking(move || {
        items
            .into_iter()
            .map(|item| {
                let at = fault::resolve(spec_of(&item));
                (item, at)
            })
            .collect()
    })
    .await
    .ok_or_else(|| ServerError::Internal("looking up the faults panicked".to_string()))
}

/// The policy's word on `spec` as it was resolved; one that could not be is checked without what
/// was not found (it fails its check or its plan anyway, saying why).
fn check_policy(
    policy: &Policy,
    spec: &FaultSpec,
    at: &Result<Resolved, FaultError>,
) -> Result<(), Refusal> {
    match at {
        Ok(at) => policy.check_fault_at(spec, at),
        Err(_) => policy.check_fault_at(spec, &Resolved::default()),
    }
}

async fn preflight(
    state: &Arc<State>,
    run: &str,
    body: PreflightRequest,
    record: &mut Record,
) -> Answer {
    check_stopping(state)?;
    let faults = resolve_all(body.faults, |spec: &FaultSpec| spec).await?;
    if let Some(policy) = &state.policy {
        let refusals: Vec<String> = faults
            .iter()
            .filter_map(|(spec, at)| check_policy(policy, spec, at).err())
            .map(|r| r.0)
            .collect();
        if !refusals.is_empty() {
            return Err(ServerError::Forbidden(refusals.join("; ")));
        }
    }
    let _gate = state.gate.lock().await;
    check_holder(state, run)?;
    let agent = state.agent.clone();
    let problems = blocking(move || {
        faults
            .into_iter()
            .filter_map(|(spec, at)| {
                let checked = at.and_then(|at| agent.check_at(&spec, &at));
                checked.err().map(|err| format!("{spec}: {err}"))
            })
            .collect::<Vec<String>>()
    })
    .await
    .ok_or_else(|| ServerError::Internal("the preflight check panicked".to_string()))?;
    record.detail = if problems.is_empty() {
        "no problems".to_string()
    } else {
        problems.join("; ")
    };
    Ok(json_response(
        StatusCode::OK,
        &PreflightResponse { problems },
    ))
}

async fn apply(
    state: &Arc<State>,
    peer: SocketAddr,
    run: &str,
    body: ApplyRequest,
    record: &mut Record,
) -> Answer {
    let lease = lease_of(body.lease_ms)?;
    let mut seen = HashSet::new();
    for order in &body.faults {
        check_id("fault", &order.fault_id)?;
        check_hold_ms(&order.fault_id, order.hold_ms)?;
        if !seen.insert(order.fault_id.as_str()) {
            return Err(ServerError::BadRequest(format!(
                "fault id `{}` appears twice; give every fault its own id",
                order.fault_id
            )));
        }
    }
    let orders = resolve_all(body.faults, |order: &FaultOrder| &order.spec).await?;
    if let Some(policy) = &state.policy {
        let refusals: Vec<String> = orders
            .iter()
            .filter_map(|(order, at)| {
                check_policy(policy, &order.spec, at)
                    .and_then(|()| policy.check_hold(order.hold_ms.map(Duration::from_millis)))
                    .err()
                    .map(|r| format!("fault `{}`: {r}", order.fault_id))
            })
            .collect();
        if !refusals.is_empty() {
            return Err(ServerError::Forbidden(refusals.join("; ")));
        }
    }
    check_stopping(state)?;
    let _gate = state.gate.lock().await;
    check_stopping(state)?;
    check_holder(state, run)?;
    state.leases.renew(run, lease);

    // The controller's own connection to us is never cut by a network fault.
    let exempt = vec![Exempt {
        peer: peer.ip().to_canonical(),
        local_port: state.listen_port,
    }];
    for (order, _) in &orders {
        state.remember_owner(&order.fault_id, run);
    }
    let agent = state.agent.clone();
    let run_id = run.to_string();
    let results = blocking(move || {
        // One batch: the faults with something to undo are journaled by one synced write.
        let mut results: Vec<ApplyResult> = Vec::with_capacity(orders.len());
        let mut batch = Vec::new();
        let mut in_batch = Vec::new();
        for (order, at) in orders {
            match at {
                Ok(at) => {
                    in_batch.push(results.len());
                    results.push(ApplyResult {
                        fault_id: order.fault_id.clone(),
                        applied: None,
                        error: None,
                    });
                    batch.push(InjectRequest {
                        run_id: run_id.clone(),
                        fault_id: order.fault_id,
                        spec: order.spec,
                        seed: order.seed,
                        hold: order.hold_ms.map(Duration::from_millis),
                        exempt: exempt.clone(),
                        resolved: Some(at),
                    });
                }
                // Not found now: nothing to plan, and nothing the policy could have checked.
                Err(err) => results.push(ApplyResult {
                    fault_id: order.fault_id,
                    applied: None,
                    error: Some(fault_api_error(&err)),
                }),
            }
        }
        for (at, result) in in_batch.into_iter().zip(agent.inject_batch(batch)) {
            match result {
                Ok(applied) => results[at].applied = Some(applied),
                Err(err) => results[at].error = Some(fault_api_error(&err)),
            }
        }
        results
    })
    .await
    .ok_or_else(|| ServerError::Internal("an injection panicked".to_string()))?;

    let parts: Vec<String> = results
        .iter()
        .map(|r| match &r.error {
            None => format!("applied {}", r.fault_id),
            Some(err) => format!("failed {}: {}", r.fault_id, err.message),
        })
        .collect();
    record.detail = format!("lease {}ms; {}", lease.as_millis(), parts.join("; "));
    if results.iter().any(|r| r.error.is_some()) {
        record.outcome = "failed";
    }
    Ok(json_response(StatusCode::OK, &ApplyResponse { results }))
}

async fn revert_fault(state: &Arc<State>, run: &str, fault: &str, record: &mut Record) -> Answer {
    check_id("fault", fault)?;
    match state.owner_of(fault) {
        None => {
            return Err(ServerError::NotFound(format!(
                "no fault `{fault}` is known to this agent"
            )));
        }
        Some(owner) if owner != run => {
            return Err(ServerError::NotFound(format!(
                "fault `{fault}` is not run `{run}`'s"
            )));
        }
        Some(_) => {}
    }
    let agent = state.agent.clone();
    let id = fault.to_string();
    let result = blocking(move || agent.revert(&id))
        .await
        .ok_or_else(|| ServerError::Internal("the revert panicked".to_string()))?;
    let response = revert_response(fault, result);
    record.detail = summarize_reverts(std::slice::from_ref(&response));
    if response.error.is_some() {
        record.outcome = "failed";
    }
    Ok(json_response(StatusCode::OK, &response))
}

async fn revert_all(state: &Arc<State>, record: &mut Record) -> Answer {
    let agent = state.agent.clone();
    let recovered = blocking(move || agent.revert_everything())
        .await
        .ok_or_else(|| ServerError::Internal("revert-all panicked".to_string()))??;
    let results: Vec<_> = recovered
        .into_iter()
        .map(|r| revert_response(&r.fault_id, r.result))
        .collect();
    record.detail = summarize_reverts(&results);
    if results.iter().any(|r| r.error.is_some()) {
        record.outcome = "failed";
    }
    Ok(json_response(
        StatusCode::OK,
        &RevertAllResponse { results },
    ))
}

async fn probe(state: &Arc<State>, body: ProbeRequest, record: &mut Record) -> Answer {
    if let Some(policy) = &state.policy {
        policy
            .check_probe(&body.probe)
            .map_err(|r| ServerError::Forbidden(r.0))?;
    }
    let outcome = crate::probe::sample(&body.probe).await;
    record.detail = format!(
        "{} probe: {} ({})",
        body.probe.kind_name(),
        if outcome.ok { "pass" } else { "fail" },
        outcome.reason
    );
    Ok(json_response(
        StatusCode::OK,
        &ProbeResponse {
            ok: outcome.ok,
            latency_ms: outcome.latency.as_secs_f64() * 1000.0,
            reason: outcome.reason,
            load: outcome.load,
        },
    ))
}

/// Runs a scenario's `action` here, only when the policy lists its program: without a policy
/// file nothing is run, since a token alone must not be a way to run anything on this host.
async fn run_command(state: &Arc<State>, body: api::CommandRequest, record: &mut Record) -> Answer {
    check_stopping(state)?;
    if !body.run_id.is_empty() {
        check_id("run", &body.run_id)?;
        record.run = Some(body.run_id.clone());
    }
    let argv = body.run.argv();
    let Some(program) = argv.first().filter(|p| !p.is_empty()) else {
        return Err(ServerError::BadRequest(
            "the command is empty; give the program and its arguments".to_string(),
        ));
    };
    match &state.policy {
        None => {
            return Err(ServerError::Forbidden(format!(
                "running `{program}` is refused: this agent has no --policy file, and it runs \
                 commands only when a policy lists them under `commands: {{allow: [...]}}`"
            )));
        }
        Some(policy) => policy
            .check_command(program)
            .map_err(|r| ServerError::Forbidden(r.0))?,
    }
    let timeout = Duration::from_millis(body.timeout_ms);
    if timeout.is_zero() || timeout > MAX_HOLD {
        return Err(ServerError::BadRequest(format!(
            "timeout_ms {} is not between 1 and {} (7 days)",
            body.timeout_ms,
            MAX_HOLD.as_millis()
        )));
    }
    if body.check {
        record.detail = format!("`{}` is allowed (checked, not run)", body.run);
        return Ok(json_response(
            StatusCode::OK,
            &api::CommandResponse {
                exit_code: None,
                timed_out: false,
                duration_ms: 0,
                output: String::new(),
                truncated: false,
                detail: "allowed by the policy; not run (a check)".to_string(),
            },
        ));
    }
    let ran = crate::child::run_bounded(&body.run, std::path::Path::new("/"), timeout).await;
    record.detail = format!("ran `{}`: {}", body.run, ran.detail);
    if !ran.ok() {
        record.outcome = "failed";
    }
    Ok(json_response(
        StatusCode::OK,
        &api::CommandResponse::from(ran),
    ))
}

fn summarize_reverts(results: &[api::RevertResponse]) -> String {
    if results.is_empty() {
        return "nothing to revert".to_string();
    }
    results
        .iter()
        .map(|r| match &r.error {
            None => format!("reverted {}", r.fault_id),
            Some(err) => format!("revert of {} failed: {}", r.fault_id, err.message),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn text_response(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// The route a method and path reach, or why none (for the fuzz targets in `fuzz/`: routing
/// must never panic, whatever a client sends).
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
    fn routes() {
        let get = Method::GET;
        let post = Method::POST;
        let delete = Method::DELETE;
        assert_eq!(route(&get, "/v1/health").unwrap(), Route::Health);
        assert_eq!(
            route(&post, "/v1/runs/r1/faults").unwrap(),
            Route::Apply("r1")
        );
        assert_eq!(
            route(&delete, "/v1/runs/r1/faults/f1").unwrap(),
            Route::RevertFault("r1", "f1")
        );
        assert_eq!(
            route(&delete, "/v1/runs/r1").unwrap(),
            Route::RevertRun("r1")
        );
        assert_eq!(
            route(&post, "/v1/runs/r1/lease").unwrap(),
            Route::Lease("r1")
        );
        assert_eq!(route(&post, "/v1/revert-all").unwrap(), Route::RevertAll);
        assert_eq!(route(&post, "/v1/commands").unwrap(), Route::Command);
        for missing in [
            "/",
            "/v1",
            "/v1/",
            "/v1/nope",
            "/v1/runs//faults",
            "/v1/health/",
            "/health",
        ] {
            let err = route(&get, missing).unwrap_err();
            assert_eq!(err.status(), StatusCode::NOT_FOUND, "{missing}");
        }
        let err = route(&get, "/v1/runs/r1/faults").unwrap_err();
        assert_eq!(err.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(err.to_string().contains("use POST"));
    }

    #[test]
    fn ids() {
        assert!(check_id("run", "20260101-abc_1.2").is_ok());
        for bad in ["", ".x", "a b", "a%2F", &"x".repeat(129)] {
            assert!(check_id("run", bad).is_err(), "{bad}");
        }
    }
}
