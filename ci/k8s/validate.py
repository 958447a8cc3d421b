#!/usr/bin/env python3
"""Offline check of the nightly's Kubernetes manifests (tests/k8s_manifests.rs).

  validate.py [-k VERSION]... DIR

1. Every manifest under DIR validates, strictly (no unknown field), against
   the Kubernetes JSON schemas that the `kubernetes-validate` package ships,
   for each VERSION (default: the oldest this layout needs, 1.30, and the
   newest the package knows).
2. DIR/kustomization.yaml lists only files that exist, and every manifest
   but `*.example.yaml` is listed (nothing is validated but not applied, or
   applied but not validated). Only `namespace`, `resources` and `images`
   are used, so what is validated is what `kubectl apply -k` sends, less the
   namespace and the image name.
3. Every pod template is unprivileged: `hostUsers: false`, no host
   namespace or hostPath, a seccomp profile that is not Unconfined, no
   service account token, and per container no privileged flag,
   `allowPrivilegeEscalation: false`, capabilities dropped to ALL, CPU and
   memory requests and limits, and `runAsNonRoot: true` unless it runs as
   root of the pod's own user namespace.
4. The node seccomp profiles (DIR/node/*.json) parse and refuse the calls
   the build sandbox also refuses.

Prints one line per problem (FILE: RESOURCE: what) and exits 1 if any.
Needs PyYAML and kubernetes-validate (the test venv of ci/setup.sh).
"""

import glob
import json
import os
import sys

import kubernetes_validate
import yaml

FLOOR = "1.30.0"  # appArmorProfile in the securityContext appeared in 1.30
MUST_DENY = {"open_by_handle_at", "kexec_load", "init_module", "bpf", "keyctl", "ptrace"}


def pod_specs(doc):
    """(path, pod spec) of every pod template in a resource."""
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return [("spec", spec)]
    if kind == "CronJob":
        t = spec.get("jobTemplate", {}).get("spec", {}).get("template", {})
        return [("spec.jobTemplate.spec.template.spec", t.get("spec") or {})]
    if kind in ("Job", "Deployment", "DaemonSet", "StatefulSet", "ReplicaSet"):
        return [("spec.template.spec", (spec.get("template") or {}).get("spec") or {})]
    return []


def check_pod(where, pod):
    problems = []
    if pod.get("hostUsers") is not False:
        problems.append(f"{where}.hostUsers must be false (a user namespace of its own)")
    for f in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(f):
            problems.append(f"{where}.{f} shares a host namespace")
    for v in pod.get("volumes") or []:
        if "hostPath" in v:
            problems.append(f"{where}.volumes[{v.get('name')}] is a hostPath")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}.automountServiceAccountToken must be false")
    pod_sc = pod.get("securityContext") or {}
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    containers = [("initContainers", c) for c in pod.get("initContainers") or []]
    containers += [("containers", c) for c in pod.get("containers") or []]
    if not containers:
        problems.append(f"{where} has no containers")
    for field, c in containers:
        at = f"{where}.{field}[{c.get('name')}]"
        sc = c.get("securityContext") or {}
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp in (None, "Unconfined"):
            problems.append(f"{at}: no seccomp profile (or Unconfined)")
        if sc.get("privileged"):
            problems.append(f"{at}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{at}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{at}: capabilities must drop ALL")
        if "SYS_ADMIN" in (caps.get("add") or []):
            problems.append(f"{at}: adds SYS_ADMIN")
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if non_root is not True and pod.get("hostUsers") is not False:
            problems.append(f"{at}: runs as root of the node (runAsNonRoot or hostUsers: false)")
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(kind) or {}):
                    problems.append(f"{at}: no {r} {kind[:-1]}")
    return problems


def kustomization(d, problems, seen):
    path = os.path.join(d, "kustomization.yaml")
    with open(path) as f:
        k = yaml.safe_load(f) or {}
    if k.get("kind") != "Kustomization":
        problems.append(f"{path}: kind is not Kustomization")
    unknown = set(k) - {"apiVersion", "kind", "namespace", "resources", "images"}
    if unknown:
        problems.append(f"{path}: uses {sorted(unknown)} (only namespace, resources, images are checked here)")
    for r in k.get("resources") or []:
        p = os.path.normpath(os.path.join(d, r))
        if os.path.isdir(p) and os.path.exists(os.path.join(p, "kustomization.yaml")):
            kustomization(p, problems, seen)
        elif os.path.isfile(p):
            seen.add(p)
        else:
            problems.append(f"{path}: resource {r} does not exist")


def main(argv):
    versions = []
    args = argv[1:]
    while len(args) >= 2 and args[0] == "-k":
        versions.append(args[1])
        args = args[2:]
    if len(args) != 1:
        sys.exit(__doc__)
    root = args[0]
    versions = versions or [FLOOR, kubernetes_validate.utils.latest_version()]
    problems = []
    listed = set()
    if os.path.exists(os.path.join(root, "kustomization.yaml")):
        kustomization(root, problems, listed)
    else:
        problems.append(f"{root}: no kustomization.yaml")
    files = sorted(
        f
        for f in glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True)
        if os.path.basename(f) != "kustomization.yaml"
    )
    for f in files:
        if os.path.normpath(f) not in listed and not f.endswith(".example.yaml"):
            problems.append(f"{f}: not listed in a kustomization (name it *.example.yaml if it is not applied)")
    resources = 0
    for f in files:
        try:
            with open(f) as fh:
                docs = [d for d in yaml.safe_load_all(fh) if d]
        except yaml.YAMLError as e:
            problems.append(f"{f}: not YAML: {e}")
            continue
        for doc in docs:
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                problems.append(f"{f}: a document without kind and apiVersion")
                continue
            resources += 1
            name = f"{doc['kind']}/{(doc.get('metadata') or {}).get('name')}"
            for v in versions:
                try:
                    kubernetes_validate.validate(doc, v, strict=True)
                except kubernetes_validate.ValidationError as e:
                    path = ".".join(str(p) for p in e.path)
                    problems.append(f"{f}: {name}: Kubernetes {v}: {path}: {e.message}")
                except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.VersionNotSupportedError) as e:
                    problems.append(f"{f}: {name}: Kubernetes {v}: {e}")
            for where, pod in pod_specs(doc):
                problems += [f"{f}: {name}: {p}" for p in check_pod(where, pod)]
    for f in sorted(glob.glob(os.path.join(root, "node", "*.json"))):
        try:
            with open(f) as fh:
                prof = json.load(fh)
        except (OSError, json.JSONDecodeError) as e:
            problems.append(f"{f}: not a seccomp profile: {e}")
            continue
        denied = {
            n
            for s in prof.get("syscalls", [])
            if s.get("action") in ("SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS")
            for n in s.get("names", [])
        }
        missing = MUST_DENY - denied if prof.get("defaultAction") == "SCMP_ACT_ALLOW" else set()
        if missing:
            problems.append(f"{f}: allows {sorted(missing)}")
    for p in problems:
        print(p)
    print(
        f"{resources} resources in {len(files)} files, Kubernetes {', '.join(versions)} "
        f"(kubernetes-validate {kubernetes_validate.__version__}): {len(problems)} problem(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
