//! The PubGrub encoding of Debian relations.
//!
//! * Every real (name, arch) is a PubGrub package whose versions are candidate
//!   indices `1..=n` in dpkg order, plus `0` = "not installed". Because a dpkg
//!   version constraint selects a contiguous run of a sorted candidate list,
//!   every relation becomes a cheap integer range.
//! * Positive dependencies always exclude 0 (else the solver could satisfy
//!   `Depends: x` by not installing x). Conflicts/Breaks are dependencies on
//!   the complement of the conflicting range, which contains 0.
//! * `a | b` and virtual names with several candidates become an
//!   [`Alt`](Pkg::Alt) proxy whose versions are the choices, in apt's order of
//!   preference (left to right, real package before providers).
//!
//! The provider sees only the in-memory [`Universe`]; it performs no I/O.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::fmt;

use pubgrub::{
    Dependencies, DependencyConstraints, DependencyProvider, PackageResolutionStatistics, Ranges,
};

use crate::priority::{self, Priority};
use crate::universe::{InstanceId, Universe};
use debcore::relation::{Dependency, Relation, parse_field};

/// Solver version: candidate index (0 = not installed) or choice index for proxies.
pub type Ver = u32;
/// Sets of solver versions.
pub type VS = Ranges<Ver>;

/// A PubGrub package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pkg {
    /// The recipe itself (version 1).
    Root,
    /// A real (name, arch) instance.
    Real(InstanceId),
    /// A proxy for a relation with several ways to satisfy it.
    Alt(u32),
}

impl fmt::Display for Pkg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only for debugging: user-facing text goes through `explain`.
        match self {
            Pkg::Root => f.write_str("recipe"),
            Pkg::Real(i) => write!(f, "instance#{i}"),
            Pkg::Alt(a) => write!(f, "alternative#{a}"),
        }
    }
}

/// One way to satisfy a proxy: a package and the versions of it that would do.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The real package.
    pub instance: InstanceId,
    /// Acceptable candidate indices.
    pub range: VS,
}

/// A proxy package: one relation (`a | b`, a virtual name, an optional Recommends).
#[derive(Debug, Clone)]
pub struct AltInfo {
    /// The relation as written, for explanations.
    pub text: String,
    /// Choices in order of preference; choice `i` is solver version `i + 1`.
    pub choices: Vec<Choice>,
    /// A soft relation (Recommends): one more choice, "none", at the end.
    pub soft: bool,
}

/// How a package relates to another, for explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    /// The recipe's `packages` list.
    Requested,
    /// The Essential / Priority: required set.
    Essential,
    /// `Depends`.
    Depends,
    /// `Pre-Depends`.
    PreDepends,
    /// `Recommends` (soft).
    Recommends,
    /// `Conflicts`.
    Conflicts,
    /// `Breaks`.
    Breaks,
    /// Multi-Arch co-installability rules.
    MultiArch,
}

/// A root requirement: the recipe's request or the Essential set.
#[derive(Debug, Clone)]
pub struct RootRequirement {
    /// The parsed relation.
    pub dependency: Dependency,
    /// Why (requested by the recipe or essential).
    pub kind: EdgeKind,
}

/// Mutable solver-side bookkeeping (proxies are created lazily).
#[derive(Default)]
struct State {
    alts: Vec<AltInfo>,
    alt_ids: HashMap<(String, Box<str>, bool), u32>,
    /// (from, from version, to) → (kind, relation text): the relation behind each edge.
    edges: HashMap<(Pkg, Ver, Pkg), (EdgeKind, String)>,
    /// Instances picked with a real version so far (preference hint for proxies).
    picked: HashSet<InstanceId>,
}

/// The PubGrub dependency provider over a [`Universe`].
pub struct DebProvider<'u> {
    u: &'u Universe,
    roots: Vec<RootRequirement>,
    recommends: bool,
    /// Candidates to keep when still allowed (from an existing lock).
    prefer: HashMap<InstanceId, u32>,
    state: RefCell<State>,
}

/// Solver-internal error (never expected: bad data is reported as "unavailable").
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProviderError(pub String);

