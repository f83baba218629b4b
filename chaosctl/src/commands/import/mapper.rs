//! From a Chaos Toolkit experiment to the pieces of a scenario, and the list of what has no
//! chaosctl equivalent.
//!
//! - the hypothesis's `http` probes become `http` probes: the tolerance (a status, a list of
//!   them, a `range` over `status`, a `regex` over `body`) becomes `expect`;
//! - its `process` probes become `command` probes: the tolerance (an exit code, a `range` of one
//!   code, a `regex` over `stdout`) becomes `expect`;
//! - the method's `process` actions become `action` steps, and `pauses` become steps that sleep;
//! - the rollbacks' `process` activities become `teardown` commands (with their pauses);
//! - configuration and secrets become variables (see [`super::template`]);
//! - everything else (Python providers, controls, probes of the method, http actions,
//!   tolerances a probe cannot express) is an [`Unmapped`]: named, with its provider, and why.
//!
//! Every string here is already in the scenario's own syntax (`${` of literal text written
//! `$${`); the renderer only quotes.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::chaostoolkit::{Activity, Control, Experiment, Provider};
use super::template::{Binding, Names, Origin, Translated, literal, python_str};

/// The longest a probe sample may take when Chaos Toolkit gave no timeout (it waited forever):
/// the longest a probe's default timeout is.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

const PYTHON: &str = "chaosctl runs no Python; write what it does as a chaosctl fault, probe or command, or leave it out";

/// The scenario, in pieces.
#[derive(Debug)]
pub struct Imported {
    pub name: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub hypothesis_title: Option<String>,
    pub steady_state: Vec<Item<Probe>>,
    pub steps: Vec<Item<Step>>,
    pub teardown: Vec<Item<Teardown>>,
    /// Everything not imported, in the experiment's order.
    pub unmapped: Vec<Unmapped>,
    /// Comment lines on the variables the file uses, and on the experiment's secrets.
    pub variables: Vec<String>,
    /// Comment lines on what runs differently here.
    pub notes: Vec<String>,
    /// Variables without a default: a run needs them from `--var` or the environment.
    pub required: BTreeSet<String>,
}

/// An entry of a list, or the place of one that was not imported.
#[derive(Debug)]
pub enum Item<T> {
    Mapped(T),
    Skipped(Unmapped),
}

/// Something of the experiment with no chaosctl equivalent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmapped {
    /// `method action `terminate-pod``.
    pub what: String,
    /// `python provider: module `chaosk8s.pod.actions`, function `terminate_pods``.
    pub provider: String,
    pub reason: String,
}

impl fmt::Display for Unmapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.what, self.provider, self.reason)
    }
}

#[derive(Debug)]
pub struct Probe {
    pub name: String,
    /// Where it came from, for a comment.
    pub source: String,
    pub kind: ProbeKind,
    pub notes: Vec<String>,
}

#[derive(Debug)]
pub enum ProbeKind {
    Http(Http),
    Command {
        run: Run,
        timeout: Duration,
        exit: i64,
        stdout_matches: Option<String>,
    },
}

#[derive(Debug, Default)]
pub struct Http {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub timeout: Duration,
    pub status: Vec<String>,
    pub body_matches: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    /// A `/bin/sh -c` string.
    Shell(String),
    Argv(Vec<String>),
}

#[derive(Debug)]
pub struct Step {
    pub name: String,
    pub source: String,
    pub kind: StepKind,
    pub notes: Vec<String>,
}

#[derive(Debug)]
pub enum StepKind {
    Action {
        run: Run,
        timeout: Option<Duration>,
    },
    /// Only when nothing of the method maps: a person does it.
    Manual {
        prompt: String,
    },
}

#[derive(Debug)]
pub struct Teardown {
    pub name: String,
    pub source: String,
    pub run: Run,
    pub notes: Vec<String>,
}

