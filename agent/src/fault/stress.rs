//! `stress`: CPU burnt, or memory held resident, by children of the agent.
//!
//! Each worker is a child process forked by one thread of this process, the spawner, which lives
//! as long as the process: `PR_SET_PDEATHSIG` fires when the *thread* that forked dies, so a
//! thread that may retire (tokio's blocking pool, a request's thread) must never fork them. The
//! children, of a fault:
//! - sit in a cgroup of their own, `chaos-stress-<fault id>` under this process's cgroup in the
//!   cgroup2 hierarchy, where the host has one (pure v2 at `/sys/fs/cgroup`, or the hybrid's
//!   `/sys/fs/cgroup/unified`); no controller is enabled, so this needs nothing but a writable
//!   hierarchy (the systemd unit has `Delegate=yes`). Without one they run ungrouped;
//! - have `oom_score_adj` 1000, so the kernel's OOM killer takes them first;
//! - die with the agent (SIGKILL by `PR_SET_PDEATHSIG`) and exit by themselves at the fault's end
//!   time, which each one reads from its own monotonic clock (an hour without a hold, like the
//!   network faults' kernel-side expiry);
//! - CPU: busy `load` percent of every 10 ms period, asleep the rest; memory: one anonymous
//!   mapping of the size asked, every page written, then asleep.
//!
//! Why fork and not exec: chaosctl's built-in `local` agent is chaosctl itself (or a test binary),
//! so there is no helper binary to exec that we could count on. A fork of a multithreaded process
//! may only run async-signal-safe code in the child: the child below calls raw system calls
//! through `libc` only (no allocation, no lock, no Rust runtime), on values prepared before the
//! fork, and ends with `_exit`.
//!
//! The revert kills the whole cgroup (`cgroup.kill`, else each of its processes) and every
//! journaled child that is still the same process (pid and start time), waits until they are gone
//! and removes the cgroup. The injection reads back the children's CPU time (`/proc/PID/stat`)
//! over half a second, or their resident size (`VmRSS`), and reports it.

use std::ffi::CString;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use tokio::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::{SysconfVar, sysconf};

use super::fill_disk::human;
use super::{
    Context, Injected, Kind, Resolved, Target, Undo, Undone, other_kinds_undo, poll, signals,
    stress_inside,
};
use crate::cgroups;
use crate::error::FaultError;
use crate::process;
use crate::server::policy::{Policy, Refusal};
use crate::spec::{CpuStress, FaultKind, MemoryStress, StressSpec, StressWork, Workers};

/// The share of MemTotal a memory fault leaves available, unless the policy asks for more.
pub const DEFAULT_MEMORY_MARGIN: f64 = 10.0;

/// The most CPU workers per online CPU: beyond that a fault adds processes, not load.
const MAX_WORKERS_PER_CPU: u32 = 4;

/// How long a worker's period is: busy `load` percent of it, asleep the rest.
const PERIOD: Duration = Duration::from_millis(10);

/// How long the children live without a hold (their caller reverts them before).
const WITHOUT_HOLD: Duration = Duration::from_secs(3600);

/// How long the injection measures the CPU workers' time.
const CPU_SAMPLE: Duration = Duration::from_millis(500);

impl Kind for StressSpec {
    fn support() -> Result<&'static str, &'static str> {
        Ok(match cgroup_root() {
            Some(_) => "child processes in a cgroup",
            None => "child processes",
        })
    }

    fn resolve(&self) -> Result<Resolved, FaultError> {
        match &self.inside {
            Some(selector) => Ok(Resolved {
                stress_cgroups: stress_inside::find(selector)?,
                ..Resolved::default()
            }),
            None => Ok(Resolved::default()),
        }
    }

    fn check(&self, at: &Resolved) -> Result<(), FaultError> {
        if self.inside.is_some() {
            return stress_inside::check(&self.work, &at.stress_cgroups);
        }
        match &self.work {
            StressWork::Cpu(cpu) => resolve_workers(cpu).map(drop),
            StressWork::Memory(memory) => memory_bytes(*memory, DEFAULT_MEMORY_MARGIN).map(drop),
        }
    }

    fn plan(&self, fault_id: &str, _seed: u64, at: &Resolved) -> Result<Undo, FaultError> {
        self.check(at)?;
        if self.inside.is_some() {
            return Ok(stress_inside::plan(fault_id, &at.stress_cgroups));
        }
        Ok(Undo::Stress {
            cgroup: cgroup_root().map(|root| root.join(cgroup_name(fault_id))),
            children: Vec::new(),
        })
    }

