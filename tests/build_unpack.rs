//! build::unpack on real .debs from the fixture kit: normal trees (files, dirs,
//! symlinks, hard links, modes, owners, mtimes), every compression, and hostile
//! entries (`../x`, `/etc/x`, symlink escapes, foreign hard links) that must be
//! refused or kept inside the root, with errors naming the package and entry.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use imgbuild::deb::{self as unpack, ExtractOptions, MaintScript, UnpackError};
use support::deb::DEB_MTIME;
use support::*;

/// A temp dir with `root/` (the target) and `outside/` (must stay empty).
struct Scene {
    tmp: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let tmp = tempfile::Builder::new()
            .prefix("imgbuild-unpack-")
            .tempdir()
            .unwrap();
        fs::create_dir(tmp.path().join("root")).unwrap();
        fs::create_dir(tmp.path().join("outside")).unwrap();
        Scene { tmp }
    }
    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }
    fn outside(&self) -> PathBuf {
        self.tmp.path().join("outside")
    }
    fn deb(&self, spec: &DebSpec) -> PathBuf {
        self.write_deb(&spec.file_name(), &spec.build())
    }
    fn write_deb(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.tmp.path().join(name);
        fs::write(&path, bytes).unwrap();
        path
    }
    fn unpack(&self, deb: &Path) -> Result<unpack::Unpacked, UnpackError> {
        unpack::unpack(deb, &self.root(), &ExtractOptions::default())
    }
    fn assert_outside_empty(&self) {
        let left: Vec<_> = fs::read_dir(self.outside())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(
            left.is_empty(),
            "something was written outside the root: {left:?}"
        );
        // Nothing but root/, outside/ and the .debs next to them either.
        for e in fs::read_dir(self.tmp.path()).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name == "root" || name == "outside" || name.ends_with(".deb"),
                "stray {p:?}"
            );
        }
    }
}

fn raw(name: &str, kind: RawKind, data: &[u8], mode: u32) -> RawEntry {
    RawEntry {
        name: name.as_bytes().to_vec(),
        kind,
        data: data.to_vec(),
        mode,
    }
}

fn sample() -> DebSpec {
    DebSpec::new("hello", "1.0-1", "amd64")
        .file("/usr/bin/hello", b"#!/bin/sh\necho hello\n".to_vec(), 0o755)
        .file("/usr/bin/suid-helper", b"x".to_vec(), 0o4755)
        .file("/etc/hello.conf", b"greeting=hi\n".to_vec(), 0o640)
        .file(
            &format!("/usr/share/{}/long", "d".repeat(120)),
            b"long name".to_vec(),
            0o644,
        )
        .symlink("/usr/bin/hi", "hello")
        .symlink("/usr/lib/abs-link", "/etc/hello.conf")
        .raw_entry(raw(
            "./usr/bin/hello-hard",
            RawKind::Hardlink(b"./usr/bin/hello".to_vec()),
            b"",
            0o755,
        ))
        .script("postinst", "#!/bin/sh\nexit 0\n")
        .control_member(
            "conffiles",
            "/etc/hello.conf\nremove-on-upgrade /etc/old.conf\n",
        )
        .control_member("triggers", "interest-noawait /usr/share/hello\n")
}

