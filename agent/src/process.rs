//! Finding processes in `/proc`: the selector lookup shared by the `kill` and `pause` faults and by
//! `process` probes, and the pid-reuse guard (`pid` + `start_time`) that every revert relies on.
//! A fault's targets are labelled with the container they run in, if any ([`with_containers`],
//! through [`crate::container`]), so that reports say which container a fault hit; a lookup alone
//! (a `process` probe's sample) reads no container's names.
//!
//! **Invariant:** `find` never returns a zombie, a dead process, a kernel thread, this process or
//! any of its ancestors, or a process named `chaosctl`, `chaosd` or `chaos-agent`.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use std::collections::HashMap;

use regex::Regex;

use crate::container::{self, ContainerRef, Names};
use crate::error::FaultError;
use crate::spec::ProcessSelector;

/// Process names that are never a fault's target: our own tools.
pub const PROTECTED_NAMES: [&str; 3] = ["chaosctl", "chaosd", "chaos-agent"];

/// `PF_KTHREAD` in the flags field of `/proc/PID/stat`.
const PF_KTHREAD: u64 = 0x0020_0000;

/// One process as `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: i32,
    pub ppid: i32,
    /// The kernel's name for it (`/proc/PID/comm`, at most 15 bytes).
    pub comm: String,
    /// The arguments, `argv[0]` first; empty for zombies and kernel threads.
    pub cmdline: Vec<String>,
    /// `R`, `S`, `D`, `T`, `t`, `Z`, `X`, ... (field 3 of `/proc/PID/stat`).
    pub state: char,
    /// Start time in clock ticks since boot (field 22 of `/proc/PID/stat`): with the pid, it names
    /// one process even after the pid is reused.
    pub start_time: u64,
    /// The container it runs in: `06bc8a2ad96f (checkout)`, its short id and names; filled in by
    /// [`with_containers`] where a report names the process, `None` on the host and until then.
    pub container: Option<String>,
}

impl ProcessInfo {
    /// `pid 123 (sleep)`, as reports list affected processes; `pid 123 (sleep) in container
    /// 06bc8a2ad96f (checkout)` in a container.
    pub fn label(&self) -> String {
        match &self.container {
            Some(c) => format!("pid {} ({}) in container {c}", self.pid, self.comm),
            None => format!("pid {} ({})", self.pid, self.comm),
        }
    }

    fn is_gone(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Reads one process; `None` when it does not exist (or exited while being read).
pub fn read(pid: i32) -> Option<ProcessInfo> {
    read_with_flags(pid).map(|(info, _)| info)
}

/// Whether `pid` is still the process that had `start_time`, and alive (not a zombie): false once it
/// exited, even if its pid now belongs to another process.
pub fn is_same_process(pid: i32, start_time: u64) -> bool {
    read(pid).is_some_and(|p| p.start_time == start_time && !p.is_gone())
}

/// The live processes `selector` means, in ascending pid order (empty when none matches).
///
/// Errors only when the selector itself cannot be used: an unreadable or garbled pidfile, an invalid
/// regex, or no `/proc`.
pub fn find(selector: &ProcessSelector) -> Result<Vec<ProcessInfo>, FaultError> {
    Ok(find_with_protected(selector)?.0)
}

/// A process a selector matched that is never a fault's target, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    pub process: ProcessInfo,
    pub why: &'static str,
}

/// Like [`find`], and also the processes the selector matched that are protected, each with why,
/// so that a selector matching only those can say so ([`protected_reasons`]) instead of "no
/// process matches".
pub fn find_with_protected(
    selector: &ProcessSelector,
) -> Result<(Vec<ProcessInfo>, Vec<Protected>), FaultError> {
    let excluded = own_lineage();
    let candidates = match selector {
        ProcessSelector::Pid(pid) => single(*pid),
        ProcessSelector::Pidfile(path) => single(read_pidfile(path)?),
        _ => {
            let matcher = Matcher::new(selector)?;
            let mut containers = Containers::default();
            // Only a process whose command line passes is read further: on a busy host most
            // do not, and the scan is the cost of every preflight, injection and probe.
            scan(|cmdline| matcher.keeps_cmdline(cmdline))?
                .into_iter()
                .filter(|p| matcher.matches(p, &mut containers))
                .collect()
        }
    };
    let mut kept = Vec::new();
    let mut protected = Vec::new();
    for p in candidates {
        match why_protected(&p, &excluded) {
            None => kept.push(p),
            Some(why) => protected.push(Protected { process: p, why }),
        }
    }
    Ok((kept, protected))
}

/// `processes`, each labelled with the container it runs in ([`ProcessInfo::container`]): each
/// cgroup read once, each container's names looked up once.
pub fn with_containers(processes: Vec<ProcessInfo>) -> Vec<ProcessInfo> {
    let mut containers = Containers::default();
    processes
        .into_iter()
        .map(|mut p| {
            p.container = containers.label_of(p.pid);
            p
        })
        .collect()
}

/// `pid 1 (systemd): the host's init ...`: one line per reason, with the processes (and their
/// containers) it protects.
pub fn protected_reasons(protected: Vec<Protected>) -> Vec<String> {
    let (processes, whys): (Vec<ProcessInfo>, Vec<&str>) =
        protected.into_iter().map(|p| (p.process, p.why)).unzip();
    // Each reason once, with the processes it protects.
    let mut grouped: Vec<(&str, Vec<String>)> = Vec::new();
    for (p, why) in with_containers(processes).into_iter().zip(whys) {
        match grouped.iter_mut().find(|(w, _)| *w == why) {
            Some((_, labels)) => labels.push(p.label()),
            None => grouped.push((why, vec![p.label()])),
        }
    }
    grouped
        .into_iter()
        .map(|(why, labels)| format!("{}: {why}", labels.join(", ")))
        .collect()
}

/// Why `p` is never a fault's target, or `None` when it may be one.
fn why_protected(p: &ProcessInfo, lineage: &HashSet<i32>) -> Option<&'static str> {
    if p.pid == std::process::id() as i32 {
        Some("the agent itself")
    } else if p.pid == 1 {
        Some(
            "the host's init, which takes the whole host with it (and an ancestor of the agent); \
             fault a service's own processes instead",
        )
    } else if lineage.contains(&p.pid) {
        Some(
            "an ancestor of the agent (its shell, supervisor or service manager), whose fault would stop the agent too",
        )
    } else if PROTECTED_NAMES.contains(&p.comm.as_str()) {
        Some(
            "one of the chaos tools (chaosctl, chaosd, chaos-agent), which are never faulted so that a game day can always revert",
        )
    } else {
        None
    }
}

