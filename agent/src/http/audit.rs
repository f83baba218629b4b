//! The audit log: one JSON line per request obeyed or refused, and per thing the agent did on its
//! own (a lease expiring, a shutdown, a recovery at start), in `<state-dir>/audit.jsonl`, each line
//! written and flushed whole before the answer goes out.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

/// The audit log's file name inside the state directory.
pub const FILE_NAME: &str = "audit.jsonl";

/// One line of the log.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    /// `request`, `lease_expired`, `recovered`, `shutdown`.
    pub event: &'static str,
    /// The peer that sent the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub run: Option<String>,
    /// Who asked, as the server knows them, where it tells callers apart (chaosd: the API token
    /// or a web view session); the agent has one caller and leaves it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Whether the bearer token was right (`None` for `GET /healthz` and the agent's own acts).
    pub token_ok: Option<bool>,
    /// The HTTP status answered (left out for the agent's own acts).
    #[serde(skip_serializing_if = "is_zero")]
    pub status: u16,
    /// `obeyed`, `refused` (4xx) or `failed` (5xx, or a fault that could not be applied/reverted).
    pub outcome: &'static str,
    /// Fault ids, what was done, or the error.
    pub detail: String,
}

impl Record {
    /// A request's record; the outcome follows from the status until the caller says otherwise.
    pub fn request(remote: SocketAddr, method: &str, path: &str) -> Record {
        Record {
            at: now(),
            event: "request",
            remote: Some(remote.to_string()),
            method: Some(method.to_string()),
            path: Some(path.to_string()),
            run: None,
            actor: None,
            token_ok: None,
            status: 0,
            outcome: "",
            detail: String::new(),
        }
    }

    /// Something the agent did on its own.
    pub fn own(
        event: &'static str,
        run: Option<&str>,
        outcome: &'static str,
        detail: String,
    ) -> Record {
        Record {
            at: now(),
            event,
            remote: None,
            method: None,
            path: None,
            run: run.map(str::to_string),
            actor: None,
            token_ok: None,
            status: 0,
            outcome,
            detail,
        }
    }
}

fn is_zero(status: &u16) -> bool {
    *status == 0
}

fn now() -> String {
    let at: DateTime<Utc> = Utc::now();
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `obeyed` for 2xx/3xx, `refused` for 4xx, `failed` for 5xx.
pub fn outcome_of(status: u16) -> &'static str {
    match status {
        0..=399 => "obeyed",
        400..=499 => "refused",
        _ => "failed",
    }
}

/// The open log; lines from concurrent requests never interleave.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    pub fn open(state_dir: &Path) -> std::io::Result<AuditLog> {
        std::fs::create_dir_all(state_dir)?;
        let path = state_dir.join(FILE_NAME);
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)?
        };
        Ok(AuditLog {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line and flushes it. A failure is logged, never fatal: the request was already
    /// decided.
    pub fn write(&self, record: &Record) {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(err) => {
                tracing::error!(error = %err, "cannot encode an audit record");
                return;
            }
        };
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(err) = file.write_all(&line).and_then(|()| file.flush()) {
            tracing::error!(path = %self.path.display(), error = %err, "cannot write the audit log");
        }
    }
}
