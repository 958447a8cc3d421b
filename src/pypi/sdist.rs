//! Hermetic sdist builds: an opted-in sdist (`allow-sdist`) is built into a
//! wheel inside the build sandbox — the image as `/`, no network, the
//! image's own `/usr/bin/python3` and the PEP 517 backend from the image's
//! locked Debian packages (python3-setuptools, python3-wheel),
//! `SOURCE_DATE_EPOCH` fixed — so the wheel depends only on locked inputs.
//!
//! The source is unpacked natively under `/var/tmp/imgbuild-sdist/` in the
//! image (removed afterwards); the backend named by `pyproject.toml`'s
//! `[build-system] build-backend` is used, else setuptools' legacy backend
//! (what pip does for a `setup.py`-only sdist).

use std::fs;
use std::io::Cursor;
use std::path::{Component, Path};
use std::time::Duration;

use super::error::{Context, Result, invalid};
use crate::sandbox::{self, SandboxSpec};

/// Where, inside the image, sdists are unpacked and built.
const WORK: &str = "var/tmp/imgbuild-sdist";

/// A wheel built from an sdist.
#[derive(Debug, Clone)]
pub struct Built {
    /// The wheel's file name.
    pub filename: String,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// The sandbox settings a build runs with.
#[derive(Debug, Clone)]
pub struct BuildEnv {
    /// `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: i64,
    /// Hostname inside.
    pub hostname: String,
    /// Extra read-only binds (tests bind the host's `/usr` into a bare root).
    pub ro_binds: Vec<(std::path::PathBuf, std::path::PathBuf)>,
}

fn backend(src: &Path) -> String {
    let text = fs::read_to_string(src.join("pyproject.toml")).unwrap_or_default();
    let value: Option<toml::Value> = toml::from_str(&text).ok();
    value
        .as_ref()
        .and_then(|v| v.get("build-system")?.get("build-backend")?.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| "setuptools.build_meta:__legacy__".to_string())
}

/// Builds `sdist` (a `.tar.gz`) of `name` into a wheel inside `root`.
pub fn build(
    root: &Path,
    name: &str,
    filename: &str,
    sdist: &[u8],
    env: &BuildEnv,
) -> Result<Built> {
    let work = root.join(WORK);
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    let unpack = work.join("src");
    let out = work.join("out");
    for dir in [&unpack, &out] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let result = build_in(root, name, filename, sdist, env, &unpack, &out);
    let _ = fs::remove_dir_all(&work);
    // An empty /var/tmp is what the image had before.
    result
}

fn build_in(
    root: &Path,
    name: &str,
    filename: &str,
    sdist: &[u8],
    env: &BuildEnv,
    unpack: &Path,
    out: &Path,
) -> Result<Built> {
    if !filename.ends_with(".tar.gz") {
        invalid!("{filename}: only .tar.gz sdists can be built");
    }
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(Cursor::new(sdist)));
    let mut top = None;
    let bad = || format!("{filename}: reading the archive");
    for entry in tar.entries().with_context(bad)? {
        let mut entry = entry.with_context(bad)?;
        let path = entry.path().with_context(bad)?.into_owned();
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            invalid!("{filename}: unsafe path {}", path.display());
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            continue; // links and devices have no place in a source tree
        }
        if top.is_none() {
            top = path.components().next().map(|c| c.as_os_str().to_owned());
        }
        let dest = unpack.join(&path);
        let unpacking = || format!("{filename}: unpacking {}", path.display());
        if kind.is_dir() {
            fs::create_dir_all(&dest).with_context(unpacking)?;
            continue;
        }
        fs::create_dir_all(dest.parent().expect("has parent")).with_context(unpacking)?;
        entry.unpack(&dest).with_context(unpacking)?;
    }
    let top = top.with_context(|| format!("{filename}: empty archive"))?;
    let src = unpack.join(&top);
    let backend = backend(&src);
    let (module, object) = backend.split_once(':').unwrap_or((backend.as_str(), ""));
    let object = if object.is_empty() {
        String::new()
    } else {
        format!(".{object}")
    };
    let code = format!(
        "import importlib, sys; b = importlib.import_module('{module}'){object}; \
         print(b.build_wheel(sys.argv[1]))"
    );
    let inside_src = Path::new("/").join(WORK).join("src").join(&top);
    let inside_out = Path::new("/").join(WORK).join("out");
    let mut spec = SandboxSpec::new(
        root,
        [
            "/usr/bin/python3".into(),
            "-c".into(),
            code,
            inside_out.display().to_string(),
        ],
    );
    spec.cwd = inside_src;
    spec.hostname = env.hostname.clone();
    spec.source_date_epoch = env.source_date_epoch.max(0) as u64;
    spec.timeout = Some(Duration::from_secs(600));
    spec.ro_binds = env.ro_binds.clone();
    spec.env = vec![
        ("PYTHONHASHSEED".into(), "0".into()),
        ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
    ];
    let output = sandbox::run(&spec).with_context(|| format!("building {name} from {filename}"))?;
    if !output.success() {
        let tail: String = String::from_utf8_lossy(&output.stderr)
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        invalid!(
            "building {name} from {filename} failed ({:?}); is python3-setuptools (and python3-wheel) in `packages`?\n{tail}",
            output.status
        );
    }
    let mut wheels: Vec<_> = fs::read_dir(out)
        .with_context(|| format!("building {name}: reading {}", out.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".whl"))
        .collect();
    wheels.sort();
    let [wheel] = wheels.as_slice() else {
        invalid!("building {name}: expected one wheel, got {wheels:?}");
    };
    let data =
        fs::read(out.join(wheel)).with_context(|| format!("building {name}: reading {wheel}"))?;
    Ok(Built {
        filename: wheel.clone(),
        data,
    })
}
