//! Per-index snapshots: the eager fields of every record of a verified,
//! decompressed index, each stanza's byte range, and the tables a solve
//! looks records up by (names, `Provides`, the Essential/required set), in
//! a compact binary form that is mapped, not read. A warm solve opens the
//! snapshot and the index text without copying either, looks up the few
//! hundred names it can reach (see `debsolve::reach`), and builds records
//! for those only: no per-stanza heap record exists for the ~70k others.
//!
//! Snapshots are derived data, written only after the index was verified and
//! fully validated, and keyed by the compressed index's sha256. They are
//! still on-disk input: [`Snapshot::open`] checks every offset and count
//! before anything is read, and anything unexpected later (a string that is
//! not UTF-8, a bad version) is reported as [`Damaged`], after which the
//! caller parses the index again. Never an error, never a panic.
//!
//! Layout (all integers `u32` little-endian):
//! `MAGIC`, text length, then the counts of records, names, provides,
//! flagged and the pool length; then the record table (`RECORD` bytes each:
//! name number, version, architecture and `Provides` as pool ranges, flags,
//! stanza span), the name table sorted by name (`NAME` bytes each: pool
//! range, first and count in the by-name list), the by-name list (record
//! numbers grouped by name, in index order), the provides table sorted by
//! virtual name (`PROVIDE` bytes each: pool range, record number), the
//! flagged list (records marked Essential or `Priority: required`) and the
//! string pool.

use std::collections::HashMap;
use std::sync::Arc;

use super::window::Text;
use crate::core::package::{BinaryPackage, MultiArch};
use crate::core::version::DebVersion;

/// Format tag; bump when the encoding changes.
const MAGIC: &[u8; 12] = b"imgbuild-ix3";
const HEADER: usize = MAGIC.len() + 6 * 4;
const RECORD: usize = 40;
const NAME: usize = 16;
const PROVIDE: usize = 12;

/// The snapshot does not fit its text, or says something impossible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Damaged;

/// Bytes a snapshot is read from (a map of the cache file, or a buffer).
pub(crate) type SnapshotBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// Encodes the records of one index, whose text is `text_len` bytes long.
pub(crate) fn encode(records: &[BinaryPackage], text_len: usize) -> Vec<u8> {
    let mut pool: Vec<u8> = Vec::new();
    // Versions, architectures and empty fields repeat: each string once.
    let mut interned: HashMap<String, (u32, u32)> = HashMap::new();
    let mut intern = |s: &str, pool: &mut Vec<u8>| -> (u32, u32) {
        if let Some(&r) = interned.get(s) {
            return r;
        }
        let r = (pool.len() as u32, s.len() as u32);
        pool.extend_from_slice(s.as_bytes());
        interned.insert(s.to_owned(), r);
        r
    };
    let mut names: Vec<&str> = records.iter().map(|r| &*r.name).collect();
    names.sort_unstable();
    names.dedup();
    let name_no: HashMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, i as u32))
        .collect();
    let mut by_name: Vec<Vec<u32>> = vec![Vec::new(); names.len()];
    let mut provides: Vec<(&str, u32)> = Vec::new();
    let mut flagged: Vec<u32> = Vec::new();
    let mut table = Vec::with_capacity(records.len() * RECORD);
    let mut provide_names: Vec<String> = Vec::new();
    let mut provide_of: Vec<(usize, u32)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let i = i as u32;
        let n = name_no[&*r.name];
        by_name[n as usize].push(i);
        if r.essential || r.required {
            flagged.push(i);
        }
        // As the universe reads them: a Provides that does not parse
        // provides nothing.
        if let Ok(deps) = debcore::relation::parse_field(&r.provides) {
            for d in deps {
                for a in d.alternatives {
                    provide_of.push((provide_names.len(), i));
                    provide_names.push(a.name);
                }
            }
        }
        let ma = match r.multi_arch {
            MultiArch::No => 0u32,
            MultiArch::Same => 1,
            MultiArch::Foreign => 2,
            MultiArch::Allowed => 3,
        };
        let flags = ma | (r.essential as u32) << 2 | (r.required as u32) << 3;
        let (a, b) = r.span();
        let strings = [
            intern(r.version.as_str(), &mut pool),
            intern(&r.architecture, &mut pool),
            intern(&r.provides, &mut pool),
        ];
        put(&mut table, n);
        for (off, len) in strings {
            put(&mut table, off);
            put(&mut table, len);
        }
        for v in [flags, a, b] {
            put(&mut table, v);
        }
    }
    for (k, i) in &provide_of {
        provides.push((&provide_names[*k], *i));
    }
    provides.sort_unstable();
    provides.dedup();
    let mut out = Vec::with_capacity(HEADER + table.len() + pool.len() + names.len() * 24);
    out.extend_from_slice(MAGIC);
    let counts = [
        text_len,
        records.len(),
        names.len(),
        provides.len(),
        flagged.len(),
    ];
    for c in counts {
        put(&mut out, c as u32);
    }
    // The pool grows with the name and provides strings below: its length
    // goes in last.
    let pool_len_at = out.len();
    put(&mut out, 0);
    out.extend_from_slice(&table);
    let mut first = 0u32;
    for (n, list) in names.iter().zip(&by_name) {
        let (off, len) = intern(n, &mut pool);
        for v in [off, len, first, list.len() as u32] {
            put(&mut out, v);
        }
        first += list.len() as u32;
    }
    for list in &by_name {
        for &i in list {
            put(&mut out, i);
        }
    }
    for (name, i) in &provides {
        let (off, len) = intern(name, &mut pool);
        for v in [off, len, *i] {
            put(&mut out, v);
        }
    }
    for &i in &flagged {
        put(&mut out, i);
    }
    out[pool_len_at..pool_len_at + 4].copy_from_slice(&(pool.len() as u32).to_le_bytes());
    out.extend_from_slice(&pool);
    out
}

