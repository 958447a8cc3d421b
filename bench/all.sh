#!/usr/bin/env bash
# Every side-by-side comparison in one run, one table of ratios
# (imgbuild / peer: below 1.00 means imgbuild is faster or smaller).
#
#   bench/all.sh [RECIPE]        (default: sonic-p4; needs root and the live archive)
#
# RECIPE is the Python comparison's ([python] layer); solve, fetch and build
# use DEB_RECIPE (default r2lab-node, no components).
#
# Runs, in this order: solve vs `apt-get -s`, fetch vs `apt-get download`,
# build vs mmdebstrap, Python resolution vs `uv pip compile`. Each script's own
# report goes to $BENCH_DIR/all/NAME.txt; this prints the table, with the
# load average at the start and at the end.
#
# Figures taken on a busy machine are not results: with a 1-minute load
# average above MAX_LOAD (default 1.5) at the start, it refuses to run; if
# the load rose above it by the end (something else started), the table is
# printed but marked as not a result and the exit code is 3.
#
# Environment: RUNS (passed on; default 3 here), BENCH_DIR, MAX_LOAD, DEB_RECIPE,
# BUILD_RECIPE (the build comparison's recipe; default r2lab-node),
# IMGBUILD (default target/release/imgbuild, built if missing), MIRRORS.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
recipe=${1:-sonic-p4}
max_load=${MAX_LOAD:-1.5}
export RUNS=${RUNS:-3}
export BENCH_DIR_ROOT=${BENCH_DIR:-${TMPDIR:-/tmp}/imgbuild-bench}
out=$BENCH_DIR_ROOT/all
mkdir -p "$out"

load1() { cut -d' ' -f1 /proc/loadavg; }
above() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }

start_load=$(cut -d' ' -f1-3 /proc/loadavg)
if above "$(load1)" "$max_load"; then
    echo "bench/all.sh: load average $start_load is above $max_load: not measuring (figures taken under load are not results)" >&2
    exit 3
fi

export IMGBUILD=${IMGBUILD:-$here/target/release/imgbuild}
if [ ! -x "$IMGBUILD" ]; then
    (cd "$here" && cargo build --release --locked --quiet)
fi

export BENCH_SUMMARY=$out/summary.tsv
: >"$BENCH_SUMMARY"
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
status=0
run() { # NAME SCRIPT ARGS...
    local name=$1; shift
    echo "== $name" >&2
    if ! BENCH_DIR="$BENCH_DIR_ROOT/$name" "$@" >"$out/$name.txt" 2>"$out/$name.err"; then
        echo "bench/all.sh: $name failed (see $out/$name.err)" >&2
        status=1
    fi
}
# The Debian comparisons use a recipe without components unless told
# (DEB_RECIPE, BUILD_RECIPE): apt and mmdebstrap have nothing like
# sonic-p4's bmv2 build, and the apt-side scripts cannot pin its git source.
deb_recipe=${DEB_RECIPE:-r2lab-node}
run solve "$here/bench/solve-vs-apt.sh" "$here/recipes/$deb_recipe.toml"
run fetch "$here/bench/fetch-vs-apt.sh" "$here/locks/$deb_recipe.lock"
run build "$here/bench/build-vs-mmdebstrap.sh" "$here/locks/${BUILD_RECIPE:-$deb_recipe}.lock"
run pypi "$here/bench/pypi-vs-uv.sh" "$here/recipes/$recipe.toml"
end_load=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "bench/all.sh $recipe (Debian: $deb_recipe) — $started, $(nproc) cores, RUNS=$RUNS"
echo "load average (1, 5, 15 min): start $start_load, end $end_load"
echo
printf '| %s | %s | %s | %s | %s |\n' measure peer peer imgbuild ratio
printf '|---|---|---|---|---|\n'
while IFS=$'\t' read -r measure peer pf if ratio; do
    printf '| %s | %s | %s | %s | %s× |\n' "$measure" "$peer" "$pf" "$if" "$ratio"
done <"$BENCH_SUMMARY"
if above "$(load1)" "$max_load"; then
    echo
    echo "NOT A RESULT: the load average rose above $max_load during the run ($end_load)."
    exit 3
fi
exit $status
