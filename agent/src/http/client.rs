//! The JSON-over-HTTP client core that both of our clients are built on: the controller's
//! [`crate::client::AgentClient`] (of an agent) and `chaosctl --server`'s `ServiceClient` (of
//! chaosd). One [`JsonClient`] is a base URL, a bearer token and a pool of kept-open connections
//! (TLS for `https://`, plain for `http://`); a call sends a JSON body (or none), waits a bounded
//! time and reads a JSON answer. Each client puts a [`CallError`] into its own words.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::tls::{ClientContext, client_words, find_rustls, read_certs};
use crate::api::ApiError;

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An HTTP/1.1 client for `http://` and `https://` URLs that trusts `ca_file` (or the system's
/// roots and the Mozilla set). chaosd's webhooks post through it too.
pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why a call got no good answer; each client words it for its own server.
#[derive(Debug, Clone)]
pub enum CallError {
    /// No (whole) answer: the connection failed or broke, or the answer took too long.
    Unreachable {
        reason: String,
        /// The request may have reached the server (the connection was made): it may have acted.
        sent: bool,
    },
    /// The server answered with a status other than 2xx; `error` is its JSON error (or the start
    /// of its body, as code `http`).
    Refused { status: u16, error: ApiError },
    /// The request body could not be encoded, or the answer's JSON could not be read.
    BadJson(String),
    /// The request could not be made (a path a URI cannot carry).
    BadRequest(String),
}

/// A server's JSON API at one base URL, with the bearer token every call carries.
#[derive(Clone)]
pub struct JsonClient {
    base: String,
    token: HeaderValue,
    client: HttpsClient,
    /// Which files to name when TLS fails.
    tls: Arc<ClientContext>,
}

impl std::fmt::Debug for JsonClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl JsonClient {
    /// A client of `url` sending `token` (made by [`bearer`]); no network yet.
    pub fn new(
        url: &str,
        token: HeaderValue,
        client: HttpsClient,
        tls: ClientContext,
    ) -> JsonClient {
        JsonClient {
            base: url.trim_end_matches('/').to_string(),
            token,
            client,
            tls: Arc::new(tls),
        }
    }

    /// The base URL, without a trailing `/`.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `method path` with `body` as JSON; the answer's JSON, within `within`.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        within: Duration,
    ) -> Result<T, CallError> {
        let bytes = self.exchange(method, path, body, within).await?;
        serde_json::from_slice(&bytes).map_err(|e| CallError::BadJson(e.to_string()))
    }

    /// One request; the body of a 2xx answer, else the refusal, within `within`.
    pub async fn exchange<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        within: Duration,
    ) -> Result<Bytes, CallError> {
        let request = self.request(method, path, body)?;
        let exchange = async {
            let response = self.send(request).await?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| CallError::Unreachable {
                    reason: format!("reading the answer: {e}"),
                    sent: true,
                })?
                .to_bytes();
            Ok::<_, CallError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(within, exchange)
            .await
            .map_err(|_| no_answer(within))??;
        if !status.is_success() {
            return Err(refusal(status.as_u16(), &bytes));
        }
        Ok(bytes)
    }

    /// Sends `method path` and returns a 2xx answer whose head came within `within`, its body
    /// still to read (a stream of lines, say); else the refusal.
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        within: Duration,
    ) -> Result<Response<Incoming>, CallError> {
        let request = self.request(method, path, None::<&()>)?;
        let response = tokio::time::timeout(within, self.send(request))
            .await
            .map_err(|_| no_answer(within))??;
        let status = response.status();
        if !status.is_success() {
            let bytes = response
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            return Err(refusal(status.as_u16(), &bytes));
        }
        Ok(response)
    }

    fn request<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Request<Full<Bytes>>, CallError> {
        let payload = match body {
            Some(body) => Bytes::from(
                serde_json::to_vec(body).map_err(|e| CallError::BadJson(e.to_string()))?,
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
            .map_err(|e| CallError::BadRequest(format!("invalid request to `{url}`: {e}")))
    }

    /// The answer's head. A connect error means the request never left; any other, that it may
    /// have arrived, but for a certificate refused either way (by us, or by the server right
    /// after the handshake, TLS 1.3): the server never served the request.
    async fn send(&self, request: Request<Full<Bytes>>) -> Result<Response<Incoming>, CallError> {
        self.client
            .request(request)
            .await
            .map_err(|e| match find_rustls(&e) {
                Some(tls) => {
                    let refused = matches!(
                        tls,
                        rustls::Error::InvalidCertificate(_)
                            | rustls::Error::AlertReceived(_)
                            | rustls::Error::NoCertificatesPresented
                    );
                    CallError::Unreachable {
                        reason: client_words(tls, &self.tls),
                        sent: !refused && !e.is_connect(),
                    }
                }
                None => CallError::Unreachable {
                    reason: describe(&e),
                    sent: !e.is_connect(),
                },
            })
    }
}

/// The `Authorization` header for `token`, marked sensitive; an error for a token a header
/// cannot carry.
pub fn bearer(token: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the token has characters a header cannot carry".to_string())?;
    value.set_sensitive(true);
    Ok(value)
}

fn no_answer(within: Duration) -> CallError {
    CallError::Unreachable {
        reason: format!("no answer within {}s", within.as_secs()),
        sent: true,
    }
}

/// A non-2xx answer: its JSON error, else the first 200 characters of its body.
fn refusal(status: u16, bytes: &[u8]) -> CallError {
    let error = serde_json::from_slice::<ApiError>(bytes).unwrap_or_else(|_| ApiError {
        code: "http".into(),
        message: String::from_utf8_lossy(bytes).chars().take(200).collect(),
    });
    CallError::Refused { status, error }
}

/// Builds an [`HttpsClient`]: reads the CA, no network yet.
pub fn https_client(ca_file: Option<&Path>) -> Result<HttpsClient, String> {
    https_client_with(ca_file, None)
}

/// Builds an [`HttpsClient`] that also presents `identity` (a PEM certificate and its key) to
/// servers that ask for a client certificate.
pub fn https_client_with(
    ca_file: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<HttpsClient, String> {
    let tls = tls_config(ca_file, identity)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}

/// The innermost cause of a hyper error: "connection refused", "certificate not trusted", ...
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        last = inner.to_string();
        source = inner.source();
    }
    last
}

