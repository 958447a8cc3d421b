//! The image outputs over a test tree's tar: the OCI layout is valid and
//! stable (skopeo and umoci accept it), `emit` lists every artifact and
//! publishes atomically, and `compare` names the differing entries.

mod support;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::tree::*;
use support::umask_lock;

use imgbuild::image::{self as output, ImageInfo, Manifest, compare, oci};
use imgbuild::lock::{LOCK_VERSION, LockedPackage, LockedRecipe, Lockfile};
use imgbuild::pack::Compression;

fn test_lock() -> Lockfile {
    let pkg = |name: &str, version: &str| LockedPackage {
        name: name.into(),
        version: version.into(),
        architecture: "amd64".into(),
        source: "main".into(),
        filename: format!("pool/{name}.deb"),
        size: 10,
        sha256: sha256(name.as_bytes()),
        reason: None,
        depends: vec![],
    };
    Lockfile {
        version: LOCK_VERSION,
        recipe: LockedRecipe {
            name: "base".into(),
            hash: "sha256:00".into(),
            architecture: "amd64".into(),
        },
        sources: vec![],
        packages: vec![pkg("base-files", "12.4"), pkg("libc6", "2.36-9+deb12u4")],
        python: vec![],
        tools: Vec::new(),
        components: Vec::new(),
    }
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let bytes = fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(sha256(&bytes), hex, "blob {digest} does not match its name");
    bytes
}

/// Checks the layout's digests and sizes from index.json down; returns the
/// manifest and config.
fn check_layout(layout: &Path) -> (oci::ImageManifest, oci::ImageConfig) {
    assert_eq!(
        fs::read_to_string(layout.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let index: oci::Index =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index.schema_version, 2);
    assert_eq!(index.manifests.len(), 1);
    let d = &index.manifests[0];
    assert_eq!(d.annotations[oci::REF_NAME], "latest");
    let manifest_bytes = blob(layout, &d.digest);
    assert_eq!(manifest_bytes.len() as u64, d.size);
    let manifest: oci::ImageManifest = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest.media_type, oci::MEDIA_MANIFEST);
    let config_bytes = blob(layout, &manifest.config.digest);
    assert_eq!(config_bytes.len() as u64, manifest.config.size);
    let config: oci::ImageConfig = serde_json::from_slice(&config_bytes).unwrap();
    assert_eq!(manifest.layers.len(), 1);
    let layer = blob(layout, &manifest.layers[0].digest);
    assert_eq!(layer.len() as u64, manifest.layers[0].size);
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&layer[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(
        config.rootfs.diff_ids,
        vec![format!("sha256:{}", sha256(&plain))]
    );
    (manifest, config)
}

fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn oci_layout_is_valid_and_stable() {
    let _umask = umask_lock();
    let (tmp, _root, bytes) = fixture();
    let tar_path = tmp.path().join("rootfs.tar");
    fs::write(&tar_path, &bytes).unwrap();
    let opts = oci::ImageOptions::for_lock(&test_lock(), EPOCH);
    let (a, b) = (tmp.path().join("oci-a"), tmp.path().join("oci-b"));
    let image = oci::write_layout(&tar_path, &a, &opts).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    oci::write_layout(&tar_path, &b, &opts).unwrap();
    assert_eq!(all_files(&a), all_files(&b));

    let (manifest, config) = check_layout(&a);
    assert_eq!(image.config, manifest.config);
    assert_eq!(image.diff_id, format!("sha256:{}", sha256(&bytes)));
    assert_eq!(config.created, "2001-09-09T01:46:40Z");
    assert_eq!(config.history[0].created, config.created);
    assert_eq!(
        (config.architecture.as_str(), config.os.as_str()),
        ("amd64", "linux")
    );
    assert!(config.config.env[0].starts_with("PATH=/usr/local/sbin:"));
    assert!(
        !fs::read_dir(a.join("blobs/sha256")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.'))
    );
}

fn info(lock: &Lockfile, compression: Compression) -> ImageInfo<'_> {
    ImageInfo {
        lock,
        source_date_epoch: EPOCH,
        build_key: "sha256:feed".into(),
        compression,
        chunks: None,
    }
}

#[test]
fn emit_lists_every_artifact_and_publishes_atomically() {
    let _umask = umask_lock();
    let (tmp, _root, bytes) = fixture();
    let tar_path = tmp.path().join("rootfs.tar");
    fs::write(&tar_path, &bytes).unwrap();
    let lock = test_lock();
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let mut built = Vec::new();
    for compression in [Compression::Zstd, Compression::Zstd, Compression::None] {
        let new = tempfile::Builder::new()
            .prefix("base.tmp-")
            .tempdir_in(&out)
            .unwrap();
        let manifest = output::emit(&tar_path, new.path(), &info(&lock, compression)).unwrap();
        let old = output::publish_dir(new.path(), &out.join("base")).unwrap();
        assert_eq!(old.is_some(), !built.is_empty());
        drop(new); // removes the old contents
        built.push((manifest, all_files(&out.join("base"))));
        // Only `base` is left in out/.
        let names: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["base"]);
    }
    assert_eq!(built[0], built[1], "same inputs, same outputs");
    let (manifest, files) = &built[2];
    let dir = out.join("base");
    assert_eq!(Manifest::read(&dir).unwrap(), *manifest);
    assert!(manifest.present_in(&dir) && manifest.check(&dir).is_empty());
    let listed: Vec<&str> = manifest.artifacts.iter().map(|a| a.path.as_str()).collect();
    let on_disk: Vec<String> = files
        .iter()
        .map(|(p, _)| p.to_string_lossy().into_owned())
        .filter(|p| p != "manifest.json")
        .collect();
    assert_eq!(listed, on_disk);
    assert!(listed.contains(&"rootfs.tar") && listed.contains(&"oci/index.json"));
    assert_eq!(fs::read(dir.join("rootfs.tar")).unwrap(), bytes);
    assert_eq!(
        fs::read_to_string(dir.join("packages.txt")).unwrap(),
        "base-files 12.4 amd64\nlibc6 2.36-9+deb12u4 amd64\n"
    );
    let sbom: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("sbom.cdx.json")).unwrap()).unwrap();
    assert_eq!(
        sbom["components"][1]["purl"],
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64"
    );
    check_layout(&dir.join("oci"));

    // A damaged artifact is found by check() (and a missing one by present_in()).
    fs::write(dir.join("packages.txt"), b"tampered\n").unwrap();
    assert_eq!(manifest.check(&dir), ["packages.txt"]);
    fs::remove_file(dir.join("packages.txt")).unwrap();
    assert!(!manifest.present_in(&dir));
}

