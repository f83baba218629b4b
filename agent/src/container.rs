//! Which container a process runs in, read from its cgroup path and, for names, from the
//! runtimes' own state on disk: no runtime daemon is asked, so a selector works while dockerd or
//! containerd is down (which is when a game day may want it most).
//!
//! Every runtime names a container's cgroup after the container's 64-hex-digit id, in a few
//! shapes ([`from_cgroup_path`]):
//!
//! | runtime | systemd cgroup driver | cgroupfs driver |
//! |---|---|---|
//! | Docker | `…/docker-<id>.scope` | `/docker/<id>` |
//! | Podman | `…/libpod-<id>.scope` | `/libpod_parent/libpod-<id>` |
//! | containerd (Kubernetes' CRI) | `…/kubepods-…-pod<uid>.slice/cri-containerd-<id>.scope` | `/kubepods/<qos>/pod<uid>/<id>` |
//! | CRI-O | `…/crio-<id>.scope` | `/kubepods/<qos>/pod<uid>/<id>` |
//!
//! A runtime's helper processes have cgroups of their own (`libpod-conmon-<id>.scope`,
//! `crio-conmon-<id>.scope`): they are not in the container, and are not matched.
//!
//! Names ([`names_of`]): Docker keeps `"Name": "/web"` in
//! `/var/lib/docker/containers/<id>/config.v2.json`; Podman keeps `names` for each container in
//! `/var/lib/containers/storage/overlay-containers/containers.json`; on a Kubernetes node the
//! kubelet links each container's log as `/var/log/containers/<pod>_<namespace>_<name>-<id>.log`,
//! whatever the runtime. A container whose name is found nowhere has only its id.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

/// The runtime that made a container, as its cgroup path tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Docker,
    Podman,
    Containerd,
    CriO,
    /// A Kubernetes pod's container under the cgroupfs driver, whose path does not name the
    /// runtime (`/kubepods/<qos>/pod<uid>/<id>`).
    Kubernetes,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Kubernetes => "kubernetes",
        }
    }
}

/// A container, as a process's cgroup path names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    pub runtime: Runtime,
    /// The full id: 64 lowercase hex digits.
    pub id: String,
    /// The Kubernetes pod's UID (with dashes, as `kubectl get pod -o yaml` shows it), when the
    /// container is a pod's.
    pub pod_uid: Option<String>,
}

impl ContainerRef {
    /// The id's first 12 digits, as `docker ps` shows it.
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
}

/// The container a cgroup path (as `/proc/PID/cgroup` shows it) belongs to, if any: its last
/// component that names a container, so a container nested in another is the inner one.
pub fn from_cgroup_path(path: &str) -> Option<ContainerRef> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let pod_uid = parts.iter().rev().find_map(|p| pod_uid_of(p));
    parts.iter().rev().find_map(|part| {
        let (runtime, id) = container_of(part, &parts)?;
        Some(ContainerRef {
            runtime,
            id: id.to_string(),
            pod_uid: pod_uid.clone(),
        })
    })
}

/// The container one path component names, given all of them (for the cgroupfs shapes, which
/// the parent tells apart).
fn container_of<'a>(part: &'a str, parts: &[&str]) -> Option<(Runtime, &'a str)> {
    let scoped = |prefix: &str| {
        part.strip_prefix(prefix)
            .map(|rest| rest.strip_suffix(".scope").unwrap_or(rest))
            .filter(|id| is_full_id(id))
    };
    if let Some(id) = scoped("docker-") {
        return Some((Runtime::Docker, id));
    }
    if let Some(id) = scoped("libpod-") {
        return Some((Runtime::Podman, id));
    }
    if let Some(id) = scoped("cri-containerd-") {
        return Some((Runtime::Containerd, id));
    }
    if let Some(id) = scoped("crio-") {
        return Some((Runtime::CriO, id));
    }
    if is_full_id(part) {
        // A bare id: Docker's cgroupfs driver (`/docker/<id>`), or a pod's container under the
        // cgroupfs driver (`…/pod<uid>/<id>`).
        let index = parts.iter().position(|p| *p == part)?;
        let parent = index.checked_sub(1).map(|i| parts[i]);
        return match parent {
            Some("docker") => Some((Runtime::Docker, part)),
            Some(p) if p.starts_with("pod") && pod_uid_of(p).is_some() => {
                Some((Runtime::Kubernetes, part))
            }
            _ => None,
        };
    }
    None
}

