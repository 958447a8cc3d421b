//! The Debian snapshot archive: every past state of an archive, by time.
//!
//! A snapshot service (the layout of Debian's: `archive/<archive>/<TS>/` with
//! `dists/` and `pool/` below, `TS` = `YYYYMMDDTHHMMSSZ`) answers a request at
//! any timestamp with the archive as it was at the last import run at or
//! before it. Where the service is, is configuration like every mirror
//! (`--mirror snapshot=URL`, `IMGBUILD_MIRROR_SNAPSHOT`, `IMGBUILD_SNAPSHOT`);
//! what a lock needs from it is only the archive name (the recipe's
//! `archive`) and a time.
//!
//! Two uses:
//! - a source solved *at* a snapshot (`--snapshot TS`, `snapshot = "TS"`)
//!   reads its InRelease and indexes below `archive/<archive>/<TS>/`, and the
//!   lock records that `TS`;
//! - a lock solved against the live archive records only the InRelease
//!   `Date`. The import run holding that InRelease is *after* the `Date`
//!   (the archive publishes, then the snapshot imports), so `TS = Date` may
//!   name the run before. [`locate`] therefore searches: it reads the
//!   InRelease at `Date`, then at later times (doubling steps, then
//!   bisection on the InRelease `Date` it finds, which only grows with
//!   time), until one hashes to the sha256 the lock records. Nothing it
//!   reads is trusted before that hash matches: a hostile service can only
//!   make the search fail.

use url::Url;

use super::ArchiveError;
use super::fetch::{Ctx, MAX_INRELEASE, Plan};
use super::freshness::parse_date;
use super::mirror::Mirrors;
use super::transport::Got;
use crate::core::digest::sha256_hex;
pub use crate::core::timestamp::Timestamp;
use crate::lock::LockedSource;
use crate::recipe::Recipe;

/// The name under which the snapshot service is configured
/// (`--mirror snapshot=URL`, `IMGBUILD_MIRROR_SNAPSHOT`). Not usable as a
/// recipe's `archive`.
pub const SERVICE: &str = "snapshot";

/// Shorter alias of `IMGBUILD_MIRROR_SNAPSHOT`.
pub const SERVICE_ENV: &str = "IMGBUILD_SNAPSHOT";

/// Longest forward step of the search, as a power of two of hours: 2^10 h
/// is about six weeks after the `Date`.
const GALLOP_STEPS: u32 = 11;

/// Bound on the bisection (2^40 s is far more than the gallop's range).
const BISECT_STEPS: u32 = 40;

/// The timestamp of a Release `Date` (`Sat, 01 Jun 2024 00:00:00 UTC`).
pub fn timestamp_of_date(date: &str) -> Option<Timestamp> {
    parse_date(date).map(Timestamp::from_unix)
}

/// `<service>/archive/<archive>/<ts>/`: the base URL of `archive` as it was at `ts`.
pub fn archive_base(service: &Url, archive: &str, ts: &Timestamp) -> Result<Url, ArchiveError> {
    service
        .join(&format!("archive/{archive}/{ts}/"))
        .map_err(|e| ArchiveError::MirrorSetting {
            setting: format!("{SERVICE}={service}"),
            reason: format!("cannot join `archive/{archive}/{ts}/`: {e}"),
        })
}

/// What a source needs to reach the snapshot service.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotPlan {
    /// Service roots, tried in order.
    pub(crate) services: Vec<Url>,
    /// The recipe's archive name (`debian`).
    pub(crate) archive: String,
}

impl SnapshotPlan {
    /// The base URLs of the archive at `ts`, one per service.
    pub(crate) fn bases(&self, ts: &Timestamp) -> Result<Vec<Url>, ArchiveError> {
        self.services
            .iter()
            .map(|s| archive_base(s, &self.archive, ts))
            .collect()
    }
}