    fn inject(&self, _fault_id: &str, undo: &Undo, ctx: &Context) -> Result<Injected, FaultError> {
        let hold = ctx.hold.unwrap_or(WITHOUT_HOLD);
        match undo {
            Undo::Stress { cgroup, .. } => inject(&self.work, cgroup.as_deref(), hold),
            Undo::StressInside { entries } => stress_inside::inject(&self.work, entries, hold),
            _ => Err(other_kinds_undo(FaultKind::Stress)),
        }
    }

    fn check_policy(&self, policy: &Policy, at: &Resolved) -> Result<(), Refusal> {
        let margin = policy
            .stress_memory_margin()
            .unwrap_or(DEFAULT_MEMORY_MARGIN)
            .max(DEFAULT_MEMORY_MARGIN);
        let refusal = |err: FaultError| Refusal(err.to_string());
        if self.inside.is_some() {
            // Each cgroup gets its own workers: the policy's limits are on the sum.
            let (workers, bytes) =
                stress_inside::totals(&self.work, &at.stress_cgroups, margin).map_err(refusal)?;
            return match &self.work {
                StressWork::Cpu(_) => policy.check_stress_workers(workers),
                StressWork::Memory(_) => policy.check_stress_memory(bytes),
            };
        }
        match &self.work {
            StressWork::Cpu(cpu) => {
                policy.check_stress_workers(resolve_workers(cpu).map_err(refusal)?)
            }
            StressWork::Memory(memory) => {
                policy.check_stress_memory(memory_bytes(*memory, margin).map_err(refusal)?)
            }
        }
    }
}

/// The name of a fault's cgroup directory, in every hierarchy it is made in.
pub(super) fn cgroup_name(fault_id: &str) -> String {
    format!("chaos-stress-{fault_id}")
}

impl fmt::Display for StressSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.work, &self.inside) {
            (_, None) => self.work.fmt(f),
            (StressWork::Memory(MemoryStress::Share(p)), Some(selector)) => write!(
                f,
                "stress memory: {p}% of the memory limit (of MemTotal without one) resident, inside the cgroups of {selector}"
            ),
            (work, Some(selector)) => write!(f, "{work}, inside the cgroups of {selector}"),
        }
    }
}

impl fmt::Display for StressWork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StressWork::Cpu(CpuStress { workers, load }) => {
                let workers = match workers {
                    Workers::Count(1) => "1 worker".to_string(),
                    Workers::Count(n) => format!("{n} workers"),
                    Workers::Cores(p) => format!("{p}% of the cores"),
                };
                write!(f, "stress cpu: {workers} at {load}% load")
            }
            StressWork::Memory(MemoryStress::Size(bytes)) => {
                write!(f, "stress memory: {} resident", human(*bytes))
            }
            StressWork::Memory(MemoryStress::Share(p)) => {
                write!(f, "stress memory: {p}% of MemTotal resident")
            }
        }
    }
}

pub(super) fn refuse(reason: impl Into<String>) -> FaultError {
    FaultError::WouldOverload {
        reason: reason.into(),
    }
}

pub(super) fn failed(reason: impl Into<String>) -> FaultError {
    FaultError::Stress {
        reason: reason.into(),
    }
}

/// The CPUs online on this host.
pub fn online_cpus() -> u32 {
    match sysconf(SysconfVar::_NPROCESSORS_ONLN) {
        Ok(Some(n)) if n > 0 => n as u32,
        _ => 1,
    }
}

/// How many workers `cpu` starts here; an error for a load or share out of range.
pub fn resolve_workers(cpu: &CpuStress) -> Result<u32, FaultError> {
    if !(cpu.load > 0.0 && cpu.load <= 100.0) {
        return Err(refuse(format!(
            "a load of {}% is not above 0% and at most 100%",
            cpu.load
        )));
    }
    workers_for(cpu.workers, online_cpus())
}

