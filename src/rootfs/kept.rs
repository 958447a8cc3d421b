//! The last build's tree, kept for the next step-only change.
//!
//! A step-only change starts from the cached package stage. Restoring it
//! creates every file of the image again (20,000 for r2lab-node) right
//! after the last build removed as many, which some file systems make slow
//! (ext4 without a journal skips every inode freed in the last 30 s). The
//! tree the last build archived differs from the stage only by what its
//! steps and normalisation changed, and its tar is in the rootfs cache: so
//! the tree is kept (`<cache>/@kept/RECIPE/tree`, moved, not copied), and
//! the next build walks that tar and the stage's side by side, in their
//! common order, and changes only the entries that differ.
//!
//! The result is then checked: the tar of the reset tree must hash to the
//! stage's sha256. Anything else (a kept tree changed since, a failure
//! half-way) removes it and restores the stage as before: a kept tree
//! costs time when it is wrong, never bytes.

use std::cmp::Ordering;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::cache::{
    RootfsCache, device_node, restore_entry, restoring_unbuffered, set_dir_mtimes, set_mtime,
};
use crate::pack::HashingWriter;
use crate::pack::tar::{DeviceNode, TarOptions, write_tree_with_devices};

/// `<cache>/@kept/RECIPE`: the tree and the rootfs key of its tar.
fn kept_dir(cache_dir: &Path, recipe: &str) -> PathBuf {
    cache_dir.join("@kept").join(recipe)
}

/// Keeps `root`, the tree archived as `recipe`'s rootfs under `rootfs_key`,
/// for the next build (moving it: `root` is gone when this returns true).
/// False when it cannot be moved (another file system): the caller then
/// removes it as before.
pub fn keep(cache_dir: &Path, recipe: &str, rootfs_key: &str, root: &Path) -> bool {
    let dir = kept_dir(cache_dir, recipe);
    let tree = dir.join("tree");
    let key = dir.join("rootfs-key");
    // An older kept tree and its key go first: a key never names another tree.
    let _ = fs::remove_file(&key);
    if tree.exists() && fs::remove_dir_all(&tree).is_err() {
        return false;
    }
    if fs::create_dir_all(&dir).is_err() || fs::rename(root, &tree).is_err() {
        return false;
    }
    crate::core::atomic::write_atomic(
        &key,
        rootfs_key.as_bytes(),
        0o644,
        crate::core::atomic::Durability::Atomic,
    )
    .is_ok()
}

/// Drops `recipe`'s kept tree (a build that assembles the packages anew
/// has no use for it), moving it under `trash` for the caller to remove.
pub fn discard(cache_dir: &Path, recipe: &str, trash: &Path) {
    let dir = kept_dir(cache_dir, recipe);
    let _ = fs::remove_file(dir.join("rootfs-key"));
    let tree = dir.join("tree");
    if tree.exists() && fs::rename(&tree, trash).is_err() {
        let _ = fs::remove_dir_all(&tree);
    }
}

/// Makes the empty directory `root` hold the package stage `stage_tar`
/// (sha256 `stage_sha`) from `recipe`'s kept tree, when there is one whose
/// tar is still cached; returns the stage's device nodes, as
/// [`super::cache::restore`] does. `None`: nothing kept, or the reset did
/// not give the stage (then `root` is empty again, and what was in it is
/// under `trash`).
pub fn reset(
    cache_dir: &Path,
    recipe: &str,
    stage_tar: &Path,
    stage_sha: &str,
    root: &Path,
    trash: &Path,
    opts: &TarOptions,
) -> Option<Vec<DeviceNode>> {
    let dir = kept_dir(cache_dir, recipe);
    let key = fs::read_to_string(dir.join("rootfs-key")).ok()?;
    let _ = fs::remove_file(dir.join("rootfs-key"));
    let final_tar = RootfsCache::new(cache_dir).path_for(recipe, key.trim());
    if !final_tar.is_file() || fs::rename(dir.join("tree"), root).is_err() {
        discard(cache_dir, recipe, trash);
        return None;
    }
    let outcome = apply(&final_tar, stage_tar, root).and_then(|devices| {
        let mut sink = HashingWriter::new(io::sink());
        write_tree_with_devices(root, &mut sink, opts, &devices).map_err(io::Error::other)?;
        Ok((devices, sink.finish().1))
    });
    match outcome {
        Ok((devices, sha)) if sha == stage_sha => Some(devices),
        _ => {
            // Not the stage: out of the way, and `root` empty for a restore.
            if fs::rename(root, trash).is_err() {
                let _ = fs::remove_dir_all(root);
            }
            let _ = fs::create_dir(root);
            let _ = fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755));
            None
        }
    }
}

