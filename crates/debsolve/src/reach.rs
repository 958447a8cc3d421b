//! Which records a solve can ever look at, found before the [`Universe`] is
//! built, so that the universe holds a few hundred records instead of every
//! stanza of every suite (~70k for trixie).
//!
//! The provider only ever asks about names: the real packages and the
//! providers of a relation's name ([`Universe::instances_named`],
//! [`Universe::providers_of`]), and for a package it installs, the names in
//! its relations. Starting from the roots, the walk therefore collects
//!
//! * every record of every name a positive relation (Pre-Depends, Depends,
//!   Recommends when followed) can reach, and of every provider of such a
//!   name, and follows their relations in turn (any candidate of such a name
//!   may be installed);
//! * every record of every name a Conflicts/Breaks of those names, and of
//!   every provider of it, without following them: a package only named
//!   negatively is never installed (the provider decides it "not installed"),
//!   so these records cannot change the solution; they are kept so that the
//!   solver sees exactly the constraints it would see over all records.
//!
//! Within one name all records are kept, so every instance of the universe
//! built from the result has exactly the candidates it would have in the
//! universe of all records, and instances, candidates and providers keep
//! their relative order (the caller hands the records back in index order):
//! the solve, and so the lock, are the same. The walk reads the index through
//! [`NameIndex`], an in-memory index keyed by name; it does no I/O itself.
//!
//! [`Universe`]: crate::Universe
//! [`Universe::instances_named`]: crate::Universe::instances_named
//! [`Universe::providers_of`]: crate::Universe::providers_of

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use debcore::package::BinaryPackage;
use debcore::relation::parse_field;

/// The archive as the walk sees it: records by name, providers by name.
pub trait NameIndex {
    /// Why a lookup could not be answered (a damaged index snapshot, say).
    type Error;

    /// Appends every record named `name`, across all sources, each with a
    /// key giving its place in the sources' index order.
    fn named(&self, name: &str, out: &mut Vec<(u64, BinaryPackage)>) -> Result<(), Self::Error>;

    /// Appends the name of every record whose `Provides` names `name`
    /// (duplicates allowed).
    fn provider_names(&self, name: &str, out: &mut Vec<String>) -> Result<(), Self::Error>;
}

/// Every record a solve from `roots` (relation names: the recipe's
/// requests, the Essential set, …) can reach, following Recommends when
/// `recommends`, sorted by key (index order). See the module docs.
pub fn reachable<I: NameIndex>(
    index: &I,
    roots: impl IntoIterator<Item = String>,
    recommends: bool,
) -> Result<Vec<BinaryPackage>, I::Error> {
    let mut walk = Walk {
        index,
        loaded: HashMap::default(),
        out: Vec::new(),
    };
    let mut followed: HashSet<String> = HashSet::default();
    let mut queue: Vec<String> = roots.into_iter().collect();
    let (mut positive, mut negative, mut providers) = (Vec::new(), Vec::new(), Vec::new());
    // Each name is followed at most once, so the loop is bounded by the
    // number of distinct names in the index (plus the roots).
    while let Some(name) = queue.pop() {
        if followed.contains(&name) {
            continue;
        }
        for &i in walk.load(&name)?.iter() {
            collect(&walk.out[i].1, recommends, &mut positive, &mut negative);
        }
        providers.clear();
        index.provider_names(&name, &mut providers)?;
        followed.insert(name);
        queue.extend(
            providers
                .drain(..)
                .chain(positive.drain(..))
                .filter(|n| !followed.contains(n)),
        );
        for n in negative.drain(..) {
            walk.load(&n)?;
            providers.clear();
            index.provider_names(&n, &mut providers)?;
            for p in providers.drain(..) {
                walk.load(&p)?;
            }
        }
    }
    let mut out = walk.out;
    out.sort_by_key(|(key, _)| *key);
    Ok(out.into_iter().map(|(_, r)| r).collect())
}

/// The records loaded so far, and where each name's are.
struct Walk<'i, I> {
    index: &'i I,
    loaded: HashMap<String, Vec<usize>>,
    out: Vec<(u64, BinaryPackage)>,
}

impl<I: NameIndex> Walk<'_, I> {
    /// The positions in `out` of `name`'s records, loading them the first time.
    fn load(&mut self, name: &str) -> Result<Vec<usize>, I::Error> {
        if let Some(at) = self.loaded.get(name) {
            return Ok(at.clone());
        }
        let start = self.out.len();
        self.index.named(name, &mut self.out)?;
        let at: Vec<usize> = (start..self.out.len()).collect();
        self.loaded.insert(name.to_string(), at.clone());
        Ok(at)
    }
}