fn tls_config(
    ca_file: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read the CA file `{}`: {e}", path.display()))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| format!("cannot read the CA file `{}`: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("bad certificate in `{}`: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "the CA file `{}` holds no certificate",
                    path.display()
                ));
            }
        }
        None => {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots);
    let Some((cert, key)) = identity else {
        return Ok(resuming(builder.with_no_client_auth()));
    };
    let chain = read_certs(cert).map_err(|e| {
        format!(
            "cannot read the client certificate `cert_file` `{}`: {e}",
            cert.display()
        )
    })?;
    if chain.is_empty() {
        return Err(format!(
            "the client certificate `cert_file` `{}` holds no PEM certificate; give the `DIR/NAME.pem` of `chaosctl certs issue`",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "cannot read the client key `key_file` `{}`: {e}; give the PEM key made with the certificate",
            key.display()
        )
    })?;
    builder
        .with_client_auth_cert(chain, private)
        .map(resuming)
        .map_err(|e| {
            format!(
                "the client certificate `{}` and key `{}` do not go together: {e}",
                cert.display(),
                key.display()
            )
        })
}

/// Servers whose TLS sessions one client remembers, to resume them on a new connection rather
/// than handshake in full. One client serves a whole fleet of agents (and chaosd keeps it from
/// run to run); rustls's default cache holds 256 tickets, 8 per server: 32 servers.
pub const RESUMED_SERVERS: usize = 4096;

fn resuming(mut config: rustls::ClientConfig) -> rustls::ClientConfig {
    config.resumption = rustls::client::Resumption::in_memory_sessions(8 * RESUMED_SERVERS);
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_carries_the_servers_json_error_else_the_start_of_its_body() {
        let json = br#"{"code":"forbidden","message":"kill is not allowed here"}"#;
        let CallError::Refused { status, error } = refusal(403, json) else {
            panic!("not a refusal")
        };
        assert_eq!((status, error.code.as_str()), (403, "forbidden"));
        assert_eq!(error.message, "kill is not allowed here");

        let html = "<html>".repeat(100);
        let CallError::Refused { error, .. } = refusal(502, html.as_bytes()) else {
            panic!("not a refusal")
        };
        assert_eq!(error.code, "http");
        assert_eq!(error.message.chars().count(), 200);
    }

    #[test]
    fn the_token_is_a_sensitive_bearer_header() {
        let value = bearer("s3cret").expect("a header");
        assert_eq!(value.to_str().unwrap(), "Bearer s3cret");
        assert!(value.is_sensitive());
        assert_eq!(
            bearer("two\nlines").unwrap_err(),
            "the token has characters a header cannot carry"
        );
    }
}
