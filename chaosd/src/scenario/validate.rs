//! Semantic checks of the raw file and its resolution into [`model::Scenario`]: defaults filled
//! in, `${NAME}` substituted, values parsed, names resolved, relative paths made absolute.
//!
//! Checking goes on after a problem so that one `chaosctl validate` reports all it can; a value
//! that fails is reported at its position and then stands in as its default.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use agent::spec::{
    DropMode, FaultSpec, FillAmount, NetScope, PeerSelector, Pick, ProcessSelector, Protocol,
    SignalNumber,
};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

use super::error::Problem;
use super::model::{
    self, ACTION_TIMEOUT, Action, ActiveHours, Command, CommandExpect, CommandProbe, Host,
    HttpExpect, HttpProbe, LoadProbe, MANUAL_TIMEOUT, Manual, Monkey, Objectives, Pattern, Probe,
    ProbeKind, ProcessProbe, PrometheusProbe, Ready, Scenario, Schedule, Settings, SetupCommand,
    Step, StepFault, Target, TcpProbe, TeardownCommand, TimedAction,
};
use super::raw::*;
use super::values::{self, format_duration};
use super::vars;

/// One file being checked: the scenario or the inventory.
pub(crate) struct Source {
    /// The path as the user gave it, for messages.
    pub display: PathBuf,
    pub text: String,
    /// Where its relative paths point.
    pub base_dir: PathBuf,
}

/// A problem and the width of its caret.
pub(crate) type Found = (Problem, usize);

/// A position in the current file.
#[derive(Debug, Clone, Copy)]
struct Pos {
    line: usize,
    column: usize,
    width: usize,
}

const FILE_START: Pos = Pos {
    line: 1,
    column: 1,
    width: 1,
};

fn pos<T>(s: &Spanned<T>) -> Pos {
    let loc = s.referenced;
    Pos {
        line: loc.line() as usize,
        column: loc.column() as usize,
        width: loc.span().len() as usize,
    }
}

/// Parses one file's YAML into `T`; a syntax or type error stops at the first.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(src: &Source) -> Result<T, Found> {
    let options = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::from_str_with_options(&src.text, options).map_err(|err| {
        let (line, column) = err
            .location()
            .map(|l| (l.line() as usize, l.column() as usize))
            .unwrap_or((0, 0));
        let (message, help, width) = yaml_message(err.without_snippet());
        let problem = Problem {
            file: src.display.clone(),
            line,
            column,
            message,
            help,
        };
        (problem, width)
    })
}

fn yaml_message(err: &serde_saphyr::Error) -> (String, Option<String>, usize) {
    use serde_saphyr::Error as E;
    match err {
        E::SerdeUnknownField {
            field, expected, ..
        } => (
            format!("unknown key `{field}`"),
            Some(suggest(field, expected.iter().copied())),
            field.chars().count(),
        ),
        E::Unexpected { expected, .. } => {
            let expected = match *expected {
                "mapping start" => "a mapping (`key: value` lines or `{...}`)",
                "sequence start" => "a list (`- item` lines or `[...]`)",
                "string scalar" => "a single value, not a list or a mapping",
                other => other,
            };
            (format!("expected {expected}"), None, 1)
        }
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => (format!("expected {expected}, found {unexpected}"), None, 1),
        E::Eof { .. } => ("the file is empty".into(), None, 1),
        E::DuplicateMappingKey { key: Some(key), .. } => (
            format!("key `{key}` is given twice"),
            None,
            key.chars().count(),
        ),
        other => {
            let message = UserMessageFormatter.format_message(other).into_owned();
            let message = match message.find(" at line ") {
                Some(at) => message[..at].to_string(),
                None => message,
            };
            (message, None, 1)
        }
    }
}

/// `did you mean `x`?` when a known word is near, else the list of known words.
fn suggest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.into_iter().collect();
    let best = known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(word, k), *k))
        .min();
    match best {
        Some((distance, k)) if distance <= (word.chars().count() / 3).max(1) => {
            format!("did you mean `{k}`?")
        }
        _ => {
            let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            format!("expected one of {}", list.join(", "))
        }
    }
}

fn near<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let help = suggest(word, known);
    help.starts_with("did you mean").then_some(help)
}

/// Makes `path` absolute against `base`, dropping `.` components.
fn resolve_path(base: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let mut out = base.to_path_buf();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

struct Cx<'a> {
    srcs: &'a [Source],
    /// The file the raw values being checked come from.
    cur: usize,
    vars: &'a BTreeMap<String, String>,
    found: Vec<Found>,
}

