//! Where a process's cgroups are on this host, as directories: what `stress` with `inside:` needs
//! to put its workers below a container's cgroup in every hierarchy that limits them.
//!
//! The hierarchies that matter are the cgroup2 one and, on cgroup v1 and hybrid hosts, the v1
//! hierarchies of `cpu`, `cpuacct`, `memory` and `cpuset`, however they are mounted (`cpu,cpuacct`
//! is often one mount). `/proc/PID/cgroup` gives the process's path in each hierarchy and
//! `/proc/self/mountinfo` where each hierarchy is mounted, and which of its directories the mount
//! shows (its root field); both are pure functions here, unit-tested on the shapes hosts have.
//!
//! Both files show paths relative to the cgroup namespace of the thread that reads them. An agent
//! in a private cgroup namespace (a Kubernetes pod's: containerd gives each its own) reads
//! `/../..`-relative paths, and the root of a `hostPath` mount of `/sys/fs/cgroup` as `/..`, so
//! [`host_view`] reads them on a thread that entered PID 1's cgroup namespace (the host's, with
//! `hostPID`). Where that namespace cannot be entered, a path that leads above the mount's root
//! by fewer `..` than the root is found by looking for the directory, below the mount, whose
//! `cgroup.procs` holds the process ([`locate`]): a guess is only taken once the kernel confirms
//! it.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::thread;

use nix::sched::{CloneFlags, setns};

/// The v1 controllers whose limits apply to `stress` workers.
pub const CONTROLLERS: [&str; 4] = ["cpu", "cpuacct", "memory", "cpuset"];

/// The most directories [`locate`] looks at before it gives up.
const SEARCH_LIMIT: usize = 20_000;

/// A mount of a cgroup hierarchy that matters: cgroup2, or a v1 one with some of
/// [`CONTROLLERS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// The controllers of [`CONTROLLERS`] the v1 hierarchy has, in that order; empty for cgroup2.
    pub controllers: Vec<String>,
    /// Where it is mounted.
    pub mount: PathBuf,
    /// Which of its directories the mount shows, relative to the reader's cgroup namespace.
    pub root: PathBuf,
}

impl Hierarchy {
    /// `cgroup2`, or the v1 controllers: `cpu,cpuacct`.
    pub fn name(&self) -> String {
        if self.controllers.is_empty() {
            "cgroup2".to_string()
        } else {
            self.controllers.join(",")
        }
    }
}

/// One directory of a process's cgroup, in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupDir {
    /// [`Hierarchy::name`].
    pub hierarchy: String,
    /// The directory, as this process sees it (under the hierarchy's mount).
    pub path: PathBuf,
}

/// The hierarchies that matter in a `mountinfo` text, the first mount of each.
pub fn hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut found: Vec<Hierarchy> = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut right = right.split_whitespace();
        let (Some(fstype), Some(_source), Some(options)) =
            (right.next(), right.next(), right.next())
        else {
            continue;
        };
        let controllers: Vec<String> = match fstype {
            "cgroup2" => Vec::new(),
            "cgroup" => {
                let ours = controllers_in(options);
                if ours.is_empty() {
                    continue;
                }
                ours
            }
            _ => continue,
        };
        let fields: Vec<&str> = left.split_whitespace().collect();
        let (Some(root), Some(mount)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        if found.iter().any(|h| h.controllers == controllers) {
            continue;
        }
        found.push(Hierarchy {
            controllers,
            mount: PathBuf::from(crate::mounts::unescape(mount)),
            root: PathBuf::from(crate::mounts::unescape(root)),
        });
    }
    found
}

/// The controllers that matter named in a comma-separated list (a v1 mount's options, a
/// `/proc/PID/cgroup` line's second field), in [`CONTROLLERS`]' order.
fn controllers_in(list: &str) -> Vec<String> {
    let listed: Vec<&str> = list.split(',').collect();
    CONTROLLERS
        .iter()
        .filter(|c| listed.contains(c))
        .map(|c| c.to_string())
        .collect()
}

/// The path of a `/proc/PID/cgroup` text in hierarchy `h`: the `0::` line for cgroup2, the line
/// listing the same controllers for a v1 one.
pub fn path_in(proc_cgroup: &str, h: &Hierarchy) -> Option<PathBuf> {
    proc_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (id, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let matches = if h.controllers.is_empty() {
            id == "0" && controllers.is_empty()
        } else {
            controllers_in(controllers) == h.controllers
        };
        matches.then(|| PathBuf::from(path))
    })
}

/// The directory of cgroup `path` in `h` by lexical arithmetic: below the mount, when the path
/// is below the mount's root. `None` when it is not (the reader's cgroup namespace hides how).
pub fn dir_of(h: &Hierarchy, path: &Path) -> Option<PathBuf> {
    let rel = path.strip_prefix(&h.root).ok()?;
    if rel.components().any(|c| c == Component::ParentDir) {
        return None;
    }
    Some(h.mount.join(rel))
}

