//! File I/O around the page cache (`O_DIRECT`), for big files that are
//! written once and not read again soon, or read once right after another
//! process wrote them that way.
//!
//! A buffered write copies every byte into a page-cache page the kernel
//! must first allocate. On a VM whose memory the host backs lazily (the
//! project's 2-core VM: the host reclaims freed guest pages and faults them
//! in again on first use), that allocation is most of the cost: 600 MB
//! written took 1.0 s of system time buffered and 0.16 s with `O_DIRECT`,
//! and read back from disk 2.4 s buffered and 0.04 s direct (dd, from an
//! empty page cache). A build writes several such files (the package
//! stage's tar, the rootfs tar, the OCI layer blob, the qcow2 image) while
//! both cores are busy; the rootfs tar's readers ([`DirectReader`],
//! [`super::growing::GrowingReader`]) read it past the page cache too, or
//! they would pay for the pages its writer saved.
//!
//! Every function falls back to ordinary I/O where the file system refuses
//! `O_DIRECT` (`EINVAL`), so the bytes are the same either way.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

/// The alignment of buffers, offsets and lengths for `O_DIRECT` (the
/// largest logical block size in use; 512-byte devices accept it too).
pub const ALIGN: usize = 4096;

/// A zeroed buffer of `len` bytes (a multiple of [`ALIGN`]) whose start is
/// aligned to [`ALIGN`], without `unsafe`: a larger vector, sliced.
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A buffer of `len` bytes, `len` rounded up to a multiple of [`ALIGN`].
    pub fn new(len: usize) -> AlignedBuf {
        let len = len.div_ceil(ALIGN) * ALIGN;
        let storage = vec![0u8; len + ALIGN];
        let start = storage.as_ptr().align_offset(ALIGN);
        AlignedBuf {
            storage,
            start,
            len,
        }
    }

    /// The aligned bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }

    /// The aligned bytes, read-only.
    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
}

/// Whether `e` is the kernel refusing `O_DIRECT` (or an unaligned request).
fn refused(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

/// Sets or clears `O_DIRECT` on an open file.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function borrows; no memory passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether files in `dir` can be written with `O_DIRECT` (a probe file is
/// made and removed).
pub fn supported(dir: &Path) -> bool {
    let Ok(probe) = tempfile::Builder::new()
        .prefix(".direct-probe-")
        .tempfile_in(dir)
    else {
        return false;
    };
    let buf = AlignedBuf::new(ALIGN);
    set_direct(probe.as_file(), true).is_ok() && probe.as_file().write_at(buf.as_slice(), 0).is_ok()
}

/// sha256 (lower-case hex) and size of the file at `path`, read past the
/// page cache; what [`super::digest::hash_file`] gives where the file
/// system refuses that. For a file another process has just written with
/// `O_DIRECT`: a buffered read would fill the page cache to hash it once.
pub fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let file = match File::options()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if refused(&e) => return super::digest::hash_file(path),
        Err(e) => return Err(e),
    };
    let mut buf = AlignedBuf::new(4 << 20);
    let mut hasher = Sha256::new();
    let mut pos = 0u64;
    loop {
        let n = match file.read_at(buf.as_mut_slice(), pos) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if pos == 0 && refused(&e) => return super::digest::hash_file(path),
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        hasher.update(&buf.as_slice()[..n]);
        pos += n as u64;
        // A short read is the end of the file (the next offset would be
        // unaligned); anything after it would be read by the next call.
        if !n.is_multiple_of(ALIGN) {
            let size = file.metadata()?.len();
            if pos != size {
                return Err(io::Error::other("the file changed while it was hashed"));
            }
            break;
        }
    }
    Ok((hex::encode(hasher.finalize()), pos))
}

/// A window of a file read past the page cache: whole aligned blocks are
/// read into an aligned buffer and handed out from there. Where the kernel
/// refuses `O_DIRECT` (at the first read) it reads the same ranges
/// buffered, so the bytes are the same either way.
pub(crate) struct Blocks {
    buf: AlignedBuf,
    /// The file offset of `buf`'s first byte, and how many bytes from
    /// there are valid.
    at: u64,
    valid: usize,
    direct: bool,
}

impl std::fmt::Debug for Blocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocks")
            .field("at", &self.at)
            .field("valid", &self.valid)
            .field("direct", &self.direct)
            .finish_non_exhaustive()
    }
}

impl Blocks {
    /// A window of `len` bytes (rounded up to [`ALIGN`]) over `file`, which
    /// this sets `O_DIRECT` on (every reader of the same descriptor shares
    /// the flag: each copes with either).
    pub(crate) fn new(file: &File, len: usize) -> Blocks {
        Blocks {
            buf: AlignedBuf::new(len),
            at: 0,
            valid: 0,
            direct: set_direct(file, true).is_ok(),
        }
    }

