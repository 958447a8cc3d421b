//! `imgbuild tree RECIPE`: the locked dependency tree, like `cargo tree`.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use crate::lock::{LockedPackage, Lockfile};

/// Renders the tree below the recipe's requests (and the essential set when
/// `essential`). A package already shown is printed once more with `(*)` and
/// not expanded again. `depth` limits the levels shown.
pub fn render(lock: &Lockfile, essential: bool, depth: Option<usize>) -> String {
    let by_name: HashMap<&str, &LockedPackage> =
        lock.packages.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut out = String::new();
    let mut seen = HashSet::new();
    let _ = writeln!(out, "{}", lock.recipe.name);
    let roots: Vec<&LockedPackage> = lock
        .packages
        .iter()
        .filter(|p| match p.reason.as_deref() {
            Some("recipe") => true,
            Some("essential") => essential,
            _ => false,
        })
        .collect();
    for (i, p) in roots.iter().enumerate() {
        walk(
            &by_name,
            p,
            "",
            i + 1 == roots.len(),
            1,
            depth,
            &mut seen,
            &mut out,
        );
    }
    if !essential {
        let n = lock
            .packages
            .iter()
            .filter(|p| p.reason.as_deref() == Some("essential"))
            .count();
        if n > 0 {
            let _ = writeln!(
                out,
                "({n} packages of the Essential/required set not shown: use --essential)"
            );
        }
    }
    // Components: each with its build closure, as a tree of its own.
    for c in &lock.components {
        let pinned = match (&c.git, &c.commit, &c.url) {
            (Some(g), Some(commit), _) => format!("{g} at {}", &commit[..commit.len().min(12)]),
            (_, _, Some(u)) => u.clone(),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "\ncomponent {} {} ({pinned}), built with {} packages:",
            c.name,
            c.version,
            c.packages.len()
        );
        let closure = render(&c.build_lock(lock), essential, depth);
        // Its first line is the recipe name, already said above.
        out.extend(closure.lines().skip(1).map(|l| format!("{l}\n")));
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn walk<'a>(
    by_name: &HashMap<&str, &'a LockedPackage>,
    p: &'a LockedPackage,
    prefix: &str,
    last: bool,
    level: usize,
    depth: Option<usize>,
    seen: &mut HashSet<&'a str>,
    out: &mut String,
) {
    let branch = if last { "└── " } else { "├── " };
    let repeat = !seen.insert(p.name.as_str());
    let mark = if repeat && !p.depends.is_empty() {
        " (*)"
    } else {
        ""
    };
    let _ = writeln!(out, "{prefix}{branch}{} {}{mark}", p.name, p.version);
    if repeat || depth.is_some_and(|d| level >= d) {
        return;
    }
    let child_prefix = format!("{prefix}{}", if last { "    " } else { "│   " });
    let children: Vec<&LockedPackage> = p
        .depends
        .iter()
        .filter_map(|e| by_name.get(e.name.as_str()).copied())
        .collect();
    for (i, c) in children.iter().enumerate() {
        walk(
            by_name,
            c,
            &child_prefix,
            i + 1 == children.len(),
            level + 1,
            depth,
            seen,
            out,
        );
    }
}
