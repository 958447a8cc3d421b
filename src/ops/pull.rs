//! `imgbuild pull REF [--verify-key KEY] [-o DIR]`: an image or artifact
//! and what refers to it, every digest checked, the signature and the
//! provenance verified with a key, written bit-identical to what the build
//! wrote.
//!
//! For an image: `DIR/oci/` (the layout `build` wrote), every image file
//! (decompressed where published compressed), the lock, the SBOMs and the
//! provenance envelope. For an artifact: its files. Everything is fetched
//! into a temp directory and moved into `DIR` only after every check passed.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::image::oci;
use crate::publish::media;
use crate::publish::plan::{ImageManifest, Index};
use crate::publish::sign::{self, Envelope, VerifyingKey};
use crate::registry::{Client, Reference, TransportOptions, auth};

/// The arguments of `imgbuild pull`.
#[derive(Debug, Clone, Default)]
pub struct PullArgs {
    /// `HOST[:PORT]/REPO[:TAG|@DIGEST]`.
    pub reference: String,
    /// Where the files go.
    pub out_dir: PathBuf,
    /// `--verify-key`: public key the signature and provenance must verify with.
    pub verify_key: Option<PathBuf>,
    /// Registry connection options.
    pub transport: TransportOptions,
    /// No progress output.
    pub quiet: bool,
}

/// What a pull wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PullReport {
    /// The manifest pulled.
    pub digest: String,
    /// Files written (relative to the output directory) with their sha256.
    pub files: Vec<(String, String)>,
    /// Whether the signature and provenance were verified.
    pub verified: bool,
}

/// Largest referrer blob (lock, SBOM, envelope, signature payload) read into memory.
const MAX_SMALL_BLOB: usize = 256 << 20;

/// Runs the pull. Must not be called from inside a tokio runtime.
pub fn run(args: &PullArgs) -> Result<PullReport> {
    let r = Reference::parse(&args.reference)?;
    let key = args
        .verify_key
        .as_deref()
        .map(VerifyingKey::from_pem_file)
        .transpose()?;
    let creds = auth::lookup(&r.registry)?;
    let client = Client::new(&r.registry, &args.transport, creds)?;
    let parent = args
        .out_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let stage = tempfile::Builder::new()
        .prefix(".imgbuild-pull-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a temp directory in {}", parent.display()))?;
    let report = crate::http::block_on(pull(&client, &r, stage.path(), key.as_ref(), args.quiet))??;
    // Every check passed: move the files into place.
    for (rel, _) in &report.files {
        let dest = args.out_dir.join(rel);
        if let Some(d) = dest.parent() {
            fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        fs::rename(stage.path().join(rel), &dest)
            .with_context(|| format!("moving {} into place", dest.display()))?;
    }
    if !args.quiet {
        eprintln!(
            "Pulled {}@{}: {} files into {}{}",
            r.repository,
            report.digest,
            report.files.len(),
            args.out_dir.display(),
            if report.verified {
                " (signature and provenance verified)"
            } else {
                ""
            }
        );
    }
    Ok(report)
}

/// `imgbuild pull REF --resolve`: the digest of the manifest `REF` names,
/// or `None` when the registry has no such tag (or digest); nothing is
/// written. For a nightly that must tell "already published" from "not yet"
/// without pulling an image.
pub fn resolve(reference: &str, transport: &TransportOptions) -> Result<Option<String>> {
    let r = Reference::parse(reference)?;
    let creds = auth::lookup(&r.registry)?;
    let client = Client::new(&r.registry, transport, creds)?;
    let repo = r.repository.clone();
    let found = crate::http::block_on(async move {
        match &r.digest {
            Some(d) => Ok::<_, crate::registry::RegistryError>(
                client.manifest_exists(&repo, d).await?.then(|| d.clone()),
            ),
            None => client.tag_digest(&repo, r.target()).await,
        }
    })??;
    Ok(found)
}

fn parse_manifest(bytes: &[u8], what: &str) -> Result<ImageManifest> {
    serde_json::from_slice(bytes).with_context(|| format!("{what} is not an OCI image manifest"))
}

