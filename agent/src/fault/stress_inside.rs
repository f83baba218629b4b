//! `stress` with `inside:`: the workers burn CPU or hold memory in a cgroup of their own,
//! `chaos-stress-<fault id>`, made below the cgroup of the matching processes (a container's, a
//! pod's) in every hierarchy that limits them: cgroup2, and on v1 and hybrid hosts the `cpu`,
//! `cpuacct`, `memory` and `cpuset` ones ([`crate::cgroups`]). So the container's own CPU quota,
//! cpuset and memory limit apply to them, and its usage counts them: a noisy neighbour inside the
//! pod. Once per distinct cgroup.
//!
//! In cgroup2 a child below a cgroup that holds processes is allowed as long as no controller is
//! enabled in its `cgroup.subtree_control`: none is, so what the workers use is charged to the
//! target's cgroup. A v1 cpuset child gets `cpuset.cpus` and `cpuset.mems` copied from its parent
//! before a task can join it.
//!
//! The [`Undo`] records, for each cgroup, the process it was found through and every directory
//! made, as the host sees it, so the revert (or a restarted agent's recovery) kills every process
//! in them and removes them: the container's runtime must never find our directory left behind,
//! which would keep it from removing the container's cgroup.
//!
//! **Invariant:** a process in the agent's own cgroup, or in one that holds it (the host's root),
//! is never a way in: the workers would be limited as the host is, which `inside:` promises not to
//! do. Such a match is refused.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::fill_disk::human;
use super::stress::{
    DEFAULT_MEMORY_MARGIN, MemInfo, Work, asked_bytes, cgroup_name, cpu_work, failed, meminfo,
    memory_bytes_of, online_cpus, refuse, resolve_workers, revert_in, start, workers_for,
};
use super::{Injected, Target, Undo, Undone, matching};
use crate::cgroups::{self, CgroupDir};
use crate::error::FaultError;
use crate::process;
use crate::spec::{MemoryStress, ProcessSelector, StressWork, Workers};

/// A limit this large (v1's "no limit" is near `i64::MAX` rounded to pages) is no limit.
const UNLIMITED: u64 = 1 << 60;

/// A cgroup a `stress` with `inside:` is made below, as found before the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetCgroup {
    /// Its path as `/proc/PID/cgroup` shows it from the host ([`crate::container::cgroup_path`]).
    pub path: String,
    /// The process it was found through.
    pub via: Target,
    /// Its directory in each hierarchy that matters.
    pub dirs: Vec<CgroupDir>,
}

/// One cgroup a `stress` with `inside:` is made below, journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupEntry {
    /// The target's cgroup path, as `/proc/PID/cgroup` shows it from the host.
    pub cgroup: String,
    /// The process it was found through.
    pub via: Target,
    /// Our directories, one per hierarchy, below the target's, as the host sees them.
    pub dirs: Vec<PathBuf>,
    /// The workers started in them; filled in by the injection.
    #[serde(default)]
    pub children: Vec<Target>,
}

impl CgroupEntry {
    /// `cgroup /libpod_parent/libpod-2e13… (via pid 812 (sleep) in container 2e13011c2712 (a))`.
    pub fn label(&self) -> String {
        format!("cgroup {} (via {})", self.cgroup, self.via.label())
    }
}