/// The package stage stored in `stage` for `recipe` under `key` (its tar
/// `stage_tar`, whose recorded sha256 is `recorded`) in the empty directory
/// `root`: [`reset`] from the kept tree when that works (checked against
/// `recorded` by the reset tree's own tar, so the stage's tar is not hashed
/// first), else the stage's tar checked and [`super::cache::restore`]d;
/// with which of the two it was (for the build's report). `None`: the
/// stored stage is damaged (and removed), the packages must be assembled.
#[allow(clippy::too_many_arguments)]
pub fn reset_or_restore(
    cache_dir: &Path,
    recipe: &str,
    stage: &RootfsCache,
    key: &str,
    (stage_tar, recorded): (&Path, &str),
    root: &Path,
    trash: &Path,
    opts: &TarOptions,
) -> Result<Option<(Vec<DeviceNode>, &'static str)>, crate::pack::OutputError> {
    if let Some(devices) = reset(cache_dir, recipe, stage_tar, recorded, root, trash, opts) {
        return Ok(Some((devices, "the last tree, reset")));
    }
    match stage.get(recipe, key) {
        Some(tar) => Ok(Some((super::cache::restore(&tar, root)?, "restored"))),
        None => Ok(None),
    }
}

/// The order of entries in a tar of [`crate::pack::tar`]: depth first,
/// each directory's entries by the bytes of their names.
fn key(path: &Path) -> Vec<&[u8]> {
    use std::os::unix::ffi::OsStrExt;
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes()),
            _ => None,
        })
        .collect()
}

/// A cached tar, mapped: a file's data is compared where it lies, not
/// copied out twice (by `read` and by the tar reader) for each of the two
/// tars, which was most of a reset's time.
fn mapped(path: &Path) -> io::Result<memmap2::Mmap> {
    let file = File::open(path)?;
    // SAFETY: a rootfs cache entry, written whole to a temp file and
    // renamed into place, never written again (a damaged or older entry is
    // unlinked, which leaves this mapping as it was). What is read through
    // the mapping is checked afterwards all the same: the reset tree's own
    // tar must hash to the stage's sha256.
    unsafe { memmap2::Mmap::map(&file) }
}

/// The data of the regular file `entry` of the tar mapped at `map`.
fn data<'m, R: Read>(map: &'m [u8], entry: &tar::Entry<'_, R>) -> io::Result<&'m [u8]> {
    let start = entry.raw_file_position() as usize;
    let len = entry.header().entry_size()? as usize;
    start
        .checked_add(len)
        .and_then(|end| map.get(start..end))
        .ok_or_else(|| io::Error::other("a tar entry's data runs past the tar's end"))
}