#[test]
fn unpacks_a_normal_package_with_metadata_and_list_order() {
    let scene = Scene::new();
    let deb = scene.deb(&sample());
    let out = scene.unpack(&deb).unwrap();
    let root = scene.root();

    assert_eq!(
        fs::read(root.join("usr/bin/hello")).unwrap(),
        b"#!/bin/sh\necho hello\n"
    );
    let meta = fs::metadata(root.join("usr/bin/hello")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    assert_eq!(meta.mtime(), DEB_MTIME as i64);
    assert_eq!(
        fs::metadata(root.join("usr/bin/suid-helper"))
            .unwrap()
            .mode()
            & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::metadata(root.join("etc/hello.conf")).unwrap().mode() & 0o7777,
        0o640
    );
    assert_eq!(
        fs::read_link(root.join("usr/bin/hi")).unwrap(),
        Path::new("hello")
    );
    assert_eq!(
        fs::read_link(root.join("usr/lib/abs-link")).unwrap(),
        Path::new("/etc/hello.conf")
    );
    assert_eq!(
        fs::symlink_metadata(root.join("usr/lib/abs-link"))
            .unwrap()
            .mtime(),
        DEB_MTIME as i64
    );
    let hard = fs::metadata(root.join("usr/bin/hello-hard")).unwrap();
    assert_eq!(hard.ino(), meta.ino(), "hard link shares the inode");
    assert_eq!(hard.nlink(), 2);
    let long = root.join(format!("usr/share/{}/long", "d".repeat(120)));
    assert_eq!(fs::read(long).unwrap(), b"long name");
    if rustix::process::geteuid().is_root() {
        assert_eq!((meta.uid(), meta.gid()), (0, 0));
    }
    assert!(
        fs::read_dir(root.join("usr/bin")).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("imgbuild-new")),
        "temporary names were left behind"
    );

    // dpkg's .list: archive order, "/." first, directories without a slash.
    let long_dir = format!("/usr/share/{}", "d".repeat(120));
    let expected = [
        "/.",
        "/etc",
        "/usr",
        "/usr/bin",
        "/usr/lib",
        "/usr/share",
        long_dir.as_str(),
        "/etc/hello.conf",
        "/usr/bin/hello",
        "/usr/bin/suid-helper",
    ];
    assert_eq!(&out.paths[..expected.len()], &expected);
    assert_eq!(out.paths.len(), expected.len() + 4);
    assert_eq!(out.paths.last().unwrap(), "/usr/bin/hello-hard");

    // Control members.
    let c = &out.control;
    assert!(c.control().starts_with("Package: hello\nVersion: 1.0-1\n"));
    let postinst = c.script(MaintScript::Postinst).unwrap();
    assert_eq!(
        (postinst.data.as_slice(), postinst.mode),
        (&b"#!/bin/sh\nexit 0\n"[..], 0o755)
    );
    assert!(c.script(MaintScript::Prerm).is_none());
    assert_eq!(c.conffiles(), ["/etc/hello.conf", "/etc/old.conf"]);
    assert!(String::from_utf8_lossy(c.md5sums().unwrap()).contains("  usr/bin/hello\n"));
    assert!(c.get("triggers").is_some());
    assert_eq!(unpack::read_control(&deb).unwrap(), out.control);
    scene.assert_outside_empty();
}

#[test]
fn gzip_zstd_bzip2_and_plain_members_unpack_alike() {
    let spec = sample().gzip();
    let gz = spec.build();
    for ext in ["gz", "zst", "bz2", ""] {
        let scene = Scene::new();
        let deb = scene.write_deb(&format!("hello-{ext}.deb"), &recompress(&gz, ext));
        let out = scene.unpack(&deb).unwrap_or_else(|e| panic!("{ext}: {e}"));
        assert_eq!(
            fs::read(scene.root().join("usr/bin/hello")).unwrap(),
            b"#!/bin/sh\necho hello\n",
            "{ext}"
        );
        assert_eq!(out.paths.len(), 14, "{ext}");
    }
}

/// Rewrites a gzip .deb's tar members with another compression (`""` = none).
fn recompress(deb: &[u8], ext: &str) -> Vec<u8> {
    let mut input = ar::Archive::new(deb);
    let mut out = ar::Builder::new(Vec::new());
    while let Some(entry) = input.next_entry() {
        let mut entry = entry.unwrap();
        let name = String::from_utf8(entry.header().identifier().to_vec()).unwrap();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        let (name, bytes) = match name.strip_suffix(".gz") {
            None => (name, bytes),
            Some(base) => {
                let mut tar = Vec::new();
                flate2::read::GzDecoder::new(&bytes[..])
                    .read_to_end(&mut tar)
                    .unwrap();
                let packed = match ext {
                    "gz" => bytes,
                    "zst" => zstd::encode_all(&tar[..], 3).unwrap(),
                    "bz2" => {
                        let mut enc =
                            bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
                        enc.write_all(&tar).unwrap();
                        enc.finish().unwrap()
                    }
                    _ => tar,
                };
                let dot = if ext.is_empty() { "" } else { "." };
                (format!("{base}{dot}{ext}"), packed)
            }
        };
        out.append(
            &ar::Header::new(name.into_bytes(), bytes.len() as u64),
            &bytes[..],
        )
        .unwrap();
    }
    out.into_inner().unwrap()
}

