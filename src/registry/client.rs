//! The distribution-spec operations imgbuild needs: blobs (HEAD, verified
//! download; uploads are in [`super::upload`]) and manifests (PUT with the
//! `OCI-Subject` answer, verified GET).
//!
//! Every digest the registry reports is checked against the bytes sent or
//! received; a registry that disagrees is an error, never trusted.

use std::io::BufWriter;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

pub use super::upload::{BlobOutcome, BlobSource};

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

use sha2::{Digest, Sha256};

use super::RegistryError;
use super::auth::Credentials;
use super::body::Body;
use super::transport::{Method, Request, Response, Transport, TransportOptions};

/// Largest manifest or index accepted (the distribution-spec suggests 4 MiB).
pub const MAX_MANIFEST: usize = 4 << 20;
/// Blobs up to this size go in one PUT; larger ones in chunks.
pub const DEFAULT_MONOLITHIC_LIMIT: u64 = 32 << 20;
/// Most bytes of one PATCH of a chunked upload: by default the whole rest
/// of the blob, streamed from its file in one request (as skopeo does);
/// a registry that limits a request's size gets `--chunk-size`.
pub const DEFAULT_CHUNK: u64 = u64::MAX;

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
    pub(super) t: Transport,
    registry: String,
    pub(super) uploaded: AtomicU64,
    /// Blobs up to this size are uploaded in one PUT.
    pub monolithic_limit: u64,
    /// PATCH size of chunked uploads.
    pub chunk_size: u64,
    /// Advanced by every byte uploaded (hidden unless set).
    pub(super) progress: indicatif::ProgressBar,
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

    pub(super) fn scope(repo: &str, push: bool) -> String {
        if push {
            format!("repository:{repo}:pull,push")
        } else {
            format!("repository:{repo}:pull")
        }
    }

    pub(super) async fn fail(&self, method: &'static str, resp: Response) -> RegistryError {
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

    pub(super) fn check_reply_digest(
        &self,
        resp: &Response,
        digest: &str,
    ) -> Result<(), RegistryError> {
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
        .body(Body::Bytes(bytes.to_vec()));
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

    /// A small blob's bytes (at most `limit`), checked against `digest`;
    /// `None` when the repository does not have it (404).
    pub async fn get_blob_limited(
        &self,
        repo: &str,
        digest: &str,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        match self.get_blob(repo, digest, limit).await {
            Err(RegistryError::Status { status: 404, .. }) => Ok(None),
            r => r.map(Some),
        }
    }

    /// Streams the blob `digest` of `size` bytes into `w`, refusing a reply
    /// that announces or sends another size, or bytes that do not hash to
    /// `digest` (the caller discards what was written then). `Ok(false)`
    /// when the repository does not have the blob (404). `path` names `w`
    /// in errors.
    pub async fn get_blob_into(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        w: &mut impl std::io::Write,
        path: &Path,
    ) -> Result<bool, RegistryError> {
        let req = Request::new(
            Method::Get,
            self.t.url(&format!("{repo}/blobs/{digest}")),
            Self::scope(repo, false),
        );
        let resp = self.t.send(&req).await?;
        match resp.status {
            200 => {}
            404 => return Ok(false),
            _ => return Err(self.fail("GET", resp).await),
        }
        let url = match resp.redirected_to() {
            Some(to) => format!("{} (redirected to {to})", resp.url),
            None => resp.url.to_string(),
        };
        let announced = resp
            .header("content-length")
            .and_then(|l| l.parse::<u64>().ok());
        if let Some(n) = announced.filter(|n| *n != size) {
            return Err(RegistryError::Invalid {
                url,
                reason: format!("the blob announces {n} bytes, {size} expected"),
            });
        }
        let mut hw = super::HashWrite::new(w);
        let n = resp
            .copy_to(&mut hw, size, path)
            .await
            .map_err(|e| match e {
                RegistryError::TooLarge { limit, .. } => RegistryError::Invalid {
                    url: url.clone(),
                    reason: format!("the blob is longer than the {limit} bytes expected"),
                },
                e => e,
            })?;
        let (_, got) = hw.finish();
        if got != digest || n != size {
            return Err(RegistryError::Digest {
                url,
                expected: format!("{digest} ({size} bytes)"),
                got: format!("{got} ({n} bytes)"),
            });
        }
        Ok(true)
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
