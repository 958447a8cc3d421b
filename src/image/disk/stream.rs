//! The tar stream `mkfs.ext4 -d -` reads: the rootfs tar as it is, with the
//! disk's own files (an overlay tar: `/etc/fstab`, GRUB's files) in place
//! of any rootfs entry of the same path, and without the overlay's
//! directories the rootfs already has. Entries are copied block for block
//! (pax and GNU extension headers included): nothing is extracted.
//!
//! The rootfs tar is a cache entry, so it is read as hostile: every header's
//! checksum is checked, sizes are bounded by what is left of the file, and
//! an extension header holds at most [`MAX_EXTENSION`] bytes.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};

/// The largest pax or GNU long-name record set accepted for one entry.
const MAX_EXTENSION: u64 = 1 << 20;
/// A tar block.
const BLOCK: usize = 512;

/// One entry of a tar stream: its header blocks (extension headers with
/// their data, then the entry's own header) and the length of its data.
#[derive(Debug)]
pub struct RawEntry {
    /// The path, `./` and a trailing `/` removed (`` for the root).
    pub path: String,
    /// The entry's type flag (`b'0'` file, `b'5'` directory, `b'3'`/`b'4'`
    /// devices, …).
    pub kind: u8,
    /// Every header block of the entry, extension data included.
    pub header: Vec<u8>,
    /// Bytes of data after the header (before padding).
    pub size: u64,
}

impl RawEntry {
    /// The data length padded to whole blocks.
    pub fn padded(&self) -> u64 {
        self.size.div_ceil(BLOCK as u64) * BLOCK as u64
    }
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// A header's numeric field: octal digits, or base-256 when the first byte
/// has its high bit set.
fn number(field: &[u8]) -> io::Result<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(|| bad("a size field overflows"))?;
        }
        return Ok(v);
    }
    let text = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != 0 && b != b' ')
        .collect::<Vec<u8>>();
    if text.is_empty() {
        return Ok(0);
    }
    let text = std::str::from_utf8(&text).map_err(|_| bad("a numeric field is not octal"))?;
    u64::from_str_radix(text, 8).map_err(|_| bad(format!("numeric field {text:?} is not octal")))
}

fn checksum_ok(h: &[u8; BLOCK]) -> io::Result<bool> {
    let stored = number(&h[148..156])?;
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    Ok(stored == sum)
}

fn c_string(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// `path=` of a pax record set, if there is one.
fn pax_path(data: &[u8]) -> Option<Vec<u8>> {
    let mut rest = data;
    let mut found = None;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if len <= space || len > rest.len() {
            return None;
        }
        let record = &rest[space + 1..len];
        if let Some(value) = record.strip_prefix(b"path=") {
            found = Some(value.strip_suffix(b"\n").unwrap_or(value).to_vec());
        }
        rest = &rest[len..];
    }
    found
}

/// The path as compared here: no `./` (or `/`) prefix, no trailing `/`.
fn normal(path: &[u8]) -> String {
    let s = String::from_utf8_lossy(path);
    let s = s.trim_start_matches("./").trim_start_matches('/');
    s.trim_end_matches('/').to_string()
}

/// Reads the next entry's header blocks from `r` (its data is left to the
/// caller); `None` at the end-of-archive block.
pub fn next_entry(r: &mut impl Read) -> io::Result<Option<RawEntry>> {
    let mut header = Vec::new();
    let mut long_name: Option<Vec<u8>> = None;
    loop {
        let mut h = [0u8; BLOCK];
        r.read_exact(&mut h)?;
        if h.iter().all(|&b| b == 0) {
            return if header.is_empty() {
                Ok(None)
            } else {
                Err(bad("the archive ends after an extension header"))
            };
        }
        if !checksum_ok(&h)? {
            return Err(bad("a header's checksum does not match"));
        }
        let kind = h[156];
        let size = number(&h[124..136])?;
        header.extend_from_slice(&h);
        if matches!(kind, b'x' | b'g' | b'L' | b'K') {
            if size > MAX_EXTENSION {
                return Err(bad(format!("an extension header of {size} bytes")));
            }
            let padded = size.div_ceil(BLOCK as u64) as usize * BLOCK;
            let start = header.len();
            header.resize(start + padded, 0);
            r.read_exact(&mut header[start..])?;
            let data = &header[start..start + size as usize];
            match kind {
                b'x' => long_name = pax_path(data).or(long_name),
                b'L' => long_name = Some(c_string(data).to_vec()),
                _ => {}
            }
            continue;
        }
        let path = match long_name {
            Some(name) => name,
            None => {
                let name = c_string(&h[0..100]);
                let prefix = c_string(&h[345..500]);
                if &h[257..262] == b"ustar" && !prefix.is_empty() {
                    [prefix, b"/", name].concat()
                } else {
                    name.to_vec()
                }
            }
        };
        // Only regular files carry data; a hard link's or a device's size
        // field is not a length to skip.
        let size = if matches!(kind, b'0' | 0 | b'7') {
            size
        } else {
            0
        };
        return Ok(Some(RawEntry {
            path: normal(&path),
            kind,
            header,
            size,
        }));
    }
}

/// Copies (or, when `out` is `None`, skips) `n` bytes of `r`.
fn pass(r: &mut impl Read, out: Option<&mut dyn Write>, n: u64) -> io::Result<()> {
    let mut limited = r.take(n);
    let copied = match out {
        Some(w) => io::copy(&mut limited, w)?,
        None => io::copy(&mut limited, &mut io::sink())?,
    };
    if copied != n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the archive ends inside an entry",
        ));
    }
    Ok(())
}

