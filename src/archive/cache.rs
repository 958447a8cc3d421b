//! The on-disk cache: verified index files, content-addressed, and the last
//! verified InRelease of each (location, suite).
//!
//! Layout under the cache directory:
//! - `indexes/sha256/<hex>`: compressed index files as listed in a Release;
//! - `indexes/plain/<hex>`: the same indexes decompressed, keyed by the
//!   compressed file's sha256 — written only after that file was verified, so
//!   a warm solve skips xz entirely (decompression is the slowest step);
//!   `<hex>.stamp` beside one records its sha256 for its inode, size and
//!   modification and change times once it has settled;
//! - `indexes/snapshot/<hex>`: the eager fields of every record plus stanza
//!   offsets into the plain file (see `snapshot.rs`);
//! - `verified/<inrelease hex>-<keyring hex>`: the signer and signed text of
//!   an InRelease already verified with that keyring;
//! - `inrelease/<hex>`: InRelease files, keyed by sha256 of "location\0suite";
//! - `inrelease/sha256/<hex>`: every verified InRelease by its own sha256,
//!   so the lock audit finds a lock's InRelease after the suite moved on;
//!
//! Everything is written to a temporary file in the same directory and
//! renamed, so a reader never sees a partial file. Cached indexes, compressed
//! and decompressed, are re-hashed on read against the signed Release (about
//! 5 ms for bookworm's 8.8 MB main index, 30 ms for its 50 MB text), so a
//! corrupted or altered cache cannot feed unverified data to the solver.
//! A decompressed text whose `.stamp` still matches is not read again (as
//! git's index trusts a file's stat data): any write to it, in place or by
//! rename, moves its change time or inode, which no user can set back, and
//! it is then hashed and checked again.

use std::path::{Path, PathBuf};

use super::ArchiveError;
use super::release::FileHash;
use super::verify::Verified;
use super::window::Plain;
use crate::core::digest::sha256_hex;

/// A cached decompressed index, mapped, and the sha256 of its bytes (not
/// yet compared with anything).
pub(crate) struct HashedPlain {
    map: memmap2::Mmap,
    file: std::fs::File,
    sha256: String,
}

