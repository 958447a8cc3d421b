//! Installing wheels into an image tree, natively (no pip on the host or in
//! the image), following the wheel spec (PEP 427 / PEP 491 / PEP 376):
//!
//! - files of the archive under Debian's local site directory
//!   (`/usr/local/lib/python3.X/dist-packages`); `NAME.data/{purelib,platlib}`
//!   there too, `scripts` in `/usr/local/bin` (a `#!python` line becomes
//!   `#!/usr/bin/python3`), `headers` in `/usr/local/include/python3.X/NAME`,
//!   `data` under `/usr/local`;
//! - console and GUI entry points as `/usr/local/bin` scripts run by
//!   `/usr/bin/python3` (the image's interpreter);
//! - `INSTALLER` (`imgbuild`) and a `RECORD` listing what was installed,
//!   sorted, with sha256 and size.
//!
//! Paths are checked (no absolute path, no `..`) and no existing symlink is
//! followed on the way. Output is a function of the wheel's bytes: no
//! timestamps are written here (normalisation clamps mtimes afterwards).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Cursor, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::error::{Context, Result, invalid};
use super::target::Target;

/// What installing one wheel did.
#[derive(Debug, Clone, Default)]
pub struct InstallReport {
    /// Files written, relative to the image root, sorted.
    pub files: Vec<String>,
    /// The `.dist-info` directory, relative to the image root.
    pub dist_info: String,
}

/// `RECORD` hash notation: `sha256=<urlsafe base64, no padding>`.
fn record_hash(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    format!(
        "sha256={}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

/// A relative path of safe components.
fn safe_relative(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    let ok = !p.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    ok.then(|| path.to_path_buf())
}

/// Creates `root/rel`'s parents (0755), refusing any symlink on the way.
fn parents(root: &Path, rel: &Path) -> Result<PathBuf> {
    let mut at = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            at.push(c);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    invalid!("{}: a symlink in the image; not following it", at.display())
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => invalid!("{}: not a directory", at.display()),
                Err(_) => {
                    fs::create_dir(&at).with_context(|| format!("creating {}", at.display()))?;
                    fs::set_permissions(&at, fs::Permissions::from_mode(0o755))
                        .with_context(|| format!("chmod {}", at.display()))?;
                }
            }
        }
    }
    Ok(root.join(rel))
}

fn write_file(root: &Path, rel: &Path, data: &[u8], mode: u32) -> Result<()> {
    let path = parents(root, rel)?;
    if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink() || m.is_dir()) {
        invalid!("{}: exists and is not a regular file", path.display());
    }
    fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// `[console_scripts]` and `[gui_scripts]` of an `entry_points.txt`.
fn entry_points(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.trim().to_string();
            continue;
        }
        if !matches!(section.as_str(), "console_scripts" | "gui_scripts") {
            continue;
        }
        let Some((name, target)) = line.split_once('=') else {
            continue;
        };
        // `module:attr [extras]`: extras do not change the script.
        let target = target.split('[').next().unwrap_or("").trim();
        if let Some((module, attr)) = target.split_once(':') {
            out.push((
                name.trim().to_string(),
                module.trim().to_string(),
                attr.trim().to_string(),
            ));
        }
    }
    out
}

fn script(module: &str, attr: &str) -> String {
    let head = attr.split('.').next().unwrap_or(attr);
    format!(
        "#!/usr/bin/python3\n# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom {module} import {head}\n\
         if __name__ == \"__main__\":\n    sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n    sys.exit({attr}())\n"
    )
}

