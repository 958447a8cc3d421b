use std::path::Path;

use super::*;
use crate::archive::testutil::{recipe, source};
use testkit::index::SIGNED_AT;
use testkit::{TestKey, gz, packages_text, write_repo, xz};

/// A signed fixture repository with bookworm main amd64 (.xz) and i386 (.gz).
struct Fixture {
    dir: tempfile::TempDir,
    key: TestKey,
    keyring: PathBuf,
}

impl Fixture {
    fn new(by_hash: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let key = TestKey::seeded(20, true);
        let keyring = dir.path().join("keyring.gpg");
        std::fs::write(&keyring, &key.keyring).unwrap();
        let amd64 = packages_text("amd64", &[("a", "1.0"), ("b", "2:3-1")])
            + &packages_text("all", &[("doc", "1")]);
        let i386 = packages_text("i386", &[("a", "1.0")]) + &packages_text("all", &[("doc", "1")]);
        write_repo(
            &dir.path().join("repo"),
            "bookworm",
            &[
                ("main/binary-amd64/Packages.xz", xz(amd64.as_bytes())),
                ("main/binary-amd64/Packages", amd64.into_bytes()),
                ("main/binary-i386/Packages.gz", gz(i386.as_bytes())),
            ],
            &key,
            by_hash,
        );
        Fixture { dir, key, keyring }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn url(&self) -> String {
        format!("file://{}/repo", self.root().display())
    }

    fn source(&self) -> Source {
        let mut s = source("bookworm", Location::Archive("debian".into()), "bookworm");
        s.keyring = self.keyring.clone();
        s
    }

    fn mirrors(&self) -> Mirrors {
        mirrors(&[format!("debian={}", self.url())])
    }

    fn opts(&self, offline: bool) -> FetchOptions {
        FetchOptions {
            offline,
            cache_dir: self.root().join("cache"),
            quiet: true,
            freshness: Default::default(),
        }
    }

    fn load(&self, foreign: &[&str], offline: bool) -> Result<Vec<LoadedSource>, ArchiveError> {
        let r = recipe(vec![self.source()], "amd64", foreign);
        load_sources(&r, &self.mirrors(), &self.opts(offline))
    }

    fn cached_indexes(&self) -> usize {
        std::fs::read_dir(self.root().join("cache/indexes/sha256")).map_or(0, |d| d.count())
    }
}

fn mirrors(flags: &[String]) -> Mirrors {
    Mirrors::with_env(flags, Path::new("/nonexistent/apt"), |_| None).unwrap()
}

fn names(l: &LoadedSource) -> Vec<String> {
    l.packages
        .iter()
        .map(|p| format!("{}:{}={}", p.name, p.architecture, p.version))
        .collect()
}

#[test]
fn loads_verified_indexes_over_file_urls() {
    let f = Fixture::new(false);
    let loaded = f.load(&["i386"], false).unwrap();
    assert_eq!(loaded.len(), 1);
    let l = &loaded[0];
    assert_eq!(l.source, 0);
    assert_eq!(l.date, "Sat, 01 Jan 2000 00:00:00 UTC");
    assert_eq!(l.signed_by, f.key.fingerprint.clone());
    let inrelease = std::fs::read(f.root().join("repo/dists/bookworm/InRelease")).unwrap();
    assert_eq!(l.inrelease_sha256, sha256_hex(&inrelease));
    let paths: Vec<&str> = l.indexes.iter().map(|i| i.path.as_str()).collect();
    // .xz preferred over plain; .gz when that is all there is.
    assert_eq!(
        paths,
        [
            "main/binary-amd64/Packages.xz",
            "main/binary-i386/Packages.gz"
        ]
    );
    // `doc` (Architecture: all) is in both indexes but loaded once.
    assert_eq!(
        names(l),
        ["a:amd64=1.0", "b:amd64=2:3-1", "doc:all=1", "a:i386=1.0"]
    );
    assert_eq!(f.cached_indexes(), 2);
    for i in &l.indexes {
        let cached = std::fs::read(f.root().join("cache/indexes/sha256").join(&i.sha256)).unwrap();
        assert_eq!(
            (sha256_hex(&cached), cached.len() as u64),
            (i.sha256.clone(), i.size)
        );
    }
}

#[test]
fn offline_uses_only_the_cache() {
    let f = Fixture::new(false);
    let e = f.load(&[], true).unwrap_err().to_string();
    assert!(e.contains("not cached; run without --offline"), "{e}");
    let online = f.load(&[], false).unwrap();
    // The repository disappears and no mirror is configured: offline still works.
    std::fs::remove_dir_all(f.root().join("repo")).unwrap();
    let r = recipe(vec![f.source()], "amd64", &[]);
    let offline = load_sources(&r, &mirrors(&[]), &f.opts(true)).unwrap();
    assert_eq!(names(&offline[0]), names(&online[0]));
    assert_eq!(offline[0].inrelease_sha256, online[0].inrelease_sha256);
    assert_eq!(offline[0].indexes, online[0].indexes);
    // An index that was never fetched is reported as not cached.
    let e = f.load(&["i386"], true).unwrap_err().to_string();
    assert!(
        e.contains("binary-i386/Packages.gz") && e.contains("not cached"),
        "{e}"
    );
}

#[test]
fn offline_reverifies_the_cached_inrelease() {
    let f = Fixture::new(false);
    f.load(&[], false).unwrap();
    std::fs::write(&f.keyring, TestKey::seeded(21, false).keyring).unwrap();
    let e = f.load(&[], true).unwrap_err().to_string();
    assert!(e.contains("signer not in keyring"), "{e}");
}

#[test]
fn tampered_index_is_refused_and_not_cached() {
    let f = Fixture::new(false);
    let path = f
        .root()
        .join("repo/dists/bookworm/main/binary-amd64/Packages.xz");
    let evil = packages_text("amd64", &[("a", "6.6.6")]);
    std::fs::write(&path, xz(evil.as_bytes())).unwrap();
    let e = f.load(&[], false).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ArchiveError::Mismatch(_)), "{msg}");
    for part in [
        "source `bookworm`",
        "main/binary-amd64/Packages.xz",
        "file://",
        "nothing was cached",
    ] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    assert_eq!(f.cached_indexes(), 0);
}

