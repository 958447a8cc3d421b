//! The run ahead and its wrapper on a small image: the host's `/usr/bin`
//! and libraries bound in, a stand-in `depmod` that logs every call and
//! writes a `modules.dep` listing the modules it saw.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::*;

const V: &str = "6.1.0-test+1-amd64";

/// Logs its arguments to `/calls`; `depmod [-o OUT] VERSION` writes
/// `OUT/lib/modules/VERSION/modules.dep` (the modules it finds, sorted);
/// with `/fail-ahead` in the image, `-o` fails.
const FAKE_DEPMOD: &str = r#"#!/bin/sh
echo "$*" >> /calls
out=
if [ "$1" = -o ]; then
    [ -e /fail-ahead ] && exit 1
    out=$2
    shift 2
fi
case "$1" in -*|*/*) exit 0 ;; esac
mkdir -p "$out/lib/modules/$1"
(cd "/lib/modules/$1" && find . -name '*.ko' | LC_ALL=C sort) > "$out/lib/modules/$1/modules.dep"
"#;

/// `/lib/modules/V` of the image at `root`.
fn module_dir(root: &Path) -> std::path::PathBuf {
    root.join("usr/lib/modules").join(V)
}

/// The call the run ahead makes.
fn ahead_call() -> String {
    format!("-o /run/imgbuild-ahead/spec/{V}/out {V}")
}

/// An image whose `/lib/modules/V` holds `a.ko`, in which the sandbox
/// runs; `None` (test skipped) without the host tools the wrapper needs, or
/// when not root and without a user namespace.
fn usable_image(tmp: &Path) -> Option<std::path::PathBuf> {
    let root = image(tmp)?;
    sandbox_usable(&root).then_some(root)
}

/// [`usable_image`] before the sandbox is tried.
fn image(tmp: &Path) -> Option<std::path::PathBuf> {
    for tool in ["sh", "find", "sort", "cmp", "cp", "grep", "sleep", "mkdir"] {
        if !Path::new("/usr/bin").join(tool).exists() {
            eprintln!("skipped: no /usr/bin/{tool} on the host");
            return None;
        }
    }
    let root = tmp.join("image");
    for d in [
        "usr/bin", "usr/lib", "usr/sbin", "etc", "root", "dev", "proc", "run", "tmp",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::create_dir_all(module_dir(&root).join("kernel/net")).unwrap();
    fs::write(module_dir(&root).join("kernel/net/a.ko"), "a").unwrap();
    for link in ["bin", "sbin", "lib", "lib64"] {
        std::os::unix::fs::symlink(format!("usr/{link}"), root.join(link)).unwrap();
    }
    // Every mount point made here: the two sandboxes at once would race
    // to make and remove one that is missing.
    let mut spec = SandboxSpec::new(&root, ["/bin/true"]);
    host_binds(&mut spec);
    for (_, inside) in &spec.ro_binds {
        fs::create_dir_all(root.join(inside.strip_prefix("/").unwrap())).unwrap();
    }
    let depmod = root.join("usr/sbin/depmod");
    fs::write(&depmod, FAKE_DEPMOD).unwrap();
    fs::set_permissions(&depmod, fs::Permissions::from_mode(0o755)).unwrap();
    Some(root)
}

/// The host directories the image's tools come from: `/usr/bin`, the
/// multiarch library directories and `/usr/lib64` (the image's own
/// `/usr/lib/modules` stays writable).
fn host_binds(spec: &mut SandboxSpec) {
    let mut dirs = vec![std::path::PathBuf::from("/usr/bin"), "/usr/lib64".into()];
    for entry in fs::read_dir("/usr/lib").unwrap().flatten() {
        if entry.file_name().to_string_lossy().contains("-linux-gnu") {
            dirs.push(entry.path());
        }
    }
    for d in dirs {
        if d.is_dir() {
            spec.ro_binds.push((d.clone(), d));
        }
    }
}

fn lists() -> Vec<Vec<String>> {
    vec![
        vec![format!("/lib/modules/{V}/kernel/net/a.ko")],
        vec!["/usr/sbin/depmod".into()],
    ]
}

/// Starts the run ahead with the host's tools bound in.
fn start(root: &Path) -> DepmodAhead {
    let mut spec = SandboxSpec::new(root, Vec::<OsString>::new());
    host_binds(&mut spec);
    DepmodAhead::start_in(spec, &lists()).expect("a kernel to run ahead")
}

/// `sh -c SCRIPT` in the image the way a dpkg run gets it.
fn postinst(root: &Path, ahead: &DepmodAhead, script: &str) {
    let mut spec = SandboxSpec::new(root, ["/bin/sh", "-c", script]);
    host_binds(&mut spec);
    ahead.apply(&mut spec);
    spec.timeout = Some(Duration::from_secs(60));
    let out = sandbox::run(&spec).expect("sandbox");
    assert!(
        out.success(),
        "{script}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sandbox is usable here (root, or a user namespace).
fn sandbox_usable(root: &Path) -> bool {
    let mut spec = SandboxSpec::new(root, ["/bin/true"]);
    host_binds(&mut spec);
    match sandbox::run(&spec) {
        Ok(out) => {
            assert!(
                out.success(),
                "/bin/true in the test image: {:?}",
                out.status
            );
            true
        }
        Err(e) if !rustix::process::geteuid().is_root() => {
            eprintln!("skipped: not root and no usable user namespace: {e}");
            false
        }
        Err(e) => panic!("the test image's sandbox: {e}"),
    }
}

/// Waits for the run ahead to end; whether it finished.
fn wait_done(ahead: &DepmodAhead) -> bool {
    let done = ahead.dir.path().join("spec").join(V).join("done");
    let failed = ahead.dir.path().join("state").join(format!("{V}.failed"));
    let start = Instant::now();
    while !done.exists() && !failed.exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    done.exists()
}

fn calls(root: &Path) -> Vec<String> {
    fs::read_to_string(root.join("calls"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn modules_dep(root: &Path) -> String {
    fs::read_to_string(module_dir(root).join("modules.dep")).unwrap()
}

#[test]
fn the_kernels_depmod_gets_the_files_of_the_run_ahead() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(root) = usable_image(tmp.path()) else {
        return;
    };
    let ahead = start(&root);
    // The kernel's preinst: a file depmod does not read.
    fs::write(module_dir(&root).join(".fresh-install"), "").unwrap();
    postinst(&root, &ahead, &format!("depmod {V}"));
    assert_eq!(calls(&root), [ahead_call()], "depmod ran only ahead");
    assert_eq!(modules_dep(&root), "./kernel/net/a.ko\n");
    let run = ahead.finish();
    assert_eq!(run.script, "depmod ahead, beside the other scripts");
}

#[test]
fn a_module_added_after_the_run_ahead_makes_depmod_run_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(root) = usable_image(tmp.path()) else {
        return;
    };
    let ahead = start(&root);
    assert!(wait_done(&ahead), "the run ahead finished");
    fs::write(module_dir(&root).join("kernel/b.ko"), "b").unwrap();
    postinst(&root, &ahead, &format!("depmod {V}"));
    assert_eq!(calls(&root), [ahead_call(), V.to_string()]);
    assert_eq!(modules_dep(&root), "./kernel/b.ko\n./kernel/net/a.ko\n");
}

#[test]
fn a_failed_run_ahead_and_other_calls_go_to_depmod_without_waiting() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(root) = usable_image(tmp.path()) else {
        return;
    };
    fs::write(root.join("fail-ahead"), "").unwrap();
    let ahead = start(&root);
    let started = Instant::now();
    postinst(
        &root,
        &ahead,
        &format!("depmod -a {V} && depmod ../state && depmod {V}"),
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let mut seen = calls(&root);
    seen.sort();
    let mut want = vec![
        ahead_call(),
        format!("-a {V}"),
        "../state".to_string(),
        V.to_string(),
    ];
    want.sort();
    assert_eq!(seen, want);
    assert_eq!(modules_dep(&root), "./kernel/net/a.ko\n");
    let run = ahead.finish();
    assert!(run.script.ends_with("(did not finish)"), "{}", run.script);
}

#[test]
fn nothing_runs_ahead_on_a_tree_without_its_mount_points() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("image");
    for d in ["proc", "run", "tmp"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    // `/dev` a link: the sandbox would make its mount point, racing the dpkg run.
    std::os::unix::fs::symlink("/dev", root.join("dev")).unwrap();
    assert!(DepmodAhead::start(&root, &lists(), "h", 0).is_none());
}

#[test]
fn kernels_are_found_in_the_file_lists() {
    let list = |paths: &[&str]| vec![paths.iter().map(|p| p.to_string()).collect::<Vec<_>>()];
    let depmod = "/usr/sbin/depmod";
    assert_eq!(
        kernel_versions(&list(&[
            depmod,
            "/usr/lib/modules/6.12.1-amd64/kernel/x.ko.xz",
            "/lib/modules/5.10.0-1-amd64/kernel/y.ko",
            "/usr/lib/modules/6.12.1-amd64/modules.order",
            "/usr/lib/modules/only-firmware/notes.txt",
        ])),
        ["5.10.0-1-amd64", "6.12.1-amd64"]
    );
    // Without depmod, or with modules.dep shipped, nothing runs ahead.
    assert!(kernel_versions(&list(&["/usr/lib/modules/6.1/kernel/x.ko"])).is_empty());
    assert!(
        kernel_versions(&list(&[
            depmod,
            "/usr/lib/modules/6.1/kernel/x.ko",
            "/usr/lib/modules/6.1/modules.dep",
        ]))
        .is_empty()
    );
    // A version that is no plain path component and shell word is left alone.
    for odd in ["-a", "..", ".x", "a b", "a\"b", "$(x)"] {
        let path = format!("/usr/lib/modules/{odd}/kernel/x.ko");
        assert!(kernel_versions(&list(&[depmod, &path])).is_empty(), "{odd}");
    }
}
