#!/usr/bin/env bash
# The no-op paths of imgbuild, against the absolute targets of issue 15
# (there is no peer tool: the table's peer column holds the target):
#
#   unchanged `imgbuild build`                    ≤ 50 ms
#   `imgbuild --offline solve NAME --locked`, warm ≤ 50 ms
#   a step-only change: `imgbuild build`          the steps + ≤ 10 s
#
#   bench/noop.sh [LOCK]        (default: locks/r2lab-node.lock; needs root)
#
# 1. Seed (untimed): `imgbuild fetch` of the lock into the seed store (SEED,
#    else $BENCH_DIR/seed; network only for missing files).
# 2. A scratch workspace $BENCH_DIR/ws: a copy of the lock's recipes/ (keys,
#    `extends` parents) and of the lock; the recipe gets one more `[[step]]`
#    at its end, writing /etc/imgbuild-bench, the step the third row edits
#    (steps are not in the lock's hash: the lock stays fresh). One untimed
#    build into $BENCH_DIR/out with a private cache (BUILD_CACHE, else
#    $BENCH_DIR/cache) so that the outputs and the package stage exist.
# 3. Timed, RUNS times each (medians; wall time read from bash's
#    EPOCHREALTIME, to the millisecond):
#    - `imgbuild --offline build NAME` again: nothing changed;
#    - `imgbuild --offline solve NAME --locked` (one untimed run first): the
#      lock audit from a warm index cache (imgbuild's own, INDEX_CACHE);
#    - the bench step's content changed to a new value, then `imgbuild
#      --offline build NAME`: the package stage comes from the cache, the
#      steps run again and every output is rewritten. The `steps` phase time
#      is read from the `phases:` line imgbuild prints; the row reports the
#      total, the steps and the difference, against "steps + ≤ 10 s".
#
# Environment: BENCH_DIR (default /tmp/imgbuild-bench/noop-<lock name>),
# RUNS (default 3), IMGBUILD (default target/release/imgbuild), SEED,
# BUILD_CACHE, MIRRORS, IMPORT.
set -euo pipefail
. "$(dirname "$0")/lib/summary.sh"

. "$(dirname "$0")/lib/lock-args.sh"
lock_args noop 3 "$@"
src_ws=$lock_ws
[ "$(id -u)" = 0 ] || { echo "run as root (the build runs maintainer scripts in a sandbox)" >&2; exit 2; }
for tool in python3 "$imgbuild"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done
. "$here/bench/lib/loopback-mirror.sh"
mkdir -p "$work"
seed_store "$lock"

# --- scratch workspace, one untimed build -----------------------------------------
ws=$work/ws
rm -rf "$ws" && mkdir -p "$ws/locks" && cp -r "$src_ws/recipes" "$ws/recipes"
cp "$lock" "$ws/locks/"
bench_step() { # CONTENT: (re)write the recipe with the bench step writing CONTENT
    { cat "$src_ws/recipes/$name.toml"
      printf '\n# Added by bench/noop.sh: the step its step-only change edits.\n'
      printf '[[step]]\nwrite = "/etc/imgbuild-bench"\ncontent = "%s\\n"\n' "$1"; } >"$ws/recipes/$name.toml"
}
bench_step "run 0"
export IMGBUILD_CACHE=${BUILD_CACHE:-$work/cache}
build=("$imgbuild" -C "$ws" --offline build "$name" --vendor "$SEED_DIR" --out "$work/out")
echo "building $name once (untimed) ..." >&2
"${build[@]}" >"$work/first-build.out" 2>&1 || { tail -n 30 "$work/first-build.out" >&2; exit 1; }

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() { # LABEL CMD...: runs CMD once; prints its wall time in ms; output in $work/LABEL.out
    local label=$1 t0 t1; shift
    t0=$EPOCHREALTIME
    "$@" >"$work/$label.out" 2>&1 || { echo "$label failed:" >&2; tail -n 30 "$work/$label.out" >&2; return 1; }
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", (b - a) * 1000 }'
}
met() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t ? "met" : "NOT met") }'; }

