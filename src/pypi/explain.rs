//! PubGrub's derivation tree in Python terms: versions instead of candidate
//! indices, requirements as written, and why versions were left out
//! (no wheel for the target, yanked, Requires-Python, constraints).

use pubgrub::DerivationTree;

use super::provider::{PyPkg, PyProvider, VS};
use crate::solve::sentences::{Describe, report};

/// Explains why no solution exists.
pub fn explain(p: &PyProvider<'_>, tree: DerivationTree<PyPkg, VS, String>) -> String {
    report(&PyFormatter { p }, tree)
}

struct PyFormatter<'a, 'u> {
    p: &'a PyProvider<'u>,
}

impl PyFormatter<'_, '_> {
    fn versions(&self, name: &str, vs: &VS) -> (Vec<String>, usize) {
        let Some(Some(project)) = self.p.u.projects.get(name) else {
            return (Vec::new(), 0);
        };
        let all = project.candidates.len();
        let picked = (1..=all as u32)
            .filter(|k| vs.contains(k))
            .map(|k| project.candidates[k as usize - 1].version.to_string())
            .collect();
        (picked, all)
    }

    fn describe(&self, pkg: &PyPkg, vs: &VS) -> String {
        let (name, label) = match pkg {
            PyPkg::Root => return "the recipe".into(),
            PyPkg::Dist(n) => (n, n.to_string()),
            PyPkg::Extra(n, e) => (n, format!("{n}[{e}]")),
        };
        let (picked, all) = self.versions(name, vs);
        match picked.as_slice() {
            [] => format!("{label} (no usable version)"),
            _ if picked.len() == all && all > 1 => label,
            [one] => format!("{label} {one}"),
            [a, b] | [a, _, b] => format!("{label} {a} or {b}"),
            [first, .., last] => format!("{label} ({first} to {last})"),
        }
    }

    /// Why versions of `name` are not there: `(1.1.1: only an sdist …)`.
    fn skipped(&self, name: &str) -> String {
        match self.p.u.projects.get(name) {
            Some(None) => format!(" ({name} is not on the index)"),
            Some(Some(project)) if !project.skipped.is_empty() => {
                let mut reasons: Vec<String> = project
                    .skipped
                    .iter()
                    .rev()
                    .take(4)
                    .map(|(v, why)| format!("{v}: {why}"))
                    .collect();
                if project.skipped.len() > 4 {
                    reasons.push("…".into());
                }
                let usable: Vec<String> = project
                    .candidates
                    .iter()
                    .rev()
                    .take(5)
                    .map(|c| c.version.to_string())
                    .collect();
                let usable = if usable.is_empty() {
                    "none".to_string()
                } else {
                    usable.join(", ")
                };
                format!(" (usable: {usable}; left out: {})", reasons.join("; "))
            }
            _ => String::new(),
        }
    }

    /// The one version in `vs`, if it holds exactly one.
    fn single(&self, p: &PyPkg, vs: &VS) -> Option<u32> {
        let n = match p {
            PyPkg::Root => 1,
            PyPkg::Dist(n) | PyPkg::Extra(n, _) => match self.p.u.projects.get(&**n) {
                Some(Some(project)) => project.candidates.len() as u32,
                _ => return None,
            },
        };
        let mut ks = (1..=n).filter(|k| vs.contains(k));
        ks.next().filter(|_| ks.next().is_none())
    }

    fn dependency(&self, p: &PyPkg, vs_p: &VS, q: &PyPkg, vs_q: &VS) -> String {
        let text = self.single(p, vs_p).and_then(|v| {
            self.p
                .edges
                .borrow()
                .get(&(p.clone(), v, q.clone()))
                .cloned()
        });
        let target = text.unwrap_or_else(|| self.describe(q, vs_q));
        let unsatisfiable = match q {
            PyPkg::Dist(n) | PyPkg::Extra(n, _) if vs_q.is_empty() => {
                format!(", which no usable version satisfies{}", self.skipped(n))
            }
            _ => String::new(),
        };
        match p {
            PyPkg::Root => format!("the recipe requires {target}{unsatisfiable}"),
            _ => format!(
                "{} requires {target}{unsatisfiable}",
                self.describe(p, vs_p)
            ),
        }
    }
}

impl Describe<PyPkg, VS> for PyFormatter<'_, '_> {
    fn is_root(&self, p: &PyPkg) -> bool {
        matches!(p, PyPkg::Root)
    }

    fn describe(&self, p: &PyPkg, vs: &VS) -> String {
        self.describe(p, vs)
    }

    fn no_versions(&self, p: &PyPkg, vs: &VS) -> String {
        match p {
            PyPkg::Dist(n) | PyPkg::Extra(n, _) => format!(
                "no usable version of {}{}",
                self.describe(p, vs),
                self.skipped(n)
            ),
            PyPkg::Root => format!("nothing satisfies {}", self.describe(p, vs)),
        }
    }

    fn dependency(&self, p: &PyPkg, vs_p: &VS, q: &PyPkg, vs_q: &VS) -> String {
        self.dependency(p, vs_p, q, vs_q)
    }
}
