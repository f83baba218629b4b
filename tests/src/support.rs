//! The harness: a just-style `Test` builder around the built `chaosctl`, with its own state and
//! report folders; processes, mounts and runs that clean up after themselves on every path
//! (Drop guards).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;

use crate::{bins, eventually};

/// How long any one chaosctl command may take before the test gives up on it.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// A name no other test, nor another run of this test binary, uses. It ends in `x` so that no
/// name is a prefix of another (`...-1x` vs `...-10x`).
pub fn unique(what: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "e2e-{what}-{}-{}x",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

// ---- chaosctl --------------------------------------------------------------------------------

/// One test's world: a temp folder holding the scenario, `state/` and `reports/`.
pub struct Test {
    pub dir: tempfile::TempDir,
    scenario: Option<PathBuf>,
    vars: Vec<(String, String)>,
    args: Vec<String>,
    /// Environment variables every command gets.
    env: Vec<(String, String)>,
    serial: AtomicU32,
}

impl Default for Test {
    fn default() -> Test {
        Test::new()
    }
}

impl Test {
    pub fn new() -> Test {
        let dir = tempfile::Builder::new()
            .prefix("chaosctl-e2e-")
            .tempdir()
            .expect("temp dir");
        Test {
            dir,
            scenario: None,
            vars: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            serial: AtomicU32::new(0),
        }
    }

    /// Writes the scenario the `run` methods use, into this test's folder.
    pub fn scenario(mut self, yaml: &str) -> Test {
        let path = self.write("scenario.yaml", yaml);
        self.scenario = Some(path);
        self
    }

    /// Uses an existing scenario file (one of `scenarios/`).
    pub fn scenario_file(mut self, path: impl Into<PathBuf>) -> Test {
        self.scenario = Some(path.into());
        self
    }

    /// `--var NAME=VALUE` for `run` (and for `plan_args`/`validate_args` callers that ask).
    pub fn var(mut self, name: &str, value: impl ToString) -> Test {
        self.vars.push((name.to_string(), value.to_string()));
        self
    }

    /// An extra argument for `run`.
    pub fn arg(mut self, arg: impl ToString) -> Test {
        self.args.push(arg.to_string());
        self
    }

    /// An environment variable for every command of the test.
    pub fn env(mut self, name: &str, value: impl ToString) -> Test {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, contents).expect("write a test file");
        path
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    pub fn report_dir(&self) -> PathBuf {
        self.path("reports")
    }

    pub fn scenario_path(&self) -> PathBuf {
        self.scenario.clone().expect("the test has a scenario")
    }

    /// `--var` flags as arguments.
    pub fn var_args(&self) -> Vec<String> {
        self.vars
            .iter()
            .flat_map(|(k, v)| ["--var".to_string(), format!("{k}={v}")])
            .collect()
    }

    pub fn run_args(&self) -> Vec<String> {
        let mut args = vec![
            "run".to_string(),
            self.scenario_path().display().to_string(),
            "--yes".to_string(),
            "--report-dir".to_string(),
            self.report_dir().display().to_string(),
        ];
        args.extend(self.var_args());
        args.extend(self.args.iter().cloned());
        args
    }

    /// A chaosctl command line with this test's state dir; output goes to files in the test's
    /// folder, so nothing blocks on a full pipe.
    fn command(&self, args: &[String]) -> (Command, PathBuf, PathBuf) {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let stdout = self.path(&format!("cmd-{n}.stdout"));
        let stderr = self.path(&format!("cmd-{n}.stderr"));
        let mut cmd = Command::new(bins::chaosctl());
        cmd.arg("--state-dir")
            .arg(self.state_dir())
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("CHAOS_REPORT_DIR")
            .env_remove("CHAOS_STATE_DIR")
            .env_remove("CHAOSD_URL")
            // A collector of the machine's own never gets a test's traces, unless a test says so.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .env_remove("OTEL_SDK_DISABLED")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).expect("stdout file"))
            .stderr(fs::File::create(&stderr).expect("stderr file"));
        (cmd, stdout, stderr)
    }

    /// Runs `chaosctl --state-dir STATE ARGS...` to its end.
    pub fn cmd(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        self.spawn_args(&args, false).wait()
    }

    /// `chaosctl run SCENARIO --yes --report-dir REPORTS --var... ARGS...`, to its end.
    pub fn run(&self) -> Output {
        self.spawn_args(&self.run_args(), false).wait()
    }

    /// `chaosctl --state-dir STATE ARGS...` whose stdout is a pipe nobody reads any more (its
    /// reader closed before chaosctl started, as `head -1` closes it after one line): every
    /// write to stdout fails with EPIPE. Output::stdout stays empty.
    pub fn cmd_closed_stdout(&self, args: &[String]) -> Output {
        let (mut cmd, _, stderr) = self.command(args);
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        cmd.stdout(writer);
        let started = Instant::now();
        let child = cmd.spawn().expect("start chaosctl");
        // The writer end must not stay open here either: `cmd` holds it until dropped.
        drop(cmd);
        Running {
            child: Some(child),
            own_group: false,
            stdout: self.path("closed-stdout-nothing"),
            stderr,
            started,
            args: args.to_vec(),
        }
        .wait()
    }

    /// `run SCENARIO --yes --report-dir REPORTS --var... ARGS...` with its stdout closed.
    pub fn run_closed_stdout(&self) -> Output {
        self.cmd_closed_stdout(&self.run_args())
    }

    /// The same run, started in its own process group and left running.
    pub fn spawn_run(&self) -> Running {
        self.spawn_args(&self.run_args(), true)
    }

    pub fn spawn_args(&self, args: &[String], own_group: bool) -> Running {
        let (mut cmd, stdout, stderr) = self.command(args);
        if own_group {
            cmd.process_group(0);
        }
        let started = Instant::now();
        let child = cmd.spawn().expect("start chaosctl");
        Running {
            child: Some(child),
            own_group,
            stdout,
            stderr,
            started,
            args: args.to_vec(),
        }
    }

    /// The one run folder under `reports/` (not `latest`), once it exists.
    pub fn run_folder(&self) -> PathBuf {
        eventually(Duration::from_secs(20), "a report folder appears", || {
            fs::read_dir(self.report_dir())
                .ok()?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "latest"))
        })
    }

    /// Waits until the run's `events.jsonl` has an event of `kind`.
    pub fn wait_for_event(&self, kind: &str, within: Duration) -> Value {
        let folder = self.run_folder();
        eventually(within, &format!("a `{kind}` event in events.jsonl"), || {
            read_events(&folder.join("events.jsonl"))
                .into_iter()
                .find(|e| e["kind"] == kind)
        })
    }

    /// Report folders under `reports/`, `latest` not counted.
    pub fn report_folders(&self) -> Vec<PathBuf> {
        match fs::read_dir(self.report_dir()) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n != "latest"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// A chaosctl process; killed with its group if the test ends while it runs.
pub struct Running {
    child: Option<Child>,
    own_group: bool,
    stdout: PathBuf,
    stderr: PathBuf,
    pub started: Instant,
    args: Vec<String>,
}

impl Running {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    /// Sends `signal` to chaosctl's whole process group (it must have been spawned with one).
    pub fn signal_group(&self, signal: Signal) {
        assert!(self.own_group, "spawned without its own process group");
        killpg(self.pid(), signal).expect("killpg");
    }

    /// Sends `signal` to chaosctl alone.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("kill");
    }

    /// Waits (bounded) for chaosctl to end and collects its output.
    pub fn wait(mut self) -> Output {
        let mut child = self.child.take().expect("running");
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if self.started.elapsed() > COMMAND_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "chaosctl {:?} still running after {COMMAND_LIMIT:?}; stderr:\n{}",
                    self.args,
                    fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        use std::os::unix::process::ExitStatusExt;
        Output {
            code: status.code(),
            signal: status.signal(),
            stdout: fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: fs::read_to_string(&self.stderr).unwrap_or_default(),
            elapsed: self.started.elapsed(),
            args: self.args.clone(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // The test failed while chaosctl ran: ask it to revert and end, then make sure it ends.
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.own_group {
            let _ = killpg(pid, Signal::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// How a chaosctl command ended.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub args: Vec<String>,
}

impl Output {
    /// Asserts the exit code, showing everything chaosctl said when it differs.
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Output {
        assert_eq!(
            self.code,
            Some(expected),
            "chaosctl {:?} exited {:?} (signal {:?}), expected {expected}\n--- stdout\n{}\n--- stderr\n{}",
            self.args,
            self.code,
            self.signal,
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Output {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Output {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:\n{}",
            self.stdout
        );
        self
    }

    /// The report folder: the last line of a text-mode `run`.
    #[track_caller]
    pub fn folder(&self) -> PathBuf {
        let last = self
            .stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("no stdout; stderr:\n{}", self.stderr));
        let folder = PathBuf::from(last.trim());
        assert!(
            folder.join("report.json").is_file(),
            "the last stdout line {last:?} is not a report folder; stderr:\n{}",
            self.stderr
        );
        folder
    }

    /// `report.json` of this run.
    pub fn report(&self) -> Report {
        Report::read(&self.folder())
    }
}

/// `report.json`, with shortcuts for what tests look at.
pub struct Report {
    pub json: Value,
}

impl Report {
    #[track_caller]
    pub fn read(folder: &Path) -> Report {
        let text = fs::read_to_string(folder.join("report.json")).expect("report.json");
        Report {
            json: serde_json::from_str(&text).expect("report.json is JSON"),
        }
    }

    /// Asserts the verdict and the cause (`None` for `null`).
    #[track_caller]
    pub fn verdict(&self, verdict: &str, cause: Option<&str>) -> &Report {
        assert_eq!(
            (self.json["verdict"].as_str(), self.json["cause"].as_str()),
            (Some(verdict), cause),
            "reason: {}\nevents:\n{}",
            self.json["reason"],
            self.event_lines()
        );
        self
    }

    pub fn reason(&self) -> String {
        self.json["reason"].as_str().unwrap_or_default().to_string()
    }

    pub fn step(&self, index: usize) -> &Value {
        &self.json["steps"][index]
    }

    /// Every fault record of every step.
    pub fn faults(&self) -> Vec<&Value> {
        self.json["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["faults"].as_array().into_iter().flatten())
            .collect()
    }

    pub fn event_kinds(&self) -> Vec<String> {
        self.json["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["kind"].as_str().map(str::to_string))
            .collect()
    }

    pub fn has_event(&self, kind: &str) -> bool {
        self.event_kinds().iter().any(|k| k == kind)
    }

    fn event_lines(&self) -> String {
        self.json["events"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| format!("  {} {}", e["kind"], e["message"]))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The events of an `events.jsonl` written so far (a partial last line is left out).
pub fn read_events(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

// ---- processes --------------------------------------------------------------------------------

/// A `sleep` of our own whose command line starts with a unique tag, so that a `pattern:`
/// selector `^TAG` matches it and nothing else. Killed (and reaped) when dropped.
pub struct Sleeper {
    child: Child,
    pub pid: i32,
}

impl Sleeper {
    pub fn spawn(tag: &str) -> Sleeper {
        let child = Command::new("sleep")
            .arg0(tag)
            .arg("300")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        // The kernel shows the new command line only after exec.
        eventually(Duration::from_secs(5), "sleep has exec'd", || {
            cmdline(pid).filter(|c| c.starts_with(tag)).map(|_| ())
        });
        Sleeper { child, pid }
    }

    pub fn spawn_many(tag: &str, n: usize) -> Vec<Sleeper> {
        (0..n).map(|_| Sleeper::spawn(tag)).collect()
    }

    /// Whether it has ended; reaps it.
    pub fn has_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `pattern:` that selects the sleepers of `tag`.
pub fn pattern(tag: &str) -> String {
    format!("^{tag}")
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `T`, `Z`, ...), or `None` once it is gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

pub fn cmdline(pid: i32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let parts: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    Some(parts.join(" "))
}

/// Live (not zombie) processes whose command line ends with `suffix`, sorted.
pub fn pids_ending_with(suffix: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| cmdline(pid).is_some_and(|c| c.ends_with(suffix)))
        .filter(|&pid| proc_state(pid).is_some_and(|s| s != 'Z'))
        .collect();
    pids.sort();
    pids
}

/// Live (not zombie) processes whose command line contains `needle`.
pub fn pids_containing(needle: &str) -> Vec<i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| cmdline(pid).is_some_and(|c| c.contains(needle)))
        .filter(|&pid| proc_state(pid).is_some_and(|s| s != 'Z'))
        .collect()
}

/// Waits (bounded) until no process's command line contains `needle`: what setup started is gone.
#[track_caller]
pub fn assert_none_left(needle: &str) {
    eventually(
        Duration::from_secs(10),
        &format!("no process left with `{needle}` in its command line"),
        || pids_containing(needle).is_empty().then_some(()),
    );
}

/// Asserts that none of `pids` is stopped any more.
#[track_caller]
pub fn assert_resumed(pids: &[i32]) {
    for &pid in pids {
        let state = proc_state(pid);
        assert!(
            matches!(state, Some('S' | 'R')),
            "pid {pid} is in state {state:?}, expected S or R (resumed)"
        );
    }
}

// ---- filesystems ------------------------------------------------------------------------------

/// A tmpfs of `size_mib` MiB mounted on a fresh temp folder; unmounted when dropped.
pub struct Tmpfs {
    pub dir: PathBuf,
    // Dropped after `drop` has unmounted it.
    _holder: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size_mib: u64) -> Tmpfs {
        let holder = tempfile::Builder::new()
            .prefix("chaosctl-e2e-tmpfs-")
            .tempdir()
            .expect("temp dir");
        let dir = holder.path().join("fs");
        fs::create_dir(&dir).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -t tmpfs failed: {status}");
        Tmpfs {
            dir,
            _holder: holder,
        }
    }

    /// `df`'s Use% of this filesystem, unrounded.
    #[allow(clippy::unnecessary_cast)] // the statvfs field types differ between targets
    pub fn usage_percent(&self) -> f64 {
        let st = nix::sys::statvfs::statvfs(&self.dir).expect("statvfs");
        let frsize = st.fragment_size() as u64;
        let used = (st.blocks() as u64 - st.blocks_free() as u64) * frsize;
        let avail = st.blocks_available() as u64 * frsize;
        used as f64 * 100.0 / (used + avail) as f64
    }

    /// Names in the filesystem's root that start with `.chaos-fill-`.
    pub fn fill_files(&self) -> Vec<String> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.starts_with(".chaos-fill-"))
            .collect()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Prints each step's impact per probe and host, as the report has it: the figures the drills'
/// docs quote (and what to read when a drill fails in CI).
pub fn print_impact(report: &Value) {
    for step in report["steps"].as_array().into_iter().flatten() {
        for i in step["impact"].as_array().into_iter().flatten() {
            println!(
                "  impact in {} of `{}`: `{}` on {}: {} of {} {} failed, error {} ms, longest outage {} ms \
                 (restored {}), impact {} ms, restore {} ms{}",
                report["scenario"]["name"].as_str().unwrap_or_default(),
                step["name"].as_str().unwrap_or_default(),
                i["probe"].as_str().unwrap_or_default(),
                i["host"].as_str().unwrap_or_default(),
                i["failed"],
                i["taken"],
                i["counts"].as_str().unwrap_or_default(),
                i["error_ms"],
                i["longest_outage_ms"],
                i["restored"],
                i["impact_ms"],
                i["restore_ms"],
                match i["load"].as_object() {
                    Some(load) => format!(
                        ", p50 {} ms, p99 {} ms, statuses {}",
                        load["p50_ms"], load["p99_ms"], load["statuses"]
                    ),
                    None => String::new(),
                }
            );
        }
    }
}
