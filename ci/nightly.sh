#!/usr/bin/env bash
# The nightly pipeline: refresh each lock against tonight's archive, build,
# prove the build reproducible, publish, share the store, and write one
# report. One command, idempotent: run it twice and the second run rebuilds
# and uploads nothing. Not part of .ci/run (minutes per recipe, live archive).
#
#   ci/nightly.sh [RECIPE...]        (default: every locks/*.lock)
#
# Per recipe, in a git work tree on branch nightly/YYYYMMDD (never the
# checkout you run it from; made from its HEAD):
#   solve    imgbuild solve --update RECIPE; the new lock committed on the branch
#   drift    out/nightly/RECIPE/drift.{md,json}: what moved old -> new, from
#            which source, security or not, the Debian source package
#   check    the registry already has tag lock-<12 hex of the lock> and
#            `nightly` points at the same image: unchanged, nothing is fetched,
#            built or uploaded, and the report says so
#   fetch    imgbuild fetch RECIPE (verified into the vendor store)
#   build    imgbuild --offline build RECIPE
#   verify   imgbuild --offline verify RECIPE: two more builds, bit-identical;
#            a difference fails the recipe and nothing is published, so
#            `nightly` stays on the last reproducible image
#   publish  imgbuild publish --no-build RECIPE REF --tag nightly --tag YYYYMMDD
#            (+ the lock tag and the recipe's version), the drift report attached
#   store    imgbuild vendor push STORE_REF RECIPE (when this imgbuild has it)
# Then out/nightly/REPORT.md (one page, for a person) and REPORT.json, and
# the long checks (the parser fuzz long run, the real rootless build).
#
# Exit status:
#   0  every recipe published or unchanged, long checks passed (or skipped)
#   1  a recipe failed a stage other than verify (see REPORT.md and its log)
#   2  usage or configuration error: nothing was done
#   3  a build was not reproducible (and no recipe failed otherwise)
#   4  only the long checks failed
#
# Configuration, all from the environment (the repository names no host):
#   NIGHTLY_REGISTRY     HOST[:PORT][/PATH]; recipe R goes to $NIGHTLY_REGISTRY/R.
#                        Required, unless NIGHTLY_PUBLISH=0 (build and verify only).
#   NIGHTLY_STORE_REF    the vendor store's repository (default $NIGHTLY_REGISTRY/imgbuild-store)
#   NIGHTLY_AUTH_FILE    registry credentials, auth.json format (becomes REGISTRY_AUTH_FILE;
#                        IMGBUILD_REGISTRY_USERNAME/_PASSWORD work as well)
#   NIGHTLY_SIGNING_KEY  PEM private key signing provenance and image (IMGBUILD_SIGNING_KEY)
#   NIGHTLY_CA_FILE      extra CA certificates for the registry
#   NIGHTLY_INSECURE=1   plain http to the registry (imgbuild accepts it for loopback only)
#   NIGHTLY_MIRRORS      "NAME=URL ..." given as --mirror; IMGBUILD_MIRROR_<NAME> work too
#   NIGHTLY_DATE         YYYYMMDD of the night (default: today, UTC)
#   NIGHTLY_OUT          report directory (default out/nightly)
#   NIGHTLY_WORKTREE     the work tree (default $NIGHTLY_OUT/work)
#   NIGHTLY_FORCE=1      build and publish even when unchanged
#   NIGHTLY_LONG_CHECKS=0  skip the parser fuzz long run and the rootless build
#   NIGHTLY_REPO         the project (default: the checkout holding this script)
#   IMGBUILD_BIN         the imgbuild to run (default: cargo build --release here)
#   IMGBUILD_VENDOR      the vendor store (default: the project's vendor/, kept across nights)
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "${NIGHTLY_REPO:-$here}" && pwd) || exit 2
date=${NIGHTLY_DATE:-$(date -u +%Y%m%d)}
night=$(realpath -m "${NIGHTLY_OUT:-$repo/out/nightly}")
work=${NIGHTLY_WORKTREE:-$night/work}
branch="nightly/$date"
report_py="$here/ci/nightly_report.py"

die() { echo "nightly: $*" >&2; exit 2; }
[[ $date =~ ^[0-9]{8}$ ]] || die "NIGHTLY_DATE must be YYYYMMDD, not \`$date\`"
git -C "$repo" rev-parse --git-dir >/dev/null 2>&1 || die "$repo is not a git checkout"
command -v python3 >/dev/null || die "python3 is needed for the report"
publish=${NIGHTLY_PUBLISH:-1}
if [ "$publish" = 1 ] && [ -z "${NIGHTLY_REGISTRY:-}" ]; then
  die "set NIGHTLY_REGISTRY=HOST[:PORT][/PATH] (or NIGHTLY_PUBLISH=0 to build and verify only)"
