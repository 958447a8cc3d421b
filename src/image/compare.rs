//! Naming the differences between two builds: which artifacts differ (from
//! their manifests) and, inside two rootfs tars, which entries.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{Compression, Manifest, OutputError};
use crate::pack::tar::ByteRecords;

/// An artifact that is not the same in two builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactDiff {
    /// Relative path in the output directory.
    pub path: String,
    /// (size, sha256) in the first build, if present.
    pub a: Option<(u64, String)>,
    /// (size, sha256) in the second build, if present.
    pub b: Option<(u64, String)>,
}

impl fmt::Display for ArtifactDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |s: &Option<(u64, String)>| match s {
            Some((size, sha)) => format!("{size} bytes, sha256 {}", &sha[..sha.len().min(16)]),
            None => "absent".to_string(),
        };
        write!(f, "{}: {} vs {}", self.path, side(&self.a), side(&self.b))
    }
}

/// The artifacts whose size or sha256 differ (or that only one build has),
/// by path.
pub fn artifacts(a: &Manifest, b: &Manifest) -> Vec<ArtifactDiff> {
    let map = |m: &Manifest| -> BTreeMap<String, (u64, String)> {
        m.artifacts
            .iter()
            .map(|x| (x.path.clone(), (x.size, x.sha256.clone())))
            .collect()
    };
    let (ma, mb) = (map(a), map(b));
    let mut paths: Vec<&String> = ma.keys().chain(mb.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| ma.get(*p) != mb.get(*p))
        .map(|p| ArtifactDiff {
            path: p.clone(),
            a: ma.get(p).cloned(),
            b: mb.get(p).cloned(),
        })
        .collect()
}

/// What a tar entry says, in comparable form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySummary {
    /// Entry type flag.
    pub kind: char,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time.
    pub mtime: u64,
    /// Link target (symlinks, hard links).
    pub link: String,
    /// (major, minor) of a device node.
    pub device: Option<(u32, u32)>,
    /// Content size.
    pub size: u64,
    /// sha256 of the content (hex).
    pub sha256: String,
    /// pax records other than the path (xattrs, large values), sorted.
    pub pax: Vec<(String, String)>,
}

impl EntrySummary {
    /// The fields that differ from `other`, as `field: a vs b`.
    fn differences(&self, other: &EntrySummary) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = |name: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{name}: {a} vs {b}"));
            }
        };
        field("type", self.kind.to_string(), other.kind.to_string());
        field(
            "mode",
            format!("{:o}", self.mode),
            format!("{:o}", other.mode),
        );
        field("uid", self.uid.to_string(), other.uid.to_string());
        field("gid", self.gid.to_string(), other.gid.to_string());
        field("mtime", self.mtime.to_string(), other.mtime.to_string());
        field("link", self.link.clone(), other.link.clone());
        field(
            "device",
            format!("{:?}", self.device),
            format!("{:?}", other.device),
        );
        field("size", self.size.to_string(), other.size.to_string());
        field("content sha256", self.sha256.clone(), other.sha256.clone());
        field("pax", format!("{:?}", self.pax), format!("{:?}", other.pax));
        out
    }
}

/// One difference between two tars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryDiff {
    /// Only the first tar has this entry.
    OnlyInA(String),
    /// Only the second tar has this entry.
    OnlyInB(String),
    /// Both have it, with these differing fields.
    Changed(String, Vec<String>),
    /// Same entries, but in a different order from this position on.
    Order {
        /// Index of the first entry whose position differs.
        index: usize,
        /// Name at that position in the first tar.
        a: String,
        /// Name at that position in the second tar.
        b: String,
    },
}

impl fmt::Display for EntryDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryDiff::OnlyInA(n) => write!(f, "{n}: only in the first build"),
            EntryDiff::OnlyInB(n) => write!(f, "{n}: only in the second build"),
            EntryDiff::Changed(n, fields) => write!(f, "{n}: {}", fields.join("; ")),
            EntryDiff::Order { index, a, b } => {
                write!(f, "entry #{index} differs in order: {a} vs {b}")
            }
        }
    }
}

