//! Parsers for the scalar values of a scenario file: durations, sizes, shares, signals, picks,
//! HTTP statuses, days and hours. Each returns a lowercase message without a trailing period on
//! failure; the caller adds the file position.

use std::time::Duration;

use agent::spec::{MAX_HOLD, Pick, SignalNumber};

use super::model::StatusMatch;

const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// Parses `500ms`, `30s`, `2m`, `1h`, `1d` and compounds such as `1m30s` or `1.5s`. A unit is
/// always required (`ns`, `us`, `ms`, `s`, `m`, `h`, `d`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if text.starts_with('-') {
        return Err(format!("duration `{text}` is negative"));
    }
    if text.parse::<f64>().is_ok() {
        return Err(format!(
            "duration `{text}` has no unit; write e.g. `{text}s` or `{text}ms`"
        ));
    }
    let mut nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if number.is_empty() {
            return Err(format!(
                "invalid duration `{text}`; expected e.g. `500ms`, `30s`, `2m`, `1h` or `1m30s`"
            ));
        }
        if unit.is_empty() {
            return Err(format!(
                "duration `{text}` lacks a unit after `{number}`; units are ns, us, ms, s, m, h, d"
            ));
        }
        let Some(&(_, per_unit)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!(
                "unknown unit `{unit}` in duration `{text}`; units are ns, us, ms, s, m, h, d"
            ));
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid number `{number}` in duration `{text}`"))?;
        let part = if number.contains('.') {
            (value * per_unit as f64).round() as u128
        } else {
            number
                .parse::<u128>()
                .map_err(|_| format!("duration `{text}` is too long"))?
                .checked_mul(per_unit)
                .ok_or_else(|| format!("duration `{text}` is too long"))?
        };
        nanos = nanos
            .checked_add(part)
            .ok_or_else(|| format!("duration `{text}` is too long"))?;
    }
    let secs = u64::try_from(nanos / 1_000_000_000)
        .map_err(|_| format!("duration `{text}` is too long"))?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// [`parse_duration`] for a value of a scenario file: at most [`MAX_HOLD`] (7 days), the longest
/// an agent holds a fault. Longer values are typos, and would overflow the end times and deadlines
/// computed from them.
pub fn parse_scenario_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > MAX_HOLD {
        return Err(format!(
            "duration `{}` is over the limit of {} (7 days) for any duration; shorten it",
            s.trim(),
            format_duration(MAX_HOLD)
        ));
    }
    Ok(d)
}

/// The inverse of [`parse_duration`]: `1m30s`, `500ms`, `1h`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let mut nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, per_unit) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ] {
        let n = nanos / per_unit;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            nanos -= n * per_unit;
        }
    }
    out
}

/// Parses `64MiB`, `10GiB`, `500MB`, `1024` (bytes) or `1024B`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim());
    if number.is_empty() {
        return Err(format!(
            "invalid size `{text}`; expected e.g. `64MiB`, `10GiB` or `500MB`"
        ));
    }
    let factor: u64 = match unit {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in size `{text}`; units are B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid number `{number}` in size `{text}`"))?;
    let bytes = value * factor as f64;
    if bytes >= u64::MAX as f64 {
        return Err(format!("size `{text}` is too large"));
    }
    Ok(bytes.round() as u64)
}

/// Parses a share written with `%`, from 0 to 100: `95%`, `0.5%`.
/// The fastest a `load` probe may send.
pub const MAX_RATE: f64 = agent::probe::load::MAX_RATE;

/// A request rate: `20/s`, `600/m`, `0.5/s`; a bare number is per second. Returns per second,
/// more than 0 and at most [`MAX_RATE`].
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let text = s.trim();
    let (number, per) = match text.split_once('/') {
        None => (text, "s"),
        Some((n, unit)) => (n.trim(), unit.trim()),
    };
    let seconds = match per {
        "s" => 1.0,
        "m" => 60.0,
        _ => return Err(format!("rate `{text}` is not like `20/s` or `600/m`")),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("rate `{text}` is not like `20/s` or `600/m`"))?;
    let rate = n / seconds;
    if !rate.is_finite() || rate <= 0.0 {
        return Err(format!("rate `{text}` must be more than 0"));
    }
    if rate > MAX_RATE {
        return Err(format!("rate `{text}` is above the limit of {MAX_RATE}/s"));
    }
    Ok(rate)
}

pub fn parse_share(s: &str) -> Result<f64, String> {
    let text = s.trim();
    let Some(number) = text.strip_suffix('%') else {
        return Err(format!("share `{text}` needs a `%`, e.g. `{text}%`"));
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("invalid share `{text}`; expected e.g. `95%` or `0.5%`"))?;
    if !(0.0..=100.0).contains(&value) {
        return Err(format!("share `{text}` is outside 0% to 100%"));
    }
    Ok(value)
}

