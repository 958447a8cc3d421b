//! Issue 11, the lock and recipe half: forged locks, replayed or expired
//! InReleases, edited caches and unbounded recipe files, each against a
//! signed fixture archive served on 127.0.0.1 and the built binary. Every
//! case must fail cleanly, name what is wrong, and write nothing.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use imgbuild::lock::Lockfile;
use sha2::{Digest, Sha256};
use support::*;

const DAY: u32 = 86_400;

/// Seconds since the epoch, now.
fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

/// An archive `debian` with suite `bookworm` (app 1.0 → lib 1.0), dated `date`.
fn archive(site: &Site, date: u32, valid_until: Option<u32>) -> Repo {
    let mut b = site
        .archive("debian")
        .date(date)
        .suite("bookworm", &["amd64"], &["main"])
        .add(DebSpec::new("app", "1.0", "amd64").depends("lib"))
        .add(DebSpec::new("lib", "1.0", "amd64"));
    if let Some(v) = valid_until {
        b = b.valid_until(v);
    }
    b.build()
}

/// A workspace whose recipe `img` asks for `app` from `url`; `extra` is
/// appended to the source table.
fn workspace(url: &str, extra: &str) -> Workspace {
    let ws = Workspace::new();
    let src = ws.trusted_source("bookworm", url, "bookworm", &["main"]);
    let text = RecipeToml::new("amd64")
        .packages(&["app"])
        .essential(false)
        .source(src)
        .to_toml();
    ws.write_recipe("img", &format!("{text}{extra}"));
    ws
}

/// [`archive`] dated `date` on a served site and a [`workspace`] on it
/// (no extra source lines), solved with the built binary.
fn solved(date: u32) -> (Site, Repo, TestServer, Workspace) {
    let site = Site::new();
    let repo = archive(&site, date, None);
    let server = site.serve();
    let ws = workspace(&server.url("debian/"), "");
    ws.run(&["solve", "img"]).assert_success();
    (site, repo, server, ws)
}

fn read_lock(ws: &Workspace) -> Lockfile {
    Lockfile::parse(&ws.read("locks/img.lock"), Path::new("img.lock")).unwrap()
}

fn write_lock(ws: &Workspace, lock: &Lockfile) {
    ws.write_file("locks/img.lock", lock.to_toml().as_bytes());
}

/// Every file under `dir` (relative), sorted: to show nothing was written.
#[allow(dead_code)]
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out.sort();
    out
}

