# shellcheck shell=bash
# Sourced by the bench scripts that take a LOCK (fetch, build, noop, push).
#
#   lock_args KIND DEFAULT_RUNS [LOCK]
#
# sets `here` (the repository), `lock` (absolute; default
# locks/r2lab-node.lock), `name` (the lock's recipe), `lock_ws` (the
# workspace the lock is in: the directory above `locks/`), `work`
# ($BENCH_DIR, default /tmp/imgbuild-bench/KIND-NAME), `runs` ($RUNS, default
# DEFAULT_RUNS) and `imgbuild` ($IMGBUILD, default target/release/imgbuild).
lock_args() {
    local kind=$1 default_runs=$2
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    lock=${3:-$here/locks/r2lab-node.lock}
    lock=$(cd "$(dirname "$lock")" && pwd)/$(basename "$lock")
    name=$(basename "$lock" .lock)
    lock_ws=$(dirname "$(dirname "$lock")")
    work=${BENCH_DIR:-${TMPDIR:-/tmp}/imgbuild-bench/$kind-$name}
    runs=${RUNS:-$default_runs}
    imgbuild=${IMGBUILD:-$here/target/release/imgbuild}
}
