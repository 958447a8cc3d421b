//! Reproducible build outputs: everything `imgbuild build` writes from an
//! assembled root filesystem.
//!
//! - [`oci`]: an OCI image layout (image-spec 1.1) with one layer;
//! - [`pkglist`]: `packages.txt` and a CycloneDX SBOM from the lock;
//! - [`spdx`]: the SPDX 2.3 SBOM from the lock;
//! - [`manifest`]: `manifest.json`, every artifact with its size and sha256;
//! - [`compare`]: naming the differences between two builds;
//! - [`disk`]: the bootable raw/qcow2 disk of recipes with `[disk]`, made
//!   with the locked tools tree ([`crate::tools`]);
//! - [`onie`]: the ONIE installer (`.bin` and `fs.squashfs`) of recipes
//!   with `[onie]`.
//!
//! The archive primitives (deterministic tar, compression) are in
//! [`crate::pack`].
//!
//! [`emit`] writes a whole output directory from a rootfs tar and publishes it
//! with an atomic rename, so a reader sees the old directory or the complete
//! new one, never a half-written one. Same tar and inputs → same bytes in
//! every artifact.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod compare;
pub mod disk;
mod error;
pub mod manifest;
pub mod oci;
pub mod onie;
pub mod outputs;
pub mod pkglist;
pub mod spdx;

pub use crate::pack::{Compression, HashingWriter, OutputError, write_atomic};
pub use error::ImageError;
pub use manifest::{Artifact, Manifest};
pub use outputs::{EmitContext, ImageOutput, needs_tools, outputs_of};

use crate::lock::Lockfile;
use crate::pack::chunks::ChunkCache;

/// What the output files record about the image besides its contents.
#[derive(Debug, Clone)]
pub struct ImageInfo<'a> {
    /// The lock the image was built from (package list, SBOM, architecture).
    pub lock: &'a Lockfile,
    /// SOURCE_DATE_EPOCH: every timestamp in the outputs.
    pub source_date_epoch: i64,
    /// `sha256:…` of every input of the build (see `build::cache`), recorded in
    /// `manifest.json` so an unchanged rebuild can be recognised.
    pub build_key: String,
    /// Compression of the `rootfs.tar*` artifact.
    pub compression: Compression,
    /// Deflated chunks of earlier builds (and of this one's speculative
    /// work) that gzip artifacts may reuse; `None`: deflate everything.
    pub chunks: Option<Arc<ChunkCache>>,
}

/// File name of the rootfs tar artifact for a compression.
pub fn rootfs_file_name(compression: Compression) -> String {
    format!("rootfs.tar{}", compression.extension())
}

/// Writes every artifact of an image into `dir` (which must exist and hold
/// nothing but the recipe's extra artifacts, e.g. the ONIE installer, which
/// the manifest then lists too) from the uncompressed deterministic rootfs tar at `rootfs_tar`:
///
/// ```text
/// rootfs.tar[.gz|.zst]   the root filesystem
/// oci/                   OCI image layout (one gzip layer: the same tar)
/// packages.txt           `name version architecture` per locked package
/// sbom.cdx.json          CycloneDX SBOM with deb purls
/// sbom.spdx.json         SPDX 2.3 SBOM, the same packages
/// manifest.json          every file above with size and sha256
/// ```
pub fn emit(rootfs_tar: &Path, dir: &Path, info: &ImageInfo<'_>) -> Result<Manifest, OutputError> {
    emit_common(rootfs_tar, dir, info)?;
    write_manifest(dir, info)
}

/// The files of [`emit`] but `manifest.json`: it can run while other
/// outputs are written into `dir`, and [`write_manifest`] then lists them all.
pub fn emit_common(rootfs_tar: &Path, dir: &Path, info: &ImageInfo<'_>) -> Result<(), OutputError> {
    let rootfs = dir.join(rootfs_file_name(info.compression));
    copy_compressed(rootfs_tar, &rootfs, info.compression, info.chunks.clone())?;

    let oci_opts = oci::ImageOptions::for_lock(info.lock, info.source_date_epoch);
    oci::write_layout_cached(rootfs_tar, &dir.join("oci"), &oci_opts, info.chunks.clone())?;

    write_synced(
        &dir.join("packages.txt"),
        pkglist::packages_txt(info.lock).as_bytes(),
    )?;
    let sbom = pkglist::cyclonedx(info.lock, info.source_date_epoch);
    write_synced(&dir.join("sbom.cdx.json"), &sbom)?;
    let spdx = spdx::spdx(info.lock, info.source_date_epoch);
    write_synced(&dir.join("sbom.spdx.json"), &spdx)?;
    Ok(())
}

