//! Blackout windows: times when a schedule must not start a run (a change freeze, a sale, nights
//! and weekends). Two forms, told apart by their keys:
//!
//! ```yaml
//! blackouts:
//!   - {from: "2026-12-20T00:00:00Z", to: "2027-01-04T00:00:00Z"}   # once: RFC 3339 instants
//!   - {days: [sat, sun]}                                            # every weekend, all day
//!   - {hours: "17:00-09:00", timezone: Europe/Berlin}               # every night
//!   - {days: [fri], hours: "12:00-24:00"}                           # Friday afternoons
//! ```
//!
//! A one-off window is `from` (inclusive) to `to` (exclusive). A recurring one is `hours`
//! (`HH:MM-HH:MM`, start inclusive, end exclusive, `24:00` allowed as an end; all day when absent)
//! on `days` (`mon`..`sun`; every day when absent), on the wall clock of `timezone` (the
//! schedule's own zone when absent). Hours that wrap past midnight (`17:00-09:00`) belong to the
//! day they start on: `{days: [fri], hours: "17:00-09:00"}` is Friday 17:00 to Saturday 09:00.

use crate::zone::Zone as Tz;
use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// Day names, Monday first (chrono's `num_days_from_monday`).
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, try_from = "BlackoutRaw")]
pub enum Blackout {
    /// Once, from `from` until `to`.
    Window {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    /// Every week: `hours` on `days` in `timezone`.
    Recurring {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        days: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hours: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
    },
}

/// Either form as written: every key known, and the keys of one form only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlackoutRaw {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    #[serde(default)]
    days: Vec<String>,
    hours: Option<String>,
    timezone: Option<String>,
}

impl TryFrom<BlackoutRaw> for Blackout {
    type Error = String;

    fn try_from(raw: BlackoutRaw) -> Result<Blackout, String> {
        let recurring = !raw.days.is_empty() || raw.hours.is_some() || raw.timezone.is_some();
        match (raw.from, raw.to) {
            (Some(from), Some(to)) if !recurring => Ok(Blackout::Window { from, to }),
            (None, None) => Ok(Blackout::Recurring {
                days: raw.days,
                hours: raw.hours,
                timezone: raw.timezone,
            }),
            _ => Err("a blackout is either `{from, to}` (RFC 3339 instants) or `{days, hours, timezone}`".into()),
        }
    }
}

impl Blackout {
    /// What is wrong with it, as a message naming the value.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Blackout::Window { from, to } => {
                if from >= to {
                    return Err(format!(
                        "`from: {}` is not before `to: {}`",
                        from.to_rfc3339(),
                        to.to_rfc3339()
                    ));
                }
            }
            Blackout::Recurring {
                days,
                hours,
                timezone,
            } => {
                for d in days {
                    day_index(d)
                        .ok_or_else(|| format!("unknown day `{d}`; use {}", DAYS.join(", ")))?;
                }
                if let Some(h) = hours {
                    parse_hours(h)?;
                }
                if let Some(tz) = timezone {
                    tz.parse::<Tz>().map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// When `t` is in this blackout, the end of the stretch of it that `t` is in; else `None`.
    /// `zone` is the schedule's time zone, for a recurring blackout without its own. The blackout
    /// must have passed [`Blackout::check`]; parts that do not parse are read as "never".
    pub fn end_of(&self, t: DateTime<Utc>, zone: &Tz) -> Option<DateTime<Utc>> {
        match self {
            Blackout::Window { from, to } => (*from <= t && t < *to).then_some(*to),
            Blackout::Recurring {
                days,
                hours,
                timezone,
            } => {
                let tz = match timezone {
                    Some(name) => name.parse::<Tz>().ok()?,
                    None => zone.clone(),
                };
                let (start, end) = match hours {
                    Some(h) => parse_hours(h).ok()?,
                    None => (0, 24 * 60),
                };
                let day_ok = |date: NaiveDate| {
                    days.is_empty()
                        || days.iter().any(|d| {
                            day_index(d) == Some(date.weekday().num_days_from_monday() as usize)
                        })
                };
                let local = t.with_timezone(&tz);
                let today = local.date_naive();
                let secs = local.num_seconds_from_midnight();
                let (start_s, end_s) = (start * 60, end * 60);
                if start < end {
                    (day_ok(today) && (start_s..end_s).contains(&secs))
                        .then(|| at_minute(&tz, today, end))
                } else if day_ok(today) && secs >= start_s {
                    Some(at_minute(&tz, today.succ_opt()?, end))
                } else if day_ok(today.pred_opt()?) && secs < end_s {
                    Some(at_minute(&tz, today, end))
                } else {
                    None
                }
            }
        }
    }
}

fn day_index(name: &str) -> Option<usize> {
    let name = name.trim().to_ascii_lowercase();
    DAYS.iter().position(|d| name == *d)
}

/// `HH:MM-HH:MM` as minutes after midnight; the end may be `24:00`; start and end differ.
fn parse_hours(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`hours: {text}` is not like `09:00-17:00`");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let minute = |s: &str| -> Option<u32> {
        let (h, m) = s.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
    };
    let (start, end) = (minute(a).ok_or_else(bad)?, minute(b).ok_or_else(bad)?);
    if start == end || start == 24 * 60 {
        return Err(format!(
            "`hours: {text}` is empty; leave `hours` out for the whole day"
        ));
    }
    Ok((start, end))
}

