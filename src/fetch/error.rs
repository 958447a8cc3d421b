//! Why fetching, importing or maintaining the vendor store failed.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::store::MissingBlobs;

/// An error of the fetch stage. Every variant names what it was about: the
/// package, the URL, the file, the expected and the actual hash.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A local file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The bytes served do not hash to what the lock says; they were discarded.
    #[error(
        "{package}: {url} served the wrong content: expected sha256 {expected} ({expected_size} bytes), \
         got sha256 {actual} ({actual_size} bytes); the bytes were discarded"
    )]
    Mismatch {
        /// `name version architecture` of the package.
        package: String,
        /// Where the bytes came from.
        url: String,
        /// sha256 from the lock.
        expected: String,
        /// sha256 of what was received.
        actual: String,
        /// Size from the lock.
        expected_size: u64,
        /// Size of what was received (a prefix when the server sent too much).
        actual_size: u64,
    },
    /// The server announced a size other than the lock's; nothing was downloaded.
    #[error("{package}: {url} announces {announced} bytes but the lock says {expected} bytes")]
    WrongSize {
        /// `name version architecture` of the package.
        package: String,
        /// The URL.
        url: String,
        /// Size from the lock.
        expected: u64,
        /// Content-Length or file size seen.
        announced: u64,
    },
    /// The server answered with an error status.
    #[error("{package}: {url}: HTTP status {status}")]
    Status {
        /// `name version architecture` of the package.
        package: String,
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The transfer failed (connection, timeout, truncated body, busy temp file).
    #[error("{package}: {url}: {message}")]
    Transfer {
        /// `name version architecture` of the package.
        package: String,
        /// The URL.
        url: String,
        /// What went wrong, with the underlying cause.
        message: String,
    },
    /// A lock entry cannot be stored: its sha256 is not 64 lower-case hex digits.
    #[error("{package}: invalid sha256 `{sha256}` in the lock (expected 64 lower-case hex digits)")]
    BadHash {
        /// `name version architecture` of the package.
        package: String,
        /// The offending value.
        sha256: String,
    },
    /// No base URL could be found for a package's source.
    #[error("{package}: cannot locate source `{source_name}`: {reason}")]
    Source {
        /// `name version architecture` of the package.
        package: String,
        /// The recipe source name.
        source_name: String,
        /// Why (unknown source, no mirror configured, bad URL).
        reason: String,
    },
    /// The HTTP stack (client, runtime) could not be set up.
    #[error("{0}")]
    Client(#[source] crate::http::HttpError),
    /// `--offline` was given and some blobs are not in the store.
    #[error("{0:#}")]
    Offline(MissingBlobs),
    /// A lock under `locks/` could not be read, so `gc` cannot know what is in use.
    #[error("{reason}; gc removes nothing rather than guess which blobs are in use")]
    UnreadableLock {
        /// The lock file (or the missing locks directory).
        path: PathBuf,
        /// The parse or read error, naming the file.
        reason: String,
    },
    /// Every live mirror answered 404 for a blob, and its fallback (the
    /// snapshot archive) could not provide it either.
    #[error("{live}; then {label}: {reason}")]
    Fallback {
        /// The last live mirror's error.
        live: Box<FetchError>,
        /// The fallback tried (`snapshot 20240601T000000Z`).
        label: String,
        /// Why it did not work (its download error, or why it could not be located).
        reason: String,
    },
    /// Some blobs could not be fetched; the others were stored.
    #[error("{}", Failures(.0))]
    Failed(Vec<FetchError>),
}

impl FetchError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> FetchError {
        let path = path.into();
        move |source| FetchError::Io { path, source }
    }
}

/// Display helper: "N blob(s) could not be fetched:" then one line each.
struct Failures<'a>(&'a [FetchError]);

impl fmt::Display for Failures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} package file(s) could not be fetched:", self.0.len())?;
        for e in self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}
