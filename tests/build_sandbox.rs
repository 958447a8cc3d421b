//! build::sandbox against a real root: the host's /usr bind-mounted read-only
//! into a temp root (Debian has merged /usr, so `bin`, `lib`, … are symlinks
//! into it). Proves no network to the host's loopback, no host paths, the
//! fixed environment/hostname/umask, pid 1 in a new pid namespace, and that a
//! timeout kills every process of the sandbox.
//!
//! Needs root, or unprivileged user namespaces: otherwise each test says
//! "skipped" and passes. Run as root, each test runs again as a non-root
//! user with a subordinate id range (`support::rootless`), where a sandbox
//! that cannot start is a failure.

mod support;

use std::fs;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use imgbuild::sandbox::{self, Input, SandboxSpec, Status};
use support::rootless::{as_root_and_user, in_user_leg};

/// A temp dir `T` with the root in `T/root` and host-only files in `T/host`.
struct Root {
    tmp: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        let tmp = tempfile::Builder::new()
            .prefix("imgbuild-sandbox-")
            .tempdir()
            .unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("usr")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(root.join("root")).unwrap();
        fs::create_dir_all(tmp.path().join("host")).unwrap();
        for dir in ["bin", "sbin", "lib", "lib64"] {
            if fs::symlink_metadata(Path::new("/usr").join(dir)).is_ok() {
                std::os::unix::fs::symlink(format!("usr/{dir}"), root.join(dir)).unwrap();
            }
        }
        Root { tmp }
    }
    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }
    fn host(&self) -> PathBuf {
        self.tmp.path().join("host")
    }
    /// `bash -c script` with /usr (and the loader cache) bound read-only.
    fn spec(&self, script: &str) -> SandboxSpec {
        let mut spec = SandboxSpec::new(self.root(), ["bash", "-c", script]);
        spec.ro_binds.push(("/usr".into(), "/usr".into()));
        if Path::new("/etc/ld.so.cache").exists() {
            spec.ro_binds
                .push(("/etc/ld.so.cache".into(), "/etc/ld.so.cache".into()));
        }
        spec.timeout = Some(Duration::from_secs(30));
        spec
    }
}

