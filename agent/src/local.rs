//! The in-process agent (`chaosctl`'s `local` host): injects and reverts faults on this machine,
//! journals each one before it touches the host, reverts held faults at their end time from its
//! own thread, and on `open` reverts whatever an earlier process left in the journal.
//!
//! **Architecture Invariant:** the agent never injects a fault it has not journaled.
//! **Invariant:** a fault is reverted at most once at a time: the table marks it `Reverting` while
//! one caller works on it, and every other caller (end-time thread, `revert`, `revert_all`, drop)
//! waits for that outcome instead of reverting again.

use std::any::Any;
use std::collections::{BTreeSet, HashMap};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::FaultError;
use crate::fault::{self, Undo};
use crate::journal::{Entry, EntryState, Journal, Loaded, Owner};
use crate::process;
use crate::recovered::{self, RecoveredLog};
pub use crate::spec::Exempt;
use crate::spec::{FaultKind, FaultSpec, MAX_HOLD};

/// Agents alive in this process (by instance number): their journal entries are not orphans.
static LIVE: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// What to inject, and for how long the agent holds it on its own.
#[derive(Debug, Clone)]
pub struct InjectRequest {
    pub run_id: String,
    /// Unique per fault: letters, digits, `-`, `_`, `.` (it names files).
    pub fault_id: String,
    pub spec: FaultSpec,
    /// Draws the picks: the same seed and the same processes give the same picks.
    pub seed: u64,
    /// When set, the agent itself reverts the fault this long after it was applied.
    pub hold: Option<Duration>,
    /// Connections network faults must never touch: the controller's, to this agent.
    pub exempt: Vec<Exempt>,
    /// What the caller found the fault to mean on this host for its policy check
    /// ([`fault::resolve`]), so that the plan acts on what the policy allowed; `None`: resolved
    /// when planned.
    pub resolved: Option<fault::Resolved>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub fault_id: String,
    pub applied_at: DateTime<Utc>,
    pub mechanism: String,
    /// `pid 123 (demo-worker)`, `/mnt/x/.chaos-fill-ab12 (512 MiB)`.
    pub affected: Vec<String>,
    /// The host was read back and shows the fault in place.
    pub verified: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reverted {
    pub fault_id: String,
    pub reverted_at: DateTime<Utc>,
    /// The host was read back and shows the fault gone.
    pub verified: bool,
    pub detail: String,
    pub by: RevertedBy,
}

/// Who reverted a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevertedBy {
    /// `revert` or `revert_all`.
    Request,
    /// The agent, at the fault's end time.
    EndTime,
    /// `open`, from the journal of an earlier process.
    Recovery,
    /// The agent being stopped (`shutdown`, or the last handle dropped).
    Shutdown,
}

