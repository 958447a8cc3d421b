//! `imgbuild publish` and `imgbuild pull` against a real registry (Debian's
//! CNCF distribution `docker-registry`, which has no referrers API, so the
//! referrers tag schema is what is exercised), judged by skopeo: the round
//! trip with a signed pull, a tampered blob, chunked upload and mount, and
//! publish building first. Fixture: `tests/support/publishing.rs`.

mod support;

use std::fs;

use support::registry::Registry;

use support::publishing::*;

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
        publish_built(
            &ws,
            &target,
            &[
                "--key",
                key_arg,
                "--tag",
                "nightly",
                "--revision",
                &"c0ffee".repeat(7)[..40],
                "--json",
            ],
        )
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
    let (tagged, key) = (format!("{target}:1.2.3"), Some(public.as_path()));
    let run = pull(&ws, &tagged, key, &pulled).assert_success();
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
    pull(&ws, &format!("{target}@{art}"), key, &onie).assert_success();
    assert_eq!(
        fs::read(onie.join("onie-installer-x86_64-kvm_x86_64-r0.bin")).unwrap(),
        out_file(&ws, "onie-installer-x86_64-kvm_x86_64-r0.bin")
    );

    // Another key is refused, and nothing is written.
    let refused = ws.path().join("refused");
    let bad = pull(&ws, &tagged, Some(other_public.as_path()), &refused).assert_failure();
    eprintln!("--- pull with another key\n{}", bad.stderr);
    assert!(
        bad.stderr.contains("does not verify with the given key"),
        "{}",
        bad.stderr
    );
    assert!(!refused.join("disk.raw").exists());

    // Once settled, the artifacts' stamps are recorded and a publication
    // does not read them again; one changed in place (same size) since is
    // still caught, and nothing is sent.
    std::thread::sleep(std::time::Duration::from_secs(3));
    publish().assert_success();
    let sbom = ws.path().join("out").join(NAME).join("sbom.cdx.json");
    let mut bytes = fs::read(&sbom).unwrap();
    let at = bytes.len() / 2;
    bytes[at] = if bytes[at] == b' ' { b'\t' } else { b' ' };
    fs::write(&sbom, &bytes).unwrap();
    let tampered = publish().assert_failure();
    assert!(
        tampered.stderr.contains("changed since the build")
            && tampered.stderr.contains("sbom.cdx.json"),
        "{}",
        tampered.stderr
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
    publish_built(&ws, &target, &["--key", key.to_str().unwrap()]).assert_success();
    // Ed25519 signatures verify too, before the tampering.
    let ok = ws.path().join("ok");
    pull(&ws, &format!("{target}:1.2.3"), Some(public.as_path()), &ok).assert_success();
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
    let run = pull(&ws, &format!("{target}:1.2.3"), None, &dest).assert_failure();
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
        &publish_built(
            &ws,
            &a,
            &[
                "--monolithic-limit",
                "65536",
                "--chunk-size",
                "100000",
                "--json",
            ],
        )
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
    let run = publish_built(&ws, &b, &["--mount-from", "a/fixture", "--json"]).assert_success();
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
fn publish_builds_first_from_a_solved_and_fetched_recipe() {
    need_tools!();
    use support::DebSpec;
    let reg = Registry::plain();
    let debs = [
        DebSpec::new("base-files", "12.4", "amd64")
            .essential()
            .file("etc/os-release", "ID=test\n", 0o644),
        DebSpec::new("app", "1.0", "amd64").file("usr/share/app/data", vec![7u8; 5000], 0o644),
    ];
    let (_site, _server, ws) = support::fetched_img(debs, &["app"], "");
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