# --- 1. unchanged build -------------------------------------------------------------
noop=()
for ((i = 0; i < runs; i++)); do noop+=("$(timed noop-build "${build[@]}")"); done
grep -q 'up to date' "$work/noop-build.out" ||
    { echo "the unchanged build was not a no-op:" >&2; cat "$work/noop-build.out" >&2; exit 1; }
noop_ms=$(printf '%s\n' "${noop[@]}" | median)

# --- 2. solve --locked, warm ------------------------------------------------------------
solve=(env IMGBUILD_CACHE="$INDEX_CACHE" "$imgbuild" -C "$ws" --offline solve "$name" --locked)
"${solve[@]}" >"$work/solve-first.out" 2>&1 || { cat "$work/solve-first.out" >&2; exit 1; }
locked=()
for ((i = 0; i < runs; i++)); do locked+=("$(timed solve-locked "${solve[@]}")"); done
locked_ms=$(printf '%s\n' "${locked[@]}" | median)

# --- 3. step-only change ------------------------------------------------------------
totals=() steps=() extras=()
for ((i = 1; i <= runs; i++)); do
    bench_step "run $i $EPOCHREALTIME"
    t=$(timed step-change "${build[@]}")
    grep -q 'cached package assembly' "$work/step-change.out" ||
        { echo "the step-only change did not reuse the package stage:" >&2; tail -n 30 "$work/step-change.out" >&2; exit 1; }
    # `  phases: ..., steps 0.4s (cpu 0.1s), ...`
    s=$(sed -n 's/^  phases: .*steps \([0-9.]*\)s.*/\1/p' "$work/step-change.out" | tail -n 1)
    [ -n "$s" ] || { echo "no steps phase in the build output:" >&2; cat "$work/step-change.out" >&2; exit 1; }
    s_ms=$(awk -v s="$s" 'BEGIN { printf "%.1f", s * 1000 }')
    totals+=("$t") steps+=("$s_ms") extras+=("$(awk -v a="$t" -v b="$s_ms" 'BEGIN { printf "%.1f", a - b }')")
done
step_ms=$(printf '%s\n' "${totals[@]}" | median)
steps_ms=$(printf '%s\n' "${steps[@]}" | median)
extra_ms=$(printf '%s\n' "${extras[@]}" | median)

# --- report ------------------------------------------------------------------------
ms() { awk -v v="$1" 'BEGIN { if (v < 1000) printf "%.0f ms", v; else printf "%.2f s", v / 1000 }'; }
# imgbuild prints phase times to 0.1 s.
tenths() { awk -v v="$1" 'BEGIN { printf "%.1f s", v / 1000 }'; }
echo
echo "lock: $name  (no-op paths; median of $runs runs; imgbuild only, against the issue's targets)"
row() { printf '%-38s %16s %26s %8s\n' "$@"; }
row measure target imgbuild verdict
row "unchanged build" "≤ 50 ms" "$(ms "$noop_ms")" "$(met "$noop_ms" 50)"
row "solve --locked, warm (offline)" "≤ 50 ms" "$(ms "$locked_ms")" "$(met "$locked_ms" 50)"
row "step-only change, total" "steps + ≤ 10 s" "$(ms "$step_ms")" ""
row "  of which the steps phase" "" "$(tenths "$steps_ms")" ""
row "  beyond the steps" "≤ 10 s" "$(ms "$extra_ms")" "$(met "$extra_ms" 10000)"
echo "last step-only build: $(tail -n 1 "$work/step-change.out")"
summary "no-op build $name (unchanged)" "target" "≤ 50 ms" "$(ms "$noop_ms")" "$(met "$noop_ms" 50)"
summary "solve $name --locked, warm (no-op)" "target" "≤ 50 ms" "$(ms "$locked_ms")" "$(met "$locked_ms" 50)"
summary "build $name, step-only change" "target" "steps + ≤ 10 s" \
    "$(ms "$step_ms") (steps $(tenths "$steps_ms"), +$(ms "$extra_ms"))" "$(met "$extra_ms" 10000)"
