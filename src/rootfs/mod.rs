//! Root filesystem assembly: a lock's packages, from the vendor store, into a
//! directory that is a working Debian system.
//!
//! [`assemble`] never touches the network. Its phases:
//! 1. **check**: every locked .deb must be in the [`Store`] (else the error
//!    lists what is missing and says to run `imgbuild fetch RECIPE`);
//! 2. **control**: the control members of every .deb are read (in parallel)
//!    to learn `Essential`/`Priority`, `Multi-Arch` and `Replaces`;
//! 3. **unpack**: merged-/usr symlinks first where the suite expects them
//!    (`/bin → usr/bin`, `/sbin`, `/lib`, and `/lib64` on amd64: any lock with
//!    `usr-is-merged`/`usrmerge`, or base-files ≥ 13 which ships them itself),
//!    then every .deb with [`crate::deb`] in install order — the base
//!    set (required packages and their dependencies) first, pre-dependencies
//!    before their dependants (see `order.rs`). Extraction is sequential: files
//!    of different packages may overlap (`Replaces`), and the first package
//!    to create a shared directory decides its mode and owner, so a parallel
//!    extraction would not give the same tree every time;
//! 4. **database**: a real dpkg database with every package
//!    `install ok unpacked` (see `dpkgdb.rs`);
//! 5. **configure** (when [`AssembleOptions::run_scripts`]): the maintainer
//!    scripts run inside the image in the build sandbox, the image's own
//!    `dpkg --configure` doing the postinsts (see `configure.rs`);
//! 6. **steps** (with [`assemble_with_steps`]): the recipe's `[[step]]`s
//!    (see [`crate::rootfs::steps`]);
//! 7. **normalize**: logs, caches, machine id and host keys are removed or
//!    reset and mtimes clamped to `SOURCE_DATE_EPOCH` (see `normalize.rs`).

mod bytecode;
pub mod cache;
mod configure;
mod depmod_ahead;
mod dpkgdb;
mod initramfs;
pub mod kept;
mod normalize;
mod order;
mod preinst_batch;
mod report;
pub mod steps;
mod time;
mod unpack;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rayon::prelude::*;

pub(crate) use configure::sandbox_hostname;
use depmod_ahead::DepmodAhead;
pub use normalize::{NormalizeReport, clamp_tree, normalize};
use report::PhaseGuard;
pub use report::{Reporter, Silent};
pub use time::{default_source_date_epoch, parse_rfc2822};

use crate::core::cpu::Stamp;
use crate::core::version::DebVersion;
use crate::deb::{self, UnpackError};
use crate::fetch::Store;
use crate::fetch::store::MissingBlobs;
use crate::lock::Lockfile;
use crate::recipe::Step;
use crate::sandbox::SandboxError;
use steps::{StepError, StepSandbox};

/// How to assemble.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembleOptions {
    /// Timestamp the build pretends to happen at: scripts see it as
    /// `SOURCE_DATE_EPOCH` and no mtime in the result is later.
    pub source_date_epoch: i64,
    /// `/etc/hostname` and the hostname scripts see; empty: no `/etc/hostname`
    /// (scripts then see `localhost`).
    pub hostname: String,
    /// Run the maintainer scripts (default). Without them the packages stay
    /// `install ok unpacked`, which needs no shell in the image.
    pub run_scripts: bool,
}

/// The image's hostname: the recipe name when it is a valid host name label,
/// else `localhost`.
pub fn default_hostname(recipe: &str) -> String {
    let valid = !recipe.is_empty()
        && recipe.len() <= 63
        && !recipe.starts_with('-')
        && !recipe.ends_with('-')
        && recipe
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        recipe.to_ascii_lowercase()
    } else {
        "localhost".to_string()
    }
}

impl Default for AssembleOptions {
    /// Epoch 0, hostname `localhost`, scripts run.
    fn default() -> Self {
        AssembleOptions {
            source_date_epoch: 0,
            hostname: "localhost".into(),
            run_scripts: true,
        }
    }
}

/// One command run in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptRun {
    /// `name version arch` for a preinst, `dpkg` for a dpkg run.
    pub package: String,
    /// What it was (`preinst install`, `configure the base set`, …).
    pub script: String,
    /// The command line.
    pub command: String,
    /// Wall time.
    pub elapsed: Duration,
}

