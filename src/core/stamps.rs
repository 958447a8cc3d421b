//! Digests remembered between runs by file stamp (device, inode, size,
//! modification and change times), as git's index remembers which files
//! are clean: `imgbuild publish` checks every artifact against
//! `manifest.json`, and a second publication of unchanged files reads none
//! of them again. Any write to a file moves its change time, which the
//! user cannot set; a stamp recorded less than [`SETTLED`] after the file's
//! last change is not trusted (file times have a coarse clock, so a write in
//! the same tick as the hashing could leave the stamp as it was).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::digest::{Stamp, stamp};

/// How long after a file's last change its stamp can be trusted.
const SETTLED: Duration = Duration::from_secs(2);

/// A file of remembered digests (JSON; unreadable or damaged means empty).
#[derive(Debug, Default)]
pub struct StampFile {
    path: PathBuf,
    entries: BTreeMap<String, (Stamp, String)>,
    changed: bool,
}

impl StampFile {
    /// Loads `path` (nothing remembered when it is missing or damaged).
    pub fn load(path: &Path) -> StampFile {
        let entries = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        StampFile {
            path: path.to_path_buf(),
            entries,
            changed: false,
        }
    }

    /// The remembered sha256 and size of `file`, if its stamp is the one
    /// recorded.
    pub fn known(&self, file: &Path) -> Option<(String, u64)> {
        let meta = std::fs::symlink_metadata(file).ok()?;
        let key = file.to_string_lossy();
        let (recorded, sha) = self.entries.get(key.as_ref())?;
        (*recorded == stamp(&meta)).then(|| (sha.clone(), meta.len()))
    }

    /// Records that `file` hashes to `sha256`, if it has not changed since
    /// `before` (its metadata before hashing) and has settled.
    pub fn record(&mut self, file: &Path, before: &std::fs::Metadata, sha256: &str) {
        let Ok(after) = std::fs::symlink_metadata(file) else {
            return;
        };
        if stamp(&after) == stamp(before) && settled(&after) {
            let key = file.to_string_lossy().into_owned();
            self.entries
                .insert(key, (stamp(&after), sha256.to_string()));
            self.changed = true;
        }
    }

    /// Writes the record back (best effort: it only saves time).
    pub fn save(&self) {
        if !self.changed {
            return;
        }
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(bytes) = serde_json::to_vec(&self.entries) {
            let _ = super::atomic::write_atomic(
                &self.path,
                &bytes,
                0o600,
                super::atomic::Durability::Atomic,
            );
        }
    }
}

/// The sha256 a sidecar file (`stamp` then digest, one line) records for
/// the file whose metadata is `meta`, if the stamp is still its own.
pub fn sidecar_digest(sidecar: &Path, meta: &std::fs::Metadata) -> Option<String> {
    let text = std::fs::read_to_string(sidecar).ok()?;
    let (recorded, sha) = text.trim_end().rsplit_once(' ')?;
    (recorded == stamp_text(meta) && super::digest::valid_sha256(sha)).then(|| sha.to_string())
}

/// Writes `sidecar` for a file found to hash to `sha256` with metadata
/// `meta` before and after hashing, if unchanged meanwhile and settled
/// (best effort: it only saves time).
pub fn record_sidecar(
    sidecar: &Path,
    before: &std::fs::Metadata,
    after: &std::fs::Metadata,
    sha256: &str,
) {
    if stamp(before) != stamp(after) || !settled(after) {
        return;
    }
    let line = format!("{} {sha256}\n", stamp_text(after));
    let _ = super::atomic::write_atomic(
        sidecar,
        line.as_bytes(),
        0o600,
        super::atomic::Durability::Atomic,
    );
}

/// The stamp of a file as a sidecar records it.
pub(crate) fn stamp_text(meta: &std::fs::Metadata) -> String {
    let (dev, ino, size, m, mn, c, cn) = stamp(meta);
    format!("{dev}:{ino}:{size}:{m}.{mn}:{c}.{cn}")
}

/// Whether the file's last change is at least [`SETTLED`] old.
fn settled(meta: &std::fs::Metadata) -> bool {
    std::os::unix::fs::MetadataExt::ctime(meta)
        .checked_add(SETTLED.as_secs() as i64)
        .is_some_and(|t| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .is_ok_and(|now| (now.as_secs() as i64) > t)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settled_unchanged_file_is_not_read_again_and_any_write_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("artifact");
        std::fs::write(&f, b"one").unwrap();
        let record = dir.path().join("stamps.json");
        let mut s = StampFile::load(&record);
        let meta = std::fs::symlink_metadata(&f).unwrap();
        // Just written: not recorded (not settled yet).
        s.record(&f, &meta, "fresh");
        assert!(s.known(&f).is_none());
        // Settled (recorded as if found later): remembered across loads.
        s.entries.insert(
            f.to_string_lossy().into_owned(),
            (stamp(&meta), "remembered".into()),
        );
        s.changed = true;
        s.save();
        let again = StampFile::load(&record);
        assert_eq!(again.known(&f).unwrap().0, "remembered");
        // A write (same size) changes the stamp: not known any more.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&f, b"two").unwrap();
        assert!(again.known(&f).is_none());
        // A sidecar: used while the stamp holds, not once the file changed.
        let side = dir.path().join("artifact.stamp");
        let meta = std::fs::symlink_metadata(&f).unwrap();
        std::fs::write(&side, format!("{} {}\n", stamp_text(&meta), "a".repeat(64))).unwrap();
        assert_eq!(sidecar_digest(&side, &meta), Some("a".repeat(64)));
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&f, b"six").unwrap();
        let changed = std::fs::symlink_metadata(&f).unwrap();
        assert_eq!(sidecar_digest(&side, &changed), None);
        // Not settled: nothing recorded.
        record_sidecar(&side, &changed, &changed, &"b".repeat(64));
        assert_eq!(sidecar_digest(&side, &changed), None);
        // A damaged record is an empty one.
        std::fs::write(&record, b"{not json").unwrap();
        assert!(StampFile::load(&record).known(&f).is_none());
    }
}
