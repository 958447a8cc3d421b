//! Which packages form the base set and in which order packages are unpacked
//! and prepared.
//!
//! The base set is what debootstrap calls "required": every package with
//! `Essential: yes` or `Priority: required`, closed over the lock's
//! `depends`/`pre-depends` edges (so that it can be configured on its own).
//! It is unpacked and configured first. Within each set, a package comes
//! after the packages it pre-depends on (Kahn's algorithm over the
//! `pre-depends` edges); ties, and the packages of a cycle, go in a fixed
//! order: debootstrap's core packages first (`base-passwd` makes
//! `/etc/passwd`, `base-files` the directory skeleton, …), then lock order.

use std::collections::{BTreeSet, HashMap};

use crate::core::deb822;
use crate::deb::ControlFiles;
use crate::lock::LockedPackage;

/// debootstrap installs these first, in this order, before the rest of the
/// required set (`x_core_install`), because the others' scripts need them.
const CORE: [&str; 7] = [
    "base-passwd",
    "base-files",
    "dpkg",
    "libc6",
    "perl-base",
    "mawk",
    "debconf",
];

/// One locked package with what its control file says.
#[derive(Debug, Clone)]
pub(crate) struct Pkg {
    /// Package name.
    pub name: String,
    /// Version as locked.
    pub version: String,
    /// Architecture of the .deb (`amd64`, `all`).
    pub arch: String,
    /// `Multi-Arch: same`: dpkg names its files `NAME:ARCH.*` and refers to it
    /// as `NAME:ARCH`.
    pub ma_same: bool,
    /// `Essential: yes` or `Priority: required`.
    pub required: bool,
    /// Package names listed in `Replaces`.
    pub replaces: Vec<String>,
    /// Indices of the packages this one pre-depends on.
    pub pre_depends: Vec<usize>,
    /// Indices of the packages this one depends or pre-depends on.
    pub depends: Vec<usize>,
    /// The control members.
    pub control: ControlFiles,
}

impl Pkg {
    /// The name dpkg uses on its command line and in `info/` file names.
    pub fn dpkg_name(&self) -> String {
        if self.ma_same {
            format!("{}:{}", self.name, self.arch)
        } else {
            self.name.clone()
        }
    }

    /// `name version arch`, for messages.
    pub fn label(&self) -> String {
        format!("{} {} {}", self.name, self.version, self.arch)
    }
}

/// Builds [`Pkg`]s from the lock entries and their control members (same
/// order), resolving the lock's edges to indices.
pub(crate) fn packages(locked: &[LockedPackage], controls: Vec<ControlFiles>) -> Vec<Pkg> {
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, p) in locked.iter().enumerate() {
        by_name.entry(p.name.as_str()).or_default().push(i);
    }
    let edges = |p: &LockedPackage, pre_only: bool| -> Vec<usize> {
        let mut out = BTreeSet::new();
        for e in &p.depends {
            let wanted = match e.kind.as_str() {
                "pre-depends" => true,
                "depends" => !pre_only,
                _ => false,
            };
            if wanted {
                out.extend(by_name.get(e.name.as_str()).into_iter().flatten().copied());
            }
        }
        out.into_iter().collect()
    };
    locked
        .iter()
        .zip(controls)
        .map(|(p, control)| {
            let stanza = deb822::stanzas(control.control())
                .next()
                .and_then(Result::ok);
            let field = |name: &str| stanza.as_ref().and_then(|s| s.get(name)).unwrap_or("");
            let replaces = field("Replaces")
                .split(',')
                .filter_map(|r| r.split_whitespace().next())
                .map(|n| n.split(':').next().unwrap_or(n).to_string())
                .filter(|n| !n.is_empty())
                .collect();
            Pkg {
                name: p.name.clone(),
                version: p.version.clone(),
                arch: p.architecture.clone(),
                ma_same: field("Multi-Arch").eq_ignore_ascii_case("same"),
                required: field("Essential").eq_ignore_ascii_case("yes")
                    || field("Priority").eq_ignore_ascii_case("required"),
                replaces,
                pre_depends: edges(p, true),
                depends: edges(p, false),
                control,
            }
        })
        .collect()
}

