//! The trees of a component build: unpacking a tarball source into the
//! build root (never outside it), and the `install` filter on `DESTDIR`.

use std::fs;
use std::path::{Path, PathBuf};

use super::ComponentError;
use super::package::list_files;
use crate::recipe::component::glob_match;

fn other(name: &str, reason: impl std::fmt::Display) -> ComponentError {
    ComponentError::Other {
        component: name.to_string(),
        reason: reason.to_string(),
    }
}

/// Removes what `install` does not match (then empty directories).
pub(super) fn filter(dest: &Path, install: &[String]) -> Result<(), ComponentError> {
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
pub(super) fn unpack_tarball(
    name: &str,
    tarball: &Path,
    dest: &Path,
) -> Result<(), ComponentError> {
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