fi
registry=${NIGHTLY_REGISTRY%/}
store_ref=${NIGHTLY_STORE_REF:-$registry/imgbuild-store}
[ -n "${NIGHTLY_AUTH_FILE:-}" ] && export REGISTRY_AUTH_FILE="$NIGHTLY_AUTH_FILE"
[ -n "${NIGHTLY_SIGNING_KEY:-}" ] && export IMGBUILD_SIGNING_KEY="$NIGHTLY_SIGNING_KEY"
export IMGBUILD_VENDOR="${IMGBUILD_VENDOR:-$repo/vendor}"
reg_opts=()
[ "${NIGHTLY_INSECURE:-0}" = 1 ] && reg_opts+=(--insecure)
[ -n "${NIGHTLY_CA_FILE:-}" ] && reg_opts+=(--ca-file "$NIGHTLY_CA_FILE")
mirror_opts=()
for m in ${NIGHTLY_MIRRORS:-}; do mirror_opts+=(--mirror "$m"); done

if [ -n "${IMGBUILD_BIN:-}" ]; then
  ib=$IMGBUILD_BIN
else
  (cd "$here" && ./ci/setup.sh && cargo build --release --locked) || die "building imgbuild failed"
  ib=$here/target/release/imgbuild
fi
"$ib" --version >/dev/null 2>&1 || die "cannot run $ib"

