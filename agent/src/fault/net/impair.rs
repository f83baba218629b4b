//! `corrupt` and `duplicate`: a share of the packets this host sends to matching peers corrupted
//! (one bit flipped at random) or sent twice, by netem ([`netem`](super::netem): our `prio` root
//! qdisc on the interface, its netem band `corrupt P%` or `duplicate P%`, filters for the
//! matching peers, the exemptions first). The two kinds differ only in netem's word.
//!
//! Only netem can do either: a host without it (no `sch_netem` in the kernel) is refused at
//! preflight with the reason and what to do, never approximated.
//!
//! **Invariant:** like every netem fault, no kernel-side expiry: what ends it if every process of
//! ours dies is the agent, from its journal, when it starts again ([`super::netem`]).

use std::fmt;
use std::sync::OnceLock;

use super::{Context, check_scope, net_error, netem};
use crate::error::FaultError;
use crate::fault::{Injected, Kind, Resolved, Undo, other_kinds_undo, supported};
use crate::server::policy::{Policy, Refusal};
use crate::spec::{CorruptSpec, DuplicateSpec, FaultKind, NetScope};

impl Kind for CorruptSpec {
    fn support() -> Result<&'static str, &'static str> {
        support()
    }

    fn check(&self, _at: &Resolved) -> Result<(), FaultError> {
        check(FaultKind::Corrupt, self.share, &self.scope).map(drop)
    }

    fn plan(&self, fault_id: &str, _seed: u64, _at: &Resolved) -> Result<Undo, FaultError> {
        let interface = check(FaultKind::Corrupt, self.share, &self.scope)?;
        Ok(Undo::Corrupt {
            interface,
            handle: netem::handle_of(fault_id),
        })
    }

    fn inject(&self, _fault_id: &str, undo: &Undo, ctx: &Context) -> Result<Injected, FaultError> {
        let Undo::Corrupt { interface, handle } = undo else {
            return Err(other_kinds_undo(FaultKind::Corrupt));
        };
        inject(
            FaultKind::Corrupt,
            self.share,
            &self.scope,
            interface,
            *handle,
            ctx,
        )
    }

    fn check_policy(&self, policy: &Policy, _at: &Resolved) -> Result<(), Refusal> {
        policy.check_scope(FaultKind::Corrupt, &self.scope)
    }
}

impl fmt::Display for CorruptSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corrupt {}%{}", self.share, self.scope)
    }
}

impl Kind for DuplicateSpec {
    fn support() -> Result<&'static str, &'static str> {
        support()
    }

    fn check(&self, _at: &Resolved) -> Result<(), FaultError> {
        check(FaultKind::Duplicate, self.share, &self.scope).map(drop)
    }

    fn plan(&self, fault_id: &str, _seed: u64, _at: &Resolved) -> Result<Undo, FaultError> {
        let interface = check(FaultKind::Duplicate, self.share, &self.scope)?;
        Ok(Undo::Duplicate {
            interface,
            handle: netem::handle_of(fault_id),
        })
    }

    fn inject(&self, _fault_id: &str, undo: &Undo, ctx: &Context) -> Result<Injected, FaultError> {
        let Undo::Duplicate { interface, handle } = undo else {
            return Err(other_kinds_undo(FaultKind::Duplicate));
        };
        inject(
            FaultKind::Duplicate,
            self.share,
            &self.scope,
            interface,
            *handle,
            ctx,
        )
    }

    fn check_policy(&self, policy: &Policy, _at: &Resolved) -> Result<(), Refusal> {
        policy.check_scope(FaultKind::Duplicate, &self.scope)
    }
}

impl fmt::Display for DuplicateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "duplicate {}%{}", self.share, self.scope)
    }
}

/// netem, or why not and what to do: the same for both kinds.
fn support() -> Result<&'static str, &'static str> {
    static WHY_NOT: OnceLock<Option<String>> = OnceLock::new();
    let why_not = WHY_NOT.get_or_init(|| {
        super::detect::host()
            .netem
            .as_ref()
            .err()
            .map(|reason| why_not(reason))
    });
    match why_not {
        None => Ok("netem"),
        Some(reason) => Err(reason.as_str()),
    }
}

