//! An OCI image layout (image-spec 1.1) holding one single-layer image.
//!
//! ```text
//! oci-layout                  {"imageLayoutVersion":"1.0.0"}
//! index.json                  → the manifest, tagged with `ref.name`
//! blobs/sha256/<manifest>     → config + layer
//! blobs/sha256/<config>       architecture, os, env, rootfs.diff_ids, history
//! blobs/sha256/<layer>        gzip of the rootfs tar (fixed gzip header)
//! ```
//!
//! The JSON types are our own serde structs rather than the `oci-spec` crate:
//! its maps are `HashMap`s (iteration order varies between runs) and the
//! digests here must be stable, so every field order is fixed by the struct
//! and every map is a `BTreeMap`. JSON is written compact, and the only time
//! in it is SOURCE_DATE_EPOCH.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Compression, HashingWriter, OutputError, write_synced};
use crate::core::uncached::{DirectAppender, DirectReader};
use crate::lock::Lockfile;
use crate::pack::chunks::ChunkCache;

/// `mediaType` of an image index.
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `mediaType` of an image manifest.
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `mediaType` of an image config.
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// `mediaType` of a gzip-compressed layer.
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The annotation naming an image in `index.json` (`oci:DIR:NAME`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation recording the creation time.
pub const CREATED: &str = "org.opencontainers.image.created";
/// The PATH a Debian root filesystem expects.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What goes into the image besides the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOptions {
    /// OCI (Go) architecture: `amd64`, `arm64`, `arm`, `386`, …
    pub architecture: String,
    /// Architecture variant (`v7` for armhf), if any.
    pub variant: Option<String>,
    /// SOURCE_DATE_EPOCH: `created` of the config and its history.
    pub created_epoch: i64,
    /// `config.Env`.
    pub env: Vec<String>,
    /// `created_by` of the one history entry.
    pub created_by: String,
    /// The tag in `index.json` (`org.opencontainers.image.ref.name`).
    pub ref_name: String,
}

impl ImageOptions {
    /// The options for an image of `lock`'s recipe: its architecture, the
    /// Debian PATH, tag `latest`.
    pub fn for_lock(lock: &Lockfile, created_epoch: i64) -> ImageOptions {
        let (architecture, variant) = oci_architecture(&lock.recipe.architecture);
        ImageOptions {
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
            created_epoch,
            env: vec![DEFAULT_PATH.to_string()],
            created_by: format!("imgbuild build {}", lock.recipe.name),
            ref_name: "latest".to_string(),
        }
    }
}

/// The OCI architecture and variant of a Debian architecture (unknown ones
/// are passed through).
pub fn oci_architecture(debian: &str) -> (&str, Option<&'static str>) {
    match debian {
        "i386" => ("386", None),
        "armhf" => ("arm", Some("v7")),
        "armel" => ("arm", Some("v5")),
        "arm64" => ("arm64", Some("v8")),
        "ppc64el" => ("ppc64le", None),
        "mips64el" => ("mips64le", None),
        "mipsel" => ("mipsle", None),
        other => (other, None),
    }
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced blob.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Annotations (`ref.name` in the index).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// [`MEDIA_INDEX`].
    pub media_type: String,
    /// The images.
    pub manifests: Vec<Descriptor>,
}

/// An image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MEDIA_MANIFEST`].
    pub media_type: String,
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs, base first.
    pub layers: Vec<Descriptor>,
    /// Annotations (`org.opencontainers.image.created`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// RFC 3339 creation time.
    pub created: String,
    /// OCI architecture.
    pub architecture: String,
    /// Architecture variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Always `linux`.
    pub os: String,
    /// Execution defaults.
    pub config: ExecConfig,
    /// The layers' uncompressed digests.
    pub rootfs: RootFs,
    /// One entry per layer.
    pub history: Vec<History>,
}

/// `config.config`: execution defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecConfig {
    /// Environment, `NAME=value`.
    #[serde(rename = "Env")]
    pub env: Vec<String>,
}

/// `config.rootfs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `sha256:<hex>` of each uncompressed layer.
    pub diff_ids: Vec<String>,
}

/// One `config.history` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// RFC 3339 time.
    pub created: String,
    /// What made the layer.
    pub created_by: String,
}

/// The digests of a written layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciImage {
    /// `sha256:…` of the manifest (the image's identity).
    pub manifest: Descriptor,
    /// The config descriptor.
    pub config: Descriptor,
    /// The layer descriptor.
    pub layer: Descriptor,
    /// `sha256:…` of the uncompressed layer.
    pub diff_id: String,
}

/// Writes an OCI layout into `dir` (created; must not exist or be empty)
/// whose one layer is the gzip of the tar at `layer_tar`.
pub fn write_layout(
    layer_tar: &Path,
    dir: &Path,
    opts: &ImageOptions,
) -> Result<OciImage, OutputError> {
    write_layout_cached(layer_tar, dir, opts, None)
}