pub(super) fn workers_for(workers: Workers, online: u32) -> Result<u32, FaultError> {
    match workers {
        Workers::Count(0) => Err(refuse("0 workers burn nothing")),
        Workers::Count(n) if n > online * MAX_WORKERS_PER_CPU => Err(refuse(format!(
            "{n} workers on {online} online CPUs: more than {MAX_WORKERS_PER_CPU} per CPU adds no load, only processes; ask for at most {}",
            online * MAX_WORKERS_PER_CPU
        ))),
        Workers::Count(n) => Ok(n),
        Workers::Cores(p) if !(p > 0.0 && p <= 100.0) => Err(refuse(format!(
            "a share of {p}% of the cores is not above 0% and at most 100%"
        ))),
        Workers::Cores(p) => Ok(((online as f64 * p / 100.0).ceil() as u32).clamp(1, online)),
    }
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub available: u64,
}

pub fn meminfo() -> Result<MemInfo, FaultError> {
    let text = fs::read_to_string("/proc/meminfo").map_err(|source| FaultError::Proc { source })?;
    parse_meminfo(&text).ok_or_else(|| failed("`/proc/meminfo` has no MemTotal or MemAvailable"))
}

fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some(MemInfo {
        total: field("MemTotal")?,
        available: field("MemAvailable")?,
    })
}

/// The bytes `memory` holds here; refused when that is more than MemAvailable less `margin`
/// percent of MemTotal.
pub fn memory_bytes(memory: MemoryStress, margin: f64) -> Result<u64, FaultError> {
    memory_bytes_of(memory, margin, meminfo()?)
}

/// The bytes `memory` asks for: its size, or its share of `total` (`of` says what that is).
pub(super) fn asked_bytes(memory: MemoryStress, total: u64, of: &str) -> Result<u64, FaultError> {
    match memory {
        MemoryStress::Size(0) => Err(refuse("a size of 0 bytes holds nothing")),
        MemoryStress::Size(bytes) => Ok(bytes),
        MemoryStress::Share(p) if !(p > 0.0 && p <= 100.0) => Err(refuse(format!(
            "a share of {p}% of {of} is not above 0% and at most 100%"
        ))),
        MemoryStress::Share(p) => Ok((total as f64 * p / 100.0) as u64),
    }
}

pub(super) fn memory_bytes_of(
    memory: MemoryStress,
    margin: f64,
    mem: MemInfo,
) -> Result<u64, FaultError> {
    let bytes = asked_bytes(memory, mem.total, "MemTotal")?;
    let keep = (mem.total as f64 * margin / 100.0) as u64;
    let allowed = mem.available.saturating_sub(keep);
    if bytes > allowed {
        return Err(refuse(format!(
            "{} asked, but this host has {} available (MemAvailable) of {} (MemTotal) and keeps {margin}% of MemTotal ({}) free: at most {} can be held; ask for less",
            human(bytes),
            human(mem.available),
            human(mem.total),
            human(keep),
            human(allowed)
        )));
    }
    Ok(bytes)
}

// ---- cgroups ----

/// Where this process's children get their cgroups: its own cgroup in the cgroup2 hierarchy,
/// when there is one and it is writable. Read as the host has it ([`cgroups::host_view`]), so an
/// agent in a private cgroup namespace (a Kubernetes pod's) finds its directory in the host's
/// hierarchy that it mounts.
fn cgroup_root() -> Option<PathBuf> {
    let own = cgroups::host_view(|| cgroups::dirs_of(std::process::id() as i32)).ok()?;
    let dir = own.into_iter().find(|d| d.hierarchy == "cgroup2")?.path;
    let writable = nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_ok();
    (dir.join("cgroup.procs").exists() && writable).then_some(dir)
}

// ---- the injection ----

/// What `work` needs on this host: its kind of work and how many workers.
fn host_work(work: &StressWork) -> Result<(Work, u32), FaultError> {
    Ok(match work {
        StressWork::Cpu(cpu) => (cpu_work(cpu), resolve_workers(cpu)?),
        StressWork::Memory(memory) => (
            Work::Memory {
                bytes: memory_bytes(*memory, DEFAULT_MEMORY_MARGIN)?,
            },
            1,
        ),
    })
}

pub(super) fn cpu_work(cpu: &CpuStress) -> Work {
    Work::Cpu {
        busy: PERIOD.mul_f64(cpu.load / 100.0),
        load: cpu.load,
    }
}

