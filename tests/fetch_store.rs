//! The vendor store without a network: `require`, `--offline`, `--import`,
//! `--verify`, the index, `vendor gc` and `vendor verify`. Package files come
//! from `file://` mirrors.

mod support;

use std::path::{Path, PathBuf};

use imgbuild::fetch::maintain::{self, gc};
use imgbuild::fetch::session::{SessionOptions, fetch_lock};
use imgbuild::fetch::store::Index;
use imgbuild::fetch::{FetchError, Progress, Store, vendor_dir};
use imgbuild::lock::{LockedPackage, LockedRecipe, Lockfile};
use sha2::{Digest, Sha256};
use support::*;
use url::Url;

/// A recipe's worth of real .debs in `<tmp>/mirror/pool/…`, their lock, and an empty store.
struct Fixture {
    tmp: tempfile::TempDir,
    debs: Vec<(String, Vec<u8>)>,
    lock: Lockfile,
    store: Store,
}

impl Fixture {
    fn new(count: usize) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let mut debs = Vec::new();
        let mut packages = Vec::new();
        for i in 0..count {
            let name = format!("pkg{i}");
            let spec = DebSpec::new(&name, "2.0", "all").gzip().file(
                &format!("/usr/share/doc/{name}/README"),
                vec![b'a' + i as u8; 500],
                0o644,
            );
            let bytes = spec.build();
            let filename = format!("pool/main/p/{name}/{}", spec.file_name());
            let path = tmp.path().join("mirror").join(&filename);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
            packages.push(LockedPackage {
                name: name.clone(),
                version: "2.0".into(),
                architecture: "all".into(),
                source: "main".into(),
                filename,
                size: bytes.len() as u64,
                sha256: hex::encode(Sha256::digest(&bytes)),
                reason: Some("recipe".into()),
                depends: vec![],
            });
            debs.push((spec.file_name(), bytes));
        }
        let lock = Lockfile {
            version: 1,
            recipe: LockedRecipe {
                name: "base".into(),
                hash: format!("sha256:{}", "0".repeat(64)),
                architecture: "amd64".into(),
            },
            sources: vec![],
            packages,
            python: vec![],
            tools: Vec::new(),
            components: Vec::new(),
        };
        let store = Store::open(&tmp.path().join("vendor")).unwrap();
        Fixture {
            tmp,
            debs,
            lock,
            store,
        }
    }

    fn mirror(&self) -> Url {
        Url::from_directory_path(self.tmp.path().join("mirror")).unwrap()
    }

    fn fetch(&self, options: &SessionOptions) -> Result<imgbuild::fetch::FetchSummary, FetchError> {
        let mirror = self.mirror();
        let bases = |source: &str| match source {
            "main" => Ok(vec![mirror.clone()]),
            other => Err(format!("unknown source {other}")),
        };
        fetch_lock(
            &self.store,
            "base",
            &self.lock,
            bases,
            options,
            &Progress::hidden(),
        )
    }

    fn sha(&self, i: usize) -> &str {
        &self.lock.packages[i].sha256
    }

    fn blob(&self, i: usize) -> PathBuf {
        self.store.path_of(self.sha(i))
    }
}

fn offline() -> SessionOptions {
    SessionOptions {
        offline: true,
        ..SessionOptions::default()
    }
}

#[test]
fn require_names_the_missing_files_and_the_command() {
    let f = Fixture::new(3);
    let err = f.store.require(&f.lock, "base").unwrap_err();
    assert_eq!(err.missing.len(), 3);
    let text = err.to_string();
    assert!(text.contains("run `imgbuild fetch base`"), "{text}");
    assert!(
        text.contains("pkg1 2.0 all") && text.contains(f.sha(1)),
        "{text}"
    );
    let summary = f.fetch(&SessionOptions::default()).unwrap();
    assert_eq!((summary.fetched, summary.reused), (3, 0));
    assert!(
        summary
            .to_string()
            .starts_with("fetched 3, reused 0, 0.0 MiB in "),
        "{summary}"
    );
    f.store.require(&f.lock, "base").unwrap();

    // Presence is checked by size: a truncated blob counts as missing.
    std::fs::write(f.blob(2), b"x").unwrap();
    let err = f.store.require(&f.lock, "base").unwrap_err();
    assert_eq!(err.missing.len(), 1);
    assert_eq!(err.missing[0].sha256, f.sha(2));
}