/// How many compiled patterns [`compiled`] keeps: more than a scenario names, few enough that a
/// long-lived agent given ever new patterns stays small.
const COMPILED_KEPT: usize = 64;

/// The regex of a `pattern:` selector, compiled once per process. Compiling one costs more than
/// reading the command line of every process on a small host (about half a millisecond for
/// `^sleep 1000$`: `.` is any Unicode character), and a run needs each pattern at validation, at
/// preflight and at every injection.
pub fn compiled(pattern: &str) -> Result<Regex, regex::Error> {
    static KEPT: std::sync::Mutex<Option<HashMap<String, Regex>>> = std::sync::Mutex::new(None);
    let mut kept = KEPT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let kept = kept.get_or_insert_with(HashMap::new);
    if let Some(regex) = kept.get(pattern) {
        return Ok(regex.clone());
    }
    let regex = Regex::new(pattern)?;
    if kept.len() >= COMPILED_KEPT {
        kept.clear();
    }
    kept.insert(pattern.to_string(), regex.clone());
    Ok(regex)
}

/// A selector ready to test processes with: its regex compiled, its glob parsed.
enum Matcher {
    Name(String),
    Pattern(Regex),
    Cgroup(glob::Pattern),
    Unit(String),
    Container(String),
    All(Vec<Matcher>),
}

impl Matcher {
    fn new(selector: &ProcessSelector) -> Result<Matcher, FaultError> {
        let invalid = |reason: String| FaultError::InvalidSelector {
            selector: selector.to_string(),
            reason,
        };
        Ok(match selector {
            ProcessSelector::Name(name) => Matcher::Name(name.clone()),
            ProcessSelector::Pattern(pattern) => {
                Matcher::Pattern(compiled(pattern).map_err(|source| {
                    FaultError::InvalidPattern {
                        pattern: pattern.clone(),
                        source: Box::new(source),
                    }
                })?)
            }
            ProcessSelector::Cgroup(text) => Matcher::Cgroup(
                glob::Pattern::new(text)
                    .map_err(|err| invalid(format!("`{text}` is not a glob: {err}")))?,
            ),
            ProcessSelector::Unit(unit) => Matcher::Unit(unit_name(unit)),
            ProcessSelector::Container(given) => Matcher::Container(given.clone()),
            ProcessSelector::All(parts) => {
                if let Some(reason) = ProcessSelector::combination_error(parts) {
                    return Err(invalid(reason));
                }
                Matcher::All(parts.iter().map(Matcher::new).collect::<Result<_, _>>()?)
            }
            ProcessSelector::Pid(_) | ProcessSelector::Pidfile(_) => {
                return Err(invalid("a pid is not matched, it is read".to_string()));
            }
        })
    }

