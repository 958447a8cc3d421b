//! `imgbuild solve RECIPE`: recipe → verified indexes → solution → lock.

pub mod components;
pub mod tools;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::archive::{self, FetchOptions, LoadedSource, Mirrors};
use crate::lock::{Change, LockedSource, Lockfile, Update, build_lock, diff, preferences};
use crate::ops::workspace::{Demand, Loaded};
use crate::recipe::Recipe;
use crate::solve::{self, EdgeKind, Request, RootRequirement, SourceInfo, Universe};

/// Options of `imgbuild solve`.
#[derive(Debug, Clone, Default)]
pub struct SolveArgs {
    /// Recipe name or path.
    pub recipe: String,
    /// Workspace root (holds `recipes/` and `locks/`).
    pub workspace: PathBuf,
    /// `--mirror NAME=URL` values.
    pub mirrors: Vec<String>,
    /// `--locked`: fail if the lock is stale, change nothing.
    pub locked: bool,
    /// How to treat the existing lock.
    pub update: Update,
    /// Use cached indexes only.
    pub offline: bool,
    /// No progress output.
    pub quiet: bool,
    /// Where apt's configuration lives (default mirrors); `/etc/apt` normally.
    pub apt_dir: PathBuf,
    /// `--allow-downgrade`: accept an InRelease older than the lock's.
    pub allow_downgrade: bool,
    /// `--snapshot TS`: read every source that names an archive as the
    /// snapshot service had it at `TS` (`YYYYMMDDTHHMMSSZ`), overriding the
    /// recipe's own `snapshot`.
    pub snapshot: Option<String>,
}

/// What a solve did, for the summary line and `--json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SolveReport {
    /// Recipe name.
    pub recipe: String,
    /// Path of the lock written (or checked).
    pub lock: PathBuf,
    /// Number of packages in the lock.
    pub packages: usize,
    /// Packages per source.
    pub per_source: BTreeMap<String, usize>,
    /// Number of packages in the tools tree (`[[tool]]`).
    pub tools: usize,
    /// Whether the lock file changed.
    pub changed: bool,
    /// `name old -> new` lines (old or new may be `-`).
    pub changes: Vec<Change>,
    /// Seconds spent loading indexes.
    pub load_seconds: f64,
    /// Seconds spent solving.
    pub solve_seconds: f64,
    /// Number of `[[python]]` entries in the lock.
    pub python: usize,
    /// Remarks from the Python resolution.
    pub notes: Vec<String>,
    /// `name version (N build packages)` of each `[[component]]`.
    pub components: Vec<String>,
}

pub use crate::ops::workspace::lock_path;

