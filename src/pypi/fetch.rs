//! `imgbuild fetch` for the `[[python]]` entries: each file is looked up by
//! name in its project's page on the configured `pypi` index (the lock holds
//! no URL), its sha256 there must match the lock's, and the download goes
//! through the same verified vendor-store session as the `.deb` files.

use std::collections::BTreeMap;

use futures_util::StreamExt;

use super::error::{Result, invalid};
use super::index::{IndexClient, ProjectPage};
use crate::fetch::session::{SessionOptions, fetch_wanted};
use crate::fetch::{FetchSummary, Progress, Store, Wanted};
use crate::lock::{LockedPython, Lockfile};

/// The Python files of `lock` that are not in `store`.
pub fn missing<'l>(store: &Store, lock: &'l Lockfile) -> Vec<&'l LockedPython> {
    lock.python
        .iter()
        .filter(|p| p.debian.is_none() && !store.contains(&p.sha256, p.size))
        .collect()
}

/// Fetches the Python files of `lock` into `store`. `client` is only used
/// (and may only be `None` offline) when something is missing.
pub fn fetch_python(
    store: &Store,
    lock: &Lockfile,
    client: Option<&IndexClient>,
    options: &SessionOptions,
    progress: &Progress,
) -> Result<FetchSummary> {
    let files: Vec<&LockedPython> = lock.python.iter().filter(|p| p.debian.is_none()).collect();
    for p in &files {
        if !crate::fetch::store::valid_sha256(&p.sha256) {
            invalid!("{}: invalid sha256 `{}` in the lock", p.label(), p.sha256);
        }
        if p.filename.contains('/') || p.filename.starts_with('.') {
            invalid!(
                "{}: invalid file name `{}` in the lock",
                p.label(),
                p.filename
            );
        }
    }
    let absent = missing(store, lock);
    let mut wanted: Vec<Wanted> = Vec::new();
    let mut present: Vec<Wanted> = files
        .iter()
        .filter(|p| !absent.iter().any(|a| a.sha256 == p.sha256))
        .map(|p| wanted_of(p, Vec::new()))
        .collect();
    if !absent.is_empty() && !options.offline {
        let Some(client) = client else {
            invalid!("no `pypi` index configured to fetch the Python files");
        };
        let names: Vec<String> = {
            let mut n: Vec<String> = absent.iter().map(|p| p.name.clone()).collect();
            n.dedup();
            n
        };
        let pages: BTreeMap<String, Option<ProjectPage>> = crate::http::block_on(async {
            futures_util::stream::iter(names)
                .map(|n| async move {
                    let page = client.project(&n).await;
                    (n, page)
                })
                .buffer_unordered(8)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .map(|(n, p)| p.map(|p| (n, p)))
                .collect::<Result<_>>()
        })??;
        for p in &absent {
            let file = pages
                .get(&p.name)
                .and_then(|page| page.as_ref())
                .and_then(|page| page.files.iter().find(|f| f.filename == p.filename));
            let Some(file) = file else {
                invalid!(
                    "{}: the index at {} has no file {}; re-solve",
                    p.label(),
                    client.base(),
                    p.filename
                );
            };
            if file.sha256 != p.sha256 {
                invalid!(
                    "{}: the index lists {} with sha256 {}, the lock {}; refusing it",
                    p.label(),
                    p.filename,
                    file.sha256,
                    p.sha256
                );
            }
            wanted.push(wanted_of(p, vec![file.url.clone()]));
        }
    } else {
        wanted.extend(absent.iter().map(|p| wanted_of(p, Vec::new())));
    }
    wanted.append(&mut present);
    Ok(fetch_wanted(
        store,
        &lock.recipe.name,
        wanted,
        options,
        progress,
    )?)
}

fn wanted_of(p: &LockedPython, urls: Vec<url::Url>) -> Wanted {
    Wanted {
        package: p.label(),
        source: super::config::INDEX_NAME.to_string(),
        filename: p.filename.clone(),
        size: p.size,
        sha256: p.sha256.clone(),
        urls,
    }
}
