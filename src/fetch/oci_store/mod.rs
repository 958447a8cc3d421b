//! The vendor store shared through an OCI registry: `imgbuild vendor push`
//! uploads what a lock pins, and `--mirror store=oci://HOST/REPO` (or
//! `IMGBUILD_STORE`) lets `fetch` and `build` fill a store from it before
//! asking the archive mirrors.
//!
//! Every file a lock pins is already named by its sha256, which is the
//! registry's digest too, so a repository holds the files of many locks as
//! plain blobs, each uploaded once. One image manifest per lock (artifact
//! type [`ARTIFACT_TYPE`], empty config, the lock itself as the first layer,
//! then every file as a layer annotated with what it is) keeps them from the
//! registry's garbage collector and lets any OCI client list or pull them.
//!
//! Besides [`Lockfile::blobs`], the manifest carries each locked source's
//! signed InRelease and index files ([`crate::archive::kept`]): with them a
//! builder whose cache is empty can still run the lock audit when the
//! archive is out of reach or has dropped the lock's files.
//!
//! - [`push`]: the upload (HEAD first; present blobs are not sent again);
//! - [`fill`]: the download into the store and the index cache, every
//!   blob checked against the lock's sha256 and size as it streams.
//!
//! A fill reads blobs by digest, so the manifest's tag is not needed to
//! fetch: a lock that was never pushed still gets whatever files other
//! locks already put in the repository.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::archive::kept::{self, AuditFile, AuditFileKind};
use crate::lock::Lockfile;
use crate::publish::media;
use crate::publish::oci::{Descriptor, ImageManifest};
use crate::registry::{BlobSource, Reference, RegistryError, TransportOptions, sha256_digest};

use super::store::{MissingBlobs, Store};

pub mod fill;
pub mod push;

pub use fill::FillReport;
pub use push::PushReport;

/// `artifactType` of a store manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.imgbuild.store.v1";
/// Media type of every layer but the lock: a file as the lock pins it.
pub const BLOB: &str = "application/vnd.imgbuild.store.blob.v1";
/// Layer annotation: the lock section (`package`, `tool`, `component`,
/// `python`, `component-source`), or `inrelease` / `index` / `lock`.
pub const SECTION: &str = "vnd.imgbuild.store.section";
/// Layer annotation: what a person reads (`name version arch`, a source name).
pub const LABEL: &str = "vnd.imgbuild.store.label";
/// Layer annotation: the archive-relative path or file name the lock names.
pub const PATH: &str = "vnd.imgbuild.store.path";
/// Manifest annotation: the recipe.
pub const RECIPE: &str = "vnd.imgbuild.store.recipe";
/// Manifest annotation: `sha256:…` of the lock file.
pub const LOCK_DIGEST: &str = "vnd.imgbuild.store.lock.digest";

/// Environment variable naming the store registries (`oci://…`, separated
/// by spaces) when no `--mirror store=…` is given.
pub const STORE_ENV: &str = "IMGBUILD_STORE";
/// Environment variable naming extra CA certificates (PEM) for them.
pub const CA_ENV: &str = "IMGBUILD_STORE_CA_FILE";
/// Files fetched or HEADed at once.
pub const DEFAULT_JOBS: usize = 4;

/// Why the shared store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OciStoreError {
    /// A bad `store=` setting.
    #[error("bad store setting `{setting}`: {reason}")]
    Setting {
        /// The setting as given.
        setting: String,
        /// What is wrong.
        reason: String,
    },
    /// A registry operation failed.
    #[error("{what}: {source}")]
    Registry {
        /// What was being done (naming the blob and the store).
        what: String,
        /// The registry's error (naming the URL).
        source: RegistryError,
    },
    /// Some files could not be taken from the registry; nothing wrong was stored.
    #[error("{} file(s) could not be taken from the store registry (nothing was stored for them):{}",
        .0.len(), .0.iter().map(|e| format!("\n  - {e}")).collect::<String>())]
    Failed(Vec<OciStoreError>),
    /// The vendor store lacks files of the lock (push).
    #[error("{0}")]
    Missing(MissingBlobs),
    /// A local file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The index cache could not be read or written.
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    /// The vendor store could not be written.
    #[error(transparent)]
    Fetch(#[from] super::FetchError),
}

/// Parses `oci://HOST[:PORT]/REPO[:TAG]` (the `oci://` is optional).
pub fn parse_store_url(text: &str) -> Result<Reference, OciStoreError> {
    let bad = |reason: String| OciStoreError::Setting {
        setting: text.to_string(),
        reason,
    };
    let rest = text.trim();
    let rest = match rest.split_once("://") {
        Some(("oci", r)) => r,
        Some((scheme, _)) => {
            return Err(bad(format!(
                "unsupported scheme `{scheme}` (write oci://HOST[:PORT]/REPO)"
            )));
        }
        None => rest,
    };
    Reference::parse(rest).map_err(|e| bad(e.to_string()))
}

