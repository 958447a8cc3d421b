//! A file read while it is still being written.
//!
//! The rootfs tar is the input of every output, and the disk image's
//! `mkfs.ext4` reads it in one pass: it can start on the tar's first bytes
//! instead of after its last, so the disk (the longest output) no longer
//! waits for the archive. The writer says how far the file is written and
//! how it ended; a [`GrowingReader`] reads up to there from its own handle
//! (positioned reads, never past what is written) and waits for more, and
//! sees the end of file only once the writer said the file is complete, or
//! the writer's error. The writer puts the file past the page cache
//! ([`super::uncached`]), so readers read it that way too, never past what
//! is in the file (bytes still staged by the writer are not).

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::uncached::Blocks;

/// How the writing ended.
#[derive(Debug, Clone)]
enum End {
    /// Every byte is written; the file is now at this path.
    Complete(PathBuf),
    /// It never will be (the message says why).
    Failed(String),
}

#[derive(Debug, Default)]
struct State {
    /// A read handle on the file, once it exists.
    file: Option<Arc<File>>,
    /// Bytes written so far.
    len: u64,
    end: Option<End>,
}

/// The writer's side: what is written so far, and how it ended (see the
/// module docs). Shared between the writer and its readers.
#[derive(Debug, Default)]
pub struct Growing {
    state: Mutex<State>,
    changed: Condvar,
}

impl Growing {
    /// Nothing written yet, no file.
    pub fn new() -> Arc<Growing> {
        Arc::new(Growing::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.lock());
        self.changed.notify_all();
    }

    /// The file being written: `file` is a read handle on it.
    pub fn attach(&self, file: File) {
        self.update(|s| s.file = Some(Arc::new(file)));
    }

    /// `len` bytes from the start are written (and so readable).
    pub fn written(&self, len: u64) {
        self.update(|s| s.len = s.len.max(len));
    }

    /// The file is complete, now at `path`; readers get its end.
    pub fn complete(&self, path: PathBuf) {
        self.update(|s| {
            s.end.get_or_insert(End::Complete(path));
        });
    }

    /// The file will not be completed: readers get `why` as an error.
    /// (No effect once complete.)
    pub fn fail(&self, why: &str) {
        self.update(|s| {
            s.end.get_or_insert_with(|| End::Failed(why.to_string()));
        });
    }

    /// Waits until `ready` holds of the state or the writing failed.
    fn wait_for(&self, ready: impl Fn(&State) -> bool) -> io::Result<MutexGuard<'_, State>> {
        let mut state = self.lock();
        loop {
            if let Some(End::Failed(why)) = &state.end {
                return Err(io::Error::other(why.clone()));
            }
            if ready(&state) {
                return Ok(state);
            }
            // Bounded by the writer: it completes or fails the file on
            // every path, its guard included (see `ops::build`).
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits for the first bytes (or a complete empty file); the writer's
    /// error if it failed first.
    pub fn wait_started(&self) -> io::Result<()> {
        self.wait_for(|s| s.file.is_some() && (s.len > 0 || s.end.is_some()))
            .map(drop)
    }

    /// Waits until the file is complete and returns its path.
    pub fn wait_complete(&self) -> io::Result<PathBuf> {
        let state = self.wait_for(|s| matches!(s.end, Some(End::Complete(_))))?;
        match &state.end {
            Some(End::Complete(path)) => Ok(path.clone()),
            _ => unreachable!("waited for completion"),
        }
    }

    /// A reader from the file's first byte (waits for the file to exist).
    pub fn reader(self: &Arc<Self>) -> io::Result<GrowingReader> {
        let file = self.wait_for(|s| s.file.is_some())?.file.clone();
        let file = file.expect("waited for the file");
        Ok(GrowingReader {
            blocks: Blocks::new(&file, 1 << 20),
            file,
            offset: 0,
            growing: self.clone(),
        })
    }
}

/// Reads a [`Growing`] file from its start, waiting for what is not written
/// yet; the end of file comes once the writer completed it.
#[derive(Debug)]
pub struct GrowingReader {
    file: Arc<File>,
    /// Read past the page cache: the writer writes the file that way.
    blocks: Blocks,
    offset: u64,
    growing: Arc<Growing>,
}

impl Read for GrowingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let offset = self.offset;
        let state = self
            .growing
            .wait_for(|s| s.len > offset || matches!(s.end, Some(End::Complete(_))))?;
        let limit = state.len;
        drop(state);
        if limit <= offset {
            return Ok(0);
        }
        let n = self.blocks.read(&self.file, offset, limit, buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file is shorter than its writer said",
            ));
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// Runs `f` on a thread and returns what waits for its outcome: at most
/// 30 s, then it panics naming `what`, so a reader that would wait forever
/// fails a test instead of hanging it.
#[cfg(test)]
pub(crate) fn bounded<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> impl FnOnce() -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    move || {
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{what}: no outcome within 30 s"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_reader_gets_every_byte_as_it_is_written_then_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = File::create(&path).unwrap();
        let growing = Growing::new();
        growing.attach(File::open(&path).unwrap());
        let reading = {
            let growing = growing.clone();
            bounded("the reader", move || {
                growing.wait_started().unwrap();
                let mut all = Vec::new();
                growing.reader().unwrap().read_to_end(&mut all).map(|_| all)
            })
        };
        let mut expected = Vec::new();
        for i in 0..200u32 {
            let chunk: Vec<u8> = (0..(i * 37 % 5000)).map(|k| (k ^ i) as u8).collect();
            file.write_all(&chunk).unwrap();
            expected.extend_from_slice(&chunk);
            growing.written(expected.len() as u64);
        }
        // Bytes in the file past what the writer reported are not read.
        file.write_all(b"not yet reported").unwrap();
        growing.complete(path.clone());
        assert_eq!(reading().unwrap(), expected);
        assert_eq!(growing.wait_complete().unwrap(), path);
    }

    #[test]
    fn a_failed_writer_is_an_error_for_every_waiting_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let growing = Growing::new();
        growing.attach(File::open(&path).unwrap());
        growing.written(3);
        let mut reader = growing.reader().unwrap();
        let waiting = {
            let growing = growing.clone();
            bounded("the wait for completion", move || growing.wait_complete())
        };
        let mut buf = [0u8; 8];
        assert_eq!(reader.read(&mut buf).unwrap(), 3);
        growing.fail("the assembly failed");
        let err = reader.read(&mut buf).unwrap_err();
        assert!(err.to_string().contains("the assembly failed"), "{err}");
        assert!(waiting().is_err());
        // Failing before anything is attached ends the wait for a file too.
        let never = Growing::new();
        never.fail("no tar");
        assert!(never.wait_started().is_err());
        assert!(never.reader().is_err());
        // A completed file stays complete.
        let done = Growing::new();
        done.complete(path.clone());
        done.fail("late");
        assert_eq!(done.wait_complete().unwrap(), path);
    }
}
