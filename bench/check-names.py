#!/usr/bin/env python3
"""Check that every package a recipe names exists in the recipe's real sources.

    bench/check-names.py [--mirror NAME=URL ...] [--cache DIR] recipes/NAME.toml ...

For each source of the recipe (after merging `extends`), fetches `InRelease`,
verifies it with `gpgv` against the recipe's keyring, fetches
`main/binary-<arch>/Packages.xz` (or `Packages.xz` for a flat repository),
checks its sha256 against the signed `Release`, and then checks each
requirement: for every alternative of `a (op v) | b`, which sources carry a
real package or a provider satisfying it, and at which version.

Archive URLs are configuration, never written in the repository. They come,
in this order, from `--mirror NAME=URL`, from the environment variable
`IMGBUILD_MIRROR_<NAME>` (upper case, `-` → `_`), or from the host's apt
configuration (`/etc/apt/sources.list.d/*.sources|*.list`,
`/etc/apt/sources.list`), where an archive's name is the last path component
of its URI (`.../debian`, `.../debian-security`).

Exit status: 0 if every requirement has an alternative satisfied by some
source, 1 otherwise. Sources that cannot be reached (no URL, no keyring) are
reported and their requirements marked UNCHECKED, which is not a failure.

Standard library only (plus `gpgv` on PATH).
"""

import argparse
import glob
import hashlib
import lzma
import os
import re
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

# --- dpkg version comparison (reference implementation, Policy 5.6.12) -----


def _order(c):
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if not c:
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _verrevcmp(a, b):
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split(v):
    epoch, _, rest = v.partition(":") if ":" in v else ("0", "", v)
    up, _, rev = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return int(epoch), up, rev


def vcmp(a, b):
    ea, ua, ra = _split(a)
    eb, ub, rb = _split(b)
    if ea != eb:
        return ea - eb
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


def satisfies(version, op, want):
    c = vcmp(version, want)
    return {
        "<<": c < 0,
        "<=": c <= 0,
        "<": c <= 0,
        "=": c == 0,
        ">=": c >= 0,
        ">": c >= 0,
        ">>": c > 0,
    }[op]


# --- relations --------------------------------------------------------------

REL = re.compile(
    r"^\s*(?P<name>[a-z0-9][a-z0-9+.\-]+)(?::(?P<arch>[a-z0-9-]+))?"
    r"\s*(?:\(\s*(?P<op><<|<=|>=|>>|=|<|>)\s*(?P<ver>[^\s)]+)\s*\))?\s*$"
)


def parse_alternatives(text):
    alts = []
    for part in text.split("|"):
        m = REL.match(part)
        if not m:
            raise ValueError(f"cannot parse relation `{part.strip()}` in `{text}`")
        alts.append((m["name"], m["op"], m["ver"]))
    return alts


# --- recipes ----------------------------------------------------------------


def load_recipe(path, seen=()):
    path = Path(path).resolve()
    if path in seen:
        raise ValueError(f"extends cycle at {path}")
    with open(path, "rb") as f:
        r = tomllib.load(f)
    sources, packages = [], []
    arch = r.get("architecture")
    if "extends" in r:
        parent = load_recipe(path.parent / f"{r['extends']}.toml", seen + (path,))
        sources += parent["sources"]
        packages += parent["packages"]
        arch = arch or parent["architecture"]
    for s in r.get("source", []):
        s = dict(s)
        s["keyring_path"] = (path.parent / s["keyring"]).resolve()
        sources.append(s)
    for p in r.get("packages", []):
        if p not in packages:
            packages.append(p)
    return {"name": path.stem, "architecture": arch or "amd64", "sources": sources, "packages": packages}


# --- mirrors ----------------------------------------------------------------


def host_mirrors():
    """archive name -> URI, from the host's apt sources (first one wins)."""
    uris = []
    for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for line in open(f, encoding="utf-8", errors="replace"):
            if line.lower().startswith("uris:"):
                uris += line.split(":", 1)[1].split()
    lists = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for f in lists:
        if not os.path.exists(f):
            continue
        for line in open(f, encoding="utf-8", errors="replace"):
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 2 and words[0] == "deb":
                uris.append(words[1])
    out = {}
    for u in uris:
        out.setdefault(u.rstrip("/").rsplit("/", 1)[-1], u.rstrip("/"))
    return out


def mirror_for(archive, cli):
    if archive in cli:
        return cli[archive]
    env = os.environ.get("IMGBUILD_MIRROR_" + archive.upper().replace("-", "_"))
    if env:
        return env.rstrip("/")
    return host_mirrors().get(archive)


# --- fetching and verifying -------------------------------------------------


def fetch(url, dest):
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    with urllib.request.urlopen(url, timeout=120) as r, open(tmp, "wb") as f:
        while chunk := r.read(1 << 20):
            f.write(chunk)
    tmp.rename(dest)
    return dest


