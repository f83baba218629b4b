//! `chaos-demo`: a small pre-forked HTTP service for trying chaosctl on one machine, with nothing
//! to install. A supervisor (`chaos-demo`) keeps N workers (`demo-worker`, or `--worker-name`)
//! running; each worker listens on the same port with SO_REUSEPORT, so killing one leaves the
//! others serving, and killing all of them makes the service fail until the supervisor has
//! restarted them.
//!
//! Routes: `/health` answers `ok`, `/` a greeting, `/metrics` Prometheus text, `/slow?ms=N` waits.
//!
//! It serves on 127.0.0.1 unless `--addr` names another IPv4 address (a lab host's, for a drill).
//! Workers get that address from the supervisor through the environment ([`ADDR_ENV`]), so their
//! command line stays `chaos-demo --worker --port PORT` whatever the address, which is what
//! scenarios' kill patterns match.

use std::ffi::CString;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, listen, setsockopt, socket,
    sockopt,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

/// A pre-forked demo HTTP service whose supervisor restarts killed workers.
#[derive(Debug, Parser)]
#[command(name = "chaos-demo", version)]
struct Args {
    /// Port to serve on.
    #[arg(long, default_value_t = 18080)]
    port: u16,
    /// IPv4 address to serve on.
    #[arg(long, default_value_t = Ipv4Addr::LOCALHOST)]
    addr: Ipv4Addr,
    /// Worker processes to keep running.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// How long the supervisor waits before restarting a worker that died, in milliseconds.
    #[arg(long, default_value_t = 500)]
    restart_delay_ms: u64,
    /// The workers' process name (as `/proc/PID/comm` shows it, at most 15 bytes), which a
    /// scenario's `process: {name: ...}` selects: give each demo service its own (`backend-a`)
    /// to fault one and not its neighbours.
    #[arg(long, default_value = "demo-worker", value_parser = parse_worker_name)]
    worker_name: String,
    /// Write the supervisor's pid here.
    #[arg(long)]
    pidfile: Option<PathBuf>,
    /// Run as one worker (the supervisor starts these itself).
    #[arg(long, hide = true)]
    worker: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("chaos-demo: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = if args.worker {
        runtime.block_on(worker(worker_addr(), args.port))
    } else {
        runtime.block_on(supervise(args))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chaos-demo: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn supervise(args: Args) -> anyhow::Result<()> {
    if let Some(pidfile) = &args.pidfile {
        std::fs::write(pidfile, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write pidfile `{}`", pidfile.display()))?;
    }
    // Bind once here so a port already in use fails the supervisor, not each worker in a loop.
    drop(reuseport_listener(args.addr, args.port).with_context(|| {
        format!(
            "cannot listen on {}:{}; pass --port to use another",
            args.addr, args.port
        )
    })?);
    let exe = std::env::current_exe().context("cannot find our own executable")?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut workers: Vec<Child> = Vec::new();
    for _ in 0..args.workers {
        workers.push(start_worker(&exe, args.addr, args.port, &args.worker_name)?);
    }
    eprintln!(
        "chaos-demo: serving http://{}:{}/ with {} workers",
        args.addr, args.port, args.workers
    );
    loop {
        let exited = async {
            let (status, index, _) =
                futures::future::select_all(workers.iter_mut().map(|w| Box::pin(w.wait()))).await;
            (index, status)
        };
        tokio::select! {
            (index, status) = exited => {
                workers.remove(index);
                eprintln!("chaos-demo: a worker ended ({status:?}); restarting it in {} ms", args.restart_delay_ms);
                // A stop request during the back-off wins over the restart.
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(args.restart_delay_ms)) => {}
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                }
                workers.push(start_worker(&exe, args.addr, args.port, &args.worker_name)?);
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    for w in &mut workers {
        let _ = w.start_kill();
    }
    for w in &mut workers {
        let _ = w.wait().await;
    }
    if let Some(pidfile) = &args.pidfile {
        let _ = std::fs::remove_file(pidfile);
    }
    Ok(())
}

/// The environment variable that hands a worker the supervisor's `--addr`.
const ADDR_ENV: &str = "CHAOS_DEMO_ADDR";
/// The environment variable that hands a worker its `--worker-name`; like the address, it stays
/// off the worker's command line, which kill patterns match to its end.
const NAME_ENV: &str = "CHAOS_DEMO_WORKER_NAME";

/// The kernel keeps 15 bytes of a process name: a longer one would be cut, and a scenario
/// selecting it by its full name would match nothing.
fn parse_worker_name(name: &str) -> Result<String, String> {
    match name.len() {
        0 => Err("must not be empty".into()),
        1..=15 if !name.contains('\0') => Ok(name.to_string()),
        1..=15 => Err("must not contain NUL".into()),
        n => Err(format!(
            "{n} bytes; the kernel keeps at most 15 of a process name"
        )),
    }
}

/// A worker's address: the supervisor's, else 127.0.0.1.
fn worker_addr() -> Ipv4Addr {
    std::env::var(ADDR_ENV)
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or(Ipv4Addr::LOCALHOST)
}

fn start_worker(
    exe: &std::path::Path,
    addr: Ipv4Addr,
    port: u16,
    name: &str,
) -> anyhow::Result<Child> {
    Command::new(exe)
        .args(["--worker", "--port", &port.to_string()])
        .env(ADDR_ENV, addr.to_string())
        .env(NAME_ENV, name)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start a worker")
}

fn reuseport_listener(addr: Ipv4Addr, port: u16) -> anyhow::Result<std::net::TcpListener> {
    let fd: OwnedFd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(SocketAddrV4::new(addr, port)),
    )?;
    listen(&fd, Backlog::new(128)?)?;
    Ok(std::net::TcpListener::from(fd))
}

async fn worker(addr: Ipv4Addr, port: u16) -> anyhow::Result<()> {
    // The kernel's process name, so scenarios can select workers apart from the supervisor.
    let name = std::env::var(NAME_ENV).unwrap_or_else(|_| "demo-worker".into());
    let name = CString::new(name).unwrap_or_else(|_| c"demo-worker".to_owned());
    let _ = nix::sys::prctl::set_name(&name);
    let std_listener = reuseport_listener(addr, port)?;
    std_listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(std_listener)?;
    let served = Arc::new(AtomicU64::new(0));
    let mut term = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let served = served.clone();
                    tokio::spawn(async move {
                        let _ = serve(stream, served).await;
                    });
                }
            }
            _ = term.recv() => return Ok(()),
        }
    }
}

