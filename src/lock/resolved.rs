//! From a solution to a lock: which locked versions to keep when
//! re-solving ([`preferences`]), the lock a solution gives ([`build_lock`])
//! and what changed between two locks ([`diff`]).

use std::collections::{BTreeMap, HashMap};

use super::{LOCK_VERSION, LockedEdge, LockedPackage, LockedRecipe, LockedSource, Lockfile};
use crate::recipe::Recipe;
use crate::solve::{self, EdgeKind, RootRequirement, Solution, Universe};

/// How `solve` should treat an existing lock.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Update {
    /// Keep locked versions wherever they are still allowed.
    #[default]
    Minimal,
    /// Re-solve from scratch (`--update`).
    All,
    /// Move only these packages and what they need (`--update PKG`).
    Packages(Vec<String>),
}

/// A package that was added, removed or moved compared to the previous lock.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct Change {
    /// Package name (with `:arch` for foreign architectures).
    pub name: String,
    /// Previous version, if any.
    pub old: Option<String>,
    /// New version, if any.
    pub new: Option<String>,
}

/// Locked candidates to keep, except the named packages (which may move).
pub fn preferences(
    u: &Universe,
    lock: &Lockfile,
    moving: &[String],
) -> HashMap<solve::InstanceId, u32> {
    let mut prefer = HashMap::new();
    for p in lock.packages.iter().filter(|p| !moving.contains(&p.name)) {
        let arch = if p.architecture == "all" {
            u.native()
        } else {
            &p.architecture
        };
        for &id in u.instances_named(&p.name) {
            if *u.instance(id).arch != *arch {
                continue;
            }
            let found = (1..=u.candidate_count(id))
                .find(|&k| u.candidate(id, k).version.as_str() == p.version);
            if let Some(k) = found {
                prefer.insert(id, k);
            }
        }
    }
    prefer
}

/// Display name of an instance: `name`, or `name:arch` for foreign architectures.
fn display_name(u: &Universe, id: solve::InstanceId) -> String {
    let inst = u.instance(id);
    if *inst.arch == *u.native() {
        inst.name.to_string()
    } else {
        format!("{}:{}", inst.name, inst.arch)
    }
}

/// Turns a solution into a lock.
pub fn build_lock(
    recipe: &Recipe,
    u: &Universe,
    sol: &Solution,
    roots: &[RootRequirement],
    sources: Vec<LockedSource>,
) -> Lockfile {
    let mut reasons: HashMap<solve::InstanceId, &str> = HashMap::new();
    for (id, kind) in sol.root_reasons(u, roots) {
        let r = if kind == EdgeKind::Requested {
            "recipe"
        } else {
            "essential"
        };
        // A package both requested and essential is reported as requested.
        if r == "recipe" || !reasons.contains_key(&id) {
            reasons.insert(id, r);
        }
    }
    let packages: Vec<LockedPackage> = sol
        .chosen
        .iter()
        .map(|(&id, &k)| {
            let r = u.candidate(id, k);
            let depends = sol
                .edges(u, id, recipe.recommends)
                .into_iter()
                .map(|e| LockedEdge {
                    name: display_name(u, e.to),
                    relation: e.relation,
                    kind: match e.kind {
                        EdgeKind::PreDepends => "pre-depends",
                        EdgeKind::Recommends => "recommends",
                        _ => "depends",
                    }
                    .to_string(),
                })
                .collect();
            LockedPackage {
                name: r.name.to_string(),
                version: r.version.to_string(),
                architecture: r.architecture.to_string(),
                source: u.source_name(r).to_string(),
                filename: r.filename().to_string(),
                size: r.size(),
                sha256: r.sha256(),
                reason: reasons.get(&id).map(|s| s.to_string()),
                depends,
            }
        })
        .collect();
    let mut lock = Lockfile {
        version: LOCK_VERSION,
        recipe: LockedRecipe::for_recipe(recipe),
        sources,
        packages,
        python: vec![],
        tools: Vec::new(),
        components: Vec::new(),
    };
    lock.sort_packages();
    lock
}

/// Package-level differences between two locks, sorted by name.
pub fn diff(old: &Lockfile, new: &Lockfile) -> Vec<Change> {
    let key = |p: &LockedPackage| {
        if p.architecture == "all" || p.architecture == new.recipe.architecture {
            p.name.clone()
        } else {
            format!("{}:{}", p.name, p.architecture)
        }
    };
    let before: BTreeMap<String, &str> = old
        .packages
        .iter()
        .map(|p| (key(p), p.version.as_str()))
        .collect();
    let after: BTreeMap<String, &str> = new
        .packages
        .iter()
        .map(|p| (key(p), p.version.as_str()))
        .collect();
    let python = |l: &Lockfile| -> Vec<(String, String)> {
        l.python
            .iter()
            .map(|p| (format!("pypi:{}", p.name), p.version.clone()))
            .collect()
    };
    let mut before = before;
    let mut after = after;
    let (old_py, new_py) = (python(old), python(new));
    before.extend(old_py.iter().map(|(n, v)| (n.clone(), v.as_str())));
    after.extend(new_py.iter().map(|(n, v)| (n.clone(), v.as_str())));
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| before.get(*n) != after.get(*n))
        .map(|n| Change {
            name: n.clone(),
            old: before.get(n).map(|s| s.to_string()),
            new: after.get(n).map(|s| s.to_string()),
        })
        .collect()
}
