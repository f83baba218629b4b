//! Network faults for real, inside two network namespaces of our own joined by a veth pair
//! (10.253.N.1 on side `a`, where the agent runs, and 10.253.N.2 on side `b`, which observes).
//! Nothing is done in the root namespace: the agent runs on a thread that entered `a` (the tools
//! it spawns inherit that namespace), and observations run in `b`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, SystemTime};

use agent::LocalAgent;
use agent::spec::{
    BandwidthSpec, CorruptSpec, DropMode, DropSpec, DuplicateSpec, Exempt, FaultKind, FaultSpec,
    LatencySpec, LossSpec, NetScope, PeerSelector, Protocol,
};
use chaos_tests::ping::{Ping, ping_from};
use chaos_tests::skip;

use crate::faults::request;

static NEXT: AtomicU32 = AtomicU32::new(1);

/// Two namespaces and a veth pair between them; deleted (their processes killed first) on drop.
struct Pair {
    a: String,
    b: String,
    n: u32,
}

impl Pair {
    /// `None` (saying why) when not root or a tool is missing.
    fn new() -> Option<Pair> {
        if !skip::unless_root("it creates network namespaces and firewall rules in them")
            || !skip::unless_installed(&["ip", "ss"], "iproute2")
            || !skip::unless_installed(&["nft"], "nftables")
            || !skip::unless_installed(&["iptables"], "iptables")
            || !skip::unless_installed(&["ping"], "iputils-ping")
        {
            return None;
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let pair = Pair {
            a: format!("chaos-net-{pid}-{n}-a"),
            b: format!("chaos-net-{pid}-{n}-b"),
            n,
        };
        let sh = |args: &str| {
            let argv: Vec<&str> = args.split_whitespace().collect();
            let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
            assert!(
                out.status.success(),
                "{args}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let (a, b) = (&pair.a, &pair.b);
        sh(&format!("ip netns add {a}"));
        sh(&format!("ip netns add {b}"));
        sh(&format!(
            "ip link add veth0 netns {a} type veth peer name veth0 netns {b}"
        ));
        for (ns, host) in [(a, 1), (b, 2)] {
            sh(&format!("ip -n {ns} link set lo up"));
            sh(&format!(
                "ip -n {ns} addr add 10.253.{n}.{host}/24 dev veth0"
            ));
            sh(&format!("ip -n {ns} link set veth0 up"));
        }
        Some(pair)
    }

    fn addr_a(&self) -> String {
        format!("10.253.{}.1", self.n)
    }

    fn addr_b(&self) -> String {
        format!("10.253.{}.2", self.n)
    }

    /// Runs `f` on a thread inside namespace `ns`.
    fn within<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{ns}");
        thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// `ping` from `b` to `a`, every `interval` seconds.
    fn ping_from_b(&self, count: u32, interval: &str) -> Ping {
        ping_from(&self.b, &self.addr_a(), count, interval)
    }

    /// A TCP connect from `b` to `a:port` within 1 s.
    fn connect_from_b(&self, port: u16) -> std::io::Result<TcpStream> {
        let to: SocketAddr = format!("{}:{port}", self.addr_a()).parse().unwrap();
        Pair::within(&self.b, move || {
            TcpStream::connect_timeout(&to, Duration::from_secs(1))
        })
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[allow(unsafe_code)]
fn enter(path: &str) {
    let file = File::open(path).unwrap_or_else(|err| panic!("{path}: {err}"));
    // SAFETY: setns reads a valid open descriptor (kept open across the call) and changes only the
    // calling thread's network namespace; no memory is shared with the kernel.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

/// An echo server on `addr` in the current thread's namespace (answers each read with its bytes).
fn echo_server(addr: &str) -> SocketAddr {
    let listener = TcpListener::bind(addr).unwrap();
    let local = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    local
}

fn echo(stream: &mut TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_millis(1500)))?;
    stream.write_all(b"ping")?;
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf)
}

/// Nothing of ours is left in the current namespace.
fn assert_clean() {
    let out = |argv: &[&str]| {
        String::from_utf8_lossy(
            &Command::new(argv[0])
                .args(&argv[1..])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned()
    };
    let tables = out(&["nft", "list", "tables"]);
    assert!(!tables.contains("chaos_"), "{tables}");
    let rules = out(&["iptables", "-S"]);
    assert!(!rules.contains("CHAOS-"), "{rules}");
    let qdiscs = out(&["tc", "qdisc", "show"]);
    assert!(
        !qdiscs.contains("qdisc prio") && !qdiscs.contains("qdisc netem"),
        "{qdiscs}"
    );
}

fn scope() -> NetScope {
    NetScope {
        to: None,
        from: None,
        interface: Some("veth0".into()),
        spare_ssh: true,
        inside: None,
    }
}

fn agent_in(state: &std::path::Path) -> LocalAgent {
    LocalAgent::open(state).unwrap().0
}

#[test]
fn reject_fails_new_and_established_connections_at_once_then_reverts() {
    let Some(pair) = Pair::new() else { return };
    let state = tempfile::tempdir().unwrap();
    let a_addr = pair.addr_a();
    let port = Pair::within(&pair.a, move || echo_server(&format!("{a_addr}:0")).port());
    let mut before = pair
        .connect_from_b(port)
        .expect("connects before the fault");
    echo(&mut before).expect("echo before the fault");

    let dir = state.path().to_path_buf();
    let applied = Pair::within(&pair.a, move || {
        let agent = agent_in(&dir);
        let spec = FaultSpec::Drop(DropSpec {
            mode: DropMode::Reject,
            scope: scope(),
        });
        let applied = agent.inject(request("net-reject", spec)).unwrap();
        agent.abandon();
        applied
    });
    assert_eq!(applied.mechanism, "nft");
    assert!(applied.verified, "{}", applied.detail);

    let err = pair.connect_from_b(port).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    let cut = echo(&mut before).unwrap_err();
    assert!(
        matches!(
            cut.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "established connection: {cut}"
    );
    let Ping { received, .. } = pair.ping_from_b(2, "0.2");
    assert_eq!(received, 0);

    // The next agent on this state directory reverts what the abandoned one left.
    let dir = state.path().to_path_buf();
    Pair::within(&pair.a, move || {
        let (_agent, recovered) = LocalAgent::open(&dir).unwrap();
        let reverted = recovered[0].result.as_ref().unwrap();
        assert!(reverted.verified, "{}", reverted.detail);
        assert_clean();
    });
    let mut after = pair
        .connect_from_b(port)
        .expect("connects after the revert");
    echo(&mut after).unwrap();
}

#[test]
fn drop_hangs_connections_and_spares_ssh_and_the_controller() {
    let Some(pair) = Pair::new() else { return };
    let state = tempfile::tempdir().unwrap();
    let a_addr = pair.addr_a();
    let b_addr: std::net::IpAddr = pair.addr_b().parse().unwrap();
    let (port, ssh, ctl) = Pair::within(&pair.a, move || {
        (
            echo_server(&format!("{a_addr}:0")).port(),
            echo_server(&format!("{a_addr}:22")).port(),
            echo_server(&format!("{a_addr}:0")).port(),
        )
    });
    let mut before = pair.connect_from_b(port).unwrap();
    echo(&mut before).unwrap();

    let dir = state.path().to_path_buf();
    let agent = Pair::within(&pair.a, move || {
        let agent = agent_in(&dir);
        let mut req = request(
            "net-drop",
            FaultSpec::Drop(DropSpec {
                mode: DropMode::Drop,
                scope: scope(),
            }),
        );
        req.hold = Some(Duration::from_secs(30));
        req.exempt = vec![Exempt {
            peer: b_addr,
            local_port: ctl,
        }];
        let applied = agent.inject(req).unwrap();
        assert!(applied.verified, "{}", applied.detail);
        agent
    });

    let err = pair.connect_from_b(port).unwrap_err();
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::TimedOut,
        "silently dropped: {err}"
    );
    let hung = echo(&mut before).unwrap_err();
    assert!(
        matches!(
            hung.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "established connection hangs: {hung}"
    );
    echo(&mut pair.connect_from_b(ssh).expect("ssh is spared")).unwrap();
    echo(&mut pair.connect_from_b(ctl).expect("the controller is spared")).unwrap();

    Pair::within(&pair.a, move || {
        let reverted = agent.revert("net-drop").unwrap();
        assert!(reverted.verified, "{}", reverted.detail);
        assert_clean();
    });
    echo(&mut pair.connect_from_b(port).unwrap()).unwrap();
}

#[test]
fn drop_to_one_peer_port_leaves_other_ports_alone() {
    let Some(pair) = Pair::new() else { return };
    let state = tempfile::tempdir().unwrap();
    let b_addr = pair.addr_b();
    let (blocked, open) = Pair::within(&pair.b, move || {
        (
            echo_server(&format!("{b_addr}:0")).port(),
            echo_server(&format!("{b_addr}:0")).port(),
        )
    });
    let b_addr = pair.addr_b();
    let dir = state.path().to_path_buf();
    Pair::within(&pair.a, move || {
        let agent = agent_in(&dir);
        let mut s = scope();
        s.to = Some(PeerSelector {
            hosts: vec![format!("{b_addr}/32")],
            ports: vec![blocked],
            protocol: Some(Protocol::Tcp),
        });
        let applied = agent
            .inject(request(
                "net-to",
                FaultSpec::Drop(DropSpec {
                    mode: DropMode::Reject,
                    scope: s,
                }),
            ))
            .unwrap();
        assert!(applied.verified, "{}", applied.detail);
        let connect = |port: u16| {
            TcpStream::connect_timeout(
                &format!("{b_addr}:{port}").parse().unwrap(),
                Duration::from_secs(1),
            )
        };
        assert_eq!(
            connect(blocked).unwrap_err().kind(),
            std::io::ErrorKind::ConnectionRefused
        );
        echo(&mut connect(open).unwrap()).unwrap();
        agent.revert("net-to").unwrap();
        echo(&mut connect(blocked).unwrap()).unwrap();
        assert_clean();
    });
}

#[test]
fn loss_drops_about_its_share() {
    let Some(pair) = Pair::new() else { return };
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_path_buf();
    let agent = Pair::within(&pair.a, move || {
        let agent = agent_in(&dir);
        let applied = agent
            .inject(request(
                "net-loss",
                FaultSpec::Loss(LossSpec {
                    share: 30.0,
                    scope: scope(),
                }),
            ))
            .unwrap();
        assert_eq!(applied.mechanism, "nft");
        assert!(applied.verified, "{}", applied.detail);
        agent
    });
    let Ping { received, sent, .. } = pair.ping_from_b(200, "0.005");
    let lost = 100.0 * f64::from(sent - received) / f64::from(sent);
    eprintln!("loss 30% asked: {lost:.1}% of {sent} pings lost");
    assert!((15.0..=45.0).contains(&lost), "{lost}% lost");
    Pair::within(&pair.a, move || {
        agent.revert("net-loss").unwrap();
        assert_clean();
    });
    let Ping { received, sent, .. } = pair.ping_from_b(20, "0.01");
    assert_eq!(received, sent);
}

#[test]
fn loss_of_100_percent_drops_everything_and_reverts() {
    let Some(pair) = Pair::new() else { return };
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_path_buf();
    let agent = Pair::within(&pair.a, move || {
        let agent = agent_in(&dir);
        let loss = FaultSpec::Loss(LossSpec {
            share: 100.0,
            scope: scope(),
        });
        agent.check(&loss).unwrap();
        let applied = agent.inject(request("net-loss-all", loss)).unwrap();
        assert!(applied.verified, "{}", applied.detail);
        agent
    });
    let Ping { received, sent, .. } = pair.ping_from_b(20, "0.01");
    assert_eq!((received, sent), (0, 20), "100% loss drops every ping");
    Pair::within(&pair.a, move || {
        agent.revert("net-loss-all").unwrap();
        assert_clean();
    });
    let Ping { received, sent, .. } = pair.ping_from_b(10, "0.01");
    assert_eq!(received, sent);
}

#[test]
fn the_kernel_ends_a_drop_when_no_process_of_ours_is_left() {
    let Some(pair) = Pair::new() else { return };
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_path_buf();
    let started = SystemTime::now();
    Pair::within(&pair.a, move || {
        let agent = agent_in(&dir);
        let mut req = request(
            "net-expire",
            FaultSpec::Drop(DropSpec {
                mode: DropMode::Drop,
                scope: scope(),
            }),
        );
        req.hold = Some(Duration::from_secs(1));
        agent.inject(req).unwrap();
        agent.abandon(); // as if SIGKILLed: nobody reverts
    });
    let Ping { received, .. } = pair.ping_from_b(1, "0.2");
    assert_eq!(received, 0, "dropped while the fault holds");
    let mut flowed = None;
    for _ in 0..40 {
        if pair.ping_from_b(1, "0.2").received == 1 {
            flowed = Some(started.elapsed().unwrap());
            break;
        }
    }
    let flowed = flowed.expect("traffic flows again within about 10 s");
    eprintln!("kernel-side expiry: traffic flowed again {flowed:?} after injection (hold 1 s)");
    assert!(flowed < Duration::from_secs(4), "{flowed:?}");
    let dir = state.path().to_path_buf();
    Pair::within(&pair.a, move || {
        let (_agent, recovered) = LocalAgent::open(&dir).unwrap();
        assert_eq!(recovered.len(), 1);
        assert_clean();
    });
}

#[test]
fn latency_delays_the_round_trip_and_goes_away_after_revert() {
    let Some(pair) = Pair::new() else { return };
    let state = tempfile::tempdir().unwrap();
    let Ping { avg_ms: bare, .. } = pair.ping_from_b(5, "0.05");
    for ms in [50u64, 200] {
        let dir = state.path().to_path_buf();
        let id = format!("net-latency-{ms}");
        let agent = Pair::within(&pair.a, {
            let id = id.clone();
            move || {
                let agent = agent_in(&dir);
                let applied = agent
                    .inject(request(
                        &id,
                        FaultSpec::Latency(LatencySpec {
                            delay: Duration::from_millis(ms),
                            jitter: Duration::ZERO,
                            scope: scope(),
                        }),
                    ))
                    .unwrap();
                assert!(applied.verified, "{}", applied.detail);
                assert!(["nfqueue", "netem"].contains(&applied.mechanism.as_str()));
                agent
            }
        });
        let Ping {
            received,
            sent,
            avg_ms: rtt,
            ..
        } = pair.ping_from_b(8, "0.1");
        eprintln!("latency {ms} ms asked: RTT {rtt:.2} ms (bare {bare:.2} ms), {received}/{sent}");
        assert_eq!(received, sent);
        let ms = ms as f64;
        assert!(rtt >= ms - 1.0 && rtt < ms + 25.0, "RTT {rtt} for {ms} ms");
        Pair::within(&pair.a, move || {
            let reverted = agent.revert(&id).unwrap();
            assert!(reverted.verified, "{}", reverted.detail);
            assert_clean();
        });
        let Ping { avg_ms: after, .. } = pair.ping_from_b(5, "0.05");
        assert!(after < 10.0, "RTT {after} ms after revert");
    }
}

#[test]
fn capabilities_name_the_mechanism_and_check_refuses_a_missing_interface() {
    let Some(pair) = Pair::new() else { return };
    Pair::within(&pair.a, || {
        let state = tempfile::tempdir().unwrap();
        let agent = agent_in(state.path());
        let caps = agent.capabilities();
        for k in caps.kinds.iter().filter(|k| {
            matches!(
                k.kind,
                agent::spec::FaultKind::Drop
                    | agent::spec::FaultKind::Loss
                    | agent::spec::FaultKind::Latency
            )
        }) {
            assert!(k.supported, "{k:?}");
            assert!(
                ["nft", "netem", "nfqueue"].contains(&k.mechanism.as_deref().unwrap()),
                "{k:?}"
            );
        }
        let mut s = scope();
        s.interface = Some("nosuch0".into());
        let err = agent
            .check(&FaultSpec::Drop(DropSpec {
                mode: DropMode::Drop,
                scope: s,
            }))
            .unwrap_err();
        assert!(
            err.to_string().contains("`nosuch0` does not exist"),
            "{err}"
        );
        // No interface named: the only one up but loopback.
        let mut s = scope();
        s.interface = None;
        agent
            .check(&FaultSpec::Loss(LossSpec {
                share: 5.0,
                scope: s,
            }))
            .unwrap();
    });
}

/// Without netem (this project's machines), `corrupt` and `duplicate` are not capabilities, and
/// preflight and inject refuse them saying why (the module `sch_netem`) and what to do, before
/// anything is journaled or touched.
#[test]
fn corrupt_and_duplicate_are_refused_without_netem_naming_sch_netem_and_leave_nothing() {
    let Some(pair) = Pair::new() else { return };
    let b = pair.addr_b();
    Pair::within(&pair.a, move || {
        let state = tempfile::tempdir().unwrap();
        let agent = agent_in(state.path());
        let caps = agent.capabilities();
        let of = |kind| caps.kinds.iter().find(|k| k.kind == kind).unwrap();
        if of(FaultKind::Latency).mechanism.as_deref() == Some("netem") {
            skip::skip(
                "has netem",
                "this kernel has sch_netem, so corrupt and duplicate are not refused here",
            );
            return;
        }
        let to = Some(PeerSelector {
            hosts: vec![b],
            ports: vec![5432],
            protocol: Some(Protocol::Tcp),
        });
        let scope = NetScope { to, ..scope() };
        let specs = [
            FaultSpec::Corrupt(CorruptSpec {
                share: 5.0,
                scope: scope.clone(),
            }),
            FaultSpec::Duplicate(DuplicateSpec { share: 5.0, scope }),
        ];
        for spec in specs {
            let kind = spec.kind();
            let cap = of(kind);
            assert!(!cap.supported && cap.mechanism.is_none(), "{cap:?}");
            let reason = cap.reason.as_deref().unwrap_or_default();
            for needle in ["sch_netem", "CONFIG_NET_SCH_NETEM", "modprobe sch_netem"] {
                assert!(reason.contains(needle), "{kind}: no {needle} in {reason}");
            }
            let preflight = agent.check(&spec).unwrap_err().to_string();
            let inject = agent
                .inject(request(&format!("net-{kind}"), spec))
                .unwrap_err()
                .to_string();
            eprintln!("{kind}: {preflight}");
            for err in [preflight, inject] {
                assert!(
                    err.starts_with(&format!("`{kind}` faults need")) && err.contains("sch_netem"),
                    "{err}"
                );
            }
            assert!(agent.active().is_empty());
            assert_eq!(std::fs::read_dir(agent.journal_dir()).unwrap().count(), 0);
            assert_clean();
        }
    });
}

/// A sink on `addr` in the current thread's namespace: reads each connection to its end, then
/// answers one byte (so the sender knows every byte arrived).
fn sink_server(addr: &str) -> SocketAddr {
    let listener = TcpListener::bind(addr).unwrap();
    let local = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        let _ = stream.write_all(b"k");
                        return;
                    }
                }
            });
        }
    });
    local
}

