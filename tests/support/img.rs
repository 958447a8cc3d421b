//! The setup most end-to-end tests share: an archive `debian` (suite
//! `bookworm`, component `main`, amd64) served on loopback, a workspace
//! whose recipe `img` takes packages from it, solved and fetched with the
//! built binary, and the arguments of building it in-process.
//!
//! ```ignore
//! let (_site, _server, ws) = fetched_img(host_base(), &["app"], "");
//! build::run(&build_args(&ws, EPOCH)).unwrap();
//! ```

use imgbuild::ops::build::BuildArgs;

use super::{DebSpec, RecipeToml, Site, TestServer, Workspace};

/// The archive `debian` of `debs` (suite `bookworm`, `main`, amd64), served.
pub fn debian_site(debs: impl IntoIterator<Item = DebSpec>) -> (Site, TestServer) {
    let site = Site::new();
    let mut archive = site
        .archive("debian")
        .suite("bookworm", &["amd64"], &["main"]);
    for spec in debs {
        archive = archive.add(spec);
    }
    archive.build();
    let server = site.serve();
    (site, server)
}

/// Writes recipe `img` of `ws`: `packages` from `server`'s archive
/// `debian` (trusted, bookworm main), then the recipe text `extra` (steps,
/// tables; may be empty).
pub fn write_img_recipe(ws: &Workspace, server: &TestServer, packages: &[&str], extra: &str) {
    let src = ws.trusted_source("main", &server.url("debian/"), "bookworm", &["main"]);
    let mut text = RecipeToml::new("amd64")
        .packages(packages)
        .source(src)
        .to_toml();
    text.push_str(extra);
    ws.write_recipe("img", &text);
}

/// [`debian_site`] of `debs` and a workspace whose recipe `img` is written
/// by [`write_img_recipe`], then solved and fetched.
pub fn fetched_img(
    debs: impl IntoIterator<Item = DebSpec>,
    packages: &[&str],
    extra: &str,
) -> (Site, TestServer, Workspace) {
    let (site, server) = debian_site(debs);
    let ws = Workspace::new();
    write_img_recipe(&ws, &server, packages, extra);
    ws.run(&["solve", "img"]).assert_success();
    ws.run(&["fetch", "img"]).assert_success();
    (site, server, ws)
}

/// [`fetched_img`] over the runnable host base ([`super::hostbase::host_base`])
/// plus the packages `extra`: for tests that run maintainer scripts and steps.
pub fn fetched_on_host_base(
    packages: &[&str],
    extra: &[DebSpec],
    recipe_extra: &str,
) -> (Site, TestServer, Workspace) {
    let debs = super::hostbase::host_base()
        .into_iter()
        .chain(extra.iter().cloned());
    fetched_img(debs, packages, recipe_extra)
}

/// `imgbuild build img` of `ws` in-process: SOURCE_DATE_EPOCH `epoch`,
/// quiet, the workspace's own rootfs cache; maintainer scripts on (set
/// `no_scripts` with `..build_args(..)` for fixtures without a shell).
pub fn build_args(ws: &Workspace, epoch: i64) -> BuildArgs {
    BuildArgs {
        recipe: "img".into(),
        workspace: ws.path().to_path_buf(),
        source_date_epoch: Some(epoch),
        quiet: true,
        cache_dir: Some(ws.cache_dir().join("rootfs")),
        ..BuildArgs::default()
    }
}