/// Turns the tree `root`, as the tar `from` holds it, into the tar `to`.
fn apply(from: &Path, to: &Path, root: &Path) -> io::Result<Vec<DeviceNode>> {
    let (old_map, new_map) = (mapped(from)?, mapped(to)?);
    let mut old = restoring_unbuffered(io::Cursor::new(&old_map[..]));
    let mut new = restoring_unbuffered(io::Cursor::new(&new_map[..]));
    let canonical_root = fs::canonicalize(root)?;
    let mut olds = old.entries_with_seek()?;
    let mut news = new.entries_with_seek()?;
    let (mut dirs, mut devices) = (Vec::new(), Vec::new());
    // Directories found to resolve inside the tree since it last changed
    // shape: most entries only have their data compared, and resolving
    // every one's parent again was a third of the reset (readlink of each
    // component, for ~20,000 files).
    let mut inside = std::collections::HashSet::new();
    let mut o = olds.next().transpose()?;
    let mut n = news.next().transpose()?;
    // Bounded: every round takes at least one entry off one of the tars.
    loop {
        let order = match (&o, &n) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(a), Some(b)) => key(&a.path()?).cmp(&key(&b.path()?)),
        };
        match order {
            Ordering::Less => {
                let gone = o.take().expect("an old entry").path()?.into_owned();
                inside.clear();
                remove(root, &canonical_root, &gone)?;
                o = olds.next().transpose()?;
            }
            Ordering::Greater => {
                inside.clear();
                restore_entry(
                    n.as_mut().expect("a new entry"),
                    root,
                    &mut dirs,
                    &mut devices,
                )?;
                n = news.next().transpose()?;
            }
            Ordering::Equal => {
                let (a, b) = (o.as_mut().expect("old"), n.as_mut().expect("new"));
                let same_meta =
                    a.header().as_bytes() == b.header().as_bytes() && pax(a)? == pax(b)?;
                let dirs_both =
                    a.header().entry_type().is_dir() && b.header().entry_type().is_dir();
                if dirs_both {
                    // Kept with its contents; its metadata applied again if it differs.
                    if same_meta {
                        note(b, &mut dirs, &mut devices)?;
                    } else {
                        inside.clear();
                        restore_entry(b, root, &mut dirs, &mut devices)?;
                    }
                } else if !same_meta {
                    inside.clear();
                    remove(root, &canonical_root, &b.path()?)?;
                    restore_entry(b, root, &mut dirs, &mut devices)?;
                } else {
                    if b.header().entry_type().is_file() {
                        let rel = b.path()?.into_owned();
                        let mtime = b.header().mtime()? as i64;
                        let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
                        let path = if inside.contains(&parent) {
                            root.join(&rel)
                        } else {
                            let path = checked(root, &canonical_root, &rel)?;
                            inside.insert(parent);
                            path
                        };
                        // Only the file's data is written (never through a
                        // symlink): the tree keeps its shape.
                        sync_data(data(&old_map, a)?, data(&new_map, b)?, &path, mtime)?;
                    }
                    note(b, &mut dirs, &mut devices)?;
                }
                o = olds.next().transpose()?;
                n = news.next().transpose()?;
            }
        }
    }
    set_dir_mtimes(root, &dirs)?;
    Ok(devices)
}

/// Makes the file at `path` (which holds `old`) hold `new`, the two
/// entries having the same header (so the same size): rewritten in place
/// from the block of the first difference (its mtime then set back).
fn sync_data(old: &[u8], new: &[u8], path: &Path, mtime: i64) -> io::Result<()> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    const BLOCK: usize = 1 << 16;
    if old == new {
        return Ok(());
    }
    let first = old
        .chunks(BLOCK)
        .zip(new.chunks(BLOCK))
        .position(|(x, y)| x != y)
        .map_or(old.len().min(new.len()), |k| k * BLOCK);
    let file = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.write_all_at(&new[first..], first as u64)?;
    file.set_len(new.len() as u64)?;
    set_mtime(&file, mtime)
}

/// Records what [`restore_entry`] would have recorded of an entry already
/// in place (a directory's mtime, a device node).
fn note<R: Read>(
    entry: &tar::Entry<'_, R>,
    dirs: &mut Vec<(PathBuf, i64)>,
    devices: &mut Vec<DeviceNode>,
) -> io::Result<()> {
    if entry.header().entry_type().is_dir() {
        dirs.push((entry.path()?.into_owned(), entry.header().mtime()? as i64));
    } else if let Some(node) = device_node(entry)? {
        devices.push(node);
    }
    Ok(())
}

fn pax<R: Read>(e: &mut tar::Entry<'_, R>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = e.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            out.push((ext.key_bytes().to_vec(), ext.value_bytes().to_vec()));
        }
    }
    Ok(out)
}

/// `root/rel`, once its parent is known to resolve inside `root` (the last
/// component is then only ever used without following it).
fn checked(root: &Path, canonical_root: &Path, rel: &Path) -> io::Result<PathBuf> {
    let path = root.join(rel);
    let parent = path.parent().unwrap_or(root);
    match fs::canonicalize(parent) {
        Ok(p) if p.starts_with(canonical_root) => Ok(path),
        Ok(_) => Err(io::Error::other(format!(
            "{} leaves the tree",
            rel.display()
        ))),
        Err(e) => Err(e),
    }
}