/// The cgroups `selector`'s processes are in, each with the first process found in it. A process
/// in the agent's own cgroup, or in one holding it, is refused.
pub fn find(selector: &ProcessSelector) -> Result<Vec<TargetCgroup>, FaultError> {
    cgroups::host_view(|| {
        let own =
            cgroups::dirs_of(std::process::id() as i32).map_err(|reason| FaultError::Inside {
                reason: format!("cannot find this agent's own cgroups: {reason}"),
            })?;
        let mountinfo = fs::read_to_string("/proc/thread-self/mountinfo").map_err(|err| {
            FaultError::Inside {
                reason: format!("cannot read /proc/thread-self/mountinfo: {err}"),
            }
        })?;
        let mut found: BTreeMap<Vec<PathBuf>, TargetCgroup> = BTreeMap::new();
        for p in process::with_containers(matching(selector)?) {
            let Ok(text) = fs::read_to_string(format!("/proc/{}/cgroup", p.pid)) else {
                continue; // exited while being looked at
            };
            let dirs = cgroups::dirs_in(&mountinfo, &text, p.pid).map_err(|reason| {
                FaultError::Inside {
                    reason: format!("for {}: {reason}", p.label()),
                }
            })?;
            if dirs.is_empty() {
                return Err(FaultError::Inside {
                    reason: "no cgroup hierarchy is mounted here (cgroup2, or v1 `cpu`, `cpuacct`, `memory`, `cpuset`): mount /sys/fs/cgroup".to_string(),
                });
            }
            let dirs = match below_host(dirs, &own) {
                Ok(dirs) => dirs,
                Err(shared) => {
                    return Err(FaultError::Inside {
                        reason: format!(
                            "{} matches `inside:` {selector} but is in this agent's own cgroup (the host's): its {} cgroup `{}` holds the agent; stress the host without `inside:`, or narrow the selector to the container",
                            p.label(),
                            shared.hierarchy,
                            shared.path.display()
                        ),
                    });
                }
            };
            let key = dirs.iter().map(|d| d.path.clone()).collect();
            found.entry(key).or_insert_with(|| TargetCgroup {
                path: label_of(&text, &dirs),
                via: Target::from_info(&p),
                dirs,
            });
        }
        if found.is_empty() {
            return Err(FaultError::NoProcessMatches {
                selector: selector.to_string(),
            });
        }
        Ok(found.into_values().collect())
    })
}

/// How a target cgroup is named in reports: its path as `/proc/PID/cgroup` shows it, or where
/// that reads relative to a private cgroup namespace (`/../..`), its cgroup2 (else first)
/// directory on the host.
fn label_of(proc_cgroup: &str, dirs: &[CgroupDir]) -> String {
    match crate::container::cgroup_path_in(proc_cgroup) {
        Some(path) if !path.split('/').any(|part| part == "..") => path,
        _ => dirs
            .iter()
            .find(|d| d.hierarchy == "cgroup2")
            .or(dirs.first())
            .map(|d| d.path.display().to_string())
            .unwrap_or_default(),
    }
}

/// A target's directories below which the workers go: those that neither are the agent's own
/// in their hierarchy nor hold it (a v1 hierarchy the target was left at the root of, as systemd
/// leaves services in `cpuset`, adds nothing there). Refused, with the directory that shows it, when
/// the target is the host: its cgroup2 directory holds the agent's, or every one does.
fn below_host(target: Vec<CgroupDir>, own: &[CgroupDir]) -> Result<Vec<CgroupDir>, CgroupDir> {
    let holds = |t: &CgroupDir| {
        own.iter()
            .any(|o| o.hierarchy == t.hierarchy && o.path.starts_with(&t.path))
    };
    if let Some(v2) = target.iter().find(|t| t.hierarchy == "cgroup2" && holds(t)) {
        return Err(v2.clone());
    }
    let first = target.first().cloned();
    let kept: Vec<CgroupDir> = target.into_iter().filter(|t| !holds(t)).collect();
    match first {
        Some(first) if kept.is_empty() => Err(first),
        _ => Ok(kept),
    }
}

/// The limits of a cgroup that `stress` sizes itself by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Its memory limit and usage, in bytes, when it has a limit.
    pub memory: Option<(u64, u64)>,
    /// The CPUs it may use, in thousandths, when a quota or a cpuset bounds it below the host's.
    pub millicpus: Option<u64>,
}

/// The limits of the cgroup whose directories (one per hierarchy) are `dirs`, from the files
/// each has: cgroup2's `memory.max`, `cpu.max`, `cpuset.cpus.effective`, or v1's
/// `memory.limit_in_bytes`, `cpu.cfs_quota_us`, `cpuset.effective_cpus`.
pub fn limits(dirs: &[PathBuf]) -> Limits {
    let read = |name: &str| {
        dirs.iter()
            .find_map(|dir| fs::read_to_string(dir.join(name)).ok())
            .map(|text| text.trim().to_string())
    };
    let number = |name: &str| read(name).and_then(|t| t.parse::<u64>().ok());
    let limit = number("memory.max")
        .or_else(|| number("memory.limit_in_bytes"))
        .filter(|&l| l < UNLIMITED);
    let usage = number("memory.current").or_else(|| number("memory.usage_in_bytes"));
    let quota = read("cpu.max").and_then(|t| parse_cpu_max(&t)).or_else(|| {
        let quota = read("cpu.cfs_quota_us")?.parse::<i64>().ok()?;
        let period = number("cpu.cfs_period_us")?;
        (quota > 0 && period > 0).then(|| quota as u64 * 1000 / period)
    });
    let cpuset = read("cpuset.cpus.effective")
        .or_else(|| read("cpuset.effective_cpus"))
        .and_then(|t| parse_cpu_list(&t))
        .filter(|&n| n < online_cpus() as u64)
        .map(|n| n * 1000);
    Limits {
        memory: limit.map(|l| (l, usage.unwrap_or(0))),
        millicpus: match (quota, cpuset) {
            (Some(q), Some(c)) => Some(q.min(c)),
            (q, c) => q.or(c),
        },
    }
}

