//! What this host offers for network faults, found once per process and cached: nftables (for
//! `drop`/`loss`), netem and NFQUEUE (for `latency`; netem alone for `corrupt` and `duplicate`), HTB
//! (for `bandwidth`).
//!
//! The probes that would change the host run in a network namespace of their own
//! (`unshare -n`), which the kernel throws away when the probe exits: nothing is left on the host
//! whatever happens. Where `unshare` cannot be used, the read-only half of each probe decides.

use std::sync::OnceLock;

use super::run;

/// The mechanisms found, each usable or the reason why not.
#[derive(Debug, Clone)]
pub struct Host {
    pub nft: Result<(), String>,
    pub netem: Result<(), String>,
    pub nfqueue: Result<(), String>,
    /// HTB, its classes set by nftables' `meta priority` (for `bandwidth`).
    pub htb: Result<(), String>,
}

static HOST: OnceLock<Host> = OnceLock::new();

/// This host's mechanisms (probed on the first call).
pub fn host() -> &'static Host {
    HOST.get_or_init(probe)
}

/// The latency mechanism this host offers: `netem`, else `nfqueue`, else why neither.
pub fn latency(host: &'static Host) -> Result<&'static str, &'static str> {
    match (&host.netem, &host.nfqueue) {
        (Ok(()), _) => Ok("netem"),
        (Err(_), Ok(())) => Ok("nfqueue"),
        (Err(_), Err(nfq)) => Err(nfq.as_str()),
    }
}

fn probe() -> Host {
    let root = nix::unistd::geteuid().is_root();
    let nft = probe_nft(root);
    let netem = probe_netem();
    let nfqueue = probe_nfqueue(root, netem.as_ref().err());
    let htb = probe_htb();
    Host {
        nft,
        netem,
        nfqueue,
        htb,
    }
}

/// A throwaway table using every nft feature `drop`/`loss` need.
const NFT_PROBE: &str = "table inet chaos_probe {
  set gate { type ifname; flags timeout; elements = { \"lo\" timeout 5s } }
  chain input { type filter hook input priority filter - 5; policy accept;
    iifname != @gate return
    tcp dport 22 accept
    numgen random mod 10000 < 1 drop
    meta l4proto tcp reject with tcp reset
    reject with icmpx admin-prohibited
  }
}
";

fn probe_nft(root: bool) -> Result<(), String> {
    if let Err(reason) = run("nft", &["list", "tables"], None) {
        return Err(if reason.contains("not installed") {
            "need nftables, which is not installed: `apt-get install nftables`".to_string()
        } else if !root {
            format!("need root (or CAP_NET_ADMIN) to use nftables: {reason}")
        } else {
            format!("cannot be used: nftables does not work here: {reason}")
        });
    }
    match run("unshare", &["-n", "nft", "-f", "-"], Some(NFT_PROBE)) {
        Ok(_) => Ok(()),
        // No private namespace to try in: `nft list tables` worked, take that.
        Err(reason) if no_unshare(&reason) => Ok(()),
        Err(reason) => Err(format!(
            "need nftables with sets with timeouts, numgen and reject, which this kernel lacks: {reason}"
        )),
    }
}

/// `unshare` is missing or may not make a namespace here: the probe could not be run.
fn no_unshare(reason: &str) -> bool {
    reason.contains("`unshare` is not installed") || reason.contains("unshare: unshare failed")
}

fn probe_netem() -> Result<(), String> {
    match run(
        "unshare",
        &[
            "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
        ],
        None,
    ) {
        Ok(_) => Ok(()),
        Err(reason) if no_unshare(&reason) => Err(format!("cannot probe for netem: {reason}")),
        Err(reason) if reason.contains("unknown") => {
            Err("no netem in this kernel (module sch_netem)".to_string())
        }
        Err(reason) => Err(format!("netem cannot be used: {reason}")),
    }
}

/// The shaper `bandwidth` sets up, on the loopback of a throwaway namespace.
const HTB_PROBE: &str = "qdisc add dev lo root handle 1: htb
class add dev lo parent 1: classid 1:1 htb rate 1mbit ceil 1mbit burst 15140 cburst 15140
";

/// The rule that puts packets in the shaper's class.
const PRIORITY_PROBE: &str = "table inet chaos_probe {
  chain output { type filter hook output priority filter - 5; policy accept;
    meta priority set 1:1
  }
}
";

fn probe_htb() -> Result<(), String> {
    match run("unshare", &["-n", "tc", "-batch", "-"], Some(HTB_PROBE)) {
        Ok(_) => match run("unshare", &["-n", "nft", "-f", "-"], Some(PRIORITY_PROBE)) {
            Ok(_) => Ok(()),
            Err(reason) => Err(format!(
                "need nftables' `meta priority set`, which does not work here: {reason}"
            )),
        },
        Err(reason)
            if reason.contains("`tc` is not installed")
                || reason.contains("failed to execute tc") =>
        {
            Err("need tc, which is not installed: `apt-get install iproute2`".to_string())
        }
        Err(reason) if no_unshare(&reason) => match run("tc", &["qdisc", "show"], None) {
            Ok(_) => Ok(()),
            Err(reason) => Err(format!("cannot probe for htb: {reason}")),
        },
        Err(reason) if reason.contains("nknown") || reason.contains("No such file") => {
            Err(format!(
                "need the kernel's HTB shaper (module sch_htb), which this kernel lacks: {reason}"
            ))
        }
        Err(reason) => Err(format!("HTB cannot be used: {reason}")),
    }
}

fn probe_nfqueue(root: bool, netem: Option<&String>) -> Result<(), String> {
    let why_not_netem = netem.map_or(String::new(), |r| format!("{r}, and "));
    let rule = [
        "-n",
        "iptables",
        "-A",
        "INPUT",
        "-j",
        "NFQUEUE",
        "--queue-num",
        "1",
        "--queue-bypass",
    ];
    match run("unshare", &rule, None) {
        Ok(_) => {}
        Err(reason) if no_unshare(&reason) => {}
        Err(reason) if reason.contains("failed to execute iptables") => {
            return Err(format!(
                "need netem or NFQUEUE: {why_not_netem}iptables is not installed: `apt-get install iptables`"
            ));
        }
        Err(reason) if !root => {
            return Err(format!(
                "need netem or NFQUEUE: {why_not_netem}NFQUEUE needs root: {reason}"
            ));
        }
        Err(reason) => {
            return Err(format!(
                "need netem or NFQUEUE: {why_not_netem}iptables refuses `-j NFQUEUE`: {reason}"
            ));
        }
    }
    if let Err(reason) = run("iptables", &["-S", "INPUT"], None) {
        return Err(format!(
            "need netem or NFQUEUE: {why_not_netem}iptables does not work here: {reason}"
        ));
    }
    Ok(())
}
