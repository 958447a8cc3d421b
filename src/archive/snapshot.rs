//! Per-index snapshots: the eager fields of every record of a verified,
//! decompressed index, plus each stanza's byte range, in a compact binary
//! form. A warm solve loads the snapshot (a few MB) and maps the index text
//! without reading it: only the stanzas the solver visits are ever touched,
//! which is what keeps a warm solve fast and small.
//!
//! Snapshots are derived data, written only after the index was verified and
//! fully validated, and keyed by the compressed index's sha256. Anything
//! unexpected when reading one (truncation, a bad version) makes it a cache
//! miss, never an error: the index is simply parsed again.

use crate::core::package::{BinaryPackage, IndexText, MultiArch};
use crate::core::version::DebVersion;

/// Format tag; bump when the encoding changes.
const MAGIC: &[u8; 12] = b"imgbuild-ix2";

fn put(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Encodes the records of one index.
pub(crate) fn encode(records: &[BinaryPackage]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * 48 + 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        put(&mut out, &r.name);
        put(&mut out, r.version.as_str());
        put(&mut out, &r.architecture);
        put(&mut out, &r.provides);
        let ma = match r.multi_arch {
            MultiArch::No => 0u8,
            MultiArch::Same => 1,
            MultiArch::Foreign => 2,
            MultiArch::Allowed => 3,
        };
        out.push(ma | (r.essential as u8) << 2 | (r.required as u8) << 3);
        let (a, b) = r.span();
        out.extend_from_slice(&a.to_le_bytes());
        out.extend_from_slice(&b.to_le_bytes());
    }
    out
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

/// Decodes a snapshot against its index text; `None` when it does not fit.
#[cfg(test)]
pub(crate) fn decode(data: &[u8], text: &IndexText, source: usize) -> Option<Vec<BinaryPackage>> {
    decode_filtered(data, text, source, |_| true)
}

/// [`decode`], keeping only the records whose name passes `keep` (the
/// others are checked for fit but not built: the lock audit wants a few
/// hundred names out of 60k).
pub(crate) fn decode_filtered(
    data: &[u8],
    text: &IndexText,
    source: usize,
    keep: impl Fn(&str) -> bool,
) -> Option<Vec<BinaryPackage>> {
    let mut r = Reader { data, pos: 0 };
    if r.take(MAGIC.len())? != MAGIC {
        return None;
    }
    let n = r.u32()? as usize;
    let len = (**text).as_ref().len();
    let mut out = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let (name, version, arch, provides) = (r.str()?, r.str()?, r.str()?, r.str()?);
        let flags = r.take(1)?[0];
        let (a, b) = (r.u32()?, r.u32()?);
        if a > b || b as usize > len {
            return None;
        }
        if !keep(name) {
            continue;
        }
        let multi_arch = match flags & 3 {
            1 => MultiArch::Same,
            2 => MultiArch::Foreign,
            3 => MultiArch::Allowed,
            _ => MultiArch::No,
        };
        out.push(BinaryPackage::from_parts(
            name,
            DebVersion::parse(version).ok()?,
            arch,
            multi_arch,
            flags & 4 != 0,
            flags & 8 != 0,
            provides,
            source,
            text.clone(),
            (a, b),
        ));
    }
    (r.pos == data.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::package::parse_index_range;
    use std::sync::Arc;

    #[test]
    fn round_trips_and_refuses_damage() {
        let hex = "0".repeat(64);
        let body = format!(
            "Package: a\nVersion: 1:2.0-1\nArchitecture: amd64\nMulti-Arch: same\nEssential: yes\nDepends: b\nFilename: pool/a.deb\nSize: 5\nSHA256: {hex}\n\n\
             Package: b\nVersion: 3\nArchitecture: all\nPriority: required\nProvides: v (= 1)\nFilename: pool/b.deb\nSize: 6\nSHA256: {hex}\n"
        );
        let text: IndexText = Arc::new(body.clone());
        let records = parse_index_range(&text, 0, body.len(), 0, "P", 2).unwrap();
        let snap = encode(&records);
        let back = decode(&snap, &text, 2).unwrap();
        assert_eq!(back.len(), 2);
        for (x, y) in records.iter().zip(&back) {
            assert_eq!(
                (&x.name, &x.version, &x.architecture, &x.provides),
                (&y.name, &y.version, &y.architecture, &y.provides)
            );
            assert_eq!(
                (x.multi_arch, x.essential, x.required, x.source),
                (y.multi_arch, y.essential, y.required, y.source)
            );
            assert_eq!(x.depends(), y.depends());
            assert_eq!(x.filename(), y.filename());
        }
        assert!(decode(&snap[..snap.len() - 1], &text, 2).is_none());
        let short: IndexText = Arc::new(body[..10].to_string());
        assert!(decode(&snap, &short, 2).is_none(), "spans beyond the text");
        let mut bad = snap.clone();
        bad[0] ^= 1;
        assert!(decode(&bad, &text, 2).is_none());
    }
}
