//! Decompressing a verified `.xz` index straight into a file, its blocks in
//! parallel, without holding the text in memory.
//!
//! Debian's `Packages.xz` is one stream of independent blocks (three of
//! 24 MiB for trixie main amd64). liblzma's threaded decoder keeps each
//! block's output in memory until it is read (~80 MB for trixie); here each
//! block is instead decoded on its own thread as a one-block stream (the
//! original stream header and block bytes, plus an index and footer written
//! for that one block) and its output written at the block's offset in the
//! file as it comes: memory is one dictionary and a buffer per thread.
//!
//! The input was checked against the signed Release, but is parsed with
//! bounds checks all the same; anything unexpected (several streams,
//! padding, sizes that do not add up) means [`blocks`] returns `None` and the
//! caller decodes the stream in one piece. liblzma checks each block against
//! the index written for it and its own CRC, so a wrong split is an error,
//! not wrong output.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

const HEADER_MAGIC: &[u8; 6] = b"\xfd7zXZ\0";
const FOOTER_MAGIC: &[u8; 2] = b"YZ";

/// One block of a stream: where its bytes are and where its output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Block {
    /// Offset of the block in the compressed file.
    start: usize,
    /// Block header + compressed data + check, without padding.
    unpadded: u64,
    /// Its decompressed size.
    uncompressed: u64,
    /// Where its output starts in the decompressed file.
    out: u64,
}

/// Reads a multibyte integer (7 bits a byte, at most 9 bytes).
fn varint(data: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..9 {
        let b = *data.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            // A multibyte integer has no superfluous zero byte at the end.
            return (i == 0 || b != 0).then_some(v);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The blocks of a single-stream `.xz` file, or `None` if it is anything else.
pub(super) fn blocks(data: &[u8]) -> Option<Vec<Block>> {
    if data.len() < 24 || data.get(..6)? != HEADER_MAGIC {
        return None;
    }
    let footer = data.get(data.len() - 12..)?;
    if &footer[10..] != FOOTER_MAGIC || footer[8..10] != data[6..8] {
        return None;
    }
    let backward = u32::from_le_bytes(footer[4..8].try_into().ok()?) as usize;
    let index_size = backward.checked_add(1)?.checked_mul(4)?;
    let index_start = (data.len() - 12).checked_sub(index_size)?;
    let index = data.get(index_start..data.len() - 12)?;
    let (body, crc) = index.split_at(index.len().checked_sub(4)?);
    if crc32fast::hash(body).to_le_bytes() != crc[..] || *body.first()? != 0 {
        return None;
    }
    let mut at = 1;
    let count = varint(body, &mut at)?;
    let mut out = Vec::new();
    let (mut start, mut offset) = (12usize, 0u64);
    for _ in 0..count.min(1 << 20) {
        let unpadded = varint(body, &mut at)?;
        let uncompressed = varint(body, &mut at)?;
        out.push(Block {
            start,
            unpadded,
            uncompressed,
            out: offset,
        });
        let total = usize::try_from(unpadded.checked_add(3)? & !3).ok()?;
        start = start.checked_add(total)?;
        offset = offset.checked_add(uncompressed)?;
    }
    // The records fill the index up to its padding, and the blocks the
    // stream up to its index.
    let padding = body.get(at..)?;
    (out.len() as u64 == count
        && padding.len() < 4
        && padding.iter().all(|&b| b == 0)
        && start == index_start
        && !out.is_empty())
    .then_some(out)
}

/// The one-block stream of `block`: the file's stream header, the block,
/// an index listing only it, and a footer.
fn single_stream(data: &[u8], block: &Block) -> Option<Vec<u8>> {
    let total = usize::try_from(block.unpadded.checked_add(3)? & !3).ok()?;
    let bytes = data.get(block.start..block.start.checked_add(total)?)?;
    let mut index = vec![0u8];
    put_varint(&mut index, 1);
    put_varint(&mut index, block.unpadded);
    put_varint(&mut index, block.uncompressed);
    while index.len() % 4 != 0 {
        index.push(0);
    }
    let crc = crc32fast::hash(&index);
    index.extend_from_slice(&crc.to_le_bytes());
    let flags = &data[6..8];
    let mut tail = (index.len() as u32 / 4 - 1).to_le_bytes().to_vec();
    tail.extend_from_slice(flags);
    let mut s = Vec::with_capacity(12 + total + index.len() + 12);
    s.extend_from_slice(&data[..12]);
    s.extend_from_slice(bytes);
    s.extend_from_slice(&index);
    s.extend_from_slice(&crc32fast::hash(&tail).to_le_bytes());
    s.extend_from_slice(&tail);
    s.extend_from_slice(FOOTER_MAGIC);
    Some(s)
}

/// Decodes `reader` into `file` from offset `at`, refusing more than `limit`
/// bytes; returns how many were written.
pub(super) fn copy_at(
    mut reader: impl Read,
    file: &File,
    mut at: u64,
    limit: u64,
) -> io::Result<u64> {
    // Whole 1 MiB writes: decoders hand out a few kB per read.
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(written);
        }
        written += filled as u64;
        if written > limit {
            return Err(io::Error::other(format!(
                "decompresses to more than the {limit} bytes expected"
            )));
        }
        file.write_all_at(&buf[..filled], at)?;
        at += filled as u64;
    }
}

