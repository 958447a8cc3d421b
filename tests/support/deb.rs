//! Real, deterministic Debian binary packages built from a [`DebSpec`].
//!
//! The output is what `dpkg-deb --build` produces in shape: an ar archive with
//! `debian-binary` ("2.0\n"), `control.tar.{xz,gz}` and `data.tar.{xz,gz}`.
//! All mtimes, owners and orders are fixed, so one spec always gives the same
//! bytes (and sha256). Tar headers are written by hand (GNU format, `./` prefix
//! like dpkg) so that hostile entries (`../x`, `/etc/x`, odd links) can be made too.

use std::collections::BTreeSet;
use std::io::Write;

use md5::Digest as _;
/// Compression of members and indexes: the shared fixture kit's (deterministic).
pub use testkit::{gz, xz};

/// mtime of every ar member and tar entry (2023-11-14T22:13:20Z).
pub const DEB_MTIME: u64 = 1_700_000_000;

/// Compression used for both control.tar and data.tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `.tar.xz` (the Debian default).
    Xz,
    /// `.tar.gz`.
    Gz,
}

/// Kind of a raw tar entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawKind {
    /// Regular file (type `0`).
    File,
    /// Directory (type `5`).
    Dir,
    /// Symbolic link to the given target (type `2`).
    Symlink(Vec<u8>),
    /// Hard link to the given archive path (type `1`).
    Hardlink(Vec<u8>),
    /// Character device with these numbers (type `3`).
    Char(u32, u32),
}

/// A tar entry written verbatim into data.tar, without any path checks
/// (for path-traversal and link tests). Names over 100 bytes use a GNU long-name entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// Exact name bytes, e.g. `b"./../../etc/passwd"` or `b"/etc/shadow"`.
    pub name: Vec<u8>,
    /// Entry type.
    pub kind: RawKind,
    /// Contents (only meaningful for files).
    pub data: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// Everything needed to build one .deb. Build with [`DebSpec::new`] and the chaining setters.
#[derive(Debug, Clone)]
pub struct DebSpec {
    /// `Package`.
    pub name: String,
    /// `Version`.
    pub version: String,
    /// `Architecture` (`amd64`, `all`, …).
    pub architecture: String,
    /// Further control fields in order (`("Depends", "libc6 (>= 2.36)")`, …).
    pub fields: Vec<(String, String)>,
    /// `Description` (first line = synopsis; later lines become continuation lines).
    pub description: String,
    /// Regular files: (absolute or relative path, contents, mode).
    pub files: Vec<(String, Vec<u8>, u32)>,
    /// Symbolic links: (path, target).
    pub symlinks: Vec<(String, String)>,
    /// Extra control.tar members: maintainer scripts (`postinst`, …) or `conffiles`, `triggers`.
    pub control_members: Vec<(String, Vec<u8>, u32)>,
    /// Raw entries appended to data.tar after the regular ones.
    pub raw_entries: Vec<RawEntry>,
    /// Fields that appear only in the Packages stanza, not in the .deb
    /// (to make index and package disagree on purpose).
    pub index_fields: Vec<(String, String)>,
    /// Compression of both tar members.
    pub compression: Compression,
}

impl DebSpec {
    /// A package with no files, xz-compressed, Maintainer and Description filled in.
    pub fn new(name: &str, version: &str, architecture: &str) -> DebSpec {
        DebSpec {
            name: name.into(),
            version: version.into(),
            architecture: architecture.into(),
            fields: Vec::new(),
            description: format!("test package {name}"),
            files: Vec::new(),
            symlinks: Vec::new(),
            control_members: Vec::new(),
            raw_entries: Vec::new(),
            index_fields: Vec::new(),
            compression: Compression::Xz,
        }
    }

    /// Adds (or replaces) a control field.
    pub fn field(mut self, name: &str, value: &str) -> Self {
        self.fields.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.fields.push((name.into(), value.into()));
        self
    }

    /// `Depends`.
    pub fn depends(self, value: &str) -> Self {
        self.field("Depends", value)
    }

    /// `Pre-Depends`.
    pub fn pre_depends(self, value: &str) -> Self {
        self.field("Pre-Depends", value)
    }

    /// `Recommends`.
    pub fn recommends(self, value: &str) -> Self {
        self.field("Recommends", value)
    }

    /// `Provides`.
    pub fn provides(self, value: &str) -> Self {
        self.field("Provides", value)
    }

    /// `Conflicts`.
    pub fn conflicts(self, value: &str) -> Self {
        self.field("Conflicts", value)
    }

    /// `Breaks`.
    pub fn breaks(self, value: &str) -> Self {
        self.field("Breaks", value)
    }

    /// `Replaces`.
    pub fn replaces(self, value: &str) -> Self {
        self.field("Replaces", value)
    }

