//! The OTLP exporter's HTTP client: the hyper client the agents' and webhooks' calls use
//! (`agent::http::client`), so that an export needs neither reqwest nor a thread of its own and
//! runs on the caller's tokio runtime. It also keeps the last failure in words: the exporter
//! reports every network failure as the same "network error", and a person needs to read
//! "connection refused" or "answered 404".

use std::sync::{Arc, Mutex, PoisonError};

use agent::http::client::{HttpsClient, describe};
use async_trait::async_trait;
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

/// The most of a collector's answer we read: an `ExportTraceServiceResponse` is a few bytes.
const MAX_ANSWER: usize = 64 * 1024;

#[derive(Clone)]
pub struct Transport {
    client: HttpsClient,
    /// Why the last request failed, in words; `None` once one succeeded.
    last_failure: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

impl Transport {
    pub fn new(client: HttpsClient) -> Transport {
        Transport {
            client,
            last_failure: Arc::default(),
        }
    }

    /// Why the last request failed, when it did.
    pub fn last_failure(&self) -> Option<String> {
        self.last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, failure: Option<String>) {
        *self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = failure;
    }
}

#[async_trait]
impl HttpClient for Transport {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = hyper::Request::from_parts(parts, Full::new(body));
        let answer = match self.client.request(request).await {
            Ok(answer) => answer,
            Err(err) => {
                self.record(Some(describe(&err)));
                return Err(Box::new(err));
            }
        };
        let (parts, body) = answer.into_parts();
        let body = match Limited::new(body, MAX_ANSWER).collect().await {
            Ok(body) => body.to_bytes(),
            Err(err) => {
                let why = format!("its answer could not be read: {err}");
                self.record(Some(why.clone()));
                return Err(why.into());
            }
        };
        self.record((!parts.status.is_success()).then(|| format!("answered {}", parts.status)));
        Ok(Response::from_parts(parts, body))
    }
}
