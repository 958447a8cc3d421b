//! Loading a recipe's sources: signed InRelease → Release → verified,
//! cached `Packages` indexes → parsed packages.
//!
//! Per source: fetch `dists/SUITE/InRelease` (or `InRelease` at the root of a
//! flat repository), verify it against the source's keyring, then fetch each
//! `COMP/binary-ARCH/Packages` in the best compressed form the Release lists,
//! check its size and sha256 against the Release before anything else reads
//! it, cache it by content, decompress and parse. Sources and indexes are
//! fetched concurrently; decompression and parsing run on the blocking pool
//! and rayon.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use url::Url;

use super::cache::Cache;
use super::freshness::{self, Freshness};
use super::mirror::{Mirrors, base_url};
use super::plain::{self, IndexView};
use super::release::{FileHash, Release};
use super::select::{self, Select};
use super::snapshot_archive::SnapshotPlan;
use super::transport::{Got, Transport};
use super::verify::Keyring;
use super::{ArchiveError, Mismatch};
use crate::core::digest::sha256_hex;
use crate::core::package::BinaryPackage;
use crate::lock::LockedIndex;
use crate::recipe::{Location, Recipe, Source};

/// How [`load_sources`] may reach the network and where it caches.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Use only the cache; never touch the network.
    pub offline: bool,
    /// Cache directory (see [`FetchOptions::default_cache_dir`]).
    pub cache_dir: PathBuf,
    /// No progress display.
    pub quiet: bool,
    /// What a fetched Release must be fresher than (see [`Freshness`]).
    pub freshness: Freshness,
}

impl FetchOptions {
    /// `$IMGBUILD_CACHE`, else `$XDG_CACHE_HOME/imgbuild`, else
    /// `~/.cache/imgbuild` (a temporary directory if there is no home).
    pub fn default_cache_dir() -> PathBuf {
        Self::default_cache_dir_with(|k| std::env::var_os(k))
    }

    /// [`FetchOptions::default_cache_dir`] with an explicit environment lookup.
    pub fn default_cache_dir_with(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
        let var = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(dir) = var("IMGBUILD_CACHE") {
            return dir;
        }
        // The XDG spec says relative values are invalid and must be ignored.
        if let Some(dir) = var("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
            return dir.join("imgbuild");
        }
        match var("HOME") {
            Some(home) => home.join(".cache").join("imgbuild"),
            None => std::env::temp_dir().join("imgbuild-cache"),
        }
    }
}

/// One source's verified indexes and their packages.
#[derive(Debug, Clone)]
pub struct LoadedSource {
    /// Index into `recipe.sources`.
    pub source: usize,
    /// sha256 of the InRelease file as fetched.
    pub inrelease_sha256: String,
    /// The Release `Date`.
    pub date: String,
    /// The snapshot the indexes were read at (the source's `snapshot`).
    pub snapshot: Option<crate::core::timestamp::Timestamp>,
    /// Uppercase fingerprint of the primary key whose signature verified.
    pub signed_by: String,
    /// The indexes read (paths relative to the suite directory), in
    /// component × architecture order.
    pub indexes: Vec<LockedIndex>,
    /// Their packages, in index order. An `Architecture: all` package listed
    /// in several architectures' indexes appears once.
    pub packages: Vec<BinaryPackage>,
}

/// Fetches (or, offline, reads from the cache), verifies and parses the
/// indexes of every source of `recipe`, in recipe order.
///
/// Must not be called from async code: it runs its own runtime, on a
/// separate thread if the caller is inside one.
pub fn load_sources(
    recipe: &Recipe,
    mirrors: &Mirrors,
    opts: &FetchOptions,
) -> Result<Vec<LoadedSource>, ArchiveError> {
    load_sources_for(recipe, mirrors, opts, &Select::All)
}

