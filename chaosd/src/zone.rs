//! IANA time zones from the host's own database, as `chrono` time zones.
//!
//! Schedules and the monkey reckon cron expressions and active hours with `chrono` (which croner
//! speaks) on a zone named in IANA form (`Europe/Berlin`). The zone's rules come from the host's
//! database (`/usr/share/zoneinfo`, Debian's `tzdata`) through jiff, read when a zone is first
//! named, rather than from a database compiled into every binary: chrono-tz's cost every chaosctl
//! run about 1.3 MB of data that the loader relocates at start, monkey or not.
//!
//! `UTC` needs no database, so a host without `tzdata` still runs every UTC schedule; any other
//! name then fails with an error that says to install it.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{FixedOffset, MappedLocalTime, NaiveDate, NaiveDateTime, Offset, TimeZone};
use jiff::civil;
use jiff::tz::{self, AmbiguousOffset};

/// A time zone: its name and its rules. Cheap to clone (both are shared), as chrono clones the
/// zone into every offset it computes.
#[derive(Clone)]
pub struct Zone {
    name: Arc<str>,
    rules: tz::TimeZone,
}

/// Why a name is not a zone here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneError {
    /// Not a zone of the host's database.
    Unknown { name: String },
    /// The host has no database, so only `UTC` is known.
    NoDatabase { name: String },
}

impl fmt::Display for ZoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZoneError::Unknown { name } => write!(
                f,
                "unknown time zone `{name}`; expected an IANA name like `Europe/Berlin` or `UTC`"
            ),
            ZoneError::NoDatabase { name } => write!(
                f,
                "time zone `{name}` cannot be looked up: this host has no time zone database \
                 (/usr/share/zoneinfo); install it (Debian: apt-get install tzdata) or use `UTC`"
            ),
        }
    }
}

impl std::error::Error for ZoneError {}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            name: Arc::from("UTC"),
            rules: tz::TimeZone::UTC,
        }
    }

    /// The zone called `name` (surrounding blanks ignored).
    pub fn named(name: &str) -> Result<Zone, ZoneError> {
        let name = name.trim();
        if name == "UTC" {
            return Ok(Zone::utc());
        }
        // A path or a relative name would read a file outside the database.
        let plausible = !name.is_empty()
            && !name.starts_with('/')
            && !name
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..");
        match plausible.then(|| tz::TimeZone::get(name)) {
            Some(Ok(rules)) => Ok(Zone {
                name: Arc::from(name),
                rules,
            }),
            _ if tz::db().is_definitively_empty() => Err(ZoneError::NoDatabase {
                name: name.to_string(),
            }),
            _ => Err(ZoneError::Unknown {
                name: name.to_string(),
            }),
        }
    }

    /// Its IANA name, as it was given.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn offset_at(&self, unix_seconds: i64) -> ZoneOffset {
        let seconds = unix_seconds.clamp(
            jiff::Timestamp::MIN.as_second(),
            jiff::Timestamp::MAX.as_second(),
        );
        let at = jiff::Timestamp::from_second(seconds).expect("clamped into range");
        self.offset(self.rules.to_offset(at))
    }

    fn offset(&self, offset: tz::Offset) -> ZoneOffset {
        ZoneOffset {
            zone: self.clone(),
            fixed: FixedOffset::east_opt(offset.seconds()).expect("an offset within a day"),
        }
    }
}

impl FromStr for Zone {
    type Err = ZoneError;

    fn from_str(name: &str) -> Result<Zone, ZoneError> {
        Zone::named(name)
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.name)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A zone's offset from UTC at one moment.
#[derive(Clone, Debug)]
pub struct ZoneOffset {
    zone: Zone,
    fixed: FixedOffset,
}

impl Offset for ZoneOffset {
    fn fix(&self) -> FixedOffset {
        self.fixed
    }
}

impl fmt::Display for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.fixed, f)
    }
}

impl TimeZone for Zone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Zone {
        offset.zone.clone()
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> MappedLocalTime<ZoneOffset> {
        self.offset_from_local_datetime(&local.and_time(chrono::NaiveTime::MIN))
    }

