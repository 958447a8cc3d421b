//! `imgbuild solve` end to end over signed fixture archives served on
//! 127.0.0.1: every relation kind locked with provenance, reproducible
//! locks, explanations, refused indexes, `--locked`, mirrors, `--offline`,
//! `--update`.

mod support;

use sha2::{Digest, Sha256};
use support::solving::*;
use support::*;

#[test]
fn locks_every_relation_kind_with_provenance() {
    let (site, repo) = relations_site();
    let server = site.serve();
    let ws = Workspace::new();
    let src = SourceToml::archive("bookworm", "debian", "bookworm")
        .components(&["main"])
        .keyring(&ws.install_key(TestKey::primary(), "test.pgp"));
    ws.write_recipe(
        "base",
        &RecipeToml::new("amd64")
            .packages(&["app", "tool"])
            .source(src)
            .to_toml(),
    );
    let mirror = format!("debian={}", server.url("debian/"));
    ws.run(&["solve", "base", "--mirror", &mirror])
        .assert_success();
    let l = lock(&ws, "base");
    let names: Vec<&str> = l.packages.iter().map(|p| p.name.as_str()).collect();
    // Left alternative (versioned) wins; a provider satisfies the virtual name; the
    // essential and required packages come along; nothing else does.
    assert_eq!(
        names,
        [
            "app", "base", "exim", "libfoo", "perl", "prep", "req", "tool"
        ]
    );
    assert_eq!(version_of(&l, "libfoo"), Some("1.3"));
    assert_eq!(
        l.package("base").unwrap().reason.as_deref(),
        Some("essential")
    );
    assert_eq!(l.package("app").unwrap().reason.as_deref(), Some("recipe"));
    let app = l.package("app").unwrap();
    let edges: Vec<(&str, &str, &str)> = app
        .depends
        .iter()
        .map(|e| (e.name.as_str(), e.relation.as_str(), e.kind.as_str()))
        .collect();
    assert_eq!(
        edges,
        [
            ("prep", "prep", "pre-depends"),
            ("libfoo", "libfoo (>= 1.2) | libbar", "depends"),
            ("exim", "mail-transport-agent", "depends"),
        ]
    );
    // Artifacts are pinned by archive-relative path, size and hash of the real .deb.
    let deb = repo.deb("libfoo", "1.3");
    let p = l.package("libfoo").unwrap();
    assert_eq!(
        (p.filename.as_str(), p.size, p.sha256.as_str()),
        (deb.filename.as_str(), deb.size, deb.sha256.as_str())
    );
    assert!(!p.filename.contains("127.0.0.1") && p.filename.starts_with("pool/"));
    // Provenance: the signed index it came from.
    let inrelease = std::fs::read(repo.dist_dir("bookworm").join("InRelease")).unwrap();
    let s = &l.sources[0];
    assert_eq!(s.inrelease_sha256, hex::encode(Sha256::digest(&inrelease)));
    assert_eq!(s.signed_by, TestKey::primary().fingerprint);
    assert!(s.date.contains("2024"), "{}", s.date);
    assert_eq!(s.indexes[0].path, "main/binary-amd64/Packages.xz");
    // No mirror URL anywhere in the lock.
    assert!(!ws.read("locks/base.lock").contains("127.0.0.1"));
}

#[test]
fn same_inputs_give_the_same_bytes() {
    let (site, _repo) = relations_site();
    let server = site.serve();
    let ws = Workspace::new();
    recipe(&ws, "base", &server.url("debian/"), &["app", "old"], true);
    ws.run(&["solve", "base"]).assert_success();
    let first = ws.read("locks/base.lock");
    let again = ws.run(&["solve", "base"]).assert_success();
    assert!(again.stderr.contains("Unchanged"), "{}", again.stderr);
    std::fs::remove_file(ws.path().join("locks/base.lock")).unwrap();
    ws.run(&["solve", "base"]).assert_success();
    assert_eq!(first, ws.read("locks/base.lock"));
}

