//! The ONIE installer over a small fixture rootfs (fake kernel and
//! initramfs, no real image): the `.bin`'s layout as the host's `sh`
//! extracts it, checksum refusal, reproducibility, the squashfs's contents,
//! and `install.sh` run against a simulated ONIE (stub disk tools in PATH,
//! a file-backed "disk" directory).

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

use imgbuild::image::onie::{self, OnieInputs};
use imgbuild::pack::tar::{TarOptions, write_tree};
use imgbuild::recipe::onie::{Console, Onie, OniePlatform};

const EPOCH: i64 = 1_700_000_000;
const KVER: &str = "6.1.0-99-amd64";
const WEDGE: &str = "x86_64-accton_wedge100bf_32x-r0";
const KVM: &str = "x86_64-kvm_x86_64-r0";

fn onie_settings() -> Onie {
    Onie {
        machine: "accton_wedge100bf_32x".into(),
        platforms: vec![
            OniePlatform {
                name: WEDGE.into(),
                console: Console {
                    unit: 0,
                    speed: 57600,
                },
            },
            OniePlatform {
                name: KVM.into(),
                console: Console::DEFAULT,
            },
        ],
        partition_label: "SONiC-OS".into(),
        partition_size_mib: 4096,
        version: None,
        cmdline: "quiet".into(),
    }
}

/// Deterministic filler bytes (so the "kernel" does not compress to nothing).
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A fixture rootfs tree and its deterministic tar.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for d in [
            "boot/grub",
            "etc",
            "usr/bin",
            "usr/lib",
            "home/user",
            "var/empty",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join(format!("boot/vmlinuz-{KVER}")), bytes(1, 300_000)).unwrap();
        fs::write(
            root.join(format!("boot/initrd.img-{KVER}")),
            bytes(2, 200_000),
        )
        .unwrap();
        fs::write(
            root.join(format!("boot/config-{KVER}")),
            "CONFIG_SQUASHFS=y\n",
        )
        .unwrap();
        fs::write(root.join("boot/grub/unicode.pf2"), "font").unwrap();
        fs::write(root.join("etc/hostname"), "sonic\n").unwrap();
        fs::write(root.join("usr/bin/hello"), "#!/bin/sh\necho hello\n").unwrap();
        fs::set_permissions(
            root.join("usr/bin/hello"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        // A multi-block file (1 MiB blocks) with a zero block, and a hard link.
        let mut big = bytes(3, 2_500_000);
        big[1 << 20..2 << 20].fill(0);
        fs::write(root.join("usr/lib/big.bin"), &big).unwrap();
        fs::hard_link(
            root.join("usr/lib/big.bin"),
            root.join("usr/lib/big-link.bin"),
        )
        .unwrap();
        symlink("hello", root.join("usr/bin/hi")).unwrap();
        fs::write(root.join("home/user/.profile"), "PS1=x\n").unwrap();
        if rustix::process::geteuid().is_root() {
            let own = |p: &Path| {
                rustix::fs::chown(
                    p,
                    Some(rustix::fs::Uid::from_raw(1000)),
                    Some(rustix::fs::Gid::from_raw(1000)),
                )
                .unwrap()
            };
            own(&root.join("home/user"));
            own(&root.join("home/user/.profile"));
        }
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let mut tar = fs::File::create(dir.path().join("rootfs.tar")).unwrap();
        write_tree(
            &root,
            &mut tar,
            &TarOptions {
                source_date_epoch: EPOCH,
            },
        )
        .unwrap();
        Fixture { dir }
    }

    fn tar(&self) -> PathBuf {
        self.dir.path().join("rootfs.tar")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Emits the ONIE outputs into a fresh directory `name`.
    fn emit(&self, name: &str, onie: &Onie) -> PathBuf {
        let out = self.dir.path().join(name);
        fs::create_dir(&out).unwrap();
        let inputs = OnieInputs {
            recipe: "sonic-p4",
            architecture: "amd64",
            onie,
            version: "sonic-p4-0123456789ab".into(),
            source_date_epoch: EPOCH,
        };
        onie::emit(&self.tar(), &out, &inputs).unwrap_or_else(|e| panic!("{e:#}"));
        out
    }
}

const BIN: &str = "onie-installer-x86_64-accton_wedge100bf_32x.bin";

fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(p).unwrap()))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("running sh");
    eprintln!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `extract=1 sh FILE.bin` with TMPDIR in `tmp`: the extracted directory.
