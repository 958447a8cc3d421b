#!/usr/bin/env bash
# Live checks against the real Debian archive, run when it is reachable:
# the ignored tests (real recipes solved twice, dose-debcheck as judge).
# The mirror comes from this host's apt configuration (never from the repo).
set -euo pipefail
cd "$(dirname "$0")/.."

mirror=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1 || true)
if [ -z "$mirror" ]; then
  mirror=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | head -1 || true)
fi
if [ -z "$mirror" ] || ! curl -fsS -m 15 -o /dev/null "$mirror/dists/bookworm/InRelease"; then
  echo "live checks skipped: no reachable Debian mirror in this host's apt configuration"
  exit 0
fi
# Same profile as `cargo test`, so CI builds the crate only once.
cargo test --locked --test live -- --ignored --test-threads 1
# The PyPI layer of sonic-p4: built from the committed lock, every locked
# distribution imported inside the image (needs the `pypi` index or a filled
# vendor store; the index is the host's pip configuration or pip's default).
cargo test --locked --test pypi_build -- --ignored --test-threads 1
# kubernetes-r2lab from a fixture Kubernetes repository on 127.0.0.1 (full build).
cargo test --locked --test kubernetes_fixture -- --ignored --test-threads 1
# r2lab-node built as root and as a user with a subuid range: same bytes.
cargo test --locked --test rootless_build -- --ignored --test-threads 1
# Builds r2lab-node and boots its disk image in QEMU (TCG, ~10 min).
if command -v qemu-system-x86_64 >/dev/null; then
  cargo test --locked --test boot_disk -- --ignored --test-threads 1
else
  echo "boot test skipped: qemu-system-x86_64 missing (ci/setup.sh installs qemu-system-x86)"
fi

# The ONIE image of sonic-p4: built from the live lock, its squashfs checked
# against the rootfs tar with the running kernel (root, loop devices), then
# booted under QEMU (TCG) to a login prompt.
cargo run --locked -q -- fetch sonic-p4
cargo run --locked -q -- build sonic-p4
if [ "$(id -u)" = 0 ]; then
  IMGBUILD_ONIE_ROOTFS_TAR=out/sonic-p4/rootfs.tar \
    cargo test --locked --test onie_installer -- --ignored
fi
if command -v qemu-system-x86_64 >/dev/null; then
  cargo test --locked --test onie_qemu -- --ignored --test-threads 1
fi
