//! The hostile-package escapes of the sandbox issue, offline: the classic
//! "shocker" (`open_by_handle_at` on inode 2 to reach the host's root
//! directory), `mknod` of a block and a char device, writing `/proc/sys`,
//! looking at the host's disks in `/sys`, mounting, new user namespaces,
//! keyrings, bpf, ptrace, module loading, kexec, the network (outside and
//! a listener on the host's loopback), and the x32 ABI. `tests/data/shocker.c` tries them all; it is compiled here with the
//! host's `cc` (statically, so it runs in any root), once for x86-64 and
//! once with `-m32`, an i386 binary as multiarch images run (which must
//! work, and meet the same denials under the i386 numbers). A missing
//! compiler or i386 libc is a failure, not a skip (`ci/setup.sh` installs
//! gcc, libc6-dev and gcc-multilib).
//!
//! It runs three ways: directly in the sandbox, as a package's preinst, and
//! as a recipe `run` step of a real build over a fixture archive. Every
//! probe must be denied with the expected errno, the host file the shocker
//! would create must not appear, and a preinst that needs an escape fails
//! the build with a message naming the package. Every test runs as root and
//! again as a non-root user with a subordinate id range
//! (`support::rootless`), through the `imgbuild` binary.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use imgbuild::sandbox::{self, SandboxSpec};
use support::rootless::as_root_and_user;
use support::*;

const EPOCH: i64 = 1_600_000_000;

/// The probe's source, built in (the non-root leg may not reach the checkout).
const SHOCKER_C: &str = include_str!("data/shocker.c");

/// The two builds of the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    X86_64,
    I386,
}

impl Arch {
    fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::I386 => "i386",
        }
    }
}

/// The shocker for `arch`, compiled into `dir`; panics (naming ci/setup.sh)
/// without `cc` or, for i386, without gcc-multilib.
fn shocker(dir: &Path, arch: Arch) -> PathBuf {
    let src = dir.join("shocker.c");
    fs::write(&src, SHOCKER_C).unwrap();
    let out = dir.join(format!("shocker-{}", arch.name()));
    let mut cc = Command::new("cc");
    if arch == Arch::I386 {
        cc.arg("-m32");
    }
    let result = cc
        .args(["-static", "-O1", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run the host's cc ({e}): install gcc and libc6-dev (ci/setup.sh)")
        });
    assert!(
        result.status.success(),
        "cc -static {} failed (are gcc, libc6-dev and, for -m32, gcc-multilib installed? \
         see ci/setup.sh):\n{}",
        if arch == Arch::I386 { "-m32" } else { "" },
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

/// The errno each probe must be denied with (several where the kernel may
/// answer either way, e.g. read-only vs. not permitted).
fn expected(arch: Arch) -> BTreeMap<&'static str, &'static [&'static str]> {
    let eperm: &[&str] = &["EPERM"];
    let mut map = BTreeMap::from([
        ("open_by_handle_at", eperm),
        ("name_to_handle_at", eperm),
        ("mknod-block", eperm),
        ("mknod-char", eperm),
        ("write-proc-sys", &["EROFS", "EACCES"][..]),
        // ENOENT where the kernel has no magic SysRq at all.
        (
            "open-sysrq-trigger",
            if Path::new("/proc/sysrq-trigger").exists() {
                &["EROFS", "EACCES"][..]
            } else {
                &["ENOENT"][..]
            },
        ),
        ("list-sys-block", &["ENOENT"][..]),
        ("mount-sysfs", eperm),
        ("mount-bind", eperm),
        ("unshare-user", eperm),
        ("keyctl", eperm),
        ("bpf", eperm),
        ("ptrace", eperm),
        ("init_module", eperm),
        ("kexec_load", eperm),
        ("connect-external", &["ENETUNREACH"][..]),
        ("connect-host-loopback", &["ECONNREFUSED"][..]),
    ]);
    match arch {
        // x32 calls answer ENOSYS, as on a kernel without x32.
        Arch::X86_64 => {
            map.insert("x32-getpid", &["ENOSYS"][..]);
            map.insert("x32-open_by_handle_at", &["ENOSYS"][..]);
        }
        Arch::I386 => {
            map.insert("int80-open_by_handle_at", eperm);
        }
    }
    map
}

/// Checks the shocker's report: it ran as `arch`, every probe is present
/// and denied as expected, and (i386) its harmless raw call worked.
fn assert_all_denied(report: &str, arch: Arch) {
    let mut seen = BTreeMap::new();
    for line in report.lines() {
        let mut w = line.split_whitespace();
        if let (Some(name), Some(verdict)) = (w.next(), w.next()) {
            seen.insert(
                name.to_string(),
                (verdict.to_string(), w.next().map(str::to_string)),
            );
        }
    }
    assert_eq!(
        seen.get("arch").map(|(v, _)| v.as_str()),
        Some(arch.name()),
        "not the {} probe:\n{report}",
        arch.name()
    );
    if arch == Arch::I386 {
        assert_eq!(
            seen.get("int80-getpid").map(|(v, _)| v.as_str()),
            Some("allowed"),
            "a harmless i386 call failed:\n{report}"
        );
    }
    for (probe, errnos) in expected(arch) {
        let Some((verdict, errno)) = seen.get(probe) else {
            panic!("probe {probe} did not report:\n{report}");
        };
        assert_eq!(verdict, "denied", "{probe} escaped:\n{report}");
        let errno = errno.as_deref().unwrap_or("");
        assert!(
            errnos.contains(&errno),
            "{probe} denied with {errno}, expected one of {errnos:?}:\n{report}"
        );
    }
}

/// A file name at the host's root that an escaped shocker would create.
fn marker_name(tag: &str) -> String {
    format!("imgbuild-shocker-{tag}-{}", std::process::id())
}

/// A listener on the host's 127.0.0.1 for the probe to try.
fn host_listener() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    (listener, port)
}

fn assert_no_connection(listener: &std::net::TcpListener) {
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the host's loopback listener was reached: {other:?}"),
    }
}