/// A file name from a layer's title: one plain path component.
fn title(layer: &crate::publish::plan::Descriptor, what: &str) -> Result<String> {
    let t = layer
        .annotations
        .get(media::TITLE)
        .with_context(|| format!("a layer of {what} has no {} annotation", media::TITLE))?;
    let ok = !t.is_empty()
        && t != "."
        && t != ".."
        && !t.contains('/')
        && !t.contains('\0')
        && t != "oci";
    if !ok {
        bail!("{what}: refusing layer title `{t}` (not a plain file name)");
    }
    Ok(t.clone())
}

async fn pull(
    client: &Client,
    r: &Reference,
    stage: &Path,
    key: Option<&VerifyingKey>,
    quiet: bool,
) -> Result<PullReport> {
    let repo = r.repository.as_str();
    let top = client
        .get_manifest(repo, r.target())
        .await?
        .with_context(|| format!("{r}: no such manifest"))?;
    if top.media_type != media::MANIFEST {
        bail!(
            "{r}: a {} is not supported here (an OCI image manifest is)",
            top.media_type
        );
    }
    let m = parse_manifest(&top.bytes, &r.to_string())?;
    let mut files: Vec<(String, String)> = Vec::new();
    let (image_digest, wanted_artifact) = match (&m.artifact_type, &m.subject) {
        (Some(_), Some(s)) => (s.digest.clone(), Some(top.digest.clone())),
        (Some(_), None) => {
            // A lone artifact: its files only, nothing to verify them by.
            if key.is_some() {
                bail!("{r}: an artifact without a subject has no signature to verify");
            }
            fetch_files(client, repo, &m, &top.digest, stage, &mut files).await?;
            return Ok(PullReport {
                digest: top.digest,
                files,
                verified: false,
            });
        }
        (None, _) => (top.digest.clone(), None),
    };
    if wanted_artifact.is_none() {
        write_layout(client, repo, &top.bytes, &m, stage, &mut files).await?;
    }
    // The referrers of the image: the API, else the tag schema's index.
    let list = match client.referrers(repo, &image_digest).await? {
        Some(b) => Some(b),
        None => client
            .get_manifest(repo, &image_digest.replace(':', "-"))
            .await?
            .map(|m| m.bytes),
    };
    let index: Index = match &list {
        Some(b) => serde_json::from_slice(b).context("the referrers index is not an OCI index")?,
        None => Index {
            schema_version: 2,
            media_type: media::INDEX.into(),
            manifests: Vec::new(),
        },
    };
    let mut envelope: Option<Envelope> = None;
    let mut signature: Option<(Vec<u8>, String)> = None;
    for d in &index.manifests {
        let Some(at) = d.artifact_type.as_deref() else {
            continue;
        };
        crate::registry::reference::check_digest(&d.digest)
            .map_err(|e| anyhow::anyhow!("referrers index: {e}"))?;
        let is_file_artifact = matches!(
            at,
            media::ARTIFACT_DISK_RAW
                | media::DISK_QCOW2
                | media::ONIE_INSTALLER
                | media::SQUASHFS
                | media::FILE
        );
        let is_evidence = matches!(at, media::LOCK | media::SPDX | media::CYCLONEDX);
        let wanted = match &wanted_artifact {
            Some(w) => *w == d.digest,
            None => is_file_artifact || is_evidence,
        };
        if !(wanted || at == media::IN_TOTO || at == media::COSIGN_SIG_ARTIFACT) {
            continue;
        }
        let fm = client
            .get_manifest(repo, &d.digest)
            .await?
            .with_context(|| format!("referrer {} is listed but missing", d.digest))?;
        let rm = parse_manifest(&fm.bytes, &d.digest)?;
        if rm.subject.as_ref().map(|s| s.digest.as_str()) != Some(image_digest.as_str()) {
            bail!("referrer {} is not about {image_digest}", d.digest);
        }
        match at {
            media::IN_TOTO => {
                let layer = rm.layers.first().context("provenance without a layer")?;
                let bytes = client.get_blob(repo, &layer.digest, MAX_SMALL_BLOB).await?;
                let env: Envelope = serde_json::from_slice(&bytes)
                    .context("the provenance is not a DSSE envelope")?;
                if wanted_artifact.is_none() {
                    let name = title(layer, "the provenance")?;
                    write_file(stage, &name, &bytes, &mut files)?;
                }
                envelope = Some(env);
            }
            media::COSIGN_SIG_ARTIFACT => {
                let layer = rm.layers.first().context("signature without a layer")?;
                let sig = layer
                    .annotations
                    .get(media::COSIGN_SIGNATURE_ANNOTATION)
                    .context("signature layer without its signature annotation")?
                    .clone();
                let payload = client.get_blob(repo, &layer.digest, 1 << 20).await?;
                signature = Some((payload, sig));
            }
            _ => fetch_files(client, repo, &rm, &d.digest, stage, &mut files).await?,
        }
    }
    let verified = match key {
        None => false,
        Some(k) => {
            verify(
                k,
                &image_digest,
                signature.as_ref(),
                envelope.as_ref(),
                &files,
            )?;
            true
        }
    };
    if !quiet {
        for (f, d) in &files {
            eprintln!("  {f:<40} sha256:{}", &d[..12]);
        }
    }
    Ok(PullReport {
        digest: top.digest,
        files,
        verified,
    })
}

