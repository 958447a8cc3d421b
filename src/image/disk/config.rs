//! The text files the disk image adds to the rootfs: `/etc/fstab`,
//! `/boot/grub/grub.cfg`, and the early configuration embedded in core.img.

use std::fmt::Write as _;

use crate::core::version::DebVersion;

/// The kernel command line's consoles: serial first, then the screen. The
/// last `console=` gets `/dev/console`; systemd starts a getty on every one.
pub const CONSOLES: &str = "console=ttyS0,115200 console=tty0";

/// `/etc/fstab`: the root filesystem by UUID, nothing else (no swap: kubeadm
/// wants it off, and R2lab images never had any).
pub fn fstab(uuid: &str) -> String {
    format!(
        "# /etc/fstab, written by imgbuild for the disk image.\n\
         # <file system>  <mount point>  <type>  <options>  <dump>  <pass>\n\
         UUID={uuid}  /  ext4  errors=remount-ro  0  1\n"
    )
}

/// core.img's embedded configuration: find the root filesystem by UUID
/// (whatever the BIOS disk order) and read `/boot/grub/grub.cfg` from it.
pub fn early_cfg(uuid: &str) -> String {
    format!(
        "search --no-floppy --fs-uuid --set=root {uuid}\n\
         set prefix=($root)/boot/grub\n"
    )
}

/// `/boot/grub/grub.cfg`: GRUB on the serial line and the screen, one entry
/// booting `kernel` (a version, e.g. `6.12.48+deb13-amd64`) from the root
/// filesystem `uuid`.
pub fn grub_cfg(title: &str, uuid: &str, kernel: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Written by imgbuild for the disk image.");
    let _ = writeln!(s, "serial --unit=0 --speed=115200");
    let _ = writeln!(s, "terminal_input serial console");
    let _ = writeln!(s, "terminal_output serial console");
    let _ = writeln!(s, "set timeout=1");
    let _ = writeln!(s, "set default=0");
    let _ = writeln!(s, "set gfxpayload=text");
    let _ = writeln!(s, "search --no-floppy --fs-uuid --set=root {uuid}");
    let _ = writeln!(s, "menuentry '{}' {{", title.replace('\'', ""));
    let _ = writeln!(
        s,
        "  linux /boot/vmlinuz-{kernel} root=UUID={uuid} ro {CONSOLES}"
    );
    let _ = writeln!(s, "  initrd /boot/initrd.img-{kernel}");
    let _ = writeln!(s, "}}");
    s
}

/// The kernel to boot among `/boot` file names: the highest version `V`
/// with both `vmlinuz-V` and `initrd.img-V`. `None` when there is none.
pub fn pick_kernel<'a>(boot_files: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let names: Vec<&str> = boot_files.into_iter().collect();
    names
        .iter()
        .filter_map(|n| n.strip_prefix("vmlinuz-"))
        .filter(|v| names.contains(&format!("initrd.img-{v}").as_str()))
        .max_by(|a, b| match (DebVersion::parse(a), DebVersion::parse(b)) {
            (Ok(x), Ok(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
            _ => a.cmp(b),
        })
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "0f3c6b1e-8a52-4d67-9c1e-2b7a5e0d4f19";

    #[test]
    fn fstab_mounts_root_by_uuid_and_has_no_swap() {
        let f = fstab(U);
        let lines: Vec<&str> = f.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [format!("UUID={U}  /  ext4  errors=remount-ro  0  1")]
        );
        assert!(!f.contains("swap"));
    }

    #[test]
    fn grub_cfg_boots_the_kernel_on_serial() {
        let c = grub_cfg("r2lab-node", U, "6.12.48+deb13-amd64");
        assert!(c.contains("serial --unit=0 --speed=115200\n"));
        assert!(c.contains("terminal_output serial console\n"));
        assert!(c.contains(&format!(
            "  linux /boot/vmlinuz-6.12.48+deb13-amd64 root=UUID={U} ro console=ttyS0,115200 console=tty0\n"
        )));
        assert!(c.contains("  initrd /boot/initrd.img-6.12.48+deb13-amd64\n"));
        assert!(c.contains("menuentry 'r2lab-node' {"));
        assert!(
            early_cfg(U).starts_with(&format!("search --no-floppy --fs-uuid --set=root {U}\n"))
        );
    }

    #[test]
    fn picks_the_newest_kernel_with_an_initrd() {
        let files = [
            "config-6.1.0-9-amd64",
            "vmlinuz-6.1.0-9-amd64",
            "initrd.img-6.1.0-9-amd64",
            "vmlinuz-6.1.0-10-amd64",
            "initrd.img-6.1.0-10-amd64",
            "vmlinuz-6.2.0-1-amd64",
        ];
        assert_eq!(pick_kernel(files).as_deref(), Some("6.1.0-10-amd64"));
        assert_eq!(pick_kernel(["vmlinuz-6.2.0-1-amd64"]), None);
        assert_eq!(pick_kernel([]), None);
    }
}