/// Installs the wheel `data` (file name `filename`) into the image at `root`.
pub fn install_wheel(
    root: &Path,
    target: &Target,
    filename: &str,
    data: &[u8],
) -> Result<InstallReport> {
    let mut zip = zip::ZipArchive::new(Cursor::new(data))
        .with_context(|| format!("{filename}: not a zip archive"))?;
    let site = PathBuf::from(target.site_packages());
    let py = format!("python{}.{}", target.python.0, target.python.1);
    // Read everything first: the .dist-info name decides where `.data` goes.
    let mut entries: Vec<(String, u32, Vec<u8>)> = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip
            .by_index(i)
            .with_context(|| format!("{filename}: reading entry {i}"))?;
        if f.is_dir() {
            continue;
        }
        let name = f
            .name()
            .with_context(|| format!("{filename}: entry {i} has an unreadable name"))?
            .to_string();
        let mode = f.unix_mode().unwrap_or(0o644);
        let mut buf = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut buf)
            .with_context(|| format!("{filename}: reading {name}"))?;
        entries.push((name, mode, buf));
    }
    let dist_info = entries
        .iter()
        .filter_map(|(n, _, _)| n.strip_suffix("/WHEEL"))
        .find(|d| d.ends_with(".dist-info") && !d.contains('/'))
        .map(str::to_string)
        .with_context(|| format!("{filename}: no .dist-info/WHEEL"))?;
    let data_dir = format!("{}.data", dist_info.trim_end_matches(".dist-info"));
    let project = dist_info.split('-').next().unwrap_or("").to_string();
    let mut files: BTreeMap<PathBuf, (Vec<u8>, u32)> = BTreeMap::new();
    for (name, mode, mut bytes) in entries {
        let Some(rel) = safe_relative(&name) else {
            invalid!("{filename}: unsafe path `{name}`");
        };
        if name == format!("{dist_info}/RECORD")
            || name.ends_with("/RECORD.jws")
            || name.ends_with("/RECORD.p7s")
        {
            continue;
        }
        let exec = mode & 0o111 != 0;
        let dest = match name.strip_prefix(&format!("{data_dir}/")) {
            None => site.join(&rel),
            Some(rest) => {
                let (scheme, path) = rest.split_once('/').unwrap_or((rest, ""));
                let path = safe_relative(path)
                    .with_context(|| format!("{filename}: unsafe path `{name}`"))?;
                match scheme {
                    "purelib" | "platlib" => site.join(path),
                    "scripts" => {
                        if bytes.starts_with(b"#!python") {
                            let end = bytes
                                .iter()
                                .position(|&b| b == b'\n')
                                .unwrap_or(bytes.len());
                            let mut fixed = b"#!/usr/bin/python3".to_vec();
                            fixed.extend_from_slice(&bytes[end..]);
                            bytes = fixed;
                        }
                        Path::new("usr/local/bin").join(path)
                    }
                    "headers" => Path::new("usr/local/include")
                        .join(&py)
                        .join(&project)
                        .join(path),
                    "data" => Path::new("usr/local").join(path),
                    other => invalid!("{filename}: unknown .data scheme `{other}`"),
                }
            }
        };
        let exec = exec || dest.starts_with("usr/local/bin");
        files.insert(dest, (bytes, if exec { 0o755 } else { 0o644 }));
    }
    let ep = site.join(&dist_info).join("entry_points.txt");
    if let Some((text, _)) = files.get(&ep) {
        for (name, module, attr) in entry_points(&String::from_utf8_lossy(text)) {
            if safe_relative(&name).is_none() || name.contains('/') {
                invalid!("{filename}: bad entry point name `{name}`");
            }
            files.insert(
                Path::new("usr/local/bin").join(&name),
                (script(&module, &attr).into_bytes(), 0o755),
            );
        }
    }
    files.insert(
        site.join(&dist_info).join("INSTALLER"),
        (b"imgbuild\n".to_vec(), 0o644),
    );
    // RECORD paths are relative to the site directory.
    let record_rel = site.join(&dist_info).join("RECORD");
    let mut record = String::new();
    for (path, (bytes, mode)) in &files {
        write_file(root, path, bytes, *mode)?;
        let shown = match path.strip_prefix(&site) {
            Ok(p) => p.display().to_string(),
            Err(_) => pathdiff(path, &site),
        };
        record.push_str(&format!(
            "{},{},{}\n",
            csv(&shown),
            record_hash(bytes),
            bytes.len()
        ));
    }
    record.push_str(&format!("{},,\n", csv(&format!("{dist_info}/RECORD"))));
    write_file(root, &record_rel, record.as_bytes(), 0o644)?;
    let mut out: Vec<String> = files.keys().map(|p| p.display().to_string()).collect();
    out.push(record_rel.display().to_string());
    out.sort();
    Ok(InstallReport {
        files: out,
        dist_info: site.join(&dist_info).display().to_string(),
    })
}

/// `path` relative to `base` with `..` steps (both relative to the image root).
fn pathdiff(path: &Path, base: &Path) -> String {
    let ups = base.components().count();
    let mut s = "../".repeat(ups);
    s.push_str(&path.display().to_string());
    s
}

/// A CSV field (quoted when needed).
fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_point_scripts() {
        let eps = entry_points(
            "[console_scripts]\nptf = ptf.main:run\nx=a.b:c.d [extra]\n[other]\ny = z:w\n",
        );
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[1], ("x".into(), "a.b".into(), "c.d".into()));
        let s = script("a.b", "c.d");
        assert!(s.starts_with("#!/usr/bin/python3\n"));
        assert!(s.contains("from a.b import c\n") && s.contains("sys.exit(c.d())"));
        assert_eq!(
            pathdiff(
                Path::new("usr/local/bin/x"),
                Path::new("usr/local/lib/python3.11/dist-packages")
            ),
            "../../../../../usr/local/bin/x"
        );
    }
}
