//! Deflating a tree ahead of its artifacts.
//!
//! While the maintainer scripts run (one core busy, the other idle) most
//! of the tree is already what the image will hold. A [`Speculation`] walks
//! it as the rootfs tar will and deflates its chunks into the
//! [`ChunkCache`] on a low-priority thread; when the real tar is compressed
//! afterwards, every chunk the scripts did not touch is found there. Nothing
//! speculative reaches an artifact unchecked: the cache's entries are
//! checked against the real chunk's bytes. The walk never follows a symlink
//! out of the tree (see [`super::tar`]) and stops at the first change under
//! its feet.

use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::chunks::ChunkCache;
use super::pargz::ParGzEncoder;
use super::tar::{TarOptions, write_tree};

/// Speculative passes over a tree being finished, one at a time.
#[derive(Debug)]
pub struct Speculation {
    cache: Arc<ChunkCache>,
    level: u32,
    opts: TarOptions,
    running: Mutex<Option<Pass>>,
}

#[derive(Debug)]
struct Pass {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Speculation {
    /// Passes that deflate at `level` into `cache` the tar `opts` makes.
    pub fn new(cache: Arc<ChunkCache>, level: u32, opts: TarOptions) -> Speculation {
        Speculation {
            cache,
            level,
            opts,
            running: Mutex::new(None),
        }
    }

    /// Starts a pass over `root`, after stopping the one running (a later
    /// pass sees a tree closer to the final one; what the earlier one
    /// deflated is in the cache already).
    pub fn start(&self, root: &Path) {
        self.stop();
        let stop = Arc::new(AtomicBool::new(false));
        let (cache, level, opts, root) = (
            self.cache.clone(),
            self.level,
            self.opts,
            root.to_path_buf(),
        );
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            crate::core::scratch::lower_priority();
            let _ = pass(&root, &opts, cache, level, &flag);
        });
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(Pass { stop, thread });
    }

    /// Stops the running pass, if any, and waits for it.
    pub fn stop(&self) {
        let pass = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(pass) = pass {
            pass.stop.store(true, Ordering::Relaxed);
            let _ = pass.thread.join();
        }
    }
}

impl Drop for Speculation {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One pass: the tar of `root` into a speculative encoder, until the end
/// of the tree, the first error, or `stop`.
fn pass(
    root: &Path,
    opts: &TarOptions,
    cache: Arc<ChunkCache>,
    level: u32,
    stop: &AtomicBool,
) -> io::Result<()> {
    let encoder = ParGzEncoder::speculative(io::sink(), level, cache)?;
    let mut w = Stoppable {
        inner: encoder,
        stop,
    };
    write_tree(root, &mut w, opts).map_err(io::Error::other)?;
    w.inner.finish().map(drop)
}

/// A writer that fails once `stop` is set (which ends the tar walk).
struct Stoppable<'a, W> {
    inner: W,
    stop: &'a AtomicBool,
}

impl<W: Write> Write for Stoppable<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            // Not `Interrupted`: `write_all` would retry it.
            return Err(io::Error::other("speculative pass stopped"));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
