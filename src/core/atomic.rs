//! Writing files so they appear whole or not at all.

use std::io::{self, Write};
use std::path::Path;

/// How much a caller needs a write to survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Rename only: readers never see a partial file (caches, image trees).
    Atomic,
    /// Also fsync the file and its directory (locks, artifacts users keep).
    Durable,
}

/// Writes `bytes` to `path` through a temporary file in the same directory,
/// with permissions `mode`, then renames it over `path`. On any error the
/// temporary file is removed and `path` keeps its old contents.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    durability: Durability,
) -> io::Result<()> {
    write_atomic_with(path, mode, durability, |f| (&*f).write_all(bytes))
}

/// [`write_atomic`] for contents that `fill` writes into the temporary file
/// itself (streamed, or at offsets from several threads). `path` appears
/// only if `fill` succeeds.
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    durability: Durability,
    fill: impl FnOnce(&std::fs::File) -> io::Result<()>,
) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    fill(tmp.as_file())?;
    // Explicit, so the result does not depend on the caller's umask.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    if durability == Durability::Durable {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    if durability == Durability::Durable {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Starts writing `file`'s dirty pages to disk without waiting
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`): a later `fsync` then has
/// less left to wait for. Best effort; it guarantees nothing by itself.
pub fn start_writeback(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor, whole-file range, a flag that only queues I/O.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_whole_files_with_the_given_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one", 0o600, Durability::Atomic).unwrap();
        write_atomic(&p, b"two", 0o644, Durability::Durable).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A failing rename (target is a non-empty directory) leaves nothing behind.
        std::fs::create_dir_all(dir.path().join("d/x")).unwrap();
        assert!(write_atomic(&dir.path().join("d"), b"x", 0o644, Durability::Atomic).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
