//! One way of turning PubGrub's derivation tree into sentences, shared by
//! both solvers (Debian packages here, Python distributions in
//! imgbuild's `pypi` module): each says how to name a package and a version set and
//! how to state an external fact ([`Describe`]); [`report`] does the rest
//! ("Because … and …, ….", "And because …").

use pubgrub::{
    DefaultStringReporter, DerivationTree, Derived, External, Map, Package, ReportFormatter,
    Reporter, Term, VersionSet,
};

/// What a solver's explanation needs to say about its own packages.
pub trait Describe<P: Package, VS: VersionSet> {
    /// Whether `p` is the root (the recipe).
    fn is_root(&self, p: &P) -> bool;
    /// `p` restricted to `vs`, in the solver's terms (`foo 1.0 (bookworm)`).
    fn describe(&self, p: &P, vs: &VS) -> String;
    /// PubGrub found no version of `p` in `vs`.
    fn no_versions(&self, p: &P, vs: &VS) -> String;
    /// `p` (in `vs_p`) depends on `q` (in `vs_q`).
    fn dependency(&self, p: &P, vs_p: &VS, q: &P, vs_q: &VS) -> String;
}

/// Explains why no solution exists, with `d` naming things.
pub fn report<P, VS, D>(d: &D, mut tree: DerivationTree<P, VS, String>) -> String
where
    P: Package + Ord,
    VS: VersionSet,
    D: Describe<P, VS>,
{
    // Candidate ranges are integer runs, so PubGrub notes "no version" for the
    // gaps between them; folding those leaves keeps only the facts that matter.
    tree.collapse_no_versions();
    DefaultStringReporter::report_with_formatter(&tree, &Sentences(d))
}

struct Sentences<'a, D>(&'a D);

impl<D> Sentences<'_, D> {
    fn because(&self, lead: &str, facts: &[String], then: String) -> String {
        format!("{lead} {}, {then}.", facts.join(" and "))
    }
}

impl<P, VS, D> ReportFormatter<P, VS, String> for Sentences<'_, D>
where
    P: Package + Ord,
    VS: VersionSet,
    D: Describe<P, VS>,
{
    type Output = String;

    fn format_external(&self, e: &External<P, VS, String>) -> String {
        match e {
            External::NotRoot(..) => "the recipe is what is being solved".into(),
            External::NoVersions(p, vs) => self.0.no_versions(p, vs),
            External::FromDependencyOf(p, vs_p, q, vs_q) => self.0.dependency(p, vs_p, q, vs_q),
            External::Custom(_, _, m) => m.clone(),
        }
    }

    fn format_terms(&self, terms: &Map<P, Term<VS>>) -> String {
        let d = self.0;
        let mut v: Vec<(&P, &Term<VS>)> = terms.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        match v.as_slice() {
            [] => "the recipe cannot be satisfied".into(),
            [(p, Term::Positive(_))] if d.is_root(p) => "the recipe cannot be satisfied".into(),
            [(p, Term::Positive(r))] => format!("{} cannot be installed", d.describe(p, r)),
            [(root, Term::Positive(_)), (p, Term::Positive(r))] if d.is_root(root) => {
                format!("the recipe rules out {}", d.describe(p, r))
            }
            [(p, Term::Negative(r))] => format!("{} is required", d.describe(p, r)),
            [(p1, Term::Positive(r1)), (p2, Term::Negative(r2))]
            | [(p2, Term::Negative(r2)), (p1, Term::Positive(r1))] => {
                let q = d.describe(p2, r2);
                if d.is_root(p1) {
                    format!("the recipe requires {q}")
                } else {
                    format!("{} requires {q}", d.describe(p1, r1))
                }
            }
            slice => {
                let parts: Vec<String> = slice
                    .iter()
                    .map(|(p, t)| match t {
                        Term::Positive(r) => d.describe(p, r),
                        Term::Negative(r) => format!("not {}", d.describe(p, r)),
                    })
                    .collect();
                format!("{} cannot be installed together", parts.join(", "))
            }
        }
    }

    fn explain_both_external(
        &self,
        e1: &External<P, VS, String>,
        e2: &External<P, VS, String>,
        t: &Map<P, Term<VS>>,
    ) -> String {
        let facts = [self.format_external(e1), self.format_external(e2)];
        self.because("Because", &facts, self.format_terms(t))
    }

    fn explain_both_ref(
        &self,
        id1: usize,
        d1: &Derived<P, VS, String>,
        id2: usize,
        d2: &Derived<P, VS, String>,
        t: &Map<P, Term<VS>>,
    ) -> String {
        let facts = [
            format!("{} ({id1})", self.format_terms(&d1.terms)),
            format!("{} ({id2})", self.format_terms(&d2.terms)),
        ];
        self.because("Because", &facts, self.format_terms(t))
    }

    fn explain_ref_and_external(
        &self,
        id: usize,
        d: &Derived<P, VS, String>,
        e: &External<P, VS, String>,
        t: &Map<P, Term<VS>>,
    ) -> String {
        let facts = [
            format!("{} ({id})", self.format_terms(&d.terms)),
            self.format_external(e),
        ];
        self.because("Because", &facts, self.format_terms(t))
    }

    fn and_explain_external(&self, e: &External<P, VS, String>, t: &Map<P, Term<VS>>) -> String {
        self.because(
            "And because",
            &[self.format_external(e)],
            self.format_terms(t),
        )
    }

    fn and_explain_ref(
        &self,
        id: usize,
        d: &Derived<P, VS, String>,
        t: &Map<P, Term<VS>>,
    ) -> String {
        let facts = [format!("{} ({id})", self.format_terms(&d.terms))];
        self.because("And because", &facts, self.format_terms(t))
    }

    fn and_explain_prior_and_external(
        &self,
        e1: &External<P, VS, String>,
        e2: &External<P, VS, String>,
        t: &Map<P, Term<VS>>,
    ) -> String {
        let facts = [self.format_external(e1), self.format_external(e2)];
        self.because("And because", &facts, self.format_terms(t))
    }
}
