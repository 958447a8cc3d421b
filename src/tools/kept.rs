//! The tools tree kept extracted between builds.
//!
//! The tools tree (mkfs, GRUB, qemu-img and their libraries: ~5,000 files,
//! 180 MB for r2lab-node) does not depend on the image. Extracting its
//! cached tar in every build, and removing it again at the end, cost about
//! 2 s of CPU per build, on a core the build's other work wanted (a
//! step-only change keeps both cores busy). So the tree restored from the
//! cached tar is kept beside it, `<cache>/@tools-RECIPE/<key>.tree`, as the
//! host's installed tools are kept, with `<key>.tree.sha256`: the sha256 of
//! the tree's own tar, taken when it was kept.
//!
//! A build uses the kept tree in place once that sha256 is found again (the
//! tree walked and archived into a hashing sink, on the tools thread). Anything else (a tree changed since, a half-written one, no
//! sidecar) removes it and restores the tar as before: a kept tree costs
//! time when it is wrong, never bytes. The tree holds a `/work` directory
//! the tar does not, so that the disk image's tool runs find their mount
//! point there and change nothing of the tree (a run bound elsewhere makes
//! and removes its own mount point, which changes the tree: the next build
//! then extracts it again). Trees are made and used only under the cache's
//! lock (`ops::guard`): one imgbuild at a time.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::pack::HashingWriter;
use crate::pack::tar::{TarOptions, write_tree_with_devices};
use crate::rootfs::cache::{RootfsCache, sidecar};

/// The mount points the tool runs bind host directories onto (outside the
/// sandbox's own `/tmp` and `/run` tmpfs).
const MOUNT_POINTS: &[&str] = &["work"];

/// `<cache>/ENTRY/<key hex>.tree`.
fn tree_path(cache: &RootfsCache, entry: &str, key: &str) -> PathBuf {
    cache.path_for(entry, key).with_extension("tree")
}

/// The sha256 of `root`'s tar, mtimes as they are (no clamping: the kept
/// tree is compared with itself, not with the image).
fn tree_sha(root: &Path) -> io::Result<String> {
    let mut sink = HashingWriter::new(io::sink());
    let opts = TarOptions {
        source_date_epoch: i64::MAX,
    };
    write_tree_with_devices(root, &mut sink, &opts, &[]).map_err(io::Error::other)?;
    Ok(sink.finish().1)
}

/// The kept tree of `entry` for `key`, if there is one and it is as it was
/// kept; a kept tree that is not is removed.
pub(super) fn take(cache: &RootfsCache, entry: &str, key: &str) -> Option<PathBuf> {
    let tree = tree_path(cache, entry, key);
    let recorded = fs::read_to_string(sidecar(&tree)).ok();
    if !tree.is_dir() {
        let _ = fs::remove_file(sidecar(&tree));
        return None;
    }
    match (recorded, tree_sha(&tree)) {
        (Some(recorded), Ok(sha)) if recorded.trim() == sha => Some(tree),
        _ => {
            discard(&tree);
            None
        }
    }
}

/// Keeps `root` (just restored from `entry`'s tar for `key`, with no device
/// nodes) as the kept tree of `key`, removing the entry's other kept trees;
/// returns where it now is. On failure `root` is left where it was.
pub(super) fn keep(
    cache: &RootfsCache,
    entry: &str,
    key: &str,
    root: &Path,
) -> io::Result<PathBuf> {
    for name in MOUNT_POINTS {
        let dir = root.join(name);
        if !dir.exists() {
            fs::create_dir(&dir)?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        }
    }
    let sha = tree_sha(root)?;
    let tree = tree_path(cache, entry, key);
    discard(&tree);
    // The sidecar follows the tree: a tree without one is never used.
    fs::rename(root, &tree)?;
    crate::core::atomic::write_atomic(
        &sidecar(&tree),
        format!("{sha}\n").as_bytes(),
        0o644,
        crate::core::atomic::Durability::Atomic,
    )?;
    prune(cache, entry, &tree);
    Ok(tree)
}

/// Removes a kept tree and its sidecar (best effort; sidecar first).
fn discard(tree: &Path) {
    let _ = fs::remove_file(sidecar(tree));
    if tree.is_dir() {
        let _ = fs::remove_dir_all(tree);
    }
}

/// The entry's kept trees other than `keep` (of keys no longer locked).
fn prune(cache: &RootfsCache, entry: &str, keep: &Path) {
    let Ok(entries) = fs::read_dir(cache.dir().join(entry)) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        let is_tree = name.to_string_lossy().ends_with(".tree");
        if is_tree && path != keep && e.file_type().is_ok_and(|t| t.is_dir()) {
            discard(&path);
        }
    }
}
