//! `imgbuild fetch RECIPE`: put every package file of the recipe's lock into
//! the vendor store, verified against the lock.
//!
//! The heavy lifting is in [`crate::fetch`]; this module resolves the
//! workspace paths, the recipe, the lock, the mirrors and, for files the
//! live mirrors no longer have, the snapshot archive at the lock's time.

use std::path::PathBuf;

use url::Url;

use crate::archive::ArchiveError;
use crate::archive::mirror::Mirrors;
use crate::archive::snapshot_archive::find_lock_snapshot;
use crate::fetch::session::{SessionOptions, fetch_lock_with};
use crate::fetch::{Fallback, Options, Progress, Store, vendor_dir};
use crate::lock::Lockfile;
use crate::ops::workspace::{Demand, Loaded, LockState};
use crate::recipe::Location;

pub use crate::fetch::FetchSummary;

/// Default number of parallel downloads.
pub const DEFAULT_JOBS: usize = 8;

/// The arguments of `imgbuild fetch`.
#[derive(Debug, Clone)]
pub struct FetchArgs {
    /// Recipe name or path (as for `Recipe::load`).
    pub recipe: String,
    /// The project directory (`-C`).
    pub workspace: PathBuf,
    /// `--vendor DIR`; else `$IMGBUILD_VENDOR`, else `<workspace>/vendor`.
    pub vendor: Option<PathBuf>,
    /// `--jobs N`: parallel downloads; 0 means [`DEFAULT_JOBS`].
    pub jobs: usize,
    /// `--mirror NAME=URL`, repeatable.
    pub mirrors: Vec<String>,
    /// `--verify`: re-hash blobs already in the store (corrupt ones are replaced).
    pub verify: bool,
    /// `--import DIR`: adopt matching `.deb` files (e.g. `/var/cache/apt/archives`).
    pub import: Option<PathBuf>,
    /// `--locked`: the lock must be fresh for the recipe (a stale one is
    /// an error instead of a warning).
    pub locked: bool,
    /// `--offline`: never use the network; fail listing what is missing.
    pub offline: bool,
    /// `--quiet`: no progress bars, no summary line.
    pub quiet: bool,
    /// apt configuration directory whose sources complement `--mirror`
    /// (normally `/etc/apt`; as `SolveArgs::apt_dir`).
    pub apt_dir: PathBuf,
    /// Index cache for the lock audit; `None`: the default
    /// ([`FetchOptions::default_cache_dir`](crate::archive::FetchOptions::default_cache_dir)).
    pub cache_dir: Option<PathBuf>,
}

impl Default for FetchArgs {
    fn default() -> Self {
        FetchArgs {
            recipe: String::new(),
            workspace: PathBuf::from("."),
            vendor: None,
            jobs: DEFAULT_JOBS,
            mirrors: Vec::new(),
            verify: false,
            import: None,
            locked: false,
            offline: false,
            quiet: false,
            apt_dir: PathBuf::from("/etc/apt"),
            cache_dir: None,
        }
    }
}

