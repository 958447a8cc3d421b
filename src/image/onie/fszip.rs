//! `fs.zip`, the image inside the ONIE installer: `boot/vmlinuz-*`,
//! `boot/initrd.img-*`, `fs.squashfs` and `platform.tar.gz`.
//!
//! Every member is already compressed, so every member is *stored* (SONiC
//! does the same: deflating a zstd squashfs only costs time). Names are
//! sorted, timestamps are SOURCE_DATE_EPOCH, permissions fixed, and zip64 is
//! refused: ONIE's busybox `unzip` cannot read it, so a member of 4 GiB or
//! more is an error here rather than an installer that fails on the switch.

use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::image::error::{Context, ImageError, refuse};
use crate::pack::Compression;

/// Errors here are the image outputs' own.
type Result<T, E = ImageError> = std::result::Result<T, E>;

/// One member of `fs.zip`: its name in the archive and where its bytes are.
#[derive(Debug, Clone)]
pub struct Member {
    /// Name inside the zip (`boot/vmlinuz-6.1.0-56-amd64`).
    pub name: String,
    /// The file holding its contents.
    pub source: PathBuf,
}

/// The zip timestamp of SOURCE_DATE_EPOCH (UTC; clamped to the DOS range
/// 1980–2107; seconds rounded down to even by the format).
pub fn dos_time(epoch: i64) -> DateTime {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let clamped = if y < 1980 {
        (1980, 1, 1, 0, 0, 0)
    } else if y > 2107 {
        (2107, 12, 31, 23, 59, 58)
    } else {
        (
            y as u16,
            m as u8,
            d as u8,
            (secs / 3600) as u8,
            (secs / 60 % 60) as u8,
            (secs % 60) as u8,
        )
    };
    DateTime::from_date_and_time(
        clamped.0, clamped.1, clamped.2, clamped.3, clamped.4, clamped.5,
    )
    .expect("a clamped date is in the DOS range")
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Writes `fs.zip` at `dest` from `members` (sorted here by name), with the
/// directory entries their names need.
pub fn write(dest: &Path, members: &[Member], source_date_epoch: i64) -> Result<()> {
    let file = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut zip = ZipWriter::new(BufWriter::with_capacity(1 << 20, file));
    let time = dos_time(source_date_epoch);
    let opts = |mode: u32| {
        SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .last_modified_time(time)
            .unix_permissions(mode)
            .large_file(false)
    };
    let mut members: Vec<&Member> = members.iter().collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    let mut dirs_done: Vec<String> = Vec::new();
    for m in members {
        // Parent directories first, each once (the names are sorted, so a
        // directory's members follow it).
        let mut prefix = String::new();
        for part in m
            .name
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, d)| d)
        {
            prefix.push_str(part);
            prefix.push('/');
            if !dirs_done.contains(&prefix) {
                zip.add_directory(prefix.as_str(), opts(0o755))
                    .with_context(|| format!("{}: adding {prefix}", dest.display()))?;
                dirs_done.push(prefix.clone());
            }
        }
        let mut src = File::open(&m.source)
            .with_context(|| format!("opening {} for fs.zip", m.source.display()))?;
        let len = src.metadata().map(|md| md.len()).unwrap_or(0);
        if len >= u32::MAX as u64 {
            refuse!(
                "{} is {len} bytes: fs.zip members must stay under 4 GiB (ONIE's unzip reads no zip64)",
                m.source.display()
            );
        }
        zip.start_file(m.name.as_str(), opts(0o644))
            .with_context(|| format!("{}: adding {}", dest.display(), m.name))?;
        io::copy(&mut src, &mut zip)
            .with_context(|| format!("{}: writing {}", dest.display(), m.name))?;
    }
    let w = zip
        .finish()
        .with_context(|| format!("finishing {}", dest.display()))?;
    finish_file(w, dest)
}

fn finish_file(w: BufWriter<File>, dest: &Path) -> Result<()> {
    let mut f = w
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", dest.display()))?;
    f.flush()
        .with_context(|| format!("writing {}", dest.display()))?;
    let _ = f.stream_position();
    f.sync_all()
        .with_context(|| format!("syncing {}", dest.display()))
}

/// `platform.tar.gz`: one (empty) directory per supported platform under
/// `platform/`, where per-box packages would go. Deterministic: sorted,
/// ustar, root-owned, SOURCE_DATE_EPOCH, gzip with a fixed header.
pub fn platform_tar_gz(dest: &Path, platforms: &[&str], source_date_epoch: i64) -> Result<()> {
    let file = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let gz = Compression::Gzip
        .encoder(BufWriter::new(file))
        .with_context(|| format!("writing {}", dest.display()))?;
    let mut tar = tar::Builder::new(gz);
    let mut names: Vec<String> = vec!["platform/".into()];
    names.extend(platforms.iter().map(|p| format!("platform/{p}/")));
    names.sort();
    for name in names {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_path(&name)
            .with_context(|| format!("writing {}", dest.display()))?;
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(source_date_epoch.max(0) as u64);
        h.set_size(0);
        h.set_cksum();
        tar.append(&h, io::empty())
            .with_context(|| format!("writing {}", dest.display()))?;
    }
    let gz = tar
        .into_inner()
        .with_context(|| format!("writing {}", dest.display()))?;
    let w = gz
        .finish()
        .with_context(|| format!("writing {}", dest.display()))?;
    finish_file(w, dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_times() {
        // 2026-07-11 10:16:37 UTC → seconds rounded down to even.
        let t = dos_time(1_783_764_997);
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2026, 7, 11, 10, 16, 36)
        );
        let t = dos_time(0);
        assert_eq!((t.year(), t.month(), t.day()), (1980, 1, 1));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_358), (2023, 1, 1));
    }
}