/// What [`assemble`] did.
#[derive(Debug, Clone, Default)]
pub struct AssembleReport {
    /// Number of packages installed.
    pub packages: usize,
    /// The base set (`NAME:ARCH`), in install order.
    pub base: Vec<String>,
    /// Every package (`NAME:ARCH`) in the order it was unpacked.
    pub unpack_order: Vec<String>,
    /// Whether the merged-/usr symlinks were made.
    pub merged_usr: bool,
    /// Wall time of each phase, in order.
    pub phases: Vec<(String, Duration)>,
    /// CPU time of each phase (this process and the commands it ran), in
    /// the order of `phases`.
    pub phase_cpu: Vec<Duration>,
    /// The commands run in the sandbox, in order (empty without scripts).
    pub scripts: Vec<ScriptRun>,
    /// Things worth knowing that did not stop the build (overlapping files).
    pub warnings: Vec<String>,
    /// What normalisation removed and clamped.
    pub normalize: NormalizeReport,
    /// One line per recipe build step applied (empty without steps).
    pub steps: Vec<String>,
    /// The `[[python]]` layer: one line per distribution, wheels built from sdists.
    pub python: crate::pypi::layer::LayerReport,
    /// Device nodes the packages ship: placeholders in the tree, written into
    /// the tar by [`crate::pack::tar::write_tree_with_devices`].
    pub devices: Vec<deb::DeviceNode>,
}

/// Why a root filesystem could not be assembled. Each names what it concerns.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// The destination is not an empty directory.
    #[error("{dest}: the destination must be an existing, empty directory")]
    Destination {
        /// The destination.
        dest: PathBuf,
    },
    /// Blobs are missing from the vendor store.
    // Transparent: its message *is* the inner one, so `{:#}` must not add it
    // again as a cause (`X: X`).
    #[error(transparent)]
    Missing(#[from] MissingBlobs),
    /// A .deb could not be read or unpacked.
    #[error("package {package}: {source}")]
    Unpack {
        /// `name version arch`.
        package: String,
        /// What went wrong.
        #[source]
        source: UnpackError,
    },
    /// A file of the image could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The sandbox could not be started.
    #[error("{what}: {source}")]
    Sandbox {
        /// What was to be run.
        what: String,
        /// What went wrong.
        #[source]
        source: SandboxError,
    },
    /// A maintainer script or dpkg run failed.
    #[error("{script} ({package}) failed with {status}: `{command}`; last output:\n{output}")]
    Script {
        /// `name version arch`, or `dpkg`.
        package: String,
        /// What was run.
        script: String,
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// The end of its output.
        output: String,
    },
    /// A recipe build step failed.
    #[error(transparent)]
    Step(Box<StepError>),
    /// The Python layer could not be installed.
    #[error("Python layer: {}", .0.chain())]
    Python(Box<crate::pypi::PypiError>),
    /// After configuring, some packages are not `install ok installed`.
    #[error("packages not fully installed after configuring: {}", packages.join(", "))]
    NotConfigured {
        /// `name:arch (status)` for each.
        packages: Vec<String>,
    },
}

