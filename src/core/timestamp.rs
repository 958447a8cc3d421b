//! Snapshot timestamps (`YYYYMMDDTHHMMSSZ`, UTC), as the Debian snapshot
//! archive names its import runs, and the calendar arithmetic behind them.

use std::fmt;

/// A snapshot timestamp, `YYYYMMDDTHHMMSSZ` (UTC).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Timestamp(String);

impl Timestamp {
    /// Parses `YYYYMMDDTHHMMSSZ`, checking that it is a real UTC time.
    pub fn parse(text: &str) -> Result<Timestamp, String> {
        let bad = || {
            format!(
                "`{text}` is not a snapshot timestamp (YYYYMMDDTHHMMSSZ, UTC, e.g. 20240601T000000Z)"
            )
        };
        let b = text.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' || !digits(0..8) || !digits(9..15) {
            return Err(bad());
        }
        let n = |r: std::ops::Range<usize>| text[r].parse::<i64>().unwrap_or(-1);
        let (y, mo, d, h, mi, s) = (n(0..4), n(4..6), n(6..8), n(9..11), n(11..13), n(13..15));
        let unix = unix_from_civil(y, mo, d, h, mi, s).ok_or_else(bad)?;
        let ts = Timestamp::from_unix(unix);
        // A round trip rejects what the calendar does not have (30 Feb).
        if ts.0 != text {
            return Err(bad());
        }
        Ok(ts)
    }

    /// The timestamp of Unix time `unix`.
    pub fn from_unix(unix: i64) -> Timestamp {
        let (y, mo, d, h, mi, s) = civil_from_unix(unix);
        Timestamp(format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z"))
    }

    /// Unix seconds.
    pub fn unix(&self) -> i64 {
        let n = |r: std::ops::Range<usize>| self.0[r].parse::<i64>().unwrap_or(0);
        unix_from_civil(n(0..4), n(4..6), n(6..8), n(9..11), n(11..13), n(13..15)).unwrap_or(0)
    }

    /// The text, `YYYYMMDDTHHMMSSZ`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    /// Validated like [`Timestamp::parse`]: a lock is input like any other.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Unix seconds → (year, month, day, hour, minute, second), UTC (Howard
/// Hinnant's `civil_from_days`).
pub fn civil_from_unix(unix: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, secs / 3600, secs / 60 % 60, secs % 60)
}

/// (year, month, day, hour, minute, second), UTC → Unix seconds; `None`
/// when a field is out of range (the day is checked by the caller's round
/// trip, see [`Timestamp::parse`]).
pub fn unix_from_civil(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    if !(1..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&mi)
        || !(0..=59).contains(&s)
    {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_format_and_refuse_nonsense() {
        let ts = Timestamp::parse("20240601T000000Z").unwrap();
        assert_eq!(ts.unix(), 1_717_200_000);
        assert_eq!(Timestamp::from_unix(1_717_200_000), ts);
        for bad in [
            "",
            "2024-06-01",
            "20240601",
            "20240601T000000",
            "20240601t000000Z",
            "20240230T000000Z",
            "20241301T000000Z",
            "20240601T250000Z",
            "2024060XT000000Z",
            "20240601T000000Z ",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?}");
        }
    }
}
