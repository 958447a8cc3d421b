//! A file writer whose bytes are hashed and written on another thread.
//!
//! A cache entry (an 800 MB rootfs tar) used to be written, then read back
//! to hash it: 0.5 s on the build's critical path per entry. Here the
//! writing thread only fills 1 MiB buffers; a second thread hashes each and
//! a third writes it to the file, so the tar walk, the sha256 and the
//! writes run side by side and nothing is read twice. The file gets the
//! same bytes in the same order.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use super::growing::Growing;
use super::uncached::DirectAppender;

/// Bytes handed over at a time.
const BLOCK: usize = 1 << 20;
/// Blocks in flight at most between each pair of threads (so
/// about `2 * IN_FLIGHT` buffers allocated).
const IN_FLIGHT: usize = 4;

/// What the writing thread returns: the file, the digest and the size, or
/// the first write error.
type Finished = io::Result<(File, String, u64)>;

/// Where the writing thread writes.
enum Out {
    Buffered(File),
    Direct(DirectAppender),
}

/// Writes to a file through a hashing and a writing thread (see the module
/// docs).
pub struct HashingFileWriter {
    buf: Vec<u8>,
    full: Option<SyncSender<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<Finished>>,
}

impl HashingFileWriter {
    /// Starts the threads for `file` (written from its current offset).
    pub fn new(file: File) -> HashingFileWriter {
        HashingFileWriter::start(file, None, false)
    }

    /// As [`HashingFileWriter::uncached`], telling `growing` how many bytes
    /// are in the file after each write (its readers follow, reading past
    /// the page cache too: [`super::growing::GrowingReader`]; completing or
    /// failing it is the caller's).
    pub fn reporting(file: File, growing: Arc<Growing>) -> HashingFileWriter {
        HashingFileWriter::start(file, Some(growing), true)
    }

    /// As [`HashingFileWriter::new`] for a new, empty `file` written past
    /// the page cache where its file system allows (see
    /// [`super::uncached`]): for a big file nothing reads soon.
    pub fn uncached(file: File) -> HashingFileWriter {
        HashingFileWriter::start(file, None, true)
    }

    fn start(file: File, growing: Option<Arc<Growing>>, uncached: bool) -> HashingFileWriter {
        let (full, blocks) = sync_channel::<Vec<u8>>(IN_FLIGHT);
        let (to_write, hashed) = sync_channel::<Vec<u8>>(IN_FLIGHT);
        let (give_back, empty) = sync_channel::<Vec<u8>>(2 * IN_FLIGHT + 1);
        // Hashing and writing on threads of their own: a direct write
        // waits for the device, and one thread doing both bounded a tar
        // walk that was mostly waiting (0.27 s of sha256 plus 0.42 s of
        // writes for 544 MB, one after the other).
        let hashing = std::thread::spawn(move || -> (String, u64) {
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            for block in blocks {
                hasher.update(&block);
                size += block.len() as u64;
                // The writer stopped (its error is the outcome).
                if to_write.send(block).is_err() {
                    break;
                }
            }
            (hex::encode(hasher.finalize()), size)
        });
        let thread = std::thread::spawn(move || -> Finished {
            let mut out = if uncached {
                Out::Direct(DirectAppender::new(file, BLOCK))
            } else {
                Out::Buffered(file)
            };
            let mut size = 0u64;
            for block in hashed {
                size += block.len() as u64;
                // Readable: what is in the file, not what is staged.
                let readable = match &mut out {
                    Out::Buffered(f) => f.write_all(&block).map(|()| size)?,
                    Out::Direct(d) => d.write_all(&block).map(|()| d.in_file())?,
                };
                if let Some(g) = &growing {
                    g.written(readable);
                }
                let _ = give_back.try_send(block);
            }
            let file = match out {
                Out::Buffered(f) => f,
                Out::Direct(d) => d.finish()?,
            };
            if let Some(g) = &growing {
                g.written(size);
            }
            let (sha, hashed_size) = hashing
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            debug_assert_eq!(hashed_size, size, "every hashed block is written");
            Ok((file, sha, size))
        });
        HashingFileWriter {
            buf: Vec::with_capacity(BLOCK),
            full: Some(full),
            empty,
            thread: Some(thread),
        }
    }

