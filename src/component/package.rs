//! The generated Debian package of a component: `debian-binary`,
//! `control.tar.gz` (`control`, `md5sums`, and a `triggers` file asking for
//! `ldconfig` when shared libraries are installed) and `data.tar.gz` (the
//! files collected from `DESTDIR`), in an ar archive whose members carry
//! SOURCE_DATE_EPOCH, owner 0 and mode 0644, as `dpkg-deb` writes them
//! under SOURCE_DATE_EPOCH. Both tars are written by
//! [`crate::pack::tar::write_tree`]; gzip headers carry no name and no time.
//! The same files and fields give the same bytes.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use md5::{Digest, Md5};

use super::ComponentError;
use crate::pack::tar::{TarOptions, write_tree};

/// The control fields of a generated package.
#[derive(Debug, Clone)]
pub struct Control {
    /// `Package`.
    pub name: String,
    /// `Version`.
    pub version: String,
    /// `Architecture`.
    pub architecture: String,
    /// `Depends` (relations joined with `, `), empty for none.
    pub depends: String,
    /// The first line of `Description`.
    pub summary: String,
    /// Extra description lines (the source URL and commit).
    pub details: Vec<String>,
}

/// Every non-directory path under `dest`, as absolute image paths, sorted.
pub fn list_files(dest: &Path) -> Result<Vec<String>, ComponentError> {
    let mut out = Vec::new();
    let mut stack = vec![(dest.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(ComponentError::io(&dir))? {
            let entry = entry.map_err(ComponentError::io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let child = format!("{rel}/{name}");
            let meta = fs::symlink_metadata(&path).map_err(ComponentError::io(&path))?;
            if meta.is_dir() {
                stack.push((path, child));
            } else {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes the `.deb` of the tree `dest` (the image's `/`) to `out`.
pub fn write_deb(
    control: &Control,
    dest: &Path,
    source_date_epoch: i64,
    out: &mut impl Write,
) -> Result<(), ComponentError> {
    let opts = TarOptions { source_date_epoch };
    let files = list_files(dest)?;
    let mut md5sums = String::new();
    let mut installed: u64 = 0;
    let mut has_libs = false;
    for f in &files {
        let host = dest.join(f.trim_start_matches('/'));
        let meta = fs::symlink_metadata(&host).map_err(ComponentError::io(&host))?;
        if !meta.is_file() {
            continue;
        }
        installed += meta.len().div_ceil(1024);
        let name = f.rsplit('/').next().unwrap_or("");
        has_libs |= name.contains(".so");
        let mut h = Md5::new();
        let mut file = fs::File::open(&host).map_err(ComponentError::io(&host))?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(ComponentError::io(&host))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        md5sums.push_str(&format!("{}  {}\n", hex::encode(h.finalize()), &f[1..]));
    }
    let mut text = format!(
        "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: imgbuild <imgbuild@localhost>\n\
         Installed-Size: {}\n",
        control.name,
        control.version,
        control.architecture,
        installed.max(1)
    );
    if !control.depends.is_empty() {
        text.push_str(&format!("Depends: {}\n", control.depends));
    }
    text.push_str("Section: misc\nPriority: optional\n");
    text.push_str(&format!("Description: {}\n", control.summary));
    for line in &control.details {
        text.push_str(&format!(" {line}\n"));
    }
    let ctl = tempfile::tempdir().map_err(ComponentError::io(Path::new("/tmp")))?;
    let ctl_root = ctl.path().join("control");
    let write = |name: &str, body: &str| -> Result<(), ComponentError> {
        let p = ctl_root.join(name);
        fs::write(&p, body).map_err(ComponentError::io(&p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).map_err(ComponentError::io(&p))
    };
    fs::create_dir(&ctl_root).map_err(ComponentError::io(&ctl_root))?;
    fs::set_permissions(&ctl_root, fs::Permissions::from_mode(0o755))
        .map_err(ComponentError::io(&ctl_root))?;
    write("control", &text)?;
    write("md5sums", &md5sums)?;
    if has_libs {
        // As debhelper does for packages with shared libraries: the
        // image's libc-bin runs ldconfig once the package is configured.
        write("triggers", "activate-noawait ldconfig\n")?;
    }
    let control_tar = gzip_tree(&ctl_root, &opts)?;
    let data_tar = gzip_tree(dest, &opts)?;
    let mut ar = ar::Builder::new(out);
    for (name, body) in [
        ("debian-binary", &b"2.0\n"[..]),
        ("control.tar.gz", &control_tar),
        ("data.tar.gz", &data_tar),
    ] {
        let mut h = ar::Header::new(name.as_bytes().to_vec(), body.len() as u64);
        h.set_mode(0o100644);
        h.set_mtime(u64::try_from(source_date_epoch).unwrap_or(0));
        ar.append(&h, body)
            .map_err(ComponentError::io(Path::new(name)))?;
    }
    Ok(())
}

/// The deterministic tar of `root`, gzip-compressed without name or time.
fn gzip_tree(root: &Path, opts: &TarOptions) -> Result<Vec<u8>, ComponentError> {
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    write_tree(root, &mut gz, opts).map_err(|e| ComponentError::Io {
        path: root.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    gz.finish().map_err(ComponentError::io(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb_is_reproducible_and_readable() {
        let make = || {
            let tmp = tempfile::tempdir().unwrap();
            let dest = tmp.path().join("dest");
            fs::create_dir_all(dest.join("usr/local/bin")).unwrap();
            fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).unwrap();
            fs::write(dest.join("usr/local/bin/hello"), "#!/bin/sh\necho hi\n").unwrap();
            fs::set_permissions(
                dest.join("usr/local/bin/hello"),
                fs::Permissions::from_mode(0o755),
            )
            .unwrap();
            let control = Control {
                name: "hello".into(),
                version: "1.0".into(),
                architecture: "amd64".into(),
                depends: "libc6 (>= 2.36)".into(),
                summary: "hello built from source".into(),
                details: vec!["https://example.org/hello at 0123".into()],
            };
            let mut out = Vec::new();
            write_deb(&control, &dest, 1_600_000_000, &mut out).unwrap();
            (tmp, out)
        };
        let (tmp, a) = make();
        let (_, b) = make();
        assert_eq!(a, b);
        let deb = tmp.path().join("hello.deb");
        fs::write(&deb, &a).unwrap();
        let files = crate::deb::read_control(&deb).unwrap();
        assert!(
            files.control().contains("Depends: libc6 (>= 2.36)\n"),
            "{}",
            files.control()
        );
        let md5 = String::from_utf8(files.md5sums().unwrap().to_vec()).unwrap();
        assert!(md5.ends_with("  usr/local/bin/hello\n"), "{md5}");
        // The host's dpkg-deb agrees.
        let out = std::process::Command::new("dpkg-deb")
            .arg("-c")
            .arg(&deb)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("./usr/local/bin/hello"));
    }
}