fn extract(bin: &Path, tmp: &Path) -> PathBuf {
    let out = run(Command::new("sh")
        .arg(bin)
        .env("extract", "1")
        .env("TMPDIR", tmp));
    assert!(out.status.success(), "extract=1 failed");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Image extracted to: "))
        .expect("the header says where it extracted");
    PathBuf::from(dir)
}

/// The payload of a `.bin`: the bytes after the `exit_marker` line.
fn payload(bin: &[u8]) -> &[u8] {
    let marker = b"\nexit_marker\n";
    let at = bin
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("marker");
    &bin[at + marker.len()..]
}

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
fn squashfs_holds_the_rootfs_without_boot() {
    use backhand::{FilesystemReader, InnerNode};
    let fx = Fixture::new();
    let out = fx.emit("out", &onie_settings());
    let file = std::io::BufReader::new(fs::File::open(out.join("fs.squashfs")).unwrap());
    let fs_r = FilesystemReader::from_reader(file).unwrap();
    assert_eq!(fs_r.mod_time, EPOCH as u32);
    let mut paths = Vec::new();
    for node in fs_r.files() {
        let p = node.fullpath.display().to_string();
        let h = &node.header;
        assert!(h.mtime <= EPOCH as u32, "{p} mtime {}", h.mtime);
        match &node.inner {
            InnerNode::File(f) => {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut fs_r.file(f).reader(), &mut data).unwrap();
                let on_disk = fs::read(fx.root().join(p.trim_start_matches('/'))).unwrap();
                assert!(data == on_disk, "{p}: contents differ");
            }
            InnerNode::Symlink(s) if p == "/usr/bin/hi" => {
                assert_eq!(s.link, PathBuf::from("hello"))
            }
            _ => {}
        }
        if p == "/usr/bin/hello" {
            assert_eq!(h.permissions, 0o755);
        }
        if p == "/home/user/.profile" && rustix::process::geteuid().is_root() {
            assert_eq!((h.uid, h.gid), (1000, 1000));
        }
        paths.push(p);
    }
    assert!(paths.iter().all(|p| !p.starts_with("/boot")), "{paths:?}");
    for want in [
        "/etc/hostname",
        "/usr/lib/big.bin",
        "/usr/lib/big-link.bin",
        "/var/empty",
    ] {
        assert!(
            paths.iter().any(|p| p == want),
            "{want} missing from {paths:?}"
        );
    }
}

