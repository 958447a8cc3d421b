#!/usr/bin/env bash
# Solve the same recipe with apt (simulation) and with imgbuild; compare wall
# time and peak RSS, cold and warm.
#
#   bench/solve-vs-apt.sh [RECIPE]        (default: recipes/sonic-p4.toml)
#
# apt runs against a private APT_CONFIG in $BENCH_DIR (default
# /tmp/imgbuild-bench/<recipe>): its own sources list generated from the
# recipe's [[source]] entries, its own lists, cache and an EMPTY dpkg status
# (nothing installed), pin priorities equal to the recipe's priorities, and
# the recipe's keyrings as `signed-by`. The host's apt state is not touched.
#
# Archive URLs are configuration, never written in this repository. For an
# archive NAME (`debian`, `debian-security`, ...) the URL is taken from
# $IMGBUILD_MIRROR_<NAME> (upper case, `-` -> `_`), else from the host's apt
# sources (the URI whose last path component is NAME). Sources without a URL
# (e.g. the upstream Kubernetes repository here) are skipped with a warning.
#
# Modes:
#   cold = apt's binary caches (pkgcache.bin, srcpkgcache.bin) removed, so
#          apt re-parses every Packages list (what a first solve costs);
#   warm = caches present (a second solve).
# `apt-get update` (network) is timed once and reported separately.
#
# Environment: BENCH_DIR, RUNS (default 3, the median is reported), REFRESH=1
# to re-run apt-get update, IMGBUILD (default target/release/imgbuild).
set -euo pipefail
. "$(dirname "$0")/lib/summary.sh"

here=$(cd "$(dirname "$0")/.." && pwd)
recipe=${1:-$here/recipes/sonic-p4.toml}
recipe=$(cd "$(dirname "$recipe")" && pwd)/$(basename "$recipe")
name=$(basename "$recipe" .toml)
work=${BENCH_DIR:-${TMPDIR:-/tmp}/imgbuild-bench/$name}
runs=${RUNS:-3}
imgbuild=${IMGBUILD:-$here/target/release/imgbuild}
TIME=/usr/bin/time

for tool in apt-get python3 "$TIME"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done

mkdir -p "$work"/{etc/apt.conf.d,etc/preferences.d,state/lists/partial,cache/archives/partial,log}
: >"$work/state/status"

# --- 1. Recipe -> sources.list, preferences, package list (python: TOML) ----
python3 - "$recipe" "$work" <<'PY'
import glob, os, re, sys, tomllib
from pathlib import Path

recipe, work = Path(sys.argv[1]), Path(sys.argv[2])

def load(path):
    r = tomllib.load(open(path, "rb"))
    srcs, pkgs, base = [], [], {}
    if "extends" in r:
        base = load(path.parent / f"{r['extends']}.toml")
        srcs, pkgs = list(base["source"]), list(base["packages"])
    for s in r.get("source", []):
        s = dict(s); s["keyring"] = str((path.parent / s["keyring"]).resolve()); srcs.append(s)
    pkgs += [p for p in r.get("packages", []) if p not in pkgs]
    return {"source": srcs, "packages": pkgs,
            "architecture": r.get("architecture", base.get("architecture", "amd64")),
            "essential": r.get("essential", base.get("essential", True)),
            "recommends": r.get("recommends", base.get("recommends", False))}

def host_uris():
    uris = []
    for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        uris += [w for l in open(f) if l.lower().startswith("uris:") for w in l.split(":", 1)[1].split()]
    for f in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        if os.path.exists(f):
            for l in open(f):
                w = re.sub(r"\[[^]]*\]", "", l.split("#", 1)[0]).split()
                if len(w) >= 2 and w[0] == "deb":
                    uris.append(w[1])
    out = {}
    for u in uris:
        out.setdefault(u.rstrip("/").rsplit("/", 1)[-1], u.rstrip("/"))
    return out

r = load(recipe)
hosts = host_uris()
lines, prefs, used = [], [], []
for s in r["source"]:
    a = s.get("archive")
    url = os.environ.get("IMGBUILD_MIRROR_" + a.upper().replace("-", "_")) if a else s.get("url")
    url = url or hosts.get(a)
    if not url or not os.path.exists(s["keyring"]):
        print(f"warning: source {s['name']} skipped (no URL for `{a}` or no keyring)", file=sys.stderr)
        continue
    opts = f"[arch={r['architecture']} signed-by={s['keyring']}]"
    if s["suite"] == "/":
        lines.append(f"deb {opts} {url.rstrip('/')}/ /")
        pin = f"origin {url.split('/')[2]}"
    else:
        lines.append(f"deb {opts} {url} {s['suite']} {' '.join(s.get('components', ['main']))}")
        pin = f"release n={s['suite']}"
    prefs.append(f"Package: *\nPin: {pin}\nPin-Priority: {s.get('priority', 500)}\n")
    used.append((s["name"], s.get("priority", 500), s["suite"]))
