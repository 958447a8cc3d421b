//! `manifest.json`: every artifact of an output directory with its size and
//! sha256, and what the directory was built from.
//!
//! It lists every regular file under the directory except itself, by
//! `/`-separated relative path in byte order. The `build_key` (a hash of all
//! inputs) lets an unchanged rebuild recognise outputs that are already there.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{ImageInfo, OutputError};
use crate::core::stamps::StampFile;
use crate::fetch::store::hash_file;

/// The manifest's file name inside an output directory.
pub const FILE_NAME: &str = "manifest.json";

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Version of imgbuild that wrote it.
    pub imgbuild: String,
    /// Recipe name.
    pub recipe: String,
    /// Debian architecture.
    pub architecture: String,
    /// SOURCE_DATE_EPOCH of the build.
    pub source_date_epoch: i64,
    /// `sha256:…` of every input of the build.
    pub build_key: String,
    /// Every artifact, sorted by path.
    pub artifacts: Vec<Artifact>,
    /// Wheels built from sdists during the build (`[python]` `allow-sdist`),
    /// with their sha256; absent when none were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub python_built: Vec<crate::pypi::layer::BuiltWheel>,
}

/// One file of an output directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Artifact {
    /// Path relative to the output directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex sha256.
    pub sha256: String,
}

impl Manifest {
    /// Hashes every file under `dir` (except `manifest.json`).
    pub fn scan(dir: &Path, info: &ImageInfo<'_>) -> Result<Manifest, OutputError> {
        let mut artifacts = Vec::new();
        collect(dir, "", &mut artifacts)?;
        artifacts.retain(|a| a.path != FILE_NAME);
        artifacts.sort();
        Ok(Manifest {
            imgbuild: env!("CARGO_PKG_VERSION").to_string(),
            recipe: info.lock.recipe.name.clone(),
            architecture: info.lock.recipe.architecture.clone(),
            source_date_epoch: info.source_date_epoch,
            build_key: info.build_key.clone(),
            artifacts,
            python_built: Vec::new(),
        })
    }

    /// The JSON text (pretty, with a final newline).
    pub fn to_json(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec_pretty(self).expect("manifest serialises");
        text.push(b'\n');
        text
    }

    /// Reads `DIR/manifest.json`.
    pub fn read(dir: &Path) -> Result<Manifest, OutputError> {
        let path = dir.join(FILE_NAME);
        let bytes = fs::read(&path).map_err(OutputError::io("reading", &path))?;
        serde_json::from_slice(&bytes).map_err(|e| OutputError::Invalid {
            path,
            reason: e.to_string(),
        })
    }

    /// The artifact at `path`, if listed.
    pub fn artifact(&self, path: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.path == path)
    }

    /// Whether every listed artifact is present under `dir` with its size.
    /// Cheap (no hashing): outputs only appear by a rename of a complete
    /// directory, so a present file of the right size is the one hashed.
    pub fn present_in(&self, dir: &Path) -> bool {
        self.artifacts.iter().all(|a| {
            fs::symlink_metadata(dir.join(&a.path)).is_ok_and(|m| m.is_file() && m.len() == a.size)
        })
    }

    /// Re-hashes every artifact under `dir` (in parallel); returns the
    /// paths that are missing or differ.
    pub fn check(&self, dir: &Path) -> Vec<String> {
        self.check_with(dir, None)
    }

    /// [`Manifest::check`], not reading again the files `stamps` remembers
    /// unchanged since they were last found to match (and remembering those
    /// it reads).
    pub fn check_with(&self, dir: &Path, mut stamps: Option<&mut StampFile>) -> Vec<String> {
        use rayon::prelude::*;
        let matches =
            |a: &Artifact, (sha, size): &(String, u64)| *sha == a.sha256 && *size == a.size;
        let unknown: Vec<&Artifact> = self
            .artifacts
            .iter()
            .filter(|a| {
                !stamps
                    .as_deref()
                    .and_then(|s| s.known(&dir.join(&a.path)))
                    .is_some_and(|found| matches(a, &found))
            })
            .collect();
        let hashed: Vec<Hashed<'_>> = unknown
            .into_par_iter()
            .map(|a| {
                let path = dir.join(&a.path);
                let before = fs::symlink_metadata(&path).ok();
                (a, before, hash_file(&path))
            })
            .collect();
        let mut bad = Vec::new();
        for (a, before, found) in hashed {
            match (found, before) {
                (Ok(found), Some(before)) if matches(a, &found) => {
                    if let Some(stamps) = stamps.as_deref_mut() {
                        stamps.record(&dir.join(&a.path), &before, &found.0);
                    }
                }
                _ => bad.push(a.path.clone()),
            }
        }
        bad.sort();
        bad
    }
}

/// An artifact, its metadata before hashing, and what hashing found.
type Hashed<'a> = (
    &'a Artifact,
    Option<fs::Metadata>,
    std::io::Result<(String, u64)>,
);

/// Adds every regular file under `dir` (named `prefix` + name) to `out`.
fn collect(dir: &Path, prefix: &str, out: &mut Vec<Artifact>) -> Result<(), OutputError> {
    let mut files = Vec::new();
    list(dir, prefix, &mut files)?;
    // Files hashed in parallel (a disk image and its qcow2 copy are GBs);
    // one whose digest its writer recorded is not read again.
    use rayon::prelude::*;
    let hashed = files
        .into_par_iter()
        .map(|(rel, path)| {
            let (sha256, size) = crate::core::digest::hash_file_memo(&path)
                .map_err(OutputError::io("hashing", &path))?;
            Ok(Artifact {
                path: rel,
                size,
                sha256,
            })
        })
        .collect::<Result<Vec<_>, OutputError>>()?;
    out.extend(hashed);
    Ok(())
}

/// Every regular file under `dir`: (relative path, path).
fn list(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, std::path::PathBuf)>,
) -> Result<(), OutputError> {
    for entry in fs::read_dir(dir).map_err(OutputError::io("listing", dir))? {
        let entry = entry.map_err(OutputError::io("listing", dir))?;
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| OutputError::Unsupported {
                path: path.clone(),
                reason: "output file names must be UTF-8".into(),
            })?;
        let rel = format!("{prefix}{name}");
        let ft = entry
            .file_type()
            .map_err(OutputError::io("reading", &path))?;
        if ft.is_dir() {
            list(&path, &format!("{rel}/"), out)?;
        } else if ft.is_file() {
            out.push((rel, path));
        } else {
            return Err(OutputError::Unsupported {
                path,
                reason: "only files and directories belong in an output directory".into(),
            });
        }
    }
    Ok(())
}
