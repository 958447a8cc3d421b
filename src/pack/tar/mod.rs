//! A deterministic tar of a directory tree.
//!
//! The same tree gives the same bytes whatever order it was created in, with
//! whatever umask, at whatever time:
//! - entries in depth-first order, each directory's entries sorted by the
//!   bytes of their names (as `tar --sort=name`), a directory before its
//!   contents; names are `./`, `./etc/`, `./etc/passwd`;
//! - numeric owners only (no user or group names), modes exactly as on disk
//!   (setuid, sticky, …);
//! - pax format: an extended header only where ustar cannot say it (long
//!   names, large ids or sizes) and for extended attributes, never atime or
//!   ctime; pax records in a fixed order;
//! - mtimes clamped to SOURCE_DATE_EPOCH (older times kept);
//! - hard links: the first path of an inode in this order is a file, later
//!   ones are link entries to it;
//! - symlinks, character and block devices, FIFOs; sockets are skipped
//!   (tar cannot hold them) and reported in [`TarStats::skipped`];
//! - extended attributes as `SCHILY.xattr.NAME` records (file capabilities are
//!   `security.capability`), except `system.*` (ACLs, which tar encodes
//!   differently) and `security.selinux` (a label the build host's policy
//!   assigns, not part of the image).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, RawMode};

use super::OutputError;
use header::{Entry, header_blocks, padding};

mod header;

/// (name, value) byte pairs: pax records, extended attributes.
pub type ByteRecords = Vec<(Vec<u8>, Vec<u8>)>;

/// A device node recorded instead of made: packages may ship them, but
/// `mknod` on the build host is never done (it would leave a working device
/// file on the host, and inside the sandbox it is not allowed). The tree
/// holds an empty regular file (mode 0600) at [`DeviceNode::path`], and
/// [`write_tree_with_devices`] writes the device entry in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// The path below the root, `dev/x` (no leading `./` or `/`).
    pub path: String,
    /// Block (true) or character device.
    pub block: bool,
    /// Device numbers.
    pub major: u32,
    /// Device numbers.
    pub minor: u32,
    /// Permission bits.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
}

/// Options of [`write_tree`].
#[derive(Debug, Clone, Copy)]
pub struct TarOptions {
    /// Newer mtimes are clamped to this (seconds since the epoch).
    pub source_date_epoch: i64,
}

/// What [`write_tree`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TarStats {
    /// Entries written (including hard links).
    pub entries: u64,
    /// Of which hard link entries.
    pub hard_links: u64,
    /// Bytes of file contents.
    pub content_bytes: u64,
    /// Sockets left out, as tar names.
    pub skipped: Vec<String>,
}

/// Writes the tree under `root` as a tar to `out` (see the module docs for
/// the format). `out` should be buffered. The tree must not change while it
/// is written; a file whose size changes is an error.
pub fn write_tree(
    root: &Path,
    out: &mut impl Write,
    opts: &TarOptions,
) -> Result<TarStats, OutputError> {
    write_tree_with_devices(root, out, opts, &[])
}

/// [`write_tree`], writing each recorded device node where the tree holds
/// its placeholder (an empty regular file; anything else there means a
/// later package replaced the node, and the tree wins).
pub fn write_tree_with_devices(
    root: &Path,
    out: &mut impl Write,
    opts: &TarOptions,
    devices: &[DeviceNode],
) -> Result<TarStats, OutputError> {
    let dir = open_dir(CWD, root, root)?;
    let meta = Meta::of(CWD, root, root)?;
    if !meta.kind.is_dir() {
        return Err(OutputError::Unsupported {
            path: root.to_path_buf(),
            reason: "not a directory".into(),
        });
    }
    let mut w = TreeWriter {
        devices: devices
            .iter()
            .map(|d| {
                (
                    format!("./{}", d.path.trim_start_matches('/')).into_bytes(),
                    d,
                )
            })
            .collect(),
        out,
        opts: *opts,
        links: HashMap::new(),
        stats: TarStats::default(),
        buf: vec![0; 1 << 20],
    };
    w.entry(&dir, None, root, b"./", &meta)?;
    w.dir_contents(&dir, root, b"./")?;
    // End of archive: two zero blocks.
    w.out
        .write_all(&[0; 1024])
        .map_err(OutputError::io("writing the tar of", root))?;
    Ok(w.stats)
}