/// A lock's InRelease found on the snapshot service.
pub(crate) struct Located {
    /// The timestamp it was found at.
    pub(crate) ts: Timestamp,
    /// Its bytes (sha256 as the lock records).
    pub(crate) raw: Vec<u8>,
    /// Where it was read.
    pub(crate) url: String,
    /// The archive's base URLs at `ts` (for its indexes and pool files).
    pub(crate) bases: Vec<Url>,
}

/// Where the snapshot service has the InRelease that `locked` (a source of
/// a lock of `recipe`) records: its timestamp, or `None` when the source
/// is not a named archive, no service is configured, or the search finds
/// nothing. For `fetch`, when the live mirrors no longer have a locked file
/// and the lock audit did not need the snapshot (its InRelease was cached).
///
/// Must not be called from async code (it runs its own runtime).
pub fn find_lock_snapshot(
    recipe: &Recipe,
    locked: &LockedSource,
    mirrors: &Mirrors,
    quiet: bool,
) -> Result<Option<Timestamp>, ArchiveError> {
    let Some(source) = recipe.source(&locked.name) else {
        return Ok(None);
    };
    let Some(snapshot) = mirrors.snapshot_plan(source)? else {
        return Ok(None);
    };
    let plan = Plan {
        index: 0,
        source: source.clone(),
        keyring: std::sync::Arc::new(super::verify::Keyring::load(&source.keyring)?),
        urls: Vec::new(),
        cache_key: String::new(),
        snapshot: None,
        architectures: Vec::new(),
    };
    let want = locked.inrelease_sha256.to_ascii_lowercase();
    let run = || -> Result<Option<Timestamp>, ArchiveError> {
        let ctx = Ctx {
            transport: super::transport::Transport::new(quiet),
            // Nothing is read from or written to the cache here.
            cache: super::cache::Cache::new(&std::env::temp_dir()),
            offline: false,
            freshness: Default::default(),
        };
        let found = crate::http::block_on(locate(
            &ctx,
            &plan,
            &snapshot,
            &want,
            &locked.date,
            locked.snapshot.as_ref(),
        ))
        .map_err(|e| ArchiveError::Setup(e.to_string()))?;
        ctx.transport.finish();
        Ok(found?.map(|l| l.ts))
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(run).join())
            .map_err(|_| ArchiveError::Setup("snapshot search thread panicked".into()))?
    } else {
        run()
    }
}

/// One probe of the search.
enum Probe {
    /// The InRelease the lock records.
    Found(Located),
    /// No InRelease there yet, or an older one: look later.
    Early,
    /// A newer InRelease: look earlier.
    Late,
}

