//! A rootfs-like test tree (hard links, symlinks, devices, xattrs, odd
//! names, large ids, old mtimes) made in either order under any umask, and
//! its deterministic tar: the fixture of the tar and image output tests.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use imgbuild::pack::tar::{TarOptions, write_tree};

/// SOURCE_DATE_EPOCH for the tests: 2001-09-09, before any file made now.
pub const EPOCH: i64 = 1_000_000_000;
/// An mtime older than EPOCH, which must be kept as is.
pub const OLD: i64 = 900_000_000;
/// A uid too large for ustar's octal field (needs a pax record).
pub const BIG_UID: u32 = 3_000_000;
/// A file capability blob (cap_net_raw+ep, VFS_CAP_REVISION_2).
pub const CAP: [u8; 20] = [
    0x00, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,
];

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn set_mtime(path: &Path, secs: i64) {
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &ts,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

pub fn long_name() -> String {
    format!("{}/{}", "d".repeat(120), "f".repeat(90))
}

/// One step of making the test tree, given its root.
pub type Step = Box<dyn Fn(&Path)>;

/// The steps that make the test tree; [`make_tree`] runs them in either order.
pub fn steps() -> Vec<Step> {
    vec![
        Box::new(|r| {
            fs::create_dir_all(r.join("usr/bin")).unwrap();
            fs::write(r.join("usr/bin/ping"), b"#!ping\n").unwrap();
            fs::set_permissions(r.join("usr/bin/ping"), fs::Permissions::from_mode(0o4755))
                .unwrap();
            rustix::fs::lsetxattr(
                r.join("usr/bin/ping"),
                "security.capability",
                &CAP,
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
        }),
        Box::new(|r| {
            fs::create_dir_all(r.join("etc")).unwrap();
            fs::write(r.join("etc/shadow"), b"root:*:1::::::\n").unwrap();
            fs::set_permissions(r.join("etc/shadow"), fs::Permissions::from_mode(0o640)).unwrap();
            rustix::fs::chown(
                r.join("etc/shadow"),
                Some(rustix::fs::Uid::from_raw(0)),
                Some(rustix::fs::Gid::from_raw(42)),
            )
            .unwrap();
            fs::write(r.join("etc/old"), b"kept mtime\n").unwrap();
            fs::set_permissions(r.join("etc/old"), fs::Permissions::from_mode(0o644)).unwrap();
            set_mtime(&r.join("etc/old"), OLD);
            rustix::fs::lsetxattr(
                r.join("etc/old"),
                "user.note",
                b"binary\0value\n",
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
        }),
        Box::new(|r| {
            fs::create_dir_all(r.join("tmp")).unwrap();
            fs::set_permissions(r.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
            fs::create_dir_all(r.join("home/user")).unwrap();
            fs::write(r.join("home/user/big-owner"), b"x").unwrap();
            fs::set_permissions(
                r.join("home/user/big-owner"),
                fs::Permissions::from_mode(0o600),
            )
            .unwrap();
            rustix::fs::chown(
                r.join("home/user/big-owner"),
                Some(rustix::fs::Uid::from_raw(BIG_UID)),
                Some(rustix::fs::Gid::from_raw(1000)),
            )
            .unwrap();
        }),
        // Hard links: `a-link` and `z-link` share an inode; made in
        // `make_tree`'s order so the "first" one on disk differs.
        Box::new(|r| {
            fs::create_dir_all(r.join("links")).unwrap();
            let (first, second) = if r.join(".reverse").exists() {
                ("z-link", "a-link")
            } else {
                ("a-link", "z-link")
            };
            fs::write(r.join("links").join(first), b"shared inode\n").unwrap();
            fs::set_permissions(
                r.join("links").join(first),
                fs::Permissions::from_mode(0o644),
            )
            .unwrap();
            fs::hard_link(r.join("links").join(first), r.join("links").join(second)).unwrap();
            symlink("a-link", r.join("links/sym")).unwrap();
            symlink(
                "/".to_string() + &"t".repeat(150),
                r.join("links/long-target"),
            )
            .unwrap();
        }),
        Box::new(|r| {
            fs::create_dir_all(r.join("odd")).unwrap();
            for name in [
                &b"with space"[..],
                b"new\nline",
                b"\xff\xfe-not-utf8",
                "ünïcödé".as_bytes(),
                b"a.b",
                b"a",
            ] {
                let path = r.join("odd").join(OsStr::from_bytes(name));
                fs::write(&path, name).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            }
            let long = r.join("odd").join(long_name());
            fs::create_dir_all(long.parent().unwrap()).unwrap();
            fs::write(&long, b"long").unwrap();
            fs::set_permissions(&long, fs::Permissions::from_mode(0o644)).unwrap();
        }),
        Box::new(|r| {
            fs::create_dir_all(r.join("dev")).unwrap();
            let mode = rustix::fs::Mode::from_raw_mode(0o666);
            rustix::fs::mknodat(
                rustix::fs::CWD,
                r.join("dev/null"),
                rustix::fs::FileType::CharacterDevice,
                mode,
                rustix::fs::makedev(1, 3),
            )
            .unwrap();
            rustix::fs::mknodat(
                rustix::fs::CWD,
                r.join("dev/fifo"),
                rustix::fs::FileType::Fifo,
                mode,
                0,
            )
            .unwrap();
            fs::set_permissions(r.join("dev/null"), fs::Permissions::from_mode(0o666)).unwrap();
            fs::set_permissions(r.join("dev/fifo"), fs::Permissions::from_mode(0o600)).unwrap();
        }),
    ]
}

/// Makes the test tree under `root` with its steps in order or reversed,
/// under `umask`. Directories keep the modes the umask gives them except
/// where a step sets one, so the umask is normalised here as an image
/// builder would (dirs 0755).
pub fn make_tree(root: &Path, reverse: bool, umask: u32) {
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(umask));
    fs::create_dir_all(root).unwrap();
    if reverse {
        fs::write(root.join(".reverse"), b"").unwrap();
    }
    let mut steps = steps();
    if reverse {
        steps.reverse();
    }
    for step in &steps {
        step(root);
    }
    rustix::process::umask(old);
    if reverse {
        fs::remove_file(root.join(".reverse")).unwrap();
    }
    normalise_dirs(root);
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).unwrap();
}

pub fn normalise_dirs(dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            if e.file_name() != "tmp" {
                fs::set_permissions(e.path(), fs::Permissions::from_mode(0o755)).unwrap();
            }
            normalise_dirs(&e.path());
        }
    }
}

pub fn tar_bytes(root: &Path, epoch: i64) -> Vec<u8> {
    let mut out = Vec::new();
    write_tree(
        root,
        &mut out,
        &TarOptions {
            source_date_epoch: epoch,
        },
    )
    .unwrap();
    out
}

pub fn fixture() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    make_tree(&root, false, 0o022);
    let bytes = tar_bytes(&root, EPOCH);
    (tmp, root, bytes)
}
