//! The controller's side of the agent API: one [`AgentClient`] per remote host, speaking the
//! bodies of [`crate::api`] over HTTPS (or plain HTTP on loopback) with the host's bearer token.
//!
//! Connections are kept open between calls, so after preflight a step's injection costs one
//! request per host and no handshake.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::Method;
use hyper::header::HeaderValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{
    ApiError, ApplyRequest, ApplyResponse, FaultsResponse, Health, LeaseRequest, LeaseResponse,
    PreflightRequest, PreflightResponse, ProbeRequest, ProbeResponse, RevertAllResponse,
    RevertResponse,
};
use crate::http::auth::first_token;
use crate::http::client::{CallError, HttpsClient, JsonClient, bearer, https_client_with};
use crate::http::tls::ClientContext;
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
    api: JsonClient,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("host", &self.host)
            .field("base", &self.api.url())
            .finish_non_exhaustive()
    }
}

/// The clients of a fleet of agents: hosts that trust agents the same way (the same `ca_file`,
/// client certificate and key) share one HTTP client, and so one TLS setup (the CA, or the
/// system's few hundred roots, read once rather than once per host), one cache of TLS sessions
/// and one pool of kept-open connections (one per agent). Hosts naming the same token file read
/// it once. What it keeps grows with the ways of trust and token files, not with the hosts.
///
/// One is made per run; a long-lived controller makes it from its [`KeptClients`], so that the
/// run reuses the HTTP clients (connections, TLS sessions) of the runs before it.
#[derive(Default)]
pub struct AgentClients {
    /// (`ca_file`, `cert_file`, `key_file`) → the client, or why it cannot be made.
    http: HashMap<Trust, Result<HttpsClient, String>>,
    /// Token file (`None`: [`TOKEN_ENV`]) → its `Authorization` header, or why there is none.
    tokens: HashMap<Option<PathBuf>, Result<HeaderValue, String>>,
    /// Where a client is looked for before one is made, and kept after.
    kept: Option<KeptClients>,
}

type Trust = (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>);

/// How many HTTP clients (ways of trusting agents) a controller keeps between runs; the least
/// recently used goes first.
pub const KEPT_CLIENTS: usize = 8;

/// The HTTP clients a long-lived controller (chaosd) keeps from run to run, so that a run does
/// not handshake anew with every agent: it reuses the connections the last runs left open (each
/// closed after 90 s idle) and resumes TLS sessions from the client's cache (4,096 agents per
/// client). Bounded: at most [`KEPT_CLIENTS`] clients, each holding what its fleet's agents
/// need, whatever fleets come and go over time.
///
/// A client is kept for the contents of its trust files, not only their names: a CA, a client
/// certificate or a key replaced on disk makes a new client at the next run. Tokens are never
/// kept: each run reads them again, so a rotated token is used from the next run on.
#[derive(Default, Clone)]
pub struct KeptClients {
    /// Most recently used last.
    clients: Arc<Mutex<VecDeque<(KeptKey, HttpsClient)>>>,
}

/// The trust files' names and what they held when the client was made.
type KeptKey = (Trust, Vec<u8>);

impl KeptClients {
    /// The clients of one run: tokens read afresh, HTTP clients from here where they can be.
    pub fn for_run(&self) -> AgentClients {
        AgentClients {
            kept: Some(self.clone()),
            ..AgentClients::default()
        }
    }

