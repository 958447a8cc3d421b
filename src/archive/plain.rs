//! Verified decompressed indexes and their records, shared by the loader
//! (`fetch.rs`) and the lock audit (`audit.rs`).
//!
//! The decompressed text of an index is cached (`indexes/plain/`) only when
//! the signed Release lists the uncompressed file's hash too (Debian's do),
//! and it is checked against that hash on every read (`Cache::read_plain`):
//! an edited cached index never reaches the solver. Without a listed hash
//! nothing could vouch for a cached text, so it is decompressed again from
//! the (hash-checked) compressed file each time.

use std::sync::Arc;

use super::ArchiveError;
use super::cache::Cache;
use super::cache::hash_file_released;
use super::decode::{DecodeError, decompress, decompress_into, parse_plain};
use super::release::FileHash;
use super::snapshot::{self, Damaged, Snapshot};
use super::window::Plain;
use crate::core::package::{BinaryPackage, IndexText};

/// Decompresses the verified index `compressed` (`path`, listed with `hash`)
/// and checks the result against the Release's uncompressed entry
/// `plain_hash` when there is one. With one, the text is streamed into the
/// cache file (xz blocks in parallel) and checked there before the file
/// appears, then mapped: it is never held in memory whole. Without one it
/// cannot be cached (nothing could vouch for it later) and stays in memory.
pub(super) fn decompress_verified(
    cache: &Cache,
    source_name: &str,
    path: &str,
    hash: &FileHash,
    plain_hash: Option<&FileHash>,
    compressed: &[u8],
) -> Result<Plain, ArchiveError> {
    let bad = |reason: String| ArchiveError::Decompress {
        source_name: source_name.to_string(),
        path: path.to_string(),
        reason,
    };
    let Some(want) = plain_hash else {
        let plain = decompress(path, compressed).map_err(|e| match e {
            DecodeError::Decompress(reason) => bad(reason),
            DecodeError::Packages(e) => bad(e.to_string()),
        })?;
        return Ok(Plain::memory(Arc::new(plain)));
    };
    let mut failure = None;
    let mut mapped = None;
    let stored = cache.store_plain_with(&hash.sha256, |file| {
        let refuse = |failure: &mut Option<ArchiveError>, reason: String| {
            *failure = Some(bad(reason));
            std::io::Error::other("refused")
        };
        let n = decompress_into(path, compressed, file, want.size)
            .map_err(|reason| refuse(&mut failure, reason))?;
        let got = hash_file_released(file)?;
        // SAFETY: the temporary file this process just wrote, not visible to
        // any other until it is renamed, and never written again.
        let map = unsafe { memmap2::Mmap::map(file) }?;
        crate::archive::cache::sparse(&map);
        if n != want.size || got != want.sha256 {
            return Err(refuse(
                &mut failure,
                format!(
                    "the decompressed index ({n} bytes, sha256 {got}) does not match the signed \
                     Release's entry for it ({} bytes, sha256 {})",
                    want.size, want.sha256
                ),
            ));
        }
        mapped = Some((map, file.try_clone()?));
        Ok(())
    });
    if let Some(e) = failure {
        return Err(e);
    }
    stored?;
    let (map, file) = mapped.ok_or_else(|| bad("internal: no text after decompression".into()))?;
    Ok(Plain {
        text: Arc::new(map),
        file: Some(Arc::new(file)),
    })
}

/// One verified index as a solve reads it: its text (mapped) and its
/// snapshot (the lookup tables), plus what it takes to parse it again.
#[derive(Clone)]
pub(crate) struct IndexView {
    /// The verified, decompressed text.
    pub(crate) text: Plain,
    /// Its snapshot, checked to fit the text.
    pub(crate) snap: Snapshot,
    /// The recipe source the index belongs to.
    pub(crate) source: usize,
    /// sha256 of the compressed index (the snapshot's cache key).
    sha256: String,
    /// Names for messages: the index as shown, the source, the path.
    index: String,
    source_name: String,
    path: String,
}