    /// Hands the buffer over; an error when the thread stopped (a write
    /// failed: [`HashingFileWriter::finish`] says which).
    fn hand_over(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = match self.empty.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => Vec::with_capacity(BLOCK),
        };
        let block = std::mem::replace(&mut self.buf, next);
        let sent = self.full.as_ref().map(|tx| tx.send(block));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(io::Error::other("the hashing writer's thread stopped")),
        }
    }

    /// Writes what is buffered, waits for the thread and returns the file
    /// (not synced), the sha256 (lower-case hex) and the size of all that
    /// was written; the first write error instead.
    pub fn finish(mut self) -> Finished {
        let handed = self.hand_over();
        self.full = None;
        let thread = self.thread.take().expect("finished once");
        let finished = thread
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        // The thread's own error says more than "it stopped".
        let finished = finished?;
        handed.map(|()| finished)
    }
}

impl Write for HashingFileWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = BLOCK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BLOCK {
            self.hand_over()?;
        }
        Ok(n)
    }

    /// Buffers are handed over when full or at [`HashingFileWriter::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for HashingFileWriter {
    fn drop(&mut self) {
        self.full = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_file_and_its_digest_are_those_of_the_bytes_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = HashingFileWriter::new(File::create(&path).unwrap());
        let mut all = Vec::new();
        // Writes of every size across the block boundaries.
        for (i, len) in [0usize, 1, 1000, BLOCK - 1001, BLOCK, 3 * BLOCK + 7, 5]
            .iter()
            .enumerate()
        {
            let chunk: Vec<u8> = (0..*len).map(|k| (k * 31 + i) as u8).collect();
            w.write_all(&chunk).unwrap();
            all.extend_from_slice(&chunk);
        }
        let (mut file, sha, size) = w.finish().unwrap();
        file.flush().unwrap();
        assert_eq!(size, all.len() as u64);
        assert_eq!(sha, crate::core::digest::sha256_hex(&all));
        let mut on_disk = Vec::new();
        File::open(&path)
            .unwrap()
            .read_to_end(&mut on_disk)
            .unwrap();
        assert_eq!(on_disk, all);
    }

    #[test]
    fn an_uncached_file_gets_the_same_bytes_and_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = HashingFileWriter::uncached(File::create(&path).unwrap());
        let all: Vec<u8> = (0..2 * BLOCK + 4097).map(|k| (k % 251) as u8).collect();
        w.write_all(&all).unwrap();
        let (file, sha, size) = w.finish().unwrap();
        assert_eq!(file.metadata().unwrap().len(), all.len() as u64);
        assert_eq!(size, all.len() as u64);
        assert_eq!(sha, crate::core::digest::sha256_hex(&all));
        assert!(std::fs::read(&path).unwrap() == all, "the file differs");
    }

    #[test]
    fn a_write_error_is_the_outcome() {
        // /dev/full: every write fails with ENOSPC.
        let Ok(full) = File::options().write(true).open("/dev/full") else {
            return;
        };
        let mut w = HashingFileWriter::new(full);
        // Before the writing thread runs, up to `2 * IN_FLIGHT + 2` blocks
        // can be taken (both channels full, one held by each thread); once
        // its first write failed, the error reaches a writer within two
        // more. Past that bound, a write that still succeeds is the bug.
        let bound = 2 * IN_FLIGHT + 2 + 2;
        let failed = (0..=bound).any(|_| w.write_all(&vec![1u8; BLOCK]).is_err());
        assert!(failed, "writes go on after the thread stopped");
        let err = w.finish().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    }
}