impl SolveReport {
    /// The summary on stderr: `Updating/Adding/Removing` lines, notes, and
    /// `Locked N packages (…) in LOCK` (or `LOCK is up to date` for
    /// `--locked`); with `verbose`, the timings. Each line ends in `\n`.
    pub fn render(&self, locked: bool, verbose: bool) -> String {
        let mut out = String::new();
        let lock = self.lock.strip_prefix(".").unwrap_or(&self.lock).display();
        let per: Vec<String> = self
            .per_source
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        if locked {
            let _ = writeln!(
                out,
                "{} is up to date ({} packages: {})",
                lock,
                self.packages,
                per.join(", ")
            );
            return out;
        }
        for c in &self.changes {
            let _ = match (&c.old, &c.new) {
                (Some(o), Some(n)) => writeln!(out, "  Updating {} {o} -> {n}", c.name),
                (None, Some(n)) => writeln!(out, "    Adding {} {n}", c.name),
                (Some(o), None) => writeln!(out, "  Removing {} {o}", c.name),
                (None, None) => Ok(()),
            };
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        let verb = if self.changed { "Locked" } else { "Unchanged" };
        let tools = if self.tools > 0 {
            format!(" and {} tools", self.tools)
        } else {
            String::new()
        };
        let python = if self.python > 0 {
            format!(" and {} Python distributions", self.python)
        } else {
            String::new()
        };
        let python = if self.components.is_empty() {
            python
        } else {
            format!("{python} and component(s) {}", self.components.join(", "))
        };
        let _ = writeln!(
            out,
            "{verb} {} packages ({}){tools}{python} in {}",
            self.packages,
            per.join(", "),
            lock
        );
        if verbose {
            let _ = writeln!(
                out,
                "indexes loaded in {:.2}s, solved in {:.3}s",
                self.load_seconds, self.solve_seconds
            );
        }
        out
    }
}

/// Runs the solve verb.
pub fn run(args: &SolveArgs) -> Result<SolveReport> {
    let loaded = Loaded::load(&args.workspace, &args.recipe)?;
    if args.locked {
        let lock = loaded.require(Demand::Locked)?;
        // Up to date is not enough: every entry must be a signed stanza.
        let mirrors = (!args.offline)
            .then(|| Mirrors::new(&args.mirrors, &args.apt_dir))
            .transpose()?;
        let opts = FetchOptions {
            offline: args.offline,
            cache_dir: FetchOptions::default_cache_dir(),
            quiet: args.quiet,
            freshness: Default::default(),
        };
        let audit = archive::audit_lock(
            &loaded.recipe,
            lock,
            &loaded.lock_path,
            mirrors.as_ref(),
            &opts,
        )?;
        if !args.quiet {
            audit.notes.iter().for_each(|n| eprintln!("note: {n}"));
        }
        let python_opts = crate::pypi::SolveOptions {
            mirrors: &args.mirrors,
            offline: args.offline,
            cache_dir: FetchOptions::default_cache_dir(),
        };
        crate::pypi::audit_lock(lock, &loaded.lock_path, &python_opts)?;
        return Ok(SolveReport {
            recipe: loaded.recipe.name.clone(),
            lock: loaded.lock_path.clone(),
            packages: lock.packages.len(),
            per_source: count_sources(lock),
            tools: lock.tools.len(),
            changed: false,
            changes: Vec::new(),
            load_seconds: 0.0,
            solve_seconds: 0.0,
            python: lock.python.len(),
            notes: Vec::new(),
            components: component_lines(lock),
        });
    }
    let solved = resolve(args, loaded)?;
    let Solved {
        recipe,
        path,
        previous,
        lock,
        notes,
        load_seconds,
        solve_seconds,
    } = solved;
    let changes = previous
        .as_ref()
        .map(|old| diff(old, &lock))
        .unwrap_or_default();
    let changed = previous
        .as_ref()
        .is_none_or(|old| old.to_toml() != lock.to_toml());
    if changed {
        std::fs::create_dir_all(path.parent().unwrap())
            .with_context(|| format!("creating {}", path.parent().unwrap().display()))?;
        lock.write_atomic(&path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(SolveReport {
        recipe: recipe.name.clone(),
        lock: path,
        packages: lock.packages.len(),
        per_source: count_sources(&lock),
        tools: lock.tools.len(),
        changed,
        changes,
        load_seconds,
        solve_seconds,
        python: lock.python.len(),
        notes,
        components: component_lines(&lock),
    })
}

/// A solve's result before anything is written.
pub struct Solved {
    /// The recipe solved.
    pub recipe: Recipe,
    /// Its lock path.
    pub path: PathBuf,
    /// The lock there before, if any.
    pub previous: Option<Lockfile>,
    /// The new lock.
    pub lock: Lockfile,
    /// Remarks from the Python resolution.
    pub notes: Vec<String>,
    /// Seconds spent loading indexes.
    pub load_seconds: f64,
    /// Seconds spent solving.
    pub solve_seconds: f64,
}

/// Loads the indexes and solves `loaded`'s recipe as `args` says, keeping
/// the previous lock's versions where the update rule allows; writes
/// nothing (`run` writes the lock, `outdated` only compares).
pub fn resolve(args: &SolveArgs, loaded: Loaded) -> Result<Solved> {
    let Loaded {
        mut recipe,
        lock_path: path,
        lock: previous,
        ..
    } = loaded;
    if let Some(text) = &args.snapshot {
        let ts = crate::core::timestamp::Timestamp::parse(text)
            .map_err(|e| anyhow::anyhow!("--snapshot: {e}"))?;
        // Not part of the recipe's hash: the lock records it per source.
        for s in &mut recipe.sources {
            if matches!(s.location, crate::recipe::Location::Archive(_)) {
                s.snapshot = Some(ts.clone());
            }
        }
    }

    let t = Instant::now();
    let mirrors = Mirrors::new(&args.mirrors, &args.apt_dir)?;
    let opts = FetchOptions {
        offline: args.offline,
        cache_dir: FetchOptions::default_cache_dir(),
        quiet: args.quiet,
        freshness: archive::Freshness {
            previous: previous
                .as_ref()
                .map(|l| l.source_dates_for(&recipe))
                .unwrap_or_default(),
            allow_downgrade: args.allow_downgrade,
            now: None,
        },
    };
    let loaded = archive::load_sources_for(&recipe, &mirrors, &opts, &reach(&recipe))?;
    let load_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let (universe, headers) = universe_of(&recipe, loaded);
    let mut roots: Vec<RootRequirement> = recipe
        .packages
        .iter()
        .map(|r| RootRequirement {
            dependency: r.dependency.clone(),
            kind: EdgeKind::Requested,
        })
        .collect();
    roots.extend(components::runtime_roots(&recipe));
    if recipe.essential {
        roots.extend(solve::essential_requirements(&universe));
    }
    let prefer = match (&previous, &args.update) {
        (Some(lock), Update::Minimal) => preferences(&universe, lock, &[]),
        (Some(lock), Update::Packages(names)) => {
            for n in names {
                let known = lock.package(n).is_some()
                    || lock.python.iter().any(|p| p.name == *n)
                    || lock.tools.iter().any(|p| p.name == *n)
                    || lock
                        .components
                        .iter()
                        .any(|c| c.name == *n || c.packages.iter().any(|p| p.name == *n));
                if !known {
                    bail!("--update {n}: `{n}` is not in {}", path.display());
                }
            }
            preferences(&universe, lock, names)
        }
        _ => HashMap::new(),
    };
    let request = Request {
        roots: roots.clone(),
        recommends: recipe.recommends,
        prefer,
    };
    let solution = solve::solve(&universe, request)
        .with_context(|| format!("cannot solve `{}`", recipe.name))?;

    let mut lock = build_lock(&recipe, &universe, &solution, &roots, headers);
    lock.tools =
        crate::ops::solve::tools::solve_tools(&recipe, &universe, previous.as_ref(), &args.update)
            .with_context(|| format!("cannot solve the tools of `{}`", recipe.name))?;
    let git = crate::component::GitMirrors::from_env(&args.mirrors)?;
    lock.components = components::solve_components(
        &recipe,
        &universe,
        previous.as_ref(),
        &args.update,
        &git,
        args.offline,
    )?;
    lock.sort_packages();
    let moving = match &args.update {
        Update::Minimal => Some(&[][..]),
        Update::Packages(names) => Some(names.as_slice()),
        Update::All => None,
    };
    let python_opts = crate::pypi::SolveOptions {
        mirrors: &args.mirrors,
        offline: args.offline,
        cache_dir: FetchOptions::default_cache_dir(),
    };
    let notes =
        crate::pypi::lock_python(&recipe, &mut lock, previous.as_ref(), moving, &python_opts)?;
    // Names and versions came from cached record snapshots: re-read every
    // entry from the verified text before the lock is written.
    archive::audit::check_built_lock(&lock, &universe, &path)?;
    let solve_seconds = t.elapsed().as_secs_f64();
    Ok(Solved {
        recipe,
        path,
        previous,
        lock,
        notes,
        load_seconds,
        solve_seconds,
    })
}

/// What the solves below can ask the universe about: every name in the
/// roots of the image, tools and component solves (the archive adds the
/// Essential/required set), with Recommends when the image follows them.
fn reach(recipe: &Recipe) -> archive::Select {
    let runtime = components::runtime_roots(recipe);
    let roots = recipe
        .packages
        .iter()
        .chain(&recipe.tools)
        .chain(recipe.components.iter().flat_map(|c| &c.build_depends))
        .map(|r| &r.dependency)
        .chain(runtime.iter().map(|r| &r.dependency))
        .flat_map(|d| d.alternatives.iter().map(|a| a.name.clone()))
        .collect();
    archive::Select::Reachable {
        roots,
        recommends: recipe.recommends,
    }
}

fn component_lines(lock: &Lockfile) -> Vec<String> {
    lock.components
        .iter()
        .map(|c| {
            format!(
                "{} {} ({} build packages)",
                c.name,
                c.version,
                c.packages.len()
            )
        })
        .collect()
}

fn count_sources(lock: &Lockfile) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for p in &lock.packages {
        *m.entry(p.source.clone()).or_insert(0) += 1;
    }
    m
}

/// Builds the universe from loaded sources, keeping each source's provenance for the lock header.
fn universe_of(recipe: &Recipe, loaded: Vec<LoadedSource>) -> (Universe, Vec<LockedSource>) {
    let mut records = Vec::new();
    let mut headers = Vec::new();
    for l in loaded {
        let s = &recipe.sources[l.source];
        headers.push(LockedSource {
            name: s.name.clone(),
            suite: s.suite.clone(),
            inrelease_sha256: l.inrelease_sha256,
            date: l.date,
            snapshot: l.snapshot,
            signed_by: l.signed_by,
            indexes: l.indexes,
        });
        records.extend(l.packages);
    }
    let infos = recipe
        .sources
        .iter()
        .map(|s| SourceInfo {
            name: s.name.clone(),
            priority: s.priority,
        })
        .collect();
    (Universe::new(records, infos, &recipe.architecture), headers)
}
