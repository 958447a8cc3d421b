//! The PubGrub encoding of Python requirements over the in-memory
//! [`Universe`]; no I/O.
//!
//! * `Dist(name)`: versions are candidate indices `1..=n` (ascending PEP 440
//!   order), so a specifier becomes a set of integer runs.
//! * `Extra(name, extra)`: a proxy with the same versions; it depends on
//!   `Dist(name)` at exactly its version plus the requirements that the extra
//!   turns on (PEP 508 `extra == "…"` markers).
//! * Markers are evaluated for the [`Target`], never for the host.
//!
//! Data not fetched yet (a project page, a candidate's metadata) is recorded
//! in [`Missing`] and the solve stops with [`ProviderError::Missing`]; the
//! driver fetches it and solves again. Each solve is cheap (microseconds to
//! milliseconds), so the resolver stays a pure function of the universe.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use pep508_rs::{ExtraName, Requirement, VersionOrUrl};
use pubgrub::{
    Dependencies, DependencyConstraints, DependencyProvider, PackageResolutionStatistics, Ranges,
};

use debsolve::priority::{self, Priority};

use super::candidates::{Project, Universe};
use super::target::Target;
use crate::recipe::normalize_name;

/// Candidate index (1-based).
pub type Ver = u32;
/// Sets of candidate indices.
pub type VS = Ranges<Ver>;

/// A PubGrub package.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PyPkg {
    /// The recipe's `[python]` requirements.
    Root,
    /// A distribution (normalised name).
    Dist(Arc<str>),
    /// A distribution with one extra.
    Extra(Arc<str>, Arc<str>),
}

impl fmt::Display for PyPkg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PyPkg::Root => f.write_str("the recipe"),
            PyPkg::Dist(n) => f.write_str(n),
            PyPkg::Extra(n, e) => write!(f, "{n}[{e}]"),
        }
    }
}

/// What a solve found missing from the universe.
#[derive(Debug, Default, Clone)]
pub struct Missing {
    /// Project pages to fetch.
    pub projects: BTreeSet<String>,
    /// (project, candidate index) whose metadata to fetch.
    pub metadata: BTreeSet<(String, Ver)>,
}

impl Missing {
    /// Nothing missing.
    pub fn is_empty(&self) -> bool {
        self.projects.is_empty() && self.metadata.is_empty()
    }
}

/// Why the provider stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Data to fetch first (see [`Missing`]).
    #[error("index data missing")]
    Missing,
}

/// The provider.
pub struct PyProvider<'a> {
    pub(super) u: &'a Universe,
    pub(super) target: &'a Target,
    roots: Vec<Requirement>,
    /// Locked versions to keep when still allowed.
    prefer: HashMap<String, String>,
    pub(super) missing: RefCell<Missing>,
    /// (from, version, to) → requirement text, for explanations.
    pub(super) edges: RefCell<HashMap<(PyPkg, Ver, PyPkg), String>>,
}

impl<'a> PyProvider<'a> {
    /// A provider for `roots` (already filtered by their markers).
    pub fn new(
        u: &'a Universe,
        target: &'a Target,
        roots: Vec<Requirement>,
        prefer: HashMap<String, String>,
    ) -> Self {
        PyProvider {
            u,
            target,
            roots,
            prefer,
            missing: RefCell::new(Missing::default()),
            edges: RefCell::new(HashMap::new()),
        }
    }

