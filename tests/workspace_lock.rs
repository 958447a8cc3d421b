//! One imgbuild at a time per workspace, and the leftovers of killed runs
//! (`ops::workspace`): stale temp trees in `out/` and temp files in the
//! rootfs cache are removed at the next build, nothing else is; a second
//! build of a workspace whose lock is held waits (and says so) instead of
//! running alongside.

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use imgbuild::ops::build::{self, BuildArgs};
use imgbuild::ops::guard::LOCK_FILE;
use support::*;

const EPOCH: i64 = 1_700_000_000;

fn fetched() -> (Site, TestServer, Workspace) {
    let base = DebSpec::new("base-files", "12.4", "amd64")
        .essential()
        .file("etc/os-release", "ID=test\n", 0o644);
    fetched_img([base], &["base-files"], "")
}

fn args(ws: &Workspace) -> BuildArgs {
    BuildArgs {
        no_scripts: true,
        ..build_args(ws, EPOCH)
    }
}

#[test]
fn leftovers_of_killed_runs_are_removed_and_nothing_else() {
    let _umask = umask_lock();
    let (_site, _server, ws) = fetched();
    let out = ws.path().join("out");
    let cache = ws.cache_dir().join("rootfs");
    // What kill -9 leaves: an assembly tree (with a read-only directory),
    // half-written outputs, a tools tree, cache temp files.
    let tree = out.join(".img.rootfs-AbC123/root/usr/share");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("f"), "x").unwrap();
    fs::set_permissions(&tree, fs::Permissions::from_mode(0o555)).unwrap();
    fs::create_dir_all(out.join("img.tmp-Q1w2E3/oci")).unwrap();
    fs::create_dir_all(out.join(".other.rootfs-zz")).unwrap();
    fs::create_dir_all(out.join(".tools-77")).unwrap();
    fs::create_dir_all(cache.join("img")).unwrap();
    fs::write(cache.join("img/.tmp-9x.tar"), "half").unwrap();
    fs::create_dir_all(cache.join("@packages/img")).unwrap();
    fs::write(cache.join("@packages/img/.tmp-1.tar"), "half").unwrap();
    // Not ours: kept.
    fs::create_dir_all(out.join("notes")).unwrap();
    fs::write(out.join("img.tmp"), "mine").unwrap();
    fs::write(cache.join("notes.tmp-1"), "mine").unwrap();

    build::run(&args(&ws)).unwrap();
    for gone in [
        out.join(".img.rootfs-AbC123"),
        out.join("img.tmp-Q1w2E3"),
        out.join(".other.rootfs-zz"),
        out.join(".tools-77"),
        cache.join("img/.tmp-9x.tar"),
        cache.join("@packages/img/.tmp-1.tar"),
    ] {
        assert!(!gone.exists(), "{} is still there", gone.display());
    }
    for kept in [
        out.join("notes"),
        out.join("img.tmp"),
        cache.join("notes.tmp-1"),
    ] {
        assert!(kept.exists(), "{} was removed", kept.display());
    }
    assert!(out.join("img/rootfs.tar").exists());
}

#[test]
fn a_second_build_of_a_locked_workspace_waits() {
    let (_site, _server, ws) = fetched();
    // Another imgbuild holds the workspace.
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(ws.path().join(LOCK_FILE))
        .unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();

    let mut child = ws
        .command(&["build", "img", "--no-scripts"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("Waiting for another imgbuild"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no waiting message within 60 s: {seen:?}");
            }
        }
    }
    // While it waits, it builds nothing.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "it did not wait: {seen:?}"
    );
    assert!(!ws.path().join("out/img").exists());

    drop(lock);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline + Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the build did not finish after the lock was released");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{seen:?}");
    assert!(ws.path().join("out/img/rootfs.tar").exists());
}
