# shellcheck shell=bash
# summary MEASURE PEER PEER_FIGURE IMGBUILD_FIGURE RATIO: one row for
# bench/all.sh's table, appended to $BENCH_SUMMARY when it is set (a
# script run on its own prints only its own report).
summary() {
    [ -n "${BENCH_SUMMARY:-}" ] || return 0
    printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$BENCH_SUMMARY"
}
