//! The driver: solve over the in-memory universe; when the solve stops for
//! missing index data, fetch that (in parallel) and solve again. I/O stays
//! here; [`super::provider`] is pure.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;

use futures_util::StreamExt;
use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::{Requirement, VersionOrUrl};
use pubgrub::PubGrubError;

use super::candidates::{self, Policy, Universe};
use super::error::{Context, PypiError, Result, invalid};
use super::index::IndexClient;
use super::metadata::Metadata;
use super::provider::{PyPkg, PyProvider, Ver};
use super::target::Target;
use crate::lock::{LockedPyEdge, LockedPython, Lockfile};
use crate::recipe::{PythonSpec, normalize_name};

/// Parallel index requests.
const PARALLEL: usize = 16;
/// Bound on fetch-and-solve rounds (each round fetches at least one thing).
const MAX_ROUNDS: usize = 500;
/// Levels of dependencies fetched ahead of the solver in one round.
const PREFETCH_DEPTH: usize = 8;
/// Older candidates fetched along with one the solver asks for.
const BACKTRACK_AHEAD: Ver = 3;

/// The result of resolving `[python]`.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// `[[python]]` entries, sorted by name.
    pub python: Vec<LockedPython>,
    /// Remarks for the user (Debian packages that could serve instead, …).
    pub notes: Vec<String>,
    /// Fetch-and-solve rounds taken.
    pub rounds: usize,
}

/// The upstream part of a Debian version as a PEP 440 version, if it reads
/// as one (`2.5.0+dfsg-2` → `2.5.0`).
pub fn debian_upstream(deb: &str) -> Option<Version> {
    let v = deb.split_once(':').map_or(deb, |(_, v)| v);
    let v = v.rsplit_once('-').map_or(v, |(u, _)| u);
    let v: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    Version::from_str(v.trim_end_matches('.')).ok()
}

/// The Debian package that ships distribution `name`, by Debian's naming
/// rule (`python3-<name>`), if the lock has it.
fn debian_package<'l>(lock: &'l Lockfile, name: &str) -> Option<&'l crate::lock::LockedPackage> {
    lock.package(&format!("python3-{name}"))
}

fn specifiers(r: &Requirement) -> Option<&VersionSpecifiers> {
    match &r.version_or_url {
        Some(VersionOrUrl::VersionSpecifier(s)) => Some(s),
        _ => None,
    }
}

/// Builds the candidate policy from the recipe and the Debian lock.
pub fn policy(spec: &PythonSpec, debian: &Lockfile) -> Result<Policy> {
    let mut p = Policy {
        allow_sdist: spec.allow_sdist.iter().cloned().collect(),
        ..Policy::default()
    };
    for r in spec.requirements.iter().chain(&spec.constraints) {
        let name = normalize_name(r.requirement.name.as_ref());
        if let Some(s) = specifiers(&r.requirement) {
            p.note_specifiers(&name, s);
        }
    }
    for c in &spec.constraints {
        if let Some(s) = specifiers(&c.requirement) {
            p.constraints
                .entry(normalize_name(c.requirement.name.as_ref()))
                .or_default()
                .push(s.clone());
        }
    }
    for name in &spec.use_debian {
        let deb = debian_package(debian, name).ok_or_else(|| {
            PypiError::Invalid(format!("use-debian `{name}`: python3-{name} is not in the lock; add \"python3-{name}\" to `packages`"))
        })?;
        let v = debian_upstream(&deb.version).ok_or_else(|| {
            PypiError::Invalid(format!(
                "use-debian `{name}`: cannot read {} {} as a Python version",
                deb.name, deb.version
            ))
        })?;
        p.debian.insert(name.clone(), (deb.name.clone(), v));
    }
    Ok(p)
}

