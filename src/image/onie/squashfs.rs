//! `fs.squashfs`: the image's root filesystem without `/boot`, written by
//! the pure-Rust `backhand` writer straight from the deterministic rootfs tar.
//!
//! Reproducible because every input is: entries are pushed in the tar's
//! (sorted) order, every inode keeps the tar's mode, numeric owner and
//! (already clamped) mtime, the superblock time is SOURCE_DATE_EPOCH, and
//! blocks are compressed one after another with a fixed zstd level.
//!
//! File data is never copied out of the tar: each file is a lazy reader over
//! its byte range in the tar, opened when backhand writes it and closed at
//! its end, so a 1 GiB rootfs needs neither a temp tree nor one descriptor
//! per file.
//!
//! Limits of the writer, checked rather than silently dropped: backhand
//! stores no extended attributes, so a tar entry with xattrs (e.g. a file
//! capability) is an error naming it. Hard links become separate inodes
//! sharing one copy of the data (backhand's duplicate detection), which is
//! what a read-only root needs.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Take};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backhand::compression::{CompressionOptions, Compressor, Zstd};
use backhand::{FilesystemCompressor, FilesystemWriter, NodeHeader};

use crate::image::error::{Context, ImageError, refuse};

/// Errors here are the image outputs' own.
type Result<T, E = ImageError> = std::result::Result<T, E>;

/// Block size: 1 MiB, as SONiC's `mksquashfs -b 1M`.
const BLOCK_SIZE: u32 = 1 << 20;
/// zstd level. mksquashfs defaults to 15, but backhand compresses one block
/// after another on one core: level 15 took 185 s for the sonic-p4 rootfs
/// (230 MB) on the project machine; 3 is several times faster.
const ZSTD_LEVEL: u32 = 3;

/// A file's data inside the rootfs tar, opened on first read.
struct TarSlice {
    tar: Arc<PathBuf>,
    offset: u64,
    len: u64,
    open: Option<Take<File>>,
    done: bool,
}

impl Read for TarSlice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.open.is_none() {
            let mut f = File::open(self.tar.as_path())?;
            f.seek(SeekFrom::Start(self.offset))?;
            self.open = Some(f.take(self.len));
        }
        let n = self.open.as_mut().expect("opened above").read(buf)?;
        if n == 0 {
            // Close the descriptor as soon as the file is consumed.
            self.open = None;
            self.done = true;
        }
        Ok(n)
    }
}

/// What went into the squashfs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SquashStats {
    /// Inodes written (the root directory included).
    pub entries: usize,
    /// Entries under `/boot` left out.
    pub excluded: usize,
}

/// Whether a tar path (`./boot/x`, `boot`) is `/boot` or below it.
fn is_boot(path: &str) -> bool {
    path == "boot" || path.starts_with("boot/")
}

/// `./a/b/` → `a/b`; `./` → ``.
fn normalise(path: &str) -> String {
    let p = path.strip_prefix("./").unwrap_or(path);
    p.trim_end_matches('/').to_string()
}

