//! Every way a request to chaosd is refused or fails, and the one place that maps each to its
//! status code and its JSON [`ApiError`] body.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

use super::api::{ApiError, MAX_BODY};
use crate::store::StoreError;

/// The body of every answer: a whole one, or the event stream.
pub type Body = BoxBody<Bytes, std::convert::Infallible>;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("missing or wrong bearer token; send `Authorization: Bearer TOKEN`")]
    Unauthorized,
    /// A scenario that chaosd will not run here (`local` things without `allow_local`).
    #[error("{0}")]
    Forbidden(String),
    /// The scenario file is wrong: the whole `FILE:LINE:COL` rendering.
    #[error("{0}")]
    Scenario(String),
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
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is over {MAX_BODY} bytes")]
    TooLarge,
    #[error(
        "the request body did not arrive within {}s; send it whole, at once",
        agent::http::body::BODY_TIMEOUT.as_secs()
    )]
    TooSlow,
    #[error(
        "chaosd is halted (since {since}): new runs are refused until `POST /v1/resume` (`chaosctl resume`)"
    )]
    Halted { since: String },
    #[error("chaosd is shutting down; try again once it is back")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn status(&self) -> StatusCode {
        match self {
            ServiceError::Unauthorized => StatusCode::UNAUTHORIZED,
            ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServiceError::Scenario(_) | ServiceError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ServiceError::Conflict(_) => StatusCode::CONFLICT,
            ServiceError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::TooSlow => StatusCode::REQUEST_TIMEOUT,
            ServiceError::Halted { .. } | ServiceError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Unauthorized => "unauthorized",
            ServiceError::Forbidden(_) => "forbidden",
            ServiceError::Scenario(_) => "invalid_scenario",
            ServiceError::BadRequest(_) => "bad_request",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::MethodNotAllowed { .. } => "method_not_allowed",
            ServiceError::Conflict(_) => "conflict",
            ServiceError::TooLarge => "too_large",
            ServiceError::TooSlow => "too_slow",
            ServiceError::Halted { .. } => "halted",
            ServiceError::ShuttingDown => "shutting_down",
            ServiceError::Internal(_) => "internal",
        }
    }

    pub fn to_api(&self) -> ApiError {
        ApiError {
            code: self.code().to_string(),
            message: self.to_string(),
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let mut response = json_response(self.status(), &self.to_api());
        if let ServiceError::MethodNotAllowed { allow, .. } = self {
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

impl From<anyhow::Error> for ServiceError {
    fn from(err: anyhow::Error) -> ServiceError {
        ServiceError::Internal(format!("{err:#}"))
    }
}

/// A run id that names no single run is the caller's to fix; any other failure of the history
/// is ours, told with its whole chain of causes.
impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> ServiceError {
        if err.is_bad_id() {
            ServiceError::BadRequest(err.to_string())
        } else {
            ServiceError::from(anyhow::Error::from(err))
        }
    }
}

/// A whole answer of `content_type`.
pub fn full_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON answer.
pub fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    let body = serde_json::to_vec(body).unwrap_or_else(|err| {
        format!(r#"{{"code":"internal","message":"cannot encode the answer: {err}"}}"#).into_bytes()
    });
    full_response(status, "application/json", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_id_naming_no_single_run_is_a_400_and_a_broken_history_a_500() {
        let ambiguous = ServiceError::from(StoreError::Ambiguous {
            id: "2026".into(),
            candidates: "`a`, `b`".into(),
        });
        assert_eq!(ambiguous.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            ambiguous.to_string(),
            "`2026` matches more than one run: `a`, `b`; give more of the id, or the whole of it"
        );
        assert_eq!(
            ServiceError::from(StoreError::EmptyId).status(),
            StatusCode::BAD_REQUEST
        );
        let broken = ServiceError::from(StoreError::Sql {
            context: "cannot read the run history at `runs.db`".into(),
            source: rusqlite::Error::QueryReturnedNoRows,
        });
        assert_eq!(broken.status(), StatusCode::INTERNAL_SERVER_ERROR);
        // The whole chain, as `{:#}` of the `anyhow::Error` it used to be.
        assert_eq!(
            broken.to_string(),
            "internal error: cannot read the run history at `runs.db`: Query returned no rows"
        );
    }
}
