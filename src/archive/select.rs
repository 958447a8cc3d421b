//! Which records of the loaded indexes become the solver's universe.
//!
//! A solve reaches a few hundred of the ~70k stanzas of a suite; only those
//! are built as records ([`debsolve::reachable`] decides which, over the
//! indexes' snapshots seen as one index keyed by name). Everything else stays
//! in the mapped snapshot and text files, untouched.

use std::collections::HashSet;

use super::ArchiveError;
use super::cache::Cache;
use super::plain::IndexView;
use super::snapshot::Damaged;
use crate::core::package::BinaryPackage;

/// Which records [`super::load_sources_for`] hands back.
#[derive(Debug, Clone, Default)]
pub enum Select {
    /// Every record of every index.
    #[default]
    All,
    /// The records a solve from these root relation names can reach (the
    /// Essential/required set always included), following Recommends when
    /// `recommends`: see `debsolve::reach`.
    Reachable {
        /// Names in the requests: the recipe's packages, tools, components'
        /// build dependencies, … (every alternative).
        roots: Vec<String>,
        /// Whether any of the solves follows Recommends.
        recommends: bool,
    },
}

/// The views of all sources, in source and index order, as one index.
struct Catalog<'a> {
    views: &'a [IndexView],
}

/// Which view failed.
struct ViewDamaged(usize);

impl debsolve::NameIndex for Catalog<'_> {
    type Error = ViewDamaged;

    fn named(&self, name: &str, out: &mut Vec<(u64, BinaryPackage)>) -> Result<(), ViewDamaged> {
        for (v, view) in self.views.iter().enumerate() {
            for i in view.snap.named(name) {
                let r = view
                    .snap
                    .build(i, &view.text.reader(), view.source)
                    .map_err(|Damaged| ViewDamaged(v))?;
                out.push(((v as u64) << 32 | i as u64, r));
            }
        }
        Ok(())
    }

    fn provider_names(&self, name: &str, out: &mut Vec<String>) -> Result<(), ViewDamaged> {
        for (v, view) in self.views.iter().enumerate() {
            for i in view.snap.providers(name) {
                out.push(
                    view.snap
                        .name(i)
                        .map_err(|Damaged| ViewDamaged(v))?
                        .to_string(),
                );
            }
        }
        Ok(())
    }
}

/// The records of `views` that `select` asks for, in view order, each view's
/// in index order. A view whose snapshot turns out damaged is parsed again
/// (its snapshot rewritten) and the selection redone.
pub(super) fn select(
    cache: &Cache,
    views: &mut [IndexView],
    select: &Select,
) -> Result<Vec<BinaryPackage>, ArchiveError> {
    // Each round either succeeds or rebuilds one more view: bounded.
    let mut rebuilt = HashSet::new();
    loop {
        let result = match select {
            Select::All => all(views),
            Select::Reachable { roots, recommends } => reachable(views, roots, *recommends),
        };
        match result {
            Ok(records) => return Ok(records),
            Err(ViewDamaged(v)) => {
                if !rebuilt.insert(v) {
                    return Err(ArchiveError::Setup(format!(
                        "internal: the snapshot of index {v} is damaged right after it was written"
                    )));
                }
                views[v].rebuild(cache)?;
            }
        }
    }
}

fn all(views: &[IndexView]) -> Result<Vec<BinaryPackage>, ViewDamaged> {
    let mut out = Vec::new();
    for (v, view) in views.iter().enumerate() {
        out.extend(view.all().map_err(|Damaged| ViewDamaged(v))?);
    }
    Ok(out)
}

fn reachable(
    views: &[IndexView],
    roots: &[String],
    recommends: bool,
) -> Result<Vec<BinaryPackage>, ViewDamaged> {
    let mut seeds = roots.to_vec();
    // Every solve adds the Essential/required set, whatever the recipe says.
    for (v, view) in views.iter().enumerate() {
        for i in view.snap.flagged() {
            seeds.push(
                view.snap
                    .name(i)
                    .map_err(|Damaged| ViewDamaged(v))?
                    .to_string(),
            );
        }
    }
    seeds.sort_unstable();
    seeds.dedup();
    debsolve::reachable(&Catalog { views }, seeds, recommends)
}
