# Shared by the bench/*.sh scripts (sourced, not run): a loopback mirror made
# of exactly the files of a lock, and a timing helper.
#
#   seed_store LOCK          `imgbuild fetch` of LOCK into SEED_DIR ($SEED,
#                            else $work/seed), a vendor store kept between
#                            runs (network only for missing files).
#   mirror_setup LOCK WORK   seed_store, then builds WORK/mirror:
#                            - <archive>/<filename> for every [[package]] and
#                              [[tool]] of the lock (hard links from the
#                              seed store), <archive> being the recipe source's
#                              `archive`: the real archive-relative layout;
#                            - <archive>/dists/<suite>/InRelease and the
#                              lock's indexes below it, from imgbuild's index
#                              cache (the lock's own signed files), so that
#                              `imgbuild fetch` of the real recipe and lock
#                              with `--mirror ARCHIVE=URL/ARCHIVE/` works even
#                              from a cold index cache. Where the cache never
#                              held the lock's InRelease (the archive moved on
#                              before this machine first fetched: a -security
#                              suite does within days), the suite's newest
#                              cached InRelease and the indexes it lists are
#                              served instead — what the seed step's fetch
#                              checked the lock against, as the archive does;
#                            - a flat, unsigned `Packages` at the root listing
#                              the same package files, for apt and mmdebstrap.
#                            Writes WORK/apt-packages.txt (the [[package]]s,
#                            NAME:ARCH=VERSION per line), WORK/apt-fetch.txt
#                            (packages and tools: every .deb the lock pins),
#                            WORK/arches.txt and WORK/archives.txt (the
#                            recipe's archive names, one a line).
#   mirror_serve WORK        serves WORK/mirror on 127.0.0.1 (Python's
#                            http.server, with a real server's listen
#                            backlog); sets MIRROR_URL
#                            (http://127.0.0.1:PORT) and stops it on exit.
#   mirror_args BASE         prints `--mirror` and `ARCHIVE=BASE/ARCHIVE/`, one
#                            a line, for every archive of the recipe.
#   time_cmd LABEL DIR PREP -- CMD...
#                            PREP, then $settle if set, then CMD (in DIR)
#                            $runs times; sets RESULT_S / RESULT_CPU /
#                            RESULT_MIB to the medians of wall, user+sys and
#                            peak RSS.
#   ratio A B                A / B with two decimals.
#
# Needs: $imgbuild (the binary), $runs, python3, curl, /usr/bin/time. No
# archive host name is written anywhere: the seed step uses imgbuild's usual
# mirror configuration (MIRRORS="NAME=URL ...", IMGBUILD_MIRROR_<NAME>, or
# the host's apt sources). INDEX_CACHE is imgbuild's index cache
# (IMGBUILD_CACHE, else the XDG default), used by the seed step.

TIME=/usr/bin/time
INDEX_CACHE=${IMGBUILD_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/imgbuild}

seed_store() { # LOCK: fetch it into $SEED_DIR (untimed; network only for missing files)
    local lock=$1 name ws
    name=$(basename "$lock" .lock)
    ws=$(dirname "$(dirname "$lock")")
    SEED_DIR=${SEED:-$work/seed}
    local seed_args=(-C "$ws" fetch "$name" --vendor "$SEED_DIR" --quiet)
    for m in ${MIRRORS:-}; do seed_args+=(--mirror "$m"); done
    [ -n "${IMPORT:-}" ] && seed_args+=(--import "$IMPORT")
    echo "seeding $SEED_DIR (imgbuild fetch; network only for missing files) ..." >&2
    IMGBUILD_CACHE=$INDEX_CACHE "$imgbuild" "${seed_args[@]}"
}