/// The reason a host without netem gives (after "`corrupt` faults "), from the probe's.
pub fn why_not(probe: &str) -> String {
    let why = if probe.starts_with("no netem in this kernel") {
        "which this kernel lacks".to_string()
    } else {
        format!("which cannot be used here ({probe})")
    };
    format!(
        "need the kernel's netem qdisc (module sch_netem), {why}; nothing else corrupts or duplicates packets, so the fault is not approximated: use a kernel built with CONFIG_NET_SCH_NETEM (`modprobe sch_netem` where it is a module), then restart the agent"
    )
}

/// Preflight, and the plan: netem is here, the share and the scope are sound. The interface the
/// fault will act on, which is all its undo needs.
fn check(kind: FaultKind, share: f64, scope: &NetScope) -> Result<String, FaultError> {
    supported(kind)?;
    let in_range = share > 0.0 && share <= 100.0;
    if !in_range {
        return Err(net_error(
            kind,
            format!("share {share}% is not more than 0% and at most 100%"),
        ));
    }
    check_scope(kind, scope)
}

fn inject(
    kind: FaultKind,
    share: f64,
    scope: &NetScope,
    interface: &str,
    handle: u16,
    ctx: &Context,
) -> Result<Injected, FaultError> {
    let (impairment, effect) = impairment(kind, share);
    netem::inject(
        kind,
        scope,
        (interface, handle),
        ctx,
        netem::Impairment {
            tc: &impairment,
            effect: &effect,
            shows: Some(kind.as_str()),
        },
    )
}

