//! Safe `.deb` unpacking: read the control members, extract `data.tar` under a
//! root directory with dpkg's rules and nothing that escapes the root.
//!
//! A `.deb` is an ar archive: `debian-binary` (`2.x`), then
//! `control.tar[.gz|.xz|.zst]`, then `data.tar[.gz|.xz|.zst|.bz2]` (members named
//! `_…` are ignored, as dpkg does). [`read_control`] reads only the control
//! members; [`unpack`] reads them and streams data.tar into a root.
//!
//! Extraction rules (see `tree.rs` for how they are enforced):
//! - names are relative (`./usr/bin/x`); an absolute name (`/etc/x`) or a `..`
//!   component is refused, and so is a hard link to anything but an earlier
//!   regular file of the same package;
//! - parent directories are resolved *inside* the root: symlinks (including
//!   ones the package itself just created, `evil -> /`) are followed as if the
//!   root were `/`, so nothing is ever written outside it;
//! - existing directories are kept as they are (also when they are symlinks to
//!   directories, e.g. merged-/usr `/bin -> usr/bin`); files, symlinks and
//!   hard links replace what was there through a temporary name and a rename;
//! - device nodes are never made: an empty placeholder file takes their
//!   place and [`Unpacked::devices`] records them for the tar writer;
//! - modes (incl. setuid), numeric uid/gid (when [`ExtractOptions::preserve_owners`]),
//!   mtimes and `SCHILY.xattr.*` pax records (file capabilities) are applied.
//!
//! Data is not fsync'ed: an image build that is interrupted starts over.

mod ahead;
mod tree;
mod xz;

pub use ahead::{ReadAhead, SPOOL_FROM};

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

pub use crate::pack::tar::DeviceNode;
use sha2::Digest as _;
use tree::{Fail, Node, Tree};

/// Why a package could not be read or unpacked. Every variant names the .deb.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// Reading the .deb (or one of its members) failed.
    #[error("{deb}: {what}: {error}")]
    Read {
        /// The package file.
        deb: PathBuf,
        /// What was being read.
        what: String,
        /// The underlying error.
        error: io::Error,
    },
    /// The file is not a .deb this build understands.
    #[error("{deb}: not a valid .deb: {reason}")]
    Format {
        /// The package file.
        deb: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A data.tar entry was refused (unsafe path, bad link, conflicting type).
    #[error("{deb}: data.tar entry '{entry}': {reason}")]
    Refused {
        /// The package file.
        deb: PathBuf,
        /// The entry name as stored in the archive.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// The file is not the one the lock names: its sha256 differs.
    #[error(
        "{deb}: sha256 mismatch: the lock says {expected}, the file has {actual} ({size} bytes)"
    )]
    Digest {
        /// The package file.
        deb: PathBuf,
        /// The locked sha256.
        expected: String,
        /// What the file hashes to.
        actual: String,
        /// Its size.
        size: u64,
    },
    /// Writing a data.tar entry failed.
    #[error("{deb}: data.tar entry '{entry}': {op}: {error}")]
    Write {
        /// The package file.
        deb: PathBuf,
        /// The entry name as stored in the archive.
        entry: String,
        /// The step that failed (`create file`, `chown`, …).
        op: &'static str,
        /// The underlying error.
        error: io::Error,
    },
}

/// One member of control.tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlMember {
    /// Contents.
    pub data: Vec<u8>,
    /// Permission bits from the archive.
    pub mode: u32,
}

/// The maintainer scripts dpkg knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaintScript {
    /// `preinst`.
    Preinst,
    /// `postinst`.
    Postinst,
    /// `prerm`.
    Prerm,
    /// `postrm`.
    Postrm,
    /// `config` (debconf).
    Config,
}

impl MaintScript {
    /// The member name in control.tar.
    pub fn name(self) -> &'static str {
        match self {
            MaintScript::Preinst => "preinst",
            MaintScript::Postinst => "postinst",
            MaintScript::Prerm => "prerm",
            MaintScript::Postrm => "postrm",
            MaintScript::Config => "config",
        }
    }
}

/// The control members of a package (`control`, `md5sums`, `conffiles`,
/// maintainer scripts, `triggers`, `shlibs`, `symbols`, …), by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFiles {
    members: BTreeMap<String, ControlMember>,
}

impl ControlFiles {
    /// A member by name (`control`, `triggers`, …).
    pub fn get(&self, name: &str) -> Option<&ControlMember> {
        self.members.get(name)
    }

