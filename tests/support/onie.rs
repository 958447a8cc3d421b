//! The ONIE installer fixtures: a small rootfs (fake kernel and initramfs,
//! no real image) with its deterministic tar, the `.bin` helpers (extract,
//! payload) and a simulated ONIE (stub disk tools in PATH, a file-backed
//! "disk" directory). Used by `onie_installer`, `onie_install_sh` and
//! `onie_squashfs`.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

use imgbuild::image::onie::{self, OnieInputs};
use imgbuild::pack::tar::{TarOptions, write_tree};
use imgbuild::recipe::onie::{Console, Onie, OniePlatform};

pub const EPOCH: i64 = 1_700_000_000;
pub const KVER: &str = "6.1.0-99-amd64";
pub const WEDGE: &str = "x86_64-accton_wedge100bf_32x-r0";
pub const KVM: &str = "x86_64-kvm_x86_64-r0";

pub fn onie_settings() -> Onie {
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
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
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
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
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

    pub fn tar(&self) -> PathBuf {
        self.dir.path().join("rootfs.tar")
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Emits the ONIE outputs into a fresh directory `name`.
    pub fn emit(&self, name: &str, onie: &Onie) -> PathBuf {
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

pub const BIN: &str = "onie-installer-x86_64-accton_wedge100bf_32x.bin";

pub fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(p).unwrap()))
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("running sh");
    eprintln!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `extract=1 sh FILE.bin` with TMPDIR in `tmp`: the extracted directory.
pub fn extract(bin: &Path, tmp: &Path) -> PathBuf {
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
pub fn payload(bin: &[u8]) -> &[u8] {
    let marker = b"\nexit_marker\n";
    let at = bin
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("marker");
    &bin[at + marker.len()..]
}

/// Stub disk tools for a simulated ONIE: they log their arguments to
/// `$STUB/log` and keep a partition table in `$STUB/table`; `umount` moves
/// the "mounted" directory's contents to `$STUB/installed`.
pub fn stubs(stub: &Path, fail: Option<&str>) -> PathBuf {
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
pub fn run_as_onie(bin: &Path, stub: &Path, stub_bin: &Path, platform: &str) -> Output {
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

pub fn log_of(stub: &Path) -> String {
    fs::read_to_string(stub.join("log")).unwrap_or_default()
}
