//! Parallel, reproducible gzip, cut by content: the input is cut into
//! chunks where a rolling hash of the bytes says so (as `gzip --rsyncable`
//! and casync do), each chunk is deflated on its own (raw deflate ending in
//! a sync flush) on the rayon pool, and the pieces are concatenated under
//! one gzip header, ended by an empty final block, with the CRC-32 and size
//! of the whole input. A sync flush ends every piece on a byte boundary, so
//! the concatenation is one valid deflate stream that any gunzip reads.
//!
//! The bytes depend only on the input and the level — never on the number
//! of threads, how writes were split, or what the chunk cache held. Because
//! chunk ends follow the content, a change in one file of a tar moves the
//! boundaries of at most the chunks around it: with a [`ChunkCache`] the
//! others are not deflated again. A chunk that looks incompressible
//! (nearly 8 bits of entropy per byte: compressed kernel modules, an
//! initramfs) is stored, not deflated, which costs well under 1% of size
//! and saves most of the time deflate would spend on it.

use std::io::{self, Write};
use std::sync::Arc;

use flate2::{Compress, FlushCompress};
use rayon::prelude::*;

use super::chunks::{ChunkCache, ChunkKey, FINAL_BLOCK};

/// No chunk is shorter (but the last).
pub const MIN_CHUNK: usize = 256 << 10;
/// No chunk is longer.
pub const MAX_CHUNK: usize = 2 << 20;
/// A chunk ends after a byte where the rolling hash has these bits clear
/// (18 bits: on average 256 KiB past [`MIN_CHUNK`]).
const CUT_MASK: u64 = ((1 << 18) - 1) << 40;
/// Bytes of chunks gathered before they are deflated side by side (bounds
/// memory to about twice this).
const BATCH: usize = 16 << 20;
/// Bits of entropy per byte from which a chunk is stored, not deflated.
const STORED_FROM_BITS: f64 = 7.9;

/// gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// Where the pieces are deflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// Side by side on the rayon pool.
    Pool,
    /// On the calling thread only (background work at a low priority).
    Caller,
}

/// A writer producing a parallel gzip stream into `W`; call
/// [`ParGzEncoder::finish`] at the end.
pub struct ParGzEncoder<W: Write> {
    inner: W,
    level: u32,
    threads: Threads,
    cache: Option<Arc<ChunkCache>>,
    /// Whether what is written is an artifact (cache hits are checked and
    /// counted as used) or speculative (pieces only go into the cache).
    speculative: bool,
    /// Input not yet compressed, from the start of the next chunk.
    pending: Vec<u8>,
    /// Lengths of the chunks cut from the front of `pending`.
    cut: Vec<usize>,
    /// Where the next cut search starts (the end of the last chunk cut).
    cut_at: usize,
    crc: crc32fast::Hasher,
    size: u64,
}

impl<W: Write> ParGzEncoder<W> {
    /// Writes the gzip header to `inner` and returns the encoder.
    pub fn new(inner: W, level: u32) -> io::Result<Self> {
        Self::with_cache(inner, level, None)
    }

    /// [`ParGzEncoder::new`], taking unchanged chunks from `cache` and
    /// putting the others in it.
    pub fn with_cache(
        mut inner: W,
        level: u32,
        cache: Option<Arc<ChunkCache>>,
    ) -> io::Result<Self> {
        inner.write_all(&HEADER)?;
        Ok(ParGzEncoder {
            inner,
            level,
            threads: Threads::Pool,
            cache,
            speculative: false,
            pending: Vec::new(),
            cut: Vec::new(),
            cut_at: 0,
            crc: crc32fast::Hasher::new(),
            size: 0,
        })
    }

    /// An encoder that only fills `cache` with the pieces of what is written
    /// (on the calling thread), skipping the chunks it holds: work done
    /// ahead of an artifact whose input is not final yet.
    pub fn speculative(inner: W, level: u32, cache: Arc<ChunkCache>) -> io::Result<Self> {
        let mut e = Self::with_cache(inner, level, Some(cache))?;
        e.threads = Threads::Caller;
        e.speculative = true;
        Ok(e)
    }