    /// All members, sorted by name.
    pub fn members(&self) -> impl Iterator<Item = (&str, &ControlMember)> {
        self.members.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The `control` file text (its presence and UTF-8 are checked when reading).
    pub fn control(&self) -> &str {
        std::str::from_utf8(&self.members["control"].data).expect("checked when reading")
    }

    /// The `md5sums` member, if any.
    pub fn md5sums(&self) -> Option<&[u8]> {
        self.get("md5sums").map(|m| m.data.as_slice())
    }

    /// The conffiles (absolute paths; `remove-on-upgrade` and other flags dropped).
    pub fn conffiles(&self) -> Vec<String> {
        let Some(m) = self.get("conffiles") else {
            return Vec::new();
        };
        String::from_utf8_lossy(&m.data)
            .lines()
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
            .map(str::to_string)
            .collect()
    }

    /// A maintainer script, if the package has it.
    pub fn script(&self, script: MaintScript) -> Option<&ControlMember> {
        self.get(script.name())
    }
}

/// How to extract data.tar.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Apply the archive's numeric uid/gid (needs root, or a user namespace
    /// that maps them). When false, files belong to the caller.
    pub preserve_owners: bool,
}

impl Default for ExtractOptions {
    /// Owners are preserved when running as root.
    fn default() -> Self {
        ExtractOptions {
            preserve_owners: rustix::process::geteuid().is_root(),
        }
    }
}

/// The result of [`unpack`].
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// The control members.
    pub control: ControlFiles,
    /// Every path the package installed, in archive order, as dpkg writes them
    /// to `info/PKG.list` (`/.`, `/usr`, `/usr/bin`, `/usr/bin/foo`, …).
    pub paths: Vec<String>,
    /// Its device nodes, recorded and never made (placeholders in the tree).
    pub devices: Vec<DeviceNode>,
}

/// Reads the control members of `deb` (data.tar is not read).
pub fn read_control(deb: &Path) -> Result<ControlFiles, UnpackError> {
    Ok(walk(deb, None)?.0)
}

/// Reads the control members of `deb` and extracts its data.tar under `root`
/// (an existing directory), following the rules in the module docs.
pub fn unpack(deb: &Path, root: &Path, options: &ExtractOptions) -> Result<Unpacked, UnpackError> {
    let (control, data) = walk(deb, Some((root, options)))?;
    let (paths, devices) = data.unwrap_or_default();
    Ok(Unpacked {
        control,
        paths,
        devices,
    })
}

/// [`read_control`]; when the file cannot be read as a package, whether it
/// is the locked one is checked (a tampered blob is reported as
/// [`UnpackError::Digest`], not as a format error). The full hash of a good
/// file is taken by [`unpack_checked`], which reads all of it anyway.
pub fn read_control_checked(deb: &Path, sha256: &str) -> Result<ControlFiles, UnpackError> {
    read_control(deb).map_err(|e| match crate::core::digest::hash_file(deb) {
        Ok((actual, size)) if actual != sha256 => UnpackError::Digest {
            deb: deb.to_path_buf(),
            expected: sha256.to_string(),
            actual,
            size,
        },
        _ => e,
    })
}

/// [`unpack`], hashing the file as it is read (no separate pass): when it
/// does not hash to `sha256` (lower-case hex) the result is
/// [`UnpackError::Digest`], also when the bad file fails to unpack at all.
/// What was extracted by then stays in `root`; the caller discards it (no
/// maintainer script has run yet).
pub fn unpack_checked(
    deb: &Path,
    root: &Path,
    options: &ExtractOptions,
    sha256: &str,
) -> Result<Unpacked, UnpackError> {
    let file = File::open(deb).map_err(|error| UnpackError::Read {
        deb: deb.to_path_buf(),
        what: "cannot open".into(),
        error,
    })?;
    let mut reader = HashingReader {
        inner: file,
        hasher: sha2::Sha256::new(),
        size: 0,
    };
    let walked = walk_reader(deb, &mut reader, Some((root, options)));
    // The rest of the file (trailing members, padding) counts too.
    let drained = io::copy(&mut reader, &mut io::sink());
    let actual = hex::encode(std::mem::take(&mut reader.hasher).finalize());
    if actual != sha256 {
        return Err(UnpackError::Digest {
            deb: deb.to_path_buf(),
            expected: sha256.to_string(),
            actual,
            size: reader.size,
        });
    }
    let (control, data) = walked?;
    drained.map_err(|error| UnpackError::Read {
        deb: deb.to_path_buf(),
        what: "reading the end of the file".into(),
        error,
    })?;
    let (paths, devices) = data.unwrap_or_default();
    Ok(Unpacked {
        control,
        paths,
        devices,
    })
}