impl Cx<'_> {
    fn report(&mut self, at: Pos, message: impl Into<String>, help: Option<String>) {
        let problem = Problem {
            file: self.srcs[self.cur].display.clone(),
            line: at.line,
            column: at.column,
            message: message.into(),
            help,
        };
        self.found.push((problem, at.width));
    }

    fn error(&mut self, at: Pos, message: impl Into<String>) {
        self.report(at, message, None);
    }

    fn base_dir(&self) -> PathBuf {
        self.srcs[self.cur].base_dir.clone()
    }

    /// Substitutes `${NAME}` in a raw scalar written at `loc`.
    fn subst(&mut self, raw: &str, loc: &serde_saphyr::Location) -> Option<String> {
        let vars = self.vars;
        let lookup = |name: &str| vars.get(name).cloned().or_else(|| std::env::var(name).ok());
        match vars::substitute(raw, lookup) {
            Ok(text) => Some(text),
            Err(err) => {
                let at = self.locate(raw, err.offset, loc);
                self.report(at, err.message, err.help);
                None
            }
        }
    }

    /// The position of the `${...}` at byte `offset` of `raw`, found in the file from `loc` on;
    /// the value's own position when it cannot be found (an escaped quoted string).
    fn locate(&self, raw: &str, offset: usize, loc: &serde_saphyr::Location) -> Pos {
        let whole = Pos {
            line: loc.line() as usize,
            column: loc.column() as usize,
            width: loc.span().len() as usize,
        };
        let needle_end = raw[offset..]
            .find('}')
            .map_or(raw.len(), |i| offset + i + 1);
        let needle = &raw[offset..needle_end];
        let text = &self.srcs[self.cur].text;
        let Some(start) = loc.span().byte_offset().map(|b| b as usize) else {
            return whole;
        };
        let Some(found) = text.get(start..).and_then(|rest| rest.find(needle)) else {
            return whole;
        };
        let at = start + found;
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        Pos {
            line: text[..at].matches('\n').count() + 1,
            column: text[line_start..at].chars().count() + 1,
            width: needle.chars().count(),
        }
    }

    fn text(&mut self, v: &Sp<Scalar>) -> Option<String> {
        self.subst(&v.value.0, &v.referenced)
    }

    /// Substitutes and parses a value, reporting a failure at its position.
    fn get<T>(
        &mut self,
        v: &Sp<Scalar>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.text(v)?;
        match parse(&text) {
            Ok(value) => Some(value),
            Err(message) => {
                self.error(pos(v), message);
                None
            }
        }
    }

    /// Like `get`, for an optional key: `None` when absent or invalid.
    fn opt<T>(
        &mut self,
        v: &Option<Sp<Scalar>>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        v.as_ref().and_then(|v| self.get(v, parse))
    }

    /// Like `get`, for a required key: reports `missing `key`` at `at` when absent.
    fn req<T>(
        &mut self,
        v: &Option<Sp<Scalar>>,
        at: Pos,
        key: &str,
        what: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match v {
            Some(v) => self.get(v, parse),
            None => {
                self.error(at, format!("{what} needs `{key}`"));
                None
            }
        }
    }

    fn string(&mut self, v: &Option<Sp<Scalar>>) -> Option<String> {
        self.opt(v, |s| Ok(s.to_string()))
    }

    fn duration(&mut self, v: &Option<Sp<Scalar>>) -> Option<Duration> {
        self.opt(v, values::parse_scenario_duration)
    }

    /// A duration that must be more than zero.
    fn positive(&mut self, v: &Option<Sp<Scalar>>, key: &str) -> Option<Duration> {
        self.opt(v, |s| match values::parse_scenario_duration(s)? {
            d if d.is_zero() => Err(format!("`{key}` must be more than 0s")),
            d => Ok(d),
        })
    }

    fn command(&mut self, run: &Sp<ScalarOrList>, what: &str) -> Option<Command> {
        match &run.value {
            ScalarOrList::Single(script) => {
                let script = self.subst(script, &run.referenced)?;
                if script.trim().is_empty() {
                    self.error(pos(run), format!("{what} has an empty `run`"));
                    return None;
                }
                Some(Command::Shell(script))
            }
            ScalarOrList::List(items) => {
                let mut argv = Vec::with_capacity(items.len());
                for item in items {
                    argv.push(self.text(item)?);
                }
                let Some(program) = argv.first_mut() else {
                    self.error(pos(run), format!("{what} has an empty `run`"));
                    return None;
                };
                if program.contains('/') {
                    *program = resolve_path(&self.base_dir(), program)
                        .to_string_lossy()
                        .into_owned();
                }
                Some(Command::Argv(argv))
            }
        }
    }

    fn regex(&mut self, v: &Option<Sp<Scalar>>) -> Option<Pattern> {
        self.opt(v, |s| {
            Pattern::new(s).map_err(|err| {
                let detail = err.to_string();
                let detail = detail
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                let detail = detail.trim().trim_start_matches("error: ");
                format!("`{s}` is not a valid regex: {detail}")
            })
        })
    }
}

/// Everything that resolves into one scenario.
pub(crate) struct Input<'a> {
    /// The scenario first, then the inventory if any.
    pub srcs: &'a [Source],
    pub file: FileRaw,
    pub inventory: Option<InventoryRaw>,
    pub vars: &'a BTreeMap<String, String>,
    pub path: PathBuf,
    pub sha256: String,
}

