//! One `imgbuild fetch` of a lock: reuse what the store has, adopt what an
//! import directory has, honour `--offline`, download the rest, then record
//! the index.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use url::Url;

use super::download::{self, Options};
use super::import;
use super::progress::Progress;
use super::store::{MissingBlob, MissingBlobs, Store};
use super::{FetchError, Wanted, wanted_from_lock};
use crate::lock::Lockfile;

/// Settings of one fetch beyond the download ones.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Download settings (jobs, retries, timeouts).
    pub download: Options,
    /// Re-hash blobs already in the store instead of trusting their name and
    /// size; corrupt ones are deleted and fetched again.
    pub verify: bool,
    /// Adopt matching `.deb` files from this directory before downloading.
    pub import: Option<PathBuf>,
    /// Never use the network: fail, listing what is missing, instead.
    pub offline: bool,
}

/// What a fetch did. `Display` is the one-line summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchSummary {
    /// Blobs downloaded.
    pub fetched: usize,
    /// Blobs that were already in the store.
    pub reused: usize,
    /// Blobs adopted from the import directory.
    pub imported: usize,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl fmt::Display for FetchSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fetched {}, reused {}", self.fetched, self.reused)?;
        if self.imported > 0 {
            write!(f, ", imported {}", self.imported)?;
        }
        let mib = self.bytes as f64 / (1024.0 * 1024.0);
        write!(f, ", {mib:.1} MiB in {:.1} s", self.elapsed.as_secs_f64())
    }
}

/// Fetches every package of `lock` into `store` and writes
/// `index/RECIPE.json`. `bases(source name)` gives a source's base URLs; it
/// is not called with `offline`.
pub fn fetch_lock<E: fmt::Display>(
    store: &Store,
    recipe_name: &str,
    lock: &Lockfile,
    bases: impl FnMut(&str) -> Result<Vec<Url>, E>,
    options: &SessionOptions,
    progress: &Progress,
) -> Result<FetchSummary, FetchError> {
    let wanted = if options.offline {
        wanted_from_lock(lock, |_| Ok::<_, E>(Vec::new()))?
    } else {
        wanted_from_lock(lock, bases)?
    };
    let summary = fetch_wanted(store, recipe_name, wanted, options, progress)?;
    store.write_index(recipe_name, lock)?;
    Ok(summary)
}

/// The core of [`fetch_lock`] on explicit blobs (no lock, no index).
pub fn fetch_wanted(
    store: &Store,
    recipe_name: &str,
    wanted: Vec<Wanted>,
    options: &SessionOptions,
    progress: &Progress,
) -> Result<FetchSummary, FetchError> {
    let start = Instant::now();
    let total = wanted.len();
    let mut summary = FetchSummary::default();

    let present: Vec<bool> = wanted
        .par_iter()
        .map(|w| present(store, w, options.verify))
        .collect::<Result<_, _>>()?;
    let mut missing: Vec<Wanted> = Vec::new();
    for (w, here) in wanted.into_iter().zip(present) {
        if here {
            summary.reused += 1;
        } else {
            missing.push(w);
        }
    }

    if let Some(dir) = &options.import
        && !missing.is_empty()
    {
        summary.imported = import::import_dir(store, dir, &missing)?.adopted;
        missing.retain(|w| !store.contains(&w.sha256, w.size));
    }

    if options.offline && !missing.is_empty() {
        return Err(FetchError::Offline(MissingBlobs {
            recipe: recipe_name.to_string(),
            store: store.root().to_path_buf(),
            total,
            missing: missing
                .iter()
                .map(|w| MissingBlob {
                    package: w.package.clone(),
                    filename: w.filename.clone(),
                    sha256: w.sha256.clone(),
                    size: w.size,
                })
                .collect(),
        }));
    }

    if !missing.is_empty() {
        let report = download::fetch_blocking(store, missing, &options.download, progress);
        progress.finish();
        let report = report?;
        summary.fetched = report.fetched;
        summary.bytes = report.bytes;
    }
    summary.elapsed = start.elapsed();
    Ok(summary)
}

/// Whether `w` is in the store; with `verify`, re-hashes it and deletes it when corrupt.
fn present(store: &Store, w: &Wanted, verify: bool) -> Result<bool, FetchError> {
    if !verify {
        return Ok(store.contains(&w.sha256, w.size));
    }
    if store.verify_blob(&w.sha256, w.size)? {
        return Ok(true);
    }
    store.remove_blob(&w.sha256)?;
    Ok(false)
}
