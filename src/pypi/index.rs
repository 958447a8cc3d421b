//! The package index: PEP 691 JSON project pages and PEP 658/714 metadata
//! files over HTTP, with an on-disk cache under the index cache directory.
//!
//! ```text
//! <cache>/pypi/pages/<sha256 of URL>.json    page body + ETag + fetch time + max-age
//! <cache>/pypi/metadata/<file sha256>        METADATA of that distribution file
//! ```
//!
//! A page younger than its `Cache-Control: max-age` is used without a
//! request; an older one is revalidated (`If-None-Match`). Metadata is keyed
//! by the hash of the file it describes, so it never goes stale. `--offline`
//! uses whatever is cached. Entries appear by atomic rename.
//!
//! Nothing here is trusted beyond the index itself: metadata files are
//! checked against the hash the page gives, downloads against the file hash.
//! A cached page records the sha256 of its body and is checked against it
//! on every read (the lock audit of `[[python]]` relies on cached pages); one
//! that does not match is dropped and fetched again.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use url::Url;

use super::error::{Context, PypiError, Result, invalid};
use crate::core::atomic::{Durability, write_atomic};
use crate::core::digest::sha256_hex;

/// The PEP 691 media type asked for.
const JSON_TYPE: &str = "application/vnd.pypi.simple.v1+json";
/// Largest page or metadata body accepted (a hostile index cannot exhaust memory).
const MAX_PAGE: usize = 64 << 20;
/// Largest distribution downloaded to read its metadata.
const MAX_DIST: usize = 512 << 20;

/// One file of a project page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// File name (`grpcio-1.62.0-cp311-….whl`).
    pub filename: String,
    /// Absolute URL.
    pub url: Url,
    /// sha256 from the page (64 hex digits).
    pub sha256: String,
    /// Size, when the page gives it (API 1.1).
    pub size: Option<u64>,
    /// `requires-python`, as written.
    pub requires_python: Option<String>,
    /// Yanked (PEP 592).
    pub yanked: bool,
    /// A `.metadata` file exists (PEP 658/714), with its sha256 when given.
    pub metadata: Option<Option<String>>,
}

/// A project page.
#[derive(Debug, Clone, Default)]
pub struct ProjectPage {
    /// Its files, in page order.
    pub files: Vec<IndexFile>,
}

#[derive(Deserialize)]
struct RawPage {
    #[serde(default)]
    files: Vec<RawFile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: std::collections::BTreeMap<String, String>,
    size: Option<u64>,
    requires_python: Option<String>,
    #[serde(default)]
    yanked: serde_json::Value,
    core_metadata: Option<serde_json::Value>,
    dist_info_metadata: Option<serde_json::Value>,
}

/// Parses a PEP 691 page; relative file URLs are resolved against `page_url`.
pub fn parse_page(body: &[u8], page_url: &Url) -> Result<ProjectPage> {
    let raw: RawPage = serde_json::from_slice(body)
        .with_context(|| format!("{page_url}: not a PEP 691 JSON project page"))?;
    let mut files = Vec::new();
    for f in raw.files {
        // A file without a sha256 cannot be locked: leave it out.
        let Some(sha256) = f.hashes.get("sha256").map(|s| s.to_ascii_lowercase()) else {
            continue;
        };
        let url = page_url
            .join(&f.url)
            .with_context(|| format!("{page_url}: bad file URL `{}`", f.url))?;
        let metadata = match f.core_metadata.or(f.dist_info_metadata) {
            Some(serde_json::Value::Bool(true)) => Some(None),
            Some(serde_json::Value::Object(m)) => Some(
                m.get("sha256")
                    .and_then(|v| v.as_str())
                    .map(str::to_ascii_lowercase),
            ),
            _ => None,
        };
        files.push(IndexFile {
            filename: f.filename,
            url,
            sha256,
            size: f.size,
            requires_python: f.requires_python.filter(|s| !s.trim().is_empty()),
            yanked: match f.yanked {
                serde_json::Value::Bool(b) => b,
                serde_json::Value::String(_) => true,
                _ => false,
            },
            metadata,
        });
    }
    Ok(ProjectPage { files })
}

#[derive(Serialize, Deserialize)]
struct CachedPage {
    url: String,
    etag: Option<String>,
    fetched: u64,
    max_age: u64,
    /// sha256 of `body`; a page without one (an older cache) is not used.
    #[serde(default)]
    sha256: String,
    body: String,
}

/// A client of one index (base URL ending in `/`).
pub struct IndexClient {
    base: Url,
    cache: PathBuf,
    offline: bool,
    http: reqwest::Client,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn max_age(headers: &reqwest::header::HeaderMap) -> u64 {
    headers
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|d| d.trim().strip_prefix("max-age=")?.parse().ok())
        })
        .unwrap_or(0)
}

impl IndexClient {
    /// A client for `base`, caching under `cache_dir/pypi`.
    pub fn new(base: Url, cache_dir: &Path, offline: bool) -> Result<IndexClient> {
        let http = crate::http::client(crate::http::Timeouts::default())?;
        Ok(IndexClient {
            base,
            cache: cache_dir.join("pypi"),
            offline,
            http,
        })
    }

    /// The index base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The project page URL of `project` (normalised name).
    pub fn page_url(&self, project: &str) -> Result<Url> {
        self.base
            .join(&format!("{project}/"))
            .with_context(|| format!("{}: the page of `{project}`", self.base))
    }