/// Thousandths of a CPU of cgroup2's `cpu.max` (`50000 100000`); `None` for `max`.
fn parse_cpu_max(text: &str) -> Option<u64> {
    let mut fields = text.split_whitespace();
    let quota = fields.next()?.parse::<u64>().ok()?;
    let period = fields.next()?.parse::<u64>().ok().filter(|&p| p > 0)?;
    Some(quota * 1000 / period)
}

/// How many CPUs a cpuset list names (`0-3,6`).
fn parse_cpu_list(text: &str) -> Option<u64> {
    let mut n = 0;
    for part in text.split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<u64>().ok()? - a.parse::<u64>().ok()? + 1,
            None => part.parse::<u64>().map(|_| 1).ok()?,
        };
    }
    (n > 0).then_some(n)
}

/// How many workers `cpu` starts in a cgroup with `limits`: `cores` is a share of its CPUs when
/// a quota or cpuset bounds them, else of the host's.
fn workers_in(work: &crate::spec::CpuStress, limits: Limits) -> Result<u32, FaultError> {
    let host = resolve_workers(work)?;
    match (work.workers, limits.millicpus) {
        (Workers::Cores(p), Some(milli)) => {
            let cpus = milli.div_ceil(1000).max(1) as u32;
            let share = (milli as f64 / 1000.0 * p / 100.0).ceil() as u32;
            Ok(share.clamp(1, cpus))
        }
        (Workers::Count(n), _) => workers_for(Workers::Count(n), online_cpus()),
        (Workers::Cores(_), None) => Ok(host),
    }
}

/// The bytes `memory` holds in a cgroup with `limits` (a limit: `share` is of it, and the size
/// must fit in its headroom, its limit less its usage and `margin` percent of the limit), and
/// within what the host has available.
fn bytes_in(
    memory: MemoryStress,
    margin: f64,
    limits: Limits,
    host: MemInfo,
    label: &str,
) -> Result<u64, FaultError> {
    let Some((limit, usage)) = limits.memory else {
        return memory_bytes_of(memory, margin, host);
    };
    let bytes = asked_bytes(memory, limit, &format!("{label}'s memory limit"))?;
    let keep = (limit as f64 * margin / 100.0) as u64;
    let headroom = limit.saturating_sub(usage).saturating_sub(keep);
    if bytes > headroom {
        return Err(refuse(format!(
            "{} asked, but {label} has a memory limit of {}, uses {} and keeps {margin}% of its limit ({}) free: at most {} can be held there; ask for less",
            human(bytes),
            human(limit),
            human(usage),
            human(keep),
            human(headroom)
        )));
    }
    memory_bytes_of(MemoryStress::Size(bytes), margin, host)
}

/// What `work` does in the cgroup whose directories are `dirs`: its kind of work and how many
/// workers.
fn work_in(
    work: &StressWork,
    dirs: &[PathBuf],
    margin: f64,
    label: &str,
) -> Result<(Work, u32), FaultError> {
    let limits = limits(dirs);
    Ok(match work {
        StressWork::Cpu(cpu) => (cpu_work(cpu), workers_in(cpu, limits)?),
        StressWork::Memory(memory) => (
            Work::Memory {
                bytes: bytes_in(*memory, margin, limits, meminfo()?, label)?,
            },
            1,
        ),
    })
}

fn target_dirs(target: &TargetCgroup) -> Vec<PathBuf> {
    target.dirs.iter().map(|d| d.path.clone()).collect()
}

