//! `kubernetes-r2lab` from a fixture Kubernetes repository (ignored by
//! default; `ci/live.sh` runs it): the Debian part comes from the live
//! archive (this host's apt configuration), the upstream Kubernetes v1.32
//! flat repository is replaced by a signed fixture served on 127.0.0.1 with
//! stand-in kubelet, kubeadm, kubectl, cri-tools and kubernetes-cni packages,
//! and its keyring (`keys/kubernetes-release.pgp`, not committed) by the test
//! key. The recipe itself is the repository's, unchanged: solve, fetch and
//! build the disk image.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::workspace::run_bounded;
use support::*;

/// Solve + fetch + a full build (kernel initramfs, containerd, disk image).
const BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);

fn run(ws: &Workspace, args: &[&str], timeout: Duration) -> RunOutput {
    let mut cmd = ws.command(args);
    // The Debian archives come from this host's apt sources (never the repo);
    // the vendor store may be shared with the caller's (`IMGBUILD_VENDOR`).
    cmd.env("IMGBUILD_APT_DIR", "/etc/apt");
    run_bounded(cmd, timeout)
}

#[test]
#[ignore = "uses the live Debian archive and builds a full image (minutes)"]
fn kubernetes_r2lab_builds_from_a_fixture_kubernetes_repository() {
    let site = Site::new();
    let unit = "[Unit]\nDescription=kubelet (fixture)\n[Service]\nExecStart=/usr/bin/kubelet\n\
                [Install]\nWantedBy=multi-user.target\n";
    let stub = |name: &str| format!("#!/bin/sh\necho {name} fixture\n");
    site.flat("kubernetes", &["amd64"])
        .add(
            DebSpec::new("kubelet", "1.32.9-1.1", "amd64")
                .depends("conntrack, iptables (>= 1.4.21), kubernetes-cni (>= 1.1.1)")
                .file("/usr/bin/kubelet", stub("kubelet"), 0o755)
                .file("/usr/lib/systemd/system/kubelet.service", unit, 0o644),
        )
        .add(
            DebSpec::new("kubeadm", "1.32.9-1.1", "amd64")
                .depends("kubelet (>= 1.19.0), kubectl (>= 1.19.0), cri-tools (>= 1.30.0)")
                .file("/usr/bin/kubeadm", stub("kubeadm"), 0o755),
        )
        .add(DebSpec::new("kubectl", "1.32.9-1.1", "amd64").file(
            "/usr/bin/kubectl",
            stub("kubectl"),
            0o755,
        ))
        .add(DebSpec::new("cri-tools", "1.32.0-1.1", "amd64").file(
            "/usr/bin/crictl",
            stub("crictl"),
            0o755,
        ))
        .add(DebSpec::new("kubernetes-cni", "1.6.0-1.1", "amd64").file(
            "/opt/cni/bin/bridge",
            stub("bridge"),
            0o755,
        ))
        .build();
    let server = site.serve();

    let ws = Workspace::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("cp")
        .arg("-rT")
        .arg(repo.join("recipes"))
        .arg(ws.path().join("recipes"))
        .status()
        .unwrap();
    assert!(status.success());
    // The keyring the recipe names, with the fixture's signing key.
    assert_eq!(
        ws.install_key(TestKey::primary(), "kubernetes-release.pgp"),
        "keys/kubernetes-release.pgp"
    );
    let mirror = format!("kubernetes-v1.32={}", server.url("kubernetes/"));
    // kube-install's git repository: the shared bare mirror, unpacked.
    let git_mirrors = tempfile::tempdir().unwrap();
    let shared = std::env::var("IMGBUILD_SHARED_GIT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo.join("../shared/git"));
    let status = Command::new("tar")
        .arg("-xf")
        .arg(shared.join("kube-install.git.tar"))
        .arg("-C")
        .arg(git_mirrors.path())
        .status()
        .unwrap();
    assert!(status.success(), "unpacking {}", shared.display());
    let git = format!(
        "git:https://github.com/parmentelat/={}/",
        git_mirrors.path().display()
    );

    let solve = run(
        &ws,
        &[
            "solve",
            "kubernetes-r2lab",
            "--mirror",
            &mirror,
            "--mirror",
            &git,
        ],
        BUILD_TIMEOUT,
    );
    assert!(solve.success(), "solve failed:\n{}", solve.stderr);
    let lock = ws.read("locks/kubernetes-r2lab.lock");
    let parsed = imgbuild::lock::Lockfile::parse(&lock, Path::new("x.lock")).unwrap();
    let kubelet = parsed.package("kubelet").expect("kubelet locked");
    assert_eq!(kubelet.source, "kubernetes-v1.32");
    // Debian's kubectl wins by source priority, as the recipe intends.
    assert_ne!(
        parsed.package("kubectl").unwrap().source,
        "kubernetes-v1.32"
    );
    assert!(parsed.tools.iter().any(|t| t.name == "e2fsprogs"));
    assert!(!lock.contains("127.0.0.1"), "no mirror in the lock");
    let kube_install = parsed
        .components
        .iter()
        .find(|c| c.name == "kube-install")
        .expect("kube-install locked");
    assert_eq!(
        kube_install.commit.as_deref(),
        Some("c1744a4e564700af42058735b22fa4aad587b03c")
    );
    assert!(!lock.contains(git_mirrors.path().to_str().unwrap()));

    let fetch = run(
        &ws,
        &[
            "fetch",
            "kubernetes-r2lab",
            "--mirror",
            &mirror,
            "--mirror",
            &git,
        ],
        BUILD_TIMEOUT,
    );
    assert!(fetch.success(), "fetch failed:\n{}", fetch.stderr);
    let build = run(
        &ws,
        &["--offline", "build", "kubernetes-r2lab"],
        BUILD_TIMEOUT,
    );
    assert!(build.success(), "build failed:\n{}", build.stderr);

    let out = ws.path().join("out/kubernetes-r2lab");
    let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    for artifact in ["disk.raw", "disk.qcow2", "rootfs.tar"] {
        assert!(
            manifest.contains(&format!("\"path\": \"{artifact}\"")),
            "{manifest}"
        );
    }
    let raw = std::fs::metadata(out.join("disk.raw")).unwrap().len();
    assert_eq!(raw, 4 << 30, "the size r2lab-node's [disk] sets");
    // The fixture's kubelet and the kubeadm prerequisites are in the image.
    let tar = out.join("rootfs.tar");
    let listing = Command::new("tar").arg("tvf").arg(&tar).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for path in [
        "./usr/bin/kubelet",
        "./opt/cni/bin/bridge",
        "./etc/containerd/config.toml",
        "./etc/modules-load.d/k8s.conf",
        "./etc/systemd/system/swap.target -> /dev/null",
        "./etc/systemd/system/multi-user.target.wants/kubelet.service",
        // kube-install, a component built from its pinned commit.
        "./root/kube-install/kube-install.sh",
        "./usr/local/bin/kube-install.sh -> /root/kube-install/kube-install.sh",
        "./var/lib/dpkg/info/kube-install.list",
    ] {
        assert!(listing.contains(path), "{path} missing from the image");
    }
}
