//! The lock's `[[component]]` entries: a component's pinned source and its
//! build-dependency closure (`[[component.package]]`, the shape of
//! `[[package]]`), solved against the recipe's sources like `[[tool]]`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::LockedPackage;
use super::write::toml_string;

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

/// Appends one `[[component]]` block and its `[[component.package]]`s in
/// the stable layout.
pub(super) fn component_block(out: &mut String, c: &LockedComponent) {
    let kv = |out: &mut String, k: &str, v: &str| {
        let _ = writeln!(out, "{k} = {}", toml_string(v));
    };
    out.push_str("\n[[component]]\n");
    kv(out, "name", &c.name);
    kv(out, "version", &c.version);
    for (k, v) in [
        ("git", &c.git),
        ("rev", &c.rev),
        ("commit", &c.commit),
        ("url", &c.url),
    ] {
        if let Some(v) = v {
            kv(out, k, v);
        }
    }
    kv(out, "sha256", &c.sha256);
    let _ = writeln!(out, "size = {}", c.size);
    let mut sorted: Vec<&LockedPackage> = c.packages.iter().collect();
    sorted.sort_by(|a, b| super::package_order(a, b));
    for p in sorted {
        super::write::package_block(out, "component.package", p);
    }
}
