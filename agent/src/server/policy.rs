//! The policy file (`--policy FILE`): what this agent accepts, beyond what it can do. A request
//! outside it is answered 403 with the reason, and nothing of it is applied.
//!
//! ```yaml
//! # Every key is optional: a key left out sets no limit of its kind (except command_probes).
//! kinds: [pause, kill, fill_disk]   # fault kinds accepted
//! processes:                        # kill and pause
//!   selectors:                      # regexes: a selector's text (`name`, `pattern`, `pidfile`,
//!                                   # `cgroup`, `unit`, `container`; any key of a combination)
//!     - '^chaos-demo( |$)'          #   must match one (unanchored unless you anchor it)
//!     - '^/run/nginx\.pid$'
//!   pid: false                      # whether bare `pid: N` selectors are accepted (default false)
//! inside:                           # `inside:` of network faults: the same two keys, for the
//!   selectors: ['^shop/']           #   processes whose namespaces a fault may enter
//! fill_paths: [/mnt/chaos]          # fill_disk only in these directories or below them
//! interfaces: [eth0]                # network faults only on these interfaces, which they must name
//! ports: [5432, 6379]               # network faults only for these peer ports, which they must list
//! max_duration: 5m                  # the longest hold of a fault (ms, s, m, h); a hold is required
//! max_loss: 50%                     # the highest `loss` share
//! stress:                           # stress faults
//!   max_workers: 2                  #   the most CPU workers (`cores` counted in workers here)
//!   max_memory: 1GiB                #   the most memory held (B, KiB, MiB, GiB, TiB; KB, MB, GB)
//!   memory_margin: 20%              #   of MemTotal kept available beside it (default and least 10%)
//! min_rate: 1mbit                   # the lowest `bandwidth` rate (`kbit`, `mbit`, `MB/s`, ...)
//! dns:                              # dns faults
//!   names: ['*.internal']           #   each name or glob of a fault must fall under one of these
//!   max_delay: 2s                   #   the longest `delay`
//! http:                             # http faults
//!   ports: [8080]                   #   only for these server ports
//!   max_delay: 2s                   #   the longest `delay`
//! command_probes: false             # `command` probes via /v1/probe (default false with a policy)
//! commands:                         # scenario `action`s via /v1/commands: only these programs,
//!   allow: [/usr/local/bin/promote.sh]  #   by absolute path (none without this key, or without a policy)
//! ```
//!
//! Unknown keys are refused when the agent starts (exit 64), so a typo never widens the policy.
//! Without a policy file the agent accepts everything it can do.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::fault::Resolved;
use crate::spec::{FaultKind, FaultSpec, NetScope, ProbeKind, ProcessSelector};

/// The policy, checked and compiled.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    kinds: Option<Vec<FaultKind>>,
    processes: Option<Processes>,
    /// Which processes' namespaces `inside:` may enter.
    inside: Option<Processes>,
    fill_paths: Option<Vec<PathBuf>>,
    interfaces: Option<Vec<String>>,
    ports: Option<Vec<u16>>,
    max_duration: Option<Duration>,
    max_loss: Option<f64>,
    stress: Stress,
    /// The lowest `bandwidth` rate, in bits per second.
    min_rate: Option<u64>,
    dns: Dns,
    http: Http,
    command_probes: bool,
    /// Programs an `action` may run (`/v1/commands`); empty allows none.
    commands: Vec<PathBuf>,
}

/// The `stress` key's limits.
#[derive(Debug, Clone, Copy, Default)]
struct Stress {
    max_workers: Option<u32>,
    max_memory: Option<u64>,
    memory_margin: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStress {
    #[serde(default)]
    max_workers: Option<u32>,
    #[serde(default)]
    max_memory: Option<String>,
    #[serde(default)]
    memory_margin: Option<Share>,
}

/// The `dns` key's limits.
#[derive(Debug, Clone, Default)]
struct Dns {
    /// Globs (lowercase) that every name or glob of a fault must fall under.
    names: Option<Vec<String>>,
    max_delay: Option<Duration>,
}

/// The `http` key's limits.
#[derive(Debug, Clone, Default)]
struct Http {
    ports: Option<Vec<u16>>,
    max_delay: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    max_delay: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    ports: Option<Vec<u16>>,
    #[serde(default)]
    max_delay: Option<String>,
}

#[derive(Debug, Clone)]
struct Processes {
    selectors: Vec<Regex>,
    pid: bool,
}

impl Processes {
    /// Whether `selector` is within these limits, which are the policy's `key` (`processes`,
    /// `inside`).
    fn check(&self, key: &str, selector: &ProcessSelector) -> Result<(), Refusal> {
        let allowed = || {
            let allowed: Vec<&str> = self.selectors.iter().map(Regex::as_str).collect();
            list(&allowed)
        };
        let text = match selector {
            ProcessSelector::Pid(pid) => {
                return if self.pid {
                    Ok(())
                } else {
                    refuse(format!(
                        "process selector pid {pid} is outside the policy (`{key}.pid` is false)"
                    ))
                };
            }
            // A combination selects a subset of what each of its keys selects: one key within
            // the policy is enough.
            ProcessSelector::All(parts) => {
                return if parts.iter().any(|part| self.check(key, part).is_ok()) {
                    Ok(())
                } else {
                    refuse(format!(
                        "no key of process selector {selector} is within the policy's {key}.selectors {}",
                        allowed()
                    ))
                };
            }
            ProcessSelector::Name(name) => name.clone(),
            ProcessSelector::Pattern(pattern) => pattern.clone(),
            ProcessSelector::Pidfile(path) => path.display().to_string(),
            ProcessSelector::Cgroup(text)
            | ProcessSelector::Unit(text)
            | ProcessSelector::Container(text) => text.clone(),
        };
        if self.selectors.iter().any(|re| re.is_match(&text)) {
            Ok(())
        } else {
            refuse(format!(
                "process selector {selector} is outside the policy's {key}.selectors {}",
                allowed()
            ))
        }
    }

