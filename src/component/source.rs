//! A component's source as one file in the vendor store.
//!
//! A git commit is exported as a deterministic tar: the commit checked out
//! by the host's git (no `.git`, no line-ending conversion), then every
//! directory 0755, every file 0755 if git records it executable else 0644,
//! owner 0:0, every mtime the commit time, written by
//! [`crate::pack::tar::write_tree`] (sorted, numeric owners, pax only where
//! needed). The same commit gives the same bytes on any host, so the lock
//! pins its sha256 and a mirror that serves different content is caught.
//!
//! A tarball is kept as downloaded, pinned by its sha256.
//!
//! Either way the file is written to the store's `tmp/`, hashed, compared
//! with the lock and only then renamed into place: a mismatch stores nothing.

use std::fs;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::ComponentError;
use super::git::{self, GitMirrors};
use crate::fetch::Store;
use crate::lock::LockedComponent;
use crate::pack::HashingWriter;
use crate::pack::tar::{TarOptions, write_tree};
use crate::recipe::{Component, ComponentSource};

/// What an export produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// The commit exported (git) or `None` (tarball).
    pub commit: Option<String>,
    /// Commit time (git), for the default version.
    pub commit_time: Option<i64>,
    /// sha256 of the file.
    pub sha256: String,
    /// Its size.
    pub size: u64,
}

/// Exports commit `want` (or the recipe's rev, unlocked) of `url` (fetched
/// where `mirrors` say) as a deterministic tar written to `out`.
pub fn export_git(
    name: &str,
    url: &str,
    want: &str,
    expect: Option<&str>,
    mirrors: &GitMirrors,
    work: &Path,
    out: &mut impl Write,
) -> Result<Exported, ComponentError> {
    let from = mirrors.resolve(url);
    let tmp = tempfile::Builder::new()
        .prefix(".component-git-")
        .tempdir_in(work)
        .map_err(ComponentError::io(work))?;
    let fetched = git::fetch(name, &from, want, expect, tmp.path())?;
    let tree = tmp.path().join("tree");
    fs::create_dir(&tree).map_err(ComponentError::io(&tree))?;
    git::checkout(name, &fetched, &tree)?;
    normalise(&tree, fetched.commit_time)?;
    let mut hashing = HashingWriter::new(out);
    write_tree(
        &tree,
        &mut hashing,
        &TarOptions {
            source_date_epoch: fetched.commit_time,
        },
    )
    .map_err(|e| ComponentError::Other {
        component: name.to_string(),
        reason: format!("exporting {url} at {}: {e}", fetched.commit),
    })?;
    let (_, sha256, size) = hashing.finish();
    Ok(Exported {
        commit: Some(fetched.commit),
        commit_time: Some(fetched.commit_time),
        sha256,
        size,
    })
}

/// Modes 0755/0644, owner 0:0 (when we may chown), mtimes = `time`.
fn normalise(root: &Path, time: i64) -> Result<(), ComponentError> {
    let is_root = rustix::process::geteuid().is_root();
    let mut dirs = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(ComponentError::io(&dir))? {
            let entry = entry.map_err(ComponentError::io(&dir))?;
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(ComponentError::io(&path))?;
            if meta.is_dir() {
                stack.push(path.clone());
            } else if meta.is_file() {
                let mode = if meta.permissions().mode() & 0o100 != 0 {
                    0o755
                } else {
                    0o644
                };
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .map_err(ComponentError::io(&path))?;
            }
            if is_root {
                std::os::unix::fs::lchown(&path, Some(0), Some(0))
                    .map_err(ComponentError::io(&path))?;
            }
            if !meta.is_dir() {
                set_mtime(&path, time)?;
            }
        }
        dirs.push(dir);
    }
    // Deepest first: setting a child's time does not change its parent's,
    // but creating it did.
    for dir in dirs.iter().rev() {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .map_err(ComponentError::io(dir))?;
        if is_root {
            std::os::unix::fs::lchown(dir, Some(0), Some(0)).map_err(ComponentError::io(dir))?;
        }
        set_mtime(dir, time)?;
    }
    Ok(())
}

