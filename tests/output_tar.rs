//! The deterministic tar over trees the tests make (`tests/support/tree.rs`):
//! a function of the tree only (not of creation order, umask or clock), it
//! keeps what a rootfs needs (hard links, symlinks, devices, xattrs, odd
//! names, large ids), GNU tar reads it back, and it compresses stably.

mod support;

use std::fs::{self};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use support::tree::*;
use support::umask_lock;

use imgbuild::image::compare;
use imgbuild::image::compare::EntrySummary;
use imgbuild::pack::Compression;

#[test]
fn same_tree_same_bytes_whatever_the_order_umask_and_clock() {
    let _umask = umask_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    make_tree(&a, false, 0o022);
    // Let the wall clock move on so that every fresh mtime differs.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    make_tree(&b, true, 0o077);
    let (ta, tb) = (tar_bytes(&a, EPOCH), tar_bytes(&b, EPOCH));
    assert_eq!(sha256(&ta), sha256(&tb));
    assert_eq!(ta.len() % 512, 0);

    // Control: a real change to the tree changes the bytes (the test can fail).
    fs::set_permissions(b.join("etc/old"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_ne!(sha256(&ta), sha256(&tar_bytes(&b, EPOCH)));
    // And a later epoch lets the fresh mtimes through.
    assert_ne!(sha256(&ta), sha256(&tar_bytes(&a, i64::MAX / 2)));
}

/// Every entry of a tar, through `compare::read_entries` (which parses pax
/// records itself: the `tar` crate's parser cannot take a newline in a value).
fn parse(tmp: &Path, bytes: &[u8]) -> Vec<(String, EntrySummary)> {
    let path = tmp.join("parsed.tar");
    fs::write(&path, bytes).unwrap();
    compare::read_entries(&path).unwrap()
}

fn find<'a>(entries: &'a [(String, EntrySummary)], name: &str) -> &'a EntrySummary {
    &entries
        .iter()
        .find(|e| e.0 == name)
        .unwrap_or_else(|| panic!("no entry {name:?}"))
        .1
}

fn pax(e: &EntrySummary, key: &str, value: &[u8]) -> bool {
    e.pax.contains(&(key.to_string(), hex::encode(value)))
}

#[test]
fn entries_keep_what_a_rootfs_needs() {
    let _umask = umask_lock();
    let (tmp, _root, bytes) = fixture();
    let entries = parse(tmp.path(), &bytes);
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    // Depth-first, each directory sorted by name bytes, a directory first.
    assert_eq!(names[0], "./");
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("./dev/") < pos("./dev/fifo") && pos("./dev/fifo") < pos("./dev/null"));
    assert!(pos("./odd/a") < pos("./odd/a.b"));
    assert!(pos("./links/") < pos("./links/a-link") && pos("./links/a-link") < pos("./odd/"));

    // No user or group names, no atime/ctime, clamped mtimes.
    let mut raw = tar::Archive::new(&bytes[..]);
    for e in raw.entries().unwrap().raw(true) {
        let e = e.unwrap();
        assert_eq!(e.header().username_bytes(), Some(&b""[..]));
        assert_eq!(e.header().groupname_bytes(), Some(&b""[..]));
    }
    for (name, e) in &entries {
        assert!(
            !e.pax.iter().any(|(k, _)| k == "atime" || k == "ctime"),
            "{name:?}"
        );
        assert!(e.mtime <= EPOCH as u64, "{name:?}");
    }

    let ping = find(&entries, "./usr/bin/ping");
    assert_eq!(ping.mode, 0o4755);
    assert!(pax(ping, "SCHILY.xattr.security.capability", &CAP));
    let old = find(&entries, "./etc/old");
    assert_eq!(old.mtime, OLD as u64);
    assert!(pax(old, "SCHILY.xattr.user.note", b"binary\0value\n"));
    let shadow = find(&entries, "./etc/shadow");
    assert_eq!((shadow.mode, shadow.uid, shadow.gid), (0o640, 0, 42));
    assert_eq!(find(&entries, "./tmp/").mode, 0o1777);
    assert_eq!(
        find(&entries, "./home/user/big-owner").uid,
        u64::from(BIG_UID)
    );

    let first = find(&entries, "./links/a-link");
    assert_eq!(
        (first.kind, first.sha256.as_str()),
        ('0', &*sha256(b"shared inode\n"))
    );
    let second = find(&entries, "./links/z-link");
    assert_eq!(
        (second.kind, second.link.as_str(), second.size),
        ('1', "./links/a-link", 0)
    );
    let sym = find(&entries, "./links/sym");
    assert_eq!((sym.kind, sym.link.as_str()), ('2', "a-link"));
    let long_target = find(&entries, "./links/long-target");
    assert_eq!(long_target.link, format!("/{}", "t".repeat(150)));

    let null = find(&entries, "./dev/null");
    assert_eq!((null.kind, null.device), ('3', Some((1, 3))));
    assert_eq!(find(&entries, "./dev/fifo").kind, '6');

    for name in ["./odd/with space", "./odd/new\nline", "./odd/ünïcödé"] {
        assert_eq!(find(&entries, name).sha256, sha256(&name.as_bytes()[6..]));
    }
    let lossy = String::from_utf8_lossy(b"./odd/\xff\xfe-not-utf8").into_owned();
    assert_eq!(find(&entries, &lossy).size, 11);
    let long = format!("./odd/{}", long_name());
    assert_eq!(find(&entries, &long).sha256, sha256(b"long"));
}

#[test]
fn gnu_tar_round_trip_is_a_fixed_point() {
    let _umask = umask_lock();
    if Command::new("tar").arg("--version").output().is_err() {
        eprintln!("skipped: GNU tar not installed");
        return;
    }
    let (tmp, _root, bytes) = fixture();
    let archive = tmp.path().join("a.tar");
    fs::write(&archive, &bytes).unwrap();
    let listing = Command::new("tar")
        .arg("-tvf")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(listing.status.success(), "{listing:?}");
    let out = tmp.path().join("extracted");
    fs::create_dir(&out).unwrap();
    let status = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&archive)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        sha256(&tar_bytes(&out, EPOCH)),
        sha256(&bytes),
        "GNU tar's extraction re-archives differently"
    );
}

#[test]
fn compression_is_stable_and_round_trips() {
    let _umask = umask_lock();
    let (_tmp, _root, bytes) = fixture();
    for c in [Compression::Gzip, Compression::Zstd] {
        let compress = || {
            let mut enc = c.encoder(Vec::new()).unwrap();
            enc.write_all(&bytes).unwrap();
            enc.finish().unwrap()
        };
        let (x, y) = (compress(), compress());
        assert_eq!(x, y, "{c:?}");
        let mut back = Vec::new();
        c.decoder(&x[..]).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, bytes);
        if c == Compression::Gzip {
            // ID, CM, FLG without FNAME, MTIME 0.
            assert_eq!(&x[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        }
    }
}
