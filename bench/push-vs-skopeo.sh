#!/usr/bin/env bash
# Push the same built OCI image to a local registry with `imgbuild publish`
# and with `skopeo copy`; wall time, CPU time and peak RSS, cold (a fresh,
# empty registry every run) and warm (the same repository again: every
# blob is already there, both tools skip it).
#
#   bench/push-vs-skopeo.sh [LOCK]      (default: locks/r2lab-node.lock; needs root)
#
# 1. Fixture (untimed, once, kept between runs): the lock fetched into the
#    seed store (SEED, else $BENCH_DIR/seed), and a scratch workspace
#    $BENCH_DIR/ws with a copy of the lock's recipes/ and lock in which the
#    recipes' [disk] and [onie] tables are removed (they are build settings,
#    outside the lock's hash: the lock stays fresh), so that `imgbuild build`
#    writes the container image (oci/), rootfs tar, SBOMs and package list
#    but no disk image or installer: what is published is then the image
#    skopeo copies, plus imgbuild's evidence (lock, both SBOMs, the unsigned
#    provenance as referrers, and the referrers tag index), a few hundred KiB.
# 2. Registry: Debian's CNCF distribution (`docker-registry serve`, package
#    docker-registry) on 127.0.0.1, plain http, storage in $BENCH_DIR; a
#    fresh one (empty storage, new port) for every cold run. Its access log
#    counts the blob uploads of each push: a cold push must upload, and the
#    warm row says whether both tools skipped every blob.
# 3. imgbuild (timed): `imgbuild publish NAME --no-build --insecure
#    127.0.0.1:PORT/bench/ib` of the built out/ (publish re-hashes every
#    artifact against manifest.json first, as always).
# 4. skopeo (timed): `skopeo copy --dest-tls-verify=false oci:OUT/oci:latest
#    docker://127.0.0.1:PORT/bench/sk`. Warm: the same command again, to the
#    last cold run's registry. Both pushes must give the built image digest.
#
# Environment: BENCH_DIR (default /tmp/imgbuild-bench/push-<lock name>),
# RUNS (default 3; medians), IMGBUILD (default target/release/imgbuild),
# SEED, BUILD_CACHE (the fixture build's cache, default $BENCH_DIR/cache),
# MIRRORS, IMPORT.
set -euo pipefail
. "$(dirname "$0")/lib/summary.sh"

. "$(dirname "$0")/lib/lock-args.sh"
lock_args push 3 "$@"
src_ws=$lock_ws
[ "$(id -u)" = 0 ] || { echo "run as root (the fixture build runs maintainer scripts in a sandbox)" >&2; exit 2; }
for tool in skopeo docker-registry curl python3 /usr/bin/time "$imgbuild"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install skopeo docker-registry time)" >&2; exit 2; }
done
. "$here/bench/lib/loopback-mirror.sh"
mkdir -p "$work"

# --- 1. fixture: the image, built once --------------------------------------------
ws=$work/ws out=$work/out
if [ ! -f "$out/$name/oci/index.json" ] || [ "$lock" -nt "$out/$name/oci/index.json" ]; then
    seed_store "$lock"
    rm -rf "$ws" "$out" && mkdir -p "$ws/locks" && cp -r "$src_ws/recipes" "$ws/recipes"
    cp "$lock" "$ws/locks/"
    # Drop the [disk] and [onie] tables (up to the next table header) of
    # every recipe (an `extends` parent's would be inherited).
    for f in "$src_ws"/recipes/*.toml; do
        awk '/^\[+[ \t]*(disk|onie)[ \t]*[].]/ { skip = 1; next } /^\[/ { skip = 0 } !skip' \
            "$f" >"$ws/recipes/$(basename "$f")"
    done
    echo "building the image to push (untimed, once) ..." >&2
    IMGBUILD_CACHE=${BUILD_CACHE:-$work/cache} "$imgbuild" -C "$ws" --offline build "$name" \
        --vendor "$SEED_DIR" --out "$out" >"$work/fixture-build.out" 2>&1 ||
        { tail -n 30 "$work/fixture-build.out" >&2; exit 1; }
fi
layout=$out/$name/oci
image_mib=$(du -smL "$layout/blobs" | cut -f1)

# --- 2. registry on loopback --------------------------------------------------------
# A fresh one (empty storage, new port) for every cold run: no blob is in the
# registry under any repository, and skopeo's blob-info cache knows no
# location on it to mount from. Its access log counts the blob uploads.
reg_n=0 REGISTRY_PID=
trap '[ -z "$REGISTRY_PID" ] || kill "$REGISTRY_PID" 2>/dev/null || true' EXIT
start_registry() {
    if [ -n "$REGISTRY_PID" ]; then
        kill "$REGISTRY_PID" 2>/dev/null || true
        wait "$REGISTRY_PID" 2>/dev/null || true
    fi
    reg_n=$((reg_n + 1))
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    rm -rf "$work/registry" && mkdir -p "$work/registry"
    printf '%s\n' "version: 0.1" "log:" "  level: warn" "storage:" "  filesystem:" \
        "    rootdirectory: $work/registry" "  delete:" "    enabled: true" "http:" \
        "  addr: 127.0.0.1:$port" >"$work/registry.yml"
    reg_log=$work/registry-$reg_n.log
    docker-registry serve "$work/registry.yml" >"$reg_log" 2>&1 &
    REGISTRY_PID=$!
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null && break
        sleep 0.1
    done
    curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" || { cat "$reg_log" >&2; exit 1; }
    registry=127.0.0.1:$port
}
# Completed blob uploads (the final PUT of an upload session) logged so far.
uploads() { grep -c '"PUT /v2/[^ ]*/blobs/uploads/' "$reg_log" || true; }