/// Item 4: a lock entry pointed at a file that is not in the signed index
/// (filename, size and sha256 changed together) is refused by
/// `solve --locked` and by `fetch`, naming the entry and the index; nothing
/// is fetched.
#[test]
fn forged_lock_entries_are_refused() {
    let (_site, repo, server, ws) = solved(now() - DAY);
    let good = read_lock(&ws);
    // The genuine lock passes the audit, offline too (all cached).
    ws.run(&["solve", "img", "--locked"]).assert_success();
    ws.run(&["--offline", "solve", "img", "--locked"])
        .assert_success();

    // A trojan next to the real packages, served by the same mirror.
    let trojan = DebSpec::new("app", "1.0", "amd64")
        .script("postinst", "#!/bin/sh\necho pwned > /tmp/pwned\n")
        .build();
    let rel = "pool/main/a/app/app_1.0_amd64-trojan.deb";
    std::fs::write(repo.root().join(rel), &trojan).unwrap();
    let mut forged = good.clone();
    let app = forged
        .packages
        .iter_mut()
        .find(|p| p.name == "app")
        .unwrap();
    app.filename = rel.into();
    app.size = trojan.len() as u64;
    app.sha256 = hex::encode(Sha256::digest(&trojan));
    write_lock(&ws, &forged);

    let out = ws.run(&["solve", "img", "--locked"]).assert_failure();
    for want in [
        "locks/img.lock",
        "[[package]] `app` 1.0 (amd64) from source `bookworm` is not in the signed index",
        "its stanza says Filename `pool/main/a/app/app_1.0_amd64.deb`",
        rel,
        "dists/bookworm/main/binary-amd64/Packages.xz",
        &good.sources[0].inrelease_sha256,
    ] {
        assert!(
            out.stderr.contains(want),
            "missing {want:?}:\n{}",
            out.stderr
        );
    }
    let out = ws.run(&["fetch", "img"]).assert_failure();
    assert!(out.stderr.contains("[[package]] `app`"), "{}", out.stderr);
    assert!(!ws.path().join("vendor").exists(), "fetch wrote the store");
    assert_eq!(server.hits(&format!("/debian/{rel}")), 0);

    // A version that is not in the index at all.
    let mut forged = good.clone();
    forged
        .packages
        .iter_mut()
        .find(|p| p.name == "lib")
        .unwrap()
        .version = "9.9".into();
    write_lock(&ws, &forged);
    let out = ws.run(&["solve", "img", "--locked"]).assert_failure();
    assert!(
        out.stderr.contains("`lib` 9.9 (amd64)") && out.stderr.contains("it has 1.0 (amd64)"),
        "{}",
        out.stderr
    );

    // A header naming an InRelease that is nowhere to be had: the entries
    // are checked against the suite's current signed index, and it says so.
    let mut forged = good.clone();
    forged.sources[0].inrelease_sha256 = "ab".repeat(32);
    write_lock(&ws, &forged);
    let out = ws.run(&["solve", "img", "--locked"]).assert_success();
    assert!(
        out.stderr
            .contains("note: source `bookworm`: the lock's InRelease")
            && out.stderr.contains(&"ab".repeat(32))
            && out
                .stderr
                .contains("checked against that current signed index"),
        "{}",
        out.stderr
    );
    // … and a forged entry fails there too.
    forged
        .packages
        .iter_mut()
        .find(|p| p.name == "lib")
        .unwrap()
        .sha256 = "cd".repeat(32);
    write_lock(&ws, &forged);
    let out = ws.run(&["solve", "img", "--locked"]).assert_failure();
    assert!(
        out.stderr.contains("[[package]] `lib` 1.0 (amd64)"),
        "{}",
        out.stderr
    );
    // A header naming another signer.
    let mut forged = good.clone();
    forged.sources[0].signed_by = "0".repeat(40);
    write_lock(&ws, &forged);
    let out = ws.run(&["solve", "img", "--locked"]).assert_failure();
    assert!(out.stderr.contains("signed-by 0000"), "{}", out.stderr);

    // The genuine lock still passes, and fetches.
    write_lock(&ws, &good);
    ws.run(&["solve", "img", "--locked"]).assert_success();
    ws.run(&["fetch", "img"]).assert_success();
}

/// Item 4, old locks: once the suite moved on (and the cache is fresh), the
/// lock's entries are checked against the current signed index; an entry
/// that left it is refused, naming it and what the index has now.
#[test]
fn moved_on_suites_are_checked_against_the_current_index() {
    let t = now();
    let (site, _, _server, ws) = solved(t - 2 * DAY);
    // Same packages, newer Release: the lock still checks, with a note.
    archive(&site, t - DAY, None);
    std::fs::remove_dir_all(ws.cache_dir()).unwrap();
    let out = ws.run(&["fetch", "img"]).assert_success();
    assert!(
        out.stderr.contains("note: source `bookworm`"),
        "{}",
        out.stderr
    );
    // lib 1.0 replaced by 2.0: the lock's lib is no longer a signed stanza.
    site.archive("debian")
        .date(t - DAY / 2)
        .suite("bookworm", &["amd64"], &["main"])
        .add(DebSpec::new("app", "1.0", "amd64").depends("lib"))
        .add(DebSpec::new("lib", "2.0", "amd64"))
        .build();
    std::fs::remove_dir_all(ws.cache_dir()).unwrap();
    std::fs::remove_dir_all(ws.path().join("vendor")).unwrap();
    let out = ws.run(&["fetch", "img"]).assert_failure();
    assert!(
        out.stderr.contains("[[package]] `lib` 1.0 (amd64)")
            && out.stderr.contains("it has 2.0 (amd64)"),
        "{}",
        out.stderr
    );
    assert!(!ws.path().join("vendor").exists());
    // A replayed InRelease older than the lock's stands in for nothing.
    archive(&site, t - 5 * DAY, None);
    std::fs::remove_dir_all(ws.cache_dir()).unwrap();
    let out = ws.run(&["fetch", "img"]).assert_failure();
    assert!(
        out.stderr.contains("older than the Date the lock records")
            && out.stderr.contains(&repo::rfc2822(t - 5 * DAY)),
        "{}",
        out.stderr
    );
    assert!(!ws.path().join("vendor").exists());
}