/// Asserts a refusal naming the .deb and the entry.
fn assert_refused(err: UnpackError, deb: &Path, entry: &str) {
    let text = err.to_string();
    assert!(
        matches!(err, UnpackError::Refused { .. }),
        "not a refusal: {text}"
    );
    assert!(
        text.contains(&deb.display().to_string()),
        "error does not name the .deb: {text}"
    );
    assert!(
        text.contains(&format!("'{entry}'")),
        "error does not name the entry {entry}: {text}"
    );
}

#[test]
fn dot_dot_entries_are_refused() {
    for name in ["./../outside/x", "../outside/x", "./usr/../../outside/x"] {
        let scene = Scene::new();
        let deb = scene.deb(&DebSpec::new("evil", "1", "all").raw_entry(raw(
            name,
            RawKind::File,
            b"pwned",
            0o644,
        )));
        let err = scene.unpack(&deb).unwrap_err();
        assert_refused(err, &deb, name);
        scene.assert_outside_empty();
    }
}

#[test]
fn absolute_entries_are_refused() {
    let scene = Scene::new();
    let target = scene.outside().join("x");
    let name = target.to_str().unwrap().to_string();
    let deb = scene.deb(&DebSpec::new("evil", "1", "all").raw_entry(raw(
        &name,
        RawKind::File,
        b"pwned",
        0o644,
    )));
    assert_refused(scene.unpack(&deb).unwrap_err(), &deb, &name);
    scene.assert_outside_empty();
    assert!(!scene.root().join(name.trim_start_matches('/')).exists());
}

#[test]
fn symlinked_parents_never_lead_out_of_the_root() {
    let scene = Scene::new();
    let outside = scene.outside();
    let outside_abs = outside.to_str().unwrap();
    let deb = scene.deb(
        &DebSpec::new("evil", "1", "all")
            // `-> /` and `-> ../../..` are resolved as if the root were `/`.
            .raw_entry(raw("./slash", RawKind::Symlink(b"/".to_vec()), b"", 0o777))
            .raw_entry(raw(
                "./slash/etc/written-via-slash",
                RawKind::File,
                b"1",
                0o644,
            ))
            .raw_entry(raw(
                "./up",
                RawKind::Symlink(b"../../../../../..".to_vec()),
                b"",
                0o777,
            ))
            .raw_entry(raw("./up/written-via-up", RawKind::File, b"2", 0o644))
            .raw_entry(raw(
                "./up/outside/written-via-up-outside",
                RawKind::File,
                b"3",
                0o644,
            )),
    );
    scene.unpack(&deb).unwrap();
    let root = scene.root();
    assert_eq!(fs::read(root.join("etc/written-via-slash")).unwrap(), b"1");
    assert_eq!(fs::read(root.join("written-via-up")).unwrap(), b"2");
    assert_eq!(
        fs::read(root.join("outside/written-via-up-outside")).unwrap(),
        b"3"
    );
    scene.assert_outside_empty();

    // A symlink straight at the host directory: inside the root that path does
    // not exist, so the entry fails instead of following it out.
    let deb = scene.deb(
        &DebSpec::new("evil2", "1", "all")
            .raw_entry(raw(
                "./host",
                RawKind::Symlink(outside_abs.as_bytes().to_vec()),
                b"",
                0o777,
            ))
            .raw_entry(raw("./host/pwned", RawKind::File, b"x", 0o644)),
    );
    assert_refused(scene.unpack(&deb).unwrap_err(), &deb, "./host/pwned");
    scene.assert_outside_empty();
}

#[test]
fn a_symlink_at_the_final_name_is_replaced_not_followed() {
    let scene = Scene::new();
    let root = scene.root();
    fs::create_dir_all(root.join("etc")).unwrap();
    std::os::unix::fs::symlink(scene.outside().join("victim"), root.join("etc/passwd")).unwrap();
    let deb = scene.deb(&DebSpec::new("base-passwd", "1", "all").file(
        "/etc/passwd",
        b"root:x:0:0::/root:/bin/sh\n".to_vec(),
        0o644,
    ));
    scene.unpack(&deb).unwrap();
    assert!(
        fs::symlink_metadata(root.join("etc/passwd"))
            .unwrap()
            .is_file()
    );
    scene.assert_outside_empty();
}

