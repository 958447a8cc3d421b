//! `imgbuild fetch RECIPE`: put every package file of the recipe's lock into
//! the vendor store, verified against the lock.
//!
//! The heavy lifting is in [`crate::fetch`]; this module resolves the
//! workspace paths, the recipe, the lock and the mirrors.

use std::path::{Path, PathBuf};

use anyhow::bail;
use url::Url;

use crate::archive::mirror::Mirrors;
use crate::fetch::session::{SessionOptions, fetch_lock};
use crate::fetch::{Options, Progress, Store, vendor_dir};
use crate::lock::Lockfile;
use crate::recipe::Recipe;

pub use crate::fetch::FetchSummary;

/// Where `--mirror` flags are complemented from (the host's apt sources).
const APT_DIR: &str = "/etc/apt";

/// Default number of parallel downloads.
pub const DEFAULT_JOBS: usize = 8;

/// The arguments of `imgbuild fetch`.
#[derive(Debug, Clone, Default)]
pub struct FetchArgs {
    /// Recipe name or path (as for `Recipe::load`).
    pub recipe: String,
    /// The project directory (`-C`).
    pub workspace: PathBuf,
    /// `--vendor DIR`; else `$IMGBUILD_VENDOR`, else `<workspace>/vendor`.
    pub vendor: Option<PathBuf>,
    /// `--jobs N`: parallel downloads; 0 means [`DEFAULT_JOBS`].
    pub jobs: usize,
    /// `--mirror NAME=URL`, repeatable.
    pub mirrors: Vec<String>,
    /// `--verify`: re-hash blobs already in the store (corrupt ones are replaced).
    pub verify: bool,
    /// `--import DIR`: adopt matching `.deb` files (e.g. `/var/cache/apt/archives`).
    pub import: Option<PathBuf>,
    /// `--offline`: never use the network; fail listing what is missing.
    pub offline: bool,
    /// `--quiet`: no progress bars, no summary line.
    pub quiet: bool,
}

/// Runs the fetch. Draws progress on a terminal and prints the one-line
/// summary on stderr (both unless `quiet`); the caller need not print it.
/// Must not be called from inside a tokio runtime (it runs its own).
pub fn run(args: &FetchArgs) -> anyhow::Result<FetchSummary> {
    let recipe = Recipe::load(&args.workspace, &args.recipe)?;
    let lock_path = args
        .workspace
        .join("locks")
        .join(format!("{}.lock", recipe.name));
    if !lock_path.is_file() {
        bail!(
            "{}: no lock for recipe `{}`; run `imgbuild solve {}` first",
            lock_path.display(),
            recipe.name,
            args.recipe
        );
    }
    let lock = Lockfile::read(&lock_path)?;
    if let Some(why) = lock.is_stale_for(&recipe)
        && !args.quiet
    {
        eprintln!(
            "warning: {} is stale ({why}); fetching what it pins (run `imgbuild solve {}` to refresh it)",
            lock_path.display(),
            args.recipe
        );
    }
    let store = Store::open(&vendor_dir(&args.workspace, args.vendor.as_deref()))?;
    // Offline, mirrors are not even configured: a missing mirror must not
    // stop a fetch that needs no network.
    let mirrors = if args.offline {
        None
    } else {
        Some(Mirrors::new(&args.mirrors, Path::new(APT_DIR))?)
    };
    let bases = |name: &str| -> Result<Vec<Url>, String> {
        let source = recipe.source(name).ok_or_else(|| {
            format!(
                "the lock names source `{name}` but recipe `{}` has none by that name; re-solve",
                recipe.name
            )
        })?;
        let mirrors = mirrors.as_ref().ok_or("offline")?;
        mirrors.resolve(source).map_err(|e| e.to_string())
    };
    let options = SessionOptions {
        download: Options {
            jobs: if args.jobs == 0 { DEFAULT_JOBS } else { args.jobs },
            ..Options::default()
        },
        verify: args.verify,
        import: args.import.clone(),
        offline: args.offline,
    };
    let progress = Progress::for_terminal(args.quiet);
    let summary = fetch_lock(&store, &recipe.name, &lock, bases, &options, &progress)?;
    if !args.quiet {
        eprintln!("{summary}");
    }
    Ok(summary)
}
