//! `imgbuild publish` and `imgbuild pull` against a real registry (Debian's
//! CNCF distribution `docker-registry`, which has no referrers API, so the
//! referrers tag schema is what is exercised), judged by skopeo.
//!
//! The fixture is a real output directory written by `build::output::emit`
//! from a small tree, with a disk image, an ONIE installer and a squashfs
//! beside it, a recipe with `[publish]` and its (fresh) lock.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use imgbuild::image::{self as output, Compression, ImageInfo};
use imgbuild::lock::{
    LOCK_VERSION, LockedEdge, LockedPackage, LockedRecipe, LockedSource, Lockfile,
};
use imgbuild::pack::tar::{TarOptions, write_tree};
use imgbuild::recipe::Recipe;
use support::Workspace;
use support::registry::{Registry, Secure, missing_tools};

const EPOCH: i64 = 1_700_000_000;
const NAME: &str = "fixture";

macro_rules! need_tools {
    () => {
        if let Some(why) = missing_tools() {
            eprintln!("skipping: {why}");
            return;
        }
    };
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn pkg(name: &str, version: &str, deps: &[&str]) -> LockedPackage {
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
fn fixture() -> Workspace {
    fixture_with("fixture\n")
}

/// [`fixture`] with another `/etc/hostname`: another image, same tags.
fn fixture_with(hostname: &str) -> Workspace {
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
        },
    )
    .unwrap();
    ws
}

fn genkey(dir: &Path, name: &str, alg: &[&str]) -> (PathBuf, PathBuf) {
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

fn p256(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    genkey(
        dir,
        name,
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    )
}

fn report(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("report JSON: {e}\n{stdout}"))
}

fn out_file(ws: &Workspace, rel: &str) -> Vec<u8> {
    fs::read(ws.path().join("out").join(NAME).join(rel)).unwrap()
}

