//! The Kubernetes manifests of the nightly (ci/k8s/) checked offline by
//! ci/k8s/validate.py: strict validation against the Kubernetes JSON
//! schemas of `kubernetes-validate` (1.30, the oldest this layout needs,
//! and the newest the package ships), the kustomization's file list and
//! the unprivileged-pod policy. Each kind of breakage is shown to be
//! rejected, so the check can fail. Skipped, saying why, when the test venv
//! of ci/setup.sh (with kubernetes-validate) is missing.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::publishing::venv_python;

fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/k8s")
}

/// The venv's python when it has kubernetes-validate.
fn python() -> Option<PathBuf> {
    let py = venv_python()?;
    let ok = Command::new(&py)
        .args(["-c", "import kubernetes_validate, yaml"])
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(py)
}

fn validate(py: &Path, dir: &Path) -> (bool, String) {
    let out = Command::new(py)
        .arg(k8s_dir().join("validate.py"))
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A copy of ci/k8s with `file` edited by `edit`.
fn broken(file: &str, edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let mut stack = vec![k8s_dir()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(k8s_dir()).unwrap();
            if p.is_dir() {
                fs::create_dir_all(tmp.path().join(rel)).unwrap();
                stack.push(p);
            } else {
                fs::copy(&p, tmp.path().join(rel)).unwrap();
            }
        }
    }
    let target = tmp.path().join(file);
    let text = fs::read_to_string(&target).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit of {file} changed nothing");
    fs::write(&target, edited).unwrap();
    tmp
}

#[test]
fn the_manifests_pass_the_offline_schema_and_policy_check() {
    let Some(py) = python() else {
        eprintln!("skipping: no test venv with kubernetes-validate (ci/setup.sh makes it)");
        return;
    };
    let (ok, out) = validate(&py, &k8s_dir());
    eprintln!("{out}");
    assert!(ok, "{out}");
    assert!(out.contains("0 problem(s)"), "{out}");
    assert!(out.contains("Kubernetes 1.30.0"), "{out}");
}

#[test]
fn broken_manifests_are_rejected_naming_the_file() {
    let Some(py) = python() else {
        eprintln!("skipping: no test venv with kubernetes-validate (ci/setup.sh makes it)");
        return;
    };
    // (file, text, replacement, what the check must say)
    let cases = [
        // A misspelt field: strict validation refuses unknown properties.
        (
            "sonic-p4.yaml",
            "  concurrencyPolicy:",
            "  concurencyPolicy:",
            "Additional properties are not allowed ('concurencyPolicy' was unexpected)",
        ),
        // A wrong type.
        (
            "r2lab-node.yaml",
            "backoffLimit: 0",
            "backoffLimit: none",
            "'none' is not of type 'integer'",
        ),
        // Valid for Kubernetes, refused by the policy.
        (
            "sonic-p4.yaml",
            "privileged: false",
            "privileged: true",
            "[checkout]: privileged",
        ),
        (
            "r2lab-node.yaml",
            "hostUsers: false",
            "hostUsers: true",
            "hostUsers must be false",
        ),
        // The kustomization names a file that is not there.
        (
            "kustomization.yaml",
            "  - r2lab-node.yaml",
            "  - r2lab.yaml",
            "resource r2lab.yaml does not exist",
        ),
        // Not YAML at all.
        (
            "configmap.yaml",
            "data:",
            "data: [",
            "configmap.yaml: not YAML",
        ),
    ];
    for (file, from, to, expected) in cases {
        let dir = broken(file, |t| t.replacen(from, to, 1));
        let (ok, out) = validate(&py, dir.path());
        assert!(!ok, "a broken {file} passed:\n{out}");
        assert!(
            out.contains(expected) && out.contains(file.trim_end_matches(".yaml")),
            "{file}: expected `{expected}` in:\n{out}"
        );
    }
}
