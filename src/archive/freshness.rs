//! Freshness of a verified Release: replayed, expired and future-dated
//! InRelease files are refused.
//!
//! A valid signature says who made a Release, not when it was served. A
//! mirror (or anyone in the path) can replay an older, correctly signed
//! InRelease to hold back a security fix or downgrade a package. As apt does,
//! a newly fetched Release is refused when:
//! - its `Date` is older than the `Date` the lock already records for that
//!   source (a replay), unless `--allow-downgrade`;
//! - its `Valid-Until` has passed, unless the source says
//!   `check-valid-until = false` (snapshot archives serve old Releases whose
//!   `Valid-Until` passed long ago);
//! - its `Date` lies more than [`MAX_CLOCK_SKEW_SECS`] in the future (a clock
//!   problem on one side, or a Release made to outlive the next real one).
//!
//! These checks apply to Releases fetched to *solve*. A lock's own InRelease
//! is pinned by hash and re-verified by the lock audit (`audit.rs`), where an
//! old date is expected.

use std::collections::BTreeMap;

use super::ArchiveError;
use super::release::Release;
use crate::core::timestamp::days_from_civil;
use crate::recipe::Source;

/// How far in the future a Release `Date` may be (5 minutes of clock skew).
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// What a fetched Release is compared with.
#[derive(Debug, Clone, Default)]
pub struct Freshness {
    /// The `Date` recorded in the existing lock, by source name.
    pub previous: BTreeMap<String, String>,
    /// `--allow-downgrade`: accept a Release older than the lock's.
    pub allow_downgrade: bool,
    /// The current time in Unix seconds; `None`: the system clock (tests
    /// pin it).
    pub now: Option<i64>,
}

/// Checks `release` (verified, from `what`) for `source` against `f`.
pub(crate) fn check(
    release: &Release,
    source: &Source,
    what: &str,
    f: &Freshness,
) -> Result<(), ArchiveError> {
    let refuse = |reason: String| ArchiveError::Freshness {
        source_name: source.name.clone(),
        suite: source.suite.clone(),
        what: what.to_string(),
        reason,
    };
    let now = f.now.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    });
    let date = parse_date(&release.date)
        .ok_or_else(|| refuse(format!("unreadable Date `{}`", release.date)))?;
    if date > now + MAX_CLOCK_SKEW_SECS {
        return Err(refuse(format!(
            "its Date ({}) is {} s in the future (now {}), more than the {MAX_CLOCK_SKEW_SECS} s \
             of clock skew allowed; check this machine's clock",
            release.date,
            date - now,
            format_date(now)
        )));
    }
    if source.check_valid_until
        && let Some(until) = &release.valid_until
    {
        let t =
            parse_date(until).ok_or_else(|| refuse(format!("unreadable Valid-Until `{until}`")))?;
        if t < now {
            return Err(refuse(format!(
                "it expired: Valid-Until {until} is before now ({}), Date {}; the mirror is \
                 stale or replays an old InRelease (for a snapshot archive, set \
                 `check-valid-until = false` on the source)",
                format_date(now),
                release.date
            )));
        }
    }
    if !f.allow_downgrade
        && let Some(prev) = f.previous.get(&source.name)
    {
        let p = parse_date(prev).ok_or_else(|| {
            refuse(format!(
                "the lock records an unreadable Date `{prev}` (pass --allow-downgrade to re-solve anyway)"
            ))
        })?;
        if date < p {
            return Err(refuse(format!(
                "its Date ({}) is older than the Date the lock records ({prev}): a replayed \
                 older InRelease would downgrade packages; pass --allow-downgrade to accept it",
                release.date
            )));
        }
    }
    Ok(())
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// Parses a Release date, `Sat, 11 Jul 2026 10:16:37 UTC` (RFC 2822 as
/// apt reads it: the weekday is optional and not checked; the zone is
/// `UTC`, `GMT`, `UT`, `Z` or `±HHMM`). Unix seconds.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = match s.split_once(',') {
        Some((_, rest)) => rest,
        None => s,
    };
    let mut parts = s.split_whitespace();
    let (day, month, year, time, zone) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next().unwrap_or("UTC"),
    );
    if parts.next().is_some() {
        return None;
    }
    let num = |t: &str, max_len: usize| -> Option<i64> {
        (!t.is_empty() && t.len() <= max_len && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let day = num(day, 2)?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as i64 + 1;
    let year = num(year, 4)?;
    let mut hms = time.split(':');
    let (h, m, sec) = (
        num(hms.next()?, 2)?,
        num(hms.next()?, 2)?,
        num(hms.next()?, 2)?,
    );
    if hms.next().is_some() {
        return None;
    }
    let days_in_month = match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=days_in_month).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let offset = match zone {
        "UTC" | "GMT" | "UT" | "Z" => 0,
        z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let hh = num(&z[1..3], 2)?;
            let mm = num(&z[3..5], 2)?;
            if hh > 23 || mm > 59 {
                return None;
            }
            let o = hh * 3600 + mm * 60;
            if z.starts_with('-') { -o } else { o }
        }
        _ => return None,
    };
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec - offset)
}