/// A fault `open` found in the journal, and what reverting it gave.
#[derive(Debug)]
pub struct Recovered {
    pub fault_id: String,
    /// Empty when the entry could not be read.
    pub run_id: String,
    /// The fault's one-line summary ([`FaultSpec`]'s `Display`).
    pub fault: String,
    pub result: Result<Reverted, FaultError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveFault {
    pub fault_id: String,
    pub run_id: String,
    pub spec: FaultSpec,
    pub applied_at: DateTime<Utc>,
    pub end_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub kinds: Vec<KindSupport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindSupport {
    pub kind: FaultKind,
    pub supported: bool,
    pub mechanism: Option<String>,
    pub reason: Option<String>,
}

/// The in-process agent. Cheap to clone; all clones share one journal and one table. When the last
/// clone is dropped, every fault still active is reverted (`RevertedBy::Shutdown`).
#[derive(Clone)]
pub struct LocalAgent {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for LocalAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAgent")
            .field("journal", &self.handle.inner.journal.dir())
            .finish_non_exhaustive()
    }
}

/// Owns the end-time thread; its drop stops the agent.
struct Handle {
    inner: Arc<Inner>,
    /// Started with the first fault held until an end time: a run of instant faults (a `kill`)
    /// never needs it. `None` once stopped.
    timer: Mutex<Option<Timer>>,
}

enum Timer {
    NotStarted,
    Running(JoinHandle<()>),
}

struct Inner {
    journal: Journal,
    /// What starts reverted from the journal: a later revert of one of them is answered from it.
    recovered: RecoveredLog,
    owner: Owner,
    table: Mutex<Table>,
    /// Signalled on every change of the table (and to stop the timer).
    changed: Condvar,
}

#[derive(Default)]
struct Table {
    faults: HashMap<String, Slot>,
    stopping: bool,
    abandoned: bool,
}

enum Slot {
    Injecting,
    Active(Box<Held>),
    Reverting(Box<ActiveFault>),
    Reverted(Reverted),
}

struct Held {
    fault: ActiveFault,
    undo: Undo,
    /// When the end-time thread reverts it next (its end time, or a retry after a failure).
    next_try: Option<DateTime<Utc>>,
    failures: u32,
}

/// A fault planned and not injected yet: its entry, and what the injection needs.
struct Planned {
    entry: Entry,
    /// Whether it has anything to undo, so a journal entry.
    journaled: bool,
    hold: Option<Duration>,
    exempt: Vec<Exempt>,
}

impl LocalAgent {
    /// Opens (creating) the journal under `state_dir` and reverts every fault an earlier process
    /// left there; returns what it reverted (the caller tells the user). Entries held by an agent
    /// that is still alive (another process, or another `LocalAgent` here) are left alone.
    /// Faults whose revert fails stay active here, so `revert_all` can retry them.
    pub fn open(state_dir: &Path) -> Result<(LocalAgent, Vec<Recovered>), FaultError> {
        let journal = Journal::open(state_dir)?;
        let pid = std::process::id() as i32;
        let me = process::read(pid).ok_or_else(|| FaultError::Proc {
            source: std::io::Error::other("cannot read this process in `/proc`"),
        })?;
        let owner = Owner {
            pid,
            start_time: me.start_time,
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
        };
        let loaded = journal.load()?;
        lock(&LIVE).insert(owner.instance);
        let inner = Arc::new(Inner {
            journal,
            recovered: RecoveredLog::new(state_dir),
            owner,
            table: Mutex::new(Table::default()),
            changed: Condvar::new(),
        });
        let recovered = loaded
            .into_iter()
            .filter_map(|loaded| inner.recover(loaded, false))
            .collect();
        let handle = Arc::new(Handle {
            inner,
            timer: Mutex::new(Some(Timer::NotStarted)),
        });
        Ok((LocalAgent { handle }, recovered))
    }

    /// Break glass: reverts every fault in the journal, including those a live agent (another
    /// chaosctl's run, say) still holds, then this agent's own. That agent's own later revert
    /// finds the fault gone and does no harm.
    pub fn revert_everything(&self) -> Result<Vec<Recovered>, FaultError> {
        let inner = &self.handle.inner;
        let mut reverted: Vec<Recovered> = inner
            .journal
            .load()?
            .into_iter()
            .filter_map(|loaded| inner.recover(loaded, true))
            .collect();
        for (fault_id, result) in self.revert_all() {
            reverted.push(Recovered {
                fault_id,
                run_id: String::new(),
                fault: String::new(),
                result,
            });
        }
        Ok(reverted)
    }