fn inject(
    work: &StressWork,
    cgroup: Option<&Path>,
    hold: Duration,
) -> Result<Injected, FaultError> {
    let (work, count) = host_work(work)?;
    let mut notes = Vec::new();
    let cgroup = match cgroup {
        Some(dir) => match fs::create_dir(dir) {
            Ok(()) => Some(dir),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Some(dir),
            Err(err) => {
                notes.push(format!(
                    "no cgroup (cannot create `{}`: {err})",
                    dir.display()
                ));
                None
            }
        },
        None => {
            notes.push("no cgroup2 hierarchy writable here: the children run ungrouped".into());
            None
        }
    };
    let dirs: Vec<PathBuf> = cgroup.map(Path::to_path_buf).into_iter().collect();
    let ran = start(work, count, &dirs, hold)?;
    let undo = Undo::Stress {
        cgroup: cgroup.map(Path::to_path_buf),
        children: ran.children.clone(),
    };
    let mut detail = ran.detail;
    if let Some(dir) = cgroup {
        detail.push_str(&format!("; cgroup `{}`", dir.display()));
    }
    detail.push_str(&format!(
        "; oom_score_adj 1000; they exit by themselves after {} s",
        hold.as_secs_f64()
    ));
    for note in notes.iter() {
        detail.push_str(&format!("; {note}"));
    }
    Ok(Injected {
        mechanism: mechanism(cgroup),
        affected: ran.children.iter().map(Target::label).collect(),
        verified: ran.verified,
        detail,
        undo: Some(undo),
    })
}

/// What a batch of workers did, read back.
pub(super) struct Ran {
    pub children: Vec<Target>,
    pub verified: bool,
    /// The measured effect, and what went wrong.
    pub detail: String,
}

/// Starts `count` workers doing `work` for `hold`, each in every cgroup directory of `dirs`
/// (made by the caller), and reads back that they joined them and their effect.
pub(super) fn start(
    work: Work,
    count: u32,
    dirs: &[PathBuf],
    hold: Duration,
) -> Result<Ran, FaultError> {
    let job = Job {
        work,
        count,
        lifetime: hold,
        cgroup_procs: dirs.iter().map(|dir| dir.join("cgroup.procs")).collect(),
    };
    let pids = spawn(job)?;
    let children: Vec<Target> = pids
        .iter()
        .filter_map(|&pid| process::read(pid))
        .map(|info| Target::from_info(&info))
        .collect();
    if children.len() != pids.len() {
        return Ok(Ran {
            detail: format!(
                "started {} children, but only {} were running right after",
                pids.len(),
                children.len()
            ),
            children,
            verified: false,
        });
    }
    let in_cgroups = poll(100, || {
        dirs.iter().all(|dir| {
            let grouped = cgroups::procs(dir);
            pids.iter().all(|pid| grouped.contains(pid))
        })
    });
    let (mut detail, effective) = match work {
        Work::Cpu { load, .. } => measure_cpu(&children, count, load),
        Work::Memory { bytes } => measure_memory(&children, bytes),
    };
    if !in_cgroups {
        detail.push_str("; not every child joined its cgroups");
    }
    let alive = children
        .iter()
        .all(|c| process::is_same_process(c.pid, c.start_time));
    if !alive {
        detail.push_str("; a child exited early");
    }
    Ok(Ran {
        children,
        verified: alive && in_cgroups && effective,
        detail,
    })
}

fn mechanism(cgroup: Option<&Path>) -> String {
    match cgroup {
        Some(_) => "child processes in a cgroup".to_string(),
        None => "child processes".to_string(),
    }
}

/// CPU seconds (user and system) of `pid` so far, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: i32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state is field 3 of the line, utime 14 and stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    };
    Some((utime + stime) as f64 / ticks)
}

