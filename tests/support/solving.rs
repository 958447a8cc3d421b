//! Helpers of the `imgbuild solve` end-to-end tests: a one-suite archive
//! exercising each relation kind, recipes over it, reading the lock back.

use imgbuild::lock::Lockfile;

use super::*;
use super::{Repo, RepoBuilder, Site, Workspace};

pub fn lock(ws: &Workspace, name: &str) -> Lockfile {
    Lockfile::parse(
        &ws.read(&format!("locks/{name}.lock")),
        std::path::Path::new("x.lock"),
    )
    .unwrap()
}

pub fn version_of<'a>(l: &'a Lockfile, name: &str) -> Option<&'a str> {
    l.package(name).map(|p| p.version.as_str())
}

/// A one-suite archive exercising each relation kind.
pub fn relations_site() -> (Site, Repo) {
    let site = Site::new();
    let repo = site
        .archive("debian")
        .suite("bookworm", &["amd64"], &["main"])
        .add(DebSpec::new("base", "1", "amd64").essential())
        .add(DebSpec::new("req", "2", "all").priority("required"))
        .add(
            DebSpec::new("app", "1.0", "amd64")
                .depends("libfoo (>= 1.2) | libbar, mail-transport-agent")
                .pre_depends("prep"),
        )
        .add(DebSpec::new("prep", "1", "amd64"))
        .add(DebSpec::new("libfoo", "1.0", "amd64"))
        .add(DebSpec::new("libfoo", "1.3", "amd64"))
        .add(DebSpec::new("libbar", "1", "amd64"))
        .add(
            DebSpec::new("exim", "4", "amd64")
                .provides("mail-transport-agent")
                .conflicts("mail-transport-agent"),
        )
        .add(
            DebSpec::new("postfix", "3", "amd64")
                .provides("mail-transport-agent")
                .conflicts("mail-transport-agent"),
        )
        .add(DebSpec::new("tool", "1", "amd64").depends("perl:any"))
        .add(DebSpec::new("perl", "5", "amd64").multi_arch("allowed"))
        .add(DebSpec::new("old", "1", "amd64").breaks("libfoo (<< 1.3)"))
        .build();
    (site, repo)
}

pub fn recipe(ws: &Workspace, name: &str, url: &str, packages: &[&str], essential: bool) {
    let src = ws.trusted_source("bookworm", url, "bookworm", &["main"]);
    ws.write_recipe(
        name,
        &RecipeToml::new("amd64")
            .packages(packages)
            .essential(essential)
            .source(src)
            .to_toml(),
    );
}

pub fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(walk_files(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// (Re)writes archive `debian`, suite `bookworm`, with packages `a` (which
/// depends on `b`) and `b` at each of `versions`: an archive that moves on
/// when called again with more versions.
pub fn a_depends_on_b(site: &Site, versions: &[&str]) -> Repo {
    let mut b = site
        .archive("debian")
        .suite("bookworm", &["amd64"], &["main"]);
    for v in versions {
        b = b
            .add(DebSpec::new("a", v, "amd64").depends("b"))
            .add(DebSpec::new("b", v, "amd64"));
    }
    b.build()
}
