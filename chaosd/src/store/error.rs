//! The history's one error type.

use std::path::PathBuf;

use super::SCHEMA_VERSION;

/// What an error opening the history tells the user to do.
const HINT: &str = "pass --state-dir to use another";

/// Why the run history could not do what it was asked. Errors with a context keep SQLite's or
/// serde's error as their source, so `{:#}` of an `anyhow::Error` made from one reads
/// `context: cause`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory `{}`: {error}; {HINT}", dir.display())]
    CreateDir { dir: PathBuf, error: std::io::Error },
    #[error("cannot open the run history at `{}`: {error}; {HINT}", path.display())]
    Open {
        path: PathBuf,
        error: rusqlite::Error,
    },
    /// A file written by a newer build, refused rather than misread.
    #[error(
        "the run history at `{}` has schema version {version}, newer than this chaosctl knows \
         ({SCHEMA_VERSION}); upgrade chaosctl, or {HINT}",
        path.display()
    )]
    TooNew { path: PathBuf, version: i64 },
    #[error(
        "cannot update the run history at `{}` from schema version {version}: {error}; {HINT}",
        path.display()
    )]
    Migrate {
        path: PathBuf,
        version: i64,
        error: rusqlite::Error,
    },
    #[error("a run with id `{run_id}` is already in the run history at `{}`", path.display())]
    Duplicate { run_id: String, path: PathBuf },
    /// A write that failed: which, and SQLite's error, in words.
    #[error("{0}")]
    Write(String),
    /// A run id that is empty, which would match every run.
    #[error("an empty run id matches every run; give a run id, a prefix of one, or `latest`")]
    EmptyId,
    /// A run id that is a prefix of several runs; `candidates` names them (ten at most).
    #[error(
        "`{id}` matches more than one run: {candidates}; give more of the id, or the whole of it"
    )]
    Ambiguous { id: String, candidates: String },
    /// Reading or writing the database failed.
    #[error("{context}")]
    Sql {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    /// A report or a schedule that does not serialize, or a stored report that does not parse.
    #[error("{context}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
    /// The PostgreSQL store failed: what was being done, and the server's or driver's words.
    #[error("{context}: {detail}")]
    Postgres { context: String, detail: String },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
}

impl StoreError {
    /// A run id the caller gave that names no single run (not a failure of the history).
    pub fn is_bad_id(&self) -> bool {
        matches!(self, StoreError::EmptyId | StoreError::Ambiguous { .. })
    }
}

/// `.with_context(..)` for the history's results: the context, with the error as its source.
pub(super) trait Context<T> {
    fn with_context(self, context: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn with_context(self, context: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sql {
            context: context(),
            source,
        })
    }
}

impl<T> Context<T> for serde_json::Result<T> {
    fn with_context(self, context: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Json {
            context: context(),
            source,
        })
    }
}
