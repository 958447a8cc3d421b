//! Reproducible outputs over directory trees the tests make: the tar is a
//! function of the tree only (not of creation order, umask or clock), keeps
//! what a rootfs needs (hard links, symlinks, devices, xattrs, odd names,
//! large ids), compresses stably, and the OCI layout is valid and stable.

mod support;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::umask_lock;

use sha2::{Digest, Sha256};

use imgbuild::image::compare::EntrySummary;
use imgbuild::image::{self as output, ImageInfo, Manifest, compare, oci};
use imgbuild::lock::{LOCK_VERSION, LockedPackage, LockedRecipe, Lockfile};
use imgbuild::pack::Compression;
use imgbuild::pack::tar::{TarOptions, write_tree};

/// SOURCE_DATE_EPOCH for the tests: 2001-09-09, before any file made now.
const EPOCH: i64 = 1_000_000_000;
/// An mtime older than EPOCH, which must be kept as is.
const OLD: i64 = 900_000_000;
/// A uid too large for ustar's octal field (needs a pax record).
const BIG_UID: u32 = 3_000_000;
/// A file capability blob (cap_net_raw+ep, VFS_CAP_REVISION_2).
const CAP: [u8; 20] = [
    0x00, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,
];

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn set_mtime(path: &Path, secs: i64) {
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

fn long_name() -> String {
    format!("{}/{}", "d".repeat(120), "f".repeat(90))
}

/// One step of making the test tree, given its root.
type Step = Box<dyn Fn(&Path)>;

/// The steps that make the test tree; [`make_tree`] runs them in either order.
fn steps() -> Vec<Step> {
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
fn make_tree(root: &Path, reverse: bool, umask: u32) {
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

fn normalise_dirs(dir: &Path) {
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

fn tar_bytes(root: &Path, epoch: i64) -> Vec<u8> {
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

fn fixture() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    make_tree(&root, false, 0o022);
    let bytes = tar_bytes(&root, EPOCH);
    (tmp, root, bytes)
}

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
