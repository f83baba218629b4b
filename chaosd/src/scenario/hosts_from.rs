//! Running an inventory's `hosts_from` command: the fleet's hosts printed by a script over Consul,
//! a cloud API or `kubectl`, at the start of each run, so that nobody keeps a host list by hand.
//!
//! **Invariant:** a command that fails, times out or prints no host is an error of the load with
//! its output, never an empty fleet: a scenario whose targets silently match nothing would pass
//! without faulting anything.

// The command runs on the real clock, which tokio's paused clock has no say over.
#![allow(clippy::disallowed_types)]

use std::io::Read;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use agent::spec::Command;

use super::MAX_FILE_BYTES;

/// What the command printed, or why there is nothing to read.
pub(crate) fn run(command: &Command, dir: &Path, timeout: Duration) -> Result<String, Failure> {
    let argv = command.argv();
    let mut child = Process::new(&argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| Failure {
            message: format!("`hosts_from` could not start `{}`: {err}", argv[0]),
            help: Some("check the command's path (relative to the inventory's folder) and that it is executable".into()),
        })?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    // Read both pipes while waiting, so a chatty command never blocks on a full pipe; at most
    // MAX_FILE_BYTES of hosts, as for an inventory file.
    let out = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut stdout).take(MAX_FILE_BYTES + 1).read_to_end(&mut buf);
        buf
    });
    let err = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut buf);
        buf
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    let said = last_lines(&stderr);
    let Some(status) = status else {
        return Err(Failure {
            message: format!(
                "`hosts_from` did not finish within {} s and was killed{said}",
                timeout.as_secs_f64()
            ),
            help: Some("make the command faster, or give `hosts_from` a longer `timeout`".into()),
        });
    };
    if !status.success() {
        return Err(Failure {
            message: format!("`hosts_from` failed ({status}){said}"),
            help: None,
        });
    }
    if stdout.len() as u64 > MAX_FILE_BYTES {
        return Err(Failure {
            message: format!(
                "`hosts_from` printed more than {} MiB",
                MAX_FILE_BYTES / 1024 / 1024
            ),
            help: None,
        });
    }
    let text = String::from_utf8(stdout).map_err(|_| Failure {
        message: "`hosts_from` printed something that is not UTF-8 text".into(),
        help: None,
    })?;
    let blank = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
    if text.lines().all(blank) {
        return Err(Failure {
            message: format!("`hosts_from` printed no hosts{said}"),
            help: Some(
                "it must print `hosts:` as in an inventory (YAML or JSON); an empty fleet is never assumed"
                    .into(),
            ),
        });
    }
    Ok(text)
}

/// Why a `hosts_from` command gave no hosts.
#[derive(Debug)]
pub(crate) struct Failure {
    pub message: String,
    pub help: Option<String>,
}

