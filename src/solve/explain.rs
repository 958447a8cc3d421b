//! Renders PubGrub's derivation tree as a chain a person can act on, in Debian
//! terms: versions with the source they come from, relations as written,
//! "not installed" instead of internal bottoms, no proxy names.

use pubgrub::{
    DefaultStringReporter, DerivationTree, Derived, External, Map, ReportFormatter, Reporter, Term,
};

use crate::solve::provider::{DebProvider, EdgeKind, Pkg, VS};

/// Explains why no solution exists.
pub fn explain(p: &DebProvider<'_>, mut tree: DerivationTree<Pkg, VS, String>) -> String {
    // Candidate ranges are integer runs, so PubGrub notes "no version" for the
    // gaps between them; folding those leaves keeps only the facts that matter.
    tree.collapse_no_versions();
    DefaultStringReporter::report_with_formatter(&tree, &DebFormatter { p })
}

struct DebFormatter<'a, 'u> {
    p: &'a DebProvider<'u>,
}

impl DebFormatter<'_, '_> {
    fn name(&self, id: u32) -> String {
        let u = self.p.universe();
        let inst = u.instance(id);
        if *inst.arch == *u.native() {
            inst.name.to_string()
        } else {
            format!("{}:{}", inst.name, inst.arch)
        }
    }

    /// `foo 1.0 (bookworm)`, `foo 1.0 (bookworm) or 2.0 (bullseye)`, `foo`, `foo (not installed)`.
    fn describe(&self, pkg: Pkg, vs: &VS) -> String {
        let u = self.p.universe();
        match pkg {
            Pkg::Root => "the recipe".into(),
            Pkg::Alt(a) => {
                let alt = self.p.alt(a);
                let n = alt.choices.len() as u32;
                let picked: Vec<String> = (1..=n)
                    .filter(|i| vs.contains(i))
                    .map(|i| {
                        self.describe(
                            Pkg::Real(alt.choices[i as usize - 1].instance),
                            &alt.choices[i as usize - 1].range,
                        )
                    })
                    .collect();
                if picked.len() as u32 == n || picked.is_empty() {
                    format!("`{}`", alt.text)
                } else {
                    format!("`{}` through {}", alt.text, picked.join(" or "))
                }
            }
            Pkg::Real(id) => {
                let name = self.name(id);
                let n = u.candidate_count(id);
                let ks: Vec<u32> = (1..=n).filter(|k| vs.contains(k)).collect();
                let absent = vs.contains(&0);
                let versions = |ks: &[u32]| {
                    ks.iter()
                        .map(|&k| {
                            let r = u.candidate(id, k);
                            format!("{} ({})", r.version, u.source_name(r))
                        })
                        .collect::<Vec<_>>()
                        .join(" or ")
                };
                let base = if ks.is_empty() {
                    if absent {
                        return format!("{name} (not installed)");
                    }
                    format!("{name} (no available version)")
                } else if ks.len() as u32 == n {
                    if n == 1 {
                        format!("{name} {}", versions(&ks))
                    } else {
                        name.clone()
                    }
                } else if ks.len() <= 3 {
                    format!("{name} {}", versions(&ks))
                } else {
                    let (lo, hi) = (u.candidate(id, ks[0]), u.candidate(id, *ks.last().unwrap()));
                    format!("{name} (>= {}, <= {})", lo.version, hi.version)
                };
                if absent {
                    format!("{base} or no {name} at all")
                } else {
                    base
                }
            }
        }
    }

    fn available(&self, id: u32) -> String {
        let u = self.p.universe();
        let all: Vec<String> = (1..=u.candidate_count(id))
            .map(|k| {
                let r = u.candidate(id, k);
                format!("{} ({})", r.version, u.source_name(r))
            })
            .collect();
        all.join(", ")
    }

    fn dependency(&self, p: Pkg, vs_p: &VS, q: Pkg, vs_q: &VS) -> String {
        let lhs = self.describe(p, vs_p);
        let ver = match p {
            Pkg::Root => Some(1),
            Pkg::Real(id) => {
                let mut ks =
                    (1..=self.p.universe().candidate_count(id)).filter(|k| vs_p.contains(k));
                ks.next().filter(|_| ks.next().is_none())
            }
            Pkg::Alt(_) => None,
        };
        let edge = ver.and_then(|v| self.p.edge(p, v, q));
        let unsatisfiable = match q {
            Pkg::Alt(a) if vs_q.is_empty() => {
                let alt = self.p.alt(a);
                format!(
                    ", which no available package satisfies{}",
                    self.hint(&alt.text)
                )
            }
            _ => String::new(),
        };
        if let Pkg::Alt(a) = p {
            let alt = self.p.alt(a);
            return format!(
                "satisfying `{}` that way needs {}",
                alt.text,
                self.describe(q, vs_q)
            );
        }
        let Some((kind, text)) = edge else {
            return if vs_q.contains(&0) {
                format!(
                    "{lhs} conflicts with {}",
                    self.describe(q, &vs_q.complement())
                )
            } else {
                format!("{lhs} depends on {}{unsatisfiable}", self.describe(q, vs_q))
            };
        };
        let via = match q {
            Pkg::Real(id) if self.name(id) != text.split([' ', ':']).next().unwrap_or("") => {
                format!(" (provided by {})", self.describe(q, &vs_q.complement()))
            }
            _ => String::new(),
        };
        match kind {
            EdgeKind::Requested => format!("the recipe requires {text}{unsatisfiable}"),
            EdgeKind::Essential => format!(
                "the recipe includes the Essential/required set, which has {text}{unsatisfiable}"
            ),
            EdgeKind::Depends => format!("{lhs} depends on {text}{unsatisfiable}"),
            EdgeKind::PreDepends => format!("{lhs} pre-depends on {text}{unsatisfiable}"),
            EdgeKind::Recommends => format!("{lhs} recommends {text}"),
            EdgeKind::Conflicts => format!("{lhs} conflicts with {text}{via}"),
            EdgeKind::Breaks => format!("{lhs} breaks {text}{via}"),
            EdgeKind::MultiArch => {
                format!(
                    "{lhs} is not co-installable with {}",
                    self.describe(q, &vs_q.complement())
                )
            }
        }
    }

