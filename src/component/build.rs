//! Building a component: its locked build closure assembled into a build
//! root (real dpkg, maintainer scripts run, as for the image), the source
//! unpacked at `/build/src`, the recipe's `build` commands run there one by
//! one (`sh -ec`) in the sandbox — no network, fixed environment and time —
//! and the files left in `DESTDIR` packed into a generated `.deb`
//! ([`super::package`]).
//!
//! The `.deb` is cached under a key that hashes every input (the
//! component's recipe entry, its locked source and closure, the epoch, the
//! architecture and this imgbuild's version), in
//! `<rootfs cache>/@components/NAME/<key>.tar` (the name is the cache's; the
//! content is the .deb): a changed build script rebuilds that component
//! only. It is then put into the vendor store (content-addressed) so the
//! image assembly installs it like any locked package.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::ComponentError;
use super::package::{Control, list_files, write_deb};
use crate::fetch::Store;
use crate::lock::{LockedComponent, LockedEdge, LockedPackage, Lockfile};
use crate::recipe::{Component, ComponentSource, Recipe, component::glob_match};
use crate::rootfs::cache::RootfsCache;
use crate::rootfs::{self, AssembleOptions};
use crate::sandbox::{self, SandboxSpec, Status, Stream};

/// Bump when the generated package changes for the same inputs.
const KEY_FORMAT: &str = "imgbuild-component-key v1";

/// Time bound of one build command (bmv2 takes most of an hour on 2 cores).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// The recipe `source` name of generated packages in the build's lock.
pub const SOURCE_NAME: &str = "@component";

/// Where and how components are built.
#[derive(Debug, Clone)]
pub struct BuildContext<'a> {
    /// The vendor store (sources, closures; receives the generated .debs).
    pub store: &'a Store,
    /// The rootfs cache directory (`@components/` is made inside it).
    pub cache_dir: &'a Path,
    /// Where build roots are made (temp directories, removed after).
    pub work: &'a Path,
    /// SOURCE_DATE_EPOCH of the build.
    pub source_date_epoch: i64,
    /// `JOBS` the build sees.
    pub jobs: usize,
    /// No progress lines.
    pub quiet: bool,
}

/// One component, built or taken from the cache.
#[derive(Debug, Clone)]
pub struct Built {
    /// The generated package as a lock entry (source [`SOURCE_NAME`]).
    pub package: LockedPackage,
    /// Its files (absolute paths in the image), for the ELF check.
    pub files: Vec<String>,
    /// Whether it came from the cache.
    pub cached: bool,
    /// Wall time of the build (0 when cached).
    pub seconds: f64,
}