/// Stub disk tools for a simulated ONIE: they log their arguments to
/// `$STUB/log` and keep a partition table in `$STUB/table`; `umount` moves
/// the "mounted" directory's contents to `$STUB/installed`.
fn stubs(stub: &Path, fail: Option<&str>) -> PathBuf {
    let bin = stub.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(stub.join("dev")).unwrap();
    let dev = stub.join("dev").display().to_string();
    fs::write(
        stub.join("table"),
        "   1            2048            4095   1024.0 KiB  EF02  GRUB-BOOT\n   2            4096          266239   128.0 MiB   3000  ONIE-BOOT\n   3          266240         8654847   4.0 GiB     8300  SONiC-OS\n",
    )
    .unwrap();
    let log = format!("echo \"$(basename \"$0\") $*\" >> {}/log", stub.display());
    let scripts = [
        (
            "blkid",
            format!(
                "{log}\necho '{dev}/sda1: PARTLABEL=\"GRUB-BOOT\"'\necho '{dev}/sda2: LABEL=\"ONIE-BOOT\" TYPE=\"ext4\" PARTLABEL=\"ONIE-BOOT\"'\n"
            ),
        ),
        (
            "sgdisk",
            format!(
                "{log}\nt={s}/table\ncase \"$1\" in\n-p) echo 'Number  Start (sector)    End (sector)  Size       Code  Name'; cat $t ;;\n-d) grep -v \"^ *$2 \" $t > $t.new; mv $t.new $t ;;\n--new=*) n=${{1#--new=}}; n=${{n%%:*}}; echo \"   $n 1 2 4.0 GiB 8300 SONiC-OS\" >> $t; : > {dev}/sda$n ;;\nesac\n",
                s = stub.display()
            ),
        ),
        ("partprobe", format!("{log}\n")),
        ("mkfs.ext4", format!("{log}\n")),
        ("mount", format!("{log}\n")),
        (
            "umount",
            // Like a real unmount, the mount point is empty afterwards.
            format!(
                "{log}\nrm -rf {s}/installed; mv \"$1\" {s}/installed; mkdir \"$1\"\n",
                s = stub.display()
            ),
        ),
        ("grub-install", format!("{log}\n")),
        ("onie-nos-mode", format!("{log}\n")),
    ];
    for (name, body) in scripts {
        let fail_here = if fail == Some(name) { "exit 1\n" } else { "" };
        let p = bin.join(name);
        fs::write(&p, format!("#!/bin/sh\n{body}{fail_here}")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// Runs the `.bin` as ONIE would: `onie_platform` exported, stubs first in PATH.
fn run_as_onie(bin: &Path, stub: &Path, stub_bin: &Path, platform: &str) -> Output {
    let path = format!("{}:{}", stub_bin.display(), std::env::var("PATH").unwrap());
    run(Command::new("sh")
        .arg(bin)
        .env("PATH", path)
        .env("TMPDIR", stub)
        .env("onie_platform", platform)
        .env("onie_machine", "accton_wedge100bf_32x")
        .env("onie_arch", "x86_64")
        .env("onie_firmware", "bios"))
}

fn log_of(stub: &Path) -> String {
    fs::read_to_string(stub.join("log")).unwrap_or_default()
}

#[test]
fn install_sh_refuses_another_platform() {
    let fx = Fixture::new();
    let out = fx.emit("out", &onie_settings());
    let stub = tempfile::tempdir().unwrap();
    let stub_bin = stubs(stub.path(), None);
    let o = run_as_onie(
        &out.join(BIN),
        stub.path(),
        &stub_bin,
        "x86_64-mlnx_msn2700-r0",
    );
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("does not support this platform (x86_64-mlnx_msn2700-r0)")
            && stderr.contains(WEDGE),
        "{stderr}"
    );
    assert_eq!(log_of(stub.path()), "", "no disk tool may run");
    // Without ONIE's variables at all, it refuses too.
    let o = run(Command::new("sh")
        .arg(out.join(BIN))
        .env("TMPDIR", stub.path())
        .env(
            "PATH",
            format!("{}:{}", stub_bin.display(), std::env::var("PATH").unwrap()),
        ));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("onie_platform is not set"));
    assert_eq!(log_of(stub.path()), "");
}

#[test]
fn install_sh_installs_on_a_simulated_onie_disk() {
    let fx = Fixture::new();
    let out = fx.emit("out", &onie_settings());
    let stub = tempfile::tempdir().unwrap();
    let stub_bin = stubs(stub.path(), None);
    let o = run_as_onie(&out.join(BIN), stub.path(), &stub_bin, WEDGE);
    assert!(o.status.success(), "installer failed");
    let dev = stub.path().join("dev").display().to_string();
    let log = log_of(stub.path());
    let calls: Vec<&str> = log
        .lines()
        .filter(|l| !l.starts_with("sgdisk -p") && !l.starts_with("blkid"))
        .collect();
    let mnt_line = calls.iter().find(|l| l.starts_with("mount ")).unwrap();
    let mnt = mnt_line.rsplit(' ').next().unwrap();
    assert_eq!(
        calls,
        [
            format!("sgdisk -d 3 {dev}/sda"),
            format!("sgdisk --new=3::+4096M --change-name=3:SONiC-OS --typecode=3:8300 {dev}/sda"),
            format!("partprobe {dev}/sda"),
            format!("mkfs.ext4 -F -q -L SONiC-OS {dev}/sda3"),
            format!("mount -t ext4 {dev}/sda3 {mnt}"),
            format!("grub-install --target=i386-pc --boot-directory={mnt} --recheck {dev}/sda"),
            "onie-nos-mode -s".to_string(),
            format!("umount {mnt}"),
        ]
    );
    // Never the ONIE partition.
    assert!(!log.contains("-d 2"));
    let inst = stub.path().join("installed");
    let img = inst.join("image-sonic-p4-0123456789ab");
    assert_eq!(
        sha256_file(&img.join("fs.squashfs")),
        sha256_file(&out.join("fs.squashfs"))
    );
    assert!(img.join(format!("boot/vmlinuz-{KVER}")).is_file());
    let cfg = fs::read_to_string(inst.join("grub/grub.cfg")).unwrap();
    assert!(cfg.contains("serial --unit=0 --speed=57600 "), "{cfg}");
    assert!(
        cfg.contains(&format!(
            "linux /image-sonic-p4-0123456789ab/boot/vmlinuz-{KVER} root=LABEL=SONiC-OS rw loop=image-sonic-p4-0123456789ab/fs.squashfs loopfstype=squashfs console=tty0 console=ttyS0,57600n8 quiet"
        )),
        "{cfg}"
    );
    assert!(cfg.contains(&format!(
        "initrd /image-sonic-p4-0123456789ab/boot/initrd.img-{KVER}"
    )));
    assert!(
        cfg.contains("menuentry 'ONIE'") && cfg.contains("--set=root ONIE-BOOT"),
        "{cfg}"
    );
    let mc = fs::read_to_string(inst.join("machine.conf")).unwrap();
    assert!(mc.contains(&format!("onie_platform={WEDGE}\n")), "{mc}");
    // The temp directories of the header and of install.sh are gone.
    let left: Vec<_> = fs::read_dir(stub.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("imgbuild-onie.") || n.starts_with("nos-mnt."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn install_sh_fails_when_a_step_fails() {
    let fx = Fixture::new();
    let out = fx.emit("out", &onie_settings());
    for failing in ["mkfs.ext4", "grub-install"] {
        let stub = tempfile::tempdir().unwrap();
        let stub_bin = stubs(stub.path(), Some(failing));
        let o = run_as_onie(&out.join(BIN), stub.path(), &stub_bin, KVM);
        assert!(
            !o.status.success(),
            "{failing} failed but the installer succeeded"
        );
        let log = log_of(stub.path());
        assert!(!log.contains("onie-nos-mode"), "{failing}: {log}");
        if failing == "mkfs.ext4" {
            assert!(!log.contains("grub-install"), "{log}");
        } else {
            // The partition was mounted and is unmounted on the way out.
            assert!(log.contains("umount"), "{log}");
        }
    }
}

/// One entry of a file listing: path, kind, mode, owner, size, link target, mtime.
type Listing = Vec<(String, char, u32, u32, u32, u64, String, i64)>;

/// The listing of a rootfs tar, `/boot` and the root left out.
fn tar_listing(tar: &Path) -> Listing {
    let mut ar = tar::Archive::new(fs::File::open(tar).unwrap());
    let mut out: Listing = Vec::new();
    let mut sizes = std::collections::HashMap::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let p = raw
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if p.is_empty() || p == "boot" || p.starts_with("boot/") {
            continue;
        }
        let h = e.header();
        let t = h.entry_type();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let (kind, size, link) = if t.is_dir() {
            ('d', 0, String::new())
        } else if t.is_symlink() {
            ('l', link.len() as u64, link)
        } else if t.is_hard_link() {
            let to = link.trim_start_matches("./").to_string();
            ('f', sizes[&to], String::new())
        } else {
            sizes.insert(p.clone(), e.size());
            ('f', e.size(), String::new())
        };
        out.push((
            p,
            kind,
            h.mode().unwrap() & 0o7777,
            h.uid().unwrap() as u32,
            h.gid().unwrap() as u32,
            size,
            link,
            h.mtime().unwrap() as i64,
        ));
    }
    out.sort();
    out
}

/// The listing of a mounted tree.
fn tree_listing(root: &Path) -> Listing {
    use std::os::unix::fs::MetadataExt;
    let mut out: Listing = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            let (kind, size, link) = if m.is_dir() {
                stack.push(e.path());
                ('d', 0, String::new())
            } else if m.file_type().is_symlink() {
                let l = fs::read_link(e.path()).unwrap().display().to_string();
                ('l', m.size(), l)
            } else {
                ('f', m.size(), String::new())
            };
            out.push((
                rel,
                kind,
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                size,
                link,
                m.mtime(),
            ));
        }
    }
    out.sort();
    out
}

/// Loop-mounts `squashfs` read-only with the running kernel and returns
/// its listing; None when this process may not mount (not root, no loop).
fn mounted_listing(squashfs: &Path) -> Option<Listing> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let mnt = tempfile::tempdir().unwrap();
    let st = Command::new("mount")
        .args(["-t", "squashfs", "-o", "loop,ro"])
        .arg(squashfs)
        .arg(mnt.path())
        .status()
        .ok()?;
    if !st.success() {
        return None;
    }
    let listing = std::panic::catch_unwind(|| tree_listing(mnt.path()));
    let _ = Command::new("umount").arg(mnt.path()).status();
    Some(listing.expect("listing the mounted squashfs"))
}