/// `minute` minutes after midnight of `date` on `tz`'s wall clock, in UTC. A wall time that a DST
/// change skips is read an hour later; one that happens twice is its first occurrence.
fn at_minute(tz: &Tz, date: NaiveDate, minute: u32) -> DateTime<Utc> {
    let naive =
        date.and_hms_opt(0, 0, 0).expect("midnight exists") + Duration::minutes(minute.into());
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.to_utc(),
        LocalResult::None => match tz.from_local_datetime(&(naive + Duration::hours(1))) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.to_utc(),
            LocalResult::None => tz.from_utc_datetime(&naive).to_utc(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn both_forms_parse_from_yaml_and_json() {
        let list: Vec<Blackout> = serde_saphyr::from_str(
            "- {from: '2026-12-20T00:00:00Z', to: '2027-01-04T00:00:00+01:00'}\n- {days: [sat, sun]}\n- {hours: '17:00-09:00', timezone: Europe/Berlin}\n",
        )
        .unwrap();
        assert!(matches!(list[0], Blackout::Window { .. }));
        assert!(matches!(&list[1], Blackout::Recurring { days, .. } if days.len() == 2));
        let json = serde_json::to_string(&list).unwrap();
        let back: Vec<Blackout> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, list);
        assert!(serde_json::from_str::<Blackout>(r#"{"form": "x"}"#).is_err());
    }

    #[test]
    fn windows_and_wrapping_hours() {
        let fri_night = Blackout::Recurring {
            days: vec!["fri".into()],
            hours: Some("17:00-09:00".into()),
            timezone: Some("Europe/Berlin".into()),
        };
        // 2026-03-06 is a Friday; Berlin is UTC+1 then.
        let in_it = fri_night.end_of(utc("2026-03-06T20:00:00Z"), &Tz::utc());
        assert_eq!(in_it, Some(utc("2026-03-07T08:00:00Z")));
        let saturday_morning = fri_night.end_of(utc("2026-03-07T07:59:00Z"), &Tz::utc());
        assert_eq!(saturday_morning, Some(utc("2026-03-07T08:00:00Z")));
        assert_eq!(
            fri_night.end_of(utc("2026-03-07T08:00:00Z"), &Tz::utc()),
            None
        );
        assert_eq!(
            fri_night.end_of(utc("2026-03-06T15:59:00Z"), &Tz::utc()),
            None
        );
        // Thursday night is not Friday's.
        assert_eq!(
            fri_night.end_of(utc("2026-03-05T20:00:00Z"), &Tz::utc()),
            None
        );

        let afternoon = Blackout::Recurring {
            days: vec![],
            hours: Some("12:00-24:00".into()),
            timezone: None,
        };
        let zone: Tz = "Asia/Tokyo".parse().unwrap();
        assert_eq!(
            afternoon.end_of(utc("2026-03-06T05:00:00Z"), &zone),
            Some(utc("2026-03-06T15:00:00Z"))
        );
    }

    #[test]
    fn checks() {
        for (b, needle) in [
            (
                Blackout::Window {
                    from: utc("2026-01-02T00:00:00Z"),
                    to: utc("2026-01-01T00:00:00Z"),
                },
                "is not before",
            ),
            (
                Blackout::Recurring {
                    days: vec![],
                    hours: Some("9-17".into()),
                    timezone: None,
                },
                "is not like `09:00-17:00`",
            ),
            (
                Blackout::Recurring {
                    days: vec![],
                    hours: Some("09:00-09:00".into()),
                    timezone: None,
                },
                "is empty",
            ),
            (
                Blackout::Recurring {
                    days: vec![],
                    hours: None,
                    timezone: Some("Nowhere".into()),
                },
                "unknown time zone `Nowhere`",
            ),
        ] {
            let err = b.check().unwrap_err();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