/// The set of the given 1-based candidate indices, as contiguous runs.
fn ranges_of(indices: impl IntoIterator<Item = u32>) -> VS {
    let mut out = VS::empty();
    let mut run: Option<(u32, u32)> = None;
    for k in indices {
        run = match run {
            Some((a, b)) if b + 1 == k => Some((a, k)),
            Some((a, b)) => {
                out = out.union(&Ranges::between(a, b + 1));
                Some((k, k))
            }
            None => Some((k, k)),
        };
    }
    if let Some((a, b)) = run {
        out = out.union(&Ranges::between(a, b + 1));
    }
    out
}

impl<'u> DebProvider<'u> {
    /// A provider for the given universe and root requirements.
    pub fn new(
        u: &'u Universe,
        roots: Vec<RootRequirement>,
        recommends: bool,
        prefer: HashMap<InstanceId, u32>,
    ) -> Self {
        DebProvider {
            u,
            roots,
            recommends,
            prefer,
            state: RefCell::new(State::default()),
        }
    }

    /// The universe.
    pub fn universe(&self) -> &Universe {
        self.u
    }

    /// Proxy info by id.
    pub fn alt(&self, id: u32) -> AltInfo {
        self.state.borrow().alts[id as usize].clone()
    }

    /// The relation behind an edge, if it was recorded.
    pub fn edge(&self, from: Pkg, ver: Ver, to: Pkg) -> Option<(EdgeKind, String)> {
        self.state.borrow().edges.get(&(from, ver, to)).cloned()
    }

    /// Real candidates that satisfy one alternative, grouped by instance,
    /// in preference order: the real package first, then providers.
    fn options(&self, rel: &Relation, depender_arch: &str, negative: bool) -> Vec<Choice> {
        let u = self.u;
        let mut out = Vec::new();
        for &id in u.instances_named(&rel.name) {
            let inst = u.instance(id);
            let ks = (1..=inst.candidates.len() as u32).filter(|&k| {
                let r = u.candidate(id, k);
                rel.constraint
                    .as_ref()
                    .is_none_or(|c| c.matches(&r.version))
                    && u.arch_satisfies(rel, depender_arch, &inst.arch, r.multi_arch, negative)
            });
            let range = ranges_of(ks);
            if !range.is_empty() {
                out.push(Choice {
                    instance: id,
                    range,
                });
            }
        }
        let mut by_provider: Vec<(InstanceId, Vec<u32>)> = Vec::new();
        for p in u.providers_of(&rel.name) {
            let ok_version = match (&rel.constraint, &p.version) {
                (None, _) => true,
                (Some(c), Some(v)) => c.matches(v),
                (Some(_), None) => false,
            };
            let inst = u.instance(p.instance);
            let r = u.candidate(p.instance, p.candidate);
            if !ok_version
                || !u.arch_satisfies(rel, depender_arch, &inst.arch, r.multi_arch, negative)
            {
                continue;
            }
            match by_provider.iter_mut().find(|(i, _)| *i == p.instance) {
                Some((_, ks)) => ks.push(p.candidate),
                None => by_provider.push((p.instance, vec![p.candidate])),
            }
        }
        // Providers from preferred sources first, then by name: stable and apt-like.
        by_provider.sort_by_key(|(id, ks)| {
            let best = ks
                .iter()
                .map(|&k| u.sources()[u.candidate(*id, k).source].priority)
                .max();
            (Reverse(best), u.instance(*id).name.clone(), *id)
        });
        for (id, mut ks) in by_provider {
            ks.sort_unstable();
            ks.dedup();
            let range = ranges_of(ks);
            match out.iter_mut().find(|c| c.instance == id) {
                Some(c) => c.range = c.range.union(&range),
                None => out.push(Choice {
                    instance: id,
                    range,
                }),
            }
        }
        out
    }

    /// The PubGrub constraint for one positive relation group.
    fn positive(&self, dep: &Dependency, depender_arch: &str, soft: bool) -> (Pkg, VS) {
        let mut choices: Vec<Choice> = Vec::new();
        for rel in &dep.alternatives {
            for c in self.options(rel, depender_arch, false) {
                if !choices
                    .iter()
                    .any(|x| x.instance == c.instance && x.range == c.range)
                {
                    choices.push(c);
                }
            }
        }
        if !soft && choices.len() == 1 {
            let c = &choices[0];
            return (Pkg::Real(c.instance), c.range.clone());
        }
        let n = choices.len() as u32 + soft as u32;
        let text = dep.to_string();
        let mut st = self.state.borrow_mut();
        let key = (text.clone(), Box::<str>::from(depender_arch), soft);
        let id = match st.alt_ids.get(&key) {
            Some(&id) => id,
            None => {
                let id = st.alts.len() as u32;
                st.alts.push(AltInfo {
                    text,
                    choices,
                    soft,
                });
                st.alt_ids.insert(key, id);
                id
            }
        };
        // An empty range when nothing can satisfy it: the solver reports it as such.
        let range = if n == 0 {
            VS::empty()
        } else {
            Ranges::between(1u32, n + 1)
        };
        (Pkg::Alt(id), range)
    }

