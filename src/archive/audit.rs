//! The lock audit: every `[[package]]` and `[[tool]]` of a lock must be,
//! field for field, a stanza of the signed index it claims to come from.
//!
//! A lock is input like any other: a pull request can edit one entry's
//! filename, size and sha256 together to point at a trojan, and the store
//! would verify the trojan against those very hashes. So `solve --locked`
//! and `fetch` re-establish the chain of trust for each locked source:
//! 1. the InRelease whose sha256 the lock records is found (kept by content
//!    in the cache, the suite's latest cached one, or, online, the mirror's
//!    current one) and its signature verified with the recipe's keyring. When
//!    the suite has moved on and the lock's InRelease is nowhere to be had,
//!    the mirror's current InRelease (verified, and fresh) stands in for it
//!    and step 2 is skipped: the entries must then be stanzas of the suite's
//!    *current* signed index, and the report says so. Before that, when a
//!    snapshot service is configured, the lock's own InRelease is looked for
//!    there (at the lock's `snapshot`, or searched from its `Date`: see
//!    [`super::snapshot_archive`]); found, it and its indexes are used as if
//!    cached. A source no entry comes from is not checked at all;
//! 2. the lock's header must agree with it: signer, `Date`, and each index
//!    path with the size and sha256 the signed Release lists;
//! 3. each index is read from the cache or the mirror and checked against
//!    those hashes (its decompressed text against the uncompressed entry);
//! 4. each entry's `name`, `version`, `architecture`, `filename`, `size` and
//!    `sha256` must equal one stanza of those indexes, re-read from the
//!    verified text (the record snapshot only says where to look).
//!
//! Nothing is downloaded when the cache holds everything, so a warm
//! `solve --locked` stays fast: it costs hashing the indexes' texts.
//! `[[python]]` entries are checked against the PyPI index's project pages
//! instead ([`crate::pypi::audit`]; that index is not signed).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::cache::Cache;
use super::fetch::{Ctx, Plan, cache_key, index_bytes, inrelease};
use super::mirror::Mirrors;
use super::release::Release;
use super::snapshot_archive::{self, Timestamp};
use super::transport::Transport;
use super::verify::Keyring;
use super::window::Plain;
use super::{ArchiveError, FetchOptions, plain};
use crate::core::digest::sha256_hex;
use crate::core::package::BinaryPackage;
use crate::lock::{LockedPackage, LockedSource, Lockfile};
use crate::recipe::Recipe;

/// What an audit checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Lock sources whose InRelease and indexes were verified.
    pub sources: usize,
    /// `[[package]]` and `[[tool]]` entries matched to a signed stanza.
    pub entries: usize,
    /// Sources whose own InRelease was gone (the suite moved on), checked
    /// against the suite's current signed index instead: one line each.
    pub notes: Vec<String>,
    /// Sources whose own InRelease was found on the snapshot service, with
    /// the timestamp it was found at (their indexes were read there too).
    pub snapshots: BTreeMap<String, Timestamp>,
}

/// Why a lock failed the audit. Each names the lock file and the source or
/// entry concerned.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A source's header does not match its signed InRelease, or the
    /// InRelease cannot be found.
    #[error("{lock}: source `{source_name}`: {reason}")]
    Source {
        /// The lock file.
        lock: String,
        /// The lock source.
        source_name: String,
        /// What does not match, with both values.
        reason: String,
    },
    /// An entry is not a stanza of the signed index.
    #[error(
        "{lock}: [[{section}]] `{name}` {version} ({architecture}) from source `{source_name}` \
         is not in the signed index: {detail} (checked {indexes})"
    )]
    Entry {
        /// The lock file.
        lock: String,
        /// `package` or `tool`.
        section: &'static str,
        /// Entry name.
        name: String,
        /// Entry version.
        version: String,
        /// Entry architecture.
        architecture: String,
        /// Entry source.
        source_name: String,
        /// What the index has instead.
        detail: String,
        /// The indexes searched, with the InRelease they are signed by.
        indexes: String,
    },
}

