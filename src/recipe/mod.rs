//! Recipes (`recipes/NAME.toml`): what an image is made of.
//!
//! A recipe names its sources (Debian suites or flat repositories, each with a
//! keyring and a priority) and its requirements in Debian relation syntax.
//! `extends = "base"` merges another recipe first. The parsed, merged recipe
//! has a canonical hash, which the lock records to detect staleness.
//!
//! `[[step]]` tables (copy, write, run, sysctl, enable, mask) change the
//! built image, not its packages: they are left out of the canonical hash and
//! hashed by [`Recipe::build_hash`] instead (with copied files' contents),
//! which the rootfs cache key includes.

use std::path::{Path, PathBuf};

use crate::core::relation::Dependency;

pub mod component;
mod disk;
mod error;
mod hash;
pub mod onie;
mod parse;
pub mod publish;
mod python;
mod raw;
mod source;
mod step;
#[cfg(test)]
mod tests;

pub use component::{Component, ComponentSource};
pub use disk::Disk;
pub use error::RecipeError;
pub(crate) use error::line_col;
pub use parse::DEFAULT_PRIORITY;
pub use python::{PyRequirement, PythonSpec, normalize_name};

/// Where a source's files are served from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Location {
    /// A literal URL written in the recipe (http, https or file).
    Url(String),
    /// A named archive (`debian`, `debian-security`, …) whose URL is configuration.
    Archive(String),
}

/// One `[[source]]` entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Source {
    /// Unique name within the recipe; packages in the lock refer to it.
    pub name: String,
    /// Where its files come from.
    pub location: Location,
    /// Suite (`bookworm`), or `/` for a flat repository.
    pub suite: String,
    /// Components (`main`, …); empty for flat repositories.
    pub components: Vec<String>,
    /// Keyring file, resolved to an absolute path.
    #[serde(skip)]
    pub keyring: PathBuf,
    /// sha256 of the keyring file contents (part of the canonical hash).
    pub keyring_sha256: String,
    /// apt-pin-like priority: the highest wins when several sources carry a package.
    pub priority: i32,
    /// `check-valid-until` (default true): refuse an InRelease past its
    /// `Valid-Until`. Snapshot archives, whose old Release files are expired
    /// by design, set it to false. Not part of the canonical hash: it decides
    /// which InRelease is accepted, not what a lock contains.
    pub check_valid_until: bool,
    /// `snapshot = "YYYYMMDDTHHMMSSZ"`: read the archive as the snapshot
    /// service had it then (only for a named `archive`); `solve --snapshot`
    /// sets it for every such source. Not part of the canonical hash, like
    /// `check_valid_until`: the lock records the snapshot it was solved at,
    /// and [`crate::lock::Lockfile::is_stale_for`] compares the two.
    pub snapshot: Option<crate::core::timestamp::Timestamp>,
}

impl Source {
    /// Whether this is a flat repository (`suite = "/"`).
    pub fn is_flat(&self) -> bool {
        self.suite == "/"
    }
}

/// One requirement written in the recipe, e.g. `python3-thrift (<< 0.14)`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Requirement {
    /// The text as written (used in explanations).
    pub text: String,
    /// The parsed relation.
    #[serde(skip)]
    pub dependency: Dependency,
    /// `file:line` where it was written.
    #[serde(skip)]
    pub origin: String,
}

/// A parsed recipe with its `extends` chain merged in.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recipe {
    /// Recipe name (the file stem unless `name` is set).
    pub name: String,
    /// The recipe file.
    #[serde(skip)]
    pub path: PathBuf,
    /// Primary architecture (`amd64`).
    pub architecture: String,
    /// Additional architectures whose packages may be installed (`i386`).
    pub foreign_architectures: Vec<String>,
    /// Sources in declaration order (parents first).
    pub sources: Vec<Source>,
    /// Requirements (parents first, duplicates removed).
    pub packages: Vec<Requirement>,
    /// Include the Essential and `Priority: required` set (default true).
    pub essential: bool,
    /// Install Recommends (default false).
    pub recommends: bool,
    /// `hostname`: written to the image's `/etc/hostname`; `""` for none (the
    /// name then comes from DHCP, as on R2lab); unset: the recipe name. A
    /// build setting: part of [`Recipe::build_hash`], not of the lock's hash.
    pub hostname: Option<String>,
    /// Build steps (`[[step]]`), parents' first. Not part of
    /// [`Recipe::canonical_hash`] (the lock is about packages): see
    /// [`Recipe::build_hash`].
    pub steps: Vec<Step>,
    /// `[python]`: PyPI requirements locked with the Debian packages (part
    /// of the canonical hash when present).
    #[serde(skip)]
    pub python: Option<PythonSpec>,
    /// `tools = [...]`: Debian packages of the locked tools tree that makes
    /// the image files (mkfs, grub, qemu-img), solved into the lock's
    /// `[[tool]]` section against the same sources. Part of the canonical hash.
    pub tools: Vec<Requirement>,
    /// `[disk]`: build a bootable raw disk image. A build setting (in
    /// [`Recipe::build_hash`]).
    pub disk: Option<Disk>,
    /// `[onie]`: the ONIE installer output (switch images). A build setting:
    /// part of [`Recipe::build_hash`], not of the lock's hash.
    pub onie: Option<onie::Onie>,
    /// `[publish]`: how `imgbuild publish` names and labels the image. In
    /// neither hash: it does not change what is built.
    pub publish: publish::Publish,
    /// `[[component]]`s: software built from pinned source into generated
    /// packages. Part of the canonical hash (the lock pins their sources
    /// and build closures).
    pub components: Vec<Component>,
}

