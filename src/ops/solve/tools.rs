//! Solving the recipe's `tools` into the lock's `[[tool]]` section.

use std::collections::HashMap;

use crate::lock::{LockedPackage, Lockfile, Update, build_lock, preferences};
use crate::recipe::Recipe;
use crate::solve::{self, EdgeKind, Request, RootRequirement, SolveError, Universe};

/// Solves `recipe.tools` plus the Essential/required set (a shell, libc,
/// tar: what the tools need to run) as a request of its own over the same
/// universe as the image, keeping the previous lock's tool versions where
/// allowed (as `update` says). Empty when the recipe declares no tools.
/// Recommends are never followed: the tools tree is not a system to use.
pub fn solve_tools(
    recipe: &Recipe,
    universe: &Universe,
    previous: Option<&Lockfile>,
    update: &Update,
) -> Result<Vec<LockedPackage>, SolveError> {
    if recipe.tools.is_empty() {
        return Ok(Vec::new());
    }
    let mut roots: Vec<RootRequirement> = recipe
        .tools
        .iter()
        .map(|r| RootRequirement {
            dependency: r.dependency.clone(),
            kind: EdgeKind::Requested,
        })
        .collect();
    roots.extend(solve::essential_requirements(universe));
    let prefer = match (previous, update) {
        (Some(lock), Update::Minimal) => preferences(universe, &lock.tools_lock(), &[]),
        (Some(lock), Update::Packages(names)) => preferences(universe, &lock.tools_lock(), names),
        _ => HashMap::new(),
    };
    let request = Request {
        roots: roots.clone(),
        recommends: false,
        prefer,
    };
    let solution = solve::solve(universe, request)?;
    let mut plain = recipe.clone();
    plain.recommends = false;
    Ok(build_lock(&plain, universe, &solution, &roots, Vec::new()).packages)
}