/// Parses a signal by name, with or without `SIG` (any case), or by number.
pub fn parse_signal(s: &str) -> Result<SignalNumber, String> {
    use nix::sys::signal::Signal;
    use std::str::FromStr;

    let text = s.trim();
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number)
            .map(|signal| SignalNumber(signal as i32))
            .map_err(|_| format!("unknown signal number `{number}`"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name)
        .map(|signal| SignalNumber(signal as i32))
        .map_err(|_| format!("unknown signal `{text}`; expected e.g. `SIGKILL`, `TERM` or `9`"))
}

/// Parses a pick: a positive count, a share such as `50%`, or `all`.
pub fn parse_pick(s: &str) -> Result<Pick, String> {
    let text = s.trim();
    if text == "all" {
        return Ok(Pick::All);
    }
    if text.ends_with('%') {
        let share = parse_share(text)?;
        if share <= 0.0 {
            return Err(format!("pick `{text}` picks nothing; use more than 0%"));
        }
        return Ok(Pick::Percent(share));
    }
    match text.parse::<u32>() {
        Ok(0) => Err("pick `0` picks nothing; use at least 1".into()),
        Ok(n) => Ok(Pick::Count(n)),
        Err(_) => Err(format!(
            "invalid pick `{text}`; expected a count, a share such as `50%`, or `all`"
        )),
    }
}

/// Parses one HTTP status: a code (`200`) or a class (`2xx`).
pub fn parse_status(s: &str) -> Result<StatusMatch, String> {
    let text = s.trim();
    let lower = text.to_ascii_lowercase();
    if let Some(class) = lower.strip_suffix("xx") {
        return match class.parse::<u16>() {
            Ok(class @ 1..=5) => Ok(StatusMatch::Class(class)),
            _ => Err(format!(
                "invalid status class `{text}`; expected `1xx` to `5xx`"
            )),
        };
    }
    match text.parse::<u16>() {
        Ok(code @ 100..=599) => Ok(StatusMatch::Code(code)),
        _ => Err(format!(
            "invalid status `{text}`; expected a code from 100 to 599 or a class such as `2xx`"
        )),
    }
}

const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Parses a day name (`mon` or `monday`, any case) into its three-letter lowercase form.
pub fn parse_day(s: &str) -> Result<String, String> {
    let lower = s.trim().to_ascii_lowercase();
    DAYS.iter()
        .find(|day| lower == **day || lower == day[..3])
        .map(|day| day[..3].to_string())
        .ok_or_else(|| {
            format!(
                "unknown day `{}`; expected one of mon, tue, wed, thu, fri, sat, sun",
                s.trim()
            )
        })
}

/// Parses `09:00-17:00` into minutes after midnight, start inclusive, end exclusive. The end may
/// be `24:00`; the start must come before the end.
pub fn parse_hours(s: &str) -> Result<(u32, u32), String> {
    let text = s.trim();
    let bad = || format!("invalid hours `{text}`; expected e.g. `09:00-17:00`");
    let (start, end) = text.split_once('-').ok_or_else(bad)?;
    let minute = |part: &str| -> Option<u32> {
        let (h, m) = part.trim().split_once(':')?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
    };
    let (start, end) = (minute(start).ok_or_else(bad)?, minute(end).ok_or_else(bad)?);
    if start >= end {
        return Err(format!("hours `{text}` end before they start"));
    }
    Ok((start, end))
}

/// Checks an IANA time zone name (`Europe/Berlin`, `UTC`) and returns it as written.
pub fn parse_timezone(s: &str) -> Result<String, String> {
    let name = s.trim();
    crate::zone::Zone::named(name)
        .map(|_| name.to_string())
        .map_err(|e| e.to_string())
}

/// Parses `true` or `false`.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("expected `true` or `false`, not `{other}`")),
    }
}

/// Parses a non-negative whole number.
pub fn parse_count<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    let text = s.trim();
    text.parse()
        .map_err(|_| format!("expected a whole number, not `{text}`"))
}

