# Shared by the bench/*.sh scripts (sourced, not run): a loopback mirror made
# of exactly the package files of a lock, and a timing helper.
#
#   mirror_setup LOCK WORK   seeds WORK/seed with `imgbuild fetch` (network
#                            only for missing files), builds WORK/mirror
#                            (hard links + a flat unsigned `Packages`), a
#                            bench workspace WORK/ws whose recipe points every
#                            source at a named archive, and writes
#                            WORK/apt-packages.txt (NAME:ARCH=VERSION per line),
#                            WORK/arches.txt, WORK/mirrors.txt.
#   mirror_serve WORK        serves WORK/mirror on 127.0.0.1; sets MIRROR_URL
#                            (http://127.0.0.1:PORT) and stops it on exit.
#   time_cmd LABEL DIR PREP -- CMD...
#                            PREP then CMD (in DIR) $runs times; sets
#                            RESULT_S / RESULT_CPU / RESULT_MIB to the medians
#                            of wall, user+sys and peak RSS.
#   ratio A B                A / B with two decimals.
#
# Needs: $imgbuild (the binary), $runs, python3, curl, /usr/bin/time. No
# archive host name is written anywhere: the seed step uses imgbuild's usual
# mirror configuration (MIRRORS="NAME=URL ...", IMGBUILD_MIRROR_<NAME>, or
# the host's apt sources).

TIME=/usr/bin/time

mirror_setup() {
    local lock=$1 work=$2 name ws
    name=$(basename "$lock" .lock)
    ws=$(dirname "$(dirname "$lock")")
    [ -f "$lock" ] || { echo "no lock at $lock" >&2; exit 2; }
    [ -f "$ws/recipes/$name.toml" ] || { echo "no recipe $ws/recipes/$name.toml for $lock" >&2; exit 2; }
    mkdir -p "$work"
    local seed_args=(-C "$ws" fetch "$name" --vendor "$work/seed" --quiet)
    for m in ${MIRRORS:-}; do seed_args+=(--mirror "$m"); done
    [ -n "${IMPORT:-}" ] && seed_args+=(--import "$IMPORT")
    echo "seeding $work/seed (imgbuild fetch; network only for missing files) ..." >&2
    "$imgbuild" "${seed_args[@]}"

    rm -rf "$work/mirror" "$work/ws"
    mkdir -p "$work/mirror" "$work/ws/recipes/keys" "$work/ws/locks"
    python3 - "$lock" "$work" <<'PY'
import os, sys, tomllib
from pathlib import Path

lock_path, work = Path(sys.argv[1]), Path(sys.argv[2])
lock = tomllib.load(open(lock_path, "rb"))
mirror, seed = work / "mirror", work / "seed" / "sha256"
sources = sorted({p["source"] for p in lock.get("package", [])})
archive = {s: f"bench-{i}" for i, s in enumerate(sources)}
stanzas, specs, arches = [], [], {lock["recipe"]["architecture"]}
for p in lock.get("package", []):
    rel = f"{archive[p['source']]}/{p['filename'].lstrip('./')}"
    dest = mirror / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        os.link(seed / p["sha256"][:2] / p["sha256"], dest)
    stanzas.append(
        f"Package: {p['name']}\nVersion: {p['version']}\nArchitecture: {p['architecture']}\n"
        f"Filename: {rel}\nSize: {p['size']}\nSHA256: {p['sha256']}\nDescription: bench\n")
    arch = p["architecture"] if p["architecture"] != "all" else lock["recipe"]["architecture"]
    arches.add(arch)
    specs.append(f"{p['name']}:{arch}={p['version']}")
(mirror / "Packages").write_text("\n".join(stanzas))
(work / "apt-packages.txt").write_text("\n".join(specs) + "\n")
(work / "arches.txt").write_text(" ".join(sorted(arches)) + "\n")
(work / "mirrors.txt").write_text("".join(f"{a}\n" for a in archive.values()))
# Same name as the original recipe, so the copied lock is found; every source
# becomes a named archive, pointed at the loopback mirror by --mirror.
(work / "ws/recipes/keys/unused.pgp").write_bytes(b"")
recipe = [f'architecture = "{lock["recipe"]["architecture"]}"', 'packages = ["bench"]', ""]
for s in sources:
    recipe += ["[[source]]", f'name = "{s}"', f'archive = "{archive[s]}"', 'suite = "/"',
               "components = []", 'keyring = "keys/unused.pgp"', "priority = 500", ""]
(work / f"ws/recipes/{lock_path.stem}.toml").write_text("\n".join(recipe))
PY
    cp "$lock" "$work/ws/locks/$name.lock"
}

mirror_serve() {
    local work=$1 port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    python3 -m http.server --bind 127.0.0.1 --directory "$work/mirror" "$port" >"$work/http.log" 2>&1 &
    MIRROR_PID=$!
    trap 'kill "$MIRROR_PID" 2>/dev/null || true' EXIT
    for _ in $(seq 50); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/Packages" 2>/dev/null && break
        sleep 0.1
    done
    MIRROR_URL=http://127.0.0.1:$port
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

time_cmd() {
    local label=$1 dir=$2 prep=$3; shift 4
    local ts=() cs=() ms=() i s kb u sy
    for ((i = 0; i < runs; i++)); do
        eval "$prep"
        if ! (cd "$dir" && $TIME -f '%e %M %U %S' -o "$work/t" "$@") >"$work/$label.out" 2>&1; then
            echo "$label failed:" >&2; tail -n 30 "$work/$label.out" >&2; return 1
        fi
        read -r s kb u sy <"$work/t"
        ts+=("$s"); ms+=("$kb"); cs+=("$(awk -v u="$u" -v s="$sy" 'BEGIN { print u + s }')")
    done
    RESULT_S=$(printf '%s\n' "${ts[@]}" | median)
    RESULT_CPU=$(printf '%s\n' "${cs[@]}" | median)
    RESULT_MIB=$(($(printf '%s\n' "${ms[@]}" | median) / 1024))
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