/// Item 4, cost: a warm `solve --locked` downloads nothing.
#[test]
fn warm_locked_audit_downloads_nothing() {
    let (_site, _, server, ws) = solved(now() - DAY);
    server.reset_log();
    ws.run(&["solve", "img", "--locked"]).assert_success();
    assert_eq!(server.total_requests(), 0, "{:?}", server.requests());
    // A fresh cache: the audit fetches what it needs from the mirror.
    std::fs::remove_dir_all(ws.cache_dir()).unwrap();
    ws.run(&["solve", "img", "--locked"]).assert_success();
    assert!(server.total_requests() > 0);
}

/// Item 5: a replayed older InRelease, an expired one, and one from the
/// future are refused, naming the suite and both dates; the lock is kept.
#[test]
fn stale_replayed_and_future_inreleases_are_refused() {
    let t = now();
    let (site, _, server, ws) = solved(t - DAY);
    let before = ws.read("locks/img.lock");

    // Replay: the mirror now serves an InRelease 10 days older.
    archive(&site, t - 11 * DAY, None);
    let out = ws.run(&["solve", "img", "--update"]).assert_failure();
    let (old, new) = (repo::rfc2822(t - 11 * DAY), repo::rfc2822(t - DAY));
    for want in [
        "source `bookworm` (suite `bookworm`)",
        &old,
        &new,
        "older than",
        "--allow-downgrade",
    ] {
        assert!(
            out.stderr.contains(want),
            "missing {want:?}:\n{}",
            out.stderr
        );
    }
    assert_eq!(ws.read("locks/img.lock"), before, "the lock changed");
    ws.run(&["solve", "img", "--update", "--allow-downgrade"])
        .assert_success();
    assert!(ws.read("locks/img.lock").contains(&old));

    // Expired: Valid-Until yesterday.
    let ws = workspace(&server.url("debian/"), "");
    archive(&site, t - 3 * DAY, Some(t - DAY));
    let out = ws.run(&["solve", "img"]).assert_failure();
    assert!(
        out.stderr.contains("expired")
            && out.stderr.contains(&repo::rfc2822(t - DAY))
            && out.stderr.contains("check-valid-until = false"),
        "{}",
        out.stderr
    );
    assert!(!ws.path().join("locks/img.lock").exists());
    // A snapshot archive says so, and is accepted.
    let snap = workspace(&server.url("debian/"), "check-valid-until = false\n");
    snap.run(&["solve", "img"]).assert_success();

    // From the future: a day ahead (beyond the 5 minutes of skew).
    archive(&site, t + DAY, None);
    let ws = workspace(&server.url("debian/"), "");
    let out = ws.run(&["solve", "img"]).assert_failure();
    assert!(
        out.stderr.contains("in the future") && out.stderr.contains(&repo::rfc2822(t + DAY)),
        "{}",
        out.stderr
    );
    assert!(!ws.path().join("locks/img.lock").exists());
}

