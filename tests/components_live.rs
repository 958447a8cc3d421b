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
    assert!(
        status.success(),
        "unpacking {name} from {}",
        shared_git().display()
    );
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
    let git = format!(
        "git:https://github.com/parmentelat/={}/",
        mirrors.path().display()
    );
    let solve = run(&ws, &["solve", "ki", "--mirror", &git]);
    assert!(solve.success(), "{}", solve.stderr);
    let lock = ws.read("locks/ki.lock");
    assert!(
        lock.contains("commit = \"c1744a4e564700af42058735b22fa4aad587b03c\""),
        "{lock}"
    );
    assert!(
        lock.contains("version = \"0~git20220701.c1744a4\""),
        "{lock}"
    );
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
    assert!(
        pkgs.contains("kube-install 0~git20220701.c1744a4 amd64\n"),
        "{pkgs}"
    );
}

/// The forwarding check run inside the image: two veth pairs, simple_switch
/// on bmv2's own `mininet/simple_router.json` (ports 1 and 2), table entries
/// through `simple_switch_CLI` (thrift), then a scapy packet sent into port
/// 1 must leave port 2 routed as the program says: destination MAC from
/// `forward`, source MAC from `send_frame`, TTL decremented.
const FORWARD_SH: &str = r#"set -e
echo "THRIFT-PY $(python3 -c 'import importlib.metadata as m; print(m.version("thrift"))')"
echo "THRIFT-SO $(ldd /usr/bin/simple_switch | grep -o 'libthrift-[0-9.]*so' | sort -u | tr '\n' ' ')"
ip link add veth0 type veth peer name veth1
ip link add veth2 type veth peer name veth3
for i in 0 1 2 3; do ip link set veth$i up; done
simple_switch -i 1@veth0 -i 2@veth2 --thrift-port 9090 --log-console /root/simple_router.json > /root/switch.log 2>&1 &
for i in $(seq 1 100); do
  if simple_switch_CLI --thrift-port 9090 </dev/null >/dev/null 2>&1; then break; fi
  sleep 0.2
done
simple_switch_CLI --thrift-port 9090 <<'CMDS'
table_set_default send_frame _drop
table_set_default forward _drop
table_set_default ipv4_lpm _drop
table_add send_frame rewrite_mac 2 => 00:aa:bb:00:00:02
table_add forward set_dmac 10.0.2.10 => 00:04:00:00:00:02
table_add ipv4_lpm set_nhop 10.0.2.0/24 => 10.0.2.10 2
CMDS
python3 - <<'PY'
from scapy.all import Ether, IP, UDP, sendp, AsyncSniffer
import time
sn = AsyncSniffer(iface="veth3", filter="udp and port 4789", count=1, timeout=10)
sn.start(); time.sleep(1)
sendp(Ether(dst="00:aa:bb:00:00:01", src="00:00:00:00:00:01") / IP(src="10.0.1.10", dst="10.0.2.10", ttl=64) / UDP(sport=1234, dport=4789) / b"p4", iface="veth1", verbose=False)
sn.join()
got = sn.results
if not got:
    raise SystemExit("no packet left port 2")
p = got[0]
print("OUT", p[Ether].dst, p[Ether].src, p[IP].ttl, p[IP].dst)
PY
"#;

#[test]
#[ignore = "needs `imgbuild build sonic-p4` (bmv2 compile: most of an hour on 2 cores)"]
fn bmv2_forwards_a_packet() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tar = repo.join("out/sonic-p4/rootfs.tar");
    if !tar.is_file() {
        // Build it (the component comes from the cache when already built).
        let mirrors = tempfile::tempdir().unwrap();
        unpack_mirror("behavioral-model", mirrors.path());
        let git = format!(
            "git:https://github.com/p4lang/={}/",
            mirrors.path().display()
        );
        for args in [
            vec!["fetch", "sonic-p4", "--mirror", &git],
            vec!["build", "sonic-p4"],
        ] {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgbuild"));
            cmd.arg("-C").arg(repo).args(&args);
            let out = run_bounded(cmd, Duration::from_secs(3 * 3600));
            assert!(out.success(), "{args:?}: {}", out.stderr);
        }
    }
    let root = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .args(["-xpf", tar.to_str().unwrap(), "--numeric-owner", "-C"])
        .arg(root.path())
        .status()
        .unwrap();
    assert!(status.success());
    // The P4 program: from bmv2's own source tree, the exported tree the
    // lock pins (the vendor store holds it).
    let lock = imgbuild::lock::Lockfile::read(&repo.join("locks/sonic-p4.lock")).unwrap();
    let bmv2 = lock.components.iter().find(|c| c.name == "bmv2").unwrap();
    let store = imgbuild::fetch::Store::open(&repo.join("vendor")).unwrap();
    let mut archive = tar::Archive::new(fs::File::open(store.path_of(&bmv2.sha256)).unwrap());
    let mut found = false;
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().ends_with("mininet/simple_router.json") {
            e.unpack(root.path().join("root/simple_router.json"))
                .unwrap();
            found = true;
            break;
        }
    }
    assert!(found, "simple_router.json in the bmv2 source");
    let mut spec = imgbuild::sandbox::SandboxSpec::new(root.path(), ["/bin/sh", "-c", FORWARD_SH]);
    spec.timeout = Some(Duration::from_secs(180));
    let out = imgbuild::sandbox::run(&spec).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = fs::read_to_string(root.path().join("root/switch.log")).unwrap_or_default();
    assert!(
        out.success(),
        "{:?}\n{stdout}\n{}\nswitch log:\n{log}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("OUT 00:04:00:00:00:02 00:aa:bb:00:00:02 63 10.0.2.10"),
        "{stdout}\nswitch log:\n{log}"
    );
    // One thrift for the whole RPC path: the switch links the C++ library
    // of the same release as the Python runtime runtime_CLI imports (the
    // [python] lock entry, the recipe's historical pin).
    let py = lock
        .python
        .iter()
        .find(|p| p.name == "thrift")
        .expect("thrift in [[python]]");
    assert!(
        stdout.contains(&format!("THRIFT-PY {}\n", py.version)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("THRIFT-SO libthrift-{}.so \n", py.version)),
        "simple_switch must link libthrift-{}: {stdout}",
        py.version
    );
    // The CLI's answers and the packet seen, for the record (`--nocapture`).
    eprintln!("{stdout}");
}
