//! The header blocks of a tar entry: ustar, with a pax extended header
//! only where ustar cannot say it (long names, large ids or sizes,
//! extended attributes), its records in a fixed order.

use super::ByteRecords;

/// ustar `name` field size.
const NAME_LEN: usize = 100;
/// ustar `prefix` field size.
const PREFIX_LEN: usize = 155;
/// Largest value of an 8-byte octal field (uid, gid).
const MAX_ID: u64 = 0o7_777_777;
/// Largest value of a 12-byte octal field (size, mtime).
const MAX_SIZE: u64 = 0o77_777_777_777;

/// The fields of one tar entry.
pub(super) struct Entry<'a> {
    pub(super) name: &'a [u8],
    pub(super) kind: u8,
    pub(super) mode: u32,
    pub(super) uid: u64,
    pub(super) gid: u64,
    pub(super) size: u64,
    pub(super) mtime: i64,
    pub(super) link: &'a [u8],
    pub(super) dev: (u32, u32),
    pub(super) xattrs: ByteRecords,
}

/// Zero bytes after `size` bytes of data to reach a 512-byte boundary.
pub(super) fn padding(size: u64) -> usize {
    ((512 - size % 512) % 512) as usize
}

/// The header block(s) of an entry: a pax extended header first when needed.
pub(super) fn header_blocks(e: &Entry<'_>) -> Vec<u8> {
    let mut pax: ByteRecords = Vec::new();
    let (prefix, short_name) = match split_name(e.name) {
        Some(parts) => parts,
        None => {
            pax.push((b"path".to_vec(), e.name.to_vec()));
            (&b""[..], &e.name[..e.name.len().min(NAME_LEN)])
        }
    };
    let link = if e.link.len() > NAME_LEN {
        pax.push((b"linkpath".to_vec(), e.link.to_vec()));
        &e.link[..NAME_LEN]
    } else {
        e.link
    };
    let mut numeric = |key: &str, value: u64, max: u64| {
        if value > max {
            pax.push((key.as_bytes().to_vec(), value.to_string().into_bytes()));
            0
        } else {
            value
        }
    };
    let size = numeric("size", e.size, MAX_SIZE);
    let uid = numeric("uid", e.uid, MAX_ID);
    let gid = numeric("gid", e.gid, MAX_ID);
    let mtime = if e.mtime < 0 || e.mtime as u64 > MAX_SIZE {
        pax.push((b"mtime".to_vec(), e.mtime.to_string().into_bytes()));
        0
    } else {
        e.mtime as u64
    };
    for (name, value) in &e.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name);
        pax.push((key, value.clone()));
    }

    let mut out = Vec::with_capacity(1024);
    if !pax.is_empty() {
        let data = pax_records(&pax);
        let mut pax_name = b"./PaxHeaders/".to_vec();
        let base = base_name(e.name);
        pax_name.extend_from_slice(&base[..base.len().min(NAME_LEN - pax_name.len())]);
        let h = ustar_header(&Header {
            prefix: b"",
            name: &pax_name,
            kind: b'x',
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: data.len() as u64,
            mtime,
            link: b"",
            dev: (0, 0),
        });
        out.extend_from_slice(&h);
        out.extend_from_slice(&data);
        out.resize(out.len() + padding(data.len() as u64), 0);
    }
    out.extend_from_slice(&ustar_header(&Header {
        prefix,
        name: short_name,
        kind: e.kind,
        mode: e.mode,
        uid,
        gid,
        size,
        mtime,
        link,
        dev: e.dev,
    }));
    out
}

/// The last component of a tar name (without a trailing `/`).
fn base_name(name: &[u8]) -> &[u8] {
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

/// Splits a name into ustar (prefix, name) fields, if it fits.
fn split_name(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= NAME_LEN {
        return Some((b"", name));
    }
    // Split at the first `/` that leaves a name short enough; the slash
    // itself is implied between the two fields.
    let min_split = name.len().saturating_sub(NAME_LEN + 1);
    (min_split..name.len().min(PREFIX_LEN + 1))
        .filter(|&i| name[i] == b'/')
        .find(|&i| i > 0 && i + 1 < name.len())
        .map(|i| (&name[..i], &name[i + 1..]))
}

/// pax records `LEN KEY=VALUE\n`, LEN counting the whole record.
fn pax_records(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        let rest = key.len() + value.len() + 3; // space, '=', newline
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(key);
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

struct Header<'a> {
    prefix: &'a [u8],
    name: &'a [u8],
    kind: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    link: &'a [u8],
    dev: (u32, u32),
}

/// One 512-byte ustar header; every value must already fit its field.
fn ustar_header(h: &Header<'_>) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[..h.name.len()].copy_from_slice(h.name);
    octal(&mut b[100..108], u64::from(h.mode));
    octal(&mut b[108..116], h.uid);
    octal(&mut b[116..124], h.gid);
    octal(&mut b[124..136], h.size);
    octal(&mut b[136..148], h.mtime);
    b[156] = h.kind;
    b[157..157 + h.link.len()].copy_from_slice(h.link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    // uname/gname (265..329) stay empty: owners are numeric only.
    if matches!(h.kind, b'3' | b'4') {
        octal(&mut b[329..337], u64::from(h.dev.0));
        octal(&mut b[337..345], u64::from(h.dev.1));
    }
    b[345..345 + h.prefix.len()].copy_from_slice(h.prefix);
    // The checksum is computed with its own field as spaces.
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    b[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
    b[154] = 0;
    b
}

/// Zero-padded octal with a terminating NUL, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let r = pax_records(&[(b"a".to_vec(), b"bcd".to_vec())]);
        assert_eq!(r, b"8 a=bcd\n");
        // 97 bytes without the length: "99 " would make 100, so the length
        // needs three digits and the record is 101 bytes long.
        let r = pax_records(&[(b"k".to_vec(), vec![b'v'; 94])]);
        assert_eq!(r.len(), 101);
        let len: usize = std::str::from_utf8(&r[..r.iter().position(|&b| b == b' ').unwrap()])
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, r.len());
    }

    #[test]
    fn long_names_split_or_go_to_pax() {
        let short = vec![b'a'; 100];
        assert_eq!(split_name(&short), Some((&b""[..], &short[..])));
        let mut split = vec![b'd'; 120];
        split.push(b'/');
        split.extend_from_slice(&[b'f'; 50]);
        let (p, n) = split_name(&split).unwrap();
        assert_eq!((p.len(), n.len()), (120, 50));
        let no_slash = vec![b'x'; 101];
        assert_eq!(split_name(&no_slash), None);
    }

    #[test]
    fn header_checksum_matches_the_tar_crate() {
        let h = ustar_header(&Header {
            prefix: b"",
            name: b"./etc/passwd",
            kind: b'0',
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 10,
            mtime: 1_700_000_000,
            link: b"",
            dev: (0, 0),
        });
        let parsed = ::tar::Header::from_byte_slice(&h);
        assert_eq!(parsed.cksum().unwrap(), {
            let mut c = h;
            c[148..156].fill(b' ');
            c.iter().map(|&x| u32::from(x)).sum::<u32>()
        });
        assert_eq!(parsed.size().unwrap(), 10);
        assert_eq!(parsed.mode().unwrap(), 0o644);
    }
}
