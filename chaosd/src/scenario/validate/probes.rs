//! `steady_state:` and `guardrails:`: one probe each, of one kind, with the expectations that
//! kind takes; and the process selector that `process` probes share with `kill` and `pause`.

use std::collections::BTreeMap;
use std::time::Duration;

use agent::spec::ProcessSelector;

use super::super::model::{
    self, CommandExpect, CommandProbe, HttpExpect, HttpProbe, LoadProbe, Probe, ProbeKind,
    ProcessProbe, PrometheusProbe, Settings, TcpProbe,
};
use super::super::raw::*;
use super::super::values;
use super::cx::{Cx, Pos, pos, resolve_path};
use super::hosts::{Names, labels};

pub(super) fn probe(
    cx: &mut Cx,
    raw: &Sp<ProbeRaw>,
    settings: &Settings,
    names: &Names,
    seen: &mut BTreeMap<String, ()>,
) -> Option<Probe> {
    let p = &raw.value;
    let name = cx.req(&p.name, pos(raw), "name", "a probe", |s| Ok(s.to_string()));
    if let (Some(name), Some(v)) = (&name, &p.name)
        && seen.insert(name.clone(), ()).is_some()
    {
        cx.error(pos(v), format!("probe `{name}` is defined twice"));
    }
    let what = format!("probe `{}`", name.as_deref().unwrap_or("?"));
    let on = match &p.on {
        None => Some(model::LOCAL_HOST.to_string()),
        Some(v) => cx
            .text(v)
            .and_then(|on| names.check(cx, &on, pos(v)).map(|_| on)),
    };
    let every = cx.positive(&p.every, "every").unwrap_or(settings.every);
    let window = cx.positive(&p.window, "window").unwrap_or(settings.window);
    let tolerance = cx.opt(&p.tolerance, values::parse_share).unwrap_or(100.0);
    let kinds = Kinds {
        http: p.http.as_ref(),
        tcp: p.tcp.as_ref(),
        command: p.command.as_ref(),
        process: p.process.as_ref(),
        prometheus: p.prometheus.as_ref(),
        load: p.load.as_ref(),
    };
    let kind = probe_kind(
        cx,
        kinds,
        p.expect.as_ref(),
        pos(raw),
        &what,
        (every, tolerance),
    );
    Some(Probe {
        name: name?,
        on: on?,
        every,
        window,
        tolerance,
        kind: kind?,
    })
}

pub(super) struct Kinds<'r> {
    pub(super) http: Option<&'r Sp<HttpRaw>>,
    pub(super) tcp: Option<&'r Sp<TcpRaw>>,
    pub(super) command: Option<&'r Sp<CommandRaw>>,
    pub(super) process: Option<&'r Sp<ProcessRaw>>,
    pub(super) prometheus: Option<&'r Sp<PrometheusRaw>>,
    pub(super) load: Option<&'r Sp<LoadRaw>>,
}

const PROBE_KINDS: &str = "`http`, `tcp`, `command`, `process`, `prometheus` or `load`";

/// The most requests one `load` sample may send (rate × every).
const MAX_LOAD_REQUESTS: f64 = agent::probe::load::MAX_REQUESTS as f64;

/// The longest `every` of a `load` probe, which is how long one sample sends for.
const MAX_LOAD_EVERY: Duration = Duration::from_secs(60);