#[test]
fn hard_links_must_point_at_an_earlier_file_of_the_package() {
    let scene = Scene::new();
    fs::write(scene.outside().join("secret"), b"s").unwrap();
    for (name, target) in [
        ("./usr/hl-escape", "./../outside/secret"),
        ("./usr/hl-abs", "/etc/passwd"),
        ("./usr/hl-foreign", "./etc/passwd"),
        ("./usr/hl-later", "./usr/bin/hello"),
    ] {
        let mut spec = DebSpec::new("evil", "1", "all").file("/usr/x", b"x".to_vec(), 0o644);
        // Present on disk (from "another package") but not shipped by this one.
        fs::create_dir_all(scene.root().join("etc")).unwrap();
        fs::write(scene.root().join("etc/passwd"), b"root").unwrap();
        spec = spec.raw_entry(raw(
            name,
            RawKind::Hardlink(target.as_bytes().to_vec()),
            b"",
            0o644,
        ));
        let deb = scene.deb(&spec);
        assert_refused(scene.unpack(&deb).unwrap_err(), &deb, name);
        assert!(
            !scene.root().join(name.trim_start_matches("./")).exists(),
            "{name}"
        );
    }
    assert_eq!(fs::read_dir(scene.outside()).unwrap().count(), 1);
}

#[test]
fn existing_directories_and_merged_usr_symlinks_are_kept() {
    let scene = Scene::new();
    let root = scene.root();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    fs::create_dir(root.join("etc")).unwrap();
    fs::set_permissions(root.join("etc"), fs::Permissions::from_mode(0o711)).unwrap();
    let deb = scene.deb(
        &DebSpec::new("dash", "1", "amd64")
            .file("/bin/sh", b"#!sh".to_vec(), 0o755)
            .file("/etc/x", b"x".to_vec(), 0o644),
    );
    scene.unpack(&deb).unwrap();
    assert!(
        fs::symlink_metadata(root.join("bin")).unwrap().is_symlink(),
        "/bin symlink replaced"
    );
    assert_eq!(fs::read(root.join("usr/bin/sh")).unwrap(), b"#!sh");
    assert_eq!(
        fs::metadata(root.join("etc")).unwrap().mode() & 0o7777,
        0o711,
        "existing dir changed"
    );

    // A file where the package wants a directory (or the reverse) is an error.
    fs::write(root.join("usr/share"), b"not a dir").unwrap();
    let deb =
        scene.deb(&DebSpec::new("doc", "1", "all").file("/usr/share/doc/x", b"x".to_vec(), 0o644));
    let err = scene.unpack(&deb).unwrap_err().to_string();
    assert!(
        err.contains("'./usr/share/'") && err.contains("not a directory"),
        "{err}"
    );
    let deb = scene.deb(&DebSpec::new("clash", "1", "all").raw_entry(raw(
        "./usr/bin",
        RawKind::File,
        b"x",
        0o644,
    )));
    let err = scene.unpack(&deb).unwrap_err().to_string();
    assert!(
        err.contains("'./usr/bin'") && err.contains("exists as a directory"),
        "{err}"
    );
    scene.assert_outside_empty();
}

#[test]
fn files_are_replaced_atomically_keeping_other_links_intact() {
    let scene = Scene::new();
    let root = scene.root();
    let v1 = scene.deb(&DebSpec::new("p", "1", "all").file("/usr/bin/p", b"v1".to_vec(), 0o755));
    scene.unpack(&v1).unwrap();
    // An outside hard link to the old file keeps the old contents: the new file
    // is a new inode renamed into place, not a rewrite of the old one.
    fs::hard_link(root.join("usr/bin/p"), scene.tmp.path().join("old.deb")).unwrap();
    let v2 = scene.deb(&DebSpec::new("p", "2", "all").file("/usr/bin/p", b"v2".to_vec(), 0o755));
    scene.unpack(&v2).unwrap();
    assert_eq!(fs::read(root.join("usr/bin/p")).unwrap(), b"v2");
    assert_eq!(fs::read(scene.tmp.path().join("old.deb")).unwrap(), b"v1");
}