/// Resolves `spec` for the image described by the Debian lock `debian`.
/// `prefer` holds versions to keep when still allowed (the previous lock).
pub fn resolve(
    spec: &PythonSpec,
    debian: &Lockfile,
    client: &IndexClient,
    prefer: HashMap<String, String>,
) -> Result<Resolved> {
    let target = Target::from_lock(debian)?;
    let policy = policy(spec, debian)?;
    let env = target.markers();
    let roots: Vec<Requirement> = spec
        .requirements
        .iter()
        .filter(|r| r.requirement.marker.evaluate(env, &[]))
        .map(|r| r.requirement.clone())
        .collect();
    let mut u = Universe::default();
    for round in 1..=MAX_ROUNDS {
        let provider = PyProvider::new(&u, &target, roots.clone(), prefer.clone());
        let missing = match pubgrub::resolve(&provider, PyPkg::Root, 1u32) {
            Ok(sel) => {
                let (mut python, notes) = to_lock(&provider, debian, &roots, &sel);
                drop(provider);
                crate::http::block_on(fill_sizes(&u, client, &mut python))??;
                return Ok(Resolved {
                    python,
                    notes,
                    rounds: round,
                });
            }
            Err(PubGrubError::NoSolution(tree)) => {
                invalid!(
                    "no set of Python distributions satisfies `[python]` for {}:\n\n{}",
                    target.describe(),
                    super::explain::explain(&provider, tree)
                )
            }
            Err(PubGrubError::ErrorChoosingVersion { .. })
            | Err(PubGrubError::ErrorRetrievingDependencies { .. }) => {
                provider.missing.into_inner()
            }
            Err(e) => invalid!("Python resolution failed: {e}"),
        };
        if missing.is_empty() {
            invalid!("Python resolution stopped without saying what it needs (a bug)");
        }
        crate::http::block_on(fetch(&mut u, client, &target, &policy, missing))??;
    }
    invalid!("Python resolution did not finish in {MAX_ROUNDS} rounds")
}

