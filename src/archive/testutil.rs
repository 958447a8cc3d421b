//! Test helpers: recipe sources, generated OpenPGP keys, clear-signing and
//! signed fixture repositories on disk.

use std::io::Write;
use std::path::{Path, PathBuf};

use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, KeyType, SecretKeyParamsBuilder, SignedPublicKey,
    SignedSecretKey, SubkeyParamsBuilder,
};
use pgp::ser::Serialize;
use pgp::types::Password;
use rand::SeedableRng;
use rand::rngs::StdRng;

pub use crate::core::digest::sha256_hex;
use crate::recipe::{Location, Recipe, Source};

/// A recipe source with the given name, location and suite, component `main`.
pub fn source(name: &str, location: Location, suite: &str) -> Source {
    Source {
        name: name.into(),
        location,
        suite: suite.into(),
        components: if suite == "/" {
            vec![]
        } else {
            vec!["main".into()]
        },
        keyring: PathBuf::new(),
        keyring_sha256: String::new(),
        check_valid_until: true,
        snapshot: None,
        priority: 500,
    }
}

/// A recipe over `sources` for `arch` plus `foreign` architectures.
pub fn recipe(sources: Vec<Source>, arch: &str, foreign: &[&str]) -> Recipe {
    Recipe {
        steps: vec![],
        components: vec![],
        tools: vec![],
        disk: None,
        onie: None,
        publish: Default::default(),
        hostname: None,
        python: None,
        name: "test".into(),
        path: PathBuf::from("recipes/test.toml"),
        architecture: arch.into(),
        foreign_architectures: foreign.iter().map(|s| s.to_string()).collect(),
        sources,
        packages: vec![],
        essential: true,
        recommends: false,
    }
}

/// Generates an ed25519 key. With `subkey`, the primary only certifies and a
/// separate subkey signs (as Debian's archive keys do).
pub fn gen_key(seed: u64, subkey: bool) -> SignedSecretKey {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(!subkey)
        .primary_user_id(format!("Test Archive {seed} <test@127.0.0.1>"));
    if subkey {
        params.subkeys(vec![
            SubkeyParamsBuilder::default()
                .key_type(KeyType::Ed25519Legacy)
                .can_sign(true)
                .build()
                .unwrap(),
        ]);
    }
    params.build().unwrap().generate(&mut rng).unwrap()
}

/// The public part of `key`, binary.
pub fn public_binary(key: &SignedSecretKey) -> Vec<u8> {
    SignedPublicKey::from(key.clone()).to_bytes().unwrap()
}

/// The public part of `key`, ASCII-armored.
pub fn public_armored(key: &SignedSecretKey) -> String {
    SignedPublicKey::from(key.clone())
        .to_armored_string(ArmorOptions::default())
        .unwrap()
}

/// Clear-signs `text` with `key` (with its signing subkey if it has one).
pub fn clearsign(key: &SignedSecretKey, text: &str) -> String {
    let rng = StdRng::seed_from_u64(7);
    let msg = match key.secret_subkeys.first() {
        Some(sub) => CleartextSignedMessage::sign(rng, text, &sub.key, &Password::empty()),
        None => CleartextSignedMessage::sign(rng, text, &key.primary_key, &Password::empty()),
    }
    .unwrap();
    msg.to_armored_string(ArmorOptions::default()).unwrap()
}

/// xz-compresses `data`.
pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 1);
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// gzip-compresses `data`.
pub fn gz(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

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
    key: &SignedSecretKey,
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
    std::fs::write(dir.join("InRelease"), clearsign(key, &release)).unwrap();
    dir
}
