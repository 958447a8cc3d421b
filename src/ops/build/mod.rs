//! `imgbuild build RECIPE`: a fresh lock's packages from the vendor store →
//! an assembled root filesystem → reproducible outputs in `out/RECIPE/`.
//!
//! The lock must be fresh for the recipe (`--locked` semantics: a stale lock
//! is an error, never re-solved here) and every package must be in the store
//! (never the network). The rootfs is assembled in a temp directory next to
//! the outputs, archived as a deterministic tar and kept in the rootfs cache
//! ([`crate::rootfs::cache`]) under the hash of every input; the outputs are
//! written into `out/RECIPE.tmp-XXXX/` ([`outputs`]) and swapped into
//! `out/RECIPE/` only when complete; the disk image starts while the tar is
//! still being written ([`early_disk`]).
//!
//! Incremental: when `out/RECIPE/manifest.json` already records the same
//! build key and its artifacts are present, nothing is done; when only the
//! rootfs tar is cached, the outputs are re-emitted from it without assembling.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::core::cpu::Stamp;
use crate::core::growing::Growing;
use crate::core::scratch::Removals;
use crate::fetch::{Store, vendor_dir};
use crate::image::{self, Compression, ImageInfo, Manifest};
use crate::lock::Lockfile;

use crate::ops::progress::{PhaseLine, Speculating};
use crate::ops::workspace::{Demand, Loaded};
use crate::pack::chunks::ChunkCache;
use crate::pack::compress::GZIP_LEVEL;
use crate::pack::speculate::Speculation;
use crate::pack::tar::{TarOptions, TarStats, write_tree_with_devices};
use crate::recipe::Recipe;
use crate::rootfs::Reporter as _;
use crate::rootfs::cache::{self, KeyInputs, RootfsCache};
use crate::rootfs::{self, AssembleOptions};
use crate::tools::ToolsAhead;

mod early_disk;
mod outputs;

use outputs::{emit_into, outputs_dir};

/// The arguments of `imgbuild build`.
#[derive(Debug, Clone, Default)]
pub struct BuildArgs {
    /// Recipe name or path (as for `Recipe::load`).
    pub recipe: String,
    /// The project directory (`-C`).
    pub workspace: PathBuf,
    /// `--vendor DIR`; else `$IMGBUILD_VENDOR`, else `<workspace>/vendor`.
    pub vendor: Option<PathBuf>,
    /// `--out DIR`: where `RECIPE/` is written; default `<workspace>/out`.
    pub out: Option<PathBuf>,
    /// SOURCE_DATE_EPOCH; default: derived from the lock
    /// ([`rootfs::default_source_date_epoch`]).
    pub source_date_epoch: Option<i64>,
    /// No progress lines or summary.
    pub quiet: bool,
    /// Compression of the `rootfs.tar` artifact (the OCI layer is always gzip).
    pub compression: Compression,
    /// `--no-scripts`: do not run maintainer scripts (unpack only).
    pub no_scripts: bool,
    /// Rootfs cache directory; default [`cache::default_dir`]
    /// (`$IMGBUILD_CACHE/rootfs`, else next to the vendor store).
    pub cache_dir: Option<PathBuf>,
}

/// How much of a build could be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reuse {
    /// The outputs were already there for the same inputs; nothing was written.
    UpToDate,
    /// The rootfs tar came from the cache; the outputs were re-emitted.
    CachedRootfs,
    /// The package stage came from the cache; the recipe's steps and
    /// normalisation ran again (a step changed).
    CachedPackages,
    /// The rootfs was assembled.
    Assembled,
}

/// What a build did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    /// Recipe name.
    pub recipe: String,
    /// The output directory (`out/RECIPE`).
    pub out_dir: PathBuf,
    /// `sha256:…` of every input (recorded in `manifest.json`).
    pub build_key: String,
    /// SOURCE_DATE_EPOCH used.
    pub source_date_epoch: i64,
    /// What was reused.
    pub reuse: Reuse,
    /// The outputs.
    pub manifest: Manifest,
    /// Wall-clock seconds.
    pub seconds: f64,
}

impl fmt::Display for BuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.reuse {
            Reuse::UpToDate => "up to date",
            Reuse::CachedRootfs => "re-emitted from the cached rootfs",
            Reuse::CachedPackages => "built on the cached package assembly",
            Reuse::Assembled => "built",
        };
        write!(
            f,
            "{} {how}: {} artifacts in {} ({:.1}s)",
            self.recipe,
            self.manifest.artifacts.len(),
            self.out_dir.display(),
            self.seconds
        )
    }
}