    /// Which kinds this agent can inject, how, and why not.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities {
            kinds: FaultKind::ALL
                .iter()
                .map(|&kind| match fault::support(kind) {
                    Ok(mechanism) => KindSupport {
                        kind,
                        supported: true,
                        mechanism: Some(mechanism.to_string()),
                        reason: None,
                    },
                    Err(reason) => KindSupport {
                        kind,
                        supported: false,
                        mechanism: None,
                        reason: Some(reason.to_string()),
                    },
                })
                .collect(),
        }
    }

    /// Preflight: the kind is supported here and its selector matches / its path is usable.
    /// Injects nothing.
    pub fn check(&self, spec: &FaultSpec) -> Result<(), FaultError> {
        fault::check(spec)
    }

    /// [`LocalAgent::check`] of `spec` as the caller resolved it for its policy check.
    pub fn check_at(&self, spec: &FaultSpec, at: &fault::Resolved) -> Result<(), FaultError> {
        fault::check_at(spec, at)
    }

    /// Plans the fault, journals it, injects it and reads the host back. With `hold`, the agent
    /// reverts it on its own at `applied_at + hold` unless it was reverted before.
    /// A hold over [`MAX_HOLD`] is refused before anything is journaled. A panic while injecting
    /// does not escape: whatever the journal holds of the fault is reverted and the panic comes
    /// back as [`FaultError::Panicked`], so no slot is left `Injecting` for reverts to wait on.
    pub fn inject(&self, req: InjectRequest) -> Result<Applied, FaultError> {
        self.inject_batch(vec![req])
            .pop()
            .expect("one result per request")
    }

    /// [`LocalAgent::inject`] of several faults at once (a step's faults on this host): each is
    /// planned, then all those with something to undo are journaled by one synced write, then
    /// each is injected in turn. One result per request, in their order; a fault that fails
    /// (its plan, or its injection) does not stop the others.
    pub fn inject_batch(&self, reqs: Vec<InjectRequest>) -> Vec<Result<Applied, FaultError>> {
        let inner = &self.handle.inner;
        // Before anything is injected: a fault held until an end time is never left without the
        // thread that reverts it then. An instant one (a `kill`) has nothing to revert then.
        if reqs
            .iter()
            .any(|r| r.hold.is_some() && r.spec.kind().holds())
            && let Err(err) = self.handle.start_timer()
        {
            return reqs.iter().map(|_| Err(batch_error(&err))).collect();
        }
        let mut results: Vec<Option<Result<Applied, FaultError>>> = Vec::new();
        let mut planned = Vec::new();
        for req in reqs {
            let fault_id = req.fault_id.clone();
            let plan = inner.reserve(&req).and_then(|()| {
                panic::catch_unwind(AssertUnwindSafe(|| inner.plan(req))).unwrap_or_else(|panic| {
                    Err(inner.undo_panicked(&fault_id, panic_message(&*panic)))
                })
            });
            match plan {
                Ok(plan) => {
                    planned.push((results.len(), plan));
                    results.push(None);
                }
                Err(err) => results.push(Some(Err(err))),
            }
        }
        let journaled: Vec<Entry> = planned
            .iter()
            .filter(|(_, plan)| plan.journaled)
            .map(|(_, plan)| plan.entry.clone())
            .collect();
        let unjournaled = inner.journal.write_batch(&journaled).err();
        for (at, plan) in planned {
            let fault_id = plan.entry.fault_id.clone();
            let result = match &unjournaled {
                Some(err) if plan.journaled => Err(inner.forget(&fault_id, batch_error(err))),
                _ => panic::catch_unwind(AssertUnwindSafe(|| inner.inject_planned(plan)))
                    .unwrap_or_else(|panic| {
                        Err(inner.undo_panicked(&fault_id, panic_message(&*panic)))
                    }),
            };
            results[at] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.expect("every request has its result"))
            .collect()
    }

    /// Reverts one fault. Idempotent: a fault already reverted (by anyone) gives that earlier
    /// result; a revert under way elsewhere is waited for, never done twice.
    pub fn revert(&self, fault_id: &str) -> Result<Reverted, FaultError> {
        self.handle.inner.revert(fault_id, RevertedBy::Request)
    }

    /// Reverts every fault still in place, each with its own outcome.
    pub fn revert_all(&self) -> Vec<(String, Result<Reverted, FaultError>)> {
        self.handle.inner.revert_all(RevertedBy::Request)
    }

    /// Stops the end-time thread and reverts every fault still in place (`RevertedBy::Shutdown`).
    /// Dropping the last handle does the same, without the results.
    pub fn shutdown(&self) -> Vec<(String, Result<Reverted, FaultError>)> {
        self.handle.stop_timer();
        self.handle.inner.revert_all(RevertedBy::Shutdown)
    }

    /// The faults in place now (including ones being reverted), oldest first.
    pub fn active(&self) -> Vec<ActiveFault> {
        let table = lock(&self.handle.inner.table);
        let mut active: Vec<ActiveFault> = table
            .faults
            .values()
            .filter_map(|slot| match slot {
                Slot::Active(held) => Some(held.fault.clone()),
                Slot::Reverting(fault) => Some(ActiveFault::clone(fault)),
                Slot::Injecting | Slot::Reverted(_) => None,
            })
            .collect();
        active.sort_by(|a, b| (a.applied_at, &a.fault_id).cmp(&(b.applied_at, &b.fault_id)));
        active
    }

    /// What a start of this agent (or an earlier one on the same state directory) reverted of
    /// `fault_id` from a dead agent's journal, if it did.
    pub fn recovered(&self, fault_id: &str) -> Option<recovered::Record> {
        self.handle.inner.recovered.find(fault_id)
    }

    /// The journal directory this agent writes.
    pub fn journal_dir(&self) -> &Path {
        self.handle.inner.journal.dir()
    }

    /// Lets go of every fault without reverting it, as if this process had crashed: the end-time
    /// thread stops, the journal keeps the entries, and the next `open` of the state directory
    /// reverts them. For tests and for handing faults over to another process.
    pub fn abandon(self) {
        lock(&self.handle.inner.table).abandoned = true;
        self.handle.stop_timer();
        lock(&LIVE).remove(&self.handle.inner.owner.instance);
    }
}

