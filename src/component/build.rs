//! Building a component: its locked build closure assembled into a build
//! root (real dpkg, maintainer scripts run, as for the image), the source
//! unpacked at `/build/src`, the recipe's `build` commands run there one by
//! one (`sh -ec`) in the sandbox — no network, fixed environment and time —
//! and the files left in `DESTDIR` packed into a generated `.deb`
//! ([`super::package`]).
//!
//! The `.deb` is cached under a key that hashes every input (the
//! component's recipe entry, its locked source and closure, the epoch, the
//! architecture and this imgbuild's version), in
//! `<rootfs cache>/@components/NAME/<key>.tar` (the name is the cache's; the
//! content is the .deb): a changed build script rebuilds that component
//! only. It is then put into the vendor store (content-addressed) so the
//! image assembly installs it like any locked package.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::ComponentError;
use super::package::{Control, list_files, write_deb};
use super::tree::{filter, unpack_tarball};
use crate::fetch::Store;
use crate::lock::{LockedComponent, LockedEdge, LockedPackage, Lockfile};
use crate::recipe::{Component, ComponentSource, Recipe};
use crate::rootfs::cache::RootfsCache;
use crate::rootfs::{self, AssembleOptions};
use crate::sandbox::{self, SandboxSpec, Status, Stream};

/// Bump when the generated package changes for the same inputs.
const KEY_FORMAT: &str = "imgbuild-component-key v1";

/// Time bound of one build command (bmv2 takes most of an hour on 2 cores).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// The recipe `source` name of generated packages in the build's lock.
pub const SOURCE_NAME: &str = "@component";

/// Where and how components are built.
#[derive(Debug, Clone)]
pub struct BuildContext<'a> {
    /// The vendor store (sources, closures; receives the generated .debs).
    pub store: &'a Store,
    /// The rootfs cache directory (`@components/` is made inside it).
    pub cache_dir: &'a Path,
    /// Where build roots are made (temp directories, removed after).
    pub work: &'a Path,
    /// SOURCE_DATE_EPOCH of the build.
    pub source_date_epoch: i64,
    /// `JOBS` the build sees.
    pub jobs: usize,
    /// No progress lines.
    pub quiet: bool,
}

/// One component, built or taken from the cache.
#[derive(Debug, Clone)]
pub struct Built {
    /// The generated package as a lock entry (source [`SOURCE_NAME`]).
    pub package: LockedPackage,
    /// Its files (absolute paths in the image), for the ELF check.
    pub files: Vec<String>,
    /// Whether it came from the cache.
    pub cached: bool,
    /// Wall time of the build (0 when cached).
    pub seconds: f64,
}