impl RootfsError {
    /// An `Io` error constructor for `map_err`.
    pub(crate) fn io(path: &Path) -> impl FnOnce(io::Error) -> RootfsError + '_ {
        move |source| RootfsError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Builds the root filesystem for `lock` into `dest` (an empty directory),
/// reading .debs only from `store`. See the module docs for the phases.
pub fn assemble(
    lock: &Lockfile,
    store: &Store,
    dest: &Path,
    opts: &AssembleOptions,
) -> Result<AssembleReport, RootfsError> {
    assemble_with_steps(lock, store, dest, opts, &[])
}

/// [`assemble`], applying the recipe's build `steps` after the packages are
/// configured and before normalisation (so their files' mtimes are clamped).
pub fn assemble_with_steps(
    lock: &Lockfile,
    store: &Store,
    dest: &Path,
    opts: &AssembleOptions,
    steps: &[Step],
) -> Result<AssembleReport, RootfsError> {
    let mut report = assemble_packages(lock, store, dest, opts)?;
    finish(dest, opts, steps, &mut report)?;
    Ok(report)
}

/// The package phases of [`assemble`]: unpack, dpkg database, maintainer
/// scripts; no steps, no normalisation. What it leaves depends on the lock,
/// the epoch and the hostname only, so it can be cached apart from the
/// recipe's steps and resumed with [`finish`].
pub fn assemble_packages(
    lock: &Lockfile,
    store: &Store,
    dest: &Path,
    opts: &AssembleOptions,
) -> Result<AssembleReport, RootfsError> {
    assemble_packages_with(lock, store, dest, opts, &Silent)
}

/// [`assemble_packages`], telling `progress` what it is doing.
pub fn assemble_packages_with(
    lock: &Lockfile,
    store: &Store,
    dest: &Path,
    opts: &AssembleOptions,
    progress: &dyn Reporter,
) -> Result<AssembleReport, RootfsError> {
    // Directories and files the assembly creates itself (dpkg database, apt
    // state, merged-/usr links) get their modes from the umask: fix it, so the
    // tree does not depend on the caller's. Restored when this returns.
    let _umask = UmaskGuard::set(0o022);
    let mut report = AssembleReport {
        packages: lock.packages.len(),
        ..AssembleReport::default()
    };
    let mut phase_start = Stamp::now();
    let mut phase = |report: &mut AssembleReport, name: &str| {
        let (wall, cpu) = phase_start.elapsed();
        report.phases.push((name.to_string(), wall));
        report.phase_cpu.push(cpu);
        phase_start = Stamp::now();
    };
    let empty = fs::read_dir(dest).map(|mut d| d.next().is_none());
    if !empty.map_err(RootfsError::io(dest))? {
        return Err(RootfsError::Destination {
            dest: dest.to_path_buf(),
        });
    }
    store.require(lock, &lock.recipe.name)?;
    phase(&mut report, "check");

    let debs: Vec<PathBuf> = lock
        .packages
        .iter()
        .map(|p| store.path_of(&p.sha256))
        .collect();
    let controls = debs
        .par_iter()
        .zip(&lock.packages)
        .map(|(deb, p)| {
            deb::read_control_checked(deb, &p.sha256).map_err(|source| RootfsError::Unpack {
                package: format!("{} {} {}", p.name, p.version, p.architecture),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pkgs = order::packages(&lock.packages, controls);
    let base = order::base_set(&pkgs);
    let install = order::install_order(&pkgs, &base);
    let id = |i: usize| format!("{}:{}", pkgs[i].name, pkgs[i].arch);
    report.base = install
        .iter()
        .copied()
        .filter(|&i| base[i])
        .map(id)
        .collect();
    report.unpack_order = install.iter().copied().map(id).collect();
    phase(&mut report, "control");

    report.merged_usr = wants_merged_usr(lock);
    if report.merged_usr {
        merge_usr(dest, &lock.recipe.architecture)?;
    }
    let unpacking = PhaseGuard::start(progress, "unpack", Some(install.len() as u64));
    let lists = unpack::unpack_all(dest, &debs, lock, &pkgs, &install, progress, &mut report)?;
    drop(unpacking);
    phase(&mut report, "unpack");

    let mut foreign: Vec<String> = pkgs
        .iter()
        .map(|p| p.arch.clone())
        .filter(|a| a != "all" && *a != lock.recipe.architecture)
        .collect();
    foreign.sort();
    foreign.dedup();
    dpkgdb::init(dest, &lock.recipe.architecture, &foreign)?;
    dpkgdb::write(dest, &pkgs, &lists)?;
    phase(&mut report, "database");

    if opts.run_scripts {
        let _configuring = PhaseGuard::start(progress, "configure", None);
        let epoch = opts.source_date_epoch.max(0) as u64;
        let ahead = DepmodAhead::start(dest, &lists, &sandbox_hostname(&opts.hostname), epoch);
        configure::configure_all(
            dest,
            &pkgs,
            &base,
            &install,
            &lists,
            opts,
            ahead.as_ref(),
            &mut report.scripts,
            progress,
        )?;
        if let Some(ahead) = ahead {
            report.scripts.push(ahead.finish());
        }
        phase(&mut report, "configure");
    }
    if !lock.python.is_empty() {
        let env = crate::pypi::sdist::BuildEnv {
            source_date_epoch: opts.source_date_epoch,
            hostname: sandbox_hostname(&opts.hostname),
            ro_binds: Vec::new(),
        };
        let _installing = PhaseGuard::start(progress, "python", None);
        report.python = crate::pypi::layer::install_layer(dest, lock, store, &env)
            .map_err(|e| RootfsError::Python(Box::new(e)))?;
        phase(&mut report, "python");
    }
    Ok(report)
}

/// The last phases of an assembly, on a tree left by [`assemble_packages`]
/// (or restored from its cached tar): the recipe's `steps`, then
/// normalisation. Appends to `report`.
pub fn finish(
    dest: &Path,
    opts: &AssembleOptions,
    steps: &[Step],
    report: &mut AssembleReport,
) -> Result<(), RootfsError> {
    finish_with(dest, opts, steps, report, &Silent)
}

/// [`finish`], telling `progress` what it is doing.
pub fn finish_with(
    dest: &Path,
    opts: &AssembleOptions,
    steps: &[Step],
    report: &mut AssembleReport,
    progress: &dyn Reporter,
) -> Result<(), RootfsError> {
    let _umask = UmaskGuard::set(0o022);
    let mut phase_start = Stamp::now();
    let mut phase = |report: &mut AssembleReport, name: &str| {
        let (wall, cpu) = phase_start.elapsed();
        report.phases.push((name.to_string(), wall));
        report.phase_cpu.push(cpu);
        phase_start = Stamp::now();
    };
    if !steps.is_empty() {
        let _stepping = PhaseGuard::start(progress, "steps", Some(steps.len() as u64));
        report.steps = steps::apply_with(dest, steps, &StepSandbox::for_assembly(opts), progress)
            .map_err(|e| RootfsError::Step(Box::new(e)))?;
        phase(report, "steps");
    }
    let normalizing = PhaseGuard::start(progress, "normalize", None);
    report.normalize = normalize(dest, opts.source_date_epoch, &opts.hostname)?;
    drop(normalizing);
    phase(report, "normalize");
    Ok(())
}

/// Whether the suite expects merged /usr: the lock has `usr-is-merged` or
/// `usrmerge` (bookworm and later), or base-files 13 or later (trixie),
/// which ships the links itself.
fn wants_merged_usr(lock: &Lockfile) -> bool {
    let thirteen = DebVersion::parse("13").expect("valid version");
    lock.packages.iter().any(|p| {
        matches!(p.name.as_str(), "usr-is-merged" | "usrmerge")
            || (p.name == "base-files"
                && DebVersion::parse(&p.version).is_ok_and(|v| v >= thirteen))
    })
}

/// Creates `/usr/{bin,sbin,lib[,lib64]}` and the top-level symlinks to them.
fn merge_usr(root: &Path, arch: &str) -> Result<(), RootfsError> {
    let mut dirs = vec!["bin", "sbin", "lib"];
    if matches!(arch, "amd64" | "ppc64el" | "s390x" | "mips64el") {
        dirs.push("lib64");
    }
    for dir in dirs {
        let target = root.join("usr").join(dir);
        fs::create_dir_all(&target).map_err(RootfsError::io(&target))?;
        let link = root.join(dir);
        std::os::unix::fs::symlink(format!("usr/{dir}"), &link).map_err(RootfsError::io(&link))?;
    }
    Ok(())
}

/// Sets the process umask and restores the previous one on drop.
struct UmaskGuard(rustix::fs::Mode);

impl UmaskGuard {
    fn set(mask: u32) -> UmaskGuard {
        UmaskGuard(rustix::process::umask(rustix::fs::Mode::from_raw_mode(
            mask,
        )))
    }
}

impl Drop for UmaskGuard {
    fn drop(&mut self) {
        rustix::process::umask(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert_eq!(default_hostname("sonic-p4"), "sonic-p4");
        assert_eq!(default_hostname("Base"), "base");
        assert_eq!(default_hostname("my_image"), "localhost");
        assert_eq!(default_hostname("-x"), "localhost");
    }
}