/// Runs the fetch. Draws progress on a terminal and prints the one-line
/// summary on stderr (both unless `quiet`); the caller need not print it.
/// Must not be called from inside a tokio runtime (it runs its own).
pub fn run(args: &FetchArgs) -> anyhow::Result<FetchSummary> {
    let loaded = Loaded::load(&args.workspace, &args.recipe)?;
    let demand = if args.locked {
        Demand::Locked
    } else {
        Demand::Exists
    };
    let read = loaded.require(demand)?;
    if let LockState::Stale(why) = loaded.state()
        && !args.quiet
    {
        eprintln!(
            "warning: {} is stale ({why}); fetching what it pins (run `imgbuild solve {}` to refresh it)",
            loaded.lock_path.display(),
            args.recipe
        );
    }
    let recipe = &loaded.recipe;
    // Offline, mirrors are not even configured: a missing mirror must not
    // stop a fetch that needs no network.
    let mirrors = if args.offline {
        None
    } else {
        Some(Mirrors::new(&args.mirrors, &args.apt_dir)?)
    };
    // The shared store first: the audit's signed files, then (once the
    // lock passed the audit) the files it pins.
    let mut from_store =
        crate::ops::store_fill::StoreFill::connect(&args.mirrors, args.offline, args.quiet)?;
    // Nothing is fetched for a lock whose entries are not signed stanzas.
    let audit_opts = crate::archive::FetchOptions {
        offline: args.offline,
        cache_dir: args
            .cache_dir
            .clone()
            .unwrap_or_else(crate::archive::FetchOptions::default_cache_dir),
        quiet: args.quiet,
        freshness: Default::default(),
    };
    from_store.audit_files(read, &audit_opts.cache_dir)?;
    let audit = crate::archive::audit_lock(
        recipe,
        read,
        &loaded.lock_path,
        mirrors.as_ref(),
        &audit_opts,
    )?;
    if !args.quiet {
        audit.notes.iter().for_each(|n| eprintln!("note: {n}"));
    }
    let python_opts = crate::pypi::SolveOptions {
        mirrors: &args.mirrors,
        offline: args.offline,
        cache_dir: audit_opts.cache_dir.clone(),
    };
    crate::pypi::audit_lock(read, &loaded.lock_path, &python_opts)?;
    // The tools tree's packages (`[[tool]]`) are fetched with the image's.
    let lock = read.with_tools_as_packages();
    let store = Store::open(&vendor_dir(&args.workspace, args.vendor.as_deref()))?;
    let jobs = if args.jobs == 0 {
        DEFAULT_JOBS
    } else {
        args.jobs
    };
    from_store.blobs(read, &store, jobs)?;
    // Nothing left to download (say, all from the store registry): an
    // archive without a configured mirror is no reason to fail.
    let complete = !args.verify && store.require(read, &recipe.name).is_ok();
    let snapshot_services = match &mirrors {
        Some(m) => m.snapshot_services()?,
        None => Vec::new(),
    };
    let bases = |name: &str| -> Result<Vec<Url>, String> {
        let source = recipe.source(name).ok_or_else(|| {
            format!(
                "the lock names source `{name}` but recipe `{}` has none by that name; re-solve",
                recipe.name
            )
        })?;
        let mirrors = mirrors.as_ref().ok_or("offline")?;
        match mirrors.resolve(source) {
            // Only the snapshot service is configured for this archive:
            // every file comes from there (no live mirror to ask first).
            Err(ArchiveError::NoMirror { .. }) if !snapshot_services.is_empty() => Ok(Vec::new()),
            Err(_) if complete => Ok(Vec::new()),
            other => other.map_err(|e| e.to_string()),
        }
    };
    // Files every live mirror answers 404 for: the snapshot archive at the
    // time of the lock's InRelease (found by the audit, named by the lock,
    // or searched for now).
    let fallback = |name: &str| -> Result<Option<Fallback>, String> {
        let (Some(source), Some(locked), Some(mirrors)) = (
            recipe.source(name),
            lock.sources.iter().find(|s| s.name == name),
            mirrors.as_ref(),
        ) else {
            return Ok(None);
        };
        let Some(plan) = mirrors.snapshot_plan(source).map_err(|e| e.to_string())? else {
            return match source.location {
                Location::Url(_) => Ok(None),
                Location::Archive(_) => Err(format!(
                    "no snapshot service is configured to fetch it from the archive as it was \
                     at {} (pass --mirror snapshot=URL or set IMGBUILD_MIRROR_SNAPSHOT=URL)",
                    locked.date
                )),
            };
        };
        let ts = match audit.snapshots.get(name).or(locked.snapshot.as_ref()) {
            Some(ts) => ts.clone(),
            None => find_lock_snapshot(recipe, locked, mirrors, args.quiet)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!(
                        "the snapshot service has no InRelease of suite `{}` with sha256 {} \
                         at or after its Date ({})",
                        locked.suite, locked.inrelease_sha256, locked.date
                    )
                })?,
        };
        Ok(Some(Fallback {
            label: format!("snapshot {ts}"),
            bases: plan.bases(&ts).map_err(|e| e.to_string())?,
        }))
    };
    let options = SessionOptions {
        download: Options {
            jobs,
            ..Options::default()
        },
        verify: args.verify,
        import: args.import.clone(),
        offline: args.offline,
    };
    let progress = Progress::for_terminal(args.quiet);
    let mut summary = fetch_lock_with(
        &store,
        &recipe.name,
        &lock,
        bases,
        fallback,
        &options,
        &progress,
    )?;
    if !lock.components.is_empty() {
        // Sources of components: git exports or tarballs, verified against the lock.
        let git = crate::component::GitMirrors::from_env(&args.mirrors)?;
        for c in &lock.components {
            match crate::component::source::fetch_source(&store, c, &git, args.offline)? {
                true => summary.fetched += 1,
                false => summary.reused += 1,
            }
        }
    }
    if !lock.python.is_empty() {
        let py = fetch_python(args, &store, &lock, &options)?;
        summary.fetched += py.fetched;
        summary.reused += py.reused;
        summary.bytes += py.bytes;
        summary.elapsed += py.elapsed;
    }
    if !from_store.is_empty() {
        // Taken from the registry: fetched, not found in the store.
        let r = &from_store.report;
        summary.reused = summary.reused.saturating_sub(r.files);
        summary.fetched += r.files;
        summary.bytes += r.bytes;
        if !args.quiet {
            eprintln!("{}", from_store.summary());
        }
    }
    if !args.quiet {
        eprintln!("{summary}");
    }
    Ok(summary)
}