impl Handle {
    /// Starts the end-time thread unless it runs (or was stopped).
    fn start_timer(&self) -> Result<(), FaultError> {
        let mut timer = lock(&self.timer);
        if !matches!(*timer, Some(Timer::NotStarted)) {
            return Ok(());
        }
        let inner = Arc::clone(&self.inner);
        let running = thread::Builder::new()
            .name("chaos-agent-timer".to_string())
            .spawn(move || inner.run_timer())
            .map_err(|source| FaultError::Journal {
                path: self.inner.journal.dir().to_path_buf(),
                action: "start the end-time thread",
                source,
            })?;
        *timer = Some(Timer::Running(running));
        Ok(())
    }

    fn stop_timer(&self) {
        lock(&self.inner.table).stopping = true;
        self.inner.changed.notify_all();
        if let Some(Timer::Running(timer)) = lock(&self.timer).take() {
            let _ = timer.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop_timer();
        if !lock(&self.inner.table).abandoned {
            for (fault_id, result) in self.inner.revert_all(RevertedBy::Shutdown) {
                match result {
                    Ok(reverted) => {
                        info!(fault_id, detail = %reverted.detail, "reverted at shutdown")
                    }
                    Err(err) => {
                        warn!(fault_id, error = %err, "revert at shutdown failed; the journal keeps the fault")
                    }
                }
            }
        }
        lock(&LIVE).remove(&self.inner.owner.instance);
    }
}

impl Inner {
    /// Reverts a journal entry left by another agent. Unless `force`, entries whose agent is
    /// still alive are left alone.
    fn recover(&self, loaded: Loaded, force: bool) -> Option<Recovered> {
        let entry = match loaded {
            Loaded::Corrupt {
                path,
                fault_id,
                reason,
            } => {
                return Some(Recovered {
                    fault_id,
                    run_id: String::new(),
                    fault: "unknown (unreadable journal entry)".to_string(),
                    result: Err(FaultError::JournalCorrupt { path, reason }),
                });
            }
            Loaded::Entry(entry) => *entry,
        };
        if entry.owner == self.owner {
            return None;
        }
        if !force && owner_alive(&entry.owner) {
            info!(
                fault_id = entry.fault_id,
                owner = entry.owner.pid,
                "journal entry held by a live agent; left alone"
            );
            return None;
        }
        let fault_id = entry.fault_id.clone();
        let recovered = |result| Recovered {
            fault_id: entry.fault_id.clone(),
            run_id: entry.run_id.clone(),
            fault: entry.spec.to_string(),
            result,
        };
        match fault::revert(&fault_id, &entry.undo) {
            Ok(undone) => {
                let mut detail = undone.detail;
                if let Err(err) = self.journal.remove(&fault_id) {
                    detail.push_str(&format!("; {err}"));
                }
                let reverted = Reverted {
                    fault_id: fault_id.clone(),
                    reverted_at: Utc::now(),
                    verified: undone.verified,
                    detail,
                    by: RevertedBy::Recovery,
                };
                // Kept on disk: the controller's revert may come after yet another restart.
                let record = recovered::Record {
                    run_id: entry.run_id.clone(),
                    fault: entry.spec.to_string(),
                    reverted: reverted.clone(),
                };
                if let Err(err) = self.recovered.append(&[record]) {
                    warn!(fault_id, error = %err, "failed to remember a recovered fault");
                }
                lock(&self.table)
                    .faults
                    .insert(fault_id, Slot::Reverted(already_reverted(&reverted)));
                Some(recovered(Ok(reverted)))
            }
            Err(err) => {
                // Ours now: keep it active so `revert_all` retries it.
                let mut adopted = entry.clone();
                adopted.owner = self.owner;
                if let Err(write_err) = self.journal.write(&adopted) {
                    warn!(fault_id, error = %write_err, "failed to adopt journal entry");
                }
                let held = Held {
                    fault: active_fault(&adopted),
                    undo: adopted.undo.clone(),
                    next_try: None,
                    failures: 1,
                };
                lock(&self.table)
                    .faults
                    .insert(fault_id, Slot::Active(Box::new(held)));
                Some(recovered(Err(err)))
            }
        }
    }

