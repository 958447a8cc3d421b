//! The ONIE installer `.bin` over a small fixture rootfs
//! (`tests/support/onie.rs`): its layout as the host's `sh` extracts it,
//! checksum refusal, reproducibility, and the build key.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use imgbuild::image::onie;
use support::onie::*;

#[test]
fn installer_layout_as_extracted_by_sh() {
    let fx = Fixture::new();
    let out = fx.emit("out", &onie_settings());
    let bin = out.join(BIN);
    assert!(fs::metadata(&bin).unwrap().permissions().mode() & 0o111 != 0);
    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["fs.squashfs", BIN], "no temp files left behind");

    // The payload is an uncompressed tar of installer/, sorted, root-owned.
    let data = fs::read(&bin).unwrap();
    let mut ar = tar::Archive::new(payload(&data));
    let mut listing = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(
            (e.header().uid().unwrap(), e.header().gid().unwrap()),
            (0, 0)
        );
        assert_eq!(e.header().mtime().unwrap(), EPOCH as u64);
        listing.push(e.path().unwrap().display().to_string());
    }
    assert_eq!(
        listing,
        [
            "installer/",
            "installer/fs.zip",
            "installer/install.sh",
            "installer/machine.conf",
            "installer/onie-image.conf",
            "installer/platform.conf",
            "installer/platforms/",
            &format!("installer/platforms/{WEDGE}"),
            &format!("installer/platforms/{KVM}"),
            "installer/platforms_asic",
        ]
    );

    // The header's own extraction (host sh, sha1sum, tar).
    let tmp = tempfile::tempdir().unwrap();
    let dir = extract(&bin, tmp.path());
    assert!(dir.starts_with(tmp.path()));
    let inst = dir.join("installer");
    assert!(
        fs::metadata(inst.join("install.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111
            != 0
    );
    assert_eq!(
        fs::read_to_string(inst.join("machine.conf")).unwrap(),
        "# The ONIE machine this installer is named for.\nmachine='accton_wedge100bf_32x'\narch='x86_64'\n"
    );
    assert_eq!(
        fs::read_to_string(inst.join("platforms_asic")).unwrap(),
        format!("{WEDGE}\n{KVM}\n")
    );
    let image_conf = fs::read_to_string(inst.join("onie-image.conf")).unwrap();
    assert!(image_conf.contains("image_version='sonic-p4-0123456789ab'\n"));
    assert!(image_conf.contains(&format!("image_kernel='vmlinuz-{KVER}'\n")));
    assert!(image_conf.contains(&format!("image_initrd='initrd.img-{KVER}'\n")));
    let wedge = fs::read_to_string(inst.join("platforms").join(WEDGE)).unwrap();
    assert!(
        wedge.contains("console_unit='0'\nconsole_speed='57600'\n"),
        "{wedge}"
    );

    // fs.zip: sorted, stored, fixed time, the boot files and the squashfs.
    let zip_file = fs::File::open(inst.join("fs.zip")).unwrap();
    let mut zip = zip::ZipArchive::new(zip_file).unwrap();
    let mut members = Vec::new();
    for i in 0..zip.len() {
        let f = zip.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        assert_eq!(f.compression(), zip::CompressionMethod::Stored, "{name}");
        let t = f.last_modified().unwrap();
        assert_eq!((t.year(), t.month(), t.day()), (2023, 11, 14), "{name}");
        members.push(name);
    }
    assert_eq!(
        members,
        [
            "boot/".to_string(),
            format!("boot/initrd.img-{KVER}"),
            format!("boot/vmlinuz-{KVER}"),
            "fs.squashfs".into(),
            "platform.tar.gz".into(),
        ]
    );
    // The host's unzip (what ONIE's busybox unzip stands in for) reads it.
    let unz = tmp.path().join("unz");
    let st = Command::new("unzip")
        .args(["-q", "-o"])
        .arg(inst.join("fs.zip"))
        .arg("-d")
        .arg(&unz)
        .status()
        .expect("unzip (ci/setup.sh installs it)");
    assert!(st.success());
    assert_eq!(
        fs::read(unz.join(format!("boot/vmlinuz-{KVER}"))).unwrap(),
        fs::read(fx.root().join(format!("boot/vmlinuz-{KVER}"))).unwrap()
    );
    assert_eq!(
        sha256_file(&unz.join("fs.squashfs")),
        sha256_file(&out.join("fs.squashfs"))
    );
    let tgz = fs::File::open(unz.join("platform.tar.gz")).unwrap();
    let mut ptar = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    let pnames: Vec<String> = ptar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(
        pnames,
        [
            "platform/".to_string(),
            format!("platform/{WEDGE}/"),
            format!("platform/{KVM}/")
        ]
    );
}

#[test]
fn flipped_payload_byte_is_refused() {
    let fx = Fixture::new();
    let out = fx.emit("out", &onie_settings());
    let mut data = fs::read(out.join(BIN)).unwrap();
    let start = data.len() - payload(&data).len();
    // A byte inside install.sh's tar member, well past the first headers.
    let at = start + 2048 + 100;
    data[at] ^= 0x20;
    let bad = fx.dir.path().join("bad.bin");
    fs::write(&bad, &data).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for extract_only in [true, false] {
        let mut cmd = Command::new("sh");
        cmd.arg(&bad)
            .env("TMPDIR", tmp.path())
            .env("onie_platform", KVM);
        if extract_only {
            cmd.env("extract", "1");
        }
        let o = run(&mut cmd);
        assert_eq!(o.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains("Unable to verify archive checksum"),
            "{stderr}"
        );
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(!stdout.contains("installer:") && !stdout.contains("extracted"));
    }
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing was extracted"
    );
    // The intact file passes (the check is not refusing everything).
    let o = run(Command::new("sh")
        .arg(out.join(BIN))
        .env("extract", "1")
        .env("TMPDIR", tmp.path()));
    assert!(o.status.success());
}

#[test]
fn outputs_are_reproducible() {
    let fx = Fixture::new();
    let a = fx.emit("a", &onie_settings());
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let b = fx.emit("b", &onie_settings());
    rustix::process::umask(old);
    for name in [BIN, "fs.squashfs"] {
        assert_eq!(
            sha256_file(&a.join(name)),
            sha256_file(&b.join(name)),
            "{name}"
        );
    }
    // And they depend on their inputs: another console → another installer,
    // same squashfs.
    let mut other = onie_settings();
    other.platforms[1].console.speed = 9600;
    let c = fx.emit("c", &other);
    assert_ne!(sha256_file(&a.join(BIN)), sha256_file(&c.join(BIN)));
    assert_eq!(
        sha256_file(&a.join("fs.squashfs")),
        sha256_file(&c.join("fs.squashfs"))
    );
}

#[test]
fn the_onie_output_key_follows_the_build_key() {
    let a = onie::output_key("sha256:00");
    assert_eq!(a, onie::output_key("sha256:00"));
    assert_ne!(a, onie::output_key("sha256:01"));
    assert_ne!(a, "sha256:00");
}