/// The manifest digest of `out/fixture/oci/`.
fn out_digest(ws: &Workspace) -> String {
    let index: serde_json::Value = serde_json::from_slice(&out_file(ws, "oci/index.json")).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every file under `dir` by relative path, with its sha256.
fn tree_hashes(dir: &Path) -> BTreeMap<String, String> {
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

#[test]
fn publish_round_trip_with_skopeo_and_signed_pull() {
    need_tools!();
    let reg = Registry::plain();
    let ws = fixture();
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = p256(keys.path(), "signer");
    let (_, other_public) = genkey(keys.path(), "other", &["-algorithm", "ED25519"]);
    let target = format!("{}/team/fixture", reg.addr);
    let key_arg = key.to_str().unwrap();
    let publish = || {
        ws.run(&[
            "publish",
            "--no-build",
            NAME,
            &target,
            "--insecure",
            "--key",
            key_arg,
            "--tag",
            "nightly",
            "--revision",
            &"c0ffee".repeat(7)[..40],
            "--json",
        ])
    };
    let first = publish().assert_success();
    // Shown with --nocapture (docs/publish.md quotes it).
    eprintln!("--- first publish\n{}", first.stderr);
    let r = report(&first.stdout);
    let digest = out_digest(&ws);
    assert_eq!(r["digest"], digest.as_str(), "{}", first.stderr);
    assert!(r["uploaded_bytes"].as_u64().unwrap() > 0);
    assert_eq!(r["artifacts"], 3, "disk.raw, the ONIE .bin, fs.squashfs");
    assert!(
        r["referrers_via"]
            .as_str()
            .unwrap()
            .starts_with("tag schema"),
        "distribution 2.8 has no referrers API: {r}"
    );
    let tags: Vec<&str> = r["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags[0], "1.2.3");
    assert!(
        tags[1].starts_with("lock-") && tags[1].len() == 17,
        "{tags:?}"
    );
    assert_eq!(tags[2], "nightly");

    // skopeo, an independent client, sees the build's manifest byte for byte.
    let reference = format!("docker://{target}:1.2.3");
    let raw = reg.skopeo(&["inspect", "--tls-verify=false", "--raw", &reference]);
    let manifest_hex = digest.trim_start_matches("sha256:");
    assert_eq!(
        raw,
        out_file(&ws, &format!("oci/blobs/sha256/{manifest_hex}"))
    );
    let inspect: serde_json::Value =
        serde_json::from_slice(&reg.skopeo(&["inspect", "--tls-verify=false", &reference]))
            .unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());
    // skopeo copies it into an OCI layout whose blobs are out/'s.
    let copy = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:latest", copy.path().join("img").display());
    reg.skopeo(&["copy", "--src-tls-verify=false", &reference, &dest]);
    let copied = tree_hashes(&copy.path().join("img/blobs"));
    let built = tree_hashes(&ws.path().join("out").join(NAME).join("oci/blobs"));
    assert_eq!(copied, built, "skopeo's copy has other blobs than out/");

    // The referrers tag index lists every artifact and the evidence.
    let fallback = format!("docker://{target}:{}", digest.replace(':', "-"));
    let index: serde_json::Value =
        serde_json::from_slice(&reg.skopeo(&["inspect", "--tls-verify=false", "--raw", &fallback]))
            .unwrap();
    let types: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["artifactType"].as_str().unwrap())
        .collect();
    for t in [
        "application/vnd.imgbuild.disk.raw.v1",
        "application/vnd.imgbuild.onie.installer.v1",
        "application/vnd.imgbuild.rootfs.squashfs.v1",
        "application/vnd.imgbuild.lock.v1+toml",
        "application/vnd.cyclonedx+json",
        "application/spdx+json",
        "application/vnd.in-toto+json",
        "application/vnd.dev.cosign.artifact.sig.v1+json",
    ] {
        assert!(types.contains(&t), "{t} not among the referrers {types:?}");
    }
    for m in index["manifests"].as_array().unwrap() {
        assert_eq!(
            m["annotations"]["org.opencontainers.image.version"],
            "1.2.3"
        );
        assert_eq!(m["annotations"]["sonic_version"], "202305");
        assert_eq!(
            m["annotations"]["org.opencontainers.image.created"],
            "2023-11-14T22:13:20Z"
        );
    }

    // Publishing again sends nothing.
    let second = publish().assert_success();
    eprintln!("--- second publish\n{}", second.stderr);
    let r2 = report(&second.stdout);
    assert_eq!(r2["uploaded_bytes"], 0, "{}", second.stderr);
    assert_eq!(r2["blobs_uploaded"], 0);
    assert!(
        second.stderr.contains("uploaded 0 bytes"),
        "{}",
        second.stderr
    );

    // Pull with the right key: verified, bit-identical files.
    let pulled = ws.path().join("pulled");
    let run = ws
        .run(&[
            "pull",
            &format!("{target}:1.2.3"),
            "--insecure",
            "--verify-key",
            public.to_str().unwrap(),
            "-o",
            pulled.to_str().unwrap(),
        ])
        .assert_success();
    eprintln!("--- pull\n{}", run.stderr);
    assert!(
        run.stderr.contains("signature and provenance verified"),
        "{}",
        run.stderr
    );
    for f in [
        "disk.raw",
        "onie-installer-x86_64-kvm_x86_64-r0.bin",
        "fs.squashfs",
        "sbom.cdx.json",
    ] {
        assert_eq!(
            fs::read(pulled.join(f)).unwrap(),
            out_file(&ws, f),
            "{f} differs"
        );
    }
    assert_eq!(
        fs::read(pulled.join("fixture.lock")).unwrap(),
        fs::read(ws.path().join("locks/fixture.lock")).unwrap()
    );
    assert_eq!(
        tree_hashes(&pulled.join("oci")),
        tree_hashes(&ws.path().join("out").join(NAME).join("oci")),
        "pulled oci/ differs from out/'s"
    );

    // Other people's verifiers agree (when ci/setup.sh made the venv).
    independent_checks(&pulled, &public, &reg.addr, "team/fixture", &digest);

    // One artifact by its own manifest: just its file.
    let onie = ws.path().join("onie");
    let art = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["artifactType"] == "application/vnd.imgbuild.onie.installer.v1")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    ws.run(&[
        "pull",
        &format!("{target}@{art}"),
        "--insecure",
        "--verify-key",
        public.to_str().unwrap(),
        "-o",
        onie.to_str().unwrap(),
    ])
    .assert_success();
    assert_eq!(
        fs::read(onie.join("onie-installer-x86_64-kvm_x86_64-r0.bin")).unwrap(),
        out_file(&ws, "onie-installer-x86_64-kvm_x86_64-r0.bin")
    );

    // Another key is refused, and nothing is written.
    let refused = ws.path().join("refused");
    let bad = ws
        .run(&[
            "pull",
            &format!("{target}:1.2.3"),
            "--insecure",
            "--verify-key",
            other_public.to_str().unwrap(),
            "-o",
            refused.to_str().unwrap(),
        ])
        .assert_failure();
    eprintln!("--- pull with another key\n{}", bad.stderr);
    assert!(
        bad.stderr.contains("does not verify with the given key"),
        "{}",
        bad.stderr
    );
    assert!(!refused.join("disk.raw").exists());
}

