//! `imgbuild outdated`: what `solve --update` would move against the
//! archive as it is now, over a signed fixture archive on 127.0.0.1; the
//! lock is never written; exit 0 = current, 1 = updates, 2 = could not tell.

mod support;

use support::solving::*;
use support::*;

#[test]
fn lists_what_an_update_would_move_and_writes_nothing() {
    let site = Site::new();
    let build = |versions: &[&str]| a_depends_on_b(&site, versions);
    build(&["1"]);
    let server = site.serve();
    let ws = Workspace::new();
    recipe(&ws, "base", &server.url("debian/"), &["a"], false);
    ws.run(&["solve", "base"]).assert_success();
    let lock_path = ws.path().join("locks/base.lock");
    let before = std::fs::read(&lock_path).unwrap();

    let out = ws.run(&["outdated", "base"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("the lock is current"), "{}", out.stdout);

    // The archive moves on: both packages have a version 2.
    build(&["1", "2"]);
    let out = ws.run(&["outdated", "base"]);
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("2 update(s) available"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains(" a ") || l.trim_start().starts_with("a "))
            && out.stdout.contains("1 -> 2"),
        "{}",
        out.stdout
    );
    let json = ws.run(&["outdated", "base", "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let names: Vec<&str> = v["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(v["drift"][0]["old"], "1");
    assert_eq!(v["drift"][0]["new"], "2");
    assert_eq!(v["drift"][0]["source"], "bookworm");
    assert_eq!(v["drift"][0]["security"], false);
    // Nothing was written: the lock still pins version 1.
    assert_eq!(std::fs::read(&lock_path).unwrap(), before);
    assert_eq!(version_of(&lock(&ws, "base"), "a"), Some("1"));

    // After the update, nothing is left to move.
    ws.run(&["solve", "base", "--update"]).assert_success();
    let out = ws.run(&["outdated", "base"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);
}

#[test]
fn without_a_lock_it_cannot_tell() {
    let site = Site::new();
    site.archive("debian")
        .suite("bookworm", &["amd64"], &["main"])
        .add(DebSpec::new("a", "1", "amd64"))
        .build();
    let server = site.serve();
    let ws = Workspace::new();
    recipe(&ws, "base", &server.url("debian/"), &["a"], false);
    let out = ws.run(&["outdated", "base"]);
    assert_eq!(out.status.code(), Some(2), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("base.lock"), "{}", out.stderr);
}