/// The hosts of an inventory file on its own (for `chaosctl agents` and `revert --all`).
pub(crate) fn resolve_inventory(
    srcs: &[Source],
    inventory: &InventoryRaw,
    vars: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Host>, Vec<Found>> {
    let mut cx = Cx {
        srcs,
        cur: 0,
        vars,
        found: Vec::new(),
    };
    let mut hosts = BTreeMap::new();
    for (key, raw) in inventory.hosts.iter().flat_map(|e| e.0.iter()) {
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
    let sources: [Defs; 2] = [
        (0, file.hosts.as_ref(), file.targets.as_ref()),
        (
            1,
            inventory.as_ref().and_then(|i| i.hosts.as_ref()),
            inventory.as_ref().and_then(|i| i.targets.as_ref()),
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
                let message = if first == src {
                    format!("host `{name}` is defined twice")
                } else {
                    format!("host `{name}` is defined both in the scenario and in the inventory")
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

/// `objectives:`: each key optional; `max_failed` a share of the samples (or requests).
fn objectives_of(cx: &mut Cx, raw: &Sp<ObjectivesRaw>) -> Objectives {
    let o = &raw.value;
    if o.max_outage.is_none() && o.max_failed.is_none() && o.max_error.is_none() {
        cx.report(
            pos(raw),
            "`objectives` is empty",
            Some("give `max_outage`, `max_failed` or `max_error`, or remove it".into()),
        );
    }
    Objectives {
        max_outage: cx.duration(&o.max_outage),
        max_failed: cx.opt(&o.max_failed, values::parse_share),
        max_error: cx.duration(&o.max_error),
    }
}

fn settings(cx: &mut Cx, raw: Option<&Sp<SettingsRaw>>) -> Settings {
    let mut settings = Settings::default();
    let Some(raw) = raw else {
        return settings;
    };
    let raw = &raw.value;
    settings.seed = cx.opt(&raw.seed, values::parse_count::<u64>);
    if let Some(d) = cx.positive(&raw.every, "every") {
        settings.every = d;
    }
    if let Some(d) = cx.positive(&raw.window, "window") {
        settings.window = d;
    }
    if let Some(d) = cx.duration(&raw.recover_within) {
        settings.recover_within = d;
    }
    if let Some(d) = cx.positive(&raw.lease, "lease") {
        settings.lease = d;
    }
    if let Some(d) = cx.positive(&raw.max_duration, "max_duration") {
        settings.max_duration = d;
    }
    if let Some(n) = cx.opt(&raw.max_hosts, |s| match values::parse_count::<usize>(s)? {
        0 => Err("`max_hosts` must be at least 1".into()),
        n => Ok(n),
    }) {
        settings.max_hosts = n;
    }
    settings
}

fn host(cx: &mut Cx, name: &str, key: &Sp<String>, raw: &Sp<HostRaw>) -> Option<Host> {
    let base = cx.base_dir();
    let agent = cx.req(
        &raw.value.agent,
        pos(key),
        "agent",
        &format!("host `{name}`"),
        |s| {
            if s.starts_with("https://") || s.starts_with("http://") {
                Ok(s.trim_end_matches('/').to_string())
            } else {
                Err(format!(
                    "agent `{s}` is not a URL; expected e.g. `https://10.0.0.11:7411`"
                ))
            }
        },
    );
    let labels = labels(cx, raw.value.labels.as_ref());
    let token_file = cx.opt(&raw.value.token_file, |s| Ok(resolve_path(&base, s)));
    let ca_file = cx.opt(&raw.value.ca_file, |s| Ok(resolve_path(&base, s)));
    let cert_file = cx.opt(&raw.value.cert_file, |s| Ok(resolve_path(&base, s)));
    let key_file = cx.opt(&raw.value.key_file, |s| Ok(resolve_path(&base, s)));
    if cert_file.is_some() != key_file.is_some() {
        cx.error(
            pos(key),
            format!("host `{name}`: `cert_file` and `key_file` go together (the client certificate and its key); give both or neither"),
        );
    }
    Some(Host {
        name: name.to_string(),
        agent: Some(agent?),
        labels,
        token_file,
        ca_file,
        cert_file,
        key_file,
    })
}

fn labels(cx: &mut Cx, raw: Option<&Entries<Sp<Scalar>>>) -> BTreeMap<String, String> {
    raw.iter()
        .flat_map(|e| e.0.iter())
        .filter_map(|(k, v)| Some((k.value.clone(), cx.text(v)?)))
        .collect()
}

fn target(
    cx: &mut Cx,
    name: &str,
    key: &Sp<String>,
    raw: &Sp<TargetRaw>,
    hosts: &BTreeMap<String, Host>,
) -> Option<Target> {
    let raw = &raw.value;
    let chosen: Vec<String> = match (&raw.labels, &raw.hosts) {
        (None, None) => {
            cx.error(
                pos(key),
                format!("target `{name}` needs `labels` or `hosts`"),
            );
            return None;
        }
        (Some(_), Some(list)) => {
            cx.error(
                pos(list),
                format!("target `{name}` has both `labels` and `hosts`; give one"),
            );
            return None;
        }
        (Some(wanted), None) => {
            let wanted_labels = labels(cx, Some(&wanted.value));
            let matched: Vec<String> = hosts
                .values()
                .filter(|h| {
                    wanted_labels
                        .iter()
                        .all(|(k, v)| h.labels.get(k) == Some(v))
                })
                .map(|h| h.name.clone())
                .collect();
            if matched.is_empty() {
                let shown: Vec<String> = wanted_labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                cx.error(
                    pos(wanted),
                    format!(
                        "target `{name}` matches no host: none has the labels `{}`",
                        shown.join(", ")
                    ),
                );
                return None;
            }
            matched
        }
        (None, Some(list)) => {
            let mut chosen = BTreeSet::new();
            for item in &list.value {
                let Some(host) = cx.text(item) else { continue };
                if hosts.contains_key(&host) {
                    chosen.insert(host);
                } else {
                    let help = near(&host, hosts.keys().map(String::as_str));
                    cx.report(pos(item), format!("unknown host `{host}`"), help);
                }
            }
            if list.value.is_empty() {
                cx.error(pos(list), format!("target `{name}` has no hosts"));
                return None;
            }
            chosen.into_iter().collect()
        }
    };
    let pick = cx.opt(&raw.pick, values::parse_pick).unwrap_or_default();
    if let (Pick::Count(n), Some(v)) = (pick, &raw.pick)
        && n as usize > chosen.len()
    {
        cx.error(
            pos(v),
            format!(
                "`pick` {n} is more than the {} hosts of target `{name}`",
                chosen.len()
            ),
        );
    }
    Some(Target {
        name: name.to_string(),
        hosts: chosen,
        pick,
    })
}

/// The names a step's `target` or a probe's `on` may use.
struct Names<'a> {
    hosts: &'a BTreeMap<String, Host>,
    targets: &'a BTreeMap<String, Target>,
    /// Every target defined, also those that failed their own checks (not reported again).
    failed: BTreeSet<String>,
}

impl Names<'_> {
    fn resolve(&self, name: &str) -> Option<(Vec<String>, Pick)> {
        if let Some(t) = self.targets.get(name) {
            return Some((t.hosts.clone(), t.pick));
        }
        self.hosts
            .contains_key(name)
            .then(|| (vec![name.to_string()], Pick::All))
    }

    /// Resolves `name`, reporting an unknown one at `at`.
    fn check(&self, cx: &mut Cx, name: &str, at: Pos) -> Option<(Vec<String>, Pick)> {
        if let Some(found) = self.resolve(name) {
            return Some(found);
        }
        if !self.failed.contains(name) {
            let known = self
                .targets
                .keys()
                .chain(self.hosts.keys())
                .map(String::as_str);
            let help = near(name, known).unwrap_or_else(|| {
                "a target is defined under `targets:`, a host under `hosts:` (or `local`)".into()
            });
            cx.report(at, format!("unknown target or host `{name}`"), Some(help));
        }
        None
    }
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

fn probe(
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

struct Kinds<'r> {
    http: Option<&'r Sp<HttpRaw>>,
    tcp: Option<&'r Sp<TcpRaw>>,
    command: Option<&'r Sp<CommandRaw>>,
    process: Option<&'r Sp<ProcessRaw>>,
    prometheus: Option<&'r Sp<PrometheusRaw>>,
    load: Option<&'r Sp<LoadRaw>>,
}

const PROBE_KINDS: &str = "`http`, `tcp`, `command`, `process`, `prometheus` or `load`";

/// The most requests one `load` sample may send (rate × every).
const MAX_LOAD_REQUESTS: f64 = agent::probe::load::MAX_REQUESTS as f64;

/// The longest `every` of a `load` probe, which is how long one sample sends for.
const MAX_LOAD_EVERY: Duration = Duration::from_secs(60);

fn probe_kind(
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

fn selector(cx: &mut Cx, raw: &Sp<ProcessRaw>) -> Option<ProcessSelector> {
    let p = &raw.value;
    let present: Vec<(&str, &Sp<Scalar>)> = [
        ("name", p.name.as_ref()),
        ("pattern", p.pattern.as_ref()),
        ("pid", p.pid.as_ref()),
        ("pidfile", p.pidfile.as_ref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v?)))
    .collect();
    let base = cx.base_dir();
    match present.as_slice() {
        [] => {
            cx.report(
                pos(raw),
                "a process selector needs one key",
                Some("give one of `name`, `pattern`, `pid`, `pidfile`".into()),
            );
            None
        }
        [(kind, v)] => match *kind {
            "name" => cx.get(v, |s| Ok(ProcessSelector::Name(s.to_string()))),
            "pattern" => cx.get(v, |s| match regex::Regex::new(s) {
                Ok(_) => Ok(ProcessSelector::Pattern(s.to_string())),
                Err(err) => {
                    let detail = err.to_string();
                    let detail = detail
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("");
                    Err(format!(
                        "`{s}` is not a valid regex: {}",
                        detail.trim().trim_start_matches("error: ")
                    ))
                }
            }),
            "pid" => cx.get(v, |s| match s.trim().parse::<i32>() {
                Ok(pid) if pid > 0 => Ok(ProcessSelector::Pid(pid)),
                _ => Err(format!("`{s}` is not a pid")),
            }),
            _ => cx.get(v, |s| Ok(ProcessSelector::Pidfile(resolve_path(&base, s)))),
        },
        [(first, _), (second, v), ..] => {
            cx.error(
                pos(v),
                format!("a process selector has both `{first}` and `{second}`; give one"),
            );
            None
        }
    }
}

struct FaultKinds<'r> {
    kill: Option<&'r Sp<KillRaw>>,
    pause: Option<&'r Sp<PauseRaw>>,
    latency: Option<&'r Sp<LatencyRaw>>,
    loss: Option<&'r Sp<LossRaw>>,
    drop: Option<&'r Sp<DropRaw>>,
    fill_disk: Option<&'r Sp<FillDiskRaw>>,
}

impl<'r> From<&'r FaultRaw> for FaultKinds<'r> {
    fn from(f: &'r FaultRaw) -> Self {
        FaultKinds {
            kill: f.kill.as_ref(),
            pause: f.pause.as_ref(),
            latency: f.latency.as_ref(),
            loss: f.loss.as_ref(),
            drop: f.drop.as_ref(),
            fill_disk: f.fill_disk.as_ref(),
        }
    }
}

impl<'r> From<&'r FaultEntryRaw> for FaultKinds<'r> {
    fn from(f: &'r FaultEntryRaw) -> Self {
        FaultKinds {
            kill: f.kill.as_ref(),
            pause: f.pause.as_ref(),
            latency: f.latency.as_ref(),
            loss: f.loss.as_ref(),
            drop: f.drop.as_ref(),
            fill_disk: f.fill_disk.as_ref(),
        }
    }
}

impl FaultKinds<'_> {
    /// The first fault kind given, if any.
    fn first_present(&self) -> Option<&'static str> {
        [
            ("kill", self.kill.is_some()),
            ("pause", self.pause.is_some()),
            ("latency", self.latency.is_some()),
            ("loss", self.loss.is_some()),
            ("drop", self.drop.is_some()),
            ("fill_disk", self.fill_disk.is_some()),
        ]
        .into_iter()
        .find_map(|(name, given)| given.then_some(name))
    }
}

