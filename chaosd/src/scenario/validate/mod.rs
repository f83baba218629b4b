//! Semantic checks of the raw file and its resolution into [`model::Scenario`]: defaults filled
//! in, `${NAME}` substituted, values parsed, names resolved, relative paths made absolute.
//!
//! Checking goes on after a problem so that one `chaosctl validate` reports all it can; a value
//! that fails is reported at its position and then stands in as its default.
//!
//! One module per section of the file: [`cx`] (positions, suggestions and the checking context
//! every other module uses), [`hosts`] (`settings`, `hosts`, `targets`), [`probes`]
//! (`steady_state`, `guardrails`), [`faults`] (one fault kind's keys), [`steps`] (`steps` and
//! `objectives`) and [`monkey`]; this one resolves the whole file, `setup` and `teardown` with it.

mod cx;
mod faults;
mod hosts;
mod monkey;
mod probes;
mod steps;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::model::{
    self, Host, Probe, Ready, Scenario, Schedule, Settings, SetupCommand, Target, TeardownCommand,
};
use super::raw::*;
use super::values;
use cx::{Cx, FILE_START, pos};
pub(crate) use cx::{Found, Source, parse_yaml};
use hosts::{Names, host, settings, target};
use monkey::monkey_of;
use probes::{Kinds, probe, probe_kind};
use steps::{objectives_of, step};

/// Everything that resolves into one scenario.
pub(crate) struct Input<'a> {
    /// The scenario first, then the inventory if any.
    pub srcs: &'a [Source],
    pub file: FileRaw,
    pub inventory: Option<InventoryRaw>,
    /// What the inventory's `hosts_from` printed (`srcs[2]`).
    pub hosts_output: Option<HostsOutputRaw>,
    pub vars: &'a BTreeMap<String, String>,
    pub path: PathBuf,
    pub sha256: String,
}

/// How long a `hosts_from` command may take unless its `timeout` says.
pub(crate) const HOSTS_FROM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The command of an inventory's `hosts_from` (the inventory is `srcs[index]`), with its timeout
/// and the position of `hosts_from` for the problems of running it.
pub(crate) fn hosts_from_command(
    srcs: &[Source],
    index: usize,
    raw: &Sp<HostsFromRaw>,
    vars: &BTreeMap<String, String>,
) -> Result<(model::Command, std::time::Duration), Vec<Found>> {
    let mut cx = Cx {
        srcs,
        cur: index,
        vars,
        found: Vec::new(),
    };
    let timeout = cx
        .positive(&raw.value.timeout, "timeout")
        .unwrap_or(HOSTS_FROM_TIMEOUT);
    let command = match &raw.value.command {
        Some(run) => cx.command(run, "`hosts_from`"),
        None => {
            cx.report(
                pos(raw),
                "`hosts_from` needs a `command`",
                Some("e.g. `hosts_from: {command: [./hosts-from-consul.sh]}`".into()),
            );
            None
        }
    };
    match command {
        Some(command) if cx.found.is_empty() => Ok((command, timeout)),
        _ => Err(cx.found),
    }
}

/// A problem with running an inventory's `hosts_from` (`srcs[index]`), at `hosts_from`.
pub(crate) fn hosts_from_problem(
    srcs: &[Source],
    index: usize,
    raw: &Sp<HostsFromRaw>,
    message: String,
    help: Option<String>,
) -> Found {
    let at = pos(raw);
    (
        crate::scenario::error::Problem {
            file: srcs[index].display.clone(),
            line: at.line,
            column: at.column,
            message,
            help,
        },
        at.width,
    )
}

