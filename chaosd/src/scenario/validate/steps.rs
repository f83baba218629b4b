//! `steps:`: each a fault (`target` and `fault`), several (`faults`, each entry with its own
//! `target` and perhaps a `start_after`, or an `action`), an `action` or a `manual` step; and
//! `objectives:`, at the top level or a step's own.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agent::spec::Pick;

use super::super::model::{
    ACTION_TIMEOUT, Action, MANUAL_TIMEOUT, Manual, Objectives, Settings, Step, StepFault,
    TimedAction,
};
use super::super::raw::*;
use super::super::values::{self, format_duration};
use super::cx::{Cx, Pos, pos};
use super::faults::{self, fault};
use super::hosts::Names;

/// `objectives:`: each key optional; `max_failed` a share of the samples (or requests).
pub(super) fn objectives_of(cx: &mut Cx, raw: &Sp<ObjectivesRaw>) -> Objectives {
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

pub(super) fn step(
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
            faults::given(&f.value),
            f.value.inside.as_ref(),
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
                if let Some(kind) = faults::given_in_entry(e).first().map(faults::Given::kind) {
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
                faults::given_in_entry(e),
                e.inside.as_ref(),
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
