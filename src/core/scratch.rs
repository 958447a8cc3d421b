//! Scratch directories removed on a thread of their own: a build tree is
//! tens of thousands of files, and unlinking them need not hold up the
//! outputs. Whoever owns a [`Removals`] waits for every removal when it is
//! dropped, so nothing is left behind when the command returns.

use std::sync::Mutex;
use std::thread::JoinHandle;

/// Removals in flight; each is waited for when this is dropped.
#[derive(Debug, Default)]
pub struct Removals {
    running: Mutex<Vec<JoinHandle<()>>>,
}

impl Removals {
    /// Removes `dir` (and everything in it) in the background.
    pub fn remove(&self, dir: tempfile::TempDir) {
        // Behind the outputs being written meanwhile (waited for anyway).
        let handle = std::thread::spawn(move || {
            lower_priority();
            drop(dir)
        });
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }
}

/// Gives the calling thread the lowest scheduling priority (nice 19; on
/// Linux a thread's nice value is its own). Best effort.
pub fn lower_priority() {
    // SAFETY: plain system calls on this thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

/// Makes the calling thread `SCHED_BATCH` (same share of the CPU, no
/// wakeup preemption): a thread woken each time a consumer frees room in
/// a pipe then waits for its turn instead of preempting the consumer on
/// the spot. Best effort.
pub fn batch_scheduling() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a plain system call on the calling thread (pid 0) with a
    // parameter block that lives across it.
    unsafe {
        let _ = libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
    }
}

impl Drop for Removals {
    fn drop(&mut self) {
        let handles = std::mem::take(self.running.get_mut().unwrap_or_else(|e| e.into_inner()));
        for handle in handles {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_directory_is_gone_once_the_removals_are_dropped() {
        let parent = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        let removals = Removals::default();
        for i in 0..3 {
            let dir = tempfile::tempdir_in(parent.path()).unwrap();
            for j in 0..50 {
                std::fs::create_dir_all(dir.path().join(format!("d{i}/{j}"))).unwrap();
                std::fs::write(dir.path().join(format!("d{i}/{j}/f")), b"x").unwrap();
            }
            paths.push(dir.path().to_path_buf());
            removals.remove(dir);
        }
        drop(removals);
        assert!(paths.iter().all(|p| !p.exists()));
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    }
}
