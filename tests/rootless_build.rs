//! Rootless builds (`ops::rootless`): a non-root user with a subordinate id
//! range builds the same images as root, byte for byte. Run as root (as in
//! CI): the test makes a system user `imgbuild-rootless` if missing, gives it
//! a 65536-id range in /etc/subuid and /etc/subgid (`usermod`, package
//! passwd), and runs the built binary as that user with `setpriv`. The
//! fixture runs maintainer scripts and steps that chown to other ids, so the
//! owners must survive the user namespace. Not root: skipped with a message.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use imgbuild::image::Manifest;
use support::*;

use support::rootless::{TestUser, USER, chown_r, test_user};

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

/// A package whose postinst chowns to ids other than root's; it brings the
/// host's chown and chmod (the fixture base has neither).
fn owners() -> DebSpec {
    let host = |p: &str| fs::read(p).unwrap_or_else(|e| panic!("host {p}: {e}"));
    DebSpec::new("owners", "1.0", "amd64")
        .depends("dpkg")
        .file("/usr/bin/chown", host("/usr/bin/chown"), 0o755)
        .file("/usr/bin/chmod", host("/usr/bin/chmod"), 0o755)
        .file("/usr/share/owners/data", "x\n", 0o644)
        .script(
            "postinst",
            "#!/bin/sh\nset -e\nmkdir -p /var/lib/owners/shared\n\
             echo owned > /var/lib/owners/user-file\n\
             chown 1000:1000 /var/lib/owners/user-file\n\
             chown 0:42 /var/lib/owners/shared\nchmod 2775 /var/lib/owners/shared\n",
        )
}

const STEPS: &str = r#"
[[step]]
user = "admin"
uid = 1000
shell = "/bin/bash"
password-hash = ""

[[step]]
run = ["sh", "-c", "mkdir -p /srv/data && chown 1234:4321 /srv/data"]
"#;

#[test]
fn a_rootless_build_equals_the_root_build() {
    let user = match test_user() {
        Ok(user) => user,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let TestUser { uid, gid } = user;
    let (_site, _server, ws) = fetched_on_host_base(&["owners"], &[owners()], STEPS);

    // The root build (its own cache).
    let out_root = ws.path().join("out-root");
    ws.run(&["build", "img", "--out", out_root.to_str().unwrap()])
        .assert_success();

    // The rootless one: the user's own copy of the binary, the workspace
    // handed to it, a cache of its own (nothing reused from root's).
    let top = ws.path().parent().unwrap().to_path_buf();
    let bin_dir = top.join("bin");
    fs::create_dir(&bin_dir).unwrap();
    let bin = bin_dir.join("imgbuild");
    fs::copy(env!("CARGO_BIN_EXE_imgbuild"), &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let user_cache = top.join("cache-user");
    fs::create_dir(&user_cache).unwrap();
    fs::set_permissions(&top, fs::Permissions::from_mode(0o755)).unwrap();
    chown_r(&top, &user);
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={uid}"),
        &format!("--regid={gid}"),
        "--clear-groups",
        "--",
    ])
    .arg(&bin)
    .arg("-C")
    .arg(ws.path())
    .args(["build", "img", "--out"])
    .arg(ws.path().join("out-user"))
    .env("IMGBUILD_CACHE", &user_cache)
    .env("HOME", top.join("home"))
    .env("NO_COLOR", "1")
    .current_dir(&top);
    let run = workspace::run_bounded(cmd, Duration::from_secs(600));
    assert!(
        run.success(),
        "rootless build failed:\n{}\n{}",
        run.stdout,
        run.stderr
    );

    let root = Manifest::read(&ws.path().join("out-root/img")).unwrap();
    let user = Manifest::read(&ws.path().join("out-user/img")).unwrap();
    assert!(!root.artifacts.is_empty());
    assert_eq!(root.artifacts, user.artifacts, "the artifacts differ");
    // The outputs belong to the user, not to a subordinate id.
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(ws.path().join("out-user/img/rootfs.tar")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    // And the owners made inside are the image's.
    let listing = sh(Command::new("tar")
        .args(["-tvf"])
        .arg(ws.path().join("out-user/img/rootfs.tar"))
        .arg("--numeric-owner"));
    for (path, owner) in [
        ("./var/lib/owners/user-file", "1000/1000"),
        ("./var/lib/owners/shared/", "0/42"),
        ("./srv/data/", "1234/4321"),
        ("./home/admin/", "1000/1000"),
    ] {
        let line = listing
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} not in the tar"));
        assert!(line.contains(owner), "{line}");
    }
}

/// `imgbuild` in `ws` as root (the repository's own recipes), or panics.
fn imgbuild_root(ws: &Path, args: &[&str], cache: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_imgbuild"))
        .arg("-C")
        .arg(ws)
        .args(args)
        .env("IMGBUILD_CACHE", cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "imgbuild {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "fetches r2lab-node from the live archive and builds it twice, as root and rootless (minutes)"]
fn r2lab_node_rootless_build_equals_the_root_build() {
    assert!(
        rustix::process::geteuid().is_root(),
        "run as root: it makes the test user"
    );
    let user = test_user().unwrap_or_else(|why| panic!("{why}"));
    let TestUser { uid, gid } = user;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path();
    fs::set_permissions(top, fs::Permissions::from_mode(0o755)).unwrap();
    imgbuild_root(repo, &["fetch", "r2lab-node"], &top.join("cache-root"));
    let out_root = top.join("out-root");
    imgbuild_root(
        repo,
        &["build", "r2lab-node", "--out", out_root.to_str().unwrap()],
        &top.join("cache-root"),
    );

    let bin = top.join("imgbuild");
    fs::copy(env!("CARGO_BIN_EXE_imgbuild"), &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    for d in ["out-user", "cache-user", "home"] {
        fs::create_dir(top.join(d)).unwrap();
        chown_r(&top.join(d), &user);
    }
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={uid}"),
        &format!("--regid={gid}"),
        "--clear-groups",
        "--",
    ])
    .arg(&bin)
    .arg("-C")
    .arg(repo)
    .args(["build", "r2lab-node", "--out"])
    .arg(top.join("out-user"))
    .env("IMGBUILD_CACHE", top.join("cache-user"))
    .env("HOME", top.join("home"))
    .current_dir(top);
    let run = workspace::run_bounded(cmd, Duration::from_secs(3600));
    assert!(
        run.success(),
        "rootless build failed (is the checkout readable by {USER}?):\n{}\n{}",
        run.stdout,
        run.stderr
    );
    let root = Manifest::read(&out_root.join("r2lab-node")).unwrap();
    let user = Manifest::read(&top.join("out-user/r2lab-node")).unwrap();
    assert_eq!(root.artifacts, user.artifacts, "the artifacts differ");
}
