//! The terminal line of a build: one indicatif line per phase of the
//! assembly (`unpack 120/263 libssl3 3.0.15-1 amd64`, `configure #14
//! preinst install (openssh-server …)`, `steps 3/7`, `outputs 1/2 ONIE
//! installer`) with the phase's elapsed time, cleared when the phase ends so
//! that only the usual summary lines stay. Drawn only on a terminal and not
//! with `-q`; elsewhere every call does nothing and the output is the plain
//! lines it always was.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::rootfs::Reporter;

/// A [`Reporter`] drawing one line per phase on stderr.
#[derive(Debug)]
pub struct PhaseLine {
    visible: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl PhaseLine {
    /// Drawn when stderr is a terminal and not `quiet`.
    pub fn for_terminal(quiet: bool) -> PhaseLine {
        PhaseLine::new(!quiet && std::io::stderr().is_terminal())
    }

    /// Drawn (`visible`) or not; [`PhaseLine::for_terminal`] decides for a build.
    pub fn new(visible: bool) -> PhaseLine {
        PhaseLine {
            visible,
            bar: Mutex::new(None),
        }
    }

    fn with_bar(&self, f: impl FnOnce(&mut Option<ProgressBar>)) {
        if self.visible {
            f(&mut self.bar.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }
}

impl Reporter for PhaseLine {
    fn phase(&self, name: &str, total: Option<u64>) {
        self.with_bar(|slot| {
            if let Some(old) = slot.take() {
                old.finish_and_clear();
            }
            let (bar, template) = match total {
                Some(n) => (
                    ProgressBar::new(n),
                    "  {prefix:>9} [{elapsed_precise}] [{bar:25.cyan/blue}] {pos}/{len} {wide_msg}",
                ),
                None => (
                    ProgressBar::no_length(),
                    "  {prefix:>9} [{elapsed_precise}] {spinner} {wide_msg}",
                ),
            };
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(name.to_string());
            // The elapsed time moves while one long script runs.
            bar.enable_steady_tick(Duration::from_millis(200));
            *slot = Some(bar);
        });
    }

    fn item(&self, label: &str) {
        self.with_bar(|slot| {
            if let Some(bar) = slot {
                bar.inc(1);
                bar.set_message(label.to_string());
            }
        });
    }

    fn phase_done(&self) {
        self.with_bar(|slot| {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        });
    }
}

impl Drop for PhaseLine {
    fn drop(&mut self) {
        self.phase_done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_line_ignores_every_call() {
        let line = PhaseLine::new(false);
        line.phase("unpack", Some(2));
        line.item("a 1 amd64");
        line.phase_done();
        assert!(line.bar.lock().unwrap().is_none());
    }

    #[test]
    fn a_phase_counts_its_items_and_is_cleared_when_done() {
        let line = PhaseLine::new(true);
        line.phase("unpack", Some(3));
        line.item("a 1 amd64");
        line.item("b 1 amd64");
        {
            let bar = line.bar.lock().unwrap();
            let bar = bar.as_ref().unwrap();
            assert_eq!((bar.position(), bar.length()), (2, Some(3)));
            assert_eq!(bar.message(), "b 1 amd64");
            assert_eq!(bar.prefix(), "unpack");
        }
        // The next phase replaces it; done clears it.
        line.phase("configure", None);
        assert_eq!(line.bar.lock().unwrap().as_ref().unwrap().position(), 0);
        line.phase_done();
        assert!(line.bar.lock().unwrap().is_none());
    }
}
