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
# Git sources of components (bmv2, kube-install): the shared bare mirrors,
# unpacked into a temp dir and reached through the git mapping (never a
# path in a recipe or a lock). IMGBUILD_SHARED_GIT overrides where they are.
shared_git=${IMGBUILD_SHARED_GIT:-$PWD/../shared/git}
git_mirrors=$(mktemp -d)
trap 'rm -rf "$git_mirrors"' EXIT
for t in "$shared_git"/*.git.tar; do tar -xf "$t" -C "$git_mirrors"; done
export IMGBUILD_SHARED_GIT="$shared_git"
export IMGBUILD_MIRROR_GIT="https://github.com/p4lang/=$git_mirrors/ https://github.com/parmentelat/=$git_mirrors/"
# Same profile as `cargo test`, so CI builds the crate only once.
# The committed locks are checked against the archive's signed indexes
# (`solve --locked` audits every entry). Debian moves its suites on daily:
# when a suite no longer signs a locked file, the lock is behind the
# archive (the nightly refreshes it) and the live checks below run on a
# lock re-solved here, in this clone only; any other --locked failure (a
# lock stale for its recipe, a forged entry) fails the run.
for r in sonic-p4 r2lab-node; do
  if ! out=$(cargo run --locked -q -- --locked solve "$r" 2>&1); then
    if grep -q "suite moved on" <<<"$out"; then
      echo "note: locks/$r.lock is behind the archive (a suite moved on); re-solving it for the live checks"
      cargo run --locked -q -- solve "$r"
    else
      echo "$out" >&2
      exit 1
    fi
  fi
done
cargo test --locked --test live -- --ignored --test-threads 1
# The PyPI layer of sonic-p4: built from the committed lock, every locked
# distribution imported inside the image (needs the `pypi` index or a filled
# vendor store; the index is the host's pip configuration or pip's default).
cargo test --locked --test pypi_build -- --ignored --test-threads 1
# kubernetes-r2lab from a fixture Kubernetes repository on 127.0.0.1 (full build).
cargo test --locked --test kubernetes_fixture -- --ignored --test-threads 1
# (The rootless build of the real r2lab-node, ~5 min, runs in ci/nightly.sh;
# the default suite builds a fixture as root and as a subuid user.)
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
# Includes bmv2 built from source (most of an hour on 2 cores the first time;
# cached by the hash of its inputs afterwards).
cargo run --locked -q -- build sonic-p4
# Components: kube-install on bookworm, and bmv2 forwarding a packet through
# a P4 program inside the sonic-p4 image.
cargo test --locked --test components_live -- --ignored --test-threads 1
if [ "$(id -u)" = 0 ]; then
  IMGBUILD_ONIE_ROOTFS_TAR=out/sonic-p4/rootfs.tar \
    cargo test --locked --test onie_squashfs -- --ignored
fi
if command -v qemu-system-x86_64 >/dev/null; then
  cargo test --locked --test onie_qemu -- --ignored --test-threads 1
fi
