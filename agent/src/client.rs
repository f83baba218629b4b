//! The controller's side of the agent API: one [`AgentClient`] per remote host, speaking the
//! bodies of [`crate::api`] over HTTPS (or plain HTTP on loopback) with the host's bearer token.
//!
//! Connections are kept open between calls, so after preflight a step's injection costs one
//! request per host and no handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{
    ApiError, ApplyRequest, ApplyResponse, FaultsResponse, Health, LeaseRequest, LeaseResponse,
    PreflightRequest, PreflightResponse, ProbeRequest, ProbeResponse, RevertAllResponse,
    RevertResponse,
};
use crate::http::auth::first_token;
use crate::http::tls::{ClientContext, client_words};
use crate::spec::{FaultSpec, ProbeKind};

/// The environment variable that holds the token when a host names no `token_file`.
pub const TOKEN_ENV: &str = "CHAOS_AGENT_TOKEN";

/// How long one call may take before the agent counts as unreachable.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the agent of `{host}` at {url}: {reason}")]
    Unreachable {
        host: String,
        url: String,
        reason: String,
        /// The request may have reached the agent (the connection was made): it may have acted.
        sent: bool,
    },
    #[error("the agent of `{host}` refused: {error} (HTTP {status})")]
    Refused {
        host: String,
        status: u16,
        error: ApiError,
    },
    #[error("the agent of `{host}` sent an answer we cannot read: {reason}")]
    BadAnswer { host: String, reason: String },
    #[error("cannot talk to the agent of `{host}`: {reason}")]
    Setup { host: String, reason: String },
}

impl ClientError {
    /// The agent could not be reached at all (as opposed to refusing or failing a request).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }

    /// Whether the agent may have carried out the request although we have no clear answer: it
    /// was sent and then the connection dropped or timed out, the answer was unreadable, or the
    /// agent failed (5xx). A refusal (4xx) or a request never sent did nothing.
    pub fn may_have_acted(&self) -> bool {
        match self {
            ClientError::Unreachable { sent, .. } => *sent,
            ClientError::BadAnswer { .. } => true,
            ClientError::Refused { status, .. } => *status >= 500,
            ClientError::Setup { .. } => false,
        }
    }

    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Where an agent is and how to trust it.
#[derive(Debug, Clone)]
pub struct AgentTarget {
    /// The host's name in the inventory.
    pub host: String,
    /// `https://10.0.0.11:7411` (or `http://127.0.0.1:...` on loopback).
    pub url: String,
    pub token_file: Option<PathBuf>,
    /// The CA (or self-signed certificate) to trust; the system's roots otherwise.
    pub ca_file: Option<PathBuf>,
    /// Our client certificate (PEM) for an agent that requires one (`--client-ca`); with
    /// `key_file`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Clone)]
pub struct AgentClient {
    host: String,
    base: String,
    token: HeaderValue,
    client: HttpsClient,
    /// Which files to name when TLS fails.
    tls: Arc<ClientContext>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("host", &self.host)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// Reads the token and the CA; no network yet.
    pub fn new(target: &AgentTarget) -> Result<AgentClient, ClientError> {
        let setup = |reason: String| ClientError::Setup {
            host: target.host.clone(),
            reason,
        };
        let token = read_token(target.token_file.as_deref()).map_err(setup)?;
        let mut token = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| setup("the token has characters a header cannot carry".into()))?;
        token.set_sensitive(true);
        let identity = match (&target.cert_file, &target.key_file) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(setup(
                    "`cert_file` is set without `key_file`; give both (the client certificate and its key)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(setup(
                    "`key_file` is set without `cert_file`; give both (the client certificate and its key)".into(),
                ));
            }
        };
        let client = https_client_with(target.ca_file.as_deref(), identity).map_err(setup)?;
        Ok(AgentClient {
            host: target.host.clone(),
            base: target.url.trim_end_matches('/').to_string(),
            token,
            client,
            tls: Arc::new(ClientContext::for_url(
                &target.url,
                target.ca_file.as_deref(),
                target.cert_file.as_deref(),
            )),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/health", None).await
    }

    pub async fn preflight(
        &self,
        run: &str,
        faults: Vec<FaultSpec>,
    ) -> Result<PreflightResponse, ClientError> {
        let path = format!("/v1/runs/{run}/preflight");
        self.call(Method::POST, &path, Some(&PreflightRequest { faults }))
            .await
    }

    pub async fn apply(&self, run: &str, req: &ApplyRequest) -> Result<ApplyResponse, ClientError> {
        let path = format!("/v1/runs/{run}/faults");
        self.call(Method::POST, &path, Some(req)).await
    }

    pub async fn revert(&self, run: &str, fault_id: &str) -> Result<RevertResponse, ClientError> {
        let path = format!("/v1/runs/{run}/faults/{fault_id}");
        self.call::<(), _>(Method::DELETE, &path, None).await
    }

    pub async fn revert_run(&self, run: &str) -> Result<RevertAllResponse, ClientError> {
        let path = format!("/v1/runs/{run}");
        self.call::<(), _>(Method::DELETE, &path, None).await
    }

    pub async fn renew(&self, run: &str, lease: Duration) -> Result<LeaseResponse, ClientError> {
        let path = format!("/v1/runs/{run}/lease");
        let body = LeaseRequest {
            lease_ms: lease.as_millis() as u64,
        };
        self.call(Method::POST, &path, Some(&body)).await
    }

    pub async fn faults(&self) -> Result<FaultsResponse, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/faults", None).await
    }