/// Maps `experiment`; `fallback_name` names the scenario when the experiment has no title. An
/// error is an experiment Chaos Toolkit itself would refuse (an activity without a provider, an
/// unknown `ref`).
pub fn map(experiment: &Experiment, fallback_name: &str) -> Result<Imported, String> {
    let mut m = Mapper {
        names: Names::new(&experiment.configuration, &experiment.secrets),
        used: BTreeSet::new(),
        required: BTreeSet::new(),
        unmapped: Vec::new(),
        skipped_scopes: Default::default(),
    };
    let declared: Vec<&Activity> = experiment
        .hypothesis
        .iter()
        .flat_map(|h| &h.probes)
        .chain(&experiment.method)
        .chain(&experiment.rollbacks)
        .filter(|a| a.reference.is_none())
        .collect();
    let resolve = |a: &'_ Activity, at: String| -> Result<Activity, String> {
        let a = match &a.reference {
            Some(name) => declared
                .iter()
                .find(|d| d.name.as_deref() == Some(name.as_str()))
                .map(|d| (*d).clone())
                .ok_or_else(|| format!("{at} refers to `{name}`, which no activity is named"))?,
            None => a.clone(),
        };
        if a.name.as_deref().is_none_or(str::is_empty) {
            return Err(format!("{at} has no `name`"));
        }
        match a.kind.as_deref() {
            Some("probe" | "action") => {}
            Some(other) => {
                return Err(format!(
                    "{at} has type `{other}`; an activity is a `probe` or an `action`"
                ));
            }
            None => return Err(format!("{at} has no `type` (`probe` or `action`)")),
        }
        match &a.provider {
            None => return Err(format!("{at} has no `provider`")),
            Some(p) if p.kind.is_empty() => {
                return Err(format!(
                    "{at} has a provider without `type` (`http`, `process` or `python`)"
                ));
            }
            Some(_) => {}
        }
        Ok(a)
    };

    for (key, value) in &experiment.configuration {
        if value.get("type").and_then(Value::as_str) == Some("probe") {
            let provider = provider_of(value);
            m.unmapped.push(Unmapped {
                what: format!("configuration `{key}`"),
                provider,
                reason: "a value computed by a probe when the experiment starts; give it with `--var` instead".into(),
            });
        }
    }
    for control in experiment
        .controls
        .iter()
        .chain(experiment.hypothesis.iter().flat_map(|h| &h.controls))
    {
        m.control(control, None);
    }

    let mut probe_names = Namer::default();
    let mut steady_state = Vec::new();
    for (i, raw) in experiment
        .hypothesis
        .iter()
        .flat_map(|h| &h.probes)
        .enumerate()
    {
        let a = resolve(raw, format!("steady-state-hypothesis.probes[{i}]"))?;
        let name = a.name.clone().unwrap_or_default();
        let what = format!("hypothesis probe `{name}`");
        m.activity_controls(&a, &what);
        let item = match m.probe(&a) {
            Ok((kind, mut notes)) => {
                if a.pauses.is_some() {
                    notes.push(
                        "its `pauses` are not kept: the hypothesis is sampled without a gap".into(),
                    );
                }
                Item::Mapped(Probe {
                    name: probe_names.unique(&literal(&name)),
                    source: format!("Chaos Toolkit's {what}"),
                    kind,
                    notes,
                })
            }
            Err(reason) => Item::Skipped(m.skip(what, &a, reason)),
        };
        steady_state.push(item);
    }

    let mut step_names = Namer::default();
    let mut steps = Vec::new();
    for (i, raw) in experiment.method.iter().enumerate() {
        let a = resolve(raw, format!("method[{i}]"))?;
        let name = a.name.clone().unwrap_or_default();
        let kind = a.kind.clone().unwrap_or_default();
        let what = format!("method {kind} `{name}`");
        m.activity_controls(&a, &what);
        match m.action(&a) {
            Ok((run, timeout, notes)) => {
                let pauses = a.pauses.clone().unwrap_or_default();
                let sleep = |m: &mut Mapper, names: &mut Namer, when: &str, v: &Option<Value>| {
                    m.pause(v, when, &name, &what, names).map(|p| match p {
                        Err(skipped) => Item::Skipped(skipped),
                        Ok(p) => Item::Mapped(Step {
                            name: p.name,
                            source: p.source,
                            kind: StepKind::Action {
                                run: p.run,
                                timeout: p.timeout,
                            },
                            notes: Vec::new(),
                        }),
                    })
                };
                steps.extend(sleep(&mut m, &mut step_names, "before", &pauses.before));
                steps.push(Item::Mapped(Step {
                    name: step_names.unique(&literal(&name)),
                    source: format!("Chaos Toolkit's {what}"),
                    kind: StepKind::Action { run, timeout },
                    notes,
                }));
                steps.extend(sleep(&mut m, &mut step_names, "after", &pauses.after));
            }
            Err(reason) => steps.push(Item::Skipped(m.skip(what, &a, reason))),
        }
    }
    if !steps.iter().any(|s| matches!(s, Item::Mapped(_))) {
        // A scenario has steps; with none of the method's, a person does the method and says so.
        let skipped: Vec<String> = steps
            .iter()
            .filter_map(|s| match s {
                Item::Skipped(u) => Some(u.what.clone()),
                Item::Mapped(_) => None,
            })
            .collect();
        let prompt = if skipped.is_empty() {
            "The experiment has no method: do the turbulence by hand, then confirm".to_string()
        } else {
            format!(
                "Do by hand what was not imported ({}), then confirm",
                skipped.join(", ")
            )
        };
        steps.push(Item::Mapped(Step {
            name: "the method, by hand".into(),
            source: "no activity of the method could be imported".into(),
            kind: StepKind::Manual {
                prompt: literal(&prompt),
            },
            notes: Vec::new(),
        }));
    }

    let mut teardown_names = Namer::default();
    let mut teardown = Vec::new();
    for (i, raw) in experiment.rollbacks.iter().enumerate() {
        let a = resolve(raw, format!("rollbacks[{i}]"))?;
        let name = a.name.clone().unwrap_or_default();
        let kind = a.kind.clone().unwrap_or_default();
        let what = format!("rollback {kind} `{name}`");
        m.activity_controls(&a, &what);
        match m.rollback(&a) {
            Ok((run, notes)) => {
                let pauses = a.pauses.clone().unwrap_or_default();
                let sleep = |m: &mut Mapper, names: &mut Namer, when: &str, v: &Option<Value>| {
                    m.pause(v, when, &name, &what, names).map(|p| match p {
                        Err(skipped) => Item::Skipped(skipped),
                        Ok(p) => Item::Mapped(Teardown {
                            name: p.name,
                            source: p.source,
                            run: p.run,
                            notes: Vec::new(),
                        }),
                    })
                };
                teardown.extend(sleep(&mut m, &mut teardown_names, "before", &pauses.before));
                teardown.push(Item::Mapped(Teardown {
                    name: teardown_names.unique(&literal(&name)),
                    source: format!("Chaos Toolkit's {what}"),
                    run,
                    notes,
                }));
                teardown.extend(sleep(&mut m, &mut teardown_names, "after", &pauses.after));
            }
            Err(reason) => teardown.push(Item::Skipped(m.skip(what, &a, reason))),
        }
    }

    let variables = m.variables(experiment);
    let mut notes = Vec::new();
    if experiment.runtime.is_some() {
        notes.push(
            "Chaos Toolkit's `runtime` (its hypothesis and rollback strategies) is not imported: \
             chaosctl samples the hypothesis without a gap from the first check to the last, and \
             always runs the teardown"
                .to_string(),
        );
    }
    let name = experiment
        .title
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or(fallback_name);
    Ok(Imported {
        name: literal(name),
        description: experiment.description.as_deref().map(literal),
        tags: experiment.tags.iter().map(|t| literal(t)).collect(),
        hypothesis_title: experiment.hypothesis.as_ref().and_then(|h| h.title.clone()),
        steady_state,
        steps,
        teardown,
        unmapped: m.unmapped,
        variables,
        notes,
        required: m.required,
    })
}

