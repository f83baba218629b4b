//! Crash trials: for every fault kind, on the controller's own machine (`local`) and on
//! a remote agent of the lab, a run whose chaosctl, chaosd (the run submitted to it) or agent is
//! SIGKILLed at a random moment, then the documented recovery (the next chaosctl command,
//! chaosd's restart, the agent's lease, the agent's restart, the kernel's expiry), then the host
//! is checked: no nft table or NFQUEUE rule of
//! ours, no netem qdisc, no stopped process, no fill file, and a killed controller's run listed
//! `interrupted`.
//!
//! `scripts/crash-trials [--trials N] [--seed S]` runs more of them; the test runs
//! `CHAOS_CRASH_TRIALS` (default 40) with `CHAOS_CRASH_SEED` (default: drawn, and printed so that
//! a failing series can be run again). It prints a table (kind × what was killed × where:
//! trials, clean, worst time to clean) and ends with `N trials, M leftovers`. Every trial's
//! network faults are held to the lab: on a lab host they act in its namespace, and on `local`
//! they name the root namespace's lab interface and the lab's addresses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use chaos_tests::lab::{Lab, LabSleeper, sh, try_sh};
use chaos_tests::support::{Sleeper, Test, Tmpfs, free_port, pattern, proc_state, unique};

const KINDS: [&str; 7] = [
    "kill",
    "pause",
    "latency",
    "loss",
    "drop",
    "fill_disk",
    "bandwidth",
];

/// How long a trial's fault is held: long enough that a random kill often lands during it.
const HOLD: &str = "3s";

/// The lab's lease: a remote agent reverts a silent controller's faults this long after it went
/// quiet.
const LEASE: &str = "2s";

/// The longest a trial may take to be clean after the kill: the lease, the hold and margin.
const CLEAN_WITHIN: Duration = Duration::from_secs(12);

/// What a trial SIGKILLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Victim {
    Chaosctl,
    Chaosd,
    Agent,
}