/// [`write_layout`], the layer's unchanged chunks taken from `chunks` (the
/// same bytes: see [`crate::pack::pargz`]).
pub fn write_layout_cached(
    layer_tar: &Path,
    dir: &Path,
    opts: &ImageOptions,
    chunks: Option<Arc<ChunkCache>>,
) -> Result<OciImage, OutputError> {
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(OutputError::io("creating", &blobs))?;

    let (diff_id, layer) = write_layer(layer_tar, &blobs, chunks)?;
    let created = rfc3339(opts.created_epoch);
    let config = ImageConfig {
        created: created.clone(),
        architecture: opts.architecture.clone(),
        variant: opts.variant.clone(),
        os: "linux".into(),
        config: ExecConfig {
            env: opts.env.clone(),
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![diff_id.clone()],
        },
        history: vec![History {
            created: created.clone(),
            created_by: opts.created_by.clone(),
        }],
    };
    let config = write_json_blob(&blobs, MEDIA_CONFIG, &config)?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: MEDIA_MANIFEST.into(),
        config: config.clone(),
        layers: vec![layer.clone()],
        annotations: BTreeMap::from([(CREATED.to_string(), created)]),
    };
    let manifest = write_json_blob(&blobs, MEDIA_MANIFEST, &manifest)?;
    let mut tagged = manifest.clone();
    tagged
        .annotations
        .insert(REF_NAME.to_string(), opts.ref_name.clone());
    let index = Index {
        schema_version: 2,
        media_type: MEDIA_INDEX.into(),
        manifests: vec![tagged],
    };
    write_synced(&dir.join("index.json"), &json(&index))?;
    write_synced(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    Ok(OciImage {
        manifest,
        config,
        layer,
        diff_id,
    })
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("OCI JSON types serialise")
}

/// Writes a JSON blob named by its digest.
fn write_json_blob<T: Serialize>(
    blobs: &Path,
    media_type: &str,
    value: &T,
) -> Result<Descriptor, OutputError> {
    let bytes = json(value);
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    write_synced(&blobs.join(&digest), &bytes)?;
    Ok(Descriptor {
        media_type: media_type.into(),
        digest: format!("sha256:{digest}"),
        size: bytes.len() as u64,
        annotations: BTreeMap::new(),
    })
}

/// Gzips the tar into a blob; returns the diff_id and the layer descriptor.
fn write_layer(
    tar: &Path,
    blobs: &Path,
    chunks: Option<Arc<ChunkCache>>,
) -> Result<(String, Descriptor), OutputError> {
    let tmp = blobs.join(".layer.tmp");
    // The rootfs cache writes its tars past the page cache: read the same way.
    let mut reader = DirectReader::open(tar).map_err(OutputError::io("opening", tar))?;
    let file = File::create(&tmp).map_err(OutputError::io("creating", &tmp))?;
    // Past the page cache (see `core::uncached`): the blob is read again
    // only when it is pushed, by another run.
    let compressed = HashingWriter::new(DirectAppender::new(file, 1 << 20));
    let mut enc = Compression::Gzip
        .encoder_cached(compressed, chunks)
        .map_err(OutputError::io("compressing into", &tmp))?;
    // The tar's digest is usually known (the rootfs cache checked it):
    // then it is not computed again.
    let known = crate::core::digest::memoized(tar).map(|(sha, _)| sha);
    let diff_id = match known {
        Some(sha) => {
            io::copy(&mut reader, &mut enc).map_err(OutputError::io("compressing into", &tmp))?;
            sha
        }
        None => {
            let mut plain = HashingWriter::new(&mut enc);
            io::copy(&mut reader, &mut plain).map_err(OutputError::io("compressing into", &tmp))?;
            plain.finish().1
        }
    };
    let (appender, digest, size) = enc
        .finish()
        .map_err(OutputError::io("compressing into", &tmp))?
        .finish();
    appender
        .finish()
        .and_then(|f| f.sync_all())
        .map_err(OutputError::io("writing", &tmp))?;
    let dest = blobs.join(&digest);
    fs::rename(&tmp, &dest).map_err(OutputError::io("renaming into place", &dest))?;
    crate::core::digest::remember(&dest, &digest);
    Ok((
        format!("sha256:{diff_id}"),
        Descriptor {
            media_type: MEDIA_LAYER_GZIP.into(),
            digest: format!("sha256:{digest}"),
            size,
            annotations: BTreeMap::new(),
        },
    ))
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch (UTC).
pub fn rfc3339(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_717_200_000), "2024-06-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn architectures() {
        assert_eq!(oci_architecture("amd64"), ("amd64", None));
        assert_eq!(oci_architecture("armhf"), ("arm", Some("v7")));
        assert_eq!(oci_architecture("i386"), ("386", None));
    }
}
