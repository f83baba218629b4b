//! chaosd's command line ([`Args`]) and configuration file ([`ConfigFile`], YAML), resolved into
//! a checked [`Config`] before the runtime starts: the token read, the TLS material loaded, the
//! inventory and webhooks checked. A bad configuration exits 64 (`EX_USAGE`) and binds nothing.
//! The keys are documented in `docs/reference/chaosd.md`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use agent::http::auth::{Token, TokenFileError, read_token};
use agent::http::tls::{self, TlsError};
use clap::Parser;
use serde::Deserialize;

/// The exit code for bad configuration (`EX_USAGE` from sysexits.h).
pub const EXIT_CONFIG: u8 = 64;

/// Where `chaosd` looks for its configuration without `--config`.
pub const DEFAULT_CONFIG: &str = "/etc/chaosd/chaosd.yaml";

/// The default address: loopback, where TLS is optional.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7410";

/// The default state directory: `runs.db`, the local fault journal, per-run folders, `halted`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/chaosd";

/// The default root of the report folders.
pub const DEFAULT_REPORT_DIR: &str = "/var/lib/chaosd/reports";

/// The events a webhook may ask for.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "run_started",
    "breach",
    "run_finished",
    "run_aborted",
    "fault_left",
    "halted",
    "resumed",
];

#[derive(Debug, Parser)]
#[command(
    name = "chaosd",
    version,
    about = "The chaos controller service: runs game days through an HTTP API and keeps their history"
)]
pub struct Args {
    /// The configuration file (YAML; see docs/reference/chaosd.md).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

/// The configuration file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The address to serve the API on; off loopback it needs `tls_cert` and `tls_key`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// A file holding the bearer tokens every request but `GET /healthz` must carry, one a line,
    /// any of them good; SIGHUP re-reads it.
    pub token_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// chaosd's client certificate and key (PEM), presented to agents that require one
    /// (`chaos-agent --client-ca`) when the host names no `cert_file` of its own.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "default_report_dir")]
    pub report_dir: PathBuf,
    /// Whether scenarios may use chaosd's own machine: setup, teardown, command probes there and
    /// `local` faults.
    #[serde(default)]
    pub allow_local: bool,
    /// A hosts file (`hosts:`, `targets:`) added to every scenario.
    pub inventory: Option<PathBuf>,
    /// Where to POST run and service events, Slack-style JSON (see `crate::webhook`).
    #[serde(default)]
    pub webhooks: Vec<WebhookFile>,
    /// The address people reach chaosd at (`https://chaosd.example:7410`), for links to run
    /// pages in webhooks; none without it.
    pub public_url: Option<String>,
    /// Where the history, schedules and halt switch live: `postgresql://USER@HOST/DB`, shared
    /// by every instance that names it; absent, SQLite in `state_dir`.
    pub store: Option<String>,
    /// This instance's name among those sharing a store (default: the host name).
    pub node: Option<String>,
    /// An OpenTelemetry collector to export each run to as a trace (see `crate::otel`); without
    /// it, the standard `OTEL_EXPORTER_OTLP_*` variables decide.
    pub otlp: Option<OtlpFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpFile {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); traces go to `/v1/traces`.
    pub endpoint: String,
    /// Extra request headers (an API key, say).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookFile {
    pub url: String,
    /// Which events to send; all of [`WEBHOOK_EVENTS`] when absent.
    pub events: Option<Vec<String>>,
    /// Extra request headers (an `Authorization`, say).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_listen() -> String {
    DEFAULT_LISTEN.to_string()
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

fn default_report_dir() -> PathBuf {
    PathBuf::from(DEFAULT_REPORT_DIR)
}

/// A checked webhook: where to send which events (sent by `webhook::Notifier`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub events: Vec<String>,
    pub headers: BTreeMap<String, String>,
}

