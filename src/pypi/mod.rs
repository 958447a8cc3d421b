//! The PyPI layer of a lock: `[python]` requirements resolved for the image
//! (not the host) and pinned in the same lock as the Debian packages.
//!
//! - [`config`]: where the `pypi` index is (configuration, never the repo).
//! - [`target`]: the image's interpreter, glibc and machine, from the Debian lock.
//! - [`index`]: PEP 691 pages and PEP 658 metadata, HTTP-cached.
//! - [`candidates`]: per project, which file of which version may be used.
//! - [`provider`] / [`explain`]: the PubGrub encoding (no I/O) and its
//!   explanations; [`resolve`]: the fetch-and-solve driver.
//! - [`fetch`]: lock entries → vendor-store downloads; [`audit`]: lock entries
//!   checked against the index's file hashes (`solve --locked`, `fetch`).
//! - [`install`]: wheels into the image (`/usr/local/lib/python3.X/dist-packages`);
//!   [`sdist`]: opted-in sdists built in the sandbox; [`layer`]: the build hook.

pub mod archive;
pub mod audit;
pub mod candidates;
pub mod config;
mod error;
pub mod explain;
pub mod fetch;
pub mod filename;
pub mod index;
pub mod install;
pub mod layer;
pub mod metadata;
pub mod provider;
pub mod resolve;
pub mod sdist;
pub mod target;

pub use error::PypiError;
pub use resolve::{Resolved, resolve};
pub use target::Target;

use std::collections::HashMap;
use std::path::PathBuf;

use crate::lock::Lockfile;
use crate::recipe::Recipe;
use error::{Context, Result};

/// How `imgbuild solve` reaches the index.
#[derive(Debug, Clone)]
pub struct SolveOptions<'a> {
    /// `--mirror NAME=URL` values (`pypi=URL` is ours).
    pub mirrors: &'a [String],
    /// `--offline`: the index cache only.
    pub offline: bool,
    /// The index cache directory (as for Debian indexes).
    pub cache_dir: PathBuf,
}

/// Resolves the recipe's `[python]` for the image of `lock` (its Debian
/// layer, just solved) and stores the result in `lock.python`. Keeps the
/// versions of `previous` that are still allowed, except for the names in
/// `moving` (all of them when `moving` is `None`). Returns notes to print.
pub fn lock_python(
    recipe: &Recipe,
    lock: &mut Lockfile,
    previous: Option<&Lockfile>,
    moving: Option<&[String]>,
    opts: &SolveOptions<'_>,
) -> Result<Vec<String>> {
    let Some(spec) = &recipe.python else {
        lock.python.clear();
        return Ok(Vec::new());
    };
    let url = config::index_url(opts.mirrors, &|k| std::env::var(k).ok())?;
    let client = index::IndexClient::new(url, &opts.cache_dir, opts.offline)?;
    let prefer: HashMap<String, String> = match (previous, moving) {
        (Some(prev), Some(moving)) => prev
            .python
            .iter()
            .filter(|p| !moving.contains(&p.name))
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect(),
        _ => HashMap::new(),
    };
    let resolved = resolve(spec, lock, &client, prefer)
        .with_context(|| format!("cannot solve `[python]` of `{}`", recipe.name))?;
    lock.python = resolved.python;
    Ok(resolved.notes)
}

/// Audits the `[[python]]` entries of `lock` (read from `lock_path`)
/// against the configured `pypi` index (see [`audit`]); `None` when the lock
/// has none that are not Debian's, so no index needs to be configured.
pub fn audit_lock(
    lock: &Lockfile,
    lock_path: &std::path::Path,
    opts: &SolveOptions<'_>,
) -> Result<Option<audit::PythonAuditReport>> {
    if lock.python.iter().all(|p| p.debian.is_some()) {
        return Ok(None);
    }
    let url = config::index_url(opts.mirrors, &|k| std::env::var(k).ok())
        .context("checking the lock's [[python]] entries against the index")?;
    let client = index::IndexClient::new(url, &opts.cache_dir, opts.offline)?;
    Ok(Some(audit::audit_python(lock, lock_path, &client)?))
}