/// `: <the last lines of stderr>`, or nothing.
fn last_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(5)..];
    format!(": {}", tail.join(" / "))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use super::super::{LoadOptions, load, load_inventory};

    const SCENARIO: &str = "version: 1\nname: t\ntargets:\n  db: {labels: {role: db}}\nsteps:\n  - name: s\n    target: db\n    fault: {kill: {process: {name: x}}}\n";

    /// An inventory whose `hosts_from` runs `script` (a shell script written next to it), and a
    /// scenario that targets the `db` label.
    fn with_script(script: &str, inventory_extra: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts.sh");
        fs::write(&path, format!("#!/bin/sh\n{script}")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        let inventory = dir.path().join("inventory.yaml");
        fs::write(
            &inventory,
            format!("hosts_from: {{command: [./hosts.sh]{inventory_extra}}}\n"),
        )
        .unwrap();
        let scenario = dir.path().join("s.yaml");
        fs::write(&scenario, SCENARIO).unwrap();
        (dir, inventory, scenario)
    }

    fn opts(inventory: &std::path::Path) -> LoadOptions {
        LoadOptions {
            inventory: Some(inventory.to_path_buf()),
            ..LoadOptions::default()
        }
    }

    fn problem(result: Result<impl std::fmt::Debug, super::super::ScenarioError>) -> String {
        let err = result.expect_err("a problem");
        let p = &err.problems()[0];
        format!(
            "{}:{}:{}: {}",
            p.file.file_name().unwrap().to_string_lossy(),
            p.line,
            p.column,
            p.message
        )
    }

    #[test]
    fn printed_hosts_in_json_or_yaml_join_the_fleet_with_their_paths_resolved() {
        let json = r#"echo '{"hosts": {"db-1": {"agent": "https://10.0.0.21:7411", "labels": {"role": "db"}, "token_file": "tokens/db"}, "db-2": {"agent": "https://10.0.0.22:7411", "labels": {"role": "db"}}}}'"#;
        let (dir, inventory, scenario) = with_script(json, "");
        let s = load(&scenario, &opts(&inventory)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.targets["db"].hosts, ["db-1", "db-2"]);
        let root = dir.path().canonicalize().unwrap();
        assert_eq!(s.hosts["db-1"].token_file, Some(root.join("tokens/db")));

        let yaml = "cat <<EOF\nhosts:\n  db-3: {agent: \"https://10.0.0.23:7411\", labels: {role: db}}\nEOF\n";
        let (_dir, inventory, _) = with_script(yaml, "");
        let hosts = load_inventory(&inventory, &LoadOptions::default()).unwrap();
        assert_eq!(hosts.keys().collect::<Vec<_>>(), ["db-3"]);
    }

    #[test]
    fn a_failing_silent_slow_or_wrong_command_is_an_error_never_an_empty_fleet() {
        let (_d, inventory, scenario) =
            with_script("echo 'consul: connection refused' >&2; exit 3", "");
        assert_eq!(
            problem(load(&scenario, &opts(&inventory))),
            "inventory.yaml:1:13: `hosts_from` failed (exit status: 3): consul: connection refused"
        );
        let (_d, inventory, scenario) = with_script("exit 0", "");
        assert_eq!(
            problem(load(&scenario, &opts(&inventory))),
            "inventory.yaml:1:13: `hosts_from` printed no hosts"
        );
        let (_d, inventory, _) = with_script("echo 'hosts: {}'", "");
        assert_eq!(
            problem(load_inventory(&inventory, &LoadOptions::default())),
            "inventory.yaml:1:13: `hosts_from` printed no hosts"
        );
        let (_d, inventory, scenario) = with_script("exec sleep 5", ", timeout: 200ms");
        let started = std::time::Instant::now();
        assert_eq!(
            problem(load(&scenario, &opts(&inventory))),
            "inventory.yaml:1:13: `hosts_from` did not finish within 0.2 s and was killed"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
        // What it printed is checked like an inventory, and its problems point into it.
        let (_d, inventory, scenario) = with_script(
            "echo 'hosts:'; echo '  db-1: {agnet: \"https://10.0.0.21:7411\"}'",
            "",
        );
        assert_eq!(
            problem(load(&scenario, &opts(&inventory))),
            "inventory.yaml (hosts_from output):2:10: unknown key `agnet`"
        );
        let (_d, inventory, scenario) = with_script("echo", ", timeout: 0s");
        assert!(
            problem(load(&scenario, &opts(&inventory))).contains("`timeout` must be more than 0s")
        );
    }

    #[test]
    fn a_host_both_listed_and_printed_is_refused() {
        let (_d, inventory, scenario) = with_script(
            "echo 'hosts: {db-1: {agent: \"https://10.0.0.21:7411\"}}'",
            "",
        );
        let text = fs::read_to_string(&inventory).unwrap();
        fs::write(
            &inventory,
            format!(
                "hosts:\n  db-1: {{agent: \"https://10.0.0.9:7411\", labels: {{role: db}}}}\n{text}"
            ),
        )
        .unwrap();
        assert_eq!(
            problem(load(&scenario, &opts(&inventory))),
            "inventory.yaml (hosts_from output):1:9: host `db-1` is defined both in the inventory and by its `hosts_from`"
        );
    }
}