struct Mapper {
    names: Names,
    /// The Chaos Toolkit names used by what was imported.
    used: BTreeSet<String>,
    required: BTreeSet<String>,
    unmapped: Vec<Unmapped>,
    /// The secret scopes given to activities that were not imported, with those activities.
    skipped_scopes: std::collections::BTreeMap<String, Vec<String>>,
}

impl Mapper {
    /// Records what a mapped piece uses: only what ends in the file counts.
    fn keep(&mut self, t: &Translated) {
        self.used.extend(t.used.iter().cloned());
        self.required.extend(t.required().map(str::to_string));
    }

    /// A string Chaos Toolkit substitutes into, in the scenario's syntax.
    fn text(&mut self, text: &str, escape: impl Fn(&str) -> String) -> Result<String, String> {
        let t = self.names.translate(text)?;
        self.keep(&t);
        Ok(t.render(escape))
    }

    fn skip(&mut self, what: String, a: &Activity, reason: String) -> Unmapped {
        let unmapped = Unmapped {
            what,
            provider: a
                .provider
                .as_ref()
                .map(Provider::describe)
                .unwrap_or_default(),
            reason,
        };
        let scopes: Vec<&str> = match a.provider.as_ref().and_then(|p| p.secrets.as_ref()) {
            Some(Value::String(scope)) => vec![scope.as_str()],
            Some(Value::Array(scopes)) => scopes.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for scope in scopes {
            self.skipped_scopes
                .entry(scope.to_string())
                .or_default()
                .push(unmapped.what.clone());
        }
        self.unmapped.push(unmapped.clone());
        unmapped
    }

    fn control(&mut self, control: &Control, of: Option<&str>) {
        let name = control.name.as_deref().unwrap_or("?");
        let what = match of {
            Some(of) => format!("control `{name}` of {of}"),
            None => format!("control `{name}`"),
        };
        let provider = match &control.provider {
            Some(p) if p.kind == "python" || p.kind.is_empty() => {
                format!("python module `{}`", p.module.as_deref().unwrap_or("?"))
            }
            Some(p) => p.describe(),
            None => "no provider".into(),
        };
        self.unmapped.push(Unmapped {
            what,
            provider,
            reason: "controls are Python code called around the experiment; chaosctl's report, \
                     events and `--output json` are where its runs are seen"
                .into(),
        });
    }

    fn activity_controls(&mut self, a: &Activity, what: &str) {
        for control in &a.controls {
            self.control(control, Some(what));
        }
    }

    /// A hypothesis probe's kind, with notes on what differs.
    fn probe(&mut self, a: &Activity) -> Result<(ProbeKind, Vec<String>), String> {
        let p = a.provider.as_ref().expect("checked by resolve");
        let Some(tolerance) = &a.tolerance else {
            return Err("it has no tolerance, which a probe of the hypothesis needs".into());
        };
        match p.kind.as_str() {
            "http" => {
                let (mut http, mut notes) = self.http_request(p)?;
                let (status, body_matches, more) = self.http_tolerance(tolerance)?;
                http.status = status;
                http.body_matches = body_matches;
                notes.extend(more);
                Ok((ProbeKind::Http(http), notes))
            }
            "process" => {
                let (run, timeout) = self.command(p)?;
                let (exit, stdout_matches, notes) = self.process_tolerance(tolerance)?;
                Ok((
                    ProbeKind::Command {
                        run,
                        timeout: timeout.unwrap_or(PROBE_TIMEOUT),
                        exit,
                        stdout_matches,
                    },
                    notes,
                ))
            }
            "python" => Err(PYTHON.into()),
            other => Err(format!("chaosctl knows no `{other}` provider")),
        }
    }

    /// A method activity as an action step's command and timeout.
    fn action(&mut self, a: &Activity) -> Result<(Run, Option<Duration>, Vec<String>), String> {
        let p = a.provider.as_ref().expect("checked by resolve");
        if a.background {
            return Err(
                "it runs in the background in Chaos Toolkit; chaosctl runs each step's \
                        action to its end before the next step"
                    .into(),
            );
        }
        if a.kind.as_deref() == Some("probe") {
            return Err(
                "a probe of the method: chaosctl samples only the hypothesis (and \
                        guardrails), without a gap; add it to `steady_state` or `guardrails` if \
                        it must hold"
                    .into(),
            );
        }
        match p.kind.as_str() {
            "process" => {
                let (run, timeout) = self.command(p)?;
                Ok((
                    run,
                    timeout,
                    vec![
                        "a non-zero exit fails the run here (`error`); Chaos Toolkit only warned"
                            .into(),
                    ],
                ))
            }
            "http" => Err(http_action()),
            "python" => Err(PYTHON.into()),
            other => Err(format!("chaosctl knows no `{other}` provider")),
        }
    }

    /// A rollback as a teardown command.
    fn rollback(&mut self, a: &Activity) -> Result<(Run, Vec<String>), String> {
        let p = a.provider.as_ref().expect("checked by resolve");
        match p.kind.as_str() {
            "process" => {
                let (run, timeout) = self.command(p)?;
                let mut notes = Vec::new();
                if let Some(t) = timeout {
                    notes.push(format!(
                        "Chaos Toolkit's timeout ({}) is not kept: a teardown command runs to its end",
                        chaosd::scenario::format_duration(t)
                    ));
                }
                if a.background {
                    notes.push(
                        "it ran in the background in Chaos Toolkit; teardown commands run in order"
                            .into(),
                    );
                }
                Ok((run, notes))
            }
            "http" => Err(http_action()),
            "python" => Err(PYTHON.into()),
            other => Err(format!("chaosctl knows no `{other}` provider")),
        }
    }

    /// A pause as a `sleep` (with a timeout when it is longer than an action's default 5m), or
    /// its place when it is not a number of seconds. `None` for no pause.
    fn pause(
        &mut self,
        seconds: &Option<Value>,
        when: &str,
        name: &str,
        what: &str,
        names: &mut Namer,
    ) -> Option<Result<Pause, Unmapped>> {
        let value = seconds.as_ref()?;
        let d = match value.as_f64() {
            Some(s) if s.is_finite() && s >= 0.0 => Duration::from_secs_f64(s),
            _ => {
                let unmapped = Unmapped {
                    what: format!("`pauses.{when}` of {what}"),
                    provider: "pauses".into(),
                    reason: format!("`{value}` is not a number of seconds"),
                };
                self.unmapped.push(unmapped.clone());
                return Some(Err(unmapped));
            }
        };
        if d.is_zero() {
            return None;
        }
        let timeout = (d >= Duration::from_secs(270)).then(|| d + Duration::from_secs(30));
        let text = python_str(value).unwrap_or_default();
        Some(Ok(Pause {
            name: names.unique(&literal(&format!("pause {when} {name}"))),
            source: format!("the `pauses.{when}` of Chaos Toolkit's {what}"),
            run: Run::Argv(vec!["sleep".into(), text]),
            timeout,
        }))
    }

    /// A `process` provider's command line, as Chaos Toolkit builds it: `path arguments` through
    /// a shell when the arguments are a string, else `path` and each argument (a mapping's keys
    /// and values in turn), leaving out empty ones.
    fn command(&mut self, p: &Provider) -> Result<(Run, Option<Duration>), String> {
        let path = p
            .path
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or("a process provider without `path`")?;
        let timeout = seconds(p.timeout.as_ref())?;
        let program = literal(path);
        let items: Vec<&Value> = match &p.arguments {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) if s.trim().is_empty() => Vec::new(),
            Some(Value::String(s)) => {
                let args = self.text(s, str::to_string)?;
                return Ok((Run::Shell(format!("{program} {args}")), timeout));
            }
            Some(Value::Array(items)) => items.iter().collect(),
            Some(Value::Object(map)) => {
                return {
                    let mut argv = vec![program];
                    for (k, v) in map {
                        for item in [&Value::String(k.clone()), v] {
                            if let Some(arg) = self.argument(item)? {
                                argv.push(arg);
                            }
                        }
                    }
                    Ok((Run::Argv(argv), timeout))
                };
            }
            Some(other) => {
                return Err(format!(
                    "its `arguments` (`{other}`) are not a string, list or mapping"
                ));
            }
        };
        let mut argv = vec![program];
        for item in items {
            if let Some(arg) = self.argument(item)? {
                argv.push(arg);
            }
        }
        Ok((Run::Argv(argv), timeout))
    }

