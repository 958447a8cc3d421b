//! Lockfiles (`locks/NAME.lock`): the exact, verified result of a solve.
//!
//! TOML with a stable order so that diffs read well. A header records what the
//! lock was solved for (the recipe's canonical hash) and where each index came
//! from (InRelease hash, date, signer); then one `[[package]]` per artifact with
//! its archive-relative file name, size, sha256 and resolved dependency edges.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::version::DebVersion;
use crate::recipe::Recipe;

mod component;
mod python;
mod read;
mod resolved;
#[cfg(test)]
mod tests;
mod write;

pub use component::LockedComponent;
pub use python::{LockedPyEdge, LockedPython};
pub use read::LockError;
pub use resolved::{Change, Update, build_lock, diff, preferences};
pub use write::{HEADER, toml_string};

/// Lock format version written by this build.
pub const LOCK_VERSION: u32 = 1;

/// A whole lockfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockfile {
    /// Format version.
    pub version: u32,
    /// What was solved.
    pub recipe: LockedRecipe,
    /// One entry per recipe source, in recipe order.
    #[serde(rename = "source", default)]
    pub sources: Vec<LockedSource>,
    /// One entry per artifact, sorted by (name, architecture, version) in the
    /// file; see [`Lockfile::sort_packages`].
    #[serde(rename = "package", default)]
    pub packages: Vec<LockedPackage>,
    /// The PyPI layer (`[[python]]`), sorted by name; empty without `[python]`.
    #[serde(rename = "python", default)]
    pub python: Vec<LockedPython>,
    /// The locked tools tree (`[[tool]]`, same shape as `[[package]]`): the
    /// recipe's `tools` and what they need to run, solved as a separate
    /// request against the same sources. Sorted like `packages`.
    #[serde(rename = "tool", default)]
    pub tools: Vec<LockedPackage>,
    /// Components built from pinned source (`[[component]]`), in recipe
    /// order, each with its build closure.
    #[serde(rename = "component", default)]
    pub components: Vec<LockedComponent>,
}

/// The `[recipe]` header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedRecipe {
    /// Recipe name.
    pub name: String,
    /// `sha256:<hex>` of the canonical parsed recipe.
    pub hash: String,
    /// Primary architecture.
    pub architecture: String,
}

/// Provenance of one source's indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedSource {
    /// Source name from the recipe.
    pub name: String,
    /// Suite (or `/`).
    pub suite: String,
    /// sha256 of the InRelease file as fetched.
    pub inrelease_sha256: String,
    /// The Release `Date` field. With the recipe's archive name, enough to
    /// find the InRelease on a snapshot service (see
    /// [`crate::archive::snapshot_archive`]).
    pub date: String,
    /// The snapshot timestamp (`YYYYMMDDTHHMMSSZ`) the indexes were read at,
    /// when the source was solved against the snapshot service (`solve
    /// --snapshot`, a source's `snapshot = …`); absent for the live archive
    /// (and in locks written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<crate::core::timestamp::Timestamp>,
    /// Fingerprint of the key whose signature was verified.
    pub signed_by: String,
    /// The Packages indexes read, archive-relative, with their hashes.
    #[serde(default)]
    pub indexes: Vec<LockedIndex>,
}

/// One index file read during the solve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedIndex {
    /// Path relative to the suite directory (`main/binary-amd64/Packages.xz`).
    pub path: String,
    /// sha256 as listed in the signed Release.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// One locked artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// `Architecture` of the .deb (`amd64` or `all`).
    pub architecture: String,
    /// Recipe source it comes from.
    pub source: String,
    /// Archive-relative path (`pool/main/...`).
    pub filename: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the .deb.
    pub sha256: String,
    /// Why it is in the set at all when nothing depends on it:
    /// `"recipe"` (requested) or `"essential"`; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Resolved dependency edges, in the order of the package's fields.
    #[serde(default)]
    pub depends: Vec<LockedEdge>,
}

/// One resolved dependency edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedEdge {
    /// The package in the lock that satisfies the relation.
    pub name: String,
    /// The relation as written in the package (`libc6 (>= 2.34)`, `a | b`).
    pub relation: String,
    /// `depends`, `pre-depends` or `recommends`.
    pub kind: String,
}

/// One file that a lock pins into the vendor store, whichever section
/// names it (see [`Lockfile::blobs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedBlob<'a> {
    /// The lock section: `package`, `tool`, `python`, `component` (a build
    /// dependency) or `component-source`.
    pub section: &'static str,
    /// What a person reads in a message: `name version architecture` for a
    /// Debian package, `name version` for a Python distribution.
    pub label: String,
    /// Archive-relative path or distribution file name.
    pub filename: &'a str,
    /// Expected sha256 (64 hex digits).
    pub sha256: &'a str,
    /// Expected size in bytes.
    pub size: u64,
}

