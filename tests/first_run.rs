//! `imgbuild build` from nothing, as `cargo build` works: a missing lock is
//! solved, missing package files are fetched, then the (offline) build runs;
//! `--locked`, `--frozen` and `--offline` forbid what cargo's flags forbid.
//! Over a signed fixture archive served on 127.0.0.1, with the built binary
//! (maintainer scripts off: the fixture image has no shell).

mod support;

use std::path::Path;

use support::*;

/// A served archive with `app` (→ `libx`) and an Essential `base-files`,
/// and a workspace whose recipe `img` wants `app`; nothing solved or fetched.
fn fresh() -> (Site, TestServer, Workspace) {
    let (site, server) = debian_site([
        DebSpec::new("base-files", "12.4", "amd64")
            .essential()
            .file("etc/os-release", "ID=test\n", 0o644),
        DebSpec::new("app", "1.0", "amd64")
            .depends("libx (>= 2)")
            .file("usr/share/app/data", vec![7u8; 5000], 0o644),
        DebSpec::new("libx", "2.1", "amd64").file("usr/lib/libx.so.2", "ELF", 0o644),
        DebSpec::new("extra", "1", "amd64").file("usr/share/extra", "x", 0o644),
    ]);
    let ws = Workspace::new();
    write_img_recipe(&ws, &server, &["app"], "");
    (site, server, ws)
}

/// Blob files in the store under `vendor/sha256/`.
fn blobs(ws: &Workspace) -> usize {
    let dir = ws.path().join("vendor/sha256");
    let Ok(fans) = std::fs::read_dir(&dir) else {
        return 0;
    };
    fans.map(|f| std::fs::read_dir(f.unwrap().path()).unwrap().count())
        .sum()
}

fn exists(ws: &Workspace, rel: &str) -> bool {
    Path::new(&ws.path().join(rel)).exists()
}

#[test]
fn build_solves_fetches_and_builds_then_is_a_no_op() {
    let (_site, server, ws) = fresh();
    let out = ws.run(&["build", "img", "--no-scripts"]).assert_success();
    let err = &out.stderr;
    assert!(err.contains("Solving img (no lock yet)…"), "{err}");
    assert!(err.contains("Locked 3 packages (main 3)"), "{err}");
    assert!(err.contains("Fetching 3 of 3 files of img"), "{err}");
    assert!(err.contains("fetched 3, reused 0"), "{err}");
    assert!(err.contains("img built: "), "{err}");
    // The order a person reads it in: solve, fetch, build.
    let at = |s: &str| err.find(s).unwrap();
    assert!(at("Solving") < at("Fetching") && at("Fetching") < at("img built"));
    assert!(exists(&ws, "locks/img.lock") && exists(&ws, "out/img/manifest.json"));
    assert_eq!(blobs(&ws), 3);
    let lock = ws.read("locks/img.lock");

    // Again: nothing to solve, fetch or build, and no network at all.
    server.reset_log();
    let again = ws.run(&["build", "img", "--no-scripts"]).assert_success();
    assert!(
        again.stderr.contains("img up to date: "),
        "{}",
        again.stderr
    );
    assert!(
        !again.stderr.contains("Solving") && !again.stderr.contains("Fetching"),
        "{}",
        again.stderr
    );
    assert_eq!(server.total_requests(), 0, "{:?}", server.requests());
    assert_eq!(ws.read("locks/img.lock"), lock);

    // The store lost a file: only it is fetched, the lock is not touched.
    let one = ws.path().join("vendor/sha256");
    let fan = std::fs::read_dir(&one)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let blob = std::fs::read_dir(&fan)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(blob).unwrap();
    let refetch = ws.run(&["build", "img", "--no-scripts"]).assert_success();
    assert!(
        refetch.stderr.contains("Fetching 1 of 3 files of img")
            && refetch.stderr.contains("fetched 1, reused 2")
            && !refetch.stderr.contains("Solving"),
        "{}",
        refetch.stderr
    );
    assert_eq!(ws.read("locks/img.lock"), lock);

    // Quiet: nothing on stderr.
    let quiet = ws
        .run(&["-q", "build", "img", "--no-scripts"])
        .assert_success();
    assert_eq!(quiet.stderr, "");
}

