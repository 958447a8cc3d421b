//! `imgbuild publish RECIPE [REF]`: the image in `out/RECIPE/`, its image
//! files as OCI artifacts and its evidence (lock, SBOMs, signed provenance,
//! signature) as referrers, to an OCI registry.
//!
//! Order: blobs before their manifests, the image before what refers to it,
//! the referrers tag index (when the registry has no referrers API) after
//! the referrers, and the user-visible tags last, so a tag only ever points
//! at a complete publication. Every blob is HEADed first: publishing the
//! same outputs again sends nothing.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;

use crate::lock::Lockfile;
use crate::ops::solve::lock_path;
use crate::publish::plan::{self, Document, merged_referrers};
use crate::publish::sign::SigningKey;
use crate::publish::{Plan, PlanOptions, media};
use crate::recipe::Recipe;
use crate::registry::{BlobOutcome, Client, Reference, TransportOptions, auth};

/// The arguments of `imgbuild publish`.
#[derive(Debug, Clone, Default)]
pub struct PublishArgs {
    /// Recipe name or path.
    pub recipe: String,
    /// The project directory.
    pub workspace: PathBuf,
    /// `--out DIR` (default `<workspace>/out`).
    pub out: Option<PathBuf>,
    /// `HOST[:PORT]/REPO[:TAG]`, or a repository name joined to `registry`.
    pub target: Option<String>,
    /// `IMGBUILD_REGISTRY`: `HOST[:PORT]` used when `target` has no host.
    pub registry: Option<String>,
    /// `--tag`s.
    pub tags: Vec<String>,
    /// `--key`: PEM private key signing the provenance and the image.
    pub key: Option<PathBuf>,
    /// `--mount-from REPO`: a repository of the same registry to mount blobs from.
    pub mount_from: Option<String>,
    /// Registry connection options.
    pub transport: TransportOptions,
    /// `--revision`; default: the workspace's `git rev-parse HEAD`, if any.
    pub revision: Option<String>,
    /// Blobs larger than this go in chunks (default 32 MiB).
    pub monolithic_limit: Option<u64>,
    /// Chunk size (default 16 MiB).
    pub chunk_size: Option<u64>,
    /// No progress output.
    pub quiet: bool,
    /// `--no-build`: publish `out/RECIPE/` as it is (else `build` runs
    /// first, which does nothing when the outputs are up to date).
    pub no_build: bool,
    /// `--vendor DIR` for that build.
    pub vendor: Option<PathBuf>,
    /// `--no-scripts` for that build.
    pub no_scripts: bool,
    /// `--attach FILE`s: published as referrers of the image (artifact type
    /// `application/vnd.imgbuild.attachment.v1`) and subjects of the provenance.
    pub attach: Vec<PathBuf>,
}

/// What a publication did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PublishReport {
    /// `HOST[:PORT]/REPO`.
    pub repository: String,
    /// `sha256:…` of the image manifest.
    pub digest: String,
    /// Tags pointing at it.
    pub tags: Vec<String>,
    /// Bytes of blobs and manifests sent.
    pub uploaded_bytes: u64,
    /// Blobs sent / already there / mounted.
    pub blobs_uploaded: usize,
    /// Blobs already in the repository.
    pub blobs_present: usize,
    /// Blobs mounted from `--mount-from`.
    pub blobs_mounted: usize,
    /// Artifacts (image files) published.
    pub artifacts: usize,
    /// Referrers (lock, SBOMs, provenance, signature) published.
    pub referrers: usize,
    /// `referrers API` or `tag schema sha256-…`.
    pub referrers_via: String,
    /// Whether the provenance and the image are signed.
    pub signed: bool,
    /// Seconds.
    pub seconds: f64,
}

impl std::fmt::Display for PublishReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Published {}@{}", self.repository, self.digest)?;
        writeln!(
            f,
            "  {} artifacts, {} referrers ({}){}",
            self.artifacts,
            self.referrers,
            self.referrers_via,
            if self.signed {
                ", signed"
            } else {
                ", unsigned"
            }
        )?;
        writeln!(f, "  tags: {}", self.tags.join(", "))?;
        write!(
            f,
            "  uploaded {} bytes ({} blobs sent, {} already there, {} mounted) in {:.1}s",
            self.uploaded_bytes,
            self.blobs_uploaded,
            self.blobs_present,
            self.blobs_mounted,
            self.seconds
        )
    }
}