/// The resident size of `pid` (`VmRSS`), in bytes.
pub fn resident_bytes(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Reads the workers' CPU time over [`CPU_SAMPLE`]: the cores they used, and whether they burn.
fn measure_cpu(children: &[Target], workers: u32, load: f64) -> (String, bool) {
    let sum = || -> f64 { children.iter().filter_map(|c| cpu_seconds(c.pid)).sum() };
    let before = sum();
    let start = Instant::now();
    thread::sleep(CPU_SAMPLE);
    let used = sum() - before;
    let elapsed = start.elapsed().as_secs_f64();
    let cores = used / elapsed;
    let asked = workers as f64 * load / 100.0;
    (
        format!(
            "{workers} CPU worker{} at {load}% load: measured {cores:.2} cores busy over {elapsed:.1} s ({:.0}% of the {asked:.2} asked; {} online)",
            if workers == 1 { "" } else { "s" },
            cores / asked * 100.0,
            online_cpus()
        ),
        used > 0.0,
    )
}

/// Waits until the memory child holds `bytes` resident (or a few seconds per GiB have passed).
fn measure_memory(children: &[Target], bytes: u64) -> (String, bool) {
    let resident = || -> u64 { children.iter().filter_map(|c| resident_bytes(c.pid)).sum() };
    let enough = bytes / 100 * 95;
    let tries = 300 + (bytes >> 30) as u32 * 300;
    poll(tries, || {
        resident() >= enough
            || !children
                .iter()
                .all(|c| process::is_same_process(c.pid, c.start_time))
    });
    let held = resident();
    (
        format!(
            "measured {} resident of {} asked ({:.0}%)",
            human(held),
            human(bytes),
            held as f64 * 100.0 / bytes as f64
        ),
        held >= enough,
    )
}

// ---- the revert ----

pub(super) fn revert(cgroup: Option<&Path>, children: &[Target]) -> Result<Undone, FaultError> {
    let dirs: Vec<PathBuf> = cgroup.map(Path::to_path_buf).into_iter().collect();
    Ok(revert_in(&dirs, children))
}

/// Kills the workers (every process in `dirs`, and each of `children` that is still the same
/// process), waits until they are gone and removes `dirs`.
pub(super) fn revert_in(dirs: &[PathBuf], children: &[Target]) -> Undone {
    let dirs: Vec<&PathBuf> = dirs.iter().filter(|dir| dir.exists()).collect();
    let running = children
        .iter()
        .filter(|c| process::is_same_process(c.pid, c.start_time))
        .count();
    for dir in &dirs {
        let kill = dir.join("cgroup.kill");
        if !(kill.exists() && fs::write(&kill, "1").is_ok()) {
            for pid in cgroups::procs(dir) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
    for child in children {
        // A child that is no longer ours to signal has exited: the poll below says so.
        let _ = signals::send(child, Signal::SIGKILL);
    }
    let gone = || {
        children
            .iter()
            .all(|c| !process::is_same_process(c.pid, c.start_time))
            && dirs.iter().all(|dir| cgroups::procs(dir).is_empty())
    };
    let all_gone = poll(300, gone);
    let mut detail = match children.len() {
        0 => "no children were started".to_string(),
        n if running == 0 => format!("the {n} children had already exited"),
        n => format!("killed {running} of {n} children"),
    };
    let mut removed = true;
    for dir in &dirs {
        let gone = poll(100, || match fs::remove_dir(dir) {
            Ok(()) => true,
            Err(err) => err.kind() == std::io::ErrorKind::NotFound,
        });
        if gone {
            detail.push_str(&format!("; removed cgroup `{}`", dir.display()));
        } else {
            detail.push_str(&format!("; cgroup `{}` is still there", dir.display()));
        }
        removed &= gone;
    }
    if all_gone {
        detail.push_str("; none is running");
    } else {
        detail.push_str("; some are still running");
    }
    Undone {
        verified: all_gone && removed,
        detail,
    }
}

// ---- the spawner thread and the children ----

#[derive(Debug, Clone, Copy)]
pub(super) enum Work {
    Cpu { busy: Duration, load: f64 },
    Memory { bytes: u64 },
}

struct Job {
    work: Work,
    count: u32,
    lifetime: Duration,
    /// The `cgroup.procs` file of each cgroup a child joins.
    cgroup_procs: Vec<PathBuf>,
}

type Reply = Result<Vec<i32>, String>;

/// A job for the spawner, and where to send the pids it started.
type Request = (Job, Sender<Reply>);

/// The spawner: one thread for the life of the process, which forks every child (so their
/// `PR_SET_PDEATHSIG` fires only when the process dies) and reaps them.
fn spawner() -> &'static Mutex<Sender<Request>> {
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        let started = thread::Builder::new()
            .name("chaos-stress".to_string())
            .spawn(move || {
                let mut children: Vec<i32> = Vec::new();
                loop {
                    match rx.recv_timeout(Duration::from_millis(50)) {
                        Ok((job, reply)) => {
                            let result = fork_all(&job);
                            if let Ok(pids) = &result {
                                children.extend(pids);
                            }
                            let _ = reply.send(result);
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    children.retain(|&pid| !reaped(pid));
                }
            });
        if let Err(err) = started {
            tracing::warn!(error = %err, "cannot start the stress spawner thread");
        }
        Mutex::new(tx)
    })
}

/// Whether `pid`, a child of this process, has exited and been waited for (or is not ours).
fn reaped(pid: i32) -> bool {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    !matches!(
        waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)),
        Ok(WaitStatus::StillAlive)
    )
}