    /// The project page of `project` (normalised name); `None` when the index
    /// has no such project.
    pub async fn project(&self, project: &str) -> Result<Option<ProjectPage>> {
        let url = self.page_url(project)?;
        let path = self
            .cache
            .join("pages")
            .join(format!("{}.json", sha256_hex(url.as_str().as_bytes())));
        let cached: Option<CachedPage> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|c: &CachedPage| {
                c.url == url.as_str() && c.sha256 == sha256_hex(c.body.as_bytes())
            });
        if let Some(c) = &cached
            && (self.offline || now().saturating_sub(c.fetched) < c.max_age)
        {
            return parse_page(c.body.as_bytes(), &url).map(Some);
        }
        if self.offline {
            invalid!("offline: {url} is not in the index cache; run once without --offline");
        }
        let mut req = self.http.get(url.clone()).header("Accept", JSON_TYPE);
        if let Some(etag) = cached.as_ref().and_then(|c| c.etag.as_deref()) {
            req = req.header("If-None-Match", etag);
        }
        let resp = send(req, &url).await?;
        let status = resp.status();
        let age = max_age(resp.headers());
        if status == reqwest::StatusCode::NOT_MODIFIED
            && let Some(mut c) = cached
        {
            c.fetched = now();
            c.max_age = age;
            self.store_page(&path, &c);
            return parse_page(c.body.as_bytes(), &url).map(Some);
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(PypiError::status(&url, status));
        }
        let etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = body(resp, &url, MAX_PAGE).await?;
        let page = parse_page(&body, &url)?;
        let c = CachedPage {
            url: url.to_string(),
            etag,
            fetched: now(),
            max_age: age,
            sha256: sha256_hex(&body),
            body: String::from_utf8(body)
                .map_err(|_| PypiError::Invalid(format!("{url}: not UTF-8")))?,
        };
        self.store_page(&path, &c);
        Ok(Some(page))
    }

    fn store_page(&self, path: &Path, c: &CachedPage) {
        // A cache that cannot be written only costs a later request.
        let _ = std::fs::create_dir_all(path.parent().expect("has parent"));
        let _ = write_atomic(
            path,
            &serde_json::to_vec(c).expect("plain data"),
            0o644,
            Durability::Atomic,
        );
    }

    /// The core metadata text of `file`: from the cache, else its `.metadata`
    /// file, else read out of the downloaded distribution.
    pub async fn metadata(&self, file: &IndexFile) -> Result<String> {
        let path = self.cache.join("metadata").join(&file.sha256);
        if let Ok(text) = std::fs::read_to_string(&path) {
            return Ok(text);
        }
        if self.offline {
            invalid!(
                "offline: the metadata of {} is not in the index cache",
                file.filename
            );
        }
        let text = match &file.metadata {
            Some(hash) => {
                let url = Url::parse(&format!("{}.metadata", file.url))
                    .with_context(|| format!("{}.metadata", file.url))?;
                let resp = send(self.http.get(url.clone()), &url).await?;
                if !resp.status().is_success() {
                    return Err(PypiError::status(&url, resp.status()));
                }
                let data = body(resp, &url, MAX_PAGE).await?;
                if let Some(h) = hash
                    && sha256_hex(&data) != *h
                {
                    invalid!("{url}: sha256 does not match the index page");
                }
                String::from_utf8_lossy(&data).into_owned()
            }
            None => {
                let data = self.download(file).await?;
                super::archive::metadata_from_dist(&file.filename, &data)?
            }
        };
        let _ = std::fs::create_dir_all(path.parent().expect("has parent"));
        let _ = write_atomic(&path, text.as_bytes(), 0o644, Durability::Atomic);
        Ok(text)
    }

    /// The size of the file at `url`, from a HEAD request's Content-Length.
    pub async fn size(&self, url: &Url) -> Result<u64> {
        if self.offline {
            invalid!("offline: the index page gave no size for {url}");
        }
        let resp = send(self.http.head(url.clone()), url).await?;
        if !resp.status().is_success() {
            return Err(PypiError::status(url, resp.status()));
        }
        resp.headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .with_context(|| format!("{url}: no Content-Length"))
    }

    /// Downloads `file` whole and checks its sha256.
    pub async fn download(&self, file: &IndexFile) -> Result<Vec<u8>> {
        let resp = send(self.http.get(file.url.clone()), &file.url).await?;
        if !resp.status().is_success() {
            return Err(PypiError::status(&file.url, resp.status()));
        }
        let data = body(resp, &file.url, MAX_DIST).await?;
        let got = sha256_hex(&data);
        if got != file.sha256 {
            invalid!(
                "{}: sha256 {got} does not match the index ({}); refusing it",
                file.filename,
                file.sha256
            );
        }
        Ok(data)
    }
}

/// Sends with the shared retry rule ([`crate::http::Retry`]): connection
/// errors, timeouts, 5xx and 429 are retried; the last reply is returned.
async fn send(req: reqwest::RequestBuilder, url: &Url) -> Result<reqwest::Response> {
    use crate::http::{Attempt, Retry, describe, is_transient};
    let (result, _) = Retry::default()
        .run(|_| async {
            match req.try_clone().expect("no streaming body").send().await {
                Ok(resp) if is_transient(resp.status()) => Attempt::Transient(Ok(resp)),
                Ok(resp) => Attempt::Done(Ok(resp)),
                Err(e) => Attempt::Transient(Err(PypiError::Transfer {
                    url: url.to_string(),
                    message: describe(&e),
                })),
            }
        })
        .await;
    // A transient reply that ran out of attempts is still a reply: the
    // caller reports its status.
    match result {
        Ok(resp) | Err(Ok(resp)) => Ok(resp),
        Err(Err(e)) => Err(e),
    }
}

async fn body(resp: reqwest::Response, url: &Url, max: usize) -> Result<Vec<u8>> {
    Ok(crate::http::read_body(resp, url, max as u64, |_| {}).await?)
}
