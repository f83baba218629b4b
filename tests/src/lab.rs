//! The lab: several hosts on this one machine, for runs against real `chaos-agent` daemons.
//!
//! Each lab is a bridge in a namespace of its own (`chl-PID-K-br`), host namespaces
//! `chl-PID-K-h1..` plugged into it (`eth0`, 10.254.N.i/24), and a veth from the root namespace
//! into the bridge (10.254.N.254) so that chaosctl, which runs in the root namespace, reaches the
//! agents. Each host runs the built `chaos-agent` with `ip netns exec`, on its address with TLS
//! (one self-signed certificate per lab naming every host address) and a token, its own state
//! directory, and a 16 MiB tmpfs mounted inside its private mount namespace at `fill_dir` (seen
//! from here through `/proc/AGENT/root`). Traffic goes only to the lab's addresses.
//!
//! Everything is undone when the `Lab` is dropped, on every path: agents and every process in the
//! namespaces killed, the namespaces and the root-side veth deleted. Before that, it checks that
//! no host holds an nft table `chaos_*` (a `dns` or `http` redirect's too), an iptables chain
//! `CHAOS-*`, a root qdisc of ours, a socket of an agent besides its API's (a `dns` responder's)
//! or a listening one (an `http` proxy), and fails the test if one does (unless the test failed
//! already).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::bins::chaos_agent;
pub use crate::ping::Ping;
use crate::support::{Test, cmdline, read_events};
use crate::{eventually, ping, skip};

/// The port every lab agent listens on (each on its own address).
pub const AGENT_PORT: u16 = 7411;

/// How long an agent may take to listen.
const AGENT_START: Duration = Duration::from_secs(10);

/// Whether a lab can be built here; skips (see [`skip`]) saying why not.
fn can_build() -> bool {
    skip::unless_root("the lab creates network namespaces, firewall rules and mounts")
        && skip::unless_installed(&["ip", "nft", "iptables"], "iproute2 nftables iptables")
        && skip::unless_installed(&["ping"], "iputils-ping")
        && skip::unless_installed(
            &["curl", "openssl", "bash", "mount"],
            "curl openssl bash mount",
        )
}

/// Runs `argv`; its stdout, or `Err` with what it said.
pub fn try_sh(argv: &[&str]) -> Result<String, String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", argv[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{argv:?}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs `argv`, which must succeed; its stdout.
#[track_caller]
pub fn sh(argv: &[&str]) -> String {
    try_sh(argv).unwrap_or_else(|e| panic!("{e}"))
}

/// One host of a lab.
pub struct LabHost {
    /// Its name in the inventory: `h1`, `h2`, ...
    pub name: String,
    /// Its network namespace.
    pub ns: String,
    pub addr: String,
    /// The agent's state directory (journal, `audit.jsonl`).
    pub state: PathBuf,
    /// Where the agent's tmpfs is mounted, in the agent's own mount namespace.
    pub fill_dir: PathBuf,
    policy: Option<PathBuf>,
    log: PathBuf,
    agent: Option<Child>,
}

impl LabHost {
    pub fn agent_url(&self) -> String {
        format!("https://{}:{AGENT_PORT}", self.addr)
    }

    /// The agent's pid (it runs in place of `ip netns exec` and the shell that mounted the tmpfs).
    pub fn agent_pid(&self) -> i32 {
        self.agent.as_ref().expect("the agent runs").id() as i32
    }

    /// `fill_dir` as seen from here: through the agent's root, in its mount namespace.
    pub fn fill_dir_outside(&self) -> PathBuf {
        let inside = self.fill_dir.strip_prefix("/").expect("absolute");
        PathBuf::from(format!("/proc/{}/root", self.agent_pid())).join(inside)
    }