#[test]
fn compare_names_the_differing_entries() {
    let _umask = umask_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    make_tree(&a, false, 0o022);
    make_tree(&b, false, 0o022);
    assert_eq!(tar_bytes(&a, EPOCH), tar_bytes(&b, EPOCH));
    fs::write(b.join("etc/shadow"), b"root:changed\n").unwrap();
    fs::set_permissions(b.join("tmp"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(b.join("etc/extra"), b"").unwrap();
    fs::remove_file(a.join("dev/fifo")).unwrap();
    let (ta, tb) = (tmp.path().join("a.tar"), tmp.path().join("b.tar.gz"));
    fs::write(&ta, tar_bytes(&a, EPOCH)).unwrap();
    let mut enc = Compression::Gzip
        .encoder(File::create(&tb).unwrap())
        .unwrap();
    enc.write_all(&tar_bytes(&b, EPOCH)).unwrap();
    enc.finish().unwrap();
    let diffs: Vec<String> = compare::tars(&ta, &tb, 10)
        .unwrap()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(diffs.len(), 4, "{diffs:#?}");
    assert!(
        diffs[0].starts_with("./etc/shadow: size: 15 vs 13; content sha256"),
        "{diffs:#?}"
    );
    assert_eq!(diffs[1], "./tmp/: mode: 1777 vs 755");
    assert_eq!(diffs[2], "./dev/fifo: only in the second build");
    assert_eq!(diffs[3], "./etc/extra: only in the second build");
    // Same tars: nothing to report.
    assert!(compare::tars(&ta, &ta, 10).unwrap().is_empty());
}

/// External judges of the layout, when installed (`apt-get install skopeo umoci`).
#[test]
fn skopeo_and_umoci_accept_the_layout() {
    let _umask = umask_lock();
    let (tmp, _root, bytes) = fixture();
    let tar_path = tmp.path().join("rootfs.tar");
    fs::write(&tar_path, &bytes).unwrap();
    let layout = tmp.path().join("oci");
    oci::write_layout(
        &tar_path,
        &layout,
        &oci::ImageOptions::for_lock(&test_lock(), EPOCH),
    )
    .unwrap();
    let mut judged = 0;
    if let Ok(out) = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:latest", layout.display()))
        .output()
    {
        assert!(
            out.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["Architecture"], "amd64");
        assert_eq!(v["Created"], "2001-09-09T01:46:40Z");
        judged += 1;
    }
    let bundle = tmp.path().join("bundle");
    if let Ok(out) = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:latest", layout.display()))
        .arg(&bundle)
        .output()
    {
        assert!(
            out.status.success(),
            "umoci: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rootfs = bundle.join("rootfs");
        assert_eq!(
            fs::read(rootfs.join("links/z-link")).unwrap(),
            b"shared inode\n"
        );
        let meta = fs::metadata(rootfs.join("usr/bin/ping")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o4755);
        judged += 1;
    }
    if judged == 0 {
        eprintln!("skipped: neither skopeo nor umoci is installed");
    }
}