    /// Checks a request and reserves its id with `Slot::Injecting`.
    fn reserve(&self, req: &InjectRequest) -> Result<(), FaultError> {
        validate_fault_id(&req.fault_id)?;
        check_hold(&req.fault_id, req.hold)?;
        let mut table = lock(&self.table);
        if table.faults.contains_key(&req.fault_id) {
            return Err(FaultError::DuplicateFault {
                fault_id: req.fault_id.clone(),
            });
        }
        table.faults.insert(req.fault_id.clone(), Slot::Injecting);
        Ok(())
    }

    /// Plans a reserved fault: its journal entry, not written yet.
    fn plan(&self, req: InjectRequest) -> Result<Planned, FaultError> {
        let InjectRequest {
            run_id,
            fault_id,
            spec,
            seed,
            hold,
            exempt,
            resolved,
        } = req;
        let planned = match resolved {
            Some(at) => fault::plan_at(&fault_id, &spec, seed, &at),
            None => fault::plan(&fault_id, &spec, seed),
        };
        let undo = match planned {
            Ok(undo) => undo,
            Err(err) => return Err(self.forget(&fault_id, err)),
        };
        // A fault with nothing to undo (a signal sent) leaves recovery nothing to do: it is not
        // journaled, and costs no synced write.
        let journaled = undo.needs_journal();
        Ok(Planned {
            entry: Entry {
                run_id,
                fault_id,
                spec,
                undo,
                state: EntryState::Planned,
                created_at: Utc::now(),
                applied_at: None,
                end_at: None,
                owner: self.owner,
            },
            journaled,
            hold,
            exempt,
        })
    }

    /// Injects a planned fault whose entry (if it needs one) the journal holds, synced.
    fn inject_planned(&self, planned: Planned) -> Result<Applied, FaultError> {
        let Planned {
            mut entry,
            journaled,
            hold,
            exempt,
        } = planned;
        let fault_id = entry.fault_id.clone();
        let ctx = fault::Context { hold, exempt };
        let injected = match fault::inject_with(&fault_id, &entry.spec, &entry.undo, &ctx) {
            Ok(injected) => injected,
            Err(err) => {
                // Undo whatever half of it happened; the journal entry stays until that worked.
                match fault::revert(&fault_id, &entry.undo) {
                    Ok(_) => {
                        if let Err(journal_err) = self.journal.remove(&fault_id) {
                            warn!(fault_id, error = %journal_err, "failed to remove journal entry");
                        }
                        return Err(self.forget(&fault_id, err));
                    }
                    Err(cleanup) => {
                        warn!(fault_id, error = %cleanup, "failed to undo a failed injection; kept active");
                        entry.applied_at = Some(entry.created_at);
                        self.set(
                            &fault_id,
                            Slot::Active(Box::new(Held {
                                fault: active_fault(&entry),
                                undo: entry.undo.clone(),
                                next_try: None,
                                failures: 1,
                            })),
                        );
                        return Err(err);
                    }
                }
            }
        };

        #[cfg(test)]
        tests::panic_here(&fault_id);

        let applied_at = Utc::now();
        let end_at = hold.map(|d| end_time(applied_at, d));
        if let Some(undo) = injected.undo {
            entry.undo = undo;
        }
        entry.state = EntryState::Applied;
        entry.applied_at = Some(applied_at);
        entry.end_at = end_at;
        if journaled && let Err(err) = self.journal.update(&entry) {
            // The planned entry, synced before the injection, already holds the undo data (for
            // `stress`, the cgroup; its workers die with this process): recovery works without
            // this update, so it does not wait for the disk.
            warn!(fault_id, error = %err, "failed to mark journal entry applied");
        }
        self.set(
            &fault_id,
            Slot::Active(Box::new(Held {
                fault: active_fault(&entry),
                undo: entry.undo,
                next_try: end_at,
                failures: 0,
            })),
        );
        Ok(Applied {
            fault_id,
            applied_at,
            mechanism: injected.mechanism,
            affected: injected.affected,
            verified: injected.verified,
            detail: injected.detail,
        })
    }

