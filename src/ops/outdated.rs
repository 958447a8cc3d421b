//! `imgbuild outdated RECIPE`: what `imgbuild solve RECIPE --update` would
//! move against the archive as it is now (like `cargo outdated` or `apt
//! list --upgradable`), without writing the lock.
//!
//! The solve is the real one with [`Update::All`]; the lock is compared with
//! the committed one entry by entry. Exit status for CI: 0 when nothing
//! would move, 1 when something would (see `main.rs`).

use std::fmt;

use anyhow::Result;
use serde::Serialize;

use super::solve::{self, SolveArgs};
use super::workspace::{Demand, Loaded};
use crate::lock::{Lockfile, Update, diff};

/// One package or Python distribution that an update would move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// Package name (`pypi:NAME` for a Python distribution).
    pub name: String,
    /// Locked version, if it is locked now.
    pub old: Option<String>,
    /// Version an update would lock, if any.
    pub new: Option<String>,
    /// Recipe source the new version comes from (`bookworm-security`).
    pub source: Option<String>,
    /// Whether that source is a security suite.
    pub security: bool,
}

/// What `outdated` found.
#[derive(Debug, Clone, Serialize)]
pub struct OutdatedReport {
    /// Recipe name.
    pub recipe: String,
    /// Every entry that would move, sorted by name.
    pub drift: Vec<Drift>,
}

impl OutdatedReport {
    /// Whether anything would move.
    pub fn has_updates(&self) -> bool {
        !self.drift.is_empty()
    }
}

impl fmt::Display for OutdatedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.drift.is_empty() {
            return writeln!(f, "{}: the lock is current", self.recipe);
        }
        let security = self.drift.iter().filter(|d| d.security).count();
        writeln!(
            f,
            "{}: {} update(s) available ({security} from security suites):",
            self.recipe,
            self.drift.len()
        )?;
        for d in &self.drift {
            let old = d.old.as_deref().unwrap_or("-");
            let new = d.new.as_deref().unwrap_or("-");
            let from = d.source.as_deref().unwrap_or("");
            let flag = if d.security { "  [security]" } else { "" };
            writeln!(f, "  {:<32} {old} -> {new}  {from}{flag}", d.name)?;
        }
        Ok(())
    }
}

/// Solves `args.recipe` with every version free to move and lists what
/// differs from the existing lock (which must exist; it is not written).
pub fn run(args: &SolveArgs) -> Result<OutdatedReport> {
    let loaded = Loaded::load(&args.workspace, &args.recipe)?;
    let current = loaded.require(Demand::Exists)?.clone();
    let mut args = args.clone();
    args.update = Update::All;
    args.locked = false;
    let solved = solve::resolve(&args, loaded)?;
    Ok(OutdatedReport {
        recipe: solved.recipe.name.clone(),
        drift: drift(&current, &solved.lock, &solved.recipe),
    })
}

/// The entries of `new` that differ from `old`, with where the new one comes from.
pub fn drift(old: &Lockfile, new: &Lockfile, recipe: &crate::recipe::Recipe) -> Vec<Drift> {
    diff(old, new)
        .into_iter()
        .map(|c| {
            let bare = c.name.split(':').next().unwrap_or(&c.name);
            let source = new
                .packages
                .iter()
                .find(|p| p.name == bare && Some(&p.version) == c.new.as_ref())
                .map(|p| p.source.clone());
            let security = source
                .as_deref()
                .and_then(|s| recipe.source(s))
                .is_some_and(|s| s.suite.ends_with("-security") || s.suite.contains("/updates"));
            Drift {
                name: c.name,
                old: c.old,
                new: c.new,
                source,
                security,
            }
        })
        .collect()
}
