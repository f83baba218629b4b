//! Chaos Toolkit's experiment format, as its own documentation writes it (JSON or YAML): the keys
//! `chaosctl import chaostoolkit` reads, and nothing about how they map.
//!
//! Keys are kept loose (`Option`, `serde_json::Value`) where Chaos Toolkit accepts several shapes
//! (a tolerance is a number, a list or a mapping; arguments are a string, a list or a mapping), so
//! that a valid experiment always parses and the mapper decides, per activity, what it can take.
//! Keys chaosctl has no use for (`version`, `extensions`, `contributions`) are ignored.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// A whole experiment.
#[derive(Debug, Default, Deserialize)]
pub struct Experiment {
    pub title: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// `name: value`, or `name: {type: env, key: VAR, default: ...}`, or a dynamic value
    /// (`{type: probe, provider: ...}`).
    #[serde(default)]
    pub configuration: BTreeMap<String, Value>,
    /// Scopes of `name: value` (or `{type: env|vault, ...}`); activities name the scopes they use.
    #[serde(default)]
    pub secrets: BTreeMap<String, BTreeMap<String, Value>>,
    #[serde(rename = "steady-state-hypothesis")]
    pub hypothesis: Option<Hypothesis>,
    #[serde(default)]
    pub method: Vec<Activity>,
    #[serde(default)]
    pub rollbacks: Vec<Activity>,
    #[serde(default)]
    pub controls: Vec<Control>,
    /// How Chaos Toolkit schedules the hypothesis and rollbacks (`runtime.hypothesis.strategy`).
    pub runtime: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Hypothesis {
    pub title: Option<String>,
    #[serde(default)]
    pub probes: Vec<Activity>,
    #[serde(default)]
    pub controls: Vec<Control>,
}

/// A probe or an action, or `{ref: NAME}` to one declared earlier.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Activity {
    /// `probe` or `action`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub name: Option<String>,
    pub provider: Option<Provider>,
    /// What a hypothesis probe's output must be: `true`, `200`, `[200, 201]`, or
    /// `{type: range|regex|jsonpath|probe, ...}`.
    pub tolerance: Option<Value>,
    pub pauses: Option<Pauses>,
    #[serde(default)]
    pub background: bool,
    #[serde(default)]
    pub controls: Vec<Control>,
    #[serde(rename = "ref")]
    pub reference: Option<String>,
}

/// Where an activity's work is done. One struct for every `type`: the mapper reads the keys of
/// the type it finds.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Provider {
    /// `http`, `process` or `python`.
    #[serde(rename = "type", default)]
    pub kind: String,
    // http
    pub url: Option<String>,
    pub method: Option<String>,
    pub headers: Option<BTreeMap<String, Value>>,
    /// Seconds: a number, or `[connect, read]` for http.
    pub timeout: Option<Value>,
    pub verify_tls: Option<bool>,
    pub max_retries: Option<Value>,
    // http (query or body), process (command line), python (keyword arguments)
    pub arguments: Option<Value>,
    // process
    pub path: Option<String>,
    // python
    pub module: Option<String>,
    pub func: Option<String>,
    /// The secret scopes a python provider is given.
    pub secrets: Option<Value>,
}

/// Seconds to wait before and after an activity.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Pauses {
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// A control: Python code called around the experiment or an activity.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Control {
    pub name: Option<String>,
    pub provider: Option<Provider>,
}

impl Provider {
    /// How the provider reads in a list of what was not imported: `python: module
    /// `chaosk8s.pod.actions`, function `terminate_pods``.
    pub fn describe(&self) -> String {
        match self.kind.as_str() {
            "python" => {
                let module = self.module.as_deref().unwrap_or("?");
                match &self.func {
                    Some(func) => format!("python provider: module `{module}`, function `{func}`"),
                    None => format!("python provider: module `{module}`"),
                }
            }
            "http" => format!(
                "http provider: {} {}",
                self.method.as_deref().unwrap_or("GET").to_uppercase(),
                self.url.as_deref().unwrap_or("?")
            ),
            "process" => format!(
                "process provider: `{}`",
                self.path.as_deref().unwrap_or("?")
            ),
            other => format!("provider of type `{other}`"),
        }
    }
}

/// Reads an experiment: JSON for `.json`, YAML otherwise (Chaos Toolkit reads both).
pub fn parse(path: &Path, text: &str) -> Result<Experiment, String> {
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if json {
        serde_json::from_str(text).map_err(|err| format!("not a Chaos Toolkit experiment: {err}"))
    } else {
        serde_saphyr::from_str(text).map_err(|err| format!("not a Chaos Toolkit experiment: {err}"))
    }
}
