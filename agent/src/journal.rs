//! The journal: one JSON file per fault in `<state_dir>/journal/`, written and synced before the
//! fault touches the host and removed once it is reverted, so whoever starts next can undo what a
//! dead process left behind. A fault with nothing to undo (`Undo::needs_journal`) has no entry.
//!
//! **Invariant:** an entry is only ever replaced atomically (temp file, fsync, rename, directory
//! fsync); a reader sees the old entry or the new one, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::FaultError;
use crate::fault::Undo;
use crate::spec::FaultSpec;

/// One fault as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub run_id: String,
    pub fault_id: String,
    pub spec: FaultSpec,
    /// Exactly what to undo, decided before the injection.
    pub undo: Undo,
    pub state: EntryState,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub applied_at: Option<DateTime<Utc>>,
    /// When the holding agent reverts it on its own.
    #[serde(default)]
    pub end_at: Option<DateTime<Utc>>,
    /// The agent that holds the fault; another agent leaves it alone while that one lives.
    pub owner: Owner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// Journaled; the injection may have begun (or be half done).
    Planned,
    /// Injected and verified as far as it could be.
    Applied,
}

/// A process (pid + start time) and the agent instance inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: i32,
    pub start_time: u64,
    pub instance: u64,
}

/// What a journal file held.
#[derive(Debug)]
pub enum Loaded {
    Entry(Box<Entry>),
    /// A file that is not a valid entry: reported, kept for a person to look at.
    Corrupt {
        path: PathBuf,
        fault_id: String,
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// Opens `<state_dir>/journal`, creating it (and `state_dir`) when missing.
    pub fn open(state_dir: &Path) -> Result<Journal, FaultError> {
        let dir = state_dir.join("journal");
        fs::create_dir_all(&dir).map_err(|source| FaultError::Journal {
            path: dir.clone(),
            action: "create the directory",
            source,
        })?;
        Ok(Journal { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of one fault.
    pub fn path_of(&self, fault_id: &str) -> PathBuf {
        self.dir.join(format!("{fault_id}.json"))
    }

    /// Writes (or replaces) `entry` durably: when this returns, the entry survives a crash.
    pub fn write(&self, entry: &Entry) -> Result<(), FaultError> {
        self.write_entry(entry, true)
    }

    /// Rewrites an entry without waiting for the disk: for updates whose loss is harmless
    /// because the synced entry already holds everything recovery needs (the `Applied` marker).
    pub fn update(&self, entry: &Entry) -> Result<(), FaultError> {
        self.write_entry(entry, false)
    }

    fn write_entry(&self, entry: &Entry, sync: bool) -> Result<(), FaultError> {
        let path = self.path_of(&entry.fault_id);
        let tmp = self.dir.join(format!(
            ".{}.json.{}.tmp",
            entry.fault_id,
            std::process::id()
        ));
        let fail = |action, source| FaultError::Journal {
            path: path.clone(),
            action,
            source,
        };
        let json = serde_json::to_vec_pretty(entry)
            .map_err(|err| fail("serialize the entry", io::Error::other(err)))?;
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            file.write_all(&json)?;
            file.write_all(b"\n")?;
            if sync {
                file.sync_all()?;
            }
            Ok(())
        })();
        if let Err(source) = written {
            let _ = fs::remove_file(&tmp);
            return Err(fail("write the entry", source));
        }
        if let Err(source) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(fail("rename the entry into place", source));
        }
        if !sync {
            return Ok(());
        }
        self.sync_dir()
            .map_err(|source| fail("sync the directory", source))
    }

    /// Removes the entry of a reverted fault (an absent entry is fine).
    pub fn remove(&self, fault_id: &str) -> Result<(), FaultError> {
        let path = self.path_of(fault_id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(FaultError::Journal {
                    path,
                    action: "remove the entry",
                    source,
                });
            }
        }
        self.sync_dir().map_err(|source| FaultError::Journal {
            path,
            action: "sync the directory",
            source,
        })
    }