    /// `Multi-Arch` (`same`, `foreign`, `allowed`).
    pub fn multi_arch(self, value: &str) -> Self {
        self.field("Multi-Arch", value)
    }

    /// `Priority` (`required`, `important`, `optional`, …).
    pub fn priority(self, value: &str) -> Self {
        self.field("Priority", value)
    }

    /// `Essential: yes`.
    pub fn essential(self) -> Self {
        self.field("Essential", "yes")
    }

    /// Sets the description (multi-line allowed; use "." for an empty paragraph line).
    pub fn description(mut self, text: &str) -> Self {
        self.description = text.into();
        self
    }

    /// Adds a regular file (`/usr/bin/foo` or `usr/bin/foo`); parent directories are implied.
    pub fn file(mut self, path: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files.push((path.into(), contents.into(), mode));
        self
    }

    /// Adds a symbolic link.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.symlinks.push((path.into(), target.into()));
        self
    }

    /// Adds a maintainer script (`preinst`, `postinst`, `prerm`, `postrm`), mode 0755.
    pub fn script(mut self, name: &str, text: &str) -> Self {
        self.control_members
            .push((name.into(), text.as_bytes().to_vec(), 0o755));
        self
    }

    /// Adds an arbitrary control.tar member (`conffiles`, `triggers`, …), mode 0644.
    pub fn control_member(mut self, name: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.control_members
            .push((name.into(), contents.into(), 0o644));
        self
    }

    /// Appends a raw, unchecked tar entry to data.tar.
    pub fn raw_entry(mut self, entry: RawEntry) -> Self {
        self.raw_entries.push(entry);
        self
    }

    /// Adds a field to the Packages stanza only.
    pub fn index_field(mut self, name: &str, value: &str) -> Self {
        self.index_fields.push((name.into(), value.into()));
        self
    }

    /// Uses gzip instead of xz for both tar members.
    pub fn gzip(mut self) -> Self {
        self.compression = Compression::Gz;
        self
    }

    /// The pool file name: `NAME_VERSION_ARCH.deb` (epoch dropped, like the archive does).
    pub fn file_name(&self) -> String {
        let version = self
            .version
            .split_once(':')
            .map_or(&*self.version, |(_, v)| v);
        format!("{}_{}_{}.deb", self.name, version, self.architecture)
    }

    /// `Installed-Size` in KiB, as dpkg-gencontrol estimates it (rounded up, at least 1).
    pub fn installed_size(&self) -> u64 {
        let bytes: u64 = self.files.iter().map(|(_, d, _)| d.len() as u64).sum();
        bytes.div_ceil(1024).max(1)
    }

    /// The `control` file text (also the start of the Packages stanza).
    pub fn control_text(&self) -> String {
        let mut out = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: imgbuild tests <test@imgbuild.invalid>\nInstalled-Size: {}\n",
            self.name,
            self.version,
            self.architecture,
            self.installed_size()
        );
        for (k, v) in &self.fields {
            out.push_str(&format!("{k}: {v}\n"));
        }
        out.push_str(&format!(
            "Description: {}\n",
            continuation(&self.description)
        ));
        out
    }

    /// Builds the .deb bytes. Panics only on impossible I/O into memory.
    pub fn build(&self) -> Vec<u8> {
        let control = self.control_tar();
        let data = self.data_tar();
        let (ext, control, data) = match self.compression {
            Compression::Xz => ("xz", xz(&control), xz(&data)),
            Compression::Gz => ("gz", gz(&control), gz(&data)),
        };
        let mut ar = ar::Builder::new(Vec::new());
        let members: [(String, &[u8]); 3] = [
            ("debian-binary".into(), b"2.0\n"),
            (format!("control.tar.{ext}"), &control),
            (format!("data.tar.{ext}"), &data),
        ];
        for (name, bytes) in members {
            let mut header = ar::Header::new(name.into_bytes(), bytes.len() as u64);
            header.set_mtime(DEB_MTIME);
            header.set_mode(0o100644);
            ar.append(&header, bytes).expect("ar member");
        }
        ar.into_inner().expect("ar archive")
    }

    fn control_tar(&self) -> Vec<u8> {
        let mut tar = TarWriter::default();
        tar.entry(b"./", &RawKind::Dir, b"", 0o755);
        tar.entry(
            b"./control",
            &RawKind::File,
            self.control_text().as_bytes(),
            0o644,
        );
        if !self.files.is_empty() {
            let mut sums = String::new();
            for (path, data, _) in self.sorted_files() {
                let digest = md5::Md5::digest(data);
                sums.push_str(&format!("{}  {}\n", hex::encode(digest), &path[2..]));
            }
            tar.entry(b"./md5sums", &RawKind::File, sums.as_bytes(), 0o644);
        }
        for (name, data, mode) in &self.control_members {
            tar.entry(format!("./{name}").as_bytes(), &RawKind::File, data, *mode);
        }
        tar.finish()
    }

    /// Files with normalized `./` paths, sorted by path (dpkg-deb sorts too).
    fn sorted_files(&self) -> Vec<(String, &[u8], u32)> {
        let mut files: Vec<_> = self
            .files
            .iter()
            .map(|(p, d, m)| (dot_path(p), d.as_slice(), *m))
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        files
    }

    fn data_tar(&self) -> Vec<u8> {
        let files = self.sorted_files();
        let links: Vec<(String, &str)> = self
            .symlinks
            .iter()
            .map(|(p, t)| (dot_path(p), t.as_str()))
            .collect();
        // Every parent directory of every entry, as "./a/", "./a/b/", sorted.
        let mut dirs = BTreeSet::new();
        for path in files.iter().map(|f| &f.0).chain(links.iter().map(|l| &l.0)) {
            let mut end = 2;
            while let Some(i) = path[end..].find('/') {
                end += i + 1;
                dirs.insert(path[..end].to_string());
            }
        }
        let mut tar = TarWriter::default();
        tar.entry(b"./", &RawKind::Dir, b"", 0o755);
        for dir in &dirs {
            tar.entry(dir.as_bytes(), &RawKind::Dir, b"", 0o755);
        }
        for (path, data, mode) in &files {
            tar.entry(path.as_bytes(), &RawKind::File, data, *mode);
        }
        for (path, target) in &links {
            let kind = RawKind::Symlink(target.as_bytes().to_vec());
            tar.entry(path.as_bytes(), &kind, b"", 0o777);
        }
        for raw in &self.raw_entries {
            tar.entry(&raw.name, &raw.kind, &raw.data, raw.mode);
        }
        tar.finish()
    }
}

