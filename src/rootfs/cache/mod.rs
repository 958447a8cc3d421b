//! The rootfs cache: the deterministic tar of an assembled root filesystem,
//! kept under a key that hashes every input of the assembly, so a rebuild
//! with unchanged inputs re-emits outputs without assembling again.
//!
//! ```text
//! $IMGBUILD_CACHE/rootfs/        (else <vendor>/../.imgbuild-cache/rootfs/)
//!   RECIPE/<key>.tar             the rootfs tar
//!   RECIPE/<key>.tar.sha256      its sha256, checked before every use
//!   @packages/RECIPE/<key>.tar   the package stage: configured, before the
//!                                recipe's steps and normalisation
//! ```
//!
//! A change to the recipe's steps misses the rootfs entry but hits the
//! package stage, which is restored and finished (steps, normalisation)
//! instead of assembling every package again.
//!
//! Entries appear by atomic rename only. Only the newest key of a recipe is
//! kept (a rootfs tar is large and an older one is rarely wanted again).

use std::fs::{self, File};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::core::growing::Growing;
use crate::core::hashing_writer::HashingFileWriter;
use crate::lock::Lockfile;
use crate::pack::tar::DeviceNode;
use crate::pack::{Compression, OutputError};

/// Environment variable naming the cache directory.
pub const CACHE_ENV: &str = "IMGBUILD_CACHE";

/// Bump when the rootfs or its tar changes for the same inputs, to orphan
/// older cache entries and output directories. v2: the package stage has
/// no initramfs (made once, after the steps).
const KEY_FORMAT: &str = "imgbuild-rootfs-key v2";

/// Everything the assembled rootfs depends on.
#[derive(Debug, Clone)]
pub struct KeyInputs<'a> {
    /// The lock (hashed in its canonical TOML form, so line endings or
    /// formatting of the file do not matter).
    pub lock: &'a Lockfile,
    /// The recipe's canonical hash as of now.
    pub recipe_hash: &'a str,
    /// The recipe's build-steps hash ([`crate::recipe::Recipe::build_hash`]).
    pub steps_hash: &'a str,
    /// SOURCE_DATE_EPOCH.
    pub source_date_epoch: i64,
    /// `/etc/hostname` of the image.
    pub hostname: &'a str,
    /// Whether maintainer scripts run.
    pub run_scripts: bool,
}