#[test]
fn the_kernel_mounts_the_squashfs_as_the_tar_says() {
    let fx = Fixture::new();
    let out = fx.emit("out", &onie_settings());
    let Some(mounted) = mounted_listing(&out.join("fs.squashfs")) else {
        eprintln!("SKIPPED: cannot loop-mount here (needs root and loop devices)");
        return;
    };
    assert_eq!(mounted, tar_listing(&fx.tar()));
}

/// The squashfs of a real image's rootfs tar (`IMGBUILD_ONIE_ROOTFS_TAR`,
/// e.g. the sonic-p4 tar from the rootfs cache) mounts with the running
/// kernel and lists exactly the tar's entries but /boot; written twice, it
/// is the same bytes.
#[test]
#[ignore = "needs a real rootfs tar (IMGBUILD_ONIE_ROOTFS_TAR), root and loop devices"]
fn real_rootfs_squashfs_mounts_and_is_reproducible() {
    let tar = PathBuf::from(
        std::env::var_os("IMGBUILD_ONIE_ROOTFS_TAR").expect("set IMGBUILD_ONIE_ROOTFS_TAR"),
    );
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.squashfs"), dir.path().join("b.squashfs"));
    let t = std::time::Instant::now();
    onie::squashfs::write_from_tar(&tar, &a, EPOCH).unwrap();
    eprintln!(
        "squashfs: {} bytes in {:.1}s",
        fs::metadata(&a).unwrap().len(),
        t.elapsed().as_secs_f64()
    );
    onie::squashfs::write_from_tar(&tar, &b, EPOCH).unwrap();
    assert_eq!(sha256_file(&a), sha256_file(&b));
    let mounted = mounted_listing(&a).expect("mounting needs root and loop devices");
    let want = tar_listing(&tar);
    assert_eq!(mounted.len(), want.len());
    assert!(mounted == want, "the mounted squashfs differs from the tar");
}

