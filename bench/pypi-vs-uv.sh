#!/usr/bin/env bash
# Resolve the same Python requirement set for the same target with imgbuild
# and with `uv pip compile`; wall time cold (empty caches) and warm (second
# run, caches kept), medians of RUNS, and the ratio imgbuild / uv.
#
#   bench/pypi-vs-uv.sh [RECIPE]        (default: recipes/sonic-p4.toml)
#
# The requirement set is the recipe's [python] (requirements, constraints);
# the target is its lock's image: python from the locked python3, glibc from
# the locked libc6 (bookworm: 3.11 / manylinux_2_36, x86_64). uv gets the
# same target with --python-version / --python-platform, so neither looks at
# the host's interpreter, and the same policy: wheels only (--only-binary
# :all:) except the recipe's allow-sdist names (--no-binary NAME, which uv
# builds to read their metadata). uv itself is installed from the index into a temp
# venv. The index is the `pypi` mirror (IMGBUILD_MIRROR_PYPI, else the host's
# pip configuration or pip's default) and is passed to uv explicitly, so both
# ask the same server; no URL is written in this repository.
#
# Environment: BENCH_DIR (default /tmp/imgbuild-bench/pypi), RUNS (default 3).
set -euo pipefail
. "$(dirname "$0")/lib/summary.sh"

here=$(cd "$(dirname "$0")/.." && pwd)
recipe=${1:-$here/recipes/sonic-p4.toml}
name=$(basename "$recipe" .toml)
lock=$here/locks/$name.lock
work=${BENCH_DIR:-${TMPDIR:-/tmp}/imgbuild-bench/pypi}
runs=${RUNS:-3}
mkdir -p "$work"

index=${IMGBUILD_MIRROR_PYPI:-${PIP_INDEX_URL:-$(pip3 config get global.index-url 2>/dev/null ||
    python3 -c 'from pip._internal.models.index import PyPI; print(PyPI.simple_url)')}}
export IMGBUILD_MIRROR_PYPI=$index

# The target, from the lock (as imgbuild derives it).
pyver=$(awk '/^name = "python3"$/{f=1;next} f&&/^version/{gsub(/"/,"",$3); split($3,v,"."); print v[1]"."v[2]; exit}' "$lock")
glibc=$(awk '/^name = "libc6"$/{f=1;next} f&&/^version/{gsub(/"/,"",$3); split($3,v,"-"); split(v[1],g,"."); print g[1]"_"g[2]; exit}' "$lock")
platform=x86_64-manylinux_$glibc

# The requirement set, from the recipe's [python] table.
python3 - "$recipe" "$work" <<'PY'
import sys, tomllib
spec = tomllib.load(open(sys.argv[1], "rb"))["python"]
open(f"{sys.argv[2]}/requirements.in", "w").write("\n".join(spec["requirements"]) + "\n")
open(f"{sys.argv[2]}/constraints.txt", "w").write("\n".join(spec.get("constraints", [])) + "\n")
open(f"{sys.argv[2]}/allow-sdist.txt", "w").write("".join(n + "\n" for n in spec.get("allow-sdist", [])))
PY

if [ ! -x "$work/venv/bin/uv" ]; then
    python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install -q --index-url "$index" uv
fi
uv=$work/venv/bin/uv
(cd "$here" && cargo build -q --release --example pypi-compile)
compile=${CARGO_TARGET_DIR:-$here/target}/release/examples/pypi-compile

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
time_imgbuild() { # $1 = cache dir
    local t0 t1
    t0=$(now)
    (cd "$here" && IMGBUILD_CACHE=$1 "$compile" "$recipe" "$lock" >"$work/imgbuild.txt" 2>/dev/null)
    t1=$(now)
    echo "$t1 - $t0" | bc
}
# imgbuild's policy for uv: wheels only, except the recipe's allow-sdist.
binary=(--only-binary :all:)
while read -r n; do [ -n "$n" ] && binary+=(--no-binary "$n"); done <"$work/allow-sdist.txt"
time_uv() { # $1 = cache dir
    local t0 t1
    t0=$(now)
    "$uv" pip compile -q --cache-dir "$1" --index-url "$index" \
        --python-version "$pyver" --python-platform "$platform" "${binary[@]}" \
        -c "$work/constraints.txt" "$work/requirements.in" -o "$work/uv.txt" 2>/dev/null
    t1=$(now)
    echo "$t1 - $t0" | bc
}

declare -A result
for tool in imgbuild uv; do
    cold=(); warm=()
    for _ in $(seq "$runs"); do
        cache=$(mktemp -d "$work/cache-$tool.XXXX")
        cold+=("$(time_$tool "$cache")")
        warm+=("$(time_$tool "$cache")")
        rm -rf "$cache"
    done
    result[$tool-cold]=$(printf '%s\n' "${cold[@]}" | median)
    result[$tool-warm]=$(printf '%s\n' "${warm[@]}" | median)
done

grep -v '^ *#' "$work/uv.txt" | sed 's/ .*//' | tr 'A-Z_' 'a-z-' | sort >"$work/uv.pins"
sort "$work/imgbuild.txt" >"$work/imgbuild.pins"
differ=""
cmp -s "$work/imgbuild.pins" "$work/uv.pins" || differ=" — pins differ"
echo "target: python $pyver, $platform; requirements: $(tr '\n' ' ' <"$work/requirements.in")"
printf '%-6s %10s %10s\n' "" imgbuild uv
for mode in cold warm; do
    i=${result[imgbuild-$mode]}; u=${result[uv-$mode]}
    printf '%-6s %9.3fs %9.3fs   ratio %.2fx\n' "$mode" "$i" "$u" "$(echo "$i / $u" | bc -l)"
    summary "Python resolution, $mode (wall)$differ" "uv pip compile" "$(printf '%.2fs' "$u")" "$(printf '%.2fs' "$i")" "$(printf '%.2f' "$(echo "$i / $u" | bc -l)")"
done
# Same answer? (uv lists the same pins, normalised names, no comments; a
# requirement the image's Debian packages satisfy is pinned by imgbuild at
# the Debian version, e.g. python3-six, where uv picks PyPI's newest.)
if diff -u "$work/imgbuild.pins" "$work/uv.pins" >"$work/pins.diff"; then
    echo "same pins: $(wc -l <"$work/imgbuild.pins") distributions"
else
    echo "pins differ (see $work/pins.diff):"; cat "$work/pins.diff"
fi