fn audit_err(e: AuditError) -> ArchiveError {
    ArchiveError::Audit(Box::new(e))
}

/// One lock entry to match, with the section it is in.
#[derive(Clone)]
struct Entry {
    section: &'static str,
    package: LockedPackage,
}

/// The entries of `lock` to audit: packages, then tools (an artifact in
/// both is checked in each).
fn entries(lock: &Lockfile) -> Vec<Entry> {
    let p = lock.packages.iter().map(|p| ("package", p));
    let t = lock.tools.iter().map(|p| ("tool", p));
    p.chain(t)
        .map(|(section, p)| Entry {
            section,
            package: p.clone(),
        })
        .collect()
}

/// Audits `lock` (read from `lock_path`) for `recipe`; see the module docs.
/// `mirrors` is only used when something is not cached (`None` or
/// `opts.offline`: the cache only).
///
/// Must not be called from async code (it runs its own runtime).
pub fn audit_lock(
    recipe: &Recipe,
    lock: &Lockfile,
    lock_path: &Path,
    mirrors: Option<&Mirrors>,
    opts: &FetchOptions,
) -> Result<AuditReport, ArchiveError> {
    let lock_name = lock_path.display().to_string();
    let src_err = |name: &str, reason: String| {
        audit_err(AuditError::Source {
            lock: lock_name.clone(),
            source_name: name.to_string(),
            reason,
        })
    };
    let all = entries(lock);
    for e in &all {
        if !lock.sources.iter().any(|s| s.name == e.package.source) {
            return Err(src_err(
                &e.package.source,
                format!(
                    "[[{}]] `{}` names it, but the lock's header has no such [[source]]",
                    e.section, e.package.name
                ),
            ));
        }
    }
    // The texts are hashed from the start, while keyrings load and
    // signatures are checked: the hash is most of a warm audit.
    let prehash = Arc::new(Prehash::start(
        &Cache::new(&opts.cache_dir),
        lock.sources
            .iter()
            .filter(|s| all.iter().any(|e| e.package.source == s.name))
            .flat_map(|s| &s.indexes)
            .map(|ix| ix.sha256.to_ascii_lowercase()),
    ));
    let mut jobs = Vec::new();
    // Sources usually share a keyring; parse each file once.
    let mut keyrings: HashMap<std::path::PathBuf, Arc<Keyring>> = HashMap::new();
    for (i, locked) in lock.sources.iter().enumerate() {
        let Some(source) = recipe.source(&locked.name) else {
            return Err(src_err(
                &locked.name,
                format!("recipe `{}` has no such source; re-solve", recipe.name),
            ));
        };
        if source.suite != locked.suite {
            return Err(src_err(
                &locked.name,
                format!(
                    "suite `{}` in the lock, `{}` in the recipe; re-solve",
                    locked.suite, source.suite
                ),
            ));
        }
        let mine: Vec<Entry> = all
            .iter()
            .filter(|e| e.package.source == locked.name)
            .cloned()
            .collect();
        // Mirrors are resolved only in case something must be downloaded;
        // a fully cached audit needs none configured.
        let urls = match (opts.offline, mirrors) {
            (false, Some(m)) => m.resolve(source).map_err(|e| e.to_string()),
            _ => Ok(Vec::new()),
        };
        let plan = Plan {
            index: recipe
                .sources
                .iter()
                .position(|s| s.name == locked.name)
                .unwrap_or(i),
            source: source.clone(),
            keyring: match keyrings.get(&source.keyring) {
                Some(k) => k.clone(),
                None => {
                    let k = Arc::new(Keyring::load(&source.keyring)?);
                    keyrings.insert(source.keyring.clone(), k.clone());
                    k
                }
            },
            urls: urls.clone().unwrap_or_default(),
            cache_key: cache_key(&source.location),
            snapshot: match (opts.offline, mirrors) {
                (false, Some(m)) => m.snapshot_plan(source)?,
                _ => None,
            },
            architectures: Vec::new(),
        };
        jobs.push((plan, urls.err(), locked.clone(), mine));
    }
    let lock_name2 = lock_name.clone();
    let run = move || -> Result<AuditReport, ArchiveError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| ArchiveError::Setup(format!("async runtime: {e}")))?;
        let ctx = Arc::new(Ctx {
            transport: Transport::new(opts.quiet),
            cache: Cache::new(&opts.cache_dir),
            offline: opts.offline,
            freshness: Default::default(),
        });
        // One task per source, so that hashing one source's indexes does not
        // wait for another's.
        let counts = rt.block_on(async {
            let tasks: Vec<_> = jobs
                .into_iter()
                .map(|(plan, mirror_err, locked, mine)| {
                    let (ctx, lock, pre) = (ctx.clone(), lock_name2.clone(), prehash.clone());
                    tokio::spawn(audit_source(ctx, pre, plan, mirror_err, locked, mine, lock))
                })
                .collect();
            let mut counts = Vec::with_capacity(tasks.len());
            for t in tasks {
                counts.push(t.await.map_err(|e| ArchiveError::Setup(e.to_string()))?);
            }
            Ok::<_, ArchiveError>(counts)
        });
        ctx.transport.finish();
        let counts = counts?.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(AuditReport {
            sources: counts.len(),
            entries: counts.iter().map(|(n, _, _)| n).sum(),
            snapshots: counts.iter().filter_map(|(_, _, s)| s.clone()).collect(),
            notes: counts.into_iter().filter_map(|(_, note, _)| note).collect(),
        })
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(run).join())
            .map_err(|_| ArchiveError::Setup("audit thread panicked".into()))?
    } else {
        run()
    }
}