struct TreeWriter<'a, W: Write> {
    /// Recorded device nodes by tar name.
    devices: HashMap<Vec<u8>, &'a DeviceNode>,
    out: &'a mut W,
    opts: TarOptions,
    /// (dev, ino) of multiply-linked inodes → the tar name written first.
    links: HashMap<(u64, u64), Vec<u8>>,
    stats: TarStats,
    buf: Vec<u8>,
}

/// What `lstat` says of an entry.
struct Meta {
    kind: FileType,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: i64,
    nlink: u64,
    dev: u64,
    ino: u64,
    rdev: u64,
}

impl Meta {
    /// `name` in `dir`, not following a symlink (`path` names it in errors).
    fn of(dir: BorrowedFd<'_>, name: &Path, path: &Path) -> Result<Meta, OutputError> {
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| OutputError::io("reading", path)(e.into()))?;
        Ok(Meta::from_stat(&st))
    }

    // `stat`'s field types differ between architectures: the casts are
    // no-ops only on some.
    #[allow(clippy::unnecessary_cast)]
    fn from_stat(st: &rustix::fs::Stat) -> Meta {
        Meta {
            kind: FileType::from_raw_mode(st.st_mode as RawMode),
            mode: st.st_mode as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            mtime: st.st_mtime as i64,
            nlink: st.st_nlink as u64,
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            rdev: st.st_rdev as u64,
        }
    }
}

/// Opens the directory `name` in `dir` without following a symlink.
fn open_dir(dir: BorrowedFd<'_>, name: &Path, path: &Path) -> Result<OwnedFd, OutputError> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| OutputError::io("opening", path)(e.into()))
}