    /// A hint for a relation nothing satisfies: which versions exist.
    fn hint(&self, text: &str) -> String {
        let u = self.p.universe();
        let name = text.split([' ', ':', '(']).next().unwrap_or("");
        if text.contains('|') {
            return String::new();
        }
        match u.instances_named(name) {
            [] if u.providers_of(name).is_empty() => {
                format!(" (no source has a package named {name})")
            }
            [] => String::new(),
            ids => format!(" (available: {})", self.available(ids[0])),
        }
    }
}

impl ReportFormatter<Pkg, VS, String> for DebFormatter<'_, '_> {
    type Output = String;

    fn format_external(&self, e: &External<Pkg, VS, String>) -> String {
        match e {
            External::NotRoot(..) => "the recipe is what is being solved".into(),
            External::NoVersions(Pkg::Real(id), vs) => format!(
                "no source has {} (available: {})",
                self.describe(Pkg::Real(*id), vs),
                self.available(*id)
            ),
            External::NoVersions(p, vs) => format!("nothing satisfies {}", self.describe(*p, vs)),
            External::FromDependencyOf(p, vs_p, q, vs_q) => self.dependency(*p, vs_p, *q, vs_q),
            External::Custom(_, _, m) => m.clone(),
        }
    }

    fn format_terms(&self, terms: &Map<Pkg, Term<VS>>) -> String {
        let mut v: Vec<(&Pkg, &Term<VS>)> = terms.iter().collect();
        v.sort_by_key(|(p, _)| **p);
        match v.as_slice() {
            [] | [(Pkg::Root, Term::Positive(_))] => "the recipe cannot be satisfied".into(),
            [(p, Term::Positive(r))] => format!("{} cannot be installed", self.describe(**p, r)),
            [(Pkg::Root, Term::Positive(_)), (p, Term::Positive(r))] => {
                format!("the recipe rules out {}", self.describe(**p, r))
            }
            [(p, Term::Negative(r))] => format!("{} is required", self.describe(**p, r)),
            [(p1, Term::Positive(r1)), (p2, Term::Negative(r2))]
            | [(p2, Term::Negative(r2)), (p1, Term::Positive(r1))] => {
                let q = self.describe(**p2, r2);
                match p1 {
                    Pkg::Root => format!("the recipe requires {q}"),
                    _ => format!("{} requires {q}", self.describe(**p1, r1)),
                }
            }
            slice => {
                let parts: Vec<String> = slice
                    .iter()
                    .map(|(p, t)| match t {
                        Term::Positive(r) => self.describe(**p, r),
                        Term::Negative(r) => format!("not {}", self.describe(**p, r)),
                    })
                    .collect();
                format!("{} cannot be installed together", parts.join(", "))
            }
        }
    }

    fn explain_both_external(
        &self,
        e1: &External<Pkg, VS, String>,
        e2: &External<Pkg, VS, String>,
        t: &Map<Pkg, Term<VS>>,
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
        d1: &Derived<Pkg, VS, String>,
        id2: usize,
        d2: &Derived<Pkg, VS, String>,
        t: &Map<Pkg, Term<VS>>,
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
        d: &Derived<Pkg, VS, String>,
        e: &External<Pkg, VS, String>,
        t: &Map<Pkg, Term<VS>>,
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
        e: &External<Pkg, VS, String>,
        t: &Map<Pkg, Term<VS>>,
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
        d: &Derived<Pkg, VS, String>,
        t: &Map<Pkg, Term<VS>>,
    ) -> String {
        format!(
            "And because {} ({id}), {}.",
            self.format_terms(&d.terms),
            self.format_terms(t)
        )
    }

    fn and_explain_prior_and_external(
        &self,
        e1: &External<Pkg, VS, String>,
        e2: &External<Pkg, VS, String>,
        t: &Map<Pkg, Term<VS>>,
    ) -> String {
        format!(
            "And because {} and {}, {}.",
            self.format_external(e1),
            self.format_external(e2),
            self.format_terms(t)
        )
    }
}
