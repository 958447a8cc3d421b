//! `imgbuild why RECIPE PKG`: the chain of requirements that pulls PKG in.

use std::collections::{HashMap, VecDeque};

use anyhow::{Result, bail};

use crate::lock::{LockedPackage, Lockfile};

/// One step of a chain: `from` needs `to` through `relation`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    /// The depending package (`None` for the recipe itself).
    pub from: Option<String>,
    /// Its version.
    pub from_version: Option<String>,
    /// The relation as written (`libc6 (>= 2.34)`), or the root reason.
    pub relation: String,
    /// `depends`, `pre-depends`, `recommends`, `recipe` or `essential`.
    pub kind: String,
    /// The package that satisfies it.
    pub to: String,
}

fn key(p: &LockedPackage) -> &str {
    &p.name
}

/// The shortest chain from a root (a recipe request or the essential set) to `name`.
///
/// A component (`[[component]]`) is its own root; a package only in a
/// component's build closure is explained within that closure, from the
/// component's `build-depends` (or the Essential set of its build root).
pub fn chain(lock: &Lockfile, name: &str) -> Result<Vec<Step>> {
    let Some(target) = lock.package(name) else {
        for c in &lock.components {
            let root = Step {
                from: None,
                from_version: None,
                relation: format!("{} {}", c.name, c.version),
                kind: "component".into(),
                to: c.name.clone(),
            };
            if c.name == name {
                return Ok(vec![root]);
            }
            if c.packages.iter().any(|p| p.name == name) {
                let mut steps = chain(&c.build_lock(lock), name)?;
                for s in &mut steps {
                    if s.from.is_none() {
                        s.kind = format!("build-{}", s.kind);
                    }
                }
                steps.insert(0, root);
                return Ok(steps);
            }
        }
        bail!("`{name}` is not in the lock for `{}`", lock.recipe.name);
    };
    let by_name: HashMap<&str, &LockedPackage> =
        lock.packages.iter().map(|p| (key(p), p)).collect();
    // Breadth-first from every root at once gives the shortest chain; roots and
    // edges are visited in lock order, so the answer is deterministic.
    let mut parent: HashMap<&str, Option<(&LockedPackage, usize)>> = HashMap::new();
    let mut queue = VecDeque::new();
    for p in lock
        .packages
        .iter()
        .filter(|p| p.reason.as_deref() == Some("recipe"))
    {
        parent.insert(key(p), None);
        queue.push_back(p);
    }
    for p in lock
        .packages
        .iter()
        .filter(|p| p.reason.as_deref() == Some("essential"))
    {
        parent.entry(key(p)).or_insert_with(|| {
            queue.push_back(p);
            None
        });
    }
    while let Some(p) = queue.pop_front() {
        if p.name == target.name {
            break;
        }
        for (i, e) in p.depends.iter().enumerate() {
            if let Some(&next) = by_name
                .get(e.name.as_str())
                .filter(|n| !parent.contains_key(key(n)))
            {
                parent.insert(key(next), Some((p, i)));
                queue.push_back(next);
            }
        }
    }
    if !parent.contains_key(key(target)) {
        bail!("`{name}` is in the lock but nothing requires it (the lock may be hand-edited)");
    }
    let mut steps = Vec::new();
    let mut cur = target;
    while let Some(Some((from, i))) = parent.get(key(cur)) {
        let e = &from.depends[*i];
        steps.push(Step {
            from: Some(from.name.clone()),
            from_version: Some(from.version.clone()),
            relation: e.relation.clone(),
            kind: e.kind.clone(),
            to: cur.name.clone(),
        });
        cur = from;
    }
    let kind = cur.reason.clone().unwrap_or_default();
    steps.push(Step {
        from: None,
        from_version: None,
        relation: cur.name.clone(),
        kind,
        to: cur.name.clone(),
    });
    steps.reverse();
    Ok(steps)
}

