#!/usr/bin/env bash
# Download the package files of a lock with imgbuild and with apt, from the
# same loopback mirror, and compare wall time, CPU time and peak RSS.
#
#   bench/fetch-vs-apt.sh [LOCK]        (default: locks/sonic-p4.lock)
#
# The lock's workspace is the directory above `locks/`; its recipe
# (`recipes/<lock name>.toml`) says where the files come from.
#
# 1. Seed (untimed, network once): `imgbuild fetch` of the lock into
#    $BENCH_DIR/seed, a vendor store that persists between runs. Set
#    IMPORT=/var/cache/apt/archives to adopt files already on disk first.
# 2. Mirror: $BENCH_DIR/mirror/<source>/<filename> hard-linked from the seed,
#    plus a flat, unsigned `Packages` index at its root listing the same files
#    (for apt), served by `python3 -m http.server` on 127.0.0.1 only.
# 3. imgbuild (timed): a scratch workspace with a recipe whose every source is
#    a named archive pointed at the loopback mirror (`--mirror NAME=URL`) and
#    a copy of the lock; `imgbuild fetch --quiet` into an empty vendor store.
# 4. apt (timed): a private APT_CONFIG (own lists, cache, empty dpkg status;
#    the host's apt state is not touched) whose only source is the loopback
#    flat repository; `apt-get download NAME:ARCH=VERSION...` of exactly the
#    lock's packages into an empty directory. `apt-get update` (local) is
#    not timed.
#
# Cold means an empty store / download directory for every run; both tools
# read the same bytes from the same server. No archive host name is written
# anywhere: the seed step uses imgbuild's usual mirror configuration
# (--mirror via MIRRORS="NAME=URL ...", IMGBUILD_MIRROR_<NAME>, or the host's
# apt sources).
#
# Environment: BENCH_DIR (default /tmp/imgbuild-bench/fetch-<lock name>),
# RUNS (default 3; medians are reported), JOBS (imgbuild --jobs, default 8),
# IMGBUILD (default target/release/imgbuild), IMPORT, MIRRORS.
set -euo pipefail
. "$(dirname "$0")/lib/summary.sh"

here=$(cd "$(dirname "$0")/.." && pwd)
lock=${1:-$here/locks/sonic-p4.lock}
lock=$(cd "$(dirname "$lock")" && pwd)/$(basename "$lock")
name=$(basename "$lock" .lock)
ws=$(dirname "$(dirname "$lock")")
work=${BENCH_DIR:-${TMPDIR:-/tmp}/imgbuild-bench/fetch-$name}
runs=${RUNS:-3}
jobs=${JOBS:-8}
imgbuild=${IMGBUILD:-$here/target/release/imgbuild}

for tool in apt-get python3 /usr/bin/time "$imgbuild"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done

# --- 1–2. seed store, loopback mirror, bench workspace ---------------------------
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
mapfile -t specs <"$work/apt-packages.txt"
time_cmd apt "$work/apt-dl" 'rm -f "$work"/apt-dl/*.deb' -- apt-get -q download "${specs[@]}"
apt_s=$RESULT_S apt_c=$RESULT_CPU apt_m=$RESULT_MIB
apt_n=$(find "$work/apt-dl" -name '*.deb' | wc -l)

ib_args=(-C "$work/ws" fetch "$name" --vendor "$work/vendor" --jobs "$jobs" --quiet)
while read -r a; do ib_args+=(--mirror "$a=$base/$a/"); done <"$work/mirrors.txt"
time_cmd imgbuild "$work" 'rm -rf "$work/vendor"' -- "$imgbuild" "${ib_args[@]}"
ib_s=$RESULT_S ib_c=$RESULT_CPU ib_m=$RESULT_MIB
ib_n=$(find "$work/vendor/sha256" -type f | wc -l)

# --- 5. report ------------------------------------------------------------------
mib=$(du -smL "$work/apt-dl" | cut -f1)
echo
echo "lock: $name  (${#specs[@]} packages, ~${mib} MiB; loopback mirror; cold; median of $runs runs; imgbuild --jobs $jobs)"
row() { printf '%-18s %6s %8s %8s %13s %9s %9s\n' "$@"; }
row tool files wall_s cpu_s peak_rss_MiB wall/apt cpu/apt
row "apt-get download" "$apt_n" "$apt_s" "$apt_c" "$apt_m" 1.00 1.00
row "imgbuild fetch" "$ib_n" "$ib_s" "$ib_c" "$ib_m" "$(ratio "$ib_s" "$apt_s")" "$(ratio "$ib_c" "$apt_c")"
echo "speed-up (apt wall / imgbuild wall): $(ratio "$apt_s" "$ib_s")x"
summary "fetch $name, cold (wall)" "apt-get download" "${apt_s}s" "${ib_s}s" "$(ratio "$ib_s" "$apt_s")"
