//! Reading locks: serde via toml, with `file:line:col` errors and a version
//! check that runs before the strict parse.

use std::io;
use std::path::Path;

use super::{LOCK_VERSION, Lockfile};
use crate::recipe::line_col;

/// Why a lock could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The file could not be read.
    #[error("{file}: cannot read lock: {error}")]
    Io {
        /// The lock file.
        file: String,
        /// The underlying error.
        error: io::Error,
    },
    /// The text is not a valid lock.
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        /// The lock file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The lock was written by a newer imgbuild.
    #[error(
        "{file}: lock format version {found} is newer than this imgbuild supports ({supported}); \
         upgrade imgbuild, or re-solve to write a version {supported} lock"
    )]
    TooNew {
        /// The lock file.
        file: String,
        /// The version in the file.
        found: u64,
        /// [`LOCK_VERSION`].
        supported: u32,
    },
}

/// Only the `version` key, read leniently first: a newer lock may have keys
/// this build rejects, and "upgrade imgbuild" is the useful message then.
#[derive(serde::Deserialize)]
struct VersionProbe {
    version: Option<toml::Spanned<toml::Value>>,
}

impl Lockfile {
    /// Parses lock text; `path` is only used to name the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Lockfile, LockError> {
        let file = path.display().to_string();
        let invalid = |span: std::ops::Range<usize>, message: String| {
            let (line, column) = line_col(text, span.start);
            LockError::Invalid {
                file: file.clone(),
                line,
                column,
                message,
            }
        };
        let toml_err =
            |e: toml::de::Error| invalid(e.span().unwrap_or(0..0), e.message().to_string());
        // One parse in the usual case; the lenient version probe (a second
        // parse) only when the lock fails or names a version not ours, so
        // that "upgrade imgbuild" wins over an unknown key of a newer format.
        let parsed: Result<Lockfile, _> = toml::from_str(text);
        if let Ok(lock) = &parsed
            && lock.version >= 1
            && lock.version <= LOCK_VERSION
        {
            return parsed.map_err(toml_err);
        }
        let probe: VersionProbe = toml::from_str(text).map_err(toml_err)?;
        if let Some(v) = &probe.version
            && let Some(n) = v.get_ref().as_integer()
        {
            if n > i64::from(LOCK_VERSION) {
                return Err(LockError::TooNew {
                    file,
                    found: n as u64,
                    supported: LOCK_VERSION,
                });
            }
            if n < 1 {
                return Err(invalid(
                    v.span(),
                    format!("invalid lock format version {n}"),
                ));
            }
        }
        parsed.map_err(toml_err)
    }

    /// Reads and parses the lock at `path`.
    pub fn read(path: &Path) -> Result<Lockfile, LockError> {
        // Bounded and regular-only, like every file a workspace hands us
        // (sonic-p4's lock is 150 kB).
        let text = crate::core::bounded::read_regular(path, crate::core::bounded::MAX_LOCK)
            .and_then(|b| {
                String::from_utf8(b).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error())
                })
            })
            .map_err(|error| LockError::Io {
                file: path.display().to_string(),
                error,
            })?;
        Lockfile::parse(&text, path)
    }
}