    pub async fn revert_all(&self) -> Result<RevertAllResponse, ClientError> {
        self.call::<(), _>(Method::POST, "/v1/revert-all", None)
            .await
    }

    pub async fn probe(&self, probe: &ProbeKind) -> Result<ProbeResponse, ClientError> {
        let body = ProbeRequest {
            probe: probe.clone(),
        };
        // A `load` sample lasts its span and more: the call waits for it.
        let within = probe.max_sample_time().map_or(CALL_TIMEOUT, |t| {
            CALL_TIMEOUT.max(t + Duration::from_secs(3))
        });
        self.call_within(Method::POST, "/v1/probe", Some(&body), within)
            .await
    }

    /// Runs an `action` on the agent's host; the call waits for its timeout and a little more.
    pub async fn command(
        &self,
        run_id: &str,
        run: &crate::spec::Command,
        timeout: Duration,
    ) -> Result<crate::api::CommandResponse, ClientError> {
        let body = crate::api::CommandRequest {
            run: run.clone(),
            timeout_ms: timeout.as_millis() as u64,
            run_id: run_id.to_string(),
            check: false,
        };
        self.call_within(
            Method::POST,
            "/v1/commands",
            Some(&body),
            timeout + CALL_TIMEOUT,
        )
        .await
    }

    /// Asks whether the agent's policy would run `run` (a 403 says why not); runs nothing.
    pub async fn command_allowed(
        &self,
        run_id: &str,
        run: &crate::spec::Command,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let body = crate::api::CommandRequest {
            run: run.clone(),
            timeout_ms: timeout.as_millis() as u64,
            run_id: run_id.to_string(),
            check: true,
        };
        self.call::<_, crate::api::CommandResponse>(Method::POST, "/v1/commands", Some(&body))
            .await
            .map(|_| ())
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.call_within(method, path, body, CALL_TIMEOUT).await
    }

    async fn call_within<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        within: Duration,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |reason: String, sent: bool| ClientError::Unreachable {
            host: self.host.clone(),
            url: self.base.clone(),
            reason,
            sent,
        };
        let bad = |reason: String| ClientError::BadAnswer {
            host: self.host.clone(),
            reason,
        };
        let payload = match body {
            Some(body) => Bytes::from(serde_json::to_vec(body).map_err(|e| bad(e.to_string()))?),
            None => Bytes::new(),
        };
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header(AUTHORIZATION, self.token.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(payload))
            .map_err(|e| bad(format!("invalid request to `{url}`: {e}")))?;
        let exchange = async {
            // A connect error means the request never left; any other, that it may have arrived.
            let response = self.client.request(request).await.map_err(|e| {
                match crate::http::tls::find_rustls(&e) {
                    // A certificate refused either way (by us, or by the agent right after the
                    // handshake, TLS 1.3): the agent never served the request.
                    Some(tls) => {
                        let refused = matches!(
                            tls,
                            rustls::Error::InvalidCertificate(_)
                                | rustls::Error::AlertReceived(_)
                                | rustls::Error::NoCertificatesPresented
                        );
                        unreachable(client_words(tls, &self.tls), !refused && !e.is_connect())
                    }
                    None => unreachable(describe(&e), !e.is_connect()),
                }
            })?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}"), true))?
                .to_bytes();
            Ok::<_, ClientError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(within, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {}s", within.as_secs()), true))??;
        if status != StatusCode::OK {
            let error = serde_json::from_slice::<ApiError>(&bytes).unwrap_or_else(|_| ApiError {
                code: "http".into(),
                message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            });
            return Err(ClientError::Refused {
                host: self.host.clone(),
                status: status.as_u16(),
                error,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))
    }
}

/// An HTTP/1.1 client for `http://` and `https://` URLs that trusts `ca_file` (or the system's
/// roots and the Mozilla set). `chaosctl` talks to a chaosd server with it too.
pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

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
    http.set_connect_timeout(Some(CALL_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}

/// A failed call's cause for the user: a TLS failure in words naming the files of `cx`, else
/// [`describe`].
pub fn describe_tls(err: &(dyn std::error::Error + 'static), cx: &ClientContext) -> String {
    match crate::http::tls::find_rustls(err) {
        Some(tls) => client_words(tls, cx),
        None => describe(err),
    }
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

/// The token to send: the first of the token file (which may list the next ones while a token
/// rotates), else [`TOKEN_ENV`].
fn read_token(token_file: Option<&Path>) -> Result<String, String> {
    match token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the token file `{}`: {e}", path.display()))?;
            first_token(&text).ok_or_else(|| {
                format!(
                    "the token file `{}` holds no token (only blank lines and `#` comments); put the agent's token in it",
                    path.display()
                )
            })
        }
        None => {
            let token = std::env::var(TOKEN_ENV).map_err(|_| {
                format!("no token: give the host a `token_file`, or set {TOKEN_ENV}")
            })?;
            let token = token.trim().to_string();
            if token.is_empty() {
                return Err(format!("{TOKEN_ENV} is empty; set it to the agent's token"));
            }
            Ok(token)
        }
    }
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
        return Ok(builder.with_no_client_auth());
    };
    let chain = crate::http::tls::read_certs(cert).map_err(|e| {
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
    builder.with_client_auth_cert(chain, private).map_err(|e| {
        format!(
            "the client certificate `{}` and key `{}` do not go together: {e}",
            cert.display(),
            key.display()
        )
    })
}