/// Where to publish: the reference and the tag it names, if any.
pub fn resolve_target(
    target: Option<&str>,
    registry: Option<&str>,
    recipe: &Recipe,
) -> Result<Reference> {
    let repo_default = recipe
        .publish
        .repository
        .clone()
        .unwrap_or_else(|| recipe.name.clone());
    let joined =
        |reg: &str, rest: &str| Reference::parse(&format!("{}/{rest}", reg.trim_end_matches('/')));
    let r = match (target, registry) {
        (Some(t), reg) => match Reference::parse(t) {
            Ok(r) => r,
            Err(e) => match reg {
                Some(reg) => joined(reg, t)?,
                None => return Err(e.into()),
            },
        },
        (None, Some(reg)) => joined(reg, &repo_default)?,
        (None, None) => bail!(
            "no registry: give REF (HOST[:PORT]/REPO[:TAG]) or set IMGBUILD_REGISTRY=HOST[:PORT] (the registry is configuration, never in the recipe)"
        ),
    };
    if r.digest.is_some() {
        bail!("publish to a tag or repository, not a digest: `{r}`");
    }
    Ok(r)
}

fn git_revision(workspace: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(workspace)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && s.len() == 40).then_some(s)
}

/// Runs the publication. Must not be called from inside a tokio runtime.
pub fn run(args: &PublishArgs) -> Result<PublishReport> {
    let started = Instant::now();
    let recipe = Recipe::load(&args.workspace, &args.recipe)?;
    let lpath = lock_path(&args.workspace, &recipe);
    if !lpath.is_file() {
        bail!(
            "{} does not exist: run `imgbuild solve {}` and `imgbuild build {}` first",
            lpath.display(),
            recipe.name,
            recipe.name
        );
    }
    let lock = Lockfile::read(&lpath)?;
    if let Some(why) = lock.is_stale_for(&recipe) {
        bail!(
            "{} is stale: {why}; run `imgbuild solve {}` and `imgbuild build {}`",
            lpath.display(),
            recipe.name,
            recipe.name
        );
    }
    let target = resolve_target(args.target.as_deref(), args.registry.as_deref(), &recipe)?;
    let out_root = args
        .out
        .clone()
        .unwrap_or_else(|| args.workspace.join("out"));
    let out_dir = out_root.join(&recipe.name);
    if !args.no_build {
        build_first(args, &out_dir)?;
    }
    let key = args
        .key
        .as_deref()
        .map(SigningKey::from_pem_file)
        .transpose()?;
    let out_root = args
        .out
        .clone()
        .unwrap_or_else(|| args.workspace.join("out"));
    let out_dir = out_root.join(&recipe.name);
    let mut extra_tags = Vec::new();
    if let Some(t) = &target.tag {
        extra_tags.push(t.clone());
    }
    for t in &args.tags {
        crate::registry::reference::check_tag(t).map_err(|e| anyhow::anyhow!("--tag: {e}"))?;
        extra_tags.push(t.clone());
    }
    let repository = format!("{}/{}", target.registry, target.repository);
    let revision = args
        .revision
        .clone()
        .or_else(|| git_revision(&args.workspace));
    let publication = Plan::make(&PlanOptions {
        out_dir: &out_dir,
        recipe: &recipe,
        lock: &lock,
        lock_path: &lpath,
        repository: repository.clone(),
        extra_tags,
        revision,
        key: key.as_ref(),
        cache_dir: out_root.join(".publish-cache"),
        attachments: &args.attach,
    })?;

    let creds = auth::lookup(&target.registry)?;
    let mut client = Client::new(&target.registry, &args.transport, creds)?;
    if let Some(n) = args.monolithic_limit {
        client.monolithic_limit = n;
    }
    if let Some(n) = args.chunk_size {
        client.chunk_size = n.max(1);
    }
    if !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {decimal_bytes} sent {decimal_bytes_per_sec}",
            )
            .expect("static template"),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        client.set_progress(bar);
    }
    let report = crate::http::block_on(push(&client, &target, &publication, args, key.is_some()))??;
    client.progress().finish_and_clear();
    let mut report = report;
    report.repository = repository;
    report.seconds = started.elapsed().as_secs_f64();
    if !args.quiet {
        eprintln!("{report}");
    }
    Ok(report)
}

/// Runs `build` so that the outputs are those of the lock, keeping the
/// rootfs compression and SOURCE_DATE_EPOCH of outputs already there (so an
/// up-to-date `out/RECIPE/` is left alone).
fn build_first(args: &PublishArgs, out_dir: &Path) -> Result<()> {
    let existing = crate::image::Manifest::read(out_dir).ok();
    let compression = existing
        .as_ref()
        .and_then(|m| {
            m.artifacts
                .iter()
                .find(|a| a.path.starts_with("rootfs.tar"))
        })
        .map_or(crate::pack::Compression::None, |a| {
            crate::pack::Compression::from_file_name(&a.path)
        });
    let source_date_epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .or(existing.as_ref().map(|m| m.source_date_epoch));
    crate::ops::build::run(&crate::ops::build::BuildArgs {
        recipe: args.recipe.clone(),
        workspace: args.workspace.clone(),
        vendor: args.vendor.clone(),
        out: args.out.clone(),
        source_date_epoch,
        quiet: args.quiet,
        compression,
        no_scripts: args.no_scripts,
        ..Default::default()
    })
    .context("building before publishing (--no-build publishes out/ as it is)")?;
    Ok(())
}

