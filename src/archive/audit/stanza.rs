//! Matching lock entries to stanzas re-read from verified index text.

use std::path::Path;

use super::{AuditError, audit_err, entries};
use crate::archive::ArchiveError;
use crate::core::package::{BinaryPackage, parse_index_range};
use crate::lock::{LockedPackage, Lockfile};
use crate::solve::Universe;

/// The six fields of a stanza that a lock entry pins.
#[derive(Debug, PartialEq, Eq)]
struct Pinned<'a> {
    name: &'a str,
    version: &'a str,
    architecture: &'a str,
    filename: &'a str,
    size: u64,
    sha256: String,
}

impl<'a> Pinned<'a> {
    fn of_lock(p: &'a LockedPackage) -> Pinned<'a> {
        Pinned {
            name: &p.name,
            version: &p.version,
            architecture: &p.architecture,
            filename: &p.filename,
            size: p.size,
            sha256: p.sha256.to_ascii_lowercase(),
        }
    }

    fn of_record(r: &'a BinaryPackage) -> Pinned<'a> {
        Pinned {
            name: &r.name,
            version: r.version.as_str(),
            architecture: &r.architecture,
            filename: r.filename(),
            size: r.size(),
            sha256: r.sha256(),
        }
    }
}

/// `p`'s stanza parsed again from its (verified) index text: `None` unless
/// its span is exactly one whole stanza. Guards against a record whose
/// eager fields (from a snapshot) do not match the text.
pub(super) fn reparse(p: &BinaryPackage) -> Option<BinaryPackage> {
    let text = p.index_text();
    let bytes = (**text).as_ref();
    let (a, b) = (p.span().0 as usize, p.span().1 as usize);
    if a >= b || b > bytes.len() {
        return None;
    }
    // Starts a line after a blank line (or the file), ends a line before a
    // blank line (or the file): not a piece of a stanza.
    let blank = |line: &[u8]| line.iter().all(u8::is_ascii_whitespace);
    if a > 0 {
        let before = bytes[..a].strip_suffix(b"\n")?;
        let start = before
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |i| i + 1);
        if !blank(&before[start..]) {
            return None;
        }
    }
    let rest = &bytes[b..];
    let mut lines = rest.split(|&c| c == b'\n');
    if !lines.next().is_some_and(blank) || !lines.next().is_none_or(blank) {
        return None;
    }
    let mut recs = parse_index_range(text, a, b, 0, "", p.source).ok()?;
    (recs.len() == 1).then(|| recs.remove(0))
}

/// Whether one of `found` (records named like `p`) is exactly `p`'s stanza;
/// else what the index has instead.
pub(super) fn match_entry(p: &LockedPackage, found: &[&BinaryPackage]) -> Result<(), String> {
    let want = Pinned::of_lock(p);
    let mut near = Vec::new();
    let mut versions = Vec::new();
    for r in found {
        let Some(stanza) = reparse(r) else { continue };
        versions.push(format!("{} ({})", stanza.version, stanza.architecture));
        let got = Pinned::of_record(&stanza);
        if got == want {
            return Ok(());
        }
        if got.version == want.version && got.architecture == want.architecture {
            near.push(format!(
                "its stanza says Filename `{}`, Size {}, SHA256 {} (the lock: `{}`, {}, {})",
                got.filename, got.size, got.sha256, want.filename, want.size, want.sha256
            ));
        }
    }
    if let Some(n) = near.into_iter().next() {
        return Err(n);
    }
    versions.sort();
    versions.dedup();
    Err(if versions.is_empty() {
        format!("no stanza for `{}` at all", p.name)
    } else {
        format!(
            "no stanza with that version and architecture; it has {}",
            versions.join(", ")
        )
    })
}

/// Checks that every entry of a lock just built from `u` is exactly a stanza
/// of the verified text its record points into. The solver reads names and
/// versions from record snapshots; this makes sure nothing a cache edit could
/// change reaches the lock file.
pub fn check_built_lock(
    lock: &Lockfile,
    u: &Universe,
    lock_path: &Path,
) -> Result<(), ArchiveError> {
    for e in entries(lock) {
        let p = &e.package;
        let mut found = Vec::new();
        for &id in u.instances_named(&p.name) {
            for k in 1..=u.candidate_count(id) {
                let r = u.candidate(id, k);
                if r.version.as_str() == p.version
                    && *r.architecture == *p.architecture
                    && u.source_name(r) == p.source
                {
                    found.push(r);
                }
            }
        }
        match_entry(p, &found).map_err(|detail| {
            audit_err(AuditError::Entry {
                lock: lock_path.display().to_string(),
                section: e.section,
                name: p.name.clone(),
                version: p.version.clone(),
                architecture: p.architecture.clone(),
                source_name: p.source.clone(),
                detail: format!(
                    "{detail}; the cached record snapshot may have been altered: remove the cache"
                ),
                indexes: "the solver's indexes".into(),
            })
        })?;
    }
    Ok(())
}