#[test]
fn bad_inrelease_is_refused_and_not_cached() {
    let f = Fixture::new(false);
    let dir = f.root().join("repo/dists/bookworm");
    let release = std::fs::read_to_string(dir.join("Release")).unwrap();
    let other = TestKey::seeded(22, false);
    std::fs::write(dir.join("InRelease"), other.clearsign(&release, SIGNED_AT)).unwrap();
    let e = f.load(&[], false).unwrap_err().to_string();
    assert!(
        e.contains("InRelease") && e.contains("signer not in keyring"),
        "{e}"
    );
    assert!(!f.root().join("cache/inrelease").exists());
    // Unsigned: the plain Release served as InRelease.
    std::fs::write(dir.join("InRelease"), &release).unwrap();
    let e = f.load(&[], false).unwrap_err().to_string();
    assert!(e.contains("not a clear-signed message"), "{e}");
}

#[test]
fn by_hash_is_preferred_with_fallback_to_the_plain_path() {
    let f = Fixture::new(true);
    let dir = f.root().join("repo/dists/bookworm/main/binary-amd64");
    // Only the by-hash copy remains: it must be what is read.
    std::fs::remove_file(dir.join("Packages.xz")).unwrap();
    let l = f.load(&[], false).unwrap();
    assert_eq!(l[0].packages.len(), 3);

    let g = Fixture::new(true);
    std::fs::remove_dir_all(
        g.root()
            .join("repo/dists/bookworm/main/binary-amd64/by-hash"),
    )
    .unwrap();
    assert_eq!(g.load(&[], false).unwrap()[0].packages.len(), 3);
}

#[test]
fn mirrors_are_tried_in_order() {
    let f = Fixture::new(false);
    let missing = format!("debian=file://{}/nothing-here", f.root().display());
    let m = mirrors(&[missing, format!("debian={}", f.url())]);
    let r = recipe(vec![f.source()], "amd64", &[]);
    assert_eq!(
        load_sources(&r, &m, &f.opts(false)).unwrap()[0]
            .packages
            .len(),
        3
    );
}

#[test]
fn missing_index_and_missing_mirror_are_clear() {
    let f = Fixture::new(false);
    let e = f.load(&["arm64"], false).unwrap_err().to_string();
    assert!(
        e.contains("source `bookworm`") && e.contains("main/binary-arm64/Packages"),
        "{e}"
    );
    let r = recipe(vec![f.source()], "amd64", &[]);
    let e = load_sources(&r, &mirrors(&[]), &f.opts(false))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("no mirror configured for archive `debian`"),
        "{e}"
    );
}

#[test]
fn flat_repositories() {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::seeded(23, false);
    let keyring = dir.path().join("k.gpg");
    std::fs::write(&keyring, &key.keyring).unwrap();
    let text = packages_text("amd64", &[("kubelet", "1.30.0-1.1")]);
    write_repo(
        &dir.path().join("flat"),
        "/",
        &[("Packages.gz", gz(text.as_bytes()))],
        &key,
        false,
    );
    let mut s = source(
        "k8s",
        Location::Url(format!("file://{}/flat", dir.path().display())),
        "/",
    );
    s.keyring = keyring;
    let r = recipe(vec![s], "amd64", &["i386"]);
    let opts = FetchOptions {
        offline: false,
        cache_dir: dir.path().join("cache"),
        quiet: true,
        freshness: Default::default(),
    };
    let l = load_sources(&r, &mirrors(&[]), &opts).unwrap();
    assert_eq!(l[0].indexes[0].path, "Packages.gz");
    assert_eq!(&*l[0].packages[0].name, "kubelet");
}

#[test]
fn default_cache_dir_precedence() {
    use std::ffi::OsString;
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    };
    let d = FetchOptions::default_cache_dir_with;
    assert_eq!(
        d(env(&[
            ("IMGBUILD_CACHE", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h")
        ])),
        PathBuf::from("/c")
    );
    assert_eq!(
        d(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])),
        PathBuf::from("/x/imgbuild")
    );
    assert_eq!(
        d(env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")])),
        PathBuf::from("/h/.cache/imgbuild")
    );
}

mod http;
mod live;
