//! Bounded, confined reads of the files a recipe names (keyrings, `copy`
//! sources, recipe files).
//!
//! A recipe is input like any other: `keyring = "/dev/zero"` must fail at
//! once instead of reading until the OOM killer comes, and
//! `copy = "/etc/shadow"` (or `../../etc/shadow`, or a symlink in the recipe
//! directory pointing at it, or `/proc/self/environ`) must not copy host
//! secrets into an image. So every such read:
//! - opens without blocking (a FIFO must not hang the open) and accepts only a
//!   regular file (devices, FIFOs, sockets and directories are refused);
//! - refuses a file larger than its limit (checked on the size, then again
//!   while reading, since a file can grow);
//! - for `copy` sources, resolves the path *beneath* the recipe's directory
//!   with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: no absolute path,
//!   no `..`, no symlink leaving the directory, no `/proc` magic link.
//!
//! Errors are `io::Error`s whose message says what was refused, so callers
//! keep naming the file (and the recipe line) as for any read error.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Largest keyring file read (Debian's archive keyring is ~100 kB).
pub const MAX_KEYRING: u64 = 1 << 20;

/// Largest file a `copy` step may copy (64 MiB): steps are for
/// configuration files; bigger payloads belong in a package.
pub const MAX_COPY: u64 = 64 << 20;

/// Largest recipe file read (recipes are a few kB).
pub const MAX_RECIPE: u64 = 4 << 20;

/// Largest lock file read (sonic-p4's, 255 packages, is 150 kB).
pub const MAX_LOCK: u64 = 64 << 20;

/// What kind of non-regular file `t` is, for messages.
fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Reads all of an open file, refusing anything but a regular file of at
/// most `limit` bytes.
fn read_open(mut file: File, limit: u64) -> io::Result<Vec<u8>> {
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}, not a regular file", kind_of(meta.file_type())),
        ));
    }
    let too_large = |size: u64| {
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("{size} bytes, more than the limit of {limit} bytes"),
        )
    };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    (&mut file).take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(too_large(data.len() as u64));
    }
    Ok(data)
}

/// Open flags for reading untrusted paths: no blocking on a FIFO, no
/// controlling terminal.
fn open_flags() -> i32 {
    libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC
}

/// Reads the regular file at `path`, at most `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(open_flags())
        .open(path)?;
    read_open(file, limit)
}

/// Reads the regular file `rel` below the directory `dir`, at most `limit`
/// bytes, never leaving `dir` (see the module docs). Returns the path read
/// (`dir/rel`) and the contents.
pub fn read_beneath(dir: &Path, rel: &str, limit: u64) -> io::Result<(PathBuf, Vec<u8>)> {
    let escape = |why: &str| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{why}: it must stay inside the recipe's directory"),
        )
    };
    let relp = Path::new(rel);
    if rel.is_empty() {
        return Err(escape("empty path"));
    }
    if relp.is_absolute() {
        return Err(escape("absolute path"));
    }
    if relp.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(escape("`..` in the path"));
    }
    let joined = dir.join(relp);
    let file = match open_beneath(dir, relp) {
        Ok(f) => f,
        Err(e)
            if e.raw_os_error() == Some(libc::EXDEV) || e.raw_os_error() == Some(libc::ELOOP) =>
        {
            return Err(escape("a symbolic link leads out of the directory"));
        }
        Err(e) => return Err(e),
    };
    Ok((joined, read_open(file, limit)?))
}

/// `openat2(dir, rel, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`; on kernels
/// without openat2 (before 5.6, or a seccomp filter refusing it), the same
/// rule by canonical paths: the resolved file must lie inside the resolved
/// directory.
fn open_beneath(dir: &Path, rel: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let dirfd = File::open(dir)?;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(&dirfd, rel, flags, Mode::empty(), resolve) {
        Ok(fd) => Ok(File::from(fd)),
        Err(e) if e == rustix::io::Errno::NOSYS || e == rustix::io::Errno::PERM => {
            let root = std::fs::canonicalize(dir)?;
            let target = std::fs::canonicalize(dir.join(rel))?;
            if !target.starts_with(&root) {
                return Err(io::Error::from_raw_os_error(libc::EXDEV));
            }
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(open_flags() | libc::O_NOFOLLOW)
                .open(&target)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_large_files_are_refused_fast() {
        let e = read_regular(Path::new("/dev/zero"), MAX_KEYRING).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // Would block forever without O_NONBLOCK.
        let e = read_regular(&fifo, 10).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![0u8; 11]).unwrap();
        let e = read_regular(&big, 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert!(e.to_string().contains("limit of 10 bytes"), "{e}");
        assert_eq!(read_regular(&big, 11).unwrap().len(), 11);
        let e = read_regular(dir.path(), 10).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
    }

    #[test]
    fn reads_beneath_never_leave_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("recipes");
        std::fs::create_dir_all(dir.join("files/sub")).unwrap();
        std::fs::write(dir.join("files/a"), b"a").unwrap();
        std::fs::write(tmp.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink("../a", dir.join("files/sub/inside")).unwrap();
        std::os::unix::fs::symlink("../../../secret", dir.join("files/out")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("files/abs")).unwrap();
        std::os::unix::fs::symlink("/proc/self/environ", dir.join("files/env")).unwrap();
        let (path, data) = read_beneath(&dir, "files/a", 10).unwrap();
        assert_eq!((path, data), (dir.join("files/a"), b"a".to_vec()));
        assert_eq!(read_beneath(&dir, "files/sub/inside", 10).unwrap().1, b"a");
        for bad in [
            "/etc/passwd",
            "../secret",
            "files/../../secret",
            "files/out",
            "files/abs",
            "files/env",
            "",
        ] {
            let e = read_beneath(&dir, bad, 1 << 20).unwrap_err();
            assert!(
                e.to_string().contains("inside the recipe's directory"),
                "{bad}: {e}"
            );
        }
        let e = read_beneath(&dir, "files", 10).unwrap_err();
        assert!(e.to_string().contains("directory, not a regular"), "{e}");
        let e = read_beneath(&dir, "files/nope", 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
