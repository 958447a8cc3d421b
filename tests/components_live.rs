//! Components against the live Debian archive (ignored by default;
//! `ci/live.sh` runs them). The git sources come from the shared bare
//! mirrors (`../shared/git/*.git.tar`, or `$IMGBUILD_SHARED_GIT`), unpacked
//! into a temp dir and reached through the git mapping — never written into
//! a recipe or a lock.
//!
//! - `kube_install_on_bookworm`: the kubernetes-r2lab component on a minimal
//!   bookworm (minutes);
//! - `bmv2_forwards_a_packet`: the sonic-p4 image's bmv2 (built by `imgbuild
//!   build sonic-p4` in the repository, `out/sonic-p4/rootfs.tar`) runs
//!   `simple_switch` on the l2_switch example of its own source tree in a
//!   sandbox with its own network namespace: two veth pairs, a table entry
//!   through `runtime_CLI`, a scapy packet in one port and out the other.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::workspace::run_bounded;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(40 * 60);

fn shared_git() -> PathBuf {
    std::env::var("IMGBUILD_SHARED_GIT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/git"))
}

fn unpack_mirror(name: &str, into: &Path) {
    let status = Command::new("tar")
        .arg("-xf")
        .arg(shared_git().join(format!("{name}.git.tar")))
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(status.success(), "unpacking {name} from {}", shared_git().display());
}

fn run(ws: &Workspace, args: &[&str]) -> RunOutput {
    let mut cmd = ws.command(args);
    cmd.env("IMGBUILD_APT_DIR", "/etc/apt");
    run_bounded(cmd, TIMEOUT)
}

#[test]
#[ignore = "uses the live Debian archive (minutes)"]
fn kube_install_on_bookworm() {
    let mirrors = tempfile::tempdir().unwrap();
    unpack_mirror("kube-install", mirrors.path());
    let ws = Workspace::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    fs::create_dir_all(ws.path().join("recipes/keys")).unwrap();
    fs::copy(
        repo.join("recipes/keys/debian-archive-keyring.pgp"),
        ws.path().join("recipes/keys/debian-archive-keyring.pgp"),
    )
    .unwrap();
    // The component exactly as kubernetes-r2lab writes it.
    let r2lab = fs::read_to_string(repo.join("recipes/kubernetes-r2lab.toml")).unwrap();
    let component = &r2lab[r2lab.find("[[component]]").unwrap()..];
    ws.write_recipe(
        "ki",
        &format!(
            "architecture = \"amd64\"\n\n[[source]]\nname = \"bookworm\"\narchive = \"debian\"\n\
             suite = \"bookworm\"\ncomponents = [\"main\"]\nkeyring = \"keys/debian-archive-keyring.pgp\"\n\n{component}"
        ),
    );
    let git = format!("git:https://github.com/parmentelat/={}/", mirrors.path().display());
    let solve = run(&ws, &["solve", "ki", "--mirror", &git]);
    assert!(solve.success(), "{}", solve.stderr);
    let lock = ws.read("locks/ki.lock");
    assert!(lock.contains("commit = \"c1744a4e564700af42058735b22fa4aad587b03c\""), "{lock}");
    assert!(lock.contains("version = \"0~git20220701.c1744a4\""), "{lock}");
    let fetch = run(&ws, &["fetch", "ki", "--mirror", &git]);
    assert!(fetch.success(), "{}", fetch.stderr);
    let build = run(&ws, &["build", "ki"]);
    assert!(build.success(), "{}", build.stderr);
    let tar = ws.path().join("out/ki/rootfs.tar");
    let listing = Command::new("tar").arg("tvf").arg(&tar).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for path in [
        "./root/kube-install/kube-install.sh",
        "./usr/local/bin/kube-install.sh -> /root/kube-install/kube-install.sh",
        "./var/lib/dpkg/info/kube-install.md5sums",
    ] {
        assert!(listing.contains(path), "{path} missing:\n{listing}");
    }
    assert!(!listing.contains("./root/kube-install/.gitignore"));
    let pkgs = ws.read("out/ki/packages.txt");
    assert!(pkgs.contains("kube-install 0~git20220701.c1744a4 amd64\n"), "{pkgs}");
}