    /// After a panic while injecting `fault_id`: reverts what the journal holds of it (the
    /// injection may have begun), and frees its slot, or keeps it active when that revert fails so
    /// `revert_all` retries it. Returns the error that stands for the panic.
    fn undo_panicked(&self, fault_id: &str, message: String) -> FaultError {
        warn!(fault_id, panic = %message, "injection panicked; reverting what the journal holds");
        let panicked = |outcome: String| FaultError::Panicked {
            fault_id: fault_id.to_string(),
            action: "injecting",
            message: message.clone(),
            outcome,
        };
        let entry = match self.journal.read(fault_id) {
            Ok(Some(entry)) if entry.owner == self.owner => entry,
            Ok(_) => {
                return self.forget(
                    fault_id,
                    panicked("it was not journaled, so nothing was applied".to_string()),
                );
            }
            Err(err) => {
                return self.forget(
                    fault_id,
                    panicked(format!(
                        "its journal entry cannot be read ({err}); run `chaosctl revert --all`"
                    )),
                );
            }
        };
        match guarded(fault_id, "reverting", || {
            fault::revert(fault_id, &entry.undo)
        }) {
            Ok(undone) => {
                if let Err(err) = self.journal.remove(fault_id) {
                    warn!(fault_id, error = %err, "failed to remove journal entry");
                }
                self.forget(
                    fault_id,
                    panicked(format!(
                        "what it had applied was reverted ({})",
                        undone.detail
                    )),
                )
            }
            Err(err) => {
                let mut entry = entry;
                entry.applied_at.get_or_insert(entry.created_at);
                self.set(
                    fault_id,
                    Slot::Active(Box::new(Held {
                        fault: active_fault(&entry),
                        undo: entry.undo,
                        next_try: None,
                        failures: 1,
                    })),
                );
                panicked(format!(
                    "the revert of what it had applied failed ({err}); it stays active here: run `chaosctl revert --all`"
                ))
            }
        }
    }