    /// The project, or `None` while its page is missing (recorded).
    pub(super) fn project(&self, name: &str) -> Option<Option<&'a Project>> {
        match self.u.projects.get(name) {
            Some(p) => Some(p.as_ref()),
            None => {
                self.missing.borrow_mut().projects.insert(name.to_string());
                None
            }
        }
    }

    /// Candidate indices of `name` whose version satisfies `r`'s specifier.
    fn range_for(&self, r: &Requirement, project: Option<&Project>) -> VS {
        let Some(project) = project else {
            return VS::empty();
        };
        let spec = match &r.version_or_url {
            Some(VersionOrUrl::VersionSpecifier(s)) => Some(s),
            _ => None,
        };
        let mut out = VS::empty();
        for (i, c) in project.candidates.iter().enumerate() {
            if spec.is_none_or(|s| s.contains(&c.version)) {
                let k = i as u32 + 1;
                out = out.union(&Ranges::singleton(k));
            }
        }
        out
    }

    /// Adds `r` (its markers already known to hold) as dependencies of `from@v`.
    fn add(&self, deps: &mut Vec<(PyPkg, VS)>, from: &PyPkg, v: Ver, r: &Requirement) {
        let name: Arc<str> = normalize_name(r.name.as_ref()).into();
        let project = match self.u.projects.get(&*name) {
            Some(p) => p.as_ref(),
            None => {
                // Not fetched yet: ask for it, and say "anything" for now;
                // the solve stops when it needs the page.
                self.missing.borrow_mut().projects.insert(name.to_string());
                None
            }
        };
        let known = self.u.projects.contains_key(&*name);
        let range = if known {
            self.range_for(r, project)
        } else {
            VS::full()
        };
        let mut targets = vec![PyPkg::Dist(name.clone())];
        targets.extend(
            r.extras
                .iter()
                .map(|e| PyPkg::Extra(name.clone(), e.as_ref().into())),
        );
        let mut edges = self.edges.borrow_mut();
        for t in targets {
            if t == *from {
                continue;
            }
            edges.insert((from.clone(), v, t.clone()), r.to_string());
            match deps.iter_mut().find(|(p, _)| *p == t) {
                Some((_, slot)) => *slot = slot.intersection(&range),
                None => deps.push((t, range.clone())),
            }
        }
    }

    /// Requirements of `name` at candidate `k` that apply with `extras` on.
    /// `None` while the metadata is missing (recorded).
    pub(super) fn requirements(
        &self,
        name: &str,
        k: Ver,
        extra: Option<&str>,
    ) -> Option<Vec<&'a Requirement>> {
        let project = self.u.projects.get(name)?.as_ref()?;
        let c = &project.candidates[k as usize - 1];
        let Some(file) = &c.file else {
            return Some(Vec::new()); // Debian's: dpkg handles its dependencies.
        };
        let Some(meta) = self.u.metadata.get(&file.sha256) else {
            self.missing
                .borrow_mut()
                .metadata
                .insert((name.to_string(), k));
            return None;
        };
        let env = self.target.markers();
        let reqs = meta.requires_dist.iter().filter(|r| match extra {
            None => r.marker.evaluate(env, &[]),
            Some(e) => {
                let e = ExtraName::new(e.to_string()).expect("valid extra");
                r.marker.evaluate(env, std::slice::from_ref(&e)) && !r.marker.evaluate(env, &[])
            }
        });
        Some(reqs.collect())
    }
}

impl DependencyProvider for PyProvider<'_> {
    type P = PyPkg;
    type V = Ver;
    type VS = VS;
    type M = String;
    type Priority = Priority;
    type Err = ProviderError;

    fn prioritize(&self, p: &PyPkg, range: &VS, stats: &PackageResolutionStatistics) -> Priority {
        match p {
            PyPkg::Root => priority::fixed(9),
            PyPkg::Dist(n) | PyPkg::Extra(n, _) => {
                let Some(Some(project)) = self.u.projects.get(&**n) else {
                    // Unknown: decide it first, so the solve asks for it early.
                    return priority::fixed(8);
                };
                let tier = if matches!(p, PyPkg::Extra(..)) { 2 } else { 3 };
                priority::ranked(tier, stats, project.candidates.len() as u32, range)
            }
        }
    }

    fn choose_version(&self, p: &PyPkg, range: &VS) -> Result<Option<Ver>, ProviderError> {
        let name = match p {
            PyPkg::Root => return Ok(range.contains(&1).then_some(1)),
            PyPkg::Dist(n) | PyPkg::Extra(n, _) => n,
        };
        let Some(project) = self.project(name) else {
            return Err(ProviderError::Missing);
        };
        let Some(project) = project else {
            return Ok(None);
        };
        let n = project.candidates.len() as u32;
        if let Some(v) = self.prefer.get(&**name)
            && let Some(i) = project
                .candidates
                .iter()
                .position(|c| c.version.to_string() == *v)
            && range.contains(&(i as u32 + 1))
        {
            return Ok(Some(i as u32 + 1));
        }
        Ok((1..=n).rev().find(|k| range.contains(k)))
    }

    fn get_dependencies(
        &self,
        p: &PyPkg,
        v: &Ver,
    ) -> Result<Dependencies<PyPkg, VS, String>, ProviderError> {
        let mut deps: Vec<(PyPkg, VS)> = Vec::new();
        match p {
            PyPkg::Root => {
                for r in &self.roots {
                    self.add(&mut deps, p, *v, r);
                }
            }
            PyPkg::Dist(n) => {
                let reqs = self
                    .requirements(n, *v, None)
                    .ok_or(ProviderError::Missing)?;
                for r in reqs {
                    self.add(&mut deps, p, *v, r);
                }
            }
            PyPkg::Extra(n, e) => {
                deps.push((PyPkg::Dist(n.clone()), Ranges::singleton(*v)));
                let reqs = self
                    .requirements(n, *v, Some(e))
                    .ok_or(ProviderError::Missing)?;
                for r in reqs {
                    self.add(&mut deps, p, *v, r);
                }
            }
        }
        Ok(Dependencies::Available(
            deps.into_iter().collect::<DependencyConstraints<_, _>>(),
        ))
    }
}
