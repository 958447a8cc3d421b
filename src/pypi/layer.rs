//! The build-time hook: every `[[python]]` entry of the lock into the
//! assembled image — wheels installed as they are, opted-in sdists built in
//! the sandbox first, Debian-provided ones left to dpkg.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::error::{Context, Result, invalid};
use super::install::install_wheel;
use super::sdist::{self, BuildEnv};
use super::target::Target;
use crate::core::digest::sha256_hex;
use crate::fetch::Store;
use crate::lock::{LockedPython, Lockfile};

/// A wheel built from an sdist during the build.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuiltWheel {
    /// Distribution name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The sdist it was built from.
    pub sdist: String,
    /// The wheel's file name.
    pub wheel: String,
    /// The wheel's sha256.
    pub sha256: String,
}

/// Where the image records the wheels built from sdists (JSON list of
/// [`BuiltWheel`]); the build manifest copies it.
pub const BUILT_RECORD: &str = "usr/local/share/imgbuild/python-built.json";

/// What the Python layer did.
#[derive(Debug, Clone, Default)]
pub struct LayerReport {
    /// One line per distribution, for the build log.
    pub lines: Vec<String>,
    /// Wheels built from sdists.
    pub built: Vec<BuiltWheel>,
    /// Files installed (relative to the image root).
    pub files: usize,
}

/// Installs the Python layer of `lock` into the image at `root`.
pub fn install_layer(
    root: &Path,
    lock: &Lockfile,
    store: &Store,
    env: &BuildEnv,
) -> Result<LayerReport> {
    let mut report = LayerReport::default();
    if lock.python.is_empty() {
        return Ok(report);
    }
    let target = Target::from_lock(lock)?;
    for p in &lock.python {
        if let Some(deb) = &p.debian {
            report
                .lines
                .push(format!("{} {}: from Debian's {deb}", p.name, p.version));
            continue;
        }
        let data = read_verified(store, p)?;
        let (filename, wheel) = if p.is_sdist() {
            let built = sdist::build(root, &p.name, &p.filename, &data, env)?;
            let sha256 = hex::encode(Sha256::digest(&built.data));
            report.lines.push(format!(
                "{} {}: built {} (sha256 {sha256}) from {}",
                p.name, p.version, built.filename, p.filename
            ));
            report.built.push(BuiltWheel {
                name: p.name.clone(),
                version: p.version.clone(),
                sdist: p.filename.clone(),
                wheel: built.filename.clone(),
                sha256,
            });
            (built.filename, built.data)
        } else {
            (p.filename.clone(), data)
        };
        let r = install_wheel(root, &target, &filename, &wheel)
            .with_context(|| format!("installing {} from {filename}", p.label()))?;
        report.files += r.files.len();
        if !p.is_sdist() {
            report
                .lines
                .push(format!("{} {}: {} files", p.name, p.version, r.files.len()));
        }
    }
    if !report.built.is_empty() {
        let path = root.join(BUILT_RECORD);
        let dir = path.parent().expect("has parent");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut text = serde_json::to_vec_pretty(&report.built).expect("plain data");
        text.push(b'\n');
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

/// The store file of `p`, read whole and hashed as it is read (no separate
/// pass): a file that is not the locked one is refused, naming the
/// distribution, the file and both hashes, before anything of it is
/// installed. The read stops one byte past the locked size, so a swapped-in
/// huge file costs no more than the real one.
fn read_verified(store: &Store, p: &LockedPython) -> Result<Vec<u8>> {
    use std::io::Read;
    let path = store.path_of(&p.sha256);
    let file = std::fs::File::open(&path)
        .with_context(|| format!("{} ({}): reading {}", p.label(), p.filename, path.display()))?;
    let mut data = Vec::with_capacity(p.size.min(64 << 20) as usize);
    file.take(p.size.saturating_add(1))
        .read_to_end(&mut data)
        .with_context(|| format!("{} ({}): reading {}", p.label(), p.filename, path.display()))?;
    let actual = sha256_hex(&data);
    if actual != p.sha256 {
        invalid!(
            "[[python]] {} ({}): sha256 mismatch: the lock says {}, the store file {} has {actual} \
             ({} bytes{})",
            p.label(),
            p.filename,
            p.sha256,
            path.display(),
            data.len(),
            if data.len() as u64 > p.size {
                ", more than the locked size"
            } else {
                ""
            }
        );
    }
    Ok(data)
}

/// The built-wheel record inside a rootfs tar (empty when there is none).
pub fn built_from_tar(tar_path: &Path) -> Result<Vec<BuiltWheel>> {
    // A rootfs cache entry, written past the page cache: read the same way.
    let file = crate::core::uncached::DirectReader::open(tar_path)
        .with_context(|| format!("opening {}", tar_path.display()))?;
    let mut tar = tar::Archive::new(file);
    let bad = || format!("reading {}", tar_path.display());
    for entry in tar.entries().with_context(bad)? {
        let entry = entry.with_context(bad)?;
        let path = entry
            .path()
            .with_context(bad)?
            .to_string_lossy()
            .into_owned();
        if path.trim_start_matches("./") == BUILT_RECORD {
            return serde_json::from_reader(entry)
                .with_context(|| format!("{BUILT_RECORD} in {}", tar_path.display()));
        }
    }
    Ok(Vec::new())
}
