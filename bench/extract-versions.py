#!/usr/bin/env python3
"""Regenerate tests/data/versions.txt: real Debian versions, grouped by package.

    bench/extract-versions.py DIR > tests/data/versions.txt

DIR holds one sub-directory per suite (bullseye, bullseye-security, bookworm,
bookworm-updates, bookworm-security, trixie, trixie-updates, trixie-security),
each with the decompressed amd64 `main` `Packages` file, whose InRelease was
verified (see bench/check-names.py, whose cache holds the same files).

Keeps packages carrying at least two distinct versions across those suites,
versions in suite order (oldest suite first, so consecutive pairs go up and
down). Packages whose versions have the tricky features (epoch, `~`, long
digit runs, upper case, several hyphens, leading zeros) are taken first, then
others, in an order given by sha256(name) so the sample is stable, until about
2000 distinct versions.
"""

import hashlib
import re
import sys
from pathlib import Path

SUITES = [
    "bullseye",
    "bullseye-security",
    "bookworm",
    "bookworm-updates",
    "bookworm-security",
    "trixie",
    "trixie-updates",
    "trixie-security",
]
TARGET = 2000


def tricky(v):
    return bool(
        ":" in v
        or "~" in v
        or re.search(r"\d{8,}", v)
        or re.search(r"[A-Z]", v)
        or v.count("-") >= 2
        or re.search(r"(^|\D)0\d", v)
    )


def main():
    root = Path(sys.argv[1])
    groups = {}
    for s in SUITES:
        p = root / s / "Packages"
        if not p.exists():
            continue
        pkg = None
        for line in open(p, encoding="utf-8", errors="replace"):
            if line.startswith("Package: "):
                pkg = line[9:].strip()
            elif line.startswith("Version: ") and pkg:
                v = line[9:].strip()
                g = groups.setdefault(pkg, [])
                if v not in g:
                    g.append(v)
    multi = {k: v for k, v in groups.items() if len(v) >= 2}
    order = sorted(multi, key=lambda k: hashlib.sha256(k.encode()).hexdigest())
    first = [k for k in order if any(tricky(v) for v in multi[k])]
    rest = [k for k in order if k not in set(first)]
    chosen, seen = [], set()
    for k in first:
        if len(seen) >= TARGET * 0.6:
            break
        chosen.append(k)
        seen.update(multi[k])
    for k in rest:
        if len(seen) >= TARGET:
            break
        chosen.append(k)
        seen.update(multi[k])
    print("# Real Debian versions (amd64 main of " + ", ".join(SUITES) + "),")
    print("# grouped by package, in suite order. Format: PACKAGE VERSION.")
    print("# Regenerate with bench/extract-versions.py (see its docstring).")
    for k in sorted(chosen):
        for v in multi[k]:
            print(k, v)


if __name__ == "__main__":
    main()