    /// The entry of one fault; `None` when it has none.
    pub fn read(&self, fault_id: &str) -> Result<Option<Entry>, FaultError> {
        let path = self.path_of(fault_id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(FaultError::Journal {
                    path,
                    action: "read the entry",
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| FaultError::JournalCorrupt {
                path,
                reason: err.to_string(),
            })
    }

    /// Every entry, sorted by file name; unparsable files come back as [`Loaded::Corrupt`].
    /// Temp files of writers that died are removed.
    pub fn load(&self) -> Result<Vec<Loaded>, FaultError> {
        let read_dir = fs::read_dir(&self.dir).map_err(|source| FaultError::Journal {
            path: self.dir.clone(),
            action: "list the entries",
            source,
        })?;
        let mut paths: Vec<PathBuf> = read_dir.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        let mut loaded = Vec::new();
        for path in paths {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') {
                remove_stale_tmp(&path, name);
                continue;
            }
            let Some(fault_id) = name.strip_suffix(".json") else {
                continue;
            };
            let parsed = fs::read(&path)
                .map_err(|err| err.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<Entry>(&bytes).map_err(|err| err.to_string())
                });
            loaded.push(match parsed {
                Ok(entry) if entry.fault_id == fault_id => Loaded::Entry(Box::new(entry)),
                Ok(entry) => Loaded::Corrupt {
                    path: path.clone(),
                    fault_id: fault_id.to_string(),
                    reason: format!("it names fault `{}`", entry.fault_id),
                },
                Err(reason) => Loaded::Corrupt {
                    path: path.clone(),
                    fault_id: fault_id.to_string(),
                    reason,
                },
            });
        }
        Ok(loaded)
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}

/// `.<id>.json.<pid>.tmp` of a process that no longer exists: a write that never committed.
fn remove_stale_tmp(path: &Path, name: &str) {
    let Some(pid) = name
        .strip_suffix(".tmp")
        .and_then(|rest| rest.rsplit('.').next())
        .and_then(|pid| pid.parse::<i32>().ok())
    else {
        return;
    };
    if !Path::new(&format!("/proc/{pid}")).exists() {
        let _ = fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{PauseSpec, Pick, ProcessSelector};

    fn entry(fault_id: &str) -> Entry {
        Entry {
            run_id: "run-1".to_string(),
            fault_id: fault_id.to_string(),
            spec: FaultSpec::Pause(PauseSpec {
                process: ProcessSelector::Pid(1234),
                pick: Pick::All,
            }),
            undo: Undo::Pause {
                processes: Vec::new(),
            },
            state: EntryState::Planned,
            created_at: Utc::now(),
            applied_at: None,
            end_at: None,
            owner: Owner {
                pid: 1,
                start_time: 2,
                instance: 3,
            },
        }
    }

    #[test]
    fn entries_round_trip_and_are_removed() {
        let state = tempfile::tempdir().unwrap();
        let journal = Journal::open(state.path()).unwrap();
        let mut e = entry("f-1");
        journal.write(&e).unwrap();
        e.state = EntryState::Applied;
        journal.write(&e).unwrap();
        let loaded = journal.load().unwrap();
        assert!(matches!(&loaded[..], [Loaded::Entry(got)] if **got == e));
        journal.remove("f-1").unwrap();
        journal.remove("f-1").unwrap();
        assert!(journal.load().unwrap().is_empty());
        assert_eq!(
            fs::read_dir(journal.dir()).unwrap().count(),
            0,
            "no temp files left"
        );
    }

    #[test]
    fn garbled_entries_are_reported_not_dropped() {
        let state = tempfile::tempdir().unwrap();
        let journal = Journal::open(state.path()).unwrap();
        fs::write(journal.path_of("bad"), "{ not json").unwrap();
        let loaded = journal.load().unwrap();
        assert!(
            matches!(&loaded[..], [Loaded::Corrupt { fault_id, .. }] if fault_id == "bad"),
            "{loaded:?}"
        );
        assert!(
            journal.path_of("bad").exists(),
            "kept for a person to look at"
        );
    }
}
