//! Solving the recipe's `[[component]]`s into the lock: each source pinned
//! (commit and exported-tree sha256, or tarball sha256) and each build
//! closure solved like the tools tree (`build-depends` plus the Essential
//! set, against the recipe's sources, Recommends never followed).

use std::collections::HashMap;

use anyhow::{Context, Result};

use crate::component::GitMirrors;
use crate::component::source::{self, Exported};
use crate::lock::{LockedComponent, Lockfile, Update, build_lock, preferences};
use crate::recipe::{Component, ComponentSource, Recipe};
use crate::solve::{self, EdgeKind, Request, RootRequirement, Universe};

/// The runtime relations of every component, as roots of the image's solve.
pub fn runtime_roots(recipe: &Recipe) -> Vec<RootRequirement> {
    recipe
        .components
        .iter()
        .flat_map(|c| &c.depends)
        .map(|r| RootRequirement {
            dependency: r.dependency.clone(),
            kind: EdgeKind::Requested,
        })
        .collect()
}

/// Whether `update` lets component `name` move to a new commit.
fn moves(update: &Update, name: &str) -> bool {
    match update {
        Update::Minimal => false,
        Update::Packages(names) => names.iter().any(|n| n == name),
        Update::All => true,
    }
}

/// The previous lock's entry for `c`, when its source is the same as now.
fn same_source<'a>(c: &Component, previous: Option<&'a Lockfile>) -> Option<&'a LockedComponent> {
    let old = previous?.components.iter().find(|o| o.name == c.name)?;
    let same = match &c.source {
        ComponentSource::Git { url, rev } => {
            old.git.as_deref() == Some(url)
                && old.rev.as_deref() == Some(rev)
                && old.commit.is_some()
        }
        ComponentSource::Tarball { url, sha256 } => {
            old.url.as_deref() == Some(url) && sha256.as_ref().is_none_or(|s| *s == old.sha256)
        }
    };
    same.then_some(old)
}

/// Pins `c`'s source: kept from the previous lock when the recipe still
/// names the same source and `update` does not move it, else fetched
/// (git, through `mirrors`) or downloaded and hashed.
fn pin_source(
    c: &Component,
    previous: Option<&Lockfile>,
    update: &Update,
    mirrors: &GitMirrors,
    offline: bool,
) -> Result<LockedComponent> {
    if let Some(old) = same_source(c, previous)
        && !moves(update, &c.name)
    {
        let mut kept = old.clone();
        if let Some(v) = &c.version {
            kept.version = v.clone();
        }
        kept.packages.clear();
        return Ok(kept);
    }
    if offline {
        anyhow::bail!(
            "component `{}` ({}): its source must be fetched to be pinned, and --offline forbids it",
            c.name,
            c.source_label()
        );
    }
    let work = std::env::temp_dir();
    let (exported, git, rev, url): (Exported, _, _, _) = match &c.source {
        ComponentSource::Git { url, rev } => {
            let e = source::export_git(
                &c.name,
                url,
                rev,
                None,
                mirrors,
                &work,
                &mut std::io::sink(),
            )
            .with_context(|| format!("pinning component `{}` ({})", c.name, c.source_label()))?;
            (e, Some(url.clone()), Some(rev.clone()), None)
        }
        ComponentSource::Tarball { url, sha256 } => {
            let e = source::download(&c.name, url, &mut std::io::sink())?;
            if let Some(want) = sha256
                && *want != e.sha256
            {
                anyhow::bail!(
                    "component `{}`: {url} has sha256 {}, the recipe pins {want} ({})",
                    c.name,
                    e.sha256,
                    c.origin
                );
            }
            (e, None, None, Some(url.clone()))
        }
    };
    Ok(LockedComponent {
        name: c.name.clone(),
        version: source::default_version(c, &exported),
        git,
        rev,
        commit: exported.commit.clone(),
        url,
        sha256: exported.sha256,
        size: exported.size,
        packages: Vec::new(),
    })
}

/// Every component of `recipe`, pinned and with its build closure solved
/// over `universe` (the previous lock's versions kept as `update` allows).
/// With `offline`, only pins the previous lock already has can be kept.
pub fn solve_components(
    recipe: &Recipe,
    universe: &Universe,
    previous: Option<&Lockfile>,
    update: &Update,
    mirrors: &GitMirrors,
    offline: bool,
) -> Result<Vec<LockedComponent>> {
    let mut out = Vec::new();
    for c in &recipe.components {
        let mut locked = pin_source(c, previous, update, mirrors, offline)?;
        let mut roots: Vec<RootRequirement> = c
            .build_depends
            .iter()
            .map(|r| RootRequirement {
                dependency: r.dependency.clone(),
                kind: EdgeKind::Requested,
            })
            .collect();
        roots.extend(solve::essential_requirements(universe));
        let old = previous.and_then(|p| {
            p.components
                .iter()
                .find(|o| o.name == c.name)
                .map(|o| o.build_lock(p))
        });
        let prefer = match (&old, update) {
            (Some(lock), Update::Minimal) => preferences(universe, lock, &[]),
            (Some(lock), Update::Packages(names)) => preferences(universe, lock, names),
            _ => HashMap::new(),
        };
        let request = Request {
            roots: roots.clone(),
            recommends: false,
            prefer,
        };
        let solution = solve::solve(universe, request).with_context(|| {
            format!(
                "cannot solve the build dependencies of component `{}` ({})",
                c.name, c.origin
            )
        })?;
        let mut plain = recipe.clone();
        plain.recommends = false;
        locked.packages = build_lock(&plain, universe, &solution, &roots, Vec::new()).packages;
        out.push(locked);
    }
    Ok(out)
}
