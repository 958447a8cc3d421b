//! The outputs of a build: every artifact written from the rootfs tar into
//! a temp directory next to `out/RECIPE/`, swapped in when complete.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::core::cpu::Stamp;
use crate::image::disk::DiskOutput;
use crate::image::{self, Manifest};
use crate::ops::progress::PhaseLine;
use crate::rootfs::Reporter as _;
use crate::rootfs::cache::RootfsCache;
use crate::tools::ToolsAhead;

use super::early_disk::{self, EarlyDisk};
use super::{Plan, timing};

impl Plan {
    /// The rootfs cache's path for this build's tar.
    pub(crate) fn rootfs_tar_path(&self) -> PathBuf {
        RootfsCache::new(&self.cache_dir).path_for(&self.recipe.name, &self.rootfs_key)
    }

    /// What the outputs read, for the rootfs tar `tar` and the output
    /// directory `dir`.
    pub(crate) fn context<'a>(
        &'a self,
        tar: &'a Path,
        dir: &'a Path,
        work: &'a Path,
        tools_ahead: Option<&'a ToolsAhead>,
    ) -> image::EmitContext<'a> {
        image::EmitContext {
            recipe: &self.recipe,
            lock: &self.lock,
            store: &self.store,
            cache_dir: &self.cache_dir,
            rootfs_tar: tar,
            dir,
            work,
            source_date_epoch: self.assemble.source_date_epoch,
            rootfs_key: &self.rootfs_key,
            tools_ahead,
        }
    }

    /// Writes every artifact into the empty directory `dir` from the rootfs
    /// tar, working in temp directories under `work`: the recipe's own
    /// outputs first ([`image::outputs_of`]: the ONIE installer, the disk
    /// image), then the common ones and `manifest.json`, which lists them
    /// all (and the wheels built from sdists into the image).
    pub(crate) fn emit(
        &self,
        tar: &Path,
        dir: &Path,
        work: &Path,
        tools_ahead: Option<&ToolsAhead>,
        early_disk: Option<EarlyDisk<'_>>,
    ) -> Result<Manifest> {
        let ctx = self.context(tar, dir, work, tools_ahead);
        let count = image::outputs_of(&self.recipe).len();
        let progress = PhaseLine::for_terminal(self.quiet);
        progress.phase("outputs", Some(count as u64 + 1));
        // The recipe's outputs (mostly the tools tree's programs: mkfs,
        // qemu-img, squashfs) and the common ones (mostly gzip of the OCI
        // layer) are independent files in `dir`: written side by side, on
        // two cores; the manifest then lists them all.
        let info = self.info();
        let (recipe_outputs, common) = std::thread::scope(|scope| {
            let recipe_outputs = scope.spawn(|| -> Result<_> {
                let mut lines = Vec::new();
                let mut timings = Vec::new();
                let started = early_disk.is_some();
                for output in &image::outputs_of(&self.recipe) {
                    if started && output.describe() == DiskOutput::DESCRIPTION {
                        continue;
                    }
                    progress.item(output.describe());
                    let start = Stamp::now();
                    lines.extend(image::outputs::emit_all(
                        std::slice::from_ref(output),
                        &ctx,
                    )?);
                    timings.push(format!("{} {}", output.describe(), timing(start)));
                }
                if started {
                    // Under way since the archive began: shown while waited for.
                    progress.item(DiskOutput::DESCRIPTION);
                }
                if let Some(disk) = early_disk::join(early_disk) {
                    let (disk_lines, disk_timing) = disk?;
                    lines.extend(disk_lines);
                    timings.push(disk_timing);
                }
                Ok((lines, timings))
            });
            let start = Stamp::now();
            let common = behind_the_disk(|| image::emit_common(tar, dir, &info))
                .map(|()| format!("rootfs tar, OCI layout, SBOMs {}", timing(start)));
            let recipe_outputs = recipe_outputs
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (recipe_outputs, common)
        });
        let (lines, mut timings) = recipe_outputs?;
        timings.push(common?);
        progress.item("manifest");
        let start = Stamp::now();
        let mut manifest = image::write_manifest(dir, &info)?;
        timings.push(format!("manifest {}", timing(start)));
        progress.phase_done();
        if !self.quiet {
            for line in lines {
                eprintln!("  {line}");
            }
            eprintln!("  outputs: {}", timings.join(", "));
        }
        if !self.lock.python.is_empty() {
            manifest.python_built = crate::pypi::layer::built_from_tar(tar)?;
            if !manifest.python_built.is_empty() {
                let path = dir.join(image::manifest::FILE_NAME);
                crate::core::atomic::write_atomic(
                    &path,
                    &manifest.to_json(),
                    0o644,
                    crate::core::atomic::Durability::Durable,
                )
                .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Ok(manifest)
    }
}

/// Runs `f` (the common outputs) on a thread of the lowest priority whose
/// rayon pool (the OCI layer's deflate) is of the lowest priority too: the
/// disk image's `mkfs.ext4` and sha256, which end the build, get the cores
/// first. The disk image 4.6–5.0 s → 4.5–4.6 s in three alternated pairs
/// (r2lab-node), the same bytes.
fn behind_the_disk<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                crate::core::scratch::lower_priority();
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(rayon::current_num_threads())
                    .start_handler(|_| crate::core::scratch::lower_priority())
                    .build();
                match pool {
                    Ok(pool) => pool.install(f),
                    Err(_) => f(),
                }
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The temp directory next to `dest` that the outputs are written into.
pub(super) fn outputs_dir(plan: &Plan, dest: &Path) -> Result<tempfile::TempDir> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{}.tmp-", plan.recipe.name))
        .tempdir_in(parent)
        .with_context(|| format!("creating a temp directory in {}", parent.display()))?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", tmp.path().display()))?;
    Ok(tmp)
}

/// Writes every output from `tar` into `tmp` (from [`outputs_dir`]; the disk
/// image may be under way there already, `early_disk`) and swaps it in as
/// `dest`; the previous outputs (if any) are deleted afterwards.
pub(super) fn emit_into(
    plan: &Plan,
    tar: &Path,
    dest: &Path,
    tmp: tempfile::TempDir,
    tools_ahead: Option<&ToolsAhead>,
    early_disk: Option<EarlyDisk<'_>>,
) -> Result<Manifest> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    if !plan.quiet {
        eprintln!("Writing outputs of {}…", plan.recipe.name);
    }
    let manifest = plan.emit(tar, tmp.path(), parent, tools_ahead, early_disk)?;
    let old = image::publish_dir(tmp.path(), dest)?;
    // After an exchange the temp path holds the old outputs, removed with
    // `tmp`; after a plain rename it no longer exists. With the fallback the
    // old outputs were moved aside and are removed here.
    if let Some(old) = old.filter(|o| o != tmp.path()) {
        fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    drop(tmp);
    Ok(manifest)
}