/// The store registries to fill from, in order: every `--mirror store=…`,
/// else the space-separated `IMGBUILD_STORE`, else none.
pub fn store_refs(
    flags: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Reference>, OciStoreError> {
    let from_flags: Vec<&str> = flags
        .iter()
        .filter(|f| crate::archive::mirror::is_store_setting(f))
        .filter_map(|f| f.split_once('=').map(|(_, v)| v))
        .collect();
    if !from_flags.is_empty() {
        return from_flags.into_iter().map(parse_store_url).collect();
    }
    match env(STORE_ENV) {
        Some(v) => v.split_whitespace().map(parse_store_url).collect(),
        None => Ok(Vec::new()),
    }
}

/// How to reach a store registry given by `--mirror store=oci://…`: https,
/// with the extra CA bundle of `IMGBUILD_STORE_CA_FILE` if set; a loopback
/// registry without such a bundle is spoken to in plain http (as Docker
/// treats `127.0.0.0/8`), which is how a local test or CI registry runs.
pub fn fill_transport(
    reference: &Reference,
    env: impl Fn(&str) -> Option<String>,
) -> TransportOptions {
    let ca_file = env(CA_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
    TransportOptions {
        insecure: ca_file.is_none() && crate::registry::reference::is_loopback(reference.host()),
        ca_file,
    }
}

/// The tag a lock's store manifest gets when `vendor push` is given none:
/// `RECIPE-lock-` and the first 12 hex digits of the sha256 of the lock
/// file as it is on disk (`sha256sum locks/RECIPE.lock | cut -c1-12`).
/// Characters a tag cannot have become `-`.
pub fn default_tag(recipe: &str, lock_bytes: &[u8]) -> String {
    let hex = crate::core::digest::sha256_hex(lock_bytes);
    let name: String = recipe
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    let name = name.trim_start_matches(['.', '-']);
    let name = if name.is_empty() { "store" } else { name };
    format!("{name}-lock-{}", &hex[..12])
}

/// One layer of a store manifest and where its bytes are.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The descriptor as it appears in the manifest.
    pub descriptor: Descriptor,
    /// The file (or bytes) to upload.
    pub source: BlobSource,
}

/// What `vendor push` uploads for one lock.
#[derive(Debug, Clone)]
pub struct StoreManifest {
    /// The empty config, then the lock, then every file.
    pub layers: Vec<Layer>,
    /// The manifest's bytes.
    pub bytes: Vec<u8>,
    /// Their digest.
    pub digest: String,
    /// Audit files (InRelease, indexes) the index cache lacked: not in the
    /// manifest, so a builder filling from it needs an archive mirror for
    /// the lock audit of those sources.
    pub uncached: Vec<AuditFile>,
}

/// A layer title (`oras pull` writes the file under it) unique in `seen`.
fn title(seen: &mut HashSet<String>, name: &str, sha256: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let base = if base.is_empty() || base.starts_with('.') {
        format!("blob-{base}")
    } else {
        base.to_string()
    };
    if seen.insert(base.clone()) {
        return base;
    }
    let t = format!("{}-{base}", &sha256[..12]);
    seen.insert(t.clone());
    t
}

fn layer(
    media_type: &str,
    digest: String,
    size: u64,
    annotations: [(&str, String); 4],
    source: BlobSource,
) -> Layer {
    Layer {
        descriptor: Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            artifact_type: None,
            annotations: annotations
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        },
        source,
    }
}

