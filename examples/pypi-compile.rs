//! Resolves a recipe's `[python]` for the image of its lock, without the
//! Debian solve: what `bench/pypi-vs-uv.sh` times against `uv pip compile`.
//!
//! ```text
//! cargo run --release --example pypi-compile -- recipes/sonic-p4.toml locks/sonic-p4.lock
//! ```
//!
//! Prints `name==version` lines (sorted) on stdout and the time on stderr.
//! The index is the configured `pypi` mirror; the cache is `$IMGBUILD_CACHE`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [recipe, lock] = args.as_slice() else {
        anyhow::bail!("usage: pypi-compile RECIPE.toml LOCK");
    };
    let start = Instant::now();
    let recipe = imgbuild::recipe::Recipe::load(Path::new("."), recipe)?;
    let spec = recipe.python.context("the recipe has no [python]")?;
    let lock = imgbuild::lock::Lockfile::read(Path::new(lock))?;
    let url = imgbuild::pypi::config::index_url(&[], &|k| std::env::var(k).ok())?;
    let cache = imgbuild::archive::FetchOptions::default_cache_dir();
    let client = imgbuild::pypi::index::IndexClient::new(url, &cache, false)?;
    let r = imgbuild::pypi::resolve(&spec, &lock, &client, HashMap::new())?;
    for p in &r.python {
        println!("{}=={}", p.name, p.version);
    }
    eprintln!(
        "resolved {} distributions in {:.3}s ({} rounds)",
        r.python.len(),
        start.elapsed().as_secs_f64(),
        r.rounds
    );
    Ok(())
}
