//! `latency`: with netem, a `prio` root qdisc on the interface whose fourth band is a netem delay,
//! and u32 filters sending the matching packets there (exemptions to band 1 first; the mechanism
//! is [`netem`](super::netem), shared with `corrupt` and `duplicate`); without it, an
//! iptables chain of our own (`CHAOS-<short id>`, jumped to from `INPUT` for the interface) that
//! queues the matching packets to an [`nfqueue`](super::nfqueue) holder.
//!
//! netem delays what we send (egress); the NFQUEUE holder delays what we receive (ingress, where
//! holding packets does not starve TCP of its send window). Either way a round trip with a
//! matching peer takes `delay` (± `jitter`) longer.
//!
//! **Invariant:** the NFQUEUE rule fails open (`--queue-bypass`): if our holder dies, packets flow
//! undelayed until the rule is removed (by the next start of the agent, from its journal).

use std::fmt;
use std::time::Duration;

use super::{Context, Hosts, check_scope, describe, net_error, netem, nfqueue, protocols, run};
use crate::error::FaultError;
use crate::fault::{Injected, Kind, Resolved, Undo, Undone, other_kinds_undo, supported};
use crate::server::policy::{Policy, Refusal};
use crate::spec::{Exempt, FaultKind, LatencySpec, NetScope, PeerSelector};

const KIND: FaultKind = FaultKind::Latency;

impl Kind for LatencySpec {
    /// netem where the kernel has it, else NFQUEUE ([`super::detect`]).
    fn support() -> Result<&'static str, &'static str> {
        super::detect::latency(super::detect::host())
    }

    fn check(&self, _at: &Resolved) -> Result<(), FaultError> {
        supported(KIND)?;
        check_scope(KIND, &self.scope).map(drop)
    }

    fn plan(&self, fault_id: &str, _seed: u64, _at: &Resolved) -> Result<Undo, FaultError> {
        let mechanism = supported(KIND)?;
        let interface = check_scope(KIND, &self.scope)?;
        if mechanism == "netem" {
            return Ok(Undo::Netem {
                interface,
                handle: netem::handle_of(fault_id),
            });
        }
        let (ipv4, ipv6) = families(&self.scope)?;
        Ok(Undo::Nfqueue {
            chain: chain_name(fault_id),
            queue: queue_number(fault_id),
            interface,
            ipv4,
            ipv6,
        })
    }

    fn inject(&self, _fault_id: &str, undo: &Undo, ctx: &Context) -> Result<Injected, FaultError> {
        match undo {
            Undo::Nfqueue {
                chain,
                queue,
                interface,
                ipv4,
                ipv6,
            } => inject_nfqueue(
                self.delay,
                self.jitter,
                &self.scope,
                chain,
                *queue,
                interface,
                (*ipv4, *ipv6),
                ctx,
            ),
            Undo::Netem { interface, handle } => netem::inject(
                KIND,
                &self.scope,
                (interface, *handle),
                ctx,
                netem::Impairment {
                    tc: &netem_delay(self.delay, self.jitter),
                    effect: &format!(
                        "{} ms ± {} ms",
                        self.delay.as_millis(),
                        self.jitter.as_millis()
                    ),
                    shows: None,
                },
            ),
            _ => Err(other_kinds_undo(KIND)),
        }
    }

    fn check_policy(&self, policy: &Policy, _at: &Resolved) -> Result<(), Refusal> {
        policy.check_scope(KIND, &self.scope)
    }
}

impl fmt::Display for LatencySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "latency {}ms ± {}ms{}",
            self.delay.as_millis(),
            self.jitter.as_millis(),
            self.scope
        )
    }
}

/// netem's words for `delay` ± `jitter`: `delay 200000us 10000us`.
pub fn netem_delay(delay: Duration, jitter: Duration) -> String {
    let mut words = format!("delay {}us", delay.as_micros());
    if !jitter.is_zero() {
        words.push_str(&format!(" {}us", jitter.as_micros()));
    }
    words
}

/// Our iptables chain for a fault (at most 28 characters).
pub fn chain_name(fault_id: &str) -> String {
    format!("CHAOS-{}", super::short_id(fault_id))
}

/// The netfilter queue of a fault: from its id's hash, in 1000..=64999.
pub fn queue_number(fault_id: &str) -> u16 {
    let hash = u64::from_str_radix(&super::short_id(fault_id), 16).unwrap_or(0);
    1000 + (hash % 64_000) as u16
}

