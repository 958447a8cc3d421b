//! The cache of deflated chunks behind [`super::pargz`]: the compressed
//! bytes of every content-defined chunk of a gzip artifact, named by the
//! sha256 of the chunk's uncompressed bytes and the level.
//!
//! A rebuild that changes a few files deflates only the chunks around them
//! (what `gzip --rsyncable` makes possible, and why zsync and casync cut by
//! content): the other chunks are copied from here. An entry is never
//! trusted: it is inflated and compared with the chunk it stands for before
//! its bytes go into an artifact, so a damaged or planted entry costs a
//! recompression, never a wrong layer — unless this process wrote it (the
//! speculative pass of this build): then it must have the sha256 of the
//! bytes written, kept in memory: as sure, and one sha256 of the deflated
//! bytes instead of an inflate and a compare. Entries appear by rename.
//!
//! Each recipe's build records the chunks its artifacts used
//! (`RECIPE.keys`); [`ChunkCache::commit`] then removes every entry no
//! recipe's last build used (after a grace period, for builds running
//! side by side), so the cache holds about one compressed image per recipe.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use flate2::{Decompress, FlushDecompress, Status};
use sha2::{Digest, Sha256};

use crate::core::atomic::{Durability, write_atomic};

/// Layout version of the entries (in the directory name).
const LAYOUT: &str = "v1";
/// Entries younger than this survive a prune they are not listed in: another
/// build may be filling the cache with them right now.
const GRACE: Duration = Duration::from_secs(600);
/// What every piece ends with: the empty stored block of a sync flush.
const SYNC_TAIL: [u8; 4] = [0, 0, 0xff, 0xff];
/// An empty final block (fixed Huffman, end of block), appended when an
/// entry is checked so that the piece must end exactly on a block boundary.
pub(crate) const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// The sha256 of every entry this process wrote, by chunk key: an entry
/// read back with that digest is the piece deflated here.
static WRITTEN: Mutex<BTreeMap<ChunkKey, [u8; 32]>> = Mutex::new(BTreeMap::new());

/// The name of a chunk in the cache: sha256 of the level and the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChunkKey([u8; 32]);

impl ChunkKey {
    /// The key of `chunk` deflated at `level`.
    pub fn of(level: u32, chunk: &[u8]) -> ChunkKey {
        let mut h = Sha256::new();
        h.update(level.to_le_bytes());
        h.update(chunk);
        ChunkKey(h.finalize().into())
    }

    fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// A directory of deflated chunks, and the chunks this build used.
#[derive(Debug)]
pub struct ChunkCache {
    dir: PathBuf,
    recipe: String,
    used: Mutex<BTreeSet<ChunkKey>>,
}

impl ChunkCache {
    /// The cache under `cache_dir` (`@deflate/v1`), for a build of `recipe`.
    pub fn open(cache_dir: &Path, recipe: &str) -> io::Result<ChunkCache> {
        let dir = cache_dir.join("@deflate").join(LAYOUT);
        fs::create_dir_all(&dir)?;
        Ok(ChunkCache {
            dir,
            recipe: recipe.to_string(),
            used: Mutex::new(BTreeSet::new()),
        })
    }

    /// The directory holding the entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &ChunkKey) -> PathBuf {
        self.dir.join(key.hex())
    }

    /// Whether an entry for `key` exists (unchecked: for speculative work).
    pub(crate) fn has(&self, key: &ChunkKey) -> bool {
        self.path(key).is_file()
    }

    /// The deflated bytes of `chunk`, if an entry holds them and inflates to
    /// exactly `chunk`; the chunk is then counted as used by this build.
    pub(crate) fn get(&self, key: &ChunkKey, chunk: &[u8]) -> Option<Vec<u8>> {
        let piece = fs::read(self.path(key)).ok()?;
        let written = WRITTEN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied();
        let ours = written.is_some_and(|sha| <[u8; 32]>::from(Sha256::digest(&piece)) == sha);
        if !ours && !inflates_to(&piece, chunk) {
            return None;
        }
        self.mark(key);
        Some(piece)
    }