/// Everything a build needs, resolved and checked, before any work.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) recipe: Recipe,
    pub(crate) lock: Lockfile,
    pub(crate) store: Store,
    pub(crate) out_root: PathBuf,
    pub(crate) assemble: AssembleOptions,
    pub(crate) compression: Compression,
    /// Key of the assembled rootfs (the cache key).
    pub(crate) rootfs_key: String,
    /// Key of the package stage (the rootfs key without the steps).
    pub(crate) packages_key: String,
    /// Key of the outputs (rootfs key + output options).
    pub(crate) build_key: String,
    pub(crate) quiet: bool,
    /// Rootfs cache directory (also holds the tools tree).
    pub(crate) cache_dir: PathBuf,
    /// The recipe's components, built (their packages are in `lock`).
    pub(crate) components: Vec<crate::component::build::Built>,
    /// Deflated chunks of earlier builds; `None` if the cache cannot be made.
    pub(crate) chunks: Option<Arc<ChunkCache>>,
}

impl Plan {
    /// Loads the recipe and its fresh lock, checks the store, derives the keys.
    pub(crate) fn new(args: &BuildArgs) -> Result<Plan> {
        let loaded = Loaded::load(&args.workspace, &args.recipe)?;
        let mut lock = loaded.require(Demand::Fresh)?.clone();
        let recipe = loaded.recipe;
        let store = Store::open(&vendor_dir(&args.workspace, args.vendor.as_deref()))?;
        store.require(&lock, &recipe.name)?;
        let source_date_epoch = args
            .source_date_epoch
            .unwrap_or_else(|| rootfs::default_source_date_epoch(&lock));
        let assemble = AssembleOptions {
            source_date_epoch,
            hostname: recipe
                .hostname
                .clone()
                .unwrap_or_else(|| rootfs::default_hostname(&recipe.name)),
            run_scripts: !args.no_scripts,
        };
        let out_root = args
            .out
            .clone()
            .unwrap_or_else(|| args.workspace.join("out"));
        let cache_dir = args
            .cache_dir
            .clone()
            .unwrap_or_else(|| cache::default_dir(store.root()));
        // Components become packages of the (in-memory) lock before any key
        // is derived, so every key and output covers them.
        let components = crate::component::build::add_components(
            &recipe,
            &mut lock,
            &crate::component::build::BuildContext {
                store: &store,
                cache_dir: &cache_dir,
                // Not `out/`: a failed build leaves nothing there.
                work: &cache_dir.join("@components-work"),
                source_date_epoch,
                jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
                quiet: args.quiet,
            },
        )?;
        let recipe_hash = recipe.canonical_hash();
        let steps_hash = recipe.build_hash();
        let inputs = KeyInputs {
            lock: &lock,
            recipe_hash: &recipe_hash,
            steps_hash: &steps_hash,
            source_date_epoch,
            hostname: &assemble.hostname,
            run_scripts: assemble.run_scripts,
        };
        let rootfs_key = cache::rootfs_key(&inputs);
        let packages_key = cache::packages_key(&inputs);
        let build_key = image::outputs_of(&recipe).iter().fold(
            cache::output_key(&rootfs_key, args.compression),
            |key, o| o.extend_key(&key),
        );
        let chunks = ChunkCache::open(&cache_dir, &recipe.name)
            .ok()
            .map(Arc::new);
        Ok(Plan {
            components,
            chunks,
            cache_dir,
            recipe,
            lock,
            store,
            out_root,
            assemble,
            compression: args.compression,
            rootfs_key,
            packages_key,
            build_key,
            quiet: args.quiet,
        })
    }

    /// `out/RECIPE`.
    pub(crate) fn out_dir(&self) -> PathBuf {
        self.out_root.join(&self.recipe.name)
    }

