//! `chaos-redis-writer`: the client side of the Redis drills (`scenarios/drills/redis-*`).
//!
//! - `write` adds sequence numbers 0, 1, 2, ... to a Redis set at a fixed rate (open loop: a slot
//!   that passes while the client is busy is logged as missed, not sent late) through the master
//!   that the sentinels name, and logs every attempt as one line: `SEQ ok|fail|missed UNIX_MS
//!   DETAIL`. `--client sentinel` asks the sentinels on every try, with short timeouts;
//!   `--client sticky` asks them once, then keeps one connection with no timeouts until it errs,
//!   like many real clients do.
//! - `check` reads back the set from the master the sentinels name and compares it with the log:
//!   how many acknowledged writes are missing (lost), how many failed; exits 1 when any was lost.
//! - `last` passes when the writer's latest attempt succeeded and is recent.
//! - `agree` passes when every sentinel names the same master and that master says it is one
//!   (`--master`: and it is that one, so no failover happened).
//! - `synced` passes when a replica's link to the master is up and it has caught up with the
//!   master's replication offset.
//!
//! Every command finds the master through the sentinels (`--sentinels`), or is given it
//! (`--master`, for a Redis without Sentinel).
//!
//! RESP is spoken by hand over `TcpStream`: the few commands used need nothing more. The program
//! is synchronous and blocking on purpose (one client, ten writes a second), so it measures time
//! with `std::time::Instant`, which no tokio clock is there to replace.
#![allow(clippy::disallowed_types)]

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};

/// The client and checker of the Redis Sentinel drills.
#[derive(Debug, Parser)]
#[command(name = "chaos-redis-writer", version)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

/// Where the sentinels are and what they call the master, or where the master is.
#[derive(Debug, clap::Args)]
struct Sentinels {
    /// The sentinels, `host:port` separated by commas.
    #[arg(long, value_delimiter = ',', required_unless_present = "master")]
    sentinels: Vec<String>,
    /// The master, `host:port`, when there are no sentinels to ask.
    #[arg(long, conflicts_with = "sentinels")]
    master: Option<String>,
    /// The master's name in the sentinels' configuration.
    #[arg(long, default_value = "drill")]
    master_name: String,
    /// Timeout of each connection, read and write to a sentinel, in milliseconds.
    #[arg(long, default_value_t = 100)]
    sentinel_timeout_ms: u64,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Write sequence numbers at a fixed rate and log each attempt; runs until killed.
    Write {
        #[command(flatten)]
        sentinels: Sentinels,
        /// The log of attempts (appended, one line each, written as it happens).
        #[arg(long)]
        log: PathBuf,
        /// Writes per second.
        #[arg(long, default_value_t = 10)]
        rate: u32,
        /// The set the sequence numbers are added to.
        #[arg(long, default_value = "chaos:drill:writes")]
        key: String,
        /// How the client finds the master and how long it waits.
        #[arg(long, value_enum, default_value_t = Client::Sentinel)]
        client: Client,
        /// Timeout of each connection, read and write to the master (`sentinel` client only).
        #[arg(long, default_value_t = 250)]
        timeout_ms: u64,
    },
    /// Read the set back from the master and count lost acknowledged writes; exit 1 if any.
    Check {
        #[command(flatten)]
        sentinels: Sentinels,
        #[arg(long)]
        log: PathBuf,
        #[arg(long, default_value = "chaos:drill:writes")]
        key: String,
        /// Also write the figures here, as JSON (replaced atomically).
        #[arg(long)]
        summary: Option<PathBuf>,
        /// Also exit 1 when writes were ever down (failed or missed) for longer than this.
        #[arg(long)]
        max_outage_ms: Option<u64>,
    },
    /// Pass when the latest attempt in the log succeeded within the last `--within-ms`.
    Last {
        #[arg(long)]
        log: PathBuf,
        #[arg(long, default_value_t = 500)]
        within_ms: u64,
    },
    /// Pass when every sentinel names the same master and it answers as a master.
    Agree {
        #[command(flatten)]
        sentinels: Sentinels,
        /// Also require each sentinel to know the others and a replica, and that replica to be in
        /// sync with the master (for `ready`).
        #[arg(long)]
        settled: bool,
        /// Also require the master they name to be this one (`host:port`): no failover happened.
        #[arg(long = "expect-master")]
        expect_master: Option<String>,
    },
    /// Pass when each replica's link to the master is up and it has the master's replication
    /// offset (as read just before), within `--within-ms`.
    Synced {
        #[command(flatten)]
        sentinels: Sentinels,
        /// The replicas, `host:port` separated by commas; the one that is the master now (after a
        /// failover) is left out.
        #[arg(long, value_delimiter = ',', required = true)]
        replica: Vec<String>,
        #[arg(long, default_value_t = 500)]
        within_ms: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Client {
    /// Asks the sentinels on every try; short timeouts.
    Sentinel,
    /// Asks the sentinels once, then keeps one connection with no timeouts until an error.
    Sticky,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Cmd::Write {
            sentinels,
            log,
            rate,
            key,
            client,
            timeout_ms,
        } => write_loop(
            &sentinels,
            &log,
            rate,
            &key,
            client,
            Duration::from_millis(timeout_ms),
        ),
        Cmd::Check {
            sentinels,
            log,
            key,
            summary,
            max_outage_ms,
        } => check(&sentinels, &log, &key, summary.as_deref(), max_outage_ms),
        Cmd::Last { log, within_ms } => last(&log, Duration::from_millis(within_ms)),
        Cmd::Agree {
            sentinels,
            settled,
            expect_master,
        } => agree(&sentinels, settled, expect_master.as_deref()),
        Cmd::Synced {
            sentinels,
            replica,
            within_ms,
        } => synced(&sentinels, &replica, Duration::from_millis(within_ms)),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // The last stderr line is what a failing `command` probe quotes: keep it one line.
            eprintln!("{err:#}");
            ExitCode::from(2)
        }
    }
}

