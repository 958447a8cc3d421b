//! Remote archives: mirrors, signed indexes, verified caches.
//!
//! The trust chain is fail-closed: a source's `InRelease` must carry a valid
//! signature by a key in the source's keyring ([`verify`]); only the signed
//! text is parsed ([`release`]); every index is checked against the size and
//! sha256 listed there before it is decompressed or cached ([`fetch`]).
//! Where a named archive is served from is configuration ([`mirror`]), never
//! part of a recipe or a lock; so is the snapshot service that serves past
//! states of an archive ([`snapshot_archive`]).

pub mod audit;
mod cache;
mod decode;
pub mod fetch;
pub mod freshness;
pub mod kept;
pub mod mirror;
mod plain;
pub mod release;
mod select;
mod snapshot;
pub mod snapshot_archive;
mod transport;
pub mod verify;
mod window;
mod xz;

#[cfg(test)]
pub(crate) mod testutil;

pub use audit::{AuditReport, audit_lock};
pub use fetch::{FetchOptions, LoadedSource, load_sources, load_sources_for};
pub use freshness::Freshness;
pub use mirror::Mirrors;
pub use release::{FileHash, Release};
pub use select::Select;
pub use verify::{Keyring, Verified, verify_detached, verify_inrelease};

use std::path::PathBuf;

/// Everything that can go wrong while locating, fetching and verifying a
/// source's indexes. Each variant names the file, URL or source concerned.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A `--mirror` flag or `IMGBUILD_MIRROR_*` value is malformed.
    #[error("bad mirror setting `{setting}`: {reason}")]
    MirrorSetting {
        /// The flag or variable as given.
        setting: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A named archive has no configured mirror.
    #[error(
        "no mirror configured for archive `{archive}` (source `{source_name}`): pass --mirror {archive}=URL or set {env_var}=URL"
    )]
    NoMirror {
        /// Archive name (`debian`).
        archive: String,
        /// Recipe source that asked for it.
        source_name: String,
        /// The environment variable that would configure it.
        env_var: String,
    },
    /// A source is to be read at a snapshot, but no snapshot service is configured.
    #[error(
        "source `{source_name}` is to be read at snapshot {timestamp}, but no snapshot service is configured: pass --mirror snapshot=URL or set IMGBUILD_MIRROR_SNAPSHOT=URL"
    )]
    NoSnapshotService {
        /// Recipe source.
        source_name: String,
        /// The snapshot timestamp asked for.
        timestamp: String,
    },
    /// A snapshot was asked for a source that has a literal `url`.
    #[error(
        "source `{source_name}` has a literal url; a snapshot can only be taken of a named archive (`archive = \"…\"`)"
    )]
    SnapshotOfUrl {
        /// Recipe source.
        source_name: String,
    },
    /// A URL written in a recipe cannot be used.
    #[error("source `{source_name}`: bad URL `{url}`: {reason}")]
    BadUrl {
        /// Recipe source.
        source_name: String,
        /// The URL as written.
        url: String,
        /// Why it is unusable.
        reason: String,
    },
    /// Reading a local file (apt configuration, keyring, `file://` URL) failed.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A keyring file holds no usable public key or cannot be parsed.
    #[error("keyring {}: {reason}", path.display())]
    Keyring {
        /// The keyring file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A signed file failed verification (unsigned, bad or unknown signature,
    /// data outside the signed part).
    #[error("{what}: signature verification failed: {reason}")]
    Signature {
        /// The file or URL verified.
        what: String,
        /// Why it was refused.
        reason: String,
    },
    /// The signed Release text is malformed.
    #[error("{what}: bad Release file: {reason}")]
    Release {
        /// The file or URL it came from.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The Release does not list an index the recipe needs.
    #[error(
        "source `{source_name}`: the signed Release at {url} lists no {path} (nor .xz/.gz); check the suite, components and architectures"
    )]
    IndexMissing {
        /// Recipe source.
        source_name: String,
        /// Index path relative to the suite directory, without compression suffix.
        path: String,
        /// The InRelease URL.
        url: String,
    },
    /// A download failed (after retries, on every mirror).
    #[error("download failed: {url}: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// A downloaded file does not match the signed Release.
    #[error("{0}")]
    Mismatch(Box<Mismatch>),
    /// A verified index could not be decompressed or is not UTF-8.
    #[error("source `{source_name}`: cannot decompress {path}: {reason}")]
    Decompress {
        /// Recipe source.
        source_name: String,
        /// Index path relative to the suite directory.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A verified `Packages` index has a malformed stanza.
    #[error("source `{source_name}`: {error}")]
    Packages {
        /// Recipe source.
        source_name: String,
        /// The parse error (names the index and line).
        error: crate::core::package::PackagesError,
    },
    /// Writing to the cache failed.
    #[error("cache {}: {error}", path.display())]
    Cache {
        /// The cache file or directory.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// Offline mode needs a file that is not in the cache.
    #[error("source `{source_name}`: {what} is not cached; run without --offline")]
    NotCached {
        /// Recipe source.
        source_name: String,
        /// What is missing.
        what: String,
    },
    /// A verified Release is older than the lock's, expired, or dated in the
    /// future (see [`freshness`]).
    #[error("source `{source_name}` (suite `{suite}`): {what} refused: {reason}")]
    Freshness {
        /// Recipe source.
        source_name: String,
        /// Its suite.
        suite: String,
        /// The InRelease URL or cache file.
        what: String,
        /// Both dates and what to do.
        reason: String,
    },
    /// A lock does not match the signed indexes it names (see [`audit`]).
    #[error("{0}")]
    Audit(Box<audit::AuditError>),
    /// The async runtime or HTTP client could not be set up.
    #[error("cannot set up downloads: {0}")]
    Setup(String),
}

/// Details of a downloaded file that does not match the signed Release
/// (boxed in [`ArchiveError::Mismatch`] to keep the error small).
#[derive(Debug, thiserror::Error)]
#[error(
    "source `{source_name}`: {path} from {url} does not match the signed Release: expected {expected_size} bytes sha256 {expected_sha256}, got {actual_size} bytes sha256 {actual_sha256}; nothing was cached"
)]
pub struct Mismatch {
    /// Recipe source.
    pub source_name: String,
    /// Index path relative to the suite directory.
    pub path: String,
    /// Where it was downloaded from.
    pub url: String,
    /// sha256 listed in the Release.
    pub expected_sha256: String,
    /// Size listed in the Release.
    pub expected_size: u64,
    /// sha256 of what was received.
    pub actual_sha256: String,
    /// Size of what was received.
    pub actual_size: u64,
}
