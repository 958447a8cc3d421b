//! Recipes (`recipes/NAME.toml`): what an image is made of.
//!
//! A recipe names its sources (Debian suites or flat repositories, each with a
//! keyring and a priority) and its requirements in Debian relation syntax.
//! `extends = "base"` merges another recipe first. The parsed, merged recipe
//! has a canonical hash, which the lock records to detect staleness.

use std::path::PathBuf;

use crate::core::relation::Dependency;

/// Where a source's files are served from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Location {
    /// A literal URL written in the recipe (http, https or file).
    Url(String),
    /// A named archive (`debian`, `debian-security`, …) whose URL is configuration.
    Archive(String),
}

/// One `[[source]]` entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Source {
    /// Unique name within the recipe; packages in the lock refer to it.
    pub name: String,
    /// Where its files come from.
    pub location: Location,
    /// Suite (`bookworm`), or `/` for a flat repository.
    pub suite: String,
    /// Components (`main`, …); empty for flat repositories.
    pub components: Vec<String>,
    /// Keyring file, resolved to an absolute path.
    #[serde(skip)]
    pub keyring: PathBuf,
    /// sha256 of the keyring file contents (part of the canonical hash).
    pub keyring_sha256: String,
    /// apt-pin-like priority: the highest wins when several sources carry a package.
    pub priority: i32,
}

impl Source {
    /// Whether this is a flat repository (`suite = "/"`).
    pub fn is_flat(&self) -> bool {
        self.suite == "/"
    }
}

/// One requirement written in the recipe, e.g. `python3-thrift (<< 0.14)`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Requirement {
    /// The text as written (used in explanations).
    pub text: String,
    /// The parsed relation.
    #[serde(skip)]
    pub dependency: Dependency,
    /// `file:line` where it was written.
    #[serde(skip)]
    pub origin: String,
}

/// A parsed recipe with its `extends` chain merged in.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recipe {
    /// Recipe name (the file stem unless `name` is set).
    pub name: String,
    /// The recipe file.
    #[serde(skip)]
    pub path: PathBuf,
    /// Primary architecture (`amd64`).
    pub architecture: String,
    /// Additional architectures whose packages may be installed (`i386`).
    pub foreign_architectures: Vec<String>,
    /// Sources in declaration order (parents first).
    pub sources: Vec<Source>,
    /// Requirements (parents first, duplicates removed).
    pub packages: Vec<Requirement>,
    /// Include the Essential and `Priority: required` set (default true).
    pub essential: bool,
    /// Install Recommends (default false).
    pub recommends: bool,
}