/// The pod UID a path component names: `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid>.slice`
/// (systemd, the UID's dashes written as underscores).
fn pod_uid_of(part: &str) -> Option<String> {
    let rest = part.strip_suffix(".slice").unwrap_or(part);
    let at = rest.rfind("pod")?;
    if at > 0 && !rest[..at].ends_with('-') {
        return None;
    }
    let uid = rest[at + 3..].replace('_', "-");
    let plain = uid.len() == 36
        && uid.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    plain.then(|| uid.to_ascii_lowercase())
}

fn is_full_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `given` (from a scenario's `container:`) is an id prefix rather than a name: 12 to 64
/// lowercase hex digits.
pub fn is_id_prefix(given: &str) -> bool {
    (12..=64).contains(&given.len()) && given.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The cgroup path `/proc/PID/cgroup` gives: the unified (`0::`) line where there is one, else
/// the `name=systemd` line (a cgroup v1 host, or a hybrid one whose unified line says only `/`),
/// else the first line's.
pub fn cgroup_path(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|text| cgroup_path_in(&text))
}

/// [`cgroup_path`] of the text of a `/proc/PID/cgroup` file.
pub fn cgroup_path_in(text: &str) -> Option<String> {
    let lines: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let _id = fields.next()?;
            Some((fields.next()?, fields.next()?))
        })
        .collect();
    let unified = lines
        .iter()
        .find(|(controllers, path)| controllers.is_empty() && *path != "/");
    let systemd = lines.iter().find(|(c, _)| *c == "name=systemd");
    unified
        .or(systemd)
        .or(lines.iter().find(|(c, _)| c.is_empty()))
        .or(lines.first())
        .map(|(_, path)| path.to_string())
}

/// Where the runtimes keep their state; the real folders but in tests.
#[derive(Debug, Clone)]
pub struct StateDirs {
    /// Docker's `containers/` folder.
    pub docker: std::path::PathBuf,
    /// Podman's (root) `containers.json`.
    pub podman: std::path::PathBuf,
    /// The kubelet's `/var/log/containers`.
    pub kubelet_logs: std::path::PathBuf,
}

impl Default for StateDirs {
    fn default() -> StateDirs {
        StateDirs {
            docker: "/var/lib/docker/containers".into(),
            podman: "/var/lib/containers/storage/overlay-containers/containers.json".into(),
            kubelet_logs: "/var/log/containers".into(),
        }
    }
}

/// The names containers are known by, from the runtimes' state on disk, each file read at most
/// once (a lookup among a hundred containers must not parse Podman's state a hundred times).
#[derive(Debug, Default)]
pub struct Names {
    dirs: StateDirs,
    /// Podman's `containers.json`, by id; read on first use.
    podman: Option<HashMap<String, Vec<String>>>,
    /// The kubelet's log links, by id; listed on first use.
    kubelet: Option<HashMap<String, Vec<String>>>,
}

impl Names {
    pub fn new(dirs: StateDirs) -> Names {
        Names {
            dirs,
            podman: None,
            kubelet: None,
        }
    }

