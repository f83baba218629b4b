//! The workspace's binaries that the tests and benchmarks drive (`chaosctl`, `chaos-agent`,
//! `chaosd`, `chaos-demo`, `chaos-redis-writer`), found next to the running test or bench
//! executable, in the profile folder it was built into (`target/debug/deps/e2e-HASH` →
//! `target/debug/chaosctl`).
//!
//! Cargo gives `CARGO_BIN_EXE_*` only to the tests of the package that owns the binary, so from
//! here they are looked up by name. When one is missing, or older than the workspace's sources,
//! they are all built once (`cargo build --workspace --bins --locked`, same profile, same target
//! folder), by whichever test asks first; the other threads of the process wait for that build.
//! So `cargo test --workspace` works from a fresh clone, and `cargo test -p chaos-tests` after an
//! edit of `agent/src` drives the new agent, not the old one.
//!
//! `CHAOS_BIN_DIR`, when set, names a folder holding the binaries instead; nothing is built then.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

/// The workspace's root: this package's parent folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `chaosctl`.
pub fn chaosctl() -> PathBuf {
    path("chaosctl")
}

/// `chaos-agent`.
pub fn chaos_agent() -> PathBuf {
    path("chaos-agent")
}

/// `chaosd`.
pub fn chaosd() -> PathBuf {
    path("chaosd")
}

/// `chaos-demo`, the demo service.
pub fn chaos_demo() -> PathBuf {
    path("chaos-demo")
}

/// Every binary of the workspace, as `cargo build --bins` names them.
pub const ALL: &[&str] = &[
    "chaosctl",
    "chaos-agent",
    "chaosd",
    "chaos-demo",
    "chaos-redis-writer",
];

/// The path of the workspace binary `name`, built first if it is missing or stale.
#[track_caller]
pub fn path(name: &str) -> PathBuf {
    assert!(
        ALL.contains(&name),
        "`{name}` is not a binary of the workspace"
    );
    if let Some(dir) = std::env::var_os("CHAOS_BIN_DIR") {
        let path = Path::new(&dir).join(name);
        assert!(
            path.is_file(),
            "CHAOS_BIN_DIR has no `{name}`: {}",
            path.display()
        );
        return path;
    }
    // Checked (and built) once per process; the threads that ask meanwhile wait for it.
    static PROFILE_DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = PROFILE_DIR.get_or_init(|| {
        let place = Place::of_this_executable();
        if !ALL.iter().all(|b| is_fresh(&place.profile_dir.join(b))) {
            place.build();
        }
        place.profile_dir
    });
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "`cargo build --bins` did not make {}",
        path.display()
    );
    path
}

/// Where the running executable was built: its profile folder, and how cargo names that.
struct Place {
    /// `target/debug`, `target/release`, `target/TRIPLE/dist`, ...
    profile_dir: PathBuf,
    /// `--target-dir`.
    target_dir: PathBuf,
    /// The profile's name (`dev` builds into `debug`, `bench` and `release` into `release`).
    profile: String,
    /// `--target TRIPLE`, when the profile folder is under one.
    triple: Option<String>,
}

impl Place {
    fn of_this_executable() -> Place {
        let exe = std::env::current_exe().expect("the test executable's path");
        // target/PROFILE/deps/NAME-HASH, or target/PROFILE/examples/NAME for an example.
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .unwrap_or_else(|| panic!("{} is not in a cargo target folder", exe.display()))
            .to_path_buf();
        let folder = name_of(&profile_dir);
        let profile = match folder.as_str() {
            "debug" => "dev".to_string(),
            other => other.to_string(),
        };
        let above = profile_dir.parent().expect("a target folder").to_path_buf();
        let (target_dir, triple) = if looks_like_a_triple(&name_of(&above)) {
            let target_dir = above.parent().expect("a target folder").to_path_buf();
            (target_dir, Some(name_of(&above)))
        } else {
            (above, None)
        };
        Place {
            profile_dir,
            target_dir,
            profile,
            triple,
        }
    }

    /// `cargo build --workspace --bins --locked` into this profile folder. In the `dev` profile
    /// also `--tests`, which turns on the dev-dependencies' features (tokio's `test-util`) as
    /// `cargo test --workspace` does: the libraries that run built are then reused, and only the
    /// binaries are linked.
    fn build(&self) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--workspace", "--bins", "--locked"]);
        if self.profile == "dev" {
            cmd.arg("--tests");
        }
        cmd.arg("--profile")
            .arg(&self.profile)
            .arg("--target-dir")
            .arg(&self.target_dir)
            .current_dir(workspace_root());
        if let Some(triple) = &self.triple {
            cmd.arg("--target").arg(triple);
        }
        eprintln!(
            "chaos-tests: building the workspace's binaries into {}",
            self.profile_dir.display()
        );
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build --bins failed: {status}");
    }
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `x86_64-unknown-linux-gnu`, `aarch64-unknown-linux-musl`, ...: at least three parts.
fn looks_like_a_triple(name: &str) -> bool {
    name.split('-').count() >= 3
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Whether `binary` exists and is newer than every source it is built from.
fn is_fresh(binary: &Path) -> bool {
    let Ok(built) = binary.metadata().and_then(|m| m.modified()) else {
        return false;
    };
    newest_source().is_none_or(|newest| newest <= built)
}

/// The newest modification time among the workspace's manifests, lock file and crate sources.
fn newest_source() -> Option<SystemTime> {
    let root = workspace_root();
    let mut newest = None;
    let mut note = |path: &Path| {
        if let Ok(time) = path.metadata().and_then(|m| m.modified()) {
            newest = newest.max(Some(time));
        }
    };
    note(&root.join("Cargo.toml"));
    note(&root.join("Cargo.lock"));
    for krate in ["agent", "chaosd", "chaosctl"] {
        note(&root.join(krate).join("Cargo.toml"));
        walk(&root.join(krate).join("src"), &mut note);
    }
    newest
}

fn walk(dir: &Path, note: &mut impl FnMut(&Path)) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, note);
        } else {
            note(&path);
        }
    }
}
