//! Index files and signed repositories made of them, for tests of index
//! fetching and verification that need no real `.deb` behind the index.

use std::path::{Path, PathBuf};

use crate::key::TestKey;
use crate::sha256_hex;

/// Signature time of [`write_repo`]'s InRelease: 2024-06-01T00:00:00Z (after
/// [`crate::key::KEY_CREATED`], as a valid signature must be).
pub const SIGNED_AT: u32 = 1_717_200_000;

/// A `Packages` text with one stanza per `(name, version)`.
pub fn packages_text(arch: &str, pkgs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (name, version) in pkgs {
        let filename = format!("pool/main/{name}_{version}_{arch}.deb");
        out.push_str(&format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {arch}\n\
             Description: test package {name}\n multi-line\n .\n description\n\
             Filename: {filename}\nSize: 1234\nSHA256: {}\n\n",
            sha256_hex(filename.as_bytes())
        ));
    }
    out
}

/// Writes a signed repository under `root`: each `(path, bytes)` in `files`
/// below the suite directory (`dists/SUITE/`, or `root` itself when `suite`
/// is `/`), a Release listing them with sha256 and size, and an InRelease
/// clear-signed by `key`. With `by_hash`, files are also stored under
/// `DIR/by-hash/SHA256/<hex>` and the Release says `Acquire-By-Hash: yes`.
/// Returns the suite directory.
pub fn write_repo(
    root: &Path,
    suite: &str,
    files: &[(&str, Vec<u8>)],
    key: &TestKey,
    by_hash: bool,
) -> PathBuf {
    let dir = if suite == "/" {
        root.to_path_buf()
    } else {
        root.join("dists").join(suite)
    };
    let mut release = format!(
        "Origin: Test\nSuite: {suite}\nCodename: {suite}\nDate: Sat, 01 Jan 2000 00:00:00 UTC\n\
         Valid-Until: Fri, 01 Jan 2100 00:00:00 UTC\nAcquire-By-Hash: {}\nSHA256:\n",
        if by_hash { "yes" } else { "no" }
    );
    for (path, data) in files {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, data).unwrap();
        let hash = sha256_hex(data);
        if by_hash {
            let bh = file.parent().unwrap().join("by-hash/SHA256");
            std::fs::create_dir_all(&bh).unwrap();
            std::fs::write(bh.join(&hash), data).unwrap();
        }
        release.push_str(&format!(" {hash} {} {path}\n", data.len()));
    }
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Release"), &release).unwrap();
    std::fs::write(dir.join("InRelease"), key.clearsign(&release, SIGNED_AT)).unwrap();
    dir
}
