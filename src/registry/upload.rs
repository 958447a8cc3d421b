//! Blob uploads: HEAD first, then a cross-repository mount, then a
//! monolithic PUT or a chunked PATCH upload that resumes from the registry's
//! offset after a failure; the digest is checked against the reply.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use super::RegistryError;
use super::body::Body;
use super::client::Client;
use super::transport::{Method, Request, Response};

/// Times a chunked upload resumes from the registry's offset after a failure.
const RESUMES: u32 = 3;

/// Where a blob's bytes come from.
#[derive(Debug, Clone)]
pub enum BlobSource {
    /// A file on disk.
    File(PathBuf),
    /// Bytes in memory.
    Bytes(Vec<u8>),
}

impl BlobSource {
    /// Its length: a file's as it is now.
    fn len(&self) -> Result<u64, RegistryError> {
        match self {
            BlobSource::Bytes(b) => Ok(b.len() as u64),
            BlobSource::File(p) => {
                fs::metadata(p)
                    .map(|m| m.len())
                    .map_err(|source| RegistryError::Io {
                        op: "reading",
                        path: p.clone(),
                        source,
                    })
            }
        }
    }

    /// `len` bytes from `start`, as a request body (a file's streamed).
    fn body(&self, start: u64, len: u64) -> Body {
        match self {
            BlobSource::Bytes(b) => {
                let s = (start as usize).min(b.len());
                let e = (start.saturating_add(len) as usize).min(b.len());
                Body::Bytes(b[s..e].to_vec())
            }
            BlobSource::File(path) => Body::File {
                path: path.clone(),
                offset: start,
                len,
            },
        }
    }
}

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// Already in the repository (HEAD): nothing sent.
    Present,
    /// Mounted from another repository of the registry: nothing sent.
    Mounted,
    /// Uploaded, this many bytes.
    Uploaded(u64),
}

impl Client {
    /// Uploads a blob unless `repo` has it: HEAD, then a cross-repository
    /// mount from `mount_from` when given, then a monolithic or chunked upload.
    pub async fn push_blob(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        source: &BlobSource,
        mount_from: Option<&str>,
    ) -> Result<BlobOutcome, RegistryError> {
        if self.blob_exists(repo, digest, size).await? {
            return Ok(BlobOutcome::Present);
        }
        let have = source.len()?;
        if have != size {
            return Err(RegistryError::Invalid {
                url: self.t.url(&format!("{repo}/blobs/uploads/")).to_string(),
                reason: format!("blob {digest}: source has {have} bytes, {size} expected"),
            });
        }
        let mut url = self.t.url(&format!("{repo}/blobs/uploads/"));
        let mut req = Request::new(Method::Post, url.clone(), Self::scope(repo, true));
        if let Some(from) = mount_from.filter(|f| *f != repo) {
            url.query_pairs_mut()
                .append_pair("mount", digest)
                .append_pair("from", from);
            req = Request::new(Method::Post, url, Self::scope(repo, true));
            req.scopes.push(Self::scope(from, false));
        }
        let resp = self.t.send(&req).await?;
        match resp.status {
            201 => {
                self.check_reply_digest(&resp, digest)?;
                return Ok(BlobOutcome::Mounted);
            }
            202 => {}
            _ => return Err(self.fail("POST", resp).await),
        }
        let location = self.t.location(&resp)?;
        let sent = if size <= self.monolithic_limit {
            self.put_monolithic(repo, location, digest, size, source)
                .await?
        } else {
            self.put_chunked(repo, location, digest, size, source)
                .await?
        };
        Ok(BlobOutcome::Uploaded(sent))
    }

    async fn put_monolithic(
        &self,
        repo: &str,
        mut location: url::Url,
        digest: &str,
        size: u64,
        source: &BlobSource,
    ) -> Result<u64, RegistryError> {
        let body = source.body(0, size);
        location.query_pairs_mut().append_pair("digest", digest);
        let req = Request::new(Method::Put, location, Self::scope(repo, true))
            .header("content-type", "application/octet-stream")
            .body(body);
        let resp = self.t.send(&req).await?;
        if resp.status != 201 {
            return Err(self.digest_or_fail(resp, digest).await);
        }
        self.check_reply_digest(&resp, digest)?;
        self.uploaded.fetch_add(size, Ordering::Relaxed);
        self.progress.inc(size);
        Ok(size)
    }