/// Item 6: an edited cached index text, or an edited record snapshot, never
/// puts a version that is not in the signed index into the lock.
#[test]
fn edited_index_cache_does_not_reach_the_lock() {
    let (_site, _, _server, ws) = solved(now() - DAY);
    let before = ws.read("locks/img.lock");
    let only = |sub: &str| {
        let dir = ws.cache_dir().join("indexes").join(sub);
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files[0].clone()
    };
    // The text: `lib 1.0` becomes `lib 6.6` (same length), snapshot dropped.
    let plain = only("plain");
    let text = std::fs::read_to_string(&plain).unwrap();
    std::fs::write(&plain, text.replace("Version: 1.0", "Version: 6.6")).unwrap();
    std::fs::remove_file(only("snapshot")).unwrap();
    ws.run(&["solve", "img", "--update"]).assert_success();
    let after = ws.read("locks/img.lock");
    assert_eq!(after, before);
    assert!(!after.contains("6.6"));
    // The edited text was dropped and replaced by the verified one.
    assert!(
        !std::fs::read_to_string(only("plain"))
            .unwrap()
            .contains("6.6")
    );

    // The snapshot: its version strings edited in place (the string pool
    // holds each distinct string once).
    let snap = only("snapshot");
    let mut edited = std::fs::read(&snap).unwrap();
    let at: Vec<usize> = edited
        .windows(3)
        .enumerate()
        .filter(|(_, w)| *w == b"1.0")
        .map(|(i, _)| i)
        .collect();
    assert!(!at.is_empty(), "a version in the snapshot");
    for i in at {
        edited[i..i + 3].copy_from_slice(b"6.6");
    }
    std::fs::write(&snap, &edited).unwrap();
    let out = ws.run(&["solve", "img", "--update"]).assert_failure();
    for want in [
        "locks/img.lock",
        "[[package]] `app` 6.6 (amd64)",
        "not in the signed index",
        "it has 1.0 (amd64)",
    ] {
        assert!(
            out.stderr.contains(want),
            "missing {want:?}:\n{}",
            out.stderr
        );
    }
    assert_eq!(ws.read("locks/img.lock"), before, "the lock changed");
}

/// A damaged record snapshot (truncated, or a string in it that is not
/// UTF-8, which only shows when a record is built) is a cache miss: the
/// verified text is parsed again, the same lock comes out and the snapshot
/// is written anew. Never an error, never a panic.
#[test]
fn damaged_snapshots_are_rebuilt() {
    let (_site, _, _server, ws) = solved(now() - DAY);
    let before = ws.read("locks/img.lock");
    let snap = || {
        let dir = ws.cache_dir().join("indexes").join("snapshot");
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files[0].clone()
    };
    let good = std::fs::read(snap()).unwrap();
    let app = good
        .windows(3)
        .rposition(|w| w == b"app")
        .expect("the name in the pool");
    let mut bad_name = good.clone();
    bad_name[app] = 0xff;
    // A version is only read when its record is built, after the snapshot
    // was opened: the damage shows mid-selection.
    let version = good
        .windows(3)
        .position(|w| w == b"1.0")
        .expect("a version in the pool");
    let mut bad_version = good.clone();
    bad_version[version] = 0xff;
    let truncated = good[..good.len() / 2].to_vec();
    for damaged in [truncated, bad_name, bad_version, b"garbage".to_vec()] {
        std::fs::write(snap(), &damaged).unwrap();
        ws.run(&["solve", "img", "--update"]).assert_success();
        assert_eq!(ws.read("locks/img.lock"), before);
        assert_eq!(std::fs::read(snap()).unwrap(), good, "rewritten");
        ws.run(&["solve", "img", "--locked"]).assert_success();
    }
}