/// Decodes the blocks of `data` into `file` on up to `threads` threads.
/// `Ok(None)` when the split does not apply (the caller decodes in one piece).
/// More than `limit` bytes in all is refused before anything is decoded.
pub(super) fn decode_blocks(
    data: &[u8],
    file: &File,
    threads: usize,
    limit: u64,
) -> io::Result<Option<u64>> {
    let Some(blocks) = blocks(data) else {
        return Ok(None);
    };
    if blocks.len() < 2 {
        return Ok(None);
    }
    let total: u64 = blocks.iter().map(|b| b.uncompressed).sum();
    if total > limit {
        return Err(io::Error::other(format!(
            "its index says {total} bytes decompressed, more than the {limit} expected"
        )));
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let worker = || -> io::Result<()> {
        // Each block is taken once: bounded by the number of blocks.
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(b) = blocks.get(i) else {
                return Ok(());
            };
            let stream =
                single_stream(data, b).ok_or_else(|| io::Error::other("block outside the file"))?;
            let n = copy_at(
                liblzma::read::XzDecoder::new(&stream[..]),
                file,
                b.out,
                b.uncompressed,
            )?;
            if n != b.uncompressed {
                return Err(io::Error::other(format!(
                    "block {i} decompressed to {n} bytes, its index says {}",
                    b.uncompressed
                )));
            }
        }
    };
    let n = threads.clamp(1, blocks.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n).map(|_| s.spawn(worker)).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("decoder thread panicked")))
            })
            .collect::<io::Result<Vec<()>>>()
    })?;
    Ok(Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> Vec<u8> {
        (0..60_000u32)
            .flat_map(|i| format!("Package: p{i}\nVersion: {}\n\n", i % 97).into_bytes())
            .collect()
    }

    #[test]
    fn splits_and_decodes_blocks_in_parallel() {
        let text = text();
        let xz = testkit::compress::xz_blocks(&text, 256 << 10);
        let b = blocks(&xz).unwrap();
        assert!(b.len() > 3, "{}", b.len());
        assert_eq!(
            b.iter().map(|b| b.uncompressed).sum::<u64>(),
            text.len() as u64
        );
        let file = tempfile::tempfile().unwrap();
        assert_eq!(
            decode_blocks(&xz, &file, 3, u64::MAX).unwrap(),
            Some(text.len() as u64)
        );
        let mut back = Vec::new();
        (&file).read_to_end(&mut back).unwrap();
        assert!(back == text);
    }

    #[test]
    fn anything_unexpected_is_no_split_or_an_error() {
        let text = text();
        let xz = testkit::compress::xz_blocks(&text, 256 << 10);
        let single = testkit::xz(&text);
        assert_eq!(blocks(&single).map(|b| b.len()), Some(1));
        // Trailing stream padding, a second stream, a truncation: no split.
        let mut padded = xz.clone();
        padded.extend_from_slice(&[0; 4]);
        assert!(blocks(&padded).is_none());
        let mut two = xz.clone();
        two.extend_from_slice(&single);
        assert!(blocks(&two).is_none());
        for cut in [0, 11, 12, 100, xz.len() / 2, xz.len() - 1] {
            assert!(blocks(&xz[..cut]).is_none(), "cut {cut}");
        }
        // Any single damaged byte: no split, or decoding fails, or it is a
        // byte liblzma does not read (the output is then still right).
        let file = tempfile::tempfile().unwrap();
        for at in (0..xz.len()).step_by(xz.len() / 97 + 1) {
            let mut bad = xz.clone();
            bad[at] ^= 0x55;
            if let Ok(Some(n)) = decode_blocks(&bad, &file, 2, u64::MAX) {
                let mut back = vec![0; n as usize];
                file.read_exact_at(&mut back, 0).unwrap();
                assert!(back == text, "byte {at}");
            }
        }
    }
}
