//! `fill_disk`: fills the filesystem holding a directory with one file, `<dir>/.chaos-fill-<id>`,
//! allocated with `fallocate` (less 1 MiB, which ext4 needs for extent metadata) and topped up with
//! zeros. The revert deletes the file. Usage is counted as `df` does: used / (used + available).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{FallocateFlags, fallocate};
use nix::sys::statvfs::statvfs;

use super::{Context, Injected, Kind, Resolved, Undo, Undone, other_kinds_undo};
use crate::error::FaultError;
use crate::server::policy::{Policy, Refusal};
use crate::spec::{FaultKind, FillAmount, FillDiskSpec};

impl FillDiskSpec {
    /// The directory to fill as the host sees it: `path`, or with `inside:` where `path` of
    /// those processes is on the host, as [`Kind::resolve`] found it for this request.
    fn host_dir<'a>(&'a self, at: &'a Resolved) -> Result<&'a Path, FaultError> {
        match (&self.inside, &at.fill_dir) {
            (None, _) => Ok(&self.path),
            (Some(_), Some(dir)) => Ok(dir),
            (Some(selector), None) => Err(FaultError::Inside {
                reason: format!(
                    "where `{}` of {selector} is on this host was not looked up before use",
                    self.path.display()
                ),
            }),
        }
    }
}

impl Kind for FillDiskSpec {
    fn support() -> Result<&'static str, &'static str> {
        Ok("fallocate")
    }

    /// With `inside:`, where `path` of those processes is on the host
    /// ([`super::inside::host_path`]): the directory the policy must allow and the plan fills.
    fn resolve(&self) -> Result<Resolved, FaultError> {
        Ok(Resolved {
            fill_dir: match &self.inside {
                None => None,
                Some(selector) => Some(super::inside::host_path(selector, &self.path)?),
            },
            ..Resolved::default()
        })
    }

    fn check(&self, at: &Resolved) -> Result<(), FaultError> {
        bytes_to_add(self.host_dir(at)?, self.amount).map(drop)
    }

    fn plan(&self, fault_id: &str, _seed: u64, at: &Resolved) -> Result<Undo, FaultError> {
        plan(fault_id, self.host_dir(at)?, self.amount)
    }

    fn inject(&self, _fault_id: &str, undo: &Undo, _ctx: &Context) -> Result<Injected, FaultError> {
        let Undo::FillDisk { file, bytes } = undo else {
            return Err(other_kinds_undo(FaultKind::FillDisk));
        };
        // The planned file's folder: the host's view of the path, found once at plan time.
        let dir = file.parent().unwrap_or(&self.path);
        inject(dir, self.amount, file, *bytes)
    }

    /// With `inside:`, the host's path is what `fill_paths` must allow (when it was found; else
    /// the plan fails anyway).
    fn check_policy(&self, policy: &Policy, at: &Resolved) -> Result<(), Refusal> {
        match self.host_dir(at) {
            Ok(dir) => policy.check_fill_path(dir),
            Err(_) => Ok(()),
        }
    }
}

impl fmt::Display for FillDiskSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let amount = match self.amount {
            FillAmount::Usage(p) => format!("to {p}% used"),
            FillAmount::Size(b) => format!("with {b} bytes"),
            FillAmount::Leave(b) => format!("leaving {b} bytes free"),
        };
        write!(f, "fill_disk {} {amount}", self.path.display())?;
        if let Some(inside) = &self.inside {
            write!(f, ", as {inside} sees it")?;
        }
        Ok(())
    }
}

const MIB: u64 = 1024 * 1024;

/// A filesystem's space as `df` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Bytes in use: (blocks - free) * fragment size.
    pub used: u64,
    /// Bytes available to unprivileged users: available blocks * fragment size.
    pub avail: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.used + self.avail
    }

    /// `df`'s Use%, unrounded.
    pub fn percent(&self) -> f64 {
        if self.total() == 0 {
            return 100.0;
        }
        self.used as f64 * 100.0 / self.total() as f64
    }

    /// How far a result may be from the aim and still count as reached: 1% or 1 MiB.
    fn tolerance(&self) -> u64 {
        (self.total() / 100).max(MIB)
    }
}

/// The usage of the filesystem holding `path`.
#[allow(clippy::unnecessary_cast)] // the statvfs field types differ between targets
pub fn usage(path: &Path) -> Result<Usage, FaultError> {
    let stat = statvfs(path).map_err(|source| FaultError::Statvfs {
        path: path.to_path_buf(),
        source,
    })?;
    let frsize = stat.fragment_size() as u64;
    let blocks = stat.blocks() as u64;
    let free = stat.blocks_free() as u64;
    let avail = stat.blocks_available() as u64;
    Ok(Usage {
        used: blocks.saturating_sub(free) * frsize,
        avail: avail * frsize,
    })
}