/// The names `r`'s positive relations reach (into `positive`) and those its
/// Conflicts/Breaks name (into `negative`). A field that does not parse is
/// skipped: the solver refuses such a candidate without reading it.
fn collect(
    r: &BinaryPackage,
    recommends: bool,
    positive: &mut Vec<String>,
    negative: &mut Vec<String>,
) {
    let [pre, dep, rec, conflicts, breaks] = r.relation_fields();
    let followed: &[&str] = if recommends {
        &[pre, dep, rec]
    } else {
        &[pre, dep]
    };
    for (fields, into) in [
        (followed, &mut *positive),
        (&[conflicts, breaks][..], &mut *negative),
    ] {
        for text in fields.iter().filter(|t| !t.is_empty()) {
            for d in parse_field(text).unwrap_or_default() {
                into.extend(d.alternatives.into_iter().map(|a| a.name));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EdgeKind, Request, RootRequirement, SourceInfo, Universe, solve};
    use debcore::package::parse_packages;
    use debcore::relation::Dependency;

    /// The whole index in memory, searched the slow way.
    struct All(Vec<BinaryPackage>);

    impl NameIndex for All {
        type Error = ();

        fn named(&self, name: &str, out: &mut Vec<(u64, BinaryPackage)>) -> Result<(), ()> {
            let hits = self.0.iter().enumerate().filter(|(_, r)| *r.name == *name);
            out.extend(hits.map(|(i, r)| (i as u64, r.clone())));
            Ok(())
        }

        fn provider_names(&self, name: &str, out: &mut Vec<String>) -> Result<(), ()> {
            for r in &self.0 {
                let deps = parse_field(&r.provides).unwrap_or_default();
                if deps
                    .iter()
                    .flat_map(|d| &d.alternatives)
                    .any(|a| a.name == name)
                {
                    out.push(r.name.to_string());
                }
            }
            Ok(())
        }
    }

    /// A deterministic pseudo-random archive of two sources: versions,
    /// architectures (Multi-Arch same/foreign, `all`), virtual names with and
    /// without versions, alternatives, constraints, Conflicts, Breaks,
    /// Recommends, Essential and required packages.
    fn archive(seed: u64) -> Vec<BinaryPackage> {
        let mut x = seed;
        let mut rnd = |n: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % n
        };
        let hex = "0".repeat(64);
        let mut out = Vec::new();
        for source in 0..2 {
            let mut text = String::new();
            for i in 0..160u64 {
                if i < 150 && rnd(8) == 0 {
                    continue;
                }
                for v in 1..=1 + rnd(3) {
                    let arch = ["amd64", "amd64", "all", "i386"][rnd(4) as usize];
                    let mut s = format!(
                        "Package: p{i}\nVersion: {}\nArchitecture: {arch}\n",
                        v + source
                    );
                    if rnd(4) == 0 {
                        s += [
                            "Multi-Arch: same\n",
                            "Multi-Arch: foreign\n",
                            "Multi-Arch: allowed\n",
                        ][rnd(3) as usize];
                    }
                    // Towards higher numbers only (p150.. are leaves), so
                    // that a root reaches part of the archive only.
                    let rel = |rnd: &mut dyn FnMut(u64) -> u64| {
                        let name = if rnd(10) == 0 {
                            format!("v{}", rnd(20))
                        } else {
                            format!("p{}", (i + 1 + rnd(12)).min(150 + rnd(10)))
                        };
                        let c = ["", "", "", " (>= 2)", " (<< 3)", " (= 2)"][rnd(6) as usize];
                        let q = if rnd(16) == 0 { ":any" } else { "" };
                        format!("{name}{q}{c}")
                    };
                    let fields = [
                        ("Depends", 3),
                        ("Pre-Depends", 5),
                        ("Recommends", 2),
                        ("Conflicts", 6),
                        ("Breaks", 6),
                    ];
                    for (field, odds) in fields.into_iter().filter(|_| i < 150) {
                        if rnd(odds) != 0 {
                            continue;
                        }
                        let groups: Vec<String> = (0..1 + rnd(2))
                            .map(|_| {
                                let alts = if field.ends_with("ends") {
                                    1 + rnd(2)
                                } else {
                                    1
                                };
                                // Some names only a Recommends reaches.
                                if field == "Recommends" && rnd(2) == 0 {
                                    return format!("r{}", rnd(10));
                                }
                                (0..alts)
                                    .map(|_| rel(&mut rnd))
                                    .collect::<Vec<_>>()
                                    .join(" | ")
                            })
                            .collect();
                        s += &format!("{field}: {}\n", groups.join(", "));
                    }
                    // Provided high up only, so that a virtual name does not
                    // pull in the whole archive.
                    if i >= 100 && rnd(4) == 0 {
                        let v = if rnd(2) == 0 { " (= 2)" } else { "" };
                        s += &format!("Provides: v{}{v}\n", rnd(20));
                    }
                    if i >= 150 && rnd(4) == 0 {
                        s += "Essential: yes\n";
                    } else if i >= 150 && rnd(4) == 0 {
                        s += "Priority: required\n";
                    }
                    s += &format!("Filename: pool/p{i}.deb\nSize: 1\nSHA256: {hex}\n\n");
                    text += &s;
                }
            }
            // Reached through Recommends only.
            text += &format!(
                "Package: q\nVersion: 1\nArchitecture: all\nRecommends: r1, r2 | p155, v3\nFilename: pool/q.deb\nSize: 1\nSHA256: {hex}\n\n"
            );
            for k in 0..10 {
                text += &format!(
                    "Package: r{k}\nVersion: 1\nArchitecture: amd64\nFilename: pool/r{k}.deb\nSize: 1\nSHA256: {hex}\n\n"
                );
            }
            out.extend(parse_packages(&text, "P", source as usize).unwrap());
        }
        out
    }

    fn universe(records: Vec<BinaryPackage>) -> Universe {
        let sources = ["a", "b"].map(|n| SourceInfo {
            name: n.into(),
            priority: if n == "a" { 500 } else { 100 },
        });
        Universe::new(records, sources.to_vec(), "amd64")
    }

    /// Sorted `name:arch=version` of a solve, or its error text.
    fn outcome(u: &Universe, roots: &[String], recommends: bool) -> Result<Vec<String>, String> {
        let mut reqs: Vec<RootRequirement> = roots
            .iter()
            .map(|r| RootRequirement {
                dependency: Dependency::parse(r).unwrap(),
                kind: EdgeKind::Requested,
            })
            .collect();
        reqs.extend(crate::essential_requirements(u));
        let request = Request {
            roots: reqs,
            recommends,
            prefer: Default::default(),
        };
        let sol = solve(u, request).map_err(|e| e.to_string())?;
        let mut v: Vec<String> = sol
            .chosen
            .iter()
            .map(|(&id, &k)| {
                let i = u.instance(id);
                let edges: Vec<String> = sol
                    .edges(u, id, recommends)
                    .iter()
                    .map(|e| u.instance(e.to).name.to_string())
                    .collect();
                format!(
                    "{}:{}={} -> {edges:?}",
                    i.name,
                    i.arch,
                    u.candidate(id, k).version
                )
            })
            .collect();
        v.sort();
        Ok(v)
    }

    #[test]
    fn the_reachable_records_solve_like_all_of_them() {
        let (mut smaller, mut solved) = (0, 0);
        for seed in 0..8u64 {
            let records = archive(seed);
            let full = universe(records.clone());
            let index = All(records.clone());
            for (k, recommends) in [(0u64, false), (1, true), (2, false)] {
                let roots: Vec<String> = (0..3)
                    .map(|j| format!("p{}", 110 + (seed * 31 + k * 7 + j * 13) % 40))
                    .chain((k == 2).then(|| format!("v{}", seed % 20)))
                    .chain((k == 1).then(|| "q".to_string()))
                    .collect();
                let mut seeds: Vec<String> = roots.clone();
                seeds.extend(
                    records
                        .iter()
                        .filter(|r| r.essential || r.required)
                        .map(|r| r.name.to_string()),
                );
                let subset = reachable(&index, seeds, recommends).unwrap();
                smaller += usize::from(subset.len() < records.len());
                let part = universe(subset);
                let want = outcome(&full, &roots, recommends);
                solved += usize::from(want.is_ok());
                assert_eq!(
                    outcome(&full, &roots, recommends),
                    outcome(&part, &roots, recommends),
                    "seed {seed}, roots {roots:?}, recommends {recommends}"
                );
            }
        }
        assert!(
            smaller >= 12,
            "the walk left something out {smaller} times of 24"
        );
        assert!(solved >= 8, "{solved} of 24 requests had a solution");
    }

    #[test]
    fn records_come_back_in_index_order_once_each() {
        let records = archive(3);
        let index = All(records.clone());
        let all: Vec<String> = records.iter().map(|r| r.name.to_string()).collect();
        let got = reachable(&index, all, true).unwrap();
        assert_eq!(got.len(), records.len());
        for (a, b) in got.iter().zip(&records) {
            assert_eq!(
                (&a.name, &a.version, a.source),
                (&b.name, &b.version, b.source)
            );
        }
    }
}
