//! The signed files the lock audit reads from the index cache by content:
//! each locked source's InRelease (by the sha256 the lock records) and its
//! index files (by the sha256 and size the signed Release lists).
//!
//! A shared vendor store carries them next to the package files, so that a
//! builder with an empty cache can audit a lock when the archive is out of
//! reach (or has dropped the suite's old InRelease). Putting a file in the
//! cache here trusts nothing: the audit verifies the InRelease's signature
//! with the recipe's keyring and re-hashes every index on read, exactly as
//! for files it downloaded itself.

use std::path::Path;

use super::ArchiveError;
use super::cache::Cache;
use super::release::FileHash;
use crate::core::digest::sha256_hex;
use crate::lock::Lockfile;

/// Largest InRelease accepted from elsewhere (Debian's are ~200 KB).
pub const MAX_INRELEASE: u64 = 16 << 20;

/// What kind of signed file an [`AuditFile`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFileKind {
    /// The source's InRelease (its size is not in the lock).
    InRelease,
    /// A Packages index as listed in the signed Release.
    Index,
}

/// One file the audit of a lock needs, named by content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFile {
    /// The lock source it belongs to.
    pub source: String,
    /// InRelease or index.
    pub kind: AuditFileKind,
    /// `InRelease`, or the index path relative to the suite directory.
    pub path: String,
    /// sha256 (64 lower-case hex digits).
    pub sha256: String,
    /// Size in bytes when the lock records it (indexes).
    pub size: Option<u64>,
}

impl AuditFile {
    /// The most bytes this file may have.
    pub fn limit(&self) -> u64 {
        self.size.unwrap_or(MAX_INRELEASE)
    }
}

/// The InRelease and index files of every source of `lock`, once each by
/// sha256, in lock order. Entries whose sha256 is not 64 hex digits are
/// left out (the audit reports them).
pub fn audit_files(lock: &Lockfile) -> Vec<AuditFile> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for s in &lock.sources {
        let inrelease = AuditFile {
            source: s.name.clone(),
            kind: AuditFileKind::InRelease,
            path: "InRelease".into(),
            sha256: s.inrelease_sha256.to_ascii_lowercase(),
            size: None,
        };
        let indexes = s.indexes.iter().map(|ix| AuditFile {
            source: s.name.clone(),
            kind: AuditFileKind::Index,
            path: ix.path.clone(),
            sha256: ix.sha256.to_ascii_lowercase(),
            size: Some(ix.size),
        });
        for f in std::iter::once(inrelease).chain(indexes) {
            if crate::core::digest::valid_sha256(&f.sha256) && seen.insert(f.sha256.clone()) {
                out.push(f);
            }
        }
    }
    out
}

/// The file's bytes if the cache under `cache_dir` holds it intact.
pub fn read_cached(cache_dir: &Path, file: &AuditFile) -> Result<Option<Vec<u8>>, ArchiveError> {
    let cache = Cache::new(cache_dir);
    match file.kind {
        AuditFileKind::InRelease => Ok(cache.read_inrelease_blob(&file.sha256)),
        AuditFileKind::Index => cache.read_index(&FileHash {
            sha256: file.sha256.clone(),
            size: file.size.unwrap_or(0),
        }),
    }
}

/// Whether the cache holds the file (present with the right name and, for
/// an index, size; the audit re-hashes it anyway).
pub fn is_cached(cache_dir: &Path, file: &AuditFile) -> bool {
    std::fs::metadata(path_of(&Cache::new(cache_dir), file))
        .is_ok_and(|m| m.is_file() && file.size.is_none_or(|s| m.len() == s))
}

/// Puts `data` in the cache as `file`, after checking its sha256 and size
/// (atomically: a reader never sees part of it). Wrong bytes are an error
/// naming the file and nothing is written.
pub fn store_cached(cache_dir: &Path, file: &AuditFile, data: &[u8]) -> Result<(), ArchiveError> {
    let cache = Cache::new(cache_dir);
    let got = sha256_hex(data);
    let size_ok = file.size.is_none_or(|s| s == data.len() as u64);
    if got != file.sha256 || !size_ok || data.len() as u64 > file.limit() {
        return Err(ArchiveError::Cache {
            path: path_of(&cache, file),
            error: std::io::Error::other(format!(
                "source `{}`: {} should be sha256 {}{}, got sha256 {got} ({} bytes); not cached",
                file.source,
                file.path,
                file.sha256,
                file.size
                    .map(|s| format!(" ({s} bytes)"))
                    .unwrap_or_default(),
                data.len()
            )),
        });
    }
    match file.kind {
        AuditFileKind::InRelease => cache.store_inrelease_blob(&file.sha256, data),
        AuditFileKind::Index => cache.store_index(&file.sha256, data),
    }
}

fn path_of(cache: &Cache, file: &AuditFile) -> std::path::PathBuf {
    match file.kind {
        AuditFileKind::InRelease => cache.inrelease_blob_path(&file.sha256),
        AuditFileKind::Index => cache.index_path(&file.sha256),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::{LockedIndex, LockedRecipe, LockedSource};

    fn lock(inrelease: &[u8], index: &[u8]) -> Lockfile {
        Lockfile {
            version: crate::lock::LOCK_VERSION,
            recipe: LockedRecipe {
                name: "r".into(),
                hash: "h".into(),
                architecture: "amd64".into(),
            },
            sources: vec![LockedSource {
                name: "main".into(),
                suite: "/".into(),
                inrelease_sha256: sha256_hex(inrelease),
                date: String::new(),
                snapshot: None,
                signed_by: String::new(),
                indexes: vec![LockedIndex {
                    path: "Packages".into(),
                    sha256: sha256_hex(index),
                    size: index.len() as u64,
                }],
            }],
            packages: vec![],
            python: vec![],
            tools: vec![],
            components: vec![],
        }
    }

    #[test]
    fn round_trip_and_wrong_bytes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let l = lock(b"signed", b"Package: a\n");
        let files = audit_files(&l);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].kind, AuditFileKind::InRelease);
        for f in &files {
            assert!(!is_cached(dir.path(), f));
            assert!(read_cached(dir.path(), f).unwrap().is_none());
        }
        let err = store_cached(dir.path(), &files[1], b"Package: b\n").unwrap_err();
        assert!(
            err.to_string().contains("Packages should be sha256"),
            "{err}"
        );
        assert!(!is_cached(dir.path(), &files[1]));
        store_cached(dir.path(), &files[0], b"signed").unwrap();
        store_cached(dir.path(), &files[1], b"Package: a\n").unwrap();
        assert!(files.iter().all(|f| is_cached(dir.path(), f)));
        assert_eq!(
            read_cached(dir.path(), &files[1]).unwrap().unwrap(),
            b"Package: a\n"
        );
    }
}