/// `sha256:<hex>` over the inputs and this imgbuild's version.
pub fn rootfs_key(inputs: &KeyInputs<'_>) -> String {
    let lock_sha = hex::encode(Sha256::digest(inputs.lock.to_toml().as_bytes()));
    let text = format!(
        "{KEY_FORMAT}\nimgbuild={}\nlock={lock_sha}\nrecipe={}\nsteps={}\nepoch={}\nhostname={}\nrun-scripts={}\n",
        env!("CARGO_PKG_VERSION"),
        inputs.recipe_hash,
        inputs.steps_hash,
        inputs.source_date_epoch,
        inputs.hostname,
        inputs.run_scripts,
    );
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// `sha256:<hex>` of the package stage ([`crate::rootfs::assemble_packages`]):
/// the inputs of [`rootfs_key`] except the recipe's steps, so that a changed
/// step reuses the package assembly. The hostname stays: maintainer scripts
/// see it.
pub fn packages_key(inputs: &KeyInputs<'_>) -> String {
    rootfs_key(&KeyInputs {
        steps_hash: "packages stage: no steps",
        ..inputs.clone()
    })
}

/// Unpacks a tar written by [`crate::pack::tar::write_tree`] (a
/// cached stage) into the empty directory `root`, keeping modes, numeric
/// owners, mtimes, hard links and xattrs.
///
/// Device nodes are not made: each becomes an empty placeholder and is
/// returned, for [`crate::pack::tar::write_tree_with_devices`].
///
/// Directory mtimes are set last, deepest first: the tar crate sets none
/// on directories, and creating their children changes them anyway. A tree
/// restored this way then normalises to the same bytes as one assembled
/// from scratch.
pub fn restore(tar: &Path, root: &Path) -> Result<Vec<DeviceNode>, OutputError> {
    let fail = OutputError::io("restoring the cached stage", tar);
    let file = File::open(tar).map_err(OutputError::io("opening", tar))?;
    let mut archive = restoring(file);
    let mut dirs: Vec<(PathBuf, i64)> = Vec::new();
    let mut devices = Vec::new();
    let result = (|| -> std::io::Result<()> {
        for entry in archive.entries()? {
            restore_entry(&mut entry?, root, &mut dirs, &mut devices)?;
        }
        set_dir_mtimes(root, &dirs)
    })();
    result.map_err(fail)?;
    Ok(devices)
}

/// Sets the access and modification times of `file` to `mtime` (seconds),
/// as a restored tar entry has them.
pub(crate) fn set_mtime(file: &fs::File, mtime: i64) -> std::io::Result<()> {
    let t = rustix::fs::Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::futimens(file, &times).map_err(std::io::Error::from)
}

/// A tar reader that restores what [`restore`] restores.
pub(crate) fn restoring<R: std::io::Read>(r: R) -> tar::Archive<std::io::BufReader<R>> {
    restoring_unbuffered(std::io::BufReader::with_capacity(1 << 20, r))
}

/// [`restoring`] without a buffer of its own: for a tar in memory.
pub(crate) fn restoring_unbuffered<R: std::io::Read>(r: R) -> tar::Archive<R> {
    let mut archive = tar::Archive::new(r);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive
}

/// Restores one entry under `root` (see [`restore`]): a device node
/// becomes a placeholder recorded in `devices`, a directory's mtime is
/// recorded in `dirs` for [`set_dir_mtimes`].
pub(crate) fn restore_entry<R: std::io::Read>(
    entry: &mut tar::Entry<'_, R>,
    root: &Path,
    dirs: &mut Vec<(PathBuf, i64)>,
    devices: &mut Vec<DeviceNode>,
) -> std::io::Result<()> {
    let kind = entry.header().entry_type();
    if let Some(node) = device_node(entry)? {
        let h = entry.header();
        let path = entry.path()?.into_owned();
        devices.push(node);
        if path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(std::io::Error::other(format!(
                "device entry {} leaves the root",
                path.display()
            )));
        }
        let target = root.join(&path);
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)?;
        set_mtime(&file, h.mtime()? as i64)?;
        return Ok(());
    }
    if kind.is_dir() {
        let path = entry.path()?.into_owned();
        dirs.push((path, entry.header().mtime()? as i64));
    }
    entry.unpack_in(root)?;
    Ok(())
}

/// The device node a tar entry stands for, if it is one.
pub(crate) fn device_node<R: std::io::Read>(
    entry: &tar::Entry<'_, R>,
) -> std::io::Result<Option<DeviceNode>> {
    let kind = entry.header().entry_type();
    if !kind.is_character_special() && !kind.is_block_special() {
        return Ok(None);
    }
    let h = entry.header();
    let path = entry.path()?;
    Ok(Some(DeviceNode {
        path: path
            .strip_prefix(".")
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned(),
        block: kind.is_block_special(),
        major: h.device_major()?.unwrap_or(0),
        minor: h.device_minor()?.unwrap_or(0),
        mode: h.mode()? & 0o7777,
        uid: h.uid()? as u32,
        gid: h.gid()? as u32,
    }))
}

