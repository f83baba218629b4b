//! `inside:`: a network fault made inside the network namespaces of some processes (a
//! container's, a Kubernetes pod's) instead of the host's, once per distinct namespace.
//!
//! The kind's own executor does the work, unchanged, on a thread of its own that entered the
//! namespace (`setns(2)` on `/proc/PID/ns/net`): every tool it runs (nft, tc, iptables) is a child
//! of that thread and so acts on that namespace, and the threads it starts (the NFQUEUE holder,
//! the gate's renewer) inherit it. Such a thread does this one job and ends: no thread that
//! entered a namespace ever serves other work.
//!
//! Each namespace's injection has an id of its own (`<fault>-ns<inode>`), so its tables, chains
//! and queues are named apart from another namespace's. The [`Undo`] records, for each
//! namespace, its inode, the process it was found through and the kind's own undo data: a
//! restarted agent finds the namespace again through that process, or through any other process
//! still in it; a namespace no process is in any more has gone, and took the fault's rules with
//! it, which the revert says.
//!
//! **Invariant:** a process in the agent's own network namespace is never a way in: the fault
//! would be made on the host, which `inside:` promises not to do. Such a match is refused.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::thread;

use nix::sched::{CloneFlags, setns};
use serde::{Deserialize, Serialize};

use super::{Context, Injected, Resolved, Target, Undo, Undone, kind_of, matching};
use crate::error::FaultError;
use crate::process;
use crate::spec::{FaultSpec, ProcessSelector};

/// One namespace an `inside:` fault is made in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsideEntry {
    /// The network namespace's inode, as `/proc/PID/ns/net` links to `net:[INODE]`.
    pub netns: u64,
    /// The process it was found through.
    pub via: Target,
    /// The id the kind's executor used in it (`<fault>-ns<inode>`).
    pub fault_id: String,
    /// The kind's own undo data, to be carried out inside the namespace.
    pub undo: Box<Undo>,
}

impl InsideEntry {
    /// `netns 4026532174 (via pid 812 (nginx) in container 3f2a9c0d1e4b (checkout))`.
    pub fn label(&self) -> String {
        format!("netns {} (via {})", self.netns, self.via.label())
    }
}

thread_local! {
    /// On a thread that entered a namespace: the root of the files of the process it went
    /// through (`/proc/PID/root`), so a kind that reads configuration (`dns`: resolv.conf)
    /// reads the container's.
    static FILES_ROOT: std::cell::RefCell<Option<std::path::PathBuf>> =
        const { std::cell::RefCell::new(None) };
}

/// Where the calling thread reads configuration files from: `/`, or on a thread that entered a
/// namespace, the root of the process it went through.
pub fn files_root() -> std::path::PathBuf {
    FILES_ROOT
        .with(|root| root.borrow().clone())
        .unwrap_or_else(|| "/".into())
}

/// The network namespace of `pid`, by inode.
pub fn netns_of(pid: i32) -> Option<u64> {
    fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| m.ino())
}

/// This process's own network namespace.
fn own_netns() -> Option<u64> {
    fs::metadata("/proc/self/ns/net").ok().map(|m| m.ino())
}

/// The namespaces `selector`'s processes are in, each with the first process found in it, in
/// inode order. A process in the agent's own namespace is refused.
fn namespaces(selector: &ProcessSelector) -> Result<BTreeMap<u64, Target>, FaultError> {
    let own = own_netns();
    let mut found = BTreeMap::new();
    for p in process::with_containers(matching(selector)?) {
        let Some(netns) = netns_of(p.pid) else {
            continue; // exited while being looked at
        };
        if Some(netns) == own {
            return Err(FaultError::Inside {
                reason: format!(
                    "{} matches `inside:` {selector} but is in this agent's own network namespace (the host's); fault the host without `inside:`, or narrow the selector to the container",
                    p.label()
                ),
            });
        }
        found.entry(netns).or_insert_with(|| Target::from_info(&p));
    }
    if found.is_empty() {
        return Err(FaultError::NoProcessMatches {
            selector: selector.to_string(),
        });
    }
    Ok(found)
}