/// The lock's package order: name, architecture, then version in dpkg's
/// order (falling back to text for a version that does not parse, so the
/// order stays total).
pub(crate) fn package_order(a: &LockedPackage, b: &LockedPackage) -> Ordering {
    let version = || match (DebVersion::parse(&a.version), DebVersion::parse(&b.version)) {
        (Ok(x), Ok(y)) => x.cmp(&y).then_with(|| a.version.cmp(&b.version)),
        _ => a.version.cmp(&b.version),
    };
    a.name
        .cmp(&b.name)
        .then_with(|| a.architecture.cmp(&b.architecture))
        .then_with(version)
}

/// `sha256:0123456789ab…`: enough of a hash to tell two apart in a message.
fn short_hash(h: &str) -> String {
    let (algo, hex) = h.split_once(':').unwrap_or(("", h));
    let cut = hex.char_indices().nth(12).map_or(hex.len(), |(i, _)| i);
    let ellipsis = if cut < hex.len() { "…" } else { "" };
    if algo.is_empty() {
        format!("{}{ellipsis}", &hex[..cut])
    } else {
        format!("{algo}:{}{ellipsis}", &hex[..cut])
    }
}

impl LockedRecipe {
    /// The `[recipe]` header for a lock solved from `recipe`.
    pub fn for_recipe(recipe: &Recipe) -> LockedRecipe {
        LockedRecipe {
            name: recipe.name.clone(),
            hash: recipe.canonical_hash(),
            architecture: recipe.architecture.clone(),
        }
    }
}

impl Lockfile {
    /// Puts `packages` in the order [`Lockfile::to_toml`] writes them, so a
    /// lock built in memory compares equal to the same lock read back.
    pub fn sort_packages(&mut self) {
        self.packages.sort_by(package_order);
        self.python.sort_by(|a, b| a.name.cmp(&b.name));
        self.tools.sort_by(package_order);
        for c in &mut self.components {
            c.packages.sort_by(package_order);
        }
    }

    /// The tools tree as a lock of its own (its `[[tool]]`s as packages),
    /// for assembling it with [`crate::rootfs`]. Same header.
    pub fn tools_lock(&self) -> Lockfile {
        Lockfile {
            version: self.version,
            recipe: self.recipe.clone(),
            sources: self.sources.clone(),
            packages: self.tools.clone(),
            tools: Vec::new(),
            python: Vec::new(),
            components: Vec::new(),
        }
    }

    /// Every artifact the lock pins, packages and tools, once each (by
    /// sha256), as one list of packages, and the `[[python]]` files as they
    /// are: what `fetch` must put in the store.
    pub fn with_tools_as_packages(&self) -> Lockfile {
        let mut seen = std::collections::HashSet::new();
        let packages = self
            .packages
            .iter()
            .chain(&self.tools)
            .chain(self.components.iter().flat_map(|c| &c.packages))
            .filter(|p| seen.insert(p.sha256.clone()))
            .cloned()
            .collect();
        Lockfile {
            version: self.version,
            recipe: self.recipe.clone(),
            sources: self.sources.clone(),
            packages,
            tools: Vec::new(),
            // Fetched and checked with the packages.
            python: self.python.clone(),
            // Their build closures are in `packages`; their sources are
            // fetched apart (git export), so the entries stay.
            components: self.components.clone(),
        }
    }

    /// `sha256:<hex>` of the lock as written (its canonical TOML): what
    /// provenance and the `lock-…` publication tag name.
    pub fn file_hash(&self) -> String {
        format!(
            "sha256:{}",
            crate::core::digest::sha256_hex(self.to_toml().as_bytes())
        )
    }

