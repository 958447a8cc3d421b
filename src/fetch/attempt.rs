//! One attempt at getting one blob from one URL into the store.
//!
//! The bytes go to `tmp/<expected sha256>.part` while being hashed; the temp
//! file is renamed into `sha256/` only when size and hash match the lock. A
//! transfer that stops early keeps its `.part` for an HTTP Range resume (the
//! kept prefix is re-hashed first, so the final check covers every byte);
//! wrong bytes are deleted.

use std::fs::{OpenOptions, TryLockError};
use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use reqwest::{Client, StatusCode, header};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};
use url::Url;

use super::progress::BlobProgress;
use super::store::{Store, hash_reader};
use super::{FetchError, Wanted};
use crate::http::describe;

/// What the caller should do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Transient (5xx, timeout, dropped connection): try this URL again after a pause.
    Retry,
    /// This URL serves something else (wrong size or bytes): try the next mirror.
    Mirror,
    /// This URL does not have the blob (404, 410, no such local file): try
    /// the next mirror; when every mirror says so, the blob is gone from
    /// the live archive (see [`super::session`]'s fallback).
    Gone,
    /// A local problem (disk, permissions): give up on this blob.
    Abort,
}

/// A failed attempt.
#[derive(Debug)]
pub(crate) struct Failure {
    pub next: Next,
    pub error: FetchError,
}

fn fail(next: Next, error: FetchError) -> Failure {
    Failure { next, error }
}

/// Everything one attempt needs.
pub(crate) struct Job<'a> {
    pub store: &'a Store,
    pub wanted: &'a Wanted,
    pub url: &'a Url,
    pub bar: &'a mut BlobProgress,
    /// Bytes received over the wire, accumulated across attempts.
    pub transferred: &'a mut u64,
}

impl Job<'_> {
    fn transfer_error(&self, message: impl Into<String>) -> FetchError {
        FetchError::Transfer {
            package: self.wanted.package.clone(),
            url: self.url.to_string(),
            message: message.into(),
        }
    }

    fn local(&self, path: &Path) -> impl FnOnce(std::io::Error) -> Failure {
        let path = path.to_path_buf();
        move |e| fail(Next::Abort, FetchError::io(path)(e))
    }
}

/// The locked temp file with the hash of its current contents.
struct Part {
    path: PathBuf,
    file: tokio::fs::File,
    hasher: Sha256,
    len: u64,
}

impl Part {
    /// Opens and locks `tmp/<sha>.part`, re-hashing what an earlier attempt left.
    async fn open(job: &mut Job<'_>) -> Result<Part, Failure> {
        let path = job.store.part_path(&job.wanted.sha256);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(job.local(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let msg = format!("{} is being written by another fetch", path.display());
                return Err(fail(Next::Retry, job.transfer_error(msg)));
            }
            Err(TryLockError::Error(e)) => return Err(job.local(&path)(e)),
        }
        let size = job.wanted.size;
        let (file, hashed) = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            let len = file.metadata()?.len();
            if len > size {
                file.set_len(0)?;
                return Ok((file, (hasher, 0)));
            }
            let n = hash_reader(&mut file, &mut hasher)?;
            Ok::<_, std::io::Error>((file, (hasher, n)))
        })
        .await
        .expect("hashing task does not panic")
        .map_err(job.local(&path))?;
        let (hasher, len) = hashed;
        job.bar.reset();
        job.bar.advance(len);
        Ok(Part {
            path,
            file: tokio::fs::File::from_std(file),
            hasher,
            len,
        })
    }

    /// Empties the file (the server restarts from byte 0, or the prefix is unusable).
    async fn restart(&mut self, bar: &mut BlobProgress) -> std::io::Result<()> {
        self.file.set_len(0).await?;
        self.hasher = Sha256::new();
        self.len = 0;
        bar.reset();
        Ok(())
    }

    /// Deletes the file (its bytes are wrong).
    async fn discard(self) {
        drop(self.file);
        let _ = tokio::fs::remove_file(&self.path).await;
    }
}

