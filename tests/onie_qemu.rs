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
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-machine", "pc", "-accel", "tcg", "-m", "1024", "-smp", "1"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-kernel")
        .arg(boot.join(&kernel))
        .arg("-initrd")
        .arg(boot.join(&initrd))
        .arg("-append")
        .arg(&append)
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .args(["-nic", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 (ci/setup.sh installs qemu-system-x86)");
    let started = Instant::now();
    let mut log;
    let outcome = loop {
        std::thread::sleep(Duration::from_secs(2));
        log = fs::read_to_string(&serial).unwrap_or_default();
        if log.contains("login:") {
            break Ok(());
        }
        if log.contains("Kernel panic") || log.contains("(initramfs)") {
            break Err("the boot failed (panic or initramfs shell)");
        }
        if let Ok(Some(st)) = qemu.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = qemu.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            eprintln!("qemu exited ({st}): {err}");
            break Err("qemu exited before a login prompt");
        }
        if started.elapsed() > BOOT_TIMEOUT {
            break Err("no login prompt in time");
        }
    };
    let _ = qemu.kill();
    let _ = qemu.wait();
    eprintln!("boot took {:.0}s", started.elapsed().as_secs_f64());
    if let Err(why) = outcome {
        let kept = work.keep();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "{why}; serial log kept at {}; last lines:\n{}",
            kept.join("serial.log").display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    assert!(
        log.contains(&format!("imgbuild: mounting /{image_dir}/fs.squashfs")),
        "the loop-root script did not run:\n{log}"
    );
}
