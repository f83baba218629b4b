//! The one way a test that cannot run here says so.
//!
//! libtest shows a test that returned early as `ok`, and captures what it printed, so a skip is
//! also recorded: with `CHAOS_TESTS_SKIPPED=FILE` (which `./scripts/test` sets) each skip appends
//! a line `TEST<TAB>REASON<TAB>DETAIL` to FILE, and the script ends with a count of them by reason.
//! With `CHAOS_TESTS_NO_SKIP=1` (which `.ci/run` sets: in CI every prerequisite is installed) a
//! skip is a failure instead.
//!
//! ```ignore
//! if !chaos_tests::skip::unless_root("it mounts a tmpfs to fill") {
//!     return;
//! }
//! ```

use std::io::Write;
use std::path::Path;

/// The file skips are recorded in.
pub const RECORD_VAR: &str = "CHAOS_TESTS_SKIPPED";
/// Set to `1`, a skip fails its test.
pub const NO_SKIP_VAR: &str = "CHAOS_TESTS_NO_SKIP";

/// Skips the running test for `reason` (short, the same for every test skipped for it: `not
/// root`, ``needs `nft` ``); `detail` says more. Records it, prints it, and panics instead when
/// skips are not allowed. The caller returns.
#[track_caller]
pub fn skip(reason: &str, detail: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("(unnamed thread)")
        .to_string();
    if std::env::var_os(NO_SKIP_VAR).is_some_and(|v| v == "1") {
        panic!("{test} would skip ({reason}: {detail}), and {NO_SKIP_VAR}=1 forbids skips");
    }
    println!("skipped: {reason}: {detail}");
    if let Some(file) = std::env::var_os(RECORD_VAR) {
        record(Path::new(&file), &test, reason, detail);
    }
}

/// Whether we are root; when not, skips (see [`skip`]) saying `because`.
#[track_caller]
pub fn unless_root(because: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        skip("not root", &format!("needs root because {because}"));
        false
    }
}

/// Whether every one of `tools` is installed (on `PATH`, or in `/usr/sbin`, `/sbin`); when one is
/// not, skips naming it and the Debian package to install (`apt-get install PACKAGE`).
#[track_caller]
pub fn unless_installed(tools: &[&str], package: &str) -> bool {
    match tools.iter().find(|t| !installed(t)) {
        None => true,
        Some(tool) => {
            skip(
                &format!("needs `{tool}`"),
                &format!("`{tool}` is not installed (apt-get install {package})"),
            );
            false
        }
    }
}

/// Whether `tool` is a file on `PATH` (or in `/usr/sbin`, `/sbin`); an absolute path is checked
/// as it is.
pub fn installed(tool: &str) -> bool {
    if tool.starts_with('/') {
        return Path::new(tool).is_file();
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(tool).is_file())
}

/// One line per skip, appended in one write (tests run in parallel, in several processes).
fn record(file: &Path, test: &str, reason: &str, detail: &str) {
    let clean = |s: &str| s.replace(['\t', '\n'], " ");
    let line = format!("{}\t{}\t{}\n", clean(test), clean(reason), clean(detail));
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(err) = written {
        eprintln!("could not record the skip in {}: {err}", file.display());
    }
}