/// Everything `service::run` needs, resolved and checked.
pub struct Config {
    pub listen: SocketAddr,
    /// Compared in constant time with each request's bearer token.
    pub token: Token,
    /// Where `token` came from: SIGHUP re-reads it.
    pub token_file: PathBuf,
    /// For agent hosts without a `cert_file` of their own (`cert_file`, `key_file`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// `None`: plain HTTP (loopback only).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// `runs.db`, `journal/` (the local agent's), `runs/RUN_ID/` (submitted scenarios), `halted`.
    pub state_dir: PathBuf,
    /// Each run writes `report_dir/RUN_ID/`.
    pub report_dir: PathBuf,
    pub allow_local: bool,
    /// Added to every scenario, as `chaosctl --inventory` does.
    pub inventory: Option<PathBuf>,
    pub webhooks: Vec<Webhook>,
    /// Without a trailing `/`; links in webhooks.
    pub public_url: Option<String>,
    /// `Some(url)`: PostgreSQL, shared with other instances; `None`: SQLite in `state_dir`.
    pub store: Option<String>,
    pub node: String,
    /// Where runs' traces go, from `otlp:`; `None`: the standard variables decide at start.
    pub otlp: Option<crate::otel::Destination>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("tls", &self.tls.is_some())
            .field("state_dir", &self.state_dir)
            .field("report_dir", &self.report_dir)
            .field("allow_local", &self.allow_local)
            .field("client_cert", &self.client_cert)
            .field("inventory", &self.inventory)
            .field("webhooks", &self.webhooks)
            .field("public_url", &self.public_url)
            .field(
                "store",
                &self
                    .store
                    .as_deref()
                    .map(crate::store::postgres::without_password),
            )
            .field("node", &self.node)
            .field("otlp", &self.otlp.as_ref().map(|d| &d.url))
            .finish_non_exhaustive()
    }
}

/// Why the configuration was refused; the binary prints it and exits 64.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration `{path}`: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error(
        "{path}: no `token_file`: name a file holding the API token (make one with `head -c32 /dev/urandom | base64 > F`)"
    )]
    NoTokenFile { path: PathBuf },
    #[error("{path}: `listen: {listen}` is not an address like `127.0.0.1:7410`")]
    BadListen { path: PathBuf, listen: String },
    #[error("{path}: `listen: {listen}` is off loopback: set `tls_cert` and `tls_key`")]
    NeedsTls { path: PathBuf, listen: SocketAddr },
    #[error("{path}: `tls_cert` and `tls_key` go together; set both or neither")]
    HalfTls { path: PathBuf },
    #[error(
        "{path}: `cert_file` and `key_file` go together (chaosd's client certificate for agents and its key); set both or neither"
    )]
    HalfClientCert { path: PathBuf },
    #[error("{path}: the client certificate `{file}` cannot be read: {reason}")]
    ClientCert {
        path: PathBuf,
        file: PathBuf,
        reason: String,
    },
    #[error(transparent)]
    Token(#[from] TokenFileError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{path}: the inventory `{inventory}` is wrong:\n{message}")]
    Inventory {
        path: PathBuf,
        inventory: PathBuf,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: webhook {index}: {message}")]
    Webhook {
        path: PathBuf,
        index: usize,
        message: String,
    },
}

impl Args {
    /// Reads the configuration file and resolves it.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(&self.config).map_err(|source| ConfigError::Unreadable {
                path: self.config.clone(),
                source,
            })?;
        resolve(&self.config, &text)
    }
}

