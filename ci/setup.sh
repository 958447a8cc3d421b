#!/usr/bin/env bash
# Installs what the tests and live checks use on a fresh Debian machine.
# Idempotent; does nothing when everything is there.
set -euo pipefail
need=()
command -v dpkg-deb >/dev/null || need+=(dpkg)
command -v gpgv >/dev/null || need+=(gpgv)
command -v dose-debcheck >/dev/null || need+=(dose-distcheck)
command -v xz >/dev/null || need+=(xz-utils)
# tests/support/hostbase.rs packs the host's systemctl and useradd into a fixture base.
command -v systemctl >/dev/null || need+=(systemd)
command -v useradd >/dev/null || need+=(passwd)
# The sdist build test uses the host's Debian python3 with setuptools and wheel.
/usr/bin/python3 -c 'import setuptools' 2>/dev/null || need+=(python3-setuptools)
/usr/bin/python3 -c 'import wheel' 2>/dev/null || need+=(python3-wheel)
# The disk image boot test (tests/boot_disk.rs, run by ci/live.sh).
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
# ONIE installer tests: the host's unzip reads fs.zip as ONIE's would, and
# the boot tests run QEMU, make the NOS partition with mkfs.ext4 and the
# simulated ONIE disk with sgdisk.
command -v unzip >/dev/null || need+=(unzip)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v sgdisk >/dev/null || need+=(gdisk)
# Publishing tests (tests/publish_registry.rs): a real CNCF distribution
# registry, skopeo as the independent client, htpasswd and openssl for the
# TLS + basic-auth registry and the signing keys.
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v openssl >/dev/null || need+=(openssl)
# tests/sandbox_escape.rs compiles its escape probe with the host's cc,
# statically (libc.a is in libc6-dev); without them the test fails loudly.
command -v cc >/dev/null || need+=(gcc)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || [ -e /usr/lib/aarch64-linux-gnu/libc.a ] || need+=(libc6-dev)
# Rootless builds map /etc/subuid ranges with newuidmap/newgidmap.
command -v newuidmap >/dev/null || need+=(uidmap)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "ci/setup.sh: installing ${need[*]}"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 ||
      echo "ci/setup.sh: could not install ${need[*]}; dependent checks will be skipped"
  else
    echo "ci/setup.sh: missing ${need[*]} (not root): dependent checks will be skipped"
  fi
fi
# The independent checks of a publication (tests/data/check_publication.py):
# securesystemslib for the DSSE envelope, spdx-tools and cyclonedx-python-lib
# for the SBOMs, oras for the referrers, kubernetes-validate (and its
# PyYAML) for ci/k8s/ (tests/k8s_manifests.rs), in a venv outside the checkout.
venv="${IMGBUILD_TEST_VENV:-/var/tmp/imgbuild-test-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import securesystemslib, spdx_tools, cyclonedx, oras, kubernetes_validate' 2>/dev/null; then
  /usr/bin/python3 -c 'import ensurepip' 2>/dev/null || {
    [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null 2>&1 || true
  }
  if /usr/bin/python3 -m venv "$venv" >/dev/null 2>&1 &&
    "$venv/bin/pip" install -q in-toto securesystemslib spdx-tools cyclonedx-python-lib oras kubernetes-validate==1.37.0 >/dev/null 2>&1; then
    echo "ci/setup.sh: made the test venv $venv"
  else
    echo "ci/setup.sh: could not make the test venv $venv; the Python checks will be skipped"
  fi
fi
