//! `[python]` resolution, fetch and install against a fixture PEP 691 index
//! on 127.0.0.1 (real wheels and an sdist, see `support/pypi.rs`).

mod support;

use std::collections::HashMap;
use std::path::Path;

use imgbuild::lock::{LockedPackage, LockedRecipe, Lockfile};
use imgbuild::pypi::index::IndexClient;
use imgbuild::pypi::{Target, resolve};
use imgbuild::recipe::{PythonSpec, Recipe};
use support::{Fault, PyIndex, TestServer, WheelSpec};

/// A Debian lock with the given (name, version) packages.
fn debian(pkgs: &[(&str, &str)]) -> Lockfile {
    Lockfile {
        version: imgbuild::lock::LOCK_VERSION,
        recipe: LockedRecipe {
            name: "t".into(),
            hash: format!("sha256:{}", "0".repeat(64)),
            architecture: "amd64".into(),
        },
        sources: vec![],
        packages: pkgs
            .iter()
            .map(|(n, v)| LockedPackage {
                name: n.to_string(),
                version: v.to_string(),
                architecture: "amd64".into(),
                source: "main".into(),
                filename: format!("pool/{n}.deb"),
                size: 1,
                sha256: "1".repeat(64),
                reason: None,
                depends: vec![],
            })
            .collect(),
        python: vec![],
        tools: vec![],
        components: Vec::new(),
    }
}

/// bookworm: python 3.11, glibc 2.36.
fn bookworm() -> Lockfile {
    debian(&[("python3", "3.11.2-1+b1"), ("libc6", "2.36-9+deb12u13")])
}

/// The `[python]` table of a recipe with this body.
fn spec(dir: &Path, python: &str) -> PythonSpec {
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::write(dir.join("keys/k.pgp"), b"unused").unwrap();
    let text = format!(
        "architecture = \"amd64\"\n[[source]]\nname = \"main\"\nurl = \"http://127.0.0.1:9/\"\n\
         suite = \"/\"\ncomponents = []\nkeyring = \"keys/k.pgp\"\n\n[python]\n{python}"
    );
    Recipe::parse_str(&text, &dir.join("t.toml"))
        .unwrap()
        .python
        .unwrap()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    server: TestServer,
    cache: std::path::PathBuf,
    work: std::path::PathBuf,
}

impl Fixture {
    fn new(build: impl FnOnce(&mut PyIndex)) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let site = tmp.path().join("site");
        let mut ix = PyIndex::new(&site);
        build(&mut ix);
        ix.write();
        let server = TestServer::serve(&site);
        Fixture {
            cache: tmp.path().join("cache"),
            work: tmp.path().join("work"),
            server,
            _tmp: tmp,
        }
    }

    fn client(&self, offline: bool) -> IndexClient {
        let url = url::Url::parse(&self.server.url("simple/")).unwrap();
        IndexClient::new(url, &self.cache, offline).unwrap()
    }

    fn solve(&self, lock: &Lockfile, python: &str) -> anyhow::Result<imgbuild::pypi::Resolved> {
        Ok(resolve(
            &spec(&self.work, python),
            lock,
            &self.client(false),
            HashMap::new(),
        )?)
    }
}

fn versions(r: &imgbuild::pypi::Resolved) -> Vec<String> {
    r.python
        .iter()
        .map(|p| format!("{} {}", p.name, p.version))
        .collect()
}

/// The common index: markers, extras, yanked, pre-releases, Requires-Python,
/// platform wheels.
fn common(ix: &mut PyIndex) {
    ix.wheel(WheelSpec::new("app", "1.0").extra("fast").requires(&[
        "dep>=1",
        "speedup; extra == \"fast\"",
        "winonly; sys_platform == \"win32\"",
        "oldpy; python_version < \"3.10\"",
        "newpy; python_version >= \"3.10\"",
    ]));
    ix.wheel(WheelSpec::new("dep", "1.0"));
    ix.wheel(WheelSpec::new("dep", "1.5"));
    ix.wheel(WheelSpec::new("dep", "1.6").requires_python(">=3.12"));
    ix.wheel(WheelSpec::new("dep", "2.0").yanked());
    ix.wheel(WheelSpec::new("dep", "3.0rc1"));
    ix.wheel(WheelSpec::new("speedup", "0.1").tag("cp311-cp311-manylinux_2_17_x86_64"));
    ix.wheel(WheelSpec::new("speedup", "0.1").tag("cp39-cp39-manylinux_2_17_x86_64"));
    ix.wheel(WheelSpec::new("speedup", "0.2").tag("cp311-cp311-manylinux_2_38_x86_64"));
    ix.wheel(WheelSpec::new("oldpy", "1.0"));
    ix.wheel(WheelSpec::new("newpy", "1.0").no_metadata_file());
    ix.wheel(WheelSpec::new("winonly", "1.0"));
}

