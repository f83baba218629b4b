//! The actions that change a run or the service, shared by the JSON API ([`super::routes`]) and
//! the web view's forms ([`super::web`]): abort a run, halt, resume, confirm or refuse a manual
//! step. Each is one function here that calls the run manager and writes the action's line in
//! the audit log (`STATE_DIR/audit.jsonl`: who, from which address, what, when, the outcome), so
//! the two ways in cannot drift apart, and neither can skip the audit.
//!
//! An abort's or a halt's reason also names who asked; the engine records it in the run's own
//! `aborted` event (and so in its `events.jsonl` and report).

use std::fmt;
use std::net::SocketAddr;

use agent::http::audit::{Record, outcome_of};

use super::State;
use super::api::{AbortResponse, AnswerRequest, AnswerResponse, HaltResponse};
use super::error::ServiceError;

/// Who asks for an action, as chaosd knows them: it has one token, so the API's callers are one
/// identity; web view sessions are told apart by a short digest of their session cookie.
#[derive(Debug, Clone)]
pub struct Actor {
    pub via: Via,
    /// The peer of the connection.
    pub remote: SocketAddr,
    /// The request line, for the audit record.
    pub method: String,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// `Authorization: Bearer`, on `/v1`.
    Api,
    /// The web view's cookie; `session` is a digest of its session id, never the id itself.
    Web { session: String },
    /// A web form without a valid token cookie (refused, and audited as such).
    Anonymous,
}

impl Actor {
    /// The identity alone, for `by` when a person gives no name.
    pub fn identity(&self) -> String {
        match &self.via {
            Via::Api => "the API token".to_string(),
            Via::Web { session } => format!("web view session {session}"),
            Via::Anonymous => "a web form without the token".to_string(),
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} from {}", self.identity(), self.remote)
    }
}

/// Writes one action's audit line; `done` says what was done when it was.
fn audit<T>(
    state: &State,
    actor: &Actor,
    event: &'static str,
    run: Option<&str>,
    result: &Result<T, ServiceError>,
    done: impl FnOnce(&T) -> String,
) {
    let (status, detail) = match result {
        Ok(value) => (200, done(value)),
        Err(err) => (err.status().as_u16(), err.to_string()),
    };
    write(state, actor, event, run, status, detail);
}

/// Writes the audit line of an action refused before it was tried (a web form's cookie, origin
/// or CSRF token).
pub fn audit_refusal(
    state: &State,
    actor: &Actor,
    event: &'static str,
    run: Option<&str>,
    err: &ServiceError,
) {
    write(
        state,
        actor,
        event,
        run,
        err.status().as_u16(),
        err.to_string(),
    );
}

fn write(
    state: &State,
    actor: &Actor,
    event: &'static str,
    run: Option<&str>,
    status: u16,
    detail: String,
) {
    let mut record = Record::request(actor.remote, &actor.method, &actor.path);
    record.event = event;
    record.run = run.map(str::to_string);
    record.actor = Some(actor.identity());
    record.token_ok = Some(actor.via != Via::Anonymous);
    record.status = status;
    record.outcome = outcome_of(status);
    record.detail = detail;
    state.audit.write(&record);
}

/// Asks run `id` to stop.
pub fn abort(state: &State, actor: &Actor, id: &str) -> Result<AbortResponse, ServiceError> {
    let result = state
        .runs
        .abort(id, &format!("aborted by {actor}"))
        .map(|(run_id, aborted)| AbortResponse { run_id, aborted });
    let run = result.as_ref().map_or(id, |r| r.run_id.as_str());
    audit(state, actor, "abort", Some(run), &result, |r| {
        if r.aborted {
            "abort requested".to_string()
        } else {
            "abort had been requested already".to_string()
        }
    });
    result
}

/// Sets the halt switch and aborts every running run.
pub fn halt(state: &State, actor: &Actor) -> Result<HaltResponse, ServiceError> {
    let result = state
        .runs
        .halt(&actor.to_string())
        .map(|aborted| HaltResponse {
            halted: true,
            aborted,
        });
    audit(state, actor, "halt", None, &result, |r| {
        format!("halted; aborted runs: {:?}", r.aborted)
    });
    result
}

/// Clears the halt switch.
pub fn resume(state: &State, actor: &Actor) -> Result<HaltResponse, ServiceError> {
    let result = state.runs.resume().map(|()| HaltResponse {
        halted: false,
        aborted: Vec::new(),
    });
    audit(state, actor, "resume", None, &result, |_| {
        "resumed".to_string()
    });
    result
}

/// Confirms (`confirmed`) or refuses the `manual` step run `id` waits on; `by` defaults to the
/// actor. The engine takes the answer ([`crate::engine::answers`]); 409 when none waits.
pub fn answer(
    state: &State,
    actor: &Actor,
    id: &str,
    confirmed: bool,
    req: AnswerRequest,
) -> Result<AnswerResponse, ServiceError> {
    let trimmed = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let by = trimmed(req.by).unwrap_or_else(|| actor.identity());
    let reason = trimmed(req.reason);
    let result = state.runs.answer(
        id,
        confirmed,
        AnswerRequest {
            by: Some(by),
            reason: reason.clone(),
            step: req.step,
        },
    );
    let event = if confirmed { "confirm" } else { "refuse" };
    let run = result.as_ref().map_or(id, |r| r.run_id.as_str());
    audit(state, actor, event, Some(run), &result, |r| {
        let what = if r.confirmed { "confirmed" } else { "refused" };
        match &reason {
            Some(reason) => format!("{what} by {}: {reason}", r.by),
            None => format!("{what} by {}", r.by),
        }
    });
    result
}