/// `sha256:<hex>` of everything a component's package depends on.
pub fn component_key(c: &Component, locked: &LockedComponent, epoch: i64, arch: &str) -> String {
    let spec = serde_json::to_string(c).expect("plain data serializes");
    let mut closure: Vec<String> = locked
        .packages
        .iter()
        .map(|p| format!("{} {} {} {}", p.name, p.version, p.architecture, p.sha256))
        .collect();
    closure.sort();
    let text = format!(
        "{KEY_FORMAT}\nimgbuild={}\nspec={spec}\nversion={}\nsource={} {}\nclosure={}\nepoch={epoch}\narch={arch}\n",
        env!("CARGO_PKG_VERSION"),
        locked.version,
        locked.sha256,
        locked.size,
        closure.join(","),
    );
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

fn other(name: &str, reason: impl std::fmt::Display) -> ComponentError {
    ComponentError::Other {
        component: name.to_string(),
        reason: reason.to_string(),
    }
}

/// Builds (or takes from the cache) every component of `recipe` and adds
/// its generated package to `lock` (in memory: the lock file is not
/// changed), so that the image assembly, `packages.txt` and the SBOM see
/// them like any package. Returns what was built, in recipe order.
pub fn add_components(
    recipe: &Recipe,
    lock: &mut Lockfile,
    ctx: &BuildContext<'_>,
) -> Result<Vec<Built>, ComponentError> {
    let mut out = Vec::new();
    for c in &recipe.components {
        let locked = lock
            .components
            .iter()
            .find(|l| l.name == c.name)
            .ok_or_else(|| ComponentError::Lock {
                component: c.name.clone(),
                reason: format!("not in the lock: run `imgbuild solve {}`", recipe.name),
            })?
            .clone();
        if lock.packages.iter().any(|p| p.name == c.name) {
            return Err(ComponentError::Lock {
                component: c.name.clone(),
                reason: "a package of the image has the same name; rename the component".into(),
            });
        }
        let mut built = build_one(c, &locked, lock, &recipe.architecture, ctx)?;
        built.package.depends = edges(c, lock);
        lock.packages.push(built.package.clone());
        out.push(built);
    }
    lock.sort_packages();
    Ok(out)
}

/// Builds every component of `recipe` again, from scratch, into the cache
/// at `ctx.cache_dir` (a fresh one: nothing is reused), and compares each
/// package with the one in `lock` (a lock [`add_components`] extended):
/// the reproducibility check of `imgbuild verify`. An error names each
/// component whose package differs.
pub fn verify_rebuild(
    recipe: &Recipe,
    lock: &Lockfile,
    ctx: &BuildContext<'_>,
) -> Result<(), ComponentError> {
    let mut plain = lock.clone();
    plain.packages.retain(|p| p.source != SOURCE_NAME);
    let again = add_components(recipe, &mut plain, ctx)?;
    let mut differ = Vec::new();
    for b in &again {
        let first = lock
            .packages
            .iter()
            .find(|p| p.source == SOURCE_NAME && p.name == b.package.name);
        if first.map(|p| &p.sha256) != Some(&b.package.sha256) {
            differ.push(format!(
                "{}: {} then {}",
                b.package.name,
                first.map_or("-", |p| p.sha256.as_str()),
                b.package.sha256
            ));
        }
    }
    if differ.is_empty() {
        return Ok(());
    }
    Err(ComponentError::Other {
        component: differ
            .iter()
            .map(|d| d.split(':').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(", "),
        reason: format!(
            "not reproducible: two builds gave different packages: {}",
            differ.join("; ")
        ),
    })
}

/// The generated package's edges: each `depends` relation to the first of
/// its alternatives that the lock has (the solve put it there).
fn edges(c: &Component, lock: &Lockfile) -> Vec<LockedEdge> {
    c.depends
        .iter()
        .filter_map(|r| {
            let text = r.dependency.to_string();
            let name = text
                .split('|')
                .map(|alt| {
                    alt.split([' ', '(', ':'])
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_string()
                })
                .find(|n| lock.packages.iter().any(|p| p.name == *n))?;
            Some(LockedEdge {
                name,
                relation: text,
                kind: "depends".into(),
            })
        })
        .collect()
}

/// One component: from the cache when its key is there, else built.
fn build_one(
    c: &Component,
    locked: &LockedComponent,
    lock: &Lockfile,
    arch: &str,
    ctx: &BuildContext<'_>,
) -> Result<Built, ComponentError> {
    let key = component_key(c, locked, ctx.source_date_epoch, arch);
    let cache = RootfsCache::new(&ctx.cache_dir.join("@components"));
    let started = Instant::now();
    let mut files = Vec::new();
    let (deb, cached) = match cache.get(&c.name, &key) {
        Some(deb) => (deb, true),
        None => {
            if !ctx.quiet {
                eprintln!(
                    "Building component {} {} ({})…",
                    c.name,
                    locked.version,
                    c.source_label()
                );
            }
            let deb = cache.insert_with(&c.name, &key, |w| -> Result<(), ComponentError> {
                files = build_tree(c, locked, lock, arch, ctx, w)?;
                Ok(())
            })?;
            (deb, false)
        }
    };
    let (sha256, size) = crate::core::digest::hash_file(&deb).map_err(ComponentError::io(&deb))?;
    if files.is_empty() {
        files = deb_files(&deb)?;
    }
    if !ctx.store.contains(&sha256, size) {
        ctx.store.create_dirs().map_err(|e| other(&c.name, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(".component-deb-")
            .tempfile_in(ctx.store.tmp_dir())
            .map_err(ComponentError::io(&ctx.store.tmp_dir()))?;
        fs::copy(&deb, tmp.path()).map_err(ComponentError::io(tmp.path()))?;
        let kept = tmp
            .into_temp_path()
            .keep()
            .map_err(|e| ComponentError::Io {
                path: ctx.store.tmp_dir(),
                source: e.error,
            })?;
        ctx.store
            .commit(&kept, &sha256)
            .map_err(|e| other(&c.name, e))?;
    }
    Ok(Built {
        package: LockedPackage {
            name: c.name.clone(),
            version: locked.version.clone(),
            architecture: arch.to_string(),
            source: SOURCE_NAME.into(),
            filename: format!("components/{}_{}_{arch}.deb", c.name, locked.version),
            size,
            sha256,
            reason: Some("recipe".into()),
            depends: Vec::new(),
        },
        files,
        cached,
        seconds: if cached {
            0.0
        } else {
            started.elapsed().as_secs_f64()
        },
    })
}

/// The file list of a generated .deb (its md5sums cover regular files;
/// the ELF check needs no more).
fn deb_files(deb: &Path) -> Result<Vec<String>, ComponentError> {
    let control = crate::deb::read_control(deb).map_err(|e| ComponentError::Io {
        path: deb.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let md5 = String::from_utf8_lossy(control.md5sums().unwrap_or_default()).into_owned();
    Ok(md5
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(_, p)| format!("/{p}")))
        .collect())
}

/// Assembles the build root, runs the build and writes the .deb to `w`;
/// the files it installs.
fn build_tree(
    c: &Component,
    locked: &LockedComponent,
    lock: &Lockfile,
    arch: &str,
    ctx: &BuildContext<'_>,
    w: &mut impl std::io::Write,
) -> Result<Vec<String>, ComponentError> {
    fs::create_dir_all(ctx.work).map_err(ComponentError::io(ctx.work))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".component-{}-", c.name))
        .tempdir_in(ctx.work)
        .map_err(ComponentError::io(ctx.work))?;
    let root = tmp.path().join("root");
    make_dir(&root)?;
    let opts = AssembleOptions {
        source_date_epoch: ctx.source_date_epoch,
        hostname: String::new(),
        run_scripts: true,
    };
    rootfs::assemble(&locked.build_lock(lock), ctx.store, &root, &opts)
        .map_err(|e| other(&c.name, format!("assembling the build root: {e}")))?;
    let src = root.join("build/src");
    let dest = root.join("build/dest");
    make_dir(&root.join("build"))?;
    make_dir(&src)?;
    make_dir(&dest)?;
    let blob = ctx.store.path_of(&locked.sha256);
    match &c.source {
        ComponentSource::Git { .. } => {
            let devices = rootfs::cache::restore(&blob, &src)
                .map_err(|e| other(&c.name, format!("unpacking the source: {e}")))?;
            // An exported git tree holds no device nodes (git cannot store them).
            if let Some(d) = devices.first() {
                return Err(other(
                    &c.name,
                    format!("the source tree holds a device node: {}", d.path),
                ));
            }
        }
        ComponentSource::Tarball { .. } => unpack_tarball(&c.name, &blob, &src)?,
    }
    let env = vec![
        ("DESTDIR".to_string(), "/build/dest".to_string()),
        ("PREFIX".to_string(), c.prefix.clone()),
        ("JOBS".to_string(), ctx.jobs.max(1).to_string()),
        ("HOME".to_string(), "/root".to_string()),
    ];
    for (i, command) in c.build.iter().enumerate() {
        if !ctx.quiet {
            eprintln!("  [{}] $ {command}", c.name);
        }
        // stderr into stdout, so the output keeps its order in the log.
        let script = format!("exec 2>&1\n{command}");
        let mut spec = SandboxSpec::new(&root, ["/bin/sh", "-ec", script.as_str()]);
        spec.cwd = PathBuf::from("/build/src");
        spec.env = env.clone();
        spec.source_date_epoch = u64::try_from(ctx.source_date_epoch).unwrap_or(0);
        spec.stdout = Stream::Capture;
        spec.stderr = Stream::Capture;
        spec.timeout = Some(COMMAND_TIMEOUT);
        let started = Instant::now();
        let out = sandbox::run(&spec)
            .map_err(|e| other(&c.name, format!("build command {}: {e}", i + 1)))?;
        if !ctx.quiet {
            eprintln!("  [{}]   {:.1}s", c.name, started.elapsed().as_secs_f64());
        }
        if out.status != Status::Exited(0) {
            let how = match out.status {
                Status::Exited(n) => format!("exited with status {n}"),
                Status::Signaled(s) => format!("was killed by signal {s}"),
                Status::TimedOut => format!("timed out after {COMMAND_TIMEOUT:?}"),
            };
            // The whole output, kept outside `out/` for a post-mortem.
            let log = ctx.work.join(format!("{}.build.log", c.name));
            let kept = crate::core::atomic::write_atomic(
                &log,
                &[out.stdout.as_slice(), out.stderr.as_slice()].concat(),
                0o644,
                crate::core::atomic::Durability::Atomic,
            )
            .is_ok();
            let full = if kept {
                format!("\n(full output: {})", log.display())
            } else {
                String::new()
            };
            return Err(other(
                &c.name,
                format!(
                    "build command {} `{command}` ({}) {how}; last output:\n{}{full}",
                    i + 1,
                    c.origin,
                    tail(&out.stdout, &out.stderr)
                ),
            ));
        }
    }
    filter(&dest, &c.install)?;
    let files = list_files(&dest)?;
    if files.is_empty() {
        return Err(other(
            &c.name,
            format!(
                "the build installed nothing into $DESTDIR{} ({})",
                if c.install.is_empty() {
                    ""
                } else {
                    " matching `install`"
                },
                c.origin
            ),
        ));
    }
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o755))
        .map_err(ComponentError::io(&dest))?;
    let details = match (&locked.git, &locked.commit, &locked.url) {
        (Some(g), Some(commit), _) => {
            vec![format!("Built by imgbuild from {g} at commit {commit}.")]
        }
        (_, _, Some(u)) => vec![format!(
            "Built by imgbuild from {u} (sha256 {}).",
            locked.sha256
        )],
        _ => Vec::new(),
    };
    let control = Control {
        name: c.name.clone(),
        version: locked.version.clone(),
        architecture: arch.to_string(),
        depends: c
            .depends
            .iter()
            .map(|r| r.dependency.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        summary: format!("{} built from source", c.name),
        details,
    };
    write_deb(&control, &dest, ctx.source_date_epoch, w)?;
    Ok(files)
}

/// The last 40 lines of a failed command's stdout and stderr.
fn tail(stdout: &[u8], stderr: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(stderr));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn make_dir(p: &Path) -> Result<(), ComponentError> {
    fs::create_dir(p).map_err(ComponentError::io(p))?;
    fs::set_permissions(p, fs::Permissions::from_mode(0o755)).map_err(ComponentError::io(p))
}
