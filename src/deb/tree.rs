//! Writing archive entries under a root directory without ever leaving it.
//!
//! Every parent directory is opened with `openat2(root, path, RESOLVE_IN_ROOT)`:
//! the kernel resolves `..` and symlinks (absolute or relative) as if `root` were
//! `/`, so `evil -> /` followed by `evil/etc/passwd` lands in `root/etc/passwd`,
//! exactly where it lands once the image runs with `root` as `/`. The last
//! component is then handled with `*at` calls on that directory descriptor and
//! never followed (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`), so a symlink planted at
//! the final name is replaced, not written through.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};

/// Metadata of one entry, from its tar header (and pax records).
#[derive(Debug, Clone, Default)]
pub(super) struct Meta {
    /// Permission bits (incl. setuid/setgid/sticky).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Modification time (seconds since the epoch).
    pub mtime: i64,
    /// Extended attributes (`SCHILY.xattr.NAME` pax records), name without the prefix.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What one entry creates.
pub(super) enum Node<'a> {
    Dir,
    File(&'a mut dyn Read),
    Symlink(Vec<u8>),
    /// Hard link to an earlier regular file of the same package (normalised components).
    Hardlink(Vec<Vec<u8>>),
    Fifo,
    Char(u32, u32),
    Block(u32, u32),
}

/// Why an entry failed: refused by policy, or an I/O step failed.
#[derive(Debug)]
pub(super) enum Fail {
    Refused(String),
    Io(&'static str, io::Error),
}

fn io_fail(op: &'static str) -> impl Fn(Errno) -> Fail {
    move |e| Fail::Io(op, e.into())
}

/// Splits a data.tar member name into path components, refusing what dpkg refuses.
///
/// `./usr/bin/x` and `usr/bin/x` are the same path; `.` components and
/// repeated slashes are dropped. An absolute name (`/etc/x`) and any `..`
/// component are refused: a package names paths relative to the root only.
pub(super) fn components(name: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if name.first() == Some(&b'/') {
        return Err("absolute path refused (data.tar names must be relative, like ./etc/x)".into());
    }
    let mut out = Vec::new();
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("`..` path component refused".into()),
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

/// The path as dpkg lists it in `info/PKG.list`: `/.` for the root, else `/a/b`.
pub(super) fn list_path(comps: &[Vec<u8>]) -> String {
    if comps.is_empty() {
        return "/.".into();
    }
    let mut out = String::new();
    for c in comps {
        out.push('/');
        out.push_str(&String::from_utf8_lossy(c));
    }
    out
}

fn join(comps: &[Vec<u8>]) -> Vec<u8> {
    comps.join(&b'/')
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// A root directory being filled, entry by entry.
pub(super) struct Tree {
    root: OwnedFd,
    preserve_owners: bool,
    /// Last parent directory opened (joined components → fd): entries come sorted.
    cache: Option<(Vec<u8>, OwnedFd)>,
    /// Regular files written so far by this package (targets allowed for hard links).
    files: HashSet<Vec<u8>>,
}

impl Tree {
    /// Opens `root` (which must exist and be a directory).
    pub(super) fn open(root: &Path, preserve_owners: bool) -> io::Result<Tree> {
        let root = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Tree {
            root,
            preserve_owners,
            cache: None,
            files: HashSet::new(),
        })
    }

    fn open_in_root(&self, rel: &[u8]) -> Result<OwnedFd, Errno> {
        if rel.is_empty() {
            return rustix::io::fcntl_dupfd_cloexec(&self.root, 0);
        }
        rustix::fs::openat2(
            &self.root,
            os(rel),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    }

    /// Opens (creating missing levels with mode 0755) the directory `comps`.
    fn dir(&self, comps: &[Vec<u8>]) -> Result<OwnedFd, Fail> {
        match self.open_in_root(&join(comps)) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) => {}
            Err(Errno::NOTDIR) => {
                return Err(Fail::Refused("a parent path is not a directory".into()));
            }
            Err(e) => return Err(Fail::Io("open parent directory", e.into())),
        }
        // Some level is missing: create each one (dpkg-deb archives list their
        // directories, but hand-made ones may not), resolving again from the root.
        let mut fd = self.open_in_root(b"").map_err(io_fail("open root"))?;
        for i in 0..comps.len() {
            match rustix::fs::mkdirat(&fd, os(&comps[i]), Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(Fail::Io("create parent directory", e.into())),
            }
            fd = self
                .open_in_root(&join(&comps[..=i]))
                .map_err(|e| match e {
                    Errno::NOENT | Errno::NOTDIR => Fail::Refused(format!(
                        "parent {} is not a directory (dangling or non-directory symlink?)",
                        list_path(&comps[..=i])
                    )),
                    e => Fail::Io("open parent directory", e.into()),
                })?;
        }
        Ok(fd)
    }

    /// Makes `self.cache` hold the directory `comps`.
    fn enter(&mut self, comps: &[Vec<u8>]) -> Result<(), Fail> {
        let key = join(comps);
        if self.cache.as_ref().is_none_or(|(k, _)| *k != key) {
            self.cache = None;
            let fd = self.dir(comps)?;
            self.cache = Some((key, fd));
        }
        Ok(())
    }

    /// Creates one entry at `comps` (non-empty). Directories that exist are kept
    /// with their metadata (also when reached through a symlink, like `/bin` on a
    /// merged-/usr system); anything else is written under a temporary name and
    /// renamed over the old one, so a reader never sees half a file.
    pub(super) fn put(
        &mut self,
        comps: &[Vec<u8>],
        node: Node<'_>,
        meta: &Meta,
    ) -> Result<(), Fail> {
        let (name, parents) = comps.split_last().expect("put needs a name");
        let name = name.clone();
        // A replaced symlink could redirect a cached parent: forget it.
        if matches!(node, Node::Symlink(_)) {
            self.cache = None;
        }
        let preserve_owners = self.preserve_owners;
        let is_file = matches!(node, Node::File(_));
        let hardlink_target = match &node {
            Node::Hardlink(target) => Some(self.hardlink_source(target)?),
            _ => None,
        };
        self.enter(parents)?;
        let dir = self.cache.as_ref().expect("entered").1.as_fd();
        let existing = match rustix::fs::statat(dir, os(&name), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(FileType::from_raw_mode(st.st_mode)),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(Fail::Io("stat existing path", e.into())),
        };
        if let Node::Dir = node {
            return match existing {
                Some(FileType::Directory) => Ok(()),
                Some(FileType::Symlink) => match self.open_in_root(&join(comps)) {
                    Ok(_) => Ok(()),
                    Err(_) => Err(Fail::Refused(
                        "exists as a symlink that does not lead to a directory".into(),
                    )),
                },
                Some(_) => Err(Fail::Refused("exists and is not a directory".into())),
                None => new_dir(dir, &name, meta, preserve_owners),
            };
        }
        if existing == Some(FileType::Directory) {
            return Err(Fail::Refused(
                "exists as a directory; refusing to replace it".into(),
            ));
        }
        let mut tmp = name.clone();
        tmp.extend_from_slice(b".imgbuild-new");
        let tmp = os(&tmp);
        match rustix::fs::unlinkat(dir, tmp, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(Fail::Io("remove stale temporary file", e.into())),
        }
        let owner = |uid: u32, gid: u32| {
            if preserve_owners {
                (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            } else {
                (None, None)
            }
        };
        let (uid, gid) = owner(meta.uid, meta.gid);
        let times = timestamps(meta.mtime);
        match node {
            Node::Dir => unreachable!("handled above"),
            Node::File(reader) => {
                let fd = rustix::fs::openat(
                    dir,
                    tmp,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(io_fail("create file"))?;
                let mut file = File::from(fd);
                io::copy(reader, &mut file).map_err(|e| Fail::Io("write file", e))?;
                // chown before chmod: chown clears setuid/setgid bits.
                if preserve_owners {
                    rustix::fs::fchown(&file, uid, gid).map_err(io_fail("chown"))?;
                }
                rustix::fs::fchmod(&file, Mode::from_raw_mode(meta.mode & 0o7777))
                    .map_err(io_fail("chmod"))?;
                set_xattrs(&file, &meta.xattrs)?;
                rustix::fs::futimens(&file, &times).map_err(io_fail("set mtime"))?;
            }
            Node::Symlink(target) => {
                rustix::fs::symlinkat(os(&target), dir, tmp).map_err(io_fail("create symlink"))?;
                if preserve_owners {
                    rustix::fs::chownat(dir, tmp, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(io_fail("chown symlink"))?;
                }
                rustix::fs::utimensat(dir, tmp, &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io_fail("set symlink mtime"))?;
            }
            Node::Hardlink(_) => {
                let (src_dir, src_name) = hardlink_target.expect("resolved above");
                rustix::fs::linkat(&src_dir, os(&src_name), dir, tmp, AtFlags::empty())
                    .map_err(io_fail("create hard link"))?;
            }
            Node::Char(..) | Node::Block(..) => {
                // Never mknod: an empty placeholder the tar writer replaces
                // by the recorded node (see `pack::tar::DeviceNode`).
                let fd = rustix::fs::openat(
                    dir,
                    tmp,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(io_fail("create device placeholder"))?;
                rustix::fs::futimens(&fd, &times).map_err(io_fail("set mtime"))?;
            }
            Node::Fifo => {
                rustix::fs::mknodat(dir, tmp, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                    .map_err(io_fail("create special file"))?;
                if preserve_owners {
                    rustix::fs::chownat(dir, tmp, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(io_fail("chown"))?;
                }
                rustix::fs::chmodat(
                    dir,
                    tmp,
                    Mode::from_raw_mode(meta.mode & 0o7777),
                    AtFlags::empty(),
                )
                .map_err(io_fail("chmod"))?;
                rustix::fs::utimensat(dir, tmp, &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io_fail("set mtime"))?;
            }
        }
        rustix::fs::renameat(dir, tmp, dir, os(&name)).map_err(io_fail("rename into place"))?;
        if is_file {
            self.files.insert(join(comps));
        }
        Ok(())
    }

    /// The directory and name of a hard link's target, which must be a regular
    /// file this package wrote earlier (dpkg's rule: links stay within the package).
    fn hardlink_source(&self, target: &[Vec<u8>]) -> Result<(OwnedFd, Vec<u8>), Fail> {
        let Some((name, parents)) = target.split_last() else {
            return Err(Fail::Refused("hard link to the root".into()));
        };
        if !self.files.contains(&join(target)) {
            return Err(Fail::Refused(format!(
                "hard link to {}, which is not an earlier regular file of this package",
                list_path(target)
            )));
        }
        let dir = self
            .open_in_root(&join(parents))
            .map_err(io_fail("open link target directory"))?;
        Ok((dir, name.clone()))
    }
}

fn new_dir(
    dir: BorrowedFd<'_>,
    name: &[u8],
    meta: &Meta,
    preserve_owners: bool,
) -> Result<(), Fail> {
    rustix::fs::mkdirat(dir, os(name), Mode::from_raw_mode(0o700))
        .map_err(io_fail("create directory"))?;
    let fd = rustix::fs::openat(
        dir,
        os(name),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_fail("open new directory"))?;
    if preserve_owners {
        rustix::fs::fchown(
            &fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(io_fail("chown directory"))?;
    }
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode & 0o7777))
        .map_err(io_fail("chmod directory"))?;
    set_xattrs(&fd, &meta.xattrs)?;
    rustix::fs::futimens(&fd, &timestamps(meta.mtime)).map_err(io_fail("set directory mtime"))?;
    Ok(())
}

fn set_xattrs(fd: impl AsFd, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), Fail> {
    for (name, value) in xattrs {
        rustix::fs::fsetxattr(fd.as_fd(), os(name), value, XattrFlags::empty())
            .map_err(io_fail("set extended attribute"))?;
    }
    Ok(())
}

fn timestamps(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Header metadata, with pax `uid`/`gid`/`mtime` overrides (the header field
/// is only read when there is none) and `SCHILY.xattr.*` records.
pub(super) fn meta<R: std::io::Read>(entry: &mut tar::Entry<'_, R>) -> std::io::Result<Meta> {
    let (mut uid, mut gid, mut mtime) = (None, None, None);
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let value = ext.value_bytes();
            // pax times may have a fraction ("1700000000.5"); whole seconds are kept.
            let number = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.split('.').next()?.parse::<i64>().ok())
                    .ok_or_else(|| {
                        std::io::Error::other(format!(
                            "bad pax number {:?}",
                            String::from_utf8_lossy(value)
                        ))
                    })
            };
            match ext.key_bytes() {
                b"uid" => uid = Some(number()? as u32),
                b"gid" => gid = Some(number()? as u32),
                b"mtime" => mtime = Some(number()?),
                key => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        xattrs.push((name.to_vec(), value.to_vec()));
                    }
                }
            }
        }
    }
    let header = entry.header();
    Ok(Meta {
        mode: header.mode()?,
        uid: match uid {
            Some(u) => u,
            None => header.uid()? as u32,
        },
        gid: match gid {
            Some(g) => g,
            None => header.gid()? as u32,
        },
        mtime: match mtime {
            Some(m) => m,
            None => header.mtime()? as i64,
        },
        xattrs,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    fn cases() -> u32 {
        std::env::var("IMGBUILD_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(500)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

        /// Any member name either is refused or splits into plain names
        /// (never empty, `.`, `..` or containing `/`) that stay below the root.
        #[test]
        fn member_names_never_escape(name in prop_oneof![
            prop::collection::vec(prop::sample::select(b"./a\\x00\xff-".to_vec()), 0..40),
            prop::collection::vec(any::<u8>(), 0..40),
        ]) {
            match super::components(&name) {
                Ok(comps) => {
                    prop_assert!(name.first() != Some(&b'/'));
                    for c in &comps {
                        prop_assert!(!c.is_empty() && c != b"." && c != b"..");
                        prop_assert!(!c.contains(&b'/'));
                    }
                    let _ = super::list_path(&comps);
                }
                Err(e) => prop_assert!(!e.is_empty()),
            }
        }
    }
}
