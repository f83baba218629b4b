//! A real PostgreSQL server of the test's own: a cluster made with `initdb` in a temporary
//! folder (owned by the `postgres` user, as the server refuses to run as root), started with
//! `pg_ctl` on a free port of 127.0.0.1 with its socket in that folder, and stopped and removed
//! on drop. Debian's `postgresql` package provides the programs and the user.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::skip;

/// A running test server.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

/// The newest `/usr/lib/postgresql/N/bin`.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let n = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((n, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

impl Postgres {
    /// Starts a server, or skips (see [`skip`]) where that cannot be: not root, or PostgreSQL
    /// not installed.
    #[track_caller]
    pub fn start_or_skip() -> Option<Postgres> {
        if !skip::unless_root("the test PostgreSQL server runs as the `postgres` user") {
            return None;
        }
        let Some(bin) = bin_dir() else {
            skip::skip(
                "needs `postgresql`",
                "no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)",
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("chaos-pg-")
            .tempdir()
            .expect("temp dir");
        let pg = Postgres {
            dir,
            bin,
            port: crate::support::free_port(),
        };
        std::fs::create_dir(pg.data()).expect("data dir");
        as_postgres(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(pg.dir.path()),
        );
        pg.pg(
            &["initdb", "-D"],
            &[
                pg.data().to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        pg.start();
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs `bin/ARGV[0] ARGV[1..] MORE` as the `postgres` user; panics with its output on failure.
    fn pg(&self, argv: &[&str], more: &[&str]) -> String {
        let program = self.bin.join(argv[0]);
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"])
            .arg(&program)
            .args(&argv[1..])
            .args(more)
            .current_dir(self.dir.path());
        as_postgres(&mut cmd)
    }

    /// Starts the server (again, after [`Postgres::stop`]) and waits until it accepts connections.
    pub fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.pg(
            &["pg_ctl", "-D"],
            &[
                self.data().to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    /// Stops the server at once (`immediate`: no goodbye to the clients, as a crash).
    pub fn stop(&self) {
        self.pg(
            &["pg_ctl", "-D"],
            &[
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) the server and every backend of it, as a
    /// partition would look from its clients: connections stay open and nothing answers.
    pub fn signal_all(&self, signal: nix::sys::signal::Signal) {
        let pid_file =
            std::fs::read_to_string(self.data().join("postmaster.pid")).expect("postmaster.pid");
        let postmaster: i32 = pid_file
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("a pid");
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    /// The URL chaosd's `store:` takes.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs `sql` with `psql` and returns its unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        self.pg(
            &["psql", "-h"],
            &[
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        )
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn as_postgres(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // A frozen server cannot stop.
        self.signal_all(nix::sys::signal::Signal::SIGCONT);
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
