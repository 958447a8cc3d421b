//! One publication, computed offline from `out/RECIPE/`: every blob and
//! manifest with its digest, before anything is sent.
//!
//! - the image: the manifest, config and layers of `out/RECIPE/oci/`, byte
//!   for byte (so the registry's digest is the build's);
//! - one OCI 1.1 artifact per image file (`disk.raw` as zstd, the rest as
//!   is), `subject` = the image manifest;
//! - referrers of the image: the lock, both SBOMs, the provenance (a DSSE
//!   envelope) and, with a key, a cosign-style signature of the manifest
//!   digest;
//! - the tags: the recipe's version, `lock-<12 hex>`, and any extra ones.
//!
//! Everything is deterministic (no clock, no randomness; created =
//! SOURCE_DATE_EPOCH), so publishing the same outputs again yields the same
//! digests and uploads nothing.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::PublishError;
use super::compress::zstd_cached;
use super::media;
pub use super::oci::{Descriptor, ImageManifest, Index};
use super::sign::{self, SigningKey};
use crate::core::stamps::StampFile;
use crate::image::Manifest as OutManifest;
use crate::image::oci::rfc3339;
use crate::lock::Lockfile;
use crate::recipe::Recipe;
use crate::registry::{BlobSource, sha256_digest};

/// One blob to upload.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Its descriptor.
    pub descriptor: Descriptor,
    /// Where its bytes are.
    pub source: BlobSource,
}

/// One manifest to upload with its blobs.
#[derive(Debug, Clone)]
pub struct Document {
    /// What it is, for messages (`image`, `disk.raw`, `sbom.spdx.json`, …).
    pub what: String,
    /// Its bytes as sent.
    pub bytes: Vec<u8>,
    /// Its descriptor (with `artifactType` and annotations, as listed in a
    /// referrers index).
    pub descriptor: Descriptor,
    /// The blobs it references.
    pub blobs: Vec<Blob>,
    /// A tag it is pushed under besides its digest (the cosign `.sig` tag).
    pub tag: Option<String>,
}

/// A whole publication.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The image.
    pub image: Document,
    /// One artifact per image file.
    pub artifacts: Vec<Document>,
    /// Lock, SBOMs, provenance, signature.
    pub referrers: Vec<Document>,
    /// The tags moved to the image once everything else is in place.
    pub tags: Vec<String>,
    /// The in-toto statement (also inside the provenance referrer).
    pub statement: Vec<u8>,
}

/// What a publication is made from.
pub struct PlanOptions<'a> {
    /// `out/RECIPE`.
    pub out_dir: &'a Path,
    /// The recipe.
    pub recipe: &'a Recipe,
    /// The recipe's lock (as read from `lock_path`).
    pub lock: &'a Lockfile,
    /// `locks/RECIPE.lock`.
    pub lock_path: &'a Path,
    /// `HOST[:PORT]/REPO`: the signature's identity.
    pub repository: String,
    /// `--tag`s.
    pub extra_tags: Vec<String>,
    /// `org.opencontainers.image.revision` (the workspace's commit).
    pub revision: Option<String>,
    /// The signing key, if any.
    pub key: Option<&'a SigningKey>,
    /// Where compressed copies of image files are kept between publications.
    pub cache_dir: PathBuf,
    /// Files attached as referrers (`--attach`), e.g. a drift report.
    pub attachments: &'a [PathBuf],
}

/// Planning entry point.
pub struct Plan;

/// `lock-<first 12 hex of the lock hash>`.
pub fn lock_tag(lock: &Lockfile) -> String {
    let h = lock.file_hash();
    format!("lock-{}", &h["sha256:".len().."sha256:".len() + 12])
}