/// netem's words for the fault (`corrupt 5%`), and the effect the report opens with.
pub fn impairment(kind: FaultKind, share: f64) -> (String, String) {
    let done = if kind == FaultKind::Corrupt {
        "corrupted"
    } else {
        "duplicated"
    };
    (
        format!("{kind} {share}%"),
        format!("{share}% of matching packets sent {done}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Exempt, PeerSelector, Protocol};

    fn scope() -> NetScope {
        NetScope {
            to: Some(PeerSelector {
                hosts: vec!["10.0.0.20".into()],
                ports: vec![5432],
                protocol: Some(Protocol::Tcp),
            }),
            from: None,
            interface: Some("eth0".into()),
            spare_ssh: true,
            inside: None,
        }
    }

    #[test]
    fn corrupt_runs_a_prio_root_a_netem_band_and_filters_for_the_peers() {
        let exempt = [Exempt {
            peer: "10.0.0.1".parse().unwrap(),
            local_port: 7070,
        }];
        let (words, effect) = impairment(FaultKind::Corrupt, 5.0);
        assert_eq!(words, "corrupt 5%");
        assert_eq!(effect, "5% of matching packets sent corrupted");
        let commands = netem::commands(
            FaultKind::Corrupt,
            &scope(),
            &exempt,
            "eth0",
            netem::LEGACY_HANDLE,
            &words,
        )
        .unwrap();
        assert_eq!(
            commands,
            [
                "qdisc add dev eth0 root handle c4a0: prio bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1",
                "qdisc add dev eth0 parent c4a0:4 handle c4a1: netem limit 100000 corrupt 5%",
                "filter add dev eth0 parent c4a0: protocol ip prio 1 u32 match ip protocol 6 0xff match ip dport 22 0xffff flowid c4a0:1",
                "filter add dev eth0 parent c4a0: protocol ip prio 1 u32 match ip protocol 6 0xff match ip sport 22 0xffff flowid c4a0:1",
                "filter add dev eth0 parent c4a0: protocol ipv6 prio 1 u32 match ip6 protocol 6 0xff match ip6 dport 22 0xffff flowid c4a0:1",
                "filter add dev eth0 parent c4a0: protocol ipv6 prio 1 u32 match ip6 protocol 6 0xff match ip6 sport 22 0xffff flowid c4a0:1",
                "filter add dev eth0 parent c4a0: protocol ip prio 1 u32 match ip dst 10.0.0.1/32 match ip sport 7070 0xffff flowid c4a0:1",
                "filter add dev eth0 parent c4a0: protocol ip prio 2 u32 match ip dst 10.0.0.20 match ip protocol 6 0xff match ip dport 5432 0xffff flowid c4a0:4",
            ]
        );
    }

    #[test]
    fn duplicate_differs_only_in_netems_word_and_replies_to_from_peers_use_our_port() {
        let (words, _) = impairment(FaultKind::Duplicate, 2.5);
        assert_eq!(words, "duplicate 2.5%");
        let scope = NetScope {
            to: None,
            from: Some(PeerSelector {
                hosts: Vec::new(),
                ports: vec![8080],
                protocol: Some(Protocol::Tcp),
            }),
            interface: None,
            spare_ssh: false,
            inside: None,
        };
        let commands = netem::commands(
            FaultKind::Duplicate,
            &scope,
            &[],
            "veth0",
            netem::LEGACY_HANDLE,
            &words,
        )
        .unwrap();
        assert_eq!(
            commands[1],
            "qdisc add dev veth0 parent c4a0:4 handle c4a1: netem limit 100000 duplicate 2.5%"
        );
        // SSH not spared: no exemption; any host, both families, our port 8080 as the source.
        assert_eq!(
            &commands[2..],
            [
                "filter add dev veth0 parent c4a0: protocol ip prio 2 u32 match ip protocol 6 0xff match ip sport 8080 0xffff flowid c4a0:4",
                "filter add dev veth0 parent c4a0: protocol ipv6 prio 2 u32 match ip6 protocol 6 0xff match ip6 sport 8080 0xffff flowid c4a0:4",
            ]
        );
    }

    #[test]
    fn without_netem_the_reason_names_the_module_and_what_to_do() {
        let reason = why_not("no netem in this kernel (module sch_netem)");
        assert!(reason.contains("which this kernel lacks;"), "{reason}");
        assert!(why_not("netem cannot be used: EPERM").contains("(netem cannot be used: EPERM)"));
        for needle in [
            "sch_netem",
            "CONFIG_NET_SCH_NETEM",
            "modprobe sch_netem",
            "not approximated",
        ] {
            assert!(reason.contains(needle), "{needle}: {reason}");
        }
        let err = FaultError::Unsupported {
            kind: FaultKind::Corrupt,
            reason,
        };
        assert!(
            err.to_string()
                .starts_with("`corrupt` faults need the kernel's netem qdisc (module sch_netem)"),
            "{err}"
        );
    }

    #[test]
    fn the_summary_names_the_kind_and_the_share() {
        let corrupt = CorruptSpec {
            share: 5.0,
            scope: scope(),
        };
        assert_eq!(
            corrupt.to_string(),
            "corrupt 5% to 10.0.0.20 port 5432 (tcp), on eth0"
        );
        let duplicate = DuplicateSpec {
            share: 0.5,
            scope: NetScope {
                spare_ssh: true,
                ..NetScope::default()
            },
        };
        assert_eq!(duplicate.to_string(), "duplicate 0.5% all traffic");
    }

    #[test]
    fn latency_by_netem_runs_the_same_commands_with_its_delay() {
        use std::time::Duration;
        let words = super::super::latency::netem_delay(
            Duration::from_millis(200),
            Duration::from_millis(10),
        );
        assert_eq!(words, "delay 200000us 10000us");
        let commands = netem::commands(
            FaultKind::Latency,
            &scope(),
            &[],
            "eth0",
            netem::LEGACY_HANDLE,
            &words,
        )
        .unwrap();
        assert_eq!(
            commands[1],
            "qdisc add dev eth0 parent c4a0:4 handle c4a1: netem limit 100000 delay 200000us 10000us"
        );
    }
}
