//! The `imgbuild` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use imgbuild::lock::Lockfile;
use imgbuild::ops;
use imgbuild::recipe::Recipe;

/// Reproducible OS images from pinned, verified lockfiles.
#[derive(Parser, Debug)]
#[command(name = "imgbuild", version, about)]
struct Cli {
    /// Workspace directory (holds recipes/, locks/, vendor/).
    #[arg(short = 'C', long = "directory", global = true, default_value = ".")]
    directory: PathBuf,
    /// Mirror for a named archive, NAME=URL (repeatable; tried in order);
    /// `git:PREFIX=REPLACEMENT` redirects component git URLs starting with
    /// PREFIX (also IMGBUILD_MIRROR_GIT).
    #[arg(long = "mirror", global = true, value_name = "NAME=URL")]
    mirrors: Vec<String>,
    /// Never use the network: cached indexes / the vendor store only.
    #[arg(long, global = true)]
    offline: bool,
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
        /// Fail if the lock is missing or stale for the recipe; change nothing.
        #[arg(long, conflicts_with = "update")]
        locked: bool,
        /// Re-solve moving only these packages (none given: everything).
        #[arg(long, num_args = 0.., value_name = "PKG")]
        update: Option<Vec<String>>,
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
    /// Build a recipe's images offline from its lock and the vendor store.
    Build {
        /// Recipe name or path.
        recipe: String,
        #[command(flatten)]
        opts: BuildOpts,
        /// Compression of out/NAME/rootfs.tar.
        #[arg(long, value_parser = ["none", "gzip", "zstd"], default_value = "none")]
        compression: String,
    },
    /// Build twice (different directory, umask, clock) and compare every artifact.
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
}

#[derive(Subcommand, Debug)]
enum VendorCommand {
    /// Remove blobs that no lock under locks/ references.
    Gc,
    /// Re-hash every blob; report (and remove) corrupt ones.
    Verify,
}

fn apt_dir() -> PathBuf {
    std::env::var_os("IMGBUILD_APT_DIR").map_or_else(|| PathBuf::from("/etc/apt"), PathBuf::from)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn read_lock(workspace: &std::path::Path, recipe: &str) -> Result<Lockfile> {
    let recipe = Recipe::load(workspace, recipe)?;
    let path = ops::solve::lock_path(workspace, &recipe);
    if !path.exists() {
        anyhow::bail!(
            "{} does not exist: run `imgbuild solve {}` first",
            path.display(),
            recipe.name
        );
    }
    Ok(Lockfile::read(&path)?)
}

fn run(cli: Cli) -> Result<ExitCode> {
    let ws = cli.directory.clone();
    match cli.command {
        Command::Solve {
            recipe,
            locked,
            update,
            json,
        } => {
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
                offline: cli.offline,
                quiet: cli.quiet || json,
                apt_dir: std::env::var_os("IMGBUILD_APT_DIR")
                    .map_or_else(|| PathBuf::from("/etc/apt"), PathBuf::from),
            };
            let report = ops::solve::run(&args)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).context("encoding the report")?
                );
            } else if !cli.quiet {
                print_solve_report(&report, locked, cli.verbose);
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
                offline: cli.offline,
                quiet: cli.quiet,
                apt_dir: apt_dir(),
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
        },
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

fn print_solve_report(r: &ops::solve::SolveReport, locked: bool, verbose: bool) {
    let lock = r.lock.strip_prefix(".").unwrap_or(&r.lock).display();
    let per: Vec<String> = r
        .per_source
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    if locked {
        eprintln!(
            "{} is up to date ({} packages: {})",
            lock,
            r.packages,
            per.join(", ")
        );
        return;
    }
    for c in &r.changes {
        match (&c.old, &c.new) {
            (Some(o), Some(n)) => eprintln!("  Updating {} {o} -> {n}", c.name),
            (None, Some(n)) => eprintln!("    Adding {} {n}", c.name),
            (Some(o), None) => eprintln!("  Removing {} {o}", c.name),
            (None, None) => {}
        }
    }
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    let verb = if r.changed { "Locked" } else { "Unchanged" };
    let tools = if r.tools > 0 {
        format!(" and {} tools", r.tools)
    } else {
        String::new()
    };
    let python = if r.python > 0 {
        format!(" and {} Python distributions", r.python)
    } else {
        String::new()
    };
    let python = if r.components.is_empty() {
        python
    } else {
        format!("{python} and component(s) {}", r.components.join(", "))
    };
    eprintln!(
        "{verb} {} packages ({}){tools}{python} in {}",
        r.packages,
        per.join(", "),
        lock
    );
    if verbose {
        eprintln!(
            "indexes loaded in {:.2}s, solved in {:.3}s",
            r.load_seconds, r.solve_seconds
        );
    }
}
