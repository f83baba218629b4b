//! When the monkey strikes, and where: pure arithmetic on the seed and the start time, no IO and
//! no clock of its own, so the same seed and the same start give the same schedule.
//!
//! - **Gaps** are drawn from a shifted exponential: `min_interval + Exp(mean_interval −
//!   min_interval)`. Every gap is at least `min_interval`, the mean is exactly `mean_interval`,
//!   and faults stay memoryless beyond the minimum (the next one is as likely at any moment), as
//!   with Netflix's Chaos Monkey. With `min_interval == mean_interval` the gaps are constant.
//! - **Active hours** (`days`, `hours`, `timezone`, UTC when none is given) are honoured by
//!   counting gaps in *active time* only: a drawn time that would fall outside a window moves to
//!   the next window's start plus what was left of the gap. No time is redrawn, so the gaps' law
//!   stays the same inside the windows, and real gaps are never shorter than `min_interval`.
//!   Windows are built per calendar day in the time zone, so they follow DST: `09:00-17:00` is
//!   09:00 to 17:00 on the wall clock of that zone on both sides of a change. A window edge that
//!   falls in a DST gap (a wall time that does not exist) is read with the offset from before
//!   the change, i.e. an hour later on the wall clock; one that is ambiguous (it happens twice)
//!   is its first occurrence.
//! - **`max_per_day`** counts faults per calendar day in that time zone; once a day has its
//!   quota, the next gap is counted from the start of the next day's first window.
//! - **Picks** are drawn per fault from the seed and the fault's number (the spec: "the monkey
//!   draws once per fault"), apart from the times, so a skipped fault changes nothing later.

use std::time::Duration;

use crate::zone::Zone as Tz;
use agent::spec::Pick;
use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::engine::plan::{draw_hosts, fault_seed};
use crate::scenario::model::{ActiveHours, Monkey};

/// The RNG stream of the monkey's times, apart from the streams of picks.
const TIME_STREAM: u64 = 0x6d6f_6e6b_6579; // "monkey"

/// How many days ahead a window is looked for before the schedule gives up.
const LOOKAHEAD_DAYS: i64 = 15;

/// The monkey's fault times, drawn one after another.
pub struct Schedule {
    rng: ChaCha8Rng,
    min: Duration,
    /// `mean_interval − min_interval`: the mean of the exponential part.
    spread: Duration,
    tz: Tz,
    active: Option<ActiveHours>,
    max_per_day: Option<u32>,
    /// Where the next gap is counted from: the last fault, or the start of the next day's window
    /// once a day is full.
    cursor: DateTime<Utc>,
    /// The local day of the last fault, and how many faults that day has.
    day: Option<(NaiveDate, u32)>,
    start: DateTime<Utc>,
}

impl Schedule {
    pub fn new(monkey: &Monkey, seed: u64, start: DateTime<Utc>) -> Schedule {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(TIME_STREAM);
        let tz = monkey
            .active
            .as_ref()
            .and_then(|a| a.timezone.as_deref())
            .and_then(|name| name.parse::<Tz>().ok())
            .unwrap_or_else(Tz::utc);
        Schedule {
            rng,
            min: monkey.min_interval,
            spread: monkey.mean_interval.saturating_sub(monkey.min_interval),
            tz,
            active: monkey.active.clone(),
            max_per_day: monkey.max_per_day,
            cursor: start,
            day: None,
            start,
        }
    }

