//! Stable compression of artifacts: the same input gives the same bytes.

use std::io::{self, Read, Write};

use std::sync::Arc;

use super::chunks::ChunkCache;
use super::pargz::ParGzEncoder;

/// How an artifact is compressed. The output is stable: gzip has a fixed
/// header (mtime 0, no file name, OS "unknown") and content-defined chunks
/// deflated in parallel ([`super::pargz`]); both use a fixed level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Plain tar.
    #[default]
    None,
    /// gzip (level 6).
    Gzip,
    /// zstd (level 10, single-threaded, with a checksum).
    Zstd,
}

/// gzip level: the common default, a fair speed/size trade for a rootfs.
pub const GZIP_LEVEL: u32 = 6;
/// zstd level: better than gzip at a similar speed.
const ZSTD_LEVEL: i32 = 10;

impl Compression {
    /// The file name extension (`""`, `".gz"`, `".zst"`).
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
        }
    }

    /// The compression a file name implies (by its extension).
    pub fn from_file_name(name: &str) -> Compression {
        if name.ends_with(".gz") {
            Compression::Gzip
        } else if name.ends_with(".zst") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// A writer compressing into `w`; call [`Encoder::finish`] at the end.
    pub fn encoder<W: Write>(self, w: W) -> io::Result<Encoder<W>> {
        self.encoder_cached(w, None)
    }

    /// [`Compression::encoder`]; gzip takes the unchanged chunks' pieces
    /// from `chunks` (the same bytes, less work: see [`super::pargz`]).
    pub fn encoder_cached<W: Write>(
        self,
        w: W,
        chunks: Option<Arc<ChunkCache>>,
    ) -> io::Result<Encoder<W>> {
        Ok(match self {
            Compression::None => Encoder::Plain(w),
            Compression::Gzip => Encoder::Gzip(ParGzEncoder::with_cache(w, GZIP_LEVEL, chunks)?),
            Compression::Zstd => {
                let mut enc = zstd::stream::Encoder::new(w, ZSTD_LEVEL)?;
                enc.include_checksum(true)?;
                Encoder::Zstd(enc)
            }
        })
    }

    /// A reader decompressing `r`.
    pub fn decoder<'a, R: io::BufRead + 'a>(self, r: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::bufread::GzDecoder::new(r)),
            Compression::Zstd => Box::new(zstd::stream::Decoder::with_buffer(r)?),
        })
    }
}

/// A compressing writer from [`Compression::encoder`].
pub enum Encoder<W: Write> {
    /// No compression.
    Plain(W),
    /// gzip, compressed in parallel blocks ([`super::pargz`]).
    Gzip(ParGzEncoder<W>),
    /// zstd.
    Zstd(zstd::stream::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// Writes the trailer and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}
