//! Where sources are served from.
//!
//! Recipes name archives (`debian`, `debian-security`) rather than hosts, so
//! that a lock made against one mirror is valid on any other: the content is
//! pinned by hash, the location is configuration. In order of precedence, the
//! first that configures a name wins:
//!
//! 1. `--mirror NAME=URL` flags (repeatable; URLs tried in order),
//! 2. `IMGBUILD_MIRROR_<NAME>` (uppercased, `-` → `_`; whitespace-separated URLs),
//! 3. the host's apt sources, where a URI maps to the archive named by its
//!    last path segment (`…/debian-security` → `debian-security`).
//!
//! The name `snapshot` configures the snapshot service instead
//! ([`Mirrors::snapshot_services`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use url::Url;

use super::ArchiveError;
use crate::core::deb822;
use crate::recipe::{Location, Source};

/// Looks up an environment variable; injectable so tests need not touch the
/// process environment.
pub type EnvLookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Configured mirrors for named archives.
pub struct Mirrors {
    flags: BTreeMap<String, Vec<Url>>,
    apt: BTreeMap<String, Vec<Url>>,
    env: EnvLookup,
}

impl fmt::Debug for Mirrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mirrors")
            .field("flags", &self.flags)
            .field("apt", &self.apt)
            .finish_non_exhaustive()
    }
}

impl Mirrors {
    /// Mirrors from `--mirror NAME=URL` values, the process environment and
    /// the apt sources under `apt_dir` (normally `/etc/apt`; a missing
    /// directory simply contributes nothing).
    pub fn new(flags: &[String], apt_dir: &Path) -> Result<Mirrors, ArchiveError> {
        Self::with_env(flags, apt_dir, |name| std::env::var(name).ok())
    }

    /// Like [`Mirrors::new`] with an explicit environment lookup.
    pub fn with_env(
        flags: &[String],
        apt_dir: &Path,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Result<Mirrors, ArchiveError> {
        let mut by_flag: BTreeMap<String, Vec<Url>> = BTreeMap::new();
        // `git:PREFIX=REPLACEMENT` entries are the git mapping's
        // (crate::component::git) and `store=oci://…` the shared vendor
        // store's (crate::fetch::oci_store), not archives.
        for flag in flags
            .iter()
            .filter(|f| !f.starts_with("git:") && !is_store_setting(f))
        {
            let bad = |reason: &str| ArchiveError::MirrorSetting {
                setting: flag.clone(),
                reason: reason.to_string(),
            };
            let (name, url) = flag
                .split_once('=')
                .ok_or_else(|| bad("expected NAME=URL"))?;
            let name = name.trim();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(bad("archive name must be letters, digits, `-`, `_`, `.`"));
            }
            let url = base_url(url.trim()).map_err(|r| bad(&r))?;
            push_unique(by_flag.entry(name.to_string()).or_default(), url);
        }
        Ok(Mirrors {
            flags: by_flag,
            apt: read_apt_dir(apt_dir)?,
            env: Box::new(env),
        })
    }

    /// The environment variable that configures `archive`.
    pub fn env_var(archive: &str) -> String {
        format!(
            "IMGBUILD_MIRROR_{}",
            archive.to_ascii_uppercase().replace(['-', '.'], "_")
        )
    }

    /// Roots of the snapshot service ([`super::snapshot_archive`]), in
    /// order: `--mirror snapshot=URL`, else `IMGBUILD_MIRROR_SNAPSHOT`, else
    /// `IMGBUILD_SNAPSHOT` (whitespace-separated URLs). Empty when none is
    /// configured; never taken from apt sources.
    pub fn snapshot_services(&self) -> Result<Vec<Url>, ArchiveError> {
        use super::snapshot_archive::{SERVICE, SERVICE_ENV};
        if let Some(urls) = self.flags.get(SERVICE) {
            return Ok(urls.clone());
        }
        for var in [Self::env_var(SERVICE), SERVICE_ENV.to_string()] {
            if let Some(value) = (self.env)(&var).filter(|v| !v.trim().is_empty()) {
                return value
                    .split_whitespace()
                    .map(|u| {
                        base_url(u).map_err(|reason| ArchiveError::MirrorSetting {
                            setting: format!("{var}={value}"),
                            reason,
                        })
                    })
                    .collect();
            }
        }
        Ok(Vec::new())
    }

    /// What `source` needs to be read from the snapshot service: `None`
    /// when no service is configured or the source has a literal URL.
    pub(crate) fn snapshot_plan(
        &self,
        source: &Source,
    ) -> Result<Option<super::snapshot_archive::SnapshotPlan>, ArchiveError> {
        let Location::Archive(archive) = &source.location else {
            return Ok(None);
        };
        let services = self.snapshot_services()?;
        Ok(
            (!services.is_empty()).then(|| super::snapshot_archive::SnapshotPlan {
                services,
                archive: archive.clone(),
            }),
        )
    }

