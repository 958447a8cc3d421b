//! PubGrub's derivation tree in Python terms: versions instead of candidate
//! indices, requirements as written, and why versions were left out
//! (no wheel for the target, yanked, Requires-Python, constraints).

use pubgrub::{
    DefaultStringReporter, DerivationTree, Derived, External, Map, ReportFormatter, Reporter, Term,
};

use super::provider::{PyPkg, PyProvider, VS};

/// Explains why no solution exists.
pub fn explain(p: &PyProvider<'_>, mut tree: DerivationTree<PyPkg, VS, String>) -> String {
    tree.collapse_no_versions();
    DefaultStringReporter::report_with_formatter(&tree, &PyFormatter { p })
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

impl ReportFormatter<PyPkg, VS, String> for PyFormatter<'_, '_> {
    type Output = String;

    fn format_external(&self, e: &External<PyPkg, VS, String>) -> String {
        match e {
            External::NotRoot(..) => "the recipe is what is being solved".into(),
            External::NoVersions(p @ (PyPkg::Dist(n) | PyPkg::Extra(n, _)), vs) => format!(
                "no usable version of {}{}",
                self.describe(p, vs),
                self.skipped(n)
            ),
            External::NoVersions(p, vs) => format!("nothing satisfies {}", self.describe(p, vs)),
            External::FromDependencyOf(p, vs_p, q, vs_q) => self.dependency(p, vs_p, q, vs_q),
            External::Custom(_, _, m) => m.clone(),
        }
    }

    fn format_terms(&self, terms: &Map<PyPkg, Term<VS>>) -> String {
        let mut v: Vec<(&PyPkg, &Term<VS>)> = terms.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        match v.as_slice() {
            [] | [(PyPkg::Root, Term::Positive(_))] => "the recipe cannot be satisfied".into(),
            [(p, Term::Positive(r))] => format!("{} cannot be installed", self.describe(p, r)),
            [(PyPkg::Root, Term::Positive(_)), (p, Term::Positive(r))] => {
                format!("the recipe rules out {}", self.describe(p, r))
            }
            [(p, Term::Negative(r))] => format!("{} is required", self.describe(p, r)),
            [(p1, Term::Positive(r1)), (p2, Term::Negative(r2))]
            | [(p2, Term::Negative(r2)), (p1, Term::Positive(r1))] => {
                let q = self.describe(p2, r2);
                match p1 {
                    PyPkg::Root => format!("the recipe requires {q}"),
                    _ => format!("{} requires {q}", self.describe(p1, r1)),
                }
            }
            slice => {
                let parts: Vec<String> = slice
                    .iter()
                    .map(|(p, t)| match t {
                        Term::Positive(r) => self.describe(p, r),
                        Term::Negative(r) => format!("not {}", self.describe(p, r)),
                    })
                    .collect();
                format!("{} cannot be installed together", parts.join(", "))
            }
        }
    }

    fn explain_both_external(
        &self,
        e1: &External<PyPkg, VS, String>,
        e2: &External<PyPkg, VS, String>,
        t: &Map<PyPkg, Term<VS>>,
    ) -> String {
        format!(
            "Because {} and {}, {}.",
            self.format_external(e1),
            self.format_external(e2),
            self.format_terms(t)
        )
    }

    fn explain_both_ref(
        &self,
        id1: usize,
        d1: &Derived<PyPkg, VS, String>,
        id2: usize,
        d2: &Derived<PyPkg, VS, String>,
        t: &Map<PyPkg, Term<VS>>,
    ) -> String {
        format!(
            "Because {} ({id1}) and {} ({id2}), {}.",
            self.format_terms(&d1.terms),
            self.format_terms(&d2.terms),
            self.format_terms(t)
        )
    }

    fn explain_ref_and_external(
        &self,
        id: usize,
        d: &Derived<PyPkg, VS, String>,
        e: &External<PyPkg, VS, String>,
        t: &Map<PyPkg, Term<VS>>,
    ) -> String {
        format!(
            "Because {} ({id}) and {}, {}.",
            self.format_terms(&d.terms),
            self.format_external(e),
            self.format_terms(t)
        )
    }

    fn and_explain_external(
        &self,
        e: &External<PyPkg, VS, String>,
        t: &Map<PyPkg, Term<VS>>,
    ) -> String {
        format!(
            "And because {}, {}.",
            self.format_external(e),
            self.format_terms(t)
        )
    }

    fn and_explain_ref(
        &self,
        id: usize,
        d: &Derived<PyPkg, VS, String>,
        t: &Map<PyPkg, Term<VS>>,
    ) -> String {
        format!(
            "And because {} ({id}), {}.",
            self.format_terms(&d.terms),
            self.format_terms(t)
        )
    }

    fn and_explain_prior_and_external(
        &self,
        e1: &External<PyPkg, VS, String>,
        e2: &External<PyPkg, VS, String>,
        t: &Map<PyPkg, Term<VS>>,
    ) -> String {
        format!(
            "And because {} and {}, {}.",
            self.format_external(e1),
            self.format_external(e2),
            self.format_terms(t)
        )
    }
}
