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
