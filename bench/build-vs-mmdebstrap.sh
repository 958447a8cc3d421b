#!/usr/bin/env bash
# Build the root filesystem of a lock with imgbuild and with mmdebstrap, the
# same package set from the same loopback mirror, and compare wall time, CPU
# time and peak RSS; then check both trees hold the same packages.
#
#   bench/build-vs-mmdebstrap.sh [LOCK]     (default: locks/r2lab-node.lock)
#
# 1. Mirror (bench/lib/loopback-mirror.sh): the lock's package files, served
#    on 127.0.0.1 as a flat unsigned repository, and a bench workspace.
# 2. imgbuild (timed): `imgbuild build` of the real recipe and lock, offline,
#    from the seeded store (warm, as after `imgbuild fetch`); a fresh rootfs
#    cache and output directory for every run, so each run assembles, runs
#    every maintainer script and the recipe's steps and writes all artifacts
#    (rootfs.tar, OCI layout, SBOMs, package list, and the recipe's disk
#    image or ONIE installer) — more work than mmdebstrap's single tar. The
#    rootfs-only time (up to the rootfs tar, as mmdebstrap's output) is
#    reported too, from the `rootfs:` line imgbuild prints. Two caches that
#    do not depend on the image are kept between runs and warmed by one
#    untimed build: components (`@components`, sonic-p4's bmv2, which
#    mmdebstrap does not build; their packages are left out of the
#    package-set comparison) and the tools tree (`@tools-*`, the locked
#    mkfs/grub/qemu-img, the counterpart of a host's installed tools; set
#    COLD_TOOLS=1 to assemble it in every timed run).
# 3. mmdebstrap (timed): `--variant=custom --include=NAME:ARCH=VERSION...`
#    of exactly the lock's packages, root mode, output a tar, from the
#    loopback repository (it downloads from the local mirror: mmdebstrap has
#    no warm store; the transfer is a local copy at memory speed).
#    imgbuild and mmdebstrap run alternately, one run each in turn, so a
#    host that gets busier or quieter during the comparison weighs on both,
#    and each timed run of either starts with the page cache dropped (see
#    below; SETTLE=0: not dropped).
# 4. Both trees' dpkg status: the installed (package, architecture, version)
#    sets must be identical.
#
# Environment: BENCH_DIR (default /tmp/imgbuild-bench/build-<lock name>),
# RUNS (default 1; medians are reported), IMGBUILD (default
# target/release/imgbuild), MIRRORS (as for bench/fetch-vs-apt.sh), SETTLE.
set -euo pipefail
. "$(dirname "$0")/lib/summary.sh"

. "$(dirname "$0")/lib/lock-args.sh"
lock_args build 1 "$@"
[ "$(id -u)" = 0 ] || { echo "run as root (both tools run maintainer scripts in a chroot/sandbox)" >&2; exit 2; }
for tool in mmdebstrap python3 /usr/bin/time "$imgbuild"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install mmdebstrap time)" >&2; exit 2; }
done

. "$here/bench/lib/loopback-mirror.sh"
mirror_setup "$lock" "$work"
mirror_serve "$work"

# --- imgbuild: warm store ---------------------------------------------------------
ws=$lock_ws
ib_build=(env IMGBUILD_CACHE="$work/ib-cache" "$imgbuild" -C "$ws" --offline
    build "$name" --vendor "$SEED_DIR" --out "$work/ib-out")
# Everything but the component and tools caches goes before each run.
keep=(! -name @components ! -name '@tools-*')
[ -n "${COLD_TOOLS:-}" ] && keep=(! -name @components)
ib_prep='rm -rf "$work/ib-out"; find "$work/ib-cache/rootfs" -mindepth 1 -maxdepth 1 "${keep[@]}" -exec rm -rf {} + 2>/dev/null || true'
if grep -q '^\[\[component\]\]\|^tools *=' "$ws/recipes/$name.toml"; then
    echo "warming the component and tools caches (one untimed build) ..." >&2
    "${ib_build[@]}" -q >"$work/warm.out" 2>&1 || { tail -n 30 "$work/warm.out" >&2; exit 1; }
fi
include=$(paste -sd, "$work/apt-packages.txt")
arches=$(tr ' ' ',' <"$work/arches.txt" | tr -d '\n')
mm_build=(mmdebstrap --quiet --mode=root --variant=custom --architectures="$arches"
    --include="$include" --aptopt='Acquire::AllowInsecureRepositories "true"'
    --aptopt='Acquire::Languages "none"'
    bench "$work/mm.tar" "deb [trusted=yes] $MIRROR_URL/ ./")

# --- timed: imgbuild and mmdebstrap alternately ----------------------------------
# Each timed run starts from the same memory state, whatever ran before:
# on the project's VM, runs slowed down one after the other as the page
# cache filled up with earlier runs' files (four identical imgbuild builds
# in a row: 34, 39, 43 and 50 s; both tools ran ~35% faster from an empty
# cache), so a figure depended on its place in the bench. The page cache
# is dropped before every timed run of either tool (both then read their
# inputs, the store or the mirror, from disk) and the host is given 5 s to
# settle. SETTLE=0 skips it (the runs then depend on their order).
if [ "${SETTLE:-1}" != 0 ]; then
    settle='sync; echo 3 >/proc/sys/vm/drop_caches; sleep 5'