    fn argument(&mut self, item: &Value) -> Result<Option<String>, String> {
        match item {
            Value::Null => Ok(None),
            Value::String(s) if s.is_empty() => Ok(None),
            Value::Array(_) | Value::Object(_) => Err(format!(
                "an argument (`{item}`) is a list or mapping, not a word of a command line"
            )),
            scalar => {
                let text = python_str(scalar).unwrap_or_default();
                self.text(&text, str::to_string).map(Some)
            }
        }
    }

    /// An `http` provider's request, as Chaos Toolkit's `requests` call sends it.
    fn http_request(&mut self, p: &Provider) -> Result<(Http, Vec<String>), String> {
        let url = p
            .url
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or("an http provider without `url`")?;
        let mut notes = Vec::new();
        if p.verify_tls == Some(false) && url.trim_start().starts_with("https") {
            return Err(
                "it does not verify the server's certificate (`verify_tls: false`); \
                        chaosctl's http probes always do"
                    .into(),
            );
        }
        let mut url = self.text(url, str::to_string)?;
        let method = p.method.as_deref().unwrap_or("GET").trim().to_uppercase();
        let mut headers = Vec::new();
        for (name, value) in p.headers.iter().flatten() {
            let value = python_str(value)
                .ok_or_else(|| format!("header `{name}` is a list or mapping, not text"))?;
            headers.push((literal(name), self.text(&value, str::to_string)?));
        }
        let json = p
            .headers
            .iter()
            .flatten()
            .any(|(k, v)| k == "Content-Type" && v.as_str() == Some("application/json"));
        let mut body = None;
        match &p.arguments {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) if map.is_empty() => {}
            Some(args) if method == "GET" => {
                let query = self.form(args)?;
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&query);
            }
            Some(args) if json => body = Some(self.json_text(args)?),
            Some(Value::String(s)) => body = Some(self.text(s, str::to_string)?),
            Some(args) => {
                body = Some(self.form(args)?);
                if !p
                    .headers
                    .iter()
                    .flatten()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                {
                    headers.push((
                        "Content-Type".into(),
                        "application/x-www-form-urlencoded".into(),
                    ));
                }
            }
        }
        let timeout = seconds(p.timeout.as_ref())?;
        if timeout.is_none() {
            notes.push(format!(
                "no timeout in Chaos Toolkit (it waited as long as it took); {} here",
                chaosd::scenario::format_duration(PROBE_TIMEOUT)
            ));
        }
        if let Some(n) = p
            .max_retries
            .as_ref()
            .and_then(Value::as_u64)
            .filter(|n| *n > 0)
        {
            notes.push(format!(
                "Chaos Toolkit retried a failed connection {n} times; here each sample is one request"
            ));
        }
        Ok((
            Http {
                url,
                method,
                headers,
                body,
                timeout: timeout.unwrap_or(PROBE_TIMEOUT),
                ..Http::default()
            },
            notes,
        ))
    }

    /// `k=v&k=v`, form-encoded as `requests` encodes `params` and `data` mappings.
    fn form(&mut self, args: &Value) -> Result<String, String> {
        let Value::Object(map) = args else {
            return Err(format!(
                "its `arguments` (`{args}`) are not a mapping of names to values"
            ));
        };
        let mut pairs = Vec::new();
        for (key, value) in map {
            let values: Vec<&Value> = match value {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for value in values {
                if value.is_null() {
                    continue;
                }
                let text = python_str(value)
                    .ok_or_else(|| format!("argument `{key}` is a mapping, not a value"))?;
                let value = self.text(&text, form_encode)?;
                pairs.push(format!("{}={value}", literal(&form_encode(key))));
            }
        }
        Ok(pairs.join("&"))
    }

    /// The arguments as a JSON body, substituted inside its strings as Chaos Toolkit does.
    fn json_text(&mut self, v: &Value) -> Result<String, String> {
        Ok(match v {
            Value::String(s) => format!("\"{}\"", self.text(s, json_inner)?),
            Value::Array(items) => {
                let mut parts = Vec::new();
                for item in items {
                    parts.push(self.json_text(item)?);
                }
                format!("[{}]", parts.join(", "))
            }
            Value::Object(map) => {
                let mut parts = Vec::new();
                for (k, item) in map {
                    parts.push(format!(
                        "\"{}\": {}",
                        literal(&json_inner(k)),
                        self.json_text(item)?
                    ));
                }
                format!("{{{}}}", parts.join(", "))
            }
            scalar => scalar.to_string(),
        })
    }

    /// An http probe's tolerance as statuses and a body regex.
    fn http_tolerance(&mut self, tolerance: &Value) -> Result<HttpExpectation, String> {
        let statuses = |codes: &[Value]| -> Result<Vec<String>, String> {
            let mut out = Vec::new();
            for code in codes {
                match code.as_u64() {
                    Some(c @ 100..=599) => out.push(c.to_string()),
                    _ => {
                        return Err(format!(
                            "tolerance `{tolerance}` is not a list of HTTP statuses"
                        ));
                    }
                }
            }
            if out.is_empty() {
                return Err("an empty list of statuses allows nothing".into());
            }
            Ok(out)
        };
        match tolerance {
            Value::Number(_) => Ok((statuses(std::slice::from_ref(tolerance))?, None, Vec::new())),
            Value::Array(codes) => Ok((statuses(codes)?, None, Vec::new())),
            Value::Object(t) => match t.get("type").and_then(Value::as_str) {
                Some("range") => {
                    let target = t.get("target").and_then(Value::as_str);
                    if target != Some("status") {
                        return Err(format!(
                            "a `range` over {}: chaosctl compares an http answer's status, body text and latency",
                            target.map_or("the whole answer".to_string(), |t| format!("`{t}`"))
                        ));
                    }
                    let (lo, hi) = range(t)?;
                    Ok((status_range(lo, hi)?, None, Vec::new()))
                }
                Some("regex") => match t.get("target").and_then(Value::as_str) {
                    Some("body") => Ok((Vec::new(), Some(self.regex(t)?), Vec::new())),
                    target => Err(format!(
                        "a `regex` over {}: chaosctl matches an http answer's body",
                        target.map_or("the whole answer".to_string(), |t| format!("`{t}`"))
                    )),
                },
                Some("jsonpath") => Err("a `jsonpath` tolerance: chaosctl matches an http body with a regex (`body_matches`) or text (`body_contains`), not JSON paths".into()),
                Some("probe") => Err(format!(
                    "its tolerance is itself a probe ({})",
                    provider_of(tolerance)
                )),
                other => Err(format!("tolerance type `{}` is not one of Chaos Toolkit's", other.unwrap_or("?"))),
            },
            other => Err(format!(
                "tolerance `{other}` compares the whole http answer, which is never equal to it"
            )),
        }
    }

    /// A command probe's tolerance as an exit code and a stdout regex.
    fn process_tolerance(
        &mut self,
        tolerance: &Value,
    ) -> Result<(i64, Option<String>, Vec<String>), String> {
        let several = || {
            Err(format!(
                "tolerance `{tolerance}` allows several exit codes; a command probe expects one"
            ))
        };
        match tolerance {
            Value::Number(n) => n
                .as_i64()
                .map(|code| (code, None, Vec::new()))
                .ok_or_else(|| format!("tolerance `{n}` is not an exit code")),
            Value::Array(codes) => match codes.as_slice() {
                [code] => self.process_tolerance(code),
                _ => several(),
            },
            Value::Object(t) => match t.get("type").and_then(Value::as_str) {
                Some("range") if t.get("target").and_then(Value::as_str) == Some("status") => {
                    let (lo, hi) = range(t)?;
                    if lo.ceil() == hi.floor() {
                        Ok((lo.ceil() as i64, None, Vec::new()))
                    } else {
                        several()
                    }
                }
                Some("regex") if t.get("target").and_then(Value::as_str) == Some("stdout") => Ok((
                    0,
                    Some(self.regex(t)?),
                    vec!["Chaos Toolkit matched the output whatever the exit code; here the command must also exit 0".into()],
                )),
                Some(kind @ ("range" | "regex")) => Err(format!(
                    "a `{kind}` over {}: a command probe checks the exit code and stdout",
                    t.get("target")
                        .and_then(Value::as_str)
                        .map_or("the whole result".to_string(), |t| format!("`{t}`"))
                )),
                Some("jsonpath") => Err("a `jsonpath` tolerance: a command probe matches stdout with a regex (`stdout_matches`), not JSON paths".into()),
                Some("probe") => Err(format!(
                    "its tolerance is itself a probe ({})",
                    provider_of(tolerance)
                )),
                other => Err(format!("tolerance type `{}` is not one of Chaos Toolkit's", other.unwrap_or("?"))),
            },
            other => Err(format!(
                "tolerance `{other}` compares the whole result of the process, which is never equal to it"
            )),
        }
    }

    /// A regex tolerance's pattern, which chaosctl's regex engine must read.
    fn regex(&mut self, t: &serde_json::Map<String, Value>) -> Result<String, String> {
        let pattern = t
            .get("pattern")
            .and_then(Value::as_str)
            .ok_or("a `regex` tolerance without a `pattern`")?;
        let translated = self.names.translate(pattern)?;
        if let Err(err) = agent::spec::Pattern::new(&translated.with_defaults()) {
            return Err(format!(
                "its regex `{pattern}` is not one chaosctl reads (Rust's regex syntax: no look-around or back-references): {}",
                agent::spec::Pattern::error_detail(&err)
            ));
        }
        self.keep(&translated);
        Ok(translated.render(str::to_string))
    }

    /// Comment lines on the configuration and secrets the file uses (and the secrets it does
    /// not): how each is given now. Secrets' values are never written.
    fn variables(&self, experiment: &Experiment) -> Vec<String> {
        let mut lines = Vec::new();
        for (name, (binding, origin)) in &self.names.bindings {
            let used = self.used.contains(name);
            match (origin, used) {
                (Origin::Configuration, false) => continue,
                (Origin::Configuration, true) => lines.push(match binding {
                    Binding::Value(v) if v.contains('}') => format!("`{name}`: its value is written in place"),
                    Binding::Value(_) => format!(
                        "`{name}`: `${{{name}:-VALUE}}` with the experiment's value; `--var {name}=...` overrides it"
                    ),
                    Binding::Env { key, default: Some(_) } => format!(
                        "`{name}`: the environment variable `{key}` (`${{{key}:-DEFAULT}}`), with the experiment's default"
                    ),
                    Binding::Env { key, default: None } => format!(
                        "`{name}`: the environment variable `{key}` (`${{{key}}}`), required: set it or pass `--var {key}=...`"
                    ),
                    Binding::Withheld | Binding::Unusable(_) => continue,
                }),
                (Origin::Secret { scope }, used) => {
                    let how = match binding {
                        Binding::Env { key, .. } => format!(
                            "read from the environment variable `{key}` (`${{{key}}}`), as in Chaos Toolkit"
                        ),
                        _ => {
                            let from = experiment
                                .secrets
                                .get(scope)
                                .and_then(|s| s.get(name))
                                .and_then(|v| v.get("type"))
                                .and_then(Value::as_str)
                                .map_or("written in the experiment".to_string(), |t| format!("from `{t}`"));
                            format!("its value ({from}) is not copied: pass `--var {name}=VALUE` (`${{{name}}}`)")
                        }
                    };
                    if used {
                        lines.push(format!("secret `{name}` (scope `{scope}`): {how}"));
                    } else if let Some(whats) = self.skipped_scopes.get(scope) {
                        lines.push(format!(
                            "secret `{name}` (scope `{scope}`): given to {}, not imported",
                            whats.join(", ")
                        ));
                    } else {
                        lines.push(format!(
                            "secret `{name}` (scope `{scope}`): not used by anything imported"
                        ));
                    }
                }
            }
        }
        lines
    }
}