fn target_label(target: &TargetCgroup) -> String {
    format!("cgroup {}", target.path)
}

/// Preflight: `work` fits in each cgroup.
pub fn check(work: &StressWork, targets: &[TargetCgroup]) -> Result<(), FaultError> {
    totals(work, targets, DEFAULT_MEMORY_MARGIN).map(drop)
}

/// The workers and memory bytes of `work` in all of `targets` together, for the policy.
pub fn totals(
    work: &StressWork,
    targets: &[TargetCgroup],
    margin: f64,
) -> Result<(u32, u64), FaultError> {
    let (mut workers, mut bytes) = (0, 0);
    for target in targets {
        let label = target_label(target);
        let (work, count) = work_in(work, &target_dirs(target), margin, &label)?;
        workers += count;
        if let Work::Memory { bytes: b } = work {
            bytes += b;
        }
    }
    Ok((workers, bytes))
}

/// The plan: our directory below each target cgroup, in each of its hierarchies.
pub fn plan(fault_id: &str, targets: &[TargetCgroup]) -> Undo {
    let name = cgroup_name(fault_id);
    Undo::StressInside {
        entries: targets
            .iter()
            .map(|t| CgroupEntry {
                cgroup: t.path.clone(),
                via: t.via.clone(),
                dirs: t.dirs.iter().map(|d| d.path.join(&name)).collect(),
                children: Vec::new(),
            })
            .collect(),
    }
}

/// Makes our directory `dir` below a target's, with a v1 cpuset's CPUs and memory nodes copied
/// from its parent (a task cannot join a cpuset that has none).
fn make_dir(dir: &Path) -> Result<(), FaultError> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => {
            return Err(failed(format!(
                "cannot create cgroup `{}`: {err}",
                dir.display()
            )));
        }
    }
    let parent = dir.parent().unwrap_or(dir);
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let ours = dir.join(file);
        let empty = fs::read_to_string(&ours).is_ok_and(|t| t.trim().is_empty());
        if empty {
            let theirs = fs::read_to_string(parent.join(file)).unwrap_or_default();
            fs::write(&ours, theirs.trim())
                .map_err(|err| failed(format!("cannot set `{}`: {err}", ours.display())))?;
        }
    }
    Ok(())
}