/// Checks the image signature and the provenance with `key`, and that every
/// pulled file outside `oci/` is a subject of the provenance.
fn verify(
    key: &VerifyingKey,
    image_digest: &str,
    signature: Option<&(Vec<u8>, String)>,
    envelope: Option<&Envelope>,
    files: &[(String, String)],
) -> Result<()> {
    use base64::Engine;
    let (payload, sig) =
        signature.context("no signature of the image was published (publish with --key)")?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sig)
        .context("the image signature is not base64")?;
    if !key.verify(payload, &sig) {
        bail!(
            "the image signature does not verify with the given key (key id {})",
            key.key_id()
        );
    }
    if sign::simple_signing_digest(payload).as_deref() != Some(image_digest) {
        bail!("the signature is for another image than {image_digest}");
    }
    let env = envelope.context("no provenance was published")?;
    let statement = env.verify(key, "the provenance")?;
    let st: serde_json::Value =
        serde_json::from_slice(&statement).context("the provenance statement is not JSON")?;
    if st["_type"] != crate::publish::provenance::STATEMENT_TYPE
        || st["predicateType"] != crate::publish::provenance::SLSA_PREDICATE
    {
        bail!("the provenance is not an in-toto SLSA v1 statement");
    }
    let subjects: BTreeMap<String, Vec<String>> = st["subject"]
        .as_array()
        .context("the provenance has no subjects")?
        .iter()
        .filter_map(|s| {
            Some((
                s["digest"]["sha256"].as_str()?.to_string(),
                s["name"].as_str()?.to_string(),
            ))
        })
        .fold(BTreeMap::new(), |mut m, (d, n)| {
            m.entry(d).or_default().push(n);
            m
        });
    let hex = image_digest.trim_start_matches("sha256:");
    if !subjects.contains_key(hex) {
        bail!("the provenance does not name the image {image_digest}");
    }
    for (f, d) in files {
        if f.starts_with("oci/") || f.ends_with(".intoto.json") {
            continue;
        }
        if !subjects.get(d).is_some_and(|names| names.contains(f)) {
            bail!("{f} (sha256:{d}) is not a subject of the signed provenance");
        }
    }
    Ok(())
}

fn write_file(
    stage: &Path,
    rel: &str,
    bytes: &[u8],
    files: &mut Vec<(String, String)>,
) -> Result<()> {
    let p = stage.join(rel);
    if files.iter().any(|(f, _)| f == rel) {
        bail!("two published files are both named `{rel}`");
    }
    if let Some(d) = p.parent() {
        fs::create_dir_all(d)?;
    }
    fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
    files.push((
        rel.to_string(),
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)),
    ));
    Ok(())
}

