#!/usr/bin/env bash
# Nightly: rebuild every recipe that has a committed lock, from scratch, and
# prove it reproducible. Not part of .ci/run (it takes minutes per recipe and
# needs the live archive); run it from a scheduler on a machine like CI's.
#
#   ci/nightly.sh [RECIPE...]     (default: every locks/*.lock)
#
# For each recipe: the lock must be fresh for the recipe (`solve --locked`),
# the store is filled from the lock (`fetch`, verified), the image is built
# offline (`--offline build`) and built twice more and compared (`verify`).
# Artifacts end up in out/RECIPE/ with manifest.json listing their sha256.
set -euo pipefail
cd "$(dirname "$0")/.."

./ci/setup.sh
cargo build --release --locked
ib=target/release/imgbuild

recipes=("$@")
if [ ${#recipes[@]} -eq 0 ]; then
  for lock in locks/*.lock; do recipes+=("$(basename "$lock" .lock)"); done
fi
mkdir -p out/nightly
for r in "${recipes[@]}"; do
  echo "== $r"
  # Drift: what an update would move tonight (exit 1 = updates; not a failure).
  "$ib" outdated "$r" --json >"out/nightly/$r.drift.json" || [ $? -eq 1 ]
  "$ib" outdated "$r" >"out/nightly/$r.drift.txt" || true
  "$ib" solve --locked "$r"
  "$ib" fetch "$r"
  "$ib" --offline build "$r"
  "$ib" --offline verify "$r"
done

# The long run of the parser property tests (the default suite runs a few
# hundred cases per parser; see docs/security.md).
IMGBUILD_FUZZ_CASES=20000 cargo test --locked --test parser_fuzz

# r2lab-node built as root and as a user with a subuid range: same bytes
# (the default suite proves it on a fixture; this is the real image).
cargo test --locked --test rootless_build -- --ignored --test-threads 1
