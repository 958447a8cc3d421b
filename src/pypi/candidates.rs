//! The in-memory index the resolver works on: per project, the versions
//! that may be installed on the target, each with the one file chosen for it.
//!
//! Policy lives here, not in the solver: the best wheel for the target's
//! tags; an sdist only for `allow-sdist` projects without such a wheel;
//! `Requires-Python` must admit the target; yanked files only when the
//! recipe pins that exact version; pre-releases only when the recipe names
//! one (or the project has nothing else); recipe constraints. What was left
//! out is kept as a reason, for explanations.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use pep440_rs::{Operator, Version, VersionSpecifiers};

use super::filename::{self, DistFile};
use super::index::{IndexFile, ProjectPage};
use super::metadata::Metadata;
use super::target::Target;

/// One installable version.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its version.
    pub version: Version,
    /// The chosen file (`None`: provided by Debian).
    pub file: Option<IndexFile>,
    /// The Debian package providing it (`use-debian`).
    pub debian: Option<String>,
}

impl Candidate {
    /// Whether the chosen file is an sdist.
    pub fn is_sdist(&self) -> bool {
        self.file
            .as_ref()
            .is_some_and(|f| !f.filename.ends_with(".whl"))
    }
}

/// A project as the resolver sees it.
#[derive(Debug, Clone, Default)]
pub struct Project {
    /// Installable versions, ascending; solver version `k` is `candidates[k - 1]`.
    pub candidates: Vec<Candidate>,
    /// Versions left out and why, for explanations.
    pub skipped: BTreeMap<String, String>,
}

/// Recipe-level choices that shape candidate lists.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Normalised names allowed to use sdists.
    pub allow_sdist: HashSet<String>,
    /// Recipe constraints per name.
    pub constraints: HashMap<String, Vec<VersionSpecifiers>>,
    /// Exact pins (`==X`, `===X`) in the recipe per name: yanked files allowed.
    pub pinned: HashMap<String, Vec<Version>>,
    /// Names whose recipe specifiers mention a pre-release.
    pub prereleases: HashSet<String>,
    /// `use-debian` names → (Debian package, its upstream version).
    pub debian: HashMap<String, (String, Version)>,
}

impl Policy {
    /// Records what a recipe requirement or constraint implies for `name`.
    pub fn note_specifiers(&mut self, name: &str, specs: &VersionSpecifiers) {
        for s in specs.iter() {
            if s.version().any_prerelease() {
                self.prereleases.insert(name.to_string());
            }
            if matches!(s.operator(), Operator::Equal | Operator::ExactEqual) {
                self.pinned
                    .entry(name.to_string())
                    .or_default()
                    .push(s.version().clone());
            }
        }
    }
}

/// The in-memory index: what has been fetched so far.
#[derive(Debug, Default)]
pub struct Universe {
    /// Normalised name → project (`None`: the index has no such project).
    pub projects: HashMap<String, Option<Project>>,
    /// File sha256 → its parsed metadata.
    pub metadata: HashMap<String, Metadata>,
}

/// Chooses, per version, the file to use on `target`.
pub fn project(name: &str, page: &ProjectPage, target: &Target, policy: &Policy) -> Project {
    if let Some((deb, version)) = policy.debian.get(name) {
        return Project {
            candidates: vec![Candidate {
                version: version.clone(),
                file: None,
                debian: Some(deb.clone()),
            }],
            skipped: BTreeMap::new(),
        };
    }
    let python = target.python_version();
    // version → (rank, file); sdists rank after every wheel.
    let mut best: BTreeMap<Version, (u32, &IndexFile)> = BTreeMap::new();
    let mut skipped: BTreeMap<Version, String> = BTreeMap::new();
    let mut skip = |v: &Version, why: String| {
        skipped.entry(v.clone()).or_insert(why);
    };
    for f in &page.files {
        let Some(dist) = filename::parse(name, &f.filename) else {
            continue;
        };
        let v = dist.version().clone();
        if f.yanked && !policy.pinned.get(name).is_some_and(|p| p.contains(&v)) {
            skip(&v, "yanked".into());
            continue;
        }
        if let Some(rp) = &f.requires_python {
            match VersionSpecifiers::from_str(rp) {
                Ok(s) if !s.contains(&python) => {
                    skip(&v, format!("requires Python {rp}"));
                    continue;
                }
                Err(_) => {
                    skip(&v, format!("unreadable Requires-Python `{rp}`"));
                    continue;
                }
                Ok(_) => {}
            }
        }
        let rank = match &dist {
            DistFile::Wheel { tags, .. } => match target.wheel_rank(tags) {
                Some(r) => r,
                None => {
                    skip(&v, format!("no wheel for {}", target.describe()));
                    continue;
                }
            },
            // Old releases often have only a `.zip` sdist: a candidate
            // the build could not use is left out with its reason (the
            // explanation says it) instead of failing the whole solve.
            DistFile::Sdist { .. }
                if policy.allow_sdist.contains(name) && !f.filename.ends_with(".tar.gz") =>
            {
                skip(
                    &v,
                    "only a .zip sdist (imgbuild builds .tar.gz sdists)".into(),
                );
                continue;
            }
            DistFile::Sdist { .. } if policy.allow_sdist.contains(name) => u32::MAX,
            DistFile::Sdist { .. } => {
                skip(
                    &v,
                    format!(
                        "no wheel for {} (only an sdist; see allow-sdist)",
                        target.describe()
                    ),
                );
                continue;
            }
        };
        let slot = best.entry(v).or_insert((rank, f));
        if rank < slot.0 {
            *slot = (rank, f);
        }
    }
    let constraints = policy.constraints.get(name);
    let any_final = best.keys().any(|v| !v.any_prerelease());
    let mut candidates = Vec::new();
    for (v, (_, f)) in best {
        if let Some(cs) = constraints
            && let Some(c) = cs.iter().find(|c| !c.contains(&v))
        {
            skipped.insert(v, format!("excluded by the recipe constraint `{c}`"));
            continue;
        }
        if v.any_prerelease() && any_final && !policy.prereleases.contains(name) {
            skipped.insert(v, "pre-release (name one in the recipe to allow)".into());
            continue;
        }
        skipped.remove(&v);
        candidates.push(Candidate {
            version: v,
            file: Some(f.clone()),
            debian: None,
        });
    }
    Project {
        candidates,
        skipped: skipped
            .into_iter()
            .map(|(v, why)| (v.to_string(), why))
            .collect(),
    }
}