/// The hosts of an inventory file on its own (for `chaosctl agents` and `revert --all`).
pub(crate) fn resolve_inventory(
    srcs: &[Source],
    inventory: &InventoryRaw,
    output: Option<&HostsOutputRaw>,
    vars: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Host>, Vec<Found>> {
    let mut cx = Cx {
        srcs,
        cur: 0,
        vars,
        found: Vec::new(),
    };
    let mut hosts = BTreeMap::new();
    let entries = [
        (0, inventory.hosts.as_ref()),
        (1, output.and_then(|o| o.hosts.as_ref())),
    ];
    for (key, raw, src) in entries.iter().flat_map(|(src, e)| {
        e.iter()
            .flat_map(|e| e.0.iter())
            .map(move |(k, r)| (k, r, *src))
    }) {
        cx.cur = src;
        let name = key.value.clone();
        if name == model::LOCAL_HOST {
            cx.report(
                pos(key),
                "host `local` is built in and cannot be redefined",
                Some("`local` is the machine chaosctl runs on; pick another name".into()),
            );
            continue;
        }
        if hosts.contains_key(&name) {
            cx.error(pos(key), format!("host `{name}` is defined twice"));
            continue;
        }
        if let Some(host) = host(&mut cx, &name, key, raw) {
            hosts.insert(name, host);
        }
    }
    if cx.found.is_empty() {
        Ok(hosts)
    } else {
        Err(cx.found)
    }
}

pub(crate) fn resolve(input: Input<'_>) -> Result<Scenario, Vec<Found>> {
    let mut cx = Cx {
        srcs: input.srcs,
        cur: 0,
        vars: input.vars,
        found: Vec::new(),
    };
    let file = input.file;

    let version = match &file.version {
        None => {
            cx.report(
                FILE_START,
                "missing `version`",
                Some("add `version: 1`".into()),
            );
            1
        }
        Some(v) => cx
            .get(v, |s| match s.trim() {
                "1" => Ok(1),
                other => Err(format!(
                    "unsupported version `{other}`; this version of chaosctl reads version 1"
                )),
            })
            .unwrap_or(1),
    };
    let name = cx
        .req(&file.name, FILE_START, "name", "the scenario", |s| {
            Ok(s.to_string())
        })
        .unwrap_or_default();
    let description = cx.string(&file.description);
    let tags = file
        .tags
        .iter()
        .flatten()
        .filter_map(|t| cx.text(t))
        .collect();

    let settings = settings(&mut cx, file.settings.as_ref());

    // Hosts and targets, from the scenario and then the inventory.
    let mut hosts = BTreeMap::new();
    hosts.insert(
        model::LOCAL_HOST.to_string(),
        Host {
            name: model::LOCAL_HOST.to_string(),
            agent: None,
            labels: BTreeMap::new(),
            token_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
        },
    );
    let mut host_from: BTreeMap<String, usize> = BTreeMap::new();
    let inventory = input.inventory;
    let mut target_raws: Vec<(usize, &Sp<String>, &Sp<TargetRaw>)> = Vec::new();
    type Defs<'r> = (
        usize,
        Option<&'r Entries<Sp<HostRaw>>>,
        Option<&'r Entries<Sp<TargetRaw>>>,
    );
    let hosts_output = input.hosts_output;
    let sources: [Defs; 3] = [
        (0, file.hosts.as_ref(), file.targets.as_ref()),
        (
            1,
            inventory.as_ref().and_then(|i| i.hosts.as_ref()),
            inventory.as_ref().and_then(|i| i.targets.as_ref()),
        ),
        (
            2,
            hosts_output.as_ref().and_then(|o| o.hosts.as_ref()),
            None,
        ),
    ];
    for (src, host_entries, target_entries) in sources {
        cx.cur = src;
        for (key, raw) in host_entries.iter().flat_map(|e| e.0.iter()) {
            let name = key.value.clone();
            if name == model::LOCAL_HOST {
                cx.report(
                    pos(key),
                    "host `local` is built in and cannot be redefined",
                    Some("`local` is the machine chaosctl runs on; pick another name".into()),
                );
                continue;
            }
            if let Some(&first) = host_from.get(&name) {
                let message = match (first, src) {
                    (a, b) if a == b => format!("host `{name}` is defined twice"),
                    (0, _) => {
                        format!(
                            "host `{name}` is defined both in the scenario and in the inventory"
                        )
                    }
                    _ => format!(
                        "host `{name}` is defined both in the inventory and by its `hosts_from`"
                    ),
                };
                cx.error(pos(key), message);
                continue;
            }
            if let Some(host) = host(&mut cx, &name, key, raw) {
                host_from.insert(name.clone(), src);
                hosts.insert(name, host);
            }
        }
        for (key, raw) in target_entries.iter().flat_map(|e| e.0.iter()) {
            target_raws.push((src, key, raw));
        }
    }
    let mut targets: BTreeMap<String, Target> = BTreeMap::new();
    let mut target_from: BTreeMap<String, usize> = BTreeMap::new();
    for (src, key, raw) in target_raws {
        cx.cur = src;
        let name = key.value.clone();
        if hosts.contains_key(&name) || host_from.contains_key(&name) || name == model::LOCAL_HOST {
            cx.report(
                pos(key),
                format!("target `{name}` has the name of a host"),
                Some("targets and hosts share one namespace; rename the target".into()),
            );
            continue;
        }
        if let Some(&first) = target_from.get(&name) {
            let message = if first == src {
                format!("target `{name}` is defined twice")
            } else {
                format!("target `{name}` is defined both in the scenario and in the inventory")
            };
            cx.error(pos(key), message);
            continue;
        }
        target_from.insert(name.clone(), src);
        if let Some(target) = target(&mut cx, &name, key, raw, &hosts) {
            targets.insert(name, target);
        }
    }
    cx.cur = 0;
    let names = Names {
        hosts: &hosts,
        targets: &targets,
        failed: target_from.keys().cloned().collect(),
    };

    let setup = file
        .setup
        .iter()
        .flatten()
        .filter_map(|raw| setup_command(&mut cx, raw, &settings))
        .collect();

    let mut probe_names = BTreeMap::new();
    let mut probes = |cx: &mut Cx, list: &Option<Vec<Sp<ProbeRaw>>>| -> Vec<Probe> {
        list.iter()
            .flatten()
            .filter_map(|raw| probe(cx, raw, &settings, &names, &mut probe_names))
            .collect()
    };
    let steady_state = probes(&mut cx, &file.steady_state);
    let guardrails = probes(&mut cx, &file.guardrails);
    let objectives = file
        .objectives
        .as_ref()
        .map(|raw| objectives_of(&mut cx, raw))
        .unwrap_or_default();

    let mut steps = Vec::new();
    let mut monkey = None;
    match (&file.steps, &file.monkey) {
        (Some(_), Some(m)) => cx.report(
            pos(m),
            "a file has `steps` or `monkey`, not both",
            Some("move the monkey into a file of its own".into()),
        ),
        (None, None) => cx.report(
            FILE_START,
            "missing `steps`",
            Some("a scenario needs `steps`, or `monkey` for random faults".into()),
        ),
        (Some(list), None) => {
            if list.value.is_empty() {
                cx.error(pos(list), "`steps` is empty");
            }
            let mut seen = BTreeSet::new();
            for raw in &list.value {
                if let Some(step) = step(&mut cx, raw, &settings, objectives, &names, &mut seen) {
                    steps.push(step);
                }
            }
        }
        (None, Some(raw)) => monkey = monkey_of(&mut cx, raw, &settings, &names),
    }

    let teardown = file
        .teardown
        .iter()
        .flatten()
        .filter_map(|raw| {
            let name = cx.req(&raw.value.name, pos(raw), "name", "a teardown entry", |s| {
                Ok(s.to_string())
            });
            let run = match &raw.value.run {
                Some(run) => cx.command(run, "a teardown entry"),
                None => {
                    cx.error(pos(raw), "a teardown entry needs `run`");
                    None
                }
            };
            Some(TeardownCommand {
                name: name?,
                run: run?,
            })
        })
        .collect();

    let schedule = file.schedule.as_ref().and_then(|raw| {
        let cron = cx.req(&raw.value.cron, pos(raw), "cron", "`schedule`", |s| match s
            .split_whitespace()
            .count()
        {
            5 => Ok(s.trim().to_string()),
            n => Err(format!(
                "cron `{s}` has {n} fields; expected 5 (minute hour day month weekday)"
            )),
        });
        let timezone = cx.string(&raw.value.timezone);
        Some(Schedule {
            cron: cron?,
            timezone,
        })
    });

    if !cx.found.is_empty() {
        return Err(cx.found);
    }
    let base_dir = input.srcs[0].base_dir.clone();
    Ok(Scenario {
        version,
        name,
        description,
        tags,
        path: input.path,
        base_dir,
        sha256: input.sha256,
        hosts,
        targets,
        setup,
        steady_state,
        guardrails,
        steps,
        teardown,
        monkey,
        schedule,
        settings,
        objectives,
    })
}

