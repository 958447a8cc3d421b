#!/usr/bin/env bash
# Every side-by-side comparison in one run, one table of ratios
# (imgbuild / peer: below 1.00 means imgbuild is faster or smaller).
#
#   bench/all.sh [RECIPE]        (default: sonic-p4; needs root and the live archive)
#
# RECIPE is the Python comparison's ([python] layer); solve, fetch, build,
# the no-op paths and push use DEB_RECIPE (default r2lab-node, no components).
#
# Runs, in this order: solve vs `apt-get -s` (solve-vs-apt.sh), fetch vs
# `apt-get download` (fetch-vs-apt.sh), build vs mmdebstrap
# (build-vs-mmdebstrap.sh), the no-op paths against the issue's absolute
# targets (noop.sh: unchanged build, `solve --locked` warm, a step-only
# change), push vs `skopeo copy` (push-vs-skopeo.sh), Python resolution vs
# `uv pip compile` (pypi-vs-uv.sh). Each script's own report goes to
# $BENCH_DIR/all/NAME.txt, its stderr to NAME.err; this prints one table,
# with the load average at the start and at the end. A script that fails
# (or runs longer than BENCH_TIMEOUT seconds, default 5400) gets a FAILED
# row with the last line of its error, and the others still run; the exit
# code is then 1.
#
# Figures taken on a busy machine are not results: with a 1-minute load
# average above MAX_LOAD (default 1.5) at the start, it refuses to run; if
# other processes used more than MAX_OTHER cores on average during the run
# (default 0.15: /proc/stat's busy time minus this script's own children),
# the table is printed but marked as not a result and the exit code is 3.
# Neither can see a busy host under this VM: the header also gives a CPU
# probe at the start and the end (bench/lib/cpu-probe.sh: sha256 on one
# core, then on two at once), to compare runs on equal machines only.
#
# The scripts share one seed store ($BENCH_DIR/seed: the lock's files,
# downloaded once) and the no-op and push scripts one build cache
# ($BENCH_DIR/build-cache), so the lock is fetched once and assembled from
# scratch once outside the timed build comparison.
#
# Environment: RUNS (passed on; default 3 here), BENCH_DIR, MAX_LOAD, MAX_OTHER, DEB_RECIPE,
# BUILD_RECIPE (the build comparison's recipe; default r2lab-node),
# IMGBUILD (default target/release/imgbuild, built if missing), MIRRORS,
# BENCH_TIMEOUT, ONLY (space-separated names among solve fetch build noop
# push pypi: run only those).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
recipe=${1:-sonic-p4}
max_load=${MAX_LOAD:-1.5}
# What other processes may use during the run, in cores on average.
max_other=${MAX_OTHER:-0.15}
export RUNS=${RUNS:-3}
export BENCH_DIR_ROOT=${BENCH_DIR:-${TMPDIR:-/tmp}/imgbuild-bench}
out=$BENCH_DIR_ROOT/all
mkdir -p "$out"

load1() { cut -d' ' -f1 /proc/loadavg; }
above() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }

. "$here/bench/lib/cpu-probe.sh"
start_load=$(cut -d' ' -f1-3 /proc/loadavg)
if above "$(load1)" "$max_load"; then
    echo "bench/all.sh: load average $start_load is above $max_load: not measuring (figures taken under load are not results)" >&2
    exit 3
fi

export IMGBUILD=${IMGBUILD:-$here/target/release/imgbuild}
if [ ! -x "$IMGBUILD" ]; then
    (cd "$here" && cargo build --release --locked --quiet)
fi

start_probe=$(cpu_probe)
export BENCH_SUMMARY=$out/summary.tsv
: >"$BENCH_SUMMARY"
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# CPU seconds the whole machine has spent busy (/proc/stat, USER_HZ ticks),
# and those of this script's own finished children (bash's `times`): what
# other processes used during the run is the difference. The load average
# cannot say it: the builds measured here keep two cores busy themselves.
hz=$(getconf CLK_TCK)
busy_s() { awk -v hz="$hz" '/^cpu / { print ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat; }
# `times` runs in this shell (in a $(...) subshell it would see no children).
own_s() { times >"$out/times.txt"; awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); s += t[1] * 60 + t[2] } print s }' "$out/times.txt"; }
own_s >"$out/own0.txt"
busy0=$(busy_s) own0=$(cat "$out/own0.txt") wall0=$(date +%s.%N)
status=0
export SEED=$BENCH_DIR_ROOT/seed BUILD_CACHE=$BENCH_DIR_ROOT/build-cache
run() { # NAME SCRIPT ARGS...
    local name=$1 rc=0 why; shift
    [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $name "* ]] || return 0
    echo "== $name ($(date -u +%H:%M:%S), load $(load1))" >&2
    # timeout signals the script's whole process group (servers included).
    BENCH_DIR="$BENCH_DIR_ROOT/$name" timeout -k 30 "${BENCH_TIMEOUT:-5400}" "$@" \
        >"$out/$name.txt" 2>"$out/$name.err" || rc=$?
    if [ "$rc" != 0 ]; then
        why=$(grep -v '^[[:space:]]*$' "$out/$name.err" | tail -n 1 | tr '\t|' '  ' | cut -c1-160)
        [ "$rc" = 124 ] && why="timed out after ${BENCH_TIMEOUT:-5400}s"
        echo "bench/all.sh: $name failed (exit $rc; see $out/$name.err): $why" >&2
        # (no empty field: `read` would merge consecutive tabs)
        printf '%s\t%s\t%s\t%s\t%s\n' "$name: FAILED (exit $rc)" "${why:-no message}" "–" "–" \
            "see $out/$name.err" >>"$BENCH_SUMMARY"
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
run noop "$here/bench/noop.sh" "$here/locks/$deb_recipe.lock"
run push "$here/bench/push-vs-skopeo.sh" "$here/locks/$deb_recipe.lock"
run pypi "$here/bench/pypi-vs-uv.sh" "$here/recipes/$recipe.toml"
end_load=$(cut -d' ' -f1-3 /proc/loadavg)
own_s >"$out/own1.txt"
other=$(awk -v b0="$busy0" -v b1="$(busy_s)" -v o0="$own0" -v o1="$(cat "$out/own1.txt")" -v w0="$wall0" -v w1="$(date +%s.%N)" \
    'BEGIN { o = (b1 - b0) - (o1 - o0); if (o < 0) o = 0; printf "%.1f %.2f", o, o / (w1 - w0) }')
other_s=${other% *} other_cores=${other#* }
end_probe=$(cpu_probe)

echo
echo "bench/all.sh $recipe (Debian: $deb_recipe) — $started, $(nproc) cores, RUNS=$RUNS"
echo "load average (1, 5, 15 min): start $start_load, end $end_load (the runs' own work included)"
echo "CPU used by other processes during the run: ${other_s}s, ${other_cores} cores on average (limit $max_other)"
echo "CPU probe (sha256 in memory): start $start_probe; end $end_probe"
echo
printf '| %s | %s | %s | %s | %s |\n' measure peer peer imgbuild "ratio / verdict"
printf '|---|---|---|---|---|\n'
while IFS=$'\t' read -r measure peer pf if ratio; do
    [[ $ratio =~ ^[0-9.]+$ ]] && ratio="$ratio×"
    printf '| %s | %s | %s | %s | %s |\n' "$measure" "$peer" "$pf" "$if" "$ratio"
done <"$BENCH_SUMMARY"
if above "$other_cores" "$max_other"; then
    echo
    echo "NOT A RESULT: other processes used ${other_cores} cores on average during the run (limit $max_other)."
    exit 3
fi
exit $status
