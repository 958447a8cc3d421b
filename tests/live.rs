//! Live checks against the real Debian archive (ignored by default; `ci/live.sh`
//! runs them when the host's configured mirror is reachable). The mirror comes
//! from this host's apt configuration, never from the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use imgbuild::archive::{FetchOptions, Mirrors, load_sources};
use imgbuild::lock::Lockfile;
use imgbuild::recipe::Recipe;

/// A throwaway workspace holding a copy of the repository's recipes.
fn workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("cp")
        .arg("-r")
        .arg(repo.join("recipes"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::create_dir_all(dir.path().join("locks")).unwrap();
    let cache = dir.path().join("cache");
    (dir, cache)
}

fn imgbuild(ws: &Path, cache: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_imgbuild"))
        .arg("-C")
        .arg(ws)
        .args(args)
        .env("IMGBUILD_CACHE", cache)
        .output()
        .unwrap()
}

/// Writes the locked packages' stanzas plus one meta package depending on all
/// of them at their exact versions, then asks dose-debcheck whether the meta
/// package is installable using only the locked set: that holds exactly when
/// the whole set is co-installable.
fn dose_check(ws: &Path, cache: &Path, recipe_name: &str, lock: &Lockfile) {
    if Command::new("dose-debcheck")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "dose-debcheck not installed (package dose-distcheck): skipping the independent check"
        );
        return;
    }
    let recipe = Recipe::load(ws, recipe_name).unwrap();
    let mirrors = Mirrors::new(&[], Path::new("/etc/apt")).unwrap();
    let opts = FetchOptions {
        offline: true,
        cache_dir: cache.to_path_buf(),
        quiet: true,
        freshness: Default::default(),
    };
    let loaded = load_sources(&recipe, &mirrors, &opts).unwrap();
    let mut text = String::new();
    let mut meta_deps = Vec::new();
    for p in &lock.packages {
        let r = loaded
            .iter()
            .flat_map(|l| &l.packages)
            .find(|r| {
                *r.name == p.name
                    && r.version.as_str() == p.version
                    && *r.architecture == p.architecture
            })
            .unwrap_or_else(|| panic!("{} {} not in the indexes", p.name, p.version));
        text.push_str(&format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\n",
            r.name, r.version, r.architecture
        ));
        let ma = match r.multi_arch {
            imgbuild::core::package::MultiArch::Same => "same",
            imgbuild::core::package::MultiArch::Foreign => "foreign",
            imgbuild::core::package::MultiArch::Allowed => "allowed",
            imgbuild::core::package::MultiArch::No => "no",
        };
        text.push_str(&format!("Multi-Arch: {ma}\n"));
        for (field, value) in [
            ("Depends", r.depends()),
            ("Pre-Depends", r.pre_depends()),
            ("Conflicts", r.conflicts()),
            ("Breaks", r.breaks()),
            ("Provides", &*r.provides),
        ] {
            if !value.is_empty() {
                text.push_str(&format!("{field}: {}\n", value.replace('\n', " ")));
            }
        }
        if r.essential {
            text.push_str("Essential: yes\n");
        }
        text.push('\n');
        meta_deps.push(format!("{} (= {})", p.name, p.version));
    }
    // A second meta package that also needs something absent: the judge must
    // call it broken, or the check above proves nothing.
    text.push_str(&format!(
        "Package: imgbuild-lock-check\nVersion: 1\nArchitecture: amd64\nDepends: {}\n\n\
         Package: imgbuild-lock-probe\nVersion: 1\nArchitecture: amd64\nDepends: {}, imgbuild-absent\n\n",
        meta_deps.join(", "),
        meta_deps.join(", ")
    ));
    let file = ws.join("locked-Packages");
    std::fs::write(&file, text).unwrap();
    let judge = |pkg: &str| {
        let out = Command::new("dose-debcheck")
            .args([
                "--deb-native-arch=amd64",
                "--explain",
                "--successes",
                "--failures",
                "--checkonly",
            ])
            .arg(format!("{pkg}:amd64"))
            .arg(&file)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        (report, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (report, errors) = judge("imgbuild-lock-check");
    assert!(
        report.contains("broken-packages: 0") && report.contains("status: ok"),
        "dose-debcheck:\n{report}\n{errors}"
    );
    let (report, errors) = judge("imgbuild-lock-probe");
    assert!(
        report.contains("broken-packages: 1"),
        "negative control:\n{report}\n{errors}"
    );
}

fn solve_real(name: &str) {
    let (dir, cache) = workspace();
    let ws = dir.path();
    let out = imgbuild(ws, &cache, &["solve", name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lock_path = ws.join("locks").join(format!("{name}.lock"));
    let first = std::fs::read(&lock_path).unwrap();
    // Solving again from scratch over the same (now cached) indexes gives
    // the same bytes. Not --offline: a `[[component]]`'s git source must be
    // fetched to be pinned when there is no previous lock to keep it from
    // (sonic-p4's bmv2).
    std::fs::remove_file(&lock_path).unwrap();
    let out = imgbuild(ws, &cache, &["solve", name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        first,
        std::fs::read(&lock_path).unwrap(),
        "two solves gave different locks"
    );
    let lock = Lockfile::read(&lock_path).unwrap();
    for essential in [
        "base-files",
        "bash",
        "coreutils",
        "dpkg",
        "libc-bin",
        "tar",
        "util-linux",
    ] {
        assert!(
            lock.package(essential).is_some(),
            "{essential} missing from the Essential set"
        );
    }
    assert!(
        lock.packages
            .iter()
            .all(|p| p.sha256.len() == 64 && p.filename.starts_with("pool/"))
    );
    dose_check(ws, &cache, name, &lock);
    // --locked accepts the fresh lock and refuses an edited recipe.
    assert!(
        imgbuild(ws, &cache, &["solve", "--locked", name])
            .status
            .success()
    );
    let recipe = ws.join("recipes").join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(
        &recipe,
        text.replacen("packages = [", "packages = [\n    \"hello\",", 1),
    )
    .unwrap();
    let out = imgbuild(ws, &cache, &["solve", "--locked", name]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stale"));
}

#[test]
#[ignore = "uses the live Debian archive"]
fn sonic_p4_solves_and_is_coinstallable() {
    solve_real("sonic-p4");
}

#[test]
#[ignore = "uses the live Debian archive"]
fn r2lab_node_solves_and_is_coinstallable() {
    solve_real("r2lab-node");
}

/// The committed locks are fresh for the committed recipes.
#[test]
fn committed_locks_are_fresh() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["sonic-p4", "r2lab-node"] {
        let lock_path = repo.join("locks").join(format!("{name}.lock"));
        let recipe = Recipe::load(repo, name).unwrap();
        let lock = Lockfile::read(&lock_path).unwrap();
        assert_eq!(
            lock.is_stale_for(&recipe),
            None,
            "{name}: run `imgbuild solve {name}`"
        );
    }
}
