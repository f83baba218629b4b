//! Game-day schedules: a scenario run by chaosd at the times of a cron expression in a time zone,
//! except inside blackout windows. Each due time submits an ordinary run through the service's
//! run manager (labelled `schedule=<id>`), so a scheduled run has its report and history row like
//! any other.
//!
//! # Layout
//! - this module: [`Timing`] (the cron expression, its time zone and the blackouts) and the
//!   arithmetic of the next due time. Pure: no IO and no clock of its own, every function takes
//!   "now" as an argument.
//! - [`blackout`]: blackout windows, one-off (`{from, to}`, RFC 3339) or recurring (`{days,
//!   hours, timezone}`, like a monkey's `active:`).
//! - [`api`]: the wire types of `/v1/schedules`, shared with `chaosctl schedule`.
//! - [`scheduler`]: the service's task that waits for the next due time on a [`Clock`] (the
//!   monkey's seam: the system clock in chaosd, tokio's paused clock in tests) and submits runs.
//!
//! Schedules persist in the run history's database (`schedules` table, see
//! [`crate::store::RunStore::add_schedule`]), so they survive restarts.
//!
//! **Cron:** 5 fields (`min hour dom month dow`), or 6 with seconds first (`*/5 * * * * *`),
//! POSIX weekdays (0 or 7 is Sunday, names work), `@daily`-style aliases, and croner's `L`, `#`
//! and `W`. Times are read on the wall clock of the schedule's time zone (UTC when none is
//! given), so `0 10 * * TUE` in `Europe/Berlin` is 10:00 in Berlin in summer and in winter. A wall
//! time that a DST change skips does not happen that day (croner's rule, the OCPS one: a job at
//! 02:30 runs at 03:00 on the spring-forward day); one that happens twice runs once.
//!
//! **Blackouts** skip a due time; they never delay it. A run that is due while chaosd is down is
//! not made up for when it starts again: the next due time is counted from the start.
//!
//! [`Clock`]: crate::monkey::Clock

pub mod api;
pub mod blackout;
pub mod scheduler;

use std::str::FromStr;

use crate::zone::Zone as Tz;
use chrono::{DateTime, Utc};
use croner::Cron;

pub use blackout::Blackout;

/// How many due times in a row may fall in blackouts before the schedule is said to have no next
/// run (each blackout is jumped over whole, so this is many windows, not many cron ticks).
const MAX_SKIPS: usize = 10_000;

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    #[error("`{expr}` is not a cron expression: {reason}")]
    Cron { expr: String, reason: String },
    #[error(transparent)]
    TimeZone(#[from] crate::zone::ZoneError),
    #[error("blackout {index}: {message}")]
    Blackout { index: usize, message: String },
}

/// When a schedule is due: a cron expression read in a time zone, minus blackouts.
#[derive(Debug, Clone)]
pub struct Timing {
    cron: Cron,
    expr: String,
    tz: Tz,
    blackouts: Vec<Blackout>,
}

impl Timing {
    /// Checks the expression, the zone (`None`: UTC) and each blackout.
    pub fn new(
        expr: &str,
        timezone: Option<&str>,
        blackouts: Vec<Blackout>,
    ) -> Result<Timing, TimingError> {
        let cron = Cron::from_str(expr).map_err(|e| TimingError::Cron {
            expr: expr.to_string(),
            reason: e.to_string(),
        })?;
        let tz = match timezone {
            None => Tz::utc(),
            Some(name) => parse_tz(name)?,
        };
        for (i, b) in blackouts.iter().enumerate() {
            b.check().map_err(|message| TimingError::Blackout {
                index: i + 1,
                message,
            })?;
        }
        Ok(Timing {
            cron,
            expr: expr.trim().to_string(),
            tz,
            blackouts,
        })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn timezone(&self) -> &Tz {
        &self.tz
    }

    /// Whether `t` falls in one of the blackouts.
    pub fn in_blackout(&self, t: DateTime<Utc>) -> bool {
        self.blackout_end(t).is_some()
    }

    /// When the blackout that `t` is in ends (the first instant out of every blackout, as far as
    /// one jump goes); `None` when `t` is in none.
    fn blackout_end(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.blackouts
            .iter()
            .filter_map(|b| b.end_of(t, &self.tz))
            .max()
    }

    /// The cron's next time strictly after `after`, blackouts or not.
    pub fn next_cron_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron_from(after, false)
    }

    fn cron_from(&self, from: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&from.with_timezone(&self.tz), inclusive)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The next due time strictly after `after` that is outside every blackout; `None` when the
    /// expression never matches again (`0 0 30 2 *`) or blackouts cover every time we look at.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut candidate = self.cron_from(after, false)?;
        for _ in 0..MAX_SKIPS {
            match self.blackout_end(candidate) {
                None => return Some(candidate),
                Some(end) => candidate = self.cron_from(end.max(candidate), true)?,
            }
        }
        None
    }

    /// The next `n` due times after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut from = after;
        while out.len() < n {
            match self.next_after(from) {
                Some(t) => {
                    out.push(t);
                    from = t;
                }
                None => break,
            }
        }
        out
    }
}