/// One `[[step]]`: an action applied to the assembled root filesystem,
/// after the packages and before normalisation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    /// What the step does.
    pub action: StepAction,
    /// `file:line` where the step was written.
    #[serde(skip)]
    pub origin: String,
}

/// The action of a [`Step`]; exactly one per step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepAction {
    /// `copy = "files/x"`, `to = "/etc/x"`: a file next to the recipe into the image.
    Copy {
        /// The source as written (relative to its recipe's directory); only
        /// its contents are hashed.
        #[serde(skip)]
        from: String,
        /// The source, resolved to an absolute path when the recipe was loaded.
        #[serde(skip)]
        source: PathBuf,
        /// sha256 of the source's contents when the recipe was loaded.
        sha256: String,
        /// Absolute destination inside the image.
        to: String,
        /// Permission bits (default 0644).
        mode: u32,
        /// Numeric owner (default: the caller, i.e. 0:0 in a root build).
        owner: Option<(u32, u32)>,
    },
    /// `write = "/etc/x"`, `content = "…"`: a file with the given contents.
    Write {
        /// Absolute destination inside the image.
        path: String,
        /// The file's contents.
        content: String,
        /// Permission bits (default 0644).
        mode: u32,
        /// Numeric owner (default: the caller).
        owner: Option<(u32, u32)>,
    },
    /// `run = ["argv", …]`: a command in the build sandbox, the image as `/`.
    Run {
        /// Program and arguments.
        argv: Vec<String>,
    },
    /// `sysctl = { key = "value" }`: lines of `/etc/sysctl.d/90-imgbuild.conf`.
    Sysctl {
        /// Settings, sorted by key.
        settings: std::collections::BTreeMap<String, String>,
    },
    /// `enable = ["unit", …]`: `systemctl enable` in the sandbox.
    Enable {
        /// Unit names.
        units: Vec<String>,
    },
    /// `mask = ["unit", …]`: `/etc/systemd/system/UNIT → /dev/null`.
    Mask {
        /// Unit names.
        units: Vec<String>,
    },
    /// `group = "name"`: the image's own `groupadd`, in the sandbox.
    Group {
        /// Group name.
        name: String,
        /// `gid`; default: the next free one.
        gid: Option<u32>,
        /// `system = true`: a system group (gid from the system range).
        system: bool,
    },
    /// `user = "name"`: the image's own `useradd` (with a group of the same
    /// name), in the sandbox. `/etc/shadow`'s dates come from
    /// SOURCE_DATE_EPOCH, so the result is reproducible.
    User(UserAccount),
}

/// The account a `user` step creates.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct UserAccount {
    /// Login name.
    pub name: String,
    /// `uid`; default: the next free one.
    pub uid: Option<u32>,
    /// `groups`: supplementary groups, which must exist.
    pub groups: Vec<String>,
    /// `shell`; default: useradd's.
    pub shell: Option<String>,
    /// `home`: created from the image's `/etc/skel`; default `/home/NAME`
    /// (none for a system user).
    pub home: Option<String>,
    /// `system = true`: a system account.
    pub system: bool,
    /// `password-hash`: a crypt(3) hash, `""` for an empty password; unset:
    /// the account has no usable password.
    pub password_hash: Option<String>,
}

impl StepAction {
    /// The action key (`copy`, `write`, …), for logs and errors.
    pub fn key(&self) -> &'static str {
        match self {
            StepAction::Copy { .. } => "copy",
            StepAction::Write { .. } => "write",
            StepAction::Run { .. } => "run",
            StepAction::Sysctl { .. } => "sysctl",
            StepAction::Enable { .. } => "enable",
            StepAction::Mask { .. } => "mask",
            StepAction::Group { .. } => "group",
            StepAction::User { .. } => "user",
        }
    }
}

impl Recipe {
    /// Loads a recipe and the chain it `extends`.
    ///
    /// `spec` is either a recipe name, looked up as
    /// `workspace/recipes/NAME.toml`, or (when it ends in `.toml` or contains
    /// a `/`) a path to a recipe file, relative to the current directory.
    /// Errors name files relative to `workspace` when they are inside it.
    pub fn load(workspace: &Path, spec: &str) -> Result<Recipe, RecipeError> {
        let loader = parse::Loader {
            workspace: Some(workspace),
        };
        let is_path = spec.ends_with(".toml") || spec.contains('/') || spec.contains('\\');
        let path = if is_path {
            PathBuf::from(spec)
        } else {
            workspace.join("recipes").join(format!("{spec}.toml"))
        };
        if !path.is_file() {
            return Err(RecipeError::NotFound {
                spec: spec.to_string(),
                file: loader.display(&path),
            });
        }
        loader.load_file(&path)
    }

    /// Parses `text` as if it were the file at `path` (shown as given in
    /// errors). Keyrings and `extends` parents are still read from `path`'s
    /// directory.
    pub fn parse_str(text: &str, path: &Path) -> Result<Recipe, RecipeError> {
        parse::Loader { workspace: None }.load_text(text.to_string(), path)
    }

    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }
}
