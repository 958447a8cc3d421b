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
/// `UTC`, `GMT`, `Z` or a numeric `±hhmm`) into Unix time: the archive's
/// own reader of Release dates (the freshness checks use the same one).
pub fn parse_rfc2822(text: &str) -> Option<i64> {
    crate::archive::freshness::parse_date(text)
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
