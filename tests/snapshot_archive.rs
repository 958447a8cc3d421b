//! Locks that outlive the live pool: a fixture "live" mirror that moves on
//! and drops the files a lock pins, and a fixture snapshot service (runs
//! imported after each publication, answering any time with the run at or
//! before it), both on 127.0.0.1. `fetch` gets what the live side lost from
//! the snapshot, every hash checked; `solve --snapshot` / `snapshot = …`
//! locks a past day's archive.

mod support;

use std::path::Path;

use imgbuild::fetch::Store;
use imgbuild::lock::Lockfile;
use support::repo::{DEFAULT_DATE, rfc2822};
use support::solving::lock;
use support::*;

const DAY: u32 = 86_400;
/// The snapshot service imports half an hour after the archive publishes.
const IMPORT_DELAY: u32 = 1800;

/// (Re)writes the live archive `debian` (suite bookworm) with `a` (depending
/// on `b`) and `b` at `version` only, dated `date`: what the pool held
/// before is gone, as when Debian drops superseded files.
fn publish(site: &Site, version: &str, date: u32, valid_until: Option<u32>) -> Repo {
    let root = site.path().join("debian");
    let _ = std::fs::remove_dir_all(&root);
    let mut b = site
        .archive("debian")
        .suite("bookworm", &["amd64"], &["main"])
        .date(date)
        .add(DebSpec::new("a", version, "amd64").depends("b"))
        .add(DebSpec::new("b", version, "amd64"));
    if let Some(t) = valid_until {
        b = b.valid_until(t);
    }
    b.build()
}

/// A recipe `base` over archive `debian` (its URL is configuration), with
/// extra lines appended to its `[[source]]` table.
fn recipe(ws: &Workspace, source_extra: &str) {
    let keyring = ws.install_key(TestKey::primary(), "test.pgp");
    let src = SourceToml::archive("bookworm", "debian", "bookworm").keyring(&keyring);
    let text = RecipeToml::new("amd64")
        .packages(&["a"])
        .essential(false)
        .source(src)
        .to_toml();
    ws.write_recipe("base", &format!("{text}{source_extra}"));
}

fn mirror(name: &str, url: &str) -> String {
    format!("{name}={url}")
}

fn run(ws: &Workspace, mirrors: &[String], args: &[&str]) -> RunOutput {
    let mut all: Vec<&str> = Vec::new();
    for m in mirrors {
        all.extend(["--mirror", m.as_str()]);
    }
    all.extend(args);
    ws.run(&all)
}

/// Every blob under the store is what its name says (nothing unverified was kept).
fn assert_store_sound(dir: &Path) {
    let store = Store::open(dir).unwrap();
    for (path, name) in store.blobs().unwrap() {
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(store.verify_blob(&name, len).unwrap(), "{}", path.display());
    }
}

/// The day-1 world: archive at version 1 solved into a lock, then the live
/// archive moved on to version 2 (version 1 dropped from its pool); the
/// snapshot service imported both days, after each publication.
struct World {
    site: Site,
    server: TestServer,
    snap: SnapshotService,
    ws: Workspace,
    day1: Repo,
    /// Timestamp of the day-1 import run.
    run1: String,
}

fn world() -> World {
    let site = Site::new();
    let snap = SnapshotService::new();
    let day1 = publish(&site, "1", DEFAULT_DATE, None);
    let run1 = snap.import("debian", DEFAULT_DATE + IMPORT_DELAY, day1.root());
    let server = site.serve();
    let ws = Workspace::new();
    recipe(&ws, "");
    let live = mirror("debian", &server.url("debian/"));
    run(&ws, &[live], &["solve", "base"]).assert_success();
    World {
        site,
        server,
        snap,
        ws,
        day1,
        run1,
    }
}

impl World {
    fn move_on(&self) -> Repo {
        let day2 = publish(&self.site, "2", DEFAULT_DATE + DAY, None);
        self.snap
            .import("debian", DEFAULT_DATE + DAY + IMPORT_DELAY, day2.root());
        day2
    }

    fn mirrors(&self) -> Vec<String> {
        vec![
            mirror("debian", &self.server.url("debian/")),
            mirror("snapshot", &self.snap.url()),
        ]
    }

    fn store(&self) -> Store {
        Store::open(&self.ws.path().join("vendor")).unwrap()
    }
}

