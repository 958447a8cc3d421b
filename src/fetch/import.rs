//! Adopting `.deb` files that are already on disk (`--import DIR`, e.g.
//! `/var/cache/apt/archives`) into the store, by hash.
//!
//! File names are not trusted (apt's cache mangles epochs, anyone can rename
//! a file): a file is adopted only when its sha256 is one the lock wants. Only
//! files whose size matches a wanted entry are read at all.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::store::{Store, read_dir_sorted};
use super::{FetchError, Wanted};

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// `.deb` files whose size matched a wanted entry (and were hashed).
    pub hashed: usize,
    /// Blobs added to the store.
    pub adopted: usize,
    /// Bytes added to the store.
    pub bytes: u64,
}

/// Copies every `.deb` directly in `dir` whose sha256 is wanted (and not yet
/// stored) into `store`. Unreadable or non-matching files are skipped; only
/// failures to write the store are errors.
pub fn import_dir(
    store: &Store,
    dir: &Path,
    wanted: &[Wanted],
) -> Result<ImportReport, FetchError> {
    let mut by_size: HashMap<u64, HashSet<&str>> = HashMap::new();
    for w in wanted.iter().filter(|w| !store.contains(&w.sha256, w.size)) {
        by_size.entry(w.size).or_default().insert(w.sha256.as_str());
    }
    if by_size.is_empty() {
        return Ok(ImportReport::default());
    }
    let candidates: Vec<(PathBuf, u64)> = read_dir_sorted(dir)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .filter_map(|p| {
            let meta = std::fs::metadata(&p).ok()?;
            (meta.is_file() && by_size.contains_key(&meta.len())).then_some((p, meta.len()))
        })
        .collect();
    if candidates.is_empty() {
        return Ok(ImportReport::default());
    }
    store.create_dirs()?;
    let results: Vec<Result<Option<u64>, FetchError>> = candidates
        .par_iter()
        .map(|(path, size)| adopt(store, path, &by_size[size]))
        .collect();
    let mut report = ImportReport {
        hashed: candidates.len(),
        ..ImportReport::default()
    };
    for result in results {
        if let Some(bytes) = result? {
            report.adopted += 1;
            report.bytes += bytes;
        }
    }
    Ok(report)
}

/// Copies `path` into a temp file while hashing it; commits it when the hash
/// is one of `wanted`. `Ok(None)` when it is not (or cannot be read).
fn adopt(store: &Store, path: &Path, wanted: &HashSet<&str>) -> Result<Option<u64>, FetchError> {
    let Ok(mut input) = File::open(path) else {
        return Ok(None);
    };
    let tmp_dir = store.tmp_dir();
    let mut temp = tempfile::Builder::new()
        .prefix("import-")
        .tempfile_in(&tmp_dir)
        .map_err(FetchError::io(&tmp_dir))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(None),
        };
        hasher.update(&buf[..n]);
        temp.write_all(&buf[..n])
            .map_err(FetchError::io(temp.path()))?;
        size += n as u64;
    }
    let sha256 = hex::encode(hasher.finalize());
    if !wanted.contains(sha256.as_str()) {
        return Ok(None);
    }
    temp.as_file()
        .sync_all()
        .map_err(FetchError::io(temp.path()))?;
    // `commit` renames; the TempPath's own cleanup then finds nothing to delete.
    let temp_path = temp.into_temp_path();
    store.commit(&temp_path, &sha256)?;
    Ok(Some(size))
}