/// Sends `bytes` to `to` from namespace `ns` and waits for the sink's answer: the rate in bits
/// per second.
fn transfer(ns: &str, to: SocketAddr, bytes: usize) -> f64 {
    Pair::within(ns, move || {
        let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(2)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let chunk = vec![7u8; 16 * 1024];
        let started = SystemTime::now();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            stream.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut done = [0u8; 1];
        stream.read_exact(&mut done).unwrap();
        bytes as f64 * 8.0 / started.elapsed().unwrap().as_secs_f64()
    })
}

fn bandwidth(rate: u64, to: Option<PeerSelector>) -> FaultSpec {
    FaultSpec::Bandwidth(BandwidthSpec {
        rate,
        burst: None,
        scope: NetScope { to, ..scope() },
    })
}

/// Nothing of `bandwidth`'s is left in the current namespace: no table, no HTB root.
fn assert_no_shaper() {
    assert_clean();
    let out = Command::new("tc")
        .args(["qdisc", "show", "dev", "veth0"])
        .output()
        .unwrap();
    let qdiscs = String::from_utf8_lossy(&out.stdout);
    assert!(!qdiscs.contains("htb"), "{qdiscs}");
}

const RATE: u64 = 4_000_000;
const SENT: usize = 1_000_000;

#[test]
fn bandwidth_shapes_what_goes_to_the_peer_and_nothing_else() {
    let Some(pair) = Pair::new() else { return };
    let state = tempfile::tempdir().unwrap();
    let b_addr = pair.addr_b();
    let (shaped, other) = Pair::within(&pair.b, move || {
        (
            sink_server(&format!("{b_addr}:0")),
            sink_server(&format!("{b_addr}:0")),
        )
    });
    let bare = transfer(&pair.a, shaped, SENT);
    let dir = state.path().to_path_buf();
    let to = PeerSelector {
        hosts: vec![pair.addr_b()],
        ports: vec![shaped.port()],
        protocol: Some(Protocol::Tcp),
    };
    let agent = Pair::within(&pair.a, move || {
        let agent = agent_in(&dir);
        let applied = agent
            .inject(request("net-bw", bandwidth(RATE, Some(to))))
            .unwrap();
        assert_eq!(applied.mechanism, "htb");
        assert!(applied.verified, "{}", applied.detail);
        agent
    });
    let during = transfer(&pair.a, shaped, SENT);
    let unmatched = transfer(&pair.a, other, SENT);
    let reverted = Pair::within(&pair.a, move || {
        let reverted = agent.revert("net-bw").unwrap();
        assert_no_shaper();
        // Idempotent, from the undo data alone: a second revert finds nothing and says so.
        let spec = bandwidth(RATE, None);
        let undo = agent::fault::plan("net-bw", &spec, 0).unwrap();
        let again = agent::fault::revert("net-bw", &undo).unwrap();
        assert!(again.verified, "{}", again.detail);
        assert!(again.detail.contains("already gone"), "{}", again.detail);
        assert!(
            again.detail.contains("no shaper of ours"),
            "{}",
            again.detail
        );
        reverted
    });
    let after = transfer(&pair.a, shaped, SENT);
    eprintln!(
        "bandwidth 4mbit: bare {:.1} Mbit/s, shaped {:.2} Mbit/s, other port {:.1} Mbit/s, after {:.1} Mbit/s; {}",
        bare / 1e6,
        during / 1e6,
        unmatched / 1e6,
        after / 1e6,
        reverted.detail
    );
    assert!(reverted.verified);
    assert!(reverted.detail.contains("the shaped class carried"));
    let ratio = during / RATE as f64;
    assert!(
        (0.8..=1.2).contains(&ratio),
        "shaped at {ratio:.2} × the rate"
    );
    assert!(unmatched > 5.0 * RATE as f64, "{unmatched}");
    assert!(after > 5.0 * RATE as f64, "{after}");
}

