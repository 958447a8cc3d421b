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
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::OutputError;

/// ustar `name` field size.
const NAME_LEN: usize = 100;
/// ustar `prefix` field size.
const PREFIX_LEN: usize = 155;
/// Largest value of an 8-byte octal field (uid, gid).
const MAX_ID: u64 = 0o7_777_777;
/// Largest value of a 12-byte octal field (size, mtime).
const MAX_SIZE: u64 = 0o77_777_777_777;

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
    let meta = fs::symlink_metadata(root).map_err(OutputError::io("reading", root))?;
    if !meta.is_dir() {
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
    w.entry(root, b"./", &meta)?;
    w.dir_contents(root, b"./")?;
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

/// The fields of one tar entry.
struct Entry<'a> {
    name: &'a [u8],
    kind: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
    link: &'a [u8],
    dev: (u32, u32),
    xattrs: ByteRecords,
}

impl<W: Write> TreeWriter<'_, W> {
    fn dir_contents(&mut self, dir: &Path, name: &[u8]) -> Result<(), OutputError> {
        let mut children: Vec<(Vec<u8>, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(OutputError::io("listing", dir))? {
            let entry = entry.map_err(OutputError::io("listing", dir))?;
            children.push((entry.file_name().as_bytes().to_vec(), entry.path()));
        }
        children.sort();
        for (child, path) in children {
            let meta = fs::symlink_metadata(&path).map_err(OutputError::io("reading", &path))?;
            let mut child_name = name.to_vec();
            child_name.extend_from_slice(&child);
            if meta.is_dir() {
                child_name.push(b'/');
                self.entry(&path, &child_name, &meta)?;
                self.dir_contents(&path, &child_name)?;
            } else {
                self.entry(&path, &child_name, &meta)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, name: &[u8], meta: &Metadata) -> Result<(), OutputError> {
        let ft = meta.file_type();
        let mut e = Entry {
            name,
            kind: b'0',
            mode: meta.mode() & 0o7777,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            size: 0,
            mtime: meta.mtime().min(self.opts.source_date_epoch),
            link: b"",
            dev: (0, 0),
            xattrs: Vec::new(),
        };
        if let Some(d) = self.devices.get(name)
            && ft.is_file()
            && meta.len() == 0
        {
            e.kind = if d.block { b'4' } else { b'3' };
            e.mode = d.mode & 0o7777;
            e.uid = u64::from(d.uid);
            e.gid = u64::from(d.gid);
            e.dev = (d.major, d.minor);
            return self.write_entry(path, &e);
        }
        if ft.is_socket() {
            self.stats
                .skipped
                .push(String::from_utf8_lossy(name).into_owned());
            return Ok(());
        }
        if !ft.is_dir() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                let first = first.clone();
                e.kind = b'1';
                e.link = &first;
                self.stats.hard_links += 1;
                return self.write_entry(path, &e);
            }
            self.links.insert(key, name.to_vec());
        }
        e.xattrs = read_xattrs(path)?;
        let target;
        if ft.is_dir() {
            e.kind = b'5';
        } else if ft.is_symlink() {
            target = fs::read_link(path).map_err(OutputError::io("reading the link", path))?;
            e.kind = b'2';
            e.link = target.as_os_str().as_bytes();
        } else if ft.is_char_device() || ft.is_block_device() {
            e.kind = if ft.is_char_device() { b'3' } else { b'4' };
            e.dev = (
                rustix::fs::major(meta.rdev()),
                rustix::fs::minor(meta.rdev()),
            );
        } else if ft.is_fifo() {
            e.kind = b'6';
        } else {
            e.size = meta.len();
        }
        self.write_entry(path, &e)?;
        if e.kind == b'0' {
            self.contents(path, e.size)?;
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

    /// Streams a regular file's contents (exactly `size` bytes) and the padding.
    fn contents(&mut self, path: &Path, size: u64) -> Result<(), OutputError> {
        let mut file = File::open(path).map_err(OutputError::io("opening", path))?;
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
        reason: "the file changed size while it was being archived".into(),
    }
}

/// Zero bytes after `size` bytes of data to reach a 512-byte boundary.
fn padding(size: u64) -> usize {
    ((512 - size % 512) % 512) as usize
}

/// Extended attributes of `path` (not following symlinks) that belong in the
/// image, sorted by name.
fn read_xattrs(path: &Path) -> Result<ByteRecords, OutputError> {
    let fail =
        |e: rustix::io::Errno| OutputError::io("reading extended attributes of", path)(e.into());
    let names = match rustix::fs::llistxattr_query(path) {
        Ok(0) => return Ok(Vec::new()),
        // File systems without xattr support have none to keep.
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Ok(n) => {
            let mut list = vec![0u8; n];
            let got = rustix::fs::llistxattr(path, &mut list[..]).map_err(fail)?;
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
        let n = rustix::fs::lgetxattr_query(path, os).map_err(fail)?;
        let mut value = vec![0u8; n];
        let got = rustix::fs::lgetxattr(path, os, &mut value[..]).map_err(fail)?;
        value.truncate(got);
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}

/// The header block(s) of an entry: a pax extended header first when needed.
fn header_blocks(e: &Entry<'_>) -> Vec<u8> {
    let mut pax: ByteRecords = Vec::new();
    let (prefix, short_name) = match split_name(e.name) {
        Some(parts) => parts,
        None => {
            pax.push((b"path".to_vec(), e.name.to_vec()));
            (&b""[..], &e.name[..e.name.len().min(NAME_LEN)])
        }
    };
    let link = if e.link.len() > NAME_LEN {
        pax.push((b"linkpath".to_vec(), e.link.to_vec()));
        &e.link[..NAME_LEN]
    } else {
        e.link
    };
    let mut numeric = |key: &str, value: u64, max: u64| {
        if value > max {
            pax.push((key.as_bytes().to_vec(), value.to_string().into_bytes()));
            0
        } else {
            value
        }
    };
    let size = numeric("size", e.size, MAX_SIZE);
    let uid = numeric("uid", e.uid, MAX_ID);
    let gid = numeric("gid", e.gid, MAX_ID);
    let mtime = if e.mtime < 0 || e.mtime as u64 > MAX_SIZE {
        pax.push((b"mtime".to_vec(), e.mtime.to_string().into_bytes()));
        0
    } else {
        e.mtime as u64
    };
    for (name, value) in &e.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name);
        pax.push((key, value.clone()));
    }

    let mut out = Vec::with_capacity(1024);
    if !pax.is_empty() {
        let data = pax_records(&pax);
        let mut pax_name = b"./PaxHeaders/".to_vec();
        let base = base_name(e.name);
        pax_name.extend_from_slice(&base[..base.len().min(NAME_LEN - pax_name.len())]);
        let h = ustar_header(&Header {
            prefix: b"",
            name: &pax_name,
            kind: b'x',
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: data.len() as u64,
            mtime,
            link: b"",
            dev: (0, 0),
        });
        out.extend_from_slice(&h);
        out.extend_from_slice(&data);
        out.resize(out.len() + padding(data.len() as u64), 0);
    }
    out.extend_from_slice(&ustar_header(&Header {
        prefix,
        name: short_name,
        kind: e.kind,
        mode: e.mode,
        uid,
        gid,
        size,
        mtime,
        link,
        dev: e.dev,
    }));
    out
}

/// The last component of a tar name (without a trailing `/`).
fn base_name(name: &[u8]) -> &[u8] {
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

/// Splits a name into ustar (prefix, name) fields, if it fits.
fn split_name(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= NAME_LEN {
        return Some((b"", name));
    }
    // Split at the first `/` that leaves a name short enough; the slash
    // itself is implied between the two fields.
    let min_split = name.len().saturating_sub(NAME_LEN + 1);
    (min_split..name.len().min(PREFIX_LEN + 1))
        .filter(|&i| name[i] == b'/')
        .find(|&i| i > 0 && i + 1 < name.len())
        .map(|i| (&name[..i], &name[i + 1..]))
}

/// pax records `LEN KEY=VALUE\n`, LEN counting the whole record.
fn pax_records(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        let rest = key.len() + value.len() + 3; // space, '=', newline
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(key);
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

struct Header<'a> {
    prefix: &'a [u8],
    name: &'a [u8],
    kind: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    link: &'a [u8],
    dev: (u32, u32),
}

/// One 512-byte ustar header; every value must already fit its field.
fn ustar_header(h: &Header<'_>) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[..h.name.len()].copy_from_slice(h.name);
    octal(&mut b[100..108], u64::from(h.mode));
    octal(&mut b[108..116], h.uid);
    octal(&mut b[116..124], h.gid);
    octal(&mut b[124..136], h.size);
    octal(&mut b[136..148], h.mtime);
    b[156] = h.kind;
    b[157..157 + h.link.len()].copy_from_slice(h.link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    // uname/gname (265..329) stay empty: owners are numeric only.
    if matches!(h.kind, b'3' | b'4') {
        octal(&mut b[329..337], u64::from(h.dev.0));
        octal(&mut b[337..345], u64::from(h.dev.1));
    }
    b[345..345 + h.prefix.len()].copy_from_slice(h.prefix);
    // The checksum is computed with its own field as spaces.
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    b[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
    b[154] = 0;
    b
}

/// Zero-padded octal with a terminating NUL, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let r = pax_records(&[(b"a".to_vec(), b"bcd".to_vec())]);
        assert_eq!(r, b"8 a=bcd\n");
        // 97 bytes without the length: "99 " would make 100, so the length
        // needs three digits and the record is 101 bytes long.
        let r = pax_records(&[(b"k".to_vec(), vec![b'v'; 94])]);
        assert_eq!(r.len(), 101);
        let len: usize = std::str::from_utf8(&r[..r.iter().position(|&b| b == b' ').unwrap()])
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, r.len());
    }

    #[test]
    fn long_names_split_or_go_to_pax() {
        let short = vec![b'a'; 100];
        assert_eq!(split_name(&short), Some((&b""[..], &short[..])));
        let mut split = vec![b'd'; 120];
        split.push(b'/');
        split.extend_from_slice(&[b'f'; 50]);
        let (p, n) = split_name(&split).unwrap();
        assert_eq!((p.len(), n.len()), (120, 50));
        let no_slash = vec![b'x'; 101];
        assert_eq!(split_name(&no_slash), None);
    }

    #[test]
    fn header_checksum_matches_the_tar_crate() {
        let h = ustar_header(&Header {
            prefix: b"",
            name: b"./etc/passwd",
            kind: b'0',
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 10,
            mtime: 1_700_000_000,
            link: b"",
            dev: (0, 0),
        });
        let parsed = ::tar::Header::from_byte_slice(&h);
        assert_eq!(parsed.cksum().unwrap(), {
            let mut c = h;
            c[148..156].fill(b' ');
            c.iter().map(|&x| u32::from(x)).sum::<u32>()
        });
        assert_eq!(parsed.size().unwrap(), 10);
        assert_eq!(parsed.mode().unwrap(), 0o644);
    }
}
