//! The image's initramfs, made once.
//!
//! Debian makes it while configuring, twice: the kernel's postinst hook runs
//! `update-initramfs -c`, then initramfs-tools' trigger `update-initramfs -u`
//! makes it again at the end of the same dpkg run. Each run decompresses
//! and copies the kernel's modules and compresses the archive (seconds of
//! CPU each). imgbuild instead runs dpkg with `INITRD=No` when
//! initramfs-tools' kernel hook is in the image (the hook then skips `-c`,
//! the trigger finds no initramfs to update, and `linux-update-symlinks`
//! leaves out the `/initrd.img` links), and once every package is
//! configured runs, for each kernel in `/boot` without an initramfs,
//! `update-initramfs -c -k VERSION` and `linux-update-symlinks install`
//! again ([`make_command`]): what the hook would have done, on the tree the
//! trigger saw, so the image has the same bytes as with the two runs.
//!
//! (A recipe step that adds an initramfs hook still has to run
//! `update-initramfs -u -k all` itself: the package stage, cached apart
//! from the steps, holds the initramfs.)

use std::ffi::OsString;
use std::fs;
use std::path::Path;

/// initramfs-tools' kernel postinst hook, which reads `INITRD`.
const KERNEL_HOOK: &str = "etc/kernel/postinst.d/initramfs-tools";
/// The generator.
const UPDATE_INITRAMFS: &str = "usr/sbin/update-initramfs";

/// Whether the image's initramfs is left to [`make_command`]: the image
/// has initramfs-tools' kernel hook and its generator.
pub(crate) fn deferred(root: &Path) -> bool {
    root.join(KERNEL_HOOK).is_file() && root.join(UPDATE_INITRAMFS).is_file()
}

/// The kernel versions in `/boot` (`vmlinuz-VERSION` with its modules in
/// `/usr/lib/modules/VERSION`) that have no `initrd.img-VERSION`, sorted;
/// empty unless [`deferred`].
pub(crate) fn missing(root: &Path) -> Vec<String> {
    if !deferred(root) {
        return Vec::new();
    }
    let Ok(entries) = fs::read_dir(root.join("boot")) else {
        return Vec::new();
    };
    let mut versions: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = name.strip_prefix("vmlinuz-")?.to_string();
            let complete = root.join("usr/lib/modules").join(&version).is_dir()
                && fs::symlink_metadata(root.join("boot").join(format!("initrd.img-{version}")))
                    .is_err();
            complete.then_some(version)
        })
        .collect();
    versions.sort();
    versions
}

/// The command that makes the initramfs of kernel `version` and the
/// `/initrd.img` links, as the kernel's postinst would have without `INITRD=No`.
pub(crate) fn make_command(version: &str) -> Vec<OsString> {
    [
        "/bin/sh",
        "-c",
        "update-initramfs -c -k \"$1\" || exit 1\n\
         if command -v linux-update-symlinks >/dev/null; then\n\
         linux-update-symlinks install \"$1\" \"/boot/vmlinuz-$1\" || exit 1\n\
         fi",
        "sh",
        version,
    ]
    .into_iter()
    .map(OsString::from)
    .collect()
}

/// The environment of [`make_command`]: mkinitramfs copies the kernel's
/// modules into `$TMPDIR` (default `/var/tmp`, in the tree, on disk) before
/// archiving them; the sandbox's `/tmp` is a fresh tmpfs, so the copy and
/// its removal never touch the disk. The archive's members are named
/// relative to that directory: the initramfs has the same bytes.
pub(crate) fn make_env() -> Vec<(String, String)> {
    vec![("TMPDIR".to_string(), "/tmp".to_string())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_without_an_initramfs_are_listed_when_initramfs_tools_is_there() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for d in [
            "boot",
            "usr/lib/modules/6.1.0-1-amd64",
            "usr/lib/modules/6.1.0-2-amd64",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("boot/vmlinuz-6.1.0-1-amd64"), b"k").unwrap();
        fs::write(root.join("boot/vmlinuz-6.1.0-2-amd64"), b"k").unwrap();
        // No modules: not a kernel the generator could use.
        fs::write(root.join("boot/vmlinuz-7.0-orphan"), b"k").unwrap();
        fs::write(root.join("boot/initrd.img-6.1.0-2-amd64"), b"i").unwrap();
        assert!(
            missing(root).is_empty(),
            "no initramfs-tools: nothing deferred"
        );
        fs::create_dir_all(root.join("etc/kernel/postinst.d")).unwrap();
        fs::create_dir_all(root.join("usr/sbin")).unwrap();
        fs::write(root.join(KERNEL_HOOK), b"#!/bin/sh\n").unwrap();
        fs::write(root.join(UPDATE_INITRAMFS), b"#!/bin/sh\n").unwrap();
        assert_eq!(missing(root), vec!["6.1.0-1-amd64".to_string()]);
        let argv = make_command("6.1.0-1-amd64");
        assert_eq!(argv.last().unwrap(), "6.1.0-1-amd64");
    }
}
