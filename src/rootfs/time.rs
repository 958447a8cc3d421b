//! `SOURCE_DATE_EPOCH` from the lock: the newest `Date` of its sources'
//! InRelease files, which is when the newest input was published. It is a
//! property of the lock, so two builds of one lock agree on it.

use crate::lock::Lockfile;

/// The newest InRelease `Date` of the lock's sources as Unix time; 0 when no
/// source has a date that parses (RFC 2822, as in Release files).
pub fn default_source_date_epoch(lock: &Lockfile) -> i64 {
    lock.sources
        .iter()
        .filter_map(|s| parse_rfc2822(&s.date))
        .max()
        .unwrap_or(0)
}

/// Parses an RFC 2822 date as written in Release files
/// (`Sat, 11 Jul 2026 10:16:37 UTC`; the weekday is optional; the zone is
/// `UTC`, `GMT`, `Z` or a numeric `±hhmm`) into Unix time.
pub fn parse_rfc2822(text: &str) -> Option<i64> {
    let text = text.trim();
    // Drop "Sat," if present.
    let text = match text.split_once(',') {
        Some((_, rest)) => rest.trim(),
        None => text,
    };
    let mut words = text.split_whitespace();
    let day: i64 = words.next()?.parse().ok()?;
    let month = words.next()?;
    let year: i64 = words.next()?.parse().ok()?;
    let clock = words.next()?;
    let zone = words.next().unwrap_or("UTC");
    if words.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let month = MONTHS
        .iter()
        .position(|m| month.len() >= 3 && m.eq_ignore_ascii_case(&month[..3]))?
        as i64
        + 1;
    let mut hms = clock.split(':');
    let hour: i64 = hms.next()?.parse().ok()?;
    let minute: i64 = hms.next()?.parse().ok()?;
    let second: i64 = hms.next().map_or(Some(0), |s| s.parse().ok())?;
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 || hms.next().is_some() {
        return None;
    }
    let offset = match zone {
        "UTC" | "GMT" | "Z" | "UT" => 0,
        z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let hh: i64 = z[1..3].parse().ok()?;
            let mm: i64 = z[3..5].parse().ok()?;
            let sign = if z.starts_with('-') { -1 } else { 1 };
            sign * (hh * 3600 + mm * 60)
        }
        _ => return None,
    };
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
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
    use super::parse_rfc2822;

    #[test]
    fn release_dates() {
        // date -u -d 'Sat, 11 Jul 2026 10:16:37 UTC' +%s
        assert_eq!(
            parse_rfc2822("Sat, 11 Jul 2026 10:16:37 UTC"),
            Some(1_783_764_997)
        );
        assert_eq!(parse_rfc2822("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(
            parse_rfc2822("29 Feb 2024 12:00:00 +0200"),
            Some(1_709_200_800)
        );
        assert_eq!(parse_rfc2822("Sat, 11 Jul 2026 10:16:37 CEST"), None);
        assert_eq!(parse_rfc2822("yesterday"), None);
    }
}