    /// What `manifest.json` and the SBOM record.
    pub(crate) fn info(&self) -> ImageInfo<'_> {
        ImageInfo {
            lock: &self.lock,
            source_date_epoch: self.assemble.source_date_epoch,
            build_key: self.build_key.clone(),
            compression: self.compression,
            chunks: self.chunks.clone(),
        }
    }

    /// Assembles the rootfs in a temp directory under `work` and writes its
    /// deterministic tar to `w`; the tree is removed afterwards. With a
    /// `stage` cache, the package stage is taken from it when present (only
    /// the steps and normalisation run) and stored in it otherwise. `tools`
    /// is released when the packages' scripts start (or the stage is
    /// restored): from then on a core is free for it.
    pub(crate) fn assemble_tar(
        &self,
        work: &Path,
        w: &mut impl Write,
        stage: Option<&RootfsCache>,
        removals: &Removals,
        tools: Option<&ToolsAhead>,
    ) -> Result<(TarStats, Reuse)> {
        fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.rootfs-", self.recipe.name))
            .tempdir_in(work)
            .with_context(|| format!("creating a temp directory in {}", work.display()))?;
        // The tree's root becomes the tar's `./`: a root directory is 0755,
        // not the 0700 of a fresh temp directory.
        let root = tmp.path().join("root");
        fs::create_dir(&root).with_context(|| format!("creating {}", root.display()))?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", root.display()))?;
        let opts = TarOptions {
            source_date_epoch: self.assemble.source_date_epoch,
        };
        let name = &self.recipe.name;
        let context = || format!("assembling the root filesystem of `{name}`");
        // One terminal line per phase; nothing when quiet or not a terminal.
        let line = PhaseLine::for_terminal(self.quiet);
        // The layer's chunks are deflated while the scripts run.
        let speculation = self
            .chunks
            .clone()
            .map(|c| Speculation::new(c, GZIP_LEVEL, opts));
        let progress = Speculating {
            inner: &line,
            speculation: speculation.as_ref(),
            tools,
        };
        let recorded = stage.and_then(|c| Some((c, c.recorded(name, &self.packages_key)?)));
        let reused = match recorded {
            Some((stage, (tar, sha))) => {
                if !self.quiet {
                    eprintln!("Reusing the cached package assembly of {name}…");
                }
                if let Some(t) = tools {
                    t.release();
                }
                let restoring = Stamp::now();
                let trash = tmp.path().join("kept-trash");
                let got = rootfs::kept::reset_or_restore(
                    &self.cache_dir,
                    name,
                    stage,
                    &self.packages_key,
                    (&tar, &sha),
                    &root,
                    &trash,
                    &opts,
                )
                .with_context(context)?;
                if let (Some((_, how)), false) = (&got, self.quiet) {
                    eprintln!("  package stage: {how} ({})", timing(restoring));
                }
                got
            }
            None => None,
        };
        let (mut report, reuse) = match reused {
            Some((devices, _)) => {
                let report = rootfs::AssembleReport {
                    devices,
                    ..Default::default()
                };
                (report, Reuse::CachedPackages)
            }
            None => {
                // Packages assembled anew: the last tree is of no use.
                if stage.is_some() {
                    rootfs::kept::discard(&self.cache_dir, name, &tmp.path().join("kept-trash"));
                }
                if !self.quiet {
                    eprintln!("Assembling {name} ({} packages)…", self.lock.packages.len());
                }
                let report = rootfs::assemble_packages_with(
                    &self.lock,
                    &self.store,
                    &root,
                    &self.assemble,
                    &progress,
                )
                .with_context(context)?;
                if let Some(stage) = stage {
                    let staging = Stamp::now();
                    stage.insert_with(name, &self.packages_key, |w| {
                        write_tree_with_devices(&root, w, &opts, &report.devices).map(drop)
                    })?;
                    if !self.quiet {
                        eprintln!("  package stage cached: {}", timing(staging));
                    }
                }
                (report, Reuse::Assembled)
            }
        };
        crate::component::check_libraries(&root, &self.components, &self.recipe.architecture)?;
        rootfs::finish_with(
            &root,
            &self.assemble,
            &self.recipe.steps,
            &mut report,
            &progress,
        )
        .with_context(context)?;
        if !self.quiet {
            super::progress::print_assembly(&report);
        }
        // The real tar is written now: whatever the passes did not reach is
        // deflated with the outputs.
        if let Some(s) = &speculation {
            s.stop();
        }
        progress.phase("archive", None);
        let archiving = Stamp::now();
        let stats = write_tree_with_devices(&root, w, &opts, &report.devices)?;
        progress.phase_done();
        // The tree is not needed any more: kept for the next step-only
        // change (see `rootfs::kept`), else unlinked while the outputs are
        // written. (`verify`, without a stage cache, keeps nothing.)
        if stage.is_some() {
            rootfs::kept::keep(&self.cache_dir, name, &self.rootfs_key, &root);
        }
        removals.remove(tmp);
        if !self.quiet {
            eprintln!("  archive: {}", timing(archiving));
        }
        if !stats.skipped.is_empty() && !self.quiet {
            eprintln!(
                "warning: {} socket(s) left out of the rootfs tar: {}",
                stats.skipped.len(),
                stats.skipped.join(", ")
            );
        }
        Ok((stats, reuse))
    }
}