#[test]
fn unsatisfiable_explains_in_debian_terms_and_writes_nothing() {
    let site = Site::new();
    let _repo = site
        .archive("debian")
        .suite("bookworm", &["amd64"], &["main"])
        .suite("bullseye", &["amd64"], &["main"])
        .package(
            "bookworm",
            "main",
            DebSpec::new("python3", "3.11.2-1", "amd64"),
        )
        .package(
            "bookworm",
            "main",
            DebSpec::new("python3-thrift", "0.17.0-2", "amd64").depends("python3 (>= 3.11~)"),
        )
        .package(
            "bullseye",
            "main",
            DebSpec::new("python3", "3.9.2-3", "amd64"),
        )
        .package(
            "bullseye",
            "main",
            DebSpec::new("python3-thrift", "0.13.0-6", "amd64")
                .depends("python3 (<< 3.10), python3 (>= 3.9~)"),
        )
        .build();
    let server = site.serve();
    let ws = Workspace::new();
    let url = server.url("debian/");
    let bookworm = ws
        .trusted_source("bookworm", &url, "bookworm", &["main"])
        .priority(500);
    let bullseye = ws
        .trusted_source("bullseye", &url, "bullseye", &["main"])
        .priority(100);
    let base = RecipeToml::new("amd64")
        .essential(false)
        .source(bookworm)
        .source(bullseye);
    // The pin alone is solvable: the old suite supplies both packages.
    ws.write_recipe(
        "pin",
        &base
            .clone()
            .packages(&["python3-thrift (<< 0.14)"])
            .to_toml(),
    );
    ws.run(&["solve", "pin"]).assert_success();
    let l = lock(&ws, "pin");
    assert_eq!(version_of(&l, "python3"), Some("3.9.2-3"));
    assert_eq!(l.package("python3").unwrap().source, "bullseye");
    // Without the pin, the preferred suite wins although both carry the package.
    ws.write_recipe(
        "free",
        &base.clone().packages(&["python3-thrift"]).to_toml(),
    );
    ws.run(&["solve", "free"]).assert_success();
    assert_eq!(
        version_of(&lock(&ws, "free"), "python3-thrift"),
        Some("0.17.0-2")
    );
    // Pin + modern python: no solution, and a chain a person can act on.
    ws.write_recipe(
        "both",
        &base
            .packages(&["python3-thrift (<< 0.14)", "python3 (>= 3.11)"])
            .to_toml(),
    );
    let out = ws.run(&["solve", "both"]).assert_failure();
    let why = &out.stderr;
    assert!(
        why.contains("python3-thrift 0.13.0-6 (bullseye) depends on python3 (<< 3.10)"),
        "{why}"
    );
    assert!(
        why.contains("the recipe requires python3 (>= 3.11)"),
        "{why}"
    );
    assert!(
        why.contains("the recipe requires python3-thrift (<< 0.14)"),
        "{why}"
    );
    for internal in ["alternative#", "instance#", "<absent>", "∅"] {
        assert!(
            !why.contains(internal),
            "internal name {internal} in:\n{why}"
        );
    }
    assert!(!ws.path().join("locks/both.lock").exists());
}

#[test]
fn tampered_or_badly_signed_indexes_are_refused() {
    for tamper in ["index", "inrelease", "wrong-key"] {
        let (site, repo) = relations_site();
        match tamper {
            "index" => repo.tamper_index("bookworm", "main", "amd64"),
            "inrelease" => repo.tamper_inrelease("bookworm"),
            _ => repo.resign_with(TestKey::wrong()),
        }
        let server = site.serve();
        let ws = Workspace::new();
        recipe(&ws, "base", &server.url("debian/"), &["app"], false);
        let out = ws.run(&["solve", "base"]).assert_failure();
        let expected = if tamper == "index" {
            "sha256"
        } else {
            "signature"
        };
        assert!(
            out.stderr.to_lowercase().contains(expected),
            "{tamper}: {}",
            out.stderr
        );
        assert!(
            !ws.path().join("locks/base.lock").exists(),
            "{tamper}: a lock was written"
        );
        // Nothing unverified is cached: the cache holds no index file.
        let idx = ws.cache_dir().join("indexes");
        let cached = walk_files(&idx);
        assert!(
            cached.is_empty() || tamper != "index",
            "{tamper}: cached {cached:?}"
        );
    }
}