impl IndexView {
    /// The view of the verified index text `text` (compressed file `hash`,
    /// shown as `index`): its cached snapshot when one fits, else the text
    /// is parsed (validating every stanza) and the snapshot written.
    /// Snapshot fields are only an accelerator: the lock audit re-reads
    /// every locked stanza from the verified text.
    pub(crate) fn open(
        cache: &Cache,
        text: Plain,
        hash: &FileHash,
        index: &str,
        source_name: &str,
        path: &str,
        source: usize,
    ) -> Result<IndexView, ArchiveError> {
        let len = (*text.text).as_ref().len();
        let cached = cache
            .read_snapshot(&hash.sha256)
            .and_then(|map| Snapshot::open(Arc::new(map), len));
        Ok(IndexView {
            snap: match cached {
                Some(s) => s,
                None => parse_and_store(cache, &text.text, &hash.sha256, index, source_name, path)?,
            },
            text,
            source,
            sha256: hash.sha256.clone(),
            index: index.to_string(),
            source_name: source_name.to_string(),
            path: path.to_string(),
        })
    }

    /// Parses the text again and replaces the snapshot: for a snapshot that
    /// passed [`Snapshot::open`] but then said something impossible.
    pub(crate) fn rebuild(&mut self, cache: &Cache) -> Result<(), ArchiveError> {
        self.snap = parse_and_store(
            cache,
            &self.text.text,
            &self.sha256,
            &self.index,
            &self.source_name,
            &self.path,
        )?;
        Ok(())
    }

    /// Every record, in index order.
    pub(crate) fn all(&self) -> Result<Vec<BinaryPackage>, Damaged> {
        self.snap.all(&self.text.reader(), self.source)
    }

    /// The records named in `names`, in index order.
    pub(crate) fn named(&self, names: &[&str]) -> Result<Vec<BinaryPackage>, Damaged> {
        let mut at: Vec<u32> = names.iter().flat_map(|n| self.snap.named(n)).collect();
        at.sort_unstable();
        at.dedup();
        at.into_iter()
            .map(|i| self.snap.build(i, &self.text.reader(), self.source))
            .collect()
    }
}

/// Parses `text` (validating every stanza), stores its snapshot and
/// returns it (read from the encoded bytes: the parsed records are dropped).
fn parse_and_store(
    cache: &Cache,
    text: &IndexText,
    sha256: &str,
    index: &str,
    source_name: &str,
    path: &str,
) -> Result<Snapshot, ArchiveError> {
    let records = parse_plain(text, index, 0).map_err(|e| match e {
        DecodeError::Decompress(reason) => ArchiveError::Decompress {
            source_name: source_name.to_string(),
            path: path.to_string(),
            reason,
        },
        DecodeError::Packages(error) => ArchiveError::Packages {
            source_name: source_name.to_string(),
            error,
        },
    })?;
    let len = (**text).as_ref().len();
    let data = snapshot::encode(&records, len);
    drop(records);
    cache.store_snapshot(sha256, &data)?;
    Snapshot::open(Arc::new(data), len).ok_or_else(|| ArchiveError::Decompress {
        source_name: source_name.to_string(),
        path: path.to_string(),
        reason: "internal: a snapshot just encoded does not read back".into(),
    })
}

/// [`IndexView::open`], then the records named in `names` (the lock audit
/// wants a few hundred names out of 70k), parsing the text again if the
/// snapshot turns out damaged.
#[allow(clippy::too_many_arguments)]
pub(super) fn records_named(
    cache: &Cache,
    text: &Plain,
    hash: &FileHash,
    index: &str,
    source_name: &str,
    path: &str,
    source: usize,
    names: &[&str],
) -> Result<Vec<BinaryPackage>, ArchiveError> {
    let mut view = IndexView::open(cache, text.clone(), hash, index, source_name, path, source)?;
    match view.named(names) {
        Ok(records) => Ok(records),
        Err(Damaged) => {
            view.rebuild(cache)?;
            view.named(names)
                .map_err(|Damaged| ArchiveError::Decompress {
                    source_name: source_name.to_string(),
                    path: path.to_string(),
                    reason: "internal: a snapshot just encoded is damaged".into(),
                })
        }
    }
}
