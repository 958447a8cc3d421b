//! The vendor store: every package file of a lock, downloaded once, verified
//! against the lock's sha256 and kept under its hash (`imgbuild fetch`).
//!
//! - [`store`]: the content-addressed layout and [`Store::require`], the
//!   network-free check later stages use.
//! - [`download`]: parallel, resumable, retried, verified downloads.
//! - [`import`]: adopting matching `.deb` files from a local directory.
//! - [`session`]: one `fetch` of a lock (reuse, import, offline, download,
//!   the snapshot fallback for files gone from the live mirrors, index).
//! - [`maintain`]: `vendor gc` and `vendor verify`.
//! - [`oci_store`]: the store shared through an OCI registry (`vendor push`,
//!   `--mirror store=oci://…`).
//! - [`progress`]: terminal progress bars.
//!
//! The core works on [`Wanted`] blobs and does not depend on how recipes and
//! mirrors are resolved; [`wanted_from_lock`] is the bridge from a lock.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use url::Url;

mod attempt;
pub mod download;
mod error;
pub mod import;
pub mod maintain;
pub mod oci_store;
pub mod progress;
pub mod session;
pub mod store;

pub use download::{Failed, Options, Report};
pub use error::FetchError;
pub use progress::Progress;
pub use session::{FetchSummary, SessionOptions};
pub use store::{MissingBlob, MissingBlobs, Store};

use crate::lock::Lockfile;

/// Environment variable naming the vendor store directory.
pub const VENDOR_ENV: &str = "IMGBUILD_VENDOR";

/// The vendor store directory: `flag` (`--vendor DIR`), else `$IMGBUILD_VENDOR`,
/// else `<workspace>/vendor`.
pub fn vendor_dir(workspace: &Path, flag: Option<&Path>) -> PathBuf {
    if let Some(dir) = flag {
        return dir.to_path_buf();
    }
    match std::env::var_os(VENDOR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace.join("vendor"),
    }
}

/// One blob to put in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// `name version architecture`, for messages.
    pub package: String,
    /// Recipe source name, for messages.
    pub source: String,
    /// Archive-relative file name (`pool/main/h/hello/hello_1_amd64.deb`).
    pub filename: String,
    /// Expected size in bytes.
    pub size: u64,
    /// Expected sha256 (64 lower-case hex digits).
    pub sha256: String,
    /// Where to get it, tried in order.
    pub urls: Vec<Url>,
}

/// Where blobs that every live mirror of a source answered 404 for may
/// still be had: the snapshot archive at the lock's time (see
/// [`session::fetch_lock_with`]). Verified like any other download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// What the summary calls it: `snapshot 20240601T000000Z`.
    pub label: String,
    /// Base URLs (ending in `/`) the archive-relative file names are joined to.
    pub bases: Vec<Url>,
}

impl Wanted {
    /// The last path component of the file name (progress bar label).
    pub fn label(&self) -> &str {
        self.filename.rsplit('/').next().unwrap_or(&self.filename)
    }
}

/// The blobs of `lock`, each with its URLs: `bases(source name)` gives the
/// base URLs (ending in `/`) of a source, and the package's `filename` is
/// joined onto each. `bases` is called once per source. Entries with the same
/// sha256 are fetched once.
///
/// Fails on an invalid sha256 (it would name a path outside the store), a
/// file name that is not archive-relative, or a source `bases` rejects.
pub fn wanted_from_lock<E: std::fmt::Display>(
    lock: &Lockfile,
    mut bases: impl FnMut(&str) -> Result<Vec<Url>, E>,
) -> Result<Vec<Wanted>, FetchError> {
    let mut resolved: BTreeMap<String, Vec<Url>> = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for p in &lock.packages {
        let package = format!("{} {} {}", p.name, p.version, p.architecture);
        if !store::valid_sha256(&p.sha256) {
            return Err(FetchError::BadHash {
                package,
                sha256: p.sha256.clone(),
            });
        }
        if !seen.insert(p.sha256.as_str()) {
            continue;
        }
        let source_error = |reason: String| FetchError::Source {
            package: package.clone(),
            source_name: p.source.clone(),
            reason,
        };
        if !resolved.contains_key(&p.source) {
            let urls = bases(&p.source).map_err(|e| source_error(e.to_string()))?;
            resolved.insert(p.source.clone(), urls);
        }
        let relative = p.filename.trim_start_matches("./");
        if relative.starts_with('/') || relative.split('/').any(|c| c == "..") {
            let reason = format!("file name `{}` is not archive-relative", p.filename);
            return Err(source_error(reason));
        }
        let urls = resolved[&p.source]
            .iter()
            .map(|base| base.join(relative))
            .collect::<Result<Vec<Url>, _>>()
            .map_err(|e| source_error(format!("cannot join `{}`: {e}", p.filename)))?;
        out.push(Wanted {
            package,
            source: p.source.clone(),
            filename: p.filename.clone(),
            size: p.size,
            sha256: p.sha256.clone(),
            urls,
        });
    }
    Ok(out)
}
