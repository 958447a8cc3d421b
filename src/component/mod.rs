//! Components: software built from pinned source, hermetically, into the
//! image as generated Debian packages (the recipe's `[[component]]`).
//!
//! - [`git`]: the git mapping (`--mirror git:PREFIX=REPLACEMENT`,
//!   `IMGBUILD_MIRROR_GIT`) and fetching a revision with the host's git;
//! - [`source`]: a source as one deterministic tar (sorted, mtimes = commit
//!   time, owner 0, modes normalised, no `.git`), pinned by its sha256 and
//!   put into the vendor store only when it matches the lock;
//! - [`build`]: the build root (the locked build closure, configured with
//!   the closure's own dpkg), the `build` commands in the sandbox without
//!   network, the files collected from `DESTDIR`, cached by the hash of
//!   every input;
//! - [`package`]: the generated `.deb` (deterministic ar, control, md5sums,
//!   data);
//! - [`elf`]: the ELF check (every `DT_NEEDED` must resolve in the image);
//! - `tree`: unpacking tarball sources safely, the `install` filter.
//!
//! The solve side (the build closure, like `[[tool]]`) is in
//! `ops::solve::components`; the lock entries in [`crate::lock::LockedComponent`].

pub mod build;
pub mod elf;
pub mod git;
pub mod package;
pub mod source;
mod tree;

pub use git::GitMirrors;

/// Why a component could not be resolved, fetched or built. Each names the
/// component, URL or file it is about.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// A git mapping setting is malformed.
    #[error("git mirror setting `{setting}`: {reason}")]
    MirrorSetting {
        /// The setting as given.
        setting: String,
        /// What is wrong.
        reason: String,
    },
    /// A git command failed.
    #[error("{what}: git: {reason}")]
    Git {
        /// What was being done (names the component and URL).
        what: String,
        /// git's own message.
        reason: String,
    },
    /// The mirror does not have the locked commit.
    #[error(
        "component `{component}`: commit {commit} is not available from {from}: {reason}; \
         update the mirror, or point the git mapping (--mirror git:PREFIX=REPLACEMENT) at one that has it"
    )]
    MissingCommit {
        /// Component name.
        component: String,
        /// The commit the lock pins.
        commit: String,
        /// Where it was fetched from (after the mapping).
        from: String,
        /// git's message.
        reason: String,
    },
    /// The exported source differs from the lock.
    #[error(
        "component `{component}`: the source from {from} has sha256 {actual} ({actual_size} bytes), \
         the lock pins {expected} ({expected_size} bytes); nothing was stored"
    )]
    SourceMismatch {
        /// Component name.
        component: String,
        /// Where it came from.
        from: String,
        /// sha256 in the lock.
        expected: String,
        /// Size in the lock.
        expected_size: u64,
        /// sha256 of what was exported or downloaded.
        actual: String,
        /// Its size.
        actual_size: u64,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The lock has no entry for a recipe component, or a different one.
    #[error("component `{component}`: {reason}")]
    Lock {
        /// Component name.
        component: String,
        /// What is wrong.
        reason: String,
    },
    /// Any other failure, with its context.
    #[error("component `{component}`: {reason}")]
    Other {
        /// Component name.
        component: String,
        /// What went wrong (the cause chain).
        reason: String,
    },
}

impl From<crate::pack::OutputError> for ComponentError {
    fn from(e: crate::pack::OutputError) -> Self {
        ComponentError::Io {
            path: std::path::PathBuf::from("(component cache)"),
            source: std::io::Error::other(e.to_string()),
        }
    }
}

impl ComponentError {
    /// An `Io` error constructor for `map_err`.
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ComponentError + '_ {
        move |source| ComponentError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The ELF check of every built component against the assembled image at
/// `root`: an error naming each file and the library it cannot find.
pub fn check_libraries(
    root: &std::path::Path,
    built: &[build::Built],
    arch: &str,
) -> Result<(), ComponentError> {
    let mut problems = Vec::new();
    for b in built {
        for m in elf::check(root, &b.files, arch)? {
            problems.push(format!(
                "{} (component `{}`) needs {}, which is not in the image",
                m.file, b.package.name, m.library
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(ComponentError::Other {
        component: built
            .iter()
            .map(|b| b.package.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        reason: format!(
            "unresolved shared libraries (add the packages that ship them to `depends`):\n  {}",
            problems.join("\n  ")
        ),
    })
}
