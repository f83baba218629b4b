//! The daemon's command line ([`Args`], clap) and what it resolves to ([`Config`]): the token
//! read, the policy parsed, the TLS material loaded, all before the runtime starts, so that bad
//! configuration is refused at once (exit 64, `EX_USAGE`) and nothing is bound.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use super::policy::{Policy, PolicyError};
use crate::http::auth::{Token, TokenFileError, read_token};
use crate::http::tls::{self, TlsError};

/// The exit code for bad configuration (`EX_USAGE` from sysexits.h).
pub const EXIT_CONFIG: u8 = 64;

/// The default address: loopback, where TLS is optional.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7411";

/// The default state directory: the fault journal and the audit log.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/chaos-agent";

#[derive(Debug, Parser)]
#[command(
    name = "chaos-agent",
    version,
    about = "The chaos-engineering agent: injects and reverts faults on this host for a controller"
)]
pub struct Args {
    /// The address to serve the API on; off loopback it needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// A file holding the bearer tokens every request but `GET /healthz` must carry, one a line,
    /// any of them good (required); SIGHUP re-reads it.
    #[arg(long, value_name = "F")]
    pub token_file: Option<PathBuf>,
    /// The server certificate chain (PEM); with --tls-key, the API is served over TLS.
    #[arg(long, value_name = "F", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "F", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: every request but `GET /healthz` must come with a client certificate issued
    /// by this CA (PEM), besides the token. Needs --tls-cert and --tls-key.
    #[arg(long, value_name = "F", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// A YAML file limiting what this agent accepts (see POLICY.md); without it, anything the
    /// agent can do is allowed.
    #[arg(long, value_name = "F")]
    pub policy: Option<PathBuf>,
    /// Where the fault journal and the audit log (`audit.jsonl`) live.
    #[arg(long, value_name = "D", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

/// Everything `run` needs, resolved and checked.
pub struct Config {
    /// Compared in constant time with each request's bearer token.
    pub token: Token,
    /// Where `token` came from: SIGHUP re-reads it (`None`: the tokens never change).
    pub token_file: Option<PathBuf>,
    /// `None`: plain HTTP (loopback only).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// `--client-ca`: requests but `GET /healthz` must come over a connection whose client
    /// presented a certificate (the acceptor has already checked it against the CA).
    pub client_certs_required: bool,
    /// `None`: everything the agent can do is allowed.
    pub policy: Option<Policy>,
    /// The fault journal (`journal/`) and `audit.jsonl`.
    pub state_dir: PathBuf,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("tls", &self.tls.is_some())
            .field("client_certs_required", &self.client_certs_required)
            .field("policy", &self.policy)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

/// Why the configuration was refused; the binary prints it and exits 64.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no token file: pass --token-file F (make one with `head -c32 /dev/urandom | base64 > F`)"
    )]
    NoTokenFile,
    #[error(transparent)]
    Token(#[from] TokenFileError),
    #[error("`--listen {listen}` is off loopback: pass --tls-cert and --tls-key")]
    NeedsTls { listen: SocketAddr },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl Args {
    /// Reads and checks everything the arguments name. `listen` is checked too, though `run` is
    /// handed an already bound listener.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let token_file = self.token_file.as_deref().ok_or(ConfigError::NoTokenFile)?;
        let token = read_token(token_file)?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key, self.client_ca.as_deref())?),
            _ if !self.listen.ip().is_loopback() => {
                return Err(ConfigError::NeedsTls {
                    listen: self.listen,
                });
            }
            _ => None,
        };
        let policy = match &self.policy {
            Some(path) => Some(Policy::load(path)?),
            None => None,
        };
        Ok(Config {
            token,
            token_file: Some(token_file.to_path_buf()),
            tls,
            client_certs_required: self.client_ca.is_some(),
            policy,
            state_dir: self.state_dir.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use clap::CommandFactory;

    #[test]
    fn args_are_consistent() {
        Args::command().debug_assert();
    }

    fn args(extra: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("chaos-agent").chain(extra.iter().copied())).unwrap()
    }

    #[test]
    fn defaults() {
        let a = args(&[]);
        assert_eq!(a.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(a.state_dir, Path::new(DEFAULT_STATE_DIR));
    }

    #[test]
    fn a_token_file_is_required() {
        let err = args(&[]).resolve().unwrap_err();
        assert!(matches!(err, ConfigError::NoTokenFile), "{err}");
    }

    #[test]
    fn empty_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, " \n").unwrap();
        let err = args(&["--token-file", f.to_str().unwrap()])
            .resolve()
            .unwrap_err();
        assert!(
            matches!(err, ConfigError::Token(TokenFileError::Empty { .. })),
            "{err}"
        );
    }

    #[test]
    fn off_loopback_needs_tls() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "secret\n").unwrap();
        let err = args(&[
            "--listen",
            "0.0.0.0:7411",
            "--token-file",
            f.to_str().unwrap(),
        ])
        .resolve()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`--listen 0.0.0.0:7411` is off loopback: pass --tls-cert and --tls-key"
        );
        let ok = args(&["--listen", "[::1]:0", "--token-file", f.to_str().unwrap()]).resolve();
        assert!(ok.is_ok());
    }

    #[test]
    fn cert_and_key_come_together() {
        let r = Args::try_parse_from(["chaos-agent", "--tls-cert", "c.pem"]);
        assert!(r.is_err());
    }
}