fn put(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A validated snapshot: every table lies inside the data, every number and
/// range in them points inside its table, the pool or the text.
#[derive(Clone)]
pub(crate) struct Snapshot {
    data: SnapshotBytes,
    records: usize,
    names: usize,
    provides: usize,
    flagged: usize,
    /// Section offsets.
    at_records: usize,
    at_names: usize,
    at_by_name: usize,
    at_provides: usize,
    at_flagged: usize,
    at_pool: usize,
    pool_len: usize,
}

/// One record as the snapshot has it.
pub(crate) struct Raw<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) version: &'a [u8],
    pub(crate) architecture: &'a [u8],
    pub(crate) provides: &'a [u8],
    pub(crate) flags: u32,
    pub(crate) span: (u32, u32),
}

impl Snapshot {
    /// Checks `data` against a text of `text_len` bytes; `None` when it does
    /// not fit (another format, truncated, an offset out of range, …).
    pub(crate) fn open(data: SnapshotBytes, text_len: usize) -> Option<Snapshot> {
        let bytes = (*data).as_ref();
        if bytes.get(..MAGIC.len())? != MAGIC {
            return None;
        }
        let word = |i: usize| u32_at(bytes, MAGIC.len() + 4 * i).map(|v| v as usize);
        if word(0)? != text_len {
            return None;
        }
        let (records, names, provides, flagged, pool_len) =
            (word(1)?, word(2)?, word(3)?, word(4)?, word(5)?);
        let at_records = HEADER;
        let at_names = at_records.checked_add(records.checked_mul(RECORD)?)?;
        let at_by_name = at_names.checked_add(names.checked_mul(NAME)?)?;
        let at_provides = at_by_name.checked_add(records.checked_mul(4)?)?;
        let at_flagged = at_provides.checked_add(provides.checked_mul(PROVIDE)?)?;
        let at_pool = at_flagged.checked_add(flagged.checked_mul(4)?)?;
        if at_pool.checked_add(pool_len)? != bytes.len() {
            return None;
        }
        let s = Snapshot {
            data: data.clone(),
            records,
            names,
            provides,
            flagged,
            at_records,
            at_names,
            at_by_name,
            at_provides,
            at_flagged,
            at_pool,
            pool_len,
        };
        s.validate(text_len).then_some(s)
    }

    /// Every number in range, names sorted and each listing exactly the
    /// records that carry it, provides sorted.
    fn validate(&self, text_len: usize) -> bool {
        let pool_ok = |off: u32, len: u32| {
            (off as usize)
                .checked_add(len as usize)
                .is_some_and(|e| e <= self.pool_len)
        };
        for i in 0..self.records {
            let at = self.at_records + i * RECORD;
            let w = |k: usize| self.word(at + 4 * k);
            if w(0) as usize >= self.names
                || !pool_ok(w(1), w(2))
                || !pool_ok(w(3), w(4))
                || !pool_ok(w(5), w(6))
                || w(7) >= 16
                || w(8) > w(9)
                || w(9) as usize > text_len
            {
                return false;
            }
        }
        let mut total = 0usize;
        let mut prev: Option<&[u8]> = None;
        for n in 0..self.names {
            let at = self.at_names + n * NAME;
            let (off, len, first, count) = (
                self.word(at),
                self.word(at + 4),
                self.word(at + 8) as usize,
                self.word(at + 12) as usize,
            );
            if !pool_ok(off, len) || first != total || count == 0 {
                return false;
            }
            total += count;
            if total > self.records {
                return false;
            }
            let name = self.pool(off, len);
            if prev.is_some_and(|p| p >= name) {
                return false;
            }
            prev = Some(name);
            for k in first..first + count {
                let r = self.word(self.at_by_name + 4 * k) as usize;
                if r >= self.records || self.word(self.at_records + r * RECORD) as usize != n {
                    return false;
                }
            }
        }
        if total != self.records {
            return false;
        }
        let mut prev: Option<&[u8]> = None;
        for p in 0..self.provides {
            let at = self.at_provides + p * PROVIDE;
            let (off, len, r) = (self.word(at), self.word(at + 4), self.word(at + 8));
            if !pool_ok(off, len) || r as usize >= self.records {
                return false;
            }
            let name = self.pool(off, len);
            if prev.is_some_and(|q| q > name) {
                return false;
            }
            prev = Some(name);
        }
        (0..self.flagged).all(|f| (self.word(self.at_flagged + 4 * f) as usize) < self.records)
    }

