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
//!   negatively is never installed (the provider decides it "not installed").
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