/// Audits one lock source and its entries; returns how many entries matched.
async fn audit_source(
    ctx: Arc<Ctx>,
    prehash: Arc<Prehash>,
    mut plan: Plan,
    mirror_err: Option<String>,
    locked: LockedSource,
    entries: Vec<Entry>,
    lock: String,
) -> Result<SourceAudit, ArchiveError> {
    let src_err = |reason: String| {
        audit_err(AuditError::Source {
            lock: lock.clone(),
            source_name: locked.name.clone(),
            reason,
        })
    };
    // A source no entry comes from protects nothing: its InRelease is not
    // needed (a lock whose other suites moved on stays checkable).
    if entries.is_empty() {
        return Ok((0, None, None));
    }
    let want = locked.inrelease_sha256.to_ascii_lowercase();
    let mut note = None;
    // 1. The lock's InRelease, by content.
    let latest = ctx
        .cache
        .read_inrelease(&plan.cache_key, &plan.source.suite)?;
    let kept = ctx
        .cache
        .read_inrelease_blob(&want)
        .or_else(|| latest.clone().filter(|r| sha256_hex(r) == want));
    let mut located = None;
    let (raw, what) = match kept {
        Some(raw) => (raw, format!("cached InRelease sha256 {want}")),
        // Solved at a snapshot, or no live mirror: straight to the snapshot.
        None if !ctx.offline
            && plan.snapshot.is_some()
            && (locked.snapshot.is_some() || plan.urls.is_empty()) =>
        {
            located = find_in_snapshot(&ctx, &plan, &locked, &want).await?;
            match &located {
                Some(l) => (l.raw.clone(), l.url.clone()),
                None => {
                    return Err(src_err(format!(
                        "its InRelease (sha256 {want}) is neither cached nor on the snapshot \
                         service at {}",
                        snapshot_time(&locked)
                    )));
                }
            }
        }
        None => {
            // The suite moved on and the lock's InRelease is gone: the
            // entries must then be stanzas of the suite's current signed
            // index (same guarantee, fewer old versions).
            let (raw, what) = match latest {
                Some(raw) if ctx.offline => (
                    raw,
                    format!("the cached InRelease of suite `{}`", plan.source.suite),
                ),
                None if ctx.offline => {
                    return Err(src_err(format!(
                        "its InRelease (sha256 {want}) is not in the cache; run without --offline"
                    )));
                }
                _ if plan.urls.is_empty() => {
                    return Err(src_err(format!(
                        "its InRelease (sha256 {want}) is not in the cache, and no mirror to fetch it: {}",
                        mirror_err.unwrap_or_else(|| "no mirror configured".into())
                    )));
                }
                _ => inrelease(&ctx, &plan).await?,
            };
            let got = sha256_hex(&raw);
            if got != want && !ctx.offline && plan.snapshot.is_some() {
                // The live archive moved on; the snapshot service keeps
                // the lock's own InRelease.
                located = find_in_snapshot(&ctx, &plan, &locked, &want).await?;
            }
            match &located {
                Some(l) => (l.raw.clone(), l.url.clone()),
                None => {
                    if got != want {
                        note = Some(format!(
                            "source `{}`: the lock's InRelease (sha256 {want}) is not cached and {what} \
                             is now {got}; its entries were checked against that current signed index",
                            locked.name
                        ));
                    }
                    (raw, what)
                }
            }
        }
    };
    if let Some(l) = &located {
        // Its indexes come from the same snapshot.
        plan.urls = l.bases.clone();
    }
    let fallback = note.is_some();
    let raw_sha = if fallback {
        sha256_hex(&raw)
    } else {
        want.clone()
    };
    // 2. Its signature, and the header against it. Verified again on every
    // audit rather than taken from the cache's verification memo: it costs
    // milliseconds, and then nothing in the cache is trusted unchecked.
    let verified = {
        let (keyring, what2, raw2) = (plan.keyring.clone(), what.clone(), raw.clone());
        tokio::task::spawn_blocking(move || keyring.verify_inrelease(&raw2, &what2))
            .await
            .map_err(|e| ArchiveError::Setup(e.to_string()))??
    };
    let release = Release::parse(&verified.signed_text, &what)?;
    if fallback {
        // A current InRelease must be fresh like any fetched to solve, and
        // not older than the lock's own (a replay).
        let fresh = super::freshness::Freshness {
            previous: [(locked.name.clone(), locked.date.clone())].into(),
            ..Default::default()
        };
        super::freshness::check(&release, &plan.source, &what, &fresh)?;
        if !ctx.offline {
            // As a solve would: the suite's latest verified InRelease.
            ctx.cache
                .store_inrelease(&plan.cache_key, &plan.source.suite, &raw)?;
        }
        // Its indexes at the lock's paths (the hashes differ, of course).
        for ix in &locked.indexes {
            if !release.sha256.contains_key(&ix.path) {
                return Err(src_err(format!(
                    "index {} is not listed in {what} either",
                    ix.path
                )));
            }
        }
    } else {
        check_header(&locked, &verified.fingerprint, &release).map_err(&src_err)?;
    }
    ctx.cache.store_inrelease_blob(&raw_sha, &raw)?;
    if locked.indexes.is_empty() {
        return Err(src_err(format!(
            "{} entries name it, but it lists no indexes",
            entries.len()
        )));
    }
    // 3. The verified texts of its indexes.
    let mut texts: Vec<(String, Plain, super::release::FileHash)> = Vec::new();
    for ix in &locked.indexes {
        let hash = release.sha256.get(&ix.path).expect("checked above").clone();
        let base = ix
            .path
            .strip_suffix(".xz")
            .or_else(|| ix.path.strip_suffix(".gz"))
            .unwrap_or(&ix.path);
        let plain_hash = release.sha256.get(base).cloned();
        let cached = {
            let (cache, sha) = (&ctx.cache, &hash.sha256);
            tokio::task::block_in_place(|| match prehash.take(sha) {
                Some(hashed) => Ok(cache.accept_plain(sha, hashed?, plain_hash.as_ref())),
                None => cache.read_plain(sha, plain_hash.as_ref()),
            })?
        };
        let text: Plain = match cached {
            Some(plain) => plain,
            None => {
                if ctx.offline && ctx.cache.read_index(&hash)?.is_none() {
                    return Err(src_err(format!(
                        "index {} (sha256 {}) is not in the cache; run without --offline",
                        ix.path, hash.sha256
                    )));
                }
                let compressed =
                    index_bytes(&ctx, &plan, &ix.path, &hash, release.acquire_by_hash).await?;
                let (cache, name, path, h) = (
                    ctx.cache.clone(),
                    plan.source.name.clone(),
                    ix.path.clone(),
                    hash.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    plain::decompress_verified(
                        &cache,
                        &name,
                        &path,
                        &h,
                        plain_hash.as_ref(),
                        &compressed,
                    )
                })
                .await
                .map_err(|e| ArchiveError::Setup(e.to_string()))??
            }
        };
        texts.push((ix.path.clone(), text, hash));
    }
    // 4. Every entry against the stanzas, off the async threads.
    let cache = ctx.cache.clone();
    let (suite_dir, source_name, index) = (plan.suite_dir(), plan.source.name.clone(), plan.index);
    let checked = format!(
        "{} of InRelease sha256 {raw_sha}",
        texts
            .iter()
            .map(|(p, _, _)| format!("{suite_dir}{p}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let n = tokio::task::spawn_blocking(move || -> Result<usize, ArchiveError> {
        let mut wanted: Vec<&str> = entries.iter().map(|e| e.package.name.as_str()).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut records: Vec<BinaryPackage> = Vec::new();
        for (path, text, hash) in &texts {
            let shown = format!("{suite_dir}{path}");
            records.extend(plain::records_named(
                &cache,
                text,
                hash,
                &shown,
                &source_name,
                path,
                index,
                &wanted,
            )?);
        }
        let mut by_name: HashMap<&str, Vec<&BinaryPackage>> = HashMap::new();
        for r in &records {
            by_name.entry(&r.name).or_default().push(r);
        }
        for e in &entries {
            let found = by_name.get(e.package.name.as_str()).map_or(&[][..], |v| v);
            match_entry(&e.package, found).map_err(|detail| {
                audit_err(AuditError::Entry {
                    lock: lock.clone(),
                    section: e.section,
                    name: e.package.name.clone(),
                    version: e.package.version.clone(),
                    architecture: e.package.architecture.clone(),
                    source_name: e.package.source.clone(),
                    detail: if fallback {
                        format!(
                            "{detail}; the lock's own InRelease is gone (the suite moved on): \
                             re-solve, or configure the snapshot service (--mirror snapshot=URL) to check it against the lock's own"
                        )
                    } else {
                        detail
                    },
                    indexes: checked.clone(),
                })
            })?;
        }
        Ok(entries.len())
    })
    .await
    .map_err(|e| ArchiveError::Setup(e.to_string()))??;
    Ok((n, note, located.map(|l| (locked.name.clone(), l.ts))))
}

/// Entries matched, the note on a fallback to the current index, and the
/// snapshot the lock's InRelease was found at.
type SourceAudit = (usize, Option<String>, Option<(String, Timestamp)>);

/// The lock's InRelease on the snapshot service: at the lock's `snapshot`
/// when it names one, else searched from its `Date`.
async fn find_in_snapshot(
    ctx: &Ctx,
    plan: &Plan,
    locked: &LockedSource,
    want: &str,
) -> Result<Option<snapshot_archive::Located>, ArchiveError> {
    let Some(snapshot) = &plan.snapshot else {
        return Ok(None);
    };
    snapshot_archive::locate(
        ctx,
        plan,
        snapshot,
        want,
        &locked.date,
        locked.snapshot.as_ref(),
    )
    .await
}

mod header;
mod prehash;
use header::{check_header, snapshot_time};
mod stanza;
use prehash::Prehash;
pub use stanza::check_built_lock;
use stanza::match_entry;
#[cfg(test)]
use stanza::reparse;

#[cfg(test)]
#[path = "audit/tests.rs"]
mod tests;