fn setup_command(cx: &mut Cx, raw: &Sp<SetupRaw>, settings: &Settings) -> Option<SetupCommand> {
    let name = cx.req(&raw.value.name, pos(raw), "name", "a setup entry", |s| {
        Ok(s.to_string())
    });
    let what = format!("setup `{}`", name.as_deref().unwrap_or("?"));
    let run = match &raw.value.run {
        Some(run) => cx.command(run, &what),
        None => {
            cx.error(pos(raw), format!("{what} needs `run`"));
            None
        }
    };
    let background = cx
        .opt(&raw.value.background, values::parse_bool)
        .unwrap_or(false);
    let ready = match &raw.value.ready {
        None => Some(None),
        Some(ready) => {
            let r = &ready.value;
            let within = cx.req(&r.within, pos(ready), "within", "`ready`", |s| {
                match values::parse_scenario_duration(s)? {
                    d if d.is_zero() => Err("`within` must be more than 0s".into()),
                    d => Ok(d),
                }
            });
            let kinds = Kinds {
                http: r.http.as_ref(),
                tcp: r.tcp.as_ref(),
                command: r.command.as_ref(),
                process: r.process.as_ref(),
                prometheus: r.prometheus.as_ref(),
                load: None,
            };
            let probe = probe_kind(
                cx,
                kinds,
                r.expect.as_ref(),
                pos(ready),
                "`ready`",
                (settings.every, 100.0),
            );
            match (probe, within) {
                (Some(probe), Some(within)) => Some(Some(Ready { probe, within })),
                _ => None,
            }
        }
    };
    Some(SetupCommand {
        name: name?,
        run: run?,
        background,
        ready: ready?,
    })
}
