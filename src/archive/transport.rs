//! Getting bytes from http, https and file URLs, with timeouts, bounded
//! retries and a progress display.
//!
//! Nothing here is trusted: callers verify every byte against a signature or
//! a signed hash before use.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::Semaphore;
use url::Url;

use super::ArchiveError;
use crate::http::{self, Attempt, Retry, Timeouts};

/// Downloads running at once, across all sources.
const PARALLEL: usize = 6;

/// Outcome of a successful request.
pub(crate) enum Got {
    /// The body.
    Data(Vec<u8>),
    /// 404/410, or a missing local file: the caller may try another path.
    NotFound,
}

/// A shared downloader.
pub(crate) struct Transport {
    client: OnceLock<Result<reqwest::Client, String>>,
    slots: Semaphore,
    progress: ProgressBar,
}

impl Transport {
    /// A transport; progress goes to stderr unless `quiet` or stderr is not a terminal.
    pub(crate) fn new(quiet: bool) -> Transport {
        let progress = if quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {decimal_bytes} {decimal_bytes_per_sec} {wide_msg}",
                )
                .expect("static template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        };
        Transport {
            client: OnceLock::new(),
            slots: Semaphore::new(PARALLEL),
            progress,
        }
    }

    /// Clears the progress display.
    pub(crate) fn finish(&self) {
        self.progress.finish_and_clear();
    }

    /// The HTTP client, built on first use so that file-only and offline
    /// runs never touch TLS setup.
    fn client(&self) -> Result<&reqwest::Client, ArchiveError> {
        self.client
            .get_or_init(|| http::client(Timeouts::default()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| ArchiveError::Setup(format!("HTTP client: {e}")))
    }

    /// Fetches `url`. `max_size`, when known from a signed Release, bounds
    /// the body so that a hostile mirror cannot exhaust memory.
    pub(crate) async fn get(&self, url: &Url, max_size: Option<u64>) -> Result<Got, ArchiveError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| ArchiveError::Setup(e.to_string()))?;
        self.progress.set_message(url.to_string());
        match url.scheme() {
            "file" => self.get_file(url).await,
            "http" | "https" => self.get_http(url, max_size).await,
            other => Err(ArchiveError::Download {
                url: url.to_string(),
                reason: format!("unsupported scheme `{other}`"),
            }),
        }
    }

    async fn get_file(&self, url: &Url) -> Result<Got, ArchiveError> {
        let path = url.to_file_path().map_err(|()| ArchiveError::Download {
            url: url.to_string(),
            reason: "not a local file path".into(),
        })?;
        match tokio::fs::read(&path).await {
            Ok(data) => {
                self.progress.inc(data.len() as u64);
                Ok(Got::Data(data))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Got::NotFound),
            Err(error) => Err(ArchiveError::Read { path, error }),
        }
    }

    async fn get_http(&self, url: &Url, max_size: Option<u64>) -> Result<Got, ArchiveError> {
        let client = self.client()?;
        let (result, attempts) = Retry::default()
            .run(|_| async {
                match self.try_http(client, url, max_size).await {
                    Ok(got) => Attempt::Done(Ok(got)),
                    Err(Failure::Final(reason)) => Attempt::Done(Err((reason, false))),
                    Err(Failure::Transient(reason)) => Attempt::Transient((reason, true)),
                }
            })
            .await;
        result.map_err(|(reason, transient)| ArchiveError::Download {
            url: url.to_string(),
            reason: if transient {
                format!("{reason} (after {attempts} attempts)")
            } else {
                reason
            },
        })
    }

    async fn try_http(
        &self,
        client: &reqwest::Client,
        url: &Url,
        max_size: Option<u64>,
    ) -> Result<Got, Failure> {
        let mut resp = client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| Failure::Transient(http::describe(&e)))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
            return Ok(Got::NotFound);
        }
        if http::is_transient(status) {
            return Err(Failure::Transient(format!("HTTP {status}")));
        }
        if !status.is_success() {
            return Err(Failure::Final(format!("HTTP {status}")));
        }
        let too_big = |n: u64| max_size.is_some_and(|max| n > max);
        if let Some(len) = resp.content_length().filter(|&n| too_big(n)) {
            return Err(Failure::Final(format!(
                "server announces {len} bytes, more than the {} the signed Release lists",
                max_size.unwrap_or_default()
            )));
        }
        let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0).min(1 << 28) as usize);
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| Failure::Transient(http::describe(&e)))?
        {
            body.extend_from_slice(&chunk);
            self.progress.inc(chunk.len() as u64);
            if too_big(body.len() as u64) {
                return Err(Failure::Final(format!(
                    "body exceeds the {} bytes the signed Release lists",
                    max_size.unwrap_or_default()
                )));
            }
        }
        Ok(Got::Data(body))
    }
}

/// Why one attempt failed.
enum Failure {
    /// Worth retrying: timeouts, connection errors, 5xx, 429.
    Transient(String),
    /// Retrying would not help.
    Final(String),
}