/// Runs `spec`, or returns None (test skipped) when namespaces are unavailable.
fn run(spec: &SandboxSpec) -> Option<sandbox::Output> {
    match sandbox::run(spec) {
        Ok(out) => Some(out),
        Err(e @ sandbox::SandboxError::Spawn { .. })
            if !rustix::process::geteuid().is_root() && !in_user_leg() =>
        {
            eprintln!("skipped: not root and no usable user namespace: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn stdout(out: &sandbox::Output) -> String {
    assert!(
        out.success(),
        "{:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn no_tcp_connection_reaches_the_hosts_loopback() {
    as_root_and_user(
        "no_tcp_connection_reaches_the_hosts_loopback",
        no_tcp_connection_reaches_the_hosts_loopback_body,
    );
}

fn no_tcp_connection_reaches_the_hosts_loopback_body() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let script =
        format!("if exec 3<>/dev/tcp/127.0.0.1/{port}; then echo connected; else echo refused; fi");
    // Control: the same script on the host does connect, so the check can fail.
    let host = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&host.stdout).trim(), "connected");
    let _ = wait_accept(&listener).expect("the control connection");

    let r = Root::new();
    let Some(out) = run(&r.spec(&format!("{script}; cat /proc/net/route | wc -l; ls /sys/class/net 2>/dev/null; cat /proc/net/dev | tail -n +3 | cut -d: -f1"))) else {
        return;
    };
    let text = stdout(&out);
    let mut lines = text.lines().map(str::trim);
    assert_eq!(lines.next(), Some("refused"), "{text}");
    assert_eq!(
        lines.next(),
        Some("1"),
        "a route exists besides the header: {text}"
    );
    assert_eq!(
        lines.collect::<Vec<_>>(),
        ["lo"],
        "interfaces other than lo: {text}"
    );
    assert!(
        wait_accept(&listener).is_none(),
        "the test server saw a connection from the sandbox"
    );
}

/// Accepts one connection within 300 ms (bounded).
fn wait_accept(listener: &TcpListener) -> Option<std::net::TcpStream> {
    for _ in 0..30 {
        match listener.accept() {
            Ok((s, _)) => return Some(s),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("{e}"),
        }
    }
    None
}

#[test]
fn host_paths_are_invisible_except_declared_binds() {
    as_root_and_user(
        "host_paths_are_invisible_except_declared_binds",
        host_paths_are_invisible_except_declared_binds_body,
    );
}

fn host_paths_are_invisible_except_declared_binds_body() {
    let r = Root::new();
    let marker = tempfile::Builder::new()
        .prefix("imgbuild-marker-")
        .tempfile_in("/tmp")
        .unwrap();
    let secret = r.host().join("secret");
    fs::write(&secret, "s").unwrap();
    let shared = r.host().join("shared");
    fs::create_dir(&shared).unwrap();
    let m = marker.path().display();
    let s = secret.display();
    let mut spec = r.spec(&format!(
        "for p in {m} {s} /home /var /etc/passwd; do if [ -e $p ]; then echo visible $p; else echo hidden; fi; done; \
         echo hi > /srv/shared/from-inside; touch /usr/x 2>/dev/null && echo usr-writable; ls /tmp | wc -l"
    ));
    spec.rw_binds.push((shared.clone(), "/srv/shared".into()));
    let Some(out) = run(&spec) else { return };
    assert!(
        marker.path().exists() && secret.exists(),
        "control: the files exist on the host"
    );
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        ["hidden", "hidden", "hidden", "hidden", "hidden", "0"]
    );
    assert_eq!(
        fs::read_to_string(shared.join("from-inside")).unwrap(),
        "hi\n"
    );
    // Mount points created for the run are gone again; nothing else appeared.
    let mut left: Vec<_> = fs::read_dir(r.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let mut expected: Vec<String> = ["etc", "root", "usr", "bin", "sbin", "lib", "lib64"]
        .iter()
        .filter(|d| r.root().join(d).symlink_metadata().is_ok())
        .map(|d| d.to_string())
        .collect();
    expected.sort();
    assert_eq!(left, expected);
}

#[test]
fn fixed_environment_hostname_umask_and_epoch() {
    as_root_and_user(
        "fixed_environment_hostname_umask_and_epoch",
        fixed_environment_hostname_umask_and_epoch_body,
    );
}

fn fixed_environment_hostname_umask_and_epoch_body() {
    let r = Root::new();
    let mut spec = r.spec("");
    spec.argv = vec!["env".into()];
    spec.source_date_epoch = 1_700_000_000;
    spec.env.push(("EXTRA".into(), "1".into()));
    // SAFETY: single assignment in this test process, read by no other thread.
    unsafe { std::env::set_var("IMGBUILD_LEAK_CHECK", "leaked") };
    let Some(out) = run(&spec) else { return };
    let mut env: Vec<_> = stdout(&out).lines().map(str::to_string).collect();
    env.sort();
    assert_eq!(
        env,
        [
            "DEBIAN_FRONTEND=noninteractive",
            "EXTRA=1",
            "HOME=/root",
            "LC_ALL=C.UTF-8",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "SOURCE_DATE_EPOCH=1700000000",
            "TZ=UTC",
        ]
    );

    let mut spec = r.spec("hostname=$(</proc/sys/kernel/hostname); echo $hostname; umask; pwd; echo $SOURCE_DATE_EPOCH; touch /tmp/f; stat -c %a /tmp/f");
    spec.hostname = "builder".into();
    spec.cwd = "/etc".into();
    spec.source_date_epoch = 42;
    let Some(out) = run(&spec) else { return };
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        ["builder", "0022", "/etc", "42", "644"]
    );
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "builder", "the host's hostname changed");
}

#[test]
fn the_command_is_pid_1_of_a_new_pid_namespace() {
    as_root_and_user(
        "the_command_is_pid_1_of_a_new_pid_namespace",
        the_command_is_pid_1_of_a_new_pid_namespace_body,
    );
}

fn the_command_is_pid_1_of_a_new_pid_namespace_body() {
    let r = Root::new();
    let Some(out) =
        run(&r.spec("echo $$; sleep 0.2 & for p in /proc/[0-9]*; do echo ${p#/proc/}; done"))
    else {
        return;
    };
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("1"), "{text}");
    let pids: Vec<u32> = lines.map(|l| l.parse().unwrap()).collect();
    // bash itself and the background sleep, nothing of the host.
    assert_eq!(pids.len(), 2, "{text}");
    assert!(pids.iter().all(|&p| p < 10), "{text}");
}

#[test]
fn stdin_bytes_and_exit_codes() {
    as_root_and_user(
        "stdin_bytes_and_exit_codes",
        stdin_bytes_and_exit_codes_body,
    );
}

fn stdin_bytes_and_exit_codes_body() {
    let r = Root::new();
    let mut spec = r.spec("tr a-z A-Z; exit 3");
    spec.stdin = Input::Bytes(b"hello\n".to_vec());
    let Some(out) = run(&spec) else { return };
    assert_eq!(out.status, Status::Exited(3));
    assert_eq!(out.stdout, b"HELLO\n");
    let mut spec = r.spec("");
    spec.argv = vec!["/no/such/program".into()];
    let err = sandbox::run(&spec).unwrap_err().to_string();
    assert!(err.contains("/no/such/program"), "{err}");
}