fn fault(cx: &mut Cx, k: FaultKinds, at: Pos, what: &str) -> Option<FaultSpec> {
    let present = [
        ("kill", k.kill.map(pos)),
        ("pause", k.pause.map(pos)),
        ("latency", k.latency.map(pos)),
        ("loss", k.loss.map(pos)),
        ("drop", k.drop.map(pos)),
        ("fill_disk", k.fill_disk.map(pos)),
    ]
    .into_iter()
    .filter_map(|(name, p)| Some((name, p?)))
    .collect::<Vec<_>>();
    // The second in the file is the one pointed at.
    let mut present = present;
    present.sort_by_key(|(_, p)| (p.line, p.column));
    match present.as_slice() {
        [] => {
            cx.report(
                at,
                format!("{what} has no fault kind"),
                Some("give one of `kill`, `pause`, `latency`, `loss`, `drop`, `fill_disk`".into()),
            );
            return None;
        }
        [_] => {}
        [(first, _), (second, at), ..] => {
            cx.error(
                *at,
                format!("{what} has two fault kinds, `{first}` and `{second}`; give one"),
            );
            return None;
        }
    }
    if let Some(raw) = k.kill {
        let process = process_of(cx, raw.value.process.as_ref(), pos(raw), "kill");
        let signal = cx
            .opt(&raw.value.signal, values::parse_signal)
            .unwrap_or(SignalNumber(nix::sys::signal::Signal::SIGKILL as i32));
        let pick = cx
            .opt(&raw.value.pick, values::parse_pick)
            .unwrap_or_default();
        return Some(FaultSpec::Kill {
            process: process?,
            signal,
            pick,
        });
    }
    if let Some(raw) = k.pause {
        let process = process_of(cx, raw.value.process.as_ref(), pos(raw), "pause");
        let pick = cx
            .opt(&raw.value.pick, values::parse_pick)
            .unwrap_or_default();
        return Some(FaultSpec::Pause {
            process: process?,
            pick,
        });
    }
    if let Some(raw) = k.latency {
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
        return Some(FaultSpec::Latency {
            delay: delay?,
            jitter,
            scope: scope?,
        });
    }
    if let Some(raw) = k.loss {
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
        return Some(FaultSpec::Loss {
            share: share?,
            scope: scope?,
        });
    }
    if let Some(raw) = k.drop {
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
        return Some(FaultSpec::Drop {
            mode,
            scope: scope?,
        });
    }
    let raw = k.fill_disk?;
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
    Some(FaultSpec::FillDisk {
        path: path?,
        amount: amount?,
    })
}