fn spawn(job: Job) -> Result<Vec<i32>, FaultError> {
    let (reply_tx, reply_rx) = mpsc::channel();
    let sent = spawner()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send((job, reply_tx));
    if sent.is_err() {
        return Err(failed("the stress spawner thread is not running"));
    }
    match reply_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(result) => result.map_err(failed),
        Err(_) => Err(failed("the stress spawner thread did not answer")),
    }
}

/// What a child needs, prepared before the fork so that the child allocates nothing.
struct ChildPlan {
    work: Work,
    deadline: libc::timespec,
    cgroup_procs: Vec<CString>,
    parent: libc::pid_t,
    page: usize,
}

fn fork_all(job: &Job) -> Reply {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
    }
    let end = Duration::new(now.tv_sec as u64, now.tv_nsec as u32) + job.lifetime;
    let plan = ChildPlan {
        work: job.work,
        deadline: libc::timespec {
            tv_sec: end.as_secs() as libc::time_t,
            tv_nsec: end.subsec_nanos() as libc::c_long,
        },
        cgroup_procs: job
            .cgroup_procs
            .iter()
            .map(|path| {
                CString::new(path.as_os_str().as_encoded_bytes())
                    .map_err(|_| "a cgroup path with a NUL byte".to_string())
            })
            .collect::<Result<_, _>>()?,
        parent: std::process::id() as libc::pid_t,
        page: match sysconf(SysconfVar::PAGE_SIZE) {
            Ok(Some(p)) if p > 0 => p as usize,
            _ => 4096,
        },
    };
    let mut pids = Vec::with_capacity(job.count as usize);
    for _ in 0..job.count {
        // SAFETY: the child runs only `child_main`, which makes raw, async-signal-safe system
        // calls on `plan` (prepared above) and never returns; the parent goes on as usual.
        #[allow(unsafe_code)]
        let pid = unsafe { libc::fork() };
        match pid {
            0 => child_main(&plan),
            -1 => {
                let err = std::io::Error::last_os_error();
                for &pid in &pids {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
                }
                return Err(format!("cannot fork a stress worker: {err}"));
            }
            pid => pids.push(pid),
        }
    }
    Ok(pids)
}

/// The child: async-signal-safe system calls only, then `_exit`.
#[allow(unsafe_code)]
fn child_main(plan: &ChildPlan) -> ! {
    // SAFETY: every call below is a system call on memory this child owns (its copy of `plan`,
    // locals, and the mapping it makes), safe after a fork of a multithreaded process.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != plan.parent {
            libc::_exit(0);
        }
        // Default dispositions and an empty mask: the parent's handlers are not ours.
        for signal in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGPIPE,
            libc::SIGCHLD,
        ] {
            libc::signal(signal, libc::SIG_DFL);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // Hold none of the agent's files (its sockets, a caller's pipes).
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
        }
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
            for fd in 3..4096 {
                libc::close(fd);
            }
        }
        libc::prctl(libc::PR_SET_NAME, c"chaos-stress".as_ptr(), 0, 0, 0);
        write_file(c"/proc/self/oom_score_adj", b"1000");
        // Reading the Vec prepared before the fork allocates nothing.
        for procs in plan.cgroup_procs.iter() {
            write_file(procs, b"0");
        }
        match plan.work {
            Work::Cpu { busy, .. } => burn(busy, &plan.deadline),
            Work::Memory { bytes } => hold(bytes as usize, plan.page, &plan.deadline),
        }
        libc::_exit(0)
    }
}

#[allow(unsafe_code)]
unsafe fn write_file(path: &std::ffi::CStr, bytes: &[u8]) {
    // SAFETY: open, write and close on a path and buffer we own.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
        if fd >= 0 {
            libc::write(fd, bytes.as_ptr().cast(), bytes.len());
            libc::close(fd);
        }
    }
}

#[allow(unsafe_code)]
fn monotonic() -> libc::timespec {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime (async-signal-safe) writes into a timespec we own.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
    }
    now
}

fn nanos(t: &libc::timespec) -> i128 {
    t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128
}

