//! The lock audit of `[[python]]` entries, the counterpart of
//! [`crate::archive::audit`] for the Debian ones.
//!
//! A lock is hostile input: a pull request can change an entry's
//! `filename`, `size` and `sha256` together, and the vendor store would then
//! verify the substitute against those very values. PyPI's index is not
//! signed, but it gives a sha256 (and, API 1.1, a size) for every file, and
//! the file name carries the distribution's name and version. So
//! `solve --locked` and `fetch` check, for every entry not provided by
//! Debian, that the configured index's project page lists a file of exactly
//! that name, whose name parses as a file of that distribution and version,
//! with that sha256 and (where the page gives one) that size. A failure
//! names the lock, the entry and the page checked.
//!
//! Pages come through [`IndexClient::project`]: from the HTTP cache while
//! fresh (or `--offline`), where every page is checked on read against the
//! sha256 recorded when it was fetched, else from the index.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use url::Url;

use super::filename;
use super::index::{IndexClient, ProjectPage};
use crate::lock::{LockedPython, Lockfile};
use crate::recipe::normalize_name;

/// Why a lock's `[[python]]` entries failed the audit.
#[derive(Debug, thiserror::Error)]
pub enum PythonAuditError {
    /// An entry is not a file of the index as locked.
    #[error(
        "{lock}: [[python]] `{name}` {version} ({filename}) is not a file of the index: {detail} \
         (checked {page})"
    )]
    Entry {
        /// The lock file.
        lock: PathBuf,
        /// The entry's distribution.
        name: String,
        /// Its version.
        version: String,
        /// Its file name.
        filename: String,
        /// What the index says instead.
        detail: String,
        /// The project page checked.
        page: Url,
    },
    /// The project page could not be had.
    #[error("{lock}: [[python]] `{name}`: cannot check it against {page}: {error}")]
    Index {
        /// The lock file.
        lock: PathBuf,
        /// The distribution.
        name: String,
        /// The project page.
        page: Url,
        /// What went wrong.
        error: String,
    },
}

/// What the audit checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PythonAuditReport {
    /// Entries matched to a file of the index.
    pub entries: usize,
    /// Project pages read.
    pub pages: usize,
}

/// Checks every `[[python]]` entry of `lock` (read from `lock_path`) that is
/// not provided by Debian against the project pages of `client`'s index.
pub fn audit_python(
    lock: &Lockfile,
    lock_path: &Path,
    client: &IndexClient,
) -> Result<PythonAuditReport, Box<PythonAuditError>> {
    let entries: Vec<&LockedPython> = lock.python.iter().filter(|p| p.debian.is_none()).collect();
    let mut names: Vec<String> = entries.iter().map(|p| normalize_name(&p.name)).collect();
    names.sort();
    names.dedup();
    let page_url = |name: &str| {
        client
            .page_url(name)
            .unwrap_or_else(|_| client.base().clone())
    };
    let pages: BTreeMap<String, super::Result<Option<ProjectPage>>> =
        match crate::http::block_on(async {
            futures_util::stream::iter(names.iter().cloned())
                .map(|n| async move {
                    let page = client.project(&n).await;
                    (n, page)
                })
                .buffer_unordered(8)
                .collect::<BTreeMap<_, _>>()
                .await
        }) {
            Ok(pages) => pages,
            Err(e) => {
                return Err(Box::new(PythonAuditError::Index {
                    lock: lock_path.to_path_buf(),
                    name: names.first().cloned().unwrap_or_default(),
                    page: client.base().clone(),
                    error: e.to_string(),
                }));
            }
        };
    let mut report = PythonAuditReport {
        entries: 0,
        pages: pages.len(),
    };
    for p in entries {
        let name = normalize_name(&p.name);
        let page = page_url(&name);
        let entry_err = |detail: String| {
            Box::new(PythonAuditError::Entry {
                lock: lock_path.to_path_buf(),
                name: p.name.clone(),
                version: p.version.clone(),
                filename: p.filename.clone(),
                detail,
                page: page.clone(),
            })
        };
        let project = match pages.get(&name) {
            Some(Ok(Some(project))) => project,
            Some(Ok(None)) => return Err(entry_err(format!("the index has no project `{name}`"))),
            Some(Err(e)) => {
                return Err(Box::new(PythonAuditError::Index {
                    lock: lock_path.to_path_buf(),
                    name: p.name.clone(),
                    page,
                    error: e.chain(),
                }));
            }
            None => unreachable!("every name was asked for"),
        };
        check_entry(p, &name, project).map_err(entry_err)?;
        report.entries += 1;
    }
    Ok(report)
}