    /// Whether a process with this raw command line may match: only a pattern can tell yet.
    fn keeps_cmdline(&self, raw: &[u8]) -> bool {
        match self {
            Matcher::Pattern(regex) => regex.is_match(&join_cmdline(raw)),
            Matcher::All(parts) => parts.iter().all(|m| m.keeps_cmdline(raw)),
            _ => true,
        }
    }

    fn matches(&self, p: &ProcessInfo, containers: &mut Containers) -> bool {
        match self {
            Matcher::Name(name) => matches_name(p, name),
            Matcher::Pattern(regex) => regex.is_match(&p.cmdline.join(" ")),
            Matcher::Cgroup(glob) => containers
                .cgroup_of(p.pid)
                .is_some_and(|path| glob.matches(path)),
            Matcher::Unit(unit) => containers
                .cgroup_of(p.pid)
                .is_some_and(|path| path.split('/').any(|part| part == unit)),
            Matcher::Container(given) => containers.is_in(p.pid, given),
            Matcher::All(parts) => parts.iter().all(|m| m.matches(p, containers)),
        }
    }
}

/// `nginx` → `nginx.service`, as systemctl reads a bare unit name.
fn unit_name(given: &str) -> String {
    const SUFFIXES: [&str; 6] = [
        ".service", ".scope", ".slice", ".socket", ".mount", ".timer",
    ];
    if SUFFIXES.iter().any(|s| given.ends_with(s)) {
        given.to_string()
    } else {
        format!("{given}.service")
    }
}

/// What one lookup learnt about cgroups and containers, so each process's cgroup is read once
/// and each container's names are looked up once.
#[derive(Default)]
struct Containers {
    cgroups: HashMap<i32, Option<String>>,
    /// Each container's names, by id.
    names: HashMap<String, Vec<String>>,
    state: Names,
}

impl Containers {
    fn cgroup_of(&mut self, pid: i32) -> Option<&str> {
        self.cgroups
            .entry(pid)
            .or_insert_with(|| container::cgroup_path(pid))
            .as_deref()
    }

    fn container_of(&mut self, pid: i32) -> Option<ContainerRef> {
        container::from_cgroup_path(self.cgroup_of(pid)?)
    }

    fn names_of(&mut self, container: &ContainerRef) -> &[String] {
        let state = &mut self.state;
        self.names
            .entry(container.id.clone())
            .or_insert_with(|| state.of(container))
    }

    /// Whether `pid` runs in the container `given` names: an id prefix, or one of its names.
    fn is_in(&mut self, pid: i32, given: &str) -> bool {
        let Some(found) = self.container_of(pid) else {
            return false;
        };
        if container::is_id_prefix(given) && found.id.starts_with(&given.to_ascii_lowercase()) {
            return true;
        }
        self.names_of(&found).iter().any(|name| name == given)
    }

    /// `06bc8a2ad96f (checkout)` for a process in a container; `None` on the host.
    fn label_of(&mut self, pid: i32) -> Option<String> {
        let found = self.container_of(pid)?;
        let short = found.short_id().to_string();
        let names = self.names_of(&found);
        Some(match names.first() {
            Some(name) => format!("{short} ({name})"),
            None => format!("{short} ({})", found.runtime.as_str()),
        })
    }
}

/// The pid a pidfile holds.
pub fn read_pidfile(path: &Path) -> Result<i32, FaultError> {
    let text = fs::read_to_string(path).map_err(|source| FaultError::PidfileUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let trimmed = text.trim();
    match trimmed.parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(FaultError::PidfileGarbled {
            path: path.to_path_buf(),
            content: trimmed.chars().take(40).collect(),
        }),
    }
}

/// A single pid as a candidate list: it must be a live, user-space process (not a thread id).
fn single(pid: i32) -> Vec<ProcessInfo> {
    match read_with_flags(pid) {
        Some((info, flags)) if is_candidate(&info, flags) && tgid(pid) == Some(pid) => vec![info],
        _ => Vec::new(),
    }
}

/// Every live user-space process whose raw command line passes `keep`, ascending by pid.
fn scan(keep: impl Fn(&[u8]) -> bool) -> Result<Vec<ProcessInfo>, FaultError> {
    let entries = fs::read_dir("/proc").map_err(|source| FaultError::Proc { source })?;
    let mut pids: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    // One buffer for the whole scan: it reads a file or two of every process on the host.
    let mut buf = ProcBuf::new();
    let mut found = Vec::new();
    for pid in pids {
        let cmdline = match buf.read(&format!("/proc/{pid}/cmdline")) {
            Ok(raw) if keep(raw) => split_cmdline(raw),
            _ => continue,
        };
        let Some((mut info, flags)) = read_stat(pid, &mut buf) else {
            continue;
        };
        info.cmdline = cmdline;
        if is_candidate(&info, flags) {
            found.push(info);
        }
    }
    Ok(found)
}

