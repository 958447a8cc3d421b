//! Boot tests of a built ONIE image (ignored by default; `ci/live.sh` runs
//! them after `imgbuild build sonic-p4`), QEMU under TCG, the serial log kept
//! (path printed) on failure:
//!
//! - `onie_image_boots_to_login_in_qemu`: the installer's own `fs.zip`,
//!   extracted by the installer's own header, laid out as `install.sh` lays
//!   it out (`image-<version>/` on an ext4 labelled `SONiC-OS`), booted with
//!   the kernel arguments `install.sh` writes into grub.cfg: the image's
//!   initramfs mounts the squashfs root and the system reaches a login;
//! - `onie_install_then_boot_in_qemu`: the whole path — a simulated ONIE
//!   runs the `.bin` on a blank ONIE-layout disk, then that disk boots on its
//!   own through the GRUB the installer put there.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the boot may take under TCG on a loaded 2-core machine. (The
/// drives use `werror=report`: by default QEMU pauses a VM whose disk write
/// fails, e.g. when the host's disk fills, and the test would sit out the
/// whole timeout.)
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
        .arg(format!(
            "file={},format=raw,if=virtio,werror=report,rerror=report",
            disk.display()
        ))
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

/// PID 1 of the simulated ONIE VM: the installer run as ONIE runs it
/// (`onie_*` exported, ONIE's tools in PATH), then power off.
const SIMULATED_ONIE_INIT: &str = r#"#!/bin/sh
export PATH=/host/onie/bin:/usr/sbin:/usr/bin:/sbin:/bin
export onie_platform=x86_64-kvm_x86_64-r0 onie_machine=kvm_x86_64 onie_arch=x86_64
export onie_firmware=bios onie_vendor_id=0 onie_serial_num=SIM0001
export TMPDIR=/tmp
mount -t tmpfs tmpfs /tmp
echo "ONIE-SIM: installing from /host/onie/@BIN@"
rc=0
sh "/host/onie/@BIN@" || rc=$?
echo "ONIE-SIM: rc=$rc"
sync
echo o >/proc/sysrq-trigger
sleep 30
"#;

/// Copies a host program and the libraries it needs that are not libc's
/// into `dir/real` and `dir/lib`, with a wrapper in `dir/bin`. The host and
/// the image are both bookworm, so the image's libc runs them.
fn borrow_tool(dir: &Path, program: &str) {
    for d in ["bin", "lib", "real"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    let path = String::from_utf8(
        Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let path = path.trim();
    assert!(!path.is_empty(), "{program} is not installed (ci/setup.sh)");
    fs::copy(path, dir.join("real").join(program)).unwrap();
    let ldd = String::from_utf8(Command::new("ldd").arg(path).output().unwrap().stdout).unwrap();
    for line in ldd.lines() {
        let Some((name, rest)) = line.trim().split_once(" => ") else {
            continue;
        };
        let lib = rest.split_whitespace().next().unwrap_or("");
        let base = ["libc.so", "libm.so", "ld-linux"];
        if lib.starts_with('/') && !base.iter().any(|b| name.starts_with(b)) {
            fs::copy(lib, dir.join("lib").join(name)).unwrap();
        }
    }
    let wrapper = dir.join("bin").join(program);
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nLD_LIBRARY_PATH=/host/onie/lib exec /host/onie/real/{program} \"$@\"\n"
        ),
    )
    .unwrap();
    fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
}

