#!/usr/bin/env python3
"""The nightly's reports (ci/nightly.sh calls this; Python 3.11+, stdlib only).

  nightly_report.py drift OLD.lock NEW.lock OUTDIR
      OUTDIR/drift.json and OUTDIR/drift.md: what the refreshed lock moved,
      package by package (old -> new version, the source it comes from,
      whether that is a security suite, the Debian source package), plus the
      build-time inputs (tools, components). Deterministic: no clock, so the
      same lock transition gives the same bytes (it is attached to the
      publication and signed into its provenance).

  nightly_report.py report NIGHT_DIR
      NIGHT_DIR/REPORT.md and NIGHT_DIR/REPORT.json from every
      NIGHT_DIR/RECIPE/ that ci/nightly.sh filled: `facts` (KEY=VALUE lines),
      `stages.tsv` (stage, status, seconds), `drift.json`, `publish.json`.

The package keys and the security rule are those of `imgbuild outdated`
(src/ops/outdated.rs, src/lock/resolved.rs `diff`): NAME, or NAME:ARCH for a
foreign architecture; `pypi:NAME` for a Python distribution; a source is a
security one when its suite ends in `-security` or contains `/updates`.
tests/nightly_report.rs checks the drift against `imgbuild outdated --json`.
"""

import json
import os
import sys
import tomllib

# Stages in pipeline order (ci/nightly.sh records them under these names).
STAGES = ["solve", "drift", "check", "fetch", "build", "verify", "publish", "store"]


def load_lock(path):
    if not path or not os.path.exists(path):
        return {}
    with open(path, "rb") as f:
        try:
            return tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            sys.exit(f"{path}: not a lock file: {e}")


def is_security(suite):
    return suite.endswith("-security") or "/updates" in suite


def source_package(filename, name):
    """The Debian source package from a pool path: pool/COMP/PREFIX/SOURCE/FILE,
    or pool/updates/COMP/PREFIX/SOURCE/FILE on the security archive: the
    directory holding the file, in either layout."""
    parts = (filename or "").split("/")
    if len(parts) >= 5 and parts[0] == "pool":
        return parts[-2]
    return name


def entries(lock):
    """{key: entry} of the image's packages and Python distributions."""
    arch = lock.get("recipe", {}).get("architecture", "")
    suites = {s.get("name"): s.get("suite", "") for s in lock.get("source", [])}
    out = {}
    for p in lock.get("package", []):
        a = p.get("architecture", "")
        key = p["name"] if a in ("all", arch) else f"{p['name']}:{a}"
        src = p.get("source", "")
        out[key] = {
            "version": p.get("version"),
            "source": src,
            "security": is_security(suites.get(src, "")),
            "source_package": source_package(p.get("filename"), p["name"]),
        }
    for p in lock.get("python", []):
        out[f"pypi:{p['name']}"] = {
            "version": p.get("version"),
            # As `imgbuild outdated`: a Python distribution has no recipe source.
            "source": None,
            "security": False,
            "source_package": p["name"],
        }
    return out


def moved(old, new):
    """Sorted list of what differs between two {key: entry} maps."""
    rows = []
    for key in sorted(set(old) | set(new)):
        o, n = old.get(key), new.get(key)
        ov = o["version"] if o else None
        nv = n["version"] if n else None
        if ov == nv:
            continue
        ref = n or o
        rows.append(
            {
                "name": key,
                "old": ov,
                "new": nv,
                # Where the new version comes from (none for a removal).
                "source": n["source"] if n else None,
                "security": bool(n and n["security"]),
                "source_package": ref["source_package"],
            }
        )
    return rows


def build_inputs(lock):
    """{key: version} of what builds the image but is not in it."""
    out = {}
    for t in lock.get("tool", []):
        out[f"tool:{t['name']}"] = t.get("version")
    for c in lock.get("component", []):
        out[f"component:{c['name']}"] = f"{c.get('version')} ({(c.get('commit') or c.get('sha256') or '')[:12]})"
        for p in c.get("package", []):
            out[f"component:{c['name']}/{p['name']}"] = p.get("version")
    return out