#[test]
fn sync_calls_return_at_once() {
    as_root_and_user("sync_calls_return_at_once", sync_calls_return_at_once_body);
}

/// fsync of /dev/null fails with EINVAL when the kernel runs it (checked on
/// the host first); in the sandbox it is not run and returns 0.
fn sync_calls_return_at_once_body() {
    let script = "dd if=/dev/null of=/dev/null conv=fsync status=none && \
                  dd if=/dev/null of=/dev/null conv=fdatasync status=none && echo suppressed";
    let host = Command::new("bash").args(["-c", script]).output().unwrap();
    assert!(!host.status.success(), "fsync of /dev/null ran on the host");
    let r = Root::new();
    let Some(out) = run(&r.spec(script)) else {
        return;
    };
    assert_eq!(stdout(&out), "suppressed\n");
}

#[test]
fn the_timeout_kills_the_whole_sandbox() {
    as_root_and_user(
        "the_timeout_kills_the_whole_sandbox",
        the_timeout_kills_the_whole_sandbox_body,
    );
}

fn the_timeout_kills_the_whole_sandbox_body() {
    let r = Root::new();
    let out_dir = r.host().join("out");
    fs::create_dir(&out_dir).unwrap();
    let script = |delay: &str| format!("(sleep {delay}; echo late > /out/marker) & sleep 100");
    // Control: without a timeout cut, the background process writes the marker.
    let mut spec = r.spec(&script("0.1"));
    spec.argv[2] = "(sleep 0.1; echo late > /out/marker) & wait".into();
    spec.rw_binds.push((out_dir.clone(), "/out".into()));
    let Some(out) = run(&spec) else { return };
    assert!(out.success());
    fs::remove_file(out_dir.join("marker")).expect("control: marker written");

    let mut spec = r.spec(&script("1.5"));
    spec.rw_binds.push((out_dir.clone(), "/out".into()));
    spec.timeout = Some(Duration::from_millis(500));
    let out = run(&spec).unwrap();
    assert_eq!(out.status, Status::TimedOut);
    assert!(out.elapsed < Duration::from_secs(5), "{:?}", out.elapsed);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !out_dir.join("marker").exists(),
        "a background process survived the timeout"
    );
}

#[test]
fn always_a_user_namespace_that_maps_no_host_root() {
    as_root_and_user(
        "always_a_user_namespace_that_maps_no_host_root",
        always_a_user_namespace_that_maps_no_host_root_body,
    );
}

fn always_a_user_namespace_that_maps_no_host_root_body() {
    let r = Root::new();
    let spec = r.spec("id -u; cat /proc/self/uid_map | tr -s ' '; echo $$");
    let Some(out) = run(&spec) else { return };
    let map = imgbuild::sandbox::idmap::IdMap::for_caller().unwrap();
    let mut expected = vec!["0".to_string()];
    expected.extend(
        map.uid
            .iter()
            .map(|e| format!(" {} {} {}", e.inside, e.outside, e.count)),
    );
    expected.push("1".into());
    assert_eq!(stdout(&out).lines().collect::<Vec<_>>(), expected);
    if in_user_leg() {
        // The caller is root inside, its subordinate range the rest; no
        // id inside is host root.
        assert!(map.is_subordinate(), "{map:?}");
        assert!(map.uid.iter().all(|e| e.outside != 0), "{map:?}");
        assert_eq!(map.uid.iter().map(|e| e.count).sum::<u32>(), 65536);
    }
    if rustix::process::geteuid().is_root() {
        // Root inside is not root outside: the whole range is elsewhere.
        assert_eq!(map.uid.len(), 1);
        assert_ne!(map.uid[0].outside, 0);
        assert_eq!(map.uid[0].count, 65536);
    }
}

#[test]
fn symlinked_mount_points_and_bad_binds_are_refused() {
    as_root_and_user(
        "symlinked_mount_points_and_bad_binds_are_refused",
        symlinked_mount_points_and_bad_binds_are_refused_body,
    );
}

fn symlinked_mount_points_and_bad_binds_are_refused_body() {
    let r = Root::new();
    std::os::unix::fs::symlink(r.host(), r.root().join("srv")).unwrap();
    let mut spec = r.spec("true");
    spec.rw_binds.push((r.host(), "/srv/x".into()));
    let err = sandbox::run(&spec).unwrap_err().to_string();
    assert!(err.contains("symlink"), "{err}");
    assert!(
        !r.host().join("x").exists(),
        "a mount point was created through the symlink"
    );

    let mut spec = r.spec("true");
    spec.ro_binds.push(("/no/such/dir".into(), "/mnt".into()));
    let err = sandbox::run(&spec).unwrap_err().to_string();
    assert!(err.contains("/no/such/dir"), "{err}");
}
