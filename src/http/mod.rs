//! The one HTTP stack every network stage uses: Debian indexes
//! ([`crate::archive`]), store blobs ([`crate::fetch`]) and the Python index
//! ([`crate::pypi`]) and OCI registries ([`crate::registry`]).
//!
//! - [`client`]: a reqwest client with imgbuild's user agent, timeouts and
//!   TLS set-up (rustls with the ring provider);
//! - [`block_on`]: one tokio runtime for the whole process, so the stages do
//!   not each build their own;
//! - [`Retry`]: bounded retries with exponential backoff, the same rule for
//!   everyone (transient: connection errors, timeouts, 5xx, 429);
//! - [`read_body`]: a body read with a hard size bound, since every reply is
//!   hostile until its bytes are checked against a signed hash;
//! - [`describe`]: a reqwest error with the cause chain that holds the
//!   useful part ("connection refused", "operation timed out").
//!
//! Mirrors and their order are the callers' business (each stage knows
//! which paths a mirror can serve); this module only moves bytes.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use url::Url;

/// Why the HTTP stack itself could not be set up or a body read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The client or the runtime could not be built.
    #[error("setting up HTTP: {0}")]
    Setup(String),
    /// The body is larger than the bound the caller set.
    #[error("{url}: body larger than {max} bytes")]
    TooLarge {
        /// The URL read.
        url: String,
        /// The bound.
        max: u64,
    },
    /// The transfer failed part-way.
    #[error("{url}: {reason}")]
    Transfer {
        /// The URL read.
        url: String,
        /// What failed, with its causes.
        reason: String,
    },
}

/// Timeouts of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time to establish a connection.
    pub connect: Duration,
    /// Time without any byte received before a read fails.
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(30),
        }
    }
}

/// A client with imgbuild's user agent and the given timeouts. Cheap to
/// clone (it is a handle); build one per stage and share it.
pub fn client(timeouts: Timeouts) -> Result<reqwest::Client, HttpError> {
    builder(timeouts)
        .build()
        .map_err(|e| HttpError::Setup(describe(&e)))
}

/// The builder behind [`client`], for a stage that needs more (the
/// registry client adds a redirect limit and the user's CA file).
pub fn builder(timeouts: Timeouts) -> reqwest::ClientBuilder {
    // reqwest is built without a default crypto provider; install ring once
    // (an error only means some provider is installed already).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("imgbuild/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(timeouts.connect)
        .read_timeout(timeouts.read)
}

/// Runs `future` to completion on the process's one tokio runtime (built on
/// first use). Must not be called from inside that runtime's tasks.
pub fn block_on<F: Future>(future: F) -> Result<F::Output, HttpError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    let runtime = RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| HttpError::Setup(format!("tokio runtime: {e}")))?;
    Ok(runtime.block_on(future))
}

/// Whether a reply status is worth retrying: 5xx and 429.
pub fn is_transient(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

/// What one attempt of a [`Retry`] loop says.
#[derive(Debug)]
pub enum Attempt<T, E> {
    /// Done (successfully or not, retrying would not change it).
    Done(Result<T, E>),
    /// Worth another try after a pause; `E` is reported if none is left.
    Transient(E),
}

/// Bounded retries with exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all (the first try included).
    pub attempts: u32,
    /// Pause before the first retry; doubled for each further one.
    pub backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 4,
            backoff: Duration::from_millis(500),
        }
    }
}

impl Retry {
    /// Runs `attempt(n)` for n = 1, 2, … until it is done or the attempts
    /// run out; returns the last outcome and the number of attempts made.
    pub async fn run<T, E, Fut>(&self, mut attempt: impl FnMut(u32) -> Fut) -> (Result<T, E>, u32)
    where
        Fut: Future<Output = Attempt<T, E>>,
    {
        let mut delay = self.backoff;
        let mut n = 1;
        loop {
            match attempt(n).await {
                Attempt::Done(result) => return (result, n),
                Attempt::Transient(e) if n >= self.attempts.max(1) => return (Err(e), n),
                Attempt::Transient(_) => {
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    n += 1;
                }
            }
        }
    }
}

/// Reads the body of `resp`, failing once it exceeds `max` bytes (a
/// `Content-Length` announcing more fails before any byte is read);
/// `on_chunk` sees the size of every chunk (for progress).
pub async fn read_body(
    mut resp: reqwest::Response,
    url: &Url,
    max: u64,
    mut on_chunk: impl FnMut(usize),
) -> Result<Vec<u8>, HttpError> {
    let too_large = || HttpError::TooLarge {
        url: url.to_string(),
        max,
    };
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0).min(1 << 28) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(|e| HttpError::Transfer {
        url: url.to_string(),
        reason: describe(&e),
    })? {
        body.extend_from_slice(&chunk);
        on_chunk(chunk.len());
        if body.len() as u64 > max {
            return Err(too_large());
        }
    }
    Ok(body)
}

/// A reqwest error with its cause chain (its own Display omits the causes,
/// which hold the useful part), without the URL (callers name it).
pub fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else {
        let own = e.to_string();
        own.split(" for url (").next().unwrap_or(&own).to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_stops_after_the_bound_and_backs_off() {
        let retry = Retry {
            attempts: 3,
            backoff: Duration::from_millis(1),
        };
        let mut seen = Vec::new();
        let (r, n): (Result<(), u32>, u32) = block_on(retry.run(|n| {
            seen.push(n);
            async move { Attempt::Transient(n) }
        }))
        .unwrap();
        assert_eq!((r, n), (Err(3), 3));
        assert_eq!(seen, [1, 2, 3]);
    }

    #[test]
    fn retry_returns_the_first_final_outcome() {
        let retry = Retry {
            attempts: 4,
            backoff: Duration::from_millis(1),
        };
        let (r, n): (Result<u32, ()>, u32) = block_on(retry.run(|n| async move {
            if n < 2 {
                Attempt::Transient(())
            } else {
                Attempt::Done(Ok(n))
            }
        }))
        .unwrap();
        assert_eq!((r, n), (Ok(2), 2));
    }

    #[test]
    fn statuses_worth_retrying() {
        assert!(is_transient(reqwest::StatusCode::BAD_GATEWAY));
        assert!(is_transient(reqwest::StatusCode::TOO_MANY_REQUESTS));
        assert!(!is_transient(reqwest::StatusCode::NOT_FOUND));
        assert!(!is_transient(reqwest::StatusCode::FORBIDDEN));
    }
}