/// An http probe's statuses and body regex, and notes on what differs.
type HttpExpectation = (Vec<String>, Option<String>, Vec<String>);

/// A pause, as a step or teardown entry that sleeps.
struct Pause {
    name: String,
    source: String,
    run: Run,
    timeout: Option<Duration>,
}

/// Hands out names unique within one list: `name`, `name (2)`, ...
#[derive(Default)]
struct Namer {
    seen: BTreeSet<String>,
}

impl Namer {
    fn unique(&mut self, name: &str) -> String {
        let mut candidate = name.to_string();
        let mut n = 1;
        while !self.seen.insert(candidate.clone()) {
            n += 1;
            candidate = format!("{name} ({n})");
        }
        candidate
    }
}

fn http_action() -> String {
    "an http action: chaosctl's actions run commands; write it as one (e.g. `run: [curl, -fsS, URL]`)"
        .into()
}

/// The provider of a mapping holding one (`{type: probe, provider: ...}`), described.
fn provider_of(value: &Value) -> String {
    value
        .get("provider")
        .cloned()
        .and_then(|p| serde_json::from_value::<Provider>(p).ok())
        .map_or_else(|| "no provider".into(), |p| p.describe())
}

/// Seconds, a number or `[connect, read]` (their sum bounds one request).
fn seconds(v: Option<&Value>) -> Result<Option<Duration>, String> {
    let total = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::Array(parts)) => parts.iter().map(Value::as_f64).sum(),
        Some(_) => None,
    };
    match total {
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(0.0) => Ok(None),
        _ => Err(format!(
            "its timeout `{}` is not a number of seconds",
            v.map(Value::to_string).unwrap_or_default()
        )),
    }
}