#[allow(unsafe_code)]
fn sleep_nanos(ns: i128) {
    if ns <= 0 {
        return;
    }
    let req = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: nanosleep (async-signal-safe) reads a timespec we own.
    unsafe {
        libc::nanosleep(&req, std::ptr::null_mut());
    }
}

/// Busy `busy` of every [`PERIOD`], asleep the rest, until `deadline`.
fn burn(busy: Duration, deadline: &libc::timespec) {
    let end = nanos(deadline);
    let period = PERIOD.as_nanos() as i128;
    let busy = busy.as_nanos() as i128;
    let mut spin: u64 = 0;
    loop {
        let start = nanos(&monotonic());
        if start >= end {
            return;
        }
        while nanos(&monotonic()) - start < busy {
            spin = std::hint::black_box(spin.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        sleep_nanos(start + period - nanos(&monotonic()));
    }
}

/// Maps `bytes`, writes every page, then sleeps until `deadline`.
#[allow(unsafe_code)]
fn hold(bytes: usize, page: usize, deadline: &libc::timespec) {
    // SAFETY: an anonymous private mapping this child owns; every write is inside it.
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if map == libc::MAP_FAILED {
            libc::_exit(2);
        }
        let base = map.cast::<u8>();
        let mut offset = 0;
        while offset < bytes {
            std::ptr::write_volatile(base.add(offset), 1);
            offset += page;
        }
    }
    let end = nanos(deadline);
    loop {
        let left = end - nanos(&monotonic());
        if left <= 0 {
            return;
        }
        sleep_nanos(left.min(100_000_000));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;

    #[test]
    fn cores_are_a_share_of_the_online_cpus_rounded_up() {
        assert_eq!(workers_for(Workers::Cores(50.0), 4).unwrap(), 2);
        assert_eq!(workers_for(Workers::Cores(10.0), 4).unwrap(), 1);
        assert_eq!(workers_for(Workers::Cores(100.0), 3).unwrap(), 3);
        assert_eq!(workers_for(Workers::Count(5), 2).unwrap(), 5);
        assert!(workers_for(Workers::Count(0), 2).is_err());
        assert_eq!(workers_for(Workers::Count(8), 2).unwrap(), 8);
        let err = workers_for(Workers::Count(9), 2).unwrap_err().to_string();
        assert!(err.contains("at most 8"), "{err}");
        assert!(workers_for(Workers::Cores(0.0), 2).is_err());
        assert!(workers_for(Workers::Cores(150.0), 2).is_err());
    }

    #[test]
    fn memory_beyond_what_is_available_less_the_margin_is_refused_with_the_figures() {
        let mem = MemInfo {
            total: 10 * GIB,
            available: 4 * GIB,
        };
        assert_eq!(
            memory_bytes_of(MemoryStress::Size(2 * GIB), 10.0, mem).unwrap(),
            2 * GIB
        );
        assert_eq!(
            memory_bytes_of(MemoryStress::Share(20.0), 10.0, mem).unwrap(),
            2 * GIB
        );
        let err = memory_bytes_of(MemoryStress::Size(3 * GIB + 1), 10.0, mem).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("4 GiB available"), "{msg}");
        assert!(msg.contains("at most 3 GiB"), "{msg}");
        assert!(memory_bytes_of(MemoryStress::Share(50.0), 10.0, mem).is_err());
        assert!(memory_bytes_of(MemoryStress::Size(0), 10.0, mem).is_err());
    }

    #[test]
    fn meminfo_is_read_in_bytes() {
        let text = "MemTotal:       24683784 kB\nMemFree: 1 kB\nMemAvailable:   23816856 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Some(MemInfo {
                total: 24683784 * 1024,
                available: 23816856 * 1024
            })
        );
    }

    #[test]
    fn the_plan_names_the_cgroup_after_the_fault_and_starts_no_child() {
        let spec = StressSpec::on_host(StressWork::Cpu(CpuStress {
            workers: Workers::Count(1),
            load: 50.0,
        }));
        let Undo::Stress { cgroup, children } = spec.plan("f-1", 0, &Resolved::default()).unwrap()
        else {
            panic!("a stress plan gives stress undo data")
        };
        assert!(children.is_empty());
        if let Some(cgroup) = cgroup {
            assert!(cgroup.ends_with("chaos-stress-f-1"), "{}", cgroup.display());
            assert!(!cgroup.exists());
        }
    }
}