#[test]
fn the_kernel_ends_a_bandwidth_limit_when_no_process_of_ours_is_left() {
    let Some(pair) = Pair::new() else { return };
    let state = tempfile::tempdir().unwrap();
    let b_addr = pair.addr_b();
    let sink = Pair::within(&pair.b, move || sink_server(&format!("{b_addr}:0")));
    let dir = state.path().to_path_buf();
    let started = SystemTime::now();
    Pair::within(&pair.a, move || {
        let agent = agent_in(&dir);
        let mut req = request("net-bw-expire", bandwidth(RATE, None));
        req.hold = Some(Duration::from_secs(1));
        agent.inject(req).unwrap();
        agent.abandon(); // as if SIGKILLed: nobody reverts
    });
    let during = transfer(&pair.a, sink, SENT / 4);
    // The gate's element lives the hold plus a margin, rounded up to whole seconds: 2 s.
    let end = Duration::from_millis(2500);
    thread::sleep(end.saturating_sub(started.elapsed().unwrap()));
    let after = transfer(&pair.a, sink, SENT);
    eprintln!(
        "bandwidth after kernel expiry: {:.2} Mbit/s while held, {:.1} Mbit/s {:?} after injection (hold 1 s)",
        during / 1e6,
        after / 1e6,
        started.elapsed().unwrap()
    );
    assert!(during < 1.5 * RATE as f64, "{during}");
    assert!(after > 5.0 * RATE as f64, "{after}");
    let dir = state.path().to_path_buf();
    Pair::within(&pair.a, move || {
        let (_agent, recovered) = LocalAgent::open(&dir).unwrap();
        assert_eq!(recovered.len(), 1);
        assert!(recovered[0].result.as_ref().unwrap().verified);
        assert_no_shaper();
    });
}

