//! The ONIE image's `fs.squashfs`: it holds the rootfs without `/boot`,
//! and the running kernel mounts it as the rootfs tar says (root and loop
//! devices; a real image's tar with `IMGBUILD_ONIE_ROOTFS_TAR`).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use imgbuild::image::onie;
use support::onie::*;

#[test]
fn squashfs_holds_the_rootfs_without_boot() {
    use backhand::{FilesystemReader, InnerNode};
    let fx = Fixture::new();
    let out = fx.emit("out", &onie_settings());
    let file = std::io::BufReader::new(fs::File::open(out.join("fs.squashfs")).unwrap());
    let fs_r = FilesystemReader::from_reader(file).unwrap();
    assert_eq!(fs_r.mod_time, EPOCH as u32);
    let mut paths = Vec::new();
    for node in fs_r.files() {
        let p = node.fullpath.display().to_string();
        let h = &node.header;
        assert!(h.mtime <= EPOCH as u32, "{p} mtime {}", h.mtime);
        match &node.inner {
            InnerNode::File(f) => {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut fs_r.file(f).reader(), &mut data).unwrap();
                let on_disk = fs::read(fx.root().join(p.trim_start_matches('/'))).unwrap();
                assert!(data == on_disk, "{p}: contents differ");
            }
            InnerNode::Symlink(s) if p == "/usr/bin/hi" => {
                assert_eq!(s.link, PathBuf::from("hello"))
            }
            _ => {}
        }
        if p == "/usr/bin/hello" {
            assert_eq!(h.permissions, 0o755);
        }
        if p == "/home/user/.profile" && rustix::process::geteuid().is_root() {
            assert_eq!((h.uid, h.gid), (1000, 1000));
        }
        paths.push(p);
    }
    assert!(paths.iter().all(|p| !p.starts_with("/boot")), "{paths:?}");
    for want in [
        "/etc/hostname",
        "/usr/lib/big.bin",
        "/usr/lib/big-link.bin",
        "/var/empty",
    ] {
        assert!(
            paths.iter().any(|p| p == want),
            "{want} missing from {paths:?}"
        );
    }
}

/// One entry of a file listing: path, kind, mode, owner, size, link target, mtime.
type Listing = Vec<(String, char, u32, u32, u32, u64, String, i64)>;

/// The listing of a rootfs tar, `/boot` and the root left out.
fn tar_listing(tar: &Path) -> Listing {
    let mut ar = tar::Archive::new(fs::File::open(tar).unwrap());
    let mut out: Listing = Vec::new();
    let mut sizes = std::collections::HashMap::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let p = raw
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if p.is_empty() || p == "boot" || p.starts_with("boot/") {
            continue;
        }
        let h = e.header();
        let t = h.entry_type();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let (kind, size, link) = if t.is_dir() {
            ('d', 0, String::new())
        } else if t.is_symlink() {
            ('l', link.len() as u64, link)
        } else if t.is_hard_link() {
            let to = link.trim_start_matches("./").to_string();
            ('f', sizes[&to], String::new())
        } else {
            sizes.insert(p.clone(), e.size());
            ('f', e.size(), String::new())
        };
        out.push((
            p,
            kind,
            h.mode().unwrap() & 0o7777,
            h.uid().unwrap() as u32,
            h.gid().unwrap() as u32,
            size,
            link,
            h.mtime().unwrap() as i64,
        ));
    }
    out.sort();
    out
}

/// The listing of a mounted tree.
fn tree_listing(root: &Path) -> Listing {
    use std::os::unix::fs::MetadataExt;
    let mut out: Listing = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            let (kind, size, link) = if m.is_dir() {
                stack.push(e.path());
                ('d', 0, String::new())
            } else if m.file_type().is_symlink() {
                let l = fs::read_link(e.path()).unwrap().display().to_string();
                ('l', m.size(), l)
            } else {
                ('f', m.size(), String::new())
            };
            out.push((
                rel,
                kind,
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                size,
                link,
                m.mtime(),
            ));
        }
    }
    out.sort();
    out
}

/// Loop-mounts `squashfs` read-only with the running kernel and returns
/// its listing; None when this process may not mount (not root, no loop).
fn mounted_listing(squashfs: &Path) -> Option<Listing> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let mnt = tempfile::tempdir().unwrap();
    let st = Command::new("mount")
        .args(["-t", "squashfs", "-o", "loop,ro"])
        .arg(squashfs)
        .arg(mnt.path())
        .status()
        .ok()?;
    if !st.success() {
        return None;
    }
    let listing = std::panic::catch_unwind(|| tree_listing(mnt.path()));
    let _ = Command::new("umount").arg(mnt.path()).status();
    Some(listing.expect("listing the mounted squashfs"))
}

#[test]
fn the_kernel_mounts_the_squashfs_as_the_tar_says() {
    let fx = Fixture::new();
    let out = fx.emit("out", &onie_settings());
    let Some(mounted) = mounted_listing(&out.join("fs.squashfs")) else {
        eprintln!("SKIPPED: cannot loop-mount here (needs root and loop devices)");
        return;
    };
    assert_eq!(mounted, tar_listing(&fx.tar()));
}

/// The squashfs of a real image's rootfs tar (`IMGBUILD_ONIE_ROOTFS_TAR`,
/// e.g. the sonic-p4 tar from the rootfs cache) mounts with the running
/// kernel and lists exactly the tar's entries but /boot; written twice, it
/// is the same bytes.
#[test]
#[ignore = "needs a real rootfs tar (IMGBUILD_ONIE_ROOTFS_TAR), root and loop devices"]
fn real_rootfs_squashfs_mounts_and_is_reproducible() {
    let tar = PathBuf::from(
        std::env::var_os("IMGBUILD_ONIE_ROOTFS_TAR").expect("set IMGBUILD_ONIE_ROOTFS_TAR"),
    );
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.squashfs"), dir.path().join("b.squashfs"));
    let t = std::time::Instant::now();
    onie::squashfs::write_from_tar(&tar, &a, EPOCH).unwrap();
    eprintln!(
        "squashfs: {} bytes in {:.1}s",
        fs::metadata(&a).unwrap().len(),
        t.elapsed().as_secs_f64()
    );
    onie::squashfs::write_from_tar(&tar, &b, EPOCH).unwrap();
    assert_eq!(sha256_file(&a), sha256_file(&b));
    let mounted = mounted_listing(&a).expect("mounting needs root and loop devices");
    let want = tar_listing(&tar);
    assert_eq!(mounted.len(), want.len());
    assert!(mounted == want, "the mounted squashfs differs from the tar");
}
