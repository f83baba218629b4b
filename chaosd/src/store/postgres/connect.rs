//! One shared connection to PostgreSQL, made again when it broke, with TLS (rustls, the
//! system's trusted roots) where the server offers it and `sslmode` asks for it.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::StoreError;

/// How long making a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// Why a call to the database failed.
#[derive(Debug)]
pub enum DbError {
    Pg(tokio_postgres::Error),
    /// No answer within `CALL_TIMEOUT`.
    Timeout,
    /// The database thread is gone (chaosd is stopping).
    Gone,
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> DbError {
        DbError::Pg(e)
    }
}

impl DbError {
    pub fn into_store_error(self, context: String, shown: &str) -> StoreError {
        let detail = match self {
            // tokio-postgres's own text is terse ("db error"); the server's message is in its
            // source.
            DbError::Pg(e) => match e.as_db_error() {
                Some(db) => {
                    format!("{}: {}", db.severity(), db.message())
                        + &db
                            .constraint()
                            .map(|c| format!(" (constraint {c})"))
                            .unwrap_or_default()
                }
                None => {
                    let mut text = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(s) = source {
                        text.push_str(&format!(": {s}"));
                        source = s.source();
                    }
                    format!("{text} (is PostgreSQL at `{shown}` up and reachable?)")
                }
            },
            DbError::Timeout => format!(
                "PostgreSQL at `{shown}` did not answer within {} s",
                super::CALL_TIMEOUT.as_secs()
            ),
            DbError::Gone => "chaosd is stopping".to_string(),
        };
        StoreError::Postgres { context, detail }
    }
}

/// Makes and keeps the connection.
pub struct Connector {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    shown: String,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl Connector {
    pub fn new(url: &str) -> Result<Connector, StoreError> {
        let shown = without_password(url);
        let mut config: tokio_postgres::Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| StoreError::Postgres {
                    context: format!("`store: {shown}` is not a PostgreSQL connection URL"),
                    detail: format!("{e}; write it as postgresql://USER@HOST[:PORT]/DATABASE"),
                })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("chaosd");
        }
        // A peer that vanished (a partition) is noticed in seconds rather than hours.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(5));
        Ok(Connector {
            config,
            tls: MakeRustlsConnect::new(tls_config()),
            shown,
            client: tokio::sync::Mutex::new(None),
        })
    }

    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// A new connection of its own (the leader's lock lives on one), its driver task spawned.
    pub async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a connection to PostgreSQL ended");
            }
        });
        Ok(client)
    }

    /// The shared connection, made again if it broke.
    pub async fn client(&self) -> Result<Arc<Client>, DbError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = &*slot
            && !client.is_closed()
        {
            return Ok(Arc::clone(client));
        }
        *slot = None;
        let client = Arc::new(self.connect().await?);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }
}

/// rustls with the `ring` provider and the system's trusted roots.
fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}{tail}")
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            without_password("postgresql://chaos:s3cret@db.internal:5432/chaos"),
            "postgresql://chaos:***@db.internal:5432/chaos"
        );
        assert_eq!(
            without_password("postgresql://chaos@db/chaos"),
            "postgresql://chaos@db/chaos"
        );
        let err = Connector::new("postgresql://a:b@c:notaport/d")
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains(":b@"), "{err}");
    }
}