#[test]
fn bandwidth_is_a_capability_and_refuses_from_and_a_busy_root() {
    let Some(pair) = Pair::new() else { return };
    Pair::within(&pair.a, || {
        let state = tempfile::tempdir().unwrap();
        let agent = agent_in(state.path());
        let caps = agent.capabilities();
        let bw = caps
            .kinds
            .iter()
            .find(|k| k.kind == agent::spec::FaultKind::Bandwidth)
            .unwrap();
        assert!(bw.supported, "{bw:?}");
        assert_eq!(bw.mechanism.as_deref(), Some("htb"));
        let mut s = scope();
        s.from = Some(PeerSelector::default());
        let err = agent
            .check(&FaultSpec::Bandwidth(BandwidthSpec {
                rate: RATE,
                burst: None,
                scope: s,
            }))
            .unwrap_err();
        assert!(err.to_string().contains("not `from`"), "{err}");
        // A root qdisc of someone else's is left alone, and the fault refused.
        let tbf = "qdisc add dev veth0 root tbf rate 1gbit burst 64kb latency 50ms";
        let tbf: Vec<&str> = tbf.split_whitespace().collect();
        assert!(Command::new("tc").args(tbf).status().unwrap().success());
        let err = agent
            .inject(request("net-bw-busy", bandwidth(RATE, None)))
            .unwrap_err();
        assert!(err.to_string().contains("root qdisc of its own"), "{err}");
        let out = Command::new("tc")
            .args(["qdisc", "show", "dev", "veth0"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("tbf"));
        assert_clean();
    });
}

/// A netem fault on an interface that already carries another root qdisc (here an HTB with the
/// very major the fault was planned with: this kernel has neither netem nor `prio`, so another
/// netem fault's own root cannot be made) is refused without touching it, and the refused fault's
/// revert leaves that qdisc alone: a fault owns only a `prio` root of its own handle.
#[test]
fn a_netem_fault_on_a_busy_root_is_refused_and_its_revert_leaves_that_root_alone() {
    use agent::fault::net::{Context, netem};
    use agent::fault::{Undo, revert};

    let Some(pair) = Pair::new() else { return };
    Pair::within(&pair.a, || {
        let handle = netem::handle_of("netem-busy-root");
        let root = format!("qdisc add dev veth0 root handle {handle:x}: htb");
        let root: Vec<&str> = root.split_whitespace().collect();
        assert!(Command::new("tc").args(root).status().unwrap().success());
        let shown = || {
            let out = Command::new("tc")
                .args(["qdisc", "show", "dev", "veth0"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };

        let err = netem::inject(
            FaultKind::Latency,
            &scope(),
            ("veth0", handle),
            &Context::default(),
            netem::Impairment {
                tc: "delay 1000us",
                effect: "1 ms ± 0 ms",
                shows: None,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("root qdisc of its own"), "{err}");
        for undo in [
            Undo::Netem {
                interface: "veth0".into(),
                handle,
            },
            Undo::Corrupt {
                interface: "veth0".into(),
                handle,
            },
        ] {
            let undone = revert("netem-busy-root", &undo).unwrap();
            assert!(undone.detail.contains("no netem of ours"), "{undone:?}");
            assert!(
                shown().contains(&format!("qdisc htb {handle:x}: root")),
                "{}",
                shown()
            );
        }
        assert!(
            Command::new("tc")
                .args(["qdisc", "del", "dev", "veth0", "root"])
                .status()
                .unwrap()
                .success()
        );
        assert_clean();
    });
}

/// A plain HTTP/1.1 server on `addr` in the current thread's namespace: `200 ok` to every
/// request, keep-alive, for a minute.
fn http_server(addr: &str) -> SocketAddr {
    let listener = TcpListener::bind(addr).unwrap();
    let local = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(stream) = stream else { return };
            thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                let mut reader = std::io::BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    match std::io::BufRead::read_line(&mut reader, &mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => {
                            if reader
                                .get_mut()
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                                .is_err()
                            {
                                return;
                            }
                        }
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    local
}

/// `GET /` to `to` on a new connection: the status line.
fn status_of(to: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(1)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_string()
}

#[test]
fn http_aborts_through_the_agents_proxy_then_the_server_answers_again() {
    use agent::spec::{HttpAction, HttpSpec};
    let Some(pair) = Pair::new() else { return };
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_path_buf();
    let a_addr = pair.addr_a();
    let (agent, to) = Pair::within(&pair.a, move || {
        let to = http_server(&format!("{a_addr}:0"));
        let agent = agent_in(&dir);
        let http = FaultSpec::Http(HttpSpec {
            port: to.port(),
            action: HttpAction::Abort { status: 503 },
            share: 100.0,
            paths: Vec::new(),
            methods: Vec::new(),
            inside: None,
        });
        agent.check(&http).unwrap();
        // Never the port the controller reaches the agent on.
        let mut own = request("net-http-own", http.clone());
        own.exempt = vec![Exempt {
            peer: "10.0.0.1".parse().unwrap(),
            local_port: to.port(),
        }];
        let refused = agent.inject(own).unwrap_err().to_string();
        assert!(refused.contains("never redirects it"), "{refused}");
        assert_clean();
        let applied = agent.inject(request("net-http", http)).unwrap();
        assert!(applied.verified, "{}", applied.detail);
        assert_eq!(applied.mechanism, "proxy");
        // From this host too.
        assert_eq!(status_of(to), "HTTP/1.1 503 Service Unavailable");
        (agent, to)
    });
    assert_eq!(
        Pair::within(&pair.b, move || status_of(to)),
        "HTTP/1.1 503 Service Unavailable"
    );
    Pair::within(&pair.a, move || {
        let reverted = agent.revert("net-http").unwrap();
        assert!(
            reverted.detail.contains("2 requests: 2 aborted, 0 passed"),
            "{}",
            reverted.detail
        );
        assert_clean();
        assert_eq!(status_of(to), "HTTP/1.1 200 OK");
    });
    assert_eq!(
        Pair::within(&pair.b, move || status_of(to)),
        "HTTP/1.1 200 OK"
    );
}

#[test]
fn http_is_refused_where_nothing_listens_and_on_ssh() {
    use agent::spec::{HttpAction, HttpSpec};
    let Some(pair) = Pair::new() else { return };
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_path_buf();
    Pair::within(&pair.a, move || {
        let agent = agent_in(&dir);
        let http = |port| {
            FaultSpec::Http(HttpSpec {
                port,
                action: HttpAction::Delay {
                    delay: Duration::from_millis(10),
                },
                share: 100.0,
                paths: Vec::new(),
                methods: Vec::new(),
                inside: None,
            })
        };
        let nobody = agent.check(&http(18_999)).unwrap_err().to_string();
        assert!(
            nobody.contains("nothing listens on TCP port 18999"),
            "{nobody}"
        );
        let ssh = agent.check(&http(22)).unwrap_err().to_string();
        assert!(ssh.contains("SSH"), "{ssh}");
        assert_clean();
    });
}
