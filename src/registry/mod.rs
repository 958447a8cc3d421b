//! An OCI distribution-spec client (registry API v2) for publishing and
//! pulling images and artifacts.
//!
//! - [`reference`]: `HOST[:PORT]/REPO[:TAG][@DIGEST]`, always with a host;
//! - [`auth`]: credentials from the environment and auth files, challenges;
//! - `transport`: the only module doing HTTP (reqwest), with auth, retries
//!   and bounded replies;
//! - [`client`]: blobs and manifests, every digest checked (uploads in
//!   `upload`).
//!
//! The `oci-client` crate was evaluated first: it reads whole replies
//! without a bound, does not expose the `OCI-Subject` answer of a manifest
//! PUT (needed to choose between the referrers API and the tag fallback),
//! does not check the registry's reported digests and pulls a second `sha2`
//! and `chrono`; so this small client sits on the reqwest already used.

use std::io::{self, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

pub mod auth;
mod body;
pub mod client;
pub mod reference;
mod transport;
mod upload;

pub use auth::Credentials;
pub use client::{BlobOutcome, BlobSource, Client, FetchedManifest, PutManifest, sha256_digest};
pub use reference::Reference;
pub use transport::TransportOptions;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A malformed image reference.
    #[error("bad image reference `{text}`: {reason}")]
    Reference {
        /// The reference as given.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// Plain HTTP asked for a registry that is not on this machine.
    #[error("--insecure (plain http) is only allowed for loopback registries, not `{registry}`")]
    Insecure {
        /// The registry.
        registry: String,
    },
    /// The connection failed (after retries).
    #[error("{url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// The registry answered with an unexpected status.
    #[error("{method} {url}: HTTP {status}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Status {
        /// Request method.
        method: &'static str,
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The start of the reply body.
        detail: String,
    },
    /// Authentication failed.
    #[error("registry {registry} refused access: {reason}{}", if detail.is_empty() { String::new() } else { format!(" ({detail})") })]
    Unauthorized {
        /// The registry.
        registry: String,
        /// Why, naming where the credentials came from.
        reason: String,
        /// The registry's reply.
        detail: String,
    },
    /// A reply larger than allowed.
    #[error("{url}: reply larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The bound.
        limit: u64,
    },
    /// Bytes that do not hash to their digest.
    #[error("{url}: digest mismatch: expected {expected}, got {got}")]
    Digest {
        /// The URL.
        url: String,
        /// The expected digest.
        expected: String,
        /// What the bytes hash to (or the registry said).
        got: String,
    },
    /// A reply that breaks the protocol.
    #[error("{url}: {reason}")]
    Invalid {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A bad configuration file (auth file, CA bundle).
    #[error("{}: {reason}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A local file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// A writer that hashes what goes through it (sha256).
pub(crate) struct HashWrite<W> {
    inner: W,
    hasher: Sha256,
}

impl<W> HashWrite<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashWrite {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The inner writer and `sha256:<hex>` of everything written.
    pub(crate) fn finish(self) -> (W, String) {
        (
            self.inner,
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
        )
    }
}

impl<W: Write> Write for HashWrite<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