/// `packages.txt` less the packages the build generated from the lock's
/// `[[component]]`s (they are in the image, not in the lock's
/// `[[package]]`s), so that it can be compared with the lock's packages.
fn without_components(listed: &str, lock: &Lockfile) -> String {
    listed
        .lines()
        .filter(|line| {
            let mut f = line.split(' ');
            let (name, version) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
            !lock
                .components
                .iter()
                .any(|c| c.name == name && c.version == version)
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

pub(super) fn out_err(path: &Path, reason: impl Into<String>) -> PublishError {
    PublishError::Output {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Whether an output file is an image file published as an artifact (top
/// level, not one of the files every build writes).
pub fn is_image_file(path: &str) -> bool {
    !path.contains('/')
        && !path.starts_with("rootfs.tar")
        && !matches!(
            path,
            "packages.txt" | "sbom.cdx.json" | "sbom.spdx.json" | "manifest.json"
        )
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("OCI JSON serialises")
}

fn empty_config() -> Blob {
    Blob {
        descriptor: Descriptor {
            media_type: media::EMPTY.into(),
            digest: sha256_digest(media::EMPTY_BYTES),
            size: media::EMPTY_BYTES.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
        },
        source: BlobSource::Bytes(media::EMPTY_BYTES.to_vec()),
    }
}

impl Plan {
    /// Reads and checks `out/RECIPE/`, then computes the publication.
    pub fn make(opts: &PlanOptions<'_>) -> Result<Publication, PublishError> {
        let dir = opts.out_dir;
        let out = OutManifest::read(dir).map_err(|e| {
            out_err(
                dir,
                format!("{e}; run `imgbuild build {}`", opts.recipe.name),
            )
        })?;
        if out.recipe != opts.recipe.name {
            return Err(out_err(
                dir,
                format!("holds recipe `{}`, not `{}`", out.recipe, opts.recipe.name),
            ));
        }
        // Files found unchanged by an earlier publication are not read
        // again (see `core::stamps`): a second push of the same image is
        // what a registry answers, not a re-hash of every artifact.
        let mut stamps = StampFile::load(&opts.cache_dir.join("checked.json"));
        let changed = out.check_with(dir, Some(&mut stamps));
        stamps.save();
        if !changed.is_empty() {
            return Err(out_err(
                dir,
                format!(
                    "changed since the build (differs from manifest.json): {}; run `imgbuild build {}`",
                    changed.join(", "),
                    opts.recipe.name
                ),
            ));
        }
        let pkgs = dir.join("packages.txt");
        let listed = fs::read_to_string(&pkgs).map_err(|e| out_err(&pkgs, e.to_string()))?;
        if without_components(&listed, opts.lock) != crate::image::pkglist::packages_txt(opts.lock)
        {
            return Err(out_err(
                dir,
                format!(
                    "was built from another lock than {}; run `imgbuild build {}`",
                    opts.lock_path.display(),
                    opts.recipe.name
                ),
            ));
        }
        let annotations = annotations(opts, out.source_date_epoch);
        let image = image_document(dir)?;
        let subject = Descriptor {
            artifact_type: None,
            annotations: BTreeMap::new(),
            ..image.descriptor.clone()
        };

        let mut artifacts = Vec::new();
        let mut subjects: Vec<(String, String)> =
            vec![(opts.repository.clone(), image.descriptor.digest.clone())];
        for a in out.artifacts.iter().filter(|a| is_image_file(&a.path)) {
            let (artifact_type, layer_type, compress) = media::image_file(&a.path);
            let path = dir.join(&a.path);
            let mut layer_ann = BTreeMap::from([(media::TITLE.to_string(), a.path.clone())]);
            let (source, digest, size) = if compress {
                let (p, d, s) = zstd_cached(&path, &a.sha256, &opts.cache_dir)?;
                layer_ann.insert(
                    media::UNCOMPRESSED_DIGEST.into(),
                    format!("sha256:{}", a.sha256),
                );
                layer_ann.insert(media::UNCOMPRESSED_SIZE.into(), a.size.to_string());
                (BlobSource::File(p), d, s)
            } else {
                (
                    BlobSource::File(path),
                    format!("sha256:{}", a.sha256),
                    a.size,
                )
            };
            subjects.push((a.path.clone(), format!("sha256:{}", a.sha256)));
            let layer = Blob {
                descriptor: Descriptor {
                    media_type: layer_type.into(),
                    digest,
                    size,
                    artifact_type: None,
                    annotations: layer_ann,
                },
                source,
            };
            artifacts.push(artifact(
                &a.path,
                artifact_type,
                vec![layer],
                &subject,
                &annotations,
            ));
        }

        let mut referrers = Vec::new();
        let lock_text =
            fs::read(opts.lock_path).map_err(|e| out_err(opts.lock_path, e.to_string()))?;
        let lock_name = opts
            .lock_path
            .file_name()
            .map_or_else(|| "lock".into(), |n| n.to_string_lossy().into_owned());
        let mut files: Vec<(String, &'static str, Vec<u8>)> =
            vec![(lock_name, media::LOCK, lock_text)];
        for (name, mt) in [
            ("sbom.spdx.json", media::SPDX),
            ("sbom.cdx.json", media::CYCLONEDX),
        ] {
            let p = dir.join(name);
            if p.is_file() {
                files.push((
                    name.to_string(),
                    mt,
                    fs::read(&p).map_err(|e| out_err(&p, e.to_string()))?,
                ));
            }
        }
        for (name, mt, bytes) in files {
            subjects.push((name.clone(), sha256_digest(&bytes)));
            referrers.push(artifact(
                &name,
                mt,
                vec![bytes_layer(&name, mt, bytes)],
                &subject,
                &annotations,
            ));
        }
        for (name, bytes) in super::attach::read(opts.attachments, &subjects)? {
            subjects.push((name.clone(), sha256_digest(&bytes)));
            let layer = bytes_layer(&name, media::attachment_layer(&name), bytes);
            referrers.push(artifact(
                &name,
                media::ATTACHMENT,
                vec![layer],
                &subject,
                &annotations,
            ));
        }

        let statement = super::provenance::statement(&super::provenance::Inputs {
            subjects: &subjects,
            recipe: opts.recipe,
            lock: opts.lock,
            out: &out,
            revision: opts.revision.as_deref(),
        });
        let envelope = sign::Envelope::sign(sign::IN_TOTO_PAYLOAD, &statement, opts.key);
        let mut env_bytes = serde_json::to_vec_pretty(&envelope).expect("envelope serialises");
        env_bytes.push(b'\n');
        let mut layer = bytes_layer("provenance.intoto.json", media::DSSE, env_bytes);
        layer.descriptor.annotations.insert(
            media::PREDICATE_TYPE_ANNOTATION.into(),
            super::provenance::SLSA_PREDICATE.into(),
        );
        let mut prov_ann = annotations.clone();
        prov_ann.insert(
            media::PREDICATE_TYPE_ANNOTATION.into(),
            super::provenance::SLSA_PREDICATE.into(),
        );
        referrers.push(artifact(
            "provenance.intoto.json",
            media::IN_TOTO,
            vec![layer],
            &subject,
            &prov_ann,
        ));

        if let Some(key) = opts.key {
            let payload = sign::simple_signing_payload(&opts.repository, &image.descriptor.digest);
            let sig = base64::engine::general_purpose::STANDARD.encode(key.sign(&payload));
            let mut layer = bytes_layer("signature", media::COSIGN_SIMPLE_SIGNING, payload);
            layer.descriptor.annotations.remove(media::TITLE);
            layer
                .descriptor
                .annotations
                .insert(media::COSIGN_SIGNATURE_ANNOTATION.into(), sig);
            let mut doc = artifact(
                "signature",
                media::COSIGN_SIG_ARTIFACT,
                vec![layer],
                &subject,
                &annotations,
            );
            doc.tag = Some(format!("{}.sig", image.descriptor.digest.replace(':', "-")));
            referrers.push(doc);
        }

        let mut tags = Vec::new();
        if let Some(v) = &opts.recipe.publish.version {
            tags.push(v.clone());
        }
        tags.push(lock_tag(opts.lock));
        for t in &opts.extra_tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        Ok(Publication {
            image,
            artifacts,
            referrers,
            tags,
            statement,
        })
    }
}

/// The `org.opencontainers.image.*` annotations and the recipe's labels.
fn annotations(opts: &PlanOptions<'_>, sde: i64) -> BTreeMap<String, String> {
    let p = &opts.recipe.publish;
    let mut a: BTreeMap<String, String> = p.labels.clone();
    a.insert(
        "org.opencontainers.image.title".into(),
        opts.recipe.name.clone(),
    );
    a.insert("org.opencontainers.image.created".into(), rfc3339(sde));
    if let Some(v) = &p.version {
        a.insert("org.opencontainers.image.version".into(), v.clone());
    }
    if let Some(r) = &opts.revision {
        a.insert("org.opencontainers.image.revision".into(), r.clone());
    }
    if let Some(s) = &p.source {
        a.insert("org.opencontainers.image.source".into(), s.clone());
    }
    a
}

fn bytes_layer(name: &str, media_type: &str, bytes: Vec<u8>) -> Blob {
    Blob {
        descriptor: Descriptor {
            media_type: media_type.into(),
            digest: sha256_digest(&bytes),
            size: bytes.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::from([(media::TITLE.to_string(), name.to_string())]),
        },
        source: BlobSource::Bytes(bytes),
    }
}

/// An artifact manifest of `layers` about `subject`.
fn artifact(
    what: &str,
    artifact_type: &str,
    layers: Vec<Blob>,
    subject: &Descriptor,
    annotations: &BTreeMap<String, String>,
) -> Document {
    let config = empty_config();
    let m = ImageManifest {
        schema_version: 2,
        media_type: media::MANIFEST.into(),
        artifact_type: Some(artifact_type.into()),
        config: config.descriptor.clone(),
        layers: layers.iter().map(|l| l.descriptor.clone()).collect(),
        subject: Some(subject.clone()),
        annotations: annotations.clone(),
    };
    let bytes = json(&m);
    let descriptor = Descriptor {
        media_type: media::MANIFEST.into(),
        digest: sha256_digest(&bytes),
        size: bytes.len() as u64,
        artifact_type: Some(artifact_type.into()),
        annotations: annotations.clone(),
    };
    let mut blobs = vec![config];
    blobs.extend(layers);
    Document {
        what: what.to_string(),
        bytes,
        descriptor,
        blobs,
        tag: None,
    }
}

/// The image of `out/RECIPE/oci/`: its one manifest as written, its blobs.
fn image_document(dir: &Path) -> Result<Document, PublishError> {
    let oci = dir.join("oci");
    let index_path = oci.join("index.json");
    let index: Index = read_json(&index_path)?;
    let [desc] = index.manifests.as_slice() else {
        return Err(out_err(
            &index_path,
            format!("{} manifests; one expected", index.manifests.len()),
        ));
    };
    let blob_path = |d: &str| -> Result<PathBuf, PublishError> {
        crate::registry::reference::check_digest(d).map_err(|e| out_err(&index_path, e))?;
        Ok(oci.join("blobs").join("sha256").join(&d["sha256:".len()..]))
    };
    let mpath = blob_path(&desc.digest)?;
    let bytes = fs::read(&mpath).map_err(|e| out_err(&mpath, e.to_string()))?;
    if sha256_digest(&bytes) != desc.digest || bytes.len() as u64 != desc.size {
        return Err(out_err(
            &mpath,
            "does not match its descriptor in index.json",
        ));
    }
    let m: ImageManifest =
        serde_json::from_slice(&bytes).map_err(|e| out_err(&mpath, e.to_string()))?;
    let mut blobs = Vec::new();
    for d in std::iter::once(&m.config).chain(&m.layers) {
        let p = blob_path(&d.digest)?;
        let len = fs::metadata(&p)
            .map_err(|e| out_err(&p, e.to_string()))?
            .len();
        if len != d.size {
            return Err(out_err(
                &p,
                format!("{len} bytes, {} in the manifest", d.size),
            ));
        }
        blobs.push(Blob {
            descriptor: d.clone(),
            source: BlobSource::File(p),
        });
    }
    Ok(Document {
        what: "image".into(),
        descriptor: Descriptor {
            media_type: media::MANIFEST.into(),
            digest: desc.digest.clone(),
            size: desc.size,
            artifact_type: None,
            annotations: BTreeMap::new(),
        },
        bytes,
        blobs,
        tag: None,
    })
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, PublishError> {
    let bytes = fs::read(path).map_err(|e| out_err(path, e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| out_err(path, e.to_string()))
}

/// The referrers index after adding `new` to `existing` (the current tag
/// fallback index, if any): entries with the same digest are replaced, the
/// rest kept in order; `None` when nothing changes.
pub fn merged_referrers(existing: Option<&[u8]>, new: &[Descriptor]) -> Option<Vec<u8>> {
    let mut manifests: Vec<Descriptor> = existing
        .and_then(|b| serde_json::from_slice::<Index>(b).ok())
        .map(|i| i.manifests)
        .unwrap_or_default();
    let before = manifests.clone();
    for d in new {
        match manifests.iter_mut().find(|m| m.digest == d.digest) {
            Some(slot) => *slot = d.clone(),
            None => manifests.push(d.clone()),
        }
    }
    if existing.is_some() && manifests == before {
        return None;
    }
    Some(json(&Index {
        schema_version: 2,
        media_type: media::INDEX.into(),
        manifests,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(d: char) -> Descriptor {
        Descriptor {
            media_type: media::MANIFEST.into(),
            digest: format!("sha256:{}", d.to_string().repeat(64)),
            size: 1,
            artifact_type: Some(media::SPDX.into()),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn referrers_merge_keeps_others_and_is_idempotent() {
        let first = merged_referrers(None, &[desc('a')]).unwrap();
        let second = merged_referrers(Some(&first), &[desc('b'), desc('a')]).unwrap();
        let idx: Index = serde_json::from_slice(&second).unwrap();
        assert_eq!(idx.manifests, vec![desc('a'), desc('b')]);
        assert!(merged_referrers(Some(&second), &[desc('a')]).is_none());
    }

    #[test]
    fn image_files() {
        assert!(is_image_file("disk.raw"));
        assert!(is_image_file("onie-installer-x86_64-kvm.bin"));
        assert!(!is_image_file("oci/index.json"));
        assert!(!is_image_file("rootfs.tar.zst"));
        assert!(!is_image_file("sbom.spdx.json"));
    }

    #[test]
    fn packages_generated_from_components_are_not_compared_with_the_lock() {
        let lock = Lockfile::parse(
            r#"version = 1
[recipe]
name = "img"
hash = "sha256:00"
architecture = "amd64"

[[package]]
name = "libc6"
version = "2.36"
architecture = "amd64"
source = "main"
filename = "pool/l/libc6.deb"
size = 1
sha256 = "{sha}"

[[component]]
name = "bmv2"
version = "1.15.5"
git = "https://example.invalid/bmv2"
rev = "1.15.5"
commit = "{commit}"
sha256 = "{sha}"
size = 1
"#
            .replace("{sha}", &"ab".repeat(32))
            .replace("{commit}", &"0".repeat(40))
            .as_str(),
            Path::new("img.lock"),
        )
        .unwrap();
        let built = "bmv2 1.15.5 amd64\nlibc6 2.36 amd64\n";
        assert_eq!(without_components(built, &lock), "libc6 2.36 amd64\n");
        // Another version of the component is another image: it stays.
        let other = "bmv2 1.16 amd64\nlibc6 2.36 amd64\n";
        assert_eq!(without_components(other, &lock), other);
    }
}
