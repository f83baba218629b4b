//! How we start the user's commands (setup, teardown, command probes): in the scenario's folder,
//! with stdin closed, and with our own binaries' folder first on `PATH`, so a scenario can name
//! `chaos-demo` or `chaosctl` without knowing where they were installed.

use std::ffi::OsString;
use std::path::Path;
use std::sync::OnceLock;

/// `PATH` for children: the folder of the running executable, then the inherited `PATH`.
pub fn child_path() -> &'static OsString {
    static PATH: OnceLock<OsString> = OnceLock::new();
    PATH.get_or_init(|| {
        let inherited = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        let mut dirs: Vec<_> = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .into_iter()
            .collect();
        dirs.extend(std::env::split_paths(&inherited));
        std::env::join_paths(dirs).unwrap_or(inherited)
    })
}

/// A command for `argv`, run in `cwd`, with stdin from /dev/null and our `PATH`.
/// The caller chooses stdout/stderr, the process group and what happens on drop.
pub fn command(argv: &[String], cwd: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(cwd)
        .env("PATH", child_path())
        .stdin(std::process::Stdio::null());
    cmd
}
