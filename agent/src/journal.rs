//! The journal: the faults in place, in `<state_dir>/journal/`, each written and synced before it
//! touches the host and removed once it is reverted, so whoever starts next can undo what a dead
//! process left behind. A fault with nothing to undo (`Undo::needs_journal`) has no entry.
//!
//! Two kinds of file: `<fault_id>.json` holds one entry, and `batch+<fault_id>.json` (`+` is never
//! in a fault id) the entries of several faults injected together, named after the first, written
//! by one synced write: a step of five faults on one agent waits for the disk once, not five times.
//! Later rewrites of a batched fault (the `Applied` marker, an adoption) go to its own
//! `<fault_id>.json`, which then stands for it; the batch file stays as written, and goes once
//! every fault in it is removed. A fault removed from a batch that is still on disk is named by it
//! until then: a start after a crash reverts it again, which is harmless (reverts are idempotent).
//!
//! **Invariant:** a file is only ever replaced atomically (temp file, fsync, rename, directory
//! fsync); a reader sees the old entry or the new one, never half of one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

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

/// The journal of one state directory. Clones share which batch files hold which faults.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
    batches: Arc<Mutex<Batches>>,
}

/// The batch files this journal wrote or loaded, and which of their faults are not removed yet.
#[derive(Debug, Default)]
struct Batches {
    /// Batch file name → the faults in it not removed yet.
    open: HashMap<String, BTreeSet<String>>,
    /// Fault id → the batch file that holds it.
    holder: HashMap<String, String>,
}

impl Batches {
    /// Notes that `file` holds these faults, unless it is known already (a second `load` must
    /// not bring back faults removed since the first).
    fn register<'a>(&mut self, file: &str, fault_ids: impl Iterator<Item = &'a str>) {
        if self.open.contains_key(file) {
            return;
        }
        let ids: BTreeSet<String> = fault_ids.map(str::to_string).collect();
        for id in &ids {
            self.holder.insert(id.clone(), file.to_string());
        }
        self.open.insert(file.to_string(), ids);
    }

    /// Forgets `fault_id`; returns its batch file when it was the last fault in it.
    fn remove(&mut self, fault_id: &str) -> Removed {
        let Some(file) = self.holder.remove(fault_id) else {
            return Removed::NotBatched;
        };
        let Some(left) = self.open.get_mut(&file) else {
            return Removed::NotBatched;
        };
        left.remove(fault_id);
        if left.is_empty() {
            self.open.remove(&file);
            Removed::LastOf(file)
        } else {
            Removed::OthersLeft
        }
    }
}

/// What removing a fault from the batches left.
enum Removed {
    NotBatched,
    /// Its batch still holds other faults, so the file stays.
    OthersLeft,
    /// It was the last fault of this batch file, which can go.
    LastOf(String),
}

/// The prefix of a batch file's name; `+` is never in a fault id.
const BATCH_PREFIX: &str = "batch+";

impl Journal {
    /// Opens `<state_dir>/journal`, creating it (and `state_dir`) when missing.
    pub fn open(state_dir: &Path) -> Result<Journal, FaultError> {
        let dir = state_dir.join("journal");
        fs::create_dir_all(&dir).map_err(|source| FaultError::Journal {
            path: dir.clone(),
            action: "create the directory",
            source,
        })?;
        Ok(Journal {
            dir,
            batches: Arc::default(),
        })
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
        let path = self.path_of(&entry.fault_id);
        self.write_file(&path, &to_json(&path, entry)?, true)
    }

    /// Writes the entries of faults injected together durably, with one synced write: when this
    /// returns, they all survive a crash. One entry is written as [`Journal::write`] does.
    pub fn write_batch(&self, entries: &[Entry]) -> Result<(), FaultError> {
        let [first, ..] = entries else {
            return Ok(());
        };
        if entries.len() == 1 {
            return self.write(first);
        }
        let name = format!("{BATCH_PREFIX}{}.json", first.fault_id);
        let path = self.dir.join(&name);
        self.write_file(&path, &to_json(&path, &entries)?, true)?;
        lock(&self.batches).register(&name, entries.iter().map(|e| e.fault_id.as_str()));
        Ok(())
    }