fn set_mtime(path: &Path, time: i64) -> Result<(), ComponentError> {
    let t = rustix::fs::Timespec {
        tv_sec: time,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| ComponentError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// Where a locked component's source comes from (after the git mapping).
fn origin(c: &LockedComponent, mirrors: &GitMirrors) -> String {
    match (&c.git, &c.url) {
        (Some(g), _) => mirrors.resolve(g),
        (None, Some(u)) => u.clone(),
        (None, None) => String::new(),
    }
}

/// Puts the source of locked component `c` into `store`, unless it is there
/// already: git sources exported from the mapped URL at the locked commit,
/// tarballs downloaded. Verified against the lock's sha256 and size before
/// it is renamed into place. Returns whether anything was stored.
pub fn fetch_source(
    store: &Store,
    c: &LockedComponent,
    mirrors: &GitMirrors,
    offline: bool,
) -> Result<bool, ComponentError> {
    if store.contains(&c.sha256, c.size) {
        return Ok(false);
    }
    if !crate::fetch::store::valid_sha256(&c.sha256) {
        return Err(ComponentError::Lock {
            component: c.name.clone(),
            reason: format!("invalid sha256 `{}` in the lock", c.sha256),
        });
    }
    let from = origin(c, mirrors);
    if offline {
        return Err(ComponentError::Lock {
            component: c.name.clone(),
            reason: format!(
                "the source ({from}) is not in the vendor store and --offline forbids fetching it"
            ),
        });
    }
    store.create_dirs().map_err(|e| ComponentError::Other {
        component: c.name.clone(),
        reason: e.to_string(),
    })?;
    let tmp_dir = store.tmp_dir();
    let tmp = tempfile::Builder::new()
        .prefix(".component-")
        .tempfile_in(&tmp_dir)
        .map_err(ComponentError::io(&tmp_dir))?;
    let (file, tmp_path) = tmp.into_parts();
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let exported = match (&c.git, &c.commit, &c.url) {
        (Some(url), Some(commit), _) => export_git(
            &c.name,
            url,
            commit,
            Some(commit),
            mirrors,
            &tmp_dir,
            &mut w,
        )?,
        (None, None, Some(url)) => download(&c.name, url, &mut w)?,
        _ => {
            return Err(ComponentError::Lock {
                component: c.name.clone(),
                reason: "the lock entry needs `git` and `commit`, or `url`".into(),
            });
        }
    };
    let file = w
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all().map(|()| f))
        .map_err(ComponentError::io(&tmp_path))?;
    drop(file);
    if exported.sha256 != c.sha256 || exported.size != c.size {
        // `tmp_path` is deleted when dropped: nothing is stored.
        return Err(ComponentError::SourceMismatch {
            component: c.name.clone(),
            from,
            expected: c.sha256.clone(),
            expected_size: c.size,
            actual: exported.sha256,
            actual_size: exported.size,
        });
    }
    let kept = tmp_path.keep().map_err(|e| ComponentError::Io {
        path: tmp_dir.clone(),
        source: e.error,
    })?;
    store
        .commit(&kept, &c.sha256)
        .map_err(|e| ComponentError::Other {
            component: c.name.clone(),
            reason: e.to_string(),
        })?;
    Ok(true)
}

/// Downloads a tarball into `out` (bounded: 4 GiB), returning its hash.
pub fn download(name: &str, url: &str, out: &mut impl Write) -> Result<Exported, ComponentError> {
    const LIMIT: u64 = 4 << 30;
    let fail = |reason: String| ComponentError::Other {
        component: name.to_string(),
        reason: format!("downloading {url}: {reason}"),
    };
    let mut hashing = HashingWriter::new(out);
    if let Some(path) = url.strip_prefix("file://") {
        let mut f = fs::File::open(path).map_err(|e| fail(e.to_string()))?;
        let mut limited = (&mut f).take(LIMIT + 1);
        std::io::copy(&mut limited, &mut hashing).map_err(|e| fail(e.to_string()))?;
    } else {
        let client = crate::http::client(crate::http::Timeouts::default())
            .map_err(|e| fail(e.to_string()))?;
        let parsed = url::Url::parse(url).map_err(|e| fail(e.to_string()))?;
        let body = crate::http::block_on(async {
            let resp = client
                .get(parsed.clone())
                .send()
                .await
                .map_err(|e| crate::http::describe(&e))?;
            if !resp.status().is_success() {
                return Err(format!("HTTP {}", resp.status()));
            }
            crate::http::read_body(resp, &parsed, LIMIT, |_| {})
                .await
                .map_err(|e| e.to_string())
        })
        .map_err(|e| fail(e.to_string()))?
        .map_err(fail)?;
        hashing.write_all(&body).map_err(|e| fail(e.to_string()))?;
    }
    let (_, sha256, size) = hashing.finish();
    if size > LIMIT {
        return Err(fail(format!("larger than {LIMIT} bytes")));
    }
    Ok(Exported {
        commit: None,
        commit_time: None,
        sha256,
        size,
    })
}

/// The default version of a component: the tag it was locked at
/// (`v1.2.3` → `1.2.3`) when that is a Debian version starting with a
/// digit, else `0~gitYYYYMMDD.<commit prefix>` from the commit time.
pub fn default_version(c: &Component, exported: &Exported) -> String {
    if let Some(v) = &c.version {
        return v.clone();
    }
    if let ComponentSource::Git { rev, .. } = &c.source
        && !git::is_commit_id(rev)
    {
        let v = rev.strip_prefix('v').unwrap_or(rev);
        if v.starts_with(|ch: char| ch.is_ascii_digit())
            && crate::core::version::DebVersion::parse(v).is_ok()
        {
            return v.to_string();
        }
    }
    match (&exported.commit, exported.commit_time) {
        (Some(commit), Some(time)) => {
            let date: String = crate::image::oci::rfc3339(time)[..10]
                .chars()
                .filter(|ch| ch.is_ascii_digit())
                .collect();
            format!("0~git{date}.{}", &commit[..7.min(commit.len())])
        }
        _ => "0".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A repository with a file, an executable, a symlink and a subdirectory;
    /// returns (dir, commit).
    pub(crate) fn fixture_repo(dir: &Path) -> String {
        let run = |args: &[&str]| {
            let out = Command::new("git")
                .args(args)
                .current_dir(dir)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_AUTHOR_DATE", "1600000000 +0000")
                .env("GIT_COMMITTER_DATE", "1600000000 +0000")
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        fs::create_dir_all(dir.join("src")).unwrap();
        fs::write(dir.join("README"), "hello\n").unwrap();
        fs::write(dir.join("src/build.sh"), "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(dir.join("src/build.sh"), fs::Permissions::from_mode(0o775)).unwrap();
        std::os::unix::fs::symlink("README", dir.join("LINK")).unwrap();
        run(&["init", "-q", "-b", "main"]);
        run(&["-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"]);
        run(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "one",
        ]);
        run(&["tag", "v1.2"]);
        run(&["rev-parse", "HEAD"]).trim().to_string()
    }

    fn export(
        repo: &Path,
        rev: &str,
        expect: Option<&str>,
    ) -> Result<(Exported, Vec<u8>), ComponentError> {
        let work = tempfile::tempdir().unwrap();
        let mirrors = GitMirrors::new(
            &[format!(
                "git:https://example.org/={}/",
                repo.parent().unwrap().display()
            )],
            |_| None,
        )
        .unwrap();
        let url = format!(
            "https://example.org/{}",
            repo.file_name().unwrap().to_str().unwrap()
        );
        let mut out = Vec::new();
        export_git("t", &url, rev, expect, &mirrors, work.path(), &mut out).map(|e| (e, out))
    }

    #[test]
    fn export_is_deterministic_and_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let commit = fixture_repo(&repo);
        let (a, bytes) = export(&repo, "v1.2", None).unwrap();
        assert_eq!(a.commit.as_deref(), Some(commit.as_str()));
        assert_eq!(a.commit_time, Some(1_600_000_000));
        let (b, _) = export(&repo, &commit, Some(&commit)).unwrap();
        assert_eq!(a, b, "by tag and by commit: the same bytes");
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            assert_eq!(h.mtime().unwrap(), 1_600_000_000);
            seen.push((
                e.path().unwrap().display().to_string(),
                h.mode().unwrap() & 0o7777,
            ));
        }
        let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["./", "./LINK", "./README", "./src/", "./src/build.sh"],
            "{seen:?}"
        );
        assert!(seen.contains(&("./src/build.sh".into(), 0o755)), "{seen:?}");
        assert!(seen.contains(&("./README".into(), 0o644)), "{seen:?}");
        let c = Component {
            name: "t".into(),
            version: None,
            source: ComponentSource::Git {
                url: "u".into(),
                rev: "v1.2".into(),
            },
            build_depends: vec![],
            depends: vec![],
            build: vec!["true".into()],
            prefix: "/usr/local".into(),
            install: vec![],
            origin: String::new(),
        };
        assert_eq!(default_version(&c, &a), "1.2");
        let main = Component {
            source: ComponentSource::Git {
                url: "u".into(),
                rev: "main".into(),
            },
            ..c
        };
        assert_eq!(
            default_version(&main, &a),
            format!("0~git20200913.{}", &commit[..7])
        );
    }

    #[test]
    fn missing_commit_and_tampered_tree_store_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let commit = fixture_repo(&repo);
        let absent = "1".repeat(40);
        let e = export(&repo, &absent, Some(&absent))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("commit {absent} is not available from")),
            "{e}"
        );

        let store = Store::open(&tmp.path().join("vendor")).unwrap();
        let mirrors = GitMirrors::new(
            &[format!(
                "git:https://example.org/={}/",
                tmp.path().display()
            )],
            |_| None,
        )
        .unwrap();
        let (good, _) = export(&repo, &commit, Some(&commit)).unwrap();
        let mut locked = LockedComponent {
            name: "t".into(),
            version: "1.2".into(),
            git: Some("https://example.org/repo".into()),
            rev: Some("v1.2".into()),
            commit: Some(commit.clone()),
            url: None,
            sha256: "0".repeat(64),
            size: good.size,
            packages: vec![],
        };
        let e = fetch_source(&store, &locked, &mirrors, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("nothing was stored") && e.contains(&good.sha256),
            "{e}"
        );
        assert!(store.blobs().unwrap().is_empty());
        let leftovers = fs::read_dir(store.tmp_dir()).unwrap().count();
        assert_eq!(leftovers, 0, "no temp file left behind");
        locked.sha256 = good.sha256.clone();
        let e = fetch_source(&store, &locked, &mirrors, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--offline"), "{e}");
        assert!(fetch_source(&store, &locked, &mirrors, false).unwrap());
        assert!(store.contains(&good.sha256, good.size));
        assert!(
            !fetch_source(&store, &locked, &mirrors, true).unwrap(),
            "reused"
        );
    }
}
