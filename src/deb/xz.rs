//! Decoding a large `data.tar.xz` on two threads.
//!
//! Most of a kernel package is its modules, already xz-compressed, which
//! xz decodes at ~30 MB/s; dpkg-deb writes such members as several xz
//! blocks, which liblzma's multi-threaded decoder decodes side by side.

use std::io::{self, BufReader, Read};

/// Compressed size from which an xz data.tar is decoded on two threads.
const XZ_THREADED_FROM: u64 = 32 << 20;
/// Memory the two-thread xz decoder may use for its blocks (dpkg-deb's
/// blocks are 24 MiB at xz's default preset); above it liblzma decodes on one
/// thread, so peak memory stays bounded whatever the member holds.
const XZ_THREADED_MEMORY: u64 = 80 << 20;

/// The decoder of data.tar, `size` bytes compressed: [`decompress`], but a
/// large xz member (a kernel's modules, already compressed, decode slowly)
/// is decoded on two threads, block by block — the same bytes, in order.
pub(super) fn decompress_data<'a>(
    ext: &str,
    size: u64,
    r: &'a mut dyn Read,
    otherwise: Decompress,
) -> Option<Box<dyn Read + 'a>> {
    if ext != ".xz" || size < XZ_THREADED_FROM {
        return otherwise(ext, r);
    }
    Some(threaded_xz(r))
}

/// The decoder [`decompress_data`] falls back to: by member suffix.
pub(super) type Decompress = for<'a> fn(&str, &'a mut dyn Read) -> Option<Box<dyn Read + 'a>>;

/// liblzma's two-thread decoder of one xz stream, followed (as `xz -d`
/// and the one-thread decoder do) by any further concatenated streams.
fn threaded_xz<'a>(r: impl Read + 'a) -> Box<dyn Read + 'a> {
    let stream = liblzma::stream::MtStreamBuilder::new()
        .threads(2)
        .memlimit_threading(XZ_THREADED_MEMORY)
        .memlimit_stop(u64::MAX)
        .decoder();
    let input = BufReader::with_capacity(1 << 16, r);
    match stream {
        Ok(stream) => Box::new(ThenRest::First(liblzma::bufread::XzDecoder::new_stream(
            input, stream,
        ))),
        // No threads to be had: the one-thread decoder.
        Err(_) => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(input)),
    }
}

/// The first xz stream (multi-threaded, which cannot take concatenated
/// streams), then whatever follows it decoded as concatenated streams.
enum ThenRest<R: io::BufRead> {
    First(liblzma::bufread::XzDecoder<R>),
    Rest(liblzma::bufread::XzDecoder<R>),
    Done,
}

impl<R: io::BufRead> Read for ThenRest<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Bounded: at most one switch from the first stream to the rest.
        for _ in 0..2 {
            match self {
                ThenRest::First(d) => {
                    let n = d.read(buf)?;
                    if n > 0 || buf.is_empty() {
                        return Ok(n);
                    }
                    let ThenRest::First(d) = std::mem::replace(self, ThenRest::Done) else {
                        unreachable!()
                    };
                    let mut inner = d.into_inner();
                    if skip_padding(&mut inner)? {
                        *self =
                            ThenRest::Rest(liblzma::bufread::XzDecoder::new_multi_decoder(inner));
                    }
                }
                ThenRest::Rest(d) => return d.read(buf),
                ThenRest::Done => return Ok(0),
            }
        }
        Ok(0)
    }
}

/// Consumes xz stream padding (zero bytes, a multiple of four); whether
/// another stream follows it.
fn skip_padding(r: &mut impl io::BufRead) -> io::Result<bool> {
    let mut zeros = 0u64;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let n = buf.iter().take_while(|&&b| b == 0).count();
        let more = n < buf.len();
        r.consume(n);
        zeros += n as u64;
        if more {
            break;
        }
    }
    if !zeros.is_multiple_of(4) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "xz stream padding is not a multiple of four bytes",
        ));
    }
    Ok(!r.fill_buf()?.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: u32) -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                format!("line {i} {}\n", i.wrapping_mul(2_654_435_761) % 1000).into_bytes()
            })
            .collect()
    }

    fn decode(xz: &[u8], size: u64) -> io::Result<Vec<u8>> {
        let mut input: &[u8] = xz;
        let mut r = decompress_data(".xz", size, &mut input, |_, r| {
            Some(Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)))
        })
        .unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn threaded_decoding_gives_the_same_bytes() {
        let a = text(200_000);
        let xz = testkit::compress::xz_blocks(&a, 256 << 10);
        assert_eq!(decode(&xz, XZ_THREADED_FROM).unwrap(), a);
        assert_eq!(decode(&xz, 0).unwrap(), a);
    }

    #[test]
    fn concatenated_streams_and_padding_are_read_as_xz_reads_them() {
        let (a, b) = (text(50_000), text(7_000));
        let mut xz = testkit::compress::xz_blocks(&a, 64 << 10);
        xz.extend_from_slice(&testkit::compress::xz_blocks(&b, 64 << 10));
        xz.extend_from_slice(&[0; 8]);
        let mut both = a.clone();
        both.extend_from_slice(&b);
        assert_eq!(decode(&xz, XZ_THREADED_FROM).unwrap(), both);
        // Padding alone after the first stream.
        let mut padded = testkit::compress::xz_blocks(&a, 64 << 10);
        padded.extend_from_slice(&[0; 4]);
        assert_eq!(decode(&padded, XZ_THREADED_FROM).unwrap(), a);
    }

    #[test]
    fn damaged_input_is_an_error_not_a_short_read() {
        let a = text(100_000);
        let mut xz = testkit::compress::xz_blocks(&a, 64 << 10);
        let mid = xz.len() / 2;
        xz[mid] ^= 0x55;
        assert!(decode(&xz, XZ_THREADED_FROM).is_err());
        xz.truncate(mid);
        assert!(decode(&xz, XZ_THREADED_FROM).is_err());
    }
}
