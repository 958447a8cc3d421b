//! Against the real Debian archive through the host's apt configuration.
//! Run with `cargo test --release live_ -- --ignored --nocapture`.

use std::time::Instant;

use super::*;

const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

#[test]
#[ignore = "network: fetches bookworm from the host's configured mirror"]
fn live_bookworm_main_amd64() {
    let mirrors = Mirrors::new(&[], Path::new("/etc/apt")).unwrap();
    let mut s = source("bookworm", Location::Archive("debian".into()), "bookworm");
    s.keyring = PathBuf::from(DEBIAN_KEYRING);
    let r = recipe(vec![s], "amd64", &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = FetchOptions {
        offline: false,
        cache_dir: dir.path().to_path_buf(),
        quiet: false,
        freshness: Default::default(),
    };
    for label in ["cold (download)", "warm (cached index)", "offline"] {
        opts.offline = label == "offline";
        let t = Instant::now();
        let l = load_sources(&r, &mirrors, &opts).unwrap();
        eprintln!(
            "{label}: {} packages from {:?} in {:?}, signed by {}",
            l[0].packages.len(),
            l[0].indexes,
            t.elapsed(),
            l[0].signed_by
        );
        assert!(l[0].packages.len() > 50_000);
        assert_eq!(l[0].signed_by.len(), 40);
    }
}

#[test]
#[ignore = "network: fetches bookworm, -updates and -security from the host's mirrors"]
fn live_bookworm_three_suites() {
    let mirrors = Mirrors::new(&[], Path::new("/etc/apt")).unwrap();
    let sources = [
        ("bookworm", "debian", "bookworm"),
        ("updates", "debian", "bookworm-updates"),
        ("security", "debian-security", "bookworm-security"),
    ]
    .into_iter()
    .map(|(name, archive, suite)| {
        let mut s = source(name, Location::Archive(archive.into()), suite);
        s.keyring = PathBuf::from(DEBIAN_KEYRING);
        s
    })
    .collect();
    let r = recipe(sources, "amd64", &[]);
    let dir = tempfile::tempdir().unwrap();
    let opts = FetchOptions {
        offline: false,
        cache_dir: dir.path().to_path_buf(),
        quiet: false,
        freshness: Default::default(),
    };
    let t = Instant::now();
    let loaded = load_sources(&r, &mirrors, &opts).unwrap();
    eprintln!("3 suites in {:?}", t.elapsed());
    for l in &loaded {
        eprintln!(
            "  {}: {} packages, {} indexes",
            r.sources[l.source].name,
            l.packages.len(),
            l.indexes.len()
        );
        assert_eq!(l.indexes.len(), 1);
    }
    assert!(loaded[0].packages.len() > 50_000);
}
