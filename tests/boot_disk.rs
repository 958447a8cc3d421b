//! QEMU boot test of the R2lab node disk (ignored by default; `ci/live.sh`
//! runs it): builds `r2lab-node` (live archive for the fetch), boots a
//! sparse copy of `out/r2lab-node/disk.raw` under TCG (no KVM assumed) from
//! its MBR through GRUB, logs in as root with the empty password on the
//! serial console, checks the R2lab conventions from inside and powers off.
//!
//! Time-bounded (`BOOT_TIMEOUT`); the serial log is written to
//! `target/boot-logs/r2lab-node-serial.log` and its path printed on failure.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The whole boot, login, checks and power-off.
const BOOT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The serial console as QEMU writes it, shared with the reader thread.
#[derive(Clone, Default)]
struct Serial(Arc<Mutex<Vec<u8>>>);

impl Serial {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).replace('\r', "")
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A running QEMU; killed on drop (also when a check panics).
struct Vm {
    child: Child,
    serial: Serial,
    log: PathBuf,
    deadline: Instant,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::write(&self.log, self.serial.text());
    }
}

impl Vm {
    fn boot(disk: &Path, log: PathBuf) -> Vm {
        let mut child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-m", "1024", "-smp", "1", "-no-reboot"])
            .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
            .arg("-drive")
            .arg(format!("file={},format=raw,if=ide", disk.display()))
            .args(["-nic", "none"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("qemu-system-x86_64 (package qemu-system-x86) must be installed");
        let serial = Serial::default();
        let mut out = child.stdout.take().unwrap();
        let sink = serial.clone();
        // Also streamed to the log file, to follow a slow boot as it happens.
        let mut file = std::fs::File::create(&log).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.0.lock().unwrap().extend_from_slice(&buf[..n]);
                let _ = file.write_all(&buf[..n]);
            }
        });
        Vm {
            child,
            serial,
            log,
            deadline: Instant::now() + BOOT_TIMEOUT,
        }
    }

    fn fail(&self, what: &str) -> ! {
        let _ = std::fs::write(&self.log, self.serial.text());
        let text = self.serial.text();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "{what}; serial log kept in {}; its end:\n{}",
            self.log.display(),
            tail.join("\n")
        );
    }

    /// Waits until `needle` appears in the serial output after byte `from`;
    /// returns the offset just after it.
    fn wait_for(&self, needle: &str, from: usize) -> usize {
        loop {
            let text = self.serial.0.lock().unwrap().clone();
            let hay = String::from_utf8_lossy(&text[from.min(text.len())..]).into_owned();
            if let Some(i) = hay.find(needle) {
                return from + hay[..i].len() + needle.len();
            }
            if hay.contains("Login incorrect") {
                self.fail("the empty-password root login on the serial console was refused");
            }
            if Instant::now() > self.deadline {
                self.fail(&format!(
                    "timed out waiting for {needle:?} on the serial console"
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        // Slowly: the emulated UART has a small FIFO.
        for b in line.bytes() {
            stdin.write_all(&[b]).unwrap();
            stdin.flush().unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `cmd` in the logged-in shell and returns what it printed
    /// between two markers. The markers are spelled with quotes in the
    /// command (`@@BEG''IN`), so the echoed command line never matches.
    fn run(&mut self, cmd: &str) -> String {
        let from = self.serial.len();
        self.send(&format!("echo @@BEG''IN; {cmd}; echo @@E''ND\n"));
        let start = self.wait_for("@@BEGIN", from);
        let end = self.wait_for("@@END", start);
        let text = self.serial.0.lock().unwrap().clone();
        String::from_utf8_lossy(&text[start..end - "@@END".len()])
            .replace('\r', "")
            .trim()
            .to_string()
    }
}

fn imgbuild(ws: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_imgbuild"))
        .arg("-C")
        .arg(ws)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "imgbuild {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The root filesystem's UUID recorded in the built image's /etc/fstab.
fn fstab_uuid(rootfs_tar: &Path) -> Option<(String, bool)> {
    let mut machine_id_empty = None;
    let mut uuid = None;
    let mut archive = tar::Archive::new(std::fs::File::open(rootfs_tar).ok()?);
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        let path = entry.path().ok()?.to_string_lossy().into_owned();
        if path == "./etc/machine-id" || path == "etc/machine-id" {
            machine_id_empty = Some(entry.size() == 0);
        }
        if path == "./etc/fstab" || path == "etc/fstab" {
            let mut s = String::new();
            entry.read_to_string(&mut s).ok()?;
            uuid = Some(s);
        }
    }
    Some((uuid.unwrap_or_default(), machine_id_empty?))
}

#[test]
#[ignore = "builds r2lab-node from the live archive and boots it in QEMU (minutes)"]
fn r2lab_node_disk_boots_to_a_root_login() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"));
    let logs = target.join("boot-logs");
    std::fs::create_dir_all(&logs).unwrap();
    imgbuild(repo, &["fetch", "r2lab-node"]);
    imgbuild(repo, &["build", "r2lab-node"]);
    let out = repo.join("out/r2lab-node");
    let (_, machine_id_empty) = fstab_uuid(&out.join("rootfs.tar")).expect("reading rootfs.tar");
    assert!(
        machine_id_empty,
        "/etc/machine-id must be empty in the image"
    );
    let recipe = imgbuild::recipe::Recipe::load(repo, "r2lab-node").unwrap();
    let uuid = recipe.disk.expect("r2lab-node has [disk]").uuid;

    // Boot a sparse copy: the artifact is never modified.
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk.raw");
    let status = Command::new("cp")
        .arg("--sparse=always")
        .arg(out.join("disk.raw"))
        .arg(&disk)
        .status()
        .unwrap();
    assert!(status.success());
    let mut vm = Vm::boot(&disk, logs.join("r2lab-node-serial.log"));
    let at = vm.wait_for("Booting `r2lab-node'", 0);
    let at = vm.wait_for("login:", at);
    vm.send("root\n");
    // Empty password: straight to a shell (a `Password:` prompt would stall here).
    vm.wait_for("# ", at);
    vm.send("export TERM=dumb\n");

    let machine_id = vm.run("cat /etc/machine-id");
    if machine_id.len() != 32 || !machine_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        vm.fail(&format!(
            "/etc/machine-id is {machine_id:?}, not a fresh 32-hex-digit id"
        ));
    }
    let swaps = vm.run("tail -n +2 /proc/swaps | wc -l");
    if swaps != "0" {
        vm.fail(&format!("swap is on ({swaps} active swap areas)"));
    }
    let hostname = vm.run("test -e /etc/hostname && echo present || echo absent");
    if hostname != "absent" {
        vm.fail("/etc/hostname exists in the booted image");
    }
    let rules = vm.run("cat /etc/udev/rules.d/70-r2lab-net.rules");
    if !rules.contains("DRIVERS==\"igb\", NAME=\"control\"")
        || !rules.contains("DRIVERS==\"e1000e\", NAME=\"data\"")
    {
        vm.fail(&format!("udev naming rules missing: {rules:?}"));
    }
    let root = vm.run("findmnt -n -o UUID /");
    if root != uuid {
        vm.fail(&format!(
            "/ is {root:?}, expected the recipe's root UUID {uuid}"
        ));
    }
    let cmdline = vm.run("cat /proc/cmdline");
    if !cmdline.contains("console=ttyS0,115200") || !cmdline.contains(&format!("root=UUID={uuid}"))
    {
        vm.fail(&format!("unexpected kernel command line {cmdline:?}"));
    }
    let stamp = vm.run("cat /etc/rhubarbe-image");
    if !stamp.starts_with("r2lab-node") {
        vm.fail(&format!("/etc/rhubarbe-image is {stamp:?}"));
    }

    vm.send("poweroff\n");
    loop {
        if let Some(status) = vm.child.try_wait().unwrap() {
            assert!(status.success(), "qemu exited with {status}");
            break;
        }
        if Instant::now() > vm.deadline {
            vm.fail("the VM did not power off");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("serial log: {}", vm.log.display());
}