/// How many bytes the fill file must hold for `amount`; an error when that is nothing or too much.
pub fn bytes_to_add(path: &Path, amount: FillAmount) -> Result<u64, FaultError> {
    if !path.is_dir() {
        return Err(FaultError::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    let now = usage(path)?;
    let refuse = |reason: String| FaultError::WouldOverfill {
        path: path.to_path_buf(),
        reason,
    };
    match amount {
        FillAmount::Usage(p) => {
            if !(p > 0.0 && p <= 100.0) {
                return Err(refuse(format!(
                    "a usage of {p}% is not between 0% and 100%"
                )));
            }
            let aim = (p / 100.0 * now.total() as f64).round() as u64;
            if aim <= now.used {
                return Err(refuse(format!(
                    "it is already {:.1}% used, above the {p}% asked",
                    now.percent()
                )));
            }
            Ok((aim - now.used).min(now.avail))
        }
        FillAmount::Size(bytes) => {
            if bytes == 0 {
                Err(refuse("a size of 0 bytes fills nothing".to_string()))
            } else if bytes > now.avail {
                Err(refuse(format!(
                    "{} asked but only {} is available; ask for less",
                    human(bytes),
                    human(now.avail)
                )))
            } else {
                Ok(bytes)
            }
        }
        FillAmount::Leave(bytes) => {
            if bytes >= now.avail {
                Err(refuse(format!(
                    "only {} is available, not more than the {} to leave",
                    human(now.avail),
                    human(bytes)
                )))
            } else {
                Ok(now.avail - bytes)
            }
        }
    }
}

/// The fill file a fault writes into `dir`.
pub fn fill_file(dir: &Path, fault_id: &str) -> PathBuf {
    dir.join(format!(".chaos-fill-{fault_id}"))
}

fn plan(fault_id: &str, dir: &Path, amount: FillAmount) -> Result<Undo, FaultError> {
    let bytes = bytes_to_add(dir, amount)?;
    let file = fill_file(dir, fault_id);
    if file.symlink_metadata().is_ok() {
        return Err(FaultError::FillFileExists { path: file });
    }
    Ok(Undo::FillDisk { file, bytes })
}

fn inject(dir: &Path, amount: FillAmount, file: &Path, bytes: u64) -> Result<Injected, FaultError> {
    let before = usage(dir)?;
    let to_full = matches!(amount, FillAmount::Usage(p) if p >= 100.0)
        || matches!(amount, FillAmount::Leave(0));
    let handle = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(handle) => handle,
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            return Err(FaultError::FillFileExists {
                path: file.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(FaultError::Fill {
                path: file.to_path_buf(),
                source,
            });
        }
    };
    let mechanism = match fill(&handle, bytes, to_full) {
        Ok(mechanism) => mechanism,
        Err(source) => {
            drop(handle);
            let _ = fs::remove_file(file);
            return Err(FaultError::Fill {
                path: file.to_path_buf(),
                source,
            });
        }
    };
    drop(handle);

    let after = usage(dir)?;
    let size = fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let tolerance = after.tolerance();
    let (size_ok, aim_ok, aim) = match amount {
        FillAmount::Usage(p) => (
            size == bytes || to_full,
            (after.percent() - p).abs() <= 1.0,
            format!("{p}% used"),
        ),
        FillAmount::Size(b) => (
            size == b,
            after.used.saturating_sub(before.used).abs_diff(b) <= tolerance,
            format!("{} more used", human(b)),
        ),
        FillAmount::Leave(b) => (
            size == bytes || to_full,
            after.avail.abs_diff(b) <= tolerance,
            format!("{} left available", human(b)),
        ),
    };
    let mut detail = format!(
        "wrote `{}` ({}); `{}` is now {:.1}% used with {} available",
        file.display(),
        human(size),
        dir.display(),
        after.percent(),
        human(after.avail)
    );
    if !(size_ok && aim_ok) {
        detail.push_str(&format!("; the aim was {aim} with a {} file", human(bytes)));
    }
    Ok(Injected {
        mechanism: mechanism.to_string(),
        affected: vec![format!("{} ({})", file.display(), human(size))],
        verified: size_ok && aim_ok,
        detail,
        undo: None,
    })
}

/// Fills `file` with `bytes`: fallocate all but the last MiB, then zeros. With `to_full`, running
/// out of space while writing the zeros is the goal, not an error.
fn fill(file: &File, bytes: u64, to_full: bool) -> io::Result<&'static str> {
    let mut mechanism = "fallocate";
    let mut offset = 0;
    if bytes > MIB {
        let len = bytes - MIB;
        match fallocate(file, FallocateFlags::empty(), 0, len as libc::off_t) {
            Ok(()) => offset = len,
            Err(Errno::EOPNOTSUPP) => mechanism = "write",
            Err(errno) => return Err(io::Error::from(errno)),
        }
    } else {
        mechanism = "write";
    }
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    let zeros = vec![0u8; MIB as usize];
    while offset < bytes {
        let n = (bytes - offset).min(MIB) as usize;
        match file.write(&zeros[..n]) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(written) => offset += written as u64,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if to_full && err.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(err) => return Err(err),
        }
    }
    match file.sync_data() {
        Err(err) if to_full && err.raw_os_error() == Some(libc::ENOSPC) => Ok(mechanism),
        other => other.map(|()| mechanism),
    }
}

