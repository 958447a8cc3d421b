//! The resolver: an in-memory [`Universe`] of candidate packages and a PubGrub
//! provider over it. Pure computation, no I/O (like uv's resolver): the
//! archive layer loads indexes, imgbuild's `lock` module turns a [`Solution`]
//! into a lock. Being a crate of its own, it cannot reach any I/O code.

pub mod edges;
pub mod explain;
pub mod priority;
pub mod provider;
pub mod reach;
pub mod sentences;
pub mod universe;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use pubgrub::PubGrubError;

use debcore::relation::{Dependency, Relation};
use provider::{DebProvider, Pkg};
pub use provider::{EdgeKind, RootRequirement};
pub use reach::{NameIndex, reachable};
pub use universe::{InstanceId, SourceInfo, Universe};

/// The chosen set: for each installed instance, its 1-based candidate index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solution {
    /// Installed instances and the chosen candidate, sorted by instance id.
    pub chosen: BTreeMap<InstanceId, u32>,
}

/// Why solving failed.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// No consistent set exists; the text explains why, in Debian terms.
    #[error("no consistent set of packages satisfies the recipe:\n\n{0}")]
    Unsatisfiable(String),
    /// Internal failure of the solver.
    #[error("solver failure: {0}")]
    Internal(String),
}

/// The Essential and `Priority: required` set, as root requirements: every
/// native package whose preferred candidate is marked so. Only candidates of
/// the highest-priority sources count, so that an old suite added for a few
/// pins does not drag in its own (obsolete) required set.
pub fn essential_requirements(u: &Universe) -> Vec<RootRequirement> {
    let top = u.sources().iter().map(|s| s.priority).max().unwrap_or(0);
    let mut names: Vec<&str> = Vec::new();
    for (id, inst) in u.instances() {
        if *inst.arch != *u.native() {
            continue;
        }
        let best = (1..=u.candidate_count(id))
            .map(|k| u.candidate(id, k))
            .filter(|r| u.sources()[r.source].priority == top)
            .max_by(|a, b| a.version.cmp(&b.version));
        if best.is_some_and(|r| r.essential || r.required) {
            names.push(&inst.name);
        }
    }
    names.sort_unstable();
    names
        .into_iter()
        .map(|n| RootRequirement {
            dependency: Dependency {
                alternatives: vec![Relation {
                    name: n.to_string(),
                    arch: debcore::relation::ArchQual::Implicit,
                    constraint: None,
                }],
            },
            kind: EdgeKind::Essential,
        })
        .collect()
}

/// What to solve for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The recipe's requirements and the essential set.
    pub roots: Vec<RootRequirement>,
    /// Treat Recommends as soft dependencies (install when possible).
    pub recommends: bool,
    /// Candidates to keep when they are still allowed (the previous lock),
    /// so that a re-solve moves as little as possible.
    pub prefer: HashMap<InstanceId, u32>,
}

/// Solves a request over the universe. Deterministic: the same universe and
/// request give the same solution.
pub fn solve(u: &Universe, request: Request) -> Result<Solution, SolveError> {
    let provider = DebProvider::new(u, request.roots, request.recommends, request.prefer);
    match pubgrub::resolve(&provider, Pkg::Root, 1u32) {
        Ok(sel) => {
            let chosen = sel
                .into_iter()
                .filter_map(|(p, v)| match p {
                    Pkg::Real(id) if v > 0 => Some((id, v)),
                    _ => None,
                })
                .collect();
            Ok(Solution { chosen })
        }
        Err(PubGrubError::NoSolution(tree)) => {
            Err(SolveError::Unsatisfiable(explain::explain(&provider, tree)))
        }
        Err(e) => Err(SolveError::Internal(e.to_string())),
    }
}