    /// Stores `piece` as the deflated `chunk` of `key` (best effort: a cache
    /// that cannot be written only costs time). `used`: it goes into an
    /// artifact of this build (not a speculative pass).
    pub(crate) fn put(&self, key: &ChunkKey, piece: &[u8], used: bool) {
        if used {
            self.mark(key);
        }
        if write_atomic(&self.path(key), piece, 0o644, Durability::Atomic).is_ok() {
            WRITTEN
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(*key, Sha256::digest(piece).into());
        }
    }

    fn mark(&self, key: &ChunkKey) {
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*key);
    }

    /// Records the chunks this build used as the recipe's, then removes the
    /// entries that no recipe's last build used (older than the grace
    /// period). Returns how many entries were removed.
    pub fn commit(&self) -> io::Result<usize> {
        let used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let mut list = String::with_capacity(used.len() * 65);
        for key in used.iter() {
            list.push_str(&key.hex());
            list.push('\n');
        }
        drop(used);
        let keys = self.dir.join(format!("{}.keys", self.recipe));
        write_atomic(&keys, list.as_bytes(), 0o644, Durability::Atomic)?;
        self.prune(SystemTime::now())
    }

    fn prune(&self, now: SystemTime) -> io::Result<usize> {
        let mut keep = BTreeSet::new();
        let mut entries = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".keys") {
                // A keys file that cannot be read keeps nothing alive; its
                // recipe's next build writes it again.
                if let Ok(text) = fs::read_to_string(entry.path()) {
                    keep.extend(text.lines().map(str::to_string));
                }
            } else if (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
                || (name.starts_with('.') && name.ends_with(".tmp"))
            {
                // Entries, and the temp files of a run killed while writing
                // one (never listed: removed once past the grace period).
                entries.push((name, entry.path()));
            }
        }
        let mut removed = 0;
        for (name, path) in entries {
            if keep.contains(&name) {
                continue;
            }
            let young = fs::symlink_metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() < GRACE);
            if !young && fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Whether `piece` followed by an empty final block is one complete raw