/// Linux's `new_encode_dev`, the device number squashfs stores.
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// Writes the squashfs of the rootfs tar at `tar` (every entry but `/boot`)
/// to `dest`, with SOURCE_DATE_EPOCH as its creation time.
pub fn write_from_tar(tar: &Path, dest: &Path, source_date_epoch: i64) -> Result<SquashStats> {
    let epoch = u32::try_from(source_date_epoch.max(0)).unwrap_or(u32::MAX);
    let shared = Arc::new(tar.to_path_buf());
    let mut fs = FilesystemWriter::default();
    fs.set_time(epoch);
    fs.set_block_size(BLOCK_SIZE);
    let compressor = FilesystemCompressor::new(
        Compressor::Zstd,
        Some(CompressionOptions::Zstd(Zstd {
            compression_level: ZSTD_LEVEL,
        })),
    )
    .context("configuring zstd for the squashfs")?;
    fs.set_compressor(compressor);

    let file = File::open(tar).with_context(|| format!("opening {}", tar.display()))?;
    let mut archive = tar::Archive::new(file);
    let mut stats = SquashStats::default();
    // Data ranges of regular files, for hard links to them.
    let mut data: HashMap<String, (u64, u64)> = HashMap::new();
    for entry in archive
        .entries_with_seek()
        .with_context(|| format!("reading {}", tar.display()))?
    {
        let mut entry = entry.with_context(|| format!("reading {}", tar.display()))?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = normalise(&raw_path);
        if is_boot(&path) {
            stats.excluded += 1;
            continue;
        }
        if let Some(exts) = entry.pax_extensions().ok().flatten() {
            for ext in exts.flatten() {
                if ext.key().is_ok_and(|k| k.starts_with("SCHILY.xattr.")) {
                    refuse!(
                        "{}: /{path} has extended attribute {}, which the squashfs writer cannot store",
                        tar.display(),
                        ext.key().unwrap_or("?").trim_start_matches("SCHILY.xattr.")
                    );
                }
            }
        }
        let h = entry.header();
        let mode = h.mode().with_context(|| format!("{raw_path}: mode"))?;
        let header = NodeHeader::new(
            (mode & 0o7777) as u16,
            h.uid().with_context(|| format!("{raw_path}: uid"))? as u32,
            h.gid().with_context(|| format!("{raw_path}: gid"))? as u32,
            u32::try_from(h.mtime().unwrap_or(0)).unwrap_or(epoch),
        );
        let kind = h.entry_type();
        let target = || -> Result<String> {
            let link = entry
                .link_name_bytes()
                .with_context(|| format!("{raw_path}: link without a target"))?;
            Ok(String::from_utf8_lossy(&link).into_owned())
        };
        let pushed = if path.is_empty() {
            // The tar's `./` is the squashfs root.
            if kind.is_dir() {
                fs.set_root_mode(header.permissions);
                fs.set_root_uid(header.uid);
                fs.set_root_gid(header.gid);
                Ok(())
            } else {
                refuse!("{}: `./` is not a directory", tar.display());
            }
        } else if kind.is_dir() {
            fs.push_dir(&path, header)
        } else if kind.is_file() {
            let range = (entry.raw_file_position(), entry.size());
            data.insert(path.clone(), range);
            fs.push_file(slice(&shared, range), &path, header)
        } else if kind.is_symlink() {
            fs.push_symlink(target()?, &path, header)
        } else if kind.is_hard_link() {
            let to = normalise(&target()?);
            let Some(&range) = data.get(&to) else {
                refuse!(
                    "{}: hard link /{path} to /{to}, which is not an earlier regular file",
                    tar.display()
                );
            };
            fs.push_file(slice(&shared, range), &path, header)
        } else if kind.is_character_special() || kind.is_block_special() {
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            let dev = encode_dev(major, minor);
            if kind.is_character_special() {
                fs.push_char_device(dev, &path, header)
            } else {
                fs.push_block_device(dev, &path, header)
            }
        } else if kind.is_fifo() {
            fs.push_fifo(&path, header)
        } else {
            refuse!(
                "{}: /{path} has a tar entry type the squashfs cannot hold ({:?})",
                tar.display(),
                kind
            );
        };
        pushed.with_context(|| format!("adding /{path} to the squashfs"))?;
        stats.entries += 1;
    }
    let out = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, out);
    fs.write(&mut w)
        .with_context(|| format!("writing {}", dest.display()))?;
    let out = w
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", dest.display()))?;
    out.sync_all()
        .with_context(|| format!("syncing {}", dest.display()))?;
    Ok(stats)
}

fn slice(tar: &Arc<PathBuf>, (offset, len): (u64, u64)) -> TarSlice {
    TarSlice {
        tar: Arc::clone(tar),
        offset,
        len,
        open: None,
        done: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_paths() {
        assert!(is_boot("boot"));
        assert!(is_boot("boot/vmlinuz-6.1"));
        assert!(!is_boot("bootstrap"));
        assert!(!is_boot("usr/boot"));
        assert_eq!(normalise("./usr/bin/"), "usr/bin");
        assert_eq!(normalise("./"), "");
    }

    #[test]
    fn device_numbers() {
        // /dev/null is 1:3, /dev/sda1 8:1; a minor above 255 spills high.
        assert_eq!(encode_dev(1, 3), 0x103);
        assert_eq!(encode_dev(8, 1), 0x801);
        assert_eq!(encode_dev(259, 256), (259 << 8) | (1 << 20));
    }
}