/// The manifest of `lock` (whose file holds `lock_bytes`) over `store`, with
/// the audit files found in the index cache at `cache_dir`. Fails listing
/// what the store lacks (run `imgbuild fetch` first).
pub fn plan(
    recipe: &str,
    lock: &Lockfile,
    lock_bytes: &[u8],
    store: &Store,
    cache_dir: &Path,
) -> Result<StoreManifest, OciStoreError> {
    store
        .require(lock, recipe)
        .map_err(OciStoreError::Missing)?;
    let mut seen = HashSet::new();
    let lock_digest = sha256_digest(lock_bytes);
    let mut layers = vec![layer(
        media::LOCK,
        lock_digest.clone(),
        lock_bytes.len() as u64,
        [
            (media::TITLE, format!("{recipe}.lock")),
            (SECTION, "lock".into()),
            (LABEL, recipe.to_string()),
            (PATH, format!("locks/{recipe}.lock")),
        ],
        BlobSource::Bytes(lock_bytes.to_vec()),
    )];
    seen.insert(format!("{recipe}.lock"));
    for b in lock.blobs() {
        layers.push(layer(
            BLOB,
            format!("sha256:{}", b.sha256),
            b.size,
            [
                (media::TITLE, title(&mut seen, b.filename, b.sha256)),
                (SECTION, b.section.to_string()),
                (LABEL, b.label.clone()),
                (PATH, b.filename.to_string()),
            ],
            BlobSource::File(store.path_of(b.sha256)),
        ));
    }
    let mut uncached = Vec::new();
    for f in kept::audit_files(lock) {
        let Some(bytes) = kept::read_cached(cache_dir, &f)? else {
            uncached.push(f);
            continue;
        };
        let section = match f.kind {
            AuditFileKind::InRelease => "inrelease",
            AuditFileKind::Index => "index",
        };
        let name = format!("{}_{}", f.source, f.path.replace('/', "_"));
        layers.push(layer(
            BLOB,
            format!("sha256:{}", f.sha256),
            bytes.len() as u64,
            [
                (media::TITLE, title(&mut seen, &name, &f.sha256)),
                (SECTION, section.into()),
                (LABEL, f.source.clone()),
                (PATH, f.path.clone()),
            ],
            BlobSource::Bytes(bytes),
        ));
    }
    let config = Descriptor {
        media_type: media::EMPTY.into(),
        digest: sha256_digest(media::EMPTY_BYTES),
        size: media::EMPTY_BYTES.len() as u64,
        artifact_type: None,
        annotations: BTreeMap::new(),
    };
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: media::MANIFEST.into(),
        artifact_type: Some(ARTIFACT_TYPE.into()),
        config: config.clone(),
        layers: layers.iter().map(|l| l.descriptor.clone()).collect(),
        subject: None,
        annotations: [
            (RECIPE.to_string(), recipe.to_string()),
            (LOCK_DIGEST.to_string(), lock_digest),
        ]
        .into(),
    };
    let bytes = serde_json::to_vec(&manifest).expect("manifests serialise");
    let digest = sha256_digest(&bytes);
    layers.insert(
        0,
        Layer {
            descriptor: config,
            source: BlobSource::Bytes(media::EMPTY_BYTES.to_vec()),
        },
    );
    Ok(StoreManifest {
        layers,
        bytes,
        digest,
        uncached,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_and_settings() {
        let r = parse_store_url("oci://127.0.0.1:5000/team/store:tag-1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/store", Some("tag-1"))
        );
        assert!(parse_store_url("127.0.0.1:5000/store").is_ok());
        let e = parse_store_url("https://127.0.0.1:5000/store").unwrap_err();
        assert!(e.to_string().contains("unsupported scheme `https`"), "{e}");
        assert!(parse_store_url("oci://store").is_err());

        let flags = vec![
            "debian=http://127.0.0.1:1/debian".to_string(),
            "store=oci://127.0.0.1:5000/a".to_string(),
            "git:https://x/=file:///y/".to_string(),
            " store = oci://127.0.0.1:5001/b".to_string(),
        ];
        let env = |k: &str| (k == STORE_ENV).then(|| "oci://127.0.0.1:6000/env".to_string());
        let refs = store_refs(&flags, env).unwrap();
        let names: Vec<String> = refs.iter().map(|r| r.to_string()).collect();
        assert_eq!(names, ["127.0.0.1:5000/a", "127.0.0.1:5001/b"]);
        let refs = store_refs(&flags[..1], env).unwrap();
        assert_eq!(refs[0].to_string(), "127.0.0.1:6000/env");
        assert!(store_refs(&flags[..1], |_| None).unwrap().is_empty());
    }

    #[test]
    fn loopback_is_plain_unless_a_ca_is_given() {
        let local = parse_store_url("oci://127.0.0.1:5000/s").unwrap();
        let remote = parse_store_url("oci://registry.test/s").unwrap();
        assert!(fill_transport(&local, |_| None).insecure);
        assert!(!fill_transport(&remote, |_| None).insecure);
        let ca = |k: &str| (k == CA_ENV).then(|| "/ca.pem".to_string());
        let t = fill_transport(&local, ca);
        assert!(!t.insecure && t.ca_file.is_some());
    }

    #[test]
    fn default_tags_follow_the_lock_file() {
        let t = default_tag("sonic-p4", b"lock text\n");
        let hex = crate::core::digest::sha256_hex(b"lock text\n");
        assert_eq!(t, format!("sonic-p4-lock-{}", &hex[..12]));
        crate::registry::reference::check_tag(&t).unwrap();
        let odd = default_tag(".we ird/name", b"x");
        crate::registry::reference::check_tag(&odd).unwrap();
        assert!(odd.starts_with("we-ird-name-lock-"), "{odd}");
        assert_ne!(default_tag("a", b"1"), default_tag("a", b"2"));
    }

    #[test]
    fn titles_are_unique() {
        let mut seen = HashSet::new();
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        assert_eq!(title(&mut seen, "pool/x_1.deb", &a), "x_1.deb");
        assert_eq!(
            title(&mut seen, "other/x_1.deb", &b),
            "bbbbbbbbbbbb-x_1.deb"
        );
        assert_eq!(title(&mut seen, ".hidden", &a), "blob-.hidden");
    }
}