/// A `range` tolerance's two bounds.
fn range(t: &serde_json::Map<String, Value>) -> Result<(f64, f64), String> {
    match t.get("range").and_then(Value::as_array).map(Vec::as_slice) {
        Some([lo, hi]) => match (lo.as_f64(), hi.as_f64()) {
            (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
            _ => Err("a `range` whose bounds are not two numbers, low then high".into()),
        },
        _ => Err("a `range` tolerance needs `range: [low, high]`".into()),
    }
}

/// The statuses from `lo` to `hi`, whole classes written `2xx`.
fn status_range(lo: f64, hi: f64) -> Result<Vec<String>, String> {
    let lo = (lo.ceil() as i64).max(100);
    let hi = (hi.floor() as i64).min(599);
    if lo > hi {
        return Err("a status `range` holding no HTTP status (100 to 599)".into());
    }
    let mut out = Vec::new();
    for class in 1..=5 {
        let (first, last) = (class * 100, class * 100 + 99);
        if lo <= first && last <= hi {
            out.push(format!("{class}xx"));
        } else {
            out.extend((lo.max(first)..=hi.min(last)).map(|c| c.to_string()));
        }
    }
    Ok(out)
}

/// `application/x-www-form-urlencoded`, as Python's `urlencode` writes it.
fn form_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The inside of a JSON string (no quotes).
fn json_inner(text: &str) -> String {
    let quoted = serde_json::to_string(text).expect("a string serializes");
    quoted[1..quoted.len() - 1].to_string()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;

    fn mapper() -> Mapper {
        let configuration = serde_json::from_value(json!({
            "base": "http://127.0.0.1:8080",
            "word": "a b&c",
        }))
        .unwrap();
        let secrets = serde_json::from_value(json!({"s": {"token": "hunter2"}})).unwrap();
        Mapper {
            names: Names::new(&configuration, &secrets),
            used: BTreeSet::new(),
            required: BTreeSet::new(),
            unmapped: Vec::new(),
            skipped_scopes: Default::default(),
        }
    }

    fn check_http(tolerance: Value, expected: Result<(&[&str], Option<&str>), &str>) {
        let got = mapper().http_tolerance(&tolerance);
        match (got, expected) {
            (Ok((status, body, _)), Ok((want_status, want_body))) => {
                assert_eq!(status, want_status, "{tolerance}");
                assert_eq!(body.as_deref(), want_body, "{tolerance}");
            }
            (Err(err), Err(fragment)) => assert!(err.contains(fragment), "{tolerance}: {err}"),
            (got, want) => panic!("{tolerance}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn http_tolerances_become_statuses_and_a_body_regex() {
        check_http(json!(200), Ok((&["200"], None)));
        check_http(json!([200, 201]), Ok((&["200", "201"], None)));
        // Two codes are two allowed statuses, not a range: Chaos Toolkit looks the status up.
        check_http(json!([200, 204]), Ok((&["200", "204"], None)));
        check_http(
            json!({"type": "range", "range": [200, 299], "target": "status"}),
            Ok((&["2xx"], None)),
        );
        check_http(
            json!({"type": "range", "range": [200.5, 203], "target": "status"}),
            Ok((&["201", "202", "203"], None)),
        );
        check_http(
            json!({"type": "range", "range": [190, 301], "target": "status"}),
            Ok((
                &[
                    "190", "191", "192", "193", "194", "195", "196", "197", "198", "199", "2xx",
                    "300", "301",
                ],
                None,
            )),
        );
        check_http(
            json!({"type": "regex", "pattern": "ok ${word}", "target": "body"}),
            Ok((&[], Some("ok ${word:-a b&c}"))),
        );
        check_http(json!(700), Err("not a list of HTTP statuses"));
        check_http(json!(true), Err("compares the whole http answer"));
        check_http(
            json!({"type": "range", "range": [1, 5], "target": "body"}),
            Err("a `range` over `body`"),
        );
        check_http(
            json!({"type": "regex", "pattern": "x", "target": "headers"}),
            Err("a `regex` over `headers`"),
        );
        check_http(
            json!({"type": "regex", "pattern": "(?<=a)b", "target": "body"}),
            Err("no look-around"),
        );
        check_http(
            json!({"type": "jsonpath", "path": "$.a", "target": "body"}),
            Err("not JSON paths"),
        );
        check_http(
            json!({"type": "probe", "name": "t", "provider": {"type": "python", "module": "m", "func": "f"}}),
            Err("a probe (python provider: module `m`, function `f`)"),
        );
    }

    #[test]
    fn process_tolerances_become_an_exit_code_and_a_stdout_regex() {
        let check = |tolerance: Value, expected: Result<(i64, Option<&str>), &str>| {
            let got = mapper().process_tolerance(&tolerance);
            match (got, expected) {
                (Ok((exit, stdout, _)), Ok((want_exit, want_stdout))) => {
                    assert_eq!(
                        (exit, stdout.as_deref()),
                        (want_exit, want_stdout),
                        "{tolerance}"
                    )
                }
                (Err(err), Err(fragment)) => {
                    assert!(err.contains(fragment), "{tolerance}: {err}")
                }
                (got, want) => panic!("{tolerance}: got {got:?}, want {want:?}"),
            }
        };
        check(json!(0), Ok((0, None)));
        check(json!([3]), Ok((3, None)));
        check(
            json!({"type": "range", "range": [1, 1], "target": "status"}),
            Ok((1, None)),
        );
        check(
            json!({"type": "regex", "pattern": "^up", "target": "stdout"}),
            Ok((0, Some("^up"))),
        );
        check(json!([0, 1]), Err("several exit codes"));
        check(
            json!({"type": "range", "range": [0, 2], "target": "status"}),
            Err("several exit codes"),
        );
        check(
            json!({"type": "regex", "pattern": "x", "target": "stderr"}),
            Err("a `regex` over `stderr`"),
        );
        check(json!("ok"), Err("compares the whole result"));
    }

    #[test]
    fn command_lines_are_built_as_chaos_toolkit_builds_them() {
        let check = |provider: Value, expected: Run| {
            let p: Provider = serde_json::from_value(provider.clone()).unwrap();
            let (run, _) = mapper().command(&p).unwrap();
            assert_eq!(run, expected, "{provider}");
        };
        let argv = |words: &[&str]| Run::Argv(words.iter().map(|w| w.to_string()).collect());
        check(json!({"type": "process", "path": "true"}), argv(&["true"]));
        check(
            json!({"type": "process", "path": "grep", "arguments": "-q ${word} f"}),
            Run::Shell("grep -q ${word:-a b&c} f".into()),
        );
        check(
            json!({"type": "process", "path": "ls", "arguments": ["-l", "", null, 3, true]}),
            argv(&["ls", "-l", "3", "True"]),
        );
        check(
            json!({"type": "process", "path": "kubectl", "arguments": {"--namespace": "x", "--all": ""}}),
            argv(&["kubectl", "--all", "--namespace", "x"]),
        );
        check(
            json!({"type": "process", "path": "/opt/${x}/run"}),
            argv(&["/opt/$${x}/run"]),
        );
        let p: Provider = serde_json::from_value(
            json!({"type": "process", "path": "x", "arguments": [["nested"]]}),
        )
        .unwrap();
        assert!(
            mapper()
                .command(&p)
                .unwrap_err()
                .contains("a list or mapping")
        );
    }

    #[test]
    fn http_arguments_become_a_query_or_a_body() {
        let request = |provider: Value| {
            let p: Provider = serde_json::from_value(provider).unwrap();
            mapper().http_request(&p).unwrap().0
        };
        let get = request(
            json!({"type": "http", "url": "${base}/a?x=1", "arguments": {"q": "${word}", "n": 2}}),
        );
        assert_eq!(
            get.url,
            "${base:-http://127.0.0.1:8080}/a?x=1&n=2&q=${word:-a+b%26c}"
        );
        assert_eq!(get.body, None);
        let json = request(json!({
            "type": "http", "url": "http://h/e", "method": "post",
            "headers": {"Content-Type": "application/json"},
            "arguments": {"name": "say \"${word}\"", "n": [1, true]}
        }));
        assert_eq!(json.method, "POST");
        assert_eq!(
            json.body.as_deref(),
            Some(r#"{"n": [1, true], "name": "say \"${word:-a b&c}\""}"#)
        );
        let form = request(
            json!({"type": "http", "url": "http://h/e", "method": "PUT", "arguments": {"k": "v w"}, "timeout": [1, 2.5]}),
        );
        assert_eq!(form.body.as_deref(), Some("k=v+w"));
        assert!(form.headers.contains(&(
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into()
        )));
        assert_eq!(form.timeout, Duration::from_millis(3500));
        let p: Provider = serde_json::from_value(
            json!({"type": "http", "url": "https://h/", "verify_tls": false}),
        )
        .unwrap();
        assert!(
            mapper()
                .http_request(&p)
                .unwrap_err()
                .contains("verify_tls")
        );
    }

    fn experiment(value: Value) -> Experiment {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn refs_resolve_and_experiments_chaos_toolkit_refuses_are_refused() {
        let action =
            json!({"type": "action", "name": "a", "provider": {"type": "process", "path": "true"}});
        let imported = map(&experiment(json!({"method": [action, {"ref": "a"}]})), "x").unwrap();
        let names: Vec<&str> = imported
            .steps
            .iter()
            .filter_map(|s| match s {
                Item::Mapped(s) => Some(s.name.as_str()),
                Item::Skipped(_) => None,
            })
            .collect();
        assert_eq!(names, ["a", "a (2)"]);
        assert_eq!(imported.name, "x");
        for (bad, fragment) in [
            (json!({"method": [{"ref": "nope"}]}), "refers to `nope`"),
            (
                json!({"method": [{"type": "action", "name": "a"}]}),
                "method[0] has no `provider`",
            ),
            (
                json!({"rollbacks": [{"type": "step", "name": "a", "provider": {"type": "process", "path": "x"}}]}),
                "rollbacks[0] has type `step`",
            ),
        ] {
            let err = map(&experiment(bad.clone()), "x").unwrap_err();
            assert!(err.contains(fragment), "{bad}: {err}");
        }
    }

    #[test]
    fn a_method_with_nothing_to_import_becomes_a_step_a_person_does() {
        let imported = map(
            &experiment(json!({
                "title": "t",
                "method": [{"type": "action", "name": "kill-it", "provider": {"type": "python", "module": "m", "func": "f"}}]
            })),
            "x",
        )
        .unwrap();
        let text = super::super::render::scenario(&imported, "e.json");
        let s = chaosd::scenario::load_str(Path::new("i.yaml"), &text, &Default::default())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(s.steps.len(), 1);
        assert!(text.contains("manual: {prompt: \"Do by hand what was not imported (method action `kill-it`), then confirm\"}"), "{text}");
        assert_eq!(imported.unmapped.len(), 1);
        assert_eq!(
            imported.unmapped[0].to_string(),
            format!(
                "method action `kill-it` (python provider: module `m`, function `f`): {PYTHON}"
            )
        );
    }

    /// The fixtures, written as Chaos Toolkit's documentation writes experiments: what maps
    /// validates, what does not is listed, and no secret's value is in the file.
    #[test]
    fn the_fixtures_map_validate_and_keep_secrets_out() {
        let fixtures = [
            (
                "service-health.json",
                include_str!("../../../../tests/fixtures/chaostoolkit/service-health.json"),
                vec![
                    "control `tracing`",
                    "hypothesis probe `all-pods-running`",
                    "method action `terminate-service-pods`",
                    "rollback action `scale-service-back`",
                ],
                vec![("SERVICE_TOKEN", "t")],
                "not-a-real-password-3f9a",
            ),
            (
                "dns-failover.yaml",
                include_str!("../../../../tests/fixtures/chaostoolkit/dns-failover.yaml"),
                vec![
                    "configuration `current_leader`",
                    "hypothesis probe `leader-is-known`",
                    "hypothesis probe `exit-code-in-range`",
                    "hypothesis probe `leader-is-stable`",
                    "method action `flood-the-resolver`",
                    "method action `tell-the-api`",
                    "method probe `api-during-outage`",
                ],
                vec![("api_key", "k")],
                "secret/data/api",
            ),
        ];
        for (file, text, unmapped, vars, secret) in fixtures {
            let e = super::super::chaostoolkit::parse(Path::new(file), text).unwrap();
            let imported = map(&e, "x").unwrap();
            let whats: Vec<&str> = imported.unmapped.iter().map(|u| u.what.as_str()).collect();
            assert_eq!(whats, unmapped, "{file}");
            let scenario = super::super::render::scenario(&imported, file);
            assert!(!scenario.contains(secret), "{file}:\n{scenario}");
            let opts = chaosd::scenario::LoadOptions {
                vars: vars
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            };
            let s = chaosd::scenario::load_str(Path::new("i.yaml"), &scenario, &opts)
                .unwrap_or_else(|e| panic!("{file}: {e}\n{scenario}"));
            assert!(!s.steps.is_empty() && !s.steady_state.is_empty(), "{file}");
            for u in &imported.unmapped {
                assert!(
                    scenario.contains(&format!("# Not imported: {u}.")) || u.what.starts_with("co"),
                    "{file}: {u}"
                );
            }
        }
    }
}