/// Appends chunks to the part file through the hasher, refusing to grow past the lock's size.
struct Sink<'p> {
    out: BufWriter<&'p mut tokio::fs::File>,
    hasher: &'p mut Sha256,
    len: &'p mut u64,
    size: u64,
}

impl Sink<'_> {
    /// `Ok(false)` when the chunk would exceed the expected size (nothing is written then).
    async fn write(&mut self, chunk: &[u8]) -> std::io::Result<bool> {
        if *self.len + chunk.len() as u64 > self.size {
            self.hasher.update(chunk);
            *self.len += chunk.len() as u64;
            return Ok(false);
        }
        self.hasher.update(chunk);
        self.out.write_all(chunk).await?;
        *self.len += chunk.len() as u64;
        Ok(true)
    }
}

/// One HTTP(S) attempt; `Ok` once the blob is in the store.
pub(crate) async fn http(client: &Client, mut job: Job<'_>) -> Result<(), Failure> {
    let mut part = Part::open(&mut job).await?;
    let size = job.wanted.size;
    if part.len == size {
        // An earlier run was killed after the last byte but before the rename.
        return finish(part, &mut job, true).await;
    }
    let resumed_from = part.len;
    let mut request = client.get(job.url.clone());
    if resumed_from > 0 {
        request = request.header(header::RANGE, format!("bytes={resumed_from}-"));
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| fail(Next::Retry, job.transfer_error(describe(&e))))?;
    let status = response.status();
    match status {
        StatusCode::PARTIAL_CONTENT if resumed_from > 0 => {
            let range = response.headers().get(header::CONTENT_RANGE);
            match range.and_then(|v| parse_content_range(v.to_str().ok()?)) {
                Some((start, total)) if start == resumed_from && total == size => {}
                Some((_, total)) if total != size => {
                    return Err(fail(Next::Mirror, wrong_size(&job, total)));
                }
                _ => {
                    part.restart(job.bar).await.map_err(job.local(&part.path))?;
                    let msg = "unexpected Content-Range in a resumed download; restarting";
                    return Err(fail(Next::Retry, job.transfer_error(msg)));
                }
            }
        }
        StatusCode::OK => {
            if resumed_from > 0 {
                // The server ignored the Range header: take the whole body.
                part.restart(job.bar).await.map_err(job.local(&part.path))?;
            }
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            part.restart(job.bar).await.map_err(job.local(&part.path))?;
            let msg = "range not satisfiable; restarting from byte 0";
            return Err(fail(Next::Retry, job.transfer_error(msg)));
        }
        s => {
            let retry = s.is_server_error()
                || s == StatusCode::REQUEST_TIMEOUT
                || s == StatusCode::TOO_MANY_REQUESTS;
            let next = if retry {
                Next::Retry
            } else if s == StatusCode::NOT_FOUND || s == StatusCode::GONE {
                Next::Gone
            } else {
                Next::Mirror
            };
            let error = FetchError::Status {
                package: job.wanted.package.clone(),
                url: job.url.to_string(),
                status: s.as_u16(),
            };
            return Err(fail(next, error));
        }
    }
    if let Some(announced) = response.content_length()
        && part.len + announced != size
    {
        return Err(fail(Next::Mirror, wrong_size(&job, part.len + announced)));
    }
    let start = part.len;
    part.file
        .seek(SeekFrom::Start(start))
        .await
        .map_err(job.local(&part.path))?;
    let mut sink = Sink {
        out: BufWriter::with_capacity(256 * 1024, &mut part.file),
        hasher: &mut part.hasher,
        len: &mut part.len,
        size,
    };
    let mut overflow = false;
    let mut broken = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                *job.transferred += chunk.len() as u64;
                if !sink.write(&chunk).await.map_err(job.local(&part.path))? {
                    overflow = true;
                    break;
                }
                job.bar.advance(chunk.len() as u64);
            }
            Ok(None) => break,
            Err(e) => {
                broken = Some(describe(&e));
                break;
            }
        }
    }
    // Keep what arrived (flushed and synced) so that the next attempt can resume.
    sink.out.flush().await.map_err(job.local(&part.path))?;
    if overflow {
        let error = mismatch(&job, part.hasher.clone(), part.len);
        part.discard().await;
        return Err(fail(Next::Mirror, error));
    }
    if let Some(message) = broken.or_else(|| {
        (part.len < size).then(|| format!("connection closed after {} of {size} bytes", part.len))
    }) {
        part.file.sync_data().await.map_err(job.local(&part.path))?;
        return Err(fail(Next::Retry, job.transfer_error(message)));
    }
    finish(part, &mut job, resumed_from > 0).await
}

