//! `imgbuild vendor gc` and `imgbuild vendor verify`: maintenance of the
//! vendor store (see [`crate::fetch::maintain`]).

use std::path::Path;

use crate::fetch::{Store, maintain, vendor_dir};

pub use crate::fetch::maintain::{CorruptBlob, CorruptBlobs, GcSummary, VerifySummary};

/// Removes every blob (and partial download) of the store that no lock under
/// `<workspace>/locks/*.lock` references. Refuses, removing nothing, when a
/// lock cannot be read or the locks directory is missing.
/// `Display` of the summary is a one-line report.
pub fn gc(workspace: &Path, vendor: Option<&Path>) -> anyhow::Result<GcSummary> {
    let store = Store::open(&vendor_dir(workspace, vendor))?;
    Ok(maintain::gc(&store, &workspace.join("locks"))?)
}

/// Re-hashes every blob; corrupt ones are deleted and listed in
/// [`VerifySummary::corrupt`]. The caller turns them into a non-zero exit
/// with `summary.ensure_clean()?` (its error lists them).
pub fn verify(workspace: &Path, vendor: Option<&Path>) -> anyhow::Result<VerifySummary> {
    let store = Store::open(&vendor_dir(workspace, vendor))?;
    Ok(maintain::verify(&store)?)
}

/// The arguments of `imgbuild vendor push REF RECIPE`.
#[derive(Debug, Clone, Default)]
pub struct PushArgs {
    /// `[oci://]HOST[:PORT]/REPO[:TAG]`; without a tag, the lock's
    /// [`default_tag`](crate::fetch::oci_store::default_tag).
    pub target: String,
    /// Recipe name or path.
    pub recipe: String,
    /// The project directory.
    pub workspace: std::path::PathBuf,
    /// `--vendor DIR`.
    pub vendor: Option<std::path::PathBuf>,
    /// Registry connection options (`--insecure`, `--ca-file`).
    pub transport: crate::registry::TransportOptions,
    /// Index cache holding the lock's InRelease and indexes; `None`: the default.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Blobs uploaded at once.
    pub jobs: usize,
}

/// Uploads every file `locks/RECIPE.lock` pins (they must all be in the
/// vendor store: `imgbuild fetch` first), its signed indexes from the index
/// cache, and one store manifest tagged `TAG`. Must not be called from
/// inside a tokio runtime.
pub fn push(args: &PushArgs) -> anyhow::Result<crate::fetch::oci_store::PushReport> {
    use crate::fetch::oci_store;
    use anyhow::Context;
    let loaded = crate::ops::workspace::Loaded::load(&args.workspace, &args.recipe)?;
    loaded.require(crate::ops::workspace::Demand::Exists)?;
    let lock_bytes = std::fs::read(&loaded.lock_path)
        .with_context(|| format!("reading {}", loaded.lock_path.display()))?;
    // The lock as uploaded, not as it was a moment ago.
    let text = String::from_utf8(lock_bytes.clone())
        .with_context(|| format!("{} is not UTF-8", loaded.lock_path.display()))?;
    let lock = crate::lock::Lockfile::parse(&text, &loaded.lock_path)?;
    let name = &loaded.recipe.name;
    let mut target = oci_store::parse_store_url(&args.target)?;
    if target.digest.is_some() {
        anyhow::bail!(
            "push to a tag or repository, not a digest: `{}`",
            args.target
        );
    }
    if target.tag.is_none() {
        target.tag = Some(oci_store::default_tag(name, &lock_bytes));
    }
    let store = Store::open(&vendor_dir(&args.workspace, args.vendor.as_deref()))?;
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(crate::archive::FetchOptions::default_cache_dir);
    let manifest = oci_store::plan(name, &lock, &lock_bytes, &store, &cache_dir)?;
    let creds = crate::registry::auth::lookup(&target.registry)?;
    let client = crate::registry::Client::new(&target.registry, &args.transport, creds)?;
    let jobs = if args.jobs == 0 {
        oci_store::DEFAULT_JOBS
    } else {
        args.jobs
    };
    let report = crate::http::block_on(oci_store::push::push(&client, &target, &manifest, jobs))??;
    Ok(report)
}