/// Fetches missing pages, then the metadata asked for plus that of the
/// newest candidate of every new project (the likely next pick); then,
/// speculatively, the same for the dependencies that metadata names, a few
/// levels deep, so that one round usually brings in a whole subtree instead
/// of one level (each round trip to the index costs more than a solve).
async fn fetch(
    u: &mut Universe,
    client: &IndexClient,
    target: &Target,
    policy: &Policy,
    missing: super::provider::Missing,
) -> Result<()> {
    let mut names: BTreeSet<String> = missing.projects;
    // The solver asking for an older candidate is backtracking, and tends
    // to walk down: fetch the next few older ones with it.
    let mut wanted: BTreeSet<(String, Ver)> = missing
        .metadata
        .iter()
        .flat_map(|(n, k)| (k.saturating_sub(BACKTRACK_AHEAD)..=*k).map(move |k| (n.clone(), k)))
        .filter(|(_, k)| *k > 0)
        .collect();
    for _ in 0..PREFETCH_DEPTH {
        names.retain(|n| !u.projects.contains_key(n));
        if names.is_empty() && wanted.is_empty() {
            break;
        }
        let pages: Vec<(String, Result<_>)> =
            futures_util::stream::iter(std::mem::take(&mut names))
                .map(|n| async move {
                    let page = if policy.debian.contains_key(&n) {
                        Ok(Some(Default::default()))
                    } else {
                        client.project(&n).await
                    };
                    (n, page)
                })
                .buffer_unordered(PARALLEL)
                .collect()
                .await;
        for (name, page) in pages {
            let page = page.with_context(|| format!("reading the index page of `{name}`"))?;
            let project = page.map(|p| candidates::project(&name, &p, target, policy));
            if let Some(p) = &project
                && !p.candidates.is_empty()
            {
                wanted.insert((name.clone(), p.candidates.len() as Ver));
            }
            u.projects.insert(name, project);
        }
        let files: Vec<_> = std::mem::take(&mut wanted)
            .into_iter()
            .filter_map(|(n, k)| {
                let c = u
                    .projects
                    .get(&n)?
                    .as_ref()?
                    .candidates
                    .get(k as usize - 1)?;
                let f = c.file.clone()?;
                (!u.metadata.contains_key(&f.sha256)).then_some(f)
            })
            .collect();
        let metas: Vec<_> = futures_util::stream::iter(files)
            .map(|f| async move {
                let text = client.metadata(&f).await;
                (f, text)
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for (f, text) in metas {
            let text = text.with_context(|| format!("reading the metadata of {}", f.filename))?;
            let m = Metadata::parse(&text, &f.filename)?;
            for r in &m.requires_dist {
                if r.marker.evaluate(target.markers(), &[]) {
                    names.insert(normalize_name(r.name.as_ref()));
                }
            }
            u.metadata.insert(f.sha256.clone(), m);
        }
    }
    Ok(())
}

/// Sizes the page did not give (PEP 691 API 1.0 indexes), from HEAD requests.
async fn fill_sizes(u: &Universe, client: &IndexClient, python: &mut [LockedPython]) -> Result<()> {
    for p in python
        .iter_mut()
        .filter(|p| p.debian.is_none() && p.size == 0)
    {
        let file = u
            .projects
            .get(&p.name)
            .and_then(|pr| pr.as_ref())
            .and_then(|pr| {
                pr.candidates
                    .iter()
                    .filter_map(|c| c.file.as_ref())
                    .find(|f| f.filename == p.filename)
            })
            .ok_or_else(|| {
                PypiError::Invalid(format!(
                    "{}: chosen file not in the index (a bug)",
                    p.label()
                ))
            })?;
        p.size = client.size(&file.url).await?;
    }
    Ok(())
}

/// The chosen distributions as lock entries, and notes.
fn to_lock(
    p: &PyProvider<'_>,
    debian: &Lockfile,
    roots: &[Requirement],
    sel: &pubgrub::SelectedDependencies<PyPkg, Ver>,
) -> (Vec<LockedPython>, Vec<String>) {
    let mut extras: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (pkg, _) in sel.iter() {
        if let PyPkg::Extra(n, e) = pkg {
            extras.entry(&**n).or_default().push(e.to_string());
        }
    }
    let requested: BTreeSet<String> = roots
        .iter()
        .map(|r| normalize_name(r.name.as_ref()))
        .collect();
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for (pkg, &k) in sel.iter() {
        let PyPkg::Dist(name) = pkg else { continue };
        let name: &str = name;
        let project = p.u.projects[name].as_ref().expect("chosen, so known");
        let c = &project.candidates[k as usize - 1];
        let mut ex = extras.get(name).cloned().unwrap_or_default();
        ex.sort();
        let mut depends: Vec<LockedPyEdge> = Vec::new();
        let lists = std::iter::once(None).chain(ex.iter().map(|e| Some(e.as_str())));
        for extra in lists {
            for r in p.requirements(name, k, extra).unwrap_or_default() {
                let edge = LockedPyEdge {
                    name: normalize_name(r.name.as_ref()),
                    requirement: r.to_string(),
                };
                if edge.name != name && !depends.contains(&edge) {
                    depends.push(edge);
                }
            }
        }
        let requires_python = c.file.as_ref().and_then(|f| {
            f.requires_python.clone().or_else(|| {
                p.u.metadata
                    .get(&f.sha256)
                    .and_then(|m| m.requires_python.as_ref().map(|s| s.to_string()))
            })
        });
        if c.debian.is_none()
            && let Some(deb) = debian_package(debian, name)
        {
            notes.push(format!(
                "{name} {} from PyPI shadows Debian's {} {} (locked); `use-debian = [\"{name}\"]` would use Debian's",
                c.version, deb.name, deb.version
            ));
        }
        let file = c.file.as_ref();
        out.push(LockedPython {
            name: name.to_string(),
            version: c.version.to_string(),
            filename: file.map(|f| f.filename.clone()).unwrap_or_default(),
            size: file.and_then(|f| f.size).unwrap_or(0),
            sha256: file.map(|f| f.sha256.clone()).unwrap_or_default(),
            requires_python,
            debian: c.debian.clone(),
            reason: requested.contains(name).then(|| "recipe".to_string()),
            extras: ex,
            depends,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    (out, notes)
}
