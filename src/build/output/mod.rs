//! Reproducible build outputs: everything `imgbuild build` writes from an
//! assembled root filesystem.
//!
//! - [`tar`]: a deterministic tar of a directory tree (sorted names, numeric
//!   owners, clamped mtimes, hard links, xattrs);
//! - [`compress`]: stable gzip and zstd;
//! - [`pargz`]: gzip in parallel blocks, the same bytes with any number of threads;
//! - [`oci`]: an OCI image layout (image-spec 1.1) with one layer;
//! - [`pkglist`]: `packages.txt` and a CycloneDX SBOM from the lock;
//! - [`spdx`]: the SPDX 2.3 SBOM from the lock;
//! - [`manifest`]: `manifest.json`, every artifact with its size and sha256;
//! - [`compare`]: naming the differences between two builds.
//!
//! [`emit`] writes a whole output directory from a rootfs tar and publishes it
//! with an atomic rename, so a reader sees the old directory or the complete
//! new one, never a half-written one. Same tar and inputs → same bytes in
//! every artifact.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub mod compare;
pub mod compress;
pub mod manifest;
pub mod oci;
pub mod pargz;
pub mod pkglist;
pub mod spdx;
pub mod tar;

pub use compress::Compression;
pub use manifest::{Artifact, Manifest};

use crate::lock::Lockfile;

/// Why an output could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A file-system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`reading`, `writing`, `renaming`, …).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Something in the input cannot be represented in the output.
    #[error("{}: {reason}", path.display())]
    Unsupported {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An existing output (manifest, layout) is malformed.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl OutputError {
    /// A closure turning an `io::Error` into [`OutputError::Io`] for `path`.
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> OutputError {
        let path = path.to_path_buf();
        move |source| OutputError::Io { op, path, source }
    }
}

/// A writer that hashes and counts what goes through it; sha256 unless
/// another digest is named (the ONIE payload uses SHA1).
pub struct HashingWriter<W, D = Sha256> {
    inner: W,
    hasher: D,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`, hashing with sha256.
    pub fn new(inner: W) -> Self {
        HashingWriter::with_digest(inner)
    }
}

impl<W: Write, D: Digest> HashingWriter<W, D> {
    /// Wraps `inner`, hashing with `D`.
    pub fn with_digest(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: D::new(),
            count: 0,
        }
    }

    /// The inner writer, the lower-case hex digest and the byte count of
    /// everything written.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.count)
    }
}

impl<W: Write, D: Digest> Write for HashingWriter<W, D> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes an artifact atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    use crate::core::atomic::{Durability, write_atomic};
    write_atomic(path, bytes, 0o644, Durability::Durable).map_err(OutputError::io("writing", path))
}

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
    let rootfs = dir.join(rootfs_file_name(info.compression));
    copy_compressed(rootfs_tar, &rootfs, info.compression)?;

    let oci_opts = oci::ImageOptions::for_lock(info.lock, info.source_date_epoch);
    oci::write_layout(rootfs_tar, &dir.join("oci"), &oci_opts)?;

    write_synced(
        &dir.join("packages.txt"),
        pkglist::packages_txt(info.lock).as_bytes(),
    )?;
    let sbom = pkglist::cyclonedx(info.lock, info.source_date_epoch);
    write_synced(&dir.join("sbom.cdx.json"), &sbom)?;
    let spdx = spdx::spdx(info.lock, info.source_date_epoch);
    write_synced(&dir.join("sbom.spdx.json"), &spdx)?;

    let manifest = Manifest::scan(dir, info)?;
    write_synced(&dir.join(manifest::FILE_NAME), &manifest.to_json())?;
    Ok(manifest)
}

/// Copies `src` to `dest` through `compression`, then syncs `dest`.
fn copy_compressed(src: &Path, dest: &Path, compression: Compression) -> Result<(), OutputError> {
    let mut input = File::open(src).map_err(OutputError::io("opening", src))?;
    let file = File::create(dest).map_err(OutputError::io("creating", dest))?;
    let mut enc = compression
        .encoder(BufWriter::with_capacity(1 << 20, file))
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
