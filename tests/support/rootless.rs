//! The non-root leg of the hostile-input tests: the same test run again as
//! a user with a subordinate id range, as a rootless build runs.
//!
//! Run as root (as in CI), [`as_root_and_user`] runs a test's body, then
//! makes the system user [`USER`] if missing, gives it a 65536-id range in
//! /etc/subuid and /etc/subgid (`usermod`, package passwd), and runs the
//! same test again in the same test binary as that user (`setpriv`,
//! package util-linux), with [`LEG_ENV`] set. The body's assertions then hold
//! for that user too; the `imgbuild` binary it runs is a link to the built
//! one in a directory the user can reach ([`imgbuild_bin`]), so a checkout
//! under a private home works. When the machine cannot have such a user
//! (not root, or `useradd`, `setpriv`, `newuidmap`/`newgidmap` missing) the
//! leg is skipped with the reason on stderr; so it is where the kernel
//! gives unprivileged users no user namespace.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::workspace::{RunOutput, run_bounded};

/// The test user.
pub const USER: &str = "imgbuild-rootless";
/// The range given to the test user if it has none (far from root's reserved one).
const RANGE: &str = "100000000-100065535";
/// Set in the non-root leg (to the user's name).
pub const LEG_ENV: &str = "IMGBUILD_TEST_ROOTLESS_LEG";
/// The `imgbuild` binary the tests run, when not the one cargo built
/// (the non-root leg sets it to a link it can reach).
pub const BIN_ENV: &str = "IMGBUILD_TEST_BIN";

/// The test user's ids.
#[derive(Debug, Clone, Copy)]
pub struct TestUser {
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

/// The `imgbuild` binary to run: [`BIN_ENV`], else cargo's.
pub fn imgbuild_bin() -> PathBuf {
    std::env::var_os(BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_imgbuild")))
}

/// True in the non-root leg.
pub fn in_user_leg() -> bool {
    std::env::var_os(LEG_ENV).is_some()
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|d| d.join(program).is_file())
}

/// The test user (made, with a subordinate range, if missing); `Err`: why
/// this machine cannot have one. Only as root.
pub fn test_user() -> Result<TestUser, String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not root: cannot make the test user (CI runs the suite as root)".into());
    }
    for (program, package) in [
        ("useradd", "passwd"),
        ("usermod", "passwd"),
        ("setpriv", "util-linux"),
        ("newuidmap", "uidmap"),
        ("newgidmap", "uidmap"),
    ] {
        if !on_path(program) {
            return Err(format!(
                "no `{program}` (package {package}; ci/setup.sh installs it)"
            ));
        }
    }
    // Where the kernel refuses user namespaces to unprivileged users, no
    // rootless build can run at all.
    for (knob, refusing) in [
        ("/proc/sys/kernel/unprivileged_userns_clone", "0"),
        ("/proc/sys/user/max_user_namespaces", "0"),
        (
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1",
        ),
    ] {
        if fs::read_to_string(knob).is_ok_and(|v| v.trim() == refusing) {
            return Err(format!(
                "{knob} is {refusing}: this kernel gives unprivileged users no user namespace"
            ));
        }
    }
    let exists = Command::new("id").args(["-u", USER]).output().unwrap();
    if !exists.status.success() {
        sh(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            USER,
        ]));
    }
    let has = |file: &str| {
        fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                let f: Vec<&str> = l.split(':').collect();
                f.len() == 3 && f[0] == USER && f[2].parse::<u32>().is_ok_and(|n| n >= 65536)
            })
    };
    if !has("/etc/subuid") || !has("/etc/subgid") {
        sh(Command::new("usermod").args(["--add-subuids", RANGE, "--add-subgids", RANGE, USER]));
    }
    let uid = sh(Command::new("id").args(["-u", USER])).parse().unwrap();
    let gid = sh(Command::new("id").args(["-g", USER])).parse().unwrap();
    Ok(TestUser { uid, gid })
}

/// `chown -R uid:gid path`.
pub fn chown_r(path: &Path, user: &TestUser) {
    sh(Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", user.uid, user.gid))
        .arg(path));
}

/// A hard link (same file system) or else a copy of `from` at `to`, mode 0755.
fn link_or_copy(from: &Path, to: &Path) {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
    }
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).unwrap();
}

/// `program args…` as `user` (`setpriv`, no supplementary groups, no
/// capabilities), bounded in time.
pub fn command_as(user: &TestUser, program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={}", user.uid),
        &format!("--regid={}", user.gid),
        "--clear-groups",
        "--",
    ])
    .arg(program);
    cmd
}

/// Runs `body`, then (as root, outside the non-root leg) the test named
/// `test` (its path in this test binary) again as the test user, who must
/// pass it as well. Skips that leg, saying why, when there can be no such
/// user here.
pub fn as_root_and_user(test: &str, body: impl FnOnce()) {
    body();
    if in_user_leg() {
        return;
    }
    let user = match test_user() {
        Ok(user) => user,
        Err(why) => {
            eprintln!("skipped the non-root leg of {test}: {why}");
            return;
        }
    };
    let tmp = tempfile::Builder::new()
        .prefix("imgbuild-rootless-leg-")
        .tempdir()
        .unwrap();
    let top = tmp.path();
    fs::set_permissions(top, fs::Permissions::from_mode(0o755)).unwrap();
    for d in ["bin", "tmp", "home"] {
        fs::create_dir(top.join(d)).unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let test_bin = top.join("bin/test");
    link_or_copy(&exe, &test_bin);
    let imgbuild = top.join("bin/imgbuild");
    link_or_copy(&imgbuild_bin(), &imgbuild);
    chown_r(&top.join("tmp"), &user);
    chown_r(&top.join("home"), &user);
    let mut cmd = command_as(&user, &test_bin);
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(LEG_ENV, USER)
        .env(BIN_ENV, &imgbuild)
        .env("TMPDIR", top.join("tmp"))
        .env("HOME", top.join("home"))
        .env_remove("IMGBUILD_CACHE")
        .current_dir(top.join("tmp"));
    let run: RunOutput = run_bounded(cmd, Duration::from_secs(900));
    assert!(
        run.success(),
        "the non-root leg of {test} (as {USER}, uid {}) failed:\n{}\n{}",
        user.uid,
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout.contains("1 passed"),
        "the non-root leg ran no test named {test}:\n{}",
        run.stdout
    );
    eprintln!("{test}: passed as {USER} (uid {}) too", user.uid);
}