    /// Rewrites an entry without waiting for the disk: for updates whose loss is harmless
    /// because the synced entry already holds everything recovery needs (the `Applied` marker).
    /// A fault of a batch gets its own file, which stands for it from then on.
    pub fn update(&self, entry: &Entry) -> Result<(), FaultError> {
        let path = self.path_of(&entry.fault_id);
        self.write_file(&path, &to_json(&path, entry)?, false)
    }

    /// Replaces `path` with `json` atomically; with `sync`, durably.
    fn write_file(&self, path: &Path, json: &[u8], sync: bool) -> Result<(), FaultError> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
        let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let fail = |action, source| FaultError::Journal {
            path: path.to_path_buf(),
            action,
            source,
        };
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            file.write_all(json)?;
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
        if let Err(source) = fs::rename(&tmp, path) {
            let _ = fs::remove_file(&tmp);
            return Err(fail("rename the entry into place", source));
        }
        if !sync {
            return Ok(());
        }
        self.sync_dir()
            .map_err(|source| fail("sync the directory", source))
    }

    /// Removes the entry of a reverted fault (an absent entry is fine). Durable, except for a
    /// fault whose batch file still holds others: that file names it until the last one goes.
    pub fn remove(&self, fault_id: &str) -> Result<(), FaultError> {
        let path = self.path_of(fault_id);
        let own_file = remove_if_there(&path).map_err(|source| FaultError::Journal {
            path: path.clone(),
            action: "remove the entry",
            source,
        })?;
        let removed = lock(&self.batches).remove(fault_id);
        let synced_path = match removed {
            Removed::OthersLeft => return Ok(()),
            Removed::NotBatched if !own_file => return Ok(()),
            Removed::NotBatched => path,
            Removed::LastOf(name) => {
                let batch = self.dir.join(name);
                remove_if_there(&batch).map_err(|source| FaultError::Journal {
                    path: batch.clone(),
                    action: "remove the batch",
                    source,
                })?;
                batch
            }
        };
        self.sync_dir().map_err(|source| FaultError::Journal {
            path: synced_path,
            action: "sync the directory",
            source,
        })
    }

    /// The entry of one fault; `None` when it has none.
    pub fn read(&self, fault_id: &str) -> Result<Option<Entry>, FaultError> {
        let path = self.path_of(fault_id);
        if let Some(entry) = read_json::<Entry>(&path)? {
            return Ok(Some(entry));
        }
        let batch = lock(&self.batches).holder.get(fault_id).cloned();
        let Some(batch) = batch else {
            return Ok(None);
        };
        let entries = read_json::<Vec<Entry>>(&self.dir.join(batch))?.unwrap_or_default();
        Ok(entries.into_iter().find(|e| e.fault_id == fault_id))
    }

    /// Every entry, sorted by fault id; unparsable files come back as [`Loaded::Corrupt`]. A fault
    /// with a file of its own is read from it (the newer), else from its batch; a batch entry
    /// stands in for an own file that cannot be read. Temp files of writers that died are
    /// removed.
    pub fn load(&self) -> Result<Vec<Loaded>, FaultError> {
        let read_dir = fs::read_dir(&self.dir).map_err(|source| FaultError::Journal {
            path: self.dir.clone(),
            action: "list the entries",
            source,
        })?;
        let mut paths: Vec<PathBuf> = read_dir.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        // By fault id (or a corrupt batch's name): what each file says.
        let mut own: BTreeMap<String, Loaded> = BTreeMap::new();
        let mut batched: BTreeMap<String, Entry> = BTreeMap::new();
        for path in paths {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') {
                remove_stale_tmp(&path, name);
                continue;
            }
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            let bytes = fs::read(&path).map_err(|err| err.to_string());
            if stem.starts_with(BATCH_PREFIX) {
                match bytes.and_then(|b| {
                    serde_json::from_slice::<Vec<Entry>>(&b).map_err(|err| err.to_string())
                }) {
                    Ok(entries) => {
                        lock(&self.batches)
                            .register(name, entries.iter().map(|e| e.fault_id.as_str()));
                        for entry in entries {
                            batched.insert(entry.fault_id.clone(), entry);
                        }
                    }
                    Err(reason) => {
                        let fault_id = stem.to_string();
                        own.insert(
                            fault_id.clone(),
                            Loaded::Corrupt {
                                path,
                                fault_id,
                                reason,
                            },
                        );
                    }
                }
                continue;
            }
            let fault_id = stem.to_string();
            let loaded = match bytes
                .and_then(|b| serde_json::from_slice::<Entry>(&b).map_err(|err| err.to_string()))
            {
                Ok(entry) if entry.fault_id == fault_id => Loaded::Entry(Box::new(entry)),
                Ok(entry) => Loaded::Corrupt {
                    path,
                    fault_id: fault_id.clone(),
                    reason: format!("it names fault `{}`", entry.fault_id),
                },
                Err(reason) => Loaded::Corrupt {
                    path,
                    fault_id: fault_id.clone(),
                    reason,
                },
            };
            own.insert(fault_id, loaded);
        }
        for (fault_id, entry) in batched {
            let readable = matches!(own.get(&fault_id), Some(Loaded::Entry(_)));
            if !readable {
                own.insert(fault_id, Loaded::Entry(Box::new(entry)));
            }
        }
        Ok(own.into_values().collect())
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}

