//! The one place that speaks HTTP to registries (reqwest with rustls), so
//! the HTTP client can be swapped without touching the distribution logic.
//!
//! It adds authentication (anonymous first; on a 401, Basic or the
//! distribution token flow with the user's credentials), retries transient
//! failures with exponential backoff, and never reads more of a reply than
//! the caller allows: registry replies are untrusted input.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use url::Url;

use super::RegistryError;
use super::auth::{Challenge, Credentials, parse_challenge};
use super::body::Body;

/// Attempts per request: the first try plus three retries.
const ATTEMPTS: u32 = 4;
/// Delay before the first retry; doubled for each further one.
const BACKOFF: Duration = Duration::from_millis(250);
/// Most of an error reply kept for a message.
const MAX_ERROR_BODY: usize = 4 << 10;
/// Largest token reply accepted.
const MAX_TOKEN_REPLY: usize = 1 << 20;

/// HTTP methods used by the distribution API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct TransportOptions {
    /// Plain HTTP (only accepted for loopback hosts).
    pub insecure: bool,
    /// Extra trusted CA certificates (PEM), added to the system roots.
    pub ca_file: Option<PathBuf>,
}

/// A request to send.
pub(crate) struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(&'static str, String)>,
    /// Sent on every attempt.
    pub body: Option<Body>,
    /// Token scopes the request needs (`repository:NAME:pull,push`).
    pub scopes: Vec<String>,
}

