//! Deterministic archive primitives shared by the root filesystem cache, the
//! tools tree and the image outputs:
//!
//! - [`tar`]: a deterministic tar of a directory tree (sorted names, numeric
//!   owners, clamped mtimes, hard links, xattrs);
//! - [`compress`]: stable gzip and zstd;
//! - [`pargz`]: gzip in parallel content-defined chunks, the same bytes with any
//!   number of threads, and [`chunks`]: the cache of their deflated pieces;
//! - [`HashingWriter`]: hash and count what is written.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub mod chunks;
pub mod compress;
pub mod pargz;
pub mod speculate;
pub mod tar;

pub use compress::Compression;

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