/// A reader that hashes what passes through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
    size: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

type Walked = (ControlFiles, Option<(Vec<String>, Vec<DeviceNode>)>);

fn walk(deb: &Path, extract: Option<(&Path, &ExtractOptions)>) -> Result<Walked, UnpackError> {
    let mut file = File::open(deb).map_err(|error| UnpackError::Read {
        deb: deb.to_path_buf(),
        what: "cannot open".into(),
        error,
    })?;
    walk_reader(deb, &mut file, extract)
}

fn walk_reader(
    deb: &Path,
    file: &mut dyn Read,
    extract: Option<(&Path, &ExtractOptions)>,
) -> Result<Walked, UnpackError> {
    match extract {
        None => walk_with::<()>(deb, file, None).map(|(c, _)| (c, None)),
        Some((root, options)) => walk_with(
            deb,
            file,
            Some(&mut |reader: &mut dyn Read| extract_data(deb, reader, root, options)),
        ),
    }
}

/// What [`walk_with`] hands the decompressed data.tar stream to.
pub(crate) type DataSink<'a, T> = &'a mut dyn FnMut(&mut dyn Read) -> Result<T, UnpackError>;

/// Reads the members of the .deb `file`: the control members, then, when
/// `data` is given, hands it the decompressed data.tar stream.
pub(crate) fn walk_with<T>(
    deb: &Path,
    file: &mut dyn Read,
    mut data: Option<DataSink<'_, T>>,
) -> Result<(ControlFiles, Option<T>), UnpackError> {
    let read_err = |what: &str, error: io::Error| UnpackError::Read {
        deb: deb.to_path_buf(),
        what: what.to_string(),
        error,
    };
    let format = |reason: String| UnpackError::Format {
        deb: deb.to_path_buf(),
        reason,
    };
    let mut ar = ar::Archive::new(BufReader::with_capacity(1 << 16, file));
    let mut control = None;
    let mut seen_binary = false;
    while let Some(entry) = ar.next_entry() {
        let mut entry = entry.map_err(|e| read_err("reading ar archive", e))?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        if !seen_binary {
            if name != "debian-binary" {
                return Err(format(format!(
                    "first member is '{name}', not debian-binary"
                )));
            }
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| read_err("reading debian-binary", e))?;
            if !text.starts_with("2.") {
                return Err(format(format!(
                    "unsupported format version {:?}",
                    text.trim()
                )));
            }
            seen_binary = true;
        } else if name.starts_with('_') {
            continue;
        } else if let Some(ext) = name.strip_prefix("control.tar") {
            let reader = decompress(ext, &mut entry)
                .ok_or_else(|| format(format!("unknown compression of {name}")))?;
            control = Some(read_control_tar(reader).map_err(|e| match e {
                ControlErr::Io(e) => read_err(&format!("reading {name}"), e),
                ControlErr::Format(r) => format(r),
            })?);
        } else if let Some(ext) = name.strip_prefix("data.tar") {
            let control =
                control.ok_or_else(|| format("data.tar comes before control.tar".into()))?;
            let Some(data) = data.as_mut() else {
                return Ok((control, None));
            };
            let size = entry.header().size();
            let mut reader = xz::decompress_data(ext, size, &mut entry, decompress)
                .ok_or_else(|| format(format!("unknown compression of {name}")))?;
            let out = data(&mut reader)?;
            return Ok((control, Some(out)));
        } else {
            return Err(format(format!("unexpected member '{name}'")));
        }
    }
    Err(format(match (seen_binary, control.is_some()) {
        (false, _) => "empty archive".into(),
        (true, false) => "no control.tar member".into(),
        (true, true) => "no data.tar member".into(),
    }))
}

/// A decoder for the member suffix after `.tar` (`""`, `.gz`, `.xz`, `.zst`, `.bz2`).
fn decompress<'a>(ext: &str, r: &'a mut dyn Read) -> Option<Box<dyn Read + 'a>> {
    Some(match ext {
        "" => Box::new(r),
        ".gz" => Box::new(flate2::read::GzDecoder::new(r)),
        ".xz" => Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)),
        ".zst" => Box::new(zstd::stream::read::Decoder::new(r).ok()?),
        ".bz2" => Box::new(bzip2::read::BzDecoder::new(r)),
        _ => return None,
    })
}

enum ControlErr {
    Io(io::Error),
    Format(String),
}