fn to_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<Vec<u8>, FaultError> {
    serde_json::to_vec_pretty(value).map_err(|err| FaultError::Journal {
        path: path.to_path_buf(),
        action: "serialize the entry",
        source: io::Error::other(err),
    })
}

/// The JSON in `path`; `None` when there is no such file.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, FaultError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FaultError::Journal {
                path: path.to_path_buf(),
                action: "read the entry",
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| FaultError::JournalCorrupt {
            path: path.to_path_buf(),
            reason: err.to_string(),
        })
}

/// Removes `path`; whether it was there.
fn remove_if_there(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `.<name>.<pid>.tmp` of a process that no longer exists: a write that never committed.
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

    fn files(journal: &Journal) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(journal.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn loaded_states(journal: &Journal) -> Vec<(String, EntryState)> {
        journal
            .load()
            .unwrap()
            .into_iter()
            .map(|l| match l {
                Loaded::Entry(e) => (e.fault_id, e.state),
                Loaded::Corrupt {
                    fault_id, reason, ..
                } => panic!("{fault_id}: {reason}"),
            })
            .collect()
    }

    #[test]
    fn a_batch_is_one_file_until_its_last_fault_is_removed() {
        let state = tempfile::tempdir().unwrap();
        let journal = Journal::open(state.path()).unwrap();
        let batch = [entry("a"), entry("b")];
        journal.write_batch(&batch).unwrap();
        assert_eq!(files(&journal), ["batch+a.json"]);
        assert_eq!(journal.read("b").unwrap().as_ref(), Some(&batch[1]));

        let mut b = batch[1].clone();
        b.state = EntryState::Applied;
        journal.update(&b).unwrap();
        assert_eq!(
            loaded_states(&journal),
            [
                ("a".to_string(), EntryState::Planned),
                ("b".to_string(), EntryState::Applied)
            ],
            "a fault's own file is newer than its batch"
        );

        journal.remove("a").unwrap();
        assert_eq!(files(&journal), ["b.json", "batch+a.json"]);
        // Loading again sees `a` in the batch file, but must not count it as in place again:
        // otherwise the batch would never go.
        assert_eq!(loaded_states(&journal).len(), 2);
        journal.remove("b").unwrap();
        assert!(files(&journal).is_empty(), "{:?}", files(&journal));
    }

    #[test]
    fn a_batch_of_one_is_a_plain_entry() {
        let state = tempfile::tempdir().unwrap();
        let journal = Journal::open(state.path()).unwrap();
        journal.write_batch(&[entry("solo")]).unwrap();
        journal.write_batch(&[]).unwrap();
        assert_eq!(files(&journal), ["solo.json"]);
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