/// An IANA zone name, checked.
pub fn parse_tz(name: &str) -> Result<Tz, TimingError> {
    Ok(Tz::named(name)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn times(t: &Timing, after: &str, n: usize) -> Vec<String> {
        t.upcoming(utc(after), n)
            .iter()
            .map(|t| t.to_rfc3339())
            .collect()
    }

    #[test]
    fn tuesdays_at_ten_in_berlin_follow_dst() {
        let t = Timing::new("0 10 * * TUE", Some("Europe/Berlin"), vec![]).unwrap();
        // Berlin moves to summer time on Sunday 2026-03-29: 10:00 is 09:00Z before, 08:00Z after.
        assert_eq!(
            times(&t, "2026-03-20T00:00:00Z", 3),
            [
                "2026-03-24T09:00:00+00:00",
                "2026-03-31T08:00:00+00:00",
                "2026-04-07T08:00:00+00:00"
            ]
        );
        // And back on Sunday 2026-10-25.
        assert_eq!(
            times(&t, "2026-10-19T00:00:00Z", 2),
            ["2026-10-20T08:00:00+00:00", "2026-10-27T09:00:00+00:00"]
        );
    }

    #[test]
    fn a_wall_time_skipped_by_dst_and_one_that_happens_twice() {
        // 02:30 does not exist in Berlin on 2026-03-29 (02:00 -> 03:00).
        let t = Timing::new("30 2 * * *", Some("Europe/Berlin"), vec![]).unwrap();
        let got = times(&t, "2026-03-28T12:00:00Z", 3);
        assert_eq!(got[0], "2026-03-29T01:00:00+00:00", "{got:?}"); // 03:00 CEST, croner's rule
        assert_eq!(got[1], "2026-03-30T00:30:00+00:00", "{got:?}");
        // 02:30 happens twice on 2026-10-25: the job runs once.
        let got = times(&t, "2026-10-24T12:00:00Z", 2);
        assert_eq!(
            got,
            ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
        );
    }

    #[test]
    fn seconds_and_utc_by_default() {
        let t = Timing::new("*/2 * * * * *", None, vec![]).unwrap();
        assert_eq!(
            times(&t, "2026-01-01T00:00:00Z", 2),
            ["2026-01-01T00:00:02+00:00", "2026-01-01T00:00:04+00:00"]
        );
        let t = Timing::new("@daily", None, vec![]).unwrap();
        assert_eq!(
            times(&t, "2026-01-01T00:00:00Z", 1),
            ["2026-01-02T00:00:00+00:00"]
        );
    }

    #[test]
    fn one_off_blackouts_skip_due_times() {
        let freeze = Blackout::Window {
            from: utc("2026-12-20T00:00:00Z"),
            to: utc("2027-01-04T00:00:00Z"),
        };
        let t = Timing::new("0 10 * * MON", None, vec![freeze]).unwrap();
        // Mondays 12-21 and 12-28 are in the freeze; 01-04 10:00 is after it.
        assert_eq!(
            times(&t, "2026-12-13T00:00:00Z", 3),
            [
                "2026-12-14T10:00:00+00:00",
                "2027-01-04T10:00:00+00:00",
                "2027-01-11T10:00:00+00:00"
            ]
        );
        assert!(t.in_blackout(utc("2026-12-21T10:00:00Z")));
        assert!(!t.in_blackout(utc("2027-01-04T00:00:00Z")));
    }

    #[test]
    fn recurring_blackouts_in_the_schedules_zone() {
        // Every hour at :00, but never on weekends nor outside 09:00-17:00 in New York.
        let blackouts = vec![
            Blackout::Recurring {
                days: vec!["sat".into(), "sun".into()],
                hours: None,
                timezone: None,
            },
            Blackout::Recurring {
                days: vec![],
                hours: Some("17:00-09:00".into()),
                timezone: None,
            },
        ];
        let t = Timing::new("0 * * * *", Some("America/New_York"), blackouts).unwrap();
        // Friday 2026-03-06 16:30 EST (21:30Z): 17:00 is out, the weekend is out, so Monday 09:00.
        assert_eq!(
            times(&t, "2026-03-06T21:30:00Z", 2),
            ["2026-03-09T13:00:00+00:00", "2026-03-09T14:00:00+00:00"]
        );
        // 2026-03-08 is the spring-forward Sunday; Monday 09:00 EDT is 13:00Z (checked above).
    }

    #[test]
    fn blackouts_that_cover_everything_and_crons_that_never_match() {
        let always = Blackout::Recurring {
            days: vec![],
            hours: None,
            timezone: None,
        };
        let t = Timing::new("* * * * *", None, vec![always]).unwrap();
        assert_eq!(t.next_after(utc("2026-01-01T00:00:00Z")), None);
        let t = Timing::new("0 0 30 2 *", None, vec![]).unwrap();
        assert_eq!(t.next_after(utc("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn refusals_name_the_value() {
        let cases: Vec<(Result<Timing, TimingError>, &str)> = vec![
            (Timing::new("nope", None, vec![]), "`nope` is not a cron"),
            (Timing::new("61 * * * *", None, vec![]), "`61 * * * *`"),
            (
                Timing::new("* * * * *", Some("Mars/Olympus"), vec![]),
                "unknown time zone `Mars/Olympus`",
            ),
            (
                Timing::new(
                    "* * * * *",
                    None,
                    vec![Blackout::Recurring {
                        days: vec!["someday".into()],
                        hours: None,
                        timezone: None,
                    }],
                ),
                "blackout 1: unknown day `someday`",
            ),
        ];
        for (result, needle) in cases {
            let err = result.unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
