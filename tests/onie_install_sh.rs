//! `install.sh` run against a simulated ONIE (stub disk tools in PATH, a
//! file-backed "disk" directory; `tests/support/onie.rs`): the platform
//! check, the command sequence, failures and disks without GPT.

mod support;

use std::fs;
use std::process::Command;

use support::onie::*;

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