pub(super) fn probe_kind(
    cx: &mut Cx,
    k: Kinds,
    expect: Option<&Sp<ExpectRaw>>,
    at: Pos,
    what: &str,
    (every, tolerance): (Duration, f64),
) -> Option<ProbeKind> {
    let present = [
        ("http", k.http.map(pos)),
        ("tcp", k.tcp.map(pos)),
        ("command", k.command.map(pos)),
        ("process", k.process.map(pos)),
        ("prometheus", k.prometheus.map(pos)),
        ("load", k.load.map(pos)),
    ]
    .into_iter()
    .filter_map(|(name, p)| Some((name, p?)))
    .collect::<Vec<_>>();
    // The second in the file is the one pointed at.
    let mut present = present;
    present.sort_by_key(|(_, p)| (p.line, p.column));
    let kind = match present.as_slice() {
        [] => {
            cx.report(
                at,
                format!("{what} has no kind"),
                Some(format!("give one of {PROBE_KINDS}")),
            );
            return None;
        }
        [(kind, _)] => *kind,
        [(first, _), (second, at), ..] => {
            cx.error(
                *at,
                format!("{what} has two kinds, `{first}` and `{second}`; give one"),
            );
            return None;
        }
    };
    let default_timeout = every.min(Duration::from_secs(5));
    let timeout =
        |cx: &mut Cx, v: &Option<Sp<Scalar>>| cx.positive(v, "timeout").unwrap_or(default_timeout);

    // Which expectations apply to this kind.
    let allowed: &[&str] = match kind {
        "http" => &["status", "body_contains", "body_matches", "max_latency"],
        "command" => &["exit", "stdout_contains", "stdout_matches"],
        "process" => &["min", "max"],
        "prometheus" => &["below", "above"],
        "load" => &[
            "status",
            "body_contains",
            "body_matches",
            "max_latency",
            "success",
        ],
        _ => &[],
    };
    let empty = ExpectRaw {
        status: None,
        body_contains: None,
        body_matches: None,
        max_latency: None,
        exit: None,
        stdout_contains: None,
        stdout_matches: None,
        min: None,
        max: None,
        below: None,
        above: None,
        success: None,
    };
    let e = expect.map_or(&empty, |e| &e.value);
    let given: [(&str, Option<Pos>); 12] = [
        ("status", e.status.as_ref().map(pos)),
        ("body_contains", e.body_contains.as_ref().map(pos)),
        ("body_matches", e.body_matches.as_ref().map(pos)),
        ("max_latency", e.max_latency.as_ref().map(pos)),
        ("exit", e.exit.as_ref().map(pos)),
        ("stdout_contains", e.stdout_contains.as_ref().map(pos)),
        ("stdout_matches", e.stdout_matches.as_ref().map(pos)),
        ("min", e.min.as_ref().map(pos)),
        ("max", e.max.as_ref().map(pos)),
        ("below", e.below.as_ref().map(pos)),
        ("above", e.above.as_ref().map(pos)),
        ("success", e.success.as_ref().map(pos)),
    ];
    let mut expect_ok = true;
    for (key, at) in given {
        let Some(at) = at else { continue };
        if !allowed.contains(&key) {
            expect_ok = false;
            let help = if allowed.is_empty() {
                format!("{} `{kind}` probe takes no `expect`", article(kind))
            } else {
                let list: Vec<String> = allowed.iter().map(|a| format!("`{a}`")).collect();
                format!(
                    "{} `{kind}` probe expects {}",
                    article(kind),
                    list.join(", ")
                )
            };
            cx.report(
                at,
                format!("`{key}` does not apply to {} `{kind}` probe", article(kind)),
                Some(help),
            );
        }
    }

    let base = cx.base_dir();
    let built = match kind {
        "http" => {
            let raw = k.http?;
            let h = &raw.value;
            let url = cx.req(&h.url, pos(raw), "url", "an `http` probe", |s| {
                if s.starts_with("http://") || s.starts_with("https://") {
                    Ok(s.to_string())
                } else {
                    Err(format!("url `{s}` must start with `http://` or `https://`"))
                }
            });
            let method = http_method(cx, &h.method);
            let headers = labels(cx, h.headers.as_ref());
            let body = cx.string(&h.body);
            let timeout = timeout(cx, &h.timeout);
            let expect = http_expect(cx, e);
            Some(ProbeKind::Http(HttpProbe {
                url: url?,
                method,
                headers,
                body,
                timeout,
                expect,
            }))
        }
        "tcp" => {
            let raw = k.tcp?;
            let address = cx.req(
                &raw.value.address,
                pos(raw),
                "address",
                "a `tcp` probe",
                |s| match s.rsplit_once(':') {
                    Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                        Ok(s.to_string())
                    }
                    _ => Err(format!("address `{s}` is not `host:port`")),
                },
            );
            let timeout = timeout(cx, &raw.value.timeout);
            Some(ProbeKind::Tcp(TcpProbe {
                address: address?,
                timeout,
            }))
        }
        "command" => {
            let raw = k.command?;
            let run = match &raw.value.run {
                Some(run) => cx.command(run, what),
                None => {
                    cx.error(pos(raw), format!("{what} needs `run`"));
                    None
                }
            };
            let timeout = timeout(cx, &raw.value.timeout);
            let expect = CommandExpect {
                exit: cx.opt(&e.exit, values::parse_count::<i32>).unwrap_or(0),
                stdout_contains: cx.string(&e.stdout_contains),
                stdout_matches: cx.regex(&e.stdout_matches),
            };
            Some(ProbeKind::Command(CommandProbe {
                run: run?,
                timeout,
                cwd: base,
                expect,
            }))
        }
        "process" => {
            let raw = k.process?;
            let selector = selector(cx, raw);
            let min = cx.opt(&e.min, values::parse_count::<usize>).unwrap_or(1);
            let max = cx.opt(&e.max, values::parse_count::<usize>);
            if let (Some(max), Some(v)) = (max, &e.max)
                && max < min
            {
                cx.error(pos(v), format!("`max` {max} is less than `min` {min}"));
            }
            Some(ProbeKind::Process(ProcessProbe {
                selector: selector?,
                min,
                max,
            }))
        }
        "load" => {
            let raw = k.load?;
            let l = &raw.value;
            let url = cx.req(&l.url, pos(raw), "url", "a `load` probe", |s| {
                if s.starts_with("http://") || s.starts_with("https://") {
                    Ok(s.to_string())
                } else {
                    Err(format!("url `{s}` must start with `http://` or `https://`"))
                }
            });
            let rate = cx.req(
                &l.rate,
                pos(raw),
                "rate",
                "a `load` probe",
                values::parse_rate,
            );
            let method = http_method(cx, &l.method);
            let headers = labels(cx, l.headers.as_ref());
            let body = cx.string(&l.body);
            // A request's timeout: 1s unless given (the probe's `every` is how long it sends).
            let timeout = cx
                .positive(&l.timeout, "timeout")
                .unwrap_or(Duration::from_secs(1).min(every));
            let expect = http_expect(cx, e);
            let success = cx.opt(&e.success, values::parse_share).unwrap_or(tolerance);
            if every > MAX_LOAD_EVERY {
                cx.report(
                    pos(raw),
                    format!(
                        "{what}: a `load` probe sends for its whole `every`, at most {}s",
                        MAX_LOAD_EVERY.as_secs()
                    ),
                    Some("sample more often, e.g. `every: 1s`".into()),
                );
                return None;
            }
            if let (Some(rate), Some(at)) = (rate, &l.rate) {
                let count = rate * every.as_secs_f64();
                if count > MAX_LOAD_REQUESTS {
                    cx.error(
                        pos(at),
                        format!(
                            "{what} would send {count:.0} requests a sample (rate × every), \
                             more than {MAX_LOAD_REQUESTS:.0}"
                        ),
                    );
                    return None;
                }
            }
            Some(ProbeKind::Load(LoadProbe {
                url: url?,
                method,
                headers,
                body,
                rate: rate?,
                span: every,
                timeout,
                expect,
                success,
            }))
        }
        _ => {
            let raw = k.prometheus?;
            let p = &raw.value;
            let url = cx.req(&p.url, pos(raw), "url", "a `prometheus` probe", |s| {
                if s.starts_with("http://") || s.starts_with("https://") {
                    Ok(s.trim_end_matches('/').to_string())
                } else {
                    Err(format!("url `{s}` must start with `http://` or `https://`"))
                }
            });
            let query = cx.req(&p.query, pos(raw), "query", "a `prometheus` probe", |s| {
                Ok(s.to_string())
            });
            let timeout = timeout(cx, &p.timeout);
            let below = cx.opt(&e.below, values::parse_number);
            let above = cx.opt(&e.above, values::parse_number);
            if e.below.is_none() && e.above.is_none() && expect_ok {
                cx.error(
                    expect.map_or(pos(raw), pos),
                    format!("{what} needs `expect` with `below` or `above`"),
                );
            }
            Some(ProbeKind::Prometheus(PrometheusProbe {
                url: url?,
                query: query?,
                timeout,
                below,
                above,
            }))
        }
    };
    if expect_ok { built } else { None }
}

