//! The first MiB of the disk: an msdos (MBR) partition table with one
//! bootable Linux partition, GRUB's `boot.img` in the boot code area and
//! GRUB's `core.img` embedded in the gap before partition 1 — what
//! `grub-bios-setup` does for an embedded install, written here so that no
//! tool needs to probe a block device (and the host's is never looked at).
//!
//! The boot sector layout (GRUB's `i386/pc/boot.h`): boot code with the BIOS
//! parameter block at 0x03..0x5a, the sector of core.img at 0x5c (u64 LE),
//! the boot drive at 0x64 (0xff = use the drive the BIOS booted from), the
//! floppy probe jump at 0x66, the disk signature at 0x1b8, four partition
//! entries at 0x1be and the 0x55aa signature at 0x1fe. core.img's first
//! sector (diskboot) ends with a block list (start u64, length u16, segment
//! u16) telling it where the rest of core.img is.

use std::fmt;

/// Bytes per sector.
pub const SECTOR: u64 = 512;
/// First sector of partition 1 (1 MiB, the usual alignment).
pub const PART_START: u64 = 2048;

const KERNEL_SECTOR: usize = 0x5c;
const BOOT_DRIVE: usize = 0x64;
const DRIVE_CHECK: usize = 0x66;
const DISK_SIGNATURE: usize = 0x1b8;
const PART_TABLE: usize = 0x1be;
/// Where GRUB loads the rest of core.img: `GRUB_BOOT_I386_PC_KERNEL_SEG`
/// plus one sector (the diskboot sector is already in memory).
const CORE_SEGMENT: u16 = 0x800 + (SECTOR as u16 >> 4);
/// Size of a diskboot block list entry.
const BLOCKLIST_SIZE: usize = 12;

/// Why the boot area cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MbrError {
    /// `boot.img` is not one 512-byte sector.
    BootImage(usize),
    /// `core.img` is empty, not sector-aligned, or too large for the gap.
    CoreImage(usize),
    /// The disk is too small for the partition.
    DiskTooSmall(u64),
}

impl fmt::Display for MbrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MbrError::BootImage(n) => write!(f, "GRUB boot.img is {n} bytes, not 512"),
            MbrError::CoreImage(n) => write!(
                f,
                "GRUB core.img is {n} bytes: it must be 2 to {} whole sectors to fit before partition 1",
                PART_START - 1
            ),
            MbrError::DiskTooSmall(n) => {
                write!(f, "disk of {n} bytes is too small for a partition")
            }
        }
    }
}

impl std::error::Error for MbrError {}

/// The first `PART_START` sectors of a disk of `disk_size` bytes: boot
/// sector with the partition table, then core.img from sector 1. The rest
/// of the gap is zeros.
pub fn boot_area(
    boot_img: &[u8],
    core_img: &[u8],
    disk_size: u64,
    disk_signature: u32,
) -> Result<Vec<u8>, MbrError> {
    if boot_img.len() != SECTOR as usize {
        return Err(MbrError::BootImage(boot_img.len()));
    }
    let core_sectors = core_img.len() as u64 / SECTOR;
    if !(core_img.len() as u64).is_multiple_of(SECTOR) || !(2..PART_START).contains(&core_sectors) {
        return Err(MbrError::CoreImage(core_img.len()));
    }
    let total = disk_size / SECTOR;
    if total <= PART_START {
        return Err(MbrError::DiskTooSmall(disk_size));
    }
    let mut area = vec![0u8; (PART_START * SECTOR) as usize];
    let mbr = &mut area[..SECTOR as usize];
    mbr[..DISK_SIGNATURE].copy_from_slice(&boot_img[..DISK_SIGNATURE]);
    mbr[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&1u64.to_le_bytes());
    mbr[BOOT_DRIVE] = 0xff;
    // A hard disk: skip the floppy probe (as grub-bios-setup does).
    mbr[DRIVE_CHECK] = 0x90;
    mbr[DRIVE_CHECK + 1] = 0x90;
    mbr[DISK_SIGNATURE..DISK_SIGNATURE + 4].copy_from_slice(&disk_signature.to_le_bytes());
    let entry = partition_entry(PART_START, total - PART_START);
    mbr[PART_TABLE..PART_TABLE + 16].copy_from_slice(&entry);
    mbr[510] = 0x55;
    mbr[511] = 0xaa;

    let core = &mut area[SECTOR as usize..SECTOR as usize + core_img.len()];
    core.copy_from_slice(core_img);
    let list = SECTOR as usize - BLOCKLIST_SIZE;
    core[list..list + 8].copy_from_slice(&2u64.to_le_bytes());
    let rest = u16::try_from(core_sectors - 1).expect("at most 2046 sectors");
    core[list + 8..list + 10].copy_from_slice(&rest.to_le_bytes());
    core[list + 10..list + 12].copy_from_slice(&CORE_SEGMENT.to_le_bytes());
    Ok(area)
}

