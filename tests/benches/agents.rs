//! chaosctl against many `chaos-agent` daemons, and the precision of the agent's network faults,
//! on the lab library (`chaos_tests`).
//!
//! Part 1, on 127.0.0.1: N agents (default 100; own ports and state directories, one shared
//! token), each host with a `sleep 7000<i>` process of its own. One scenario, one step holding N
//! pause faults at once (one per host, its sleep by pid), no steady-state probe, `--yes`.
//! `--agents 10,100,300` measures each size in turn (parts 1 and 2 only) and ends with the scale
//! table (docs/scale.md): per size, chaosctl's launch to the first `fault_applied`, the apply
//! spread, SIGINT to all clean, chaosctl's CPU time and peak RSS (/proc, sampled every 5 ms) in
//! total and per agent, an agent's CPU for its one fault; and what one more agent costs chaosctl.
//! The soft limit of open files is raised to the hard one (chaosctl holds a connection per
//! agent). Measured per round:
//!   (a) apply: from the step's start (`step_started` in events.jsonl) to the last
//!       `fault_applied`, and the spread of the agents' `applied_at` (report.json) over hosts:
//!       p50/p99/max minus the first;
//!   (b) abort: SIGINT to chaosctl during the hold (after the last `fault_applied`), until every
//!       sleep process has left state T (polled in /proc every ~1 ms), and in the events (SIGINT
//!       and `aborted` against the last `fault_reverted`);
//!   (c) SIGKILL: the same with chaosctl SIGKILLed and `settings.lease: 1s`: the agents revert on
//!       their own when the lease runs out.
//!
//! Part 2: the agents' resident memory (VmRSS) and CPU time (over a 5 s idle window), before the
//! runs and after them: median and max.
//!
//! Part 3 (root; the lab's tools): a lab of network-namespace hosts, a TLS agent on each. RTT of
//! `ping -c 20 -i 0.2` from h2 to h1 with `latency: 50ms`, then 200 ms, on h1, against no fault;
//! and a 200 MB TCP transfer from h2 into h1 (the delayed direction: the NFQUEUE holder delays
//! ingress) under `latency: 0ms`, against no fault.
//!
//! Part 4 (root; nginx): the cost of the `http` fault's proxy when it hits nothing. nginx on h1
//! answers `GET /` (3 bytes) on one port; h2 sends requests to it directly, then through the proxy
//! of `http: {abort: {status: 503}, share: 0%}` held on h1: the latency of sequential requests on
//! one kept-alive connection (p50/p99 of N, default 5000), and the throughput of 4 kept-alive
//! connections in parallel (requests/s over 3 s, at most 200k requests). Printed: the added p50
//! and p99 and the throughput's ratio (goals: p50 +0.3 ms or less, ratio at least 80 %).
//!
//! Part 5 (root; Podman): what containers cost: resolving a `container` selector among N
//! containers, and the added apply time of `inside:` ([`containers`]).
//!
//!     scripts/bench [--agents N[,N...]] [--rounds R] [--no-net] [--http-only] [--containers N]
//!                   [--containers-only] [--keep] [--agent-state DIR] [--max-in-flight N] [--tiny]
//!
//! `--http-only` runs part 4 alone, `--containers-only` part 5. `--max-in-flight N` sets part 1's
//! `settings.max_in_flight` (the run's limit on calls to agents in flight; docs/scale.md). `--tiny` (what CI runs, so that the benchmark cannot rot) is 3
//! agents, one round, 1 s idle windows, 5 pings, 20 MB, 200 requests and 0.5 s of throughput. Everything it starts (agents, sleeps, chaosctl, the lab) is
//! stopped or deleted at its end, whatever happens. Traffic goes only to 127.0.0.1 and to the
//! lab's own namespaces. Benchmark only: never used by the tests.
#![allow(clippy::disallowed_types)]

mod containers;

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use chaos_tests::bins;
use chaos_tests::lab::Lab;
use chaos_tests::ping::Ping;
use chaos_tests::support::{Report, Running, Test, free_port, proc_state, read_events};
use nix::sys::signal::Signal;
use serde_json::Value;

struct Args {
    /// Fleet sizes of part 1, each measured on its own (`--agents 10,100,300`).
    agents: Vec<usize>,
    rounds: usize,
    net: bool,
    keep: bool,
    agent_state: Option<PathBuf>,
    /// The idle window of part 2.
    idle: Duration,
    /// Pings per RTT figure.
    pings: u32,
    /// Bytes per transfer.
    transfer: usize,
    /// How long a latency fault holds while it is pinged through.
    hold: &'static str,
    /// Part 4 only.
    http_only: bool,
    /// Sequential requests per latency figure of part 4.
    http_requests: usize,
    /// How long part 4's throughput is measured.
    http_window: Duration,
    /// Part 5's fleet of containers.
    containers: usize,
    /// Part 5 only.
    containers_only: bool,
    /// Part 1's `settings.max_in_flight` (none: the default), to see what the limit on calls in
    /// flight does to the curve.
    max_in_flight: Option<usize>,
}

impl Args {
    fn parse() -> anyhow::Result<Args> {
        let mut args = Args {
            agents: vec![100],
            rounds: 2,
            net: true,
            keep: false,
            agent_state: None,
            idle: Duration::from_secs(5),
            pings: 20,
            transfer: 200 * 1000 * 1000,
            hold: "8s",
            http_only: false,
            http_requests: 5000,
            http_window: Duration::from_secs(3),
            containers: 100,
            containers_only: false,
            max_in_flight: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
            match arg.as_str() {
                // What `cargo bench` passes to a bench without libtest's harness.
                "--bench" => {}
                "--agents" => args.agents = sizes(&value("--agents")?)?,
                "--rounds" => args.rounds = value("--rounds")?.parse()?,
                "--no-net" => args.net = false,
                "--http-only" => args.http_only = true,
                "--containers" => args.containers = value("--containers")?.parse()?,
                "--containers-only" => args.containers_only = true,
                "--keep" => args.keep = true,
                "--agent-state" => args.agent_state = Some(value("--agent-state")?.into()),
                "--max-in-flight" => {
                    args.max_in_flight = Some(value("--max-in-flight")?.parse()?);
                }
                "--tiny" => {
                    args.agents = vec![3];
                    args.rounds = 1;
                    args.idle = Duration::from_secs(1);
                    args.pings = 5;
                    args.transfer = 20 * 1000 * 1000;
                    args.hold = "3s";
                    args.http_requests = 200;
                    args.http_window = Duration::from_millis(500);
                    args.containers = 3;
                }
                other => bail!(
                    "unknown argument `{other}`; use --agents N[,N...], --rounds R, --no-net, \
                     --http-only, --containers N, --containers-only, --keep, --agent-state DIR, \
                     --max-in-flight N, --tiny"
                ),
            }
        }
        Ok(args)
    }
}