    /// Cuts every chunk whose end is already decided: `MAX_CHUNK` bytes
    /// follow its start, or `end` (the input is complete).
    fn cut_chunks(&mut self, end: bool) {
        // Bounded: every round cuts at least one byte.
        while self.cut_at < self.pending.len()
            && (end || self.pending.len() - self.cut_at >= MAX_CHUNK)
        {
            let n = chunk_len(&self.pending[self.cut_at..]);
            self.cut.push(n);
            self.cut_at += n;
        }
    }

    /// Deflates the chunks cut so far and writes their pieces out.
    fn drain(&mut self) -> io::Result<()> {
        let mut chunks = Vec::with_capacity(self.cut.len());
        let mut at = 0;
        for &n in &self.cut {
            chunks.push(&self.pending[at..at + n]);
            at += n;
        }
        let (level, cache, speculative) = (self.level, self.cache.as_deref(), self.speculative);
        let one = |chunk: &&[u8]| piece(chunk, level, cache, speculative);
        let pieces: Vec<io::Result<Vec<u8>>> = match self.threads {
            Threads::Pool => chunks.par_iter().map(one).collect(),
            Threads::Caller => chunks.iter().map(one).collect(),
        };
        for piece in pieces {
            self.inner.write_all(&piece?)?;
        }
        self.pending.drain(..at);
        self.cut.clear();
        self.cut_at = 0;
        Ok(())
    }

    /// Compresses what is left, ends the deflate stream, writes the trailer
    /// and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.cut_chunks(true);
        self.drain()?;
        self.inner.write_all(&FINAL_BLOCK)?;
        let crc = self.crc.clone().finalize();
        self.inner.write_all(&crc.to_le_bytes())?;
        // ISIZE is the input size modulo 2^32 (RFC 1952).
        self.inner.write_all(&(self.size as u32).to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.crc.update(buf);
        self.size += buf.len() as u64;
        self.pending.extend_from_slice(buf);
        let batch = match self.threads {
            Threads::Pool => BATCH,
            // One chunk at a time: nothing to share out.
            Threads::Caller => 0,
        };
        if self.pending.len() >= batch + MAX_CHUNK {
            self.cut_chunks(false);
            self.drain()?;
        }
        Ok(buf.len())
    }

    /// Does not force a chunk boundary (that would make the bytes depend on
    /// when the caller flushes); flushes only the inner writer.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The rolling hash's byte table: fixed pseudo-random values (xorshift64),
/// part of the format (other values would cut elsewhere).
const GEAR: [u64; 256] = gear_table();

const fn gear_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut i = 0;
    while i < 256 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        table[i] = x;
        i += 1;
    }
    table
}

/// The length of the chunk starting at `data[0]` (`data` holds at least
/// [`MAX_CHUNK`] bytes, or the rest of the input): the first position past
/// [`MIN_CHUNK`] where the gear hash of the bytes before has the
/// [`CUT_MASK`] bits clear, else the whole of `data` up to [`MAX_CHUNK`].
fn chunk_len(data: &[u8]) -> usize {
    if data.len() <= MIN_CHUNK {
        return data.len();
    }
    let end = data.len().min(MAX_CHUNK);
    let mut h: u64 = 0;
    for (i, &b) in data[MIN_CHUNK..end].iter().enumerate() {
        h = (h << 1).wrapping_add(GEAR[b as usize]);
        if h & CUT_MASK == 0 {
            return MIN_CHUNK + i + 1;
        }
    }
    end
}