    /// The moment the schedule was drawn from.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    pub fn timezone(&self) -> &Tz {
        &self.tz
    }

    /// The next fault's time, or `None` when no active window comes within two weeks (which
    /// validation rules out: it needs at least one day).
    pub fn next_fault(&mut self) -> Option<DateTime<Utc>> {
        let gap = self.draw_gap();
        let at = self.advance(self.cursor, gap)?;
        let day = at.with_timezone(&self.tz).date_naive();
        let count = match self.day {
            Some((d, n)) if d == day => n + 1,
            _ => 1,
        };
        self.day = Some((day, count));
        self.cursor = at;
        if self.max_per_day.is_some_and(|max| count >= max) {
            self.cursor = self.first_window_after_day(day)?;
        }
        Some(at)
    }

    /// One gap: `min + Exp(spread)`, to the millisecond.
    pub fn draw_gap(&mut self) -> Duration {
        let u: f64 = self.rng.random();
        // 1 − u is in (0, 1], so the logarithm is finite.
        let exp = -(1.0 - u).ln() * self.spread.as_secs_f64();
        self.min + Duration::from_millis((exp * 1000.0).round() as u64)
    }

    /// Whether `at` is inside an active window (always, without `active`).
    pub fn is_active(&self, at: DateTime<Utc>) -> bool {
        match self.window_at_or_after(at) {
            Some((start, end)) => start <= at && at < end,
            None => false,
        }
    }

    /// `from` plus `gap` of active time.
    fn advance(&self, from: DateTime<Utc>, gap: Duration) -> Option<DateTime<Utc>> {
        let gap = chrono::Duration::from_std(gap).ok()?;
        if self.active.is_none() {
            return from.checked_add_signed(gap);
        }
        let (mut at, mut left) = (from, gap);
        // Each round uses up one window; a gap of years over one-minute windows gives up.
        for _ in 0..100_000 {
            let (start, end) = self.window_at_or_after(at)?;
            let begin = at.max(start);
            let room = end - begin;
            if left < room {
                return Some(begin + left);
            }
            left -= room;
            at = end;
        }
        None
    }

    /// The window that contains `at`, else the next one to start after it.
    fn window_at_or_after(&self, at: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let Some(active) = &self.active else {
            return Some((DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC));
        };
        let today = at.with_timezone(&self.tz).date_naive();
        (-1..=LOOKAHEAD_DAYS)
            .filter_map(|i| today.checked_add_signed(chrono::Duration::days(i)))
            .filter_map(|day| self.window_on(active, day))
            .find(|&(_, end)| end > at)
    }

    /// The start of the first window on a day after `day` (without `active`: its midnight).
    fn first_window_after_day(&self, day: NaiveDate) -> Option<DateTime<Utc>> {
        let next = day.succ_opt()?;
        match &self.active {
            None => Some(self.resolve(next.and_hms_opt(0, 0, 0)?)),
            Some(active) => (0..=LOOKAHEAD_DAYS)
                .filter_map(|i| next.checked_add_signed(chrono::Duration::days(i)))
                .find_map(|d| self.window_on(active, d))
                .map(|(start, _)| start),
        }
    }

    /// The window of one local calendar day, if that weekday is active.
    fn window_on(
        &self,
        active: &ActiveHours,
        day: NaiveDate,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let name = weekday_name(day.weekday());
        if !active.days.iter().any(|d| d == name) {
            return None;
        }
        let at_minute = |minute: u32| -> Option<NaiveDateTime> {
            let midnight = day.and_hms_opt(0, 0, 0)?;
            Some(midnight + chrono::Duration::minutes(i64::from(minute)))
        };
        let start = self.resolve(at_minute(active.start_minute)?);
        let end = self.resolve(at_minute(active.end_minute)?);
        (start < end).then_some((start, end))
    }

    /// A wall-clock time in the zone as an instant: the first of two when ambiguous, the offset
    /// from before the change when it does not exist.
    fn resolve(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
            LocalResult::None => {
                let before = local - chrono::Duration::days(1);
                let offset = self
                    .tz
                    .offset_from_local_datetime(&before)
                    .earliest()
                    .map(|o| chrono::Offset::fix(&o).local_minus_utc())
                    .unwrap_or(0);
                Utc.from_utc_datetime(&(local - chrono::Duration::seconds(i64::from(offset))))
            }
        }
    }
}

fn weekday_name(day: chrono::Weekday) -> &'static str {
    use chrono::Weekday::*;
    match day {
        Mon => "mon",
        Tue => "tue",
        Wed => "wed",
        Thu => "thu",
        Fri => "fri",
        Sat => "sat",
        Sun => "sun",
    }
}