/// The cache rooted at a directory.
#[derive(Clone)]
pub(crate) struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache in `root` (created on first write).
    pub(crate) fn new(root: &Path) -> Cache {
        Cache {
            root: root.to_path_buf(),
        }
    }

    /// Where the index with this (validated, lowercase hex) sha256 lives.
    pub(crate) fn index_path(&self, sha256: &str) -> PathBuf {
        self.root.join("indexes").join("sha256").join(sha256)
    }

    /// The cached index matching `hash`, if present and intact. A file that
    /// does not match is removed: it can only be corruption.
    pub(crate) fn read_index(&self, hash: &FileHash) -> Result<Option<Vec<u8>>, ArchiveError> {
        let path = self.index_path(&hash.sha256);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(ArchiveError::Cache { path, error }),
        };
        if data.len() as u64 != hash.size || sha256_hex(&data) != hash.sha256 {
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
        Ok(Some(data))
    }

    /// Stores a verified index.
    pub(crate) fn store_index(&self, sha256: &str, data: &[u8]) -> Result<(), ArchiveError> {
        write_atomic(&self.index_path(sha256), data)
    }

    /// Where the decompressed form of the index with this sha256 lives.
    pub(crate) fn plain_path(&self, sha256: &str) -> PathBuf {
        self.root.join("indexes").join("plain").join(sha256)
    }

    /// The decompressed index derived from the verified file `sha256`, if
    /// cached and it matches `want`, the signed Release's entry for the
    /// uncompressed index. Mapped rather than read: it is hashed once, then
    /// only the stanzas the solver visits are touched. Without `want` there
    /// is nothing to check a cached text against, so there is no hit; a text
    /// that does not match is removed (it was corrupted or edited).
    pub(crate) fn read_plain(
        &self,
        sha256: &str,
        want: Option<&FileHash>,
    ) -> Result<Option<Plain>, ArchiveError> {
        if want.is_none() {
            return Ok(None);
        }
        let hashed = self.hash_plain(sha256)?;
        Ok(self.accept_plain(sha256, hashed, want))
    }

    /// The cached decompressed index of the verified file `sha256`, mapped,
    /// with its size and sha256: the first half of [`Cache::read_plain`],
    /// for a caller that hashes before it has the signed entry to compare
    /// with (the lock audit, while it checks the signature). Not to be used
    /// before [`Cache::accept_plain`] said yes.
    pub(crate) fn hash_plain(&self, sha256: &str) -> Result<Option<HashedPlain>, ArchiveError> {
        let path = self.plain_path(sha256);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(ArchiveError::Cache { path, error }),
        };
        let err = |error| ArchiveError::Cache {
            path: path.clone(),
            error,
        };
        // Hashed through the descriptor that is then mapped, unless a
        // sidecar recorded its digest for this very inode, size and
        // modification and change times (see `core::stamps`: a text
        // changed since, even in place, is hashed again and checked).
        let before = file.metadata().map_err(err)?;
        let sidecar = path.with_extension("stamp");
        let sha256 = match crate::core::stamps::sidecar_digest(&sidecar, &before) {
            Some(known) => known,
            None => {
                let sha256 = hash_file_released(&file).map_err(err)?;
                if let Ok(after) = file.metadata() {
                    crate::core::stamps::record_sidecar(&sidecar, &before, &after, &sha256);
                }
                sha256
            }
        };
        // SAFETY: cache files are written once by rename and never modified in
        // place; a concurrent writer replaces the directory entry, not this inode.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(err)?;
        sparse(&map);
        Ok(Some(HashedPlain { map, file, sha256 }))
    }

    /// The second half of [`Cache::read_plain`]: `hashed` (of the cached text
    /// of `sha256`) if it matches `want`; a text that does not is removed.
    pub(crate) fn accept_plain(
        &self,
        sha256: &str,
        hashed: Option<HashedPlain>,
        want: Option<&FileHash>,
    ) -> Option<Plain> {
        let (want, hashed) = (want?, hashed?);
        if hashed.map.len() as u64 != want.size || hashed.sha256 != want.sha256 {
            drop(hashed);
            let _ = std::fs::remove_file(self.plain_path(sha256));
            return None;
        }
        Some(Plain {
            text: std::sync::Arc::new(hashed.map),
            file: Some(std::sync::Arc::new(hashed.file)),
        })
    }

    /// Where the result of verifying InRelease `inrelease_sha256` with the
    /// keyring `keyring_sha256` is remembered.
    fn verified_path(&self, inrelease_sha256: &str, keyring_sha256: &str) -> PathBuf {
        self.root
            .join("verified")
            .join(format!("{inrelease_sha256}-{keyring_sha256}"))
    }

    /// A remembered verification: the signer's fingerprint and the signed text.
    pub(crate) fn read_verified(
        &self,
        inrelease_sha256: &str,
        keyring_sha256: &str,
    ) -> Option<Verified> {
        let data =
            std::fs::read_to_string(self.verified_path(inrelease_sha256, keyring_sha256)).ok()?;
        let (fingerprint, signed_text) = data.split_once('\n')?;
        Some(Verified {
            fingerprint: fingerprint.to_string(),
            signed_text: signed_text.to_string(),
        })
    }

    /// Remembers a successful verification.
    pub(crate) fn store_verified(
        &self,
        inrelease_sha256: &str,
        keyring_sha256: &str,
        v: &Verified,
    ) -> Result<(), ArchiveError> {
        let data = format!("{}\n{}", v.fingerprint, v.signed_text);
        write_atomic(
            &self.verified_path(inrelease_sha256, keyring_sha256),
            data.as_bytes(),
        )
    }

    /// Where the record snapshot of the index with this sha256 lives.
    pub(crate) fn snapshot_path(&self, sha256: &str) -> PathBuf {
        self.root.join("indexes").join("snapshot").join(sha256)
    }

    /// The record snapshot of the verified index `sha256`, if cached:
    /// mapped, as a solve reads only the tables and the few records it
    /// looks up (it is checked against its text when opened).
    pub(crate) fn read_snapshot(&self, sha256: &str) -> Option<memmap2::Mmap> {
        let file = std::fs::File::open(self.snapshot_path(sha256)).ok()?;
        // SAFETY: as for `read_plain`: written once by rename, never in place.
        let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        sparse(&map);
        Some(map)
    }

    /// Stores the record snapshot of the verified index `sha256`.
    pub(crate) fn store_snapshot(&self, sha256: &str, data: &[u8]) -> Result<(), ArchiveError> {
        write_atomic(&self.snapshot_path(sha256), data)
    }

    /// Stores the decompressed form of the verified index `sha256`, which
    /// `fill` writes into the (not yet visible) file and checks; the file
    /// appears only if `fill` succeeds.
    pub(crate) fn store_plain_with(
        &self,
        sha256: &str,
        fill: impl FnOnce(&std::fs::File) -> std::io::Result<()>,
    ) -> Result<(), ArchiveError> {
        use crate::core::atomic::{Durability, write_atomic_with};
        let path = self.plain_path(sha256);
        let dir = path.parent().expect("cache paths have a parent");
        std::fs::create_dir_all(dir)
            .and_then(|()| write_atomic_with(&path, 0o644, Durability::Atomic, fill))
            .map_err(|error| ArchiveError::Cache { path, error })
    }

    /// Where the last verified InRelease for `location` and `suite` lives.
    pub(crate) fn inrelease_path(&self, location: &str, suite: &str) -> PathBuf {
        let key = sha256_hex(format!("{location}\0{suite}").as_bytes());
        self.root.join("inrelease").join(key)
    }

    /// The cached InRelease for `location` and `suite`, if any. Callers
    /// verify it again: the keyring may have changed since.
    pub(crate) fn read_inrelease(
        &self,
        location: &str,
        suite: &str,
    ) -> Result<Option<Vec<u8>>, ArchiveError> {
        let path = self.inrelease_path(location, suite);
        match std::fs::read(&path) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(ArchiveError::Cache { path, error }),
        }
    }

    /// Where the InRelease with this sha256 is kept by content.
    pub(super) fn inrelease_blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("inrelease").join("sha256").join(sha256)
    }

    /// The InRelease whose bytes hash to `sha256`, if kept (checked on read).
    pub(crate) fn read_inrelease_blob(&self, sha256: &str) -> Option<Vec<u8>> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let data = std::fs::read(self.inrelease_blob_path(sha256)).ok()?;
        (sha256_hex(&data) == sha256).then_some(data)
    }

    /// Keeps a verified InRelease by content (for auditing locks made from it).
    pub(crate) fn store_inrelease_blob(
        &self,
        sha256: &str,
        data: &[u8],
    ) -> Result<(), ArchiveError> {
        if self.inrelease_blob_path(sha256).exists() {
            return Ok(());
        }
        write_atomic(&self.inrelease_blob_path(sha256), data)
    }

    /// Stores a verified InRelease.
    pub(crate) fn store_inrelease(
        &self,
        location: &str,
        suite: &str,
        data: &[u8],
    ) -> Result<(), ArchiveError> {
        write_atomic(&self.inrelease_path(location, suite), data)
    }
}