#[test]
fn malformed_archives_name_the_file() {
    let scene = Scene::new();
    let deb = scene.write_deb("junk.deb", b"!<arch>\nnot really");
    let err = scene.unpack(&deb).unwrap_err().to_string();
    assert!(err.contains("junk.deb"), "{err}");
    let deb = scene.write_deb("text.deb", b"hello");
    let err = unpack::read_control(&deb).unwrap_err().to_string();
    assert!(err.contains("text.deb"), "{err}");
}

#[test]
fn pax_xattrs_and_file_capabilities_are_applied() {
    // data.tar from the tar crate (pax records), control.tar from a DebSpec.
    let mut data = tar::Builder::new(Vec::new());
    let root_is = rustix::process::geteuid().is_root();
    // VFS_CAP_REVISION_2 with the effective flag, permitted = CAP_NET_RAW (13).
    let mut cap = vec![0x01, 0, 0, 0x02];
    cap.extend_from_slice(&(1u32 << 13).to_le_bytes());
    cap.extend_from_slice(&[0; 12]);
    let mut records: Vec<(&str, &[u8])> = vec![("SCHILY.xattr.user.imgbuild", b"tested")];
    if root_is {
        records.push(("SCHILY.xattr.security.capability", &cap));
    }
    data.append_pax_extensions(records.iter().copied()).unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o755);
    header.set_mtime(DEB_MTIME);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    data.append_data(&mut header, "./usr/bin/ping", &b"ping"[..])
        .unwrap();
    let data = deb::gz(&data.into_inner().unwrap());
    let base = DebSpec::new("iputils-ping", "1", "amd64").gzip().build();
    let mut input = ar::Archive::new(&base[..]);
    let mut out = ar::Builder::new(Vec::new());
    while let Some(entry) = input.next_entry() {
        let mut entry = entry.unwrap();
        let name = entry.header().identifier().to_vec();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if name.starts_with(b"data.tar") {
            bytes = data.clone();
        }
        out.append(&ar::Header::new(name, bytes.len() as u64), &bytes[..])
            .unwrap();
    }
    let scene = Scene::new();
    let deb = scene.write_deb("ping.deb", &out.into_inner().unwrap());
    scene.unpack(&deb).unwrap();
    let ping = scene.root().join("usr/bin/ping");
    let get = |name: &str| {
        let mut buf = vec![0u8; 64];
        let n = rustix::fs::getxattr(&ping, name, &mut buf[..])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        buf.truncate(n);
        buf
    };
    assert_eq!(get("user.imgbuild"), b"tested");
    if root_is {
        assert_eq!(get("security.capability"), cap);
    }
}

/// Speed on a real package: `IMGBUILD_UNPACK_BENCH=/path/big.deb cargo test
/// --release --test build_unpack -- --ignored --nocapture unpack_speed`.
#[test]
#[ignore = "needs IMGBUILD_UNPACK_BENCH=/path/to/a/large.deb"]
fn unpack_speed() {
    let deb = PathBuf::from(std::env::var("IMGBUILD_UNPACK_BENCH").expect("IMGBUILD_UNPACK_BENCH"));
    let scene = Scene::new();
    let start = std::time::Instant::now();
    let out = scene.unpack(&deb).unwrap();
    let took = start.elapsed();
    let bytes: u64 = walk(&scene.root());
    let size = fs::metadata(&deb).unwrap().len();
    eprintln!(
        "{}: {} entries, {:.1} MB .deb, {:.1} MB unpacked in {:.2?} ({:.0} MB/s unpacked)",
        deb.display(),
        out.paths.len(),
        size as f64 / 1e6,
        bytes as f64 / 1e6,
        took,
        bytes as f64 / 1e6 / took.as_secs_f64()
    );
}

fn walk(dir: &Path) -> u64 {
    let mut total = 0;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = fs::symlink_metadata(e.path()).unwrap();
        if m.is_dir() {
            total += walk(&e.path());
        } else if m.is_file() {
            total += m.len();
        }
    }
    total
}