    async fn put_chunked(
        &self,
        repo: &str,
        mut location: url::Url,
        digest: &str,
        size: u64,
        source: &BlobSource,
    ) -> Result<u64, RegistryError> {
        let mut offset = 0u64;
        let mut sent = 0u64;
        let mut resumes = 0;
        while offset < size {
            let len = (size - offset).min(self.chunk_size);
            let end = offset + len - 1;
            let req = Request::new(Method::Patch, location.clone(), Self::scope(repo, true))
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{offset}-{end}"))
                .body(source.body(offset, len));
            let resp = match self.t.send(&req).await {
                Ok(r) if r.status == 202 => r,
                Ok(r) if resumes < RESUMES && (r.status == 416 || r.status >= 500) => {
                    resumes += 1;
                    offset = self.upload_offset(repo, &location).await?;
                    continue;
                }
                Ok(r) => return Err(self.fail("PATCH", r).await),
                Err(e @ RegistryError::Http { .. }) if resumes < RESUMES => {
                    eprintln!("warning: {e}; resuming the upload of {digest}");
                    resumes += 1;
                    offset = self.upload_offset(repo, &location).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            location = self.t.location(&resp)?;
            sent += end + 1 - offset;
            self.uploaded.fetch_add(end + 1 - offset, Ordering::Relaxed);
            self.progress.inc(end + 1 - offset);
            offset = match resp.header("range").and_then(|r| parse_range_end(&r)) {
                Some(e) if e == end => end + 1,
                Some(e) => {
                    return Err(RegistryError::Invalid {
                        url: resp.url.to_string(),
                        reason: format!("registry holds bytes 0-{e} after a chunk ending at {end}"),
                    });
                }
                None => end + 1,
            };
        }
        location.query_pairs_mut().append_pair("digest", digest);
        let req = Request::new(Method::Put, location, Self::scope(repo, true));
        let resp = self.t.send(&req).await?;
        if resp.status != 201 {
            return Err(self.digest_or_fail(resp, digest).await);
        }
        self.check_reply_digest(&resp, digest)?;
        Ok(sent)
    }

    /// The next offset an interrupted upload continues from.
    async fn upload_offset(&self, repo: &str, location: &url::Url) -> Result<u64, RegistryError> {
        let req = Request::new(Method::Get, location.clone(), Self::scope(repo, true));
        let resp = self.t.send(&req).await?;
        if resp.status != 204 {
            return Err(self.fail("GET", resp).await);
        }
        Ok(resp
            .header("range")
            .and_then(|r| parse_range_end(&r))
            .map_or(0, |e| e + 1))
    }

    async fn digest_or_fail(&self, resp: Response, digest: &str) -> RegistryError {
        let url = resp.url.to_string();
        let status = resp.status;
        let detail = resp.detail().await;
        if detail.contains("DIGEST_INVALID") || detail.contains("SIZE_INVALID") {
            return RegistryError::Digest {
                url,
                expected: digest.to_string(),
                got: format!("the registry's hash of what it received ({detail})"),
            };
        }
        RegistryError::Status {
            method: "PUT",
            url,
            status,
            detail,
        }
    }
}

/// The end of a `Range: 0-N` (or `bytes=0-N`) header.
fn parse_range_end(r: &str) -> Option<u64> {
    let r = r.trim().trim_start_matches("bytes=");
    let (start, end) = r.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    end.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range_end("0-99"), Some(99));
        assert_eq!(parse_range_end("bytes=0-5"), Some(5));
        assert_eq!(parse_range_end("3-5"), None);
        assert_eq!(parse_range_end("junk"), None);
    }

    #[test]
    fn source_ranges() {
        let bytes = |b: Body| match b {
            Body::Bytes(b) => b,
            Body::File { .. } => panic!("bytes in memory stay in memory"),
        };
        let s = BlobSource::Bytes(b"abcdef".to_vec());
        assert_eq!(bytes(s.body(2, 3)), b"cde");
        assert_eq!(bytes(s.body(4, 10)), b"ef");
        assert_eq!(s.len().unwrap(), 6);
        let f = BlobSource::File("/nonexistent/blob".into());
        assert!(matches!(
            f.body(5, 7),
            Body::File {
                offset: 5,
                len: 7,
                ..
            }
        ));
        assert!(f.len().is_err(), "a missing file is an error, not 0 bytes");
    }
}