impl Request {
    pub(crate) fn new(method: Method, url: Url, scope: String) -> Request {
        Request {
            method,
            url,
            headers: Vec::new(),
            body: None,
            scopes: vec![scope],
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Request {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn body(mut self, body: Body) -> Request {
        self.body = Some(body);
        self
    }
}

/// A reply whose body has not been read yet.
pub(crate) struct Response {
    pub status: u16,
    pub url: Url,
    inner: reqwest::Response,
}

impl Response {
    /// Where the reply came from after redirects, when that is not the
    /// request's URL.
    pub(crate) fn redirected_to(&self) -> Option<&Url> {
        Some(self.inner.url()).filter(|u| **u != self.url)
    }

    /// A header's value, if present and text.
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.inner
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The whole body, refusing more than `limit` bytes.
    pub(crate) async fn bytes(mut self, limit: usize) -> Result<Vec<u8>, RegistryError> {
        if self
            .inner
            .content_length()
            .is_some_and(|n| n > limit as u64)
        {
            return Err(RegistryError::TooLarge {
                url: self.url.to_string(),
                limit: limit as u64,
            });
        }
        let mut out = Vec::new();
        while let Some(chunk) = self
            .inner
            .chunk()
            .await
            .map_err(|e| http_err(&self.url, &e))?
        {
            if out.len() + chunk.len() > limit {
                return Err(RegistryError::TooLarge {
                    url: self.url.to_string(),
                    limit: limit as u64,
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Streams the body into `w`, refusing more than `limit` bytes; returns
    /// the byte count.
    pub(crate) async fn copy_to(
        mut self,
        w: &mut impl Write,
        limit: u64,
        path: &Path,
    ) -> Result<u64, RegistryError> {
        let mut n = 0u64;
        while let Some(chunk) = self
            .inner
            .chunk()
            .await
            .map_err(|e| http_err(&self.url, &e))?
        {
            n += chunk.len() as u64;
            if n > limit {
                return Err(RegistryError::TooLarge {
                    url: self.url.to_string(),
                    limit,
                });
            }
            w.write_all(&chunk).map_err(|source| RegistryError::Io {
                op: "writing",
                path: path.to_path_buf(),
                source,
            })?;
        }
        Ok(n)
    }

    /// A short text of the body for an error message.
    pub(crate) async fn detail(self) -> String {
        let mut inner = self.inner;
        let mut out = Vec::new();
        while let Ok(Some(chunk)) = inner.chunk().await {
            out.extend_from_slice(&chunk);
            if out.len() >= MAX_ERROR_BODY {
                out.truncate(MAX_ERROR_BODY);
                break;
            }
        }
        String::from_utf8_lossy(&out)
            .chars()
            .filter(|c| !c.is_control())
            .collect::<String>()
            .trim()
            .to_string()
    }
}

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// Blob downloads may be redirected to storage (a CDN, an object store): a
/// few hops, and never to plain http (except loopback with `--insecure`),
/// so a redirect cannot downgrade the transfer; reqwest drops the
/// `Authorization` header when the origin changes. The bytes are checked
/// against their digest wherever they come from.
fn redirect_policy(insecure: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            let msg = format!("more than {MAX_REDIRECTS} redirects");
            return attempt.error(msg);
        }
        let url = attempt.url();
        let loopback = url.host_str().is_some_and(super::reference::is_loopback);
        if url.scheme() == "https" || (insecure && loopback && url.scheme() == "http") {
            attempt.follow()
        } else {
            let msg = format!("redirect to `{url}` refused: not https");
            attempt.error(msg)
        }
    })
}

fn http_err(url: &Url, e: &reqwest::Error) -> RegistryError {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    RegistryError::Http {
        url: url.to_string(),
        reason: msg,
    }
}

/// What the registry asked for on its first 401.
#[derive(Debug, Clone)]
enum AuthState {
    /// No 401 seen yet: requests go out anonymously.
    Anonymous,
    Basic,
    Bearer,
}

/// An authenticated, retrying HTTP connection to one registry.
pub(crate) struct Transport {
    http: reqwest::Client,
    /// `https://host[:port]/` (or `http://` for a loopback test registry).
    base: Url,
    registry: String,
    creds: Option<Credentials>,
    insecure: bool,
    state: Mutex<AuthState>,
    /// Bearer tokens by their scope list.
    tokens: Mutex<HashMap<String, String>>,
}

impl Transport {
    /// A transport to `registry` (`host[:port]`).
    pub(crate) fn new(
        registry: &str,
        opts: &TransportOptions,
        creds: Option<Credentials>,
    ) -> Result<Transport, RegistryError> {
        let host = super::reference::host_of(registry);
        if opts.insecure && !super::reference::is_loopback(host) {
            return Err(RegistryError::Insecure {
                registry: registry.to_string(),
            });
        }
        let scheme = if opts.insecure { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{registry}/")).map_err(|e| {
            RegistryError::Reference {
                text: registry.to_string(),
                reason: e.to_string(),
            }
        })?;
        let mut builder = crate::http::builder(crate::http::Timeouts {
            connect: Duration::from_secs(10),
            // Registries may take a while to commit a large blob.
            read: Duration::from_secs(60),
        })
        .redirect(redirect_policy(opts.insecure));
        if let Some(ca) = &opts.ca_file {
            let pem = std::fs::read(ca).map_err(|source| RegistryError::Io {
                op: "reading",
                path: ca.clone(),
                source,
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| RegistryError::Config {
                    path: ca.clone(),
                    reason: format!("not a PEM certificate bundle: {e}"),
                })?;
            if certs.is_empty() {
                return Err(RegistryError::Config {
                    path: ca.clone(),
                    reason: "no certificate in the file".into(),
                });
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| http_err(&base, &e))?;
        Ok(Transport {
            http,
            base,
            registry: registry.to_string(),
            creds,
            insecure: opts.insecure,
            state: Mutex::new(AuthState::Anonymous),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// `BASE/v2/` + `path`.
    pub(crate) fn url(&self, path: &str) -> Url {
        self.base
            .join(&format!("v2/{path}"))
            .expect("registry paths are valid URL paths")
    }

    /// Resolves an upload `Location` against the registry; refuses one on
    /// another host (the credentials would go with it).
    pub(crate) fn location(&self, resp: &Response) -> Result<Url, RegistryError> {
        let loc = resp
            .header("location")
            .ok_or_else(|| RegistryError::Invalid {
                url: resp.url.to_string(),
                reason: "no Location header in the upload reply".into(),
            })?;
        let url = resp.url.join(&loc).map_err(|e| RegistryError::Invalid {
            url: resp.url.to_string(),
            reason: format!("bad Location `{loc}`: {e}"),
        })?;
        if url.origin() != self.base.origin() {
            return Err(RegistryError::Invalid {
                url: resp.url.to_string(),
                reason: format!("upload Location `{loc}` is not on {}", self.registry),
            });
        }
        Ok(url)
    }

    /// Sends `req`, authenticating and retrying as needed. Any status is
    /// returned except a 401 that credentials could not fix.
    pub(crate) async fn send(&self, req: &Request) -> Result<Response, RegistryError> {
        let mut auth_rounds = 0;
        let mut attempt = 0;
        loop {
            let mut b = self.http.request(
                reqwest::Method::from_bytes(req.method.name().as_bytes()).expect("static"),
                req.url.clone(),
            );
            for (k, v) in &req.headers {
                b = b.header(*k, v);
            }
            if let Some(h) = self.auth_header(&req.scopes) {
                b = b.header("authorization", h);
            }
            if let Some(body) = &req.body {
                // Stated, so that a streamed body is not sent chunked.
                b = b
                    .header("content-length", body.len().to_string())
                    .body(body.to_reqwest().await?);
            } else if matches!(req.method, Method::Put | Method::Post | Method::Patch) {
                b = b.header("content-length", "0");
            }
            let result = b.send().await;
            attempt += 1;
            let retry = match result {
                Err(e)
                    if attempt < ATTEMPTS
                        && (e.is_connect() || e.is_timeout() || e.is_request()) =>
                {
                    format!("{e}")
                }
                Err(e) => return Err(http_err(&req.url, &e)),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let resp = Response {
                        status,
                        url: req.url.clone(),
                        inner: resp,
                    };
                    if status == 401 && auth_rounds < 2 {
                        auth_rounds += 1;
                        let challenge = resp.header("www-authenticate");
                        let detail = resp.detail().await;
                        self.authenticate(req, challenge.as_deref(), auth_rounds, &detail)
                            .await?;
                        continue;
                    }
                    if status == 401 {
                        let detail = resp.detail().await;
                        return Err(self.refused(&detail));
                    }
                    if crate::http::is_transient(resp.inner.status()) && attempt < ATTEMPTS {
                        format!("HTTP {status}")
                    } else {
                        return Ok(resp);
                    }
                }
            };
            let delay = BACKOFF * 2u32.pow(attempt - 1);
            eprintln!(
                "warning: {} {} failed ({retry}); retrying in {:.1}s",
                req.method.name(),
                req.url,
                delay.as_secs_f64()
            );
            tokio::time::sleep(delay).await;
        }
    }

    fn refused(&self, detail: &str) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.registry.clone(),
            reason: match &self.creds {
                Some(c) => format!("the credentials for `{}` from {} were refused", c.username, c.origin),
                None => "it needs credentials and none were found (IMGBUILD_REGISTRY_USERNAME/IMGBUILD_REGISTRY_PASSWORD, $REGISTRY_AUTH_FILE or ~/.docker/config.json)".into(),
            },
            detail: detail.to_string(),
        }
    }

    fn auth_header(&self, scopes: &[String]) -> Option<String> {
        let state = self.state.lock().expect("auth state").clone();
        match state {
            AuthState::Anonymous => None,
            AuthState::Basic => self.creds.as_ref().map(Credentials::basic_header),
            AuthState::Bearer => self
                .tokens
                .lock()
                .expect("tokens")
                .get(&scopes.join(" "))
                .map(|t| format!("Bearer {t}")),
        }
    }

    /// Handles a 401: records the scheme and, for Bearer, fetches a token.
    async fn authenticate(
        &self,
        req: &Request,
        challenge: Option<&str>,
        round: u32,
        detail: &str,
    ) -> Result<(), RegistryError> {
        let challenge = challenge.and_then(parse_challenge);
        match challenge {
            Some(Challenge::Basic) => {
                if self.creds.is_none() || round > 1 {
                    return Err(self.refused(detail));
                }
                *self.state.lock().expect("auth state") = AuthState::Basic;
                Ok(())
            }
            Some(Challenge::Bearer { realm, service, .. }) => {
                let realm = Url::parse(&realm).map_err(|e| RegistryError::Invalid {
                    url: req.url.to_string(),
                    reason: format!("bad token realm `{realm}`: {e}"),
                })?;
                let plain_ok =
                    self.insecure && realm.host_str().is_some_and(super::reference::is_loopback);
                if realm.scheme() != "https" && !(realm.scheme() == "http" && plain_ok) {
                    return Err(RegistryError::Invalid {
                        url: req.url.to_string(),
                        reason: format!("token realm `{realm}` is not https"),
                    });
                }
                let key = req.scopes.join(" ");
                if round > 1 && self.tokens.lock().expect("tokens").contains_key(&key) {
                    return Err(self.refused(detail));
                }
                *self.state.lock().expect("auth state") = AuthState::Bearer;
                let token = self
                    .fetch_token(&realm, service.as_deref(), &req.scopes)
                    .await?;
                self.tokens.lock().expect("tokens").insert(key, token);
                Ok(())
            }
            None => Err(RegistryError::Unauthorized {
                registry: self.registry.clone(),
                reason: "401 without a Basic or Bearer challenge".into(),
                detail: detail.to_string(),
            }),
        }
    }

    async fn fetch_token(
        &self,
        realm: &Url,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String, RegistryError> {
        let mut url = realm.clone();
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let mut b = self.http.get(url.clone());
        if let Some(c) = &self.creds {
            b = b.header("authorization", c.basic_header());
        }
        let resp = b.send().await.map_err(|e| http_err(&url, &e))?;
        let status = resp.status().as_u16();
        let resp = Response {
            status,
            url: url.clone(),
            inner: resp,
        };
        if status == 401 || status == 403 {
            let detail = resp.detail().await;
            return Err(self.refused(&detail));
        }
        if status != 200 {
            let detail = resp.detail().await;
            return Err(RegistryError::Status {
                method: "GET",
                url: url.to_string(),
                status,
                detail,
            });
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let body = resp.bytes(MAX_TOKEN_REPLY).await?;
        let t: Token = serde_json::from_slice(&body).map_err(|e| RegistryError::Invalid {
            url: url.to_string(),
            reason: format!("token reply: {e}"),
        })?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| RegistryError::Invalid {
                url: url.to_string(),
                reason: "token reply has no usable `token`".into(),
            })
    }
}