pub(super) fn revert(file: &Path, bytes: u64) -> Result<Undone, FaultError> {
    let mut detail = match fs::remove_file(file) {
        Ok(()) => format!("deleted `{}` ({})", file.display(), human(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            format!("`{}` was already gone", file.display())
        }
        Err(source) => {
            return Err(FaultError::Unfill {
                path: file.to_path_buf(),
                source,
            });
        }
    };
    let verified = file.symlink_metadata().is_err();
    if let Some(dir) = file.parent()
        && let Ok(now) = usage(dir)
    {
        detail.push_str(&format!(
            "; `{}` is now {:.1}% used",
            dir.display(),
            now.percent()
        ));
    }
    Ok(Undone { verified, detail })
}

/// `512 MiB`, `1.5 GiB`, `300 B`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ProcessSelector;

    #[test]
    fn with_inside_the_policy_and_the_plan_both_take_the_directory_resolved_once() {
        let dir = tempfile::tempdir().unwrap();
        let spec = FillDiskSpec {
            path: "/data".into(),
            amount: FillAmount::Size(1),
            inside: Some(ProcessSelector::Container("checkout".into())),
        };
        let at = Resolved {
            fill_dir: Some(dir.path().to_path_buf()),
            ..Resolved::default()
        };
        let allowed = format!("fill_paths: [{}]\n", dir.path().display());
        let policy = Policy::parse(&allowed).unwrap();
        assert!(spec.check_policy(&policy, &at).is_ok());
        let elsewhere = Policy::parse("fill_paths: [/mnt/chaos-elsewhere]\n").unwrap();
        let refusal = spec.check_policy(&elsewhere, &at).unwrap_err().0;
        assert!(
            refusal.contains(&dir.path().display().to_string()),
            "{refusal}"
        );
        let Undo::FillDisk { file, .. } = spec.plan("f1", 0, &at).unwrap() else {
            panic!("a fill plans a fill");
        };
        assert_eq!(file.parent(), Some(dir.path()));
        // Not looked up: refused rather than taken for the host's own `/data`.
        let err = spec.plan("f1", 0, &Resolved::default()).unwrap_err();
        assert!(err.to_string().contains("was not looked up"), "{err}");
    }

    #[test]
    fn sizes_read_like_df() {
        assert_eq!(human(300), "300 B");
        assert_eq!(human(512 * MIB), "512 MiB");
        assert_eq!(human(3 * MIB / 2 * 1024), "1.5 GiB");
    }

    #[test]
    fn a_file_is_not_a_directory_to_fill() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = bytes_to_add(file.path(), FillAmount::Size(1)).unwrap_err();
        assert!(matches!(err, FaultError::NotADirectory { .. }), "{err}");
        let err = bytes_to_add(Path::new("/nonexistent/x"), FillAmount::Size(1)).unwrap_err();
        assert!(
            err.to_string().contains("is not an existing directory"),
            "{err}"
        );
    }

    #[test]
    fn impossible_amounts_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let now = usage(dir.path()).unwrap();
        let err = bytes_to_add(dir.path(), FillAmount::Size(now.avail + 1)).unwrap_err();
        assert!(err.to_string().contains("ask for less"), "{err}");
        let err = bytes_to_add(dir.path(), FillAmount::Leave(now.avail)).unwrap_err();
        assert!(err.to_string().contains("to leave"), "{err}");
        let err = bytes_to_add(dir.path(), FillAmount::Usage(0.0)).unwrap_err();
        assert!(err.to_string().contains("not between"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