fi
# One run of each in turn (imgbuild, mmdebstrap, imgbuild, ...), so a host
# that gets busier or quieter meanwhile weighs on both alike; medians.
ib_ss=() ib_cs=() ib_ms=() ib_rs=() ib_rcs=() mm_ss=() mm_cs=() mm_ms=()
total_runs=$runs
for ((run = 0; run < total_runs; run++)); do
    runs=1 time_cmd imgbuild "$work" "$ib_prep" -- "${ib_build[@]}"
    ib_ss+=("$RESULT_S") ib_cs+=("$RESULT_CPU") ib_ms+=("$RESULT_MIB")
    # `  rootfs: 41.2s (cpu 35.0s)`: up to the rootfs tar.
    ib_rs+=("$(sed -n 's/^  rootfs: \([0-9.]*\)s (cpu \([0-9.]*\)s).*/\1/p' "$work/imgbuild.out" | tail -n 1)")
    ib_rcs+=("$(sed -n 's/^  rootfs: \([0-9.]*\)s (cpu \([0-9.]*\)s).*/\2/p' "$work/imgbuild.out" | tail -n 1)")
    runs=1 time_cmd mmdebstrap "$work" 'rm -f "$work/mm.tar"' -- "${mm_build[@]}"
    mm_ss+=("$RESULT_S") mm_cs+=("$RESULT_CPU") mm_ms+=("$RESULT_MIB")
done
runs=$total_runs
med() { printf '%s\n' "$@" | median; }
ib_s=$(med "${ib_ss[@]}") ib_c=$(med "${ib_cs[@]}") ib_m=$(med "${ib_ms[@]}")
ib_root_s=$(med "${ib_rs[@]}") ib_root_c=$(med "${ib_rcs[@]}")
mm_s=$(med "${mm_ss[@]}") mm_c=$(med "${mm_cs[@]}") mm_m=$(med "${mm_ms[@]}")
echo "runs (wall s): imgbuild ${ib_ss[*]}; rootfs ${ib_rs[*]}; mmdebstrap ${mm_ss[*]}" >&2

# --- same packages? -------------------------------------------------------------
installed() { # TAR -> sorted "name:arch=version" of installed packages
    tar -xOf "$1" ./var/lib/dpkg/status | python3 -c '
import sys
for st in sys.stdin.read().split("\n\n"):
    f = dict(l.split(": ", 1) for l in st.splitlines() if ": " in l and not l.startswith(" "))
    if f.get("Status") == "install ok installed":
        print("%s:%s=%s" % (f["Package"], f["Architecture"], f["Version"]))' | sort
}
installed "$work/ib-out/$name/rootfs.tar" >"$work/ib-all.pkgs"
installed "$work/mm.tar" >"$work/mm.pkgs"
# Packages built from components are imgbuild's own (not in the lock).
grep -Fxf "$work/mm.pkgs" "$work/ib-all.pkgs" >"$work/ib.pkgs" || true
differ=""
if diff -u "$work/mm.pkgs" "$work/ib.pkgs" >"$work/pkgs.diff"; then
    same="identical ($(wc -l <"$work/ib.pkgs") packages installed in both)"
else
    same="DIFFERENT (see $work/pkgs.diff)"
    differ=" — package sets DIFFER"
fi

echo
echo "lock: $name  ($(wc -l <"$work/apt-packages.txt") packages; loopback mirror; median of $runs run(s))"
row() { printf '%-22s %8s %8s %13s %12s %11s\n' "$@"; }
row tool wall_s cpu_s peak_rss_MiB wall/mmdeb cpu/mmdeb
row "mmdebstrap (custom)" "$mm_s" "$mm_c" "$mm_m" 1.00 1.00
row "imgbuild build" "$ib_s" "$ib_c" "$ib_m" "$(ratio "$ib_s" "$mm_s")" "$(ratio "$ib_c" "$mm_c")"
row "  of which rootfs" "${ib_root_s:-?}" "${ib_root_c:-?}" "" "$(ratio "${ib_root_s:-0}" "$mm_s")" "$(ratio "${ib_root_c:-0}" "$mm_c")"
extra=$(($(wc -l <"$work/ib-all.pkgs") - $(wc -l <"$work/ib.pkgs")))
note=""
[ "$extra" -gt 0 ] && note="; $extra package(s) built from components left out"
echo "package sets: $same$note"
summary "build $name, warm store (wall)$differ" "mmdebstrap" "${mm_s}s" "${ib_s}s" "$(ratio "$ib_s" "$mm_s")"
summary "build $name, rootfs only (wall)" "mmdebstrap" "${mm_s}s" "${ib_root_s:-?}s" "$(ratio "${ib_root_s:-0}" "$mm_s")"
summary "build $name, warm store (RSS)" "mmdebstrap" "${mm_m} MiB" "${ib_m} MiB" "$(ratio "$ib_m" "$mm_m")"
