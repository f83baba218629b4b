//! `monkey:`: one target, one fault, and when the monkey may strike.

use std::time::Duration;

use super::super::model::{ActiveHours, Monkey, Settings};
use super::super::raw::*;
use super::super::values::{self, format_duration};
use super::cx::{Cx, pos};
use super::faults::{self, fault};
use super::hosts::Names;

pub(super) fn monkey_of(
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
            faults::given(&f.value),
            f.value.inside.as_ref(),
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