/// `10,100,300`: fleet sizes, each at least 1.
fn sizes(list: &str) -> anyhow::Result<Vec<usize>> {
    list.split(',')
        .map(|n| match n.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("--agents takes fleet sizes like `100` or `10,100,300`, not `{list}`"),
        })
        .collect()
}

fn main() -> ExitCode {
    match Args::parse().and_then(|args| bench(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench agents: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &Args) -> anyhow::Result<()> {
    let work = tempfile::Builder::new()
        .prefix("chaos-bench-agents-")
        .tempdir()?;
    println!(
        "{} CPUs, load {}; chaosctl {}",
        thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg(),
        bins::chaosctl().display()
    );
    let mut rows = Vec::new();
    if args.http_only {
        match Lab::new() {
            Some(lab) => http_proxy(args, &lab, work.path(), &mut rows)?,
            None => rows.push(row("http proxy", "skipped: no lab here (see above)", "")),
        }
        table(&rows);
        return Ok(());
    }
    if args.containers_only {
        containers::containers(args.containers, args.rounds, &mut rows)?;
        table(&rows);
        return Ok(());
    }
    let mut fleets = Vec::new();
    for &n in &args.agents {
        fleets.push(many_agents(args, n, work.path(), &mut rows)?);
    }
    scale_rows(&fleets, &mut rows);
    if fleets.len() > 1 {
        // A scale run: the network, the proxy and containers do not depend on the fleet's size.
        rows.push(row("parts 3 to 5", "skipped: several fleet sizes", ""));
    } else if !args.net {
        rows.push(row(
            "latency precision, throughput",
            "skipped: --no-net",
            "",
        ));
    } else if let Some(lab) = Lab::new() {
        network(args, &lab, &mut rows)?;
        http_proxy(args, &lab, work.path(), &mut rows)?;
    } else {
        rows.push(row(
            "latency precision, throughput",
            "skipped: the lab cannot be built here (see above)",
            "",
        ));
    }
    if fleets.len() == 1 {
        containers::containers(args.containers, args.rounds, &mut rows)?;
    }
    println!("load at the end {}", loadavg());
    table(&rows);
    if args.keep {
        println!("kept {}", work.keep().display());
    }
    Ok(())
}

// ---- part 1 and 2: many agents on 127.0.0.1 ---------------------------------------------------

/// A child killed (SIGKILL: a paused process acts on nothing else) and reaped when dropped.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An agent; SIGTERM (it reverts what it holds), then SIGKILL after a few seconds.
struct Agent {
    child: Child,
    url: String,
    state: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn many_agents(args: &Args, n: usize, work: &Path, rows: &mut Vec<Row>) -> anyhow::Result<Fleet> {
    raise_fd_limit(n)?;
    let token = work.join("token");
    fs::write(&token, format!("bench-token-{}\n", std::process::id()))?;
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600))?;

    let sleeps: Vec<Owned> = (0..n)
        .map(|i| {
            Command::new("sleep")
                .arg(format!("7000{i}"))
                .stdin(Stdio::null())
                .spawn()
                .map(Owned)
        })
        .collect::<Result<_, _>>()?;
    let spids: Vec<i32> = sleeps.iter().map(|s| s.0.id() as i32).collect();

    let state_root = match &args.agent_state {
        Some(dir) => tempfile::Builder::new()
            .prefix("chaos-bench-agents-")
            .tempdir_in(dir)?,
        None => tempfile::Builder::new()
            .prefix("agents-")
            .tempdir_in(work)?,
    };
    let agents: Vec<Agent> = (0..n)
        .map(|i| start_agent(&state_root.path().join(i.to_string()), &token))
        .collect::<anyhow::Result<_>>()?;
    let apids: Vec<i32> = agents.iter().map(|a| a.child.id() as i32).collect();
    let fstype = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(state_root.path())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!(
        "started {n} agents (state directories on {fstype}: {}) and {n} sleep processes (load {})",
        state_root.path().display(),
        loadavg()
    );

    thread::sleep(Duration::from_secs(1));
    let idle_before = idle_figures(&apids, args.idle);

    let urls: Vec<&str> = agents.iter().map(|a| a.url.as_str()).collect();
    let mut rounds = Vec::new();
    for r in 0..args.rounds {
        let load = loadavg();
        // (a) a whole run: apply, hold 2 s, revert.
        let cpu0 = cpu_ms(&apids);
        let mut run = BenchRun::start(&many_scenario(
            &urls,
            &spids,
            &token,
            "2s",
            "10s",
            args.max_in_flight,
        ));
        run.wait_events("fault_applied", n, Duration::from_secs(60))?;
        let rc = run.finish();
        let agent_cpu = (cpu_ms(&apids) - cpu0) / n as f64;
        let evs = run.events();
        let a = RoundA {
            controller: run.usage(),
            apply: apply_figures(&run, &evs),
            spread: spread(&run.report()),
            rc,
            agent_cpu,
            revert: ms_between(
                at(&evs, "fault_reverted", first),
                at(&evs, "fault_reverted", last),
            ),
        };

        // (b) SIGINT during the hold.
        let mut run = BenchRun::start(&many_scenario(
            &urls,
            &spids,
            &token,
            "60s",
            "10s",
            args.max_in_flight,
        ));
        run.wait_events("fault_applied", n, Duration::from_secs(60))?;
        wait_states(&spids, true, Duration::from_secs(5));
        thread::sleep(Duration::from_millis(300));
        let sig_wall = now();
        let sig = Instant::now();
        run.signal(Signal::SIGINT);
        let (done, left) = wait_states(&spids, false, Duration::from_secs(10));
        let rc = run.finish();
        let evs = run.events();
        let last_reverted = at(&evs, "fault_reverted", last);
        let aborted = at(&evs, "aborted", first);
        let b = RoundB {
            apply: apply_figures(&run, &evs),
            spread: spread(&run.report()),
            clean: (left == 0).then(|| ms(done - sig)),
            sig_to_first_reverted: ms_between(Some(sig_wall), at(&evs, "fault_reverted", first)),
            sig_to_last_reverted: ms_between(Some(sig_wall), last_reverted),
            sig_to_aborted: ms_between(Some(sig_wall), aborted),
            aborted_to_last_reverted: ms_between(aborted, last_reverted),
            rc,
        };

        // (c) SIGKILL during the hold, lease 1 s: the agents revert on their own.
        let mut run = BenchRun::start(&many_scenario(
            &urls,
            &spids,
            &token,
            "60s",
            "1s",
            args.max_in_flight,
        ));
        let evs = run.wait_events("fault_applied", n, Duration::from_secs(60))?;
        let last_applied = at(&evs, "fault_applied", last);
        wait_states(&spids, true, Duration::from_secs(5));
        thread::sleep(Duration::from_millis(300));
        let sig_wall = now();
        let sig = Instant::now();
        run.signal(Signal::SIGKILL);
        let (done, left) = wait_states(&spids, false, Duration::from_secs(10));
        let _ = run.finish();
        let c = RoundC {
            apply: apply_figures(&run, &evs),
            clean: (left == 0).then(|| ms(done - sig)),
            applied_to_clean: match (left, last_applied) {
                (0, Some(applied)) => Some(ms(done - sig) + (sig_wall - applied) * 1000.0),
                _ => None,
            },
        };
        println!(
            "round {}: apply {} ms, abort→clean {} ms, SIGKILL→clean {} ms (load {load})",
            r + 1,
            fmt(a.apply.apply, 0),
            fmt(b.clean, 0),
            fmt(c.clean, 0)
        );
        rounds.push((a, b, c));
    }

    thread::sleep(Duration::from_secs(1));
    let idle_after = idle_figures(&apids, args.idle);
    // The agents audit every request: none may have failed one.
    let failed: usize = agents
        .iter()
        .map(|a| {
            fs::read_to_string(a.state.join("audit.jsonl"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("\"outcome\":\"failed\""))
                .count()
        })
        .sum();
    drop(agents);
    drop(sleeps);
    if !args.keep {
        drop(state_root);
    } else {
        let _ = state_root.keep();
    }

    rounds_rows(n, &rounds, rows);
    let fleet = Fleet::of(n, &rounds, failed);
    for (label, fig) in [
        ("before the runs", idle_before),
        ("after the runs", idle_after),
    ] {
        rows.push(row(
            &format!("agent idle RSS, median / max ({label}, {} agents)", fig.n),
            &format!("{:.2} / {:.2} MiB", fig.rss.0, fig.rss.1),
            "< 8 MiB",
        ));
        rows.push(row(
            &format!(
                "agent idle CPU over {} s, median / max ({label})",
                args.idle.as_secs()
            ),
            &format!("{:.3} / {:.3} ms", fig.cpu.0, fig.cpu.1),
            "",
        ));
    }
    rows.push(row(
        "agent requests audited as failed",
        &failed.to_string(),
        "0",
    ));
    Ok(fleet)
}

/// Raises this process's soft limit of open files to its hard limit, which the agents and
/// chaosctl inherit: chaosctl holds a connection to every agent, on top of its own files.
fn raise_fd_limit(agents: usize) -> anyhow::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let needed = agents as u64 + 256;
    if soft < needed {
        if hard < needed {
            bail!(
                "{agents} agents need about {needed} open files and the hard limit is {hard}; \
                 raise it (ulimit -Hn, or LimitNOFILE= in systemd) and run again"
            );
        }
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(())
}

/// An agent on 127.0.0.1 (plain HTTP) with state in `state`, once it answers `/healthz`.
fn start_agent(state: &Path, token: &Path) -> anyhow::Result<Agent> {
    fs::create_dir_all(state)?;
    for _attempt in 0..3 {
        let port = free_port();
        let log = fs::File::create(state.join("agent.log"))?;
        let child = Command::new(bins::chaos_agent())
            .args(["--listen", &format!("127.0.0.1:{port}"), "--token-file"])
            .arg(token)
            .arg("--state-dir")
            .arg(state)
            .env_remove("CHAOS_AGENT_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()?;
        let mut agent = Agent {
            child,
            url: format!("http://127.0.0.1:{port}"),
            state: state.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && agent.child.try_wait()?.is_none() {
            if healthz(port) {
                return Ok(agent);
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = agent.child.kill();
    }
    bail!("an agent did not start; see {}/agent.log", state.display())
}

/// Whether `GET /healthz` on 127.0.0.1:`port` answers 200.
fn healthz(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

/// One pause per host, of that host's sleep by `pid`: a `name` or `pattern` selector makes every
/// agent read the command line of every process on the machine, and on this machine that is the
/// whole fleet's (N agents, N sleeps): work per agent that grows with the fleet, which no real
/// fleet has.
fn many_scenario(
    urls: &[&str],
    pids: &[i32],
    token: &Path,
    hold: &str,
    lease: &str,
    max_in_flight: Option<usize>,
) -> String {
    let mut yaml = String::from("version: 1\nname: many-agents\nhosts:\n");
    for (i, url) in urls.iter().enumerate() {
        yaml.push_str(&format!(
            "  h{i:03}: {{agent: \"{url}\", token_file: \"{}\"}}\n",
            token.display()
        ));
    }
    yaml.push_str("steps:\n  - name: pause one sleep on every host\n    faults:\n");
    for (i, pid) in pids.iter().enumerate() {
        yaml.push_str(&format!(
            "      - {{target: h{i:03}, pause: {{process: {{pid: {pid}}}}}}}\n"
        ));
    }
    yaml.push_str(&format!(
        "    duration: {hold}\n    recover_within: 5s\nsettings:\n  max_hosts: {}\n  lease: {lease}\n",
        urls.len()
    ));
    if let Some(n) = max_in_flight {
        yaml.push_str(&format!("  max_in_flight: {n}\n"));
    }
    yaml
}

/// One `chaosctl run --output json` through the harness, and when it was launched.
struct BenchRun {
    test: Test,
    /// Seconds since the epoch.
    launched: f64,
    running: Option<Running>,
    /// chaosctl's CPU time and peak memory, watched until it ends.
    watch: Option<thread::JoinHandle<Usage>>,
    usage: Option<Usage>,
}

impl BenchRun {
    fn start(yaml: &str) -> BenchRun {
        let test = Test::new().scenario(yaml).arg("--output").arg("json");
        let launched = now();
        let running = test.spawn_run();
        let pid = running.pid().as_raw();
        BenchRun {
            test,
            launched,
            running: Some(running),
            watch: Some(thread::spawn(move || Usage::watch(pid))),
            usage: None,
        }
    }

    /// chaosctl's CPU time and peak memory over the whole run (after [`BenchRun::finish`]).
    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn signal(&self, signal: Signal) {
        self.running.as_ref().expect("running").signal(signal);
    }

    /// Waits (bounded) for chaosctl to end: its exit code.
    fn finish(&mut self) -> Option<i32> {
        let code = self.running.take().expect("running").wait().code;
        self.usage = self.watch.take().and_then(|w| w.join().ok());
        code
    }

    fn events(&self) -> Vec<Value> {
        events_of(&self.test)
    }

    fn report(&self) -> Option<Report> {
        report_of(&self.test)
    }

    /// Waits until `count` events of `kind` are written; fails if the run ends or fails first.
    fn wait_events(
        &self,
        kind: &str,
        count: usize,
        within: Duration,
    ) -> anyhow::Result<Vec<Value>> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let evs = self.events();
            if evs.iter().filter(|e| e["kind"] == kind).count() >= count {
                return Ok(evs);
            }
            let failed: Vec<&str> = evs
                .iter()
                .filter(|e| {
                    ["fault_failed", "preflight_failed", "run_ended"]
                        .contains(&e["kind"].as_str().unwrap_or_default())
                })
                .filter_map(|e| e["message"].as_str())
                .collect();
            if !failed.is_empty() {
                bail!("the run ended early: {}", failed.join("; "));
            }
            // Not more often: reading a fleet's events takes CPU that chaosctl is measured on.
            thread::sleep(Duration::from_millis(20));
        }
        bail!("no {count} `{kind}` events within {within:?}")
    }
}

/// What a process used: CPU time (user and system, its ended threads included) and peak
/// resident memory (VmHWM).
#[derive(Clone, Copy)]
struct Usage {
    cpu_ms: f64,
    peak_kib: f64,
}

impl Usage {
    /// Samples `pid` every 5 ms until it has ended: the last CPU time read (a zombie still
    /// shows its final one, until chaosctl's harness reaps it) and the last VmHWM (a zombie has
    /// none; the high-water mark only grows, so the last live one is at most 5 ms old).
    fn watch(pid: i32) -> Usage {
        let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as f64;
        let mut usage = Usage {
            cpu_ms: f64::NAN,
            peak_kib: f64::NAN,
        };
        while let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
            // After the command's `(name)`: state is field 3, utime and stime 14 and 15.
            let Some(fields) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
                break;
            };
            let fields: Vec<&str> = fields.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i - 3)?.parse::<f64>().ok();
            if let (Some(user), Some(system)) = (ticks(14), ticks(15)) {
                usage.cpu_ms = (user + system) / tick * 1000.0;
            }
            if fields.first() == Some(&"Z") {
                break;
            }
            if let Some(kib) = status_kib(pid, "VmHWM:") {
                usage.peak_kib = kib;
            }
            thread::sleep(Duration::from_millis(5));
        }
        usage
    }
}

fn events_of(test: &Test) -> Vec<Value> {
    test.report_folders()
        .first()
        .map(|folder| read_events(&folder.join("events.jsonl")))
        .unwrap_or_default()
}

fn report_of(test: &Test) -> Option<Report> {
    let folder = test.report_folders().into_iter().next()?;
    folder
        .join("report.json")
        .is_file()
        .then(|| Report::read(&folder))
}

/// The earliest or the latest of a set of times.
fn first(times: &[f64]) -> Option<f64> {
    times.iter().copied().reduce(f64::min)
}

fn last(times: &[f64]) -> Option<f64> {
    times.iter().copied().reduce(f64::max)
}

/// The time (seconds since the epoch) of the first or last event of `kind`.
fn at(evs: &[Value], kind: &str, pick: fn(&[f64]) -> Option<f64>) -> Option<f64> {
    let times: Vec<f64> = evs
        .iter()
        .filter(|e| e["kind"] == kind)
        .filter_map(|e| parse_ts(e["at"].as_str()?))
        .collect();
    pick(&times)
}

/// RFC 3339 → seconds since the epoch.
fn parse_ts(at: &str) -> Option<f64> {
    let t = chrono::DateTime::parse_from_rfc3339(at).ok()?;
    Some(t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(f64::NAN, |d| d.as_secs_f64())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ms_between(from: Option<f64>, to: Option<f64>) -> Option<f64> {
    Some((to? - from?) * 1000.0)
}

struct Apply {
    /// Step start → last `fault_applied`.
    apply: Option<f64>,
    /// Step start → first `fault_applied`.
    first: Option<f64>,
    /// chaosctl launched → step start.
    launch: Option<f64>,
    /// `run_started` → `preflight_passed`.
    preflight: Option<f64>,
    /// chaosctl launched → first `fault_applied`: what a user waits for the first fault.
    first_injection: Option<f64>,
}

fn apply_figures(run: &BenchRun, evs: &[Value]) -> Apply {
    let step = at(evs, "step_started", first);
    Apply {
        apply: ms_between(step, at(evs, "fault_applied", last)),
        first: ms_between(step, at(evs, "fault_applied", first)),
        launch: ms_between(Some(run.launched), step),
        preflight: ms_between(
            at(evs, "run_started", first),
            at(evs, "preflight_passed", first),
        ),
        first_injection: ms_between(Some(run.launched), at(evs, "fault_applied", first)),
    }
}

/// The agents' `applied_at` over hosts: p50, p99 and max, minus the first.
fn spread(report: &Option<Report>) -> Option<(f64, f64, f64)> {
    let report = report.as_ref()?;
    let times: Vec<f64> = report
        .faults()
        .iter()
        .filter_map(|f| parse_ts(f["applied_at"].as_str()?))
        .collect();
    let base = first(&times)?;
    let d: Vec<f64> = times.iter().map(|t| (t - base) * 1000.0).collect();
    Some((percentile(&d, 0.5), percentile(&d, 0.99), last(&d)?))
}

fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let k = (v.len() - 1) as f64 * q;
    let (lo, hi) = (k as usize, (k as usize + 1).min(v.len() - 1));
    v[lo] + (v[hi] - v[lo]) * (k - lo as f64)
}

/// Polls every ~1 ms until every pid is (`stopped`) or is not (`!stopped`) in state T: when the
/// last one got there, and how many did not within `within`.
fn wait_states(pids: &[i32], stopped: bool, within: Duration) -> (Instant, usize) {
    let mut left: Vec<i32> = pids.to_vec();
    let deadline = Instant::now() + within;
    let mut last = Instant::now();
    while !left.is_empty() && Instant::now() < deadline {
        left.retain(|&pid| (proc_state(pid) == Some('T')) != stopped);
        last = Instant::now();
        if !left.is_empty() {
            thread::sleep(Duration::from_millis(1));
        }
    }
    (last, left.len())
}

/// CPU time of a process, threads included (schedstat, in ns), in ms; utime+stime without it.
fn cpu_of(pid: i32) -> Option<f64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut ns = 0u64;
    for task in tasks.flatten() {
        let stat = fs::read_to_string(task.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e6)
}

fn cpu_ms(pids: &[i32]) -> f64 {
    pids.iter().filter_map(|&p| cpu_of(p)).sum()
}

fn rss_kib(pid: i32) -> Option<f64> {
    status_kib(pid, "VmRSS:")
}

/// A `kB` line of /proc/PID/status (`VmRSS:`, `VmHWM:`).
fn status_kib(pid: i32, key: &str) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Idle {
    n: usize,
    /// MiB: median, max.
    rss: (f64, f64),
    /// ms over the window: median, max.
    cpu: (f64, f64),
}

/// RSS and CPU of each agent while idle.
fn idle_figures(pids: &[i32], window: Duration) -> Idle {
    let before: Vec<Option<f64>> = pids.iter().map(|&p| cpu_of(p)).collect();
    thread::sleep(window);
    let mut rss = Vec::new();
    let mut cpu = Vec::new();
    for (&pid, before) in pids.iter().zip(before) {
        if let (Some(before), Some(after), Some(kib)) = (before, cpu_of(pid), rss_kib(pid)) {
            cpu.push(after - before);
            rss.push(kib / 1024.0);
        }
    }
    let max = |v: &[f64]| last(v).unwrap_or(f64::NAN);
    Idle {
        n: rss.len(),
        rss: (percentile(&rss, 0.5), max(&rss)),
        cpu: (percentile(&cpu, 0.5), max(&cpu)),
    }
}

struct RoundA {
    /// chaosctl over the whole run.
    controller: Option<Usage>,
    apply: Apply,
    spread: Option<(f64, f64, f64)>,
    rc: Option<i32>,
    agent_cpu: f64,
    revert: Option<f64>,
}

struct RoundB {
    apply: Apply,
    spread: Option<(f64, f64, f64)>,
    clean: Option<f64>,
    sig_to_first_reverted: Option<f64>,
    sig_to_last_reverted: Option<f64>,
    sig_to_aborted: Option<f64>,
    aborted_to_last_reverted: Option<f64>,
    rc: Option<i32>,
}

struct RoundC {
    apply: Apply,
    clean: Option<f64>,
    applied_to_clean: Option<f64>,
}

/// One fleet size's figures for the scale table: medians over the rounds.
struct Fleet {
    n: usize,
    first_injection: Option<f64>,
    /// Max `applied_at` minus min, runs (a) and (b).
    spread: Option<f64>,
    /// SIGINT → every sleep out of T, run (b).
    abort_clean: Option<f64>,
    /// chaosctl's CPU time and peak RSS over run (a).
    controller_cpu_ms: Option<f64>,
    controller_peak_kib: Option<f64>,
    /// One agent's CPU for run (a), which gives it one fault: preflight, apply, lease, revert.
    agent_cpu_ms: Option<f64>,
    failed: usize,
}

impl Fleet {
    fn of(n: usize, rounds: &[(RoundA, RoundB, RoundC)], failed: usize) -> Fleet {
        let median = |values: Vec<Option<f64>>| {
            let values: Vec<f64> = values.into_iter().flatten().collect();
            (!values.is_empty()).then(|| percentile(&values, 0.5))
        };
        let of_a =
            |get: fn(&RoundA) -> Option<f64>| median(rounds.iter().map(|r| get(&r.0)).collect());
        Fleet {
            n,
            first_injection: of_a(|a| a.apply.first_injection),
            spread: median(
                rounds
                    .iter()
                    .flat_map(|(a, b, _)| [a.spread, b.spread])
                    .map(|s| s.map(|(_, _, max)| max))
                    .collect(),
            ),
            abort_clean: median(rounds.iter().map(|r| r.1.clean).collect()),
            controller_cpu_ms: of_a(|a| a.controller.map(|u| u.cpu_ms)),
            controller_peak_kib: of_a(|a| a.controller.map(|u| u.peak_kib)),
            agent_cpu_ms: of_a(|a| Some(a.agent_cpu)),
            failed,
        }
    }
}

/// The scale table: each fleet size's figures against the goals, and, with several sizes, what
/// one more agent costs chaosctl (the slope between the smallest and the largest fleet).
fn scale_rows(fleets: &[Fleet], rows: &mut Vec<Row>) {
    for f in fleets {
        let n = f.n;
        let per_agent = |v: Option<f64>| v.map(|v| v / n as f64);
        rows.push(row(
            &format!("scale {n}: chaosctl launch → first fault_applied"),
            &format!("{} ms", fmt(f.first_injection, 0)),
            "< 2000 ms at 300",
        ));
        rows.push(row(
            &format!("scale {n}: apply spread, last − first applied_at"),
            &format!("{} ms", fmt(f.spread, 1)),
            "< 1 ms per agent (100: 100 ms, 300: 300 ms)",
        ));
        rows.push(row(
            &format!("scale {n}: SIGINT → all clean"),
            &format!("{} ms", fmt(f.abort_clean, 0)),
            "< 100 ms",
        ));
        rows.push(row(
            &format!("scale {n}: chaosctl CPU for the run, total / per agent"),
            &format!(
                "{} / {} ms",
                fmt(f.controller_cpu_ms, 0),
                fmt(per_agent(f.controller_cpu_ms), 2)
            ),
            "",
        ));
        rows.push(row(
            &format!("scale {n}: chaosctl peak RSS, total / per agent"),
            &format!(
                "{} MiB / {} KiB",
                fmt(f.controller_peak_kib.map(|k| k / 1024.0), 1),
                fmt(per_agent(f.controller_peak_kib), 0)
            ),
            "",
        ));
        rows.push(row(
            &format!("scale {n}: an agent's CPU per fault (preflight to revert)"),
            &format!("{} ms", fmt(f.agent_cpu_ms, 2)),
            "",
        ));
        rows.push(row(
            &format!("scale {n}: agent requests audited as failed"),
            &f.failed.to_string(),
            "0",
        ));
    }
    let (Some(small), Some(large)) = (fleets.first(), fleets.last()) else {
        return;
    };
    if large.n <= small.n {
        return;
    }
    let added = large.n.saturating_sub(small.n) as f64;
    let slope = |get: fn(&Fleet) -> Option<f64>| Some((get(large)? - get(small)?) / added);
    rows.push(row(
        &format!(
            "scale: chaosctl per added agent, {} → {}: peak RSS",
            small.n, large.n
        ),
        &format!("{} KiB", fmt(slope(|f| f.controller_peak_kib), 1)),
        "< 64 KiB",
    ));
    rows.push(row(
        &format!(
            "scale: chaosctl per added agent, {} → {}: CPU",
            small.n, large.n
        ),
        &format!("{} ms", fmt(slope(|f| f.controller_cpu_ms), 2)),
        "",
    ));
}

fn rounds_rows(n: usize, rounds: &[(RoundA, RoundB, RoundC)], rows: &mut Vec<Row>) {
    let per = |get: &dyn Fn(&(RoundA, RoundB, RoundC)) -> String| {
        rounds.iter().map(get).collect::<Vec<_>>().join(" ; ")
    };
    let spread_text = |s: &Option<(f64, f64, f64)>| match s {
        Some((p50, p99, max)) => format!("{p50:.1}/{p99:.1}/{max:.1} ms"),
        None => "-".into(),
    };
    rows.push(row(
        &format!(
            "apply on {n} agents: step_started → last fault_applied [(a) / (b) / (c) per round]"
        ),
        &per(&|(a, b, c)| {
            format!(
                "{}/{}/{} ms",
                fmt(a.apply.apply, 0),
                fmt(b.apply.apply, 0),
                fmt(c.apply.apply, 0)
            )
        }),
        "< 50 ms",
    ));
    rows.push(row(
        "  step_started → first fault_applied (a)",
        &per(&|(a, _, _)| format!("{} ms", fmt(a.apply.first, 1))),
        "",
    ));
    rows.push(row(
        "  applied_at spread over hosts, p50/p99/max − min (a)",
        &per(&|(a, _, _)| spread_text(&a.spread)),
        "",
    ));
    rows.push(row(
        "  applied_at spread over hosts, p50/p99/max − min (b)",
        &per(&|(_, b, _)| spread_text(&b.spread)),
        "",
    ));
    rows.push(row(
        "  chaosctl launch → step_started (a)",
        &per(&|(a, _, _)| format!("{} ms", fmt(a.apply.launch, 0))),
        "",
    ));
    rows.push(row(
        "  run_started → preflight_passed (a)",
        &per(&|(a, _, _)| format!("{} ms", fmt(a.apply.preflight, 0))),
        "",
    ));
    rows.push(row(
        "  agent CPU per host for the whole run (a): preflight, apply, revert",
        &per(&|(a, _, _)| format!("{:.1} ms", a.agent_cpu)),
        "",
    ));
    rows.push(row(
        "  normal end: first → last fault_reverted (a)",
        &per(&|(a, _, _)| format!("{} ms", fmt(a.revert, 0))),
        "",
    ));
    rows.push(row(
        "  exit codes (a) / (b)",
        &per(&|(a, b, _)| format!("{:?}/{:?}", a.rc, b.rc)),
        "0 / 3",
    ));
    rows.push(row(
        &format!("(b) SIGINT → all {n} sleeps out of T (/proc)"),
        &per(&|(_, b, _)| format!("{} ms", fmt(b.clean, 0))),
        "< 100 ms",
    ));
    rows.push(row(
        "    SIGINT → first / last fault_reverted (events)",
        &per(&|(_, b, _)| {
            format!(
                "{}/{} ms",
                fmt(b.sig_to_first_reverted, 0),
                fmt(b.sig_to_last_reverted, 0)
            )
        }),
        "",
    ));
    rows.push(row(
        "    SIGINT → `aborted` event",
        &per(&|(_, b, _)| format!("{} ms", fmt(b.sig_to_aborted, 0))),
        "",
    ));
    rows.push(row(
        "    `aborted` → last fault_reverted (events)",
        &per(&|(_, b, _)| format!("{} ms", fmt(b.aborted_to_last_reverted, 0))),
        "",
    ));
    rows.push(row(
        &format!("(c) SIGKILL → all {n} sleeps out of T, lease 1s"),
        &per(&|(_, _, c)| format!("{} ms", fmt(c.clean, 0))),
        "≤ 1000 ms (lease)",
    ));
    rows.push(row(
        "    last fault_applied → all out of T",
        &per(&|(_, _, c)| format!("{} ms", fmt(c.applied_to_clean, 0))),
        "≤ 1000 ms + renewal",
    ));
}

// ---- part 3: network faults in the lab --------------------------------------------------------

fn latency_scenario(delay: &str, hold: &str) -> String {
    format!(
        "version: 1\nname: latency-{delay}\nsteps:\n  - name: delay {delay}\n    target: h1\n    \
         fault: {{latency: {{delay: {delay}}}}}\n    duration: {hold}\n    recover_within: 5s\n"
    )
}

fn network(args: &Args, lab: &Lab, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let ping = |lab: &Lab| lab.ping("h2", "h1", args.pings, "0.2");
    let base = ping(lab);
    rows.push(row(
        "ping RTT without fault, avg / mdev",
        &format!("{:.3} / {:.3} ms", base.avg_ms, base.mdev_ms),
        "",
    ));
    for (delay, want) in [("50ms", 50.0), ("200ms", 200.0)] {
        let test = lab.test(&latency_scenario(delay, args.hold));
        let running = test.spawn_run();
        chaos_tests::lab::wait_applied(&test, "h1", Duration::from_secs(30));
        let slow: Ping = ping(lab);
        let out = running.wait();
        let mechanism = mechanism(&test);
        rows.push(row(
            &format!("ping RTT with latency {delay} ({mechanism}), avg / mdev"),
            &format!(
                "{:.2} / {:.2} ms (added {:.2}, error {:+.2}; exit {:?})",
                slow.avg_ms,
                slow.mdev_ms,
                slow.avg_ms - base.avg_ms,
                slow.avg_ms - base.avg_ms - want,
                out.code
            ),
            &format!("+{want} ms"),
        ));
    }
    let after = ping(lab);
    rows.push(row(
        "ping RTT without fault afterwards, avg / mdev",
        &format!("{:.3} / {:.3} ms", after.avg_ms, after.mdev_ms),
        "",
    ));

    // Throughput into h1 (ingress there is what the NFQUEUE holder delays).
    let mb = args.transfer / 1_000_000;
    for _ in 0..args.rounds {
        let bare = transfer(lab, args.transfer)?;
        let test = lab.test(&latency_scenario("0ms", "60s"));
        let running = test.spawn_run();
        chaos_tests::lab::wait_applied(&test, "h1", Duration::from_secs(30));
        let faulted = transfer(lab, args.transfer)?;
        running.signal(Signal::SIGINT);
        let out = running.wait();
        let held = events_of(&test)
            .iter()
            .filter(|e| e["kind"] == "fault_reverted")
            .filter_map(|e| e["message"].as_str())
            .find_map(|m| {
                Some(
                    m.split("stopped after ")
                        .nth(1)?
                        .split_whitespace()
                        .next()?
                        .to_string(),
                )
            })
            .unwrap_or_else(|| "?".into());
        rows.push(row(
            &format!(
                "{mb} MB TCP into the agent's host, no fault / latency 0ms ({})",
                mechanism(&test)
            ),
            &format!(
                "{bare:.0} / {faulted:.0} MB/s ({:.0}%; {held} packets held; exit {:?})",
                faulted / bare * 100.0,
                out.code
            ),
            "",
        ));
    }
    rows.push(row(
        "nft tables and iptables chains of ours left in the lab's hosts",
        &lab.leftovers().len().to_string(),
        "0",
    ));
    Ok(())
}

/// The mechanism of the run's first fault (`nfqueue`, `netem`).
fn mechanism(test: &Test) -> String {
    report_of(test)
        .and_then(|r| {
            r.step(0)["faults"][0]["mechanism"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}

/// `bytes` from h2 into h1 over one TCP connection: MB/s, from the receiver's first byte to
/// the end.
fn transfer(lab: &Lab, bytes: usize) -> anyhow::Result<f64> {
    let addr = lab.host("h1").addr.clone();
    let (ready, port) = mpsc::channel();
    thread::scope(|scope| {
        let receiver = scope.spawn(|| {
            lab.within("h1", move || -> std::io::Result<(usize, Duration)> {
                let listener = TcpListener::bind((addr.as_str(), 0))?;
                let _ = ready.send(listener.local_addr()?);
                let (mut conn, _) = listener.accept()?;
                conn.set_read_timeout(Some(Duration::from_secs(20)))?;
                let mut buf = vec![0u8; 1 << 20];
                let (mut got, mut started) = (0, None);
                loop {
                    let k = conn.read(&mut buf)?;
                    if k == 0 {
                        break;
                    }
                    started.get_or_insert_with(Instant::now);
                    got += k;
                }
                Ok((got, started.map_or(Duration::ZERO, |s| s.elapsed())))
            })
        });
        let to = port
            .recv_timeout(Duration::from_secs(5))
            .context("the receiver did not start")?;
        lab.within("h2", move || -> std::io::Result<()> {
            let mut conn = TcpStream::connect_timeout(&to, Duration::from_secs(20))?;
            let chunk = vec![0u8; 1 << 20];
            let mut sent = 0;
            while sent < bytes {
                let k = chunk.len().min(bytes - sent);
                conn.write_all(&chunk[..k])?;
                sent += k;
            }
            conn.shutdown(Shutdown::Write)?;
            conn.set_read_timeout(Some(Duration::from_secs(20)))?;
            let _ = conn.read(&mut [0u8; 1]);
            Ok(())
        })?;
        let (got, took) = receiver
            .join()
            .map_err(|_| anyhow::anyhow!("the receiver panicked"))??;
        Ok(got as f64 / 1e6 / took.as_secs_f64())
    })
}

// ---- part 4: the http fault's proxy at share 0% ------------------------------------------------

const NGINX: &str = "/usr/sbin/nginx";

/// nginx on h1 (`GET /` answers `ok`), direct against through the proxy of an `http` fault that
/// hits nothing.
fn http_proxy(args: &Args, lab: &Lab, work: &Path, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    if !Path::new(NGINX).exists() {
        rows.push(row(
            "http proxy at share 0%",
            "skipped: no nginx (apt-get install nginx-light)",
            "",
        ));
        return Ok(());
    }
    let port: u16 = 18_180;
    let dir = work.join("nginx");
    fs::create_dir_all(dir.join("tmp"))?;
    let d = dir.display();
    fs::write(
        dir.join("nginx.conf"),
        format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  \
             client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n  \
             keepalive_requests 1000000;\n  server {{\n    listen {port};\n    \
             location = / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n"
        ),
    )?;
    let _nginx = Owned(
        Command::new("ip")
            .args(["netns", "exec", &lab.host("h1").ns, NGINX, "-p"])
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let to: std::net::SocketAddr = format!("{}:{port}", lab.host("h1").addr).parse()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.within("h2", move || Http1::new(to).get().is_err()) {
        if Instant::now() > deadline {
            bail!("nginx does not answer on h1");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let measure = |lab: &Lab| -> anyhow::Result<(Vec<f64>, f64)> {
        let n = args.http_requests;
        let window = args.http_window;
        let latencies = lab.within("h2", move || -> std::io::Result<Vec<f64>> {
            let mut c = Http1::new(to);
            for _ in 0..n.min(100) {
                c.get()?; // warm up
            }
            (0..n)
                .map(|_| {
                    let started = Instant::now();
                    c.get().map(|()| ms(started.elapsed()))
                })
                .collect()
        })?;
        let rate = lab.within("h2", move || -> std::io::Result<f64> {
            let started = Instant::now();
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    thread::spawn(move || -> std::io::Result<u64> {
                        let mut c = Http1::new(to);
                        let mut done = 0u64;
                        while started.elapsed() < window && done < 50_000 {
                            c.get()?;
                            done += 1;
                        }
                        Ok(done)
                    })
                })
                .collect();
            let mut total = 0;
            for w in workers {
                total += w
                    .join()
                    .map_err(|_| std::io::Error::other("a worker panicked"))??;
            }
            Ok(total as f64 / started.elapsed().as_secs_f64())
        })?;
        Ok((latencies, rate))
    };
    let (direct, direct_rate) = measure(lab)?;
    let yaml = format!(
        "version: 1\nname: http-share-0\nsettings: {{lease: 5s}}\nsteps:\n  - name: proxy everything, hit nothing\n    \
         target: h1\n    fault: {{http: {{port: {port}, abort: {{status: 503}}, share: 0%}}}}\n    duration: 120s\n"
    );
    let test = lab.test(&yaml);
    let running = test.spawn_run();
    chaos_tests::lab::wait_applied(&test, "h1", Duration::from_secs(30));
    let through = measure(lab);
    running.signal(Signal::SIGINT);
    let out = running.wait();
    let (proxied, proxied_rate) = through?;
    let passed = events_of(&test)
        .iter()
        .filter(|e| e["kind"] == "fault_reverted")
        .filter_map(|e| e["message"].as_str())
        .find_map(|m| m.split("the proxy passed ").nth(1).map(str::to_string))
        .unwrap_or_else(|| "?".into());
    let (d50, d99) = (percentile(&direct, 0.5), percentile(&direct, 0.99));
    let (p50, p99) = (percentile(&proxied, 0.5), percentile(&proxied, 0.99));
    rows.push(row(
        &format!("http GET direct, p50 / p99 of {}", direct.len()),
        &format!("{d50:.3} / {d99:.3} ms"),
        "",
    ));
    rows.push(row(
        "http GET through the proxy at share 0%, p50 / p99",
        &format!(
            "{p50:.3} / {p99:.3} ms (added {:+.3} / {:+.3} ms; exit {:?})",
            p50 - d50,
            p99 - d99,
            out.code
        ),
        "p50 +0.3 ms or less",
    ));
    rows.push(row(
        "http throughput, 4 kept-alive connections: direct / proxied",
        &format!(
            "{direct_rate:.0} / {proxied_rate:.0} requests/s ({:.0}%)",
            proxied_rate / direct_rate * 100.0
        ),
        "80% or more",
    ));
    rows.push(row("http proxy's own count", passed.trim(), ""));
    rows.push(row(
        "tables and proxies of ours left in the lab's hosts",
        &lab.leftovers().len().to_string(),
        "0",
    ));
    Ok(())
}

/// A minimal keep-alive HTTP/1.1 client of `GET /` (answers with a Content-Length).
struct Http1 {
    to: std::net::SocketAddr,
    conn: Option<std::io::BufReader<TcpStream>>,
}

impl Http1 {
    fn new(to: std::net::SocketAddr) -> Http1 {
        Http1 { to, conn: None }
    }

    fn get(&mut self) -> std::io::Result<()> {
        use std::io::BufRead;
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.to, Duration::from_secs(2))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            self.conn = Some(std::io::BufReader::new(s));
        }
        let conn = self.conn.as_mut().expect("connected");
        let result = (|| {
            conn.get_mut()
                .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")?;
            let mut line = String::new();
            let mut length = 0usize;
            conn.read_line(&mut line)?;
            if !line.starts_with("HTTP/1.1 200") {
                return Err(std::io::Error::other(format!("answered {line:?}")));
            }
            loop {
                line.clear();
                if conn.read_line(&mut line)? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                let l = line.trim_end().to_ascii_lowercase();
                if l.is_empty() {
                    break;
                }
                if let Some(v) = l.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            conn.read_exact(&mut body)
        })();
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

// ---- the table --------------------------------------------------------------------------------

struct Row {
    figure: String,
    measured: String,
    goal: String,
}

fn row(figure: &str, measured: &str, goal: &str) -> Row {
    Row {
        figure: figure.to_string(),
        measured: measured.to_string(),
        goal: goal.to_string(),
    }
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn table(rows: &[Row]) {
    let width = rows
        .iter()
        .map(|r| r.figure.chars().count())
        .max()
        .unwrap_or(0);
    let vw = rows
        .iter()
        .map(|r| r.measured.chars().count())
        .max()
        .unwrap_or(0);
    println!();
    println!("{:<width$}  {:<vw$}  goal", "figure", "measured");
    for r in rows {
        println!("{:<width$}  {:<vw$}  {}", r.figure, r.measured, r.goal);
    }
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