#[test]
fn markers_extras_yanked_prereleases_requires_python_tags() {
    let f = Fixture::new(common);
    let r = f
        .solve(&bookworm(), "requirements = [\"app[fast]\"]\n")
        .unwrap();
    // dep: 3.0rc1 is a pre-release, 2.0 yanked, 1.6 needs Python 3.12.
    // speedup 0.2 needs glibc 2.38; 0.1 has a cp311 wheel for manylinux 2.17.
    // newpy (metadata read from the wheel itself) by marker; not winonly/oldpy.
    assert_eq!(
        versions(&r),
        ["app 1.0", "dep 1.5", "newpy 1.0", "speedup 0.1"]
    );
    let app = &r.python[0];
    assert_eq!(app.reason.as_deref(), Some("recipe"));
    assert_eq!(app.extras, ["fast"]);
    let edges: Vec<&str> = app.depends.iter().map(|e| e.requirement.as_str()).collect();
    assert!(
        edges
            .iter()
            .any(|e| e.starts_with("speedup") && e.contains("extra == 'fast'")),
        "{edges:?}"
    );
    assert!(!edges.iter().any(|e| e.starts_with("winonly")), "{edges:?}");
    let speedup = r.python.iter().find(|p| p.name == "speedup").unwrap();
    assert!(
        speedup.filename.contains("cp311-cp311-manylinux_2_17"),
        "{}",
        speedup.filename
    );
    assert_eq!(
        speedup.size,
        std::fs::metadata(f._tmp.path().join("site/files").join(&speedup.filename))
            .unwrap()
            .len()
    );

    // Pinned exactly, the yanked release is allowed; named, so is a pre-release.
    let r = f
        .solve(&bookworm(), "requirements = [\"dep==2.0\"]\n")
        .unwrap();
    assert_eq!(versions(&r), ["dep 2.0"]);
    let r = f
        .solve(&bookworm(), "requirements = [\"dep>=3.0rc1\"]\n")
        .unwrap();
    assert_eq!(versions(&r), ["dep 3.0rc1"]);
    // A constraint limits without adding.
    let r = f
        .solve(
            &bookworm(),
            "requirements = [\"dep\"]\nconstraints = [\"dep<1.5\", \"winonly<1\"]\n",
        )
        .unwrap();
    assert_eq!(versions(&r), ["dep 1.0"]);
}

#[test]
fn markers_and_tags_follow_the_target_not_the_host() {
    let f = Fixture::new(common);
    // A bullseye image: python 3.9, glibc 2.31 — whatever the host runs.
    let bullseye = debian(&[("python3", "3.9.2-3"), ("libc6", "2.31-13+deb11u11")]);
    let r = f
        .solve(&bullseye, "requirements = [\"app[fast]\"]\n")
        .unwrap();
    assert_eq!(
        versions(&r),
        ["app 1.0", "dep 1.5", "oldpy 1.0", "speedup 0.1"]
    );
    let speedup = r.python.iter().find(|p| p.name == "speedup").unwrap();
    assert!(
        speedup.filename.contains("cp39-cp39"),
        "{}",
        speedup.filename
    );
    let t = Target::from_lock(&bullseye).unwrap();
    assert_eq!(t.site_packages(), "usr/local/lib/python3.9/dist-packages");
}

#[test]
fn sizes_come_from_head_when_the_page_has_none() {
    let f = Fixture::new(|ix| {
        ix.with_sizes = false;
        common(ix);
    });
    let r = f.solve(&bookworm(), "requirements = [\"dep\"]\n").unwrap();
    let dep = &r.python[0];
    let on_disk = f._tmp.path().join("site/files").join(&dep.filename);
    assert_eq!(dep.size, std::fs::metadata(on_disk).unwrap().len());
}

