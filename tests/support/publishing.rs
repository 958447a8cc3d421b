//! The publish tests' fixture: a workspace whose `out/fixture/` is what
//! `build` writes (OCI layout, disk image, ONIE installer, squashfs) with a
//! recipe with `[publish]` and its lock; signing keys; the independent
//! checks in the test venv; a proxy that breaks a publication part-way.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::registry::{Registry, Secure, missing_tools};
use super::{RunOutput, Workspace};
use imgbuild::image::{self as output, Compression, ImageInfo};
use imgbuild::lock::{
    LOCK_VERSION, LockedEdge, LockedPackage, LockedRecipe, LockedSource, Lockfile,
};
use imgbuild::pack::tar::{TarOptions, write_tree};
use imgbuild::recipe::Recipe;

pub const EPOCH: i64 = 1_700_000_000;
pub const NAME: &str = "fixture";

/// Returns from the test, saying why, when the registry tools are missing.
#[allow(unused_macros)]
macro_rules! need_tools {
    () => {
        if let Some(why) = crate::support::registry::missing_tools() {
            eprintln!("skipping: {why}");
            return;
        }
    };
}
pub(crate) use need_tools;

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn pkg(name: &str, version: &str, deps: &[&str]) -> LockedPackage {
    LockedPackage {
        name: name.into(),
        version: version.into(),
        architecture: "amd64".into(),
        source: "main".into(),
        filename: format!("pool/main/{name}_{version}_amd64.deb"),
        size: 1000,
        sha256: sha256(name.as_bytes()),
        reason: None,
        depends: deps
            .iter()
            .map(|d| LockedEdge {
                name: d.to_string(),
                relation: d.to_string(),
                kind: "depends".into(),
            })
            .collect(),
    }
}

/// A workspace with recipe, lock and `out/fixture/` as `build` writes it.
pub fn fixture() -> Workspace {
    fixture_with("fixture\n")
}

/// [`fixture`] with another `/etc/hostname`: another image, same tags.
pub fn fixture_with(hostname: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write_file("recipes/keys/test.pgp", b"not used: nothing is fetched");
    ws.write_recipe(
        NAME,
        r#"architecture = "amd64"
packages = ["hello"]

[[source]]
name = "main"
url = "http://127.0.0.1:9/debian"
suite = "bookworm"
components = ["main"]
keyring = "keys/test.pgp"

[publish]
version = "1.2.3"
source = "https://git.invalid/fixture"
labels = { sonic_version = "202305" }
"#,
    );
    let recipe = Recipe::load(ws.path(), NAME).unwrap();
    let mut lock = Lockfile {
        version: LOCK_VERSION,
        recipe: LockedRecipe::for_recipe(&recipe),
        sources: vec![LockedSource {
            name: "main".into(),
            suite: "bookworm".into(),
            inrelease_sha256: "11".repeat(32),
            date: "Sat, 10 Jun 2023 08:00:00 UTC".into(),
            snapshot: None,
            signed_by: "AB".repeat(20),
            indexes: vec![],
        }],
        packages: vec![
            pkg("hello", "2.10-3", &["libc6"]),
            pkg("libc6", "2.36-9+deb12u4", &[]),
        ],
        python: vec![],
        tools: vec![],
        components: vec![],
    };
    lock.sort_packages();
    lock.write_atomic(&ws.path().join("locks/fixture.lock"))
        .unwrap();

    let tree = ws.path().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/hostname"), hostname).unwrap();
    fs::write(
        tree.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\n",
    )
    .unwrap();
    let tar = ws.path().join("rootfs.tar");
    let mut f = fs::File::create(&tar).unwrap();
    write_tree(
        &tree,
        &mut f,
        &TarOptions {
            source_date_epoch: EPOCH,
        },
    )
    .unwrap();
    drop(f);
    let out = ws.path().join("out").join(NAME);
    fs::create_dir_all(&out).unwrap();
    // A disk image: mostly zeros with some data (so zstd pays), big enough
    // for a chunked upload with the tests' small chunks.
    let mut disk = vec![0u8; 3 << 20];
    for (i, b) in disk.iter_mut().enumerate().step_by(4099) {
        *b = (i % 251) as u8;
    }
    fs::write(out.join("disk.raw"), &disk).unwrap();
    let bin: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    fs::write(out.join("onie-installer-x86_64-kvm_x86_64-r0.bin"), &bin).unwrap();
    fs::write(out.join("fs.squashfs"), b"hsqs fake squashfs for the test").unwrap();
    output::emit(
        &tar,
        &out,
        &ImageInfo {
            lock: &lock,
            source_date_epoch: EPOCH,
            build_key: format!("sha256:{}", "42".repeat(32)),
            compression: Compression::None,
            chunks: None,
        },
    )
    .unwrap();
    ws
}