/// Which iptables families a scope needs: IPv4 and/or IPv6 (both when no host is named).
pub fn families(scope: &NetScope) -> Result<(bool, bool), FaultError> {
    let mut v4 = false;
    let mut v6 = false;
    let sels: Vec<&PeerSelector> = [&scope.to, &scope.from].into_iter().flatten().collect();
    if sels.is_empty() {
        return Ok((true, true));
    }
    for sel in sels {
        let hosts = Hosts::parse(KIND, &sel.hosts)?;
        if hosts.is_empty() {
            return Ok((true, true));
        }
        v4 |= !hosts.v4.is_empty();
        v6 |= !hosts.v6.is_empty();
    }
    Ok((v4, v6))
}

/// The rules of our chain for one family (`v6`), as iptables argument lists after `-A CHAIN`.
pub fn chain_rules(
    scope: &NetScope,
    exempt: &[Exempt],
    queue: u16,
    v6: bool,
) -> Result<Vec<Vec<String>>, FaultError> {
    let mut rules: Vec<Vec<String>> = Vec::new();
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    if scope.spare_ssh {
        rules.push(words("-p tcp --dport 22 -j RETURN"));
        rules.push(words("-p tcp --sport 22 -j RETURN"));
    }
    for e in exempt.iter().filter(|e| e.peer.is_ipv6() == v6) {
        rules.push(words(&format!(
            "-s {} -p tcp --dport {} -j RETURN",
            e.peer, e.local_port
        )));
    }
    let target = format!("-j NFQUEUE --queue-num {queue} --queue-bypass");
    // Packets received: replies from `to` peers (their port is the source), and what `from`
    // peers send us (our port is the destination).
    let mut selectors: Vec<(&PeerSelector, &str)> = Vec::new();
    if let Some(to) = &scope.to {
        selectors.push((to, "--sport"));
    }
    if let Some(from) = &scope.from {
        selectors.push((from, "--dport"));
    }
    if selectors.is_empty() {
        rules.push(words(&target));
    }
    for (sel, port_flag) in selectors {
        let hosts = Hosts::parse(KIND, &sel.hosts)?;
        let family_hosts = if v6 { &hosts.v6 } else { &hosts.v4 };
        let host_args: Vec<String> = if hosts.is_empty() {
            vec![String::new()]
        } else if family_hosts.is_empty() {
            continue;
        } else {
            family_hosts.iter().map(|h| format!("-s {h}")).collect()
        };
        let proto_args: Vec<String> = match protocols(sel) {
            None => vec![String::new()],
            Some(protos) => protos.iter().map(|p| format!("-p {p}")).collect(),
        };
        let port_args: Vec<String> = if sel.ports.is_empty() {
            vec![String::new()]
        } else {
            sel.ports
                .iter()
                .map(|p| format!("{port_flag} {p}"))
                .collect()
        };
        for h in &host_args {
            for p in &proto_args {
                for port in &port_args {
                    rules.push(words(&format!("{h} {p} {port} {target}")));
                }
            }
        }
    }
    Ok(rules)
}

fn tables(v6: bool) -> &'static str {
    if v6 { "ip6tables" } else { "iptables" }
}

/// NFQUEUE: starts the holder, then installs the chain and the jump from `INPUT`, and reads them
/// back. On error the caller reverts (which removes whatever half was installed).
#[allow(clippy::too_many_arguments)]
pub fn inject_nfqueue(
    delay: Duration,
    jitter: Duration,
    scope: &NetScope,
    chain: &str,
    queue: u16,
    interface: &str,
    (v4, v6): (bool, bool),
    ctx: &Context,
) -> Result<Injected, FaultError> {
    nfqueue::start(chain, queue, delay, jitter).map_err(|reason| net_error(KIND, reason))?;
    let mut installed = Vec::new();
    for family_v6 in [false, true] {
        if (family_v6 && !v6) || (!family_v6 && !v4) {
            continue;
        }
        let tool = tables(family_v6);
        let rules = chain_rules(scope, &ctx.exempt, queue, family_v6)?;
        let fail =
            |reason: String| net_error(KIND, format!("failed to install `{chain}`: {reason}"));
        run(tool, &["-w", "5", "-N", chain], None).map_err(fail)?;
        for rule in &rules {
            let mut args = vec!["-w", "5", "-A", chain];
            args.extend(rule.iter().map(String::as_str));
            run(tool, &args, None).map_err(fail)?;
        }
        run(
            tool,
            &["-w", "5", "-I", "INPUT", "1", "-i", interface, "-j", chain],
            None,
        )
        .map_err(fail)?;
        installed.push((tool, rules.len()));
    }
    let mut diffs = Vec::new();
    for (tool, count) in &installed {
        match run(tool, &["-w", "5", "-S", chain], None) {
            Ok(out) => {
                let got = out.lines().filter(|l| l.starts_with("-A ")).count();
                if got != *count {
                    diffs.push(format!(
                        "{tool}: {got} rules in `{chain}`, {count} installed"
                    ));
                }
            }
            Err(reason) => diffs.push(reason),
        }
        match run(tool, &["-w", "5", "-S", "INPUT"], None) {
            Ok(out) if out.lines().any(|l| l.contains(&format!("-j {chain}"))) => {}
            Ok(_) => diffs.push(format!("{tool}: no jump to `{chain}` in INPUT")),
            Err(reason) => diffs.push(reason),
        }
    }
    if !nfqueue::is_running(chain) {
        diffs.push("the holder stopped".to_string());
    }
    let families: Vec<&str> = installed.iter().map(|(t, _)| *t).collect();
    let mut detail = format!(
        "{} ms ± {} ms at ingress of {interface}: chain {chain} ({}) → NFQUEUE {queue} (fail open)",
        delay.as_millis(),
        jitter.as_millis(),
        families.join(", ")
    );
    if !diffs.is_empty() {
        detail.push_str(&format!("; read back: {}", diffs.join(", ")));
    }
    Ok(Injected {
        mechanism: "nfqueue".to_string(),
        affected: vec![describe(interface, scope)],
        verified: diffs.is_empty(),
        detail,
        undo: None,
    })
}

