//! Lockfiles (`locks/NAME.lock`): the exact, verified result of a solve.
//!
//! TOML with a stable order so that diffs read well. A header records what the
//! lock was solved for (the recipe's canonical hash) and where each index came
//! from (InRelease hash, date, signer); then one `[[package]]` per artifact with
//! its archive-relative file name, size, sha256 and resolved dependency edges.

use serde::{Deserialize, Serialize};

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
    /// One entry per artifact, sorted by (name, architecture).
    #[serde(rename = "package", default)]
    pub packages: Vec<LockedPackage>,
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
    /// The Release `Date` field.
    pub date: String,
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