/// A bootable (0x80) Linux (0x83) partition entry with CHS addresses for
/// the usual 255-head, 63-sector geometry (saturated past cylinder 1023).
fn partition_entry(start: u64, sectors: u64) -> [u8; 16] {
    let mut e = [0u8; 16];
    e[0] = 0x80;
    e[1..4].copy_from_slice(&chs(start));
    e[4] = 0x83;
    e[5..8].copy_from_slice(&chs(start + sectors - 1));
    let lba = |v: u64| u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes();
    e[8..12].copy_from_slice(&lba(start));
    e[12..16].copy_from_slice(&lba(sectors));
    e
}

/// The 3-byte CHS form of `lba`: head, sector | cylinder high bits, cylinder low.
fn chs(lba: u64) -> [u8; 3] {
    const HEADS: u64 = 255;
    const SECTORS: u64 = 63;
    let cylinder = lba / (HEADS * SECTORS);
    if cylinder > 1023 {
        return [0xfe, 0xff, 0xff];
    }
    let head = (lba / SECTORS) % HEADS;
    let sector = lba % SECTORS + 1;
    [
        head as u8,
        (sector as u8) | (((cylinder >> 8) as u8) << 6),
        cylinder as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot() -> Vec<u8> {
        (0..512).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn layout() {
        let core: Vec<u8> = vec![0xab; 3 * 512];
        // 16 GiB: past cylinder 1023, so the end CHS saturates.
        let size = 16u64 << 30;
        let area = boot_area(&boot(), &core, size, 0x1234_5678).unwrap();
        assert_eq!(area.len(), 1 << 20);
        // Boot code kept, patched fields set.
        assert_eq!(area[..0x5c], boot()[..0x5c]);
        assert_eq!(area[0x5c..0x64], 1u64.to_le_bytes());
        assert_eq!(area[0x64], 0xff);
        assert_eq!(area[0x66..0x68], [0x90, 0x90]);
        assert_eq!(area[0x68..0x1b8], boot()[0x68..0x1b8]);
        assert_eq!(area[0x1b8..0x1bc], [0x78, 0x56, 0x34, 0x12]);
        assert_eq!(area[510..512], [0x55, 0xaa]);
        // Partition 1: bootable Linux from sector 2048 to the end.
        let p = &area[0x1be..0x1ce];
        assert_eq!(p[0], 0x80);
        assert_eq!(p[4], 0x83);
        assert_eq!(p[1..4], [0x20, 0x21, 0x00]);
        assert_eq!(p[5..8], [0xfe, 0xff, 0xff]);
        assert_eq!(u32::from_le_bytes(p[8..12].try_into().unwrap()), 2048);
        let total = (size / 512) as u32;
        assert_eq!(
            u32::from_le_bytes(p[12..16].try_into().unwrap()),
            total - 2048
        );
        assert!(area[0x1ce..0x1fe].iter().all(|&b| b == 0));
        // core.img at sector 1, its block list pointing at sectors 2.. (2 more).
        let list = 1024 - 12;
        assert_eq!(area[512..list], core[..list - 512]);
        assert_eq!(area[list..list + 8], 2u64.to_le_bytes());
        assert_eq!(area[list + 8..list + 10], 2u16.to_le_bytes());
        assert_eq!(area[list + 10..list + 12], 0x820u16.to_le_bytes());
        assert_eq!(area[1024..2048], core[512..]);
        assert!(area[2048..].iter().all(|&b| b == 0));
    }

    #[test]
    fn small_disk_chs_is_exact() {
        // 100 MiB: the last sector is at cylinder 12.
        let e = partition_entry(2048, 204800 - 2048);
        let last = 204799u64;
        let c = last / (255 * 63);
        assert_eq!(c, 12);
        assert_eq!(e[5], ((last / 63) % 255) as u8);
        assert_eq!(e[6] & 0x3f, (last % 63 + 1) as u8);
        assert_eq!(e[7], 12);
    }

    #[test]
    fn rejects_bad_inputs() {
        let core = vec![0u8; 1024];
        assert_eq!(
            boot_area(&[0; 446], &core, 1 << 30, 0),
            Err(MbrError::BootImage(446))
        );
        assert_eq!(
            boot_area(&boot(), &[0; 1000], 1 << 30, 0),
            Err(MbrError::CoreImage(1000))
        );
        assert_eq!(
            boot_area(&boot(), &vec![0; 2048 * 512], 1 << 30, 0),
            Err(MbrError::CoreImage(2048 * 512))
        );
        assert_eq!(
            boot_area(&boot(), &core, 1 << 20, 0),
            Err(MbrError::DiskTooSmall(1 << 20))
        );
    }
}
