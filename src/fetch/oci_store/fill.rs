//! Filling the vendor store (and the index cache) from a store registry.
//!
//! Each missing file is asked for by the digest the lock gives it
//! (`GET /v2/REPO/blobs/sha256:…`); a 404 leaves it to the archive mirrors.
//! The reply is hostile until checked: its announced size must be the
//! lock's, it may not send more than that, and the bytes must hash to the
//! lock's sha256 as they stream into a temp file under the store's `tmp/`,
//! which is renamed into `sha256/` ([`Store::commit`]) only then. Anything
//! else is an error naming the file and the URL, and nothing is stored.

use std::fmt;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use super::OciStoreError;
use crate::archive::kept::{self, AuditFile};
use crate::fetch::store::Store;
use crate::lock::Lockfile;
use crate::registry::{Client, Reference};

/// What a fill took from the registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FillReport {
    /// `HOST[:PORT]/REPO`.
    pub store: String,
    /// Files stored (vendor store blobs and index cache files).
    pub files: usize,
    /// Bytes received.
    pub bytes: u64,
    /// Files the registry does not have (left to the mirrors).
    pub absent: usize,
    /// Wall time.
    pub elapsed: Duration,
}

impl FillReport {
    /// Adds `other`'s counts to this report.
    pub fn merge(&mut self, other: &FillReport) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.absent += other.absent;
        self.elapsed += other.elapsed;
    }
}

impl fmt::Display for FillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = self.bytes as f64 / (1024.0 * 1024.0);
        write!(
            f,
            "store {}: {} file(s) taken ({mib:.1} MiB), {} not there, in {:.1} s",
            self.store,
            self.files,
            self.absent,
            self.elapsed.as_secs_f64()
        )
    }
}

/// One file to take, with where it goes.
struct Want<'a> {
    label: String,
    sha256: &'a str,
    size: u64,
}

/// The outcome of one file.
enum Got {
    Stored(u64),
    Absent,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OciStoreError + '_ {
    move |source| OciStoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Streams one blob into a temp file of the store's `tmp/`, then commits it.
async fn take_blob(
    client: &Client,
    at: &str,
    repo: &str,
    store: &Store,
    w: &Want<'_>,
) -> Result<Got, OciStoreError> {
    let tmp_dir = store.tmp_dir();
    let tmp = tempfile::Builder::new()
        .prefix(".store-")
        .suffix(".tmp")
        .tempfile_in(&tmp_dir)
        .map_err(io_err(&tmp_dir))?;
    let digest = format!("sha256:{}", w.sha256);
    let mut out = BufWriter::with_capacity(1 << 20, tmp.as_file());
    let found = client
        .get_blob_into(repo, &digest, w.size, &mut out, tmp.path())
        .await
        .map_err(|source| OciStoreError::Registry {
            what: format!("{} ({} bytes) from {at}", w.label, w.size),
            source,
        })?;
    if !found {
        return Ok(Got::Absent);
    }
    out.flush()
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io_err(tmp.path()))?;
    drop(out);
    let path = tmp.into_temp_path();
    store.commit(&path, w.sha256)?;
    // Renamed away: nothing left to delete.
    let _ = path.keep();
    Ok(Got::Stored(w.size))
}

/// Takes every file of `lock` that `store` lacks from the registry
/// repository `target`, `jobs` at a time. Files the registry does not have
/// are counted in [`FillReport::absent`]; any other failure of any file is
/// an error listing them all (what did arrive intact stays stored).
pub async fn fill_blobs(
    client: &Client,
    target: &Reference,
    store: &Store,
    lock: &Lockfile,
    jobs: usize,
) -> Result<FillReport, OciStoreError> {
    let start = Instant::now();
    let at = format!("{}/{}", target.registry, target.repository);
    let blobs = lock.blobs();
    let wanted: Vec<Want> = blobs
        .iter()
        .filter(|b| crate::core::digest::valid_sha256(b.sha256))
        .filter(|b| !store.contains(b.sha256, b.size))
        .map(|b| Want {
            label: format!("{} `{}`", b.section, b.label),
            sha256: b.sha256,
            size: b.size,
        })
        .collect();
    let mut report = FillReport {
        store: at.clone(),
        ..FillReport::default()
    };
    if wanted.is_empty() {
        return Ok(report);
    }
    store.create_dirs()?;
    let repo = target.repository.as_str();
    let results: Vec<Result<Got, OciStoreError>> = stream::iter(&wanted)
        .map(|w| take_blob(client, &at, repo, store, w))
        .buffer_unordered(jobs.max(1))
        .collect()
        .await;
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(Got::Stored(n)) => {
                report.files += 1;
                report.bytes += n;
            }
            Ok(Got::Absent) => report.absent += 1,
            Err(e) => errors.push(e),
        }
    }
    report.elapsed = start.elapsed();
    if errors.is_empty() {
        Ok(report)
    } else {
        Err(OciStoreError::Failed(errors))
    }
}

/// Takes the InRelease and index files of `lock` that the index cache at
/// `cache_dir` lacks (see [`crate::archive::kept`]); each is checked
/// against the lock's sha256 (and size) before it is cached, and the audit
/// verifies them again as it would its own downloads.
pub async fn fill_audit_files(
    client: &Client,
    target: &Reference,
    cache_dir: &Path,
    lock: &Lockfile,
) -> Result<FillReport, OciStoreError> {
    let start = Instant::now();
    let at = format!("{}/{}", target.registry, target.repository);
    let repo = target.repository.as_str();
    let mut report = FillReport {
        store: at.clone(),
        ..FillReport::default()
    };
    let missing: Vec<AuditFile> = kept::audit_files(lock)
        .into_iter()
        .filter(|f| !kept::is_cached(cache_dir, f))
        .collect();
    let mut errors = Vec::new();
    for f in missing {
        let digest = format!("sha256:{}", f.sha256);
        let what = format!("source `{}` {}", f.source, f.path);
        let got = match f.size {
            Some(size) => {
                let mut bytes = Vec::new();
                let path = cache_dir.join(&f.path);
                client
                    .get_blob_into(repo, &digest, size, &mut bytes, &path)
                    .await
                    .map(|found| found.then_some(bytes))
            }
            None => {
                client
                    .get_blob_limited(repo, &digest, f.limit() as usize)
                    .await
            }
        };
        match got {
            Ok(Some(bytes)) => {
                kept::store_cached(cache_dir, &f, &bytes)?;
                report.files += 1;
                report.bytes += bytes.len() as u64;
            }
            Ok(None) => report.absent += 1,
            Err(source) => errors.push(OciStoreError::Registry {
                what: format!("{what} from {at}"),
                source,
            }),
        }
    }
    report.elapsed = start.elapsed();
    if errors.is_empty() {
        Ok(report)
    } else {
        Err(OciStoreError::Failed(errors))
    }
}
