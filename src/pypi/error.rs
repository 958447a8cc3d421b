//! Why resolving, fetching or installing the `[python]` layer failed.
//!
//! Failures of a library call are wrapped with what was being done to which
//! file, distribution or URL (`Context::with_context`, typed per source
//! error, see [`crate::core::context`]); what the index, a distribution or
//! the recipe gets wrong is [`PypiError::Invalid`], its message naming the
//! file, package or URL.

use std::io;

use crate::fetch::FetchError;
use crate::http::HttpError;
use crate::sandbox::SandboxError;

/// An error of the PyPI layer.
#[derive(Debug, thiserror::Error)]
pub enum PypiError {
    /// A file operation failed (in the image, the store, a distribution).
    #[error("{what}: {source}")]
    Io {
        /// What was done to which file.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A wheel (zip archive) could not be read.
    #[error("{what}: {source}")]
    Zip {
        /// Which distribution, and what of it.
        what: String,
        /// The underlying error.
        source: zip::result::ZipError,
    },
    /// JSON (an index page, the record of built wheels) could not be read.
    #[error("{what}: {source}")]
    Json {
        /// Which page or file.
        what: String,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A URL could not be formed or parsed.
    #[error("{what}: {source}")]
    Url {
        /// Which URL, from what.
        what: String,
        /// The underlying error.
        source: url::ParseError,
    },
    /// The image's Python version is not one PEP 508 markers can use.
    #[error("{what}: {source}")]
    Version {
        /// The version text.
        what: String,
        /// The underlying error.
        source: pep440_rs::VersionParseError,
    },
    /// An index request failed before an answer (connection, timeout).
    #[error("{url}: {message}")]
    Transfer {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The index answered with an error status.
    #[error("{url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: reqwest::StatusCode,
    },
    /// The sandbox could not run an sdist build.
    #[error("{what}")]
    Sandbox {
        /// Which build.
        what: String,
        /// Why.
        source: SandboxError,
    },
    /// The shared HTTP stack (client, runtime, body limits) failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// Storing the downloads failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The index, a distribution, the lock or the recipe is not what it must
    /// be; the message names it and, where there is one, the fix.
    #[error("{0}")]
    Invalid(String),
    /// A `[[python]]` entry of a lock is not a file of the index.
    #[error(transparent)]
    Audit(#[from] Box<super::audit::PythonAuditError>),
    /// A step failed (the cause follows in the chain).
    #[error("{what}")]
    Step {
        /// What was being done (`cannot solve `[python]` of `img``).
        what: String,
        /// Why.
        source: Box<PypiError>,
    },
}

impl PypiError {
    /// The index's error `status` for `url`.
    pub(crate) fn status(url: &url::Url, status: reqwest::StatusCode) -> PypiError {
        PypiError::Status {
            url: url.to_string(),
            status,
        }
    }

    /// The message and its causes on one line (what `{:#}` of anyhow
    /// shows), each cause left out when the text already says it: for
    /// errors that carry this one without being its `source()` chain.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(e) = cause {
            let text = e.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            cause = e.source();
        }
        out
    }
}

crate::core::context::error_context!(PypiError, refused: PypiError::Invalid, {
    io::Error => |what, source| PypiError::Io { what, source },
    zip::result::ZipError => |what, source| PypiError::Zip { what, source },
    serde_json::Error => |what, source| PypiError::Json { what, source },
    url::ParseError => |what, source| PypiError::Url { what, source },
    pep440_rs::VersionParseError => |what, source| PypiError::Version { what, source },
    SandboxError => |what, source| PypiError::Sandbox { what, source },
    PypiError => |what, source| PypiError::Step { what, source: Box::new(source) },
});

/// Returns a [`PypiError::Invalid`] with a `format!` message (the typed
/// counterpart of anyhow's `bail!`).
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::pypi::PypiError::Invalid(format!($($arg)*)))
    };
}
pub(crate) use invalid;

/// Errors of the PyPI layer.
pub type Result<T, E = PypiError> = std::result::Result<T, E>;
