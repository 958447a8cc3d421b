//! Following an assembly as it runs: the phases and, within each, the item
//! being worked on (a package being unpacked, the maintainer script running,
//! a recipe step). The library only calls these hooks; drawing a terminal
//! line from them is the caller's business (`ops` does it with indicatif),
//! so nothing here prints and a quiet caller passes [`Silent`].

use std::path::Path;

/// Hooks called during an assembly, in order: [`Reporter::phase`], any
/// number of [`Reporter::item`], [`Reporter::phase_done`], next phase. Every
/// method does nothing by default.
pub trait Reporter {
    /// A phase (`unpack`, `configure`, `python`, `steps`, `normalize`, …)
    /// starts; `total` is how many items it has, when known.
    fn phase(&self, name: &str, total: Option<u64>) {
        let _ = (name, total);
    }

    /// The next item of the current phase starts (`label` names it: a
    /// package, `preinst install (openssh-server 1:9.2p1-2 amd64)`, a step).
    fn item(&self, label: &str) {
        let _ = label;
    }

    /// The current phase ended (successfully or not).
    fn phase_done(&self) {}

    /// From here on the tree under `root` changes little: the last long run
    /// of maintainer scripts starts (the initramfs, or the one
    /// `dpkg --configure -a` when no initramfs follows it). Work that reads
    /// the tree ahead of the outputs may start; it must never write the
    /// tree, and must expect it to change under its feet until the assembly
    /// returns.
    fn tree_settling(&self, root: &Path) {
        let _ = root;
    }
}

/// The reporter that reports nothing (quiet runs, tests, `verify`'s
/// second build).
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Reporter for Silent {}

/// Calls `phase_done` when dropped, so a phase ends on an error path too.
pub(crate) struct PhaseGuard<'a>(pub(crate) &'a dyn Reporter);

impl<'a> PhaseGuard<'a> {
    /// Starts phase `name` on `reporter`.
    pub(crate) fn start(reporter: &'a dyn Reporter, name: &str, total: Option<u64>) -> Self {
        reporter.phase(name, total);
        PhaseGuard(reporter)
    }
}

impl Drop for PhaseGuard<'_> {
    fn drop(&mut self) {
        self.0.phase_done();
    }
}
