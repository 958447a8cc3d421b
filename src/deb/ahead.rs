//! Reading and decompressing the next packages while this one is extracted.
//!
//! Extraction is sequential (the install order decides who owns a shared
//! path), but reading a `.deb`, hashing it and decompressing its data.tar
//! (xz mostly: most of the CPU time of unpacking) is not: a [`ReadAhead`]
//! does that on its own thread, into a bounded queue of decompressed chunks,
//! and [`ReadAhead::unpack`] extracts from the queue. The tree written is
//! the same: the same bytes reach the same extraction code in the same order.
//!
//! A large package (a kernel: 108 MB of xz, 2 s to decompress) is instead
//! [`ReadAhead::spooled`] from the start of the unpacking: its data.tar goes
//! to an unlinked temp file as fast as it decompresses, on a core the small
//! packages leave idle, and its extraction, when its turn comes, reads what
//! is there and waits for the rest — not 2 s of xz on the critical path,
//! and not 112 MB of memory.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::Digest as _;

use super::{ControlFiles, ExtractOptions, HashingReader, UnpackError, Unpacked};

/// Size of one decompressed chunk.
const CHUNK: usize = 1 << 20;
/// Chunks queued per package: at most this many MiB decompressed ahead.
const QUEUE: usize = 8;
/// A .deb at least this large is worth [`ReadAhead::spooled`].
pub const SPOOL_FROM: u64 = 32 << 20;
/// Spooled chunks announced ahead of the extraction (1 GiB).
const SPOOL_QUEUE: usize = 1024;

/// What the reading thread sends.
enum Msg {
    /// The next bytes of data.tar.
    Data(Vec<u8>),
    /// data.tar's bytes up to this offset are in the spool file.
    Spooled(u64),
    /// The data.tar stream ended.
    End,
}

/// What the reading thread returns: the control members (or why the file
/// could not be read) and the file's sha256 and size.
type Outcome = (Result<ControlFiles, UnpackError>, Option<(String, u64)>);

/// A package being read and decompressed on another thread.
pub struct ReadAhead {
    deb: PathBuf,
    sha256: String,
    queue: Receiver<Msg>,
    /// The spool file of [`ReadAhead::spooled`].
    spool: Option<File>,
    thread: JoinHandle<Outcome>,
}

impl ReadAhead {
    /// Starts reading `deb` (whose sha256 must be `sha256`).
    pub fn start(deb: &Path, sha256: &str) -> ReadAhead {
        ReadAhead::launch(deb, sha256, QUEUE, None)
    }

    /// Starts reading `deb` with data.tar decompressed, without a bound,
    /// into an unlinked temp file in `dir`; [`ReadAhead::start`] when no
    /// temp file can be made there.
    pub fn spooled(deb: &Path, sha256: &str, dir: &Path) -> ReadAhead {
        match tempfile::tempfile_in(dir).and_then(|f| Ok((f.try_clone()?, f))) {
            // Offsets only, one per MiB: the reader waits only after 1 GiB.
            Ok(files) => ReadAhead::launch(deb, sha256, SPOOL_QUEUE, Some(files)),
            Err(_) => ReadAhead::start(deb, sha256),
        }
    }

    /// The reading thread for `deb`, `bound` messages ahead; with `spool`
    /// (the reading and the writing handle of one file), data.tar goes there.
    fn launch(deb: &Path, sha256: &str, bound: usize, spool: Option<(File, File)>) -> ReadAhead {
        let (tx, queue) = sync_channel(bound);
        let path = deb.to_path_buf();
        let (reading, writing) = spool.unzip();
        let thread = std::thread::spawn(move || read(&path, &tx, writing.as_ref()));
        ReadAhead {
            deb: deb.to_path_buf(),
            sha256: sha256.to_string(),
            queue,
            spool: reading,
            thread,
        }
    }

