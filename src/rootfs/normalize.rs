//! Makes an assembled root reproducible before any output is made from it.
//!
//! What differs between two builds of the same lock is state that describes
//! the build rather than the image: logs, caches, backups, machine identity,
//! host keys, byte-code caches and timestamps. Like mmdebstrap's cleanup this
//! removes or resets them:
//! - `/etc/machine-id` is emptied (systemd makes one at first boot);
//!   `/var/lib/dbus/machine-id` is removed;
//! - logs (`/var/log/dpkg.log`, `/var/log/apt/*`, `/var/log/alternatives.log`),
//!   `/var/cache/ldconfig/aux-cache`, dpkg's and debconf's `*-old` backups;
//! - `/etc/ssh/ssh_host_*` keys (a host key must not be shared by every
//!   machine made from the image; `ssh-keygen -A` makes them at boot);
//! - `*.pyc` files in `__pycache__` directories: packages ship only the
//!   sources and their postinst compiles them, and marshal output is not
//!   stable across runs, so they are dropped (Python recompiles on use, or
//!   `py3compile` may be run at first boot);
//! - `/etc/hostname` is set from the options and `/etc/resolv.conf` to an
//!   empty file (unless it is a symlink, e.g. to systemd-resolved's file):
//!   the runtime provides name servers;
//! - every mtime later than `SOURCE_DATE_EPOCH` is clamped to it, without
//!   following symlinks (atime is set to the same value).

use std::fs;
use std::io;
use std::path::Path;

use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};

use super::RootfsError;
use super::dpkgdb::write_atomic;

/// What [`normalize`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NormalizeReport {
    /// Paths (absolute inside the image) that were removed, sorted.
    pub removed: Vec<String>,
    /// How many entries had their mtime clamped.
    pub clamped: usize,
}

/// Single files removed when present.
const REMOVE: [&str; 5] = [
    "var/lib/dbus/machine-id",
    "var/log/dpkg.log",
    "var/log/alternatives.log",
    "var/cache/ldconfig/aux-cache",
    "var/log/bootstrap.log",
];

/// Which file names of a directory to remove.
type NameFilter = fn(&str) -> bool;

/// Normalises the root at `root` (see the module docs).
pub fn normalize(root: &Path, epoch: i64, hostname: &str) -> Result<NormalizeReport, RootfsError> {
    let mut report = NormalizeReport::default();
    let remove = |rel: &str, report: &mut NormalizeReport| -> Result<(), RootfsError> {
        let path = root.join(rel);
        match fs::remove_file(&path) {
            Ok(()) => report.removed.push(format!("/{rel}")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(RootfsError::io(&path)(e)),
        }
        Ok(())
    };
    for rel in REMOVE {
        remove(rel, &mut report)?;
    }
    let globs: [(&str, NameFilter); 4] = [
        ("var/log/apt", |n| {
            n.ends_with(".log") || n.ends_with(".log.xz")
        }),
        ("var/cache/debconf", |n| n.ends_with("-old")),
        ("var/lib/dpkg", |n| n.ends_with("-old")),
        ("etc/ssh", |n| n.starts_with("ssh_host_")),
    ];
    for (dir, matches) in globs {
        for name in file_names(&root.join(dir))? {
            if matches(&name) {
                remove(&format!("{dir}/{name}"), &mut report)?;
            }
        }
    }
    let machine_id = root.join("etc/machine-id");
    if fs::symlink_metadata(&machine_id).is_ok_and(|m| m.is_file()) {
        write_atomic(&machine_id, b"", 0o444)?;
    }
    let etc = root.join("etc");
    if etc.is_dir() {
        let path = etc.join("hostname");
        if hostname.is_empty() {
            // No /etc/hostname: the name comes from DHCP at boot (R2lab).
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(RootfsError::io(&path)(e));
                }
                _ => {}
            }
        } else {
            write_atomic(&path, format!("{hostname}\n").as_bytes(), 0o644)?;
        }
        let resolv = etc.join("resolv.conf");
        if !fs::symlink_metadata(&resolv).is_ok_and(|m| m.file_type().is_symlink()) {
            write_atomic(&resolv, b"", 0o644)?;
        }
    }
    remove_pyc(root, Path::new(""), &mut report)?;
    report.removed.sort();
    report.clamped = clamp_tree(root, epoch)?;
    Ok(report)
}

/// Names of the entries of `dir` (none when it does not exist), sorted.
fn file_names(dir: &Path) -> Result<Vec<String>, RootfsError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RootfsError::io(dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(RootfsError::io(dir))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Removes `*.pyc` files directly inside `__pycache__` directories under `rel`.
fn remove_pyc(root: &Path, rel: &Path, report: &mut NormalizeReport) -> Result<(), RootfsError> {
    let dir = root.join(rel);
    let in_pycache = rel.file_name().is_some_and(|n| n == "__pycache__");
    for entry in fs::read_dir(&dir).map_err(RootfsError::io(&dir))? {
        let entry = entry.map_err(RootfsError::io(&dir))?;
        let ft = entry.file_type().map_err(RootfsError::io(&entry.path()))?;
        let child = rel.join(entry.file_name());
        if ft.is_dir() {
            remove_pyc(root, &child, report)?;
        } else if ft.is_file() && in_pycache && child.extension().is_some_and(|e| e == "pyc") {
            fs::remove_file(entry.path()).map_err(RootfsError::io(&entry.path()))?;
            report.removed.push(format!("/{}", child.display()));
        }
    }
    Ok(())
}

/// Sets atime and mtime to `epoch` on every entry under (and including)
/// `root` whose mtime is later; symlinks themselves, never their targets.
/// Children first, so no later change touches a clamped directory.
pub fn clamp_tree(root: &Path, epoch: i64) -> Result<usize, RootfsError> {
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: epoch,
            tv_nsec: 0,
        },
        last_modification: Timespec {
            tv_sec: epoch,
            tv_nsec: 0,
        },
    };
    let mut count = 0;
    clamp(root, epoch, &times, &mut count)?;
    Ok(count)
}

fn clamp(
    path: &Path,
    epoch: i64,
    times: &Timestamps,
    count: &mut usize,
) -> Result<(), RootfsError> {
    let meta = fs::symlink_metadata(path).map_err(RootfsError::io(path))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(RootfsError::io(path))? {
            let entry = entry.map_err(RootfsError::io(path))?;
            clamp(&entry.path(), epoch, times, count)?;
        }
    }
    use std::os::unix::fs::MetadataExt;
    if meta.mtime() > epoch || (meta.mtime() == epoch && meta.mtime_nsec() != 0) {
        rustix::fs::utimensat(CWD, path, times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| RootfsError::io(path)(e.into()))?;
        *count += 1;
    }
    Ok(())
}
