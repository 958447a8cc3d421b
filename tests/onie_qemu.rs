//! Boot test of a built ONIE image (ignored by default; `ci/live.sh` runs
//! it after `imgbuild build sonic-p4`): the installer's own `fs.zip`,
//! extracted by the installer's own header, laid out as `install.sh` lays
//! it out on the NOS partition (`image-<version>/` on an ext4 labelled
//! `SONiC-OS`), booted by QEMU (TCG) with the kernel arguments `install.sh`
//! writes into grub.cfg. Passes when the image's initramfs has mounted the
//! squashfs root and the system reaches a login prompt on the serial
//! console. The serial log is kept (path printed) on failure.
//!
//! This proves the image side of the contract (kernel, initramfs loop-root
//! script, squashfs, overlay); GRUB and the partitioning are covered by
//! `tests/onie_installer.rs` with a simulated ONIE.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the boot may take under TCG on a loaded 2-core machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);

fn out_dir() -> PathBuf {
    match std::env::var_os("IMGBUILD_ONIE_OUT") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("out/sonic-p4"),
    }
}

/// `key='value'` from a conf file the installer carries.
fn conf_value(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing"))
        .trim_matches('\'')
        .to_string()
}

fn check(cmd: &mut Command) {
    let st = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(st.success(), "{cmd:?} failed");
}

/// Boots `disk` in QEMU (TCG, serial to `serial`) with `extra` arguments
/// until a login prompt; the serial log, or why not (with its last lines).
fn boot_to_login(w: &Path, disk: &Path, serial: &Path, extra: &[String]) -> Result<String, String> {
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-machine", "pc", "-accel", "tcg", "-m", "1024", "-smp", "1"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .args(extra)
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .args(["-nic", "none"])
        .current_dir(w)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 (ci/setup.sh installs qemu-system-x86)");
    let started = Instant::now();
    let mut log;
    let outcome = loop {
        std::thread::sleep(Duration::from_secs(2));
        log = fs::read_to_string(serial).unwrap_or_default();
        if log.contains("login:") {
            break Ok(());
        }
        if log.contains("Kernel panic") || log.contains("(initramfs)") {
            break Err("the boot failed (panic or initramfs shell)".to_string());
        }
        if let Ok(Some(st)) = qemu.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = qemu.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            break Err(format!("qemu exited ({st}) before a login prompt: {err}"));
        }
        if started.elapsed() > BOOT_TIMEOUT {
            break Err("no login prompt in time".to_string());
        }
    };
    let _ = qemu.kill();
    let _ = qemu.wait();
    eprintln!("boot took {:.0}s", started.elapsed().as_secs_f64());
    outcome.map(|()| log.clone()).map_err(|why| {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        format!(
            "{why}; serial log {}; last lines:\n{}",
            serial.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    })
}

#[test]
#[ignore = "needs out/sonic-p4 (imgbuild build sonic-p4), qemu-system-x86_64, mkfs.ext4, unzip; minutes"]
fn onie_image_boots_to_login_in_qemu() {
    let out = out_dir();
    let bin = fs::read_dir(&out)
        .unwrap_or_else(|e| panic!("{}: {e} (run `imgbuild build sonic-p4`)", out.display()))
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("onie-installer-")
        })
        .expect("an onie-installer-*.bin in the output");
    let work = tempfile::Builder::new()
        .prefix("onie-qemu-")
        .tempdir()
        .unwrap();
    let w = work.path();

    // The installer's own extraction.
    let o = Command::new("sh")
        .arg(&bin)
        .env("extract", "1")
        .env("TMPDIR", w)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).unwrap();
    let extracted = PathBuf::from(
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("Image extracted to: "))
            .unwrap(),
    );
    let inst = extracted.join("installer");
    let conf = fs::read_to_string(inst.join("onie-image.conf")).unwrap();
    let version = conf_value(&conf, "image_version");
    let kernel = conf_value(&conf, "image_kernel");
    let initrd = conf_value(&conf, "image_initrd");
    let label = conf_value(
        &fs::read_to_string(inst.join("platform.conf")).unwrap(),
        "part_label",
    );

    // The NOS partition as install.sh fills it (here a whole-disk ext4).
    let part = w.join("part");
    let image_dir = format!("image-{version}");
    fs::create_dir_all(part.join(&image_dir)).unwrap();
    check(
        Command::new("unzip")
            .args(["-q", "-o"])
            .arg(inst.join("fs.zip"))
            .arg("-d")
            .arg(part.join(&image_dir)),
    );
    let disk = w.join("disk.raw");
    check(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", &label, "-d"])
            .arg(&part)
            .arg(&disk)
            .arg("3G"),
    );
    let boot = part.join(&image_dir).join("boot");
    let serial = w.join("serial.log");
    let append = format!(
        "root=LABEL={label} rw loop={image_dir}/fs.squashfs loopfstype=squashfs console=ttyS0,115200n8"
    );
    let mut args: Vec<String> = vec!["-kernel".into(), boot.join(&kernel).display().to_string()];
    args.extend(["-initrd".into(), boot.join(&initrd).display().to_string()]);
    args.extend(["-append".into(), append]);
    let log = boot_to_login(w, &disk, &serial, &args).unwrap_or_else(|why| {
        let kept = work.keep();
        panic!("{why}; work directory kept: {}", kept.display())
    });
    assert!(
        log.contains(&format!("imgbuild: mounting /{image_dir}/fs.squashfs")),
        "the loop-root script did not run:\n{log}"
    );
}