    /// How many clients are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The client kept for `trust` if its files still hold what they held, else a new one
    /// (kept when it could be made).
    fn client(
        &self,
        trust: &Trust,
        make: impl FnOnce() -> Result<HttpsClient, String>,
    ) -> Result<HttpsClient, String> {
        let key = (trust.clone(), trust_contents(trust));
        let mut kept = self.lock();
        if let Some(at) = kept.iter().position(|(k, _)| *k == key) {
            let entry = kept.remove(at).expect("found above");
            let client = entry.1.clone();
            kept.push_back(entry);
            return Ok(client);
        }
        drop(kept);
        let client = make()?;
        let mut kept = self.lock();
        // Files of this trust that held something else: that client is not used again.
        kept.retain(|(k, _)| k.0 != key.0);
        kept.push_back((key, client.clone()));
        while kept.len() > KEPT_CLIENTS {
            kept.pop_front();
        }
        Ok(client)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(KeptKey, HttpsClient)>> {
        self.clients.lock().expect("kept clients lock")
    }
}

/// The bytes of a trust's files, one after the other (a file that cannot be read adds nothing:
/// making the client then fails and says why).
fn trust_contents(trust: &Trust) -> Vec<u8> {
    let (ca, cert, key) = trust;
    let mut contents = Vec::new();
    for path in [ca, cert, key].into_iter().flatten() {
        if let Ok(bytes) = std::fs::read(path) {
            contents.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            contents.extend_from_slice(&bytes);
        }
    }
    contents
}

impl AgentClients {
    /// The client of `target`'s agent: reads its token and CA unless an earlier host had the
    /// same; no network yet.
    pub fn client(&mut self, target: &AgentTarget) -> Result<AgentClient, ClientError> {
        let setup = |reason: String| ClientError::Setup {
            host: target.host.clone(),
            reason,
        };
        let token = self
            .tokens
            .entry(target.token_file.clone())
            .or_insert_with(|| read_token(target.token_file.as_deref()).and_then(|t| bearer(&t)))
            .clone()
            .map_err(setup)?;
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
        let trust = (
            target.ca_file.clone(),
            target.cert_file.clone(),
            target.key_file.clone(),
        );
        let kept = &self.kept;
        let client = self
            .http
            .entry(trust.clone())
            .or_insert_with(|| {
                let make = || https_client_with(target.ca_file.as_deref(), identity);
                match kept {
                    Some(kept) => kept.client(&trust, make),
                    None => make(),
                }
            })
            .clone()
            .map_err(setup)?;
        let tls = ClientContext::for_url(
            &target.url,
            target.ca_file.as_deref(),
            target.cert_file.as_deref(),
        );
        let api = JsonClient::new(&target.url, token, client, tls);
        Ok(AgentClient {
            host: target.host.clone(),
            api,
        })
    }
}

impl AgentClient {
    /// Reads the token and the CA; no network yet. For many hosts, [`AgentClients`] shares them.
    pub fn new(target: &AgentTarget) -> Result<AgentClient, ClientError> {
        AgentClients::default().client(target)
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn url(&self) -> &str {
        self.api.url()
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
        self.api
            .call(method, path, body, within)
            .await
            .map_err(|err| match err {
                CallError::Unreachable { reason, sent } => ClientError::Unreachable {
                    host: self.host.clone(),
                    url: self.api.url().to_string(),
                    reason,
                    sent,
                },
                CallError::Refused { status, error } => ClientError::Refused {
                    host: self.host.clone(),
                    status,
                    error,
                },
                CallError::BadJson(reason) | CallError::BadRequest(reason) => {
                    ClientError::BadAnswer {
                        host: self.host.clone(),
                        reason,
                    }
                }
            })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, token_file: &Path, ca_file: Option<&Path>) -> AgentTarget {
        AgentTarget {
            host: host.to_string(),
            url: "http://127.0.0.1:7411".to_string(),
            token_file: Some(token_file.to_path_buf()),
            ca_file: ca_file.map(Path::to_path_buf),
            cert_file: None,
            key_file: None,
        }
    }

    #[test]
    fn hosts_naming_one_token_file_share_one_reading_of_it_and_one_http_client() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let mut clients = AgentClients::default();
        clients.client(&target("h1", &token, None)).expect("h1");
        std::fs::remove_file(&token).unwrap();
        // The file is gone: the second host can only have the first one's reading of it.
        let h2 = clients.client(&target("h2", &token, None)).expect("h2");
        assert_eq!(h2.host(), "h2");
        assert_eq!((clients.tokens.len(), clients.http.len()), (1, 1));
        // Anyone else reads it afresh, and the error names the host.
        let err = AgentClients::default()
            .client(&target("h3", &token, None))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`h3`") && err.contains("cannot read the token file"),
            "{err}"
        );
    }

    #[test]
    fn hosts_trusting_another_ca_get_their_own_client_and_their_own_error() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let missing_ca = dir.path().join("no-such-ca.pem");
        let mut clients = AgentClients::default();
        clients.client(&target("h1", &token, None)).expect("h1");
        let err = clients
            .client(&target("h2", &token, Some(&missing_ca)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`h2`") && err.contains("cannot read the CA file"),
            "{err}"
        );
        // The same CA again: the same error, for that host, without reading the file again.
        let err = clients
            .client(&target("h3", &token, Some(&missing_ca)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`h3`") && err.contains("cannot read the CA file"),
            "{err}"
        );
        clients.client(&target("h4", &token, None)).expect("h4");
        assert_eq!(clients.http.len(), 2);
    }
}

#[cfg(test)]
mod kept_tests {
    use super::*;
    use std::cell::Cell;

    fn plain() -> Result<HttpsClient, String> {
        crate::http::client::https_client(None)
    }

    #[test]
    fn a_kept_client_serves_the_next_runs_until_its_ca_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "first").unwrap();
        let trust: Trust = (Some(ca.clone()), None, None);
        let kept = KeptClients::default();
        let made = Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            plain()
        };
        kept.client(&trust, make).unwrap();
        kept.client(&trust, make).unwrap();
        assert_eq!((made.get(), kept.len()), (1, 1), "the second run reuses it");
        std::fs::write(&ca, "rotated").unwrap();
        kept.client(&trust, make).unwrap();
        assert_eq!(
            (made.get(), kept.len()),
            (2, 1),
            "a new CA, a new client, and the old one is let go"
        );
    }

    #[test]
    fn at_most_kept_clients_are_kept_and_failures_never() {
        let dir = tempfile::tempdir().unwrap();
        let kept = KeptClients::default();
        for i in 0..KEPT_CLIENTS + 3 {
            let trust: Trust = (Some(dir.path().join(format!("ca-{i}.pem"))), None, None);
            kept.client(&trust, plain).unwrap();
        }
        assert_eq!(kept.len(), KEPT_CLIENTS);
        let broken: Trust = (Some(dir.path().join("broken.pem")), None, None);
        let err = kept.client(&broken, || Err("no such CA".to_string()));
        assert_eq!(err.unwrap_err(), "no such CA");
        assert_eq!(kept.len(), KEPT_CLIENTS);
    }

    #[test]
    fn each_run_reads_its_tokens_again() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "first\n").unwrap();
        let target = AgentTarget {
            host: "h1".into(),
            url: "http://127.0.0.1:7411".into(),
            token_file: Some(token.clone()),
            ca_file: None,
            cert_file: None,
            key_file: None,
        };
        let kept = KeptClients::default();
        kept.for_run().client(&target).expect("first run");
        std::fs::remove_file(&token).unwrap();
        let err = kept.for_run().client(&target).unwrap_err().to_string();
        assert!(err.contains("cannot read the token file"), "{err}");
        assert_eq!(kept.len(), 1, "the HTTP client is kept all the same");
    }
}