def drift(old_path, new_path, outdir):
    old, new = load_lock(old_path), load_lock(new_path)
    recipe = new.get("recipe", {}).get("name") or old.get("recipe", {}).get("name", "?")
    rows = moved(entries(old), entries(new))
    bo, bn = build_inputs(old), build_inputs(new)
    build = [
        {"name": k, "old": bo.get(k), "new": bn.get(k)}
        for k in sorted(set(bo) | set(bn))
        if bo.get(k) != bn.get(k)
    ]
    report = {
        "recipe": recipe,
        "old_lock": sha256_file(old_path),
        "new_lock": sha256_file(new_path),
        "drift": rows,
        "security": sum(1 for r in rows if r["security"]),
        "build_inputs": build,
    }
    os.makedirs(outdir, exist_ok=True)
    write(os.path.join(outdir, "drift.json"), json.dumps(report, indent=2) + "\n")
    write(os.path.join(outdir, "drift.md"), drift_md(report))
    return report


def sha256_file(path):
    import hashlib

    if not path or not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return "sha256:" + hashlib.sha256(f.read()).hexdigest()


def version(v):
    return v if v is not None else "-"


def drift_md(r):
    lines = [f"# Drift of {r['recipe']}", ""]
    if not r["drift"] and not r["build_inputs"]:
        lines.append("Nothing moved: the refreshed lock pins what the old one did.")
        return "\n".join(lines) + "\n"
    lines.append(
        f"{len(r['drift'])} package(s) moved, {r['security']} from security suites; "
        f"{len(r['build_inputs'])} build input(s) moved."
    )
    if r["drift"]:
        lines += ["", "| package | old | new | from | source package | security |", "| --- | --- | --- | --- | --- | --- |"]
        for d in r["drift"]:
            lines.append(
                f"| {d['name']} | {version(d['old'])} | {version(d['new'])} | {d['source'] or '-'} "
                f"| {d['source_package']} | {'yes' if d['security'] else ''} |"
            )
    if r["build_inputs"]:
        lines += ["", "Build inputs (tools, components; not in the image as such):", ""]
        for b in r["build_inputs"]:
            lines.append(f"- {b['name']}: {version(b['old'])} -> {version(b['new'])}")
    return "\n".join(lines) + "\n"