/// The host's path of directory `path` as `selector`'s processes see it (`fill_disk` with
/// `inside:`): through their mount namespaces, which must all lead to one directory and not be
/// the agent's own.
pub fn host_path(
    selector: &ProcessSelector,
    path: &std::path::Path,
) -> Result<std::path::PathBuf, FaultError> {
    let own = fs::metadata("/proc/self/ns/mnt").ok().map(|m| m.ino());
    let mut found: BTreeMap<std::path::PathBuf, String> = BTreeMap::new();
    for p in process::with_containers(matching(selector)?) {
        let mnt = fs::metadata(format!("/proc/{}/ns/mnt", p.pid))
            .ok()
            .map(|m| m.ino());
        if mnt.is_some() && mnt == own {
            return Err(FaultError::Inside {
                reason: format!(
                    "{} matches `inside:` {selector} but sees the host's own files (its mount namespace is the agent's); fill the host's path without `inside:`, or narrow the selector to the container",
                    p.label()
                ),
            });
        }
        let host = crate::mounts::host_path(p.pid, path).map_err(|reason| FaultError::Inside {
            reason: format!("for {}: {reason}", p.label()),
        })?;
        found.entry(host).or_insert_with(|| p.label());
    }
    let mut paths = found.into_iter();
    match (paths.next(), paths.next()) {
        (Some((host, _)), None) => Ok(host),
        (Some(first), Some(second)) => Err(FaultError::Inside {
            reason: format!(
                "`{}` is a different directory for different processes of {selector} (`{}` for {}, `{}` for {}); narrow the selector to one container",
                path.display(),
                first.0.display(),
                first.1,
                second.0.display(),
                second.1
            ),
        }),
        (None, _) => Err(FaultError::NoProcessMatches {
            selector: selector.to_string(),
        }),
    }
}

/// Preflight: the selector finds namespaces other than the host's, and the kind's own check
/// passes inside each of them.
pub fn check(spec: &FaultSpec, selector: &ProcessSelector) -> Result<(), FaultError> {
    // The kinds that go into a namespace have nothing to resolve ([`super::Kind::resolve`]).
    for (netns, via) in namespaces(selector)? {
        within(netns, &via, || kind_of(spec).check(&Resolved::default()))??;
    }
    Ok(())
}

/// Plans the kind inside each namespace (its interface is the namespace's own).
pub fn plan(
    fault_id: &str,
    spec: &FaultSpec,
    selector: &ProcessSelector,
    seed: u64,
) -> Result<Undo, FaultError> {
    let mut entries = Vec::new();
    for (netns, via) in namespaces(selector)? {
        let id = format!("{fault_id}-ns{netns}");
        let undo = within(netns, &via, || {
            kind_of(spec).plan(&id, seed, &Resolved::default())
        })??;
        entries.push(InsideEntry {
            netns,
            via,
            fault_id: id,
            undo: Box::new(undo),
        });
    }
    Ok(Undo::Inside { entries })
}

/// Injects inside each planned namespace; the first failure stops it (the caller reverts all,
/// which is safe for the namespaces not reached).
pub fn inject(
    spec: &FaultSpec,
    entries: &[InsideEntry],
    ctx: &Context,
) -> Result<Injected, FaultError> {
    let mut mechanism = String::new();
    let mut affected = Vec::new();
    let mut details = Vec::new();
    let mut verified = true;
    for entry in entries {
        let injected = within(entry.netns, &entry.via, || {
            kind_of(spec).inject(&entry.fault_id, &entry.undo, ctx)
        })??;
        if mechanism.is_empty() {
            mechanism = injected.mechanism.clone();
        }
        let label = entry.label();
        affected.extend(injected.affected.iter().map(|a| format!("{label}: {a}")));
        details.push(format!("{label}: {}", injected.detail));
        verified &= injected.verified;
    }
    Ok(Injected {
        mechanism,
        affected,
        verified,
        detail: details.join("; "),
        undo: None,
    })
}