/// `/usr/bin/x` or `usr/bin/x` → `./usr/bin/x`.
fn dot_path(path: &str) -> String {
    format!(
        "./{}",
        path.trim_start_matches("./").trim_start_matches('/')
    )
}

/// Formats a multi-line value as deb822 continuation lines.
pub fn continuation(value: &str) -> String {
    let mut lines = value.lines();
    let mut out = lines.next().unwrap_or("").to_string();
    for line in lines {
        out.push_str("\n ");
        out.push_str(if line.trim().is_empty() { "." } else { line });
    }
    out
}

/// Minimal GNU tar writer with verbatim names (the tar crate rewrites `./` and rejects `..`).
#[derive(Default)]
struct TarWriter {
    out: Vec<u8>,
}

impl TarWriter {
    fn entry(&mut self, name: &[u8], kind: &RawKind, data: &[u8], mode: u32) {
        let (typ, link): (u8, &[u8]) = match kind {
            RawKind::File => (b'0', b""),
            RawKind::Dir => (b'5', b""),
            RawKind::Symlink(t) => (b'2', t),
            RawKind::Hardlink(t) => (b'1', t),
            RawKind::Char(..) => (b'3', b""),
        };
        if name.len() > 100 {
            let mut long = name.to_vec();
            long.push(0);
            self.header(b"././@LongLink", b'L', long.len() as u64, 0o644, b"");
            self.body(&long);
        }
        if link.len() > 100 {
            let mut long = link.to_vec();
            long.push(0);
            self.header(b"././@LongLink", b'K', long.len() as u64, 0o644, b"");
            self.body(&long);
        }
        let size = if typ == b'0' { data.len() as u64 } else { 0 };
        self.header(name, typ, size, mode, link);
        if let RawKind::Char(major, minor) = kind {
            // Device numbers live in the header just written: patch them in.
            let at = self.out.len() - 512;
            let mut h = tar::Header::from_byte_slice(&self.out[at..]).clone();
            h.set_device_major(*major).expect("device major");
            h.set_device_minor(*minor).expect("device minor");
            h.set_cksum();
            self.out[at..].copy_from_slice(h.as_bytes());
        }
        if typ == b'0' {
            self.body(data);
        }
    }

    fn header(&mut self, name: &[u8], typ: u8, size: u64, mode: u32, link: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(size);
        h.set_mtime(DEB_MTIME);
        h.set_username("root").expect("username");
        h.set_groupname("root").expect("groupname");
        let bytes = h.as_mut_bytes();
        let n = name.len().min(100);
        bytes[..n].copy_from_slice(&name[..n]);
        bytes[156] = typ;
        let l = link.len().min(100);
        bytes[157..157 + l].copy_from_slice(&link[..l]);
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
    }

    fn body(&mut self, data: &[u8]) {
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
    }

    fn finish(mut self) -> Vec<u8> {
        // Two zero blocks end the archive.
        self.out.extend(std::iter::repeat_n(0u8, 1024));
        self.out
    }
}