    /// Constraints forbidding what one Conflicts/Breaks relation names.
    fn negative(&self, rel: &Relation, self_id: InstanceId, depender_arch: &str) -> Vec<(Pkg, VS)> {
        self.options(rel, depender_arch, true)
            .into_iter()
            // A package never conflicts with itself (the "Provides+Conflicts: mta" idiom).
            .filter(|c| c.instance != self_id)
            .map(|c| (Pkg::Real(c.instance), c.range.complement()))
            .collect()
    }

    fn record_edge(&self, from: Pkg, ver: Ver, to: Pkg, kind: EdgeKind, text: String) {
        // Several relations on one package (`python3 (>= 3.9~), python3 (<< 3.10)`)
        // are one PubGrub edge: keep them all for the explanation.
        let mut st = self.state.borrow_mut();
        let e = st
            .edges
            .entry((from, ver, to))
            .or_insert((kind, String::new()));
        if e.1.split(", ").all(|t| t != text) {
            if !e.1.is_empty() {
                e.1.push_str(", ");
            }
            e.1.push_str(&text);
        }
    }

    fn root_dependencies(&self) -> DependencyConstraints<Pkg, VS> {
        let mut map: HashMap<Pkg, VS> = HashMap::new();
        let mut order = Vec::new();
        for req in &self.roots {
            let (p, vs) = self.positive(&req.dependency, self.u.native(), false);
            self.record_edge(Pkg::Root, 1, p, req.kind, req.dependency.to_string());
            add(&mut map, &mut order, p, vs);
        }
        order
            .into_iter()
            .map(|p| (p, map.remove(&p).unwrap()))
            .collect()
    }

    fn real_dependencies(&self, id: InstanceId, k: Ver) -> Dependencies<Pkg, VS, String> {
        let u = self.u;
        let inst = u.instance(id);
        let r = u.candidate(id, k);
        let me = Pkg::Real(id);
        self.state.borrow_mut().picked.insert(id);
        let mut map: HashMap<Pkg, VS> = HashMap::new();
        let mut order = Vec::new();
        let mut fields: Vec<(EdgeKind, &str)> = vec![
            (EdgeKind::PreDepends, r.pre_depends()),
            (EdgeKind::Depends, r.depends()),
        ];
        if self.recommends {
            fields.push((EdgeKind::Recommends, r.recommends()));
        }
        fields.push((EdgeKind::Conflicts, r.conflicts()));
        fields.push((EdgeKind::Breaks, r.breaks()));
        for (kind, text) in fields {
            let deps = match parse_field(text) {
                Ok(d) => d,
                Err(e) => {
                    return Dependencies::Unavailable(format!(
                        "{} {} ({}) has a malformed {:?} field: {e}",
                        r.name,
                        r.version,
                        u.source_name(r),
                        kind
                    ));
                }
            };
            for dep in deps {
                match kind {
                    EdgeKind::Conflicts | EdgeKind::Breaks => {
                        for rel in &dep.alternatives {
                            for (p, vs) in self.negative(rel, id, &inst.arch) {
                                self.record_edge(me, k, p, kind, rel.to_string());
                                add(&mut map, &mut order, p, vs);
                            }
                        }
                    }
                    _ => {
                        let (p, vs) = self.positive(&dep, &inst.arch, kind == EdgeKind::Recommends);
                        self.record_edge(me, k, p, kind, dep.to_string());
                        add(&mut map, &mut order, p, vs);
                    }
                }
            }
        }
        // Multi-Arch: the same name on another architecture is co-installable only
        // when both are `Multi-Arch: same`, and then only at the same version.
        for &other in u.instances_named(&inst.name) {
            if other == id {
                continue;
            }
            let allowed = if r.multi_arch == debcore::package::MultiArch::Same {
                let same = (1..=u.candidate_count(other)).filter(|&j| {
                    let o = u.candidate(other, j);
                    o.multi_arch == debcore::package::MultiArch::Same && o.version == r.version
                });
                ranges_of(same).union(&Ranges::singleton(0u32))
            } else {
                Ranges::singleton(0u32)
            };
            self.record_edge(
                me,
                k,
                Pkg::Real(other),
                EdgeKind::MultiArch,
                inst.name.to_string(),
            );
            add(&mut map, &mut order, Pkg::Real(other), allowed);
        }
        // A package must not depend on itself in PubGrub terms; a self-dependency
        // (`Depends: foo` in foo, or via Provides) is satisfied by being installed.
        if map.get(&me).is_some_and(|vs| vs.contains(&k)) {
            map.remove(&me);
            order.retain(|p| *p != me);
        }
        Dependencies::Available(
            order
                .into_iter()
                .map(|p| (p, map.remove(&p).unwrap()))
                .collect(),
        )
    }
}

