//! Parallel downloads with bounded retries and mirror fallback.
//!
//! Each blob is tried against its URLs in order; on each URL transient
//! failures (5xx, timeouts, dropped connections) are retried up to
//! [`Options::attempts`] times with exponential backoff, resuming the partial
//! file. A URL that cannot serve the blob (404, wrong bytes) moves on to the
//! next one at once. All blobs are attempted even when some fail; the errors
//! are reported together, each saying whether every URL answered "not
//! there" (404/410: [`Failed::gone`]), which is when a session may try the
//! snapshot archive.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use reqwest::Client;

use super::attempt::{self, Job, Next};
use super::progress::Progress;
use super::store::Store;
use super::{FetchError, Wanted};

/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Download settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Downloads in flight at once (at least 1).
    pub jobs: usize,
    /// Attempts per URL for transient failures (at least 1).
    pub attempts: u32,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
    /// Limit for any single read (no data for this long fails the attempt).
    pub read_timeout: Duration,
    /// Pause before the first retry; doubled for each further one.
    pub backoff: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            jobs: 8,
            attempts: 4,
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(30),
            backoff: Duration::from_millis(500),
        }
    }
}

/// What a download run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Blobs stored by this run.
    pub fetched: usize,
    /// Bytes received (including retried and discarded ones).
    pub bytes: u64,
}

/// A blob that could not be stored.
#[derive(Debug)]
pub struct Failed {
    /// The blob.
    pub wanted: Wanted,
    /// The last error.
    pub error: FetchError,
    /// Every URL answered 404/410 (or there was none): the blob is gone
    /// from these mirrors, as opposed to unreachable or served wrong.
    pub gone: bool,
}

/// The HTTP client used for blobs, with the timeouts from `options`.
pub fn client(options: &Options) -> Result<Client, FetchError> {
    crate::http::client(crate::http::Timeouts {
        connect: options.connect_timeout,
        read: options.read_timeout,
    })
    .map_err(FetchError::Client)
}

/// Runs [`fetch_all`] on the process's tokio runtime ([`crate::http::block_on`]).
pub fn fetch_blocking(
    store: &Store,
    wanted: Vec<Wanted>,
    options: &Options,
    progress: &Progress,
) -> Result<Report, FetchError> {
    crate::http::block_on(fetch_all(store, wanted, options, progress))
        .map_err(FetchError::Client)?
}

/// [`fetch_blocking`] with the failures one by one ([`fetch_all_detailed`]).
pub fn fetch_blocking_detailed(
    store: &Store,
    wanted: Vec<Wanted>,
    options: &Options,
    progress: &Progress,
) -> Result<(Report, Vec<Failed>), FetchError> {
    crate::http::block_on(fetch_all_detailed(store, wanted, options, progress))
        .map_err(FetchError::Client)?
}

/// Downloads every blob of `wanted` into `store`, `options.jobs` at a time.
/// Blobs already present are skipped. Fails with [`FetchError::Failed`]
/// listing every blob that could not be stored; the others are kept.
pub async fn fetch_all(
    store: &Store,
    wanted: Vec<Wanted>,
    options: &Options,
    progress: &Progress,
) -> Result<Report, FetchError> {
    let (report, failed) = fetch_all_detailed(store, wanted, options, progress).await?;
    if failed.is_empty() {
        return Ok(report);
    }
    let mut failures: Vec<FetchError> = failed.into_iter().map(|f| f.error).collect();
    // Completion order is arbitrary; a stable order makes messages comparable.
    failures.sort_by_cached_key(|e| e.to_string());
    Err(FetchError::Failed(failures))
}