recipes=("$@")
if [ ${#recipes[@]} -eq 0 ]; then
  for lock in "$repo"/locks/*.lock; do
    [ -e "$lock" ] && recipes+=("$(basename "$lock" .lock)")
  done
fi
[ ${#recipes[@]} -gt 0 ] || die "no recipe given and no locks/*.lock in $repo"
for r in "${recipes[@]}"; do
  [[ $r =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "\`$r\` is not a recipe name"
  [ -e "$repo/recipes/$r.toml" ] || die "no recipes/$r.toml in $repo"
done

mkdir -p "$night" || die "cannot make $night"

# The work tree: branch nightly/DATE reset to the checkout's HEAD. Commits
# get the night's date, so a re-run of the same night makes the same commits.
base=$(git -C "$repo" rev-parse HEAD)
if [ -e "$work/.git" ]; then
  git -C "$work" checkout -q -f -B "$branch" "$base" || die "cannot reset $work to $branch"
else
  git -C "$repo" worktree prune
  git -C "$repo" worktree add -q -f -B "$branch" "$work" "$base" ||
    die "cannot make the work tree $work"
fi
stamp="${date:0:4}-${date:4:2}-${date:6:2}T00:00:00Z"
commit() {
  GIT_AUTHOR_DATE=$stamp GIT_COMMITTER_DATE=$stamp \
    git -C "$work" -c user.name="${GIT_AUTHOR_NAME:-imgbuild nightly}" \
    -c user.email="${GIT_AUTHOR_EMAIL:-nightly@imgbuild.invalid}" \
    -c commit.gpgsign=false commit -q "$@"
}

printf 'date=%s\nbase=%s\nimgbuild=%s\n' "$date" "$base" "$("$ib" --version)" >"$night/facts"
# The report is of this night only: drop the recipe directories of an
# earlier one (only those this script made: they hold a `facts` file).
for d in "$night"/*/; do
  [ -f "$d/facts" ] && rm -rf "$d"
done
rm -f "$night/long-checks.tsv"
has_vendor_push=0
"$ib" vendor push --help >/dev/null 2>&1 && has_vendor_push=1

# stage NAME CMD...: runs CMD with its output in $rdir/NAME.log, records
# NAME, ok/failed and the seconds in stages.tsv, prints one line.
stage() {
  local name=$1 t0=$EPOCHREALTIME rc secs status
  shift
  "$@" >"$rdir/$name.log" 2>&1
  rc=$?
  secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  status=ok
  [ $rc -eq 0 ] || status=failed
  printf '%s\t%s\t%s\n' "$name" "$status" "$secs" >>"$rdir/stages.tsv"
  echo "== $recipe: $name $status (${secs} s)"
  if [ $rc -ne 0 ]; then
    tail -n 30 "$rdir/$name.log" | sed 's/^/   | /'
  fi
  return $rc
}
fact() { printf '%s=%s\n' "$1" "$2" >>"$rdir/facts"; }
fail() {
  fact status "${2:-failed}"
  fact failed_stage "$1"
  [ -n "${3:-}" ] && fact reason "$3"
}

# One recipe, start to end; returns 0 published/unchanged, 1 failed, 3 not reproducible.
night_of() {
  recipe=$1
  rdir="$night/$recipe"
  rm -rf "$rdir" && mkdir -p "$rdir"
  fact recipe "$recipe"
  fact branch "$branch"
  local ws=$work lock="locks/$recipe.lock"
  if [ -e "$ws/$lock" ]; then cp "$ws/$lock" "$rdir/old.lock"; fi

  stage solve "$ib" -C "$ws" "${mirror_opts[@]}" solve "$recipe" --update || { fail solve; return 1; }
  cp "$ws/$lock" "$rdir/new.lock"
  if ! git -C "$ws" diff --quiet -- "$lock" 2>/dev/null || ! git -C "$ws" ls-files --error-unmatch "$lock" >/dev/null 2>&1; then
    git -C "$ws" add -- "$lock" && commit -m "nightly $date: refresh locks/$recipe.lock" -- "$lock" ||
      { fail solve failed "could not commit the lock on $branch"; return 1; }
  fi
  fact commit "$(git -C "$ws" rev-parse HEAD)"
  stage drift python3 "$report_py" drift "$rdir/old.lock" "$rdir/new.lock" "$rdir" || { fail drift; return 1; }
  local lock_tag="lock-$(sha256sum "$rdir/new.lock" | cut -c1-12)"
  fact lock_tag "$lock_tag"

  local ref=""
  if [ "$publish" = 1 ]; then
    ref="$registry/$recipe"
    fact reference "$ref"
    local have="" prev=""
    # Unchanged: this lock's publication exists and `nightly` names it.
    check() {
      have=$("$ib" pull --resolve "$ref:$lock_tag" "${reg_opts[@]}") &&
        prev=$("$ib" pull --resolve "$ref:nightly" "${reg_opts[@]}") &&
        echo "lock tag: ${have:-absent}; nightly: ${prev:-absent}"
    }
    stage check check || { fail check; return 1; }
    [ -n "$prev" ] && fact previous_nightly "$prev"
    if [ -n "$have" ] && [ "$have" = "$prev" ] && [ "${NIGHTLY_FORCE:-0}" != 1 ]; then
      fact status unchanged
      fact digest "$have"
      fact reason "unchanged: $ref:$lock_tag is already \`nightly\`; nothing rebuilt, nothing uploaded"
      return 0
    fi
  fi

  stage fetch "$ib" -C "$ws" "${mirror_opts[@]}" fetch "$recipe" || { fail fetch; return 1; }
  stage build "$ib" -C "$ws" --offline build "$recipe" || { fail build; return 1; }
  if ! stage verify "$ib" -C "$ws" --offline verify "$recipe"; then
    if grep -q "is not reproducible" "$rdir/verify.log"; then
      fact reproducible no
      fail verify not-reproducible "two builds differ (see verify.log); not published, \`nightly\` not moved"
      return 3
    fi
    fail verify
    return 1
  fi
  fact reproducible yes
  [ "$publish" = 1 ] || { fact status built; return 0; }

  # The report JSON on stdout goes to publish.json; progress to publish.log.
  publish_to() {
    "$ib" -C "$ws" publish --no-build "$recipe" "$ref" "${reg_opts[@]}" \
      --tag nightly --tag "$date" --revision "$(git -C "$ws" rev-parse HEAD)" \
      --attach "$rdir/drift.md" --attach "$rdir/drift.json" --json >"$rdir/publish.json"
  }
  stage publish publish_to || { fail publish; return 1; }
  if ! grep -q "\"$lock_tag\"" "$rdir/publish.json"; then
    fail publish failed "the publication's tags do not include $lock_tag (see publish.json)"
    return 1
  fi
  fact status published

  if [ $has_vendor_push = 1 ]; then
    stage store "$ib" -C "$ws" vendor push "$store_ref" "$recipe" "${reg_opts[@]}" ||
      { fact store "push to $store_ref failed (see store.log)"; fail store; return 1; }
    fact store "pushed to $store_ref"
  else
    fact store "store push skipped: this imgbuild has no vendor push"
    echo "== $recipe: store push skipped: this imgbuild has no vendor push"
  fi
  return 0
}

worst=0
for r in "${recipes[@]}"; do
  night_of "$r"
  rc=$?
  if [ $rc -eq 1 ]; then worst=1; elif [ $rc -eq 3 ] && [ $worst -eq 0 ]; then worst=3; fi
done

# The long runs (imgbuild's own tests, from its source checkout): the parser
# property tests with many cases (docs/security.md) and r2lab-node built as
# root and as a subuid user, compared byte for byte.
long_failed=0
if [ "${NIGHTLY_LONG_CHECKS:-1}" = 1 ]; then
  long() {
    local name=$1 t0=$EPOCHREALTIME rc
    shift
    (cd "$here" && "$@") >"$night/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$([ $rc -eq 0 ] && echo ok || echo failed)" \
      "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')" >>"$night/long-checks.tsv"
    [ $rc -eq 0 ] || long_failed=1
  }
  long parser-fuzz env IMGBUILD_FUZZ_CASES=20000 cargo test --locked --test parser_fuzz
  long rootless-build cargo test --locked --test rootless_build -- --ignored --test-threads 1
fi

python3 "$report_py" report "$night" || { echo "nightly: writing the report failed" >&2; exit 1; }
cat "$night/REPORT.md"
if [ $worst -eq 0 ] && [ $long_failed -eq 1 ]; then worst=4; fi
exit $worst