#[test]
fn conflicts_are_explained() {
    let f = Fixture::new(|ix| {
        ix.wheel(WheelSpec::new("a", "1.0").requires(&["c<2"]));
        ix.wheel(WheelSpec::new("b", "1.0").requires(&["c>=2"]));
        ix.wheel(WheelSpec::new("c", "1.0"));
        ix.wheel(WheelSpec::new("c", "2.0"));
        ix.sdist("srconly", "1.0", "srconly");
        ix.zip_sdist("srconly", "0.9");
    });
    let err = format!(
        "{:#}",
        f.solve(&bookworm(), "requirements = [\"a\", \"b\"]\n")
            .unwrap_err()
    );
    assert!(err.contains("Because"), "{err}");
    assert!(
        err.contains("a 1.0 requires c<2") && err.contains("b 1.0 requires c>=2"),
        "{err}"
    );
    assert!(err.contains("cp311-manylinux_2_36_x86_64"), "{err}");

    let err = format!(
        "{:#}",
        f.solve(&bookworm(), "requirements = [\"srconly\"]\n")
            .unwrap_err()
    );
    assert!(err.contains("only an sdist; see allow-sdist"), "{err}");
    let err = format!(
        "{:#}",
        f.solve(&bookworm(), "requirements = [\"nosuch\"]\n")
            .unwrap_err()
    );
    assert!(err.contains("nosuch is not on the index"), "{err}");

    // Opted in, the sdist is locked; its metadata comes from PKG-INFO.
    let r = f
        .solve(
            &bookworm(),
            "requirements = [\"srconly\"]\nallow-sdist = [\"SrcOnly\"]\n",
        )
        .unwrap();
    assert_eq!(r.python[0].filename, "srconly-1.0.tar.gz");
    // A version with only a .zip sdist is left out with its reason, not a
    // failed solve ("unsupported distribution format").
    let err = format!(
        "{:#}",
        f.solve(
            &bookworm(),
            "requirements = [\"srconly<1\"]\nallow-sdist = [\"srconly\"]\n",
        )
        .unwrap_err()
    );
    assert!(err.contains("only a .zip sdist"), "{err}");
}

#[test]
fn debian_packages_are_reported_and_used_on_request() {
    let f = Fixture::new(common);
    let mut lock = bookworm();
    lock.packages
        .extend(debian(&[("python3-dep", "1.2-1")]).packages);
    let r = f.solve(&lock, "requirements = [\"dep\"]\n").unwrap();
    assert_eq!(versions(&r), ["dep 1.5"]);
    assert!(
        r.notes[0].contains("shadows Debian's python3-dep 1.2-1"),
        "{:?}",
        r.notes
    );
    let r = f
        .solve(
            &lock,
            "requirements = [\"dep>=1.1\"]\nuse-debian = [\"dep\"]\n",
        )
        .unwrap();
    assert_eq!(versions(&r), ["dep 1.2"]);
    assert_eq!(r.python[0].debian.as_deref(), Some("python3-dep"));
    assert!(r.python[0].filename.is_empty());
    let err = f
        .solve(
            &bookworm(),
            "requirements = [\"dep\"]\nuse-debian = [\"dep\"]\n",
        )
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("add \"python3-dep\" to `packages`"),
        "{err:#}"
    );
}

#[test]
fn http_cache_serves_offline_and_revalidates() {
    let f = Fixture::new(common);
    let s = spec(&f.work, "requirements = [\"app\"]\n");
    let first = resolve(&s, &bookworm(), &f.client(false), HashMap::new()).unwrap();
    let hits = f.server.total_requests();
    assert!(hits > 0);
    let offline = resolve(&s, &bookworm(), &f.client(true), HashMap::new()).unwrap();
    assert_eq!(versions(&first), versions(&offline));
    assert_eq!(
        f.server.total_requests(),
        hits,
        "offline solve made requests"
    );
    // Online again: pages are revalidated (no max-age), metadata is not re-fetched.
    resolve(&s, &bookworm(), &f.client(true), HashMap::new()).unwrap();
    resolve(&s, &bookworm(), &f.client(false), HashMap::new()).unwrap();
    let again: Vec<_> = f.server.requests().into_iter().skip(hits).collect();
    assert!(
        again.iter().all(|r| !r.path.ends_with(".metadata")),
        "{again:?}"
    );
    // A previous lock's version is kept when still allowed.
    let prefer = HashMap::from([("dep".to_string(), "1.0".to_string())]);
    let kept = resolve(&s, &bookworm(), &f.client(false), prefer).unwrap();
    assert!(versions(&kept).contains(&"dep 1.0".to_string()));
}