/// Reads every entry of a (possibly compressed, by extension) tar, pax
/// records applied (`path`, `linkpath`, `uid`, `gid`, `mtime`; the others,
/// such as `SCHILY.xattr.*`, are listed in [`EntrySummary::pax`]).
pub fn read_entries(path: &Path) -> Result<Vec<(String, EntrySummary)>, OutputError> {
    let fail = OutputError::io;
    let file = File::open(path).map_err(fail("opening", path))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let reader = Compression::from_file_name(name)
        .decoder(BufReader::with_capacity(1 << 20, file))
        .map_err(fail("decompressing", path))?;
    let mut archive = ::tar::Archive::new(reader);
    let mut out = Vec::new();
    let read = |e: io::Error| fail("reading the tar", path)(e);
    let bad = |reason: String| OutputError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    // Raw entries: pax headers are parsed here, by record length, because
    // the `tar` crate splits records at newlines and xattr values are binary.
    let mut pending: ByteRecords = Vec::new();
    for entry in archive.entries().map_err(read)?.raw(true) {
        let mut entry = entry.map_err(read)?;
        let kind = entry.header().entry_type().as_byte();
        let mut data = Vec::new();
        let mut hasher = Sha256::new();
        if kind == b'x' || kind == b'g' {
            entry.read_to_end(&mut data).map_err(read)?;
            if kind == b'x' {
                pending = parse_pax(&data).map_err(bad)?;
            }
            continue;
        }
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = entry.read(&mut buf).map_err(read)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let h = entry.header();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut name = text(&h.path_bytes());
        let mut summary = EntrySummary {
            kind: char::from(kind),
            mode: h.mode().map_err(read)?,
            uid: h.uid().map_err(read)?,
            gid: h.gid().map_err(read)?,
            mtime: h.mtime().map_err(read)?,
            link: h.link_name_bytes().map(|l| text(&l)).unwrap_or_default(),
            device: match (h.device_major(), h.device_minor()) {
                (Ok(Some(major)), Ok(Some(minor))) if matches!(kind, b'3' | b'4') => {
                    Some((major, minor))
                }
                _ => None,
            },
            size: entry.size(),
            sha256: hex::encode(hasher.finalize()),
            pax: Vec::new(),
        };
        for (key, value) in std::mem::take(&mut pending) {
            let number = || {
                let v = text(&value);
                let whole = v.split('.').next().unwrap_or("").to_string();
                whole
                    .parse::<u64>()
                    .map_err(|_| bad(format!("{name}: bad pax number {v:?}")))
            };
            match &key[..] {
                b"path" => name = text(&value),
                b"linkpath" => summary.link = text(&value),
                b"uid" => summary.uid = number()?,
                b"gid" => summary.gid = number()?,
                b"mtime" => summary.mtime = number()?,
                _ => summary.pax.push((text(&key), hex::encode(&value))),
            }
        }
        summary.pax.sort();
        out.push((name, summary));
    }
    Ok(out)
}

/// Parses pax extended header data (`LEN KEY=VALUE\n` records) by the
/// records' lengths, so values may hold any byte (newlines included).
pub fn parse_pax(data: &[u8]) -> Result<ByteRecords, String> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or("pax record without a length")?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("pax record with a bad length")?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(format!("pax record of length {len} does not fit"));
        }
        let record = &rest[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("pax record without `=`")?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

/// Up to `limit` differences between two tars, in the first tar's order
/// (entries only the second has come last). Empty when the entries are the
/// same in the same order (the bytes may still differ in padding or
/// encoding, which the artifact hashes show).
pub fn tars(a: &Path, b: &Path, limit: usize) -> Result<Vec<EntryDiff>, OutputError> {
    let (ea, eb) = (read_entries(a)?, read_entries(b)?);
    Ok(entry_lists(&ea, &eb, limit))
}

/// [`tars`] over entry lists already read.
pub fn entry_lists(
    ea: &[(String, EntrySummary)],
    eb: &[(String, EntrySummary)],
    limit: usize,
) -> Vec<EntryDiff> {
    let mb: BTreeMap<&str, &EntrySummary> = eb.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let ma: BTreeMap<&str, &EntrySummary> = ea.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let mut out = Vec::new();
    for (name, sa) in ea {
        match mb.get(name.as_str()) {
            None => out.push(EntryDiff::OnlyInA(name.clone())),
            Some(sb) => {
                let fields = sa.differences(sb);
                if !fields.is_empty() {
                    out.push(EntryDiff::Changed(name.clone(), fields));
                }
            }
        }
    }
    for (name, _) in eb {
        if !ma.contains_key(name.as_str()) {
            out.push(EntryDiff::OnlyInB(name.clone()));
        }
    }
    if out.is_empty()
        && let Some(index) = ea.iter().zip(eb).position(|((x, _), (y, _))| x != y)
    {
        out.push(EntryDiff::Order {
            index,
            a: ea[index].0.clone(),
            b: eb[index].0.clone(),
        });
    }
    out.truncate(limit);
    out
}
