//! The image files a recipe asks for beyond the common ones (rootfs tar, OCI
//! layout, package list, SBOMs, manifest), behind one interface that
//! `imgbuild build` iterates. A new output format is one file implementing
//! [`ImageOutput`], its recipe table, and one line in [`outputs_of`].

use std::path::Path;

use crate::fetch::Store;
use crate::lock::Lockfile;
use crate::recipe::Recipe;
use crate::rootfs::cache::RootfsCache;
use crate::tools::{ToolsAhead, ToolsError, ToolsRoot};

use super::ImageError;
use super::error::Context;

/// What every output may read while it writes its files.
#[derive(Debug, Clone, Copy)]
pub struct EmitContext<'a> {
    /// The recipe being built.
    pub recipe: &'a Recipe,
    /// Its lock.
    pub lock: &'a Lockfile,
    /// The vendor store (for the tools tree).
    pub store: &'a Store,
    /// The rootfs cache directory (also holds the tools tree).
    pub cache_dir: &'a Path,
    /// The uncompressed deterministic rootfs tar.
    pub rootfs_tar: &'a Path,
    /// The output directory being filled (published by rename when complete).
    pub dir: &'a Path,
    /// Where temp directories go.
    pub work: &'a Path,
    /// SOURCE_DATE_EPOCH: every timestamp of the outputs.
    pub source_date_epoch: i64,
    /// Key of the assembled rootfs (derives default image versions).
    pub rootfs_key: &'a str,
    /// The tools tree, if its preparation was started ahead ([`ToolsAhead`]).
    pub tools_ahead: Option<&'a ToolsAhead>,
}

impl EmitContext<'_> {
    /// The locked tools tree, assembled (or taken from the cache) on demand.
    pub fn tools(&self) -> Result<ToolsRoot, ToolsError> {
        if let Some(ready) = self.tools_ahead.and_then(ToolsAhead::take) {
            return ready;
        }
        ToolsRoot::prepare(
            self.lock,
            self.store,
            &RootfsCache::new(self.cache_dir),
            self.work,
            self.source_date_epoch,
        )
    }
}

/// One kind of image file made from the rootfs tar.
pub trait ImageOutput {
    /// What it is called in progress lines and error messages.
    fn describe(&self) -> &'static str;

    /// The build key once this output's own format is folded in (templates,
    /// layout versions that the recipe hash does not cover), so changing
    /// them re-emits the outputs; unchanged by default.
    fn extend_key(&self, build_key: &str) -> String {
        build_key.to_string()
    }

    /// Writes this output's files into `ctx.dir`; returns lines for the
    /// build's report.
    fn emit(&self, ctx: &EmitContext<'_>) -> Result<Vec<String>, ImageError>;
}

/// The recipe's own outputs, in the order they are written (the ONIE
/// installer, then the disk image).
pub fn outputs_of(recipe: &Recipe) -> Vec<Box<dyn ImageOutput + '_>> {
    let mut outputs: Vec<Box<dyn ImageOutput + '_>> = Vec::new();
    if let Some(onie) = &recipe.onie {
        outputs.push(Box::new(super::onie::OnieOutput(onie)));
    }
    if let Some(disk) = &recipe.disk {
        outputs.push(Box::new(super::disk::DiskOutput(disk)));
    }
    outputs
}

/// Whether any output of `recipe` runs the locked tools tree (the disk image).
pub fn needs_tools(recipe: &Recipe) -> bool {
    recipe.disk.is_some()
}

/// Writes every output of `outputs`, each error naming the output and recipe.
pub fn emit_all(
    outputs: &[Box<dyn ImageOutput + '_>],
    ctx: &EmitContext<'_>,
) -> Result<Vec<String>, ImageError> {
    let mut lines = Vec::new();
    for output in outputs {
        let what = output.describe();
        lines.extend(
            output
                .emit(ctx)
                .with_context(|| format!("writing {what} of `{}`", ctx.recipe.name))?,
        );
    }
    Ok(lines)
}