def load_source(src, arch, mirror, cache):
    """Returns {name: [(version, source)]} and {virtual: [(provider, version|None, source)]}."""
    base = mirror.rstrip("/")
    flat = src["suite"] == "/"
    root = f"{base}/" if flat else f"{base}/dists/{src['suite']}/"
    key = hashlib.sha256(root.encode()).hexdigest()[:16]
    d = cache / f"{src['name']}-{key}"
    inrelease = fetch(root + "InRelease", d / "InRelease")
    v = subprocess.run(
        ["gpgv", "--keyring", str(src["keyring_path"]), str(inrelease)],
        capture_output=True,
        text=True,
    )
    if v.returncode != 0:
        raise RuntimeError(f"{src['name']}: InRelease signature check failed:\n{v.stderr}")
    signed = inrelease.read_text(encoding="utf-8", errors="replace")
    hashes, in_sha = {}, False
    for line in signed.splitlines():
        if line.startswith("SHA256:"):
            in_sha = True
            continue
        if in_sha and line.startswith(" "):
            h, size, p = line.split()
            hashes[p] = (h, int(size))
        elif in_sha:
            in_sha = False
    comps = [""] if flat else [f"{c}/binary-{arch}/" for c in src.get("components", ["main"])]
    real, virtual = {}, {}
    for comp in comps:
        rel = f"{comp}Packages.xz"
        if rel not in hashes:
            raise RuntimeError(f"{src['name']}: {rel} not listed in Release")
        want, size = hashes[rel]
        px = fetch(root + rel, d / rel.replace("/", "_"))
        data = px.read_bytes()
        if hashlib.sha256(data).hexdigest() != want or len(data) != size:
            px.unlink()
            raise RuntimeError(f"{src['name']}: {rel} does not match the signed Release")
        text = lzma.decompress(data).decode("utf-8", errors="replace")
        for stanza in text.split("\n\n"):
            f = {}
            for line in stanza.split("\n"):
                if line and not line[0].isspace() and ":" in line:
                    k, _, val = line.partition(":")
                    f[k] = val.strip()
            if "Package" not in f:
                continue
            if f.get("Architecture") not in (arch, "all"):
                continue
            real.setdefault(f["Package"], []).append((f["Version"], src["name"]))
            for p in filter(None, (x.strip() for x in f.get("Provides", "").split(","))):
                m = re.match(r"([^\s(]+)(?:\s*\(\s*=\s*([^\s)]+)\s*\))?", p)
                virtual.setdefault(m[1].split(":")[0], []).append((f["Package"], m[2], src["name"]))
    return real, virtual


# --- main -------------------------------------------------------------------


def check(recipe, cli_mirrors, cache):
    print(f"== {recipe['name']} ({recipe['architecture']})")
    real, virtual, unreachable, prio = {}, {}, [], {}
    for s in recipe["sources"]:
        prio[s["name"]] = s.get("priority", 500)
        url = mirror_for(s["archive"], cli_mirrors) if "archive" in s else s.get("url")
        if not url:
            unreachable.append(f"{s['name']}: no URL for archive `{s.get('archive')}` (use --mirror)")
            continue
        if not s["keyring_path"].exists():
            unreachable.append(f"{s['name']}: keyring {s['keyring']} missing")
            continue
        try:
            r, v = load_source(s, recipe["architecture"], url, cache)
        except Exception as e:  # noqa: BLE001 - report and go on
            unreachable.append(f"{s['name']}: {e}")
            continue
        for k, l in r.items():
            real.setdefault(k, []).extend(l)
        for k, l in v.items():
            virtual.setdefault(k, []).extend(l)
        print(f"   source {s['name']}: {sum(len(x) for x in r.values())} packages, InRelease signature OK")
    for u in unreachable:
        print(f"   source {u}  -> its packages are UNCHECKED")
    bad = 0
    for req in recipe["packages"]:
        results = []
        for name, op, ver in parse_alternatives(req):
            hits = [(v, s) for v, s in real.get(name, []) if not op or satisfies(v, op, ver)]
            provs = [
                (p, pv, s)
                for p, pv, s in virtual.get(name, [])
                if not op or (pv is not None and satisfies(pv, op, ver))
            ]
            if hits:
                best = max(prio[s] for _, s in hits)
                top = [(v, s) for v, s in hits if prio[s] == best]
                v, s = top[0]
                for x in top[1:]:
                    if vcmp(x[0], v) > 0:
                        v, s = x
                others = sorted({s2 for _, s2 in hits})
                results.append(("ok", f"{name}: {v} [{s}] (in {', '.join(others)})"))
            elif provs:
                who = sorted({f"{p} [{s}]" for p, _, s in provs})
                results.append(("virtual", f"{name}: virtual, provided by {', '.join(who)}"))
            elif name in real:
                have = sorted({f"{v} [{s}]" for v, s in real[name]})
                results.append(("version", f"{name}: no version {op} {ver}; have {', '.join(have)}"))
            else:
                results.append(("missing", f"{name}: not found"))
        status = "OK" if any(k == "ok" for k, _ in results) else None
        if status is None and any(k == "virtual" for k, _ in results):
            status = "VIRTUAL"
        if status is None:
            status = "UNCHECKED" if unreachable else "MISSING"
            if status == "MISSING":
                bad += 1
        print(f"   {status:9} {req:40} " + " | ".join(t for _, t in results))
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("recipes", nargs="+")
    ap.add_argument("--mirror", action="append", default=[], metavar="NAME=URL")
    ap.add_argument("--cache", default=os.environ.get("TMPDIR", "/tmp") + "/imgbuild-check-names")
    a = ap.parse_args()
    cli = dict(m.split("=", 1) for m in a.mirror)
    cache = Path(a.cache)
    bad = sum(check(load_recipe(r), cli, cache) for r in a.recipes)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