    /// Base URLs (ending in `/`) to try in order for `source`.
    pub fn resolve(&self, source: &Source) -> Result<Vec<Url>, ArchiveError> {
        let archive = match &source.location {
            Location::Url(u) => {
                return base_url(u)
                    .map(|u| vec![u])
                    .map_err(|reason| ArchiveError::BadUrl {
                        source_name: source.name.clone(),
                        url: u.clone(),
                        reason,
                    });
            }
            Location::Archive(name) => name,
        };
        if let Some(urls) = self.flags.get(archive) {
            return Ok(urls.clone());
        }
        let var = Self::env_var(archive);
        if let Some(value) = (self.env)(&var).filter(|v| !v.trim().is_empty()) {
            return value
                .split_whitespace()
                .map(|u| {
                    base_url(u).map_err(|reason| ArchiveError::MirrorSetting {
                        setting: format!("{var}={value}"),
                        reason,
                    })
                })
                .collect();
        }
        if let Some(urls) = self.apt.get(archive) {
            return Ok(urls.clone());
        }
        Err(ArchiveError::NoMirror {
            archive: archive.clone(),
            source_name: source.name.clone(),
            env_var: var,
        })
    }
}

/// The `--mirror` name that configures the shared vendor store (an OCI
/// registry, `store=oci://HOST/REPO`) rather than an archive.
pub const STORE_MIRROR: &str = "store";

/// Whether a `--mirror` value is `store=…`.
pub fn is_store_setting(flag: &str) -> bool {
    flag.split_once('=')
        .is_some_and(|(name, _)| name.trim() == STORE_MIRROR)
}

/// Parses `text` as a URL usable as a base: http, https or file, with a path
/// ending in `/` so that `join` appends rather than replaces.
pub(crate) fn base_url(text: &str) -> Result<Url, String> {
    let mut url = Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https" | "file") {
        return Err(format!(
            "unsupported scheme `{}` (use http, https or file)",
            url.scheme()
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a mirror URL must not have a query or fragment".into());
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn push_unique(urls: &mut Vec<Url>, url: Url) {
    if !urls.contains(&url) {
        urls.push(url);
    }
}

/// The archive an apt URI serves: its last non-empty path segment.
fn archive_name(url: &Url) -> Option<String> {
    url.path_segments()?
        .rev()
        .find(|s| !s.is_empty())
        .map(str::to_string)
}

fn read(path: &Path) -> Result<String, ArchiveError> {
    std::fs::read_to_string(path).map_err(|error| ArchiveError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// Reads `sources.list`, then `sources.list.d/*.list` and `*.sources` in
/// name order (apt's order), into archive name → URLs.
fn read_apt_dir(apt_dir: &Path) -> Result<BTreeMap<String, Vec<Url>>, ArchiveError> {
    let mut uris: Vec<String> = Vec::new();
    let main = apt_dir.join("sources.list");
    if main.is_file() {
        uris.extend(one_line_uris(&read(&main)?));
    }
    let dir = apt_dir.join("sources.list.d");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("list" | "sources")
                    )
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(ArchiveError::Read { path: dir, error }),
    };
    files.sort();
    for file in files {
        let text = read(&file)?;
        if file.extension().is_some_and(|e| e == "sources") {
            uris.extend(deb822_uris(&text).map_err(|reason| ArchiveError::Read {
                path: file.clone(),
                error: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
            })?);
        } else {
            uris.extend(one_line_uris(&text));
        }
    }
    let mut out: BTreeMap<String, Vec<Url>> = BTreeMap::new();
    // URIs with schemes we cannot fetch (cdrom:, mirror+file:, tor+http:) are
    // the host's business, not an error here.
    for url in uris.iter().filter_map(|u| base_url(u).ok()) {
        if let Some(name) = archive_name(&url) {
            push_unique(out.entry(name).or_default(), url);
        }
    }
    Ok(out)
}

/// URIs of `deb` lines in one-line-style apt sources:
/// `deb [opts] URI suite [components]`.
fn one_line_uris(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb") else {
            continue;
        };
        // `deb-src` lines and anything else starting with "deb" are not ours.
        if !rest.starts_with([' ', '\t']) {
            continue;
        }
        let mut rest = rest.trim_start();
        if let Some(opts) = rest.strip_prefix('[') {
            match opts.find(']') {
                Some(end) => rest = opts[end + 1..].trim_start(),
                None => continue,
            }
        }
        if let Some(uri) = rest.split_whitespace().next() {
            out.push(uri.to_string());
        }
    }
    out
}

/// URIs of enabled `Types: deb` stanzas in a deb822 `.sources` file.
fn deb822_uris(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for stanza in deb822::stanzas(text) {
        let stanza = stanza.map_err(|e| e.to_string())?;
        if stanza
            .get("Enabled")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("no"))
        {
            continue;
        }
        if !stanza
            .get("Types")
            .is_some_and(|t| t.split_whitespace().any(|t| t == "deb"))
        {
            continue;
        }
        out.extend(
            stanza
                .get("URIs")
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
