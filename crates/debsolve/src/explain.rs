//! Renders PubGrub's derivation tree as a chain a person can act on, in Debian
//! terms: versions with the source they come from, relations as written,
//! "not installed" instead of internal bottoms, no proxy names.

use pubgrub::DerivationTree;

use crate::provider::{DebProvider, EdgeKind, Pkg, VS};
use crate::sentences::{Describe, report};

/// Explains why no solution exists.
pub fn explain(p: &DebProvider<'_>, tree: DerivationTree<Pkg, VS, String>) -> String {
    report(&DebFormatter { p }, tree)
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

impl Describe<Pkg, VS> for DebFormatter<'_, '_> {
    fn is_root(&self, p: &Pkg) -> bool {
        matches!(p, Pkg::Root)
    }

    fn describe(&self, p: &Pkg, vs: &VS) -> String {
        self.describe(*p, vs)
    }

    fn no_versions(&self, p: &Pkg, vs: &VS) -> String {
        match p {
            Pkg::Real(id) => format!(
                "no source has {} (available: {})",
                self.describe(*p, vs),
                self.available(*id)
            ),
            _ => format!("nothing satisfies {}", self.describe(*p, vs)),
        }
    }

    fn dependency(&self, p: &Pkg, vs_p: &VS, q: &Pkg, vs_q: &VS) -> String {
        self.dependency(*p, vs_p, *q, vs_q)
    }
}