# --- 3–4. timing --------------------------------------------------------------------
# The destination is the last argument, read from $work/ref, which a cold
# run's PREP sets to a new registry (time_cmd runs a fixed command).
with_ref() { exec "$@" "$(cat "$work/ref")"; }
export -f with_ref
export work
revision=$(git -C "$here" rev-parse HEAD 2>/dev/null || printf '0%.0s' {1..40})
ib=(bash -c 'with_ref "$@"' -- "$imgbuild" -C "$ws" publish "$name" --no-build --out "$out"
    --insecure --revision "$revision")
sk=(bash -c 'with_ref "$@"' -- skopeo copy --dest-tls-verify=false "oci:$layout:latest")
fresh() { start_registry; echo "$1$registry/bench/$2" >"$work/ref"; }
want=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$layout/index.json")
digest_of() { skopeo inspect --tls-verify=false --format '{{.Digest}}' "$1" 2>/dev/null || echo "?"; }

time_cmd imgbuild-cold "$work" 'fresh "" ib' -- "${ib[@]}"
ib_cold_s=$RESULT_S ib_cold_c=$RESULT_CPU ib_cold_m=$RESULT_MIB
ib_cold_up=$(uploads)
time_cmd imgbuild-warm "$work" ':' -- "${ib[@]}"
ib_warm_s=$RESULT_S ib_warm_c=$RESULT_CPU ib_warm_m=$RESULT_MIB
ib_warm_up=$(($(uploads) - ib_cold_up))
got_ib=$(digest_of "docker://$registry/bench/ib:lock-$(sha256sum "$lock" | cut -c1-12)")

time_cmd skopeo-cold "$work" 'fresh docker:// sk' -- "${sk[@]}"
sk_cold_s=$RESULT_S sk_cold_c=$RESULT_CPU sk_cold_m=$RESULT_MIB
sk_cold_up=$(uploads)
time_cmd skopeo-warm "$work" ':' -- "${sk[@]}"
sk_warm_s=$RESULT_S sk_warm_c=$RESULT_CPU sk_warm_m=$RESULT_MIB
sk_warm_up=$(($(uploads) - sk_cold_up))
got_sk=$(digest_of "$(cat "$work/ref")")
[ "$got_ib" = "$want" ] && [ "$got_sk" = "$want" ] ||
    { echo "pushed image digests: imgbuild $got_ib, skopeo $got_sk; built $want" >&2; exit 1; }
[ "$sk_cold_up" -gt 0 ] && [ "$ib_cold_up" -gt 0 ] ||
    { echo "a cold push uploaded no blob (imgbuild $ib_cold_up, skopeo $sk_cold_up): not cold" >&2; exit 1; }
skip_note="both skip every blob"
if [ "$ib_warm_up" != 0 ] || [ "$sk_warm_up" != 0 ]; then
    skip_note="NOT both skipping: $ib_warm_up (imgbuild), $sk_warm_up (skopeo) blob uploads on the warm pushes"
fi

# --- report ------------------------------------------------------------------------
echo
echo "lock: $name  (image ${image_mib} MiB of blobs; local docker-registry on loopback; median of $runs runs)"
row() { printf '%-16s %-5s %8s %8s %13s %12s %12s\n' "$@"; }
row tool mode wall_s cpu_s peak_rss_MiB wall/skopeo cpu/skopeo
row "skopeo copy" cold "$sk_cold_s" "$sk_cold_c" "$sk_cold_m" 1.00 1.00
row "skopeo copy" warm "$sk_warm_s" "$sk_warm_c" "$sk_warm_m" 1.00 1.00
row "imgbuild publish" cold "$ib_cold_s" "$ib_cold_c" "$ib_cold_m" "$(ratio "$ib_cold_s" "$sk_cold_s")" "$(ratio "$ib_cold_c" "$sk_cold_c")"
row "imgbuild publish" warm "$ib_warm_s" "$ib_warm_c" "$ib_warm_m" "$(ratio "$ib_warm_s" "$sk_warm_s")" "$(ratio "$ib_warm_c" "$sk_warm_c")"
echo "blob uploads (registry access log): cold, last run: imgbuild $ib_cold_up, skopeo $sk_cold_up;"
echo "  warm, all runs: imgbuild $ib_warm_up, skopeo $sk_warm_up ($skip_note)"
echo "imgbuild's last cold run: $(grep -m1 '^  uploaded ' "$work/imgbuild-cold.out" || echo '?')"
echo "image digest: built $want, pushed by both"
summary "push $name image, cold (wall)" "skopeo copy" "${sk_cold_s}s" "${ib_cold_s}s" "$(ratio "$ib_cold_s" "$sk_cold_s")"
[ "$ib_warm_up$sk_warm_up" = 00 ] || warm_label=" (NOT both skipping blobs)"
summary "push $name image, warm${warm_label:-} (wall)" "skopeo copy" "${sk_warm_s}s" "${ib_warm_s}s" "$(ratio "$ib_warm_s" "$sk_warm_s")"
summary "push $name image, cold (RSS)" "skopeo copy" "${sk_cold_m} MiB" "${ib_cold_m} MiB" "$(ratio "$ib_cold_m" "$sk_cold_m")"
