//! Store maintenance: `vendor gc` (drop what no lock uses) and `vendor verify`
//! (re-hash everything).

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::FetchError;
use super::store::{Store, hash_file, read_dir_sorted, valid_sha256};
use crate::lock::Lockfile;

/// What `gc` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcSummary {
    /// Locks read.
    pub locks: usize,
    /// Blobs kept (referenced by some lock).
    pub kept: usize,
    /// Blobs removed.
    pub removed: usize,
    /// Bytes freed by removing blobs and stale partial downloads.
    pub freed: u64,
    /// Partial downloads removed (`tmp/`).
    pub partials_removed: usize,
}

impl fmt::Display for GcSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lock(s): kept {} blob(s), removed {} blob(s) and {} partial download(s), freed {:.1} MiB",
            self.locks,
            self.kept,
            self.removed,
            self.partials_removed,
            self.freed as f64 / (1024.0 * 1024.0)
        )
    }
}

/// The sha256 of every package of every `*.lock` directly in `locks_dir`.
///
/// Any unreadable lock is an error: guessing would delete blobs in use.
/// A missing directory is one too, so that a mistyped workspace does not
/// empty the store.
pub fn referenced(locks_dir: &Path) -> Result<(usize, HashSet<String>), FetchError> {
    if !locks_dir.is_dir() {
        return Err(FetchError::UnreadableLock {
            path: locks_dir.to_path_buf(),
            reason: format!("{}: no locks directory", locks_dir.display()),
        });
    }
    let mut locks = 0;
    let mut shas = HashSet::new();
    for path in read_dir_sorted(locks_dir)? {
        if path.extension().is_none_or(|e| e != "lock") {
            continue;
        }
        let lock = Lockfile::read(&path).map_err(|e| FetchError::UnreadableLock {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        locks += 1;
        shas.extend(lock.blobs().into_iter().map(|b| b.sha256.to_string()));
    }
    Ok((locks, shas))
}

/// Removes every blob and partial download that no lock in `locks_dir` references.
pub fn gc(store: &Store, locks_dir: &Path) -> Result<GcSummary, FetchError> {
    let (locks, keep) = referenced(locks_dir)?;
    let mut summary = GcSummary {
        locks,
        ..GcSummary::default()
    };
    for (path, name) in store.blobs()? {
        if keep.contains(&name) && path == store.path_of(&name) {
            summary.kept += 1;
            continue;
        }
        summary.freed += remove(&path)?;
        summary.removed += 1;
    }
    for fan in read_dir_sorted(&store.blob_dir())? {
        // Only succeeds when empty, which is the point.
        let _ = fs::remove_dir(fan);
    }
    for path in read_dir_sorted(&store.tmp_dir())? {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let sha = name.strip_suffix(".part").unwrap_or("");
        if keep.contains(sha) {
            continue; // resumable by the next fetch
        }
        summary.freed += remove(&path)?;
        summary.partials_removed += 1;
    }
    Ok(summary)
}

/// Removes a file (or a stray directory); returns the bytes freed.
fn remove(path: &Path) -> Result<u64, FetchError> {
    let meta = fs::symlink_metadata(path).map_err(FetchError::io(path))?;
    if meta.is_dir() {
        fs::remove_dir_all(path).map_err(FetchError::io(path))?;
        return Ok(0);
    }
    fs::remove_file(path).map_err(FetchError::io(path))?;
    Ok(meta.len())
}

/// A file under `sha256/` whose contents do not match its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptBlob {
    /// The file (already deleted).
    pub path: PathBuf,
    /// What its name says.
    pub expected: String,
    /// sha256 of its contents (or why it could not be read).
    pub actual: String,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifySummary {
    /// Blobs re-hashed.
    pub checked: usize,
    /// Bytes re-hashed.
    pub bytes: u64,
    /// Blobs whose contents did not match their name; they were deleted.
    pub corrupt: Vec<CorruptBlob>,
}

impl VerifySummary {
    /// An error listing the corrupt blobs, if any (for a non-zero exit).
    pub fn ensure_clean(&self) -> Result<(), CorruptBlobs> {
        if self.corrupt.is_empty() {
            Ok(())
        } else {
            Err(CorruptBlobs(self.corrupt.clone()))
        }
    }
}

impl fmt::Display for VerifySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "verified {} blob(s), {:.1} MiB: {} corrupt",
            self.checked,
            self.bytes as f64 / (1024.0 * 1024.0),
            self.corrupt.len()
        )
    }
}

/// Corrupt blobs found (and deleted) by `verify`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CorruptBlobs(pub Vec<CorruptBlob>);

impl fmt::Display for CorruptBlobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} corrupt blob(s) were deleted from the vendor store; `imgbuild fetch RECIPE` \
             downloads them again:",
            self.0.len()
        )?;
        for c in &self.0 {
            write!(
                f,
                "\n  - {}: expected sha256 {}, got {}",
                c.path.display(),
                c.expected,
                c.actual
            )?;
        }
        Ok(())
    }
}

/// Re-hashes every blob; deletes and reports those whose contents do not
/// match their name (or that sit where their name does not belong). A
/// blob's name is its identity, so a mismatching file is useless: deleting
/// it makes the next `fetch` download it again instead of trusting it.
pub fn verify(store: &Store) -> Result<VerifySummary, FetchError> {
    let blobs = store.blobs()?;
    let checked: Vec<(u64, Option<CorruptBlob>)> = blobs
        .par_iter()
        .map(|(path, name)| {
            let corrupt = |actual: String| CorruptBlob {
                path: path.clone(),
                expected: name.clone(),
                actual,
            };
            if !valid_sha256(name) || *path != store.path_of(name) {
                return (0, Some(corrupt("(not a blob name/place)".into())));
            }
            match hash_file(path) {
                Ok((actual, size)) if actual == *name => (size, None),
                Ok((actual, size)) => (size, Some(corrupt(actual))),
                Err(e) => (0, Some(corrupt(format!("unreadable: {e}")))),
            }
        })
        .collect();
    let mut summary = VerifySummary {
        checked: blobs.len(),
        ..VerifySummary::default()
    };
    for (size, corrupt) in checked {
        summary.bytes += size;
        if let Some(c) = corrupt {
            remove(&c.path)?;
            summary.corrupt.push(c);
        }
    }
    Ok(summary)
}