async fn serve(mut stream: TcpStream, served: Arc<AtomicU64>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("request timed out"))??;
        if n == 0 || buf.len() > 16 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let request = String::from_utf8_lossy(&buf);
    let target = request.split_whitespace().nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let count = served.fetch_add(1, Ordering::Relaxed) + 1;
    let pid = std::process::id();
    let (status, body) = match path {
        "/health" => ("200 OK", "ok\n".to_string()),
        "/" => ("200 OK", format!("hello from demo-worker {pid}\n")),
        "/metrics" => (
            "200 OK",
            format!(
                "# TYPE demo_requests_total counter\ndemo_requests_total{{pid=\"{pid}\"}} {count}\n"
            ),
        ),
        "/slow" => {
            let ms = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("ms="))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1000)
                .min(60_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            ("200 OK", format!("slept {ms} ms\n"))
        }
        _ => ("404 Not Found", "not found\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_names_fit_the_kernels_process_name() {
        assert_eq!(parse_worker_name("backend-a"), Ok("backend-a".into()));
        assert_eq!(
            parse_worker_name("fifteen-bytes-x"),
            Ok("fifteen-bytes-x".into())
        );
        assert!(parse_worker_name("").is_err());
        assert!(parse_worker_name("sixteen-bytes-xy").is_err());
        assert!(parse_worker_name("a\0b").is_err());
        let args = Args::try_parse_from(["chaos-demo", "--worker-name", "backend-b"]).unwrap();
        assert_eq!(args.worker_name, "backend-b");
        let args = Args::try_parse_from(["chaos-demo"]).unwrap();
        assert_eq!(
            args.worker_name, "demo-worker",
            "the default stays what scenarios select"
        );
    }
}