/// The layers of an artifact, decompressed where they were compressed.
async fn fetch_files(
    client: &Client,
    repo: &str,
    m: &ImageManifest,
    digest: &str,
    stage: &Path,
    files: &mut Vec<(String, String)>,
) -> Result<()> {
    for layer in &m.layers {
        crate::registry::reference::check_digest(&layer.digest)
            .map_err(|e| anyhow::anyhow!("{digest}: {e}"))?;
        let name = title(layer, digest)?;
        if files.iter().any(|(f, _)| *f == name) {
            bail!("two published files are both named `{name}`");
        }
        let dest = stage.join(&name);
        if layer.media_type == media::DISK_RAW_ZSTD {
            let want = layer
                .annotations
                .get(media::UNCOMPRESSED_DIGEST)
                .context("compressed layer without its uncompressed digest")?;
            let size: u64 = layer
                .annotations
                .get(media::UNCOMPRESSED_SIZE)
                .and_then(|s| s.parse().ok())
                .context("compressed layer without its uncompressed size")?;
            let packed = stage.join(format!(".{name}.zst"));
            client
                .get_blob_to_file(repo, &layer.digest, layer.size, &packed)
                .await?;
            let got = unzstd(&packed, &dest, size)?;
            fs::remove_file(&packed).ok();
            if got != *want {
                bail!("{name}: decompresses to {got}, {want} expected");
            }
            files.push((name, want.trim_start_matches("sha256:").to_string()));
        } else {
            client
                .get_blob_to_file(repo, &layer.digest, layer.size, &dest)
                .await?;
            files.push((name, layer.digest.trim_start_matches("sha256:").to_string()));
        }
    }
    Ok(())
}

/// Decompresses `src` into `dest`, at most `limit` bytes; returns the digest.
fn unzstd(src: &Path, dest: &Path, limit: u64) -> Result<String> {
    let input = fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let dec = zstd::stream::read::Decoder::new(input).context("starting zstd")?;
    let out = fs::File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut w = crate::registry::HashWrite::new(io::BufWriter::new(out));
    let n = io::copy(&mut io::Read::take(dec, limit + 1), &mut w)
        .with_context(|| format!("decompressing into {}", dest.display()))?;
    if n != limit {
        bail!(
            "{}: decompresses to {n} bytes, {limit} expected",
            dest.display()
        );
    }
    let (buf, d) = w.finish();
    buf.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", dest.display()))?;
    Ok(d)
}

/// `oci/` as `build` writes it: the blobs, `index.json` tagging the
/// manifest `latest`, `oci-layout`.
async fn write_layout(
    client: &Client,
    repo: &str,
    manifest_bytes: &[u8],
    m: &ImageManifest,
    stage: &Path,
    files: &mut Vec<(String, String)>,
) -> Result<()> {
    let digest = crate::registry::sha256_digest(manifest_bytes);
    let blobs = stage.join("oci/blobs/sha256");
    fs::create_dir_all(&blobs)?;
    write_file(
        stage,
        &format!("oci/blobs/sha256/{}", &digest[7..]),
        manifest_bytes,
        files,
    )?;
    for d in std::iter::once(&m.config).chain(&m.layers) {
        crate::registry::reference::check_digest(&d.digest)
            .map_err(|e| anyhow::anyhow!("{digest}: {e}"))?;
        let hex = &d.digest[7..];
        let rel = format!("oci/blobs/sha256/{hex}");
        if files.iter().any(|(f, _)| *f == rel) {
            continue;
        }
        client
            .get_blob_to_file(repo, &d.digest, d.size, &stage.join(&rel))
            .await?;
        files.push((rel, hex.to_string()));
    }
    let index = oci::Index {
        schema_version: 2,
        media_type: oci::MEDIA_INDEX.into(),
        manifests: vec![oci::Descriptor {
            media_type: oci::MEDIA_MANIFEST.into(),
            digest: digest.clone(),
            size: manifest_bytes.len() as u64,
            annotations: BTreeMap::from([(oci::REF_NAME.to_string(), "latest".to_string())]),
        }],
    };
    let index = serde_json::to_vec(&index).expect("index serialises");
    write_file(stage, "oci/index.json", &index, files)?;
    write_file(
        stage,
        "oci/oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        files,
    )?;
    Ok(())
}