#[test]
fn fetch_refuses_hash_mismatch() {
    let f = Fixture::new(common);
    let mut lock = bookworm();
    lock.python = f.solve(&lock, "requirements = [\"dep\"]\n").unwrap().python;
    let tmp = tempfile::tempdir().unwrap();
    let store = imgbuild::fetch::Store::open(tmp.path()).unwrap();
    let options = imgbuild::fetch::SessionOptions::default();
    let progress = imgbuild::fetch::Progress::hidden();
    let client = f.client(false);
    // The server corrupts the file: the store must not take it.
    f.server.fault_n("*/dep-1.5-*.whl", Fault::Corrupt, 100);
    let err =
        imgbuild::pypi::fetch::fetch_python(&store, &lock, Some(&client), &options, &progress);
    assert!(err.is_err());
    assert_eq!(imgbuild::pypi::fetch::missing(&store, &lock).len(), 1);
    f.server.clear_faults();
    // A lock whose hash differs from the index's is refused before downloading.
    let mut bad = lock.clone();
    bad.python[0].sha256 = "ab".repeat(32);
    let err = imgbuild::pypi::fetch::fetch_python(&store, &bad, Some(&client), &options, &progress)
        .unwrap_err();
    assert!(format!("{err:#}").contains("refusing it"), "{err:#}");
    // The honest fetch works, and then needs no network.
    imgbuild::pypi::fetch::fetch_python(&store, &lock, Some(&client), &options, &progress).unwrap();
    assert!(imgbuild::pypi::fetch::missing(&store, &lock).is_empty());
    let offline = imgbuild::fetch::SessionOptions {
        offline: true,
        ..options
    };
    imgbuild::pypi::fetch::fetch_python(&store, &lock, None, &offline, &progress).unwrap();
    // `vendor gc` keeps what a lock's [[python]] references, and only that.
    let locks = tmp.path().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    std::fs::write(locks.join("t.lock"), lock.to_toml()).unwrap();
    let gc = imgbuild::fetch::maintain::gc(&store, &locks).unwrap();
    assert_eq!((gc.kept, gc.removed), (1, 0));
    let mut other = lock.clone();
    other.python.clear();
    std::fs::write(locks.join("t.lock"), other.to_toml()).unwrap();
    let gc = imgbuild::fetch::maintain::gc(&store, &locks).unwrap();
    assert_eq!((gc.kept, gc.removed), (0, 1));
}

#[test]
fn wheel_install_layout() {
    let wheel = WheelSpec::new("tool-kit", "2.0")
        .file("tool_kit/cli.py", "def main():\n    return 0\n")
        .file("tool_kit-2.0.data/scripts/raw", "#!python\nprint('hi')\n")
        .file("tool_kit-2.0.data/data/share/doc/x.txt", "doc\n")
        .entry_points("[console_scripts]\ntoolkit = tool_kit.cli:main\n")
        .build();
    let root = tempfile::tempdir().unwrap();
    let t = Target::from_lock(&bookworm()).unwrap();
    let r = imgbuild::pypi::install::install_wheel(
        root.path(),
        &t,
        "tool_kit-2.0-py3-none-any.whl",
        &wheel,
    )
    .unwrap();
    let site = root.path().join("usr/local/lib/python3.11/dist-packages");
    assert!(site.join("tool_kit/__init__.py").is_file());
    assert!(site.join("tool_kit/cli.py").is_file());
    let di = site.join("tool_kit-2.0.dist-info");
    assert_eq!(
        std::fs::read_to_string(di.join("INSTALLER")).unwrap(),
        "imgbuild\n"
    );
    let script = std::fs::read_to_string(root.path().join("usr/local/bin/toolkit")).unwrap();
    assert!(
        script.starts_with("#!/usr/bin/python3\n")
            && script.contains("from tool_kit.cli import main")
    );
    let raw = std::fs::read_to_string(root.path().join("usr/local/bin/raw")).unwrap();
    assert_eq!(raw, "#!/usr/bin/python3\nprint('hi')\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.path().join("usr/local/bin/toolkit"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert!(root.path().join("usr/local/share/doc/x.txt").is_file());
    let record = std::fs::read_to_string(di.join("RECORD")).unwrap();
    assert!(record.contains("tool_kit/cli.py,sha256="), "{record}");
    assert!(
        record.contains("../../../../bin/toolkit,sha256=")
            || record.contains("bin/toolkit,sha256="),
        "{record}"
    );
    assert!(
        record.ends_with("tool_kit-2.0.dist-info/RECORD,,\n"),
        "{record}"
    );
    assert_eq!(r.files.len(), record.lines().count());
    // Installing is a function of the wheel: a second root is identical.
    let root2 = tempfile::tempdir().unwrap();
    imgbuild::pypi::install::install_wheel(
        root2.path(),
        &t,
        "tool_kit-2.0-py3-none-any.whl",
        &wheel,
    )
    .unwrap();
    let di2 = root2
        .path()
        .join("usr/local/lib/python3.11/dist-packages/tool_kit-2.0.dist-info");
    assert_eq!(record, std::fs::read_to_string(di2.join("RECORD")).unwrap());
    // A wheel with an escaping path is refused.
    let evil = support::pypi::zip_bytes(&[("../../etc/passwd".into(), "x".into())]);
    assert!(
        imgbuild::pypi::install::install_wheel(root.path(), &t, "evil-1-py3-none-any.whl", &evil)
            .is_err()
    );
}
