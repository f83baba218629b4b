//! What this agent's starts reverted from the journal of a dead agent, kept in
//! `<state_dir>/recovered.json` (the last [`KEEP`] faults), so that the controller's own revert of
//! such a fault, arriving after the restart, is answered with that outcome instead of a 404 that
//! would report the fault as possibly still in place.
//!
//! **Invariant:** the file is only ever replaced atomically (temp file, fsync, rename, directory
//! fsync), like a journal entry; an unreadable one counts as empty and is replaced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::FaultError;
use crate::local::Reverted;

/// How many recovered faults are remembered: far more than one run holds on one host, and the
/// file stays a few hundred KiB at most.
pub const KEEP: usize = 512;

/// One fault reverted at a start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub run_id: String,
    /// The fault's one-line summary.
    pub fault: String,
    pub reverted: Reverted,
}

#[derive(Debug, Clone)]
pub struct RecoveredLog {
    path: PathBuf,
}

impl RecoveredLog {
    /// The log of the agent whose state directory is `state_dir` (which exists).
    pub fn new(state_dir: &Path) -> RecoveredLog {
        RecoveredLog {
            path: state_dir.join("recovered.json"),
        }
    }

    /// Every record, oldest first; none when the file is missing or unreadable.
    pub fn load(&self) -> Vec<Record> {
        fs::read(&self.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// The record of `fault_id`, the newest if there are several.
    pub fn find(&self, fault_id: &str) -> Option<Record> {
        self.load()
            .into_iter()
            .rev()
            .find(|r| r.reverted.fault_id == fault_id)
    }

    /// Adds `records` and keeps the newest [`KEEP`], durably.
    pub fn append(&self, records: &[Record]) -> Result<(), FaultError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut all = self.load();
        all.extend_from_slice(records);
        let excess = all.len().saturating_sub(KEEP);
        all.drain(..excess);
        self.write(&all).map_err(|source| FaultError::Journal {
            path: self.path.clone(),
            action: "record the faults reverted at start",
            source,
        })
    }

    fn write(&self, records: &[Record]) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(records).map_err(io::Error::other)?;
        let tmp = self
            .path
            .with_extension(format!("json.{}.tmp", std::process::id()));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        match self.path.parent() {
            Some(dir) => File::open(dir)?.sync_all(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::local::RevertedBy;

    fn record(n: usize) -> Record {
        Record {
            run_id: "run".to_string(),
            fault: "pause pid 1 (pick all)".to_string(),
            reverted: Reverted {
                fault_id: format!("f{n}"),
                reverted_at: Utc::now(),
                verified: true,
                detail: "sent SIGCONT".to_string(),
                by: RevertedBy::Recovery,
            },
        }
    }

    #[test]
    fn keeps_the_newest_records_only() {
        let state = tempfile::tempdir().unwrap();
        let log = RecoveredLog::new(state.path());
        assert!(log.load().is_empty());
        let first: Vec<Record> = (0..KEEP).map(record).collect();
        log.append(&first).unwrap();
        log.append(&[record(KEEP), record(KEEP + 1)]).unwrap();
        let all = log.load();
        assert_eq!(all.len(), KEEP);
        assert_eq!(all[0].reverted.fault_id, "f2");
        assert_eq!(log.find("f1"), None, "the oldest are forgotten");
        assert_eq!(log.find(&format!("f{}", KEEP + 1)), Some(record_like(&all)));
        fs::write(state.path().join("recovered.json"), "{ garbled").unwrap();
        assert!(log.load().is_empty(), "unreadable counts as empty");
        log.append(&[record(7)]).unwrap();
        assert_eq!(log.load().len(), 1);
    }

    fn record_like(all: &[Record]) -> Record {
        all.last().unwrap().clone()
    }
}
