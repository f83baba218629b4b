//! The bearer tokens: every request but `GET /healthz` carries `Authorization: Bearer TOKEN`,
//! compared in constant time with each token from `--token-file`.
//!
//! The file may hold several tokens, one a line (blank lines and `#` comments are skipped), any
//! of them good: a new token is added, controllers move to it, the old one is removed, and
//! SIGHUP re-reads the file at each step ([`Token::replace`]), so no request fails on the way.
//! Clients send the first token of their file ([`first_token`]). `chaos-agent` and `chaosd` read
//! their token files the same way ([`read_token`], [`reload_tokens_on_sighup`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use subtle::ConstantTimeEq;

/// The secrets; never printed (its `Debug` hides them). Shared by every request and swapped
/// whole on a re-read, so a request sees either the old set or the new one.
pub struct Token(RwLock<Arc<Vec<Vec<u8>>>>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// What a re-read changed, in counts only: the tokens themselves are never logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub before: usize,
    pub after: usize,
    pub added: usize,
    pub removed: usize,
}

impl Token {
    /// One token.
    pub fn new(token: &str) -> Token {
        Token::from_list(vec![token.to_string()])
    }

    /// Several tokens, any of them admitted.
    pub fn from_list(tokens: Vec<String>) -> Token {
        Token(RwLock::new(Arc::new(
            tokens.into_iter().map(String::into_bytes).collect(),
        )))
    }

    /// How many tokens are admitted.
    pub fn count(&self) -> usize {
        self.current().len()
    }

    fn current(&self) -> Arc<Vec<Vec<u8>>> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Admits `other`'s tokens from now on, and says how the set changed.
    pub fn replace(&self, other: Token) -> Change {
        let new = other.current();
        let mut slot = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let old = Arc::clone(&slot);
        *slot = Arc::clone(&new);
        Change {
            before: old.len(),
            after: new.len(),
            added: new.iter().filter(|t| !old.contains(t)).count(),
            removed: old.iter().filter(|t| !new.contains(t)).count(),
        }
    }

    /// Whether an `Authorization` header value is `Bearer <one of these tokens>`. Each
    /// comparison takes the same time wherever the first differing byte is, and every token is
    /// compared, so neither which token matched nor where a guess went wrong can be timed (only
    /// the lengths can show).
    pub fn admits(&self, header: Option<&[u8]>) -> bool {
        let Some(header) = header else {
            return false;
        };
        let Some((scheme, presented)) = split_scheme(header) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return false;
        }
        let presented = presented.trim_ascii();
        let mut admitted = subtle::Choice::from(0);
        for token in self.current().iter() {
            admitted |= presented.ct_eq(token);
        }
        bool::from(admitted)
    }
}

/// The tokens a token file holds: one a line, trimmed; blank lines and `#` comments skipped.
pub fn parse_tokens(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The token a client sends: the first of its file.
pub fn first_token(text: &str) -> Option<String> {
    parse_tokens(text).into_iter().next()
}

/// Why a token file gave no token.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read token file `{path}`: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "token file `{path}` holds no token (only blank lines and `#` comments); put a long random token in it"
    )]
    Empty { path: PathBuf },
}

/// The tokens are the file's lines, trimmed, without blank lines and `#` comments; there must be
/// at least one. `chaosd` reads its tokens the same way.
pub fn read_token(path: &Path) -> Result<Token, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let tokens = parse_tokens(&text);
    if tokens.is_empty() {
        return Err(TokenFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    warn_if_readable_by_others(path);
    Ok(Token::from_list(tokens))
}

/// Re-reads `path` into `token` on every SIGHUP, for as long as the returned future runs: the
/// new set is logged by its counts, never its tokens. A file that cannot be read or holds no
/// token leaves the old tokens in place (a half-written file must not lock every controller
/// out). SIGHUP is caught from this call on, before the server says it is serving: its default
/// action would kill the process.
pub fn reload_tokens_on_sighup(
    token: Arc<Token>,
    path: PathBuf,
) -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let hup = signal(SignalKind::hangup());
    async move {
        let mut hup = match hup {
            Ok(hup) => hup,
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGHUP; the token file is read only at start");
                return;
            }
        };
        reload_loop(&mut hup, &token, &path).await;
    }
}

async fn reload_loop(hup: &mut tokio::signal::unix::Signal, token: &Token, path: &Path) {
    while hup.recv().await.is_some() {
        match read_token(path) {
            Ok(new) => {
                let change = token.replace(new);
                tracing::info!(
                    path = %path.display(),
                    tokens = change.after,
                    before = change.before,
                    added = change.added,
                    removed = change.removed,
                    "SIGHUP: token file re-read"
                );
            }
            Err(err) => tracing::error!(
                error = %err,
                tokens = token.count(),
                "SIGHUP: keeping the tokens in use; fix the token file and send SIGHUP again"
            ),
        }
    }
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the token file is readable by others; `chmod 600` it"
        );
    }
}

fn split_scheme(header: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = header.iter().position(|&b| b == b' ')?;
    Some((&header[..space], &header[space + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let t = Token::new("s3cret");
        assert!(t.admits(Some(b"Bearer s3cret")));
        assert!(t.admits(Some(b"bearer s3cret")));
        for bad in [
            &b""[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer s3cre",
            b"Bearer s3cret2",
            b"Basic s3cret",
            b"s3cret",
        ] {
            assert!(!t.admits(Some(bad)), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(!t.admits(None));
        assert_eq!(format!("{t:?}"), "Token(..)");
    }

    #[test]
    fn any_token_of_the_file_is_admitted_and_a_replace_counts_the_change() {
        let text = "# rotated 2026-12-05\n\n  new-token  \nold-token\n# old-token-2\n";
        assert_eq!(parse_tokens(text), ["new-token", "old-token"]);
        assert_eq!(first_token(text).as_deref(), Some("new-token"));
        assert_eq!(first_token("# only a comment\n\n"), None);

        let t = Token::from_list(parse_tokens(text));
        assert!(t.admits(Some(b"Bearer new-token")));
        assert!(t.admits(Some(b"Bearer old-token")));
        assert!(!t.admits(Some(b"Bearer old-token-2")));
        assert!(!t.admits(Some(b"Bearer # rotated 2026-12-05")));

        let change = t.replace(Token::from_list(vec!["new-token".into(), "third".into()]));
        assert_eq!(
            change,
            Change {
                before: 2,
                after: 2,
                added: 1,
                removed: 1
            }
        );
        assert!(!t.admits(Some(b"Bearer old-token")));
        assert!(t.admits(Some(b"Bearer third")));
        assert_eq!(t.count(), 2);
    }
}