/// [`load_sources`], handing back only the records `select` asks for (a
/// solve: those it can reach from its roots).
pub fn load_sources_for(
    recipe: &Recipe,
    mirrors: &Mirrors,
    opts: &FetchOptions,
    select: &Select,
) -> Result<Vec<LoadedSource>, ArchiveError> {
    // Resolve everything that can fail without I/O first, so that a missing
    // mirror or keyring is reported before any download starts.
    let mut plans = Vec::with_capacity(recipe.sources.len());
    // Sources usually share a keyring; checking its keys' bindings costs
    // more than the rest of a warm solve, so each file is loaded once.
    let mut keyrings: std::collections::HashMap<PathBuf, Arc<Keyring>> = Default::default();
    for (i, source) in recipe.sources.iter().enumerate() {
        let mut source = source.clone();
        let (urls, key) = match &source.snapshot {
            None if opts.offline => (Vec::new(), cache_key(&source.location)),
            None => (mirrors.resolve(&source)?, cache_key(&source.location)),
            Some(ts) => {
                // The archive as it was at `ts`: its Release files expired
                // long ago by design; the lock's Date still may not go back.
                source.check_valid_until = false;
                let key = format!("{}@{ts}", cache_key(&source.location));
                if opts.offline {
                    (Vec::new(), key)
                } else {
                    let plan =
                        mirrors
                            .snapshot_plan(&source)?
                            .ok_or_else(|| match source.location {
                                Location::Url(_) => ArchiveError::SnapshotOfUrl {
                                    source_name: source.name.clone(),
                                },
                                Location::Archive(_) => ArchiveError::NoSnapshotService {
                                    source_name: source.name.clone(),
                                    timestamp: ts.to_string(),
                                },
                            })?;
                    (plan.bases(ts)?, key)
                }
            }
        };
        plans.push(Plan {
            index: i,
            keyring: match keyrings.get(&source.keyring) {
                Some(k) => Arc::clone(k),
                None => {
                    let k = Arc::new(Keyring::load(&source.keyring)?);
                    keyrings.insert(source.keyring.clone(), k.clone());
                    k
                }
            },
            snapshot: None,
            urls,
            cache_key: key,
            source,
            architectures: std::iter::once(&recipe.architecture)
                .chain(&recipe.foreign_architectures)
                .cloned()
                .collect(),
        });
    }
    let run = move || -> Result<Vec<LoadedSource>, ArchiveError> {
        let ctx = Arc::new(Ctx {
            transport: Transport::new(opts.quiet),
            cache: Cache::new(&opts.cache_dir),
            offline: opts.offline,
            freshness: opts.freshness.clone(),
        });
        let several = plans.iter().any(|p| p.architectures.len() > 1);
        let result = crate::http::block_on(futures_util::future::try_join_all(
            plans.into_iter().map(|p| load_one(ctx.clone(), p)),
        ))
        .map_err(|e| ArchiveError::Setup(e.to_string()))
        .and_then(|r| r);
        ctx.transport.finish();
        let (mut sources, views): (Vec<LoadedSource>, Vec<Vec<IndexView>>) =
            result?.into_iter().unzip();
        let mut views: Vec<IndexView> = views.into_iter().flatten().collect();
        let records = select::select(&ctx.cache, &mut views, select)?;
        // With several architectures, `Architecture: all` packages are
        // listed in each architecture's index of a source
        // (No-Support-for-Architecture-all); keep one.
        let mut seen_all = HashSet::new();
        for p in records {
            if several
                && &*p.architecture == "all"
                && !seen_all.insert((p.source, p.name.clone(), p.version.as_str().to_owned()))
            {
                continue;
            }
            if let Some(l) = sources.iter_mut().find(|l| l.source == p.source) {
                l.packages.push(p);
            }
        }
        Ok(sources)
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(run).join())
            .map_err(|_| ArchiveError::Setup("loader thread panicked".into()))?
    } else {
        run()
    }
}

/// What one source needs, resolved before any I/O.
pub(super) struct Plan {
    pub(super) index: usize,
    pub(super) source: Source,
    pub(super) keyring: Arc<Keyring>,
    /// Base URLs to try in order (empty offline).
    pub(super) urls: Vec<Url>,
    /// Mirror-independent identity of the location, for the InRelease cache.
    pub(super) cache_key: String,
    /// The snapshot service, where the lock audit may look for a lock's
    /// InRelease that the live archive no longer has.
    pub(super) snapshot: Option<SnapshotPlan>,
    /// Primary architecture first.
    pub(super) architectures: Vec<String>,
}

impl Plan {
    /// Path of the suite directory below a base URL (`dists/SUITE/`, or the
    /// base itself for a flat repository).
    pub(super) fn suite_dir(&self) -> String {
        if self.source.is_flat() {
            String::new()
        } else {
            format!("dists/{}/", self.source.suite)
        }
    }

    /// URL of `rel` (relative to the suite directory) on mirror `base`.
    pub(super) fn url(&self, base: &Url, rel: &str) -> Result<Url, ArchiveError> {
        base.join(&format!("{}{rel}", self.suite_dir()))
            .map_err(|e| ArchiveError::BadUrl {
                source_name: self.source.name.clone(),
                url: format!("{base}{}{rel}", self.suite_dir()),
                reason: e.to_string(),
            })
    }

    /// Unversioned index paths, in component × architecture order.
    fn index_bases(&self) -> Vec<String> {
        if self.source.is_flat() {
            return vec!["Packages".into()];
        }
        let mut out = Vec::new();
        for comp in &self.source.components {
            for arch in &self.architectures {
                out.push(format!("{comp}/binary-{arch}/Packages"));
            }
        }
        out
    }
}

