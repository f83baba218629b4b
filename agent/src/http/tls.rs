//! TLS: the server's certificate chain and key from PEM files, rustls with the `ring` provider,
//! HTTP/1.1 over it; with a client CA, mutual TLS (the client verifier); and TLS failures put
//! into sentences that say what is wrong and what to do, for the server ([`server_words`]) and
//! for the controller's client ([`client_words`]). rustls's own wording
//! (`invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))`) tells users nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{AlertDescription, CertificateError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain `{path}`: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("`{path}` holds no PEM certificate; pass the server certificate (chain) as --tls-cert")]
    NoCert { path: PathBuf },
    #[error(
        "cannot read the private key `{path}`: {reason}; pass a PEM key (PKCS#8, PKCS#1 or SEC1)"
    )]
    Key { path: PathBuf, reason: String },
    #[error("the certificate `{cert}` and key `{key}` do not make a TLS server: {reason}")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error(
        "cannot use the client CA `{path}`: {reason}; pass the PEM CA certificate that issued the controllers' certificates (`DIR/ca.pem` of `chaosctl certs init DIR`)"
    )]
    ClientCa { path: PathBuf, reason: String },
}

/// Reads every PEM certificate of `path`.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|err| err.to_string())
}

/// Loads `cert` (a PEM chain, leaf first) and `key` into a TLS acceptor offering HTTP/1.1. With
/// `client_ca`, clients are asked for a certificate issued by it: one that is presented must
/// verify, or the handshake fails; none at all is let through (a liveness probe has none), and
/// the server refuses such a connection's requests per path (see [`super::accept::TlsPeer`]).
pub fn acceptor(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<TlsAcceptor, TlsError> {
    let certs = read_certs(cert).map_err(|reason| TlsError::Cert {
        path: cert.to_path_buf(),
        reason,
    })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            path: cert.to_path_buf(),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|err| TlsError::Key {
        path: key.to_path_buf(),
        reason: err.to_string(),
    })?;
    let config_err = |reason: String| TlsError::Config {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| config_err(err.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let ca_err = |reason: String| TlsError::ClientCa {
                path: ca.to_path_buf(),
                reason,
            };
            let mut roots = rustls::RootCertStore::empty();
            for der in read_certs(ca).map_err(ca_err)? {
                roots.add(der).map_err(|err| ca_err(err.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ca_err("it holds no PEM certificate".into()));
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|err| ca_err(err.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, private)
        .map_err(|err| config_err(err.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The rustls error somewhere in `err`'s chain, looking inside `io::Error`s: their `source`
/// skips the error they wrap, and hyper-rustls wraps tokio-rustls's `io::Error` in another.
pub fn find_rustls<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| find_rustls(inner))
        {
            return Some(inner);
        }
        next = err.source();
    }
    None
}

/// A failed server handshake in words, when it failed for a TLS reason; `None` when the client
/// just went away (a TCP probe, a reset), which is not worth a warning.
pub fn handshake_failure(err: &std::io::Error) -> Option<String> {
    find_rustls(err).map(server_words)
}

/// What the server side of a failed handshake tells its log and audit.
pub fn server_words(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                "the client's certificate was not issued by the CA of --client-ca; give the controller a certificate from that CA (`chaosctl certs issue DIR --role controller`)".into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!(
                "the client's certificate has expired{}; issue the controller a new one (`chaosctl certs issue`)",
                expired_since(cert)
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!(
                "the client's certificate is not valid yet{}; check the clocks of this host and the controller",
                valid_from(cert)
            ),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "the client's certificate is not for client authentication (no clientAuth in its extended key usage); issue it with `--role controller` or `--role chaosd`".into()
            }
            other if is_ca_as_end_entity(other) => {
                "the client presented a CA certificate as its own; give the controller a certificate issued by the CA (`chaosctl certs issue DIR --role controller`), not the CA itself".into()
            }
            other => format!("the client's certificate was refused: {other:?}"),
        },
        rustls::Error::NoCertificatesPresented => {
            "the client presented no certificate, and this agent requires one; give the controller `cert_file` and `key_file`".into()
        }
        rustls::Error::AlertReceived(alert) if is_certificate_alert(*alert) => format!(
            "the client refused this server's certificate (TLS alert {alert:?}): its `ca_file` must be the CA that issued --tls-cert, and the address it connects to must be in the certificate"
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "the client did not speak TLS (plain HTTP to a TLS port?); it must use an https:// address".into()
        }
        rustls::Error::PeerIncompatible(why) => {
            format!("the client shares no TLS version or cipher suite with this server: {why:?}")
        }
        other => other.to_string(),
    }
}

/// What the controller knew when it connected, to say which of its files is wrong.
#[derive(Debug, Clone)]
pub struct ClientContext {
    /// The host name or address the URL names, which the certificate must carry.
    pub server_name: String,
    /// The CA the server's certificate was checked against (`None`: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Our client certificate, if we sent one.
    pub cert_file: Option<PathBuf>,
    /// How the user names the CA where they set it: `` `ca_file` `` in an inventory,
    /// `--ca-file` on chaosctl's command line.
    pub ca_key: &'static str,
}

impl ClientContext {
    /// The context for a connection to `url` (`https://10.0.0.11:7411`).
    pub fn for_url(url: &str, ca_file: Option<&Path>, cert_file: Option<&Path>) -> ClientContext {
        let server_name = url
            .parse::<hyper::Uri>()
            .ok()
            .and_then(|uri| uri.host().map(|h| h.trim_matches(['[', ']']).to_string()))
            .unwrap_or_else(|| url.to_string());
        ClientContext {
            server_name,
            ca_file: ca_file.map(Path::to_path_buf),
            cert_file: cert_file.map(Path::to_path_buf),
            ca_key: "`ca_file`",
        }
    }
}

/// What the controller's side of a failed TLS connection tells the user about the server (an
/// agent, or chaosd).
pub fn client_words(err: &rustls::Error, cx: &ClientContext) -> String {
    let name = &cx.server_name;
    let key = cx.ca_key;
    let trust = match &cx.ca_file {
        Some(ca) => format!("the CA in {key} `{}`", ca.display()),
        None => format!("a CA this system trusts (no {key} given)"),
    };
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            other if is_ca_as_end_entity(other) => format!(
                "the server at `{name}` presents a CA certificate as its own; give it a certificate issued by that CA (`chaosctl certs issue DIR --role agent --name NAME --san {name}`) and keep the CA in {key}"
            ),
            CertificateError::NotValidForName => format!(
                "the server's certificate is not valid for `{name}`, the name we connected to; connect to a name it carries, or issue it with `--san {name}`"
            ),
            CertificateError::NotValidForNameContext { presented, .. } => {
                let names: Vec<String> = presented.iter().map(|n| plain_name(n)).collect();
                let has = if names.is_empty() {
                    "it names none".to_string()
                } else {
                    format!("it names {}", names.join(", "))
                };
                format!(
                    "the server's certificate is not valid for `{name}`, the name we connected to: {has}; connect to one of those, or issue it with `--san {name}`"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!(
                "the certificate of the server at `{name}` has expired{}; issue it a new one (`chaosctl certs issue`)",
                expired_since(cert)
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!(
                "the certificate of the server at `{name}` is not valid yet{}; check the clocks of both hosts",
                valid_from(cert)
            ),
            CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                "the certificate of the server at `{name}` was not issued by {trust}; set {key} to the CA that issued it"
            ),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                format!(
                    "the certificate of the server at `{name}` is not for serving TLS (no serverAuth in its extended key usage); issue it with `--role agent`"
                )
            }
            other => format!("the certificate of the server at `{name}` was refused: {other:?}"),
        },
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => format!(
            "the server at `{name}` requires a client certificate and none was sent; give the host `cert_file` and `key_file` (`chaosctl certs issue DIR --role controller`)"
        ),
        rustls::Error::AlertReceived(alert) if is_certificate_alert(*alert) => {
            match &cx.cert_file {
                Some(cert) => format!(
                    "the server at `{name}` refused our client certificate `{}` (TLS alert {alert:?}): it must be issued by the CA the server trusts (its --client-ca), be unexpired and be for client authentication (`chaosctl certs issue DIR --role controller`)",
                    cert.display()
                ),
                None => format!(
                    "the server at `{name}` refused the connection (TLS alert {alert:?}); if it requires a client certificate, give the host `cert_file` and `key_file`"
                ),
            }
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => format!(
            "the server at `{name}` did not answer in TLS; if it serves plain HTTP, use an http:// address"
        ),
        other => other.to_string(),
    }
}

/// Whether the chain was refused because its leaf is a CA: webpki says so only through an
/// opaque `Other` error, whose name is all we can match on without depending on webpki itself.
fn is_ca_as_end_entity(err: &CertificateError) -> bool {
    matches!(err, CertificateError::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity"))
}

fn is_certificate_alert(alert: AlertDescription) -> bool {
    matches!(
        alert,
        AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied
            | AlertDescription::DecryptError
            | AlertDescription::CertificateRequired
    )
}

/// `DnsName("agent-1")` → `agent-1`, `IpAddress(10.0.0.1)` → `10.0.0.1`: how webpki lists the
/// names a certificate carries.
fn plain_name(presented: &str) -> String {
    for prefix in ["DnsName(", "IpAddress(", "UniformResourceIdentifier("] {
        if let Some(rest) = presented
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(')'))
        {
            return rest.trim_matches('"').to_string();
        }
    }
    presented.to_string()
}

fn expired_since(err: &CertificateError) -> String {
    match err {
        CertificateError::ExpiredContext { time, not_after } => {
            format!(" (valid until {}, now {})", when(*not_after), when(*time))
        }
        _ => String::new(),
    }
}

fn valid_from(err: &CertificateError) -> String {
    match err {
        CertificateError::NotValidYetContext { time, not_before } => {
            format!(" (valid from {}, now {})", when(*not_before), when(*time))
        }
        _ => String::new(),
    }
}

fn when(time: UnixTime) -> String {
    chrono::DateTime::from_timestamp(time.as_secs() as i64, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{}s after 1970", time.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_listed_plainly() {
        assert_eq!(plain_name("DnsName(\"agent-1\")"), "agent-1");
        assert_eq!(plain_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        let cx = ClientContext::for_url("https://[::1]:7411", Some(Path::new("ca.pem")), None);
        assert_eq!(cx.server_name, "::1");
        let words = client_words(
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            &cx,
        );
        assert!(words.contains("`ca_file` `ca.pem`"), "{words}");
        let words = client_words(
            &rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
                time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(86_400)),
                not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(3_600)),
            }),
            &cx,
        );
        assert!(
            words.contains("valid until 1970-01-01 01:00:00 UTC, now 1970-01-02 00:00:00 UTC"),
            "{words}"
        );
    }
}