/// The `[[python]]` files, located on the `pypi` index (asked for only
/// when something is missing and not offline).
fn fetch_python(
    args: &FetchArgs,
    store: &Store,
    lock: &Lockfile,
    options: &SessionOptions,
) -> anyhow::Result<FetchSummary> {
    use crate::pypi;
    let client = if args.offline || pypi::fetch::missing(store, lock).is_empty() {
        None
    } else {
        let url = pypi::config::index_url(&args.mirrors, &|k| std::env::var(k).ok())?;
        let cache = crate::archive::FetchOptions::default_cache_dir();
        Some(pypi::index::IndexClient::new(url, &cache, false)?)
    };
    let progress = Progress::for_terminal(args.quiet);
    Ok(pypi::fetch::fetch_python(
        store,
        lock,
        client.as_ref(),
        options,
        &progress,
    )?)
}

#[cfg(test)]
mod tests {
    //! The wiring (recipe → lock path → mirrors → store) over a `file://`
    //! mirror; the store and downloader have their own tests in `tests/fetch_*.rs`.

    use sha2::{Digest, Sha256};

    use super::*;
    use crate::lock::{LockedPackage, LockedRecipe};
    use crate::ops::vendor;
    use crate::recipe::Recipe;

    /// A workspace whose recipe `base` names archive `test`, a lock pinning
    /// three files, and a directory holding them (to be a `file://` mirror):
    /// a flat repository whose signed index lists them, so the lock passes
    /// the audit.
    fn setup() -> (tempfile::TempDir, PathBuf, String) {
        use testkit::{TestKey, write_repo};
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        std::fs::create_dir_all(ws.join("recipes/keys")).unwrap();
        let key = TestKey::seeded(21, false);
        std::fs::write(ws.join("recipes/keys/k.pgp"), &key.keyring).unwrap();
        std::fs::write(
            ws.join("recipes/base.toml"),
            "architecture = \"amd64\"\npackages = [\"p0\"]\n\n[[source]]\nname = \"main\"\n\
             archive = \"test\"\nsuite = \"/\"\ncomponents = []\nkeyring = \"keys/k.pgp\"\n",
        )
        .unwrap();
        let recipe = Recipe::load(&ws, "base").unwrap();
        let mirror = tmp.path().join("mirror");
        let packages = (0..3)
            .map(|i| {
                let bytes = format!("package {i}").repeat(100 + i).into_bytes();
                let filename = format!("pool/p{i}_1_amd64.deb");
                std::fs::create_dir_all(mirror.join("pool")).unwrap();
                std::fs::write(mirror.join(&filename), &bytes).unwrap();
                LockedPackage {
                    name: format!("p{i}"),
                    version: "1".into(),
                    architecture: "amd64".into(),
                    source: "main".into(),
                    filename,
                    size: bytes.len() as u64,
                    sha256: hex::encode(Sha256::digest(&bytes)),
                    reason: None,
                    depends: vec![],
                }
            })
            .collect::<Vec<LockedPackage>>();
        let index: String = packages
            .iter()
            .map(|p| {
                format!(
                    "Package: {}\nVersion: {}\nArchitecture: {}\nFilename: {}\nSize: {}\nSHA256: {}\n\n",
                    p.name, p.version, p.architecture, p.filename, p.size, p.sha256
                )
            })
            .collect();
        write_repo(
            &mirror,
            "/",
            &[("Packages", index.clone().into_bytes())],
            &key,
            false,
        );
        let inrelease = std::fs::read(mirror.join("InRelease")).unwrap();
        let keyring = crate::archive::Keyring::load(&ws.join("recipes/keys/k.pgp")).unwrap();
        let verified = keyring.verify_inrelease(&inrelease, "InRelease").unwrap();
        let lock = Lockfile {
            version: crate::lock::LOCK_VERSION,
            recipe: LockedRecipe::for_recipe(&recipe),
            sources: vec![crate::lock::LockedSource {
                name: "main".into(),
                suite: "/".into(),
                inrelease_sha256: hex::encode(Sha256::digest(&inrelease)),
                date: "Sat, 01 Jan 2000 00:00:00 UTC".into(),
                snapshot: None,
                signed_by: verified.fingerprint,
                indexes: vec![crate::lock::LockedIndex {
                    path: "Packages".into(),
                    sha256: hex::encode(Sha256::digest(index.as_bytes())),
                    size: index.len() as u64,
                }],
            }],
            packages,
            python: vec![],
            tools: Vec::new(),
            components: Vec::new(),
        };
        std::fs::create_dir_all(ws.join("locks")).unwrap();
        std::fs::write(ws.join("locks/base.lock"), lock.to_toml()).unwrap();
        let url = Url::from_directory_path(&mirror).unwrap();
        (tmp, ws, format!("test={url}"))
    }

