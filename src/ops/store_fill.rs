//! The pre-pass of `imgbuild fetch` (and so of `build`) over the store
//! registries of `--mirror store=oci://…` / `IMGBUILD_STORE`: before the
//! lock audit, the lock's InRelease and index files the cache lacks; after
//! it, the files the vendor store lacks. What the registries do not have is
//! left to the archive mirrors (see [`crate::fetch::oci_store`]).
//!
//! A registry that cannot be reached is a warning (the mirrors may still
//! serve everything, and will be checked as strictly); one that answers
//! wrongly (bytes, size, redirect, credentials) is an error.

use std::path::Path;

use anyhow::{Context, Result};

use crate::fetch::Store;
use crate::fetch::oci_store::{self, FillReport, fill};
use crate::lock::Lockfile;
use crate::registry::{Client, Reference, RegistryError};

/// The connected store registries of one fetch.
pub struct StoreFill {
    stores: Vec<(Reference, Client)>,
    /// The vendor store files taken so far, all registries together.
    pub report: FillReport,
    /// The InRelease and index files taken for the audit.
    pub audit: FillReport,
}

impl StoreFill {
    /// Connects to every store registry configured in `mirrors` (or the
    /// environment); none when `offline`. An unreachable one is skipped
    /// with a warning.
    pub fn connect(mirrors: &[String], offline: bool, quiet: bool) -> Result<StoreFill> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let refs = if offline {
            Vec::new()
        } else {
            oci_store::store_refs(mirrors, env)?
        };
        let mut stores = Vec::new();
        for r in refs {
            let transport = oci_store::fill_transport(&r, env);
            let creds = crate::registry::auth::lookup(&r.registry)?;
            let client = Client::new(&r.registry, &transport, creds)?;
            let ping = crate::http::block_on(client.ping(&r.repository, false))?;
            match ping {
                Ok(()) => stores.push((r, client)),
                Err(e @ RegistryError::Http { .. }) => {
                    if !quiet {
                        eprintln!(
                            "warning: store {}/{} is unreachable ({e}); using the mirrors only",
                            r.registry, r.repository
                        );
                    }
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("connecting to the store {}/{}", r.registry, r.repository)
                    });
                }
            }
        }
        let report = FillReport {
            store: stores
                .iter()
                .map(|(r, _)| format!("{}/{}", r.registry, r.repository))
                .collect::<Vec<_>>()
                .join(", "),
            ..FillReport::default()
        };
        Ok(StoreFill {
            stores,
            audit: report.clone(),
            report,
        })
    }

    /// Whether any registry is in use.
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// The lock's InRelease and index files into the index cache.
    pub fn audit_files(&mut self, lock: &Lockfile, cache_dir: &Path) -> Result<()> {
        for (r, client) in &self.stores {
            let got = crate::http::block_on(fill::fill_audit_files(client, r, cache_dir, lock))??;
            self.audit.merge(&got);
        }
        Ok(())
    }

    /// The lock's files into the vendor store, `jobs` at a time.
    pub fn blobs(&mut self, lock: &Lockfile, store: &Store, jobs: usize) -> Result<()> {
        for (r, client) in &self.stores {
            let got = crate::http::block_on(fill::fill_blobs(client, r, store, lock, jobs))??;
            self.report.merge(&got);
        }
        Ok(())
    }

    /// The summary line: files taken, and the audit's signed files.
    pub fn summary(&self) -> String {
        let mut line = self.report.to_string();
        if self.audit.files > 0 {
            line.push_str(&format!(
                "; and {} signed index file(s) for the lock audit",
                self.audit.files
            ));
        }
        line
    }
}