    /// Copies the bytes of `file` from `offset` into `out`, never using a
    /// byte at or past `limit` (what its writer says is written: a block
    /// read whole may hold more, not yet final). `Ok(0)` at `limit` or at
    /// the end of the file.
    pub(crate) fn read(
        &mut self,
        file: &File,
        offset: u64,
        limit: u64,
        out: &mut [u8],
    ) -> io::Result<usize> {
        if offset >= limit || out.is_empty() {
            return Ok(0);
        }
        let held = offset >= self.at && offset < self.at + self.valid as u64;
        if !held {
            self.fill(file, offset, limit)?;
            if offset >= self.at + self.valid as u64 {
                return Ok(0);
            }
        }
        let from = (offset - self.at) as usize;
        let n = out.len().min(self.valid - from);
        out[..n].copy_from_slice(&self.buf.as_slice()[from..from + n]);
        Ok(n)
    }

    /// Reads the window holding `offset` (below `limit`).
    fn fill(&mut self, file: &File, offset: u64, limit: u64) -> io::Result<()> {
        // Bounded: a refusal turns direct reads off, once.
        let mut refusals = 0;
        loop {
            // Direct reads start and end on aligned offsets; the end of
            // the file ends them short.
            let at = if self.direct {
                offset - offset % ALIGN as u64
            } else {
                offset
            };
            let cap = self.buf.len as u64;
            let mut want = (limit - at).min(cap) as usize;
            if self.direct {
                want = want.div_ceil(ALIGN) * ALIGN;
            }
            match file.read_at(&mut self.buf.as_mut_slice()[..want], at) {
                Ok(n) => {
                    self.at = at;
                    self.valid = n.min((limit - at) as usize);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Refused direct, or unaligned while another reader of
                // the descriptor turned it on: buffered from here.
                Err(e) if refused(&e) && refusals == 0 => {
                    refusals += 1;
                    self.direct = false;
                    set_direct(file, false)?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A file read from its start past the page cache (see [`Blocks`]): for a
/// big file another writer put past it (the rootfs tar), which a buffered
/// read would copy into new page-cache pages to read once.
pub struct DirectReader {
    file: File,
    blocks: Blocks,
    offset: u64,
}

impl DirectReader {
    /// Opens `path` for reading in 1 MiB blocks.
    pub fn open(path: &Path) -> io::Result<DirectReader> {
        let file = File::open(path)?;
        let blocks = Blocks::new(&file, 1 << 20);
        Ok(DirectReader {
            file,
            blocks,
            offset: 0,
        })
    }
}

impl io::Read for DirectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.blocks.read(&self.file, self.offset, u64::MAX, out)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Appends to a file past the page cache, in whole aligned blocks: bytes
/// are staged in an aligned buffer and written when it is full; the last,
/// partial block is padded with zeros and the file cut back to its size.
/// Where `O_DIRECT` is refused (at the first write, or at an unaligned
/// short write) it goes on with ordinary writes from the same offset.
pub struct DirectAppender {
    file: File,
    stage: AlignedBuf,
    filled: usize,
    /// Bytes in the file (all written but `filled`).
    written: u64,
    direct: bool,
}

impl DirectAppender {
    /// Writes `file` (empty, written from offset 0) with a staging buffer of
    /// `block` bytes (rounded up to [`ALIGN`]).
    pub fn new(file: File, block: usize) -> DirectAppender {
        let direct = set_direct(&file, true).is_ok();
        DirectAppender {
            file,
            stage: AlignedBuf::new(block),
            filled: 0,
            written: 0,
            direct,
        }
    }

    /// How many bytes are in the file so far: all appended but what is
    /// still staged (what a reader of the file may read).
    pub fn in_file(&self) -> u64 {
        self.written
    }

    /// Appends `data`.
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let room = self.stage.len - self.filled;
            let n = room.min(data.len());
            self.stage.as_mut_slice()[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == self.stage.len {
                self.flush_stage(self.filled)?;
            }
        }
        Ok(())
    }

    /// Writes the first `len` bytes of the stage at the file's end (`len`
    /// a multiple of [`ALIGN`] when direct) and empties the stage.
    fn flush_stage(&mut self, len: usize) -> io::Result<()> {
        let mut done = 0usize;
        while done < len {
            let chunk = &self.stage.as_slice()[done..len];
            match self.file.write_at(chunk, self.written + done as u64) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.direct && refused(&e) => {
                    set_direct(&self.file, false)?;
                    self.direct = false;
                }
                Err(e) => return Err(e),
            }
            // After a short write the rest is unaligned: buffered from here.
            if self.direct && done < len && !done.is_multiple_of(ALIGN) {
                set_direct(&self.file, false)?;
                self.direct = false;
            }
        }
        self.written += len as u64;
        self.filled = 0;
        Ok(())
    }

    /// Writes what is staged and returns the file, `written` bytes long.
    pub fn finish(mut self) -> io::Result<File> {
        let size = self.written + self.filled as u64;
        if self.filled > 0 {
            if self.direct {
                let padded = self.filled.div_ceil(ALIGN) * ALIGN;
                self.stage.as_mut_slice()[self.filled..padded].fill(0);
                self.flush_stage(padded)?;
                self.file.set_len(size)?;
            } else {
                self.flush_stage(self.filled)?;
            }
        }
        if self.direct {
            set_direct(&self.file, false)?;
        }
        Ok(self.file)
    }
}

impl io::Write for DirectAppender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        DirectAppender::write_all(self, data)?;
        Ok(data.len())
    }

    /// Staged bytes are written when the stage is full or at
    /// [`DirectAppender::finish`] (a partial block cannot be written direct).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pattern(len: usize, seed: usize) -> Vec<u8> {
        (0..len)
            .map(|k| (k * 131 + seed * 7 + k / 977) as u8)
            .collect()
    }

    #[test]
    fn the_appended_file_holds_exactly_the_bytes_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = DirectAppender::new(File::create(&path).unwrap(), 3 * ALIGN);
        // Where the file system takes O_DIRECT, the appender uses it (the
        // padding and the cut back are what is tested then).
        assert_eq!(w.direct, supported(dir.path()));
        let mut all = Vec::new();
        // Sizes across the stage's and the alignment's boundaries.
        for (i, len) in [0usize, 1, ALIGN - 1, 2, 3 * ALIGN, 5 * ALIGN + 3, 7]
            .into_iter()
            .enumerate()
        {
            let data = pattern(len, i);
            w.write_all(&data).unwrap();
            all.extend_from_slice(&data);
        }
        let file = w.finish().unwrap();
        assert_eq!(file.metadata().unwrap().len(), all.len() as u64);
        let mut back = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        assert!(back == all, "the file differs from what was written");
        let (sha, size) = hash_file(&path).unwrap();
        assert_eq!(size, all.len() as u64);
        assert_eq!(sha, crate::core::digest::sha256_hex(&all));
    }