/// Writes `manifest.json`, listing every file in `dir`.
pub fn write_manifest(dir: &Path, info: &ImageInfo<'_>) -> Result<Manifest, OutputError> {
    let manifest = Manifest::scan(dir, info)?;
    write_synced(&dir.join(manifest::FILE_NAME), &manifest.to_json())?;
    Ok(manifest)
}

/// Copies `src` to `dest` through `compression`, then syncs `dest`. An
/// uncompressed copy is a hard link where it can be (same file system, `src`
/// mode 0644, as rootfs cache entries are): the bytes are the same and
/// nothing is read or written. The cache never writes an entry in place (a
/// new one is a new file), and checks its sha256 before every use.
fn copy_compressed(
    src: &Path,
    dest: &Path,
    compression: Compression,
    chunks: Option<Arc<ChunkCache>>,
) -> Result<(), OutputError> {
    use std::os::unix::fs::PermissionsExt;
    if compression == Compression::None
        && fs::metadata(src).is_ok_and(|m| m.permissions().mode() & 0o7777 == 0o644)
    {
        let known = crate::core::digest::memoized(src);
        if fs::hard_link(src, dest).is_ok() {
            // An artifact is durable (the cache does not sync its entries).
            File::open(dest)
                .and_then(|f| f.sync_all())
                .map_err(OutputError::io("syncing", dest))?;
            if let Some((sha, _)) = known {
                crate::core::digest::remember(dest, &sha);
            }
            return Ok(());
        }
    }
    let mut input = File::open(src).map_err(OutputError::io("opening", src))?;
    let file = File::create(dest).map_err(OutputError::io("creating", dest))?;
    let mut enc = compression
        .encoder_cached(BufWriter::with_capacity(1 << 20, file), chunks)
        .map_err(OutputError::io("starting compression of", dest))?;
    io::copy(&mut input, &mut enc).map_err(OutputError::io("writing", dest))?;
    let file = enc
        .finish()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .map_err(OutputError::io("writing", dest))?;
    file.sync_all().map_err(OutputError::io("syncing", dest))
}

/// Creates `path` with `bytes` and syncs it (inside a directory that is
/// published by rename as a whole, so no per-file rename is needed).
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let mut file = File::create(path).map_err(OutputError::io("creating", path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(OutputError::io("writing", path))
}

/// Moves the complete directory `new` to `dest`, replacing whatever is there
/// atomically: with `renameat2(RENAME_EXCHANGE)` the two swap in one step
/// and `new` ends up holding the old contents (for the caller to delete);
/// where the file system cannot exchange, the old directory is renamed away
/// first (a short window without `dest`, never a partial one).
///
/// Returns the path now holding the old contents, if there were any.
pub fn publish_dir(new: &Path, dest: &Path) -> Result<Option<PathBuf>, OutputError> {
    if fs::symlink_metadata(dest).is_err() {
        fs::rename(new, dest).map_err(OutputError::io("renaming into place", dest))?;
        sync_parent(dest);
        return Ok(None);
    }
    let cwd = rustix::fs::CWD;
    match rustix::fs::renameat_with(cwd, new, cwd, dest, rustix::fs::RenameFlags::EXCHANGE) {
        Ok(()) => {
            sync_parent(dest);
            Ok(Some(new.to_path_buf()))
        }
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            let mut old = dest.as_os_str().to_owned();
            old.push(format!(".old-{}", std::process::id()));
            let old = PathBuf::from(old);
            fs::rename(dest, &old).map_err(OutputError::io("renaming away", dest))?;
            fs::rename(new, dest).map_err(OutputError::io("renaming into place", dest))?;
            sync_parent(dest);
            Ok(Some(old))
        }
        Err(e) => Err(OutputError::io("exchanging", dest)(e.into())),
    }
}

/// Makes a rename in `path`'s directory durable; best effort.
fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent()
        && let Ok(dir) = File::open(parent)
    {
        let _ = dir.sync_all();
    }
}
