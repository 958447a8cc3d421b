//! One imgbuild at a time per workspace (and per rootfs cache, which
//! several workspaces may share), and the leftovers of killed runs.
//!
//! [`Guard::acquire`] takes an exclusive `flock` on `<workspace>/.imgbuild.lock`
//! (waiting, and saying so, while another `build` or `verify` of the same
//! workspace holds it; the kernel drops the lock when a holder dies, also by
//! `kill -9`), then removes what killed runs left behind. Only while
//! holding the lock: then no other imgbuild of this workspace is working
//! in those directories. Only imgbuild's own temp names are touched:
//! - in the output directory: `.NAME.rootfs-*` (assembly trees),
//!   `NAME.tmp-*` (outputs being written), `NAME.old-*` (outputs moved
//!   aside), `.tools-*` / `.tools-assemble-*` (tools trees), `.disk-*` and
//!   `.onie-*` (image work), `.NAME.verify-*` (a verify's two builds) unless
//!   it holds [`KEPT_MARKER`] (kept on purpose for inspection);
//! - in the rootfs cache (its recipe, `@packages` and `@tools-*` entries):
//!   `.tmp-*` files (tars being stored), `.*.tmp` (sidecars being written)
//!   and `.tmp-tree-*` directories (tools trees being extracted to be kept).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The lock file's name in the workspace.
pub const LOCK_FILE: &str = ".imgbuild.lock";

/// A verify directory holding this file was kept on purpose; not removed.
pub const KEPT_MARKER: &str = "KEPT";

/// The held workspace lock; released on drop (or when the process dies).
#[derive(Debug)]
pub struct Guard {
    _file: File,
    /// The rootfs cache's own lock.
    _cache_file: File,
    /// What was removed when it was taken.
    pub removed: Vec<PathBuf>,
}

impl Guard {
    /// Locks the workspace (waiting for another holder), then removes stale
    /// temp entries under `out_root` and `cache_dir` (see the module docs).
    pub fn acquire(
        workspace: &Path,
        out_root: &Path,
        cache_dir: &Path,
        quiet: bool,
    ) -> Result<Guard> {
        let file = lock(&workspace.join(LOCK_FILE), workspace, quiet)?;
        // The rootfs cache may be shared by several workspaces (it defaults
        // to next to the vendor store, and the nightly's work tree shares
        // the project's): its leftovers are only ours to remove while no
        // imgbuild of ANY workspace uses it, so it has a lock of its own,
        // always taken, always second (one order: no deadlock). Seen in a
        // real night: a build of the checkout removed the tar the nightly's
        // build of its work tree was storing.
        fs::create_dir_all(cache_dir)
            .with_context(|| format!("creating the cache {}", cache_dir.display()))?;
        let cache_file = lock(&cache_dir.join(LOCK_FILE), cache_dir, quiet)?;
        let mut removed = Vec::new();
        clean_out_dir(out_root, &mut removed)?;
        clean_cache(cache_dir, &mut removed)?;
        if !quiet && !removed.is_empty() {
            eprintln!(
                "Removed {} leftover(s) of interrupted runs: {}",
                removed.len(),
                removed
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(Guard {
            _file: file,
            _cache_file: cache_file,
            removed,
        })
    }
}

/// Takes an exclusive `flock` on `path` (the lock of `dir`), waiting, and
/// saying so, while another imgbuild holds it; writes our pid into it.
fn lock(path: &Path, dir: &Path, quiet: bool) -> Result<File> {
    // flock needs no write access: a workspace shared read-only with
    // another user (a rootless build of root's checkout) still locks.
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .or_else(|e| match e.kind() {
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => File::open(path),
            _ => Err(e),
        })
        .with_context(|| format!("opening the lock {}", path.display()))?;
    use rustix::fs::{FlockOperation, flock};
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            if !quiet {
                let holder = fs::read_to_string(path).unwrap_or_default();
                eprintln!(
                    "Waiting for another imgbuild working in {} (lock {}{})…",
                    dir.display(),
                    path.display(),
                    match holder.trim() {
                        "" => String::new(),
                        pid => format!(", held by pid {pid}"),
                    }
                );
            }
            flock(&file, FlockOperation::LockExclusive)
                .with_context(|| format!("locking {}", path.display()))?;
        }
        Err(e) => {
            return Err(io::Error::from(e)).with_context(|| format!("locking {}", path.display()));
        }
    }
    // Who holds it, for the message of the next one (informational).
    let _ = file.set_len(0);
    let _ = writeln!(file, "{}", std::process::id());
    Ok(file)
}