pub fn genkey(dir: &Path, name: &str, alg: &[&str]) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    let out = Command::new("openssl")
        .arg("genpkey")
        .args(alg)
        .arg("-out")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public)
        .output()
        .unwrap();
    assert!(out.status.success());
    (key, public)
}

pub fn p256(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    genkey(
        dir,
        name,
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    )
}

pub fn report(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("report JSON: {e}\n{stdout}"))
}

pub fn out_file(ws: &Workspace, rel: &str) -> Vec<u8> {
    fs::read(ws.path().join("out").join(NAME).join(rel)).unwrap()
}

/// `imgbuild pull REFERENCE --insecure [--verify-key KEY] -o DEST` in `ws`.
pub fn pull(ws: &Workspace, reference: &str, key: Option<&Path>, dest: &Path) -> RunOutput {
    let mut args = vec!["pull", reference, "--insecure"];
    if let Some(key) = key {
        args.extend(["--verify-key", key.to_str().unwrap()]);
    }
    args.extend(["-o", dest.to_str().unwrap()]);
    ws.run(&args)
}

/// `imgbuild publish --no-build fixture TARGET --insecure EXTRA…` in `ws`:
/// the fixture's outputs as they are.
pub fn publish_built(ws: &Workspace, target: &str, extra: &[&str]) -> RunOutput {
    let mut args = vec!["publish", "--no-build", NAME, target, "--insecure"];
    args.extend_from_slice(extra);
    ws.run(&args)
}

/// The manifest digest of `out/fixture/oci/`.
pub fn out_digest(ws: &Workspace) -> String {
    let index: serde_json::Value = serde_json::from_slice(&out_file(ws, "oci/index.json")).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every file under `dir` by relative path, with its sha256.
pub fn tree_hashes(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, sha256(&fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// The test venv `ci/setup.sh` makes (securesystemslib, spdx-tools,
/// cyclonedx-python-lib): `$IMGBUILD_TEST_VENV`, else its default place.
pub fn venv_python() -> Option<PathBuf> {
    let dir = std::env::var_os("IMGBUILD_TEST_VENV").map_or_else(
        || PathBuf::from("/var/tmp/imgbuild-test-venv"),
        PathBuf::from,
    );
    let py = dir.join("bin/python");
    py.is_file().then_some(py)
}

pub fn independent_checks(pulled: &Path, public: &Path, registry: &str, repo: &str, digest: &str) {
    let Some(py) = venv_python() else {
        eprintln!("skipping the Python checks: no test venv (ci/setup.sh makes it)");
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/check_publication.py");
    let out = Command::new(py)
        .arg(script)
        .arg(pulled)
        .arg(public)
        .args([registry, repo, digest])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "independent checks failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loopback HTTP proxy to `upstream` (one request per connection) that
/// answers 400 to the `fail_at`-th PUT of a manifest by digest and to every
/// later one: a publication that breaks after its image is in place.
pub fn failing_proxy(upstream: String, fail_at: usize) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let puts = std::sync::Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for client in listener.incoming().take(500) {
            let Ok(mut client) = client else { continue };
            let upstream = upstream.clone();
            let puts = puts.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(client.try_clone().unwrap());
                let mut head = Vec::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if !lower.starts_with("connection:") {
                        head.push(line);
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                if head[0].starts_with("PUT ")
                    && head[0].contains("/manifests/sha256:")
                    && puts.fetch_add(1, Ordering::SeqCst) + 1 >= fail_at
                {
                    let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    return;
                }
                let mut up = std::net::TcpStream::connect(&upstream).unwrap();
                let mut req = head.concat();
                req.push_str("Connection: close\r\n\r\n");
                up.write_all(req.as_bytes()).unwrap();
                up.write_all(&body).unwrap();
                let mut reply = Vec::new();
                let _ = up.read_to_end(&mut reply);
                let _ = client.write_all(&reply);
            });
        }
    });
    addr
}