/// The sha256 of a file, read (not mapped) in 1 MiB slices: the pages stay
/// in the page cache but never enter the process, so a solve that then
/// touches a few hundred stanzas of the mapped text does not carry the whole
/// 50 MB text in its resident set (a mapping faults in whole page-cache
/// folios, which a text written in large writes is made of).
pub(crate) fn hash_file_released(file: &std::fs::File) -> std::io::Result<String> {
    use sha2::Digest;
    use std::os::unix::fs::FileExt;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = match file.read_at(&mut buf, at) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Tells the kernel a mapped cache file is read in a few scattered places:
/// no read-ahead, and no huge-page mappings. A text written or read in large
/// pieces sits in large page-cache folios, and one touch of a stanza would
/// otherwise map a whole 2 MiB folio into the process; a few hundred touches
/// then map most of a 50 MB text.
pub(crate) fn sparse(map: &memmap2::Mmap) {
    let _ = map.advise(memmap2::Advice::Random);
    let _ = map.advise(memmap2::Advice::NoHugePage);
}

/// Writes a cache file atomically (creating its directory).
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ArchiveError> {
    use crate::core::atomic::{Durability, write_atomic};
    let dir = path.parent().expect("cache paths have a parent");
    std::fs::create_dir_all(dir)
        .and_then(|()| write_atomic(path, data, 0o644, Durability::Atomic))
        .map_err(|error| ArchiveError::Cache {
            path: path.to_path_buf(),
            error,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_round_trip_and_corruption_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let data = b"Package: a\n";
        let hash = FileHash {
            sha256: sha256_hex(data),
            size: data.len() as u64,
        };
        assert!(cache.read_index(&hash).unwrap().is_none());
        cache.store_index(&hash.sha256, data).unwrap();
        assert_eq!(cache.read_index(&hash).unwrap().unwrap(), data);
        // Same size, different content: refused and removed.
        std::fs::write(cache.index_path(&hash.sha256), b"Package: b\n").unwrap();
        assert!(cache.read_index(&hash).unwrap().is_none());
        assert!(!cache.index_path(&hash.sha256).exists());
        // No temporary files left behind.
        let n = std::fs::read_dir(dir.path().join("indexes/sha256"))
            .unwrap()
            .count();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_recorded_text_changed_in_place_is_hashed_again_and_dropped() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let text = b"Package: a\nVersion: 1\n";
        let want = FileHash {
            sha256: sha256_hex(text),
            size: text.len() as u64,
        };
        let key = "0".repeat(64);
        cache
            .store_plain_with(&key, |f| (&*f).write_all(text))
            .unwrap();
        let path = cache.plain_path(&key);
        // A settled stamp, as a read two seconds after the write records it.
        let meta = std::fs::metadata(&path).unwrap();
        let stamp = crate::core::stamps::stamp_text(&meta);
        std::fs::write(
            path.with_extension("stamp"),
            format!("{stamp} {}\n", want.sha256),
        )
        .unwrap();
        assert!(cache.read_plain(&key, Some(&want)).unwrap().is_some());
        // Same size, other bytes, same inode: the change time moved.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all(b"Package: b").unwrap();
        drop(f);
        assert!(cache.read_plain(&key, Some(&want)).unwrap().is_none());
        assert!(!path.exists(), "a text that does not match is removed");
    }

    #[test]
    fn inrelease_is_keyed_by_location_and_suite() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        cache
            .store_inrelease("archive:debian", "bookworm", b"x")
            .unwrap();
        assert_eq!(
            cache
                .read_inrelease("archive:debian", "bookworm")
                .unwrap()
                .unwrap(),
            b"x"
        );
        assert!(
            cache
                .read_inrelease("archive:debian", "trixie")
                .unwrap()
                .is_none()
        );
        assert!(
            cache
                .read_inrelease("archive:other", "bookworm")
                .unwrap()
                .is_none()
        );
    }
}