/// `12.3s (cpu 20.1s)`: the wall and CPU time since `start`.
pub(crate) fn timing(start: Stamp) -> String {
    let (wall, cpu) = start.elapsed();
    format!("{:.1}s (cpu {:.1}s)", wall.as_secs_f64(), cpu.as_secs_f64())
}

/// Runs the build. Prints progress and a summary on stderr unless quiet.
pub fn run(args: &BuildArgs) -> Result<BuildReport> {
    let started = Instant::now();
    let plan = Plan::new(args)?;
    let _lock =
        super::guard::Guard::acquire(&args.workspace, &plan.out_root, &plan.cache_dir, args.quiet)?;
    let dest = plan.out_dir();
    let report = |manifest: Manifest, reuse: Reuse| BuildReport {
        recipe: plan.recipe.name.clone(),
        out_dir: dest.clone(),
        build_key: plan.build_key.clone(),
        source_date_epoch: plan.assemble.source_date_epoch,
        reuse,
        manifest,
        seconds: started.elapsed().as_secs_f64(),
    };
    let done = |r: BuildReport| {
        if !args.quiet {
            eprintln!("{r}");
        }
        Ok(r)
    };

    if let Ok(existing) = Manifest::read(&dest)
        && existing.build_key == plan.build_key
        && existing.present_in(&dest)
    {
        return done(report(existing, Reuse::UpToDate));
    }

    fs::create_dir_all(&plan.out_root)
        .with_context(|| format!("creating {}", plan.out_root.display()))?;
    // Dropped last: the scratch trees are gone when the build returns.
    let removals = Removals::default();
    let cache = RootfsCache::new(&plan.cache_dir);
    let stage = RootfsCache::new(&cache::stage_dir(&plan.cache_dir));
    // The tools tree does not depend on the image: made while the rootfs is.
    let tools_ahead =
        (!plan.lock.tools.is_empty() && image::needs_tools(&plan.recipe)).then(|| {
            ToolsAhead::start(
                plan.lock.clone(),
                plan.store.clone(),
                plan.cache_dir.clone(),
                plan.out_root.clone(),
                plan.assemble.source_date_epoch,
            )
        });
    // The outputs are written into a temp directory, swapped in at the end.
    let outputs = outputs_dir(&plan, &dest)?;
    let outputs_path = outputs.path().to_path_buf();
    let work = dest.parent().unwrap_or(Path::new("."));
    let (manifest, reuse) = std::thread::scope(|scope| -> Result<_> {
        let (tar, reuse, early) = match cache.get(&plan.recipe.name, &plan.rootfs_key) {
            Some(tar) => (tar, Reuse::CachedRootfs, None),
            None => {
                let mut reuse = Reuse::Assembled;
                let start = Stamp::now();
                // The disk image starts on the tar's first bytes.
                let growing = Growing::new();
                let early = early_disk::start(
                    scope,
                    &plan,
                    &growing,
                    &outputs_path,
                    work,
                    tools_ahead.as_ref(),
                );
                let tar =
                    cache.insert_growing(&plan.recipe.name, &plan.rootfs_key, &growing, |w| {
                        plan.assemble_tar(
                            &plan.out_root,
                            w,
                            Some(&stage),
                            &removals,
                            tools_ahead.as_ref(),
                        )
                        .map(|(_, r)| reuse = r)
                    });
                let tar = match tar {
                    Ok(tar) => tar,
                    Err(e) => {
                        // The disk's own failure (it could not read the
                        // tar) says less than the assembly's.
                        drop(early_disk::join(early));
                        return Err(e);
                    }
                };
                if !args.quiet {
                    // Up to the rootfs tar: what a bootstrapper alone makes
                    // (bench/build-vs-mmdebstrap.sh reads this line).
                    eprintln!("  rootfs: {}", timing(start));
                }
                (tar, reuse, early)
            }
        };
        let manifest = emit_into(&plan, &tar, &dest, outputs, tools_ahead.as_ref(), early)?;
        Ok((manifest, reuse))
    })?;
    if let Some(chunks) = &plan.chunks {
        // Only the cache's size depends on this: a failure costs disk, not the build.
        let _ = chunks.commit();
    }
    done(report(manifest, reuse))
}
