//! What `imgbuild build` and `imgbuild verify` do before building, the way
//! `cargo build` resolves a missing `Cargo.lock` and downloads missing
//! crates: no lock → solve it; a lock → use it as it is (a stale one is an
//! error unless `--update` asked for a re-solve); package files missing from
//! the vendor store → fetch them, verified as `imgbuild fetch` does.
//!
//! The network is used here only; the build that follows reads the lock and
//! the store and nothing else, as before. cargo's flags keep their meaning:
//! `--locked` (the lock must exist and be fresh; fetching is allowed),
//! `--frozen` (`--locked` and no network at all) and `--offline` (no
//! network: solve only from cached, verified indexes; fetch nothing).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::fetch::{FetchSummary, Store, vendor_dir};
use crate::lock::Update;
use crate::ops::fetch::{self, FetchArgs};
use crate::ops::solve::{self, SolveArgs, SolveReport};
use crate::ops::workspace::{Demand, Loaded, LockState};

/// How many missing files a `--frozen` error lists.
const LIST_LIMIT: usize = 10;

/// The arguments of the preparation of a build.
#[derive(Debug, Clone, Default)]
pub struct PrepareArgs {
    /// Recipe name or path.
    pub recipe: String,
    /// The project directory (`-C`).
    pub workspace: PathBuf,
    /// `--vendor DIR`; else `$IMGBUILD_VENDOR`, else `<workspace>/vendor`.
    pub vendor: Option<PathBuf>,
    /// `--mirror NAME=URL`, repeatable.
    pub mirrors: Vec<String>,
    /// apt configuration directory (default mirrors); `/etc/apt` normally.
    pub apt_dir: PathBuf,
    /// `--locked`: the lock must exist and be fresh.
    pub locked: bool,
    /// `--frozen`: `--locked`, and no network at all.
    pub frozen: bool,
    /// `--offline`: no network; cached indexes and the store only.
    pub offline: bool,
    /// `--update`: re-solve a stale lock (keeping every locked version the
    /// recipe still allows) instead of failing.
    pub update: bool,
    /// No progress lines or summaries.
    pub quiet: bool,
    /// Timings in the solve summary.
    pub verbose: bool,
}

/// What the preparation did (both `None`: the lock and the store were
/// complete and nothing was done).
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// The solve, when the lock was missing (or stale with `--update`).
    pub solved: Option<SolveReport>,
    /// The fetch, when package files were missing from the store.
    pub fetched: Option<FetchSummary>,
}

/// Makes the lock and the store complete for the recipe, or fails saying
/// which flag forbade it and what is missing. With `--frozen` or `--locked`
/// nothing is written when the lock is missing or stale; with `--frozen`
/// nothing at all is written.
pub fn run(args: &PrepareArgs) -> Result<Prepared> {
    let locked = args.locked || args.frozen;
    let offline = args.offline || args.frozen;
    if locked && args.update {
        bail!(
            "--update cannot be combined with --locked or --frozen (they forbid changing the lock)"
        );
    }
    let loaded = Loaded::load(&args.workspace, &args.recipe)?;
    let name = loaded.recipe.name.clone();
    let mut prepared = Prepared::default();
    if locked {
        loaded.require(Demand::Locked)?;
    }
    let solve_why = match loaded.state() {
        LockState::Fresh => None,
        LockState::Missing => Some("no lock yet".to_string()),
        LockState::Stale(why) if args.update => Some(format!("--update: the lock is stale: {why}")),
        LockState::Stale(_) => {
            let err = loaded.require(Demand::Fresh).unwrap_err();
            bail!("{err}, or pass --update to re-solve it");
        }
    };
    if let Some(why) = solve_why {
        if !args.quiet {
            eprintln!("Solving {name} ({why})…");
        }
        let report = solve::run(&SolveArgs {
            recipe: args.recipe.clone(),
            workspace: args.workspace.clone(),
            mirrors: args.mirrors.clone(),
            locked: false,
            update: Update::Minimal,
            offline,
            quiet: args.quiet,
            apt_dir: args.apt_dir.clone(),
            allow_downgrade: false,
            snapshot: None,
        })?;
        if !args.quiet {
            eprint!("{}", report.render(false, args.verbose));
        }
        prepared.solved = Some(report);
    }

    let loaded = Loaded::load(&args.workspace, &args.recipe)?;
    let lock = loaded.require(Demand::Fresh)?;
    let store = Store::open(&vendor_dir(&args.workspace, args.vendor.as_deref()))?;
    let Err(missing) = store.require(lock, &name) else {
        return Ok(prepared);
    };
    let (n, total) = (missing.missing.len(), missing.total);
    if args.frozen {
        let mut msg = format!(
            "--frozen: {n} of {total} files of `{name}` are missing from the vendor store {}:",
            store.root().display()
        );
        for m in missing.missing.iter().take(LIST_LIMIT) {
            let _ = write!(
                msg,
                "\n  - {} ({}, {} bytes)",
                m.package, m.filename, m.size
            );
        }
        if n > LIST_LIMIT {
            let _ = write!(msg, "\n  … and {} more", n - LIST_LIMIT);
        }
        let _ = write!(
            msg,
            "\n--frozen forbids fetching; run `imgbuild fetch {}` first, or drop --frozen",
            args.recipe
        );
        bail!(msg);
    }
    if !args.quiet {
        eprintln!(
            "Fetching {n} of {total} files of {name} into {}…",
            store.root().display()
        );
    }
    let summary = fetch::run(&FetchArgs {
        recipe: args.recipe.clone(),
        workspace: args.workspace.clone(),
        vendor: args.vendor.clone(),
        mirrors: args.mirrors.clone(),
        offline,
        quiet: args.quiet,
        apt_dir: args.apt_dir.clone(),
        ..FetchArgs::default()
    })?;
    prepared.fetched = Some(summary);
    Ok(prepared)
}