#[test]
fn a_file_dropped_from_the_live_pool_comes_from_the_snapshot_hashes_checked() {
    let w = world();
    let locked = lock(&w.ws, "base");
    assert_eq!(locked.sources[0].date, rfc2822(DEFAULT_DATE));
    assert_eq!(locked.sources[0].snapshot, None, "solved live");
    w.move_on();
    // A second builder: no cache, no store; the live mirror has neither
    // the lock's InRelease nor its files any more.
    std::fs::remove_dir_all(w.ws.cache_dir()).unwrap();
    let out = run(&w.ws, &w.mirrors(), &["fetch", "base"]).assert_success();
    // The InRelease at the Date is the run before (none here): the search
    // found the lock's own one hour later, in the run imported at +30 min.
    assert_eq!(w.run1, "20240601T003000Z");
    assert!(
        out.stderr
            .contains("fetched 2 (2 from snapshot 20240601T010000Z)"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("current signed index"),
        "the lock's own InRelease was audited, not the live one: {}",
        out.stderr
    );
    let store = w.store();
    for name in ["a", "b"] {
        let deb = w.day1.deb(name, "1");
        let p = locked.package(name).unwrap();
        assert_eq!((&p.sha256, p.size), (&deb.sha256, deb.size));
        assert!(store.verify_blob(&deb.sha256, deb.size).unwrap(), "{name}");
    }
    assert!(
        w.snap
            .requests()
            .iter()
            .any(|r| r.ends_with(&w.day1.deb("a", "1").filename)),
        "{:?}",
        w.snap.requests()
    );
    // Everything is in the store: nothing is asked again.
    let out = run(&w.ws, &w.mirrors(), &["fetch", "base"]).assert_success();
    assert!(out.stderr.contains("fetched 0, reused 2"), "{}", out.stderr);

    // Without a snapshot service, the 404 says what to configure.
    std::fs::remove_dir_all(w.ws.path().join("vendor")).unwrap();
    let live = mirror("debian", &w.server.url("debian/"));
    let out = run(&w.ws, &[live], &["fetch", "base"]).assert_failure();
    assert!(out.stderr.contains("HTTP status 404"), "{}", out.stderr);
    assert!(
        out.stderr.contains("--mirror snapshot=URL"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_snapshot_blob_with_a_wrong_hash_is_refused_and_nothing_is_stored() {
    let w = world();
    let a = w.day1.deb("a", "1");
    let mut bytes = std::fs::read(w.day1.root().join(&a.filename)).unwrap();
    w.move_on();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    w.snap.tamper("debian", &a.filename, bytes);
    let out = run(&w.ws, &w.mirrors(), &["fetch", "base"]).assert_failure();
    assert!(
        out.stderr.contains("served the wrong content"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("snapshot 2024060"), "{}", out.stderr);
    assert!(out.stderr.contains("a 1 amd64"), "{}", out.stderr);
    let store = w.store();
    assert!(!store.contains(&a.sha256, a.size));
    assert!(!store.path_of(&a.sha256).exists());
    // The other file was fine and is kept; no partial file is left.
    let b = w.day1.deb("b", "1");
    assert!(store.verify_blob(&b.sha256, b.size).unwrap());
    assert_store_sound(store.root());
    let parts: Vec<_> = std::fs::read_dir(store.tmp_dir())
        .map(|rd| rd.flatten().collect())
        .unwrap_or_default();
    assert!(parts.is_empty(), "{parts:?}");
}

#[test]
fn a_transient_live_failure_is_retried_never_sent_to_the_snapshot() {
    let w = world();
    let a = w.day1.deb("a", "1");
    let b = w.day1.deb("b", "1");
    // Two 503s, then the live mirror serves it: retried there.
    w.server
        .fault_n(&format!("*/{}", a.spec.file_name()), Fault::Status(503), 2);
    // Always 503: retried, then it fails; never a 404, so no snapshot.
    w.server
        .fault(&format!("*/{}", b.spec.file_name()), Fault::Status(503));
    let out = run(&w.ws, &w.mirrors(), &["fetch", "base"]).assert_failure();
    assert!(out.stderr.contains("HTTP status 503"), "{}", out.stderr);
    assert!(out.stderr.contains("b 1 amd64"), "{}", out.stderr);
    assert!(!out.stderr.contains("snapshot 2024"), "{}", out.stderr);
    assert!(
        w.snap.requests().is_empty(),
        "the snapshot service was asked: {:?}",
        w.snap.requests()
    );
    let path = format!("/debian/{}", a.filename);
    assert_eq!(w.server.hits(&path), 3, "two 503s, then the file");
    assert!(w.server.hits(&format!("/debian/{}", b.filename)) >= 4);
    let store = w.store();
    assert!(store.verify_blob(&a.sha256, a.size).unwrap());
    assert!(!store.contains(&b.sha256, b.size));
}

/// The entries of `lock` are exactly the records of `repo`'s index.
fn assert_lock_is(repo: &Repo, lock: &Lockfile, version: &str) {
    for name in ["a", "b"] {
        let deb = repo.deb(name, version);
        let p = lock.package(name).unwrap();
        assert_eq!(
            (&p.version, &p.filename, p.size, &p.sha256),
            (&deb.spec.version, &deb.filename, deb.size, &deb.sha256),
            "{name}"
        );
    }
    assert_eq!(lock.packages.len(), 2);
}

#[test]
fn solving_at_a_snapshot_locks_that_days_archive() {
    let site = Site::new();
    let snap = SnapshotService::new();
    // Both days' Releases expired long ago (Valid-Until a week after).
    let day1 = publish(&site, "1", DEFAULT_DATE, Some(DEFAULT_DATE + 7 * DAY));
    let run1 = snap.import("debian", DEFAULT_DATE + IMPORT_DELAY, day1.root());
    let day2 = publish(&site, "2", DEFAULT_DATE + DAY, Some(DEFAULT_DATE + 8 * DAY));
    let run2 = snap.import("debian", DEFAULT_DATE + DAY + IMPORT_DELAY, day2.root());
    // Today's live archive.
    let day3 = publish(&site, "3", DEFAULT_DATE + 2 * DAY, None);
    let server = site.serve();
    let ws = Workspace::new();
    recipe(&ws, "");
    let mirrors = [
        mirror("debian", &server.url("debian/")),
        mirror("snapshot", &snap.url()),
    ];

    // Without a service, `--snapshot` says what to configure.
    let out = run(&ws, &mirrors[..1], &["solve", "base", "--snapshot", &run1]).assert_failure();
    assert!(
        out.stderr.contains("no snapshot service is configured"),
        "{}",
        out.stderr
    );
    let out = run(
        &ws,
        &mirrors,
        &["solve", "base", "--snapshot", "2024-06-01"],
    )
    .assert_failure();
    assert!(
        out.stderr.contains("not a snapshot timestamp"),
        "{}",
        out.stderr
    );

    // Any time of day 1 after its import reads that run.
    let noon = "20240601T120000Z";
    run(&ws, &mirrors, &["solve", "base", "--snapshot", noon]).assert_success();
    let l = lock(&ws, "base");
    assert_lock_is(&day1, &l, "1");
    assert_eq!(l.sources[0].date, rfc2822(DEFAULT_DATE));
    assert_eq!(l.sources[0].snapshot.as_ref().unwrap().as_str(), noon);
    assert!(
        ws.read("locks/base.lock")
            .contains(&format!("snapshot = \"{noon}\""))
    );

    // The live archive today, then back to day 2: a downgrade, refused
    // unless asked for.
    run(&ws, &mirrors, &["solve", "base"]).assert_success();
    let l = lock(&ws, "base");
    assert_lock_is(&day3, &l, "3");
    assert_eq!(l.sources[0].snapshot, None);
    let out = run(&ws, &mirrors, &["solve", "base", "--snapshot", &run2]).assert_failure();
    assert!(out.stderr.contains("--allow-downgrade"), "{}", out.stderr);
    run(
        &ws,
        &mirrors,
        &["solve", "base", "--snapshot", &run2, "--allow-downgrade"],
    )
    .assert_success();
    assert_lock_is(&day2, &lock(&ws, "base"), "2");

    // The recipe pins day 1: the lock of day 2 is stale for it.
    recipe(&ws, &format!("snapshot = \"{run1}\"\n"));
    let out = run(&ws, &mirrors, &["solve", "base", "--locked"]).assert_failure();
    assert!(out.stderr.contains("changed snapshot"), "{}", out.stderr);
    run(&ws, &mirrors, &["solve", "base", "--allow-downgrade"]).assert_success();
    let l = lock(&ws, "base");
    assert_lock_is(&day1, &l, "1");
    assert_eq!(l.sources[0].snapshot.as_ref().unwrap().as_str(), run1);

    // A second builder (no cache): the audit reads the lock's InRelease at
    // its snapshot, and `fetch` takes the files the live pool dropped from there.
    std::fs::remove_dir_all(ws.cache_dir()).unwrap();
    run(&ws, &mirrors, &["solve", "base", "--locked"]).assert_success();
    let out = run(&ws, &mirrors, &["fetch", "base"]).assert_success();
    assert!(
        out.stderr
            .contains(&format!("fetched 2 (2 from snapshot {run1})")),
        "{}",
        out.stderr
    );
}

#[test]
fn ill_formed_snapshots_in_a_recipe_are_file_line_errors() {
    let ws = Workspace::new();
    recipe(&ws, "snapshot = \"2024-06-01\"\n");
    let out = ws.run(&["solve", "base"]).assert_failure();
    assert!(out.stderr.contains("base.toml:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("not a snapshot timestamp"),
        "{}",
        out.stderr
    );

    let keyring = ws.install_key(TestKey::primary(), "test.pgp");
    let src =
        SourceToml::url("bookworm", "http://127.0.0.1:9/debian/", "bookworm").keyring(&keyring);
    let text = RecipeToml::new("amd64")
        .packages(&["a"])
        .source(src)
        .to_toml();
    ws.write_recipe("base", &format!("{text}snapshot = \"20240601T000000Z\"\n"));
    let out = ws.run(&["solve", "base"]).assert_failure();
    assert!(out.stderr.contains("base.toml:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("needs a named `archive`"),
        "{}",
        out.stderr
    );
}