// ---- RESP ---------------------------------------------------------------------------------------

/// One RESP reply.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    fn text(&self) -> Option<&str> {
        match self {
            Reply::Simple(s) | Reply::Bulk(Some(s)) => Some(s),
            _ => None,
        }
    }
}

/// A connection to one Redis server or sentinel.
struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Connects; `timeout` bounds the connect and every later read and write (`None`: none).
    fn open(addr: &str, timeout: Option<Duration>) -> anyhow::Result<Conn> {
        let sock: SocketAddr = addr
            .to_socket_addrs()
            .with_context(|| format!("bad address `{addr}`"))?
            .next()
            .ok_or_else(|| anyhow!("no address for `{addr}`"))?;
        let stream = match timeout {
            Some(t) => TcpStream::connect_timeout(&sock, t),
            None => TcpStream::connect(sock),
        }
        .with_context(|| format!("connect {addr}"))?;
        stream.set_read_timeout(timeout)?;
        stream.set_write_timeout(timeout)?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream),
        })
    }

    fn call(&mut self, args: &[&str]) -> anyhow::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.reader.get_mut().write_all(out.as_bytes())?;
        read_reply(&mut self.reader)
    }
}

fn read_reply(r: &mut impl BufRead) -> anyhow::Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("connection closed");
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(line.len().min(1));
    Ok(match kind {
        "+" => Reply::Simple(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Int(rest.parse().context("bad integer reply")?),
        "$" => {
            let n: i64 = rest.parse().context("bad bulk length")?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut buf = vec![0; n as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                Reply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
        }
        "*" => {
            let n: i64 = rest.parse().context("bad array length")?;
            if n < 0 {
                Reply::Array(None)
            } else {
                let items = (0..n)
                    .map(|_| read_reply(r))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Reply::Array(Some(items))
            }
        }
        _ => bail!("unexpected reply `{line}`"),
    })
}

// ---- sentinels ----------------------------------------------------------------------------------

impl Sentinels {
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.sentinel_timeout_ms)
    }

    /// What one sentinel names as the master, `host:port`.
    fn master_from(&self, sentinel: &str) -> anyhow::Result<String> {
        let mut conn = Conn::open(sentinel, Some(self.timeout()))?;
        match conn.call(&["SENTINEL", "get-master-addr-by-name", &self.master_name])? {
            Reply::Array(Some(items)) if items.len() == 2 => {
                let host = items[0].text().unwrap_or_default();
                let port = items[1].text().unwrap_or_default();
                Ok(format!("{host}:{port}"))
            }
            other => bail!("sentinel {sentinel} names no master: {other:?}"),
        }
    }

    /// The master given, or the one named by the first sentinel that answers.
    fn master(&self) -> anyhow::Result<String> {
        if let Some(m) = &self.master {
            return Ok(m.clone());
        }
        let mut errors = Vec::new();
        for s in &self.sentinels {
            match self.master_from(s) {
                Ok(m) => return Ok(m),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        bail!("no sentinel answered: {}", errors.join("; "))
    }
}

// ---- write --------------------------------------------------------------------------------------

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn write_loop(
    sentinels: &Sentinels,
    log: &Path,
    rate: u32,
    key: &str,
    client: Client,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let mut out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open `{}`", log.display()))?;
    let period = Duration::from_secs(1) / rate.max(1);
    let start = Instant::now();
    let start_ms = now_ms();
    // The sticky client's one connection, kept until it errs.
    let mut sticky: Option<Conn> = None;
    let mut seq: u64 = 0;
    loop {
        let slot = start + period * seq as u32;
        let now = Instant::now();
        if now < slot {
            std::thread::sleep(slot - now);
        } else if now >= slot + period {
            // The client was busy past this slot: open loop, so the write is not sent late.
            // Logged at the slot's own time, so that outages are measured from when it was due.
            let due_ms = start_ms + (period * seq as u32).as_millis();
            writeln!(out, "{seq} missed {due_ms} client busy")?;
            seq += 1;
            continue;
        }
        let seq_text = seq.to_string();
        let result = match client {
            Client::Sentinel => sentinels
                .master()
                .and_then(|m| Conn::open(&m, Some(timeout)))
                .and_then(|mut c| c.call(&["SADD", key, &seq_text])),
            Client::Sticky => {
                let conn = match sticky.take() {
                    Some(c) => Ok(c),
                    None => sentinels.master().and_then(|m| Conn::open(&m, None)),
                };
                conn.and_then(|mut c| {
                    let reply = c.call(&["SADD", key, &seq_text])?;
                    if !matches!(reply, Reply::Error(_)) {
                        sticky = Some(c);
                    }
                    Ok(reply)
                })
            }
        };
        let line = match result {
            Ok(Reply::Int(_)) => format!("{seq} ok {}", now_ms()),
            Ok(Reply::Error(e)) => format!("{seq} fail {} {}", now_ms(), one_line(&e)),
            Ok(other) => format!(
                "{seq} fail {} {}",
                now_ms(),
                one_line(&format!("{other:?}"))
            ),
            Err(e) => format!("{seq} fail {} {}", now_ms(), one_line(&format!("{e:#}"))),
        };
        writeln!(out, "{line}")?;
        seq += 1;
    }
}

// ---- the log ------------------------------------------------------------------------------------

/// One line of the writer's log.
struct Attempt {
    seq: u64,
    ok: bool,
    at_ms: u128,
    /// What a failed attempt got, as logged.
    detail: String,
}

fn read_log(log: &Path) -> anyhow::Result<Vec<Attempt>> {
    let text =
        fs::read_to_string(log).with_context(|| format!("cannot read `{}`", log.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            let seq = parts.next()?.parse().ok()?;
            let ok = parts.next()? == "ok";
            let at_ms = parts.next()?.parse().ok()?;
            let detail = parts.collect::<Vec<_>>().join(" ");
            Some(Attempt {
                seq,
                ok,
                at_ms,
                detail,
            })
        })
        .collect())
}

