//! The zstd copy of a disk image that is published instead of the raw file,
//! kept between publications and checked before reuse.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::PublishError;

fn out_err(path: &Path, reason: impl Into<String>) -> PublishError {
    PublishError::Output {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// zstd level for disk images: fast, and most of a disk image is zeros.
const ZSTD_LEVEL: i32 = 3;

/// The zstd of `path` (whose sha256 is `sha256`) in `cache`, made if absent
/// or not decompressing to `sha256`; returns the file, its digest and size.
/// Single-threaded zstd at a fixed level: the same input gives the same bytes.
pub(super) fn zstd_cached(
    path: &Path,
    sha256: &str,
    cache: &Path,
) -> Result<(PathBuf, String, u64), PublishError> {
    let dest = cache.join(format!("{sha256}.zst"));
    let hash_of = |p: &Path| -> io::Result<(String, u64)> {
        let mut f = BufReader::new(File::open(p)?);
        let mut h = crate::registry::HashWrite::new(io::sink());
        let n = io::copy(&mut f, &mut h)?;
        Ok((h.finish().1, n))
    };
    if dest.is_file() {
        let ok = File::open(&dest)
            .and_then(zstd::stream::read::Decoder::new)
            .and_then(|mut d| {
                let mut h = crate::registry::HashWrite::new(io::sink());
                io::copy(&mut d, &mut h)?;
                Ok(h.finish().1)
            })
            .is_ok_and(|d| d == format!("sha256:{sha256}"));
        if ok {
            let (d, n) = hash_of(&dest).map_err(|e| out_err(&dest, e.to_string()))?;
            return Ok((dest, d, n));
        }
    }
    fs::create_dir_all(cache).map_err(|e| out_err(cache, e.to_string()))?;
    let tmp = tempfile::NamedTempFile::new_in(cache).map_err(|e| out_err(cache, e.to_string()))?;
    {
        let input = File::open(path).map_err(|e| out_err(path, e.to_string()))?;
        let w = BufWriter::with_capacity(1 << 20, tmp.as_file());
        let mut enc = zstd::stream::write::Encoder::new(w, ZSTD_LEVEL)
            .map_err(|e| out_err(path, e.to_string()))?;
        enc.include_checksum(true)
            .map_err(|e| out_err(path, e.to_string()))?;
        let mut h = Sha256::new();
        let mut r = BufReader::with_capacity(1 << 20, input);
        let mut tee = TeeHash {
            w: &mut enc,
            h: &mut h,
        };
        io::copy(&mut r, &mut tee).map_err(|e| out_err(path, e.to_string()))?;
        if hex::encode(h.finalize()) != sha256 {
            return Err(out_err(path, "changed while it was being compressed"));
        }
        enc.finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .and_then(|f| f.sync_all())
            .map_err(|e| out_err(tmp.path(), e.to_string()))?;
    }
    tmp.persist(&dest)
        .map_err(|e| out_err(&dest, e.error.to_string()))?;
    let (d, n) = hash_of(&dest).map_err(|e| out_err(&dest, e.to_string()))?;
    Ok((dest, d, n))
}

struct TeeHash<'a, W> {
    w: &'a mut W,
    h: &'a mut Sha256,
}

impl<W: io::Write> io::Write for TeeHash<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.w.write(buf)?;
        self.h.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}