/// [`fetch_all`], returning what could not be stored instead of failing:
/// `Err` only when the store or the HTTP client cannot be set up.
pub async fn fetch_all_detailed(
    store: &Store,
    wanted: Vec<Wanted>,
    options: &Options,
    progress: &Progress,
) -> Result<(Report, Vec<Failed>), FetchError> {
    store.create_dirs()?;
    let shared = Arc::new(Shared {
        store: store.clone(),
        client: client(options)?,
        options: options.clone(),
        progress: progress.clone(),
    });
    progress.set_total(wanted.len(), wanted.iter().map(|w| w.size).sum());
    let results: Vec<Outcome> = stream::iter(wanted)
        .map(|w| {
            let shared = Arc::clone(&shared);
            async move {
                let (package, copy) = (w.package.clone(), w.clone());
                tokio::spawn(fetch_one(shared, w))
                    .await
                    .unwrap_or_else(|e| {
                        let message = format!("download task failed: {e}");
                        let error = FetchError::Transfer {
                            package,
                            url: String::new(),
                            message,
                        };
                        (copy, Err((error, false)), 0)
                    })
            }
        })
        .buffer_unordered(options.jobs.max(1))
        .collect()
        .await;
    // The renames of the blobs fetched, made durable together.
    let shas: Vec<String> = (results.iter())
        .filter(|(_, r, _)| matches!(r, Ok(true)))
        .map(|(w, _, _)| w.sha256.clone())
        .collect();
    if !shas.is_empty() {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.sync_blob_dirs(shas.iter().map(String::as_str)))
            .await
            .expect("syncing directories does not panic");
    }
    let mut report = Report::default();
    let mut failed = Vec::new();
    for (wanted, result, bytes) in results {
        report.bytes += bytes;
        match result {
            Ok(true) => report.fetched += 1,
            Ok(false) => {}
            Err((error, gone)) => failed.push(Failed {
                wanted,
                error,
                gone,
            }),
        }
    }
    Ok((report, failed))
}

struct Shared {
    store: Store,
    client: Client,
    options: Options,
    progress: Progress,
}

/// What [`fetch_one`] returns.
type Outcome = (Wanted, Result<bool, (FetchError, bool)>, u64);

/// One blob: `Ok(true)` if downloaded, `Ok(false)` if already present,
/// else the last error and whether every URL said "not there"; with the
/// blob and the bytes received.
async fn fetch_one(shared: Arc<Shared>, wanted: Wanted) -> Outcome {
    let mut transferred = 0u64;
    let result = fetch_one_inner(&shared, &wanted, &mut transferred).await;
    (wanted, result, transferred)
}

async fn fetch_one_inner(
    shared: &Shared,
    wanted: &Wanted,
    transferred: &mut u64,
) -> Result<bool, (FetchError, bool)> {
    let store = &shared.store;
    if wanted.urls.is_empty() {
        let error = FetchError::Source {
            package: wanted.package.clone(),
            source_name: wanted.source.clone(),
            reason: "no live mirror to fetch it from".into(),
        };
        // No mirror has it: as gone as it gets.
        return Err((error, true));
    }
    let mut bar = shared.progress.start(wanted.label(), wanted.size);
    let mut last_error = None;
    // Whether every URL so far ended in "not there" (404/410).
    let mut gone = true;
    for url in &wanted.urls {
        let mut url_gone = false;
        for attempt in 0..shared.options.attempts.max(1) {
            if store.contains(&wanted.sha256, wanted.size) {
                // Another fetch (another process, a duplicate entry) stored it meanwhile.
                bar.done();
                return Ok(false);
            }
            let job = Job {
                store,
                wanted,
                url,
                bar: &mut bar,
                transferred,
            };
            let result = if url.scheme() == "file" {
                attempt::file(job).await
            } else {
                attempt::http(&shared.client, job).await
            };
            let failure = match result {
                Ok(()) => {
                    bar.done();
                    return Ok(true);
                }
                Err(failure) => failure,
            };
            let next = failure.next;
            last_error = Some(failure.error);
            match next {
                Next::Abort => return Err((last_error.expect("just set"), false)),
                Next::Mirror => break,
                Next::Gone => {
                    url_gone = true;
                    break;
                }
                Next::Retry if attempt + 1 < shared.options.attempts => {
                    tokio::time::sleep(backoff(shared.options.backoff, attempt)).await;
                }
                Next::Retry => {}
            }
        }
        gone &= url_gone;
    }
    Err((last_error.expect("at least one attempt was made"), gone))
}

/// `base * 2^attempt`, capped at [`MAX_BACKOFF`].
fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff(base, 0), base);
        assert_eq!(backoff(base, 3), Duration::from_millis(800));
        assert_eq!(backoff(base, 30), MAX_BACKOFF);
    }
}