    #[test]
    fn a_whole_number_of_blocks_and_an_empty_file_hash_like_buffered_reads() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, ALIGN, 2 * ALIGN + 1] {
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, pattern(len, 3)).unwrap();
            assert_eq!(
                hash_file(&path).unwrap(),
                crate::core::digest::hash_file(&path).unwrap(),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn a_direct_reader_gives_every_byte_of_the_file_and_no_more() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, ALIGN - 1, ALIGN, 3 * ALIGN + 5, (1 << 20) + 7] {
            let path = dir.path().join(format!("f{len}"));
            let data = pattern(len, 5);
            std::fs::write(&path, &data).unwrap();
            let mut back = Vec::new();
            // Odd-sized reads, so that they straddle the blocks.
            let mut r = DirectReader::open(&path).unwrap();
            let mut buf = vec![0u8; 10_007];
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                back.extend_from_slice(&buf[..n]);
            }
            assert!(back == data, "{len} bytes read back differently");
        }
    }

    #[test]
    fn a_window_never_hands_out_bytes_past_the_limit_and_follows_it_as_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data = pattern(5 * ALIGN + 123, 9);
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let mut blocks = Blocks::new(&file, 2 * ALIGN);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 3000];
        // The limit grows as a writer's would, to unaligned offsets too.
        for limit in [
            100u64,
            ALIGN as u64 + 1,
            3 * ALIGN as u64,
            data.len() as u64,
        ] {
            loop {
                let n = blocks
                    .read(&file, got.len() as u64, limit, &mut buf)
                    .unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                assert!(got.len() as u64 <= limit, "read past the limit {limit}");
            }
            assert_eq!(got.len() as u64, limit);
        }
        assert!(got == data);
        // Past the end of the file: nothing, however high the limit.
        assert_eq!(
            blocks
                .read(&file, got.len() as u64, u64::MAX, &mut buf)
                .unwrap(),
            0
        );
    }

    #[test]
    fn a_window_reads_on_when_its_descriptor_refuses_an_unaligned_direct_read() {
        let dir = tempfile::tempdir().unwrap();
        if !supported(dir.path()) {
            return; // nothing to refuse here
        }
        let path = dir.path().join("f");
        let data = pattern(3 * ALIGN, 2);
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        // Another reader of the descriptor turned O_DIRECT on after this
        // one had turned it off: its unaligned read is refused once.
        let mut blocks = Blocks::new(&file, ALIGN);
        blocks.direct = false;
        let mut buf = vec![0u8; 100];
        let n = blocks.read(&file, 7, u64::MAX, &mut buf).unwrap();
        assert_eq!(&buf[..n], &data[7..7 + n]);
        assert!(n > 0);
    }

    #[test]
    fn buffers_are_aligned() {
        for len in [1, ALIGN, 3 * ALIGN + 1] {
            let mut b = AlignedBuf::new(len);
            assert_eq!(b.as_mut_slice().as_ptr() as usize % ALIGN, 0);
            assert_eq!(b.as_slice().len() % ALIGN, 0);
            assert!(b.as_slice().len() >= len);
        }
    }
}