/// Reverts inside each namespace that still exists; a namespace that has gone took the fault
/// with it. Every namespace is tried even when one fails.
pub fn revert(entries: &[InsideEntry]) -> Result<Undone, FaultError> {
    let mut details = Vec::new();
    let mut problems = Vec::new();
    let mut verified = true;
    for entry in entries {
        let label = entry.label();
        match enter(entry.netns, &entry.via) {
            None => {
                // Our own threads may still hold a socket in it (the NFQUEUE holder), which keeps
                // the dead namespace in memory: stop them.
                super::stop_workers(&entry.undo);
                details.push(format!(
                    "{label}: the namespace is gone (no process is left in it), and the fault's rules went with it"
                ));
            }
            Some(entered) => {
                let undone = on_thread(entered, || super::revert(&entry.fault_id, &entry.undo));
                match undone {
                    Ok(Ok(undone)) => {
                        verified &= undone.verified;
                        details.push(format!("{label}: {}", undone.detail));
                    }
                    Ok(Err(err)) => problems.push(format!("{label}: {err}")),
                    Err(err) => problems.push(format!("{label}: {err}")),
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(FaultError::Inside {
            reason: format!(
                "the revert failed in {} of {} namespaces: {}",
                problems.len(),
                entries.len(),
                problems.join("; ")
            ),
        });
    }
    Ok(Undone {
        verified,
        detail: details.join("; "),
    })
}

/// Runs `f` on a thread inside namespace `netns`, entered through `via` (or another process in
/// it); an error when the namespace has gone.
fn within<T: Send>(
    netns: u64,
    via: &Target,
    f: impl FnOnce() -> T + Send,
) -> Result<T, FaultError> {
    let Some(entered) = enter(netns, via) else {
        return Err(FaultError::Inside {
            reason: format!(
                "network namespace {netns} (found through {}) is gone: no process is left in it",
                via.label()
            ),
        });
    };
    on_thread(entered, f)
}

/// `/proc/PID/ns/net` of a process still in namespace `netns`: `via` if it is still the same
/// process there, else the first process found in it.
fn enter(netns: u64, via: &Target) -> Option<(File, i32)> {
    let open = |pid: i32| {
        let file = File::open(format!("/proc/{pid}/ns/net")).ok()?;
        // Checked on the open file, so a process that moved or exited meanwhile does not count.
        (file.metadata().ok()?.ino() == netns).then_some((file, pid))
    };
    if crate::process::is_same_process(via.pid, via.start_time)
        && let Some(file) = open(via.pid)
    {
        return Some(file);
    }
    let entries = fs::read_dir("/proc").ok()?;
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find_map(open)
}

/// Runs `f` on a new thread that first enters the network namespace of `entered` (its
/// `/proc/PID/ns/net`, opened, and the pid) and reads files from that process's root; the thread
/// ends with `f`.
fn on_thread<T: Send>(
    (file, pid): (File, i32),
    f: impl FnOnce() -> T + Send,
) -> Result<T, FaultError> {
    thread::scope(|scope| {
        thread::Builder::new()
            .name("chaos-inside".into())
            .spawn_scoped(scope, move || {
                FILES_ROOT
                    .with(|root| *root.borrow_mut() = Some(format!("/proc/{pid}/root").into()));
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| FaultError::Inside {
                    reason: format!(
                        "cannot enter the network namespace: {errno}{}",
                        if errno == nix::errno::Errno::EPERM {
                            "; the agent needs CAP_SYS_ADMIN for `inside:`"
                        } else {
                            ""
                        }
                    ),
                })?;
                Ok(f())
            })
            .map_err(|err| FaultError::Inside {
                reason: format!("cannot start a thread to enter the namespace: {err}"),
            })?
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