/// One attempt from a `file://` mirror (a local copy, always from byte 0).
pub(crate) async fn file(mut job: Job<'_>) -> Result<(), Failure> {
    let source = job
        .url
        .to_file_path()
        .map_err(|()| fail(Next::Mirror, job.transfer_error("not a local file path")))?;
    let mut input = match tokio::fs::File::open(&source).await {
        Ok(f) => f,
        Err(e) => {
            let next = if e.kind() == std::io::ErrorKind::NotFound {
                Next::Gone
            } else {
                Next::Mirror
            };
            let msg = format!("cannot open {}: {e}", source.display());
            return Err(fail(next, job.transfer_error(msg)));
        }
    };
    let actual = input.metadata().await.map_err(job.local(&source))?.len();
    if actual != job.wanted.size {
        return Err(fail(Next::Mirror, wrong_size(&job, actual)));
    }
    let mut part = Part::open(&mut job).await?;
    part.restart(job.bar).await.map_err(job.local(&part.path))?;
    let mut sink = Sink {
        out: BufWriter::with_capacity(256 * 1024, &mut part.file),
        hasher: &mut part.hasher,
        len: &mut part.len,
        size: job.wanted.size,
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut overflow = false;
    loop {
        let n = input.read(&mut buf).await.map_err(job.local(&source))?;
        if n == 0 {
            break;
        }
        if !sink.write(&buf[..n]).await.map_err(job.local(&part.path))? {
            overflow = true;
            break;
        }
        job.bar.advance(n as u64);
    }
    sink.out.flush().await.map_err(job.local(&part.path))?;
    if overflow || part.len != job.wanted.size {
        let error = mismatch(&job, part.hasher.clone(), part.len);
        part.discard().await;
        return Err(fail(Next::Mirror, error));
    }
    finish(part, &mut job, false).await
}

/// Checks size and hash of a complete part; commits it or deletes it.
async fn finish(mut part: Part, job: &mut Job<'_>, resumed: bool) -> Result<(), Failure> {
    let actual = hex::encode(part.hasher.clone().finalize());
    if part.len != job.wanted.size || actual != job.wanted.sha256 {
        let error = mismatch(job, part.hasher.clone(), part.len);
        part.discard().await;
        // A resumed prefix may be what is wrong: a fresh download decides.
        let next = if resumed { Next::Retry } else { Next::Mirror };
        return Err(fail(next, error));
    }
    part.file.flush().await.map_err(job.local(&part.path))?;
    part.file.sync_all().await.map_err(job.local(&part.path))?;
    let path = part.path.clone();
    // Commit while still holding the lock, so no other fetch reopens the
    // name meanwhile; the directories are synced once the fetch is done.
    job.store
        .commit_deferred(&path, &job.wanted.sha256)
        .map_err(|e| fail(Next::Abort, e))?;
    drop(part);
    Ok(())
}

fn mismatch(job: &Job<'_>, hasher: Sha256, actual_size: u64) -> FetchError {
    FetchError::Mismatch {
        package: job.wanted.package.clone(),
        url: job.url.to_string(),
        expected: job.wanted.sha256.clone(),
        actual: hex::encode(hasher.finalize()),
        expected_size: job.wanted.size,
        actual_size,
    }
}

fn wrong_size(job: &Job<'_>, announced: u64) -> FetchError {
    FetchError::WrongSize {
        package: job.wanted.package.clone(),
        url: job.url.to_string(),
        expected: job.wanted.size,
        announced,
    }
}

/// `bytes START-END/TOTAL` → (START, TOTAL).
fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range("bytes 10-99/100"), Some((10, 100)));
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }
}
