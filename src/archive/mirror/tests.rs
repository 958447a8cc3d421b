use std::collections::HashMap;

use super::*;
use crate::archive::testutil::source;

/// A temporary apt directory with deb822 and one-line sources.
fn apt_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("sources.list.d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(
        dir.path().join("sources.list"),
        "# comment\ndeb-src http://127.0.0.1:9/src-only bookworm main\n\
         deb [arch=amd64 signed-by=/k.gpg] http://127.0.0.1:9/one/debian bookworm main # tail\n",
    )
    .unwrap();
    std::fs::write(
        d.join("a.sources"),
        "Types: deb\n# a comment\nURIs: http://127.0.0.1:9/two/debian/ http://127.0.0.1:9/three/debian\n\
         Suites: bookworm\nComponents: main\n\n\
         Types: deb\nURIs: http://127.0.0.1:9/x/debian-security\nSuites: bookworm-security\n\n\
         Enabled: no\nTypes: deb\nURIs: http://127.0.0.1:9/off/disabled\nSuites: x\n\n\
         Types: deb-src\nURIs: http://127.0.0.1:9/src/sourceonly\nSuites: x\n",
    )
    .unwrap();
    std::fs::write(
        d.join("b.list"),
        "deb http://127.0.0.1:9/one/debian bookworm-updates main\ndeb cdrom:[x]/ bookworm main\n",
    )
    .unwrap();
    // Not a .list/.sources file: apt ignores it, so do we.
    std::fs::write(
        d.join("c.list.disabled"),
        "deb http://127.0.0.1:9/ignored/debian bookworm main\n",
    )
    .unwrap();
    dir
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn urls(v: Vec<Url>) -> Vec<String> {
    v.into_iter().map(String::from).collect()
}

#[test]
fn reads_apt_sources_in_apt_order() {
    let dir = apt_dir();
    let m = Mirrors::with_env(&[], dir.path(), no_env).unwrap();
    let debian = source("bookworm", Location::Archive("debian".into()), "bookworm");
    assert_eq!(
        urls(m.resolve(&debian).unwrap()),
        [
            "http://127.0.0.1:9/one/debian/",
            "http://127.0.0.1:9/two/debian/",
            "http://127.0.0.1:9/three/debian/",
        ]
    );
    let sec = source(
        "security",
        Location::Archive("debian-security".into()),
        "bookworm-security",
    );
    assert_eq!(
        urls(m.resolve(&sec).unwrap()),
        ["http://127.0.0.1:9/x/debian-security/"]
    );
    for name in ["disabled", "sourceonly", "src-only", "ignored"] {
        let s = source("s", Location::Archive(name.into()), "x");
        assert!(m.resolve(&s).is_err(), "{name} must not be configured");
    }
}

#[test]
fn flags_then_env_then_apt() {
    let dir = apt_dir();
    let env: HashMap<String, String> = [
        (
            "IMGBUILD_MIRROR_DEBIAN".to_string(),
            " http://127.0.0.1:9/env-a  file:///srv/env-b\n".to_string(),
        ),
        (
            "IMGBUILD_MIRROR_DEBIAN_SECURITY".to_string(),
            "http://127.0.0.1:9/env-sec".to_string(),
        ),
    ]
    .into();
    let flags = vec![
        "debian=http://127.0.0.1:9/flag-1".to_string(),
        "debian=http://127.0.0.1:9/flag-2/".to_string(),
    ];
    let debian = source("bookworm", Location::Archive("debian".into()), "bookworm");
    let sec = source("sec", Location::Archive("debian-security".into()), "x");

    let env2 = env.clone();
    let m = Mirrors::with_env(&flags, dir.path(), move |k| env2.get(k).cloned()).unwrap();
    assert_eq!(
        urls(m.resolve(&debian).unwrap()),
        ["http://127.0.0.1:9/flag-1/", "http://127.0.0.1:9/flag-2/"]
    );
    assert_eq!(
        urls(m.resolve(&sec).unwrap()),
        ["http://127.0.0.1:9/env-sec/"]
    );

    let m = Mirrors::with_env(&[], dir.path(), move |k| env.get(k).cloned()).unwrap();
    assert_eq!(
        urls(m.resolve(&debian).unwrap()),
        ["http://127.0.0.1:9/env-a/", "file:///srv/env-b/"]
    );
}

