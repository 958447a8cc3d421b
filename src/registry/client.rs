//! The distribution-spec operations imgbuild needs: blobs (HEAD, mount,
//! monolithic or chunked upload, verified download) and manifests (PUT with
//! the `OCI-Subject` answer, verified GET).
//!
//! Every digest the registry reports is checked against the bytes sent or
//! received; a registry that disagrees is an error, never trusted.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::RegistryError;
use super::auth::Credentials;
use super::transport::{Method, Request, Response, Transport, TransportOptions};

/// Largest manifest or index accepted (the distribution-spec suggests 4 MiB).
pub const MAX_MANIFEST: usize = 4 << 20;
/// Blobs up to this size go in one PUT; larger ones in chunks.
pub const DEFAULT_MONOLITHIC_LIMIT: u64 = 32 << 20;
/// Size of each PATCH of a chunked upload.
pub const DEFAULT_CHUNK: usize = 16 << 20;
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
    fn read_range(&self, start: u64, len: usize) -> Result<Vec<u8>, RegistryError> {
        match self {
            BlobSource::Bytes(b) => {
                let s = start as usize;
                Ok(b[s.min(b.len())..(s + len).min(b.len())].to_vec())
            }
            BlobSource::File(p) => {
                let io = |source| RegistryError::Io {
                    op: "reading",
                    path: p.clone(),
                    source,
                };
                let mut f = File::open(p).map_err(io)?;
                f.seek(SeekFrom::Start(start)).map_err(io)?;
                let mut buf = Vec::with_capacity(len);
                f.take(len as u64).read_to_end(&mut buf).map_err(io)?;
                Ok(buf)
            }
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

/// A manifest read from the registry, its digest checked.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// `Content-Type` of the reply (else the document's `mediaType`).
    pub media_type: String,
    /// `sha256:…` of the bytes.
    pub digest: String,
    /// The bytes as served.
    pub bytes: Vec<u8>,
}

/// The registry's answer to a manifest PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutManifest {
    /// `sha256:…` of the manifest (checked against the reply).
    pub digest: String,
    /// Whether the registry answered `OCI-Subject` (it keeps the referrers
    /// list itself; otherwise the client maintains the tag fallback).
    pub subject_indexed: bool,
    /// Whether the manifest was sent (false: it was already there).
    pub sent: bool,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A client for one registry.
pub struct Client {
    t: Transport,
    registry: String,
    uploaded: AtomicU64,
    /// Blobs up to this size are uploaded in one PUT.
    pub monolithic_limit: u64,
    /// PATCH size of chunked uploads.
    pub chunk_size: usize,
    /// Advanced by every byte uploaded (hidden unless set).
    progress: indicatif::ProgressBar,
}

impl Client {
    /// A client for `registry` (`host[:port]`) with `creds` (`None`: anonymous).
    pub fn new(
        registry: &str,
        opts: &TransportOptions,
        creds: Option<Credentials>,
    ) -> Result<Client, RegistryError> {
        Ok(Client {
            t: Transport::new(registry, opts, creds)?,
            registry: registry.to_string(),
            uploaded: AtomicU64::new(0),
            monolithic_limit: DEFAULT_MONOLITHIC_LIMIT,
            chunk_size: DEFAULT_CHUNK,
            progress: indicatif::ProgressBar::hidden(),
        })
    }

    /// Shows upload progress on `bar`.
    pub fn set_progress(&mut self, bar: indicatif::ProgressBar) {
        self.progress = bar;
    }

    /// The progress display (to print lines without tearing it).
    pub fn progress(&self) -> &indicatif::ProgressBar {
        &self.progress
    }

    /// Bytes of blobs and manifests sent so far.
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    /// The registry (`host[:port]`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    fn scope(repo: &str, push: bool) -> String {
        if push {
            format!("repository:{repo}:pull,push")
        } else {
            format!("repository:{repo}:pull")
        }
    }

    async fn fail(&self, method: &'static str, resp: Response) -> RegistryError {
        let url = resp.url.to_string();
        let status = resp.status;
        let detail = resp.detail().await;
        RegistryError::Status {
            method,
            url,
            status,
            detail,
        }
    }

    /// Checks the API root (`GET /v2/`), authenticating if asked: a wrong
    /// password fails here, before anything is uploaded.
    pub async fn ping(&self, repo: &str, push: bool) -> Result<(), RegistryError> {
        let req = Request::new(Method::Get, self.t.url(""), Self::scope(repo, push));
        let resp = self.t.send(&req).await?;
        match resp.status {
            200 => Ok(()),
            _ => Err(self.fail("GET", resp).await),
        }
    }

    /// Whether `repo` has the blob `digest` of `size` bytes.
    pub async fn blob_exists(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
    ) -> Result<bool, RegistryError> {
        let req = Request::new(
            Method::Head,
            self.t.url(&format!("{repo}/blobs/{digest}")),
            Self::scope(repo, false),
        );
        let resp = self.t.send(&req).await?;
        match resp.status {
            200 => {
                let len = resp
                    .header("content-length")
                    .and_then(|l| l.parse::<u64>().ok());
                if len.is_some_and(|l| l != size) {
                    return Err(RegistryError::Invalid {
                        url: resp.url.to_string(),
                        reason: format!(
                            "blob {digest} is {} bytes there, {size} here",
                            len.unwrap_or(0)
                        ),
                    });
                }
                Ok(true)
            }
            404 => Ok(false),
            _ => Err(self.fail("HEAD", resp).await),
        }
    }

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
        let body = source.read_range(0, size as usize)?;
        if body.len() as u64 != size {
            return Err(RegistryError::Invalid {
                url: location.to_string(),
                reason: format!(
                    "blob {digest}: source has {} bytes, {size} expected",
                    body.len()
                ),
            });
        }
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
            let len = (size - offset).min(self.chunk_size as u64) as usize;
            let chunk = source.read_range(offset, len)?;
            let end = offset + chunk.len() as u64 - 1;
            let req = Request::new(Method::Patch, location.clone(), Self::scope(repo, true))
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{offset}-{end}"))
                .body(chunk);
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

    fn check_reply_digest(&self, resp: &Response, digest: &str) -> Result<(), RegistryError> {
        match resp.header("docker-content-digest") {
            Some(d) if d != digest => Err(RegistryError::Digest {
                url: resp.url.to_string(),
                expected: digest.to_string(),
                got: d,
            }),
            _ => Ok(()),
        }
    }

    /// Whether `repo` has the manifest `digest`.
    pub async fn manifest_exists(&self, repo: &str, digest: &str) -> Result<bool, RegistryError> {
        let req = Request::new(
            Method::Head,
            self.t.url(&format!("{repo}/manifests/{digest}")),
            Self::scope(repo, false),
        )
        .header("accept", ACCEPT.join(", "));
        let resp = self.t.send(&req).await?;
        match resp.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.fail("HEAD", resp).await),
        }
    }

    /// The digest a tag points at (`None`: no such tag), from a HEAD.
    pub async fn tag_digest(&self, repo: &str, tag: &str) -> Result<Option<String>, RegistryError> {
        let req = Request::new(
            Method::Head,
            self.t.url(&format!("{repo}/manifests/{tag}")),
            Self::scope(repo, false),
        )
        .header("accept", ACCEPT.join(", "));
        let resp = self.t.send(&req).await?;
        match resp.status {
            200 => match resp.header("docker-content-digest") {
                Some(d) if super::reference::check_digest(&d).is_ok() => Ok(Some(d)),
                // No usable header: read the manifest and hash it.
                _ => Ok(self.get_manifest(repo, tag).await?.map(|m| m.digest)),
            },
            404 => Ok(None),
            _ => Err(self.fail("HEAD", resp).await),
        }
    }

    /// The referrers API's list for `digest` (`None` when the registry has
    /// no referrers API: any 404, 400 or 405).
    pub async fn referrers(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        let req = Request::new(
            Method::Get,
            self.t.url(&format!("{repo}/referrers/{digest}")),
            Self::scope(repo, false),
        )
        .header("accept", "application/vnd.oci.image.index.v1+json");
        let resp = self.t.send(&req).await?;
        match resp.status {
            200 => {
                let is_index = resp
                    .header("content-type")
                    .is_some_and(|c| c.starts_with("application/vnd.oci.image.index.v1+json"));
                let bytes = resp.bytes(MAX_MANIFEST).await?;
                Ok(is_index.then_some(bytes))
            }
            400 | 404 | 405 => Ok(None),
            _ => Err(self.fail("GET", resp).await),
        }
    }

    /// PUTs a manifest under `reference` (its digest, or a tag). With a
    /// digest reference, one already present is not sent again.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<PutManifest, RegistryError> {
        let digest = sha256_digest(bytes);
        if reference == digest && self.manifest_exists(repo, &digest).await? {
            return Ok(PutManifest {
                digest,
                subject_indexed: false,
                sent: false,
            });
        }
        let req = Request::new(
            Method::Put,
            self.t.url(&format!("{repo}/manifests/{reference}")),
            Self::scope(repo, true),
        )
        .header("content-type", media_type)
        .body(bytes.to_vec());
        let resp = self.t.send(&req).await?;
        if resp.status != 201 {
            return Err(self.fail("PUT", resp).await);
        }
        self.check_reply_digest(&resp, &digest)?;
        self.uploaded
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(PutManifest {
            subject_indexed: resp.header("oci-subject").is_some(),
            digest,
            sent: true,
        })
    }

    /// GETs a manifest by tag or digest (`None` when absent). By digest the
    /// bytes must hash to it; by tag they must hash to what the registry
    /// says in `Docker-Content-Digest`.
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<FetchedManifest>, RegistryError> {
        let req = Request::new(
            Method::Get,
            self.t.url(&format!("{repo}/manifests/{reference}")),
            Self::scope(repo, false),
        )
        .header("accept", ACCEPT.join(", "));
        let resp = self.t.send(&req).await?;
        match resp.status {
            200 => {}
            404 => return Ok(None),
            _ => return Err(self.fail("GET", resp).await),
        }
        let url = resp.url.to_string();
        let header_digest = resp.header("docker-content-digest");
        let content_type = resp.header("content-type");
        let bytes = resp.bytes(MAX_MANIFEST).await?;
        let digest = sha256_digest(&bytes);
        let expected = if reference.starts_with("sha256:") {
            Some(reference.to_string())
        } else {
            header_digest
        };
        if let Some(e) = expected
            && e != digest
        {
            return Err(RegistryError::Digest {
                url,
                expected: e,
                got: digest,
            });
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Typed {
            media_type: Option<String>,
        }
        let doc: Typed = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Invalid {
            url: url.clone(),
            reason: format!("manifest is not JSON: {e}"),
        })?;
        let media_type = doc
            .media_type
            .or(content_type)
            .ok_or_else(|| RegistryError::Invalid {
                url,
                reason: "manifest without a media type".into(),
            })?;
        Ok(Some(FetchedManifest {
            media_type,
            digest,
            bytes,
        }))
    }

    async fn blob_response(&self, repo: &str, digest: &str) -> Result<Response, RegistryError> {
        let req = Request::new(
            Method::Get,
            self.t.url(&format!("{repo}/blobs/{digest}")),
            Self::scope(repo, false),
        );
        let resp = self.t.send(&req).await?;
        if resp.status != 200 {
            return Err(self.fail("GET", resp).await);
        }
        Ok(resp)
    }

    /// A small blob's bytes (at most `limit`), checked against `digest`.
    pub async fn get_blob(
        &self,
        repo: &str,
        digest: &str,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        let resp = self.blob_response(repo, digest).await?;
        let url = resp.url.to_string();
        let bytes = resp.bytes(limit).await?;
        let got = sha256_digest(&bytes);
        if got != digest {
            return Err(RegistryError::Digest {
                url,
                expected: digest.to_string(),
                got,
            });
        }
        Ok(bytes)
    }

    /// Downloads a blob of `size` bytes to `dest`, checked against `digest`
    /// (a temp file next to `dest`, renamed into place only when it matches).
    pub async fn get_blob_to_file(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        dest: &Path,
    ) -> Result<(), RegistryError> {
        let resp = self.blob_response(repo, digest).await?;
        let url = resp.url.to_string();
        let dir = dest.parent().unwrap_or(Path::new("."));
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| RegistryError::Io { op, path, source }
        };
        let tmp = tempfile::Builder::new()
            .prefix(".imgbuild-pull-")
            .tempfile_in(dir)
            .map_err(io("creating a temp file in", dir))?;
        let mut w = super::HashWrite::new(BufWriter::with_capacity(1 << 20, tmp.as_file()));
        let n = resp.copy_to(&mut w, size, tmp.path()).await?;
        let (buf, got) = w.finish();
        buf.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .map_err(io("writing", tmp.path()))?;
        if got != digest || n != size {
            return Err(RegistryError::Digest {
                url,
                expected: format!("{digest} ({size} bytes)"),
                got: format!("{got} ({n} bytes)"),
            });
        }
        tmp.persist(dest).map_err(|e| RegistryError::Io {
            op: "renaming into place",
            path: dest.to_path_buf(),
            source: e.error,
        })?;
        Ok(())
    }
}

/// Manifest media types accepted on GET.
const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

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
        let s = BlobSource::Bytes(b"abcdef".to_vec());
        assert_eq!(s.read_range(2, 3).unwrap(), b"cde");
        assert_eq!(s.read_range(4, 10).unwrap(), b"ef");
    }
}