/// The test venv `ci/setup.sh` makes (securesystemslib, spdx-tools,
/// cyclonedx-python-lib): `$IMGBUILD_TEST_VENV`, else its default place.
fn venv_python() -> Option<PathBuf> {
    let dir = std::env::var_os("IMGBUILD_TEST_VENV").map_or_else(
        || PathBuf::from("/var/tmp/imgbuild-test-venv"),
        PathBuf::from,
    );
    let py = dir.join("bin/python");
    py.is_file().then_some(py)
}

fn independent_checks(pulled: &Path, public: &Path, registry: &str, repo: &str, digest: &str) {
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

#[test]
fn tampered_blob_is_detected_on_pull() {
    need_tools!();
    let reg = Registry::plain();
    let ws = fixture();
    let target = format!("{}/fixture", reg.addr);
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = genkey(keys.path(), "ed", &["-algorithm", "ED25519"]);
    ws.run(&[
        "publish",
        "--no-build",
        NAME,
        &target,
        "--insecure",
        "--key",
        key.to_str().unwrap(),
    ])
    .assert_success();
    // Ed25519 signatures verify too, before the tampering.
    let ok = ws.path().join("ok");
    ws.run(&[
        "pull",
        &format!("{target}:1.2.3"),
        "--insecure",
        "--verify-key",
        public.to_str().unwrap(),
        "-o",
        ok.to_str().unwrap(),
    ])
    .assert_success();
    assert_eq!(
        fs::read(ok.join("fs.squashfs")).unwrap(),
        out_file(&ws, "fs.squashfs")
    );
    // Flip a byte of the stored squashfs (same size): the registry serves it
    // under the old digest.
    let sq = out_file(&ws, "fs.squashfs");
    let stored = reg.blob_file(&format!("sha256:{}", sha256(&sq)));
    let mut bytes = fs::read(&stored).unwrap();
    bytes[0] ^= 0xff;
    fs::write(&stored, &bytes).unwrap();
    let dest = ws.path().join("pulled");
    let run = ws
        .run(&[
            "pull",
            &format!("{target}:1.2.3"),
            "--insecure",
            "-o",
            dest.to_str().unwrap(),
        ])
        .assert_failure();
    assert!(run.stderr.contains("digest mismatch"), "{}", run.stderr);
    assert!(!dest.join("fs.squashfs").exists() && !dest.join("disk.raw").exists());
}

#[test]
fn chunked_upload_and_cross_repository_mount() {
    need_tools!();
    let reg = Registry::plain();
    let ws = fixture();
    let a = format!("{}/a/fixture", reg.addr);
    let r = report(
        &ws.run(&[
            "publish",
            "--no-build",
            NAME,
            &a,
            "--insecure",
            "--monolithic-limit",
            "65536",
            "--chunk-size",
            "100000",
            "--json",
        ])
        .assert_success()
        .stdout,
    );
    assert!(r["blobs_uploaded"].as_u64().unwrap() > 0);
    // The big blobs went in chunks and arrived whole.
    reg.skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{a}:1.2.3"),
    ]);
    let b = format!("{}/b/fixture", reg.addr);
    let run = ws
        .run(&[
            "publish",
            "--no-build",
            NAME,
            &b,
            "--insecure",
            "--mount-from",
            "a/fixture",
            "--json",
        ])
        .assert_success();
    let r = report(&run.stdout);
    // Every blob of the image and the artifacts is mounted; only the
    // provenance is new (its first subject names the repository).
    assert_eq!(r["blobs_uploaded"], 1, "{}", run.stderr);
    assert!(r["blobs_mounted"].as_u64().unwrap() >= 8, "{r}");
    let raw = reg.skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{b}:1.2.3"),
    ]);
    assert_eq!(sha256(&raw), out_digest(&ws).trim_start_matches("sha256:"));
}

