//! Smoke tests of the fixture kit itself: the .debs are real (dpkg-deb), the
//! signatures are real OpenPGP (gpgv), the archive layout is consistent, and
//! the HTTP server speaks enough HTTP/1.1 (Range, HEAD, 404, faults).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};
use support::*;

/// Whether an external tool can be run; tests skip their external checks otherwise.
fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

fn sample_spec() -> DebSpec {
    DebSpec::new("hello", "1:2.10-3", "amd64")
        .depends("libc6 (>= 2.34), foo | bar")
        .pre_depends("dpkg (>= 1.17)")
        .multi_arch("foreign")
        .priority("optional")
        .description("say hello\n A longer description.\n\n Second paragraph.")
        .file("/usr/bin/hello", b"#!/bin/sh\necho hello\n".to_vec(), 0o755)
        .file(
            "/usr/share/doc/hello/copyright",
            b"public domain\n".to_vec(),
            0o644,
        )
        .symlink("/usr/bin/hi", "hello")
        .script("postinst", "#!/bin/sh\nset -e\nexit 0\n")
}

#[test]
fn deb_is_deterministic_and_dpkg_reads_it() {
    let a = sample_spec().build();
    let b = sample_spec().build();
    assert_eq!(
        Sha256::digest(&a),
        Sha256::digest(&b),
        "same spec, same bytes"
    );
    assert_ne!(
        a,
        sample_spec().depends("libc6").build(),
        "spec changes show"
    );
    assert_eq!(sample_spec().file_name(), "hello_2.10-3_amd64.deb");
    assert!(
        a.starts_with(b"!<arch>\ndebian-binary"),
        "ar with debian-binary first"
    );

    if !have("dpkg-deb") {
        eprintln!("dpkg-deb absent: skipping dpkg-deb checks");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [("x.deb", a), ("gz.deb", sample_spec().gzip().build())] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let info = dpkg_deb(&["--info"], &path);
        assert!(info.contains("Package: hello"), "{info}");
        assert!(info.contains("Version: 1:2.10-3"), "{info}");
        assert!(
            info.contains("Depends: libc6 (>= 2.34), foo | bar"),
            "{info}"
        );
        assert!(
            info.contains(" postinst"),
            "maintainer script listed: {info}"
        );
        let field = dpkg_deb(&["--field"], &path);
        assert!(field.contains("Multi-Arch: foreign"), "{field}");
        let contents = dpkg_deb(&["--contents"], &path);
        assert!(contents.contains("./usr/bin/hello"), "{contents}");
        assert!(contents.contains("./usr/bin/hi -> hello"), "{contents}");
        assert!(contents.contains("-rwxr-xr-x root/root"), "{contents}");
    }
}

fn dpkg_deb(args: &[&str], path: &Path) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dpkg-deb {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn hostile_raw_entries_are_written_verbatim() {
    let deb = DebSpec::new("evil", "1", "all")
        .file("/etc/ok", b"ok".to_vec(), 0o644)
        .raw_entry(RawEntry {
            name: b"./../../etc/passwd".to_vec(),
            kind: RawKind::File,
            data: b"root::0:0::/:/bin/sh\n".to_vec(),
            mode: 0o644,
        })
        .raw_entry(RawEntry {
            name: b"/abs/link".to_vec(),
            kind: RawKind::Symlink(b"/etc".to_vec()),
            data: Vec::new(),
            mode: 0o777,
        })
        .build();
    let mut ar = ar::Archive::new(deb.as_slice());
    let mut names = Vec::new();
    let mut data_tar = Vec::new();
    while let Some(entry) = ar.next_entry() {
        let mut entry = entry.unwrap();
        let name = String::from_utf8(entry.header().identifier().to_vec()).unwrap();
        if name == "data.tar.xz" {
            entry.read_to_end(&mut data_tar).unwrap();
        }
        names.push(name);
    }
    assert_eq!(names, ["debian-binary", "control.tar.xz", "data.tar.xz"]);
    let tar_bytes = liblzma::decode_all(data_tar.as_slice()).unwrap();
    let mut tar = tar::Archive::new(tar_bytes.as_slice());
    let paths: Vec<Vec<u8>> = tar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path_bytes().into_owned())
        .collect();
    assert!(paths.contains(&b"./../../etc/passwd".to_vec()), "{paths:?}");
    assert!(paths.contains(&b"/abs/link".to_vec()), "{paths:?}");
    assert!(
        paths.contains(&b"./etc/".to_vec()),
        "implied parent dir: {paths:?}"
    );
}