#[test]
fn literal_urls_bypass_configuration() {
    let m = Mirrors::with_env(&[], Path::new("/nonexistent/apt"), no_env).unwrap();
    let s = source("k8s", Location::Url("file:///srv/flat".into()), "/");
    assert_eq!(urls(m.resolve(&s).unwrap()), ["file:///srv/flat/"]);
    let s = source("bad", Location::Url("ftp://127.0.0.1/x".into()), "/");
    let e = m.resolve(&s).unwrap_err().to_string();
    assert!(
        e.contains("source `bad`") && e.contains("unsupported scheme"),
        "{e}"
    );
}

#[test]
fn missing_mirror_message_is_exact() {
    let m = Mirrors::with_env(&[], Path::new("/nonexistent/apt"), no_env).unwrap();
    let s = source("bookworm", Location::Archive("debian".into()), "bookworm");
    assert_eq!(
        m.resolve(&s).unwrap_err().to_string(),
        "no mirror configured for archive `debian` (source `bookworm`): \
         pass --mirror debian=URL or set IMGBUILD_MIRROR_DEBIAN=URL"
    );
}

#[test]
fn bad_flags_are_refused() {
    for flag in [
        "debian",
        "=http://127.0.0.1/",
        "deb ian=http://127.0.0.1/",
        "debian=nope",
    ] {
        let e = Mirrors::with_env(&[flag.to_string()], Path::new("/nonexistent"), no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains(flag), "{flag}: {e}");
    }
}

#[test]
fn env_var_names() {
    assert_eq!(
        Mirrors::env_var("debian-security"),
        "IMGBUILD_MIRROR_DEBIAN_SECURITY"
    );
}

#[test]
fn the_snapshot_service_is_configured_like_a_mirror() {
    let none = Mirrors::with_env(&[], Path::new("/nonexistent/apt"), no_env).unwrap();
    assert!(none.snapshot_services().unwrap().is_empty());
    let debian = source("bookworm", Location::Archive("debian".into()), "bookworm");
    assert!(none.snapshot_plan(&debian).unwrap().is_none());

    let env: HashMap<String, String> = [
        (
            "IMGBUILD_MIRROR_SNAPSHOT".to_string(),
            "http://127.0.0.1:9/long".to_string(),
        ),
        (
            "IMGBUILD_SNAPSHOT".to_string(),
            "http://127.0.0.1:9/short".to_string(),
        ),
    ]
    .into();
    let short_only: HashMap<String, String> = [(
        "IMGBUILD_SNAPSHOT".to_string(),
        "http://127.0.0.1:9/a http://127.0.0.1:9/b/".to_string(),
    )]
    .into();
    let flags = vec!["snapshot=http://127.0.0.1:9/flag".to_string()];
    let (e1, e2) = (env.clone(), env.clone());
    let m = Mirrors::with_env(&flags, Path::new("/nonexistent/apt"), move |k| {
        e1.get(k).cloned()
    })
    .unwrap();
    assert_eq!(
        urls(m.snapshot_services().unwrap()),
        ["http://127.0.0.1:9/flag/"]
    );
    let m = Mirrors::with_env(&[], Path::new("/nonexistent/apt"), move |k| {
        e2.get(k).cloned()
    })
    .unwrap();
    assert_eq!(
        urls(m.snapshot_services().unwrap()),
        ["http://127.0.0.1:9/long/"]
    );
    let plan = m.snapshot_plan(&debian).unwrap().unwrap();
    assert_eq!(plan.archive, "debian");
    // A literal URL has no archive name to look up.
    let flat = source("k8s", Location::Url("file:///srv/flat".into()), "/");
    assert!(m.snapshot_plan(&flat).unwrap().is_none());
    let m = Mirrors::with_env(&[], Path::new("/nonexistent/apt"), move |k| {
        short_only.get(k).cloned()
    })
    .unwrap();
    assert_eq!(
        urls(m.snapshot_services().unwrap()),
        ["http://127.0.0.1:9/a/", "http://127.0.0.1:9/b/"]
    );
    let bad: HashMap<String, String> = [(
        "IMGBUILD_SNAPSHOT".to_string(),
        "ftp://127.0.0.1/x".to_string(),
    )]
    .into();
    let m = Mirrors::with_env(&[], Path::new("/nonexistent/apt"), move |k| {
        bad.get(k).cloned()
    })
    .unwrap();
    let e = m.snapshot_services().unwrap_err().to_string();
    assert!(
        e.contains("IMGBUILD_SNAPSHOT") && e.contains("unsupported scheme"),
        "{e}"
    );
}