    /// The `.chaos-fill-*` files in the agent's tmpfs.
    pub fn fill_files(&self) -> Vec<String> {
        fs::read_dir(self.fill_dir_outside())
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.starts_with(".chaos-fill-"))
            .collect()
    }

    /// `df`'s Use% of the agent's tmpfs.
    #[allow(clippy::unnecessary_cast)] // the statvfs field types differ between targets
    pub fn fill_usage_percent(&self) -> f64 {
        let st = nix::sys::statvfs::statvfs(&self.fill_dir_outside()).expect("statvfs");
        let frsize = st.fragment_size() as u64;
        let used = (st.blocks() as u64 - st.blocks_free() as u64) * frsize;
        let avail = st.blocks_available() as u64 * frsize;
        used as f64 * 100.0 / (used + avail) as f64
    }

    /// The agent's audit log, one JSON value per line.
    /// The sockets the agent listens on beside its API port (an `http` fault's proxy), from
    /// `ss` in the host's namespace; empty when the agent is not running.
    pub fn extra_listeners(&self) -> Vec<String> {
        let Some(pid) = self.agent.as_ref().map(Child::id) else {
            return Vec::new();
        };
        let out = try_sh(&["ip", "netns", "exec", &self.ns, "ss", "-ltnpH"]).unwrap_or_default();
        out.lines()
            .filter(|l| {
                l.contains(&format!("pid={pid},")) && !l.contains(&format!(":{AGENT_PORT} "))
            })
            .map(str::to_string)
            .collect()
    }

    pub fn audit(&self) -> Vec<Value> {
        read_events(&self.state.join("audit.jsonl"))
    }

    pub fn agent_log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A lab of hosts on a bridge; see the module comment.
