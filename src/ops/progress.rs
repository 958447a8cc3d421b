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

/// A reporter passing every hook on to `inner` that also starts a
/// speculative deflate pass over the tree when the assembly says it is
/// settling (see [`crate::pack::speculate`]), and lets the tools tree's
/// extraction start when the configure phase does.
pub(crate) struct Speculating<'a> {
    /// Where the progress hooks go.
    pub(crate) inner: &'a dyn Reporter,
    /// The passes; `None`: nothing is started.
    pub(crate) speculation: Option<&'a crate::pack::speculate::Speculation>,
    /// The tools tree, released when the configure phase starts.
    pub(crate) tools: Option<&'a crate::tools::ToolsAhead>,
}

impl Reporter for Speculating<'_> {
    fn phase(&self, name: &str, total: Option<u64>) {
        // The scripts run one at a time from here: a core is free for it.
        if name == "configure"
            && let Some(t) = self.tools
        {
            t.release();
        }
        self.inner.phase(name, total);
    }

    fn item(&self, label: &str) {
        self.inner.item(label);
    }

    fn phase_done(&self) {
        self.inner.phase_done();
    }

    fn tree_settling(&self, root: &std::path::Path) {
        if let Some(s) = self.speculation {
            s.start(root);
        }
        self.inner.tree_settling(root);
    }
}

/// Prints what an assembly did: the Python layer's and the steps' lines,
/// the phases with their time and CPU, the slowest script run.
pub(crate) fn print_assembly(report: &crate::rootfs::AssembleReport) {
    for line in &report.python.lines {
        eprintln!("  python {line}");
    }
    for line in &report.steps {
        eprintln!("  step {line}");
    }
    let slowest = report.scripts.iter().max_by_key(|s| s.elapsed);
    let phases: Vec<String> = report
        .phases
        .iter()
        .zip(
            report
                .phase_cpu
                .iter()
                .map(Some)
                .chain(std::iter::repeat(None)),
        )
        .map(|((name, d), cpu)| match cpu {
            Some(c) => format!(
                "{name} {:.1}s (cpu {:.1}s)",
                d.as_secs_f64(),
                c.as_secs_f64()
            ),
            None => format!("{name} {:.1}s", d.as_secs_f64()),
        })
        .collect();
    eprintln!("  phases: {}", phases.join(", "));
    if let Some(top) = slowest {
        eprintln!(
            "  slowest script run: {}: {} ({:.1}s)",
            top.package,
            top.script,
            top.elapsed.as_secs_f64()
        );
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