(work / "etc/sources.list").write_text("\n".join(lines) + "\n")
(work / "etc/preferences").write_text("\n".join(prefs))
# apt-get takes names, not relations: first alternative, version ops dropped
# (apt picks its candidate by pin, then version), `(= v)` kept as name=v.
names = []
for p in r["packages"]:
    m = re.match(r"\s*([^\s(|]+)\s*(?:\(\s*(\S+)\s*([^\s)]+)\s*\))?", p.split("|")[0])
    names.append(f"{m[1]}={m[3]}" if m[2] == "=" else m[1])
(work / "packages.txt").write_text("\n".join(names) + "\n")
top = max(p for _, p, _ in used)
(work / "essential-suites.txt").write_text(
    "".join(f"{suite}\n" for _, p, suite in used if p == top) if r["essential"] else "")
(work / "flags.txt").write_text("" if r["recommends"] else "--no-install-recommends\n")
(work / "arch.txt").write_text(r["architecture"] + "\n")
PY

arch=$(cat "$work/arch.txt")
cat >"$work/apt.conf" <<EOF
Dir "/";
Dir::State "$work/state/";
Dir::State::status "$work/state/status";
Dir::Cache "$work/cache/";
Dir::Log "$work/log/";
Dir::Etc "$work/etc/";
Dir::Etc::sourcelist "$work/etc/sources.list";
Dir::Etc::sourceparts "-";
Dir::Etc::preferences "$work/etc/preferences";
Dir::Etc::preferencesparts "$work/etc/preferences.d/";
Dir::Etc::parts "$work/etc/apt.conf.d/";
Dir::Etc::trustedparts "$work/etc/trusted.gpg.d/";
APT::Architecture "$arch";
APT::Architectures { "$arch"; };
Acquire::Languages "none";
Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";
Debug::NoLocking "true";
EOF
export APT_CONFIG=$work/apt.conf