/// `sha256:<hex>` of everything a component's package depends on.
pub fn component_key(c: &Component, locked: &LockedComponent, epoch: i64, arch: &str) -> String {
    let spec = serde_json::to_string(c).expect("plain data serializes");
    let mut closure: Vec<String> = locked
        .packages
        .iter()
        .map(|p| format!("{} {} {} {}", p.name, p.version, p.architecture, p.sha256))
        .collect();
    closure.sort();
    let text = format!(
        "{KEY_FORMAT}\nimgbuild={}\nspec={spec}\nversion={}\nsource={} {}\nclosure={}\nepoch={epoch}\narch={arch}\n",
        env!("CARGO_PKG_VERSION"),
        locked.version,
        locked.sha256,
        locked.size,
        closure.join(","),
    );
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

fn other(name: &str, reason: impl std::fmt::Display) -> ComponentError {
    ComponentError::Other {
        component: name.to_string(),
        reason: reason.to_string(),
    }
}

/// Builds (or takes from the cache) every component of `recipe` and adds
/// its generated package to `lock` (in memory: the lock file is not
/// changed), so that the image assembly, `packages.txt` and the SBOM see
/// them like any package. Returns what was built, in recipe order.
pub fn add_components(
    recipe: &Recipe,
    lock: &mut Lockfile,
    ctx: &BuildContext<'_>,
) -> Result<Vec<Built>, ComponentError> {
    let mut out = Vec::new();
    for c in &recipe.components {
        let locked = lock
            .components
            .iter()
            .find(|l| l.name == c.name)
            .ok_or_else(|| ComponentError::Lock {
                component: c.name.clone(),
                reason: format!("not in the lock: run `imgbuild solve {}`", recipe.name),
            })?
            .clone();
        if lock.packages.iter().any(|p| p.name == c.name) {
            return Err(ComponentError::Lock {
                component: c.name.clone(),
                reason: "a package of the image has the same name; rename the component".into(),
            });
        }
        let mut built = build_one(c, &locked, lock, &recipe.architecture, ctx)?;
        built.package.depends = edges(c, lock);
        lock.packages.push(built.package.clone());
        out.push(built);
    }
    lock.sort_packages();
    Ok(out)
}

/// Builds every component of `recipe` again, from scratch, into the cache
/// at `ctx.cache_dir` (a fresh one: nothing is reused), and compares each
/// package with the one in `lock` (a lock [`add_components`] extended):
/// the reproducibility check of `imgbuild verify`. An error names each
/// component whose package differs.
pub fn verify_rebuild(
    recipe: &Recipe,
    lock: &Lockfile,
    ctx: &BuildContext<'_>,
) -> Result<(), ComponentError> {
    let mut plain = lock.clone();
    plain.packages.retain(|p| p.source != SOURCE_NAME);
    let again = add_components(recipe, &mut plain, ctx)?;
    let mut differ = Vec::new();
    for b in &again {
        let first = lock
            .packages
            .iter()
            .find(|p| p.source == SOURCE_NAME && p.name == b.package.name);
        if first.map(|p| &p.sha256) != Some(&b.package.sha256) {
            differ.push(format!(
                "{}: {} then {}",
                b.package.name,
                first.map_or("-", |p| p.sha256.as_str()),
                b.package.sha256
            ));
        }
    }
    if differ.is_empty() {
        return Ok(());
    }
    Err(ComponentError::Other {
        component: differ
            .iter()
            .map(|d| d.split(':').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(", "),
        reason: format!(
            "not reproducible: two builds gave different packages: {}",
            differ.join("; ")
        ),
    })
}

/// The generated package's edges: each `depends` relation to the first of
/// its alternatives that the lock has (the solve put it there).
fn edges(c: &Component, lock: &Lockfile) -> Vec<LockedEdge> {
    c.depends
        .iter()
        .filter_map(|r| {
            let text = r.dependency.to_string();
            let name = text
                .split('|')
                .map(|alt| {
                    alt.split([' ', '(', ':'])
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_string()
                })
                .find(|n| lock.packages.iter().any(|p| p.name == *n))?;
            Some(LockedEdge {
                name,
                relation: text,
                kind: "depends".into(),
            })
        })
        .collect()
}

/// One component: from the cache when its key is there, else built.
fn build_one(
    c: &Component,
    locked: &LockedComponent,
    lock: &Lockfile,
    arch: &str,
    ctx: &BuildContext<'_>,
) -> Result<Built, ComponentError> {
    let key = component_key(c, locked, ctx.source_date_epoch, arch);
    let cache = RootfsCache::new(&ctx.cache_dir.join("@components"));
    let started = Instant::now();
    let mut files = Vec::new();
    let (deb, cached) = match cache.get(&c.name, &key) {
        Some(deb) => (deb, true),
        None => {
            if !ctx.quiet {
                eprintln!(
                    "Building component {} {} ({})…",
                    c.name,
                    locked.version,
                    c.source_label()
                );
            }
            let deb = cache.insert_with(&c.name, &key, |w| -> Result<(), ComponentError> {
                files = build_tree(c, locked, lock, arch, ctx, w)?;
                Ok(())
            })?;
            (deb, false)
        }
    };
    let (sha256, size) = crate::core::digest::hash_file(&deb).map_err(ComponentError::io(&deb))?;
    if files.is_empty() {
        files = deb_files(&deb)?;
    }
    if !ctx.store.contains(&sha256, size) {
        ctx.store.create_dirs().map_err(|e| other(&c.name, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(".component-deb-")
            .tempfile_in(ctx.store.tmp_dir())
            .map_err(ComponentError::io(&ctx.store.tmp_dir()))?;
        fs::copy(&deb, tmp.path()).map_err(ComponentError::io(tmp.path()))?;
        let kept = tmp
            .into_temp_path()
            .keep()
            .map_err(|e| ComponentError::Io {
                path: ctx.store.tmp_dir(),
                source: e.error,
            })?;
        ctx.store
            .commit(&kept, &sha256)
            .map_err(|e| other(&c.name, e))?;
    }
    Ok(Built {
        package: LockedPackage {
            name: c.name.clone(),
            version: locked.version.clone(),
            architecture: arch.to_string(),
            source: SOURCE_NAME.into(),
            filename: format!("components/{}_{}_{arch}.deb", c.name, locked.version),
            size,
            sha256,
            reason: Some("recipe".into()),
            depends: Vec::new(),
        },
        files,
        cached,
        seconds: if cached {
            0.0
        } else {
            started.elapsed().as_secs_f64()
        },
    })
}

/// The file list of a generated .deb (its md5sums cover regular files;
/// the ELF check needs no more).
fn deb_files(deb: &Path) -> Result<Vec<String>, ComponentError> {
    let control = crate::deb::read_control(deb).map_err(|e| ComponentError::Io {
        path: deb.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let md5 = String::from_utf8_lossy(control.md5sums().unwrap_or_default()).into_owned();
    Ok(md5
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(_, p)| format!("/{p}")))
        .collect())
}

/// Assembles the build root, runs the build and writes the .deb to `w`;
/// the files it installs.
fn build_tree(
    c: &Component,
    locked: &LockedComponent,
    lock: &Lockfile,
    arch: &str,
    ctx: &BuildContext<'_>,
    w: &mut impl std::io::Write,
) -> Result<Vec<String>, ComponentError> {
    fs::create_dir_all(ctx.work).map_err(ComponentError::io(ctx.work))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".component-{}-", c.name))
        .tempdir_in(ctx.work)
        .map_err(ComponentError::io(ctx.work))?;
    let root = tmp.path().join("root");
    make_dir(&root)?;
    let opts = AssembleOptions {
        source_date_epoch: ctx.source_date_epoch,
        hostname: String::new(),
        run_scripts: true,
    };
    rootfs::assemble(&locked.build_lock(lock), ctx.store, &root, &opts)
        .map_err(|e| other(&c.name, format!("assembling the build root: {e}")))?;
    let src = root.join("build/src");
    let dest = root.join("build/dest");
    make_dir(&root.join("build"))?;
    make_dir(&src)?;
    make_dir(&dest)?;
    let blob = ctx.store.path_of(&locked.sha256);
    match &c.source {
        ComponentSource::Git { .. } => {
            let devices = rootfs::cache::restore(&blob, &src)
                .map_err(|e| other(&c.name, format!("unpacking the source: {e}")))?;
            // An exported git tree holds no device nodes (git cannot store them).
            if let Some(d) = devices.first() {
                return Err(other(
                    &c.name,
                    format!("the source tree holds a device node: {}", d.path),
                ));
            }
        }
        ComponentSource::Tarball { .. } => unpack_tarball(&c.name, &blob, &src)?,
    }
    let env = vec![
        ("DESTDIR".to_string(), "/build/dest".to_string()),
        ("PREFIX".to_string(), c.prefix.clone()),
        ("JOBS".to_string(), ctx.jobs.max(1).to_string()),
        ("HOME".to_string(), "/root".to_string()),
    ];
    for (i, command) in c.build.iter().enumerate() {
        if !ctx.quiet {
            eprintln!("  [{}] $ {command}", c.name);
        }
        // stderr into stdout, so the output keeps its order in the log.
        let script = format!("exec 2>&1\n{command}");
        let mut spec = SandboxSpec::new(&root, ["/bin/sh", "-ec", script.as_str()]);
        spec.cwd = PathBuf::from("/build/src");
        spec.env = env.clone();
        spec.source_date_epoch = u64::try_from(ctx.source_date_epoch).unwrap_or(0);
        spec.stdout = Stream::Capture;
        spec.stderr = Stream::Capture;
        spec.timeout = Some(COMMAND_TIMEOUT);
        let started = Instant::now();
        let out = sandbox::run(&spec)
            .map_err(|e| other(&c.name, format!("build command {}: {e}", i + 1)))?;
        if !ctx.quiet {
            eprintln!("  [{}]   {:.1}s", c.name, started.elapsed().as_secs_f64());
        }
        if out.status != Status::Exited(0) {
            let how = match out.status {
                Status::Exited(n) => format!("exited with status {n}"),
                Status::Signaled(s) => format!("was killed by signal {s}"),
                Status::TimedOut => format!("timed out after {COMMAND_TIMEOUT:?}"),
            };
            // The whole output, kept outside `out/` for a post-mortem.
            let log = ctx.work.join(format!("{}.build.log", c.name));
            let kept = crate::core::atomic::write_atomic(
                &log,
                &[out.stdout.as_slice(), out.stderr.as_slice()].concat(),
                0o644,
                crate::core::atomic::Durability::Atomic,
            )
            .is_ok();
            let full = if kept {
                format!("\n(full output: {})", log.display())
            } else {
                String::new()
            };
            return Err(other(
                &c.name,
                format!(
                    "build command {} `{command}` ({}) {how}; last output:\n{}{full}",
                    i + 1,
                    c.origin,
                    tail(&out.stdout, &out.stderr)
                ),
            ));
        }
    }
    filter(&dest, &c.install)?;
    let files = list_files(&dest)?;
    if files.is_empty() {
        return Err(other(
            &c.name,
            format!(
                "the build installed nothing into $DESTDIR{} ({})",
                if c.install.is_empty() {
                    ""
                } else {
                    " matching `install`"
                },
                c.origin
            ),
        ));
    }
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o755))
        .map_err(ComponentError::io(&dest))?;
    let details = match (&locked.git, &locked.commit, &locked.url) {
        (Some(g), Some(commit), _) => {
            vec![format!("Built by imgbuild from {g} at commit {commit}.")]
        }
        (_, _, Some(u)) => vec![format!(
            "Built by imgbuild from {u} (sha256 {}).",
            locked.sha256
        )],
        _ => Vec::new(),
    };
    let control = Control {
        name: c.name.clone(),
        version: locked.version.clone(),
        architecture: arch.to_string(),
        depends: c
            .depends
            .iter()
            .map(|r| r.dependency.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        summary: format!("{} built from source", c.name),
        details,
    };
    write_deb(&control, &dest, ctx.source_date_epoch, w)?;
    Ok(files)
}

/// The last 40 lines of a failed command's stdout and stderr.
fn tail(stdout: &[u8], stderr: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(stderr));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn make_dir(p: &Path) -> Result<(), ComponentError> {
    fs::create_dir(p).map_err(ComponentError::io(p))?;
    fs::set_permissions(p, fs::Permissions::from_mode(0o755)).map_err(ComponentError::io(p))
}

/// Removes what `install` does not match (then empty directories).
fn filter(dest: &Path, install: &[String]) -> Result<(), ComponentError> {
    if install.is_empty() {
        return Ok(());
    }
    for f in list_files(dest)? {
        let rel = &f[1..];
        if !install.iter().any(|g| glob_match(g, rel)) {
            let p = dest.join(rel);
            fs::remove_file(&p).map_err(ComponentError::io(&p))?;
        }
    }
    prune_empty(dest)?;
    Ok(())
}

/// Removes empty directories below `dir` (not `dir` itself); whether `dir` is now empty.
fn prune_empty(dir: &Path) -> Result<bool, ComponentError> {
    let mut empty = true;
    for entry in fs::read_dir(dir).map_err(ComponentError::io(dir))? {
        let entry = entry.map_err(ComponentError::io(dir))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(ComponentError::io(&path))?;
        if meta.is_dir() && prune_empty(&path)? {
            fs::remove_dir(&path).map_err(ComponentError::io(&path))?;
        } else {
            empty = false;
        }
    }
    Ok(empty)
}

/// Unpacks a tarball (plain, gzip, xz, bzip2 or zstd, told by its magic)
/// into `dest`, dropping a single top-level directory; entries that would
/// leave `dest` are refused by the tar crate's `unpack_in`.
fn unpack_tarball(name: &str, tarball: &Path, dest: &Path) -> Result<(), ComponentError> {
    use std::io::Read;
    let open = || -> Result<Box<dyn Read>, ComponentError> {
        let mut f = fs::File::open(tarball).map_err(ComponentError::io(tarball))?;
        let mut magic = [0u8; 6];
        let n = f.read(&mut magic).map_err(ComponentError::io(tarball))?;
        let f = fs::File::open(tarball).map_err(ComponentError::io(tarball))?;
        let r = std::io::BufReader::new(f);
        Ok(match &magic[..n.min(6)] {
            [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(r)),
            [0xfd, b'7', b'z', b'X', b'Z', 0] => Box::new(liblzma::read::XzDecoder::new(r)),
            [b'B', b'Z', b'h', ..] => Box::new(bzip2::read::BzDecoder::new(r)),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => {
                Box::new(zstd::stream::read::Decoder::new(r).map_err(ComponentError::io(tarball))?)
            }
            _ => Box::new(r),
        })
    };
    // First pass: the common top-level directory, if there is exactly one.
    let mut tops = std::collections::BTreeSet::new();
    let mut archive = tar::Archive::new(open()?);
    for e in archive.entries().map_err(ComponentError::io(tarball))? {
        let e = e.map_err(ComponentError::io(tarball))?;
        let p = e.path().map_err(ComponentError::io(tarball))?.into_owned();
        if let Some(first) = p
            .components()
            .find(|c| matches!(c, std::path::Component::Normal(_)))
        {
            tops.insert(first.as_os_str().to_owned());
        }
    }
    let strip = if tops.len() == 1 {
        tops.into_iter().next()
    } else {
        None
    };
    let mut archive = tar::Archive::new(open()?);
    archive.set_preserve_permissions(true);
    for e in archive.entries().map_err(ComponentError::io(tarball))? {
        let mut e = e.map_err(ComponentError::io(tarball))?;
        let p = e.path().map_err(ComponentError::io(tarball))?.into_owned();
        let rel: PathBuf = match &strip {
            Some(_) => p
                .components()
                .skip_while(|c| !matches!(c, std::path::Component::Normal(_)))
                .skip(1)
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect(),
            None => p.clone(),
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let target = dest.join(&rel);
        if rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
            || rel.is_absolute()
        {
            return Err(other(
                name,
                format!("tarball entry {} leaves the source tree", p.display()),
            ));
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(ComponentError::io(parent))?;
            // A symlink unpacked earlier must not lead the write out of the tree.
            let real = fs::canonicalize(parent).map_err(ComponentError::io(parent))?;
            let top = fs::canonicalize(dest).map_err(ComponentError::io(dest))?;
            if !real.starts_with(&top) {
                return Err(other(
                    name,
                    format!(
                        "tarball entry {} leaves the source tree through a symlink",
                        p.display()
                    ),
                ));
            }
        }
        if e.header().entry_type().is_hard_link() {
            // The tar crate would resolve the link target against the
            // process's cwd: resolve it inside the tree instead, or refuse.
            let link = e
                .link_name()
                .map_err(ComponentError::io(tarball))?
                .map(|l| l.into_owned())
                .unwrap_or_default();
            let rel_link: PathBuf = match &strip {
                Some(_) => link
                    .components()
                    .skip_while(|c| !matches!(c, std::path::Component::Normal(_)))
                    .skip(1)
                    .collect(),
                None => link.clone(),
            };
            if link.is_absolute()
                || rel_link
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(other(
                    name,
                    format!(
                        "tarball hard link {} -> {} leaves the source tree",
                        p.display(),
                        link.display()
                    ),
                ));
            }
            let from = dest.join(&rel_link);
            fs::hard_link(&from, &target).map_err(ComponentError::io(&target))?;
            continue;
        }
        e.unpack(&target).map_err(ComponentError::io(&target))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarball(entries: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, link, body) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            match link {
                Some(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, path, target).unwrap();
                }
                None => {
                    h.set_size(body.len() as u64);
                    b.append_data(&mut h, path, *body).unwrap();
                }
            }
        }
        let raw = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn tarballs_lose_their_top_directory_and_cannot_escape() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().join("x.tar.gz");
        fs::write(
            &t,
            tarball(&[
                ("x-1.0/configure", None, b"#!/bin/sh\n"),
                ("x-1.0/src/a.c", None, b"int a;"),
            ]),
        )
        .unwrap();
        let dest = tmp.path().join("src");
        fs::create_dir(&dest).unwrap();
        unpack_tarball("x", &t, &dest).unwrap();
        assert_eq!(fs::read(dest.join("src/a.c")).unwrap(), b"int a;");
        assert!(dest.join("configure").is_file());

        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let evil = tmp.path().join("evil.tar.gz");
        fs::write(
            &evil,
            tarball(&[
                ("a/link", Some(outside.to_str().unwrap()), b""),
                ("a/link/pwned", None, b"x"),
                ("b", None, b""),
            ]),
        )
        .unwrap();
        let dest = tmp.path().join("src2");
        fs::create_dir(&dest).unwrap();
        let e = unpack_tarball("x", &evil, &dest).unwrap_err().to_string();
        assert!(e.contains("leaves the source tree"), "{e}");
        assert!(!outside.join("pwned").exists());
    }

    #[test]
    fn filter_keeps_matches_and_prunes_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for f in ["usr/bin/a", "usr/share/doc/x/README", "usr/lib/libx.so.1"] {
            fs::create_dir_all(d.join(f).parent().unwrap()).unwrap();
            fs::write(d.join(f), f).unwrap();
        }
        filter(d, &["usr/bin/*".into(), "usr/lib/**/*.so.*".into()]).unwrap();
        assert_eq!(list_files(d).unwrap(), ["/usr/bin/a", "/usr/lib/libx.so.1"]);
        assert!(!d.join("usr/share").exists());
    }
}