    fn revert(&self, fault_id: &str, by: RevertedBy) -> Result<Reverted, FaultError> {
        let mut table = lock(&self.table);
        let mut held = loop {
            match table.faults.get(fault_id) {
                None => {
                    // Reverted by a start of this agent from a dead one's journal: done, not
                    // unknown, so the controller does not report it as possibly in place.
                    return match self.recovered.find(fault_id) {
                        Some(record) => Ok(already_reverted(&record.reverted)),
                        None => Err(FaultError::UnknownFault {
                            fault_id: fault_id.to_string(),
                        }),
                    };
                }
                Some(Slot::Reverted(reverted)) => return Ok(reverted.clone()),
                Some(Slot::Injecting | Slot::Reverting(_)) => {
                    table = self
                        .changed
                        .wait(table)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Some(Slot::Active(held)) => {
                    let reverting = Slot::Reverting(Box::new(held.fault.clone()));
                    match table.faults.insert(fault_id.to_string(), reverting) {
                        Some(Slot::Active(held)) => break held,
                        _ => unreachable!("the slot was just seen active under the lock"),
                    }
                }
            }
        };
        drop(table);

        // A panic here must not leave the slot `Reverting`: every later revert would wait forever.
        let result = guarded(fault_id, "reverting", || {
            fault::revert(fault_id, &held.undo)
        })
        .map(|undone| {
            let mut detail = undone.detail;
            if let Err(err) = self.journal.remove(fault_id) {
                detail.push_str(&format!(
                    "; {err} (a later start reverts it again, harmlessly)"
                ));
            }
            Reverted {
                fault_id: fault_id.to_string(),
                reverted_at: Utc::now(),
                verified: undone.verified,
                detail,
                by,
            }
        });
        match &result {
            Ok(reverted) => self.set(fault_id, Slot::Reverted(reverted.clone())),
            Err(err) => {
                warn!(fault_id, error = %err, "revert failed; the fault stays active");
                held.failures += 1;
                held.next_try = held.fault.end_at.map(|end| {
                    let backoff = Duration::from_secs(1 << held.failures.min(6));
                    end.max(end_time(Utc::now(), backoff))
                });
                self.set(fault_id, Slot::Active(held));
            }
        }
        result
    }

    fn revert_all(&self, by: RevertedBy) -> Vec<(String, Result<Reverted, FaultError>)> {
        let mut ids: Vec<String> = lock(&self.table)
            .faults
            .iter()
            .filter(|(_, slot)| !matches!(slot, Slot::Reverted(_)))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids.into_iter()
            .map(|id| {
                let result = self.revert(&id, by);
                (id, result)
            })
            .filter(|(_, result)| !matches!(result, Err(FaultError::UnknownFault { .. })))
            .collect()
    }

    /// The end-time thread: reverts each fault when its `next_try` comes, until stopped.
    fn run_timer(&self) {
        let mut table = lock(&self.table);
        loop {
            if table.stopping {
                return;
            }
            let next = table
                .faults
                .iter()
                .filter_map(|(id, slot)| match slot {
                    Slot::Active(held) => held.next_try.map(|at| (at, id.clone())),
                    _ => None,
                })
                .min();
            let now = Utc::now();
            table = match next {
                None => self
                    .changed
                    .wait(table)
                    .unwrap_or_else(PoisonError::into_inner),
                Some((at, fault_id)) if at <= now => {
                    drop(table);
                    match self.revert(&fault_id, RevertedBy::EndTime) {
                        Ok(reverted) => info!(fault_id, by = ?reverted.by, "fault ended"),
                        Err(err) => {
                            warn!(fault_id, error = %err, "revert at end time failed; retrying")
                        }
                    }
                    lock(&self.table)
                }
                Some((at, _)) => {
                    let wait = (at - now).to_std().unwrap_or(Duration::ZERO);
                    self.changed
                        .wait_timeout(table, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    fn set(&self, fault_id: &str, slot: Slot) {
        lock(&self.table).faults.insert(fault_id.to_string(), slot);
        self.changed.notify_all();
    }

    /// Drops a fault that never reached the host, and passes its error on.
    fn forget(&self, fault_id: &str, err: FaultError) -> FaultError {
        lock(&self.table).faults.remove(fault_id);
        self.changed.notify_all();
        err
    }
}

fn active_fault(entry: &Entry) -> ActiveFault {
    ActiveFault {
        fault_id: entry.fault_id.clone(),
        run_id: entry.run_id.clone(),
        spec: entry.spec.clone(),
        applied_at: entry.applied_at.unwrap_or(entry.created_at),
        end_at: entry.end_at,
    }
}

/// Whether the agent that wrote a journal entry still holds it.
fn owner_alive(owner: &Owner) -> bool {
    let pid = std::process::id() as i32;
    let ours =
        owner.pid == pid && process::read(pid).is_some_and(|me| me.start_time == owner.start_time);
    if ours {
        lock(&LIVE).contains(&owner.instance)
    } else {
        process::is_same_process(owner.pid, owner.start_time)
    }
}

/// The answer to a revert of a fault that a start reverted: the same outcome, saying so.
fn already_reverted(reverted: &Reverted) -> Reverted {
    Reverted {
        detail: format!(
            "already reverted when the agent restarted, at {}: {}",
            reverted
                .reverted_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            reverted.detail
        ),
        ..reverted.clone()
    }
}

/// The error each fault of a batch gets when the batch as a whole failed (its journal write, or
/// the end-time thread it needs): nothing of it was injected.
fn batch_error(err: &FaultError) -> FaultError {
    match err {
        FaultError::Journal {
            path,
            action,
            source,
        } => FaultError::Journal {
            path: path.clone(),
            action,
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        other => FaultError::Journal {
            path: std::path::PathBuf::new(),
            action: "write the entry",
            source: std::io::Error::other(other.to_string()),
        },
    }
}

/// A hold over [`MAX_HOLD`] is refused: its end time could overflow, and it is a typo anyway.
fn check_hold(fault_id: &str, hold: Option<Duration>) -> Result<(), FaultError> {
    match hold {
        Some(hold) if hold > MAX_HOLD => Err(FaultError::HoldTooLong {
            fault_id: fault_id.to_string(),
            hold_ms: hold.as_millis(),
            limit_ms: MAX_HOLD.as_millis(),
        }),
        _ => Ok(()),
    }
}

/// `at + hold`, never panicking: past the calendar's end (unreachable under [`MAX_HOLD`]) it is
/// the last representable time, so the fault is still reverted by a request, a lease or a stop.
fn end_time(at: DateTime<Utc>, hold: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(hold)
        .ok()
        .and_then(|delta| at.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Runs executor code so that a panic in it becomes [`FaultError::Panicked`] for `fault_id`.
fn guarded<T>(
    fault_id: &str,
    action: &'static str,
    work: impl FnOnce() -> Result<T, FaultError>,
) -> Result<T, FaultError> {
    panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        Err(FaultError::Panicked {
            fault_id: fault_id.to_string(),
            action,
            message: panic_message(&*panic),
            outcome: "it stays active here and is retried; run `chaosctl revert --all`".to_string(),
        })
    })
}

/// The text a panic was raised with.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Fault ids name files (journal entries, fill files): keep them plain.
fn validate_fault_id(fault_id: &str) -> Result<(), FaultError> {
    let plain = !fault_id.is_empty()
        && fault_id.len() <= 128
        && !fault_id.starts_with('.')
        && fault_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain {
        Ok(())
    } else {
        Err(FaultError::InvalidFaultId {
            fault_id: fault_id.to_string(),
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{PauseSpec, Pick, ProcessSelector};

    /// Fault ids whose injection panics once the fault is in place: the seam for panic tests.
    static PANIC_AFTER_INJECT: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

    pub(super) fn panic_here(fault_id: &str) {
        if lock(&PANIC_AFTER_INJECT).contains(fault_id) {
            panic!("test: a panic after injecting `{fault_id}`");
        }
    }

    fn state_of(pid: i32) -> Option<char> {
        process::read(pid).map(|p| p.state)
    }

    #[test]
    fn a_panic_after_injecting_reverts_what_the_journal_holds() {
        let state = tempfile::tempdir().unwrap();
        let mut sleep = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = sleep.id() as i32;
        while process::read(pid).is_none_or(|p| p.comm != "sleep") {
            thread::sleep(Duration::from_millis(5));
        }
        lock(&PANIC_AFTER_INJECT).insert("boom".to_string());
        // On its own thread: before the fix, the revert and the drop below waited forever.
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = state.path().to_path_buf();
        thread::spawn(move || {
            let (agent, _) = LocalAgent::open(&dir).unwrap();
            let err = agent
                .inject(InjectRequest {
                    run_id: "run-1".to_string(),
                    fault_id: "boom".to_string(),
                    spec: FaultSpec::Pause(PauseSpec {
                        process: ProcessSelector::Pid(pid),
                        pick: Pick::All,
                    }),
                    seed: 1,
                    hold: Some(Duration::from_secs(60)),
                    exempt: Vec::new(),
                    resolved: None,
                })
                .unwrap_err();
            let after_inject = state_of(pid);
            let journal = std::fs::read_dir(agent.journal_dir()).unwrap().count();
            let revert = agent.revert("boom").map(|_| ());
            let all = agent.revert_all().len();
            drop(agent);
            let _ = tx.send((err, after_inject, journal, revert, all));
        });
        let outcome = rx.recv_timeout(Duration::from_secs(10));
        let _ = sleep.kill();
        let _ = sleep.wait();
        let (err, after_inject, journal, revert, all) =
            outcome.expect("inject, revert, revert_all and drop answer after a panic");
        assert_eq!(err.code(), "panicked");
        assert!(
            err.to_string().starts_with(
                "the agent failed unexpectedly (test: a panic after injecting `boom`) while injecting fault `boom`; what it had applied was reverted (sent SIGCONT to"
            ),
            "{err}"
        );
        assert_ne!(after_inject, Some('T'), "the pause was reverted");
        assert_eq!(journal, 0);
        assert!(matches!(revert, Err(FaultError::UnknownFault { .. })));
        assert_eq!(all, 0);
    }

    #[test]
    fn fault_ids_must_be_plain() {
        assert!(validate_fault_id("step-1.fault_0").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_fault_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn agent_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<LocalAgent>();
    }
}