#[test]
fn frozen_on_a_clean_store_names_what_is_missing_and_touches_nothing() {
    let (_site, server, ws) = fresh();
    // No lock: --frozen is --locked.
    let out = ws
        .run(&["--frozen", "build", "img", "--no-scripts"])
        .assert_failure();
    assert!(
        out.stderr.contains("--locked: ")
            && out
                .stderr
                .contains("locks/img.lock does not exist; run `imgbuild solve img`"),
        "{}",
        out.stderr
    );
    assert_eq!(server.total_requests(), 0);
    assert!(!exists(&ws, "locks/img.lock"));

    ws.run(&["solve", "img"]).assert_success();
    server.reset_log();
    let out = ws
        .run(&["--frozen", "build", "img", "--no-scripts"])
        .assert_failure();
    let err = &out.stderr;
    assert!(
        err.contains("--frozen: 3 of 3 files of `img` are missing from the vendor store"),
        "{err}"
    );
    for name in ["app 1.0 amd64", "libx 2.1 amd64", "base-files 12.4 amd64"] {
        assert!(err.contains(name), "{name}: {err}");
    }
    assert!(err.contains("--frozen forbids fetching"), "{err}");
    assert_eq!(server.total_requests(), 0, "{:?}", server.requests());
    for dir in ["vendor", "out"] {
        assert!(!exists(&ws, dir), "{dir} was created");
    }
    // Same for verify.
    let out = ws
        .run(&["--frozen", "verify", "img", "--no-scripts"])
        .assert_failure();
    assert!(
        out.stderr.contains("--frozen forbids fetching"),
        "{}",
        out.stderr
    );

    // With the store filled, --frozen builds without the network.
    ws.run(&["fetch", "img"]).assert_success();
    server.reset_log();
    ws.run(&["--frozen", "build", "img", "--no-scripts"])
        .assert_success();
    assert_eq!(server.total_requests(), 0, "{:?}", server.requests());
}

#[test]
fn locked_needs_a_fresh_lock_and_stale_needs_update() {
    let (_site, server, ws) = fresh();
    let out = ws
        .run(&["--locked", "build", "img", "--no-scripts"])
        .assert_failure();
    assert!(
        out.stderr.contains("--locked: ")
            && out
                .stderr
                .contains("does not exist; run `imgbuild solve img`"),
        "{}",
        out.stderr
    );
    assert!(!exists(&ws, "locks/img.lock") && !exists(&ws, "vendor"));
    assert_eq!(server.total_requests(), 0);

    // A lock, no store: --locked may fetch.
    ws.run(&["solve", "img"]).assert_success();
    let out = ws
        .run(&["--locked", "build", "img", "--no-scripts"])
        .assert_success();
    assert!(out.stderr.contains("fetched 3, reused 0"), "{}", out.stderr);
    let lock = ws.read("locks/img.lock");

    // The recipe changed: the lock is never re-solved silently.
    write_img_recipe(&ws, &server, &["app", "extra"], "");
    for args in [
        &["build", "img", "--no-scripts"][..],
        &["--locked", "build", "img", "--no-scripts"],
    ] {
        let out = ws.run(args).assert_failure();
        assert!(
            out.stderr.contains("is stale: ") && out.stderr.contains("run `imgbuild solve img`"),
            "{args:?}: {}",
            out.stderr
        );
        assert_eq!(ws.read("locks/img.lock"), lock);
    }
    let out = ws
        .run(&["--locked", "build", "img", "--update"])
        .assert_failure();
    assert!(
        out.stderr.contains("--update cannot be combined"),
        "{}",
        out.stderr
    );

    // --update re-solves it, keeping what was locked, and fetches the new file.
    let out = ws
        .run(&["build", "img", "--no-scripts", "--update"])
        .assert_success();
    let err = &out.stderr;
    assert!(
        err.contains("Solving img (--update: the lock is stale: "),
        "{err}"
    );
    assert!(err.contains("    Adding extra 1"), "{err}");
    assert!(err.contains("fetched 1, reused 3"), "{err}");
    assert!(ws.read("out/img/packages.txt").contains("extra 1 amd64"));
}