#[test]
fn tls_with_htpasswd_auth() {
    need_tools!();
    let secure = Secure {
        user: "ci".into(),
        password: "correct horse".into(),
    };
    let reg = Registry::secure(&secure);
    let ws = fixture();
    let ca = reg.ca.clone().unwrap();
    let target = format!("{}/fixture", reg.addr);
    let auth = ws.path().join("auth.json");
    let write_auth = |user: &str, password: &str| {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        fs::write(
            &auth,
            format!(r#"{{"auths":{{"{}":{{"auth":"{token}"}}}}}}"#, reg.addr),
        )
        .unwrap();
    };
    let publish = |extra: &[&str]| {
        let mut args = vec!["publish", "--no-build", NAME, &target];
        args.extend_from_slice(extra);
        let mut cmd = ws.command(&args);
        cmd.env("REGISTRY_AUTH_FILE", &auth);
        support::workspace::run_bounded(cmd, std::time::Duration::from_secs(120))
    };
    // Without the test CA the certificate is not trusted.
    write_auth("ci", "correct horse");
    let run = publish(&[]).assert_failure();
    assert!(
        run.stderr.to_lowercase().contains("certificate"),
        "{}",
        run.stderr
    );
    // A wrong password is refused, naming where it came from.
    write_auth("ci", "wrong");
    let run = publish(&["--ca-file", ca.to_str().unwrap()]).assert_failure();
    eprintln!("--- wrong password\n{}", run.stderr);
    assert!(run.stderr.contains("refused access"), "{}", run.stderr);
    assert!(run.stderr.contains("auth.json"), "{}", run.stderr);
    // The right one works.
    write_auth("ci", "correct horse");
    publish(&["--ca-file", ca.to_str().unwrap()]).assert_success();
    // --insecure is refused for anything but loopback, before connecting.
    let run = ws
        .run(&[
            "publish",
            "--no-build",
            NAME,
            "192.0.2.1:5000/fixture",
            "--insecure",
        ])
        .assert_failure();
    assert!(
        run.stderr.contains("only allowed for loopback"),
        "{}",
        run.stderr
    );
}

#[test]
fn publish_builds_first_from_a_solved_and_fetched_recipe() {
    need_tools!();
    use support::{DebSpec, RecipeToml, Site};
    let reg = Registry::plain();
    let site = Site::new();
    site.archive("debian")
        .suite("bookworm", &["amd64"], &["main"])
        .add(
            DebSpec::new("base-files", "12.4", "amd64")
                .essential()
                .file("etc/os-release", "ID=test\n", 0o644),
        )
        .add(DebSpec::new("app", "1.0", "amd64").file("usr/share/app/data", vec![7u8; 5000], 0o644))
        .build();
    let server = site.serve();
    let ws = Workspace::new();
    let src = ws.trusted_source("main", &server.url("debian/"), "bookworm", &["main"]);
    ws.write_recipe(
        "img",
        &RecipeToml::new("amd64")
            .packages(&["app"])
            .source(src)
            .to_toml(),
    );
    ws.run(&["solve", "img"]).assert_success();
    ws.run(&["fetch", "img"]).assert_success();
    let target = format!("{}/img", reg.addr);
    let publish = || {
        let mut cmd = ws.command(&[
            "publish",
            "img",
            &target,
            "--insecure",
            "--no-scripts",
            "--json",
        ]);
        cmd.env("SOURCE_DATE_EPOCH", EPOCH.to_string());
        support::workspace::run_bounded(cmd, std::time::Duration::from_secs(300)).assert_success()
    };
    let first = publish();
    let out = ws.path().join("out/img");
    assert!(out.join("sbom.spdx.json").is_file(), "{}", first.stderr);
    let r = report(&first.stdout);
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("oci/index.json")).unwrap()).unwrap();
    assert_eq!(r["digest"], index["manifests"][0]["digest"]);
    // The SBOMs name the OS and the packages as scanners want them.
    let spdx = fs::read_to_string(out.join("sbom.spdx.json")).unwrap();
    assert!(
        spdx.contains("pkg:deb/debian/app@1.0?arch=amd64&distro=debian-12"),
        "{spdx}"
    );
    assert!(spdx.contains("OPERATING-SYSTEM"));
    // Up to date: no rebuild, nothing sent.
    let second = publish();
    assert!(second.stderr.contains("up to date"), "{}", second.stderr);
    assert_eq!(report(&second.stdout)["uploaded_bytes"], 0);
}