    fn bytes(&self) -> &[u8] {
        (*self.data).as_ref()
    }

    /// The `u32` at `at` (0 outside the data: `open` made sure it is not).
    fn word(&self, at: usize) -> u32 {
        u32_at(self.bytes(), at).unwrap_or(0)
    }

    fn pool(&self, off: u32, len: u32) -> &[u8] {
        let a = self.at_pool + off as usize;
        self.bytes().get(a..a + len as usize).unwrap_or(&[])
    }

    /// Number of records.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.records
    }

    /// Record `i` (< [`Snapshot::len`]).
    pub(crate) fn raw(&self, i: u32) -> Raw<'_> {
        let at = self.at_records + i as usize * RECORD;
        let w = |k: usize| self.word(at + 4 * k);
        let n = self.at_names + w(0) as usize * NAME;
        Raw {
            name: self.pool(self.word(n), self.word(n + 4)),
            version: self.pool(w(1), w(2)),
            architecture: self.pool(w(3), w(4)),
            provides: self.pool(w(5), w(6)),
            flags: w(7),
            span: (w(8), w(9)),
        }
    }

    /// The numbers of the records named `name`, in index order.
    pub(crate) fn named(&self, name: &str) -> impl Iterator<Item = u32> + '_ {
        let found = self.find_name(name.as_bytes());
        let (first, count) = found.map_or((0, 0), |n| {
            let at = self.at_names + n * NAME;
            (self.word(at + 8) as usize, self.word(at + 12) as usize)
        });
        (first..first + count).map(move |k| self.word(self.at_by_name + 4 * k))
    }

    fn find_name(&self, name: &[u8]) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.names);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = self.at_names + mid * NAME;
            match self.pool(self.word(at), self.word(at + 4)).cmp(name) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The numbers of the records whose `Provides` names `name`.
    pub(crate) fn providers(&self, name: &str) -> impl Iterator<Item = u32> + '_ {
        let (mut lo, mut hi) = (0, self.provides);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.provided(mid) < name.as_bytes() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut end = lo;
        while end < self.provides && self.provided(end) == name.as_bytes() {
            end += 1;
        }
        (lo..end).map(move |p| self.word(self.at_provides + p * PROVIDE + 8))
    }

    /// The virtual name of provides entry `p`.
    fn provided(&self, p: usize) -> &[u8] {
        let at = self.at_provides + p * PROVIDE;
        self.pool(self.word(at), self.word(at + 4))
    }

    /// The records marked Essential or `Priority: required`.
    pub(crate) fn flagged(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.flagged).map(move |f| self.word(self.at_flagged + 4 * f))
    }

    /// The name of record `i`.
    pub(crate) fn name(&self, i: u32) -> Result<&str, Damaged> {
        std::str::from_utf8(self.raw(i).name).map_err(|_| Damaged)
    }

    /// Record `i` as a package of source `source`, over its own copy of its
    /// stanza read from `text` (see `window.rs`).
    pub(crate) fn build(
        &self,
        i: u32,
        text: &Text,
        source: usize,
    ) -> Result<BinaryPackage, Damaged> {
        let raw = self.raw(i);
        fn s(b: &[u8]) -> Result<&str, Damaged> {
            std::str::from_utf8(b).map_err(|_| Damaged)
        }
        let (name, version, arch, provides) = (
            s(raw.name)?,
            s(raw.version)?,
            s(raw.architecture)?,
            s(raw.provides)?,
        );
        if name.is_empty() {
            return Err(Damaged);
        }
        let (stanza, span) = text.window(raw.span)?;
        let multi_arch = match raw.flags & 3 {
            1 => MultiArch::Same,
            2 => MultiArch::Foreign,
            3 => MultiArch::Allowed,
            _ => MultiArch::No,
        };
        Ok(BinaryPackage::from_parts(
            name,
            DebVersion::parse(version).map_err(|_| Damaged)?,
            arch,
            multi_arch,
            raw.flags & 4 != 0,
            raw.flags & 8 != 0,
            provides,
            source,
            stanza,
            span,
        ))
    }

    /// Every record, in index order.
    pub(crate) fn all(&self, text: &Text, source: usize) -> Result<Vec<BinaryPackage>, Damaged> {
        (0..self.records as u32)
            .map(|i| self.build(i, text, source))
            .collect()
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
#[path = "snapshot/tests.rs"]
mod tests;
