//! The disk image made while the rootfs tar is still being written.
//!
//! `mkfs.ext4 -d -` reads the rootfs tar once, front to back, and the disk
//! is the longest output; started on the archive's first bytes
//! ([`crate::core::growing`]) instead of after its last, it no longer waits
//! for the archive. The bytes it reads are the same, in the same order, so
//! the disk is too. Only a first build's tar grows: a tar from the cache is
//! complete, and its disk is made with the other outputs.

use std::path::Path;
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use anyhow::{Context, Result};

use crate::core::cpu::Stamp;
use crate::core::growing::Growing;
use crate::image::disk::{DiskOutput, RootfsTar};
use crate::tools::ToolsAhead;

use super::{Plan, timing};

/// The disk image under way: its report lines and its timing.
pub(crate) type EarlyDisk<'scope> = ScopedJoinHandle<'scope, Result<(Vec<String>, String)>>;

/// Starts the disk of `plan`'s recipe, if it has one, reading the rootfs tar
/// that `growing` follows, into the output directory `dir` (temp
/// directories under `work`).
pub(crate) fn start<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    plan: &'env Plan,
    growing: &Arc<Growing>,
    dir: &'env Path,
    work: &'env Path,
    tools_ahead: Option<&'env ToolsAhead>,
) -> Option<EarlyDisk<'scope>> {
    let disk = plan.recipe.disk.as_ref()?;
    let growing = growing.clone();
    Some(scope.spawn(move || {
        // Nothing before the archive's first bytes: until then the tools
        // tree is still being made, and a failed assembly ends the wait.
        growing
            .wait_started()
            .context("the rootfs tar was not written")?;
        let start = Stamp::now();
        // Where the tar will be; the disk itself reads it as it grows.
        let final_tar = plan.rootfs_tar_path();
        let ctx = plan.context(&final_tar, dir, work, tools_ahead);
        let lines = DiskOutput(disk)
            .emit_from(&ctx, &RootfsTar::Growing(growing))
            .with_context(|| format!("writing the disk image of `{}`", plan.recipe.name))?;
        Ok((lines, format!("the disk image {}", timing(start))))
    }))
}

/// The outcome of `early`, if started: the assembly's own error goes first
/// (a disk that could not read the tar says less).
pub(crate) fn join(early: Option<EarlyDisk<'_>>) -> Option<Result<(Vec<String>, String)>> {
    early.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
}