/// A loopback HTTP proxy to `upstream` (one request per connection) that
/// answers 400 to the `fail_at`-th PUT of a manifest by digest and to every
/// later one: a publication that breaks after its image is in place.
fn failing_proxy(upstream: String, fail_at: usize) -> String {
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

#[test]
fn an_interrupted_publish_leaves_the_old_tag_on_a_complete_image() {
    need_tools!();
    let reg = Registry::plain();
    let old = fixture();
    let new = fixture_with("renamed\n");
    let target = format!("{}/fixture", reg.addr);
    old.run(&["publish", "--no-build", NAME, &target, "--insecure"])
        .assert_success();
    let (a, b) = (out_digest(&old), out_digest(&new));
    assert_ne!(a, b);
    // The new image's manifest goes in (first PUT by digest), its first
    // artifact does not: the publication stops there.
    let proxy = failing_proxy(reg.addr.clone(), 2);
    let run = new
        .run(&[
            "publish",
            "--no-build",
            NAME,
            &format!("{proxy}/fixture"),
            "--insecure",
        ])
        .assert_failure();
    assert!(run.stderr.contains("HTTP 400"), "{}", run.stderr);
    let inspect = |tag: &str| -> serde_json::Value {
        serde_json::from_slice(&reg.skopeo(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{target}:{tag}"),
        ]))
        .unwrap()
    };
    assert_eq!(inspect("1.2.3")["Digest"], a.as_str(), "the tag moved");
    let copy = tempfile::tempdir().unwrap();
    reg.skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{target}:1.2.3"),
        &format!("oci:{}:x", copy.path().join("img").display()),
    ]);
    // The image by digest is there, untagged; a publish that completes moves the tag.
    new.run(&["publish", "--no-build", NAME, &target, "--insecure"])
        .assert_success();
    assert_eq!(inspect("1.2.3")["Digest"], b.as_str());
}

#[test]
fn bearer_token_flow_against_a_token_authenticated_registry() {
    need_tools!();
    let secure = Secure {
        user: "ci".into(),
        password: "s3cret".into(),
    };
    let reg = Registry::token(&secure);
    let ws = fixture();
    let target = format!("{}/fixture", reg.addr);
    let publish = |password: &str| {
        let mut cmd = ws.command(&[
            "publish",
            "--no-build",
            NAME,
            &target,
            "--insecure",
            "--json",
        ]);
        cmd.env("IMGBUILD_REGISTRY_USERNAME", "ci");
        cmd.env("IMGBUILD_REGISTRY_PASSWORD", password);
        support::workspace::run_bounded(cmd, std::time::Duration::from_secs(120))
    };
    let run = publish("wrong").assert_failure();
    assert!(run.stderr.contains("refused access"), "{}", run.stderr);
    let run = publish("s3cret").assert_success();
    assert_eq!(
        report(&run.stdout)["digest"],
        out_digest(&ws).as_str(),
        "{}",
        run.stderr
    );
    // Anonymous reads are refused by this registry: skopeo needs the token too.
    let creds = "--creds=ci:s3cret";
    let raw = reg.skopeo(&[
        "inspect",
        "--tls-verify=false",
        creds,
        "--raw",
        &format!("docker://{target}:1.2.3"),
    ]);
    assert_eq!(sha256(&raw), out_digest(&ws).trim_start_matches("sha256:"));
    let again = publish("s3cret").assert_success();
    assert_eq!(report(&again.stdout)["uploaded_bytes"], 0);
}