/// Parses and checks the configuration `text` read from `path`. Relative paths in it resolve
/// against the file's folder.
pub fn resolve(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let file: ConfigFile = if text.trim().is_empty() {
        serde_saphyr::from_str("{}")
    } else {
        serde_saphyr::from_str(text)
    }
    .map_err(|err| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: err.to_string(),
    })?;
    let base = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let at = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let owner = || path.to_path_buf();

    let listen: SocketAddr = file.listen.parse().map_err(|_| ConfigError::BadListen {
        path: owner(),
        listen: file.listen.clone(),
    })?;
    let token_file = file
        .token_file
        .as_deref()
        .ok_or_else(|| ConfigError::NoTokenFile { path: owner() })?;
    let token_file = at(token_file);
    let token = read_token(&token_file)?;
    let tls = match (&file.tls_cert, &file.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(&at(cert), &at(key), None)?),
        (None, None) if !listen.ip().is_loopback() => {
            return Err(ConfigError::NeedsTls {
                path: owner(),
                listen,
            });
        }
        (None, None) => None,
        _ => return Err(ConfigError::HalfTls { path: owner() }),
    };
    let client_cert = match (&file.cert_file, &file.key_file) {
        (Some(cert), Some(key)) => {
            let (cert, key) = (at(cert), at(key));
            // Checked now, so that a wrong file fails at start, not at the first run.
            agent::http::client::https_client_with(None, Some((&cert, &key))).map_err(
                |reason| ConfigError::ClientCert {
                    path: owner(),
                    file: cert.clone(),
                    reason,
                },
            )?;
            Some((cert, key))
        }
        (None, None) => None,
        _ => return Err(ConfigError::HalfClientCert { path: owner() }),
    };
    let inventory = file.inventory.as_deref().map(at);
    if let Some(inv) = &inventory {
        crate::scenario::load_inventory(inv, &Default::default()).map_err(|err| {
            ConfigError::Inventory {
                path: owner(),
                inventory: inv.clone(),
                message: err.to_string(),
            }
        })?;
    }
    let mut webhooks = Vec::new();
    for (i, hook) in file.webhooks.iter().enumerate() {
        let fail = |message: String| ConfigError::Webhook {
            path: owner(),
            index: i + 1,
            message,
        };
        if !(hook.url.starts_with("http://") || hook.url.starts_with("https://"))
            || hook.url.parse::<hyper::Uri>().is_err()
        {
            return Err(fail(format!(
                "`url: {}` is not an http:// or https:// URL",
                hook.url
            )));
        }
        let events = match &hook.events {
            None => WEBHOOK_EVENTS.iter().map(|e| e.to_string()).collect(),
            Some(events) if events.is_empty() => {
                return Err(fail(
                    "`events: []` sends nothing; leave `events` out to send every event".into(),
                ));
            }
            Some(events) => {
                for e in events {
                    if !WEBHOOK_EVENTS.contains(&e.as_str()) {
                        return Err(fail(format!(
                            "unknown event `{e}`; known: {}",
                            WEBHOOK_EVENTS.join(", ")
                        )));
                    }
                }
                events.clone()
            }
        };
        webhooks.push(Webhook {
            url: hook.url.clone(),
            events,
            headers: hook.headers.clone(),
        });
    }
    let public_url = match &file.public_url {
        None => None,
        Some(url)
            if (url.starts_with("http://") || url.starts_with("https://"))
                && url.parse::<hyper::Uri>().is_ok() =>
        {
            Some(url.trim_end_matches('/').to_string())
        }
        Some(url) => {
            return Err(ConfigError::Invalid {
                path: owner(),
                message: format!(
                    "`public_url: {url}` is not an http:// or https:// URL; give the address people open chaosd at, e.g. `https://chaosd.example:7410`"
                ),
            });
        }
    };
    let store = match &file.store {
        None => None,
        Some(url) if url.starts_with("postgresql://") || url.starts_with("postgres://") => {
            Some(url.clone())
        }
        Some(url) => {
            return Err(ConfigError::Invalid {
                path: owner(),
                message: format!(
                    "`store: {}` is not a PostgreSQL URL; write `postgresql://USER@HOST/DATABASE`, or leave `store` out for SQLite in `state_dir`",
                    crate::store::postgres::without_password(url)
                ),
            });
        }
    };
    let node = match &file.node {
        Some(node) if node.trim().is_empty() => {
            return Err(ConfigError::Invalid {
                path: owner(),
                message: "`node:` is empty; name this instance, or leave it out for the host name"
                    .into(),
            });
        }
        Some(node) => node.clone(),
        None => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "chaosd".to_string()),
    };
    let otlp = match &file.otlp {
        None => None,
        Some(otlp) => Some(
            crate::otel::Destination::configured(&otlp.endpoint, otlp.headers.clone()).map_err(
                |why| ConfigError::Invalid {
                    path: owner(),
                    message: format!("`otlp: {{endpoint: {}}}`: {why}", otlp.endpoint),
                },
            )?,
        ),
    };
    Ok(Config {
        store,
        node,
        public_url,
        otlp,
        listen,
        token,
        token_file,
        client_cert,
        tls,
        state_dir: at(&file.state_dir),
        report_dir: at(&file.report_dir),
        allow_local: file.allow_local,
        inventory,
        webhooks,
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn args_are_consistent() {
        Args::command().debug_assert();
    }

    fn with_token(yaml: &str) -> (tempfile::TempDir, Result<Config, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("comments-only"), "# rotated out\n\n").unwrap();
        let path = dir.path().join("chaosd.yaml");
        let result = resolve(&path, yaml);
        (dir, result)
    }

    #[test]
    fn defaults_and_relative_paths() {
        let (dir, config) = with_token("token_file: token\nstate_dir: state\n");
        let config = config.unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert!(config.tls.is_none());
        assert!(!config.allow_local);
        assert_eq!(config.state_dir, dir.path().join("state"));
        assert_eq!(config.report_dir, Path::new(DEFAULT_REPORT_DIR));
        assert!(config.webhooks.is_empty());
        assert!(config.token.admits(Some(b"Bearer s3cret")));
    }

    #[test]
    fn refusals() {
        let cases: &[(&str, &str)] = &[
            ("listen: 127.0.0.1:1\n", "no `token_file`"),
            ("token_file: token\nlisten: nope\n", "is not an address"),
            ("token_file: token\nlisten: 0.0.0.0:7410\n", "off loopback"),
            ("token_file: token\ntls_cert: c.pem\n", "go together"),
            (
                "token_file: token\ncert_file: c.pem\n",
                "`cert_file` and `key_file` go together",
            ),
            (
                "token_file: token\ncert_file: c.pem\nkey_file: k.pem\n",
                "the client certificate `",
            ),
            ("token_file: comments-only\n", "holds no token"),
            ("token_file: token\nallow_locl: true\n", "allow_locl"),
            ("token_file: missing\n", "missing"),
            (
                "token_file: token\nwebhooks: [{url: ftp://x}]\n",
                "webhook 1: `url: ftp://x`",
            ),
            (
                "token_file: token\npublic_url: chaosd.example\n",
                "`public_url: chaosd.example` is not an http:// or https:// URL",
            ),
            (
                "token_file: token\nwebhooks: [{url: 'http://x', events: [nope]}]\n",
                "unknown event `nope`",
            ),
            (
                "token_file: token\nwebhooks: [{url: 'http://x', method: PUT}]\n",
                "method",
            ),
            (
                "token_file: token\notlp: {endpoint: 'collector:4318'}\n",
                "`otlp: {endpoint: collector:4318}`: not an http:// or https:// URL",
            ),
            (
                "token_file: token\notlp: {endpoint: 'http://c:4318', headers: {'a b': x}}\n",
                "header `a b` is not a valid header name",
            ),
            ("token_file: token\notlp: {url: 'http://c:4318'}\n", "url"),
        ];
        for (yaml, needle) in cases {
            let (_dir, result) = with_token(yaml);
            let err = result.err().unwrap_or_else(|| panic!("accepted {yaml:?}"));
            assert!(err.to_string().contains(needle), "{yaml:?}: {err}");
        }
    }

    #[test]
    fn otlp_names_the_collector_and_its_headers() {
        let (_dir, config) = with_token(
            "token_file: token\notlp:\n  endpoint: http://127.0.0.1:4318\n  headers: {x-api-key: k1}\n",
        );
        let otlp = config.unwrap().otlp.unwrap();
        assert_eq!(otlp.url, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(otlp.headers["x-api-key"], "k1");
        let (_dir, config) = with_token("token_file: token\n");
        assert!(config.unwrap().otlp.is_none());
    }

    #[test]
    fn webhooks_default_to_every_event() {
        let (_dir, config) = with_token(
            "token_file: token\nwebhooks:\n  - url: https://hooks.example/x\n  - {url: 'http://h/y', events: [run_finished]}\n",
        );
        let hooks = config.unwrap().webhooks;
        assert_eq!(hooks[0].events.len(), WEBHOOK_EVENTS.len());
        assert_eq!(hooks[1].events, ["run_finished"]);
    }
}
