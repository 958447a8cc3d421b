//! Resolved dependency edges of a solution: for each installed package and
//! each of its relations, which installed package satisfies it. Computed from
//! the final set (not from solver internals), so it is what dpkg will see.

use crate::universe::{InstanceId, Universe};
use crate::{EdgeKind, RootRequirement, Solution};
use debcore::relation::{Dependency, Relation, parse_field};

/// One resolved edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// The satisfying installed instance.
    pub to: InstanceId,
    /// The relation group as written.
    pub relation: String,
    /// Which field it comes from.
    pub kind: EdgeKind,
}

impl Solution {
    /// Whether relation `rel`, written by a package of `depender_arch`, is
    /// satisfied by an installed package; returns that package.
    pub fn satisfier(
        &self,
        u: &Universe,
        rel: &Relation,
        depender_arch: &str,
    ) -> Option<InstanceId> {
        for &id in u.instances_named(&rel.name) {
            if let Some(&k) = self.chosen.get(&id) {
                let r = u.candidate(id, k);
                if rel
                    .constraint
                    .as_ref()
                    .is_none_or(|c| c.matches(&r.version))
                    && u.arch_satisfies(
                        rel,
                        depender_arch,
                        &u.instance(id).arch,
                        r.multi_arch,
                        false,
                    )
                {
                    return Some(id);
                }
            }
        }
        u.providers_of(&rel.name)
            .iter()
            .filter(|p| self.chosen.get(&p.instance) == Some(&p.candidate))
            .filter(|p| match (&rel.constraint, &p.version) {
                (None, _) => true,
                (Some(c), Some(v)) => c.matches(v),
                (Some(_), None) => false,
            })
            .find(|p| {
                let r = u.candidate(p.instance, p.candidate);
                u.arch_satisfies(
                    rel,
                    depender_arch,
                    &u.instance(p.instance).arch,
                    r.multi_arch,
                    false,
                )
            })
            .map(|p| p.instance)
    }

    /// The first installed package satisfying a group, left to right.
    pub fn group_satisfier(
        &self,
        u: &Universe,
        dep: &Dependency,
        depender_arch: &str,
    ) -> Option<InstanceId> {
        dep.alternatives
            .iter()
            .find_map(|rel| self.satisfier(u, rel, depender_arch))
    }

    /// The resolved edges of one installed instance, in field order
    /// (Pre-Depends, Depends, then Recommends when enabled). Malformed fields
    /// cannot occur here: the solver refuses such packages.
    pub fn edges(&self, u: &Universe, id: InstanceId, recommends: bool) -> Vec<Edge> {
        let k = self.chosen[&id];
        let r = u.candidate(id, k);
        let arch = &u.instance(id).arch;
        let mut fields = vec![
            (EdgeKind::PreDepends, r.pre_depends()),
            (EdgeKind::Depends, r.depends()),
        ];
        if recommends {
            fields.push((EdgeKind::Recommends, r.recommends()));
        }
        let mut out = Vec::new();
        for (kind, text) in fields {
            for dep in parse_field(text).unwrap_or_default() {
                if let Some(to) = self.group_satisfier(u, &dep, arch).filter(|&to| to != id) {
                    out.push(Edge {
                        to,
                        relation: dep.to_string(),
                        kind,
                    });
                }
            }
        }
        out
    }

    /// Why each root requirement is satisfied: (instance, requirement kind) for
    /// the package that satisfies each recipe request or essential entry.
    pub fn root_reasons(
        &self,
        u: &Universe,
        roots: &[RootRequirement],
    ) -> Vec<(InstanceId, EdgeKind)> {
        roots
            .iter()
            .filter_map(|r| {
                self.group_satisfier(u, &r.dependency, u.native())
                    .map(|id| (id, r.kind))
            })
            .collect()
    }
}
