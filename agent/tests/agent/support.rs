//! Test helpers: spawned processes that clean up after themselves, and a tmpfs mounted for one
//! test. `eventually` and the skip rule are the lab library's (`chaos_tests`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use agent::process;
use chaos_tests::{eventually, skip};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique number for this test process, usable as a `sleep` argument: `30.PPPPPPNNNN`.
pub fn unique_seconds() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("30.{:07}{n:04}", std::process::id())
}

/// A child process, killed and reaped when dropped.
pub struct Spawned {
    pub child: Child,
    pub pid: i32,
}

impl Spawned {
    pub fn new(argv: &[&str]) -> Spawned {
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("failed to spawn {argv:?}: {err}"));
        let pid = child.id() as i32;
        // The pid exists at once, but it may still be our fork, not yet the new program (or it may
        // already have exited).
        eventually(Duration::from_secs(5), &format!("{argv:?} started"), || {
            process::read(pid).is_some_and(|p| {
                p.state == 'Z' || p.cmdline.first().map(String::as_str) == Some(argv[0])
            })
        });
        Spawned { child, pid }
    }

    /// `sleep 30.<unique>`; returns the process and its unique argument.
    pub fn sleep() -> (Spawned, String) {
        let arg = unique_seconds();
        (Spawned::new(&["sleep", &arg]), arg)
    }

    pub fn state(&self) -> Option<char> {
        process::read(self.pid).map(|p| p.state)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tmpfs of `size_mib` MiB mounted on a fresh temp dir, unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (the test skipped, see `chaos_tests::skip`) when not root.
    pub fn mount(size_mib: u32) -> Option<Tmpfs> {
        if !skip::unless_root("it mounts a small tmpfs to fill") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("failed to run mount");
        assert!(
            out.status.success(),
            "mount of a tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Every file in the tmpfs.
    pub fn files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}