/// Parses a number such as `0.5` or `12`.
pub fn parse_number(s: &str) -> Result<f64, String> {
    let text = s.trim();
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(format!("expected a number, not `{text}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_duration(input: &str, expected: Result<Duration, &str>) {
        let got = parse_duration(input);
        match expected {
            Ok(d) => assert_eq!(got, Ok(d), "{input}"),
            Err(fragment) => {
                let err = got.expect_err(input);
                assert!(err.contains(fragment), "{input}: {err}");
            }
        }
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        check_duration("500ms", Ok(ms(500)));
        check_duration("30s", Ok(ms(30_000)));
        check_duration("2m", Ok(ms(120_000)));
        check_duration("1h", Ok(ms(3_600_000)));
        check_duration("1d", Ok(ms(86_400_000)));
        check_duration("1m30s", Ok(ms(90_000)));
        check_duration("1h2m3s4ms", Ok(ms(3_723_004)));
        check_duration("1.5s", Ok(ms(1500)));
        check_duration("0s", Ok(ms(0)));
        check_duration("30", Err("has no unit; write e.g. `30s`"));
        check_duration("1m30", Err("lacks a unit after `30`"));
        check_duration("5x", Err("unknown unit `x`"));
        check_duration("-5s", Err("negative"));
        check_duration("", Err("empty"));
        check_duration("s", Err("invalid duration"));
    }

    #[test]
    fn durations_format_back() {
        let ms = Duration::from_millis;
        for (d, s) in [
            (ms(90_000), "1m30s"),
            (ms(500), "500ms"),
            (ms(0), "0s"),
            (ms(3_600_000), "1h"),
            (ms(1_500), "1s500ms"),
            (Duration::from_micros(1_001), "1ms1us"),
        ] {
            assert_eq!(format_duration(d), s);
            assert_eq!(parse_duration(s), Ok(d));
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert!(
            parse_size("5 parsecs")
                .unwrap_err()
                .contains("unknown unit `parsecs`")
        );
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn shares() {
        assert_eq!(parse_rate("20/s"), Ok(20.0));
        assert_eq!(parse_rate("600/m"), Ok(10.0));
        assert_eq!(parse_rate("5"), Ok(5.0));
        assert!(parse_rate("0/s").unwrap_err().contains("more than 0"));
        assert!(parse_rate("5000/s").unwrap_err().contains("limit"));
        assert!(parse_rate("20/h").unwrap_err().contains("not like"));
        assert_eq!(parse_share("95%"), Ok(95.0));
        assert_eq!(parse_share("0.5%"), Ok(0.5));
        assert_eq!(parse_share("100%"), Ok(100.0));
        assert!(parse_share("95").unwrap_err().contains("needs a `%`"));
        assert!(parse_share("101%").unwrap_err().contains("outside"));
        assert!(parse_share("-1%").unwrap_err().contains("outside"));
        assert!(parse_share("x%").is_err());
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGKILL"), Ok(SignalNumber(9)));
        assert_eq!(parse_signal("TERM"), Ok(SignalNumber(15)));
        assert_eq!(parse_signal("sigterm"), Ok(SignalNumber(15)));
        assert_eq!(parse_signal("9"), Ok(SignalNumber(9)));
        assert!(
            parse_signal("SIGNOPE")
                .unwrap_err()
                .contains("unknown signal `SIGNOPE`")
        );
        assert!(parse_signal("999").is_err());
    }

    #[test]
    fn picks() {
        assert_eq!(parse_pick("all"), Ok(Pick::All));
        assert_eq!(parse_pick("2"), Ok(Pick::Count(2)));
        assert_eq!(parse_pick("50%"), Ok(Pick::Percent(50.0)));
        assert!(parse_pick("0").unwrap_err().contains("picks nothing"));
        assert!(parse_pick("0%").unwrap_err().contains("picks nothing"));
        assert!(parse_pick("some").is_err());
    }

    #[test]
    fn statuses() {
        assert_eq!(parse_status("200"), Ok(StatusMatch::Code(200)));
        assert_eq!(parse_status("2xx"), Ok(StatusMatch::Class(2)));
        assert_eq!(parse_status("5XX"), Ok(StatusMatch::Class(5)));
        assert!(parse_status("99").is_err());
        assert!(parse_status("7xx").is_err());
    }

    #[test]
    fn days_and_hours() {
        assert_eq!(parse_day("mon"), Ok("mon".into()));
        assert_eq!(parse_day("Tuesday"), Ok("tue".into()));
        assert!(
            parse_day("funday")
                .unwrap_err()
                .contains("unknown day `funday`")
        );
        assert_eq!(parse_hours("09:00-17:00"), Ok((540, 1020)));
        assert_eq!(parse_hours("0:00-24:00"), Ok((0, 1440)));
        assert!(
            parse_hours("17:00-09:00")
                .unwrap_err()
                .contains("end before")
        );
        assert!(parse_hours("9-17").unwrap_err().contains("invalid hours"));
        assert!(parse_hours("09:60-10:00").is_err());
    }
}
