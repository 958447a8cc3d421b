//! The lock's `[[component]]` entries: a component's pinned source and its
//! build-dependency closure (`[[component.package]]`, the shape of
//! `[[package]]`), solved against the recipe's sources like `[[tool]]`.

use serde::{Deserialize, Serialize};

use super::LockedPackage;

/// One locked component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedComponent {
    /// Component (and generated package) name.
    pub name: String,
    /// The generated package's version.
    pub version: String,
    /// Git URL as written in the recipe (never the mirror it came from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<String>,
    /// The recipe's `rev` when this was solved (tag, branch or commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    /// The commit `rev` named (40 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Tarball URL (for `url` sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// sha256 of the source file the store keeps: for git, the exported
    /// tree (a deterministic tar of the commit, no `.git`); for a tarball,
    /// the file itself.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The build root: `build-depends` plus the Essential set, solved.
    #[serde(rename = "package", default)]
    pub packages: Vec<LockedPackage>,
}

impl LockedComponent {
    /// The store entry's label in messages (`bmv2 1.15.5 source`).
    pub fn source_label(&self) -> String {
        format!("{} {} source", self.name, self.version)
    }

    /// What `blobs()` names as the source's file: the URL as written.
    pub fn source_name(&self) -> &str {
        self.git.as_deref().or(self.url.as_deref()).unwrap_or("")
    }

    /// The build closure as a lock of its own (same header as `lock`), for
    /// assembling the build root with [`crate::rootfs`].
    pub fn build_lock(&self, lock: &super::Lockfile) -> super::Lockfile {
        super::Lockfile {
            version: lock.version,
            recipe: lock.recipe.clone(),
            sources: lock.sources.clone(),
            packages: self.packages.clone(),
            tools: Vec::new(),
            python: Vec::new(),
            components: Vec::new(),
        }
    }
}