#[test]
fn offline_never_resolves_mirrors_and_lists_what_is_missing() {
    let f = Fixture::new(2);
    let no_network = |_: &str| -> Result<Vec<Url>, String> { panic!("offline must not resolve") };
    let run = || {
        fetch_lock(
            &f.store,
            "base",
            &f.lock,
            no_network,
            &offline(),
            &Progress::hidden(),
        )
    };
    let err = run().unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, FetchError::Offline(ref m) if m.missing.len() == 2),
        "{text}"
    );
    assert!(
        text.contains("--offline") && text.contains("pkg0 2.0 all"),
        "{text}"
    );

    f.fetch(&SessionOptions::default()).unwrap();
    let summary = run().unwrap();
    assert_eq!((summary.fetched, summary.reused), (0, 2));
}

#[test]
fn import_adopts_files_by_hash_not_by_name() {
    let f = Fixture::new(3);
    let cache = f.tmp.path().join("apt-archives");
    std::fs::create_dir_all(&cache).unwrap();
    // pkg0 under a misleading name; a same-size impostor named like pkg1; pkg2 absent.
    std::fs::write(cache.join("whatever_1%3a9_amd64.deb"), &f.debs[0].1).unwrap();
    let mut impostor = f.debs[1].1.clone();
    impostor[100] ^= 0xff;
    std::fs::write(cache.join(&f.debs[1].0), &impostor).unwrap();
    std::fs::write(cache.join("notes.txt"), &f.debs[2].1).unwrap();

    let options = SessionOptions {
        import: Some(cache.clone()),
        ..offline()
    };
    let err = f.fetch(&options).unwrap_err();
    let FetchError::Offline(missing) = err else {
        panic!("{err}")
    };
    let names: Vec<&str> = missing.missing.iter().map(|m| m.package.as_str()).collect();
    assert_eq!(names, ["pkg1 2.0 all", "pkg2 2.0 all"]);
    assert_eq!(std::fs::read(f.blob(0)).unwrap(), f.debs[0].1);
    assert!(!f.blob(1).exists(), "the impostor was not adopted");
    assert!(
        std::fs::read_dir(f.store.tmp_dir())
            .unwrap()
            .next()
            .is_none()
    );

    // Online with the import: the rest comes from the mirror.
    let options = SessionOptions {
        import: Some(cache),
        ..SessionOptions::default()
    };
    let summary = f.fetch(&options).unwrap();
    assert_eq!(
        (summary.fetched, summary.reused, summary.imported),
        (2, 1, 0)
    );
}