/// Adds a constraint, intersecting with an earlier one on the same package.
fn add(map: &mut HashMap<Pkg, VS>, order: &mut Vec<Pkg>, p: Pkg, vs: VS) {
    match map.get_mut(&p) {
        Some(old) => *old = old.intersection(&vs),
        None => {
            order.push(p);
            map.insert(p, vs);
        }
    }
}

impl DependencyProvider for DebProvider<'_> {
    type P = Pkg;
    type V = Ver;
    type VS = VS;
    type M = String;
    type Priority = Priority;
    type Err = ProviderError;

    fn prioritize(&self, p: &Pkg, range: &VS, stats: &PackageResolutionStatistics) -> Priority {
        match p {
            Pkg::Root => priority::fixed(9),
            // Packages only mentioned by Conflicts/Breaks: decide last, as "not installed".
            Pkg::Real(_) if range.contains(&0) => priority::fixed(0),
            Pkg::Real(id) => priority::ranked(3, stats, self.u.candidate_count(*id), range),
            // Proxies after real packages, so that an earlier pick can satisfy them.
            Pkg::Alt(a) => {
                let n = self.state.borrow().alts[*a as usize].choices.len();
                (2, stats.conflict_count(), Reverse(n as u32))
            }
        }
    }

    fn choose_version(&self, p: &Pkg, range: &VS) -> Result<Option<Ver>, ProviderError> {
        let u = self.u;
        Ok(match p {
            Pkg::Root => range.contains(&1).then_some(1),
            Pkg::Real(id) => {
                if range.contains(&0) {
                    return Ok(Some(0));
                }
                // A locked version that is still allowed stays (minimal updates).
                if let Some(&k) = self.prefer.get(id).filter(|k| range.contains(k)) {
                    return Ok(Some(k));
                }
                // apt's policy: highest source priority, then highest version.
                (1..=u.candidate_count(*id))
                    .rev()
                    .filter(|k| range.contains(k))
                    .max_by_key(|&k| (u.sources()[u.candidate(*id, k).source].priority, k))
            }
            Pkg::Alt(a) => {
                let st = self.state.borrow();
                let alt = &st.alts[*a as usize];
                let n = alt.choices.len() as u32 + alt.soft as u32;
                let in_range = |i: &u32| range.contains(i);
                // Prefer a choice whose package is already picked, as apt does.
                let already = (1..=alt.choices.len() as u32)
                    .filter(in_range)
                    .find(|&i| st.picked.contains(&alt.choices[i as usize - 1].instance));
                already.or_else(|| (1..=n).find(in_range))
            }
        })
    }

    fn get_dependencies(
        &self,
        p: &Pkg,
        v: &Ver,
    ) -> Result<Dependencies<Pkg, VS, String>, ProviderError> {
        Ok(match *p {
            Pkg::Root => Dependencies::Available(self.root_dependencies()),
            Pkg::Real(_) if *v == 0 => Dependencies::Available(DependencyConstraints::default()),
            Pkg::Real(id) => self.real_dependencies(id, *v),
            Pkg::Alt(a) => {
                let alt = self.alt(a);
                match alt.choices.get(*v as usize - 1) {
                    Some(c) => Dependencies::Available(
                        [(Pkg::Real(c.instance), c.range.clone())]
                            .into_iter()
                            .collect(),
                    ),
                    None => Dependencies::Available(DependencyConstraints::default()),
                }
            }
        })
    }
}