/// Removes `rel` (and all below it) from the tree, never through a
/// symlink (see [`checked`]).
fn remove(root: &Path, canonical_root: &Path, rel: &Path) -> io::Result<()> {
    let path = match checked(root, canonical_root, rel) {
        Ok(p) => p,
        // Removed with a directory above it already.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
        Ok(_) => fs::remove_file(&path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const OPTS: TarOptions = TarOptions {
        source_date_epoch: 1_700_000_000,
    };

    fn tar_of(root: &Path, dest: &Path) -> String {
        let mut w = HashingWriter::new(File::create(dest).unwrap());
        write_tree_with_devices(root, &mut w, &OPTS, &[]).unwrap();
        w.finish().1
    }

    fn stage_tree(root: &Path) {
        fs::create_dir_all(root.join("etc/ssh")).unwrap();
        fs::create_dir_all(root.join("usr/lib/py/__pycache__")).unwrap();
        fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        fs::write(root.join("etc/ssh/key"), "secret").unwrap();
        fs::write(
            root.join("usr/lib/py/__pycache__/m.pyc"),
            vec![7u8; 200_000],
        )
        .unwrap();
        fs::write(root.join("usr/lib/big"), vec![1u8; 300_000]).unwrap();
        std::os::unix::fs::symlink("passwd", root.join("etc/link")).unwrap();
    }

    /// What a build's steps and normalisation might do to the stage.
    fn steps(root: &Path) {
        fs::write(root.join("etc/passwd"), "root::0:0::/root:/bin/sh\n").unwrap();
        fs::remove_dir_all(root.join("usr/lib/py/__pycache__")).unwrap();
        fs::remove_file(root.join("etc/ssh/key")).unwrap();
        fs::write(root.join("etc/new"), "added").unwrap();
        let mut big = vec![1u8; 300_000];
        big[150_000] = 9;
        fs::write(root.join("usr/lib/big"), big).unwrap();
        fs::remove_file(root.join("etc/link")).unwrap();
        fs::create_dir(root.join("etc/link")).unwrap();
        fs::set_permissions(root.join("etc/ssh"), fs::Permissions::from_mode(0o700)).unwrap();
    }

    #[test]
    fn a_kept_tree_is_reset_to_the_stage_or_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let (stage, fin) = (dir.path().join("stage"), dir.path().join("final"));
        fs::create_dir_all(&stage).unwrap();
        stage_tree(&stage);
        let stage_tar = dir.path().join("stage.tar");
        let stage_sha = tar_of(&stage, &stage_tar);
        fs::rename(&stage, &fin).unwrap();
        steps(&fin);
        let rc = RootfsCache::new(&cache);
        fs::create_dir_all(cache.join("r")).unwrap();
        let final_tar = rc.path_for("r", "sha256:aa");
        let final_sha = tar_of(&fin, &final_tar);
        assert_ne!(final_sha, stage_sha);
        assert!(keep(&cache, "r", "sha256:aa", &fin));
        assert!(!fin.exists());

        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        let trash = dir.path().join("trash");
        let devices = reset(&cache, "r", &stage_tar, &stage_sha, &root, &trash, &OPTS);
        assert_eq!(devices, Some(Vec::new()));
        assert_eq!(tar_of(&root, &dir.path().join("check.tar")), stage_sha);
        // Used up: a second reset has nothing kept.
        assert!(reset(&cache, "r", &stage_tar, &stage_sha, &root, &trash, &OPTS).is_none());

        // A kept tree changed since its tar was written gives no stage: it
        // is not used, and the root is left empty for a restore.
        steps(&root);
        tar_of(&root, &final_tar);
        assert!(keep(&cache, "r", "sha256:aa", &root));
        let kept = kept_dir(&cache, "r").join("tree");
        // Changed since (a file neither tar holds: the walk never meets it).
        fs::write(kept.join("etc/intruder"), "added after the tar").unwrap();
        fs::create_dir(&root).unwrap();
        assert!(reset(&cache, "r", &stage_tar, &stage_sha, &root, &trash, &OPTS).is_none());
        assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
        assert!(!kept.exists());
    }
}
