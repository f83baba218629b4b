//! How we start the user's commands (setup, teardown, command probes, actions): in the
//! scenario's folder, with stdin closed, and with our own binaries' folder first on `PATH`, so a
//! scenario can name `chaos-demo` or `chaosctl` without knowing where they were installed.

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

/// The most output of an action [`run_bounded`] keeps: its last bytes, where errors usually are.
pub const MAX_OUTPUT: usize = 64 * 1024;

/// How a command run by [`run_bounded`] ended.
#[derive(Debug, Clone)]
pub struct Ran {
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// stdout and stderr interleaved as they came, its last [`MAX_OUTPUT`] bytes.
    pub output: Vec<u8>,
    /// Whether output was dropped from the front.
    pub truncated: bool,
    pub duration: std::time::Duration,
    /// "exit 0", "killed by SIGKILL", "did not finish within 30s", or why it could not start.
    pub detail: String,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

/// Runs `run` in `cwd` to its end, or kills its whole process group at `timeout`; keeps the last
/// [`MAX_OUTPUT`] bytes of its output. The child gets its own process group so that a timeout
/// also ends whatever it started, and is always waited for (no zombie left behind).
pub async fn run_bounded(
    run: &crate::spec::Command,
    cwd: &Path,
    timeout: std::time::Duration,
) -> Ran {
    use std::os::unix::process::ExitStatusExt;

    let started = tokio::time::Instant::now();
    let argv = run.argv();
    let failed = |detail: String| Ran {
        exit_code: None,
        timed_out: false,
        output: Vec::new(),
        truncated: false,
        duration: started.elapsed(),
        detail,
    };
    let (reader, writer) = match std::io::pipe() {
        Ok(pair) => pair,
        Err(err) => return failed(format!("cannot make a pipe for its output: {err}")),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(err) => return failed(format!("cannot make a pipe for its output: {err}")),
    };
    let mut cmd = command(&argv, cwd);
    cmd.stdout(writer)
        .stderr(writer2)
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => return failed(format!("cannot run `{}`: {err}", argv[0])),
    };
    // Our copies of the write end must go, or the reader never sees the end of the output.
    drop(cmd);
    let pid = child.id().map(|p| p as i32);
    // A thread of its own, not the runtime's blocking pool: a daemon the command started may hold
    // the pipe open for ever, and the runtime waits for its pool when it shuts down.
    let (sent, reading) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut reader = reader;
        let mut kept: Vec<u8> = Vec::new();
        let mut truncated = false;
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > MAX_OUTPUT {
                        let cut = kept.len() - MAX_OUTPUT;
                        kept.drain(..cut);
                        truncated = true;
                    }
                }
            }
        }
        let _ = sent.send((kept, truncated));
    });
    let (status, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (status.map_err(|e| e.to_string()), false),
        Err(_) => {
            if let Some(pid) = pid {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.start_kill();
            (child.wait().await.map_err(|e| e.to_string()), true)
        }
    };
    // Whatever the group left holding the pipe is killed with it above on a timeout; on a normal
    // exit a daemonized grandchild could hold it open, so the read is bounded too.
    let (output, truncated) =
        match tokio::time::timeout(std::time::Duration::from_secs(2), reading).await {
            Ok(Ok(read)) => read,
            _ => (
                b"(output not collected: a child of the command kept it open)\n".to_vec(),
                false,
            ),
        };
    let (exit_code, detail) = match &status {
        Ok(s) if timed_out => (
            s.code(),
            format!("did not finish within {}", fmt_secs(timeout)),
        ),
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => (Some(code), format!("exit {code}")),
            (None, Some(sig)) => (None, format!("killed by signal {sig}")),
            _ => (None, "ended".to_string()),
        },
        Err(err) => (None, format!("cannot wait for it: {err}")),
    };
    Ran {
        exit_code,
        timed_out,
        output,
        truncated,
        duration: started.elapsed(),
        detail,
    }
}

fn fmt_secs(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Command;

    #[tokio::test]
    async fn output_is_bounded_to_its_end_and_failures_say_how() {
        let big = Command::Shell("head -c 200000 /dev/zero | tr '\\0' a; echo; echo last".into());
        let ran = run_bounded(&big, Path::new("/"), std::time::Duration::from_secs(10)).await;
        assert!(ran.ok(), "{}", ran.detail);
        assert_eq!(ran.output.len(), MAX_OUTPUT);
        assert!(ran.truncated);
        assert!(ran.output.ends_with(b"\nlast\n"));

        let failing = Command::Shell("echo oops >&2; exit 3".into());
        let ran = run_bounded(&failing, Path::new("/"), std::time::Duration::from_secs(10)).await;
        assert_eq!((ran.exit_code, ran.detail.as_str()), (Some(3), "exit 3"));
        assert_eq!(ran.output, b"oops\n");

        let missing = Command::Argv(vec!["/nonexistent/program".into()]);
        let ran = run_bounded(&missing, Path::new("/"), std::time::Duration::from_secs(10)).await;
        assert!(!ran.ok());
        assert!(
            ran.detail.contains("cannot run `/nonexistent/program`"),
            "{}",
            ran.detail
        );
    }
}