/// The simulated ONIE, run as root in a private mount namespace: a blank
/// GPT disk (a loop device) with ONIE's layout (GRUB-BOOT bios_grub
/// partition, ONIE-BOOT ext4 with a grub.cfg), then the `.bin` run as ONIE
/// runs it (`onie_*` exported). ONIE's own tools are the host's, except
/// `grub-install`: a wrapper runs the image's own grub-install (grub-pc from
/// the lock) chrooted into the image's rootfs, so the GRUB on the disk comes
/// from locked packages.
const SIMULATED_ONIE: &str = r#"
set -eu
w=$1 bin=$2 root=$3
disk="$w/disk.raw"
truncate -s 6G "$disk"
sgdisk -q --new=1::+1M --typecode=1:EF02 --change-name=1:GRUB-BOOT \
	--new=2::+128M --typecode=2:3000 --change-name=2:ONIE-BOOT "$disk"
dev=$(losetup -f --show -P "$disk")
trap 'umount "$root/dev" "$root/proc" "$root/sys" 2>/dev/null || true; losetup -d "$dev"' EXIT
i=0
while [ ! -e "${dev}p2" ] && [ $i -lt 40 ]; do sleep 0.5; i=$((i + 1)); done
if [ ! -e "${dev}p2" ]; then
	echo "no ${dev}p2: this kernel makes no partition devices for loop devices (needs CONFIG_EFI_PARTITION)" >&2
	exit 1
fi
mkfs.ext4 -q -L ONIE-BOOT "${dev}p2"
mkdir -p "$w/onie-boot"
mount "${dev}p2" "$w/onie-boot"
mkdir -p "$w/onie-boot/grub"
printf "menuentry 'ONIE: Install OS' {\n\techo 'simulated ONIE'\n}\n" >"$w/onie-boot/grub/grub.cfg"
umount "$w/onie-boot"
mount --bind /dev "$root/dev"
mount -t proc proc "$root/proc"
mount --bind /sys "$root/sys"
mkdir -p "$root/tmp"
PATH="$w/bin:$PATH" TMPDIR="$root/tmp" onie_platform=x86_64-kvm_x86_64-r0 \
	onie_machine=kvm_x86_64 onie_arch=x86_64 onie_firmware=bios sh "$bin"
"#;

/// `grub-install` of the simulated ONIE: the image's own, in a chroot.
const IMAGE_GRUB_INSTALL: &str = r#"#!/bin/sh
# ONIE's grub-install, played by the image's own (locked) grub-pc.
root='@ROOT@'
args=
for a in "$@"; do
	case "$a" in
	--boot-directory=*) a="--boot-directory=${a#--boot-directory=$root}" ;;
	esac
	args="$args $a"
done
echo "grub-install (the image's):$args"
exec chroot "$root" grub-install $args
"#;

/// The whole ONIE path: install with the `.bin` on a simulated ONIE disk,
/// then boot that disk (SeaBIOS → the image's GRUB → kernel → squashfs
/// root) to a login prompt.
///
/// Not yet seen passing: the machine it was written on runs a kernel
/// without GPT/MBR partition support (`CONFIG_EFI_PARTITION` unset), so
/// `losetup -P` makes no partition devices and the simulated ONIE stops
/// with a message saying so. It needs a stock distribution kernel.
#[test]
#[ignore = "needs out/sonic-p4, root, loop devices with partitions, unshare, sgdisk, qemu-system-x86_64; minutes"]
fn onie_install_then_boot_in_qemu() {
    let out = out_dir();
    let bin = fs::read_dir(&out)
        .unwrap_or_else(|e| panic!("{}: {e} (run `imgbuild build sonic-p4`)", out.display()))
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("onie-installer-")
        })
        .expect("an onie-installer-*.bin in the output");
    let work = tempfile::Builder::new()
        .prefix("onie-install-")
        .tempdir()
        .unwrap();
    let w = work.path();
    // The image's rootfs, for its grub-install.
    let root = w.join("image-root");
    fs::create_dir(&root).unwrap();
    check(
        Command::new("tar")
            .args(["-xpf"])
            .arg(out.join("rootfs.tar"))
            .arg("--numeric-owner")
            .arg("-C")
            .arg(&root),
    );
    fs::create_dir_all(w.join("bin")).unwrap();
    let wrapper = w.join("bin/grub-install");
    fs::write(
        &wrapper,
        IMAGE_GRUB_INSTALL.replace("@ROOT@", &root.display().to_string()),
    )
    .unwrap();
    fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let o = Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            SIMULATED_ONIE,
            "sh",
        ])
        .arg(w)
        .arg(&bin)
        .arg(&root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    eprintln!("--- installer stdout\n{stdout}--- stderr\n{stderr}");
    if !o.status.success() {
        let kept = work.keep();
        panic!(
            "the installer failed ({}); kept {}",
            o.status,
            kept.display()
        );
    }
    assert!(
        stdout.contains("grub-install (the image's): --target=i386-pc"),
        "{stdout}"
    );
    // The image's rootfs is not needed any more; the disk is.
    fs::remove_dir_all(&root).unwrap();

    let serial = w.join("serial.log");
    let log = boot_to_login(
        w,
        &w.join("disk.raw"),
        &serial,
        &["-boot".into(), "c".into()],
    )
    .unwrap_or_else(|why| {
        let kept = work.keep();
        panic!("{why}; work directory kept: {}", kept.display())
    });
    assert!(
        log.contains("Loading sonic-p4"),
        "GRUB's entry did not run:\n{log}"
    );
    assert!(log.contains("imgbuild: mounting /image-"), "{log}");
}
