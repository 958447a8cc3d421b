#!/usr/bin/env bash
# Download the package files of a lock with imgbuild and with apt, from the
# same loopback mirror, and compare wall time, CPU time and peak RSS.
#
#   bench/fetch-vs-apt.sh [LOCK]        (default: locks/r2lab-node.lock)
#
# The lock's workspace is the directory above `locks/`; its recipe
# (`recipes/<lock name>.toml`) says where the files come from.
#
# 1. Seed (untimed, network once): `imgbuild fetch` of the lock into
#    the seed store (SEED, else $BENCH_DIR/seed), a vendor store that
#    persists between runs. Set IMPORT=/var/cache/apt/archives to adopt
#    files already on disk first. (A lock with components also pins their
#    sources, which the loopback mirror does not serve: r2lab-node has none.)
# 2. Mirror (bench/lib/loopback-mirror.sh): $BENCH_DIR/mirror/<archive>/<filename>
#    hard-linked from the seed (the real archive-relative layout, with each
#    source's InRelease and indexes under <archive>/dists/<suite>/ from
#    imgbuild's index cache), plus a flat, unsigned `Packages` index at its
#    root listing the same files (for apt), served by Python's `http.server`
#    on 127.0.0.1 only.
# 3. imgbuild (timed): `imgbuild fetch --quiet` of the REAL recipe and lock
#    (the lock audit included) with `--mirror ARCHIVE=http://127.0.0.1:PORT/ARCHIVE/`
#    for every archive of the recipe, into an empty vendor store. The index
#    cache is warm (the seed step's), as apt's lists are; COLD_INDEX=1 empties
#    it before every run (the audit then downloads the InRelease files and
#    indexes from the loopback mirror too, which apt's timed part does not).
# 4. apt (timed): a private APT_CONFIG (own lists, cache, empty dpkg status;
#    the host's apt state is not touched) whose only source is the loopback
#    flat repository; `apt-get download NAME:ARCH=VERSION...` of exactly the
#    lock's packages and tools into an empty directory. `apt-get update`
#    (local) is not timed.
#
# Cold means an empty store / download directory for every run; both tools
# read the same bytes from the same server. No archive host name is written
# anywhere: the seed step uses imgbuild's usual mirror configuration
# (--mirror via MIRRORS="NAME=URL ...", IMGBUILD_MIRROR_<NAME>, or the host's
# apt sources).
#
# Environment: BENCH_DIR (default /tmp/imgbuild-bench/fetch-<lock name>),
# RUNS (default 3; medians are reported), JOBS (imgbuild --jobs, default 8),
# IMGBUILD (default target/release/imgbuild), SEED, IMPORT, MIRRORS.
set -euo pipefail
. "$(dirname "$0")/lib/summary.sh"

. "$(dirname "$0")/lib/lock-args.sh"
lock_args fetch 3 "$@"
ws=$lock_ws
jobs=${JOBS:-8}

for tool in apt-get python3 /usr/bin/time "$imgbuild"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done

# --- 1–2. seed store, loopback mirror ---------------------------
. "$here/bench/lib/loopback-mirror.sh"
mirror_setup "$lock" "$work"
mirror_serve "$work"
base=$MIRROR_URL

# --- 3. apt configuration (private) ------------------------------------------
arch=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["recipe"]["architecture"])' "$lock")
mkdir -p "$work"/apt/{etc/apt.conf.d,etc/preferences.d,etc/trusted.gpg.d,state/lists/partial,cache/archives/partial,log} "$work/apt-dl"
: >"$work/apt/state/status"
echo "deb [trusted=yes] $base/ ./" >"$work/apt/etc/sources.list"
{
    echo "Dir \"/\"; Dir::State \"$work/apt/state/\"; Dir::State::status \"$work/apt/state/status\";"
    echo "Dir::Cache \"$work/apt/cache/\"; Dir::Log \"$work/apt/log/\"; Dir::Etc \"$work/apt/etc/\";"
    echo "Dir::Etc::sourcelist \"$work/apt/etc/sources.list\"; Dir::Etc::sourceparts \"-\";"
    echo "Dir::Etc::parts \"$work/apt/etc/apt.conf.d/\"; Dir::Etc::trustedparts \"$work/apt/etc/trusted.gpg.d/\";"
    echo "Dir::Etc::preferencesparts \"$work/apt/etc/preferences.d/\";"
    echo "APT::Architecture \"$arch\"; APT::Architectures { $(for a in $(cat "$work/arches.txt"); do printf '"%s"; ' "$a"; done)};"
    echo "Acquire::Languages \"none\"; Acquire::AllowInsecureRepositories \"true\";"
    echo "APT::Sandbox::User \"root\"; Debug::NoLocking \"true\";"
} >"$work/apt/apt.conf"
export APT_CONFIG=$work/apt/apt.conf
apt-get -q update >"$work/apt-update.log" 2>&1 || { cat "$work/apt-update.log" >&2; exit 1; }

# --- 4. timing ----------------------------------------------------------------
mapfile -t specs <"$work/apt-fetch.txt"
time_cmd apt "$work/apt-dl" 'rm -f "$work"/apt-dl/*.deb' -- apt-get -q download "${specs[@]}"
apt_s=$RESULT_S apt_c=$RESULT_CPU apt_m=$RESULT_MIB
apt_n=$(find "$work/apt-dl" -name '*.deb' | wc -l)

mapfile -t mirror_flags < <(mirror_args "$base")
ib_args=(-C "$ws" fetch "$name" --vendor "$work/vendor" --jobs "$jobs" --quiet "${mirror_flags[@]}")
idx=warm ib_cache=$INDEX_CACHE ib_prep='rm -rf "$work/vendor"'
if [ -n "${COLD_INDEX:-}" ]; then # the audit downloads InRelease and indexes too
    idx=cold ib_cache=$work/cold-index-cache ib_prep='rm -rf "$work/vendor" "$ib_cache"'
fi
time_cmd imgbuild "$work" "$ib_prep" -- env IMGBUILD_CACHE="$ib_cache" "$imgbuild" "${ib_args[@]}"
ib_s=$RESULT_S ib_c=$RESULT_CPU ib_m=$RESULT_MIB
ib_n=$(find "$work/vendor/sha256" -type f | wc -l)

# --- 5. report ------------------------------------------------------------------
mib=$(du -smL "$work/apt-dl" | cut -f1)
echo
echo "lock: $name  (${#specs[@]} packages and tools, ~${mib} MiB; loopback mirror; cold store, $idx index cache; median of $runs runs; imgbuild --jobs $jobs)"
row() { printf '%-18s %6s %8s %8s %13s %9s %9s\n' "$@"; }
row tool files wall_s cpu_s peak_rss_MiB wall/apt cpu/apt
row "apt-get download" "$apt_n" "$apt_s" "$apt_c" "$apt_m" 1.00 1.00
row "imgbuild fetch" "$ib_n" "$ib_s" "$ib_c" "$ib_m" "$(ratio "$ib_s" "$apt_s")" "$(ratio "$ib_c" "$apt_c")"
echo "speed-up (apt wall / imgbuild wall): $(ratio "$apt_s" "$ib_s")x"
summary "fetch $name, cold (wall)" "apt-get download" "${apt_s}s" "${ib_s}s" "$(ratio "$ib_s" "$apt_s")"