    /// Extracts the package under `root` as [`super::unpack_checked`] does,
    /// with the same errors: a file that does not hash to the locked sha256
    /// is [`UnpackError::Digest`], also when it fails to unpack.
    pub fn unpack(self, root: &Path, options: &ExtractOptions) -> Result<Unpacked, UnpackError> {
        let ReadAhead {
            deb,
            sha256,
            queue,
            spool,
            thread,
        } = self;
        let mut reader = QueueReader {
            queue: Some(queue),
            chunk: Vec::new(),
            at: 0,
            spool: spool.map(|file| Spool {
                file,
                read: 0,
                written: 0,
            }),
        };
        let extracted = super::extract_data(&deb, &mut reader, root, options);
        // Stops the reading thread if extraction ended early.
        drop(reader);
        let (control, digest) = thread
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let mismatch = |actual: String, size: u64| UnpackError::Digest {
            deb: deb.clone(),
            expected: sha256.clone(),
            actual,
            size,
        };
        // Not read to the end (a read or extraction error): hashed here, so a
        // tampered file is reported as such whatever else failed.
        let digest = match digest {
            Some(d) => Some(d),
            None => crate::core::digest::hash_file(&deb).ok(),
        };
        if let Some((actual, size)) = digest
            && actual != sha256
        {
            return Err(mismatch(actual, size));
        }
        let control = control?;
        let (paths, devices) = extracted?;
        Ok(Unpacked {
            control,
            paths,
            devices,
        })
    }
}

/// The reading thread: the ar members, control.tar parsed, data.tar
/// decompressed into the queue (or into `spool`, its offsets into the
/// queue), the rest of the file hashed.
fn read(deb: &Path, tx: &SyncSender<Msg>, spool: Option<&File>) -> Outcome {
    let file = match std::fs::File::open(deb) {
        Ok(f) => f,
        Err(error) => {
            let _ = tx.send(Msg::End);
            return (
                Err(UnpackError::Read {
                    deb: deb.to_path_buf(),
                    what: "cannot open".into(),
                    error,
                }),
                None,
            );
        }
    };
    let mut reader = HashingReader {
        inner: file,
        hasher: sha2::Sha256::new(),
        size: 0,
    };
    let mut stopped = false;
    let mut spooled = 0u64;
    let mut send = |data: &mut dyn Read| -> Result<(), UnpackError> {
        // A spooled chunk's buffer serves the next one; a queued one is sent.
        let mut spare: Vec<u8> = Vec::new();
        loop {
            let mut chunk = match std::mem::take(&mut spare) {
                b if b.len() == CHUNK => b,
                _ => vec![0u8; CHUNK],
            };
            let mut filled = 0;
            while filled < CHUNK {
                match data.read(&mut chunk[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => {
                        return Err(UnpackError::Read {
                            deb: deb.to_path_buf(),
                            what: "reading data.tar".into(),
                            error,
                        });
                    }
                }
            }
            if filled == 0 {
                return Ok(());
            }
            chunk.truncate(filled);
            let msg = match spool {
                None => Msg::Data(chunk),
                Some(file) => {
                    file.write_all_at(&chunk, spooled)
                        .map_err(|error| UnpackError::Read {
                            deb: deb.to_path_buf(),
                            what: "spooling data.tar to a temp file".into(),
                            error,
                        })?;
                    spooled += filled as u64;
                    spare = chunk;
                    Msg::Spooled(spooled)
                }
            };
            if tx.send(msg).is_err() {
                // The extraction stopped: nothing more is wanted.
                stopped = true;
                return Ok(());
            }
        }
    };
    let walked = super::walk_with(deb, &mut reader, Some(&mut send));
    let _ = tx.send(Msg::End);
    if stopped || walked.is_err() {
        return (walked.map(|(c, _)| c), None);
    }
    if io::copy(&mut reader, &mut io::sink()).is_err() {
        return (walked.map(|(c, _)| c), None);
    }
    let actual = hex::encode(std::mem::take(&mut reader.hasher).finalize());
    (walked.map(|(c, _)| c), Some((actual, reader.size)))
}

/// data.tar's bytes, from the queue (or the spool file, as far as the
/// queue says it is written).
struct QueueReader {
    queue: Option<Receiver<Msg>>,
    chunk: Vec<u8>,
    at: usize,
    spool: Option<Spool>,
}

/// The spool file and how far it is read and written.
struct Spool {
    file: File,
    read: u64,
    written: u64,
}

impl Read for QueueReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() && self.spool.as_ref().is_none_or(|s| s.read == s.written)
        {
            let Some(queue) = &self.queue else {
                return Ok(0);
            };
            match queue.recv() {
                Ok(Msg::Data(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Ok(Msg::Spooled(upto)) => {
                    if let Some(spool) = &mut self.spool {
                        spool.written = upto;
                    }
                }
                Ok(Msg::End) | Err(_) => {
                    self.queue = None;
                    return Ok(0);
                }
            }
        }
        if let Some(spool) = &mut self.spool
            && spool.read < spool.written
        {
            let want = buf.len().min((spool.written - spool.read) as usize);
            let n = spool.file.read_at(&mut buf[..want], spool.read)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the spool file of data.tar ended early",
                ));
            }
            spool.read += n as u64;
            return Ok(n);
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
