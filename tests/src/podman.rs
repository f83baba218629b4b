//! Real containers for the tests, with Podman from Debian and no image: each container's root file
//! system is a folder holding `busybox-static` and its applet links, made by the test, so nothing
//! is pulled from a registry. Containers get no network of their own unless asked (`--network
//! none`), so no bridge or firewall rule of Podman's is left on the host; each is removed, with
//! its processes, when dropped.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

use crate::skip;

/// The busybox applets a container's root file system links.
const APPLETS: [&str; 9] = [
    "sh", "sleep", "cat", "httpd", "nc", "dd", "ls", "mkdir", "nslookup",
];

/// A root file system of busybox, in a temporary folder of its own.
pub struct Rootfs {
    dir: TempDir,
}

impl Rootfs {
    pub fn new() -> Rootfs {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::copy("/bin/busybox", bin.join("busybox")).expect("copy /bin/busybox");
        for applet in APPLETS {
            symlink("busybox", bin.join(applet)).unwrap();
        }
        for d in ["tmp", "proc", "sys", "dev", "etc", "data"] {
            fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        Rootfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for Rootfs {
    fn default() -> Rootfs {
        Rootfs::new()
    }
}

/// Whether Podman can run containers here: root, `podman`, `runc` and a static busybox. Says why
/// not (a skip) when it cannot.
pub fn available() -> bool {
    skip::unless_root("it runs containers with Podman")
        && skip::unless_installed(&["podman"], "podman")
        && skip::unless_installed(&["runc"], "runc")
        && skip::unless_installed(&["busybox"], "busybox-static")
        && is_static("/bin/busybox")
}

/// A busybox linked dynamically (Debian's `busybox` package) cannot run in a root file system
/// without a libc: `ldd` says whether it is static.
fn is_static(path: &str) -> bool {
    let out = Command::new("ldd").arg(path).output();
    let said = out
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default();
    if said.contains("not a dynamic executable") || said.contains("statically linked") {
        return true;
    }
    skip::skip(
        "busybox-static",
        &format!(
            "{path} is linked dynamically; install busybox-static (`apt-get install busybox-static`)"
        ),
    );
    false
}

/// One running container, removed with its processes when dropped.
pub struct Container {
    pub name: String,
    /// The full 64-digit id.
    pub id: String,
    /// Its first process, as the host sees it.
    pub pid: i32,
    _rootfs: Rootfs,
}

impl Container {
    /// Runs `argv` in a new container named `name` (unique per test), with no network, over a
    /// fresh busybox root file system; `extra` are more `podman run` options (`-v`, ...).
    pub fn run(name: &str, extra: &[&str], argv: &[&str]) -> Container {
        Container::run_with_files(name, extra, argv, &[])
    }

    /// [`Container::run`], with `files` (a path in the root file system, its text) written
    /// first: `etc/resolv.conf`, ...
    pub fn run_with_files(
        name: &str,
        extra: &[&str],
        argv: &[&str],
        files: &[(&str, &str)],
    ) -> Container {
        let rootfs = Rootfs::new();
        for (path, text) in files {
            fs::write(rootfs.path().join(path), text).expect("a file of the root file system");
        }
        let root = rootfs.path().display().to_string();
        let mut args = vec![
            "--runtime",
            "runc",
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--rootfs", &root]);
        args.extend_from_slice(argv);
        let out = Command::new("podman").args(&args).output().expect("podman");
        assert!(
            out.status.success(),
            "podman {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let pid = inspect(name, "{{.State.Pid}}")
            .parse()
            .expect("the container's pid");
        Container {
            name: name.to_string(),
            id,
            pid,
            _rootfs: rootfs,
        }
    }

    /// Its network namespace, by inode.
    pub fn netns(&self) -> u64 {
        std::os::unix::fs::MetadataExt::ino(
            &fs::metadata(format!("/proc/{}/ns/net", self.pid)).expect("the container's netns"),
        )
    }

    /// Wires the container (started with no network) to the test's own namespace `observer`: a
    /// veth pair, `10.77.<subnet>.1` on the observer's side, `10.77.<subnet>.2` (eth0) in the
    /// container. The pair goes with the container's namespace. Returns the container's address.
    pub fn wire_to(&self, observer: &str, subnet: u8) -> String {
        let outer = format!("cv{}x{subnet}", std::process::id() % 100_000);
        let pid = self.pid.to_string();
        let (near, far) = (
            format!("10.77.{subnet}.1/24"),
            format!("10.77.{subnet}.2/24"),
        );
        let run = |args: &[&str]| {
            let out = Command::new(args[0])
                .args(&args[1..])
                .output()
                .expect(args[0]);
            assert!(
                out.status.success(),
                "{}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "ip", "link", "add", &outer, "type", "veth", "peer", "name", "eth0", "netns", &pid,
        ]);
        run(&["ip", "link", "set", &outer, "netns", observer]);
        run(&["ip", "-n", observer, "addr", "add", &near, "dev", &outer]);
        run(&["ip", "-n", observer, "link", "set", &outer, "up"]);
        let inside = ["nsenter", "-t", &pid, "-n"];
        run(&[&inside[..], &["ip", "addr", "add", &far, "dev", "eth0"]].concat());
        run(&[&inside[..], &["ip", "link", "set", "eth0", "up"]].concat());
        run(&[&inside[..], &["ip", "link", "set", "lo", "up"]].concat());
        format!("10.77.{subnet}.2")
    }

    /// `podman exec` of `argv` in this container: its standard output and error.
    pub fn exec(&self, argv: &[&str]) -> String {
        let out = Command::new("podman")
            .args(["exec", &self.name])
            .args(argv)
            .output()
            .expect("podman exec");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `podman inspect -f FORMAT` of this container.
    pub fn inspect(&self, format: &str) -> String {
        inspect(&self.name, format)
    }

    /// Whether the container is still running.
    pub fn is_running(&self) -> bool {
        self.inspect("{{.State.Running}}") == "true"
    }

    /// Its cgroup's directory in hierarchy `which` (`cgroup2`, or a v1 controller: `cpuacct`,
    /// `memory`), from its `/proc/PID/cgroup` and this process's mounts; `None` when that
    /// hierarchy is not mounted.
    pub fn cgroup_dir(&self, which: &str) -> Option<std::path::PathBuf> {
        let cgroup = fs::read_to_string(format!("/proc/{}/cgroup", self.pid)).ok()?;
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
        let v2 = which == "cgroup2";
        let path = cgroup.lines().find_map(|line| {
            let mut f = line.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            let here = if v2 {
                controllers.is_empty()
            } else {
                controllers.split(',').any(|c| c == which)
            };
            here.then(|| path.trim_start_matches('/').to_string())
        })?;
        let mount = mountinfo.lines().find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let right: Vec<&str> = right.split_whitespace().collect();
            let here = match right.first() {
                Some(&"cgroup2") => v2,
                Some(&"cgroup") => !v2 && right.get(2)?.split(',').any(|o| o == which),
                _ => false,
            };
            here.then(|| left.split_whitespace().nth(4).map(str::to_string))?
        })?;
        Some(std::path::Path::new(&mount).join(path))
    }

    /// Our `chaos-stress-*` directories below its cgroup, in every hierarchy.
    pub fn stress_cgroups(&self) -> Vec<std::path::PathBuf> {
        ["cgroup2", "cpu", "cpuacct", "memory", "cpuset"]
            .iter()
            .filter_map(|h| self.cgroup_dir(h))
            .flat_map(|dir| fs::read_dir(dir).into_iter().flatten().flatten())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("chaos-stress-"))
            })
            .collect()
    }

    /// The CPU time its cgroup has used, in seconds: v1 `cpuacct.usage`, else cgroup2's
    /// `cpu.stat`.
    pub fn cpu_seconds(&self) -> f64 {
        if let Some(dir) = self.cgroup_dir("cpuacct")
            && let Ok(ns) = fs::read_to_string(dir.join("cpuacct.usage"))
        {
            return ns.trim().parse::<f64>().unwrap_or(0.0) / 1e9;
        }
        let stat = self
            .cgroup_dir("cgroup2")
            .and_then(|dir| fs::read_to_string(dir.join("cpu.stat")).ok())
            .unwrap_or_default();
        stat.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|us| us.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1e6
    }

    /// The memory its cgroup uses, in bytes: v1 `memory.usage_in_bytes`, else cgroup2's
    /// `memory.current`.
    pub fn memory_bytes(&self) -> u64 {
        let read = |which: &str, file: &str| {
            self.cgroup_dir(which)
                .and_then(|dir| fs::read_to_string(dir.join(file)).ok())
                .and_then(|t| t.trim().parse::<u64>().ok())
        };
        read("memory", "memory.usage_in_bytes")
            .or_else(|| read("cgroup2", "memory.current"))
            .unwrap_or(0)
    }

    /// Stops the container at once (its processes killed), leaving it defined.
    pub fn kill(&self) {
        let _ = Command::new("podman").args(["kill", &self.name]).output();
    }
}

fn inspect(name: &str, format: &str) -> String {
    let out = Command::new("podman")
        .args(["inspect", "-f", format, name])
        .output()
        .expect("podman inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0", &self.name])
            .output();
    }
}