/// `p` against its project's page: `Err` says what does not match.
fn check_entry(p: &LockedPython, name: &str, project: &ProjectPage) -> Result<(), String> {
    let parsed = filename::parse(name, &p.filename)
        .ok_or_else(|| format!("`{}` is not a file name of `{name}`", p.filename))?;
    let named = parsed.version().to_string();
    let locked = p
        .version
        .parse::<pep440_rs::Version>()
        .map_err(|e| format!("version `{}`: {e}", p.version))?;
    if *parsed.version() != locked {
        return Err(format!(
            "the file name says version {named}, the entry {}",
            p.version
        ));
    }
    let Some(file) = project.files.iter().find(|f| f.filename == p.filename) else {
        let mut listed: Vec<&str> = project
            .files
            .iter()
            .filter(|f| filename::parse(name, &f.filename).is_some_and(|d| *d.version() == locked))
            .map(|f| f.filename.as_str())
            .collect();
        listed.truncate(8);
        return Err(if listed.is_empty() {
            format!("the page lists no file `{}`", p.filename)
        } else {
            format!(
                "the page lists no file `{}`; for {} it has {}",
                p.filename,
                p.version,
                listed.join(", ")
            )
        });
    };
    if file.sha256 != p.sha256.to_ascii_lowercase() {
        return Err(format!(
            "the page gives sha256 {}, the lock {}",
            file.sha256, p.sha256
        ));
    }
    if let Some(size) = file.size
        && size != p.size
    {
        return Err(format!("the page gives size {size}, the lock {}", p.size));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pypi::index::IndexFile;

    fn entry(filename: &str, sha256: &str, size: u64) -> LockedPython {
        LockedPython {
            name: "dep".into(),
            version: "1.5".into(),
            filename: filename.into(),
            size,
            sha256: sha256.into(),
            requires_python: None,
            debian: None,
            reason: None,
            extras: vec![],
            depends: vec![],
        }
    }

    fn page() -> ProjectPage {
        let file = |name: &str, sha: &str, size| IndexFile {
            filename: name.into(),
            url: Url::parse(&format!("http://127.0.0.1:9/files/{name}")).unwrap(),
            sha256: sha.into(),
            size,
            requires_python: None,
            yanked: false,
            metadata: None,
        };
        ProjectPage {
            files: vec![
                file("dep-1.5-py3-none-any.whl", &"a".repeat(64), Some(10)),
                file("dep-1.5.tar.gz", &"b".repeat(64), None),
                file("dep-2.0-py3-none-any.whl", &"c".repeat(64), Some(12)),
            ],
        }
    }

    #[test]
    fn entries_must_be_files_of_the_page_exactly() {
        let ok = |e: &LockedPython| check_entry(e, "dep", &page());
        assert_eq!(
            ok(&entry("dep-1.5-py3-none-any.whl", &"a".repeat(64), 10)),
            Ok(())
        );
        // No size on the page: not checked.
        assert_eq!(ok(&entry("dep-1.5.tar.gz", &"b".repeat(64), 99)), Ok(()));
        let err = ok(&entry("dep-1.5-py3-none-any.whl", &"d".repeat(64), 10)).unwrap_err();
        assert!(
            err.contains(&"a".repeat(64)) && err.contains(&"d".repeat(64)),
            "{err}"
        );
        let err = ok(&entry("dep-1.5-py3-none-any.whl", &"a".repeat(64), 11)).unwrap_err();
        assert!(err.contains("size 10"), "{err}");
        // A forged file name: not listed; the genuine ones are named.
        let err = ok(&entry("dep-1.5-py2.py3-none-any.whl", &"e".repeat(64), 10)).unwrap_err();
        assert!(
            err.contains("lists no file") && err.contains("dep-1.5.tar.gz"),
            "{err}"
        );
        // Another version's file under this entry's version.
        let err = ok(&entry("dep-2.0-py3-none-any.whl", &"c".repeat(64), 12)).unwrap_err();
        assert!(err.contains("says version 2.0"), "{err}");
        // Another project's file.
        let err = ok(&entry("evil-1.5-py3-none-any.whl", &"a".repeat(64), 10)).unwrap_err();
        assert!(err.contains("not a file name of `dep`"), "{err}");
    }
}