/// Renders a chain, one step per line.
pub fn render(lock: &Lockfile, name: &str, steps: &[Step]) -> String {
    let target = lock
        .package(name)
        .or_else(|| {
            lock.components
                .iter()
                .find_map(|c| c.packages.iter().find(|p| p.name == name))
        })
        .map(|p| format!("{} {}", p.name, p.version))
        .or_else(|| {
            lock.components
                .iter()
                .find(|c| c.name == name)
                .map(|c| format!("{} {}", c.name, c.version))
        })
        .unwrap_or_default();
    let mut out = format!("{target} is in `{}` because:\n", lock.recipe.name);
    for s in steps {
        let line = match (&s.from, s.kind.as_str()) {
            (None, "recipe") => format!("the recipe requires {}", s.relation),
            (None, "component") => format!(
                "the recipe builds component {} from source ([[component]])",
                s.relation
            ),
            (None, "build-recipe") => format!("its build-depends require {}", s.relation),
            (None, k) if k.starts_with("build-") => {
                format!(
                    "{} is in the Essential/required set of its build root",
                    s.relation
                )
            }
            (None, _) => format!("{} is in the Essential/required set", s.relation),
            (Some(f), kind) => {
                let verb = match kind {
                    "pre-depends" => "pre-depends on",
                    "recommends" => "recommends",
                    _ => "depends on",
                };
                let via = if s.relation.split([' ', ':']).next() == Some(s.to.as_str()) {
                    String::new()
                } else {
                    format!(" (satisfied by {})", s.to)
                };
                format!(
                    "{f} {} {verb} {}{via}",
                    s.from_version.as_deref().unwrap_or(""),
                    s.relation
                )
            }
        };
        out.push_str("  ");
        out.push_str(&line);
        out.push('\n');
    }
    let rev = lock.reverse_edges();
    if let Some(users) = rev.get(name) {
        let mut names: Vec<&str> = users.iter().map(|(p, _)| p.name.as_str()).collect();
        names.dedup();
        out.push_str(&format!("needed directly by {} package(s):", names.len()));
        out.push_str(&wrap_names(&names, WHY_SHOWN, WHY_WIDTH));
    }
    out
}

/// At most this many dependents are named by [`render`] (`--json` lists all).
pub const WHY_SHOWN: usize = 40;

/// Line width [`render`] wraps the dependents' names at.
const WHY_WIDTH: usize = 78;

/// The first `shown` of `names`, wrapped at `width` columns on indented lines,
/// then `… and N more` when some were left out; ends with a newline.
fn wrap_names(names: &[&str], shown: usize, width: usize) -> String {
    let mut out = String::new();
    let mut col = width; // forces a line break before the first name
    for (i, n) in names.iter().take(shown).enumerate() {
        let sep = if i + 1 < names.len().min(shown) || names.len() > shown {
            ","
        } else {
            ""
        };
        if col + 1 + n.len() + sep.len() > width {
            out.push_str("\n   ");
            col = 3;
        }
        out.push(' ');
        out.push_str(n);
        out.push_str(sep);
        col += 1 + n.len() + sep.len();
    }
    if names.len() > shown {
        out.push_str(&format!("\n   … and {} more", names.len() - shown));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependents_are_wrapped_and_limited() {
        let names: Vec<String> = (0..5000).map(|i| format!("package-{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let text = wrap_names(&refs, WHY_SHOWN, WHY_WIDTH);
        assert!(
            text.lines().all(|l| l.chars().count() <= WHY_WIDTH),
            "{text}"
        );
        assert!(text.contains("package-39,") && !text.contains("package-40"));
        assert!(text.trim_end().ends_with("… and 4960 more"), "{text}");
        let few = wrap_names(&["a", "b"], WHY_SHOWN, WHY_WIDTH);
        assert_eq!(few, "\n    a, b\n");
    }
}

#[cfg(test)]
mod component_tests {
    use super::*;
    use crate::lock::{LockedComponent, LockedEdge, LockedRecipe};

    fn pkg(name: &str, reason: Option<&str>, deps: &[&str]) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: "1".into(),
            architecture: "amd64".into(),
            source: "main".into(),
            filename: format!("pool/{name}.deb"),
            size: 1,
            sha256: "ab".repeat(32),
            reason: reason.map(String::from),
            depends: deps
                .iter()
                .map(|d| LockedEdge {
                    name: d.to_string(),
                    relation: d.to_string(),
                    kind: "depends".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn explains_build_closures() {
        let lock = Lockfile {
            version: 1,
            recipe: LockedRecipe {
                name: "img".into(),
                hash: "sha256:00".into(),
                architecture: "amd64".into(),
            },
            sources: vec![],
            packages: vec![pkg("libc6", Some("essential"), &[])],
            python: vec![],
            tools: vec![],
            components: vec![LockedComponent {
                name: "bmv2".into(),
                version: "1.15.5".into(),
                git: Some("https://example.org/bmv2".into()),
                rev: Some("1.15.5".into()),
                commit: Some("0".repeat(40)),
                url: None,
                sha256: "cd".repeat(32),
                size: 1,
                packages: vec![pkg("g++", Some("recipe"), &["cpp"]), pkg("cpp", None, &[])],
            }],
        };
        let text = render(&lock, "cpp", &chain(&lock, "cpp").unwrap());
        assert!(
            text.contains("builds component bmv2 1.15.5 from source"),
            "{text}"
        );
        assert!(text.contains("its build-depends require g++"), "{text}");
        assert!(text.contains("g++ 1 depends on cpp"), "{text}");
        let text = render(&lock, "bmv2", &chain(&lock, "bmv2").unwrap());
        assert!(text.starts_with("bmv2 1.15.5 is in `img`"), "{text}");
        assert!(chain(&lock, "nope").is_err());
    }
}