fn assert_host_untouched(marker: &str) {
    let path = Path::new("/").join(marker);
    let existed = path.exists();
    let _ = fs::remove_file(&path);
    assert!(!existed, "the sandbox wrote {} on the host", path.display());
}

#[test]
fn shocker_is_denied_in_the_sandbox_and_works_on_the_host() {
    as_root_and_user(
        "shocker_is_denied_in_the_sandbox_and_works_on_the_host",
        || {
            for arch in [Arch::X86_64, Arch::I386] {
                shocker_direct(arch);
            }
        },
    );
}

fn shocker_direct(arch: Arch) {
    let tmp = tempfile::tempdir().unwrap();
    let bin = shocker(tmp.path(), arch);
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();

    // Control: as root on the host (an ext4 root file system), the handle
    // probe does reach the root directory, so a denial below means something
    // (`host` makes it try only that, read-only).
    let host_root_ext4 = fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/") && l.contains(" ext4 "));
    if rustix::process::geteuid().is_root() && host_root_ext4 {
        let control = Command::new(&bin).arg("host").output().unwrap();
        assert!(
            control.status.success(),
            "control: the {arch:?} shocker failed on the host as root:\n{}",
            String::from_utf8_lossy(&control.stdout)
        );
    }

    let marker = marker_name(&format!("direct-{}", arch.name()));
    let (listener, port) = host_listener();
    let mut spec = SandboxSpec::new(&root, ["/shocker", marker.as_str(), port.as_str()]);
    spec.ro_binds.push((bin.clone(), "/shocker".into()));
    spec.timeout = Some(Duration::from_secs(60));
    let out = sandbox::run(&spec).unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.success(),
        "{arch:?}: {:?}\n{report}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_all_denied(&report, arch);
    assert_host_untouched(&marker);
    assert_no_connection(&listener);
    assert!(!root.join("tmp/blockdev").exists());
}

/// A package shipping both shockers, whose preinst runs them into report
/// files (and fails, failing the build, if any probe escaped).
fn shocker_deb(bins: &[(Arch, Vec<u8>)], marker: &str, port: &str) -> DebSpec {
    let mut spec = DebSpec::new("shocker", "1.0", "amd64").depends("dpkg");
    let mut script = String::from("#!/bin/sh\nset -e\nmkdir -p /var/lib/shocker\n");
    for (arch, bin) in bins {
        let a = arch.name();
        spec = spec.file(&format!("/usr/libexec/shocker-{a}"), bin.clone(), 0o755);
        script.push_str(&format!(
            "/usr/libexec/shocker-{a} {marker}-{a} {port} > /var/lib/shocker/preinst-{a}.txt 2>&1\n"
        ));
    }
    spec.script("preinst", &script)
}

/// A package whose preinst needs a device node: the build must fail and say
/// so. It brings the host's `mknod` (the fixture base has no such program).
fn mknod_deb() -> DebSpec {
    let mknod = fs::read("/usr/bin/mknod").expect("the host's mknod (coreutils)");
    DebSpec::new("disk-grabber", "1.0", "amd64")
        .depends("dpkg")
        .file("/usr/bin/mknod", mknod, 0o755)
        .script("preinst", "#!/bin/sh\nset -e\nmknod /dev/host-disk b 8 0\n")
}

