//! `[[python]]` entries: the PyPI layer of a lock (see [`crate::pypi`]).
//!
//! A distribution file is located by its project name and file name, not by
//! URL: `imgbuild fetch` finds the file in the project's page on whatever
//! `pypi` mirror is configured and checks its sha256 against the lock, so a
//! lock made against one index is valid on any mirror of it.

use serde::{Deserialize, Serialize};

/// One locked Python distribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedPython {
    /// Normalised project name (PEP 503).
    pub name: String,
    /// Exact version (PEP 440).
    pub version: String,
    /// The chosen file (`.whl`, or `.tar.gz` for an sdist built at build
    /// time); empty when the distribution comes from Debian.
    #[serde(default)]
    pub filename: String,
    /// Size in bytes of the file.
    #[serde(default)]
    pub size: u64,
    /// sha256 of the file (64 hex digits).
    #[serde(default)]
    pub sha256: String,
    /// The file's `Requires-Python`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_python: Option<String>,
    /// The Debian package providing it instead (`use-debian`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debian: Option<String>,
    /// `"recipe"` when the recipe asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Extras activated by some requirement, sorted.
    #[serde(default)]
    pub extras: Vec<String>,
    /// Requirements that applied to the target, as written in the metadata
    /// (with their markers), each with the locked distribution it resolved to.
    #[serde(default)]
    pub depends: Vec<LockedPyEdge>,
}

/// One resolved requirement of a Python distribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPyEdge {
    /// The locked distribution (normalised name).
    pub name: String,
    /// The requirement as written, marker included.
    pub requirement: String,
}

impl LockedPython {
    /// Whether the file is an sdist (built into a wheel at build time).
    pub fn is_sdist(&self) -> bool {
        self.debian.is_none() && !self.filename.ends_with(".whl")
    }

    /// `name version`, for messages.
    pub fn label(&self) -> String {
        format!("{} {}", self.name, self.version)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::lock::Lockfile;

    #[test]
    fn python_entries_round_trip_sorted() {
        let text = "# x\nversion = 1\n\n[recipe]\nname = \"t\"\nhash = \"sha256:00\"\narchitecture = \"amd64\"\n\n\
            [[python]]\nname = \"zz\"\nversion = \"1.0\"\ndebian = \"python3-zz\"\nextras = []\ndepends = []\n\n\
            [[python]]\nname = \"aa\"\nversion = \"2.0\"\nfilename = \"aa-2.0-py3-none-any.whl\"\nsize = 10\n\
            sha256 = \"ab\"\nrequires-python = \">=3.8\"\nreason = \"recipe\"\nextras = [\"x\"]\n\
            depends = [\n  { name = \"zz\", requirement = \"zz>=1 ; extra == 'x'\" },\n]\n";
        let lock = Lockfile::parse(text, Path::new("t.lock")).unwrap();
        let out = lock.to_toml();
        assert!(out.find("name = \"aa\"").unwrap() < out.find("name = \"zz\"").unwrap());
        let again = Lockfile::parse(&out, Path::new("t.lock")).unwrap();
        assert_eq!(again.to_toml(), out);
        let mut sorted = lock.clone();
        sorted.sort_packages();
        assert_eq!(sorted, again);
        assert!(again.python[0].extras == ["x"] && !again.python[0].is_sdist());
        assert!(again.python[1].debian.is_some() && !again.python[1].is_sdist());
        let bad = text.replace("extras = []", "extras = []\nbogus = 1");
        assert!(Lockfile::parse(&bad, Path::new("t.lock")).is_err());
    }
}