/// What [`ProcBuf`] asks for at once: more than a process's `stat` or usual command line.
const PROC_READ: usize = 4096;

/// A buffer that reads `/proc` files in as few system calls as it takes: `fs::read` would also
/// `stat` each for a size hint (`/proc` says 0) and probe with a small read first. It is zeroed
/// once, not at every read (zeroing 4 KiB per file was a tenth of a small run's instructions),
/// and a scan does this for every process on the host.
struct ProcBuf(Vec<u8>);

impl ProcBuf {
    fn new() -> ProcBuf {
        ProcBuf(vec![0; PROC_READ])
    }

    /// The whole of the file at `path`.
    fn read(&mut self, path: &str) -> std::io::Result<&[u8]> {
        use std::io::Read;
        let mut file = fs::File::open(path)?;
        let mut len = 0;
        loop {
            if len == self.0.len() {
                self.0.resize(len + PROC_READ, 0);
            }
            match file.read(&mut self.0[len..]) {
                Ok(0) => return Ok(&self.0[..len]),
                Ok(read) => len += read,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }
}

fn is_candidate(info: &ProcessInfo, flags: u64) -> bool {
    !info.is_gone() && flags & PF_KTHREAD == 0
}

fn matches_name(p: &ProcessInfo, name: &str) -> bool {
    if p.comm == name {
        return true;
    }
    if p.cmdline
        .first()
        .is_some_and(|argv0| file_name(argv0) == name)
    {
        return true;
    }
    fs::read_link(format!("/proc/{}/exe", p.pid)).is_ok_and(|exe| {
        let exe = exe.to_string_lossy();
        file_name(exe.strip_suffix(" (deleted)").unwrap_or(&exe)) == name
    })
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// This process and all its ancestors.
fn own_lineage() -> HashSet<i32> {
    let mut lineage = HashSet::new();
    let mut pid = std::process::id() as i32;
    while pid > 0 && lineage.insert(pid) {
        match read(pid) {
            Some(info) => pid = info.ppid,
            None => break,
        }
    }
    lineage
}

fn tgid(pid: i32) -> Option<i32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

fn read_with_flags(pid: i32) -> Option<(ProcessInfo, u64)> {
    let mut buf = ProcBuf::new();
    let (mut info, flags) = read_stat(pid, &mut buf)?;
    if let Ok(raw) = buf.read(&format!("/proc/{pid}/cmdline")) {
        info.cmdline = split_cmdline(raw);
    }
    Some((info, flags))
}

/// `/proc/PID/stat`, read into `buf`; `None` when it is gone or not that process.
fn read_stat(pid: i32, buf: &mut ProcBuf) -> Option<(ProcessInfo, u64)> {
    let raw = buf.read(&format!("/proc/{pid}/stat")).ok()?;
    let (info, flags) = parse_stat(std::str::from_utf8(raw).ok()?)?;
    (info.pid == pid).then_some((info, flags))
}

/// `/proc/PID/cmdline`'s NUL-separated arguments.
fn split_cmdline(raw: &[u8]) -> Vec<String> {
    let mut args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    if args.last().is_some_and(String::is_empty) {
        args.pop();
    }
    args
}

/// The command line as patterns see it: arguments joined by spaces.
fn join_cmdline(raw: &[u8]) -> String {
    split_cmdline(raw).join(" ")
}

/// Parses `/proc/PID/stat` (without the cmdline); the name may hold spaces and parentheses.
fn parse_stat(stat: &str) -> Option<(ProcessInfo, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let pid = stat[..open].trim().parse().ok()?;
    let comm = stat.get(open + 1..close)?.to_string();
    // Fields from 3 (state) on; field N is at index N - 3.
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let state = rest.first()?.chars().next()?;
    let ppid = rest.get(1)?.parse().ok()?;
    let flags = rest.get(6)?.parse().ok()?;
    let start_time = rest.get(19)?.parse().ok()?;
    Some((
        ProcessInfo {
            pid,
            ppid,
            comm,
            cmdline: Vec::new(),
            state,
            start_time,
            container: None,
        },
        flags,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_names_with_spaces_and_parentheses_parse() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 120 0 0 0 1 2 0 0 20 0 1 0 98765 \
                    2453504 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0";
        let (info, flags) = parse_stat(stat).unwrap();
        assert_eq!(info.pid, 4242);
        assert_eq!(info.comm, "a (b) c");
        assert_eq!(info.state, 'S');
        assert_eq!(info.ppid, 1);
        assert_eq!(flags, 4_194_560);
        assert_eq!(info.start_time, 98765);
    }

    #[test]
    fn own_process_reads_back() {
        let me = read(std::process::id() as i32).unwrap();
        assert!(is_same_process(me.pid, me.start_time));
        assert!(!is_same_process(me.pid, me.start_time + 1));
    }
}
