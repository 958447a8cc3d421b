//! The tools tree prepared on a thread of its own while the rootfs is
//! assembled: extracting it is work that does not depend on the image, and
//! the configure phase leaves a core idle (maintainer scripts run one at a
//! time). The thread waits for [`ToolsAhead::release`] (or the first
//! [`ToolsAhead::take`]): while packages are unpacked both cores are busy,
//! and extracting the tools tree then would only slow the unpacking.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::fetch::Store;
use crate::lock::Lockfile;
use crate::rootfs::cache::RootfsCache;

use super::{ToolsError, ToolsRoot};

/// A [`ToolsRoot::prepare`] started ahead of its use. Dropped unused, it
/// waits for the thread and removes a temp tree (a kept one stays kept).
#[derive(Debug)]
pub struct ToolsAhead {
    running: Mutex<Option<JoinHandle<Result<ToolsRoot, ToolsError>>>>,
    /// Dropped (or sent to) to let the thread start.
    go: Mutex<Option<SyncSender<()>>>,
}

impl ToolsAhead {
    /// Starts preparing the tools tree of `lock` (see [`ToolsRoot::prepare`]).
    pub fn start(
        lock: Lockfile,
        store: Store,
        cache_dir: PathBuf,
        work: PathBuf,
        source_date_epoch: i64,
    ) -> ToolsAhead {
        let (go, wait) = sync_channel::<()>(1);
        let handle = std::thread::spawn(move || {
            // `release`, or dropped unused: nothing to prepare.
            if wait.recv().is_err() {
                return Err(ToolsError::Failed {
                    command: "preparing the tools tree".into(),
                    why: "not needed".into(),
                    stderr: String::new(),
                });
            }
            // Behind every other thread: the configure phase (one maintainer
            // script at a time) leaves it a core.
            crate::core::scratch::lower_priority();
            ToolsRoot::prepare(
                &lock,
                &store,
                &RootfsCache::new(&cache_dir),
                &work,
                source_date_epoch,
            )
        });
        ToolsAhead {
            running: Mutex::new(Some(handle)),
            go: Mutex::new(Some(go)),
        }
    }

    /// Lets the preparation start (again: a no-op).
    pub fn release(&self) {
        if let Some(go) = self.go.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = go.try_send(());
        }
    }

    /// The prepared tree (waiting for it); `None` once taken.
    pub fn take(&self) -> Option<Result<ToolsRoot, ToolsError>> {
        self.release();
        let handle = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        Some(handle.join().unwrap_or_else(|_| {
            Err(ToolsError::Failed {
                command: "preparing the tools tree".into(),
                why: "its thread panicked".into(),
                stderr: String::new(),
            })
        }))
    }
}

impl Drop for ToolsAhead {
    fn drop(&mut self) {
        // Never released: the thread ends without preparing anything.
        drop(self.go.lock().unwrap_or_else(|e| e.into_inner()).take());
        drop(self.take());
    }
}