/// What [`merge`] saw of the rootfs.
#[derive(Debug, Default)]
pub struct Merged {
    /// Paths of character and block devices.
    pub devices: Vec<String>,
    /// Entries written from the rootfs.
    pub entries: u64,
}

/// Writes `rootfs` to `out` with `overlay` merged in (see the module docs).
/// `overlay` is called at the rootfs's end with the names in its `/boot`
/// and returns the overlay tar; an error there ends the stream.
pub fn merge(
    rootfs: &mut impl Read,
    out: &mut dyn Write,
    overlay_paths: &BTreeSet<String>,
    overlay: impl FnOnce(&[String]) -> io::Result<Vec<u8>>,
) -> io::Result<Merged> {
    let mut merged = Merged::default();
    let mut dirs = BTreeSet::new();
    let mut boot = Vec::new();
    while let Some(e) = next_entry(rootfs)? {
        if e.kind == b'5' {
            dirs.insert(e.path.clone());
        }
        if matches!(e.kind, b'3' | b'4') {
            merged.devices.push(format!("/{}", e.path));
        }
        if let Some(name) = e.path.strip_prefix("boot/")
            && !name.contains('/')
        {
            boot.push(name.to_string());
        }
        if overlay_paths.contains(&e.path) {
            pass(rootfs, None, e.padded())?;
            continue;
        }
        out.write_all(&e.header)?;
        pass(rootfs, Some(out), e.padded())?;
        merged.entries += 1;
    }
    let extra = overlay(&boot)?;
    let mut extra = io::Cursor::new(extra);
    while let Some(e) = next_entry(&mut extra)? {
        let repeated = e.kind == b'5' && dirs.contains(&e.path);
        let keep = !(e.path.is_empty() || repeated);
        if keep {
            out.write_all(&e.header)?;
        }
        pass(
            &mut extra,
            keep.then_some(out as &mut dyn Write),
            e.padded(),
        )?;
    }
    out.write_all(&[0u8; 2 * BLOCK])?;
    out.flush()?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar (by the tar crate) of (path, kind, data) entries.
    fn tar(entries: &[(&str, u8, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for &(path, kind, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::new(kind));
            h.set_mode(if kind == b'5' { 0o755 } else { 0o644 });
            h.set_size(data.len() as u64);
            b.append_data(&mut h, path, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn listing(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                (path.trim_start_matches("./").to_string(), data)
            })
            .collect()
    }

    #[test]
    fn overlay_files_replace_rootfs_entries_and_known_directories_are_not_repeated() {
        let long = format!("./usr/{}/file", "d".repeat(150));
        let rootfs = tar(&[
            ("./", b'5', b""),
            ("./boot/", b'5', b""),
            ("./boot/vmlinuz-6.1", b'0', b"kernel"),
            ("./etc/", b'5', b""),
            ("./etc/fstab", b'0', b"old fstab"),
            (&long, b'0', &[1u8; 1000]),
        ]);
        let paths: BTreeSet<String> = ["etc/fstab".to_string(), "boot/grub/grub.cfg".into()].into();
        let mut out = Vec::new();
        let mut seen_boot = Vec::new();
        let merged = merge(&mut &rootfs[..], &mut out, &paths, |boot| {
            seen_boot = boot.to_vec();
            Ok(tar(&[
                ("./", b'5', b""),
                ("./boot/", b'5', b""),
                ("./boot/grub/", b'5', b""),
                ("./boot/grub/grub.cfg", b'0', b"menu"),
                ("./etc/", b'5', b""),
                ("./etc/fstab", b'0', b"new fstab"),
            ]))
        })
        .unwrap();
        assert_eq!(seen_boot, vec!["vmlinuz-6.1".to_string()]);
        assert_eq!(merged.entries, 5);
        let names: Vec<(String, Vec<u8>)> = listing(&out);
        let just_names: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            just_names,
            [
                "",
                "boot/",
                "boot/vmlinuz-6.1",
                "etc/",
                long.trim_start_matches("./"),
                "boot/grub/",
                "boot/grub/grub.cfg",
                "etc/fstab"
            ]
        );
        assert_eq!(names[4].1, vec![1u8; 1000]);
        assert_eq!(names[7].1, b"new fstab");
    }

    #[test]
    fn damaged_archives_are_refused() {
        let rootfs = tar(&[("./etc/", b'5', b""), ("./etc/hosts", b'0', b"127.0.0.1\n")]);
        let run = |bytes: &[u8]| {
            merge(&mut &bytes[..], &mut Vec::new(), &BTreeSet::new(), |_| {
                Ok(tar(&[]))
            })
        };
        assert!(run(&rootfs).is_ok());
        let mut flipped = rootfs.clone();
        flipped[BLOCK + 3] ^= 1;
        assert!(run(&flipped).unwrap_err().to_string().contains("checksum"));
        // Cut inside the second entry's data.
        assert!(run(&rootfs[..2 * BLOCK + 4]).is_err());
        // A failing overlay ends the stream with its error.
        let err = merge(&mut &rootfs[..], &mut Vec::new(), &BTreeSet::new(), |_| {
            Err(io::Error::other("no kernel"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "no kernel");
    }
}