fn read_control_tar(reader: impl Read) -> Result<ControlFiles, ControlErr> {
    let mut members = BTreeMap::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(ControlErr::Io)? {
        let mut entry = entry.map_err(ControlErr::Io)?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let comps = tree::components(&raw)
            .map_err(|r| ControlErr::Format(format!("control.tar entry '{name}': {r}")))?;
        match entry.header().entry_type() {
            tar::EntryType::Directory if comps.is_empty() => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous if comps.len() == 1 => {}
            _ => {
                return Err(ControlErr::Format(format!(
                    "control.tar entry '{name}': only plain files at the top level are allowed"
                )));
            }
        }
        let mode = entry.header().mode().map_err(ControlErr::Io)?;
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(ControlErr::Io)?;
        let key = String::from_utf8_lossy(&comps[0]).into_owned();
        members.insert(key, ControlMember { data, mode });
    }
    match members.get("control") {
        None => Err(ControlErr::Format("control.tar has no control file".into())),
        Some(m) if std::str::from_utf8(&m.data).is_err() => {
            Err(ControlErr::Format("control file is not UTF-8".into()))
        }
        Some(_) => Ok(ControlFiles { members }),
    }
}

pub(crate) fn extract_data(
    deb: &Path,
    reader: impl Read,
    root: &Path,
    options: &ExtractOptions,
) -> Result<(Vec<String>, Vec<DeviceNode>), UnpackError> {
    let mut devices = Vec::new();
    let mut tree =
        Tree::open(root, options.preserve_owners).map_err(|error| UnpackError::Read {
            deb: deb.to_path_buf(),
            what: format!("cannot open root {}", root.display()),
            error,
        })?;
    let mut paths = Vec::new();
    let mut archive = tar::Archive::new(reader);
    let read_err = |error: io::Error| UnpackError::Read {
        deb: deb.to_path_buf(),
        what: "reading data.tar".into(),
        error,
    };
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = entry.path_bytes().into_owned();
        let entry_name = String::from_utf8_lossy(&raw).into_owned();
        let refused = |reason: String| UnpackError::Refused {
            deb: deb.to_path_buf(),
            entry: entry_name.clone(),
            reason,
        };
        let comps = tree::components(&raw).map_err(refused)?;
        let meta = tree::meta(&mut entry).map_err(read_err)?;
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let header = entry.header();
        let kind = header.entry_type();
        let device = || -> Result<(u32, u32), UnpackError> {
            let major = header.device_major().map_err(read_err)?.unwrap_or(0);
            let minor = header.device_minor().map_err(read_err)?.unwrap_or(0);
            Ok((major, minor))
        };
        let node = match kind {
            tar::EntryType::Directory => Node::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => Node::File(&mut entry),
            tar::EntryType::Symlink => {
                Node::Symlink(link.ok_or_else(|| refused("symlink without a target".into()))?)
            }
            tar::EntryType::Link => {
                let target = link.ok_or_else(|| refused("hard link without a target".into()))?;
                Node::Hardlink(
                    tree::components(&target)
                        .map_err(|r| refused(format!("hard link target: {r}")))?,
                )
            }
            tar::EntryType::Fifo => Node::Fifo,
            tar::EntryType::Char => {
                let (ma, mi) = device()?;
                Node::Char(ma, mi)
            }
            tar::EntryType::Block => {
                let (ma, mi) = device()?;
                Node::Block(ma, mi)
            }
            other => return Err(refused(format!("unsupported tar entry type {other:?}"))),
        };
        let is_dir = matches!(node, Node::Dir);
        if let Node::Char(major, minor) | Node::Block(major, minor) = node
            && !comps.is_empty()
        {
            let path = tree::list_path(&comps);
            devices.retain(|d: &DeviceNode| d.path != path[1..]);
            devices.push(DeviceNode {
                path: path[1..].to_string(),
                block: matches!(node, Node::Block(..)),
                major,
                minor,
                mode: meta.mode & 0o7777,
                uid: meta.uid,
                gid: meta.gid,
            });
        }
        if comps.is_empty() {
            // The root itself (`./`): listed as `/.`, its metadata left alone.
            if !is_dir {
                return Err(refused("the root must be a directory".into()));
            }
        } else {
            tree.put(&comps, node, &meta).map_err(|fail| match fail {
                Fail::Refused(reason) => refused(reason),
                Fail::Io(op, error) => UnpackError::Write {
                    deb: deb.to_path_buf(),
                    entry: entry_name.clone(),
                    op,
                    error,
                },
            })?;
        }
        paths.push(tree::list_path(&comps));
    }
    Ok((paths, devices))
}