/// Item 7: recipe-named files are read with a bound: a keyring that is a
/// device fails at once, naming the recipe line.
#[test]
fn unbounded_keyrings_fail_fast() {
    let site = Site::new();
    archive(&site, now() - DAY, None);
    let server = site.serve();
    let ws = Workspace::new();
    let src = SourceToml::url("bookworm", &server.url("debian/"), "bookworm")
        .components(&["main"])
        .keyring("/dev/zero");
    ws.write_recipe(
        "img",
        &RecipeToml::new("amd64")
            .packages(&["app"])
            .source(src)
            .to_toml(),
    );
    let t = Instant::now();
    let out = ws.run(&["solve", "img"]).assert_failure();
    assert!(t.elapsed() < Duration::from_secs(20));
    assert!(
        out.stderr.contains("recipes/img.toml:")
            && out
                .stderr
                .contains("keyring `/dev/zero` cannot be read: a character device"),
        "{}",
        out.stderr
    );
    // A file that is not a key at all: the file and a plain message.
    let ws = Workspace::new();
    ws.write_file("recipes/keys/bad.pgp", b"this is not a key\n");
    let src = SourceToml::url("bookworm", &server.url("debian/"), "bookworm")
        .components(&["main"])
        .keyring("keys/bad.pgp");
    ws.write_recipe(
        "img",
        &RecipeToml::new("amd64")
            .packages(&["app"])
            .source(src)
            .to_toml(),
    );
    let out = ws.run(&["solve", "img"]).assert_failure();
    assert!(
        out.stderr.contains("keys/bad.pgp") && out.stderr.contains("not an OpenPGP keyring"),
        "{}",
        out.stderr
    );
    assert!(!ws.path().join("locks/img.lock").exists());
}

/// Item 10: `foo:badarch` and `app |` in a recipe are file:line errors that
/// say what is wrong.
#[test]
fn bad_relations_in_recipes_are_clear() {
    let ws = Workspace::new();
    let src = ws.trusted_source(
        "bookworm",
        "http://127.0.0.1:9/debian/",
        "bookworm",
        &["main"],
    );
    for (req, want) in [
        ("foo:badarch", "bad architecture qualifier `:badarch`"),
        ("app |", "invalid relation `app |`: empty alternative"),
    ] {
        ws.write_recipe(
            "img",
            &RecipeToml::new("amd64")
                .packages(&[req])
                .source(src.clone())
                .to_toml(),
        );
        let out = ws.run(&["solve", "img"]).assert_failure();
        assert!(
            out.stderr.contains("recipes/img.toml:") && out.stderr.contains(want),
            "{req}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("``"), "{}", out.stderr);
    }
}

/// Item 2: `copy` sources outside the recipe's directory are refused when
/// the recipe is loaded, with its file:line, before anything is written.
#[test]
fn copy_steps_cannot_read_host_files() {
    let site = Site::new();
    archive(&site, now() - DAY, None);
    let server = site.serve();
    let ws = workspace(&server.url("debian/"), "");
    let recipe = ws.read("recipes/img.toml");
    let line = recipe.lines().count() + 3;
    ws.write_file("outside", b"host secret\n");
    std::os::unix::fs::symlink("../../outside", ws.path().join("recipes/link")).unwrap();
    for from in ["/etc/shadow", "../outside", "link", "/proc/self/environ"] {
        ws.write_recipe(
            "img",
            &format!("{recipe}\n[[step]]\ncopy = \"{from}\"\nto = \"/etc/x\"\n"),
        );
        for verb in [&["solve", "img"][..], &["build", "img"][..]] {
            let out = ws.run(verb).assert_failure();
            assert!(
                out.stderr
                    .contains(&format!("recipes/img.toml:{line}:8: `copy` source"))
                    && out.stderr.contains("inside the recipe's directory"),
                "{from}: {}",
                out.stderr
            );
        }
        assert!(!ws.path().join("locks/img.lock").exists());
        assert!(!ws.path().join("out").exists());
    }
}