/// deflate stream of exactly `chunk`'s bytes, ending with a sync flush: then
/// it can stand between any two other such pieces.
///
/// Inflated through a small buffer compared with `chunk` as it fills, not
/// into a copy of the chunk: a step-only change checks every cached chunk
/// of the layer (~1,000 for r2lab-node), and a fresh half-megabyte buffer
/// each time is that many times 128 new pages to fault in and zero.
pub(crate) fn inflates_to(piece: &[u8], chunk: &[u8]) -> bool {
    if !piece.ends_with(&SYNC_TAIL) {
        return false;
    }
    let mut d = Decompress::new(false);
    let mut buf = [0u8; 32 << 10];
    let mut matched = 0;
    for (input, last) in [(piece, false), (&FINAL_BLOCK[..], true)] {
        let start = d.total_in();
        // Bounded: a round that neither consumes input nor produces output
        // fails, and output past the chunk's length fails.
        for _ in 0..=input.len() + chunk.len() / buf.len() + 2 {
            let at = (d.total_in() - start) as usize;
            let before = (d.total_in(), d.total_out());
            let status = match d.decompress(&input[at..], &mut buf, FlushDecompress::None) {
                Ok(s) => s,
                Err(_) => return false,
            };
            let made = (d.total_out() - before.1) as usize;
            if chunk.get(matched..matched + made) != Some(&buf[..made]) {
                return false;
            }
            matched += made;
            let consumed = (d.total_in() - start) as usize;
            if status == Status::StreamEnd {
                return last && consumed == input.len() && matched == chunk.len();
            }
            if (d.total_in(), d.total_out()) == before {
                return false;
            }
            if consumed == input.len() && made < buf.len() {
                // This input is used up and nothing more is pending.
                break;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn piece(data: &[u8]) -> Vec<u8> {
        let mut c = Compress::new(Compression::new(6), false);
        let mut out = Vec::with_capacity(data.len() + 1024);
        c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        out
    }

    #[test]
    fn only_a_piece_of_exactly_the_chunk_is_accepted() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let p = piece(&data);
        assert!(inflates_to(&p, &data));
        assert!(!inflates_to(&p, &data[1..]));
        let mut longer = data.clone();
        longer.push(1);
        assert!(!inflates_to(&p, &longer));
        // Compared to the last byte (the output comes in many rounds).
        let mut last = data.clone();
        *last.last_mut().unwrap() ^= 1;
        assert!(!inflates_to(&p, &last));
        assert!(inflates_to(&piece(b""), b""));
        assert!(!inflates_to(&piece(b""), b"x"));
        let mut damaged = p.clone();
        damaged[p.len() / 3] ^= 0x10;
        assert!(!inflates_to(&damaged, &data));
        // A final (BFINAL) piece cannot stand between two others.
        let mut c = Compress::new(Compression::new(6), false);
        let mut finished = Vec::with_capacity(data.len() + 1024);
        c.compress_vec(&data, &mut finished, FlushCompress::Finish)
            .unwrap();
        assert!(!inflates_to(&finished, &data));
    }

    #[test]
    fn get_checks_put_marks_commit_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::open(dir.path(), "r").unwrap();
        let (a, b) = (b"alpha ".repeat(1000), b"beta ".repeat(1000));
        let (ka, kb) = (ChunkKey::of(6, &a), ChunkKey::of(6, &b));
        assert_ne!(ka, ChunkKey::of(1, &a));
        assert!(cache.get(&ka, &a).is_none());
        cache.put(&ka, &piece(&a), true);
        cache.put(&kb, &piece(&b), false);
        assert!(cache.has(&kb));
        assert_eq!(cache.get(&ka, &a).unwrap(), piece(&a));
        // An entry holding another chunk's bytes is not used.
        fs::copy(cache.path(&kb), cache.path(&ka)).unwrap();
        assert!(cache.get(&ka, &a).is_none());
        cache.put(&ka, &piece(&a), true);
        // Young entries survive; old unlisted ones go (and a killed run's
        // temp file), listed ones stay.
        fs::write(cache.dir().join(format!(".{}.x1.tmp", ka.hex())), b"half").unwrap();
        assert_eq!(cache.commit().unwrap(), 0);
        let later = SystemTime::now() + GRACE + Duration::from_secs(1);
        assert_eq!(cache.prune(later).unwrap(), 2);
        assert!(cache.has(&ka) && !cache.has(&kb));
        let text = fs::read_to_string(cache.dir().join("r.keys")).unwrap();
        assert_eq!(text, format!("{}\n", ka.hex()));
    }

    #[test]
    fn an_entry_this_process_wrote_is_checked_by_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::open(dir.path(), "r").unwrap();
        let a = b"gamma ".repeat(1000);
        let ka = ChunkKey::of(6, &a);
        cache.put(&ka, &piece(&a), false);
        assert_eq!(cache.get(&ka, &a).unwrap(), piece(&a));
        // The record, not an inflate, decides for an entry written here:
        // bytes with the recorded digest are taken as they are ...
        let odd = b"not a deflate stream".to_vec();
        WRITTEN
            .lock()
            .unwrap()
            .insert(ka, Sha256::digest(&odd).into());
        fs::write(cache.path(&ka), &odd).unwrap();
        assert_eq!(cache.get(&ka, &a).unwrap(), odd);
        // ... and other bytes go through the inflate check, and fail it.
        fs::write(cache.path(&ka), b"planted").unwrap();
        assert!(cache.get(&ka, &a).is_none());
    }
}
