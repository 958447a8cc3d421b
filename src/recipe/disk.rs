//! The `[disk]` table: a bootable raw disk image of the rootfs.
//!
//! ```toml
//! [disk]
//! size = "4GiB"                                     # whole disk; MiB multiple
//! uuid = "0f3c…"                                    # optional: ext4 filesystem UUID
//! hash-seed = "5d2e…"                               # optional: ext4 directory hash seed
//! ```
//!
//! Unset UUIDs are derived from the (leaf) recipe name, so they are fixed for
//! a recipe and differ between recipes (`kubernetes-r2lab` extends
//! `r2lab-node` but gets its own root UUID). A child recipe's `[disk]` keys
//! override its parent's key by key.

use sha2::{Digest, Sha256};
use toml::Spanned;

use super::error::{RecipeError, SourceText};
use super::raw::RawDisk;

/// One MiB: the disk size granularity and the offset of partition 1.
pub const MIB: u64 = 1 << 20;

/// Smallest disk accepted: room for GRUB's embedding area and a small root.
const MIN_SIZE: u64 = 64 * MIB;

/// The `[disk]` settings of a merged recipe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Disk {
    /// Size of the whole disk image in bytes (a multiple of 1 MiB).
    pub size: u64,
    /// UUID of the root ext4 filesystem (lower-case, hyphenated).
    pub uuid: String,
    /// ext4 directory hash seed (a UUID).
    pub hash_seed: String,
}

/// `[disk]` of one recipe file, before merging and defaulting.
#[derive(Debug, Clone)]
pub(super) struct DiskLayer {
    size: u64,
    uuid: Option<String>,
    hash_seed: Option<String>,
}

impl DiskLayer {
    /// This (parent) layer with the keys `child` sets replaced.
    pub(super) fn overridden_by(self, child: &DiskLayer) -> DiskLayer {
        DiskLayer {
            size: child.size,
            uuid: child.uuid.clone().or(self.uuid),
            hash_seed: child.hash_seed.clone().or(self.hash_seed),
        }
    }

    /// The final settings for recipe `name`, deriving unset UUIDs from it.
    pub(super) fn finish(self, name: &str) -> Disk {
        Disk {
            size: self.size,
            uuid: self.uuid.unwrap_or_else(|| derived_uuid("fs-uuid", name)),
            hash_seed: self
                .hash_seed
                .unwrap_or_else(|| derived_uuid("hash-seed", name)),
        }
    }
}

/// Validates one `[disk]` table.
pub(super) fn layer(src: &SourceText<'_>, d: &Spanned<RawDisk>) -> Result<DiskLayer, RecipeError> {
    let d = d.get_ref();
    let size = parse_size(d.size.get_ref()).map_err(|m| {
        src.error_hint(
            d.size.span(),
            m,
            Some("write e.g. \"4GiB\", \"512MiB\" or a byte count; a multiple of 1 MiB".into()),
        )
    })?;
    let uuid_of = |v: &Option<Spanned<String>>, key: &str| -> Result<Option<String>, RecipeError> {
        match v {
            None => Ok(None),
            Some(u) if is_uuid(u.get_ref()) => Ok(Some(u.get_ref().to_ascii_lowercase())),
            Some(u) => Err(src.error_hint(
                u.span(),
                format!("invalid `{key}` `{}`", u.get_ref()),
                Some("a UUID: 8-4-4-4-12 hexadecimal digits".into()),
            )),
        }
    };
    Ok(DiskLayer {
        size,
        uuid: uuid_of(&d.uuid, "uuid")?,
        hash_seed: uuid_of(&d.hash_seed, "hash-seed")?,
    })
}

/// `"4GiB"`, `"4G"`, `"512MiB"`, `"512M"` or a plain byte count.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid disk size `{text}`"))?;
    let mult = match unit.trim() {
        "" => 1,
        "M" | "MiB" => MIB,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        other => return Err(format!("invalid disk size unit `{other}` in `{text}`")),
    };
    let size = n
        .checked_mul(mult)
        .ok_or_else(|| format!("disk size `{text}` is too large"))?;
    if !size.is_multiple_of(MIB) {
        return Err(format!("disk size `{text}` is not a multiple of 1 MiB"));
    }
    if size < MIN_SIZE {
        return Err(format!("disk size `{text}` is below the minimum of 64 MiB"));
    }
    Ok(size)
}

/// 8-4-4-4-12 hexadecimal digits.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A version-4-shaped UUID from sha256(`imgbuild disk <what>` NUL `name`):
/// stable for a recipe, different between recipes and between uses.
pub(crate) fn derived_uuid(what: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("imgbuild disk {what}\0{name}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("67108864"), Ok(64 << 20));
        assert!(parse_size("4GB").unwrap_err().contains("unit `GB`"));
        assert!(parse_size("1000000000").unwrap_err().contains("multiple"));
        assert!(parse_size("32MiB").unwrap_err().contains("minimum"));
        assert!(parse_size("GiB").is_err());
    }

    #[test]
    fn derived_uuids_are_stable_and_distinct() {
        let a = derived_uuid("fs-uuid", "r2lab-node");
        assert_eq!(a, derived_uuid("fs-uuid", "r2lab-node"));
        assert!(is_uuid(&a), "{a}");
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, derived_uuid("fs-uuid", "kubernetes-r2lab"));
        assert_ne!(a, derived_uuid("hash-seed", "r2lab-node"));
    }

    #[test]
    fn uuid_shape() {
        assert!(is_uuid("0f3c6b1e-8a52-4d67-9c1e-2b7a5e0d4f19"));
        assert!(!is_uuid("0f3c6b1e-8a52-4d67-9c1e-2b7a5e0d4f1"));
        assert!(!is_uuid("0f3c6b1e8a524d679c1e2b7a5e0d4f19"));
        assert!(!is_uuid("0f3c6b1e-8a52-4d67-9c1e-2b7a5e0d4f1g"));
    }
}
