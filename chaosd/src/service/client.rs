//! `chaosctl --server`'s side of chaosd's API: the calls of [`super::api`] over HTTPS (or plain
//! HTTP on loopback) with the bearer token, and the event stream read line by line.

use std::path::Path;
use std::time::Duration;

use agent::http::client::{CallError, JsonClient, bearer, describe, https_client};
use agent::http::tls::ClientContext;
use bytes::{Buf, BytesMut};
use http_body_util::BodyExt;
use hyper::Method;
use hyper::body::Incoming;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::api::{
    AbortResponse, AgentList, ApiError, HaltResponse, RunList, RunView, ServiceStatus, StreamLine,
    SubmitRequest, SubmitResponse,
};

/// The environment variable with chaosd's URL (`--server`).
pub const URL_ENV: &str = "CHAOSD_URL";
/// The environment variable with the token, when no `--token-file` is given.
pub const TOKEN_ENV: &str = "CHAOSD_TOKEN";

/// How long `first_answering` waits for each instance.
pub const PICK_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one call (not the event stream) may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach chaosd at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("chaosd refused: {} (HTTP {status})", error.message)]
    Refused { status: u16, error: ApiError },
    #[error("chaosd sent an answer we cannot read: {0}")]
    BadAnswer(String),
    #[error("cannot talk to chaosd: {0}")]
    Setup(String),
}

impl ClientError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn from_call(err: CallError, url: &str) -> ClientError {
        match err {
            CallError::Unreachable { reason, .. } => ClientError::Unreachable {
                url: url.to_string(),
                reason,
            },
            CallError::Refused { status, error } => ClientError::Refused { status, error },
            CallError::BadJson(reason) => ClientError::BadAnswer(reason),
            CallError::BadRequest(reason) => ClientError::Setup(reason),
        }
    }
}

#[derive(Clone)]
pub struct ServiceClient {
    api: JsonClient,
}

impl std::fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClient")
            .field("base", &self.api.url())
            .finish_non_exhaustive()
    }
}

