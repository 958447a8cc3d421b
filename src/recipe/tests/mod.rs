//! Recipe parsing, merging and hashing tests, on fixture workspaces in temp
//! dirs, by concern: the recipe file itself ([`parse`]: values, errors,
//! extends, hashes), `[[step]]`s ([`steps`]), build settings and image tables
//! ([`settings`]: hostname, tools, disk, ONIE) and confined file reads
//! ([`files`]).

use std::path::Path;

use super::*;

mod files;
mod parse;
mod settings;
mod steps;

/// A workspace in a temp dir with `recipes/keys/debian.pgp`.
pub(super) struct Ws {
    pub(super) dir: tempfile::TempDir,
}

pub(super) const SOURCE: &str = r#"
[[source]]
name = "bookworm"
archive = "debian"
suite = "bookworm"
components = ["main"]
keyring = "keys/debian.pgp"
"#;

impl Ws {
    pub(super) fn new() -> Ws {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("recipes/keys")).unwrap();
        std::fs::write(dir.path().join("recipes/keys/debian.pgp"), "KEY ONE").unwrap();
        Ws { dir }
    }

    pub(super) fn root(&self) -> &Path {
        self.dir.path()
    }

    pub(super) fn write(&self, rel: &str, text: &str) {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub(super) fn recipe(&self, name: &str, text: &str) {
        self.write(&format!("recipes/{name}.toml"), text);
    }

    pub(super) fn load(&self, spec: &str) -> Recipe {
        Recipe::load(self.root(), spec).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Writes `recipes/x.toml` and returns the load error as displayed.
    pub(super) fn err(&self, text: &str) -> String {
        self.recipe("x", text);
        match Recipe::load(self.root(), "x") {
            Ok(r) => panic!("expected an error, got {r:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Writes `recipes/x.toml` and returns its hash.
    pub(super) fn hash(&self, text: &str) -> String {
        self.recipe("x", text);
        self.load("x").canonical_hash()
    }
}

/// `architecture` + the source, then `body` from line 9 on.
pub(super) fn with_steps(body: &str) -> String {
    format!("architecture = \"amd64\"{SOURCE}\n{body}")
}

/// `[[source]]` text with `body` appended to a minimal valid header.
pub(super) fn recipe_with_source(body: &str) -> String {
    format!("architecture = \"amd64\"\n\n[[source]]\nname = \"s\"\n{body}")
}
