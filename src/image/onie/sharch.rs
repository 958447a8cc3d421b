//! The self-extracting installer ("sharch"): a POSIX sh header
//! (`header.sh`) with the payload's size and SHA1 substituted, the line
//! `exit_marker`, and the payload: an uncompressed, deterministic tar of
//! `installer/`.
//!
//! The header hashes exactly `payload_size` bytes after the marker, so bytes
//! appended later (a signature) do not break it, and a changed byte in the
//! payload makes it refuse with "Unable to verify archive checksum".

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha1::Sha1;

use crate::image::error::{Context, ImageError};
use crate::pack::HashingWriter;

/// Errors here are the image outputs' own.
type Result<T, E = ImageError> = std::result::Result<T, E>;

/// The header template.
pub const HEADER: &str = include_str!("header.sh");
/// The line between header and payload.
pub const MARKER: &str = "exit_marker";

/// Where a payload file's bytes come from.
#[derive(Debug, Clone)]
pub enum Contents {
    /// In memory (the small configuration files).
    Bytes(Vec<u8>),
    /// A file (fs.zip).
    File(PathBuf),
}

/// One file of `installer/`.
#[derive(Debug, Clone)]
pub struct PayloadFile {
    /// Path below `installer/` (`platforms/x86_64-kvm_x86_64-r0`).
    pub name: String,
    /// Permission bits.
    pub mode: u32,
    /// Its bytes.
    pub contents: Contents,
}

/// The header for a payload of `size` bytes with SHA1 `sha1`, for `image`
/// (a comment only).
pub fn header(image: &str, size: u64, sha1: &str) -> String {
    let image: String = image
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    HEADER
        .replace("@IMAGE@", &image)
        .replace("@PAYLOAD_SIZE@", &size.to_string())
        .replace("@PAYLOAD_SHA1@", sha1)
}

fn tar_header(
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    size: u64,
    mtime: u64,
) -> Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_path(path)
        .with_context(|| format!("{path}: not storable in a ustar header"))?;
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_username("root")
        .and_then(|()| h.set_groupname("root"))
        .with_context(|| format!("{path}: owner names"))?;
    h.set_mtime(mtime);
    h.set_size(size);
    h.set_cksum();
    Ok(h)
}

/// Writes the payload tar of `files` to `w`: `installer/` and the
/// directories the names need, then the files, all in byte order of their
/// paths, root-owned, with mtime `source_date_epoch`.
fn write_payload(w: impl Write, files: &[PayloadFile], source_date_epoch: i64) -> Result<()> {
    let mtime = source_date_epoch.max(0) as u64;
    let mut entries: Vec<(String, Option<&PayloadFile>)> = vec![("installer/".into(), None)];
    for f in files {
        let full = format!("installer/{}", f.name);
        let mut dir = String::new();
        let parts: Vec<&str> = full.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            dir.push_str(part);
            dir.push('/');
            if !entries.iter().any(|(p, _)| *p == dir) {
                entries.push((dir.clone(), None));
            }
        }
        entries.push((full, Some(f)));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut tar = tar::Builder::new(w);
    for (path, file) in entries {
        match file {
            None => {
                let h = tar_header(&path, tar::EntryType::Directory, 0o755, 0, mtime)?;
                tar.append(&h, io::empty())
                    .with_context(|| format!("adding {path} to the payload"))?;
            }
            Some(f) => match &f.contents {
                Contents::Bytes(b) => {
                    let h = tar_header(
                        &path,
                        tar::EntryType::Regular,
                        f.mode,
                        b.len() as u64,
                        mtime,
                    )?;
                    tar.append(&h, b.as_slice())
                        .with_context(|| format!("adding {path} to the payload"))?;
                }
                Contents::File(p) => {
                    let file = File::open(p).with_context(|| format!("opening {}", p.display()))?;
                    let len = file
                        .metadata()
                        .with_context(|| format!("reading {}", p.display()))?
                        .len();
                    let h = tar_header(&path, tar::EntryType::Regular, f.mode, len, mtime)?;
                    tar.append(&h, file.take(len))
                        .with_context(|| format!("adding {} to the payload", p.display()))?;
                }
            },
        }
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .context("writing the payload")?;
    Ok(())
}

/// Writes the installer to `dest` (mode 0755): header, marker, payload.
/// The payload is first written to `scratch` (a file name in a temp
/// directory) to learn its size and SHA1, which the header needs.
pub fn write_installer(
    dest: &Path,
    scratch: &Path,
    image: &str,
    files: &[PayloadFile],
    source_date_epoch: i64,
) -> Result<()> {
    let payload =
        File::create(scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let mut hw = HashingWriter::<_, Sha1>::with_digest(BufWriter::with_capacity(1 << 20, payload));
    write_payload(&mut hw, files, source_date_epoch)
        .with_context(|| format!("writing the installer payload {}", scratch.display()))?;
    let (mut payload, sha1, size) = hw.finish();
    payload
        .flush()
        .with_context(|| format!("writing {}", scratch.display()))?;

    let out = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, out);
    w.write_all(header(image, size, &sha1).as_bytes())
        .and_then(|()| w.write_all(MARKER.as_bytes()))
        .and_then(|()| w.write_all(b"\n"))
        .with_context(|| format!("writing {}", dest.display()))?;
    let mut payload =
        File::open(scratch).with_context(|| format!("opening {}", scratch.display()))?;
    io::copy(&mut payload, &mut w).with_context(|| format!("writing {}", dest.display()))?;
    let out = w
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", dest.display()))?;
    out.sync_all()
        .with_context(|| format!("syncing {}", dest.display()))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", dest.display()))?;
    fs::remove_file(scratch).with_context(|| format!("removing {}", scratch.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_has_values_and_no_updater_cookie() {
        let h = header("x 1.0", 1234, "abcd");
        assert!(h.contains("payload_size=1234\n"));
        assert!(h.contains("payload_sha1=abcd\n"));
        assert!(!h.contains('@'), "unsubstituted placeholder in {h}");
        // ONIE treats a file with this cookie in its first 100 lines as an
        // updater, not a NOS installer.
        assert!(!h.contains("ONIE-UPDATER-COOKIE"));
        // The marker must not occur as a whole line before the real one.
        assert!(!h.lines().any(|l| l == MARKER));
        assert!(h.ends_with('\n'));
    }
}