mirror_setup() {
    local lock=$1 work=$2 name ws
    name=$(basename "$lock" .lock)
    ws=$(dirname "$(dirname "$lock")")
    [ -f "$lock" ] || { echo "no lock at $lock" >&2; exit 2; }
    [ -f "$ws/recipes/$name.toml" ] || { echo "no recipe $ws/recipes/$name.toml for $lock" >&2; exit 2; }
    mkdir -p "$work"
    seed_store "$lock"

    rm -rf "$work/mirror" "$work/ws"
    mkdir -p "$work/mirror"
    python3 - "$lock" "$ws/recipes/$name.toml" "$work" "$INDEX_CACHE" "$SEED_DIR" <<'PY'
import os, shutil, sys, tomllib
from pathlib import Path

lock_path, recipe_path, work, cache, seed = map(Path, sys.argv[1:6])
lock = tomllib.load(open(lock_path, "rb"))
mirror, seed = work / "mirror", seed / "sha256"

def sources(path):
    """name -> [[source]] table of a recipe, its `extends` chain first."""
    r = tomllib.load(open(path, "rb"))
    out = sources(path.parent / f"{r['extends']}.toml") if "extends" in r else {}
    out.update({s["name"]: s for s in r.get("source", [])})
    return out

recipe = sources(recipe_path)
archive = {}
for s in lock.get("source", []):
    src = recipe.get(s["name"])
    if src is None:
        sys.exit(f"{lock_path}: source `{s['name']}` is not in {recipe_path}")
    if "archive" not in src:
        sys.exit(f"{recipe_path}: source `{s['name']}` has a literal url, not an `archive`: "
                 "the loopback mirror only stands in for named archives (--mirror ARCHIVE=URL)")
    archive[s["name"]] = src["archive"]

def fields(inrelease):
    """The first stanza's `Field: value` lines of a (clear-signed) InRelease."""
    out = {}
    for line in inrelease.read_text(errors="replace").splitlines():
        if line.startswith("-----BEGIN PGP SIGNED") or line.startswith("Hash:"):
            continue
        if not line.strip() and out:
            break
        if ":" in line and not line.startswith(" "):
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out

def newest_inrelease(suite):
    """The cached InRelease of `suite` (its Suite or Codename) with the latest Date."""
    from email.utils import parsedate_to_datetime
    best = None
    for f in sorted((cache / "inrelease" / "sha256").glob("*")):
        meta = fields(f)
        if suite not in (meta.get("Suite"), meta.get("Codename")):
            continue
        try:
            date = parsedate_to_datetime(meta.get("Date", ""))
        except (TypeError, ValueError):
            continue
        if best is None or date > best[0]:
            best = (date, f)
    return best and best[1]

def listed_indexes(inrelease):
    """(path, sha256) of every file the InRelease's SHA256 list names."""
    out, in_list = [], False
    for line in inrelease.read_text(errors="replace").splitlines():
        if not line.startswith(" "):
            in_list = line.startswith("SHA256:")
            continue
        parts = line.split()
        if in_list and len(parts) == 3:
            out.append((parts[2], parts[0]))
    return out

def place(src, dest):
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        return
    try:
        os.link(src, dest)
    except OSError:  # another file system
        shutil.copyfile(src, dest)

stanzas, seen, pkgs, every = [], set(), [], []
arches = {lock["recipe"]["architecture"]}
for section in ("package", "tool"):
    for p in lock.get(section, []):
        arch = p["architecture"] if p["architecture"] != "all" else lock["recipe"]["architecture"]
        spec = f"{p['name']}:{arch}={p['version']}"
        if section == "package":
            pkgs.append(spec)
        if (p["name"], p["architecture"], p["version"]) in seen:
            continue
        seen.add((p["name"], p["architecture"], p["version"]))
        rel = f"{archive[p['source']]}/{p['filename'].lstrip('./')}"
        place(seed / p["sha256"][:2] / p["sha256"], mirror / rel)
        stanzas.append(
            f"Package: {p['name']}\nVersion: {p['version']}\nArchitecture: {p['architecture']}\n"
            f"Filename: {rel}\nSize: {p['size']}\nSHA256: {p['sha256']}\nDescription: bench\n")
        arches.add(arch)
        every.append(spec)
# The lock's own signed files, where the audit of `imgbuild fetch` asks for
# them when its index cache lacks them (a flat source's: at the base).
for s in lock.get("source", []):
    suite = "" if s["suite"].endswith("/") else f"dists/{s['suite']}/"
    base = mirror / archive[s["name"]] / suite
    inrelease = cache / "inrelease" / "sha256" / s["inrelease-sha256"]
    indexes = [(ix["path"], ix["sha256"]) for ix in s.get("indexes", [])]
    if not inrelease.exists():
        # The archive has moved on since the lock (a -security suite does
        # within days) and this cache never held the lock's InRelease: the
        # seed step's `imgbuild fetch` then checked the lock against the
        # suite's current signed index, so that one is served, as the
        # archive would serve it, with the indexes it lists that are cached.
        inrelease = newest_inrelease(s["suite"])
        if inrelease is None:
            print(f"note: source `{s['name']}`: no InRelease of it in {cache}, not served",
                  file=sys.stderr)
        else:
            print(f"note: source `{s['name']}`: the lock's InRelease is not in {cache}; "
                  f"serving the newest cached one ({inrelease.name[:12]}…)", file=sys.stderr)
            indexes = listed_indexes(inrelease)
    if inrelease is not None:
        place(inrelease, base / "InRelease")
    for path, sha in indexes:
        f = cache / "indexes" / "sha256" / sha
        if f.exists():
            place(f, base / path)
            # Where a Release with `Acquire-By-Hash: yes` sends a client first.
            place(f, base / os.path.dirname(path) / "by-hash" / "SHA256" / sha)
(mirror / "Packages").write_text("\n".join(stanzas))
(work / "apt-packages.txt").write_text("\n".join(pkgs) + "\n")
(work / "apt-fetch.txt").write_text("\n".join(every) + "\n")
(work / "arches.txt").write_text(" ".join(sorted(arches)) + "\n")
(work / "archives.txt").write_text("".join(f"{a}\n" for a in sorted(set(archive.values()))))
PY
}

mirror_args() {
    local a
    while read -r a; do printf -- '--mirror\n%s=%s/%s/\n' "$a" "$1" "$a"; done <"$work/archives.txt"
}

mirror_serve() {
    local work=$1 port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # `python3 -m http.server`, with a listen backlog of 128 instead of its
    # 5: a real mirror's web server queues far more, and with 5 the 8
    # connections `imgbuild fetch --jobs 8` opens at once overflow it, and
    # one beyond it waits ~0.6 s for TCP to resend (runs of 0.5 or 1.05 s
    # by chance; no request is sent twice), while apt, one connection at a
    # time, never meets it.
    python3 -c '
import functools, http.server, sys
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])
Server(("127.0.0.1", int(sys.argv[1])), handler).serve_forever()
' "$port" "$work/mirror" >"$work/http.log" 2>&1 &
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
        if [ -n "${settle:-}" ]; then eval "$settle"; fi
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