/// Blobs uploaded, and documents pushed after the image, at once: a
/// publication is a few small documents beside one large layer, so a warm
/// push is bound by round trips.
const AT_ONCE: usize = 4;

#[derive(Default)]
struct Counts {
    uploaded: usize,
    present: usize,
    mounted: usize,
}

/// One document pushed.
struct Pushed {
    put: crate::registry::PutManifest,
    counts: Counts,
    /// Bytes sent for it: its blobs' and its manifest's.
    sent: u64,
}

/// Uploads every distinct blob of `docs` once (each `HEAD`ed first),
/// [`AT_ONCE`] at a time, before any manifest names one: documents share
/// blobs (every artifact's empty config), and two uploads of one blob at
/// once left a registry (distribution, behind token auth) without it when a
/// manifest then named it. Returns, per document, what its blobs cost (a
/// shared blob counted with the first document that names it).
async fn push_blobs(
    client: &Client,
    repo: &str,
    docs: &[&Document],
    mount_from: Option<&str>,
) -> Result<Vec<(Counts, u64)>> {
    use futures_util::TryStreamExt;
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<(usize, &crate::publish::plan::Blob)> = docs
        .iter()
        .enumerate()
        .flat_map(|(i, doc)| doc.blobs.iter().map(move |b| (i, b)))
        .filter(|(_, b)| seen.insert(b.descriptor.digest.as_str()))
        .collect();
    let outcomes: Vec<(usize, BlobOutcome)> = futures_util::stream::iter(unique)
        .map(|(i, b)| async move {
            let d = &b.descriptor;
            client
                .push_blob(repo, &d.digest, d.size, &b.source, mount_from)
                .await
                .with_context(|| format!("uploading {} blob {}", docs[i].what, d.digest))
                .map(|outcome| (i, outcome))
        })
        .buffer_unordered(AT_ONCE)
        .try_collect()
        .await?;
    let mut costs: Vec<(Counts, u64)> = docs.iter().map(|_| (Counts::default(), 0)).collect();
    for (i, outcome) in outcomes {
        let (counts, sent) = &mut costs[i];
        match outcome {
            BlobOutcome::Present => counts.present += 1,
            BlobOutcome::Mounted => counts.mounted += 1,
            BlobOutcome::Uploaded(n) => {
                counts.uploaded += 1;
                *sent += n;
            }
        }
    }
    Ok(costs)
}

/// Pushes `doc`'s manifest (its blobs are there; what they cost is given).
async fn push_manifest(
    client: &Client,
    repo: &str,
    doc: &Document,
    (counts, mut sent): (Counts, u64),
) -> Result<Pushed> {
    let put = client
        .put_manifest(repo, &doc.descriptor.digest, media::MANIFEST, &doc.bytes)
        .await
        .with_context(|| format!("pushing the {} manifest", doc.what))?;
    if put.sent {
        sent += doc.bytes.len() as u64;
    }
    Ok(Pushed { put, counts, sent })
}

impl Counts {
    fn add(&mut self, pushed: &Pushed, doc: &Document, quiet: bool) {
        self.uploaded += pushed.counts.uploaded;
        self.present += pushed.counts.present;
        self.mounted += pushed.counts.mounted;
        if !quiet {
            eprintln!(
                "  {:<28} {}  {}",
                doc.what,
                &doc.descriptor.digest[..19],
                if pushed.sent == 0 {
                    "already there".to_string()
                } else {
                    format!("{} bytes sent", pushed.sent)
                }
            );
        }
    }
}