/// Removes the jump and the chain (both families; absent is fine), stops the holder if it runs
/// here, and checks `iptables -S` no longer names the chain.
pub fn revert_nfqueue(
    chain: &str,
    interface: &str,
    v4: bool,
    v6: bool,
) -> Result<Undone, FaultError> {
    let mut problems = Vec::new();
    let mut removed = 0;
    for family_v6 in [false, true] {
        if (family_v6 && !v6) || (!family_v6 && !v4) {
            continue;
        }
        let tool = tables(family_v6);
        // Rules first, so no packet is queued to a holder about to stop.
        for _ in 0..16 {
            let deleted = run(
                tool,
                &["-w", "5", "-D", "INPUT", "-i", interface, "-j", chain],
                None,
            );
            if deleted.is_err() {
                break;
            }
            removed += 1;
        }
        let _ = run(tool, &["-w", "5", "-F", chain], None);
        let _ = run(tool, &["-w", "5", "-X", chain], None);
        match run(tool, &["-w", "5", "-S"], None) {
            Ok(out) if out.contains(chain) => problems.push(format!(
                "{tool} still names `{chain}`; remove it with `{tool} -D INPUT -i {interface} -j {chain}; {tool} -F {chain}; {tool} -X {chain}`"
            )),
            Ok(_) => {}
            Err(reason) => problems.push(format!("cannot check {tool}: {reason}")),
        }
    }
    let stats = nfqueue::stop(chain);
    if !problems.is_empty() {
        return Err(net_error(KIND, problems.join("; ")));
    }
    let held = match stats {
        Some(s) => format!(
            "; the holder stopped after {} packets (at most {} held at once)",
            s.packets, s.max_held
        ),
        None => "; no holder ran in this process".to_string(),
    };
    Ok(Undone {
        verified: true,
        detail: format!(
            "chain {chain} removed ({removed} jump{} from INPUT){held}",
            if removed == 1 { "" } else { "s" }
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Protocol;

    #[test]
    fn nfqueue_rules_exempt_first_then_queue_replies_from_peers() {
        let scope = NetScope {
            to: Some(PeerSelector {
                hosts: vec!["10.0.0.20".into(), "fd00::1".into()],
                ports: vec![5432],
                protocol: Some(Protocol::Tcp),
            }),
            from: None,
            interface: None,
            spare_ssh: true,
            inside: None,
        };
        let exempt = [Exempt {
            peer: "10.0.0.1".parse().unwrap(),
            local_port: 7070,
        }];
        assert_eq!(families(&scope).unwrap(), (true, true));
        let rules: Vec<String> = chain_rules(&scope, &exempt, 1234, false)
            .unwrap()
            .into_iter()
            .map(|r| r.join(" "))
            .collect();
        assert_eq!(
            rules,
            [
                "-p tcp --dport 22 -j RETURN",
                "-p tcp --sport 22 -j RETURN",
                "-s 10.0.0.1 -p tcp --dport 7070 -j RETURN",
                "-s 10.0.0.20 -p tcp --sport 5432 -j NFQUEUE --queue-num 1234 --queue-bypass",
            ]
        );
        let v6 = chain_rules(&scope, &exempt, 1234, true).unwrap();
        assert_eq!(v6.len(), 3);
        assert!(
            v6[2]
                .join(" ")
                .starts_with("-s fd00::1 -p tcp --sport 5432")
        );
    }

    #[test]
    fn queue_numbers_and_chains_are_per_fault() {
        assert_ne!(queue_number("a"), queue_number("b"));
        assert!((1000..65000).contains(&queue_number("a")));
        assert!(chain_name("x").len() <= 28);
    }
}
