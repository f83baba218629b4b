//! Every way a request is refused or fails, and the one place that maps each to its status code
//! and its JSON [`ApiError`] body.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

use crate::api::{ApiError, MAX_BODY};
use crate::error::FaultError;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("missing or wrong bearer token; send `Authorization: Bearer TOKEN`")]
    Unauthorized,
    #[error(
        "this agent requires a client certificate (it runs with --client-ca) and the connection presented none; give the host `cert_file` and `key_file` (a certificate from `chaosctl certs issue DIR --role controller`)"
    )]
    ClientCertificateRequired,
    #[error("{0}")]
    Forbidden(String),
    #[error(
        "run `{holder}` holds faults on this agent; wait for it to end, or revert it (`DELETE /v1/runs/{holder}`)"
    )]
    Busy { holder: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("`{method}` is not allowed on `{path}`; use {allow}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: &'static str,
    },
    #[error("the request body is over {MAX_BODY} bytes")]
    TooLarge,
    #[error(
        "the request body did not arrive within {}s; send it whole, at once",
        crate::http::body::BODY_TIMEOUT.as_secs()
    )]
    TooSlow,
    #[error("the agent is shutting down, reverting every fault; try again later")]
    ShuttingDown,
    #[error(transparent)]
    Fault(#[from] FaultError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServerError {
    pub fn status(&self) -> StatusCode {
        match self {
            ServerError::Unauthorized | ServerError::ClientCertificateRequired => {
                StatusCode::UNAUTHORIZED
            }
            ServerError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServerError::Busy { .. } => StatusCode::CONFLICT,
            ServerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ServerError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::TooSlow => StatusCode::REQUEST_TIMEOUT,
            ServerError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ServerError::Fault(err) => fault_status(err),
            ServerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ServerError::Unauthorized => "unauthorized",
            ServerError::ClientCertificateRequired => "client_certificate_required",
            ServerError::Forbidden(_) => "forbidden",
            ServerError::Busy { .. } => "conflict",
            ServerError::BadRequest(_) => "bad_request",
            ServerError::NotFound(_) => "not_found",
            ServerError::MethodNotAllowed { .. } => "method_not_allowed",
            ServerError::TooLarge => "too_large",
            ServerError::TooSlow => "too_slow",
            ServerError::ShuttingDown => "shutting_down",
            ServerError::Fault(err) => err.code(),
            ServerError::Internal(_) => "internal",
        }
    }

    pub fn to_api(&self) -> ApiError {
        ApiError {
            code: self.code().to_string(),
            message: self.to_string(),
        }
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = json_response(self.status(), &self.to_api());
        if let ServerError::MethodNotAllowed { allow, .. } = self {
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

/// A fault error inside an otherwise good answer (one order of an apply, one revert).
pub fn fault_api_error(err: &FaultError) -> ApiError {
    ApiError {
        code: err.code().to_string(),
        message: err.to_string(),
    }
}

/// The status of a fault error met on its own (a single revert, say).
fn fault_status(err: &FaultError) -> StatusCode {
    match err {
        FaultError::UnknownFault { .. } => StatusCode::NOT_FOUND,
        FaultError::InvalidFaultId { .. }
        | FaultError::InvalidPattern { .. }
        | FaultError::InvalidSignal { .. }
        | FaultError::HoldTooLong { .. } => StatusCode::BAD_REQUEST,
        FaultError::DuplicateFault { .. } => StatusCode::CONFLICT,
        FaultError::NoProcessMatches { .. }
        | FaultError::OnlyProtected { .. }
        | FaultError::PidfileUnreadable { .. }
        | FaultError::PidfileGarbled { .. }
        | FaultError::NotADirectory { .. }
        | FaultError::WouldOverfill { .. }
        | FaultError::WouldOverload { .. }
        | FaultError::FillFileExists { .. }
        | FaultError::Unsupported { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A JSON answer.
pub fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(body).unwrap_or_else(|err| {
        format!(r#"{{"code":"internal","message":"cannot encode the answer: {err}"}}"#).into_bytes()
    });
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