/// The tree is walked through directory descriptors, each entry opened
/// relative to its directory and never through a symlink: a tree that
/// something else changes meanwhile (a speculative pass runs beside the
/// maintainer scripts) can make the walk fail, never leave the tree.
impl<W: Write> TreeWriter<'_, W> {
    fn dir_contents(&mut self, dir: &OwnedFd, path: &Path, name: &[u8]) -> Result<(), OutputError> {
        let mut children: Vec<Vec<u8>> = Vec::new();
        let listing = rustix::fs::Dir::read_from(dir)
            .map_err(|e| OutputError::io("listing", path)(e.into()))?;
        for entry in listing {
            let entry = entry.map_err(|e| OutputError::io("listing", path)(e.into()))?;
            let child = entry.file_name().to_bytes();
            if child != b"." && child != b".." {
                children.push(child.to_vec());
            }
        }
        children.sort();
        for child in children {
            let child_os = Path::new(OsStr::from_bytes(&child));
            let child_path = path.join(child_os);
            let meta = Meta::of(dir.as_fd(), child_os, &child_path)?;
            let mut child_name = name.to_vec();
            child_name.extend_from_slice(&child);
            if meta.kind.is_dir() {
                child_name.push(b'/');
                let sub = open_dir(dir.as_fd(), child_os, &child_path)?;
                self.entry(&sub, None, &child_path, &child_name, &meta)?;
                self.dir_contents(&sub, &child_path, &child_name)?;
            } else {
                self.entry(dir, Some(child_os), &child_path, &child_name, &meta)?;
            }
        }
        Ok(())
    }

    /// One entry: a directory is `fd` itself (`child` None), anything else
    /// is `child` in the directory `fd`.
    fn entry(
        &mut self,
        fd: &OwnedFd,
        child: Option<&Path>,
        path: &Path,
        name: &[u8],
        meta: &Meta,
    ) -> Result<(), OutputError> {
        let ft = meta.kind;
        let mut e = Entry {
            name,
            kind: b'0',
            mode: meta.mode & 0o7777,
            uid: u64::from(meta.uid),
            gid: u64::from(meta.gid),
            size: 0,
            mtime: meta.mtime.min(self.opts.source_date_epoch),
            link: b"",
            dev: (0, 0),
            xattrs: Vec::new(),
        };
        if let Some(d) = self.devices.get(name)
            && ft == FileType::RegularFile
            && meta.size == 0
        {
            e.kind = if d.block { b'4' } else { b'3' };
            e.mode = d.mode & 0o7777;
            e.uid = u64::from(d.uid);
            e.gid = u64::from(d.gid);
            e.dev = (d.major, d.minor);
            return self.write_entry(path, &e);
        }
        if ft == FileType::Socket {
            self.stats
                .skipped
                .push(String::from_utf8_lossy(name).into_owned());
            return Ok(());
        }
        if !ft.is_dir() && meta.nlink > 1 {
            let key = (meta.dev, meta.ino);
            if let Some(first) = self.links.get(&key) {
                let first = first.clone();
                e.kind = b'1';
                e.link = &first;
                self.stats.hard_links += 1;
                return self.write_entry(path, &e);
            }
            self.links.insert(key, name.to_vec());
        }
        // Through the directory's descriptor: `/proc/self/fd/N[/child]`
        // names exactly the entry that was opened or listed.
        let mut at = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        at.push(child.unwrap_or(Path::new(".")));
        e.xattrs = read_xattrs(&at, path)?;
        let target;
        match ft {
            FileType::Directory => e.kind = b'5',
            FileType::Symlink => {
                let child = child.unwrap_or(Path::new("."));
                target = rustix::fs::readlinkat(fd, child, Vec::new())
                    .map_err(|e| OutputError::io("reading the link", path)(e.into()))?;
                e.kind = b'2';
                e.link = target.as_bytes();
            }
            FileType::CharacterDevice | FileType::BlockDevice => {
                e.kind = if ft == FileType::CharacterDevice {
                    b'3'
                } else {
                    b'4'
                };
                e.dev = (
                    rustix::fs::major(meta.rdev as _),
                    rustix::fs::minor(meta.rdev as _),
                );
            }
            FileType::Fifo => e.kind = b'6',
            _ => e.size = meta.size,
        }
        self.write_entry(path, &e)?;
        if e.kind == b'0' {
            let child = child.unwrap_or(Path::new("."));
            self.contents(fd, child, path, meta)?;
        }
        Ok(())
    }

    fn write_entry(&mut self, path: &Path, e: &Entry<'_>) -> Result<(), OutputError> {
        let blocks = header_blocks(e);
        self.out
            .write_all(&blocks)
            .map_err(OutputError::io("writing the tar entry of", path))?;
        self.stats.entries += 1;
        Ok(())
    }

    /// Streams a regular file's contents (exactly `meta.size` bytes) and the
    /// padding. The file opened must be the inode listed (not something put
    /// in its place since) and is opened without blocking (a FIFO put there
    /// would otherwise wait for a writer).
    fn contents(
        &mut self,
        dir: &OwnedFd,
        child: &Path,
        path: &Path,
        meta: &Meta,
    ) -> Result<(), OutputError> {
        let fd = rustix::fs::openat(
            dir,
            child,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| OutputError::io("opening", path)(e.into()))?;
        let opened =
            rustix::fs::fstat(&fd).map_err(|e| OutputError::io("reading", path)(e.into()))?;
        let opened = Meta::from_stat(&opened);
        if opened.kind != FileType::RegularFile || (opened.dev, opened.ino) != (meta.dev, meta.ino)
        {
            return Err(changed(path));
        }
        let mut file = File::from(fd);
        let size = meta.size;
        let mut left = size;
        loop {
            let n = match file.read(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(OutputError::io("reading", path)(e)),
            };
            if n == 0 {
                break;
            }
            if n as u64 > left {
                return Err(changed(path));
            }
            self.out
                .write_all(&self.buf[..n])
                .map_err(OutputError::io("writing the tar entry of", path))?;
            left -= n as u64;
        }
        if left != 0 {
            return Err(changed(path));
        }
        self.stats.content_bytes += size;
        let pad = padding(size);
        self.out
            .write_all(&[0u8; 512][..pad])
            .map_err(OutputError::io("writing the tar entry of", path))
    }
}

fn changed(path: &Path) -> OutputError {
    OutputError::Unsupported {
        path: path.to_path_buf(),
        reason: "the file changed while it was being archived".into(),
    }
}

/// Extended attributes of the entry at `at` (not following a symlink) that
/// belong in the image, sorted by name; `path` names it in errors.
fn read_xattrs(at: &Path, path: &Path) -> Result<ByteRecords, OutputError> {
    let fail =
        |e: rustix::io::Errno| OutputError::io("reading extended attributes of", path)(e.into());
    let names = match rustix::fs::llistxattr_query(at) {
        Ok(0) => return Ok(Vec::new()),
        // File systems without xattr support have none to keep.
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Ok(n) => {
            let mut list = vec![0u8; n];
            let got = rustix::fs::llistxattr(at, &mut list[..]).map_err(fail)?;
            list.truncate(got);
            list
        }
        Err(e) => return Err(fail(e)),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"system.") || name == b"security.selinux" {
            continue;
        }
        let os = OsStr::from_bytes(name);
        let n = rustix::fs::lgetxattr_query(at, os).map_err(fail)?;
        let mut value = vec![0u8; n];
        let got = rustix::fs::lgetxattr(at, os, &mut value[..]).map_err(fail)?;
        value.truncate(got);
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}