    /// A wall time the zone skips (a DST gap) has no offset; one it passes twice (a fold) has
    /// the offsets before and after the change, the earlier moment first, as chrono-tz gave.
    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> MappedLocalTime<ZoneOffset> {
        let Some(civil) = civil_of(local) else {
            // Beyond jiff's years (±9999): no DST there; the offset at the nearest end will do.
            return MappedLocalTime::Single(self.offset_at(local.and_utc().timestamp()));
        };
        match self.rules.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => MappedLocalTime::Single(self.offset(offset)),
            AmbiguousOffset::Gap { .. } => MappedLocalTime::None,
            AmbiguousOffset::Fold { before, after } => {
                MappedLocalTime::Ambiguous(self.offset(before), self.offset(after))
            }
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> ZoneOffset {
        self.offset_from_utc_datetime(&utc.and_time(chrono::NaiveTime::MIN))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> ZoneOffset {
        self.offset_at(utc.and_utc().timestamp())
    }
}

/// `local` as jiff's civil time; `None` outside jiff's years.
fn civil_of(local: &NaiveDateTime) -> Option<civil::DateTime> {
    use chrono::{Datelike, Timelike};
    let year = i16::try_from(local.year()).ok()?;
    // chrono writes a leap second as nanoseconds past 1e9; jiff has none.
    let nanos = local.nanosecond().min(999_999_999);
    civil::DateTime::new(
        year,
        local.month() as i8,
        local.day() as i8,
        local.hour() as i8,
        local.minute() as i8,
        local.second() as i8,
        nanos as i32,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn berlin() -> Zone {
        Zone::named("Europe/Berlin").expect("Debian's tzdata has Europe/Berlin")
    }

    #[test]
    fn offsets_follow_the_zone_through_the_year() {
        let z = berlin();
        let winter = utc("2026-01-15T12:00:00Z").with_timezone(&z);
        let summer = utc("2026-07-15T12:00:00Z").with_timezone(&z);
        assert_eq!(winter.offset().fix().local_minus_utc(), 3600);
        assert_eq!(summer.offset().fix().local_minus_utc(), 7200);
        assert_eq!(summer.to_rfc3339(), "2026-07-15T14:00:00+02:00");
    }

    #[test]
    fn a_skipped_wall_time_has_none_and_a_repeated_one_has_both() {
        let z = berlin();
        // 2026-03-29 02:30 does not happen in Berlin; 2026-10-25 02:30 happens twice.
        assert!(matches!(
            z.from_local_datetime(&local("2026-03-29 02:30")),
            MappedLocalTime::None
        ));
        match z.from_local_datetime(&local("2026-10-25 02:30")) {
            MappedLocalTime::Ambiguous(first, second) => {
                assert_eq!(first.to_utc(), utc("2026-10-25T00:30:00Z"));
                assert_eq!(second.to_utc(), utc("2026-10-25T01:30:00Z"));
            }
            other => panic!("{other:?}"),
        }
        let noon = z.from_local_datetime(&local("2026-06-01 12:00")).unwrap();
        assert_eq!(noon.to_utc(), utc("2026-06-01T10:00:00Z"));
    }

    #[test]
    fn names_are_checked_and_kept() {
        assert_eq!(Zone::named(" UTC ").unwrap().name(), "UTC");
        assert_eq!(
            "Asia/Tokyo".parse::<Zone>().unwrap().to_string(),
            "Asia/Tokyo"
        );
        for bad in [
            "Mars/Olympus",
            "",
            "/etc/passwd",
            "../../etc/passwd",
            "Europe//Berlin",
        ] {
            let err = Zone::named(bad).unwrap_err();
            assert!(err.to_string().contains("time zone"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn cron_times_come_out_in_the_zone() {
        use croner::Cron;
        let cron: Cron = "0 10 * * TUE".parse().unwrap();
        let from = utc("2026-11-26T00:00:00Z").with_timezone(&berlin());
        let next = cron.find_next_occurrence(&from, false).unwrap();
        // Tuesday 1 December 2026, 10:00 in Berlin (UTC+1).
        assert_eq!(next.to_utc(), utc("2026-12-01T09:00:00Z"));
    }
}
