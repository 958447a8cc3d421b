//! sha256 digests, the one hash that names everything in the store, the
//! caches and the locks.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Whether `s` is a sha256 as stored: 64 lower-case hex digits (also what
/// keeps a hostile lock from naming a path outside the store).
pub fn valid_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lower-case hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// sha256 (lower-case hex) and size of a file's contents. Holes of a
/// sparse file (a disk image is mostly holes) are hashed from a zero buffer
/// instead of being read: the kernel would only zero-fill pages to copy.
pub fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let size = file.metadata()?.len();
    if hash_sparse(&file, size, &mut hasher)? {
        return Ok((hex::encode(hasher.finalize()), size));
    }
    let size = hash_reader(&mut file, &mut hasher)?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// A block of zeros to hash holes from.
static ZEROS: [u8; 256 * 1024] = [0; 256 * 1024];

/// Hashes the first `size` bytes of `file` extent by extent
/// (`SEEK_DATA`/`SEEK_HOLE`). `Ok(false)` when the filesystem cannot say
/// where the data is and nothing was hashed yet (then read it plainly).
fn hash_sparse(file: &File, size: u64, hasher: &mut Sha256) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let seek = |from: u64, whence: libc::c_int| -> io::Result<Option<u64>> {
        // SAFETY: lseek on an open descriptor; no memory is passed.
        let r = unsafe { libc::lseek(file.as_raw_fd(), from as libc::off_t, whence) };
        if r >= 0 {
            return Ok(Some(r as u64));
        }
        let e = io::Error::last_os_error();
        // ENXIO: no data at or after `from` (the rest is a hole).
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        Err(e)
    };
    let zeros = |hasher: &mut Sha256, mut n: u64| {
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            hasher.update(&ZEROS[..k]);
            n -= k as u64;
        }
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut pos = 0u64;
    while pos < size {
        let data = match seek(pos, libc::SEEK_DATA) {
            Ok(d) => d.unwrap_or(size).min(size),
            Err(e) if pos == 0 && e.raw_os_error() == Some(libc::EINVAL) => return Ok(false),
            Err(e) => return Err(e),
        };
        zeros(hasher, data - pos);
        if data == size {
            break;
        }
        let end = seek(data, libc::SEEK_HOLE)?.unwrap_or(size).min(size);
        if end <= data {
            return Err(io::Error::other("SEEK_HOLE went backwards"));
        }
        let mut at = data;
        while at < end {
            let want = (end - at).min(buf.len() as u64) as usize;
            let n = match file.read_at(&mut buf[..want], at) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was hashed",
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        pos = end;
    }
    Ok(true)
}

/// What identifies one version of a file's contents: device, inode, size,
/// and the modification and change times to the nanosecond (any write
/// moves the change time, a hard link shares all of them).
pub(crate) type Stamp = (u64, u64, u64, i64, i64, i64, i64);

/// Digests of files this process wrote or hashed (see [`remember`]).
static MEMO: std::sync::Mutex<BTreeMap<Stamp, String>> = std::sync::Mutex::new(BTreeMap::new());

pub(crate) fn stamp(meta: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    (
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    )
}

/// Records that the file at `path`, as it is now, hashes to `sha256`: the
/// writer of an artifact that hashed it while writing says so, and
/// [`hash_file_memo`] of the same file (or a hard link to it) does not read
/// it again. Best effort: nothing is recorded if `path` cannot be stat'ed.
pub fn remember(path: &Path, sha256: &str) {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.is_file()
    {
        let mut memo = MEMO.lock().unwrap_or_else(|e| e.into_inner());
        memo.insert(stamp(&meta), sha256.to_string());
    }
}

/// The sha256 recorded for the file at `path` as it is now, if any.
pub fn memoized(path: &Path) -> Option<(String, u64)> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let memo = MEMO.lock().unwrap_or_else(|e| e.into_inner());
    memo.get(&stamp(&meta)).map(|sha| (sha.clone(), meta.len()))
}

/// [`hash_file`], without reading a file this process has hashed or
/// written with a known digest since it last changed (see [`remember`]).
pub fn hash_file_memo(path: &Path) -> io::Result<(String, u64)> {
    if let Some(known) = memoized(path) {
        return Ok(known);
    }
    let before = std::fs::symlink_metadata(path)?;
    let (sha, size) = hash_file(path)?;
    // Only when nothing changed the file while it was read.
    if std::fs::symlink_metadata(path).is_ok_and(|after| stamp(&after) == stamp(&before)) {
        remember(path, &sha);
    }
    Ok((sha, size))
}

/// Feeds everything `reader` yields into `hasher`; returns the byte count.
pub fn hash_reader(reader: &mut impl Read, hasher: &mut Sha256) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_files_hash_as_their_bytes() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse");
        let f = File::create(&p).unwrap();
        // Holes before, between and after data; data across a buffer size.
        f.set_len(3 << 20).unwrap();
        f.write_all_at(&[7u8; 5000], 1 << 20).unwrap();
        f.write_all_at(&[9u8; 300_000], (2 << 20) - 100).unwrap();
        drop(f);
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(hash_file(&p).unwrap(), (sha256_hex(&bytes), 3 << 20));
        // All hole, and empty.
        for (name, len) in [("hole", 1u64 << 20), ("empty", 0)] {
            let q = dir.path().join(name);
            File::create(&q).unwrap().set_len(len).unwrap();
            let zeros = vec![0u8; len as usize];
            assert_eq!(hash_file(&q).unwrap(), (sha256_hex(&zeros), len));
        }
    }

    #[test]
    fn a_remembered_digest_is_used_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"one").unwrap();
        let real = sha256_hex(b"one");
        assert_eq!(hash_file_memo(&p).unwrap(), (real.clone(), 3));
        // A recorded digest is taken as is: the file is not read again.
        remember(&p, "recorded");
        assert_eq!(hash_file_memo(&p).unwrap().0, "recorded");
        // A hard link is the same file.
        let link = dir.path().join("link");
        std::fs::hard_link(&p, &link).unwrap();
        remember(&link, "recorded");
        assert_eq!(memoized(&p).unwrap().0, "recorded");
        // Any write changes the change time (and here the size): read again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, b"two!").unwrap();
        assert_eq!(hash_file_memo(&p).unwrap(), (sha256_hex(b"two!"), 4));
        assert_eq!(memoized(&link).unwrap().0, sha256_hex(b"two!"));
    }
}