    fn parse(key: &str, raw: RawProcesses) -> Result<Processes, String> {
        Ok(Processes {
            selectors: raw
                .selectors
                .iter()
                .map(|s| Regex::new(s).map_err(|err| format!("{key}.selectors `{s}`: {err}")))
                .collect::<Result<_, _>>()?,
            pid: raw.pid,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    kinds: Option<Vec<FaultKind>>,
    #[serde(default)]
    processes: Option<RawProcesses>,
    #[serde(default)]
    inside: Option<RawProcesses>,
    #[serde(default)]
    fill_paths: Option<Vec<PathBuf>>,
    #[serde(default)]
    interfaces: Option<Vec<String>>,
    #[serde(default)]
    ports: Option<Vec<u16>>,
    #[serde(default)]
    max_duration: Option<String>,
    #[serde(default)]
    max_loss: Option<Share>,
    #[serde(default)]
    stress: Option<RawStress>,
    min_rate: Option<String>,
    #[serde(default)]
    dns: Option<RawDns>,
    http: Option<RawHttp>,
    #[serde(default)]
    command_probes: bool,
    #[serde(default)]
    commands: Option<RawCommands>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommands {
    #[serde(default)]
    allow: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcesses {
    #[serde(default)]
    selectors: Vec<String>,
    #[serde(default)]
    pid: bool,
}

/// `50`, `50.5` or `"50%"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Share {
    Number(f64),
    Text(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("policy file `{path}`: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Why a request is outside the policy (the 403's message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Policy::parse(&text).map_err(|message| PolicyError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses and checks a policy's YAML text.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let raw: RawPolicy = if text.trim().is_empty() {
            return Err("the file is empty; leave out --policy to allow everything".to_string());
        } else {
            serde_saphyr::from_str(text).map_err(|err| err.to_string())?
        };
        let processes = raw
            .processes
            .map(|p| Processes::parse("processes", p))
            .transpose()?;
        let inside = raw
            .inside
            .map(|p| Processes::parse("inside", p))
            .transpose()?;
        if let Some(paths) = &raw.fill_paths
            && let Some(bad) = paths.iter().find(|p| !p.is_absolute())
        {
            return Err(format!(
                "fill_paths `{}` is not an absolute path",
                bad.display()
            ));
        }
        let max_duration = raw
            .max_duration
            .as_deref()
            .map(|d| parse_duration(d).map_err(|e| format!("max_duration `{d}`: {e}")))
            .transpose()?;
        let max_loss = raw.max_loss.map(|s| share("max_loss", s)).transpose()?;
        let stress = match raw.stress {
            None => Stress::default(),
            Some(s) => Stress {
                max_workers: s.max_workers,
                max_memory: s
                    .max_memory
                    .as_deref()
                    .map(|t| parse_size(t).map_err(|e| format!("stress.max_memory `{t}`: {e}")))
                    .transpose()?,
                memory_margin: s
                    .memory_margin
                    .map(|s| share("stress.memory_margin", s))
                    .transpose()?,
            },
        };
        let min_rate = raw
            .min_rate
            .as_deref()
            .map(|r| {
                crate::fault::net::bandwidth::parse_rate(r).map_err(|e| format!("min_rate: {e}"))
            })
            .transpose()?;
        let dns = match raw.dns {
            None => Dns::default(),
            Some(d) => Dns {
                names: d
                    .names
                    .map(|names| {
                        names
                            .iter()
                            .map(|n| {
                                crate::fault::net::dns::parse_name_glob(n)
                                    .map_err(|e| format!("dns.names: {e}"))
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .transpose()?,
                max_delay: d
                    .max_delay
                    .as_deref()
                    .map(|t| parse_duration(t).map_err(|e| format!("dns.max_delay `{t}`: {e}")))
                    .transpose()?,
            },
        };
        let http = match raw.http {
            None => Http::default(),
            Some(h) => Http {
                ports: h.ports,
                max_delay: h
                    .max_delay
                    .as_deref()
                    .map(|d| parse_duration(d).map_err(|e| format!("http.max_delay `{d}`: {e}")))
                    .transpose()?,
            },
        };
        let commands = raw.commands.map(|c| c.allow).unwrap_or_default();
        if let Some(bad) = commands.iter().find(|p| !p.is_absolute()) {
            return Err(format!(
                "commands.allow `{}` is not an absolute path; name each program by its full path",
                bad.display()
            ));
        }
        Ok(Policy {
            commands,
            kinds: raw.kinds,
            processes,
            inside,
            fill_paths: raw.fill_paths,
            interfaces: raw.interfaces,
            ports: raw.ports,
            max_duration,
            max_loss,
            stress,
            min_rate,
            dns,
            http,
            command_probes: raw.command_probes,
        })
    }

    /// What `GET /v1/health` tells of this policy.
    pub fn view(&self) -> crate::api::PolicyView {
        crate::api::PolicyView {
            summary: self.summary(),
            kinds: self.kinds.clone(),
        }
    }

    /// A one-line summary for the startup log.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(kinds) = &self.kinds {
            parts.push(format!("kinds {}", list(kinds)));
        }
        if let Some(p) = &self.processes {
            let selectors: Vec<&str> = p.selectors.iter().map(Regex::as_str).collect();
            parts.push(format!(
                "process selectors {} (pid: {})",
                list(&selectors),
                p.pid
            ));
        }
        if let Some(p) = &self.inside {
            let selectors: Vec<&str> = p.selectors.iter().map(Regex::as_str).collect();
            parts.push(format!("inside selectors {}", list(&selectors)));
        }
        if let Some(paths) = &self.fill_paths {
            parts.push(format!("fill_paths {}", paths_list(paths)));
        }
        if let Some(i) = &self.interfaces {
            parts.push(format!("interfaces {}", list(i)));
        }
        if let Some(p) = &self.ports {
            parts.push(format!("ports {}", list(p)));
        }
        if let Some(d) = self.max_duration {
            parts.push(format!("max_duration {}ms", d.as_millis()));
        }
        if let Some(l) = self.max_loss {
            parts.push(format!("max_loss {l}%"));
        }
        if let Some(w) = self.stress.max_workers {
            parts.push(format!("stress.max_workers {w}"));
        }
        if let Some(m) = self.stress.max_memory {
            parts.push(format!("stress.max_memory {m} bytes"));
        }
        if let Some(m) = self.stress.memory_margin {
            parts.push(format!("stress.memory_margin {m}%"));
        }
        if let Some(r) = self.min_rate {
            parts.push(format!(
                "min_rate {}",
                crate::fault::net::bandwidth::format_rate(r)
            ));
        }
        if let Some(n) = &self.dns.names {
            parts.push(format!("dns.names {}", list(n)));
        }
        if let Some(d) = self.dns.max_delay {
            parts.push(format!("dns.max_delay {}ms", d.as_millis()));
        }
        if let Some(p) = &self.http.ports {
            parts.push(format!("http.ports {}", list(p)));
        }
        if let Some(d) = self.http.max_delay {
            parts.push(format!("http.max_delay {}ms", d.as_millis()));
        }
        parts.push(format!("command_probes {}", self.command_probes));
        if !self.commands.is_empty() {
            parts.push(format!("commands {}", paths_list(&self.commands)));
        }
        parts.join("; ")
    }

    /// Whether `spec` is inside the policy (the hold is checked by [`Policy::check_hold`]), as it
    /// resolves on this host now ([`crate::fault::resolve`]; when it cannot be, the plan fails
    /// anyway).
    pub fn check_fault(&self, spec: &FaultSpec) -> Result<(), Refusal> {
        let at = crate::fault::resolve(spec).unwrap_or_default();
        self.check_fault_at(spec, &at)
    }

    /// [`Policy::check_fault`] of `spec` as the caller resolved it, `at`: the same `at` then goes
    /// to the check or the plan, so what the policy allowed is what is done.
    pub fn check_fault_at(&self, spec: &FaultSpec, at: &Resolved) -> Result<(), Refusal> {
        let kind = spec.kind();
        if let Some(kinds) = &self.kinds
            && !kinds.contains(&kind)
        {
            return refuse(format!(
                "`{kind}` faults are outside the policy's kinds {}",
                list(kinds)
            ));
        }
        if let Some(selector) = spec.inside() {
            self.check_inside(selector)?;
        }
        crate::fault::kind_of(spec).check_policy(self, at)
    }

    /// Whether a hold (`None`: until reverted) is within `max_duration`.
    pub fn check_hold(&self, hold: Option<Duration>) -> Result<(), Refusal> {
        let Some(max) = self.max_duration else {
            return Ok(());
        };
        match hold {
            None => refuse(format!(
                "a fault without a hold is outside the policy's max_duration {}ms; give it hold_ms",
                max.as_millis()
            )),
            Some(hold) if hold > max => refuse(format!(
                "hold {}ms is above the policy's max_duration {}ms",
                hold.as_millis(),
                max.as_millis()
            )),
            Some(_) => Ok(()),
        }
    }

    /// Whether a probe may run here: `command` probes only with `command_probes: true`.
    pub fn check_probe(&self, probe: &ProbeKind) -> Result<(), Refusal> {
        if matches!(probe, ProbeKind::Command(_)) && !self.command_probes {
            return refuse(
                "`command` probes are outside the policy (set `command_probes: true` to allow them)"
                    .to_string(),
            );
        }
        Ok(())
    }

    /// Whether an `action` may run `program` here: only a program `commands.allow` names, by the
    /// same absolute path (a shell line runs `/bin/sh`, which must then be listed).
    pub fn check_command(&self, program: &str) -> Result<(), Refusal> {
        if self.commands.iter().any(|p| p.as_os_str() == program) {
            return Ok(());
        }
        if self.commands.is_empty() {
            return refuse(format!(
                "running `{program}` is outside the policy: it allows no commands; list the program under `commands: {{allow: [...]}}` in the agent's policy file"
            ));
        }
        refuse(format!(
            "running `{program}` is outside the policy's commands.allow {}; add its absolute path there",
            paths_list(&self.commands)
        ))
    }

    /// Whether a `bandwidth` rate (bits per second) is at least `min_rate`.
    pub(crate) fn check_rate(&self, rate: u64) -> Result<(), Refusal> {
        use crate::fault::net::bandwidth::format_rate;
        match self.min_rate {
            Some(min) if rate < min => refuse(format!(
                "bandwidth rate {} is below the policy's min_rate {}",
                format_rate(rate),
                format_rate(min)
            )),
            _ => Ok(()),
        }
    }

    /// Whether a `dns` fault's names fall under `dns.names` (a glob of the fault under a glob of
    /// the policy: `*.svc.internal` under `*.internal`) and its delay within `dns.max_delay`.
    pub(crate) fn check_dns(&self, spec: &crate::spec::DnsSpec) -> Result<(), Refusal> {
        use crate::fault::net::dns_responder::glob_match;
        if let Some(allowed) = &self.dns.names
            && let Some(out) = spec
                .names
                .iter()
                .find(|n| !allowed.iter().any(|a| glob_match(a, n)))
        {
            return refuse(format!(
                "dns name `{out}` is outside the policy's dns.names {}",
                list(allowed)
            ));
        }
        match (self.dns.max_delay, spec.delay) {
            (Some(max), Some(delay)) if delay > max => refuse(format!(
                "dns delay {}ms is above the policy's dns.max_delay {}ms",
                delay.as_millis(),
                max.as_millis()
            )),
            _ => Ok(()),
        }
    }

    /// Whether an `http` fault's port is in `http.ports` and its delay within `http.max_delay`.
    pub(crate) fn check_http(&self, spec: &crate::spec::HttpSpec) -> Result<(), Refusal> {
        if let Some(ports) = &self.http.ports
            && !ports.contains(&spec.port)
        {
            return refuse(format!(
                "http port {} is outside the policy's http.ports {}",
                spec.port,
                list(ports)
            ));
        }
        if let (Some(max), crate::spec::HttpAction::Delay { delay }) =
            (self.http.max_delay, spec.action)
            && delay > max
        {
            return refuse(format!(
                "http delay {}ms is above the policy's http.max_delay {}ms",
                delay.as_millis(),
                max.as_millis()
            ));
        }
        Ok(())
    }

    /// Whether a `loss` share is within `max_loss`.
    pub(crate) fn check_loss_share(&self, share: f64) -> Result<(), Refusal> {
        match self.max_loss {
            Some(max) if share > max => refuse(format!(
                "loss share {share}% is above the policy's max_loss {max}%"
            )),
            _ => Ok(()),
        }
    }

    /// Whether a `stress` fault's CPU workers (`cores` resolved on this host) are within
    /// `stress.max_workers`.
    pub(crate) fn check_stress_workers(&self, workers: u32) -> Result<(), Refusal> {
        match self.stress.max_workers {
            Some(max) if workers > max => refuse(format!(
                "{workers} stress workers are above the policy's stress.max_workers {max}"
            )),
            _ => Ok(()),
        }
    }

    /// Whether a `stress` fault's memory is within `stress.max_memory`.
    pub(crate) fn check_stress_memory(&self, bytes: u64) -> Result<(), Refusal> {
        match self.stress.max_memory {
            Some(max) if bytes > max => refuse(format!(
                "{bytes} bytes of stress memory are above the policy's stress.max_memory {max} bytes"
            )),
            _ => Ok(()),
        }
    }

    /// The share of MemTotal a `stress` memory fault must leave available, if the policy sets it.
    pub(crate) fn stress_memory_margin(&self) -> Option<f64> {
        self.stress.memory_margin
    }

    /// Whether a `kill` or `pause` selector is within `processes`.
    pub(crate) fn check_selector(&self, selector: &ProcessSelector) -> Result<(), Refusal> {
        match &self.processes {
            Some(p) => p.check("processes", selector),
            None => Ok(()),
        }
    }

    /// Whether an `inside:` selector is within `inside`.
    pub(crate) fn check_inside(&self, selector: &ProcessSelector) -> Result<(), Refusal> {
        match &self.inside {
            Some(p) => p.check("inside", selector),
            None => Ok(()),
        }
    }

    /// Whether a `fill_disk` path is within `fill_paths`.
    pub(crate) fn check_fill_path(&self, path: &Path) -> Result<(), Refusal> {
        let Some(allowed) = &self.fill_paths else {
            return Ok(());
        };
        let outside = || {
            refuse(format!(
                "fill path `{}` is outside the policy's fill_paths {}",
                path.display(),
                paths_list(allowed)
            ))
        };
        if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
            return outside();
        }
        // Symlinks are followed where the path exists, so a link cannot lead outside.
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let inside = allowed.iter().any(|prefix| {
            let prefix_real = std::fs::canonicalize(prefix).unwrap_or_else(|_| prefix.clone());
            real.starts_with(&prefix_real)
        });
        if inside { Ok(()) } else { outside() }
    }

    /// Whether a network fault's scope is within `interfaces` and `ports`.
    pub(crate) fn check_scope(&self, kind: FaultKind, scope: &NetScope) -> Result<(), Refusal> {
        if let Some(allowed) = &self.interfaces {
            match &scope.interface {
                None => {
                    return refuse(format!(
                        "the `{kind}` fault names no interface; the policy allows only interfaces {}: name one",
                        list(allowed)
                    ));
                }
                Some(i) if !allowed.contains(i) => {
                    return refuse(format!(
                        "interface `{i}` is outside the policy's interfaces {}",
                        list(allowed)
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(allowed) = &self.ports {
            let peers: Vec<_> = [&scope.to, &scope.from].into_iter().flatten().collect();
            if peers.is_empty() || peers.iter().any(|p| p.ports.is_empty()) {
                return refuse(format!(
                    "the `{kind}` fault covers every port; the policy allows only ports {}: list them in `to` or `from`",
                    list(allowed)
                ));
            }
            for port in peers.iter().flat_map(|p| &p.ports) {
                if !allowed.contains(port) {
                    return refuse(format!(
                        "port {port} is outside the policy's ports {}",
                        list(allowed)
                    ));
                }
            }
        }
        Ok(())
    }
}

fn refuse(message: String) -> Result<(), Refusal> {
    Err(Refusal(message))
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("[{}]", items.join(", "))
}

fn paths_list(paths: &[PathBuf]) -> String {
    let items: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// `500ms`, `30s`, `1.5s`, `5m`, `1h`.
/// A percentage key (`50`, `50%`), between 0 and 100.
fn share(key: &str, value: Share) -> Result<f64, String> {
    let n = match value {
        Share::Number(n) => n,
        Share::Text(t) => t
            .trim()
            .trim_end_matches('%')
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("{key} `{t}` is not a percentage such as `50%`"))?,
    };
    if !(0.0..=100.0).contains(&n) {
        return Err(format!("{key} {n}% is not between 0% and 100%"));
    }
    Ok(n)
}

/// `512MiB`, `1 GiB`, `2GB`, `4096` (bytes).
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| "not a size such as `512MiB`".to_string())?;
    let factor: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        other => {
            return Err(format!(
                "unknown unit `{other}`; use B, KiB, MiB, GiB or TiB"
            ));
        }
    };
    Ok((number * factor) as u64)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or("needs a unit: ms, s, m or h")?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| "is not a duration such as `5m`".to_string())?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("unknown unit `{other}`; use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{
        DropSpec, FillAmount, FillDiskSpec, LossSpec, PauseSpec, PeerSelector, Pick,
    };

    const FULL: &str = r#"
kinds: [pause, kill, fill_disk, loss, latency]
processes:
  selectors: ['^chaos-demo( |$)', '^/run/nginx\.pid$']
  pid: false
fill_paths: [/mnt/chaos]
interfaces: [eth0]
ports: [5432]
max_duration: 5m
max_loss: 50%
"#;

    fn pause(selector: ProcessSelector) -> FaultSpec {
        FaultSpec::Pause(PauseSpec {
            process: selector,
            pick: Pick::All,
        })
    }

    fn msg(r: Result<(), Refusal>) -> String {
        r.unwrap_err().0
    }

    #[test]
    fn commands_are_allowed_by_exact_absolute_path_only() {
        let p = Policy::parse("commands: {allow: [/usr/local/bin/promote.sh]}\n").unwrap();
        assert!(p.check_command("/usr/local/bin/promote.sh").is_ok());
        for other in ["promote.sh", "/usr/local/bin/promote.sh.bak", "/bin/sh"] {
            assert!(
                msg(p.check_command(other)).contains("outside the policy's commands.allow"),
                "{other}"
            );
        }
        assert!(p.summary().contains("commands [/usr/local/bin/promote.sh]"));
        // A policy without the key allows none, and says where to add one.
        let none = Policy::parse("kinds: [pause]\n").unwrap();
        assert!(msg(none.check_command("/bin/true")).contains("it allows no commands"));
        assert!(
            Policy::parse("commands: {allow: [promote.sh]}\n")
                .unwrap_err()
                .contains("not an absolute path")
        );
        assert!(Policy::parse("commands: {allowed: [/bin/true]}\n").is_err());
    }

    #[test]
    fn a_full_policy_parses() {
        let p = Policy::parse(FULL).unwrap();
        assert_eq!(p.max_duration, Some(Duration::from_secs(300)));
        assert_eq!(p.max_loss, Some(50.0));
        assert!(!p.command_probes);
        assert!(p.summary().contains("fill_paths [/mnt/chaos]"));
    }

    /// The Debian package installs it as /etc/chaos-agent/policy.yaml, where the unit reads it:
    /// an agent must start with it, and it must stay as narrow as it says.
    #[test]
    fn the_packaged_example_policy_parses_and_is_narrow() {
        let p = Policy::parse(include_str!("../../policy.example.yaml")).unwrap();
        assert_eq!(p.max_duration, Some(Duration::from_secs(600)));
        assert!(!p.command_probes);
        assert!(p.summary().contains("fill_paths [/mnt/chaos]"));
        assert!(msg(p.check_command("/bin/true")).contains("it allows no commands"));
        let demo = ProcessSelector::Name("chaos-demo".into());
        assert!(p.check_fault(&pause(demo)).is_ok());
        let sshd = ProcessSelector::Name("sshd".into());
        assert!(msg(p.check_fault(&pause(sshd))).contains("outside the policy"));
        assert!(msg(p.check_fault(&pause(ProcessSelector::Pid(1)))).contains("processes.pid"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(
            Policy::parse("fill_path: [/tmp]")
                .unwrap_err()
                .contains("fill_path")
        );
        assert!(Policy::parse("processes: {selector: [x]}").is_err());
        assert!(
            Policy::parse("max_duration: 5")
                .unwrap_err()
                .contains("unit")
        );
        assert!(Policy::parse("max_loss: 150").is_err());
        assert!(
            Policy::parse("fill_paths: [tmp]")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(Policy::parse("processes: {selectors: ['(']}").is_err());
        assert!(Policy::parse("").is_err());
        assert_eq!(Policy::parse("max_loss: 10").unwrap().max_loss, Some(10.0));
    }

    #[test]
    fn process_selectors() {
        let p = Policy::parse(FULL).unwrap();
        assert!(
            p.check_fault(&pause(ProcessSelector::Pattern(
                "chaos-demo --worker".into()
            )))
            .is_ok()
        );
        assert!(
            p.check_fault(&pause(ProcessSelector::Pidfile("/run/nginx.pid".into())))
                .is_ok()
        );
        assert_eq!(
            msg(p.check_fault(&pause(ProcessSelector::Name("sshd".into())))),
            "process selector name `sshd` is outside the policy's processes.selectors [^chaos-demo( |$), ^/run/nginx\\.pid$]"
        );
        assert!(msg(p.check_fault(&pause(ProcessSelector::Pid(1)))).contains("processes.pid"));
        // A container, cgroup or unit is checked by its text; a combination passes when one of
        // its keys does, since it selects fewer processes than that key alone.
        assert!(
            p.check_fault(&pause(ProcessSelector::Container("chaos-demo".into())))
                .is_ok()
        );
        assert!(
            p.check_fault(&pause(ProcessSelector::Unit("sshd".into())))
                .is_err()
        );
        let narrowed = ProcessSelector::All(vec![
            ProcessSelector::Name("chaos-demo".into()),
            ProcessSelector::Container("checkout".into()),
        ]);
        assert!(p.check_fault(&pause(narrowed)).is_ok());
        let outside = ProcessSelector::All(vec![
            ProcessSelector::Name("sshd".into()),
            ProcessSelector::Cgroup("*/system.slice/*".into()),
        ]);
        assert_eq!(
            msg(p.check_fault(&pause(outside))),
            "no key of process selector name `sshd` and cgroup `*/system.slice/*` is within the policy's processes.selectors [^chaos-demo( |$), ^/run/nginx\\.pid$]"
        );
        let any = Policy::parse("max_loss: 10").unwrap();
        assert!(any.check_fault(&pause(ProcessSelector::Pid(1))).is_ok());
    }

    #[test]
    fn inside_selectors_limit_whose_namespaces_a_fault_enters() {
        let p = Policy::parse("inside: {selectors: ['^shop/']}").unwrap();
        let latency = |inside: &str| {
            FaultSpec::Latency(crate::spec::LatencySpec {
                delay: Duration::from_millis(10),
                jitter: Duration::ZERO,
                scope: NetScope {
                    inside: Some(ProcessSelector::Container(inside.into())),
                    ..NetScope::default()
                },
            })
        };
        assert!(p.check_fault(&latency("shop/checkout-1/app")).is_ok());
        assert_eq!(
            msg(p.check_fault(&latency("billing/api-1/app"))),
            "process selector container `billing/api-1/app` is outside the policy's inside.selectors [^shop/]"
        );
        let host_only = FaultSpec::Latency(crate::spec::LatencySpec {
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            scope: NetScope::default(),
        });
        assert!(
            p.check_fault(&host_only).is_ok(),
            "no inside: nothing to check"
        );
        let stress = FaultSpec::Stress(crate::spec::StressSpec {
            work: crate::spec::StressWork::Memory(crate::spec::MemoryStress::Size(1 << 20)),
            inside: Some(ProcessSelector::Container("billing/api-1/app".into())),
        });
        assert_eq!(
            msg(p.check_fault(&stress)),
            "process selector container `billing/api-1/app` is outside the policy's inside.selectors [^shop/]"
        );
    }

    #[test]
    fn fill_paths_are_prefixes_by_component() {
        let p = Policy::parse(FULL).unwrap();
        let fill = |path: &str| {
            FaultSpec::FillDisk(FillDiskSpec {
                path: path.into(),
                amount: FillAmount::Size(1),
                inside: None,
            })
        };
        assert!(p.check_fault(&fill("/mnt/chaos")).is_ok());
        assert!(p.check_fault(&fill("/mnt/chaos/sub")).is_ok());
        assert_eq!(
            msg(p.check_fault(&fill("/var"))),
            "fill path `/var` is outside the policy's fill_paths [/mnt/chaos]"
        );
        assert!(p.check_fault(&fill("/mnt/chaos2")).is_err());
        assert!(p.check_fault(&fill("/mnt/chaos/../etc")).is_err());
        assert!(p.check_fault(&fill("mnt/chaos")).is_err());
    }

    #[test]
    fn bandwidth_rates_have_a_floor() {
        let p = Policy::parse("min_rate: 1mbit\ninterfaces: [eth0]").unwrap();
        let bw = |rate| {
            FaultSpec::Bandwidth(crate::spec::BandwidthSpec {
                rate,
                burst: None,
                scope: NetScope {
                    interface: Some("eth0".into()),
                    spare_ssh: true,
                    ..NetScope::default()
                },
            })
        };
        assert!(p.check_fault(&bw(1_000_000)).is_ok());
        assert_eq!(
            msg(p.check_fault(&bw(500_000))),
            "bandwidth rate 500kbit is below the policy's min_rate 1mbit"
        );
        assert!(p.summary().contains("min_rate 1mbit"));
        assert!(Policy::parse("min_rate: 1mbps").is_err());
    }

    #[test]
    fn dns_names_fall_under_the_policys_globs_and_delays_under_its_max() {
        let p =
            Policy::parse("dns: {names: ['*.internal', 'api.svc.local'], max_delay: 2s}").unwrap();
        let dns = |names: &[&str], delay: Option<u64>| {
            FaultSpec::Dns(crate::spec::DnsSpec {
                names: names.iter().map(|n| n.to_string()).collect(),
                answer: Some(crate::spec::DnsAnswer::Nxdomain),
                delay: delay.map(Duration::from_millis),
                inside: None,
            })
        };
        assert!(
            p.check_fault(&dns(&["db.internal", "*.svc.internal"], Some(2000)))
                .is_ok()
        );
        assert!(p.check_fault(&dns(&["api.svc.local"], None)).is_ok());
        assert_eq!(
            msg(p.check_fault(&dns(&["db.internal", "*.svc.local"], None))),
            "dns name `*.svc.local` is outside the policy's dns.names [*.internal, api.svc.local]"
        );
        assert_eq!(
            msg(p.check_fault(&dns(&["db.internal"], Some(2001)))),
            "dns delay 2001ms is above the policy's dns.max_delay 2000ms"
        );
        assert!(
            p.summary()
                .contains("dns.names [*.internal, api.svc.local]; dns.max_delay 2000ms")
        );
        assert!(Policy::parse("dns: {names: ['bad name']}").is_err());
        assert!(Policy::parse("dns: {max_dealy: 2s}").is_err());
    }

    #[test]
    fn corrupt_and_duplicate_take_kinds_interfaces_and_ports_not_max_loss() {
        use crate::spec::{CorruptSpec, DuplicateSpec};
        let p = Policy::parse("kinds: [corrupt]\ninterfaces: [eth0]\nmax_loss: 1%").unwrap();
        let scope = NetScope {
            interface: Some("eth0".into()),
            spare_ssh: true,
            ..NetScope::default()
        };
        let corrupt = |share, scope| FaultSpec::Corrupt(CorruptSpec { share, scope });
        assert!(p.check_fault(&corrupt(50.0, scope.clone())).is_ok());
        let no_iface = NetScope {
            interface: None,
            ..scope.clone()
        };
        assert!(msg(p.check_fault(&corrupt(5.0, no_iface))).contains("names no interface"));
        let duplicate = FaultSpec::Duplicate(DuplicateSpec { share: 5.0, scope });
        assert_eq!(
            msg(p.check_fault(&duplicate)),
            "`duplicate` faults are outside the policy's kinds [corrupt]"
        );
    }

    #[test]
    fn http_faults_are_held_to_their_ports_and_delay() {
        use crate::spec::{HttpAction, HttpSpec};
        let p = Policy::parse("http: {ports: [8080], max_delay: 1s}").unwrap();
        let http = |port, action| {
            FaultSpec::Http(HttpSpec {
                port,
                action,
                share: 100.0,
                paths: Vec::new(),
                methods: Vec::new(),
                inside: None,
            })
        };
        let delay = |ms| HttpAction::Delay {
            delay: Duration::from_millis(ms),
        };
        assert!(p.check_fault(&http(8080, delay(1000))).is_ok());
        assert!(
            p.check_fault(&http(8080, HttpAction::Abort { status: 503 }))
                .is_ok()
        );
        assert_eq!(
            msg(p.check_fault(&http(80, delay(10)))),
            "http port 80 is outside the policy's http.ports [8080]"
        );
        assert_eq!(
            msg(p.check_fault(&http(8080, delay(1500)))),
            "http delay 1500ms is above the policy's http.max_delay 1000ms"
        );
        assert!(p.summary().contains("http.ports [8080]"));
        assert!(Policy::parse("http: {port: 80}").is_err());
    }

    #[test]
    fn kinds_durations_and_loss() {
        let p = Policy::parse(FULL).unwrap();
        let drop = FaultSpec::Drop(DropSpec {
            mode: crate::spec::DropMode::Drop,
            scope: NetScope::default(),
        });
        assert!(msg(p.check_fault(&drop)).contains("outside the policy's kinds"));
        assert!(p.check_hold(Some(Duration::from_secs(300))).is_ok());
        assert!(msg(p.check_hold(Some(Duration::from_secs(301)))).contains("max_duration"));
        assert!(p.check_hold(None).is_err());
        let scope = NetScope {
            to: Some(PeerSelector {
                hosts: vec![],
                ports: vec![5432],
                protocol: None,
            }),
            from: None,
            interface: Some("eth0".into()),
            spare_ssh: true,
            inside: None,
        };
        let loss = |share, scope: NetScope| FaultSpec::Loss(LossSpec { share, scope });
        assert!(p.check_fault(&loss(50.0, scope.clone())).is_ok());
        assert!(msg(p.check_fault(&loss(60.0, scope.clone()))).contains("max_loss"));
        let mut other_port = scope.clone();
        other_port.to.as_mut().unwrap().ports = vec![22];
        assert!(msg(p.check_fault(&loss(5.0, other_port))).contains("port 22"));
        let mut any_port = scope.clone();
        any_port.to.as_mut().unwrap().ports = vec![];
        assert!(msg(p.check_fault(&loss(5.0, any_port))).contains("every port"));
        let mut no_iface = scope.clone();
        no_iface.interface = None;
        assert!(msg(p.check_fault(&loss(5.0, no_iface))).contains("names no interface"));
        let mut wlan = scope;
        wlan.interface = Some("wlan0".into());
        assert!(msg(p.check_fault(&loss(5.0, wlan))).contains("interface `wlan0`"));
    }

    #[test]
    fn stress_workers_memory_and_margin() {
        use crate::spec::{CpuStress, MemoryStress, StressSpec, StressWork, Workers};
        let p = Policy::parse("stress: {max_workers: 2, max_memory: 64MiB, memory_margin: 20%}")
            .unwrap();
        let cpu = |n| {
            FaultSpec::Stress(StressSpec::on_host(StressWork::Cpu(CpuStress {
                workers: Workers::Count(n),
                load: 100.0,
            })))
        };
        assert!(p.check_fault(&cpu(2)).is_ok());
        assert!(msg(p.check_fault(&cpu(3))).contains("stress.max_workers 2"));
        let memory = |bytes| {
            FaultSpec::Stress(StressSpec::on_host(StressWork::Memory(MemoryStress::Size(
                bytes,
            ))))
        };
        assert!(p.check_fault(&memory(64 << 20)).is_ok());
        assert!(msg(p.check_fault(&memory(65 << 20))).contains("stress.max_memory"));
        assert_eq!(p.stress_memory_margin(), Some(20.0));
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert!(Policy::parse("stress: {max_memory: lots}").is_err());
        assert!(Policy::parse("stress: {memory_margin: 120%}").is_err());
        assert!(Policy::parse("stress: {max_cpus: 1}").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("5 weeks").is_err());
    }
}