/// Whether `name` in the output directory is one of imgbuild's temp names.
fn stale_out_name(name: &str, dir: &Path) -> bool {
    let hidden = |infix: &str| {
        name.strip_prefix('.')
            .and_then(|rest| rest.split_once(infix))
            .is_some_and(|(recipe, tail)| !recipe.is_empty() && !tail.is_empty())
    };
    let plain = |infix: &str| {
        !name.starts_with('.')
            && name
                .split_once(infix)
                .is_some_and(|(recipe, tail)| !recipe.is_empty() && !tail.is_empty())
    };
    if hidden(".verify-") {
        return !dir.join(name).join(KEPT_MARKER).exists();
    }
    hidden(".rootfs-")
        || plain(".tmp-")
        || plain(".old-")
        || [".tools-", ".tools-assemble-", ".disk-", ".onie-"]
            .iter()
            .any(|p| name.strip_prefix(p).is_some_and(|t| !t.is_empty()))
}

fn clean_out_dir(out_root: &Path, removed: &mut Vec<PathBuf>) -> Result<()> {
    let Ok(entries) = fs::read_dir(out_root) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if stale_out_name(&name, out_root) {
            let path = entry.path();
            remove_tree(&path)
                .with_context(|| format!("removing the leftover {}", path.display()))?;
            removed.push(path);
        }
    }
    Ok(())
}

/// `.tmp-*` and `.*.tmp` files, `.tmp-tree-*` directories, in the cache's
/// entry directories.
fn clean_cache(cache_dir: &Path, removed: &mut Vec<PathBuf>) -> Result<()> {
    let subdirs = |dir: &Path| -> Vec<PathBuf> {
        fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    // RECIPE/ and @tools-RECIPE/ one level down, @packages/RECIPE/ two.
    let mut entry_dirs = Vec::new();
    for dir in subdirs(cache_dir) {
        if dir.ends_with(crate::rootfs::cache::stage_dir(Path::new(""))) {
            entry_dirs.extend(subdirs(&dir));
        } else {
            entry_dirs.push(dir);
        }
    }
    for dir in entry_dirs {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours =
                name.starts_with(".tmp-") || (name.starts_with('.') && name.ends_with(".tmp"));
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let tree = name.starts_with(".tmp-tree-") && is_dir;
            if tree || (ours && entry.file_type().is_ok_and(|t| t.is_file())) {
                let path = entry.path();
                remove_tree(&path)
                    .with_context(|| format!("removing the leftover {}", path.display()))?;
                removed.push(path);
            }
        }
    }
    Ok(())
}

/// `rm -rf`, making read-only directories writable first (a tree may have
/// 0555 directories, which stop a non-root caller).
fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    if meta.permissions().mode() & 0o700 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    for entry in fs::read_dir(path)? {
        remove_tree(&entry?.path())?;
    }
    fs::remove_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two workspaces sharing one cache: while the first holds its guard,
    /// the second waits, and the first's temp tar in the cache survives.
    #[test]
    fn a_shared_cache_is_cleaned_only_when_no_workspace_uses_it() {
        let top = tempfile::tempdir().unwrap();
        // The cache inside the first workspace, as `<project>/.imgbuild-cache`
        // is when a second work tree uses the project's vendor store.
        let (a, b) = (top.path().join("a"), top.path().join("b"));
        let cache = a.join(".imgbuild-cache");
        for d in [&a, &b] {
            fs::create_dir_all(d).unwrap();
        }
        let first = Guard::acquire(&a, &a.join("out"), &cache, true).unwrap();
        let entry = cache.join("img");
        fs::create_dir_all(&entry).unwrap();
        let storing = entry.join(".tmp-abc.tar");
        fs::write(&storing, "being written").unwrap();
        // A tools tree being extracted to be kept (`tools::kept`).
        let tree = cache.join("@tools-img").join(".tmp-tree-x1");
        fs::create_dir_all(tree.join("root/usr")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (b2, cache2) = (b.clone(), cache.clone());
        let second = std::thread::spawn(move || {
            let g = Guard::acquire(&b2, &b2.join("out"), &cache2, true).unwrap();
            tx.send(g.removed.clone()).unwrap();
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(500))
                .is_err(),
            "the second workspace did not wait for the shared cache"
        );
        assert!(storing.exists() && tree.exists(), "removed while in use");
        drop(first);
        let removed = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        second.join().unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(removed.contains(&storing) && removed.contains(&tree));
        assert!(!storing.exists() && !tree.exists());
    }

    #[test]
    fn only_our_own_temp_names_are_stale() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in [
            ".img.rootfs-abc",
            "img.tmp-x1",
            "img.old-123",
            ".tools-q",
            ".disk-9",
        ] {
            assert!(stale_out_name(name, d), "{name}");
        }
        for name in [
            "img",
            "img.tmp",
            ".rootfs-x",
            "img.tmp-",
            "notes.txt",
            ".tools-",
            "x.tar",
        ] {
            assert!(!stale_out_name(name, d), "{name}");
        }
        fs::create_dir(d.join(".img.verify-k")).unwrap();
        assert!(stale_out_name(".img.verify-k", d));
        fs::write(d.join(".img.verify-k").join(KEPT_MARKER), "").unwrap();
        assert!(!stale_out_name(".img.verify-k", d));
    }
}