/// An HTTP method in capitals; `GET` when not given.
fn http_method(cx: &mut Cx, v: &Option<Sp<Scalar>>) -> String {
    cx.opt(v, |s| {
        let m = s.trim().to_ascii_uppercase();
        if !m.is_empty() && m.chars().all(|c| c.is_ascii_alphabetic()) {
            Ok(m)
        } else {
            Err(format!("invalid http method `{s}`"))
        }
    })
    .unwrap_or_else(|| "GET".into())
}

/// What an `http` or `load` probe expects of one answer.
fn http_expect(cx: &mut Cx, e: &ExpectRaw) -> HttpExpect {
    let mut status = Vec::new();
    if let Some(v) = &e.status {
        match &v.value {
            ScalarOrList::Single(s) => {
                if let Some(s) = cx.subst(s, &v.referenced) {
                    match values::parse_status(&s) {
                        Ok(st) => status.push(st),
                        Err(msg) => cx.error(pos(v), msg),
                    }
                }
            }
            ScalarOrList::List(items) => {
                status.extend(items.iter().filter_map(|i| cx.get(i, values::parse_status)));
            }
        }
    }
    HttpExpect {
        status,
        body_contains: cx.string(&e.body_contains),
        body_matches: cx.regex(&e.body_matches),
        max_latency: cx.duration(&e.max_latency),
    }
}