#[test]
fn fetch_writes_the_index_and_refuses_hostile_hashes() {
    let f = Fixture::new(2);
    f.fetch(&SessionOptions::default()).unwrap();
    let text = std::fs::read_to_string(f.store.root().join("index/base.json")).unwrap();
    let index: Index = serde_json::from_str(&text).unwrap();
    assert_eq!(index.recipe, "base");
    assert_eq!(index.packages.len(), 2);
    assert_eq!(index.packages[1].sha256, f.sha(1));
    assert_eq!(index.packages[1].filename, f.lock.packages[1].filename);

    let mut hostile = f.lock.clone();
    hostile.packages[0].sha256 = "../../../etc/passwd".into();
    let err = fetch_lock(
        &f.store,
        "base",
        &hostile,
        |_| Ok::<_, String>(vec![f.mirror()]),
        &SessionOptions::default(),
        &Progress::hidden(),
    )
    .unwrap_err();
    assert!(matches!(err, FetchError::BadHash { .. }), "{err}");
    assert!(err.to_string().contains("pkg0 2.0 all"), "{err}");

    let mut escaping = f.lock.clone();
    escaping.packages[0].filename = "../secret.deb".into();
    let err = fetch_lock(
        &f.store,
        "base",
        &escaping,
        |_| Ok::<_, String>(vec![f.mirror()]),
        &SessionOptions::default(),
        &Progress::hidden(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not archive-relative"), "{err}");
}

#[test]
fn verify_reports_and_removes_corrupt_blobs_and_fetch_verify_replaces_them() {
    let f = Fixture::new(3);
    f.fetch(&SessionOptions::default()).unwrap();
    assert!(maintain::verify(&f.store).unwrap().ensure_clean().is_ok());

    // Flip a byte by hand: same size, so only a re-hash can tell.
    let mut bytes = std::fs::read(f.blob(1)).unwrap();
    bytes[50] ^= 1;
    let actual = hex::encode(Sha256::digest(&bytes));
    std::fs::write(f.blob(1), &bytes).unwrap();
    let summary = f.fetch(&SessionOptions::default()).unwrap();
    assert_eq!(summary.reused, 3, "a plain fetch trusts name and size");
    let summary = f
        .fetch(&SessionOptions {
            verify: true,
            ..SessionOptions::default()
        })
        .unwrap();
    assert_eq!((summary.fetched, summary.reused), (1, 2));
    assert_eq!(std::fs::read(f.blob(1)).unwrap(), f.debs[1].1);

    std::fs::write(f.blob(2), &bytes).unwrap();
    let report = maintain::verify(&f.store).unwrap();
    assert_eq!(report.checked, 3);
    assert_eq!(report.corrupt.len(), 1);
    assert_eq!(report.corrupt[0].expected, f.sha(2));
    assert_eq!(report.corrupt[0].actual, actual);
    let err = report.ensure_clean().unwrap_err().to_string();
    assert!(err.contains(f.sha(2)) && err.contains(&actual), "{err}");
    assert!(!f.blob(2).exists(), "corrupt blob removed");
    f.store.require(&f.lock, "base").unwrap_err();
}

#[test]
fn gc_keeps_what_locks_reference_and_refuses_to_guess() {
    let f = Fixture::new(3);
    f.fetch(&SessionOptions::default()).unwrap();
    let ws = f.tmp.path().join("ws");
    let locks = ws.join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    // The lock only keeps pkg0 and pkg2.
    let mut kept = f.lock.clone();
    kept.packages.remove(1);
    std::fs::write(locks.join("base.lock"), toml::to_string(&kept).unwrap()).unwrap();
    std::fs::write(f.store.part_path(f.sha(0)), b"resumable").unwrap();
    std::fs::write(f.store.part_path(&"f".repeat(64)), b"orphan").unwrap();

    // An unreadable lock: nothing is removed.
    std::fs::write(locks.join("broken.lock"), "version = ").unwrap();
    let err = gc(&f.store, &locks).unwrap_err();
    assert!(err.to_string().contains("broken.lock"), "{err}");
    assert!(f.blob(1).exists());
    // No locks directory at all (wrong workspace?): refused too.
    assert!(gc(&f.store, &f.tmp.path().join("nope/locks")).is_err());
    assert!(f.blob(1).exists());

    std::fs::remove_file(locks.join("broken.lock")).unwrap();
    let summary = gc(&f.store, &locks).unwrap();
    assert_eq!((summary.locks, summary.kept, summary.removed), (1, 2, 1));
    assert_eq!(summary.partials_removed, 1);
    assert_eq!(summary.freed, f.debs[1].1.len() as u64 + 6);
    assert!(f.blob(0).exists() && !f.blob(1).exists() && f.blob(2).exists());
    assert!(
        f.store.part_path(f.sha(0)).exists(),
        "referenced partials stay resumable"
    );
}

#[test]
fn vendor_dir_prefers_the_flag() {
    let ws = Path::new("/w");
    assert_eq!(vendor_dir(ws, Some(Path::new("/v"))), Path::new("/v"));
    if std::env::var_os("IMGBUILD_VENDOR").is_none() {
        assert_eq!(vendor_dir(ws, None), Path::new("/w/vendor"));
    }
}

#[test]
fn a_store_path_that_is_a_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("vendor");
    std::fs::write(&file, b"").unwrap();
    assert!(Store::open(&file).is_err());
    // A missing directory is fine (and stays missing until written).
    let store = Store::open(&tmp.path().join("absent")).unwrap();
    assert!(!store.contains(&"a".repeat(64), 1));
    assert!(!store.root().exists());
}