/// Sets the recorded directory mtimes, deepest first (creating a child
/// changes its parent's).
pub(crate) fn set_dir_mtimes(root: &Path, dirs: &[(PathBuf, i64)]) -> std::io::Result<()> {
    for (path, mtime) in dirs.iter().rev() {
        let time = rustix::fs::Timespec {
            tv_sec: *mtime,
            tv_nsec: 0,
        };
        let stamps = rustix::fs::Timestamps {
            last_access: time,
            last_modification: time,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            root.join(path),
            &stamps,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    Ok(())
}

/// Bumped when the files written from a rootfs change (not the rootfs):
/// outputs of an older format are then rebuilt, the rootfs cache is kept.
/// 2: `sbom.spdx.json`, purls with `distro`/`upstream`, the OS component.
/// 3: gzip artifacts in content-defined chunks (`pack::pargz`).
const OUTPUTS_FORMAT: &str = "3";

/// `sha256:<hex>` of the outputs: the rootfs key plus the options that
/// change the outputs but not the rootfs. `manifest.json` records it.
pub fn output_key(rootfs_key: &str, compression: Compression) -> String {
    let text = format!(
        "{KEY_FORMAT}\noutputs={OUTPUTS_FORMAT}\nrootfs={rootfs_key}\ncompression={compression:?}\n"
    );
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// The cache directory: `$IMGBUILD_CACHE/rootfs`, else
/// `<vendor>/../.imgbuild-cache/rootfs` (next to the vendor store, so on the
/// same disk as the large files already there).
pub fn default_dir(vendor: &Path) -> PathBuf {
    match std::env::var_os(CACHE_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("rootfs"),
        _ => {
            let parent = vendor.parent().filter(|p| !p.as_os_str().is_empty());
            parent
                .unwrap_or(Path::new("."))
                .join(".imgbuild-cache")
                .join("rootfs")
        }
    }
}

/// The stage cache inside a rootfs cache directory: `@packages` cannot be a
/// recipe name, so it never collides with one.
pub fn stage_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("@packages")
}

/// A rootfs cache rooted at a directory (created on first insert).
#[derive(Debug, Clone)]
pub struct RootfsCache {
    dir: PathBuf,
}

impl RootfsCache {
    /// The cache at `dir`.
    pub fn new(dir: &Path) -> RootfsCache {
        RootfsCache {
            dir: dir.to_path_buf(),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the tar of `recipe` under `key` lives.
    pub fn path_for(&self, recipe: &str, key: &str) -> PathBuf {
        let hex = key.strip_prefix("sha256:").unwrap_or(key);
        self.dir.join(recipe).join(format!("{hex}.tar"))
    }

    /// The cached tar, if present and intact (re-hashed against the sha256
    /// recorded when it was stored; a damaged entry is removed).
    pub fn get(&self, recipe: &str, key: &str) -> Option<PathBuf> {
        let (tar, recorded) = self.recorded(recipe, key)?;
        // Entries are written past the page cache: hashed the same way.
        match crate::core::uncached::hash_file(&tar) {
            Ok((sha, _)) if sha == recorded => {
                crate::core::digest::remember(&tar, &sha);
                Some(tar)
            }
            _ => {
                let _ = fs::remove_file(&tar);
                let _ = fs::remove_file(sidecar(&tar));
                None
            }
        }
    }

    /// The tar stored for `recipe` under `key` and the sha256 recorded for
    /// it, *not* checked: for a caller that checks what it makes of the tar
    /// against that sha256 itself (else [`RootfsCache::get`]).
    pub fn recorded(&self, recipe: &str, key: &str) -> Option<(PathBuf, String)> {
        let tar = self.path_for(recipe, key);
        let recorded = fs::read_to_string(sidecar(&tar)).ok()?;
        Some((tar, recorded.trim().to_string()))
    }

    /// Stores the tar that `make` writes (into the buffered file it is
    /// given) as `recipe`'s entry for `key`, removes the recipe's other
    /// entries, and returns the stored tar's path. Nothing is stored if
    /// `make` fails.
    pub fn insert_with<E: From<OutputError>>(
        &self,
        recipe: &str,
        key: &str,
        make: impl FnOnce(&mut HashingFileWriter) -> Result<(), E>,
    ) -> Result<PathBuf, E> {
        self.insert_reporting(recipe, key, None, make)
    }

    /// As [`RootfsCache::insert_with`], with the entry readable while it is
    /// written through `growing` (see [`Growing`]): attached once the temp
    /// file exists, completed with the entry's path once it is stored, and
    /// failed on every other way out.
    pub fn insert_growing<E: From<OutputError>>(
        &self,
        recipe: &str,
        key: &str,
        growing: &Arc<Growing>,
        make: impl FnOnce(&mut HashingFileWriter) -> Result<(), E>,
    ) -> Result<PathBuf, E> {
        struct FailUnlessComplete<'a>(&'a Growing);
        impl Drop for FailUnlessComplete<'_> {
            fn drop(&mut self) {
                self.0.fail("the rootfs tar was not completed");
            }
        }
        let _guard = FailUnlessComplete(growing);
        let stored = self.insert_reporting(recipe, key, Some(growing), make)?;
        growing.complete(stored.clone());
        Ok(stored)
    }

    fn insert_reporting<E: From<OutputError>>(
        &self,
        recipe: &str,
        key: &str,
        growing: Option<&Arc<Growing>>,
        make: impl FnOnce(&mut HashingFileWriter) -> Result<(), E>,
    ) -> Result<PathBuf, E> {
        let dir = self.dir.join(recipe);
        fs::create_dir_all(&dir).map_err(OutputError::io("creating", &dir))?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .suffix(".tar")
            .tempfile_in(&dir)
            .map_err(OutputError::io("creating a temp file in", &dir))?;
        let (file, tmp_path) = tmp.into_parts();
        // 0644, not the temp file's 0600: `out/RECIPE/rootfs.tar` may be a
        // hard link to this file.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .map_err(OutputError::io("chmod", &tmp_path))?;
        if let Some(g) = growing {
            g.attach(File::open(&tmp_path).map_err(OutputError::io("opening", &tmp_path))?);
        }
        // Hashed as it is written, on another thread, and past the page
        // cache: the package stage is read again only by a later build, if
        // ever; the rootfs tar by its readers as it grows, past it too (a
        // buffered write into new page-cache pages cost more than the tar
        // walk itself on the project's VM: `core::uncached`).
        let mut w = match growing {
            Some(g) => HashingFileWriter::reporting(file, g.clone()),
            None => HashingFileWriter::uncached(file),
        };
        make(&mut w)?;
        // Not synced: a cache entry needs no durability (the sidecar's
        // sha256 is checked before every use, a torn entry is dropped).
        let (file, sha, _) = w.finish().map_err(OutputError::io("writing", &tmp_path))?;
        // But its writeback starts now: an uncompressed `rootfs.tar`
        // artifact is a hard link to it, synced when the outputs are done.
        crate::core::atomic::start_writeback(&file);
        drop(file);
        let dest = self.path_for(recipe, key);
        // The sidecar goes first: a tar without one is never used, and a
        // sidecar without its tar is ignored.
        crate::pack::write_atomic(&sidecar(&dest), format!("{sha}\n").as_bytes())?;
        tmp_path
            .persist(&dest)
            .map_err(|e| OutputError::io("renaming into place", &dest)(e.error))?;
        crate::core::digest::remember(&dest, &sha);
        self.prune(recipe, &dest);
        Ok(dest)
    }

    /// Removes `recipe`'s entries other than `keep` (best effort).
    fn prune(&self, recipe: &str, keep: &Path) {
        let keep_sidecar = sidecar(keep);
        let Ok(entries) = fs::read_dir(self.dir.join(recipe)) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path != keep && path != keep_sidecar && !name.starts_with(".tmp-") {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// `<path>.sha256`: the recorded sha256 of a cache entry (a tar, or a
/// kept tools tree).
pub(crate) fn sidecar(tar: &Path) -> PathBuf {
    let mut name = tar.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests;