/// The whole ONIE path, in two QEMU (TCG) runs:
///
/// 1. the simulated ONIE: a VM booted from the image itself (its kernel,
///    initramfs and squashfs, as in the test above) with a second, blank
///    disk laid out as ONIE lays out its disk (GPT: GRUB-BOOT bios_grub
///    partition, ONIE-BOOT ext4 with a grub.cfg); its PID 1 runs the `.bin`
///    with the `onie_*` variables exported. ONIE's own `sgdisk` and `unzip`
///    are the host's (copied in); everything else, `grub-install` included,
///    is the image's own, i.e. from the lock;
/// 2. that disk alone, booted by SeaBIOS: the installed GRUB, its entry,
///    the kernel, the squashfs root, a login prompt.
#[test]
#[ignore = "needs out/sonic-p4, qemu-system-x86_64, sgdisk, unzip, mkfs.ext4; ~10 minutes"]
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
    let bin_name = bin.file_name().unwrap().to_string_lossy().into_owned();
    let work = tempfile::Builder::new()
        .prefix("onie-install-")
        .tempdir()
        .unwrap();
    let w = work.path();

    // The ONIE disk: GPT with ONIE's two partitions, ONIE-BOOT formatted in
    // place (mkfs at the partition's offset: no loop device needed).
    // `sgdisk` writes only the first and last sectors, so it goes last.
    let onie_disk = w.join("onie-disk.raw");
    fs::File::create(&onie_disk)
        .unwrap()
        .set_len(6 << 30)
        .unwrap();
    let onie_boot = w.join("onie-boot");
    fs::create_dir_all(onie_boot.join("grub")).unwrap();
    fs::write(
        onie_boot.join("grub/grub.cfg"),
        "menuentry 'ONIE: Install OS' {\n\techo 'simulated ONIE'\n}\n",
    )
    .unwrap();
    check(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "ONIE-BOOT", "-E", "offset=2097152", "-d"])
            .arg(&onie_boot)
            .arg(&onie_disk)
            .arg("131072k"),
    );
    // The partition table last: mke2fs wipes other signatures on the file.
    check(
        Command::new("sgdisk")
            .args([
                "--new=1:2048:4095",
                "--typecode=1:EF02",
                "--change-name=1:GRUB-BOOT",
            ])
            .args([
                "--new=2:4096:266239",
                "--typecode=2:3000",
                "--change-name=2:ONIE-BOOT",
            ])
            .arg(&onie_disk)
            .stdout(Stdio::null()),
    );

    // The runner disk: the image as the installer lays it out, plus the
    // installer, ONIE's tools and the init script.
    let o = Command::new("sh")
        .arg(&bin)
        .env("extract", "1")
        .env("TMPDIR", w)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).unwrap();
    let inst = PathBuf::from(
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("Image extracted to: "))
            .unwrap(),
    )
    .join("installer");
    let conf = fs::read_to_string(inst.join("onie-image.conf")).unwrap();
    let version = conf_value(&conf, "image_version");
    let kernel = conf_value(&conf, "image_kernel");
    let initrd = conf_value(&conf, "image_initrd");
    let part = w.join("runner");
    let image_dir = format!("image-{version}");
    fs::create_dir_all(part.join(&image_dir)).unwrap();
    check(
        Command::new("unzip")
            .args(["-q", "-o"])
            .arg(inst.join("fs.zip"))
            .arg("-d")
            .arg(part.join(&image_dir)),
    );
    fs::remove_dir_all(inst.parent().unwrap()).unwrap();
    let tools = part.join("onie");
    borrow_tool(&tools, "sgdisk");
    borrow_tool(&tools, "unzip");
    fs::copy(&bin, tools.join(&bin_name)).unwrap();
    let init = tools.join("init");
    fs::write(&init, SIMULATED_ONIE_INIT.replace("@BIN@", &bin_name)).unwrap();
    fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let runner = w.join("runner.raw");
    check(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "RUNNER", "-d"])
            .arg(&part)
            .arg(&runner)
            .arg("3G"),
    );
    let boot = part.join(&image_dir).join("boot");

    // 1. ONIE runs the installer.
    let serial1 = w.join("serial-onie.log");
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-machine", "pc", "-accel", "tcg", "-m", "1536", "-smp", "1"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot", "-nic", "none"])
        .arg("-serial")
        .arg(format!("file:{}", serial1.display()))
        .arg("-kernel")
        .arg(boot.join(&kernel))
        .arg("-initrd")
        .arg(boot.join(&initrd))
        .arg("-append")
        .arg(format!(
            "root=LABEL=RUNNER rw loop={image_dir}/fs.squashfs loopfstype=squashfs console=ttyS0,115200n8 init=/host/onie/init"
        ))
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio,werror=report,rerror=report", runner.display()))
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio,werror=report,rerror=report", onie_disk.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64");
    let started = Instant::now();
    while qemu.try_wait().unwrap().is_none() && started.elapsed() < BOOT_TIMEOUT {
        std::thread::sleep(Duration::from_secs(2));
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    let log1 = fs::read_to_string(&serial1).unwrap_or_default();
    eprintln!(
        "simulated ONIE took {:.0}s",
        started.elapsed().as_secs_f64()
    );
    if !log1.contains("ONIE-SIM: rc=0") {
        let kept = work.keep();
        let tail: Vec<&str> = log1.lines().rev().take(60).collect();
        panic!(
            "the installer did not succeed under the simulated ONIE; kept {}; last lines:\n{}",
            kept.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    assert!(
        log1.contains("installer: installing GRUB for BIOS"),
        "{log1}"
    );
    fs::remove_file(&runner).unwrap();
    fs::remove_dir_all(&part).unwrap();

    // 2. The installed disk boots on its own.
    let serial2 = w.join("serial.log");
    let log = boot_to_login(w, &onie_disk, &serial2, &[]).unwrap_or_else(|why| {
        let kept = work.keep();
        panic!("{why}; work directory kept: {}", kept.display())
    });
    assert!(
        log.contains(&format!("Loading sonic-p4 {version}")),
        "GRUB's entry did not run:\n{log}"
    );
    assert!(
        log.contains(&format!("imgbuild: mounting /{image_dir}/fs.squashfs")),
        "{log}"
    );
}
