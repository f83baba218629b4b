//! `settings:`, and the hosts and targets of the scenario and its inventory: what a step's
//! `target`, a probe's `on` or an action's `on` may name ([`Names`]).

use std::collections::{BTreeMap, BTreeSet};

use agent::spec::Pick;

use super::super::model::{Host, Settings, Target};
use super::super::raw::*;
use super::super::values;
use super::cx::{Cx, Pos, near, pos, resolve_path};

pub(super) fn settings(cx: &mut Cx, raw: Option<&Sp<SettingsRaw>>) -> Settings {
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
    if let Some(n) = cx.opt(&raw.max_in_flight, |s| {
        match values::parse_count::<usize>(s)? {
            0 => Err("`max_in_flight` must be at least 1".into()),
            n => Ok(n),
        }
    }) {
        settings.max_in_flight = n;
    }
    settings
}

pub(super) fn host(cx: &mut Cx, name: &str, key: &Sp<String>, raw: &Sp<HostRaw>) -> Option<Host> {
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

pub(super) fn labels(cx: &mut Cx, raw: Option<&Entries<Sp<Scalar>>>) -> BTreeMap<String, String> {
    raw.iter()
        .flat_map(|e| e.0.iter())
        .filter_map(|(k, v)| Some((k.value.clone(), cx.text(v)?)))
        .collect()
}

pub(super) fn target(
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
pub(super) struct Names<'a> {
    pub(super) hosts: &'a BTreeMap<String, Host>,
    pub(super) targets: &'a BTreeMap<String, Target>,
    /// Every target defined, also those that failed their own checks (not reported again).
    pub(super) failed: BTreeSet<String>,
}

impl Names<'_> {
    pub(super) fn resolve(&self, name: &str) -> Option<(Vec<String>, Pick)> {
        if let Some(t) = self.targets.get(name) {
            return Some((t.hosts.clone(), t.pick));
        }
        self.hosts
            .contains_key(name)
            .then(|| (vec![name.to_string()], Pick::All))
    }

    /// Resolves `name`, reporting an unknown one at `at`.
    pub(super) fn check(&self, cx: &mut Cx, name: &str, at: Pos) -> Option<(Vec<String>, Pick)> {
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