fn process_of(
    cx: &mut Cx,
    raw: Option<&Sp<ProcessRaw>>,
    at: Pos,
    kind: &str,
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

fn step(
    cx: &mut Cx,
    raw: &Sp<StepRaw>,
    settings: &Settings,
    objectives: Objectives,
    names: &Names,
    seen: &mut BTreeSet<String>,
) -> Option<Step> {
    let s = &raw.value;
    let name = cx.req(&s.name, pos(raw), "name", "a step", |v| Ok(v.to_string()));
    if let (Some(name), Some(v)) = (&name, &s.name)
        && !seen.insert(name.clone())
    {
        cx.error(pos(v), format!("step `{name}` is defined twice"));
    }
    let what = format!("step `{}`", name.as_deref().unwrap_or("?"));
    let before = cx.found.len();
    let mut faults: Vec<(StepFault, Vec<String>, Pick)> = Vec::new();
    let mut actions: Vec<TimedAction> = Vec::new();
    // Each `start_after` given, with where it is, checked against `duration` below.
    let mut starts: Vec<(Duration, Pos)> = Vec::new();
    let mut action = None;
    let mut manual = None;
    let kinds: Vec<(&str, Pos)> = [
        ("fault", s.fault.as_ref().map(pos)),
        ("faults", s.faults.as_ref().map(pos)),
        ("action", s.action.as_ref().map(pos)),
        ("manual", s.manual.as_ref().map(pos)),
    ]
    .into_iter()
    .filter_map(|(key, at)| Some((key, at?)))
    .collect();
    match kinds.as_slice() {
        [] => cx.report(
            pos(raw),
            format!("{what} has no fault"),
            Some(
                "give `target` and `fault`, or `faults`, or make it an `action` or `manual` step"
                    .into(),
            ),
        ),
        [_] => {}
        [(first, _), (second, at), ..] => cx.error(
            *at,
            format!("{what} has both `{first}` and `{second}`; give one"),
        ),
    }
    let single = kinds.len() == 1;
    if single && let Some(f) = &s.fault {
        let target = match &s.target {
            None => {
                cx.error(pos(raw), format!("{what} has a `fault` but no `target`"));
                None
            }
            Some(v) => cx
                .text(v)
                .and_then(|t| names.check(cx, &t, pos(v)).map(|r| (t, r))),
        };
        let spec = fault(
            cx,
            FaultKinds::from(&f.value),
            pos(f),
            &format!("the fault of {what}"),
        );
        if let (Some((target, (hosts, pick))), Some(spec)) = (target, spec) {
            faults.push((
                StepFault {
                    target,
                    spec,
                    start_after: Duration::ZERO,
                },
                hosts,
                pick,
            ));
        }
    }
    if single && let Some(list) = &s.faults {
        if let Some(v) = &s.target {
            cx.report(
                pos(v),
                format!("{what} has `faults`, so it takes no `target`"),
                Some("give each entry of `faults` its own `target`".into()),
            );
        }
        if list.value.is_empty() {
            cx.error(pos(list), format!("{what} has an empty `faults`"));
        }
        for entry in &list.value {
            let e = &entry.value;
            let start_after = match &e.start_after {
                None => Some(Duration::ZERO),
                Some(v) => {
                    let d = cx.get(v, values::parse_scenario_duration);
                    if let Some(d) = d {
                        starts.push((d, pos(v)));
                    }
                    d
                }
            };
            if let Some(a) = &e.action {
                let kinds = FaultKinds::from(e);
                if let Some(kind) = kinds.first_present() {
                    cx.error(
                        pos(a),
                        format!(
                            "an entry of `faults` of {what} has both `{kind}` and `action`; give one per entry"
                        ),
                    );
                }
                if let Some(v) = &e.target {
                    cx.report(
                        pos(v),
                        format!("an `action` entry of {what} takes no `target`"),
                        Some(
                            "give the action `on: TARGET` to run it on that target's hosts".into(),
                        ),
                    );
                }
                let parsed = action_of(cx, a, &format!("an action of {what}"), names);
                if let (Some(action), Some(start_after)) = (parsed, start_after) {
                    actions.push(TimedAction {
                        action,
                        start_after,
                    });
                }
                continue;
            }
            let target = match &e.target {
                None => {
                    cx.error(pos(entry), format!("a fault of {what} has no `target`"));
                    None
                }
                Some(v) => cx
                    .text(v)
                    .and_then(|t| names.check(cx, &t, pos(v)).map(|r| (t, r))),
            };
            let spec = fault(
                cx,
                FaultKinds::from(e),
                pos(entry),
                &format!("a fault of {what}"),
            );
            if let (Some((target, (hosts, pick))), Some(spec), Some(start_after)) =
                (target, spec, start_after)
            {
                faults.push((
                    StepFault {
                        target,
                        spec,
                        start_after,
                    },
                    hosts,
                    pick,
                ));
            }
        }
        if !list.value.is_empty() && list.value.iter().all(|e| e.value.action.is_some()) {
            cx.report(
                pos(list),
                format!("{what} has only actions in `faults`"),
                Some(
                    "give it a fault to hold, or make each action a step of its own (`action:`)"
                        .into(),
                ),
            );
        }
    }
    if single && let Some(a) = &s.action {
        action = action_of(cx, a, &format!("the action of {what}"), names);
    }
    if single && let Some(m) = &s.manual {
        let prompt = cx.req(&m.value.prompt, pos(m), "prompt", "`manual`", |v| {
            if v.trim().is_empty() {
                Err("`prompt` is empty: say what the person should check before answering".into())
            } else {
                Ok(v.to_string())
            }
        });
        let timeout = match &m.value.timeout {
            None => Some(MANUAL_TIMEOUT),
            Some(_) => cx.positive(&m.value.timeout, "timeout"),
        };
        if let (Some(prompt), Some(timeout)) = (prompt, timeout) {
            manual = Some(Manual { prompt, timeout });
        }
    }
    let faults_ok = cx.found.len() == before;

    // An action or manual step holds nothing: `duration` and `recover_within` would mean
    // nothing there, so they are refused rather than ignored.
    let without_faults = match (&s.action, &s.manual) {
        _ if !single => None,
        (Some(_), _) => Some("an `action`"),
        (_, Some(_)) => Some("a `manual`"),
        _ => None,
    };
    if let Some(kind) = without_faults {
        for (key, v) in [
            ("duration", &s.duration),
            ("recover_within", &s.recover_within),
        ] {
            if let Some(v) = v {
                cx.report(
                    pos(v),
                    format!("`{key}` belongs to steps with faults; {what} is {kind} step"),
                    Some(format!(
                        "remove `{key}`, or make it a step with `fault` or `faults`"
                    )),
                );
            }
        }
        if let Some(v) = &s.target {
            cx.report(
                pos(v),
                format!("{what} is {kind} step, so it takes no `target`"),
                Some(if s.action.is_some() {
                    "give the action `on: TARGET` to run it on that target's hosts".into()
                } else {
                    "remove `target`".into()
                }),
            );
        }
    }

    let duration = match &s.duration {
        _ if without_faults.is_some() => Some(Duration::ZERO),
        Some(v) => {
            let d = cx.get(v, values::parse_scenario_duration);
            if let Some(d) = d
                && d > settings.max_duration
            {
                cx.report(
                    pos(v),
                    format!(
                        "duration `{}` of {what} is over `max_duration` ({})",
                        format_duration(d),
                        format_duration(settings.max_duration)
                    ),
                    Some("shorten the step, or raise `settings.max_duration`".into()),
                );
            }
            d
        }
        None => {
            let held = faults
                .iter()
                .map(|(f, _, _)| f.spec.kind())
                .find(|k| k.holds());
            match held {
                Some(kind) if faults_ok => {
                    cx.error(
                        pos(raw),
                        format!("{what} needs `duration` for its `{kind}` fault"),
                    );
                    None
                }
                _ => Some(Duration::ZERO),
            }
        }
    };
    // A late entry must come while the step's faults are still held.
    if let Some(duration) = duration {
        for (start_after, at) in &starts {
            if *start_after >= duration {
                cx.report(
                    *at,
                    format!(
                        "`start_after` {} of an entry of {what} is not shorter than its `duration` ({})",
                        format_duration(*start_after),
                        format_duration(duration)
                    ),
                    Some("start it earlier, or give the step a longer `duration`".into()),
                );
            }
        }
    }
    let recover_within = if without_faults.is_some() {
        settings.recover_within
    } else {
        cx.duration(&s.recover_within)
            .unwrap_or(settings.recover_within)
    };

    if faults_ok {
        let count = hosts_at_most(&faults);
        if count > settings.max_hosts {
            let at = s
                .faults
                .as_ref()
                .map(pos)
                .or(s.target.as_ref().map(pos))
                .unwrap_or(pos(raw));
            cx.report(
                at,
                format!(
                    "{what} faults up to {count} hosts, more than `max_hosts` ({})",
                    settings.max_hosts
                ),
                Some("pick fewer hosts, or raise `settings.max_hosts`".into()),
            );
        }
    }
    let own = s.objectives.as_ref().map(|raw| objectives_of(cx, raw));
    Some(Step {
        name: name?,
        faults: faults.into_iter().map(|(f, _, _)| f).collect(),
        actions,
        action,
        manual,
        duration: duration?,
        recover_within,
        objectives: own.unwrap_or_default().or(objectives),
    })
}

/// `action: {run, timeout, on}`: `on` must name a target or host; `timeout` defaults to 5m.
fn action_of(cx: &mut Cx, raw: &Sp<ActionRaw>, what: &str, names: &Names) -> Option<Action> {
    let a = &raw.value;
    let run = match &a.run {
        Some(run) => cx.command(run, what),
        None => {
            cx.report(
                pos(raw),
                format!("{what} needs `run`"),
                Some(
                    "give the command as a list (`run: [./promote.sh, db-2]`) or a shell line"
                        .into(),
                ),
            );
            None
        }
    };
    let timeout = match &a.timeout {
        None => Some(ACTION_TIMEOUT),
        Some(_) => cx.positive(&a.timeout, "timeout"),
    };
    let on = match &a.on {
        None => Some(None),
        Some(v) => cx
            .text(v)
            .and_then(|t| names.check(cx, &t, pos(v)).map(|_| Some(t))),
    };
    Some(Action {
        run: run?,
        timeout: timeout?,
        on: on?,
    })
}

/// How many distinct hosts a set of faults may touch: each target counts once (its pick is
/// drawn once per run), a target taking all its hosts counts exactly those hosts, and the total
/// is never more than the hosts the targets choose from.
fn hosts_at_most(faults: &[(StepFault, Vec<String>, Pick)]) -> usize {
    let mut by_target: BTreeMap<&str, (&Vec<String>, Pick)> = BTreeMap::new();
    for (f, hosts, pick) in faults {
        by_target.insert(f.target.as_str(), (hosts, *pick));
    }
    let mut all = BTreeSet::new();
    let mut exact = BTreeSet::new();
    let mut picked = 0;
    for (hosts, pick) in by_target.values() {
        all.extend(hosts.iter());
        match pick {
            Pick::All => exact.extend(hosts.iter()),
            _ => picked += pick.count_of(hosts.len()),
        }
    }
    all.len().min(exact.len() + picked)
}

fn monkey_of(
    cx: &mut Cx,
    raw: &Sp<MonkeyRaw>,
    settings: &Settings,
    names: &Names,
) -> Option<Monkey> {
    let m = &raw.value;
    let target = match &m.target {
        None => {
            cx.error(pos(raw), "`monkey` needs `target`");
            None
        }
        Some(v) => cx
            .text(v)
            .and_then(|t| names.check(cx, &t, pos(v)).map(|r| (t, r, pos(v)))),
    };
    let spec = match &m.fault {
        None => {
            cx.error(pos(raw), "`monkey` needs `fault`");
            None
        }
        Some(f) => fault(
            cx,
            FaultKinds::from(&f.value),
            pos(f),
            "the fault of `monkey`",
        ),
    };
    if let Some((_, (hosts, pick), at)) = &target {
        let count = pick.count_of(hosts.len());
        if count > settings.max_hosts {
            cx.error(
                *at,
                format!(
                    "`monkey` faults up to {count} hosts, more than `max_hosts` ({})",
                    settings.max_hosts
                ),
            );
        }
    }
    let mean_interval = cx.req(
        &m.mean_interval,
        pos(raw),
        "mean_interval",
        "`monkey`",
        |s| match values::parse_scenario_duration(s)? {
            d if d.is_zero() => Err("`mean_interval` must be more than 0s".into()),
            d => Ok(d),
        },
    );
    let min_interval = cx.duration(&m.min_interval).unwrap_or_default();
    if let (Some(mean), Some(v)) = (mean_interval, &m.min_interval)
        && min_interval > mean
    {
        cx.error(
            pos(v),
            format!(
                "`min_interval` ({}) is longer than `mean_interval` ({})",
                format_duration(min_interval),
                format_duration(mean)
            ),
        );
    }
    let active = match &m.active {
        None => Some(None),
        Some(a) => {
            let before = cx.found.len();
            let days = match &a.value.days {
                None => ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                    .map(String::from)
                    .to_vec(),
                Some(days) => {
                    if days.is_empty() {
                        cx.error(pos(a), "`active.days` is empty; the monkey would never run");
                    }
                    days.iter()
                        .filter_map(|d| cx.get(d, values::parse_day))
                        .collect()
                }
            };
            let (start_minute, end_minute) = cx
                .opt(&a.value.hours, values::parse_hours)
                .unwrap_or((0, 24 * 60));
            let timezone = cx.opt(&a.value.timezone, values::parse_timezone);
            (cx.found.len() == before).then_some(Some(ActiveHours {
                days,
                start_minute,
                end_minute,
                timezone,
            }))
        }
    };
    let max_per_day = cx.opt(&m.max_per_day, |s| match values::parse_count::<u32>(s)? {
        0 => Err("`max_per_day` must be at least 1".into()),
        n => Ok(n),
    });
    let duration = match &m.duration {
        Some(v) => {
            let d = cx.get(v, values::parse_scenario_duration);
            if let Some(d) = d
                && d > settings.max_duration
            {
                cx.report(
                    pos(v),
                    format!(
                        "duration `{}` of `monkey` is over `max_duration` ({})",
                        format_duration(d),
                        format_duration(settings.max_duration)
                    ),
                    Some("shorten it, or raise `settings.max_duration`".into()),
                );
            }
            d
        }
        None => match &spec {
            Some(f) if f.kind().holds() => {
                cx.error(
                    pos(raw),
                    format!("`monkey` needs `duration` for its `{}` fault", f.kind()),
                );
                None
            }
            _ => Some(Duration::ZERO),
        },
    };
    Some(Monkey {
        target: target?.0,
        duration: duration?,
        fault: spec?,
        mean_interval: mean_interval?,
        min_interval,
        active: active?,
        max_per_day,
    })
}

/// `an` before `http`, else `a`.
fn article(kind: &str) -> &'static str {
    if kind == "http" { "an" } else { "a" }
}