/// State shared by all sources of one call.
pub(super) struct Ctx {
    pub(super) transport: Transport,
    pub(super) cache: Cache,
    pub(super) offline: bool,
    pub(super) freshness: Freshness,
}

/// The InRelease cache identity of a location: named archives are keyed by
/// name, not mirror, so that a cache filled through one mirror serves all.
pub(super) fn cache_key(location: &Location) -> String {
    match location {
        Location::Archive(name) => format!("archive:{name}"),
        Location::Url(u) => format!(
            "url:{}",
            base_url(u).map_or_else(|_| u.clone(), String::from)
        ),
    }
}

/// One source's InRelease checked and its indexes opened (no records yet:
/// which are wanted depends on all sources together).
async fn load_one(
    ctx: Arc<Ctx>,
    plan: Plan,
) -> Result<(LoadedSource, Vec<IndexView>), ArchiveError> {
    let plan = Arc::new(plan);
    let (raw, what) = inrelease(&ctx, &plan).await?;
    // Verifying an RSA signature over a 150 kB InRelease costs more than the
    // rest of a warm solve; a verification done once for these exact bytes and
    // this exact keyring is remembered in the cache.
    let raw_sha = sha256_hex(&raw);
    let keyring_sha = plan.keyring.sha256().to_string();
    let (verified, raw) = match ctx.cache.read_verified(&raw_sha, &keyring_sha) {
        Some(v) => (v, raw),
        None => {
            let keyring = plan.keyring.clone();
            let what2 = what.clone();
            let (v, raw) = tokio::task::spawn_blocking(move || {
                keyring.verify_inrelease(&raw, &what2).map(|v| (v, raw))
            })
            .await
            .map_err(|e| ArchiveError::Setup(e.to_string()))??;
            ctx.cache.store_verified(&raw_sha, &keyring_sha, &v)?;
            (v, raw)
        }
    };
    let release = Release::parse(&verified.signed_text, &what)?;
    // A replayed, expired or future-dated Release is refused before it is
    // cached as the suite's latest.
    freshness::check(&release, &plan.source, &what, &ctx.freshness)?;
    if !ctx.offline {
        ctx.cache
            .store_inrelease(&plan.cache_key, &plan.source.suite, &raw)?;
    }
    // Also by content, so that the lock audit finds this exact InRelease
    // after the suite moved on.
    ctx.cache.store_inrelease_blob(&raw_sha, &raw)?;

    let mut wanted: Vec<(String, FileHash)> = Vec::new();
    // The signed hash of each index's decompressed form, when the Release
    // lists it: what the plain-text cache is checked against on every read.
    let mut plain_hashes: Vec<Option<FileHash>> = Vec::new();
    for base in plan.index_bases() {
        let (path, hash) = release
            .best_index(&base)
            .ok_or_else(|| ArchiveError::IndexMissing {
                source_name: plan.source.name.clone(),
                path: base.clone(),
                url: what.clone(),
            })?;
        wanted.push((path, hash.clone()));
        plain_hashes.push(release.sha256.get(&base).cloned());
    }
    let by_hash = release.acquire_by_hash;
    let parsed = futures_util::future::try_join_all(wanted.iter().zip(&plain_hashes).map(
        |((path, hash), plain_hash)| {
            let (ctx, plan) = (ctx.clone(), plan.clone());
            let (path, hash, plain_hash) = (path.clone(), hash.clone(), plain_hash.clone());
            async move {
                // On the blocking pool, so that the texts of all indexes are
                // hashed at the same time.
                let cached = {
                    let (cache, sha, want) =
                        (ctx.cache.clone(), hash.sha256.clone(), plain_hash.clone());
                    tokio::task::spawn_blocking(move || cache.read_plain(&sha, want.as_ref()))
                        .await
                        .map_err(|e| ArchiveError::Setup(e.to_string()))??
                };
                let text = match cached {
                    Some(plain) => plain,
                    None => {
                        let compressed = index_bytes(&ctx, &plan, &path, &hash, by_hash).await?;
                        let (cache, source_name) = (ctx.cache.clone(), plan.source.name.clone());
                        let (path, hash) = (path.clone(), hash.clone());
                        tokio::task::spawn_blocking(move || {
                            plain::decompress_verified(
                                &cache,
                                &source_name,
                                &path,
                                &hash,
                                plain_hash.as_ref(),
                                &compressed,
                            )
                        })
                        .await
                        .map_err(|e| ArchiveError::Setup(e.to_string()))??
                    }
                };
                let index = format!("{}{path}", plan.suite_dir());
                let (source_name, source) = (plan.source.name.clone(), plan.index);
                let cache = ctx.cache.clone();
                tokio::task::spawn_blocking(move || {
                    IndexView::open(&cache, text, &hash, &index, &source_name, &path, source)
                })
                .await
                .map_err(|e| ArchiveError::Setup(e.to_string()))?
            }
        },
    ))
    .await?;

    let source = LoadedSource {
        source: plan.index,
        inrelease_sha256: raw_sha,
        date: release.date,
        snapshot: plan.source.snapshot.clone(),
        signed_by: verified.fingerprint,
        indexes: wanted
            .into_iter()
            .map(|(path, h)| LockedIndex {
                path,
                sha256: h.sha256,
                size: h.size,
            })
            .collect(),
        packages: Vec::new(),
    };
    Ok((source, parsed))
}