    /// The names `container` is known by: Docker's and Podman's names, and on a Kubernetes node
    /// `<name>`, `<pod>/<name>` and `<namespace>/<pod>/<name>`. Empty when none is found (the
    /// container is then selected by its id only).
    pub fn of(&mut self, container: &ContainerRef) -> Vec<String> {
        let mut names = Vec::new();
        match container.runtime {
            Runtime::Docker => names.extend(docker_name(&self.dirs.docker, &container.id)),
            Runtime::Podman => {
                let file = &self.dirs.podman;
                let index = self.podman.get_or_insert_with(|| podman_index(file));
                names.extend(index.get(&container.id).cloned().unwrap_or_default());
            }
            _ => {}
        }
        if container.pod_uid.is_some() || container.runtime != Runtime::Podman {
            let dir = &self.dirs.kubelet_logs;
            let index = self.kubelet.get_or_insert_with(|| kubelet_index(dir));
            names.extend(index.get(&container.id).cloned().unwrap_or_default());
        }
        names
    }
}

/// [`Names::of`] for one container, reading what it needs.
pub fn names_of(container: &ContainerRef, dirs: &StateDirs) -> Vec<String> {
    Names::new(dirs.clone()).of(container)
}

fn docker_name(dir: &Path, id: &str) -> Option<String> {
    let text = fs::read_to_string(dir.join(id).join("config.v2.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    let name = config.get("Name")?.as_str()?;
    Some(name.trim_start_matches('/').to_string())
}

/// Podman's names of every container, by id.
fn podman_index(file: &Path) -> HashMap<String, Vec<String>> {
    let Ok(text) = fs::read_to_string(file) else {
        return HashMap::new();
    };
    let Ok(serde_json::Value::Array(containers)) = serde_json::from_str(&text) else {
        return HashMap::new();
    };
    containers
        .iter()
        .filter_map(|c| {
            let id = c.get("id")?.as_str()?.to_string();
            let names = c
                .get("names")?
                .as_array()?
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect();
            Some((id, names))
        })
        .collect()
}

/// From the kubelet's log links, `<pod>_<namespace>_<name>-<id>.log`: each container's names, by
/// id.
fn kubelet_index(dir: &Path) -> HashMap<String, Vec<String>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return HashMap::new();
    };
    let mut index = HashMap::new();
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(head) = file.to_str().and_then(|f| f.strip_suffix(".log")) else {
            continue;
        };
        let Some((head, id)) = head.rsplit_once('-') else {
            continue;
        };
        if !is_full_id(id) {
            continue;
        }
        let mut parts = head.splitn(3, '_');
        if let (Some(pod), Some(namespace), Some(name)) = (parts.next(), parts.next(), parts.next())
        {
            index.insert(
                id.to_string(),
                vec![
                    name.to_string(),
                    format!("{pod}/{name}"),
                    format!("{namespace}/{pod}/{name}"),
                ],
            );
        }
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c0d1e4b5a6978c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6";
    const UID: &str = "5b6c7d8e-1f2a-4b3c-9d8e-7f6a5b4c3d2e";

    fn check(path: &str, expect: Option<(Runtime, Option<&str>)>) {
        let got = from_cgroup_path(path);
        match expect {
            None => assert_eq!(got, None, "{path}"),
            Some((runtime, uid)) => {
                let got = got.unwrap_or_else(|| panic!("no container in {path}"));
                assert_eq!(got.runtime, runtime, "{path}");
                assert_eq!(got.id, ID, "{path}");
                assert_eq!(got.pod_uid.as_deref(), uid, "{path}");
                assert_eq!(got.short_id(), "3f2a9c0d1e4b");
            }
        }
    }

    #[test]
    fn every_runtime_and_driver_shape_names_its_container() {
        let sys_uid = UID.replace('-', "_");
        check(
            &format!("/system.slice/docker-{ID}.scope"),
            Some((Runtime::Docker, None)),
        );
        check(&format!("/docker/{ID}"), Some((Runtime::Docker, None)));
        check(
            &format!("/machine.slice/libpod-{ID}.scope"),
            Some((Runtime::Podman, None)),
        );
        check(
            &format!("/libpod_parent/libpod-{ID}"),
            Some((Runtime::Podman, None)),
        );
        check(
            &format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
            ),
            Some((Runtime::Podman, None)),
        );
        check(
            &format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{sys_uid}.slice/cri-containerd-{ID}.scope"
            ),
            Some((Runtime::Containerd, Some(UID))),
        );
        check(
            &format!("/kubepods.slice/kubepods-pod{sys_uid}.slice/crio-{ID}.scope"),
            Some((Runtime::CriO, Some(UID))),
        );
        check(
            &format!("/kubepods/besteffort/pod{UID}/{ID}"),
            Some((Runtime::Kubernetes, Some(UID))),
        );
    }

    #[test]
    fn hosts_services_and_runtime_helpers_are_no_container() {
        check("/system.slice/nginx.service", None);
        check("/user.slice/user-1000.slice/session-3.scope", None);
        check("/", None);
        check(&format!("/machine.slice/libpod-conmon-{ID}.scope"), None);
        check(&format!("/system.slice/crio-conmon-{ID}.scope"), None);
        // A bare id under a parent that names no runtime is not guessed at.
        check(&format!("/mystery/{ID}"), None);
        check("/system.slice/docker-3f2a.scope", None);
    }

    #[test]
    fn the_unified_line_wins_then_systemds() {
        let hybrid = format!(
            "12:pids:/system.slice/docker-{ID}.scope\n1:name=systemd:/system.slice/docker-{ID}.scope\n0::/system.slice/docker-{ID}.scope\n"
        );
        assert_eq!(
            cgroup_path_in(&hybrid).unwrap(),
            format!("/system.slice/docker-{ID}.scope")
        );
        let v1 = "4:memory:/docker/x\n1:name=systemd:/system.slice/nginx.service\n";
        assert_eq!(cgroup_path_in(v1).unwrap(), "/system.slice/nginx.service");
        assert_eq!(cgroup_path_in("0::/init.scope\n").unwrap(), "/init.scope");
        assert_eq!(cgroup_path_in(""), None);
    }

    #[test]
    fn ids_and_names_are_told_apart() {
        assert!(is_id_prefix("3f2a9c0d1e4b"));
        assert!(is_id_prefix(ID));
        assert!(!is_id_prefix("3f2a9c0d1e4"), "11 digits are a name");
        assert!(!is_id_prefix("checkout"));
        assert!(!is_id_prefix("deadbeefcafe-web"));
    }

    #[test]
    fn names_come_from_each_runtimes_state_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = StateDirs {
            docker: dir.path().join("docker"),
            podman: dir.path().join("containers.json"),
            kubelet_logs: dir.path().join("logs"),
        };
        fs::create_dir_all(dirs.docker.join(ID)).unwrap();
        fs::write(
            dirs.docker.join(ID).join("config.v2.json"),
            r#"{"ID":"x","Name":"/checkout","State":{}}"#,
        )
        .unwrap();
        fs::write(
            &dirs.podman,
            format!(
                r#"[{{"id":"{ID}","names":["web-1"],"image":"i"}},{{"id":"other","names":["x"]}}]"#
            ),
        )
        .unwrap();
        fs::create_dir_all(&dirs.kubelet_logs).unwrap();
        fs::write(
            dirs.kubelet_logs
                .join(format!("checkout-7d9f_shop_app-{ID}.log")),
            "",
        )
        .unwrap();
        let of = |runtime, pod_uid: Option<&str>| ContainerRef {
            runtime,
            id: ID.to_string(),
            pod_uid: pod_uid.map(str::to_string),
        };
        assert_eq!(names_of(&of(Runtime::Docker, None), &dirs)[0], "checkout");
        assert_eq!(names_of(&of(Runtime::Podman, None), &dirs), ["web-1"]);
        assert_eq!(
            names_of(&of(Runtime::Containerd, Some(UID)), &dirs),
            ["app", "checkout-7d9f/app", "shop/checkout-7d9f/app"]
        );
        let unknown = ContainerRef {
            id: "0".repeat(64),
            ..of(Runtime::CriO, Some(UID))
        };
        assert!(names_of(&unknown, &dirs).is_empty());
    }
}
