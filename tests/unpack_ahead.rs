//! deb::ReadAhead, queued and spooled, against a plain unpack of the same
//! fixture .deb: the same tree, the same file list, the same refusal of a
//! file that is not the locked one.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use imgbuild::deb::{self as unpack, ExtractOptions, UnpackError};
use support::*;

/// Every regular file under `root` with its bytes, sorted by path.
fn tree_files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                dirs.push(p);
            } else if meta.is_file() {
                out.push((
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn read_ahead_and_spooled_packages_unpack_as_a_plain_unpack() {
    // Several MiB of data.tar (the read-ahead's chunks are 1 MiB), little
    // of it compressible.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..(3 << 20) + 12345)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let spec = DebSpec::new("kernel", "1", "amd64")
        .file("/usr/lib/modules/1/a.ko", noise.clone(), 0o644)
        .file("/usr/lib/modules/1/b.ko", noise[..777].to_vec(), 0o644)
        .file("/boot/vmlinuz-1", noise[1000..3_000_000].to_vec(), 0o644)
        .symlink("/usr/lib/modules/1/build", "/usr/src/linux-1");
    let bytes = spec.build();
    let sha = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let tmp = tempfile::tempdir().unwrap();
    let deb = tmp.path().join("kernel.deb");
    fs::write(&deb, &bytes).unwrap();
    let plain_root = tmp.path().join("plain");
    fs::create_dir(&plain_root).unwrap();
    let plain = unpack::unpack(&deb, &plain_root, &ExtractOptions::default()).unwrap();
    let want = tree_files(&plain_root);
    assert_eq!(want.len(), 3);
    for spooled in [false, true] {
        let into = tempfile::tempdir().unwrap();
        let spool_dir = tempfile::tempdir().unwrap();
        let reading = if spooled {
            unpack::ReadAhead::spooled(&deb, &sha, spool_dir.path())
        } else {
            unpack::ReadAhead::start(&deb, &sha)
        };
        let got = reading
            .unpack(into.path(), &ExtractOptions::default())
            .unwrap();
        assert_eq!(got.paths, plain.paths, "spooled: {spooled}");
        assert_eq!(tree_files(into.path()), want, "spooled: {spooled}");
        // The spool file is unlinked: nothing is left in its directory.
        assert_eq!(fs::read_dir(spool_dir.path()).unwrap().count(), 0);
    }
    // A .deb that is not the locked one is refused, spooled too.
    let mut bad = bytes.clone();
    let at = bad.len() - 100;
    bad[at] ^= 0xff;
    let deb = tmp.path().join("kernel-bad.deb");
    fs::write(&deb, &bad).unwrap();
    let into = tempfile::tempdir().unwrap();
    let spool_dir = tempfile::tempdir().unwrap();
    let err = unpack::ReadAhead::spooled(&deb, &sha, spool_dir.path())
        .unpack(into.path(), &ExtractOptions::default())
        .unwrap_err();
    assert!(matches!(err, UnpackError::Digest { .. }), "{err}");
}
