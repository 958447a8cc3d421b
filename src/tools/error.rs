//! Why the tools tree could not be made or a tool failed.

use std::io;
use std::path::PathBuf;

use crate::pack::OutputError;
use crate::rootfs::RootfsError;
use crate::sandbox::SandboxError;

/// An error of the tools tree. Each names the recipe, the file or the
/// command it is about.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    /// The recipe's lock has no `[[tool]]`s.
    #[error(
        "recipe `{recipe}` needs a tools tree but its lock has no [[tool]] entries: \
         add `tools = [...]` to the recipe and run `imgbuild solve {recipe}`"
    )]
    NoTools {
        /// The recipe name.
        recipe: String,
    },
    /// A local file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was done to which file (`creating /x`).
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The tree could not be written to, or restored from, the cache.
    #[error(transparent)]
    Cache(#[from] OutputError),
    /// The cached tree could not be extracted.
    #[error("extracting the tools tree {} into {}", tar.display(), root.display())]
    Extract {
        /// The cached tar.
        tar: PathBuf,
        /// Where it was being extracted.
        root: PathBuf,
        /// Why.
        source: OutputError,
    },
    /// Unpacking the locked tools failed.
    #[error("assembling the tools tree of `{recipe}`")]
    Assemble {
        /// The recipe name.
        recipe: String,
        /// Why.
        source: Box<RootfsError>,
    },
    /// The sandbox could not run a tool.
    #[error("running `{command}` in the tools tree")]
    Sandbox {
        /// The command line.
        command: String,
        /// Why.
        source: SandboxError,
    },
    /// A tool ran and failed; its stderr is quoted.
    #[error("`{command}` (tools tree) {why}:\n{stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// How it ended (`exited with status 1`, …).
        why: String,
        /// Its standard error, trailing white space trimmed.
        stderr: String,
    },
}

impl ToolsError {
    /// A closure wrapping an `io::Error` with what was being done.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> ToolsError {
        let what = what.into();
        move |source| ToolsError::Io { what, source }
    }
}