#[test]
fn offline_solves_from_cached_indexes_and_fetches_nothing() {
    let (_site, server, ws) = fresh();
    ws.run(&["build", "img", "--no-scripts"]).assert_success();
    let lock = ws.read("locks/img.lock");

    // The lock gone: solved again from the cached, verified indexes.
    std::fs::remove_file(ws.path().join("locks/img.lock")).unwrap();
    server.reset_log();
    let out = ws
        .run(&["--offline", "build", "img", "--no-scripts"])
        .assert_success();
    assert!(
        out.stderr.contains("Solving img (no lock yet)…"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("img up to date"), "{}", out.stderr);
    assert_eq!(ws.read("locks/img.lock"), lock);
    assert_eq!(server.total_requests(), 0, "{:?}", server.requests());

    // The store gone: offline cannot fetch, and says so.
    std::fs::remove_dir_all(ws.path().join("vendor")).unwrap();
    let out = ws
        .run(&["--offline", "build", "img", "--no-scripts"])
        .assert_failure();
    assert!(
        out.stderr
            .contains("offline: 3 of 3 package file(s) of `img`"),
        "{}",
        out.stderr
    );
    assert_eq!(server.total_requests(), 0, "{:?}", server.requests());
}

#[test]
fn verify_solves_and_fetches_first() {
    let (_site, _server, ws) = fresh();
    let out = ws.run(&["verify", "img", "--no-scripts"]).assert_success();
    assert!(
        out.stderr.contains("Solving img (no lock yet)…"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("img is reproducible"), "{}", out.stderr);
    assert_eq!(blobs(&ws), 3);
}

/// Records what an assembly tells its reporter.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl imgbuild::rootfs::Reporter for Recorder {
    fn phase(&self, name: &str, total: Option<u64>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("phase {name} {total:?}"));
    }
    fn item(&self, label: &str) {
        self.0.lock().unwrap().push(format!("item {label}"));
    }
    fn phase_done(&self) {
        self.0.lock().unwrap().push("done".into());
    }
}

#[test]
fn assembly_reports_its_phases_and_items() {
    use imgbuild::rootfs::{self, AssembleOptions};
    let (_site, _server, ws) = fresh();
    ws.run(&["build", "img", "--no-scripts"]).assert_success();
    let lock = imgbuild::lock::Lockfile::read(&ws.path().join("locks/img.lock")).unwrap();
    let store = imgbuild::fetch::Store::open(&ws.path().join("vendor")).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let opts = AssembleOptions {
        run_scripts: false,
        ..AssembleOptions::default()
    };
    let recorder = Recorder::default();
    let mut report =
        rootfs::assemble_packages_with(&lock, &store, dest.path(), &opts, &recorder).unwrap();
    rootfs::finish_with(dest.path(), &opts, &[], &mut report, &recorder).unwrap();
    let events = recorder.0.into_inner().unwrap();
    assert_eq!(events[0], "phase unpack Some(3)");
    // Every package is named as it is unpacked, in install order (the
    // Essential base set first).
    let unpacked: Vec<String> = report
        .unpack_order
        .iter()
        .map(|id| {
            let name = id.split(':').next().unwrap();
            let p = lock.package(name).unwrap();
            format!("item {} {} {}", p.name, p.version, p.architecture)
        })
        .collect();
    assert_eq!(events[1..4], unpacked[..]);
    assert_eq!(events[1], "item base-files 12.4 amd64");
    assert_eq!(&events[4..], ["done", "phase normalize None", "done"]);
}