/// `imgbuild build img` (as root: in process; as a user: re-run in its
/// user namespace), bounded.
fn build(ws: &Workspace) -> RunOutput {
    let epoch = EPOCH.to_string();
    let out = workspace::run_bounded(
        ws.command(&["build", "img", "--source-date-epoch", &epoch]),
        Duration::from_secs(600),
    );
    // As the user: really the rootless build, with the user's range.
    assert!(
        !out.stderr.contains("no subordinate id range"),
        "{}",
        out.stderr
    );
    out
}

/// `rel` from the built rootfs tar, read with the host's tar.
fn from_tar(ws: &Workspace, rel: &str) -> String {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(ws.path().join("out/img/rootfs.tar"))
        .arg(format!("./{rel}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{rel} is not in the rootfs tar");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn shocker_as_preinst_and_run_step_of_a_build_is_denied() {
    as_root_and_user(
        "shocker_as_preinst_and_run_step_of_a_build_is_denied",
        || {
            let _umask = umask_lock();
            let tmp = tempfile::tempdir().unwrap();
            let bins: Vec<(Arch, Vec<u8>)> = [Arch::X86_64, Arch::I386]
                .into_iter()
                .map(|a| (a, fs::read(shocker(tmp.path(), a)).unwrap()))
                .collect();
            let (pre, run) = (marker_name("preinst"), marker_name("run"));
            let (listener, port) = host_listener();
            let mut steps = String::new();
            for (arch, _) in &bins {
                let a = arch.name();
                steps.push_str(&format!(
                    "\n[[step]]\nrun = [\"sh\", \"-c\", \"/usr/libexec/shocker-{a} {run}-{a} {port} > /var/lib/shocker/run-{a}.txt 2>&1\"]\n"
                ));
            }
            let (_site, _server, ws) =
                fetched_on_host_base(&["shocker"], &[shocker_deb(&bins, &pre, &port)], &steps);
            let out = build(&ws);
            for (arch, _) in &bins {
                assert_host_untouched(&format!("{pre}-{}", arch.name()));
                assert_host_untouched(&format!("{run}-{}", arch.name()));
            }
            out.assert_success();
            assert_no_connection(&listener);
            for (arch, _) in &bins {
                let a = arch.name();
                assert_all_denied(
                    &from_tar(&ws, &format!("var/lib/shocker/preinst-{a}.txt")),
                    *arch,
                );
                assert_all_denied(
                    &from_tar(&ws, &format!("var/lib/shocker/run-{a}.txt")),
                    *arch,
                );
            }
        },
    );
}

#[test]
fn a_preinst_that_needs_a_device_node_fails_the_build_naming_it() {
    as_root_and_user(
        "a_preinst_that_needs_a_device_node_fails_the_build_naming_it",
        || {
            let _umask = umask_lock();
            let (_site, _server, ws) = fetched_on_host_base(&["disk-grabber"], &[mknod_deb()], "");
            let out = build(&ws).assert_failure();
            let err = &out.stderr;
            assert!(err.contains("preinst"), "{err}");
            assert!(err.contains("disk-grabber 1.0 amd64"), "{err}");
            assert!(err.contains("Operation not permitted"), "{err}");
            assert!(!ws.path().join("out/img").exists(), "outputs were written");
        },
    );
}

/// A package shipping a character device (`/dev/fixture-mem`, 1:1 like
/// `/dev/mem`, mode 0666), as packages like makedev once did.
fn device_deb() -> DebSpec {
    let entry = |name: &[u8], kind, mode| RawEntry {
        name: name.to_vec(),
        kind,
        data: Vec::new(),
        mode,
    };
    DebSpec::new("devnode", "1.0", "amd64")
        .depends("dpkg")
        .raw_entry(entry(b"./dev/", RawKind::Dir, 0o755))
        .raw_entry(entry(b"./dev/fixture-mem", RawKind::Char(1, 1), 0o666))
}

/// (type, mode, uid, gid, major, minor) of a tar entry.
type NodeFields = (u8, u32, u64, u64, u32, u32);

/// The [`NodeFields`] of `name` in `tar`, and the text of `list`.
fn tar_entry(tar: &Path, name: &str, list: &str) -> (Option<NodeFields>, String) {
    let mut archive = tar::Archive::new(fs::File::open(tar).unwrap());
    let (mut found, mut text) = (None, String::new());
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let h = e.header().clone();
        if path == name {
            found = Some((
                h.entry_type().as_byte(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.device_major().unwrap().unwrap_or(0),
                h.device_minor().unwrap().unwrap_or(0),
            ));
        } else if path == list {
            std::io::Read::read_to_string(&mut e, &mut text).unwrap();
        }
    }
    (found, text)
}

#[test]
fn package_device_nodes_are_recorded_never_made_on_the_host() {
    as_root_and_user(
        "package_device_nodes_are_recorded_never_made_on_the_host",
        device_nodes_body,
    );
}

fn device_nodes_body() {
    let _umask = umask_lock();
    // The unpacker alone: a placeholder, no device file.
    let tmp = tempfile::tempdir().unwrap();
    let spec = device_deb();
    let deb = tmp.path().join(spec.file_name());
    fs::write(&deb, spec.build()).unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let u = imgbuild::deb::unpack(&deb, &root, &Default::default()).unwrap();
    let meta = fs::symlink_metadata(root.join("dev/fixture-mem")).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(
        meta.file_type().is_file() && meta.len() == 0,
        "not a placeholder: {meta:?}"
    );
    assert!(!meta.file_type().is_char_device());
    assert_eq!(u.devices.len(), 1);
    assert_eq!(
        (
            u.devices[0].path.as_str(),
            u.devices[0].major,
            u.devices[0].minor
        ),
        ("dev/fixture-mem", 1, 1)
    );

    // A build: the node is in rootfs.tar at its place, and in dpkg's list.
    let (_site, _server, ws) = fetched_on_host_base(&["devnode"], &[device_deb()], "");
    build(&ws).assert_success();
    let tar = ws.path().join("out/img/rootfs.tar");
    let (node, list) = tar_entry(
        &tar,
        "./dev/fixture-mem",
        "./var/lib/dpkg/info/devnode.list",
    );
    assert_eq!(node, Some((b'3', 0o666, 0, 0, 1, 1)));
    assert!(list.lines().any(|l| l == "/dev/fixture-mem"), "{list}");
    let first = fs::read(&tar).unwrap();

    // From the cached package stage (a step changed): the node again.
    let text =
        ws.read("recipes/img.toml") + "\n[[step]]\nwrite = \"/etc/motd\"\ncontent = \"hi\\n\"\n";
    ws.write_recipe("img", &text);
    let again = build(&ws).assert_success();
    assert!(
        format!("{}{}", again.stdout, again.stderr)
            .contains("built on the cached package assembly"),
        "{again:?}"
    );
    let (node, _) = tar_entry(&tar, "./dev/fixture-mem", "");
    assert_eq!(node, Some((b'3', 0o666, 0, 0, 1, 1)));
    assert_ne!(first, fs::read(&tar).unwrap(), "the step changed nothing?");

    // Nowhere on the host did a device file appear.
    for dir in [ws.path(), ws.cache_dir().as_path()] {
        let found = Command::new("find")
            .arg(dir)
            .args(["(", "-type", "c", "-o", "-type", "b", ")", "-print"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&found.stdout), "");
    }
}

#[test]
fn a_same_size_tampered_store_blob_is_refused_naming_both_hashes() {
    as_root_and_user(
        "a_same_size_tampered_store_blob_is_refused_naming_both_hashes",
        tampered_blob_body,
    );
}

fn tampered_blob_body() {
    let _umask = umask_lock();
    let (_site, _server, ws) = fetched_on_host_base(&["devnode"], &[device_deb()], "");
    let lock = imgbuild::lock::Lockfile::read(&ws.path().join("locks/img.lock")).unwrap();
    let pkg = lock.packages.iter().find(|p| p.name == "devnode").unwrap();
    let store = imgbuild::fetch::Store::open(&ws.path().join("vendor")).unwrap();
    let blob = store.path_of(&pkg.sha256);
    let original = fs::read(&blob).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).unwrap();
    // Two same-size forgeries: one still a valid .deb (another mtime digit
    // in the first ar member header: only the streaming hash of the unpack
    // can tell), one broken in the middle (the control read fails first).
    let mut valid = original.clone();
    assert_eq!(&valid[..8], b"!<arch>\n");
    valid[24] = if valid[24] == b'1' { b'2' } else { b'1' };
    let mut broken = original.clone();
    let len = broken.len();
    broken[len / 2] ^= 0x55;
    for bytes in [valid, broken] {
        fs::write(&blob, &bytes).unwrap();
        let actual = imgbuild::core::digest::sha256_hex(&bytes);
        let out = build(&ws).assert_failure();
        let err = &out.stderr;
        assert!(err.contains("devnode 1.0 amd64"), "{err}");
        assert!(err.contains("sha256 mismatch"), "{err}");
        assert!(err.contains(&pkg.sha256), "{err}");
        assert!(err.contains(&actual), "{err}");
    }
    assert!(!ws.path().join("out/img").exists(), "outputs were written");
}
