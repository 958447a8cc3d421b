//! A recipe and its lock as every command finds them: load the recipe, work
//! out `locks/NAME.lock`, read it when it exists, and tell whether it is
//! still the solution of the recipe as it is now. Written once here so that
//! `solve`, `fetch`, `build`, `verify`, `why` and `tree` agree on the paths
//! and say the same thing when the lock is missing or stale.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::lock::Lockfile;
use crate::recipe::Recipe;

/// The lock path of a recipe in a workspace: `<workspace>/locks/NAME.lock`.
pub fn lock_path(workspace: &Path, recipe: &Recipe) -> PathBuf {
    workspace
        .join("locks")
        .join(format!("{}.lock", recipe.name))
}

/// What a command requires of the lock (see [`Loaded::require`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demand {
    /// It must exist; a stale lock is used as it is (`why`, `tree`, `fetch`).
    Exists,
    /// It must exist and be fresh for the recipe (`build`, `verify`).
    Fresh,
    /// As [`Demand::Fresh`], worded for an explicit `--locked`/`--frozen`.
    Locked,
}

/// Whether the lock is there and still solves the recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// `locks/NAME.lock` does not exist.
    Missing,
    /// It exists but was solved for another recipe; the reason.
    Stale(String),
    /// It exists and was solved for the recipe as it is now.
    Fresh,
}

/// A recipe, where its lock lives, and the lock when there is one.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The recipe as given on the command line (name or path), for the
    /// commands that error messages suggest.
    pub spec: String,
    /// The loaded recipe.
    pub recipe: Recipe,
    /// `<workspace>/locks/NAME.lock`.
    pub lock_path: PathBuf,
    /// The lock, read and checked, when the file exists.
    pub lock: Option<Lockfile>,
}

impl Loaded {
    /// Loads recipe `spec` (a name under `recipes/` or a path) and reads its
    /// lock when the file exists. A lock that exists but cannot be read is
    /// an error (naming the file), never taken for a missing one.
    pub fn load(workspace: &Path, spec: &str) -> Result<Loaded> {
        let recipe = Recipe::load(workspace, spec)?;
        let lock_path = lock_path(workspace, &recipe);
        let lock = if lock_path.exists() {
            Some(Lockfile::read(&lock_path)?)
        } else {
            None
        };
        Ok(Loaded {
            spec: spec.to_string(),
            recipe,
            lock_path,
            lock,
        })
    }

    /// Missing, stale (and why) or fresh.
    pub fn state(&self) -> LockState {
        match &self.lock {
            None => LockState::Missing,
            Some(lock) => match lock.is_stale_for(&self.recipe) {
                Some(why) => LockState::Stale(why),
                None => LockState::Fresh,
            },
        }
    }

    /// The lock, if it meets `demand`; else the error that says which
    /// command to run.
    pub fn require(&self, demand: Demand) -> Result<&Lockfile> {
        let (path, spec) = (self.lock_path.display(), &self.spec);
        let flag = if demand == Demand::Locked {
            "--locked: "
        } else {
            ""
        };
        match (self.state(), &self.lock) {
            (LockState::Missing, _) | (_, None) => {
                if demand == Demand::Locked {
                    bail!("--locked: {path} does not exist; run `imgbuild solve {spec}`")
                }
                bail!("{path} does not exist: run `imgbuild solve {spec}` first")
            }
            (LockState::Stale(why), Some(_)) if demand != Demand::Exists => {
                bail!("{flag}{path} is stale: {why}; run `imgbuild solve {spec}`")
            }
            (_, Some(lock)) => Ok(lock),
        }
    }

    /// [`Loaded::require`], taking the lock out.
    pub fn into_lock(self, demand: Demand) -> Result<Lockfile> {
        self.require(demand)?;
        Ok(self.lock.expect("required above"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("recipes/keys")).unwrap();
        std::fs::write(tmp.path().join("recipes/keys/k.pgp"), b"unused").unwrap();
        std::fs::write(
            tmp.path().join("recipes/base.toml"),
            "architecture = \"amd64\"\npackages = [\"p0\"]\n\n[[source]]\nname = \"main\"\n\
             archive = \"test\"\nsuite = \"/\"\ncomponents = []\nkeyring = \"keys/k.pgp\"\n",
        )
        .unwrap();
        tmp
    }

    fn write_lock(ws: &Path, recipe: &Recipe) {
        let lock = Lockfile {
            version: crate::lock::LOCK_VERSION,
            recipe: crate::lock::LockedRecipe::for_recipe(recipe),
            sources: vec![crate::lock::LockedSource {
                name: "main".into(),
                suite: "/".into(),
                inrelease_sha256: "0".repeat(64),
                date: "Sat, 01 Jan 2000 00:00:00 UTC".into(),
                snapshot: None,
                signed_by: "0".repeat(40),
                indexes: Vec::new(),
            }],
            packages: Vec::new(),
            python: Vec::new(),
            tools: Vec::new(),
            components: Vec::new(),
        };
        std::fs::create_dir_all(ws.join("locks")).unwrap();
        std::fs::write(ws.join("locks/base.lock"), lock.to_toml()).unwrap();
    }

    #[test]
    fn missing_fresh_stale_and_unreadable() {
        let tmp = workspace();
        let ws = tmp.path();
        let loaded = Loaded::load(ws, "base").unwrap();
        assert_eq!(loaded.state(), LockState::Missing);
        assert_eq!(loaded.lock_path, ws.join("locks/base.lock"));
        for (demand, want) in [
            (
                Demand::Exists,
                "does not exist: run `imgbuild solve base` first",
            ),
            (
                Demand::Fresh,
                "does not exist: run `imgbuild solve base` first",
            ),
            (Demand::Locked, "--locked: "),
        ] {
            let err = loaded.require(demand).unwrap_err().to_string();
            assert!(err.contains(want), "{demand:?}: {err}");
        }

        write_lock(ws, &loaded.recipe);
        let loaded = Loaded::load(ws, "base").unwrap();
        assert_eq!(loaded.state(), LockState::Fresh);
        assert!(loaded.require(Demand::Locked).is_ok());

        // The recipe changes under the lock: stale for build, usable for why.
        let text = std::fs::read_to_string(ws.join("recipes/base.toml")).unwrap();
        std::fs::write(
            ws.join("recipes/base.toml"),
            text.replace("[\"p0\"]", "[\"p0\", \"p1\"]"),
        )
        .unwrap();
        let loaded = Loaded::load(ws, "base").unwrap();
        assert!(matches!(loaded.state(), LockState::Stale(_)));
        assert!(loaded.require(Demand::Exists).is_ok());
        let err = loaded.require(Demand::Fresh).unwrap_err().to_string();
        assert!(
            err.contains("is stale: ") && err.ends_with("run `imgbuild solve base`"),
            "{err}"
        );
        let err = loaded.into_lock(Demand::Locked).unwrap_err().to_string();
        assert!(err.starts_with("--locked: "), "{err}");

        // A lock that cannot be read is an error, not a missing lock.
        std::fs::write(ws.join("locks/base.lock"), "not = [a lock").unwrap();
        let err = format!("{:#}", Loaded::load(ws, "base").unwrap_err());
        assert!(err.contains("base.lock"), "{err}");
    }
}
