//! `chaosctl --server`'s side of chaosd's API: the calls of [`super::api`] over HTTPS (or plain
//! HTTP on loopback) with the bearer token, and the event stream read line by line.

use std::path::Path;
use std::time::Duration;

use agent::client::{HttpsClient, describe, describe_tls, https_client};
use agent::http::tls::ClientContext;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode};
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
}

#[derive(Clone)]
pub struct ServiceClient {
    base: String,
    token: HeaderValue,
    client: HttpsClient,
    /// Which `--ca-file` to name when TLS fails.
    tls: ClientContext,
}

impl std::fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClient")
            .field("base", &self.base)
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
        let mut token = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            ClientError::Setup("the token has characters a header cannot carry".into())
        })?;
        token.set_sensitive(true);
        Ok(ServiceClient {
            base: url.trim_end_matches('/').to_string(),
            token,
            client: https_client(ca_file).map_err(ClientError::Setup)?,
            tls: ClientContext {
                ca_key: "--ca-file",
                ..ClientContext::for_url(url, ca_file, None)
            },
        })
    }

    pub fn url(&self) -> &str {
        &self.base
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
        let request = self.request(Method::GET, &format!("/v1/runs/{id}/events"), None::<&()>)?;
        let response = tokio::time::timeout(CALL_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| self.unreachable(format!("no answer within {}s", CALL_TIMEOUT.as_secs())))?
            .map_err(|e| self.unreachable(describe_tls(&e, &self.tls)))?;
        let status = response.status();
        if status != StatusCode::OK {
            let bytes = response
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            return Err(refusal(status, &bytes));
        }
        Ok(EventStream {
            body: response.into_body(),
            buf: BytesMut::new(),
            url: self.base.clone(),
        })
    }

    fn unreachable(&self, reason: String) -> ClientError {
        ClientError::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }

    fn request<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let payload = match body {
            Some(body) => Bytes::from(
                serde_json::to_vec(body).map_err(|e| ClientError::BadAnswer(e.to_string()))?,
            ),
            None => Bytes::new(),
        };
        let url = format!("{}{path}", self.base);
        Request::builder()
            .method(method)
            .uri(&url)
            .header(AUTHORIZATION, self.token.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(payload))
            .map_err(|e| ClientError::Setup(format!("invalid request to `{url}`: {e}")))
    }

    /// One request; the body of a 2xx answer, else the refusal.
    async fn exchange<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Bytes, ClientError> {
        let request = self.request(method, path, body)?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| self.unreachable(describe_tls(&e, &self.tls)))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| self.unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, ClientError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                self.unreachable(format!("no answer within {}s", CALL_TIMEOUT.as_secs()))
            })??;
        if !status.is_success() {
            return Err(refusal(status, &bytes));
        }
        Ok(bytes)
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let bytes = self.exchange(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadAnswer(e.to_string()))
    }
}

fn refusal(status: StatusCode, bytes: &[u8]) -> ClientError {
    let error = serde_json::from_slice::<ApiError>(bytes).unwrap_or_else(|_| ApiError {
        code: "http".into(),
        message: String::from_utf8_lossy(bytes).chars().take(200).collect(),
    });
    ClientError::Refused {
        status: status.as_u16(),
        error,
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
