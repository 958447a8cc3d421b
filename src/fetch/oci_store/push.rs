//! `imgbuild vendor push`: the files of a lock as blobs of a registry
//! repository, then the lock's store manifest, then its tag.
//!
//! Blobs first (each HEADed, sent only when absent), the manifest by digest
//! (not sent when present), the tag last and only when it points elsewhere:
//! a tag never names a manifest whose blobs are not all there, and pushing
//! the same lock again sends nothing.

use std::fmt;

use futures_util::stream::{self, StreamExt};

use super::{OciStoreError, StoreManifest};
use crate::publish::media;
use crate::registry::{BlobOutcome, Client, Reference};

/// What a push did. `Display` is the summary a person reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PushReport {
    /// `HOST[:PORT]/REPO:TAG`.
    pub reference: String,
    /// `sha256:…` of the store manifest.
    pub digest: String,
    /// Layers of the manifest (the lock and every file).
    pub layers: usize,
    /// Blobs uploaded.
    pub blobs_sent: usize,
    /// Blobs the repository already had (not sent).
    pub blobs_skipped: usize,
    /// Bytes of blobs and manifest uploaded.
    pub bytes_sent: u64,
    /// Whether the manifest was uploaded (false: already there).
    pub manifest_sent: bool,
    /// Whether the tag was moved (false: it already named the manifest).
    pub tag_moved: bool,
    /// Audit files (InRelease, indexes) left out because the index cache
    /// lacks them: `source path` each.
    pub uncached: Vec<String>,
}

impl fmt::Display for PushReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Pushed the store of {}@{}", self.reference, self.digest)?;
        let mib = self.bytes_sent as f64 / (1024.0 * 1024.0);
        write!(
            f,
            "  {} layers: {} blob(s) sent ({mib:.1} MiB, {} bytes), {} already there{}",
            self.layers,
            self.blobs_sent,
            self.bytes_sent,
            self.blobs_skipped,
            if self.blobs_sent == 0 && !self.manifest_sent && !self.tag_moved {
                "; nothing to upload"
            } else {
                ""
            }
        )?;
        for u in &self.uncached {
            write!(
                f,
                "\n  warning: {u} is not in the index cache, so it is not in the store; \
                 a builder filling from it needs an archive mirror to audit the lock"
            )?;
        }
        Ok(())
    }
}

/// Uploads `m` to `target` (whose tag must be set), `jobs` blobs at a time.
pub async fn push(
    client: &Client,
    target: &Reference,
    m: &StoreManifest,
    jobs: usize,
) -> Result<PushReport, OciStoreError> {
    let repo = target.repository.as_str();
    let tag = target.tag.as_deref().expect("the caller sets a tag");
    let at = format!("{}/{repo}", target.registry);
    client
        .ping(repo, true)
        .await
        .map_err(|source| OciStoreError::Registry {
            what: format!("connecting to {}", target.registry),
            source,
        })?;
    let before = client.uploaded();
    let at_ref = at.as_str();
    let outcomes: Vec<Result<BlobOutcome, OciStoreError>> = stream::iter(&m.layers)
        .map(|l| async move {
            let d = &l.descriptor;
            client
                .push_blob(repo, &d.digest, d.size, &l.source, None)
                .await
                .map_err(|source| OciStoreError::Registry {
                    what: format!(
                        "uploading {} ({}) to {at_ref}",
                        d.annotations
                            .get(super::LABEL)
                            .map_or("the empty config", String::as_str),
                        d.digest
                    ),
                    source,
                })
        })
        .buffer_unordered(jobs.max(1))
        .collect()
        .await;
    let mut report = PushReport {
        reference: format!("{at}:{tag}"),
        digest: m.digest.clone(),
        layers: m.layers.len() - 1,
        uncached: m
            .uncached
            .iter()
            .map(|u| format!("source `{}` {}", u.source, u.path))
            .collect(),
        ..PushReport::default()
    };
    let mut errors = Vec::new();
    for o in outcomes {
        match o {
            Ok(BlobOutcome::Uploaded(_)) => report.blobs_sent += 1,
            Ok(_) => report.blobs_skipped += 1,
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(OciStoreError::Failed(errors));
    }
    let registry_err = |what: String| {
        move |source| OciStoreError::Registry {
            what: what.clone(),
            source,
        }
    };
    let put = client
        .put_manifest(repo, &m.digest, media::MANIFEST, &m.bytes)
        .await
        .map_err(registry_err(format!("pushing the store manifest to {at}")))?;
    report.manifest_sent = put.sent;
    let current = client
        .tag_digest(repo, tag)
        .await
        .map_err(registry_err(format!("reading tag `{tag}` of {at}")))?;
    if current.as_deref() != Some(m.digest.as_str()) {
        client
            .put_manifest(repo, tag, media::MANIFEST, &m.bytes)
            .await
            .map_err(registry_err(format!("tagging the store manifest `{tag}`")))?;
        report.tag_moved = true;
    }
    report.bytes_sent = client.uploaded() - before;
    Ok(report)
}