/// A chaosd of the trials' own on 127.0.0.1, with the lab's inventory and `allow_local`, and a
/// state directory that outlives its restarts.
struct Chaosd {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Chaosd {
    fn start(lab: &Lab) -> Chaosd {
        let dir = tempfile::Builder::new()
            .prefix("chaosctl-crash-chaosd-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        std::fs::write(dir.path().join("token"), "crash-trials-token-0123456789\n").expect("token");
        std::fs::write(
            dir.path().join("chaosd.yaml"),
            format!(
                "listen: 127.0.0.1:{port}\ntoken_file: token\nstate_dir: state\nreport_dir: reports\n\
                 allow_local: true\ninventory: {}\n",
                lab.inventory.display()
            ),
        )
        .expect("chaosd.yaml");
        let mut chaosd = Chaosd {
            dir,
            port,
            child: None,
        };
        chaosd.restart();
        chaosd
    }

    fn binary() -> PathBuf {
        let path = chaos_tests::bins::chaos_agent().with_file_name("chaosd");
        assert!(path.is_file(), "build chaosd first: cargo build -p chaosd");
        path
    }

    /// Starts it (again) and waits until it answers.
    fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("chaosd.log"))
            .expect("log");
        let child = Command::new(Chaosd::binary())
            .arg("--config")
            .arg(self.dir.path().join("chaosd.yaml"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start chaosd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "chaosd does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `--server URL --token-file F`, for chaosctl.
    fn args(&self) -> Vec<String> {
        vec![
            "--server".into(),
            format!("http://127.0.0.1:{}", self.port),
            "--token-file".into(),
            self.dir.path().join("token").display().to_string(),
        ]
    }
}

impl Drop for Chaosd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A small seeded generator (SplitMix64): the trials are reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// One trial's outcome, for the table.
#[derive(Default)]
struct Tally {
    trials: u32,
    /// Trials whose fault was seen in place just before the kill (the others were killed before
    /// it was injected, or after it ended).
    in_place: u32,
    clean: u32,
    worst: Duration,
}

/// What a trial put in place to fault, and how to tell it is gone.
enum Victims {
    Local(Sleeper),
    Remote(LabSleeper),
}

impl Victims {
    fn pid(&self) -> i32 {
        match self {
            Victims::Local(s) => s.pid,
            Victims::Remote(s) => s.pid,
        }
    }
}

/// The fault of a trial, in YAML, on `target`.
fn fault_yaml(kind: &str, local: bool, lab: &Lab, fill: &Path) -> String {
    // On `local`, network faults name the lab's interface and peers: nothing else is touched.
    let scope = if local {
        format!(
            ", interface: {}, to: {{hosts: [\"{}\"]}}",
            lab.root_if(),
            lab.host("h1").addr
        )
    } else {
        String::new()
    };
    match kind {
        "kill" => "kill: {process: {pattern: \"${PAT}\"}}".to_string(),
        "pause" => "pause: {process: {pattern: \"${PAT}\"}}".to_string(),
        "latency" => format!("latency: {{delay: 30ms{scope}}}"),
        "loss" => format!("loss: {{share: 50%{scope}}}"),
        "drop" => format!("drop: {{mode: reject{scope}}}"),
        "fill_disk" => format!("fill_disk: {{path: \"{}\", usage: 90%}}", fill.display()),
        "bandwidth" => format!("bandwidth: {{rate: 1mbit{scope}}}"),
        other => panic!("no trial for `{other}`"),
    }
}

/// What of this trial is left on the controller's machine: a stopped victim, a fill file, an nft
/// table, iptables rule or root qdisc of ours on the lab's interface.
fn left_locally(lab: &Lab, tmpfs: &Tmpfs, victim: i32) -> Vec<String> {
    let mut left = Vec::new();
    if proc_state(victim) == Some('T') {
        left.push(format!("pid {victim} stopped"));
    }
    left.extend(
        tmpfs
            .fill_files()
            .into_iter()
            .map(|f| format!("fill file {f}")),
    );
    let ruleset = try_sh(&["nft", "list", "ruleset"]).unwrap_or_default();
    for table in ruleset
        .split("\ntable ")
        .filter(|t| t.contains(lab.root_if()))
    {
        left.push(format!(
            "nft table {}",
            table.lines().next().unwrap_or_default()
        ));
    }
    let qdiscs = try_sh(&["tc", "qdisc", "show", "dev", lab.root_if()]).unwrap_or_default();
    left.extend(
        qdiscs
            .lines()
            .filter(|l| {
                ["qdisc htb", "qdisc prio", "qdisc netem"]
                    .iter()
                    .any(|q| l.contains(q))
            })
            .map(|l| format!("tc {l}")),
    );
    let rules = try_sh(&["iptables", "-S"]).unwrap_or_default();
    left.extend(
        rules
            .lines()
            .filter(|l| l.contains(lab.root_if()))
            .map(|l| format!("iptables {l}")),
    );
    left
}

/// What of this trial is left on lab host h1.
fn left_on_h1(lab: &Lab, victim: i32) -> Vec<String> {
    let h1 = lab.host("h1");
    let mut left: Vec<String> = lab
        .leftovers()
        .into_iter()
        .filter(|l| l.starts_with("h1:"))
        .collect();
    if proc_state(victim) == Some('T') {
        left.push(format!("pid {victim} stopped"));
    }
    // The fill directory is seen through the agent's mount namespace: only while it runs.
    if proc_state(h1.agent_pid()).is_some() {
        left.extend(
            h1.fill_files()
                .into_iter()
                .map(|f| format!("fill file {f}")),
        );
    }
    // The agent's own bookkeeping: a run it still holds refuses the next run's preflight (409)
    // until it lets go (the revert, the lease, the hold's end).
    if let Some(held) = agent_faults(lab) {
        left.extend(held.into_iter().map(|f| format!("the agent holds {f}")));
    }
    let qdiscs =
        try_sh(&["ip", "netns", "exec", &h1.ns, "tc", "qdisc", "show"]).unwrap_or_default();
    left.extend(
        qdiscs
            .lines()
            .filter(|l| l.contains("netem"))
            .map(|l| format!("qdisc {l}")),
    );
    left
}

/// The faults h1's agent says it holds (`GET /v1/faults`); `None` when it does not answer.
fn agent_faults(lab: &Lab) -> Option<Vec<String>> {
    let token = std::fs::read_to_string(&lab.token).ok()?;
    let url = format!("{}/v1/faults", lab.host("h1").agent_url());
    let auth = format!("Authorization: Bearer {}", token.trim());
    let cacert = lab.cert.display().to_string();
    let body = try_sh(&[
        "curl",
        "-sf",
        "--max-time",
        "2",
        "--cacert",
        &cacert,
        "-H",
        &auth,
        &url,
    ])
    .ok()?;
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(
        json["faults"]
            .as_array()?
            .iter()
            .map(|f| f["fault_id"].as_str().unwrap_or("?").to_string())
            .collect(),
    )
}

#[test]
fn crash_trials_leave_nothing_behind() {
    let Some(mut lab) = Lab::new() else { return };
    let trials = env_number("CHAOS_CRASH_TRIALS").unwrap_or(40);
    let seed = env_number("CHAOS_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    println!(
        "crash trials: {trials} trials, seed {seed} (CHAOS_CRASH_SEED={seed} runs them again)"
    );
    let mut rng = Rng(seed);
    let tmpfs = Tmpfs::mount(8);
    let mut chaosd = Chaosd::start(&lab);
    let mut tally: BTreeMap<(&str, Victim, &str), Tally> = BTreeMap::new();
    let mut leftovers = Vec::new();

    for n in 0..trials {
        let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
        let local = rng.below(2) == 0;
        let killed = match rng.below(if local { 2 } else { 3 }) {
            0 => Victim::Chaosctl,
            1 => Victim::Chaosd,
            _ => Victim::Agent,
        };
        let delay = Duration::from_millis(rng.below(2500));
        let tag = unique("crash");
        let victims = if local {
            Victims::Local(Sleeper::spawn(&tag))
        } else {
            Victims::Remote(LabSleeper::spawn(&lab, "h1", &tag))
        };
        let name = format!("crash trial {n}");
        let fill = if local {
            tmpfs.dir.clone()
        } else {
            lab.host("h1").fill_dir.clone()
        };
        let yaml = format!(
            "version: 1\nname: {name}\nsettings: {{lease: {LEASE}}}\nsteps:\n  - name: the fault\n    target: {}\n    fault: {{{}}}\n    duration: {HOLD}\n    recover_within: 5s\n",
            if local { "local" } else { "h1" },
            fault_yaml(kind, local, &lab, &fill)
        );
        let test = lab.test(&yaml).var("PAT", pattern(&tag));
        let submitter = Test::new();
        let run = if killed == Victim::Chaosd {
            // Submitted to chaosd, which runs it: chaosd is the controller that dies.
            let path = test.write("trial.yaml", &yaml);
            let mut args = chaosd.args();
            args.extend([
                "run".to_string(),
                path.display().to_string(),
                "--yes".to_string(),
                "--var".to_string(),
                format!("PAT={}", pattern(&tag)),
            ]);
            submitter.spawn_args(&args, true)
        } else {
            test.spawn_run()
        };
        std::thread::sleep(delay);
        let in_place = !if local {
            left_locally(&lab, &tmpfs, victims.pid())
        } else {
            left_on_h1(&lab, victims.pid())
        }
        .is_empty();
        println!(
            "trial {n}: {kind} on {}, {killed:?} killed {delay:?} in{}",
            if local { "local" } else { "h1" },
            if in_place { ", fault in place" } else { "" }
        );
        let kill_at = Instant::now();
        let kill_wall = chrono::Utc::now();
        match killed {
            Victim::Chaosctl => run.signal_group(Signal::SIGKILL),
            Victim::Chaosd => {
                chaosd.kill();
                // The documented recovery: chaosd starts again, reverts what its `local` journal
                // holds and marks the runs it lost `interrupted`; remote faults end by the lease.
                chaosd.restart();
            }
            Victim::Agent => {
                lab.kill_agent("h1");
                // The documented recovery: the agent starts again and reverts its journal.
                lab.restart_agent("h1");
            }
        }
        // SIGKILL is delivered, not done: the killed chaosctl is reaped before anything else
        // looks, since a journal's owner that has not died yet is rightly left alone. (Found by
        // the long run: in 1 trial of 500 the next command came while the killed chaosctl was
        // still exiting, and left the fault to the command after it.)
        let mut run = Some(run);
        let mut out = None;
        if killed == Victim::Chaosctl {
            out = run.take().map(|r| r.wait());
        }
        if local && killed == Victim::Chaosctl {
            // The documented recovery: the next chaosctl command reverts what the journal holds.
            test.cmd(&["runs"]);
        }
        let (cleaned, mut left) = loop {
            let left = if local {
                left_locally(&lab, &tmpfs, victims.pid())
            } else {
                left_on_h1(&lab, victims.pid())
            };
            if left.is_empty() {
                break (Some(kill_at.elapsed()), left);
            }
            if kill_at.elapsed() > CLEAN_WITHIN {
                break (None, left);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = match (out, run) {
            (Some(out), _) => out,
            (None, Some(run)) => run.wait(),
            (None, None) => unreachable!("a run is either waited for or still running"),
        };
        if killed != Victim::Agent {
            // A killed controller's run is listed `interrupted`, if it got as far as the history.
            let runs = if killed == Victim::Chaosd {
                let mut args = chaosd.args();
                args.push("runs".to_string());
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                test.cmd(&args)
            } else {
                test.cmd(&["runs"])
            };
            if let Some(line) = runs.stdout.lines().find(|l| l.contains(&name))
                && !line.contains("interrupted")
            {
                let id = line.split_whitespace().next().unwrap_or_default();
                let mut args = if killed == Victim::Chaosd {
                    chaosd.args()
                } else {
                    Vec::new()
                };
                args.extend(["report".into(), id.into(), "--format".into(), "json".into()]);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let report = test.cmd(&args);
                let report: serde_json::Value =
                    serde_json::from_str(&report.stdout).unwrap_or_default();
                // A run submitted to chaosd while it was down reached it once it was back: it
                // started after the kill and ran like any other.
                let started_after = report["started_at"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t > kill_wall);
                if !started_after {
                    left.push(format!("run listed as: {line}; {}", report["reason"]));
                }
            }
        } else {
            assert!(out.code.is_some(), "chaosctl ended by a signal: {out:?}");
        }
        let entry = tally
            .entry((kind, killed, if local { "local" } else { "h1" }))
            .or_default();
        entry.trials += 1;
        entry.in_place += u32::from(in_place);
        match cleaned {
            Some(took) if left.is_empty() => {
                entry.clean += 1;
                entry.worst = entry.worst.max(took);
            }
            _ => leftovers.push(format!(
                "trial {n} ({kind} on {}, {killed:?} killed {delay:?} in): {left:?}",
                if local { "local" } else { "h1" }
            )),
        }
        drop(victims);
    }
    // Everything a trial left was cleaned by the end: nothing stays in the lab or here.
    sh(&["sync"]);
    println!(
        "\n{:<10} {:<9} {:<6} {:>6} {:>9} {:>6} {:>14}",
        "kind", "killed", "where", "trials", "in place", "clean", "worst to clean"
    );
    for ((kind, killed, place), tally) in &tally {
        println!(
            "{kind:<10} {:<9} {place:<6} {:>6} {:>9} {:>6} {:>11} ms",
            format!("{killed:?}").to_lowercase(),
            tally.trials,
            tally.in_place,
            tally.clean,
            tally.worst.as_millis()
        );
    }
    println!("{trials} trials, {} leftovers", leftovers.len());
    assert!(leftovers.is_empty(), "left behind: {leftovers:#?}");
}
