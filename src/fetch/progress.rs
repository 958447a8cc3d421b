//! Progress display: one overall bar (bytes, files, rate, ETA) and one bar per
//! download in flight. Drawn on stderr only when it is a terminal and the
//! user did not ask for quiet; otherwise every call is a cheap no-op.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Shared progress state for one fetch run.
#[derive(Debug, Clone)]
pub struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
    files_total: Arc<AtomicUsize>,
    files_done: Arc<AtomicUsize>,
}

impl Progress {
    /// Visible on stderr when it is a terminal and not `quiet`.
    pub fn for_terminal(quiet: bool) -> Progress {
        Progress::new(!quiet && std::io::stderr().is_terminal())
    }

    /// Never drawn (tests, pipes).
    pub fn hidden() -> Progress {
        Progress::new(false)
    }

    fn new(visible: bool) -> Progress {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template(
                "fetch [{bar:30.cyan/blue}] {binary_bytes}/{binary_total_bytes} \
                 {binary_bytes_per_sec} ETA {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Progress {
            multi,
            overall,
            files_total: Arc::new(AtomicUsize::new(0)),
            files_done: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Sets what the overall bar counts towards.
    pub fn set_total(&self, files: usize, bytes: u64) {
        self.files_total.store(files, Ordering::Relaxed);
        self.overall.set_length(bytes);
        self.update_message();
    }

    /// Adds a bar for one download of `size` bytes labelled `label`.
    pub fn start(&self, label: &str, size: u64) -> BlobProgress {
        let bar = self.multi.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template(
                "  {msg:40!} [{bar:20}] {binary_bytes}/{binary_total_bytes}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(label.to_string());
        BlobProgress {
            bar,
            progress: self.clone(),
            counted: 0,
        }
    }

    /// Prints a line above the bars; nothing when hidden (callers that must
    /// always say something print it themselves).
    pub fn println(&self, line: &str) {
        let _ = self.multi.println(line);
    }

    /// Removes all bars from the terminal.
    pub fn finish(&self) {
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }

    fn update_message(&self) {
        let done = self.files_done.load(Ordering::Relaxed);
        let total = self.files_total.load(Ordering::Relaxed);
        self.overall.set_message(format!("{done}/{total} files"));
    }
}

/// The bar of one download; removed from the display when dropped.
#[derive(Debug)]
pub struct BlobProgress {
    bar: ProgressBar,
    progress: Progress,
    counted: u64,
}

impl BlobProgress {
    /// `n` more bytes are in the temp file.
    pub fn advance(&mut self, n: u64) {
        self.bar.inc(n);
        self.progress.overall.inc(n);
        self.counted += n;
    }

    /// The temp file was emptied: take back what it had contributed.
    pub fn reset(&mut self) {
        self.bar.set_position(0);
        let overall = &self.progress.overall;
        overall.set_position(overall.position().saturating_sub(self.counted));
        self.counted = 0;
    }

    /// The blob is in the store.
    pub fn done(self) {
        self.progress.files_done.fetch_add(1, Ordering::Relaxed);
        self.progress.update_message();
    }
}

impl Drop for BlobProgress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        self.progress.multi.remove(&self.bar);
    }
}