#[test]
fn install_sh_refuses_a_disk_without_gpt() {
    let fx = Fixture::new();
    let out = fx.emit("out", &onie_settings());
    let stub = tempfile::tempdir().unwrap();
    let stub_bin = stubs(stub.path(), None);
    // What sgdisk says about an msdos-labelled disk.
    let sgdisk = stub_bin.join("sgdisk");
    fs::write(
        &sgdisk,
        format!(
            "#!/bin/sh\necho \"sgdisk $*\" >> {}/log\necho 'Found invalid GPT and valid MBR; converting MBR to GPT format'\necho 'in memory. THIS OPERATION IS POTENTIALLY DESTRUCTIVE!'\n",
            stub.path().display()
        ),
    )
    .unwrap();
    let o = run_as_onie(&out.join(BIN), stub.path(), &stub_bin, KVM);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no valid GPT"));
    let log = log_of(stub.path());
    assert!(
        log.lines()
            .all(|l| l.starts_with("sgdisk -p") || l.starts_with("blkid")),
        "only reads before refusing: {log}"
    );
}

#[test]
fn the_onie_output_key_follows_the_build_key() {
    let a = onie::output_key("sha256:00");
    assert_eq!(a, onie::output_key("sha256:00"));
    assert_ne!(a, onie::output_key("sha256:01"));
    assert_ne!(a, "sha256:00");
}
