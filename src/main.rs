//! The `imgbuild` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use imgbuild::lock::Lockfile;
use imgbuild::ops;

/// Reproducible OS images from pinned, verified lockfiles.
#[derive(Parser, Debug)]
#[command(name = "imgbuild", version, about)]
struct Cli {
    /// Workspace directory (holds recipes/, locks/, vendor/).
    #[arg(short = 'C', long = "directory", global = true, default_value = ".")]
    directory: PathBuf,
    /// Mirror for a named archive, NAME=URL (repeatable; tried in order);
    /// `snapshot=URL` is the snapshot service (files the live mirrors no
    /// longer have, `solve --snapshot`); `git:PREFIX=REPLACEMENT` redirects
    /// component git URLs starting with PREFIX (also IMGBUILD_MIRROR_GIT);
    /// `store=oci://HOST/REPO` fills the vendor store from that registry
    /// first (also IMGBUILD_STORE).
    #[arg(long = "mirror", global = true, value_name = "NAME=URL")]
    mirrors: Vec<String>,
    /// Never use the network: cached, verified indexes and the vendor store only.
    #[arg(long, global = true)]
    offline: bool,
    /// The lock must exist and be fresh for the recipe; it is never written
    /// (package files may still be fetched).
    #[arg(long, global = true)]
    locked: bool,
    /// `--locked` and `--offline` together: nothing is solved or fetched.
    #[arg(long, global = true)]
    frozen: bool,
    /// No progress bars or summaries.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More detail (timings).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Solve a recipe into locks/NAME.lock.
    Solve {
        /// Recipe name (recipes/NAME.toml) or path.
        recipe: String,
        /// Re-solve moving only these packages (none given: everything).
        #[arg(long, num_args = 0.., value_name = "PKG")]
        update: Option<Vec<String>>,
        /// Accept an InRelease whose Date is older than the one the lock
        /// records (normally refused as a possible replay).
        #[arg(long)]
        allow_downgrade: bool,
        /// Solve against the snapshot service's archive as it was at TS
        /// (YYYYMMDDTHHMMSSZ, UTC) for every source naming an archive; the
        /// service is `--mirror snapshot=URL` or IMGBUILD_MIRROR_SNAPSHOT.
        #[arg(long, value_name = "TS")]
        snapshot: Option<String>,
        /// Print a machine-readable report on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List what `solve --update` would move against the archive as it is
    /// now, without writing the lock (exit 1 when something would).
    Outdated {
        /// Recipe name or path.
        recipe: String,
        /// Print a machine-readable report on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Explain why a package is in a recipe's lock.
    Why {
        /// Recipe name or path.
        recipe: String,
        /// Package name.
        package: String,
        /// Print the chain as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download everything a lock names into the vendor store (verified).
    Fetch {
        /// Recipe name or path.
        recipe: String,
        /// Vendor store directory (default: $IMGBUILD_VENDOR, else ./vendor).
        #[arg(long, value_name = "DIR")]
        vendor: Option<PathBuf>,
        /// Parallel downloads.
        #[arg(short, long, default_value_t = ops::fetch::DEFAULT_JOBS)]
        jobs: usize,
        /// Re-hash blobs already in the store (corrupt ones are replaced).
        #[arg(long)]
        verify: bool,
        /// Adopt matching .deb files from a directory (e.g. /var/cache/apt/archives).
        #[arg(long, value_name = "DIR")]
        import: Option<PathBuf>,
    },
    /// Build a recipe's images: solve a missing lock, fetch missing package
    /// files, then build offline from the lock and the vendor store.
    Build {
        /// Recipe name or path.
        recipe: String,
        #[command(flatten)]
        opts: BuildOpts,
        /// Compression of out/NAME/rootfs.tar.
        #[arg(long, value_parser = ["none", "gzip", "zstd"], default_value = "none")]
        compression: String,
    },
    /// Build twice (different directory, umask, clock) and compare every
    /// artifact (solving and fetching first as `build` does).
    Verify {
        /// Recipe name or path.
        recipe: String,
        #[command(flatten)]
        opts: BuildOpts,
    },
    /// Maintain the vendor store.
    Vendor {
        #[command(subcommand)]
        command: VendorCommand,
        /// Vendor store directory (default: $IMGBUILD_VENDOR, else ./vendor).
        #[arg(long, value_name = "DIR", global = true)]
        vendor: Option<PathBuf>,
    },
    /// Publish out/RECIPE/ to an OCI registry: the image, its image files as
    /// artifacts, the lock, SBOMs and signed provenance as referrers.
    Publish {
        /// Recipe name or path.
        recipe: String,
        /// HOST[:PORT]/REPO[:TAG], or a repository name joined to IMGBUILD_REGISTRY
        /// (default: the recipe's `[publish] repository`, else its name).
        reference: Option<String>,
        /// Registry HOST[:PORT] used when REF has none.
        #[arg(long, env = "IMGBUILD_REGISTRY", value_name = "HOST[:PORT]")]
        registry: Option<String>,
        /// Another tag to point at the image (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// PEM private key (ECDSA P-256 or Ed25519) signing the provenance and the image.
        #[arg(long, env = "IMGBUILD_SIGNING_KEY", value_name = "FILE")]
        key: Option<PathBuf>,
        /// Repository of the same registry to mount existing blobs from.
        #[arg(long, value_name = "REPO")]
        mount_from: Option<String>,
        /// Output directory (default: ./out).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Publish out/RECIPE/ as it is, without running `build` first.
        #[arg(long)]
        no_build: bool,
        /// Vendor store for that build (default: $IMGBUILD_VENDOR, else ./vendor).
        #[arg(long, value_name = "DIR")]
        vendor: Option<PathBuf>,
        /// That build: unpack only, no maintainer scripts (as `build --no-scripts`).
        #[arg(long)]
        no_scripts: bool,
        /// A file (at most 16 MiB) published as a referrer of the image and a
        /// subject of the provenance, e.g. a drift report (repeatable).
        #[arg(long = "attach", value_name = "FILE")]
        attach: Vec<PathBuf>,
        /// org.opencontainers.image.revision (default: the workspace's git HEAD).
        #[arg(long)]
        revision: Option<String>,
        /// Blobs larger than this are uploaded in chunks.
        #[arg(long, value_name = "BYTES", hide = true)]
        monolithic_limit: Option<u64>,
        /// Most bytes per PATCH of a chunked upload (default: the rest of
        /// the blob, streamed in one request).
        #[arg(long, value_name = "BYTES", hide = true)]
        chunk_size: Option<u64>,
        #[command(flatten)]
        registry_opts: RegistryOpts,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Fetch an image or artifact with its files, checking every digest (and,
    /// with a key, the signature and provenance).
    Pull {
        /// HOST[:PORT]/REPO[:TAG|@DIGEST].
        reference: String,
        /// Public key (PEM) the image signature and provenance must verify with.
        #[arg(long, value_name = "FILE")]
        verify_key: Option<PathBuf>,
        /// Output directory.
        #[arg(short = 'o', long = "output", value_name = "DIR", default_value = ".")]
        output: PathBuf,
        /// Only print the digest REF names (nothing when the tag does not
        /// exist) and write nothing.
        #[arg(long, conflicts_with = "verify_key")]
        resolve: bool,
        #[command(flatten)]
        registry_opts: RegistryOpts,
    },
    /// Print the locked dependency tree.
    Tree {
        /// Recipe name or path.
        recipe: String,
        /// Also show the Essential/required set.
        #[arg(long)]
        essential: bool,
        /// Maximum depth.
        #[arg(long)]
        depth: Option<usize>,
    },
}

/// Options shared by `build` and `verify`.
#[derive(clap::Args, Debug)]
struct BuildOpts {
    /// Vendor store directory (default: $IMGBUILD_VENDOR, else ./vendor).
    #[arg(long, value_name = "DIR")]
    vendor: Option<PathBuf>,
    /// Output directory (default: ./out); artifacts go to OUT/NAME/.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Fixed time for the build (default: $SOURCE_DATE_EPOCH, else the lock's newest index date).
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    source_date_epoch: Option<i64>,
    /// Unpack only: do not run maintainer scripts.
    #[arg(long)]
    no_scripts: bool,
    /// Re-solve a stale lock (keeping every locked version the recipe still
    /// allows) instead of failing.
    #[arg(long)]
    update: bool,
}

impl BuildOpts {
    /// The preparation (solve / fetch what is missing) for `recipe`.
    fn prepare(&self, cli: &Cli, recipe: &str) -> ops::prepare::PrepareArgs {
        ops::prepare::PrepareArgs {
            recipe: recipe.to_string(),
            workspace: cli.directory.clone(),
            vendor: self.vendor.clone(),
            mirrors: cli.mirrors.clone(),
            apt_dir: apt_dir(),
            locked: cli.locked,
            frozen: cli.frozen,
            offline: cli.offline,
            update: self.update,
            quiet: cli.quiet,
            verbose: cli.verbose,
        }
    }
}

/// How to reach a registry.
#[derive(clap::Args, Debug)]
struct RegistryOpts {
    /// Plain http (only for a registry on a loopback address).
    #[arg(long)]
    insecure: bool,
    /// Extra CA certificates (PEM) trusted besides the system's.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

impl RegistryOpts {
    fn transport(&self) -> imgbuild::registry::TransportOptions {
        imgbuild::registry::TransportOptions {
            insecure: self.insecure,
            ca_file: self.ca_file.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
enum VendorCommand {
    /// Remove blobs that no lock under locks/ references.
    Gc,
    /// Re-hash every blob; report (and remove) corrupt ones.
    Verify,
    /// Upload every file the recipe's lock pins (and its signed indexes) to
    /// an OCI registry repository, under one store manifest per lock, for
    /// `--mirror store=oci://HOST/REPO` to fill other stores from. Blobs
    /// already there are not sent again.
    Push {
        /// [oci://]HOST[:PORT]/REPO[:TAG]; the default tag is
        /// RECIPE-lock-<first 12 hex of sha256 of locks/RECIPE.lock>.
        reference: String,
        /// Recipe name or path.
        recipe: String,
        /// Uploads at once.
        #[arg(short, long, default_value_t = imgbuild::fetch::oci_store::DEFAULT_JOBS)]
        jobs: usize,
        #[command(flatten)]
        registry_opts: RegistryOpts,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn apt_dir() -> PathBuf {
    std::env::var_os("IMGBUILD_APT_DIR").map_or_else(|| PathBuf::from("/etc/apt"), PathBuf::from)
}

fn main() -> ExitCode {
    imgbuild::core::alloc::tune();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", ops::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

fn read_lock(workspace: &std::path::Path, recipe: &str) -> Result<Lockfile> {
    ops::workspace::Loaded::load(workspace, recipe)?.into_lock(ops::workspace::Demand::Exists)
}

fn run(cli: Cli) -> Result<ExitCode> {
    // Rootless: a build or verify re-runs itself in a mapped user namespace.
    if matches!(cli.command, Command::Build { .. } | Command::Verify { .. })
        && let Some(code) = ops::rootless::reexec(cli.quiet)?
    {
        return Ok(code);
    }
    let ws = cli.directory.clone();
    // `--frozen` is `--locked` without the network, for every command.
    let locked = cli.locked || cli.frozen;
    let offline = cli.offline || cli.frozen;
    match &cli.command {
        Command::Build { recipe, opts, .. } | Command::Verify { recipe, opts } => {
            // Prints what it solves and fetches unless quiet.
            ops::prepare::run(&opts.prepare(&cli, recipe))?;
        }
        _ => {}
    }
    match cli.command {
        Command::Solve {
            recipe,
            update,
            allow_downgrade,
            snapshot,
            json,
        } => {
            if locked && update.is_some() {
                anyhow::bail!("--update cannot be combined with --locked or --frozen");
            }
            if locked && snapshot.is_some() {
                anyhow::bail!("--snapshot cannot be combined with --locked or --frozen");
            }
            let update = match update {
                None => imgbuild::lock::Update::Minimal,
                Some(v) if v.is_empty() => imgbuild::lock::Update::All,
                Some(v) => imgbuild::lock::Update::Packages(v),
            };
            let args = ops::solve::SolveArgs {
                recipe,
                workspace: ws,
                mirrors: cli.mirrors,
                locked,
                update,
                offline,
                quiet: cli.quiet || json,
                apt_dir: apt_dir(),
                allow_downgrade,
                snapshot,
            };
            let report = ops::solve::run(&args)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).context("encoding the report")?
                );
            } else if !cli.quiet {
                eprint!("{}", report.render(locked, cli.verbose));
            }
        }
        Command::Outdated { recipe, json } => {
            let args = ops::solve::SolveArgs {
                recipe,
                workspace: ws,
                mirrors: cli.mirrors,
                offline,
                quiet: true,
                apt_dir: apt_dir(),
                ..Default::default()
            };
            // 0: current, 1: updates available, 2: could not tell (for CI).
            let report = match ops::outdated::run(&args) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {}", ops::error_text(&e));
                    return Ok(ExitCode::from(2));
                }
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).context("encoding the report")?
                );
            } else {
                print!("{report}");
            }
            if report.has_updates() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Why {
            recipe,
            package,
            json,
        } => {
            let lock = read_lock(&ws, &recipe)?;
            let steps = ops::why::chain(&lock, &package)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&steps)?);
            } else {
                print!("{}", ops::why::render(&lock, &package, &steps));
            }
        }
        Command::Fetch {
            recipe,
            vendor,
            jobs,
            verify,
            import,
        } => {
            let args = ops::fetch::FetchArgs {
                recipe,
                workspace: ws,
                vendor,
                jobs,
                mirrors: cli.mirrors,
                verify,
                import,
                locked,
                offline,
                quiet: cli.quiet,
                apt_dir: apt_dir(),
                cache_dir: None,
            };
            // Prints its own summary line unless quiet.
            ops::fetch::run(&args)?;
        }
        Command::Build {
            recipe,
            opts,
            compression,
        } => {
            let compression = match compression.as_str() {
                "gzip" => imgbuild::pack::Compression::Gzip,
                "zstd" => imgbuild::pack::Compression::Zstd,
                _ => imgbuild::pack::Compression::None,
            };
            let args = ops::build::BuildArgs {
                recipe,
                workspace: ws,
                vendor: opts.vendor,
                out: opts.out,
                source_date_epoch: opts.source_date_epoch,
                quiet: cli.quiet,
                compression,
                no_scripts: opts.no_scripts,
                cache_dir: None,
            };
            // Prints its own progress and summary unless quiet.
            ops::build::run(&args)?;
        }
        Command::Verify { recipe, opts } => {
            let args = ops::verify::VerifyArgs {
                recipe,
                workspace: ws,
                vendor: opts.vendor,
                out: opts.out,
                source_date_epoch: opts.source_date_epoch,
                no_scripts: opts.no_scripts,
                quiet: cli.quiet,
            };
            // Prints its own summary unless quiet; fails on any difference.
            ops::verify::run(&args)?;
        }
        Command::Vendor { command, vendor } => match command {
            VendorCommand::Gc => {
                let summary = ops::vendor::gc(&ws, vendor.as_deref())?;
                if !cli.quiet {
                    eprintln!("{summary}");
                }
            }
            VendorCommand::Verify => {
                let summary = ops::vendor::verify(&ws, vendor.as_deref())?;
                if !cli.quiet {
                    eprintln!("{summary}");
                }
                summary.ensure_clean()?;
            }
            VendorCommand::Push {
                reference,
                recipe,
                jobs,
                registry_opts,
                json,
            } => {
                let report = ops::vendor::push(&ops::vendor::PushArgs {
                    target: reference,
                    recipe,
                    workspace: ws,
                    vendor,
                    transport: registry_opts.transport(),
                    cache_dir: None,
                    jobs,
                })?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                }
                if !cli.quiet {
                    eprintln!("{report}");
                }
            }
        },
        Command::Publish {
            recipe,
            reference,
            registry,
            tags,
            key,
            mount_from,
            out,
            no_build,
            vendor,
            no_scripts,
            attach,
            revision,
            monolithic_limit,
            chunk_size,
            registry_opts,
            json,
        } => {
            let args = ops::publish::PublishArgs {
                recipe,
                workspace: ws,
                out,
                target: reference,
                registry,
                tags,
                key,
                mount_from,
                transport: registry_opts.transport(),
                revision,
                monolithic_limit,
                chunk_size,
                quiet: cli.quiet,
                no_build,
                vendor,
                no_scripts,
                attach,
            };
            // Prints its own progress and summary unless quiet.
            let report = ops::publish::run(&args)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
        }
        Command::Pull {
            reference,
            verify_key,
            output,
            resolve,
            registry_opts,
        } => {
            if resolve {
                let found = ops::pull::resolve(&reference, &registry_opts.transport())?;
                if let Some(digest) = found {
                    println!("{digest}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let args = ops::pull::PullArgs {
                reference,
                out_dir: output,
                verify_key,
                transport: registry_opts.transport(),
                quiet: cli.quiet,
            };
            ops::pull::run(&args)?;
        }
        Command::Tree {
            recipe,
            essential,
            depth,
        } => {
            let lock = read_lock(&ws, &recipe)?;
            print!("{}", ops::tree::render(&lock, essential, depth));
        }
    }
    Ok(ExitCode::SUCCESS)
}