# --- 2. apt-get update (network, once) ------------------------------------
# Lists of another recipe's sources (the same BENCH_DIR reused) are stale:
# refresh whenever the generated sources.list differs from the last update's.
if [ "${REFRESH:-0}" = 1 ] || ! ls "$work"/state/lists/*_Packages* >/dev/null 2>&1 ||
    ! cmp -s "$work/etc/sources.list" "$work/state/sources.list.updated"; then
    rm -f "$work"/state/lists/*_Packages* "$work"/state/lists/*Release*
    echo "apt-get update into $work/state/lists ..." >&2
    $TIME -f '%e %M' -o "$work/update.time" apt-get -q update >"$work/update.log" 2>&1 ||
        { cat "$work/update.log" >&2; exit 1; }
    read -r upd_s upd_kb <"$work/update.time"
    echo "apt-get update: ${upd_s}s, peak RSS $((upd_kb / 1024)) MiB" >&2
    cp "$work/etc/sources.list" "$work/state/sources.list.updated"
fi

# Essential + Priority: required, from the highest-priority suites only (as the
# recipe's `essential = true` means), arch-native or all.
essential=()
if [ -s "$work/essential-suites.txt" ]; then
    mapfile -t essential < <(
        while read -r suite; do
            for f in "$work"/state/lists/*_dists_"${suite}"_*binary-"${arch}"_Packages; do
                [ -e "$f" ] && cat "$f" && echo
            done
        done <"$work/essential-suites.txt" |
            awk -v RS= -v FS='\n' '
                /\nEssential: yes/ || /\nPriority: required/ { sub(/^Package: /, "", $1); print $1 }' |
            sort -u)
fi
mapfile -t pkgs <"$work/packages.txt"
mapfile -t flags <"$work/flags.txt"

# --- 3. timing helpers (time_cmd, ratio) -------------------------------------
. "$(dirname "$0")/lib/loopback-mirror.sh"

apt_solve=(apt-get -s -q -o Debug::NoLocking=1 "${flags[@]}" install "${essential[@]}" "${pkgs[@]}")
drop_apt_cache='rm -f "$work"/cache/*.bin'

time_cmd apt-cold "$work" "$drop_apt_cache" -- "${apt_solve[@]}"
apt_cold_s=$RESULT_S apt_cold_c=$RESULT_CPU apt_cold_m=$RESULT_MIB
time_cmd apt-warm "$work" ":" -- "${apt_solve[@]}"
apt_warm_s=$RESULT_S apt_warm_c=$RESULT_CPU apt_warm_m=$RESULT_MIB
inst=$(grep -c '^Inst ' "$work/apt-warm.out" || true)
grep '^Inst ' "$work/apt-warm.out" | awk '{print $2, substr($3, 2)}' | sort >"$work/apt-plan.txt"

# --- 4. imgbuild -------------------------------------------------------------
# Same recipe, same sources (mirrors from the same configuration), in a
# scratch workspace so the repository's locks are not touched. The indexes are
# fetched and verified once, untimed (apt's `update` above is untimed too).
# cold = imgbuild's decompressed-index cache dropped (it re-inflates the
#        verified .xz files, as apt re-parses its lists without pkgcache.bin);
# warm = cache present. Both run --offline: no network in the timed part, and
# the lock is deleted first so every run solves and writes it.
ib_ws=$work/imgbuild-ws
rm -rf "$ib_ws" && mkdir -p "$ib_ws/locks" && cp -r "$(dirname "$recipe")" "$ib_ws/recipes"
export IMGBUILD_CACHE=$work/imgbuild-cache
"$imgbuild" -C "$ib_ws" -q solve "$name"
ib_lock="$ib_ws/locks/$name.lock"
ib_solve=("$imgbuild" -C "$ib_ws" --offline -q solve "$name")
time_cmd imgbuild-cold "$work" "rm -rf \"\$IMGBUILD_CACHE/indexes/plain\" \"\$ib_lock\"" -- "${ib_solve[@]}"
ib_cold_s=$RESULT_S ib_cold_c=$RESULT_CPU ib_cold_m=$RESULT_MIB
time_cmd imgbuild-warm "$work" "rm -f \"\$ib_lock\"" -- "${ib_solve[@]}"
ib_warm_s=$RESULT_S ib_warm_c=$RESULT_CPU ib_warm_m=$RESULT_MIB
python3 - "$ib_lock" >"$work/imgbuild-plan.txt" <<'PY'
import sys, tomllib
for p in tomllib.load(open(sys.argv[1], "rb"))["package"]:
    print(p["name"], p["version"])
PY
sort -o "$work/imgbuild-plan.txt" "$work/imgbuild-plan.txt"
differ=""
if cmp -s "$work/apt-plan.txt" "$work/imgbuild-plan.txt"; then
    same="identical to apt's plan"
else
    differ=" — plans DIFFER"
    same="DIFFERS from apt's plan: diff $work/apt-plan.txt $work/imgbuild-plan.txt"
fi

# --- 5. report ---------------------------------------------------------------
ratio() { # imgbuild / apt
    if [[ $1 == n/a || $2 == n/a ]]; then echo n/a; else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; fi
}
echo
echo "recipe: $name  ($(wc -l <"$work/packages.txt") requirements + ${#essential[@]} essential/required names; apt plans $inst packages; median of $runs runs)"
row() { printf '%-16s %-5s %8s %8s %13s %9s %9s %9s\n' "$@"; }
row tool mode wall_s cpu_s peak_rss_MiB wall/apt cpu/apt rss/apt
row "apt-get -s" cold "$apt_cold_s" "$apt_cold_c" "$apt_cold_m" 1.00 1.00 1.00
row "apt-get -s" warm "$apt_warm_s" "$apt_warm_c" "$apt_warm_m" 1.00 1.00 1.00
row "imgbuild solve" cold "$ib_cold_s" "$ib_cold_c" "$ib_cold_m" "$(ratio "$ib_cold_s" "$apt_cold_s")" \
    "$(ratio "$ib_cold_c" "$apt_cold_c")" "$(ratio "$ib_cold_m" "$apt_cold_m")"
row "imgbuild solve" warm "$ib_warm_s" "$ib_warm_c" "$ib_warm_m" "$(ratio "$ib_warm_s" "$apt_warm_s")" \
    "$(ratio "$ib_warm_c" "$apt_warm_c")" "$(ratio "$ib_warm_m" "$apt_warm_m")"
echo "imgbuild's lock: $(wc -l <"$work/imgbuild-plan.txt") packages, $same"
echo "apt's plan: $work/apt-plan.txt"
summary "solve $name, cold (wall)$differ" "apt-get -s" "${apt_cold_s}s" "${ib_cold_s}s" "$(ratio "$ib_cold_s" "$apt_cold_s")"
summary "solve $name, cold (RSS)" "apt-get -s" "${apt_cold_m} MiB" "${ib_cold_m} MiB" "$(ratio "$ib_cold_m" "$apt_cold_m")"
summary "solve $name, warm (wall)" "apt-get -s" "${apt_warm_s}s" "${ib_warm_s}s" "$(ratio "$ib_warm_s" "$apt_warm_s")"
summary "solve $name, warm (RSS)" "apt-get -s" "${apt_warm_m} MiB" "${ib_warm_m} MiB" "$(ratio "$ib_warm_m" "$apt_warm_m")"