/// How many `..` a namespace-relative path starts with, and what follows them.
fn split_up(path: &Path) -> (usize, PathBuf) {
    let mut up = 0;
    let mut rest = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::ParentDir if rest.as_os_str().is_empty() => up += 1,
            other => rest.push(other),
        }
    }
    (up, rest)
}

/// The directory of process `pid`'s cgroup `path` in `h`: [`dir_of`], or, when the reader's
/// cgroup namespace sits below the mount's root and `path` climbs fewer levels than the root
/// does, the directory at the right depth below the mount that holds `pid` in its
/// `cgroup.procs`.
pub fn locate(h: &Hierarchy, path: &Path, pid: i32) -> Option<PathBuf> {
    if let Some(dir) = dir_of(h, path) {
        return Some(dir);
    }
    let (root_up, root_rest) = split_up(&h.root);
    let (path_up, path_rest) = split_up(path);
    if !root_rest.as_os_str().is_empty() || path_up >= root_up {
        return None;
    }
    // The namespace's root is `root_up` levels below the mount's root; `path` starts
    // `path_up` levels above the namespace's root, so `root_up - path_up` levels below the mount.
    let depth = root_up - path_up;
    let mut level = vec![h.mount.clone()];
    let mut seen = 0;
    for _ in 0..depth {
        let mut next = Vec::new();
        for dir in &level {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                seen += 1;
                if seen > SEARCH_LIMIT {
                    return None;
                }
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    next.push(entry.path());
                }
            }
        }
        level = next;
    }
    level
        .into_iter()
        .map(|base| base.join(&path_rest))
        .find(|dir| procs(dir).contains(&pid))
}

/// The pids in a cgroup directory's `cgroup.procs` (none when it cannot be read).
pub fn procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// The directories of process `pid`'s cgroups in the hierarchies that matter, from `mountinfo`
/// and its `/proc/PID/cgroup` text; an error names a hierarchy whose directory is not found.
pub fn dirs_in(mountinfo: &str, proc_cgroup: &str, pid: i32) -> Result<Vec<CgroupDir>, String> {
    let mut dirs = Vec::new();
    for h in hierarchies(mountinfo) {
        let Some(path) = path_in(proc_cgroup, &h) else {
            continue;
        };
        let dir = locate(&h, &path, pid).ok_or_else(|| {
            format!(
                "its {} cgroup `{}` is not under `{}` (mounted from `{}`): mount the host's cgroup hierarchy, or run the agent in the host's cgroup namespace",
                h.name(),
                path.display(),
                h.mount.display(),
                h.root.display()
            )
        })?;
        dirs.push(CgroupDir {
            hierarchy: h.name(),
            path: dir,
        });
    }
    Ok(dirs)
}

/// The directories of process `pid`'s cgroups on this host; call it inside [`host_view`].
pub fn dirs_of(pid: i32) -> Result<Vec<CgroupDir>, String> {
    let read =
        |file: &str| fs::read_to_string(file).map_err(|err| format!("cannot read {file}: {err}"));
    let mountinfo = read("/proc/thread-self/mountinfo")?;
    let own = pid == std::process::id() as i32;
    let proc_cgroup = if own {
        read("/proc/thread-self/cgroup")?
    } else {
        read(&format!("/proc/{pid}/cgroup"))?
    };
    dirs_in(&mountinfo, &proc_cgroup, pid)
}