/// Finds the InRelease with sha256 `want` (lower-case hex) of `plan`'s
/// suite on the snapshot service: at `exact` only when given (the lock
/// names its snapshot), else by searching from `date` on (see the module
/// docs). `Ok(None)` when it is not there; `Err` only when the service
/// cannot be reached at all.
pub(super) async fn locate(
    ctx: &Ctx,
    plan: &Plan,
    snapshot: &SnapshotPlan,
    want: &str,
    date: &str,
    exact: Option<&Timestamp>,
) -> Result<Option<Located>, ArchiveError> {
    let Some(target) = parse_date(date) else {
        return Ok(None);
    };
    let at = |ts: Timestamp| probe(ctx, plan, snapshot, want, target, ts);
    if let Some(ts) = exact {
        return Ok(match at(ts.clone()).await? {
            Probe::Found(l) => Some(l),
            _ => None,
        });
    }
    let mut lo = target;
    match at(Timestamp::from_unix(lo)).await? {
        Probe::Found(l) => return Ok(Some(l)),
        Probe::Late => return Ok(None),
        Probe::Early => {}
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(i64::MAX, |d| d.as_secs() as i64);
    let mut hi = None;
    for k in 0..GALLOP_STEPS {
        let t = target.saturating_add(3600 << k).min(now.max(target + 1));
        match at(Timestamp::from_unix(t)).await? {
            Probe::Found(l) => return Ok(Some(l)),
            Probe::Early => lo = t,
            Probe::Late => {
                hi = Some(t);
                break;
            }
        }
        if t >= now {
            break;
        }
    }
    let Some(mut hi) = hi else {
        return Ok(None);
    };
    for _ in 0..BISECT_STEPS {
        if hi - lo <= 1 {
            break;
        }
        let mid = lo + (hi - lo) / 2;
        match at(Timestamp::from_unix(mid)).await? {
            Probe::Found(l) => return Ok(Some(l)),
            Probe::Early => lo = mid,
            Probe::Late => hi = mid,
        }
    }
    Ok(None)
}

/// Reads the suite's InRelease at `ts` from the first service that has one.
async fn probe(
    ctx: &Ctx,
    plan: &Plan,
    snapshot: &SnapshotPlan,
    want: &str,
    target: i64,
    ts: Timestamp,
) -> Result<Probe, ArchiveError> {
    let bases = snapshot.bases(&ts)?;
    let mut failures = Vec::new();
    for base in &bases {
        let url = plan.url(base, "InRelease")?;
        let raw = match ctx.transport.get(&url, Some(MAX_INRELEASE)).await {
            Ok(Got::Data(raw)) => raw,
            Ok(Got::NotFound) => continue,
            Err(e) => {
                failures.push(e.to_string());
                continue;
            }
        };
        if sha256_hex(&raw) == want {
            return Ok(Probe::Found(Located {
                ts,
                raw,
                url: url.to_string(),
                bases,
            }));
        }
        // Unverified, so only a hint of where to look next: the hash decides.
        return Ok(match unsigned_date(&raw) {
            Some(d) if d < target => Probe::Early,
            Some(_) => Probe::Late,
            None => Probe::Early,
        });
    }
    if failures.len() == bases.len() && !bases.is_empty() {
        return Err(ArchiveError::Download {
            url: format!(
                "InRelease of source `{}` on the snapshot service at {ts}",
                plan.source.name
            ),
            reason: failures.join("; "),
        });
    }
    Ok(Probe::Early)
}

/// The `Date:` field of an InRelease, read without verifying it.
fn unsigned_date(raw: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(raw).ok()?;
    text.lines()
        .take_while(|l| !l.starts_with("-----BEGIN PGP SIGNATURE"))
        .find_map(|l| l.strip_prefix("Date:"))
        .and_then(parse_date)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_dates_become_timestamps() {
        assert_eq!(
            timestamp_of_date("Sat, 01 Jun 2024 00:30:15 UTC")
                .unwrap()
                .as_str(),
            "20240601T003015Z"
        );
        assert_eq!(
            timestamp_of_date("Sat, 01 Jun 2024 02:30:15 +0200")
                .unwrap()
                .as_str(),
            "20240601T003015Z"
        );
    }

    #[test]
    fn bases_follow_the_snapshot_layout() {
        let plan = SnapshotPlan {
            services: vec![
                Url::parse("http://127.0.0.1:9/").unwrap(),
                Url::parse("http://127.0.0.1:8/snap/").unwrap(),
            ],
            archive: "debian-security".into(),
        };
        let ts = Timestamp::parse("20240601T000000Z").unwrap();
        let urls: Vec<String> = plan
            .bases(&ts)
            .unwrap()
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:9/archive/debian-security/20240601T000000Z/",
                "http://127.0.0.1:8/snap/archive/debian-security/20240601T000000Z/",
            ]
        );
    }

    #[test]
    fn reads_the_date_of_an_unverified_inrelease() {
        let raw = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\nDate: Sat, 01 Jun 2024 00:00:00 UTC\n-----BEGIN PGP SIGNATURE-----\nDate: Sun, 02 Jun 2024 00:00:00 UTC\n";
        assert_eq!(unsigned_date(raw), Some(1_717_200_000));
        assert_eq!(unsigned_date(b"no date"), None);
    }
}