/// The base set: required packages and everything they (pre-)depend on.
pub(crate) fn base_set(pkgs: &[Pkg]) -> Vec<bool> {
    let mut base = vec![false; pkgs.len()];
    let mut stack: Vec<usize> = (0..pkgs.len()).filter(|&i| pkgs[i].required).collect();
    while let Some(i) = stack.pop() {
        if !std::mem::replace(&mut base[i], true) {
            stack.extend(pkgs[i].depends.iter().copied().filter(|&d| !base[d]));
        }
    }
    base
}

/// Everything `roots` need configured: themselves and their (pre-)depends,
/// transitively, skipping `done`. Sorted by index.
pub(crate) fn closure(pkgs: &[Pkg], roots: &[usize], done: &[bool]) -> Vec<usize> {
    let mut seen = vec![false; pkgs.len()];
    let mut stack: Vec<usize> = roots.to_vec();
    let mut out = Vec::new();
    while let Some(i) = stack.pop() {
        if done[i] || std::mem::replace(&mut seen[i], true) {
            continue;
        }
        out.push(i);
        stack.extend(pkgs[i].depends.iter().copied());
    }
    out.sort_unstable();
    out
}

/// The order in which to unpack (and prepare) the packages: the base set
/// first, then the rest; within each, pre-dependencies first.
pub(crate) fn install_order(pkgs: &[Pkg], base: &[bool]) -> Vec<usize> {
    let rank = |i: usize| {
        CORE.iter()
            .position(|c| *c == pkgs[i].name)
            .unwrap_or(CORE.len())
    };
    let mut order = Vec::with_capacity(pkgs.len());
    for want_base in [true, false] {
        let members: Vec<usize> = (0..pkgs.len()).filter(|&i| base[i] == want_base).collect();
        let edges: Vec<(usize, usize)> = members
            .iter()
            .flat_map(|&i| pkgs[i].pre_depends.iter().map(move |&d| (d, i)))
            .collect();
        order.extend(topo(&members, &edges, |i| (rank(i), i)));
    }
    order
}

/// Orders `nodes` so that for each edge `(a, b)` (both in `nodes`) `a` comes
/// before `b`; among the nodes that are ready, the smallest `key` first. A
/// cycle is broken at its smallest-key node, so the result always holds
/// every node exactly once and depends only on the input.
pub(crate) fn topo<K: Ord>(
    nodes: &[usize],
    edges: &[(usize, usize)],
    key: impl Fn(usize) -> K,
) -> Vec<usize> {
    let member: HashMap<usize, usize> = nodes.iter().enumerate().map(|(k, &n)| (n, k)).collect();
    let mut indeg = vec![0usize; nodes.len()];
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let unique: BTreeSet<(usize, usize)> = edges.iter().copied().collect();
    for (a, b) in unique {
        if let (Some(&ka), Some(&kb)) = (member.get(&a), member.get(&b))
            && ka != kb
        {
            succ[ka].push(kb);
            indeg[kb] += 1;
        }
    }
    let mut placed = vec![false; nodes.len()];
    let mut out = Vec::with_capacity(nodes.len());
    // Quadratic in the worst case, which is fine for a few hundred packages
    // and keeps the tie-breaking obvious.
    while out.len() < nodes.len() {
        let pick = |ready_only: bool| {
            (0..nodes.len())
                .filter(|&k| !placed[k] && (!ready_only || indeg[k] == 0))
                .min_by_key(|&k| key(nodes[k]))
        };
        let k = pick(true)
            .or_else(|| pick(false))
            .expect("an unplaced node remains");
        placed[k] = true;
        out.push(nodes[k]);
        for &s in &succ[k] {
            indeg[s] = indeg[s].saturating_sub(1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::topo;

    #[test]
    fn topo_respects_edges_then_keys_and_breaks_cycles() {
        // 3 before 1, 1 before 2; 0 is free and has the smallest key.
        assert_eq!(topo(&[0, 1, 2, 3], &[(3, 1), (1, 2)], |i| i), [0, 3, 1, 2]);
        // A cycle 1 → 2 → 1 is broken at the smallest key.
        assert_eq!(topo(&[1, 2], &[(1, 2), (2, 1)], |i| i), [1, 2]);
        // Edges to nodes outside the set are ignored.
        assert_eq!(topo(&[5, 4], &[(9, 4)], |i| i), [4, 5]);
    }
}