pub(super) fn selector(cx: &mut Cx, raw: &Sp<ProcessRaw>) -> Option<ProcessSelector> {
    let p = &raw.value;
    let present: Vec<(&str, &Sp<Scalar>)> = [
        ("name", p.name.as_ref()),
        ("pattern", p.pattern.as_ref()),
        ("pid", p.pid.as_ref()),
        ("pidfile", p.pidfile.as_ref()),
        ("cgroup", p.cgroup.as_ref()),
        ("unit", p.unit.as_ref()),
        ("container", p.container.as_ref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v?)))
    .collect();
    match present.as_slice() {
        [] => {
            cx.report(
                pos(raw),
                "a process selector needs one key",
                Some(
                    "give one of `name`, `pattern`, `pid`, `pidfile`, `cgroup`, `unit`, `container`"
                        .into(),
                ),
            );
            None
        }
        [(key, v)] => selector_key(cx, key, v),
        [(first, _), (second, v), ..]
            if !present
                .iter()
                .any(|(k, _)| ["cgroup", "unit", "container"].contains(k)) =>
        {
            cx.error(
                pos(v),
                format!("a process selector has both `{first}` and `{second}`; give one"),
            );
            None
        }
        _ => {
            let parts: Vec<ProcessSelector> = present
                .iter()
                .map(|(key, v)| selector_key(cx, key, v))
                .collect::<Option<_>>()?;
            if let Some(reason) = ProcessSelector::combination_error(&parts) {
                let keys: Vec<String> = present.iter().map(|(k, _)| format!("`{k}`")).collect();
                cx.report(
                    pos(present[1].1),
                    format!("a process selector with {}: {reason}", keys.join(", ")),
                    Some(
                        "combine `name` or `pattern` with `cgroup`, `unit` or `container`; `pid` and `pidfile` stand alone"
                            .into(),
                    ),
                );
                return None;
            }
            Some(ProcessSelector::All(parts))
        }
    }
}

/// One key of a process selector.
fn selector_key(cx: &mut Cx, key: &str, v: &Sp<Scalar>) -> Option<ProcessSelector> {
    let base = cx.base_dir();
    match key {
        "name" => cx.get(v, |s| Ok(ProcessSelector::Name(s.to_string()))),
        // Compiled as a run will: a fault's preflight and injection reuse it.
        "pattern" => cx.get(v, |s| match agent::process::compiled(s) {
            Ok(_) => Ok(ProcessSelector::Pattern(s.to_string())),
            Err(err) => Err(format!(
                "`{s}` is not a valid regex: {}",
                agent::spec::Pattern::error_detail(&err)
            )),
        }),
        "pid" => cx.get(v, |s| match s.trim().parse::<i32>() {
            Ok(pid) if pid > 0 => Ok(ProcessSelector::Pid(pid)),
            _ => Err(format!("`{s}` is not a pid")),
        }),
        "pidfile" => cx.get(v, |s| Ok(ProcessSelector::Pidfile(resolve_path(&base, s)))),
        "cgroup" => cx.get(v, |s| match glob::Pattern::new(s) {
            Ok(_) if s.trim().is_empty() => Err("an empty cgroup glob matches nothing".into()),
            Ok(_) => Ok(ProcessSelector::Cgroup(s.to_string())),
            Err(err) => Err(format!("`{s}` is not a glob: {err}")),
        }),
        "unit" => cx.get(v, |s| {
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ":-_.@\\".contains(c));
            if plain {
                Ok(ProcessSelector::Unit(s.to_string()))
            } else {
                Err(format!(
                    "`{s}` is not a systemd unit name (`nginx.service`, `nginx`)"
                ))
            }
        }),
        _ => cx.get(v, |s| {
            if s.trim().is_empty() || s.contains(char::is_whitespace) {
                Err(format!(
                    "`{s}` is not a container id (12 or more hex digits) or name"
                ))
            } else {
                Ok(ProcessSelector::Container(s.to_string()))
            }
        }),
    }
}

/// `an` before `http`, else `a`.
fn article(kind: &str) -> &'static str {
    if kind == "http" { "an" } else { "a" }
}