/// The hosts fault number `number` (from 0) goes to: drawn from the target's hosts with its pick,
/// from the seed and the number alone.
pub fn pick_hosts(seed: u64, number: usize, hosts: &[String], pick: Pick) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(fault_seed(seed, number, 0, "monkey pick"));
    draw_hosts(&mut rng, hosts, pick)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use agent::spec::{FaultSpec, KillSpec, ProcessSelector, SignalNumber};
    use chrono::Timelike;

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn monkey(mean: u64, min: u64, active: Option<ActiveHours>, max: Option<u32>) -> Monkey {
        Monkey {
            target: "local".into(),
            fault: FaultSpec::Kill(KillSpec {
                process: ProcessSelector::Name("x".into()),
                signal: SignalNumber(9),
                pick: Pick::All,
            }),
            mean_interval: Duration::from_secs(mean),
            min_interval: Duration::from_secs(min),
            active,
            max_per_day: max,
            duration: Duration::ZERO,
        }
    }

    fn hours(days: &[&str], start: (u32, u32), end: (u32, u32), tz: Option<&str>) -> ActiveHours {
        ActiveHours {
            days: days.iter().map(|d| d.to_string()).collect(),
            start_minute: start.0 * 60 + start.1,
            end_minute: end.0 * 60 + end.1,
            timezone: tz.map(String::from),
        }
    }

    fn draws(m: &Monkey, seed: u64, start: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut s = Schedule::new(m, seed, start);
        (0..n).map(|_| s.next_fault().expect("a fault")).collect()
    }

    const WEEKDAYS: [&str; 5] = ["mon", "tue", "wed", "thu", "fri"];

    #[test]
    fn the_same_seed_and_start_give_the_same_schedule() {
        let m = monkey(
            1800,
            300,
            Some(hours(&WEEKDAYS, (9, 0), (17, 0), Some("Europe/Berlin"))),
            Some(4),
        );
        let start = utc("2026-03-23T07:12:00Z");
        assert_eq!(draws(&m, 42, start, 200), draws(&m, 42, start, 200));
        assert_ne!(draws(&m, 42, start, 20), draws(&m, 43, start, 20));
        // Relative to the start, a later start gives the same gaps (without active hours).
        let plain = monkey(1800, 300, None, None);
        let later = start + chrono::Duration::days(3);
        let offsets =
            |v: Vec<DateTime<Utc>>, from| -> Vec<_> { v.iter().map(|t| *t - from).collect() };
        assert_eq!(
            offsets(draws(&plain, 7, start, 50), start),
            offsets(draws(&plain, 7, later, 50), later)
        );
    }

    #[test]
    fn gaps_are_at_least_min_interval_and_average_mean_interval() {
        let m = monkey(1800, 300, None, None);
        let start = utc("2026-01-01T00:00:00Z");
        let times = draws(&m, 1, start, 20_000);
        let mut previous = start;
        for t in &times {
            assert!(
                *t - previous >= chrono::Duration::seconds(300),
                "{previous} -> {t}"
            );
            previous = *t;
        }
        let mean = (times[times.len() - 1] - start).num_milliseconds() as f64 / 20_000.0 / 1000.0;
        assert!((mean - 1800.0).abs() < 1800.0 * 0.03, "mean gap {mean} s");
        // min == mean: constant gaps.
        let fixed = draws(&monkey(60, 60, None, None), 5, start, 3);
        assert_eq!(
            fixed,
            [1, 2, 3]
                .map(|i| start + chrono::Duration::minutes(i))
                .to_vec()
        );
    }

    #[test]
    fn a_time_outside_the_window_moves_to_the_next_start_plus_the_leftover() {
        // Constant 1 h gaps, 09:00-17:00 UTC every day; start on a Monday at 16:30.
        let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let m = monkey(3600, 3600, Some(hours(&days, (9, 0), (17, 0), None)), None);
        let times = draws(&m, 1, utc("2026-03-23T16:30:00Z"), 2);
        // 30 minutes of the gap are used up by 17:00; the other 30 come after 09:00 the next day.
        assert_eq!(
            times,
            [utc("2026-03-24T09:30:00Z"), utc("2026-03-24T10:30:00Z")]
        );
        // Started before the window, the gap counts from its start.
        let times = draws(&m, 1, utc("2026-03-24T03:00:00Z"), 1);
        assert_eq!(times, [utc("2026-03-24T10:00:00Z")]);
    }

    #[test]
    fn nothing_falls_outside_active_days_and_hours_across_dst() {
        // Europe/Berlin moves to summer time on Sunday 2026-03-29 (02:00 → 03:00).
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let m = monkey(
            1200,
            60,
            Some(hours(&WEEKDAYS, (9, 0), (17, 0), Some("Europe/Berlin"))),
            None,
        );
        let start = utc("2026-03-23T00:00:00Z");
        let times = draws(&m, 9, start, 400);
        let mut before = false;
        let mut after = false;
        for t in &times {
            let local = t.with_timezone(&tz);
            assert!(WEEKDAYS.contains(&weekday_name(local.weekday())), "{local}");
            let minute = local.hour() * 60 + local.minute();
            assert!(
                (540..1020).contains(&minute),
                "{local} is outside 09:00-17:00"
            );
            before |= local.date_naive() < NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
            after |= local.date_naive() > NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
        }
        assert!(before && after, "the draws span the change");
        // In summer time the window is 07:00-15:00 UTC, in winter time 08:00-16:00 UTC: a fault
        // at 07:30 UTC happens only after the change.
        assert!(times.iter().any(|t| {
            t.date_naive() > NaiveDate::from_ymd_opt(2026, 3, 29).unwrap() && t.hour() == 7
        }));

        // A window across the change itself: Sundays 01:00-04:00, which on 2026-03-29 is only two
        // hours long (the hour from 02:00 does not exist).
        let m = monkey(
            600,
            60,
            Some(hours(&["sun"], (1, 0), (4, 0), Some("Europe/Berlin"))),
            None,
        );
        let times = draws(&m, 3, utc("2026-03-28T12:00:00Z"), 60);
        let mut on_the_day = 0;
        for t in &times {
            let local = t.with_timezone(&tz);
            assert_eq!(weekday_name(local.weekday()), "sun", "{local}");
            let minute = local.hour() * 60 + local.minute();
            assert!(
                (60..240).contains(&minute),
                "{local} is outside 01:00-04:00"
            );
            if local.date_naive() == NaiveDate::from_ymd_opt(2026, 3, 29).unwrap() {
                on_the_day += 1;
                assert!(*t >= utc("2026-03-29T00:00:00Z") && *t < utc("2026-03-29T02:00:00Z"));
            }
        }
        assert!(on_the_day > 0);
    }

    #[test]
    fn max_per_day_is_respected_per_local_day() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let m = monkey(
            600,
            60,
            Some(hours(&WEEKDAYS, (9, 0), (17, 0), Some("Europe/Berlin"))),
            Some(4),
        );
        let times = draws(&m, 11, utc("2026-03-23T00:00:00Z"), 40);
        let mut per_day: BTreeMap<NaiveDate, u32> = BTreeMap::new();
        for t in &times {
            *per_day
                .entry(t.with_timezone(&tz).date_naive())
                .or_default() += 1;
        }
        // A 10-minute mean over 8 hours would give ~48 a day; the quota caps it at 4.
        assert!(per_day.values().all(|&n| n <= 4), "{per_day:?}");
        assert_eq!(per_day.len(), 10, "{per_day:?}");
        // The next day starts over at its window: its first fault is 9:00 plus one gap.
        let firsts: Vec<_> = per_day
            .keys()
            .map(|d| {
                times
                    .iter()
                    .find(|t| t.with_timezone(&tz).date_naive() == *d)
                    .unwrap()
            })
            .collect();
        for t in firsts {
            let local = t.with_timezone(&tz);
            assert!(local.hour() >= 9);
        }
        // Without active hours the quota counts UTC days.
        let times = draws(
            &monkey(600, 60, None, Some(2)),
            1,
            utc("2026-03-23T00:00:00Z"),
            10,
        );
        let mut per_day: BTreeMap<NaiveDate, u32> = BTreeMap::new();
        for t in &times {
            *per_day.entry(t.date_naive()).or_default() += 1;
        }
        assert!(per_day.values().all(|&n| n == 2), "{per_day:?}");
    }

    #[test]
    fn is_active_follows_the_windows() {
        let m = monkey(
            600,
            60,
            Some(hours(&WEEKDAYS, (9, 0), (17, 0), Some("Europe/Berlin"))),
            None,
        );
        let s = Schedule::new(&m, 1, utc("2026-03-23T00:00:00Z"));
        assert!(s.is_active(utc("2026-03-23T08:00:00Z"))); // 09:00 CET, a Monday
        assert!(!s.is_active(utc("2026-03-23T16:00:00Z"))); // 17:00 CET
        assert!(!s.is_active(utc("2026-03-28T10:00:00Z"))); // a Saturday
        assert!(
            Schedule::new(&monkey(600, 60, None, None), 1, utc("2026-03-23T00:00:00Z"))
                .is_active(utc("2026-03-28T10:00:00Z"))
        );
    }

    #[test]
    fn picks_are_drawn_per_fault_from_the_seed() {
        let hosts: Vec<String> = (0..8).map(|i| format!("h{i}")).collect();
        let a: Vec<_> = (0..20)
            .map(|n| pick_hosts(5, n, &hosts, Pick::Count(1)))
            .collect();
        let b: Vec<_> = (0..20)
            .map(|n| pick_hosts(5, n, &hosts, Pick::Count(1)))
            .collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|p| p.len() == 1));
        // Different faults pick different hosts, some of the time.
        assert!(a.iter().any(|p| p != &a[0]));
        assert_eq!(pick_hosts(5, 0, &hosts, Pick::All), hosts);
    }
}