/// The figures of a drill's writes.
#[derive(Debug, Default, PartialEq, serde::Serialize)]
struct Summary {
    attempts: usize,
    acknowledged: usize,
    failed: usize,
    lost: usize,
    /// The lost sequence numbers, the first 20.
    lost_first: Vec<u64>,
    /// The longest time from the first failed attempt after an acknowledged one to the next
    /// acknowledged one: how long writes were down.
    longest_outage_ms: u64,
    failed_in_longest_outage: usize,
    /// When the longest outage ended (UNIX ms of the acknowledged write that ended it; 0: none).
    longest_outage_end_ms: u64,
    /// What the first failed attempt of the longest outage got.
    longest_outage_first_error: String,
    master: String,
}

fn summarize(attempts: &[Attempt], stored: &BTreeSet<u64>, master: &str) -> Summary {
    let mut s = Summary {
        attempts: attempts.len(),
        master: master.to_string(),
        ..Summary::default()
    };
    // The current run of failures: when it began, how many, and the first one's error.
    let mut outage: Option<(u128, usize, &str)> = None;
    for a in attempts {
        if a.ok {
            s.acknowledged += 1;
            if !stored.contains(&a.seq) {
                s.lost += 1;
                if s.lost_first.len() < 20 {
                    s.lost_first.push(a.seq);
                }
            }
            if let Some((began, n, error)) = outage.take() {
                let ms = a.at_ms.saturating_sub(began) as u64;
                if ms > s.longest_outage_ms {
                    s.longest_outage_ms = ms;
                    s.failed_in_longest_outage = n;
                    s.longest_outage_end_ms = a.at_ms as u64;
                    s.longest_outage_first_error = error.to_string();
                }
            }
        } else {
            s.failed += 1;
            let entry = outage.get_or_insert((a.at_ms, 0, &a.detail));
            entry.1 += 1;
        }
    }
    s
}

