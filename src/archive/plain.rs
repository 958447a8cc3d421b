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
use super::decode::{DecodeError, decompress, parse_plain};
use super::release::FileHash;
use super::snapshot;
use crate::core::digest::sha256_hex;
use crate::core::package::{BinaryPackage, IndexText};

/// Decompresses the verified index `compressed` (`path`, listed with `hash`)
/// and checks the result against the Release's uncompressed entry
/// `plain_hash` when there is one; caches it then.
pub(super) fn decompress_verified(
    cache: &Cache,
    source_name: &str,
    path: &str,
    hash: &FileHash,
    plain_hash: Option<&FileHash>,
    compressed: &[u8],
) -> Result<IndexText, ArchiveError> {
    let bad = |reason: String| ArchiveError::Decompress {
        source_name: source_name.to_string(),
        path: path.to_string(),
        reason,
    };
    let plain = decompress(path, compressed).map_err(|e| match e {
        DecodeError::Decompress(reason) => bad(reason),
        DecodeError::Packages(e) => bad(e.to_string()),
    })?;
    if let Some(want) = plain_hash {
        let got = sha256_hex(&plain);
        if plain.len() as u64 != want.size || got != want.sha256 {
            return Err(bad(format!(
                "the decompressed index ({} bytes, sha256 {got}) does not match the signed \
                 Release's entry for it ({} bytes, sha256 {})",
                plain.len(),
                want.size,
                want.sha256
            )));
        }
        cache.store_plain(&hash.sha256, &plain)?;
    }
    Ok(Arc::new(plain))
}

/// The records of the verified index text `text` (compressed file `hash`,
/// shown as `index`): from its snapshot when one fits, else parsed (and the
/// snapshot written). Snapshot fields are only an accelerator: the lock
/// audit re-reads every locked stanza from the verified text.
pub(super) fn records(
    cache: &Cache,
    text: &IndexText,
    hash: &FileHash,
    index: &str,
    source_name: &str,
    path: &str,
    source: usize,
) -> Result<Vec<BinaryPackage>, ArchiveError> {
    records_named(cache, text, hash, index, source_name, path, source, |_| {
        true
    })
}

/// [`records`], keeping only the records whose name passes `keep`.
#[allow(clippy::too_many_arguments)]
pub(super) fn records_named(
    cache: &Cache,
    text: &IndexText,
    hash: &FileHash,
    index: &str,
    source_name: &str,
    path: &str,
    source: usize,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<BinaryPackage>, ArchiveError> {
    if let Some(records) = cache
        .read_snapshot(&hash.sha256)
        .and_then(|snap| snapshot::decode_filtered(&snap, text, source, &keep))
    {
        return Ok(records);
    }
    let records = parse_plain(text, index, source).map_err(|e| match e {
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
    cache.store_snapshot(&hash.sha256, &snapshot::encode(&records))?;
    Ok(records.into_iter().filter(|r| keep(&r.name)).collect())
}
