//! Where a path that a process sees (in its own mount namespace: a container's) is on the host:
//! the translation that lets `fill_disk` with `inside:` journal its fill file as the host sees
//! it, so the file is deleted even after the container is gone.
//!
//! From `/proc/PID/mountinfo`, the mount holding the path in the process's namespace gives the
//! filesystem (device) and the path inside that filesystem; a mount of the same device in the
//! agent's namespace whose root contains that path gives the host's path. The result is checked
//! by comparing the device and inode of both ends, so a wrong guess is an error, never a fill of
//! the wrong directory. A path on a filesystem the host has not mounted (a tmpfs of the
//! container's own) has no host path.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// One line of `/proc/PID/mountinfo`, the fields used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the filesystem.
    pub device: String,
    /// The directory of the filesystem that is mounted here (`/` for its whole tree).
    pub root: PathBuf,
    /// Where it is mounted, in that namespace.
    pub point: PathBuf,
}

/// The mounts of a `mountinfo` text, in its order (later mounts over earlier ones).
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            Some(Mount {
                device: fields.get(2)?.to_string(),
                root: PathBuf::from(unescape(fields.get(3)?)),
                point: PathBuf::from(unescape(fields.get(4)?)),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\040`, `\011`, `\012`, `\134`.
pub(crate) fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(code) = field
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(code);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` below `base`, as a relative path; `None` when it is not below it (by components).
fn below(path: &Path, base: &Path) -> Option<PathBuf> {
    path.strip_prefix(base).ok().map(Path::to_path_buf)
}

/// The mount holding `path`: the last one (mounted over the others) whose point contains it.
fn holding<'m>(mounts: &'m [Mount], path: &Path) -> Option<&'m Mount> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.point))
        .max_by_key(|m| m.point.components().count())
}

/// Where `path` of a namespace whose mounts are `theirs` is in the namespace whose mounts are
/// `ours`; pure, so it is unit-tested. `None` when no mount of ours reaches it.
pub fn translate(theirs: &[Mount], ours: &[Mount], path: &Path) -> Option<PathBuf> {
    let mount = holding(theirs, path)?;
    let in_fs = mount.root.join(below(path, &mount.point)?);
    ours.iter()
        .filter(|m| m.device == mount.device)
        .filter_map(|m| Some((m, below(&in_fs, &m.root)?)))
        // The mount whose root is deepest is the most direct way in; the shortest mount point
        // among equals.
        .max_by_key(|(m, _)| {
            (
                m.root.components().count(),
                usize::MAX - m.point.components().count(),
            )
        })
        .map(|(m, rest)| m.point.join(rest))
}

/// The host's path (this process's mount namespace) of directory `path` as process `pid` sees it.
pub fn host_path(pid: i32, path: &Path) -> Result<PathBuf, String> {
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "`{}` must be an absolute path without `..`",
            path.display()
        ));
    }
    let read =
        |file: &str| fs::read_to_string(file).map_err(|err| format!("cannot read {file}: {err}"));
    let theirs = parse(&read(&format!("/proc/{pid}/mountinfo"))?);
    let ours = parse(&read("/proc/self/mountinfo")?);
    let seen = format!("/proc/{pid}/root{}", path.display());
    let there = fs::metadata(&seen).map_err(|err| format!("`{}`: {err}", path.display()))?;
    if !there.is_dir() {
        return Err(format!("`{}` is not a directory", path.display()));
    }
    let host = translate(&theirs, &ours, path).ok_or_else(|| {
        format!(
            "`{}` is on a filesystem the host has not mounted (a tmpfs of the container's own?); `fill_disk` with `inside:` fills volumes the host mounts",
            path.display()
        )
    })?;
    let here = fs::metadata(&host).map_err(|err| format!("`{}`: {err}", host.display()))?;
    if (here.dev(), here.ino()) != (there.dev(), there.ino()) {
        return Err(format!(
            "`{}` seemed to be `{}` on the host, but they are not the same directory",
            path.display(),
            host.display()
        ));
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
30 22 0:27 / /sys/fs/cgroup rw - tmpfs tmpfs rw
41 22 254:1 /var/lib/containers/storage/volumes /srv/volumes rw - ext4 /dev/vda1 rw
60 22 0:52 / /var/lib/containers/storage/overlay/abc/merged rw - overlay overlay rw
";

    const CONTAINER: &str = "\
700 650 0:52 / / rw,relatime - overlay overlay rw
701 700 254:1 /var/lib/containers/storage/volumes/pgdata/_data /var/lib/postgresql/data rw - ext4 /dev/vda1 rw
702 700 0:90 / /tmp rw - tmpfs tmpfs rw
703 700 254:1 /var/lib/my\\040data /mnt/with\\040space rw - ext4 /dev/vda1 rw
";

    fn check(path: &str, expect: Option<&str>) {
        let got = translate(&parse(CONTAINER), &parse(HOST), Path::new(path));
        assert_eq!(got.as_deref(), expect.map(Path::new), "{path}");
    }

    #[test]
    fn a_volume_is_found_where_the_host_mounts_its_device() {
        // The host reaches the volume both through / and through /srv/volumes: the mount whose
        // root is deepest (the bind of the volumes' folder) is chosen.
        check(
            "/var/lib/postgresql/data",
            Some("/srv/volumes/pgdata/_data"),
        );
        check(
            "/var/lib/postgresql/data/base",
            Some("/srv/volumes/pgdata/_data/base"),
        );
        // The container's root file system: its overlay, mounted on the host too.
        check(
            "/app",
            Some("/var/lib/containers/storage/overlay/abc/merged/app"),
        );
        // Escaped spaces.
        check("/mnt/with space/x", Some("/var/lib/my data/x"));
    }

    #[test]
    fn a_filesystem_the_host_has_not_mounted_has_no_host_path() {
        check("/tmp", None);
        check("/tmp/cache", None);
    }

    #[test]
    fn our_own_process_translates_to_itself() {
        let me = std::process::id() as i32;
        let dir = std::env::temp_dir();
        let dir = dir.canonicalize().unwrap();
        assert_eq!(host_path(me, &dir).unwrap(), dir);
        assert!(host_path(me, Path::new("relative")).is_err());
        assert!(host_path(me, Path::new("/no/such/dir/here")).is_err());
    }
}