fn check(
    sentinels: &Sentinels,
    log: &Path,
    key: &str,
    summary_path: Option<&Path>,
    max_outage_ms: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let attempts = read_log(log)?;
    let master = sentinels.master()?;
    let mut conn = Conn::open(&master, Some(Duration::from_secs(2)))
        .with_context(|| format!("cannot read back from master {master}"))?;
    let stored: BTreeSet<u64> = match conn.call(&["SMEMBERS", key])? {
        Reply::Array(Some(items)) => items
            .iter()
            .filter_map(|i| i.text()?.parse().ok())
            .collect(),
        other => bail!("cannot read back from master {master}: {other:?}"),
    };
    let s = summarize(&attempts, &stored, &master);
    let json = serde_json::to_string(&s)?;
    println!("{json}");
    if let Some(path) = summary_path {
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, format!("{json}\n"))?;
        fs::rename(&tmp, path)?;
    }
    if s.lost > 0 {
        eprintln!(
            "lost {} acknowledged writes (of {} acknowledged; {} failed; master {})",
            s.lost, s.acknowledged, s.failed, s.master
        );
        return Ok(ExitCode::from(1));
    }
    if let Some(max) = max_outage_ms.filter(|max| s.longest_outage_ms > *max) {
        eprintln!(
            "writes down for {} ms, over {max} ms ({} failed in a row; the first: {})",
            s.longest_outage_ms,
            s.failed_in_longest_outage,
            first_sentence(&s.longest_outage_first_error)
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

// ---- last, agree --------------------------------------------------------------------------------

fn last(log: &Path, within: Duration) -> anyhow::Result<ExitCode> {
    let attempts = read_log(log)?;
    let Some(a) = attempts.last() else {
        bail!("no write attempted yet");
    };
    let age = now_ms().saturating_sub(a.at_ms);
    if !a.ok {
        bail!("write {} failed", a.seq);
    }
    if age > within.as_millis() {
        bail!("no write acknowledged for {age} ms (last: {})", a.seq);
    }
    Ok(ExitCode::SUCCESS)
}

/// A field of `SENTINEL master NAME`'s flat key/value array.
fn field<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    let Reply::Array(Some(items)) = reply else {
        return None;
    };
    items
        .chunks(2)
        .find(|kv| kv[0].text() == Some(name))
        .and_then(|kv| kv.get(1)?.text())
}

fn agree(
    sentinels: &Sentinels,
    settled: bool,
    expect_master: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if sentinels.sentinels.is_empty() {
        bail!("`agree` asks the sentinels: give --sentinels");
    }
    let mut named = BTreeSet::new();
    for s in &sentinels.sentinels {
        named.insert(sentinels.master_from(s)?);
        if settled {
            let mut conn = Conn::open(s, Some(sentinels.timeout()))?;
            let info = conn.call(&["SENTINEL", "master", &sentinels.master_name])?;
            let others: usize = field(&info, "num-other-sentinels")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let replicas: usize = field(&info, "num-slaves")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if others + 1 < sentinels.sentinels.len() || replicas == 0 {
                bail!("sentinel {s} knows {others} other sentinels and {replicas} replicas");
            }
        }
    }
    if named.len() != 1 {
        bail!(
            "the sentinels name {} masters: {}",
            named.len(),
            named.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    let master = named.into_iter().next().unwrap_or_default();
    if let Some(expected) = expect_master.filter(|e| *e != master) {
        bail!("the sentinels name {master}, not {expected}: a failover happened");
    }
    let mut conn = Conn::open(&master, Some(sentinels.timeout()))?;
    if settled {
        // A replica still in its first sync holds nothing yet: a failover now would lose it all.
        let info = conn.call(&["INFO", "replication"])?;
        if !info.text().is_some_and(|t| t.contains("state=online")) {
            bail!("{master} has no replica in sync yet");
        }
    }
    match conn.call(&["ROLE"])? {
        Reply::Array(Some(items)) if items.first().and_then(Reply::text) == Some("master") => {
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("{master}, named by the sentinels, is not a master: {other:?}"),
    }
}

/// Up to the first `. `: Redis's errors go on for a paragraph, and a probe's reason is one line.
fn first_sentence(s: &str) -> &str {
    s.split_once(". ").map_or(s, |(first, _)| first)
}

/// The `field:value` lines of an `INFO` reply.
fn info_field<'a>(info: &'a Reply, name: &str) -> Option<&'a str> {
    info.text()?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

fn info_replication(addr: &str, timeout: Duration) -> anyhow::Result<Reply> {
    let mut conn = Conn::open(addr, Some(timeout))?;
    match conn.call(&["INFO", "replication"])? {
        Reply::Error(e) => bail!("{addr}: INFO replication: {e}"),
        info => Ok(info),
    }
}

fn synced(
    sentinels: &Sentinels,
    replicas: &[String],
    within: Duration,
) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_millis(250);
    let master = sentinels.master()?;
    let info = info_replication(&master, timeout)?;
    let target: u64 = info_field(&info, "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("{master} gives no master_repl_offset"))?;
    let deadline = Instant::now() + within;
    for replica in replicas.iter().filter(|r| **r != master) {
        caught_up(replica, &master, target, deadline, within)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits until `replica` replicates `master` with its link up and at least offset `target`.
fn caught_up(
    replica: &str,
    master: &str,
    target: u64,
    deadline: Instant,
    within: Duration,
) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(250);
    loop {
        let info = info_replication(replica, timeout)?;
        let link = info_field(&info, "master_link_status").unwrap_or("none");
        let of = format!(
            "{}:{}",
            info_field(&info, "master_host").unwrap_or("?"),
            info_field(&info, "master_port").unwrap_or("?")
        );
        let offset: u64 = info_field(&info, "slave_repl_offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if of != master {
            bail!("{replica} replicates {of}, not the master {master}");
        }
        if link == "up" && offset >= target {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{replica}: link to {master} {link}, {} bytes behind after {} ms",
                target.saturating_sub(offset),
                within.as_millis()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Reply {
        read_reply(&mut BufReader::new(bytes)).unwrap()
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
        // The master comes from the sentinels or is given, never both and never neither.
        for argv in [
            &["w", "agree"][..],
            &["w", "agree", "--sentinels", "a:1", "--master", "b:2"],
        ] {
            assert!(Args::try_parse_from(argv).is_err(), "{argv:?}");
        }
        let Cmd::Synced {
            sentinels, replica, ..
        } = Args::try_parse_from(["w", "synced", "--master", "m:1", "--replica", "a:1,b:2"])
            .expect("parses")
            .command
        else {
            panic!("not `synced`");
        };
        assert_eq!(
            (sentinels.master.as_deref(), replica.len()),
            (Some("m:1"), 2)
        );
    }

    #[test]
    fn reads_resp_replies() {
        assert_eq!(parse(b"+OK\r\n"), Reply::Simple("OK".into()));
        assert_eq!(parse(b":3\r\n"), Reply::Int(3));
        assert_eq!(parse(b"$-1\r\n"), Reply::Bulk(None));
        assert_eq!(
            parse(b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n"),
            Reply::Array(Some(vec![
                Reply::Bulk(Some("127.0.0.1".into())),
                Reply::Bulk(Some("6380".into()))
            ]))
        );
        assert_eq!(
            parse(b"-READONLY no\r\n"),
            Reply::Error("READONLY no".into())
        );
    }

    #[test]
    fn counts_lost_failed_and_the_longest_outage() {
        let log = [
            (0, true, 0),
            (1, false, 100),
            (2, false, 200),
            (3, true, 350),
            (4, true, 400),
        ];
        let attempts: Vec<Attempt> = log
            .iter()
            .map(|&(seq, ok, at_ms)| Attempt {
                seq,
                ok,
                at_ms,
                detail: if ok { String::new() } else { format!("e{seq}") },
            })
            .collect();
        let stored: BTreeSet<u64> = [0, 3].into();
        let s = summarize(&attempts, &stored, "m");
        assert_eq!(
            (s.acknowledged, s.failed, s.lost, s.lost_first.clone()),
            (3, 2, 1, vec![4])
        );
        assert_eq!((s.longest_outage_ms, s.failed_in_longest_outage), (250, 2));
        assert_eq!(
            (
                s.longest_outage_end_ms,
                s.longest_outage_first_error.as_str()
            ),
            (350, "e1")
        );
    }

    #[test]
    fn reads_info_fields() {
        let info = Reply::Bulk(Some(
            "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nslave_repl_offset:42\r\n"
                .into(),
        ));
        assert_eq!(info_field(&info, "master_link_status"), Some("up"));
        assert_eq!(info_field(&info, "slave_repl_offset"), Some("42"));
        assert_eq!(info_field(&info, "master_link"), None);
    }
}
