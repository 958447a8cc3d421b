//! One `imgbuild fetch` of a lock: reuse what the store has, adopt what an
//! import directory has, honour `--offline`, download the rest (what every
//! live mirror answers 404 for, from the source's fallback: the snapshot
//! archive), then record the index.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use url::Url;

use super::download::{self, Options};
use super::import;
use super::progress::Progress;
use super::store::{MissingBlob, MissingBlobs, Store};
use super::{Fallback, FetchError, Wanted, wanted_from_lock};
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
    /// Of `fetched`, how many came from a fallback, by its label
    /// (`snapshot 20240601T000000Z`) because the live mirrors no longer had them.
    pub fallback: BTreeMap<String, usize>,
}

impl fmt::Display for FetchSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fetched {}", self.fetched)?;
        if !self.fallback.is_empty() {
            let from: Vec<String> = self
                .fallback
                .iter()
                .map(|(label, n)| format!("{n} from {label}"))
                .collect();
            write!(f, " ({})", from.join(", "))?;
        }
        write!(f, ", reused {}", self.reused)?;
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
    let none = |_: &str| Ok::<_, E>(None);
    fetch_lock_with(store, recipe_name, lock, bases, none, options, progress)
}

/// [`fetch_lock`] with a fallback: a blob for which every live URL
/// answered 404/410 (not a transient failure: those are retried as usual
/// and then fail) is tried again from `fallback(source name)`, asked once
/// per source and only when needed. `Ok(None)`: no fallback, the 404
/// stands; `Err(reason)`: the reason is added to the blob's error.
pub fn fetch_lock_with<E: fmt::Display, F: fmt::Display>(
    store: &Store,
    recipe_name: &str,
    lock: &Lockfile,
    bases: impl FnMut(&str) -> Result<Vec<Url>, E>,
    fallback: impl FnMut(&str) -> Result<Option<Fallback>, F>,
    options: &SessionOptions,
    progress: &Progress,
) -> Result<FetchSummary, FetchError> {
    let wanted = if options.offline {
        wanted_from_lock(lock, |_| Ok::<_, E>(Vec::new()))?
    } else {
        wanted_from_lock(lock, bases)?
    };
    let summary = fetch_wanted_with(store, recipe_name, wanted, fallback, options, progress)?;
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
    let none = |_: &str| Ok::<_, String>(None);
    fetch_wanted_with(store, recipe_name, wanted, none, options, progress)
}

/// [`fetch_wanted`] with the fallback of [`fetch_lock_with`].
pub fn fetch_wanted_with<F: fmt::Display>(
    store: &Store,
    recipe_name: &str,
    wanted: Vec<Wanted>,
    fallback: impl FnMut(&str) -> Result<Option<Fallback>, F>,
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
        let result =
            download_with_fallback(store, missing, fallback, options, progress, &mut summary);
        progress.finish();
        result?;
    }
    summary.elapsed = start.elapsed();
    Ok(summary)
}

/// Downloads `missing` from the live URLs, then what every live URL said
/// is not there from the source's fallback; fills `summary`.
fn download_with_fallback<F: fmt::Display>(
    store: &Store,
    missing: Vec<Wanted>,
    mut fallback: impl FnMut(&str) -> Result<Option<Fallback>, F>,
    options: &SessionOptions,
    progress: &Progress,
    summary: &mut FetchSummary,
) -> Result<(), FetchError> {
    let (report, failed) =
        download::fetch_blocking_detailed(store, missing, &options.download, progress)?;
    summary.fetched += report.fetched;
    summary.bytes += report.bytes;
    let mut errors = Vec::new();
    let mut located: BTreeMap<String, Result<Option<Fallback>, String>> = BTreeMap::new();
    // By fallback label: the blobs to try there, with their live error.
    let mut retry: BTreeMap<String, Vec<(Wanted, FetchError)>> = BTreeMap::new();
    for f in failed {
        if !f.gone {
            errors.push(f.error);
            continue;
        }
        let source = f.wanted.source.clone();
        let fb = located
            .entry(source.clone())
            .or_insert_with(|| fallback(&source).map_err(|e| e.to_string()));
        match fb {
            Ok(None) => errors.push(f.error),
            Err(reason) => errors.push(FetchError::Fallback {
                live: Box::new(f.error),
                label: "the snapshot archive".into(),
                reason: reason.clone(),
            }),
            Ok(Some(fb)) => match fallback_wanted(&f.wanted, fb) {
                Ok(w) => {
                    progress.println(&format!(
                        "{}: gone from the live mirrors; trying {}",
                        w.filename, fb.label
                    ));
                    retry
                        .entry(fb.label.clone())
                        .or_default()
                        .push((w, f.error));
                }
                Err(reason) => errors.push(FetchError::Fallback {
                    live: Box::new(f.error),
                    label: fb.label.clone(),
                    reason,
                }),
            },
        }
    }
    for (label, blobs) in retry {
        let (wanted, live): (Vec<Wanted>, Vec<FetchError>) = blobs.into_iter().unzip();
        let live: BTreeMap<String, FetchError> =
            wanted.iter().map(|w| w.sha256.clone()).zip(live).collect();
        let (report, failed) =
            download::fetch_blocking_detailed(store, wanted, &options.download, progress)?;
        summary.fetched += report.fetched;
        summary.bytes += report.bytes;
        if report.fetched > 0 {
            *summary.fallback.entry(label.clone()).or_default() += report.fetched;
        }
        let mut live = live;
        for f in failed {
            let original = live.remove(&f.wanted.sha256).unwrap_or(FetchError::Source {
                package: f.wanted.package.clone(),
                source_name: f.wanted.source.clone(),
                reason: "gone from the live mirrors".into(),
            });
            errors.push(FetchError::Fallback {
                live: Box::new(original),
                label: label.clone(),
                reason: f.error.to_string(),
            });
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    // Completion order is arbitrary; a stable order makes messages comparable.
    errors.sort_by_cached_key(|e| e.to_string());
    Err(FetchError::Failed(errors))
}

/// `w` with its URLs on `fb` instead of the live mirrors.
fn fallback_wanted(w: &Wanted, fb: &Fallback) -> Result<Wanted, String> {
    let relative = w.filename.trim_start_matches("./");
    let urls = fb
        .bases
        .iter()
        .map(|b| b.join(relative))
        .collect::<Result<Vec<Url>, _>>()
        .map_err(|e| format!("cannot join `{}`: {e}", w.filename))?;
    Ok(Wanted { urls, ..w.clone() })
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