#[test]
fn signatures_are_real_openpgp() {
    let key = TestKey::primary();
    assert_eq!(key.fingerprint.len(), 40);
    assert_ne!(key.fingerprint, TestKey::wrong().fingerprint);
    assert!(
        key.armored
            .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    );

    let site = Site::new();
    let repo = site
        .archive("debian")
        .suite("bookworm", &["amd64"], &["main"])
        .add(DebSpec::new("foo", "1.0", "amd64"))
        .build();
    let dist = repo.dist_dir("bookworm");
    let inrelease = repo.inrelease_text("bookworm");
    assert!(inrelease.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n"));

    // In-process check with the pgp crate (runs even without gpgv).
    let (msg, _) = pgp::composed::CleartextSignedMessage::from_string(&inrelease).unwrap();
    msg.verify(key.public_key())
        .expect("signed by the primary key");
    assert!(msg.verify(TestKey::wrong().public_key()).is_err());

    if !have("gpgv") {
        eprintln!("gpgv absent: skipping gpgv checks");
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let good = keys.path().join("good.pgp");
    let wrong = keys.path().join("wrong.pgp");
    key.write_keyring(&good).unwrap();
    TestKey::wrong().write_keyring(&wrong).unwrap();
    let gpgv = |keyring: &Path, files: &[&Path]| {
        Command::new("gpgv")
            .env("GNUPGHOME", keys.path())
            .arg("--keyring")
            .arg(keyring)
            .args(files)
            .output()
            .unwrap()
            .status
            .success()
    };
    let (inr, rel, gpg) = (
        dist.join("InRelease"),
        dist.join("Release"),
        dist.join("Release.gpg"),
    );
    assert!(gpgv(&good, &[&inr]), "InRelease verifies");
    assert!(gpgv(&good, &[&gpg, &rel]), "Release.gpg verifies");
    assert!(!gpgv(&wrong, &[&inr]), "wrong keyring rejects");

    repo.tamper_inrelease("bookworm");
    assert!(!gpgv(&good, &[&inr]), "tampered InRelease rejected");
    repo.resign_with(TestKey::wrong());
    assert!(!gpgv(&good, &[&inr]), "re-signed by wrong key: rejected");
    assert!(
        gpgv(&wrong, &[&inr]),
        "re-signed by wrong key: that key verifies"
    );
}

fn two_archives(site: &Site) -> (Repo, Repo) {
    let debian = site
        .archive("debian")
        .suite("bookworm", &["amd64", "arm64"], &["main", "contrib"])
        .suite("trixie", &["amd64"], &["main"])
        .package(
            "bookworm",
            "main",
            DebSpec::new("libfoo1", "1.0-1", "amd64"),
        )
        .package("bookworm", "main", DebSpec::new("foo-data", "1.0-1", "all"))
        .package(
            "bookworm",
            "contrib",
            DebSpec::new("bar", "2", "arm64").essential(),
        )
        .package("trixie", "main", DebSpec::new("libfoo1", "1.0-1", "amd64"))
        .package("trixie", "main", DebSpec::new("libfoo1", "2.0-1", "amd64"))
        .build();
    let k8s = site
        .flat("kubernetes", &["amd64"])
        .add(DebSpec::new("kubectl", "1.32.3-1.1", "amd64").depends("foo-data"))
        .build();
    (debian, k8s)
}

#[test]
fn archive_layout_is_consistent() {
    let site = Site::new();
    let (debian, k8s) = two_archives(&site);
    let root = debian.root();
    assert!(
        root.join("pool/main/libf/libfoo1/libfoo1_1.0-1_amd64.deb")
            .is_file()
    );
    assert!(
        root.join("pool/main/f/foo-data/foo-data_1.0-1_all.deb")
            .is_file()
    );

    let amd = debian.packages_text("bookworm", "main", "amd64");
    let arm = debian.packages_text("bookworm", "main", "arm64");
    assert!(amd.contains("Package: libfoo1\n") && amd.contains("Package: foo-data\n"));
    assert!(
        !arm.contains("libfoo1") && arm.contains("Package: foo-data\n"),
        "all in every arch"
    );
    let foo = debian.deb("foo-data", "1.0-1");
    assert!(amd.contains(&format!("Filename: {}\nSize: {}\n", foo.filename, foo.size)));
    assert!(amd.contains(&format!("SHA256: {}\n", foo.sha256)));
    assert!(
        debian
            .packages_text("bookworm", "contrib", "arm64")
            .contains("Essential: yes\n")
    );
    assert_eq!(
        debian
            .packages_text("trixie", "main", "amd64")
            .matches("Package:")
            .count(),
        2
    );

    // Every Release SHA256 line matches the file and its by-hash copy.
    let release = debian.release_text("bookworm");
    assert!(
        release.contains("Date: Sat, 01 Jun 2024 00:00:00 UTC\n"),
        "{release}"
    );
    assert!(
        release.contains("Components: main contrib\nDescription"),
        "{release}"
    );
    let sha = release.split("SHA256:\n").nth(1).unwrap();
    let dist = debian.dist_dir("bookworm");
    let mut count = 0;
    for line in sha.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let bytes = std::fs::read(dist.join(f[2])).unwrap();
        assert_eq!(
            (hex::encode(Sha256::digest(&bytes)), bytes.len().to_string()),
            (f[0].into(), f[1].into())
        );
        let dir = Path::new(f[2]).parent().unwrap();
        assert_eq!(
            std::fs::read(dist.join(dir).join("by-hash/SHA256").join(f[0])).unwrap(),
            bytes
        );
        count += 1;
    }
    assert_eq!(count, 2 * 2 * 3, "2 components x 2 arches x 3 encodings");

    // Flat repository: indexes at the root, Filename relative to it.
    let flat = k8s.packages_text("/", "", "");
    let kubectl = k8s.deb("kubectl", "1.32.3-1.1");
    assert_eq!(kubectl.filename, "amd64/kubectl_1.32.3-1.1_amd64.deb");
    assert!(flat.contains("Filename: amd64/kubectl_1.32.3-1.1_amd64.deb\n"));
    assert!(k8s.root().join("InRelease").is_file() && k8s.root().join(&kubectl.filename).is_file());
    assert!(k8s.release_text("/").contains(" Packages.xz\n"));

    // Tampering changes the served index but not the signed Release.
    let before = std::fs::read(dist.join("main/binary-amd64/Packages.xz")).unwrap();
    debian.tamper_index("bookworm", "main", "amd64");
    assert_ne!(
        std::fs::read(dist.join("main/binary-amd64/Packages.xz")).unwrap(),
        before
    );
    assert_eq!(debian.release_text("bookworm"), release);
}

#[test]
fn server_serves_ranges_counts_and_faults() {
    let site = Site::new();
    let (debian, _k8s) = two_archives(&site);
    let server = site.serve();
    let port = server.port();
    assert_eq!(
        server.url("debian/"),
        format!("http://127.0.0.1:{port}/debian/")
    );

    let inr = "/debian/dists/bookworm/InRelease";
    let (status, _, body) = raw_request(port, "GET", inr, "");
    assert_eq!(status, 200);
    assert_eq!(body, debian.inrelease_text("bookworm").as_bytes());

    let xz_path = "/debian/dists/bookworm/main/binary-amd64/Packages.xz";
    let (status, head, body) = raw_request(port, "GET", xz_path, "");
    assert_eq!(status, 200);
    assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
    let text = String::from_utf8(liblzma::decode_all(body.as_slice()).unwrap()).unwrap();
    assert_eq!(text, debian.packages_text("bookworm", "main", "amd64"));

    let (status, head, tail) = raw_request(port, "GET", xz_path, "Range: bytes=10-\r\n");
    assert_eq!(status, 206);
    assert_eq!(tail, body[10..]);
    assert!(head.contains(&format!(
        "Content-Range: bytes 10-{}/{}\r\n",
        body.len() - 1,
        body.len()
    )));
    assert_eq!(
        raw_request(port, "GET", xz_path, "Range: bytes=999999-\r\n").0,
        416
    );
    let (status, head, empty) = raw_request(port, "HEAD", xz_path, "");
    assert!(
        status == 200
            && empty.is_empty()
            && head.contains(&format!("Content-Length: {}", body.len()))
    );
    assert_eq!(raw_request(port, "GET", "/debian/nope", "").0, 404);
    assert_eq!(raw_request(port, "GET", "/debian/../etc/passwd", "").0, 404);
    assert_eq!(server.hits(xz_path), 4);

    server.fault_n("*/InRelease", Fault::Status(500), 1);
    assert_eq!(raw_request(port, "GET", inr, "").0, 500);
    assert_eq!(
        raw_request(port, "GET", inr, "").0,
        200,
        "only the first time"
    );

    server.fault_n("*.deb", Fault::Truncate(5), 1);
    let deb = debian.deb("libfoo1", "1.0-1");
    let (status, head, cut) = raw_request(port, "GET", &format!("/debian/{}", deb.filename), "");
    assert!(
        status == 200 && cut.len() == 5 && head.contains(&format!("Content-Length: {}", deb.size))
    );

    server.fault_n("*.deb", Fault::Corrupt, 1);
    let (_, _, bad) = raw_request(port, "GET", &format!("/debian/{}", deb.filename), "");
    assert_eq!(bad.len() as u64, deb.size);
    assert_ne!(hex::encode(Sha256::digest(&bad)), deb.sha256);

    server.fault("*/by-hash/*", Fault::Delay(Duration::from_millis(50)));
    let start = std::time::Instant::now();
    let by_hash = format!(
        "/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/{}",
        hex::encode(Sha256::digest(&body))
    );
    let (status, _, same) = raw_request(port, "GET", &by_hash, "");
    assert!(status == 200 && same == body && start.elapsed() >= Duration::from_millis(50));
    assert_eq!(server.hits_matching("*/by-hash/*"), 1);
    server.clear_faults();
    assert_eq!(server.total_requests(), 12);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let site = Site::new();
    let _ = two_archives(&site);
    let server = site.serve();
    let mut s = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = "HEAD /debian/dists/trixie/Release HTTP/1.1\r\nHost: t\r\n\r\n";
    s.write_all(format!("{req}{req}").as_bytes()).unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    while seen.matches("HTTP/1.1 200").count() < 2 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(server.hits("/debian/dists/trixie/Release"), 2);
}

#[test]
fn workspace_writes_recipes_and_runs_the_binary() {
    let ws = Workspace::new();
    let src = ws.trusted_source("main", "http://127.0.0.1:1/debian/", "bookworm", &["main"]);
    let flat = SourceToml::url("k8s", "http://127.0.0.1:1/kubernetes/", "/").priority(600);
    let text = RecipeToml::new("amd64")
        .packages(&["foo", "bar (>= 1.0) | baz"])
        .essential(false)
        .source(src)
        .source(flat)
        .to_toml();
    let path = ws.write_recipe("base", &text);
    assert_eq!(path, ws.path().join("recipes/base.toml"));
    assert_eq!(
        std::fs::read(ws.path().join("recipes/keys/test.pgp")).unwrap(),
        TestKey::primary().keyring
    );

    let parsed: toml::Value = toml::from_str(&ws.read("recipes/base.toml")).unwrap();
    assert_eq!(parsed["packages"][1].as_str(), Some("bar (>= 1.0) | baz"));
    assert_eq!(parsed["essential"].as_bool(), Some(false));
    assert_eq!(
        parsed["source"][0]["keyring"].as_str(),
        Some("keys/test.pgp")
    );
    assert_eq!(parsed["source"][0]["components"][0].as_str(), Some("main"));
    assert_eq!(parsed["source"][1]["suite"].as_str(), Some("/"));
    assert_eq!(parsed["source"][1]["priority"].as_integer(), Some(600));
    assert!(ws.path().join("locks").is_dir());

    let out = ws.run(&["--version"]);
    assert!(!out.timed_out && out.status.code().is_some(), "{out:?}");
    assert!(out.stdout.contains("imgbuild"), "{out:?}");
}

#[test]
fn archives_and_keys_are_reproducible() {
    let (a, b) = (Site::new(), Site::new());
    let (deb_a, flat_a) = two_archives(&a);
    let (deb_b, _) = two_archives(&b);
    for rel in [
        "dists/bookworm/InRelease",
        "dists/bookworm/Release.gpg",
        "dists/trixie/main/binary-amd64/Packages.xz",
        "pool/main/libf/libfoo1/libfoo1_2.0-1_amd64.deb",
    ] {
        let read = |repo: &Repo| std::fs::read(repo.root().join(rel)).unwrap();
        assert_eq!(read(&deb_a), read(&deb_b), "{rel} differs between builds");
    }
    assert!(flat_a.inrelease_text("/").contains("Hash: SHA256"));

    // A freshly generated key with the same seed is byte-identical (self-signature time pinned),
    // so keyring hashes are stable across test runs too.
    let again = TestKey::generate(1, &TestKey::primary().uid);
    assert_eq!(again.keyring, TestKey::primary().keyring);
    assert_eq!(again.fingerprint, TestKey::primary().fingerprint);
    let self_sig = &again.public_key().details.users[0].signatures[0];
    let created = self_sig.created().map(|t| t.as_secs());
    assert_eq!(
        created,
        Some(support::key::KEY_CREATED),
        "self-signature time pinned"
    );
}

#[test]
fn apt_accepts_the_fixtures_over_http() {
    let Some(apt) = Apt::new("amd64", TestKey::primary()) else {
        eprintln!("apt-get absent: skipping apt cross-check");
        return;
    };
    let site = Site::new();
    let debian = site
        .archive("debian")
        .suite("bookworm", &["amd64"], &["main"])
        .add(DebSpec::new("app", "1.0", "amd64").depends("lib (>= 2) | oldlib"))
        .add(DebSpec::new("lib", "2.1", "all").conflicts("oldlib"))
        .add(DebSpec::new("oldlib", "1", "amd64"))
        .build();
    let _k8s = site
        .flat("kubernetes", &["amd64"])
        .add(DebSpec::new("kubectl", "1.32.3-1.1", "amd64"))
        .build();
    let server = site.serve();
    apt.source(&server.url("debian/"), "bookworm", &["main"]);
    apt.source(&server.url("kubernetes/"), "/", &[]);
    apt.update().assert_success();
    assert_eq!(
        server.hits_matching("/debian/*/by-hash/SHA256/*"),
        1,
        "apt used by-hash"
    );
    let plan = apt.simulate_install(&["app", "kubectl"], false).unwrap();
    let mut plan: Vec<String> = plan.iter().map(|(n, v)| format!("{n}={v}")).collect();
    plan.sort();
    assert_eq!(plan, ["app=1.0", "kubectl=1.32.3-1.1", "lib=2.1"]);
    assert!(
        apt.simulate_install(&["lib", "oldlib"], false).is_err(),
        "Conflicts seen by apt"
    );

    // apt rejects an archive re-signed by a key it does not trust.
    debian.resign_with(TestKey::wrong());
    let out = apt.update();
    assert!(
        out.stdout.contains("NO_PUBKEY") || out.stderr.contains("NO_PUBKEY"),
        "{out:?}"
    );
}