/// Runs `f` where cgroup paths read as the host has them: on a thread that entered PID 1's cgroup
/// namespace when it is not this thread's, else here. Where it cannot be entered (no access to
/// PID 1's namespaces), `f` runs here and [`locate`] makes do.
pub fn host_view<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let ino = |path: &str| fs::metadata(path).ok().map(|m| m.ino());
    let Ok(host) = File::open("/proc/1/ns/cgroup") else {
        return f();
    };
    let theirs = host.metadata().ok().map(|m| m.ino());
    if theirs.is_none() || theirs == ino("/proc/thread-self/ns/cgroup") {
        return f();
    }
    thread::scope(|scope| {
        let entered = thread::Builder::new()
            .name("chaos-cgroupns".into())
            .spawn_scoped(scope, move || {
                // This thread does this one job and ends: it never serves other work.
                if let Err(errno) = setns(&host, CloneFlags::CLONE_NEWCGROUP) {
                    tracing::debug!(%errno, "cannot enter PID 1's cgroup namespace");
                }
                f()
            });
        match entered {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(err) => panic!("cannot start a thread to read cgroups: {err}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const PODMAN: &str = "\
9:name=systemd:/libpod_parent/libpod-2e13
5:devices:/libpod_parent/libpod-2e13
4:memory:/libpod_parent/libpod-2e13
3:cpuset:/libpod_parent/libpod-2e13
2:cpuacct:/libpod_parent/libpod-2e13
1:cpu:/libpod_parent/libpod-2e13
0::/libpod_parent/libpod-2e13
";

    fn names(dirs: &[CgroupDir]) -> Vec<String> {
        dirs.iter()
            .map(|d| format!("{} {}", d.hierarchy, d.path.display()))
            .collect()
    }

    #[test]
    fn a_hybrid_host_gives_the_v1_hierarchies_of_the_limits_and_the_unified_one() {
        let dirs = dirs_in(HYBRID, PODMAN, 1).unwrap();
        assert_eq!(
            names(&dirs),
            [
                "cpu /sys/fs/cgroup/cpu/libpod_parent/libpod-2e13",
                "cpuacct /sys/fs/cgroup/cpuacct/libpod_parent/libpod-2e13",
                "cpuset /sys/fs/cgroup/cpuset/libpod_parent/libpod-2e13",
                "memory /sys/fs/cgroup/memory/libpod_parent/libpod-2e13",
                "cgroup2 /sys/fs/cgroup/unified/libpod_parent/libpod-2e13",
            ]
        );
    }

    #[test]
    fn cpu_and_cpuacct_mounted_together_are_one_hierarchy() {
        let mountinfo = "\
25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct
26 24 0:23 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
27 24 0:24 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
28 24 0:25 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset,clone_children
";
        let cgroup = "\
6:pids:/docker/abc
5:cpuset:/docker/abc
4:memory:/docker/abc
3:cpu,cpuacct:/docker/abc
1:name=systemd:/docker/abc
";
        assert_eq!(
            names(&dirs_in(mountinfo, cgroup, 1).unwrap()),
            [
                "cpu,cpuacct /sys/fs/cgroup/cpu,cpuacct/docker/abc",
                "memory /sys/fs/cgroup/memory/docker/abc",
                "cpuset /sys/fs/cgroup/cpuset/docker/abc",
            ]
        );
    }

    #[test]
    fn a_pure_v2_host_and_a_mount_of_part_of_the_hierarchy() {
        let pure = "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let cgroup = "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope\n";
        assert_eq!(
            names(&dirs_in(pure, cgroup, 1).unwrap()),
            ["cgroup2 /sys/fs/cgroup/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope"]
        );
        let part = "9 8 0:26 /kubepods.slice /host/cgroup ro - cgroup2 cgroup2 rw\n";
        assert_eq!(
            names(&dirs_in(part, cgroup, 1).unwrap()),
            ["cgroup2 /host/cgroup/kubepods-pod1.slice/cri-containerd-ab.scope"]
        );
        let err = dirs_in(part, "0::/system.slice/x.service\n", 1).unwrap_err();
        assert!(
            err.contains("cgroup2 cgroup `/system.slice/x.service`"),
            "{err}"
        );
    }

    #[test]
    fn namespace_relative_paths_below_the_root_are_arithmetic() {
        // An agent in a private cgroup namespace at /kubepods/podA/agent, with the host's
        // hierarchy mounted: the mount's root reads `/../../..`.
        let h = Hierarchy {
            controllers: Vec::new(),
            mount: "/host/cgroup".into(),
            root: "/../../..".into(),
        };
        assert_eq!(
            dir_of(&h, Path::new("/../../../system.slice/x.service")),
            Some(PathBuf::from("/host/cgroup/system.slice/x.service"))
        );
        // A pod next to the agent's climbs fewer levels: not arithmetic.
        assert_eq!(dir_of(&h, Path::new("/../../podB/c")), None);
        assert_eq!(split_up(Path::new("/../../podB/c")), (2, "podB/c".into()));
    }

    #[test]
    fn locate_finds_the_directory_holding_the_process_below_a_hidden_root() {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().to_path_buf();
        for (path, procs) in [
            ("kubepods/podA/agent", "11\n"),
            ("kubepods/podB/c", "42\n43\n"),
            ("other/podB/c", "7\n"),
        ] {
            fs::create_dir_all(mount.join(path)).unwrap();
            fs::write(mount.join(path).join("cgroup.procs"), procs).unwrap();
        }
        let h = Hierarchy {
            controllers: Vec::new(),
            mount: mount.clone(),
            root: "/../../..".into(),
        };
        assert_eq!(
            locate(&h, Path::new("/../../podB/c"), 43),
            Some(mount.join("kubepods/podB/c"))
        );
        assert_eq!(
            locate(&h, Path::new("/"), 11),
            Some(mount.join("kubepods/podA/agent"))
        );
        assert_eq!(locate(&h, Path::new("/../../podB/c"), 99), None);
    }

    #[test]
    fn mounts_of_other_filesystems_and_other_controllers_are_left_out() {
        let h = hierarchies(HYBRID);
        let names: Vec<String> = h.iter().map(Hierarchy::name).collect();
        assert_eq!(names, ["cpu", "cpuacct", "cpuset", "memory", "cgroup2"]);
        let v1_only = "25 24 0:22 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(
            names_of(&dirs_in(v1_only, "4:memory:/x\n0::/\n", 1).unwrap()),
            ["memory"]
        );
    }

    fn names_of(dirs: &[CgroupDir]) -> Vec<&str> {
        dirs.iter().map(|d| d.hierarchy.as_str()).collect()
    }
}