/// Starts the workers in each planned cgroup; the first failure stops it (the caller reverts all,
/// which removes every directory made).
pub fn inject(
    work: &StressWork,
    entries: &[CgroupEntry],
    hold: Duration,
) -> Result<Injected, FaultError> {
    let mut affected = Vec::new();
    let mut details = Vec::new();
    let mut verified = true;
    let mut done = Vec::new();
    for entry in entries {
        let label = entry.label();
        let parents: Vec<PathBuf> = entry
            .dirs
            .iter()
            .map(|d| d.parent().unwrap_or(d).to_path_buf())
            .collect();
        let (work, count) = work_in(work, &parents, DEFAULT_MEMORY_MARGIN, &label)?;
        for dir in &entry.dirs {
            make_dir(dir)?;
        }
        let ran = start(work, count, &entry.dirs, hold)?;
        affected.extend(
            ran.children
                .iter()
                .map(|c| format!("{label}: {}", c.label())),
        );
        let limits = limits(&parents);
        details.push(format!(
            "{label}: {}; {}; cgroups {}",
            ran.detail,
            limits_text(limits),
            entry
                .dirs
                .iter()
                .map(|d| format!("`{}`", d.display()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        verified &= ran.verified;
        done.push(CgroupEntry {
            children: ran.children,
            ..entry.clone()
        });
    }
    Ok(Injected {
        mechanism: "child processes in the target's cgroups".to_string(),
        affected,
        verified,
        detail: format!(
            "{}; oom_score_adj 1000; they exit by themselves after {} s",
            details.join("; "),
            hold.as_secs_f64()
        ),
        undo: Some(Undo::StressInside { entries: done }),
    })
}

/// `its limits: 0.50 CPUs, 64 MiB of memory (700 KiB used)`.
fn limits_text(limits: Limits) -> String {
    let cpus = match limits.millicpus {
        Some(m) => format!("{:.2} CPUs", m as f64 / 1000.0),
        None => format!("no CPU limit ({} online)", online_cpus()),
    };
    let memory = match limits.memory {
        Some((limit, usage)) => format!("{} of memory ({} used)", human(limit), human(usage)),
        None => "no memory limit".to_string(),
    };
    format!("its limits: {cpus}, {memory}")
}

/// Kills the workers in each cgroup and removes our directories; a target whose processes have
/// all gone (a stopped container) is said so. Every entry is tried.
pub fn revert(entries: &[CgroupEntry]) -> Undone {
    let mut details = Vec::new();
    let mut verified = true;
    for entry in entries {
        let label = entry.label();
        let undone = revert_in(&entry.dirs, &entry.children);
        verified &= undone.verified;
        let stopped = entry.dirs.iter().all(|d| {
            let parent = d.parent().unwrap_or(d);
            !parent.exists() || cgroups::procs(parent).is_empty()
        });
        if stopped && !process::is_same_process(entry.via.pid, entry.via.start_time) {
            details.push(format!(
                "{label}: no process is left in the target's cgroup (the container stopped); {}",
                undone.detail
            ));
        } else {
            details.push(format!("{label}: {}", undone.detail));
        }
    }
    Undone {
        verified,
        detail: details.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::CpuStress;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_plan_names_our_directory_below_each_hierarchy_and_journals_the_way_in() {
        let via = Target {
            pid: 812,
            start_time: 42,
            comm: "sleep".into(),
            was_stopped: false,
            container: Some("2e13011c2712 (a)".into()),
        };
        let target = TargetCgroup {
            path: "/libpod_parent/libpod-2e13".into(),
            via: via.clone(),
            dirs: vec![
                CgroupDir {
                    hierarchy: "memory".into(),
                    path: "/sys/fs/cgroup/memory/libpod_parent/libpod-2e13".into(),
                },
                CgroupDir {
                    hierarchy: "cgroup2".into(),
                    path: "/sys/fs/cgroup/unified/libpod_parent/libpod-2e13".into(),
                },
            ],
        };
        let undo = plan("f-1", &[target]);
        let Undo::StressInside { entries } = &undo else {
            panic!("a stress inside plans cgroup entries")
        };
        assert_eq!(
            entries[0].dirs,
            [
                PathBuf::from("/sys/fs/cgroup/memory/libpod_parent/libpod-2e13/chaos-stress-f-1"),
                PathBuf::from("/sys/fs/cgroup/unified/libpod_parent/libpod-2e13/chaos-stress-f-1"),
            ]
        );
        assert_eq!(
            entries[0].label(),
            "cgroup /libpod_parent/libpod-2e13 (via pid 812 (sleep) in container 2e13011c2712 (a))"
        );
        // What a restarted agent reads back from the journal.
        let json = serde_json::to_string(&undo).unwrap();
        assert!(json.contains(r#""kind":"stress_inside""#), "{json}");
        assert_eq!(serde_json::from_str::<Undo>(&json).unwrap(), undo);
    }

    #[test]
    fn cpu_quotas_and_cpusets_are_read_in_thousandths() {
        assert_eq!(parse_cpu_max("50000 100000"), Some(500));
        assert_eq!(parse_cpu_max("max 100000"), None);
        assert_eq!(parse_cpu_list("0-3,6"), Some(5));
        assert_eq!(parse_cpu_list("1"), Some(1));
        assert_eq!(parse_cpu_list(""), None);
    }

    #[test]
    fn limits_come_from_the_files_of_either_version() {
        let dir = tempfile::tempdir().unwrap();
        let (v1, v2) = (dir.path().join("v1"), dir.path().join("v2"));
        fs::create_dir_all(&v1).unwrap();
        fs::create_dir_all(&v2).unwrap();
        fs::write(v1.join("memory.limit_in_bytes"), "67108864\n").unwrap();
        fs::write(v1.join("memory.usage_in_bytes"), "1048576\n").unwrap();
        fs::write(v1.join("cpu.cfs_quota_us"), "50000\n").unwrap();
        fs::write(v1.join("cpu.cfs_period_us"), "100000\n").unwrap();
        assert_eq!(
            limits(std::slice::from_ref(&v1)),
            Limits {
                memory: Some((64 * MIB, MIB)),
                millicpus: Some(500)
            }
        );
        fs::write(v2.join("memory.max"), "max\n").unwrap();
        fs::write(v2.join("cpu.max"), "max 100000\n").unwrap();
        assert_eq!(limits(std::slice::from_ref(&v2)), Limits::default());
        fs::write(v2.join("memory.max"), "33554432\n").unwrap();
        fs::write(v2.join("memory.current"), "0\n").unwrap();
        fs::write(v2.join("cpu.max"), "150000 100000\n").unwrap();
        assert_eq!(
            limits(&[v2]),
            Limits {
                memory: Some((32 * MIB, 0)),
                millicpus: Some(1500)
            }
        );
        fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        assert_eq!(limits(&[v1]).memory, None);
    }

    #[test]
    fn cores_are_a_share_of_the_containers_cpus_when_it_has_a_limit() {
        let cpu = |p| CpuStress {
            workers: Workers::Cores(p),
            load: 100.0,
        };
        let limited = |m| Limits {
            memory: None,
            millicpus: Some(m),
        };
        assert_eq!(workers_in(&cpu(100.0), limited(500)).unwrap(), 1);
        assert_eq!(workers_in(&cpu(50.0), limited(4000)).unwrap(), 2);
        assert_eq!(workers_in(&cpu(100.0), limited(1500)).unwrap(), 2);
        assert_eq!(
            workers_in(&cpu(100.0), Limits::default()).unwrap(),
            online_cpus()
        );
    }

    #[test]
    fn memory_above_the_cgroups_headroom_is_refused_with_the_figures() {
        let host = MemInfo {
            total: 1 << 40,
            available: 1 << 40,
        };
        let limited = Limits {
            memory: Some((64 * MIB, 8 * MIB)),
            millicpus: None,
        };
        // 64 MiB limit, 8 MiB used, 10% kept: 49.6 MiB of headroom.
        assert_eq!(
            bytes_in(
                MemoryStress::Size(40 * MIB),
                10.0,
                limited,
                host,
                "cgroup /c"
            )
            .unwrap(),
            40 * MIB
        );
        assert_eq!(
            bytes_in(MemoryStress::Share(50.0), 10.0, limited, host, "cgroup /c").unwrap(),
            32 * MIB
        );
        let err = bytes_in(
            MemoryStress::Size(60 * MIB),
            10.0,
            limited,
            host,
            "cgroup /c",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("cgroup /c has a memory limit of 64 MiB"),
            "{err}"
        );
        assert!(err.contains("uses 8 MiB"), "{err}");
        let unlimited = Limits::default();
        assert_eq!(
            bytes_in(MemoryStress::Size(60 * MIB), 10.0, unlimited, host, "c").unwrap(),
            60 * MIB
        );
    }

    #[test]
    fn the_agents_own_cgroup_and_those_holding_it_are_refused() {
        let dir = |h: &str, p: &str| CgroupDir {
            hierarchy: h.into(),
            path: p.into(),
        };
        let own = [dir(
            "cgroup2",
            "/sys/fs/cgroup/system.slice/chaos-agent.service",
        )];
        let root = [dir("cgroup2", "/sys/fs/cgroup")];
        let same = [dir(
            "cgroup2",
            "/sys/fs/cgroup/system.slice/chaos-agent.service",
        )];
        let container = [dir("cgroup2", "/sys/fs/cgroup/libpod_parent/libpod-1")];
        assert!(below_host(root.to_vec(), &own).is_err());
        assert!(below_host(same.to_vec(), &own).is_err());
        assert_eq!(below_host(container.to_vec(), &own), Ok(container.to_vec()));
        // A v1 host: the agent's cgroups, and a service systemd left at the cpuset root.
        let own = [
            dir("cpu", "/sys/fs/cgroup/cpu/system.slice/chaos-agent.service"),
            dir("cpuset", "/sys/fs/cgroup/cpuset"),
        ];
        let service = [
            dir("cpu", "/sys/fs/cgroup/cpu/system.slice/nginx.service"),
            dir("cpuset", "/sys/fs/cgroup/cpuset"),
        ];
        assert_eq!(
            below_host(service.to_vec(), &own),
            Ok(service[..1].to_vec())
        );
        let host = [
            dir("cpu", "/sys/fs/cgroup/cpu"),
            dir("cpuset", "/sys/fs/cgroup/cpuset"),
        ];
        assert_eq!(below_host(host.to_vec(), &own), Err(host[0].clone()));
    }
}