/// Formats Unix seconds as a Release date (`Sat, 11 Jul 2026 10:16:37 UTC`).
pub fn format_date(unix: i64) -> String {
    let (year, month, day, h, m, s) = crate::core::timestamp::civil_from_unix(unix);
    format!(
        "{}, {day:02} {} {year} {h:02}:{m:02}:{s:02} UTC",
        WEEKDAYS[unix.div_euclid(86_400).rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::testutil::source;
    use crate::recipe::Location;

    const JUL_11: i64 = 1_783_764_997; // Sat, 11 Jul 2026 10:16:37 UTC

    #[test]
    fn dates_parse_and_format() {
        assert_eq!(parse_date("Sat, 11 Jul 2026 10:16:37 UTC"), Some(JUL_11));
        assert_eq!(format_date(JUL_11), "Sat, 11 Jul 2026 10:16:37 UTC");
        assert_eq!(parse_date("11 Jul 2026 10:16:37 GMT"), Some(JUL_11));
        assert_eq!(parse_date("Sat, 11 Jul 2026 12:16:37 +0200"), Some(JUL_11));
        assert_eq!(
            parse_date("Sat, 1 Jan 2000 00:00:00 UTC"),
            Some(946_684_800)
        );
        assert_eq!(format_date(0), "Thu, 01 Jan 1970 00:00:00 UTC");
        assert_eq!(
            parse_date("Tue, 29 Feb 2028 00:00:00 UTC")
                .map(format_date)
                .as_deref(),
            Some("Tue, 29 Feb 2028 00:00:00 UTC")
        );
        for bad in [
            "",
            "yesterday",
            "Sat, 32 Jul 2026 10:16:37 UTC",
            "Sat, 29 Feb 2026 10:16:37 UTC",
            "Sat, 11 Jux 2026 10:16:37 UTC",
            "Sat, 11 Jul 2026 24:16:37 UTC",
            "Sat, 11 Jul 2026 10:16 UTC",
            "Sat, 11 Jul 2026 10:16:37 CEST",
            "Sat, 11 Jul 2026 10:16:37 UTC extra",
            "Sat, 11 Jul 99999 10:16:37 UTC",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    fn release(date: &str, valid_until: Option<&str>) -> Release {
        Release {
            date: date.into(),
            suite: None,
            codename: None,
            valid_until: valid_until.map(str::to_string),
            acquire_by_hash: false,
            sha256: Default::default(),
        }
    }

    #[test]
    fn replays_expiry_and_future_dates_are_refused() {
        let mut src = source(
            "security",
            Location::Archive("debian".into()),
            "bookworm-security",
        );
        let at = |now| Freshness {
            now: Some(now),
            ..Freshness::default()
        };
        let date = format_date(JUL_11);
        let until = format_date(JUL_11 + 7 * 86_400);
        let r = release(&date, Some(&until));
        check(&r, &src, "u", &at(JUL_11 + 86_400)).unwrap();
        // Future beyond the skew; within it is fine.
        check(&r, &src, "u", &at(JUL_11 - 299)).unwrap();
        let e = check(&r, &src, "http://x/InRelease", &at(JUL_11 - 3600))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("source `security` (suite `bookworm-security`)")
                && e.contains("http://x/InRelease")
                && e.contains(&date)
                && e.contains("in the future")
                && e.contains(&format_date(JUL_11 - 3600)),
            "{e}"
        );
        // Expired, unless the source says not to check.
        let later = JUL_11 + 8 * 86_400;
        let e = check(&r, &src, "u", &at(later)).unwrap_err().to_string();
        assert!(
            e.contains("expired") && e.contains(&until) && e.contains(&format_date(later)),
            "{e}"
        );
        src.check_valid_until = false;
        check(&r, &src, "u", &at(later)).unwrap();
        // Older than the lock's: a replay.
        let newer = format_date(JUL_11 + 10 * 86_400);
        let mut f = at(later + 86_400 * 10);
        f.previous.insert("security".into(), newer.clone());
        let e = check(&r, &src, "u", &f).unwrap_err().to_string();
        assert!(
            e.contains("older than")
                && e.contains(&newer)
                && e.contains(&date)
                && e.contains("--allow-downgrade"),
            "{e}"
        );
        f.allow_downgrade = true;
        check(&r, &src, "u", &f).unwrap();
        // Same date as the lock: fine.
        f.allow_downgrade = false;
        f.previous.insert("security".into(), date.clone());
        check(&r, &src, "u", &f).unwrap();
        // Unreadable dates are refused, not ignored.
        let e = check(&release("soon", None), &src, "u", &f)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unreadable Date `soon`"), "{e}");
    }
}