async fn push(
    client: &Client,
    target: &Reference,
    p: &crate::publish::Publication,
    args: &PublishArgs,
    signed: bool,
) -> Result<PublishReport> {
    let repo = target.repository.as_str();
    client
        .ping(repo, true)
        .await
        .with_context(|| format!("connecting to {}", target.registry))?;
    if !args.quiet {
        eprintln!("Publishing {} to {}/{repo}…", p.image.what, target.registry);
    }
    let mut counts = Counts::default();
    let mount = args.mount_from.as_deref();
    let docs: Vec<&Document> = std::iter::once(&p.image)
        .chain(&p.artifacts)
        .chain(&p.referrers)
        .collect();
    let mut costs = push_blobs(client, repo, &docs, mount).await?.into_iter();
    let image = push_manifest(client, repo, &p.image, costs.next().expect("the image's")).await?;
    counts.add(&image, &p.image, args.quiet);
    // The artifacts and referrers name the image as their subject: they go
    // once it is there, several at once, reported in order.
    let mut api = false;
    let rest = &docs[1..];
    let mut pushes = futures_util::stream::iter(rest.iter().copied().zip(costs))
        .map(|(doc, cost)| push_manifest(client, repo, doc, cost))
        .buffered(AT_ONCE);
    let mut next = rest.iter();
    while let Some(pushed) = pushes.next().await {
        let pushed = pushed?;
        counts.add(&pushed, next.next().expect("one per document"), args.quiet);
        api |= pushed.put.subject_indexed;
    }
    let subject = &p.image.descriptor.digest;
    if !api {
        api = client.referrers(repo, subject).await?.is_some();
    }
    let fallback_tag = subject.replace(':', "-");
    let referrers_via = if api {
        "referrers API".to_string()
    } else {
        // The registry keeps no referrers list: maintain the tag schema's
        // index, merged with what other tools put there.
        let existing = client.get_manifest(repo, &fallback_tag).await?;
        let descs: Vec<plan::Descriptor> = p
            .artifacts
            .iter()
            .chain(&p.referrers)
            .map(|d| d.descriptor.clone())
            .collect();
        if let Some(bytes) = merged_referrers(existing.as_ref().map(|m| m.bytes.as_slice()), &descs)
        {
            client
                .put_manifest(repo, &fallback_tag, media::INDEX, &bytes)
                .await
                .context("updating the referrers tag index")?;
        }
        format!("tag schema {}", &fallback_tag[..19])
    };
    // The image's tags last, so that whoever follows one finds the rest.
    futures_util::future::try_join_all(
        p.referrers
            .iter()
            .filter_map(|doc| Some(move_tag(client, repo, doc.tag.as_deref()?, doc))),
    )
    .await?;
    futures_util::future::try_join_all(
        p.tags
            .iter()
            .map(|tag| move_tag(client, repo, tag, &p.image)),
    )
    .await?;
    Ok(PublishReport {
        repository: String::new(),
        digest: subject.clone(),
        tags: p.tags.clone(),
        uploaded_bytes: client.uploaded(),
        blobs_uploaded: counts.uploaded,
        blobs_present: counts.present,
        blobs_mounted: counts.mounted,
        artifacts: p.artifacts.len(),
        referrers: p.referrers.len(),
        referrers_via,
        signed,
        seconds: 0.0,
    })
}

/// Points `tag` at `doc` unless it already does.
async fn move_tag(client: &Client, repo: &str, tag: &str, doc: &Document) -> Result<()> {
    if client.tag_digest(repo, tag).await?.as_deref() == Some(doc.descriptor.digest.as_str()) {
        return Ok(());
    }
    client
        .put_manifest(repo, tag, media::MANIFEST, &doc.bytes)
        .await
        .with_context(|| format!("tagging {} as `{tag}`", doc.what))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(publish: &str) -> Recipe {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.pgp"), b"key").unwrap();
        let text = format!(
            "architecture = \"amd64\"\n[[source]]\nname = \"main\"\nurl = \"http://127.0.0.1:9/d\"\nsuite = \"bookworm\"\ncomponents = [\"main\"]\nkeyring = \"k.pgp\"\n{publish}"
        );
        Recipe::parse_str(&text, &dir.path().join("img.toml")).unwrap()
    }

    #[test]
    fn targets_come_from_the_reference_or_the_registry_setting() {
        let plain = recipe("");
        let named = recipe("[publish]\nrepository = \"team/nos\"\n");
        let r = resolve_target(Some("127.0.0.1:5000/x:1"), Some("other:1"), &plain).unwrap();
        assert_eq!(r.to_string(), "127.0.0.1:5000/x:1");
        let r = resolve_target(Some("x:2"), Some("reg.test:5000"), &plain).unwrap();
        assert_eq!(r.to_string(), "reg.test:5000/x:2");
        let r = resolve_target(None, Some("reg.test:5000"), &named).unwrap();
        assert_eq!(r.to_string(), "reg.test:5000/team/nos");
        let r = resolve_target(None, Some("reg.test"), &plain).unwrap();
        assert_eq!(r.repository, "img");
        let e = resolve_target(None, None, &named).unwrap_err().to_string();
        assert!(e.contains("IMGBUILD_REGISTRY"), "{e}");
        let e = resolve_target(Some("x"), None, &plain)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no registry host"), "{e}");
        let d = format!("reg.test/x@sha256:{}", "a".repeat(64));
        assert!(resolve_target(Some(&d), None, &plain).is_err());
    }
}
