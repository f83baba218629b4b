//! A fault: `fault:` of a step or of the monkey, or an entry of `faults:`. Each gives exactly one
//! kind, whose keys are parsed here into its [`FaultSpec`].
//!
//! A new kind adds its keys to `raw.rs` (`FaultRaw`, `FaultEntryRaw` and its own `...Raw`), a
//! variant of [`Given`] (the compiler then points at [`given`], [`given_in_entry`] and the
//! `match`es below), and a function here that parses its keys.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use agent::spec::{
    BandwidthSpec, CorruptSpec, DropMode, DropSpec, DuplicateSpec, FaultKind, FaultSpec,
    FillAmount, FillDiskSpec, KillSpec, LatencySpec, LossSpec, NetScope, PauseSpec, PeerSelector,
    ProcessSelector, Protocol, SignalNumber,
};
use agent::spec::{CpuStress, MemoryStress, StressSpec, StressWork, Workers};
use agent::spec::{HttpAction, HttpSpec};

use super::super::raw::*;
use super::super::values;
use super::cx::{Cx, Pos, pos};
use super::probes::selector;

/// One fault kind as a file gives it: its keys, and where.
pub(super) enum Given<'r> {
    Kill(&'r Sp<KillRaw>),
    Pause(&'r Sp<PauseRaw>),
    Latency(&'r Sp<LatencyRaw>),
    Loss(&'r Sp<LossRaw>),
    Drop(&'r Sp<DropRaw>),
    FillDisk(&'r Sp<FillDiskRaw>),
    Stress(&'r Sp<StressRaw>),
    Bandwidth(&'r Sp<BandwidthRaw>),
    Http(&'r Sp<HttpFaultRaw>),
    Corrupt(&'r Sp<CorruptRaw>),
    Duplicate(&'r Sp<DuplicateRaw>),
    Dns(&'r Sp<DnsRaw>),
}

impl Given<'_> {
    pub(super) fn kind(&self) -> FaultKind {
        match self {
            Given::Kill(_) => FaultKind::Kill,
            Given::Pause(_) => FaultKind::Pause,
            Given::Latency(_) => FaultKind::Latency,
            Given::Loss(_) => FaultKind::Loss,
            Given::Drop(_) => FaultKind::Drop,
            Given::FillDisk(_) => FaultKind::FillDisk,
            Given::Stress(_) => FaultKind::Stress,
            Given::Bandwidth(_) => FaultKind::Bandwidth,
            Given::Http(_) => FaultKind::Http,
            Given::Corrupt(_) => FaultKind::Corrupt,
            Given::Duplicate(_) => FaultKind::Duplicate,
            Given::Dns(_) => FaultKind::Dns,
        }
    }

    fn pos(&self) -> Pos {
        match self {
            Given::Kill(raw) => pos(raw),
            Given::Pause(raw) => pos(raw),
            Given::Latency(raw) => pos(raw),
            Given::Loss(raw) => pos(raw),
            Given::Drop(raw) => pos(raw),
            Given::FillDisk(raw) => pos(raw),
            Given::Stress(raw) => pos(raw),
            Given::Bandwidth(raw) => pos(raw),
            Given::Http(raw) => pos(raw),
            Given::Corrupt(raw) => pos(raw),
            Given::Duplicate(raw) => pos(raw),
            Given::Dns(raw) => pos(raw),
        }
    }
}

/// The kinds a `fault:` gives, in the order of [`FaultKind::ALL`].
pub(super) fn given(f: &FaultRaw) -> Vec<Given<'_>> {
    let FaultRaw {
        kill,
        pause,
        latency,
        loss,
        drop,
        fill_disk,
        stress,
        bandwidth,
        corrupt,
        duplicate,
        dns,
        http,
        inside: _,
    } = f;
    [
        kill.as_ref().map(Given::Kill),
        pause.as_ref().map(Given::Pause),
        latency.as_ref().map(Given::Latency),
        loss.as_ref().map(Given::Loss),
        drop.as_ref().map(Given::Drop),
        fill_disk.as_ref().map(Given::FillDisk),
        stress.as_ref().map(Given::Stress),
        bandwidth.as_ref().map(Given::Bandwidth),
        corrupt.as_ref().map(Given::Corrupt),
        duplicate.as_ref().map(Given::Duplicate),
        dns.as_ref().map(Given::Dns),
        http.as_ref().map(Given::Http),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The kinds an entry of `faults:` gives, in the order of [`FaultKind::ALL`].
pub(super) fn given_in_entry(e: &FaultEntryRaw) -> Vec<Given<'_>> {
    let FaultEntryRaw {
        target: _,
        start_after: _,
        action: _,
        kill,
        pause,
        latency,
        loss,
        drop,
        fill_disk,
        stress,
        bandwidth,
        corrupt,
        duplicate,
        dns,
        http,
        inside: _,
    } = e;
    [
        kill.as_ref().map(Given::Kill),
        pause.as_ref().map(Given::Pause),
        latency.as_ref().map(Given::Latency),
        loss.as_ref().map(Given::Loss),
        drop.as_ref().map(Given::Drop),
        fill_disk.as_ref().map(Given::FillDisk),
        stress.as_ref().map(Given::Stress),
        bandwidth.as_ref().map(Given::Bandwidth),
        corrupt.as_ref().map(Given::Corrupt),
        duplicate.as_ref().map(Given::Duplicate),
        dns.as_ref().map(Given::Dns),
        http.as_ref().map(Given::Http),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The fault `given` describes, which must be exactly one kind, made `inside` the namespaces of
/// some processes if that is given.
pub(super) fn fault(
    cx: &mut Cx,
    given: Vec<Given>,
    inside: Option<&Sp<InsideRaw>>,
    at: Pos,
    what: &str,
) -> Option<FaultSpec> {
    let mut spec = one_kind(cx, given, at, what);
    let Some(raw) = inside else {
        return spec;
    };
    let selector = match &raw.value.process {
        Some(p) => selector(cx, p),
        None => {
            cx.report(
                pos(raw),
                "`inside` needs `process`",
                Some("e.g. `inside: {process: {container: checkout}}`".into()),
            );
            None
        }
    };
    match spec.as_mut() {
        Some(FaultSpec::FillDisk(fill)) => {
            fill.inside = Some(selector?);
            return spec;
        }
        Some(FaultSpec::Http(http)) => {
            http.inside = Some(selector?);
            return spec;
        }
        Some(FaultSpec::Dns(dns)) => {
            dns.inside = Some(selector?);
            return spec;
        }
        Some(FaultSpec::Stress(stress)) => {
            stress.inside = Some(selector?);
            return spec;
        }
        _ => {}
    }
    match spec.as_mut().map(FaultSpec::scope_mut) {
        Some(Some(scope)) => {
            scope.inside = Some(selector?);
            spec
        }
        Some(None) => {
            cx.report(
                pos(raw),
                format!(
                    "`inside` is for the network kinds, `stress` and `fill_disk`; {what} is `{}`",
                    spec.as_ref().map_or(FaultKind::Kill, FaultSpec::kind)
                ),
                Some(
                    "`inside` takes `latency`, `loss`, `drop`, `bandwidth`, `corrupt`, `duplicate`, `dns`, `http`, `stress` and `fill_disk`; a process selector's `container` key reaches a container's processes".into(),
                ),
            );
            None
        }
        None => None,
    }
}

/// The one kind `given` describes.
fn one_kind(cx: &mut Cx, mut given: Vec<Given>, at: Pos, what: &str) -> Option<FaultSpec> {
    // The second in the file is the one pointed at.
    given.sort_by_key(|g| {
        let at = g.pos();
        (at.line, at.column)
    });
    match given.as_slice() {
        [] => {
            let kinds: Vec<String> = FaultKind::ALL.iter().map(|k| format!("`{k}`")).collect();
            cx.report(
                at,
                format!("{what} has no fault kind"),
                Some(format!("give one of {}", kinds.join(", "))),
            );
            None
        }
        [one] => match one {
            Given::Kill(raw) => kill(cx, raw),
            Given::Pause(raw) => pause(cx, raw),
            Given::Latency(raw) => latency(cx, raw),
            Given::Loss(raw) => loss(cx, raw),
            Given::Drop(raw) => drop(cx, raw),
            Given::FillDisk(raw) => fill_disk(cx, raw),
            Given::Stress(raw) => stress(cx, raw),
            Given::Bandwidth(raw) => bandwidth(cx, raw),
            Given::Http(raw) => http(cx, raw),
            Given::Corrupt(raw) => corrupt(cx, raw),
            Given::Duplicate(raw) => duplicate(cx, raw),
            Given::Dns(raw) => dns(cx, raw),
        },
        [first, second, ..] => {
            cx.error(
                second.pos(),
                format!(
                    "{what} has two fault kinds, `{}` and `{}`; give one",
                    first.kind(),
                    second.kind()
                ),
            );
            None
        }
    }
}

fn kill(cx: &mut Cx, raw: &Sp<KillRaw>) -> Option<FaultSpec> {
    let process = process_of(cx, raw.value.process.as_ref(), pos(raw), FaultKind::Kill);
    let signal = cx
        .opt(&raw.value.signal, values::parse_signal)
        .unwrap_or(SignalNumber(nix::sys::signal::Signal::SIGKILL as i32));
    let pick = cx
        .opt(&raw.value.pick, values::parse_pick)
        .unwrap_or_default();
    Some(FaultSpec::Kill(KillSpec {
        process: process?,
        signal,
        pick,
    }))
}

fn pause(cx: &mut Cx, raw: &Sp<PauseRaw>) -> Option<FaultSpec> {
    let process = process_of(cx, raw.value.process.as_ref(), pos(raw), FaultKind::Pause);
    let pick = cx
        .opt(&raw.value.pick, values::parse_pick)
        .unwrap_or_default();
    Some(FaultSpec::Pause(PauseSpec {
        process: process?,
        pick,
    }))
}

fn latency(cx: &mut Cx, raw: &Sp<LatencyRaw>) -> Option<FaultSpec> {
    let l = &raw.value;
    let delay = cx.req(
        &l.delay,
        pos(raw),
        "delay",
        "`latency`",
        values::parse_scenario_duration,
    );
    let jitter = cx.duration(&l.jitter).unwrap_or_default();
    let scope = scope(cx, &l.to, &l.from, &l.interface, &l.spare_ssh);
    Some(FaultSpec::Latency(LatencySpec {
        delay: delay?,
        jitter,
        scope: scope?,
    }))
}

fn loss(cx: &mut Cx, raw: &Sp<LossRaw>) -> Option<FaultSpec> {
    let l = &raw.value;
    let share = cx.req(
        &l.share,
        pos(raw),
        "share",
        "`loss`",
        |s| match values::parse_share(s)? {
            v if v <= 0.0 => Err(format!("share `{s}` drops nothing; use more than 0%")),
            v => Ok(v),
        },
    );
    let scope = scope(cx, &l.to, &l.from, &l.interface, &l.spare_ssh);
    Some(FaultSpec::Loss(LossSpec {
        share: share?,
        scope: scope?,
    }))
}

fn corrupt(cx: &mut Cx, raw: &Sp<CorruptRaw>) -> Option<FaultSpec> {
    let c = &raw.value;
    let share = netem_share(cx, &c.share, pos(raw), FaultKind::Corrupt);
    let scope = scope(cx, &c.to, &c.from, &c.interface, &c.spare_ssh);
    Some(FaultSpec::Corrupt(CorruptSpec {
        share: share?,
        scope: scope?,
    }))
}

fn duplicate(cx: &mut Cx, raw: &Sp<DuplicateRaw>) -> Option<FaultSpec> {
    let d = &raw.value;
    let share = netem_share(cx, &d.share, pos(raw), FaultKind::Duplicate);
    let scope = scope(cx, &d.to, &d.from, &d.interface, &d.spare_ssh);
    Some(FaultSpec::Duplicate(DuplicateSpec {
        share: share?,
        scope: scope?,
    }))
}

/// The required `share` of `corrupt` and `duplicate`, more than 0%.
fn netem_share(cx: &mut Cx, share: &Option<Sp<Scalar>>, at: Pos, kind: FaultKind) -> Option<f64> {
    cx.req(
        share,
        at,
        "share",
        &format!("`{kind}`"),
        |s| match values::parse_share(s)? {
            v if v <= 0.0 => Err(format!("share `{s}` changes no packet; use more than 0%")),
            v => Ok(v),
        },
    )
}

fn drop(cx: &mut Cx, raw: &Sp<DropRaw>) -> Option<FaultSpec> {
    let d = &raw.value;
    let mode = cx
        .opt(&d.mode, |s| match s.trim() {
            "drop" => Ok(DropMode::Drop),
            "reject" => Ok(DropMode::Reject),
            other => Err(format!(
                "unknown mode `{other}`; expected `drop` or `reject`"
            )),
        })
        .unwrap_or(DropMode::Drop);
    let scope = scope(cx, &d.to, &d.from, &d.interface, &d.spare_ssh);
    Some(FaultSpec::Drop(DropSpec {
        mode,
        scope: scope?,
    }))
}

fn fill_disk(cx: &mut Cx, raw: &Sp<FillDiskRaw>) -> Option<FaultSpec> {
    let f = &raw.value;
    let path = cx.req(&f.path, pos(raw), "path", "`fill_disk`", |s| {
        if Path::new(s).is_absolute() {
            Ok(PathBuf::from(s))
        } else {
            Err(format!(
                "path `{s}` must be absolute: it is a path on the faulted host"
            ))
        }
    });
    let amounts: Vec<(&str, &Sp<Scalar>)> = [
        ("usage", f.usage.as_ref()),
        ("size", f.size.as_ref()),
        ("leave", f.leave.as_ref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v?)))
    .collect();
    let amount = match amounts.as_slice() {
        [] => {
            cx.error(
                pos(raw),
                "`fill_disk` needs one of `usage`, `size`, `leave`",
            );
            None
        }
        [("usage", v)] => cx.get(v, |s| match values::parse_share(s)? {
            u if u <= 0.0 => Err(format!("usage `{s}` is outside (0%, 100%]")),
            u => Ok(FillAmount::Usage(u)),
        }),
        [("size", v)] => cx.get(v, |s| values::parse_size(s).map(FillAmount::Size)),
        [(_, v)] => cx.get(v, |s| values::parse_size(s).map(FillAmount::Leave)),
        [(first, _), (second, v), ..] => {
            cx.error(
                pos(v),
                format!("`fill_disk` has both `{first}` and `{second}`; give one"),
            );
            None
        }
    };
    Some(FaultSpec::FillDisk(FillDiskSpec {
        path: path?,
        amount: amount?,
        inside: None,
    }))
}

fn stress(cx: &mut Cx, raw: &Sp<StressRaw>) -> Option<FaultSpec> {
    let s = &raw.value;
    let positive = |key: &'static str| {
        move |text: &str| match values::parse_share(text)? {
            v if v <= 0.0 => Err(format!("{key} `{text}` is outside (0%, 100%]")),
            v => Ok(v),
        }
    };
    match (&s.cpu, &s.memory) {
        (None, None) => {
            cx.error(pos(raw), "`stress` needs one of `cpu`, `memory`");
            None
        }
        (Some(_), Some(memory)) => {
            cx.error(
                pos(memory),
                "`stress` has both `cpu` and `memory`; give one",
            );
            None
        }
        (Some(cpu), None) => {
            let c = &cpu.value;
            let load = cx.opt(&c.load, positive("load")).unwrap_or(100.0);
            let workers = match (&c.workers, &c.cores) {
                (None, None) => {
                    cx.error(pos(cpu), "`stress.cpu` needs one of `workers`, `cores`");
                    None
                }
                (Some(_), Some(cores)) => {
                    cx.error(
                        pos(cores),
                        "`stress.cpu` has both `workers` and `cores`; give one",
                    );
                    None
                }
                (Some(workers), None) => cx.get(workers, |text| match values::parse_count(text)? {
                    0 => Err("workers `0` burn nothing; give 1 or more".to_string()),
                    n => Ok(Workers::Count(n)),
                }),
                (None, Some(cores)) => {
                    cx.get(cores, |text| positive("cores")(text).map(Workers::Cores))
                }
            };
            Some(FaultSpec::Stress(StressSpec::on_host(StressWork::Cpu(
                CpuStress {
                    workers: workers?,
                    load,
                },
            ))))
        }
        (None, Some(memory)) => {
            let m = &memory.value;
            let amount = match (&m.size, &m.share) {
                (None, None) => {
                    cx.error(pos(memory), "`stress.memory` needs one of `size`, `share`");
                    None
                }
                (Some(_), Some(share)) => {
                    cx.error(
                        pos(share),
                        "`stress.memory` has both `size` and `share`; give one",
                    );
                    None
                }
                (Some(size), None) => cx.get(size, |text| match values::parse_size(text)? {
                    0 => Err(format!("size `{text}` holds nothing")),
                    bytes => Ok(MemoryStress::Size(bytes)),
                }),
                (None, Some(share)) => cx.get(share, |text| {
                    positive("share")(text).map(MemoryStress::Share)
                }),
            };
            Some(FaultSpec::Stress(StressSpec::on_host(StressWork::Memory(
                amount?,
            ))))
        }
    }
}

fn bandwidth(cx: &mut Cx, raw: &Sp<BandwidthRaw>) -> Option<FaultSpec> {
    let b = &raw.value;
    let before = cx.found.len();
    let rate = cx.req(
        &b.rate,
        pos(raw),
        "rate",
        "`bandwidth`",
        agent::fault::net::bandwidth::parse_rate,
    );
    let burst = cx.opt(&b.burst, |s| match values::parse_size(s)? {
        0 => Err(format!(
            "burst `{s}` is empty; give at least one packet, e.g. `2KiB`"
        )),
        n => Ok(n),
    });
    let scope = scope(cx, &b.to, &None, &b.interface, &b.spare_ssh);
    // A bad `burst` is no spec either, though the others are fine.
    (cx.found.len() == before).then_some(())?;
    Some(FaultSpec::Bandwidth(BandwidthSpec {
        rate: rate?,
        burst,
        scope: scope?,
    }))
}

/// `dns`: names (required, not empty), an `answer` and/or a `delay`. Both together are a late
/// answer (a late `nxdomain`).
fn dns(cx: &mut Cx, raw: &Sp<DnsRaw>) -> Option<FaultSpec> {
    use agent::fault::net::dns::{MAX_DELAY, parse_name_glob};
    use agent::spec::{DnsAnswer, DnsSpec};
    let d = &raw.value;
    let before = cx.found.len();
    let mut names = Vec::new();
    match &d.names {
        None => cx.error(
            pos(raw),
            "`dns` needs `names`: the names or globs whose queries it answers, e.g. `[db.internal, \"*.svc.local\"]`",
        ),
        Some(list) if list.is_empty() => cx.error(
            pos(raw),
            "`dns.names` is empty; name at least one, e.g. `[db.internal]`",
        ),
        Some(list) => {
            for name in list {
                if let Some(n) = cx.get(name, parse_name_glob) {
                    names.push(n);
                }
            }
        }
    }
    let answer = d.answer.as_ref().and_then(|a| match &a.value {
        DnsAnswerRaw::Word(word) => {
            let text = cx.subst(word, &a.referenced)?;
            let parsed = match text.trim().to_ascii_lowercase().as_str() {
                "nxdomain" => Ok(DnsAnswer::Nxdomain),
                "servfail" => Ok(DnsAnswer::Servfail),
                "refused" => Ok(DnsAnswer::Refused),
                "timeout" => Ok(DnsAnswer::Timeout),
                _ => Err(format!(
                    "`{text}` is not a DNS answer; give `nxdomain`, `servfail`, `refused`, `timeout` or `{{address: A}}`"
                )),
            };
            parsed.map_err(|message| cx.error(pos(a), message)).ok()
        }
        DnsAnswerRaw::Address(address) => cx.get(address, |text| {
            text.trim()
                .parse::<IpAddr>()
                .map(DnsAnswer::Address)
                .map_err(|_| format!("`{text}` is not an IPv4 or IPv6 address"))
        }),
    });
    let delay = cx.opt(&d.delay, |text| {
        let delay = values::parse_scenario_duration(text)?;
        if delay.is_zero() || delay > MAX_DELAY {
            return Err(format!(
                "delay `{text}` is outside 1ms to {}s",
                MAX_DELAY.as_secs()
            ));
        }
        Ok(delay)
    });
    if d.answer.is_none() && d.delay.is_none() {
        cx.report(
            pos(raw),
            "`dns` needs an `answer`, a `delay`, or both",
            Some(
                "e.g. `answer: nxdomain`, or `delay: 300ms` for the real answers late".to_string(),
            ),
        );
    }
    (cx.found.len() == before).then_some(())?;
    Some(FaultSpec::Dns(DnsSpec {
        names,
        answer,
        delay,
        inside: None,
    }))
}

fn http(cx: &mut Cx, raw: &Sp<HttpFaultRaw>) -> Option<FaultSpec> {
    let h = &raw.value;
    let before = cx.found.len();
    let port = cx.req(&h.port, pos(raw), "port", "`http`", |s| {
        match s.trim().parse::<u16>() {
            Ok(22) => Err(
                "port 22 is SSH's: an `http` fault never redirects it; give the HTTP server's port"
                    .to_string(),
            ),
            Ok(port) if port > 0 => Ok(port),
            _ => Err(format!("`{s}` is not a port (1 to 65535)")),
        }
    });
    let action = match (&h.abort, &h.delay) {
        (Some(abort), None) => {
            let status = cx.req(
                &abort.value.status,
                pos(abort),
                "status",
                "`abort`",
                |s| match s.trim().parse::<u16>() {
                    Ok(code) if (200..=599).contains(&code) => Ok(code),
                    _ => Err(format!(
                        "status `{s}` is not an HTTP status from 200 to 599, e.g. `503`"
                    )),
                },
            );
            status.map(|status| HttpAction::Abort { status })
        }
        (None, Some(_)) => cx
            .positive(&h.delay, "delay")
            .map(|delay| HttpAction::Delay { delay }),
        (Some(_), Some(_)) => {
            cx.error(
                pos(raw),
                "`http` has both `abort` and `delay`; give exactly one (a hit request is either answered at once or passed on late)",
            );
            None
        }
        (None, None) => {
            cx.error(
                pos(raw),
                "`http` needs one of `abort: {status: 503}` or `delay: 200ms`",
            );
            None
        }
    };
    let share = cx.opt(&h.share, values::parse_share).unwrap_or(100.0);
    let paths: Vec<String> = h
        .paths
        .iter()
        .flatten()
        .filter_map(|p| {
            cx.get(p, |s| match s.trim() {
                t if t.starts_with('/') => Ok(t.to_string()),
                t => Err(format!(
                    "path `{t}` does not start with `/`; paths are prefixes such as `/api`"
                )),
            })
        })
        .collect();
    let methods: Vec<String> = h
        .methods
        .iter()
        .flatten()
        .filter_map(|m| {
            cx.get(m, |s| {
                let t = s.trim().to_ascii_uppercase();
                if !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    Ok(t)
                } else {
                    Err(format!("`{s}` is not an HTTP method such as `GET`"))
                }
            })
        })
        .collect();
    (cx.found.len() == before).then_some(())?;
    Some(FaultSpec::Http(HttpSpec {
        port: port?,
        action: action?,
        share,
        paths,
        methods,
        inside: None,
    }))
}

fn process_of(
    cx: &mut Cx,
    raw: Option<&Sp<ProcessRaw>>,
    at: Pos,
    kind: FaultKind,
) -> Option<ProcessSelector> {
    match raw {
        Some(raw) => selector(cx, raw),
        None => {
            cx.error(at, format!("`{kind}` needs `process`"));
            None
        }
    }
}

fn scope(
    cx: &mut Cx,
    to: &Option<Sp<PeerRaw>>,
    from: &Option<Sp<PeerRaw>>,
    interface: &Option<Sp<Scalar>>,
    spare_ssh: &Option<Sp<Scalar>>,
) -> Option<NetScope> {
    let before = cx.found.len();
    let to = to.as_ref().map(|p| peer(cx, p));
    let from = from.as_ref().map(|p| peer(cx, p));
    let interface = cx.string(interface);
    let spare_ssh = cx.opt(spare_ssh, values::parse_bool).unwrap_or(true);
    (cx.found.len() == before).then_some(NetScope {
        to,
        from,
        interface,
        spare_ssh,
        inside: None,
    })
}

fn peer(cx: &mut Cx, raw: &Sp<PeerRaw>) -> PeerSelector {
    let p = &raw.value;
    let hosts = p
        .hosts
        .iter()
        .flatten()
        .filter_map(|h| cx.get(h, parse_address))
        .collect();
    let ports = p
        .ports
        .iter()
        .flatten()
        .filter_map(|v| {
            cx.get(v, |s| match s.trim().parse::<u16>() {
                Ok(port) if port > 0 => Ok(port),
                _ => Err(format!("`{s}` is not a port (1 to 65535)")),
            })
        })
        .collect();
    let protocol = cx.opt(&p.protocol, |s| match s.trim() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(format!(
            "unknown protocol `{other}`; expected `tcp` or `udp`"
        )),
    });
    PeerSelector {
        hosts,
        ports,
        protocol,
    }
}

/// An address or a CIDR.
fn parse_address(s: &str) -> Result<String, String> {
    let text = s.trim();
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let bad = || format!("`{text}` is not an address or a CIDR such as `10.0.0.0/24`");
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    if let Some(prefix) = prefix {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match prefix.parse::<u8>() {
            Ok(p) if p <= max => {}
            _ => return Err(bad()),
        }
    }
    Ok(text.to_string())
}