    /// Every file of every section that the vendor store must hold for this
    /// lock, once each by sha256, in section order (packages, tools, Python
    /// files; Debian-provided Python distributions have no file). The store's
    /// `require`, `vendor gc` and fetch all read this list, so a new section
    /// that pins files only needs to be added here to be fetched, checked
    /// and kept.
    pub fn blobs(&self) -> Vec<LockedBlob<'_>> {
        let mut seen = std::collections::HashSet::new();
        let debs = self
            .packages
            .iter()
            .map(|p| ("package", p))
            .chain(self.tools.iter().map(|p| ("tool", p)))
            .chain(
                self.components
                    .iter()
                    .flat_map(|c| c.packages.iter().map(|p| ("component", p))),
            )
            .map(|(section, p)| LockedBlob {
                section,
                label: format!("{} {} {}", p.name, p.version, p.architecture),
                filename: &p.filename,
                sha256: &p.sha256,
                size: p.size,
            });
        let python = self
            .python
            .iter()
            .filter(|p| p.debian.is_none())
            .map(|p| LockedBlob {
                section: "python",
                label: p.label(),
                filename: &p.filename,
                sha256: &p.sha256,
                size: p.size,
            });
        let sources = self.components.iter().map(|c| LockedBlob {
            section: "component-source",
            label: c.source_label(),
            filename: c.source_name(),
            sha256: &c.sha256,
            size: c.size,
        });
        debs.chain(python)
            .chain(sources)
            .filter(|b| seen.insert(b.sha256))
            .collect()
    }

    /// The first package named `name` (in lock order, so the lowest
    /// architecture, then the lowest version). See [`Lockfile::packages_named`]
    /// when several architectures may be locked.
    pub fn package(&self, name: &str) -> Option<&LockedPackage> {
        self.packages
            .iter()
            .filter(|p| p.name == name)
            .min_by(|a, b| package_order(a, b))
    }

    /// Every package named `name`, in lock order.
    pub fn packages_named(&self, name: &str) -> Vec<&LockedPackage> {
        let mut found: Vec<&LockedPackage> =
            self.packages.iter().filter(|p| p.name == name).collect();
        found.sort_by(|a, b| package_order(a, b));
        found
    }

    /// Who depends on whom: for each package name that some edge points at,
    /// the packages whose edges point at it (with the edge), in lock order.
    pub fn reverse_edges(&self) -> BTreeMap<&str, Vec<(&LockedPackage, &LockedEdge)>> {
        let mut sorted: Vec<&LockedPackage> = self.packages.iter().collect();
        sorted.sort_by(|a, b| package_order(a, b));
        let mut map: BTreeMap<&str, Vec<(&LockedPackage, &LockedEdge)>> = BTreeMap::new();
        for p in sorted {
            for e in &p.depends {
                map.entry(e.name.as_str()).or_default().push((p, e));
            }
        }
        map
    }

    /// The `Date` of each locked source whose suite `recipe` still names the
    /// same: what a newly fetched Release must not be older than.
    pub fn source_dates_for(&self, recipe: &Recipe) -> BTreeMap<String, String> {
        self.sources
            .iter()
            .filter(|l| recipe.source(&l.name).is_some_and(|s| s.suite == l.suite))
            .map(|l| (l.name.clone(), l.date.clone()))
            .collect()
    }

    /// `None` when this lock was solved for `recipe` as it is now; otherwise
    /// the most specific reason it is stale, for a `--locked` error message.
    pub fn is_stale_for(&self, recipe: &Recipe) -> Option<String> {
        if self.version != LOCK_VERSION {
            return Some(format!(
                "lock format version {} in lock, {LOCK_VERSION} now",
                self.version
            ));
        }
        if self.recipe.name != recipe.name {
            return Some(format!(
                "lock is for recipe `{}`, not `{}`",
                self.recipe.name, recipe.name
            ));
        }
        if self.recipe.architecture != recipe.architecture {
            return Some(format!(
                "architecture changed: {} in lock, {} now",
                self.recipe.architecture, recipe.architecture
            ));
        }
        for s in &recipe.sources {
            match self.sources.iter().find(|l| l.name == s.name) {
                None => return Some(format!("source `{}` added", s.name)),
                Some(l) if l.suite != s.suite => {
                    return Some(format!(
                        "source `{}` changed suite: `{}` in lock, `{}` now",
                        s.name, l.suite, s.suite
                    ));
                }
                // A recipe that pins a snapshot wants the lock of that day;
                // without one, any (live or `--snapshot`) lock will do.
                Some(l) if s.snapshot.is_some() && l.snapshot != s.snapshot => {
                    return Some(format!(
                        "source `{}` changed snapshot: {} in lock, {} now",
                        s.name,
                        l.snapshot
                            .as_ref()
                            .map_or("the live archive", |t| t.as_str()),
                        s.snapshot.as_ref().map_or("", |t| t.as_str()),
                    ));
                }
                Some(_) => {}
            }
        }
        for l in &self.sources {
            if recipe.source(&l.name).is_none() {
                return Some(format!("source `{}` removed", l.name));
            }
        }
        let now = recipe.canonical_hash();
        if self.recipe.hash != now {
            return Some(format!(
                "recipe changed: hash {} in lock, {} now",
                short_hash(&self.recipe.hash),
                short_hash(&now)
            ));
        }
        None
    }
}
