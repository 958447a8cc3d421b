//! The `Release` file of a suite: metadata and the hashes of every index.
//!
//! Parse only text returned by [`super::verify`]: the hashes here are what
//! make the indexes trustworthy.

use std::collections::BTreeMap;

use super::ArchiveError;
use crate::core::deb822;

/// Size and sha256 of one file listed in a Release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHash {
    /// Lowercase hex sha256.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// A parsed Release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// `Date`.
    pub date: String,
    /// `Suite`, if given.
    pub suite: Option<String>,
    /// `Codename`, if given.
    pub codename: Option<String>,
    /// `Valid-Until`, if given. Parsing keeps any value; a fetched Release
    /// past it is refused by [`super::freshness`] unless its source says
    /// `check-valid-until = false` (snapshot archives).
    pub valid_until: Option<String>,
    /// `Acquire-By-Hash: yes`: indexes are also served immutably at
    /// `DIR/by-hash/SHA256/<hex>`.
    pub acquire_by_hash: bool,
    /// The `SHA256` list: path relative to the suite directory → hash.
    pub sha256: BTreeMap<String, FileHash>,
}

impl Release {
    /// Parses a Release text; `what` names its origin in error messages.
    pub fn parse(text: &str, what: &str) -> Result<Release, ArchiveError> {
        let bad = |reason: String| ArchiveError::Release {
            what: what.to_string(),
            reason,
        };
        let mut stanzas = deb822::stanzas(text);
        let stanza = stanzas
            .next()
            .ok_or_else(|| bad("empty".into()))?
            .map_err(|e| bad(e.to_string()))?;
        if let Some(next) = stanzas.next() {
            let line = next.map_or_else(|e| e.line, |s| s.line);
            return Err(bad(format!("unexpected second stanza at line {line}")));
        }
        let opt = |name: &str| stanza.get(name).map(str::to_string);
        let date = opt("Date").ok_or_else(|| bad("no Date field".into()))?;
        // apt refuses Release files without a strong hash; so do we.
        let list = stanza
            .get("SHA256")
            .ok_or_else(|| bad("no SHA256 list (weaker hashes are not accepted)".into()))?;
        let mut sha256 = BTreeMap::new();
        for (i, line) in list.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let entry_err = |reason: &str| {
                bad(format!(
                    "SHA256 entry {} `{line}`: {reason}",
                    i + 1 // entries are counted from the field's first line
                ))
            };
            let mut parts = line.split_whitespace();
            let (Some(hash), Some(size), Some(path), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(entry_err("expected `hash size path`"));
            };
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(entry_err("bad sha256"));
            }
            let size = size.parse::<u64>().map_err(|_| entry_err("bad size"))?;
            // Paths become URL and cache lookups: refuse anything that could
            // escape the suite directory.
            if path.starts_with('/') || path.split('/').any(|c| c == ".." || c.is_empty()) {
                return Err(entry_err("bad path"));
            }
            sha256.insert(
                path.to_string(),
                FileHash {
                    sha256: hash.to_ascii_lowercase(),
                    size,
                },
            );
        }
        Ok(Release {
            date,
            suite: opt("Suite"),
            codename: opt("Codename"),
            valid_until: opt("Valid-Until"),
            acquire_by_hash: stanza
                .get("Acquire-By-Hash")
                .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            sha256,
        })
    }

    /// The best listed form of the index `base` (`main/binary-amd64/Packages`):
    /// `.xz`, then `.gz`, then uncompressed. Returns its path and hash.
    pub fn best_index(&self, base: &str) -> Option<(String, &FileHash)> {
        ["xz", "gz", ""].iter().find_map(|ext| {
            let path = if ext.is_empty() {
                base.to_string()
            } else {
                format!("{base}.{ext}")
            };
            self.sha256.get(&path).map(|h| (path, h))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "Origin: Debian\nSuite: oldstable\nCodename: bookworm\n\
        Date: Sat, 11 Jul 2026 10:16:37 UTC\nValid-Until: Sat, 18 Jul 2020 10:16:37 UTC\n\
        Acquire-By-Hash: yes\nMD5Sum:\n 0ed6d4c8891eb86358b94bb35d9e4da4  1484322 contrib/Contents-all\n\
        SHA256:\n 515e692f2c4121c6fcec444ef100cc18f79a991910615f3a88c8b7becfc94d2f 50060337 main/binary-amd64/Packages\n \
        9E0B5AABB2465B3D2E7A7FE27F9913846277833F7A2826E7767ACCCFF5B588C5  8790396 main/binary-amd64/Packages.xz\n \
        6777ea16514725f9427f48c240d92e0a6b8496138e37a1491d8597e66774e309 12084798 main/binary-amd64/Packages.gz\n";

    #[test]
    fn parses_fields_and_hashes() {
        let r = Release::parse(TEXT, "t").unwrap();
        assert_eq!(r.date, "Sat, 11 Jul 2026 10:16:37 UTC");
        assert_eq!(r.suite.as_deref(), Some("oldstable"));
        assert_eq!(r.codename.as_deref(), Some("bookworm"));
        // A past Valid-Until is kept, not refused.
        assert!(r.valid_until.as_deref().unwrap().contains("2020"));
        assert!(r.acquire_by_hash);
        assert_eq!(r.sha256.len(), 3);
        let (path, h) = r.best_index("main/binary-amd64/Packages").unwrap();
        assert_eq!(path, "main/binary-amd64/Packages.xz");
        assert_eq!(h.size, 8790396);
        assert!(h.sha256.starts_with("9e0b5a"));
        assert!(r.best_index("main/binary-i386/Packages").is_none());
    }

    #[test]
    fn prefers_gz_then_plain() {
        let text = TEXT.replace("main/binary-amd64/Packages.xz", "other");
        let r = Release::parse(&text, "t").unwrap();
        assert_eq!(
            r.best_index("main/binary-amd64/Packages").unwrap().0,
            "main/binary-amd64/Packages.gz"
        );
        let text = text.replace("main/binary-amd64/Packages.gz", "other2");
        let r = Release::parse(&text, "t").unwrap();
        assert_eq!(
            r.best_index("main/binary-amd64/Packages").unwrap().0,
            "main/binary-amd64/Packages"
        );
    }

    #[test]
    fn refuses_bad_releases() {
        let no_sha = TEXT.split("SHA256:").next().unwrap();
        let cases = [
            (no_sha.to_string(), "no SHA256"),
            (TEXT.replace("Date:", "Dated:"), "no Date"),
            (
                TEXT.replace("main/binary-amd64/Packages.gz", "../x"),
                "bad path",
            ),
            (TEXT.replace(" 8790396 ", " 87x0396 "), "bad size"),
            (TEXT.replace("9E0B5AAB", "9E0B5AA"), "bad sha256"),
            (format!("{TEXT}\nOrigin: x\n"), "second stanza"),
        ];
        for (text, want) in cases {
            let e = Release::parse(&text, "dists/x/InRelease")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(want) && e.contains("dists/x/InRelease"),
                "{want}: {e}"
            );
        }
    }
}