#[test]
fn locked_catches_an_edited_recipe_and_touches_nothing() {
    let (site, _repo) = relations_site();
    let server = site.serve();
    let ws = Workspace::new();
    let url = server.url("debian/");
    ws.run(&["solve", "--locked", "base"]).assert_failure();
    recipe(&ws, "base", &url, &["app"], false);
    let out = ws.run(&["solve", "--locked", "base"]).assert_failure();
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    ws.run(&["solve", "base"]).assert_success();
    let before = ws.read("locks/base.lock");
    let requests = server.total_requests();
    ws.run(&["solve", "--locked", "base"]).assert_success();
    assert_eq!(
        server.total_requests(),
        requests,
        "--locked must not use the network"
    );
    // Cosmetic edits keep the lock fresh; a real change makes it stale.
    let path = ws.path().join("recipes/base.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("# a comment\n{text}")).unwrap();
    ws.run(&["solve", "--locked", "base"]).assert_success();
    recipe(&ws, "base", &url, &["app", "tool"], false);
    let out = ws.run(&["solve", "--locked", "base"]).assert_failure();
    assert!(out.stderr.contains("stale"), "{}", out.stderr);
    assert_eq!(before, ws.read("locks/base.lock"));
}

#[test]
fn mirrors_are_configuration() {
    let (site, _repo) = relations_site();
    let server = site.serve();
    let ws = Workspace::new();
    let src = SourceToml::archive("bookworm", "debian", "bookworm")
        .components(&["main"])
        .keyring(&ws.install_key(TestKey::primary(), "test.pgp"));
    ws.write_recipe(
        "base",
        &RecipeToml::new("amd64")
            .packages(&["app"])
            .essential(false)
            .source(src)
            .to_toml(),
    );
    let out = ws.run(&["solve", "base"]).assert_failure();
    assert!(out.stderr.contains("--mirror debian=URL"), "{}", out.stderr);
    assert!(
        out.stderr.contains("IMGBUILD_MIRROR_DEBIAN"),
        "{}",
        out.stderr
    );
    // The environment variable works too, and gives the same lock as the flag.
    let out = ws
        .command(&["solve", "base"])
        .env("IMGBUILD_MIRROR_DEBIAN", server.url("debian/"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And so does the host's apt configuration (deb822 .sources).
    let apt = ws.path().parent().unwrap().join("apt/sources.list.d");
    std::fs::create_dir_all(&apt).unwrap();
    std::fs::write(
        apt.join("debian.sources"),
        format!(
            "Types: deb\nURIs: {}\nSuites: bookworm\nComponents: main\n",
            server.url("debian")
        ),
    )
    .unwrap();
    std::fs::remove_file(ws.path().join("locks/base.lock")).unwrap();
    ws.run(&["solve", "base"]).assert_success();
}

#[test]
fn offline_uses_only_verified_cache() {
    let (site, _repo) = relations_site();
    let server = site.serve();
    let ws = Workspace::new();
    recipe(&ws, "base", &server.url("debian/"), &["app"], false);
    let out = ws.run(&["--offline", "solve", "base"]).assert_failure();
    assert!(out.stderr.contains("offline"), "{}", out.stderr);
    ws.run(&["solve", "base"]).assert_success();
    let first = ws.read("locks/base.lock");
    std::fs::remove_file(ws.path().join("locks/base.lock")).unwrap();
    drop(server);
    ws.run(&["--offline", "solve", "base"]).assert_success();
    assert_eq!(first, ws.read("locks/base.lock"));
}

#[test]
fn update_moves_only_what_is_asked() {
    let site = Site::new();
    let build = |versions: &[&str]| a_depends_on_b(&site, versions);
    build(&["1"]);
    let server = site.serve();
    let ws = Workspace::new();
    recipe(&ws, "base", &server.url("debian/"), &["a"], false);
    ws.run(&["solve", "base"]).assert_success();
    build(&["1", "2"]);
    ws.run(&["solve", "base"]).assert_success();
    let l = lock(&ws, "base");
    assert_eq!(
        (version_of(&l, "a"), version_of(&l, "b")),
        (Some("1"), Some("1"))
    );
    let out = ws.run(&["solve", "base", "--update", "a"]).assert_success();
    assert!(out.stderr.contains("Updating a 1 -> 2"), "{}", out.stderr);
    let l = lock(&ws, "base");
    assert_eq!(
        (version_of(&l, "a"), version_of(&l, "b")),
        (Some("2"), Some("1"))
    );
    ws.run(&["solve", "base", "--update"]).assert_success();
    let l = lock(&ws, "base");
    assert_eq!(
        (version_of(&l, "a"), version_of(&l, "b")),
        (Some("2"), Some("2"))
    );
    let out = ws
        .run(&["solve", "base", "--update", "nope"])
        .assert_failure();
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
}