impl ServiceClient {
    /// Reads the CA; no network yet.
    pub fn new(
        url: &str,
        token: &str,
        ca_file: Option<&Path>,
    ) -> Result<ServiceClient, ClientError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ClientError::Setup(format!(
                "`{url}` is not an http:// or https:// URL"
            )));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(ClientError::Setup("the token is empty".into()));
        }
        let token = bearer(token).map_err(ClientError::Setup)?;
        let client = https_client(ca_file).map_err(ClientError::Setup)?;
        let tls = ClientContext {
            ca_key: "--ca-file",
            ..ClientContext::for_url(url, ca_file, None)
        };
        let api = JsonClient::new(url, token, client, tls);
        Ok(ServiceClient { api })
    }

    pub fn url(&self) -> &str {
        self.api.url()
    }

    /// Of several chaosd instances sharing one store, the first in `urls` that answers (any
    /// HTTP answer counts: a refusal is the caller's to see), each given [`PICK_TIMEOUT`]. When
    /// none answers, the error names each and why.
    pub async fn first_answering(
        urls: &[String],
        token: &str,
        ca_file: Option<&Path>,
    ) -> Result<ServiceClient, ClientError> {
        let mut reasons = Vec::new();
        for url in urls {
            let client = ServiceClient::new(url, token, ca_file)?;
            if urls.len() == 1 {
                return Ok(client);
            }
            match tokio::time::timeout(PICK_TIMEOUT, client.status()).await {
                Ok(Ok(_) | Err(ClientError::Refused { .. })) => return Ok(client),
                Ok(Err(err)) => reasons.push(format!("{url}: {err}")),
                Err(_) => reasons.push(format!(
                    "{url}: no answer within {} s",
                    PICK_TIMEOUT.as_secs()
                )),
            }
        }
        Err(ClientError::Unreachable {
            url: urls.join(", "),
            reason: format!("none answered ({})", reasons.join("; ")),
        })
    }

    pub async fn status(&self) -> Result<ServiceStatus, ClientError> {
        self.call(Method::GET, "/v1/status", None::<&()>).await
    }

    pub async fn submit(&self, req: &SubmitRequest) -> Result<SubmitResponse, ClientError> {
        self.call(Method::POST, "/v1/runs", Some(req)).await
    }

    pub async fn runs(&self, limit: usize) -> Result<RunList, ClientError> {
        self.call(Method::GET, &format!("/v1/runs?limit={limit}"), None::<&()>)
            .await
    }

    pub async fn run(&self, id: &str) -> Result<RunView, ClientError> {
        self.call(Method::GET, &format!("/v1/runs/{id}"), None::<&()>)
            .await
    }

    /// The report rendered as `format` (`json`, `md`, `html`, `junit`).
    pub async fn report(&self, id: &str, format: &str) -> Result<String, ClientError> {
        let bytes = self
            .exchange(
                Method::GET,
                &format!("/v1/runs/{id}/report?format={format}"),
                None::<&()>,
            )
            .await?;
        String::from_utf8(bytes.to_vec()).map_err(|e| ClientError::BadAnswer(e.to_string()))
    }

    pub async fn abort(&self, id: &str) -> Result<AbortResponse, ClientError> {
        self.call(Method::POST, &format!("/v1/runs/{id}/abort"), None::<&()>)
            .await
    }

    /// Confirms (`true`) or refuses the `manual` step a run waits on.
    pub async fn answer(
        &self,
        id: &str,
        confirmed: bool,
        req: &super::api::AnswerRequest,
    ) -> Result<super::api::AnswerResponse, ClientError> {
        let verb = if confirmed { "confirm" } else { "refuse" };
        self.call(Method::POST, &format!("/v1/runs/{id}/{verb}"), Some(req))
            .await
    }

    pub async fn halt(&self) -> Result<HaltResponse, ClientError> {
        self.call(Method::POST, "/v1/halt", None::<&()>).await
    }

    pub async fn resume(&self) -> Result<HaltResponse, ClientError> {
        self.call(Method::POST, "/v1/resume", None::<&()>).await
    }

    pub async fn add_schedule(
        &self,
        req: &crate::schedule::api::CreateSchedule,
    ) -> Result<crate::schedule::api::ScheduleCreated, ClientError> {
        self.call(Method::POST, "/v1/schedules", Some(req)).await
    }

    pub async fn schedules(&self) -> Result<crate::schedule::api::ScheduleList, ClientError> {
        self.call(Method::GET, "/v1/schedules", None::<&()>).await
    }

    pub async fn remove_schedule(
        &self,
        id: &str,
    ) -> Result<crate::schedule::api::ScheduleRemoved, ClientError> {
        self.call(Method::DELETE, &format!("/v1/schedules/{id}"), None::<&()>)
            .await
    }

    pub async fn agents(&self) -> Result<AgentList, ClientError> {
        self.call(Method::GET, "/v1/agents", None::<&()>).await
    }

    /// Opens `GET /v1/runs/{id}/events`; read it with [`EventStream::next`].
    pub async fn events(&self, id: &str) -> Result<EventStream, ClientError> {
        let response = self
            .api
            .open(Method::GET, &format!("/v1/runs/{id}/events"), CALL_TIMEOUT)
            .await
            .map_err(|e| self.error(e))?;
        Ok(EventStream {
            body: response.into_body(),
            buf: BytesMut::new(),
            url: self.api.url().to_string(),
        })
    }

    fn error(&self, err: CallError) -> ClientError {
        ClientError::from_call(err, self.api.url())
    }

    /// One request; the body of a 2xx answer, else the refusal.
    async fn exchange<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<bytes::Bytes, ClientError> {
        self.api
            .exchange(method, path, body, CALL_TIMEOUT)
            .await
            .map_err(|e| self.error(e))
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.api
            .call(method, path, body, CALL_TIMEOUT)
            .await
            .map_err(|e| self.error(e))
    }
}

/// The lines of `GET /v1/runs/{id}/events`, as they come.
pub struct EventStream {
    body: Incoming,
    buf: BytesMut,
    url: String,
}

impl EventStream {
    /// The next line; `None` once the server has closed the stream.
    pub async fn next(&mut self) -> Option<Result<StreamLine, ClientError>> {
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line = self.buf.split_to(nl + 1);
                let line = &line[..nl];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some(
                    serde_json::from_slice(line).map_err(|e| ClientError::BadAnswer(e.to_string())),
                );
            }
            match self.body.frame().await {
                None => return None,
                Some(Err(err)) => {
                    return Some(Err(ClientError::Unreachable {
                        url: self.url.clone(),
                        reason: format!("the event stream broke: {}", describe(&err)),
                    }));
                }
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            self.buf.extend_from_slice(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
            }
        }
    }
}