def write(path, text):
    """Atomically: a reader never sees half a report."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def read_facts(path):
    facts = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                k, sep, v = line.rstrip("\n").partition("=")
                if sep:
                    facts[k] = v
    return facts


def read_stages(path):
    stages = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                cols = line.rstrip("\n").split("\t")
                if len(cols) >= 3:
                    stages.append({"stage": cols[0], "status": cols[1], "seconds": float(cols[2])})
    return stages


def read_json(path):
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError:
            return None


def recipe_report(d):
    facts = read_facts(os.path.join(d, "facts"))
    drift_j = read_json(os.path.join(d, "drift.json")) or {"drift": [], "security": 0, "build_inputs": []}
    pub = read_json(os.path.join(d, "publish.json"))
    stages = read_stages(os.path.join(d, "stages.tsv"))
    reproducible = {"yes": True, "no": False}.get(facts.get("reproducible"))
    return {
        "recipe": facts.get("recipe", os.path.basename(d)),
        "status": facts.get("status", "failed"),
        "failed_stage": facts.get("failed_stage") or None,
        "reason": facts.get("reason") or None,
        "branch": facts.get("branch") or None,
        "commit": facts.get("commit") or None,
        "reference": facts.get("reference") or None,
        "lock_tag": facts.get("lock_tag") or None,
        "digest": (pub or {}).get("digest") or facts.get("digest") or None,
        "previous_nightly": facts.get("previous_nightly") or None,
        "tags": (pub or {}).get("tags", []),
        "uploaded_bytes": (pub or {}).get("uploaded_bytes", 0),
        "reproducible": reproducible,
        "store": facts.get("store") or None,
        "moved": drift_j["drift"],
        "security": drift_j.get("security", 0),
        "build_inputs": drift_j.get("build_inputs", []),
        "stages": stages,
        "seconds": round(sum(s["seconds"] for s in stages), 1),
    }


STATUS_TEXT = {
    "published": "published",
    "unchanged": "unchanged: nothing rebuilt, nothing uploaded",
    "not-reproducible": "NOT REPRODUCIBLE: not published, `nightly` not moved",
    "failed": "FAILED",
    "built": "built and verified (not published: NIGHTLY_PUBLISH=0)",
}


def short(digest):
    return digest[:19] if digest else "-"


def report(night):
    night_facts = read_facts(os.path.join(night, "facts"))
    recipes = []
    for name in sorted(os.listdir(night)):
        d = os.path.join(night, name)
        if os.path.isdir(d) and os.path.exists(os.path.join(d, "facts")):
            recipes.append(recipe_report(d))
    long_checks = read_stages(os.path.join(night, "long-checks.tsv"))
    doc = {
        "date": night_facts.get("date"),
        "base": night_facts.get("base"),
        "imgbuild": night_facts.get("imgbuild"),
        "recipes": recipes,
        "long_checks": long_checks,
        "uploaded_bytes": sum(r["uploaded_bytes"] for r in recipes),
    }
    write(os.path.join(night, "REPORT.json"), json.dumps(doc, indent=2) + "\n")
    write(os.path.join(night, "REPORT.md"), report_md(doc))
    return doc


def report_md(doc):
    L = [f"# Nightly {doc['date'] or ''}".rstrip(), ""]
    meta = []
    if doc.get("base"):
        meta.append(f"base `{doc['base'][:12]}`")
    if doc.get("imgbuild"):
        meta.append(doc["imgbuild"])
    uploaded = doc["uploaded_bytes"]
    meta.append("nothing uploaded" if uploaded == 0 else f"{uploaded} bytes uploaded")
    L += [", ".join(meta), ""]
    L += ["| recipe | result | updates | security | reproducible | image | time |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in doc["recipes"]:
        rep = {True: "yes", False: "NO", None: "-"}[r["reproducible"]]
        result = STATUS_TEXT.get(r["status"], r["status"])
        if r["status"] == "failed" and r["failed_stage"]:
            result = f"FAILED at {r['failed_stage']}"
        L.append(
            f"| {r['recipe']} | {result} | {len(r['moved'])} | {r['security']} | {rep} "
            f"| `{short(r['digest'])}` | {r['seconds']:.0f} s |"
        )
    L += ["", "Updates: what the refreshed lock moves against the lock of the checkout "
          "(merge branch `nightly/DATE` to take them)."]
    for r in doc["recipes"]:
        L += ["", f"## {r['recipe']}", ""]
        if r["reason"]:
            L.append(f"- {r['reason']}")
        if r["reference"] and r["digest"]:
            L.append(f"- image: `{r['reference']}@{r['digest']}`")
        elif r["reference"]:
            L.append(f"- image: not published to `{r['reference']}`")
        if r["tags"]:
            L.append(f"- tags: {', '.join(r['tags'])} ({r['uploaded_bytes']} bytes uploaded)")
        if r["previous_nightly"] and r["previous_nightly"] != r["digest"]:
            L.append(f"- previous `nightly`: `{short(r['previous_nightly'])}`")
        if r["branch"]:
            L.append(f"- lock: {r['lock_tag'] or '-'} on branch `{r['branch']}` (commit `{(r['commit'] or '-')[:12]}`)")
        if r["store"]:
            L.append(f"- store: {r['store']}")
        sec = [m for m in r["moved"] if m["security"]]
        if sec:
            L.append("- security updates: " + ", ".join(f"{m['name']} {version(m['old'])} -> {version(m['new'])} ({m['source_package']})" for m in sec))
        others = [m for m in r["moved"] if not m["security"]]
        if others:
            L.append("- other updates: " + ", ".join(f"{m['name']} {version(m['old'])} -> {version(m['new'])}" for m in others))
        if not r["moved"]:
            L.append("- no update: the image's packages are those of the checkout's lock")
        if r["build_inputs"]:
            L.append(f"- build inputs moved: {', '.join(b['name'] for b in r['build_inputs'])}")
        if r["stages"]:
            L.append("- stages: " + ", ".join(f"{s['stage']} {s['seconds']:.1f} s" + ("" if s["status"] == "ok" else f" ({s['status']})") for s in r["stages"]))
    if doc["long_checks"]:
        L += ["", "## Long checks", ""]
        for s in doc["long_checks"]:
            L.append(f"- {s['stage']}: {s['status']} ({s['seconds']:.0f} s)")
    return "\n".join(L) + "\n"


def main(argv):
    if len(argv) == 5 and argv[1] == "drift":
        drift(argv[2], argv[3], argv[4])
    elif len(argv) == 3 and argv[1] == "report":
        report(argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