/// The raw InRelease bytes and a name for them (the URL, or the cache file).
pub(super) async fn inrelease(ctx: &Ctx, plan: &Plan) -> Result<(Vec<u8>, String), ArchiveError> {
    if ctx.offline {
        let cached = ctx
            .cache
            .read_inrelease(&plan.cache_key, &plan.source.suite)?;
        return match cached {
            Some(data) => {
                let path = ctx
                    .cache
                    .inrelease_path(&plan.cache_key, &plan.source.suite);
                Ok((data, format!("cached InRelease {}", path.display())))
            }
            None => Err(ArchiveError::NotCached {
                source_name: plan.source.name.clone(),
                what: format!("the InRelease of suite `{}`", plan.source.suite),
            }),
        };
    }
    let mut failures = Vec::new();
    for base in &plan.urls {
        let url = plan.url(base, "InRelease")?;
        match ctx.transport.get(&url, Some(MAX_INRELEASE)).await {
            Ok(Got::Data(data)) => return Ok((data, url.to_string())),
            Ok(Got::NotFound) => failures.push(format!("{url}: not found")),
            // Another mirror may work; a bad signature would not be tried
            // around (that is refused after download, not here).
            Err(e) => failures.push(failure_text(e)),
        }
    }
    Err(ArchiveError::Download {
        url: format!("InRelease of source `{}`", plan.source.name),
        reason: if failures.is_empty() {
            "no mirror URL".into()
        } else {
            failures.join("; ")
        },
    })
}

/// Bound on an InRelease download (bookworm's is 151 kB).
pub(super) const MAX_INRELEASE: u64 = 64 << 20;

/// A verified index file: from the cache if present, else downloaded
/// (`by-hash` first when the Release offers it) and checked before caching.
pub(super) async fn index_bytes(
    ctx: &Ctx,
    plan: &Plan,
    path: &str,
    hash: &FileHash,
    by_hash: bool,
) -> Result<Vec<u8>, ArchiveError> {
    let cache_hit = {
        let (cache, hash) = (&ctx.cache, hash.clone());
        tokio::task::block_in_place(|| cache.read_index(&hash))?
    };
    if let Some(data) = cache_hit {
        return Ok(data);
    }
    if ctx.offline {
        return Err(ArchiveError::NotCached {
            source_name: plan.source.name.clone(),
            what: format!("index {}{path} (sha256 {})", plan.suite_dir(), hash.sha256),
        });
    }
    let by_hash_path = match path.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/by-hash/SHA256/{}", hash.sha256),
        None => format!("by-hash/SHA256/{}", hash.sha256),
    };
    let mut failures = Vec::new();
    for base in &plan.urls {
        let candidates = by_hash
            .then_some(by_hash_path.as_str())
            .into_iter()
            .chain([path]);
        for rel in candidates {
            let url = plan.url(base, rel)?;
            let data = match ctx.transport.get(&url, Some(hash.size)).await {
                Ok(Got::Data(d)) => d,
                Ok(Got::NotFound) => {
                    failures.push(format!("{url}: not found"));
                    continue;
                }
                Err(e) => {
                    failures.push(failure_text(e));
                    // Transport failure: this mirror is unusable, try the next.
                    break;
                }
            };
            let actual = sha256_hex(&data);
            if data.len() as u64 != hash.size || actual != hash.sha256 {
                return Err(ArchiveError::Mismatch(Box::new(Mismatch {
                    source_name: plan.source.name.clone(),
                    path: path.to_string(),
                    url: url.to_string(),
                    expected_sha256: hash.sha256.clone(),
                    expected_size: hash.size,
                    actual_sha256: actual,
                    actual_size: data.len() as u64,
                })));
            }
            ctx.cache.store_index(&hash.sha256, &data)?;
            return Ok(data);
        }
    }
    Err(ArchiveError::Download {
        url: format!(
            "{}{path} of source `{}`",
            plan.suite_dir(),
            plan.source.name
        ),
        reason: failures.join("; "),
    })
}

#[cfg(test)]
mod tests;

/// One mirror's failure, for the list in the final error: without the
/// "download failed" prefix, which the final error already carries.
fn failure_text(e: ArchiveError) -> String {
    match e {
        ArchiveError::Download { url, reason } => format!("{url}: {reason}"),
        other => other.to_string(),
    }
}
