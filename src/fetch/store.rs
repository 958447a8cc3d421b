//! The content-addressed vendor store.
//!
//! ```text
//! vendor/
//!   sha256/ab/ab12…ef      one blob per file, named by the sha256 of its bytes
//!   tmp/ab12…ef.part       downloads in progress, named by the *expected* sha256
//!   index/RECIPE.json      which lock entries the last fetch of RECIPE stored
//! ```
//!
//! A file appears under `sha256/` only by an atomic rename of a temp file
//! whose size and sha256 were checked, so a crash or kill leaves at worst a
//! `.part` file (which the next fetch resumes), never a wrong blob. Because
//! the name is the hash, later stages check presence by size and never need
//! the network.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::FetchError;
pub use crate::core::digest::{hash_file, hash_reader};
use crate::lock::Lockfile;

/// How many missing entries a [`MissingBlobs`] message lists before summarising.
const LIST_LIMIT: usize = 20;

pub use crate::core::digest::valid_sha256;

/// A vendor store rooted at a directory (which need not exist yet).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the store at `dir`. Nothing is created until something is
    /// written, so read-only users (build) can open a store that does not exist.
    pub fn open(dir: &Path) -> Result<Store, FetchError> {
        if dir.exists() && !dir.is_dir() {
            return Err(FetchError::Io {
                path: dir.to_path_buf(),
                source: io::Error::other("the vendor store path exists and is not a directory"),
            });
        }
        Ok(Store {
            root: dir.to_path_buf(),
        })
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `sha256/`: the blobs.
    pub fn blob_dir(&self) -> PathBuf {
        self.root.join("sha256")
    }

    /// `tmp/`: partial downloads.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// `index/`: one JSON file per fetched recipe.
    pub fn index_dir(&self) -> PathBuf {
        self.root.join("index")
    }

    /// Where the blob with this sha256 lives (`sha256/ab/ab12…`).
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        let fan = sha256.get(..2).unwrap_or("__");
        self.blob_dir().join(fan).join(sha256)
    }

    /// The temp file a download of this sha256 writes to (`tmp/ab12….part`).
    pub fn part_path(&self, sha256: &str) -> PathBuf {
        self.tmp_dir().join(format!("{sha256}.part"))
    }

    /// Whether the blob is present with the right size. Cheap: it trusts the
    /// name, which only a checked rename can give (see [`Store::verify_blob`]).
    pub fn contains(&self, sha256: &str, size: u64) -> bool {
        valid_sha256(sha256)
            && fs::metadata(self.path_of(sha256)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Re-hashes the blob: `Ok(true)` when present with this size and hash.
    pub fn verify_blob(&self, sha256: &str, size: u64) -> Result<bool, FetchError> {
        if !self.contains(sha256, size) {
            return Ok(false);
        }
        let path = self.path_of(sha256);
        let (actual, actual_size) = hash_file(&path).map_err(FetchError::io(&path))?;
        Ok(actual == sha256 && actual_size == size)
    }

    /// Creates `sha256/` and `tmp/`.
    pub fn create_dirs(&self) -> Result<(), FetchError> {
        for dir in [self.blob_dir(), self.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(FetchError::io(&dir))?;
        }
        Ok(())
    }

    /// Moves a checked temp file into place as the blob `sha256`. The caller
    /// has verified size and hash and synced the file; the rename is atomic.
    pub fn commit(&self, temp: &Path, sha256: &str) -> Result<PathBuf, FetchError> {
        let dest = self.commit_deferred(temp, sha256)?;
        // Make the rename itself durable; best effort (not all filesystems allow it).
        let parent = dest.parent().expect("blob paths have a fan-out parent");
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
        Ok(dest)
    }

    /// As [`Store::commit`], without syncing the blob's directory: a fetch
    /// of many blobs renames each as it is checked and makes the renames
    /// durable together at the end ([`Store::sync_blob_dirs`]), one
    /// directory sync per fan-out directory instead of one per blob. The
    /// blob's own bytes are synced by the caller before, as for `commit`:
    /// a name in `sha256/` never stands for bytes that are not on disk.
    pub fn commit_deferred(&self, temp: &Path, sha256: &str) -> Result<PathBuf, FetchError> {
        let dest = self.path_of(sha256);
        let parent = dest.parent().expect("blob paths have a fan-out parent");
        fs::create_dir_all(parent).map_err(FetchError::io(parent))?;
        fs::rename(temp, &dest).map_err(FetchError::io(&dest))?;
        Ok(dest)
    }

    /// Makes the renames of [`Store::commit_deferred`] durable: syncs the
    /// fan-out directory of every blob of `sha256s`, once each, then
    /// `sha256/` itself (which a new fan-out directory was created in);
    /// returns how many directories were synced. Best effort, as in
    /// `commit`: not every file system syncs directories.
    pub fn sync_blob_dirs<'a>(&self, sha256s: impl IntoIterator<Item = &'a str>) -> usize {
        let mut dirs: Vec<PathBuf> = sha256s
            .into_iter()
            .filter_map(|sha| self.path_of(sha).parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs.push(self.blob_dir());
        let mut synced = 0;
        for dir in &dirs {
            if File::open(dir).and_then(|d| d.sync_all()).is_ok() {
                synced += 1;
            }
        }
        synced
    }

    /// Deletes a blob if present (used when a re-hash finds it corrupt).
    pub fn remove_blob(&self, sha256: &str) -> Result<(), FetchError> {
        let path = self.path_of(sha256);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(FetchError::io(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Checks that every package of `lock` is in the store (by size; the
    /// name is the hash). Never touches the network.
    pub fn require(&self, lock: &Lockfile, recipe_name: &str) -> Result<(), MissingBlobs> {
        let blobs = lock.blobs();
        let missing: Vec<MissingBlob> = blobs
            .iter()
            .filter(|b| !self.contains(b.sha256, b.size))
            .map(|b| MissingBlob {
                package: b.label.clone(),
                filename: b.filename.to_string(),
                sha256: b.sha256.to_string(),
                size: b.size,
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(MissingBlobs {
            recipe: recipe_name.to_string(),
            store: self.root.clone(),
            total: blobs.len(),
            missing,
        })
    }

    /// Writes `index/RECIPE.json` atomically (temp file + rename).
    pub fn write_index(&self, recipe_name: &str, lock: &Lockfile) -> Result<PathBuf, FetchError> {
        let dir = self.index_dir();
        let path = dir.join(format!("{}.json", index_stem(recipe_name)?));
        fs::create_dir_all(&dir).map_err(FetchError::io(&dir))?;
        let index = Index {
            recipe: recipe_name.to_string(),
            recipe_hash: lock.recipe.hash.clone(),
            packages: lock
                .packages
                .iter()
                .map(|p| IndexEntry {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    architecture: p.architecture.clone(),
                    filename: p.filename.clone(),
                    size: p.size,
                    sha256: p.sha256.clone(),
                })
                .collect(),
        };
        let mut text = serde_json::to_string_pretty(&index).expect("index serialises");
        text.push('\n');
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(FetchError::io(&dir))?;
        tmp.write_all(text.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(FetchError::io(tmp.path()))?;
        tmp.persist(&path)
            .map_err(|e| FetchError::io(&path)(e.error))?;
        Ok(path)
    }

    /// Every file under `sha256/<fan>/`, as (path, file name).
    pub fn blobs(&self) -> Result<Vec<(PathBuf, String)>, FetchError> {
        let mut out = Vec::new();
        for fan in read_dir_sorted(&self.blob_dir())? {
            if !fan.is_dir() {
                out.push(named(fan));
                continue;
            }
            out.extend(read_dir_sorted(&fan)?.into_iter().map(named));
        }
        Ok(out)
    }
}

/// Entries of `dir`, sorted; a missing directory has none.
pub(crate) fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, FetchError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FetchError::io(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        out.push(entry.map_err(FetchError::io(dir))?.path());
    }
    out.sort();
    Ok(out)
}

fn named(path: PathBuf) -> (PathBuf, String) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (path, name)
}

/// The index file stem for a recipe name, refusing names that are not a
/// single plain path component.
fn index_stem(recipe_name: &str) -> Result<&str, FetchError> {
    let plain = !recipe_name.is_empty()
        && !recipe_name.starts_with('.')
        && !recipe_name.contains(['/', '\\', '\0']);
    if plain {
        Ok(recipe_name)
    } else {
        Err(FetchError::Io {
            path: PathBuf::from(recipe_name),
            source: io::Error::other("recipe name is not usable as an index file name"),
        })
    }
}

/// `index/RECIPE.json`: what the last successful fetch of a recipe stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Recipe name.
    pub recipe: String,
    /// The lock's `[recipe] hash`, to tell which solve this index belongs to.
    pub recipe_hash: String,
    /// One entry per lock package, in lock order.
    pub packages: Vec<IndexEntry>,
}

/// One lock package and its blob (`sha256/<first two>/<sha256>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Architecture of the .deb.
    pub architecture: String,
    /// Archive-relative file name.
    pub filename: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256, which is also the blob's file name.
    pub sha256: String,
}

/// One lock entry whose blob is not in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingBlob {
    /// `name version architecture`.
    pub package: String,
    /// Archive-relative file name.
    pub filename: String,
    /// Expected sha256.
    pub sha256: String,
    /// Expected size.
    pub size: u64,
}

/// Lock entries whose blobs are not in the store.
///
/// `{}` says to run `imgbuild fetch RECIPE`; `{:#}` is the `--offline` wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MissingBlobs {
    /// Recipe name.
    pub recipe: String,
    /// The store directory.
    pub store: PathBuf,
    /// Number of packages in the lock.
    pub total: usize,
    /// What is missing, in lock order.
    pub missing: Vec<MissingBlob>,
}

impl fmt::Display for MissingBlobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, total, store, recipe) = (
            self.missing.len(),
            self.total,
            self.store.display(),
            &self.recipe,
        );
        if f.alternate() {
            write!(
                f,
                "offline: {n} of {total} package file(s) of `{recipe}` are not in the vendor store \
                 {store} and --offline forbids the network; run `imgbuild fetch {recipe}` without \
                 --offline (or with --import DIR):"
            )?;
        } else {
            write!(
                f,
                "the vendor store {store} lacks {n} of {total} package file(s) of `{recipe}`; \
                 run `imgbuild fetch {recipe}`:"
            )?;
        }
        for m in self.missing.iter().take(LIST_LIMIT) {
            write!(
                f,
                "\n  - {} ({}, {} bytes, sha256 {})",
                m.package, m.filename, m.size, m.sha256
            )?;
        }
        if n > LIST_LIMIT {
            write!(f, "\n  … and {} more", n - LIST_LIMIT)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferred_commits_are_in_place_at_once_and_their_directories_synced_once_each() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("vendor")).unwrap();
        store.create_dirs().unwrap();
        // Two blobs in one fan-out directory, one in another.
        let shas = [
            format!("ab{}", "1".repeat(62)),
            format!("ab{}", "2".repeat(62)),
            format!("cd{}", "3".repeat(62)),
        ];
        for sha in &shas {
            let part = store.part_path(sha);
            fs::write(&part, sha.as_bytes()).unwrap();
            let dest = store.commit_deferred(&part, sha).unwrap();
            assert_eq!(dest, store.path_of(sha));
            assert_eq!(fs::read(&dest).unwrap(), sha.as_bytes(), "in place at once");
            assert!(!part.exists());
        }
        // `ab/`, `cd/` and `sha256/` itself.
        assert_eq!(store.sync_blob_dirs(shas.iter().map(String::as_str)), 3);
        assert_eq!(store.sync_blob_dirs(std::iter::empty()), 1);
    }
}