pub struct Lab {
    /// The third octet of the lab's subnet 10.254.N.0/24.
    pub net: u8,
    bridge: String,
    root_if: String,
    pub hosts: Vec<LabHost>,
    pub dir: tempfile::TempDir,
    pub token: PathBuf,
    pub cert: PathBuf,
    key: PathBuf,
    /// `hosts:` with every lab agent, for `--inventory`.
    pub inventory: PathBuf,
}

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// Three hosts, no policy. `None` (having said why) when it cannot be built here.
    pub fn new() -> Option<Lab> {
        Lab::build(3, &[], &[])
    }

    /// Three hosts, no policy; `client` resolves names through a DNS server on `server`'s address
    /// (which the test starts there): its `/etc/netns/NS/resolv.conf`, which `ip netns exec`
    /// mounts over `/etc/resolv.conf` for the agent and every command run in it, is written
    /// before the agents start (timeout 1 s, one attempt) and removed with the lab.
    pub fn with_resolver(client: &str, server: &str) -> Option<Lab> {
        Lab::build(3, &[], &[(client, server)])
    }

    /// Three hosts; `policies` are (host, policy YAML) for the agents that get a `--policy`.
    pub fn with_policies(policies: &[(&str, &str)]) -> Option<Lab> {
        Lab::build(3, policies, &[])
    }

    fn build(hosts: usize, policies: &[(&str, &str)], resolvers: &[(&str, &str)]) -> Option<Lab> {
        if !can_build() {
            return None;
        }
        let agent = chaos_agent();
        let pid = std::process::id();
        let k = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let net = free_subnet(pid, k);
        let prefix = format!("chl-{pid}-{k}");
        let dir = tempfile::Builder::new()
            .prefix("chaosctl-lab-")
            .tempdir()
            .expect("temp dir");
        let mut lab = Lab {
            net,
            bridge: format!("{prefix}-br"),
            root_if: format!("chl{pid}x{k}"),
            hosts: Vec::new(),
            token: dir.path().join("token"),
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            inventory: dir.path().join("inventory.yaml"),
            dir,
        };
        for i in 1..=hosts {
            let name = format!("h{i}");
            let state = lab.dir.path().join(format!("{name}-state"));
            let fill_dir = lab.dir.path().join(format!("{name}-fill"));
            fs::create_dir_all(&fill_dir).expect("fill dir");
            let policy = policies.iter().find(|(h, _)| *h == name).map(|(_, yaml)| {
                let path = lab.dir.path().join(format!("{name}-policy.yaml"));
                fs::write(&path, yaml).expect("policy file");
                path
            });
            lab.hosts.push(LabHost {
                ns: format!("{prefix}-{name}"),
                addr: format!("10.254.{net}.{i}"),
                log: lab.dir.path().join(format!("{name}-agent.log")),
                name,
                state,
                fill_dir,
                policy,
                agent: None,
            });
        }
        // From here on, Drop undoes whatever was made, should a step fail.
        lab.wire();
        lab.credentials();
        lab.write_inventory();
        for (client, server) in resolvers {
            let dir = Path::new("/etc/netns").join(&lab.host(client).ns);
            fs::create_dir_all(&dir).expect("/etc/netns/NS");
            let conf = format!(
                "nameserver {}\noptions timeout:1 attempts:1\n",
                lab.host(server).addr
            );
            fs::write(dir.join("resolv.conf"), conf).expect("resolv.conf");
        }
        for i in 0..lab.hosts.len() {
            lab.start_agent_at(i, &agent);
        }
        Some(lab)
    }

    fn wire(&self) {
        let br = self.bridge.as_str();
        sh(&["ip", "netns", "add", br]);
        sh(&["ip", "-n", br, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", br, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", br, "link", "set", "br0", "up"]);
        for (i, host) in self.hosts.iter().enumerate() {
            let ns = host.ns.as_str();
            let port = format!("p{}", i + 1);
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            sh(&[
                "ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", &port,
                "netns", br,
            ]);
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", host.addr),
                "dev",
                "eth0",
            ]);
            sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", br, "link", "set", &port, "master", "br0"]);
            sh(&["ip", "-n", br, "link", "set", &port, "up"]);
        }
        let root_if = self.root_if.as_str();
        sh(&[
            "ip", "link", "add", root_if, "type", "veth", "peer", "name", "up0", "netns", br,
        ]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", self.controller_addr()),
            "dev",
            root_if,
        ]);
        sh(&["ip", "link", "set", root_if, "up"]);
        sh(&["ip", "-n", br, "link", "set", "up0", "master", "br0"]);
        sh(&["ip", "-n", br, "link", "set", "up0", "up"]);
    }

    /// The token and one self-signed certificate naming every host's address.
    fn credentials(&self) {
        fs::write(&self.token, format!("lab-token-{}\n", self.root_if)).expect("token");
        fs::set_permissions(&self.token, fs::Permissions::from_mode(0o600)).expect("chmod token");
        let sans: Vec<String> = self
            .hosts
            .iter()
            .map(|h| format!("IP:{}", h.addr))
            .collect();
        let config = self.dir.path().join("openssl.cnf");
        fs::write(
            &config,
            format!(
                "[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN=chaos-lab\n[ext]\n\
                 basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage=serverAuth\nsubjectAltName={}\n",
                sans.join(",")
            ),
        )
        .expect("openssl config");
        sh(&[
            "openssl",
            "req",
            "-x509",
            "-config",
            config.to_str().expect("utf-8"),
            "-extensions",
            "ext",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            self.key.to_str().expect("utf-8"),
            "-out",
            self.cert.to_str().expect("utf-8"),
        ]);
        fs::set_permissions(&self.key, fs::Permissions::from_mode(0o600)).expect("chmod key");
    }

    fn write_inventory(&self) {
        let mut yaml = String::from("hosts:\n");
        for h in &self.hosts {
            yaml.push_str(&format!(
                "  {}: {{agent: \"{}\", token_file: \"{}\", ca_file: \"{}\", labels: {{lab: \"yes\", name: {}}}}}\n",
                h.name,
                h.agent_url(),
                self.token.display(),
                self.cert.display(),
                h.name
            ));
        }
        fs::write(&self.inventory, yaml).expect("inventory");
    }

    /// The root namespace's end of the lab's link: a `local` network fault given this interface
    /// (and the lab's addresses as peers) touches nothing but lab traffic.
    pub fn root_if(&self) -> &str {
        &self.root_if
    }

    /// The root namespace's address in the lab: where chaosctl's connections come from.
    pub fn controller_addr(&self) -> String {
        format!("10.254.{}.254", self.net)
    }

    pub fn host(&self, name: &str) -> &LabHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no lab host {name}"))
    }

    fn index(&self, name: &str) -> usize {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .unwrap_or_else(|| panic!("no lab host {name}"))
    }

    /// A chaosctl `Test` whose runs use this lab's inventory.
    pub fn test(&self, yaml: &str) -> Test {
        self.on_lab(Test::new().scenario(yaml))
    }

    /// A chaosctl `Test` of a scenario file (a drill as it ships), with this lab's inventory and
    /// the same `H1_ADDR`, ... vars as [`Lab::test`].
    pub fn test_file(&self, path: impl Into<PathBuf>) -> Test {
        self.on_lab(Test::new().scenario_file(path))
    }

    /// `t` with `--inventory` of this lab and a var `H1_ADDR`, ... per host.
    fn on_lab(&self, t: Test) -> Test {
        let mut t = t.arg("--inventory").arg(self.inventory.display());
        for h in &self.hosts {
            t = t.var(&format!("{}_ADDR", h.name.to_uppercase()), &h.addr);
        }
        t
    }

    /// The command prefix that runs a program inside `host`'s network namespace
    /// (`ip netns exec NS`), for a drill's `ON_<ROLE>` var: `exec ${ON_MASTER:-} redis-server ...`
    /// then starts the server on that lab host, as its own process, so the run's setup still
    /// stops it with its process group. Whatever it starts is killed when the lab is dropped.
    pub fn exec_prefix(&self, host: &str) -> String {
        format!("ip netns exec {}", self.host(host).ns)
    }

    fn start_agent_at(&mut self, i: usize, agent: &Path) {
        let host = &self.hosts[i];
        let log = File::options()
            .create(true)
            .append(true)
            .open(&host.log)
            .expect("agent log");
        let listen = format!("{}:{AGENT_PORT}", host.addr);
        let mut cmd = Command::new("ip");
        // The tmpfs is mounted in the private mount namespace `ip netns exec` made, then the shell
        // becomes the agent, so both die together.
        cmd.args(["netns", "exec", &host.ns, "bash", "-c"])
            .arg("mount -t tmpfs -o size=16m chl-fill \"$0\" && exec \"$@\"")
            .arg(&host.fill_dir)
            .arg(agent)
            .args(["--listen", &listen, "--token-file"])
            .arg(&self.token)
            .arg("--tls-cert")
            .arg(&self.cert)
            .arg("--tls-key")
            .arg(&self.key)
            .arg("--state-dir")
            .arg(&host.state);
        if let Some(policy) = &host.policy {
            cmd.arg("--policy").arg(policy);
        }
        cmd.env_remove("CHAOS_AGENT_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = cmd.spawn().expect("start ip netns exec chaos-agent");
        let pid = child.id() as i32;
        self.hosts[i].agent = Some(child);
        let name = self.hosts[i].name.clone();
        let to: SocketAddr = listen.parse().expect("address");
        let agent_path = agent.display().to_string();
        let deadline = Instant::now() + AGENT_START;
        loop {
            if let Some(status) = self.hosts[i]
                .agent
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait"))
            {
                self.hosts[i].agent = None;
                panic!(
                    "the agent of {name} exited ({status}) before listening:\n{}",
                    self.hosts[i].agent_log()
                );
            }
            // The shell has become the agent (so its pid is the agent's), and it serves: it binds
            // before it opens its journal and reverts what that holds, so a bare connect is early.
            if cmdline(pid).is_some_and(|c| c.starts_with(&agent_path))
                && TcpStream::connect_timeout(&to, Duration::from_millis(200)).is_ok()
                && self.healthz(i)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the agent of {name} does not listen on {to} within {AGENT_START:?}:\n{}",
                self.hosts[i].agent_log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the agent of host `i` answers `GET /healthz` over TLS.
    fn healthz(&self, i: usize) -> bool {
        let url = format!("{}/healthz", self.hosts[i].agent_url());
        let cacert = self.cert.display().to_string();
        try_sh(&["curl", "-sf", "--max-time", "1", "--cacert", &cacert, &url])
            .is_ok_and(|body| body.trim() == "ok")
    }

    /// Starts `host`'s agent again, on the same state directory (it reverts what its journal holds).
    pub fn restart_agent(&mut self, host: &str) {
        let i = self.index(host);
        assert!(self.hosts[i].agent.is_none(), "{host}'s agent still runs");
        self.start_agent_at(i, &chaos_agent());
    }

    /// SIGKILLs `host`'s agent and reaps it.
    pub fn kill_agent(&mut self, host: &str) {
        let i = self.index(host);
        let mut child = self.hosts[i].agent.take().expect("the agent runs");
        let _ = child.kill();
        let _ = child.wait();
    }

    // ---- observing ----------------------------------------------------------------------------

    /// `nft list tables` in `host`'s namespace.
    pub fn nft_tables(&self, host: &str) -> String {
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.host(host).ns,
            "nft",
            "list",
            "tables",
        ])
    }

    /// Whether `host` holds an nft table of ours.
    pub fn has_chaos_table(&self, host: &str) -> bool {
        self.nft_tables(host).contains("chaos_")
    }

    /// `iptables -S` in `host`'s namespace.
    pub fn iptables(&self, host: &str) -> String {
        sh(&["ip", "netns", "exec", &self.host(host).ns, "iptables", "-S"])
    }

    /// `tc qdisc show` in `host`'s namespace.
    pub fn qdiscs(&self, host: &str) -> String {
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.host(host).ns,
            "tc",
            "qdisc",
            "show",
        ])
    }

    /// Whether `host` holds a `bandwidth` shaper (an HTB root qdisc).
    pub fn has_shaper(&self, host: &str) -> bool {
        self.qdiscs(host).contains("qdisc htb")
    }

    /// Whether `host` holds an iptables chain of ours (the NFQUEUE rule jumps to it).
    pub fn has_chaos_chain(&self, host: &str) -> bool {
        self.iptables(host).contains("CHAOS-")
    }

    /// `ping` from `from` to `to`, every `interval` seconds.
    pub fn ping(&self, from: &str, to: &str, count: u32, interval: &str) -> Ping {
        ping::ping_from(&self.host(from).ns, &self.host(to).addr, count, interval)
    }

    /// Runs `f` on a thread inside `host`'s network namespace.
    pub fn within<T: Send + 'static>(
        &self,
        host: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let path = format!("/run/netns/{}", self.host(host).ns);
        thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// A TCP connection from `from` to `to`, given `within` to open.
    pub fn connect(
        &self,
        from: &str,
        to: SocketAddr,
        within: Duration,
    ) -> std::io::Result<TcpStream> {
        self.within(from, move || TcpStream::connect_timeout(&to, within))
    }

    /// Cuts the controller off from `host`: a table of the lab's own (`lab_cut`, not ours to
    /// check) in the host's namespace answers the controller's packets to the agent's port with a
    /// TCP reset, so every call fails at once. (The bridge family cannot reject on this kernel, and
    /// a silent drop would make each call wait out the client's 5 s timeout.)
    pub fn cut_controller_from(&self, host: &str) {
        let ctl = self.controller_addr();
        let script = format!(
            "table inet lab_cut {{\n  chain input {{\n    type filter hook input priority filter - 20; policy accept;\n    \
             ip saddr {ctl} tcp dport {AGENT_PORT} reject with tcp reset\n  }}\n}}\n"
        );
        let path = self.dir.path().join("cut.nft");
        fs::write(&path, script).expect("cut.nft");
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.host(host).ns,
            "nft",
            "-f",
            path.to_str().expect("utf-8"),
        ]);
    }

    /// What of ours is left in the host namespaces: nft tables `chaos_*`, iptables chains `CHAOS-*`,
    /// root qdiscs (HTB, our prio).
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for h in &self.hosts {
            let tables = try_sh(&["ip", "netns", "exec", &h.ns, "nft", "list", "tables"])
                .unwrap_or_else(|e| e);
            for l in tables.lines().filter(|l| l.contains("chaos_")) {
                left.push(format!("{}: {l}", h.name));
            }
            let rules =
                try_sh(&["ip", "netns", "exec", &h.ns, "iptables", "-S"]).unwrap_or_else(|e| e);
            for l in rules.lines().filter(|l| l.contains("CHAOS")) {
                left.push(format!("{}: {l}", h.name));
            }
            for pid in stress_workers_in(&h.ns) {
                left.push(format!("{}: stress worker pid {pid}", h.name));
            }
            for socket in agent_sockets_in(&h.ns) {
                left.push(format!("{}: a socket of the agent: {socket}", h.name));
            }
            // An `http` fault's proxy: the agent listening on a port beside its own.
            for l in h.extra_listeners() {
                left.push(format!("{}: the agent still listens: {l}", h.name));
            }
            // `bandwidth`'s HTB and `latency`'s prio/netem: no lab host has a qdisc of its own.
            let qdiscs = try_sh(&["ip", "netns", "exec", &h.ns, "tc", "qdisc", "show"])
                .unwrap_or_else(|e| e);
            for l in qdiscs.lines().filter(|l| {
                ["qdisc htb", "qdisc prio", "qdisc netem"]
                    .iter()
                    .any(|q| l.contains(q))
            }) {
                left.push(format!("{}: {l}", h.name));
            }
        }
        left
    }

    /// The sockets the agent of `host` listens on besides its API (a `dns` responder's), as `ss`
    /// lists them.
    pub fn agent_sockets(&self, host: &str) -> Vec<String> {
        agent_sockets_in(&self.host(host).ns)
    }

    /// The `stress` workers (`chaos-stress` processes that have not exited) in `host`'s namespace.
    pub fn stress_workers(&self, host: &str) -> Vec<i32> {
        stress_workers_in(&self.host(host).ns)
    }

    fn namespaces(&self) -> Vec<String> {
        let mut all: Vec<String> = self.hosts.iter().map(|h| h.ns.clone()).collect();
        all.push(self.bridge.clone());
        all
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            if let Some(mut child) = h.agent.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Every process still in a namespace (sleepers, a helper): SIGKILL, bounded wait.
        let deadline = Instant::now() + Duration::from_secs(5);
        for ns in self.namespaces() {
            loop {
                let pids = try_sh(&["ip", "netns", "pids", &ns]).unwrap_or_default();
                let pids: Vec<i32> = pids
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect();
                if pids.is_empty() || Instant::now() > deadline {
                    break;
                }
                for pid in pids {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        let left = self.leftovers();
        for ns in self.namespaces() {
            let _ = try_sh(&["ip", "netns", "del", &ns]);
            let _ = fs::remove_dir_all(Path::new("/etc/netns").join(&ns));
        }
        let _ = try_sh(&["ip", "link", "del", &self.root_if]);
        let listed = try_sh(&["ip", "netns", "list"]).unwrap_or_default();
        let names = self.namespaces();
        let stale: Vec<&str> = listed
            .lines()
            .filter(|l| names.iter().any(|n| l.split_whitespace().next() == Some(n)))
            .collect();
        if !std::thread::panicking() {
            assert!(left.is_empty(), "left in the lab's hosts: {left:#?}");
            assert!(stale.is_empty(), "namespaces not deleted: {stale:?}");
            assert!(
                try_sh(&["ip", "link", "show", &self.root_if]).is_err(),
                "{} is still there",
                self.root_if
            );
        }
    }
}

/// The listening (TCP) and bound (UDP) sockets of `chaos-agent` processes in `ns` besides the
/// API's port.
fn agent_sockets_in(ns: &str) -> Vec<String> {
    let listed = try_sh(&["ip", "netns", "exec", ns, "ss", "-H", "-lnptu"]).unwrap_or_else(|e| e);
    listed
        .lines()
        .filter(|l| l.contains("\"chaos-agent\"") && !l.contains(&format!(":{AGENT_PORT} ")))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// A subnet 10.254.N.0/24 no other lab of this process uses, nor any root-namespace address.
fn free_subnet(pid: u32, k: u32) -> u8 {
    let used = try_sh(&["ip", "-4", "-o", "addr", "show"]).unwrap_or_default();
    for attempt in 0..250u32 {
        // Distinct for each k within a process; spread by pid across processes.
        let n = ((pid % 25) * 10 + k + attempt * 16) % 250 + 1;
        if !used.contains(&format!("10.254.{n}.")) {
            return n as u8;
        }
    }
    panic!("no free 10.254.N.0/24 for a lab");
}

#[allow(unsafe_code)]
fn enter(path: &str) {
    let file = File::open(path).unwrap_or_else(|err| panic!("{path}: {err}"));
    // SAFETY: setns reads a valid open descriptor (kept open across the call) and changes only the
    // calling thread's network namespace; no memory is shared with the kernel.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

// ---- processes and servers in a host ----------------------------------------------------------

/// A `sleep` started inside a host's namespace whose command line starts with a unique tag.
/// Killed when dropped.
pub struct LabSleeper {
    child: Child,
    pub pid: i32,
}

impl LabSleeper {
    pub fn spawn(lab: &Lab, host: &str, tag: &str) -> LabSleeper {
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.host(host).ns, "bash", "-c"])
            .arg("exec -a \"$0\" sleep 300")
            .arg(tag)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a sleeper");
        let pid = child.id() as i32;
        eventually(Duration::from_secs(5), "the sleeper has exec'd", || {
            cmdline(pid).filter(|c| c.starts_with(tag)).map(|_| ())
        });
        LabSleeper { child, pid }
    }

    /// Whether it has ended; reaps it.
    pub fn has_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }
}

impl Drop for LabSleeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long an echo server serves at most, should its test forget to stop it.
const ECHO_LIMIT: Duration = Duration::from_secs(120);

/// An echo server in a host's namespace (each read answered with its bytes); stopped when dropped.
pub struct Echo {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    pub fn start(lab: &Lab, host: &str) -> Echo {
        let bind = format!("{}:0", lab.host(host).addr);
        let stop = Arc::new(AtomicBool::new(false));
        let path = format!("/run/netns/{}", lab.host(host).ns);
        let (tx, rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            enter(&path);
            let listener = TcpListener::bind(&bind).expect("bind the echo server");
            listener.set_nonblocking(true).expect("nonblocking");
            tx.send(listener.local_addr().expect("address"))
                .expect("send the address");
            let mut conns: Vec<JoinHandle<()>> = Vec::new();
            let deadline = Instant::now() + ECHO_LIMIT;
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let flag = flag.clone();
                        conns.push(thread::spawn(move || serve_echo(stream, &flag)));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the echo server's address");
        Echo {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

fn serve_echo(mut stream: TcpStream, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + ECHO_LIMIT;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One echo over `stream`, given `within` for the answer.
pub fn echo(stream: &mut TcpStream, within: Duration) -> std::io::Result<()> {
    stream.set_read_timeout(Some(within))?;
    stream.write_all(b"ping")?;
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf)
}

/// The `chaos-stress` processes in network namespace `ns` that have not exited.
fn stress_workers_in(ns: &str) -> Vec<i32> {
    let pids = try_sh(&["ip", "netns", "pids", ns]).unwrap_or_default();
    pids.split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.contains("(chaos-stress) ")
                    && !stat.contains("(chaos-stress) Z")
                    && !stat.contains("(chaos-stress) X")
            })
        })
        .collect()
}

// ---- runs -------------------------------------------------------------------------------------

/// Waits until the run of `t` has applied a fault on `host` (its `fault_applied` event).
pub fn wait_applied(t: &Test, host: &str, within: Duration) -> Value {
    let folder = t.run_folder();
    eventually(within, &format!("a fault applied on {host}"), || {
        read_events(&folder.join("events.jsonl"))
            .into_iter()
            .find(|e| e["kind"] == "fault_applied" && e["fields"]["host"] == host)
    })
}