/// The piece of one chunk: from the cache when it holds it, else deflated
/// (or stored, if incompressible) and put in the cache. A speculative piece
/// that the cache holds is not read at all (nothing is written from it).
fn piece(
    chunk: &[u8],
    level: u32,
    cache: Option<&ChunkCache>,
    speculative: bool,
) -> io::Result<Vec<u8>> {
    let cached = cache.map(|c| (c, ChunkKey::of(level, chunk)));
    if let Some((cache, key)) = &cached {
        if speculative && cache.has(key) {
            return Ok(Vec::new());
        }
        if !speculative && let Some(piece) = cache.get(key, chunk) {
            return Ok(piece);
        }
    }
    let effective = if entropy_bits(chunk) >= STORED_FROM_BITS {
        0
    } else {
        level
    };
    let piece = deflate(chunk, effective)?;
    if let Some((cache, key)) = &cached {
        cache.put(key, &piece, !speculative);
    }
    Ok(piece)
}

/// Shannon entropy of `data`'s bytes, in bits per byte (0 to 8).
fn entropy_bits(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    // Four tables, so consecutive bytes do not wait on the same counter.
    let mut counts = [[0u32; 256]; 4];
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        counts[0][q[0] as usize] += 1;
        counts[1][q[1] as usize] += 1;
        counts[2][q[2] as usize] += 1;
        counts[3][q[3] as usize] += 1;
    }
    for &b in quads.remainder() {
        counts[0][b as usize] += 1;
    }
    let n = data.len() as f64;
    (0..256)
        .map(|b| counts.iter().map(|c| c[b] as u64).sum::<u64>())
        .filter(|&c| c > 0)
        .map(|c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Raw deflate of one chunk at `level` (0: stored blocks), sync-flushed:
/// byte-aligned and not final, so that pieces concatenate.
fn deflate(chunk: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(flate2::Compression::new(level), false);
    let mut out = Vec::with_capacity(chunk.len() / 2 + 64);
    // Bounded: every round either consumes input or grows the output, and
    // the output of one chunk is at most a little larger than the chunk.
    for _ in 0..64 {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(chunk.len() / 4 + 1024);
        }
        c.compress_vec(&chunk[consumed..], &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        // The flush is complete when all input is in and room was left.
        if c.total_in() as usize == chunk.len() && out.capacity() > out.len() {
            return Ok(out);
        }
    }
    Err(io::Error::other("deflate did not converge"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(len: usize, seed: u32) -> Vec<u8> {
        // Compressible but not trivial: a counter mixed with text.
        let mut v = Vec::with_capacity(len);
        let mut x: u32 = seed | 1;
        while v.len() < len {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            v.extend_from_slice(format!("line {} {}\n", x % 1000, x >> 20).as_bytes());
        }
        v.truncate(len);
        v
    }

    fn noise(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    fn gz_with(data: &[u8], write: usize, cache: Option<Arc<ChunkCache>>) -> Vec<u8> {
        let mut e = ParGzEncoder::with_cache(Vec::new(), 6, cache).unwrap();
        for part in data.chunks(write.max(1)) {
            e.write_all(part).unwrap();
        }
        e.finish().unwrap()
    }

    fn gz(data: &[u8], write: usize) -> Vec<u8> {
        gz_with(data, write, None)
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn entries(cache: &ChunkCache) -> usize {
        std::fs::read_dir(cache.dir())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().len() == 64)
            .count()
    }

    #[test]
    fn round_trips_at_chunk_boundaries() {
        for len in [
            0,
            1,
            MIN_CHUNK - 1,
            MIN_CHUNK,
            MIN_CHUNK + 1,
            MAX_CHUNK,
            MAX_CHUNK + 1,
            BATCH + MAX_CHUNK + 7,
        ] {
            let data = sample(len, 7);
            assert_eq!(gunzip(&gz(&data, 65_536)), data, "len {len}");
        }
    }

    #[test]
    fn chunks_are_cut_by_content_within_bounds() {
        let data = sample(8 * MAX_CHUNK, 3);
        let mut at = 0;
        let mut lens = Vec::new();
        while at < data.len() {
            let n = chunk_len(&data[at..]);
            assert!(n >= MIN_CHUNK.min(data.len() - at) && n <= MAX_CHUNK, "{n}");
            lens.push(n);
            at += n;
        }
        // Not all the same length: the cuts follow the content.
        assert!(lens.iter().any(|&n| n != lens[0]), "{lens:?}");
        // A cut does not depend on bytes after it.
        let first = chunk_len(&data);
        assert_eq!(chunk_len(&data[..first]), first);
    }

    #[test]
    fn bytes_do_not_depend_on_write_sizes_threads_or_cache() {
        let data = sample(BATCH + 3 * MAX_CHUNK + 12_345, 11);
        let a = gz(&data, 4096);
        let b = gz(&data, 3 * MAX_CHUNK + 1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let c = pool.install(|| gz(&data, 1 << 20));
        assert_eq!(a, b);
        assert_eq!(a, c);
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(ChunkCache::open(dir.path(), "t").unwrap());
        assert_eq!(gz_with(&data, 9999, Some(cache.clone())), a);
        assert_eq!(gz_with(&data, 77_777, Some(cache)), a);
        // And it compresses.
        assert!(a.len() < data.len() / 2, "{} of {}", a.len(), data.len());
    }

    #[test]
    fn a_small_change_redeflates_only_the_chunks_around_it() {
        let data = sample(12 * MAX_CHUNK, 5);
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(ChunkCache::open(dir.path(), "t").unwrap());
        gz_with(&data, 1 << 16, Some(cache.clone()));
        let before = entries(&cache);
        assert!(before > 6, "{before}");
        // Ten bytes inserted in the middle, as a file growing in a tar.
        let mut changed = data.clone();
        let mid = data.len() / 2;
        changed.splice(mid..mid, *b"0123456789");
        let out = gz_with(&changed, 1 << 16, Some(cache.clone()));
        assert_eq!(gunzip(&out), changed);
        assert_eq!(out, gz(&changed, 1 << 20));
        let new = entries(&cache) - before;
        assert!(
            (1..=2).contains(&new),
            "{new} chunks deflated again of {before}"
        );
    }

    #[test]
    fn a_speculative_pass_fills_the_cache_for_the_artifact() {
        let data = sample(4 * MAX_CHUNK, 9);
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(ChunkCache::open(dir.path(), "t").unwrap());
        let mut s = ParGzEncoder::speculative(io::sink(), 6, cache.clone()).unwrap();
        s.write_all(&data).unwrap();
        s.finish().unwrap();
        let filled = entries(&cache);
        assert!(filled >= 2, "{filled}");
        // Nothing counted as used by a speculative pass; the artifact then
        // uses every entry and deflates nothing more.
        assert_eq!(
            gz_with(&data, 1 << 16, Some(cache.clone())),
            gz(&data, 1 << 16)
        );
        assert_eq!(entries(&cache), filled);
        cache.commit().unwrap();
        let keys = std::fs::read_to_string(cache.dir().join("t.keys")).unwrap();
        assert_eq!(keys.lines().count(), filled);
    }

    #[test]
    fn incompressible_chunks_are_stored() {
        let data = noise(3 * MAX_CHUNK);
        assert!(entropy_bits(&data) > 7.99);
        assert!(entropy_bits(&sample(1 << 20, 1)) < 6.0);
        let out = gz(&data, 1 << 20);
        assert_eq!(gunzip(&out), data);
        // Stored blocks: 5 bytes per 64 KiB, the sync flushes, header, trailer.
        assert!(out.len() < data.len() + data.len() / 1000, "{}", out.len());
    }

    #[test]
    fn gzip_tools_read_it() {
        let mut data = sample(2 * MAX_CHUNK + 99, 2);
        data.extend_from_slice(&noise(MAX_CHUNK));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        std::fs::write(&path, gz(&data, 8192)).unwrap();
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, data);
    }
}