    fn args(ws: &std::path::Path, mirror: &str) -> FetchArgs {
        FetchArgs {
            recipe: "base".into(),
            workspace: ws.to_path_buf(),
            mirrors: vec![mirror.to_string()],
            quiet: true,
            // No host apt sources: only --mirror counts.
            apt_dir: ws.join("no-apt"),
            cache_dir: Some(ws.join("cache")),
            ..FetchArgs::default()
        }
    }

    #[test]
    fn fetch_offline_verify_gc() {
        let (_tmp, ws, mirror) = setup();
        let summary = run(&args(&ws, &mirror)).unwrap();
        assert_eq!((summary.fetched, summary.reused), (3, 0));
        assert!(ws.join("vendor/index/base.json").is_file());
        let offline = FetchArgs {
            offline: true,
            mirrors: vec![],
            ..args(&ws, &mirror)
        };
        assert_eq!(run(&offline).unwrap().reused, 3);
        let report = vendor::verify(&ws, None).unwrap();
        assert_eq!((report.checked, report.corrupt.len()), (3, 0));
        let gc = vendor::gc(&ws, None).unwrap();
        assert_eq!((gc.kept, gc.removed), (3, 0));
    }

    #[test]
    fn separate_store_missing_mirror_missing_lock() {
        let (tmp, ws, mirror) = setup();
        let store = tmp.path().join("store");
        let a = FetchArgs {
            vendor: Some(store.clone()),
            jobs: 2,
            ..args(&ws, &mirror)
        };
        assert_eq!(run(&a).unwrap().fetched, 3);
        assert!(store.join("sha256").is_dir() && !ws.join("vendor").exists());

        let no_mirror = FetchArgs {
            mirrors: vec![],
            ..a.clone()
        };
        // Everything there: no mirror needed.
        assert_eq!(run(&no_mirror).unwrap().reused, 3);
        std::fs::remove_dir_all(&store).unwrap();
        let err = format!("{:#}", run(&no_mirror).unwrap_err());
        assert!(
            err.contains("no mirror configured for archive `test`"),
            "{err}"
        );

        std::fs::remove_file(ws.join("locks/base.lock")).unwrap();
        let err = run(&a).unwrap_err().to_string();
        assert!(err.contains("run `imgbuild solve base` first"), "{err}");
    }
}
